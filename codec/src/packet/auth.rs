//! AUTH (MQTT 5.0 §3.15): enhanced authentication exchanges. v5 only.

use bytes::Bytes;
use bytestring::ByteString;

use crate::{ReasonCode, UserProperties};

/// An enhanced-authentication step. Remaining length 0 means Success with no properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    /// 0x00 Success, 0x18 Continue Authentication or 0x19 Re-authenticate.
    pub reason_code: ReasonCode,
    /// AUTH properties.
    pub properties: AuthProperties,
}

/// AUTH properties (MQTT 5.0 §3.15.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthProperties {
    /// 0x15 Authentication Method.
    pub authentication_method: Option<ByteString>,
    /// 0x16 Authentication Data.
    pub authentication_data: Option<Bytes>,
    /// 0x1F Reason String.
    pub reason_string: Option<ByteString>,
    /// 0x26 User Property.
    pub user_properties: UserProperties,
}
