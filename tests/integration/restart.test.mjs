// A deploy, seen from the clients (design §4 "Graceful shutdown", §6):
// SIGTERM drains every WebSocket with close 1012 and the process exits 0;
// a new server on the same port and data directory comes up, and the
// phoenix clients reconnect and rejoin by themselves.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  TIMEOUT, join, mintToken, notify, phxChannel, phxClient, rawWs, startServer, userId,
} from './helpers.mjs';

let server;
const clients = [];
const raws = [];

after(async () => {
  for (const c of clients) c.close();
  for (const r of raws) r.close();
  if (server) await server.cleanup();
});

test('clients see close 1012 on SIGTERM, then reconnect and rejoin on a new server on the same port', async () => {
  server = await startServer();
  const alice = userId('alice');
  const bob = userId('bob');
  const mk = (sub) => {
    const c = phxClient(server, { token: mintToken({ sub }) });
    clients.push(c);
    return c;
  };
  const a1 = mk(alice);
  const a2 = mk(alice);
  const b = mk(bob);
  await Promise.all([a1.connect(), a2.connect(), b.connect()]);
  const chans = [phxChannel(a1, `user:${alice}`), phxChannel(a2, `user:${alice}`), phxChannel(b, `user:${bob}`)];
  for (const ch of chans) assert.equal((await join(ch)).status, 'ok');

  // A raw client too, to read the close frame exactly.
  const raw = await rawWs(server, { token: mintToken({ sub: bob }) });
  raws.push(raw);
  assert.equal((await raw.join(`user:${bob}`)).reply.payload.status, 'ok');

  const port = server.port;
  const exit = await server.stop();
  assert.deepEqual(exit, { code: 0, signal: null }, `roost exits 0 after SIGTERM; log:\n${server.tail()}`);

  const rawClose = await raw.waitClose();
  assert.equal(rawClose.code, 1012, `raw client close: ${JSON.stringify(rawClose)}`);
  for (const [i, c] of [a1, a2, b].entries()) {
    const cl = await c.closes.next(() => true, TIMEOUT, `close event on phoenix client ${i}`);
    assert.equal(cl.code, 1012, `phoenix client ${i} close code`);
  }

  // The clients retry every 100 ms; start the new server on the same port.
  const rejoins = chans.map((ch) => ch.joins.next((j) => j.status === 'ok', 15000, `rejoin of ${ch.topic}`));
  server = await server.restart();
  assert.equal(server.port, port);
  for (const r of await Promise.all(rejoins)) assert.equal(r.status, 'ok');
  for (const c of [a1, a2, b]) assert.ok(c.opens.all.length >= 2, 'each client opened a new connection');

  // The rejoined channels are live: a ring reaches both of alice's.
  const payload = { call: 'after-restart' };
  const r = await notify(server, alice, 'ring', payload);
  assert.ok(r.status >= 200 && r.status < 300, `notify: ${r.status} ${r.text}`);
  for (const ch of chans.slice(0, 2)) {
    const ev = await ch.events.next((e) => e.event === 'ring' && e.payload.call === 'after-restart', TIMEOUT,
      `ring after restart on ${ch.topic}`);
    assert.deepEqual(ev.payload, payload);
  }
  assert.equal(chans[2].events.count((e) => e.event === 'ring'), 0, 'bob got no ring for alice');

  const exit2 = await server.stop();
  assert.deepEqual(exit2, { code: 0, signal: null });
});

test('SIGTERM with no client connected exits 0 promptly', async () => {
  const s = await startServer();
  try {
    const t0 = Date.now();
    const exit = await s.stop();
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(Date.now() - t0 < 5000, `exit took ${Date.now() - t0} ms`);
  } finally {
    await s.cleanup();
  }
});
