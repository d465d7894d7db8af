//! PUBACK, PUBREC, PUBREL, PUBCOMP (MQTT 5.0 §3.4-3.7): the same shape, four packet types.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::{
    DecodeError, Protocol, ReasonCode, UserProperties,
    packet::{check_flags, read_packet_id},
    properties::{self, PropertyReader, PropertySet, REASON_STRING, USER_PROPERTY, Visitor, once},
    wire::{expect_end, read_u8, write_fixed_header},
};

/// The body shared by the four QoS acknowledgements. On v5 the reason code and properties
/// are omitted when the code is Success and there are no properties (remaining length 2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PubAckBody {
    /// Packet Identifier.
    pub packet_id: u16,
    /// Reason code (v5; always Success on v3.1.1).
    pub reason_code: ReasonCode,
    /// Properties (v5).
    pub properties: AckProperties,
}

/// The properties every acknowledgement may carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckProperties {
    /// 0x1F Reason String.
    pub reason_string: Option<ByteString>,
    /// 0x26 User Property.
    pub user_properties: UserProperties,
}

/// Which of the four acknowledgements a [`PubAckBody`] is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckKind {
    /// PUBACK (type 4): QoS 1 delivered.
    PubAck,
    /// PUBREC (type 5): QoS 2, first step.
    PubRec,
    /// PUBREL (type 6): QoS 2, second step; its fixed header flags are 0b0010.
    PubRel,
    /// PUBCOMP (type 7): QoS 2, last step.
    PubComp,
}

impl AckKind {
    /// The packet type in the fixed header.
    pub fn packet_type(self) -> u8 {
        match self {
            AckKind::PubAck => 4,
            AckKind::PubRec => 5,
            AckKind::PubRel => 6,
            AckKind::PubComp => 7,
        }
    }

    /// The fixed header flags this packet must carry [MQTT-3.6.1-1].
    pub fn flags(self) -> u8 {
        match self {
            AckKind::PubRel => 0b0010,
            _ => 0,
        }
    }

    /// The packet's name, for logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            AckKind::PubAck => "PUBACK",
            AckKind::PubRec => "PUBREC",
            AckKind::PubRel => "PUBREL",
            AckKind::PubComp => "PUBCOMP",
        }
    }

    /// Whether `code` is a reason code this packet may carry (MQTT 5.0 §3.4.2.1 to
    /// §3.7.2.1).
    pub fn allows(self, code: ReasonCode) -> bool {
        match self {
            AckKind::PubAck | AckKind::PubRec => matches!(
                code.0,
                0x00 | 0x10 | 0x80 | 0x83 | 0x87 | 0x90 | 0x91 | 0x97 | 0x99
            ),
            AckKind::PubRel | AckKind::PubComp => matches!(code.0, 0x00 | 0x92),
        }
    }
}

impl PubAckBody {
    /// A successful acknowledgement of `packet_id` with no properties.
    pub fn new(packet_id: u16) -> Self {
        PubAckBody {
            packet_id,
            ..Default::default()
        }
    }

    /// Reads the body of a `kind` packet whose fixed header carried `flags`.
    pub(crate) fn read(
        kind: AckKind,
        flags: u8,
        mut body: Bytes,
        protocol: Protocol,
    ) -> Result<Self, DecodeError> {
        check_flags(kind.packet_type(), flags, kind.flags())?;
        let packet_id = read_packet_id(&mut body)?;
        let mut ack = PubAckBody::new(packet_id);
        // v5: remaining length 2 means Success without properties, 3 a reason code
        // without properties [MQTT-3.4.2.1].
        if protocol == Protocol::V5 && !body.is_empty() {
            ack.reason_code = ReasonCode(read_u8(&mut body)?);
            if !kind.allows(ack.reason_code) {
                return Err(DecodeError::InvalidReasonCode {
                    code: ack.reason_code.0,
                    packet: kind.name(),
                });
            }
            if !body.is_empty() {
                ack.properties = properties::read_block(&mut body, kind.name())?;
            }
        }
        expect_end(&body)?;
        Ok(ack)
    }

    /// What follows the packet identifier on `protocol`: nothing, the reason code, or the
    /// reason code and the properties with their content length.
    fn tail(&self, protocol: Protocol) -> Tail {
        if protocol == Protocol::V311 {
            return Tail::None;
        }
        Tail::new(self.reason_code, properties::content_len(&self.properties))
    }

    /// Remaining Length of this acknowledgement on `protocol`.
    pub(crate) fn remaining_len(&self, protocol: Protocol) -> usize {
        self.tail(protocol).len() + 2
    }

    /// Appends the whole packet, fixed header included, as a `kind`. On v3.1.1 the reason
    /// code and properties are not written.
    ///
    /// # Panics
    ///
    /// If a property string is longer than 65,535 bytes.
    pub fn write(&self, kind: AckKind, protocol: Protocol, buf: &mut BytesMut) {
        let tail = self.tail(protocol);
        write_fixed_header(buf, kind.packet_type() << 4 | kind.flags(), 2 + tail.len());
        buf.put_u16(self.packet_id);
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

/// The optional part of an acknowledgement-shaped packet: shared by the four QoS
/// acknowledgements and DISCONNECT, which omit their reason code and properties alike.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Tail {
    /// Nothing: Success (or v3.1.1).
    None,
    /// The reason code alone.
    Code,
    /// The reason code and a property block with this content length.
    CodeAndProperties(usize),
}

impl Tail {
    /// The shortest tail for this reason code and properties of `props_len` bytes.
    pub(crate) fn new(code: ReasonCode, props_len: usize) -> Tail {
        match (code, props_len) {
            (ReasonCode::SUCCESS, 0) => Tail::None,
            (_, 0) => Tail::Code,
            (_, len) => Tail::CodeAndProperties(len),
        }
    }

    /// How many bytes the tail takes.
    pub(crate) fn len(self) -> usize {
        match self {
            Tail::None => 0,
            Tail::Code => 1,
            Tail::CodeAndProperties(len) => 1 + crate::wire::varint_len(len) + len,
        }
    }
}

impl PropertySet for AckProperties {
    fn read_one(&mut self, id: u8, r: &mut PropertyReader) -> Result<(), DecodeError> {
        match id {
            REASON_STRING => once(&mut self.reason_string, id, r.string()?),
            USER_PROPERTY => {
                self.user_properties.push(r.string_pair()?);
                Ok(())
            }
            _ => Err(r.not_allowed(id)),
        }
    }

    fn visit<V: Visitor>(&self, v: &mut V) {
        v.string(REASON_STRING, self.reason_string.as_deref());
        v.user_properties(&self.user_properties);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Packet,
        packet::test_util::{assert_both_ways, decode},
    };

    fn props() -> AckProperties {
        AckProperties {
            reason_string: Some("why".into()),
            user_properties: vec![("a".into(), "b".into())],
        }
    }

    #[test]
    fn v311_all_four() {
        assert_both_ways(
            b"\x40\x02\x12\x34",
            Packet::PubAck(PubAckBody::new(0x1234)),
            Protocol::V311,
        );
        assert_both_ways(
            b"\x50\x02\x00\x01",
            Packet::PubRec(PubAckBody::new(1)),
            Protocol::V311,
        );
        assert_both_ways(
            b"\x62\x02\x00\x01",
            Packet::PubRel(PubAckBody::new(1)),
            Protocol::V311,
        );
        assert_both_ways(
            b"\x70\x02\xFF\xFF",
            Packet::PubComp(PubAckBody::new(0xFFFF)),
            Protocol::V311,
        );
    }

    #[test]
    fn v311_has_no_reason_code() {
        assert_eq!(
            decode(b"\x40\x03\x00\x01\x00", Protocol::V311),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn v5_success_without_properties_is_two_bytes() {
        assert_both_ways(
            b"\x40\x02\x00\x07",
            Packet::PubAck(PubAckBody::new(7)),
            Protocol::V5,
        );
        assert_both_ways(
            b"\x62\x02\x00\x07",
            Packet::PubRel(PubAckBody::new(7)),
            Protocol::V5,
        );
        // The long forms of Success decode to the same value.
        assert_eq!(
            decode(b"\x40\x03\x00\x07\x00", Protocol::V5),
            Ok(Packet::PubAck(PubAckBody::new(7)))
        );
        assert_eq!(
            decode(b"\x40\x04\x00\x07\x00\x00", Protocol::V5),
            Ok(Packet::PubAck(PubAckBody::new(7)))
        );
    }

    #[test]
    fn v5_reason_code_without_properties() {
        let ack = PubAckBody {
            reason_code: ReasonCode::NO_MATCHING_SUBSCRIBERS,
            ..PubAckBody::new(7)
        };
        assert_both_ways(b"\x40\x03\x00\x07\x10", Packet::PubAck(ack), Protocol::V5);
        let rec = PubAckBody {
            reason_code: ReasonCode::QUOTA_EXCEEDED,
            ..PubAckBody::new(7)
        };
        assert_both_ways(b"\x50\x03\x00\x07\x97", Packet::PubRec(rec), Protocol::V5);
        let comp = PubAckBody {
            reason_code: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
            ..PubAckBody::new(7)
        };
        assert_both_ways(b"\x70\x03\x00\x07\x92", Packet::PubComp(comp), Protocol::V5);
    }

    #[test]
    fn v5_with_properties() {
        // 0x1F Reason String, 0x26 User Property.
        let ack = PubAckBody {
            packet_id: 7,
            reason_code: ReasonCode::SUCCESS,
            properties: props(),
        };
        let bytes = b"\x62\x11\x00\x07\x00\x0D\x1F\x00\x03why\x26\x00\x01a\x00\x01b";
        assert_both_ways(bytes, Packet::PubRel(ack), Protocol::V5);
    }

    #[test]
    fn v311_does_not_write_v5_fields() {
        let ack = PubAckBody {
            packet_id: 7,
            reason_code: ReasonCode::UNSPECIFIED_ERROR,
            properties: props(),
        };
        let mut buf = BytesMut::new();
        ack.write(AckKind::PubAck, Protocol::V311, &mut buf);
        assert_eq!(&buf[..], b"\x40\x02\x00\x07");
    }

    #[test]
    fn invalid_flags() {
        assert_eq!(
            decode(b"\x41\x02\x00\x01", Protocol::V5),
            Err(DecodeError::InvalidFlags {
                packet_type: 4,
                flags: 1
            })
        );
        assert_eq!(
            decode(b"\x60\x02\x00\x01", Protocol::V311),
            Err(DecodeError::InvalidFlags {
                packet_type: 6,
                flags: 0
            })
        );
        assert_eq!(
            decode(b"\x72\x02\x00\x01", Protocol::V311),
            Err(DecodeError::InvalidFlags {
                packet_type: 7,
                flags: 2
            })
        );
    }

    #[test]
    fn invalid_reason_codes() {
        assert_eq!(
            decode(b"\x40\x03\x00\x01\x92", Protocol::V5),
            Err(DecodeError::InvalidReasonCode {
                code: 0x92,
                packet: "PUBACK"
            })
        );
        assert_eq!(
            decode(b"\x62\x03\x00\x01\x10", Protocol::V5),
            Err(DecodeError::InvalidReasonCode {
                code: 0x10,
                packet: "PUBREL"
            })
        );
        for code in [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99] {
            assert!(AckKind::PubRec.allows(ReasonCode(code)));
            assert!(!AckKind::PubComp.allows(ReasonCode(code)) || code == 0);
        }
    }

    #[test]
    fn zero_packet_id() {
        assert_eq!(
            decode(b"\x40\x02\x00\x00", Protocol::V5),
            Err(DecodeError::ZeroPacketId)
        );
    }

    #[test]
    fn cut_short() {
        assert_eq!(
            decode(b"\x40\x01\x00", Protocol::V5),
            Err(DecodeError::UnexpectedEnd)
        );
    }

    #[test]
    fn property_not_allowed() {
        // 0x11 Session Expiry Interval is not an acknowledgement property.
        assert_eq!(
            decode(
                b"\x50\x09\x00\x01\x80\x05\x11\x00\x00\x00\x01",
                Protocol::V5
            ),
            Err(DecodeError::InvalidProperty {
                id: 0x11,
                packet: "PUBREC"
            })
        );
    }

    #[test]
    fn duplicate_reason_string() {
        assert_eq!(
            decode(
                b"\x40\x0C\x00\x01\x00\x08\x1F\x00\x01a\x1F\x00\x01b",
                Protocol::V5
            ),
            Err(DecodeError::DuplicateProperty(0x1F))
        );
    }

    #[test]
    fn trailing_after_properties() {
        assert_eq!(
            decode(b"\x40\x05\x00\x01\x00\x00\xAA", Protocol::V5),
            Err(DecodeError::TrailingBytes(1))
        );
    }
}
