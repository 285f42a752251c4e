//! sluice as a library: the example application that mounts it in its own axum server
//! (host/examples/embed.rs), and the embedding API called in-process from a test.

mod api;
mod example;
