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
