//! DISCONNECT (MQTT 3.1.1 §3.14, MQTT 5.0 §3.14).

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::{
    DecodeError, Protocol, ReasonCode, UserProperties,
    packet::{DISCONNECT, ack::Tail, check_flags, check_reason_code},
    properties::{
        self, PropertyReader, PropertySet, REASON_STRING, SERVER_REFERENCE,
        SESSION_EXPIRY_INTERVAL, USER_PROPERTY, Visitor, once,
    },
    wire::{expect_end, read_u8, write_fixed_header},
};

/// Disconnect Reason Codes (MQTT 5.0 §3.14.2.1).
const REASON_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];

/// Sent by the client, or (v5 only) by the server before it closes the connection. On v5 a
/// Normal Disconnection with no properties is written with remaining length 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Disconnect {
    /// Disconnect Reason Code.
    pub reason_code: ReasonCode,
    /// v5 properties.
    pub properties: DisconnectProperties,
}

/// DISCONNECT properties (MQTT 5.0 §3.14.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisconnectProperties {
    /// 0x11 Session Expiry Interval (client to server only).
    pub session_expiry_interval: Option<u32>,
    /// 0x1F Reason String.
    pub reason_string: Option<ByteString>,
    /// 0x26 User Property.
    pub user_properties: UserProperties,
    /// 0x1C Server Reference.
    pub server_reference: Option<ByteString>,
}

impl Disconnect {
    /// Reads a DISCONNECT body: empty on v3.1.1; on v5 remaining length 0 means Normal
    /// Disconnection and 1 a reason code without properties [MQTT-3.14.2.1].
    pub(crate) fn read(
        flags: u8,
        mut body: Bytes,
        protocol: Protocol,
    ) -> Result<Self, DecodeError> {
        check_flags(DISCONNECT, flags, 0)?;
        let mut disconnect = Disconnect::default();
        if protocol == Protocol::V5 && !body.is_empty() {
            disconnect.reason_code =
                check_reason_code(read_u8(&mut body)?, REASON_CODES, "DISCONNECT")?;
            if !body.is_empty() {
                disconnect.properties = properties::read_block(&mut body, "DISCONNECT")?;
            }
        }
        expect_end(&body)?;
        Ok(disconnect)
    }

    fn tail(&self, protocol: Protocol) -> Tail {
        match protocol {
            Protocol::V311 => Tail::None,
            Protocol::V5 => Tail::new(self.reason_code, properties::content_len(&self.properties)),
        }
    }

    /// Remaining Length of this DISCONNECT on `protocol`.
    pub(crate) fn remaining_len(&self, protocol: Protocol) -> usize {
        self.tail(protocol).len()
    }

    /// Appends the whole packet, fixed header included, in its shortest form: on v3.1.1,
    /// and on v5 for a Normal Disconnection without properties, the remaining length is 0.
    ///
    /// # Panics
    ///
    /// If a property string is longer than 65,535 bytes.
    pub fn write(&self, protocol: Protocol, buf: &mut BytesMut) {
        let tail = self.tail(protocol);
        write_fixed_header(buf, DISCONNECT << 4, tail.len());
        match tail {
            Tail::None => {}
            Tail::Code => buf.put_u8(self.reason_code.0),
            Tail::CodeAndProperties(len) => {
                buf.put_u8(self.reason_code.0);
                properties::write_block_with_len(&self.properties, len, buf);
            }
        }
    }
}

impl PropertySet for DisconnectProperties {
    fn read_one(&mut self, id: u8, r: &mut PropertyReader) -> Result<(), DecodeError> {
        match id {
            SESSION_EXPIRY_INTERVAL => once(&mut self.session_expiry_interval, id, r.u32()?),
            REASON_STRING => once(&mut self.reason_string, id, r.string()?),
            USER_PROPERTY => {
                self.user_properties.push(r.string_pair()?);
                Ok(())
            }
            SERVER_REFERENCE => once(&mut self.server_reference, id, r.string()?),
            _ => Err(r.not_allowed(id)),
        }
    }

    fn visit<V: Visitor>(&self, v: &mut V) {
        v.u32(SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        v.string(REASON_STRING, self.reason_string.as_deref());
        v.user_properties(&self.user_properties);
        v.string(SERVER_REFERENCE, self.server_reference.as_deref());
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
    fn v311() {
        assert_both_ways(
            b"\xE0\x00",
            Packet::Disconnect(Disconnect::default()),
            Protocol::V311,
        );
        assert_eq!(
            decode(b"\xE0\x01\x00", Protocol::V311),
            Err(DecodeError::TrailingBytes(1))
        );
        let v5_only = Disconnect {
            reason_code: ReasonCode::SERVER_SHUTTING_DOWN,
            properties: DisconnectProperties {
                reason_string: Some("x".into()),
                ..Default::default()
            },
        };
        assert_eq!(
            encode(&Packet::Disconnect(v5_only), Protocol::V311),
            b"\xE0\x00"
        );
    }

    #[test]
    fn v5_normal_is_empty() {
        assert_both_ways(
            b"\xE0\x00",
            Packet::Disconnect(Disconnect::default()),
            Protocol::V5,
        );
        assert_eq!(
            decode(b"\xE0\x01\x00", Protocol::V5),
            Ok(Packet::Disconnect(Disconnect::default()))
        );
        assert_eq!(
            decode(b"\xE0\x02\x00\x00", Protocol::V5),
            Ok(Packet::Disconnect(Disconnect::default()))
        );
    }

    #[test]
    fn v5_reason_code_alone() {
        let d = Disconnect {
            reason_code: ReasonCode::DISCONNECT_WITH_WILL,
            ..Default::default()
        };
        assert_both_ways(b"\xE0\x01\x04", Packet::Disconnect(d), Protocol::V5);
    }

    #[test]
    fn v5_every_property() {
        let d = Disconnect {
            reason_code: ReasonCode::SERVER_MOVED,
            properties: DisconnectProperties {
                session_expiry_interval: Some(0),
                reason_string: Some("bye".into()),
                user_properties: vec![("k".into(), "v".into())],
                server_reference: Some("srv".into()),
            },
        };
        let bytes = b"\xE0\x1A\x9D\x18\
            \x11\x00\x00\x00\x00\
            \x1F\x00\x03bye\
            \x26\x00\x01k\x00\x01v\
            \x1C\x00\x03srv";
        assert_both_ways(bytes, Packet::Disconnect(d), Protocol::V5);
    }

    #[test]
    fn errors() {
        assert_eq!(
            decode(b"\xE0\x01\x01", Protocol::V5),
            Err(DecodeError::InvalidReasonCode {
                code: 0x01,
                packet: "DISCONNECT"
            })
        );
        assert_eq!(
            decode(b"\xE2\x00", Protocol::V5),
            Err(DecodeError::InvalidFlags {
                packet_type: 14,
                flags: 2
            })
        );
        assert_eq!(
            decode(b"\xE0\x04\x00\x02\x24\x01", Protocol::V5),
            Err(DecodeError::InvalidProperty {
                id: 0x24,
                packet: "DISCONNECT"
            })
        );
        assert_eq!(
            decode(b"\xE0\x03\x00\x00\x00", Protocol::V5),
            Err(DecodeError::TrailingBytes(1))
        );
    }
}
