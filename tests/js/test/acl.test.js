'use strict';
// A client can never receive another user's trades or portfolio.

const assert = require('node:assert/strict');

const { emit } = require('../lib/api');
const { emitWithAck } = require('../lib/client');
const { test, useTopology } = require('../lib/harness');
const { expectNone, once, sleep } = require('../lib/wait');

const env = useTopology();

test("a user's trades reach only that user's sockets", async () => {
  const alice = await env.connectUser('alice');
  const bob = await env.connectUser('bob');
  const bobGot = once(bob.socket, 'trade:executed', 5000);
  const aliceSees = expectNone(alice.socket, 'trade:executed', 1000);
  await emit(env.api(), { userId: bob.userId, event: 'trade:executed', data: { secret: 'bob' } });
  assert.deepEqual(await bobGot, { secret: 'bob' });
  await aliceSees;
});

test('subscribe:portfolio naming someone else still joins only your own portfolio', async () => {
  const alice = await env.connectUser('alice');
  const bob = await env.connectUser('bob');
  await emitWithAck(bob.socket, 'subscribe:portfolio', {});
  const attempts = [
    { userId: bob.userId },
    { room: `portfolio:${bob.userId}` },
    { user: bob.userId, room: `user:${bob.userId}` },
  ];
  for (const payload of attempts) {
    const ack = await emitWithAck(alice.socket, 'subscribe:portfolio', payload);
    if (ack && ack.error) {
      assert.ok(['FORBIDDEN', 'INVALID_PAYLOAD'].includes(ack.error.code), JSON.stringify(ack));
    } else {
      assert.equal(ack.room, `portfolio:${alice.userId}`, `confirmation names alice's own room: ${JSON.stringify(ack)}`);
    }
  }
  const aliceSees = expectNone(alice.socket, 'portfolio:update', 1000);
  const bobGot = once(bob.socket, 'portfolio:update', 5000);
  await emit(env.api(), { room: `portfolio:${bob.userId}`, event: 'portfolio:update', data: { cash: 1 } });
  await bobGot;
  await aliceSees;
});

test('subscribe:trades with a foreign since or room replays nothing of another user', async () => {
  const alice = await env.connectUser('alice');
  const bob = await env.connectUser('bob');
  const r = await emit(env.api(), { userId: bob.userId, event: 'trade:executed', data: { t: 1 } });
  await emit(env.api(), { userId: bob.userId, event: 'trade:executed', data: { t: 2 } });
  const noTrades = expectNone(alice.socket, 'trade:executed', 1000);
  const ack = await emitWithAck(alice.socket, 'subscribe:trades', {
    since: { offset: 0, epoch: r.epoch },
    room: `user:${bob.userId}`,
    userId: bob.userId,
  });
  if (!ack.error) assert.equal(ack.room, `user:${alice.userId}`);
  await noTrades;
});

test('generic join-style events naming foreign rooms do not join them', async () => {
  const alice = await env.connectUser('alice');
  const bob = await env.connectUser('bob');
  for (const ev of ['join', 'subscribe', 'joinRoom', 'subscribe:room', 'subscribe:user']) {
    alice.socket.emit(ev, { room: `user:${bob.userId}` });
    alice.socket.emit(ev, `portfolio:${bob.userId}`);
  }
  // Symbols cannot name a user room either (they must match ^[A-Z0-9.\-]{1,15}$).
  const wl = await emitWithAck(alice.socket, 'subscribe:watchlist', { symbols: [`user:${bob.userId}`] });
  assert.equal(wl.error?.code, 'INVALID_PAYLOAD', JSON.stringify(wl));
  await sleep(300);
  const aliceSees = expectNone(alice.socket, 'trade:executed', 1000);
  const aliceSeesPf = expectNone(alice.socket, 'portfolio:update', 1000);
  await emit(env.api(), { userId: bob.userId, event: 'trade:executed', data: { x: 1 } });
  await emit(env.api(), { room: `portfolio:${bob.userId}`, event: 'portfolio:update', data: { x: 1 } });
  await aliceSees;
  await aliceSeesPf;
  assert.equal(alice.socket.connected, true);
});

test('a JWT cannot be used to join another user: sub decides the rooms', async () => {
  const { signHs256, nowSec } = require('../lib/jwt');
  const { JWT_SECRET } = require('../lib/server');
  const { connect } = require('../lib/client');
  const bob = await env.connectUser('bob');
  const token = signHs256({ sub: `mallory-${Date.now()}`, exp: nowSec() + 600 }, JWT_SECRET);
  const { socket: mallory } = await connect(env.clientUrl, { auth: { token, userId: bob.userId, sessionId: undefined } });
  const none = expectNone(mallory, 'trade:executed', 1000);
  await emit(env.api(), { userId: bob.userId, event: 'trade:executed', data: { x: 2 } });
  await none;
});
