//! The durable store on the real binary: kill -9 in the middle of traffic, restart in the
//! same folder, and what was acknowledged is there (`docs/durability.md`).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::net::TcpStream;
use wasmq_codec::{ConnectProperties, LastWill, Packet, Protocol, PubAckBody, QoS, WillProperties};
use wasmq_tests::{RawClient, connect_packet, free_loopback_addr, publish_packet};

/// The binary, run in `dir` (its store goes to `dir/.wasmq/store`), its log in
/// `dir/wasmq.log`; `kill` is kill -9.
struct Broker {
    addr: SocketAddr,
    child: tokio::process::Child,
}

impl Broker {
    async fn start(dir: &Path, fsync: &str) -> Broker {
        let addr = free_loopback_addr();
        std::fs::write(
            dir.join("wasmq.toml"),
            format!("[storage]\nfsync = \"{fsync}\"\n[sys]\ninterval_secs = 0\n"),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("wasmq.log"))
            .unwrap();
        let exe = std::env::var("WASMQ_UNDER_TEST")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_wasmq").to_string());
        let child = tokio::process::Command::new(exe)
            .current_dir(dir)
            .args(["--config", "wasmq.toml", "--listen", &addr.to_string()])
            .env("RUST_LOG", "warn,wasmq::store=info")
            .stdin(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("start wasmq");
        tokio::time::timeout(Duration::from_secs(60), async {
            while TcpStream::connect(addr).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("wasmq did not listen within 60 s");
        Broker { addr, child }
    }

    /// kill -9: no shutdown, no flush.
    async fn kill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

fn persistent(client_id: &str) -> wasmq_codec::Connect {
    let mut connect = connect_packet(Protocol::V5, client_id, false);
    connect.properties = ConnectProperties {
        session_expiry_interval: Some(3600),
        ..Default::default()
    };
    connect
}

async fn connect(addr: SocketAddr, connect: wasmq_codec::Connect) -> (RawClient, bool) {
    let (client, connack) = RawClient::connect(addr, connect).await.expect("connect");
    assert!(!connack.reason_code.is_error(), "{connack:?}");
    (client, connack.session_present)
}

/// Receives every PUBLISH until `wait` passes without one, acknowledging each (QoS 2
/// through PUBREC, PUBREL, PUBCOMP); returns (payload, qos, dup) in arrival order.
async fn drain(client: &mut RawClient, wait: Duration) -> Vec<(String, QoS, bool)> {
    let mut got = Vec::new();
    // Until nothing comes within `wait` (an error then) or the connection closes.
    while let Ok(Some(packet)) = client.recv_within(wait).await {
        match packet {
            Packet::Publish(p) => {
                got.push((String::from_utf8(p.payload.to_vec()).unwrap(), p.qos, p.dup));
                match p.qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => client
                        .send(Packet::PubAck(PubAckBody::new(p.packet_id)))
                        .await
                        .unwrap(),
                    QoS::ExactlyOnce => client
                        .send(Packet::PubRec(PubAckBody::new(p.packet_id)))
                        .await
                        .unwrap(),
                }
            }
            Packet::PubRel(rel) => client
                .send(Packet::PubComp(PubAckBody::new(rel.packet_id)))
                .await
                .unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

/// Publishes `count` messages at `qos` as fast as the broker takes them, kills the broker
/// once `kill_after` of them are acknowledged, and returns the payloads acknowledged
/// (PUBACK, or PUBREC for QoS 2) before the kill.
async fn publish_then_kill(
    broker: Broker,
    qos: QoS,
    count: u16,
    kill_after: usize,
) -> HashSet<String> {
    let (mut publisher, _) = connect(broker.addr, connect_packet(Protocol::V5, "pub", true)).await;
    let mut sent = HashMap::new();
    let mut acked = HashSet::new();
    let mut next = 1u16;
    // A window of 32 in flight: the kill lands among messages sent and not acknowledged.
    while acked.len() < kill_after {
        while next <= count && sent.len() - acked.len() < 32 {
            let payload = format!("{qos:?}-{next}");
            let publish = publish_packet("t/1", payload.as_bytes(), qos, false, next);
            publisher.send(Packet::Publish(publish)).await.unwrap();
            sent.insert(next, payload);
            next += 1;
        }
        match publisher.recv().await.expect("ack") {
            Packet::PubAck(ack) => {
                assert!(!ack.reason_code.is_error(), "{ack:?}");
                acked.insert(sent[&ack.packet_id].clone());
            }
            Packet::PubRec(rec) => {
                assert!(!rec.reason_code.is_error(), "{rec:?}");
                acked.insert(sent[&rec.packet_id].clone());
                let release = Packet::PubRel(PubAckBody::new(rec.packet_id));
                publisher.send(release).await.unwrap();
            }
            Packet::PubComp(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    broker.kill().await;
    acked
}

async fn kill_9_keeps_every_acknowledged_message(fsync: &str) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), fsync).await;
    let (mut subscriber, _) = connect(broker.addr, persistent("sub")).await;
    subscriber.subscribe_qos("t/#", QoS::ExactlyOnce).await;
    subscriber.drop_connection();
    // 300 acknowledged of each QoS (and at most 32 more sent): together under the
    // session's queue limit (1000), past which messages are dropped and counted.
    let acked_q1 = publish_then_kill(broker, QoS::AtLeastOnce, 2000, 300).await;

    let broker = Broker::start(dir.path(), fsync).await;
    let acked_q2 = publish_then_kill(broker, QoS::ExactlyOnce, 2000, 300).await;

    let broker = Broker::start(dir.path(), fsync).await;
    let (mut subscriber, present) = connect(broker.addr, persistent("sub")).await;
    assert!(present, "the persistent session is back after kill -9");
    let got = drain(&mut subscriber, Duration::from_secs(2)).await;
    let received: HashSet<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
    let lost: Vec<_> = acked_q1
        .iter()
        .chain(&acked_q2)
        .filter(|p| !received.contains(p.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // QoS 2: exactly once, duplicates of none.
    let mut seen = HashSet::new();
    for (payload, qos, _) in &got {
        if *qos == QoS::ExactlyOnce {
            assert!(seen.insert(payload), "{payload} delivered twice at QoS 2");
        }
    }
    broker.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_every_acknowledged_qos1_and_qos2_message_fsync_always() {
    kill_9_keeps_every_acknowledged_message("always").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_every_acknowledged_qos1_and_qos2_message_fsync_never() {
    kill_9_keeps_every_acknowledged_message("never").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_and_persistent_subscriptions_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), "interval").await;
    let (mut subscriber, _) = connect(broker.addr, persistent("keeps")).await;
    subscriber.subscribe_qos("news/#", QoS::AtLeastOnce).await;
    subscriber.drop_connection();
    let (mut publisher, _) = connect(broker.addr, connect_packet(Protocol::V5, "p", true)).await;
    for (id, topic) in [(1, "r/a"), (2, "r/b"), (3, "r/a")] {
        let payload = format!("{topic}-{id}");
        let publish = publish_packet(topic, payload.as_bytes(), QoS::AtLeastOnce, true, id);
        publisher.send(Packet::Publish(publish)).await.unwrap();
        assert!(matches!(publisher.recv().await.unwrap(), Packet::PubAck(_)));
    }
    broker.kill().await;

    let broker = Broker::start(dir.path(), "interval").await;
    let (mut reader, _) = connect(broker.addr, connect_packet(Protocol::V5, "r", true)).await;
    reader.subscribe_qos("r/#", QoS::AtLeastOnce).await;
    let mut retained: Vec<_> = drain(&mut reader, Duration::from_millis(500))
        .await
        .into_iter()
        .map(|(p, _, _)| p)
        .collect();
    retained.sort();
    assert_eq!(
        retained,
        ["r/a-3", "r/b-2"],
        "the newest retained message of each topic"
    );
    // The subscription of the offline session came back: a message published now waits
    // for it.
    let (mut publisher, _) = connect(broker.addr, connect_packet(Protocol::V5, "p", true)).await;
    let publish = publish_packet("news/1", b"after restart", QoS::AtLeastOnce, false, 1);
    publisher.send(Packet::Publish(publish)).await.unwrap();
    let Packet::PubAck(ack) = publisher.recv().await.unwrap() else {
        panic!("no PUBACK")
    };
    assert_eq!(ack.reason_code.0, 0, "a subscriber matched");
    let (mut subscriber, present) = connect(broker.addr, persistent("keeps")).await;
    assert!(present);
    let got = drain(&mut subscriber, Duration::from_millis(500)).await;
    assert_eq!(
        got,
        [("after restart".to_string(), QoS::AtLeastOnce, false)]
    );
    broker.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_will_fires_after_a_restart_when_the_session_did_not_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), "interval").await;
    let (mut watcher, _) = connect(broker.addr, persistent("watcher")).await;
    watcher.subscribe_qos("will/#", QoS::AtLeastOnce).await;
    watcher.drop_connection();
    let mut connect_w = persistent("mortal");
    connect_w.will = Some(LastWill {
        topic: "will/mortal".into(),
        payload: bytes::Bytes::from_static(b"mortal is gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties {
            will_delay_interval: Some(2),
            ..Default::default()
        },
    });
    let (mortal, _) = connect(broker.addr, connect_w).await;
    // Give the writer its moment: the will is written after CONNACK, not before.
    tokio::time::sleep(Duration::from_millis(200)).await;
    broker.kill().await;
    drop(mortal);

    let broker = Broker::start(dir.path(), "interval").await;
    let (mut watcher, present) = connect(broker.addr, persistent("watcher")).await;
    assert!(present);
    let got = drain(&mut watcher, Duration::from_secs(4)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "mortal is gone");
    broker.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_cut_short_starts_with_a_clear_log_line_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), "always").await;
    let (mut publisher, _) = connect(broker.addr, connect_packet(Protocol::V5, "p", true)).await;
    for id in 1..=20u16 {
        let topic = format!("keep/{id}");
        let publish = publish_packet(&topic, b"kept", QoS::AtLeastOnce, true, id);
        publisher.send(Packet::Publish(publish)).await.unwrap();
        assert!(matches!(publisher.recv().await.unwrap(), Packet::PubAck(_)));
    }
    broker.kill().await;
    // A torn last write: the journal's tail cut off, as a power loss leaves it.
    let journal = newest_journal(&dir.path().join(".wasmq/store")).expect("a journal file");
    let len = std::fs::metadata(&journal).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap();
    file.set_len(len - 40).unwrap();
    drop(file);

    let broker = Broker::start(dir.path(), "always").await;
    let log = std::fs::read_to_string(dir.path().join("wasmq.log")).unwrap();
    assert!(
        log.contains("the journal ended in an incomplete write"),
        "no clear line in the log:\n{log}"
    );
    let (mut reader, _) = connect(broker.addr, connect_packet(Protocol::V5, "r", true)).await;
    reader.subscribe_qos("keep/#", QoS::AtMostOnce).await;
    let kept = drain(&mut reader, Duration::from_millis(500)).await.len();
    assert!(
        (18..=20).contains(&kept),
        "the valid part is kept: {kept} of 20"
    );
    broker.kill().await;
}

/// The newest journal file fjall wrote under `store`.
fn newest_journal(store: &Path) -> Option<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![store.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "jnl")
                && entry.metadata().ok()?.len() > 0
            {
                found.push((entry.metadata().ok()?.modified().ok()?, path));
            }
        }
    }
    found.sort();
    found.pop().map(|(_, p)| p)
}

/// Runs `wasmq ARGS` (a `user` or `acl` command) in `dir`, on the same config.
fn wasmq_command(dir: &Path, args: &[&str]) {
    let exe = std::env::var("WASMQ_UNDER_TEST")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_wasmq").to_string());
    let output = std::process::Command::new(exe)
        .current_dir(dir)
        .args(["--config", "wasmq.toml"])
        .args(args)
        .output()
        .expect("run wasmq");
    assert!(output.status.success(), "wasmq {args:?}: {output:?}");
}

/// Read ACL on delivery (the `deliver` hook of the default `acl-sql`) over the store: a
/// message queued for an offline session through `sensors/#` comes back after kill -9,
/// is checked again (whether it came through a wildcard is not kept), and, denied,
/// leaves the store: once the deny row is gone, it does not come back.
#[tokio::test]
async fn a_denied_delivery_of_a_restored_session_leaves_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), "always").await;
    let (mut keeper, _) = connect(broker.addr, persistent("keeper")).await;
    keeper.subscribe_qos("sensors/#", QoS::AtLeastOnce).await;
    keeper.disconnect().await;
    // Over the default `$all` pubsub `#` rule (id 1): this is id 4.
    wasmq_command(
        dir.path(),
        &[
            "acl",
            "add",
            "--deny",
            "--all",
            "--access",
            "sub",
            "--topic",
            "sensors/secret",
        ],
    );
    let (mut publisher, _) = connect(broker.addr, connect_packet(Protocol::V5, "pub", true)).await;
    for (packet_id, topic) in [(1, "sensors/secret"), (2, "sensors/temp")] {
        let publish = publish_packet(topic, topic.as_bytes(), QoS::AtLeastOnce, false, packet_id);
        publisher.send(Packet::Publish(publish)).await.unwrap();
        match publisher.recv().await.unwrap() {
            Packet::PubAck(ack) => assert!(!ack.reason_code.is_error(), "{ack:?}"),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    broker.kill().await;

    let broker = Broker::start(dir.path(), "always").await;
    let (mut keeper, present) = connect(broker.addr, persistent("keeper")).await;
    assert!(present);
    let got = drain(&mut keeper, Duration::from_secs(1)).await;
    let topics: Vec<&str> = got.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(topics, ["sensors/temp"], "the secret is not delivered");
    keeper.disconnect().await;
    broker.kill().await;

    // Without the deny row, a denied delivery still kept would now be sent.
    wasmq_command(dir.path(), &["acl", "rm", "4"]);
    let broker = Broker::start(dir.path(), "always").await;
    let (mut keeper, present) = connect(broker.addr, persistent("keeper")).await;
    assert!(present);
    let got = drain(&mut keeper, Duration::from_secs(1)).await;
    assert!(
        got.iter().all(|(p, _, _)| p != "sensors/secret"),
        "the denied delivery left the store: {got:?}"
    );
    broker.kill().await;
}
