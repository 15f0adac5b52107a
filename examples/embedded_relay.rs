//! A relay inside your own program, with an in-process test-pattern stream.
//!
//! `cargo run --example embedded_relay` then open the printed `/view/demo` URL. The
//! relay is the same library code `vswa-relay` runs; `feed_hub` publishes a capture
//! pipeline straight into its hub, with no WebSocket in between. Ctrl-C stops both.

use vswa::capture::{SourceConfig, SourceSpec};
use vswa::codec::EncodeOptions;
use vswa::protocol::StreamName;
use vswa::transport::pipeline::{
    feed_hub, frames_for, OpenedSource, PipelineConfig, DEFAULT_BACKLOG,
};
use vswa::transport::relay::{Relay, RelayConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let relay = Relay::new(RelayConfig::default())?;

    let source = OpenedSource::open(PipelineConfig {
        spec: SourceSpec::Test,
        source: SourceConfig {
            width: 320,
            height: 240,
            fps: Some(15.0),
            loop_replay: false,
        },
        encode: EncodeOptions::default(),
        encode_threads: 1,
        count: None,
        duration: None,
        backlog: frames_for(DEFAULT_BACKLOG, Some(15.0)),
    })?;
    let feed = tokio::spawn(feed_hub(
        relay.hub().clone(),
        StreamName::new("demo")?,
        source,
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    ));

    println!("watch: http://{addr}/view/demo   (Ctrl-C to stop)");
    relay
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    feed.await??;
    Ok(())
}
