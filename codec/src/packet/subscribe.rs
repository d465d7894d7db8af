//! SUBSCRIBE (MQTT 3.1.1 §3.8, MQTT 5.0 §3.8).

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::{
    DecodeError, Protocol, QoS, RetainHandling, UserProperties,
    packet::{SUBSCRIBE, check_flags, read_packet_id},
    properties::{
        self, PropertyReader, PropertySet, SUBSCRIPTION_IDENTIFIER, USER_PROPERTY, Visitor, once,
    },
    wire::{binary_len, read_string, read_u8, write_fixed_header, write_string},
};

/// SUBSCRIBE's fixed header flags [MQTT-3.8.1-1].
pub(crate) const FLAGS: u8 = 0b0010;

/// Subscription options bits (MQTT 5.0 §3.8.3.1).
const QOS: u8 = 0b0000_0011;
const NO_LOCAL: u8 = 0b0000_0100;
const RETAIN_AS_PUBLISHED: u8 = 0b0000_1000;
const RETAIN_HANDLING_SHIFT: u8 = 4;
const RETAIN_HANDLING: u8 = 0b0011_0000;

/// A request for one or more subscriptions. Filters are not validated here beyond UTF-8:
/// an invalid filter is refused per filter in SUBACK, not by closing the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet Identifier.
    pub packet_id: u16,
    /// Filters with their options, in order; at least one [MQTT-3.8.3-3].
    pub filters: Vec<(ByteString, SubscriptionOptions)>,
    /// v5 properties.
    pub properties: SubscribeProperties,
}

/// Subscription options byte (MQTT 5.0 §3.8.3.1); v3.1.1 only has the QoS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// No Local.
    pub no_local: bool,
    /// Retain As Published.
    pub retain_as_published: bool,
    /// Retain Handling.
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// Options with the given QoS and every v5 option at its default.
    pub fn qos(qos: QoS) -> Self {
        SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::SendAtSubscribe,
        }
    }
}

/// SUBSCRIBE properties (MQTT 5.0 §3.8.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeProperties {
    /// 0x0B Subscription Identifier (1..=268,435,455).
    pub subscription_identifier: Option<u32>,
    /// 0x26 User Property.
    pub user_properties: UserProperties,
}

impl SubscriptionOptions {
    /// Parses an options byte; on v3.1.1 everything but the QoS is reserved.
    fn from_byte(byte: u8, protocol: Protocol) -> Result<Self, DecodeError> {
        let reserved = match protocol {
            Protocol::V311 => !QOS,
            Protocol::V5 => !(QOS | NO_LOCAL | RETAIN_AS_PUBLISHED | RETAIN_HANDLING),
        };
        if byte & reserved != 0 {
            return Err(DecodeError::InvalidSubscriptionOptions);
        }
        let retain_handling = match (byte & RETAIN_HANDLING) >> RETAIN_HANDLING_SHIFT {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::InvalidSubscriptionOptions),
        };
        Ok(SubscriptionOptions {
            qos: QoS::from_u8(byte & QOS).ok_or(DecodeError::InvalidSubscriptionOptions)?,
            no_local: byte & NO_LOCAL != 0,
            retain_as_published: byte & RETAIN_AS_PUBLISHED != 0,
            retain_handling,
        })
    }

    /// The options byte for `protocol`; v3.1.1 carries the QoS alone.
    fn to_byte(self, protocol: Protocol) -> u8 {
        let mut byte = self.qos as u8;
        if protocol == Protocol::V5 {
            if self.no_local {
                byte |= NO_LOCAL;
            }
            if self.retain_as_published {
                byte |= RETAIN_AS_PUBLISHED;
            }
            byte |= (self.retain_handling as u8) << RETAIN_HANDLING_SHIFT;
        }
        byte
    }
}

impl Subscribe {
    /// Reads a SUBSCRIBE body. Filters are checked for UTF-8 only.
    pub(crate) fn read(
        flags: u8,
        mut body: Bytes,
        protocol: Protocol,
    ) -> Result<Self, DecodeError> {
        check_flags(SUBSCRIBE, flags, FLAGS)?;
        let packet_id = read_packet_id(&mut body)?;
        let properties = match protocol {
            Protocol::V5 => properties::read_block(&mut body, "SUBSCRIBE")?,
            Protocol::V311 => SubscribeProperties::default(),
        };
        let mut filters = Vec::new();
        while !body.is_empty() {
            let filter = read_string(&mut body)?;
            let options = SubscriptionOptions::from_byte(read_u8(&mut body)?, protocol)?;
            filters.push((filter, options));
        }
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilter);
        }
        Ok(Subscribe {
            packet_id,
            filters,
            properties,
        })
    }

    /// Remaining Length of this SUBSCRIBE on `protocol`.
    pub(crate) fn remaining_len(&self, protocol: Protocol) -> usize {
        let mut len = 2;
        if protocol == Protocol::V5 {
            len += properties::block_len(&self.properties);
        }
        len + self
            .filters
            .iter()
            .map(|(filter, _)| binary_len(filter.len()) + 1)
            .sum::<usize>()
    }

    /// Appends the whole packet, fixed header included. On v3.1.1 the properties and every
    /// option but the QoS are left out.
    ///
    /// # Panics
    ///
    /// If a filter or property string is longer than 65,535 bytes.
    pub fn write(&self, protocol: Protocol, buf: &mut BytesMut) {
        write_fixed_header(buf, SUBSCRIBE << 4 | FLAGS, self.remaining_len(protocol));
        buf.put_u16(self.packet_id);
        if protocol == Protocol::V5 {
            properties::write_block(&self.properties, buf);
        }
        for (filter, options) in &self.filters {
            write_string(buf, filter);
            buf.put_u8(options.to_byte(protocol));
        }
    }
}

impl PropertySet for SubscribeProperties {
    fn read_one(&mut self, id: u8, r: &mut PropertyReader) -> Result<(), DecodeError> {
        match id {
            SUBSCRIPTION_IDENTIFIER => once(
                &mut self.subscription_identifier,
                id,
                r.subscription_identifier(id)?,
            ),
            USER_PROPERTY => {
                self.user_properties.push(r.string_pair()?);
                Ok(())
            }
            _ => Err(r.not_allowed(id)),
        }
    }

    fn visit<V: Visitor>(&self, v: &mut V) {
        v.varint(SUBSCRIPTION_IDENTIFIER, self.subscription_identifier);
        v.user_properties(&self.user_properties);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Packet,
        packet::test_util::{assert_both_ways, decode, encode},
    };

    fn subscribe(filters: Vec<(ByteString, SubscriptionOptions)>) -> Packet {
        Packet::Subscribe(Subscribe {
            packet_id: 10,
            filters,
            properties: Default::default(),
        })
    }

    #[test]
    fn v311() {
        let packet = subscribe(vec![
            ("a/b".into(), SubscriptionOptions::qos(QoS::AtLeastOnce)),
            ("c/d".into(), SubscriptionOptions::qos(QoS::ExactlyOnce)),
        ]);
        assert_both_ways(
            b"\x82\x0E\x00\x0A\x00\x03a/b\x01\x00\x03c/d\x02",
            packet,
            Protocol::V311,
        );
    }

    #[test]
    fn v311_writes_the_qos_alone() {
        let options = SubscriptionOptions {
            qos: QoS::AtMostOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend,
        };
        let packet = subscribe(vec![("a".into(), options)]);
        assert_eq!(
            encode(&packet, Protocol::V311),
            b"\x82\x06\x00\x0A\x00\x01a\x00"
        );
    }

    #[test]
    fn v5_every_option_and_property() {
        let packet = Packet::Subscribe(Subscribe {
            packet_id: 10,
            filters: vec![
                (
                    "a/#".into(),
                    SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: RetainHandling::DoNotSend,
                    },
                ),
                (
                    "+/x".into(),
                    SubscriptionOptions {
                        retain_handling: RetainHandling::SendIfNew,
                        ..SubscriptionOptions::qos(QoS::AtLeastOnce)
                    },
                ),
            ],
            properties: SubscribeProperties {
                subscription_identifier: Some(128),
                user_properties: vec![("k".into(), "v".into())],
            },
        });
        let bytes = b"\x82\x19\x00\x0A\
            \x0A\x0B\x80\x01\x26\x00\x01k\x00\x01v\
            \x00\x03a/#\x2E\
            \x00\x03+/x\x11";
        assert_both_ways(bytes, packet, Protocol::V5);
    }

    #[test]
    fn filter_syntax_is_not_checked_here() {
        let packet = subscribe(vec![(
            "a#/+b".into(),
            SubscriptionOptions::qos(QoS::AtMostOnce),
        )]);
        assert_both_ways(
            b"\x82\x0B\x00\x0A\x00\x00\x05a#/+b\x00",
            packet,
            Protocol::V5,
        );
    }

    #[test]
    fn flags_must_be_0010() {
        assert_eq!(
            decode(b"\x80\x06\x00\x0A\x00\x01a\x00", Protocol::V311),
            Err(DecodeError::InvalidFlags {
                packet_type: 8,
                flags: 0
            })
        );
    }

    #[test]
    fn no_topic_filter() {
        assert_eq!(
            decode(b"\x82\x02\x00\x0A", Protocol::V311),
            Err(DecodeError::NoTopicFilter)
        );
        assert_eq!(
            decode(b"\x82\x03\x00\x0A\x00", Protocol::V5),
            Err(DecodeError::NoTopicFilter)
        );
    }

    #[test]
    fn invalid_options() {
        for (protocol, byte) in [
            (Protocol::V311, 0x04),
            (Protocol::V311, 0x03),
            (Protocol::V311, 0x80),
            (Protocol::V5, 0x40),
            (Protocol::V5, 0x80),
            (Protocol::V5, 0x30),
            (Protocol::V5, 0x03),
        ] {
            let mut bytes = match protocol {
                Protocol::V311 => b"\x82\x06\x00\x0A\x00\x01a".to_vec(),
                Protocol::V5 => b"\x82\x07\x00\x0A\x00\x00\x01a".to_vec(),
            };
            bytes.push(byte);
            assert_eq!(
                decode(&bytes, protocol),
                Err(DecodeError::InvalidSubscriptionOptions),
                "{byte:#04x}"
            );
        }
    }

    #[test]
    fn options_byte_missing() {
        assert_eq!(
            decode(b"\x82\x05\x00\x0A\x00\x01a", Protocol::V311),
            Err(DecodeError::UnexpectedEnd)
        );
    }

    #[test]
    fn zero_packet_id() {
        assert_eq!(
            decode(b"\x82\x06\x00\x00\x00\x01a\x00", Protocol::V311),
            Err(DecodeError::ZeroPacketId)
        );
    }

    #[test]
    fn v5_property_errors() {
        assert_eq!(
            decode(
                b"\x82\x0B\x00\x0A\x04\x0B\x01\x0B\x02\x00\x01a\x00",
                Protocol::V5
            ),
            Err(DecodeError::DuplicateProperty(0x0B))
        );
        assert_eq!(
            decode(b"\x82\x09\x00\x0A\x02\x0B\x00\x00\x01a\x00", Protocol::V5),
            Err(DecodeError::InvalidPropertyValue(0x0B))
        );
        assert_eq!(
            decode(b"\x82\x09\x00\x0A\x02\x01\x00\x00\x01a\x00", Protocol::V5),
            Err(DecodeError::InvalidProperty {
                id: 0x01,
                packet: "SUBSCRIBE"
            })
        );
    }
}
