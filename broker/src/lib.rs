//! Wasmq: an MQTT 3.1.1 and 5.0 broker whose policy lives in WebAssembly plugins.
//!
//! How a message moves through the crate:
//!
//! - `server` accepts connections on the [`listener`]s (bounded by `max_connections`)
//!   and gives each one a task running `connection`, over plain TCP, TLS, WebSocket
//!   or WebSocket over TLS (`transport`, one reader and one writer for all).
//! - `connection` decodes packets with the shared codec (`wasmq-codec`), handles the
//!   CONNECT handshake, keep-alive and QoS flows, and writes batched output.
//! - On CONNECT, [`Broker::attach`] resumes or creates the client's `session`
//!   (taking it over from an older connection).
//! - A PUBLISH is authorized and transformed through [`hooks`] (asked by the
//!   connection's policy gate, which caches the answers), stored if retained
//!   ([`storage`]), and routed: [`router`] matches the topic ([`topic`] holds the rules)
//!   and each matching session receives a `message::Delivery` in its bounded queue.
//! - The owning connection is woken (`wake`), pulls deliveries within its inflight window, and
//!   writes them. Offline persistent sessions keep QoS 1/2 deliveries until they return
//!   or expire. A queue filling faster than it drains holds its publishers back
//!   (`backpressure`).
//! - [`sys`] publishes `$SYS/broker/...` from [`metrics`]; [`config`] holds every limit.
//! - [`plugins`] is the policy: WebAssembly components from the plugin folder and the
//!   built-in default auth/ACL plugin. [`manage`] edits that plugin's tables
//!   (`wasmq user|acl`), and [`admin`] is the local socket through which those commands
//!   tell a running broker to drop its cached decisions. [`plugin_tools`] is for those
//!   who write plugins: `wasmq plugin new|build|test`.
//! - [`http`] serves Prometheus metrics (read from [`metrics`], the sessions and the
//!   plugins at scrape time) and the HTTP admin API (clients, plugins, users, rules).

pub mod admin;
pub mod authz_cache;
pub(crate) mod backpressure;
pub(crate) mod broker;
pub mod config;
mod connection;
pub(crate) mod enhanced_auth;
pub mod hooks;
pub mod http;
pub mod listener;
pub mod manage;
pub(crate) mod message;
pub mod metrics;
mod outbox;
pub mod plugin_tools;
pub mod plugins;
pub mod router;
pub(crate) mod server;
pub(crate) mod session;
pub mod storage;
pub mod store;
pub mod sys;
pub mod topic;
mod transport;
mod wake;

pub use broker::Broker;
pub use config::Config;
pub use server::Server;
pub use transport::ws::WsStream;
