//! What every route shares, and the server around them: the route table, JSON bodies and
//! content types, the error shape and request ids, tokens, queries, connection limits,
//! and the checks `sluice serve` makes at start-up.

mod connections;
mod json_depth;
mod requests;
mod routes;
mod startup;
mod store;
