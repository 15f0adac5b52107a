//! Watch a stream from your own program: a `Subscriber` yields each frame with its
//! header (sequence, capture time, size), reports gaps and reconnects by itself.
//!
//! `cargo run --example watch -- ws://127.0.0.1:8080/ws/watch/demo [FRAMES]`

use vswa::client::{Subscriber, SubscriberConfig, SubscriberEvent};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:8080/ws/watch/demo".into());
    let frames: u64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(60);

    let mut subscriber = Subscriber::connect(SubscriberConfig::new(url)).await?;
    let mut seen = 0;
    while seen < frames {
        match subscriber.next().await? {
            SubscriberEvent::Frame {
                frame,
                received_us,
                capture_us,
                gap,
            } => {
                seen += 1;
                let h = frame.header();
                // Capture time on this machine's clock once clock sync has run.
                let captured = capture_us.unwrap_or(h.timestamp_us);
                let latency_ms = received_us.saturating_sub(captured) as f64 / 1000.0;
                let image = vswa::codec::decode(frame.payload())?;
                println!(
                    "#{:<6} {}x{} {:>7} bytes  latency {latency_ms:6.1} ms{}  (decoded {}x{})",
                    h.sequence,
                    h.width,
                    h.height,
                    frame.payload().len(),
                    if gap > 0 {
                        format!("  {gap} missing before it")
                    } else {
                        String::new()
                    },
                    image.width,
                    image.height,
                );
            }
            SubscriberEvent::Hello(hello) => println!("hello: {hello:?}"),
            SubscriberEvent::End(end) => println!("publisher left: {end:?}"),
            SubscriberEvent::Reconnecting { error, delay } => {
                println!("lost the relay ({error}); retrying in {delay:?}")
            }
        }
    }
    Ok(())
}
