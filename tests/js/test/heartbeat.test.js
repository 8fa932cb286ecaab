'use strict';
// Engine.IO heartbeats (--ping-interval-ms 300 --ping-timeout-ms 200 in these tests).

const assert = require('node:assert/strict');
const WebSocket = require('ws');

const { test, useTopology } = require('../lib/harness');
const { PING_INTERVAL_MS, PING_TIMEOUT_MS } = require('../lib/server');
const { once, sleep } = require('../lib/wait');

const env = useTopology();
const SLACK_MS = 1000;

/**
 * A raw Engine.IO v4 / Socket.IO v5 client over WebSocket: opens, CONNECTs to "/" with the
 * session, and answers pings only if told to. Records every frame.
 */
async function rawClient(sessionId, { answerPings }) {
  const wsUrl = env.clientUrl.replace(/^http/, 'ws') + '/socket.io/?EIO=4&transport=websocket';
  const ws = new WebSocket(wsUrl);
  const frames = [];
  const state = { openedAt: 0, closedAt: 0, pings: 0, open: null, connectAck: null, closeCode: null };
  ws.on('message', (buf, isBinary) => {
    const s = isBinary ? `<binary ${buf.length}>` : buf.toString();
    frames.push(s);
    if (s.startsWith('0')) {
      state.open = JSON.parse(s.slice(1));
      ws.send(`40${JSON.stringify({ sessionId })}`);
    } else if (s === '2') {
      state.pings += 1;
      if (answerPings) ws.send('3');
    } else if (s.startsWith('40')) {
      state.connectAck = JSON.parse(s.slice(2) || 'null');
    }
  });
  const closed = new Promise((resolve) => {
    ws.on('close', (code) => {
      state.closedAt = Date.now();
      state.closeCode = code;
      resolve();
    });
  });
  ws.on('error', () => {});
  await once(ws, 'open', 5000);
  state.openedAt = Date.now();
  return { ws, frames, state, closed };
}

test('the open packet announces the configured pingInterval and pingTimeout', async () => {
  const { sessionId } = await env.newUser('hb-open');
  const c = await rawClient(sessionId, { answerPings: true });
  try {
    const start = Date.now();
    while (!c.state.connectAck && Date.now() - start < 5000) await sleep(20);
    assert.ok(c.state.open, `open packet: ${c.frames[0]}`);
    assert.equal(typeof c.state.open.sid, 'string');
    assert.equal(c.state.open.pingInterval, PING_INTERVAL_MS);
    assert.equal(c.state.open.pingTimeout, PING_TIMEOUT_MS);
    assert.ok(Array.isArray(c.state.open.upgrades));
    assert.equal(typeof c.state.open.maxPayload, 'number');
    assert.ok(c.state.connectAck && typeof c.state.connectAck.sid === 'string', `CONNECT answer: ${c.frames.join(' | ')}`);
  } finally {
    c.ws.terminate();
  }
});

test('a client that never answers pings is closed within pingInterval + pingTimeout + slack', async () => {
  const { sessionId } = await env.newUser('hb-silent');
  const c = await rawClient(sessionId, { answerPings: false });
  const limit = PING_INTERVAL_MS + PING_TIMEOUT_MS + SLACK_MS;
  try {
    await Promise.race([
      c.closed,
      sleep(limit + 2000).then(() => {
        throw new Error(`still open ${limit + 2000} ms after opening; frames: ${c.frames.join(' | ')}`);
      }),
    ]);
    const lived = c.state.closedAt - c.state.openedAt;
    assert.ok(c.state.pings >= 1, 'the server pinged first');
    assert.ok(lived <= limit, `closed after ${lived} ms (limit ${limit})`);
  } finally {
    c.ws.terminate();
  }
});

test('a client that answers pings stays open', async () => {
  const { sessionId } = await env.newUser('hb-alive');
  const c = await rawClient(sessionId, { answerPings: true });
  try {
    await sleep(2500);
    assert.equal(c.state.closedAt, 0, `closed unexpectedly; frames: ${c.frames.join(' | ')}`);
    assert.ok(c.state.pings >= 4, `pinged about every ${PING_INTERVAL_MS} ms: ${c.state.pings} pings in 2.5 s`);
  } finally {
    c.ws.terminate();
  }
});

test('the official client stays connected while idle (over both transports)', async () => {
  const a = await env.connectUser('hb-official-ws', { transports: ['websocket'] });
  const b = await env.connectUser('hb-official-poll', { transports: ['polling'] });
  const drops = [];
  a.socket.on('disconnect', (r) => drops.push(`ws: ${r}`));
  b.socket.on('disconnect', (r) => drops.push(`polling: ${r}`));
  await sleep(2500);
  assert.deepEqual(drops, []);
});

test('a dead polling client (stops polling) is forgotten: presence goes offline', async () => {
  const { eventually } = require('../lib/wait');
  const { getJson } = require('../lib/api');
  const { userId, sessionId } = await env.newUser('hb-poll-dead');
  // Handshake and CONNECT by hand over polling, then never poll again.
  const base = `${env.clientUrl}/socket.io/?EIO=4&transport=polling`;
  const open = await (await fetch(base)).text();
  const sid = JSON.parse(open.slice(1)).sid;
  const post = await fetch(`${base}&sid=${sid}`, { method: 'POST', body: `40${JSON.stringify({ sessionId })}` });
  assert.equal(post.status, 200);
  const ack = await (await fetch(`${base}&sid=${sid}`)).text();
  assert.ok(ack.startsWith('40'), `CONNECT answer: ${ack}`);
  await eventually(async () => {
    const p = await getJson(env.api(), `/api/presence/${encodeURIComponent(userId)}`);
    assert.equal(p.online, true);
  }, 5000);
  await eventually(async () => {
    const p = await getJson(env.api(), `/api/presence/${encodeURIComponent(userId)}`);
    assert.equal(p.online, false);
  }, PING_INTERVAL_MS + PING_TIMEOUT_MS + SLACK_MS + 2000);
});
