'use strict';
// Rate limits and subscription limits: every request is answered, never silently dropped.

const assert = require('node:assert/strict');

const { emitWithAck } = require('../lib/client');
const { assertAckError, assertErrorObject } = require('../lib/expect');
const { test, useTopology } = require('../lib/harness');
const { collect, eventually, sleep, withTimeout } = require('../lib/wait');

const env = useTopology();

test('flooding subscribe events: some get RATE_LIMIT with retryAfterMs, none is silently dropped', async () => {
  const { socket, userId } = await env.connectUser('flood');
  const confirmations = collect(socket, 'subscribed:portfolio');
  const errors = collect(socket, 'error');
  const N = 500;
  const acks = await withTimeout(
    Promise.all(Array.from({ length: N }, () => socket.timeout(15_000).emitWithAck('subscribe:portfolio', {}))),
    20_000,
    `${N} acks`,
  );
  assert.equal(acks.length, N, 'every emit got an ack');
  const ok = acks.filter((a) => !a.error);
  const limited = acks.filter((a) => a.error);
  for (const a of ok) assert.equal(a.room, `portfolio:${userId}`);
  for (const a of limited) {
    assertAckError(a, 'RATE_LIMIT');
    assert.equal(typeof a.error.retryAfterMs, 'number', `retryAfterMs: ${JSON.stringify(a)}`);
    assert.ok(a.error.retryAfterMs > 0);
  }
  assert.ok(limited.length > 0, `flood of ${N} was rate limited (ok=${ok.length})`);
  assert.ok(ok.length > 0, 'the first ones went through');
  // The events mirror the acks one for one.
  await eventually(() => {
    assert.equal(confirmations.length, ok.length, 'one subscribed:portfolio event per successful ack');
    assert.equal(errors.length, limited.length, 'one error event per refused ack');
  }, 5000);
  for (const [e] of errors) {
    assertErrorObject(e, 'RATE_LIMIT');
    assert.equal(typeof e.retryAfterMs, 'number');
  }
  // After waiting as told, subscribing works again.
  const wait = Math.max(...limited.map((a) => a.error.retryAfterMs));
  assert.ok(wait <= 120_000, `retryAfterMs is sane: ${wait}`);
  if (wait <= 20_000) {
    await sleep(wait + 100);
    const again = await emitWithAck(socket, 'subscribe:portfolio', {});
    assert.equal(again.room, `portfolio:${userId}`, JSON.stringify(again));
  }
  assert.equal(socket.connected, true, 'a rate-limited client is not kicked');
});

test('more than 50 symbols in one subscribe → SUBSCRIPTION_LIMIT; 50 is fine', async () => {
  const { socket } = await env.connectUser('sublimit');
  const symbols = (n, p) => Array.from({ length: n }, (_, i) => `${p}${i}`);
  const errEv = new Promise((resolve) => socket.once('error', resolve));
  const ack = await emitWithAck(socket, 'subscribe:watchlist', { symbols: symbols(51, 'S') });
  assertAckError(ack, 'SUBSCRIPTION_LIMIT');
  assertErrorObject(await withTimeout(errEv, 5000, 'error event'), 'SUBSCRIPTION_LIMIT');

  const { socket: s2 } = await env.connectUser('sublimit-ok');
  const fifty = await emitWithAck(s2, 'subscribe:watchlist', { symbols: symbols(50, 'F') });
  assert.ok(!fifty.error, JSON.stringify(fifty));
  assert.equal(fifty.rooms.length, 50);
});

test('the symbol limit is cumulative: 40 then 11 more → SUBSCRIPTION_LIMIT; after unsubscribing, room again', async () => {
  const { socket } = await env.connectUser('sublimit-cum');
  const symbols = (n, p) => Array.from({ length: n }, (_, i) => `${p}${i}`);
  const first = await emitWithAck(socket, 'subscribe:watchlist', { symbols: symbols(40, 'C') });
  assert.ok(!first.error, JSON.stringify(first));
  const second = await emitWithAck(socket, 'subscribe:watchlist', { symbols: symbols(11, 'D') });
  assertAckError(second, 'SUBSCRIPTION_LIMIT');
  // Re-subscribing to symbols already held costs nothing.
  const again = await emitWithAck(socket, 'subscribe:watchlist', { symbols: symbols(40, 'C') });
  assert.ok(!again.error, JSON.stringify(again));
  await emitWithAck(socket, 'unsubscribe:watchlist', { symbols: symbols(10, 'C') });
  const third = await emitWithAck(socket, 'subscribe:watchlist', { symbols: symbols(10, 'D') });
  assert.ok(!third.error, JSON.stringify(third));
});
