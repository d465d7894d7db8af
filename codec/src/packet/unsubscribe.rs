//! UNSUBSCRIBE (MQTT 3.1.1 §3.10, MQTT 5.0 §3.10).

use bytestring::ByteString;

use crate::UserProperties;

/// A request to remove subscriptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet Identifier.
    pub packet_id: u16,
    /// Filters, at least one [MQTT-3.10.3-2].
    pub filters: Vec<ByteString>,
    /// 0x26 User Property (v5).
    pub user_properties: UserProperties,
}
