// p2p.test.mjs — a real peer-to-peer call through the demo page, in
// Debian's chromium (fake camera and microphone) driven by playwright-core:
// two pages on one roost (127.0.0.1, port 0, development credentials) join
// one room; each page's RTCPeerConnection (window.roost.pc) must show
// inbound video with framesDecoded > 0 and inbound audio bytes > 0 from the
// other. Then: a mute shows in the other page's participant list (status),
// a chat message (data) arrives, the room status reads active, and after
// the second participant leaves and joins again media flows again.
// A screenshot of the call goes to docs/demo-call.png.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';

import { CHROMIUM, CHROMIUM_ARGS, ROOT, startServer, waitUntil } from './helpers.mjs';

const ROOM = 'call-1';
let srv, context, profile;

before(async () => {
  srv = await startServer({ dev: true });
  profile = mkdtempSync(path.join(tmpdir(), 'roost-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 720 },
    timeout: 30000,
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

// What this page receives from its peer, from getStats().
function inbound(page) {
  return page.evaluate(async () => {
    const pc = window.roost.pc;
    if (!pc) return { ok: false, why: 'no peer connection' };
    const out = { ok: false, peer: window.roost.peer, state: pc.connectionState,
                  framesDecoded: 0, videoBytes: 0, audioBytes: 0, width: 0, height: 0 };
    (await pc.getStats()).forEach((r) => {
      if (r.type !== 'inbound-rtp') return;
      if (r.kind === 'video') {
        out.framesDecoded = r.framesDecoded ?? 0;
        out.videoBytes = r.bytesReceived ?? 0;
        out.width = r.frameWidth ?? 0;
        out.height = r.frameHeight ?? 0;
      } else if (r.kind === 'audio') {
        out.audioBytes = r.bytesReceived ?? 0;
      }
    });
    out.ok = out.framesDecoded > 0 && out.audioBytes > 0;
    return out;
  });
}

async function mediaFlows(page, from, label) {
  const s = await waitUntil(() => inbound(page), { timeoutMs: 20000, label });
  assert.equal(s.peer, from);
  assert.ok(s.framesDecoded > 0 && s.audioBytes > 0, JSON.stringify(s));
  return s;
}

let alice, bob;

test('two pages join one room and each decodes the other\'s video and audio', async () => {
  alice = await openAndJoin('alice');
  bob = await openAndJoin('bob'); // joins later: alice (the smaller id) offers then
  const a = await mediaFlows(alice, 'bob', 'alice receiving bob');
  const b = await mediaFlows(bob, 'alice', 'bob receiving alice');
  console.log(`getStats alice<-bob: ${JSON.stringify(a)}`);
  console.log(`getStats bob<-alice: ${JSON.stringify(b)}`);
  // The remote tile shows a playing video.
  const playing = await alice.evaluate(() => {
    const v = document.getElementById('remote-video');
    return v.srcObject !== null && v.videoWidth > 0;
  });
  assert.ok(playing, 'alice\'s remote tile has no video');
});

test('the room status reads active with two participants', async () => {
  for (const page of [alice, bob]) {
    await page.locator('#room-status.active').waitFor({ timeout: 5000 });
    await page.locator('#room-meta', { hasText: '2 participants' }).waitFor({ timeout: 5000 });
  }
  const st = await bob.evaluate(() => window.roost.state);
  assert.equal(st.status, 'active');
  assert.deepEqual(Object.keys(st.participants).sort(), ['alice', 'bob']);
});

test('a mute shows in the other page\'s participant list', async () => {
  await alice.click('#mute');
  await bob.locator('#people li[data-user="alice"] .tag', { hasText: 'muted' })
    .waitFor({ timeout: 5000 });
  await bob.locator('#remote-flags', { hasText: 'muted' }).waitFor({ timeout: 5000 });
  const st = await bob.evaluate(() => window.roost.state.participants.alice.status);
  assert.equal(st.muted, true);
});

test('a chat message arrives', async () => {
  await bob.fill('#chat-input', 'hi alice, I can see you');
  await bob.press('#chat-input', 'Enter');
  await alice.locator('#messages li', { hasText: 'hi alice, I can see you' }).waitFor({ timeout: 5000 });
  const from = await alice.locator('#messages li b').last().textContent();
  assert.equal(from, 'bob');
  await alice.fill('#chat-input', 'hello bob!');
  await alice.press('#chat-input', 'Enter');
  await bob.locator('#messages li', { hasText: 'hello bob!' }).waitFor({ timeout: 5000 });
});

test('screenshot of the call', async () => {
  await alice.screenshot({ path: path.join(ROOT, 'docs/demo-call.png') });
});

test('the second participant leaves and joins again: media flows again', async () => {
  await bob.click('#leave');                         // reloads bob's page
  await alice.locator('#remote-placeholder').waitFor({ state: 'visible', timeout: 10000 });
  await bob.locator('#join').waitFor({ state: 'visible', timeout: 10000 });
  await bob.fill('#room', ROOM);
  await bob.fill('#name', 'bob');
  await bob.click('#join button[type=submit]');
  await bob.locator('#call').waitFor({ state: 'visible', timeout: 10000 });
  const a = await mediaFlows(alice, 'bob', 'alice receiving bob again');
  const b = await mediaFlows(bob, 'alice', 'bob receiving alice again');
  console.log(`after rejoin alice<-bob: ${JSON.stringify(a)}`);
  console.log(`after rejoin bob<-alice: ${JSON.stringify(b)}`);
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
    window.__crash = { errors: 0, joins: 0, pc: window.roost.pc };
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
      parts[u] = { connected: p.connected, status: { muted: p.status?.muted, camera: p.status?.camera } };
    }
    return {
      status: st.status, participants: parts,
      badge: document.getElementById('room-status').className,
      meta: document.getElementById('room-meta').textContent.replace(/^v\d+ · /, ''),
      people: [...document.querySelectorAll('#people li')].map((li) => li.textContent),
    };
  });
}

test('a RoomServer crash mid-call: both pages rejoin, the room is as before, media keeps flowing', async () => {
  const pages = { alice, bob };
  const before = {};
  for (const [name, page] of Object.entries(pages)) {
    const s = await mediaFlows(page, name === 'alice' ? 'bob' : 'alice', `${name} before the crash`);
    before[name] = { state: await shownState(page), frames: s.framesDecoded, joins: await watchChannel(page) };
  }
  assert.equal(before.bob.state.status, 'active');
  assert.equal(before.bob.state.participants.alice.status.muted, true);
  await crashRoom(ROOM);
  for (const [name, page] of Object.entries(pages)) {
    await waitUntil(() => page.evaluate((j) => ({
      ok: window.__crash.errors > 0 && window.__crash.joins > j && window.roost.channel.state === 'joined',
      ...window.__crash, pc: undefined, state: window.roost.channel.state,
    }), before[name].joins), { timeoutMs: 15000, label: `${name} rejoined after the crash` });
  }
  for (const [name, page] of Object.entries(pages)) {
    await waitUntil(async () => {
      const now = await shownState(page);
      return { ok: JSON.stringify(now) === JSON.stringify(before[name].state), now, was: before[name].state };
    }, { timeoutMs: 5000, label: `${name} shows the room as before the crash` });
    // The same peer connection, still decoding: more frames than before.
    const after = await waitUntil(async () => {
      const s = await inbound(page);
      s.samePc = await page.evaluate(() => window.roost.pc === window.__crash.pc);
      s.ok = s.samePc && s.framesDecoded > before[name].frames + 30;
      return s;
    }, { timeoutMs: 10000, label: `${name} keeps decoding across the crash` });
    console.log(`${name} frames across the crash: ${before[name].frames} -> ${after.framesDecoded}`);
  }
});
