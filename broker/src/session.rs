//! A client's session: its subscriptions, the messages queued for it, the QoS 1/2
//! exchanges in flight both ways, and the connection (if any) that currently owns it.
//!
//! The state sits behind a short-lived mutex; no lock is ever held across an await. A
//! publisher's task pushes [`Delivery`]s into the queue and wakes the owning connection,
//! which pulls as many as its inflight window and write buffer allow. A queue filling
//! faster than its connection drains it holds its publishers back (`backpressure.rs`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use bytestring::ByteString;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::{Notify, oneshot};
use wasmq_codec::{LastWill, Protocol, QoS, ReasonCode};

use crate::backpressure::QueueMarks;
use crate::message::Delivery;
use crate::router::SubscriptionData;
use crate::store::SessionKeeper;
use crate::topic::TopicFilter;
use crate::wake::Wake;

/// Where an outgoing QoS 1/2 message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[expect(
    clippy::enum_variant_names,
    reason = "each stage is named after the acknowledgement it waits for"
)]
pub enum Stage {
    /// QoS 1 PUBLISH sent, waiting for PUBACK.
    AwaitPubAck,
    /// QoS 2 PUBLISH sent, waiting for PUBREC.
    AwaitPubRec,
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitPubComp,
}

/// An outgoing QoS 1/2 message that is not yet acknowledged.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Its packet identifier.
    pub packet_id: u16,
    /// The message (kept for redelivery with DUP after a reconnect).
    pub delivery: Delivery,
    /// Where the exchange stands.
    pub stage: Stage,
}

/// The connection that owns a session, and how to tell it to go.
#[derive(Debug)]
pub struct Owner {
    /// The connection's id.
    pub connection_id: u64,
    /// Who is connected, as the admin API lists it.
    pub peer: ConnectedPeer,
    /// Fired to close the connection (0x8E on takeover, 0x98 from the admin API).
    pub kick: Option<oneshot::Sender<Kick>>,
}

/// Who owns a session now: what an operator looking for a client wants to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedPeer {
    /// The username the plugins see (the certificate's CN with
    /// `use_identity_as_username`).
    pub username: Option<ByteString>,
    /// The client's address.
    pub addr: SocketAddr,
    /// MQTT 3.1.1 or 5.0.
    pub protocol: Protocol,
    /// The listener it came through.
    pub listener: &'static str,
}

/// Why a connection is told to close from outside its own task: the reason code a v5
/// client gets in DISCONNECT, and what the log says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kick {
    /// Sent in DISCONNECT to a v5 client.
    pub reason: ReasonCode,
    /// For the log.
    pub why: &'static str,
}

impl Kick {
    /// Another connection took the session over [MQTT-3.1.4-3].
    pub const TAKEN_OVER: Kick = Kick {
        reason: ReasonCode::SESSION_TAKEN_OVER,
        why: "session taken over",
    };
    /// The server is shutting down: told to every connection at once (the v5 clients
    /// get 0x8B), and no will is published.
    pub const SHUTDOWN: Kick = Kick {
        reason: ReasonCode::SERVER_SHUTTING_DOWN,
        why: "server shutting down",
    };
}

/// A Will Message waiting for its Will Delay Interval.
#[derive(Debug, Clone)]
pub struct PendingWill {
    /// The will.
    pub will: LastWill,
    /// The client that set it (for No Local and logs).
    pub client_id: ByteString,
}

/// Everything that changes, behind the session's mutex.
#[derive(Debug)]
pub struct SessionState {
    /// Subscriptions by full filter (`$share/...` included).
    pub subscriptions: HashMap<ByteString, (TopicFilter, SubscriptionData)>,
    /// Messages not yet sent.
    pub queue: VecDeque<Delivery>,
    /// Sent QoS 1/2 messages awaiting acknowledgement, in sending order.
    pub inflight: VecDeque<Outgoing>,
    /// QoS 2 packet ids received and not yet released by PUBREL: a PUBLISH that repeats
    /// one of them is acknowledged but not routed again (exactly once).
    pub incoming_qos2: HashSet<u16>,
    /// The connection attached now.
    pub owner: Option<Owner>,
    /// Session Expiry Interval in seconds (0: the session ends with the connection).
    pub expiry_interval: u32,
    /// A will waiting for its delay after the connection closed. Boxed: most sessions
    /// have none, and inline it made every session 240 bytes larger.
    pub pending_will: Option<Box<PendingWill>>,
    /// Bumped at every attach and detach so timers started earlier know they are stale.
    pub epoch: u64,
    /// The session was discarded; late deliveries are dropped.
    pub ended: bool,
    /// When its connection closed (wall clock); `None` while connected.
    pub disconnected_at: Option<SystemTime>,
    /// The way into the durable store, when the broker has one (`store/keeper.rs`).
    keeper: Option<SessionKeeper>,
    /// Something of this session was written to the store: its end must be too.
    kept: bool,
    next_packet_id: u16,
}

/// A session, shared by the sessions map, the router and its connection.
#[derive(Debug)]
pub struct Session {
    /// The client identifier.
    pub client_id: ByteString,
    state: Mutex<SessionState>,
    /// Wakes the owning connection when deliveries were queued.
    pub(crate) wake: Wake,
    /// Wakes the publishers held back by this session's queue (see `backpressure.rs`)
    /// when it has drained, or when they must stop waiting for it.
    pub(crate) room: Notify,
    /// Mirrors `state.owner.is_some()`, read without the lock by shared-subscription picks.
    online: AtomicBool,
    /// The owning connection is held back itself and reads nothing: waiting for this
    /// session could close a cycle of connections waiting for each other.
    pub(crate) held: AtomicBool,
    /// The session did not drain in time while publishers waited for it: it is not
    /// waited for again until its queue is back under the low mark.
    pub(crate) slow: AtomicBool,
    /// A publisher was told the queue is congested: the connection tells `room` once it
    /// has drained (and need not otherwise, which keeps the notify off the hot path).
    congested: AtomicBool,
    /// The last message routed here: detects overlapping subscriptions without a set.
    pub(crate) route_mark: AtomicU64,
}

/// What became of a delivery offered to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued.
    Queued,
    /// Queued, and the queue of this online session is past its high mark: the
    /// publisher should hold back until it drains.
    Congested,
    /// The queue was full: dropped (the newest message is the one dropped).
    QueueFull,
    /// QoS 0 for an offline session: not kept.
    OfflineQoS0,
    /// The session has ended.
    Ended,
    /// The durable store is full: a message of a persistent session is not taken
    /// without being kept.
    StoreFull,
}

impl Session {
    /// A new, empty session.
    pub fn new(
        client_id: ByteString,
        expiry_interval: u32,
        keeper: Option<SessionKeeper>,
    ) -> Arc<Session> {
        Arc::new(Session {
            client_id,
            state: Mutex::new(SessionState {
                subscriptions: HashMap::new(),
                queue: VecDeque::new(),
                inflight: VecDeque::new(),
                incoming_qos2: HashSet::new(),
                owner: None,
                expiry_interval,
                pending_will: None,
                epoch: 0,
                ended: false,
                disconnected_at: None,
                keeper,
                kept: false,
                next_packet_id: 1,
            }),
            wake: Wake::default(),
            room: Notify::new(),
            online: AtomicBool::new(false),
            held: AtomicBool::new(false),
            slow: AtomicBool::new(false),
            congested: AtomicBool::new(false),
            route_mark: AtomicU64::new(0),
        })
    }

    /// Locks the state. Callers never hold it across an await, nor together with the
    /// router lock.
    pub fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock()
    }

    /// Tells the owning connection to close with `kick` (its kick is taken: it is told
    /// once). False when no connection owns the session or it was told already.
    pub fn tell_owner(&self, kick: Kick) -> bool {
        let sender = self.lock().owner.as_mut().and_then(|o| o.kick.take());
        sender.is_some_and(|sender| sender.send(kick).is_ok())
    }

    /// Whether a connection is attached.
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    pub(crate) fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::Relaxed);
    }

    /// Offers a delivery; wakes the owning connection when it is queued. `marks.max`
    /// bounds the queue; an online session's queue past `marks.high` says `Congested`
    /// (unless the session is slow or held back itself, see `backpressure.rs`).
    pub fn enqueue(&self, delivery: Delivery, marks: QueueMarks) -> Enqueued {
        let mut state = self.lock();
        if state.ended {
            return Enqueued::Ended;
        }
        let online = state.owner.is_some();
        if !online && delivery.qos == QoS::AtMostOnce {
            return Enqueued::OfflineQoS0;
        }
        if state.queue.len() >= marks.max {
            return Enqueued::QueueFull;
        }
        let mut delivery = delivery;
        if !state.keep_queued(&mut delivery) {
            return Enqueued::StoreFull;
        }
        // Only the first delivery into an empty queue wakes the connection: while the
        // queue is non-empty the connection has either been woken already or stopped
        // pulling for a reason that wakes it again (an ack freeing its window, its write
        // buffer draining). Both sides decide under this lock, so no wake-up is lost.
        let was_empty = state.queue.is_empty();
        state.queue.push_back(delivery);
        let congested = online
            && state.queue.len() >= marks.high
            && !self.slow.load(Ordering::Acquire)
            && !self.held.load(Ordering::Acquire);
        if congested {
            self.congested.store(true, Ordering::Release);
        }
        drop(state);
        if online && was_empty {
            self.wake.notify();
        }
        if congested {
            Enqueued::Congested
        } else {
            Enqueued::Queued
        }
    }

    /// Called by the owning connection after it took deliveries: once the queue is at
    /// or under `low`, the publishers held back by it may go on, and a slow session has
    /// caught up.
    pub(crate) fn drained(&self, queue_len: usize, low: usize) {
        if queue_len > low {
            return;
        }
        if self.slow.load(Ordering::Relaxed) {
            self.slow.store(false, Ordering::Release);
        }
        if self.congested.load(Ordering::Acquire) {
            self.congested.store(false, Ordering::Release);
            self.room.notify_waiters();
        }
    }

    /// Whether a publisher held back by this session may go on: its queue is at or under
    /// `low`, or waiting for it is pointless (offline, ended, slow, held back itself).
    pub(crate) fn has_room(&self, low: usize) -> bool {
        if self.slow.load(Ordering::Acquire) || self.held.load(Ordering::Acquire) {
            return true;
        }
        let state = self.lock();
        state.ended || state.owner.is_none() || state.queue.len() <= low
    }

    /// Marks the owning connection as held back (or free again), and tells whoever waits
    /// for this session to look again (a held session is not waited for).
    pub(crate) fn set_held(&self, held: bool) {
        self.held.store(held, Ordering::Release);
        if held {
            self.room.notify_waiters();
        }
    }

    /// Marks the session slow (it did not drain while a publisher waited `since` then)
    /// and lets every publisher waiting for it go on. True when it was not slow yet.
    pub(crate) fn mark_slow(&self, since: Instant) -> bool {
        let newly = !self.slow.swap(true, Ordering::AcqRel);
        if newly {
            tracing::debug!(
                client_id = %self.client_id,
                waited_ms = since.elapsed().as_millis() as u64,
                "slow subscriber: publishers are no longer held back for it"
            );
        }
        self.room.notify_waiters();
        newly
    }
}

impl SessionState {
    /// The durable store, while this session is persistent and has not ended: every
    /// change below is written there too.
    pub fn keeper(&self) -> Option<&SessionKeeper> {
        self.keeper
            .as_ref()
            .filter(|_| self.expiry_interval > 0 && !self.ended)
    }

    /// Writes the session's expiry and connection state; it is in the store from now on.
    pub fn keep_meta(&mut self) {
        if let Some(keeper) = self.keeper() {
            keeper.meta(self.expiry_interval, self.disconnected_at);
            self.kept = true;
        }
    }

    /// Numbers and writes a delivery to a persistent session (QoS 1 and 2; QoS 0 is not
    /// kept). False when the store is full and it cannot be kept.
    fn keep_queued(&mut self, delivery: &mut Delivery) -> bool {
        delivery.stored = 0;
        let Some(keeper) = self.keeper().filter(|_| delivery.qos != QoS::AtMostOnce) else {
            return true;
        };
        if keeper.is_full() {
            return false;
        }
        delivery.stored = keeper.queued(delivery);
        self.kept = true;
        true
    }

    /// A delivery this session is done with (acknowledged, expired, refused or handed
    /// on): it leaves the store.
    pub fn forget(&self, delivery: &Delivery) {
        if let Some(keeper) = self.keeper() {
            keeper.done(delivery);
        }
    }

    /// Writes where an in-flight message stands (its packet id, PUBREL sent).
    pub fn keep_sent(&self, outgoing: &Outgoing) {
        if outgoing.delivery.stored != 0
            && let Some(keeper) = self.keeper()
        {
            keeper.sent(outgoing);
        }
    }

    /// Records an incoming QoS 2 packet id awaiting PUBREL.
    pub fn receive_qos2(&mut self, packet_id: u16) {
        self.incoming_qos2.insert(packet_id);
        if let Some(keeper) = self.keeper() {
            keeper.incoming(packet_id);
        }
    }

    /// Releases an incoming QoS 2 packet id (PUBREL); true when it was awaited.
    pub fn release_qos2(&mut self, packet_id: u16) -> bool {
        let released = self.incoming_qos2.remove(&packet_id);
        if released && let Some(keeper) = self.keeper() {
            keeper.released(packet_id);
        }
        released
    }

    /// Writes a subscription added or replaced.
    pub fn keep_subscription(&self, filter: &TopicFilter, data: &SubscriptionData) {
        if let Some(keeper) = self.keeper() {
            keeper.subscribed(filter, data);
        }
    }

    /// Writes a subscription removed.
    pub fn forget_subscription(&self, filter: &str) {
        if let Some(keeper) = self.keeper() {
            keeper.unsubscribed(filter);
        }
    }

    /// Writes the will the session has now (or that it has none).
    pub fn keep_will(&self, will: Option<&LastWill>) {
        if let Some(keeper) = self.keeper() {
            keeper.will(will);
        }
    }

    /// Ends the session: late deliveries are dropped, and whatever it had in the store
    /// goes (in the same lock, so no change of it can follow into the store).
    pub fn end(&mut self) {
        if self.kept
            && !self.ended
            && let Some(keeper) = &self.keeper
        {
            keeper.ended();
        }
        self.ended = true;
    }

    /// Allocates a packet identifier not used by any message in flight [MQTT-2.2.1-3].
    pub fn next_packet_id(&mut self) -> u16 {
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if !self.inflight.iter().any(|o| o.packet_id == id) {
                return id;
            }
        }
    }

    /// PUBACK (QoS 1) or PUBCOMP (QoS 2): the message in flight as `packet_id` at `stage`
    /// is done, and leaves the window and the store. False when none was (a late or
    /// repeated acknowledgement, which changes nothing).
    pub fn complete(&mut self, packet_id: u16, stage: Stage) -> bool {
        let Some(index) = self.inflight_position(packet_id, stage) else {
            return false;
        };
        if let Some(done) = self.inflight.remove(index) {
            self.forget(&done.delivery);
        }
        true
    }

    /// PUBREC for the QoS 2 message in flight as `packet_id`: the reason code of the
    /// PUBREL to answer with, or `None` when the receiver refused the message (an error
    /// reason in PUBREC ends the exchange, MQTT 5.0 section 4.3.3: it leaves the window
    /// and the store, and no PUBREL follows). Received, it waits for PUBCOMP, and the
    /// store knows it does. An id with no such message gets 0x92.
    pub fn received(&mut self, packet_id: u16, reason: ReasonCode) -> Option<ReasonCode> {
        let Some(index) = self.inflight_position(packet_id, Stage::AwaitPubRec) else {
            return Some(ReasonCode::PACKET_IDENTIFIER_NOT_FOUND);
        };
        if reason.is_error() {
            if let Some(refused) = self.inflight.remove(index) {
                self.forget(&refused.delivery);
            }
            return None;
        }
        self.inflight[index].stage = Stage::AwaitPubComp;
        self.keep_sent(&self.inflight[index]);
        Some(ReasonCode::SUCCESS)
    }

    /// Finds the in-flight message `packet_id` at `stage`.
    pub fn inflight_position(&self, packet_id: u16, stage: Stage) -> Option<usize> {
        // Acks mostly arrive in sending order, so the match is usually at the front.
        self.inflight
            .iter()
            .position(|o| o.packet_id == packet_id && o.stage == stage)
    }
}

/// An `Arc<Session>` compared by identity: the router's subscriber handle.
#[derive(Debug, Clone)]
pub struct SessionRef(pub Arc<Session>);

impl PartialEq for SessionRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SessionRef {}

impl Hash for SessionRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.0), state);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use wasmq_codec::{Publish, PublishProperties};

    use super::*;
    use crate::message::Message;
    use crate::topic::TopicName;

    /// A session with one QoS 2 message in flight as packet id 7, awaiting PUBREC.
    fn in_flight() -> Arc<Session> {
        let session = Session::new("c".into(), 0, None);
        let publish = Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: "t".into(),
            packet_id: 0,
            payload: Bytes::from_static(b"x"),
            properties: PublishProperties::default(),
        };
        let topic = TopicName::new("t".into(), 8).unwrap();
        let delivery = Delivery {
            message: Message::new(topic, publish, None),
            qos: QoS::ExactlyOnce,
            retain: false,
            subscription_ids: Vec::new(),
            share: None,
            stored: 0,
            check_read: false,
        };
        session.lock().inflight.push_back(Outgoing {
            packet_id: 7,
            delivery,
            stage: Stage::AwaitPubRec,
        });
        session
    }

    #[test]
    fn pubrec_moves_the_message_on_to_pubcomp_and_pubcomp_completes_it() {
        let session = in_flight();
        let mut state = session.lock();
        assert_eq!(
            state.received(7, ReasonCode::SUCCESS),
            Some(ReasonCode::SUCCESS)
        );
        assert_eq!(state.inflight[0].stage, Stage::AwaitPubComp);
        // A PUBACK for it (the wrong stage) changes nothing; PUBCOMP ends it.
        assert!(!state.complete(7, Stage::AwaitPubAck));
        assert!(state.complete(7, Stage::AwaitPubComp));
        assert!(state.inflight.is_empty());
        assert!(!state.complete(7, Stage::AwaitPubComp));
    }

    #[test]
    fn a_refusing_pubrec_ends_the_exchange_without_pubrel() {
        let session = in_flight();
        let mut state = session.lock();
        assert_eq!(state.received(7, ReasonCode(0x80)), None);
        assert!(state.inflight.is_empty());
    }

    #[test]
    fn a_pubrec_for_no_message_in_flight_gets_0x92() {
        let session = in_flight();
        let mut state = session.lock();
        assert_eq!(
            state.received(8, ReasonCode::SUCCESS),
            Some(ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)
        );
        assert_eq!(state.inflight.len(), 1);
    }
}
