// broadcast.js — publishes the browser's camera to /ws/publish/{stream}: getUserMedia ->
// <video> preview -> (Offscreen)canvas -> JPEG, or H.264 with WebCodecs' VideoEncoder
// where the browser has it -> VSWA frame -> one binary WebSocket message per frame.
// Skips camera frames (counted, sequence still advances) while the socket has over ~1 MB
// buffered, the previous JPEG encode is still running, or more than two frames wait in
// the H.264 encoder; an H.264 chunk that cannot be sent makes the page drop delta frames
// up to the next keyframe (PROTOCOL.md, "Dropping"). Reconnects with backoff.
// ?autostart=1&width=640&height=480&fps=15&quality=0.8&codec=h264&bitrate=2000 starts
// without a click (tests). Exposes window.vswaBroadcast = {sent, skipped, fps, state,
// viewers, codec, ...}.
import {
  buildFrame, FLAGS, CODEC_JPEG, CODEC_H264, baselineCodecFor, hasIdrSlice, hasParameterSets,
  wsUrl, streamFromPath, tokenFromQuery, withToken, backoffMs, STREAM_NAME_RE, ClockSync, nowUs,
} from './vswa.js';

const MAX_BUFFERED = 1 << 20; // skip frames while more than ~1 MB waits in the socket
// H.264: what the support check asks for (Constrained Baseline, level 3.1), the most
// frames the encoder may hold before camera frames are skipped, and how often a keyframe
// is forced (viewers join and resume at keyframes).
const H264_CODEC = 'avc1.42E01F';
const MAX_ENCODE_QUEUE = 2;
const KEYFRAME_INTERVAL_MS = 1000;
const MAX_ENCODER_ERRORS = 3; // then the page falls back to JPEG
// An encoder that holds more frames than this before giving them out (a lookahead, as
// some browsers' H.264 encoders have whatever latencyMode says) is too slow for live
// video: the page falls back to JPEG. One that just encodes slowly holds at most
// MAX_ENCODE_QUEUE + 1, as camera frames are skipped while its queue is full.
const MAX_HELD_FRAMES = 8;
const stream = streamFromPath();
const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const video = $('preview');

const B = {
  sent: 0, skipped: 0, fps: 0, kbps: 0, viewers: 0, bytes: 0,
  width: 0, height: 0, sequence: -1, state: 'idle', message: '',
  clockRttMs: null, // round trip of the clock sample last reported to the relay
  codec: 'jpeg', // what the page sends: 'jpeg' or 'h264'
  h264: null, // null while checking, then whether VideoEncoder can encode H264_CODEC
  codecMessage: '', // why H.264 is not available (or was given up), or ''
  codecString: null, // H.264: the codec string the encoder is configured with
  keyframes: 0, // H.264 keyframes sent
  keyframesWithoutParameterSets: 0, // H.264 key chunks without SPS/PPS in-band (not sent)
  encoderErrors: 0,
  encodeQueue: 0, // H.264: frames waiting in the encoder at the last capture
  encoderDelayMs: null, // H.264: capture to encoded chunk, last frame sent
};
window.vswaBroadcast = B;

let running = false;
let media = null;
let ws = null;
let gotHello = false;
let maxPayload = Infinity;
let attempt = 0;
let failedBeforeHello = 0;
let nextSeq = 0n;
let encoding = false;
let retryTimer = null;
let countdownTimer = null;
let cameraRetryTimer = null;
let canvas = null;
let bitrateKbps = 2000; // H.264, from the slider once it is let go (a change means a new encoder)
// Clock sync with the relay, like every publisher (docs/PROTOCOL.md): viewers can then
// put this page's capture timestamps on their own clocks.
const sync = new ClockSync();
let clockReported = null; // the publisher_offset_us last sent in `clock`
const sendLog = []; // {t, bytes} of sent frames in the last 2 s

// ---- UI helpers ----

function settings() {
  const [width, height] = $('resolution').value.split('x').map(Number);
  return {
    width, height, fps: Number($('fps').value), quality: Number($('quality').value),
    codec: $('codec').value === 'h264' && B.h264 ? 'h264' : 'jpeg', bitrate: bitrateKbps * 1000,
  };
}

// Shows why H.264 is not available (one line), or hides the note ('').
function setCodecMessage(text) {
  B.codecMessage = text;
  $('codec-message').textContent = text;
}

function setState(state, message = B.message, kind = '') {
  B.state = state;
  B.message = message;
  $('st-state').textContent = state;
  const badge = $('state-badge');
  badge.textContent = state === 'live' ? 'live' : state.split(/[ :]/)[0];
  badge.classList.toggle('live', state === 'live');
  const msg = $('message');
  msg.textContent = message;
  msg.className = 'message' + (kind ? ` ${kind}` : state.startsWith('error') ? ' error' : state.startsWith('reconnecting') ? ' warn' : '');
  $('start-btn').disabled = running;
  $('stop-btn').disabled = !running;
}

function renderStats() {
  const now = performance.now();
  while (sendLog.length && sendLog[0].t < now - 2000) sendLog.shift();
  const span = sendLog.length > 1 ? Math.max(now - sendLog[0].t, 1) : 2000;
  B.fps = sendLog.length > 1 ? ((sendLog.length - 1) * 1000) / span : 0;
  B.kbps = sendLog.reduce((s, e) => s + e.bytes, 0) * 8 / span;
  $('st-fps').textContent = B.fps.toFixed(1);
  $('st-kbps').textContent = Math.round(B.kbps).toString();
  $('st-viewers').textContent = String(B.viewers);
  $('st-sent').textContent = String(B.sent);
  $('st-skipped').textContent = String(B.skipped);
  $('st-size').textContent = B.width ? `${B.width}×${B.height}` : '–';
  $('st-codec').textContent = B.sent ? (B.codec === 'h264' ? `H.264 ${B.codecString || ''}`.trim() : 'JPEG') : '–';
}

// ---- camera ----

function cameraError(e) {
  switch (e && e.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'Camera access was denied. Allow the camera for this site (icon in the address bar) and press Start again.';
    case 'NotFoundError':
    case 'DevicesNotFoundError':
    case 'OverconstrainedError':
      return 'No camera found. Connect a camera (or use vswa-send with --source test) and press Start again.';
    case 'NotReadableError':
    case 'TrackStartError':
    case 'AbortError':
      return 'The camera could not be started; another application may be using it.';
    default:
      return `Camera error: ${(e && (e.message || e.name)) || e}`;
  }
}

async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw Object.assign(new Error('Camera access needs a secure context: open this page over https:// or on localhost.'), { name: 'InsecureContext' });
  }
  const s = settings();
  media = await navigator.mediaDevices.getUserMedia({
    audio: false,
    video: { width: { ideal: s.width }, height: { ideal: s.height }, frameRate: { ideal: s.fps } },
  });
  const track = media.getVideoTracks()[0];
  track.addEventListener('ended', onCameraLost);
  video.srcObject = media;
  await video.play().catch(() => {});
  $('banner').classList.add('hidden');
}

function stopCamera() {
  if (media) media.getTracks().forEach((t) => { t.removeEventListener('ended', onCameraLost); t.stop(); });
  media = null;
  video.srcObject = null;
  $('banner').classList.remove('hidden');
}

function onCameraLost() {
  if (!running) return;
  stopCamera();
  setState('error: camera lost', 'The camera stopped or was unplugged; trying to reopen it…');
  const retry = async () => {
    if (!running) return;
    try {
      await startCamera();
      setState(ws && gotHello ? 'live' : 'connecting', '');
    } catch {
      cameraRetryTimer = setTimeout(retry, 2000);
    }
  };
  cameraRetryTimer = setTimeout(retry, 2000);
}

async function applySettings() {
  if (!running || !media) return;
  startClock();
  const s = settings();
  const track = media.getVideoTracks()[0];
  try {
    await track.applyConstraints({ width: { ideal: s.width }, height: { ideal: s.height }, frameRate: { ideal: s.fps } });
  } catch (e) {
    console.warn('vswa: applyConstraints failed:', e);
  }
}

// ---- capture, encode, send ----

// Timers of a background tab are throttled to about 1 Hz, a dedicated worker's are not:
// the capture clock ticks in a tiny worker, with a plain setInterval as the fallback.
let clockWorker = null;
let clockTimer = null;

function startClock() {
  const ms = 1000 / settings().fps;
  clearInterval(clockTimer);
  clockTimer = null;
  if (clockWorker === null) {
    try {
      const src = 'let t; onmessage = (e) => { clearInterval(t); if (e.data > 0) t = setInterval(() => postMessage(0), e.data); };';
      clockWorker = new Worker(URL.createObjectURL(new Blob([src], { type: 'text/javascript' })));
      clockWorker.onmessage = captureOne;
      clockWorker.onerror = () => { clockWorker = false; if (running) startClock(); };
    } catch {
      clockWorker = false; // e.g. a Content-Security-Policy without blob: workers
    }
  }
  if (clockWorker) clockWorker.postMessage(ms);
  else clockTimer = setInterval(captureOne, ms);
}

function stopClock() {
  if (clockWorker) clockWorker.postMessage(0);
  clearInterval(clockTimer);
  clockTimer = null;
}

function captureOne() {
  if (!running || !ws || ws.readyState !== WebSocket.OPEN || !gotHello) return;
  const track = media && media.getVideoTracks()[0];
  if (!track || track.readyState !== 'live' || video.readyState < 2 || !video.videoWidth) return;
  const sequence = nextSeq++;
  B.sequence = Number(sequence);
  let s = settings();
  if (s.codec === 'h264' && encodedMeta.size > MAX_HELD_FRAMES) {
    // An encoder that buffers frames (lookahead) adds a frame interval of latency per
    // frame it holds; it cannot serve live video. JPEG from this frame on.
    giveUpH264(`this browser's H.264 encoder holds back more than ${MAX_HELD_FRAMES} frames (over ${Math.round((MAX_HELD_FRAMES * 1000) / s.fps)} ms at ${s.fps} fps) before giving them out, too slow for live video`);
    s = settings();
  }
  if (s.codec === 'h264') {
    B.encodeQueue = encoder ? encoder.encodeQueueSize : 0;
    // Skipped before encoding, so the encoded stream has no hole.
    if (B.encodeQueue > MAX_ENCODE_QUEUE || ws.bufferedAmount > MAX_BUFFERED) {
      B.skipped++;
      return;
    }
    try {
      encodeH264(sequence, s);
    } catch (e) {
      console.warn('vswa: H.264 encode failed:', e);
      onEncoderError(encoder, e);
    }
    return;
  }
  if (encoder) closeEncoder();
  if (encoding || ws.bufferedAmount > MAX_BUFFERED) {
    B.skipped++;
    return;
  }
  encoding = true;
  encodeAndSend(sequence, s).catch((e) => console.warn('vswa: encode failed:', e)).finally(() => { encoding = false; });
}

// The encoded picture size: the camera's, scaled down to fit the chosen resolution if
// larger (H.264: even, as 4:2:0 needs).
function pictureSize(s, even) {
  const vw = video.videoWidth;
  const vh = video.videoHeight;
  const scale = Math.min(1, s.width / vw, s.height / vh);
  const round = (v) => (even ? Math.max(2, 2 * Math.floor(v / 2)) : Math.max(2, Math.round(v)));
  return { w: round(vw * scale), h: round(vh * scale) };
}

// Draws the current camera picture on the w x h `canvas` and returns its capture time
// (µs since the epoch on this page's clock, the one clock sync reports).
function grab(w, h) {
  if (!canvas || canvas.width !== w || canvas.height !== h) {
    canvas = typeof OffscreenCanvas !== 'undefined' ? new OffscreenCanvas(w, h) : Object.assign(document.createElement('canvas'), { width: w, height: h });
  }
  const ctx = canvas.getContext('2d');
  const timestampUs = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000));
  ctx.drawImage(video, 0, 0, w, h);
  return timestampUs;
}

async function encodeAndSend(sequence, s) {
  const { w, h } = pictureSize(s, false);
  const timestampUs = grab(w, h);
  const blob = canvas.convertToBlob
    ? await canvas.convertToBlob({ type: 'image/jpeg', quality: s.quality })
    : await new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', s.quality));
  if (!blob) throw new Error('the browser produced no JPEG');
  const jpeg = new Uint8Array(await blob.arrayBuffer());
  if (jpeg.length > maxPayload) {
    B.skipped++;
    setState(B.state, `A frame of ${jpeg.length} bytes is over the relay's limit of ${maxPayload}; lower the resolution or quality.`, 'warn');
    return;
  }
  if (!ws || ws.readyState !== WebSocket.OPEN) { B.skipped++; return; }
  send(buildFrame({ codec: CODEC_JPEG, sequence, timestampUs, width: w, height: h, flags: FLAGS.KEYFRAME }, jpeg), w, h);
  B.codec = 'jpeg';
}

function send(frame, w, h) {
  ws.send(frame);
  B.sent++;
  B.bytes += frame.length;
  B.width = w;
  B.height = h;
  sendLog.push({ t: performance.now(), bytes: frame.length });
}

// ---- H.264 (WebCodecs VideoEncoder) ----

let encoder = null;
let encoderKey = ''; // codec, size and bitrate it is configured for
// Frames given to the encoder and not out yet: VideoFrame timestamp -> { ts, at
// (performance.now() at capture), sequence, timestampUs, w, h }.
let encodedMeta = new Map();
let forceKey = true; // the next frame is encoded as a keyframe
let lastKeyAt = -Infinity; // performance.now() of the last keyframe
let dropUntilKey = true; // a chunk was not sent: send no delta frame before a keyframe

// Whether this browser can encode H.264 as the page does it; sets B.h264.
async function checkH264() {
  let why = '';
  if (typeof VideoEncoder === 'undefined' || typeof VideoFrame === 'undefined') {
    why = 'this browser has no WebCodecs VideoEncoder here (it needs a secure context: https or localhost, and a recent browser)';
  } else {
    try {
      const r = await VideoEncoder.isConfigSupported({
        codec: H264_CODEC, width: 640, height: 480, bitrate: 2_000_000, framerate: 15,
        latencyMode: 'realtime', avc: { format: 'annexb' },
      });
      if (!r || !r.supported) why = `VideoEncoder.isConfigSupported says this browser cannot encode ${H264_CODEC}`;
    } catch (e) {
      why = `VideoEncoder.isConfigSupported failed: ${e.message || e}`;
    }
  }
  B.h264 = !why;
  const opt = $('codec').querySelector('option[value=h264]');
  opt.disabled = !B.h264;
  opt.textContent = B.h264 ? 'H.264 (WebCodecs)' : 'H.264 (not available in this browser)';
  return why;
}

function closeEncoder() {
  const old = encoder;
  encoder = null;
  encoderKey = '';
  encodedMeta = new Map();
  B.codecString = null;
  if (old && old.state !== 'closed') old.close();
}

// A configured encoder for w x h at the current settings (a new one when they change).
function ensureEncoder(w, h, s) {
  const codec = baselineCodecFor(w, h, s.fps);
  if (!codec) throw new Error(`no H.264 level fits ${w}x${h} at ${s.fps} fps`);
  const key = `${codec} ${w}x${h} ${s.bitrate}`;
  if (encoder && encoder.state === 'configured' && encoderKey === key) return;
  closeEncoder();
  const enc = new VideoEncoder({
    output: (chunk) => onChunk(enc, chunk),
    error: (e) => onEncoderError(enc, e),
  });
  // annexb: start codes, and SPS/PPS in-band on every keyframe, as VSWA's codec 2 wants.
  try {
    enc.configure({
      codec, width: w, height: h, bitrate: s.bitrate, framerate: s.fps,
      latencyMode: 'realtime', avc: { format: 'annexb' },
    });
  } catch (e) {
    enc.close();
    throw e;
  }
  encoder = enc;
  encoderKey = key;
  B.codecString = codec;
  forceKey = true;
}

function encodeH264(sequence, s) {
  const { w, h } = pictureSize(s, true);
  ensureEncoder(w, h, s);
  const timestampUs = grab(w, h);
  // The capture time is the frame's timestamp, so each chunk maps back to its header.
  const ts = Number(timestampUs);
  const frame = new VideoFrame(canvas, { timestamp: ts });
  const now = performance.now();
  const keyFrame = forceKey || now - lastKeyAt >= KEYFRAME_INTERVAL_MS;
  if (keyFrame) {
    forceKey = false;
    lastKeyAt = now;
  }
  encodedMeta.set(ts, { ts, at: now, sequence, timestampUs, w, h });
  try {
    encoder.encode(frame, { keyFrame });
  } finally {
    frame.close();
  }
}

// One encoded picture: one VSWA frame, KEYFRAME on IDR access units.
function onChunk(enc, chunk) {
  if (enc !== encoder) return;
  const meta = encodedMeta.get(chunk.timestamp);
  // Frames the encoder left out (rate control) never produce a chunk: forget them.
  for (const ts of encodedMeta.keys()) if (ts <= chunk.timestamp) encodedMeta.delete(ts);
  const data = new Uint8Array(chunk.byteLength);
  chunk.copyTo(data);
  // The protocol's rule, checked on the bytes: KEYFRAME if and only if IDR.
  const key = hasIdrSlice(data);
  if (key && meta) lastKeyAt = Math.max(lastKeyAt, meta.at); // the encoder's own keyframes count too
  const skip = (why) => {
    B.skipped++;
    dropUntilKey = true;
    forceKey = true;
    if (why) console.warn(`vswa: H.264 chunk not sent: ${why}`);
  };
  if (key && !hasParameterSets(data)) {
    // A viewer could not start here; never seen with annexb, but then ask again.
    B.keyframesWithoutParameterSets++;
    skip('keyframe without SPS/PPS');
    return;
  }
  if (!meta || !ws || ws.readyState !== WebSocket.OPEN || !gotHello) { skip(''); return; }
  if (!key && dropUntilKey) { B.skipped++; return; }
  if (data.length > maxPayload) {
    skip('too large');
    setState(B.state, `A frame of ${data.length} bytes is over the relay's limit of ${maxPayload}; lower the resolution or bitrate.`, 'warn');
    return;
  }
  dropUntilKey = false;
  B.encoderDelayMs = (nowUs() - meta.ts) / 1000;
  send(buildFrame({
    codec: CODEC_H264, sequence: meta.sequence, timestampUs: meta.timestampUs,
    width: meta.w, height: meta.h, flags: key ? FLAGS.KEYFRAME : 0,
  }, data), meta.w, meta.h);
  B.codec = 'h264';
  if (key) B.keyframes++;
}

function onEncoderError(enc, e) {
  if (enc !== encoder && enc !== null) return;
  B.encoderErrors++;
  console.warn('vswa: H.264 encoder error:', e);
  closeEncoder(); // a new encoder, starting at a keyframe, at the next camera frame
  dropUntilKey = true;
  if (B.encoderErrors >= MAX_ENCODER_ERRORS) {
    giveUpH264(`its H.264 encoder failed ${B.encoderErrors} times (${e.message || e})`);
  }
}

// Stops offering H.264 on this page (until it is reloaded) and says why.
function giveUpH264(why) {
  console.warn(`vswa: H.264 given up: ${why}`);
  closeEncoder();
  B.h264 = false;
  $('codec').value = 'jpeg';
  const opt = $('codec').querySelector('option[value=h264]');
  opt.disabled = true;
  opt.textContent = 'H.264 (not usable in this browser)';
  $('codec').dispatchEvent(new Event('change'));
  setCodecMessage(`H.264 is not usable here: ${why}; broadcasting JPEG instead.`);
}

// ---- clock sync ----

// Sends a `time` request when one is due (a burst after hello, then every 10 s).
function clockTick() {
  if (!ws || ws.readyState !== WebSocket.OPEN || !gotHello) return;
  const now = nowUs();
  if (sync.due(now)) ws.send(sync.request(now));
}

// Tells the relay this page's clock offset: after the first sample, then whenever the
// estimate moves by more than 1 ms.
function reportClock() {
  const best = sync.best();
  if (!best || !ws || ws.readyState !== WebSocket.OPEN) return;
  if (clockReported !== null && Math.abs(best.offsetUs - clockReported) <= 1000) return;
  ws.send(JSON.stringify({ type: 'clock', publisher_offset_us: best.offsetUs, rtt_us: best.rttUs }));
  clockReported = best.offsetUs;
  B.clockRttMs = best.rttUs / 1000;
}
setInterval(clockTick, 100);

// ---- WebSocket ----

function connect() {
  clearTimeout(retryTimer);
  clearInterval(countdownTimer);
  gotHello = false;
  setState('connecting');
  const sock = new WebSocket(wsUrl(`/ws/publish/${encodeURIComponent(stream)}`, $('token').value.trim()));
  sock.binaryType = 'arraybuffer';
  ws = sock;
  sock.onmessage = (ev) => { if (ws === sock && typeof ev.data === 'string') onControl(ev.data); };
  sock.onclose = (ev) => { if (ws === sock) onClose(ev); };
  sock.onerror = () => {};
}

function onControl(text) {
  let msg;
  try { msg = JSON.parse(text); } catch { return; }
  if (msg.type === 'hello') {
    gotHello = true;
    attempt = 0;
    failedBeforeHello = 0;
    maxPayload = Number(msg.max_payload_len) > 0 ? Number(msg.max_payload_len) - 32 : Infinity;
    sync.reset();
    clockReported = null;
    // A new session: its first H.264 frame is a keyframe, and nothing encoded before it
    // is sent.
    forceKey = true;
    dropUntilKey = true;
    setState('live', '');
    clockTick();
  } else if (msg.type === 'time') {
    if (msg.t1 !== undefined && sync.onResponse(msg, nowUs())) {
      reportClock();
      clockTick();
    }
  } else if (msg.type === 'viewers') {
    B.viewers = Number(msg.count) || 0;
    renderStats();
  } else if (msg.type === 'error') {
    const explain = {
      unauthorized: 'The relay refused the publish token. Enter the right token and press Start again.',
      stream_busy: `Stream "${stream}" already has a publisher. Retrying until it is free.`,
      invalid_stream_name: 'Stream names are 1-64 characters of A-Z, a-z, 0-9, _ and -.',
      frame_too_large: 'A frame was too large for the relay; lower the resolution or quality.',
      too_many_streams: 'The relay has too many streams right now; retrying.',
    }[msg.code];
    const fatal = ['unauthorized', 'invalid_stream_name', 'bad_request'].includes(msg.code);
    setState(`error: ${msg.code}`, explain || msg.message || msg.code);
    if (fatal) stop(`error: ${msg.code}`, B.message);
  }
}

function onClose(ev) {
  ws = null;
  gotHello = false;
  if (!running) return;
  if (ev.code === 4401 || ev.code === 4400) {
    stop(B.state.startsWith('error') ? B.state : `error: refused (close ${ev.code})`, B.message || ev.reason);
    return;
  }
  let message = B.state.startsWith('error') ? B.message : '';
  let unreachable = false;
  if (ev.code === 1006 && B.state === 'connecting') {
    failedBeforeHello++;
    if (failedBeforeHello >= 2) {
      unreachable = true;
      message = 'Relay unreachable or token refused. Check that the relay is running and the publish token is right.';
    }
  } else if (!message && ev.code !== 1000) {
    message = `Connection lost (close code ${ev.code}${ev.reason ? `: ${ev.reason}` : ''}).`;
  }
  const busy = B.state === 'error: stream_busy';
  const delay = Math.max(backoffMs(attempt++), busy ? 3000 : 0);
  const until = Date.now() + delay;
  const tick = () => {
    const s = Math.max(1, Math.ceil((until - Date.now()) / 1000));
    const state = unreachable ? `error: relay unreachable or token refused (reconnecting in ${s}s)`
      : busy ? `error: stream busy (reconnecting in ${s}s)` : `reconnecting in ${s}s`;
    setState(state, message);
  };
  tick();
  countdownTimer = setInterval(tick, 250);
  retryTimer = setTimeout(connect, delay);
}

// ---- start / stop ----

async function start() {
  if (running) return;
  if (!STREAM_NAME_RE.test(stream)) {
    setState('error: invalid stream name', 'Stream names are 1-64 characters of A-Z, a-z, 0-9, _ and -.');
    return;
  }
  running = true;
  nextSeq = 0n;
  attempt = 0;
  failedBeforeHello = 0;
  setState('starting camera', '');
  try {
    await startCamera();
  } catch (e) {
    running = false;
    stopCamera();
    setState(`error: ${e.name || 'camera'}`, cameraError(e));
    return;
  }
  if (!running) { stopCamera(); return; } // stopped while the permission prompt was open
  connect();
  startClock();
}

function stop(state = 'stopped', message = '') {
  running = false;
  stopClock();
  clearTimeout(retryTimer);
  clearTimeout(cameraRetryTimer);
  clearInterval(countdownTimer);
  const sock = ws;
  ws = null;
  if (sock && sock.readyState === WebSocket.OPEN) {
    try {
      if (gotHello) {
        const now = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000));
        const codec = B.codec === 'h264' ? CODEC_H264 : CODEC_JPEG;
        sock.send(buildFrame({ codec, sequence: nextSeq++, timestampUs: now, width: B.width, height: B.height, flags: FLAGS.END_OF_STREAM }, new Uint8Array(0)));
      }
      sock.close(1000, 'stopped');
    } catch { /* already closing */ }
  } else if (sock) {
    sock.close();
  }
  gotHello = false;
  B.viewers = 0;
  closeEncoder();
  stopCamera();
  setState(state, message);
  renderStats();
}

// ---- page setup ----

function clamp(v, lo, hi, dflt) {
  const n = Number(v);
  return Number.isFinite(n) ? Math.min(hi, Math.max(lo, n)) : dflt;
}

function init() {
  const enc = encodeURIComponent(stream);
  $('stream-name').textContent = stream || '(none)';
  document.title = `Broadcast ${stream} — VSWA`;
  $('view-link').href = withToken(`/view/${enc}`, tokenFromQuery());
  $('token').value = tokenFromQuery();
  if (params.has('width') && params.has('height')) {
    const value = `${Math.round(clamp(params.get('width'), 16, 4096, 640))}x${Math.round(clamp(params.get('height'), 16, 4096, 480))}`;
    const sel = $('resolution');
    if (![...sel.options].some((o) => o.value === value)) sel.add(new Option(value.replace('x', '×'), value));
    sel.value = value;
  }
  if (params.has('fps')) $('fps').value = String(Math.round(clamp(params.get('fps'), 5, 60, 15)));
  if (params.has('quality')) $('quality').value = String(clamp(params.get('quality'), 0.1, 1, 0.8));
  if (params.has('bitrate')) $('bitrate').value = String(Math.round(clamp(params.get('bitrate'), 250, 8000, 2000)));
  bitrateKbps = Number($('bitrate').value);
  const wantH264 = (params.get('codec') || '').toLowerCase() === 'h264';
  const showValues = () => {
    $('fps-value').textContent = $('fps').value;
    $('quality-value').textContent = Number($('quality').value).toFixed(2);
    $('bitrate-value').textContent = $('bitrate').value;
    const h264 = $('codec').value === 'h264';
    $('quality').disabled = h264;
    $('bitrate').disabled = !h264;
  };
  showValues();
  $('fps').addEventListener('input', showValues);
  $('quality').addEventListener('input', showValues);
  $('bitrate').addEventListener('input', showValues);
  $('bitrate').addEventListener('change', () => { bitrateKbps = Number($('bitrate').value); });
  $('codec').addEventListener('change', () => { showValues(); setCodecMessage(''); });
  $('resolution').addEventListener('change', applySettings);
  $('fps').addEventListener('change', applySettings);
  // The H.264 option is enabled once the browser says it can encode it; ?codec=h264
  // picks it then, or explains why the page sends JPEG.
  const h264Checked = checkH264().then((why) => {
    if (wantH264) {
      if (B.h264) $('codec').value = 'h264';
      else setCodecMessage(`H.264 is not available: ${why}; broadcasting JPEG instead.`);
    } else if (why) {
      console.info(`vswa: H.264 not offered: ${why}`);
    }
    showValues();
  });
  $('controls').addEventListener('submit', (e) => { e.preventDefault(); start(); });
  $('stop-btn').addEventListener('click', () => stop());
  window.addEventListener('pagehide', () => { if (running) stop(); });
  setInterval(renderStats, 500);
  if (!STREAM_NAME_RE.test(stream)) {
    setState('error: invalid stream name', 'Stream names are 1-64 characters of A-Z, a-z, 0-9, _ and -.');
    $('start-btn').disabled = true;
    return;
  }
  setState('idle', '');
  if (params.get('autostart') === '1' || params.get('autostart') === 'true') h264Checked.then(start);
}

init();
