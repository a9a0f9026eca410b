//! PUBLISH (the hot path) and its acknowledgements.

use crate::error::EncodeError;
use crate::packet::{Protocol, PubResp, PublishRef, QoS};
use crate::properties::write_props;
use crate::wire::Sink;

#[inline]
pub(super) fn check(p: &PublishRef<'_>) -> Result<(), EncodeError> {
    if p.qos != QoS::AtMostOnce && p.packet_id.is_none() {
        return Err(EncodeError::Unrepresentable(
            "QoS 1 or 2 PUBLISH without a packet id",
        ));
    }
    Ok(())
}

#[inline]
pub(super) fn first_byte(p: &PublishRef<'_>) -> u8 {
    0x30 | u8::from(p.dup) << 3 | (p.qos as u8) << 1 | u8::from(p.retain)
}

#[inline]
pub(super) fn body<S: Sink>(p: &PublishRef<'_>, protocol: Protocol, s: &mut S) {
    s.binary(p.topic);
    if p.qos != QoS::AtMostOnce {
        // `check` has refused a missing packet id.
        s.u16(p.packet_id.unwrap_or(0));
    }
    if protocol.is_v5() {
        if p.properties.is_empty() {
            s.u8(0);
        } else {
            write_props(p.properties, s);
        }
    }
    s.slice(p.payload);
}

pub(super) fn pub_resp<S: Sink>(r: &PubResp, protocol: Protocol, s: &mut S) {
    s.u16(r.packet_id);
    if !protocol.is_v5() {
        return;
    }
    // The reason code and property length may be omitted when they are the defaults
    // (spec 3.4.2.1, 3.4.2.2.1).
    let no_props = r.properties.is_empty();
    if r.reason_code.code() == 0 && no_props {
        return;
    }
    s.u8(r.reason_code.code());
    if !no_props {
        write_props(&r.properties, s);
    }
}
