//! The plain Rust types of the hook calls, independent of the generated
//! bindings (the broker's adapter converts its own types to and from these).

use std::fmt;

/// The client a hook is asked about (WIT `types.client`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The MQTT client identifier.
    pub client_id: String,
    /// The user name from CONNECT, if any.
    pub username: Option<String>,
    /// The peer's address, `ip:port`.
    pub peer_addr: String,
    /// The MQTT protocol level: 4 for 3.1.1, 5 for 5.0.
    pub protocol_version: u8,
    /// The name of the listener the client came through.
    pub listener: String,
    /// What that listener speaks.
    pub listener_kind: ListenerKind,
    /// The identity of the client's verified TLS certificate, when it sent one.
    pub certificate: Option<CertificateIdentity>,
    /// The MQTT 5 user properties of the client's CONNECT, in order (empty for 3.1.1).
    pub user_properties: Vec<(String, String)>,
}

/// The kind of listener a client came through (WIT `types.listener-kind`, since
/// contract 0.2.0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ListenerKind {
    /// MQTT over plain TCP.
    #[default]
    Tcp,
    /// MQTT over TLS.
    Tls,
    /// MQTT over WebSocket.
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

/// What a verified TLS client certificate names (WIT `types.certificate-identity`,
/// since contract 0.2.0): the subject CN and the subject alternative names read as text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateIdentity {
    /// The first common name of the subject.
    pub common_name: Option<String>,
    /// `dNSName` alternative names.
    pub dns_names: Vec<String>,
    /// `rfc822Name` (email) alternative names.
    pub emails: Vec<String>,
    /// `uniformResourceIdentifier` alternative names.
    pub uris: Vec<String>,
}

/// What a client wants to do with a topic (WIT `types.action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Publish to a topic name.
    Publish,
    /// Subscribe to a topic filter.
    Subscribe,
}

/// A plugin's (or a chain's) answer (WIT `types.decision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Allowed; stops the chain.
    Allow,
    /// Denied; stops the chain.
    Deny,
    /// Not decided: the next plugin, or the broker's default, decides.
    Ignore,
}

/// How long an authorization answer may be kept (WIT `types.cache-lifetime`, since
/// contract 0.2.0), and what the answers of a chain combine to: a bound in seconds
/// and/or the operator's TTL, whichever is shorter; neither is "for the connection".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheLifetime {
    /// At most this many seconds (0: not kept).
    pub max_secs: Option<u32>,
    /// At most the operator's `[authz_cache]` TTL.
    pub operator_ttl: bool,
}

impl CacheLifetime {
    /// The operator's TTL (what 0.1.0 answers and a fault-free default get).
    pub const OPERATOR_TTL: CacheLifetime = CacheLifetime {
        max_secs: None,
        operator_ttl: true,
    };
    /// Not kept at all.
    pub const NONE: CacheLifetime = CacheLifetime {
        max_secs: Some(0),
        operator_ttl: false,
    };
    /// For the rest of the connection.
    pub const CONNECTION: CacheLifetime = CacheLifetime {
        max_secs: None,
        operator_ttl: false,
    };

    /// Up to `secs` seconds.
    pub const fn seconds(secs: u32) -> CacheLifetime {
        CacheLifetime {
            max_secs: Some(secs),
            operator_ttl: false,
        }
    }

    /// The shorter of both (what a chain's answer gets from every plugin asked).
    pub fn shortest(self, other: CacheLifetime) -> CacheLifetime {
        CacheLifetime {
            max_secs: match (self.max_secs, other.max_secs) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            operator_ttl: self.operator_ttl || other.operator_ttl,
        }
    }
}

impl Default for CacheLifetime {
    fn default() -> Self {
        CacheLifetime::OPERATOR_TTL
    }
}

/// The answer of an authentication hook or chain (WIT `types.auth-result`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthOutcome {
    /// Allow, deny, or ignore (no plugin decided: `allow_anonymous` decides).
    pub decision: Decision,
    /// Whether the client is a superuser (skips authorization). Only set with `Allow`.
    pub superuser: bool,
    /// Why the client was denied, for the log.
    pub reason: Option<String>,
}

impl AuthOutcome {
    /// No plugin decided.
    pub fn ignore() -> Self {
        Self {
            decision: Decision::Ignore,
            superuser: false,
            reason: None,
        }
    }

    /// Denied, with a reason for the log.
    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            decision: Decision::Deny,
            superuser: false,
            reason: Some(reason.into()),
        }
    }
}

/// An application message (WIT `types.message`). `Debug` shows the payload's
/// length, not its bytes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Topic name.
    pub topic: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// QoS 0, 1 or 2.
    pub qos: u8,
    /// Retain flag.
    pub retain: bool,
    /// MQTT 5 user properties, in order.
    pub user_properties: Vec<(String, String)>,
    /// MQTT 5 content type.
    pub content_type: Option<String>,
    /// MQTT 5 payload format indicator (true: UTF-8 text).
    pub payload_is_utf8: bool,
    /// MQTT 5 response topic.
    pub response_topic: Option<String>,
    /// MQTT 5 correlation data.
    pub correlation_data: Option<Vec<u8>>,
    /// MQTT 5 message expiry interval, seconds.
    pub message_expiry_interval: Option<u32>,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic)
            .field("payload_len", &self.payload.len())
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("user_properties", &self.user_properties)
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

/// What a transform hook or chain did with a message (WIT `types.transformed`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transformed {
    /// Unchanged.
    Keep,
    /// Rewritten: route this message instead.
    Replace(Message),
    /// Dropped, with the reason for the log.
    Drop(String),
}

/// One step of an enhanced authentication exchange, as a plugin answered it (the
/// `auth` hook's `auth-step`).
#[derive(Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Send the client `data` in an AUTH 0x18 and hand `state` to the next step.
    Continue {
        /// The challenge.
        data: Vec<u8>,
        /// Opaque to the host, kept by the caller until the client answers.
        state: Vec<u8>,
    },
    /// Authenticated, with the final data for the client, if any.
    Success {
        /// The Authentication Data of the CONNACK (or AUTH 0x00).
        data: Option<Vec<u8>>,
        /// Whether authorization is skipped for the client.
        superuser: bool,
    },
    /// Refused; the string is for the log.
    Failure(String),
    /// Not this plugin's method.
    Ignore,
}

/// Lengths only: the data and state of an exchange are secrets (nonces, keys).
impl fmt::Debug for AuthStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthStep::Continue { data, state } => write!(
                f,
                "Continue {{ data: {} bytes, state: {} bytes }}",
                data.len(),
                state.len()
            ),
            AuthStep::Success { data, superuser } => write!(
                f,
                "Success {{ data: {:?} bytes, superuser: {superuser} }}",
                data.as_ref().map(Vec::len)
            ),
            AuthStep::Failure(reason) => write!(f, "Failure({reason:?})"),
            AuthStep::Ignore => f.write_str("Ignore"),
        }
    }
}

/// What a batch transform (or chain) did to one message (WIT `types.edit`, since
/// contract 0.2.0): as narrow as the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Unchanged.
    Keep,
    /// Dropped, with the reason for the log.
    Drop(String),
    /// Routed under `topic` (when set), with `add_user_properties` appended after the
    /// message's own; nothing else changed.
    Change {
        /// The new topic, if it changed.
        topic: Option<String>,
        /// User properties appended, in order.
        add_user_properties: Vec<(String, String)>,
    },
    /// Rewritten: route this message instead.
    Replace(Message),
}

/// The hook interfaces a plugin exports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookSet {
    /// Exports `wasmq:plugin/authn`.
    pub authn: bool,
    /// Exports `wasmq:plugin/authz`.
    pub authz: bool,
    /// Exports `wasmq:plugin/deliver` (since contract 0.2.0): read access on each
    /// delivery through a wildcard subscription.
    pub deliver: bool,
    /// Exports `wasmq:plugin/transform`.
    pub transform: bool,
    /// Exports `wasmq:plugin/auth` (since contract 0.2.0): MQTT 5 enhanced
    /// authentication (AUTH packets).
    pub auth: bool,
}

impl HookSet {
    /// Every hook.
    pub const ALL: HookSet = HookSet {
        authn: true,
        authz: true,
        deliver: true,
        transform: true,
        auth: true,
    };

    /// The hooks in both sets.
    pub fn intersect(self, other: HookSet) -> HookSet {
        HookSet {
            authn: self.authn && other.authn,
            authz: self.authz && other.authz,
            deliver: self.deliver && other.deliver,
            transform: self.transform && other.transform,
            auth: self.auth && other.auth,
        }
    }

    /// Whether no hook is set.
    pub fn is_empty(self) -> bool {
        !(self.authn || self.authz || self.deliver || self.transform || self.auth)
    }
}

impl fmt::Display for HookSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.authn, "authn"),
            (self.authz, "authz"),
            (self.deliver, "deliver"),
            (self.transform, "transform"),
            (self.auth, "auth"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(", "))
        }
    }
}

/// The host capabilities a plugin imports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Imports `wasmq:plugin/log`.
    pub log: bool,
    /// Imports `wasmq:plugin/config`.
    pub config: bool,
    /// Imports `wasmq:plugin/sql`.
    pub sql: bool,
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.log, "log"),
            (self.config, "config"),
            (self.sql, "sql"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CacheLifetime;

    #[test]
    fn a_chain_keeps_its_answer_for_the_shortest_lifetime_asked() {
        let l = CacheLifetime::CONNECTION;
        assert_eq!(
            l.shortest(CacheLifetime::OPERATOR_TTL),
            CacheLifetime::OPERATOR_TTL
        );
        let five = CacheLifetime::seconds(5);
        assert_eq!(
            five.shortest(CacheLifetime::OPERATOR_TTL),
            CacheLifetime {
                max_secs: Some(5),
                operator_ttl: true,
            }
        );
        assert_eq!(
            CacheLifetime::seconds(120).shortest(five),
            five,
            "the shorter bound in seconds"
        );
        assert_eq!(five.shortest(CacheLifetime::NONE), CacheLifetime::NONE);
    }
}
