//! The state every connection shares: sessions by client id, the router, the retained
//! store, the counters and the policy hooks; and the operations that touch several of
//! them (attach/detach a session, route a message, end a session, publish a will).
//!
//! Lock order: the sessions map may be held while a session's state is locked; the
//! router lock and a session's state lock are never held together (routing collects its
//! targets under the router's read lock, then enqueues after releasing it).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytestring::ByteString;
use parking_lot::{Mutex, RwLock};
use tracing::{debug, warn};
use wasmq_codec::{LastWill, Publish, PublishProperties, QoS};

use crate::backpressure::QueueMarks;
use crate::config::Config;
use crate::hooks::{Hooks, PolicyGeneration};
use crate::message::{Delivery, Message};
use crate::metrics::Metrics;
use crate::router::{Match, Router, SubscriptionData};
use crate::session::{
    ConnectedPeer, Enqueued, Kick, Owner, PendingWill, Session, SessionRef, Stage,
};
use crate::storage::{RetainStore, SessionSnapshot, SessionStore, Storage};
use crate::store::{Journal, SessionKeeper};
use crate::topic::{TopicFilter, TopicName};

/// Where a published message went.
#[derive(Debug, Default)]
pub struct Routed {
    /// Sessions it was offered to.
    pub matched: usize,
    /// The first of them whose queue is congested: the publisher holds back for it.
    pub congested: Option<Arc<Session>>,
    /// Something of it was written to the durable store (a delivery to a persistent
    /// session, the retained message): its acknowledgement waits for the journal.
    pub kept: bool,
}

/// One session as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    /// The client identifier.
    pub client_id: String,
    /// Whether a connection owns it now.
    pub connected: bool,
    /// Session Expiry Interval, seconds (0: it ends with its connection).
    pub expiry_interval_secs: u32,
    /// Subscriptions it holds.
    pub subscriptions: usize,
    /// Messages waiting in its queue.
    pub queued: usize,
    /// QoS 1/2 messages sent and not yet acknowledged.
    pub inflight: usize,
    /// Who is connected, when a connection owns it.
    pub peer: Option<ConnectedPeer>,
}

/// Messages held in sessions, all sessions together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepths {
    /// Waiting in queues.
    pub queued: u64,
    /// Sent, not yet acknowledged.
    pub inflight: u64,
    /// The longest queue.
    pub longest_queue: u64,
}

/// The shared broker state.
pub struct Broker {
    /// The configuration it was started with.
    pub config: Config,
    /// Counters for `$SYS`.
    pub metrics: Metrics,
    /// Policy hooks; `None` allows everything.
    pub hooks: Option<Arc<dyn Hooks>>,
    /// When the broker started, for `$SYS/broker/uptime`.
    pub started: Instant,
    sessions: Mutex<HashMap<ByteString, Arc<Session>>>,
    router: RwLock<Router<SessionRef>>,
    retained: Arc<dyn RetainStore>,
    session_store: Arc<dyn SessionStore>,
    journal: Option<Arc<Journal>>,
    next_connection_id: AtomicU64,
    next_route_id: AtomicU64,
    /// The policy's generation, shared with the hooks (a plugin swap bumps it there, a
    /// purge here); every connection's `PolicyGate` reads it.
    generation: PolicyGeneration,
    queue_marks: QueueMarks,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker with in-memory storage.
    pub fn new(config: Config, hooks: Option<Arc<dyn Hooks>>) -> Arc<Broker> {
        Broker::with_storage(config, hooks, Storage::memory())
    }

    /// A broker on `storage`, with the persistent sessions it holds restored (offline,
    /// their expiry counted from when they went offline). Must run inside a tokio runtime
    /// when the store holds sessions (their expiry timers are tasks).
    pub fn with_storage(
        config: Config,
        hooks: Option<Arc<dyn Hooks>>,
        storage: Storage,
    ) -> Arc<Broker> {
        let generation = hooks.as_ref().map(|h| h.generation()).unwrap_or_default();
        let broker = Arc::new(Broker {
            metrics: Metrics::default(),
            hooks,
            started: Instant::now(),
            sessions: Mutex::new(HashMap::new()),
            router: RwLock::new(Router::default()),
            retained: storage.retained,
            session_store: storage.sessions,
            journal: storage.journal,
            next_connection_id: AtomicU64::new(1),
            next_route_id: AtomicU64::new(1),
            generation,
            queue_marks: QueueMarks::new(&config.limits),
            config,
        });
        broker.restore_sessions();
        broker
    }

    fn restore_sessions(self: &Arc<Self>) {
        for snapshot in self.session_store.load_all() {
            let elapsed = snapshot.disconnected_at.elapsed().unwrap_or_default();
            let left =
                Duration::from_secs(u64::from(snapshot.expiry_interval)).saturating_sub(elapsed);
            if left.is_zero() {
                self.session_store.remove(&snapshot.client_id);
                continue;
            }
            let session = Session::new(
                snapshot.client_id.clone(),
                snapshot.expiry_interval,
                self.keeper(&snapshot.client_id),
            );
            let will = snapshot.will.map(|will| PendingWill {
                will,
                client_id: snapshot.client_id.clone(),
            });
            {
                let mut state = session.lock();
                state.disconnected_at = Some(snapshot.disconnected_at);
                state.pending_will = will.clone().map(Box::new);
                state.queue.extend(snapshot.queue);
                state.inflight.extend(snapshot.inflight);
                state.incoming_qos2.extend(snapshot.incoming_qos2);
                for (filter, data) in snapshot.subscriptions {
                    state
                        .subscriptions
                        .insert(filter.full().into(), (filter, data));
                }
            }
            let subscriptions: Vec<_> = session.lock().subscriptions.values().cloned().collect();
            {
                let mut router = self.router.write();
                for (filter, data) in subscriptions {
                    router.subscribe(&filter, SessionRef(session.clone()), data);
                }
            }
            self.sessions
                .lock()
                .insert(snapshot.client_id, session.clone());
            self.schedule_expiry(&session, 0, left);
            if let Some(will) = will {
                // The will's delay counts from when the connection went, as the
                // expiry does; it goes at the expiry at the latest.
                let delay = Duration::from_secs(u64::from(will_delay(&will.will)))
                    .saturating_sub(elapsed)
                    .min(left);
                self.schedule_will(&session, 0, delay);
            }
        }
    }

    /// The durable store's journal, when there is one.
    pub fn journal(&self) -> Option<&Arc<Journal>> {
        self.journal.as_ref()
    }

    fn keeper(&self, client_id: &ByteString) -> Option<SessionKeeper> {
        self.journal
            .as_ref()
            .map(|journal| SessionKeeper::new(journal.clone(), client_id.clone()))
    }

    /// Saves every persistent session to the session store (at shutdown).
    pub fn save_sessions(&self) {
        let sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        for session in sessions {
            self.save_session(&session);
        }
    }

    fn save_session(&self, session: &Session) {
        let snapshot = {
            let state = session.lock();
            if state.ended || state.expiry_interval == 0 {
                return;
            }
            SessionSnapshot {
                client_id: session.client_id.clone(),
                expiry_interval: state.expiry_interval,
                disconnected_at: state.disconnected_at.unwrap_or_else(SystemTime::now),
                subscriptions: state.subscriptions.values().cloned().collect(),
                queue: state.queue.iter().cloned().collect(),
                inflight: state.inflight.iter().cloned().collect(),
                incoming_qos2: state.incoming_qos2.iter().copied().collect(),
                will: state.pending_will.as_ref().map(|p| p.will.clone()),
            }
        };
        self.session_store.save(snapshot);
    }

    /// The policy's generation: what a connection caches under an older one is not used.
    pub fn policy_generation(&self) -> &PolicyGeneration {
        &self.generation
    }

    /// Invalidates every connection's cached authorization decisions, read access and
    /// transforms (after a rule change).
    pub fn purge_authz_cache(&self) {
        self.generation.bump();
    }

    /// A fresh connection id.
    pub fn connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Number of sessions (connected or not).
    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Number of subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.router.read().len()
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// What every session holds now, by client id (for the admin API). Each session is
    /// locked in turn, briefly; the sessions map only while its entries are copied.
    pub fn session_summaries(&self) -> Vec<SessionSummary> {
        let sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        let mut summaries: Vec<SessionSummary> = sessions
            .iter()
            .map(|session| {
                let state = session.lock();
                SessionSummary {
                    client_id: session.client_id.to_string(),
                    connected: state.owner.is_some(),
                    expiry_interval_secs: state.expiry_interval,
                    subscriptions: state.subscriptions.len(),
                    queued: state.queue.len(),
                    inflight: state.inflight.len(),
                    peer: state.owner.as_ref().map(|o| o.peer.clone()),
                }
            })
            .collect();
        summaries.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        summaries
    }

    /// Messages waiting in every session's queue, and sent but not yet acknowledged,
    /// now (for the metrics: a walk over the sessions, at scrape time only).
    pub fn queue_depths(&self) -> QueueDepths {
        let sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        let mut depths = QueueDepths::default();
        for session in sessions {
            let state = session.lock();
            depths.queued += state.queue.len() as u64;
            depths.inflight += state.inflight.len() as u64;
            depths.longest_queue = depths.longest_queue.max(state.queue.len() as u64);
        }
        depths
    }

    /// Tells the connection that owns `client_id`'s session to close (v5 clients get the
    /// kick's reason in a DISCONNECT, e.g. 0x98 Administrative action). The session
    /// stays as its expiry says. False when no connection owns it (no such session,
    /// offline, or already told to go).
    pub fn kick(&self, client_id: &str, kick: Kick) -> bool {
        let Some(session) = self.sessions.lock().get(client_id).cloned() else {
            return false;
        };
        let told = session.tell_owner(kick);
        if told {
            debug!(client_id, reason = ?kick.reason, why = kick.why, "client told to disconnect");
        }
        told
    }

    /// Tells every connection that owns a session to close with `kick` (the server's
    /// shutdown).
    pub fn kick_all(&self, kick: Kick) {
        let sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        for session in sessions {
            session.tell_owner(kick);
        }
    }

    /// Attaches the connection `owner` describes to the session of `client_id`: resumes
    /// it (unless `clean_start`) or starts a new one. A connection already attached is
    /// told to go with 0x8E. Returns the session and Session Present.
    pub fn attach(
        self: &Arc<Self>,
        client_id: &ByteString,
        clean_start: bool,
        expiry_interval: u32,
        owner: Owner,
    ) -> (Arc<Session>, bool) {
        let mut sessions = self.sessions.lock();
        let mut discarded = None;
        if let Some(existing) = sessions.get(client_id).cloned() {
            let mut state = existing.lock();
            if let Some(mut old) = state.owner.take() {
                debug!(client_id = %client_id, "session taken over");
                if let Some(kick) = old.kick.take() {
                    let _ = kick.send(Kick::TAKEN_OVER);
                }
            }
            if !clean_start && !state.ended {
                state.owner = Some(owner);
                state.epoch += 1;
                state.expiry_interval = expiry_interval;
                state.disconnected_at = None;
                // Resumed before the Will Delay Interval passed: the will is not sent.
                state.pending_will = None;
                state.keep_meta();
                drop(state);
                existing.set_online(true);
                return (existing, true);
            }
            // Ended here, under its lock, so its end reaches the store before anything
            // of the session that replaces it.
            state.end();
            drop(state);
            existing.set_online(false);
            discarded = Some(existing);
        }
        let session = Session::new(client_id.clone(), expiry_interval, self.keeper(client_id));
        {
            let mut state = session.lock();
            state.owner = Some(owner);
            state.keep_meta();
        }
        session.set_online(true);
        sessions.insert(client_id.clone(), session.clone());
        drop(sessions);
        if let Some(old) = discarded {
            self.end_session(&old);
        }
        (session, false)
    }

    /// Detaches connection `connection_id` from `session` when the connection closes.
    /// `will` is the will to publish (already cleared on a normal DISCONNECT).
    pub fn detach(
        self: &Arc<Self>,
        session: &Arc<Session>,
        connection_id: u64,
        will: Option<PendingWill>,
    ) {
        let mut state = session.lock();
        let owner = state.owner.as_ref().map(|o| o.connection_id);
        if owner != Some(connection_id) {
            // Taken over. If the session went on, a delayed will is not sent (the
            // session was resumed before the delay ran out); if it was discarded, the
            // session ended and the will goes now.
            let ended = state.ended;
            drop(state);
            if let Some(will) = will
                && (ended || will_delay(&will.will) == 0)
            {
                self.publish_will(will);
            }
            return;
        }
        state.owner = None;
        state.epoch += 1;
        state.disconnected_at = Some(SystemTime::now());
        session.set_online(false);
        // Publishers held back by this session's queue go on: nobody drains it now.
        session.room.notify_waiters();
        let epoch = state.epoch;
        let expiry = state.expiry_interval;
        if expiry == 0 {
            state.pending_will = will.map(Box::new);
            drop(state);
            self.end_session(session);
            return;
        }
        let shared = take_shared(&mut state);
        let mut delay = None;
        match will {
            Some(will) if will_delay(&will.will) > 0 => {
                delay = Some(will_delay(&will.will).min(expiry));
                // Stays in the store, as written at CONNECT, until it goes.
                state.pending_will = Some(Box::new(will));
            }
            Some(will) => {
                state.keep_will(None);
                drop(state);
                self.publish_will(will);
                state = session.lock();
            }
            // A normal DISCONNECT: the will is discarded [MQTT-3.1.2-10].
            None => state.keep_will(None),
        }
        drop(state);
        self.redispatch(shared, session);
        if let Some(secs) = delay {
            self.schedule_will(session, epoch, Duration::from_secs(u64::from(secs)));
        }
        self.save_session(session);
        self.schedule_expiry(session, epoch, Duration::from_secs(u64::from(expiry)));
    }

    /// Publishes the session's pending will after `after`, unless a connection attached
    /// to it meanwhile (which changes its epoch).
    fn schedule_will(self: &Arc<Self>, session: &Arc<Session>, epoch: u64, after: Duration) {
        let broker = self.clone();
        let session = session.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let will = {
                let mut state = session.lock();
                if state.epoch != epoch {
                    return;
                }
                let will = state.pending_will.take();
                if will.is_some() {
                    state.keep_will(None);
                }
                will
            };
            if let Some(will) = will {
                broker.publish_will(*will);
            }
        });
    }

    /// Ends `session` after `after` unless a connection attached to it meanwhile (which
    /// changes its epoch).
    fn schedule_expiry(self: &Arc<Self>, session: &Arc<Session>, epoch: u64, after: Duration) {
        let broker = self.clone();
        let session = session.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let expired = {
                let mut state = session.lock();
                let expired = state.epoch == epoch && state.owner.is_none() && !state.ended;
                if expired {
                    state.end();
                }
                expired
            };
            if expired {
                debug!(client_id = %session.client_id, "session expired");
                broker.end_session(&session);
            }
        });
    }

    /// Ends a session: forgets it, removes its subscriptions, hands its shared-subscription
    /// messages to other members, and publishes a will still waiting for its delay.
    fn end_session(&self, session: &Arc<Session>) {
        {
            let mut sessions = self.sessions.lock();
            if sessions
                .get(&session.client_id)
                .is_some_and(|s| Arc::ptr_eq(s, session))
            {
                sessions.remove(&session.client_id);
                self.session_store.remove(&session.client_id);
            }
        }
        let (subscriptions, shared, will) = {
            let mut state = session.lock();
            state.end();
            let shared = take_shared(&mut state);
            state.queue.clear();
            state.inflight.clear();
            (
                std::mem::take(&mut state.subscriptions),
                shared,
                state.pending_will.take(),
            )
        };
        // Publishers held back by this session's queue go on: it is gone.
        session.room.notify_waiters();
        {
            let mut router = self.router.write();
            let who = SessionRef(session.clone());
            for (filter, _) in subscriptions.values() {
                router.unsubscribe(filter, &who);
            }
        }
        self.redispatch(shared, session);
        if let Some(will) = will {
            self.publish_will(*will);
        }
    }

    /// Adds a subscription; true when it replaced an existing one.
    pub fn subscribe(
        &self,
        session: &Arc<Session>,
        filter: TopicFilter,
        data: SubscriptionData,
    ) -> bool {
        let who = SessionRef(session.clone());
        let existed = self.router.write().subscribe(&filter, who.clone(), data);
        let ended = {
            let mut state = session.lock();
            state.keep_subscription(&filter, &data);
            state
                .subscriptions
                .insert(filter.full().into(), (filter.clone(), data));
            state.ended
        };
        if ended {
            // The session was discarded (takeover) while this SUBSCRIBE was handled.
            self.router.write().unsubscribe(&filter, &who);
        }
        existed
    }

    /// Removes a subscription; true when it existed. Messages queued for it through a
    /// share group go to the group's other members.
    pub fn unsubscribe(&self, session: &Arc<Session>, filter: &TopicFilter) -> bool {
        let removed = self
            .router
            .write()
            .unsubscribe(filter, &SessionRef(session.clone()));
        let shared = {
            let mut state = session.lock();
            if state.subscriptions.remove(filter.full()).is_some() {
                state.forget_subscription(filter.full());
            }
            let mut shared = Vec::new();
            if filter.share_group().is_some() {
                state.queue.retain(|d| {
                    let mine = d.share.as_ref() == Some(filter);
                    if mine {
                        shared.push(d.clone());
                    }
                    !mine
                });
                for delivery in &shared {
                    state.forget(delivery);
                }
            }
            shared
        };
        self.redispatch(shared, session);
        removed
    }

    /// The retained messages matching `filter`.
    pub fn retained_matching(&self, filter: &TopicFilter) -> Vec<Arc<Message>> {
        let mut out = Vec::new();
        self.retained.matching(filter, Instant::now(), &mut out);
        out
    }

    /// Stores (or clears) the retained message, then routes the message.
    pub fn publish(&self, message: Arc<Message>) -> Routed {
        // Changes submitted by others meanwhile only make the wait cover them too.
        let submitted = self.journal.as_ref().map(|j| j.submitted());
        let mut routed = self.publish_unkept(message);
        routed.kept = submitted != self.journal.as_ref().map(|j| j.submitted());
        routed
    }

    fn publish_unkept(&self, mut message: Arc<Message>) -> Routed {
        if message.publish.retain {
            if message.publish.payload.is_empty() {
                self.retained.remove(message.topic());
            } else {
                // Kept until replaced: detached from the publisher's read buffer.
                message = message.detached();
                let capacity = self.config.limits.max_retained_messages;
                if !self.retained.set(message.clone(), capacity) {
                    warn!(
                        topic = %message.topic(),
                        capacity, "retained store full: message not retained"
                    );
                    Metrics::add(&self.metrics.retained_refused_full, 1);
                }
            }
        }
        self.route(message)
    }

    fn route(&self, message: Arc<Message>) -> Routed {
        let route_id = self.next_route_id.fetch_add(1, Ordering::Relaxed);
        let publish = &message.publish;
        let mut targets: Vec<(Arc<Session>, Delivery)> = Vec::new();
        {
            let router = self.router.read();
            router.matches(message.topic(), |found| match found {
                Match::Direct(who, data, wildcard) => {
                    let session = &who.0;
                    if data.options.no_local && message.origin.as_ref() == Some(&session.client_id)
                    {
                        return;
                    }
                    let qos = publish.qos.min(data.options.qos);
                    let retain = publish.retain && data.options.retain_as_published;
                    if session.route_mark.swap(route_id, Ordering::Relaxed) == route_id {
                        // Overlapping subscriptions: one copy at the highest QoS, carrying
                        // every subscription identifier [MQTT-3.3.4-2, MQTT-3.3.4-4].
                        if let Some((_, d)) = targets
                            .iter_mut()
                            .find(|(s, d)| d.share.is_none() && Arc::ptr_eq(s, session))
                        {
                            d.qos = d.qos.max(qos);
                            d.retain |= retain;
                            d.subscription_ids.extend(data.id);
                            // An exact filter's subscribe check covered the topic.
                            d.check_read &= wildcard;
                        }
                        return;
                    }
                    targets.push((
                        session.clone(),
                        Delivery {
                            message: message.clone(),
                            qos,
                            retain,
                            subscription_ids: data.id.into_iter().collect(),
                            share: None,
                            stored: 0,
                            check_read: wildcard,
                        },
                    ));
                }
                Match::Shared(group) => {
                    if let Some((who, data)) = group.pick(|s| s.0.is_online()) {
                        targets.push((
                            who.0.clone(),
                            Delivery {
                                message: message.clone(),
                                qos: publish.qos.min(data.options.qos),
                                retain: false,
                                subscription_ids: data.id.into_iter().collect(),
                                share: Some(group.filter.clone()),
                                stored: 0,
                                check_read: group.filter.has_wildcard(),
                            },
                        ));
                    }
                }
            });
        }
        let mut routed = Routed {
            matched: targets.len(),
            congested: None,
            kept: false,
        };
        let mut detached = None;
        for (session, mut delivery) in targets {
            // Kept until the client comes back (offline sessions queue QoS 1 and 2 only):
            // detached from the publisher's read buffer, once for all such sessions.
            if delivery.qos != QoS::AtMostOnce && !session.is_online() {
                delivery.message = detached.get_or_insert_with(|| message.detached()).clone();
            }
            if self.offer(&session, delivery) && routed.congested.is_none() {
                routed.congested = Some(session);
            }
        }
        routed
    }

    /// The marks of every session's queue (`backpressure.rs`).
    pub fn queue_marks(&self) -> QueueMarks {
        self.queue_marks
    }

    /// Queues a delivery for a session and counts what was dropped. True when the
    /// session's queue is congested: the publisher should hold back.
    pub fn offer(&self, session: &Session, delivery: Delivery) -> bool {
        match session.enqueue(delivery, self.queue_marks()) {
            Enqueued::Queued | Enqueued::Ended => false,
            Enqueued::Congested => true,
            Enqueued::QueueFull => {
                Metrics::add(&self.metrics.messages_dropped_queue_full, 1);
                debug!(client_id = %session.client_id, "queue full, message dropped");
                false
            }
            Enqueued::OfflineQoS0 => {
                Metrics::add(&self.metrics.messages_dropped_offline_qos0, 1);
                false
            }
            Enqueued::StoreFull => {
                Metrics::add(&self.metrics.messages_dropped_store_full, 1);
                debug!(client_id = %session.client_id, "store full, message dropped");
                false
            }
        }
    }

    /// Gives shared-subscription deliveries of a leaving member to another member.
    fn redispatch(&self, deliveries: Vec<Delivery>, leaving: &Arc<Session>) {
        for mut delivery in deliveries {
            let Some(filter) = delivery.share.clone() else {
                continue;
            };
            let target = {
                let router = self.router.read();
                router.shared_group(&filter).and_then(|group| {
                    let other = |s: &SessionRef| !Arc::ptr_eq(&s.0, leaving);
                    group
                        .pick(|s| other(s) && s.0.is_online())
                        .filter(|(s, _)| other(s))
                        .map(|(s, data)| (s.0.clone(), *data))
                })
            };
            match target {
                Some((session, data)) => {
                    delivery.qos = delivery.message.publish.qos.min(data.options.qos);
                    delivery.subscription_ids = data.id.into_iter().collect();
                    self.offer(&session, delivery);
                }
                None => {
                    warn!(group = ?filter, "no other member of the share group: message dropped");
                    Metrics::add(&self.metrics.messages_dropped_no_share_member, 1);
                }
            }
        }
    }

    /// Publishes a Will Message.
    pub fn publish_will(&self, pending: PendingWill) {
        let PendingWill { will, client_id } = pending;
        debug!(client_id = %client_id, topic = %will.topic, "publishing will");
        // Validated at CONNECT, under the level limit of that time (a restored will may
        // have been accepted before a restart that lowered it): no limit now.
        let topic = match TopicName::new(will.topic.clone(), usize::MAX) {
            Ok(topic) => topic,
            Err(error) => {
                warn!(client_id = %client_id, %error, "will topic invalid: will not published");
                return;
            }
        };
        let p = will.properties;
        let publish = Publish {
            dup: false,
            qos: will.qos,
            retain: will.retain,
            topic: will.topic,
            packet_id: 0,
            payload: will.payload,
            properties: PublishProperties {
                payload_format_indicator: p.payload_format_indicator,
                message_expiry_interval: p.message_expiry_interval,
                topic_alias: None,
                response_topic: p.response_topic,
                correlation_data: p.correlation_data,
                user_properties: p.user_properties,
                subscription_identifiers: Vec::new(),
                content_type: p.content_type,
            },
        };
        self.publish(Message::new(topic, publish, Some(client_id)));
    }
}

fn will_delay(will: &LastWill) -> u32 {
    will.properties.will_delay_interval.unwrap_or(0)
}

/// Takes the deliveries of shared subscriptions that the client has not received yet
/// (queued, or sent and not acknowledged with PUBACK/PUBREC) out of the session.
fn take_shared(state: &mut crate::session::SessionState) -> Vec<Delivery> {
    let mut shared = Vec::new();
    state.queue.retain(|d| {
        if d.share.is_some() {
            shared.push(d.clone());
            return false;
        }
        true
    });
    state.inflight.retain(|o| {
        if o.delivery.share.is_some() && o.stage != Stage::AwaitPubComp {
            shared.push(o.delivery.clone());
            return false;
        }
        true
    });
    // Each is kept again by the member it goes to, under a number of its own.
    for delivery in &shared {
        state.forget(delivery);
    }
    shared
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use bytestring::ByteString;
    use wasmq_codec::{Publish, QoS, SubscriptionOptions};

    use super::*;

    /// A PUBLISH whose topic and payload are slices of `frame`, as decoded ones are of the
    /// publisher's read buffer.
    fn sliced(frame: &Bytes, qos: QoS, retain: bool) -> Publish {
        Publish {
            dup: false,
            qos,
            retain,
            topic: ByteString::try_from(frame.slice(0..4)).unwrap(),
            packet_id: 1,
            payload: frame.slice(4..11),
            properties: Default::default(),
        }
    }

    fn message(publish: Publish) -> Arc<Message> {
        let topic = TopicName::new(publish.topic.clone(), 8).unwrap();
        Message::new(topic, publish, None)
    }

    fn inside(part: &[u8], frame: &Bytes) -> bool {
        frame.as_ptr_range().contains(&part.as_ptr())
    }

    /// What the broker keeps (retained messages, queues of offline sessions) does not
    /// keep the publisher's read buffer alive; what it only routes is not copied.
    #[tokio::test]
    async fn kept_messages_are_detached_from_the_read_buffer() {
        let broker = Broker::new(Config::default(), None);
        let frame = Bytes::from(format!("keptpayload{}", " ".repeat(8 * 1024)));
        let subscribe = |client_id: &'static str, connection_id: u64| {
            let owner = Owner {
                connection_id,
                peer: ConnectedPeer {
                    username: None,
                    addr: "127.0.0.1:1".parse().unwrap(),
                    protocol: wasmq_codec::Protocol::V5,
                    listener: "test",
                },
                kick: None,
            };
            let (session, _) = broker.attach(&ByteString::from_static(client_id), false, 60, owner);
            let filter = TopicFilter::new(ByteString::from_static("kept"), 8).unwrap();
            let data = SubscriptionData {
                options: SubscriptionOptions::qos(QoS::AtLeastOnce),
                id: None,
            };
            broker.subscribe(&session, filter, data);
            session
        };
        let online = subscribe("online", 1);
        let offline = subscribe("offline", 2);
        broker.detach(&offline, 2, None);

        broker.publish(message(sliced(&frame, QoS::AtLeastOnce, false)));
        let queued = |session: &Session| session.lock().queue.back().unwrap().message.clone();
        let (live, kept) = (queued(&online), queued(&offline));
        assert!(inside(&live.publish.payload, &frame), "routed as decoded");
        assert!(!inside(&kept.publish.payload, &frame));
        assert!(!inside(kept.publish.topic.as_bytes(), &frame));
        assert_eq!(kept.publish, live.publish);

        broker.publish(message(sliced(&frame, QoS::AtMostOnce, true)));
        let mut retained = Vec::new();
        let filter = TopicFilter::new(ByteString::from_static("#"), 8).unwrap();
        broker
            .retained
            .matching(&filter, Instant::now(), &mut retained);
        let [retained] = retained.as_slice() else {
            panic!("one retained message: {retained:?}");
        };
        assert!(!inside(&retained.publish.payload, &frame));
        assert_eq!(&retained.publish.payload[..], b"payload");
        // Already detached: not copied again.
        assert!(Arc::ptr_eq(&retained.detached(), retained));
    }
}
