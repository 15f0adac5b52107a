//! A source that outlives its device: when the inner source fails or ends (a camera
//! unplugged), it yields "NO SIGNAL" placeholder frames and keeps reopening the device
//! until it comes back, so viewers see why the picture stopped instead of a frozen frame.

use std::time::{Duration, Instant};

use vswa_codec::Image;

use crate::{now_us, placeholder_image, CaptureError, CapturedFrame, FrameContent, Source};

/// Wraps a source factory: while the source it opened fails or has ended, yields "NO
/// SIGNAL" placeholder frames once per retry interval and tries to reopen it each time.
pub struct Resilient<F> {
    open: F,
    name: String,
    current: Option<Box<dyn Source>>,
    retry_interval: Duration,
    /// When the next placeholder (and reopen attempt) is due while there is no source.
    next_attempt: Option<Instant>,
    placeholder: Image,
    /// The last failure, logged once per outage rather than every second.
    last_error: Option<String>,
    opened_once: bool,
    /// Fail once the device has been missing this long (`None`: never).
    give_up: Option<Duration>,
    /// When the current outage began (or the first attempt, before any open).
    missing_since: Option<Instant>,
}

impl<F> std::fmt::Debug for Resilient<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resilient")
            .field("name", &self.name)
            .field("connected", &self.current.is_some())
            .field("retry_interval", &self.retry_interval)
            .field("last_error", &self.last_error)
            .finish_non_exhaustive()
    }
}

impl<F> Resilient<F>
where
    F: FnMut() -> Result<Box<dyn Source>, CaptureError> + Send,
{
    /// Wraps `open`, which is called now-ish and again after every failure; `name`
    /// describes the device, and placeholders are `width` x `height`.
    pub fn new(name: impl Into<String>, width: u32, height: u32, open: F) -> Resilient<F> {
        Resilient {
            open,
            name: name.into(),
            current: None,
            retry_interval: Duration::from_secs(1),
            next_attempt: None,
            placeholder: placeholder_image(width, height, "NO SIGNAL"),
            last_error: None,
            opened_once: false,
            give_up: None,
            missing_since: None,
        }
    }

    /// Makes a device that stays missing for `after` (at start, or after it went away)
    /// an error instead of "NO SIGNAL" frames forever; `None` (the default) never gives
    /// up.
    pub fn with_give_up(mut self, after: Option<Duration>) -> Resilient<F> {
        self.give_up = after;
        self
    }

    /// The error that ends the source if the device has been missing too long.
    fn gave_up(&self, now: Instant) -> Option<CaptureError> {
        let (after, since) = (self.give_up?, self.missing_since?);
        (now.duration_since(since) >= after).then(|| {
            CaptureError::DeviceMissing(format!(
                "{} {} within {} s: {}",
                self.name,
                if self.opened_once {
                    "did not come back"
                } else {
                    "did not appear"
                },
                after.as_secs_f64(),
                self.last_error.as_deref().unwrap_or("not found")
            ))
        })
    }

    /// Changes how often placeholders are produced and reopening is tried (default one
    /// second).
    pub fn with_retry_interval(mut self, interval: Duration) -> Resilient<F> {
        self.retry_interval = interval;
        self
    }

    /// Whether the inner source is currently delivering.
    pub fn is_connected(&self) -> bool {
        self.current.is_some()
    }

    fn note_failure(&mut self, error: String) {
        if self.last_error.as_ref() != Some(&error) {
            tracing::warn!(source = %self.name, "{error}; sending NO SIGNAL frames and retrying");
        }
        self.last_error = Some(error);
    }

    fn placeholder_frame(&self) -> CapturedFrame {
        CapturedFrame {
            timestamp_us: now_us(),
            content: FrameContent::Image(self.placeholder.clone()),
            placeholder: true,
        }
    }
}

impl<F> Source for Resilient<F>
where
    F: FnMut() -> Result<Box<dyn Source>, CaptureError> + Send,
{
    fn describe(&self) -> String {
        match &self.current {
            Some(source) => source.describe(),
            None => format!("{} (no signal, retrying)", self.name),
        }
    }

    fn is_live(&self) -> bool {
        true
    }

    fn next_frame(&mut self) -> Result<Option<CapturedFrame>, CaptureError> {
        loop {
            if let Some(source) = &mut self.current {
                let error = match source.next_frame() {
                    Ok(Some(frame)) => return Ok(Some(frame)),
                    Ok(None) => "device stopped delivering frames".to_owned(),
                    Err(e) => e.to_string(),
                };
                self.current = None;
                self.missing_since = Some(Instant::now());
                self.note_failure(error);
                // Show the outage at once, then retry one interval later.
                self.next_attempt = Some(Instant::now() + self.retry_interval);
                return Ok(Some(self.placeholder_frame()));
            }
            if let Some(due) = self.next_attempt {
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            match (self.open)() {
                Ok(source) => {
                    if self.opened_once || self.last_error.is_some() {
                        tracing::info!(source = %self.name, "{} is back", source.describe());
                    }
                    self.opened_once = true;
                    self.last_error = None;
                    self.next_attempt = None;
                    self.missing_since = None;
                    self.current = Some(source);
                }
                Err(e) => {
                    let now = Instant::now();
                    self.missing_since.get_or_insert(now);
                    self.note_failure(e.to_string());
                    if let Some(error) = self.gave_up(now) {
                        return Err(error);
                    }
                    let base = self.next_attempt.unwrap_or_else(Instant::now);
                    // Stay on a fixed grid, but never schedule into the past after a
                    // slow open attempt.
                    self.next_attempt = Some((base + self.retry_interval).max(Instant::now()));
                    return Ok(Some(self.placeholder_frame()));
                }
            }
        }
    }
}
