// janus.test.mjs — calls through Janus (roost --media janus) on the demo
// page. Two pages publish to roost's Janus VideoRoom and each subscribes to
// the other: each page's subscription (window.roost.subs.get(<other>).pc)
// must show inbound video with framesDecoded > 0 and audio bytes > 0, and
// the participants' media state (status.media) reaches "connected". Janus is
// killed mid-call and started again: the room re-creates its Janus room,
// asks both pages to renegotiate, and media flows again. A third page
// joins: every page receives video and audio from each of the two others
// and shows two remote tiles with their names, playing; a chat message
// reaches both others and a camera switched off shows on both others'
// tiles (screenshot to docs/demo-call-janus.png). The RoomServer is crashed (POST
// /api/rooms/:id/crash) in the three-way call: it restarts from its backup
// with the same Janus handles (owned by the name room:<id>), the pages
// rejoin by themselves, show the room as it was and keep decoding on the
// same connections. Last, one participant leaves: the others' tiles for it
// go, and the remaining two still receive each other.
//
// Needs a real Janus: run inside tests/media/run.sh (scripts/run-browser-janus.sh
// does); without ROOST_JANUS_URL it is skipped.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';

import {
  ROOT, crashMidCall, launchBrowser, mediaFlows, openAndJoin, remoteTiles, startServer,
  tilesPlay, waitUntil,
} from './helpers.mjs';

const JANUS = process.env.ROOST_JANUS_URL;
const ROOM = 'janus-call-1';
let srv, browser;
const skip = JANUS ? false : 'needs Janus: run through scripts/run-browser-janus.sh';

before(async () => {
  if (skip) return;
  srv = await startServer({ dev: true, extraArgs: ['--media', 'janus', '--janus-url', JANUS] });
  // Three pages decode two streams each on a small shared machine: keep
  // them modest; the screenshot is taken at 1280x720.
  browser = await launchBrowser({ width: 960, height: 600 });
});

after(async () => {
  await browser?.close();
  await srv?.stop();
});

function mediaState(page, user) {
  return page.evaluate((u) => window.roost.state?.participants?.[u]?.status?.media ?? null, user);
}

// Every page receives media from every other page, and shows exactly the
// others' tiles, playing.
async function everyoneReceivesEveryone(pages, when) {
  const names = Object.keys(pages);
  const got = {};
  for (const [name, page] of Object.entries(pages)) {
    const others = names.filter((n) => n !== name).sort();
    for (const other of others) {
      const s = await mediaFlows(page, other, `${name} receives ${other} through janus ${when}`);
      got[`${name}<-${other}`] = `${s.framesDecoded} frames ${s.width}x${s.height}, ${s.audioBytes} audio bytes`;
    }
    assert.deepEqual(await remoteTiles(page), others, `${name}'s remote tiles ${when}`);
    assert.deepEqual((await page.evaluate(() => window.roost.feeds())).sort(), others);
    await tilesPlay(page, others, `${name}'s tiles play ${when}`);
  }
  console.log(`through janus ${when}:`, JSON.stringify(got));
}

let alice, bob, carol;

test('two pages see and hear each other through Janus, also after Janus restarts', { skip }, async () => {
  alice = await openAndJoin(browser.context, srv, ROOM, 'alice');
  assert.equal(await alice.evaluate(() => window.roost.mode), 'janus');
  await alice.locator('#waiting', { hasText: 'Waiting for someone to join' }).waitFor({ timeout: 5000 });
  assert.deepEqual(await remoteTiles(alice), []);
  bob = await openAndJoin(browser.context, srv, ROOM, 'bob');
  await everyoneReceivesEveryone({ alice, bob }, 'with two');
  await waitUntil(async () => ({ ok: (await mediaState(alice, 'bob')) === 'connected' &&
                                     (await mediaState(bob, 'alice')) === 'connected' }),
                  { timeoutMs: 10000, label: 'media state connected in the room state' });
  await alice.locator('#tiles[data-layout="pip"] figure[data-user="bob"][data-media="connected"]')
    .waitFor({ timeout: 10000 });

  // Kill Janus mid-call, start it again: roost re-creates the VideoRoom and
  // the pages renegotiate.
  const ctl = process.env.ROOST_JANUS_CTL, dir = process.env.ROOST_JANUS_DIR;
  await alice.evaluate(() => { window.__old = window.roost.subs.get('bob').pc; });
  execFileSync('bash', [ctl, 'stop', dir]);
  await waitUntil(async () => ({ ok: (await mediaState(alice, 'alice')) === 'failed' }),
                  { timeoutMs: 10000, label: 'media state failed after Janus died' });
  await alice.locator('#tiles figure.self[data-media="failed"]').waitFor({ timeout: 5000 });
  execFileSync('bash', [ctl, 'start', dir]);
  await waitUntil(() => alice.evaluate(() => {
    const s = window.roost.subs.get('bob');
    return { ok: !!s && s.pc !== window.__old };
  }), { timeoutMs: 30000, label: 'alice renegotiated' });
  await everyoneReceivesEveryone({ alice, bob }, 'after the Janus restart');
  const st = await alice.evaluate(() => window.roost.state);
  assert.equal(st.status, 'active');
});

test('a third page joins: everyone receives the two others and shows their tiles', { skip }, async () => {
  carol = await openAndJoin(browser.context, srv, ROOM, 'carol');
  await everyoneReceivesEveryone({ alice, bob, carol }, 'with three');
  for (const page of [alice, bob, carol]) {
    await page.locator('#tiles[data-layout="grid"]').waitFor({ timeout: 5000 });
    await page.locator('#room-meta', { hasText: '3 participants' }).waitFor({ timeout: 5000 });
    await waitUntil(async () => {
      const media = {};
      for (const u of ['alice', 'bob', 'carol']) media[u] = await mediaState(page, u);
      return { ok: Object.values(media).every((m) => m === 'connected'), media };
    }, { timeoutMs: 10000, label: 'everyone\'s media state connected' });
  }
  // The caption of each tile names its participant.
  for (const u of ['alice', 'bob']) {
    assert.equal(await carol.locator(`#tiles figure.remote[data-user="${u}"] .name`).textContent(), u);
  }
  // A chat message reaches both others; a camera switched off shows on
  // both others' tiles for it.
  await alice.fill('#chat-input', 'hi both');
  await alice.press('#chat-input', 'Enter');
  await bob.click('#camera');
  for (const page of [bob, carol]) {
    await page.locator('#messages li', { hasText: 'hi both' }).waitFor({ timeout: 5000 });
  }
  for (const page of [alice, carol]) {
    await page.locator('#tiles figure.camera-off[data-user="bob"] .flag', { hasText: 'camera off' })
      .waitFor({ timeout: 5000 });
  }
  await carol.setViewportSize({ width: 1280, height: 720 });
  await tilesPlay(carol, ['alice', 'bob'], 'carol\'s tiles play before the screenshot');
  await carol.screenshot({ path: path.join(ROOT, 'docs/demo-call-janus.png') });
  await carol.setViewportSize({ width: 960, height: 600 });
  await bob.click('#camera');
  for (const page of [alice, carol]) {
    await page.locator('#tiles figure[data-user="bob"]:not(.camera-off)').waitFor({ timeout: 5000 });
  }
});

test('a RoomServer crash mid-call: media keeps flowing through Janus, the pages show the room as it was', { skip }, async () => {
  const was = await crashMidCall(srv, ROOM, { alice, bob, carol });
  for (const name of ['alice', 'bob', 'carol']) {
    assert.equal(was[name].state.status, 'active');
    for (const u of ['alice', 'bob', 'carol']) {
      assert.equal(was[name].state.participants[u].status.media, 'connected', `${u} as ${name} saw it`);
    }
  }
  // The restarted RoomServer still drives the room: a mute shows on the
  // others' pages, in the list and on alice's tile.
  await alice.click('#mute');
  for (const page of [bob, carol]) {
    await page.locator('#people li[data-user="alice"] .tag', { hasText: 'muted' }).waitFor({ timeout: 5000 });
    await page.locator('#tiles figure[data-user="alice"] .flag', { hasText: 'muted' }).waitFor({ timeout: 5000 });
  }
});

test('one leaves: its tiles go away, the remaining two still receive each other', { skip }, async () => {
  const frames = {
    alice: (await mediaFlows(alice, 'carol', 'alice receives carol before bob leaves')).framesDecoded,
    carol: (await mediaFlows(carol, 'alice', 'carol receives alice before bob leaves')).framesDecoded,
  };
  await bob.click('#leave');
  for (const page of [alice, carol]) {
    await page.locator('#tiles figure[data-user="bob"]').waitFor({ state: 'detached', timeout: 10000 });
    await page.locator('#tiles[data-layout="pip"]').waitFor({ timeout: 5000 });
    assert.equal(await page.evaluate(() => window.roost.subs.has('bob')), false);
    await page.locator('#room-meta', { hasText: '2 participants' }).waitFor({ timeout: 5000 });
  }
  assert.deepEqual(await remoteTiles(alice), ['carol']);
  assert.deepEqual(await remoteTiles(carol), ['alice']);
  // Still decoding each other: more frames than before bob left.
  const a = await mediaFlows(alice, 'carol', 'alice still receives carol',
                            { min: { frames: frames.alice + 30, audio: 0 } });
  const c = await mediaFlows(carol, 'alice', 'carol still receives alice',
                            { min: { frames: frames.carol + 30, audio: 0 } });
  console.log(`after bob left: alice<-carol ${frames.alice} -> ${a.framesDecoded}, ` +
              `carol<-alice ${frames.carol} -> ${c.framesDecoded}`);
  await tilesPlay(alice, ['carol'], 'alice\'s tile for carol still plays');
});
