#!/usr/bin/env bash
# Relays in a cluster over NATS, on loopback: one nats-server (JetStream on, default
# max_payload of 1 MB) and two relays, A and B, joined with --cluster. Measures
#
#   a. the NATS hop: one publisher on A, viewers on A (direct) and on B (via NATS) in
#      the same run (`vswa-bench fanout --url A,B --publish-url A`, viewers alternate
#      between the relays), 25 kB x 30 fps, $COUNTS viewers on each relay; CPU of A, B
#      and nats-server over the same window; then (a2) the largest count on one relay
#      and one viewer on the other, both ways, to see where the hop's time goes;
#   b. ingest: what one relay takes from NATS. Publisher on A, one viewer on B and, as
#      the control, one on A; $SIZES-byte frames at rising rates ($RATES fps) until B's
#      viewer gets under 99% or a cluster drop counter grows (the rate after that is not
#      tried); nats-server's CPU and its slow-consumer count too;
#   c. CPU per remote stream: N streams ($STREAMS) published on A at 25 kB x 30 fps, one
#      vswa-bench process per stream with one viewer each, on B ("remote") and, as the
#      control, on A ("local"); CPU of A, B and nats-server read from /proc over the
#      middle of the runs, divided by N; the announcements over the same window;
#   d. announcements: messages per second on vswa.v1.relays and their size, with one
#      stream steady and with a viewer joining or leaving B every ~25 ms;
#   e. the directory's cost with many relays: $FAKE_RELAYS simulated relays (NATS
#      publishers of announcements listing $FAKE_STREAMS streams each, once a second),
#      CPU of A, B and nats-server, while a real stream runs from B to A.
#
# Parts a and c run $REPEAT times (b: $REPEAT_INGEST), interleaved (all counts once,
# then again), so noise shows; every row records the 1-minute load. vswa-bench, the
# relays and nats-server share this machine: read the CPU columns as the machine's, not
# only the relay's. Raw JSON/CSV, logs and summary.md go to $OUT. Everything started
# here is stopped on exit.
#
#   bash bench/cluster.sh                 about 11 minutes
#   QUICK=1 bash bench/cluster.sh         smoke run (short points, small counts)
#
# Env: DURATION (s per point, default 10), REPEAT (a and c, default 2), REPEAT_INGEST
#      (default 1), COUNTS (viewers per relay, default 1,100,500), SIZES (default
#      "100000 500000 1000000"), RATES (default 30,100,300,600,1000), STREAMS (default
#      1,10,50), CHURN_SECONDS (d, default DURATION - 3), FAKE_RELAYS (e, default
#      50,100,200,400), FAKE_STREAMS (e, default 100), NATS_ARGS (more nats-server
#      arguments), OUT (default bench/results/cluster-DATE), RELAY and BENCH (binaries
#      to use instead of building, e.g. a build of a given commit; VSWA_REV then names
#      it in machine.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    DURATION=${DURATION:-3}
    REPEAT=${REPEAT:-1}
    COUNTS=${COUNTS:-1,20}
    SIZES=${SIZES:-100000}
    RATES=${RATES:-30,300}
    STREAMS=${STREAMS:-1,5}
    FAKE_RELAYS=${FAKE_RELAYS:-20,40}
fi
DURATION=${DURATION:-10}
REPEAT=${REPEAT:-2}
REPEAT_INGEST=${REPEAT_INGEST:-1}
COUNTS=${COUNTS:-1,100,500}
SIZES=${SIZES:-100000 500000 1000000}
RATES=${RATES:-30,100,300,600,1000}
STREAMS=${STREAMS:-1,10,50}
NATS_ARGS=${NATS_ARGS:-}
OUT=${OUT:-$ROOT/bench/results/cluster-$(date -u +%Y-%m-%d)}

log() { echo "cluster.sh: $*" >&2; }
command -v nats-server >/dev/null || { log "nats-server not found (Debian: apt-get install nats-server)"; exit 1; }

if [ -n "${RELAY:-}" ] && [ -n "${BENCH:-}" ]; then
    log "using $RELAY and $BENCH as they are (no build)"
    VSWA_REV=${VSWA_REV:-"given binaries ($RELAY, $BENCH)"}
else
    log "building release binaries"
    cargo build --release -q -p vswa-relay -p vswa-bench
    TARGET=$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    BENCH=$TARGET/release/vswa-bench
    RELAY=$TARGET/release/vswa-relay
    VSWA_REV="$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- crates 2>/dev/null || echo ' + uncommitted changes in crates/')"
fi
# Hundreds of sockets on each side.
ulimit -n "$(ulimit -Hn)" || log "cannot raise the open-file limit (now $(ulimit -n))"

mkdir -p "$OUT"
# This script's own files only (OUT may be shared).
(cd "$OUT" && rm -f machine.txt summary.md latency.csv latency.jsonl latency-split.csv \
    latency-split.jsonl ingest.csv ingest.jsonl streams.csv announcements.csv directory.csv \
    directory-live.json \
    announcements-steady.json announcements-churn.json churn-fanout.json metrics-A.txt \
    metrics-B.txt nats-varz.json nats-server.log relay-A.log relay-B.log && rm -rf streams)
WORK=$(mktemp -d)
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
load1() { cut -d' ' -f1 /proc/loadavg; }
# One line "TIME CPU_A CPU_B CPU_NATS FRAMES_IN_B", read together: a monotonic clock,
# utime + stime of relay A, relay B and nats-server in seconds (/proc/PID/stat, fields
# after the command name's last ')') and B's vswa_cluster_frames_in_total.
snapshot() { python3 -c '
import os, sys, time, urllib.request
def cpu(pid):
    t = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(t[11]) + int(t[12])) / os.sysconf("SC_CLK_TCK")
now = time.monotonic()
cpus = [cpu(p) for p in sys.argv[1:4]]
frames = 0
for line in urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[4]}/metrics", timeout=5).read().decode().splitlines():
    if line.startswith("vswa_cluster_frames_in_total "):
        frames = int(float(line.split()[-1]))
print(now, *cpus, frames)' "${PID[A]}" "${PID[B]}" "$NATS_PID" "${PORT[B]}"; }
# A NATS subscriber on the protocol's text lines: counts the messages on a subject for
# some seconds, by relay (the "relay" field of an announcement), and their sizes.
cat >"$WORK/natssub.py" <<'PY'
import json, socket, sys, time
port, subject, secs = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b'CONNECT {"verbose":false,"headers":true}\r\nSUB ' + subject.encode() + b' 1\r\n')
s.settimeout(0.1)
buf, sizes, by_relay, sample = b"", [], {}, None
start = time.monotonic()
while time.monotonic() - start < secs:
    try:
        data = s.recv(1 << 20)
    except socket.timeout:
        continue
    if not data:
        break
    buf += data
    while (i := buf.find(b"\r\n")) >= 0:
        words = buf[:i].split()
        if words and words[0] in (b"MSG", b"HMSG"):
            total = int(words[-1])
            if len(buf) < i + 4 + total:
                break
            headers = int(words[-2]) if words[0] == b"HMSG" else 0
            body = buf[i + 2 + headers:i + 2 + total]
            buf = buf[i + 4 + total:]
            sizes.append(total)
            try:
                relay = json.loads(body).get("relay", "?")
            except ValueError:
                relay = "?"
            by_relay[relay] = by_relay.get(relay, 0) + 1
            sample = sample or body.decode(errors="replace")
        else:
            if words and words[0] == b"PING":
                s.sendall(b"PONG\r\n")
            buf = buf[i + 2:]
print(json.dumps({"seconds": secs, "messages": len(sizes), "per_s": len(sizes) / secs,
                  "mean_size": sum(sizes) / len(sizes) if sizes else 0,
                  "max_size": max(sizes, default=0), "by_relay": by_relay, "sample": sample}))
PY
# One counter of a relay's /metrics, summed over its labels (0 when absent).
metric() { # port name [label filter]
    curl -s "http://127.0.0.1:$1/metrics" | python3 -c '
import sys
name, want = sys.argv[1], sys.argv[2]
total = 0.0
for line in sys.stdin:
    if (line.startswith(name + " ") or line.startswith(name + "{")) and want in line:
        total += float(line.split()[-1])
print(int(total))' "$2" "${3:-}"
}
nats_varz() { # field
    curl -s "http://127.0.0.1:$NATS_MON/varz" | python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], 0))' "$1"
}
wait_port() { # port name
    for _ in $(seq 100); do
        (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    log "$2 did not start listening on port $1"; exit 1
}

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

NATS_PORT=$(free_port)
NATS_MON=$(free_port)
# shellcheck disable=SC2086 # NATS_ARGS is a list of words
nats-server -a 127.0.0.1 -p "$NATS_PORT" -m "$NATS_MON" -js -sd "$WORK/js" $NATS_ARGS \
    >"$OUT/nats-server.log" 2>&1 &
NATS_PID=$!
PIDS+=("$NATS_PID")
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$NATS_MON/healthz" >/dev/null && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$NATS_MON/healthz" >/dev/null ||
    { log "nats-server did not start (see $OUT/nats-server.log)"; exit 1; }
declare -A PORT PID
for r in A B; do
    PORT[$r]=$(free_port)
    # Info level: the cluster's own log lines (drops, relays gone) are the evidence.
    RUST_LOG=info "$RELAY" --listen "127.0.0.1:${PORT[$r]}" \
        --cluster "nats://127.0.0.1:$NATS_PORT" --relay-id "bench-$r" >"$OUT/relay-$r.log" 2>&1 &
    PID[$r]=$!
    PIDS+=("${PID[$r]}")
    wait_port "${PORT[$r]}" "relay $r"
done
URL_A=ws://127.0.0.1:${PORT[A]}
URL_B=ws://127.0.0.1:${PORT[B]}
# Wait until each relay hears the other (announcements once a second).
for _ in $(seq 50); do
    [ "$(metric "${PORT[A]}" vswa_cluster_relays)" -ge 1 ] &&
        [ "$(metric "${PORT[B]}" vswa_cluster_relays)" -ge 1 ] && break
    sleep 0.2
done
log "nats-server pid $NATS_PID on $NATS_PORT; relay A pid ${PID[A]} on ${PORT[A]}; relay B pid ${PID[B]} on ${PORT[B]}"

START=$(date +%s)
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpus: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "kernel: $(uname -r)"
    echo "nats-server: $(nats-server --version) $NATS_ARGS"
    echo "vswa: $VSWA_REV"
    echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "duration: $DURATION s per point (+1 s warm-up), repeat: $REPEAT (ingest: $REPEAT_INGEST)"
    echo "counts: $COUNTS viewers per relay; sizes: $SIZES; rates: $RATES; streams: $STREAMS"
} >"$OUT/machine.txt"

# Idle cost of the cluster: announcements only, no streams.
s0=$(snapshot)
sleep 5
s1=$(snapshot)
python3 - "$s0" "$s1" >>"$OUT/machine.txt" <<'EOF'
import sys
a, b = ([float(x) for x in s.split()] for s in sys.argv[1:3])
w = b[0] - a[0]
print("idle %.1f s, cores: A %.4f, B %.4f, nats-server %.4f" % (w, (b[1]-a[1])/w, (b[2]-a[2])/w, (b[3]-a[3])/w))
EOF

# --- a. the NATS hop: viewers on A and on B, same run ------------------------------
echo "rep,viewers_per_relay,load1,a_delivered,a_p50_ms,a_p90_ms,a_p99_ms,a_max_ms,b_delivered,b_p50_ms,b_p90_ms,b_p99_ms,b_max_ms,b_minus_a_p50_ms,b_minus_a_p99_ms,a_cores,b_cores,nats_cores,bench_cores,b_dropped" \
    >"$OUT/latency.csv"
for rep in $(seq "$REPEAT"); do
    for n in ${COUNTS//,/ }; do
        d0=$(metric "${PORT[B]}" vswa_cluster_dropped_total)
        l=$(load1)
        json=$(timeout 300 "$BENCH" fanout --url "$URL_A,$URL_B" --publish-url "$URL_A" \
            --stream "hop$n" --viewers $((2 * n)) --frame-bytes 25000 --fps 30 \
            --duration "$DURATION" --relay-pid "${PID[A]}" --cpu-pid "${PID[B]},$NATS_PID" \
            --json) || { log "hop: $n viewers per relay failed"; continue; }
        d1=$(metric "${PORT[B]}" vswa_cluster_dropped_total)
        echo "$json" >>"$OUT/latency.jsonl"
        echo "$json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
rep, n, load, dropped = sys.argv[1:5]
a, b = d["by_url"]
cpu = [c["cores"] or 0 for c in d["cpu"]]
bench = d["bench_cpu_s"] / d["publish_seconds"]
print(",".join(str(x) for x in [rep, n, load,
    "%.5f" % a["delivered_fraction"], a["latency_p50_ms"], a["latency_p90_ms"], a["latency_p99_ms"], a["latency_max_ms"],
    "%.5f" % b["delivered_fraction"], b["latency_p50_ms"], b["latency_p90_ms"], b["latency_p99_ms"], b["latency_max_ms"],
    "%.2f" % (b["latency_p50_ms"] - a["latency_p50_ms"]), "%.2f" % (b["latency_p99_ms"] - a["latency_p99_ms"]),
    "%.3f" % d["relay_cpu_cores"], "%.3f" % cpu[0], "%.3f" % cpu[1], "%.3f" % bench, dropped]))
' "$rep" "$n" "$l" $((d1 - d0)) | tee -a "$OUT/latency.csv" >&2
        sleep 1
    done
done

# a2. Where the hop's time goes: the largest count on one relay and a single viewer on
# the other (a URL listed k times gets k shares of vswa-bench's viewers). With A's
# viewers many, B's single viewer shows how long the frame waits on A before it goes
# to NATS; with B's many, B's fan-out after the hop.
big=${COUNTS##*,}
repeat_url() { python3 -c 'import sys; print(",".join([sys.argv[1]] * int(sys.argv[2])))' "$1" "$2"; }
echo "rep,case,a_viewers,b_viewers,load1,a_delivered,a_p50_ms,a_p99_ms,b_delivered,b_p50_ms,b_p99_ms,a_cores,b_cores,nats_cores" \
    >"$OUT/latency-split.csv"
for rep in $(seq "$REPEAT"); do
    for case in many-on-A many-on-B; do
        if [ "$case" = many-on-A ]; then
            urls="$(repeat_url "$URL_A" "$big"),$URL_B" na=$big nb=1
        else
            urls="$URL_A,$(repeat_url "$URL_B" "$big")" na=1 nb=$big
        fi
        l=$(load1)
        json=$(timeout 300 "$BENCH" fanout --url "$urls" --publish-url "$URL_A" \
            --stream "split" --viewers $((big + 1)) --frame-bytes 25000 --fps 30 \
            --duration "$DURATION" --relay-pid "${PID[A]}" --cpu-pid "${PID[B]},$NATS_PID" \
            --json) || { log "split: $case failed"; continue; }
        echo "$json" >>"$OUT/latency-split.jsonl"
        echo "$json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
rep, case, na, nb, load = sys.argv[1:6]
a, b = d["by_url"]
cpu = [c["cores"] or 0 for c in d["cpu"]]
print(",".join(str(x) for x in [rep, case, na, nb, load,
    "%.5f" % a["delivered_fraction"], a["latency_p50_ms"], a["latency_p99_ms"],
    "%.5f" % b["delivered_fraction"], b["latency_p50_ms"], b["latency_p99_ms"],
    "%.3f" % d["relay_cpu_cores"], "%.3f" % cpu[0], "%.3f" % cpu[1]]))
' "$rep" "$case" "$na" "$nb" "$l" | tee -a "$OUT/latency-split.csv" >&2
        sleep 1
    done
done

# --- b. ingest: one relay taking one stream from NATS ------------------------------
echo "rep,frame_bytes,fps_target,fps_published,mb_s_published,load1,b_delivered,b_p50_ms,b_p99_ms,b_gaps,a_delivered,a_p50_ms,a_p99_ms,a_gaps,b_frames_in,a_frames_out,a_dropped_backbone,b_dropped,nats_slow_consumers,a_cores,b_cores,nats_cores,bench_cores,a_rss_peak_mib" \
    >"$OUT/ingest.csv"
for rep in $(seq "$REPEAT_INGEST"); do
    for size in $SIZES; do
        for fps in ${RATES//,/ }; do
            in0=$(metric "${PORT[B]}" vswa_cluster_frames_in_total)
            out0=$(metric "${PORT[A]}" vswa_cluster_frames_out_total)
            bb0=$(metric "${PORT[A]}" vswa_cluster_dropped_total)
            d0=$(metric "${PORT[B]}" vswa_cluster_dropped_total)
            sc0=$(nats_varz slow_consumers)
            l=$(load1)
            # Viewer 0 on B (the measured one), viewer 1 on A (the control).
            json=$(timeout 300 "$BENCH" fanout --url "$URL_B,$URL_A" --publish-url "$URL_A" \
                --stream "ingest" --viewers 2 --frame-bytes "$size" --fps "$fps" \
                --duration "$DURATION" --relay-pid "${PID[B]}" --cpu-pid "${PID[A]},$NATS_PID" \
                --json) || { log "ingest: $size B x $fps fps failed"; break; }
            sleep 0.5
            in1=$(metric "${PORT[B]}" vswa_cluster_frames_in_total)
            out1=$(metric "${PORT[A]}" vswa_cluster_frames_out_total)
            bb1=$(metric "${PORT[A]}" vswa_cluster_dropped_total)
            d1=$(metric "${PORT[B]}" vswa_cluster_dropped_total)
            sc1=$(nats_varz slow_consumers)
            echo "$json" >>"$OUT/ingest.jsonl"
            row=$(echo "$json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
rep, size, fps, load, fin, fout, bb, dr, sc, rss = sys.argv[1:11]
b, a = d["by_url"]
cpu = [c["cores"] or 0 for c in d["cpu"]]
secs = d["publish_seconds"]
print(",".join(str(x) for x in [rep, size, fps, "%.0f" % (d["frames_published"] / secs),
    "%.1f" % (d["frames_published"] * (int(size) + 32) / secs / 1e6), load,
    "%.5f" % b["delivered_fraction"], b["latency_p50_ms"], b["latency_p99_ms"], b["sequence_gaps"],
    "%.5f" % a["delivered_fraction"], a["latency_p50_ms"], a["latency_p99_ms"], a["sequence_gaps"],
    fin, fout, bb, dr, sc, "%.3f" % cpu[0], "%.3f" % d["relay_cpu_cores"], "%.3f" % cpu[1],
    "%.3f" % (d["bench_cpu_s"] / secs), rss]))
' "$rep" "$size" "$fps" "$l" $((in1 - in0)) $((out1 - out0)) $((bb1 - bb0)) $((d1 - d0)) \
                $((sc1 - sc0)) "$(awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/${PID[A]}/status")")
            echo "$row" | tee -a "$OUT/ingest.csv" >&2
            sleep 1
            # Stop this size after the first rate B's viewer did not get (>= 99%, no drops).
            if echo "$row" | python3 -c 'import sys; r=sys.stdin.read().split(","); sys.exit(0 if float(r[6]) < 0.99 or int(r[16]) + int(r[17]) > 0 else 1)'; then
                log "ingest: $size B frames: B under 99% or dropping at $fps fps; no higher rate"
                break
            fi
        done
    done
done

# --- c. CPU per remote stream ---------------------------------------------------------
# N vswa-bench processes, one stream and one viewer each. Their measured windows start
# within a second or two of each other (connect, 1 s warm-up), so CPU is read from /proc
# from 3 s after the start until 1 s before the earliest possible end. The relays'
# announcements are counted over the same window.
mkdir -p "$OUT/streams"
echo "rep,mode,streams,load1,window_s,delivered_min,delivered_mean,p50_ms_median,p99_ms_max,a_cores,b_cores,nats_cores,a_cores_per_stream,b_cores_per_stream,nats_cores_per_stream,bench_cores,b_frames_in_per_s,announcements_per_s,announcement_bytes" \
    >"$OUT/streams.csv"
WINDOW=$(python3 -c "print(max(1.0, $DURATION - 3))")
for rep in $(seq "$REPEAT"); do
    for n in ${STREAMS//,/ }; do
        for mode in remote local; do
            if [ "$mode" = remote ]; then url=$URL_B; else url=$URL_A; fi
            dir=$OUT/streams/$mode-$n-run$rep
            mkdir -p "$dir"
            l=$(load1)
            bench_pids=()
            for i in $(seq 0 $((n - 1))); do
                timeout 300 "$BENCH" fanout --url "$url" --publish-url "$URL_A" --stream "s$i" \
                    --viewers 1 --frame-bytes 25000 --fps 30 --duration "$DURATION" --json \
                    >"$dir/s$i.json" 2>"$dir/s$i.err" &
                bench_pids+=($!)
            done
            sleep 3
            python3 "$WORK/natssub.py" "$NATS_PORT" vswa.v1.relays "$WINDOW" \
                >"$dir/announcements.json" 2>/dev/null &
            sub=$!
            s0=$(snapshot)
            sleep "$WINDOW"
            s1=$(snapshot)
            wait "$sub" || true
            for p in "${bench_pids[@]}"; do wait "$p" || log "streams: a vswa-bench process failed (see $dir)"; done
            python3 - "$dir" "$rep" "$mode" "$n" "$l" "$s0" "$s1" <<'EOF' | tee -a "$OUT/streams.csv" >&2
import glob, json, statistics, sys
d, rep, mode, n, load = sys.argv[1:6]
s0, s1 = ([float(x) for x in s.split()] for s in sys.argv[6:8])
n, w = int(n), s1[0] - s0[0]
runs = []
for path in glob.glob(f"{d}/s*.json"):
    try:
        runs.append(json.load(open(path)))
    except ValueError:
        pass
fr = [r["delivered_fraction"] for r in runs] + [0.0] * (n - len(runs))
a, b, nats, frames = ((s1[i] - s0[i]) / w for i in (1, 2, 3, 4))
# vswa-bench's own CPU over its own window, summed over the processes.
bench = sum(r["bench_cpu_s"] / r["publish_seconds"] for r in runs)
try:
    ann = json.load(open(f"{d}/announcements.json"))
except (OSError, ValueError):
    ann = {"per_s": 0, "mean_size": 0}
print(",".join(str(x) for x in [rep, mode, n, load, "%.2f" % w, "%.5f" % min(fr), "%.5f" % statistics.mean(fr),
    statistics.median(r["latency_p50_ms"] for r in runs) if runs else "",
    max(r["latency_p99_ms"] for r in runs) if runs else "",
    "%.3f" % a, "%.3f" % b, "%.3f" % nats, "%.4f" % (a / n), "%.4f" % (b / n), "%.4f" % (nats / n),
    "%.3f" % bench, "%.0f" % frames, "%.1f" % ann["per_s"], "%.0f" % ann["mean_size"]]))
EOF
            sleep 3 # past the relays' 2 s linger of unwatched subscriptions
        done
    done
done

# --- d. announcements while viewers come and go ----------------------------------------
# A relay announces once a second and ~100 ms after any change of its streams (a viewer
# joining or leaving). One stream published on A with one viewer on B, and a loop that
# opens and closes a viewer on B about 20 times a second for $CHURN_SECONDS: count the
# announcements per relay, with and without the churn.
CHURN_SECONDS=${CHURN_SECONDS:-$WINDOW}
echo "case,seconds,load1,messages_per_s,mean_bytes,by_relay" >"$OUT/announcements.csv"
"$BENCH" fanout --url "$URL_B" --publish-url "$URL_A" --stream churn --viewers 1 \
    --duration $(python3 -c "print(2 * $CHURN_SECONDS + 4)") --json >"$OUT/churn-fanout.json" 2>/dev/null &
churn_bench=$!
sleep 3
for case in steady churn; do
    l=$(load1)
    churner=
    if [ "$case" = churn ]; then
        python3 - "${PORT[B]}" "$CHURN_SECONDS" <<'EOF' &
import socket, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
end = time.monotonic() + secs
while time.monotonic() < end:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /ws/watch/churn HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    s.recv(4096)
    time.sleep(0.025)
    s.close()
    time.sleep(0.025)
EOF
        churner=$!
    fi
    python3 "$WORK/natssub.py" "$NATS_PORT" vswa.v1.relays "$CHURN_SECONDS" >"$OUT/announcements-$case.json"
    [ -n "$churner" ] && { wait "$churner" || true; }
    python3 - "$case" "$CHURN_SECONDS" "$l" "$OUT/announcements-$case.json" <<'EOF' | tee -a "$OUT/announcements.csv" >&2
import json, sys
case, secs, load, path = sys.argv[1:5]
d = json.load(open(path))
by = " ".join(f"{k}={v / float(secs):.1f}/s" for k, v in sorted(d["by_relay"].items()))
print(f"{case},{secs},{load},{d['per_s']:.1f},{d['mean_size']:.0f},{by}")
EOF
done
wait "$churn_bench" || true

# --- e. the directory's cost with many relays ------------------------------------------
# Every relay hears every other relay's announcement once a second. Simulated relays
# (plain NATS publishers of announcements, $FAKE_STREAMS watched streams each) stand in
# for a large cluster; A and B process them like real ones. One stream published on B
# with one viewer on A runs throughout (B's publisher is told the cluster-wide viewer
# count, so each announcement reaches that path too).
FAKE_RELAYS=${FAKE_RELAYS:-50,100,200,400}
FAKE_STREAMS=${FAKE_STREAMS:-100}
cat >"$WORK/fakerelays.py" <<'PY'
import json, socket, sys, time
port, relays, streams, secs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b'CONNECT {"verbose":false}\r\n')
msgs = []
for r in range(relays):
    body = json.dumps({"relay": f"sim-{r}", "instance": f"sim-{r}-0", "streams": [
        {"name": f"stream{j}", "publisher": False, "viewers": 4, "codec": "jpeg", "width": 1280,
         "height": 720, "fps": 30.0, "bitrate_kbps": 24000.0, "gop_frames": 1,
         "last_sequence": 12345, "connected_unix_ms": 1796231078624} for j in range(streams)]},
        separators=(",", ":")).encode()
    msgs.append(b"PUB vswa.v1.relays %d\r\n" % len(body) + body + b"\r\n")
start, sent = time.monotonic(), 0
while time.monotonic() - start < secs:
    for m in msgs:  # each simulated relay once a second, spread over the second
        s.sendall(m)
        sent += 1
        wait = start + sent / relays - time.monotonic()
        if wait > 0:
            time.sleep(wait)
print(len(msgs[0]))
PY
echo "relays_simulated,streams_each,announcement_bytes,load1,seconds,a_cores,b_cores,nats_cores,b_relays_seen,b_dropped,live_delivered,live_p99_ms" \
    >"$OUT/directory.csv"
points=$(echo "${FAKE_RELAYS//,/ }" | wc -w)
"$BENCH" fanout --url "$URL_A" --publish-url "$URL_B" --stream live --viewers 1 \
    --duration $((points * (${WINDOW%.*} + 4) + 4)) --json \
    >"$OUT/directory-live.json" 2>/dev/null &
live=$!
sleep 3
for r in ${FAKE_RELAYS//,/ }; do
    l=$(load1)
    d0=$(metric "${PORT[B]}" vswa_cluster_dropped_total)
    s0=$(snapshot)
    bytes=$(python3 "$WORK/fakerelays.py" "$NATS_PORT" "$r" "$FAKE_STREAMS" "$WINDOW")
    s1=$(snapshot)
    seen=$(metric "${PORT[B]}" vswa_cluster_relays)
    d1=$(metric "${PORT[B]}" vswa_cluster_dropped_total)
    python3 - "$r" "$FAKE_STREAMS" "$bytes" "$l" "$s0" "$s1" "$seen" $((d1 - d0)) <<'EOF' | tee -a "$OUT/directory.csv" >&2
import sys
r, n, size, load = sys.argv[1:5]
s0, s1 = ([float(x) for x in s.split()] for s in sys.argv[5:7])
w = s1[0] - s0[0]
a, b, nats = ((s1[i] - s0[i]) / w for i in (1, 2, 3))
print(",".join(str(x) for x in [r, n, size, load, "%.2f" % w, "%.3f" % a, "%.3f" % b, "%.3f" % nats, sys.argv[7], sys.argv[8], "", ""]))
EOF
    sleep 3 # the simulated relays go silent: gone after 3 s
done
wait "$live" || true
# The live stream's delivery over the whole part, on every row.
python3 - "$OUT/directory.csv" "$OUT/directory-live.json" <<'EOF'
import json, sys
path, live = sys.argv[1:3]
try:
    d = json.load(open(live))
    fill = ["%.5f" % d["delivered_fraction"], str(d["latency_p99_ms"])]
except (OSError, ValueError):
    fill = ["", ""]
lines = open(path).read().splitlines()
out = [lines[0]] + [",".join(l.split(",")[:-2] + fill) for l in lines[1:]]
open(path, "w").write("\n".join(out) + "\n")
EOF

# --- summary --------------------------------------------------------------------------
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
echo "elapsed: $(( $(date +%s) - START )) s" >>"$OUT/machine.txt"
for r in A B; do
    curl -s "http://127.0.0.1:${PORT[$r]}/metrics" | grep '^vswa_cluster' >"$OUT/metrics-$r.txt" || true
done
curl -s "http://127.0.0.1:$NATS_MON/varz" >"$OUT/nats-varz.json" || true
python3 - "$OUT" >"$OUT/summary.md" <<'EOF'
import csv, os, statistics, sys
out = sys.argv[1]
rows = lambda f: list(csv.DictReader(open(os.path.join(out, f)))) if os.path.exists(os.path.join(out, f)) else []
print("# Cluster over NATS (bench/cluster.sh)\n\n```")
print(open(os.path.join(out, "machine.txt")).read().rstrip())
print("```\n\n## a. NATS hop: viewers on A (direct) vs on B (via NATS), same run, 25 kB x 30 fps\n")
print("| run | viewers per relay | load | A p50 ms | B p50 ms | +p50 ms | A p99 ms | B p99 ms | +p99 ms | A / B delivered | CPU A / B / nats (cores) | vswa-bench (cores) |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|")
for r in rows("latency.csv"):
    print(f"| {r['rep']} | {r['viewers_per_relay']} | {r['load1']} | {float(r['a_p50_ms']):.2f} | {float(r['b_p50_ms']):.2f} | {r['b_minus_a_p50_ms']} | "
          f"{float(r['a_p99_ms']):.2f} | {float(r['b_p99_ms']):.2f} | {r['b_minus_a_p99_ms']} | "
          f"{float(r['a_delivered'])*100:.2f}% / {float(r['b_delivered'])*100:.2f}% | {r['a_cores']} / {r['b_cores']} / {r['nats_cores']} | {r['bench_cores']} |")
print("\n## a2. The same, with many viewers on one relay and one on the other\n")
print("| run | case | viewers A / B | load | A p50 / p99 ms | B p50 / p99 ms | A / B delivered | CPU A / B / nats |")
print("|---:|---|---|---:|---|---|---|---|")
for r in rows("latency-split.csv"):
    print(f"| {r['rep']} | {r['case']} | {r['a_viewers']} / {r['b_viewers']} | {r['load1']} | {float(r['a_p50_ms']):.2f} / {float(r['a_p99_ms']):.2f} | "
          f"{float(r['b_p50_ms']):.2f} / {float(r['b_p99_ms']):.2f} | {float(r['a_delivered'])*100:.2f}% / {float(r['b_delivered'])*100:.2f}% | "
          f"{r['a_cores']} / {r['b_cores']} / {r['nats_cores']} |")
print("\n## b. Ingest: publisher on A, one viewer on B (measured) and one on A (control)\n")
print("| frame B | fps target / published | MB/s | load | B delivered | B p50 / p99 ms | A delivered | A p99 ms | A backbone_full drops | B cluster drops | NATS slow consumers | CPU A / B / nats | A RSS high-water MiB |")
print("|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|")
for r in rows("ingest.csv"):
    print(f"| {r['frame_bytes']} | {r['fps_target']} / {r['fps_published']} | {r['mb_s_published']} | {r['load1']} | {float(r['b_delivered'])*100:.2f}% | "
          f"{float(r['b_p50_ms']):.1f} / {float(r['b_p99_ms']):.1f} | {float(r['a_delivered'])*100:.2f}% | {float(r['a_p99_ms']):.1f} | "
          f"{r['a_dropped_backbone']} | {r['b_dropped']} | {r['nats_slow_consumers']} | {r['a_cores']} / {r['b_cores']} / {r['nats_cores']} | {r['a_rss_peak_mib']} |")
print("\n## c. CPU per stream: N streams of 25 kB x 30 fps published on A, one viewer each on B (remote) or on A (local)\n")
print("| run | mode | streams | load | delivered min / mean | p50 ms (median) | p99 ms (max) | CPU A / B / nats (cores) | per stream A / B / nats (cores) | B frames in/s | announcements/s, mean bytes | vswa-bench (cores) |")
print("|---:|---|---:|---:|---|---:|---:|---|---|---:|---|---:|")
for r in rows("streams.csv"):
    print(f"| {r['rep']} | {r['mode']} | {r['streams']} | {r['load1']} | {float(r['delivered_min'])*100:.2f}% / {float(r['delivered_mean'])*100:.2f}% | "
          f"{float(r['p50_ms_median']):.2f} | {float(r['p99_ms_max']):.2f} | {r['a_cores']} / {r['b_cores']} / {r['nats_cores']} | "
          f"{r['a_cores_per_stream']} / {r['b_cores_per_stream']} / {r['nats_cores_per_stream']} | {r['b_frames_in_per_s']} | "
          f"{r['announcements_per_s']}, {r['announcement_bytes']} | {r['bench_cores']} |")
print("\n## d. Announcements on vswa.v1.relays: one stream, steady vs a viewer joining or leaving B every ~25 ms\n")
print("| case | seconds | load | messages/s (all relays) | mean bytes | per relay |")
print("|---|---:|---:|---:|---:|---|")
for r in rows("announcements.csv"):
    print(f"| {r['case']} | {r['seconds']} | {r['load1']} | {r['messages_per_s']} | {r['mean_bytes']} | {r['by_relay']} |")
print("\n## e. Directory cost: simulated relays, each announcing its watched streams once a second\n")
print("| simulated relays | streams each | announcement bytes | load | CPU A / B / nats (cores) | relays B sees | B cluster drops | live stream B to A: delivered, p99 ms (whole part) |")
print("|---:|---:|---:|---:|---|---:|---:|---|")
for r in rows("directory.csv"):
    live = f"{float(r['live_delivered'])*100:.2f}%, {r['live_p99_ms']}" if r['live_delivered'] else "-"
    print(f"| {r['relays_simulated']} | {r['streams_each']} | {r['announcement_bytes']} | {r['load1']} | {r['a_cores']} / {r['b_cores']} / {r['nats_cores']} | "
          f"{r['b_relays_seen']} | {r['b_dropped']} | {live} |")
EOF
for r in A B; do
    grep -E 'WARN|ERROR|dropp|no frame or announcement|lost the NATS|slow' "$OUT/relay-$r.log" |
        head -20 | sed "s/^/relay $r: /" >&2 || true
done
log "wrote $OUT/summary.md (and latency.csv, ingest.csv, streams.csv, *.jsonl, streams/) in $(( $(date +%s) - START )) s"
cat "$OUT/summary.md"
