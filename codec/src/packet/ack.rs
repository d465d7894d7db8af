//! PUBACK, PUBREC, PUBREL, PUBCOMP (MQTT 5.0 §3.4-3.7): the same shape, four packet types.

use bytestring::ByteString;

use crate::{ReasonCode, UserProperties};

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

impl PubAckBody {
    /// A successful acknowledgement of `packet_id` with no properties.
    pub fn new(packet_id: u16) -> Self {
        PubAckBody { packet_id, ..Default::default() }
    }
}
