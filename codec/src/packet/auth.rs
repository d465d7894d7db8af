//! AUTH (MQTT 5.0 §3.15): enhanced authentication exchanges. v5 only.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::{
    DecodeError, ReasonCode, UserProperties,
    packet::{AUTH, check_flags, check_reason_code},
    properties::{
        self, AUTHENTICATION_DATA, AUTHENTICATION_METHOD, PropertyReader, PropertySet,
        REASON_STRING, USER_PROPERTY, Visitor, once,
    },
    wire::{expect_end, read_u8, write_fixed_header},
};

/// Authenticate Reason Codes (MQTT 5.0 §3.15.2.1).
const REASON_CODES: &[u8] = &[0x00, 0x18, 0x19];

/// An enhanced-authentication step. Remaining length 0 means Success with no properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    /// 0x00 Success, 0x18 Continue Authentication or 0x19 Re-authenticate.
    pub reason_code: ReasonCode,
    /// AUTH properties.
    pub properties: AuthProperties,
}

/// AUTH properties (MQTT 5.0 §3.15.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthProperties {
    /// 0x15 Authentication Method.
    pub authentication_method: Option<ByteString>,
    /// 0x16 Authentication Data.
    pub authentication_data: Option<Bytes>,
    /// 0x1F Reason String.
    pub reason_string: Option<ByteString>,
    /// 0x26 User Property.
    pub user_properties: UserProperties,
}

impl Auth {
    /// Reads an AUTH body (v5 only). Remaining length 0 means Success without properties;
    /// a reason code without a property length is accepted too.
    pub(crate) fn read(flags: u8, mut body: Bytes) -> Result<Self, DecodeError> {
        check_flags(AUTH, flags, 0)?;
        let mut auth = Auth::default();
        if !body.is_empty() {
            auth.reason_code = check_reason_code(read_u8(&mut body)?, REASON_CODES, "AUTH")?;
            if !body.is_empty() {
                auth.properties = properties::read_block(&mut body, "AUTH")?;
            }
        }
        expect_end(&body)?;
        Ok(auth)
    }

    /// Whether the short form (remaining length 0) says it all.
    fn is_empty(&self) -> bool {
        self.reason_code == ReasonCode::SUCCESS && self.properties == AuthProperties::default()
    }

    /// Remaining Length of this AUTH.
    pub(crate) fn remaining_len(&self) -> usize {
        if self.is_empty() {
            0
        } else {
            1 + properties::block_len(&self.properties)
        }
    }

    /// Appends the whole packet, fixed header included: empty for Success without
    /// properties, otherwise the reason code and the property block.
    ///
    /// # Panics
    ///
    /// If a property string or the authentication data is longer than 65,535 bytes.
    pub fn write(&self, buf: &mut BytesMut) {
        write_fixed_header(buf, AUTH << 4, self.remaining_len());
        if !self.is_empty() {
            buf.put_u8(self.reason_code.0);
            properties::write_block(&self.properties, buf);
        }
    }
}

impl PropertySet for AuthProperties {
    fn read_one(&mut self, id: u8, r: &mut PropertyReader) -> Result<(), DecodeError> {
        match id {
            AUTHENTICATION_METHOD => once(&mut self.authentication_method, id, r.string()?),
            AUTHENTICATION_DATA => once(&mut self.authentication_data, id, r.binary()?),
            REASON_STRING => once(&mut self.reason_string, id, r.string()?),
            USER_PROPERTY => {
                self.user_properties.push(r.string_pair()?);
                Ok(())
            }
            _ => Err(r.not_allowed(id)),
        }
    }

    fn visit<V: Visitor>(&self, v: &mut V) {
        v.string(AUTHENTICATION_METHOD, self.authentication_method.as_deref());
        v.binary(AUTHENTICATION_DATA, self.authentication_data.as_deref());
        v.string(REASON_STRING, self.reason_string.as_deref());
        v.user_properties(&self.user_properties);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Packet, Protocol,
        packet::test_util::{assert_both_ways, decode},
    };

    #[test]
    fn success_is_empty() {
        assert_both_ways(b"\xF0\x00", Packet::Auth(Auth::default()), Protocol::V5);
        assert_eq!(
            decode(b"\xF0\x01\x00", Protocol::V5),
            Ok(Packet::Auth(Auth::default()))
        );
        assert_eq!(
            decode(b"\xF0\x02\x00\x00", Protocol::V5),
            Ok(Packet::Auth(Auth::default()))
        );
    }

    #[test]
    fn reason_code_without_properties_keeps_the_property_length() {
        let auth = Auth {
            reason_code: ReasonCode::REAUTHENTICATE,
            ..Default::default()
        };
        assert_both_ways(
            b"\xF0\x02\x19\x00",
            Packet::Auth(auth.clone()),
            Protocol::V5,
        );
        assert_eq!(
            decode(b"\xF0\x01\x19", Protocol::V5),
            Ok(Packet::Auth(auth))
        );
    }

    #[test]
    fn every_property() {
        let auth = Auth {
            reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: AuthProperties {
                authentication_method: Some("SCRAM".into()),
                authentication_data: Some(Bytes::from_static(b"\x00\x01")),
                reason_string: Some("more".into()),
                user_properties: vec![("k".into(), "v".into())],
            },
        };
        let bytes = b"\xF0\x1D\x18\x1B\
            \x15\x00\x05SCRAM\
            \x16\x00\x02\x00\x01\
            \x1F\x00\x04more\
            \x26\x00\x01k\x00\x01v";
        assert_both_ways(bytes, Packet::Auth(auth), Protocol::V5);
    }

    #[test]
    fn errors() {
        assert_eq!(
            decode(b"\xF0\x01\x87", Protocol::V5),
            Err(DecodeError::InvalidReasonCode {
                code: 0x87,
                packet: "AUTH"
            })
        );
        assert_eq!(
            decode(b"\xF1\x00", Protocol::V5),
            Err(DecodeError::InvalidFlags {
                packet_type: 15,
                flags: 1
            })
        );
        assert_eq!(
            decode(b"\xF0\x08\x18\x06\x15\x00\x01m\x15\x00", Protocol::V5),
            Err(DecodeError::PropertyLength)
        );
        assert_eq!(
            decode(b"\xF0\x0A\x18\x08\x15\x00\x01m\x15\x00\x01n", Protocol::V5),
            Err(DecodeError::DuplicateProperty(0x15))
        );
    }
}
