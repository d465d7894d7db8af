//! A routed application message and its per-subscriber delivery.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;
use wasmq_codec::{Publish, QoS, UserProperties};

use crate::topic::{TopicFilter, TopicName};

/// A message as the router holds it: decoded once, shared by every subscriber and by the
/// retained store. `publish` carries the resolved topic (never an alias), packet id 0, no
/// subscription identifiers; each delivery fills those in for its own connection. It is
/// built only from a validated [`TopicName`], which the router and the retained store
/// take.
#[derive(Debug)]
pub struct Message {
    /// `publish.topic`, validated: the same reference-counted string, not a copy.
    topic: TopicName,
    /// The message itself.
    pub publish: Publish,
    /// The publishing client, for No Local; `None` for the broker's own ($SYS) messages.
    pub origin: Option<ByteString>,
    /// When the Message Expiry Interval runs out.
    pub expires_at: Option<Instant>,
    /// Whether its parts are allocations of its own ([`Message::detached`]).
    detached: bool,
}

impl Message {
    /// Wraps a publish received now, computing its expiry from its properties. `topic` is
    /// `publish.topic` validated; it replaces it, so the two never differ.
    pub fn new(topic: TopicName, mut publish: Publish, origin: Option<ByteString>) -> Arc<Message> {
        publish.topic = topic.bytestring().clone();
        publish.packet_id = 0;
        publish.dup = false;
        publish.properties.topic_alias = None;
        publish.properties.subscription_identifiers.clear();
        let expires_at = publish
            .properties
            .message_expiry_interval
            .map(|secs| Instant::now() + Duration::from_secs(u64::from(secs)));
        Arc::new(Message {
            topic,
            publish,
            origin,
            expires_at,
            detached: false,
        })
    }

    /// A message read back from the durable store: its parts are slices of the stored
    /// value, an allocation of its own, so it counts as detached. `topic` is
    /// `publish.topic` validated, as in [`Message::new`].
    pub fn restored(
        topic: TopicName,
        mut publish: Publish,
        origin: Option<ByteString>,
        expires_at: Option<Instant>,
    ) -> Arc<Message> {
        publish.topic = topic.bytestring().clone();
        Arc::new(Message {
            topic,
            publish,
            origin,
            expires_at,
            detached: true,
        })
    }

    /// The message with its topic, payload and properties copied into allocations of
    /// their own, for a message the broker keeps (retained, or queued for an offline
    /// session). As decoded, they are slices of the publisher's read buffer: 8 KiB or
    /// more, shared by every packet of one read and freed only when the last slice goes.
    /// Kept like that, 20,000 retained messages of 30 bytes held 6.0 KB each (Mosquitto
    /// 375 B); detached, they hold the few hundred bytes they need. Cheap (two small
    /// copies, usually) and done once per kept message, never on the routing path.
    pub fn detached(self: &Arc<Message>) -> Arc<Message> {
        if self.detached {
            return self.clone();
        }
        let topic = self.topic.copied();
        let mut publish = self.publish.clone();
        publish.topic = topic.bytestring().clone();
        publish.payload = own_bytes(&publish.payload);
        let properties = &mut publish.properties;
        properties.response_topic = properties.response_topic.as_ref().map(own_str);
        properties.correlation_data = properties.correlation_data.as_ref().map(own_bytes);
        properties.content_type = properties.content_type.as_ref().map(own_str);
        own_user_properties(&mut properties.user_properties);
        Arc::new(Message {
            topic,
            publish,
            origin: self.origin.clone(),
            expires_at: self.expires_at,
            detached: true,
        })
    }

    /// Whether the message expired before `now`.
    pub fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// The Message Expiry Interval to forward: what is left of it, in whole seconds,
    /// rounded up so a live message never goes out with 0 [MQTT-3.3.2-6].
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|at| {
            let left = at.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
        })
    }

    /// The topic name.
    pub fn topic(&self) -> &TopicName {
        &self.topic
    }
}

/// A copy of `s` in an allocation of its own (not a slice of a read buffer).
pub(crate) fn own_str(s: &ByteString) -> ByteString {
    ByteString::from(&**s)
}

/// A copy of `b` in an allocation of its own (not a slice of a read buffer).
pub(crate) fn own_bytes(b: &Bytes) -> Bytes {
    Bytes::copy_from_slice(b)
}

/// Replaces every key and value with a copy of its own.
pub(crate) fn own_user_properties(properties: &mut UserProperties) {
    for (key, value) in properties {
        (*key, *value) = (own_str(key), own_str(value));
    }
}

/// A message on its way to one session: what QoS and retain flag it goes out with, which
/// subscription identifiers it carries, and, for a shared subscription, which group it
/// came through (so it can go to another member if this one leaves before acking).
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The shared message.
    pub message: Arc<Message>,
    /// min(message QoS, granted QoS).
    pub qos: QoS,
    /// The RETAIN flag to send.
    pub retain: bool,
    /// Subscription identifiers of the matching subscriptions.
    pub subscription_ids: Vec<u32>,
    /// The shared subscription it was routed through.
    pub share: Option<TopicFilter>,
    /// The number it is kept under in the durable store; 0: not kept.
    pub stored: u64,
    /// It matched only through filters with wildcards (`+`, `#`): the subscriber's
    /// read access on the topic was not covered by its subscribe check, so its
    /// connection asks [`crate::hooks::Hooks::authorize_delivery`] before sending it
    /// (when a plugin checks deliveries). False when any matching filter is exact.
    pub check_read: bool,
}
