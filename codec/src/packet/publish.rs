//! PUBLISH (MQTT 3.1.1 §3.3, MQTT 5.0 §3.3).

use bytes::Bytes;
use bytestring::ByteString;

use crate::{QoS, UserProperties};

/// An application message. Cloning is cheap: topic, payload and strings are reference
/// counted, so one decoded PUBLISH is shared by every subscriber it is routed to.
#[derive(Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP flag.
    pub dup: bool,
    /// QoS.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic Name; empty when a v5 Topic Alias stands in for it.
    pub topic: ByteString,
    /// Packet Identifier; 0 for QoS 0 (not written then).
    pub packet_id: u16,
    /// Payload.
    pub payload: Bytes,
    /// v5 properties.
    pub properties: PublishProperties,
}

impl std::fmt::Debug for Publish {
    // Payloads are redacted: they may hold anything, and logs must not.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publish")
            .field("dup", &self.dup)
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("topic", &self.topic)
            .field("packet_id", &self.packet_id)
            .field("payload_len", &self.payload.len())
            .field("properties", &self.properties)
            .finish()
    }
}

/// PUBLISH properties (MQTT 5.0 §3.3.2.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishProperties {
    /// 0x01 Payload Format Indicator.
    pub payload_format_indicator: Option<u8>,
    /// 0x02 Message Expiry Interval, seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x23 Topic Alias.
    pub topic_alias: Option<u16>,
    /// 0x08 Response Topic.
    pub response_topic: Option<ByteString>,
    /// 0x09 Correlation Data.
    pub correlation_data: Option<Bytes>,
    /// 0x26 User Property.
    pub user_properties: UserProperties,
    /// 0x0B Subscription Identifier (server to client only; may repeat).
    pub subscription_identifiers: Vec<u32>,
    /// 0x03 Content Type.
    pub content_type: Option<ByteString>,
}
