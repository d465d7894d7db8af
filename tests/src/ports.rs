//! Free loopback ports for brokers started as separate processes (they bind the port
//! themselves, so it cannot be port 0).
//!
//! The port comes from below the kernel's ephemeral range
//! (`/proc/sys/net/ipv4/ip_local_port_range`, 32768-60999 by default), not from
//! binding port 0: a port from that range can become the local end of some client's
//! `connect` between our check and the broker's bind, and a harness that polls
//! `connect` to the port until the broker listens can even connect to itself (TCP
//! simultaneous open, when the kernel picks that same port as the client's end), after
//! which the broker cannot bind it and exits. CI saw that once: the plugin benchmark's
//! start-time loop polls every millisecond (bench/src/plugins.rs `start_once`).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The lowest port handed out: under it sit the services of this machine (MQTT 1883,
/// MySQL 3306, PostgreSQL 5432, ...); a port in use anywhere is skipped anyway.
const LOWEST: u16 = 20_000;

/// A loopback address with a port free right now, below the ephemeral range.
pub fn free_loopback_addr() -> SocketAddr {
    SocketAddr::from((
        Ipv4Addr::LOCALHOST,
        free_loopback_port().expect("a free loopback port"),
    ))
}

/// A loopback port free right now, below the ephemeral range; an error when every port
/// between [`LOWEST`] and that range is taken.
pub fn free_loopback_port() -> std::io::Result<u16> {
    // Where each process starts differs (its id and the clock), so test processes run
    // side by side by nextest do not offer each other the same ports; within a process
    // the counter never offers one twice.
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let ephemeral = ephemeral_low();
    let span = u32::from(ephemeral.saturating_sub(LOWEST).max(1));
    let _ = NEXT.compare_exchange(
        u32::MAX,
        seed() % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let port = LOWEST + (NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free loopback port in {LOWEST}..{ephemeral}"),
    ))
}

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .filter(|&low| low > LOWEST)
        .unwrap_or(32_768)
}

fn seed() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(nanos)
}
