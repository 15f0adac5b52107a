// view.js — the web viewer: connects to /ws/watch/{stream} and draws each frame on
// <canvas id="video">. JPEG frames decode with createImageBitmap; H.264 frames (codec 2)
// with WebCodecs' VideoDecoder, where the browser has it (a secure context: https or
// localhost) — otherwise the page says so in one line and JPEG streams still play.
// Never builds a backlog: while a JPEG decodes only the newest pending one is kept (the
// replaced ones count as dropped, as do sequence gaps); each decoded H.264 picture is
// drawn at once and closed, and when the decoder falls behind (or fails) the page drops
// delta frames up to the next keyframe. Shows fps/latency/resolution/codec/bitrate/drops/
// state in #overlay, reconnects with backoff, and exposes window.vswaStats for tests.
//
// Latency is glass-to-glass as far as this page can see: from the frame's capture
// timestamp to the moment it is drawn, with the capture time moved onto this machine's
// clock by clock sync (this page's `time` exchange with the relay and the publisher's
// `clock`), so it is right however far apart the three clocks are. A frame older than
// the relay's ceiling (hello's max_latency_ms) is never drawn. H.264 chunks carry the
// capture timestamp as their WebCodecs timestamp, so each decoded picture maps back to
// its frame.
import {
  parseFrame, FLAGS, CODEC_H264, CODEC_NAMES, avc1CodecString, KeyframeGate, wsUrl, streamFromPath,
  tokenFromQuery, withToken, backoffMs, STREAM_NAME_RE, ClockSync, nowUs,
} from './vswa.js';

const stream = streamFromPath();
const token = tokenFromQuery();
const $ = (id) => document.getElementById(id);
const canvas = $('video');
const ctx = canvas.getContext('2d');

const stats = {
  frames: 0, // frames drawn
  received: 0, // binary frames received
  fps: 0,
  latencyMs: null, // capture -> drawn, clock-corrected when clockSynced
  rawLatencyMs: null, // the same frame, from its timestamp as stamped (no correction)
  clockSynced: false,
  rttMs: null, // round trip of the clock sample in use
  late: 0, // frames not drawn because older than maxLatencyMs
  maxLatencyMs: null,
  latencyHistory: [], // last LATENCY_HISTORY latencies, for the sparkline
  width: 0,
  height: 0,
  dropped: 0, // local replacements + sequence gaps + H.264 frames skipped to a keyframe
  droppedLocal: 0,
  droppedGaps: 0,
  droppedDecoder: 0, // H.264: delta frames dropped up to a keyframe, or lost in the decoder
  invalid: 0,
  codec: null, // 'jpeg' or 'h264': the codec of the last frame received
  kbps: 0, // received bitrate (whole frames) over the last 2 s
  streamCodec: null, // H.264: the codec string of the last keyframe's SPS (avc1.PPCCLL)
  decoderCodec: null, // H.264: the codec string the VideoDecoder is configured with
  decodeErrors: 0, // H.264: errors the VideoDecoder reported
  lastDecodeError: '',
  undecodable: 0, // H.264 frames this browser cannot decode (no WebCodecs, unsupported)
  unsupported: '', // the one-line reason this browser cannot show the stream, or ''
  sequence: null,
  placeholder: false,
  state: 'connecting',
  message: '',
};
window.vswaStats = stats;

let ws = null;
let attempt = 0; // consecutive failed connection attempts
let failedBeforeHello = 0; // consecutive closes (1006 etc.) before any hello
let gotHello = false;
let fatal = false;
let retryTimer = null;
let countdownTimer = null;
let lastSeq = null;
let pending = null;
let decoding = false;
const drawTimes = []; // ms timestamps of drawn frames, last second
const recvLog = []; // { t, bytes } of frames received in the last 2 s, for the bitrate
const sync = new ClockSync();
let publisherClock = null; // the publisher's `clock`, as the relay forwards it
const LATENCY_HISTORY = 120;

function setState(state, message = '') {
  stats.state = state;
  stats.message = message;
  const banner = $('banner');
  const showBanner = state !== 'live' || stats.frames === 0 || Boolean(stats.unsupported);
  banner.textContent = showBanner ? bannerText() : '';
  banner.classList.toggle('hidden', !showBanner);
  $('stage').classList.toggle('stale', state !== 'live');
  const msg = $('message');
  msg.textContent = message;
  msg.className = 'message' + (state.startsWith('error') ? ' error' : state.startsWith('reconnecting') ? ' warn' : '');
  const badge = $('live-badge');
  badge.textContent = state === 'live' ? 'live' : state === 'ended' ? 'ended' : 'offline';
  badge.classList.toggle('live', state === 'live');
  renderOverlay();
}

function bannerText() {
  if (stats.unsupported && stats.state === 'live') return 'H.264 stream: this browser cannot show it (see below)';
  switch (stats.state) {
    case 'live': return 'live — waiting for the first frame…';
    case 'ended': return 'ended — waiting for the publisher to return';
    case 'waiting for publisher': return 'waiting for the publisher…';
    default: return stats.state;
  }
}

function renderOverlay() {
  const lat = stats.latencyMs == null ? '–' : `${Math.round(stats.latencyMs)} ms`;
  const res = stats.width ? `${stats.width}×${stats.height}` : '–';
  const codec = stats.codec ? `${stats.codec}${stats.decoderCodec && stats.codec === 'h264' ? ` (${stats.decoderCodec})` : ''}` : '–';
  const clock = stats.clockSynced
    ? `clock-synced, ±${(stats.rttMs / 2).toFixed(1)} ms`
    : 'clocks not synced: assumes they agree';
  $('overlay').textContent =
    `${stats.state}${stats.placeholder ? ' (no signal)' : ''}\n` +
    `${stats.fps.toFixed(1)} fps  glass-to-glass ${lat}\n` +
    `(${clock})\n` +
    `${res}  ${codec}  ${Math.round(stats.kbps)} kbit/s\n` +
    `dropped ${stats.dropped}${stats.late ? ` (${stats.late} late)` : ''}  frames ${stats.frames}` +
    `${stats.decodeErrors ? `  decoder errors ${stats.decodeErrors}` : ''}`;
  drawSparkline();
}

// Latency of the last LATENCY_HISTORY drawn frames, 0 at the bottom, the ceiling (or
// the largest value) at the top.
function drawSparkline() {
  const spark = $('spark');
  if (!spark) return;
  const g = spark.getContext('2d');
  const { width: w, height: h } = spark;
  g.clearRect(0, 0, w, h);
  const values = stats.latencyHistory;
  if (values.length < 2) return;
  const top = Math.max(stats.maxLatencyMs || 0, ...values, 1);
  g.strokeStyle = '#4ade80';
  g.lineWidth = 1.5;
  g.beginPath();
  values.forEach((v, i) => {
    const x = (i / (LATENCY_HISTORY - 1)) * w;
    const y = h - (Math.max(0, Math.min(v, top)) / top) * (h - 2) - 1;
    if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
  });
  g.stroke();
}

// Sends a `time` request when one is due (a burst at connect, then every 10 s).
function clockTick() {
  if (!ws || ws.readyState !== WebSocket.OPEN || !gotHello) return;
  const now = nowUs();
  if (sync.due(now)) ws.send(sync.request(now));
}

// ---- connection ----

function connect() {
  clearTimers();
  gotHello = false;
  lastSeq = null;
  resetH264('reconnect', true);
  setState('connecting', stats.message);
  let sock;
  try {
    sock = new WebSocket(wsUrl(`/ws/watch/${encodeURIComponent(stream)}`, token));
  } catch (e) {
    fatal = true;
    setState(`error: ${e.message}`, `Cannot open the WebSocket: ${e.message}`);
    return;
  }
  sock.binaryType = 'arraybuffer';
  ws = sock;
  sock.onmessage = (ev) => { if (ws === sock) (typeof ev.data === 'string' ? onControl(ev.data) : onBinary(ev.data)); };
  sock.onclose = (ev) => { if (ws === sock) onClose(ev); };
  sock.onerror = () => {}; // details arrive in onclose
}

function onControl(text) {
  let msg;
  try { msg = JSON.parse(text); } catch { return; }
  switch (msg.type) {
    case 'hello':
      gotHello = true;
      attempt = 0;
      failedBeforeHello = 0;
      sync.reset();
      publisherClock = null;
      stats.maxLatencyMs = Number.isFinite(msg.max_latency_ms) && msg.max_latency_ms > 0 ? msg.max_latency_ms : null;
      setState(msg.live ? 'live' : 'waiting for publisher');
      clockTick();
      break;
    case 'time':
      if (msg.t1 !== undefined && sync.onResponse(msg, nowUs())) clockTick();
      break;
    case 'clock':
      publisherClock = msg;
      break;
    case 'end':
      lastSeq = null;
      resetH264('publisher left'); // a returning publisher may use other settings
      if (msg.reason !== 'shutdown') publisherClock = null; // a new publisher, maybe another clock
      setState('ended', msg.reason === 'shutdown'
        ? 'The relay is shutting down.'
        : 'The publisher left — waiting for it to return.');
      break;
    case 'error': {
      const text = `${msg.code || 'error'}: ${msg.message || ''}`.trim();
      if (msg.code === 'unauthorized' || msg.code === 'invalid_stream_name' || msg.code === 'bad_request') fatal = true;
      setState(`error: ${text}`, explainError(msg.code, msg.message));
      break;
    }
    default: break; // unknown types are ignored (PROTOCOL.md section 4)
  }
}

function explainError(code, message) {
  switch (code) {
    case 'unauthorized': return 'The relay refused the token. Open this page with ?token=YOUR_WATCH_TOKEN.';
    case 'invalid_stream_name': return 'Stream names are 1-64 characters of A-Z, a-z, 0-9, _ and -.';
    case 'too_many_viewers': return 'The stream has too many viewers right now; retrying.';
    default: return message || code || 'error';
  }
}

function onClose(ev) {
  ws = null;
  pending = null;
  if (stats.state.startsWith('error') && fatal) return;
  if (fatal || ev.code === 4401 || ev.code === 4400) {
    fatal = true;
    if (!stats.state.startsWith('error')) {
      setState(`error: ${ev.code === 4401 ? 'unauthorized' : 'refused'} (close ${ev.code})`,
        ev.reason || explainError(ev.code === 4401 ? 'unauthorized' : 'invalid_stream_name'));
    }
    return;
  }
  let message = stats.state.startsWith('error') ? stats.message : '';
  if (!gotHello) {
    failedBeforeHello++;
    if (failedBeforeHello >= 2) {
      message = `Relay unreachable or token refused (close code ${ev.code}). Check that the relay runs and the ?token= in the URL.`;
    }
  } else if (!message && ev.code !== 1000) {
    message = `Connection lost (close code ${ev.code}${ev.reason ? `: ${ev.reason}` : ''}).`;
  }
  scheduleReconnect(message, failedBeforeHello >= 2);
}

function scheduleReconnect(message, unreachable) {
  const delay = backoffMs(attempt++);
  const until = Date.now() + delay;
  const tick = () => {
    const s = Math.max(1, Math.ceil((until - Date.now()) / 1000));
    setState(unreachable ? `error: relay unreachable or token refused (reconnecting in ${s}s)` : `reconnecting in ${s}s`, message);
  };
  tick();
  countdownTimer = setInterval(tick, 250);
  retryTimer = setTimeout(connect, delay);
}

function clearTimers() {
  clearTimeout(retryTimer);
  clearInterval(countdownTimer);
  retryTimer = countdownTimer = null;
}

// ---- frames ----

function onBinary(buf) {
  let frame;
  try {
    frame = parseFrame(buf);
  } catch (e) {
    stats.invalid++;
    console.warn('vswa: invalid frame:', e.message);
    return;
  }
  const { header } = frame;
  stats.received++;
  const seq = header.sequence;
  if (lastSeq !== null && seq > lastSeq + 1n) {
    const gap = Number(seq - lastSeq - 1n);
    stats.droppedGaps += gap;
    stats.dropped += gap;
  }
  lastSeq = seq; // a sequence that goes backwards (publisher restart) just resets counting
  stats.sequence = Number(seq);
  if (stats.state !== 'live') setState('live');
  if (header.flags & FLAGS.END_OF_STREAM && frame.payload.length === 0) {
    setState('ended', 'The publisher ended the stream.');
    return;
  }
  recvLog.push({ t: Date.now(), bytes: buf.byteLength });
  stats.codec = CODEC_NAMES[header.codec];
  if (header.codec === CODEC_H264) {
    onH264(frame);
    return;
  }
  if (decoder) resetH264('codec change'); // the publisher switched to JPEG
  if (pending) {
    stats.droppedLocal++;
    stats.dropped++;
  }
  pending = frame;
  if (!decoding) pump();
}

async function pump() {
  decoding = true;
  while (pending) {
    const { header, payload } = pending;
    pending = null;
    let bitmap;
    try {
      bitmap = await createImageBitmap(new Blob([payload], { type: 'image/jpeg' }));
    } catch (e) {
      stats.invalid++;
      continue;
    }
    present(bitmap, bitmap.width, bitmap.height, header);
    bitmap.close();
    if (stats.unsupported) showUnsupported(''); // JPEG plays: the H.264 note is stale
  }
  decoding = false;
}

// Draws one decoded picture (an ImageBitmap or a VideoFrame) of the frame with `header`,
// unless it is older than the relay's ceiling, and updates the statistics. The caller
// closes the picture.
function present(picture, width, height, header) {
  // Capture time on this clock once synced; without sync, as stamped.
  const captured = sync.captureToLocal(header.timestampUs, publisherClock);
  if (captured !== null && stats.maxLatencyMs && (nowUs() - captured) / 1000 > stats.maxLatencyMs) {
    // Older than the relay's ceiling by the time it decoded: never shown.
    stats.late++;
    stats.dropped++;
    return;
  }
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  ctx.drawImage(picture, 0, 0, width, height);
  const now = Date.now();
  stats.frames++;
  stats.width = canvas.width;
  stats.height = canvas.height;
  stats.placeholder = Boolean(header.flags & FLAGS.PLACEHOLDER);
  stats.clockSynced = captured !== null;
  stats.rttMs = stats.clockSynced ? sync.best().rttUs / 1000 : null;
  const drawnUs = nowUs();
  stats.latencyMs = header.timestampUs > 0n
    ? (drawnUs - (captured ?? Number(header.timestampUs))) / 1000
    : null;
  stats.rawLatencyMs = header.timestampUs > 0n ? (drawnUs - Number(header.timestampUs)) / 1000 : null;
  if (stats.latencyMs !== null) {
    stats.latencyHistory.push(stats.latencyMs);
    if (stats.latencyHistory.length > LATENCY_HISTORY) stats.latencyHistory.shift();
  }
  drawTimes.push(now);
  if (stats.frames === 1 || !$('banner').classList.contains('hidden')) setState(stats.state, stats.message);
  if (header.flags & FLAGS.END_OF_STREAM) setState('ended', 'The publisher ended the stream.');
}

// ---- H.264 with WebCodecs ----

// Chunks waiting in the decoder beyond which the page is behind: it then drops delta
// frames up to the next keyframe instead of queueing (KeyframeGate).
const H264_MAX_QUEUE = 3;
const NO_WEBCODECS = 'This stream is H.264; this browser cannot decode it here: WebCodecs needs a secure context (https or localhost) and a recent browser.';
const gate = new KeyframeGate({ maxQueue: H264_MAX_QUEUE });
let decoder = null; // the VideoDecoder, or null until a keyframe configures one
let decoderKey = ''; // codec string and size it is configured for
let decoderConfig = null;
let inflight = []; // { ts, header } of chunks handed to the decoder, oldest first
const unsupportedCodecs = new Set(); // codec strings this browser said it cannot decode
const supportChecks = new Map(); // codec string -> Promise<boolean> (isConfigSupported)

// The single line that tells why the video cannot be shown ('' hides it).
function showUnsupported(text) {
  if (stats.unsupported === text) return;
  stats.unsupported = text;
  const el = $('codec-message');
  el.textContent = text;
  el.classList.toggle('hidden', !text);
  setState(stats.state, stats.message); // the banner mentions it too
}

function dropped(n, reason) {
  stats.dropped += n;
  stats.droppedDecoder += n;
  if (n && reason) console.debug(`vswa: dropped ${n} H.264 frame(s): ${reason}`);
}

// Forgets the decoder and what it holds; the next keyframe starts over (`burst`: after
// a new connection, whose first keyframe comes with the relay's GOP burst).
function resetH264(reason, burst = false) {
  gate.resync(reason, { burst });
  closeDecoder(reason);
}

function closeDecoder(reason) {
  if (!decoder) return;
  const old = decoder;
  decoder = null;
  decoderKey = '';
  decoderConfig = null;
  stats.decoderCodec = null;
  dropped(inflight.length, reason);
  inflight = [];
  if (old.state !== 'closed') old.close();
}

function onH264({ header, payload }) {
  const key = Boolean(header.flags & FLAGS.KEYFRAME);
  if (key) stats.streamCodec = avc1CodecString(payload) || stats.streamCodec;
  if (typeof VideoDecoder === 'undefined' || typeof EncodedVideoChunk === 'undefined') {
    stats.undecodable++;
    showUnsupported(NO_WEBCODECS);
    return;
  }
  if (!decoder && unsupportedCodecs.has(stats.streamCodec)) {
    stats.undecodable++; // this browser said no to the stream's settings
    return;
  }
  if (key && !ensureDecoder(payload, header)) {
    stats.undecodable++;
    gate.resync('unsupported');
    return;
  }
  let action = gate.admit(key, decoder ? decoder.decodeQueueSize : 0);
  if (action !== 'drop' && (!decoder || decoder.state !== 'configured')) action = 'drop';
  if (action === 'drop') {
    dropped(1, gate.reason);
    return;
  }
  if (action === 'reset') {
    // Behind with a keyframe in hand: what the decoder still holds is older; skip it.
    dropped(inflight.length, 'behind');
    inflight = [];
    decoder.reset();
    decoder.configure(decoderConfig);
  }
  // The capture time as the chunk's timestamp (µs, exact in a Number until 2255): the
  // decoded VideoFrame carries it back, and `inflight` maps it to the frame's header.
  const ts = Number(header.timestampUs);
  inflight.push({ ts, header });
  if (inflight.length > 64) dropped(inflight.splice(0, inflight.length - 64).length, 'no output');
  try {
    decoder.decode(new EncodedVideoChunk({ type: key ? 'key' : 'delta', timestamp: ts, data: payload }));
  } catch (e) {
    onDecoderError(decoder, e);
  }
}

// Makes sure a decoder is configured for the keyframe `payload`; false if this browser
// cannot decode it (the page then says so).
function ensureDecoder(payload, header) {
  const codec = avc1CodecString(payload);
  if (!codec) {
    // A keyframe without SPS breaks the protocol; decode it with the current settings
    // if there are some.
    console.warn('vswa: H.264 keyframe without SPS, sequence', header.sequence);
    return Boolean(decoder);
  }
  if (unsupportedCodecs.has(codec)) {
    showUnsupported(unsupportedText(codec));
    return false;
  }
  const keyOf = `${codec} ${header.width}x${header.height}`;
  if (decoder && decoder.state === 'configured' && decoderKey === keyOf) return true;
  closeDecoder('new settings'); // this keyframe starts the new decoder
  // No `description`: the chunks are Annex B with SPS/PPS in-band (PROTOCOL.md).
  const config = { codec, optimizeForLatency: true };
  if (header.width && header.height) Object.assign(config, { codedWidth: header.width, codedHeight: header.height });
  const dec = new VideoDecoder({
    output: (frame) => onDecoded(dec, frame),
    error: (e) => onDecoderError(dec, e),
  });
  try {
    dec.configure(config);
  } catch (e) {
    // A config the browser rejects outright (TypeError): unsupported.
    markUnsupported(codec, `${e.name}: ${e.message}`);
    if (dec.state !== 'closed') dec.close();
    return false;
  }
  decoder = dec;
  decoderKey = keyOf;
  decoderConfig = config;
  stats.decoderCodec = codec;
  // Asked once per codec string, in parallel with decoding: a "no" stops this decoder.
  if (!supportChecks.has(codec)) {
    supportChecks.set(codec, VideoDecoder.isConfigSupported(config)
      .then((r) => Boolean(r && r.supported))
      .catch(() => false));
  }
  supportChecks.get(codec).then((ok) => {
    if (ok) return;
    markUnsupported(codec, 'VideoDecoder.isConfigSupported says no');
    if (decoder === dec) resetH264('unsupported');
  });
  return true;
}

function unsupportedText(codec) {
  return `This stream is H.264 (${codec}); this browser's WebCodecs cannot decode it (VideoDecoder.isConfigSupported says no).`;
}

function markUnsupported(codec, why) {
  console.warn(`vswa: H.264 ${codec} not decodable here: ${why}`);
  unsupportedCodecs.add(codec);
  showUnsupported(unsupportedText(codec));
}

function onDecoded(dec, frame) {
  if (dec !== decoder) {
    frame.close();
    return;
  }
  // Chunks older than this picture that gave none were lost in the decoder.
  const i = inflight.findIndex((e) => e.ts === frame.timestamp);
  let header;
  if (i >= 0) {
    header = inflight[i].header;
    dropped(i, 'no output');
    inflight.splice(0, i + 1);
  } else {
    header = { timestampUs: BigInt(Math.max(0, Math.round(frame.timestamp))), flags: 0 };
  }
  try {
    present(frame, frame.displayWidth, frame.displayHeight, header);
  } finally {
    frame.close(); // never hold decoded pictures: the decoder's pool is small
  }
  if (stats.unsupported) showUnsupported('');
}

function onDecoderError(dec, e) {
  if (dec !== decoder) return;
  stats.decodeErrors++;
  stats.lastDecodeError = `${e.name || 'Error'}: ${e.message || e}`;
  console.warn('vswa: H.264 decoder error:', stats.lastDecodeError);
  if (e.name === 'NotSupportedError' && decoderConfig) markUnsupported(decoderConfig.codec, stats.lastDecodeError);
  // The decoder is closed after an error; a new one starts at the next keyframe.
  resetH264('decoder error');
}

function updateFps() {
  const now = Date.now();
  while (recvLog.length && recvLog[0].t < now - 2000) recvLog.shift();
  stats.kbps = recvLog.length ? recvLog.reduce((sum, e) => sum + e.bytes, 0) * 8 / Math.min(2000, Math.max(now - recvLog[0].t, 1000)) : 0;
  while (drawTimes.length && drawTimes[0] < now - 2000) drawTimes.shift();
  // fps over the last 2 s window, or since the first frame in it
  stats.fps = drawTimes.length < 2 ? drawTimes.length / 2 : (drawTimes.length - 1) * 1000 / Math.max(now - drawTimes[0], 1);
  if (drawTimes.length && now - drawTimes[drawTimes.length - 1] > 2000) stats.fps = 0;
  renderOverlay();
}

// ---- page setup ----

function init() {
  const enc = encodeURIComponent(stream);
  $('stream-name').textContent = stream || '(none)';
  document.title = `${stream} — VSWA viewer`;
  $('home-link').href = withToken('/', token);
  $('mjpeg-link').href = withToken(`/stream/${enc}.mjpg`, token);
  $('snapshot-link').href = withToken(`/snapshot/${enc}.jpg`, token);
  $('broadcast-link').href = `/broadcast/${enc}`;
  $('fullscreen-btn').onclick = toggleFullscreen;
  $('overlay-btn').onclick = () => $('overlay').classList.toggle('hidden');
  document.addEventListener('keydown', (e) => { if (e.key === 'f' && !e.ctrlKey && !e.metaKey && !e.altKey) toggleFullscreen(); });
  canvas.addEventListener('dblclick', toggleFullscreen);
  setInterval(updateFps, 250);
  setInterval(clockTick, 100);
  if (!STREAM_NAME_RE.test(stream)) {
    fatal = true;
    setState('error: invalid stream name', 'Stream names are 1-64 characters of A-Z, a-z, 0-9, _ and -.');
    return;
  }
  connect();
}

function toggleFullscreen() {
  const stage = $('stage');
  if (document.fullscreenElement) document.exitFullscreen();
  else if (stage.requestFullscreen) stage.requestFullscreen().catch(() => {});
}

init();
