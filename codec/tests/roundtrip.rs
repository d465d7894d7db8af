//! Model-free round trip: any packet that is representable on a protocol encodes to bytes
//! that decode to the same packet, and `encoded_len` predicts the encoding's length.
//!
//! The strategies generate only what the protocol can carry: on v3.1.1 properties are
//! empty, acknowledgements succeed, and reason codes are among those v3.1.1 has a return
//! code for; on v5 every property and every reason code valid in the packet may appear.

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use proptest::{collection::vec, option, prelude::*};
use wasmq_codec::{
    AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect, ConnectProperties,
    DecodeError, Disconnect, DisconnectProperties, LastWill, Packet, Protocol, PubAckBody, Publish,
    PublishProperties, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, SubscribeProperties,
    SubscriptionOptions, UnsubAck, Unsubscribe, UserProperties, WillProperties,
};

fn string() -> impl Strategy<Value = ByteString> {
    "[^\\x00]{0,12}".prop_map(ByteString::from)
}

fn opt_string() -> impl Strategy<Value = Option<ByteString>> {
    option::of(string())
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn user_properties() -> impl Strategy<Value = UserProperties> {
    vec((string(), string()), 0..3)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn packet_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn code(codes: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    prop::sample::select(codes).prop_map(ReasonCode)
}

fn opt_bool() -> impl Strategy<Value = Option<bool>> {
    option::of(any::<bool>())
}

fn nonzero_u16() -> impl Strategy<Value = Option<u16>> {
    option::of(1..=u16::MAX)
}

fn nonzero_u32() -> impl Strategy<Value = Option<u32>> {
    option::of(1..=u32::MAX)
}

fn subscription_identifier() -> impl Strategy<Value = u32> {
    1..=268_435_455u32
}

fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
    (
        option::of(any::<u32>()),
        nonzero_u16(),
        nonzero_u32(),
        option::of(any::<u16>()),
        opt_bool(),
        opt_bool(),
        user_properties(),
        opt_string(),
        option::of(binary()),
    )
        .prop_map(
            |(sei, rm, mps, tam, rri, rpi, user, method, data)| ConnectProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_packet_size: mps,
                topic_alias_maximum: tam,
                request_response_information: rri,
                request_problem_information: rpi,
                user_properties: user,
                authentication_method: method,
                authentication_data: data,
            },
        )
}

fn will_properties() -> impl Strategy<Value = WillProperties> {
    (
        option::of(any::<u32>()),
        option::of(0..=1u8),
        option::of(any::<u32>()),
        opt_string(),
        opt_string(),
        option::of(binary()),
        user_properties(),
    )
        .prop_map(|(delay, pfi, expiry, ct, rt, cd, user)| WillProperties {
            will_delay_interval: delay,
            payload_format_indicator: pfi,
            message_expiry_interval: expiry,
            content_type: ct,
            response_topic: rt,
            correlation_data: cd,
            user_properties: user,
        })
}

fn connect(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let v5 = protocol == Protocol::V5;
    let will_properties = if v5 {
        will_properties().boxed()
    } else {
        Just(WillProperties::default()).boxed()
    };
    let properties = if v5 {
        connect_properties().boxed()
    } else {
        Just(ConnectProperties::default()).boxed()
    };
    let will =
        option::of((string(), binary(), qos(), any::<bool>(), will_properties)).prop_map(|w| {
            w.map(|(topic, payload, qos, retain, properties)| LastWill {
                topic,
                payload,
                qos,
                retain,
                properties,
            })
        });
    (
        any::<bool>(),
        any::<u16>(),
        string(),
        will,
        opt_string(),
        option::of(binary()),
        properties,
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
                // v3.1.1 has no password without a user name [MQTT-3.1.2-22].
                let password = if v5 || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Box::new(Connect {
                    protocol,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                }))
            },
        )
}

fn connack_properties() -> impl Strategy<Value = ConnAckProperties> {
    (
        (
            option::of(any::<u32>()),
            nonzero_u16(),
            option::of(0..=1u8),
            opt_bool(),
            nonzero_u32(),
            opt_string(),
            option::of(any::<u16>()),
            opt_string(),
            user_properties(),
        ),
        (
            opt_bool(),
            opt_bool(),
            opt_bool(),
            option::of(any::<u16>()),
            opt_string(),
            opt_string(),
            opt_string(),
            option::of(binary()),
        ),
    )
        .prop_map(
            |((sei, rm, mq, ra, mps, aci, tam, rs, user), (wsa, sia, ssa, ska, ri, sr, am, ad))| {
                ConnAckProperties {
                    session_expiry_interval: sei,
                    receive_maximum: rm,
                    maximum_qos: mq,
                    retain_available: ra,
                    maximum_packet_size: mps,
                    assigned_client_identifier: aci,
                    topic_alias_maximum: tam,
                    reason_string: rs,
                    user_properties: user,
                    wildcard_subscription_available: wsa,
                    subscription_identifiers_available: sia,
                    shared_subscription_available: ssa,
                    server_keep_alive: ska,
                    response_information: ri,
                    server_reference: sr,
                    authentication_method: am,
                    authentication_data: ad,
                }
            },
        )
}

fn connack(protocol: Protocol) -> BoxedStrategy<Packet> {
    match protocol {
        // The v5 codes that the v3.1.1 return codes 0-5 decode to.
        Protocol::V311 => (any::<bool>(), code(&[0x00, 0x84, 0x85, 0x88, 0x86, 0x87]))
            .prop_map(|(session_present, reason_code)| {
                Packet::ConnAck(ConnAck {
                    session_present,
                    reason_code,
                    properties: Default::default(),
                })
            })
            .boxed(),
        Protocol::V5 => (
            any::<bool>(),
            code(&[
                0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90,
                0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
            ]),
            connack_properties(),
        )
            .prop_map(|(session_present, reason_code, properties)| {
                Packet::ConnAck(ConnAck {
                    session_present,
                    reason_code,
                    properties,
                })
            })
            .boxed(),
    }
}

fn publish_properties() -> impl Strategy<Value = PublishProperties> {
    (
        option::of(0..=1u8),
        option::of(any::<u32>()),
        nonzero_u16(),
        opt_string(),
        option::of(binary()),
        user_properties(),
        vec(subscription_identifier(), 0..3),
        opt_string(),
    )
        .prop_map(|(pfi, mei, ta, rt, cd, user, ids, ct)| PublishProperties {
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            topic_alias: ta,
            response_topic: rt,
            correlation_data: cd,
            user_properties: user,
            subscription_identifiers: ids,
            content_type: ct,
        })
}

fn publish(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let properties = match protocol {
        Protocol::V5 => publish_properties().boxed(),
        Protocol::V311 => Just(PublishProperties::default()).boxed(),
    };
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        string(),
        packet_id(),
        binary(),
        properties,
    )
        .prop_map(
            |(qos, dup, retain, topic, packet_id, payload, properties)| {
                let at_most_once = qos == QoS::AtMostOnce;
                Packet::Publish(Publish {
                    dup: dup && !at_most_once,
                    qos,
                    retain,
                    topic,
                    packet_id: if at_most_once { 0 } else { packet_id },
                    payload,
                    properties,
                })
            },
        )
}

fn ack_properties(protocol: Protocol) -> BoxedStrategy<AckProperties> {
    match protocol {
        Protocol::V5 => (opt_string(), user_properties())
            .prop_map(|(reason_string, user_properties)| AckProperties {
                reason_string,
                user_properties,
            })
            .boxed(),
        Protocol::V311 => Just(AckProperties::default()).boxed(),
    }
}

fn ack(protocol: Protocol) -> impl Strategy<Value = Packet> {
    const PUBACK: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
    const PUBREL: &[u8] = &[0x00, 0x92];
    let body = move |codes: &'static [u8]| {
        let codes = if protocol == Protocol::V5 {
            codes
        } else {
            &[0x00]
        };
        (packet_id(), code(codes), ack_properties(protocol)).prop_map(
            |(packet_id, reason_code, properties)| PubAckBody {
                packet_id,
                reason_code,
                properties,
            },
        )
    };
    prop_oneof![
        body(PUBACK).prop_map(Packet::PubAck),
        body(PUBACK).prop_map(Packet::PubRec),
        body(PUBREL).prop_map(Packet::PubRel),
        body(PUBREL).prop_map(Packet::PubComp),
    ]
}

fn subscription_options(protocol: Protocol) -> BoxedStrategy<SubscriptionOptions> {
    match protocol {
        Protocol::V311 => qos().prop_map(SubscriptionOptions::qos).boxed(),
        Protocol::V5 => (
            qos(),
            any::<bool>(),
            any::<bool>(),
            prop_oneof![
                Just(RetainHandling::SendAtSubscribe),
                Just(RetainHandling::SendIfNew),
                Just(RetainHandling::DoNotSend),
            ],
        )
            .prop_map(
                |(qos, no_local, retain_as_published, retain_handling)| SubscriptionOptions {
                    qos,
                    no_local,
                    retain_as_published,
                    retain_handling,
                },
            )
            .boxed(),
    }
}

fn subscribe(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let properties = match protocol {
        Protocol::V5 => (option::of(subscription_identifier()), user_properties())
            .prop_map(
                |(subscription_identifier, user_properties)| SubscribeProperties {
                    subscription_identifier,
                    user_properties,
                },
            )
            .boxed(),
        Protocol::V311 => Just(SubscribeProperties::default()).boxed(),
    };
    (
        packet_id(),
        vec((string(), subscription_options(protocol)), 1..4),
        properties,
    )
        .prop_map(|(packet_id, filters, properties)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties,
            })
        })
}

fn suback(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let codes: &'static [u8] = match protocol {
        Protocol::V311 => &[0x00, 0x01, 0x02, 0x80],
        Protocol::V5 => &[
            0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
        ],
    };
    (
        packet_id(),
        vec(code(codes), 1..4),
        ack_properties(protocol),
    )
        .prop_map(|(packet_id, reason_codes, properties)| {
            Packet::SubAck(SubAck {
                packet_id,
                reason_codes,
                properties,
            })
        })
}

fn unsubscribe(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let user = match protocol {
        Protocol::V5 => user_properties().boxed(),
        Protocol::V311 => Just(UserProperties::new()).boxed(),
    };
    (packet_id(), vec(string(), 1..4), user).prop_map(|(packet_id, filters, user_properties)| {
        Packet::Unsubscribe(Unsubscribe {
            packet_id,
            filters,
            user_properties,
        })
    })
}

fn unsuback(protocol: Protocol) -> BoxedStrategy<Packet> {
    match protocol {
        Protocol::V311 => packet_id()
            .prop_map(|packet_id| {
                Packet::UnsubAck(UnsubAck {
                    packet_id,
                    ..Default::default()
                })
            })
            .boxed(),
        Protocol::V5 => (
            packet_id(),
            vec(code(&[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91]), 1..4),
            ack_properties(protocol),
        )
            .prop_map(|(packet_id, reason_codes, properties)| {
                Packet::UnsubAck(UnsubAck {
                    packet_id,
                    reason_codes,
                    properties,
                })
            })
            .boxed(),
    }
}

fn disconnect(protocol: Protocol) -> BoxedStrategy<Packet> {
    match protocol {
        Protocol::V311 => Just(Packet::Disconnect(Disconnect::default())).boxed(),
        Protocol::V5 => (
            code(&[
                0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93,
                0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1,
                0xA2,
            ]),
            option::of(any::<u32>()),
            opt_string(),
            user_properties(),
            opt_string(),
        )
            .prop_map(|(reason_code, sei, rs, user, sr)| {
                Packet::Disconnect(Disconnect {
                    reason_code,
                    properties: DisconnectProperties {
                        session_expiry_interval: sei,
                        reason_string: rs,
                        user_properties: user,
                        server_reference: sr,
                    },
                })
            })
            .boxed(),
    }
}

fn auth() -> impl Strategy<Value = Packet> {
    (
        code(&[0x00, 0x18, 0x19]),
        opt_string(),
        option::of(binary()),
        opt_string(),
        user_properties(),
    )
        .prop_map(|(reason_code, method, data, rs, user)| {
            Packet::Auth(Auth {
                reason_code,
                properties: AuthProperties {
                    authentication_method: method,
                    authentication_data: data,
                    reason_string: rs,
                    user_properties: user,
                },
            })
        })
}

fn packet(protocol: Protocol) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(protocol),
        connack(protocol),
        publish(protocol),
        ack(protocol),
        subscribe(protocol),
        suback(protocol),
        unsubscribe(protocol),
        unsuback(protocol),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(protocol),
    ];
    match protocol {
        Protocol::V311 => common.boxed(),
        Protocol::V5 => prop_oneof![10 => common, 1 => auth()].boxed(),
    }
}

fn round_trip(packet: &Packet, protocol: Protocol) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::new();
    packet.encode(protocol, &mut buf);
    prop_assert_eq!(buf.len(), packet.encoded_len(protocol));
    let len = buf.len() as u32;
    // Refused one byte under its size, accepted at exactly its size.
    let mut short = buf.clone();
    let too_large = Packet::decode(&mut short, protocol, len - 1);
    let too_large_refused = matches!(too_large, Err(DecodeError::PacketTooLarge { .. }));
    prop_assert!(too_large_refused, "{:?}", too_large);
    let decoded =
        Packet::decode(&mut buf, protocol, len).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(decoded.as_ref(), Some(packet));
    prop_assert!(buf.is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn v311_round_trip(packet in packet(Protocol::V311)) {
        round_trip(&packet, Protocol::V311)?;
    }

    #[test]
    fn v5_round_trip(packet in packet(Protocol::V5)) {
        round_trip(&packet, Protocol::V5)?;
    }

    /// Every strict prefix of an encoded packet is incomplete, not an error.
    #[test]
    fn prefixes_are_incomplete(packet in packet(Protocol::V5)) {
        let mut whole = BytesMut::new();
        packet.encode(Protocol::V5, &mut whole);
        for end in 0..whole.len() {
            let mut prefix = BytesMut::from(&whole[..end]);
            prop_assert_eq!(Packet::decode(&mut prefix, Protocol::V5, u32::MAX), Ok(None));
            prop_assert_eq!(prefix.len(), end);
        }
    }

    /// Arbitrary bytes never panic the decoder; whatever decodes re-encodes to a packet
    /// that decodes the same.
    #[test]
    fn arbitrary_bytes(bytes in vec(any::<u8>(), 0..64), v5 in any::<bool>()) {
        let protocol = if v5 { Protocol::V5 } else { Protocol::V311 };
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(packet)) = Packet::decode(&mut buf, protocol, 1 << 20) {
            let protocol = match &packet {
                Packet::Connect(connect) => connect.protocol,
                _ => protocol,
            };
            round_trip(&packet, protocol)?;
        }
    }
}
