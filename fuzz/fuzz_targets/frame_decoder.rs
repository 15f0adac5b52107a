//! Feeds arbitrary bytes to every decoding entry point of vswa-protocol: one message,
//! the streaming decoder in two chunks, and the recording reader. None may panic, and
//! whatever decodes must encode back to the same bytes.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use vswa_protocol::{recording, Frame, FrameDecoder};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::decode(data) {
        assert_eq!(&frame.to_bytes()[..], data);
    }
    let split = data.first().map_or(0, |b| *b as usize).min(data.len());
    let mut decoder = FrameDecoder::new(1 << 20);
    let mut buf = BytesMut::from(&data[..split]);
    let mut out = BytesMut::new();
    let mut fed_rest = false;
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(frame)) => frame.encode(&mut out),
            Ok(None) if !fed_rest => {
                buf.extend_from_slice(&data[split..]);
                fed_rest = true;
            }
            Ok(None) | Err(_) => break,
        }
    }
    assert!(data.starts_with(&out));
    let _ = recording::parse(data);
});
