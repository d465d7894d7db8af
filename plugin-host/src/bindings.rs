//! The host's bindings: one `bindgen!` per contract version the host loads,
//! each generated from that version's `full-plugin` world (every hook and
//! every capability), and the conversions between the generated types and
//! the crate's plain types in [`crate::types`].
//!
//! - [`v0_2`]: `wasmq:plugin@0.2.0`, `wit/plugin.wit`, the current contract.
//!   The hook chain carries its types ([`wit`] is this version).
//! - [`v0_1`]: `wasmq:plugin@0.1.0`, frozen in `wit/deps/plugin-0.1.0/`. A
//!   component built against it is called through these bindings; what it is
//!   handed is converted from the 0.2 types in one place, the `v0_1`
//!   conversions at the bottom of this file (the client loses the fields 0.2
//!   added, a message and the answers pass as they are).
//!
//! Two versions are two sets of interface names (`wasmq:plugin/authz@0.1.0`,
//! `...@0.2.0`), so both are added to the one `Linker`, and a component links
//! against the one it was built for.
//!
//! A plugin exports any subset of the hooks: the per-interface
//! `GuestIndices::new(&instance_pre)` succeeds only for the interfaces the
//! component really exports, which is how [`crate::plugin`] loads them one by one.

use std::sync::OnceLock;

use crate::types::{
    Action, AuthOutcome, AuthStep, CacheLifetime, ClientInfo, Decision, ListenerKind, Message,
    Transformed,
};

/// `wasmq:plugin@0.2.0`, the current contract. Generated from the file, not the
/// folder `wit/`, whose `deps/` would bring the 0.1.0 package in too.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/plugin.wit",
        world: "full-plugin",
        imports: {
            // A database query may be slow: it must not block a tokio worker.
            "wasmq:plugin/sql.query": async,
            default: tracing,
        },
        exports: { default: async },
    });

    pub use exports::wasmq::plugin::{auth, authn, authz, deliver, transform, transform_batch};
    pub use wasmq::plugin::types as wit;
}

/// `wasmq:plugin@0.1.0`, frozen: plugins built against it keep loading.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/deps/plugin-0.1.0",
        world: "full-plugin",
        imports: {
            "wasmq:plugin/sql.query": async,
            default: tracing,
        },
        exports: { default: async },
    });

    pub use exports::wasmq::plugin::{authn, authz, transform};
    pub use wasmq::plugin::types as wit;
}

pub use v0_2::wit;

/// A [`ClientInfo`] converted, once, into the record every hook call hands to
/// a plugin. The broker asks about the same client on every PUBLISH of a
/// connection; converting it per call cost four `String`s (and the caller's
/// own conversion, a formatted address) per message. Build one per
/// connection and pass it to [`crate::Chain::authenticate_prepared`],
/// [`crate::Chain::authorize_prepared`] and [`crate::Chain::transform_prepared`].
#[derive(Clone, Debug)]
pub struct PreparedClient {
    current: wit::Client,
    /// The same client for plugins built against 0.1.0, made on the first call
    /// to one of them (most sets have none).
    v0_1: OnceLock<v0_1::wit::Client>,
}

impl PreparedClient {
    /// The client for a 0.2.0 plugin.
    pub(crate) fn v0_2(&self) -> &wit::Client {
        &self.current
    }

    /// The client for a 0.1.0 plugin: the 0.2.0 one without what 0.2.0 added.
    pub(crate) fn v0_1(&self) -> &v0_1::wit::Client {
        self.v0_1
            .get_or_init(|| v0_1::wit::Client::from(&self.current))
    }
}

impl From<&ClientInfo> for PreparedClient {
    fn from(c: &ClientInfo) -> Self {
        PreparedClient::from(c.clone())
    }
}

impl From<ClientInfo> for PreparedClient {
    fn from(c: ClientInfo) -> Self {
        PreparedClient {
            current: wit::Client {
                client_id: c.client_id,
                username: c.username,
                peer_addr: c.peer_addr,
                protocol_version: c.protocol_version,
                listener: c.listener,
                listener_kind: c.listener_kind.into(),
                certificate: c.certificate.map(|id| wit::CertificateIdentity {
                    common_name: id.common_name,
                    dns_names: id.dns_names,
                    emails: id.emails,
                    uris: id.uris,
                }),
                user_properties: c.user_properties,
            },
            v0_1: OnceLock::new(),
        }
    }
}

impl From<ListenerKind> for wit::ListenerKind {
    fn from(k: ListenerKind) -> Self {
        match k {
            ListenerKind::Tcp => wit::ListenerKind::Tcp,
            ListenerKind::Tls => wit::ListenerKind::Tls,
            ListenerKind::Ws => wit::ListenerKind::Ws,
            ListenerKind::Wss => wit::ListenerKind::Wss,
        }
    }
}

/// The conversions every contract version has alike: the action asked about,
/// the answers of authn and authz. One definition, stamped per version.
macro_rules! answers {
    ($v:ident) => {
        impl From<Action> for $v::wit::Action {
            fn from(a: Action) -> Self {
                match a {
                    Action::Publish => $v::wit::Action::Publish,
                    Action::Subscribe => $v::wit::Action::Subscribe,
                }
            }
        }

        impl From<$v::wit::Decision> for Decision {
            fn from(d: $v::wit::Decision) -> Self {
                match d {
                    $v::wit::Decision::Allow => Decision::Allow,
                    $v::wit::Decision::Deny => Decision::Deny,
                    $v::wit::Decision::Ignore => Decision::Ignore,
                }
            }
        }

        impl From<$v::wit::AuthResult> for AuthOutcome {
            fn from(r: $v::wit::AuthResult) -> Self {
                let decision = Decision::from(r.decision);
                AuthOutcome {
                    decision,
                    // A superuser flag on anything but allow means nothing: drop it so
                    // the broker cannot misread it.
                    superuser: r.superuser && decision == Decision::Allow,
                    reason: r.reason,
                }
            }
        }
    };
}

answers!(v0_2);
answers!(v0_1);

/// A 0.2.0 authorization answer: the decision and how long it may be kept.
impl From<wit::AuthzResult> for (Decision, CacheLifetime) {
    fn from(r: wit::AuthzResult) -> Self {
        let cache = match r.cache {
            wit::CacheLifetime::OperatorTtl => CacheLifetime::OPERATOR_TTL,
            wit::CacheLifetime::None => CacheLifetime::NONE,
            wit::CacheLifetime::Seconds(secs) => CacheLifetime::seconds(secs),
            wit::CacheLifetime::Connection => CacheLifetime::CONNECTION,
        };
        (r.decision.into(), cache)
    }
}

impl From<wit::AuthStep> for AuthStep {
    fn from(s: wit::AuthStep) -> Self {
        match s {
            wit::AuthStep::Continue(c) => AuthStep::Continue {
                data: c.data,
                state: c.state,
            },
            wit::AuthStep::Success(s) => AuthStep::Success {
                data: s.data,
                superuser: s.superuser,
            },
            wit::AuthStep::Failure(reason) => AuthStep::Failure(reason),
            wit::AuthStep::Ignore => AuthStep::Ignore,
        }
    }
}

impl From<Message> for wit::Message {
    fn from(m: Message) -> Self {
        wit::Message {
            topic: m.topic,
            payload: m.payload,
            qos: m.qos,
            retain: m.retain,
            user_properties: m.user_properties,
            content_type: m.content_type,
            payload_is_utf8: m.payload_is_utf8,
            response_topic: m.response_topic,
            correlation_data: m.correlation_data,
            message_expiry_interval: m.message_expiry_interval,
        }
    }
}

impl From<wit::Message> for Message {
    fn from(m: wit::Message) -> Self {
        Message {
            topic: m.topic,
            payload: m.payload,
            qos: m.qos,
            retain: m.retain,
            user_properties: m.user_properties,
            content_type: m.content_type,
            payload_is_utf8: m.payload_is_utf8,
            response_topic: m.response_topic,
            correlation_data: m.correlation_data,
            message_expiry_interval: m.message_expiry_interval,
        }
    }
}

impl From<wit::Transformed> for Transformed {
    fn from(t: wit::Transformed) -> Self {
        match t {
            wit::Transformed::Keep => Transformed::Keep,
            wit::Transformed::Replace(m) => Transformed::Replace(m.into()),
            wit::Transformed::Drop(reason) => Transformed::Drop(reason),
        }
    }
}

impl From<wit::Edit> for crate::types::Edit {
    fn from(e: wit::Edit) -> Self {
        match e {
            wit::Edit::Keep => crate::types::Edit::Keep,
            wit::Edit::Drop(reason) => crate::types::Edit::Drop(reason),
            wit::Edit::Change(c) => crate::types::Edit::Change {
                topic: c.topic,
                add_user_properties: c.add_user_properties,
            },
            wit::Edit::Replace(m) => crate::types::Edit::Replace(m.into()),
        }
    }
}

/// Does a `change` to `message`: the next transform of a chain sees it changed.
pub(crate) fn apply_change(message: &mut wit::Message, change: wit::Change) {
    if let Some(topic) = change.topic {
        message.topic = topic;
    }
    message.user_properties.extend(change.add_user_properties);
}

/// An empty message, to stand in for one moved out (no allocation).
pub(crate) fn placeholder_message() -> wit::Message {
    wit::Message {
        topic: String::new(),
        payload: Vec::new(),
        qos: 0,
        retain: false,
        user_properties: Vec::new(),
        content_type: None,
        payload_is_utf8: false,
        response_topic: None,
        correlation_data: None,
        message_expiry_interval: None,
    }
}

// ---------------------------------------------------------------------------
// 0.1.0: the one place where the current (0.2.0) types become 0.1.0 ones and
// back. Messages are moved, never copied.
// ---------------------------------------------------------------------------

/// The 0.1.0 client: the fields 0.2.0 added (listener kind, certificate,
/// CONNECT user properties) are simply not there.
impl From<&wit::Client> for v0_1::wit::Client {
    fn from(c: &wit::Client) -> Self {
        v0_1::wit::Client {
            client_id: c.client_id.clone(),
            username: c.username.clone(),
            peer_addr: c.peer_addr.clone(),
            protocol_version: c.protocol_version,
            listener: c.listener.clone(),
        }
    }
}

impl From<wit::Message> for v0_1::wit::Message {
    fn from(m: wit::Message) -> Self {
        v0_1::wit::Message {
            topic: m.topic,
            payload: m.payload,
            qos: m.qos,
            retain: m.retain,
            user_properties: m.user_properties,
            content_type: m.content_type,
            payload_is_utf8: m.payload_is_utf8,
            response_topic: m.response_topic,
            correlation_data: m.correlation_data,
            message_expiry_interval: m.message_expiry_interval,
        }
    }
}

impl From<v0_1::wit::Message> for wit::Message {
    fn from(m: v0_1::wit::Message) -> Self {
        wit::Message {
            topic: m.topic,
            payload: m.payload,
            qos: m.qos,
            retain: m.retain,
            user_properties: m.user_properties,
            content_type: m.content_type,
            payload_is_utf8: m.payload_is_utf8,
            response_topic: m.response_topic,
            correlation_data: m.correlation_data,
            message_expiry_interval: m.message_expiry_interval,
        }
    }
}

impl From<v0_1::wit::Transformed> for wit::Transformed {
    fn from(t: v0_1::wit::Transformed) -> Self {
        match t {
            v0_1::wit::Transformed::Keep => wit::Transformed::Keep,
            v0_1::wit::Transformed::Replace(m) => wit::Transformed::Replace(m.into()),
            v0_1::wit::Transformed::Drop(reason) => wit::Transformed::Drop(reason),
        }
    }
}
