//! Every protocol violation the decoder must reject outside CONNECT (see `invalid_connect.rs`),
//! one test per rule, each naming the statement it enforces; plus the reason code each error
//! maps to.

mod common;

use common::*;
use dynamq_codec::{DecodeError, Packet, ReasonCode};

// ---- fixed header ------------------------------------------------------------------------

#[test]
fn reserved_flags_pubrel_3_6_1_1() {
    rejects(V3, &frame(0x60, &[0, 1]), MALFORMED, "[MQTT-3.6.1-1]");
    rejects(V5, &frame(0x63, &[0, 1]), MALFORMED, "[MQTT-3.6.1-1]");
}

#[test]
fn reserved_flags_subscribe_3_8_1_1() {
    rejects(
        V3,
        &frame(0x80, &[0, 1, 0, 1, b'a', 0]),
        MALFORMED,
        "[MQTT-3.8.1-1]",
    );
}

#[test]
fn reserved_flags_unsubscribe_3_10_1_1() {
    rejects(
        V3,
        &frame(0xA0, &[0, 1, 0, 1, b'a']),
        MALFORMED,
        "[MQTT-3.10.1-1]",
    );
}

#[test]
fn reserved_flags_others_2_2_2_1() {
    rejects(V3, &frame(0x41, &[0, 1]), MALFORMED, "[MQTT-2.2.2-1]");
    rejects(V3, &frame(0xC8, &[]), MALFORMED, "[MQTT-2.2.2-1]");
    rejects(V5, &frame(0xE1, &[]), MALFORMED, "[MQTT-2.2.2-1]");
    rejects(
        None,
        &frame(0x11, &connect(b"MQTT", 4, 2, CID)[2..]),
        MALFORMED,
        "[MQTT-2.2.2-1]",
    );
}

#[test]
fn reserved_packet_types() {
    rejects(V3, &frame(0x00, &[]), MALFORMED, "§2.2.1");
    // AUTH exists only in v5.
    rejects(V3, &frame(0xF0, &[]), MALFORMED, "§2.2.1");
    assert!(matches!(accepts(V5, &frame(0xF0, &[])), Packet::Auth(_)));
}

#[test]
fn variable_byte_integer_minimal_1_5_5_1() {
    rejects(V3, &[0xC0, 0x80, 0x00], MALFORMED, "[MQTT-1.5.5-1]");
}

#[test]
fn variable_byte_integer_too_long() {
    rejects(
        V3,
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        MALFORMED,
        "§2.2.3",
    );
}

#[test]
fn first_packet_must_be_connect_3_1_0_1() {
    rejects(None, &frame(0xC0, &[]), PROTOCOL, "[MQTT-3.1.0-1]");
    rejects(
        None,
        &frame(0x30, &[0, 1, b'a']),
        PROTOCOL,
        "[MQTT-3.1.0-1]",
    );
}

// ---- lengths ------------------------------------------------------------------------------

#[test]
fn bytes_left_over_are_malformed() {
    rejects(V3, &frame(0x40, &[0, 1, 0]), MALFORMED, "left over");
    rejects(V3, &frame(0xC0, &[0]), MALFORMED, "left over");
    rejects(V3, &frame(0xE0, &[0]), MALFORMED, "left over");
    rejects(
        V3,
        &connect(b"MQTT", 4, 2, &[0, 1, b'c', 9]),
        MALFORMED,
        "left over",
    );
}

#[test]
fn bytes_missing_are_malformed() {
    rejects(V3, &frame(0x40, &[0]), MALFORMED, "ends inside");
    rejects(V3, &frame(0x30, &[0, 5, b'a']), MALFORMED, "ends inside");
    rejects(
        None,
        &connect(b"MQTT", 4, 2, &[0, 9, b'c']),
        MALFORMED,
        "ends inside",
    );
    // v5 property length longer than the packet.
    rejects(V5, &frame(0x30, &[0, 1, b'a', 9, 1]), MALFORMED, "§2.2.2.1");
}

// ---- UTF-8 --------------------------------------------------------------------------------

#[test]
fn ill_formed_utf8_1_5_3_1() {
    rejects(
        V3,
        &frame(0x30, &[0, 2, 0xC3, 0x28]),
        MALFORMED,
        "[MQTT-1.5.3-1]",
    );
    // An encoded surrogate (U+D800) is ill-formed UTF-8.
    rejects(
        V3,
        &frame(0x30, &[0, 3, 0xED, 0xA0, 0x80]),
        MALFORMED,
        "[MQTT-1.5.3-1]",
    );
    rejects(
        None,
        &connect(b"MQTT", 4, 2, &[0, 1, 0xFF]),
        MALFORMED,
        "[MQTT-1.5.3-1]",
    );
}

#[test]
fn null_character_1_5_3_2() {
    rejects(
        V3,
        &frame(0x30, &[0, 2, b'a', 0]),
        MALFORMED,
        "[MQTT-1.5.3-2]",
    );
    rejects(
        V3,
        &frame(0x82, &[0, 1, 0, 1, 0, 0]),
        MALFORMED,
        "[MQTT-1.5.3-2]",
    );
}

// ---- PUBLISH ------------------------------------------------------------------------------

#[test]
fn publish_qos_3_3_3_1_4() {
    rejects(
        V3,
        &frame(0x36, &[0, 1, b'a', 0, 1]),
        MALFORMED,
        "[MQTT-3.3.1-4]",
    );
}

#[test]
fn publish_dup_on_qos0_3_3_1_2() {
    rejects(V3, &frame(0x38, &[0, 1, b'a']), MALFORMED, "[MQTT-3.3.1-2]");
    accepts(V3, &frame(0x3A, &[0, 1, b'a', 0, 1]));
}

#[test]
fn publish_topic_wildcard_3_3_2_2() {
    rejects(
        V3,
        &frame(0x30, &[0, 3, b'a', b'/', b'+']),
        ReasonCode::TopicNameInvalid,
        "[MQTT-3.3.2-2]",
    );
    rejects(
        V5,
        &frame(0x30, &[0, 1, b'#', 0]),
        ReasonCode::TopicNameInvalid,
        "[MQTT-3.3.2-2]",
    );
}

#[test]
fn publish_empty_topic_4_7_3_1() {
    rejects(
        V3,
        &frame(0x30, &[0, 0]),
        ReasonCode::TopicNameInvalid,
        "[MQTT-4.7.3-1]",
    );
    rejects(V5, &frame(0x30, &[0, 0, 0]), PROTOCOL, "[MQTT-4.7.3-1]");
    accepts(V5, &frame(0x30, &[0, 0, 3, 0x23, 0, 1]));
}

#[test]
fn packet_id_zero_2_3_1_1() {
    rejects(
        V3,
        &frame(0x32, &[0, 1, b'a', 0, 0]),
        PROTOCOL,
        "[MQTT-2.3.1-1]",
    );
    rejects(
        V5,
        &frame(0x32, &[0, 1, b'a', 0, 0, 0]),
        PROTOCOL,
        "[MQTT-2.2.1-3]",
    );
    rejects(
        V3,
        &frame(0x82, &[0, 0, 0, 1, b'a', 0]),
        PROTOCOL,
        "[MQTT-2.3.1-1]",
    );
    rejects(
        V3,
        &frame(0xA2, &[0, 0, 0, 1, b'a']),
        PROTOCOL,
        "[MQTT-2.3.1-1]",
    );
    rejects(V3, &frame(0x40, &[0, 0]), PROTOCOL, "[MQTT-2.3.1-1]");
}

#[test]
fn publish_v5_properties() {
    let publish = |props: &[u8]| {
        let mut body = vec![0, 1, b'a', props.len() as u8];
        body.extend_from_slice(props);
        frame(0x30, &body)
    };
    rejects(
        V5,
        &publish(&[0x23, 0, 0]),
        ReasonCode::TopicAliasInvalid,
        "[MQTT-3.3.2-8]",
    );
    rejects(
        V5,
        &publish(&[0x0B, 0]),
        PROTOCOL,
        "subscription identifier is 0",
    );
    rejects(
        V5,
        &publish(&[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 1]),
        PROTOCOL,
        "more than once",
    );
    rejects(
        V5,
        &publish(&[0x11, 0, 0, 0, 1]),
        MALFORMED,
        "not valid for this packet",
    );
    rejects(V5, &publish(&[0x00]), MALFORMED, "unknown property");
    rejects(V5, &publish(&[0x01, 7]), PROTOCOL, "other than 0 or 1");
    // Several subscription identifiers are allowed in PUBLISH.
    let Packet::Publish(p) = accepts(V5, &publish(&[0x0B, 1, 0x0B, 0x80, 0x01])) else {
        panic!()
    };
    assert_eq!(p.properties.subscription_identifiers, [1, 128]);
}

// ---- acks ---------------------------------------------------------------------------------

#[test]
fn v5_reason_codes_must_fit_the_packet() {
    rejects(V5, &frame(0x40, &[0, 1, 0x8B]), MALFORMED, "[MQTT-3.4.2-1]");
    rejects(V5, &frame(0x50, &[0, 1, 0x92]), MALFORMED, "[MQTT-3.5.2-1]");
    rejects(V5, &frame(0x62, &[0, 1, 0x10]), MALFORMED, "[MQTT-3.6.2-1]");
    rejects(V5, &frame(0x70, &[0, 1, 0x80]), MALFORMED, "[MQTT-3.7.2-1]");
    rejects(
        V5,
        &frame(0x90, &[0, 1, 0, 0x04]),
        MALFORMED,
        "[MQTT-3.9.3-2]",
    );
    rejects(
        V5,
        &frame(0xB0, &[0, 1, 0, 0x02]),
        MALFORMED,
        "[MQTT-3.11.3-2]",
    );
    rejects(V5, &frame(0xE0, &[0x05]), MALFORMED, "[MQTT-3.14.2-1]");
    rejects(V5, &frame(0xF0, &[0x01, 0]), MALFORMED, "[MQTT-3.15.2-1]");
    rejects(V5, &frame(0x20, &[0, 0x8B, 0]), MALFORMED, "[MQTT-3.2.2-8]");
    rejects(V3, &frame(0x90, &[0, 1, 0x03]), MALFORMED, "[MQTT-3.9.3-2]");
}

#[test]
fn v5_ack_properties() {
    rejects(
        V5,
        &frame(0x40, &[0, 1, 0, 4, 0x1F, 0, 0, 0x1F]),
        MALFORMED,
        "ends inside",
    );
    rejects(
        V5,
        &frame(0x40, &[0, 1, 0, 6, 0x1F, 0, 0, 0x1F, 0, 0]),
        PROTOCOL,
        "more than once",
    );
    rejects(
        V5,
        &frame(0x40, &[0, 1, 0, 3, 0x23, 0, 1]),
        MALFORMED,
        "not valid",
    );
}

#[test]
fn connack_reserved_flags() {
    rejects(V3, &frame(0x20, &[0x02, 0]), MALFORMED, "[MQTT-3.2.2-1]");
    rejects(V3, &frame(0x20, &[0x00, 6]), PROTOCOL, "§3.2.2.3");
}

// ---- SUBSCRIBE / UNSUBSCRIBE ----------------------------------------------------------------

#[test]
fn subscribe_without_filters_3_8_3_3() {
    rejects(V3, &frame(0x82, &[0, 1]), PROTOCOL, "[MQTT-3.8.3-3]");
    rejects(V5, &frame(0x82, &[0, 1, 0]), PROTOCOL, "[MQTT-3.8.3-2]");
}

#[test]
fn unsubscribe_without_filters_3_10_3_2() {
    rejects(V3, &frame(0xA2, &[0, 1]), PROTOCOL, "[MQTT-3.10.3-2]");
    rejects(V5, &frame(0xA2, &[0, 1, 0]), PROTOCOL, "[MQTT-3.10.3-2]");
}

#[test]
fn v3_subscribe_qos_byte_3_8_3_4() {
    rejects(
        V3,
        &frame(0x82, &[0, 1, 0, 1, b'a', 0x03]),
        MALFORMED,
        "[MQTT-3-8.3-4]",
    );
    rejects(
        V3,
        &frame(0x82, &[0, 1, 0, 1, b'a', 0x04]),
        MALFORMED,
        "[MQTT-3-8.3-4]",
    );
}

#[test]
fn v5_subscription_options() {
    let sub = |filter: &[u8], options: u8| {
        let mut body = vec![0, 1, 0, 0, filter.len() as u8];
        body.extend_from_slice(filter);
        body.push(options);
        frame(0x82, &body)
    };
    rejects(V5, &sub(b"a", 0x40), MALFORMED, "[MQTT-3.8.3-5]");
    rejects(V5, &sub(b"a", 0x03), PROTOCOL, "maximum QoS is 3");
    rejects(V5, &sub(b"a", 0x30), PROTOCOL, "retain handling is 3");
    rejects(V5, &sub(b"$share/g/a", 0x04), PROTOCOL, "[MQTT-3.8.3-4]");
    let Packet::Subscribe(s) = accepts(V5, &sub(b"a", 0x2E)) else {
        panic!()
    };
    let o = &s.filters[0].1;
    assert!(o.no_local && o.retain_as_published);
    assert_eq!(o.retain_handling, dynamq_codec::RetainHandling::DoNotSend);
}

#[test]
fn subscribe_properties() {
    rejects(
        V5,
        &frame(0x82, &[0, 1, 2, 0x0B, 0, 0, 1, b'a', 0]),
        PROTOCOL,
        "subscription identifier is 0",
    );
    rejects(
        V5,
        &frame(0x82, &[0, 1, 4, 0x0B, 1, 0x0B, 2, 0, 1, b'a', 0]),
        PROTOCOL,
        "more than once",
    );
    // A reason string is not an UNSUBSCRIBE property.
    rejects(
        V5,
        &frame(0xA2, &[0, 1, 3, 0x1F, 0, 0, 0, 1, b'a']),
        MALFORMED,
        "not valid",
    );
}

#[test]
fn bad_filters_are_left_to_the_broker() {
    // The broker answers SUBACK 0x8F per filter in v5, so decoding succeeds.
    let Packet::Subscribe(s) = accepts(V3, &frame(0x82, &[0, 1, 0, 3, b'a', b'#', b'b', 0])) else {
        panic!()
    };
    assert!(!dynamq_codec::topic::valid_filter(&s.filters[0].0));
    accepts(V3, &frame(0x82, &[0, 1, 0, 0, 0]));
}

#[test]
fn error_reason_codes() {
    assert_eq!(
        DecodeError::PacketTooLarge { size: 10, max: 5 }.reason_code(),
        ReasonCode::PacketTooLarge
    );
    assert_eq!(DecodeError::Malformed("x").reason_code().code(), 0x81);
    assert_eq!(DecodeError::Protocol("x").reason_code().code(), 0x82);
    assert_eq!(
        DecodeError::UnsupportedProtocol("x").reason_code().code(),
        0x84
    );
    assert_eq!(DecodeError::Malformed("x").v3_connack_code(), None);
}
