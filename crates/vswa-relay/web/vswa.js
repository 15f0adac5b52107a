// vswa.js — the VSWA wire format (docs/PROTOCOL.md, section 1) for browsers and Node:
// parse and build the 32-byte big-endian frame header, plus small URL helpers shared by
// the pages. No DOM access at module top level, so Node can import it for tests.

export const MAGIC = new Uint8Array([0x56, 0x53, 0x57, 0x41]); // "VSWA"
export const VERSION = 1;
export const HEADER_LEN = 32;
export const CODEC_JPEG = 1;
export const FLAGS = Object.freeze({ KEYFRAME: 1, END_OF_STREAM: 2, PLACEHOLDER: 4 });
export const KNOWN_FLAGS = FLAGS.KEYFRAME | FLAGS.END_OF_STREAM | FLAGS.PLACEHOLDER;
export const STREAM_NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;

function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('frame must be an ArrayBuffer or a typed array');
}

/** Parse exactly one frame (one WebSocket binary message). Throws Error on invalid input. */
export function parseFrame(data) {
  const bytes = toBytes(data);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.byteLength;
  // Check fields in wire order as soon as their bytes are available.
  for (let i = 0; i < 4 && i < n; i++) {
    if (bytes[i] !== MAGIC[i]) throw new Error('bad magic: frame does not start with "VSWA"');
  }
  if (n > 4 && bytes[4] !== VERSION) throw new Error(`unsupported version ${bytes[4]} (expected ${VERSION})`);
  if (n > 5 && bytes[5] !== CODEC_JPEG) throw new Error(`unknown codec ${bytes[5]}`);
  if (n >= 8) {
    const flags = dv.getUint16(6);
    if (flags & ~KNOWN_FLAGS) throw new Error(`reserved flags set: 0x${flags.toString(16).padStart(4, '0')}`);
  }
  if (n < HEADER_LEN) throw new Error(`truncated: ${n} bytes, a header needs ${HEADER_LEN}`);
  const header = {
    codec: bytes[5],
    flags: dv.getUint16(6),
    payloadLen: dv.getUint32(8),
    width: dv.getUint16(12),
    height: dv.getUint16(14),
    sequence: dv.getBigUint64(16),
    timestampUs: dv.getBigUint64(24),
  };
  const total = HEADER_LEN + header.payloadLen;
  if (n < total) throw new Error(`truncated: payload needs ${header.payloadLen} bytes, got ${n - HEADER_LEN}`);
  if (n > total) throw new Error(`trailing bytes: ${n - total} bytes after the frame`);
  return { header, payload: bytes.subarray(HEADER_LEN, total) };
}

/** Build one frame (header + payload) as a Uint8Array. Codec is always JPEG. */
export function buildFrame({ sequence = 0, timestampUs = 0, width = 0, height = 0, flags = FLAGS.KEYFRAME } = {}, payload = new Uint8Array(0)) {
  const body = toBytes(payload);
  if (flags & ~KNOWN_FLAGS) throw new Error(`reserved flags set: 0x${flags.toString(16)}`);
  const out = new Uint8Array(HEADER_LEN + body.byteLength);
  const dv = new DataView(out.buffer);
  out.set(MAGIC, 0);
  dv.setUint8(4, VERSION);
  dv.setUint8(5, CODEC_JPEG);
  dv.setUint16(6, flags);
  dv.setUint32(8, body.byteLength);
  dv.setUint16(12, width);
  dv.setUint16(14, height);
  dv.setBigUint64(16, BigInt(sequence));
  dv.setBigUint64(24, BigInt(timestampUs));
  out.set(body, HEADER_LEN);
  return out;
}

/** WebSocket URL for a relay path like "/ws/watch/demo", with ?token= if given. */
export function wsUrl(path, token, loc = globalThis.location) {
  const secure = loc && loc.protocol === 'https:';
  const host = loc ? loc.host : 'localhost:8080';
  let url = `${secure ? 'wss' : 'ws'}://${host}${path}`;
  if (token) url += `${path.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
  return url;
}

/** Stream name = last non-empty segment of the page path (/view/demo -> "demo"). */
export function streamFromPath(pathname = globalThis.location ? globalThis.location.pathname : '') {
  const parts = pathname.split('/').filter(Boolean);
  return parts.length ? decodeURIComponent(parts[parts.length - 1]) : '';
}

/** The ?token= value of the page URL, or "" if absent. */
export function tokenFromQuery(search = globalThis.location ? globalThis.location.search : '') {
  return new URLSearchParams(search).get('token') || '';
}

/** Append ?token=/&token= to a same-origin HTTP path when a token is set. */
export function withToken(path, token) {
  if (!token) return path;
  return `${path}${path.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
}

/** Exponential backoff in ms for attempt 0,1,2,...: 500 ms doubling up to 10 s, with jitter. */
export function backoffMs(attempt) {
  const base = Math.min(10000, 500 * 2 ** Math.min(attempt, 5));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

// Clock synchronisation with the relay (docs/PROTOCOL.md, "Clock synchronisation"), the
// same rules as the Rust ClockSync: a burst of BURST `time` exchanges at connect (each
// as soon as the previous one is answered, or after TIMEOUT_MS), then one every
// INTERVAL_MS; the estimate is the lowest-RTT sample of the last WINDOW_MS. Times are
// microseconds since the UNIX epoch as Numbers (exact below 2^53, i.e. until year 2255).
export class ClockSync {
  static BURST = 4;
  static INTERVAL_MS = 10000;
  static TIMEOUT_MS = 1000;
  static WINDOW_MS = 60000;
  static MAX_SAMPLES = 8;

  constructor() { this.reset(); }

  reset() {
    this.samples = []; // { offsetUs, rttUs, atUs }
    this.pending = new Set(); // t0 of unanswered requests
    this.sent = 0;
    this.lastSentUs = 0;
    this.answered = true;
  }

  // Whether a request is due at local time nowUs.
  due(nowUs) {
    if (this.sent === 0) return true;
    const since = nowUs - this.lastSentUs;
    if (this.sent < ClockSync.BURST) return this.answered || since >= ClockSync.TIMEOUT_MS * 1000;
    return since >= ClockSync.INTERVAL_MS * 1000;
  }

  // The request to send now (a JSON string).
  request(nowUs) {
    const t0 = Math.round(nowUs);
    this.pending.add(t0);
    if (this.pending.size > 8) this.pending.delete(this.pending.values().next().value);
    this.sent++;
    this.lastSentUs = t0;
    this.answered = false;
    return JSON.stringify({ type: 'time', t0 });
  }

  // Takes a parsed `time` response that arrived at local time nowUs; returns the new
  // sample, or null if it answers no request of ours or its times are inconsistent.
  onResponse(msg, nowUs) {
    const { t0, t1, t2 } = msg;
    if (![t0, t1, t2].every(Number.isSafeInteger) || !this.pending.delete(t0)) return null;
    const t3 = Math.round(nowUs);
    const rttUs = (t3 - t0) - (t2 - t1);
    if (t3 < t0 || t2 < t1 || rttUs < 0) return null;
    this.answered = true;
    const sample = { offsetUs: Math.floor(((t1 - t0) + (t2 - t3)) / 2), rttUs, atUs: t3 };
    this.samples.push(sample);
    this.samples = this.samples.filter((s) => t3 - s.atUs <= ClockSync.WINDOW_MS * 1000).slice(-ClockSync.MAX_SAMPLES);
    return sample;
  }

  // The lowest-RTT recent sample (newest of equals), or null.
  best() {
    let best = null;
    for (const s of this.samples) if (!best || s.rttUs <= best.rttUs) best = s;
    return best;
  }

  // A frame's capture timestamp (publisher clock, µs) on the local clock, given the
  // publisher's `clock` message; null until both offsets are known.
  captureToLocal(timestampUs, publisherClock) {
    const best = this.best();
    if (!best || !publisherClock || !Number.isSafeInteger(publisherClock.publisher_offset_us)) return null;
    return Number(timestampUs) + publisherClock.publisher_offset_us - best.offsetUs;
  }
}

// This machine's clock in µs since the UNIX epoch, sub-millisecond where the browser
// allows.
export function nowUs() {
  return (globalThis.performance ? performance.timeOrigin + performance.now() : Date.now()) * 1000;
}
