// helpers.mjs — shared fixtures for roost's black-box tests.
//
// Every test talks to a real `build/roost serve` process over 127.0.0.1,
// with real clients: the official `phoenix` JavaScript client (over the
// `ws` package), raw `ws` sockets, hand-made TCP WebSocket frames and plain
// HTTP. Nothing here sleeps to synchronise: replies, messages, closes and
// process exits are awaited as events, each with a timeout that fails the
// test with a message saying what did not happen. The only polling is
// waitUntil(), for server state that has no event (e.g. /metrics).
//
// Servers: startServer() spawns one on a free port (or a given one) with a
// fresh temporary --data directory and fixed test credentials, waits for
// its "listening" line and /healthz; server.stop() sends SIGTERM and awaits
// the exit; server.restart() starts a new one on the same port and data
// directory. Every server ever started is killed when the test process
// exits, so a failed test never leaves one behind.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Socket, Presence } from 'phoenix';
import WebSocket from 'ws';

export { Socket, Presence, WebSocket };

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const ROOST = process.env.ROOST_BIN || path.join(ROOT, 'build/roost');
export const SECRET = 'roost-integration-secret-0123456789abcdef';
export const API_KEY = 'roost-integration-api-key';
export const HOST = '127.0.0.1';

// Default time to wait for anything the server should do promptly.
export const TIMEOUT = 5000;

// ---------------------------------------------------------------------------
// Promises with deadlines

/** Resolves like `promise`, or rejects after `ms` with "timeout: <label>". */
export function withTimeout(promise, ms, label) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${label}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** A promise with its resolve/reject exposed. */
export function deferred() {
  let resolve, reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * Polls `fn` (sync or async) until it returns a truthy value, at most
 * `timeoutMs`; for server state that has no event to await (metrics,
 * REST state). Returns that value.
 */
export async function waitUntil(fn, { timeoutMs = TIMEOUT, intervalMs = 25, label = 'condition' } = {}) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() >= end) throw new Error(`timeout after ${timeoutMs} ms waiting for ${label}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * A queue of things that happened (messages, events), which a test awaits
 * in order: next(pred) returns the first item not yet taken that matches,
 * from what already arrived or, failing that, the first to arrive within
 * the timeout. Items that do not match stay for later next() calls.
 */
export class Inbox {
  constructor(name = 'inbox') {
    this.name = name;
    this.items = []; // not yet taken
    this.all = []; // everything, for assertions and diagnostics
    this.waiters = [];
  }

  push(item) {
    this.all.push(item);
    for (let i = 0; i < this.waiters.length; i++) {
      const w = this.waiters[i];
      if (w.pred(item)) {
        this.waiters.splice(i, 1);
        clearTimeout(w.timer);
        w.resolve(item);
        return;
      }
    }
    this.items.push(item);
  }

  next(pred = () => true, timeoutMs = TIMEOUT, label = 'a matching item') {
    const i = this.items.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.items.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        const seen = this.all.slice(-8).map((x) => describe(x)).join('\n    ');
        reject(new Error(`${this.name}: timeout after ${timeoutMs} ms waiting for ${label}; ` +
          `last items:\n    ${seen || '(none)'}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  /** The items not yet taken that match, taken now (no waiting). */
  drain(pred = () => true) {
    const out = this.items.filter(pred);
    this.items = this.items.filter((x) => !pred(x));
    return out;
  }

  count(pred = () => true) {
    return this.all.filter(pred).length;
  }
}

function describe(x) {
  try {
    const s = typeof x === 'string' ? x : JSON.stringify(x);
    return s.length > 300 ? s.slice(0, 300) + '…' : s;
  } catch {
    return String(x);
  }
}

// ---------------------------------------------------------------------------
// The server process

const live = new Set();
process.on('exit', () => {
  for (const s of live) {
    try {
      s.proc.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

export class Server {
  constructor(proc, port, dataDir, ownsDataDir, args) {
    this.proc = proc;
    this.port = port;
    this.dataDir = dataDir;
    this.ownsDataDir = ownsDataDir;
    this.args = args;
    this.log = '';
    this.exit = null; // {code, signal} once exited
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        this.exit = { code, signal };
        live.delete(this);
        resolve(this.exit);
      });
    });
  }

  get pid() {
    return this.proc.pid;
  }

  get url() {
    return `http://${HOST}:${this.port}`;
  }

  get wsBase() {
    return `ws://${HOST}:${this.port}`;
  }

  /** ws://…/socket/websocket with the given query parameters. */
  wsUrl(query = {}) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null) q.set(k, v);
    const s = q.toString();
    return `${this.wsBase}/socket/websocket${s ? '?' + s : ''}`;
  }

  get running() {
    return this.exit === null;
  }

  /** SIGTERM, then await the exit; SIGKILL and throw if it takes too long. */
  async stop({ timeoutMs = 15000 } = {}) {
    if (!this.running) return this.exit;
    this.proc.kill('SIGTERM');
    try {
      return await withTimeout(this.exited, timeoutMs, `roost (pid ${this.pid}) to exit after SIGTERM`);
    } catch (e) {
      this.proc.kill('SIGKILL');
      await this.exited;
      throw new Error(`${e.message}\n--- server log ---\n${this.tail()}`);
    }
  }

  /** SIGKILL now (cleanup, or a crash test). */
  async kill() {
    if (!this.running) return this.exit;
    this.proc.kill('SIGKILL');
    return this.exited;
  }

  /**
   * Stops this server (SIGTERM) and starts a new one on the same port and
   * data directory, which it takes over. Returns the new server.
   */
  async restart(extraArgs = this.args) {
    await this.stop();
    const next = await startServer({ port: this.port, dataDir: this.dataDir, args: extraArgs });
    next.ownsDataDir = this.ownsDataDir;
    this.ownsDataDir = false;
    return next;
  }

  /** Kills the process if it still runs and removes its data directory. */
  async cleanup() {
    await this.kill();
    if (this.ownsDataDir && existsSync(this.dataDir)) rmSync(this.dataDir, { recursive: true, force: true });
  }

  tail(n = 40) {
    return this.log.split('\n').slice(-n).join('\n');
  }
}

/**
 * Starts `roost serve` and resolves once it listens and /healthz answers.
 * Options: port (0 = any free port), dataDir (default: a fresh temporary
 * directory, removed by cleanup()), args (extra flags, e.g.
 * ['--max-frame', '4096']).
 */
export async function startServer({ port = 0, dataDir, args = [], timeoutMs = 15000 } = {}) {
  const owns = !dataDir;
  dataDir = dataDir || mkdtempSync(path.join(tmpdir(), 'roost-it-'));
  const argv = ['serve', '--port', String(port), '--data', dataDir, '--secret', SECRET,
    '--api-key', API_KEY, ...args];
  const proc = spawn(ROOST, argv, { stdio: ['ignore', 'pipe', 'pipe'], cwd: dataDir });
  const server = new Server(proc, 0, dataDir, owns, args);
  live.add(server);

  const listening = deferred();
  const onData = (chunk) => {
    server.log += chunk.toString();
    const m = /roost: listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(server.log);
    if (m) listening.resolve(Number(m[1]));
  };
  proc.stderr.on('data', onData);
  proc.stdout.on('data', (c) => {
    server.log += c.toString();
  });
  proc.once('error', (e) => listening.reject(e));
  server.exited.then((x) => listening.reject(new Error(
    `roost exited before listening (code ${x.code}, signal ${x.signal}):\n${server.tail()}`)));

  try {
    server.port = await withTimeout(listening.promise, timeoutMs, `"roost: listening on" from ${ROOST}`);
    if (port !== 0 && server.port !== port) throw new Error(`asked for port ${port}, got ${server.port}`);
    await waitUntil(async () => {
      try {
        return (await request(server, 'GET', '/healthz', { apiKey: null })).status === 200;
      } catch {
        return false;
      }
    }, { timeoutMs, label: 'GET /healthz 200' });
  } catch (e) {
    await server.cleanup();
    throw new Error(`${e.message}\n--- server log ---\n${server.tail()}`);
  }
  return server;
}

// ---------------------------------------------------------------------------
// HTTP

/**
 * One HTTP request on its own connection (no pooling, so nothing lingers
 * after a test). body: an object (sent as JSON), a string or Buffer (sent
 * as is), or undefined. apiKey: sent as a Bearer token unless null.
 * Resolves {status, headers, text, json} (json undefined if not JSON).
 */
export function request(server, method, urlPath, { body, apiKey = API_KEY, headers = {}, timeoutMs = TIMEOUT } = {}) {
  const h = { ...headers };
  let data;
  if (body !== undefined) {
    data = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
    if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['Content-Type'] = 'application/json';
    h['Content-Length'] = Buffer.byteLength(data);
  }
  if (apiKey !== null && apiKey !== undefined) h.Authorization = `Bearer ${apiKey}`;
  return withTimeout(new Promise((resolve, reject) => {
    const req = http.request({ host: HOST, port: server.port, method, path: urlPath, headers: h, agent: false },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let json;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode, headers: res.headers, text, json });
        });
        res.on('error', reject);
      });
    req.on('error', reject);
    if (data !== undefined) req.write(data);
    req.end();
  }), timeoutMs, `${method} ${urlPath}`);
}

/** POST /api/users/:id/notify with {event, payload}. */
export function notify(server, userId, event, payload, opts = {}) {
  return request(server, 'POST', `/api/users/${encodeURIComponent(userId)}/notify`,
    { body: { event, payload }, ...opts });
}

/** POST /api/tokens; resolves the token string (asserts 200). */
export async function apiToken(server, { sub, room = '*', ttl = 3600 }) {
  const r = await request(server, 'POST', '/api/tokens', { body: { sub, room, ttl } });
  if (r.status !== 200 || typeof r.json?.token !== 'string') {
    throw new Error(`POST /api/tokens: ${r.status} ${r.text}`);
  }
  return r.json.token;
}

/** GET /metrics parsed: {text, samples: Map("name{labels}" -> number)}. */
export async function metrics(server) {
  const r = await request(server, 'GET', '/metrics', { apiKey: null });
  if (r.status !== 200) throw new Error(`GET /metrics: ${r.status} ${r.text}`);
  const samples = new Map();
  for (const line of r.text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)/.exec(line);
    if (m) samples.set(m[1], Number(m[2]));
  }
  return { text: r.text, headers: r.headers, samples };
}

// ---------------------------------------------------------------------------
// Tokens

export function b64url(buf) {
  return Buffer.from(buf).toString('base64url');
}

/**
 * An HS256 JWT signed locally (as roost token / POST /api/tokens would).
 * ttl in seconds from now; exp overrides it; exp: null leaves it out.
 */
export function mintToken({ sub, room = '*', ttl = 3600, exp, secret = SECRET, extra = {} }) {
  const header = { alg: 'HS256', typ: 'JWT' };
  const claims = { sub, room, ...extra };
  if (exp !== null) claims.exp = exp ?? Math.floor(Date.now() / 1000) + ttl;
  const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const sig = crypto.createHmac('sha256', secret).update(signingInput).digest();
  return `${signingInput}.${b64url(sig)}`;
}

// ---------------------------------------------------------------------------
// The phoenix client

/**
 * A phoenix.js Socket over `ws`, with everything it sees recorded:
 * client.messages (every decoded message), client.opens, client.closes
 * (close events, with code) as Inboxes. Reconnects and rejoins quickly
 * (100 ms) unless opts say otherwise. Call client.connect() to open.
 */
export function phxClient(server, { token, port, ...opts } = {}) {
  const base = `ws://${HOST}:${port ?? server.port}/socket`;
  const socket = new Socket(base, {
    transport: WebSocket,
    params: token ? { token } : {},
    reconnectAfterMs: () => 100,
    rejoinAfterMs: () => 100,
    timeout: TIMEOUT,
    ...opts,
  });
  const client = {
    socket,
    messages: new Inbox('phoenix messages'),
    opens: new Inbox('socket opens'),
    closes: new Inbox('socket closes'),
    errors: new Inbox('socket errors'),
    connect() {
      const opened = this.opens.next(() => true, TIMEOUT, 'socket open');
      socket.connect();
      return opened;
    },
    disconnect() {
      return new Promise((resolve) => socket.disconnect(resolve));
    },
    /** Disconnects for good: no reconnect, no rejoin timer left running. */
    close() {
      socket.disconnect();
      socket.reconnectTimer.reset();
      for (const ch of [...socket.channels]) {
        ch.rejoinTimer.reset();
        ch.joinPush.cancelTimeout();
      }
    },
  };
  socket.onOpen(() => client.opens.push({ at: Date.now() }));
  socket.onClose((ev) => client.closes.push({ code: ev.code, reason: ev.reason, at: Date.now() }));
  socket.onError((e) => client.errors.push({ message: e?.message ?? String(e), at: Date.now() }));
  socket.onMessage((msg) => client.messages.push(msg));
  return client;
}

/**
 * A channel whose join outcomes are recorded: chan.joins is an Inbox of
 * {status, response} for every join reply (the first join and every
 * rejoin), chan.events an Inbox of {event, payload} for every other event
 * pushed to it. join(chan) sends the join and resolves its first outcome.
 */
export function phxChannel(client, topic, params = {}) {
  const chan = client.socket.channel(topic, params);
  chan.joins = new Inbox(`joins of ${topic}`);
  chan.events = new Inbox(`events on ${topic}`);
  const origOnMessage = chan.onMessage.bind(chan);
  chan.onMessage = (event, payload, ref) => {
    if (event !== 'phx_reply' && !event.startsWith('chan_reply_')) chan.events.push({ event, payload, ref });
    return origOnMessage(event, payload, ref);
  };
  return chan;
}

export function join(chan, timeoutMs = TIMEOUT) {
  const p = chan.joins.next(() => true, timeoutMs, `join reply on ${chan.topic}`);
  chan.join(timeoutMs)
    .receive('ok', (response) => chan.joins.push({ status: 'ok', response }))
    .receive('error', (response) => chan.joins.push({ status: 'error', response }))
    .receive('timeout', () => chan.joins.push({ status: 'timeout' }));
  return p;
}

/** Pushes on a joined channel and resolves {status, response}. */
export function pushAwait(chan, event, payload, timeoutMs = TIMEOUT) {
  return withTimeout(new Promise((resolve) => {
    chan.push(event, payload, timeoutMs)
      .receive('ok', (response) => resolve({ status: 'ok', response }))
      .receive('error', (response) => resolve({ status: 'error', response }))
      .receive('timeout', () => resolve({ status: 'timeout' }));
  }), timeoutMs + 1000, `reply to ${event} on ${chan.topic}`);
}

/** Leaves and resolves the leave's outcome ('ok' or 'timeout'). */
export function leave(chan, timeoutMs = TIMEOUT) {
  return withTimeout(new Promise((resolve) => {
    chan.leave(timeoutMs).receive('ok', () => resolve('ok')).receive('timeout', () => resolve('timeout'));
  }), timeoutMs + 1000, `leave of ${chan.topic}`);
}

// ---------------------------------------------------------------------------
// Raw WebSocket (the `ws` package): exact frames, close codes

/**
 * Opens a WebSocket to /socket/websocket. Resolves a RawClient once open;
 * rejects with err.status / err.body if the upgrade is refused. query
 * defaults to {vsn: '2.0.0', token}.
 */
export function rawWs(server, { token, vsn = '2.0.0', query, protocols, headers, path: p } = {}) {
  const q = query ?? { vsn, token };
  const url = p ? `${server.wsBase}${p}` : server.wsUrl(q);
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { headers, handshakeTimeout: TIMEOUT, maxPayload: 0 });
    const client = new RawClient(ws, vsn);
    ws.once('open', () => resolve(client));
    ws.once('unexpected-response', (req, res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        const err = new Error(`upgrade refused: ${res.statusCode} ${body}`);
        err.status = res.statusCode;
        err.headers = res.headers;
        err.body = body;
        try {
          err.json = JSON.parse(body);
        } catch {
          err.json = undefined;
        }
        reject(err);
        req.destroy();
      });
    });
    ws.once('error', (e) => reject(e));
  });
}

/** The status of a WebSocket upgrade attempt: {status, json, headers}. */
export async function upgradeStatus(server, opts) {
  try {
    const c = await rawWs(server, opts);
    const protocol = c.ws.protocol;
    c.ws.terminate();
    return { status: 101, protocol };
  } catch (e) {
    if (e.status) return { status: e.status, json: e.json, body: e.body, text: e.body, headers: e.headers };
    throw e;
  }
}

/** Normalises a V1 object or V2 array into {join_ref, ref, topic, event, payload}. */
export function decodePhx(text) {
  const v = JSON.parse(text);
  if (Array.isArray(v)) {
    const [join_ref, ref, topic, event, payload] = v;
    return { join_ref, ref, topic, event, payload, v: 2 };
  }
  return { join_ref: v.join_ref ?? null, ref: v.ref ?? null, topic: v.topic, event: v.event, payload: v.payload, v: 1 };
}

export class RawClient {
  constructor(ws, vsn = '2.0.0') {
    this.ws = ws;
    this.v1 = vsn === null || vsn === undefined || String(vsn).startsWith('1.');
    this.nextRef = 1;
    this.messages = new Inbox('raw ws messages');
    this.closeInfo = null;
    this.closed = new Promise((resolve) => {
      ws.once('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        resolve(this.closeInfo);
      });
    });
    ws.on('error', () => {}); // surfaced through 'close'
    ws.on('message', (data, isBinary) => {
      const text = data.toString();
      let msg;
      try {
        msg = isBinary ? { binary: data } : decodePhx(text);
      } catch {
        msg = { unparsable: text };
      }
      this.messages.push(msg);
    });
  }

  ref() {
    return String(this.nextRef++);
  }

  /** Sends [join_ref, ref, topic, event, payload] (V2) or the V1 object. */
  send(join_ref, ref, topic, event, payload = {}) {
    const frame = this.v1 ? { join_ref, ref, topic, event, payload } : [join_ref, ref, topic, event, payload];
    this.ws.send(JSON.stringify(frame));
  }

  /** Sends a push with a fresh ref and resolves the phx_reply to it. */
  async push(topic, event, payload = {}, joinRef = null, timeoutMs = TIMEOUT) {
    const ref = this.ref();
    this.send(joinRef, ref, topic, event, payload);
    return this.reply(ref, timeoutMs);
  }

  reply(ref, timeoutMs = TIMEOUT) {
    return this.messages.next((m) => m.event === 'phx_reply' && m.ref === ref, timeoutMs, `phx_reply with ref ${ref}`);
  }

  /** Joins topic; resolves {joinRef, reply}. */
  async join(topic, payload = {}, timeoutMs = TIMEOUT) {
    const joinRef = this.ref();
    this.send(joinRef, joinRef, topic, 'phx_join', payload);
    const reply = await this.reply(joinRef, timeoutMs);
    return { joinRef, reply };
  }

  /** Awaits the next message matching pred. */
  next(pred, timeoutMs = TIMEOUT, label) {
    return this.messages.next(pred, timeoutMs, label);
  }

  /** Awaits the close: {code, reason}. */
  waitClose(timeoutMs = TIMEOUT) {
    return withTimeout(this.closed, timeoutMs, 'the server to close the WebSocket');
  }

  close() {
    if (this.closeInfo === null) this.ws.terminate();
  }
}

// ---------------------------------------------------------------------------
// WebSocket over a bare TCP socket: frames the `ws` package will not send
// (unmasked, invalid UTF-8, odd opcodes), and a client that stops reading.

/** Encodes one client frame; masked unless mask === false. */
export function encodeFrame(payload, { opcode = 0x1, fin = true, mask = true, rsv = 0 } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const len = data.length;
  let head;
  if (len < 126) {
    head = Buffer.alloc(2);
    head[1] = len;
  } else if (len < 65536) {
    head = Buffer.alloc(4);
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head = Buffer.alloc(10);
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  head[0] = (fin ? 0x80 : 0) | (rsv << 4) | opcode;
  if (!mask) return Buffer.concat([head, data]);
  head[1] |= 0x80;
  const key = crypto.randomBytes(4);
  const body = Buffer.alloc(len);
  for (let i = 0; i < len; i++) body[i] = data[i] ^ key[i & 3];
  return Buffer.concat([head, key, body]);
}

/** Incremental parser of server frames (unmasked). */
export class FrameParser {
  constructor(onFrame) {
    this.buf = Buffer.alloc(0);
    this.onFrame = onFrame;
  }

  feed(chunk) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      const fin = (b[0] & 0x80) !== 0;
      const opcode = b[0] & 0x0f;
      const masked = (b[1] & 0x80) !== 0;
      let len = b[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      if (masked) off += 4;
      if (b.length < off + len) return;
      const payload = b.subarray(off, off + len);
      this.buf = b.subarray(off + len);
      const frame = { fin, opcode, masked, payload };
      if (opcode === 0x8) {
        frame.code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        frame.reason = payload.subarray(2).toString();
      }
      this.onFrame(frame);
    }
  }
}

/**
 * A WebSocket client on a bare TCP socket. Resolves once the 101 arrived:
 * {sock, frames: Inbox of server frames, ended: promise, send(frame bytes),
 * sendText(string), status, headers}. Rejects with err.status if refused.
 */
export function tcpWs(server, { token, vsn = '2.0.0', path: p, extraHeaders = '' } = {}) {
  const target = p ?? `/socket/websocket?vsn=${vsn}${token ? '&token=' + encodeURIComponent(token) : ''}`;
  return withTimeout(new Promise((resolve, reject) => {
    const sock = net.connect({ host: HOST, port: server.port });
    const key = crypto.randomBytes(16).toString('base64');
    let head = Buffer.alloc(0);
    const frames = new Inbox('tcp ws frames');
    const parser = new FrameParser((f) => frames.push(f));
    const c = {
      sock,
      frames,
      bytesIn: 0,
      ended: new Promise((res) => sock.once('close', () => res())),
      send: (bytes) => sock.write(bytes),
      sendText: (s) => sock.write(encodeFrame(s)),
    };
    sock.on('error', (e) => {
      c.error = e;
    });
    const onData = (chunk) => {
      c.bytesIn += chunk.length;
      if (c.status === undefined) {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        const lines = head.subarray(0, end).toString().split('\r\n');
        c.status = Number(lines[0].split(' ')[1]);
        c.headers = lines.slice(1);
        const rest = head.subarray(end + 4);
        if (c.status !== 101) {
          const err = new Error(`upgrade refused: ${lines[0]}`);
          err.status = c.status;
          sock.destroy();
          reject(err);
          return;
        }
        resolve(c);
        if (rest.length) parser.feed(rest);
        return;
      }
      parser.feed(chunk);
    };
    sock.on('data', onData);
    sock.once('connect', () => {
      sock.write(`GET ${target} HTTP/1.1\r\nHost: ${HOST}:${server.port}\r\nUpgrade: websocket\r\n` +
        `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extraHeaders}\r\n`);
    });
    sock.once('close', () => reject(new Error('connection closed before the upgrade answer')));
  }), TIMEOUT, 'WebSocket upgrade over TCP');
}

/** The first close frame of a tcpWs client, or null if the TCP connection ended without one. */
export async function tcpCloseFrame(c, timeoutMs = TIMEOUT) {
  const endedNoFrame = c.ended.then(() => new Promise((r) => setImmediate(() => r(null))));
  const frame = c.frames.next((f) => f.opcode === 0x8, timeoutMs, 'a close frame');
  frame.catch(() => {});
  const r = await withTimeout(Promise.race([frame, endedNoFrame]), timeoutMs, 'a close frame or the end of the connection');
  if (r === null) {
    const late = c.frames.drain((f) => f.opcode === 0x8);
    return late[0] ?? null;
  }
  return r;
}

/** Parses a server V2 text frame from a tcpWs client. */
export function frameMsg(f) {
  return decodePhx(f.payload.toString());
}

/** A unique user id per call, so tests never see each other's traffic. */
let uid = 0;
export function userId(prefix = 'u') {
  uid += 1;
  return `${prefix}${process.pid}x${uid}`;
}

/** Asserts the JSON error shape {"error":{"code","message"}}; returns it. */
export function errorShape(r) {
  const e = r.json?.error;
  if (!e || typeof e.code !== 'string' || typeof e.message !== 'string') {
    throw new Error(`expected {"error":{"code","message"}} with HTTP ${r.status}, got: ${r.text}`);
  }
  return e;
}
