//! The JSON views of streams, publishers and viewers (`/api/streams`).

use serde::Serialize;

use super::viewer::ViewerKind;

/// JSON statistics of a stream (`/api/streams`).
#[derive(Debug, Clone, Serialize)]
pub struct StreamInfo {
    /// Stream name.
    pub name: String,
    /// Whether a publisher is connected.
    pub live: bool,
    /// Live, but no frames for the last two seconds and no viewers: the publisher
    /// idles until someone watches (an on-demand sender); the snapshot is its last
    /// frame.
    pub standby: bool,
    /// The publisher, if connected.
    pub publisher: Option<PublisherView>,
    /// Codec of the newest frame: `jpeg` or `h264` (empty before the first frame).
    pub codec: String,
    /// Frames from one keyframe to the next (H.264; 1 for JPEG), once two were seen.
    pub gop_frames: Option<u64>,
    /// Width of the newest frame.
    pub width: u16,
    /// Height of the newest frame.
    pub height: u16,
    /// Frames per second coming in (last two seconds).
    pub fps: f64,
    /// Incoming bitrate in kbit/s (last two seconds).
    pub bitrate_kbps: f64,
    /// Frames received since the stream was created.
    pub frames: u64,
    /// Payload bytes received since the stream was created.
    pub bytes: u64,
    /// Sequence number of the newest frame.
    pub last_sequence: Option<u64>,
    /// Connected viewers.
    pub viewers: usize,
    /// When the stream was created.
    pub created_unix_ms: u64,
    /// Each viewer's counters.
    pub viewer_details: Vec<ViewerView>,
    /// The stream across the cluster (relays started with `--cluster` only).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterView>,
}

/// A stream across the relays of a cluster (`/api/streams` with `--cluster`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterView {
    /// The relay id holding the publisher (`None` while nobody publishes).
    pub relay: Option<String>,
    /// Viewers on every relay of the cluster.
    pub viewers_total: usize,
    /// Viewers per relay id (relays with none are left out).
    pub viewers_by_relay: std::collections::BTreeMap<String, usize>,
}

/// JSON view of a publisher.
#[derive(Debug, Clone, Serialize)]
pub struct PublisherView {
    /// Remote address.
    pub addr: Option<String>,
    /// When it connected.
    pub connected_unix_ms: u64,
    /// The relay of the cluster it is connected to, when that is another relay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
}

/// JSON view of a viewer.
#[derive(Debug, Clone, Serialize)]
pub struct ViewerView {
    /// Viewer id, unique in this relay process.
    pub id: u64,
    /// WebSocket or MJPEG.
    pub kind: ViewerKind,
    /// Remote address.
    pub addr: Option<String>,
    /// When it connected.
    pub connected_unix_ms: u64,
    /// Frames written to it.
    pub frames_sent: u64,
    /// Bytes written to it.
    pub bytes_sent: u64,
    /// Frames it skipped because it read too slowly or they were too old.
    pub dropped: u64,
    /// Of those, frames older than the latency ceiling.
    pub late: u64,
    /// Frames written, by age when written (the viewer's lag): `lt_50ms`, `lt_100ms`,
    /// `lt_250ms`, `lt_500ms`, `lt_1s`, `more`.
    pub lag: LagBuckets,
}

/// Counts of frames by their age when the relay wrote them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LagBuckets {
    /// Under 50 ms.
    pub lt_50ms: u64,
    /// 50 to 100 ms.
    pub lt_100ms: u64,
    /// 100 to 250 ms.
    pub lt_250ms: u64,
    /// 250 to 500 ms.
    pub lt_500ms: u64,
    /// 500 ms to 1 s.
    pub lt_1s: u64,
    /// 1 s or more.
    pub more: u64,
}
