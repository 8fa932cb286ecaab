'use strict';
// SIGTERM: server:shutdown to every socket, then disconnect, then exit in time.
// Runs last in its file: it stops the node the clients are on.

const assert = require('node:assert/strict');

const { emitWithAck } = require('../lib/client');
const { test, useTopology } = require('../lib/harness');
const { onceArgs, withTimeout } = require('../lib/wait');

const env = useTopology();
const SHUTDOWN_TIMEOUT_MS = 10_000; // the contract's default --shutdown-timeout
const EXIT_SLACK_MS = 3000;

test('SIGTERM: clients get server:shutdown {reason, reconnectAfterMs} then disconnect; the process exits in time', async () => {
  const ws = await env.connectUser('bye-ws', { transports: ['websocket'] });
  const poll = await env.connectUser('bye-poll', { transports: ['polling'] });
  await emitWithAck(ws.socket, 'subscribe:portfolio', {});

  const order = [];
  for (const [name, s] of [['ws', ws.socket], ['poll', poll.socket]]) {
    s.on('server:shutdown', () => order.push(`${name}:shutdown`));
    s.on('disconnect', () => order.push(`${name}:disconnect`));
  }
  const shutdownWs = onceArgs(ws.socket, 'server:shutdown', 5000);
  const shutdownPoll = onceArgs(poll.socket, 'server:shutdown', 5000);
  const goneWs = onceArgs(ws.socket, 'disconnect', SHUTDOWN_TIMEOUT_MS + EXIT_SLACK_MS);
  const gonePoll = onceArgs(poll.socket, 'disconnect', SHUTDOWN_TIMEOUT_MS + EXIT_SLACK_MS);

  const node = env.clientNode;
  const t0 = Date.now();
  node.signal('SIGTERM');

  for (const [data] of [await shutdownWs, await shutdownPoll]) {
    assert.equal(typeof data.reason, 'string', JSON.stringify(data));
    assert.ok(data.reason.length > 0);
    assert.equal(typeof data.reconnectAfterMs, 'number', JSON.stringify(data));
    assert.ok(data.reconnectAfterMs >= 0);
  }
  await goneWs;
  await gonePoll;
  assert.ok(order.indexOf('ws:shutdown') < order.indexOf('ws:disconnect'), order.join(','));
  assert.ok(order.indexOf('poll:shutdown') < order.indexOf('poll:disconnect'), order.join(','));

  const exit = await withTimeout(node.exited, SHUTDOWN_TIMEOUT_MS + EXIT_SLACK_MS, 'process exit after SIGTERM');
  const took = Date.now() - t0;
  assert.ok(took <= SHUTDOWN_TIMEOUT_MS + EXIT_SLACK_MS, `exited after ${took} ms`);
  assert.equal(exit.signal, null, `exited by itself, not killed: ${JSON.stringify(exit)}`);
  assert.equal(exit.code, 0, `clean exit code: ${JSON.stringify(exit)}`);
});

test('SIGINT is a graceful stop too: server:shutdown, disconnect, exit 0', async () => {
  const { startServer } = require('../lib/server');
  const { createSession, uid } = require('../lib/api');
  const { connect } = require('../lib/client');
  const node = await startServer([], { name: 'sigint' });
  try {
    const s = await createSession(node.base, uid('sigint'));
    const { socket } = await connect(node.base, { auth: { sessionId: s.sessionId } });
    const shutdown = onceArgs(socket, 'server:shutdown', 5000);
    const gone = onceArgs(socket, 'disconnect', SHUTDOWN_TIMEOUT_MS + EXIT_SLACK_MS);
    node.signal('SIGINT');
    const [data] = await shutdown;
    assert.equal(typeof data.reason, 'string');
    assert.equal(typeof data.reconnectAfterMs, 'number');
    await gone;
    const exit = await withTimeout(node.exited, SHUTDOWN_TIMEOUT_MS + EXIT_SLACK_MS, 'process exit after SIGINT');
    assert.equal(exit.code, 0, JSON.stringify(exit));
  } finally {
    await node.stop(2000);
    node.removeDataDir();
  }
});
