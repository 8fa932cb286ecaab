'use strict';
// The backend HTTP API: auth, validation, limits, history, presence, stats.

const assert = require('node:assert/strict');

const { clusterStats, createSession, emit, getJson, request, socketCount, uid } = require('../lib/api');
const { connect } = require('../lib/client');
const { test, useTopology } = require('../lib/harness');
const { eventually, onceArgs } = require('../lib/wait');

const env = useTopology();

function assertJsonError(res, status, code) {
  assert.equal(res.status, status, `expected ${status} ${code}, got HTTP ${res.status} ${res.text.slice(0, 300)}`);
  assert.ok(res.body && typeof res.body === 'object', `error body is JSON: ${res.text.slice(0, 300)}`);
  assert.equal(res.body.code, code, `error code: ${res.text.slice(0, 300)}`);
  assert.equal(typeof res.body.message, 'string');
  assert.match(res.headers.get('content-type') || '', /application\/json/);
}

test('401 UNAUTHORIZED without the API key, with a wrong key, or with a malformed header', async () => {
  const calls = [
    ['POST', '/api/sessions', { userId: 'x' }],
    ['DELETE', '/api/sessions/whatever', undefined],
    ['POST', '/api/emit', { userId: 'x', event: 'e', data: {} }],
    ['POST', '/api/quotes', { symbol: 'AAPL', quote: 1 }],
    ['GET', '/api/rooms/user%3Ax/history', undefined],
    ['GET', '/api/presence/x', undefined],
    ['GET', '/api/stats', undefined],
  ];
  for (const [method, path, body] of calls) {
    assertJsonError(await request(env.api(), method, path, { body, key: null }), 401, 'UNAUTHORIZED');
    assertJsonError(await request(env.api(), method, path, { body, key: 'wrong-key' }), 401, 'UNAUTHORIZED');
    assertJsonError(
      await request(env.api(), method, path, { body, key: null, headers: { authorization: 'test-key' } }),
      401,
      'UNAUTHORIZED',
    );
  }
});

test('400 INVALID_PAYLOAD for bad /api/emit bodies', async () => {
  const bad = {
    'missing event': { userId: 'u1', data: {} },
    'both room and userId': { room: 'user:u1', userId: 'u1', event: 'e', data: {} },
    'neither room nor userId': { event: 'e', data: {} },
    'event not a string': { userId: 'u1', event: 42, data: {} },
    'empty event': { userId: 'u1', event: '', data: {} },
    'durable not a boolean': { userId: 'u1', event: 'e', data: {}, durable: 'yes' },
    'body an array': [],
  };
  for (const [what, body] of Object.entries(bad)) {
    const res = await request(env.api(), 'POST', '/api/emit', { body });
    try {
      assertJsonError(res, 400, 'INVALID_PAYLOAD');
    } catch (e) {
      e.message = `${what}: ${e.message}`;
      throw e;
    }
  }
  assertJsonError(await request(env.api(), 'POST', '/api/emit', { body: '{"event":' }), 400, 'INVALID_PAYLOAD');
  assertJsonError(await request(env.api(), 'POST', '/api/emit', { body: 'not json at all' }), 400, 'INVALID_PAYLOAD');
});

test('400 INVALID_PAYLOAD for bad /api/sessions bodies', async () => {
  for (const body of [{}, { userId: '' }, { userId: 7 }, { userId: 'u', ttlSeconds: -1 }, { userId: 'u', ttlSeconds: 'x' }]) {
    assertJsonError(await request(env.api(), 'POST', '/api/sessions', { body }), 400, 'INVALID_PAYLOAD');
  }
});

test('413 PAYLOAD_TOO_LARGE above 64 KiB; just under it is accepted', async () => {
  const userId = uid('big');
  const tooBig = { userId, event: 'big', data: { blob: 'x'.repeat(65 * 1024) } };
  assertJsonError(await request(env.api(), 'POST', '/api/emit', { body: tooBig }), 413, 'PAYLOAD_TOO_LARGE');
  const ok = { userId, event: 'big', data: { blob: 'x'.repeat(60 * 1024) } };
  const res = await request(env.api(), 'POST', '/api/emit', { body: ok });
  assert.equal(res.status, 200, res.text.slice(0, 300));
  // Nothing of the refused one was written.
  assert.equal(res.body.offset, 1);
});

test('a 60 KiB event reaches WebSocket and polling clients whole (the server writes it in fragments)', async () => {
  const ws = await env.connectUser('big-ws', { transports: ['websocket'] });
  const poll = await env.connectUser('big-poll', { transports: ['polling'] });
  const blob = Array.from({ length: 60 * 1024 }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');
  for (const c of [ws, poll]) {
    const got = onceArgs(c.socket, 'big', 10_000);
    const res = await request(env.api(), 'POST', '/api/emit', { body: { userId: c.userId, event: 'big', data: { blob } } });
    assert.equal(res.status, 200, res.text.slice(0, 300));
    const [data] = await got;
    assert.equal(data.blob.length, blob.length);
    assert.equal(data.blob, blob);
  }
});

test('GET /api/rooms/{room}/history → {room, epoch, events:[{offset, event, data, ts}]} and ?since=N', async () => {
  const userId = uid('hist');
  const room = `user:${userId}`;
  const sent = [
    ['trade:executed', { n: 1 }],
    ['order:filled', ['a', 2]],
    ['note', 'three'],
  ];
  let last;
  for (const [event, data] of sent) last = await emit(env.api(), { userId, event, data });
  const path = `/api/rooms/${encodeURIComponent(room)}/history`;
  // 200 means applied on the answering node; in a cluster the others follow shortly.
  await eventually(async () => assert.equal((await getJson(env.api(), path)).events.length, 3), 3000);
  await eventually(async () => assert.equal((await getJson(env.api(), path)).events.length, 3), 3000); // the other API node
  const h = await getJson(env.api(), path);
  for (const k of ['room', 'epoch', 'events']) assert.ok(k in h, `history has ${k}: ${JSON.stringify(h).slice(0, 300)}`);
  assert.equal(h.room, room);
  assert.equal(h.epoch, last.epoch);
  assert.equal(h.events.length, 3);
  h.events.forEach((e, i) => {
    for (const k of ['offset', 'event', 'data', 'ts']) assert.ok(k in e, `event has ${k}: ${JSON.stringify(e)}`);
    assert.equal(e.offset, i + 1);
    assert.equal(e.event, sent[i][0]);
    assert.deepEqual(e.data, sent[i][1]);
    assert.equal(typeof e.ts, 'number');
    assert.ok(Math.abs(e.ts - Date.now()) < 60_000);
  });
  assert.deepEqual(await getJson(env.api(), `${path}?since=0`), h);
  const s1 = await getJson(env.api(), `${path}?since=1`);
  assert.deepEqual(s1.events.map((e) => e.offset), [2, 3]);
  const s3 = await getJson(env.api(), `${path}?since=3`);
  assert.deepEqual(s3.events, []);
  const bad = await request(env.api(), 'GET', `${path}?since=abc`);
  assertJsonError(bad, 400, 'INVALID_PAYLOAD');
});

test('history of a room that never had events is empty', async () => {
  const h = await getJson(env.api(), `/api/rooms/${encodeURIComponent(`user:${uid('nohist')}`)}/history`);
  assert.deepEqual(h.events, []);
  assert.equal(typeof h.epoch, 'string');
});

test('GET /api/presence/{userId} → {userId, online, sockets, nodes} follows connects and disconnects', async () => {
  const userId = uid('presence');
  const path = `/api/presence/${encodeURIComponent(userId)}`;
  const p0 = await getJson(env.api(), path);
  for (const k of ['userId', 'online', 'sockets', 'nodes']) assert.ok(k in p0, `presence has ${k}: ${JSON.stringify(p0)}`);
  assert.equal(p0.userId, userId);
  assert.equal(p0.online, false);
  assert.equal(socketCount(p0), 0);
  assert.ok(Array.isArray(p0.nodes));
  assert.equal(p0.nodes.length, 0);

  const s = await createSession(env.api(), userId);
  const { socket: a, connected } = await connect(env.clientUrl, { auth: { sessionId: s.sessionId } });
  const { socket: b } = await connect(env.clientUrl, { auth: { sessionId: s.sessionId }, transports: ['polling'] });
  await eventually(async () => {
    const p = await getJson(env.api(), path);
    assert.equal(p.online, true);
    assert.equal(socketCount(p), 2);
    assert.equal(p.nodes.length, 1, `nodes: ${JSON.stringify(p.nodes)}`);
    const n = p.nodes[0];
    const id = typeof n === 'object' && n !== null ? n.id ?? n.nodeId : n;
    assert.equal(String(id), String(connected.nodeId), `nodes names the node the sockets are on: ${JSON.stringify(p.nodes)}`);
  }, 5000);
  a.disconnect();
  await eventually(async () => assert.equal(socketCount(await getJson(env.api(), path)), 1), 5000);
  b.disconnect();
  await eventually(async () => {
    const p = await getJson(env.api(), path);
    assert.equal(p.online, false);
    assert.equal(socketCount(p), 0);
  }, 5000);
});

test('GET /api/stats has totalConnections, uniqueUsers, roomCount, eventsPerMinute, adapter, uptime', async () => {
  const { userId } = await env.connectUser('stats');
  await emit(env.api(), { userId, event: 'trade:executed', data: {} });
  // Cluster-wide counts follow the replicated membership: poll until the connect shows.
  let st;
  await eventually(async () => {
    const raw = await getJson(env.api(), '/api/stats');
    st = clusterStats(raw);
    for (const k of ['totalConnections', 'uniqueUsers', 'roomCount', 'eventsPerMinute', 'adapter', 'uptime']) {
      assert.ok(k in st, `stats has ${k}: ${JSON.stringify(raw).slice(0, 500)}`);
    }
    assert.ok(st.totalConnections >= 1, `totalConnections ${st.totalConnections}`);
    assert.ok(st.uniqueUsers >= 1);
    assert.ok(st.roomCount >= 1);
  }, 5000);
  assert.equal(typeof st.uptime, 'number');
  assert.equal(typeof st.adapter, 'string');
  assert.ok(['number', 'object'].includes(typeof st.eventsPerMinute));
});

test('unknown API paths are 404, not 200', async () => {
  const res = await request(env.api(), 'GET', '/api/nope');
  assert.equal(res.status, 404);
});
