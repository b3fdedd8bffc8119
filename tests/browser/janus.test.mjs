// janus.test.mjs — a call through Janus (roost --media janus): two pages
// publish to roost's Janus VideoRoom and each subscribes to the other; each
// page's subscriber connection (window.roost.pc) must show inbound video
// with framesDecoded > 0 and audio bytes > 0. The participants' media state
// (status.media) reaches "connected". Then Janus is killed mid-call and
// started again: the room re-creates its Janus room, asks both pages to
// renegotiate, and media flows again.
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

test('two pages see and hear each other through Janus, also after Janus restarts', { skip }, async () => {
  const alice = await openAndJoin('alice');
  assert.equal(await alice.evaluate(() => window.roost.mode), 'janus');
  const bob = await openAndJoin('bob');
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
