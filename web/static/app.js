// roost demo page: a call on the room channel, with the media either peer to
// peer (media mode "none": 1:1) or through roost's Janus VideoRoom (mode
// "janus": any number of participants).
//
// Signalling goes over the room channel `room:<id>` (docs/media.md):
//   signal {to, sdp:{type,sdp}} / {to, candidate}  -> peer gets {from, ...}
//   status {muted, camera}                          -> merged into room state
//   data   {text}                                   -> others get {from, data}
//
// Peer to peer the call is 1:1, and every page works out the same two
// callers without asking anyone: the two participants who have been in the
// room longest, ranked by the joined_at of their room-state entry (carried
// by the room state and by every Presence meta; ties: the smaller id). An
// entry lives on through a reload or a dropped connection (it is only
// "connected: false" for the server's --reconnect-grace), so a caller who
// reloads keeps the place, while one who leaves (Leave, or the grace
// running out) goes and the next participant waiting takes the place.
// Everyone else sees a notice instead of a remote tile, and signals from
// anyone but this page's partner are ignored. Of the two callers the one
// whose id sorts first offers; the other answers. Every offer starts a
// fresh session: the answerer drops any old connection when one arrives,
// and the offerer makes a new one whenever its partner appears in Presence
// (a (re)join, a reload) or becomes its partner.
//
// Janus mode (the server says "media":"janus" in /healthz): the page
// signals only with the server, as the peer "media": it publishes once (its
// offer to "media", the answer from "media") and gets one offer per other
// participant ({from:"media", feed:"<user>", sdp}) that it answers with the
// same feed; each such subscription is one tile. {from:"media",
// renegotiate:true} asks for a fresh publisher offer (and drops every
// subscription: the server subscribes again once the new one is up).
//
// Tiles: #tiles holds one <figure class="tile remote" data-user="..."> per
// remote participant (sorted by id), the "waiting" placeholder while there
// is none, and your own tile (.self, last). One remote: it fills the stage and yours floats in
// its corner; more: a grid sized to fit the stage.
//
// window.roost exposes the live objects for tests and for poking around.
import { Socket, Presence } from '/static/vendor/phoenix.mjs';

const $ = (id) => document.getElementById(id);

let socket = null;
let channel = null;
let presence = null;
let me = null;
let localStream = null;
let pc = null;          // p2p: the RTCPeerConnection of the current session
let peer = null;        // p2p: the user id it is with
let partner = null;     // p2p: the other caller when this page is one of the two, else null
const rejoined = new Set(); // p2p: users (this page's included) with a new Presence meta since the last pairUp()
const DEBUG = new URLSearchParams(location.search).has('debug');
let pendingIce = [];    // p2p: candidates that came before the remote description
let signals = Promise.resolve(); // signals are handled one at a time, in order
let roomState = null;
const myStatus = { muted: false, camera: true };
let mode = 'none';      // media mode of the server: 'none' or 'janus'
let pubPc = null;       // janus: the publisher connection
const subs = new Map(); // janus: feed user -> {pc, pendingIce, stream}, in arrival order
const tiles = new Map(); // user -> tile (remote participants only)

// The first remote connection: p2p the session, janus the first subscription.
function firstRemote() {
  if (mode !== 'janus') return pc ? { feed: peer, pc } : null;
  for (const [feed, s] of subs) return { feed, pc: s.pc };
  return null;
}

window.roost = {
  get pc() { return firstRemote()?.pc ?? null; },
  get peer() { return firstRemote()?.feed ?? null; },
  /** The remote participants with a tile, in tile order (sorted). */
  feeds() { return [...tiles.keys()].sort(); },
  get channel() { return channel; },
  get state() { return roomState; },
  get user() { return me; },
  get mode() { return mode; },
  get pubPc() { return pubPc; },
  get subs() { return subs; },
  /** Whether this page takes part in the call: janus always, p2p when one of the two callers. */
  get inCall() { return mode === 'janus' || callers().includes(me); },
  /** p2p: the (at most two) participants who form the call, first comer first; janus: []. */
  callers() { return mode === 'janus' ? [] : callers(); },
};

// ---- joining ------------------------------------------------------------------

const params = new URLSearchParams(location.search);
if (params.get('room')) $('room').value = params.get('room');
if (params.get('name')) $('name').value = params.get('name');

$('join').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('join-error').textContent = '';
  const button = e.submitter || $('join').querySelector('button');
  button.disabled = true;
  try {
    await join($('room').value.trim(), $('name').value.trim(), $('token').value.trim());
  } catch (err) {
    $('join-error').textContent = err.message || String(err);
    leave(false);
  } finally {
    button.disabled = false;
  }
});

async function devToken(sub, roomId) {
  const res = await fetch('/dev/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ sub, room: roomId }),
  });
  if (res.status === 404) {
    $('token-box').open = true;
    throw new Error('This server has real credentials: paste a token for this room.');
  }
  const body = await res.json();
  if (!res.ok) throw new Error(body?.error?.message || `token: HTTP ${res.status}`);
  return body.token;
}

async function join(roomId, name, token) {
  if (!roomId || !name) throw new Error('Enter a room and a name.');
  me = name;
  if (!token) token = await devToken(name, roomId);
  try {
    const health = await (await fetch('/healthz')).json();
    mode = health.media === 'janus' ? 'janus' : 'none';
  } catch { mode = 'none'; }

  try {
    localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  } catch (err) {
    throw new Error(`No camera or microphone: ${err.message}`);
  }
  const self = makeTile(me, true);
  self.video.id = 'local-video';
  self.video.muted = true;
  self.video.srcObject = localStream;

  socket = new Socket('/socket', { params: { token } });
  socket.onOpen(() => setConn('connected'));
  socket.onError(() => setConn('connection lost, retrying…'));
  socket.connect();

  channel = socket.channel(`room:${roomId}`, {});
  channel.on('signal', (msg) => { signals = signals.then(() => onSignal(msg)).catch(logError); });
  channel.on('room_status', renderState);
  channel.on('data', (msg) => addMessage(msg.from, msg.data?.text ?? JSON.stringify(msg.data)));

  presence = new Presence(channel);
  presence.onJoin((id, current, joined) => {
    // p2p: the offerer starts a new session each time its partner (re)joins
    // or this page itself joins again after its connection dropped (pairUp,
    // right after, in onSync). Only a meta with a new phx_ref counts: a
    // join diff may repeat one that presence_state already listed.
    if (mode !== 'none') return;
    const known = new Set((current?.metas || []).map((m) => m.phx_ref));
    if (joined.metas.some((m) => !known.has(m.phx_ref))) rejoined.add(id);
  });
  presence.onLeave((id, current) => {
    if (current.metas.length === 0 && mode === 'janus') dropFeed(id);
  });
  presence.onSync(() => {
    if (mode === 'none') pairUp();
    renderPeople();
    renderTiles();
  });

  await new Promise((resolve, reject) => {
    channel.join()
      .receive('ok', (state) => { renderState(state); resolve(); })
      .receive('error', (r) => reject(new Error(`join refused: ${r?.reason ?? 'error'}`)))
      .receive('timeout', () => reject(new Error('join timed out')));
  });

  if (mode === 'janus') signals = signals.then(publish).catch(logError);
  $('join').hidden = true;
  $('call').hidden = false;
  $('room-label').textContent = `room ${roomId}`;
  document.title = `roost · ${roomId}`;
  pushStatus();
  layoutTiles();
}

function leave(reload = true) {
  endSession();
  partner = null;
  rejoined.clear();
  pubPc?.close();
  pubPc = null;
  for (const f of [...subs.keys()]) dropFeed(f);
  channel?.leave();
  socket?.disconnect();
  localStream?.getTracks().forEach((t) => t.stop());
  selfTile.fig?.remove(); // a failed join may be tried again
  selfTile.fig = null;
  channel = socket = localStream = null;
  if (reload) location.reload();
}
$('leave').addEventListener('click', () => leave());

// ---- tiles --------------------------------------------------------------------

const selfTile = { fig: null, video: null };

/** A tile for `user`: figure[data-user] > video, cover (avatar), caption. */
function makeTile(user, self = false) {
  const fig = document.createElement('figure');
  fig.className = self ? 'tile self' : 'tile remote';
  fig.dataset.user = user;
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  const cover = document.createElement('div');
  cover.className = 'cover';
  const avatar = document.createElement('span');
  avatar.className = 'avatar';
  avatar.textContent = [...user][0]?.toUpperCase() ?? '?';
  avatar.style.setProperty('--hue', String(hue(user)));
  const note = document.createElement('span');
  note.className = 'note';
  cover.append(avatar, note);
  const cap = document.createElement('figcaption');
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = self ? `${user} (you)` : user;
  const flags = document.createElement('span');
  flags.className = 'flags';
  const media = document.createElement('span');
  media.className = 'media';
  cap.append(name, flags, media);
  fig.append(video, cover, cap);
  const live = () => { fig.classList.toggle('live', video.videoWidth > 0); };
  video.addEventListener('loadeddata', live);
  video.addEventListener('resize', live);
  video.addEventListener('emptied', live);
  const tile = { fig, video, note, flags, media };
  if (self) {
    Object.assign(selfTile, tile);
    $('tiles').append(fig);
  } else {
    // Remote tiles sorted by user id (stable across renegotiations), yours last.
    const next = [...tiles.keys()].filter((u) => u > user).sort()[0];
    tiles.set(user, tile);
    $('tiles').insertBefore(fig, next ? tiles.get(next).fig : selfTile.fig);
  }
  renderTile(user);
  layoutTiles();
  return tile;
}

function remoteTile(user) { return tiles.get(user) || makeTile(user); }

function removeTile(user) {
  const t = tiles.get(user);
  if (!t) return;
  t.video.srcObject = null;
  t.fig.remove();
  tiles.delete(user);
  layoutTiles();
}

function hue(s) {
  let h = 0;
  for (const c of s) h = (h * 31 + c.codePointAt(0)) % 360;
  return h;
}

// connecting / connected / failed: Janus's word for the participant's
// publisher (status.media), narrowed by this page's own connection for it.
function mediaHint(user) {
  const conn = user === me
    ? (mode === 'janus' ? pubPc : null)
    : (mode === 'janus' ? subs.get(user)?.pc : (user === peer ? pc : null));
  const own = conn?.connectionState;
  const local = own === 'connected' ? 'connected'
    : own === 'failed' || own === 'closed' ? 'failed'
      : own === 'disconnected' ? 'disconnected'
        : own ? 'connecting' : null;
  if (mode !== 'janus') return local;
  const published = roomState?.participants?.[user]?.status?.media ?? null;
  if (published !== 'connected') return published ?? local;
  return user === me ? published : local ?? published;
}

function renderTile(user) {
  const t = user === me ? selfTile : tiles.get(user);
  if (!t?.fig) return;
  const st = user === me ? myStatus : roomState?.participants?.[user]?.status;
  const flags = flagsOf(st);
  t.flags.replaceChildren(...flags.map((f) => {
    const s = document.createElement('span');
    s.className = 'flag';
    s.textContent = f;
    return s;
  }));
  const hint = mediaHint(user);
  if (hint) t.fig.dataset.media = hint;
  else delete t.fig.dataset.media;
  t.media.textContent = hint && hint !== 'connected' ? hint : '';
  const cameraOff = st?.camera === false;
  t.fig.classList.toggle('camera-off', cameraOff);
  t.note.textContent = cameraOff ? 'camera off' : hint === 'failed' ? 'no media' : 'connecting…';
}

function renderTiles() {
  renderTile(me);
  for (const user of tiles.keys()) renderTile(user);
  let text;
  if (mode === 'none') {
    text = !partner ? 'Waiting for someone to join…'
      : isPresent(partner) ? `Connecting to ${partner}…`
        : `${partner} dropped out — waiting for them to come back…`;
  } else {
    const others = presence ? presence.list((id) => id).filter((id) => id !== me) : [];
    text = others.length ? `Connecting to ${others.join(', ')}…` : 'Waiting for someone to join…';
  }
  $('waiting-text').textContent = text;
  renderBusy();
}

// p2p, for a participant who is not one of the two callers: a notice in
// place of the remote tile.
function renderBusy() {
  const pair = mode === 'none' && me ? callers() : [];
  const busy = pair.length === 2 && !pair.includes(me);
  const box = $('busy');
  if (busy) {
    const key = pair.join('\n');
    if (box.dataset.pair !== key) {
      box.dataset.pair = key;
      $('busy-avatars').replaceChildren(...pair.map((u) => {
        const a = document.createElement('span');
        a.className = 'avatar';
        a.textContent = [...u][0]?.toUpperCase() ?? '?';
        a.title = u;
        a.style.setProperty('--hue', String(hue(u)));
        return a;
      }));
      $('busy-title').textContent = `${pair[0]} and ${pair[1]} are in a 1:1 call`;
    }
  } else {
    delete box.dataset.pair;
  }
  if (box.hidden === busy) {
    box.hidden = !busy;
    layoutTiles();
  }
}

// One remote tile: it fills the stage, yours floats in its corner ("pip").
// More: everyone in a grid, the column count chosen so that 16:9 tiles are
// as large as the stage allows (narrow screens: one or two columns, scrolling).
const GAP = 12;
function layoutTiles() {
  const box = $('tiles');
  const remote = tiles.size;
  $('waiting').hidden = remote > 0 || !$('busy').hidden;
  const pip = remote <= 1;
  box.dataset.layout = pip ? 'pip' : 'grid';
  const n = pip ? 1 : remote + 1;
  const W = box.clientWidth;
  const H = box.clientHeight;
  if (!W) return;
  let width = 0;
  if (matchMedia('(max-width: 800px)').matches) {
    const cols = n >= 3 ? 2 : 1;
    width = (W - GAP * (cols - 1)) / cols;
  } else {
    for (let cols = 1; cols <= n; cols++) {
      const rows = Math.ceil(n / cols);
      const w = Math.min((W - GAP * (cols - 1)) / cols, ((H - GAP * (rows - 1)) / rows) * 16 / 9);
      width = Math.max(width, w);
    }
  }
  box.style.setProperty('--tile-w', `${Math.max(120, Math.floor(width))}px`);
  // The p2p notice may be taller than 16:9: your tile floats in its corner.
  const busy = $('busy');
  if (busy.hidden) box.style.removeProperty('--remote-h');
  else box.style.setProperty('--remote-h', `${busy.offsetHeight}px`);
}
new ResizeObserver(layoutTiles).observe($('tiles'));

// ---- the peer connection (p2p) -------------------------------------------------

// Deterministic: of the two callers, the lexicographically smaller id offers.
function shouldOffer(other) { return me < other; }

function isPresent(user) {
  return presence ? presence.list((id) => id).includes(user) : false;
}

/**
 * Everyone with a place in the room, first comer first: the participants of
 * the room state (connected or within the reconnect grace) and whoever
 * Presence lists, ranked by joined_at (a user's newest value from either:
 * it only grows, on a join after the entry was gone), then by id.
 */
function ranked() {
  const at = new Map();
  const note = (u, t) => {
    const n = Number.isFinite(t) ? t : Infinity;
    at.set(u, at.has(u) ? Math.max(at.get(u), n) : n);
  };
  for (const [u, p] of Object.entries(roomState?.participants || {})) note(u, p?.joined_at);
  if (presence) {
    presence.list((u, { metas }) => {
      for (const m of metas) note(u, m.joined_at ?? m.online_at);
    });
  }
  return [...at.keys()].sort((a, b) => {
    const ta = at.get(a), tb = at.get(b);
    if (ta !== tb) return ta < tb ? -1 : 1;
    return a < b ? -1 : a > b ? 1 : 0;
  });
}

/** p2p: the (at most two) participants who form the call. */
function callers() { return ranked().slice(0, 2); }

/**
 * p2p: works out this page's partner from the room state and Presence, and
 * starts, keeps or ends the session to match. Called whenever either
 * changes; every page reaches the same pair from the same events.
 */
function pairUp() {
  const pair = callers();
  const next = pair.length === 2 && pair.includes(me) ? pair.find((u) => u !== me) : null;
  const here = next !== null && isPresent(next);
  // The session ends when its peer is gone (no meta left) or no longer the partner.
  if (peer && (peer !== next || !isPresent(peer))) endSession();
  const fresh = next !== partner || (next !== null && (rejoined.has(next) || rejoined.has(me)));
  rejoined.clear();
  partner = next;
  if (fresh && here && shouldOffer(next)) {
    signals = signals.then(() => startSession(next, true)).catch(logError);
  }
}

function newPeerConnection(other) {
  endSession();
  peer = other;
  pendingIce = [];
  const conn = new RTCPeerConnection({ iceServers: [] });
  pc = conn;
  for (const track of localStream.getTracks()) conn.addTrack(track, localStream);
  conn.onicecandidate = (e) => {
    if (e.candidate && conn === pc) push('signal', { to: other, candidate: e.candidate.toJSON() });
  };
  conn.ontrack = (e) => {
    if (conn !== pc) return;
    const v = remoteTile(other).video;
    const stream = e.streams[0] || new MediaStream([e.track]);
    if (v.srcObject !== stream) v.srcObject = stream;
  };
  conn.onconnectionstatechange = () => {
    if (conn !== pc) return;
    setConn(`peer ${other}: ${conn.connectionState}`);
    renderTile(other);
  };
  remoteTile(other);
  return conn;
}

async function startSession(other, offer) {
  if (other !== partner) return; // the pair changed while this waited its turn
  const conn = newPeerConnection(other);
  if (!offer) return;
  const desc = await conn.createOffer();
  await conn.setLocalDescription(desc);
  if (conn === pc) push('signal', { to: other, sdp: { type: desc.type, sdp: desc.sdp } });
}

function endSession() {
  pc?.close();
  if (peer) removeTile(peer);
  pc = null;
  peer = null;
  pendingIce = [];
}

// ---- janus mode ----------------------------------------------------------------

async function publish() {
  pubPc?.close();
  const conn = new RTCPeerConnection({ iceServers: [] });
  pubPc = conn;
  for (const track of localStream.getTracks()) conn.addTrack(track, localStream);
  conn.onicecandidate = (e) => {
    if (e.candidate && conn === pubPc) push('signal', { to: 'media', candidate: e.candidate.toJSON() });
  };
  conn.onconnectionstatechange = () => {
    if (conn !== pubPc) return;
    setConn(`media: ${conn.connectionState}`);
    renderTile(me);
  };
  const desc = await conn.createOffer();
  await conn.setLocalDescription(desc);
  push('signal', { to: 'media', sdp: { type: desc.type, sdp: desc.sdp } });
}

/** Forgets the subscription to `feed` and its tile. */
function dropFeed(feed) {
  subs.get(feed)?.pc.close();
  subs.delete(feed);
  removeTile(feed);
}

// A subscription to `feed`: one connection that only receives, one tile.
// A fresh offer for a feed replaces its connection and keeps its tile.
async function subscribe(feed, sdp) {
  subs.get(feed)?.pc.close();
  const conn = new RTCPeerConnection({ iceServers: [] });
  const s = { pc: conn, pendingIce: [], stream: new MediaStream() };
  subs.set(feed, s);
  const tile = remoteTile(feed);
  tile.video.srcObject = null;
  conn.onicecandidate = (e) => {
    if (e.candidate && subs.get(feed) === s) push('signal', { to: 'media', feed, candidate: e.candidate.toJSON() });
  };
  conn.ontrack = (e) => {
    if (subs.get(feed) !== s) return;
    s.stream.addTrack(e.track);
    tile.video.srcObject = s.stream;
  };
  conn.onconnectionstatechange = () => { if (subs.get(feed) === s) renderTile(feed); };
  await conn.setRemoteDescription(sdp);
  for (const c of s.pendingIce) await conn.addIceCandidate(c).catch(logError);
  s.pendingIce = [];
  const answer = await conn.createAnswer();
  await conn.setLocalDescription(answer);
  push('signal', { to: 'media', feed, sdp: { type: answer.type, sdp: answer.sdp } });
  renderTile(feed);
}

async function onMediaSignal({ feed, sdp, candidate, renegotiate }) {
  if (renegotiate) {
    for (const f of [...subs.keys()]) dropFeed(f);
    await publish();
    return;
  }
  if (!feed) { // the publisher connection
    if (sdp?.type === 'answer' && pubPc?.signalingState === 'have-local-offer') {
      await pubPc.setRemoteDescription(sdp);
    } else if (candidate && pubPc) {
      await pubPc.addIceCandidate(candidate).catch(logError);
    }
    return;
  }
  if (sdp?.type === 'offer') {
    await subscribe(feed, sdp);
  } else if (candidate) {
    const s = subs.get(feed);
    if (!s) return;
    if (s.pc.remoteDescription) await s.pc.addIceCandidate(candidate).catch(logError);
    else s.pendingIce.push(candidate);
  }
}

async function onSignal(msg) {
  if (mode === 'janus') {
    if (msg.from === 'media') await onMediaSignal(msg);
    return;
  }
  const { from, sdp, candidate } = msg;
  if (from !== partner) {
    // Not this page's call (e.g. a late candidate from a former partner).
    if (DEBUG) console.warn(`roost: ignored a signal from ${from}, not this page's partner (${partner})`);
    return;
  }
  if (sdp?.type === 'offer') {
    // Every offer opens a new session (the offerer only offers on a (re)join).
    const conn = newPeerConnection(from);
    await conn.setRemoteDescription(sdp);
    await flushIce(conn);
    const answer = await conn.createAnswer();
    await conn.setLocalDescription(answer);
    if (conn === pc) push('signal', { to: from, sdp: { type: answer.type, sdp: answer.sdp } });
  } else if (sdp?.type === 'answer') {
    if (!pc || from !== peer || pc.signalingState !== 'have-local-offer') return;
    await pc.setRemoteDescription(sdp);
    await flushIce(pc);
  } else if (candidate) {
    if (!pc || from !== peer) return;
    if (pc.remoteDescription) await pc.addIceCandidate(candidate).catch(logError);
    else pendingIce.push(candidate);
  }
}

async function flushIce(conn) {
  const queued = pendingIce;
  pendingIce = [];
  for (const c of queued) await conn.addIceCandidate(c).catch(logError);
}

// ---- status, chat, rendering --------------------------------------------------

function push(event, payload) {
  if (!channel) return;
  channel.push(event, payload)
    .receive('error', (r) => logError(new Error(`${event}: ${r?.reason ?? 'error'}`)));
}

function pushStatus() { push('status', { ...myStatus }); }

$('mute').addEventListener('click', () => {
  myStatus.muted = !myStatus.muted;
  localStream?.getAudioTracks().forEach((t) => { t.enabled = !myStatus.muted; });
  $('mute').setAttribute('aria-pressed', String(myStatus.muted));
  $('mute').textContent = myStatus.muted ? 'Unmute' : 'Mute';
  pushStatus();
  renderTile(me);
});

$('camera').addEventListener('click', () => {
  myStatus.camera = !myStatus.camera;
  localStream?.getVideoTracks().forEach((t) => { t.enabled = myStatus.camera; });
  $('camera').setAttribute('aria-pressed', String(!myStatus.camera));
  $('camera').textContent = myStatus.camera ? 'Camera off' : 'Camera on';
  pushStatus();
  renderTile(me);
});

$('chat-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('chat-input').value.trim();
  if (!text) return;
  push('data', { text });
  addMessage(me, text, true);
  $('chat-input').value = '';
});

function addMessage(from, text, mine = false) {
  const li = document.createElement('li');
  if (mine) li.className = 'mine';
  const b = document.createElement('b');
  b.textContent = from;
  li.append(b, document.createTextNode(text));
  $('messages').append(li);
  li.scrollIntoView({ block: 'end' });
}

function renderState(state) {
  roomState = { ...(roomState || {}), ...state };
  const badge = $('room-status');
  badge.hidden = false;
  badge.textContent = roomState.status;
  badge.className = `badge ${roomState.status}`;
  const n = Object.values(roomState.participants || {}).filter((p) => p.connected).length;
  $('room-meta').textContent =
    `v${roomState.version} · ${n} participant${n === 1 ? '' : 's'}` +
    (roomState.viewers ? ` · ${roomState.viewers} watching` : '');
  if (mode === 'none' && presence) pairUp();
  renderPeople();
  renderTiles();
}

function flagsOf(status) {
  const f = [];
  if (status?.muted) f.push('muted');
  if (status?.camera === false) f.push('camera off');
  return f;
}

function renderPeople() {
  if (!presence) return;
  const online = new Set(presence.list((id) => id));
  const parts = roomState?.participants || {};
  const ids = [...new Set([...online, ...Object.keys(parts)])].sort();
  // p2p with more than two: say who the call is between.
  const pair = mode === 'none' && ranked().length > 2 ? callers() : [];
  const ul = $('people');
  ul.replaceChildren(...ids.map((id) => {
    const li = document.createElement('li');
    li.dataset.user = id;
    if (!online.has(id)) li.className = 'away';
    const dot = document.createElement('span');
    dot.className = 'dot';
    const name = document.createElement('span');
    name.textContent = id === me ? `${id} (you)` : id;
    li.append(dot, name);
    if (pair.includes(id)) {
      const tag = document.createElement('span');
      tag.className = 'tag in-call';
      tag.textContent = 'in call';
      li.append(tag);
    }
    for (const f of flagsOf(parts[id]?.status)) {
      const tag = document.createElement('span');
      tag.className = 'tag';
      tag.textContent = f;
      li.append(tag);
    }
    return li;
  }));
}

function setConn(text) { $('conn').textContent = text; }
function logError(err) { console.warn('roost:', err?.message || err); }
