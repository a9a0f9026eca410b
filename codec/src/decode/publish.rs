//! PUBLISH and its acknowledgements (PUBACK, PUBREC, PUBREL, PUBCOMP). PUBLISH is the hot
//! path: the topic and payload are slices of the packet, nothing is copied.

use bytes::Bytes;

use super::{packet_id, reason};
use crate::error::DecodeError;
use crate::packet::{Protocol, PubResp, Publish, PublishProperties, QoS, ReasonProperties};
use crate::properties;
use crate::reason::{ReasonCode, ReasonContext};
use crate::wire::Reader;

pub(super) fn publish(flags: u8, body: Bytes, protocol: Protocol) -> Result<Publish, DecodeError> {
    let dup = flags & 0b1000 != 0;
    let retain = flags & 0b0001 != 0;
    let Some(qos) = QoS::from_u8((flags >> 1) & 0b11) else {
        return Err(DecodeError::Malformed("[MQTT-3.3.1-4] PUBLISH QoS is 3"));
    };
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::Malformed(
            "[MQTT-3.3.1-2] PUBLISH DUP is set on QoS 0",
        ));
    }
    let mut r = Reader::new(body);
    let topic = r.utf8_bytes()?;
    if topic.iter().any(|&b| b == b'+' || b == b'#') {
        return Err(DecodeError::TopicNameInvalid(
            "[MQTT-3.3.2-2] PUBLISH topic name contains a wildcard",
        ));
    }
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(packet_id(&mut r)?)
    };
    let properties = if protocol.is_v5() {
        properties::read_publish(&mut r)?
    } else {
        PublishProperties::default()
    };
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(if protocol.is_v5() {
            DecodeError::Protocol(
                "[MQTT-4.7.3-1] (v5 §3.3.2.1) empty topic name without topic alias",
            )
        } else {
            DecodeError::TopicNameInvalid("[MQTT-4.7.3-1] PUBLISH topic name is empty")
        });
    }
    let payload = r.rest();
    Ok(Publish {
        dup,
        qos,
        retain,
        topic,
        packet_id,
        properties,
        payload,
    })
}

pub(super) fn pub_resp(
    r: &mut Reader,
    protocol: Protocol,
    ctx: ReasonContext,
) -> Result<PubResp, DecodeError> {
    let packet_id = packet_id(r)?;
    let mut resp = PubResp {
        packet_id,
        reason_code: ReasonCode::Success,
        properties: ReasonProperties::default(),
    };
    // In v5 the reason code and the property length may each be omitted (spec 3.4.2.1).
    if protocol.is_v5() && !r.is_empty() {
        let err = match ctx {
            ReasonContext::PubAck => "[MQTT-3.4.2-1] PUBACK reason code not allowed",
            ReasonContext::PubRec => "[MQTT-3.5.2-1] PUBREC reason code not allowed",
            ReasonContext::PubRel => "[MQTT-3.6.2-1] PUBREL reason code not allowed",
            _ => "[MQTT-3.7.2-1] PUBCOMP reason code not allowed",
        };
        resp.reason_code = reason(r, ctx, err)?;
        if !r.is_empty() {
            resp.properties = properties::read_reason(r, true)?;
        }
    }
    Ok(resp)
}
