'use strict';
// The official socket.io-client, with deadlines and teardown bookkeeping.

const { io } = require('socket.io-client');

/** Sockets opened by the current test; closed by closeAllSockets() after each test. */
const open = new Set();

/**
 * A new socket.io-client Socket (own Manager, no automatic reconnection unless asked).
 * It starts connecting at once; listeners added in the same tick see every event.
 */
function makeSocket(url, opts = {}) {
  const socket = io(url, {
    forceNew: true,
    reconnection: false,
    timeout: 10_000,
    ...opts,
  });
  open.add(socket);
  return socket;
}

/**
 * Connect and wait for both the Socket.IO `connect` and the server's `connected` event.
 * Resolves { socket, connected } — connected is the payload of `connected`.
 * Rejects on connect_error (with the error) or after timeoutMs.
 */
function connect(url, opts = {}, timeoutMs = 10_000) {
  const socket = makeSocket(url, opts);
  return new Promise((resolve, reject) => {
    let connectedPayload;
    let isConnected = false;
    const timer = setTimeout(() => {
      reject(
        new Error(
          `connect to ${url} timed out after ${timeoutMs} ms (connect=${isConnected}, connected event=${
            connectedPayload !== undefined
          })`,
        ),
      );
    }, timeoutMs);
    const done = () => {
      if (isConnected && connectedPayload !== undefined) {
        clearTimeout(timer);
        socket.off('connect_error', onError);
        resolve({ socket, connected: connectedPayload });
      }
    };
    const onError = (err) => {
      clearTimeout(timer);
      const e = new Error(`connect_error: ${err.message} ${JSON.stringify(err.data ?? null)}`);
      e.cause = err;
      reject(e);
    };
    socket.once('connected', (payload) => {
      connectedPayload = payload;
      done();
    });
    socket.once('connect', () => {
      isConnected = true;
      done();
    });
    socket.once('connect_error', onError);
  });
}

/**
 * Connect expecting refusal. Resolves with the connect_error Error; rejects if the socket
 * connects instead, or after timeoutMs.
 */
function connectRefused(url, opts = {}, timeoutMs = 10_000) {
  const socket = makeSocket(url, opts);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no connect_error within ${timeoutMs} ms`)), timeoutMs);
    socket.once('connect_error', (err) => {
      clearTimeout(timer);
      socket.close();
      resolve(err);
    });
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.close();
      reject(new Error(`expected refusal, but the socket connected (id ${socket.id})`));
    });
  });
}

/** Emit with an ack; rejects if no ack within timeoutMs. */
function emitWithAck(socket, event, ...args) {
  return socket.timeout(5000).emitWithAck(event, ...args);
}

function closeAllSockets() {
  for (const s of open) {
    try {
      s.io.reconnection(false);
      s.disconnect();
      s.io.engine?.close();
    } catch {
      /* ignore */
    }
  }
  open.clear();
}

module.exports = { closeAllSockets, connect, connectRefused, emitWithAck, makeSocket, open };
