//! Plugins installed, replaced and removed through the admin API
//! (`PUT` and `DELETE /v1/admin/plugins/{name}`): the statuses, the checks a dropped file
//! gets, the upload limit, where the plugin is kept, and a removed plugin's code let go.

use crate::harness::{Answer, Host, guest, installation_in, multipart_form, postgres};
use crate::serving::routes::assert_error;

const FIRST: &str = "[configuration]\nname = \"first\"\n";
const SECOND: &str = "[configuration]\nname = \"second\"\n";
const LIMIT: usize = 1 << 20;

/// The path of a webhook URL, without the host's address.
fn path_of(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    rest[rest.find('/').unwrap()..].to_string()
}

/// The configuration name the probe at `path` runs with.
fn configured_name(host: &Host, path: &str) -> String {
    let context = host.send(host.client().get(host.url(&format!("{path}/context"))));
    assert_eq!(context.status, 200, "{}", context.body);
    context.json()["configuration"]["name"].as_str().unwrap().to_string()
}

fn registrations(host: &Host, path: &str) -> serde_json::Value {
    let answer = host.send(
        host.client()
            .get(host.url(&format!("{path}/state/integration/self/registrations"))),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["count"].clone()
}

fn put_as(host: &Host, name: &str, content_type: &str, body: Vec<u8>, token: Option<&str>) -> Answer {
    let mut request = host
        .client()
        .put(host.url(&format!("/v1/admin/plugins/{name}")))
        .header("content-type", content_type)
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    host.send(request)
}

#[test]
fn a_plugin_is_uploaded_replaced_refused_and_removed_through_the_admin_api() {
    let mut host = Host::builder()
        .config(&format!("[plugins]\nmax-upload-bytes = {LIMIT}\n"))
        .start();
    let probe = std::fs::read(guest("probe")).unwrap();

    // Without the API token: 401, and nothing installed.
    let anonymous = put_as(&host, "up", "application/wasm", probe.clone(), None);
    assert_error(&anonymous, 401, "Unauthorized", "PUT without the token");

    // Created: 201, serving at once with its sidecar, registered.
    let created = host.upload_plugin("up", &probe, Some(FIRST));
    assert_eq!(created.status, 201, "{}", created.body);
    let installation = created.json();
    assert_eq!(installation["name"], "up");
    assert_eq!(installation["status"], "active", "{installation}");
    let url = installation["webhookUrl"].as_str().unwrap().to_string();
    let path = path_of(&url);
    assert_eq!(configured_name(&host, &path), "first");
    assert_eq!(registrations(&host, &path), 1);

    // Replaced with a new sidecar: 200, the same webhook URL, not registered again.
    let replaced = host.upload_plugin("up", &probe, Some(SECOND));
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_eq!(replaced.json()["webhookUrl"], url.as_str());
    assert_eq!(configured_name(&host, &path), "second");
    // The component alone: the sidecar stays.
    let alone = put_as(
        &host,
        "up",
        "application/wasm",
        probe.clone(),
        Some(crate::harness::API_TOKEN),
    );
    assert_eq!(alone.status, 200, "{}", alone.body);
    assert_eq!(configured_name(&host, &path), "second");
    assert_eq!(registrations(&host, &path), 1);

    // Refused like a dropped file, with the reason; the version serving keeps serving.
    let not_a_component = host.upload_plugin("up", b"not a component", None);
    let error = assert_error(&not_a_component, 400, "InvalidPayload", "not a component");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("not a valid WebAssembly component"),
        "{error}"
    );
    let bad_sidecar = host.upload_plugin("up", &probe, Some("[configuration\n"));
    let error = assert_error(&bad_sidecar, 400, "InvalidPayload", "a sidecar that does not parse");
    assert!(error["message"].as_str().unwrap().contains("sidecar"), "{error}");
    assert_eq!(configured_name(&host, &path), "second");
    assert_eq!(host.webhook_url("up"), url);

    // Not an installation name, a form without the component, neither wasm nor a form.
    let badly_named = host.upload_plugin("no.dots", &probe, None);
    let error = assert_error(&badly_named, 400, "InvalidIdentifier", "a name with a dot");
    assert!(error["message"].as_str().unwrap().contains("no.dots"), "{error}");
    let (form_type, form) = multipart_form(&[("sidecar", FIRST.as_bytes())]);
    let no_component = put_as(&host, "up", &form_type, form, Some(crate::harness::API_TOKEN));
    let error = assert_error(&no_component, 400, "InvalidPayload", "a form without the component");
    assert!(error["message"].as_str().unwrap().contains("component"), "{error}");
    let as_text = put_as(
        &host,
        "up",
        "text/plain",
        probe.clone(),
        Some(crate::harness::API_TOKEN),
    );
    assert_error(&as_text, 415, "UnsupportedMediaType", "text/plain");

    // Over `[plugins] max-upload-bytes`: 413 naming the limit, nothing installed.
    let oversized = host.upload_plugin("big", &vec![0u8; LIMIT + 1], None);
    let error = assert_error(&oversized, 413, "PayloadTooLarge", "over the limit");
    assert!(
        error["message"].as_str().unwrap().contains("max-upload-bytes"),
        "{error}"
    );
    let oversized_form = host.upload_plugin("big", &vec![0u8; LIMIT], Some(FIRST));
    assert_error(&oversized_form, 413, "PayloadTooLarge", "a form over the limit");
    assert!(installation_in(&host.admin_installations(), "big").is_none());

    // Kept: after a restart it serves at the same webhook path with its sidecar. With the embedded
    // store the plugins folder is the truth, so it is there; a shared store keeps it alone.
    host.restart();
    assert_eq!(path_of(&host.webhook_url("up")), path);
    assert_eq!(configured_name(&host, &path), "second");
    let in_folder = host.plugins.join("up.wasm").exists() && host.plugins.join("up.toml").exists();
    assert_eq!(in_folder, !postgres::enabled());

    // Removed: 204, unregistered, gone from the folder and the webhook URL; then 404.
    let anonymous = host.send(host.client().delete(host.url("/v1/admin/plugins/up")));
    assert_error(&anonymous, 401, "Unauthorized", "DELETE without the token");
    let removed = host.api_delete("/v1/admin/plugins/up");
    assert_eq!(removed.status, 204, "{}", removed.body);
    assert!(installation_in(&host.admin_installations(), "up").is_none());
    assert!(!host.plugins.join("up.wasm").exists());
    assert!(!host.plugins.join("up.toml").exists());
    let gone = host.post(&host.url(&path), "{}");
    assert_eq!(gone.status, 404, "{}", gone.body);
    assert_eq!(host.events(Some("probe:unregistered")).len(), 1);
    let again = host.api_delete("/v1/admin/plugins/up");
    assert_error(&again, 404, "ResourceNotFound", "deleting an unknown plugin");
}

#[test]
fn a_removed_plugin_is_let_go_by_the_runtime() {
    let host = Host::builder().start();
    let webhook = std::fs::read(guest("webhook")).unwrap();
    let first = host.upload_plugin("hook", &webhook, None);
    assert_eq!(first.status, 201, "{}", first.body);
    assert_ne!(first.json()["plugin"]["code"], "shared", "{}", first.body);
    // While one installation runs it, another of the same code shares it.
    let twin = host.upload_plugin("twin", &webhook, None);
    assert_eq!(twin.status, 201, "{}", twin.body);
    assert_eq!(twin.json()["plugin"]["code"], "shared", "{}", twin.body);

    for name in ["hook", "twin"] {
        let removed = host.api_delete(&format!("/v1/admin/plugins/{name}"));
        assert_eq!(removed.status, 204, "{}", removed.body);
    }
    // Once neither runs it, nothing holds it: installed again, it is loaded afresh.
    let again = host.upload_plugin("hook", &webhook, None);
    assert_eq!(again.status, 201, "{}", again.body);
    assert_ne!(again.json()["plugin"]["code"], "shared", "{}", again.body);
}
