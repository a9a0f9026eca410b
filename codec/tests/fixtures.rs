//! Byte fixtures from the examples of the MQTT 3.1.1 and 5.0 specifications, decoded and
//! re-encoded.

use bytes::{Bytes, BytesMut};
use dynamq_codec::{
    ConnAck, Decoder, Packet, Protocol, PubResp, QoS, ReasonCode, SubAck, encode, read_fixed_header,
};

const MAX: u32 = 1 << 20;

fn decode_one(protocol: Option<Protocol>, bytes: &[u8]) -> Packet {
    let mut d = match protocol {
        Some(p) => Decoder::with_protocol(p, MAX),
        None => Decoder::new(MAX),
    };
    let mut buf = BytesMut::from(bytes);
    let packet = d.decode(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty(), "decode must consume exactly one packet");
    packet
}

fn encode_bytes(packet: &Packet, protocol: Protocol) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, protocol, &mut buf).unwrap();
    assert_eq!(
        buf.len(),
        dynamq_codec::encoded_len(packet, protocol).unwrap()
    );
    buf.to_vec()
}

/// Spec 2.2.3 (v5 1.5.5), Table 2.4: the remaining length boundaries.
#[test]
fn variable_byte_integer_table() {
    let table: &[(usize, &[u8])] = &[
        (0, &[0x00]),
        (127, &[0x7F]),
        (128, &[0x80, 0x01]),
        (16_383, &[0xFF, 0x7F]),
        (16_384, &[0x80, 0x80, 0x01]),
        (2_097_151, &[0xFF, 0xFF, 0x7F]),
        (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
        (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
    ];
    for &(value, encoded) in table {
        let mut header = vec![0x30];
        header.extend_from_slice(encoded);
        assert_eq!(
            read_fixed_header(&header).unwrap(),
            Some((0x30, value, 1 + encoded.len())),
            "{value}"
        );
        // Every strict prefix is incomplete, not an error.
        for cut in 0..header.len() {
            assert_eq!(read_fixed_header(&header[..cut]).unwrap(), None);
        }
    }
    // A fifth length byte is malformed.
    assert!(read_fixed_header(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]).is_err());
}

/// The encoder writes the same remaining-length bytes as the table (up to 2,097,152; the
/// largest values are exercised by `read_fixed_header` above).
#[test]
fn remaining_length_is_encoded_as_in_table() {
    for (payload_len, expected) in [
        (0usize, vec![0x05]),
        (122, vec![0x7F]),
        (123, vec![0x80, 0x01]),
        (16_379, vec![0x80, 0x80, 0x01]),
    ] {
        let p = Packet::Publish(dynamq_codec::Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: Bytes::from_static(b"a/b"),
            packet_id: None,
            properties: Default::default(),
            payload: Bytes::from(vec![7u8; payload_len]),
        });
        let bytes = encode_bytes(&p, Protocol::V311);
        assert_eq!(
            &bytes[1..1 + expected.len()],
            &expected[..],
            "{payload_len}"
        );
    }
}

/// MQTT 3.1.1 section 3.1.2.10, the CONNECT variable header example (protocol name MQTT,
/// level 4, flags 0xCE: user name, password, will QoS 1, will flag, clean session; keep
/// alive 10), with a payload in the order of 3.1.3.
#[test]
fn connect_v311_example() {
    let bytes: &[u8] = &[
        0x10, 0x22, // CONNECT, remaining length 34
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0xCE, 0x00, 0x0A, //
        0x00, 0x03, b'c', b'i', b'd', // client id
        0x00, 0x03, b'w', b'/', b't', // will topic
        0x00, 0x02, b'b', b'y', // will message
        0x00, 0x04, b'u', b's', b'e', b'r', // user name
        0x00, 0x02, b'p', b'w', // password
    ];
    let Packet::Connect(c) = decode_one(None, bytes) else {
        panic!("not CONNECT")
    };
    assert_eq!(c.protocol, Protocol::V311);
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 10);
    assert_eq!(c.client_id, "cid");
    let will = c.will.as_ref().unwrap();
    assert_eq!(
        (
            will.topic.as_str(),
            &will.payload[..],
            will.qos,
            will.retain
        ),
        ("w/t", &b"by"[..], QoS::AtLeastOnce, false)
    );
    assert_eq!(c.username.as_deref(), Some("user"));
    assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
    assert_eq!(encode_bytes(&Packet::Connect(c), Protocol::V311), bytes);
}

/// The decoder learns the protocol from CONNECT.
#[test]
fn connect_sets_protocol() {
    let mut d = Decoder::new(MAX);
    assert_eq!(d.protocol(), None);
    let mut buf = BytesMut::from(&[0x10, 0x0C, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 0, 0, 0][..]);
    assert!(matches!(d.decode(&mut buf), Ok(Some(Packet::Connect(_)))));
    assert_eq!(d.protocol(), Some(Protocol::V311));
}

/// MQTT 3.1 (MQIsdp, level 3).
#[test]
fn connect_v31() {
    let bytes: &[u8] = &[
        0x10, 0x0F, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 2, 0, 60, 0, 1, b'x',
    ];
    let Packet::Connect(c) = decode_one(None, bytes) else {
        panic!("not CONNECT")
    };
    assert_eq!(
        (c.protocol, c.keep_alive, c.client_id.as_str()),
        (Protocol::V310, 60, "x")
    );
    assert_eq!(encode_bytes(&Packet::Connect(c), Protocol::V310), bytes);
}

/// MQTT 5.0 section 3.1.2.11, the CONNECT variable header example: flags 0xCE, keep alive
/// 10, properties length 5, Session Expiry Interval 10.
#[test]
fn connect_v5_example() {
    let bytes: &[u8] = &[
        0x10, 0x29, //
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0xCE, 0x00, 0x0A, //
        0x05, 0x11, 0x00, 0x00, 0x00, 0x0A, // properties: session expiry 10
        0x00, 0x03, b'c', b'i', b'd', // client id
        0x00, // will properties: none
        0x00, 0x03, b'w', b'/', b't', // will topic
        0x00, 0x02, b'b', b'y', // will payload
        0x00, 0x04, b'u', b's', b'e', b'r', // user name
        0x00, 0x02, b'p', b'w', // password
    ];
    let Packet::Connect(c) = decode_one(None, bytes) else {
        panic!("not CONNECT")
    };
    assert_eq!(c.protocol, Protocol::V5);
    assert_eq!(c.properties.session_expiry_interval, Some(10));
    assert_eq!(c.will.as_ref().map(|w| w.qos), Some(QoS::AtLeastOnce));
    assert_eq!(encode_bytes(&Packet::Connect(c), Protocol::V5), bytes);
}

/// MQTT 3.1.1 section 3.3.2.3, the PUBLISH variable header example: topic "a/b", packet
/// identifier 10.
#[test]
fn publish_example() {
    let bytes: &[u8] = &[
        0x32, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, b'h', b'e', b'y',
    ];
    let Packet::Publish(p) = decode_one(Some(Protocol::V311), bytes) else {
        panic!("not PUBLISH")
    };
    assert_eq!(
        (p.topic_str(), p.packet_id, p.qos, &p.payload[..]),
        ("a/b", Some(10), QoS::AtLeastOnce, &b"hey"[..])
    );
    assert_eq!(encode_bytes(&Packet::Publish(p), Protocol::V311), bytes);
}

/// A v5 PUBLISH with a topic alias and an empty topic name.
#[test]
fn publish_v5_topic_alias() {
    let bytes: &[u8] = &[0x30, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x05, b'x'];
    let Packet::Publish(p) = decode_one(Some(Protocol::V5), bytes) else {
        panic!("not PUBLISH")
    };
    assert_eq!((p.topic.len(), p.properties.topic_alias), (0, Some(5)));
    assert_eq!(encode_bytes(&Packet::Publish(p), Protocol::V5), bytes);
}

#[test]
fn acks_v3_and_v5() {
    // v3 PUBACK: packet id only.
    assert_eq!(
        decode_one(Some(Protocol::V311), &[0x40, 0x02, 0x00, 0x07]),
        Packet::PubAck(PubResp::new(7))
    );
    // v5 PUBACK with the reason code and property length omitted.
    assert_eq!(
        decode_one(Some(Protocol::V5), &[0x40, 0x02, 0x00, 0x07]),
        Packet::PubAck(PubResp::new(7))
    );
    assert_eq!(
        encode_bytes(&Packet::PubAck(PubResp::new(7)), Protocol::V5),
        [0x40, 0x02, 0x00, 0x07]
    );
    // v5 PUBREC with a reason code and no property length.
    let rec = decode_one(Some(Protocol::V5), &[0x50, 0x03, 0x00, 0x07, 0x10]);
    let Packet::PubRec(r) = &rec else { panic!() };
    assert_eq!(r.reason_code, ReasonCode::NoMatchingSubscribers);
    assert_eq!(
        encode_bytes(&rec, Protocol::V5),
        [0x50, 0x03, 0x00, 0x07, 0x10]
    );
    // PUBREL carries the 0010 flags.
    assert_eq!(
        encode_bytes(&Packet::PubRel(PubResp::new(1)), Protocol::V311),
        [0x62, 0x02, 0x00, 0x01]
    );
    // v3 drops the reason code.
    let mut failed = PubResp::new(7);
    failed.reason_code = ReasonCode::QuotaExceeded;
    assert_eq!(
        encode_bytes(&Packet::PubAck(failed), Protocol::V311),
        [0x40, 0x02, 0x00, 0x07]
    );
}

#[test]
fn connack_v3_codes() {
    let ack = |reason_code| {
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code,
            properties: Default::default(),
        })
    };
    assert_eq!(
        encode_bytes(&ack(ReasonCode::Success), Protocol::V311),
        [0x20, 0x02, 0x00, 0x00]
    );
    assert_eq!(
        encode_bytes(&ack(ReasonCode::UnsupportedProtocolVersion), Protocol::V311),
        [0x20, 0x02, 0x00, 0x01]
    );
    assert_eq!(
        encode_bytes(&ack(ReasonCode::ClientIdentifierNotValid), Protocol::V311),
        [0x20, 0x02, 0x00, 0x02]
    );
    assert_eq!(
        encode_bytes(&ack(ReasonCode::NotAuthorized), Protocol::V311),
        [0x20, 0x02, 0x00, 0x05]
    );
    // v5 always carries the property length.
    assert_eq!(
        encode_bytes(&ack(ReasonCode::Success), Protocol::V5),
        [0x20, 0x03, 0x00, 0x00, 0x00]
    );
    assert_eq!(
        decode_one(Some(Protocol::V311), &[0x20, 0x02, 0x01, 0x00]),
        Packet::ConnAck(ConnAck {
            session_present: true,
            reason_code: ReasonCode::Success,
            properties: Default::default()
        })
    );
}

/// MQTT 3.1.1 section 3.8.3 / 3.9.3 examples: SUBSCRIBE "a/b" QoS 1 and "c/d" QoS 2; a
/// SUBACK granting QoS 0 and 2 and refusing one filter.
#[test]
fn subscribe_and_suback_v311() {
    let bytes: &[u8] = &[
        0x82, 0x0E, 0x00, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0x01, 0x00, 0x03, b'c', b'/', b'd',
        0x02,
    ];
    let Packet::Subscribe(s) = decode_one(Some(Protocol::V311), bytes) else {
        panic!()
    };
    assert_eq!(s.packet_id, 10);
    assert_eq!(s.filters.len(), 2);
    assert_eq!(
        (s.filters[1].0.as_str(), s.filters[1].1.qos),
        ("c/d", QoS::ExactlyOnce)
    );
    assert_eq!(encode_bytes(&Packet::Subscribe(s), Protocol::V311), bytes);

    let suback = Packet::SubAck(SubAck {
        packet_id: 10,
        properties: Default::default(),
        reason_codes: vec![
            ReasonCode::GrantedQoS0,
            ReasonCode::GrantedQoS2,
            ReasonCode::NotAuthorized,
        ],
    });
    assert_eq!(
        encode_bytes(&suback, Protocol::V311),
        [0x90, 0x05, 0x00, 0x0A, 0x00, 0x02, 0x80]
    );
}

#[test]
fn ping_and_disconnect() {
    assert_eq!(
        decode_one(Some(Protocol::V311), &[0xC0, 0x00]),
        Packet::PingReq
    );
    assert_eq!(
        decode_one(Some(Protocol::V5), &[0xD0, 0x00]),
        Packet::PingResp
    );
    assert_eq!(encode_bytes(&Packet::PingReq, Protocol::V311), [0xC0, 0x00]);
    let normal = Packet::Disconnect(dynamq_codec::Disconnect::new(
        ReasonCode::NormalDisconnection,
    ));
    assert_eq!(decode_one(Some(Protocol::V5), &[0xE0, 0x00]), normal);
    assert_eq!(encode_bytes(&normal, Protocol::V5), [0xE0, 0x00]);
    let shutting = Packet::Disconnect(dynamq_codec::Disconnect::new(
        ReasonCode::ServerShuttingDown,
    ));
    assert_eq!(encode_bytes(&shutting, Protocol::V5), [0xE0, 0x01, 0x8B]);
    assert_eq!(encode_bytes(&shutting, Protocol::V311), [0xE0, 0x00]);
    assert_eq!(
        decode_one(Some(Protocol::V5), &[0xE0, 0x01, 0x8B]),
        shutting
    );
}
