//! The default plugin's (`acl-sql`) logic, plain Rust with no host calls: used by the
//! plugin (`plugins/acl-sql`, built for wasm32-wasip2) and natively by the broker
//! (`wasmq user|acl`, which write what the plugin reads, and its start, which creates
//! the tables), so both agree byte for byte and everything here is tested natively.
//!
//! - [`schema`]: the EMQX 4.x tables per backend (`schema/*.sql`), the default rules,
//!   and [`schema::ensure`], which creates what is missing through any statement runner.
//! - [`rules`]: `mqtt_acl` rows parsed and matched (EMQX semantics: `$all`, `%u`/`%c`,
//!   `eq`, access 1/2/3, first match by id) into a decision.
//! - [`password`]: the `mqtt_user` password schemes (`password_hash`), hash and verify.
//! - [`scram`]: SCRAM-SHA-256 credentials of `mqtt_scram_user` (RFC 5802 keys).

pub mod password;
pub mod rules;
pub mod schema;
pub mod scram;
