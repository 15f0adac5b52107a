//! The relay hub's fan-out: one published frame handed to 1, 100 and 1000 in-process
//! viewers (each takes the frame from the shared ring). Sockets are not involved.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vswa::protocol::{Frame, FrameHeader, StreamName};
use vswa::relay::hub::{Hub, HubConfig, Item, ViewerKind};

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("hub_fanout_25kB");
    let payload = {
        let mut p = vec![0u8; 25_000];
        p[0] = 0xff;
        p[1] = 0xd8;
        Bytes::from(p)
    };
    for viewers in [1usize, 100, 1000] {
        let hub = Hub::new(HubConfig::default());
        let name = StreamName::new("bench").expect("valid");
        let publisher = hub.publish(&name, None).expect("publisher");
        let mut handles: Vec<_> = (0..viewers)
            .map(|_| hub.watch(&name, ViewerKind::Ws, None).expect("viewer"))
            .collect();
        let mut seq = 0u64;
        group.throughput(Throughput::Elements(viewers as u64));
        group.bench_function(BenchmarkId::from_parameter(viewers), |b| {
            b.iter(|| {
                seq += 1;
                let msg =
                    Frame::new(FrameHeader::jpeg(seq, seq, 640, 480), payload.clone()).to_bytes();
                publisher.publish(msg).expect("valid frame");
                for viewer in &mut handles {
                    match viewer.try_next() {
                        Some(Item::Frame(out)) => assert_eq!(out.frame.header().sequence, seq),
                        other => panic!("expected a frame, got {other:?}"),
                    }
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
