//! Primitive fields: two-byte integers, variable byte integers, UTF-8 strings, binary data
//! (MQTT 5.0 §1.5).
//!
//! Readers take a cursor over the frozen frame and advance it; what they return that is
//! longer than an integer (strings, binary data) is a slice of that frame, never a copy.
//! A field cut short is [`DecodeError::UnexpectedEnd`]: by the time a reader runs the whole
//! frame is buffered, so a short field is a malformed packet, not a partial one.
//!
//! Writers append to a `BytesMut` that the packet's `write` has already reserved exactly.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::DecodeError;

/// The largest value a four-byte Variable Byte Integer holds.
pub(crate) const VARINT_MAX: u32 = 268_435_455;

/// Reads one byte.
pub(crate) fn read_u8(buf: &mut Bytes) -> Result<u8, DecodeError> {
    buf.try_get_u8().map_err(|_| DecodeError::UnexpectedEnd)
}

/// Reads a big-endian Two Byte Integer.
pub(crate) fn read_u16(buf: &mut Bytes) -> Result<u16, DecodeError> {
    buf.try_get_u16().map_err(|_| DecodeError::UnexpectedEnd)
}

/// Reads a big-endian Four Byte Integer.
pub(crate) fn read_u32(buf: &mut Bytes) -> Result<u32, DecodeError> {
    buf.try_get_u32().map_err(|_| DecodeError::UnexpectedEnd)
}

/// Reads a Variable Byte Integer.
pub(crate) fn read_varint(buf: &mut Bytes) -> Result<u32, DecodeError> {
    match parse_varint(buf.chunk())? {
        Some((value, len)) => {
            buf.advance(len);
            Ok(value)
        }
        None => Err(DecodeError::UnexpectedEnd),
    }
}

/// Parses a Variable Byte Integer at the front of `bytes` without consuming anything:
/// its value and encoded length, or `Ok(None)` when `bytes` ends inside it.
///
/// A fourth byte with the continuation bit set is refused at once, without waiting for a
/// fifth; so is an encoding longer than needed (a last byte of 0 after the first), since
/// [MQTT-1.5.5-1] requires the minimum number of bytes.
pub(crate) fn parse_varint(bytes: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value = 0u32;
    for (i, &byte) in bytes.iter().take(4).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(DecodeError::MalformedVariableInteger);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 4 {
        Err(DecodeError::MalformedVariableInteger)
    } else {
        Ok(None)
    }
}

/// Reads Binary Data: a two-byte length, then that many bytes, sliced out of the frame.
pub(crate) fn read_binary(buf: &mut Bytes) -> Result<Bytes, DecodeError> {
    let len = usize::from(read_u16(buf)?);
    if buf.len() < len {
        return Err(DecodeError::UnexpectedEnd);
    }
    Ok(buf.split_to(len))
}

/// Reads a UTF-8 Encoded String, sliced out of the frame. Ill-formed UTF-8 (surrogates
/// included) and U+0000 are refused [MQTT-1.5.4-1, MQTT-1.5.4-2].
pub(crate) fn read_string(buf: &mut Bytes) -> Result<ByteString, DecodeError> {
    let raw = read_binary(buf)?;
    if raw.contains(&0) {
        return Err(DecodeError::InvalidUtf8);
    }
    ByteString::try_from(raw).map_err(|_| DecodeError::InvalidUtf8)
}

/// How many bytes the Variable Byte Integer `value` takes.
pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=0x7F => 1,
        0x80..=0x3FFF => 2,
        0x4000..=0x1F_FFFF => 3,
        _ => 4,
    }
}

/// Appends `value` as a Variable Byte Integer.
///
/// # Panics
///
/// If `value` exceeds [`VARINT_MAX`]: no packet or property can be that long.
pub(crate) fn write_varint(buf: &mut BytesMut, value: usize) {
    assert!(
        value <= VARINT_MAX as usize,
        "{value} does not fit a variable byte integer"
    );
    let mut value = value;
    loop {
        let byte = (value & 0x7F) as u8;
        value >>= 7;
        if value == 0 {
            buf.put_u8(byte);
            return;
        }
        buf.put_u8(byte | 0x80);
    }
}

/// How many bytes Binary Data or a UTF-8 string of `len` bytes takes, its length included.
pub(crate) fn binary_len(len: usize) -> usize {
    2 + len
}

/// Appends Binary Data (also used for strings, which are already valid UTF-8).
///
/// # Panics
///
/// If `data` is longer than 65,535 bytes, which its two-byte length cannot express.
pub(crate) fn write_binary(buf: &mut BytesMut, data: &[u8]) {
    let len = u16::try_from(data.len())
        .unwrap_or_else(|_| panic!("a field of {} bytes exceeds 65,535", data.len()));
    buf.put_u16(len);
    buf.put_slice(data);
}

/// Appends a UTF-8 Encoded String.
///
/// # Panics
///
/// If `s` is longer than 65,535 bytes.
pub(crate) fn write_string(buf: &mut BytesMut, s: &str) {
    write_binary(buf, s.as_bytes());
}

/// Reserves room for a whole packet and writes its fixed header: the first byte (type and
/// flags) and the Remaining Length.
///
/// # Panics
///
/// If `remaining` exceeds [`VARINT_MAX`].
pub(crate) fn write_fixed_header(buf: &mut BytesMut, first_byte: u8, remaining: usize) {
    buf.reserve(1 + varint_len(remaining) + remaining);
    buf.put_u8(first_byte);
    write_varint(buf, remaining);
}

/// Fails with [`DecodeError::TrailingBytes`] unless `body` has been read to its end.
pub(crate) fn expect_end(body: &Bytes) -> Result<(), DecodeError> {
    if body.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::TrailingBytes(body.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(bytes: &'static [u8]) -> Result<u32, DecodeError> {
        read_varint(&mut Bytes::from_static(bytes))
    }

    #[test]
    fn varint_boundaries_decode() {
        assert_eq!(varint(&[0x00]), Ok(0));
        assert_eq!(varint(&[0x7F]), Ok(127));
        assert_eq!(varint(&[0x80, 0x01]), Ok(128));
        assert_eq!(varint(&[0xFF, 0x7F]), Ok(16_383));
        assert_eq!(varint(&[0x80, 0x80, 0x01]), Ok(16_384));
        assert_eq!(varint(&[0xFF, 0xFF, 0x7F]), Ok(2_097_151));
        assert_eq!(varint(&[0x80, 0x80, 0x80, 0x01]), Ok(2_097_152));
        assert_eq!(varint(&[0xFF, 0xFF, 0xFF, 0x7F]), Ok(VARINT_MAX));
    }

    #[test]
    fn varint_boundaries_encode() {
        for (value, bytes) in [
            (0usize, &[0x00][..]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (VARINT_MAX as usize, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            let mut buf = BytesMut::new();
            write_varint(&mut buf, value);
            assert_eq!(&buf[..], bytes, "{value}");
            assert_eq!(varint_len(value), bytes.len(), "{value}");
        }
    }

    #[test]
    fn varint_fifth_byte_is_malformed() {
        assert_eq!(
            varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(DecodeError::MalformedVariableInteger)
        );
        // Known to be malformed before the fifth byte arrives.
        assert_eq!(
            parse_varint(&[0x80, 0x80, 0x80, 0x80]),
            Err(DecodeError::MalformedVariableInteger)
        );
    }

    #[test]
    fn varint_longer_than_needed_is_malformed() {
        assert_eq!(
            varint(&[0x80, 0x00]),
            Err(DecodeError::MalformedVariableInteger)
        );
        assert_eq!(
            varint(&[0xFF, 0x80, 0x00]),
            Err(DecodeError::MalformedVariableInteger)
        );
    }

    #[test]
    fn varint_cut_short() {
        assert_eq!(parse_varint(&[]), Ok(None));
        assert_eq!(parse_varint(&[0x80, 0x80, 0x80]), Ok(None));
        assert_eq!(varint(&[0x80]), Err(DecodeError::UnexpectedEnd));
    }

    #[test]
    fn integers() {
        let mut buf = Bytes::from_static(&[0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07]);
        assert_eq!(read_u8(&mut buf), Ok(0x01));
        assert_eq!(read_u16(&mut buf), Ok(0x0203));
        assert_eq!(read_u32(&mut buf), Ok(0x0405_0607));
        assert_eq!(read_u8(&mut buf), Err(DecodeError::UnexpectedEnd));
        let mut short = Bytes::from_static(&[0x01]);
        assert_eq!(read_u16(&mut short), Err(DecodeError::UnexpectedEnd));
        let mut short = Bytes::from_static(&[0x01, 0x02, 0x03]);
        assert_eq!(read_u32(&mut short), Err(DecodeError::UnexpectedEnd));
    }

    #[test]
    fn string_is_a_slice_of_the_frame() {
        let frame = Bytes::from_static(b"\x00\x03a/b\x00\x00rest");
        let mut buf = frame.clone();
        let s = read_string(&mut buf).unwrap();
        assert_eq!(&*s, "a/b");
        assert_eq!(s.as_bytes().as_ptr(), frame[2..].as_ptr());
        assert_eq!(&*read_string(&mut buf).unwrap(), "");
        assert_eq!(&buf[..], b"rest");
    }

    #[test]
    fn string_utf8() {
        let read = |b: &'static [u8]| read_string(&mut Bytes::from_static(b));
        assert_eq!(read(b"\x00\x02\xC3\xA9").unwrap(), "é");
        assert_eq!(read(b"\x00\x01\xFF"), Err(DecodeError::InvalidUtf8));
        // An encoded surrogate, U+D800.
        assert_eq!(read(b"\x00\x03\xED\xA0\x80"), Err(DecodeError::InvalidUtf8));
        assert_eq!(read(b"\x00\x03a\x00b"), Err(DecodeError::InvalidUtf8));
        assert_eq!(read(b"\x00\x03ab"), Err(DecodeError::UnexpectedEnd));
        assert_eq!(read(b"\x00"), Err(DecodeError::UnexpectedEnd));
    }

    #[test]
    fn binary_round_trip() {
        let mut buf = BytesMut::new();
        write_binary(&mut buf, &[0, 1, 2]);
        write_string(&mut buf, "hé");
        assert_eq!(&buf[..], b"\x00\x03\x00\x01\x02\x00\x03h\xC3\xA9");
        let mut frame = buf.freeze();
        assert_eq!(read_binary(&mut frame).unwrap(), &[0u8, 1, 2][..]);
        assert_eq!(read_string(&mut frame).unwrap(), "hé");
        assert_eq!(expect_end(&frame), Ok(()));
    }

    #[test]
    fn trailing_bytes() {
        assert_eq!(
            expect_end(&Bytes::from_static(b"xyz")),
            Err(DecodeError::TrailingBytes(3))
        );
    }

    #[test]
    fn fixed_header_reserves_the_whole_packet() {
        let mut buf = BytesMut::new();
        write_fixed_header(&mut buf, 0x30, 200);
        assert_eq!(&buf[..], &[0x30, 0xC8, 0x01]);
        assert!(buf.capacity() >= 203);
    }
}
