// vswa.test.mjs — checks web/vswa.js against the hex test vectors in docs/PROTOCOL.md,
// byte for byte. Run: node --test web/tests/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  MAGIC, VERSION, HEADER_LEN, FLAGS, CODEC_JPEG, CODEC_H264, CODEC_NAMES, isKnownCodec,
  parseFrame, buildFrame, wsUrl, streamFromPath, tokenFromQuery, withToken, STREAM_NAME_RE,
  ClockSync, NAL, nalUnits, findSps, avc1String, avc1CodecString, hasIdrSlice, hasParameterSets,
  KeyframeGate, baselineCodecFor,
} from '../vswa.js';

const doc = readFileSync(fileURLToPath(new URL('../../../../docs/PROTOCOL.md', import.meta.url)), 'utf8');

function vectors(text) {
  const out = new Map();
  const re = /```hex vector=([A-Za-z0-9_-]+)(?: error=[a-z_]+)?\n([\s\S]*?)```/g;
  for (const m of text.matchAll(re)) {
    const hex = m[2].replace(/\s+/g, '');
    assert.match(hex, /^([0-9a-fA-F]{2})*$/, `vector ${m[1]} is not hex`);
    out.set(m[1], Uint8Array.from(hex.match(/../g) || [], (h) => parseInt(h, 16)));
  }
  return out;
}
const V = vectors(doc);
const hex = (b) => Buffer.from(b).toString('hex');
// Copy into a fresh ArrayBuffer, as a WebSocket message would arrive.
const msg = (b) => b.slice().buffer;

test('doc contains every expected vector', () => {
  for (const name of ['minimal-frame', 'all-flags-frame', 'recording-two-frames',
    'bad-magic', 'unsupported-version', 'reserved-flags', 'truncated-payload',
    'h264-keyframe', 'h264-delta-frame']) {
    assert.ok(V.has(name), `missing vector ${name}`);
  }
});

test('constants', () => {
  assert.deepEqual([...MAGIC], [0x56, 0x53, 0x57, 0x41]);
  assert.equal(VERSION, 1);
  assert.equal(HEADER_LEN, 32);
  assert.equal(CODEC_JPEG, 1);
  assert.equal(CODEC_H264, 2);
  assert.deepEqual({ ...CODEC_NAMES }, { 1: 'jpeg', 2: 'h264' });
  assert.ok(isKnownCodec(1) && isKnownCodec(2));
  assert.ok(!isKnownCodec(0) && !isKnownCodec(3) && !isKnownCodec('1') && !isKnownCodec(1.5));
  assert.deepEqual({ ...FLAGS }, { KEYFRAME: 1, END_OF_STREAM: 2, PLACEHOLDER: 4 });
});

test('minimal-frame: build and parse', () => {
  const built = buildFrame({ sequence: 0n, timestampUs: 0n, width: 0, height: 0, flags: 0 }, new Uint8Array(0));
  assert.equal(hex(built), hex(V.get('minimal-frame')));
  const { header, payload } = parseFrame(msg(V.get('minimal-frame')));
  assert.deepEqual(header, { codec: 1, flags: 0, payloadLen: 0, width: 0, height: 0, sequence: 0n, timestampUs: 0n });
  assert.equal(payload.length, 0);
});

test('all-flags-frame: build and parse', () => {
  const fields = {
    sequence: 0x0102030405060708n, timestampUs: 1763720100123456n, width: 640, height: 480,
    flags: FLAGS.KEYFRAME | FLAGS.END_OF_STREAM | FLAGS.PLACEHOLDER,
  };
  const payload = new Uint8Array([0xff, 0xd8, 0xff, 0xd9]);
  assert.equal(hex(buildFrame(fields, payload)), hex(V.get('all-flags-frame')));
  const parsed = parseFrame(msg(V.get('all-flags-frame')));
  assert.deepEqual(parsed.header, { codec: 1, flags: 7, payloadLen: 4, ...fields });
  assert.equal(hex(parsed.payload), 'ffd8ffd9');
  // Uint8Array input (not only ArrayBuffer) is accepted too, including a subarray view.
  const padded = new Uint8Array(V.get('all-flags-frame').length + 3);
  padded.set(V.get('all-flags-frame'), 3);
  assert.equal(parseFrame(padded.subarray(3)).header.sequence, fields.sequence);
});

test('buildFrame accepts plain numbers for sequence and timestamp', () => {
  const f = buildFrame({ sequence: 1, timestampUs: 1763720100033333, width: 320, height: 240, flags: FLAGS.KEYFRAME },
    new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0xff, 0xd9]));
  assert.equal(parseFrame(f).header.timestampUs, 1763720100033333n);
  assert.throws(() => buildFrame({ flags: 8 }), /reserved flags/);
});

test('invalid vectors are rejected with the named error', () => {
  assert.throws(() => parseFrame(msg(V.get('bad-magic'))), /bad magic/);
  assert.throws(() => parseFrame(msg(V.get('unsupported-version'))), /unsupported version/);
  assert.throws(() => parseFrame(msg(V.get('reserved-flags'))), /reserved flags/);
  assert.throws(() => parseFrame(msg(V.get('truncated-payload'))), /truncated/);
});

test('other invalid inputs', () => {
  const good = V.get('all-flags-frame');
  const codec = good.slice(); codec[5] = 3;
  assert.throws(() => parseFrame(codec), /unknown codec 3/);
  const codec255 = good.slice(); codec255[5] = 255;
  assert.throws(() => parseFrame(codec255), /unknown codec 255/);
  const codec0 = good.slice(); codec0[5] = 0;
  assert.throws(() => parseFrame(codec0), /unknown codec/);
  const trailing = new Uint8Array(good.length + 1); trailing.set(good);
  assert.throws(() => parseFrame(trailing), /trailing bytes/);
  assert.throws(() => parseFrame(good.subarray(0, 20)), /truncated/);
  assert.throws(() => parseFrame(new Uint8Array(0)), /truncated/);
  assert.throws(() => parseFrame(new Uint8Array([0x00, 0x53])), /bad magic/);
});

test('recording-two-frames: frames split out of the file parse to the documented values', () => {
  const file = V.get('recording-two-frames');
  assert.equal(Buffer.from(file.subarray(0, 8)).toString('latin1'), 'VSWA-REC');
  assert.equal(file[8], 1);
  const frames = [];
  let off = 16;
  while (off < file.length) {
    const len = new DataView(file.buffer, file.byteOffset + off + 8, 4).getUint32(0);
    frames.push(parseFrame(msg(file.subarray(off, off + HEADER_LEN + len))));
    off += HEADER_LEN + len;
  }
  assert.equal(off, file.length);
  assert.equal(frames.length, 2);
  assert.deepEqual(frames[0].header, { codec: 1, flags: FLAGS.KEYFRAME, payloadLen: 4, width: 320, height: 240, sequence: 0n, timestampUs: 1763720100000000n });
  assert.equal(hex(frames[0].payload), 'ffd8ffd9');
  assert.deepEqual(frames[1].header, { codec: 1, flags: FLAGS.KEYFRAME, payloadLen: 6, width: 320, height: 240, sequence: 1n, timestampUs: 1763720100033333n });
  assert.equal(hex(frames[1].payload), 'ffd8ffe0ffd9');
  // Rebuilding both frames reproduces the file byte for byte.
  const rebuilt = [file.subarray(0, 16), ...frames.map((f) => buildFrame(f.header, f.payload))];
  assert.equal(rebuilt.map(hex).join(''), hex(file));
});

test('URL helpers', () => {
  assert.equal(wsUrl('/ws/watch/demo', 'a b', { protocol: 'http:', host: 'h:8080' }), 'ws://h:8080/ws/watch/demo?token=a%20b');
  assert.equal(wsUrl('/ws/publish/x', '', { protocol: 'https:', host: 'h' }), 'wss://h/ws/publish/x');
  assert.equal(streamFromPath('/view/demo'), 'demo');
  assert.equal(streamFromPath('/broadcast/cam_1/'), 'cam_1');
  assert.equal(tokenFromQuery('?token=s3cr%2Bt&x=1'), 's3cr+t');
  assert.equal(tokenFromQuery(''), '');
  assert.equal(withToken('/snapshot/a.jpg', 't'), '/snapshot/a.jpg?token=t');
  assert.equal(withToken('/snapshot/a.jpg?t=1', 't'), '/snapshot/a.jpg?t=1&token=t');
  assert.equal(withToken('/x', ''), '/x');
  assert.ok(STREAM_NAME_RE.test('a-B_9'));
  assert.ok(!STREAM_NAME_RE.test('a b'));
  assert.ok(!STREAM_NAME_RE.test('x'.repeat(65)));
});

// PROTOCOL.md's worked examples, through the page's ClockSync.
test('clock sync: the offset example and capture time on the viewer', () => {
  const sync = new ClockSync();
  assert.equal(sync.due(1763720100000000), true);
  const req = JSON.parse(sync.request(1763720100000000));
  assert.deepEqual(req, { type: 'time', t0: 1763720100000000 });
  // Still in the burst, waiting for the answer: nothing due yet.
  assert.equal(sync.due(1763720100010000), false);
  const sample = sync.onResponse({ type: 'time', t0: 1763720100000000, t1: 1763720102030000, t2: 1763720102031000 }, 1763720100041000);
  assert.equal(sample.offsetUs, 2010000);
  assert.equal(sample.rttUs, 40000);
  // An answer to a request never sent is ignored.
  assert.equal(sync.onResponse({ type: 'time', t0: 5, t1: 6, t2: 7 }, 8), null);
  // The burst goes on once the answer is in, then every 10 s.
  assert.equal(sync.due(1763720100041000), true);
  for (let i = 1; i < ClockSync.BURST; i++) sync.request(1763720100041000 + i);
  assert.equal(sync.due(1763720100041000 + 9e6), false);
  assert.equal(sync.due(1763720100041000 + 10e6 + 10), true);

  // The viewer example: publisher offset +1.5 s, viewer offset -0.25 s.
  const viewer = new ClockSync();
  const t0 = 1763720100000000;
  viewer.request(t0);
  viewer.onResponse({ type: 'time', t0, t1: t0 - 250000 + 500, t2: t0 - 250000 + 500 }, t0 + 1000);
  assert.equal(viewer.best().offsetUs, -250000);
  const captured = viewer.captureToLocal(1763720098500000n, { publisher_offset_us: 1500000, rtt_us: 100 });
  assert.equal(captured, 1763720100250000);
  assert.equal(1763720100370000 - captured, 120000);
  assert.equal(viewer.captureToLocal(1n, null), null);
});

test('clock sync keeps the lowest-RTT sample of the newest eight', () => {
  const sync = new ClockSync();
  let t = 1763720100000000;
  const rtts = [9000, 3000, 7000, 5000, 4000, 6000, 8000, 9500, 9900, 9990];
  for (const rtt of rtts) {
    const t0 = t;
    sync.request(t0);
    sync.onResponse({ type: 'time', t0, t1: t0 + rtt / 2, t2: t0 + rtt / 2 }, t0 + rtt);
    t += 1000000;
  }
  // 3000 fell out with the two oldest; 4000 is the best of the newest eight.
  assert.equal(sync.best().rttUs, 4000);
});

// ---- H.264 (PROTOCOL.md "Codec 2: H.264", vectors 7.5) ----

test('h264-keyframe and h264-delta-frame: build and parse', () => {
  const key = parseFrame(msg(V.get('h264-keyframe')));
  assert.deepEqual(key.header, { codec: CODEC_H264, flags: FLAGS.KEYFRAME, payloadLen: 26, width: 16, height: 16, sequence: 0n, timestampUs: 1763720100000000n });
  assert.equal(hex(key.payload), '000000016742c01eda79' + '0000000168ce3880' + '00000165888493c0');
  const delta = parseFrame(msg(V.get('h264-delta-frame')));
  assert.deepEqual(delta.header, { codec: CODEC_H264, flags: 0, payloadLen: 7, width: 16, height: 16, sequence: 1n, timestampUs: 1763720100033333n });
  assert.equal(hex(delta.payload), '000001419a22a0');
  // buildFrame with codec 2 reproduces both vectors byte for byte.
  assert.equal(hex(buildFrame({ codec: CODEC_H264, sequence: 0, timestampUs: 1763720100000000, width: 16, height: 16, flags: FLAGS.KEYFRAME }, key.payload)), hex(V.get('h264-keyframe')));
  assert.equal(hex(buildFrame({ ...delta.header }, delta.payload)), hex(V.get('h264-delta-frame')));
  // The default codec stays JPEG; an unknown one is refused.
  assert.equal(buildFrame({}, new Uint8Array([0xff, 0xd8]))[5], CODEC_JPEG);
  assert.throws(() => buildFrame({ codec: 3 }), /unknown codec 3/);
  assert.throws(() => buildFrame({ codec: 0 }), /unknown codec 0/);
});

test('nalUnits splits the keyframe vector into SPS, PPS and IDR slice', () => {
  const { payload } = parseFrame(msg(V.get('h264-keyframe')));
  const units = nalUnits(payload);
  assert.deepEqual(units.map((u) => u.type), [NAL.SPS, NAL.PPS, NAL.IDR]);
  assert.deepEqual(units.map((u) => hex(u.data)), ['6742c01eda79', '68ce3880', '65888493c0']);
  assert.equal(hex(findSps(payload)), '6742c01eda79');
  assert.ok(hasIdrSlice(payload));
  assert.ok(hasParameterSets(payload));
  const delta = parseFrame(msg(V.get('h264-delta-frame'))).payload;
  assert.deepEqual(nalUnits(delta).map((u) => [u.type, hex(u.data)]), [[NAL.SLICE, '419a22a0']]);
  assert.equal(findSps(delta), null);
  assert.ok(!hasIdrSlice(delta));
  assert.ok(!hasParameterSets(delta));
});

test('nalUnits: start-code forms, padding, garbage and empty input', () => {
  const b = (...xs) => Uint8Array.from(xs);
  // 3- and 4-byte start codes, trailing zero padding before the next start code and at
  // the end, bytes before the first start code ignored.
  const au = b(0xaa, 0xbb, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 0, 1, 0x67, 0x64, 0x00, 0x28, 0xac, 0, 0, 0, 1, 0x68, 0xee, 0x3c, 0x80, 0, 0, 1, 0x65, 0xb8, 0x00, 0x03, 0x01, 0, 0);
  assert.deepEqual(nalUnits(au).map((u) => [u.type, hex(u.data)]), [
    [NAL.AUD, '09f0'], [NAL.SPS, '67640028ac'], [NAL.PPS, '68ee3c80'], [NAL.IDR, '65b8000301'],
  ]);
  // Emulation-prevention bytes (00 00 03) stay inside the unit: no false start code.
  assert.deepEqual(nalUnits(b(0, 0, 1, 0x41, 0, 0, 3, 1, 0x22)).map((u) => hex(u.data)), ['410000030122']);
  // Nothing to find.
  assert.deepEqual(nalUnits(new Uint8Array(0)), []);
  assert.deepEqual(nalUnits(b(0xff, 0xd8, 0xff, 0xd9)), []);
  assert.deepEqual(nalUnits(b(0, 0, 1)), []); // a start code with no unit after it
  assert.deepEqual(nalUnits(b(0, 0, 0, 1, 0, 0, 1, 0x41)).map((u) => u.type), [NAL.SLICE]);
  // An ArrayBuffer and a subarray view work the same way.
  assert.equal(nalUnits(au.slice().buffer).length, 4);
  const padded = new Uint8Array(au.length + 5); padded.set(au, 5);
  assert.equal(nalUnits(padded.subarray(5)).length, 4);
  // High profile SPS from above: avc1.640028.
  assert.equal(avc1CodecString(au), 'avc1.640028');
});

test('avc1String and avc1CodecString', () => {
  assert.equal(avc1String(0x42, 0xc0, 0x1e), 'avc1.42C01E'); // PROTOCOL.md's example
  assert.equal(avc1String(0x42, 0xe0, 0x1f), 'avc1.42E01F'); // what the broadcast page encodes
  assert.equal(avc1String(0x4d, 0x40, 0x33), 'avc1.4D4033');
  assert.equal(avc1String(0, 0, 0), 'avc1.000000');
  assert.throws(() => avc1String(256, 0, 0), RangeError);
  assert.throws(() => avc1String(-1, 0, 0), RangeError);
  assert.throws(() => avc1String(0x42, 0.5, 0), RangeError);
  assert.equal(avc1CodecString(parseFrame(msg(V.get('h264-keyframe'))).payload), 'avc1.42C01E');
  assert.equal(avc1CodecString(parseFrame(msg(V.get('h264-delta-frame'))).payload), null);
  // An SPS cut short before level_idc gives no string.
  assert.equal(avc1CodecString(Uint8Array.from([0, 0, 1, 0x67, 0x42, 0xc0])), null);
});

test('KeyframeGate: starts at a keyframe, drops to the next one when behind or told to', () => {
  const gate = new KeyframeGate({ maxQueue: 3, maxBurst: 10 });
  assert.equal(gate.waiting, true);
  assert.equal(gate.reason, 'start');
  // Delta frames before the first keyframe cannot be decoded.
  assert.equal(gate.admit(false, 0), 'drop');
  assert.equal(gate.admit(true, 0), 'decode');
  assert.equal(gate.waiting, false);
  // The GOP burst after a start: the queue may grow to maxBurst ...
  for (const q of [1, 2, 3, 4, 7, 10, 9, 5]) assert.equal(gate.admit(false, q), 'decode');
  // ... until it has drained to maxQueue; then the usual limit holds.
  assert.equal(gate.admit(false, 3), 'decode');
  assert.equal(gate.burst, null);
  assert.equal(gate.admit(false, 3), 'decode'); // at the limit: still keeping up
  // Behind: this delta and every following one up to the next keyframe are dropped,
  // even once the queue has drained.
  assert.equal(gate.admit(false, 4), 'drop');
  assert.equal(gate.reason, 'behind');
  assert.equal(gate.admit(false, 0), 'drop');
  // No burst allowance after falling behind: the relay sends no burst then.
  assert.equal(gate.admit(true, 1), 'decode');
  assert.equal(gate.admit(false, 4), 'drop');
  assert.equal(gate.admit(true, 0), 'decode');
  assert.equal(gate.admit(false, 1), 'decode');
  // A keyframe while the decoder is still full: discard what it holds, decode this.
  assert.equal(gate.admit(true, 9), 'reset');
  assert.equal(gate.admit(false, 0), 'decode');
  // After a reconnect: a burst that does not drain within maxBurst is behind too.
  gate.resync('reconnect', { burst: true });
  assert.equal(gate.admit(false, 0), 'drop');
  assert.equal(gate.admit(true, 0), 'decode');
  assert.equal(gate.admit(false, 10), 'decode');
  assert.equal(gate.admit(false, 11), 'drop');
  assert.equal(gate.reason, 'behind');
  // The burst allowance also ends after maxBurst frames, drained or not.
  gate.resync('reconnect', { burst: true });
  assert.equal(gate.admit(true, 0), 'decode');
  for (let i = 0; i < 10; i++) assert.equal(gate.admit(false, 2), 'decode');
  assert.equal(gate.admit(false, 5), 'drop');
  // During a burst a keyframe resets only beyond maxBurst.
  gate.resync('reconnect', { burst: true });
  assert.equal(gate.admit(true, 0), 'decode');
  assert.equal(gate.admit(true, 9), 'decode');
  assert.equal(gate.admit(true, 11), 'reset');
  // After a decoder error the caller resyncs.
  gate.resync('decoder error');
  assert.equal(gate.reason, 'decoder error');
  assert.equal(gate.admit(false, 0), 'drop');
  assert.equal(gate.admit(true, 0), 'decode');
  assert.equal(gate.reason, '');
  assert.equal(gate.admit(false, 4), 'drop');
});

test('baselineCodecFor: level 3.1 unless the size or rate needs more', () => {
  assert.equal(baselineCodecFor(320, 240, 15), 'avc1.42E01F');
  assert.equal(baselineCodecFor(640, 480, 30), 'avc1.42E01F');
  assert.equal(baselineCodecFor(1280, 720, 30), 'avc1.42E01F'); // 3600 macroblocks: the limit
  assert.equal(baselineCodecFor(1280, 720, 60), 'avc1.42E020'); // 216000 MB/s: level 3.2
  assert.equal(baselineCodecFor(1920, 1080, 30), 'avc1.42E028'); // 8160 macroblocks: level 4.0
  assert.equal(baselineCodecFor(1920, 1080, 60), 'avc1.42E02A');
  assert.equal(baselineCodecFor(3840, 2160, 30), 'avc1.42E033');
  assert.equal(baselineCodecFor(8192, 8192, 30), null);
});
