//! Hosting plugins: the plugins folder and its installations, hot reload, uploads through
//! the admin API, the compiled-code cache, the plugin tooling (`sluice inspect`, `sluice
//! new`) and outbound HTTP from plugins.

mod code_cache;
mod hot_reload;
mod installations;
mod outbound_http;
mod tooling;
mod uploads;
