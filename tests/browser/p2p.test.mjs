// p2p.test.mjs — a real peer-to-peer call through the demo page, in
// Debian's chromium (fake camera and microphone) driven by playwright-core:
// two pages on one roost (127.0.0.1, port 0, development credentials) join
// one room; each page's RTCPeerConnection (window.roost.pc) must show
// inbound video with framesDecoded > 0 and inbound audio bytes > 0 from the
// other, and its tile for the other plays that video. Then: a mute and a
// camera switched off show on the other page (participant list and tile),
// a chat message (data) arrives, the room status reads active, and after
// the second participant leaves its tile goes and the "waiting" one comes
// back; it joins again and media flows again. Then a RoomServer crash
// mid-call. A screenshot of the call goes to docs/demo-call.png.
//
// A call peer to peer is 1:1: a third page ("aaron", whose id sorts before
// both callers', so the old "smaller id offers" rule would have broken the
// call) joins the room: alice and bob keep decoding each other on the same
// RTCPeerConnection, aaron shows the "in a 1:1 call" notice, never makes a
// connection, and its chat reaches both. bob reloads: alice and bob are in
// a call again, aaron still out. bob leaves: aaron takes the place and
// media flows between aaron and alice both ways; bob joins again and now
// he gets the notice while their call goes on.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';

import {
  ROOT, crashMidCall, inbound, joinForm, launchBrowser, mediaFlows, openAndJoin, remoteTiles,
  startServer, tilesPlay, waitUntil,
} from './helpers.mjs';

const ROOM = 'call-1';
let srv, browser;

before(async () => {
  srv = await startServer({ dev: true });
  browser = await launchBrowser({ width: 1280, height: 720 });
});

after(async () => {
  await browser?.close();
  await srv?.stop();
});

let alice, bob;

test('two pages join one room and each decodes the other\'s video and audio', async () => {
  alice = await openAndJoin(browser.context, srv, ROOM, 'alice');
  // Alone: the "waiting" tile and no remote one.
  await alice.locator('#waiting', { hasText: 'Waiting for someone to join' }).waitFor({ timeout: 5000 });
  assert.deepEqual(await remoteTiles(alice), []);
  bob = await openAndJoin(browser.context, srv, ROOM, 'bob'); // joins later: alice (the smaller id) offers then
  const a = await mediaFlows(alice, 'bob', 'alice receiving bob');
  const b = await mediaFlows(bob, 'alice', 'bob receiving alice');
  console.log(`getStats alice<-bob: ${JSON.stringify(a)}`);
  console.log(`getStats bob<-alice: ${JSON.stringify(b)}`);
  // Each page shows one remote tile, named, playing the other's video.
  for (const [page, other] of [[alice, 'bob'], [bob, 'alice']]) {
    assert.deepEqual(await remoteTiles(page), [other]);
    await tilesPlay(page, [other], `${other}'s tile plays`);
    assert.equal(await page.locator(`#tiles figure[data-user="${other}"] .name`).textContent(), other);
    assert.equal(await page.locator('#waiting').isHidden(), true);
    assert.equal(await page.evaluate(() => window.roost.peer), other);
    assert.deepEqual(await page.evaluate(() => window.roost.feeds()), [other]);
  }
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

test('a mute and a camera switched off show on the other page', async () => {
  await alice.click('#mute');
  await bob.locator('#people li[data-user="alice"] .tag', { hasText: 'muted' })
    .waitFor({ timeout: 5000 });
  await bob.locator('#tiles figure[data-user="alice"] .flag', { hasText: 'muted' }).waitFor({ timeout: 5000 });
  const st = await bob.evaluate(() => window.roost.state.participants.alice.status);
  assert.equal(st.muted, true);

  await bob.click('#camera');
  await alice.locator('#tiles figure.camera-off[data-user="bob"] .flag', { hasText: 'camera off' })
    .waitFor({ timeout: 5000 });
  await bob.click('#camera');
  await alice.locator('#tiles figure[data-user="bob"]:not(.camera-off)').waitFor({ timeout: 5000 });
  assert.equal(await alice.locator('#tiles figure[data-user="bob"] .flag').count(), 0);
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
  await tilesPlay(alice, ['bob'], 'bob\'s tile plays before the screenshot');
  await alice.screenshot({ path: path.join(ROOT, 'docs/demo-call.png') });
});

test('the second participant leaves (its tile goes) and joins again: media flows again', async () => {
  await bob.click('#leave');                         // reloads bob's page
  await alice.locator('#tiles figure[data-user="bob"]').waitFor({ state: 'detached', timeout: 10000 });
  await alice.locator('#waiting').waitFor({ state: 'visible', timeout: 5000 });
  assert.deepEqual(await remoteTiles(alice), []);
  await joinForm(bob, ROOM, 'bob');
  const a = await mediaFlows(alice, 'bob', 'alice receiving bob again');
  const b = await mediaFlows(bob, 'alice', 'bob receiving alice again');
  console.log(`after rejoin alice<-bob: ${JSON.stringify(a)}`);
  console.log(`after rejoin bob<-alice: ${JSON.stringify(b)}`);
  assert.deepEqual(await remoteTiles(alice), ['bob']);
  await tilesPlay(alice, ['bob'], 'bob\'s tile plays again');
});

test('a RoomServer crash mid-call: both pages rejoin, the room is as before, media keeps flowing', async () => {
  const was = await crashMidCall(srv, ROOM, { alice, bob });
  assert.equal(was.bob.state.status, 'active');
  assert.equal(was.bob.state.participants.alice.status.muted, true);
});

// ---- a third participant ------------------------------------------------------------

let aaron;

// Counts the RTCPeerConnections a page makes (run before the page's scripts).
function countConnections() {
  const Base = window.RTCPeerConnection;
  window.__pcs = 0;
  window.RTCPeerConnection = class extends Base {
    constructor(...args) { super(...args); window.__pcs += 1; }
  };
}

/** Remembers `page`'s current peer connection as window.__kept. */
function keepPc(page) {
  return page.evaluate(() => { window.__kept = window.roost.pc; return !!window.__kept; });
}

/**
 * Waits until `page` has decoded more than `frames` + 45 frames from `from`
 * on the connection keepPc() remembered; fails at once if it was replaced.
 */
function keepsDecoding(page, from, frames, label) {
  return waitUntil(async () => {
    const s = await inbound(page, from);
    const same = await page.evaluate(() => window.roost.pc === window.__kept);
    assert.ok(same, `${label}: window.roost.pc was replaced (${JSON.stringify(s)})`);
    s.ok = s.ok && s.framesDecoded > frames + 45;
    return s;
  }, { timeoutMs: 30000, label });
}

/** What `page` shows of the call: its peer, tiles, notice and connection count. */
function callView(page) {
  return page.evaluate(() => ({
    inCall: window.roost.inCall,
    callers: window.roost.callers(),
    peer: window.roost.peer,
    hasPc: window.roost.pc !== null,
    tiles: window.roost.feeds(),
    busy: !document.getElementById('busy').hidden,
    waiting: !document.getElementById('waiting').hidden,
    pcs: window.__pcs ?? null,
  }));
}

/** Waits for `page`'s notice naming `a` and `b` as the callers. */
async function showsNotice(page, a, b) {
  await page.locator('#busy', { hasText: `${a} and ${b} are in a 1:1 call` })
    .waitFor({ state: 'visible', timeout: 10000 });
  await page.locator('#busy', { hasText: '--media janus' }).waitFor({ timeout: 1000 });
}

test('a third page joins: the call stays between the two, the third sees a notice and can chat', async () => {
  const frames = {};
  for (const [page, other] of [[alice, 'bob'], [bob, 'alice']]) {
    frames[other] = (await mediaFlows(page, other, `receiving ${other} before aaron joins`)).framesDecoded;
    assert.ok(await keepPc(page));
  }
  aaron = await openAndJoin(browser.context, srv, ROOM, 'aaron', { init: countConnections });
  await showsNotice(aaron, 'alice', 'bob');
  // Both callers have seen aaron join (Presence and the room state)...
  for (const page of [alice, bob]) {
    await page.locator('#people li[data-user="aaron"]:not(.away)').waitFor({ timeout: 5000 });
    await page.locator('#room-meta', { hasText: '3 participants' }).waitFor({ timeout: 5000 });
  }
  // ...and go on decoding each other on the same connection.
  const a = await keepsDecoding(alice, 'bob', frames.bob, 'alice keeps decoding bob');
  const b = await keepsDecoding(bob, 'alice', frames.alice, 'bob keeps decoding alice');
  console.log(`with aaron in the room: alice<-bob ${frames.bob} -> ${a.framesDecoded}, bob<-alice ${frames.alice} -> ${b.framesDecoded}`);
  for (const [page, other] of [[alice, 'bob'], [bob, 'alice']]) {
    const v = await callView(page);
    assert.deepEqual([v.inCall, v.peer, v.tiles, v.busy, v.waiting], [true, other, [other], false, false]);
    assert.deepEqual(v.callers, ['alice', 'bob']);
    assert.deepEqual(await remoteTiles(page), [other]);
    // The list says who the call is between.
    const inCall = await page.locator('#people li:has(.tag.in-call)').evaluateAll((ls) => ls.map((l) => l.dataset.user));
    assert.deepEqual(inCall, ['alice', 'bob']);
  }
  const v = await callView(aaron);
  assert.deepEqual(v, {
    inCall: false, callers: ['alice', 'bob'], peer: null, hasPc: false, tiles: [],
    busy: true, waiting: false, pcs: 0,
  });
  assert.deepEqual(await remoteTiles(aaron), []);
  // aaron still has the room: presence, status, chat.
  for (const u of ['alice', 'bob', 'aaron']) {
    await aaron.locator(`#people li[data-user="${u}"]:not(.away)`).waitFor({ timeout: 5000 });
  }
  await aaron.locator('#room-status.active').waitFor({ timeout: 5000 });
  await aaron.locator('#people li[data-user="alice"] .tag', { hasText: 'muted' }).waitFor({ timeout: 5000 });
  await aaron.fill('#chat-input', 'hi both, I will wait');
  await aaron.press('#chat-input', 'Enter');
  for (const page of [alice, bob]) {
    await page.locator('#messages li', { hasText: 'hi both, I will wait' }).waitFor({ timeout: 5000 });
    assert.equal(await page.locator('#messages li b').last().textContent(), 'aaron');
  }
  await bob.fill('#chat-input', 'hi aaron');
  await bob.press('#chat-input', 'Enter');
  await aaron.locator('#messages li', { hasText: 'hi aaron' }).waitFor({ timeout: 5000 });
});

test('a caller reloads: the two callers are back in a call with each other, the third stays out', async () => {
  await bob.reload();
  await joinForm(bob, ROOM, 'bob');
  // alice's page has no event for "the new session is up": poll (bounded)
  // for media on a connection other than the one before the reload.
  const a = await waitUntil(async () => {
    const s = await inbound(alice, 'bob');
    s.newPc = await alice.evaluate(() => window.roost.pc !== window.__kept);
    s.ok = s.ok && s.newPc;
    return s;
  }, { timeoutMs: 30000, label: 'alice receiving bob on a new connection after his reload' });
  const b = await mediaFlows(bob, 'alice', 'bob receiving alice after his reload');
  console.log(`after bob's reload alice<-bob: ${JSON.stringify(a)}`);
  console.log(`after bob's reload bob<-alice: ${JSON.stringify(b)}`);
  assert.deepEqual(await remoteTiles(alice), ['bob']);
  assert.deepEqual(await remoteTiles(bob), ['alice']);
  await showsNotice(aaron, 'alice', 'bob');
  const v = await callView(aaron);
  assert.deepEqual([v.inCall, v.hasPc, v.tiles, v.pcs], [false, false, [], 0]);
});

test('a caller leaves: the third is paired with the one who stays; back again, the one who left gets the notice', async () => {
  await bob.click('#leave'); // an explicit leave: bob's place goes at once
  await alice.locator('#tiles figure[data-user="bob"]').waitFor({ state: 'detached', timeout: 10000 });
  await aaron.locator('#busy').waitFor({ state: 'hidden', timeout: 10000 });
  const a = await mediaFlows(aaron, 'alice', 'aaron receiving alice');
  const b = await mediaFlows(alice, 'aaron', 'alice receiving aaron');
  console.log(`aaron<-alice: ${JSON.stringify(a)}`);
  console.log(`alice<-aaron: ${JSON.stringify(b)}`);
  for (const [page, other] of [[alice, 'aaron'], [aaron, 'alice']]) {
    const v = await callView(page);
    assert.deepEqual([v.inCall, v.peer, v.tiles, v.busy], [true, other, [other], false]);
    assert.deepEqual(await remoteTiles(page), [other]);
    await tilesPlay(page, [other], `${other}'s tile plays on ${page === alice ? 'alice' : 'aaron'}'s page`);
  }
  assert.equal(await aaron.evaluate(() => window.__pcs), 1, 'aaron made one connection, for alice');

  // bob comes back: he joined last, so he waits; alice and aaron go on.
  const frames = {};
  for (const [page, other] of [[alice, 'aaron'], [aaron, 'alice']]) {
    frames[other] = (await inbound(page, other)).framesDecoded;
    assert.ok(await keepPc(page));
  }
  await joinForm(bob, ROOM, 'bob');
  await showsNotice(bob, 'alice', 'aaron');
  for (const page of [alice, aaron]) {
    await page.locator('#people li[data-user="bob"]:not(.away)').waitFor({ timeout: 5000 });
  }
  await keepsDecoding(alice, 'aaron', frames.aaron, 'alice keeps decoding aaron with bob back');
  await keepsDecoding(aaron, 'alice', frames.alice, 'aaron keeps decoding alice with bob back');
  const v = await callView(bob);
  assert.deepEqual([v.inCall, v.callers, v.hasPc, v.tiles, v.busy],
    [false, ['alice', 'aaron'], false, [], true]);
  assert.deepEqual(await remoteTiles(bob), []);
});
