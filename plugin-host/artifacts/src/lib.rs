//! The paths of the plugins under `plugins/`, compiled for
//! `wasm32-wasip2` by this crate's `build.rs` (the first build takes about a
//! minute: the plugins get a target directory of their own).
//!
//! Always [`ACL_SQL`], which the broker embeds (its build-dependency); the rest only
//! with the `test-plugins` feature (the tests' dev-dependencies), so building the
//! broker compiles no fixture.
//!
//! Examples: [`READONLY_ACL`], [`STAMP`], [`SCRAM_SHA256`], [`AUTH_CHALLENGE`].
//! Fixtures: [`SCRIPTED`] (answers from its settings, for chain tests) and the hostile ones:
//! [`LOOP_FOREVER`], [`ALLOC_UNBOUNDED`], [`PANIC`], [`SLOW`]; [`SQL_PROBE`] for the `sql` capability;
//! [`DELIVER_DENY`] for the `deliver` hook. Contract versions:
//! [`CONTRACT_V0_1`] (built against the frozen `wasmq:plugin@0.1.0`) and
//! [`CLIENT_RECORD`] (keyed on the client fields 0.2.0 added).

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
