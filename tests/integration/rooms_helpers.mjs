// rooms_helpers.mjs — fixtures for the rooms tests (design §4 "Room
// state", "Participants and viewers", "Recorded events"; §5 REST), built
// on helpers.mjs (the servers, the phoenix client, Inbox, request()).
//
// A *member* is one phoenix.js Socket joined to room:<id> as a
// participant or a viewer, with everything it sees recorded:
// member.chan.events (room_status, data, signal, presence, phx_error,
// phx_close, room_ended ...), member.chan.joins (every join and rejoin
// outcome) and, for participants, member.syncs (a snapshot of the phoenix
// Presence list at every sync). Every member is registered in a Pool so
// that `after()` closes them all, whatever a test did.
//
// Nothing here sleeps to synchronise: events are awaited through
// Inbox.next() with a timeout, and REST state that has no event (history,
// restored rooms) is polled with waitUntil(), bounded.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

import {
  Inbox, Presence, ROOST, TIMEOUT, join, mintToken, phxChannel, phxClient, pushAwait, request,
  startServer, userId, waitUntil,
} from './helpers.mjs';

/** A fresh room id, unique across test processes. */
export function roomId(prefix = 'room') {
  return userId(prefix);
}

// ---------------------------------------------------------------------------
// REST (design §5)

const enc = encodeURIComponent;

/** POST /api/rooms; asserts 201 and returns the room object. */
export async function createRoom(server, body = {}) {
  const r = await request(server, 'POST', '/api/rooms', { body });
  assert.equal(r.status, 201, `POST /api/rooms ${JSON.stringify(body)}: ${r.status} ${r.text}`);
  assert.equal(typeof r.json?.id, 'string', `POST /api/rooms answers the room object: ${r.text}`);
  if (body.id !== undefined) assert.equal(r.json.id, body.id);
  return r.json;
}

/** GET /api/rooms/:id → {status, json, text}. */
export function getRoom(server, id) {
  return request(server, 'GET', `/api/rooms/${enc(id)}`);
}

/** GET /api/rooms/:id; asserts 200 and returns the room state. */
export async function roomState(server, id) {
  const r = await getRoom(server, id);
  assert.equal(r.status, 200, `GET /api/rooms/${id}: ${r.status} ${r.text}`);
  return r.json;
}

/** DELETE /api/rooms/:id → the response. */
export function endRoom(server, id) {
  return request(server, 'DELETE', `/api/rooms/${enc(id)}`);
}

/** POST /api/rooms/:id/crash → the response. */
export function crashRoom(server, id, reason) {
  return request(server, 'POST', `/api/rooms/${enc(id)}/crash`,
    { body: reason === undefined ? {} : { reason } });
}

/** GET /api/rooms/:id/events[?after=] → the response. */
export function roomEvents(server, id, after) {
  const q = after === undefined || after === null ? '' : `?after=${enc(after)}`;
  return request(server, 'GET', `/api/rooms/${enc(id)}/events${q}`);
}

/**
 * Every recorded event of a room, following `next` page by page (bounded:
 * at most maxPages pages). Returns {events, pages} where pages holds each
 * page's {after, count, next}.
 */
export async function allRoomEvents(server, id, maxPages = 50) {
  const events = [];
  const pages = [];
  let after;
  for (let i = 0; i < maxPages; i++) {
    const r = await roomEvents(server, id, after);
    assert.equal(r.status, 200, `GET /api/rooms/${id}/events?after=${after}: ${r.status} ${r.text}`);
    assert.ok(Array.isArray(r.json?.events), `{"events": [...]} expected: ${r.text}`);
    assert.ok('next' in r.json, `"next" is present (a seq or null): ${r.text}`);
    pages.push({ after: after ?? null, count: r.json.events.length, next: r.json.next });
    events.push(...r.json.events);
    if (r.json.next === null) return { events, pages };
    assert.equal(typeof r.json.next, 'number', `next is a seq or null: ${r.text}`);
    after = r.json.next;
  }
  throw new Error(`more than ${maxPages} pages of events for room ${id}`);
}

/** GET /api/calls with the given query → the response. */
export function calls(server, query = {}) {
  const q = new URLSearchParams(query).toString();
  return request(server, 'GET', `/api/calls${q ? '?' + q : ''}`);
}

// ---------------------------------------------------------------------------
// Members

/** Clients to close at the end of a test file. */
export class Pool {
  constructor() {
    this.clients = [];
  }

  add(c) {
    this.clients.push(c);
    return c;
  }

  closeAll() {
    for (const c of this.clients.splice(0)) {
      try {
        c.close();
      } catch {
        /* already closed */
      }
    }
  }
}

/**
 * Connects a phoenix client for `user` (token for `tokenRoom`, default the
 * room itself) and returns it, registered in `pool`. opts go to
 * phxClient (e.g. rejoinAfterMs).
 */
export async function connectUser(server, pool, user, { tokenRoom = '*', ...opts } = {}) {
  const client = pool.add(phxClient(server, { token: mintToken({ sub: user, room: tokenRoom }), ...opts }));
  await client.connect();
  return client;
}

/** Presence snapshots of a channel: an Inbox of {user: metas[]} at every sync. */
export function trackPresence(chan) {
  const presence = new Presence(chan);
  const syncs = new Inbox(`presence syncs on ${chan.topic}`);
  presence.onSync(() => {
    const snap = {};
    presence.list((id, p) => {
      snap[id] = p.metas;
    });
    syncs.push(snap);
  });
  return { presence, syncs };
}

/**
 * A member of room `id`: connects `user` (its own socket unless `client`
 * is given), joins room:<id> with `params` (e.g. {role: 'viewer'}) and
 * returns {user, client, chan, presence, syncs, reply} where reply is the
 * first join outcome ({status, response}). Does not assert the outcome
 * unless expectOk (the default).
 */
export async function member(server, pool, id, user, {
  params = {}, client, tokenRoom = id, expectOk = true, clientOpts = {},
} = {}) {
  const c = client ?? await connectUser(server, pool, user, { tokenRoom, ...clientOpts });
  const chan = phxChannel(c, `room:${id}`, params);
  const { presence, syncs } = trackPresence(chan);
  const reply = await join(chan);
  if (expectOk) {
    assert.equal(reply.status, 'ok', `${user} joins room:${id} ${JSON.stringify(params)}: ${JSON.stringify(reply)}`);
  }
  return { user, client: c, chan, presence, syncs, reply };
}

/**
 * A fresh room (created through REST with `body`) with two participants,
 * alice and bob, whose presence has settled: {id, alice, bob}.
 */
export async function pairRoom(server, pool, body = {}, prefix = 'pair') {
  const id = roomId(prefix);
  await createRoom(server, { id, ...body });
  const alice = await member(server, pool, id, userId('alice'));
  const bob = await member(server, pool, id, userId('bob'));
  await presenceIs(alice, [alice.user, bob.user]);
  await presenceIs(bob, [alice.user, bob.user]);
  return { id, alice, bob };
}

/** Awaits the next room_status on m whose payload satisfies pred. */
export function nextStatus(m, pred = () => true, label = 'a room_status', timeoutMs = TIMEOUT) {
  return m.chan.events.next((e) => e.event === 'room_status' && pred(e.payload), timeoutMs,
    `${m.user}: ${label}`).then((e) => e.payload);
}

/** Awaits the next event `name` on m matching pred; resolves its payload. */
export function nextEvent(m, name, pred = () => true, label = name, timeoutMs = TIMEOUT) {
  return m.chan.events.next((e) => e.event === name && pred(e.payload), timeoutMs,
    `${m.user}: ${label}`).then((e) => e.payload);
}

/** Pushes and asserts an ok reply; returns the response. */
export async function pushOk(m, event, payload, timeoutMs = TIMEOUT) {
  const r = await pushAwait(m.chan, event, payload, timeoutMs);
  assert.equal(r.status, 'ok', `${m.user}: reply to ${event} ${JSON.stringify(payload)}: ${JSON.stringify(r)}`);
  return r.response;
}

/** Awaits a presence sync on m where exactly `users` are present. */
export function presenceIs(m, users, timeoutMs = TIMEOUT) {
  const want = [...users].sort();
  return m.syncs.next((snap) => {
    const have = Object.keys(snap).sort();
    return have.length === want.length && have.every((u, i) => u === want[i]);
  }, timeoutMs, `${m.user}: presence of exactly [${want.join(', ')}]`);
}

/** Checks the room-state shape of design §4 "Room state"; returns it. */
export function assertRoomShape(state, id) {
  assert.equal(typeof state, 'object', `room state: ${JSON.stringify(state)}`);
  assert.equal(state.id, id, `room id: ${JSON.stringify(state)}`);
  assert.ok(['waiting', 'active', 'ended'].includes(state.status), `status: ${JSON.stringify(state)}`);
  assert.ok(Number.isInteger(state.version) && state.version >= 0, `version: ${JSON.stringify(state)}`);
  assert.ok(Number.isInteger(state.created_at), `created_at (ms): ${JSON.stringify(state)}`);
  assert.ok(Number.isInteger(state.max_participants), `max_participants: ${JSON.stringify(state)}`);
  assert.ok(Number.isInteger(state.viewers), `viewers: ${JSON.stringify(state)}`);
  assert.equal(typeof state.participants, 'object', `participants: ${JSON.stringify(state)}`);
  assert.ok(state.participants !== null && !Array.isArray(state.participants));
  for (const [u, p] of Object.entries(state.participants)) {
    assert.equal(typeof p.connected, 'boolean', `participants.${u}.connected: ${JSON.stringify(p)}`);
    assert.ok(Number.isInteger(p.joined_at), `participants.${u}.joined_at: ${JSON.stringify(p)}`);
    assert.equal(typeof p.status, 'object', `participants.${u}.status: ${JSON.stringify(p)}`);
  }
  return state;
}

// ---------------------------------------------------------------------------
// Servers

/**
 * SIGKILLs `server` and starts a new one on the same port and data
 * directory (which the new one takes over). Returns the new server.
 */
export async function restartAfterKill(server, args = server.args) {
  await server.kill();
  const next = await startServer({ port: server.port, dataDir: server.dataDir, args });
  next.ownsDataDir = server.ownsDataDir;
  server.ownsDataDir = false;
  return next;
}

let usageText;
/** `roost serve`'s usage text (it prints it for an unknown option). */
export function serveUsage() {
  if (usageText === undefined) {
    const r = spawnSync(ROOST, ['serve', '--help'], { encoding: 'utf8', timeout: 5000 });
    usageText = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  }
  return usageText;
}

/**
 * The flags that turn auto-create off, from the usage text, or null if the
 * server has no such flag: `--no-auto-create`, or `--auto-create` taking a
 * value (off).
 */
export function autoCreateOffArgs() {
  const u = serveUsage();
  if (/--no-auto-create\b/.test(u)) return ['--no-auto-create'];
  const m = /--auto-create[ =]\[?([a-z|]+)/.exec(u);
  if (m) {
    const vals = m[1].split('|');
    for (const v of ['off', 'false', '0', 'no']) if (vals.includes(v)) return ['--auto-create', v];
    return ['--auto-create', 'off'];
  }
  if (/--auto-create\b/.test(u)) return ['--auto-create', 'off'];
  return null;
}

/** Waits until GET /api/rooms/:id answers 200 and pred(state); returns the state. */
export async function waitRoom(server, id, pred = () => true, { timeoutMs = TIMEOUT, label = 'the expected state' } = {}) {
  let last;
  try {
    return await waitUntil(async () => {
      const r = await getRoom(server, id);
      last = r;
      return r.status === 200 && pred(r.json) ? r.json : false;
    }, { timeoutMs, label: `room ${id}: ${label}` });
  } catch (e) {
    throw new Error(`${e.message}; last GET /api/rooms/${id}: ${last?.status} ${last?.text}`);
  }
}

/** Runs `fn` over items with at most `n` at once; resolves the results in order. */
export async function mapLimit(items, n, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}
