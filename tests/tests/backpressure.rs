//! Backpressure's edges (`broker/src/backpressure.rs`): holding publishers back must never
//! become a trap. A client flooding its own subscription, two clients flooding each
//! other, and a subscriber that stops reading all leave every publisher going; the one
//! that stops reading is found slow and has its messages dropped past its queue, while
//! a subscriber beside it on the same topic loses nothing. `broker/tests/overload.rs`
//! has the load itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use wasmq_codec::{Packet, Protocol, PubAckBody, QoS};
use wasmq_tests::{RawClient, TestBroker, publish_packet};

const WINDOW: u32 = 64;
/// Generous: the debug build on two loaded cores; a deadlock never ends at all.
const DONE_WITHIN: Duration = Duration::from_secs(60);

async fn small_queue_broker() -> TestBroker {
    TestBroker::start_with(|c| {
        c.limits.max_queued_messages = 32;
        c.limits.backpressure_max_ms = 200;
    })
    .await
}

/// What a flooding client saw.
#[derive(Debug, Default)]
struct Flooded {
    /// Its own QoS 1 messages the broker acknowledged.
    acked: u32,
    /// Deliveries it received (and acknowledged).
    received: u32,
}

/// Connects `id`, subscribes it at QoS 1 to `subscribe_to`, and publishes `count` QoS 1
/// messages to `publish_to` with up to WINDOW unacknowledged, acknowledging every
/// delivery it gets meanwhile. Returns once all are acknowledged and `expect_received`
/// deliveries came (or panics after DONE_WITHIN).
async fn flood(
    broker: &TestBroker,
    id: &str,
    subscribe_to: &str,
    publish_to: &str,
    count: u32,
    expect_received: u32,
) -> Flooded {
    let mut client = RawClient::connected(broker.addr, Protocol::V311, id).await;
    client.subscribe_qos(subscribe_to, QoS::AtLeastOnce).await;
    let (stream, mut rbuf) = client.into_parts();
    let (mut reader, mut writer) = stream.into_split();
    let acked = Arc::new(AtomicU32::new(0));
    let (to_ack, mut acks) = mpsc::unbounded_channel::<u16>();
    let acked_by_broker = acked.clone();
    let read = tokio::spawn(async move {
        let mut received = 0;
        while acked_by_broker.load(Ordering::Acquire) < count || received < expect_received {
            match Packet::decode(&mut rbuf, Protocol::V311, u32::MAX).unwrap() {
                Some(Packet::PubAck(_)) => {
                    acked_by_broker.fetch_add(1, Ordering::AcqRel);
                }
                Some(Packet::Publish(publish)) => {
                    received += 1;
                    let _ = to_ack.send(publish.packet_id);
                }
                Some(other) => panic!("unexpected {other:?}"),
                None => {
                    assert!(reader.read_buf(&mut rbuf).await.unwrap() > 0, "closed");
                }
            }
        }
        received
    });
    let topic = publish_to.to_string();
    let acked_in_writer = acked.clone();
    let write = tokio::spawn(async move {
        let mut sent = 0u32;
        let mut out = BytesMut::new();
        loop {
            while let Ok(packet_id) = acks.try_recv() {
                Packet::PubAck(PubAckBody::new(packet_id)).encode(Protocol::V311, &mut out);
            }
            while sent < count && sent - acked_in_writer.load(Ordering::Acquire) < WINDOW {
                let packet_id = (sent % (WINDOW * 2) + 1) as u16;
                Packet::Publish(publish_packet(
                    &topic,
                    &sent.to_be_bytes(),
                    QoS::AtLeastOnce,
                    false,
                    packet_id,
                ))
                .encode(Protocol::V311, &mut out);
                sent += 1;
            }
            if out.is_empty() {
                // Nothing to send: wait for an ack to send or a window to open.
                tokio::select! {
                    packet_id = acks.recv() => match packet_id {
                        Some(id) => Packet::PubAck(PubAckBody::new(id)).encode(Protocol::V311, &mut out),
                        None => return,
                    },
                    _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                }
            }
            writer.write_all(&out).await.unwrap();
            out.clear();
        }
    });
    let received = tokio::time::timeout(DONE_WITHIN, read)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{id}: stuck with {} of {count} acknowledged",
                acked.load(Ordering::Acquire)
            )
        })
        .unwrap();
    write.abort();
    Flooded {
        acked: acked.load(Ordering::Acquire),
        received,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_flooding_its_own_subscription_is_not_held_back_by_itself() {
    let broker = small_queue_broker().await;
    // Its queue congests at once; it drains only as this very socket is read.
    let flooded = flood(&broker, "narcissus", "self/t", "self/t", 3000, 0).await;
    assert_eq!(flooded.acked, 3000);
    assert!(flooded.received > 0);
    let held = broker
        .broker
        .metrics
        .publishers_held
        .load(Ordering::Relaxed);
    assert_eq!(held, 0, "never held back for its own queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_flooding_each_other_do_not_wait_for_each_other_forever() {
    // Slow subscribers are given long, so that only the rule that a held connection is
    // not waited for can let them go on quickly.
    // A window of 4 towards each client makes their queues fill (and congest) at once.
    let broker = TestBroker::start_with(|c| {
        c.limits.max_queued_messages = 32;
        c.limits.max_inflight = 4;
        c.limits.backpressure_max_ms = 30_000;
    })
    .await;
    let started = std::time::Instant::now();
    let (a, b) = tokio::join!(
        flood(&broker, "a", "to/a", "to/b", 20_000, 0),
        flood(&broker, "b", "to/b", "to/a", 20_000, 0),
    );
    assert_eq!((a.acked, b.acked), (20_000, 20_000));
    let slow = broker
        .broker
        .metrics
        .subscribers_slow
        .load(Ordering::Relaxed);
    assert_eq!(
        slow,
        0,
        "let go as held, not as slow ({:?})",
        started.elapsed()
    );
    // They were held back (each congests the other's queue), and still both went on.
    let held = broker
        .broker
        .metrics
        .publishers_held
        .load(Ordering::Relaxed);
    assert!(held > 0, "held {held} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_found_slow_and_its_neighbour_loses_nothing() {
    const COUNT: u32 = 4000;
    let broker = small_queue_broker().await;
    // Subscribed, then never reads or acknowledges again: its inflight window fills,
    // then its queue.
    let mut stuck = RawClient::connected(broker.addr, Protocol::V311, "stuck").await;
    stuck.subscribe_qos("fan/t", QoS::AtLeastOnce).await;

    let mut healthy = RawClient::connected(broker.addr, Protocol::V311, "healthy").await;
    healthy.subscribe_qos("fan/t", QoS::AtLeastOnce).await;
    let (healthy_stream, mut healthy_rbuf) = healthy.into_parts();
    let (mut healthy_reader, mut healthy_writer) = healthy_stream.into_split();
    let receive = tokio::spawn(async move {
        let mut next = 0u32;
        while next < COUNT {
            match Packet::decode(&mut healthy_rbuf, Protocol::V311, u32::MAX).unwrap() {
                Some(Packet::Publish(publish)) => {
                    assert_eq!(
                        (&publish.payload[..4]).get_u32(),
                        next,
                        "in order, none lost"
                    );
                    next += 1;
                    let mut ack = BytesMut::new();
                    Packet::PubAck(PubAckBody::new(publish.packet_id))
                        .encode(Protocol::V311, &mut ack);
                    healthy_writer.write_all(&ack).await.unwrap();
                }
                Some(other) => panic!("unexpected {other:?}"),
                None => {
                    assert!(healthy_reader.read_buf(&mut healthy_rbuf).await.unwrap() > 0);
                }
            }
        }
    });

    let mut publisher = RawClient::connected(broker.addr, Protocol::V311, "publisher").await;
    let mut payload = vec![0u8; 256];
    for number in 0..COUNT {
        payload[..4].copy_from_slice(&number.to_be_bytes());
        let packet_id = (number % 1000 + 1) as u16;
        let publish = publish_packet("fan/t", &payload, QoS::AtLeastOnce, false, packet_id);
        publisher.send(Packet::Publish(publish)).await.unwrap();
        // One at a time: each is acknowledged, so the broker took it.
        let ack = tokio::time::timeout(DONE_WITHIN, publisher.recv()).await;
        match ack
            .expect("a PUBACK, not a publisher held forever")
            .unwrap()
        {
            Packet::PubAck(ack) => assert_eq!(ack.packet_id, packet_id),
            other => panic!("unexpected {other:?}"),
        }
    }
    tokio::time::timeout(DONE_WITHIN, receive)
        .await
        .expect("the healthy subscriber gets every message")
        .unwrap();
    let metrics = &broker.broker.metrics;
    assert!(
        metrics.subscribers_slow.load(Ordering::Relaxed) >= 1,
        "found slow"
    );
    assert!(
        metrics.messages_dropped_queue_full.load(Ordering::Relaxed) > 0,
        "the stuck subscriber's messages past its queue are dropped"
    );
    drop(stuck);
}
