//! MQTT 5 reason codes (spec 2.4) and their mapping onto the v3 CONNACK and SUBACK codes.

/// Every reason code of MQTT 5.0. Codes shared by several packets with different names
/// (0x00 is Success, Normal disconnection and Granted QoS 0) have one variant per name; the
/// byte value is what goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    Success,
    NormalDisconnection,
    GrantedQoS0,
    GrantedQoS1,
    GrantedQoS2,
    DisconnectWithWillMessage,
    NoMatchingSubscribers,
    NoSubscriptionExisted,
    ContinueAuthentication,
    ReAuthenticate,
    UnspecifiedError,
    MalformedPacket,
    ProtocolError,
    ImplementationSpecificError,
    UnsupportedProtocolVersion,
    ClientIdentifierNotValid,
    BadUserNameOrPassword,
    NotAuthorized,
    ServerUnavailable,
    ServerBusy,
    Banned,
    ServerShuttingDown,
    BadAuthenticationMethod,
    KeepAliveTimeout,
    SessionTakenOver,
    TopicFilterInvalid,
    TopicNameInvalid,
    PacketIdentifierInUse,
    PacketIdentifierNotFound,
    ReceiveMaximumExceeded,
    TopicAliasInvalid,
    PacketTooLarge,
    MessageRateTooHigh,
    QuotaExceeded,
    AdministrativeAction,
    PayloadFormatInvalid,
    RetainNotSupported,
    QoSNotSupported,
    UseAnotherServer,
    ServerMoved,
    SharedSubscriptionsNotSupported,
    ConnectionRateExceeded,
    MaximumConnectTime,
    SubscriptionIdentifiersNotSupported,
    WildcardSubscriptionsNotSupported,
}

impl ReasonCode {
    /// The byte on the wire.
    pub fn code(self) -> u8 {
        use ReasonCode::*;
        match self {
            Success | NormalDisconnection | GrantedQoS0 => 0x00,
            GrantedQoS1 => 0x01,
            GrantedQoS2 => 0x02,
            DisconnectWithWillMessage => 0x04,
            NoMatchingSubscribers => 0x10,
            NoSubscriptionExisted => 0x11,
            ContinueAuthentication => 0x18,
            ReAuthenticate => 0x19,
            UnspecifiedError => 0x80,
            MalformedPacket => 0x81,
            ProtocolError => 0x82,
            ImplementationSpecificError => 0x83,
            UnsupportedProtocolVersion => 0x84,
            ClientIdentifierNotValid => 0x85,
            BadUserNameOrPassword => 0x86,
            NotAuthorized => 0x87,
            ServerUnavailable => 0x88,
            ServerBusy => 0x89,
            Banned => 0x8A,
            ServerShuttingDown => 0x8B,
            BadAuthenticationMethod => 0x8C,
            KeepAliveTimeout => 0x8D,
            SessionTakenOver => 0x8E,
            TopicFilterInvalid => 0x8F,
            TopicNameInvalid => 0x90,
            PacketIdentifierInUse => 0x91,
            PacketIdentifierNotFound => 0x92,
            ReceiveMaximumExceeded => 0x93,
            TopicAliasInvalid => 0x94,
            PacketTooLarge => 0x95,
            MessageRateTooHigh => 0x96,
            QuotaExceeded => 0x97,
            AdministrativeAction => 0x98,
            PayloadFormatInvalid => 0x99,
            RetainNotSupported => 0x9A,
            QoSNotSupported => 0x9B,
            UseAnotherServer => 0x9C,
            ServerMoved => 0x9D,
            SharedSubscriptionsNotSupported => 0x9E,
            ConnectionRateExceeded => 0x9F,
            MaximumConnectTime => 0xA0,
            SubscriptionIdentifiersNotSupported => 0xA1,
            WildcardSubscriptionsNotSupported => 0xA2,
        }
    }

    /// True for codes >= 0x80.
    pub fn is_error(self) -> bool {
        self.code() >= 0x80
    }

    /// The v3.1/3.1.1 CONNACK return code for this reason [MQTT-3.2.2-4..6].
    pub fn to_v3_connack(self) -> u8 {
        use ReasonCode::*;
        match self {
            Success => 0,
            UnsupportedProtocolVersion => 1,
            ClientIdentifierNotValid => 2,
            ServerUnavailable | ServerBusy | ServerShuttingDown | UseAnotherServer
            | ServerMoved => 3,
            BadUserNameOrPassword | BadAuthenticationMethod => 4,
            NotAuthorized | Banned => 5,
            _ => 3,
        }
    }

    /// The v3.1/3.1.1 SUBACK return code: 0, 1, 2 or 0x80.
    pub fn to_v3_suback(self) -> u8 {
        use ReasonCode::*;
        match self {
            GrantedQoS0 | Success => 0,
            GrantedQoS1 => 1,
            GrantedQoS2 => 2,
            _ => 0x80,
        }
    }

    /// The granted-QoS reason code for a SUBACK.
    pub fn granted(qos: crate::QoS) -> ReasonCode {
        match qos {
            crate::QoS::AtMostOnce => ReasonCode::GrantedQoS0,
            crate::QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
            crate::QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
        }
    }
}

/// The packet a reason code byte was read from: the same byte names different codes in
/// different packets (0x00 is Granted QoS 0 in SUBACK, Normal disconnection in DISCONNECT and
/// Success elsewhere), and each packet allows only some codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonContext {
    ConnAck,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    SubAck,
    UnsubAck,
    Disconnect,
    Auth,
}

impl ReasonContext {
    /// The reason code bytes the v5 spec allows in this packet (spec 3.2.2.2, 3.4.2.1,
    /// 3.5.2.1, 3.6.2.1, 3.7.2.1, 3.9.3, 3.11.3, 3.14.2.1, 3.15.2.1).
    pub fn allowed(self) -> &'static [u8] {
        match self {
            ReasonContext::ConnAck => &[
                0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90,
                0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
            ],
            ReasonContext::PubAck | ReasonContext::PubRec => {
                &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]
            }
            ReasonContext::PubRel | ReasonContext::PubComp => &[0x00, 0x92],
            ReasonContext::SubAck => &[
                0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
            ],
            ReasonContext::UnsubAck => &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91],
            ReasonContext::Disconnect => &[
                0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93,
                0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1,
                0xA2,
            ],
            ReasonContext::Auth => &[0x00, 0x18, 0x19],
        }
    }
}

impl ReasonCode {
    /// The reason code for a byte, without packet context: 0x00 is `Success`, 0x01 and 0x02
    /// the granted QoS codes. `None` for bytes that are not reason codes.
    pub fn from_u8(byte: u8) -> Option<ReasonCode> {
        use ReasonCode::*;
        Some(match byte {
            0x00 => Success,
            0x01 => GrantedQoS1,
            0x02 => GrantedQoS2,
            0x04 => DisconnectWithWillMessage,
            0x10 => NoMatchingSubscribers,
            0x11 => NoSubscriptionExisted,
            0x18 => ContinueAuthentication,
            0x19 => ReAuthenticate,
            0x80 => UnspecifiedError,
            0x81 => MalformedPacket,
            0x82 => ProtocolError,
            0x83 => ImplementationSpecificError,
            0x84 => UnsupportedProtocolVersion,
            0x85 => ClientIdentifierNotValid,
            0x86 => BadUserNameOrPassword,
            0x87 => NotAuthorized,
            0x88 => ServerUnavailable,
            0x89 => ServerBusy,
            0x8A => Banned,
            0x8B => ServerShuttingDown,
            0x8C => BadAuthenticationMethod,
            0x8D => KeepAliveTimeout,
            0x8E => SessionTakenOver,
            0x8F => TopicFilterInvalid,
            0x90 => TopicNameInvalid,
            0x91 => PacketIdentifierInUse,
            0x92 => PacketIdentifierNotFound,
            0x93 => ReceiveMaximumExceeded,
            0x94 => TopicAliasInvalid,
            0x95 => PacketTooLarge,
            0x96 => MessageRateTooHigh,
            0x97 => QuotaExceeded,
            0x98 => AdministrativeAction,
            0x99 => PayloadFormatInvalid,
            0x9A => RetainNotSupported,
            0x9B => QoSNotSupported,
            0x9C => UseAnotherServer,
            0x9D => ServerMoved,
            0x9E => SharedSubscriptionsNotSupported,
            0x9F => ConnectionRateExceeded,
            0xA0 => MaximumConnectTime,
            0xA1 => SubscriptionIdentifiersNotSupported,
            0xA2 => WildcardSubscriptionsNotSupported,
            _ => return None,
        })
    }

    /// The reason code a byte stands for in the packet `ctx`, named as that packet names it;
    /// `None` if the packet does not allow this code.
    pub fn from_u8_in(ctx: ReasonContext, byte: u8) -> Option<ReasonCode> {
        if !ctx.allowed().contains(&byte) {
            return None;
        }
        match (ctx, byte) {
            (ReasonContext::SubAck, 0x00) => Some(ReasonCode::GrantedQoS0),
            (ReasonContext::Disconnect, 0x00) => Some(ReasonCode::NormalDisconnection),
            _ => ReasonCode::from_u8(byte),
        }
    }

    /// The v3.1/3.1.1 CONNACK return code as a reason code (the inverse of
    /// [`ReasonCode::to_v3_connack`] on the codes it produces).
    pub fn from_v3_connack(code: u8) -> Option<ReasonCode> {
        use ReasonCode::*;
        Some(match code {
            0 => Success,
            1 => UnsupportedProtocolVersion,
            2 => ClientIdentifierNotValid,
            3 => ServerUnavailable,
            4 => BadUserNameOrPassword,
            5 => NotAuthorized,
            _ => return None,
        })
    }

    /// The v3.1/3.1.1 SUBACK return code as a reason code [MQTT-3.9.3-2].
    pub fn from_v3_suback(code: u8) -> Option<ReasonCode> {
        match code {
            0x00 => Some(ReasonCode::GrantedQoS0),
            0x01 => Some(ReasonCode::GrantedQoS1),
            0x02 => Some(ReasonCode::GrantedQoS2),
            0x80 => Some(ReasonCode::UnspecifiedError),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTEXTS: [ReasonContext; 9] = [
        ReasonContext::ConnAck,
        ReasonContext::PubAck,
        ReasonContext::PubRec,
        ReasonContext::PubRel,
        ReasonContext::PubComp,
        ReasonContext::SubAck,
        ReasonContext::UnsubAck,
        ReasonContext::Disconnect,
        ReasonContext::Auth,
    ];

    #[test]
    fn from_u8_inverts_code() {
        for byte in 0..=255u8 {
            if let Some(rc) = ReasonCode::from_u8(byte) {
                assert_eq!(rc.code(), byte);
            }
        }
        assert_eq!(ReasonCode::from_u8(0x03), None);
        assert_eq!(ReasonCode::from_u8(0xA3), None);
    }

    #[test]
    fn context_decides_the_name_of_0x00() {
        assert_eq!(
            ReasonCode::from_u8_in(ReasonContext::SubAck, 0),
            Some(ReasonCode::GrantedQoS0)
        );
        assert_eq!(
            ReasonCode::from_u8_in(ReasonContext::Disconnect, 0),
            Some(ReasonCode::NormalDisconnection)
        );
        assert_eq!(
            ReasonCode::from_u8_in(ReasonContext::PubAck, 0),
            Some(ReasonCode::Success)
        );
        assert_eq!(
            ReasonCode::from_u8_in(ReasonContext::Auth, 0x18),
            Some(ReasonCode::ContinueAuthentication)
        );
        // Allowed elsewhere, not here.
        assert_eq!(ReasonCode::from_u8_in(ReasonContext::PubRel, 0x10), None);
        assert_eq!(ReasonCode::from_u8_in(ReasonContext::ConnAck, 0x8B), None);
    }

    #[test]
    fn every_allowed_byte_decodes_to_itself() {
        for ctx in CONTEXTS {
            for &byte in ctx.allowed() {
                assert_eq!(
                    ReasonCode::from_u8_in(ctx, byte).map(ReasonCode::code),
                    Some(byte)
                );
            }
        }
    }

    #[test]
    fn v3_codes_round_trip() {
        for code in 0..=5 {
            assert_eq!(
                ReasonCode::from_v3_connack(code).map(ReasonCode::to_v3_connack),
                Some(code)
            );
        }
        assert_eq!(ReasonCode::from_v3_connack(6), None);
        for code in [0, 1, 2, 0x80] {
            assert_eq!(
                ReasonCode::from_v3_suback(code).map(ReasonCode::to_v3_suback),
                Some(code)
            );
        }
        assert_eq!(ReasonCode::from_v3_suback(3), None);
    }
}
