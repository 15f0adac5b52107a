#!/usr/bin/env bash
# Bytes per viewer at equal picture quality: JPEG (the project's encoder, quality 80)
# against H.264 (the project's H264Encoder, OpenH264) on the same frames, SSIM and PSNR
# against the source measured by ffmpeg, and the lowest H.264 bitrate whose SSIM is at
# least JPEG's.
#
# For every source and size: the source is written once as raw NV12 (what cameras
# deliver; BT.601 limited range) to $WORK; `examples/quality` (crates/vswa-codec) encodes
# it as JPEG q$JPEG_Q and (driven by bench/h264_quality.py) as H.264 at each bitrate of $LADDER (constant bitrate, keyframe
# every 2 s, frame skipping off so every source frame has an encoded frame); ffmpeg
# decodes each result and compares it frame by frame with the source
# (`ssim` and `psnr` filters on the YUV 4:2:0 planes; JPEG's full range is converted to
# limited range first). Between the last H.264 bitrate under JPEG's SSIM and the first
# at or over it, $REFINE bisection steps (geometric) narrow the match; the table reports
# the lowest bitrate tried whose SSIM ("All", ffmpeg's Y/U/V mean weighted by plane
# size) is >= JPEG's, with the bitrate the encoder really produced.
#
#   bench/h264_quality.sh                  all sources at 640x480 and 1280x720, 10 s each
#   QUICK=1 bench/h264_quality.sh          2 s of each, fewer steps (smoke run)
#
# Env: SOURCES (space-separated: pattern = vswa_capture::TestPattern; testsrc2,
#      mandelbrot, life = ffmpeg lavfi sources; noisy = mandelbrot with temporal noise
#      like a camera sensor's; fixedcam = a fixed camera: a still, detailed scene, a
#      moving picture, light sensor noise; file:PATH = any video ffmpeg reads, scaled),
#      SIZES, DURATION (s), FPS, JPEG_Q, LADDER (kbit/s, comma-separated), REFINE,
#      KEYFRAME (s), OUT (tables, CSV), WORK (raw frames and encoded files: ~400 MB per
#      720p source), KEEP=1 keeps the raw sources, ENCODERS ("openh264", the default;
#      "openh264 x264" adds ffmpeg's libx264 as a reference, see bench/h264_quality.py).
# Writes $OUT/quality.csv (every point), $OUT/quality.md (the table) and, per source and
# size, $WORK/<source>-<size>/match/ with the JPEG file and the matching H.264 file
# (bench/h264_relay.sh publishes those).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    DURATION=${DURATION:-2}
    REFINE=${REFINE:-2}
else
    DURATION=${DURATION:-10}
    REFINE=${REFINE:-4}
fi
SOURCES=${SOURCES:-pattern testsrc2 mandelbrot noisy fixedcam}
SIZES=${SIZES:-640x480 1280x720}
FPS=${FPS:-30}
JPEG_Q=${JPEG_Q:-80}
LADDER=${LADDER:-250,500,1000,2000,4000,8000,16000}
KEYFRAME=${KEYFRAME:-2}
OUT=${OUT:-$ROOT/bench/results/h264-quality}
WORK=${WORK:-/tmp/vswa-h264-quality}
KEEP=${KEEP:-0}
# openh264 = the project's H264Encoder; "openh264 x264" adds ffmpeg's libx264 as a reference.
ENCODERS=${ENCODERS:-openh264}

log() { echo "h264_quality.sh: $*" >&2; }

command -v ffmpeg >/dev/null || { log "apt-get install -y ffmpeg"; apt-get install -y -q ffmpeg >/dev/null; }
log "building the quality tool and the test-pattern writer (release)"
cargo build --release -q -p vswa-codec --features h264 --example quality
cargo build --release -q -p vswa-bench --example test_pattern_frames
TARGET=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
QUALITY=$TARGET/release/examples/quality
PATTERN=$TARGET/release/examples/test_pattern_frames
mkdir -p "$OUT" "$WORK"
FRAMES=$(python3 -c "print(round($DURATION * $FPS))")

# Writes $3 ($1 source at $2 WxH, $FRAMES frames) as raw NV12.
make_source() {
    local src=$1 size=$2 dst=$3
    local w=${size%x*} h=${size#*x}
    local raw=(-f rawvideo -pix_fmt nv12 -y "$dst")
    case $src in
    pattern)
        "$PATTERN" "$size" "$FRAMES" "$FPS" |
            ffmpeg -hide_banner -loglevel error -f rawvideo -pix_fmt rgb24 -s "$size" \
                -framerate "$FPS" -i - -frames:v "$FRAMES" "${raw[@]}" ;;
    testsrc2 | mandelbrot | life)
        ffmpeg -hide_banner -loglevel error -f lavfi -i "$src=size=$size:rate=$FPS" \
            -frames:v "$FRAMES" "${raw[@]}" ;;
    noisy)
        ffmpeg -hide_banner -loglevel error -f lavfi -i "mandelbrot=size=$size:rate=$FPS" \
            -vf "noise=alls=6:allf=t" -frames:v "$FRAMES" "${raw[@]}" ;;
    fixedcam)
        # A fixed camera: a still, finely detailed scene (a mandelbrot view that does not
        # zoom), a picture a sixth of the width moving across it, light sensor noise.
        ffmpeg -hide_banner -loglevel error \
            -f lavfi -i "mandelbrot=size=$size:rate=$FPS:start_scale=0.01:end_scale=0.01" \
            -f lavfi -i "testsrc2=size=$((w / 5 / 2 * 2))x$((h / 5 / 2 * 2)):rate=$FPS" \
            -filter_complex "[0][1]overlay=x='mod(t*$((w / 8))\,W-w)':y='(H-h)/2+sin(t*2)*H/5',noise=alls=3:allf=t" \
            -frames:v "$FRAMES" "${raw[@]}" ;;
    file:*)
        ffmpeg -hide_banner -loglevel error -i "${src#file:}" \
            -vf "scale=$w:$h,fps=$FPS" -frames:v "$FRAMES" "${raw[@]}" ;;
    *) log "unknown source $src"; exit 2 ;;
    esac
}

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpus: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "ffmpeg: $(ffmpeg -hide_banner -version | head -1 | cut -d' ' -f3)"
    echo "sources: $SOURCES; sizes: $SIZES; $FRAMES frames at $FPS fps; JPEG q$JPEG_Q;"
    echo "H.264 ($ENCODERS) ladder $LADDER kbit/s, $REFINE bisection steps, keyframe every $KEYFRAME s"
} >"$OUT/machine.txt"

CSV=$OUT/quality.csv
echo "source,size,codec,setting,frames,mbit_s,mean_frame_bytes,mean_keyframe_bytes,mean_delta_bytes,keyframes,ssim_y,ssim_all,psnr_y,psnr_avg,cpu_ms_per_frame" >"$CSV"
for src in $SOURCES; do
    for size in $SIZES; do
        name=$(echo "$src" | tr -c 'A-Za-z0-9_\n-' '_')-$size
        dir=$WORK/$name
        mkdir -p "$dir"
        log "$src $size: writing $FRAMES source frames"
        make_source "$src" "$size" "$dir/source.nv12"
        log "$src $size: encoding and comparing"
        python3 bench/h264_quality.py "$QUALITY" "$dir" "$src" "$size" "$FPS" "$FRAMES" \
            "$JPEG_Q" "$LADDER" "$REFINE" "$KEYFRAME" "$CSV" $ENCODERS
        cp "$dir/summary.json" "$OUT/$name.json"
        rm -f "$dir"/h264-*.h264 "$dir"/x264-*.h264
        [ "$KEEP" = 1 ] || rm -f "$dir/source.nv12"
    done
done

# --- the table ----------------------------------------------------------------------
summaries=()
for src in $SOURCES; do
    for size in $SIZES; do summaries+=("$OUT/$(echo "$src" | tr -c 'A-Za-z0-9_\n-' '_')-$size.json"); done
done
python3 bench/h264_quality.py --table "$JPEG_Q" "${summaries[@]}" >"$OUT/quality.md"
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
[ "$KEEP" = 1 ] || log "raw sources removed; the matched files stay in $WORK/*/match/"
log "wrote $OUT/quality.md and $OUT/quality.csv"
cat "$OUT/quality.md"
