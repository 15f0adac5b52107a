//! The demo stream: a capture pipeline published straight into the hub, with no
//! network in between (`vswa-relay --demo`, and embedders who want a test stream).

use std::future::Future;

use vswa_capture::{
    frames_for, OpenedSource, PipelineConfig, SourceConfig, SourceSpec, DEFAULT_BACKLOG,
};
use vswa_codec::EncodeOptions;
use vswa_protocol::StreamName;

use crate::hub::{Hub, HubError};

/// The demo stream's picture: a moving test pattern of this size and rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemoConfig {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: f64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            width: 640,
            height: 480,
            fps: 30.0,
        }
    }
}

impl DemoConfig {
    /// Opens the test pattern (one encoder thread: the demo must not crowd the relay).
    pub fn open(&self) -> Result<OpenedSource, vswa_capture::CaptureError> {
        OpenedSource::open(PipelineConfig {
            spec: SourceSpec::Test,
            source: SourceConfig {
                width: self.width,
                height: self.height,
                fps: Some(self.fps),
                ..SourceConfig::default()
            },
            codec: vswa_capture::VideoCodec::Jpeg,
            encode: EncodeOptions::default(),
            encode_threads: 1,
            count: None,
            duration: None,
            backlog: frames_for(DEFAULT_BACKLOG, Some(self.fps)),
        })
    }
}

/// Why an in-process feed stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The hub refused the stream (busy name, stream limit, shutting down).
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The source failed.
    #[error(transparent)]
    Capture(#[from] vswa_capture::CaptureError),
}

/// Publishes a pipeline's frames into `hub` as stream `name` until `shutdown`
/// completes or the source ends.
pub async fn feed_hub(
    hub: Hub,
    name: StreamName,
    source: OpenedSource,
    shutdown: impl Future<Output = ()>,
) -> Result<(), FeedError> {
    let handle = hub.publish(&name, None)?;
    let mut pipeline = source.start();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            frame = pipeline.next() => match frame {
                Some(frame) => { handle.publish_frame(&frame); }
                None => break,
            },
            () = &mut shutdown => break,
        }
    }
    drop(handle);
    pipeline.finish().await?;
    Ok(())
}
