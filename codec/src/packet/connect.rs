//! CONNECT (MQTT 3.1.1 §3.1, MQTT 5.0 §3.1).

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::{
    DecodeError, Protocol, QoS, UserProperties,
    packet::{CONNECT, check_flags},
    properties::{
        self, AUTHENTICATION_DATA, AUTHENTICATION_METHOD, CONTENT_TYPE, CORRELATION_DATA,
        MAXIMUM_PACKET_SIZE, MESSAGE_EXPIRY_INTERVAL, PAYLOAD_FORMAT_INDICATOR, PropertyReader,
        PropertySet, RECEIVE_MAXIMUM, REQUEST_PROBLEM_INFORMATION, REQUEST_RESPONSE_INFORMATION,
        RESPONSE_TOPIC, SESSION_EXPIRY_INTERVAL, TOPIC_ALIAS_MAXIMUM, USER_PROPERTY, Visitor,
        WILL_DELAY_INTERVAL, once,
    },
    wire::{
        binary_len, expect_end, read_binary, read_string, read_u8, read_u16, write_binary,
        write_fixed_header, write_string,
    },
};

/// CONNECT flags (MQTT 5.0 §3.1.2.3).
const RESERVED: u8 = 0b0000_0001;
const CLEAN_START: u8 = 0b0000_0010;
const WILL: u8 = 0b0000_0100;
const WILL_QOS_SHIFT: u8 = 3;
const WILL_QOS: u8 = 0b0001_1000;
const WILL_RETAIN: u8 = 0b0010_0000;
const PASSWORD: u8 = 0b0100_0000;
const USERNAME: u8 = 0b1000_0000;

/// The first packet a client sends. Decoding it determines the connection's protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol level 4 (3.1.1) or 5 (5.0).
    pub protocol: Protocol,
    /// Clean Session (3.1.1) / Clean Start (5.0).
    pub clean_start: bool,
    /// Keep Alive in seconds; 0 switches keep-alive off.
    pub keep_alive: u16,
    /// May be empty; the broker decides what an empty id means.
    pub client_id: ByteString,
    /// The Will Message, when the Will Flag is set.
    pub will: Option<LastWill>,
    /// User Name, when its flag is set.
    pub username: Option<ByteString>,
    /// Password, when its flag is set. Redacted in `Debug` output by the broker's logs.
    pub password: Option<Bytes>,
    /// v5 properties (all `None`/empty for 3.1.1).
    pub properties: ConnectProperties,
}

/// CONNECT properties (MQTT 5.0 §3.1.2.11).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectProperties {
    /// 0x11 Session Expiry Interval, seconds.
    pub session_expiry_interval: Option<u32>,
    /// 0x21 Receive Maximum: QoS 1/2 PUBLISHes the client accepts in flight.
    pub receive_maximum: Option<u16>,
    /// 0x27 Maximum Packet Size the client accepts.
    pub maximum_packet_size: Option<u32>,
    /// 0x22 Topic Alias Maximum the client accepts from the server.
    pub topic_alias_maximum: Option<u16>,
    /// 0x19 Request Response Information.
    pub request_response_information: Option<bool>,
    /// 0x17 Request Problem Information.
    pub request_problem_information: Option<bool>,
    /// 0x26 User Property.
    pub user_properties: UserProperties,
    /// 0x15 Authentication Method.
    pub authentication_method: Option<ByteString>,
    /// 0x16 Authentication Data.
    pub authentication_data: Option<Bytes>,
}

/// The Will Message carried in CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    /// Will Topic.
    pub topic: ByteString,
    /// Will Payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will Retain.
    pub retain: bool,
    /// Will properties (v5).
    pub properties: WillProperties,
}

/// Will properties (MQTT 5.0 §3.1.3.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WillProperties {
    /// 0x18 Will Delay Interval, seconds.
    pub will_delay_interval: Option<u32>,
    /// 0x01 Payload Format Indicator.
    pub payload_format_indicator: Option<u8>,
    /// 0x02 Message Expiry Interval, seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x03 Content Type.
    pub content_type: Option<ByteString>,
    /// 0x08 Response Topic.
    pub response_topic: Option<ByteString>,
    /// 0x09 Correlation Data.
    pub correlation_data: Option<Bytes>,
    /// 0x26 User Property.
    pub user_properties: UserProperties,
}

impl Connect {
    /// Reads a CONNECT body. The protocol comes from the packet itself, not the connection.
    pub(crate) fn read(flags: u8, mut body: Bytes) -> Result<Self, DecodeError> {
        check_flags(CONNECT, flags, 0)?;
        let name = read_binary(&mut body)?;
        let level = read_u8(&mut body)?;
        let protocol = match (&name[..], level) {
            (b"MQTT", 4) => Protocol::V311,
            (b"MQTT", 5) => Protocol::V5,
            // MQTT 3.1 named itself "MQIsdp".
            (b"MQIsdp", _) => return Err(DecodeError::UnsupportedProtocolVersion(3)),
            (b"MQTT", level) => return Err(DecodeError::UnsupportedProtocolVersion(level)),
            _ => return Err(DecodeError::InvalidProtocolName),
        };
        let connect_flags = read_u8(&mut body)?;
        if connect_flags & RESERVED != 0 {
            return Err(DecodeError::ConnectReservedFlag);
        }
        let will_qos = (connect_flags & WILL_QOS) >> WILL_QOS_SHIFT;
        let will_retain = connect_flags & WILL_RETAIN != 0;
        let has_will = connect_flags & WILL != 0;
        // [MQTT-3.1.2-11, MQTT-3.1.2-13, MQTT-3.1.2-15]
        if !has_will && (will_qos != 0 || will_retain) {
            return Err(DecodeError::InvalidWillFlags);
        }
        let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::InvalidWillFlags)?;
        let has_username = connect_flags & USERNAME != 0;
        let has_password = connect_flags & PASSWORD != 0;
        // [MQTT-3.1.2-22]; v5 allows a password alone.
        if protocol == Protocol::V311 && has_password && !has_username {
            return Err(DecodeError::PasswordWithoutUsername);
        }
        let keep_alive = read_u16(&mut body)?;
        let properties = match protocol {
            Protocol::V5 => properties::read_block(&mut body, "CONNECT")?,
            Protocol::V311 => ConnectProperties::default(),
        };
        let client_id = read_string(&mut body)?;
        let will = if has_will {
            let properties = match protocol {
                Protocol::V5 => properties::read_block(&mut body, WILL_PACKET)?,
                Protocol::V311 => WillProperties::default(),
            };
            let topic = read_string(&mut body)?;
            let payload = read_binary(&mut body)?;
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
        let username = has_username.then(|| read_string(&mut body)).transpose()?;
        let password = has_password.then(|| read_binary(&mut body)).transpose()?;
        expect_end(&body)?;
        Ok(Connect {
            protocol,
            clean_start: connect_flags & CLEAN_START != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    /// Remaining Length of this CONNECT.
    pub(crate) fn remaining_len(&self) -> usize {
        let v5 = self.protocol == Protocol::V5;
        // Protocol Name, Protocol Level, Connect Flags, Keep Alive.
        let mut len = binary_len(4) + 1 + 1 + 2;
        if v5 {
            len += properties::block_len(&self.properties);
        }
        len += binary_len(self.client_id.len());
        if let Some(will) = &self.will {
            if v5 {
                len += properties::block_len(&will.properties);
            }
            len += binary_len(will.topic.len()) + binary_len(will.payload.len());
        }
        len += self.username.as_ref().map_or(0, |u| binary_len(u.len()));
        len += self.password.as_ref().map_or(0, |p| binary_len(p.len()));
        len
    }

    /// Appends the whole packet, fixed header included, for its own `protocol`. On v3.1.1
    /// the properties are not written.
    ///
    /// # Panics
    ///
    /// If a string or binary field is longer than 65,535 bytes.
    pub fn write(&self, buf: &mut BytesMut) {
        let v5 = self.protocol == Protocol::V5;
        write_fixed_header(buf, CONNECT << 4, self.remaining_len());
        write_string(buf, "MQTT");
        buf.put_u8(self.protocol.level());
        let mut flags = 0;
        if self.clean_start {
            flags |= CLEAN_START;
        }
        if let Some(will) = &self.will {
            flags |= WILL | (will.qos as u8) << WILL_QOS_SHIFT;
            if will.retain {
                flags |= WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= USERNAME;
        }
        if self.password.is_some() {
            flags |= PASSWORD;
        }
        buf.put_u8(flags);
        buf.put_u16(self.keep_alive);
        if v5 {
            properties::write_block(&self.properties, buf);
        }
        write_string(buf, &self.client_id);
        if let Some(will) = &self.will {
            if v5 {
                properties::write_block(&will.properties, buf);
            }
            write_string(buf, &will.topic);
            write_binary(buf, &will.payload);
        }
        if let Some(username) = &self.username {
            write_string(buf, username);
        }
        if let Some(password) = &self.password {
            write_binary(buf, password);
        }
    }
}

/// How errors in will properties name where they were found.
const WILL_PACKET: &str = "CONNECT will properties";

impl PropertySet for ConnectProperties {
    fn read_one(&mut self, id: u8, r: &mut PropertyReader) -> Result<(), DecodeError> {
        match id {
            SESSION_EXPIRY_INTERVAL => once(&mut self.session_expiry_interval, id, r.u32()?),
            RECEIVE_MAXIMUM => once(&mut self.receive_maximum, id, r.nonzero_u16(id)?),
            MAXIMUM_PACKET_SIZE => once(&mut self.maximum_packet_size, id, r.nonzero_u32(id)?),
            TOPIC_ALIAS_MAXIMUM => once(&mut self.topic_alias_maximum, id, r.u16()?),
            REQUEST_RESPONSE_INFORMATION => {
                once(&mut self.request_response_information, id, r.bool(id)?)
            }
            REQUEST_PROBLEM_INFORMATION => {
                once(&mut self.request_problem_information, id, r.bool(id)?)
            }
            USER_PROPERTY => {
                self.user_properties.push(r.string_pair()?);
                Ok(())
            }
            AUTHENTICATION_METHOD => once(&mut self.authentication_method, id, r.string()?),
            AUTHENTICATION_DATA => once(&mut self.authentication_data, id, r.binary()?),
            _ => Err(r.not_allowed(id)),
        }
    }

    fn visit<V: Visitor>(&self, v: &mut V) {
        v.u32(SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        v.u16(RECEIVE_MAXIMUM, self.receive_maximum);
        v.u32(MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        v.u16(TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        v.bool(
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        v.bool(
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        v.user_properties(&self.user_properties);
        v.string(AUTHENTICATION_METHOD, self.authentication_method.as_deref());
        v.binary(AUTHENTICATION_DATA, self.authentication_data.as_deref());
    }
}

impl PropertySet for WillProperties {
    fn read_one(&mut self, id: u8, r: &mut PropertyReader) -> Result<(), DecodeError> {
        match id {
            WILL_DELAY_INTERVAL => once(&mut self.will_delay_interval, id, r.u32()?),
            PAYLOAD_FORMAT_INDICATOR => {
                once(&mut self.payload_format_indicator, id, r.zero_or_one(id)?)
            }
            MESSAGE_EXPIRY_INTERVAL => once(&mut self.message_expiry_interval, id, r.u32()?),
            CONTENT_TYPE => once(&mut self.content_type, id, r.string()?),
            RESPONSE_TOPIC => once(&mut self.response_topic, id, r.string()?),
            CORRELATION_DATA => once(&mut self.correlation_data, id, r.binary()?),
            USER_PROPERTY => {
                self.user_properties.push(r.string_pair()?);
                Ok(())
            }
            _ => Err(r.not_allowed(id)),
        }
    }

    fn visit<V: Visitor>(&self, v: &mut V) {
        v.u32(WILL_DELAY_INTERVAL, self.will_delay_interval);
        v.byte(PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        v.u32(MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        v.string(CONTENT_TYPE, self.content_type.as_deref());
        v.string(RESPONSE_TOPIC, self.response_topic.as_deref());
        v.binary(CORRELATION_DATA, self.correlation_data.as_deref());
        v.user_properties(&self.user_properties);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Packet,
        packet::test_util::{assert_both_ways, decode},
    };

    fn minimal(protocol: Protocol) -> Connect {
        Connect {
            protocol,
            clean_start: true,
            keep_alive: 60,
            client_id: "cid".into(),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        }
    }

    fn packet(connect: Connect) -> Packet {
        Packet::Connect(Box::new(connect))
    }

    #[test]
    fn v311_minimal() {
        let bytes = b"\x10\x0F\x00\x04MQTT\x04\x02\x00\x3C\x00\x03cid";
        assert_both_ways(bytes, packet(minimal(Protocol::V311)), Protocol::V311);
    }

    #[test]
    fn connect_reads_its_own_protocol() {
        let bytes = b"\x10\x0F\x00\x04MQTT\x04\x02\x00\x3C\x00\x03cid";
        assert_eq!(
            decode(bytes, Protocol::V5),
            Ok(packet(minimal(Protocol::V311)))
        );
        let bytes = b"\x10\x10\x00\x04MQTT\x05\x02\x00\x3C\x00\x00\x03cid";
        assert_eq!(
            decode(bytes, Protocol::V311),
            Ok(packet(minimal(Protocol::V5)))
        );
    }

    #[test]
    fn v311_everything() {
        let connect = Connect {
            will: Some(LastWill {
                topic: "w/t".into(),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: WillProperties::default(),
            }),
            username: Some("user".into()),
            password: Some(Bytes::from_static(b"\x01\x02")),
            ..minimal(Protocol::V311)
        };
        let bytes = b"\x10\x23\x00\x04MQTT\x04\xEE\x00\x3C\x00\x03cid\
            \x00\x03w/t\x00\x03bye\x00\x04user\x00\x02\x01\x02";
        assert_both_ways(bytes, packet(connect), Protocol::V311);
    }

    #[test]
    fn v5_minimal() {
        let bytes = b"\x10\x10\x00\x04MQTT\x05\x02\x00\x3C\x00\x00\x03cid";
        assert_both_ways(bytes, packet(minimal(Protocol::V5)), Protocol::V5);
    }

    #[test]
    fn v5_every_property() {
        let connect = Connect {
            clean_start: false,
            will: Some(LastWill {
                topic: "w/t".into(),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::ExactlyOnce,
                retain: false,
                properties: WillProperties {
                    will_delay_interval: Some(30),
                    payload_format_indicator: Some(1),
                    message_expiry_interval: Some(60),
                    content_type: Some("text".into()),
                    response_topic: Some("r/t".into()),
                    correlation_data: Some(Bytes::from_static(b"\xAB\xCD")),
                    user_properties: vec![("a".into(), "b".into())],
                },
            }),
            username: Some("user".into()),
            password: Some(Bytes::from_static(b"\x01\x02")),
            properties: ConnectProperties {
                session_expiry_interval: Some(10),
                receive_maximum: Some(20),
                maximum_packet_size: Some(4096),
                topic_alias_maximum: Some(5),
                request_response_information: Some(true),
                request_problem_information: Some(false),
                user_properties: vec![("k".into(), "v".into())],
                authentication_method: Some("meth".into()),
                authentication_data: Some(Bytes::from_static(b"\x01\x02")),
            },
            ..minimal(Protocol::V5)
        };
        let bytes = b"\x10\x71\x00\x04MQTT\x05\xD4\x00\x3C\
            \x27\
            \x11\x00\x00\x00\x0A\
            \x21\x00\x14\
            \x27\x00\x00\x10\x00\
            \x22\x00\x05\
            \x19\x01\
            \x17\x00\
            \x26\x00\x01k\x00\x01v\
            \x15\x00\x04meth\
            \x16\x00\x02\x01\x02\
            \x00\x03cid\
            \x25\
            \x18\x00\x00\x00\x1E\
            \x01\x01\
            \x02\x00\x00\x00\x3C\
            \x03\x00\x04text\
            \x08\x00\x03r/t\
            \x09\x00\x02\xAB\xCD\
            \x26\x00\x01a\x00\x01b\
            \x00\x03w/t\x00\x03bye\x00\x04user\x00\x02\x01\x02";
        assert_both_ways(bytes, packet(connect), Protocol::V5);
    }

    #[test]
    fn v5_password_without_username() {
        let connect = Connect {
            password: Some(Bytes::from_static(b"pw")),
            ..minimal(Protocol::V5)
        };
        let bytes = b"\x10\x14\x00\x04MQTT\x05\x42\x00\x3C\x00\x00\x03cid\x00\x02pw";
        assert_both_ways(bytes, packet(connect), Protocol::V5);
    }

    #[test]
    fn v311_password_without_username() {
        let bytes = b"\x10\x13\x00\x04MQTT\x04\x42\x00\x3C\x00\x03cid\x00\x02pw";
        assert_eq!(
            decode(bytes, Protocol::V311),
            Err(DecodeError::PasswordWithoutUsername)
        );
    }

    #[test]
    fn protocol_names_and_levels() {
        let mqisdp = b"\x10\x11\x00\x06MQIsdp\x03\x02\x00\x3C\x00\x03cid";
        assert_eq!(
            decode(mqisdp, Protocol::V311),
            Err(DecodeError::UnsupportedProtocolVersion(3))
        );
        let level3 = b"\x10\x0F\x00\x04MQTT\x03\x02\x00\x3C\x00\x03cid";
        assert_eq!(
            decode(level3, Protocol::V311),
            Err(DecodeError::UnsupportedProtocolVersion(3))
        );
        let level6 = b"\x10\x0F\x00\x04MQTT\x06\x02\x00\x3C\x00\x03cid";
        assert_eq!(
            decode(level6, Protocol::V311),
            Err(DecodeError::UnsupportedProtocolVersion(6))
        );
        let other = b"\x10\x0F\x00\x04MQTX\x04\x02\x00\x3C\x00\x03cid";
        assert_eq!(
            decode(other, Protocol::V311),
            Err(DecodeError::InvalidProtocolName)
        );
    }

    #[test]
    fn reserved_connect_flag() {
        let bytes = b"\x10\x0F\x00\x04MQTT\x04\x03\x00\x3C\x00\x03cid";
        assert_eq!(
            decode(bytes, Protocol::V311),
            Err(DecodeError::ConnectReservedFlag)
        );
    }

    #[test]
    fn invalid_will_flags() {
        // Will QoS 1 without the Will Flag.
        let bytes = b"\x10\x0F\x00\x04MQTT\x04\x0A\x00\x3C\x00\x03cid";
        assert_eq!(
            decode(bytes, Protocol::V311),
            Err(DecodeError::InvalidWillFlags)
        );
        // Will Retain without the Will Flag.
        let bytes = b"\x10\x0F\x00\x04MQTT\x04\x22\x00\x3C\x00\x03cid";
        assert_eq!(
            decode(bytes, Protocol::V311),
            Err(DecodeError::InvalidWillFlags)
        );
        // Will QoS 3.
        let bytes = b"\x10\x15\x00\x04MQTT\x04\x1E\x00\x3C\x00\x03cid\x00\x01t\x00\x01p";
        assert_eq!(
            decode(bytes, Protocol::V311),
            Err(DecodeError::InvalidWillFlags)
        );
    }

    #[test]
    fn fixed_header_flags() {
        let bytes = b"\x12\x0F\x00\x04MQTT\x04\x02\x00\x3C\x00\x03cid";
        assert_eq!(
            decode(bytes, Protocol::V311),
            Err(DecodeError::InvalidFlags {
                packet_type: 1,
                flags: 2
            })
        );
    }

    #[test]
    fn trailing_and_short() {
        let bytes = b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3C\x00\x03cidX";
        assert_eq!(
            decode(bytes, Protocol::V311),
            Err(DecodeError::TrailingBytes(1))
        );
        // User Name flag set, but no user name.
        let bytes = b"\x10\x0F\x00\x04MQTT\x04\x82\x00\x3C\x00\x03cid";
        assert_eq!(
            decode(bytes, Protocol::V311),
            Err(DecodeError::UnexpectedEnd)
        );
    }

    #[test]
    fn invalid_client_id_utf8() {
        let bytes = b"\x10\x0F\x00\x04MQTT\x04\x02\x00\x3C\x00\x03c\x00d";
        assert_eq!(decode(bytes, Protocol::V311), Err(DecodeError::InvalidUtf8));
    }

    #[test]
    fn v5_property_values() {
        // Receive Maximum 0.
        let bytes = b"\x10\x13\x00\x04MQTT\x05\x02\x00\x3C\x03\x21\x00\x00\x00\x03cid";
        assert_eq!(
            decode(bytes, Protocol::V5),
            Err(DecodeError::InvalidPropertyValue(0x21))
        );
        // Maximum Packet Size 0.
        let bytes = b"\x10\x15\x00\x04MQTT\x05\x02\x00\x3C\x05\x27\x00\x00\x00\x00\x00\x03cid";
        assert_eq!(
            decode(bytes, Protocol::V5),
            Err(DecodeError::InvalidPropertyValue(0x27))
        );
        // Request Problem Information 2.
        let bytes = b"\x10\x12\x00\x04MQTT\x05\x02\x00\x3C\x02\x17\x02\x00\x03cid";
        assert_eq!(
            decode(bytes, Protocol::V5),
            Err(DecodeError::InvalidPropertyValue(0x17))
        );
        // Request Response Information 2.
        let bytes = b"\x10\x12\x00\x04MQTT\x05\x02\x00\x3C\x02\x19\x02\x00\x03cid";
        assert_eq!(
            decode(bytes, Protocol::V5),
            Err(DecodeError::InvalidPropertyValue(0x19))
        );
        // Session Expiry Interval twice.
        let bytes = b"\x10\x1A\x00\x04MQTT\x05\x02\x00\x3C\x0A\x11\x00\x00\x00\x01\x11\x00\x00\x00\x02\x00\x03cid";
        assert_eq!(
            decode(bytes, Protocol::V5),
            Err(DecodeError::DuplicateProperty(0x11))
        );
        // Topic Alias (a PUBLISH property).
        let bytes = b"\x10\x13\x00\x04MQTT\x05\x02\x00\x3C\x03\x23\x00\x01\x00\x03cid";
        assert_eq!(
            decode(bytes, Protocol::V5),
            Err(DecodeError::InvalidProperty {
                id: 0x23,
                packet: "CONNECT"
            })
        );
    }

    #[test]
    fn v5_will_property_values() {
        // Session Expiry Interval is not a will property.
        let bytes = b"\x10\x1B\x00\x04MQTT\x05\x06\x00\x3C\x00\x00\x03cid\x05\x11\x00\x00\x00\x01\x00\x01t\x00\x00";
        assert_eq!(
            decode(bytes, Protocol::V5),
            Err(DecodeError::InvalidProperty {
                id: 0x11,
                packet: WILL_PACKET
            })
        );
        // Payload Format Indicator 2.
        let bytes =
            b"\x10\x18\x00\x04MQTT\x05\x06\x00\x3C\x00\x00\x03cid\x02\x01\x02\x00\x01t\x00\x00";
        assert_eq!(
            decode(bytes, Protocol::V5),
            Err(DecodeError::InvalidPropertyValue(0x01))
        );
    }
}
