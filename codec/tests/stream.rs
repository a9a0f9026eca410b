//! The decoder as a connection uses it: partial reads, several packets per read, the maximum
//! packet size enforced from the fixed header, and payloads that are slices of the read
//! buffer.

use bytes::{Bytes, BytesMut};
use dynamq_codec::{
    ConnAck, Connect, DecodeError, Decoder, EncodeError, Packet, Protocol, PubResp, Publish,
    PublishProperties, QoS, ReasonCode, SubAck, Subscribe, SubscriptionOptions, encode,
    encode_publish, encode_publish_with_max, encode_with_max,
};

const MAX: u32 = 1 << 20;

fn publish(payload: &[u8]) -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: Bytes::from_static(b"sensors/t1"),
        packet_id: Some(42),
        properties: PublishProperties {
            message_expiry_interval: Some(60),
            ..Default::default()
        },
        payload: Bytes::copy_from_slice(payload),
    }
}

fn samples(protocol: Protocol) -> Vec<Packet> {
    let connect = Connect {
        protocol,
        clean_start: true,
        keep_alive: 30,
        client_id: "c1".into(),
        will: None,
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"p").into()),
        properties: Default::default(),
    };
    vec![
        Packet::Connect(Box::new(connect)),
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: ReasonCode::Success,
            properties: Default::default(),
        }),
        Packet::Publish(Publish {
            // v3 has no properties to carry.
            properties: if protocol.is_v5() {
                publish(b"").properties
            } else {
                Default::default()
            },
            ..publish(b"hello")
        }),
        Packet::PubAck(PubResp::new(42)),
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Default::default(),
            filters: vec![("a/+".into(), SubscriptionOptions::qos(QoS::AtLeastOnce))],
        }),
        Packet::SubAck(SubAck {
            packet_id: 1,
            properties: Default::default(),
            reason_codes: vec![ReasonCode::GrantedQoS1],
        }),
        Packet::PingReq,
        Packet::PingResp,
    ]
}

fn encoded(packet: &Packet, protocol: Protocol) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, protocol, &mut buf).unwrap();
    buf.to_vec()
}

#[test]
fn every_prefix_is_incomplete() {
    for protocol in [Protocol::V310, Protocol::V311, Protocol::V5] {
        for packet in samples(protocol) {
            let bytes = encoded(&packet, protocol);
            for cut in 0..bytes.len() {
                let mut d = Decoder::with_protocol(protocol, MAX);
                let mut buf = BytesMut::from(&bytes[..cut]);
                assert_eq!(d.decode(&mut buf), Ok(None), "{packet:?} cut at {cut}");
                assert_eq!(
                    &buf[..],
                    &bytes[..cut],
                    "an incomplete packet must stay in the buffer"
                );
            }
        }
    }
}

#[test]
fn byte_by_byte_stream_of_packets() {
    for protocol in [Protocol::V310, Protocol::V311, Protocol::V5] {
        let packets = samples(protocol);
        let stream: Vec<u8> = packets.iter().flat_map(|p| encoded(p, protocol)).collect();
        let mut d = Decoder::with_protocol(protocol, MAX);
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for &byte in &stream {
            buf.extend_from_slice(&[byte]);
            while let Some(p) = d.decode(&mut buf).unwrap() {
                decoded.push(p);
            }
        }
        assert_eq!(decoded, packets);
        assert!(buf.is_empty());
    }
}

#[test]
fn several_packets_in_one_read() {
    let protocol = Protocol::V5;
    let packets = samples(protocol);
    let stream: Vec<u8> = packets.iter().flat_map(|p| encoded(p, protocol)).collect();
    let mut d = Decoder::with_protocol(protocol, MAX);
    let mut buf = BytesMut::from(&stream[..]);
    for packet in &packets {
        assert_eq!(d.decode(&mut buf).unwrap().as_ref(), Some(packet));
    }
    assert_eq!(d.decode(&mut buf), Ok(None));
}

#[test]
fn maximum_packet_size_is_enforced_before_the_body_arrives() {
    // Only the fixed header of a 268,435,460-byte PUBLISH has arrived.
    let mut d = Decoder::with_protocol(Protocol::V311, 1024);
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
    assert_eq!(
        d.decode(&mut buf),
        Err(DecodeError::PacketTooLarge {
            size: 268_435_460,
            max: 1024
        })
    );
    // Also on the server side before CONNECT.
    let mut d = Decoder::new(16);
    let mut buf = BytesMut::from(&[0x10, 0x7F][..]);
    assert!(matches!(
        d.decode(&mut buf),
        Err(DecodeError::PacketTooLarge { size: 129, max: 16 })
    ));
}

#[test]
fn maximum_packet_size_boundary() {
    let bytes = encoded(&Packet::Publish(publish(b"0123456789")), Protocol::V5);
    let size = bytes.len() as u32;
    let mut d = Decoder::with_protocol(Protocol::V5, size);
    assert!(d.decode(&mut BytesMut::from(&bytes[..])).unwrap().is_some());
    d.set_max_packet_size(size - 1);
    let err = d.decode(&mut BytesMut::from(&bytes[..])).unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::PacketTooLarge);
}

#[test]
fn publish_topic_and_payload_are_slices_of_the_read_buffer() {
    let bytes = encoded(&Packet::Publish(publish(&[9u8; 300])), Protocol::V5);
    let mut buf = BytesMut::with_capacity(4096);
    buf.extend_from_slice(&bytes);
    let range = buf.as_ptr_range();
    let within = |b: &Bytes| range.contains(&b.as_ptr()) && b.as_ptr_range().end <= range.end;
    let Some(Packet::Publish(p)) = Decoder::with_protocol(Protocol::V5, MAX)
        .decode(&mut buf)
        .unwrap()
    else {
        panic!("not a PUBLISH")
    };
    assert_eq!(p.payload.len(), 300);
    assert!(within(&p.payload), "payload was copied");
    assert!(within(&p.topic), "topic was copied");
}

#[test]
fn second_connect_is_decoded_for_the_broker_to_reject() {
    let mut d = Decoder::with_protocol(Protocol::V311, MAX);
    let bytes = encoded(&samples(Protocol::V311)[0], Protocol::V311);
    assert!(matches!(
        d.decode(&mut BytesMut::from(&bytes[..])),
        Ok(Some(Packet::Connect(_)))
    ));
    assert_eq!(d.protocol(), Some(Protocol::V311));
}

#[test]
fn connect_level_decides_the_protocol() {
    for protocol in [Protocol::V310, Protocol::V311, Protocol::V5] {
        let mut d = Decoder::new(MAX);
        let bytes = encoded(&samples(protocol)[0], protocol);
        let Some(Packet::Connect(c)) = d.decode(&mut BytesMut::from(&bytes[..])).unwrap() else {
            panic!("not CONNECT")
        };
        assert_eq!((c.protocol, d.protocol()), (protocol, Some(protocol)));
    }
}

#[test]
fn encode_refuses_what_cannot_be_sent() {
    let mut buf = BytesMut::new();
    let mut p = publish(b"x");
    p.packet_id = None;
    assert!(matches!(
        encode_publish(&p, Protocol::V311, &mut buf),
        Err(EncodeError::Unrepresentable(_))
    ));
    let auth = Packet::Auth(dynamq_codec::Auth {
        reason_code: ReasonCode::Success,
        properties: Default::default(),
    });
    assert!(matches!(
        encode(&auth, Protocol::V311, &mut buf),
        Err(EncodeError::Unrepresentable(_))
    ));
    let mut long = publish(b"x");
    long.topic = Bytes::from(vec![b'a'; 70_000]);
    assert_eq!(
        encode_publish(&long, Protocol::V5, &mut buf),
        Err(EncodeError::FieldTooLong)
    );
    let mut sub_id = publish(b"x");
    sub_id.properties.subscription_identifiers = vec![268_435_456];
    assert!(matches!(
        encode_publish(&sub_id, Protocol::V5, &mut buf),
        Err(EncodeError::Unrepresentable(_))
    ));
    assert!(buf.is_empty(), "a refused packet writes nothing");
}

#[test]
fn encode_with_max_refuses_larger_packets() {
    let p = publish(&[0u8; 100]);
    let size = encoded(&Packet::Publish(p.clone()), Protocol::V5).len();
    let mut buf = BytesMut::new();
    assert_eq!(
        encode_publish_with_max(&p, Protocol::V5, size as u32 - 1, &mut buf),
        Err(EncodeError::PacketTooLarge {
            size,
            max: size as u32 - 1
        })
    );
    assert!(buf.is_empty());
    encode_with_max(&Packet::Publish(p), Protocol::V5, size as u32, &mut buf).unwrap();
    assert_eq!(buf.len(), size);
}

#[test]
fn encode_appends() {
    let mut buf = BytesMut::from(&b"xy"[..]);
    encode(&Packet::PingResp, Protocol::V311, &mut buf).unwrap();
    assert_eq!(&buf[..], b"xy\xD0\x00");
}

#[test]
fn large_remaining_length() {
    let p = Packet::Publish(publish(&vec![1u8; 3_000_000]));
    let bytes = encoded(&p, Protocol::V5);
    assert_eq!(bytes[4] & 0x80, 0, "four length bytes");
    let mut d = Decoder::with_protocol(Protocol::V5, 4_000_000);
    assert_eq!(d.decode(&mut BytesMut::from(&bytes[..])).unwrap(), Some(p));
}
