// Rooms seen from real phoenix.js clients and the REST API (design §4
// "Room state", "Participants and viewers", coalescing, join errors,
// signal; §5): two participants in room:<id> with Presence, `data`
// relayed as {"from","data"} to the others only, `status` acknowledged
// and merged into `room_status` with a growing version, room_status
// coalesced per tick, viewers, join errors, signalling, broadcast, the
// end of a room, the reconnect grace, and every REST error.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  errorShape, leave, pushAwait, request, startServer, userId, waitUntil,
} from './helpers.mjs';
import {
  Pool, assertRoomShape, autoCreateOffArgs, calls, createRoom, endRoom, getRoom, member,
  nextEvent, nextStatus, pairRoom, presenceIs, pushOk, roomId, roomState, serveUsage, waitRoom,
} from './rooms_helpers.mjs';

let server;
const pool = new Pool();
const extraServers = [];

before(async () => {
  server = await startServer();
});

after(async () => {
  pool.closeAll();
  for (const s of extraServers) await s.cleanup();
  if (server) await server.cleanup();
});

/** Two participants (alice, bob) in a fresh room, presence settled. */
function pair(body = {}) {
  return pairRoom(server, pool, body);
}

const partOf = (state, user) => state?.participants?.[user];

describe('REST: rooms', () => {
  test('POST /api/rooms creates a room (201 with its state); GET shows it; GET /api/rooms lists it', async () => {
    const id = roomId('rest');
    const created = await createRoom(server, { id, max_participants: 4, empty_timeout: 120 });
    assertRoomShape(created, id);
    assert.equal(created.status, 'waiting');
    assert.equal(created.max_participants, 4);
    assert.equal(created.viewers, 0);
    assert.deepEqual(created.participants, {});
    assert.ok(Math.abs(created.created_at - Date.now()) < 60000, `created_at is a time in ms: ${created.created_at}`);

    const got = assertRoomShape(await roomState(server, id), id);
    assert.equal(got.version, created.version);
    assert.equal(got.created_at, created.created_at);

    const list = await request(server, 'GET', '/api/rooms');
    assert.equal(list.status, 200, list.text);
    assert.ok(Array.isArray(list.json?.rooms), `{"rooms": [...]}: ${list.text}`);
    const ids = list.json.rooms.map((r) => (typeof r === 'string' ? r : r.id));
    assert.ok(ids.includes(id), `GET /api/rooms lists ${id}: ${list.text.slice(0, 500)}`);
  });

  test('room ids with spaces and non-ASCII characters work through REST (percent-encoded) and as a topic', async () => {
    const id = `${roomId('odd')} ünï ✓`;
    const created = await createRoom(server, { id });
    assert.equal(created.id, id);
    assert.equal((await roomState(server, id)).id, id);
    const m = await member(server, pool, id, userId('alice'));
    assert.equal(m.reply.response.id, id);
    const list = await request(server, 'GET', '/api/rooms');
    assert.ok(list.json.rooms.some((r) => (typeof r === 'string' ? r : r.id) === id), 'listed under its id');
    const r = await endRoom(server, id);
    assert.ok(r.status >= 200 && r.status < 300, `DELETE: ${r.status} ${r.text}`);
    await nextEvent(m, 'phx_close', () => true, 'phx_close');
    assert.equal((await getRoom(server, id)).status, 404);
  });

  test('POST /api/rooms without an id generates one', async () => {
    const a = await createRoom(server, {});
    const b = await createRoom(server, {});
    assert.ok(a.id.length > 0 && b.id.length > 0);
    assert.notEqual(a.id, b.id);
    assert.equal((await getRoom(server, a.id)).status, 200);
  });

  test('errors: 401 without the key, 404 unknown room, 409 existing id, 422 invalid fields, 400 malformed JSON', async () => {
    const id = roomId('err');
    await createRoom(server, { id });
    const unknown = roomId('nosuch');

    // 401: every /api/ route, without a key or with a wrong one.
    const routes = [
      ['GET', '/api/rooms'], ['POST', '/api/rooms', { id: roomId('x') }], ['GET', `/api/rooms/${id}`],
      ['DELETE', `/api/rooms/${id}`], ['POST', `/api/rooms/${id}/crash`, {}],
      ['POST', `/api/rooms/${id}/broadcast`, { event: 'x', payload: {} }],
      ['GET', `/api/rooms/${id}/events`], ['GET', '/api/calls'],
    ];
    for (const [method, p, body] of routes) {
      for (const apiKey of [null, 'wrong-key']) {
        const r = await request(server, method, p, { body, apiKey });
        assert.equal(r.status, 401, `${method} ${p} with key ${apiKey}: ${r.status} ${r.text}`);
        errorShape(r);
      }
    }
    // Nothing of it happened: the room is still there, untouched.
    assert.equal((await getRoom(server, id)).status, 200, 'a DELETE without the key ended nothing');

    // 404: unknown room, on every per-room route.
    for (const [method, p, body] of [
      ['GET', `/api/rooms/${unknown}`], ['DELETE', `/api/rooms/${unknown}`],
      ['POST', `/api/rooms/${unknown}/crash`, {}],
      ['POST', `/api/rooms/${unknown}/broadcast`, { event: 'x', payload: {} }],
      ['GET', `/api/rooms/${unknown}/events`],
    ]) {
      const r = await request(server, method, p, { body });
      assert.equal(r.status, 404, `${method} ${p}: ${r.status} ${r.text}`);
      errorShape(r);
    }
    // ... and asking for it did not create it.
    assert.equal((await getRoom(server, unknown)).status, 404);

    // 409: the id exists.
    const dup = await request(server, 'POST', '/api/rooms', { body: { id } });
    assert.equal(dup.status, 409, `create ${id} again: ${dup.status} ${dup.text}`);
    errorShape(dup);

    // 422: JSON, but not a valid room.
    const invalid = [
      { id: 5 }, { id: '' }, { id: 'x'.repeat(300) }, { id: ['a'] },
      { max_participants: -1 }, { max_participants: 'many' }, { max_participants: 2.5 },
      { empty_timeout: -5 }, { empty_timeout: 'soon' },
    ];
    for (const body of invalid) {
      const r = await request(server, 'POST', '/api/rooms', { body });
      assert.equal(r.status, 422, `POST /api/rooms ${JSON.stringify(body).slice(0, 80)}: ${r.status} ${r.text}`);
      errorShape(r);
    }
    const arr = await request(server, 'POST', '/api/rooms', { body: '[]' });
    assert.equal(arr.status, 422, `POST /api/rooms []: ${arr.status} ${arr.text}`);
    errorShape(arr);
    const badBroadcast = await request(server, 'POST', `/api/rooms/${id}/broadcast`, { body: { payload: {} } });
    assert.equal(badBroadcast.status, 422, `broadcast without event: ${badBroadcast.status} ${badBroadcast.text}`);
    errorShape(badBroadcast);

    // 400: not JSON at all.
    for (const body of ['{', '{"id": "x",}', 'not json']) {
      const r = await request(server, 'POST', '/api/rooms', { body });
      assert.equal(r.status, 400, `POST /api/rooms ${JSON.stringify(body)}: ${r.status} ${r.text}`);
      errorShape(r);
    }
    const badCrash = await request(server, 'POST', `/api/rooms/${id}/crash`, { body: '{"reason":' });
    assert.equal(badCrash.status, 400, `crash with malformed JSON: ${badCrash.status} ${badCrash.text}`);

    // None of that changed the room or stopped the server.
    assert.equal((await request(server, 'GET', '/healthz', { apiKey: null })).status, 200);
    const st = await roomState(server, id);
    assert.equal(st.status, 'waiting');
  });
});

describe('REST: JSON that is not an object', () => {
  // RFC 8259: a bare string or number is a JSON text. It is well-formed
  // (not 400) but not a room (422), like [] above.
  test('POST /api/rooms with a JSON string or number body -> 422', async () => {
    for (const body of ['"room"', '42', 'null']) {
      const r = await request(server, 'POST', '/api/rooms', { body });
      assert.equal(r.status, 422, `POST /api/rooms ${body}: ${r.status} ${r.text}`);
      errorShape(r);
    }
  });
});

describe('participants', () => {
  test('status pushes sent without waiting, with signals and data in between: every push gets its own reply, statuses in order with one version each', async () => {
    const { id, alice, bob } = await pairRoom(server, pool, {}, 'pipeline');
    const pushes = [];
    for (let i = 1; i <= 40; i++) {
      pushes.push(pushAwait(alice.chan, 'status', { n: i }).then((r) => ({ kind: 'status', i, r })));
      if (i % 7 === 0) {
        // Answered at once by the room, while statuses wait for their commit.
        pushes.push(pushAwait(alice.chan, 'signal', { to: bob.user, candidate: { i } })
          .then((r) => ({ kind: 'signal', i, r })));
        pushes.push(pushAwait(alice.chan, 'signal', { to: 'nobody-here', candidate: { i } })
          .then((r) => ({ kind: 'nopeer', i, r })));
      }
      if (i % 11 === 0)
        pushes.push(pushAwait(alice.chan, 'data', { i }).then((r) => ({ kind: 'data', i, r })));
    }
    const results = await Promise.all(pushes);
    let last = 0;
    for (const { kind, i, r } of results) {
      if (kind === 'nopeer') {
        assert.deepEqual(r, { status: 'error', response: { reason: 'unknown_peer' } }, `signal ${i} to nobody`);
        continue;
      }
      assert.equal(r.status, 'ok', `${kind} ${i}: ${JSON.stringify(r)}`);
      if (kind === 'status') {
        assert.equal(r.response.version, last ? last + 1 : r.response.version,
          `status ${i}: one version per change, in order (${last} -> ${r.response.version})`);
        last = r.response.version;
      } else {
        assert.deepEqual(r.response, {}, `${kind} ${i}`);
      }
    }
    const st = await waitRoom(server, id, (s) => partOf(s, alice.user)?.status?.n === 40);
    assert.equal(st.version, last);
    const sig = await nextEvent(bob, 'signal', (p) => p.candidate?.i === 35, 'the last signal');
    assert.equal(sig.from, alice.user);
  });

  test('join replies carry the room state; presence shows both; waiting -> active -> waiting', async () => {
    const id = roomId('join');
    const created = await createRoom(server, { id });
    const alice = await member(server, pool, id, userId('alice'));
    const r1 = assertRoomShape(alice.reply.response, id);
    assert.equal(r1.status, 'waiting', 'one participant: waiting');
    assert.deepEqual(Object.keys(r1.participants), [alice.user]);
    assert.equal(partOf(r1, alice.user).connected, true);
    assert.deepEqual(partOf(r1, alice.user).status, {});
    assert.ok(r1.version > created.version, `a join is a change: ${created.version} -> ${r1.version}`);

    const bob = await member(server, pool, id, userId('bob'));
    const r2 = assertRoomShape(bob.reply.response, id);
    assert.equal(r2.status, 'active', 'two participants: active');
    assert.deepEqual(Object.keys(r2.participants).sort(), [alice.user, bob.user].sort());
    assert.ok(r2.version > r1.version);

    // alice learns of bob through room_status and Presence.
    const st = await nextStatus(alice, (s) => partOf(s, bob.user)?.connected === true, 'bob in room_status');
    assert.equal(st.status, 'active');
    assert.ok(st.version >= r2.version);
    for (const m of [alice, bob]) {
      const snap = await presenceIs(m, [alice.user, bob.user]);
      for (const u of [alice.user, bob.user]) {
        assert.equal(snap[u].length, 1, `one meta for ${u}: ${JSON.stringify(snap)}`);
        assert.equal(typeof snap[u][0].phx_ref, 'string', `metas carry phx_ref: ${JSON.stringify(snap)}`);
      }
    }

    // An explicit leave removes bob at once: presence, room_status, REST.
    assert.equal(await leave(bob.chan), 'ok');
    await presenceIs(alice, [alice.user]);
    const st2 = await nextStatus(alice, (s) => !partOf(s, bob.user), 'bob gone from room_status');
    assert.equal(st2.status, 'waiting', 'back to waiting with one participant');
    assert.ok(st2.version > st.version);
    const rest = await roomState(server, id);
    assert.deepEqual(Object.keys(rest.participants), [alice.user]);
    assert.equal(rest.status, 'waiting');
  });

  test('data reaches the other member as {from, data} and not the sender', async () => {
    const { alice, bob } = await pair();
    const payload = { text: 'hello ✓ 你好', n: 1, nested: { list: [1, 2, { x: null }] } };
    await pushOk(alice, 'data', payload);
    const got = await nextEvent(bob, 'data', () => true, 'data from alice');
    assert.deepEqual(got, { from: alice.user, data: payload });

    // Non-object data is relayed as is.
    for (const p of ['just a string', 42, [1, 'two']]) {
      await pushOk(bob, 'data', p);
      const g = await nextEvent(alice, 'data', () => true, `data ${JSON.stringify(p)} from bob`);
      assert.deepEqual(g, { from: bob.user, data: p });
    }
    // alice got bob's three messages, all after her own push was relayed:
    // had the server echoed hers, it would be in her queue by now.
    assert.equal(alice.chan.events.count((e) => e.event === 'data' && e.payload.from === alice.user), 0,
      'the sender does not get its own data');
    assert.equal(bob.chan.events.count((e) => e.event === 'data' && e.payload.from === bob.user), 0,
      'the sender does not get its own data');
  });

  test('status is acknowledged, then visible in room_status, merged, with a growing version', async () => {
    const { id, alice, bob } = await pair();
    const before0 = await roomState(server, id);

    await pushOk(alice, 'status', { muted: true });
    const s1 = await nextStatus(bob, (s) => partOf(s, alice.user)?.status?.muted === true, 'alice muted');
    assert.ok(s1.version > before0.version, `version grows: ${before0.version} -> ${s1.version}`);
    assert.deepEqual(partOf(s1, alice.user).status, { muted: true });

    await pushOk(alice, 'status', { camera: 'off' });
    const s2 = await nextStatus(bob, (s) => partOf(s, alice.user)?.status?.camera === 'off', 'alice camera off');
    assert.deepEqual(partOf(s2, alice.user).status, { muted: true, camera: 'off' }, 'merged, not replaced');
    assert.equal(s2.version, s1.version + 1, 'one change, one version');

    await pushOk(alice, 'status', { muted: false });
    const s3 = await nextStatus(bob, (s) => partOf(s, alice.user)?.status?.muted === false, 'alice unmuted');
    assert.deepEqual(partOf(s3, alice.user).status, { muted: false, camera: 'off' });
    assert.equal(s3.version, s2.version + 1);
    assert.deepEqual(partOf(s3, bob.user).status, {}, "bob's status is untouched");

    // alice sees it too, and so does REST.
    await nextStatus(alice, (s) => s.version >= s3.version, 'alice sees her own status');
    const rest = await roomState(server, id);
    assert.deepEqual(partOf(rest, alice.user).status, { muted: false, camera: 'off' });
    assert.equal(rest.version, s3.version);
  });

  test('room_status is coalesced: a burst of 20 status pushes yields far fewer than 20 room_status, the last carrying all 20 changes', async (t) => {
    const { id, alice, bob } = await pair();
    // Start from the room's current version: only room_status past it count.
    const v0 = (await roomState(server, id)).version;
    alice.chan.events.drain((e) => e.event === 'room_status');
    bob.chan.events.drain((e) => e.event === 'room_status');

    const N = 20;
    const want = {};
    for (let i = 0; i < N; i++) want[`k${i}`] = i;
    const acks = [];
    for (let i = 0; i < N; i++) acks.push(pushOk(alice, 'status', { [`k${i}`]: i }));
    await Promise.all(acks);

    for (const m of [bob, alice]) {
      const seen = [];
      let last;
      for (let i = 0; i < N + 5 && !last; i++) {
        const s = await nextStatus(m, (x) => x.version > v0, `room_status after the burst (#${i + 1})`);
        seen.push(s.version);
        if (s.version >= v0 + N) last = s;
      }
      assert.ok(last, `${m.user}: a room_status reaches version ${v0 + N}; saw versions ${seen}`);
      assert.equal(last.version, v0 + N, 'twenty changes, twenty versions');
      assert.deepEqual(partOf(last, alice.user).status, want, 'the last room_status carries every change');
      for (let i = 1; i < seen.length; i++) assert.ok(seen[i] > seen[i - 1], `versions increase: ${seen}`);
      t.diagnostic(`${m.user}: ${seen.length} room_status for ${N} status changes (versions ${seen.map((v) => v - v0)})`);
      assert.ok(seen.length <= N / 2,
        `${m.user}: ${seen.length} room_status for ${N} changes (versions ${seen}): not coalesced`);
    }
  });

  test('signal goes to the named peer only, with from in place of to', async () => {
    const id = roomId('sig');
    await createRoom(server, { id });
    const alice = await member(server, pool, id, userId('alice'));
    const bob = await member(server, pool, id, userId('bob'));
    const carol = await member(server, pool, id, userId('carol'));

    const sdp = { type: 'offer', sdp: 'v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n' };
    await pushOk(alice, 'signal', { to: bob.user, sdp });
    const got = await nextEvent(bob, 'signal', () => true, 'offer from alice');
    assert.deepEqual(got, { from: alice.user, sdp });

    const candidate = { candidate: 'candidate:1 1 UDP 2122252543 192.0.2.1 54400 typ host', sdpMid: '0', sdpMLineIndex: 0 };
    await pushOk(alice, 'signal', { to: carol.user, candidate });
    const gotC = await nextEvent(carol, 'signal', () => true, 'candidate from alice');
    assert.deepEqual(gotC, { from: alice.user, candidate });
    // carol's first signal was hers: the offer to bob never reached her.
    assert.equal(carol.chan.events.count((e) => e.event === 'signal'), 1, 'carol got only her own signal');

    const answer = { type: 'answer', sdp: 'v=0\r\n' };
    await pushOk(bob, 'signal', { to: alice.user, sdp: answer });
    assert.deepEqual(await nextEvent(alice, 'signal', () => true, 'answer from bob'), { from: bob.user, sdp: answer });
    assert.equal(bob.chan.events.count((e) => e.event === 'signal'), 1, 'bob got only the offer');
    assert.equal(carol.chan.events.count((e) => e.event === 'signal'), 1, 'carol got nothing more');
  });

  test('POST /api/rooms/:id/broadcast reaches every member, viewers included', async () => {
    const { id, alice, bob } = await pair();
    const viewer = await member(server, pool, id, userId('viewer'), { params: { role: 'viewer' } });
    const payload = { msg: 'the call ends in 5 minutes', n: 5 };
    const r = await request(server, 'POST', `/api/rooms/${id}/broadcast`, { body: { event: 'announce', payload } });
    assert.ok(r.status >= 200 && r.status < 300, `broadcast: ${r.status} ${r.text}`);
    for (const m of [alice, bob, viewer]) {
      assert.deepEqual(await nextEvent(m, 'announce', () => true, 'the broadcast'), payload);
    }
  });

  test('a dropped participant stays with connected:false and resumes its entry, status included, on rejoin', async () => {
    const { id, alice, bob } = await pair();
    await pushOk(bob, 'status', { muted: true, hand: 'up' });
    const rejoined = bob.chan.joins.next((j) => j.status === 'ok', 10000, 'bob rejoins after reconnecting');
    await bob.client.disconnect();
    const s = await nextStatus(alice, (x) => partOf(x, bob.user)?.connected === false, 'bob disconnected');
    assert.deepEqual(partOf(s, bob.user).status, { muted: true, hand: 'up' }, 'the entry is kept');
    assert.equal(s.status, 'waiting', 'fewer than two connected: waiting');
    const joinedAt = partOf(s, bob.user).joined_at;
    await presenceIs(alice, [alice.user]);

    bob.client.socket.connect();
    const j = await rejoined;
    const back = partOf(j.response, bob.user);
    assert.equal(back.connected, true);
    assert.deepEqual(back.status, { muted: true, hand: 'up' }, 'status resumed');
    assert.equal(back.joined_at, joinedAt, 'the same entry, not a new one');
    const s2 = await nextStatus(alice, (x) => partOf(x, bob.user)?.connected === true, 'bob back');
    assert.equal(s2.status, 'active');
    await presenceIs(alice, [alice.user, bob.user]);
    assert.equal((await roomState(server, id)).status, 'active');
  });

  test('after the reconnect grace a dropped participant leaves', async (t) => {
    if (!/--reconnect-grace\b/.test(serveUsage())) {
      t.skip('roost serve has no --reconnect-grace flag');
      return;
    }
    const s = await startServer({ args: ['--reconnect-grace', '1'] });
    extraServers.push(s);
    const id = roomId('grace');
    await createRoom(s, { id });
    const alice = await member(s, pool, id, userId('alice'));
    const bob = await member(s, pool, id, userId('bob'));
    await pushOk(bob, 'status', { muted: true });
    bob.client.close();
    await nextStatus(alice, (x) => partOf(x, bob.user)?.connected === false, 'bob disconnected');
    const gone = await nextStatus(alice, (x) => !partOf(x, bob.user), 'bob removed after the grace', 6000);
    assert.deepEqual(Object.keys(gone.participants), [alice.user]);
    assert.deepEqual(Object.keys((await roomState(s, id)).participants), [alice.user]);
  });
});

describe('viewers', () => {
  test('a viewer has no presence, counts in viewers, gets data and room_status, may send data, and does not count toward max_participants', async () => {
    const id = roomId('view');
    await createRoom(server, { id, max_participants: 2 });
    const alice = await member(server, pool, id, userId('alice'));
    const bob = await member(server, pool, id, userId('bob'));
    await presenceIs(alice, [alice.user, bob.user]);

    const v1 = await member(server, pool, id, userId('viewer'), { params: { role: 'viewer' } });
    const v2 = await member(server, pool, id, userId('viewer'), { params: { role: 'viewer' } });
    const jr = assertRoomShape(v1.reply.response, id);
    assert.ok(!partOf(jr, v1.user), `a viewer has no participant entry: ${JSON.stringify(jr)}`);

    // Counted in viewers, not in participants; the room is full of
    // participants (2 of 2) and viewers still got in.
    const st = await waitRoom(server, id, (x) => x.viewers === 2, { label: 'viewers: 2' });
    assert.deepEqual(Object.keys(st.participants).sort(), [alice.user, bob.user].sort());
    assert.equal(st.status, 'active');
    await nextStatus(alice, (x) => x.viewers === 2, 'room_status with viewers: 2');

    // A viewer sees the participants' presence.
    await presenceIs(v1, [alice.user, bob.user]);

    // data: viewers receive it and may send it.
    await pushOk(alice, 'data', { to: 'all', n: 1 });
    for (const m of [bob, v1, v2]) {
      assert.deepEqual(await nextEvent(m, 'data', (p) => p.from === alice.user, 'data from alice'),
        { from: alice.user, data: { to: 'all', n: 1 } });
    }
    await pushOk(v1, 'data', { question: 'can you hear me?' });
    for (const m of [alice, bob]) {
      assert.deepEqual(await nextEvent(m, 'data', (p) => p.from === v1.user, 'data from the viewer'),
        { from: v1.user, data: { question: 'can you hear me?' } });
    }

    // room_status reaches viewers.
    await pushOk(bob, 'status', { camera: true });
    const vs = await nextStatus(v2, (x) => partOf(x, bob.user)?.status?.camera === true, 'bob camera on, seen by a viewer');
    assert.equal(vs.viewers, 2);

    // A third participant is refused: full. A third viewer is not.
    const carol = await member(server, pool, id, userId('carol'),
      { expectOk: false, clientOpts: { rejoinAfterMs: () => 60000 } });
    assert.deepEqual(carol.reply, { status: 'error', response: { reason: 'full' } });
    await member(server, pool, id, userId('viewer'), { params: { role: 'viewer' } });
    await waitRoom(server, id, (x) => x.viewers === 3, { label: 'viewers: 3' });

    // Viewers never entered presence: once bob leaves, alice's presence is
    // exactly herself (diffs arrive in order, so a viewer's would be there).
    assert.equal(await leave(bob.chan), 'ok');
    const snap = await presenceIs(alice, [alice.user]);
    assert.deepEqual(Object.keys(snap), [alice.user]);
    for (const v of [v1, v2]) assert.ok(!(v.user in alice.presence.state), `no presence for viewer ${v.user}`);
    // A viewer leaving lowers the count.
    assert.equal(await leave(v2.chan), 'ok');
    await waitRoom(server, id, (x) => x.viewers === 2, { label: 'viewers: 2 after one left' });
  });
});

describe('join errors', () => {
  const noRejoin = { rejoinAfterMs: () => 60000 };

  test('unauthorized: a token for another room', async () => {
    const id = roomId('auth');
    await createRoom(server, { id });
    const m = await member(server, pool, id, userId('mallory'),
      { tokenRoom: roomId('elsewhere'), expectOk: false, clientOpts: noRejoin });
    assert.deepEqual(m.reply, { status: 'error', response: { reason: 'unauthorized' } });
    assert.deepEqual((await roomState(server, id)).participants, {}, 'no entry for a refused join');
    assert.equal(m.client.closes.all.length, 0, 'a refused join does not close the socket');
    // A token for exactly this room works.
    await member(server, pool, id, userId('alice'), { tokenRoom: id });
  });

  test('full: max_participants reached', async () => {
    const id = roomId('full');
    await createRoom(server, { id, max_participants: 1 });
    const alice = await member(server, pool, id, userId('alice'));
    const bob = await member(server, pool, id, userId('bob'), { expectOk: false, clientOpts: noRejoin });
    assert.deepEqual(bob.reply, { status: 'error', response: { reason: 'full' } });
    const st = await roomState(server, id);
    assert.deepEqual(Object.keys(st.participants), [alice.user]);
    assert.equal(await leave(alice.chan), 'ok');
    const bob2 = await member(server, pool, id, userId('bob'));
    assert.equal(bob2.reply.status, 'ok', 'a free seat again after a leave');
  });

  test('reserved_user: nobody joins as "media" (the name signals use for the media server)', async () => {
    const id = roomId('reserved');
    await createRoom(server, { id });
    for (const role of ['participant', 'viewer']) {
      const m = await member(server, pool, id, 'media', { expectOk: false, params: { role }, clientOpts: noRejoin });
      assert.deepEqual(m.reply, { status: 'error', response: { reason: 'reserved_user' } }, role);
    }
    const st = await roomState(server, id);
    assert.deepEqual(st.participants, {}, 'no entry for a refused join');
    assert.equal(st.viewers ?? 0, 0, 'no viewer either');
    // Any other name is fine, "media" inside one included.
    const ok = await member(server, pool, id, 'media-team');
    assert.equal(ok.reply.status, 'ok');
  });

  test('ended: joining a room that was ended', async () => {
    const id = roomId('ended');
    await createRoom(server, { id });
    const r = await endRoom(server, id);
    assert.ok(r.status >= 200 && r.status < 300, `DELETE: ${r.status} ${r.text}`);
    const m = await member(server, pool, id, userId('late'), { expectOk: false, clientOpts: noRejoin });
    assert.deepEqual(m.reply, { status: 'error', response: { reason: 'ended' } });
    assert.equal((await getRoom(server, id)).status, 404, 'joining did not bring it back');
  });

  test('auto-create on (the default): joining an unknown room creates it', async () => {
    const id = roomId('auto');
    const m = await member(server, pool, id, userId('alice'));
    assertRoomShape(m.reply.response, id);
    const st = await roomState(server, id);
    assert.deepEqual(Object.keys(st.participants), [m.user]);
  });

  test('not_found: joining an unknown room with auto-create off', async (t) => {
    const args = autoCreateOffArgs();
    if (!args) {
      t.skip('roost serve has no --auto-create flag');
      return;
    }
    const s = await startServer({ args });
    extraServers.push(s);
    const id = roomId('nf');
    const m = await member(s, pool, id, userId('alice'), { expectOk: false, clientOpts: noRejoin });
    assert.deepEqual(m.reply, { status: 'error', response: { reason: 'not_found' } });
    assert.equal((await getRoom(s, id)).status, 404, 'not created');
    // A room created through REST is joinable there.
    const id2 = roomId('nf-created');
    await createRoom(s, { id: id2 });
    await member(s, pool, id2, userId('bob'));
  });
});

describe('end of a room', () => {
  test('DELETE /api/rooms/:id: members get room_ended then phx_close, do not rejoin; the room is 404 and in /api/calls', async () => {
    const { id, alice, bob } = await pair();
    const viewer = await member(server, pool, id, userId('viewer'), { params: { role: 'viewer' } });
    const r = await endRoom(server, id);
    assert.ok(r.status >= 200 && r.status < 300, `DELETE: ${r.status} ${r.text}`);

    for (const m of [alice, bob, viewer]) {
      await nextEvent(m, 'phx_close', () => true, 'phx_close');
      const evs = m.chan.events.all.map((e) => e.event);
      const iEnded = evs.indexOf('room_ended');
      const iClose = evs.indexOf('phx_close');
      assert.ok(iEnded >= 0, `${m.user} got room_ended: ${evs}`);
      assert.ok(iEnded < iClose, `${m.user}: room_ended before phx_close: ${evs}`);
      assert.equal(m.chan.isClosed(), true, 'the channel is closed');
    }
    assert.equal((await getRoom(server, id)).status, 404);
    const list = await request(server, 'GET', '/api/rooms');
    assert.ok(!list.json.rooms.some((x) => (typeof x === 'string' ? x : x.id) === id), 'no longer listed');

    const rec = await waitUntil(async () => {
      const c = await calls(server, { user: alice.user });
      return c.status === 200 && c.json?.calls?.find((x) => x.id === id);
    }, { label: `call record ${id} in /api/calls?user=${alice.user}` });
    assert.deepEqual([...rec.participants].sort(), [alice.user, bob.user].sort());

    // No rejoin: the sockets stay up, the channels stay closed.
    for (const m of [alice, bob, viewer]) {
      assert.equal(m.chan.joins.all.length, 1, `${m.user} joined once and never rejoined`);
      assert.equal(m.client.closes.all.length, 0, 'the socket stays open');
    }
  });

  test('a room left empty ends by itself after its empty_timeout (seconds)', async () => {
    const id = roomId('empty');
    await createRoom(server, { id, empty_timeout: 1 });
    const alice = await member(server, pool, id, userId('alice'));
    assert.equal(await leave(alice.chan), 'ok');
    await waitUntil(async () => (await getRoom(server, id)).status === 404,
      { timeoutMs: 6000, label: `room ${id} ended about 1 s after it became empty` });
    await waitUntil(async () => {
      const c = await calls(server, { user: alice.user });
      return c.json?.calls?.some((x) => x.id === id);
    }, { label: `call record ${id}` });
  });
});
