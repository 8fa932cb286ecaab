'use strict';
// Recovery with `since`: nothing lost across a reconnect, to the same node or another one.

const assert = require('node:assert/strict');

const { emit, getJson } = require('../lib/api');
const { connect, emitWithAck } = require('../lib/client');
const { assertMeta } = require('../lib/expect');
const { test, useTopology } = require('../lib/harness');
const { collect, eventually, once, sleep } = require('../lib/wait');

const env = useTopology();

/**
 * Receive 1..3 on a first socket, disconnect, emit 4..6, reconnect (to url) and subscribe with
 * since {offset: 3, epoch}. Returns what the new socket saw, in arrival order.
 */
async function scenario({ kind, url }) {
  const first = await env.connectUser(`rec-${kind}`);
  const { userId, sessionId } = first;
  const room = kind === 'trades' ? `user:${userId}` : `portfolio:${userId}`;
  const event = kind === 'trades' ? 'trade:executed' : 'portfolio:update';
  const subscribe = `subscribe:${kind}`;
  const confirmation = `subscribed:${kind}`;

  await emitWithAck(first.socket, subscribe, {});
  const seen1 = collect(first.socket, event);
  for (let i = 1; i <= 3; i++) await emit(env.api(), { room, event, data: { i } });
  await eventually(() => assert.equal(seen1.length, 3), 5000);
  const lastMeta = seen1[2][1];
  assertMeta(lastMeta, room, 3);

  first.socket.disconnect();
  for (let i = 4; i <= 6; i++) await emit(env.api(), { room, event, data: { i } });
  // An emit answers once the API node applied it; in a cluster the node the client connects
  // to may apply it a moment later, and an event it applies after the connect is (rightly)
  // live. This test is about the replay: wait until that node has all six.
  const history = `/api/rooms/${encodeURIComponent(room)}/history?since=3`;
  await eventually(async () => assert.equal((await getJson(url, history)).events.length, 3), 5000);

  const { socket } = await connect(url, { auth: { sessionId } });
  const order = [];
  socket.on(event, (data, meta) => order.push({ kind: 'event', data, meta }));
  socket.on(confirmation, (c) => order.push({ kind: 'confirmation', c }));
  const ack = await emitWithAck(socket, subscribe, { since: { offset: lastMeta.offset, epoch: lastMeta.epoch } });
  await eventually(() => assert.ok(order.some((o) => o.kind === 'confirmation')), 5000);
  await sleep(300); // anything extra would show up here
  return { order, ack, room, epoch: lastMeta.epoch, socket, event };
}

for (const kind of ['trades', 'portfolio']) {
  test(`since on ${kind}: exactly 4,5,6 in order, then recovered:true`, async () => {
    const { order, ack, room, epoch } = await scenario({ kind, url: env.clientUrl });
    const events = order.filter((o) => o.kind === 'event');
    assert.deepEqual(events.map((e) => e.data.i), [4, 5, 6], 'missed events, in order, each once');
    events.forEach((e, k) => assertMeta(e.meta, room, 4 + k));
    assert.equal(order[order.length - 1].kind, 'confirmation', 'confirmation comes after the replay');
    const c = order[order.length - 1].c;
    assert.deepEqual(c, { room, offset: 6, epoch, recovered: true });
    assert.deepEqual(ack, c, 'the ack carries the same confirmation');
  });
}

test('since on trades, reconnecting to another node: exactly 4,5,6 then recovered:true', async () => {
  const { order, room, epoch } = await scenario({ kind: 'trades', url: env.otherClientUrl });
  const events = order.filter((o) => o.kind === 'event');
  assert.deepEqual(events.map((e) => e.data.i), [4, 5, 6]);
  assert.deepEqual(order[order.length - 1].c, { room, offset: 6, epoch, recovered: true });
});

test('live events after the replay continue at the next offset', async () => {
  const { socket, room, event } = await scenario({ kind: 'portfolio', url: env.clientUrl });
  const got = once(socket, event, 5000);
  const seen = collect(socket, event);
  await emit(env.api(), { room, event, data: { i: 7 } });
  await got;
  assertMeta(seen[0][1], room, 7);
});

test('since with a wrong epoch: recovered:false with the current epoch and offset', async () => {
  const { socket, userId } = await env.connectUser('rec-epoch');
  const room = `user:${userId}`;
  const live = collect(socket, 'trade:executed');
  let cur;
  for (let i = 1; i <= 3; i++) cur = await emit(env.api(), { userId, event: 'trade:executed', data: { i } });
  // In a cluster the API node answered once it applied; the client's node has once the
  // socket saw all three live.
  await eventually(() => assert.equal(live.length, 3), 5000);
  const confirmation = once(socket, 'subscribed:trades', 5000);
  const ack = await emitWithAck(socket, 'subscribe:trades', { since: { offset: 1, epoch: 'not-the-epoch' } });
  assert.deepEqual(ack, { room, offset: 3, epoch: cur.epoch, recovered: false });
  assert.deepEqual(await confirmation, ack);
});

test('since ahead of the room: recovered:false with the current offset', async () => {
  const { socket, userId } = await env.connectUser('rec-ahead');
  const live = collect(socket, 'trade:executed');
  const r = await emit(env.api(), { userId, event: 'trade:executed', data: {} });
  await eventually(() => assert.equal(live.length, 1), 5000);
  const ack = await emitWithAck(socket, 'subscribe:trades', { since: { offset: 99, epoch: r.epoch } });
  assert.equal(ack.recovered, false);
  assert.equal(ack.offset, 1);
  assert.equal(ack.epoch, r.epoch);
});

test('since at the current offset: nothing replayed, recovered:true', async () => {
  const { socket, userId } = await env.connectUser('rec-uptodate');
  const seen = collect(socket, 'trade:executed');
  const r = await emit(env.api(), { userId, event: 'trade:executed', data: {} });
  await eventually(() => assert.equal(seen.length, 1), 5000);
  const ack = await emitWithAck(socket, 'subscribe:trades', { since: { offset: r.offset, epoch: r.epoch } });
  assert.deepEqual(ack, { room: `user:${userId}`, offset: 1, epoch: r.epoch, recovered: true });
  await sleep(300);
  assert.equal(seen.length, 1, 'nothing replayed');
});

test('since offset 0 of the current epoch replays all that is retained', async () => {
  const { socket, userId } = await env.connectUser('rec-zero');
  const seen = collect(socket, 'trade:executed');
  const r = await emit(env.api(), { userId, event: 'trade:executed', data: { i: 1 } });
  await emit(env.api(), { userId, event: 'trade:executed', data: { i: 2 } });
  await eventually(() => assert.equal(seen.length, 2), 5000);
  seen.length = 0;
  const ack = await emitWithAck(socket, 'subscribe:trades', { since: { offset: 0, epoch: r.epoch } });
  assert.deepEqual(seen.map(([d]) => d.i), [1, 2]);
  assert.deepEqual(ack, { room: `user:${userId}`, offset: 2, epoch: r.epoch, recovered: true });
});
