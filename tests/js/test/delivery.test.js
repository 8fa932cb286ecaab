'use strict';
// Server → client delivery: (data, meta), gapless offsets, volatile events.

const assert = require('node:assert/strict');

const { emit, getJson } = require('../lib/api');
const { connect, emitWithAck } = require('../lib/client');
const { assertMeta } = require('../lib/expect');
const { test, useTopology } = require('../lib/harness');
const { collect, eventually, expectNone, onceArgs } = require('../lib/wait');

const env = useTopology();

test('trade:executed via /api/emit {userId}: data exactly as posted, meta {room, offset, epoch, ts}', async () => {
  const { socket, userId } = await env.connectUser('trader');
  const data = {
    tradeId: 't-1',
    symbol: 'AAPL',
    side: 'buy',
    qty: 10,
    price: 189.27,
    nested: { deep: [1, 'two', { three: 3 }], empty: {}, none: null, yes: true },
    unicode: 'µ €  日本 \u0000 "quoted" \\ slash',
    big: 9007199254740991,
    negative: -0.5,
  };
  const got = onceArgs(socket, 'trade:executed', 5000);
  const res = await emit(env.api(), { userId, event: 'trade:executed', data });
  assert.deepEqual(Object.keys(res).sort(), ['epoch', 'offset', 'room']);
  assert.equal(res.room, `user:${userId}`);
  assert.equal(res.offset, 1);
  const [gotData, meta] = await got;
  assert.deepEqual(gotData, data);
  assertMeta(meta, `user:${userId}`, 1);
  assert.equal(meta.epoch, res.epoch);
});

test('portfolio:update via /api/emit {room: portfolio:<id>} reaches subscribers only', async () => {
  const sub = await env.connectUser('pf');
  const room = `portfolio:${sub.userId}`;
  // Same user, second device, not subscribed to the portfolio.
  const { connect } = require('../lib/client');
  const { socket: other } = await connect(env.clientUrl, { auth: { sessionId: sub.sessionId } });
  await emitWithAck(sub.socket, 'subscribe:portfolio', {});
  const got = onceArgs(sub.socket, 'portfolio:update', 5000);
  const notOther = expectNone(other, 'portfolio:update', 1000);
  const data = { totalValue: 12345.67, positions: [{ symbol: 'AAPL', qty: 3 }] };
  const res = await emit(env.api(), { room, event: 'portfolio:update', data });
  assert.equal(res.room, room);
  assert.equal(res.offset, 1);
  const [d, meta] = await got;
  assert.deepEqual(d, data);
  assertMeta(meta, room, 1);
  await notOther;
});

test('every socket of a user gets its trades (user:<id> holds all of them)', async () => {
  const first = await env.connectUser('multi');
  const { socket: ws2 } = await connect(env.clientUrl, { auth: { sessionId: first.sessionId }, transports: ['polling'] });
  const a = onceArgs(first.socket, 'trade:executed', 5000);
  const b = onceArgs(ws2, 'trade:executed', 5000);
  await emit(env.api(), { userId: first.userId, event: 'trade:executed', data: { id: 1 } });
  const [[da, ma], [db, mb]] = await Promise.all([a, b]);
  assert.deepEqual(da, { id: 1 });
  assert.deepEqual(db, { id: 1 });
  assert.deepEqual(ma, mb);
});

test('offsets count from 1 without gaps per room, delivered in order, under concurrent emits', async () => {
  const { socket, userId } = await env.connectUser('gapless');
  const room = `user:${userId}`;
  const seen = collect(socket, 'trade:executed');
  const N = 30;
  const answers = await Promise.all(
    Array.from({ length: N }, (_, i) => emit(env.api(), { userId, event: 'trade:executed', data: { i } })),
  );
  assert.deepEqual(
    answers.map((a) => a.offset).sort((x, y) => x - y),
    Array.from({ length: N }, (_, i) => i + 1),
    'HTTP answers hold offsets 1..N, each once',
  );
  await eventually(() => assert.equal(seen.length, N), 10_000);
  const offsets = seen.map(([, meta]) => meta.offset);
  assert.deepEqual(offsets, Array.from({ length: N }, (_, i) => i + 1), 'delivered in offset order 1..N');
  for (const [data, meta] of seen) {
    assertMeta(meta, room);
    const answer = answers[data.i];
    assert.equal(answer.offset, meta.offset, `event ${data.i}: delivered offset equals the HTTP answer`);
    assert.equal(answer.epoch, meta.epoch);
  }
  // A second room counts on its own, from 1.
  await emitWithAck(socket, 'subscribe:portfolio', {});
  const pf = onceArgs(socket, 'portfolio:update', 5000);
  const r = await emit(env.api(), { room: `portfolio:${userId}`, event: 'portfolio:update', data: {} });
  assert.equal(r.offset, 1);
  assertMeta((await pf)[1], `portfolio:${userId}`, 1);
});

test('any other event name and any JSON data go through unchanged', async () => {
  const { socket, userId } = await env.connectUser('other');
  const room = `user:${userId}`;
  const samples = [
    ['order:filled', { a: 1 }],
    ['notification', 'a plain string'],
    ['list', [1, 2, { three: [3] }]],
    ['number', 42.5],
    ['flag', false],
    ['empty-object', {}],
  ];
  let offset = 0;
  for (const [event, data] of samples) {
    const got = onceArgs(socket, event, 5000);
    await emit(env.api(), { userId, event, data });
    offset += 1;
    const [d, meta] = await got;
    assert.deepEqual(d, data, `${event}: data`);
    assertMeta(meta, room, offset);
  }
});

test('volatile emit (durable:false) carries the current offset without advancing it', async () => {
  const { socket, userId } = await env.connectUser('volatile');
  const room = `user:${userId}`;
  const seen = collect(socket, 'trade:executed');
  const ticks = collect(socket, 'price:tick');
  await emit(env.api(), { userId, event: 'trade:executed', data: { n: 1 } });
  await emit(env.api(), { userId, event: 'trade:executed', data: { n: 2 } });
  const v = await emit(env.api(), { userId, event: 'price:tick', data: { p: 1 }, durable: false });
  assert.equal(v.room, room);
  assert.equal(v.offset, 2, 'volatile answer: current offset');
  await eventually(() => assert.equal(ticks.length, 1), 5000);
  const [tickData, tickMeta] = ticks[0];
  assert.deepEqual(tickData, { p: 1 });
  assertMeta(tickMeta, room, 2);
  const d3 = await emit(env.api(), { userId, event: 'trade:executed', data: { n: 3 } });
  assert.equal(d3.offset, 3, 'next durable event continues at 3');
  await eventually(() => assert.equal(seen.length, 3), 5000);
  assert.deepEqual(seen.map(([, m]) => m.offset), [1, 2, 3]);
  // The volatile event is not in the history.
  const h = await getJson(env.api(), `/api/rooms/${encodeURIComponent(room)}/history`);
  assert.deepEqual(h.events.map((e) => e.event), ['trade:executed', 'trade:executed', 'trade:executed']);
});

test('durable events carry the recovery offset as a last string argument (native recovery)', async () => {
  const { socket, userId } = await env.connectUser('pid');
  const got = onceArgs(socket, 'trade:executed', 5000);
  await emit(env.api(), { userId, event: 'trade:executed', data: { z: 1 } });
  const args = await got;
  assert.equal(args.length, 3, `args: ${JSON.stringify(args)}`);
  assert.equal(typeof args[2], 'string', 'third argument is the recovery offset string');
  assert.ok(socket._pid, 'CONNECT answer carried a pid');
});
