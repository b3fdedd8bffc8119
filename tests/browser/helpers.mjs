// helpers.mjs — fixtures for the browser tests: a roost server on
// 127.0.0.1 (port 0) with development credentials (no --secret/--api-key:
// POST /dev/token exists) or with real ones, plain HTTP requests whose
// path is sent exactly as written (no normalisation of "..", so traversal
// can be tried), and Debian's chromium through playwright-core.
//
// Nothing sleeps to synchronise: the server's "listening" line, process
// exits and page events are awaited, each with a deadline; the only
// polling is waitUntil(), bounded, for state with no event (getStats).

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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
