//! The control packets, one module each, and the [`Packet`] enum that frames them.

pub mod ack;
pub mod auth;
pub mod connack;
pub mod connect;
pub mod disconnect;
pub mod publish;
pub mod suback;
pub mod subscribe;
pub mod unsuback;
pub mod unsubscribe;

use bytes::{Buf, Bytes, BytesMut};

use crate::{
    Auth, ConnAck, Connect, DecodeError, Disconnect, Protocol, PubAckBody, Publish, ReasonCode,
    SubAck, Subscribe, UnsubAck, Unsubscribe,
    packet::ack::AckKind,
    wire::{expect_end, parse_varint, read_u16, varint_len, write_fixed_header},
};

/// Any MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (boxed: it is large and rare).
    Connect(Box<Connect>),
    /// CONNACK.
    ConnAck(ConnAck),
    /// PUBLISH.
    Publish(Publish),
    /// PUBACK.
    PubAck(PubAckBody),
    /// PUBREC.
    PubRec(PubAckBody),
    /// PUBREL.
    PubRel(PubAckBody),
    /// PUBCOMP.
    PubComp(PubAckBody),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// SUBACK.
    SubAck(SubAck),
    /// UNSUBSCRIBE.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK.
    UnsubAck(UnsubAck),
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect(Disconnect),
    /// AUTH (v5 only).
    Auth(Auth),
}

impl Packet {
    /// Decodes one packet from the front of `buf`, consuming its bytes.
    ///
    /// Returns `Ok(None)` while the packet is incomplete (nothing is consumed then). A
    /// packet whose total size (fixed header included) exceeds `max_packet_size` is
    /// refused with [`DecodeError::PacketTooLarge`] as soon as its remaining length has
    /// been read. `protocol` is the connection's protocol; a CONNECT reads its own.
    /// Payloads and strings are slices of one frozen buffer, not copies.
    pub fn decode(
        buf: &mut BytesMut,
        protocol: Protocol,
        max_packet_size: u32,
    ) -> Result<Option<Packet>, DecodeError> {
        let Some(&first_byte) = buf.first() else {
            return Ok(None);
        };
        let Some((remaining, len_bytes)) = parse_varint(&buf[1..])? else {
            return Ok(None);
        };
        let total = 1 + len_bytes + remaining as usize;
        if total as u64 > u64::from(max_packet_size) {
            return Err(DecodeError::PacketTooLarge {
                size: total as u64,
                max: max_packet_size,
            });
        }
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let mut frame = buf.split_to(total).freeze();
        frame.advance(1 + len_bytes);
        Packet::read(first_byte, frame, protocol).map(Some)
    }

    /// Reads the body of a packet whose fixed header began with `first_byte`.
    fn read(first_byte: u8, body: Bytes, protocol: Protocol) -> Result<Packet, DecodeError> {
        let flags = first_byte & 0x0F;
        Ok(match first_byte >> 4 {
            CONNECT => Packet::Connect(Box::new(Connect::read(flags, body)?)),
            CONNACK => Packet::ConnAck(ConnAck::read(flags, body, protocol)?),
            PUBLISH => Packet::Publish(Publish::read(flags, body, protocol)?),
            PUBACK => Packet::PubAck(PubAckBody::read(AckKind::PubAck, flags, body, protocol)?),
            PUBREC => Packet::PubRec(PubAckBody::read(AckKind::PubRec, flags, body, protocol)?),
            PUBREL => Packet::PubRel(PubAckBody::read(AckKind::PubRel, flags, body, protocol)?),
            PUBCOMP => Packet::PubComp(PubAckBody::read(AckKind::PubComp, flags, body, protocol)?),
            SUBSCRIBE => Packet::Subscribe(Subscribe::read(flags, body, protocol)?),
            SUBACK => Packet::SubAck(SubAck::read(flags, body, protocol)?),
            UNSUBSCRIBE => Packet::Unsubscribe(Unsubscribe::read(flags, body, protocol)?),
            UNSUBACK => Packet::UnsubAck(UnsubAck::read(flags, body, protocol)?),
            PINGREQ => {
                check_flags(PINGREQ, flags, 0)?;
                expect_end(&body)?;
                Packet::PingReq
            }
            PINGRESP => {
                check_flags(PINGRESP, flags, 0)?;
                expect_end(&body)?;
                Packet::PingResp
            }
            DISCONNECT => Packet::Disconnect(Disconnect::read(flags, body, protocol)?),
            AUTH if protocol == Protocol::V311 => return Err(DecodeError::NotInProtocol(AUTH)),
            AUTH => Packet::Auth(Auth::read(flags, body)?),
            reserved => return Err(DecodeError::ReservedPacketType(reserved)),
        })
    }

    /// Appends the encoding of this packet for `protocol` to `buf`, reserving the exact
    /// room it needs first.
    ///
    /// A CONNECT is written for its own `protocol` field, whatever `protocol` says. On
    /// v3.1.1, fields that do not exist there (properties, most reason codes) are left
    /// out, and reason codes are mapped to the v3.1.1 return codes.
    ///
    /// # Panics
    ///
    /// If a string or binary field is longer than 65,535 bytes, or the packet's remaining
    /// length exceeds 268,435,455 bytes: neither can be expressed on the wire.
    pub fn encode(&self, protocol: Protocol, buf: &mut BytesMut) {
        match self {
            Packet::Connect(connect) => connect.write(buf),
            Packet::ConnAck(connack) => connack.write(protocol, buf),
            Packet::Publish(publish) => publish.write(protocol, buf),
            Packet::PubAck(ack) => ack.write(AckKind::PubAck, protocol, buf),
            Packet::PubRec(ack) => ack.write(AckKind::PubRec, protocol, buf),
            Packet::PubRel(ack) => ack.write(AckKind::PubRel, protocol, buf),
            Packet::PubComp(ack) => ack.write(AckKind::PubComp, protocol, buf),
            Packet::Subscribe(subscribe) => subscribe.write(protocol, buf),
            Packet::SubAck(suback) => suback.write(protocol, buf),
            Packet::Unsubscribe(unsubscribe) => unsubscribe.write(protocol, buf),
            Packet::UnsubAck(unsuback) => unsuback.write(protocol, buf),
            Packet::PingReq => write_fixed_header(buf, PINGREQ << 4, 0),
            Packet::PingResp => write_fixed_header(buf, PINGRESP << 4, 0),
            Packet::Disconnect(disconnect) => disconnect.write(protocol, buf),
            Packet::Auth(auth) => auth.write(buf),
        }
    }

    /// How many bytes [`Packet::encode`] appends for `protocol`, fixed header included:
    /// what to compare with the peer's Maximum Packet Size before sending.
    pub fn encoded_len(&self, protocol: Protocol) -> usize {
        let remaining = match self {
            Packet::Connect(connect) => connect.remaining_len(),
            Packet::ConnAck(connack) => connack.remaining_len(protocol),
            Packet::Publish(publish) => publish.remaining_len(protocol),
            Packet::PubAck(ack)
            | Packet::PubRec(ack)
            | Packet::PubRel(ack)
            | Packet::PubComp(ack) => ack.remaining_len(protocol),
            Packet::Subscribe(subscribe) => subscribe.remaining_len(protocol),
            Packet::SubAck(suback) => suback.remaining_len(protocol),
            Packet::Unsubscribe(unsubscribe) => unsubscribe.remaining_len(protocol),
            Packet::UnsubAck(unsuback) => unsuback.remaining_len(protocol),
            Packet::PingReq | Packet::PingResp => 0,
            Packet::Disconnect(disconnect) => disconnect.remaining_len(protocol),
            Packet::Auth(auth) => auth.remaining_len(),
        };
        1 + varint_len(remaining) + remaining
    }

    /// The packet type's name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}

/// Packet types (MQTT 5.0 §2.1.2), the high nibble of the first byte.
pub(crate) const CONNECT: u8 = 1;
pub(crate) const CONNACK: u8 = 2;
pub(crate) const PUBLISH: u8 = 3;
pub(crate) const PUBACK: u8 = 4;
pub(crate) const PUBREC: u8 = 5;
pub(crate) const PUBREL: u8 = 6;
pub(crate) const PUBCOMP: u8 = 7;
pub(crate) const SUBSCRIBE: u8 = 8;
pub(crate) const SUBACK: u8 = 9;
pub(crate) const UNSUBSCRIBE: u8 = 10;
pub(crate) const UNSUBACK: u8 = 11;
pub(crate) const PINGREQ: u8 = 12;
pub(crate) const PINGRESP: u8 = 13;
pub(crate) const DISCONNECT: u8 = 14;
pub(crate) const AUTH: u8 = 15;

/// Refuses fixed header flags other than the ones `packet_type` must carry [MQTT-2.2.2-2].
pub(crate) fn check_flags(packet_type: u8, flags: u8, expected: u8) -> Result<(), DecodeError> {
    if flags == expected {
        Ok(())
    } else {
        Err(DecodeError::InvalidFlags { packet_type, flags })
    }
}

/// Reads a Packet Identifier, which is never 0 [MQTT-2.2.1-3].
pub(crate) fn read_packet_id(body: &mut Bytes) -> Result<u16, DecodeError> {
    match read_u16(body)? {
        0 => Err(DecodeError::ZeroPacketId),
        id => Ok(id),
    }
}

/// Refuses a reason code that `packet` may not carry.
pub(crate) fn check_reason_code(
    code: u8,
    allowed: &[u8],
    packet: &'static str,
) -> Result<ReasonCode, DecodeError> {
    if allowed.contains(&code) {
        Ok(ReasonCode(code))
    } else {
        Err(DecodeError::InvalidReasonCode { code, packet })
    }
}

/// Helpers for the byte-literal tests of every packet module.
#[cfg(test)]
pub(crate) mod test_util {
    use bytes::BytesMut;

    use crate::{DecodeError, Packet, Protocol};

    /// Decodes one whole packet, which must use every byte.
    pub(crate) fn decode(bytes: &[u8], protocol: Protocol) -> Result<Packet, DecodeError> {
        let mut buf = BytesMut::from(bytes);
        let packet = Packet::decode(&mut buf, protocol, u32::MAX)?.expect("a whole packet");
        assert!(buf.is_empty(), "{} bytes left over", buf.len());
        Ok(packet)
    }

    /// Encodes a packet, checking that `encoded_len` predicts the length exactly.
    pub(crate) fn encode(packet: &Packet, protocol: Protocol) -> Vec<u8> {
        let mut buf = BytesMut::new();
        packet.encode(protocol, &mut buf);
        assert_eq!(
            buf.len(),
            packet.encoded_len(protocol),
            "encoded_len of {packet:?}"
        );
        buf.to_vec()
    }

    /// The literal decodes to the packet, and the packet encodes to the literal.
    #[track_caller]
    pub(crate) fn assert_both_ways(bytes: &[u8], packet: Packet, protocol: Protocol) {
        assert_eq!(
            decode(bytes, protocol),
            Ok(packet.clone()),
            "decoding {bytes:02X?}"
        );
        assert_eq!(encode(&packet, protocol), bytes, "encoding {packet:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::{test_util::*, *};
    use crate::{QoS, packet::ack::AckKind};

    #[test]
    fn pings_both_protocols() {
        for protocol in [Protocol::V311, Protocol::V5] {
            assert_both_ways(b"\xC0\x00", Packet::PingReq, protocol);
            assert_both_ways(b"\xD0\x00", Packet::PingResp, protocol);
        }
    }

    #[test]
    fn ping_with_body_or_flags() {
        assert_eq!(
            decode(b"\xC0\x01\x00", Protocol::V5),
            Err(DecodeError::TrailingBytes(1))
        );
        assert_eq!(
            decode(b"\xD0\x02\x00\x00", Protocol::V311),
            Err(DecodeError::TrailingBytes(2))
        );
        assert_eq!(
            decode(b"\xC1\x00", Protocol::V5),
            Err(DecodeError::InvalidFlags {
                packet_type: 12,
                flags: 1
            })
        );
        assert_eq!(
            decode(b"\xD8\x00", Protocol::V5),
            Err(DecodeError::InvalidFlags {
                packet_type: 13,
                flags: 8
            })
        );
    }

    #[test]
    fn reserved_packet_type() {
        assert_eq!(
            decode(b"\x00\x00", Protocol::V5),
            Err(DecodeError::ReservedPacketType(0))
        );
        assert_eq!(
            decode(b"\x00\x00", Protocol::V311),
            Err(DecodeError::ReservedPacketType(0))
        );
    }

    #[test]
    fn auth_does_not_exist_in_v311() {
        assert_eq!(
            decode(b"\xF0\x00", Protocol::V311),
            Err(DecodeError::NotInProtocol(15))
        );
    }

    #[test]
    fn empty_buffer_is_incomplete() {
        let mut buf = BytesMut::new();
        assert_eq!(Packet::decode(&mut buf, Protocol::V5, 100), Ok(None));
    }

    fn sample_publish() -> Packet {
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "a/b".into(),
            packet_id: 10,
            payload: Bytes::from_static(b"hello"),
            properties: Default::default(),
        })
    }

    #[test]
    fn byte_by_byte_yields_nothing_until_the_last_byte() {
        for protocol in [Protocol::V311, Protocol::V5] {
            let packet = sample_publish();
            let bytes = encode(&packet, protocol);
            let mut buf = BytesMut::new();
            for (i, &byte) in bytes.iter().enumerate() {
                buf.extend_from_slice(&[byte]);
                let decoded = Packet::decode(&mut buf, protocol, 1024).unwrap();
                if i + 1 < bytes.len() {
                    assert_eq!(decoded, None, "after {} bytes", i + 1);
                    assert_eq!(buf.len(), i + 1, "nothing consumed");
                } else {
                    assert_eq!(decoded, Some(packet.clone()));
                    assert!(buf.is_empty());
                }
            }
        }
    }

    #[test]
    fn two_packets_in_one_buffer() {
        let mut buf = BytesMut::from(&b"\xC0\x00\x40\x02\x00\x01\xD0"[..]);
        assert_eq!(
            Packet::decode(&mut buf, Protocol::V5, 100),
            Ok(Some(Packet::PingReq))
        );
        assert_eq!(
            Packet::decode(&mut buf, Protocol::V5, 100),
            Ok(Some(Packet::PubAck(PubAckBody::new(1))))
        );
        assert_eq!(Packet::decode(&mut buf, Protocol::V5, 100), Ok(None));
        assert_eq!(&buf[..], b"\xD0");
    }

    #[test]
    fn too_large_is_refused_from_the_fixed_header_alone() {
        // PUBLISH announcing 16,384 bytes: 1 + 3 + 16,384 in all.
        let mut buf = BytesMut::from(&b"\x30\x80\x80\x01"[..]);
        assert_eq!(
            Packet::decode(&mut buf, Protocol::V5, 16_387),
            Err(DecodeError::PacketTooLarge {
                size: 16_388,
                max: 16_387
            })
        );
        // At exactly the limit it waits for the body, and makes room for it.
        let mut buf = BytesMut::from(&b"\x30\x80\x80\x01"[..]);
        assert_eq!(Packet::decode(&mut buf, Protocol::V5, 16_388), Ok(None));
        assert!(buf.capacity() >= 16_388);
        assert_eq!(buf.len(), 4);
    }

    #[test]
    fn too_large_counts_the_fixed_header() {
        let mut buf = BytesMut::from(&b"\xC0\x00"[..]);
        assert_eq!(
            Packet::decode(&mut buf, Protocol::V5, 1),
            Err(DecodeError::PacketTooLarge { size: 2, max: 1 })
        );
    }

    #[test]
    fn malformed_remaining_length() {
        // Refused as soon as the fourth length byte shows a continuation bit.
        let mut buf = BytesMut::from(&b"\x30\xFF\xFF\xFF\xFF"[..]);
        assert_eq!(
            Packet::decode(&mut buf, Protocol::V5, u32::MAX),
            Err(DecodeError::MalformedVariableInteger)
        );
        let mut buf = BytesMut::from(&b"\x30\xFF\xFF"[..]);
        assert_eq!(Packet::decode(&mut buf, Protocol::V5, u32::MAX), Ok(None));
    }

    #[test]
    fn payload_is_not_copied() {
        let bytes = encode(&sample_publish(), Protocol::V5);
        let mut buf = BytesMut::from(&bytes[..]);
        let start = buf.as_ptr() as usize;
        let Some(Packet::Publish(publish)) = Packet::decode(&mut buf, Protocol::V5, 1024).unwrap()
        else {
            panic!("not a PUBLISH");
        };
        let payload_at = publish.payload.as_ptr() as usize;
        assert_eq!(payload_at - start, bytes.len() - 5);
        let topic_at = publish.topic.as_bytes().as_ptr() as usize;
        assert_eq!(topic_at - start, 4);
    }

    #[test]
    fn kind_names() {
        assert_eq!(sample_publish().kind(), "PUBLISH");
        assert_eq!(
            Packet::PubRel(PubAckBody::new(1)).kind(),
            AckKind::PubRel.name()
        );
    }

    #[test]
    fn every_error_maps_to_a_reason_code() {
        assert_eq!(
            DecodeError::PacketTooLarge { size: 2, max: 1 }.reason_code(),
            ReasonCode::PACKET_TOO_LARGE
        );
        assert_eq!(
            DecodeError::UnsupportedProtocolVersion(3).reason_code(),
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
        );
        assert_eq!(
            DecodeError::NoTopicFilter.reason_code(),
            ReasonCode::PROTOCOL_ERROR
        );
        assert_eq!(
            DecodeError::InvalidUtf8.reason_code(),
            ReasonCode::MALFORMED_PACKET
        );
    }
}
