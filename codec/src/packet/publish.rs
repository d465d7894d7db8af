//! PUBLISH (MQTT 3.1.1 §3.3, MQTT 5.0 §3.3).

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::{
    DecodeError, Protocol, QoS, UserProperties,
    packet::{PUBLISH, read_packet_id},
    properties::{
        self, CONTENT_TYPE, CORRELATION_DATA, MESSAGE_EXPIRY_INTERVAL, PAYLOAD_FORMAT_INDICATOR,
        PropertyReader, PropertySet, RESPONSE_TOPIC, SUBSCRIPTION_IDENTIFIER, TOPIC_ALIAS,
        USER_PROPERTY, Visitor, once,
    },
    wire::{binary_len, read_string, varint_len, write_fixed_header, write_string},
};

/// PUBLISH fixed header flags (MQTT 5.0 §3.3.1).
const RETAIN: u8 = 0b0001;
const QOS_SHIFT: u8 = 1;
const QOS: u8 = 0b0110;
const DUP: u8 = 0b1000;

/// An application message. Cloning is cheap: topic, payload and strings are reference
/// counted, so one decoded PUBLISH is shared by every subscriber it is routed to.
#[derive(Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP flag.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic Name; empty when a v5 Topic Alias stands in for it.
    pub topic: ByteString,
    /// Packet Identifier; 0 for QoS 0 (not written then).
    pub packet_id: u16,
    /// Payload.
    pub payload: Bytes,
    /// v5 properties.
    pub properties: PublishProperties,
}

impl std::fmt::Debug for Publish {
    // Payloads are redacted: they may hold anything, and logs must not.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publish")
            .field("dup", &self.dup)
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("topic", &self.topic)
            .field("packet_id", &self.packet_id)
            .field("payload_len", &self.payload.len())
            .field("properties", &self.properties)
            .finish()
    }
}

/// PUBLISH properties (MQTT 5.0 §3.3.2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishProperties {
    /// 0x01 Payload Format Indicator.
    pub payload_format_indicator: Option<u8>,
    /// 0x02 Message Expiry Interval, seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x23 Topic Alias.
    pub topic_alias: Option<u16>,
    /// 0x08 Response Topic.
    pub response_topic: Option<ByteString>,
    /// 0x09 Correlation Data.
    pub correlation_data: Option<Bytes>,
    /// 0x26 User Property.
    pub user_properties: UserProperties,
    /// 0x0B Subscription Identifier (server to client only; may repeat).
    pub subscription_identifiers: Vec<u32>,
    /// 0x03 Content Type.
    pub content_type: Option<ByteString>,
}

impl Publish {
    /// Reads a PUBLISH body; `flags` carry DUP, QoS and RETAIN. The topic, the property
    /// strings and the payload are slices of `body`.
    pub(crate) fn read(
        flags: u8,
        mut body: Bytes,
        protocol: Protocol,
    ) -> Result<Self, DecodeError> {
        let qos = QoS::from_u8((flags & QOS) >> QOS_SHIFT).ok_or(DecodeError::InvalidQoS)?;
        let dup = flags & DUP != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::DupOnQoS0);
        }
        let topic = read_string(&mut body)?;
        let packet_id = match qos {
            QoS::AtMostOnce => 0,
            QoS::AtLeastOnce | QoS::ExactlyOnce => read_packet_id(&mut body)?,
        };
        let properties = match protocol {
            Protocol::V5 => properties::read_block(&mut body, "PUBLISH")?,
            Protocol::V311 => PublishProperties::default(),
        };
        Ok(Publish {
            dup,
            qos,
            retain: flags & RETAIN != 0,
            topic,
            packet_id,
            payload: body,
            properties,
        })
    }

    /// The Remaining Length on `protocol`, and the length of the properties alone.
    fn lengths(&self, protocol: Protocol) -> (usize, usize) {
        let mut remaining = binary_len(self.topic.len()) + self.payload.len();
        if self.qos != QoS::AtMostOnce {
            remaining += 2;
        }
        let mut props_len = 0;
        if protocol == Protocol::V5 {
            props_len = properties::content_len(&self.properties);
            remaining += varint_len(props_len) + props_len;
        }
        (remaining, props_len)
    }

    /// Remaining Length of this PUBLISH on `protocol`.
    pub(crate) fn remaining_len(&self, protocol: Protocol) -> usize {
        self.lengths(protocol).0
    }

    /// Appends the whole packet, fixed header included, after reserving exactly its size.
    /// The packet identifier is written only for QoS 1 and 2, the properties only on v5.
    ///
    /// # Panics
    ///
    /// If the topic or a property string is longer than 65,535 bytes, or the packet's
    /// remaining length exceeds 268,435,455 bytes.
    pub fn write(&self, protocol: Protocol, buf: &mut BytesMut) {
        self.write_head(protocol, buf);
        buf.put_slice(&self.payload);
    }

    /// Appends everything of the packet but its payload, which comes last on the wire:
    /// a sender may then write the payload from its own `Bytes` (a vectored write)
    /// instead of copying it. `write_head` and the payload together are [`Publish::write`].
    ///
    /// # Panics
    ///
    /// As [`Publish::write`].
    pub fn write_head(&self, protocol: Protocol, buf: &mut BytesMut) {
        let (remaining, props_len) = self.lengths(protocol);
        let mut flags = (self.qos as u8) << QOS_SHIFT;
        if self.dup {
            flags |= DUP;
        }
        if self.retain {
            flags |= RETAIN;
        }
        write_fixed_header(buf, PUBLISH << 4 | flags, remaining);
        write_string(buf, &self.topic);
        if self.qos != QoS::AtMostOnce {
            buf.put_u16(self.packet_id);
        }
        if protocol == Protocol::V5 {
            properties::write_block_with_len(&self.properties, props_len, buf);
        }
    }
}

impl PropertySet for PublishProperties {
    fn read_one(&mut self, id: u8, r: &mut PropertyReader) -> Result<(), DecodeError> {
        match id {
            PAYLOAD_FORMAT_INDICATOR => {
                once(&mut self.payload_format_indicator, id, r.zero_or_one(id)?)
            }
            MESSAGE_EXPIRY_INTERVAL => once(&mut self.message_expiry_interval, id, r.u32()?),
            TOPIC_ALIAS => once(&mut self.topic_alias, id, r.nonzero_u16(id)?),
            RESPONSE_TOPIC => once(&mut self.response_topic, id, r.string()?),
            CORRELATION_DATA => once(&mut self.correlation_data, id, r.binary()?),
            USER_PROPERTY => {
                self.user_properties.push(r.string_pair()?);
                Ok(())
            }
            // One per matching subscription that had an identifier [MQTT-3.3.4-3].
            SUBSCRIPTION_IDENTIFIER => {
                self.subscription_identifiers
                    .push(r.subscription_identifier(id)?);
                Ok(())
            }
            CONTENT_TYPE => once(&mut self.content_type, id, r.string()?),
            _ => Err(r.not_allowed(id)),
        }
    }

    fn visit<V: Visitor>(&self, v: &mut V) {
        v.byte(PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        v.u32(MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        v.u16(TOPIC_ALIAS, self.topic_alias);
        v.string(RESPONSE_TOPIC, self.response_topic.as_deref());
        v.binary(CORRELATION_DATA, self.correlation_data.as_deref());
        v.user_properties(&self.user_properties);
        for &identifier in &self.subscription_identifiers {
            v.varint(SUBSCRIPTION_IDENTIFIER, Some(identifier));
        }
        v.string(CONTENT_TYPE, self.content_type.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Packet,
        packet::test_util::{assert_both_ways, decode, encode},
    };

    fn publish(qos: QoS, packet_id: u16) -> Publish {
        Publish {
            dup: false,
            qos,
            retain: false,
            topic: "a/b".into(),
            packet_id,
            payload: Bytes::from_static(b"hi"),
            properties: PublishProperties::default(),
        }
    }

    #[test]
    fn v311_qos0_has_no_packet_id() {
        assert_both_ways(
            b"\x30\x07\x00\x03a/bhi",
            Packet::Publish(publish(QoS::AtMostOnce, 0)),
            Protocol::V311,
        );
    }

    #[test]
    fn v311_qos1_and_qos2() {
        assert_both_ways(
            b"\x32\x09\x00\x03a/b\x00\x0Ahi",
            Packet::Publish(publish(QoS::AtLeastOnce, 10)),
            Protocol::V311,
        );
        let p = Publish {
            dup: true,
            retain: true,
            ..publish(QoS::ExactlyOnce, 0xABCD)
        };
        assert_both_ways(
            b"\x3D\x09\x00\x03a/b\xAB\xCDhi",
            Packet::Publish(p),
            Protocol::V311,
        );
    }

    #[test]
    fn v311_does_not_write_properties() {
        let p = Publish {
            properties: PublishProperties {
                topic_alias: Some(1),
                ..Default::default()
            },
            ..publish(QoS::AtMostOnce, 0)
        };
        assert_eq!(
            encode(&Packet::Publish(p), Protocol::V311),
            b"\x30\x07\x00\x03a/bhi"
        );
    }

    #[test]
    fn empty_payload() {
        let p = Publish {
            payload: Bytes::new(),
            ..publish(QoS::AtMostOnce, 0)
        };
        assert_both_ways(
            b"\x30\x05\x00\x03a/b",
            Packet::Publish(p.clone()),
            Protocol::V311,
        );
        assert_both_ways(b"\x30\x06\x00\x03a/b\x00", Packet::Publish(p), Protocol::V5);
    }

    #[test]
    fn v5_qos0_no_properties() {
        assert_both_ways(
            b"\x30\x08\x00\x03a/b\x00hi",
            Packet::Publish(publish(QoS::AtMostOnce, 0)),
            Protocol::V5,
        );
    }

    #[test]
    fn v5_empty_topic_with_alias() {
        let p = Publish {
            topic: "".into(),
            properties: PublishProperties {
                topic_alias: Some(1),
                ..Default::default()
            },
            ..publish(QoS::AtMostOnce, 0)
        };
        assert_both_ways(
            b"\x30\x08\x00\x00\x03\x23\x00\x01hi",
            Packet::Publish(p),
            Protocol::V5,
        );
    }

    #[test]
    fn v5_every_property() {
        let p = Publish {
            dup: true,
            retain: true,
            properties: PublishProperties {
                payload_format_indicator: Some(1),
                message_expiry_interval: Some(60),
                topic_alias: Some(5),
                response_topic: Some("r/t".into()),
                correlation_data: Some(Bytes::from_static(b"\xAB\xCD")),
                user_properties: vec![("k".into(), "v".into())],
                subscription_identifiers: vec![1, 128],
                content_type: Some("text".into()),
            },
            ..publish(QoS::AtLeastOnce, 10)
        };
        let bytes = b"\x3B\x32\x00\x03a/b\x00\x0A\x28\
            \x01\x01\
            \x02\x00\x00\x00\x3C\
            \x23\x00\x05\
            \x08\x00\x03r/t\
            \x09\x00\x02\xAB\xCD\
            \x26\x00\x01k\x00\x01v\
            \x0B\x01\
            \x0B\x80\x01\
            \x03\x00\x04text\
            hi";
        assert_both_ways(bytes, Packet::Publish(p), Protocol::V5);
    }

    #[test]
    fn write_reserves_exactly() {
        let p = publish(QoS::AtLeastOnce, 10);
        let mut buf = BytesMut::new();
        p.write(Protocol::V5, &mut buf);
        assert_eq!(buf.len(), Packet::Publish(p).encoded_len(Protocol::V5));
        assert_eq!(buf.capacity(), buf.len());
    }

    #[test]
    fn qos_3() {
        assert_eq!(
            decode(b"\x36\x07\x00\x03a/bhi", Protocol::V311),
            Err(DecodeError::InvalidQoS)
        );
    }

    #[test]
    fn dup_on_qos0() {
        assert_eq!(
            decode(b"\x38\x07\x00\x03a/bhi", Protocol::V311),
            Err(DecodeError::DupOnQoS0)
        );
    }

    #[test]
    fn zero_packet_id() {
        assert_eq!(
            decode(b"\x32\x09\x00\x03a/b\x00\x00hi", Protocol::V311),
            Err(DecodeError::ZeroPacketId)
        );
    }

    #[test]
    fn topic_not_utf8_or_cut_short() {
        assert_eq!(
            decode(b"\x30\x07\x00\x03a\xFFbhi", Protocol::V311),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(
            decode(b"\x30\x03\x00\x03a", Protocol::V311),
            Err(DecodeError::UnexpectedEnd)
        );
    }

    #[test]
    fn v5_property_errors() {
        assert_eq!(
            decode(b"\x30\x0B\x00\x03a/b\x03\x23\x00\x00hi", Protocol::V5),
            Err(DecodeError::InvalidPropertyValue(0x23))
        );
        assert_eq!(
            decode(
                b"\x30\x0E\x00\x03a/b\x06\x23\x00\x01\x23\x00\x02hi",
                Protocol::V5
            ),
            Err(DecodeError::DuplicateProperty(0x23))
        );
        assert_eq!(
            decode(b"\x30\x0A\x00\x03a/b\x02\x01\x02hi", Protocol::V5),
            Err(DecodeError::InvalidPropertyValue(0x01))
        );
        assert_eq!(
            decode(b"\x30\x0A\x00\x03a/b\x02\x0B\x00hi", Protocol::V5),
            Err(DecodeError::InvalidPropertyValue(0x0B))
        );
        assert_eq!(
            decode(
                b"\x30\x0D\x00\x03a/b\x05\x11\x00\x00\x00\x01hi",
                Protocol::V5
            ),
            Err(DecodeError::InvalidProperty {
                id: 0x11,
                packet: "PUBLISH"
            })
        );
        // Property length longer than what follows.
        assert_eq!(
            decode(b"\x30\x08\x00\x03a/b\x09hi", Protocol::V5),
            Err(DecodeError::PropertyLength)
        );
    }

    #[test]
    fn the_head_and_the_payload_are_the_whole_packet() {
        for protocol in [Protocol::V311, Protocol::V5] {
            let publish = Publish {
                dup: true,
                qos: QoS::ExactlyOnce,
                retain: true,
                topic: "a/b".into(),
                packet_id: 7,
                payload: Bytes::from_static(b"the payload"),
                properties: PublishProperties {
                    content_type: Some("text/plain".into()),
                    ..Default::default()
                },
            };
            let mut whole = BytesMut::new();
            publish.write(protocol, &mut whole);
            let mut head = BytesMut::new();
            publish.write_head(protocol, &mut head);
            head.extend_from_slice(&publish.payload);
            assert_eq!(head, whole);
            assert_eq!(Packet::Publish(publish).encoded_len(protocol), whole.len());
        }
    }

    #[test]
    fn debug_redacts_the_payload() {
        let text = format!("{:?}", publish(QoS::AtMostOnce, 0));
        assert!(text.contains("payload_len: 2"), "{text}");
        assert!(!text.contains("payload:"), "{text}");
    }
}
