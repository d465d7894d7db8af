//! SUBACK (MQTT 3.1.1 §3.9, MQTT 5.0 §3.9).

use bytes::{BufMut, Bytes, BytesMut};

use crate::{
    AckProperties, DecodeError, Protocol, ReasonCode,
    packet::{SUBACK, check_flags, check_reason_code, read_packet_id},
    properties,
    wire::{read_u8, write_fixed_header},
};

/// SUBACK return codes of v3.1.1 (MQTT 3.1.1 §3.9.3).
const V311_CODES: &[u8] = &[0x00, 0x01, 0x02, 0x80];

/// SUBACK reason codes of v5 (MQTT 5.0 §3.9.3).
const V5_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];

/// One reason code per filter of the SUBSCRIBE, in order. On v3.1.1 every failure code is
/// written as 0x80.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubAck {
    /// Packet Identifier of the SUBSCRIBE.
    pub packet_id: u16,
    /// Granted QoS (0x00-0x02) or a failure code, per filter.
    pub reason_codes: Vec<ReasonCode>,
    /// v5 properties.
    pub properties: AckProperties,
}

impl SubAck {
    /// Reads a SUBACK body.
    pub(crate) fn read(
        flags: u8,
        mut body: Bytes,
        protocol: Protocol,
    ) -> Result<Self, DecodeError> {
        check_flags(SUBACK, flags, 0)?;
        let packet_id = read_packet_id(&mut body)?;
        let (properties, allowed) = match protocol {
            Protocol::V5 => (properties::read_block(&mut body, "SUBACK")?, V5_CODES),
            Protocol::V311 => (AckProperties::default(), V311_CODES),
        };
        let mut reason_codes = Vec::with_capacity(body.len());
        while !body.is_empty() {
            reason_codes.push(check_reason_code(read_u8(&mut body)?, allowed, "SUBACK")?);
        }
        Ok(SubAck {
            packet_id,
            reason_codes,
            properties,
        })
    }

    /// Remaining Length of this SUBACK on `protocol`.
    pub(crate) fn remaining_len(&self, protocol: Protocol) -> usize {
        let props = match protocol {
            Protocol::V5 => properties::block_len(&self.properties),
            Protocol::V311 => 0,
        };
        2 + props + self.reason_codes.len()
    }

    /// Appends the whole packet, fixed header included. On v3.1.1 the properties are left
    /// out and every failure is written as 0x80.
    ///
    /// # Panics
    ///
    /// If a property string is longer than 65,535 bytes.
    pub fn write(&self, protocol: Protocol, buf: &mut BytesMut) {
        write_fixed_header(buf, SUBACK << 4, self.remaining_len(protocol));
        buf.put_u16(self.packet_id);
        match protocol {
            Protocol::V5 => {
                properties::write_block(&self.properties, buf);
                for code in &self.reason_codes {
                    buf.put_u8(code.0);
                }
            }
            Protocol::V311 => {
                for code in &self.reason_codes {
                    buf.put_u8(match code.0 {
                        granted @ 0x00..=0x02 => granted,
                        _ => 0x80,
                    });
                }
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

    fn suback(reason_codes: Vec<ReasonCode>) -> Packet {
        Packet::SubAck(SubAck {
            packet_id: 10,
            reason_codes,
            properties: Default::default(),
        })
    }

    #[test]
    fn v311() {
        let packet = suback(vec![
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::GRANTED_QOS_2,
            ReasonCode::UNSPECIFIED_ERROR,
        ]);
        assert_both_ways(b"\x90\x06\x00\x0A\x00\x01\x02\x80", packet, Protocol::V311);
    }

    #[test]
    fn v311_writes_every_failure_as_0x80() {
        let packet = Packet::SubAck(SubAck {
            packet_id: 10,
            reason_codes: vec![
                ReasonCode::NOT_AUTHORIZED,
                ReasonCode::TOPIC_FILTER_INVALID,
                ReasonCode::GRANTED_QOS_1,
            ],
            properties: AckProperties {
                reason_string: Some("no".into()),
                ..Default::default()
            },
        });
        assert_eq!(
            encode(&packet, Protocol::V311),
            b"\x90\x05\x00\x0A\x80\x80\x01"
        );
    }

    #[test]
    fn v5_with_properties() {
        let packet = Packet::SubAck(SubAck {
            packet_id: 10,
            reason_codes: vec![
                ReasonCode::GRANTED_QOS_2,
                ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
            ],
            properties: AckProperties {
                reason_string: Some("no".into()),
                user_properties: vec![("k".into(), "v".into())],
            },
        });
        let bytes = b"\x90\x11\x00\x0A\x0C\x1F\x00\x02no\x26\x00\x01k\x00\x01v\x02\x9E";
        assert_both_ways(bytes, packet, Protocol::V5);
    }

    #[test]
    fn v5_without_properties() {
        assert_both_ways(
            b"\x90\x05\x00\x0A\x00\x00\x87",
            suback(vec![ReasonCode::GRANTED_QOS_0, ReasonCode::NOT_AUTHORIZED]),
            Protocol::V5,
        );
    }

    #[test]
    fn invalid_codes() {
        assert_eq!(
            decode(b"\x90\x03\x00\x0A\x87", Protocol::V311),
            Err(DecodeError::InvalidReasonCode {
                code: 0x87,
                packet: "SUBACK"
            })
        );
        assert_eq!(
            decode(b"\x90\x04\x00\x0A\x00\x03", Protocol::V5),
            Err(DecodeError::InvalidReasonCode {
                code: 0x03,
                packet: "SUBACK"
            })
        );
    }

    #[test]
    fn flags_and_property_errors() {
        assert_eq!(
            decode(b"\x92\x03\x00\x0A\x00", Protocol::V311),
            Err(DecodeError::InvalidFlags {
                packet_type: 9,
                flags: 2
            })
        );
        assert_eq!(
            decode(b"\x90\x06\x00\x0A\x02\x01\x00\x00", Protocol::V5),
            Err(DecodeError::InvalidProperty {
                id: 0x01,
                packet: "SUBACK"
            })
        );
    }
}
