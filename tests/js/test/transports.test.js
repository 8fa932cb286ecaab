'use strict';
// Transports: long-polling only, WebSocket only, polling → WebSocket upgrade.

const assert = require('node:assert/strict');

const { emit } = require('../lib/api');
const { emitWithAck, makeSocket } = require('../lib/client');
const { test, useTopology } = require('../lib/harness');
const { collect, eventually, once, onceArgs } = require('../lib/wait');

const env = useTopology();

async function roundTrip(socket, userId) {
  const ack = await emitWithAck(socket, 'ping', {});
  assert.equal(typeof ack.serverTime, 'number');
  const got = onceArgs(socket, 'trade:executed', 5000);
  await emit(env.api(), { userId, event: 'trade:executed', data: { via: socket.io.engine.transport.name } });
  const [data, meta] = await got;
  assert.equal(data.via, socket.io.engine.transport.name);
  assert.equal(meta.room, `user:${userId}`);
}

test('polling only', async () => {
  const { socket, userId } = await env.connectUser('poll', { transports: ['polling'] });
  assert.equal(socket.io.engine.transport.name, 'polling');
  await roundTrip(socket, userId);
  // many events in a row over polling (several per poll cycle)
  const seen = collect(socket, 'trade:executed');
  await Promise.all(Array.from({ length: 20 }, (_, i) => emit(env.api(), { userId, event: 'trade:executed', data: { i } })));
  await eventually(() => assert.equal(seen.length, 20), 10_000);
  assert.equal(socket.io.engine.transport.name, 'polling');
});

test('websocket only', async () => {
  const { socket, userId } = await env.connectUser('ws', { transports: ['websocket'] });
  assert.equal(socket.io.engine.transport.name, 'websocket');
  await roundTrip(socket, userId);
});

test('default transports: starts polling, upgrades to websocket, keeps working', async () => {
  const { sessionId, userId } = await env.newUser('upgrade');
  const socket = makeSocket(env.clientUrl, { auth: { sessionId } });
  let initial;
  socket.io.once('open', () => {
    initial = socket.io.engine.transport.name;
  });
  await once(socket, 'connected', 10_000);
  assert.equal(initial, 'polling', 'the handshake is made over polling');
  await eventually(() => assert.equal(socket.io.engine.transport.name, 'websocket'), 10_000);
  await roundTrip(socket, userId);
});

test('upgrade does not lose events sent around the switch', async () => {
  const { sessionId, userId } = await env.newUser('upgrade-burst');
  const socket = makeSocket(env.clientUrl, { auth: { sessionId } });
  const seen = collect(socket, 'trade:executed');
  await once(socket, 'connected', 10_000);
  const N = 30;
  const sends = [];
  for (let i = 0; i < N; i++) sends.push(emit(env.api(), { userId, event: 'trade:executed', data: { i } }));
  await Promise.all(sends);
  await eventually(() => assert.equal(seen.length, N), 10_000);
  assert.deepEqual(seen.map(([, m]) => m.offset), Array.from({ length: N }, (_, i) => i + 1));
  await eventually(() => assert.equal(socket.io.engine.transport.name, 'websocket'), 10_000);
});

test('a websocket and a polling socket of one session are two sockets of the same user', async () => {
  const { sessionId, userId } = await env.newUser('both');
  const a = makeSocket(env.clientUrl, { auth: { sessionId }, transports: ['websocket'] });
  const b = makeSocket(env.clientUrl, { auth: { sessionId }, transports: ['polling'] });
  const [ca, cb] = await Promise.all([once(a, 'connected', 10_000), once(b, 'connected', 10_000)]);
  assert.equal(ca.userId, userId);
  assert.equal(cb.userId, userId);
  assert.notEqual(ca.socketId, cb.socketId);
});
