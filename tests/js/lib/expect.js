'use strict';
// Assertions on what the contract promises a client.

const assert = require('node:assert/strict');

/** meta is exactly { room, offset, epoch, ts } with the contract's types. */
function assertMeta(meta, room, offset) {
  assert.ok(meta && typeof meta === 'object', `meta missing: ${JSON.stringify(meta)}`);
  assert.deepEqual(Object.keys(meta).sort(), ['epoch', 'offset', 'room', 'ts'], `meta keys: ${JSON.stringify(meta)}`);
  assert.equal(meta.room, room, 'meta.room');
  assert.equal(typeof meta.offset, 'number', 'meta.offset is a number');
  if (offset !== undefined) assert.equal(meta.offset, offset, 'meta.offset');
  assert.equal(typeof meta.epoch, 'string', 'meta.epoch is a string');
  assert.ok(meta.epoch.length > 0, 'meta.epoch is not empty');
  assert.equal(typeof meta.ts, 'number', 'meta.ts is a number');
  assert.ok(Math.abs(meta.ts - Date.now()) < 60_000, `meta.ts ${meta.ts} is milliseconds since 1970, near now`);
}

/** An `error` event payload / ack error object with the given code. */
function assertErrorObject(err, code) {
  assert.ok(err && typeof err === 'object', `error object missing: ${JSON.stringify(err)}`);
  assert.equal(err.code, code, `error code: ${JSON.stringify(err)}`);
  assert.equal(typeof err.message, 'string', `error message is a string: ${JSON.stringify(err)}`);
}

/** An ack answering { error: { code, message } }. */
function assertAckError(ack, code) {
  assert.ok(ack && typeof ack === 'object' && ack.error, `expected an error ack, got ${JSON.stringify(ack)}`);
  assertErrorObject(ack.error, code);
}

/** connect_error as the contract describes a refusal. */
function assertUnauthorized(err) {
  assert.equal(err.message, 'UNAUTHORIZED', `connect_error message: ${err.message}`);
  assert.ok(err.data && typeof err.data === 'object', `connect_error data: ${JSON.stringify(err.data)}`);
  assert.equal(err.data.code, 'UNAUTHORIZED', `connect_error data.code: ${JSON.stringify(err.data)}`);
  assert.equal(typeof err.data.message, 'string', `connect_error data.message: ${JSON.stringify(err.data)}`);
}

module.exports = { assertAckError, assertErrorObject, assertMeta, assertUnauthorized };
