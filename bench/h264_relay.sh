#!/usr/bin/env bash
# Relay capacity, JPEG against H.264 at equal picture quality: one vswa-relay per codec,
# each driven by `vswa-bench sweep --replay FILE`, which publishes the real encoded
# frames of a file in a loop (their own sizes, codec and keyframe flags, so the relay
# applies its H.264 rules: a viewer that falls behind skips to the next keyframe). The
# files are what bench/h264_quality.sh left in $WORK/<source>-<size>/match/: the JPEG q80
# stream and the H.264 stream at the bitrate that matched its SSIM.
#
# The viewer counts are interleaved (count 1 on both relays, then count 2 on both, ...)
# so drifts in machine load hit both alike. A codec is not driven further after
# $FAILS consecutive points that miss the target (delivered >= 99% and p99 < 100 ms).
# The whole sweep runs $REPEAT times.
#
#   bench/h264_relay.sh                 720p mandelbrot (run bench/h264_quality.sh first)
#   QUICK=1 bench/h264_relay.sh         small counts, short points (smoke run)
#
# Env: SOURCE (name in $WORK, default mandelbrot-1280x720), WORK, JPEG, H264 (files,
#      instead of SOURCE), COUNTS, DURATION (s per point), FPS, REPEAT, FAILS, OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    COUNTS=${COUNTS:-50,200}
    DURATION=${DURATION:-2}
    REPEAT=${REPEAT:-1}
else
    COUNTS=${COUNTS:-250,500,750,1000,1250,1500,1750,2000,2500,3000,4000,5000,6000,8000}
    DURATION=${DURATION:-8}
    REPEAT=${REPEAT:-2}
fi
FPS=${FPS:-30}
FAILS=${FAILS:-2}
WORK=${WORK:-/tmp/vswa-h264-quality}
SOURCE=${SOURCE:-mandelbrot-1280x720}
JPEG=${JPEG:-$(ls "$WORK/$SOURCE"/match/jpeg-q*.mjpeg 2>/dev/null | head -1)}
H264=${H264:-$WORK/$SOURCE/match/h264-match.h264}
OUT=${OUT:-$ROOT/bench/results/h264-relay}

log() { echo "h264_relay.sh: $*" >&2; }
for f in "$JPEG" "$H264"; do
    [ -f "$f" ] || { log "missing ${f:-the JPEG file}: run bench/h264_quality.sh first (or set JPEG and H264)"; exit 1; }
done

log "building release binaries"
cargo build --release -q -p vswa-relay -p vswa-bench
TARGET=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BENCH=$TARGET/release/vswa-bench
RELAY=$TARGET/release/vswa-relay
# Thousands of sockets on each side.
ulimit -n "$(ulimit -Hn)" || log "cannot raise the open-file limit (now $(ulimit -n))"
mkdir -p "$OUT"
rm -f "$OUT"/*.csv

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
declare -A PIDS PORTS FILES
FILES[jpeg]=$JPEG
FILES[h264]=$H264
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
for codec in jpeg h264; do
    PORTS[$codec]=$(free_port)
    # Limits raised past the largest count (defaults: 4096 viewers per stream).
    RUST_LOG=warn "$RELAY" --listen "127.0.0.1:${PORTS[$codec]}" --max-viewers 20000 \
        --max-viewers-total 20000 >"$OUT/relay-$codec.log" 2>&1 &
    PIDS[$codec]=$!
    for _ in $(seq 100); do
        (echo >"/dev/tcp/127.0.0.1/${PORTS[$codec]}") 2>/dev/null && break
        sleep 0.1
    done
    log "$codec: relay pid ${PIDS[$codec]} on port ${PORTS[$codec]}, frames from ${FILES[$codec]}"
done
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpus: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "jpeg: $JPEG ($(stat -c %s "$JPEG") bytes); h264: $H264 ($(stat -c %s "$H264") bytes)"
    echo "counts: $COUNTS, duration: $DURATION s per point, fps: $FPS, repeat: $REPEAT"
} >"$OUT/machine.txt"

meets() { # csv -> 0 if its last row meets the target
    tail -n1 "$1" | python3 -c 'import sys; r=sys.stdin.read().split(","); sys.exit(0 if float(r[6]) >= 0.99 and float(r[10]) < 100 else 1)'
}
for rep in $(seq "$REPEAT"); do
    declare -A MISSES=()
    for n in ${COUNTS//,/ }; do
        for codec in jpeg h264; do
            [ "${MISSES[$codec]:-0}" -ge "$FAILS" ] && continue
            timeout 900 "$BENCH" sweep --url "ws://127.0.0.1:${PORTS[$codec]}" --viewers "$n" \
                --replay "${FILES[$codec]}" --fps "$FPS" --duration "$DURATION" \
                --relay-pid "${PIDS[$codec]}" --label "$codec-run$rep" \
                --out "$OUT" --append || log "$codec at $n viewers failed (see above)"
            if meets "$OUT/$codec-run$rep.csv"; then
                MISSES[$codec]=0
            else
                MISSES[$codec]=$(( ${MISSES[$codec]:-0} + 1 ))
            fi
            sleep 1
        done
    done
    unset MISSES
done
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
"$BENCH" plot --out "$OUT" --title "JPEG q80 vs H.264 at equal SSIM, $FPS fps" \
    --table "$OUT/sweep.md" "$OUT"/*.csv
rm -f "$OUT"/*-run*-*.svg # one plot per run as well is clutter; plot draws them together

# --- capacity: the largest count meeting the target in each run, and what it costs -----
python3 - "$OUT" "$REPEAT" >"$OUT/capacity.md" <<'EOF'
import csv, glob, os, statistics, sys
out, repeat = sys.argv[1], int(sys.argv[2])
print("| codec | run | viewers sustained | mean frame B | per-viewer Mbit/s (delivered) | relay CPU (cores) | viewers per relay core | vswa-bench CPU (cores) |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
best = {}
for codec in ["jpeg", "h264"]:
    for rep in range(1, repeat + 1):
        path = os.path.join(out, f"{codec}-run{rep}.csv")
        if not os.path.exists(path):
            continue
        rows = list(csv.DictReader(open(path)))
        ok = [r for r in rows if float(r["delivered_fraction"]) >= 0.99 and float(r["p99_ms"]) < 100]
        if not ok:
            print(f"| {codec} | {rep} | none | | | | | |")
            continue
        r = max(ok, key=lambda r: int(r["viewers"]))
        n, cores = int(r["viewers"]), float(r["relay_cpu_cores"] or "nan")
        per_viewer = float(r["delivered_mb_s"]) * 8 / n
        dur = float(r["frames_published"]) / float(r["fps"])
        print(f"| {codec} | {rep} | {n} | {r['frame_bytes']} | {per_viewer:.3f} | {cores:.2f} | "
              f"{n / cores:.0f} | {float(r['bench_cpu_s']) / dur:.2f} |")
        best.setdefault(codec, []).append((n, per_viewer, n / cores))
print()
print("| codec | viewers sustained (median of runs) | viewers per 1 Gbit/s | per 10 Gbit/s | per relay core (measured) |")
print("|---|---:|---:|---:|---:|")
for codec, runs in best.items():
    n = statistics.median(x[0] for x in runs)
    mbit = statistics.median(x[1] for x in runs)
    per_core = statistics.median(x[2] for x in runs)
    # Payload + VSWA + WebSocket headers as measured; TCP/IP/Ethernet framing adds ~3-5%.
    print(f"| {codec} | {n:.0f} | {1000 / mbit:.0f} | {10000 / mbit:.0f} | {per_core:.0f} |")
EOF
log "wrote $OUT/capacity.md, $OUT/sweep.md and the CSV/SVG files"
cat "$OUT/capacity.md"
