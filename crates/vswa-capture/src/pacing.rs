//! Absolute-deadline pacing: each frame is due a given delay after the previous frame's
//! deadline (not after the previous wake-up), so sleep overshoot on one frame is made
//! up on the next instead of accumulating as drift.

use std::time::{Duration, Instant};

/// How far behind schedule a source may fall before it gives up catching up (a burst of
/// back-to-back frames after a stall helps nobody watching live).
const MAX_LAG: Duration = Duration::from_secs(1);

/// Sleeps until each frame's deadline.
#[derive(Debug)]
pub(crate) struct Pacer {
    last: Option<Instant>,
}

impl Pacer {
    pub(crate) fn new() -> Pacer {
        Pacer { last: None }
    }

    /// Waits until `delay` after the previous deadline; the first call returns at once.
    pub(crate) fn wait(&mut self, delay: Duration) {
        let now = Instant::now();
        let due = match self.last {
            Some(last) => last + delay,
            None => now,
        };
        let due = if due > now {
            std::thread::sleep(due - now);
            due
        } else if now - due > MAX_LAG {
            now
        } else {
            due
        };
        self.last = Some(due);
    }
}

/// One frame period at `fps`.
pub(crate) fn interval(fps: f64) -> Duration {
    Duration::from_secs_f64(1.0 / fps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_do_not_drift() {
        let mut pacer = Pacer::new();
        let start = Instant::now();
        for _ in 0..=20 {
            pacer.wait(Duration::from_millis(1));
        }
        // Deadlines are start + 20 ms exactly; only the last sleep's overshoot counts.
        let deadline = pacer.last.unwrap();
        assert!(deadline >= start + Duration::from_millis(20));
        assert!(deadline <= start + Duration::from_millis(20) + MAX_LAG);
    }
}
