// The page's connection to the gateway: WebTransport when the browser has
// it and the gateway offers it, else WebSocket.  Both carry one
// PacketWrapper per message: a WebSocket binary message, or a WebTransport
// unidirectional stream (read to its FIN) or datagram (README.md,
// "Connecting from a browser"; PROTOCOL.md).
//
// Where the gateway is: by default the origin that served the page (the
// gateway serves it at /); `?gateway=host:port` or a full URL points a page
// served from elsewhere at a gateway.

/** A failed connection: message says what failed, diagnosis (if any) why, in words for people. */
export class TransportError extends Error {
  constructor(message, diagnosis = null) {
    super(message);
    this.diagnosis = diagnosis;
  }
}

const CONNECT_TIMEOUT_MS = 8000;

/**
 * The gateway's HTTP and WebSocket bases from the page location and an
 * optional `gateway` parameter ("host:port", "http(s)://host:port" or
 * "ws(s)://host:port").
 */
export function gatewayBase(location, param) {
  let http;
  if (!param) {
    http = location.origin;
  } else if (/^(https?|wss?):\/\//i.test(param)) {
    const u = new URL(param);
    const secure = u.protocol === "https:" || u.protocol === "wss:";
    http = (secure ? "https://" : "http://") + u.host;
  } else if (/^[A-Za-z0-9.\-]+:\d+$|^\[[0-9A-Fa-f:.]+\]:\d+$/.test(param)) {
    http = (location.protocol === "https:" ? "https://" : "http://") + param;
  } else {
    throw new TransportError(`gateway must be host:port or a URL, not "${param}"`);
  }
  return { http, ws: http.replace(/^http/, "ws") };
}

/** The lobby path for a user and room, or for a token. */
export function lobbyPath({ user, room, token }) {
  if (token) return "/lobby?token=" + encodeURIComponent(token);
  return "/lobby/" + encodeURIComponent(user) + "/" + encodeURIComponent(room);
}

const withTimeout = (promise, ms, what) => {
  let t;
  return Promise.race([
    promise.finally(() => clearTimeout(t)),
    new Promise((_, reject) => { t = setTimeout(() => reject(new TransportError(what + " timed out")), ms); }),
  ]);
};

/**
 * Why a connection to a lobby path failed, as a sentence.  A browser hides
 * the HTTP status of a refused WebSocket or WebTransport handshake, so ask
 * the gateway again with a plain GET of the same path.  vcgate answers it
 * as it would the upgrade: the refusal and its reason (400 for a bad name,
 * 401/403 for a bad token, 410 when tokens are required), or 426 (upgrade
 * required) when the URL itself is fine; then what refused the upgrade was
 * a limit or a full room, and the page says so.
 * A GET that gets no answer at all means the gateway is not reachable.
 * refused says whether the gateway answered.
 */
async function diagnose(base, path) {
  const where = base.http.replace(/^https?:\/\//, "");
  let r;
  try {
    r = await withTimeout(fetch(base.http + path, { cache: "no-store" }), 3000, "lobby check");
  } catch (e) {
    return { refused: false, text: `The gateway at ${where} does not answer.` };
  }
  if (r.status === 426 || r.ok) {
    const what = "a connection limit was reached or the room is full";
    return { refused: true, generic: true, text: `The gateway at ${where} did not let you join (${what}).` };
  }
  const body = (await r.text().catch(() => "")).trim() || r.statusText;
  return { refused: true, text: `The gateway refused to join: ${body} (HTTP ${r.status}).` };
}

// Packets that arrive before the call has set onpacket (between the
// session being ready and connect() returning to its caller: the relay's
// SESSION_ASSIGNED and the first room events, which on WebTransport come on
// streams that may be read in any order) are kept, at most EARLY_MAX of
// them, and handed over when onpacket is set, so none is lost.
const EARLY_MAX = 256;

class Transport {
  constructor(kind) {
    this.kind = kind;
    this.handler = null;
    this.early = [];
    this.onclose = null;
  }
  get onpacket() { return this.handler; }
  set onpacket(fn) {
    this.handler = fn;
    const early = this.early;
    this.early = [];
    if (fn) for (const b of early) fn(b);
  }
  deliver(bytes) {
    if (this.handler) this.handler(bytes);
    else if (this.early.length < EARLY_MAX) this.early.push(bytes);
  }
}

class WebSocketTransport extends Transport {
  constructor(ws) {
    super("websocket");
    this.ws = ws;
    ws.onmessage = (e) => {
      if (e.data instanceof ArrayBuffer) this.deliver(new Uint8Array(e.data));
    };
    ws.onclose = (e) => {
      if (this.onclose) this.onclose({ code: e.code, reason: e.reason || "connection closed" });
      this.onclose = null;
    };
  }
  /** Queue bytes; false when the socket is so far behind that droppable media should wait. */
  send(bytes, { droppable = false } = {}) {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    if (droppable && this.ws.bufferedAmount > 1 << 20) return false;
    this.ws.send(bytes);
    return true;
  }
  close() {
    this.onclose = null;
    try { this.ws.close(1000, "left the call"); } catch (e) { /* already closed */ }
  }
}

async function connectWebSocket(base, path) {
  const ws = new WebSocket(base.ws + path);
  ws.binaryType = "arraybuffer";
  try {
    await withTimeout(new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new TransportError("WebSocket connection failed"));
      ws.onclose = (e) => reject(new TransportError(`WebSocket closed before it opened (code ${e.code})`));
    }), CONNECT_TIMEOUT_MS, "WebSocket connection");
  } catch (e) {
    try { ws.close(); } catch (e2) { /* never opened */ }
    throw new TransportError(e.message, await diagnose(base, path));
  }
  return new WebSocketTransport(ws);
}

// Datagrams carry only small packets that may be lost without harm (RTT
// probes); everything else goes on its own stream, as the relay does.
const MAX_DATAGRAM = 1000;
// Streams in flight before droppable media waits (Chromium opens about
// 800 a second per tab; a burst over this means the path is congested).
const MAX_STREAMS_IN_FLIGHT = 96;

/**
 * fn(chunk) for every chunk of a ReadableStream until it ends or fails
 * (the session closed).  Returns the reader, to cancel.
 */
function eachChunk(readable, fn) {
  const reader = readable.getReader();
  (async () => {
    for (;;) {
      let r;
      try { r = await reader.read(); } catch (e) { return; }
      if (r.done) return;
      fn(r.value);
    }
  })();
  return reader;
}

class WebTransportTransport extends Transport {
  constructor(wt) {
    super("webtransport");
    this.wt = wt;
    this.inFlight = 0;
    this.dead = false;
    this.readers = [];
    this.dgramWriter = wt.datagrams.writable.getWriter();
    this.readStreams();
    this.readDatagrams();
    wt.closed.then((info) => this.closed(info?.closeCode ?? 0, info?.reason || "session closed"),
      (e) => this.closed(0, e?.message || "connection lost"));
  }
  closed(code, reason) {
    this.dead = true;
    for (const r of this.readers) r.cancel().catch(() => {});
    try { this.dgramWriter.releaseLock(); } catch (e) { /* writes pending: they fail with the session */ }
    if (this.onclose) this.onclose({ code, reason });
    this.onclose = null;
  }
  readStreams() {
    // Read each stream on its own: one slow stream must not hold up the next.
    this.readers.push(eachChunk(this.wt.incomingUnidirectionalStreams, (stream) => this.readStream(stream)));
  }
  async readStream(stream) {
    // The stream's own reader, not new Response(stream): the packet is
    // small, and a Response body over a stream that errors when the session
    // closes is one more thing that can go wrong in the browser.
    const reader = stream.getReader();
    const parts = [];
    let n = 0;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parts.push(value);
        n += value.length;
      }
    } catch (e) {
      return; // a stream reset by the server (session closing) carries no packet
    }
    const bytes = parts.length === 1 ? parts[0] : new Uint8Array(n);
    if (parts.length !== 1) {
      let off = 0;
      for (const p of parts) { bytes.set(p, off); off += p.length; }
    }
    this.deliver(bytes);
  }
  readDatagrams() {
    this.readers.push(eachChunk(this.wt.datagrams.readable, (d) => this.deliver(d)));
  }
  send(bytes, { datagram = false, droppable = false } = {}) {
    if (this.dead) return false;
    if (datagram && bytes.length <= MAX_DATAGRAM) {
      this.dgramWriter.write(bytes).catch(() => {});
      return true;
    }
    if (droppable && this.inFlight >= MAX_STREAMS_IN_FLIGHT) return false;
    this.inFlight++;
    (async () => {
      try {
        const s = await this.wt.createUnidirectionalStream();
        const w = s.getWriter();
        await w.write(bytes);
        await w.close();
      } catch (e) {
        // The session is closing; its closed promise reports why.
      } finally {
        this.inFlight--;
      }
    })();
    return true;
  }
  close() {
    this.onclose = null;
    try { this.wt.close({ closeCode: 1000, reason: "left the call" }); } catch (e) { /* already closed */ }
  }
}

const hexToBytes = (hex) => new Uint8Array(hex.match(/../g).map((b) => parseInt(b, 16)));

async function connectWebTransport(base, path) {
  if (typeof WebTransport !== "function") throw new TransportError("this browser has no WebTransport");
  let info;
  try {
    const r = await withTimeout(fetch(base.http + "/.well-known/vcgate/webtransport", { cache: "no-store" }),
      3000, "WebTransport discovery");
    if (!r.ok) throw new TransportError(`the gateway offers no WebTransport (HTTP ${r.status})`);
    info = await r.json();
  } catch (e) {
    throw e instanceof TransportError ? e : new TransportError("WebTransport discovery failed: " + e.message);
  }
  if (typeof info.lobby !== "string") throw new TransportError("WebTransport discovery gave no lobby URL");
  const opts = {};
  const hashes = (info.serverCertificateHashes || [])
    .filter((h) => h && h.algorithm === "sha-256" && /^[0-9a-fA-F]{64}$/.test(h.value))
    .map((h) => ({ algorithm: "sha-256", value: hexToBytes(h.value) }));
  if (hashes.length) opts.serverCertificateHashes = hashes;
  // info.lobby ends in /lobby; path starts with /lobby.
  const url = info.lobby.replace(/\/lobby$/, "") + path;
  // With serverCertificateHashes a browser checks the certificate against
  // the hashes only, and accepts only short-lived ECDSA certificates that
  // way.  A gateway with a CA-signed certificate publishes its hash too;
  // on an https page (where such a certificate is likely) try without the
  // hashes as well.
  const tries = [opts];
  if (opts.serverCertificateHashes && location.protocol === "https:") tries.push({});
  let last;
  for (const o of tries) {
    let wt;
    try {
      wt = new WebTransport(url, o);
    } catch (e) {
      throw new TransportError("WebTransport URL refused: " + e.message);
    }
    wt.closed.catch(() => {}); // observed by the transport once it opens
    try {
      await withTimeout(wt.ready, CONNECT_TIMEOUT_MS, "WebTransport connection");
      return new WebTransportTransport(wt);
    } catch (e) {
      try { wt.close(); } catch (e2) { /* never opened */ }
      last = e;
    }
  }
  throw new TransportError("WebTransport connection failed" + (last.message ? ": " + last.message : ""),
    await diagnose(base, path));
}

/**
 * Connect by mode "auto" (WebTransport, falling back to WebSocket), "wt"
 * or "ws".  Resolves to a transport {kind, send(bytes, opts), close(),
 * onpacket, onclose}; rejects with a TransportError whose message says why
 * in a sentence and then what each attempt got.
 */
export async function connect({ base, path, mode = "auto", log = () => {} }) {
  const attempts = [];
  const failed = (diagnosis) => {
    const why = diagnosis ? diagnosis.text : "Could not connect to the gateway.";
    return new TransportError(`${why} (${attempts.join("; ")})`, diagnosis);
  };
  if (mode === "auto" || mode === "wt") {
    try {
      return await connectWebTransport(base, path);
    } catch (e) {
      log("WebTransport: " + e.message);
      attempts.push("WebTransport: " + e.message);
      // A refusal that names its reason (a bad name, a bad token) is the
      // same on both transports: do not try the other one.
      const d = e.diagnosis;
      if (mode === "wt" || (d && d.refused && !d.generic)) throw failed(d);
    }
  }
  try {
    return await connectWebSocket(base, path);
  } catch (e) {
    log("WebSocket: " + e.message);
    attempts.push("WebSocket: " + e.message);
    throw failed(e.diagnosis);
  }
}
