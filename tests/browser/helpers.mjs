// helpers.mjs — fixtures for the browser tests: a roost server on
// 127.0.0.1 (port 0) with development credentials (no --secret/--api-key:
// POST /dev/token exists) or with real ones, plain HTTP requests whose
// path is sent exactly as written (no normalisation of "..", so traversal
// can be tried), Debian's chromium through playwright-core, pages joined
// to a call on the demo page, what each receives from whom (getStats), and
// a RoomServer crash in the middle of a call.
//
// Nothing sleeps to synchronise: the server's "listening" line, process
// exits and page events are awaited, each with a deadline; the only
// polling is waitUntil(), bounded, for state with no event (getStats).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const ROOST = process.env.ROOST_BIN || path.join(ROOT, 'build/roost');
export const HOST = '127.0.0.1';
export const CHROMIUM = process.env.ROOST_CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless=new', '--no-sandbox',
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--no-first-run',
];

/** Resolves like `promise`, or rejects after `ms` with "timeout: <label>". */
export function withTimeout(promise, ms, label) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${label}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** Polls fn until it returns a truthy value, at most timeoutMs. */
export async function waitUntil(fn, { timeoutMs = 15000, intervalMs = 100, label = 'condition' } = {}) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last && last.ok !== false) return last;
    if (Date.now() >= end) {
      throw new Error(`timeout after ${timeoutMs} ms waiting for ${label}; last: ${JSON.stringify(last)}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

const running = new Set();
process.on('exit', () => { for (const p of running) p.kill('SIGKILL'); });

/**
 * Starts `roost serve` on 127.0.0.1, port 0, with a fresh data directory.
 * dev: true -> no credentials given (development values, /dev/token);
 * false -> --secret and --api-key; extraArgs are appended (e.g. --media janus). Resolves to {url, port, stderr, stop()}.
 */
export async function startServer({ dev = true, extraArgs = [] } = {}) {
  const data = mkdtempSync(path.join(tmpdir(), 'roost-browser-'));
  const args = ['serve', '--host', HOST, '--port', '0', '--data', data, ...extraArgs];
  if (!dev) args.push('--secret', 'browser-test-secret-0123456789', '--api-key', 'browser-test-key');
  const env = { ...process.env };
  delete env.ROOST_SECRET;
  delete env.ROOST_API_KEY;
  delete env.ROOST_PORT;
  const proc = spawn(ROOST, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  running.add(proc);
  let stderr = '';
  const exited = new Promise((resolve) => proc.on('exit', (code, sig) => {
    running.delete(proc);
    resolve({ code, sig });
  }));
  const port = await withTimeout(new Promise((resolve, reject) => {
    proc.stderr.on('data', (d) => {
      stderr += d;
      const m = /listening on http:\/\/[^:]+:(\d+)/.exec(stderr);
      if (m) resolve(Number(m[1]));
    });
    exited.then(({ code, sig }) => reject(new Error(`roost exited (${code ?? sig}): ${stderr}`)));
  }), 10000, 'roost listening line');
  return {
    port,
    url: `http://${HOST}:${port}`,
    get stderr() { return stderr; },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await withTimeout(exited, 15000, 'roost exit after SIGTERM');
      rmSync(data, { recursive: true, force: true });
    },
  };
}

/**
 * One HTTP request; the path goes on the wire as given. Resolves to
 * {status, headers, text, json}.
 */
export function request(port, method, rawPath, body) {
  return withTimeout(new Promise((resolve, reject) => {
    const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
    const req = http.request({
      host: HOST, port, method, path: rawPath,
      headers: data ? { 'content-type': 'application/json', 'content-length': data.length } : {},
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  }), 5000, `${method} ${rawPath}`);
}

// ---- the demo page in chromium ---------------------------------------------------

/**
 * Debian's chromium (never a downloaded one) with a fake camera and
 * microphone and loopback ICE, in a fresh profile directory. Resolves to
 * {context, close()}; close() also removes the profile.
 */
export async function launchBrowser({ width = 1280, height = 720 } = {}) {
  const profile = mkdtempSync(path.join(tmpdir(), 'roost-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS,
    viewport: { width, height }, timeout: 30000,
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Fills the join form of `page` and waits for the call view. */
export async function joinForm(page, room, name) {
  await page.locator('#join').waitFor({ state: 'visible', timeout: 10000 });
  await page.fill('#room', room);
  await page.fill('#name', name);
  await page.click('#join button[type=submit]');
  await page.locator('#call').waitFor({ state: 'visible', timeout: 10000 });
}

/**
 * A new page on the demo page of srv, joined to `room` as `name`. init: a
 * function run in the page before its scripts, on every load (addInitScript).
 */
export async function openAndJoin(context, srv, room, name, { init } = {}) {
  const page = await context.newPage();
  if (init) await page.addInitScript(init);
  page.on('pageerror', (e) => console.error(`[${name}] page error:`, e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') console.error(`[${name}]`, m.text());
  });
  await page.goto(srv.url + '/');
  await joinForm(page, room, name);
  return page;
}

/**
 * What `page` receives from participant `from`, from getStats() of the
 * connection that carries it: in janus mode the subscription
 * window.roost.subs.get(from).pc, peer to peer window.roost.pc when its
 * peer is `from`. ok: video frames decoded and audio bytes received.
 */
export function inbound(page, from) {
  return page.evaluate(async (from) => {
    const r = window.roost;
    const pc = r.mode === 'janus' ? r.subs.get(from)?.pc : (r.peer === from ? r.pc : null);
    if (!pc) return { ok: false, why: `no connection for ${from}`, mode: r.mode, feeds: r.feeds() };
    const out = { ok: false, from, state: pc.connectionState,
                  framesDecoded: 0, videoBytes: 0, audioBytes: 0, width: 0, height: 0 };
    (await pc.getStats()).forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      if (s.kind === 'video') {
        out.framesDecoded = s.framesDecoded ?? 0;
        out.videoBytes = s.bytesReceived ?? 0;
        out.width = s.frameWidth ?? 0;
        out.height = s.frameHeight ?? 0;
      } else if (s.kind === 'audio') {
        out.audioBytes = s.bytesReceived ?? 0;
      }
    });
    out.ok = out.framesDecoded > 0 && out.audioBytes > 0;
    return out;
  }, from);
}

/**
 * Waits (bounded poll of getStats) until `page` decodes video from `from`
 * and receives its audio, more than min.frames frames and min.audio bytes.
 */
export function mediaFlows(page, from, label, { min = { frames: 0, audio: 0 }, timeoutMs = 30000 } = {}) {
  return waitUntil(async () => {
    const s = await inbound(page, from);
    s.ok = s.ok && s.framesDecoded > min.frames && s.audioBytes > min.audio;
    return s;
  }, { timeoutMs, label });
}

/** The users of the remote tiles `page` shows, sorted. */
export function remoteTiles(page) {
  return page.evaluate(() => [...document.querySelectorAll('#tiles figure.remote')]
    .map((f) => f.dataset.user).sort());
}

/** Waits until every remote tile of `page` plays a video (videoWidth > 0). */
export function tilesPlay(page, users, label) {
  return waitUntil(() => page.evaluate((users) => {
    const sizes = {};
    for (const u of users) {
      const v = document.querySelector(`#tiles figure.remote[data-user="${u}"] video`);
      sizes[u] = v ? `${v.videoWidth}x${v.videoHeight}` : 'no tile';
    }
    return { ok: Object.values(sizes).every((s) => /^[1-9]/.test(s)), sizes };
  }, users), { timeoutMs: 15000, label });
}

// ---- a RoomServer crash mid-call ----------------------------------------------------

/** POST /api/rooms/:id/crash with the development API key roost printed. */
export async function crashRoom(srv, id) {
  const m = /development API key: (\S+)/.exec(srv.stderr);
  assert.ok(m, 'no development API key in roost\'s stderr');
  const res = await fetch(`${srv.url}/api/rooms/${encodeURIComponent(id)}/crash`, {
    method: 'POST',
    headers: { authorization: `Bearer ${m[1]}`, 'content-type': 'application/json' },
    body: JSON.stringify({ reason: 'browser test crash' }),
  });
  assert.equal(res.status, 202, await res.text());
}

// Counts the channel's errors and join replies from now on (the join push's
// "ok" hooks fire again on every rejoin; installing one fires it once now),
// and remembers every RTCPeerConnection the page has.
function watchChannel(page) {
  return page.evaluate(() => {
    const r = window.roost;
    window.__conns = () => [r.pc, r.pubPc, ...[...r.subs.values()].map((s) => s.pc)];
    window.__crash = { errors: 0, joins: 0, conns: window.__conns() };
    r.channel.onError(() => { window.__crash.errors += 1; });
    r.channel.joinPush.receive('ok', () => { window.__crash.joins += 1; });
    return window.__crash.joins;
  });
}

/** The room as `page` shows it: its state and what the page renders of it. */
export function shownState(page) {
  return page.evaluate(() => {
    const st = window.roost.state;
    const parts = {};
    for (const [u, p] of Object.entries(st.participants || {})) {
      parts[u] = { connected: p.connected, status: p.status };
    }
    return {
      status: st.status, participants: parts,
      badge: document.getElementById('room-status').className,
      meta: document.getElementById('room-meta').textContent.replace(/^v\d+ · /, ''),
      people: [...document.querySelectorAll('#people li')].map((li) => li.textContent),
      tiles: [...document.querySelectorAll('#tiles figure[data-user]')]
        .map((f) => `${f.dataset.user}: ${f.querySelector('figcaption').textContent}`),
    };
  });
}

/**
 * Crashes the RoomServer of `room` while the pages ({name: page}, all in a
 * call with each other) receive media, and checks that every page gets
 * phx_error, rejoins by itself, shows the room exactly as before, and keeps
 * decoding from every other participant on the same connections (nothing
 * renegotiated). Returns what each page showed before the crash.
 */
export async function crashMidCall(srv, room, pages) {
  const names = Object.keys(pages);
  const before = {};
  for (const [name, page] of Object.entries(pages)) {
    const frames = {};
    for (const other of names.filter((n) => n !== name)) {
      frames[other] = (await mediaFlows(page, other, `${name} receives ${other} before the crash`)).framesDecoded;
    }
    before[name] = { state: await shownState(page), frames, joins: await watchChannel(page) };
  }
  await crashRoom(srv, room);
  for (const [name, page] of Object.entries(pages)) {
    await waitUntil(() => page.evaluate((j) => ({
      ok: window.__crash.errors > 0 && window.__crash.joins > j && window.roost.channel.state === 'joined',
      errors: window.__crash.errors, joins: window.__crash.joins, state: window.roost.channel.state,
    }), before[name].joins), { timeoutMs: 15000, label: `${name} rejoined after the crash` });
  }
  for (const [name, page] of Object.entries(pages)) {
    await waitUntil(async () => {
      const now = await shownState(page);
      return { ok: JSON.stringify(now) === JSON.stringify(before[name].state), now, was: before[name].state };
    }, { timeoutMs: 5000, label: `${name} shows the room as before the crash` });
    for (const [other, frames] of Object.entries(before[name].frames)) {
      const after = await waitUntil(async () => {
        const s = await inbound(page, other);
        s.sameConns = await page.evaluate(() => {
          const now = window.__conns(), was = window.__crash.conns;
          return now.length === was.length && now.every((c, i) => c === was[i]);
        });
        s.ok = s.sameConns && s.framesDecoded > frames + 30;
        return s;
      }, { timeoutMs: 30000, label: `${name} keeps decoding ${other} on the same connections across the crash` });
      console.log(`${name} <- ${other} frames across the crash: ${frames} -> ${after.framesDecoded}`);
    }
  }
  return before;
}
