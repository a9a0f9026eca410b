//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK bodies.
//!
//! Topic filters are checked only for being well-formed strings here: the broker validates
//! each filter (`topic::valid_filter`) so that v5 can refuse one filter with SUBACK 0x8F
//! without closing the connection.

use super::{packet_id, reason};
use crate::error::DecodeError;
use crate::packet::{
    Protocol, QoS, ReasonProperties, RetainHandling, SubAck, Subscribe, SubscribeProperties,
    SubscriptionOptions, UnsubAck, Unsubscribe,
};
use crate::properties;
use crate::reason::{ReasonCode, ReasonContext};
use crate::topic;
use crate::wire::Reader;

pub(super) fn subscribe(r: &mut Reader, protocol: Protocol) -> Result<Subscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = if protocol.is_v5() {
        properties::read_subscribe(r)?
    } else {
        SubscribeProperties::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        let options = r.u8()?;
        let options = if protocol.is_v5() {
            v5_options(options, &filter)?
        } else {
            v3_options(options)?
        };
        filters.push((filter, options));
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol(
            "[MQTT-3.8.3-3] (v5 [MQTT-3.8.3-2]) SUBSCRIBE has no topic filter",
        ));
    }
    Ok(Subscribe {
        packet_id,
        properties,
        filters,
    })
}

fn v3_options(byte: u8) -> Result<SubscriptionOptions, DecodeError> {
    match QoS::from_u8(byte) {
        Some(qos) => Ok(SubscriptionOptions::qos(qos)),
        None => Err(DecodeError::Malformed(
            "[MQTT-3-8.3-4] SUBSCRIBE requested QoS byte is not 0, 1 or 2",
        )),
    }
}

fn v5_options(byte: u8, filter: &str) -> Result<SubscriptionOptions, DecodeError> {
    if byte & 0xC0 != 0 {
        return Err(DecodeError::Malformed(
            "[MQTT-3.8.3-5] SUBSCRIBE options reserved bits are not 0",
        ));
    }
    let Some(qos) = QoS::from_u8(byte & 0x03) else {
        return Err(DecodeError::Protocol(
            "[§3.8.3.1] SUBSCRIBE maximum QoS is 3",
        ));
    };
    let no_local = byte & 0x04 != 0;
    let retain_handling = match (byte >> 4) & 0x03 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => {
            return Err(DecodeError::Protocol(
                "[§3.8.3.1] SUBSCRIBE retain handling is 3",
            ));
        }
    };
    if no_local && topic::is_shared(filter) {
        return Err(DecodeError::Protocol(
            "[MQTT-3.8.3-4] no local is set on a shared subscription",
        ));
    }
    Ok(SubscriptionOptions {
        qos,
        no_local,
        retain_as_published: byte & 0x08 != 0,
        retain_handling,
    })
}

pub(super) fn suback(r: &mut Reader, protocol: Protocol) -> Result<SubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = if protocol.is_v5() {
        properties::read_reason(r, true)?
    } else {
        ReasonProperties::default()
    };
    let mut reason_codes = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        let code = if protocol.is_v5() {
            reason(
                r,
                ReasonContext::SubAck,
                "[MQTT-3.9.3-2] SUBACK reason code not allowed",
            )?
        } else {
            ReasonCode::from_v3_suback(r.u8()?).ok_or(DecodeError::Malformed(
                "[MQTT-3.9.3-2] SUBACK return code is not 0x00, 0x01, 0x02 or 0x80",
            ))?
        };
        reason_codes.push(code);
    }
    if reason_codes.is_empty() {
        return Err(DecodeError::Protocol("[§3.9.3] SUBACK has no return code"));
    }
    Ok(SubAck {
        packet_id,
        properties,
        reason_codes,
    })
}

pub(super) fn unsubscribe(r: &mut Reader, protocol: Protocol) -> Result<Unsubscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = if protocol.is_v5() {
        properties::read_reason(r, false)?
    } else {
        ReasonProperties::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.string()?);
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol(
            "[MQTT-3.10.3-2] UNSUBSCRIBE has no topic filter",
        ));
    }
    Ok(Unsubscribe {
        packet_id,
        properties,
        filters,
    })
}

pub(super) fn unsuback(r: &mut Reader, protocol: Protocol) -> Result<UnsubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    if !protocol.is_v5() {
        return Ok(UnsubAck {
            packet_id,
            properties: Default::default(),
            reason_codes: Vec::new(),
        });
    }
    let properties = properties::read_reason(r, true)?;
    let mut reason_codes = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        reason_codes.push(reason(
            r,
            ReasonContext::UnsubAck,
            "[MQTT-3.11.3-2] UNSUBACK reason code not allowed",
        )?);
    }
    if reason_codes.is_empty() {
        return Err(DecodeError::Protocol(
            "[§3.11.3] UNSUBACK has no reason code",
        ));
    }
    Ok(UnsubAck {
        packet_id,
        properties,
        reason_codes,
    })
}
