//! Primitive fields: two-byte integers, variable byte integers, UTF-8 strings, binary data.
