"""Peer relay for bench/compare.sh: one publisher per stream, websockets.broadcast to viewers.

Routes /ws/publish/NAME and /ws/watch/NAME; binary messages go out unchanged.
Usage: python3 relay.py [PORT]  (or PORT=...; listens on 127.0.0.1)
"""
import asyncio
import os
import re
import sys

import websockets

ROUTE = re.compile(r"^/ws/(publish|watch)/([A-Za-z0-9_-]{1,64})$")
viewers: dict[str, set] = {}


def request_path(ws) -> str:
    # websockets >= 14 (new asyncio server) has ws.request.path; legacy has ws.path.
    req = getattr(ws, "request", None)
    return (req.path if req is not None else ws.path).split("?")[0]


async def handler(ws):
    m = ROUTE.match(request_path(ws))
    if not m:
        await ws.close(1008, "unknown route")
        return
    role, name = m.groups()
    if role == "watch":
        conns = viewers.setdefault(name, set())
        conns.add(ws)
        try:
            await ws.wait_closed()
        finally:
            conns.discard(ws)
    else:
        async for message in ws:
            conns = viewers.get(name)
            if conns:
                websockets.broadcast(conns, message)


async def main():
    port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT", "8082"))
    async with websockets.serve(
        handler, "127.0.0.1", port, max_size=16 * 1024 * 1024, compression=None
    ):
        print(f"python-websockets relay listening on ws://127.0.0.1:{port}", file=sys.stderr)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
