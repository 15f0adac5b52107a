#!/usr/bin/env bash
# The slow-link run (crates/vswa-relay/tests/slow_link.rs) against vswa-relay and the
# Node `ws` peer relay: one viewer in a network namespace behind a 5 Mbit/s tbf link on
# a 19.2 Mbit/s stream, one viewer on the host. Prints each relay's figures (the test
# prints them; against the peer it only reports). Needs root and iproute2.
#
#   bench/slow_link.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d bench/peers/node-ws/node_modules/ws ]; then
    (cd bench/peers/node-ws && npm install --no-audit --no-fund --silent)
fi
for relay in vswa-relay node-ws; do
    echo "== $relay"
    VSWA_SLOW_LINK_RELAY=$relay cargo test -q -p vswa-relay --test slow_link -- --nocapture 2>&1 |
        grep -E "published|benchmark mode|panicked" || true
done
