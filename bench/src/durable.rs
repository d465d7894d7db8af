//! `wasmq-bench durable`: what the durable store costs and how fast it comes back
//! (issue 11), Mosquitto with `persistence true` beside it in the same run.
//!
//! - Throughput: QoS 1 pairs on persistent sessions (v3.1.1 `clean_session = 0`),
//!   against Wasmq in memory (`[storage] enabled = false`) and under each fsync policy,
//!   and Mosquitto with persistence, in turns, the median of the rounds quoted.
//! - Restart: `retained` retained messages of 16 B and `sessions` offline persistent
//!   sessions with one subscription each; the broker stopped with SIGTERM, then the
//!   time from its start until it accepts a connection, and the store's bytes on disk.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytestring::ByteString;
use wasmq_codec::{Packet, Publish, QoS};

use crate::client::{Client, Target};
use crate::scenario::{self, ACK_WINDOW, Kind, Pace, Scenario, Topology};
use crate::suite::{self, BrokerProcess, Listeners};

/// What `durable` runs.
pub struct DurableOptions {
    pub wasmq: PathBuf,
    pub mosquitto: PathBuf,
    pub out_dir: PathBuf,
    pub rounds: u32,
    pub retained: u32,
    pub sessions: u32,
}

/// The brokers compared: a name and, for Wasmq, its `[storage]` section.
const BROKERS: [(&str, Option<&str>); 5] = [
    ("wasmq memory", Some("enabled = false")),
    ("wasmq fsync never", Some("fsync = \"never\"")),
    ("wasmq fsync interval", Some("fsync = \"interval\"")),
    ("wasmq fsync always", Some("fsync = \"always\"")),
    ("mosquitto persistence", None),
];

/// Runs both parts and returns the Markdown report (also written to the output folder).
pub async fn run(options: DurableOptions) -> anyhow::Result<String> {
    let dir = suite::empty_dir(&options.out_dir.join("durable"))?;
    let scenario = Scenario {
        name: "pairs q1 16B persistent".to_string(),
        kind: Kind::Flow {
            topology: Topology::Pairs { n: 8 },
            qos: 1,
            payload: 16,
            pace: Pace::FullSpeed { window: ACK_WINDOW },
        },
        duration_ms: 3000,
        max_messages: 10_000_000,
        repeats: 1,
        transport: Default::default(),
        session_expiry: 300,
    };
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); BROKERS.len()];
    for round in 0..options.rounds {
        for (i, (name, storage)) in BROKERS.iter().enumerate() {
            let store = suite::empty_dir(&dir.join(format!("store-{i}")))?;
            let broker = start(&options, &dir, *storage, &store).await?;
            let target: Target = broker.addr.into();
            let result = scenario::run(&scenario, name, &target, Some(broker.pid())).await?;
            broker.stop()?;
            anyhow::ensure!(
                result.lost == 0,
                "{name}: {} QoS 1 messages lost",
                result.lost
            );
            eprintln!(
                "round {}: {name}: {:.0} msg/s",
                round + 1,
                result.throughput
            );
            rates[i].push(result.throughput);
        }
    }
    let medians: Vec<f64> = rates.into_iter().map(suite::median).collect();
    let (memory, mosquitto) = (medians[0], medians[BROKERS.len() - 1]);
    let mut report = format!(
        "### QoS 1 pairs on persistent sessions\n\n\
         8 pairs, 16 B, QoS 1, full speed (window {ACK_WINDOW}), v3.1.1 `clean_session = 0`; \
         median of {} rounds run in turns.\n\n\
         | broker | msg/s | vs Wasmq in memory | vs Mosquitto with persistence |\n\
         |---|---|---|---|\n",
        options.rounds
    );
    for ((name, _), rate) in BROKERS.iter().zip(&medians) {
        report += &format!(
            "| {name} | {} | {} | {} |\n",
            suite::rate(*rate),
            suite::ratio(*rate, memory),
            suite::ratio(*rate, mosquitto)
        );
    }
    report += &format!(
        "\n### Restart\n\n{} retained messages of 16 B and {} offline persistent sessions \
         (one subscription each), then SIGTERM and a start in the same folder.\n\n\
         | broker | start until listening | on disk, empty | on disk, filled | (filled - empty) / retained |\n\
         |---|---|---|---|---|\n",
        options.retained, options.sessions
    );
    for (name, storage) in [BROKERS[2], BROKERS[4]] {
        let (start_ms, empty, bytes) = restart(&options, &dir, name, storage).await?;
        let per_retained = bytes.saturating_sub(empty) as f64 / f64::from(options.retained.max(1));
        report += &format!(
            "| {name} | {start_ms:.0} ms | {:.1} MB | {:.1} MB | {per_retained:.0} B |\n",
            empty as f64 / 1e6,
            bytes as f64 / 1e6
        );
    }
    std::fs::write(dir.join("durable.md"), &report)?;
    Ok(report)
}

async fn start(
    options: &DurableOptions,
    dir: &Path,
    storage: Option<&str>,
    store: &Path,
) -> anyhow::Result<BrokerProcess> {
    match storage {
        Some(storage) => {
            let folder = suite::empty_dir(&dir.join("wasmq-plugins"))?;
            let section = format!(
                "{}[storage]\ndir = {:?}\n{storage}\n",
                suite::plugins_section(&folder, None, ""),
                store.display().to_string()
            );
            suite::start_wasmq_with(&options.wasmq, dir, "wasmq", &section, "warn").await
        }
        None => {
            // Mosquitto started as root runs as the `mosquitto` user: it must be able
            // to write its database there.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(store, std::fs::Permissions::from_mode(0o777))?;
            suite::start_mosquitto_kept(&options.mosquitto, dir, &Listeners::default(), Some(store))
                .await
        }
    }
}

/// Fills a broker, stops it, and times its next start: (ms until listening, bytes on
/// disk of the empty store, bytes on disk filled).
async fn restart(
    options: &DurableOptions,
    dir: &Path,
    name: &str,
    storage: Option<&str>,
) -> anyhow::Result<(f64, u64, u64)> {
    let store = suite::empty_dir(&dir.join("restart-store"))?;
    let broker = start(options, dir, storage, &store).await?;
    broker.stop()?;
    let empty = disk_bytes(&store);

    let broker = start(options, dir, storage, &store).await?;
    let target: Target = broker.addr.into();
    let mut client = Client::connect(&target, 1, "wqb-retainer").await?;
    let body = bytes::Bytes::from_static(b"0123456789abcdef");
    for i in 0..options.retained {
        publish_retained(&mut client, format!("wqb/ret/{i}").into(), body.clone()).await?;
    }
    client.disconnect().await;
    for i in 0..options.sessions {
        let mut session = Client::connect_session(&target, 2, &format!("wqb-s{i}"), 3600).await?;
        session
            .subscribe(&format!("wqb/sess/{i}"), QoS::AtLeastOnce)
            .await?;
        session.disconnect().await;
    }
    broker.stop()?;
    let bytes = disk_bytes(&store);

    let started = Instant::now();
    let broker = start(options, dir, storage, &store).await?;
    let start_ms = started.elapsed().as_secs_f64() * 1e3;
    let counted = count_retained(broker.addr).await?;
    broker.stop()?;
    anyhow::ensure!(
        counted == options.retained,
        "{name}: {counted} of {} retained messages back after the restart",
        options.retained
    );
    eprintln!("restart: {name}: {start_ms:.0} ms, {empty} B empty, {bytes} B filled");
    Ok((start_ms, empty, bytes))
}

async fn publish_retained(
    client: &mut Client,
    topic: ByteString,
    payload: bytes::Bytes,
) -> anyhow::Result<()> {
    let publish = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic,
        packet_id: 1,
        payload,
        properties: Default::default(),
    });
    client.send(&publish).await?;
    match client.recv_timeout().await? {
        Packet::PubAck(_) => Ok(()),
        other => anyhow::bail!("expected PUBACK, got {other:?}"),
    }
}

/// The retained messages a new subscriber to `wqb/ret/#` gets.
async fn count_retained(addr: SocketAddr) -> anyhow::Result<u32> {
    let target: Target = addr.into();
    let mut client = Client::connect(&target, 3, "wqb-counter").await?;
    client.subscribe("wqb/ret/#", QoS::AtMostOnce).await?;
    let mut count = 0;
    while let Ok(Ok(packet)) = tokio::time::timeout(Duration::from_secs(2), client.recv()).await {
        if matches!(packet, Packet::Publish(_)) {
            count += 1;
        }
    }
    Ok(count)
}

/// Bytes of every file under `path`.
fn disk_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
