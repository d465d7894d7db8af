//! The one `bindgen!` of the host, generated from the `full-plugin` world
//! (every hook and every capability), and the conversions between the
//! generated types and the crate's plain types in [`crate::types`].
//!
//! A plugin exports any subset of the hooks: the per-interface
//! `GuestIndices::new(&instance_pre)` succeeds only for the interfaces the
//! component really exports, which is how [`crate::plugin`] loads them one by one.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "full-plugin",
    imports: {
        // A database query may be slow: it must not block a tokio worker.
        "wasmq:plugin/sql.query": async,
        default: tracing,
    },
    exports: { default: async },
});

pub use exports::wasmq::plugin::{authn, authz, transform};
pub use wasmq::plugin::types as wit;

use crate::types::{Action, AuthOutcome, ClientInfo, Decision, Message, Transformed};

/// A [`ClientInfo`] converted, once, into the record every hook call hands to
/// a plugin. The broker asks about the same client on every PUBLISH of a
/// connection; converting it per call cost four `String`s (and the caller's
/// own conversion, a formatted address) per message. Build one per
/// connection and pass it to [`crate::Chain::transform_prepared`] and
/// [`crate::Chain::authorize_prepared`].
#[derive(Clone, Debug)]
pub struct PreparedClient(pub(crate) wit::Client);

impl From<&ClientInfo> for PreparedClient {
    fn from(c: &ClientInfo) -> Self {
        PreparedClient(c.into())
    }
}

impl From<ClientInfo> for PreparedClient {
    fn from(c: ClientInfo) -> Self {
        PreparedClient(wit::Client {
            client_id: c.client_id,
            username: c.username,
            peer_addr: c.peer_addr,
            protocol_version: c.protocol_version,
            listener: c.listener,
        })
    }
}

impl From<&ClientInfo> for wit::Client {
    fn from(c: &ClientInfo) -> Self {
        wit::Client {
            client_id: c.client_id.clone(),
            username: c.username.clone(),
            peer_addr: c.peer_addr.clone(),
            protocol_version: c.protocol_version,
            listener: c.listener.clone(),
        }
    }
}

impl From<Action> for wit::Action {
    fn from(a: Action) -> Self {
        match a {
            Action::Publish => wit::Action::Publish,
            Action::Subscribe => wit::Action::Subscribe,
        }
    }
}

impl From<wit::Decision> for Decision {
    fn from(d: wit::Decision) -> Self {
        match d {
            wit::Decision::Allow => Decision::Allow,
            wit::Decision::Deny => Decision::Deny,
            wit::Decision::Ignore => Decision::Ignore,
        }
    }
}

impl From<wit::AuthResult> for AuthOutcome {
    fn from(r: wit::AuthResult) -> Self {
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
