//! CONNECT and CONNACK bodies.

use bytes::Bytes;

use crate::error::DecodeError;
use crate::packet::{
    ConnAck, ConnAckProperties, Connect, ConnectProperties, LastWill, Packet, Password, Protocol,
    QoS, WillProperties,
};
use crate::properties;
use crate::reason::{ReasonCode, ReasonContext};
use crate::topic;
use crate::wire::Reader;

/// Parses a CONNECT body. `announced` receives the protocol level as soon as it is read, so
/// the caller knows which CONNACK to answer a later error with.
pub(super) fn connect(
    body: Bytes,
    announced: &mut Option<Protocol>,
) -> Result<Packet, DecodeError> {
    let mut r = Reader::new(body);
    let name = r.binary()?;
    let level = r.u8()?;
    let protocol = match (&name[..], level) {
        (b"MQTT", 4) => Protocol::V311,
        (b"MQTT", 5) => Protocol::V5,
        (b"MQIsdp", 3) => Protocol::V310,
        (b"MQTT", _) | (b"MQIsdp", _) => {
            return Err(DecodeError::UnsupportedProtocol(
                "[MQTT-3.1.2-2] unsupported protocol level",
            ));
        }
        _ => {
            return Err(DecodeError::UnsupportedProtocol(
                "[MQTT-3.1.2-1] protocol name is not MQTT (or MQIsdp for 3.1)",
            ));
        }
    };
    *announced = Some(protocol);
    let v5 = protocol.is_v5();

    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::Malformed(
            "[MQTT-3.1.2-3] CONNECT reserved flag is not 0",
        ));
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    if !will_flag && will_qos != 0 {
        return Err(DecodeError::Malformed(
            "[MQTT-3.1.2-13] (v5 [MQTT-3.1.2-11]) will QoS is not 0 without a will flag",
        ));
    }
    if !will_flag && will_retain {
        return Err(DecodeError::Malformed(
            "[MQTT-3.1.2-15] (v5 [MQTT-3.1.2-13]) will retain is set without a will flag",
        ));
    }
    let Some(will_qos) = QoS::from_u8(will_qos) else {
        return Err(DecodeError::Malformed(
            "[MQTT-3.1.2-14] (v5 [MQTT-3.1.2-12]) will QoS is 3",
        ));
    };
    if !v5 && has_password && !has_username {
        return Err(DecodeError::Malformed(
            "[MQTT-3.1.2-22] password flag is set without the user name flag",
        ));
    }
    let keep_alive = r.u16()?;
    let properties = if v5 {
        properties::read_connect(&mut r)?
    } else {
        ConnectProperties::default()
    };

    let client_id = r.string()?;
    if !v5 && client_id.is_empty() && !clean_start {
        return Err(DecodeError::ClientIdNotValid(
            "[MQTT-3.1.3-8] empty client identifier without clean session",
        ));
    }
    let will = if will_flag {
        let properties = if v5 {
            properties::read_will(&mut r)?
        } else {
            WillProperties::default()
        };
        let topic = r.string()?;
        if !topic::valid_topic_name(&topic) {
            return Err(DecodeError::TopicNameInvalid(
                "[MQTT-3.1.3-10] (v5 [MQTT-3.1.3-11]) will topic is not a valid topic name",
            ));
        }
        let payload = r.binary()?;
        Some(LastWill {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(r.string()?)
    } else {
        None
    };
    let password = if has_password {
        Some(Password(r.binary()?))
    } else {
        None
    };
    r.finish()?;
    Ok(Packet::Connect(Box::new(Connect {
        protocol,
        clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })))
}

pub(super) fn connack(r: &mut Reader, protocol: Protocol) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    // In 3.1 the first byte is reserved; 3.1.1 and 5 use bit 0 as Session Present.
    let session_present = match protocol {
        Protocol::V310 => false,
        _ if flags & 0xFE != 0 => {
            return Err(DecodeError::Malformed(
                "[MQTT-3.2.2-1] (v5 §3.2.2.1) CONNACK reserved flags are not 0",
            ));
        }
        _ => flags & 0x01 != 0,
    };
    let code = r.u8()?;
    if !protocol.is_v5() {
        let reason_code = ReasonCode::from_v3_connack(code).ok_or(DecodeError::Protocol(
            "[§3.2.2.3] CONNACK return code is reserved",
        ))?;
        return Ok(ConnAck {
            session_present,
            reason_code,
            properties: Default::default(),
        });
    }
    let reason_code = ReasonCode::from_u8_in(ReasonContext::ConnAck, code).ok_or(
        DecodeError::Malformed("[MQTT-3.2.2-8] CONNACK reason code not allowed"),
    )?;
    let properties: ConnAckProperties = properties::read_connack(r)?;
    Ok(ConnAck {
        session_present,
        reason_code,
        properties,
    })
}
