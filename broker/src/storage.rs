//! Where retained messages and persistent sessions are kept across restarts. The broker
//! talks to two traits so a durable store can replace the in-memory one without reshaping
//! the core:
//!
//! - [`RetainStore`] *is* the retained-message store: every read and write goes to it.
//! - [`SessionStore`] receives a [`SessionSnapshot`] whenever a persistent session goes
//!   offline and of every persistent session at shutdown, and hands them back when the
//!   broker starts. Live sessions stay in memory.
//!
//! In memory, that is all. The durable store (`store/`) also writes every change of a
//! persistent session as it happens, through the [`Journal`] in [`Storage::journal`], so
//! a crash loses nothing that was acknowledged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytestring::ByteString;
use parking_lot::{Mutex, RwLock};

use wasmq_codec::LastWill;

use crate::message::{Delivery, Message};
use crate::router::SubscriptionData;
use crate::session::Outgoing;
use crate::store::{self, Journal};
use crate::topic::{self, TopicFilter};

/// The stores a broker uses.
#[derive(Clone)]
pub struct Storage {
    /// Retained messages.
    pub retained: Arc<dyn RetainStore>,
    /// Persistent sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// The durable store's journal; `None` in memory.
    pub journal: Option<Arc<Journal>>,
}

impl Storage {
    /// Both stores in memory: nothing survives the process, but a second broker built on
    /// the same `Storage` in one process picks up where the first stopped.
    pub fn memory() -> Storage {
        Storage {
            retained: Arc::new(MemoryRetainStore::default()),
            sessions: Arc::new(MemorySessionStore::default()),
            journal: None,
        }
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").finish_non_exhaustive()
    }
}

/// A persistent session at rest.
#[derive(Debug, Clone)]
pub struct SessionSnapshot {
    /// The client identifier.
    pub client_id: ByteString,
    /// Session Expiry Interval, seconds.
    pub expiry_interval: u32,
    /// When its connection closed (wall clock, so it means something after a restart).
    pub disconnected_at: SystemTime,
    /// Its subscriptions.
    pub subscriptions: Vec<(TopicFilter, SubscriptionData)>,
    /// Messages queued and not yet sent.
    pub queue: Vec<Delivery>,
    /// Messages sent and not yet acknowledged.
    pub inflight: Vec<Outgoing>,
    /// QoS 2 packet ids received and not yet released.
    pub incoming_qos2: Vec<u16>,
    /// The will, still waiting for its delay.
    pub will: Option<LastWill>,
}

/// Keeps persistent sessions while the broker is stopped.
pub trait SessionStore: Send + Sync {
    /// Saves (replaces) the snapshot of a session.
    fn save(&self, snapshot: SessionSnapshot);
    /// Forgets a session that ended.
    fn remove(&self, client_id: &str);
    /// Every saved session, taken when the broker starts.
    fn load_all(&self) -> Vec<SessionSnapshot>;
}

/// Sessions kept in memory.
#[derive(Debug, Default)]
pub struct MemorySessionStore {
    sessions: Mutex<HashMap<ByteString, SessionSnapshot>>,
}

impl SessionStore for MemorySessionStore {
    fn save(&self, snapshot: SessionSnapshot) {
        self.sessions
            .lock()
            .insert(snapshot.client_id.clone(), snapshot);
    }

    fn remove(&self, client_id: &str) {
        self.sessions.lock().remove(client_id);
    }

    fn load_all(&self) -> Vec<SessionSnapshot> {
        self.sessions.lock().values().cloned().collect()
    }
}

/// The retained-message store: one message per topic name.
pub trait RetainStore: Send + Sync {
    /// Stores `message` as the retained message of its topic, replacing any other. A
    /// message on a new topic is refused (false) when `capacity` messages are held.
    fn set(&self, message: Arc<Message>, capacity: usize) -> bool;
    /// Removes the retained message of `topic`.
    fn remove(&self, topic: &str);
    /// Appends the unexpired retained messages matching `filter` to `out`.
    fn matching(&self, filter: &TopicFilter, now: Instant, out: &mut Vec<Arc<Message>>);
    /// Number of retained messages held.
    fn len(&self) -> usize;
    /// Whether none is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Retained messages in memory; lost on restart (as Mosquitto with `persistence false`)
/// unless [`journaled`](MemoryRetainStore::journaled), when every change is written to
/// the durable store too.
#[derive(Debug, Default)]
pub struct MemoryRetainStore {
    messages: RwLock<HashMap<Box<str>, Arc<Message>>>,
    journal: Option<Arc<Journal>>,
}

impl MemoryRetainStore {
    /// Retained messages read back from the durable store, kept there from now on.
    pub fn journaled(journal: Arc<Journal>, messages: Vec<Arc<Message>>) -> MemoryRetainStore {
        MemoryRetainStore {
            messages: RwLock::new(
                messages
                    .into_iter()
                    .map(|m| (m.topic().into(), m))
                    .collect(),
            ),
            journal: Some(journal),
        }
    }
}

impl RetainStore for MemoryRetainStore {
    fn set(&self, message: Arc<Message>, capacity: usize) -> bool {
        let mut messages = self.messages.write();
        if messages.len() >= capacity && !messages.contains_key(message.topic()) {
            return false;
        }
        if let Some(journal) = &self.journal {
            if journal.is_full() {
                return false;
            }
            // Under the write lock: two publishers of one topic reach the store in the
            // order they reached memory.
            store::retained_set(journal, &message);
        }
        messages.insert(message.topic().into(), message);
        true
    }

    fn remove(&self, topic: &str) {
        let mut messages = self.messages.write();
        if messages.remove(topic).is_some()
            && let Some(journal) = &self.journal
        {
            store::retained_removed(journal, topic);
        }
    }

    fn matching(&self, filter: &TopicFilter, now: Instant, out: &mut Vec<Arc<Message>>) {
        let messages = self.messages.read();
        if !filter.has_wildcard() {
            out.extend(
                messages
                    .get(filter.filter())
                    .filter(|m| !m.expired(now))
                    .cloned(),
            );
            return;
        }
        out.extend(
            messages
                .values()
                .filter(|m| !m.expired(now) && topic::matches(filter.filter(), m.topic()))
                .cloned(),
        );
    }

    fn len(&self) -> usize {
        self.messages.read().len()
    }
}
