//! One client connection: the CONNECT handshake, then a loop that reads packets, pulls
//! deliveries from the session, and writes, all in one task.
//!
//! Reading and writing run side by side in one `select!`, so a client that stops reading
//! never stops the broker from reading its acknowledgements. Outgoing packets are encoded
//! into one buffer and written together (batched writes); the session queue is only
//! drained while that buffer is below `write_buffer_high_water`, which is how a slow
//! reader pushes back. A publisher whose messages congest a subscriber's queue is held
//! back: its socket is not read until that queue drains (`backpressure.rs`).
//!
//! Every read, and every 4 packets handled, spend a unit of tokio's cooperative budget
//! (128 a turn). Waiting for readiness and `try_read` spend none, so a connection whose
//! socket always had input never gave its worker back: publishers at full speed starved
//! every subscriber.
//!
//! With a transform plugin that takes batches (`transform-batch`), the QoS 0 and 1
//! PUBLISHes of one read are handled together ([`Connection::publish_batch`]): each is
//! checked and authorized in order, the transform chain is called once for all of them,
//! then each is routed and acknowledged in order, as one at a time would be. A QoS 2
//! PUBLISH or a packet of another kind ends the batch.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, oneshot, watch};
use tracing::{Instrument, debug, field, info, info_span, warn};
use wasmq_codec::{
    AckProperties, Auth, ConnAck, ConnAckProperties, Connect, DecodeError, Disconnect,
    DisconnectProperties, Packet, Protocol, PubAckBody, Publish, QoS, ReasonCode, RetainHandling,
    SubAck, Subscribe, UnsubAck, Unsubscribe,
};

use crate::authz_cache::{AuthzCache, TransformCache};
use crate::backpressure::Hold;
use crate::broker::Broker;
use crate::config::DenyAction;
use crate::enhanced_auth;
use crate::hooks::{
    Action, AuthDecision, AuthExchange, CertificateIdentity, ClientInfo, TransformEdit, Transformed,
};
use crate::listener::Endpoint;
use crate::message::{Delivery, Message, own_bytes, own_str, own_user_properties};
use crate::metrics::Metrics;
use crate::outbox::{Outbox, SHARED_PAYLOAD_MIN};
use crate::router::SubscriptionData;
use crate::session::{ConnectedPeer, Kick, Outgoing, Owner, PendingWill, Session, Stage};
use crate::topic::{TopicFilter, TopicName};
use crate::transport::{self, READ_CHUNK, Reader, Writer};

/// Packets handled per unit of tokio's cooperative budget (128 units a turn, so a turn
/// is at most 512 packets or 128 reads). A unit per packet cost 8% of the CPU time per
/// message in pairs QoS 0 16 B (A/B in one run: 1.15 M vs 1.27 M msg/s per CPU-s, the
/// same as without the budget at 16 packets a unit); at 16, turns of 2,048 packets kept
/// an idle client's PINGREQ waiting over a second in a debug build under overload.
const PACKETS_PER_BUDGET_UNIT: u32 = 4;
/// PUBLISHes handed to a batch transform in one call, at most: with
/// [`PUBLISH_BATCH_BYTES_MAX`], bounds what one call puts into a plugin's memory.
const PUBLISH_BATCH_MAX: usize = 128;
/// Payload and topic bytes of one batch, at most (a plugin instance has 16 MiB by default).
const PUBLISH_BATCH_BYTES_MAX: usize = 256 << 10;
/// Deliveries taken from the session per lock: bounds the time the lock is held.
const PULL_BATCH: usize = 64;
/// Time given to a last DISCONNECT or CONNACK to leave before the socket is dropped.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);

/// The connection slots a connection holds: the broker's, and its listener's if it has
/// a limit of its own.
pub(crate) type Permits = (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>);

/// Serves one accepted connection of `endpoint`'s listener until it closes.
pub(crate) async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    endpoint: Arc<Endpoint>,
    shutdown: watch::Receiver<bool>,
    _permits: Permits,
) {
    let _ = stream.set_nodelay(true);
    let span = info_span!("connection", %peer, listener = %endpoint.name, client_id = field::Empty);
    async move {
        match run(broker, stream, peer, &endpoint, shutdown).await {
            Ok(()) => debug!("connection closed"),
            Err(error) => debug!(%error, "connection closed"),
        }
    }
    .instrument(span)
    .await
}

/// Why a connection ends.
#[derive(Debug)]
enum Close {
    /// DISCONNECT from the client; `with_will` for v5 reason 0x04.
    Disconnect { with_will: bool },
    /// The peer closed the socket, or it failed.
    Lost(String),
    /// The broker closes the connection with this reason (sent to v5 clients).
    Reason(ReasonCode, String),
    /// The server is shutting down.
    Shutdown,
}

impl Close {
    fn protocol(code: ReasonCode, why: impl ToString) -> Close {
        Close::Reason(code, why.to_string())
    }
}

impl From<std::io::Error> for Close {
    fn from(error: std::io::Error) -> Self {
        Close::Lost(error.to_string())
    }
}

async fn run(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    endpoint: &Endpoint,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let limits = &broker.config.limits;
    // The TLS handshake and the WebSocket upgrade count in the time to CONNECT.
    let deadline = tokio::time::Instant::now() + limits.connect_timeout();
    let established = tokio::select! {
        established = transport::establish(stream, endpoint, deadline, limits.max_packet_size) => established,
        _ = shutdown.changed() => return Ok(()),
    };
    let transport::Established {
        mut reader,
        mut writer,
        peer_certificate,
    } = match established {
        Ok(established) => established,
        Err(error) => {
            // The client's mistake, told to the operator: nothing else is disturbed.
            info!("connection refused: {error:#}");
            return Ok(());
        }
    };
    // Small: a CONNECT is small, and idle connections are many (see below).
    let mut rbuf = BytesMut::with_capacity(512);
    // The first packet must be CONNECT [MQTT-3.1.0-1], within connect_timeout_ms.
    let connect = loop {
        match Packet::decode(&mut rbuf, Protocol::V5, limits.max_packet_size) {
            Ok(Some(Packet::Connect(connect))) => break connect,
            Ok(Some(other)) => anyhow::bail!(
                "[MQTT-3.1.0-1] first packet is {}, not CONNECT",
                other.kind()
            ),
            Ok(None) => {}
            Err(
                error @ (DecodeError::UnsupportedProtocolVersion(_)
                | DecodeError::InvalidProtocolName),
            ) => {
                // Answered in the v3.1.1 form, which every version understands [MQTT-3.1.2-2].
                let mut out = BytesMut::new();
                Packet::ConnAck(ConnAck {
                    reason_code: error.reason_code(),
                    ..Default::default()
                })
                .encode(Protocol::V311, &mut out);
                let _ = tokio::time::timeout(FAREWELL_TIMEOUT, writer.write_all(&out)).await;
                transport::linger(&mut reader, &mut writer).await;
                anyhow::bail!(error);
            }
            Err(error) => {
                Metrics::add(&broker.metrics.protocol_errors, 1);
                anyhow::bail!(error);
            }
        }
        let read = tokio::select! {
            read = tokio::time::timeout_at(deadline, reader.read_buf(&mut rbuf)) => read,
            _ = shutdown.changed() => return Ok(()),
        };
        match read {
            Err(_) => anyhow::bail!("no CONNECT within {} ms", limits.connect_timeout_ms),
            Ok(Ok(0)) => anyhow::bail!("closed before CONNECT"),
            Ok(Ok(n)) => Metrics::add(&broker.metrics.bytes_received, n as u64),
            Ok(Err(error)) => return Err(error.into()),
        }
    };
    let Some(mut connection) = Connection::accept(
        broker.clone(),
        *connect,
        peer,
        endpoint,
        peer_certificate,
        &mut enhanced_auth::Handshake {
            reader: &mut reader,
            writer: &mut writer,
            rbuf: &mut rbuf,
            deadline,
        },
    )
    .await?
    else {
        // Refused: the CONNACK saying why was sent.
        transport::linger(&mut reader, &mut writer).await;
        return Ok(());
    };
    if rbuf.is_empty() {
        // Let the handshake buffer go: an idle connection then holds no read buffer
        // (`serve` gives it one of READ_CHUNK bytes when data arrives).
        rbuf = BytesMut::new();
    }
    let close = connection
        .serve(&mut reader, &mut writer, rbuf, &mut shutdown)
        .await;
    connection.finish(close, &mut reader, &mut writer).await;
    Ok(())
}

/// A connection after a successful CONNECT.
struct Connection {
    broker: Arc<Broker>,
    session: Arc<Session>,
    client: ClientInfo,
    connection_id: u64,
    kick: oneshot::Receiver<Kick>,
    superuser: bool,
    /// 1.5 x Keep Alive; `None` when keep-alive is off.
    keep_alive_timeout: Option<Duration>,
    /// Whether the session ends with the connection (a later DISCONNECT may not change it).
    expiry_was_zero: bool,
    /// min(max_inflight, the client's Receive Maximum).
    send_window: usize,
    client_max_packet_size: usize,
    client_topic_alias_max: u16,
    problem_information: bool,
    will: Option<Box<wasmq_codec::LastWill>>,
    aliases_in: HashMap<u16, ByteString>,
    aliases_out: HashMap<ByteString, u16>,
    outbox: Outbox,
    /// The session may hold deliveries to pull.
    pending: bool,
    /// Set while this connection's socket is not read because a message it published
    /// congested another session's queue.
    hold: Option<Box<Hold>>,
    scratch: Vec<(u16, Delivery)>,
    authz_cache: AuthzCache,
    transform_cache: TransformCache,
    /// Read access of this client on topics it receives through wildcard filters (the
    /// `deliver` hook), cached like `authz_cache` but apart from it (keyed by topic, QoS
    /// and retain flag under [`Action::Subscribe`]).
    read_cache: AuthzCache,
    /// The delivery at the front of the queue needs a read decision that is not cached:
    /// `pull` stopped before it, and the serve loop asks the hooks (`decide_read`).
    read_question: Option<ReadQuestion>,
    /// The answer to the last `read_question` when it was not cached (made blind, or
    /// the cache is off): used by the next `pull` for that front delivery, then dropped.
    read_verdict: Option<(ReadQuestion, bool)>,
    /// The last `read_question`, when its answer went into the read cache: the next
    /// `pull` finds it there without counting that as a cache hit (it was a miss).
    read_asked: Option<ReadQuestion>,
    /// The session is persistent and the broker has a durable store.
    kept_session: bool,
    /// Replies that confirm something kept (PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK),
    /// held until the journal has written it (`store/journal.rs`), in order.
    unkept: Vec<Packet>,
    /// The journal change the held replies wait for.
    keep_upto: u64,
    /// The Authentication Method of CONNECT (MQTT 5 enhanced authentication): a
    /// re-authentication must use the same [MQTT-4.12.1-1]. None without one.
    auth_method: Option<ByteString>,
    /// A re-authentication under way: where its exchange stands and its rounds so far.
    reauth: Option<(AuthExchange, u32)>,
}

impl Connection {
    fn v5(&self) -> bool {
        self.client.protocol == Protocol::V5
    }

    /// Checks the CONNECT, authenticates, attaches the session and sends CONNACK. `None`
    /// when the connection was refused (the CONNACK saying why was sent).
    async fn accept(
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

        let max_keep_alive = limits.keep_alive_max_secs;
        let mut keep_alive = connect.keep_alive;
        let mut server_keep_alive = None;
        if keep_alive > max_keep_alive || (keep_alive == 0 && max_keep_alive < u16::MAX) {
            if v5 {
                keep_alive = max_keep_alive;
                server_keep_alive = Some(max_keep_alive);
            } else if keep_alive > max_keep_alive {
                refuse!(
                    ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                    "keep alive above the maximum",
                );
            }
        }

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
            prepared: OnceLock::new(),
        };
        let mut auth_data_out = None;
        let superuser = match (&broker.hooks, &auth_method) {
            (None, Some(_)) => {
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
                        auth_data_out = data;
                        superuser
                    }
                    enhanced_auth::Ended::Refused((code, why)) => refuse!(code, &why),
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

        let requested_expiry = match (v5, connect.clean_start) {
            (true, _) => connect.properties.session_expiry_interval.unwrap_or(0),
            (false, true) => 0,
            (false, false) => u32::MAX,
        };
        let expiry = requested_expiry.min(limits.session_expiry_max_secs);
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
            keep_alive,
            "connected"
        );

        let props = &connect.properties;
        let mut connection = Connection {
            broker: broker.clone(),
            session,
            client,
            connection_id,
            kick,
            superuser,
            keep_alive_timeout: (keep_alive > 0)
                .then(|| Duration::from_millis(u64::from(keep_alive) * 1500)),
            expiry_was_zero: expiry == 0,
            send_window: usize::from(
                limits
                    .max_inflight
                    .min(props.receive_maximum.unwrap_or(u16::MAX)),
            ),
            client_max_packet_size: props.maximum_packet_size.map_or(usize::MAX, |m| m as usize),
            // The broker's own maximum bounds the aliases it keeps for a client too.
            client_topic_alias_max: if v5 {
                props
                    .topic_alias_maximum
                    .unwrap_or(0)
                    .min(limits.topic_alias_maximum)
            } else {
                0
            },
            problem_information: props.request_problem_information.unwrap_or(true),
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
            aliases_in: HashMap::new(),
            aliases_out: HashMap::new(),
            outbox: Outbox::default(),
            pending: true,
            hold: None,
            // Grows on first use: idle connections keep no batch space.
            scratch: Vec::new(),
            authz_cache: AuthzCache::new(
                broker.config.authz_cache.ttl(),
                broker.config.authz_cache.max_entries,
            ),
            kept_session,
            unkept: Vec::new(),
            keep_upto: 0,
            transform_cache: TransformCache::new(
                broker.config.authz_cache.ttl(),
                broker.config.authz_cache.max_entries,
            ),
            read_cache: AuthzCache::new(
                broker.config.authz_cache.ttl(),
                broker.config.authz_cache.max_entries,
            ),
            read_question: None,
            read_verdict: None,
            read_asked: None,
            auth_method,
            reauth: None,
        };
        let properties = if v5 {
            ConnAckProperties {
                session_expiry_interval: (expiry != requested_expiry).then_some(expiry),
                receive_maximum: Some(limits.receive_maximum),
                maximum_packet_size: Some(limits.max_packet_size),
                assigned_client_identifier,
                topic_alias_maximum: (limits.topic_alias_maximum > 0)
                    .then_some(limits.topic_alias_maximum),
                server_keep_alive,
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

    /// Redelivers unacknowledged messages after a session is resumed: PUBLISH with DUP,
    /// or PUBREL for those already received [MQTT-4.4.0-1].
    fn resend_inflight(&mut self) {
        let inflight: Vec<Outgoing> = self.session.lock().inflight.iter().cloned().collect();
        for outgoing in inflight {
            match outgoing.stage {
                Stage::AwaitPubComp => {
                    self.send(Packet::PubRel(PubAckBody::new(outgoing.packet_id)))
                }
                Stage::AwaitPubAck | Stage::AwaitPubRec => {
                    self.write_publish(outgoing.packet_id, &outgoing.delivery, true);
                }
            }
        }
    }

    async fn serve(
        &mut self,
        reader: &mut Reader,
        writer: &mut Writer,
        mut rbuf: BytesMut,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Close {
        let limits = self.broker.config.limits.clone();
        let high_water = limits.write_buffer_high_water;
        let mut last_packet = tokio::time::Instant::now();
        // A client may send packets right behind its CONNECT without waiting for CONNACK
        // (MQTT 5.0 §3.1.4); those already read with the CONNECT are in `rbuf` and must
        // not wait for the next read to be handled.
        if let Err(close) = self
            .handle_buffered(&mut rbuf, limits.max_packet_size)
            .await
        {
            return close;
        }
        let low_water = self.broker.queue_marks().low;
        loop {
            let mut read_decided = false;
            if self.pending && self.outbox.len() < high_water {
                self.pull();
                // The next delivery needs a read decision (`deliver` hook): asked here,
                // on this subscriber's own task, so no publisher ever waits for it.
                if let Some(question) = self.read_question.take() {
                    self.decide_read(question).await;
                    // Pulled again at once, but through the `select!`: a queue of
                    // questions must not keep the socket, a kick or the shutdown
                    // waiting (one plugin call each, up to its timeout).
                    read_decided = true;
                }
            }
            // Held back, the broker is what does not read: the client's silence is not
            // counted against its keep-alive.
            let keep_alive_deadline = self
                .keep_alive_timeout
                .filter(|_| self.hold.is_none())
                .map(|t| last_packet + t);
            tokio::select! {
                _ = shutdown.changed() => return Close::Shutdown,
                kick = &mut self.kick => {
                    let kick = kick.unwrap_or(Kick::TAKEN_OVER);
                    return Close::Reason(kick.reason, kick.why.into());
                }
                written = self.outbox.write_to(writer), if self.outbox.wants_write(writer) => match written {
                    Ok(Some(0)) => return Close::Lost("socket closed for writing".into()),
                    Ok(Some(n)) => Metrics::add(&self.broker.metrics.bytes_sent, n as u64),
                    Ok(None) => {}
                    Err(error) => return error.into(),
                },
                // No buffer is held while the connection is quiet; it is sized when there
                // is data to read (`Reader::read_chunk`).
                read = reader.read_chunk(&mut rbuf), if self.hold.is_none() => {
                    let n = match read {
                        Ok(0) => return Close::Lost("closed by peer".into()),
                        Ok(n) => n,
                        Err(error) => return error.into(),
                    };
                    Metrics::add(&self.broker.metrics.bytes_received, n as u64);
                    // A unit per read as well as per 4 packets: a flood of large
                    // packets (a few per read) must yield too.
                    tokio::task::consume_budget().await;
                    match self.handle_buffered(&mut rbuf, limits.max_packet_size).await {
                        Ok(true) => last_packet = tokio::time::Instant::now(),
                        Ok(false) => {}
                        Err(close) => return close,
                    }
                    if rbuf.is_empty() && n < READ_CHUNK / 4 {
                        // Light traffic: hold no buffer until the next packet. A busy
                        // connection keeps its buffer from one read to the next.
                        rbuf = BytesMut::new();
                    }
                }
                found_slow = held(&self.hold, low_water) => {
                    if found_slow {
                        Metrics::add(&self.broker.metrics.subscribers_slow, 1);
                    }
                    self.release_hold();
                    last_packet = tokio::time::Instant::now();
                    // What was read before the hold comes first.
                    if let Err(close) = self.handle_buffered(&mut rbuf, limits.max_packet_size).await {
                        return close;
                    }
                }
                _ = self.session.wake.notified() => self.pending = true,
                () = std::future::ready(()), if read_decided => {}
                _ = sleep_until(keep_alive_deadline) => {
                    return Close::protocol(ReasonCode::KEEP_ALIVE_TIMEOUT, "keep alive timeout");
                }
            }
        }
    }

    /// Handles the whole packets in `rbuf`, up to the first one that puts this connection
    /// on hold (the rest wait in `rbuf`); true when there was at least one.
    async fn handle_buffered(
        &mut self,
        rbuf: &mut BytesMut,
        max_packet_size: u32,
    ) -> Result<bool, Close> {
        let mut handled = 0u32;
        // Decided once per read: a reload in between takes effect on the next one.
        let batching = self.broker.hooks.as_deref().is_some_and(|h| {
            h.transforms() && h.transforms_in_batches() && !h.transform_per_topic()
        });
        let mut batch: Vec<Publish> = Vec::new();
        let mut batch_bytes = 0usize;
        while self.hold.is_none() {
            match Packet::decode(rbuf, self.client.protocol, max_packet_size) {
                Ok(Some(packet)) => {
                    handled += 1;
                    match packet {
                        Packet::Publish(publish) if batching && publish.qos != QoS::ExactlyOnce => {
                            batch_bytes += publish.payload.len() + publish.topic.len();
                            if batch.capacity() == 0 {
                                // Sized once per read, not grown by doubling (a move of
                                // the whole batch each time).
                                batch.reserve(PUBLISH_BATCH_MAX);
                            }
                            batch.push(publish);
                            if batch.len() >= PUBLISH_BATCH_MAX
                                || batch_bytes >= PUBLISH_BATCH_BYTES_MAX
                            {
                                batch_bytes = 0;
                                self.publish_batch(std::mem::take(&mut batch)).await?;
                            }
                        }
                        packet => {
                            // What came before it is handled before it.
                            if !batch.is_empty() {
                                batch_bytes = 0;
                                self.publish_batch(std::mem::take(&mut batch)).await?;
                            }
                            self.handle(packet).await?;
                        }
                    }
                    // Gives the worker to other connections every so many packets (see
                    // the module doc).
                    if handled.is_multiple_of(PACKETS_PER_BUDGET_UNIT) {
                        tokio::task::consume_budget().await;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    if !batch.is_empty() {
                        self.publish_batch(std::mem::take(&mut batch)).await?;
                    }
                    Metrics::add(&self.broker.metrics.protocol_errors, 1);
                    return Err(Close::protocol(error.reason_code(), error));
                }
            }
        }
        if !batch.is_empty() {
            self.publish_batch(batch).await?;
        }
        self.release_replies().await;
        Ok(handled > 0)
    }

    /// Holds this connection back for `routed`'s congested session, unless that is its
    /// own (which drains only as this very socket is read) or it is held already.
    fn hold_for(&mut self, congested: Option<Arc<Session>>) {
        let Some(target) = congested else {
            return;
        };
        if self.hold.is_some() || Arc::ptr_eq(&target, &self.session) {
            return;
        }
        Metrics::add(&self.broker.metrics.publishers_held, 1);
        let max_wait = self.broker.config.limits.backpressure_max();
        self.hold = Some(Box::new(Hold::new(target, max_wait)));
        self.session.set_held(true);
    }

    fn release_hold(&mut self) {
        self.hold = None;
        self.session.set_held(false);
    }

    /// Sends what is due before closing, detaches the session and publishes the will.
    /// A connection the broker closes with a reason then lingers (`transport::linger`),
    /// so a client still sending reads the DISCONNECT rather than a reset.
    async fn finish(mut self, close: Close, reader: &mut Reader, writer: &mut Writer) {
        let (reason, publish_will) = match &close {
            Close::Disconnect { with_will } => (None, *with_will),
            Close::Lost(why) => {
                debug!(why, "connection lost");
                (None, true)
            }
            Close::Reason(code, why) => {
                if code.is_error() && *code != ReasonCode::SESSION_TAKEN_OVER {
                    warn!(code = code.0, why, "closing connection");
                }
                (Some((*code, why.clone())), true)
            }
            Close::Shutdown => (
                Some((
                    ReasonCode::SERVER_SHUTTING_DOWN,
                    "server shutting down".into(),
                )),
                false,
            ),
        };
        if let Some((code, why)) = reason
            && self.v5()
        {
            self.send(Packet::Disconnect(Disconnect {
                reason_code: code,
                properties: DisconnectProperties {
                    reason_string: Some(why.into()),
                    ..Default::default()
                },
            }));
        }
        if self.outbox.wants_write(writer) && !matches!(close, Close::Lost(_)) {
            let _ = tokio::time::timeout(FAREWELL_TIMEOUT, self.outbox.flush_to(writer)).await;
        }
        let _ = tokio::time::timeout(FAREWELL_TIMEOUT, writer.shutdown()).await;
        Metrics::sub(&self.broker.metrics.clients_connected, 1);
        let will = self
            .will
            .take()
            .filter(|_| publish_will)
            .map(|will| PendingWill {
                will: *will,
                client_id: self.client.client_id.clone(),
            });
        self.broker.detach(&self.session, self.connection_id, will);
        if matches!(close, Close::Reason(..)) {
            transport::drain(reader).await;
        }
    }

    fn send(&mut self, packet: Packet) {
        packet.encode(self.client.protocol, self.outbox.buf());
    }

    async fn handle(&mut self, packet: Packet) -> Result<(), Close> {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish).await,
            Packet::PubAck(ack) => {
                self.acknowledged(ack.packet_id, Stage::AwaitPubAck);
                Ok(())
            }
            Packet::PubRec(rec) => {
                let mut state = self.session.lock();
                let reply = match state.inflight_position(rec.packet_id, Stage::AwaitPubRec) {
                    Some(index) if rec.reason_code.is_error() => {
                        if let Some(refused) = state.inflight.remove(index) {
                            state.forget(&refused.delivery);
                        }
                        None
                    }
                    Some(index) => {
                        state.inflight[index].stage = Stage::AwaitPubComp;
                        state.keep_sent(&state.inflight[index]);
                        Some(ReasonCode::SUCCESS)
                    }
                    None => Some(ReasonCode::PACKET_IDENTIFIER_NOT_FOUND),
                };
                drop(state);
                match reply {
                    Some(code) => self.send(Packet::PubRel(ack(rec.packet_id, code))),
                    None => self.pending = true,
                }
                Ok(())
            }
            Packet::PubComp(comp) => {
                self.acknowledged(comp.packet_id, Stage::AwaitPubComp);
                Ok(())
            }
            Packet::PubRel(rel) => {
                let released = self.session.lock().release_qos2(rel.packet_id);
                let code = if released {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
                };
                // Once PUBCOMP is out the client may reuse the id: its release must be
                // kept first, or a restart would take the next message as a repeat.
                let kept = released && self.kept_session;
                self.reply(Packet::PubComp(ack(rel.packet_id, code)), kept);
                Ok(())
            }
            Packet::Subscribe(subscribe) => self.on_subscribe(subscribe).await,
            Packet::Unsubscribe(unsubscribe) => {
                self.on_unsubscribe(unsubscribe);
                Ok(())
            }
            Packet::PingReq => {
                self.send(Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect(disconnect) => self.on_disconnect(disconnect),
            Packet::Connect(_) => Err(Close::protocol(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-3.1.0-2] second CONNECT",
            )),
            Packet::Auth(auth) => self.on_auth(auth).await,
            other => Err(Close::protocol(
                ReasonCode::PROTOCOL_ERROR,
                format!("{} is not sent by clients", other.kind()),
            )),
        }
    }

    fn acknowledged(&mut self, packet_id: u16, stage: Stage) {
        let mut state = self.session.lock();
        match state.inflight_position(packet_id, stage) {
            Some(index) => {
                if let Some(done) = state.inflight.remove(index) {
                    state.forget(&done.delivery);
                }
                self.pending = true;
            }
            None => debug!(
                packet_id,
                ?stage,
                "acknowledgement for no message in flight"
            ),
        }
    }

    /// An AUTH from the client after CONNACK: the start (0x19) or a step (0x18) of a
    /// re-authentication with the CONNECT's method [MQTT-4.12.1-1]. Success answers
    /// AUTH 0x00; a refusal closes the connection with DISCONNECT 0x87.
    async fn on_auth(&mut self, auth: Auth) -> Result<(), Close> {
        let Some(method) = self.auth_method.clone() else {
            return Err(Close::protocol(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-4.12.0-7] AUTH without an authentication method in CONNECT",
            ));
        };
        let Some(hooks) = self.broker.hooks.clone() else {
            return Err(Close::protocol(
                ReasonCode::NOT_AUTHORIZED,
                "re-authentication with no plugins",
            ));
        };
        let limits = &self.broker.config.limits;
        let (expected, exchange, round) = match self.reauth.take() {
            None => (ReasonCode::REAUTHENTICATE, None, 1),
            Some((exchange, round)) => (
                ReasonCode::CONTINUE_AUTHENTICATION,
                Some(exchange),
                round + 1,
            ),
        };
        let data = enhanced_auth::client_answer(auth, &method, expected, limits)
            .map_err(|(code, why)| Close::protocol(code, why))?;
        let step = hooks
            .enhanced_auth(&self.client, &method, data.as_ref(), exchange)
            .await;
        match enhanced_auth::next(step, round, limits) {
            enhanced_auth::Next::Challenge { data, exchange } => {
                self.reauth = Some((exchange, round));
                self.send(enhanced_auth::auth_packet(
                    ReasonCode::CONTINUE_AUTHENTICATION,
                    &method,
                    Some(data),
                ));
                Ok(())
            }
            enhanced_auth::Next::Success { data, superuser } => {
                debug!("re-authenticated");
                self.superuser = superuser;
                self.send(enhanced_auth::auth_packet(
                    ReasonCode::SUCCESS,
                    &method,
                    data,
                ));
                Ok(())
            }
            // 0x8C (the method's plugin is gone) too: the client is no longer authenticated.
            enhanced_auth::Next::Refused((_, why)) => Err(Close::protocol(
                ReasonCode::NOT_AUTHORIZED,
                format!("re-authentication refused: {why}"),
            )),
        }
    }

    async fn on_publish(&mut self, publish: Publish) -> Result<(), Close> {
        let publish = self.check_publish(publish)?;
        let limits = &self.broker.config.limits;
        let packet_id = publish.packet_id;
        let qos = publish.qos;
        if qos == QoS::ExactlyOnce {
            let state = self.session.lock();
            if state.incoming_qos2.contains(&packet_id) {
                // A re-sent PUBLISH before PUBREL: acknowledge, do not deliver again.
                drop(state);
                self.reply(Packet::PubRec(PubAckBody::new(packet_id)), false);
                return Ok(());
            }
            if state.incoming_qos2.len() >= usize::from(limits.receive_maximum) {
                return Err(Close::protocol(
                    ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                    "[MQTT-3.3.4-7] receive maximum exceeded",
                ));
            }
        }
        let (code, kept) = self.route_publish(publish).await?;
        self.ack_publish(packet_id, qos, code, kept);
        Ok(())
    }

    /// The QoS 0 and 1 PUBLISHes of one read, for a transform chain that takes batches:
    /// each checked and authorized in order, the chain called once for those allowed,
    /// then each routed and acknowledged in order. What a PUBLISH that closes the
    /// connection would close it for is returned after the ones before it are done.
    async fn publish_batch(&mut self, batch: Vec<Publish>) -> Result<(), Close> {
        // Each PUBLISH's packet id and QoS, and its ack's reason code when it is
        // answered without the transform (refused).
        let mut acks: Vec<(u16, QoS, Option<ReasonCode>)> = Vec::with_capacity(batch.len());
        let mut allowed: Vec<Publish> = Vec::with_capacity(batch.len());
        let mut closing = None;
        for publish in batch {
            let publish = match self.check_publish(publish) {
                Ok(publish) => publish,
                Err(close) => {
                    closing = Some(close);
                    break;
                }
            };
            let (packet_id, qos) = (publish.packet_id, publish.qos);
            match self.admit_publish(&publish).await {
                Ok(Some(code)) => acks.push((packet_id, qos, Some(code))),
                Ok(None) => {
                    acks.push((packet_id, qos, None));
                    allowed.push(publish);
                }
                Err(close) => {
                    closing = Some(close);
                    break;
                }
            }
        }
        let results = match self.broker.hooks.as_deref() {
            Some(hooks) if !allowed.is_empty() => {
                hooks.transform_batch(&self.client, &allowed).await
            }
            _ => Vec::new(),
        };
        let max_levels = self.broker.config.limits.max_topic_levels;
        let mut results = allowed.into_iter().zip(
            results
                .into_iter()
                .chain(std::iter::repeat(Transformed::Keep)),
        );
        for (packet_id, qos, refused) in acks {
            let (code, kept) = match refused {
                Some(code) => (code, false),
                None => {
                    let (publish, result) = results.next().expect("one result per allowed PUBLISH");
                    match result {
                        Transformed::Keep => self.deliver_publish(publish),
                        Transformed::Replace(replacement)
                            if TopicName::new(replacement.topic.clone(), max_levels).is_err() =>
                        {
                            warn!(topic = %replacement.topic, "transform produced an invalid topic; original kept");
                            self.deliver_publish(publish)
                        }
                        Transformed::Replace(replacement) => self.deliver_publish(*replacement),
                        Transformed::Drop => (ReasonCode::SUCCESS, false),
                    }
                }
            };
            self.ack_publish(packet_id, qos, code, kept);
        }
        closing.map_or(Ok(()), Err)
    }

    /// A PUBLISH's own checks, before any policy: topic alias, no subscription
    /// identifier, a valid topic name. Counts it as received.
    fn check_publish(&mut self, mut publish: Publish) -> Result<Publish, Close> {
        Metrics::add(&self.broker.metrics.messages_received, 1);
        let limits = &self.broker.config.limits;
        if self.v5() {
            if let Some(alias) = publish.properties.topic_alias {
                if alias == 0 || alias > limits.topic_alias_maximum {
                    return Err(Close::protocol(
                        ReasonCode::TOPIC_ALIAS_INVALID,
                        "[MQTT-3.3.2-9] topic alias out of range",
                    ));
                }
                if publish.topic.is_empty() {
                    match self.aliases_in.get(&alias) {
                        Some(topic) => publish.topic = topic.clone(),
                        None => {
                            return Err(Close::protocol(
                                ReasonCode::PROTOCOL_ERROR,
                                "[MQTT-3.3.4] unknown topic alias",
                            ));
                        }
                    }
                } else {
                    // A copy, not a slice of the read buffer (see `aliases_out`).
                    self.aliases_in.insert(alias, own_str(&publish.topic));
                }
            }
            if !publish.properties.subscription_identifiers.is_empty() {
                return Err(Close::protocol(
                    ReasonCode::PROTOCOL_ERROR,
                    "[MQTT-3.3.4-6] PUBLISH from a client carries a subscription identifier",
                ));
            }
        }
        if let Err(error) = TopicName::new(publish.topic.clone(), limits.max_topic_levels) {
            return Err(Close::protocol(ReasonCode::TOPIC_NAME_INVALID, error));
        }
        Ok(publish)
    }

    /// Acknowledges a PUBLISH routed (or refused) with `code`; `kept`: what it confirms
    /// was written to the durable store.
    fn ack_publish(&mut self, packet_id: u16, qos: QoS, code: ReasonCode, kept: bool) {
        // Every refusal says why, unless the client asked for no problem information
        // (Request Problem Information = 0) [MQTT-3.1.2-29].
        let reason_string = match code {
            ReasonCode::NOT_AUTHORIZED => Some("not authorized"),
            ReasonCode::PAYLOAD_FORMAT_INVALID => {
                Some("[MQTT-3.3.2-4] payload format indicator 1 but the payload is not UTF-8")
            }
            _ => None,
        }
        .filter(|_| self.problem_information)
        .map(ByteString::from_static);
        let body = PubAckBody {
            packet_id,
            reason_code: code,
            properties: AckProperties {
                reason_string,
                ..Default::default()
            },
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.reply(Packet::PubAck(body), kept),
            QoS::ExactlyOnce => {
                let mut kept = kept;
                if !code.is_error() {
                    self.session.lock().receive_qos2(packet_id);
                    kept |= self.kept_session;
                }
                self.reply(Packet::PubRec(body), kept);
            }
        }
    }

    /// Sends a reply, or holds it until what it confirms is kept (`kept`), or until the
    /// replies held before it go: replies leave in the order of their requests.
    fn reply(&mut self, packet: Packet, kept: bool) {
        if kept && let Some(journal) = self.broker.journal() {
            self.keep_upto = journal.submitted();
        } else if self.unkept.is_empty() {
            self.send(packet);
            return;
        }
        self.unkept.push(packet);
    }

    /// Waits until the journal has written what the held replies confirm, then sends
    /// them. Called once per read, so one wait covers every PUBLISH of that read.
    async fn release_replies(&mut self) {
        if self.unkept.is_empty() {
            return;
        }
        if let Some(journal) = self.broker.journal() {
            journal.written(self.keep_upto).await;
        }
        for packet in std::mem::take(&mut self.unkept) {
            self.send(packet);
        }
    }

    /// Authorizes, transforms and routes a PUBLISH; returns the reason code for its ack,
    /// and whether routing it wrote to the durable store.
    async fn route_publish(&mut self, mut publish: Publish) -> Result<(ReasonCode, bool), Close> {
        let max_levels = self.broker.config.limits.max_topic_levels;
        if let Some(code) = self.admit_publish(&publish).await? {
            return Ok((code, false));
        }
        // Borrowed, not cloned: an `Arc` clone per PUBLISH is a shared counter that
        // every connection task bumps.
        if let Some(hooks) = self.broker.hooks.as_deref().filter(|h| h.transforms()) {
            // A per-topic chain is asked once per topic, QoS and retain flag; what it did
            // is repeated for the next such message (`TransformEdit`).
            let per_topic = hooks.transform_per_topic();
            let generation = self.broker.authz_generation();
            let (topic, qos, retain) = (&publish.topic, publish.qos, publish.retain);
            let cached = per_topic
                .then(|| {
                    self.transform_cache
                        .get(generation, Action::Publish, topic, qos, retain)
                })
                .flatten();
            match cached {
                Some(edit) => {
                    publish = match edit.apply(publish) {
                        Some(publish) => publish,
                        None => return Ok((ReasonCode::SUCCESS, false)),
                    }
                }
                None => {
                    let result = match hooks.transform(&self.client, &publish).await {
                        Transformed::Replace(replacement)
                            if TopicName::new(replacement.topic.clone(), max_levels).is_err() =>
                        {
                            warn!(topic = %replacement.topic, "transform produced an invalid topic; original kept");
                            Transformed::Keep
                        }
                        result => result,
                    };
                    if per_topic && let Some(edit) = TransformEdit::between(&publish, &result) {
                        let topic = publish.topic.clone();
                        self.transform_cache.insert(
                            generation,
                            Action::Publish,
                            topic,
                            qos,
                            retain,
                            Arc::new(edit),
                        );
                    }
                    match result {
                        Transformed::Keep => {}
                        Transformed::Replace(replacement) => publish = *replacement,
                        Transformed::Drop => return Ok((ReasonCode::SUCCESS, false)),
                    }
                }
            }
        }
        Ok(self.deliver_publish(publish))
    }

    /// Routes a PUBLISH that passed its checks and the policy; the reason code for its
    /// ack, and whether routing it wrote to the durable store.
    fn deliver_publish(&mut self, publish: Publish) -> (ReasonCode, bool) {
        let routed = self
            .broker
            .publish(Message::new(publish, Some(self.client.client_id.clone())));
        let matched = routed.matched;
        self.hold_for(routed.congested);
        let code = if matched == 0 {
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        } else {
            ReasonCode::SUCCESS
        };
        (code, routed.kept)
    }

    /// The checks of a PUBLISH before it is transformed: a v5 payload that says it is
    /// UTF-8 is, and the client may publish to the topic. `Some`: refused, with the
    /// reason code of its ack.
    async fn admit_publish(&mut self, publish: &Publish) -> Result<Option<ReasonCode>, Close> {
        if self.v5()
            && publish.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(&publish.payload).is_err()
        {
            if publish.qos == QoS::AtMostOnce {
                return Err(Close::protocol(
                    ReasonCode::PAYLOAD_FORMAT_INVALID,
                    "payload is not UTF-8",
                ));
            }
            return Ok(Some(ReasonCode::PAYLOAD_FORMAT_INVALID));
        }
        if !self
            .authorize(Action::Publish, &publish.topic, publish.qos, publish.retain)
            .await
        {
            debug!(topic = %publish.topic, "publish not authorized");
            self.on_denied("publish", &publish.topic)?;
            return Ok(Some(ReasonCode::NOT_AUTHORIZED));
        }
        Ok(None)
    }

    /// `[plugins] deny_action = "disconnect"`: a denied request closes the connection.
    fn on_denied(&self, what: &str, topic: &str) -> Result<(), Close> {
        match self.broker.config.plugins.deny_action {
            DenyAction::Ignore => Ok(()),
            DenyAction::Disconnect => Err(Close::protocol(
                ReasonCode::NOT_AUTHORIZED,
                format!("{what} to {topic:?} not authorized (deny_action = \"disconnect\")"),
            )),
        }
    }

    /// Asks the hooks (through this connection's decision cache) whether the client may
    /// publish to or subscribe to `topic`. Superusers and a broker without hooks skip it.
    async fn authorize(
        &mut self,
        action: Action,
        topic: &ByteString,
        qos: QoS,
        retain: bool,
    ) -> bool {
        let Some(hooks) = self.broker.hooks.clone().filter(|_| !self.superuser) else {
            return true;
        };
        let generation = self.broker.authz_generation();
        if let Some(allowed) = self.authz_cache.get(generation, action, topic, qos, retain) {
            return allowed;
        }
        let answer = hooks
            .authorization(&self.client, action, topic, qos, retain)
            .await;
        if answer.cacheable {
            let lifetime = answer.cache.duration(self.authz_cache.ttl());
            self.authz_cache.insert_for(
                generation,
                action,
                topic.clone(),
                qos,
                retain,
                answer.allowed,
                lifetime,
            );
        }
        answer.allowed
    }

    async fn on_subscribe(&mut self, subscribe: Subscribe) -> Result<(), Close> {
        let max_levels = self.broker.config.limits.max_topic_levels;
        let id = subscribe.properties.subscription_identifier;
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        for (raw, options) in subscribe.filters {
            // A copy: the session and the router keep the filter for as long as the
            // subscription lives, and a slice would keep the SUBSCRIBE's whole read buffer
            // (8 KiB) alive with it.
            let filter = match TopicFilter::new(own_str(&raw), max_levels) {
                Ok(filter) => filter,
                Err(error) => {
                    debug!(%error, "subscription refused");
                    codes.push(ReasonCode::TOPIC_FILTER_INVALID);
                    continue;
                }
            };
            if filter.share_group().is_some() && options.no_local {
                return Err(Close::protocol(
                    ReasonCode::PROTOCOL_ERROR,
                    "[MQTT-3.8.3-4] No Local on a shared subscription",
                ));
            }
            if !self
                .authorize(
                    Action::Subscribe,
                    &filter.filter_bytes(),
                    options.qos,
                    false,
                )
                .await
            {
                self.on_denied("subscription", &filter.filter_bytes())?;
                codes.push(ReasonCode::NOT_AUTHORIZED);
                continue;
            }
            let quota_reached = {
                let state = self.session.lock();
                !state.subscriptions.contains_key(filter.full())
                    && state.subscriptions.len()
                        >= self.broker.config.limits.max_subscriptions_per_client
            };
            if quota_reached {
                debug!(filter = filter.full(), "subscription quota reached");
                codes.push(ReasonCode::QUOTA_EXCEEDED);
                continue;
            }
            let data = SubscriptionData { options, id };
            let existed = self.broker.subscribe(&self.session, filter.clone(), data);
            codes.push(ReasonCode(options.qos as u8));
            let send_retained = filter.share_group().is_none()
                && match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => !existed,
                    RetainHandling::DoNotSend => false,
                };
            if send_retained {
                for message in self.broker.retained_matching(&filter) {
                    retained.push(Delivery {
                        qos: message.publish.qos.min(options.qos),
                        message,
                        retain: true,
                        subscription_ids: id.into_iter().collect(),
                        share: None,
                        stored: 0,
                        // A retained `sensors/secret` must not reach a `sensors/#`
                        // subscriber either.
                        check_read: filter.has_wildcard(),
                    });
                }
            }
        }
        let any_refused = codes.iter().any(|c| c.is_error());
        let reason_string = (any_refused && self.problem_information && self.v5())
            .then(|| ByteString::from_static("one or more filters refused"));
        let kept = self.kept_session;
        self.reply(
            Packet::SubAck(SubAck {
                packet_id: subscribe.packet_id,
                reason_codes: codes,
                properties: AckProperties {
                    reason_string,
                    ..Default::default()
                },
            }),
            kept,
        );
        for delivery in retained {
            self.broker.offer(&self.session, delivery);
        }
        Ok(())
    }

    fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe) {
        let max_levels = self.broker.config.limits.max_topic_levels;
        let codes = unsubscribe
            .filters
            .into_iter()
            .map(|raw| match TopicFilter::new(raw, max_levels) {
                Err(_) => ReasonCode::TOPIC_FILTER_INVALID,
                Ok(filter) if self.broker.unsubscribe(&self.session, &filter) => {
                    ReasonCode::SUCCESS
                }
                Ok(_) => ReasonCode::NO_SUBSCRIPTION_EXISTED,
            })
            .collect();
        let kept = self.kept_session;
        self.reply(
            Packet::UnsubAck(UnsubAck {
                packet_id: unsubscribe.packet_id,
                reason_codes: codes,
                properties: AckProperties::default(),
            }),
            kept,
        );
    }

    fn on_disconnect(&mut self, disconnect: Disconnect) -> Result<(), Close> {
        if let Some(expiry) = disconnect.properties.session_expiry_interval {
            if self.expiry_was_zero && expiry != 0 {
                return Err(Close::protocol(
                    ReasonCode::PROTOCOL_ERROR,
                    "[MQTT-3.14.2-2] session expiry set on DISCONNECT after 0 on CONNECT",
                ));
            }
            self.session.lock().expiry_interval =
                expiry.min(self.broker.config.limits.session_expiry_max_secs);
        }
        Err(Close::Disconnect {
            with_will: disconnect.reason_code == ReasonCode::DISCONNECT_WITH_WILL,
        })
    }

    /// Asks the hooks whether this client may read `question`'s topic (a delivery that
    /// matched only through wildcards), and remembers the answer for `pull`: in the
    /// read cache when it may be cached, else as the verdict for the next pull.
    async fn decide_read(&mut self, question: ReadQuestion) {
        let Some(hooks) = self.broker.hooks.clone() else {
            return;
        };
        let generation = self.broker.authz_generation();
        let answer = hooks
            .authorize_delivery(&self.client, &question.topic, question.qos, question.retain)
            .await;
        let lifetime = answer.cache.duration(self.read_cache.ttl());
        let cached = answer.cacheable
            && self.read_cache.insert_for(
                generation,
                Action::Subscribe,
                question.topic.clone(),
                question.qos,
                question.retain,
                answer.allowed,
                lifetime,
            );
        if cached {
            self.read_asked = Some(question);
        } else {
            self.read_verdict = Some((question, answer.allowed));
        }
    }

    /// Moves deliveries from the session queue into the write buffer, within the
    /// inflight window, until the buffer reaches its high-water mark.
    ///
    /// A delivery that matched only through wildcard filters is checked first when a
    /// plugin checks deliveries (`Hooks::checks_deliveries`): allowed from the read
    /// cache, it goes as any other; denied, it leaves the queue (and the durable store)
    /// before it has a packet id, and is counted; not known, the pull stops before it
    /// and sets `read_question` for the serve loop to ask.
    fn pull(&mut self) {
        let high_water = self.broker.config.limits.write_buffer_high_water;
        let low = self.broker.queue_marks().low;
        let check_reads = !self.superuser
            && self
                .broker
                .hooks
                .as_deref()
                .is_some_and(|h| h.checks_deliveries());
        let generation = if check_reads {
            self.broker.authz_generation()
        } else {
            0
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        loop {
            let mut expired = 0;
            let mut denied = 0;
            // Read-cache lookups, counted once per batch.
            let (mut read_hits, mut read_misses) = (0, 0);
            let more = {
                let mut state = self.session.lock();
                if state.owner.as_ref().map(|o| o.connection_id) != Some(self.connection_id) {
                    // Taken over: the new connection owns the queue now; this one is
                    // about to close and must not take messages with it.
                    self.pending = false;
                    break;
                }
                let now = Instant::now();
                while scratch.len() < PULL_BATCH {
                    let Some(front) = state.queue.front() else {
                        break;
                    };
                    if front.message.expired(now) {
                        if let Some(gone) = state.queue.pop_front() {
                            state.forget(&gone);
                        }
                        expired += 1;
                        continue;
                    }
                    if front.qos != QoS::AtMostOnce && state.inflight.len() >= self.send_window {
                        break;
                    }
                    if check_reads && front.check_read {
                        let topic = &front.message.publish.topic;
                        let cached = self.read_cache.peek_at(
                            now,
                            generation,
                            Action::Subscribe,
                            topic,
                            front.qos,
                            front.retain,
                        );
                        let just_asked = self.read_asked.take_if(|q| q.is_about(front));
                        if cached.is_some() && just_asked.is_none() {
                            read_hits += 1;
                        }
                        let allowed = cached.or_else(|| {
                            self.read_verdict
                                .take_if(|(q, _)| q.is_about(front))
                                .map(|(_, allowed)| allowed)
                        });
                        match allowed {
                            Some(true) => {}
                            Some(false) => {
                                debug!(%topic, "delivery not authorized for this subscriber: dropped");
                                if let Some(gone) = state.queue.pop_front() {
                                    state.forget(&gone);
                                }
                                denied += 1;
                                continue;
                            }
                            None => {
                                read_misses += 1;
                                self.read_question = Some(ReadQuestion::of(front));
                                break;
                            }
                        }
                    }
                    let Some(delivery) = state.queue.pop_front() else {
                        break;
                    };
                    let packet_id = match delivery.qos {
                        QoS::AtMostOnce => 0,
                        qos => {
                            let packet_id = state.next_packet_id();
                            let stage = if qos == QoS::AtLeastOnce {
                                Stage::AwaitPubAck
                            } else {
                                Stage::AwaitPubRec
                            };
                            let outgoing = Outgoing {
                                packet_id,
                                delivery: delivery.clone(),
                                stage,
                            };
                            state.keep_sent(&outgoing);
                            state.inflight.push_back(outgoing);
                            packet_id
                        }
                    };
                    scratch.push((packet_id, delivery));
                }
                if !scratch.is_empty() || expired > 0 || denied > 0 {
                    self.session.drained(state.queue.len(), low);
                }
                // More can be taken now only if the window is not what stopped us.
                state.queue.front().is_some_and(|front| {
                    front.qos == QoS::AtMostOnce || state.inflight.len() < self.send_window
                })
            };
            if expired > 0 {
                Metrics::add(&self.broker.metrics.messages_expired, expired);
            }
            if denied > 0 {
                Metrics::add(&self.broker.metrics.messages_dropped_not_authorized, denied);
            }
            crate::authz_cache::count_deliveries(read_hits, read_misses);
            let mut too_large = Vec::new();
            for (packet_id, delivery) in scratch.drain(..) {
                if !self.write_publish(packet_id, &delivery, false) && packet_id != 0 {
                    too_large.push(packet_id);
                }
            }
            if !too_large.is_empty() {
                let mut state = self.session.lock();
                let (refused, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut state.inflight)
                    .into_iter()
                    .partition(|o| too_large.contains(&o.packet_id));
                state.inflight = kept.into();
                for outgoing in refused {
                    state.forget(&outgoing.delivery);
                }
                drop(state);
                if !more {
                    continue;
                }
            }
            if self.read_question.is_some() {
                // Pulled again once it is answered.
                self.pending = true;
                break;
            }
            if !more || self.outbox.len() >= high_water {
                self.pending = more;
                break;
            }
        }
        self.scratch = scratch;
        // A verdict is for the front delivery it was asked for, on this pull only.
        self.read_verdict = None;
        self.read_asked = None;
    }

    /// Encodes one delivery for this client; false when it exceeds the client's Maximum
    /// Packet Size and was not sent [MQTT-3.1.2-25].
    fn write_publish(&mut self, packet_id: u16, delivery: &Delivery, dup: bool) -> bool {
        let message = &delivery.message;
        let mut publish = message.publish.clone();
        publish.dup = dup;
        publish.qos = delivery.qos;
        publish.retain = delivery.retain;
        publish.packet_id = packet_id;
        let mut new_alias = None;
        if self.v5() {
            publish
                .properties
                .subscription_identifiers
                .clone_from(&delivery.subscription_ids);
            publish.properties.message_expiry_interval = message.remaining_expiry(Instant::now());
            if self.client_topic_alias_max > 0 {
                match self.aliases_out.get(&publish.topic) {
                    Some(&alias) => {
                        publish.properties.topic_alias = Some(alias);
                        publish.topic = ByteString::new();
                    }
                    None if self.aliases_out.len() < usize::from(self.client_topic_alias_max) => {
                        let alias = self.aliases_out.len() as u16 + 1;
                        publish.properties.topic_alias = Some(alias);
                        new_alias = Some((publish.topic.clone(), alias));
                    }
                    None => {}
                }
            }
        }
        // The head (all but the payload) is encoded once; with the payload it is the
        // packet's size, which is checked before anything is committed to the outbox.
        let buf = self.outbox.buf();
        let start = buf.len();
        publish.write_head(self.client.protocol, buf);
        if buf.len() - start + publish.payload.len() > self.client_max_packet_size {
            buf.truncate(start);
            Metrics::add(&self.broker.metrics.messages_dropped_too_large, 1);
            debug!(topic = %message.publish.topic, "message larger than the client's maximum packet size");
            return false;
        }
        if publish.payload.len() >= SHARED_PAYLOAD_MIN {
            self.outbox.push_shared(publish.payload);
        } else {
            buf.extend_from_slice(&publish.payload);
        }
        if let Some((topic, alias)) = new_alias {
            // A copy: the message's topic is a slice of its publisher's read buffer, which
            // the map would keep alive (a whole large payload) for the connection's life.
            self.aliases_out.insert(own_str(&topic), alias);
        }
        Metrics::add(&self.broker.metrics.messages_sent, 1);
        true
    }
}

/// A read decision the front delivery of the queue waits for: the topic it goes out on,
/// with its QoS and retain flag (the key of the read cache).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReadQuestion {
    topic: ByteString,
    qos: QoS,
    retain: bool,
}

impl ReadQuestion {
    fn of(delivery: &Delivery) -> ReadQuestion {
        ReadQuestion {
            topic: delivery.message.publish.topic.clone(),
            qos: delivery.qos,
            retain: delivery.retain,
        }
    }

    fn is_about(&self, delivery: &Delivery) -> bool {
        self.topic == delivery.message.publish.topic
            && self.qos == delivery.qos
            && self.retain == delivery.retain
    }
}

fn ack(packet_id: u16, reason_code: ReasonCode) -> PubAckBody {
    PubAckBody {
        packet_id,
        reason_code,
        properties: AckProperties::default(),
    }
}

/// Until `hold` (if any) is released; true when it found its target slow.
async fn held(hold: &Option<Box<Hold>>, low_water: usize) -> bool {
    match hold {
        Some(hold) => hold.released(low_water).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A client id for a client that sent none: unique in this process, hard to guess.
fn generated_client_id(connection_id: u64) -> String {
    use std::hash::{BuildHasher, RandomState};
    let random = RandomState::new().hash_one(connection_id);
    format!("wasmq-{connection_id:x}-{random:016x}")
}
