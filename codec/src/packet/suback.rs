//! SUBACK (MQTT 3.1.1 §3.9, MQTT 5.0 §3.9).

use crate::{AckProperties, ReasonCode};

/// One reason code per filter of the SUBSCRIBE, in order. On v3.1.1 every failure code is
/// written as 0x80.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubAck {
    /// Packet Identifier of the SUBSCRIBE.
    pub packet_id: u16,
    /// Granted QoS (0x00-0x02) or a failure code, per filter.
    pub reason_codes: Vec<ReasonCode>,
    /// v5 properties.
    pub properties: AckProperties,
}
