//! Clock synchronisation, NTP-style, sans IO: a client estimates its offset to the
//! relay's clock from `time` exchanges, keeping the lowest-round-trip sample of recent
//! ones. Callers pass every time in (µs since the UNIX epoch on their own clock).
//!
//! Offsets are always *relay clock minus local clock*: `relay_time = local_time +
//! offset`. A viewer puts a frame's capture timestamp (publisher clock) on its own clock
//! with the publisher's offset from a [`Clock`] message and its own:
//! `timestamp_us + publisher_offset_us - viewer_offset_us`
//! ([`ClockSync::capture_to_local`]).
//!
//! All arithmetic is done in `i128` and saturates or rejects, so hostile values (a
//! response full of `u64::MAX`) give no sample rather than a panic.

use std::collections::VecDeque;

use crate::control::{Clock, ControlMessage, Time};

/// One completed `time` exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClockSample {
    /// Relay clock minus local clock, in microseconds.
    pub offset_us: i64,
    /// Round-trip time minus the relay's processing time, in microseconds. The true
    /// offset lies within `rtt_us / 2` of `offset_us`.
    pub rtt_us: u64,
    /// When the response arrived (`t3`), on the local clock.
    pub at_us: u64,
}

impl ClockSample {
    /// The NTP formulas for one exchange: `t0` request sent and `t3` response received
    /// (local clock), `t1` request received and `t2` response sent (relay clock):
    /// `offset = ((t1 - t0) + (t2 - t3)) / 2` (rounded toward negative infinity) and
    /// `rtt = (t3 - t0) - (t2 - t1)`.
    ///
    /// `None` if the times are inconsistent (`t3 < t0`, `t2 < t1`, a negative round
    /// trip) or the offset does not fit an `i64`.
    pub fn from_exchange(t0: u64, t1: u64, t2: u64, t3: u64) -> Option<ClockSample> {
        let (t0, t1, t2, t3) = (t0 as i128, t1 as i128, t2 as i128, t3 as i128);
        if t3 < t0 || t2 < t1 {
            return None;
        }
        let rtt = (t3 - t0) - (t2 - t1);
        let offset = ((t1 - t0) + (t2 - t3)).div_euclid(2);
        Some(ClockSample {
            offset_us: i64::try_from(offset).ok()?,
            rtt_us: u64::try_from(rtt).ok()?,
            at_us: t3 as u64,
        })
    }
}

/// A client's clock synchronisation with its relay.
///
/// Send [`request`](Self::request) when [`next_request_at`](Self::next_request_at) has
/// come (a burst of [`BURST`](Self::BURST) exchanges at connect, then one every
/// [`INTERVAL_US`](Self::INTERVAL_US)), hand every `time` response to
/// [`on_response`](Self::on_response), and read the estimate with
/// [`offset_us`](Self::offset_us): the lowest-RTT sample among those of the last
/// [`WINDOW_US`](Self::WINDOW_US) (at most [`MAX_SAMPLES`](Self::MAX_SAMPLES)).
///
/// ```
/// use vswa_protocol::control::{ControlMessage, Time};
/// use vswa_protocol::ClockSync;
///
/// let mut sync = ClockSync::new();
/// // The client's clock is 2 s behind the relay's; 10 ms each way, 1 ms at the relay.
/// let t0 = 1_000_000_000_000;
/// let ControlMessage::Time(request) = sync.request(t0) else { unreachable!() };
/// let (t1, t2) = (t0 + 2_000_000 + 10_000, t0 + 2_000_000 + 11_000);
/// let ControlMessage::Time(response) = ControlMessage::time_response(request.t0, t1, t2)
/// else { unreachable!() };
/// let sample = sync.on_response(&response, t0 + 21_000).unwrap();
/// assert_eq!((sample.offset_us, sample.rtt_us), (2_000_000, 20_000));
/// assert_eq!(sync.to_local(t1), Some(t0 + 10_000));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClockSync {
    /// `t0` of requests not yet answered, oldest first.
    pending: VecDeque<u64>,
    /// Recent samples, oldest first.
    samples: VecDeque<ClockSample>,
    /// Requests sent since creation or [`reset`](Self::reset).
    sent: u32,
    /// When the last request was sent, and whether it has been answered.
    last_request: Option<(u64, bool)>,
    /// The offset of the last [`Clock`] handed out by [`clock_report`](Self::clock_report).
    reported: Option<Clock>,
}

impl ClockSync {
    /// Exchanges in the burst at connect: each request goes out as soon as the previous
    /// one is answered (or has timed out).
    pub const BURST: u32 = 4;
    /// Time between requests after the burst: 10 s.
    pub const INTERVAL_US: u64 = 10_000_000;
    /// During the burst, a request without a response for this long (1 s) is given up
    /// and the next one is sent.
    pub const RESPONSE_TIMEOUT_US: u64 = 1_000_000;
    /// Samples more than this much (60 s) older than the newest one are dropped.
    pub const WINDOW_US: u64 = 60_000_000;
    /// At most this many recent samples are kept.
    pub const MAX_SAMPLES: usize = 8;
    /// At most this many unanswered requests are remembered.
    const MAX_PENDING: usize = 4;

    /// No samples yet; the first request is due at once.
    pub fn new() -> ClockSync {
        ClockSync::default()
    }

    /// Forgets everything, as after connecting to a (possibly different) relay.
    pub fn reset(&mut self) {
        *self = ClockSync::new();
    }

    /// A `time` request sent at `now_us` (local clock); send it right away.
    pub fn request(&mut self, now_us: u64) -> ControlMessage {
        if self.pending.len() == Self::MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back(now_us);
        self.sent = self.sent.saturating_add(1);
        self.last_request = Some((now_us, false));
        ControlMessage::time_request(now_us)
    }

    /// When (local clock, µs) the next request is due; it is due now if this is not
    /// later than the current time. 0 before the first request.
    pub fn next_request_at(&self) -> u64 {
        let Some((sent_at, answered)) = self.last_request else {
            return 0;
        };
        if self.sent >= Self::BURST {
            sent_at.saturating_add(Self::INTERVAL_US)
        } else if answered {
            sent_at
        } else {
            sent_at.saturating_add(Self::RESPONSE_TIMEOUT_US)
        }
    }

    /// Takes a `time` response that arrived at `now_us` (local clock). Returns the new
    /// sample, or `None` if the message is not a response to a pending request of ours
    /// or its times are inconsistent (it is then ignored).
    pub fn on_response(&mut self, msg: &Time, now_us: u64) -> Option<ClockSample> {
        let (Some(t1), Some(t2)) = (msg.t1, msg.t2) else {
            return None;
        };
        let i = self.pending.iter().position(|&t0| t0 == msg.t0)?;
        self.pending.remove(i);
        if let Some((sent_at, answered)) = &mut self.last_request {
            *answered |= *sent_at == msg.t0;
        }
        let sample = ClockSample::from_exchange(msg.t0, t1, t2, now_us)?;
        // Keep samples from the last WINDOW_US before this one; a sample "from the
        // future" means the local clock was stepped back, so it is dropped too.
        self.samples
            .retain(|s| s.at_us <= sample.at_us && sample.at_us - s.at_us <= Self::WINDOW_US);
        if self.samples.len() == Self::MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        Some(sample)
    }

    /// The sample the estimate uses: the lowest RTT among the recent samples (the newest
    /// of equals).
    pub fn best(&self) -> Option<ClockSample> {
        self.samples.iter().rev().min_by_key(|s| s.rtt_us).copied()
    }

    /// Relay clock minus local clock, in microseconds, if any exchange has completed.
    pub fn offset_us(&self) -> Option<i64> {
        self.best().map(|s| s.offset_us)
    }

    /// The round-trip time of the sample behind [`offset_us`](Self::offset_us).
    pub fn rtt_us(&self) -> Option<u64> {
        self.best().map(|s| s.rtt_us)
    }

    /// A time on the relay's clock expressed on the local clock (`remote - offset`,
    /// saturating at 0 and `u64::MAX`).
    pub fn to_local(&self, remote_us: u64) -> Option<u64> {
        Some(saturate(remote_us as i128 - self.offset_us()? as i128))
    }

    /// A time on the local clock expressed on the relay's clock (`local + offset`,
    /// saturating).
    pub fn to_remote(&self, local_us: u64) -> Option<u64> {
        Some(saturate(local_us as i128 + self.offset_us()? as i128))
    }

    /// For a viewer: a frame's `timestamp_us` (publisher clock) on the local clock,
    /// `timestamp_us + publisher.publisher_offset_us - offset`, saturating. `None`
    /// until this viewer has its own offset.
    pub fn capture_to_local(&self, timestamp_us: u64, publisher: &Clock) -> Option<u64> {
        let local = timestamp_us as i128 + publisher.publisher_offset_us as i128
            - self.offset_us()? as i128;
        Some(saturate(local))
    }

    /// For a publisher: the `clock` message to send to the relay, when there is an
    /// estimate and it differs from the last one reported by more than
    /// [`Clock::THRESHOLD_US`] (or none was reported yet).
    pub fn clock_report(&mut self) -> Option<Clock> {
        let best = self.best()?;
        let clock = Clock {
            publisher_offset_us: best.offset_us,
            rtt_us: best.rtt_us,
        };
        if self.reported.is_some_and(|r| !clock.differs_from(&r)) {
            return None;
        }
        self.reported = Some(clock);
        Some(clock)
    }
}

fn saturate(t: i128) -> u64 {
    t.clamp(0, u64::MAX as i128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_763_720_100_000_000;

    /// One exchange against a relay whose clock is `offset` ahead of ours, with the
    /// given one-way delays and relay processing time; returns the sample.
    fn exchange(
        sync: &mut ClockSync,
        now: u64,
        offset: i64,
        up: u64,
        down: u64,
        processing: u64,
    ) -> Option<ClockSample> {
        let ControlMessage::Time(req) = sync.request(now) else {
            unreachable!()
        };
        let t1 = (now as i64 + offset) as u64 + up;
        let t2 = t1 + processing;
        let t3 = now + up + processing + down;
        let ControlMessage::Time(resp) = ControlMessage::time_response(req.t0, t1, t2) else {
            unreachable!()
        };
        sync.on_response(&resp, t3)
    }

    #[test]
    fn symmetric_delays_give_the_exact_offset() {
        for offset in [2_000_000, -2_000_000, 0, 1] {
            let mut sync = ClockSync::new();
            let s = exchange(&mut sync, T, offset, 15_000, 15_000, 500).unwrap();
            assert_eq!(s.offset_us, offset);
            assert_eq!(s.rtt_us, 30_000);
            assert_eq!(s.at_us, T + 30_500);
        }
    }

    #[test]
    fn asymmetric_delays_err_by_half_the_difference() {
        // 30 ms up, 10 ms down: the estimate is (30 - 10) / 2 = 10 ms too high.
        for offset in [2_000_000i64, -2_000_000] {
            let mut sync = ClockSync::new();
            let s = exchange(&mut sync, T, offset, 30_000, 10_000, 1_000).unwrap();
            assert_eq!(s.offset_us, offset + 10_000);
            assert_eq!(s.rtt_us, 40_000);
            assert!(s.offset_us.abs_diff(offset) <= s.rtt_us / 2);
            // And the other way round: 10 ms too low.
            let s = exchange(&mut sync, T + 1_000_000, offset, 10_000, 30_000, 1_000).unwrap();
            assert_eq!(s.offset_us, offset - 10_000);
        }
    }

    #[test]
    fn the_documented_example() {
        // PROTOCOL.md section 4: client 2 s behind, 30 ms up, 10 ms down, 1 ms inside.
        let s = ClockSample::from_exchange(
            1_763_720_100_000_000,
            1_763_720_102_030_000,
            1_763_720_102_031_000,
            1_763_720_100_041_000,
        )
        .unwrap();
        assert_eq!((s.offset_us, s.rtt_us), (2_010_000, 40_000));
        // Odd sums round toward negative infinity.
        assert_eq!(ClockSample::from_exchange(0, 1, 1, 1).unwrap().offset_us, 0);
        assert_eq!(
            ClockSample::from_exchange(10, 10, 10, 11)
                .unwrap()
                .offset_us,
            -1
        );
    }

    #[test]
    fn lowest_rtt_in_the_window_wins() {
        let offset = -2_000_000;
        let mut sync = ClockSync::new();
        // A congested first exchange, then a quick one, then middling ones.
        exchange(&mut sync, T, offset, 200_000, 5_000, 0).unwrap();
        assert_eq!(sync.rtt_us(), Some(205_000));
        exchange(&mut sync, T + 1_000_000, offset, 4_000, 4_000, 0).unwrap();
        for i in 2..6 {
            exchange(&mut sync, T + i * 1_000_000, offset, 50_000, 1_000, 0).unwrap();
        }
        assert_eq!(sync.offset_us(), Some(offset));
        assert_eq!(sync.rtt_us(), Some(8_000));
        // 61 s after the quick sample it has left the window.
        exchange(&mut sync, T + 62_000_000, offset, 20_000, 10_000, 0).unwrap();
        assert_eq!(sync.rtt_us(), Some(30_000));
        assert_eq!(sync.offset_us(), Some(offset + 5_000));
        // At most MAX_SAMPLES are kept.
        for i in 0..20 {
            exchange(&mut sync, T + 63_000_000 + i, offset, 1, 1, 0).unwrap();
        }
        assert_eq!(sync.samples.len(), ClockSync::MAX_SAMPLES);
    }

    #[test]
    fn conversions() {
        let mut sync = ClockSync::new();
        assert_eq!(sync.to_local(T), None);
        exchange(&mut sync, T, 2_000_000, 1_000, 1_000, 0).unwrap();
        assert_eq!(sync.to_local(T), Some(T - 2_000_000));
        assert_eq!(sync.to_remote(T), Some(T + 2_000_000));
        assert_eq!(sync.to_local(5), Some(0), "saturates");
        // PROTOCOL.md's viewer example: publisher 1.5 s slow, viewer 0.25 s fast.
        let mut viewer = ClockSync::new();
        exchange(&mut viewer, T, -250_000, 1_000, 1_000, 0).unwrap();
        let publisher = Clock {
            publisher_offset_us: 1_500_000,
            rtt_us: 4_000,
        };
        assert_eq!(
            viewer.capture_to_local(1_763_720_098_500_000, &publisher),
            Some(1_763_720_100_250_000)
        );
    }

    #[test]
    fn schedule_burst_then_interval() {
        let mut sync = ClockSync::new();
        assert_eq!(sync.next_request_at(), 0);
        let mut now = T;
        for _ in 0..ClockSync::BURST - 1 {
            let ControlMessage::Time(req) = sync.request(now) else {
                unreachable!()
            };
            // Unanswered: the next one waits for the response timeout.
            assert_eq!(sync.next_request_at(), now + ClockSync::RESPONSE_TIMEOUT_US);
            now += 20_000;
            let resp = Time {
                t0: req.t0,
                t1: Some(now),
                t2: Some(now),
            };
            sync.on_response(&resp, now).unwrap();
            // Answered: the next one is due at once.
            assert!(sync.next_request_at() <= now);
        }
        sync.request(now);
        assert_eq!(sync.next_request_at(), now + ClockSync::INTERVAL_US);
        sync.reset();
        assert_eq!(sync.next_request_at(), 0);
        assert_eq!(sync.offset_us(), None);
    }

    #[test]
    fn stray_and_hostile_responses_are_ignored() {
        let mut sync = ClockSync::new();
        let response = |t0, t1, t2| Time {
            t0,
            t1: Some(t1),
            t2: Some(t2),
        };
        // Nothing pending.
        assert_eq!(sync.on_response(&response(T, T, T), T), None);
        sync.request(T);
        // Not ours, not a response, inconsistent, absurd.
        assert_eq!(sync.on_response(&response(T + 1, T, T), T + 5), None);
        let request = Time {
            t0: T,
            t1: None,
            t2: None,
        };
        assert_eq!(sync.on_response(&request, T + 5), None);
        assert_eq!(sync.on_response(&response(T, T + 9, T + 1), T + 5), None);
        sync.request(T);
        assert_eq!(
            sync.on_response(&response(T, u64::MAX, u64::MAX), T + 5),
            None,
            "offset beyond i64"
        );
        sync.request(T);
        assert_eq!(sync.on_response(&response(T, 0, u64::MAX), u64::MAX), None);
        assert_eq!(sync.offset_us(), None);
        // A response arriving "before" its request (local clock stepped back).
        sync.request(T);
        assert_eq!(sync.on_response(&response(T, T, T), T - 1), None);
        // Each request is answered once.
        sync.request(T);
        assert!(sync.on_response(&response(T, T, T), T + 2).is_some());
        assert_eq!(sync.on_response(&response(T, T, T), T + 2), None);
    }

    #[test]
    fn clock_reports_only_on_change() {
        let mut sync = ClockSync::new();
        assert_eq!(sync.clock_report(), None);
        exchange(&mut sync, T, 2_000_000, 10_000, 10_000, 0).unwrap();
        assert_eq!(
            sync.clock_report(),
            Some(Clock {
                publisher_offset_us: 2_000_000,
                rtt_us: 20_000
            })
        );
        assert_eq!(sync.clock_report(), None);
        // A better sample 0.8 ms away: not worth a message; 1.5 ms away: sent.
        exchange(&mut sync, T + 1_000_000, 2_000_000, 5_800, 4_200, 0).unwrap();
        assert_eq!(sync.offset_us(), Some(2_000_800));
        assert_eq!(sync.clock_report(), None);
        exchange(&mut sync, T + 2_000_000, 2_000_000, 4_000, 1_000, 0).unwrap();
        assert_eq!(sync.offset_us(), Some(2_001_500));
        assert_eq!(
            sync.clock_report().map(|c| c.publisher_offset_us),
            Some(2_001_500)
        );
    }
}
