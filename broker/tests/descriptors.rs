//! Out of file descriptors: the real `wasmq` binary started under a small hard limit
//! raises its soft limit to it and says so, tells the operator when it cannot accept a
//! connection for lack of descriptors, keeps serving the clients it has, and accepts
//! again once descriptors are free.

use std::process::Stdio;
use std::time::Duration;

use wasmq_codec::{Packet, Protocol};
use wasmq_tests::{RawClient, connect_packet};

const WASMQ: &str = env!("CARGO_BIN_EXE_wasmq");
const WAIT: Duration = Duration::from_secs(30);

/// The hard limit the broker runs under: its own descriptors (listener, epoll, the
/// SQLite database and the plugin cache of the default configuration, the log) take
/// some, the rest is for clients.
const LIMIT: usize = 64;

/// More clients than the limit can hold.
const CLIENTS: usize = 100;

#[tokio::test]
async fn out_of_descriptors_is_reported_and_the_broker_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let addr = wasmq_tests::free_loopback_addr();
    let log_path = dir.path().join("wasmq.log");
    let log = std::fs::File::create(&log_path).unwrap();
    // `ulimit` in a shell, then exec: the broker starts with a soft limit of 16 under a
    // hard limit of LIMIT.
    let mut child = tokio::process::Command::new("sh")
        .current_dir(dir.path())
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 16 && ulimit -Hn {LIMIT} && exec \"$0\" --listen {addr}"
        ))
        .arg(WASMQ)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let first = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(client) = RawClient::open(addr, Protocol::V5).await {
                return client;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("wasmq listens");
    drop(first);
    let started = read_log();
    assert!(
        started.contains("file descriptor limit") && started.contains(&format!("limit={LIMIT}")),
        "the broker raises its soft limit (16) to the hard one and says so:\n{started}"
    );

    // CLIENTS connections: the kernel completes every TCP handshake (the listen backlog),
    // but the broker can only accept as many as it has descriptors for.
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut client = RawClient::open(addr, Protocol::V5).await.unwrap();
        client
            .send(Packet::Connect(Box::new(connect_packet(
                Protocol::V5,
                &format!("fd-{i}"),
                true,
            ))))
            .await
            .unwrap();
        clients.push(client);
    }
    let mut connected = Vec::new();
    let mut waiting = Vec::new();
    for mut client in clients {
        match client.recv_within(Duration::from_millis(300)).await {
            Ok(Some(Packet::ConnAck(_))) => connected.push(client),
            _ => waiting.push(client),
        }
    }
    assert!(
        !connected.is_empty() && connected.len() < LIMIT,
        "some clients served, fewer than the limit: {} of {CLIENTS}",
        connected.len()
    );
    assert!(
        !waiting.is_empty(),
        "a limit of {LIMIT} descriptors cannot serve {CLIENTS} clients"
    );
    let full = read_log();
    assert!(
        full.contains("out of file descriptors"),
        "the operator is told why connections wait:\n{full}"
    );

    // The clients it has are still served: a ping round trip on each.
    for client in &mut connected {
        client.send(Packet::PingReq).await.unwrap();
        assert!(matches!(client.recv().await.unwrap(), Packet::PingResp));
    }

    // Free the descriptors: the waiting connections are accepted (in the order they
    // came) and answered.
    let served = connected.len();
    drop(connected);
    for (i, client) in waiting.iter_mut().take(served).enumerate() {
        let answer = client.recv_within(WAIT).await.unwrap();
        assert!(
            matches!(answer, Some(Packet::ConnAck(_))),
            "waiting client {i} accepted after {served} clients left: {answer:?}"
        );
    }
    // Said once per episode (not at each of the retries, 20 a second), and said when an
    // episode ends; the accepts above may have run out again (more clients wait than left).
    let recovered = read_log();
    let out = recovered.matches("out of file descriptors").count();
    let again = recovered.matches("accepting connections again").count();
    assert!(
        again >= 1 && (out == again || out == again + 1),
        "{out} 'out of file descriptors' lines for {again} recoveries:\n{recovered}"
    );
    child.kill().await.unwrap();
}
