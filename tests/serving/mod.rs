//! What every route shares, and the server around them: the route table, JSON bodies and
//! content types, the error shape and request ids, tokens, queries, connection limits,
//! the checks `sluice serve` makes at start-up, and the OpenAPI document against the routes.

mod connections;
mod json_depth;
mod openapi;
mod requests;
pub(crate) mod routes;
mod startup;
mod store;
