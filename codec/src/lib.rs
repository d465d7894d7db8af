//! The MQTT 3.1.1 and 5.0 codec of Wasmq, shared by the broker, its tests and its
//! benchmarks, so that all three speak exactly the same bytes.
//!
//! - [`types`]: protocol level, QoS, reason codes.
//! - [`packet`]: one module per control packet, each with its `read` and `write` and
//!   byte-literal tests beside them; [`Packet`] ties them together.
//! - [`properties`]: the v5 property reader/writer used by every packet, and the property
//!   identifiers.
//! - `wire` (private): the primitive fields every packet is made of: integers, variable
//!   byte integers, UTF-8 strings, binary data.
//! - [`error`]: every way a packet can be malformed, each naming the normative statement
//!   it breaks and mapping to the reason code the peer receives.
//!
//! Decoding is incremental: [`Packet::decode`] returns `Ok(None)` until a whole packet is
//! buffered, and refuses a packet larger than the allowed maximum as soon as its remaining
//! length is known, before its body arrives. A whole packet is then split off the read
//! buffer and frozen, and the packet's `read` slices its topic, strings and payload out of
//! that one frame: decoding copies no payload.
//!
//! Encoding is the reverse: [`Packet::encode`] calls the packet's `write`, which computes
//! the remaining length first (property lengths included, without allocating), reserves
//! exactly the packet's size, then writes the fixed header and the fields.
//! [`Packet::encoded_len`] gives that size without encoding.

#![warn(missing_docs)]

pub mod error;
pub mod packet;
pub mod properties;
pub mod types;
mod wire;

pub use error::DecodeError;
pub use packet::{
    Packet,
    ack::{AckKind, AckProperties, PubAckBody},
    auth::{Auth, AuthProperties},
    connack::{ConnAck, ConnAckProperties},
    connect::{Connect, ConnectProperties, LastWill, WillProperties},
    disconnect::{Disconnect, DisconnectProperties},
    publish::{Publish, PublishProperties},
    suback::SubAck,
    subscribe::{Subscribe, SubscribeProperties, SubscriptionOptions},
    unsuback::UnsubAck,
    unsubscribe::Unsubscribe,
};
pub use types::{Protocol, QoS, ReasonCode, RetainHandling, UserProperties};
