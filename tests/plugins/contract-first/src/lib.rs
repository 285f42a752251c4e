//! A plugin built against the contract as first released (tests/plugins/contract-first/wit,
//! `sluice:integration@0.1.0` before `create-event-once`, `create-message-once` and
//! `retry-after`): every request becomes a `contract-first:ping` event and is answered
//! with its id. A host with the additions must load and run it unchanged.

wit_bindgen::generate!({ path: "wit", world: "integration" });

use exports::sluice::integration::plugin::Guest;
use sluice::integration::client;
use sluice::integration::types::*;

struct First;

impl Guest for First {
    fn definition() -> Definition {
        Definition {
            name: "contract-first".into(),
            version: "0.1.0".into(),
            title: "First".into(),
            description: String::new(),
            configuration_schema: None,
            events: vec![EventDefinition {
                name: "ping".into(),
                title: "Ping".into(),
                description: String::new(),
                schema: r#"{"type":"object"}"#.into(),
            }],
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
    fn handler(_: Context, request: HttpRequest) -> Result<HttpResponse, Error> {
        let payload = format!(r#"{{"path":{:?}}}"#, request.path);
        let event = client::create_event("ping", &payload, None, None, None)?;
        Ok(HttpResponse {
            status: 200,
            headers: vec![],
            body: event.id.into_bytes(),
        })
    }
    fn call_action(_: Context, name: String, _: String) -> Result<ActionResult, Error> {
        Err(Error {
            kind: ErrorKind::NotFound,
            message: format!("no action {name}"),
        })
    }
    fn handle_message(_: Context, channel: String, _: Conversation, _: Message, _: User) -> Result<Ack, Error> {
        Err(Error {
            kind: ErrorKind::NotFound,
            message: format!("no channel {channel}"),
        })
    }
}

export!(First);
