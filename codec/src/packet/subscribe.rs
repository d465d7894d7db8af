//! SUBSCRIBE (MQTT 3.1.1 §3.8, MQTT 5.0 §3.8).

use bytestring::ByteString;

use crate::{QoS, RetainHandling, UserProperties};

/// A request for one or more subscriptions. Filters are not validated here beyond UTF-8:
/// an invalid filter is refused per filter in SUBACK, not by closing the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet Identifier.
    pub packet_id: u16,
    /// Filters with their options, in order; at least one [MQTT-3.8.3-3].
    pub filters: Vec<(ByteString, SubscriptionOptions)>,
    /// v5 properties.
    pub properties: SubscribeProperties,
}

/// Subscription options byte (MQTT 5.0 §3.8.3.1); v3.1.1 only has the QoS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// No Local.
    pub no_local: bool,
    /// Retain As Published.
    pub retain_as_published: bool,
    /// Retain Handling.
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// Options with the given QoS and every v5 option at its default.
    pub fn qos(qos: QoS) -> Self {
        SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::SendAtSubscribe,
        }
    }
}

/// SUBSCRIBE properties (MQTT 5.0 §3.8.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeProperties {
    /// 0x0B Subscription Identifier (1..=268,435,455).
    pub subscription_identifier: Option<u32>,
    /// 0x26 User Property.
    pub user_properties: UserProperties,
}
