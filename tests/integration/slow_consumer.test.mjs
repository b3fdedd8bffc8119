// A client that stops reading (design §4 "Limits", net/server.h
// max_outbound): while it is flooded, its outbound queue passes the bound
// and the server closes it with 3008; nobody else waits for it — another
// connection of the same user and a connection of another user keep
// receiving everything, in order.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  TIMEOUT, frameMsg, metrics, mintToken, notify, rawWs, startServer, tcpWs, userId,
} from './helpers.mjs';

let server;
const open = [];

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const c of open) (c.close ? c.close() : c.sock.destroy());
  if (server) await server.cleanup();
});

/** {close3008, websockets} from /metrics. */
async function readGauges() {
  const m = await metrics(server);
  return {
    close3008: m.samples.get('roost_ws_closes_total{code="3008"}'),
    websockets: m.samples.get('roost_websockets'),
  };
}

test('a client that never reads is closed with 3008 while the others keep receiving', async () => {
  const alice = userId('slow');
  const bob = userId('bob');

  // The slow one: a bare TCP WebSocket that joins, then stops reading.
  const slow = await tcpWs(server, { token: mintToken({ sub: alice }) });
  open.push(slow);
  slow.sendText(JSON.stringify(['1', '1', `user:${alice}`, 'phx_join', {}]));
  const joinReply = await slow.frames.next((f) => f.opcode === 0x1, TIMEOUT, 'join reply');
  assert.equal(frameMsg(joinReply).payload.status, 'ok');
  slow.sock.pause();

  // A fast connection of the same user, and one of another user.
  const same = await rawWs(server, { token: mintToken({ sub: alice }) });
  const other = await rawWs(server, { token: mintToken({ sub: bob }) });
  open.push(same, other);
  assert.equal((await same.join(`user:${alice}`)).reply.payload.status, 'ok');
  assert.equal((await other.join(`user:${bob}`)).reply.payload.status, 'ok');

  const g0 = await readGauges();
  assert.equal(typeof g0.close3008, 'number', 'roost_ws_closes_total{code="3008"} is in /metrics');
  const pad = 'p'.repeat(60 * 1024);
  const MAX = 1000; // 60 MiB at most: far past kernel buffers + the 1 MiB bound
  let sent = 0;
  let toBob = 0;
  let detected = false;
  const t0 = Date.now();
  for (let i = 0; i < MAX && !detected; i++) {
    const r = await notify(server, alice, 'flood', { seq: i, pad });
    assert.ok(r.status >= 200 && r.status < 300, `notify #${i}: ${r.status} ${r.text}`);
    sent++;
    if (i % 8 === 0) {
      const rb = await notify(server, bob, 'tick', { seq: toBob });
      assert.ok(rb.status < 300);
      toBob++;
    }
    if (i % 16 === 15) {
      const g = await readGauges();
      detected = g.close3008 > g0.close3008;
    }
  }
  const floodMs = Date.now() - t0;
  assert.ok(detected, `the slow client was not disconnected after ${sent} messages of 60 KiB (${floodMs} ms)`);

  // The others got everything, in order, and promptly.
  for (let i = 0; i < sent; i++) {
    const m = await same.next((x) => x.event === 'flood', TIMEOUT, `flood #${i} on the reading connection`);
    assert.equal(m.payload.seq, i);
  }
  for (let i = 0; i < toBob; i++) {
    const m = await other.next((x) => x.event === 'tick', TIMEOUT, `tick #${i} on the other user`);
    assert.equal(m.payload.seq, i);
  }
  assert.equal(same.closeInfo, null, 'the reading connection of the same user is still open');
  assert.equal(other.closeInfo, null);
  assert.equal((await same.push('phoenix', 'heartbeat', {})).payload.status, 'ok');

  // The slow one: read what it was sent; the connection ends, with a
  // 3008 close frame if the server could still write one.
  slow.sock.resume();
  await Promise.race([slow.ended, new Promise((_, rej) => setTimeout(() => rej(new Error('slow client not ended')), TIMEOUT))]);
  // The server cannot always write a close frame to a client whose
  // buffers are full; if one arrived, it says 3008.
  const closes = slow.frames.all.filter((f) => f.opcode === 0x8);
  if (closes.length) assert.equal(closes[0].code, 3008, `close frame: ${closes[0].code} ${closes[0].reason}`);
  const g1 = await readGauges();
  assert.equal(g1.close3008, g0.close3008 + 1, 'exactly one 3008 close: only the slow client');
  assert.equal(g1.websockets, g0.websockets - 1, 'the two reading connections are still open');
  const floods = slow.frames.all.filter((f) => f.opcode === 0x1).length - 1;
  assert.ok(floods < sent, `the slow client got ${floods} of ${sent}: it was cut off`);
});
