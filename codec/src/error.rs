//! Decoding errors. Each names the normative statement it breaks and maps to the reason
//! code sent to the peer (v5 DISCONNECT, or CONNACK for a bad CONNECT) before closing.

use thiserror::Error;

use crate::ReasonCode;

/// Why bytes are not a valid packet. Every variant closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The packet is larger than the receiver's Maximum Packet Size.
    #[error("[MQTT-3.2.2-15] packet of {size} bytes exceeds the maximum packet size {max}")]
    PacketTooLarge {
        /// Total size announced by the fixed header.
        size: u64,
        /// The limit.
        max: u32,
    },
    /// A Variable Byte Integer longer than four bytes.
    #[error("[MQTT-1.5.5-1] malformed variable byte integer")]
    MalformedVariableInteger,
    /// Packet type 0, or 15 on v3.1.1.
    #[error("[MQTT-2.1.2] reserved packet type {0}")]
    ReservedPacketType(u8),
    /// Fixed header flags that must have fixed values.
    #[error("[MQTT-2.2.2-2] invalid fixed header flags {flags:#06b} for packet type {packet_type}")]
    InvalidFlags {
        /// Packet type.
        packet_type: u8,
        /// The low nibble received.
        flags: u8,
    },
    /// The body ended before a field did.
    #[error("[MQTT-1.5] packet body ends in the middle of a field")]
    UnexpectedEnd,
    /// Bytes left over after the last field.
    #[error("[MQTT-2.1.4] {0} unexpected bytes after the last field")]
    TrailingBytes(usize),
    /// A string that is not well-formed UTF-8, or holds U+0000.
    #[error("[MQTT-1.5.4-1] string is not well-formed UTF-8 or contains U+0000")]
    InvalidUtf8,
    /// QoS bits set to 3.
    #[error("[MQTT-3.3.1-4] QoS 3 is not a QoS")]
    InvalidQoS,
    /// DUP set on a QoS 0 PUBLISH.
    #[error("[MQTT-3.3.1-2] DUP flag set on a QoS 0 PUBLISH")]
    DupOnQoS0,
    /// A packet identifier of 0.
    #[error("[MQTT-2.2.1-3] packet identifier 0")]
    ZeroPacketId,
    /// CONNECT whose protocol name is neither "MQTT" nor "MQIsdp".
    #[error("[MQTT-3.1.2-1] unknown protocol name")]
    InvalidProtocolName,
    /// A protocol level this broker does not speak (3 = MQTT 3.1, or unknown).
    #[error("[MQTT-3.1.2-2] unsupported protocol level {0}")]
    UnsupportedProtocolVersion(u8),
    /// Reserved CONNACK Connect Acknowledge Flags (bits 7-1) set.
    #[error("[MQTT-3.2.2-1] reserved CONNACK flags set in {0:#010b}")]
    ConnAckReservedFlags(u8),
    /// Reserved CONNECT flag set.
    #[error("[MQTT-3.1.2-3] reserved CONNECT flag set")]
    ConnectReservedFlag,
    /// Will QoS or Will Retain set without the Will Flag, or Will QoS 3.
    #[error("[MQTT-3.1.2-11] invalid will flags")]
    InvalidWillFlags,
    /// Password flag set without the User Name flag (v3.1.1).
    #[error("[MQTT-3.1.2-22] password without user name")]
    PasswordWithoutUsername,
    /// A property identifier unknown, or not allowed in this packet.
    #[error("[MQTT-2.2.2.2] property {id:#04x} is not allowed in {packet}")]
    InvalidProperty {
        /// Property identifier.
        id: u32,
        /// Packet type name.
        packet: &'static str,
    },
    /// A property that may appear once appeared twice.
    #[error("[MQTT-2.2.2.2] property {0:#04x} included more than once")]
    DuplicateProperty(u32),
    /// A property with a value the specification forbids (e.g. Receive Maximum 0).
    #[error("[MQTT-2.2.2.2] invalid value for property {0:#04x}")]
    InvalidPropertyValue(u32),
    /// The declared property length disagrees with the properties.
    #[error("[MQTT-2.2.2.1] property length does not match the properties")]
    PropertyLength,
    /// SUBSCRIBE or UNSUBSCRIBE with no topic filter.
    #[error("[MQTT-3.8.3-3] SUBSCRIBE or UNSUBSCRIBE without a topic filter")]
    NoTopicFilter,
    /// Reserved bits set in subscription options, or Retain Handling 3.
    #[error("[MQTT-3.8.3-5] invalid subscription options")]
    InvalidSubscriptionOptions,
    /// A reason code not defined for this packet.
    #[error("[MQTT-2.4] reason code {code:#04x} is not valid in {packet}")]
    InvalidReasonCode {
        /// The code.
        code: u8,
        /// Packet type name.
        packet: &'static str,
    },
    /// A v5-only packet (AUTH) on a v3.1.1 connection.
    #[error("[MQTT-2.1.2] packet type {0} does not exist in MQTT 3.1.1")]
    NotInProtocol(u8),
}

impl DecodeError {
    /// The reason code the peer receives before the connection is closed.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocolVersion(_) | DecodeError::InvalidProtocolName => {
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
            }
            // A Topic Alias of 0 [MQTT-3.3.2-8] is an invalid alias, as one above the
            // maximum is (what Mosquitto and EMQX answer too), not a generic error.
            DecodeError::InvalidPropertyValue(id)
                if *id == u32::from(crate::properties::TOPIC_ALIAS) =>
            {
                ReasonCode::TOPIC_ALIAS_INVALID
            }
            DecodeError::DuplicateProperty(_)
            | DecodeError::InvalidPropertyValue(_)
            | DecodeError::NoTopicFilter => ReasonCode::PROTOCOL_ERROR,
            _ => ReasonCode::MALFORMED_PACKET,
        }
    }
}
