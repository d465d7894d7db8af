//! The v5 property reader and writer used by every packet module (MQTT 5.0 §2.2.2).
//!
//! A property block is a Variable Byte Integer length followed by identifier/value pairs.
//! Each packet's properties struct (`ConnectProperties`, `PublishProperties`, ...) lives
//! in its packet's module and implements `PropertySet` twice over:
//!
//! - `read_one` matches the identifiers allowed in that packet and stores each value;
//!   any other identifier is [`DecodeError::InvalidProperty`]. The `PropertyReader`
//!   checks lengths and values, `once` refuses a second occurrence.
//! - `visit` lists the struct's fields once, in order; the same list both sizes the block
//!   (`block_len`, no allocation) and writes it (`write_block`), so the two cannot
//!   disagree. `None` and empty fields are not written.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::{
    DecodeError, UserProperties,
    wire::{self, binary_len, read_varint, varint_len, write_binary, write_varint},
};

/// 0x01 Payload Format Indicator (PUBLISH, Will): 0 bytes, 1 UTF-8.
pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
/// 0x02 Message Expiry Interval (PUBLISH, Will).
pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
/// 0x03 Content Type (PUBLISH, Will).
pub const CONTENT_TYPE: u8 = 0x03;
/// 0x08 Response Topic (PUBLISH, Will).
pub const RESPONSE_TOPIC: u8 = 0x08;
/// 0x09 Correlation Data (PUBLISH, Will).
pub const CORRELATION_DATA: u8 = 0x09;
/// 0x0B Subscription Identifier (PUBLISH, where it may repeat, and SUBSCRIBE).
pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
/// 0x11 Session Expiry Interval (CONNECT, CONNACK, DISCONNECT).
pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
/// 0x12 Assigned Client Identifier (CONNACK).
pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
/// 0x13 Server Keep Alive (CONNACK).
pub const SERVER_KEEP_ALIVE: u8 = 0x13;
/// 0x15 Authentication Method (CONNECT, CONNACK, AUTH).
pub const AUTHENTICATION_METHOD: u8 = 0x15;
/// 0x16 Authentication Data (CONNECT, CONNACK, AUTH).
pub const AUTHENTICATION_DATA: u8 = 0x16;
/// 0x17 Request Problem Information (CONNECT).
pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
/// 0x18 Will Delay Interval (Will).
pub const WILL_DELAY_INTERVAL: u8 = 0x18;
/// 0x19 Request Response Information (CONNECT).
pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
/// 0x1A Response Information (CONNACK).
pub const RESPONSE_INFORMATION: u8 = 0x1A;
/// 0x1C Server Reference (CONNACK, DISCONNECT).
pub const SERVER_REFERENCE: u8 = 0x1C;
/// 0x1F Reason String (CONNACK, the acknowledgements, DISCONNECT, AUTH).
pub const REASON_STRING: u8 = 0x1F;
/// 0x21 Receive Maximum (CONNECT, CONNACK).
pub const RECEIVE_MAXIMUM: u8 = 0x21;
/// 0x22 Topic Alias Maximum (CONNECT, CONNACK).
pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
/// 0x23 Topic Alias (PUBLISH).
pub const TOPIC_ALIAS: u8 = 0x23;
/// 0x24 Maximum QoS (CONNACK).
pub const MAXIMUM_QOS: u8 = 0x24;
/// 0x25 Retain Available (CONNACK).
pub const RETAIN_AVAILABLE: u8 = 0x25;
/// 0x26 User Property (every packet that has properties; may repeat).
pub const USER_PROPERTY: u8 = 0x26;
/// 0x27 Maximum Packet Size (CONNECT, CONNACK).
pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
/// 0x28 Wildcard Subscription Available (CONNACK).
pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
/// 0x29 Subscription Identifiers Available (CONNACK).
pub const SUBSCRIPTION_IDENTIFIERS_AVAILABLE: u8 = 0x29;
/// 0x2A Shared Subscription Available (CONNACK).
pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

/// A packet's properties struct: how to read one property into it, and its fields as a
/// list for sizing and writing.
pub(crate) trait PropertySet: Default {
    /// Reads the value of property `id` from `r` into `self`. Identifiers this packet does
    /// not allow are refused with `r.not_allowed(id)`.
    fn read_one(&mut self, id: u8, r: &mut PropertyReader) -> Result<(), DecodeError>;

    /// Presents every field to `v`, in the order they are written.
    fn visit<V: Visitor>(&self, v: &mut V);
}

/// Reads a property block (length, then properties) for `packet` from the front of `body`.
pub(crate) fn read_block<P: PropertySet>(
    body: &mut Bytes,
    packet: &'static str,
) -> Result<P, DecodeError> {
    let mut r = PropertyReader::new(body, packet)?;
    let mut properties = P::default();
    while r.buf.has_remaining() {
        // Identifiers are Variable Byte Integers, though all defined ones fit a byte.
        let id = r.varint()?;
        let id = u8::try_from(id).map_err(|_| DecodeError::InvalidProperty { id, packet })?;
        properties.read_one(id, &mut r)?;
    }
    Ok(properties)
}

/// The length of the properties alone, as carried in the block's length field.
pub(crate) fn content_len<P: PropertySet>(properties: &P) -> usize {
    let mut sizer = Sizer(0);
    properties.visit(&mut sizer);
    sizer.0
}

/// The length of the whole block: its length field, then the properties.
pub(crate) fn block_len<P: PropertySet>(properties: &P) -> usize {
    let len = content_len(properties);
    varint_len(len) + len
}

/// Appends the whole block: its length, then every property that is set.
pub(crate) fn write_block<P: PropertySet>(properties: &P, buf: &mut BytesMut) {
    write_block_with_len(properties, content_len(properties), buf);
}

/// `write_block` when the caller has already computed [`content_len`].
pub(crate) fn write_block_with_len<P: PropertySet>(
    properties: &P,
    content_len: usize,
    buf: &mut BytesMut,
) {
    write_varint(buf, content_len);
    properties.visit(&mut Writer(buf));
}

/// Stores a single-valued property, refusing a second occurrence.
pub(crate) fn once<T>(slot: &mut Option<T>, id: u8, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty(id.into()));
    }
    *slot = Some(value);
    Ok(())
}

/// A cursor over the properties of one block. A value that runs past the block's end is
/// [`DecodeError::PropertyLength`]: the declared length was wrong.
pub(crate) struct PropertyReader {
    buf: Bytes,
    packet: &'static str,
}

impl PropertyReader {
    fn new(body: &mut Bytes, packet: &'static str) -> Result<Self, DecodeError> {
        let len = read_varint(body)? as usize;
        if len > body.len() {
            return Err(DecodeError::PropertyLength);
        }
        Ok(PropertyReader {
            buf: body.split_to(len),
            packet,
        })
    }

    fn within<T>(
        &mut self,
        read: impl FnOnce(&mut Bytes) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        read(&mut self.buf).map_err(|e| match e {
            DecodeError::UnexpectedEnd => DecodeError::PropertyLength,
            e => e,
        })
    }

    /// The error for an identifier this packet does not allow.
    pub(crate) fn not_allowed(&self, id: u8) -> DecodeError {
        DecodeError::InvalidProperty {
            id: id.into(),
            packet: self.packet,
        }
    }

    /// A Byte.
    pub(crate) fn byte(&mut self) -> Result<u8, DecodeError> {
        self.within(wire::read_u8)
    }

    /// A Byte that must be 0 or 1.
    pub(crate) fn bool(&mut self, id: u8) -> Result<bool, DecodeError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::InvalidPropertyValue(id.into())),
        }
    }

    /// A Byte that must be 0 or 1, kept as the byte (Payload Format Indicator, Maximum QoS).
    pub(crate) fn zero_or_one(&mut self, id: u8) -> Result<u8, DecodeError> {
        self.bool(id).map(u8::from)
    }

    /// A Two Byte Integer.
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        self.within(wire::read_u16)
    }

    /// A Two Byte Integer that must not be 0 (Receive Maximum, Topic Alias).
    pub(crate) fn nonzero_u16(&mut self, id: u8) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::InvalidPropertyValue(id.into())),
            value => Ok(value),
        }
    }

    /// A Four Byte Integer.
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.within(wire::read_u32)
    }

    /// A Four Byte Integer that must not be 0 (Maximum Packet Size).
    pub(crate) fn nonzero_u32(&mut self, id: u8) -> Result<u32, DecodeError> {
        match self.u32()? {
            0 => Err(DecodeError::InvalidPropertyValue(id.into())),
            value => Ok(value),
        }
    }

    /// A Variable Byte Integer.
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        self.within(wire::read_varint)
    }

    /// A Subscription Identifier: a Variable Byte Integer that must not be 0.
    pub(crate) fn subscription_identifier(&mut self, id: u8) -> Result<u32, DecodeError> {
        match self.varint()? {
            0 => Err(DecodeError::InvalidPropertyValue(id.into())),
            value => Ok(value),
        }
    }

    /// A UTF-8 Encoded String.
    pub(crate) fn string(&mut self) -> Result<ByteString, DecodeError> {
        self.within(wire::read_string)
    }

    /// Binary Data.
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        self.within(wire::read_binary)
    }

    /// A UTF-8 String Pair.
    pub(crate) fn string_pair(&mut self) -> Result<(ByteString, ByteString), DecodeError> {
        Ok((self.string()?, self.string()?))
    }
}

/// What a properties struct presents its fields to.
pub(crate) trait Visitor {
    fn byte(&mut self, id: u8, value: Option<u8>);
    fn u16(&mut self, id: u8, value: Option<u16>);
    fn u32(&mut self, id: u8, value: Option<u32>);
    fn varint(&mut self, id: u8, value: Option<u32>);
    fn binary(&mut self, id: u8, value: Option<&[u8]>);
    fn user_properties(&mut self, value: &UserProperties);

    fn bool(&mut self, id: u8, value: Option<bool>) {
        self.byte(id, value.map(u8::from));
    }

    fn string(&mut self, id: u8, value: Option<&str>) {
        self.binary(id, value.map(str::as_bytes));
    }
}

/// Adds up the encoded length of the properties that are set.
struct Sizer(usize);

impl Visitor for Sizer {
    fn byte(&mut self, _: u8, value: Option<u8>) {
        self.0 += value.map_or(0, |_| 2);
    }

    fn u16(&mut self, _: u8, value: Option<u16>) {
        self.0 += value.map_or(0, |_| 3);
    }

    fn u32(&mut self, _: u8, value: Option<u32>) {
        self.0 += value.map_or(0, |_| 5);
    }

    fn varint(&mut self, _: u8, value: Option<u32>) {
        self.0 += value.map_or(0, |v| 1 + varint_len(v as usize));
    }

    fn binary(&mut self, _: u8, value: Option<&[u8]>) {
        self.0 += value.map_or(0, |v| 1 + binary_len(v.len()));
    }

    fn user_properties(&mut self, value: &UserProperties) {
        self.0 += value
            .iter()
            .map(|(k, v)| 1 + binary_len(k.len()) + binary_len(v.len()))
            .sum::<usize>();
    }
}

/// Appends the properties that are set.
struct Writer<'a>(&'a mut BytesMut);

impl Visitor for Writer<'_> {
    fn byte(&mut self, id: u8, value: Option<u8>) {
        if let Some(v) = value {
            self.0.put_u8(id);
            self.0.put_u8(v);
        }
    }

    fn u16(&mut self, id: u8, value: Option<u16>) {
        if let Some(v) = value {
            self.0.put_u8(id);
            self.0.put_u16(v);
        }
    }

    fn u32(&mut self, id: u8, value: Option<u32>) {
        if let Some(v) = value {
            self.0.put_u8(id);
            self.0.put_u32(v);
        }
    }

    fn varint(&mut self, id: u8, value: Option<u32>) {
        if let Some(v) = value {
            self.0.put_u8(id);
            write_varint(self.0, v as usize);
        }
    }

    fn binary(&mut self, id: u8, value: Option<&[u8]>) {
        if let Some(v) = value {
            self.0.put_u8(id);
            write_binary(self.0, v);
        }
    }

    fn user_properties(&mut self, value: &UserProperties) {
        for (k, v) in value {
            self.0.put_u8(USER_PROPERTY);
            write_binary(self.0, k.as_bytes());
            write_binary(self.0, v.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    //! The generic machinery, on a small property set of every value type. Every real
    //! property is exercised by a byte-literal test in its packet's module.

    use super::*;

    #[derive(Debug, Default, PartialEq)]
    struct Sample {
        byte: Option<u8>,
        flag: Option<bool>,
        short: Option<u16>,
        long: Option<u32>,
        var: Vec<u32>,
        text: Option<ByteString>,
        data: Option<Bytes>,
        user: UserProperties,
    }

    impl PropertySet for Sample {
        fn read_one(&mut self, id: u8, r: &mut PropertyReader) -> Result<(), DecodeError> {
            match id {
                PAYLOAD_FORMAT_INDICATOR => once(&mut self.byte, id, r.zero_or_one(id)?),
                RETAIN_AVAILABLE => once(&mut self.flag, id, r.bool(id)?),
                TOPIC_ALIAS => once(&mut self.short, id, r.nonzero_u16(id)?),
                MAXIMUM_PACKET_SIZE => once(&mut self.long, id, r.nonzero_u32(id)?),
                SUBSCRIPTION_IDENTIFIER => {
                    self.var.push(r.subscription_identifier(id)?);
                    Ok(())
                }
                CONTENT_TYPE => once(&mut self.text, id, r.string()?),
                CORRELATION_DATA => once(&mut self.data, id, r.binary()?),
                USER_PROPERTY => {
                    self.user.push(r.string_pair()?);
                    Ok(())
                }
                _ => Err(r.not_allowed(id)),
            }
        }

        fn visit<V: Visitor>(&self, v: &mut V) {
            v.byte(PAYLOAD_FORMAT_INDICATOR, self.byte);
            v.bool(RETAIN_AVAILABLE, self.flag);
            v.u16(TOPIC_ALIAS, self.short);
            v.u32(MAXIMUM_PACKET_SIZE, self.long);
            for &id in &self.var {
                v.varint(SUBSCRIPTION_IDENTIFIER, Some(id));
            }
            v.string(CONTENT_TYPE, self.text.as_deref());
            v.binary(CORRELATION_DATA, self.data.as_deref());
            v.user_properties(&self.user);
        }
    }

    fn read(bytes: &'static [u8]) -> Result<Sample, DecodeError> {
        let mut body = Bytes::from_static(bytes);
        let sample = read_block(&mut body, "SAMPLE")?;
        wire::expect_end(&body)?;
        Ok(sample)
    }

    const FULL: &[u8] = b"\x2B\
        \x01\x01\
        \x25\x00\
        \x23\x00\x07\
        \x27\x00\x01\x00\x00\
        \x0B\x80\x01\
        \x0B\x05\
        \x03\x00\x04text\
        \x09\x00\x02\x00\xFF\
        \x26\x00\x01k\x00\x01v\
        \x26\x00\x01k\x00\x01w";

    fn full() -> Sample {
        Sample {
            byte: Some(1),
            flag: Some(false),
            short: Some(7),
            long: Some(65_536),
            var: vec![128, 5],
            text: Some("text".into()),
            data: Some(Bytes::from_static(b"\x00\xFF")),
            user: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
        }
    }

    #[test]
    fn every_value_type_decodes() {
        assert_eq!(read(FULL), Ok(full()));
    }

    #[test]
    fn every_value_type_encodes() {
        let mut buf = BytesMut::new();
        write_block(&full(), &mut buf);
        assert_eq!(&buf[..], FULL);
        assert_eq!(block_len(&full()), FULL.len());
    }

    #[test]
    fn empty_block() {
        assert_eq!(read(b"\x00"), Ok(Sample::default()));
        let mut buf = BytesMut::new();
        write_block(&Sample::default(), &mut buf);
        assert_eq!(&buf[..], b"\x00");
        assert_eq!(block_len(&Sample::default()), 1);
    }

    #[test]
    fn missing_length_is_unexpected_end() {
        assert_eq!(read(b""), Err(DecodeError::UnexpectedEnd));
    }

    #[test]
    fn unknown_or_disallowed_id() {
        assert_eq!(
            read(b"\x02\x11\x00"),
            Err(DecodeError::InvalidProperty {
                id: 0x11,
                packet: "SAMPLE"
            })
        );
        // Identifiers are Variable Byte Integers; unknown long ones are named whole.
        assert_eq!(
            read(b"\x02\x81\x01"),
            Err(DecodeError::InvalidProperty {
                id: 0x81,
                packet: "SAMPLE"
            })
        );
    }

    #[test]
    fn duplicate() {
        assert_eq!(
            read(b"\x06\x23\x00\x01\x23\x00\x02"),
            Err(DecodeError::DuplicateProperty(0x23))
        );
    }

    #[test]
    fn invalid_values() {
        assert_eq!(
            read(b"\x02\x01\x02"),
            Err(DecodeError::InvalidPropertyValue(0x01))
        );
        assert_eq!(
            read(b"\x02\x25\x02"),
            Err(DecodeError::InvalidPropertyValue(0x25))
        );
        assert_eq!(
            read(b"\x03\x23\x00\x00"),
            Err(DecodeError::InvalidPropertyValue(0x23))
        );
        assert_eq!(
            read(b"\x05\x27\x00\x00\x00\x00"),
            Err(DecodeError::InvalidPropertyValue(0x27))
        );
        assert_eq!(
            read(b"\x02\x0B\x00"),
            Err(DecodeError::InvalidPropertyValue(0x0B))
        );
        assert_eq!(
            read(b"\x05\x03\x00\x02a\x00"),
            Err(DecodeError::InvalidUtf8)
        );
    }

    #[test]
    fn length_disagrees_with_properties() {
        // The value runs past the declared length.
        assert_eq!(read(b"\x02\x23\x00\x07"), Err(DecodeError::PropertyLength));
        // The declared length runs past the body.
        assert_eq!(read(b"\x05\x23\x00\x07"), Err(DecodeError::PropertyLength));
        // Declared too short: the rest is not a property.
        assert_eq!(
            read(b"\x00\x23\x00\x07"),
            Err(DecodeError::TrailingBytes(3))
        );
    }
}
