//! UNSUBSCRIBE (MQTT 3.1.1 §3.10, MQTT 5.0 §3.10).

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::{
    DecodeError, Protocol, UserProperties,
    packet::{UNSUBSCRIBE, check_flags, read_packet_id},
    properties::{self, PropertyReader, PropertySet, USER_PROPERTY, Visitor},
    wire::{binary_len, read_string, write_fixed_header, write_string},
};

/// UNSUBSCRIBE's fixed header flags [MQTT-3.10.1-1].
const FLAGS: u8 = 0b0010;

/// A request to remove subscriptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet Identifier.
    pub packet_id: u16,
    /// Filters, at least one [MQTT-3.10.3-2].
    pub filters: Vec<ByteString>,
    /// 0x26 User Property (v5).
    pub user_properties: UserProperties,
}

impl Unsubscribe {
    /// Reads an UNSUBSCRIBE body. Filters are checked for UTF-8 only.
    pub(crate) fn read(
        flags: u8,
        mut body: Bytes,
        protocol: Protocol,
    ) -> Result<Self, DecodeError> {
        check_flags(UNSUBSCRIBE, flags, FLAGS)?;
        let packet_id = read_packet_id(&mut body)?;
        let user_properties = match protocol {
            Protocol::V5 => properties::read_block(&mut body, "UNSUBSCRIBE")?,
            Protocol::V311 => UserProperties::default(),
        };
        let mut filters = Vec::new();
        while !body.is_empty() {
            filters.push(read_string(&mut body)?);
        }
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilter);
        }
        Ok(Unsubscribe {
            packet_id,
            filters,
            user_properties,
        })
    }

    /// Remaining Length of this UNSUBSCRIBE on `protocol`.
    pub(crate) fn remaining_len(&self, protocol: Protocol) -> usize {
        let props = match protocol {
            Protocol::V5 => properties::block_len(&self.user_properties),
            Protocol::V311 => 0,
        };
        2 + props
            + self
                .filters
                .iter()
                .map(|filter| binary_len(filter.len()))
                .sum::<usize>()
    }

    /// Appends the whole packet, fixed header included. On v3.1.1 the user properties are
    /// left out.
    ///
    /// # Panics
    ///
    /// If a filter or property string is longer than 65,535 bytes.
    pub fn write(&self, protocol: Protocol, buf: &mut BytesMut) {
        write_fixed_header(buf, UNSUBSCRIBE << 4 | FLAGS, self.remaining_len(protocol));
        buf.put_u16(self.packet_id);
        if protocol == Protocol::V5 {
            properties::write_block(&self.user_properties, buf);
        }
        for filter in &self.filters {
            write_string(buf, filter);
        }
    }
}

/// UNSUBSCRIBE's only property is User Property (MQTT 5.0 §3.10.2.1).
impl PropertySet for UserProperties {
    fn read_one(&mut self, id: u8, r: &mut PropertyReader) -> Result<(), DecodeError> {
        match id {
            USER_PROPERTY => {
                self.push(r.string_pair()?);
                Ok(())
            }
            _ => Err(r.not_allowed(id)),
        }
    }

    fn visit<V: Visitor>(&self, v: &mut V) {
        v.user_properties(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Packet,
        packet::test_util::{assert_both_ways, decode, encode},
    };

    fn unsubscribe(user_properties: UserProperties) -> Packet {
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 10,
            filters: vec!["a/b".into(), "#".into()],
            user_properties,
        })
    }

    #[test]
    fn v311() {
        assert_both_ways(
            b"\xA2\x0A\x00\x0A\x00\x03a/b\x00\x01#",
            unsubscribe(vec![]),
            Protocol::V311,
        );
    }

    #[test]
    fn v311_leaves_user_properties_out() {
        let packet = unsubscribe(vec![("k".into(), "v".into())]);
        assert_eq!(
            encode(&packet, Protocol::V311),
            b"\xA2\x0A\x00\x0A\x00\x03a/b\x00\x01#"
        );
    }

    #[test]
    fn v5() {
        assert_both_ways(
            b"\xA2\x0B\x00\x0A\x00\x00\x03a/b\x00\x01#",
            unsubscribe(vec![]),
            Protocol::V5,
        );
        let bytes = b"\xA2\x12\x00\x0A\x07\x26\x00\x01k\x00\x01v\x00\x03a/b\x00\x01#";
        assert_both_ways(
            bytes,
            unsubscribe(vec![("k".into(), "v".into())]),
            Protocol::V5,
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            decode(b"\xA2\x02\x00\x0A", Protocol::V311),
            Err(DecodeError::NoTopicFilter)
        );
        assert_eq!(
            decode(b"\xA2\x03\x00\x0A\x00", Protocol::V5),
            Err(DecodeError::NoTopicFilter)
        );
        assert_eq!(
            decode(b"\xA0\x05\x00\x0A\x00\x01#", Protocol::V311),
            Err(DecodeError::InvalidFlags {
                packet_type: 10,
                flags: 0
            })
        );
        assert_eq!(
            decode(b"\xA2\x05\x00\x00\x00\x01#", Protocol::V311),
            Err(DecodeError::ZeroPacketId)
        );
        assert_eq!(
            decode(b"\xA2\x05\x00\x0A\x00\x02#", Protocol::V311),
            Err(DecodeError::UnexpectedEnd)
        );
        assert_eq!(
            decode(b"\xA2\x08\x00\x0A\x02\x1F\x00\x00\x01#", Protocol::V5),
            Err(DecodeError::InvalidProperty {
                id: 0x1F,
                packet: "UNSUBSCRIBE"
            })
        );
    }
}
