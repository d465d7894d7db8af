//! Who a hook is asked about: the client of one connection.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytestring::ByteString;
use serde::Deserialize;
use wasmq_codec::{Protocol, UserProperties};

/// Who is asking: made by the broker's handshake once per connection, and handed to
/// every hook call about it.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The client identifier (assigned one included).
    pub client_id: ByteString,
    /// The User Name of CONNECT.
    pub username: Option<ByteString>,
    /// The peer's address.
    pub peer_addr: SocketAddr,
    /// The protocol of the connection.
    pub protocol: Protocol,
    /// The listener's name.
    pub listener: &'static str,
    /// What the listener speaks: plugins key policy on it (a client on plain TCP).
    pub listener_kind: ListenerKind,
    /// What the client's TLS certificate names, when the listener verified one (boxed:
    /// most connections have none, and this struct lives as long as the connection).
    pub certificate: Option<Box<CertificateIdentity>>,
    /// The MQTT 5 user properties of CONNECT, copied out of the read buffer (empty for
    /// 3.1.1). Bounded by the maximum packet size the CONNECT was read within.
    pub connect_user_properties: UserProperties,
    /// This client as the hooks' implementation converted it for its own use (the
    /// plugin host: the WIT record plugins are handed), made on the first hook call after
    /// the authentication and kept for the connection's life: converting it on every
    /// PUBLISH (four strings, the address formatted) was a measurable part of a
    /// transform's cost; an idle connection never makes it. So a client is
    /// not changed once it was asked about: a clone shares the slot, and a changed copy
    /// needs `Prepared::default()` (what struct update from a fresh client gives).
    pub prepared: Prepared,
}

impl ClientInfo {
    /// A client of `listener` (a plain TCP one) with no user name, certificate or
    /// CONNECT user properties: what tests and tools start from.
    pub fn new(
        client_id: impl Into<ByteString>,
        peer_addr: SocketAddr,
        protocol: Protocol,
        listener: &'static str,
    ) -> ClientInfo {
        ClientInfo {
            client_id: client_id.into(),
            username: None,
            peer_addr,
            protocol,
            listener,
            listener_kind: ListenerKind::Tcp,
            certificate: None,
            connect_user_properties: UserProperties::new(),
            prepared: Prepared::default(),
        }
    }
}

/// A value the hooks' implementation derives from a [`ClientInfo`] once and reuses on
/// every call about it. Its type is the implementation's business: the broker only
/// keeps it with the client (a clone shares it).
#[derive(Clone, Default)]
pub struct Prepared(OnceLock<Arc<dyn Any + Send + Sync>>);

impl Prepared {
    /// The value, made by `init` on the first call.
    ///
    /// # Panics
    ///
    /// When it was first made as another type: one broker has one hooks
    /// implementation, so that is a bug.
    pub fn get_or_init<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> &T {
        self.0
            .get_or_init(|| Arc::new(init()))
            .downcast_ref()
            .expect("a client is prepared by one hooks implementation, as one type")
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.0.get().is_some() {
            "made"
        } else {
            "not yet"
        };
        write!(f, "Prepared({state})")
    }
}

/// What a listener speaks below MQTT (the configuration's `kind`, and WIT
/// `types.listener-kind` since contract 0.2.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// MQTT over plain TCP.
    #[default]
    Tcp,
    /// MQTT over TLS (1.2 or 1.3, ALPN `mqtt`).
    Tls,
    /// MQTT over WebSocket (subprotocol `mqtt`).
    Ws,
    /// MQTT over WebSocket over TLS (ALPN `http/1.1`, as browsers offer, or `mqtt`).
    Wss,
}

impl ListenerKind {
    /// Whether TLS is below (tls, wss).
    pub fn is_tls(self) -> bool {
        matches!(self, ListenerKind::Tls | ListenerKind::Wss)
    }

    /// Whether WebSocket is below (ws, wss).
    pub fn is_ws(self) -> bool {
        matches!(self, ListenerKind::Ws | ListenerKind::Wss)
    }

    /// The kind as the configuration writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Tls => "tls",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
        }
    }
}

/// What a client's verified TLS certificate names, as the broker reads it from the
/// handshake (WIT `types.certificate-identity`, since contract 0.2.0): the subject CN
/// and the subject alternative names read as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
