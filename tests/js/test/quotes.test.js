'use strict';
// POST /api/quotes → coalesced quote:update to watchlist subscribers.

const assert = require('node:assert/strict');

const { postQuote, request } = require('../lib/api');
const { emitWithAck } = require('../lib/client');
const { assertMeta } = require('../lib/expect');
const { test, useTopology } = require('../lib/harness');
const { collect, eventually, expectNone, sleep } = require('../lib/wait');

const env = useTopology();

test('a burst of quotes is coalesced: fewer updates than posts, the last one wins', async () => {
  const { socket } = await env.connectUser('quotes');
  const symbol = 'QCOAL';
  const ack = await emitWithAck(socket, 'subscribe:watchlist', { symbols: [symbol] });
  assert.deepEqual(ack.rooms, [`watchlist:${symbol}`]);
  const seen = collect(socket, 'quote:update');
  const N = 60;
  const base = env.api();
  for (let i = 1; i <= N; i++) await postQuote(base, symbol, { price: 100 + i, seq: i });
  await eventually(() => {
    assert.ok(seen.length > 0, 'at least one update');
    assert.equal(seen[seen.length - 1][0].quote.seq, N, 'the last value received is the last posted');
  }, 5000);
  await sleep(400); // nothing more than the last value should come
  assert.ok(seen.length < N, `coalesced: received ${seen.length} of ${N}`);
  assert.equal(seen[seen.length - 1][0].quote.seq, N);
  let prevSeq = 0;
  for (const [data, meta] of seen) {
    assert.deepEqual(Object.keys(data).sort(), ['quote', 'symbol', 'timestamp']);
    assert.equal(data.symbol, symbol);
    // The seed sends new Date().toISOString(); milliseconds since 1970 would do as well.
    const ts = typeof data.timestamp === 'number' ? data.timestamp : Date.parse(data.timestamp);
    assert.ok(Number.isFinite(ts) && Math.abs(ts - Date.now()) < 60_000, `timestamp is a time near now: ${data.timestamp}`);
    assert.deepEqual(data.quote, { price: 100 + data.quote.seq, seq: data.quote.seq }, 'quote exactly as posted');
    assert.ok(data.quote.seq > prevSeq, 'updates only move forward');
    prevSeq = data.quote.seq;
    assertMeta(meta, `watchlist:${symbol}`);
  }
});

test('quote updates for one symbol come at most once per throttle interval (100 ms)', async () => {
  const { socket } = await env.connectUser('throttle');
  const symbol = 'QTHR';
  await emitWithAck(socket, 'subscribe:watchlist', { symbols: [symbol] });
  const arrivals = [];
  const released = [];
  socket.on('quote:update', (data) => {
    arrivals.push(Date.now());
    released.push(typeof data.timestamp === 'number' ? data.timestamp : Date.parse(data.timestamp));
  });
  const base = env.api();
  const until = Date.now() + 1200;
  let i = 0;
  while (Date.now() < until) {
    i += 1;
    await postQuote(base, symbol, { seq: i });
  }
  await sleep(400);
  assert.ok(arrivals.length >= 2, `several updates over 1.2 s: ${arrivals.length}`);
  // ~12 intervals of 100 ms in 1.2 s; allow jitter but not a flood.
  assert.ok(arrivals.length <= 20, `at most about one per 100 ms: ${arrivals.length} (posted ${i})`);
  // At most one per 100 ms as the server releases them (`timestamp` is the coalescer's
  // release time): any 500 ms window holds at most 5 updates, plus one for the millisecond
  // rounding of the timestamps. Arrival times are not the measure: in a cluster, a pause on
  // the client's node (e.g. a snapshot) holds one update back until the next arrives with it.
  const gaps = released.slice(1).map((t, k) => t - released[k]);
  for (let k = 0; k < released.length; k++) {
    const inWindow = released.filter((t) => t >= released[k] && t < released[k] + 500).length;
    assert.ok(inWindow <= 6, `${inWindow} updates released within 500 ms from #${k}; gaps ${JSON.stringify(gaps)}`);
  }
});

test('quotes reach only subscribers of that symbol; volatile, not in history', async () => {
  const a = await env.connectUser('qa');
  const b = await env.connectUser('qb');
  await emitWithAck(a.socket, 'subscribe:watchlist', { symbols: ['QONLYA'] });
  await emitWithAck(b.socket, 'subscribe:watchlist', { symbols: ['QONLYB'] });
  const seenA = collect(a.socket, 'quote:update');
  const none = expectNone(b.socket, 'quote:update', 800);
  await postQuote(env.api(), 'QONLYA', { price: 1 });
  await none;
  await eventually(() => assert.equal(seenA.length, 1), 3000);
  const res = await request(env.api(), 'GET', `/api/rooms/${encodeURIComponent('watchlist:QONLYA')}/history`);
  if (res.status === 200) assert.deepEqual(res.body.events, [], 'quotes are volatile: no history');
});

test('POST /api/quotes validates the symbol and needs the API key', async () => {
  for (const symbol of ['aapl', '', 'TOO-LONG-SYMBOL-X', 'A B']) {
    const res = await request(env.api(), 'POST', '/api/quotes', { body: { symbol, quote: { p: 1 } } });
    assert.equal(res.status, 400, `${symbol}: ${res.text}`);
    assert.equal(res.body?.code, 'INVALID_PAYLOAD');
  }
  const missing = await request(env.api(), 'POST', '/api/quotes', { body: { quote: { p: 1 } } });
  assert.equal(missing.status, 400);
  const noKey = await request(env.api(), 'POST', '/api/quotes', { body: { symbol: 'AAPL', quote: 1 }, key: null });
  assert.equal(noKey.status, 401);
});
