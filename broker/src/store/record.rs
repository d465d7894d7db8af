//! How each kept thing is written in the store: its key, and its value as bytes.
//!
//! Values reuse the MQTT codec wherever a packet already carries the thing: a message is
//! its MQTT 5 PUBLISH, a will is a CONNECT carrying it, a subscription a SUBSCRIBE of one
//! filter. What the packets do not carry (the delivery's QoS and packet id, the wall-clock
//! expiry) sits in a small header in front. Every value starts with [`VALUE_VERSION`], so
//! a later broker can read what this one wrote.
//!
//! Keys sort by session, so one range holds everything of a session:
//!
//! | key | value |
//! |---|---|
//! | `m` name | store metadata (`format`, `alive`) |
//! | `s` len client-id `0` | [`SessionMeta`] |
//! | `s` len client-id `b` filter | a subscription |
//! | `s` len client-id `q` seq (u64 BE) | a delivery, queued or in flight |
//! | `s` len client-id `i` packet-id (u16 BE) | an incoming QoS 2 id awaiting PUBREL |
//! | `s` len client-id `w` | the session's will |
//! | `r` topic | a retained message |

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, BytesMut};
use bytestring::ByteString;
use wasmq_codec::{
    Connect, ConnectProperties, LastWill, Packet, Protocol, QoS, Subscribe, SubscribeProperties,
};

use crate::message::{Delivery, Message};
use crate::router::SubscriptionData;
use crate::session::{Outgoing, Stage};
use crate::topic::{TopicFilter, TopicName};

/// The version byte every value starts with.
pub const VALUE_VERSION: u8 = 1;

/// Packets in the store are decoded with no size limit of their own: they were within
/// the broker's limit when they arrived.
const NO_LIMIT: u32 = u32::MAX;

/// The metadata key `name`.
pub fn meta_key(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + name.len());
    key.push(b'm');
    key.extend_from_slice(name.as_bytes());
    key
}

/// The prefix of every key of the session `client_id`.
pub fn session_prefix(client_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(3 + client_id.len() + 9);
    key.push(b's');
    // Client ids are MQTT strings: at most 65,535 bytes.
    key.put_u16(client_id.len() as u16);
    key.extend_from_slice(client_id.as_bytes());
    key
}

/// The key of the session's [`SessionMeta`].
pub fn session_key(client_id: &str) -> Vec<u8> {
    let mut key = session_prefix(client_id);
    key.push(b'0');
    key
}

/// The key of one subscription.
pub fn subscription_key(client_id: &str, filter: &str) -> Vec<u8> {
    let mut key = session_prefix(client_id);
    key.push(b'b');
    key.extend_from_slice(filter.as_bytes());
    key
}

/// The key of a delivery: the session's sequence number keeps them in queue order.
pub fn delivery_key(client_id: &str, seq: u64) -> Vec<u8> {
    let mut key = session_prefix(client_id);
    key.push(b'q');
    key.put_u64(seq);
    key
}

/// The key of an incoming QoS 2 packet id.
pub fn incoming_key(client_id: &str, packet_id: u16) -> Vec<u8> {
    let mut key = session_prefix(client_id);
    key.push(b'i');
    key.put_u16(packet_id);
    key
}

/// The key of the session's will.
pub fn will_key(client_id: &str) -> Vec<u8> {
    let mut key = session_prefix(client_id);
    key.push(b'w');
    key
}

/// The key of the retained message of `topic`.
pub fn retained_key(topic: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + topic.len());
    key.push(b'r');
    key.extend_from_slice(topic.as_bytes());
    key
}

/// A key read back from the store.
#[derive(Debug, PartialEq, Eq)]
pub enum Key<'a> {
    /// Store metadata.
    Meta(&'a str),
    /// A session's metadata.
    Session(&'a str),
    /// A subscription: client id, filter.
    Subscription(&'a str, &'a str),
    /// A delivery: client id, sequence number.
    Delivery(&'a str, u64),
    /// An incoming QoS 2 packet id: client id, packet id.
    Incoming(&'a str, u16),
    /// A session's will.
    Will(&'a str),
    /// A retained message's topic.
    Retained(&'a str),
}

impl<'a> Key<'a> {
    /// Parses a key; `None` for one this broker does not know.
    pub fn parse(key: &'a [u8]) -> Option<Key<'a>> {
        let (&kind, rest) = key.split_first()?;
        match kind {
            b'm' => std::str::from_utf8(rest).ok().map(Key::Meta),
            b'r' => std::str::from_utf8(rest).ok().map(Key::Retained),
            b's' => {
                let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
                let client_id = std::str::from_utf8(rest.get(2..2 + len)?).ok()?;
                let (&tag, tail) = rest.get(2 + len..)?.split_first()?;
                match (tag, tail.len()) {
                    (b'0', 0) => Some(Key::Session(client_id)),
                    (b'w', 0) => Some(Key::Will(client_id)),
                    (b'b', _) => std::str::from_utf8(tail)
                        .ok()
                        .map(|f| Key::Subscription(client_id, f)),
                    (b'q', 8) => Some(Key::Delivery(
                        client_id,
                        u64::from_be_bytes(tail.try_into().ok()?),
                    )),
                    (b'i', 2) => Some(Key::Incoming(
                        client_id,
                        u16::from_be_bytes(tail.try_into().ok()?),
                    )),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// What is kept of a persistent session besides its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionMeta {
    /// Session Expiry Interval, seconds.
    pub expiry_interval: u32,
    /// When its connection closed; `None` while connected (after a crash the store's
    /// last sign of life stands in, so the downtime counts against the expiry).
    pub disconnected_at: Option<SystemTime>,
}

/// Why a value could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Written by a newer broker.
    #[error("value version {0} is newer than this broker's {VALUE_VERSION}")]
    Version(u8),
    /// Cut short or damaged.
    #[error("damaged value: {0}")]
    Damaged(&'static str),
}

impl SessionMeta {
    /// The value bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(13);
        out.put_u8(VALUE_VERSION);
        out.put_u32(self.expiry_interval);
        out.put_u64(self.disconnected_at.map_or(0, unix_millis));
        out
    }

    /// Reads the value bytes.
    pub fn decode(value: &[u8]) -> Result<SessionMeta, RecordError> {
        let mut value = versioned(value)?;
        need(value, 12)?;
        let expiry_interval = value.get_u32();
        let disconnected = value.get_u64();
        Ok(SessionMeta {
            expiry_interval,
            disconnected_at: (disconnected != 0).then(|| from_unix_millis(disconnected)),
        })
    }
}

/// Milliseconds since the Unix epoch (wall clock: it means something after a restart).
pub fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .max(1)
}

/// The wall-clock time `millis` after the Unix epoch.
pub fn from_unix_millis(millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis)
}

/// The value of a delivery: queued (`sent` is `None`) or in flight with its packet id
/// and stage.
pub fn encode_delivery(delivery: &Delivery, sent: Option<(u16, Stage)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + delivery.message.publish.payload.len());
    out.put_u8(VALUE_VERSION);
    out.put_u8(delivery.qos as u8);
    out.put_u8(u8::from(delivery.retain));
    let (packet_id, stage) = sent.unwrap_or((0, Stage::AwaitPubAck));
    out.put_u8(match (sent.is_some(), stage) {
        (false, _) => 0,
        (true, Stage::AwaitPubAck) => 1,
        (true, Stage::AwaitPubRec) => 2,
        (true, Stage::AwaitPubComp) => 3,
    });
    out.put_u16(packet_id);
    out.put_u16(delivery.subscription_ids.len() as u16);
    for id in &delivery.subscription_ids {
        out.put_u32(*id);
    }
    put_opt_str(&mut out, delivery.share.as_ref().map(|f| f.full()));
    put_message(&mut out, &delivery.message);
    out
}

/// A delivery read back: the delivery, and where it stood.
#[derive(Debug)]
pub enum StoredDelivery {
    /// Not sent yet.
    Queued(Delivery),
    /// Sent, awaiting its acknowledgement.
    InFlight(Outgoing),
}

/// Reads a delivery value. `now` and `wall_now` turn its wall-clock expiry back into an
/// `Instant`; `max_levels` checks a shared filter as a SUBSCRIBE would.
pub fn decode_delivery(
    value: &[u8],
    now: Instant,
    wall_now: SystemTime,
    max_levels: usize,
) -> Result<StoredDelivery, RecordError> {
    let mut value = versioned(value)?;
    need(value, 7)?;
    let qos = qos(value.get_u8())?;
    let retain = value.get_u8() != 0;
    let stage = value.get_u8();
    let packet_id = value.get_u16();
    let count = usize::from(value.get_u16());
    need(value, count * 4)?;
    let subscription_ids = (0..count).map(|_| value.get_u32()).collect();
    let share = match get_opt_str(&mut value)? {
        Some(filter) => Some(
            TopicFilter::new(filter, max_levels)
                .map_err(|_| RecordError::Damaged("shared filter"))?,
        ),
        None => None,
    };
    let message = get_message(&mut value, now, wall_now)?;
    let delivery = Delivery {
        message,
        qos,
        retain,
        subscription_ids,
        share,
        stored: 0,
        // Whether it came through a wildcard is not kept: checked again, to be safe
        // (an exact subscriber's check gives the answer its subscription had).
        check_read: true,
    };
    let stage = match stage {
        0 => return Ok(StoredDelivery::Queued(delivery)),
        1 => Stage::AwaitPubAck,
        2 => Stage::AwaitPubRec,
        3 => Stage::AwaitPubComp,
        _ => return Err(RecordError::Damaged("delivery stage")),
    };
    Ok(StoredDelivery::InFlight(Outgoing {
        packet_id,
        delivery,
        stage,
    }))
}

/// The value of a retained message.
pub fn encode_retained(message: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + message.publish.payload.len());
    out.put_u8(VALUE_VERSION);
    put_message(&mut out, message);
    out
}

/// Reads a retained message value.
pub fn decode_retained(
    value: &[u8],
    now: Instant,
    wall_now: SystemTime,
) -> Result<Arc<Message>, RecordError> {
    let mut value = versioned(value)?;
    get_message(&mut value, now, wall_now)
}

/// The value of a subscription: a SUBSCRIBE of its one filter.
pub fn encode_subscription(filter: &TopicFilter, data: &SubscriptionData) -> Vec<u8> {
    let packet = Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(ByteString::from(filter.full()), data.options)],
        properties: SubscribeProperties {
            subscription_identifier: data.id,
            ..Default::default()
        },
    });
    versioned_packet(&packet)
}

/// Reads a subscription value.
pub fn decode_subscription(
    value: &[u8],
    max_levels: usize,
) -> Result<(TopicFilter, SubscriptionData), RecordError> {
    let Packet::Subscribe(subscribe) = get_packet(versioned(value)?)? else {
        return Err(RecordError::Damaged("subscription is not a SUBSCRIBE"));
    };
    let Some((filter, options)) = subscribe.filters.into_iter().next() else {
        return Err(RecordError::Damaged("subscription without a filter"));
    };
    let filter =
        TopicFilter::new(filter, max_levels).map_err(|_| RecordError::Damaged("filter"))?;
    let id = subscribe.properties.subscription_identifier;
    Ok((filter, SubscriptionData { options, id }))
}

/// The value of a will: a CONNECT carrying it.
pub fn encode_will(will: &LastWill) -> Vec<u8> {
    let packet = Packet::Connect(Box::new(Connect {
        protocol: Protocol::V5,
        clean_start: false,
        keep_alive: 0,
        client_id: ByteString::new(),
        will: Some(will.clone()),
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }));
    versioned_packet(&packet)
}

/// Reads a will value.
pub fn decode_will(value: &[u8]) -> Result<LastWill, RecordError> {
    match get_packet(versioned(value)?)? {
        Packet::Connect(connect) => connect
            .will
            .ok_or(RecordError::Damaged("will record without a will")),
        _ => Err(RecordError::Damaged("will is not a CONNECT")),
    }
}

fn versioned(value: &[u8]) -> Result<&[u8], RecordError> {
    match value.split_first() {
        Some((&VALUE_VERSION, rest)) => Ok(rest),
        Some((&newer, _)) => Err(RecordError::Version(newer)),
        None => Err(RecordError::Damaged("empty value")),
    }
}

fn need(value: &[u8], n: usize) -> Result<(), RecordError> {
    if value.len() < n {
        return Err(RecordError::Damaged("cut short"));
    }
    Ok(())
}

fn qos(byte: u8) -> Result<QoS, RecordError> {
    match byte {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        2 => Ok(QoS::ExactlyOnce),
        _ => Err(RecordError::Damaged("QoS")),
    }
}

fn versioned_packet(packet: &Packet) -> Vec<u8> {
    let mut buf = BytesMut::with_capacity(1 + packet.encoded_len(Protocol::V5));
    buf.put_u8(VALUE_VERSION);
    packet.encode(Protocol::V5, &mut buf);
    buf.to_vec()
}

fn get_packet(value: &[u8]) -> Result<Packet, RecordError> {
    let mut buf = BytesMut::from(value);
    match Packet::decode(&mut buf, Protocol::V5, NO_LIMIT) {
        Ok(Some(packet)) if buf.is_empty() => Ok(packet),
        _ => Err(RecordError::Damaged("packet")),
    }
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        // MQTT strings are at most 65,535 bytes, so u32::MAX is free to mean "none".
        Some(s) => {
            out.put_u32(s.len() as u32);
            out.extend_from_slice(s.as_bytes());
        }
        None => out.put_u32(u32::MAX),
    }
}

fn get_opt_str(value: &mut &[u8]) -> Result<Option<ByteString>, RecordError> {
    need(value, 4)?;
    let len = value.get_u32();
    if len == u32::MAX {
        return Ok(None);
    }
    let len = len as usize;
    need(value, len)?;
    let s = std::str::from_utf8(&value[..len]).map_err(|_| RecordError::Damaged("string"))?;
    let s = ByteString::from(s);
    value.advance(len);
    Ok(Some(s))
}

/// A message: its wall-clock expiry (0: none), its origin, then its PUBLISH.
fn put_message(out: &mut Vec<u8>, message: &Message) {
    let expires = message.expires_at.map_or(0, |at| {
        let left = at.saturating_duration_since(Instant::now());
        unix_millis(SystemTime::now() + left)
    });
    out.put_u64(expires);
    put_opt_str(out, message.origin.as_deref());
    let mut publish = message.publish.clone();
    // A QoS 1/2 PUBLISH needs a packet id on the wire; the message's own is 0.
    publish.packet_id = 1;
    let packet = Packet::Publish(publish);
    let mut buf = BytesMut::with_capacity(packet.encoded_len(Protocol::V5));
    packet.encode(Protocol::V5, &mut buf);
    out.extend_from_slice(&buf);
}

fn get_message(
    value: &mut &[u8],
    now: Instant,
    wall_now: SystemTime,
) -> Result<Arc<Message>, RecordError> {
    need(value, 8)?;
    let expires = value.get_u64();
    let origin = get_opt_str(value)?;
    let Packet::Publish(mut publish) = get_packet(value)? else {
        return Err(RecordError::Damaged("message is not a PUBLISH"));
    };
    publish.packet_id = 0;
    // The level limit is not applied again: the name was accepted under the one of its
    // time.
    let topic = TopicName::new(publish.topic.clone(), usize::MAX)
        .map_err(|_| RecordError::Damaged("message topic"))?;
    let expires_at = (expires != 0).then(|| {
        let left = from_unix_millis(expires)
            .duration_since(wall_now)
            .unwrap_or_default();
        now + left
    });
    Ok(Message::restored(topic, publish, origin, expires_at))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use wasmq_codec::{Publish, PublishProperties, SubscriptionOptions, WillProperties};

    use super::*;

    fn message(expiry: Option<u32>) -> Arc<Message> {
        Message::new(
            TopicName::new("a/b".into(), 8).unwrap(),
            Publish {
                dup: false,
                qos: QoS::ExactlyOnce,
                retain: true,
                topic: "a/b".into(),
                packet_id: 7,
                payload: Bytes::from_static(b"\x00\xffpayload"),
                properties: PublishProperties {
                    message_expiry_interval: expiry,
                    content_type: Some("text/plain".into()),
                    user_properties: vec![("k".into(), "v".into())],
                    ..Default::default()
                },
            },
            Some("origin".into()),
        )
    }

    #[test]
    fn keys_parse_back_to_what_they_name() {
        assert_eq!(Key::parse(&session_key("c/1")), Some(Key::Session("c/1")));
        assert_eq!(
            Key::parse(&delivery_key("c", 258)),
            Some(Key::Delivery("c", 258))
        );
        assert_eq!(
            Key::parse(&subscription_key("c", "a/+/#")),
            Some(Key::Subscription("c", "a/+/#"))
        );
        assert_eq!(
            Key::parse(&incoming_key("c", 9)),
            Some(Key::Incoming("c", 9))
        );
        assert_eq!(Key::parse(&will_key("c")), Some(Key::Will("c")));
        assert_eq!(Key::parse(&retained_key("x/y")), Some(Key::Retained("x/y")));
        assert_eq!(Key::parse(&meta_key("format")), Some(Key::Meta("format")));
        assert_eq!(Key::parse(b"s\x00\x05ab"), None, "client id cut short");
        // Every key of a session starts with its prefix, and no other session's does.
        assert!(delivery_key("ab", 1).starts_with(&session_prefix("ab")));
        assert!(!delivery_key("abc", 1).starts_with(&session_prefix("ab")));
    }

    #[test]
    fn deliveries_come_back_as_they_were_with_their_stage() {
        let delivery = Delivery {
            message: message(Some(60)),
            qos: QoS::AtLeastOnce,
            retain: true,
            subscription_ids: vec![3, 70_000],
            share: Some(TopicFilter::new("$share/g/a/#".into(), 16).unwrap()),
            stored: 5,
            check_read: false,
        };
        let (now, wall) = (Instant::now(), SystemTime::now());
        let queued = encode_delivery(&delivery, None);
        let StoredDelivery::Queued(back) = decode_delivery(&queued, now, wall, 16).unwrap() else {
            panic!("not queued");
        };
        assert_eq!(back.qos, QoS::AtLeastOnce);
        assert!(back.retain);
        assert_eq!(back.subscription_ids, [3, 70_000]);
        assert_eq!(back.share.unwrap().full(), "$share/g/a/#");
        assert_eq!(back.message.publish, delivery.message.publish);
        assert_eq!(back.message.origin.as_deref(), Some("origin"));
        let left = back.message.remaining_expiry(now).unwrap();
        assert!((59..=60).contains(&left), "{left}");

        let sent = encode_delivery(&delivery, Some((41, Stage::AwaitPubComp)));
        let StoredDelivery::InFlight(out) = decode_delivery(&sent, now, wall, 16).unwrap() else {
            panic!("not in flight");
        };
        assert_eq!((out.packet_id, out.stage), (41, Stage::AwaitPubComp));
    }

    #[test]
    fn a_stored_expiry_counts_the_time_the_broker_was_down() {
        let delivery = Delivery {
            message: message(Some(60)),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![],
            share: None,
            stored: 1,
            check_read: false,
        };
        let value = encode_delivery(&delivery, None);
        let later = SystemTime::now() + Duration::from_secs(45);
        let StoredDelivery::Queued(back) =
            decode_delivery(&value, Instant::now(), later, 16).unwrap()
        else {
            panic!("not queued");
        };
        let left = back.message.remaining_expiry(Instant::now()).unwrap();
        assert!((14..=15).contains(&left), "{left}");
    }

    #[test]
    fn wills_subscriptions_retained_and_meta_round_trip() {
        let will = LastWill {
            topic: "will/t".into(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: Some(30),
                ..Default::default()
            },
        };
        assert_eq!(decode_will(&encode_will(&will)).unwrap(), will);

        let filter = TopicFilter::new("a/+".into(), 16).unwrap();
        let data = SubscriptionData {
            options: SubscriptionOptions::qos(QoS::ExactlyOnce),
            id: Some(12),
        };
        let (f, d) = decode_subscription(&encode_subscription(&filter, &data), 16).unwrap();
        assert_eq!(
            (f.full(), d.id, d.options.qos),
            ("a/+", Some(12), QoS::ExactlyOnce)
        );

        let m = message(None);
        let back = decode_retained(&encode_retained(&m), Instant::now(), SystemTime::now());
        assert_eq!(back.unwrap().publish, m.publish);

        let meta = SessionMeta {
            expiry_interval: 300,
            disconnected_at: Some(from_unix_millis(1_700_000_000_123)),
        };
        assert_eq!(SessionMeta::decode(&meta.encode()).unwrap(), meta);
    }

    #[test]
    fn a_newer_or_damaged_value_is_refused_with_its_reason() {
        assert!(matches!(
            SessionMeta::decode(&[9, 0, 0]),
            Err(RecordError::Version(9))
        ));
        let value = encode_retained(&message(None));
        let cut = &value[..value.len() - 3];
        assert!(matches!(
            decode_retained(cut, Instant::now(), SystemTime::now()),
            Err(RecordError::Damaged(_))
        ));
    }
}
