//! The MQTT 3.1.1 and 5.0 codec of Wasmq, shared by the broker, its tests and its
//! benchmarks, so that all three speak exactly the same bytes.
//!
//! - [`types`]: protocol level, QoS, reason codes.
//! - [`packet`]: one module per control packet, each with its `read` and `write` and
//!   byte-literal tests beside them; [`Packet`] ties them together.
//! - [`properties`]: the v5 property reader/writer used by every packet.
//! - [`error`]: every way a packet can be malformed, each naming the normative statement
//!   it breaks and mapping to the reason code the peer receives.
//!
//! Decoding is incremental: [`Packet::decode`] returns `Ok(None)` until a whole packet is
//! buffered, and refuses a packet larger than the allowed maximum as soon as its remaining
//! length is known, before its body arrives.

pub mod error;
pub mod packet;
pub mod properties;
pub mod types;
mod wire;

pub use error::DecodeError;
pub use packet::{
    Packet,
    ack::{AckProperties, PubAckBody},
    auth::{Auth, AuthProperties},
    connack::{ConnAck, ConnAckProperties},
    connect::{Connect, ConnectProperties, LastWill, WillProperties},
    disconnect::{Disconnect, DisconnectProperties},
    publish::{Publish, PublishProperties},
    suback::SubAck,
    subscribe::{SubscribeProperties, Subscribe, SubscriptionOptions},
    unsuback::UnsubAck,
    unsubscribe::Unsubscribe,
};
pub use types::{Protocol, QoS, ReasonCode, RetainHandling, UserProperties};
