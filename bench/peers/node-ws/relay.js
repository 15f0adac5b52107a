// Peer relay for bench/compare.sh: the jsmpeg websocket-relay pattern on the `ws` package.
// One publisher per stream (/ws/publish/NAME); every binary message it sends goes out
// unchanged to every open viewer (/ws/watch/NAME) with client.send(data).
// Usage: node relay.js [PORT]  (or PORT=... ; listens on 127.0.0.1, or on HOST=...)
'use strict';
const http = require('http');
const WebSocket = require('ws');

const port = Number(process.argv[2] || process.env.PORT || 8081);
const host = process.env.HOST || '127.0.0.1';
const viewers = new Map(); // stream name -> Set of sockets

const server = http.createServer((req, res) => {
  res.writeHead(404);
  res.end('not found\n');
});
const wss = new WebSocket.Server({ noServer: true, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 });

server.on('upgrade', (req, socket, head) => {
  const m = /^\/ws\/(publish|watch)\/([A-Za-z0-9_-]{1,64})$/.exec(req.url.split('?')[0]);
  if (!m) {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    const [, role, name] = m;
    if (role === 'watch') {
      if (!viewers.has(name)) viewers.set(name, new Set());
      const set = viewers.get(name);
      set.add(ws);
      ws.on('close', () => set.delete(ws));
      ws.on('error', () => set.delete(ws));
    } else {
      ws.on('message', (data, isBinary) => {
        const set = viewers.get(name);
        if (!set) return;
        set.forEach((client) => {
          if (client.readyState === WebSocket.OPEN) {
            client.send(data, { binary: isBinary });
          }
        });
      });
    }
  });
});

server.listen(port, host, () => {
  console.error(`node-ws relay listening on ws://${host}:${port}`);
});
