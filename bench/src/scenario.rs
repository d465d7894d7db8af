//! The scenarios and their runners.
//!
//! A *flow* scenario connects publishers and subscribers in one topology (pairs, fan-in,
//! fan-out, shared-subscription fan-in) and moves messages for a bounded time, either at
//! full speed or at a fixed rate. Every payload starts with a send timestamp, the
//! publisher's id and a sequence number (see [`crate::stats`]), so subscribers measure
//! end-to-end latency and count loss, duplicates and reordering per publisher.
//!
//! Full speed is closed-loop: a publisher keeps at most `window` messages between its
//! PUBLISH and their delivery to the subscribers, sized below both brokers' queue limits,
//! so the run measures how fast the broker moves messages rather than how fast it drops
//! them. QoS 1/2 publishers also keep at most [`ACK_WINDOW`] unacknowledged PUBLISHes.
//!
//! The *storm* scenario measures connections per second (TCP connect, CONNECT, CONNACK,
//! DISCONNECT); the *idle* scenario holds many connections open and reads the broker's
//! resident memory before and after.
//!
//! Every scenario has a [`Transport`]: its clients reach the broker over plain TCP, TLS
//! or WebSocket ([`Target`]), with nothing else changed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::BytesMut;
use bytestring::ByteString;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::{Notify, Semaphore};
use wasmq_codec::{Packet, PubAckBody, Publish, QoS};

use crate::client::{Client, MAX_PACKET, PROTOCOL, Target, Transport};
use crate::stats::{
    HEADER_LEN, Latency, RunResult, SeqTrack, cpu_seconds, cpu_times, new_histogram, read_header,
    rss_bytes, write_header,
};

/// Unacknowledged QoS 1/2 PUBLISHes per publisher; below both brokers' receive windows.
pub const ACK_WINDOW: u64 = 64;

/// PUBLISHes encoded into one write at most.
const BATCH: u64 = 64;

/// How long after the last PUBLISH deliveries may still arrive.
const DRAIN: Duration = Duration::from_secs(3);

/// Who talks to whom.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Topology {
    /// `n` publishers, each with its own subscriber on its own topic.
    Pairs { n: u32 },
    /// `publishers` on their own topics, one subscriber on a `+` filter.
    FanIn { publishers: u32 },
    /// One publisher, `subscribers` on its topic.
    FanOut { subscribers: u32 },
    /// One publisher, `subscribers` on a `+` filter matching its topic: with a plugin
    /// that checks deliveries (`deliver`), each delivery is checked for its subscriber.
    FanOutWildcard { subscribers: u32 },
    /// `publishers` on their own topics, `subscribers` in one share group on a `+` filter.
    SharedFanIn { publishers: u32, subscribers: u32 },
}

impl Topology {
    fn publishers(self) -> u32 {
        match self {
            Topology::Pairs { n } => n,
            Topology::FanIn { publishers } | Topology::SharedFanIn { publishers, .. } => publishers,
            Topology::FanOut { .. } | Topology::FanOutWildcard { .. } => 1,
        }
    }

    fn subscribers(self) -> u32 {
        match self {
            Topology::Pairs { n } => n,
            Topology::FanIn { .. } => 1,
            Topology::FanOut { subscribers }
            | Topology::FanOutWildcard { subscribers }
            | Topology::SharedFanIn { subscribers, .. } => subscribers,
        }
    }

    /// Receivers of each message.
    fn fanout(self) -> u64 {
        match self {
            Topology::FanOut { subscribers } | Topology::FanOutWildcard { subscribers } => {
                u64::from(subscribers)
            }
            _ => 1,
        }
    }

    fn shared(self) -> bool {
        matches!(self, Topology::SharedFanIn { .. })
    }
}

/// How fast publishers go.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Pace {
    /// As fast as the broker takes them, with at most `window` messages per publisher
    /// between PUBLISH and delivery.
    FullSpeed { window: u64 },
    /// `rate` messages per second per publisher.
    FixedRate { rate: f64 },
}

/// What a scenario does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Flow {
        topology: Topology,
        qos: u8,
        payload: usize,
        pace: Pace,
    },
    /// `connections` connect/disconnect cycles, `concurrency` at a time.
    Storm { connections: u32, concurrency: u32 },
    /// `connections` held open at once.
    Idle { connections: u32 },
    /// `messages` retained messages of `payload` bytes on topics of their own, each
    /// published at QoS 1 after the previous PUBACK (as devices reporting their state
    /// do, each in a read of its own), then cleared.
    Retained { messages: u32, payload: usize },
}

/// A named scenario with its bounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    pub kind: Kind,
    /// Publishing time; connection scenarios stop at this time too.
    pub duration_ms: u64,
    /// Messages per publisher at most.
    pub max_messages: u64,
    /// How often the suite repeats it (the median is quoted).
    pub repeats: u32,
    /// What its clients speak below MQTT.
    #[serde(default, skip_serializing_if = "Transport::is_tcp")]
    pub transport: Transport,
    /// The Session Expiry Interval of a flow's clients: 0 for clean sessions, more for
    /// persistent ones, whose messages a durable broker keeps (`wasmq-bench durable`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub session_expiry: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Scenario {
    /// The same scenario over `transport`, named after it ("pairs q1 16B tls").
    pub fn over(mut self, transport: Transport) -> Scenario {
        self.name = format!("{} {}", self.name, transport.as_str());
        self.transport = transport;
        self
    }

    /// For a scenario made by [`Scenario::over`], the name of the plain TCP one.
    pub fn plain_name(&self) -> Option<&str> {
        if self.transport.is_tcp() {
            return None;
        }
        self.name
            .strip_suffix(self.transport.as_str())?
            .strip_suffix(' ')
    }

    /// Whether the table quotes its throughput (full speed) or its latency (fixed rate).
    pub fn is_latency(&self) -> bool {
        matches!(
            self.kind,
            Kind::Flow {
                pace: Pace::FixedRate { .. },
                ..
            }
        )
    }
}

/// Runs one scenario against the broker at `target` (a listener of the scenario's
/// transport); `broker_pid` (when known) lets the run read the broker's CPU time and
/// memory.
pub async fn run(
    scenario: &Scenario,
    broker: &str,
    target: &Target,
    broker_pid: Option<u32>,
) -> anyhow::Result<RunResult> {
    anyhow::ensure!(
        target.transport() == scenario.transport,
        "scenario {:?} runs over {}, not {}",
        scenario.name,
        scenario.transport.as_str(),
        target.transport().as_str()
    );
    let gen_cpu = cpu_times("self").unwrap_or_default();
    let broker_cpu = broker_pid.and_then(|pid| cpu_seconds(&pid.to_string()));
    let wall = Instant::now();
    let mut result = match &scenario.kind {
        Kind::Flow {
            topology,
            qos,
            payload,
            pace,
        } => {
            let qos = QoS::from_u8(*qos).context("QoS must be 0, 1 or 2")?;
            run_flow(scenario, target, *topology, qos, *payload, *pace).await?
        }
        Kind::Storm {
            connections,
            concurrency,
        } => run_storm(scenario, target, *connections, *concurrency).await?,
        Kind::Idle { connections } => run_idle(scenario, target, *connections, broker_pid).await?,
        Kind::Retained { messages, payload } => {
            run_retained(target, *messages, *payload, broker_pid).await?
        }
    };
    let wall = wall.elapsed().as_secs_f64();
    result.scenario = scenario.name.clone();
    result.broker = broker.to_string();
    let gen_cpu_after = cpu_times("self").unwrap_or_default();
    result.generator_cpu_s = (gen_cpu_after.0 + gen_cpu_after.1) - (gen_cpu.0 + gen_cpu.1);
    result.generator_cores = result.generator_cpu_s / wall;
    result.generator_user_cores = (gen_cpu_after.0 - gen_cpu.0) / wall;
    result.broker_cpu_s = match (broker_pid, broker_cpu) {
        (Some(pid), Some(before)) => cpu_seconds(&pid.to_string()).map(|after| after - before),
        _ => None,
    };
    Ok(result)
}

/// A unique prefix per run, so runs never see each other's messages or sessions.
fn run_tag() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// What publishers and subscribers share about one publisher.
#[derive(Default)]
struct PublisherState {
    /// Deliveries of its messages counted by subscribers.
    delivered: AtomicU64,
    /// Woken when `delivered` grows.
    progress: Notify,
}

struct FlowShared {
    epoch: Instant,
    publishers: Vec<PublisherState>,
    /// Set when publishers are done and the drain is over: subscribers return.
    stop: AtomicBool,
    stop_notify: Notify,
}

struct SubscriberOutcome {
    tracks: Vec<SeqTrack>,
    histogram: Histogram<u64>,
    last_delivery: Option<Instant>,
    payload_bytes: u64,
}

async fn run_flow(
    scenario: &Scenario,
    target: &Target,
    topology: Topology,
    qos: QoS,
    payload: usize,
    pace: Pace,
) -> anyhow::Result<RunResult> {
    let tag = run_tag();
    let n_pub = topology.publishers();
    let n_sub = topology.subscribers();
    let shared = Arc::new(FlowShared {
        epoch: Instant::now(),
        publishers: (0..n_pub).map(|_| PublisherState::default()).collect(),
        stop: AtomicBool::new(false),
        stop_notify: Notify::new(),
    });

    // Subscribers first, all subscribed before anyone publishes.
    let mut subscribers = Vec::new();
    for i in 0..n_sub {
        let filter = match topology {
            Topology::Pairs { .. } => format!("wqb/{tag}/p/{i}"),
            Topology::FanIn { .. } => format!("wqb/{tag}/in/+"),
            Topology::FanOut { .. } => format!("wqb/{tag}/out"),
            Topology::FanOutWildcard { .. } => format!("wqb/{tag}/wild/+"),
            Topology::SharedFanIn { .. } => format!("$share/g/wqb/{tag}/sh/+"),
        };
        let id = format!("wqb-{tag}-s{i}");
        let expiry = scenario.session_expiry;
        let mut client = Client::connect_session(target, source(i), &id, expiry).await?;
        client.subscribe(&filter, qos).await?;
        subscribers.push(client);
    }
    let mut publishers = Vec::new();
    for i in 0..n_pub {
        let topic = match topology {
            Topology::Pairs { .. } => format!("wqb/{tag}/p/{i}"),
            Topology::FanIn { .. } => format!("wqb/{tag}/in/{i}"),
            Topology::FanOut { .. } => format!("wqb/{tag}/out"),
            Topology::FanOutWildcard { .. } => format!("wqb/{tag}/wild/out"),
            Topology::SharedFanIn { .. } => format!("wqb/{tag}/sh/{i}"),
        };
        let id = format!("wqb-{tag}-p{i}");
        let expiry = scenario.session_expiry;
        let client = Client::connect_session(target, source(n_sub + i), &id, expiry).await?;
        publishers.push((client, topic));
    }

    let sub_tasks: Vec<_> = subscribers
        .into_iter()
        .map(|client| tokio::spawn(subscriber(client, shared.clone())))
        .collect();
    let start = Instant::now();
    let deadline = start + Duration::from_millis(scenario.duration_ms);
    let pub_tasks: Vec<_> = publishers
        .into_iter()
        .enumerate()
        .map(|(i, (client, topic))| {
            tokio::spawn(publisher(PublisherSpec {
                client,
                topic: ByteString::from(topic),
                id: i as u32,
                qos,
                payload,
                pace,
                fanout: topology.fanout(),
                deadline,
                max_messages: scenario.max_messages,
                shared: shared.clone(),
            }))
        })
        .collect();
    let mut sent = 0;
    let mut publisher_clients = Vec::new();
    for task in pub_tasks {
        let (count, client) = task.await??;
        sent += count;
        publisher_clients.push(client);
    }
    let publishing_done = Instant::now();

    // Drain: wait until every expected delivery arrived, or nothing arrived for a while.
    let expected = sent * topology.fanout();
    let delivered = |s: &FlowShared| -> u64 {
        s.publishers
            .iter()
            .map(|p| p.delivered.load(Ordering::Relaxed))
            .sum()
    };
    let mut last = delivered(&shared);
    let mut last_change = Instant::now();
    while last < expected && last_change.elapsed() < Duration::from_millis(500) {
        if publishing_done.elapsed() > DRAIN {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = delivered(&shared);
        if now != last {
            last = now;
            last_change = Instant::now();
        }
    }
    shared.stop.store(true, Ordering::Release);
    shared.stop_notify.notify_waiters();

    let mut outcomes = Vec::new();
    for task in sub_tasks {
        let (outcome, client) = task.await??;
        outcomes.push(outcome);
        client.disconnect().await;
    }
    for client in publisher_clients {
        client.disconnect().await;
    }

    // Fold what the subscribers saw.
    let mut histogram = new_histogram();
    let mut last_delivery = start;
    let mut payload_bytes = 0;
    let mut per_publisher: Vec<Vec<SeqTrack>> = vec![Vec::new(); n_pub as usize];
    for outcome in outcomes {
        histogram.add(&outcome.histogram).ok();
        if let Some(t) = outcome.last_delivery {
            last_delivery = last_delivery.max(t);
        }
        payload_bytes += outcome.payload_bytes;
        for (p, track) in outcome.tracks.into_iter().enumerate() {
            per_publisher[p].push(track);
        }
    }
    let (mut received, mut duplicates, mut reordered) = (0, 0, 0);
    for tracks in per_publisher {
        if topology.shared() {
            let mut union = SeqTrack::default();
            for t in &tracks {
                union.merge(t);
            }
            received += union.unique;
            duplicates += union.duplicates;
            reordered += union.reordered;
        } else {
            for t in tracks {
                received += t.unique;
                duplicates += t.duplicates;
                reordered += t.reordered;
            }
        }
    }
    let elapsed = last_delivery.max(publishing_done).duration_since(start);
    let elapsed_s = elapsed.as_secs_f64().max(1e-9);
    Ok(RunResult {
        sent,
        expected,
        received,
        lost: expected.saturating_sub(received),
        duplicates,
        reordered,
        elapsed_s,
        throughput: received as f64 / elapsed_s,
        throughput_mb_s: payload_bytes as f64 / elapsed_s / 1e6,
        latency: Latency::of(&histogram),
        ..RunResult::default()
    })
}

/// Source address octet for the `i`th connection: 127.0.0.1 ..= 127.0.0.254.
fn source(i: u32) -> u8 {
    (i % 254 + 1) as u8
}

struct PublisherSpec {
    client: Client,
    topic: ByteString,
    id: u32,
    qos: QoS,
    payload: usize,
    pace: Pace,
    fanout: u64,
    deadline: Instant,
    max_messages: u64,
    shared: Arc<FlowShared>,
}

/// Publishes until the deadline or the count, then waits for its QoS flows to complete.
/// Returns how many PUBLISHes it sent.
async fn publisher(spec: PublisherSpec) -> anyhow::Result<(u64, Client)> {
    let PublisherSpec {
        mut client,
        topic,
        id,
        qos,
        payload,
        pace,
        fanout,
        deadline,
        max_messages,
        shared,
    } = spec;
    let me = &shared.publishers[id as usize];
    let payload_len = payload.max(HEADER_LEN);
    let mut body = vec![0u8; payload_len];
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut sent: u64 = 0;
    let mut unacked: u64 = 0;
    let mut packet_id: u16 = 0;
    // Deliveries written off as lost after a stall, so a QoS 0 drop (which both brokers
    // do when a subscriber's queue is full) does not stall the window forever.
    let mut forgiven: u64 = 0;
    let mut stalled_since: Option<Instant> = None;
    let start = Instant::now();
    loop {
        let now = Instant::now();
        let publishing = now < deadline && sent < max_messages;
        if !publishing && unacked == 0 {
            break;
        }
        if !publishing && now > deadline + DRAIN {
            // The broker lost QoS 1/2 acknowledgements: give up, the counts will show it.
            break;
        }
        // How many PUBLISHes may go now.
        let mut allowed = if publishing { max_messages - sent } else { 0 };
        if qos != QoS::AtMostOnce {
            allowed = allowed.min(ACK_WINDOW - unacked);
        }
        match pace {
            Pace::FullSpeed { window } => {
                let delivered = me.delivered.load(Ordering::Acquire) / fanout + forgiven;
                let outstanding = sent.saturating_sub(delivered);
                allowed = allowed.min(window.saturating_sub(outstanding));
                // Only QoS 0 may be dropped by a healthy broker; a QoS 1/2 loss must show
                // as a stall, not be hidden by sending more.
                if allowed == 0 && publishing && unacked == 0 && qos == QoS::AtMostOnce {
                    let since = *stalled_since.get_or_insert(now);
                    if now - since > Duration::from_millis(500) {
                        forgiven += outstanding;
                        stalled_since = None;
                        continue;
                    }
                } else {
                    stalled_since = None;
                }
            }
            Pace::FixedRate { rate } => {
                let due = (now.duration_since(start).as_secs_f64() * rate) as u64 + 1;
                allowed = allowed.min(due.saturating_sub(sent));
            }
        }
        let allowed = allowed.min(BATCH);
        for _ in 0..allowed {
            let pid = if qos == QoS::AtMostOnce {
                0
            } else {
                packet_id = packet_id.wrapping_add(1).max(1);
                unacked += 1;
                packet_id
            };
            let sent_ns = shared.epoch.elapsed().as_nanos() as u64;
            write_header(&mut body, sent_ns, id, sent as u32);
            let publish = Packet::Publish(Publish {
                dup: false,
                qos,
                retain: false,
                topic: topic.clone(),
                packet_id: pid,
                payload: bytes::Bytes::copy_from_slice(&body),
                properties: Default::default(),
            });
            publish.encode(PROTOCOL, &mut out);
            sent += 1;
        }
        if !out.is_empty() {
            client.write_all(&out).await?;
            out.clear();
        }
        // Acknowledgements waiting already are taken without blocking.
        let unacked_before = unacked;
        handle_acks(&mut client, &mut out, &mut unacked)?;
        if !out.is_empty() {
            client.write_all(&out).await?;
            out.clear();
        }
        if allowed > 0 || unacked != unacked_before {
            continue;
        }
        // Nothing may go: wait for an acknowledgement, a delivery, the next due time or
        // the deadline.
        let wake = match pace {
            Pace::FixedRate { rate } if publishing => {
                start + Duration::from_secs_f64((sent as f64) / rate)
            }
            _ if publishing => deadline.min(now + Duration::from_millis(100)),
            _ => now + Duration::from_millis(100),
        };
        tokio::select! {
            read = client.stream.read_buf(&mut client.inbuf) => {
                anyhow::ensure!(read? > 0, "publisher {id}: connection closed by the broker");
            }
            _ = me.progress.notified() => {}
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
    Ok((sent, client))
}

/// Decodes whatever acknowledgements are buffered or readable now, queueing PUBRELs.
fn handle_acks(client: &mut Client, out: &mut BytesMut, unacked: &mut u64) -> anyhow::Result<()> {
    loop {
        while let Some(packet) = Packet::decode(&mut client.inbuf, PROTOCOL, MAX_PACKET)? {
            match packet {
                Packet::PubAck(_) | Packet::PubComp(_) => *unacked = unacked.saturating_sub(1),
                Packet::PubRec(ack) => Packet::PubRel(PubAckBody {
                    packet_id: ack.packet_id,
                    ..Default::default()
                })
                .encode(PROTOCOL, out),
                _ => {}
            }
        }
        client.inbuf.reserve(4096);
        match client.stream.try_read_buf(&mut client.inbuf) {
            Ok(0) => anyhow::bail!("connection closed by the broker"),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives until told to stop: records latency and sequence, acknowledges QoS 1/2.
async fn subscriber(
    mut client: Client,
    shared: Arc<FlowShared>,
) -> anyhow::Result<(SubscriberOutcome, Client)> {
    let n_pub = shared.publishers.len();
    let mut outcome = SubscriberOutcome {
        tracks: vec![SeqTrack::default(); n_pub],
        histogram: new_histogram(),
        last_delivery: None,
        payload_bytes: 0,
    };
    let mut counts = vec![0u64; n_pub];
    let mut out = BytesMut::with_capacity(16 * 1024);
    client.inbuf.reserve(256 * 1024);
    loop {
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        tokio::select! {
            read = client.stream.read_buf(&mut client.inbuf) => {
                if read? == 0 {
                    anyhow::bail!("subscriber: connection closed by the broker");
                }
            }
            _ = shared.stop_notify.notified() => continue,
            // The stop flag may be set between its check and this wait: look again soon.
            _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
        }
        let now_ns = shared.epoch.elapsed().as_nanos() as u64;
        let mut any = false;
        while let Some(packet) = Packet::decode(&mut client.inbuf, PROTOCOL, MAX_PACKET)? {
            match packet {
                Packet::Publish(publish) => {
                    if let Some((sent_ns, publisher, seq)) = read_header(&publish.payload)
                        && (publisher as usize) < n_pub
                    {
                        outcome
                            .histogram
                            .saturating_record(now_ns.saturating_sub(sent_ns).max(1));
                        outcome.tracks[publisher as usize].record(seq);
                        counts[publisher as usize] += 1;
                        outcome.payload_bytes += publish.payload.len() as u64;
                        any = true;
                    }
                    match publish.qos {
                        QoS::AtMostOnce => {}
                        QoS::AtLeastOnce => {
                            Packet::PubAck(ack(publish.packet_id)).encode(PROTOCOL, &mut out)
                        }
                        QoS::ExactlyOnce => {
                            Packet::PubRec(ack(publish.packet_id)).encode(PROTOCOL, &mut out)
                        }
                    }
                }
                Packet::PubRel(rel) => {
                    Packet::PubComp(ack(rel.packet_id)).encode(PROTOCOL, &mut out)
                }
                _ => {}
            }
        }
        if any {
            outcome.last_delivery = Some(Instant::now());
            for (p, count) in counts.iter_mut().enumerate() {
                if *count > 0 {
                    let state = &shared.publishers[p];
                    state.delivered.fetch_add(*count, Ordering::Release);
                    state.progress.notify_one();
                    *count = 0;
                }
            }
        }
        if !out.is_empty() {
            client.write_all(&out).await?;
            out.clear();
        }
        if client.inbuf.capacity() - client.inbuf.len() < 16 * 1024 {
            client.inbuf.reserve(256 * 1024);
        }
    }
    Ok((outcome, client))
}

fn ack(packet_id: u16) -> PubAckBody {
    PubAckBody {
        packet_id,
        ..Default::default()
    }
}

/// Connect/disconnect cycles, `concurrency` at a time, until `connections` or the deadline.
async fn run_storm(
    scenario: &Scenario,
    target: &Target,
    connections: u32,
    concurrency: u32,
) -> anyhow::Result<RunResult> {
    let tag = run_tag();
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_millis(scenario.duration_ms);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let tag = tag.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut histogram = new_histogram();
            let (mut done, mut errors) = (0u64, 0u64);
            let mut first_error = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= u64::from(connections) || Instant::now() > deadline {
                    break;
                }
                let began = Instant::now();
                match Client::connect(&target, source(i as u32), &format!("wqb-{tag}-c{i}")).await {
                    Ok(client) => {
                        histogram.saturating_record(began.elapsed().as_nanos() as u64);
                        client.disconnect().await;
                        done += 1;
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (histogram, done, errors, first_error)
        }));
    }
    let mut histogram = new_histogram();
    let (mut done, mut errors) = (0, 0);
    let mut first_error = None;
    for task in tasks {
        let (h, d, e, first) = task.await?;
        histogram.add(&h).ok();
        done += d;
        errors += e;
        first_error = first_error.or(first);
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    if let Some(e) = &first_error {
        eprintln!("storm: {errors} connections failed, first: {e:#}");
    }
    Ok(RunResult {
        elapsed_s,
        throughput: done as f64 / elapsed_s,
        latency: Latency::of(&histogram),
        connections: Some(done),
        errors,
        ..RunResult::default()
    })
}

/// Opens `connections` and holds them; the broker's RSS growth divided by them is the
/// memory per idle connection.
async fn run_idle(
    scenario: &Scenario,
    target: &Target,
    connections: u32,
    broker_pid: Option<u32>,
) -> anyhow::Result<RunResult> {
    let tag = run_tag();
    let before = broker_pid.and_then(rss_bytes);
    let start = Instant::now();
    let deadline = start + Duration::from_millis(scenario.duration_ms);
    let permits = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::new();
    for i in 0..connections {
        let permit = permits.clone().acquire_owned().await?;
        if Instant::now() > deadline {
            break;
        }
        let tag = tag.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            Client::connect(&target, source(i), &format!("wqb-{tag}-i{i}")).await
        }));
    }
    let mut clients = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        match task.await? {
            Ok(client) => clients.push(client),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    if let Some(e) = &first_error {
        eprintln!("idle: {errors} connections failed, first: {e:#}");
    }
    // Let the broker settle (allocations after CONNACK, buffers shrinking).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = broker_pid.and_then(rss_bytes);
    let n = clients.len() as u64;
    let bytes_per_item = match (before, after) {
        (Some(b), Some(a)) if n > 0 => Some((a as f64 - b as f64) / n as f64),
        _ => None,
    };
    // Close them all at once (no DISCONNECT: dropping is what idle clients do when killed).
    drop(clients);
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(RunResult {
        elapsed_s,
        throughput: n as f64 / elapsed_s,
        connections: Some(n),
        bytes_per_item,
        errors,
        ..RunResult::default()
    })
}

/// Publishes `messages` retained messages one by one and reads the broker's resident
/// memory before and after: memory per retained message. Clears them afterwards so the
/// broker is left as it was.
async fn run_retained(
    target: &Target,
    messages: u32,
    payload: usize,
    broker_pid: Option<u32>,
) -> anyhow::Result<RunResult> {
    let tag = run_tag();
    let mut client = Client::connect(target, 1, &format!("wqb-{tag}-retainer")).await?;
    let before = broker_pid.and_then(rss_bytes);
    let start = Instant::now();
    let body = bytes::Bytes::from(vec![b'r'; payload]);
    let topic = |i: u32| ByteString::from(format!("wqb-{tag}/retained/{i}"));
    for (i, payload) in (0..messages).map(|i| (i, body.clone())) {
        publish_and_wait(&mut client, topic(i), payload).await?;
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = broker_pid.and_then(rss_bytes);
    for i in 0..messages {
        publish_and_wait(&mut client, topic(i), bytes::Bytes::new()).await?;
    }
    Ok(RunResult {
        elapsed_s,
        throughput: f64::from(messages) / elapsed_s,
        sent: u64::from(messages),
        bytes_per_item: match (before, after) {
            (Some(b), Some(a)) if messages > 0 => Some((a as f64 - b as f64) / f64::from(messages)),
            _ => None,
        },
        ..RunResult::default()
    })
}

/// One retained QoS 1 PUBLISH, answered by its PUBACK before it returns.
pub async fn publish_and_wait(
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
        Packet::PubAck(ack) if !ack.reason_code.is_error() => Ok(()),
        other => anyhow::bail!("expected a successful PUBACK, got {other:?}"),
    }
}
