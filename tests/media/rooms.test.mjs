// tests/media/rooms.test.mjs — a RoomServer's side of Janus (roost
// --media janus) with the real `phoenix` client and a real Janus, no
// browser: what happens to Janus requests and VideoRooms around a crash
// and the end of a room.
//
//   - A request in flight when the RoomServer crashes is answered to the
//     restarted one: Janus is paused (SIGSTOP) right before a participant's
//     offer, so the Janus requests it starts stay unanswered; the room is
//     crashed; Janus is resumed; the participant still gets Janus's answer
//     without offering again (the pending requests and the offer ride in
//     the room's backup; the media client keeps answers for an absent
//     room:<id> until it is back).
//   - A participant whose connection dropped loses its Janus handles (media
//     state failed) and, back within the reconnect grace, is asked for a
//     fresh offer ({"from":"media","renegotiate":true}).
//   - roost talks to Janus over wss:// too (--janus-ca: the test's own CA).
//   - The VideoRoom goes when the roost room ends (DELETE /api/rooms/:id):
//     Janus's own "list" no longer shows it.
//
// The offer is a real Chromium offer (tests/media/offer.sdp, no candidates:
// nothing has to connect for Janus to answer it).
//
// Needs tests/media/run.sh (ROOST_JANUS_URL, ROOST_JANUS_CTL,
// ROOST_JANUS_DIR); skipped without it. `make check-media` runs it.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';

import {
  WebSocket, join, mintToken, phxChannel, phxClient, pushAwait, request, startServer,
  waitUntil, withTimeout,
} from '../integration/helpers.mjs';

const JANUS = process.env.ROOST_JANUS_URL;
const CTL = process.env.ROOST_JANUS_CTL;
const DIR = process.env.ROOST_JANUS_DIR;
const skip = JANUS && CTL && DIR ? false : 'needs Janus: run through tests/media/run.sh (make check-media)';
const OFFER = readFileSync(new URL('./offer.sdp', import.meta.url), 'utf8');

let server;
const clients = [];

before(async () => {
  if (skip) return;
  server = await startServer({ args: ['--media', 'janus', '--janus-url', JANUS] });
  // The media client is connected when /healthz says so.
  await waitUntil(async () => (await request(server, 'GET', '/healthz', { apiKey: null })).json?.janus === 'connected',
                  { timeoutMs: 10000, label: 'roost connected to Janus' });
});

after(async () => {
  for (const c of clients) c.close();
  if (!skip) execFileSync('bash', [CTL, 'resume', DIR]);
  await server?.stop();
});

function janusCtl(what) { execFileSync('bash', [CTL, what, DIR]); }

async function member(room, user, srv = server) {
  const c = phxClient(srv, { token: mintToken({ sub: user, room }) });
  clients.push(c);
  await c.connect();
  const chan = phxChannel(c, `room:${room}`);
  const j = await join(chan);
  assert.equal(j.status, 'ok', JSON.stringify(j));
  return { c, chan };
}

/** A Janus session of the test's own, to look at Janus's side. */
async function janusPeek() {
  const ws = new WebSocket(JANUS, 'janus-protocol');
  await withTimeout(new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); }),
                    5000, 'test connection to Janus');
  let n = 0;
  const waiting = new Map();
  ws.on('message', (d) => {
    const m = JSON.parse(d.toString());
    if (m.janus === 'ack') return;
    waiting.get(m.transaction)?.(m);
  });
  const req = (body) => withTimeout(new Promise((resolve) => {
    const transaction = `peek${++n}`;
    waiting.set(transaction, resolve);
    ws.send(JSON.stringify({ ...body, transaction }));
  }), 5000, `janus ${body.janus}`);
  const s = await req({ janus: 'create' });
  const session_id = s.data.id;
  const a = await req({ janus: 'attach', session_id, plugin: 'janus.plugin.videoroom' });
  const handle_id = a.data.id;
  return {
    async rooms() {
      const r = await req({ janus: 'message', session_id, handle_id, body: { request: 'list' } });
      return (r.plugindata?.data?.list ?? []).map((x) => x.description);
    },
    close() { ws.close(); },
  };
}

/** Offers with Janus paused, crashes the room while Janus's requests are
 * unanswered, resumes Janus; resolves the rejoin's room state. */
async function offerThenCrash(room, m) {
  janusCtl('pause');
  try {
    const r = await pushAwait(m.chan, 'signal', { to: 'media', sdp: { type: 'offer', sdp: OFFER } });
    assert.equal(r.status, 'ok', JSON.stringify(r));
    const errored = m.chan.events.next((e) => e.event === 'phx_error', 5000, 'phx_error after the crash');
    const rejoined = m.chan.joins.next((j) => j.status === 'ok', 10000, 'rejoin after the crash');
    const crash = await request(server, 'POST', `/api/rooms/${room}/crash`, { body: { reason: 'test: crash mid-request' } });
    assert.equal(crash.status, 202, crash.text);
    await errored;
    return (await rejoined).response;
  } finally {
    janusCtl('resume');
  }
}

const isAnswer = (e) => e.event === 'signal' && e.payload.from === 'media' && e.payload.sdp;

test('Janus requests in flight at a RoomServer crash are answered to the restarted RoomServer', { skip }, async () => {
  const room = 'inflight-1';
  const alice = await member(room, 'alice');
  // 1. The first offer: the room's Janus room is being made (attach, create)
  //    when the RoomServer dies. The offer waits in the backup.
  const st = await offerThenCrash(room, alice);
  assert.equal(st.participants.alice.status.media, 'connecting', JSON.stringify(st));
  const a1 = await alice.chan.events.next(isAnswer, 15000, "Janus's answer to alice's first offer");
  assert.equal(a1.payload.sdp.type, 'answer');
  assert.match(a1.payload.sdp.sdp, /^v=0/);
  assert.equal(a1.payload.feed, undefined, 'the answer is for the publisher connection');
  // 2. A fresh offer (configure, with the offer in the request itself) is
  //    in flight when the RoomServer dies: only Janus's answer to that very
  //    request can complete it.
  await offerThenCrash(room, alice);
  const a2 = await alice.chan.events.next(isAnswer, 15000, "Janus's answer to alice's second offer");
  assert.equal(a2.payload.sdp.type, 'answer');
  assert.equal(alice.chan.events.drain(isAnswer).length, 0, 'one answer per offer');
});

test('a participant whose connection dropped is asked for a fresh offer when it is back', { skip }, async () => {
  const room = 'dropped-1';
  const carol = await member(room, 'carol');
  const dave = await member(room, 'dave');
  assert.equal((await pushAwait(carol.chan, 'signal', { to: 'media', sdp: { type: 'offer', sdp: OFFER } })).status, 'ok');
  await carol.chan.events.next(isAnswer, 15000, "Janus's answer to carol's offer");
  // carol's socket drops: her Janus handles go (her page's connections die
  // with them) and dave sees her media state failed.
  const rejoined = carol.chan.joins.next((j) => j.status === 'ok', 10000, 'carol rejoins after reconnecting');
  await carol.c.disconnect();
  await dave.chan.events.next((e) => e.event === 'room_status' &&
                                     e.payload.participants?.carol?.connected === false &&
                                     e.payload.participants.carol.status?.media === 'failed',
                              5000, 'carol disconnected, media failed');
  carol.c.socket.connect();
  await rejoined;
  const re = await carol.chan.events.next((e) => e.event === 'signal' && e.payload.from === 'media',
                                          5000, 'a renegotiate request for carol');
  assert.deepEqual(re.payload, { from: 'media', renegotiate: true });
  // Her fresh offer is answered and her media state is connecting again.
  assert.equal((await pushAwait(carol.chan, 'signal', { to: 'media', sdp: { type: 'offer', sdp: OFFER } })).status, 'ok');
  await carol.chan.events.next(isAnswer, 15000, "Janus's answer to carol's fresh offer");
  await dave.chan.events.next((e) => e.event === 'room_status' &&
                                     e.payload.participants?.carol?.status?.media === 'connecting',
                              5000, 'carol connecting again');
  // Nobody else is asked to renegotiate.
  assert.equal(dave.chan.events.drain((e) => e.event === 'signal').length, 0, 'dave was asked nothing');
});

test('a roost room that ends takes its Janus VideoRoom with it', { skip }, async () => {
  const room = 'ends-1';
  const bob = await member(room, 'bob');
  const r = await pushAwait(bob.chan, 'signal', { to: 'media', sdp: { type: 'offer', sdp: OFFER } });
  assert.equal(r.status, 'ok');
  await bob.chan.events.next((e) => e.event === 'signal' && e.payload.from === 'media' && e.payload.sdp,
                             15000, "Janus's answer to bob's offer");
  const peek = await janusPeek();
  try {
    assert.ok((await peek.rooms()).includes(`room:${room}`), 'the VideoRoom exists while the room runs');
    const del = await request(server, 'DELETE', `/api/rooms/${room}`);
    assert.ok(del.status === 200 || del.status === 204, `DELETE: ${del.status} ${del.text}`);
    await waitUntil(async () => !(await peek.rooms()).includes(`room:${room}`),
                    { timeoutMs: 5000, label: 'the VideoRoom destroyed after the room ended' });
  } finally {
    peek.close();
  }
});

test('over wss:// (TLS, --janus-ca): a call gets its answer from Janus', { skip }, async () => {
  const wss = process.env.ROOST_JANUS_WSS_URL, ca = process.env.ROOST_JANUS_CA;
  assert.ok(wss && ca, 'tests/media/run.sh sets ROOST_JANUS_WSS_URL and ROOST_JANUS_CA');
  const tls = await startServer({ args: ['--media', 'janus', '--janus-url', wss, '--janus-ca', ca] });
  try {
    await waitUntil(async () => (await request(tls, 'GET', '/healthz', { apiKey: null })).json?.janus === 'connected',
                    { timeoutMs: 10000, label: 'roost connected to Janus over TLS' });
    const erin = await member('tls-1', 'erin', tls);
    assert.equal((await pushAwait(erin.chan, 'signal', { to: 'media', sdp: { type: 'offer', sdp: OFFER } })).status, 'ok');
    const a = await erin.chan.events.next(isAnswer, 15000, "Janus's answer over wss://");
    assert.equal(a.payload.sdp.type, 'answer');
  } finally {
    await tls.stop();
  }
});
