//! Fuzz target: decoding arbitrary bytes must never panic, on the server side (before
//! CONNECT) or with any protocol known; and any packet that decodes must re-encode to bytes
//! that decode to the same packet.
#![no_main]

use bytes::BytesMut;
use dynamq_codec::{Decoder, Protocol, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the decoder, so the fuzzer can steer it.
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let mut decoder = match selector % 4 {
        0 => Decoder::new(1 << 20),
        1 => Decoder::with_protocol(Protocol::V310, 1 << 20),
        2 => Decoder::with_protocol(Protocol::V311, 1 << 20),
        _ => Decoder::with_protocol(Protocol::V5, 1 << 20),
    };
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(packet)) = decoder.decode(&mut buf) {
        let Some(protocol) = decoder.protocol() else {
            panic!("a decoded packet leaves the protocol known");
        };
        let mut again = BytesMut::new();
        if let Err(e) = encode(&packet, protocol, &mut again) {
            panic!("decoded packet does not re-encode: {e}");
        }
        let redecoded = Decoder::with_protocol(protocol, 1 << 20).decode(&mut again);
        assert_eq!(redecoded, Ok(Some(packet)));
    }
});
