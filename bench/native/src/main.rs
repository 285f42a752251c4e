//! The limit of the load benchmark: a native hyper + tokio server that does the same
//! work per request as the sluice plugin and the `wasmtime serve` component
//! ([`bench_work::handle`]), with nothing around it.
//!
//! `bench-native [ADDR]` listens on ADDR (default 127.0.0.1:0) and prints
//! `listening on http://ADDR` once it accepts connections.
//!
//! `bench-native fan-out --listen ADDR --target URL ...` is the limit of the delivery
//! fan-out benchmark instead: see [`fan_out`].

mod fan_out;

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(reply(
                StatusCode::BAD_REQUEST,
                b"{\"error\":\"the body could not be read\"}".to_vec(),
            ));
        }
    };
    Ok(match bench_work::handle(&body) {
        Ok(summary) => reply(StatusCode::OK, summary),
        Err(error) => reply(StatusCode::BAD_REQUEST, bench_work::refusal(&error)),
    })
}

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        bench_work::REPLY_CONTENT_TYPE.parse().expect("a valid header"),
    );
    response
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|mode| mode == "fan-out") {
        let result = match fan_out::Options::parse(&args[1..]) {
            Ok(options) => fan_out::run(options).await,
            Err(problem) => Err(format!("{problem}\nusage: {}", fan_out::USAGE)),
        };
        if let Err(problem) = result {
            eprintln!("bench-native fan-out: {problem}");
            std::process::exit(2);
        }
        return Ok(());
    }
    let address = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&address).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            // A client that goes away mid-request is not the server's problem.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}
