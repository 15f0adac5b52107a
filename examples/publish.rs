//! Publish frames you made yourself: encode pixels as JPEG, wrap them in protocol frames
//! with sequence numbers and capture timestamps, and send them through a `Publisher`
//! (which reconnects, and queues a bounded number of frames).
//!
//! `cargo run --example publish -- ws://127.0.0.1:8080/ws/publish/gradient [FRAMES]`
//! against a running `vswa-relay`; watch at `http://127.0.0.1:8080/view/gradient`.

use std::time::Duration;

use vswa::capture::now_us;
use vswa::client::{Publisher, PublisherConfig};
use vswa::codec::{encode, EncodeOptions, Image, PixelFormat};
use vswa::protocol::{Frame, FrameHeader};

const WIDTH: u16 = 320;
const HEIGHT: u16 = 240;

/// A horizontal gradient that scrolls with `t`.
fn picture(t: u64) -> anyhow::Result<Image> {
    let (w, h) = (usize::from(WIDTH), usize::from(HEIGHT));
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let v = ((x as u64 + t * 4) % 256) as u8;
            rgb.extend_from_slice(&[v, (y * 255 / h) as u8, 255 - v]);
        }
    }
    Ok(Image::new(
        PixelFormat::Rgb8,
        WIDTH.into(),
        HEIGHT.into(),
        rgb,
    )?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:8080/ws/publish/gradient".into());
    let frames: u64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(150);

    let publisher = Publisher::connect(PublisherConfig::new(url.clone())).await?;
    let options = EncodeOptions::new(80)?;
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / 30));
    for sequence in 0..frames {
        tick.tick().await;
        let captured = now_us();
        let jpeg = encode(&picture(sequence)?, &options)?;
        let frame = Frame::new(FrameHeader::jpeg(sequence, captured, WIDTH, HEIGHT), jpeg);
        // `send` waits for room in the queue; a live source would use `try_send`, which
        // drops (and counts) a frame instead of falling behind.
        publisher.send(frame).await?;
    }
    let stats = publisher.finish().await?;
    println!(
        "{url}: sent {} frames, dropped {}",
        stats.sent, stats.dropped
    );
    Ok(())
}
