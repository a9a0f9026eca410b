//! Property tests: any packet a protocol version can express survives encode → decode, and
//! no byte sequence (random, or a valid packet corrupted) makes the decoder panic.

use bytes::{Bytes, BytesMut};
use dynamq_codec::*;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

const MAX: u32 = 1 << 24;

fn text() -> impl Strategy<Value = String> {
    // Any characters but U+0000, which MQTT strings may not contain.
    "[^\u{0}]{0,6}"
}

fn topic_name() -> impl Strategy<Value = String> {
    "[a-z0-9$/ é]{1,12}"
}

fn bin() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..12).prop_map(Bytes::from)
}

fn users() -> impl Strategy<Value = Vec<UserProperty>> {
    vec((text(), text()), 0..3)
}

fn flag() -> impl Strategy<Value = Option<u8>> {
    of(0u8..=1)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn packet_id() -> impl Strategy<Value = u16> {
    1u16..
}

fn sub_id() -> impl Strategy<Value = u32> {
    1u32..=268_435_455
}

fn reason(ctx: ReasonContext) -> impl Strategy<Value = ReasonCode> {
    proptest::sample::select(ctx.allowed())
        .prop_map(move |b| ReasonCode::from_u8_in(ctx, b).expect("allowed code"))
}

fn reason_props(v5: bool) -> BoxedStrategy<ReasonProperties> {
    if !v5 {
        return Just(ReasonProperties::default()).boxed();
    }
    (of(text()), users())
        .prop_map(|(reason_string, user_properties)| ReasonProperties {
            reason_string,
            user_properties,
        })
        .boxed()
}

fn connect(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let v5 = protocol.is_v5();
    let props = (
        (
            of(any::<u32>()),
            of(1u16..),
            of(1u32..),
            of(any::<u16>()),
            flag(),
            flag(),
        ),
        (users(), of(text()), of(bin())),
    )
        .prop_map(
            |((sei, rm, mps, tam, rri, rpi), (user_properties, method, data))| {
                ConnectProperties {
                    session_expiry_interval: sei,
                    receive_maximum: rm,
                    maximum_packet_size: mps,
                    topic_alias_maximum: tam,
                    request_response_information: rri,
                    request_problem_information: rpi,
                    user_properties,
                    // Authentication data needs a method.
                    authentication_data: method.as_ref().and(data),
                    authentication_method: method,
                }
            },
        );
    let will_props = (
        (of(any::<u32>()), flag(), of(any::<u32>())),
        (of(text()), of(text()), of(bin()), users()),
    )
        .prop_map(|((wdi, pfi, mei), (ct, rt, cd, up))| WillProperties {
            will_delay_interval: wdi,
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            content_type: ct,
            response_topic: rt,
            correlation_data: cd,
            user_properties: up,
        });
    let will = (topic_name(), bin(), qos(), any::<bool>(), will_props).prop_map(
        move |(topic, payload, qos, retain, properties)| LastWill {
            topic,
            payload,
            qos,
            retain,
            properties: if v5 {
                properties
            } else {
                WillProperties::default()
            },
        },
    );
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        of(will),
        of(text()),
        of(bin()),
        props,
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
                let mut c = Connect {
                    protocol,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password: password.map(Password),
                    properties: if v5 {
                        properties
                    } else {
                        ConnectProperties::default()
                    },
                };
                if !v5 {
                    // [MQTT-3.1.2-22], [MQTT-3.1.3-8]
                    if c.username.is_none() {
                        c.password = None;
                    }
                    if c.client_id.is_empty() {
                        c.clean_start = true;
                    }
                }
                Packet::Connect(Box::new(c))
            },
        )
}

fn connack(protocol: Protocol) -> BoxedStrategy<Packet> {
    if !protocol.is_v5() {
        let session_present = if protocol == Protocol::V310 {
            Just(false).boxed()
        } else {
            any::<bool>().boxed()
        };
        return (session_present, 0u8..=5)
            .prop_map(|(session_present, code)| {
                Packet::ConnAck(ConnAck {
                    session_present,
                    reason_code: ReasonCode::from_v3_connack(code).expect("0..=5"),
                    properties: Default::default(),
                })
            })
            .boxed();
    }
    let props = (
        (
            of(any::<u32>()),
            of(1u16..),
            flag(),
            flag(),
            of(1u32..),
            of(text()),
        ),
        (
            of(any::<u16>()),
            of(text()),
            users(),
            flag(),
            flag(),
            flag(),
        ),
        (
            of(any::<u16>()),
            of(text()),
            of(text()),
            of(text()),
            of(bin()),
        ),
    )
        .prop_map(
            |((sei, rm, mq, ra, mps, aci), (tam, rs, up, wsa, sia, ssa), (ska, ri, sr, am, ad))| {
                ConnAckProperties {
                    session_expiry_interval: sei,
                    receive_maximum: rm,
                    maximum_qos: mq,
                    retain_available: ra,
                    maximum_packet_size: mps,
                    assigned_client_identifier: aci,
                    topic_alias_maximum: tam,
                    reason_string: rs,
                    user_properties: up,
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
        );
    (any::<bool>(), reason(ReasonContext::ConnAck), props)
        .prop_map(|(session_present, reason_code, properties)| {
            Packet::ConnAck(ConnAck {
                session_present,
                reason_code,
                properties,
            })
        })
        .boxed()
}

fn publish(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let v5 = protocol.is_v5();
    let props = (
        (flag(), of(any::<u32>()), of(1u16..), of(text())),
        (of(bin()), users(), vec(sub_id(), 0..3), of(text())),
    )
        .prop_map(|((pfi, mei, ta, rt), (cd, up, si, ct))| PublishProperties {
            payload_format_indicator: pfi,
            message_expiry_interval: mei,
            topic_alias: ta,
            response_topic: rt,
            correlation_data: cd,
            user_properties: up,
            subscription_identifiers: si,
            content_type: ct,
        });
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        any::<bool>(),
        packet_id(),
        props,
        bin(),
    )
        .prop_map(
            move |(qos, dup, retain, topic, empty_topic, id, properties, payload)| {
                let properties = if v5 {
                    properties
                } else {
                    PublishProperties::default()
                };
                // v5 may send an empty topic name together with a topic alias.
                let topic = if v5 && empty_topic && properties.topic_alias.is_some() {
                    String::new()
                } else {
                    topic
                };
                Packet::Publish(Publish {
                    dup: dup && qos != QoS::AtMostOnce,
                    qos,
                    retain,
                    topic: Bytes::from(topic),
                    packet_id: (qos != QoS::AtMostOnce).then_some(id),
                    properties,
                    payload,
                })
            },
        )
}

fn pub_resp(protocol: Protocol, ctx: ReasonContext) -> BoxedStrategy<PubResp> {
    let code = if protocol.is_v5() {
        reason(ctx).boxed()
    } else {
        Just(ReasonCode::Success).boxed()
    };
    (packet_id(), code, reason_props(protocol.is_v5()))
        .prop_map(|(packet_id, reason_code, properties)| PubResp {
            packet_id,
            reason_code,
            properties,
        })
        .boxed()
}

fn subscribe(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let v5 = protocol.is_v5();
    let options =
        (qos(), any::<bool>(), any::<bool>(), 0u8..=2).prop_map(move |(qos, nl, rap, rh)| {
            if !v5 {
                return SubscriptionOptions::qos(qos);
            }
            SubscriptionOptions {
                qos,
                no_local: nl,
                retain_as_published: rap,
                retain_handling: match rh {
                    0 => RetainHandling::SendAtSubscribe,
                    1 => RetainHandling::SendIfNew,
                    _ => RetainHandling::DoNotSend,
                },
            }
        });
    let props = (of(sub_id()), users()).prop_map(move |(id, up)| {
        if !v5 {
            return SubscribeProperties::default();
        }
        SubscribeProperties {
            subscription_identifier: id,
            user_properties: up,
        }
    });
    // Filters need not be valid: the decoder leaves filter syntax to the broker.
    (packet_id(), props, vec(("[a-z/+#]{0,8}", options), 1..4)).prop_map(
        |(packet_id, properties, filters)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                filters,
            })
        },
    )
}

fn suback(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let code = if protocol.is_v5() {
        reason(ReasonContext::SubAck).boxed()
    } else {
        proptest::sample::select(vec![0u8, 1, 2, 0x80])
            .prop_map(|c| ReasonCode::from_v3_suback(c).expect("v3 code"))
            .boxed()
    };
    (packet_id(), reason_props(protocol.is_v5()), vec(code, 1..4)).prop_map(
        |(packet_id, properties, reason_codes)| {
            Packet::SubAck(SubAck {
                packet_id,
                properties,
                reason_codes,
            })
        },
    )
}

fn unsubscribe(protocol: Protocol) -> impl Strategy<Value = Packet> {
    let v5 = protocol.is_v5();
    (packet_id(), users(), vec(text(), 1..4)).prop_map(move |(packet_id, up, filters)| {
        let properties = ReasonProperties {
            reason_string: None,
            user_properties: if v5 { up } else { vec![] },
        };
        Packet::Unsubscribe(Unsubscribe {
            packet_id,
            properties,
            filters,
        })
    })
}

fn unsuback(protocol: Protocol) -> BoxedStrategy<Packet> {
    if !protocol.is_v5() {
        return packet_id()
            .prop_map(|packet_id| {
                Packet::UnsubAck(UnsubAck {
                    packet_id,
                    properties: Default::default(),
                    reason_codes: vec![],
                })
            })
            .boxed();
    }
    (
        packet_id(),
        reason_props(true),
        vec(reason(ReasonContext::UnsubAck), 1..4),
    )
        .prop_map(|(packet_id, properties, reason_codes)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                properties,
                reason_codes,
            })
        })
        .boxed()
}

fn disconnect(protocol: Protocol) -> BoxedStrategy<Packet> {
    if !protocol.is_v5() {
        return Just(Packet::Disconnect(Disconnect::new(
            ReasonCode::NormalDisconnection,
        )))
        .boxed();
    }
    let props =
        (of(any::<u32>()), of(text()), users(), of(text())).prop_map(|(sei, rs, up, sr)| {
            DisconnectProperties {
                session_expiry_interval: sei,
                reason_string: rs,
                user_properties: up,
                server_reference: sr,
            }
        });
    (reason(ReasonContext::Disconnect), props)
        .prop_map(|(reason_code, properties)| {
            Packet::Disconnect(Disconnect {
                reason_code,
                properties,
            })
        })
        .boxed()
}

fn auth() -> impl Strategy<Value = Packet> {
    let props =
        (of(text()), of(bin()), of(text()), users()).prop_map(|(am, ad, rs, up)| AuthProperties {
            authentication_method: am,
            authentication_data: ad,
            reason_string: rs,
            user_properties: up,
        });
    (reason(ReasonContext::Auth), props).prop_map(|(reason_code, properties)| {
        Packet::Auth(Auth {
            reason_code,
            properties,
        })
    })
}

/// Any packet `protocol` can express.
fn packet(protocol: Protocol) -> BoxedStrategy<Packet> {
    let mut all = vec![
        connect(protocol).boxed(),
        connack(protocol),
        publish(protocol).boxed(),
        pub_resp(protocol, ReasonContext::PubAck)
            .prop_map(Packet::PubAck)
            .boxed(),
        pub_resp(protocol, ReasonContext::PubRec)
            .prop_map(Packet::PubRec)
            .boxed(),
        pub_resp(protocol, ReasonContext::PubRel)
            .prop_map(Packet::PubRel)
            .boxed(),
        pub_resp(protocol, ReasonContext::PubComp)
            .prop_map(Packet::PubComp)
            .boxed(),
        subscribe(protocol).boxed(),
        suback(protocol).boxed(),
        unsubscribe(protocol).boxed(),
        unsuback(protocol),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect(protocol),
    ];
    if protocol.is_v5() {
        all.push(auth().boxed());
    }
    proptest::strategy::Union::new(all).boxed()
}

fn protocol_and_packet() -> impl Strategy<Value = (Protocol, Packet)> {
    prop_oneof![
        Just(Protocol::V310),
        Just(Protocol::V311),
        Just(Protocol::V5)
    ]
    .prop_flat_map(|p| (Just(p), packet(p)))
}

/// Decodes everything in `bytes`, stopping at the first error or incomplete packet; every
/// packet that decodes must re-encode to bytes that decode to the same packet.
fn decode_all(protocol: Option<Protocol>, bytes: &[u8]) -> Result<(), TestCaseError> {
    let mut d = match protocol {
        Some(p) => Decoder::with_protocol(p, MAX),
        None => Decoder::new(MAX),
    };
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(packet)) = d.decode(&mut buf) {
        let Some(protocol) = d.protocol() else {
            return Err(TestCaseError::fail(
                "a decoded packet leaves the protocol known",
            ));
        };
        let mut again = BytesMut::new();
        encode(&packet, protocol, &mut again).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let redecoded = Decoder::with_protocol(protocol, MAX).decode(&mut again);
        prop_assert_eq!(redecoded, Ok(Some(packet)));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_decode_is_identity((protocol, packet) in protocol_and_packet()) {
        let mut buf = BytesMut::new();
        encode(&packet, protocol, &mut buf).expect("encodable");
        prop_assert_eq!(buf.len(), encoded_len(&packet, protocol).expect("encodable"));
        let mut decoder = Decoder::with_protocol(protocol, MAX);
        let decoded = decoder.decode(&mut buf);
        prop_assert_eq!(decoded, Ok(Some(packet)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn encode_publish_matches_encode((protocol, packet) in protocol_and_packet()) {
        if let Packet::Publish(p) = &packet {
            let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
            encode(&packet, protocol, &mut a).expect("encodable");
            encode_publish(p, protocol, &mut b).expect("encodable");
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..300)) {
        for protocol in [None, Some(Protocol::V310), Some(Protocol::V311), Some(Protocol::V5)] {
            decode_all(protocol, &bytes)?;
        }
    }

    #[test]
    fn corrupted_packets_never_panic(
        (protocol, packet) in protocol_and_packet(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = BytesMut::new();
        encode(&packet, protocol, &mut buf).expect("encodable");
        let mut bytes = buf.to_vec();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let keep = cut.index(bytes.len() + 1);
        decode_all(Some(protocol), &bytes)?;
        decode_all(Some(protocol), &bytes[..keep])?;
        decode_all(None, &bytes)?;
    }
}
