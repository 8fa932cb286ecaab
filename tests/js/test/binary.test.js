'use strict';
// Binary attachments (Socket.IO BINARY_EVENT / BINARY_ACK).
//
// The contract says binary payloads go through unchanged on every path. The HTTP API is
// JSON and cannot carry binary, and no client event is echoed back to its sender, so what a
// client can check today is that binary packets it sends are parsed and answered. The
// byte-exact round trip is a TODO until the lead names a client-visible echo path.

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

test.todo('binary: byte-exact echo of a Float32Array/Buffer back to the client (needs a client-visible echo path from the lead)');
