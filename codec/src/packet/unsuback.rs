//! UNSUBACK (MQTT 3.1.1 §3.11, MQTT 5.0 §3.11).

use crate::{AckProperties, ReasonCode};

/// The answer to UNSUBSCRIBE. v3.1.1 has no payload: the reason codes are not written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet Identifier of the UNSUBSCRIBE.
    pub packet_id: u16,
    /// One per filter (v5): Success or No Subscription Existed or a failure.
    pub reason_codes: Vec<ReasonCode>,
    /// v5 properties.
    pub properties: AckProperties,
}
