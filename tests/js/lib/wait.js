'use strict';
// Waiting with deadlines. Nothing in this suite waits without one.

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Call fn until it returns without throwing (and does not return false), or until timeoutMs.
 * Resolves with fn's value; rejects with fn's last error at the deadline.
 */
async function eventually(fn, timeoutMs = 5000, intervalMs = 50) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  for (;;) {
    try {
      const v = await fn();
      if (v !== false) return v;
      lastErr = new Error('condition returned false');
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() >= deadline) {
      const e = new Error(`eventually: not true within ${timeoutMs} ms: ${lastErr?.message}`);
      e.cause = lastErr;
      throw e;
    }
    await sleep(intervalMs);
  }
}

/**
 * All the arguments of the next `event` on an EventEmitter-like `emitter` (socket.io-client
 * Socket or Manager, ws WebSocket, ChildProcess, ...). Rejects after timeoutMs.
 */
function onceArgs(emitter, event, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const handler = (...args) => {
      clearTimeout(timer);
      resolve(args);
    };
    const timer = setTimeout(() => {
      off(emitter, event, handler);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for "${event}"`));
    }, timeoutMs);
    emitter.once(event, handler);
  });
}

/** The first argument of the next `event`. Rejects after timeoutMs. */
async function once(emitter, event, timeoutMs = 5000) {
  const args = await onceArgs(emitter, event, timeoutMs);
  return args[0];
}

function off(emitter, event, handler) {
  if (typeof emitter.off === 'function') emitter.off(event, handler);
  else if (typeof emitter.removeListener === 'function') emitter.removeListener(event, handler);
}

/** Resolve once nothing for `event` arrives during ms (assert absence). */
async function expectNone(emitter, event, ms) {
  const seen = [];
  const handler = (...args) => seen.push(args);
  emitter.on(event, handler);
  await sleep(ms);
  off(emitter, event, handler);
  if (seen.length > 0) {
    throw new Error(`expected no "${event}" within ${ms} ms, got ${seen.length}: ${JSON.stringify(seen[0])}`);
  }
}

/** Record every `event` (its argument list) into the returned array. */
function collect(emitter, event) {
  const seen = [];
  emitter.on(event, (...args) => seen.push(args));
  return seen;
}

/** Promise that rejects after ms: race it against something that must not hang. */
function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

module.exports = { collect, eventually, expectNone, once, onceArgs, sleep, withTimeout };
