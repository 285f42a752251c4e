//! The route table: every route of the HTTP surface with its method, who may call it and
//! what it reads as a body. The router is built from it ([`Routes`]), so the table cannot
//! leave a route out; `GET /v1/admin/routes` answers it, and the tests that hold for every
//! route (an array body refused wherever a JSON object is read, ...) go through it.
//!
//! A route taking a body (`POST`, `PUT`, `PATCH`) reads it with [`JsonBody`] as its last
//! argument: [`post`], [`put`] and [`patch`] accept no other handler, so a new route
//! cannot read its body another way. Routes whose body is passed on as it came (webhooks,
//! trigger events) are [`any_raw`]; the plugin upload route reads a [`PluginUpload`]
//! ([`put_plugin_upload`]).

use std::convert::Infallible;

use axum::Router;
use axum::extract::Request;
use axum::handler::Handler;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, Route};
use serde::Serialize;
use tower::{Layer, Service};
use utoipa::ToSchema;

use super::extract::JsonBody;
use super::upload::PluginUpload;
use super::{AppState, auth};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Anyone (webhooks and trigger events check their own secrets, if any).
    Public,
    /// Only with `Authorization: Bearer <API token>`.
    ApiToken,
    /// With the API token, or a stream ticket minted with it (the live stream).
    ApiTokenOrTicket,
}

/// What a route reads as its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BodyKind {
    /// Nothing.
    None,
    /// A JSON object, through [`JsonBody`] (an empty body reads as `{}`).
    JsonObject,
    /// Any body, passed on as it came.
    Raw,
    /// A plugin, through [`PluginUpload`]: the component as `application/wasm`, or
    /// `multipart/form-data` with the component and its sidecar.
    PluginUpload,
}

/// One method of one route, as the table lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Listed {
    /// `GET`, `POST`, ..., or `ANY`.
    #[schema(value_type = String)]
    pub method: &'static str,
    /// The path as the router matches it (`{name}` a parameter, `{*name}` the rest).
    pub path: String,
    pub access: Access,
    pub body: BodyKind,
}

/// The route table as `GET /v1/admin/routes` answers it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RouteTable {
    pub routes: Vec<Listed>,
}

/// The routes of one surface, and their listing.
#[derive(Default)]
pub struct Routes {
    router: Router<AppState>,
    listed: Vec<Listed>,
}

impl Routes {
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Serves `methods` at `path`.
    pub fn route(mut self, path: &str, methods: Methods) -> Routes {
        self.listed
            .extend(methods.listed.into_iter().map(|(method, body)| Listed {
                method,
                path: path.to_string(),
                access: Access::Public,
                body,
            }));
        self.router = self.router.route(path, methods.router);
        self
    }

    pub fn merge(mut self, other: Routes) -> Routes {
        self.router = self.router.merge(other.router);
        self.listed.extend(other.listed);
        self
    }

    /// Wraps every route so far in `layer` (which changes answers, not who may call).
    pub fn layer<L>(mut self, layer: L) -> Routes
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.router = self.router.route_layer(layer);
        self
    }

    /// Puts every route so far behind the API token.
    pub fn require_api_token(self, app: &AppState) -> Routes {
        self.guarded_by(
            axum::middleware::from_fn_with_state(app.clone(), auth::require_api_token),
            Access::ApiToken,
        )
    }

    /// Puts every route so far behind `check`, which lets through callers with `access`.
    pub fn guarded_by<L>(mut self, check: L, access: Access) -> Routes
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.router = self.router.route_layer(check);
        for listed in &mut self.listed {
            listed.access = access;
        }
        self
    }

    /// The router, with `GET {path}` (behind the API token) answering the table, itself
    /// included.
    pub fn into_router_listed_at(self, path: &str, app: &AppState) -> Router<AppState> {
        let Routes { router, mut listed } = self;
        listed.push(Listed {
            method: "GET",
            path: path.to_string(),
            access: Access::ApiToken,
            body: BodyKind::None,
        });
        let table = RouteTable { routes: listed };
        let listing = Routes::new()
            .route(
                path,
                get(move || {
                    let table = table.clone();
                    async move { axum::Json(table) }
                }),
            )
            .require_api_token(app);
        router.merge(listing.router)
    }
}

/// The methods of one route (`get(list).post(create)`), and what each reads.
pub struct Methods {
    router: MethodRouter<AppState>,
    listed: Vec<(&'static str, BodyKind)>,
}

/// Handlers whose last argument is a [`JsonBody`]: the argument tuples axum's `Handler`
/// is implemented for, `(M, T1, ..., Tn)`, ending in one.
pub trait ReadsJsonBody {}

impl<M, B> ReadsJsonBody for (M, JsonBody<B>) {}
impl<M, T1, B> ReadsJsonBody for (M, T1, JsonBody<B>) {}
impl<M, T1, T2, B> ReadsJsonBody for (M, T1, T2, JsonBody<B>) {}
impl<M, T1, T2, T3, B> ReadsJsonBody for (M, T1, T2, T3, JsonBody<B>) {}
impl<M, T1, T2, T3, T4, B> ReadsJsonBody for (M, T1, T2, T3, T4, JsonBody<B>) {}
impl<M, T1, T2, T3, T4, T5, B> ReadsJsonBody for (M, T1, T2, T3, T4, T5, JsonBody<B>) {}

macro_rules! method {
    ($(#[$doc:meta])* $name:ident, $method:literal, $body:expr $(, $bound:path)?) => {
        $(#[$doc])*
        #[allow(dead_code, reason = "every method is offered, first or chained; not every one is used both ways")]
        pub fn $name<H, T>(handler: H) -> Methods
        where
            H: Handler<T, AppState>,
            T: 'static $(+ $bound)?,
        {
            Methods { router: axum::routing::$name(handler), listed: vec![($method, $body)] }
        }

        impl Methods {
            $(#[$doc])*
            #[allow(dead_code, reason = "every method is offered, first or chained; not every one is used both ways")]
            pub fn $name<H, T>(mut self, handler: H) -> Methods
            where
                H: Handler<T, AppState>,
                T: 'static $(+ $bound)?,
            {
                self.router = self.router.$name(handler);
                self.listed.push(($method, $body));
                self
            }
        }
    };
}

method!(
    /// `GET`: reads no body.
    get, "GET", BodyKind::None
);
method!(
    /// `DELETE`: reads no body.
    delete, "DELETE", BodyKind::None
);
method!(
    /// `POST`: reads a JSON object body.
    post, "POST", BodyKind::JsonObject, ReadsJsonBody
);
method!(
    /// `PUT`: reads a JSON object body.
    put, "PUT", BodyKind::JsonObject, ReadsJsonBody
);
method!(
    /// `PATCH`: reads a JSON object body.
    patch, "PATCH", BodyKind::JsonObject, ReadsJsonBody
);

/// Handlers whose last argument is a [`PluginUpload`].
pub trait ReadsPluginUpload {}

impl<M, T1, T2> ReadsPluginUpload for (M, T1, T2, PluginUpload) {}

/// `PUT` of a plugin: reads a [`PluginUpload`], under its own limit
/// (`[plugins] max-upload-bytes`) rather than axum's default one.
pub fn put_plugin_upload<H, T>(handler: H) -> Methods
where
    H: Handler<T, AppState>,
    T: 'static + ReadsPluginUpload,
{
    Methods {
        router: axum::routing::put(handler).layer(axum::extract::DefaultBodyLimit::disable()),
        listed: vec![("PUT", BodyKind::PluginUpload)],
    }
}

/// Any method, the body passed on as it came (webhooks, trigger events).
pub fn any_raw<H, T>(handler: H) -> Methods
where
    H: Handler<T, AppState>,
    T: 'static,
{
    Methods {
        router: axum::routing::any(handler),
        listed: vec![("ANY", BodyKind::Raw)],
    }
}
