// The status page (`GET /`) in headless Chromium against a real three-node cluster:
// it loads, shows three nodes and one leader, draws the traffic charts, and notices a
// node going down by itself. Screenshots go to tests/browser/artifacts/ (gitignored).
//
// Needs: RAFTCAST_BIN (the built binary) and Debian's chromium (CHROMIUM_PATH to override
// /usr/bin/chromium).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.resolve(here, '..', 'artifacts');
const BIN = process.env.RAFTCAST_BIN || path.resolve(here, '../../../target/debug/raftcast');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const API_KEY = 'browser-test-api-key-0123456789';
const SECRET = 'browser-test-cluster-secret-0123456789';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(what, cond, ms = 30_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      if (await cond()) return;
    } catch (e) {
      last = e;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ''}`);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'raftcast-browser-'));
const nodes = [];

function nodeEnv() {
  const env = { ...process.env };
  delete env.REDIS_URL;
  return env;
}
let context;
let userDataDir;

function logTail(n) {
  try {
    return fs.readFileSync(n.log, 'utf8').split('\n').slice(-40).join('\n');
  } catch {
    return '';
  }
}

before(async () => {
  assert.ok(fs.existsSync(BIN), `raftcast binary not found at ${BIN} (set RAFTCAST_BIN)`);
  assert.ok(fs.existsSync(CHROMIUM), `chromium not found at ${CHROMIUM}: apt-get install -y chromium`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const ports = [];
  for (let i = 0; i < 3; i++) ports.push([await freePort(), await freePort()]);
  const peers = ports.map(([, q], i) => `${i + 1}=127.0.0.1:${q}`).join(',');
  ports.forEach(([p, q], i) => {
    const id = i + 1;
    const log = path.join(tmp, `n${id}.log`);
    const out = fs.openSync(log, 'a');
    const child = spawn(BIN, [
      '--node-id', String(id), '--port', String(p), '--peer-port', String(q), '--peers', peers,
      '--cluster-secret', SECRET, '--api-key', API_KEY, '--data-dir', path.join(tmp, `d${id}`),
      '--host', '127.0.0.1',
    ], { stdio: ['ignore', out, out], env: nodeEnv() });
    nodes.push({ id, port: p, base: `http://127.0.0.1:${p}`, child, log });
  });
  for (const n of nodes) {
    await waitFor(`node ${n.id} ready`, async () => (await fetch(`${n.base}/readyz`)).status === 200, 40_000)
      .catch((e) => { throw new Error(`${e.message}\n${logTail(n)}`); });
  }
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'raftcast-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 1000 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
});

after(async () => {
  if (context) await context.close().catch(() => {});
  for (const n of nodes) if (n.child.exitCode === null) n.child.kill('SIGKILL');
  await sleep(200);
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
  if (!process.exitCode) fs.rmSync(tmp, { recursive: true, force: true });
  else console.error(`node logs kept in ${tmp}`);
});

async function api(base, method, p, body) {
  const res = await fetch(base + p, {
    method,
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

test('the status page shows a three-node cluster with its leader, live', async () => {
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });

  // A client socket in the browser (raw Engine.IO/Socket.IO over WebSocket, same origin),
  // so that deliveries show up too.
  const sess = await api(nodes[1].base, 'POST', '/api/sessions', { userId: 'browser-alice' });
  assert.equal(sess.status, 201, JSON.stringify(sess.body));

  const resp = await page.goto(`${nodes[1].base}/`);
  assert.equal(resp.status(), 200);
  assert.match(await page.title(), /raftcast/);

  await page.evaluate((sessionId) => new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${location.host}/socket.io/?EIO=4&transport=websocket`);
    window.__ws = ws;
    ws.onmessage = (m) => {
      if (m.data === '2') ws.send('3');
      else if (m.data.startsWith('0{')) ws.send('40' + JSON.stringify({ sessionId }));
      else if (m.data.startsWith('42["connected"')) resolve();
    };
    ws.onerror = () => reject(new Error('websocket error'));
    setTimeout(() => reject(new Error('no connected event')), 10_000);
  }), sess.body.sessionId);

  // Three rows, exactly one leader, and the leader card agrees with /cluster/status.
  await page.waitForFunction(() => document.querySelectorAll('#nodes tbody tr').length === 3, null, { timeout: 15_000 });
  await page.waitForFunction(() => document.querySelectorAll('#nodes tbody tr[data-role="leader"]').length === 1, null, { timeout: 15_000 });
  const cs = await (await fetch(`${nodes[1].base}/cluster/status`)).json();
  const leaderShown = await page.getAttribute('#leader', 'data-leader');
  assert.equal(leaderShown, String(cs.leaderId), 'leader card matches /cluster/status');
  assert.equal(await page.getAttribute('#status', 'data-status'), 'healthy');
  assert.equal((await page.textContent('#node-count')).trim(), '3 / 3');

  // Traffic: publish for a few seconds; the charts and the per-event table fill in.
  const deadline = Date.now() + 5_000;
  let i = 0;
  while (Date.now() < deadline) {
    const r = await api(nodes[i % 2].base, 'POST', '/api/emit', { userId: 'browser-alice', event: 'trade:executed', data: { i: i++, symbol: 'AAPL' } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await sleep(40);
  }
  await page.waitForFunction(() => document.querySelector('#chart-delivered polyline') !== null
    && [...document.querySelectorAll('#events tbody td')].some((td) => td.textContent === 'trade:executed'), null, { timeout: 10_000 });
  await page.screenshot({ path: path.join(ARTIFACTS, 'status-page.png'), fullPage: true });

  // The page updates by itself: a node dies, its row turns unreachable.
  const victim = nodes.find((n) => n.id !== cs.leaderId && n !== nodes[1]);
  victim.child.kill('SIGKILL');
  await page.waitForFunction((id) => {
    const td = document.querySelector(`#nodes tbody tr[data-node="${id}"] td.no`);
    return td !== null;
  }, victim.id, { timeout: 20_000 });
  assert.match(await page.textContent('#node-count'), /^2 \/ 3$/);
  await page.waitForFunction(() => document.querySelector('#status').dataset.status === 'degraded', null, { timeout: 5_000 });
  await page.screenshot({ path: path.join(ARTIFACTS, 'status-page-node-down.png'), fullPage: true });

  assert.deepEqual(consoleErrors, [], 'no script errors on the page');
  await page.close();
});
