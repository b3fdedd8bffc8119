// serve.test.mjs — the demo page over HTTP (no browser): GET / and
// /static/... with their content types, the phoenix client served from the
// npm package, 404 JSON for unknown files, traversal refused in several
// spellings, and POST /dev/token present only with development credentials.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { request, startServer } from './helpers.mjs';

describe('static files (development credentials)', () => {
  let srv;
  before(async () => { srv = await startServer({ dev: true }); });
  after(async () => { await srv?.stop(); });

  test('GET / is the demo page', async () => {
    const r = await request(srv.port, 'GET', '/');
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'text/html; charset=utf-8');
    assert.match(r.text, /<script type="module" src="\/static\/app.js">/);
  });

  test('assets carry their content types', async () => {
    for (const [p, type] of [
      ['/static/app.js', 'text/javascript; charset=utf-8'],
      ['/static/style.css', 'text/css; charset=utf-8'],
      ['/static/index.html', 'text/html; charset=utf-8'],
    ]) {
      const r = await request(srv.port, 'GET', p);
      assert.equal(r.status, 200, p);
      assert.equal(r.headers['content-type'], type, p);
      assert.equal(r.headers['x-content-type-options'], 'nosniff');
    }
    const head = await request(srv.port, 'HEAD', '/static/app.js');
    assert.equal(head.status, 200);
    assert.equal(head.text, '');
  });

  test('the phoenix client comes from the npm package', async () => {
    const r = await request(srv.port, 'GET', '/static/vendor/phoenix.mjs');
    assert.equal(r.status, 200, r.text.slice(0, 200));
    assert.equal(r.headers['content-type'], 'text/javascript; charset=utf-8');
    assert.match(r.text, /export \{[^}]*Presence[^}]*Socket/s);
  });

  test('an unknown file is a 404 with the JSON error shape', async () => {
    const r = await request(srv.port, 'GET', '/static/nope.js');
    assert.equal(r.status, 404);
    assert.equal(r.json?.error?.code, 'not_found');
    const w = await request(srv.port, 'POST', '/static/app.js', {});
    assert.equal(w.status, 405);
  });

  test('/static/../ and its spellings are refused', async () => {
    for (const p of [
      '/static/../',
      '/static/../src/main.c',
      '/static/../../../../etc/passwd',
      '/static/%2e%2e/src/main.c',
      '/static/%2e%2e%2fsrc%2fmain.c',
      '/static/vendor/../../package.json',
      '/static/.hidden',
      '/static//etc/passwd',
    ]) {
      const r = await request(srv.port, 'GET', p);
      assert.equal(r.status, 400, `${p}: ${r.status} ${r.text.slice(0, 80)}`);
      assert.equal(r.json?.error?.code, 'invalid_path', p);
      assert.doesNotMatch(r.text, /#include|root:/);
    }
  });

  test('POST /dev/token mints a token for the room', async () => {
    const r = await request(srv.port, 'POST', '/dev/token', { sub: 'ann', room: 'r1' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['cache-control'], 'no-store');
    const parts = r.json.token.split('.');
    assert.equal(parts.length, 3);
    const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString());
    assert.equal(claims.sub, 'ann');
    assert.equal(claims.room, 'r1');
    const bad = await request(srv.port, 'POST', '/dev/token', { room: 'r1' });
    assert.equal(bad.status, 422);
    assert.match(srv.stderr, /warning: no --secret/);
  });
});

describe('real credentials', () => {
  let srv;
  before(async () => { srv = await startServer({ dev: false }); });
  after(async () => { await srv?.stop(); });

  test('POST /dev/token does not exist; the page is still served', async () => {
    const r = await request(srv.port, 'POST', '/dev/token', { sub: 'ann', room: 'r1' });
    assert.equal(r.status, 404);
    assert.equal(r.json?.error?.code, 'not_found');
    assert.equal((await request(srv.port, 'GET', '/')).status, 200);
  });
});
