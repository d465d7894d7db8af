//! `acl-sql`: Wasmq's default authentication and ACL plugin, on the
//! EMQX-compatible `mqtt_user` and `mqtt_acl` tables.
//!
//! The SQL is the operator's: the plugin runs three statements declared in
//! its `acl-sql.toml` under `[sql.statements]` (`auth_query`,
//! `superuser_query`, `acl_query`), always with bound parameters. The rules
//! and the password schemes are the plain crate `wasmq-acl-rules`
//! (`acl-rules/`, tested natively, shared with `wasmq user|acl`); this crate
//! only connects them to the host. The settings are documented in the README.

#![cfg_attr(
    not(target_family = "wasm"),
    allow(dead_code, reason = "exported only when built for wasm")
)]

// The glue to the host. A native build (`cargo check`) compiles it but
// exports nothing: there is no host to call, and the native linker would
// refuse the export names.
mod plugin;
