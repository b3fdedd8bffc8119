// p2p.test.mjs — a real peer-to-peer call through the demo page, in
// Debian's chromium (fake camera and microphone) driven by playwright-core:
// two pages on one roost (127.0.0.1, port 0, development credentials) join
// one room; each page's RTCPeerConnection (window.roost.pc) must show
// inbound video with framesDecoded > 0 and inbound audio bytes > 0 from the
// other, and its tile for the other plays that video. Then: a mute and a
// camera switched off show on the other page (participant list and tile),
// a chat message (data) arrives, the room status reads active, and after
// the second participant leaves its tile goes and the "waiting" one comes
// back; it joins again and media flows again. Last, a RoomServer crash
// mid-call. A screenshot of the call goes to docs/demo-call.png.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';

import {
  ROOT, crashMidCall, joinForm, launchBrowser, mediaFlows, openAndJoin, remoteTiles, startServer,
  tilesPlay,
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
