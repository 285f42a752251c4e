//! The example integrations (guest-examples/) receiving their platforms' webhooks.

mod chat;
mod shop;
mod webhook;
