//! Version 1 of the versioned test plugin: see tests/plugins/versioned.rs.

include!("../../versioned.rs");
