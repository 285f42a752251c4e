//! Hostile plugins and clients: the host keeps serving everyone else.

mod clients;
mod plugins;
