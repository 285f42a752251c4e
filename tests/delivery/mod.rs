//! Event delivery: outbound webhooks, NATS JetStream and the Server-Sent Events stream.

mod nats;
mod rounds;
mod stream;
mod webhooks;
