//! What a CONNECT and the broker's limits settle for the life of the connection: the
//! keep-alive, the session's expiry, the windows and sizes each side may use. Worked
//! out once, by a pure function, before the session is attached; the handshake answers
//! CONNACK from it and the serve loop reads it.

use std::time::Duration;

use wasmq_codec::{Connect, Protocol};

use crate::config::Limits;

/// The settings of one connection, as negotiated at CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Negotiated {
    /// The Keep Alive in force, seconds (0: off).
    pub(super) keep_alive: u16,
    /// The Server Keep Alive to tell a v5 client, when the broker changed its value.
    pub(super) server_keep_alive: Option<u16>,
    /// 1.5 x Keep Alive (MQTT 5.0 [MQTT-3.1.2-22]); `None` when keep-alive is off.
    pub(super) keep_alive_timeout: Option<Duration>,
    /// The Session Expiry Interval the client asked for (v3.1.1: 0 with a clean
    /// session, "never" without).
    pub(super) requested_expiry: u32,
    /// The one granted: the request within `session_expiry_max_secs`.
    pub(super) expiry: u32,
    /// min(max_inflight, the client's Receive Maximum): QoS 1 and 2 messages in flight
    /// to the client at once.
    pub(super) send_window: usize,
    /// The client's Maximum Packet Size: larger messages are not sent to it.
    pub(super) client_max_packet_size: usize,
    /// Topic aliases the broker may use towards the client (within its own maximum).
    pub(super) client_topic_alias_max: u16,
    /// Whether reason strings may be sent (Request Problem Information).
    pub(super) problem_information: bool,
}

/// A v3.1.1 client's Keep Alive above `keep_alive_max_secs`: v3.1.1 cannot be told
/// another value, so the CONNECT is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct KeepAliveTooLong;

impl Negotiated {
    /// Settles the connection's settings from its CONNECT.
    pub(super) fn of(connect: &Connect, limits: &Limits) -> Result<Negotiated, KeepAliveTooLong> {
        let v5 = connect.protocol == Protocol::V5;
        let max_keep_alive = limits.keep_alive_max_secs;
        let mut keep_alive = connect.keep_alive;
        let mut server_keep_alive = None;
        // Off (0) is above any maximum but "none" (u16::MAX).
        if keep_alive > max_keep_alive || (keep_alive == 0 && max_keep_alive < u16::MAX) {
            if v5 {
                keep_alive = max_keep_alive;
                server_keep_alive = Some(max_keep_alive);
            } else if keep_alive > max_keep_alive {
                return Err(KeepAliveTooLong);
            }
        }
        let requested_expiry = match (v5, connect.clean_start) {
            (true, _) => connect.properties.session_expiry_interval.unwrap_or(0),
            (false, true) => 0,
            (false, false) => u32::MAX,
        };
        let props = &connect.properties;
        Ok(Negotiated {
            keep_alive,
            server_keep_alive,
            keep_alive_timeout: (keep_alive > 0)
                .then(|| Duration::from_millis(u64::from(keep_alive) * 1500)),
            requested_expiry,
            expiry: requested_expiry.min(limits.session_expiry_max_secs),
            send_window: usize::from(
                limits
                    .max_inflight
                    .min(props.receive_maximum.unwrap_or(u16::MAX)),
            ),
            client_max_packet_size: props.maximum_packet_size.map_or(usize::MAX, |m| m as usize),
            // The broker's own maximum bounds the aliases it keeps for a client too.
            client_topic_alias_max: if v5 {
                props
                    .topic_alias_maximum
                    .unwrap_or(0)
                    .min(limits.topic_alias_maximum)
            } else {
                0
            },
            problem_information: props.request_problem_information.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(protocol: Protocol, keep_alive: u16) -> Connect {
        Connect {
            protocol,
            clean_start: true,
            keep_alive,
            client_id: "c".into(),
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        }
    }

    fn limits(keep_alive_max_secs: u16) -> Limits {
        Limits {
            keep_alive_max_secs,
            ..Limits::default()
        }
    }

    #[test]
    fn a_keep_alive_within_the_maximum_is_kept_and_timed_at_one_and_a_half() {
        let n = Negotiated::of(&connect(Protocol::V5, 60), &limits(120)).unwrap();
        assert_eq!(n.keep_alive, 60);
        assert_eq!(n.server_keep_alive, None);
        assert_eq!(n.keep_alive_timeout, Some(Duration::from_secs(90)));
    }

    #[test]
    fn v5_keep_alive_above_the_maximum_or_off_is_lowered_and_told() {
        for asked in [0, 300] {
            let n = Negotiated::of(&connect(Protocol::V5, asked), &limits(120)).unwrap();
            assert_eq!(
                (n.keep_alive, n.server_keep_alive),
                (120, Some(120)),
                "{asked}"
            );
        }
        // With no maximum, off stays off.
        let n = Negotiated::of(&connect(Protocol::V5, 0), &limits(u16::MAX)).unwrap();
        assert_eq!((n.keep_alive, n.keep_alive_timeout), (0, None));
    }

    #[test]
    fn v311_keep_alive_above_the_maximum_is_refused_and_off_is_allowed() {
        assert_eq!(
            Negotiated::of(&connect(Protocol::V311, 300), &limits(120)),
            Err(KeepAliveTooLong)
        );
        let n = Negotiated::of(&connect(Protocol::V311, 0), &limits(120)).unwrap();
        assert_eq!((n.keep_alive, n.server_keep_alive), (0, None));
    }

    #[test]
    fn the_expiry_asked_for_is_granted_within_the_maximum() {
        let mut c = connect(Protocol::V5, 60);
        c.properties.session_expiry_interval = Some(u32::MAX);
        let l = Limits {
            session_expiry_max_secs: 3600,
            ..Limits::default()
        };
        let n = Negotiated::of(&c, &l).unwrap();
        assert_eq!((n.requested_expiry, n.expiry), (u32::MAX, 3600));
        // v3.1.1: a clean session ends with the connection, another never expires.
        let mut c = connect(Protocol::V311, 60);
        assert_eq!(Negotiated::of(&c, &l).unwrap().requested_expiry, 0);
        c.clean_start = false;
        assert_eq!(Negotiated::of(&c, &l).unwrap().requested_expiry, u32::MAX);
    }

    #[test]
    fn windows_and_sizes_are_the_smaller_of_both_sides() {
        let mut c = connect(Protocol::V5, 60);
        c.properties.receive_maximum = Some(10);
        c.properties.maximum_packet_size = Some(2048);
        c.properties.topic_alias_maximum = Some(u16::MAX);
        c.properties.request_problem_information = Some(false);
        let l = Limits {
            max_inflight: 128,
            topic_alias_maximum: 32,
            ..Limits::default()
        };
        let n = Negotiated::of(&c, &l).unwrap();
        assert_eq!(n.send_window, 10);
        assert_eq!(n.client_max_packet_size, 2048);
        assert_eq!(n.client_topic_alias_max, 32);
        assert!(!n.problem_information);
        // v3.1.1 has no aliases and no Maximum Packet Size.
        let n = Negotiated::of(&connect(Protocol::V311, 60), &l).unwrap();
        assert_eq!(n.client_topic_alias_max, 0);
        assert_eq!(n.client_max_packet_size, usize::MAX);
        assert_eq!(n.send_window, 128);
    }
}
