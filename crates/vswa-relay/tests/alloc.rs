//! The fan-out's hot path allocates nothing per viewer: handing a frame to 1000
//! write-through viewers costs no more allocations than handing it to 100, with the
//! Prometheus recorder installed as in the relay, on the publishing task alone and
//! shared with a fan-out thread. Counted by a global allocator that counts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use vswa_protocol::{Frame, FrameHeader, StreamName};
use vswa_relay::hub::{DirectOptions, DirectSink, Hub, HubConfig, Next, ViewerKind};

#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

/// Allocations (and reallocations) so far, on every thread.
fn allocations() -> u64 {
    let stats = GLOBAL.stats();
    (stats.allocations + stats.reallocations) as u64
}

/// A socket that takes every byte and keeps none (counts frames).
struct Discard(AtomicUsize);

impl DirectSink for Discard {
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(buf.len())
    }
}

fn frame(seq: u64) -> Bytes {
    let mut payload = vec![0u8; 25_000];
    payload[..2].copy_from_slice(&[0xff, 0xd8]);
    Frame::new(FrameHeader::jpeg(seq, seq, 640, 480), Bytes::from(payload)).to_bytes()
}

/// Allocations per published frame with `viewers` parked write-through viewers.
fn allocations_per_frame(viewers: usize, fanout_threads: usize) -> f64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let hub = Hub::new(HubConfig {
            fanout_threads,
            ..HubConfig::default()
        });
        let name = StreamName::new("alloc").expect("valid");
        let publisher = hub.publish(&name, None).expect("publisher");
        let sinks: Vec<Arc<Discard>> = (0..viewers)
            .map(|_| Arc::new(Discard(AtomicUsize::new(0))))
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
        // Every viewer takes its first frame through its task, then parks.
        publisher.publish(frame(0)).expect("frame");
        for handle in &mut handles {
            match handle.next_direct(true).await {
                Next::Item(_) => {}
                other => panic!("expected the first frame, got {other:?}"),
            }
            let parked =
                tokio::time::timeout(Duration::from_millis(1), handle.next_direct(true)).await;
            assert!(parked.is_err(), "nothing more for the task");
        }
        let messages: Vec<Bytes> = (1..=200).map(frame).collect();
        let wait_all = |count: usize| {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while sinks.iter().any(|s| s.0.load(Ordering::Relaxed) < count) {
                assert!(std::time::Instant::now() < deadline, "frames went missing");
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        // Warm up (the fan-out threads start, the metrics get their keys).
        // Paced like a camera (a fan-out thread that fell --viewer-queue frames
        // behind would hand its viewers to their tasks, which do not run here).
        for (i, msg) in messages[..50].iter().enumerate() {
            publisher.publish(msg.clone()).expect("frame");
            wait_all(i + 1);
        }
        let before = allocations();
        for (i, msg) in messages[50..].iter().enumerate() {
            publisher.publish(msg.clone()).expect("frame");
            wait_all(51 + i);
        }
        let spent = allocations() - before;
        spent as f64 / 150.0
    })
}

#[test]
fn a_frame_to_1000_viewers_allocates_no_more_than_to_100() {
    // As the relay does (it records vswa_viewer_lag_seconds per viewer and frame).
    let _ = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder();
    for threads in [0, 1] {
        // 100: enough to share the fan-out with the thread, as 1000 does.
        let few = allocations_per_frame(100, threads);
        let many = allocations_per_frame(1000, threads);
        eprintln!("fan-out threads {threads}: {few:.2} allocations per frame to 100 viewers, {many:.2} to 1000");
        // A per-viewer allocation would add 900 per frame, one per 64 viewers 14;
        // allow the odd amortised block of a channel or a sample buffer.
        assert!(
            many <= few + 2.0,
            "{many:.2} allocations per frame to 1000 viewers against {few:.2} to 100 ({threads} fan-out threads)"
        );
    }
}
