// The reference relay for contrib/bench: what a user would write with the
// `ws` npm package instead of vcgate.  Same path (/lobby/{user}/{room}) and
// the same forwarding rule: every binary message goes to every other client
// in the room, never back to its sender.  It sends nothing else (no
// SESSION_ASSIGNED / MEETING packets), has no drop policy (ws buffers
// without bound) and no limits: it is the baseline, not a product.
//
//   node ws-relay.js [--host 127.0.0.1] [--port 8090]
'use strict';
const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

const args = process.argv.slice(2);
function opt(name, def) {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
}
const host = opt('--host', '127.0.0.1');
const port = Number(opt('--port', '8090'));

const rooms = new Map(); // room name -> Set of sockets

const server = http.createServer((req, res) => {
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('not found');
});
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 1 << 20 });

server.on('upgrade', (req, socket, head) => {
  const m = /^\/lobby\/([^/?]+)\/([^/?]+)$/.exec(req.url.split('?')[0]);
  if (!m) {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found');
    return;
  }
  const room = decodeURIComponent(m[2]);
  wss.handleUpgrade(req, socket, head, (ws) => {
    let members = rooms.get(room);
    if (!members) rooms.set(room, (members = new Set()));
    members.add(ws);
    ws.on('message', (data, isBinary) => {
      if (!isBinary) return;
      for (const peer of members) {
        if (peer !== ws && peer.readyState === WebSocket.OPEN) peer.send(data, { binary: true });
      }
    });
    ws.on('close', () => {
      members.delete(ws);
      if (members.size === 0) rooms.delete(room);
    });
    ws.on('error', () => {});
  });
});

server.listen(port, host, () => {
  console.error(`ws-relay listening on ws://${host}:${port}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
