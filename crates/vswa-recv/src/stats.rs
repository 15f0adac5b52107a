//! Receive statistics: frames, fps, capture-to-receive latency percentiles, drops from
//! sequence gaps, and bitrate, for the live status line and the final summary.
//!
//! Memory stays bounded however long the program runs: latency percentiles for the
//! whole run come from a fixed-size uniform reservoir, and the live ones from a ring of
//! the most recent samples.

use std::time::Instant;

use serde::Serialize;

/// Largest capture-to-receive latency, either way, taken as a latency: a frame stamped
/// further from the receiver's clock than this (one hour) says the two clocks disagree
/// (or the stamp is made up), and is counted as clock skew instead.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Receive time minus capture time, both in microseconds since the epoch, for any
/// values (saturating at the ends of `i64` rather than overflowing).
pub fn latency_us(received_us: u64, timestamp_us: u64) -> i64 {
    let difference = i128::from(received_us) - i128::from(timestamp_us);
    i64::try_from(difference).unwrap_or(if difference < 0 { i64::MIN } else { i64::MAX })
}

/// Latency samples kept for the whole-run percentiles.
pub const RESERVOIR_LEN: usize = 4096;
/// Most recent latency samples used for the live status line.
pub const RECENT_LEN: usize = 256;

/// A uniform random sample of at most [`RESERVOIR_LEN`] values out of any number
/// (Vitter's algorithm R), so percentiles of a long run cost constant memory.
#[derive(Debug, Clone)]
pub struct Reservoir {
    samples: Vec<i64>,
    seen: u64,
    rng: u64,
}

impl Default for Reservoir {
    fn default() -> Self {
        Reservoir {
            samples: Vec::with_capacity(RESERVOIR_LEN),
            seen: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

impl Reservoir {
    /// Offers one value.
    pub fn push(&mut self, value: i64) {
        self.seen += 1;
        if self.samples.len() < RESERVOIR_LEN {
            self.samples.push(value);
            return;
        }
        // xorshift64: statistical quality is ample for sampling, and it needs no crate.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let slot = self.rng % self.seen;
        if let Some(s) = self.samples.get_mut(slot as usize) {
            *s = value;
        }
    }

    /// Values offered so far (not only those kept).
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The kept values.
    pub fn samples(&self) -> &[i64] {
        &self.samples
    }
}

/// The most recent [`RECENT_LEN`] values.
#[derive(Debug, Clone, Default)]
pub struct Recent {
    samples: Vec<i64>,
    next: usize,
}

impl Recent {
    /// Adds a value, forgetting the oldest when full.
    pub fn push(&mut self, value: i64) {
        if self.samples.len() < RECENT_LEN {
            self.samples.push(value);
        } else {
            self.samples[self.next] = value;
        }
        self.next = (self.next + 1) % RECENT_LEN;
    }

    /// The kept values, in no particular order.
    pub fn samples(&self) -> &[i64] {
        &self.samples
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value among the samples.
    pub max: f64,
}

impl Latency {
    /// Nearest-rank percentiles of latencies given in microseconds; `None` if empty.
    pub fn from_micros(samples: &[i64]) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let rank = |p: f64| {
            let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[idx] as f64 / 1000.0
        };
        Some(Latency {
            p50: rank(0.50),
            p99: rank(0.99),
            max: sorted[sorted.len() - 1] as f64 / 1000.0,
        })
    }
}

/// Why the program stopped receiving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `--count` frames were received.
    Count,
    /// `--duration` elapsed.
    Duration,
    /// The publisher left (an `end` message with reason `publisher_left`).
    StreamEnded,
    /// Ctrl-C or SIGTERM.
    Signal,
    /// The reader of `--mjpeg` or `--h264` closed its end of the pipe.
    PipeClosed,
    /// The `--display` window was closed.
    WindowClosed,
}

impl StopReason {
    /// A few words for the summary line.
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::Count => "frame count reached",
            StopReason::Duration => "duration reached",
            StopReason::StreamEnded => "stream ended",
            StopReason::Signal => "interrupted",
            StopReason::PipeClosed => "output pipe closed",
            StopReason::WindowClosed => "window closed",
        }
    }
}

/// The final report, printed as one line on stderr or, with `--stats-json`, as one JSON
/// object on stdout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Frames received (placeholders included).
    pub frames: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Seconds from the first connection to the end.
    pub seconds: f64,
    /// Average frames per second, from the first frame's arrival to the last one's
    /// (0 with fewer than two frames).
    pub fps: f64,
    /// Average payload bitrate over the same span, in kbit/s.
    pub kbit_per_s: f64,
    /// Capture-to-receive latency percentiles over the whole run (from a bounded
    /// sample); `null` without frames or when every frame was clock skew. Corrected
    /// for the clock offsets of publisher and receiver to the relay (the `time` and
    /// `clock` exchange) for the frames counted in `clock_synced_frames`; the others
    /// assume the two clocks agree.
    pub latency_ms: Option<Latency>,
    /// Frames whose latency is corrected by clock synchronisation.
    pub clock_synced_frames: u64,
    /// Frames stamped more than [`MAX_LATENCY_US`] from the receiver's clock, left out
    /// of `latency_ms`.
    pub clock_skew_frames: u64,
    /// Frames missing according to sequence gaps, summed (saturating: a publisher
    /// that makes its sequence jump can make it at most `u64::MAX`).
    pub drops: u64,
    /// Placeholder ("no signal") frames among `frames`.
    pub placeholders: u64,
    /// H.264 frames among `frames` that no decoder could use, so `--h264`, `--out-dir`
    /// and `--display` skipped them (the recording keeps them): delta frames before the
    /// first keyframe, and after a lost frame up to the next keyframe.
    pub skipped_to_keyframe: u64,
    /// Times the connection was lost and re-established.
    pub reconnects: u64,
    /// Sequence number of the first frame received.
    pub first_sequence: Option<u64>,
    /// Sequence number of the last frame received.
    pub last_sequence: Option<u64>,
    /// Why receiving stopped.
    pub stopped: StopReason,
}

impl Summary {
    /// The one-line human form.
    pub fn line(&self) -> String {
        let mut latency = match &self.latency_ms {
            Some(l) => format!("latency p50 {:.1} ms p99 {:.1} ms", l.p50, l.p99),
            None => "latency n/a".to_string(),
        };
        if self.latency_ms.is_some() && self.clock_synced_frames > 0 {
            latency.push_str(" (clock-synced)");
        }
        if self.clock_skew_frames > 0 {
            latency.push_str(&format!(
                " (clock skew on {} frames, stamped over 1 h off)",
                self.clock_skew_frames
            ));
        }
        let skipped = match self.skipped_to_keyframe {
            0 => String::new(),
            n => format!(", {n} skipped to the next keyframe"),
        };
        format!(
            "{} frames in {:.1} s ({:.1} fps), {latency}, {} dropped{skipped}, {:.0} kbit/s, {} reconnects; {}",
            self.frames,
            self.seconds,
            self.fps,
            self.drops,
            self.kbit_per_s,
            self.reconnects,
            self.stopped.describe()
        )
    }
}

/// Counters of one run. Time comes in as arguments so the arithmetic is testable.
#[derive(Debug, Clone)]
pub struct Stats {
    started: Instant,
    frames: u64,
    bytes: u64,
    drops: u64,
    placeholders: u64,
    skipped_to_keyframe: u64,
    reconnects: u64,
    first_sequence: Option<u64>,
    last_sequence: Option<u64>,
    /// Arrival of the first frame and its size, which the average rates leave out:
    /// the relay may hand a new viewer a frame captured earlier.
    first_frame: Option<(Instant, u64)>,
    last_frame_at: Option<Instant>,
    /// Frames whose latency was clock skew, and whether the newest one's was.
    clock_skew_frames: u64,
    newest_skewed: bool,
    clock_synced_frames: u64,
    reservoir: Reservoir,
    recent: Recent,
    window_start: Instant,
    window_frames: u64,
    window_bytes: u64,
}

impl Stats {
    /// Starts counting at `now`.
    pub fn new(now: Instant) -> Stats {
        Stats {
            started: now,
            frames: 0,
            bytes: 0,
            drops: 0,
            placeholders: 0,
            skipped_to_keyframe: 0,
            reconnects: 0,
            first_sequence: None,
            last_sequence: None,
            first_frame: None,
            last_frame_at: None,
            clock_skew_frames: 0,
            newest_skewed: false,
            clock_synced_frames: 0,
            reservoir: Reservoir::default(),
            recent: Recent::default(),
            window_start: now,
            window_frames: 0,
            window_bytes: 0,
        }
    }

    /// Restarts the clock, e.g. once connected, so connecting does not count as receiving.
    pub fn start(&mut self, now: Instant) {
        self.started = now;
        self.window_start = now;
    }

    /// Counts a frame that arrived at `now`. `latency_us` is receive time minus capture
    /// time (see [`latency_us`]); more than [`MAX_LATENCY_US`] either way is counted as
    /// clock skew, not as a latency. `gap` is the frames missing before it.
    ///
    /// Everything here comes from the publisher, so any value is possible: counters
    /// saturate rather than overflow.
    pub fn frame(
        &mut self,
        now: Instant,
        sequence: u64,
        payload_len: usize,
        latency_us: i64,
        gap: u64,
        placeholder: bool,
    ) {
        let len = payload_len as u64;
        self.frames = self.frames.saturating_add(1);
        self.bytes = self.bytes.saturating_add(len);
        self.window_frames = self.window_frames.saturating_add(1);
        self.window_bytes = self.window_bytes.saturating_add(len);
        self.drops = self.drops.saturating_add(gap);
        self.placeholders = self.placeholders.saturating_add(u64::from(placeholder));
        self.first_sequence.get_or_insert(sequence);
        self.first_frame.get_or_insert((now, len));
        self.last_frame_at = Some(now);
        self.last_sequence = Some(sequence);
        self.newest_skewed = latency_us.unsigned_abs() > MAX_LATENCY_US;
        if self.newest_skewed {
            self.clock_skew_frames = self.clock_skew_frames.saturating_add(1);
        } else {
            self.reservoir.push(latency_us);
            self.recent.push(latency_us);
        }
    }

    /// Counts an H.264 frame that no decoder could use (see
    /// [`KeyframeGate`](crate::gate::KeyframeGate)).
    pub fn skipped_to_keyframe(&mut self) {
        self.skipped_to_keyframe = self.skipped_to_keyframe.saturating_add(1);
    }

    /// Frames so far that the outputs could use: all of them but those counted by
    /// [`skipped_to_keyframe`](Stats::skipped_to_keyframe). `--count` counts these.
    pub fn usable_frames(&self) -> u64 {
        self.frames.saturating_sub(self.skipped_to_keyframe)
    }

    /// Counts a lost connection.
    pub fn reconnect(&mut self) {
        self.reconnects += 1;
    }

    /// Frames so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Notes that the latest frame's latency was corrected by clock synchronisation.
    pub fn clock_synced(&mut self) {
        self.clock_synced_frames = self.clock_synced_frames.saturating_add(1);
    }

    /// The live status line: rates since the previous call, recent latency, totals.
    pub fn status_line(&mut self, now: Instant) -> String {
        let secs = now
            .saturating_duration_since(self.window_start)
            .as_secs_f64()
            .max(1e-3);
        let fps = self.window_frames as f64 / secs;
        let kbps = self.window_bytes as f64 * 8.0 / 1000.0 / secs;
        self.window_start = now;
        self.window_frames = 0;
        self.window_bytes = 0;
        // The newest frame decides: once the clocks disagree, older samples are stale.
        let latency = match Latency::from_micros(self.recent.samples()) {
            _ if self.newest_skewed => "clock skew".to_string(),
            Some(l) => format!("p50 {:.1} ms p99 {:.1} ms", l.p50, l.p99),
            None => "n/a".to_string(),
        };
        let skipped = match self.skipped_to_keyframe {
            0 => String::new(),
            n => format!(" | {n} skipped to keyframe"),
        };
        format!(
            "{} frames | {fps:.1} fps | latency {latency} | {} dropped{skipped} | {kbps:.0} kbit/s",
            self.frames, self.drops
        )
    }

    /// The final report.
    pub fn summary(&self, now: Instant, stopped: StopReason) -> Summary {
        let elapsed = now.saturating_duration_since(self.started);
        let (fps, kbit_per_s) = match (self.first_frame, self.last_frame_at) {
            (Some((first, first_bytes)), Some(last)) if last > first => {
                let span = (last - first).as_secs_f64();
                (
                    self.frames.saturating_sub(1) as f64 / span,
                    self.bytes.saturating_sub(first_bytes) as f64 * 8.0 / 1000.0 / span,
                )
            }
            _ => (0.0, 0.0),
        };
        let round3 = |v: f64| (v * 1000.0).round() / 1000.0;
        Summary {
            frames: self.frames,
            bytes: self.bytes,
            seconds: round3(elapsed.as_secs_f64()),
            fps: round3(fps),
            kbit_per_s: round3(kbit_per_s),
            latency_ms: Latency::from_micros(self.reservoir.samples()),
            clock_skew_frames: self.clock_skew_frames,
            clock_synced_frames: self.clock_synced_frames,
            drops: self.drops,
            placeholders: self.placeholders,
            skipped_to_keyframe: self.skipped_to_keyframe,
            reconnects: self.reconnects,
            first_sequence: self.first_sequence,
            last_sequence: self.last_sequence,
            stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn percentiles_nearest_rank() {
        let samples: Vec<i64> = (1..=100).map(|ms| ms * 1000).collect();
        let l = Latency::from_micros(&samples).unwrap();
        assert_eq!((l.p50, l.p99, l.max), (50.0, 99.0, 100.0));
        assert_eq!(Latency::from_micros(&[]), None);
        let one = Latency::from_micros(&[1500]).unwrap();
        assert_eq!((one.p50, one.p99), (1.5, 1.5));
    }

    #[test]
    fn reservoir_stays_bounded_and_representative() {
        let mut r = Reservoir::default();
        for i in 0..100_000 {
            r.push(i);
        }
        assert_eq!(r.samples().len(), RESERVOIR_LEN);
        assert_eq!(r.seen(), 100_000);
        // A uniform sample of 0..100k has its median near 50k.
        let median = Latency::from_micros(r.samples()).unwrap().p50 * 1000.0;
        assert!((40_000.0..60_000.0).contains(&median), "median {median}");
    }

    #[test]
    fn recent_keeps_the_newest() {
        let mut r = Recent::default();
        for i in 0..1000 {
            r.push(i);
        }
        assert_eq!(r.samples().len(), RECENT_LEN);
        assert_eq!(*r.samples().iter().min().unwrap(), 1000 - RECENT_LEN as i64);
    }

    /// Sequence numbers at the ends of the range and jumping back and forth, with the
    /// gaps the subscriber computes from them (up to u64::MAX - 1 each), and latencies
    /// at the ends of i64: counters saturate instead of overflowing (a panic in a debug
    /// build), and the far-off latencies are clock skew.
    #[test]
    fn hostile_sequences_and_latencies_never_overflow() {
        let t0 = Instant::now();
        let mut s = Stats::new(t0);
        let frames = [
            (u64::MAX, i64::MAX, 0),
            (0, i64::MIN, 0),
            (u64::MAX, 0, u64::MAX - 1),
            (1, -1, 0),
            (u64::MAX - 1, i64::MIN + 1, u64::MAX - 2),
            (u64::MAX, i64::MAX - 1, 0),
        ];
        for (i, (seq, latency, gap)) in frames.into_iter().enumerate() {
            s.frame(
                t0 + Duration::from_millis(i as u64),
                seq,
                usize::MAX / 4,
                latency,
                gap,
                false,
            );
            s.status_line(t0 + Duration::from_millis(i as u64));
        }
        let sum = s.summary(t0 + Duration::from_secs(1), StopReason::StreamEnded);
        assert_eq!(sum.frames, 6);
        assert_eq!(sum.drops, u64::MAX);
        assert_eq!(
            (sum.first_sequence, sum.last_sequence),
            (Some(u64::MAX), Some(u64::MAX))
        );
        assert!(sum.fps.is_finite() && sum.kbit_per_s.is_finite());
        // Only 0 and -1 µs are real latencies; the other four are clock skew.
        let l = sum.latency_ms.unwrap();
        assert!(l.max <= 0.0 && l.p50 >= -0.001, "{l:?}");
        assert!(sum.line().contains("clock skew"), "{}", sum.line());
    }

    /// Frames stamped more than an hour from the receiver's clock say "clock skew" in
    /// the status line and the summary instead of a latency in the billions of ms.
    #[test]
    fn far_off_timestamps_are_clock_skew_not_latency() {
        let t0 = Instant::now();
        let hour_us = 3_600_000_000i64;
        for latency in [hour_us + 1, -hour_us - 1, 1_795_256_100_123_456, i64::MIN] {
            let mut s = Stats::new(t0);
            s.frame(t0, 1, 1000, latency, 0, false);
            s.frame(t0 + Duration::from_secs(1), 2, 1000, latency, 0, false);
            let status = s.status_line(t0 + Duration::from_secs(1));
            assert!(status.contains("latency clock skew"), "{status}");
            let sum = s.summary(t0 + Duration::from_secs(2), StopReason::Count);
            assert_eq!(sum.latency_ms, None);
            let line = sum.line();
            assert!(line.contains("clock skew"), "{line}");
            assert!(!line.contains("e12") && !line.contains("000000"), "{line}");
            let json = serde_json::to_value(&sum).unwrap();
            assert_eq!(json["clock_skew_frames"], 2);
        }
        // Within the hour, even behind, it is a latency.
        let mut s = Stats::new(t0);
        s.frame(t0, 1, 1000, hour_us - 1, 0, false);
        s.frame(t0, 2, 1000, -5_000, 0, false);
        assert!(!s.status_line(t0).contains("skew"));
        let sum = s.summary(t0, StopReason::Count);
        assert_eq!(sum.latency_ms.unwrap().max, 3_599_999.999);
        assert!(!sum.line().contains("skew"), "{}", sum.line());
    }

    #[test]
    fn summary_rates_and_drops() {
        let t0 = Instant::now();
        let mut s = Stats::new(t0);
        s.frame(t0, 10, 1000, 2000, 0, false);
        s.frame(t0 + Duration::from_secs(1), 13, 1000, 4000, 2, true);
        s.frame(t0 + Duration::from_secs(2), 14, 1000, 3000, 0, false);
        let sum = s.summary(t0 + Duration::from_secs(3), StopReason::Count);
        assert_eq!(sum.frames, 3);
        assert_eq!(sum.drops, 2);
        assert_eq!(sum.placeholders, 1);
        assert_eq!(sum.seconds, 3.0);
        assert_eq!(
            (sum.first_sequence, sum.last_sequence),
            (Some(10), Some(14))
        );
        assert!((sum.fps - 1.0).abs() < 1e-9);
        assert!((sum.kbit_per_s - 8.0).abs() < 1e-9);
        assert_eq!(sum.latency_ms.unwrap().p50, 3.0);
        assert_eq!(sum.skipped_to_keyframe, 0);
        assert!(!sum.line().contains("skipped"), "{}", sum.line());
        let one = Stats::new(t0);
        assert_eq!(one.summary(t0, StopReason::Signal).fps, 0.0);
        let json = serde_json::to_value(&sum).unwrap();
        assert_eq!(json["stopped"], "count");
        assert_eq!(json["latency_ms"]["p99"], 4.0);
    }

    /// Sequence numbers and timestamps biased to the ends of their ranges.
    fn hostile_u64() -> impl proptest::strategy::Strategy<Value = u64> {
        use proptest::prelude::*;
        prop_oneof![
            Just(0),
            Just(1),
            Just(u64::MAX),
            Just(u64::MAX - 1),
            Just(1 << 63),
            Just(i64::MAX as u64),
            any::<u64>(),
        ]
    }

    proptest::proptest! {
        /// Any stream of (sequence, timestamp) pairs, received at any time, with the
        /// gaps the subscriber derives from the sequence: no panic (overflow included,
        /// tests being a debug build), and the summary stays consistent.
        #[test]
        fn arbitrary_sequence_and_timestamp_streams_never_panic(
            frames in proptest::collection::vec(
                (
                    hostile_u64(),
                    hostile_u64(),
                    proptest::prop_oneof![
                        proptest::strategy::Just(1_795_256_100_000_000u64),
                        hostile_u64()
                    ],
                    proptest::prelude::any::<usize>(),
                    0u64..2_000,
                ),
                0..64,
            ),
        ) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut stats = Stats::new(t0);
            let mut last_sequence: Option<u64> = None;
            for (sequence, timestamp_us, received_us, len, ms) in frames.iter().copied() {
                now += Duration::from_millis(ms);
                // As `vswa_client::Subscriber` computes it.
                let gap = match last_sequence {
                    Some(last) if sequence > last => sequence - last - 1,
                    _ => 0,
                };
                last_sequence = Some(sequence);
                let latency = latency_us(received_us, timestamp_us);
                stats.frame(now, sequence, len, latency, gap, ms % 2 == 0);
                let _ = stats.status_line(now);
            }
            let summary = stats.summary(now, StopReason::StreamEnded);
            let _ = summary.line();
            proptest::prop_assert_eq!(summary.frames, frames.len() as u64);
            proptest::prop_assert!(summary.clock_skew_frames <= summary.frames);
            proptest::prop_assert!(summary.fps.is_finite() && summary.kbit_per_s.is_finite());
            if let Some(l) = summary.latency_ms {
                let max_ms = (MAX_LATENCY_US / 1000) as f64;
                proptest::prop_assert!(l.max.abs() <= max_ms && l.p50.abs() <= max_ms);
            }
        }
    }

    /// H.264 frames skipped to the next keyframe are reported, and `--count` does not
    /// count them.
    #[test]
    fn skipped_to_keyframe_is_reported_and_not_usable() {
        let t0 = Instant::now();
        let mut s = Stats::new(t0);
        for seq in 0..5 {
            s.frame(t0, seq, 100, 1000, 0, false);
            if seq < 2 {
                s.skipped_to_keyframe();
            }
        }
        assert_eq!((s.frames(), s.usable_frames()), (5, 3));
        assert!(s.status_line(t0).contains("| 2 skipped to keyframe |"));
        let sum = s.summary(t0, StopReason::Count);
        assert_eq!(sum.skipped_to_keyframe, 2);
        assert!(
            sum.line()
                .contains(", 0 dropped, 2 skipped to the next keyframe, "),
            "{}",
            sum.line()
        );
        let json = serde_json::to_value(&sum).unwrap();
        assert_eq!(json["skipped_to_keyframe"], 2);
    }

    #[test]
    fn latency_saturates_at_the_ends() {
        assert_eq!(latency_us(5, 3), 2);
        assert_eq!(latency_us(3, 5), -2);
        assert_eq!(latency_us(u64::MAX, 0), i64::MAX);
        assert_eq!(latency_us(0, u64::MAX), i64::MIN);
        assert_eq!(latency_us(0, 1 << 63), i64::MIN);
        assert_eq!(latency_us(1 << 63, 1), i64::MAX);
    }
}
