// vswa.js — the VSWA wire format (docs/PROTOCOL.md, section 1) for browsers and Node:
// parse and build the 32-byte big-endian frame header, the H.264 (Annex B) helpers the
// pages need for WebCodecs, plus small URL helpers shared by the pages. No DOM access at
// module top level, so Node can import it for tests.

export const MAGIC = new Uint8Array([0x56, 0x53, 0x57, 0x41]); // "VSWA"
export const VERSION = 1;
export const HEADER_LEN = 32;
export const CODEC_JPEG = 1;
export const CODEC_H264 = 2;
/** Codec ids this implementation knows, with the short names the pages show. */
export const CODEC_NAMES = Object.freeze({ [CODEC_JPEG]: 'jpeg', [CODEC_H264]: 'h264' });
export const FLAGS = Object.freeze({ KEYFRAME: 1, END_OF_STREAM: 2, PLACEHOLDER: 4 });
export const KNOWN_FLAGS = FLAGS.KEYFRAME | FLAGS.END_OF_STREAM | FLAGS.PLACEHOLDER;
export const STREAM_NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;

/** Whether `codec` is a codec id of docs/PROTOCOL.md that this module knows. */
export function isKnownCodec(codec) {
  return codec === CODEC_JPEG || codec === CODEC_H264;
}

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
  if (n > 5 && !isKnownCodec(bytes[5])) throw new Error(`unknown codec ${bytes[5]}`);
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

/** Build one frame (header + payload) as a Uint8Array; codec defaults to JPEG. */
export function buildFrame({ codec = CODEC_JPEG, sequence = 0, timestampUs = 0, width = 0, height = 0, flags = FLAGS.KEYFRAME } = {}, payload = new Uint8Array(0)) {
  const body = toBytes(payload);
  if (!isKnownCodec(codec)) throw new Error(`unknown codec ${codec}`);
  if (flags & ~KNOWN_FLAGS) throw new Error(`reserved flags set: 0x${flags.toString(16)}`);
  const out = new Uint8Array(HEADER_LEN + body.byteLength);
  const dv = new DataView(out.buffer);
  out.set(MAGIC, 0);
  dv.setUint8(4, VERSION);
  dv.setUint8(5, codec);
  dv.setUint16(6, flags);
  dv.setUint32(8, body.byteLength);
  dv.setUint16(12, width);
  dv.setUint16(14, height);
  dv.setBigUint64(16, BigInt(sequence));
  dv.setBigUint64(24, BigInt(timestampUs));
  out.set(body, HEADER_LEN);
  return out;
}

// ---- H.264 access units (docs/PROTOCOL.md, "Codec 2: H.264") ----
//
// A codec-2 payload is one access unit in Annex B form: NAL units, each after a start
// code (00 00 01 or 00 00 00 01). WebCodecs decodes it as it is; these helpers find what
// the pages need to know about it without decoding it.

/** NAL unit types the pages look at. */
export const NAL = Object.freeze({ SLICE: 1, IDR: 5, SEI: 6, SPS: 7, PPS: 8, AUD: 9 });

/**
 * The NAL units of an Annex B buffer, in order: `{ type, data }` with `data` the unit
 * from its header byte on, without the start code and without the zero bytes that may
 * pad it before the next start code. Bytes before the first start code are ignored.
 */
export function nalUnits(accessUnit) {
  const b = toBytes(accessUnit);
  const units = [];
  // Offset just past the next start code at or after i, or -1.
  const next = (i) => {
    for (; i + 2 < b.length; i++) {
      if (b[i + 2] > 1) i += 2; // neither of the next three bytes can start 00 00 01
      else if (b[i] === 0 && b[i + 1] === 0 && b[i + 2] === 1) return i + 3;
    }
    return -1;
  };
  let start = next(0);
  while (start !== -1) {
    const following = next(start);
    let end = following === -1 ? b.length : following - 3;
    while (end > start && b[end - 1] === 0) end--;
    if (end > start) units.push({ type: b[start] & 0x1f, data: b.subarray(start, end) });
    start = following;
  }
  return units;
}

/** The first sequence parameter set (NAL type 7) of an access unit, or null. */
export function findSps(accessUnit) {
  const sps = nalUnits(accessUnit).find((u) => u.type === NAL.SPS);
  return sps ? sps.data : null;
}

/**
 * The RFC 6381 codec string `avc1.PPCCLL` for profile_idc, the constraint-flags byte and
 * level_idc (each 0-255), e.g. (0x42, 0xc0, 0x1e) -> "avc1.42C01E".
 */
export function avc1String(profileIdc, constraintFlags, levelIdc) {
  const hex2 = (v) => {
    if (!Number.isInteger(v) || v < 0 || v > 255) throw new RangeError(`not a byte: ${v}`);
    return v.toString(16).toUpperCase().padStart(2, '0');
  };
  return `avc1.${hex2(profileIdc)}${hex2(constraintFlags)}${hex2(levelIdc)}`;
}

/**
 * The WebCodecs codec string of an access unit's SPS: the three bytes after the SPS's
 * NAL header are profile_idc, the constraint flags and level_idc (never escaped). Null
 * when the access unit has no SPS or it is too short.
 */
export function avc1CodecString(accessUnit) {
  const sps = findSps(accessUnit);
  return sps && sps.length >= 4 ? avc1String(sps[1], sps[2], sps[3]) : null;
}

/** Whether the access unit holds an IDR slice (NAL type 5): KEYFRAME in VSWA terms. */
export function hasIdrSlice(accessUnit) {
  return nalUnits(accessUnit).some((u) => u.type === NAL.IDR);
}

/** Whether the access unit carries both an SPS and a PPS, as a VSWA keyframe must. */
export function hasParameterSets(accessUnit) {
  const types = new Set(nalUnits(accessUnit).map((u) => u.type));
  return types.has(NAL.SPS) && types.has(NAL.PPS);
}

// H.264 levels (ITU-T H.264 Table A-1): level_idc, most macroblocks per frame, most
// macroblocks per second.
const AVC_LEVELS = [
  [30, 1620, 40500], [31, 3600, 108000], [32, 5120, 216000], [40, 8192, 245760],
  [41, 8192, 245760], [42, 8704, 522240], [50, 22080, 589824], [51, 36864, 983040],
  [52, 36864, 2073600],
];

/**
 * The Constrained Baseline codec string for encoding `width`x`height` at `fps`:
 * `avc1.42E01F` (level 3.1, up to 1280x720 at 30 fps), or the lowest higher level that
 * fits the picture and rate (browsers refuse a size above the level's limit). Null if
 * no level fits.
 */
export function baselineCodecFor(width, height, fps = 30) {
  const mbs = Math.ceil(width / 16) * Math.ceil(height / 16);
  const level = AVC_LEVELS.find(([idc, maxFs, maxMbps]) => idc >= 31 && mbs <= maxFs && mbs * fps <= maxMbps);
  return level ? avc1String(0x42, 0xe0, level[0]) : null;
}

/**
 * Which H.264 frames a live viewer hands its decoder. It starts at a keyframe, and when
 * it falls behind (more than `maxQueue` chunks waiting in the decoder) or after a
 * decoder error (`resync`) it drops every delta frame up to the next keyframe: a delta
 * frame is only decodable after the frames it refers to. `admit` returns 'decode',
 * 'drop', or 'reset' (a keyframe arrived while the decoder still holds too many chunks:
 * discard those, they are older, and decode this one).
 *
 * A viewer that (re)joins gets the current GOP from the relay as one burst: its keyframe
 * and the frames since. After a resync with `burst: true` (start, reconnect) the decoder
 * may therefore hold up to `maxBurst` chunks until its queue has drained once (or for
 * `maxBurst` frames): decoding through the burst reaches the live picture sooner than
 * waiting up to a keyframe interval for the next keyframe.
 *
 * A sequence gap alone is no reason to drop (PROTOCOL.md, "Dropping"): senders drop
 * before encoding, and a relay that drops encoded frames resumes at a keyframe.
 */
export class KeyframeGate {
  constructor({ maxQueue = 3, maxBurst = 60 } = {}) {
    this.maxQueue = maxQueue;
    this.maxBurst = maxBurst;
    this.resync('start', { burst: true });
  }

  /** Wait for the next keyframe; `reason` says why (for stats), `burst` that the relay
   * will send a GOP burst from it (a new viewer connection). */
  resync(reason, { burst = false } = {}) {
    this.waiting = true;
    this.expectBurst = burst;
    this.burst = null; // { grew, frames } while decoding through a GOP burst
    this.reason = reason;
  }

  /** Decides for one frame, given whether it is a keyframe and the decoder's queue size. */
  admit(keyframe, queueSize = 0) {
    if (this.burst) {
      // Over once the queue has drained after growing, or after maxBurst frames.
      if (queueSize > this.maxQueue) this.burst.grew = true;
      else if (this.burst.grew) this.burst = null;
      if (this.burst && ++this.burst.frames > this.maxBurst) this.burst = null;
    }
    const limit = this.burst ? this.maxBurst : this.maxQueue;
    if (keyframe) {
      if (this.waiting && this.expectBurst) this.burst = { grew: false, frames: 0 };
      this.waiting = false;
      this.expectBurst = false;
      this.reason = '';
      return queueSize > limit ? 'reset' : 'decode';
    }
    if (this.waiting) return 'drop';
    if (queueSize > limit) {
      this.resync('behind');
      return 'drop';
    }
    return 'decode';
  }
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
