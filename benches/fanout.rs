//! The relay hub's fan-out: one published frame handed to 1, 100 and 1000 in-process
//! viewers, two ways. `hub_fanout_25kB`: each viewer takes the frame from the shared
//! ring (what a viewer's own task does). `hub_write_through_25kB`: the publishing call
//! writes it into every parked viewer's socket itself (write-through, on the publishing
//! task alone); the sockets here take every byte and keep none, so this is the hub's
//! own cost per hand-off, without the kernel's copy.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vswa::protocol::{Frame, FrameHeader, StreamName};
use vswa::relay::hub::{DirectOptions, DirectSink, Hub, HubConfig, Item, Next, ViewerKind};

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

/// A socket that takes everything at once.
struct Discard(AtomicU64);

impl DirectSink for Discard {
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(buf.len())
    }
}

fn write_through(c: &mut Criterion) {
    let mut group = c.benchmark_group("hub_write_through_25kB");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let payload = {
        let mut p = vec![0u8; 25_000];
        p[0] = 0xff;
        p[1] = 0xd8;
        Bytes::from(p)
    };
    for viewers in [1usize, 100, 1000] {
        let hub = Hub::new(HubConfig {
            fanout_threads: 0,
            ..HubConfig::default()
        });
        let name = StreamName::new("bench").expect("valid");
        let publisher = hub.publish(&name, None).expect("publisher");
        let sinks: Vec<Arc<Discard>> = (0..viewers)
            .map(|_| Arc::new(Discard(AtomicU64::new(0))))
            .collect();
        let mut handles: Vec<_> = sinks
            .iter()
            .map(|s| {
                hub.watch_direct(
                    &name,
                    ViewerKind::Ws,
                    None,
                    s.clone(),
                    DirectOptions::default(),
                )
                .expect("viewer")
            })
            .collect();
        let first = Frame::new(FrameHeader::jpeg(0, 0, 640, 480), payload.clone()).to_bytes();
        publisher.publish(first).expect("valid frame");
        // Each viewer's task takes the first frame, then parks: write-through from here.
        runtime.block_on(async {
            for handle in &mut handles {
                assert!(matches!(handle.next_direct(true).await, Next::Item(_)));
                let parked =
                    tokio::time::timeout(Duration::from_millis(1), handle.next_direct(true)).await;
                assert!(parked.is_err(), "the task has nothing more to do");
            }
        });
        let mut seq = 0u64;
        group.throughput(Throughput::Elements(viewers as u64));
        group.bench_function(BenchmarkId::from_parameter(viewers), |b| {
            b.iter(|| {
                seq += 1;
                let msg =
                    Frame::new(FrameHeader::jpeg(seq, seq, 640, 480), payload.clone()).to_bytes();
                publisher.publish(msg).expect("valid frame");
            })
        });
        // Every frame reached every viewer by write-through (none left to the tasks).
        for sink in &sinks {
            assert_eq!(
                sink.0.load(Ordering::Relaxed),
                seq,
                "a frame went to a task"
            );
        }
    }
    group.finish();
}

criterion_group!(benches, fanout, write_through);
criterion_main!(benches);
