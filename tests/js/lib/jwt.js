'use strict';
// A tiny HS256 JWT signer (node:crypto only).

const crypto = require('node:crypto');

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** Sign `payload` with HS256; `header` overrides allow malformed tokens (e.g. alg none). */
function signHs256(payload, secret, header = {}) {
  const h = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', ...header }));
  const p = b64url(JSON.stringify(payload));
  const sig = crypto.createHmac('sha256', secret).update(`${h}.${p}`).digest();
  return `${h}.${p}.${b64url(sig)}`;
}

const nowSec = () => Math.floor(Date.now() / 1000);

module.exports = { nowSec, signHs256 };
