//! Feeds arbitrary bytes, in two chunks, to the MJPEG splitter. It must never panic and
//! every picture it yields must start with SOI and end with EOI.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vswa_capture::MjpegSplitter;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| *b as usize).min(data.len());
    let mut splitter = MjpegSplitter::with_max_len(1 << 16);
    for chunk in [&data[..split], &data[split..]] {
        splitter.push(chunk);
        while let Ok(Some(jpeg)) = splitter.next_jpeg() {
            assert!(jpeg.starts_with(&[0xff, 0xd8]));
            assert!(jpeg.ends_with(&[0xff, 0xd9]));
        }
    }
});
