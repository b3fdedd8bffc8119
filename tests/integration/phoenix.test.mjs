// The official phoenix.js client against roost (design §4): connect,
// heartbeat, join/leave of user:<sub>, authorisation, presence across
// several connections of one user, ringing through the REST notify call,
// the authToken subprotocol, and refused tokens at the upgrade.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  Inbox, Presence, TIMEOUT, errorShape, join, leave, mintToken, notify, phxChannel, phxClient,
  startServer, upgradeStatus, userId, apiToken,
} from './helpers.mjs';

let server;
const clients = [];

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const c of clients) c.close();
  if (server) await server.cleanup();
});

function client(opts) {
  const c = phxClient(server, opts);
  clients.push(c);
  return c;
}

/** Every presence sync as a snapshot {userId: metas[]}, in an Inbox. */
function presenceLog(chan) {
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

describe('phoenix client', () => {
  test('connects and heartbeats for several intervals without a reconnect', async () => {
    const sub = userId('hb');
    const c = client({ token: mintToken({ sub }), heartbeatIntervalMs: 200 });
    await c.connect();
    // phoenix.js closes and reconnects if a heartbeat is not answered
    // within one interval: five answered heartbeats and no close is the
    // proof that every one was answered in time.
    const refs = new Set();
    for (let i = 0; i < 5; i++) {
      const m = await c.messages.next((x) => x.topic === 'phoenix' && x.event === 'phx_reply', 2000,
        `heartbeat reply #${i + 1}`);
      assert.equal(m.payload.status, 'ok');
      assert.equal(typeof m.ref, 'string');
      refs.add(m.ref);
    }
    assert.equal(refs.size, 5, 'each heartbeat is answered with its own ref');
    assert.equal(c.closes.all.length, 0, `no close: ${JSON.stringify(c.closes.all)}`);
    assert.equal(c.errors.all.length, 0, `no error: ${JSON.stringify(c.errors.all)}`);
    assert.equal(c.opens.all.length, 1, 'opened once: no reconnect');
    assert.equal(c.socket.isConnected(), true);
  });

  test('joins and leaves its own user:<sub> topic', async () => {
    const sub = userId('jl');
    const c = client({ token: mintToken({ sub }) });
    await c.connect();
    const chan = phxChannel(c, `user:${sub}`);
    const r = await join(chan);
    assert.equal(r.status, 'ok', `join reply: ${JSON.stringify(r)}`);
    assert.equal(chan.isJoined(), true);
    assert.equal(await leave(chan), 'ok');
    assert.equal(chan.isClosed(), true);
    // The socket itself stays up after a leave.
    assert.equal(c.socket.isConnected(), true);
    assert.equal(c.closes.all.length, 0);
  });

  test("join of another user's topic is refused with reason unauthorized", async () => {
    const sub = userId('me');
    const other = userId('other');
    const c = client({ token: mintToken({ sub }), rejoinAfterMs: () => 60000 });
    await c.connect();
    const chan = phxChannel(c, `user:${other}`);
    const r = await join(chan);
    assert.deepEqual(r, { status: 'error', response: { reason: 'unauthorized' } });
    // The connection survives a refused join, and its own topic still works.
    const own = phxChannel(c, `user:${sub}`);
    assert.equal((await join(own)).status, 'ok');
    assert.equal(c.closes.all.length, 0);
  });

  test('presence: three connections of one user show as one user with three metas', async () => {
    const sub = userId('pr');
    const token = mintToken({ sub });
    const cs = [client({ token }), client({ token }), client({ token })];
    await Promise.all(cs.map((c) => c.connect()));
    const chans = cs.map((c) => phxChannel(c, `user:${sub}`));
    const logs = chans.map((ch) => presenceLog(ch));
    for (const ch of chans) assert.equal((await join(ch)).status, 'ok');

    const metasOf = (n) => (snap) => snap[sub] && snap[sub].length === n;
    // Each client ends up seeing all three connections.
    for (const [i, log] of logs.entries()) {
      const snap = await log.syncs.next(metasOf(3), TIMEOUT, `client ${i}: ${sub} with 3 metas`);
      assert.deepEqual(Object.keys(snap), [sub], 'only this user is present on its topic');
      const refs = snap[sub].map((m) => m.phx_ref);
      assert.ok(refs.every((r) => typeof r === 'string' && r.length > 0), `metas carry phx_ref: ${JSON.stringify(snap)}`);
      assert.equal(new Set(refs).size, 3, 'one meta per connection, distinct phx_refs');
    }

    // The third connection drops: the others see two metas.
    await cs[2].disconnect();
    const two = await logs[0].syncs.next(metasOf(2), TIMEOUT, `${sub} with 2 metas after a disconnect`);
    assert.equal(two[sub].length, 2);
    await logs[1].syncs.next(metasOf(2), TIMEOUT, 'second client sees 2 metas');

    // It reconnects; its channel rejoins by itself: three again.
    const rejoined = chans[2].joins.next((j) => j.status === 'ok', TIMEOUT, 'rejoin of the third client');
    cs[2].socket.connect();
    await rejoined;
    const three = await logs[0].syncs.next(metasOf(3), TIMEOUT, `${sub} with 3 metas after the reconnect`);
    assert.equal(new Set(three[sub].map((m) => m.phx_ref)).size, 3);
    await logs[2].syncs.next(metasOf(3), TIMEOUT, 'the reconnected client sees all three');
  });

  test('ring: POST /api/users/:id/notify reaches every connection of that user and no other user', async () => {
    const alice = userId('alice');
    const bob = userId('bob');
    const a1 = client({ token: mintToken({ sub: alice }) });
    const a2 = client({ token: mintToken({ sub: alice }) });
    const b = client({ token: mintToken({ sub: bob }) });
    await Promise.all([a1.connect(), a2.connect(), b.connect()]);
    const ca1 = phxChannel(a1, `user:${alice}`);
    const ca2 = phxChannel(a2, `user:${alice}`);
    const cb = phxChannel(b, `user:${bob}`);
    for (const ch of [ca1, ca2, cb]) assert.equal((await join(ch)).status, 'ok');

    const payload = { call: 'c-42', from: 'carol', video: true, n: 7 };
    const r = await notify(server, alice, 'ring', payload);
    assert.ok(r.status >= 200 && r.status < 300, `notify: ${r.status} ${r.text}`);

    for (const [name, ch] of [['a1', ca1], ['a2', ca2]]) {
      const ev = await ch.events.next((e) => e.event === 'ring', TIMEOUT, `ring on ${name}`);
      assert.deepEqual(ev.payload, payload);
    }

    // Bob's connection: the next ring it sees is the one sent to bob
    // afterwards, not alice's.
    const r2 = await notify(server, bob, 'ring', { call: 'c-43', marker: true });
    assert.ok(r2.status >= 200 && r2.status < 300);
    const ev = await cb.events.next((e) => e.event === 'ring', TIMEOUT, 'ring on bob');
    assert.deepEqual(ev.payload, { call: 'c-43', marker: true });
    assert.equal(cb.events.count((e) => e.event === 'ring'), 1, "bob never saw alice's ring");
    // And alice saw exactly one ring per connection.
    assert.equal(ca1.events.count((e) => e.event === 'ring'), 1);
    assert.equal(ca2.events.count((e) => e.event === 'ring'), 1);
  });

  test('a notify to a user with no connection is accepted and delivered to nobody', async () => {
    const r = await notify(server, userId('nobody'), 'ring', { x: 1 });
    assert.ok(r.status >= 200 && r.status < 300, `notify: ${r.status} ${r.text}`);
  });

  test('authToken: the token in Sec-WebSocket-Protocol authenticates, server answers "phoenix"', async () => {
    const sub = userId('at');
    const c = client({ authToken: mintToken({ sub }) });
    await c.connect();
    // ws itself fails the handshake if the server picks no subprotocol
    // from the offered ones; check the one it picked too.
    assert.equal(c.socket.conn.protocol, 'phoenix');
    const chan = phxChannel(c, `user:${sub}`);
    assert.equal((await join(chan)).status, 'ok');
    // The subject comes from that token: another user's topic is refused.
    const other = phxChannel(c, `user:${userId('x')}`);
    assert.equal((await join(other)).response?.reason, 'unauthorized');
  });

  test('a token minted by POST /api/tokens works with the phoenix client', async () => {
    const sub = userId('api');
    const token = await apiToken(server, { sub, room: '*', ttl: 600 });
    const c = client({ token });
    await c.connect();
    assert.equal((await join(phxChannel(c, `user:${sub}`))).status, 'ok');
  });
});

describe('refused tokens: the upgrade answers 403 with the JSON error shape', () => {
  const sub = 'refused-user';
  const cases = [
    ['bad signature', () => mintToken({ sub, secret: 'not-the-server-secret' })],
    ['expired', () => mintToken({ sub, exp: Math.floor(Date.now() / 1000) - 60 })],
    ['missing', () => undefined],
    ['empty', () => ''],
    ['garbage', () => 'not.a.jwt'],
    ['alg none', () => {
      const b = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
      return `${b({ alg: 'none', typ: 'JWT' })}.${b({ sub, room: '*', exp: Math.floor(Date.now() / 1000) + 60 })}.`;
    }],
  ];
  for (const [name, make] of cases) {
    test(`${name} token`, async () => {
      const r = await upgradeStatus(server, { token: make() });
      assert.equal(r.status, 403, `expected 403, got ${r.status} ${r.body ?? ''}`);
      errorShape(r);
    });
  }

  test('bad signature in the authToken subprotocol', async () => {
    const bad = mintToken({ sub, secret: 'not-the-server-secret' });
    const proto = `base64url.bearer.phx.${Buffer.from(bad).toString('base64').replace(/=/g, '')}`;
    const r = await upgradeStatus(server, { token: undefined, protocols: ['phoenix', proto] });
    assert.equal(r.status, 403, `expected 403, got ${r.status} ${r.body ?? ''}`);
    errorShape(r);
  });

  test('a token whose nbf is in the future', async () => {
    const r = await upgradeStatus(server, { token: mintToken({ sub, extra: { nbf: Math.floor(Date.now() / 1000) + 3600 } }) });
    assert.equal(r.status, 403, `expected 403, got ${r.status} ${r.body ?? ''}`);
    errorShape(r);
  });

  test('a valid token is accepted (control)', async () => {
    const r = await upgradeStatus(server, { token: mintToken({ sub }) });
    assert.equal(r.status, 101);
  });

  test('a token without exp is accepted (exp is optional)', async () => {
    const r = await upgradeStatus(server, { token: mintToken({ sub, exp: null }) });
    assert.equal(r.status, 101);
  });
});
