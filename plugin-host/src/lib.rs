//! The Wasmq plugin host: loads WebAssembly components that implement the
//! `wasmq:plugin@0.2.0` contract (`wit/` at the repository root) or the frozen
//! `0.1.0` one (`wit/deps/plugin-0.1.0/`), keeps them sandboxed and warm, and
//! runs them as chains at the broker's hook points.
//!
//! # Map
//!
//! - [`host`]: [`PluginHost`], one wasmtime `Engine` (pooling allocator,
//!   epoch interruption, async) and `Linker` (WASI with nothing granted, plus
//!   the `log`, `config` and `sql` capabilities), the epoch ticker, and
//!   loading: bytes -> [`cache`] (or compile) -> [`check`] (which hooks,
//!   which imports, what is wrong) -> [`Plugin`].
//! - [`plugin`]: one plugin: its `InstancePre`, a pool of warm instances
//!   (`pool`, private: a slot per calling thread, then a shared list), a
//!   deadline and a memory cap per call, fault counting, disabling, and the
//!   retry with backoff ([`PluginState`], [`Retry`]).
//! - [`chain`]: [`PluginSet`] (plugins in priority order, chain semantics:
//!   first allow/deny wins, faults fail closed, transforms compose) and
//!   [`Chain`] (the current set, swapped atomically on reload).
//! - What a hook is asked and answers are the policy seam's types, shared
//!   with the broker (`wasmq_policy`, re-exported: [`ClientInfo`], [`Action`],
//!   [`Decision`], [`CacheLifetime`], [`Transformed`], [`Edit`]; messages are
//!   the codec's `Publish`). [`types`]: the host's own ([`AuthOutcome`], a
//!   plugin's [`PluginAuthStep`], [`HookSet`], [`Capabilities`]).
//! - `bindings` (private): the generated bindings of each contract version
//!   ([`Contract`]) and the one place types are converted to and from them
//!   (0.1.0 in one place too: the client without what 0.2.0 added). A client
//!   is converted once per connection, on the first call about it after its
//!   authentication, and kept in its [`ClientInfo::prepared`] slot (an idle
//!   connection keeps none).
//! - `state` (private): the per-instance `HostState`, the host side of the
//!   capabilities, and plugin stdout/stderr into `tracing`.
//! - [`histogram`]: [`LatencyHistogram`], lock-free call and query latencies,
//!   read by the broker's metrics at scrape time.
//! - [`database`]: [`Database`], the pool behind the `sql` capability (SQLite,
//!   MySQL/MariaDB, PostgreSQL): statements declared by the operator in the
//!   plugin's config ([`PluginConfig::sql_statements`]), bound parameters, a
//!   statement timeout, the EMQX tables and the default rules.
//!
//! # Data flow of a call
//!
//! ```text
//! Chain::authorize -> current PluginSet (ArcSwap snapshot)
//!   -> for each plugin with authz, in order: Plugin::authorize
//!        -> take a warm instance (or instantiate from InstancePre)
//!        -> set the epoch deadline -> call the export (async)
//!        -> Ok: instance back to the pool | Err: drop it, count, maybe disable
//!   -> first Allow/Deny wins; a fault is Deny; all Ignore is Ignore; the answer
//!      keeps the shortest cache lifetime of the plugins asked (AuthzOutcome::cache)
//! PluginSet::authorize_delivery: the same over the plugins that export `deliver`
//! ```
//!
//! Loading is CPU-bound (compilation): call [`PluginHost::load`] off the
//! async runtime, or use [`PluginHost::load_async`].

mod bindings;
pub mod cache;
pub mod chain;
pub mod check;
pub mod database;
mod error;
pub mod histogram;
pub mod host;
pub mod plugin;
mod pool;
mod state;
pub mod types;

pub use cache::CacheStats;
pub use chain::{AuthzOutcome, Chain, ChainStats, PluginSet};
pub use check::{CONTRACT_VERSION, Contract, Report};
pub use database::{Backend, Database, DatabaseConfig, QueryError};
pub use error::{Fault, HostError, LoadError};
pub use histogram::{HistogramSnapshot, LatencyHistogram};
pub use host::{HostConfig, PluginHost, check};
pub use plugin::{
    OnTransformFault, Plugin, PluginConfig, PluginState, PluginStats, ResourceLimits, Retry,
    SqlGrant,
};
pub use types::{AuthOutcome, Capabilities, HookSet, PluginAuthStep};
pub use wasmq_policy::{
    Action, CacheLifetime, CertificateIdentity, ClientInfo, Decision, Edit, ListenerKind,
    Transformed,
};
