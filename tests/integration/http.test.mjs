// The REST side (design §5): health, metrics, tokens, notify, and the
// errors — every one with the right status and the JSON shape
// {"error":{"code","message"}}, none of them hurting the server.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';

import {
  API_KEY, HOST, SECRET, TIMEOUT, errorShape, metrics, mintToken, rawWs, request, startServer,
  upgradeStatus, userId, waitUntil, withTimeout,
} from './helpers.mjs';

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  if (server) await server.cleanup();
});

/** Sends raw bytes on a fresh TCP connection and collects the answer until the server closes or timeoutMs. */
function rawHttp(bytes, { timeoutMs = TIMEOUT, untilClose = false } = {}) {
  return withTimeout(new Promise((resolve, reject) => {
    const sock = net.connect({ host: HOST, port: server.port });
    const chunks = [];
    sock.on('data', (c) => {
      chunks.push(c);
      const text = Buffer.concat(chunks).toString();
      const end = text.indexOf('\r\n\r\n');
      if (end < 0 || untilClose) return;
      const m = /content-length:\s*(\d+)/i.exec(text.slice(0, end));
      if (m && text.length >= end + 4 + Number(m[1])) sock.destroy();
    });
    sock.on('close', () => {
      const text = Buffer.concat(chunks).toString();
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1]);
      const body = text.slice(text.indexOf('\r\n\r\n') + 4);
      let json;
      try {
        json = JSON.parse(body);
      } catch {
        json = undefined;
      }
      resolve({ status, text: body, json, raw: text });
    });
    sock.on('error', reject);
    sock.write(bytes);
  }), timeoutMs, 'raw HTTP answer');
}

function verifyHs256(token, secret) {
  const [h, c, s] = token.split('.');
  const sig = crypto.createHmac('sha256', secret).update(`${h}.${c}`).digest('base64url');
  return sig === s ? { header: JSON.parse(Buffer.from(h, 'base64url')), claims: JSON.parse(Buffer.from(c, 'base64url')) } : null;
}

describe('health and metrics', () => {
  test('GET /healthz answers 200 without an api key', async () => {
    const r = await request(server, 'GET', '/healthz', { apiKey: null });
    assert.equal(r.status, 200);
  });

  test('GET /metrics is Prometheus text and roost_websockets follows the sockets', async () => {
    const m0 = await metrics(server);
    assert.match(m0.headers['content-type'] ?? '', /^text\/plain/);
    assert.match(m0.text, /^# TYPE roost_websockets gauge$/m);
    const base = m0.samples.get('roost_websockets');
    assert.equal(typeof base, 'number', `roost_websockets in /metrics:\n${m0.text}`);
    const socks = [];
    for (let i = 0; i < 3; i++) socks.push(await rawWs(server, { token: mintToken({ sub: userId('m') }) }));
    await waitUntil(async () => (await metrics(server)).samples.get('roost_websockets') === base + 3,
      { label: `roost_websockets == ${base + 3}` });
    for (const s of socks) s.ws.close(1000);
    await Promise.all(socks.map((s) => s.waitClose()));
    await waitUntil(async () => (await metrics(server)).samples.get('roost_websockets') === base,
      { label: `roost_websockets back to ${base}` });
    // The client closes with 1000 were counted.
    const closes = (await metrics(server)).samples.get('roost_ws_closes_total{code="1000"}');
    assert.ok(closes >= 3, `roost_ws_closes_total{code="1000"} = ${closes}`);
  });

  test('/metrics: roost_channels follows joins and leaves; notifies count broadcast frames', async () => {
    const sub = userId('mc');
    const c = await rawWs(server, { token: mintToken({ sub }) });
    const m0 = (await metrics(server)).samples;
    const { joinRef } = await c.join(`user:${sub}`);
    const m1 = (await metrics(server)).samples;
    assert.equal(m1.get('roost_channels'), m0.get('roost_channels') + 1);
    assert.ok(m1.get('roost_channel_joins_total') >= m0.get('roost_channel_joins_total') + 1);
    const r = await request(server, 'POST', `/api/users/${sub}/notify`, { body: { event: 'ring', payload: {} } });
    assert.equal(r.status, 202, r.text);
    await c.next((m) => m.event === 'ring');
    const m2 = (await metrics(server)).samples;
    assert.ok(m2.get('roost_broadcast_frames_sent_total') >= m1.get('roost_broadcast_frames_sent_total') + 1);
    await c.push(`user:${sub}`, 'phx_leave', {}, joinRef);
    await waitUntil(async () => (await metrics(server)).samples.get('roost_channels') === m0.get('roost_channels'),
      { label: 'roost_channels back after the leave' });
    c.close();
  });

  test('/metrics counts HTTP requests', async () => {
    const before0 = (await metrics(server)).samples.get('roost_http_requests_total');
    assert.equal(typeof before0, 'number');
    for (let i = 0; i < 5; i++) await request(server, 'GET', '/healthz', { apiKey: null });
    const after0 = (await metrics(server)).samples.get('roost_http_requests_total');
    assert.ok(after0 >= before0 + 6, `roost_http_requests_total: ${before0} -> ${after0}`);
  });

  test('GET /healthz says ok in JSON', async () => {
    const r = await request(server, 'GET', '/healthz', { apiKey: null });
    assert.equal(r.json?.status, 'ok', r.text);
  });
});

describe('POST /api/tokens', () => {
  test('mints an HS256 JWT with sub, room and exp = now + ttl', async () => {
    const now = Math.floor(Date.now() / 1000);
    const r = await request(server, 'POST', '/api/tokens', { body: { sub: 'alice', room: 'r1', ttl: 120 } });
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers['content-type'] ?? '', /application\/json/);
    const v = verifyHs256(r.json.token, SECRET);
    assert.ok(v, 'signed with the server secret');
    assert.equal(v.header.alg, 'HS256');
    assert.equal(v.claims.sub, 'alice');
    assert.equal(v.claims.room, 'r1');
    assert.ok(Math.abs(v.claims.exp - (now + 120)) <= 5, `exp ${v.claims.exp} vs now+120 ${now + 120}`);
  });

  test('a minted token opens a WebSocket', async () => {
    const r = await request(server, 'POST', '/api/tokens', { body: { sub: userId('tk'), room: '*', ttl: 60 } });
    assert.equal(r.status, 200);
    assert.equal((await upgradeStatus(server, { token: r.json.token })).status, 101);
  });
});

describe('HTTP errors carry the JSON error shape', () => {
  const cases = [
    ['unknown route', 'GET', '/no/such/thing', {}, 404],
    ['unknown api route', 'GET', '/api/nothing-here', {}, 404],
    ['wrong method on /api/tokens', 'GET', '/api/tokens', {}, 405],
    ['wrong method on /healthz', 'POST', '/healthz', { apiKey: null, body: {} }, 405],
    ['wrong method on notify', 'GET', '/api/users/alice/notify', {}, 405],
    ['missing api key (tokens)', 'POST', '/api/tokens', { apiKey: null, body: { sub: 'a', room: '*', ttl: 60 } }, 401],
    ['wrong api key (tokens)', 'POST', '/api/tokens', { apiKey: 'wrong', body: { sub: 'a', room: '*', ttl: 60 } }, 401],
    ['missing api key (notify)', 'POST', '/api/users/alice/notify', { apiKey: null, body: { event: 'ring', payload: {} } }, 401],
    ['api key in the wrong scheme', 'POST', '/api/tokens',
      { apiKey: null, headers: { Authorization: `Basic ${API_KEY}` }, body: { sub: 'a', room: '*', ttl: 60 } }, 401],
    ['malformed JSON (tokens)', 'POST', '/api/tokens', { body: '{"sub": "a", ' }, 400],
    ['malformed JSON (notify)', 'POST', '/api/users/alice/notify', { body: '{' }, 400],
    // JSON, but not what the route wants: 422 (docs/api.md).
    ['JSON that is not an object (tokens)', 'POST', '/api/tokens', { body: '[1,2]' }, 422],
    ['notify without an event', 'POST', '/api/users/alice/notify', { body: { payload: {} } }, 422],
    ['tokens without sub', 'POST', '/api/tokens', { body: { room: '*', ttl: 60 } }, 422],
    ['tokens with a number sub', 'POST', '/api/tokens', { body: { sub: 5, room: '*', ttl: 60 } }, 422],
  ];
  for (const [name, method, path, opts, status] of cases) {
    test(`${name} -> ${status}`, async () => {
      const r = await request(server, method, path, opts);
      assert.equal(r.status, status, `${method} ${path}: got ${r.status} ${r.text}`);
      assert.match(r.headers['content-type'] ?? '', /application\/json/, 'error bodies are JSON');
      errorShape(r);
    });
  }

  test('405 names the allowed methods', async () => {
    const r = await request(server, 'GET', '/api/tokens');
    assert.equal(r.status, 405);
    assert.match(r.headers.allow ?? '', /POST/);
  });

  test('a body announced over 1 MiB -> 413, before the body is sent', async () => {
    const r = await rawHttp(`POST /api/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${API_KEY}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${1100 * 1024}\r\n\r\n`);
    assert.equal(r.status, 413, r.raw.slice(0, 200));
    errorShape(r);
  });

  test('a header block over 16 KiB -> 431', async () => {
    const r = await rawHttp(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'y'.repeat(17 * 1024)}\r\n\r\n`);
    assert.equal(r.status, 431, r.raw.slice(0, 200));
    errorShape(r);
  });

  test('a malformed request line -> 400', async () => {
    const r = await rawHttp('THIS IS NOT HTTP\r\n\r\n');
    assert.equal(r.status, 400, r.raw.slice(0, 200));
    errorShape(r);
  });

  test('pipelined requests are answered in order on one connection', async () => {
    const r = await rawHttp('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' +
      'GET /no/such/thing HTTP/1.1\r\nHost: x\r\n\r\n' +
      'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', { untilClose: true });
    const statuses = [...r.raw.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
    assert.deepEqual(statuses, [200, 404, 200], r.raw.slice(0, 400));
  });

  test('the server still serves after all of the above', async () => {
    assert.equal((await request(server, 'GET', '/healthz', { apiKey: null })).status, 200);
    const r = await request(server, 'POST', '/api/tokens', { body: { sub: 'z', room: '*', ttl: 10 } });
    assert.equal(r.status, 200);
  });
});

describe('WebSocket upgrade errors', () => {
  test('an upgrade on an unknown path is refused with 404', async () => {
    const r = await upgradeStatus(server, { path: '/nope/websocket' });
    assert.equal(r.status, 404, `got ${r.status} ${r.body}`);
  });

  test('a plain GET on the socket path (no upgrade) is refused with a 4xx JSON error', async () => {
    const r = await request(server, 'GET', `/socket/websocket?vsn=2.0.0&token=${mintToken({ sub: 'a' })}`, { apiKey: null });
    assert.ok(r.status >= 400 && r.status < 500, `got ${r.status}`);
    errorShape(r);
  });
});
