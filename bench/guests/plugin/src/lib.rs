//! The benchmark's sluice plugin (configuration (b)): `handler` parses the webhook body
//! into typed structs and answers a small JSON summary, the same work the native server
//! and the `wasmtime serve` component do (bench/work). It calls nothing in the host, so
//! what the benchmark measures is the host's request path around it.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "integration",
});

use exports::sluice::integration::plugin::Guest;
use sluice::integration::types::{
    Ack, ActionResult, Context, Conversation, Definition, Error, ErrorKind, HttpRequest, HttpResponse, Message, User,
};

struct Bench;

fn unsupported(what: &str) -> Error {
    Error {
        kind: ErrorKind::NotFound,
        message: format!("the bench plugin has no {what}"),
    }
}

impl Guest for Bench {
    fn definition() -> Definition {
        Definition {
            name: "bench".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            title: "Benchmark".into(),
            description: "Parses a chat platform's message.created webhook and answers a summary.".into(),
            configuration_schema: None,
            events: Vec::new(),
            actions: Vec::new(),
            channels: Vec::new(),
            states: Vec::new(),
            user_tags: Vec::new(),
        }
    }

    fn register(_ctx: Context) -> Result<(), Error> {
        Ok(())
    }

    fn unregister(_ctx: Context) -> Result<(), Error> {
        Ok(())
    }

    fn handler(_ctx: Context, request: HttpRequest) -> Result<HttpResponse, Error> {
        let (status, body) = match bench_work::handle(&request.body) {
            Ok(summary) => (200, summary),
            Err(error) => (400, bench_work::refusal(&error)),
        };
        Ok(HttpResponse {
            status,
            headers: vec![("content-type".into(), bench_work::REPLY_CONTENT_TYPE.into())],
            body,
        })
    }

    fn call_action(_ctx: Context, name: String, _input: String) -> Result<ActionResult, Error> {
        Err(unsupported(&format!("action {name}")))
    }

    fn handle_message(
        _ctx: Context,
        channel: String,
        _conversation: Conversation,
        _message: Message,
        _user: User,
    ) -> Result<Ack, Error> {
        Err(unsupported(&format!("channel {channel}")))
    }
}

export!(Bench);
