#!/usr/bin/env bash
# Where a relay's CPU goes while it fans frames out: starts the relay, drives it with
# `vswa-bench fanout`, samples it with `perf record` for the middle of the run, and
# writes the flat profile (kernel / user split, top symbols) and a grouping of the
# samples by what they are for (copying into sockets, the rest of TCP, waking and
# switching tasks, tokio, metrics, the hub, allocation).
#
#   bench/profile.sh                          500 and 1000 viewers x 25 000 B, vswa-relay
#   VIEWERS="500" BYTES=100000 bench/profile.sh
#   RELAY_BIN=/tmp/old-vswa-relay LABEL=before bench/profile.sh
#
# Env: VIEWERS (list), BYTES, FPS, SECONDS_RUN (s of frames), RELAY_BIN, LABEL, OUT.
# Needs perf (Debian's linux-perf); works without kernel symbols (they show as
# addresses) but reads best with them.
set -euo pipefail
cd "$(dirname "$0")/.."
VIEWERS=${VIEWERS:-500 1000}
BYTES=${BYTES:-25000}
FPS=${FPS:-30}
SECONDS_RUN=${SECONDS_RUN:-10}
LABEL=${LABEL:-vswa-relay}
OUT=${OUT:-bench/results/profile}
command -v perf >/dev/null || { echo "profile.sh: needs perf (apt-get install linux-perf)" >&2; exit 1; }
if [ -z "${RELAY_BIN:-}" ]; then
    cargo build --release -q -p vswa-relay -p vswa-bench
fi
TARGET=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
RELAY=${RELAY_BIN:-$TARGET/release/vswa-relay}
BENCH=$TARGET/release/vswa-bench
[ -x "$BENCH" ] || cargo build --release -q -p vswa-bench
ulimit -n "$(ulimit -Hn)" || true
mkdir -p "$OUT"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

for n in $VIEWERS; do
    P=$(port)
    RUST_LOG=warn "$RELAY" --listen "127.0.0.1:$P" >/dev/null 2>&1 &
    RPID=$!
    for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$P") 2>/dev/null && break; sleep 0.1; done
    "$BENCH" fanout --url "ws://127.0.0.1:$P" --viewers "$n" --frame-bytes "$BYTES" --fps "$FPS" \
        --duration "$SECONDS_RUN" --relay-pid "$RPID" >"$OUT/$LABEL-${n}x$BYTES.fanout.txt" 2>&1 &
    BPID=$!
    # Sample the middle of the run: after connecting and warm-up, before the tail.
    sleep $(( n / 250 + 3 ))
    perf record -q -F 999 -g -p "$RPID" -o "$OUT/$LABEL-${n}x$BYTES.data" -- sleep 5 2>/dev/null
    wait "$BPID" || true
    kill "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null || true
    report=$OUT/$LABEL-${n}x$BYTES.txt
    {
        echo "# perf record -F 999 -g -p <$LABEL> -- sleep 5, during vswa-bench fanout --viewers $n --frame-bytes $BYTES --fps $FPS"
        grep -E "delivered|p99|cpu" "$OUT/$LABEL-${n}x$BYTES.fanout.txt" | head -5 | sed 's/^/# /'
        perf report -i "$OUT/$LABEL-${n}x$BYTES.data" --no-children --sort dso --stdio 2>/dev/null |
            grep -E '^ +[0-9]' | head -6
        echo
        perf report -i "$OUT/$LABEL-${n}x$BYTES.data" --no-children --sort sym --stdio -g none 2>/dev/null |
            grep -E '^ +[0-9]' >"$report.syms"
        python3 - "$report.syms" <<'EOF'
import re, sys
groups = [
    ("copy into sockets", r"copy_from_iter|copy_user|memcpy_orig|rep_movs"),
    ("TCP/IP send and receive", r"tcp_|ip_|__ip|inet_|skb|__dev_queue|loopback|netif|__netif|net_rx|sock_|__sys_sendto|sendmsg|__sys_recv|recvmsg|_raw_spin|lock_sock|release_sock|__release_sock|fdget|__fdget|dst_|nf_|__napi|process_backlog|__local_bh|do_softirq|__do_softirq|sk_|__sk|kmem_cache|kfree|__kmalloc|kmalloc|__alloc_skb|page_frag|__list|napi_"),
    ("waking and switching (kernel)", r"try_to_wake_up|wake_up|__wake|ttwu|schedule|finish_task_switch|futex|enqueue|dequeue|select_task|update_curr|pick_next|__switch_to|native_queued|psi_|syscall_exit|entry_SYSCALL|do_syscall|syscall_return|ep_|epoll|__x64_sys"),
    ("tokio runtime", r"tokio::runtime|tokio::sync|tokio::task|tokio::io|ScheduledIo|Registration|mio::"),
    ("metrics", r"metrics"),
    ("hub and sessions", r"vswa_relay|vswa_protocol|try_next|next_direct|write_through|fan_out|viewer_session|write_counted"),
    ("allocation", r"malloc|free|realloc|cfree|_int_|alloc::"),
]
tot = {}
other = 0.0
for line in open(sys.argv[1]):
    m = re.match(r"\s*([\d.]+)%\s+\[(.)\]\s+(.*)", line)
    if not m:
        continue
    pct, kind, sym = float(m.group(1)), m.group(2), m.group(3)
    for name, rx in groups:
        if re.search(rx, sym):
            tot[name] = tot.get(name, 0) + pct
            break
    else:
        other += pct
print("| what | share of the relay's samples |")
print("|---|---:|")
for name, _ in groups:
    print(f"| {name} | {tot.get(name, 0):.1f}% |")
print(f"| other | {other:.1f}% |")
EOF
        echo
        echo "top symbols:"
        head -40 "$report.syms"
    } >"$report"
    rm -f "$report.syms"
    echo "profile.sh: wrote $report" >&2
done
