//! The CONNECT rules the decoder enforces, one test per statement.

mod common;

use bytes::BytesMut;
use common::*;
use dynamq_codec::{Decoder, Packet, Protocol, ReasonCode};

// ---- CONNECT ------------------------------------------------------------------------------

#[test]
fn protocol_name_3_1_2_1() {
    let err = decode(None, &connect(b"MQTX", 4, 2, CID)).unwrap_err();
    assert_eq!(err.v3_connack_code(), Some(1));
    rejects(
        None,
        &connect(b"MQTX", 4, 2, CID),
        ReasonCode::UnsupportedProtocolVersion,
        "[MQTT-3.1.2-1]",
    );
}

#[test]
fn protocol_level_3_1_2_2() {
    for (name, level) in [(&b"MQTT"[..], 3), (b"MQTT", 6), (b"MQIsdp", 4)] {
        rejects(
            None,
            &connect(name, level, 2, CID),
            ReasonCode::UnsupportedProtocolVersion,
            "[MQTT-3.1.2-2]",
        );
    }
}

#[test]
fn connect_reserved_flag_3_1_2_3() {
    rejects(
        None,
        &connect(b"MQTT", 4, 0x03, CID),
        MALFORMED,
        "[MQTT-3.1.2-3]",
    );
    rejects(
        None,
        &connect(b"MQTT", 5, 0x03, &[0, 0, 1, b'c']),
        MALFORMED,
        "[MQTT-3.1.2-3]",
    );
}

#[test]
fn will_qos_without_will_flag_3_1_2_13() {
    rejects(
        None,
        &connect(b"MQTT", 4, 0x0A, CID),
        MALFORMED,
        "[MQTT-3.1.2-13]",
    );
    rejects(
        None,
        &connect(b"MQTT", 5, 0x12, &[0, 0, 1, b'c']),
        MALFORMED,
        "[MQTT-3.1.2-11]",
    );
}

#[test]
fn will_qos_3_3_1_2_14() {
    let will = [0, 1, b'c', 0, 1, b't', 0, 0];
    rejects(
        None,
        &connect(b"MQTT", 4, 0x1E, &will),
        MALFORMED,
        "[MQTT-3.1.2-14]",
    );
}

#[test]
fn will_retain_without_will_flag_3_1_2_15() {
    rejects(
        None,
        &connect(b"MQTT", 4, 0x22, CID),
        MALFORMED,
        "[MQTT-3.1.2-15]",
    );
}

#[test]
fn will_topic_must_be_a_topic_name() {
    let will = [0, 1, b'c', 0, 1, b'#', 0, 0];
    rejects(
        None,
        &connect(b"MQTT", 4, 0x06, &will),
        ReasonCode::TopicNameInvalid,
        "[MQTT-3.1.3-10]",
    );
    let ok = [0, 1, b'c', 0, 1, b't', 0, 0];
    assert!(matches!(
        accepts(None, &connect(b"MQTT", 4, 0x06, &ok)),
        Packet::Connect(_)
    ));
}

#[test]
fn password_without_user_name_3_1_2_22() {
    let rest = [0, 1, b'c', 0, 2, b'p', b'w'];
    rejects(
        None,
        &connect(b"MQTT", 4, 0x42, &rest),
        MALFORMED,
        "[MQTT-3.1.2-22]",
    );
    // v5 allows a password without a user name (3.1.2.9).
    let rest5 = [0, 0, 1, b'c', 0, 2, b'p', b'w'];
    let Packet::Connect(c) = accepts(None, &connect(b"MQTT", 5, 0x42, &rest5)) else {
        panic!()
    };
    assert_eq!(
        (c.username, c.password.as_deref()),
        (None, Some(&b"pw"[..]))
    );
}

#[test]
fn empty_client_id_without_clean_session_3_1_3_8() {
    let mut d = Decoder::new(MAX);
    let err = d
        .decode(&mut BytesMut::from(&connect(b"MQTT", 4, 0x00, &[0, 0])[..]))
        .unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::ClientIdentifierNotValid);
    assert_eq!(err.v3_connack_code(), Some(2));
    assert!(err.message().starts_with("[MQTT-3.1.3-8]"));
    // The decoder remembers the announced version so the broker can answer in it.
    assert_eq!(d.protocol(), Some(Protocol::V311));
    // With clean session it is fine (the server assigns an id); v5 leaves it to the broker.
    accepts(None, &connect(b"MQTT", 4, 0x02, &[0, 0]));
    accepts(None, &connect(b"MQTT", 5, 0x00, &[0, 0, 0]));
}

#[test]
fn connect_v5_properties() {
    let with_props = |props: &[u8]| {
        let mut rest = vec![props.len() as u8];
        rest.extend_from_slice(props);
        rest.extend_from_slice(CID);
        connect(b"MQTT", 5, 0x02, &rest)
    };
    rejects(
        None,
        &with_props(&[0x21, 0, 0]),
        PROTOCOL,
        "receive maximum is 0",
    );
    rejects(
        None,
        &with_props(&[0x27, 0, 0, 0, 0]),
        PROTOCOL,
        "maximum packet size is 0",
    );
    rejects(
        None,
        &with_props(&[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 1]),
        PROTOCOL,
        "more than once",
    );
    rejects(None, &with_props(&[0x17, 2]), PROTOCOL, "other than 0 or 1");
    rejects(
        None,
        &with_props(&[0x16, 0, 1, 7]),
        PROTOCOL,
        "authentication data without",
    );
    // Topic Alias is a PUBLISH property.
    rejects(
        None,
        &with_props(&[0x23, 0, 1]),
        MALFORMED,
        "not valid for this packet",
    );
    rejects(None, &with_props(&[0x7F, 0]), MALFORMED, "unknown property");
    let Packet::Connect(c) = accepts(
        None,
        &with_props(&[
            0x21, 0, 10, 0x26, 0, 1, b'k', 0, 1, b'v', 0x26, 0, 1, b'k', 0, 0,
        ]),
    ) else {
        panic!()
    };
    assert_eq!(c.properties.receive_maximum, Some(10));
    assert_eq!(
        c.properties.user_properties.len(),
        2,
        "user properties may repeat"
    );
}
