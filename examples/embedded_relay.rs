//! A relay inside your own program, with an in-process test-pattern stream.
//!
//! `cargo run --example embedded_relay` then open the printed `/view/demo` URL. The
//! relay is the same library code `vswa-relay` runs; `feed_hub` publishes a capture
//! pipeline straight into its hub, with no WebSocket in between. Ctrl-C stops both.

use vswa::protocol::StreamName;
use vswa::relay::demo::{feed_hub, DemoConfig};
use vswa::relay::{Relay, RelayConfig, Shutdown};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let relay = Relay::new(RelayConfig::default())?;

    // One trigger stops the relay and, after it, the feed.
    let shutdown = Shutdown::new();
    let source = DemoConfig {
        width: 320,
        height: 240,
        fps: 15.0,
    }
    .open()?;
    let feed = tokio::spawn(feed_hub(
        relay.hub().clone(),
        StreamName::new("demo")?,
        source,
        shutdown.wait(),
    ));
    let serving = relay.serve(listener, shutdown.wait());
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        shutdown.trigger();
    });

    println!("watch: http://{addr}/view/demo   (Ctrl-C to stop)");
    serving.await?;
    feed.await??;
    Ok(())
}
