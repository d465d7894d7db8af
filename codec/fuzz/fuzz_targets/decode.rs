//! Decoder round trip: arbitrary bytes, read as a stream of packets on either protocol,
//! never panic the decoder; every packet that decodes re-encodes to bytes that decode to
//! the same packet, of exactly the length `encoded_len` predicts.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wasmq_codec::{Packet, Protocol};

/// Small enough that the size limit is hit too, large enough for any input libFuzzer makes.
const MAX_PACKET_SIZE: u32 = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    for protocol in [Protocol::V311, Protocol::V5] {
        let mut buf = BytesMut::from(data);
        while let Ok(Some(packet)) = Packet::decode(&mut buf, protocol, MAX_PACKET_SIZE) {
            // A CONNECT is written for the protocol it names.
            let protocol = match &packet {
                Packet::Connect(connect) => connect.protocol,
                _ => protocol,
            };
            let mut encoded = BytesMut::new();
            packet.encode(protocol, &mut encoded);
            assert_eq!(encoded.len(), packet.encoded_len(protocol), "{packet:?}");
            let again = Packet::decode(&mut encoded, protocol, u32::MAX)
                .unwrap_or_else(|e| panic!("{packet:?} re-encoded does not decode: {e}"))
                .unwrap_or_else(|| panic!("{packet:?} re-encoded is incomplete"));
            assert_eq!(again, packet);
            assert!(
                encoded.is_empty(),
                "{packet:?} re-encoded has trailing bytes"
            );
        }
    }
});
