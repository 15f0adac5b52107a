#!/usr/bin/env bash
# Soak: one relay, `vswa-send --source test` at 720p30, N `vswa-recv` viewers, for a fixed
# time; samples the relay's RSS and CPU from /proc every few seconds into a CSV and
# prints delivery to the viewers at the end. Loopback only; everything it starts is
# stopped on exit.
#
#   bench/soak.sh                         # 10 minutes, 200 viewers (the full soak)
#   DURATION=180 VIEWERS=100 bench/soak.sh  # the shortened run in docs/RELIABILITY.md
#
# Environment: DURATION (s, default 600), VIEWERS (default 200), SIZE (1280x720),
# FPS (30), INTERVAL (sample period, s, default 5), OUT (directory, default
# target/soak-<timestamp>), PORT (default: a free one).
#
# Viewers are vswa-recv processes (the real receiver, reporting frames and sequence
# gaps with --stats-json); `vswa-bench fanout` always brings its own publisher, so it
# measures fan-out of synthetic frames, not this end-to-end path.
set -euo pipefail

DURATION=${DURATION:-600}
VIEWERS=${VIEWERS:-200}
SIZE=${SIZE:-1280x720}
FPS=${FPS:-30}
INTERVAL=${INTERVAL:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/target/soak-$(date +%Y%m%d-%H%M%S)}
BIN=$ROOT/target/release
mkdir -p "$OUT"

cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" \
    -p vswa-relay -p vswa-send -p vswa-recv

PORT=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

RUST_LOG=warn "$BIN/vswa-relay" --listen "127.0.0.1:$PORT" --viewer-queue 8 \
    2> "$OUT/relay.log" &
RELAY=$!
PIDS+=("$RELAY")
for _ in $(seq 100); do
    grep -q "listening on" "$OUT/relay.log" 2>/dev/null && break
    sleep 0.1
done

# Viewers first (they wait for the publisher), then the publisher.
VIEW_FOR=$((DURATION + 5))
for i in $(seq "$VIEWERS"); do
    "$BIN/vswa-recv" --url "ws://127.0.0.1:$PORT/ws/watch/soak" --duration "$VIEW_FOR" \
        --stats-json > "$OUT/viewer-$i.json" 2> "$OUT/viewer-$i.log" &
    PIDS+=("$!")
done
sleep 2
"$BIN/vswa-send" --url "ws://127.0.0.1:$PORT/ws/publish/soak" --source test \
    --size "$SIZE" --fps "$FPS" --duration "$DURATION" 2> "$OUT/send.log" &
SEND=$!
PIDS+=("$SEND")

# RSS (KiB) and CPU (% of one core over the interval) of the relay.
TICK=$(getconf CLK_TCK)
echo "elapsed_s,rss_kib,cpu_percent,viewers" > "$OUT/relay.csv"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$RELAY/stat"; }
START=$(date +%s.%N)
PREV=$(cpu_ticks)
PREV_T=$START
while kill -0 "$SEND" 2>/dev/null; do
    sleep "$INTERVAL"
    [ -r "/proc/$RELAY/stat" ] || break
    NOW=$(date +%s.%N)
    TICKS=$(cpu_ticks)
    RSS=$(awk '/VmRSS/ {print $2}' "/proc/$RELAY/status")
    VIEWING=$(curl -s "http://127.0.0.1:$PORT/api/streams/soak" | python3 -c 'import json,sys; print(json.load(sys.stdin)["viewers"])' 2>/dev/null || echo 0)
    awk -v e="$(echo "$NOW - $START" | bc)" -v r="$RSS" -v t="$((TICKS - PREV))" \
        -v dt="$(echo "$NOW - $PREV_T" | bc)" -v hz="$TICK" -v v="$VIEWING" \
        'BEGIN { printf "%.0f,%d,%.1f,%d\n", e, r, 100 * t / hz / dt, v }' >> "$OUT/relay.csv"
    PREV=$TICKS
    PREV_T=$NOW
done
wait "$SEND" || echo "vswa-send exited non-zero; see $OUT/send.log"
sleep 7 # viewers finish (--duration) and print their summaries

python3 - "$OUT" "$VIEWERS" <<'EOF'
import csv, glob, json, statistics, sys
out, n = sys.argv[1], int(sys.argv[2])
rows = list(csv.DictReader(open(f"{out}/relay.csv")))
rss = [int(r["rss_kib"]) for r in rows]
cpu = [float(r["cpu_percent"]) for r in rows]
warm = rss[len(rss) // 5:] or rss  # after the first fifth (warm-up)
fractions, p99 = [], []
for path in glob.glob(f"{out}/viewer-*.json"):
    try:
        s = json.load(open(path))
    except ValueError:
        continue
    if s.get("first_sequence") is None:
        continue
    span = s["last_sequence"] - s["first_sequence"] + 1
    fractions.append(s["frames"] / span)
    if s.get("latency_ms"):
        p99.append(s["latency_ms"]["p99"])
print(f"samples: {len(rows)}  relay RSS KiB: start {rss[0]}, after warm-up min {min(warm)} max {max(warm)}, end {rss[-1]}")
print(f"relay CPU % of one core: mean {statistics.mean(cpu):.1f}, max {max(cpu):.1f}")
if fractions:
    f = sorted(fractions)
    print(f"viewers reporting: {len(f)}/{n}  delivery: worst {f[0]*100:.2f}%  median {statistics.median(f)*100:.2f}%  "
          f"viewers >= 99%: {sum(x >= 0.99 for x in f)}")
if p99:
    print(f"latency p99 (ms) across viewers: median {statistics.median(p99):.1f}, worst {max(p99):.1f}")
print(f"CSV: {out}/relay.csv")
EOF
