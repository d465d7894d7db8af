//! The CONNECT handshake: checks the CONNECT, authenticates the client, attaches its
//! session and answers CONNACK, giving the serve loop a `Connection` with what was negotiated.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use tokio::sync::oneshot;
use tracing::debug;
use wasmq_codec::{ConnAck, ConnAckProperties, Connect, Packet, Protocol, ReasonCode};

use crate::broker::Broker;
use crate::enhanced_auth;
use crate::hooks::{AuthDecision, CertificateIdentity, ClientInfo};
use crate::listener::Endpoint;
use crate::message::{own_bytes, own_str, own_user_properties};
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::session::{ConnectedPeer, Owner};
use crate::topic::TopicName;

use super::gate::PolicyGate;
use super::negotiated::Negotiated;
use super::{Connection, FAREWELL_TIMEOUT};

impl Connection {
    /// Checks the CONNECT, authenticates, attaches the session and sends CONNACK. `None`
    /// when the connection was refused (the CONNACK saying why was sent).
    pub(super) async fn accept(
        broker: Arc<Broker>,
        connect: Connect,
        peer: SocketAddr,
        endpoint: &Endpoint,
        peer_certificate: Option<CertificateIdentity>,
        hs: &mut enhanced_auth::Handshake<'_>,
    ) -> anyhow::Result<Option<Connection>> {
        let limits = &broker.config.limits;
        let protocol = connect.protocol;
        let v5 = protocol == Protocol::V5;
        let mut assigned_client_identifier = None;
        let refusal = |code: ReasonCode, why: &str| {
            debug!(reason = why, code = code.0, "connection refused");
            let mut out = BytesMut::new();
            let reason_string = v5.then(|| ByteString::from(why));
            Packet::ConnAck(ConnAck {
                session_present: false,
                reason_code: code,
                properties: ConnAckProperties {
                    reason_string,
                    ..Default::default()
                },
            })
            .encode(protocol, &mut out);
            out
        };
        // A macro, not a closure: a closure would hold `writer` for the whole function,
        // and the enhanced authentication exchange writes to it too.
        macro_rules! refuse {
            ($code:expr, $why:expr $(,)?) => {{
                let out = refusal($code, $why);
                let _ = tokio::time::timeout(FAREWELL_TIMEOUT, hs.writer.write_all(&out)).await;
                return Ok(None);
            }};
        }

        let client_id = if connect.client_id.is_empty() {
            if !v5 && !connect.clean_start {
                refuse!(
                    ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                    "[MQTT-3.1.3-8] empty client id needs clean session",
                );
            }
            let id = ByteString::from(generated_client_id(broker.connection_id()));
            if v5 {
                assigned_client_identifier = Some(id.clone());
            }
            id
        } else {
            // A copy: a slice would keep the whole CONNECT frame's buffer alive for as
            // long as the session lives.
            own_str(&connect.client_id)
        };
        if client_id.len() > limits.client_id_max_len {
            refuse!(
                ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                "client id too long",
            );
        }

        let Ok(negotiated) = Negotiated::of(&connect, limits) else {
            refuse!(
                ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                "keep alive above the maximum",
            );
        };

        if let Some(will) = &connect.will
            && let Err(error) = TopicName::new(will.topic.clone(), limits.max_topic_levels)
        {
            if !v5 {
                // v3.1.1 has no return code for it: a CONNECT that breaks the rules is
                // closed without CONNACK [MQTT-3.1.4-1] (a return code 3, "server
                // unavailable", would only make the client retry).
                debug!(%error, "connection refused: will topic");
                return Ok(None);
            }
            refuse!(
                ReasonCode::TOPIC_NAME_INVALID,
                &format!("will topic: {error}"),
            );
        }
        // MQTT 5 enhanced authentication (§4.12); v3.1.1 has no such property.
        let auth_method = connect
            .properties
            .authentication_method
            .as_deref()
            .map(ByteString::from);

        // `use_identity_as_username`: the verified certificate is the authentication
        // (the CONNECT's username and password are not used, as in Mosquitto), and its
        // CN the username the authorization plugins see.
        let identity = if endpoint.use_identity_as_username {
            match peer_certificate
                .as_ref()
                .and_then(|c| c.common_name.as_deref())
            {
                Some(cn) => Some(ByteString::from(cn)),
                None => {
                    refuse!(
                        ReasonCode::NOT_AUTHORIZED,
                        "the client certificate has no subject CN to use as the username",
                    );
                }
            }
        } else {
            None
        };
        let client = ClientInfo {
            client_id: client_id.clone(),
            username: identity
                .clone()
                .or_else(|| connect.username.as_deref().map(ByteString::from)),
            peer_addr: peer,
            protocol,
            listener: endpoint.name,
            listener_kind: endpoint.kind,
            certificate: peer_certificate.map(Box::new),
            // Copied: the strings of the CONNECT are slices of the read buffer, which
            // the connection must not keep alive for its whole life.
            connect_user_properties: connect
                .properties
                .user_properties
                .iter()
                .map(|(k, v)| (ByteString::from(&**k), ByteString::from(&**v)))
                .collect(),
            prepared: Default::default(),
        };
        let mut auth_data_out = None;
        let counted = &broker.metrics.enhanced_auth_connect;
        if auth_method.is_some() {
            Metrics::add(&counted.started, 1);
        }
        let superuser = match (&broker.hooks, &auth_method) {
            (None, Some(_)) => {
                Metrics::add(&counted.refused, 1);
                refuse!(
                    ReasonCode::BAD_AUTHENTICATION_METHOD,
                    "no plugin does enhanced authentication",
                );
            }
            // The plugin that knows the method decides alone: the authn chain is not asked.
            (Some(hooks), Some(method)) => {
                let data = connect
                    .properties
                    .authentication_data
                    .as_ref()
                    .map(|d| Bytes::copy_from_slice(d));
                match enhanced_auth::at_connect(&**hooks, limits, &client, method, data, hs).await?
                {
                    enhanced_auth::Ended::Success { data, superuser } => {
                        Metrics::add(&counted.succeeded, 1);
                        auth_data_out = data;
                        superuser
                    }
                    enhanced_auth::Ended::Refused((code, why)) => {
                        Metrics::add(&counted.refused, 1);
                        refuse!(code, &why)
                    }
                    enhanced_auth::Ended::TimedOut(why) => {
                        Metrics::add(&counted.timed_out, 1);
                        refuse!(ReasonCode::NOT_AUTHORIZED, &why)
                    }
                }
            }
            (None, None) => false,
            (Some(_), None) if identity.is_some() => false,
            (Some(hooks), None) => {
                match hooks.authenticate(&client, connect.password.as_ref()).await {
                    AuthDecision::Allow { superuser } => superuser,
                    AuthDecision::Deny(code) => refuse!(code, "authentication failed"),
                }
            }
        };

        let expiry = negotiated.expiry;
        let connection_id = broker.connection_id();
        let (kick_tx, kick) = oneshot::channel();
        let owner = Owner {
            connection_id,
            peer: ConnectedPeer {
                username: client.username.clone(),
                addr: client.peer_addr,
                protocol,
                listener: client.listener,
            },
            kick: Some(kick_tx),
        };
        let (session, session_present) =
            broker.attach(&client_id, connect.clean_start, expiry, owner);
        let kept_session = expiry > 0 && broker.journal().is_some();
        tracing::Span::current().record("client_id", &*client_id);
        debug!(
            ?protocol,
            clean_start = connect.clean_start,
            session_present,
            keep_alive = negotiated.keep_alive,
            "connected"
        );

        let mut connection = Connection {
            broker: broker.clone(),
            session,
            client,
            connection_id,
            kick,
            expiry_was_zero: expiry == 0,
            will: connect.will.map(|mut will| {
                // Copies, like the client id, so the CONNECT frame can be freed.
                will.topic = own_str(&will.topic);
                will.payload = own_bytes(&will.payload);
                let properties = &mut will.properties;
                properties.content_type = properties.content_type.as_ref().map(own_str);
                properties.response_topic = properties.response_topic.as_ref().map(own_str);
                properties.correlation_data = properties.correlation_data.as_ref().map(own_bytes);
                own_user_properties(&mut properties.user_properties);
                Box::new(will)
            }),
            aliases: None,
            outbox: Outbox::default(),
            pending: true,
            hold: None,
            // Grows on first use: idle connections keep no batch space.
            scratch: Vec::new(),
            gate: PolicyGate::new(&broker, superuser),
            kept_session,
            unkept: Vec::new(),
            keep_upto: 0,
            auth_method,
            reauth: None,
            negotiated,
        };
        let properties = if v5 {
            ConnAckProperties {
                session_expiry_interval: (expiry != connection.negotiated.requested_expiry)
                    .then_some(expiry),
                receive_maximum: Some(limits.receive_maximum),
                maximum_packet_size: Some(limits.max_packet_size),
                assigned_client_identifier,
                topic_alias_maximum: (limits.topic_alias_maximum > 0)
                    .then_some(limits.topic_alias_maximum),
                server_keep_alive: connection.negotiated.server_keep_alive,
                authentication_method: connection.auth_method.clone(),
                authentication_data: auth_data_out,
                ..Default::default()
            }
        } else {
            ConnAckProperties::default()
        };
        connection.send(Packet::ConnAck(ConnAck {
            session_present,
            reason_code: ReasonCode::SUCCESS,
            properties,
        }));
        // Kept with a persistent session: a will still goes after a crash.
        connection
            .session
            .lock()
            .keep_will(connection.will.as_deref());
        Metrics::add(&broker.metrics.clients_connected, 1);
        if session_present {
            connection.resend_inflight();
        }
        Ok(Some(connection))
    }
}

/// A client id for a client that sent none: unique in this process, hard to guess.
fn generated_client_id(connection_id: u64) -> String {
    use std::hash::{BuildHasher, RandomState};
    let random = RandomState::new().hash_one(connection_id);
    format!("wasmq-{connection_id:x}-{random:016x}")
}
