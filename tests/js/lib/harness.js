'use strict';
// Per-file setup: one topology per test file, sockets closed after each test, server logs
// printed when a test fails.

const nodeTest = require('node:test');

const { createSession, uid } = require('./api');
const { closeAllSockets, connect } = require('./client');
const { dumpLogs, startTopology } = require('./server');
const { withTimeout } = require('./wait');

const DEFAULT_TEST_TIMEOUT_MS = 60_000;

let currentEnv = null;

/**
 * Start the topology (RAFTCAST_TOPOLOGY) before the file's tests, stop it after them.
 * Returns an object filled in by the `before` hook: see startTopology() in server.js, plus
 *   env.newUser(prefix)            → { userId, sessionId, session }
 *   env.connectUser(prefix, opts)  → { socket, connected, userId, sessionId }
 */
function useTopology(opts = {}) {
  const env = {};
  nodeTest.before(
    async () => {
      const t = await startTopology(opts);
      Object.assign(env, t);
      currentEnv = env;
    },
    { timeout: 120_000 },
  );
  nodeTest.afterEach(() => closeAllSockets());
  nodeTest.after(async () => {
    closeAllSockets();
    if (env.stop) await env.stop();
  }, { timeout: 60_000 });

  env.newUser = async (prefix = 'user') => {
    const userId = uid(prefix);
    const session = await createSession(env.api(), userId);
    return { userId, sessionId: session.sessionId, session };
  };
  env.connectUser = async (prefix = 'user', clientOpts = {}) => {
    const u = await env.newUser(prefix);
    const c = await connect(env.clientUrl, { auth: { sessionId: u.sessionId }, ...clientOpts });
    return { ...u, ...c };
  };
  return env;
}

/** node:test's test(), with a default timeout and the servers' logs printed on failure. */
function test(name, options, fn) {
  if (typeof options === 'function') {
    fn = options;
    options = {};
  }
  const timeout = options.timeout ?? DEFAULT_TEST_TIMEOUT_MS;
  return nodeTest.test(name, { ...options, timeout: timeout + 2000 }, async (t) => {
    try {
      // Our own deadline, shorter than the runner's, so a hang still prints the logs.
      await withTimeout(Promise.resolve().then(() => fn(t)), timeout, `test "${name}"`);
    } catch (err) {
      dumpLogs(`failed: ${name}`, currentEnv?.nodes);
      throw err;
    }
  });
}
test.todo = (name, fn) => nodeTest.test(name, { todo: true }, fn);

module.exports = { test, useTopology };
