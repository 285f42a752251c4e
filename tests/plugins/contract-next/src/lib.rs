//! A plugin built against another version of the contract (tests/plugins/contract-next/wit:
//! `sluice:integration@0.2.0`, whose `plugin` has no `handle-message`). The host must
//! refuse it and say what differs.

wit_bindgen::generate!({ path: "wit", world: "integration" });

use exports::sluice::integration::plugin::Guest;
use sluice::integration::types::*;

struct Next;

impl Guest for Next {
    fn definition() -> Definition {
        Definition {
            name: "contract-next".into(),
            version: "0.2.0".into(),
            title: "Next".into(),
            description: String::new(),
            configuration_schema: None,
            events: vec![],
            actions: vec![],
            channels: vec![],
            states: vec![],
            user_tags: vec![],
        }
    }
    fn register(_: Context) -> Result<(), Error> {
        sluice::integration::logger::log(sluice::integration::logger::Level::Info, "registered");
        Ok(())
    }
    fn unregister(_: Context) -> Result<(), Error> {
        Ok(())
    }
    fn handler(_: Context, _: HttpRequest) -> Result<HttpResponse, Error> {
        Ok(HttpResponse { status: 200, headers: vec![], body: vec![] })
    }
    fn call_action(_: Context, name: String, _: String) -> Result<ActionResult, Error> {
        Err(Error { kind: ErrorKind::NotFound, message: format!("no action {name}") })
    }
}

export!(Next);
