#!/usr/bin/env bash
# Codec figures next to libjpeg-turbo's tjbench: the relay's --demo test pattern at
# 640x480, 1280x720 and 1920x1080 is captured once (vswa-recv, 1 frame), decoded to PPM
# with djpeg, and compressed by tjbench (quality 80, 4:2:0, like vswa-send's default).
# Then the criterion codec bench runs. Output: bench/results/codec/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/codec}
mkdir -p "$OUT"
command -v tjbench >/dev/null || apt-get install -y -q libjpeg-turbo-progs >/dev/null
cargo build --release -q -p vswa-relay -p vswa-recv
T=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release
for size in 640x480 1280x720 1920x1080; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$T/vswa-relay" --listen "127.0.0.1:$port" --demo --demo-size "$size" >/dev/null 2>&1 &
    pid=$!
    sleep 1
    "$T/vswa-recv" --url "ws://127.0.0.1:$port/ws/watch/demo" --count 1 --mjpeg "$OUT/pattern-$size.jpg" >/dev/null 2>&1 || true
    kill "$pid"; wait "$pid" 2>/dev/null || true
    djpeg -pnm "$OUT/pattern-$size.jpg" >"$OUT/pattern-$size.ppm"
    # -benchtime 2: seconds per measurement; -quiet: tabular output; -nowrite: no output images.
    (cd "$OUT" && tjbench "pattern-$size.ppm" 80 -subsamp 420 -benchtime 2 -warmup 1 -quiet -nowrite) | tee "$OUT/tjbench-$size.txt"
done
FEATURES=$(pkg-config --exists libturbojpeg && echo --features=turbojpeg || true)
cargo bench -q $FEATURES --bench codec -- --warm-up-time 1 --measurement-time 3 2>&1 | tee "$OUT/criterion-codec.txt"
