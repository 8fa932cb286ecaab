'use strict';
// --history-size bounds what recovery can give back.

const assert = require('node:assert/strict');

const { emit, getJson } = require('../lib/api');
const { emitWithAck } = require('../lib/client');
const { test, useTopology } = require('../lib/harness');
const { collect, eventually, sleep } = require('../lib/wait');

const env = useTopology({ extraArgs: ['--history-size', '5'] });

test('with --history-size 5: history keeps the last 5; since before them → recovered:false', async () => {
  const { socket, userId } = await env.connectUser('ret');
  const room = `user:${userId}`;
  const seen = collect(socket, 'trade:executed');
  let r;
  for (let i = 1; i <= 8; i++) r = await emit(env.api(), { userId, event: 'trade:executed', data: { i } });
  assert.equal(r.offset, 8);
  // 200 means applied on the answering node; in a cluster the others follow shortly.
  await eventually(async () => {
    const h = await getJson(env.api(), `/api/rooms/${encodeURIComponent(room)}/history`);
    assert.deepEqual(h.events.map((e) => e.offset), [4, 5, 6, 7, 8]);
  }, 3000);
  // The client's node has applied all 8 once the socket saw them live.
  await eventually(() => assert.equal(seen.length, 8), 5000);
  seen.length = 0;
  const lost = await emitWithAck(socket, 'subscribe:trades', { since: { offset: 2, epoch: r.epoch } });
  assert.deepEqual(lost, { room, offset: 8, epoch: r.epoch, recovered: false });
  await sleep(300);
  assert.equal(seen.length, 0, 'recovered:false replays nothing: the client reloads instead');

  const ok = await emitWithAck(socket, 'subscribe:trades', { since: { offset: 3, epoch: r.epoch } });
  assert.deepEqual(ok, { room, offset: 8, epoch: r.epoch, recovered: true });
  await eventually(() => assert.deepEqual(seen.map(([d]) => d.i), [4, 5, 6, 7, 8]), 3000);
});
