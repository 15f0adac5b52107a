//! JPEG encoding of the moving test pattern at common sizes (pure-Rust jpeg-encoder and,
//! with `--features turbojpeg`, libjpeg-turbo), and the encoder pool at 1 and 2 threads.
//! Throughput is in pixels, so the figures compare with `tjbench` directly.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vswa::capture::TestPattern;
use vswa::codec::{encode, EncodeOptions, EncoderBackend, EncoderPool, Image};

const SIZES: [(u32, u32); 3] = [(640, 480), (1280, 720), (1920, 1080)];

fn pattern(width: u32, height: u32) -> Image {
    TestPattern::new(width, height, 30.0)
        .expect("valid size")
        .render(7, 1_763_720_100_000_000)
}

fn encode_sizes(c: &mut Criterion) {
    let mut group = c.benchmark_group("jpeg_encode");
    for (w, h) in SIZES {
        let image = pattern(w, h);
        group.throughput(Throughput::Elements(u64::from(w * h)));
        for backend in [EncoderBackend::JpegEncoder, EncoderBackend::TurboJpeg] {
            if !backend.is_available() {
                continue;
            }
            let opts = EncodeOptions {
                backend,
                ..EncodeOptions::default()
            };
            group.bench_with_input(
                BenchmarkId::new(backend.name(), format!("{w}x{h}")),
                &image,
                |b, image| b.iter(|| encode(image, &opts).expect("encode")),
            );
        }
    }
    group.finish();
}

fn encoder_pool(c: &mut Criterion) {
    let mut group = c.benchmark_group("encoder_pool_1080p_x8");
    let image = pattern(1920, 1080);
    group.throughput(Throughput::Elements(8));
    group.sample_size(10);
    for threads in [1usize, 2] {
        let pool = EncoderPool::<u32>::new(threads, EncodeOptions::default());
        group.bench_function(BenchmarkId::from_parameter(threads), |b| {
            b.iter(|| {
                // Keep the pool full: submit ahead, receive in order.
                let mut received = 0;
                for i in 0..8u32 {
                    pool.submit(image.clone(), i).expect("pool open");
                    while let Ok(done) = pool.recv_timeout(std::time::Duration::ZERO) {
                        assert_eq!(done.tag, received);
                        received += 1;
                    }
                }
                while received < 8 {
                    let done = pool.recv().expect("result");
                    assert_eq!(done.tag, received);
                    received += 1;
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encode_sizes, encoder_pool);
criterion_main!(benches);
