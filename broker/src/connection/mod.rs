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
//!
//! This module holds the serve loop, the `Connection` it drives and the dispatcher
//! `handle`; each kind of work has its own child module, all `impl Connection`:
//! `handshake` (CONNECT to CONNACK), `publish` (PUBLISH in and its acks), `policy`
//! (the gate's verdicts turned into routing and acks, `deny_action`), `subscribe`,
//! `outbound` (deliveries out and their acks) and `auth` (re-authentication). Every
//! policy question and what is cached of its answers goes through the connection's
//! `gate` ([`gate::PolicyGate`]).

mod auth;
mod gate;
mod handshake;
mod negotiated;
mod outbound;
mod policy;
mod publish;
mod subscribe;

use std::collections::HashMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use bytestring::ByteString;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, oneshot, watch};
use tracing::{Instrument, debug, field, info, info_span, warn};
use wasmq_codec::{
    ConnAck, DecodeError, Disconnect, DisconnectProperties, Packet, Protocol, Publish, QoS,
    ReasonCode,
};

use crate::backpressure::Hold;
use crate::broker::Broker;
use crate::enhanced_auth;
use crate::hooks::ClientInfo;
use crate::listener::Endpoint;
use crate::message::Delivery;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::session::{Kick, PendingWill, Session, Stage};
use crate::transport::{self, READ_CHUNK, Reader, Writer};

use auth::Reauth;
use gate::PolicyGate;
use negotiated::Negotiated;
use publish::ack;

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
///
/// The connection's task is what an idle connection costs for all of its life (issue
/// 14: bytes per idle connection), so it holds little: the handshake's future is boxed
/// here and owns the arguments (an `async fn` keeps its arguments in its state for as
/// long as it runs, though moved out at the start), the accepted connection is boxed
/// (`Accepted`), and the farewell is boxed too.
pub(crate) fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    endpoint: Arc<Endpoint>,
    shutdown: watch::Receiver<bool>,
    permits: Permits,
) -> impl Future<Output = ()> + Send {
    let _ = stream.set_nodelay(true);
    let span = info_span!("connection", %peer, listener = %endpoint.name, client_id = field::Empty);
    let handshake = Box::pin(handshake(broker, stream, peer, endpoint, shutdown, permits));
    run(handshake).instrument(span)
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

async fn run(handshake: Pin<Box<impl Future<Output = anyhow::Result<Option<Box<Accepted>>>>>>) {
    let mut accepted = match handshake.await {
        Ok(Some(accepted)) => accepted,
        Ok(None) => return debug!("connection closed"),
        Err(error) => return debug!(%error, "connection closed"),
    };
    // Borrowed in its box: moved out of it into this future, the connection was stored
    // twice in the task (the awaited value and the bindings).
    let Accepted {
        connection,
        reader,
        writer,
        rbuf,
        shutdown,
        ..
    } = &mut *accepted;
    let close = connection
        .serve(reader, writer, std::mem::take(rbuf), shutdown)
        .await;
    let Accepted {
        connection,
        mut reader,
        mut writer,
        ..
    } = *accepted;
    Box::pin(connection.finish(close, &mut reader, &mut writer)).await;
    debug!("connection closed");
}

/// A connection past its CONNACK, with its socket halves, what was read behind the
/// CONNECT, the server's shutdown signal and the connection slots it holds.
struct Accepted {
    connection: Connection,
    reader: Reader,
    writer: Writer,
    rbuf: BytesMut,
    shutdown: watch::Receiver<bool>,
    _permits: Permits,
}

/// The transport's handshake (TLS, WebSocket), the CONNECT and its acceptance.
/// `None`: the connection ended before it was accepted, its CONNACK (if any) sent.
async fn handshake(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    endpoint: Arc<Endpoint>,
    mut shutdown: watch::Receiver<bool>,
    permits: Permits,
) -> anyhow::Result<Option<Box<Accepted>>> {
    let endpoint = &*endpoint;
    let limits = &broker.config.limits;
    // The TLS handshake and the WebSocket upgrade count in the time to CONNECT.
    let deadline = tokio::time::Instant::now() + limits.connect_timeout();
    let established = tokio::select! {
        established = transport::establish(stream, endpoint, deadline, limits.max_packet_size) => established,
        _ = shutdown.changed() => return Ok(None),
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
            return Ok(None);
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
            _ = shutdown.changed() => return Ok(None),
        };
        match read {
            Err(_) => anyhow::bail!("no CONNECT within {} ms", limits.connect_timeout_ms),
            Ok(Ok(0)) => anyhow::bail!("closed before CONNECT"),
            Ok(Ok(n)) => Metrics::add(&broker.metrics.bytes_received, n as u64),
            Ok(Err(error)) => return Err(error.into()),
        }
    };
    let accepted = Connection::accept(
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
    .await?;
    let Some(connection) = accepted else {
        // Refused: the CONNACK saying why was sent.
        transport::linger(&mut reader, &mut writer).await;
        return Ok(None);
    };
    if rbuf.is_empty() {
        // Let the handshake buffer go: an idle connection then holds no read buffer
        // (`serve` gives it one of READ_CHUNK bytes when data arrives).
        rbuf = BytesMut::new();
    }
    Ok(Some(Box::new(Accepted {
        connection,
        reader,
        writer,
        rbuf,
        shutdown,
        _permits: permits,
    })))
}

/// A connection after a successful CONNECT.
struct Connection {
    broker: Arc<Broker>,
    session: Arc<Session>,
    client: ClientInfo,
    connection_id: u64,
    kick: oneshot::Receiver<Kick>,
    /// Whether the session ends with the connection (a later DISCONNECT may not change it).
    expiry_was_zero: bool,
    /// What CONNECT settled: keep-alive, windows, sizes (`negotiated.rs`).
    negotiated: Negotiated,
    will: Option<Box<wasmq_codec::LastWill>>,
    /// Made at the first topic alias either way.
    aliases: Option<Box<TopicAliases>>,
    outbox: Outbox,
    /// The session may hold deliveries to pull.
    pending: bool,
    /// Set while this connection's socket is not read because a message it published
    /// congested another session's queue.
    hold: Option<Box<Hold>>,
    scratch: Vec<(u16, Delivery)>,
    /// The policy's checks of this client's PUBLISHes, SUBSCRIBEs and wildcard
    /// deliveries, with their caches.
    gate: PolicyGate,
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
    /// A re-authentication under way, waiting for the client's answer.
    reauth: Option<Box<Reauth>>,
}

/// The topic aliases of an MQTT 5 connection, both ways. Boxed and made when the first
/// is used: inline, the two empty maps were 96 bytes of every connection, and most never
/// use one (issue 14: bytes per idle connection).
#[derive(Default)]
struct TopicAliases {
    /// The client's aliases for the topics of its PUBLISHes.
    inbound: HashMap<u16, ByteString>,
    /// The broker's aliases for the topics of deliveries to the client (within the
    /// client's Topic Alias Maximum).
    outbound: HashMap<ByteString, u16>,
}

impl Connection {
    fn v5(&self) -> bool {
        self.client.protocol == Protocol::V5
    }

    async fn serve(
        &mut self,
        reader: &mut Reader,
        writer: &mut Writer,
        mut rbuf: BytesMut,
        shutdown: &watch::Receiver<bool>,
    ) -> Close {
        // Two numbers, not a clone of the limits: this future's state is what an idle
        // connection costs, for as long as it lives.
        let high_water = self.broker.config.limits.write_buffer_high_water;
        let max_packet_size = self.broker.config.limits.max_packet_size;
        let mut last_packet = tokio::time::Instant::now();
        // `handle_buffered` is awaited boxed (one allocation per read, not per packet):
        // its state, the packet in hand down through the publish flow and the policy
        // gate, was the largest of this loop's (2.9 KB of a 4.9 KB task, release build),
        // and inline it would be part of every connection's task for as long as the
        // connection idles in the `select!` below.
        // A client may send packets right behind its CONNECT without waiting for CONNACK
        // (MQTT 5.0 §3.1.4); those already read with the CONNECT are in `rbuf` and must
        // not wait for the next read to be handled.
        if let Err(close) = Box::pin(self.handle_buffered(&mut rbuf, max_packet_size)).await {
            return close;
        }
        let low_water = self.broker.queue_marks().low;
        // The shutdown is told through the session's kick (`Broker::kick_all`); a
        // connection that attached after that finds it here.
        if *shutdown.borrow() {
            return Close::Shutdown;
        }
        // One timer for the keep-alive and a re-authentication's answer, whichever is
        // due first, re-armed lazily: a packet moves the deadline on without touching
        // the timer, which fires at the old deadline and is then set to the new one. So
        // a busy connection arms it once per keep-alive period, not once per read.
        let timer = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(timer);
        let mut armed = false;
        loop {
            let mut read_decided = false;
            if self.pending && self.outbox.len() < high_water {
                self.pull();
                // The next delivery needs a read decision (`deliver` hook): asked here,
                // on this subscriber's own task, so no publisher ever waits for it.
                if self.gate.decide_read(&self.client).await {
                    // Pulled again at once, but through the `select!`: a queue of
                    // questions must not keep the socket, a kick or the shutdown
                    // waiting (one plugin call each, up to its timeout).
                    read_decided = true;
                }
            }
            // Held back, the broker is what does not read: the client's silence is not
            // counted against its keep-alive.
            let keep_alive_deadline = self
                .negotiated
                .keep_alive_timeout
                .filter(|_| self.hold.is_none())
                .map(|t| last_packet + t);
            // Held back, the client's answer may be unread: its re-authentication
            // waits, like its keep-alive.
            let reauth_deadline = self
                .reauth
                .as_ref()
                .filter(|_| self.hold.is_none())
                .map(|r| r.deadline);
            let deadline = match (keep_alive_deadline, reauth_deadline) {
                (Some(k), Some(r)) => Some(k.min(r)),
                (k, r) => k.or(r),
            };
            if let Some(deadline) = deadline
                && (!armed || timer.is_elapsed() || deadline < timer.deadline())
            {
                timer.as_mut().reset(deadline);
                armed = true;
            }
            // Every branch but the hold polls what it waits for in place (the socket's
            // readiness, the session's wake, the kick, the timer): no future of its own
            // is kept across the wait, and the wait is what an idle connection's task
            // holds for all of its life (issue 14).
            tokio::select! {
                kick = &mut self.kick => {
                    let kick = kick.unwrap_or(Kick::TAKEN_OVER);
                    if kick == Kick::SHUTDOWN {
                        return Close::Shutdown;
                    }
                    return Close::Reason(kick.reason, kick.why.into());
                }
                written = poll_fn(|cx| self.outbox.poll_write(cx, writer)), if self.outbox.wants_write(writer) => match written {
                    Ok(Some(0)) => return Close::Lost("socket closed for writing".into()),
                    Ok(Some(n)) => Metrics::add(&self.broker.metrics.bytes_sent, n as u64),
                    Ok(None) => {}
                    Err(error) => return error.into(),
                },
                // No buffer is held while the connection is quiet; it is sized when there
                // is data to read (`Reader::read_chunk`).
                read = poll_fn(|cx| reader.poll_read_chunk(cx, &mut rbuf)), if self.hold.is_none() => {
                    let n = match read {
                        Ok(0) => return Close::Lost("closed by peer".into()),
                        Ok(n) => n,
                        Err(error) => return error.into(),
                    };
                    Metrics::add(&self.broker.metrics.bytes_received, n as u64);
                    // A unit per read as well as per 4 packets: a flood of large
                    // packets (a few per read) must yield too.
                    tokio::task::consume_budget().await;
                    match Box::pin(self.handle_buffered(&mut rbuf, max_packet_size)).await {
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
                    if let Err(close) = Box::pin(self.handle_buffered(&mut rbuf, max_packet_size)).await {
                        return close;
                    }
                }
                () = poll_fn(|cx| self.session.wake.poll_woken(cx, self.connection_id)) => self.pending = true,
                () = std::future::ready(()), if read_decided => {}
                () = &mut timer, if deadline.is_some() => {
                    let now = tokio::time::Instant::now();
                    if reauth_deadline.is_some_and(|r| r <= now) {
                        return self.reauth_timed_out();
                    }
                    if keep_alive_deadline.is_some_and(|k| k <= now) {
                        return Close::protocol(ReasonCode::KEEP_ALIVE_TIMEOUT, "keep alive timeout");
                    }
                    // Armed for an older deadline: set again at the top of the loop.
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
                let reply = self.session.lock().received(rec.packet_id, rec.reason_code);
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
}

/// Until `hold` (if any) is released; true when it found its target slow.
async fn held(hold: &Option<Box<Hold>>, low_water: usize) -> bool {
    match hold {
        // Boxed: a hold is rare, and its wait (a notification and a timer) inline would
        // be part of every idle connection's task.
        Some(hold) => Box::pin(hold.released(low_water)).await,
        None => std::future::pending().await,
    }
}
