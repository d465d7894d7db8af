//! What a persistent session writes to the journal as it changes: one call per change,
//! made under the session's lock so that the changes of one session reach the journal in
//! the order they happened.

use std::sync::Arc;
use std::time::SystemTime;

use bytestring::ByteString;
use wasmq_codec::LastWill;

use super::journal::{Journal, Op};
use super::record::{self, SessionMeta};
use crate::message::{Delivery, Message};
use crate::router::SubscriptionData;
use crate::session::Outgoing;
use crate::topic::TopicFilter;

/// A session's way into the journal.
#[derive(Debug, Clone)]
pub struct SessionKeeper {
    journal: Arc<Journal>,
    client_id: ByteString,
}

impl SessionKeeper {
    /// The keeper of session `client_id`.
    pub fn new(journal: Arc<Journal>, client_id: ByteString) -> SessionKeeper {
        SessionKeeper { journal, client_id }
    }

    /// Whether the store is too full to keep another message.
    pub fn is_full(&self) -> bool {
        self.journal.is_full()
    }

    /// The session's expiry and, once it is offline, when it went.
    pub fn meta(&self, expiry_interval: u32, disconnected_at: Option<SystemTime>) {
        let meta = SessionMeta {
            expiry_interval,
            disconnected_at,
        };
        self.put(record::session_key(&self.client_id), meta.encode(), false);
    }

    /// Writes a new delivery; returns the number it is kept under. Numbers are never
    /// reused, not even by a later session of the same client id, so a change to an
    /// ended session's delivery can never land on a newer one's.
    pub fn queued(&self, delivery: &Delivery) -> u64 {
        let seq = self.journal.next_delivery();
        let value = record::encode_delivery(delivery, None);
        self.put(record::delivery_key(&self.client_id, seq), value, true);
        seq
    }

    /// A delivery sent (or moved on to PUBREL) with its packet id.
    pub fn sent(&self, outgoing: &Outgoing) {
        let delivery = &outgoing.delivery;
        let value = record::encode_delivery(delivery, Some((outgoing.packet_id, outgoing.stage)));
        self.put(
            record::delivery_key(&self.client_id, delivery.stored),
            value,
            false,
        );
    }

    /// A delivery done with: acknowledged, expired, refused or handed to another member.
    pub fn done(&self, delivery: &Delivery) {
        if delivery.stored != 0 {
            let key = record::delivery_key(&self.client_id, delivery.stored);
            self.journal.submit(Op::Delete(key));
        }
    }

    /// An incoming QoS 2 packet id now awaiting PUBREL.
    pub fn incoming(&self, packet_id: u16) {
        self.put(
            record::incoming_key(&self.client_id, packet_id),
            vec![record::VALUE_VERSION],
            false,
        );
    }

    /// An incoming QoS 2 packet id released.
    pub fn released(&self, packet_id: u16) {
        let key = record::incoming_key(&self.client_id, packet_id);
        self.journal.submit(Op::Delete(key));
    }

    /// A subscription added or replaced.
    pub fn subscribed(&self, filter: &TopicFilter, data: &SubscriptionData) {
        let value = record::encode_subscription(filter, data);
        self.put(
            record::subscription_key(&self.client_id, filter.full()),
            value,
            false,
        );
    }

    /// A subscription removed.
    pub fn unsubscribed(&self, filter: &str) {
        let key = record::subscription_key(&self.client_id, filter);
        self.journal.submit(Op::Delete(key));
    }

    /// The session's will, or none.
    pub fn will(&self, will: Option<&LastWill>) {
        let key = record::will_key(&self.client_id);
        match will {
            Some(will) => self.put(key, record::encode_will(will), false),
            None => {
                self.journal.submit(Op::Delete(key));
            }
        }
    }

    /// The session ended: everything of it goes.
    pub fn ended(&self) {
        let prefix = record::session_prefix(&self.client_id);
        self.journal.submit(Op::DeletePrefix(prefix));
    }

    fn put(&self, key: Vec<u8>, value: Vec<u8>, fresh: bool) {
        self.journal.submit(Op::Put { key, value, fresh });
    }
}

/// Retained messages' way into the journal.
pub fn retained_set(journal: &Journal, message: &Message) {
    journal.submit(Op::Put {
        key: record::retained_key(message.topic().as_str()),
        value: record::encode_retained(message),
        fresh: false,
    });
}

/// A retained message cleared.
pub fn retained_removed(journal: &Journal, topic: &str) {
    journal.submit(Op::Delete(record::retained_key(topic)));
}
