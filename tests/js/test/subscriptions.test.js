'use strict';
// subscribe:* / unsubscribe:* — confirmations as events and as acks, symbol validation.

const assert = require('node:assert/strict');

const { emit, postQuote } = require('../lib/api');
const { emitWithAck } = require('../lib/client');
const { assertAckError, assertErrorObject, assertMeta } = require('../lib/expect');
const { test, useTopology } = require('../lib/harness');
const { expectNone, once, onceArgs } = require('../lib/wait');

const env = useTopology();

/** Emit with an ack and also catch the confirmation event; both must carry the same object. */
async function confirmBoth(socket, event, confirmation, payload) {
  const asEvent = once(socket, confirmation, 5000);
  const ack = payload === undefined ? await emitWithAck(socket, event) : await emitWithAck(socket, event, payload);
  const ev = await asEvent;
  assert.deepEqual(ack, ev, `${event}: the ack gets the same object as the ${confirmation} event`);
  return ev;
}

test('subscribe:portfolio → subscribed:portfolio {room, offset, epoch, recovered}, event and ack alike', async () => {
  const { socket, userId } = await env.connectUser('pf');
  const c = await confirmBoth(socket, 'subscribe:portfolio', 'subscribed:portfolio', {});
  assert.deepEqual(Object.keys(c).sort(), ['epoch', 'offset', 'recovered', 'room']);
  assert.equal(c.room, `portfolio:${userId}`);
  assert.equal(c.offset, 0, 'a room with no events is at offset 0');
  assert.equal(typeof c.epoch, 'string');
  assert.equal(typeof c.recovered, 'boolean');
});

test('subscribe:portfolio without a payload or ack still confirms by event', async () => {
  const { socket, userId } = await env.connectUser('pf-noack');
  const ev = once(socket, 'subscribed:portfolio', 5000);
  socket.emit('subscribe:portfolio');
  assert.equal((await ev).room, `portfolio:${userId}`);
});

test('subscribe:watchlist → subscribed:watchlist {symbols, rooms}, event and ack alike', async () => {
  const { socket } = await env.connectUser('wl');
  const symbols = ['AAPL', 'MSFT', 'BRK.B', 'BF-B', '7203', 'ABCDEFGHIJKLMNO'];
  const c = await confirmBoth(socket, 'subscribe:watchlist', 'subscribed:watchlist', { symbols });
  assert.deepEqual(Object.keys(c).sort(), ['rooms', 'symbols']);
  assert.deepEqual([...c.symbols].sort(), [...symbols].sort());
  assert.deepEqual([...c.rooms].sort(), symbols.map((s) => `watchlist:${s}`).sort());
});

test('subscribe:trades → subscribed:trades {room: user:<id>, offset, epoch, recovered}, event and ack alike', async () => {
  const { socket, userId } = await env.connectUser('tr');
  const got = once(socket, 'trade:executed', 5000);
  await emit(env.api(), { userId, event: 'trade:executed', data: { n: 1 } });
  await got;
  const c = await confirmBoth(socket, 'subscribe:trades', 'subscribed:trades', {});
  assert.deepEqual(Object.keys(c).sort(), ['epoch', 'offset', 'recovered', 'room']);
  assert.equal(c.room, `user:${userId}`);
  assert.equal(c.offset, 1);
  assert.equal(typeof c.epoch, 'string');
});

test('unsubscribe:portfolio → unsubscribed:portfolio {room}; updates stop', async () => {
  const { socket, userId } = await env.connectUser('pf-un');
  await confirmBoth(socket, 'subscribe:portfolio', 'subscribed:portfolio', {});
  const room = `portfolio:${userId}`;
  const got = onceArgs(socket, 'portfolio:update', 5000);
  await emit(env.api(), { room, event: 'portfolio:update', data: { v: 1 } });
  const [data, meta] = await got;
  assert.deepEqual(data, { v: 1 });
  assertMeta(meta, room, 1);

  const c = await confirmBoth(socket, 'unsubscribe:portfolio', 'unsubscribed:portfolio');
  assert.deepEqual(c, { room });
  await emit(env.api(), { room, event: 'portfolio:update', data: { v: 2 } });
  await expectNone(socket, 'portfolio:update', 700);
});

test('unsubscribe:watchlist → unsubscribed:watchlist {symbols}; quotes for them stop, others continue', async () => {
  const { socket } = await env.connectUser('wl-un');
  await confirmBoth(socket, 'subscribe:watchlist', 'subscribed:watchlist', { symbols: ['UNSA', 'UNSB'] });
  const c = await confirmBoth(socket, 'unsubscribe:watchlist', 'unsubscribed:watchlist', { symbols: ['UNSA'] });
  assert.deepEqual(c, { symbols: ['UNSA'] });
  const seen = [];
  socket.on('quote:update', (q) => seen.push(q.symbol));
  await postQuote(env.api(), 'UNSA', { price: 1 });
  await postQuote(env.api(), 'UNSB', { price: 2 });
  const q = await once(socket, 'quote:update', 5000);
  assert.equal(q.symbol, 'UNSB');
  await expectNone(socket, 'quote:update', 500);
  assert.deepEqual(seen, ['UNSB']);
});

const badSymbols = [
  ['lowercase', ['aapl']],
  ['mixed case', ['Aapl']],
  ['empty', ['']],
  ['16 characters', ['ABCDEFGHIJKLMNOP']],
  ['space', ['AA PL']],
  ['colon (room injection)', ['AAPL:X']],
  ['foreign room name', ['user:someone']],
  ['not a string', [42]],
  ['one bad among good', ['AAPL', 'msft']],
];
for (const [what, symbols] of badSymbols) {
  test(`subscribe:watchlist rejects a symbol (${what}) with INVALID_PAYLOAD, as error event and ack`, async () => {
    const { socket } = await env.connectUser('badsym');
    const errEv = once(socket, 'error', 5000);
    const ack = await emitWithAck(socket, 'subscribe:watchlist', { symbols });
    assertAckError(ack, 'INVALID_PAYLOAD');
    const e = await errEv;
    assertErrorObject(e, 'INVALID_PAYLOAD');
    if (e.event !== undefined) assert.equal(e.event, 'subscribe:watchlist');
    await expectNone(socket, 'subscribed:watchlist', 300);
  });
}

for (const [what, payload] of [
  ['no payload', undefined],
  ['symbols missing', {}],
  ['symbols not an array', { symbols: 'AAPL' }],
  ['payload a string', 'AAPL'],
]) {
  test(`subscribe:watchlist with ${what} → INVALID_PAYLOAD`, async () => {
    const { socket } = await env.connectUser('badwl');
    const errEv = once(socket, 'error', 5000);
    const ack =
      payload === undefined
        ? await emitWithAck(socket, 'subscribe:watchlist')
        : await emitWithAck(socket, 'subscribe:watchlist', payload);
    assertAckError(ack, 'INVALID_PAYLOAD');
    assertErrorObject(await errEv, 'INVALID_PAYLOAD');
  });
}

test('an invalid symbol is rejected without an ack too (error event only)', async () => {
  const { socket } = await env.connectUser('badsym-noack');
  const errEv = once(socket, 'error', 5000);
  socket.emit('subscribe:watchlist', { symbols: ['aapl'] });
  assertErrorObject(await errEv, 'INVALID_PAYLOAD');
});

test('a bad since is INVALID_PAYLOAD', async () => {
  const { socket } = await env.connectUser('badsince');
  const ack = await emitWithAck(socket, 'subscribe:portfolio', { since: { offset: 'three', epoch: 7 } });
  assertAckError(ack, 'INVALID_PAYLOAD');
});
