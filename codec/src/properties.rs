//! MQTT 5 properties (spec 2.2.2): reading the property section of a packet into its
//! properties struct, checking which identifiers the packet allows and which may appear only
//! once, and writing a properties struct back.
//!
//! Per spec 2.2.2.2, an identifier not valid for the packet is a Malformed Packet and a
//! property included more than once where only one is allowed is a Protocol Error.

use bytes::Bytes;

use crate::error::DecodeError;
use crate::packet::{
    AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties, PublishProperties,
    ReasonProperties, SubscribeProperties, UserProperty, WillProperties,
};
use crate::wire::{Counter, Reader, Sink};

const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
const CONTENT_TYPE: u8 = 0x03;
const RESPONSE_TOPIC: u8 = 0x08;
const CORRELATION_DATA: u8 = 0x09;
const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
const SERVER_KEEP_ALIVE: u8 = 0x13;
const AUTHENTICATION_METHOD: u8 = 0x15;
const AUTHENTICATION_DATA: u8 = 0x16;
const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
const WILL_DELAY_INTERVAL: u8 = 0x18;
const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
const RESPONSE_INFORMATION: u8 = 0x1A;
const SERVER_REFERENCE: u8 = 0x1C;
const REASON_STRING: u8 = 0x1F;
const RECEIVE_MAXIMUM: u8 = 0x21;
const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
const TOPIC_ALIAS: u8 = 0x23;
const MAXIMUM_QOS: u8 = 0x24;
const RETAIN_AVAILABLE: u8 = 0x25;
const USER_PROPERTY: u8 = 0x26;
const MAXIMUM_PACKET_SIZE: u8 = 0x27;
const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

const NOT_ALLOWED: DecodeError =
    DecodeError::Malformed("[§2.2.2.2] property identifier not valid for this packet");
const TWICE: DecodeError = DecodeError::Protocol("[§2.2.2.2] property included more than once");

/// One decoded property.
enum Prop {
    Byte(u8, u8),
    U16(u8, u16),
    U32(u8, u32),
    VarInt(u8, u32),
    Str(u8, String),
    Bin(u8, Bytes),
    User(UserProperty),
}

/// Iterates over a property section.
struct Props {
    body: Reader,
}

impl Props {
    /// Reads the property length and splits the property section off `r`.
    fn read(r: &mut Reader) -> Result<Props, DecodeError> {
        let len = r.varint()? as usize;
        if len > r.remaining() {
            return Err(DecodeError::Malformed(
                "[§2.2.2.1] property length exceeds the remaining length",
            ));
        }
        Ok(Props {
            body: Reader::new(r.take(len)?),
        })
    }

    fn next(&mut self) -> Result<Option<Prop>, DecodeError> {
        if self.body.is_empty() {
            return Ok(None);
        }
        // The identifier is a variable byte integer; every defined one fits in a byte.
        let id = self.body.varint()?;
        let Ok(id) = u8::try_from(id) else {
            return Err(DecodeError::Malformed(
                "[§2.2.2.2] unknown property identifier",
            ));
        };
        let b = &mut self.body;
        let prop = match id {
            PAYLOAD_FORMAT_INDICATOR
            | REQUEST_PROBLEM_INFORMATION
            | REQUEST_RESPONSE_INFORMATION
            | MAXIMUM_QOS
            | RETAIN_AVAILABLE
            | WILDCARD_SUBSCRIPTION_AVAILABLE
            | SUBSCRIPTION_IDENTIFIER_AVAILABLE
            | SHARED_SUBSCRIPTION_AVAILABLE => {
                let v = b.u8()?;
                // Every byte property of MQTT 5.0 is a 0/1 flag; other values are a
                // Protocol Error (spec 3.1.2.11.6, 3.1.2.11.7, 3.2.2.3.4 ...).
                if v > 1 {
                    return Err(DecodeError::Protocol(
                        "[§2.2.2.2] byte property has a value other than 0 or 1",
                    ));
                }
                Prop::Byte(id, v)
            }
            SERVER_KEEP_ALIVE | RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | TOPIC_ALIAS => {
                Prop::U16(id, b.u16()?)
            }
            MESSAGE_EXPIRY_INTERVAL
            | SESSION_EXPIRY_INTERVAL
            | WILL_DELAY_INTERVAL
            | MAXIMUM_PACKET_SIZE => Prop::U32(id, b.u32()?),
            SUBSCRIPTION_IDENTIFIER => {
                let v = b.varint()?;
                if v == 0 {
                    return Err(DecodeError::Protocol(
                        "[§3.3.2.3.8] (§3.8.2.1.2) subscription identifier is 0",
                    ));
                }
                Prop::VarInt(id, v)
            }
            CONTENT_TYPE
            | RESPONSE_TOPIC
            | ASSIGNED_CLIENT_IDENTIFIER
            | AUTHENTICATION_METHOD
            | RESPONSE_INFORMATION
            | SERVER_REFERENCE
            | REASON_STRING => Prop::Str(id, b.string()?),
            CORRELATION_DATA | AUTHENTICATION_DATA => Prop::Bin(id, b.binary()?),
            USER_PROPERTY => Prop::User((b.string()?, b.string()?)),
            _ => {
                return Err(DecodeError::Malformed(
                    "[§2.2.2.2] unknown property identifier",
                ));
            }
        };
        Ok(Some(prop))
    }
}

fn once<T>(slot: &mut Option<T>, v: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(TWICE);
    }
    *slot = Some(v);
    Ok(())
}

fn nonzero_u16(v: u16, err: &'static str) -> Result<u16, DecodeError> {
    if v == 0 {
        Err(DecodeError::Protocol(err))
    } else {
        Ok(v)
    }
}

pub(crate) fn read_connect(r: &mut Reader) -> Result<ConnectProperties, DecodeError> {
    let mut p = ConnectProperties::default();
    let mut props = Props::read(r)?;
    while let Some(prop) = props.next()? {
        match prop {
            Prop::U32(SESSION_EXPIRY_INTERVAL, v) => once(&mut p.session_expiry_interval, v)?,
            Prop::U16(RECEIVE_MAXIMUM, v) => {
                let v = nonzero_u16(v, "[§3.1.2.11.3] receive maximum is 0")?;
                once(&mut p.receive_maximum, v)?
            }
            Prop::U32(MAXIMUM_PACKET_SIZE, v) => {
                if v == 0 {
                    return Err(DecodeError::Protocol(
                        "[§3.1.2.11.4] maximum packet size is 0",
                    ));
                }
                once(&mut p.maximum_packet_size, v)?
            }
            Prop::U16(TOPIC_ALIAS_MAXIMUM, v) => once(&mut p.topic_alias_maximum, v)?,
            Prop::Byte(REQUEST_RESPONSE_INFORMATION, v) => {
                once(&mut p.request_response_information, v)?
            }
            Prop::Byte(REQUEST_PROBLEM_INFORMATION, v) => {
                once(&mut p.request_problem_information, v)?
            }
            Prop::User(u) => p.user_properties.push(u),
            Prop::Str(AUTHENTICATION_METHOD, v) => once(&mut p.authentication_method, v)?,
            Prop::Bin(AUTHENTICATION_DATA, v) => once(&mut p.authentication_data, v)?,
            _ => return Err(NOT_ALLOWED),
        }
    }
    if p.authentication_data.is_some() && p.authentication_method.is_none() {
        return Err(DecodeError::Protocol(
            "[§3.1.2.11.10] authentication data without an authentication method",
        ));
    }
    Ok(p)
}

pub(crate) fn read_will(r: &mut Reader) -> Result<WillProperties, DecodeError> {
    let mut p = WillProperties::default();
    let mut props = Props::read(r)?;
    while let Some(prop) = props.next()? {
        match prop {
            Prop::U32(WILL_DELAY_INTERVAL, v) => once(&mut p.will_delay_interval, v)?,
            Prop::Byte(PAYLOAD_FORMAT_INDICATOR, v) => once(&mut p.payload_format_indicator, v)?,
            Prop::U32(MESSAGE_EXPIRY_INTERVAL, v) => once(&mut p.message_expiry_interval, v)?,
            Prop::Str(CONTENT_TYPE, v) => once(&mut p.content_type, v)?,
            Prop::Str(RESPONSE_TOPIC, v) => once(&mut p.response_topic, v)?,
            Prop::Bin(CORRELATION_DATA, v) => once(&mut p.correlation_data, v)?,
            Prop::User(u) => p.user_properties.push(u),
            _ => return Err(NOT_ALLOWED),
        }
    }
    Ok(p)
}

pub(crate) fn read_connack(r: &mut Reader) -> Result<ConnAckProperties, DecodeError> {
    let mut p = ConnAckProperties::default();
    let mut props = Props::read(r)?;
    while let Some(prop) = props.next()? {
        match prop {
            Prop::U32(SESSION_EXPIRY_INTERVAL, v) => once(&mut p.session_expiry_interval, v)?,
            Prop::U16(RECEIVE_MAXIMUM, v) => {
                let v = nonzero_u16(v, "[§3.2.2.3.3] receive maximum is 0")?;
                once(&mut p.receive_maximum, v)?
            }
            Prop::Byte(MAXIMUM_QOS, v) => once(&mut p.maximum_qos, v)?,
            Prop::Byte(RETAIN_AVAILABLE, v) => once(&mut p.retain_available, v)?,
            Prop::U32(MAXIMUM_PACKET_SIZE, v) => {
                if v == 0 {
                    return Err(DecodeError::Protocol(
                        "[§3.2.2.3.6] maximum packet size is 0",
                    ));
                }
                once(&mut p.maximum_packet_size, v)?
            }
            Prop::Str(ASSIGNED_CLIENT_IDENTIFIER, v) => once(&mut p.assigned_client_identifier, v)?,
            Prop::U16(TOPIC_ALIAS_MAXIMUM, v) => once(&mut p.topic_alias_maximum, v)?,
            Prop::Str(REASON_STRING, v) => once(&mut p.reason_string, v)?,
            Prop::User(u) => p.user_properties.push(u),
            Prop::Byte(WILDCARD_SUBSCRIPTION_AVAILABLE, v) => {
                once(&mut p.wildcard_subscription_available, v)?
            }
            Prop::Byte(SUBSCRIPTION_IDENTIFIER_AVAILABLE, v) => {
                once(&mut p.subscription_identifiers_available, v)?
            }
            Prop::Byte(SHARED_SUBSCRIPTION_AVAILABLE, v) => {
                once(&mut p.shared_subscription_available, v)?
            }
            Prop::U16(SERVER_KEEP_ALIVE, v) => once(&mut p.server_keep_alive, v)?,
            Prop::Str(RESPONSE_INFORMATION, v) => once(&mut p.response_information, v)?,
            Prop::Str(SERVER_REFERENCE, v) => once(&mut p.server_reference, v)?,
            Prop::Str(AUTHENTICATION_METHOD, v) => once(&mut p.authentication_method, v)?,
            Prop::Bin(AUTHENTICATION_DATA, v) => once(&mut p.authentication_data, v)?,
            _ => return Err(NOT_ALLOWED),
        }
    }
    Ok(p)
}

pub(crate) fn read_publish(r: &mut Reader) -> Result<PublishProperties, DecodeError> {
    let mut p = PublishProperties::default();
    let mut props = Props::read(r)?;
    while let Some(prop) = props.next()? {
        match prop {
            Prop::Byte(PAYLOAD_FORMAT_INDICATOR, v) => once(&mut p.payload_format_indicator, v)?,
            Prop::U32(MESSAGE_EXPIRY_INTERVAL, v) => once(&mut p.message_expiry_interval, v)?,
            Prop::U16(TOPIC_ALIAS, v) => {
                if v == 0 {
                    return Err(DecodeError::TopicAliasInvalid(
                        "[MQTT-3.3.2-8] PUBLISH topic alias is 0",
                    ));
                }
                once(&mut p.topic_alias, v)?
            }
            Prop::Str(RESPONSE_TOPIC, v) => once(&mut p.response_topic, v)?,
            Prop::Bin(CORRELATION_DATA, v) => once(&mut p.correlation_data, v)?,
            Prop::User(u) => p.user_properties.push(u),
            Prop::VarInt(SUBSCRIPTION_IDENTIFIER, v) => p.subscription_identifiers.push(v),
            Prop::Str(CONTENT_TYPE, v) => once(&mut p.content_type, v)?,
            _ => return Err(NOT_ALLOWED),
        }
    }
    Ok(p)
}

/// The properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK; with
/// `reason_string` false, of UNSUBSCRIBE (user properties only).
pub(crate) fn read_reason(
    r: &mut Reader,
    reason_string: bool,
) -> Result<ReasonProperties, DecodeError> {
    let mut p = ReasonProperties::default();
    let mut props = Props::read(r)?;
    while let Some(prop) = props.next()? {
        match prop {
            Prop::Str(REASON_STRING, v) if reason_string => once(&mut p.reason_string, v)?,
            Prop::User(u) => p.user_properties.push(u),
            _ => return Err(NOT_ALLOWED),
        }
    }
    Ok(p)
}

pub(crate) fn read_subscribe(r: &mut Reader) -> Result<SubscribeProperties, DecodeError> {
    let mut p = SubscribeProperties::default();
    let mut props = Props::read(r)?;
    while let Some(prop) = props.next()? {
        match prop {
            Prop::VarInt(SUBSCRIPTION_IDENTIFIER, v) => once(&mut p.subscription_identifier, v)?,
            Prop::User(u) => p.user_properties.push(u),
            _ => return Err(NOT_ALLOWED),
        }
    }
    Ok(p)
}

pub(crate) fn read_disconnect(r: &mut Reader) -> Result<DisconnectProperties, DecodeError> {
    let mut p = DisconnectProperties::default();
    let mut props = Props::read(r)?;
    while let Some(prop) = props.next()? {
        match prop {
            Prop::U32(SESSION_EXPIRY_INTERVAL, v) => once(&mut p.session_expiry_interval, v)?,
            Prop::Str(REASON_STRING, v) => once(&mut p.reason_string, v)?,
            Prop::User(u) => p.user_properties.push(u),
            Prop::Str(SERVER_REFERENCE, v) => once(&mut p.server_reference, v)?,
            _ => return Err(NOT_ALLOWED),
        }
    }
    Ok(p)
}

pub(crate) fn read_auth(r: &mut Reader) -> Result<AuthProperties, DecodeError> {
    let mut p = AuthProperties::default();
    let mut props = Props::read(r)?;
    while let Some(prop) = props.next()? {
        match prop {
            Prop::Str(AUTHENTICATION_METHOD, v) => once(&mut p.authentication_method, v)?,
            Prop::Bin(AUTHENTICATION_DATA, v) => once(&mut p.authentication_data, v)?,
            Prop::Str(REASON_STRING, v) => once(&mut p.reason_string, v)?,
            Prop::User(u) => p.user_properties.push(u),
            _ => return Err(NOT_ALLOWED),
        }
    }
    Ok(p)
}

// ---- writing -------------------------------------------------------------------------------

/// A properties struct that can write its property entries (without the property length).
pub(crate) trait WriteProps {
    fn write<S: Sink>(&self, s: &mut S);
}

/// Writes the property length, then the properties. The length comes from a counting pass;
/// when `s` is itself a [`Counter`] the second pass records any field that does not fit.
#[inline]
pub(crate) fn write_props<S: Sink, P: WriteProps>(p: &P, s: &mut S) {
    let mut counter = Counter::default();
    p.write(&mut counter);
    s.varint(counter.len);
    p.write(s);
}

#[inline]
fn byte<S: Sink>(s: &mut S, id: u8, v: Option<u8>) {
    if let Some(v) = v {
        s.u8(id);
        s.u8(v);
    }
}

#[inline]
fn two<S: Sink>(s: &mut S, id: u8, v: Option<u16>) {
    if let Some(v) = v {
        s.u8(id);
        s.u16(v);
    }
}

#[inline]
fn four<S: Sink>(s: &mut S, id: u8, v: Option<u32>) {
    if let Some(v) = v {
        s.u8(id);
        s.u32(v);
    }
}

#[inline]
fn string<S: Sink>(s: &mut S, id: u8, v: &Option<String>) {
    if let Some(v) = v {
        s.u8(id);
        s.string(v);
    }
}

#[inline]
fn binary<S: Sink>(s: &mut S, id: u8, v: &Option<Bytes>) {
    if let Some(v) = v {
        s.u8(id);
        s.binary(v);
    }
}

#[inline]
fn users<S: Sink>(s: &mut S, v: &[UserProperty]) {
    for (key, value) in v {
        s.u8(USER_PROPERTY);
        s.string(key);
        s.string(value);
    }
}

impl WriteProps for ConnectProperties {
    fn write<S: Sink>(&self, s: &mut S) {
        four(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        two(s, RECEIVE_MAXIMUM, self.receive_maximum);
        four(s, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        two(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        byte(
            s,
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        byte(
            s,
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        users(s, &self.user_properties);
        string(s, AUTHENTICATION_METHOD, &self.authentication_method);
        binary(s, AUTHENTICATION_DATA, &self.authentication_data);
    }
}

impl WriteProps for WillProperties {
    fn write<S: Sink>(&self, s: &mut S) {
        four(s, WILL_DELAY_INTERVAL, self.will_delay_interval);
        byte(s, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        four(s, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        string(s, CONTENT_TYPE, &self.content_type);
        string(s, RESPONSE_TOPIC, &self.response_topic);
        binary(s, CORRELATION_DATA, &self.correlation_data);
        users(s, &self.user_properties);
    }
}

impl WriteProps for ConnAckProperties {
    fn write<S: Sink>(&self, s: &mut S) {
        four(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        two(s, RECEIVE_MAXIMUM, self.receive_maximum);
        byte(s, MAXIMUM_QOS, self.maximum_qos);
        byte(s, RETAIN_AVAILABLE, self.retain_available);
        four(s, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        string(
            s,
            ASSIGNED_CLIENT_IDENTIFIER,
            &self.assigned_client_identifier,
        );
        two(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        string(s, REASON_STRING, &self.reason_string);
        users(s, &self.user_properties);
        byte(
            s,
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        byte(
            s,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifiers_available,
        );
        byte(
            s,
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
        two(s, SERVER_KEEP_ALIVE, self.server_keep_alive);
        string(s, RESPONSE_INFORMATION, &self.response_information);
        string(s, SERVER_REFERENCE, &self.server_reference);
        string(s, AUTHENTICATION_METHOD, &self.authentication_method);
        binary(s, AUTHENTICATION_DATA, &self.authentication_data);
    }
}

impl WriteProps for PublishProperties {
    #[inline]
    fn write<S: Sink>(&self, s: &mut S) {
        byte(s, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        four(s, MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        two(s, TOPIC_ALIAS, self.topic_alias);
        string(s, RESPONSE_TOPIC, &self.response_topic);
        binary(s, CORRELATION_DATA, &self.correlation_data);
        users(s, &self.user_properties);
        for &id in &self.subscription_identifiers {
            s.u8(SUBSCRIPTION_IDENTIFIER);
            s.varint(id as usize);
        }
        string(s, CONTENT_TYPE, &self.content_type);
    }
}

impl WriteProps for ReasonProperties {
    fn write<S: Sink>(&self, s: &mut S) {
        string(s, REASON_STRING, &self.reason_string);
        users(s, &self.user_properties);
    }
}

/// The properties of UNSUBSCRIBE: user properties only (a reason string is not allowed).
pub(crate) struct UserOnly<'a>(pub(crate) &'a [UserProperty]);

impl WriteProps for UserOnly<'_> {
    fn write<S: Sink>(&self, s: &mut S) {
        users(s, self.0);
    }
}

impl WriteProps for SubscribeProperties {
    fn write<S: Sink>(&self, s: &mut S) {
        if let Some(id) = self.subscription_identifier {
            s.u8(SUBSCRIPTION_IDENTIFIER);
            s.varint(id as usize);
        }
        users(s, &self.user_properties);
    }
}

impl WriteProps for DisconnectProperties {
    fn write<S: Sink>(&self, s: &mut S) {
        four(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        string(s, REASON_STRING, &self.reason_string);
        users(s, &self.user_properties);
        string(s, SERVER_REFERENCE, &self.server_reference);
    }
}

impl WriteProps for AuthProperties {
    fn write<S: Sink>(&self, s: &mut S) {
        string(s, AUTHENTICATION_METHOD, &self.authentication_method);
        binary(s, AUTHENTICATION_DATA, &self.authentication_data);
        string(s, REASON_STRING, &self.reason_string);
        users(s, &self.user_properties);
    }
}
