//! The OpenAPI 3.1 document of every route, generated from the handlers' annotations
//! (`#[utoipa::path]` where each handler is defined, its request and answer types deriving
//! `ToSchema`, and those types being what the handler serializes), served at
//! `GET /openapi.json` and printed by `sluice openapi`.
//!
//! Each surface contributes its part (`Api` in its module); [`document`] joins them and
//! adds what the route table's rules make true of every route, so that no handler has to
//! repeat it: the API token on the routes behind it, and the errors that the extractors
//! and the host answer for every route that reads a body, a path or a query. The trigger
//! API is served under two prefixes; its operations are annotated under the first and
//! repeated under the second.

use std::sync::LazyLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::schema::{Object, Schema, SchemaType};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Components, ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::errors::ErrorBody;
use super::{admin, chat, health, metrics, stream, subscriptions, triggers, webhooks};

/// Where the document is served.
pub const PATH: &str = "/openapi.json";

/// The security scheme of the API token.
pub const API_TOKEN: &str = "apiToken";

/// The document, as `GET /openapi.json` and `sluice openapi` give it.
pub fn document_json() -> &'static str {
    static JSON: LazyLock<String> =
        LazyLock::new(|| document().to_pretty_json().expect("the OpenAPI document serializes"));
    &JSON
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", operation_id = "openapi",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
pub async fn serve() -> Response {
    ([(CONTENT_TYPE, "application/json")], document_json()).into_response()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sluice",
        description = "A WebAssembly plugin host for chatbot and platform integrations: its webhook \
            URLs, the bot API (wire-compatible with the Botpress chat API), the trigger API \
            (ChatBotKit-compatible), webhook subscriptions and their deliveries, the live stream, \
            the admin API, health checks and metrics.\n\n\
            Bodies sent to the APIs are JSON objects sent with `Content-Type: application/json` \
            (415 otherwise; an empty body reads as `{}`), at most 2 MiB. Every answer carries its \
            request id in `x-sluice-request-id`; errors have the shape `Error`, with that id.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(serve),
    components(schemas(ErrorBody, triggers::TriggerErrorBody)),
    modifiers(&Shared),
    tags(
        (name = "bot", description = "The bot API, in the shapes of the Botpress chat API"),
        (name = "triggers", description = "ChatBotKit-compatible triggers: endpoints that queue events for a plugin"),
        (name = "delivery", description = "Signed webhook subscriptions, their deliveries and attempts"),
        (name = "stream", description = "Every recorded event, live, as Server-Sent Events"),
        (name = "admin", description = "What the host runs"),
        (name = "webhooks", description = "Installations' webhook URLs: any method, the body passed through to the plugin"),
        (name = "operations", description = "Health checks, metrics and this document (public)"),
    ),
)]
struct Base;

/// The security schemes and the shared error answers.
struct Shared;

impl Modify for Shared {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.description = Some(description.to_string());
            SecurityScheme::Http(http)
        };
        components.add_security_scheme(
            API_TOKEN,
            bearer("The API token (`<data>/api-token`, printed at first start); the scheme's name in any case"),
        );
        components.add_security_scheme(
            "streamTicket",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "ticket",
                "A stream ticket from POST /v1/stream/tickets, good once for a minute",
            ))),
        );
        components.add_security_scheme(
            "triggerSecret",
            bearer("The trigger's secret, when the trigger authenticates its events"),
        );
        for (name, description) in ERRORS {
            for (prefix, schema) in [("", "Error"), (TRIGGER_ERRORS, "TriggerError")] {
                let response = ResponseBuilder::new()
                    .description(*description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(schema)))
                            .build(),
                    )
                    .build();
                components
                    .responses
                    .insert(format!("{prefix}{name}"), RefOr::T(response));
            }
        }
    }
}

/// The trigger API answers its errors in ChatBotKit's shape (`TriggerError`): its shared
/// error answers are named with this prefix.
const TRIGGER_ERRORS: &str = "Trigger";

/// The shared error answers, by name.
const ERRORS: &[(&str, &str)] = &[
    (
        "BadRequest",
        "The request is not one this route takes: a body, path or query it cannot read (InvalidPayload, InvalidIdentifier, InvalidQuery, ...)",
    ),
    ("Unauthorized", "No API token, or a wrong one (Unauthorized)"),
    ("NotFound", "What the path names does not exist (ResourceNotFound)"),
    (
        "PayloadTooLarge",
        "The body is over the API's limit of 2 MiB (PayloadTooLarge)",
    ),
    (
        "UnsupportedMediaType",
        "A body not sent with Content-Type: application/json (UnsupportedMediaType)",
    ),
    (
        "Internal",
        "A failure inside the host; the log has the details under the request id (Internal)",
    ),
    (
        "Unavailable",
        "The store cannot be reached, or the host is stopping (Unavailable)",
    ),
    ("Forbidden", "The integration refused the request (Forbidden)"),
    (
        "Conflict",
        "The request conflicts with what the integration or its platform holds (Conflict)",
    ),
    (
        "RateLimited",
        "The integration's platform asks to wait (RateLimited; Retry-After when it said how long)",
    ),
    ("Upstream", "The integration's platform failed (Upstream)"),
    ("Timeout", "The plugin ran out of time (Timeout)"),
];

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = Base::openapi();
    for part in [
        chat::Api::openapi(),
        admin::Api::openapi(),
        subscriptions::Api::openapi(),
        triggers::ManagementApi::openapi(),
    ] {
        document.merge(behind_api_token(part));
    }
    for part in [
        stream::Api::openapi(),
        triggers::EventApi::openapi(),
        webhooks::Api::openapi(),
        health::Api::openapi(),
        metrics::Api::openapi(),
    ] {
        document.merge(part);
    }
    document.info.version = env!("CARGO_PKG_VERSION").to_string();
    let components = document.components.clone().unwrap_or_default();
    for item in document.paths.paths.values_mut() {
        for (_, operation) in operations_mut(item) {
            body_required_by_its_schema(operation, &components);
            add_shared_errors(operation);
        }
    }
    repeat_trigger_paths(&mut document);
    unique_operation_ids(&mut document);
    document
}

/// The operations of a path item, with their methods.
pub fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|operation| (method, operation)))
}

/// Every operation of `part` that does not say otherwise takes the API token.
fn behind_api_token(mut part: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    for item in part.paths.paths.values_mut() {
        for (_, operation) in operations_mut(item) {
            operation
                .security
                .get_or_insert_with(|| vec![SecurityRequirement::new(API_TOKEN, Vec::<String>::new())]);
        }
    }
    part
}

/// The trigger API's paths, annotated under the first prefix, repeated under the second.
fn repeat_trigger_paths(document: &mut utoipa::openapi::OpenApi) {
    let [first, second] = triggers::PREFIXES;
    let repeated: Vec<(String, PathItem)> = document
        .paths
        .paths
        .iter()
        .filter_map(|(path, item)| {
            let rest = path.strip_prefix(first)?;
            let mut item = item.clone();
            for (_, operation) in operations_mut(&mut item) {
                operation.operation_id = operation.operation_id.take().map(|id| format!("{id}ApiPrefix"));
            }
            Some((format!("{second}{rest}"), item))
        })
        .collect();
    document.paths.paths.extend(repeated);
}

/// A JSON body is required only when its schema has required fields: an empty body reads
/// as `{}` (see [`super::extract::JsonBody`]). Bodies passed on as they came (webhooks,
/// trigger events) are never required and may be anything.
fn body_required_by_its_schema(operation: &mut Operation, components: &Components) {
    let passed_on = operation.tags.iter().flatten().any(|t| t == webhooks::TAG)
        || operation
            .operation_id
            .as_deref()
            .is_some_and(|id| id.starts_with(triggers::EVENT_OPERATION));
    let Some(body) = operation.request_body.as_mut() else {
        return;
    };
    if passed_on {
        for content in body.content.values_mut() {
            content.schema = Some(RefOr::T(Schema::Object(Object::with_type(SchemaType::AnyValue))));
        }
        body.required = Some(utoipa::openapi::Required::False);
        return;
    }
    let Some(json) = body.content.get("application/json") else {
        return;
    };
    let schema = match &json.schema {
        Some(RefOr::Ref(reference)) => reference
            .ref_location
            .rsplit('/')
            .next()
            .and_then(|name| components.schemas.get(name)),
        other => other.as_ref(),
    };
    let has_required_fields = matches!(schema, Some(RefOr::T(Schema::Object(object))) if !object.required.is_empty());
    body.required = Some(if has_required_fields {
        utoipa::openapi::Required::True
    } else {
        utoipa::openapi::Required::False
    });
}

/// The errors every route of the APIs may answer by the route table's rules.
fn add_shared_errors(operation: &mut Operation) {
    let tagged = |tag: &str| operation.tags.iter().flatten().any(|t| t == tag);
    if tagged(webhooks::TAG) || tagged(health::TAG) {
        return;
    }
    let mut errors = Vec::new();
    let parameters = operation.parameters.iter().flatten();
    let in_path = parameters.clone().any(|p| p.parameter_in == ParameterIn::Path);
    let in_query = parameters.clone().any(|p| p.parameter_in == ParameterIn::Query);
    let json_body = operation
        .request_body
        .as_ref()
        .is_some_and(|body| body.content.contains_key("application/json") && body.content.len() == 1);
    if in_path || in_query || json_body {
        errors.push(("400", "BadRequest"));
    }
    let secured = operation.security.iter().flatten().any(|requirement| {
        serde_json::to_value(requirement).is_ok_and(|value| !value.as_object().is_some_and(|o| o.is_empty()))
    });
    if secured {
        errors.push(("401", "Unauthorized"));
    }
    if in_path || tagged(chat::TAG) {
        // The bot API also answers 404 for an integration, channel or action it names.
        errors.push(("404", "NotFound"));
    }
    if operation
        .operation_id
        .as_deref()
        .is_some_and(|id| chat::RUNS_A_PLUGIN.contains(&id))
    {
        errors.extend([
            ("403", "Forbidden"),
            ("409", "Conflict"),
            ("429", "RateLimited"),
            ("502", "Upstream"),
            ("504", "Timeout"),
        ]);
    }
    let plugin_upload = operation
        .request_body
        .as_ref()
        .is_some_and(|body| body.content.contains_key("application/wasm"));
    if json_body || plugin_upload {
        errors.push(("413", "PayloadTooLarge"));
        errors.push(("415", "UnsupportedMediaType"));
    }
    if !tagged(admin::TAG) {
        errors.push(("500", "Internal"));
        errors.push(("503", "Unavailable"));
    }
    let prefix = if tagged(triggers::TAG) { TRIGGER_ERRORS } else { "" };
    for (status, name) in errors {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(format!("{prefix}{name}"))));
    }
}

/// An operation annotated for several methods (webhooks, trigger events) gets one id per
/// method.
fn unique_operation_ids(document: &mut utoipa::openapi::OpenApi) {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for item in document.paths.paths.values_mut() {
        for (_, operation) in operations_mut(item) {
            if let Some(id) = &operation.operation_id {
                *seen.entry(id.clone()).or_default() += 1;
            }
        }
    }
    for (path, item) in document.paths.paths.iter_mut() {
        for (method, operation) in operations_mut(item) {
            let id = operation.operation_id.get_or_insert_with(|| path.clone());
            if seen.get(id.as_str()).is_some_and(|count| *count > 1) {
                let mut capitalized = method.to_string();
                capitalized[..1].make_ascii_uppercase();
                id.push_str(&capitalized);
            }
        }
    }
}
