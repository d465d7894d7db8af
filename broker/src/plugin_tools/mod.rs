//! Tools for plugin developers, behind `wasmq plugin new|build|test` (`wasmq plugin
//! check` is the plugin host's [`wasmq_plugin_host::check`]).
//!
//! - [`new`]: writes a plugin project (Rust, Python or JavaScript; authn, authz,
//!   transform or auth) from the templates in `plugins/templates/`, embedded in the
//!   binary.
//! - [`build`]: builds a project, whichever its language: cargo for Rust, the
//!   repository's `scripts/build-plugins --project DIR` for Python and JavaScript.
//! - [`test_cases`]: runs a table of cases (`CASES.toml`) against a component in the
//!   real plugin host, with no broker and no network, and reports each case;
//!   [`auth_cases`] holds the `auth` hook's, an exchange run step by step as the
//!   broker runs it.

pub mod auth_cases;
pub mod build;
pub mod new;
pub mod test_cases;
