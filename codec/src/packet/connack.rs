//! CONNACK (MQTT 3.1.1 §3.2, MQTT 5.0 §3.2).

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::{
    DecodeError, Protocol, ReasonCode, UserProperties,
    packet::{CONNACK, check_flags, check_reason_code},
    properties::{
        self, ASSIGNED_CLIENT_IDENTIFIER, AUTHENTICATION_DATA, AUTHENTICATION_METHOD,
        MAXIMUM_PACKET_SIZE, MAXIMUM_QOS, PropertyReader, PropertySet, REASON_STRING,
        RECEIVE_MAXIMUM, RESPONSE_INFORMATION, RETAIN_AVAILABLE, SERVER_KEEP_ALIVE,
        SERVER_REFERENCE, SESSION_EXPIRY_INTERVAL, SHARED_SUBSCRIPTION_AVAILABLE,
        SUBSCRIPTION_IDENTIFIERS_AVAILABLE, TOPIC_ALIAS_MAXIMUM, USER_PROPERTY, Visitor,
        WILDCARD_SUBSCRIPTION_AVAILABLE, once,
    },
    wire::{expect_end, read_u8, write_fixed_header},
};

/// Connect Reason Codes (MQTT 5.0 §3.2.2.2).
const REASON_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];

/// Session Present, the only Connect Acknowledge Flag; the other bits are reserved.
const SESSION_PRESENT: u8 = 0b0000_0001;

/// The server's answer to CONNECT. On a v3.1.1 connection the v5 reason code is written as
/// the nearest v3.1.1 return code (0x84 -> 1, 0x85 -> 2, 0x88/0x89/others -> 3, 0x86 -> 4,
/// 0x87 -> 5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnAck {
    /// Session Present.
    pub session_present: bool,
    /// Connect Reason Code.
    pub reason_code: ReasonCode,
    /// v5 properties; not written on v3.1.1.
    pub properties: ConnAckProperties,
}

/// CONNACK properties (MQTT 5.0 §3.2.2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnAckProperties {
    /// 0x11 Session Expiry Interval.
    pub session_expiry_interval: Option<u32>,
    /// 0x21 Receive Maximum the server accepts.
    pub receive_maximum: Option<u16>,
    /// 0x24 Maximum QoS.
    pub maximum_qos: Option<u8>,
    /// 0x25 Retain Available.
    pub retain_available: Option<bool>,
    /// 0x27 Maximum Packet Size the server accepts.
    pub maximum_packet_size: Option<u32>,
    /// 0x12 Assigned Client Identifier.
    pub assigned_client_identifier: Option<ByteString>,
    /// 0x22 Topic Alias Maximum the server accepts.
    pub topic_alias_maximum: Option<u16>,
    /// 0x1F Reason String.
    pub reason_string: Option<ByteString>,
    /// 0x26 User Property.
    pub user_properties: UserProperties,
    /// 0x28 Wildcard Subscription Available.
    pub wildcard_subscription_available: Option<bool>,
    /// 0x29 Subscription Identifiers Available.
    pub subscription_identifiers_available: Option<bool>,
    /// 0x2A Shared Subscription Available.
    pub shared_subscription_available: Option<bool>,
    /// 0x13 Server Keep Alive.
    pub server_keep_alive: Option<u16>,
    /// 0x1A Response Information.
    pub response_information: Option<ByteString>,
    /// 0x1C Server Reference.
    pub server_reference: Option<ByteString>,
    /// 0x15 Authentication Method.
    pub authentication_method: Option<ByteString>,
    /// 0x16 Authentication Data.
    pub authentication_data: Option<Bytes>,
}

impl ConnAck {
    /// Reads a CONNACK body.
    pub(crate) fn read(
        flags: u8,
        mut body: Bytes,
        protocol: Protocol,
    ) -> Result<Self, DecodeError> {
        check_flags(CONNACK, flags, 0)?;
        let ack_flags = read_u8(&mut body)?;
        if ack_flags & !SESSION_PRESENT != 0 {
            return Err(DecodeError::ConnAckReservedFlags(ack_flags));
        }
        let code = read_u8(&mut body)?;
        let (reason_code, properties) = match protocol {
            Protocol::V311 => {
                let code = from_v311_return_code(code).ok_or(DecodeError::InvalidReasonCode {
                    code,
                    packet: "CONNACK",
                })?;
                (code, ConnAckProperties::default())
            }
            Protocol::V5 => (
                check_reason_code(code, REASON_CODES, "CONNACK")?,
                properties::read_block(&mut body, "CONNACK")?,
            ),
        };
        expect_end(&body)?;
        Ok(ConnAck {
            session_present: ack_flags & SESSION_PRESENT != 0,
            reason_code,
            properties,
        })
    }

    /// Remaining Length of this CONNACK on `protocol`.
    pub(crate) fn remaining_len(&self, protocol: Protocol) -> usize {
        match protocol {
            Protocol::V311 => 2,
            Protocol::V5 => 2 + properties::block_len(&self.properties),
        }
    }

    /// Appends the whole packet, fixed header included. On v3.1.1 the reason code is
    /// written as the nearest return code and the properties are left out.
    ///
    /// # Panics
    ///
    /// If a property string is longer than 65,535 bytes.
    pub fn write(&self, protocol: Protocol, buf: &mut BytesMut) {
        write_fixed_header(buf, CONNACK << 4, self.remaining_len(protocol));
        buf.put_u8(u8::from(self.session_present));
        match protocol {
            Protocol::V311 => buf.put_u8(v311_return_code(self.reason_code)),
            Protocol::V5 => {
                buf.put_u8(self.reason_code.0);
                properties::write_block(&self.properties, buf);
            }
        }
    }
}

/// The v3.1.1 Connect Return Code nearest to a v5 reason code (MQTT 3.1.1 §3.2.2.3).
fn v311_return_code(code: ReasonCode) -> u8 {
    match code {
        ReasonCode::SUCCESS => 0,
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => 1,
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID => 2,
        ReasonCode::BAD_USERNAME_OR_PASSWORD | ReasonCode::BAD_AUTHENTICATION_METHOD => 4,
        ReasonCode::NOT_AUTHORIZED => 5,
        // 3: Server unavailable.
        _ => 3,
    }
}

/// The v5 reason code a v3.1.1 Connect Return Code stands for.
fn from_v311_return_code(code: u8) -> Option<ReasonCode> {
    Some(match code {
        0 => ReasonCode::SUCCESS,
        1 => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        2 => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
        3 => ReasonCode::SERVER_UNAVAILABLE,
        4 => ReasonCode::BAD_USERNAME_OR_PASSWORD,
        5 => ReasonCode::NOT_AUTHORIZED,
        _ => return None,
    })
}

impl PropertySet for ConnAckProperties {
    fn read_one(&mut self, id: u8, r: &mut PropertyReader) -> Result<(), DecodeError> {
        match id {
            SESSION_EXPIRY_INTERVAL => once(&mut self.session_expiry_interval, id, r.u32()?),
            RECEIVE_MAXIMUM => once(&mut self.receive_maximum, id, r.nonzero_u16(id)?),
            MAXIMUM_QOS => once(&mut self.maximum_qos, id, r.zero_or_one(id)?),
            RETAIN_AVAILABLE => once(&mut self.retain_available, id, r.bool(id)?),
            MAXIMUM_PACKET_SIZE => once(&mut self.maximum_packet_size, id, r.nonzero_u32(id)?),
            ASSIGNED_CLIENT_IDENTIFIER => {
                once(&mut self.assigned_client_identifier, id, r.string()?)
            }
            TOPIC_ALIAS_MAXIMUM => once(&mut self.topic_alias_maximum, id, r.u16()?),
            REASON_STRING => once(&mut self.reason_string, id, r.string()?),
            USER_PROPERTY => {
                self.user_properties.push(r.string_pair()?);
                Ok(())
            }
            WILDCARD_SUBSCRIPTION_AVAILABLE => {
                once(&mut self.wildcard_subscription_available, id, r.bool(id)?)
            }
            SUBSCRIPTION_IDENTIFIERS_AVAILABLE => once(
                &mut self.subscription_identifiers_available,
                id,
                r.bool(id)?,
            ),
            SHARED_SUBSCRIPTION_AVAILABLE => {
                once(&mut self.shared_subscription_available, id, r.bool(id)?)
            }
            SERVER_KEEP_ALIVE => once(&mut self.server_keep_alive, id, r.u16()?),
            RESPONSE_INFORMATION => once(&mut self.response_information, id, r.string()?),
            SERVER_REFERENCE => once(&mut self.server_reference, id, r.string()?),
            AUTHENTICATION_METHOD => once(&mut self.authentication_method, id, r.string()?),
            AUTHENTICATION_DATA => once(&mut self.authentication_data, id, r.binary()?),
            _ => Err(r.not_allowed(id)),
        }
    }

    fn visit<V: Visitor>(&self, v: &mut V) {
        v.u32(SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        v.u16(RECEIVE_MAXIMUM, self.receive_maximum);
        v.byte(MAXIMUM_QOS, self.maximum_qos);
        v.bool(RETAIN_AVAILABLE, self.retain_available);
        v.u32(MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        v.string(
            ASSIGNED_CLIENT_IDENTIFIER,
            self.assigned_client_identifier.as_deref(),
        );
        v.u16(TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        v.string(REASON_STRING, self.reason_string.as_deref());
        v.user_properties(&self.user_properties);
        v.bool(
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        v.bool(
            SUBSCRIPTION_IDENTIFIERS_AVAILABLE,
            self.subscription_identifiers_available,
        );
        v.bool(
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
        v.u16(SERVER_KEEP_ALIVE, self.server_keep_alive);
        v.string(RESPONSE_INFORMATION, self.response_information.as_deref());
        v.string(SERVER_REFERENCE, self.server_reference.as_deref());
        v.string(AUTHENTICATION_METHOD, self.authentication_method.as_deref());
        v.binary(AUTHENTICATION_DATA, self.authentication_data.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Packet,
        packet::test_util::{assert_both_ways, decode, encode},
    };

    fn connack(session_present: bool, reason_code: ReasonCode) -> Packet {
        Packet::ConnAck(ConnAck {
            session_present,
            reason_code,
            properties: Default::default(),
        })
    }

    #[test]
    fn v311_return_codes() {
        assert_both_ways(
            b"\x20\x02\x01\x00",
            connack(true, ReasonCode::SUCCESS),
            Protocol::V311,
        );
        for (byte, code) in [
            (1, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION),
            (2, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),
            (3, ReasonCode::SERVER_UNAVAILABLE),
            (4, ReasonCode::BAD_USERNAME_OR_PASSWORD),
            (5, ReasonCode::NOT_AUTHORIZED),
        ] {
            assert_both_ways(
                &[0x20, 0x02, 0x00, byte],
                connack(false, code),
                Protocol::V311,
            );
        }
    }

    #[test]
    fn v311_maps_other_v5_codes() {
        for (code, byte) in [
            (ReasonCode::BAD_AUTHENTICATION_METHOD, 4),
            (ReasonCode::SERVER_BUSY, 3),
            (ReasonCode::BANNED, 3),
            (ReasonCode::UNSPECIFIED_ERROR, 3),
            (ReasonCode::QUOTA_EXCEEDED, 3),
        ] {
            assert_eq!(
                encode(&connack(false, code), Protocol::V311),
                [0x20, 0x02, 0x00, byte]
            );
        }
    }

    #[test]
    fn v311_does_not_write_properties() {
        let ack = ConnAck {
            properties: ConnAckProperties {
                receive_maximum: Some(10),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            encode(&Packet::ConnAck(ack), Protocol::V311),
            b"\x20\x02\x00\x00"
        );
    }

    #[test]
    fn v311_unknown_return_code() {
        assert_eq!(
            decode(b"\x20\x02\x00\x06", Protocol::V311),
            Err(DecodeError::InvalidReasonCode {
                code: 6,
                packet: "CONNACK"
            })
        );
    }

    #[test]
    fn v5_minimal() {
        assert_both_ways(
            b"\x20\x03\x00\x00\x00",
            connack(false, ReasonCode::SUCCESS),
            Protocol::V5,
        );
        assert_both_ways(
            b"\x20\x03\x01\x00\x00",
            connack(true, ReasonCode::SUCCESS),
            Protocol::V5,
        );
        assert_both_ways(
            b"\x20\x03\x00\x8A\x00",
            connack(false, ReasonCode::BANNED),
            Protocol::V5,
        );
    }

    #[test]
    fn v5_every_property() {
        let ack = ConnAck {
            session_present: true,
            reason_code: ReasonCode::SUCCESS,
            properties: ConnAckProperties {
                session_expiry_interval: Some(10),
                receive_maximum: Some(20),
                maximum_qos: Some(1),
                retain_available: Some(true),
                maximum_packet_size: Some(4096),
                assigned_client_identifier: Some("gen".into()),
                topic_alias_maximum: Some(5),
                reason_string: Some("ok".into()),
                user_properties: vec![("k".into(), "v".into())],
                wildcard_subscription_available: Some(false),
                subscription_identifiers_available: Some(true),
                shared_subscription_available: Some(false),
                server_keep_alive: Some(30),
                response_information: Some("r/i".into()),
                server_reference: Some("srv".into()),
                authentication_method: Some("meth".into()),
                authentication_data: Some(Bytes::from_static(b"\x01\x02")),
            },
        };
        let bytes = b"\x20\x4A\x01\x00\x47\
            \x11\x00\x00\x00\x0A\
            \x21\x00\x14\
            \x24\x01\
            \x25\x01\
            \x27\x00\x00\x10\x00\
            \x12\x00\x03gen\
            \x22\x00\x05\
            \x1F\x00\x02ok\
            \x26\x00\x01k\x00\x01v\
            \x28\x00\
            \x29\x01\
            \x2A\x00\
            \x13\x00\x1E\
            \x1A\x00\x03r/i\
            \x1C\x00\x03srv\
            \x15\x00\x04meth\
            \x16\x00\x02\x01\x02";
        assert_both_ways(bytes, Packet::ConnAck(ack), Protocol::V5);
    }

    #[test]
    fn v5_invalid_reason_code() {
        assert_eq!(
            decode(b"\x20\x03\x00\x01\x00", Protocol::V5),
            Err(DecodeError::InvalidReasonCode {
                code: 0x01,
                packet: "CONNACK"
            })
        );
    }

    #[test]
    fn reserved_acknowledge_flags() {
        assert_eq!(
            decode(b"\x20\x02\x02\x00", Protocol::V311),
            Err(DecodeError::ConnAckReservedFlags(0x02))
        );
    }

    #[test]
    fn fixed_header_flags() {
        assert_eq!(
            decode(b"\x21\x02\x00\x00", Protocol::V311),
            Err(DecodeError::InvalidFlags {
                packet_type: 2,
                flags: 1
            })
        );
    }

    #[test]
    fn v5_property_values() {
        for (bytes, id) in [
            (&b"\x20\x05\x00\x00\x02\x24\x02"[..], 0x24),
            (b"\x20\x05\x00\x00\x02\x25\x02", 0x25),
            (b"\x20\x05\x00\x00\x02\x28\x02", 0x28),
            (b"\x20\x05\x00\x00\x02\x29\x02", 0x29),
            (b"\x20\x05\x00\x00\x02\x2A\x02", 0x2A),
            (b"\x20\x06\x00\x00\x03\x21\x00\x00", 0x21),
            (b"\x20\x08\x00\x00\x05\x27\x00\x00\x00\x00", 0x27),
        ] {
            assert_eq!(
                decode(bytes, Protocol::V5),
                Err(DecodeError::InvalidPropertyValue(id))
            );
        }
        assert_eq!(
            decode(b"\x20\x05\x00\x00\x02\x17\x01", Protocol::V5),
            Err(DecodeError::InvalidProperty {
                id: 0x17,
                packet: "CONNACK"
            })
        );
    }

    #[test]
    fn v311_trailing() {
        assert_eq!(
            decode(b"\x20\x03\x00\x00\x00", Protocol::V311),
            Err(DecodeError::TrailingBytes(1))
        );
    }
}
