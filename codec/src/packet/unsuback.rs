//! UNSUBACK (MQTT 3.1.1 §3.11, MQTT 5.0 §3.11).

use bytes::{BufMut, Bytes, BytesMut};

use crate::{
    AckProperties, DecodeError, Protocol, ReasonCode,
    packet::{UNSUBACK, check_flags, check_reason_code, read_packet_id},
    properties,
    wire::{expect_end, read_u8, write_fixed_header},
};

/// UNSUBACK reason codes (MQTT 5.0 §3.11.3).
const REASON_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];

/// The answer to UNSUBSCRIBE. v3.1.1 has no payload: the reason codes are not written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet Identifier of the UNSUBSCRIBE.
    pub packet_id: u16,
    /// One per filter (v5): Success or No Subscription Existed or a failure.
    pub reason_codes: Vec<ReasonCode>,
    /// v5 properties.
    pub properties: AckProperties,
}

impl UnsubAck {
    /// Reads an UNSUBACK body.
    pub(crate) fn read(
        flags: u8,
        mut body: Bytes,
        protocol: Protocol,
    ) -> Result<Self, DecodeError> {
        check_flags(UNSUBACK, flags, 0)?;
        let packet_id = read_packet_id(&mut body)?;
        let mut unsuback = UnsubAck {
            packet_id,
            ..Default::default()
        };
        if protocol == Protocol::V5 {
            unsuback.properties = properties::read_block(&mut body, "UNSUBACK")?;
            unsuback.reason_codes.reserve(body.len());
            while !body.is_empty() {
                let code = read_u8(&mut body)?;
                unsuback
                    .reason_codes
                    .push(check_reason_code(code, REASON_CODES, "UNSUBACK")?);
            }
        }
        expect_end(&body)?;
        Ok(unsuback)
    }

    /// Remaining Length of this UNSUBACK on `protocol`.
    pub(crate) fn remaining_len(&self, protocol: Protocol) -> usize {
        match protocol {
            Protocol::V5 => 2 + properties::block_len(&self.properties) + self.reason_codes.len(),
            Protocol::V311 => 2,
        }
    }

    /// Appends the whole packet, fixed header included. On v3.1.1 only the packet
    /// identifier is written.
    ///
    /// # Panics
    ///
    /// If a property string is longer than 65,535 bytes.
    pub fn write(&self, protocol: Protocol, buf: &mut BytesMut) {
        write_fixed_header(buf, UNSUBACK << 4, self.remaining_len(protocol));
        buf.put_u16(self.packet_id);
        if protocol == Protocol::V5 {
            properties::write_block(&self.properties, buf);
            for code in &self.reason_codes {
                buf.put_u8(code.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Packet,
        packet::test_util::{assert_both_ways, decode, encode},
    };

    #[test]
    fn v311_is_the_packet_id_alone() {
        assert_both_ways(
            b"\xB0\x02\x00\x0A",
            Packet::UnsubAck(UnsubAck {
                packet_id: 10,
                ..Default::default()
            }),
            Protocol::V311,
        );
        let v5_only = UnsubAck {
            packet_id: 10,
            reason_codes: vec![ReasonCode::SUCCESS],
            properties: AckProperties {
                reason_string: Some("x".into()),
                ..Default::default()
            },
        };
        assert_eq!(
            encode(&Packet::UnsubAck(v5_only), Protocol::V311),
            b"\xB0\x02\x00\x0A"
        );
        assert_eq!(
            decode(b"\xB0\x03\x00\x0A\x00", Protocol::V311),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn v5() {
        let packet = UnsubAck {
            packet_id: 10,
            reason_codes: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
            properties: AckProperties {
                reason_string: Some("x".into()),
                user_properties: vec![("k".into(), "v".into())],
            },
        };
        let bytes = b"\xB0\x10\x00\x0A\x0B\x1F\x00\x01x\x26\x00\x01k\x00\x01v\x00\x11";
        assert_both_ways(bytes, Packet::UnsubAck(packet), Protocol::V5);
    }

    #[test]
    fn errors() {
        assert_eq!(
            decode(b"\xB0\x04\x00\x0A\x00\x01", Protocol::V5),
            Err(DecodeError::InvalidReasonCode {
                code: 0x01,
                packet: "UNSUBACK"
            })
        );
        assert_eq!(
            decode(b"\xB1\x02\x00\x0A", Protocol::V5),
            Err(DecodeError::InvalidFlags {
                packet_type: 11,
                flags: 1
            })
        );
        assert_eq!(
            decode(b"\xB0\x02\x00\x0A", Protocol::V5),
            Err(DecodeError::UnexpectedEnd)
        );
    }
}
