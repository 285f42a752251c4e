//! The black-box tests: one test binary that starts the real `sluice` binary (the one
//! Cargo just built for it) on port 0 in a temporary folder and talks HTTP to it. One
//! module per area; `cargo test --test blackbox webhooks::` runs one area. See
//! tests/README.md.

mod harness;

mod bot;
mod delivery;
mod embedding;
mod hostile;
mod operating;
mod plugin_host;
mod replicas;
pub(crate) mod serving;
mod triggers;
mod webhooks;
