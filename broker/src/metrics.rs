//! Broker-wide counters, published under `$SYS/broker/...`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters updated with relaxed atomics on the hot path; read by the `$SYS` publisher.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Clients connected now.
    pub clients_connected: AtomicU64,
    /// PUBLISH packets received from clients.
    pub messages_received: AtomicU64,
    /// PUBLISH packets sent to clients.
    pub messages_sent: AtomicU64,
    /// Bytes read from sockets.
    pub bytes_received: AtomicU64,
    /// Bytes written to sockets.
    pub bytes_sent: AtomicU64,
    /// Messages dropped because a session's queue was full.
    pub messages_dropped_queue_full: AtomicU64,
    /// Retained messages on a new topic not retained because the retained store is at
    /// `max_retained_messages` (the message itself is still routed).
    pub retained_refused_full: AtomicU64,
    /// Messages for a share group none of whose members could take them (the
    /// publisher was the only one, or every member was offline at QoS 0).
    pub messages_dropped_no_share_member: AtomicU64,
    /// Messages for persistent sessions not taken because the durable store is full.
    pub messages_dropped_store_full: AtomicU64,
    /// QoS 0 messages not queued for offline sessions.
    pub messages_dropped_offline_qos0: AtomicU64,
    /// Messages that expired before they could be sent.
    pub messages_expired: AtomicU64,
    /// Messages not sent because they exceed the client's Maximum Packet Size.
    pub messages_dropped_too_large: AtomicU64,
    /// Deliveries through a wildcard subscription that the subscriber may not read
    /// (the `deliver` hook denied them): dropped for that subscriber, never sent.
    pub messages_dropped_not_authorized: AtomicU64,
    /// Times a publisher was held back (its socket not read) by a congested queue.
    pub publishers_held: AtomicU64,
    /// Times a subscriber was found slow: it did not drain while a publisher waited.
    pub subscribers_slow: AtomicU64,
    /// Connections closed for a protocol violation or malformed packet.
    pub protocol_errors: AtomicU64,
    /// MQTT 5 enhanced authentication exchanges at CONNECT (AUTH before CONNACK).
    pub enhanced_auth_connect: EnhancedAuthCounters,
    /// Re-authentications (AUTH 0x19 after CONNACK).
    pub enhanced_auth_reauth: EnhancedAuthCounters,
}

/// How the enhanced authentication exchanges of one phase went (`enhanced_auth.rs`).
///
/// `started` minus the three ends is the exchanges under way, and those the client
/// abandoned by closing its connection: an operator sees clients that stall (timed out)
/// apart from clients the plugin refused.
#[derive(Debug, Default)]
pub struct EnhancedAuthCounters {
    /// Exchanges begun: a CONNECT that names an Authentication Method, or an AUTH 0x19.
    pub started: AtomicU64,
    /// Exchanges that authenticated the client (CONNACK 0x00, or AUTH 0x00).
    pub succeeded: AtomicU64,
    /// Exchanges refused: by the plugin, a limit, or a broken step (CONNACK or
    /// DISCONNECT with a reason code of 0x80 or above).
    pub refused: AtomicU64,
    /// Exchanges the client did not finish in time (`connect_timeout_ms` at CONNECT,
    /// `reauth_timeout_ms` for a re-authentication).
    pub timed_out: AtomicU64,
}

impl Metrics {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// Subtracts `n` from `counter` (a gauge).
    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Relaxed);
    }

    /// Reads `counter`.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}
