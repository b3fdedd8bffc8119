// tests/media/smoke.mjs — proves a Janus started by tests/media/run.sh
// answers roost's way of talking to it: WebSocket with subprotocol
// janus-protocol, create session -> attach videoroom -> create room ->
// destroy room -> destroy session. Run: bash tests/media/run.sh node tests/media/smoke.mjs
import { createRequire } from 'node:module';
const require = createRequire(new URL('../integration/package.json', import.meta.url));
const WebSocket = require('ws');

const url = process.env.ROOST_JANUS_URL || 'ws://127.0.0.1:8188';
const ws = new WebSocket(url, 'janus-protocol');
let n = 0;
const pending = new Map();
ws.on('message', (d) => {
  const m = JSON.parse(d.toString());
  if (m.janus === 'ack') return;               // async requests: wait for the event
  const p = pending.get(m.transaction);
  if (p) { pending.delete(m.transaction); p(m); }
});
const req = (body) => new Promise((resolve, reject) => {
  const transaction = `t${++n}`;
  pending.set(transaction, resolve);
  ws.send(JSON.stringify({ ...body, transaction }));
  setTimeout(() => reject(new Error(`timeout ${body.janus}`)), 5000);
});
const must = (ok, what, m) => { if (!ok) { console.error('FAIL', what, JSON.stringify(m)); process.exit(1); } };

await new Promise((r, j) => { ws.on('open', r); ws.on('error', j); });
must(ws.protocol === 'janus-protocol', 'subprotocol', ws.protocol);
const c = await req({ janus: 'create' });
must(c.janus === 'success', 'create', c);
const session_id = c.data.id;
const a = await req({ janus: 'attach', session_id, plugin: 'janus.plugin.videoroom' });
must(a.janus === 'success', 'attach', a);
const handle_id = a.data.id;
const r = await req({ janus: 'message', session_id, handle_id, body: { request: 'create', publishers: 6 } });
must(r.janus === 'success' && r.plugindata?.data?.videoroom === 'created', 'create room', r);
const room = r.plugindata.data.room;
const d = await req({ janus: 'message', session_id, handle_id, body: { request: 'destroy', room } });
must(d.plugindata?.data?.videoroom === 'destroyed', 'destroy room', d);
const x = await req({ janus: 'destroy', session_id });
must(x.janus === 'success', 'destroy session', x);
console.log(`ok: session ${session_id}, handle ${handle_id}, room ${room} created and destroyed over ${url} (${ws.protocol})`);
ws.close();
