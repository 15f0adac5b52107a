// index.js — the stream list: polls /api/streams every 2 s and shows each live stream as
// an <li class="stream" data-name=NAME> with a refreshed snapshot thumbnail, viewer
// count, fps, resolution and links; an empty state when nothing is live; and a form that
// validates a new stream name and goes to /broadcast/NAME.
import { tokenFromQuery, withToken, STREAM_NAME_RE } from './vswa.js';

const REFRESH_MS = 2000;
const token = tokenFromQuery();
const $ = (id) => document.getElementById(id);
const list = $('streams');

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  for (const c of children) node.append(c);
  return node;
}

function createItem(name) {
  const enc = encodeURIComponent(name);
  const img = el('img', { alt: `latest frame of ${name}`, loading: 'lazy', decoding: 'async' });
  const li = el('li', { className: 'stream' },
    el('a', { className: 'thumb', href: withToken(`/view/${enc}`, token), title: `watch ${name}` },
      img, el('span', { className: 'badge live', textContent: 'live' })),
    el('div', { className: 'body' },
      el('div', { className: 'name', textContent: name }),
      el('div', { className: 'meta' }),
      el('div', { className: 'actions' },
        el('a', { href: withToken(`/view/${enc}`, token), textContent: 'Watch' }),
        el('a', { href: `/broadcast/${enc}`, textContent: 'Broadcast' }),
        el('a', { href: withToken(`/stream/${enc}.mjpg`, token), textContent: 'MJPEG', target: '_blank', rel: 'noopener' }),
        el('a', { href: withToken(`/snapshot/${enc}.jpg`, token), textContent: 'Snapshot', target: '_blank', rel: 'noopener' }))));
  li.dataset.name = name;
  return li;
}

function describe(s) {
  const parts = [];
  // In a cluster (`vswa-relay --cluster`) count the viewers of every relay and say
  // which relay has the publisher.
  const viewers = Number(s.viewers_total ?? s.viewers) || 0;
  parts.push(`${viewers} viewer${viewers === 1 ? '' : 's'}`);
  if (typeof s.relay === 'string' && s.relay) parts.push(`published on ${s.relay}`);
  if (s.standby) parts.push('standby: starts when watched');
  else if (Number.isFinite(s.fps)) parts.push(`${s.fps.toFixed(1)} fps`);
  if (s.width && s.height) parts.push(`${s.width}×${s.height}`);
  if (Number.isFinite(s.bitrate_kbps)) parts.push(`${Math.round(s.bitrate_kbps)} kbit/s`);
  return parts.join(' · ');
}

// Load the new snapshot off-screen and swap it in only once it decoded: no flicker.
function refreshThumb(img, name) {
  const next = new Image();
  next.onload = () => { img.src = next.src; };
  next.src = withToken(`/snapshot/${encodeURIComponent(name)}.jpg?t=${Date.now()}`, token);
}

function render(streams) {
  const live = streams.filter((s) => s && typeof s.name === 'string' && s.live !== false);
  const waiting = streams.filter((s) => s && typeof s.name === 'string' && s.live === false);
  const existing = new Map([...list.querySelectorAll('li.stream')].map((li) => [li.dataset.name, li]));
  live.sort((a, b) => a.name.localeCompare(b.name));
  live.forEach((s, i) => {
    let li = existing.get(s.name);
    existing.delete(s.name);
    if (!li) li = createItem(s.name);
    if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
    li.querySelector('.meta').textContent = describe(s);
    // An on-demand sender idles while nobody watches: the thumbnail is its last frame.
    const badge = li.querySelector('.badge');
    badge.textContent = s.standby ? 'standby' : 'live';
    badge.className = `badge ${s.standby ? 'standby' : 'live'}`;
    refreshThumb(li.querySelector('img'), s.name);
  });
  for (const li of existing.values()) li.remove();
  $('empty').classList.toggle('hidden', live.length > 0);
  const w = $('waiting');
  w.classList.toggle('hidden', waiting.length === 0);
  w.textContent = waiting.length
    ? `Waiting for a publisher: ${waiting.map((s) => `${s.name} (${Number(s.viewers) || 0} viewers)`).join(', ')}`
    : '';
}

let timer = null;
async function refresh() {
  clearTimeout(timer);
  try {
    const res = await fetch(withToken('/api/streams', token), { cache: 'no-store' });
    if (res.status === 401) throw new Error('the relay refused the token (add ?token=YOUR_WATCH_TOKEN to this page\'s URL)');
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const body = await res.json();
    render(Array.isArray(body.streams) ? body.streams : []);
    $('message').textContent = '';
  } catch (e) {
    $('message').textContent = `Could not load the stream list: ${e.message}. Retrying…`;
  } finally {
    timer = setTimeout(refresh, REFRESH_MS);
  }
}

function init() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  $('send-host').textContent = `Here HOST is ${location.host}, for example: vswa-send --url ${scheme}://${location.host}/ws/publish/mycam`;
  $('api-link').href = withToken('/api/streams', token);
  $('new-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = $('new-name').value.trim();
    if (!STREAM_NAME_RE.test(name)) {
      $('form-error').textContent = 'Use 1-64 characters: letters A-Z a-z, digits 0-9, "_" and "-".';
      $('new-name').focus();
      return;
    }
    $('form-error').textContent = '';
    location.href = withToken(`/broadcast/${encodeURIComponent(name)}`, token);
  });
  $('new-name').addEventListener('input', () => { $('form-error').textContent = ''; });
  document.addEventListener('visibilitychange', () => { if (!document.hidden) refresh(); });
  refresh();
}

init();
