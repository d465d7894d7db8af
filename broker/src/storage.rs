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

use bytes::BytesMut;
use bytestring::ByteString;
use parking_lot::{Mutex, RwLock};

use wasmq_codec::{LastWill, Packet, Protocol, QoS};

use crate::message::{Delivery, Message};
use crate::router::SubscriptionData;
use crate::session::Outgoing;
use crate::store::{self, Journal};
use crate::topic::{self, TopicFilter, TopicName};

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
    fn remove(&self, topic: &TopicName);
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
    messages: RwLock<HashMap<Box<str>, Retained>>,
    journal: Option<Arc<Journal>>,
}

/// A retained message as the store holds it: its PUBLISH encoded, in one allocation of
/// just its bytes, and what the packet does not carry. A `Message` keeps a slot for every
/// PUBLISH property (about 300 bytes with its `Arc`, whatever the message uses): 20,000
/// retained messages of 16 bytes held 888 to 907 B each that way, 599 to 608 B encoded
/// (Mosquitto 390 B; `wasmq-bench suite --only "retained messages"`, 2026-12-03). Read
/// back (a subscription matching it, rarely) it is decoded again, a copy of a few bytes,
/// under the store's read lock: a `#` subscription decodes every retained message.
#[derive(Debug)]
struct Retained {
    /// The message's v5 PUBLISH (packet id 1 when QoS > 0: the wire needs one).
    packet: Box<[u8]>,
    origin: Option<ByteString>,
    expires_at: Option<Instant>,
}

impl Retained {
    fn new(message: &Message) -> Retained {
        let mut publish = message.publish.clone();
        if publish.qos != QoS::AtMostOnce {
            publish.packet_id = 1;
        }
        let packet = Packet::Publish(publish);
        let mut buf = BytesMut::with_capacity(packet.encoded_len(Protocol::V5));
        packet.encode(Protocol::V5, &mut buf);
        Retained {
            packet: buf.as_ref().into(),
            origin: message.origin.clone(),
            expires_at: message.expires_at,
        }
    }

    fn message(&self) -> Arc<Message> {
        let mut buf = BytesMut::from(&self.packet[..]);
        let Ok(Some(Packet::Publish(mut publish))) =
            Packet::decode(&mut buf, Protocol::V5, u32::MAX)
        else {
            unreachable!("a retained message is kept as the PUBLISH the codec encoded");
        };
        publish.packet_id = 0;
        let Ok(topic) = TopicName::new(publish.topic.clone(), usize::MAX) else {
            unreachable!("a retained message's topic was a valid name when it was kept");
        };
        Message::restored(topic, publish, self.origin.clone(), self.expires_at)
    }

    fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

impl MemoryRetainStore {
    /// Retained messages read back from the durable store, kept there from now on.
    pub fn journaled(journal: Arc<Journal>, messages: Vec<Arc<Message>>) -> MemoryRetainStore {
        MemoryRetainStore {
            messages: RwLock::new(
                messages
                    .into_iter()
                    .map(|m| (m.topic().as_str().into(), Retained::new(&m)))
                    .collect(),
            ),
            journal: Some(journal),
        }
    }
}

impl RetainStore for MemoryRetainStore {
    fn set(&self, message: Arc<Message>, capacity: usize) -> bool {
        let retained = Retained::new(&message);
        let mut messages = self.messages.write();
        if messages.len() >= capacity && !messages.contains_key(message.topic().as_str()) {
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
        messages.insert(message.topic().as_str().into(), retained);
        true
    }

    fn remove(&self, topic: &TopicName) {
        let mut messages = self.messages.write();
        if messages.remove(topic.as_str()).is_some()
            && let Some(journal) = &self.journal
        {
            store::retained_removed(journal, topic.as_str());
        }
    }

    fn matching(&self, filter: &TopicFilter, now: Instant, out: &mut Vec<Arc<Message>>) {
        let messages = self.messages.read();
        if !filter.has_wildcard() {
            out.extend(
                messages
                    .get(filter.filter())
                    .filter(|r| !r.expired(now))
                    .map(Retained::message),
            );
            return;
        }
        out.extend(
            messages
                .iter()
                .filter(|(topic, r)| !r.expired(now) && topic::matches(filter.filter(), topic))
                .map(|(_, r)| r.message()),
        );
    }

    fn len(&self) -> usize {
        self.messages.read().len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use wasmq_codec::{Publish, PublishProperties};

    use super::*;

    fn filter(filter: &str) -> TopicFilter {
        TopicFilter::new(ByteString::from(filter), 32).unwrap()
    }

    fn message(topic: &str, qos: QoS, properties: PublishProperties) -> Arc<Message> {
        Message::new(
            TopicName::new(ByteString::from(topic), 32).unwrap(),
            Publish {
                dup: false,
                qos,
                retain: true,
                topic: ByteString::from(topic),
                packet_id: 7,
                payload: Bytes::from_static(b"sixteen bytes!!!"),
                properties,
            },
            Some(ByteString::from("publisher")),
        )
    }

    /// A retained message is kept encoded: what comes back is the message that went in,
    /// every property, its origin and its expiry included.
    #[test]
    fn a_retained_message_comes_back_whole() {
        let store = MemoryRetainStore::default();
        let properties = PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            response_topic: Some(ByteString::from("reply/here")),
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            user_properties: vec![(ByteString::from("k"), ByteString::from("v"))],
            content_type: Some(ByteString::from("text/plain")),
            ..PublishProperties::default()
        };
        let sent = message("a/b", QoS::AtLeastOnce, properties);
        assert!(store.set(sent.clone(), 10));
        assert!(store.set(
            message("a/c", QoS::AtMostOnce, PublishProperties::default()),
            10
        ));
        let now = Instant::now();
        let mut got = Vec::new();
        store.matching(&filter("a/b"), now, &mut got);
        let [got] = got.as_slice() else {
            panic!("one message for a/b, got {}", got.len());
        };
        assert_eq!(got.publish, sent.publish);
        assert_eq!(got.origin, sent.origin);
        assert_eq!(got.expires_at, sent.expires_at);

        let mut all = Vec::new();
        store.matching(&filter("a/+"), now, &mut all);
        let mut topics: Vec<&str> = all.iter().map(|m| m.topic().as_str()).collect();
        topics.sort_unstable();
        assert_eq!(topics, ["a/b", "a/c"]);
        assert_eq!(
            all.iter()
                .find(|m| m.topic().as_str() == "a/c")
                .unwrap()
                .publish
                .qos,
            QoS::AtMostOnce
        );

        // Past its expiry it is not handed out; removed, it is gone.
        let mut expired = Vec::new();
        store.matching(&filter("a/b"), now + Duration::from_secs(61), &mut expired);
        assert!(expired.is_empty());
        store.remove(&TopicName::new("a/c".into(), 32).unwrap());
        let mut left = Vec::new();
        store.matching(&filter("#"), now + Duration::from_secs(61), &mut left);
        assert!(left.is_empty());
        assert_eq!(store.len(), 1);
    }

    /// At capacity a new topic is refused, a held one still replaced.
    #[test]
    fn capacity_refuses_new_topics_only() {
        let store = MemoryRetainStore::default();
        assert!(store.set(
            message("x", QoS::AtMostOnce, PublishProperties::default()),
            1
        ));
        assert!(!store.set(
            message("y", QoS::AtMostOnce, PublishProperties::default()),
            1
        ));
        assert!(store.set(
            message("x", QoS::ExactlyOnce, PublishProperties::default()),
            1
        ));
        let mut got = Vec::new();
        store.matching(&filter("x"), Instant::now(), &mut got);
        assert_eq!(got[0].publish.qos, QoS::ExactlyOnce);
    }
}
