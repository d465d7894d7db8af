//! DISCONNECT (MQTT 3.1.1 §3.14, MQTT 5.0 §3.14).

use bytestring::ByteString;

use crate::{ReasonCode, UserProperties};

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
