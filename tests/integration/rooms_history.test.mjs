// Recorded history (design §4 "Recorded events", §5): every change of a
// room becomes an event {seq, at, type, user?, data?} readable through
// GET /api/rooms/:id/events, paged with ?after= and "next", also after
// the room ended; a finished room becomes a call record in
// GET /api/calls (?user=, ?limit=), newest first.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { leave, pushAwait, startServer, userId, waitUntil } from './helpers.mjs';
import {
  Pool, allRoomEvents, calls, crashRoom, createRoom, endRoom, member, nextEvent, nextStatus, pushOk,
  roomEvents, roomId,
} from './rooms_helpers.mjs';

let server;
const pool = new Pool();

before(async () => {
  server = await startServer();
});

after(async () => {
  pool.closeAll();
  if (server) await server.cleanup();
});

const TYPES = new Set(['room_created', 'participant_joined', 'participant_left', 'participant_disconnected',
  'participant_reconnected', 'status_changed', 'room_restarted', 'room_ended']);
const partOf = (state, user) => state?.participants?.[user];
const brief = (events) => events.map((e) => `${e.seq}:${e.type}${e.user ? '(' + e.user + ')' : ''}`).join(' ');

/** Polls the room's events until pred(events) holds; returns {events, pages}. */
async function eventsWhen(id, pred, label, timeoutMs = 5000) {
  let last = { events: [], pages: [] };
  try {
    await waitUntil(async () => {
      last = await allRoomEvents(server, id);
      return pred(last.events);
    }, { timeoutMs, label });
  } catch (e) {
    throw new Error(`${e.message}; recorded so far: ${brief(last.events)}`);
  }
  return last;
}

/** Checks the shape of every event and that seqs are 1, 2, 3 ... */
function assertEventShapes(events, t0) {
  events.forEach((e, i) => {
    assert.equal(e.seq, i + 1, `seqs are gapless from 1: ${brief(events)}`);
    assert.ok(Number.isInteger(e.at) && e.at >= t0 - 1000 && e.at <= Date.now() + 1000,
      `at is a time in ms: ${JSON.stringify(e)}`);
    assert.ok(TYPES.has(e.type), `a type of design §4: ${JSON.stringify(e)}`);
    if (e.type.startsWith('participant_') || e.type === 'status_changed') {
      assert.equal(typeof e.user, 'string', `${e.type} names its user: ${JSON.stringify(e)}`);
    }
  });
}

describe('room events', () => {
  test('a room\'s life is recorded in order, with the types of design §4, and stays readable after the end', async () => {
    const t0 = Date.now();
    const id = roomId('hist');
    await createRoom(server, { id });
    const alice = await member(server, pool, id, userId('alice'));
    const bob = await member(server, pool, id, userId('bob'));
    const A = alice.user;
    const B = bob.user;
    await pushOk(alice, 'status', { muted: true });

    // bob's connection drops, then comes back within the grace period.
    const bobBack = bob.chan.joins.next((j) => j.status === 'ok', 10000, 'bob rejoins');
    await bob.client.disconnect();
    await nextStatus(alice, (s) => partOf(s, B)?.connected === false, 'bob disconnected');
    bob.client.socket.connect();
    await bobBack;
    await nextStatus(alice, (s) => partOf(s, B)?.connected === true, 'bob reconnected');

    // The RoomServer crashes; both rejoin.
    const rejoins = [alice, bob].map((m) => m.chan.joins.next((j) => j.status === 'ok', 10000, `${m.user} rejoins`));
    const cr = await crashRoom(server, id, 'history-test-reason');
    assert.equal(cr.status, 202, `crash: ${cr.status} ${cr.text}`);
    await Promise.all(rejoins);

    assert.equal(await leave(alice.chan), 'ok');
    const del = await endRoom(server, id);
    assert.ok(del.status >= 200 && del.status < 300, `DELETE: ${del.status} ${del.text}`);
    await nextEvent(bob, 'phx_close', () => true, 'phx_close at the end');

    const { events } = await eventsWhen(id, (evs) => evs.some((e) => e.type === 'room_ended'), 'room_ended recorded');
    assertEventShapes(events, t0);
    const key = (e) => `${e.type}${e.user ? ':' + e.user : ''}`;

    // Up to the crash, exactly this.
    const iRestart = events.findIndex((e) => e.type === 'room_restarted');
    assert.ok(iRestart >= 0, `room_restarted recorded: ${brief(events)}`);
    assert.deepEqual(events.slice(0, iRestart + 1).map(key), [
      'room_created', `participant_joined:${A}`, `participant_joined:${B}`, `status_changed:${A}`,
      `participant_disconnected:${B}`, `participant_reconnected:${B}`, 'room_restarted',
    ], brief(events));
    assert.match(JSON.stringify(events[3].data ?? null), /"muted":true/, `status_changed carries the change: ${JSON.stringify(events[3])}`);
    assert.match(JSON.stringify(events[iRestart].data ?? null), /history-test-reason/,
      `room_restarted carries the reason: ${JSON.stringify(events[iRestart])}`);

    // After it: (re)connections of the rejoins may be recorded; then
    // alice's leave, possibly bob's, and the end, last.
    const rest = events.slice(iRestart + 1)
      .filter((e) => e.type !== 'participant_disconnected' && e.type !== 'participant_reconnected');
    assert.equal(key(rest[0]), `participant_left:${A}`, brief(events));
    assert.equal(rest.at(-1).type, 'room_ended', brief(events));
    assert.equal(events.at(-1).type, 'room_ended', `room_ended is the last event: ${brief(events)}`);
    for (const e of rest.slice(1, -1)) assert.equal(key(e), `participant_left:${B}`, brief(events));
    assert.equal(events.filter((e) => e.type === 'room_created').length, 1, 'a crash does not re-create the room');
  });

  test('events are paged with ?after= and next', async () => {
    const t0 = Date.now();
    const id = roomId('page');
    await createRoom(server, { id });
    const alice = await member(server, pool, id, userId('alice'));
    const N = 150;
    for (let i = 1; i <= N; i += 25) {
      const batch = [];
      for (let k = i; k < i + 25 && k <= N; k++) batch.push(pushOk(alice, 'status', { n: k }));
      await Promise.all(batch);
    }
    const total = N + 2; // room_created, participant_joined, N status_changed
    const { events, pages } = await eventsWhen(id, (evs) => evs.length >= total, `${total} events recorded`);
    assert.equal(events.length, total, brief(events));
    assertEventShapes(events, t0);
    assert.ok(pages.length >= 2, `${total} events come in more than one page: ${JSON.stringify(pages)}`);
    for (const [i, p] of pages.entries()) {
      const upTo = pages.slice(0, i + 1).reduce((s, x) => s + x.count, 0);
      if (i < pages.length - 1) {
        assert.ok(p.count > 0, `a page before the last is not empty: ${JSON.stringify(pages)}`);
        assert.equal(p.next, upTo, `next is the last seq of its page: ${JSON.stringify(pages)}`);
      } else {
        assert.equal(p.next, null, 'the last page says next: null');
      }
    }
    const ns = events.filter((e) => e.type === 'status_changed').map((e) => {
      const m = /"n":(\d+)/.exec(JSON.stringify(e.data ?? null));
      return m ? Number(m[1]) : null;
    });
    assert.deepEqual(ns, Array.from({ length: N }, (_, i) => i + 1), 'status changes recorded in order, once each');

    const mid = await roomEvents(server, id, 50);
    assert.equal(mid.status, 200, mid.text);
    assert.equal(mid.json.events[0].seq, 51, '?after=50 starts at seq 51');
    const end = await roomEvents(server, id, total);
    assert.equal(end.status, 200, end.text);
    assert.deepEqual(end.json, { events: [], next: null }, '?after=<last seq>: nothing more');
  });
});

describe('call history', () => {
  test('GET /api/calls?user=&limit= lists finished rooms, newest first, with their times and participants', async () => {
    const u = userId('caller');
    const v = userId('callee');
    const ids = [roomId('call'), roomId('call'), roomId('call')];
    const created = [];
    for (const id of ids) {
      // Distinct creation times, so "newest first" has one answer.
      if (created.length) await waitUntil(() => Date.now() > created.at(-1).created_at + 1, { label: 'the clock moves' });
      created.push(await createRoom(server, { id }));
    }
    // ids[0]: u alone (never active); ids[1], ids[2]: u and v (active).
    const m0 = await member(server, pool, ids[0], u);
    for (const id of ids.slice(1)) {
      const a = await member(server, pool, id, u);
      await member(server, pool, id, v);
      await nextStatus(a, (s) => s.status === 'active', 'active');
    }
    await pushAwait(m0.chan, 'status', { alone: true });
    for (const id of ids) {
      const r = await endRoom(server, id);
      assert.ok(r.status >= 200 && r.status < 300, `DELETE ${id}: ${r.status} ${r.text}`);
    }

    const mine = await waitUntil(async () => {
      const r = await calls(server, { user: u });
      const got = r.json?.calls?.filter((c) => ids.includes(c.id)) ?? [];
      return r.status === 200 && got.length === 3 ? r.json.calls : false;
    }, { label: `three call records for ${u}` });
    assert.deepEqual(mine.map((c) => c.id), [ids[2], ids[1], ids[0]], 'newest first, only the user\'s calls');
    for (const c of mine) {
      const k = ids.indexOf(c.id);
      assert.equal(c.created_at, created[k].created_at, `created_at of ${c.id}`);
      assert.ok(Number.isInteger(c.ended_at) && c.ended_at >= c.created_at, `ended_at: ${JSON.stringify(c)}`);
      const duration = c.duration_ms ?? c.duration;
      assert.ok(typeof duration === 'number' && duration >= 0, `a duration: ${JSON.stringify(c)}`);
      assert.ok(Array.isArray(c.participants) && c.participants.includes(u), `participants: ${JSON.stringify(c)}`);
    }
    const [c2, c1, c0] = mine;
    assert.equal(c0.started_at, null, `never active: started_at null: ${JSON.stringify(c0)}`);
    assert.deepEqual(c0.participants, [u]);
    for (const c of [c1, c2]) {
      assert.ok(Number.isInteger(c.started_at) && c.started_at >= c.created_at && c.started_at <= c.ended_at,
        `started_at when it became active: ${JSON.stringify(c)}`);
      assert.deepEqual([...c.participants].sort(), [u, v].sort());
    }

    const limited = await calls(server, { user: u, limit: 2 });
    assert.equal(limited.status, 200, limited.text);
    assert.deepEqual(limited.json.calls.map((c) => c.id), [ids[2], ids[1]], '?limit=2: the two newest');
    const theirs = await calls(server, { user: v });
    assert.deepEqual(theirs.json.calls.map((c) => c.id), [ids[2], ids[1]], `${v} took part in two`);
    const nobody = await calls(server, { user: userId('nobody') });
    assert.deepEqual(nobody.json, { calls: [] });
    const all = await calls(server, { limit: 1 });
    assert.equal(all.json.calls.length, 1, '?limit=1 without a user');
    assert.equal(all.json.calls[0].id, ids[2], 'the newest call of all');

    // The ended rooms' events stay readable.
    const ev = await roomEvents(server, ids[0]);
    assert.equal(ev.status, 200, ev.text);
    assert.ok(ev.json.events.some((e) => e.type === 'room_ended'), 'room_ended readable after the end');
  });
});
