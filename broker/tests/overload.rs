//! Overload, on the real binary with its default plugin: publishers writing as fast as
//! their sockets take must not starve subscribers or idle clients (issue 16: with every
//! connection task finding input, subscribers received nothing for seconds), and a QoS 1
//! message the broker acknowledged reaches a subscriber that keeps up, however far the
//! publishers outrun it (they are held back, not read and dropped).
//!
//! Every load here is bounded in time or count and goes to loopback only. Nothing is a
//! rate: the assertions are that deliveries happen while the load goes on, that a
//! PINGREQ is answered within a second, and that nothing acknowledged is lost.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use wasmq_codec::{Packet, Protocol, PubAckBody, QoS};
use wasmq_tests::{BrokerProcess, RawClient, publish_packet};

const WASMQ: &str = env!("CARGO_BIN_EXE_wasmq");
const WAIT: Duration = Duration::from_secs(10);

/// A connected v3.1.1 client subscribed to `filter`, as a bare socket and what it read.
async fn subscriber(
    broker: &BrokerProcess,
    id: &str,
    filter: &str,
    qos: QoS,
) -> (TcpStream, BytesMut) {
    let mut client = RawClient::connected(broker.addr, Protocol::V311, id).await;
    let suback = client.subscribe_qos(filter, qos).await;
    assert_eq!(suback.reason_codes[0].0, qos as u8, "{id}: {suback:?}");
    client.into_parts()
}

/// Reads the next whole packet, waiting at most until `deadline`; `None` at the deadline.
async fn next_packet(
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    deadline: Instant,
) -> anyhow::Result<Option<Packet>> {
    loop {
        if let Some(packet) = Packet::decode(rbuf, Protocol::V311, u32::MAX)? {
            return Ok(Some(packet));
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(rbuf)).await {
            Err(_) => return Ok(None),
            Ok(Ok(0)) => anyhow::bail!("closed by the broker"),
            Ok(read) => {
                read?;
            }
        }
    }
}

/// `count` QoS 0 PUBLISHes of `payload_len` bytes to `topic`, encoded back to back.
fn qos0_batch(topic: &str, count: usize, payload_len: usize) -> bytes::Bytes {
    let payload = vec![b'x'; payload_len];
    let mut out = BytesMut::new();
    for _ in 0..count {
        Packet::Publish(publish_packet(topic, &payload, QoS::AtMostOnce, false, 0))
            .encode(Protocol::V311, &mut out);
    }
    out.freeze()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_at_full_speed_starve_neither_subscribers_nor_idle_clients() {
    flood_while_others_are_served(64).await;
}

/// A few packets per read: the connection must yield per read, not only per packets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_of_large_messages_at_full_speed_starve_nobody_either() {
    flood_while_others_are_served(4096).await;
}

async fn flood_while_others_are_served(payload_len: usize) {
    const PAIRS: usize = 4;
    const LOAD: Duration = Duration::from_secs(4);
    let broker = BrokerProcess::start(WASMQ, "").await.unwrap();

    let mut subscribers = Vec::new();
    for i in 0..PAIRS {
        subscribers.push(
            subscriber(
                &broker,
                &format!("sub-{i}"),
                &format!("load/{i}"),
                QoS::AtMostOnce,
            )
            .await,
        );
    }
    // A subscriber on a topic nobody floods, fed by a light QoS 1 publisher.
    let (mut quiet_sub, mut quiet_rbuf) =
        subscriber(&broker, "quiet-sub", "quiet/t", QoS::AtLeastOnce).await;
    let mut quiet_pub = RawClient::connected(broker.addr, Protocol::V311, "quiet-pub").await;
    let mut idle = RawClient::connected(broker.addr, Protocol::V311, "idle").await;

    let start = Instant::now();
    let end = start + LOAD;
    // The last second of the load: deliveries must still be happening then, not only
    // at the start or once the publishers stop.
    let late = end - Duration::from_secs(1);
    let mut publishers = Vec::new();
    for i in 0..PAIRS {
        let client = RawClient::connected(broker.addr, Protocol::V311, &format!("pub-{i}")).await;
        let batch = qos0_batch(&format!("load/{i}"), 256, payload_len);
        publishers.push(tokio::spawn(async move {
            let (mut stream, _) = client.into_parts();
            let mut batches = 0u64;
            while let Ok(written) = tokio::time::timeout_at(end, stream.write_all(&batch)).await {
                written.expect("publisher write");
                batches += 1;
            }
            batches
        }));
    }
    let mut readers = Vec::new();
    for (i, (mut stream, mut rbuf)) in subscribers.into_iter().enumerate() {
        readers.push(tokio::spawn(async move {
            let (mut total, mut in_last_second) = (0u64, 0u64);
            while let Some(packet) = next_packet(&mut stream, &mut rbuf, end).await.unwrap() {
                if let Packet::Publish(_) = packet {
                    total += 1;
                    if Instant::now() >= late {
                        in_last_second += 1;
                    }
                }
            }
            (i, total, in_last_second)
        }));
    }

    // Meanwhile: a PINGREQ every 250 ms from the idle client, a QoS 1 message every
    // 250 ms to the quiet subscriber.
    let mut probes = 0u16;
    while Instant::now() + Duration::from_millis(250) < end {
        tokio::time::sleep(Duration::from_millis(250)).await;
        probes += 1;
        let asked = Instant::now();
        idle.send(Packet::PingReq).await.unwrap();
        match idle.recv_within(Duration::from_secs(1)).await {
            Ok(Some(Packet::PingResp)) => {}
            other => panic!(
                "PINGREQ {probes} not answered within 1 s under load ({:?} after {:?})",
                other,
                asked.elapsed()
            ),
        }
        quiet_pub
            .send(Packet::Publish(publish_packet(
                "quiet/t",
                &probes.to_be_bytes(),
                QoS::AtLeastOnce,
                false,
                probes,
            )))
            .await
            .unwrap();
        match quiet_pub.recv().await.unwrap() {
            Packet::PubAck(ack) => assert_eq!(ack.packet_id, probes),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    for publisher in publishers {
        assert!(publisher.await.unwrap() > 0, "each publisher wrote");
    }
    for reader in readers {
        let (i, total, in_last_second) = reader.await.unwrap();
        assert!(
            in_last_second > 0,
            "subscriber {i} received nothing in the last second of the load ({total} in all)"
        );
    }
    // Every probe reached the quiet subscriber, in order.
    let deadline = Instant::now() + WAIT;
    for expected in 1..=probes {
        match next_packet(&mut quiet_sub, &mut quiet_rbuf, deadline)
            .await
            .unwrap()
        {
            Some(Packet::Publish(publish)) => {
                assert_eq!(
                    &publish.payload[..],
                    expected.to_be_bytes(),
                    "probe {expected}"
                );
            }
            other => panic!("probe {expected} of {probes} not delivered: {other:?}"),
        }
    }
}

/// Publishes `count` QoS 1 messages numbered 0.. to `topic` with up to `window`
/// unacknowledged, as fast as the broker acknowledges; returns the numbers acknowledged.
async fn pipelined_qos1(
    client: RawClient,
    topic: String,
    count: u32,
    window: u32,
) -> BTreeSet<u32> {
    let (stream, mut rbuf) = client.into_parts();
    let (mut reader, mut writer) = stream.into_split();
    let mut acked = BTreeSet::new();
    let mut sent = 0u32;
    let mut out = BytesMut::new();
    while acked.len() < count as usize {
        while sent < count && sent - acked.len() as u32 <= window {
            // Packet ids 1..=window+1 in turn: never more than `window` + 1 in flight.
            let packet_id = (sent % (window + 1) + 1) as u16;
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
        if !out.is_empty() {
            writer.write_all(&out).await.unwrap();
            out.clear();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(packet) = Packet::decode(&mut rbuf, Protocol::V311, u32::MAX).unwrap() {
                let Packet::PubAck(ack) = packet else {
                    panic!("publisher got {packet:?}");
                };
                // Acks come in order: the oldest unacknowledged message is this one.
                let number = acked.len() as u32;
                assert_eq!(ack.packet_id, (number % (window + 1) + 1) as u16);
                acked.insert(number);
                break;
            }
            let read = tokio::time::timeout_at(deadline, reader.read_buf(&mut rbuf)).await;
            assert!(
                read.expect("a PUBACK within 10 s").unwrap() > 0,
                "broker closed"
            );
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_qos1_messages_reach_a_subscriber_that_keeps_up() {
    const PAIRS: usize = 2;
    const COUNT: u32 = 6000;
    // A small queue, so that the publishers outrun it many times over.
    let broker = BrokerProcess::start(
        WASMQ,
        "[limits]\nmax_queued_messages = 64\n[sys]\ninterval_secs = 1\n",
    )
    .await
    .unwrap();
    let mut readers = Vec::new();
    for i in 0..PAIRS {
        let (mut stream, mut rbuf) = subscriber(
            &broker,
            &format!("sub-{i}"),
            &format!("lossless/{i}"),
            QoS::AtLeastOnce,
        )
        .await;
        readers.push(tokio::spawn(async move {
            let mut received = BTreeSet::new();
            let mut acks = BytesMut::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while received.len() < COUNT as usize {
                let packet = next_packet(&mut stream, &mut rbuf, deadline).await.unwrap();
                let Some(Packet::Publish(publish)) = packet else {
                    panic!(
                        "subscriber {i}: {packet:?} after {} messages",
                        received.len()
                    );
                };
                received.insert((&publish.payload[..]).get_u32());
                Packet::PubAck(PubAckBody::new(publish.packet_id))
                    .encode(Protocol::V311, &mut acks);
                if received.len() % 100 == 0 {
                    // Slower than the publishers, but steadily draining: not slow.
                    stream.write_all(&acks).await.unwrap();
                    acks.clear();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            stream.write_all(&acks).await.unwrap();
            received
        }));
    }
    let mut publishers = Vec::new();
    for i in 0..PAIRS {
        let client = RawClient::connected(broker.addr, Protocol::V311, &format!("pub-{i}")).await;
        publishers.push(tokio::spawn(pipelined_qos1(
            client,
            format!("lossless/{i}"),
            COUNT,
            64,
        )));
    }
    for (i, (publisher, reader)) in publishers.into_iter().zip(readers).enumerate() {
        let acked = publisher.await.unwrap();
        assert_eq!(acked.len(), COUNT as usize);
        let received = reader.await.unwrap();
        assert_eq!(
            received, acked,
            "pair {i}: every acknowledged message delivered"
        );
    }

    // And the broker says it dropped nothing (its counters go out every second).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (mut sys, mut rbuf) = subscriber(
        &broker,
        "sys",
        "$SYS/broker/messages/dropped",
        QoS::AtMostOnce,
    )
    .await;
    match next_packet(&mut sys, &mut rbuf, Instant::now() + WAIT)
        .await
        .unwrap()
    {
        Some(Packet::Publish(publish)) => assert_eq!(&publish.payload[..], b"0"),
        other => panic!("no $SYS/broker/messages/dropped: {other:?}"),
    }
}
