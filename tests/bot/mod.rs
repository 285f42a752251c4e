//! The bot API (the Botpress chat API's shapes): writes, state and events, and the real
//! Botpress client against it.

mod api;
mod botpress_client;
mod state_and_events;
