//! Rust bindings for the WIT contract in `wit/` (world `sluice:integration/integration`).
//!
//! Imports are async (they reach the store off the async threads) and trappable (a
//! host failure can end the call); exports are called asynchronously so that epoch
//! deadlines can yield back to the executor.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "integration",
    imports: { default: async | trappable },
    exports: { default: async },
});

// `self::`: where the crate itself is an extern crate named sluice too (rustdoc's doc-test
// build), a bare `sluice::` is ambiguous.
pub use self::sluice::integration::types;
pub use self::sluice::integration::{client, logger};
