//! Decoding and encoding each packet kind with the codec the broker uses.
//!
//! Each packet is encoded once to get its bytes; `decode` then parses a fresh copy of those
//! bytes per iteration (the copy is made outside the timed part), `encode` writes it into a
//! reused buffer.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use wasmq_codec::{
    AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect, ConnectProperties,
    Disconnect, LastWill, Packet, Protocol, PubAckBody, Publish, PublishProperties, QoS,
    ReasonCode, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe, WillProperties,
};

fn s(text: &'static str) -> ByteString {
    ByteString::from_static(text)
}

fn publish(qos: QoS, payload: usize, properties: PublishProperties) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: s("sensors/building-7/floor-3/room-12/temperature"),
        packet_id: if qos == QoS::AtMostOnce { 0 } else { 42 },
        payload: Bytes::from(vec![0xA5; payload]),
        properties,
    })
}

/// One sample of every packet kind, with the protocol it is coded for.
fn samples() -> Vec<(&'static str, Protocol, Packet)> {
    let ack = PubAckBody::new(42);
    let connect = |protocol| {
        Packet::Connect(Box::new(Connect {
            protocol,
            clean_start: true,
            keep_alive: 60,
            client_id: s("bench-client-0001"),
            will: Some(LastWill {
                topic: s("clients/bench-client-0001/status"),
                payload: Bytes::from_static(b"offline"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: WillProperties::default(),
            }),
            username: Some(s("user")),
            password: Some(Bytes::from_static(b"secret")),
            // Properties exist in v5 only: a v3.1.1 CONNECT carries none.
            properties: match protocol {
                Protocol::V5 => ConnectProperties {
                    session_expiry_interval: Some(3600),
                    receive_maximum: Some(100),
                    ..Default::default()
                },
                Protocol::V311 => ConnectProperties::default(),
            },
        }))
    };
    let v5_props = PublishProperties {
        message_expiry_interval: Some(60),
        content_type: Some(s("application/json")),
        user_properties: vec![(s("trace"), s("abc123"))],
        ..Default::default()
    };
    vec![
        ("connect v311", Protocol::V311, connect(Protocol::V311)),
        ("connect v5", Protocol::V5, connect(Protocol::V5)),
        (
            "connack v5",
            Protocol::V5,
            Packet::ConnAck(ConnAck {
                session_present: false,
                reason_code: ReasonCode::SUCCESS,
                properties: ConnAckProperties {
                    receive_maximum: Some(128),
                    maximum_packet_size: Some(1 << 20),
                    topic_alias_maximum: Some(64),
                    ..Default::default()
                },
            }),
        ),
        (
            "publish q0 16B v311",
            Protocol::V311,
            publish(QoS::AtMostOnce, 16, Default::default()),
        ),
        (
            "publish q1 16B v311",
            Protocol::V311,
            publish(QoS::AtLeastOnce, 16, Default::default()),
        ),
        (
            "publish q1 1KiB v311",
            Protocol::V311,
            publish(QoS::AtLeastOnce, 1024, Default::default()),
        ),
        (
            "publish q1 64KiB v311",
            Protocol::V311,
            publish(QoS::AtLeastOnce, 65536, Default::default()),
        ),
        (
            "publish q1 16B v5 props",
            Protocol::V5,
            publish(QoS::AtLeastOnce, 16, v5_props),
        ),
        ("puback v311", Protocol::V311, Packet::PubAck(ack.clone())),
        (
            "puback v5 reason",
            Protocol::V5,
            Packet::PubAck(PubAckBody {
                packet_id: 42,
                reason_code: ReasonCode::NO_MATCHING_SUBSCRIBERS,
                properties: AckProperties::default(),
            }),
        ),
        ("pubrec v5", Protocol::V5, Packet::PubRec(ack.clone())),
        ("pubrel v5", Protocol::V5, Packet::PubRel(ack.clone())),
        ("pubcomp v5", Protocol::V5, Packet::PubComp(ack)),
        (
            "subscribe v5 3 filters",
            Protocol::V5,
            Packet::Subscribe(Subscribe {
                packet_id: 7,
                filters: vec![
                    (
                        s("sensors/+/temperature"),
                        SubscriptionOptions::qos(QoS::AtLeastOnce),
                    ),
                    (s("alerts/#"), SubscriptionOptions::qos(QoS::ExactlyOnce)),
                    (
                        s("$share/g/jobs/+"),
                        SubscriptionOptions::qos(QoS::AtMostOnce),
                    ),
                ],
                properties: Default::default(),
            }),
        ),
        (
            "suback v5",
            Protocol::V5,
            Packet::SubAck(SubAck {
                packet_id: 7,
                reason_codes: vec![
                    ReasonCode::GRANTED_QOS_1,
                    ReasonCode::GRANTED_QOS_2,
                    ReasonCode(0),
                ],
                properties: Default::default(),
            }),
        ),
        (
            "unsubscribe v5",
            Protocol::V5,
            Packet::Unsubscribe(Unsubscribe {
                packet_id: 8,
                filters: vec![s("sensors/+/temperature"), s("alerts/#")],
                user_properties: Vec::new(),
            }),
        ),
        (
            "unsuback v5",
            Protocol::V5,
            Packet::UnsubAck(UnsubAck {
                packet_id: 8,
                reason_codes: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
                properties: Default::default(),
            }),
        ),
        ("pingreq", Protocol::V5, Packet::PingReq),
        ("pingresp", Protocol::V5, Packet::PingResp),
        (
            "disconnect v5",
            Protocol::V5,
            Packet::Disconnect(Disconnect {
                reason_code: ReasonCode::NORMAL_DISCONNECTION,
                properties: Default::default(),
            }),
        ),
        (
            "auth v5",
            Protocol::V5,
            Packet::Auth(Auth {
                reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
                properties: AuthProperties {
                    authentication_method: Some(s("SCRAM-SHA-256")),
                    authentication_data: Some(Bytes::from_static(&[7; 32])),
                    ..Default::default()
                },
            }),
        ),
    ]
}

fn codec(c: &mut Criterion) {
    let mut decode = c.benchmark_group("decode");
    for (name, protocol, packet) in samples() {
        let mut bytes = BytesMut::new();
        packet.encode(protocol, &mut bytes);
        let bytes = bytes.freeze();
        // Sanity: the sample decodes back to itself, so the bench measures a real path.
        let mut check = BytesMut::from(&bytes[..]);
        assert_eq!(
            Packet::decode(&mut check, protocol, u32::MAX).unwrap(),
            Some(packet.clone())
        );
        decode.bench_function(name, |b| {
            b.iter_batched_ref(
                || BytesMut::from(&bytes[..]),
                |buf| Packet::decode(black_box(buf), protocol, u32::MAX).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    decode.finish();
    let mut encode = c.benchmark_group("encode");
    for (name, protocol, packet) in samples() {
        let mut buf = BytesMut::with_capacity(128 * 1024);
        encode.bench_function(name, |b| {
            b.iter(|| {
                buf.clear();
                black_box(&packet).encode(protocol, &mut buf);
                black_box(buf.len())
            })
        });
    }
    encode.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = codec
}
criterion_main!(benches);
