#!/usr/bin/env bash
# Side-by-side relay benchmark on loopback: vswa-relay, Node `ws` (jsmpeg relay pattern)
# and Python `websockets` (broadcast), each driven by the same `vswa-bench sweep`, plus
# iperf3 loopback TCP throughput as the physical limit and `vswa-bench floor` (one thread,
# one non-blocking write of the same bytes per viewer, nothing else) as the kernel floor;
# the tables divide each relay's CPU and p99 by the floor's. Writes bench/results/.
#
#   bench/compare.sh            full run (25 000 and 100 000-byte frames, up to 2000 viewers)
#   QUICK=1 bench/compare.sh    smoke run (small counts, short runs)
#
# Env: OUT (results dir), COUNTS (viewer list), DURATION (s per point), FPS, SIZES,
# RELAYS (which to run: vswa-relay node-ws python-websockets floor, and the variants
# vswa-relay-nofanout, vswa-relay-2workers, vswa-relay-before with BEFORE_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/bench/results}
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    COUNTS=${COUNTS:-20,100}
    DURATION=${DURATION:-2}
    IDLE_VIEWERS=${IDLE_VIEWERS:-100}
    IPERF_SECONDS=2
else
    COUNTS=${COUNTS:-100,500,1000,1500,2000}
    DURATION=${DURATION:-8}
    IDLE_VIEWERS=${IDLE_VIEWERS:-2000}
    IPERF_SECONDS=5
fi
FPS=${FPS:-30}
SIZES=${SIZES:-25000 100000}
RELAYS=${RELAYS:-vswa-relay node-ws python-websockets floor}

log() { echo "compare.sh: $*" >&2; }

# --- what we need, installed only if missing ---------------------------------------
if [ ! -d bench/peers/node-ws/node_modules/ws ]; then
    log "npm install (bench/peers/node-ws)"
    (cd bench/peers/node-ws && npm install --no-audit --no-fund --silent)
fi
if ! python3 -c 'import websockets' 2>/dev/null; then
    log "pip install -r bench/peers/python-websockets/requirements.txt"
    python3 -m pip install -q -r bench/peers/python-websockets/requirements.txt
fi
if ! command -v iperf3 >/dev/null; then
    log "apt-get install -y iperf3"
    apt-get install -y -q iperf3 >/dev/null
fi

log "building release binaries"
cargo build --release -q -p vswa-relay -p vswa-bench
TARGET=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BENCH=$TARGET/release/vswa-bench
RELAY=$TARGET/release/vswa-relay

# Thousands of sockets on each side.
ulimit -n "$(ulimit -Hn)" || log "cannot raise the open-file limit (now $(ulimit -n))"

mkdir -p "$OUT"
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

RELAY_PID=
start_relay() { # name port
    case $1 in
    vswa-relay) RUST_LOG=warn "$RELAY" --listen "127.0.0.1:$2" >"$OUT/$1.log" 2>&1 & ;;
    # Variants, for choosing the defaults by measurement: no fan-out thread (the
    # publisher's task writes to every viewer), two runtime workers instead of the
    # default (half the cores), and an older build given as BEFORE_BIN (say, the
    # commit before a change).
    vswa-relay-nofanout) RUST_LOG=warn "$RELAY" --listen "127.0.0.1:$2" --fanout-threads 0 >"$OUT/$1.log" 2>&1 & ;;
    vswa-relay-2workers) RUST_LOG=warn "$RELAY" --listen "127.0.0.1:$2" --workers 2 >"$OUT/$1.log" 2>&1 & ;;
    vswa-relay-before) RUST_LOG=warn "${BEFORE_BIN:?set BEFORE_BIN to an older vswa-relay}" --listen "127.0.0.1:$2" >"$OUT/$1.log" 2>&1 & ;;
    node-ws) node bench/peers/node-ws/relay.js "$2" >"$OUT/$1.log" 2>&1 & ;;
    python-websockets) python3 bench/peers/python-websockets/relay.py "$2" >"$OUT/$1.log" 2>&1 & ;;
    floor) "$BENCH" floor --listen "127.0.0.1:$2" >"$OUT/$1.log" 2>&1 & ;;
    *) log "unknown relay $1"; exit 2 ;;
    esac
    RELAY_PID=$!
    for _ in $(seq 100); do
        if (echo >"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    log "$1 did not start listening on port $2"; exit 1
}
stop_relay() {
    kill "$RELAY_PID" 2>/dev/null || true
    wait "$RELAY_PID" 2>/dev/null || true
    RELAY_PID=
}
cleanup() {
    stop_relay
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

START=$(date +%s)
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpus: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "memory: $(free -m | awk '/Mem:/ {print $2 " MiB"}')"
    echo "kernel: $(uname -r)"
    echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "node: $(node --version), python: $(python3 --version 2>&1 | cut -d' ' -f2), websockets: $(python3 -c 'import websockets; print(websockets.__version__)'), ws: $(node -p 'require("./bench/peers/node-ws/node_modules/ws/package.json").version')"
    echo "counts: $COUNTS, duration: $DURATION s per point, fps: $FPS, sizes: $SIZES"
} >"$OUT/machine.txt"

# --- loopback TCP limit -------------------------------------------------------------
PORT=$(free_port)
iperf3 -s -1 -B 127.0.0.1 -p "$PORT" >/dev/null 2>&1 &
IPERF_PID=$!
sleep 0.5
iperf3 -c 127.0.0.1 -p "$PORT" -t "$IPERF_SECONDS" -J >"$OUT/iperf3.json"
wait "$IPERF_PID" 2>/dev/null || true
IPERF_MBS=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.0f" % (d["end"]["sum_received"]["bits_per_second"]/8e6))' "$OUT/iperf3.json")
log "iperf3 loopback: $IPERF_MBS MB/s"

# --- sweeps -------------------------------------------------------------------------
# All relays run at once on their own ports (an idle relay costs nothing), and the
# viewer counts are interleaved: count 1 on each relay, then count 2 on each, ... so slow
# drifts in machine load hit every relay alike. A relay whose delivery fell under 50% is
# not driven further (vswa-bench sweep stops on collapse; its CSV keeps the last row).
declare -A PIDS PORTS
for size in $SIZES; do
    mkdir -p "$OUT/$size"
    rm -f "$OUT/$size"/*.csv
    for relay in $RELAYS; do
        PORTS[$relay]=$(free_port)
        start_relay "$relay" "${PORTS[$relay]}"
        PIDS[$relay]=$RELAY_PID
        log "$relay on port ${PORTS[$relay]} (pid $RELAY_PID), $size-byte frames"
    done
    declare -A COLLAPSED=()
    for n in ${COUNTS//,/ }; do
        for relay in $RELAYS; do
            [ -n "${COLLAPSED[$relay]:-}" ] && continue
            timeout 600 "$BENCH" sweep --url "ws://127.0.0.1:${PORTS[$relay]}" --viewers "$n" \
                --frame-bytes "$size" --fps "$FPS" --duration "$DURATION" \
                --relay-pid "${PIDS[$relay]}" --label "$relay" --out "$OUT/$size" --append ||
                log "$relay at $n viewers failed (see above)"
            last=$(tail -n1 "$OUT/$size/$relay.csv" | cut -d, -f7)
            if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 0.5 else 1)" "${last:-0}"; then
                log "$relay: delivery collapsed at $n viewers; no larger counts"
                COLLAPSED[$relay]=1
            fi
            sleep 1
        done
    done
    unset COLLAPSED
    for relay in $RELAYS; do
        RELAY_PID=${PIDS[$relay]}
        stop_relay
        PIDS[$relay]=
    done
    csvs=()
    for relay in $RELAYS; do [ -f "$OUT/$size/$relay.csv" ] && csvs+=("$OUT/$size/$relay.csv"); done
    "$BENCH" plot --out "$OUT" --prefix "$size-" --title "$size B frames at $FPS fps" \
        --table "$OUT/$size.md" "${csvs[@]}"
done

# --- memory with idle viewers (fresh relay, viewers connected, no frames yet) ---------
echo "| relay | idle viewers | RSS before viewers MiB | RSS with viewers connected MiB |" >"$OUT/idle.md"
echo "|---|---:|---:|---:|" >>"$OUT/idle.md"
for relay in $RELAYS; do
    PORT=$(free_port)
    start_relay "$relay" "$PORT"
    sleep 0.5
    before=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$RELAY_PID/status")
    json=$(timeout 300 "$BENCH" fanout --url "ws://127.0.0.1:$PORT" --viewers "$IDLE_VIEWERS" \
        --frame-bytes 1000 --fps 5 --duration 1 --relay-pid "$RELAY_PID" --json || echo '{}')
    idle=$(echo "$json" | python3 -c 'import json,sys; d=json.load(sys.stdin); v=d.get("relay_rss_connected_kib"); print("%.1f" % (v/1024) if v else "-")')
    echo "| $relay | $IDLE_VIEWERS | $before | $idle |" >>"$OUT/idle.md"
    stop_relay
done

# --- one results file ---------------------------------------------------------------
{
    echo "# Relay comparison ($(date -u +%Y-%m-%d))"
    echo
    echo '```'
    cat "$OUT/machine.txt"
    echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "elapsed: $(( $(date +%s) - START )) s"
    echo '```'
    echo
    echo "iperf3 loopback TCP (one stream, $IPERF_SECONDS s): **$IPERF_MBS MB/s**"
    for size in $SIZES; do
        echo
        echo "## $size-byte frames at $FPS fps"
        echo
        cat "$OUT/$size.md"
        echo
        echo "![delivered]($size-delivered.svg) ![p99]($size-p99.svg) ![cpu]($size-cpu.svg)"
    done
    echo
    echo "## Relay memory with $IDLE_VIEWERS idle viewers"
    echo
    cat "$OUT/idle.md"
} >"$OUT/results.md"
log "wrote $OUT/results.md in $(( $(date +%s) - START )) s"
