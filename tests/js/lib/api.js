'use strict';
// The backend HTTP API, through node's global fetch.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');

const { API_KEY } = require('./server');

/**
 * Raw request. Returns { status, headers, text, body } where body is the parsed JSON
 * (or undefined when the answer is not JSON).
 *   opts.body    a value sent as JSON, or a string sent as is
 *   opts.key     API key (default test-key; null: no Authorization header)
 */
async function request(base, method, path, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  const key = opts.key === undefined ? API_KEY : opts.key;
  if (key !== null) headers.authorization = `Bearer ${key}`;
  let body;
  if (opts.body !== undefined) {
    body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
    if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) {
      headers['content-type'] = 'application/json';
    }
  }
  const res = await fetch(base + path, { method, headers, body, signal: AbortSignal.timeout(opts.timeoutMs ?? 15_000) });
  const text = await res.text();
  let parsed;
  try {
    parsed = text.length ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  return { status: res.status, headers: res.headers, text, body: parsed };
}

function describe(res) {
  return `HTTP ${res.status} ${res.text.slice(0, 500)}`;
}

/** POST /api/sessions → the 201 body { sessionId, userId, expiresAt }. */
async function createSession(base, userId, extra = {}) {
  const res = await request(base, 'POST', '/api/sessions', { body: { userId, ...extra } });
  assert.equal(res.status, 201, `POST /api/sessions: ${describe(res)}`);
  return res.body;
}

/** DELETE /api/sessions/{id} → expects 204. */
async function revokeSession(base, sessionId) {
  const res = await request(base, 'DELETE', `/api/sessions/${encodeURIComponent(sessionId)}`);
  assert.equal(res.status, 204, `DELETE /api/sessions: ${describe(res)}`);
  return res;
}

/** POST /api/emit → the 200 body { room, offset, epoch }. */
async function emit(base, body) {
  const res = await request(base, 'POST', '/api/emit', { body });
  assert.equal(res.status, 200, `POST /api/emit ${JSON.stringify(body).slice(0, 200)}: ${describe(res)}`);
  return res.body;
}

/** POST /api/quotes → expects 202. */
async function postQuote(base, symbol, quote) {
  const res = await request(base, 'POST', '/api/quotes', { body: { symbol, quote } });
  assert.equal(res.status, 202, `POST /api/quotes: ${describe(res)}`);
  return res;
}

/** GET a JSON document, expecting 200. */
async function getJson(base, path, opts = {}) {
  const res = await request(base, 'GET', path, opts);
  assert.equal(res.status, 200, `GET ${path}: ${describe(res)}`);
  assert.ok(res.body !== undefined, `GET ${path} did not answer JSON: ${res.text.slice(0, 200)}`);
  return res.body;
}

/** A fresh user id, so tests sharing a server never share rooms. */
function uid(prefix = 'u') {
  return `${prefix}-${crypto.randomBytes(6).toString('hex')}`;
}

/**
 * /api/stats is "cluster-wide and per-node". The cluster-wide figures are read at the top
 * level or under `cluster`, whichever the server uses.
 */
function clusterStats(stats) {
  if (stats && typeof stats.totalConnections === 'number') return stats;
  if (stats && stats.cluster && typeof stats.cluster.totalConnections === 'number') return stats.cluster;
  throw new Error(`no cluster-wide totalConnections in /api/stats: ${JSON.stringify(stats).slice(0, 500)}`);
}

/**
 * /api/presence `sockets`: the contract names the field without a type; a count or a list of
 * sockets are both read as a number here.
 */
function socketCount(presence) {
  const s = presence.sockets;
  if (Array.isArray(s)) return s.length;
  if (typeof s === 'number') return s;
  throw new Error(`presence.sockets is neither a number nor a list: ${JSON.stringify(presence)}`);
}

module.exports = { socketCount, clusterStats, createSession, describe, emit, getJson, postQuote, request, revokeSession, uid };
