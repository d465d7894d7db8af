//! The host's bindings: one `bindgen!` per contract version the host loads,
//! each generated from that version's `full-plugin` world (every hook and
//! every capability), and the conversions between the generated types and
//! the types of the policy seam (`wasmq_policy`, shared with the broker) and
//! the host's own ([`crate::types`]): the one place a hook call's types are
//! converted, a plugin's replacement message into a `Publish` included.
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

use bytes::Bytes;
use bytestring::ByteString;
use wasmq_codec::{Protocol, Publish, QoS};
use wasmq_policy::{
    Action, CacheLifetime, CertificateIdentity, ClientInfo, Decision, Edit, ListenerKind,
    Transformed,
};

use crate::types::{AuthOutcome, PluginAuthStep};

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
/// connection; converting it per call cost four `String`s and a formatted
/// address per message. Made on the first hook call about the client after its
/// authentication (which [`converted`] serves) and kept in its
/// [`ClientInfo::prepared`] slot ([`prepared`]).
#[derive(Clone, Debug)]
pub(crate) struct PreparedClient {
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

/// `client` as plugins are handed it: converted on the first call about it, then
/// kept with it for the connection's life.
pub(crate) fn prepared(client: &ClientInfo) -> &PreparedClient {
    client.prepared.get_or_init(|| PreparedClient::from(client))
}

/// `client` converted for one call and not kept: the authentication at CONNECT. Most
/// connections of a large fleet are idle after it and never call a hook again; kept,
/// the conversion (its strings, about 350 bytes) lived as long as each of them (issue
/// 14: bytes per idle connection). The first call after it makes the kept one.
pub(crate) fn converted(client: &ClientInfo) -> PreparedClient {
    PreparedClient::from(client)
}

impl From<&ClientInfo> for PreparedClient {
    fn from(c: &ClientInfo) -> Self {
        PreparedClient {
            current: wit::Client {
                client_id: c.client_id.to_string(),
                username: c.username.as_ref().map(|u| u.to_string()),
                peer_addr: c.peer_addr.to_string(),
                protocol_version: match c.protocol {
                    Protocol::V311 => 4,
                    Protocol::V5 => 5,
                },
                listener: c.listener.to_string(),
                listener_kind: c.listener_kind.into(),
                certificate: c.certificate.as_deref().map(certificate),
                user_properties: strings(&c.connect_user_properties),
            },
            v0_1: OnceLock::new(),
        }
    }
}

fn certificate(id: &CertificateIdentity) -> wit::CertificateIdentity {
    wit::CertificateIdentity {
        common_name: id.common_name.clone(),
        dns_names: id.dns_names.clone(),
        emails: id.emails.clone(),
        uris: id.uris.clone(),
    }
}

/// User properties as WIT strings (copied: a record handed to a plugin owns them).
fn strings(properties: &[(ByteString, ByteString)]) -> Vec<(String, String)> {
    properties
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// User properties back from WIT strings (moved, not copied).
fn byte_strings(properties: Vec<(String, String)>) -> Vec<(ByteString, ByteString)> {
    properties
        .into_iter()
        .map(|(k, v)| (ByteString::from(k), ByteString::from(v)))
        .collect()
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

impl From<wit::AuthStep> for PluginAuthStep {
    fn from(s: wit::AuthStep) -> Self {
        match s {
            wit::AuthStep::Continue(c) => PluginAuthStep::Continue {
                data: c.data,
                state: c.state,
            },
            wit::AuthStep::Success(s) => PluginAuthStep::Success {
                data: s.data,
                superuser: s.superuser,
            },
            wit::AuthStep::Failure(reason) => PluginAuthStep::Failure(reason),
            wit::AuthStep::Ignore => PluginAuthStep::Ignore,
        }
    }
}

/// The message as a plugin is handed it: only what the contract shows (no packet
/// id, DUP, topic alias or subscription identifiers).
impl From<&Publish> for wit::Message {
    fn from(publish: &Publish) -> Self {
        let p = &publish.properties;
        wit::Message {
            topic: publish.topic.to_string(),
            payload: publish.payload.to_vec(),
            qos: publish.qos as u8,
            retain: publish.retain,
            user_properties: strings(&p.user_properties),
            content_type: p.content_type.as_ref().map(|c| c.to_string()),
            payload_is_utf8: p.payload_format_indicator == Some(1),
            response_topic: p.response_topic.as_ref().map(|t| t.to_string()),
            correlation_data: p.correlation_data.as_ref().map(|c| c.to_vec()),
            message_expiry_interval: p.message_expiry_interval,
        }
    }
}

/// The publish a plugin's message `m` stands for, made from `original` (the one the
/// plugin was handed): it keeps what a plugin cannot see (packet id, DUP, topic alias,
/// subscription identifiers), and its QoS is never raised above the original's.
pub(crate) fn publish_from(original: &Publish, m: wit::Message) -> Publish {
    let mut publish = original.clone();
    publish.topic = ByteString::from(m.topic);
    publish.payload = Bytes::from(m.payload);
    publish.qos = QoS::from_u8(m.qos)
        .unwrap_or(original.qos)
        .min(original.qos);
    publish.retain = m.retain;
    let p = &mut publish.properties;
    p.user_properties = byte_strings(m.user_properties);
    p.content_type = m.content_type.map(ByteString::from);
    p.payload_format_indicator = m.payload_is_utf8.then_some(1);
    p.response_topic = m.response_topic.map(ByteString::from);
    p.correlation_data = m.correlation_data.map(Bytes::from);
    p.message_expiry_interval = m.message_expiry_interval;
    publish
}

/// A transform's answer about `original`.
pub(crate) fn transformed(original: &Publish, t: wit::Transformed) -> Transformed {
    match t {
        wit::Transformed::Keep => Transformed::Keep,
        wit::Transformed::Replace(m) => Transformed::Replace(Box::new(publish_from(original, m))),
        wit::Transformed::Drop(reason) => Transformed::Drop(reason),
    }
}

/// Converts a batch's `change`s (a message's new topic, if it changed, and the user
/// properties appended), one conversion shared between equal ones: a transform that
/// stamps every message gives the same change each time, converted once, then shared
/// by reference counts (in the queues the messages wait in too).
#[derive(Default)]
pub(crate) struct Changes {
    last: Option<Converted>,
}

/// The last change converted: as the chain gave it, and as an [`Edit`].
struct Converted {
    topic: Option<String>,
    added: Vec<(String, String)>,
    edit: Edit,
}

impl Changes {
    /// The edit for one message's change.
    pub(crate) fn edit(&mut self, topic: Option<String>, added: Vec<(String, String)>) -> Edit {
        if let Some(last) = &self.last
            && last.topic == topic
            && last.added == added
        {
            return last.edit.clone();
        }
        let edit = Edit::Change {
            topic: topic.as_deref().map(ByteString::from),
            add_user_properties: added
                .iter()
                .map(|(k, v)| (ByteString::from(k.as_str()), ByteString::from(v.as_str())))
                .collect(),
        };
        self.last = Some(Converted {
            topic,
            added,
            edit: edit.clone(),
        });
        edit
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
