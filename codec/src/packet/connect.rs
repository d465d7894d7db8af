//! CONNECT (MQTT 3.1.1 §3.1, MQTT 5.0 §3.1).

use bytes::Bytes;
use bytestring::ByteString;

use crate::{Protocol, QoS, UserProperties};

/// The first packet a client sends. Decoding it determines the connection's protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol level 4 (3.1.1) or 5 (5.0).
    pub protocol: Protocol,
    /// Clean Session (3.1.1) / Clean Start (5.0).
    pub clean_start: bool,
    /// Keep Alive in seconds; 0 switches keep-alive off.
    pub keep_alive: u16,
    /// May be empty; the broker decides what an empty id means.
    pub client_id: ByteString,
    /// The Will Message, when the Will Flag is set.
    pub will: Option<LastWill>,
    /// User Name, when its flag is set.
    pub username: Option<ByteString>,
    /// Password, when its flag is set. Redacted in `Debug` output by the broker's logs.
    pub password: Option<Bytes>,
    /// v5 properties (all `None`/empty for 3.1.1).
    pub properties: ConnectProperties,
}

/// CONNECT properties (MQTT 5.0 §3.1.2.11).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectProperties {
    /// 0x11 Session Expiry Interval, seconds.
    pub session_expiry_interval: Option<u32>,
    /// 0x21 Receive Maximum: QoS 1/2 PUBLISHes the client accepts in flight.
    pub receive_maximum: Option<u16>,
    /// 0x27 Maximum Packet Size the client accepts.
    pub maximum_packet_size: Option<u32>,
    /// 0x22 Topic Alias Maximum the client accepts from the server.
    pub topic_alias_maximum: Option<u16>,
    /// 0x19 Request Response Information.
    pub request_response_information: Option<bool>,
    /// 0x17 Request Problem Information.
    pub request_problem_information: Option<bool>,
    /// 0x26 User Property.
    pub user_properties: UserProperties,
    /// 0x15 Authentication Method.
    pub authentication_method: Option<ByteString>,
    /// 0x16 Authentication Data.
    pub authentication_data: Option<Bytes>,
}

/// The Will Message carried in CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    /// Will Topic.
    pub topic: ByteString,
    /// Will Payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will Retain.
    pub retain: bool,
    /// Will properties (v5).
    pub properties: WillProperties,
}

/// Will properties (MQTT 5.0 §3.1.3.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WillProperties {
    /// 0x18 Will Delay Interval, seconds.
    pub will_delay_interval: Option<u32>,
    /// 0x01 Payload Format Indicator.
    pub payload_format_indicator: Option<u8>,
    /// 0x02 Message Expiry Interval, seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x03 Content Type.
    pub content_type: Option<ByteString>,
    /// 0x08 Response Topic.
    pub response_topic: Option<ByteString>,
    /// 0x09 Correlation Data.
    pub correlation_data: Option<Bytes>,
    /// 0x26 User Property.
    pub user_properties: UserProperties,
}
