'use strict';
// Connecting: sessions, JWTs, refusals, revocation.

const assert = require('node:assert/strict');

const { createSession, getJson, request, revokeSession, socketCount, uid } = require('../lib/api');
const { connect, connectRefused, emitWithAck } = require('../lib/client');
const { assertUnauthorized } = require('../lib/expect');
const { test, useTopology } = require('../lib/harness');
const { nowSec, signHs256 } = require('../lib/jwt');
const { JWT_SECRET } = require('../lib/server');
const { eventually, onceArgs, sleep } = require('../lib/wait');

const env = useTopology();

function assertConnectedPayload(connected, socket, userId) {
  assert.deepEqual(Object.keys(connected).sort(), ['nodeId', 'serverTime', 'socketId', 'userId']);
  assert.equal(connected.userId, userId);
  assert.equal(connected.socketId, socket.id, 'socketId is the Socket.IO id the client sees');
  assert.equal(String(connected.nodeId), String(env.clientNode.nodeId), 'nodeId is the node the client is on');
  assert.equal(typeof connected.serverTime, 'number');
  assert.ok(Math.abs(connected.serverTime - Date.now()) < 60_000, `serverTime ${connected.serverTime} near now (ms)`);
}

for (const transports of [['websocket'], ['polling']]) {
  test(`a session connects over ${transports[0]} and gets "connected" {userId, socketId, nodeId, serverTime}`, async () => {
    const userId = uid('conn');
    const s = await createSession(env.api(), userId);
    const { socket, connected } = await connect(env.clientUrl, { auth: { sessionId: s.sessionId }, transports });
    assert.equal(socket.connected, true);
    assertConnectedPayload(connected, socket, userId);
  });
}

test('POST /api/sessions answers 201 {sessionId, userId, expiresAt}', async () => {
  const userId = uid('sess');
  const res = await request(env.api(), 'POST', '/api/sessions', { body: { userId, ttlSeconds: 600 } });
  assert.equal(res.status, 201, res.text);
  assert.equal(typeof res.body.sessionId, 'string');
  assert.ok(res.body.sessionId.length >= 16, 'session ids are long enough not to be guessed');
  assert.equal(res.body.userId, userId);
  assert.ok(res.body.expiresAt !== undefined && res.body.expiresAt !== null, 'expiresAt present');
  const exp = typeof res.body.expiresAt === 'number' ? res.body.expiresAt : Date.parse(res.body.expiresAt);
  assert.ok(Number.isFinite(exp), `expiresAt is a time: ${res.body.expiresAt}`);
  // seconds or milliseconds since 1970, or an ISO string: about ten minutes from now
  const expMs = exp < 1e11 ? exp * 1000 : exp;
  assert.ok(Math.abs(expMs - (Date.now() + 600_000)) < 60_000, `expiresAt ${res.body.expiresAt} ≈ now + ttlSeconds`);
});

test('the ping event is acked with {serverTime}', async () => {
  const { socket } = await env.connectUser('ping');
  const ack = await emitWithAck(socket, 'ping', { hello: 1 });
  assert.equal(typeof ack.serverTime, 'number', JSON.stringify(ack));
  assert.ok(Math.abs(ack.serverTime - Date.now()) < 60_000);
});

test('no credentials: connect_error UNAUTHORIZED', async () => {
  assertUnauthorized(await connectRefused(env.clientUrl, { transports: ['websocket'] }));
  assertUnauthorized(await connectRefused(env.clientUrl, { auth: {}, transports: ['polling'] }));
});

test('unknown session: connect_error UNAUTHORIZED', async () => {
  assertUnauthorized(await connectRefused(env.clientUrl, { auth: { sessionId: 'no-such-session-0123456789' } }));
  assertUnauthorized(await connectRefused(env.clientUrl, { auth: { sessionId: 42 } }));
  assertUnauthorized(await connectRefused(env.clientUrl, { auth: { sessionId: '' } }));
});

test('revoked session: connect_error UNAUTHORIZED', async () => {
  const s = await createSession(env.api(), uid('revoked'));
  await revokeSession(env.api(), s.sessionId);
  // Revocation is cluster-wide once DELETE answered.
  assertUnauthorized(await connectRefused(env.clientUrl, { auth: { sessionId: s.sessionId } }));
});

test('expired session: connect_error UNAUTHORIZED', async () => {
  const s = await createSession(env.api(), uid('expired'), { ttlSeconds: 1 });
  await sleep(2100);
  assertUnauthorized(await connectRefused(env.clientUrl, { auth: { sessionId: s.sessionId } }));
});

test('a refused client never exists: presence stays offline', async () => {
  const userId = uid('ghost');
  assertUnauthorized(await connectRefused(env.clientUrl, { auth: { token: signHs256({ sub: userId, exp: nowSec() + 60 }, 'wrong') } }));
  const p = await getJson(env.api(), `/api/presence/${encodeURIComponent(userId)}`);
  assert.equal(p.online, false);
  assert.equal(socketCount(p), 0);
});

test('a valid HS256 JWT with sub connects as that user', async () => {
  const userId = uid('jwt');
  const token = signHs256({ sub: userId, exp: nowSec() + 600, iat: nowSec() }, JWT_SECRET);
  const { socket, connected } = await connect(env.clientUrl, { auth: { token } });
  assertConnectedPayload(connected, socket, userId);
});

test('JWT refusals: wrong signature, expired, missing sub, alg none, garbage', async () => {
  const userId = uid('badjwt');
  const cases = {
    'wrong signature': signHs256({ sub: userId, exp: nowSec() + 600 }, 'not-the-secret'),
    expired: signHs256({ sub: userId, exp: nowSec() - 120 }, JWT_SECRET),
    'missing sub': signHs256({ exp: nowSec() + 600 }, JWT_SECRET),
    'alg none': (() => {
      const [h, p] = signHs256({ sub: userId, exp: nowSec() + 600 }, JWT_SECRET, { alg: 'none' }).split('.');
      return `${h}.${p}.`;
    })(),
    garbage: 'not.a.jwt',
  };
  for (const [what, token] of Object.entries(cases)) {
    const err = await connectRefused(env.clientUrl, { auth: { token } });
    try {
      assertUnauthorized(err);
    } catch (e) {
      e.message = `${what}: ${e.message}`;
      throw e;
    }
  }
});

test('DELETE /api/sessions/{id} disconnects the sockets using it, and only those', async () => {
  const userId = uid('revoke');
  const s1 = await createSession(env.api(), userId);
  const s2 = await createSession(env.api(), userId);
  const { socket: a } = await connect(env.clientUrl, { auth: { sessionId: s1.sessionId }, transports: ['websocket'] });
  const { socket: a2 } = await connect(env.clientUrl, { auth: { sessionId: s1.sessionId }, transports: ['polling'] });
  const { socket: b } = await connect(env.clientUrl, { auth: { sessionId: s2.sessionId } });
  const aGone = onceArgs(a, 'disconnect', 5000);
  const a2Gone = onceArgs(a2, 'disconnect', 5000);
  await revokeSession(env.api(), s1.sessionId);
  const [reason] = await aGone;
  await a2Gone;
  assert.ok(['io server disconnect', 'transport close'].includes(reason), `disconnect reason: ${reason}`);
  // The other session of the same user is untouched.
  await sleep(300);
  assert.equal(b.connected, true, 'socket of the other session stays connected');
  const ack = await emitWithAck(b, 'ping', {});
  assert.equal(typeof ack.serverTime, 'number');
  // And the revoked session cannot come back.
  assertUnauthorized(await connectRefused(env.clientUrl, { auth: { sessionId: s1.sessionId } }));
  await eventually(async () => {
    const p = await getJson(env.api(), `/api/presence/${encodeURIComponent(userId)}`);
    assert.equal(socketCount(p), 1);
  }, 5000);
});
