//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK bodies.

use crate::packet::{Protocol, SubAck, Subscribe, UnsubAck, Unsubscribe};
use crate::properties::{UserOnly, write_props};
use crate::wire::Sink;

pub(super) fn subscribe<S: Sink>(p: &Subscribe, protocol: Protocol, s: &mut S) {
    s.u16(p.packet_id);
    let v5 = protocol.is_v5();
    if v5 {
        write_props(&p.properties, s);
    }
    for (filter, o) in &p.filters {
        s.string(filter);
        let mut byte = o.qos as u8;
        if v5 {
            byte |= u8::from(o.no_local) << 2
                | u8::from(o.retain_as_published) << 3
                | (o.retain_handling as u8) << 4;
        }
        s.u8(byte);
    }
}

pub(super) fn suback<S: Sink>(p: &SubAck, protocol: Protocol, s: &mut S) {
    s.u16(p.packet_id);
    if protocol.is_v5() {
        write_props(&p.properties, s);
        for code in &p.reason_codes {
            s.u8(code.code());
        }
    } else {
        for code in &p.reason_codes {
            s.u8(code.to_v3_suback());
        }
    }
}

/// A reason string is not allowed in UNSUBSCRIBE; only the user properties are written.
pub(super) fn unsubscribe<S: Sink>(p: &Unsubscribe, protocol: Protocol, s: &mut S) {
    s.u16(p.packet_id);
    if protocol.is_v5() {
        write_props(&UserOnly(&p.properties.user_properties), s);
    }
    for filter in &p.filters {
        s.string(filter);
    }
}

pub(super) fn unsuback<S: Sink>(p: &UnsubAck, protocol: Protocol, s: &mut S) {
    s.u16(p.packet_id);
    if protocol.is_v5() {
        write_props(&p.properties, s);
        for code in &p.reason_codes {
            s.u8(code.code());
        }
    }
}
