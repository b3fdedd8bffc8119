// janus.test.mjs — a call through Janus (roost --media janus): two pages
// publish to roost's Janus VideoRoom and each subscribes to the other; each
// page's subscriber connection (window.roost.pc) must show inbound video
// with framesDecoded > 0 and audio bytes > 0. The participants' media state
// (status.media) reaches "connected". Then Janus is killed mid-call and
// started again: the room re-creates its Janus room, asks both pages to
// renegotiate, and media flows again. Last, the RoomServer is crashed
// (POST /api/rooms/:id/crash): it restarts from its backup with the same
// Janus handles (owned by the name room:<id>), both pages rejoin by
// themselves, show the room as it was, and keep decoding on the same
// connections.
//
// Needs a real Janus: run inside tests/media/run.sh (scripts/run-browser-janus.sh
// does); without ROOST_JANUS_URL it is skipped.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';

import { CHROMIUM, CHROMIUM_ARGS, startServer, waitUntil } from './helpers.mjs';

const JANUS = process.env.ROOST_JANUS_URL;
const ROOM = 'janus-call-1';
let srv, context, profile;
const skip = JANUS ? false : 'needs Janus: run through scripts/run-browser-janus.sh';

before(async () => {
  if (skip) return;
  srv = await startServer({ dev: true, extraArgs: ['--media', 'janus', '--janus-url', JANUS] });
  profile = mkdtempSync(path.join(tmpdir(), 'roost-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 720 }, timeout: 30000,
  });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await srv?.stop();
});

async function openAndJoin(name) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`[${name}] page error:`, e.message));
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') console.error(`[${name}]`, m.text()); });
  await page.goto(srv.url + '/');
  await page.fill('#room', ROOM);
  await page.fill('#name', name);
  await page.click('#join button[type=submit]');
  await page.locator('#call').waitFor({ state: 'visible', timeout: 10000 });
  return page;
}

function inbound(page) {
  return page.evaluate(async () => {
    const pc = window.roost.pc;
    if (!pc) return { ok: false, why: 'no subscriber connection', mode: window.roost.mode };
    const out = { ok: false, peer: window.roost.peer, state: pc.connectionState,
                  framesDecoded: 0, audioBytes: 0 };
    (await pc.getStats()).forEach((r) => {
      if (r.type !== 'inbound-rtp') return;
      if (r.kind === 'video') out.framesDecoded = r.framesDecoded ?? 0;
      else if (r.kind === 'audio') out.audioBytes = r.bytesReceived ?? 0;
    });
    out.ok = out.framesDecoded > 0 && out.audioBytes > 0;
    return out;
  });
}

async function mediaFlows(page, from, label, min = { frames: 0, audio: 0 }) {
  const s = await waitUntil(async () => {
    const x = await inbound(page);
    x.ok = x.ok && x.framesDecoded > min.frames && x.audioBytes > min.audio;
    return x;
  }, { timeoutMs: 30000, label });
  assert.equal(s.peer, from);
  return s;
}

function mediaState(page, user) {
  return page.evaluate((u) => window.roost.state?.participants?.[u]?.status?.media ?? null, user);
}

let alice, bob;

test('two pages see and hear each other through Janus, also after Janus restarts', { skip }, async () => {
  alice = await openAndJoin('alice');
  assert.equal(await alice.evaluate(() => window.roost.mode), 'janus');
  bob = await openAndJoin('bob');
  const a1 = await mediaFlows(alice, 'bob', 'alice receives bob through janus');
  const b1 = await mediaFlows(bob, 'alice', 'bob receives alice through janus');
  console.log('through janus:', JSON.stringify({ alice: a1, bob: b1 }));
  await waitUntil(async () => ({ ok: (await mediaState(alice, 'bob')) === 'connected' &&
                                     (await mediaState(bob, 'alice')) === 'connected' }),
                  { timeoutMs: 10000, label: 'media state connected in the room state' });

  // Kill Janus mid-call, start it again: roost re-creates the VideoRoom and
  // the pages renegotiate.
  const ctl = process.env.ROOST_JANUS_CTL, dir = process.env.ROOST_JANUS_DIR;
  execFileSync('bash', [ctl, 'stop', dir]);
  await waitUntil(async () => ({ ok: (await mediaState(alice, 'alice')) === 'failed' }),
                  { timeoutMs: 10000, label: 'media state failed after Janus died' });
  execFileSync('bash', [ctl, 'start', dir]);
  const oldPc = await alice.evaluate(() => { window.__old = window.roost.pc; return true; });
  assert.ok(oldPc);
  await waitUntil(() => alice.evaluate(() => ({ ok: window.roost.pc && window.roost.pc !== window.__old })),
                  { timeoutMs: 30000, label: 'alice renegotiated' });
  await mediaFlows(alice, 'bob', 'alice receives bob after the Janus restart');
  await mediaFlows(bob, 'alice', 'bob receives alice after the Janus restart');
  const st = await alice.evaluate(() => window.roost.state);
  assert.equal(st.status, 'active');
});

// POST /api/rooms/:id/crash with the (development) API key roost printed.
async function crashRoom(id) {
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
// "ok" hooks fire again on every rejoin; installing one fires it once now).
function watchChannel(page) {
  return page.evaluate(() => {
    const ch = window.roost.channel;
    window.__crash = { errors: 0, joins: 0, pc: window.roost.pc, pubPc: window.roost.pubPc };
    ch.onError(() => { window.__crash.errors += 1; });
    ch.joinPush.receive('ok', () => { window.__crash.joins += 1; });
    return window.__crash.joins;
  });
}

function shownState(page) {
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
    };
  });
}

test('a RoomServer crash mid-call: media keeps flowing through Janus, the pages show the room as it was', { skip }, async () => {
  const pages = { alice, bob };
  const before = {};
  for (const [name, page] of Object.entries(pages)) {
    const s = await mediaFlows(page, name === 'alice' ? 'bob' : 'alice', `${name} before the crash`);
    before[name] = { state: await shownState(page), frames: s.framesDecoded, joins: await watchChannel(page) };
    assert.equal(before[name].state.status, 'active');
    assert.equal(before[name].state.participants.alice.status.media, 'connected');
    assert.equal(before[name].state.participants.bob.status.media, 'connected');
  }
  await crashRoom(ROOM);
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
    // The same connections (no renegotiation), still decoding through Janus.
    const after = await waitUntil(async () => {
      const s = await inbound(page);
      s.samePc = await page.evaluate(() => window.roost.pc === window.__crash.pc &&
                                           window.roost.pubPc === window.__crash.pubPc);
      s.ok = s.samePc && s.framesDecoded > before[name].frames + 30;
      return s;
    }, { timeoutMs: 10000, label: `${name} keeps decoding through Janus across the crash` });
    console.log(`${name} frames across the crash: ${before[name].frames} -> ${after.framesDecoded}`);
  }
  // The restarted RoomServer still drives the same Janus handles: a mute
  // (room state) and the media state keep working.
  await alice.click('#mute');
  await bob.locator('#people li[data-user="alice"] .tag', { hasText: 'muted' }).waitFor({ timeout: 5000 });
});
