'use strict';
// Binary attachments (Socket.IO BINARY_EVENT / BINARY_ACK).
//
// The contract says binary payloads go through unchanged on every path. The HTTP API is
// JSON and cannot carry binary. The one client-visible echo path is the `ping` ack: the
// server answers { serverTime, echo: <first argument> }, attachments included, so the
// byte-exact round trip is checked through it.

const assert = require('node:assert/strict');

const { emit } = require('../lib/api');
const { emitWithAck } = require('../lib/client');
const { test, useTopology } = require('../lib/harness');
const { once } = require('../lib/wait');

const env = useTopology();

function chartData(n = 256) {
  const f = new Float32Array(n);
  for (let i = 0; i < n; i++) f[i] = Math.sin(i / 10) * 100 + i / 3;
  return f;
}

for (const transports of [['websocket'], ['polling']]) {
  const tn = transports[0];

  test(`${tn}: ping with Buffer and Float32Array attachments is acked {serverTime}`, async () => {
    const { socket } = await env.connectUser(`bin-${tn}`, { transports });
    const bytes = Buffer.from(Array.from({ length: 300 }, (_, i) => i % 256));
    const ack = await emitWithAck(socket, 'ping', { blob: bytes, chart: chartData(), nested: [{ raw: Buffer.alloc(0) }] });
    assert.equal(typeof ack.serverTime, 'number');
    // Two attachments as separate arguments, too.
    const ack2 = await emitWithAck(socket, 'ping', bytes, chartData(8).buffer);
    assert.equal(typeof ack2.serverTime, 'number');
    assert.equal(socket.connected, true, 'the connection survives binary packets');
  });

  test(`${tn}: subscribe:portfolio carrying an extra binary field still confirms`, async () => {
    const { socket, userId } = await env.connectUser(`bin-sub-${tn}`, { transports });
    const ack = await emitWithAck(socket, 'subscribe:portfolio', { attachment: chartData(16) });
    assert.equal(ack.room, `portfolio:${userId}`);
    // The socket still works afterwards: text events flow.
    const got = once(socket, 'portfolio:update', 5000);
    await emit(env.api(), { room: `portfolio:${userId}`, event: 'portfolio:update', data: { ok: true } });
    assert.deepEqual(await got, { ok: true });
  });

  test(`${tn}: an unknown event with a large binary attachment does not break the socket`, async () => {
    const { socket } = await env.connectUser(`bin-unknown-${tn}`, { transports });
    socket.emit('chart:upload', { series: chartData(4096) }); // 16 KiB
    const ack = await emitWithAck(socket, 'ping', {});
    assert.equal(typeof ack.serverTime, 'number');
  });
}

const bytesOf = (x) => {
  if (Buffer.isBuffer(x)) return x;
  if (x instanceof ArrayBuffer) return Buffer.from(x);
  if (ArrayBuffer.isView(x)) return Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  throw new Error(`not binary: ${JSON.stringify(x)}`);
};

for (const transports of [['websocket'], ['polling']]) {
  const tn = transports[0];
  test(`${tn}: binary attachments come back byte for byte (ping ack echo)`, async () => {
    const { socket } = await env.connectUser(`bin-echo-${tn}`, { transports });
    const chart = chartData(1024);
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const payload = { chart, all, nested: { list: [Buffer.from('héllo'), { deep: new Uint8Array([0, 255, 1]) }] }, n: 7, s: 'text' };
    const ack = await emitWithAck(socket, 'ping', payload);
    assert.equal(typeof ack.serverTime, 'number');
    assert.ok(ack.echo, `the ping ack echoes its argument: ${JSON.stringify(ack).slice(0, 300)}`);
    const e = ack.echo;
    assert.ok(bytesOf(e.chart).equals(bytesOf(chart)), 'Float32Array bytes');
    const back = new Float32Array(new Uint8Array(bytesOf(e.chart)).buffer);
    assert.deepEqual(Array.from(back), Array.from(chart), 'Float32Array values');
    assert.ok(bytesOf(e.all).equals(all), 'all 256 byte values');
    assert.ok(bytesOf(e.nested.list[0]).equals(Buffer.from('héllo')));
    assert.ok(bytesOf(e.nested.list[1].deep).equals(Buffer.from([0, 255, 1])));
    assert.equal(e.n, 7);
    assert.equal(e.s, 'text');
  });
}
