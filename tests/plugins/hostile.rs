// Shared by the hostile test plugins (trap, spin, hog). Each crate defines
// `misbehave()`, which its webhook handler runs on `POST /misbehave`; every other
// request is answered 200, so tests can show the plugin works until provoked. With
// `misbehave-in-register = true` in its configuration, `register` misbehaves too (spin's
// keeps the host loading until the call's deadline).

wit_bindgen::generate!({ path: "../../../wit", world: "integration" });

use exports::sluice::integration::plugin::Guest;
use sluice::integration::types::*;

struct Hostile;

impl Guest for Hostile {
    fn definition() -> Definition {
        Definition {
            name: env!("CARGO_PKG_NAME").into(),
            version: "0.1.0".into(),
            title: env!("CARGO_PKG_NAME").into(),
            description: env!("CARGO_PKG_DESCRIPTION").into(),
            configuration_schema: None,
            events: vec![],
            actions: vec![],
            channels: vec![],
            states: vec![],
            user_tags: vec![],
        }
    }
    fn register(ctx: Context) -> Result<(), Error> {
        if ctx.configuration.contains("\"misbehave-in-register\":true") {
            misbehave();
        }
        Ok(())
    }
    fn unregister(_: Context) -> Result<(), Error> {
        Ok(())
    }
    fn handler(_: Context, request: HttpRequest) -> Result<HttpResponse, Error> {
        if request.path == "/misbehave" {
            misbehave();
        }
        Ok(HttpResponse { status: 200, headers: vec![], body: b"fine".to_vec() })
    }
    fn call_action(_: Context, _: String, _: String) -> Result<ActionResult, Error> {
        misbehave();
    }
    fn handle_message(_: Context, _: String, _: Conversation, _: Message, _: User) -> Result<Ack, Error> {
        misbehave();
    }
}

export!(Hostile);
