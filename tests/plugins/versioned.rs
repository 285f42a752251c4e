// Shared by versioned-1 and versioned-2: two builds of one integration (`versioned`)
// that differ only in their version, for the hot-reload tests. Both answer, over the
// webhook:
// - `GET /version`: `{"version", "integrationId", "webhookId", "configuration"}`;
// - `POST /hold`: sets the integration state `held` to `{"version"}`, then waits until
//   the integration state `release` exists (the test sets it through the API), and
//   answers `{"version"}`: a request that is still running while the file is replaced.

wit_bindgen::generate!({ path: "../../../wit", world: "integration" });

use exports::sluice::integration::plugin::Guest;
use sluice::integration::client;
use sluice::integration::types::*;

const VERSION: &str = env!("CARGO_PKG_VERSION");

struct Versioned;

fn answer(status: u16, body: String) -> Result<HttpResponse, Error> {
    Ok(HttpResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.into_bytes(),
    })
}

impl Guest for Versioned {
    fn definition() -> Definition {
        Definition {
            name: "versioned".into(),
            version: VERSION.into(),
            title: "Versioned".into(),
            description: env!("CARGO_PKG_DESCRIPTION").into(),
            configuration_schema: None,
            events: vec![],
            actions: vec![],
            channels: vec![],
            states: vec![],
            user_tags: vec![],
        }
    }
    fn register(_: Context) -> Result<(), Error> {
        Ok(())
    }
    fn unregister(_: Context) -> Result<(), Error> {
        Ok(())
    }
    fn handler(ctx: Context, request: HttpRequest) -> Result<HttpResponse, Error> {
        let id = ctx.integration_id.as_str();
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/version") => answer(
                200,
                format!(
                    "{{\"version\":{VERSION:?},\"integrationId\":{:?},\"webhookId\":{:?},\"configuration\":{}}}",
                    ctx.integration_id, ctx.webhook_id, ctx.configuration
                ),
            ),
            ("POST", "/hold") => {
                client::set_state(StateScope::Integration, id, "held", &format!("{{\"version\":{VERSION:?}}}"))?;
                while client::get_state(StateScope::Integration, id, "release")?.is_none() {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                answer(200, format!("{{\"version\":{VERSION:?}}}"))
            }
            _ => answer(404, "{\"error\":\"no such route\"}".into()),
        }
    }
    fn call_action(_: Context, name: String, _: String) -> Result<ActionResult, Error> {
        Err(Error { kind: ErrorKind::NotFound, message: format!("no action {name}") })
    }
    fn handle_message(_: Context, channel: String, _: Conversation, _: Message, _: User) -> Result<Ack, Error> {
        Err(Error { kind: ErrorKind::NotFound, message: format!("no channel {channel}") })
    }
}

export!(Versioned);
