// Room state survives failures (design §1 "Let it fail", "Durable
// backups"; §4 "Room state", "Graceful shutdown"):
//   - a RoomServer crash (POST /api/rooms/:id/crash): members get
//     phx_error, phoenix.js rejoins by itself, the room is as it was;
//   - 50 rooms crashed at once while 50 others carry a stream of data:
//     the others lose nothing (counted exactly) and never notice;
//   - kill -9 of the server in the middle of a stream of acknowledged
//     status pushes: after a restart on the same --data every
//     acknowledged push is in the restored state;
//   - kill -9 with live and ended rooms: the live ones come back, the
//     ended one stays ended;
//   - SIGTERM: clients see close 1012, come back after the restart and
//     find their room.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  TIMEOUT, deferred, pushAwait, request, startServer, userId, withTimeout,
} from './helpers.mjs';
import {
  Pool, assertRoomShape, connectUser, crashRoom, createRoom, endRoom, getRoom, mapLimit, member,
  nextEvent, nextStatus, pairRoom, presenceIs, pushOk, restartAfterKill, roomId, roomState, waitRoom,
} from './rooms_helpers.mjs';

let server;
const pool = new Pool();
const servers = new Set();

before(async () => {
  server = await startServer();
});

after(async () => {
  pool.closeAll();
  for (const s of servers) await s.cleanup();
  if (server) await server.cleanup();
});

const partOf = (state, user) => state?.participants?.[user];
const isCrash = (p) => p?.reason === 'channel_crash';

/** The participants of a state as {user: status}. */
function statuses(state) {
  const out = {};
  for (const [u, p] of Object.entries(state.participants)) out[u] = p.status;
  return out;
}

describe('RoomServer crash', () => {
  test('POST /api/rooms/:id/crash: members get phx_error (channel_crash), rejoin by themselves and find the room as it was', async () => {
    const { id, alice, bob } = await pairRoom(server, pool, { max_participants: 5 }, 'crash');
    const viewer = await member(server, pool, id, userId('viewer'), { params: { role: 'viewer' } });
    await pushOk(alice, 'status', { muted: true });
    await pushOk(bob, 'status', { camera: 'off', n: 3 });
    const before0 = await waitRoom(server, id, (s) => s.viewers === 1 && partOf(s, bob.user)?.status?.n === 3);

    const rejoins = [alice, bob, viewer].map((m) =>
      m.chan.joins.next((j) => j.status === 'ok', 10000, `${m.user} rejoins after the crash`));
    const r = await crashRoom(server, id, 'integration-test');
    assert.equal(r.status, 202, `crash: ${r.status} ${r.text}`);

    for (const m of [alice, bob, viewer]) {
      const p = await nextEvent(m, 'phx_error', isCrash, 'phx_error {"reason":"channel_crash"}');
      assert.deepEqual(p, { reason: 'channel_crash' });
    }
    const replies = await Promise.all(rejoins);
    for (const j of replies) {
      const st = assertRoomShape(j.response, id);
      assert.deepEqual(statuses(st), statuses(before0), `rejoin reply: the same participants and statuses: ${JSON.stringify(st)}`);
      assert.ok(st.version >= before0.version, `version ${st.version} >= ${before0.version}`);
      assert.equal(st.created_at, before0.created_at);
      assert.equal(st.max_participants, 5);
    }
    const after0 = await waitRoom(server, id, (s) => s.viewers === 1 && s.status === 'active',
      { label: 'active with its viewer again' });
    assert.deepEqual(statuses(after0), statuses(before0));
    for (const u of [alice.user, bob.user]) {
      assert.equal(partOf(after0, u).joined_at, partOf(before0, u).joined_at, `${u}: the same entry`);
      assert.equal(partOf(after0, u).connected, true);
    }
    assert.ok(after0.version >= before0.version);

    // The sockets never closed, and the room works after the restart.
    for (const m of [alice, bob, viewer]) assert.equal(m.client.closes.all.length, 0, `${m.user}: socket still open`);
    await presenceIs(alice, [alice.user, bob.user]);
    await pushOk(alice, 'data', { after: 'crash' });
    assert.deepEqual(await nextEvent(bob, 'data', (p) => p.data?.after === 'crash', 'data after the crash'),
      { from: alice.user, data: { after: 'crash' } });
    await pushOk(bob, 'status', { n: 4 });
    const s = await nextStatus(alice, (x) => partOf(x, bob.user)?.status?.n === 4, 'status after the crash');
    assert.deepEqual(partOf(s, bob.user).status, { camera: 'off', n: 4 });
    assert.ok(s.version > after0.version - 1 && s.version > before0.version);
  });

  test('status pushes in flight when the RoomServer crashes: each is answered, and every acknowledged one is in the state found on rejoin', async (t) => {
    const { id, alice } = await pairRoom(server, pool, {}, 'inflight');
    const rejoined = alice.chan.joins.next((j) => j.status === 'ok', 10000, 'alice rejoins after the crash');
    const N = 40;
    // All N go out at once (the channel is joined, so phoenix.js writes
    // them now), and the crash request right behind them.
    const replies = [];
    for (let i = 1; i <= N; i++) replies.push(pushAwait(alice.chan, 'status', { n: i }, 3000).then((r) => ({ i, r })));
    const cr = await crashRoom(server, id, 'in-flight');
    assert.equal(cr.status, 202, `crash: ${cr.status} ${cr.text}`);
    const got = await Promise.all(replies);
    const acked = got.filter((x) => x.r.status === 'ok').map((x) => x.i);
    const refused = got.filter((x) => x.r.status === 'error');
    const unanswered = got.filter((x) => x.r.status === 'timeout').map((x) => x.i);
    t.diagnostic(`${acked.length} acknowledged, ${refused.length} refused (${JSON.stringify(refused[0]?.r ?? null)}), ` +
      `${unanswered.length} unanswered`);
    assert.deepEqual(unanswered, [], 'every push with a ref is answered, ok or error');
    const maxAcked = Math.max(0, ...acked);
    const j = await rejoined;
    const n = partOf(j.response, alice.user)?.status?.n ?? 0;
    assert.ok(n >= maxAcked && n <= N, `state after the crash has n=${n}; highest acknowledged ${maxAcked}`);
    const st = await roomState(server, id);
    assert.ok(partOf(st, alice.user).status.n >= maxAcked);
  });

  test('50 rooms crashed while 50 others carry a stream of data: nothing lost in the others, the crashed ones recover', async () => {
    const ROOMS = 50;
    const N = 40; // data messages per steady room
    const steady = Array.from({ length: ROOMS }, () => roomId('steady'));
    const crashed = Array.from({ length: ROOMS }, () => roomId('crashed'));
    await mapLimit([...steady, ...crashed], 20, (id) => createRoom(server, { id }));

    // One socket per user, each joined to its 50 rooms.
    const users = Object.fromEntries(['snd', 'rcv', 'ca', 'cb'].map((n) => [n, userId(n)]));
    const clients = {};
    await Promise.all(Object.entries(users).map(async ([n, u]) => {
      clients[n] = await connectUser(server, pool, u);
    }));
    const join = (name, id) => member(server, pool, id, users[name], { client: clients[name] });

    const sndM = await mapLimit(steady, 10, (id) => join('snd', id));
    const rcvM = await mapLimit(steady, 10, (id) => join('rcv', id));
    const caM = await mapLimit(crashed, 10, (id) => join('ca', id));
    const cbM = await mapLimit(crashed, 10, (id) => join('cb', id));
    // Each crashed room holds a state to find again.
    await Promise.all(caM.map((m, k) => pushOk(m, 'status', { room: k })));
    const rejoins = [...caM, ...cbM].map((m) =>
      m.chan.joins.next((j) => j.status === 'ok', 15000, `${m.user} rejoins ${m.chan.topic}`));

    let crashes;
    for (let i = 0; i < N; i++) {
      await Promise.all(sndM.map((m) => pushOk(m, 'data', { seq: i })));
      if (i === 5) crashes = Promise.all(crashed.map((id) => crashRoom(server, id, 'chaos')));
    }
    for (const r of await crashes) assert.equal(r.status, 202, `crash: ${r.status} ${r.text}`);

    // Every steady room delivered exactly 0..N-1, in order, once.
    for (const [k, m] of rcvM.entries()) {
      await nextEvent(m, 'data', (p) => p.data?.seq === N - 1, `last message of steady room ${k}`, 10000);
      const seqs = m.chan.events.all.filter((e) => e.event === 'data').map((e) => e.payload.data.seq);
      assert.deepEqual(seqs, Array.from({ length: N }, (_, i) => i), `steady room ${k} (${m.chan.topic}) received ${seqs.length} of ${N}`);
      for (const e of m.chan.events.all.filter((x) => x.event === 'data')) assert.equal(e.payload.from, users.snd);
    }
    for (const m of [...sndM, ...rcvM]) {
      assert.equal(m.chan.events.count((e) => e.event === 'phx_error'), 0, `no phx_error on steady ${m.chan.topic}`);
      assert.equal(m.chan.joins.all.length, 1, `no rejoin on steady ${m.chan.topic}`);
    }

    // Every member of a crashed room got phx_error and rejoined; the state is intact.
    const replies = await Promise.all(rejoins);
    for (const m of [...caM, ...cbM]) {
      assert.ok(m.chan.events.count((e) => e.event === 'phx_error' && isCrash(e.payload)) >= 1,
        `phx_error on ${m.chan.topic} for ${m.user}`);
    }
    for (const [k, j] of replies.slice(0, ROOMS).entries()) {
      assert.deepEqual(partOf(j.response, users.ca)?.status, { room: k }, `crashed room ${k}: status kept`);
      assert.ok(partOf(j.response, users.cb), `crashed room ${k}: cb kept`);
    }
    for (const c of Object.values(clients)) assert.equal(c.closes.all.length, 0, 'no socket closed');
  });
});

describe('kill -9 and restart', () => {
  test('kill -9 in the middle of a stream of acknowledged status pushes: every acknowledged push is in the restored state', async (t) => {
    let srv = await startServer();
    servers.add(srv);
    const { id, alice, bob } = await pairRoom(srv, pool, {}, 'kill9');
    const enough = deferred();
    const KEYS = 4;
    const MAX = 5000;
    const progress = {};
    let total = 0;

    // Each member streams {n: i, k<i%KEYS>: i} with up to WINDOW pushes in
    // flight and keeps the highest n sent and the highest n acknowledged.
    const WINDOW = 4;
    let stopping = false;
    const stream = (m) => {
      const p = { sent: 0, acked: 0, firstError: null };
      progress[m.user] = p;
      const done = deferred();
      let inflight = 0;
      const pump = () => {
        while (!stopping && !p.firstError && inflight < WINDOW && p.sent < MAX) {
          const i = ++p.sent;
          inflight += 1;
          pushAwait(m.chan, 'status', { n: i, [`k${i % KEYS}`]: i }, 3000).then((r) => {
            inflight -= 1;
            if (r.status === 'ok') {
              p.acked = Math.max(p.acked, i);
              total += 1;
              if (total >= 200 && p.acked >= 30) enough.resolve();
            } else if (!stopping && !p.firstError) {
              p.firstError = { i, r };
              enough.resolve();
            }
            pump();
          });
        }
        if (stopping || p.firstError || p.sent >= MAX) done.resolve(p);
      };
      pump();
      return done.promise;
    };
    stream(alice);
    stream(bob);
    await withTimeout(enough.promise, 30000,
      `200 acknowledged status pushes (so far ${JSON.stringify(progress)})`);
    const closes = [alice, bob].map((m) => m.client.closes.next(() => true, TIMEOUT, `${m.user} sees the server die`));
    // No new push from here on (one sent to a dead socket would be
    // buffered by phoenix.js and sent again after the restart); those in
    // flight stay in flight while the server dies.
    stopping = true;
    await srv.kill();
    // Every ack the dead server sent has arrived once its close has (the
    // pushes still in flight are never answered: they time out later).
    await Promise.all(closes);
    const inFlight = Object.values(progress).map((p) => p.sent - p.acked);
    srv = await restartAfterKill(srv);
    servers.add(srv);
    t.diagnostic(`killed with ${JSON.stringify(progress)} (unacknowledged at the kill: ${inFlight})`);
    for (const [u, p] of Object.entries(progress)) {
      assert.equal(p.firstError, null, `${u}: a status push failed before the kill: ${JSON.stringify(p.firstError)}`);
      assert.ok(p.acked >= 1, `${u} had acknowledged pushes`);
    }

    const restored = await waitRoom(srv, id, () => true, { label: 'the room restored after kill -9' });
    assertRoomShape(restored, id);
    for (const m of [alice, bob]) {
      const p = progress[m.user];
      const st = partOf(restored, m.user)?.status;
      assert.ok(st, `${m.user} is in the restored room: ${JSON.stringify(restored)}`);
      assert.ok(st.n >= p.acked && st.n <= p.sent,
        `${m.user}: restored n=${st.n}, last acknowledged ${p.acked}, last sent ${p.sent}`);
      // The state is exactly the one after push n: every key holds the
      // last push <= n that set it.
      for (let j = 0; j < KEYS; j++) {
        let want;
        for (let i = st.n; i >= 1 && i > st.n - KEYS; i--) if (i % KEYS === j) want = i;
        assert.equal(st[`k${j}`], want, `${m.user}: k${j} after push ${st.n}: ${JSON.stringify(st)}`);
      }
    }

    // The clients come back by themselves, resume their entries, and go on.
    const rejoin = await alice.chan.joins.next((j) => j.status === 'ok', 15000, 'alice rejoins the restarted server');
    assert.equal(partOf(rejoin.response, alice.user)?.status?.n, partOf(restored, alice.user).status.n);
    await pushOk(alice, 'status', { n: 'after' });
    const now = await roomState(srv, id);
    assert.equal(partOf(now, alice.user).status.n, 'after');
    assert.ok(now.version > restored.version, `version goes on growing: ${restored.version} -> ${now.version}`);
  });

  test('kill -9 with live and ended rooms: the live ones come back as they were, the ended one stays ended', async () => {
    let srv = await startServer();
    servers.add(srv);
    const ids = Array.from({ length: 5 }, () => roomId('live'));
    const created = [];
    for (const [k, id] of ids.entries()) created.push(await createRoom(srv, { id, max_participants: k + 2 }));
    const alice = await member(srv, pool, ids[0], userId('alice'));
    await pushOk(alice, 'status', { muted: true, note: 'keep me' });
    const endedId = roomId('gone');
    await createRoom(srv, { id: endedId });
    const del = await endRoom(srv, endedId);
    assert.ok(del.status >= 200 && del.status < 300, `DELETE: ${del.status} ${del.text}`);
    const before0 = await roomState(srv, ids[0]);
    alice.client.close();

    srv = await restartAfterKill(srv);
    servers.add(srv);

    for (const [k, id] of ids.entries()) {
      const st = assertRoomShape(await waitRoom(srv, id, () => true, { label: 'restored' }), id);
      assert.equal(st.created_at, created[k].created_at);
      assert.equal(st.max_participants, k + 2);
      assert.ok(st.version >= created[k].version);
    }
    const r0 = await roomState(srv, ids[0]);
    assert.deepEqual(partOf(r0, alice.user)?.status, { muted: true, note: 'keep me' });
    assert.ok(r0.version >= before0.version);
    assert.equal((await getRoom(srv, endedId)).status, 404, 'the ended room stays ended');
    const list = await request(srv, 'GET', '/api/rooms');
    const listed = new Set((list.json?.rooms ?? []).map((x) => (typeof x === 'string' ? x : x.id)));
    for (const id of ids) assert.ok(listed.has(id), `${id} listed after the restart`);
    assert.ok(!listed.has(endedId), 'the ended room is not listed');

    // The ended room refuses joins after the restart too (no auto-create).
    const late = await member(srv, pool, endedId, userId('late'),
      { expectOk: false, clientOpts: { rejoinAfterMs: () => 60000 } });
    assert.deepEqual(late.reply, { status: 'error', response: { reason: 'ended' } });

    // A restored room takes joins as before.
    const back = await member(srv, pool, ids[0], alice.user);
    assert.deepEqual(partOf(back.reply.response, alice.user).status, { muted: true, note: 'keep me' });
  });
});

describe('SIGTERM', () => {
  test('room members see close 1012, come back after the restart and find their room as it was', async () => {
    let srv = await startServer();
    servers.add(srv);
    const { id, alice, bob } = await pairRoom(srv, pool, {}, 'drain');
    await pushOk(alice, 'status', { muted: true });
    await pushOk(bob, 'status', { screen: 'shared' });
    const before0 = await roomState(srv, id);

    const port = srv.port;
    const closes = [alice, bob].map((m) => m.client.closes.next(() => true, 15000, `${m.user}: close`));
    const rejoins = [alice, bob].map((m) => m.chan.joins.next((j) => j.status === 'ok', 20000, `${m.user} rejoins`));
    const exit = await srv.stop();
    assert.deepEqual(exit, { code: 0, signal: null }, `roost exits 0 after SIGTERM; log:\n${srv.tail()}`);
    for (const c of await Promise.all(closes)) assert.equal(c.code, 1012, `close code ${JSON.stringify(c)}`);

    const next = await startServer({ port, dataDir: srv.dataDir });
    next.ownsDataDir = true;
    srv.ownsDataDir = false;
    servers.add(next);
    srv = next;

    for (const j of await Promise.all(rejoins)) {
      assert.deepEqual(statuses(j.response), statuses(before0), `rejoin reply: ${JSON.stringify(j.response)}`);
    }
    const st = await waitRoom(srv, id, (s) => s.status === 'active', { label: 'active again' });
    assert.deepEqual(statuses(st), statuses(before0));
    assert.ok(st.version >= before0.version);
    await presenceIs(alice, [alice.user, bob.user]);
    await pushOk(bob, 'data', { hello: 'again' });
    assert.deepEqual(await nextEvent(alice, 'data', (p) => p.data?.hello === 'again', 'data after the restart'),
      { from: bob.user, data: { hello: 'again' } });
  });
});
