'use strict';
// Socket.IO's own connection state recovery ({pid, offset}), with no client code.

const assert = require('node:assert/strict');

const { emit } = require('../lib/api');
const { emitWithAck, makeSocket } = require('../lib/client');
const { test, useTopology } = require('../lib/harness');
const { collect, eventually, once, onceArgs, sleep } = require('../lib/wait');

const env = useTopology();

async function connectedSocket(url, opts) {
  const socket = makeSocket(url, opts);
  await once(socket, 'connect', 10_000);
  return socket;
}

test('transport closed: the client reconnects by itself, socket.recovered, missed durable events arrive', async () => {
  const { userId, sessionId } = await env.newUser('native');
  const socket = await connectedSocket(env.clientUrl, {
    auth: { sessionId },
    transports: ['websocket'],
    reconnection: true,
    reconnectionDelay: 1500,
    reconnectionDelayMax: 1500,
    randomizationFactor: 0,
  });
  const firstId = socket.id;
  assert.ok(socket._pid, 'the CONNECT answer carries a pid');
  await emitWithAck(socket, 'subscribe:portfolio', {});
  const trades = collect(socket, 'trade:executed');
  const portfolio = collect(socket, 'portfolio:update');
  await emit(env.api(), { userId, event: 'trade:executed', data: { n: 1 } });
  await eventually(() => assert.equal(trades.length, 1), 5000);

  const disconnected = onceArgs(socket, 'disconnect', 5000);
  socket.io.engine.close();
  const [reason] = await disconnected;
  // engine.close() from the client side is reported as "forced close"; the server sees a
  // transport close and keeps the state for --recovery-window.
  assert.ok(['forced close', 'transport close'].includes(reason), reason);

  const t0 = Date.now();
  await emit(env.api(), { userId, event: 'trade:executed', data: { n: 2 } });
  await emit(env.api(), { userId, event: 'trade:executed', data: { n: 3 } });
  await emit(env.api(), { room: `portfolio:${userId}`, event: 'portfolio:update', data: { v: 1 } });
  const emitMs = Date.now() - t0;
  assert.equal(socket.connected, false, `emits (${emitMs} ms) finished while the client was still away`);

  await once(socket, 'connect', 10_000);
  assert.equal(socket.recovered, true, 'socket.recovered');
  const idAfter = socket.id;
  await eventually(() => {
    assert.deepEqual(trades.map(([d]) => d.n), [1, 2, 3]);
    assert.deepEqual(portfolio.map(([d]) => d.v), [1]);
  }, 5000);
  assert.deepEqual(trades.map(([, m]) => m.offset), [1, 2, 3]);

  // The rooms came back without subscribing again.
  await emit(env.api(), { room: `portfolio:${userId}`, event: 'portfolio:update', data: { v: 2 } });
  await eventually(() => assert.deepEqual(portfolio.map(([d]) => d.v), [1, 2]), 5000);
  // Socket.IO restores the id with the rooms (checked last so the rest is reported first).
  assert.equal(idAfter, firstId, 'a recovered socket keeps its id');
});

test('native recovery to another node of the cluster (same node when single)', async () => {
  const { userId, sessionId } = await env.newUser('native-x');
  const socket = await connectedSocket(env.clientUrl, { auth: { sessionId }, transports: ['websocket'] });
  const trades = collect(socket, 'trade:executed');
  await emit(env.api(), { userId, event: 'trade:executed', data: { n: 1 } });
  await eventually(() => assert.equal(trades.length, 1), 5000);
  const disconnected = once(socket, 'disconnect', 5000);
  socket.io.engine.close();
  await disconnected;
  await emit(env.api(), { userId, event: 'trade:executed', data: { n: 2 } });
  // Point the same Manager at the other node and reconnect by hand (reconnection is off).
  socket.io.uri = env.otherClientUrl;
  socket.io.opts.hostname = new URL(env.otherClientUrl).hostname;
  socket.io.opts.port = new URL(env.otherClientUrl).port;
  socket.connect();
  await once(socket, 'connect', 10_000);
  assert.equal(socket.recovered, true);
  await eventually(() => assert.deepEqual(trades.map(([d]) => d.n), [1, 2]), 5000);
});

test('a client disconnecting on purpose is not recovered', async () => {
  const { sessionId } = await env.newUser('native-bye');
  const socket = await connectedSocket(env.clientUrl, { auth: { sessionId }, transports: ['websocket'] });
  const pid = socket._pid;
  socket.disconnect();
  await sleep(200);
  socket.connect();
  await once(socket, 'connect', 10_000);
  assert.equal(socket.recovered, false, 'an explicit disconnect drops the state');
  assert.ok(pid);
});

test('polling transport: recovery works too', async () => {
  const { userId, sessionId } = await env.newUser('native-poll');
  const socket = await connectedSocket(env.clientUrl, { auth: { sessionId }, transports: ['polling'] });
  const trades = collect(socket, 'trade:executed');
  await emit(env.api(), { userId, event: 'trade:executed', data: { n: 1 } });
  await eventually(() => assert.equal(trades.length, 1), 5000);
  const disconnected = once(socket, 'disconnect', 5000);
  socket.io.engine.close();
  await disconnected;
  await emit(env.api(), { userId, event: 'trade:executed', data: { n: 2 } });
  socket.connect();
  await once(socket, 'connect', 10_000);
  assert.equal(socket.recovered, true);
  await eventually(() => assert.deepEqual(trades.map(([d]) => d.n), [1, 2]), 5000);
});
