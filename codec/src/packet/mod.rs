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

use bytes::BytesMut;

use crate::{
    Auth, ConnAck, Connect, DecodeError, Disconnect, Protocol, PubAckBody, Publish, SubAck,
    Subscribe, UnsubAck, Unsubscribe,
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
        todo!("{buf:?} {protocol:?} {max_packet_size}")
    }

    /// Appends the encoding of this packet for `protocol` to `buf`.
    pub fn encode(&self, protocol: Protocol, buf: &mut BytesMut) {
        todo!("{protocol:?} {buf:?}")
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
