// roost demo page: a 1:1 peer-to-peer call (media mode "none").
//
// Signalling goes over the room channel `room:<id>` (docs/media.md):
//   signal {to, sdp:{type,sdp}} / {to, candidate}  -> peer gets {from, ...}
//   status {muted, camera}                          -> merged into room state
//   data   {text}                                   -> others get {from, data}
// The participant whose id sorts first offers; the other answers. Every
// offer starts a fresh session: the answerer drops any old connection when
// one arrives, and the offerer makes a new one whenever the peer (re)joins.
// window.roost exposes the live objects for tests and for poking around.
//
// Janus mode (the server says "media":"janus" in /healthz): the media goes
// through roost's Janus VideoRoom and the page signals only with the
// server, as the peer "media": it publishes once (its offer to "media",
// the answer from "media") and gets one offer per other participant
// ({from:"media", feed:"<user>", sdp}) that it answers with the same feed.
// {from:"media", renegotiate:true} asks for a fresh publisher offer.
import { Socket, Presence } from '/static/vendor/phoenix.mjs';

const $ = (id) => document.getElementById(id);

let socket = null;
let channel = null;
let presence = null;
let me = null;
let room = null;
let localStream = null;
let pc = null;          // the RTCPeerConnection of the current session
let peer = null;        // the user id it is with
let pendingIce = [];    // candidates that came before the remote description
let signals = Promise.resolve(); // signals are handled one at a time, in order
let roomState = null;
const myStatus = { muted: false, camera: true };
let mode = 'none';      // media mode of the server: 'none' or 'janus'
let pubPc = null;       // janus: the publisher connection
const subs = new Map(); // janus: feed user -> {pc, pendingIce}

window.roost = {
  get pc() { return pc; },
  get peer() { return peer; },
  get channel() { return channel; },
  get state() { return roomState; },
  get user() { return me; },
  get mode() { return mode; },
  get pubPc() { return pubPc; },
  get subs() { return subs; },
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
  room = roomId;
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
  $('local-video').srcObject = localStream;

  socket = new Socket('/socket', { params: { token } });
  socket.onOpen(() => setConn('connected'));
  socket.onError(() => setConn('connection lost, retrying…'));
  socket.connect();

  channel = socket.channel(`room:${roomId}`, {});
  channel.on('signal', (msg) => { signals = signals.then(() => onSignal(msg)).catch(logError); });
  channel.on('room_status', renderState);
  channel.on('data', (msg) => addMessage(msg.from, msg.data?.text ?? JSON.stringify(msg.data)));

  presence = new Presence(channel);
  presence.onJoin((id, current) => {
    // A new session with the peer each time it (re)joins: a reload shows
    // up as a second meta while the old one may still be listed.
    if (mode === 'none' && id !== me && shouldOffer(id)) {
      signals = signals.then(() => startSession(id, true)).catch(logError);
    }
  });
  presence.onLeave((id, current) => {
    if (mode === 'janus' && current.metas.length === 0) dropFeed(id);
    else if (id === peer && current.metas.length === 0) endSession();
  });
  presence.onSync(renderPeople);

  await new Promise((resolve, reject) => {
    channel.join()
      .receive('ok', (state) => { renderState(state); resolve(); })
      .receive('error', (r) => reject(new Error(`join refused: ${r?.reason ?? 'error'}`)))
      .receive('timeout', () => reject(new Error('join timed out')));
  });

  if (mode === 'janus') signals = signals.then(publish).catch(logError);
  $('join').hidden = true;
  $('call').hidden = false;
  $('local-name').textContent = me;
  $('room-label').textContent = `room ${roomId}`;
  document.title = `roost · ${roomId}`;
  pushStatus();
}

function leave(reload = true) {
  endSession();
  pubPc?.close();
  pubPc = null;
  for (const f of [...subs.keys()]) dropFeed(f);
  channel?.leave();
  socket?.disconnect();
  localStream?.getTracks().forEach((t) => t.stop());
  channel = socket = localStream = null;
  if (reload) location.reload();
}
$('leave').addEventListener('click', () => leave());

// ---- the peer connection ------------------------------------------------------

// Deterministic: of two participants, the lexicographically smaller id offers.
function shouldOffer(other) { return me < other; }

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
    $('remote-video').srcObject = e.streams[0] || new MediaStream([e.track]);
    $('remote-placeholder').hidden = true;
  };
  conn.onconnectionstatechange = () => {
    if (conn === pc) setConn(`peer ${other}: ${conn.connectionState}`);
  };
  $('remote-name').textContent = other;
  renderFlags();
  return conn;
}

async function startSession(other, offer) {
  const conn = newPeerConnection(other);
  if (!offer) return;
  const desc = await conn.createOffer();
  await conn.setLocalDescription(desc);
  if (conn === pc) push('signal', { to: other, sdp: { type: desc.type, sdp: desc.sdp } });
}

function endSession() {
  if (pc && mode !== 'janus') pc.close();
  pc = null;
  peer = null;
  pendingIce = [];
  $('remote-video').srcObject = null;
  $('remote-placeholder').hidden = false;
  $('remote-name').textContent = '';
  renderFlags();
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
  conn.onconnectionstatechange = () => { if (conn === pubPc) setConn(`media: ${conn.connectionState}`); };
  const desc = await conn.createOffer();
  await conn.setLocalDescription(desc);
  push('signal', { to: 'media', sdp: { type: desc.type, sdp: desc.sdp } });
}

function dropFeed(feed) {
  const s = subs.get(feed);
  if (!s) return;
  s.pc.close();
  subs.delete(feed);
  if (peer === feed) endSession();
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
    subs.get(feed)?.pc.close();
    const conn = new RTCPeerConnection({ iceServers: [] });
    const s = { pc: conn, pendingIce: [] };
    subs.set(feed, s);
    conn.onicecandidate = (e) => {
      if (e.candidate && subs.get(feed) === s) push('signal', { to: 'media', feed, candidate: e.candidate.toJSON() });
    };
    conn.ontrack = (e) => {
      if (subs.get(feed) !== s) return;
      if (!peer || peer === feed) {
        peer = feed;
        pc = conn;
        const v = $('remote-video');
        const st = v.srcObject instanceof MediaStream && v.srcObject.__feed === feed ? v.srcObject : new MediaStream();
        st.__feed = feed;
        st.addTrack(e.track);
        v.srcObject = st;
        $('remote-placeholder').hidden = true;
        $('remote-name').textContent = feed;
        renderFlags();
      }
    };
    await conn.setRemoteDescription(sdp);
    for (const c of s.pendingIce) await conn.addIceCandidate(c).catch(logError);
    s.pendingIce = [];
    const answer = await conn.createAnswer();
    await conn.setLocalDescription(answer);
    push('signal', { to: 'media', feed, sdp: { type: answer.type, sdp: answer.sdp } });
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
  renderFlags();
});

$('camera').addEventListener('click', () => {
  myStatus.camera = !myStatus.camera;
  localStream?.getVideoTracks().forEach((t) => { t.enabled = myStatus.camera; });
  $('camera').setAttribute('aria-pressed', String(!myStatus.camera));
  $('camera').textContent = myStatus.camera ? 'Camera off' : 'Camera on';
  pushStatus();
  renderFlags();
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
  renderPeople();
  renderFlags();
}

function flagsOf(status) {
  const f = [];
  if (status?.muted) f.push('muted');
  if (status?.camera === false) f.push('camera off');
  return f;
}

function renderFlags() {
  $('local-flags').textContent = flagsOf(myStatus).join(' · ');
  const st = peer && roomState?.participants?.[peer]?.status;
  $('remote-flags').textContent = flagsOf(st).join(' · ');
}

function renderPeople() {
  if (!presence) return;
  const online = new Set(presence.list((id) => id));
  const parts = roomState?.participants || {};
  const ids = [...new Set([...online, ...Object.keys(parts)])].sort();
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
