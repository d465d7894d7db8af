//! Write [Wasmq](https://github.com/) broker plugins in Rust.
//!
//! A Wasmq plugin is a WebAssembly component that the broker calls at its hook
//! points: **authentication** on CONNECT, **authorization** on PUBLISH and
//! SUBSCRIBE, **read access on delivery** through wildcard subscriptions, and
//! **message transform** on PUBLISH. This crate hides the
//! component-model plumbing: implement [`Plugin`] (every method has a default
//! that passes the decision on), then name the hooks you implement in
//! [`export_plugin!`]. The broker finds out which hooks a plugin has by
//! looking at what the component exports, so export only the ones you wrote.
//!
//! # A complete plugin
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "readonly-acl"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! wasmq-plugin-sdk = "0.1"
//! ```
//!
//! `src/lib.rs`:
//!
//! ```
//! use wasmq_plugin_sdk::{Action, AuthzResult, Client, Decision, Plugin, export_plugin, log};
//!
//! struct ReadOnly;
//!
//! impl Plugin for ReadOnly {
//!     fn authorize(client: Client, action: Action, topic: String, _qos: u8, _retain: bool) -> AuthzResult {
//!         let protected = topic == "readonly" || topic.starts_with("readonly/");
//!         if action == Action::Publish && protected && !client.client_id.starts_with("admin-") {
//!             log::info(&format!("{} may not publish to {topic}", client.client_id));
//!             return Decision::Deny.into(); // kept for the operator's TTL
//!         }
//!         Decision::Ignore.into() // not mine: ask the next plugin
//!     }
//! }
//!
//! export_plugin!(ReadOnly: authz);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` (install the
//! target once with `rustup target add wasm32-wasip2`) and drop
//! `target/wasm32-wasip2/release/readonly_acl.wasm` into the broker's plugin
//! folder.
//!
//! # Map
//!
//! - [`Plugin`]: the hooks, with defaults ([`Decision::Ignore`], [`Transformed::Keep`]).
//! - [`export_plugin!`]: exports the chosen hooks (`authn`, `authz`, `deliver`,
//!   `transform`, `transform_batch`, `auth`). Only plugins that export `deliver` are
//!   asked about deliveries; `auth` is MQTT 5 enhanced authentication
//!   ([`Plugin::auth_start`]: AUTH packets, the exchange's state carried by the broker).
//! - The contract's types (`wasmq:plugin@0.2.0`), re-exported: [`Client`] (with
//!   its [`ListenerKind`], [`CertificateIdentity`] and CONNECT user properties),
//!   [`Action`], [`Decision`], [`AuthResult`], [`AuthzResult`] (a decision and its
//!   [`CacheLifetime`]), [`Message`], [`Transformed`], [`Edit`] and [`Change`] (what
//!   a batch transform did to one message).
//! - Host capabilities: [`log`] (always granted), [`config`] (the plugin's own
//!   settings, always granted), [`sql`] (only when the operator grants it).
//!
//! # Contract version
//!
//! This SDK builds plugins against `wasmq:plugin@0.2.0`, whose [`Client`] carries the
//! listener's kind, the TLS client certificate's identity and the CONNECT's user
//! properties ([`Client::user_property`], [`Client::certificate_cn`]). 0.2.0 is not
//! released yet and may still gain fields and hooks, so a plugin built now may need a
//! rebuild before then. The broker keeps loading plugins built against 0.1.0.
//!
//! # Rules of the sandbox
//!
//! A plugin has no files, no network, no environment variables. Every call has
//! a time limit and every instance a memory limit; a plugin that traps, runs
//! out of time or out of memory makes the broker deny (authentication and
//! authorization) or keep the original message (transform), and a plugin that
//! keeps failing is disabled. Instances are reused across calls, so global
//! state survives between calls, but not forever: never rely on it for
//! correctness. Writes to stdout and stderr end up in the broker's log.
#![deny(missing_docs)]

use std::marker::PhantomData;

/// Raw bindings generated from the WIT contract. Not a stable API: use the
/// re-exports at the crate root.
///
/// Generated from the file `wit/plugin.wit`, not the folder: the folder's `deps/`
/// holds the frozen 0.1.0 package, which would make the generated module names
/// carry their versions (`plugin0_2_0`).
#[doc(hidden)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit/plugin.wit",
        world: "host",
    });

    /// Bindings for a component that exports `authn`, sharing the types above.
    pub mod authn_world {
        wit_bindgen::generate!({
            path: "../wit/plugin.wit",
            world: "authn-plugin",
            pub_export_macro: true,
            export_macro_name: "export_authn",
            with: {
                "wasmq:plugin/types@0.2.0": crate::wit::wasmq::plugin::types,
                "wasmq:plugin/log@0.2.0": crate::wit::wasmq::plugin::log,
                "wasmq:plugin/config@0.2.0": crate::wit::wasmq::plugin::config,
                "wasmq:plugin/sql@0.2.0": crate::wit::wasmq::plugin::sql,
            },
        });
    }

    /// Bindings for a component that exports `authz`, sharing the types above.
    pub mod authz_world {
        wit_bindgen::generate!({
            path: "../wit/plugin.wit",
            world: "authz-plugin",
            pub_export_macro: true,
            export_macro_name: "export_authz",
            with: {
                "wasmq:plugin/types@0.2.0": crate::wit::wasmq::plugin::types,
                "wasmq:plugin/log@0.2.0": crate::wit::wasmq::plugin::log,
                "wasmq:plugin/config@0.2.0": crate::wit::wasmq::plugin::config,
                "wasmq:plugin/sql@0.2.0": crate::wit::wasmq::plugin::sql,
            },
        });
    }

    /// Bindings for a component that exports `deliver`, sharing the types above.
    pub mod deliver_world {
        wit_bindgen::generate!({
            path: "../wit/plugin.wit",
            world: "deliver-plugin",
            pub_export_macro: true,
            export_macro_name: "export_deliver",
            with: {
                "wasmq:plugin/types@0.2.0": crate::wit::wasmq::plugin::types,
                "wasmq:plugin/log@0.2.0": crate::wit::wasmq::plugin::log,
                "wasmq:plugin/config@0.2.0": crate::wit::wasmq::plugin::config,
                "wasmq:plugin/sql@0.2.0": crate::wit::wasmq::plugin::sql,
            },
        });
    }

    /// Bindings for a component that exports `auth`, sharing the types above.
    pub mod auth_world {
        wit_bindgen::generate!({
            path: "../wit/plugin.wit",
            world: "enhanced-auth-plugin",
            pub_export_macro: true,
            export_macro_name: "export_auth",
            with: {
                "wasmq:plugin/types@0.2.0": crate::wit::wasmq::plugin::types,
                "wasmq:plugin/log@0.2.0": crate::wit::wasmq::plugin::log,
                "wasmq:plugin/config@0.2.0": crate::wit::wasmq::plugin::config,
                "wasmq:plugin/sql@0.2.0": crate::wit::wasmq::plugin::sql,
            },
        });
    }

    /// Bindings for a component that exports `transform-batch`, sharing the types above.
    pub mod transform_batch_world {
        wit_bindgen::generate!({
            path: "../wit/plugin.wit",
            world: "transform-batch-plugin",
            pub_export_macro: true,
            export_macro_name: "export_transform_batch",
            with: {
                "wasmq:plugin/types@0.2.0": crate::wit::wasmq::plugin::types,
                "wasmq:plugin/log@0.2.0": crate::wit::wasmq::plugin::log,
                "wasmq:plugin/config@0.2.0": crate::wit::wasmq::plugin::config,
                "wasmq:plugin/sql@0.2.0": crate::wit::wasmq::plugin::sql,
            },
        });
    }

    /// Bindings for a component that exports `transform`, sharing the types above.
    pub mod transform_world {
        wit_bindgen::generate!({
            path: "../wit/plugin.wit",
            world: "transform-plugin",
            pub_export_macro: true,
            export_macro_name: "export_transform",
            with: {
                "wasmq:plugin/types@0.2.0": crate::wit::wasmq::plugin::types,
                "wasmq:plugin/log@0.2.0": crate::wit::wasmq::plugin::log,
                "wasmq:plugin/config@0.2.0": crate::wit::wasmq::plugin::config,
                "wasmq:plugin/sql@0.2.0": crate::wit::wasmq::plugin::sql,
            },
        });
    }
}

pub use wit::wasmq::plugin::types::{
    Action, AuthChallenge, AuthResult, AuthStep, AuthSuccess, AuthzResult, CacheLifetime,
    CertificateIdentity, Change, Client, Decision, Edit, ListenerKind, Message, Transformed,
};

/// A per-message answer as a batch edit (nothing narrower: a replace stays a replace).
impl From<Transformed> for Edit {
    fn from(t: Transformed) -> Self {
        match t {
            Transformed::Keep => Edit::Keep,
            Transformed::Drop(reason) => Edit::Drop(reason),
            Transformed::Replace(message) => Edit::Replace(message),
        }
    }
}

impl Edit {
    /// Append these user properties to the message, nothing else changed.
    pub fn add_user_properties(properties: Vec<(String, String)>) -> Self {
        Edit::Change(Change {
            topic: None,
            add_user_properties: properties,
        })
    }

    /// Route the message to `topic`, nothing else changed.
    pub fn set_topic(topic: impl Into<String>) -> Self {
        Edit::Change(Change {
            topic: Some(topic.into()),
            add_user_properties: Vec::new(),
        })
    }
}

/// A decision kept for the operator's TTL (`[authz_cache] ttl_ms`), as every answer
/// was before plugins could say: `Decision::Deny.into()`.
impl From<Decision> for AuthzResult {
    fn from(decision: Decision) -> Self {
        AuthzResult {
            decision,
            cache: CacheLifetime::OperatorTtl,
        }
    }
}

impl AuthzResult {
    /// Allow, kept for the operator's TTL.
    pub fn allow() -> Self {
        Decision::Allow.into()
    }

    /// Deny, kept for the operator's TTL.
    pub fn deny() -> Self {
        Decision::Deny.into()
    }

    /// Not mine: ask the next plugin (kept for the operator's TTL).
    pub fn ignore() -> Self {
        Decision::Ignore.into()
    }

    /// The same decision, kept as `cache` says: [`CacheLifetime::None`] for an answer
    /// that may change at any time (or was made without the data it needed),
    /// [`CacheLifetime::Seconds`], or [`CacheLifetime::Connection`] for one that holds
    /// as long as the client stays connected.
    pub fn cached(self, cache: CacheLifetime) -> Self {
        AuthzResult { cache, ..self }
    }
}

impl Client {
    /// The value of the first CONNECT user property named `name` (MQTT 5; a 3.1.1
    /// client has none).
    pub fn user_property(&self, name: &str) -> Option<&str> {
        self.user_properties
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The subject CN of the client's verified TLS certificate, when it sent one
    /// and the certificate has a CN.
    pub fn certificate_cn(&self) -> Option<&str> {
        self.certificate.as_ref()?.common_name.as_deref()
    }
}

impl AuthResult {
    /// Let the client in (not a superuser).
    pub fn allow() -> Self {
        Self {
            decision: Decision::Allow,
            superuser: false,
            reason: None,
        }
    }

    /// Let the client in as a superuser: its publishes and subscriptions
    /// skip authorization.
    pub fn superuser() -> Self {
        Self {
            decision: Decision::Allow,
            superuser: true,
            reason: None,
        }
    }

    /// Refuse the connection; `reason` goes to the broker's log, not to the client.
    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            decision: Decision::Deny,
            superuser: false,
            reason: Some(reason.into()),
        }
    }

    /// Not mine: ask the next plugin.
    pub fn ignore() -> Self {
        Self {
            decision: Decision::Ignore,
            superuser: false,
            reason: None,
        }
    }
}

/// The hooks a plugin may implement. Every method has a default that passes
/// the decision on, so implement only the ones you need, and name them in
/// [`export_plugin!`].
///
/// The methods are associated functions (no `self`): the broker may call any
/// warm instance of the plugin, and instances come and go. Keep state that
/// must survive in a `static` only as a cache.
pub trait Plugin {
    /// Authentication, on CONNECT (exported with `authn`). The user name is
    /// in `client.username`; `password` is absent when the client sent none.
    fn authenticate(client: Client, password: Option<Vec<u8>>) -> AuthResult {
        let _ = (client, password);
        AuthResult::ignore()
    }

    /// Authorization, on PUBLISH and SUBSCRIBE (exported with `authz`).
    /// `topic` is a topic name for [`Action::Publish`] and a topic filter for
    /// [`Action::Subscribe`].
    ///
    /// Return a [`Decision`] with `.into()` to have it kept for the operator's TTL, or
    /// say how long with [`AuthzResult::cached`].
    fn authorize(
        client: Client,
        action: Action,
        topic: String,
        qos: u8,
        retain: bool,
    ) -> AuthzResult {
        let _ = (client, action, topic, qos, retain);
        AuthzResult::ignore()
    }

    /// Read access on delivery (exported with `deliver`): may `client` receive a
    /// message published to `topic` (a topic name), which reaches it through a
    /// subscription whose filter has wildcards? The subscription itself was
    /// authorized already ([`Plugin::authorize`] with [`Action::Subscribe`]); this is
    /// the check of each topic the filter reaches, so a rule denying
    /// `sensors/secret` keeps it from a `sensors/#` subscriber. Asked once per
    /// connection and topic (cached as `authorize` is). [`Decision::Ignore`] from
    /// every plugin lets the delivery go.
    fn authorize_delivery(client: Client, topic: String, qos: u8, retain: bool) -> AuthzResult {
        let _ = (client, topic, qos, retain);
        AuthzResult::ignore()
    }

    /// The MQTT 5 Authentication Methods this plugin implements (exported with
    /// `auth`), asked once when the plugin loads: a CONNECT naming one of them comes
    /// to [`Plugin::auth_start`].
    fn auth_methods() -> Vec<String> {
        Vec::new()
    }

    /// The first step of enhanced authentication (exported with `auth`): `client`
    /// sent CONNECT, or AUTH 0x19 to re-authenticate, with Authentication Method
    /// `method` and Authentication Data `data`. Answer [`AuthStep::Continue`] with a
    /// challenge and the state the next step needs (the broker hands it back to
    /// [`Plugin::auth_continue`]: instances keep nothing between calls),
    /// [`AuthStep::Success`] or [`AuthStep::Failure`].
    fn auth_start(client: Client, method: String, data: Option<Vec<u8>>) -> AuthStep {
        let _ = (client, method, data);
        AuthStep::Ignore
    }

    /// A later step: the client answered the last challenge with `data`; `state` is
    /// what the last [`AuthStep::Continue`] said to keep.
    fn auth_continue(
        client: Client,
        method: String,
        data: Option<Vec<u8>>,
        state: Vec<u8>,
    ) -> AuthStep {
        let _ = (client, method, data, state);
        AuthStep::Failure("no exchange to continue".into())
    }

    /// Message transform, on PUBLISH after authorization (exported with
    /// `transform`). Return [`Transformed::Keep`] when nothing changes: it
    /// costs nothing, while [`Transformed::Replace`] copies the message back.
    fn on_publish(client: Client, message: Message) -> Transformed {
        let _ = (client, message);
        Transformed::Keep
    }

    /// One message of a batch (exported with `transform_batch`), by reference: answer
    /// with the narrowest [`Edit`] that says what changed ([`Edit::Keep`],
    /// [`Edit::add_user_properties`], [`Edit::set_topic`], [`Edit::Change`] for both),
    /// so that the broker copies back only that. By default [`Plugin::on_publish`] on a
    /// copy of the message.
    fn on_publish_edit(client: &Client, message: &Message) -> Edit {
        Self::on_publish(client.clone(), message.clone()).into()
    }

    /// Message transform in batches (exported with `transform_batch`): the PUBLISHes of
    /// one read from `client`, in order; one [`Edit`] per message, in the same order. One
    /// call for the batch costs about what one [`Plugin::on_publish`] call does. By
    /// default [`Plugin::on_publish_edit`] on each message.
    fn on_publish_batch(client: Client, messages: Vec<Message>) -> Vec<Edit> {
        messages
            .iter()
            .map(|m| Self::on_publish_edit(&client, m))
            .collect()
    }
}

/// Adapts a [`Plugin`] to the generated export traits. Used by
/// [`export_plugin!`]; not meant to be named directly.
#[doc(hidden)]
pub struct Export<P>(PhantomData<P>);

impl<P: Plugin> wit::authn_world::exports::wasmq::plugin::authn::Guest for Export<P> {
    fn authenticate(c: Client, password: Option<Vec<u8>>) -> AuthResult {
        P::authenticate(c, password)
    }
}

impl<P: Plugin> wit::authz_world::exports::wasmq::plugin::authz::Guest for Export<P> {
    fn authorize(c: Client, a: Action, topic: String, qos: u8, retain: bool) -> AuthzResult {
        P::authorize(c, a, topic, qos, retain)
    }
}

impl<P: Plugin> wit::deliver_world::exports::wasmq::plugin::deliver::Guest for Export<P> {
    fn authorize_delivery(c: Client, topic: String, qos: u8, retain: bool) -> AuthzResult {
        P::authorize_delivery(c, topic, qos, retain)
    }
}

impl<P: Plugin> wit::auth_world::exports::wasmq::plugin::auth::Guest for Export<P> {
    fn methods() -> Vec<String> {
        P::auth_methods()
    }

    fn start(c: Client, method: String, data: Option<Vec<u8>>) -> AuthStep {
        P::auth_start(c, method, data)
    }

    fn step(c: Client, method: String, data: Option<Vec<u8>>, state: Vec<u8>) -> AuthStep {
        P::auth_continue(c, method, data, state)
    }
}

impl<P: Plugin> wit::transform_world::exports::wasmq::plugin::transform::Guest for Export<P> {
    fn on_publish(c: Client, m: Message) -> Transformed {
        P::on_publish(c, m)
    }
}

impl<P: Plugin> wit::transform_batch_world::exports::wasmq::plugin::transform_batch::Guest
    for Export<P>
{
    fn on_publish_batch(c: Client, ms: Vec<Message>) -> Vec<Edit> {
        P::on_publish_batch(c, ms)
    }
}

/// Exports a [`Plugin`] implementation for the hooks named after the colon:
/// any of `authn`, `authz`, `deliver`, `transform`, `transform_batch` and `auth`,
/// comma-separated. A transform called on every message should export
/// `transform_batch` (one call per batch of PUBLISHes); `transform` may be exported
/// beside it, or alone for one call per message.
///
/// ```
/// # use wasmq_plugin_sdk::{Plugin, export_plugin};
/// struct Stamp;
/// impl Plugin for Stamp {}
/// export_plugin!(Stamp: transform);
/// ```
///
/// Use it once per plugin crate, at the crate root or in any module.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty : $($hook:ident),+ $(,)?) => {
        const _: () = {
            #[doc(hidden)]
            type __WasmqExport = $crate::Export<$plugin>;
            $( $crate::__wasmq_export_hook!($hook); )+
        };
    };
}

/// Exports one hook for the `__WasmqExport` alias in scope. Implementation
/// detail of [`export_plugin!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __wasmq_export_hook {
    (authn) => {
        $crate::__export_authn_plugin_impl!(__WasmqExport with_types_in $crate::wit::authn_world);
    };
    (authz) => {
        $crate::__export_authz_plugin_impl!(__WasmqExport with_types_in $crate::wit::authz_world);
    };
    (deliver) => {
        $crate::__export_deliver_plugin_impl!(__WasmqExport with_types_in $crate::wit::deliver_world);
    };
    (auth) => {
        $crate::__export_enhanced_auth_plugin_impl!(__WasmqExport with_types_in $crate::wit::auth_world);
    };
    (transform) => {
        $crate::__export_transform_plugin_impl!(__WasmqExport with_types_in $crate::wit::transform_world);
    };
    (transform_batch) => {
        $crate::__export_transform_batch_plugin_impl!(__WasmqExport with_types_in $crate::wit::transform_batch_world);
    };
    ($other:ident) => {
        compile_error!(concat!(
            "unknown Wasmq hook `",
            stringify!($other),
            "`: expected authn, authz, deliver, transform, transform_batch or auth"
        ));
    };
}

/// Write to the broker's log, tagged with the plugin's name. Always granted.
pub mod log {
    use crate::wit::wasmq::plugin::log::{Level, log};

    /// Log at trace level.
    pub fn trace(message: &str) {
        log(Level::Trace, message);
    }
    /// Log at debug level.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    /// Log at info level.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    /// Log at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    /// Log at error level.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// The plugin's own settings: the `[settings]` table of its `NAME.toml`.
/// Always granted.
pub mod config {
    /// The value of setting `key` as a string (numbers and booleans as TOML
    /// writes them), or `None` when it is not set.
    pub fn get(key: &str) -> Option<String> {
        crate::wit::wasmq::plugin::config::get(key)
    }
}

/// Queries with bound parameters against the broker's database. Only for
/// plugins the operator granted `sql`; a plugin that uses it without the
/// grant does not load.
pub mod sql {
    pub use crate::wit::wasmq::plugin::sql::{Row, SqlError, SqlValue};

    /// Run the statement `statement` (the name of a statement declared in the
    /// plugin's config, or SQL text where the operator allows it) with
    /// `params` bound to its `?` placeholders in order.
    pub fn query(statement: &str, params: &[SqlValue]) -> Result<Vec<Row>, SqlError> {
        crate::wit::wasmq::plugin::sql::query(statement, params)
    }
}
