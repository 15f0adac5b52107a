//! Frame encode and decode of a 25 000-byte payload (about a 640x480 JPEG), as one
//! message and through the streaming decoder. Throughput is in bytes.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vswa::protocol::{Frame, FrameDecoder, FrameHeader};

fn protocol(c: &mut Criterion) {
    let frame = Frame::new(
        FrameHeader::jpeg(1, 1_763_720_100_000_000, 640, 480),
        Bytes::from(vec![0xab; 25_000]),
    );
    let wire = frame.to_bytes();
    let mut group = c.benchmark_group("protocol_25kB");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("encode", |b| b.iter(|| frame.to_bytes()));
    group.bench_function("decode_message", |b| {
        b.iter(|| Frame::decode_bytes(wire.clone(), u32::MAX).expect("valid"))
    });
    group.bench_function("decode_stream_10_frames", |b| {
        let mut stream = BytesMut::new();
        for _ in 0..10 {
            stream.extend_from_slice(&wire);
        }
        let stream = stream.freeze();
        b.iter(|| {
            let mut decoder = FrameDecoder::default();
            let mut buf = BytesMut::from(&stream[..]);
            let mut n = 0;
            while let Some(_frame) = decoder.decode(&mut buf).expect("valid") {
                n += 1;
            }
            assert_eq!(n, 10);
        })
    });
    group.finish();
}

criterion_group!(benches, protocol);
criterion_main!(benches);
