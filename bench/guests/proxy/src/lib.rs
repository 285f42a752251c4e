//! The benchmark's `wasi:http` proxy component (configuration (c), served by
//! `wasmtime serve`, which also runs a fresh instance per request): it reads the whole
//! request body, does the same work as the sluice plugin (bench/work) and answers the
//! same reply.

use std::io::{Read as _, Write as _};

use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

wasip2::http::proxy::export!(Proxy);

struct Proxy;

fn read_body(request: &IncomingRequest) -> Option<Vec<u8>> {
    let body = request.consume().ok()?;
    let mut bytes = Vec::new();
    {
        let mut stream = body.stream().ok()?;
        stream.read_to_end(&mut bytes).ok()?;
    }
    drop(body);
    Some(bytes)
}

impl wasip2::exports::http::incoming_handler::Guest for Proxy {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let (status, reply) = match read_body(&request) {
            None => (400, br#"{"error":"the body could not be read"}"#.to_vec()),
            Some(body) => match bench_work::handle(&body) {
                Ok(summary) => (200, summary),
                Err(error) => (400, bench_work::refusal(&error)),
            },
        };
        let headers = Fields::from_list(&[
            ("content-type".to_string(), bench_work::REPLY_CONTENT_TYPE.as_bytes().to_vec()),
            ("content-length".to_string(), reply.len().to_string().into_bytes()),
        ])
        .expect("valid headers");
        let response = OutgoingResponse::new(headers);
        response.set_status_code(status).expect("a valid status");
        let body = response.body().expect("the body is taken once");
        ResponseOutparam::set(response_out, Ok(response));
        {
            let mut stream = body.write().expect("the stream is taken once");
            stream.write_all(&reply).expect("the client takes the reply");
            stream.flush().expect("the client takes the reply");
        }
        OutgoingBody::finish(body, None).expect("the body finishes");
    }
}
