//! CONNECT and CONNACK bodies.

use crate::packet::{ConnAck, Connect, Protocol};
use crate::properties::write_props;
use crate::wire::Sink;

pub(super) fn connect<S: Sink>(c: &Connect, s: &mut S) {
    let (name, level): (&str, u8) = match c.protocol {
        Protocol::V310 => ("MQIsdp", 3),
        Protocol::V311 => ("MQTT", 4),
        Protocol::V5 => ("MQTT", 5),
    };
    let v5 = c.protocol.is_v5();
    s.string(name);
    s.u8(level);
    let mut flags = 0u8;
    if c.clean_start {
        flags |= 0x02;
    }
    if let Some(w) = &c.will {
        flags |= 0x04 | (w.qos as u8) << 3;
        if w.retain {
            flags |= 0x20;
        }
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    s.u8(flags);
    s.u16(c.keep_alive);
    if v5 {
        write_props(&c.properties, s);
    }
    s.string(&c.client_id);
    if let Some(w) = &c.will {
        if v5 {
            write_props(&w.properties, s);
        }
        s.string(&w.topic);
        s.binary(&w.payload);
    }
    if let Some(u) = &c.username {
        s.string(u);
    }
    if let Some(p) = &c.password {
        s.binary(&p.0);
    }
}

pub(super) fn connack<S: Sink>(c: &ConnAck, protocol: Protocol, s: &mut S) {
    match protocol {
        // 3.1 has no session present flag: the first byte is reserved.
        Protocol::V310 => s.u8(0),
        _ => s.u8(u8::from(c.session_present)),
    }
    if protocol.is_v5() {
        s.u8(c.reason_code.code());
        write_props(&c.properties, s);
    } else {
        s.u8(c.reason_code.to_v3_connack());
    }
}
