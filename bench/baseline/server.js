'use strict';
// Node baseline for the raftcast benchmarks: Socket.IO 4 + @socket.io/redis-adapter + ioredis,
// written from the seed's description (a Socket.IO + Redis real-time service for a trading app).
// It implements the subset of raftcast's contract the benchmarks use:
//   - sessions stored in Redis (`POST /api/sessions`), checked at connect via `auth.sessionId`
//   - rooms `user:<id>` (joined at connect) and `watchlist:<SYMBOL>` (subscribe:watchlist)
//   - `POST /api/emit {room|userId, event, data}` with `Authorization: Bearer <key>`
//   - `POST /api/quotes {symbol, quote}` coalesced to at most one `quote:update` per symbol / 100 ms
// Delivered events carry `(data, meta)` like raftcast; meta has no durable offset here.
//
// Environment: PORT, REDIS_URL, API_KEY, NODE_ID, PING_INTERVAL_MS, PING_TIMEOUT_MS,
// QUOTE_THROTTLE_MS, SESSION_TTL_SECONDS.

const http = require('http');
const crypto = require('crypto');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const Redis = require('ioredis');

const PORT = Number(process.env.PORT || 5000);
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const API_KEY = process.env.API_KEY || 'k';
const NODE_ID = process.env.NODE_ID || '1';
const PING_INTERVAL_MS = Number(process.env.PING_INTERVAL_MS || 25000);
const PING_TIMEOUT_MS = Number(process.env.PING_TIMEOUT_MS || 20000);
const QUOTE_THROTTLE_MS = Number(process.env.QUOTE_THROTTLE_MS || 100);
const SESSION_TTL_SECONDS = Number(process.env.SESSION_TTL_SECONDS || 86400);
const MAX_BODY = 64 * 1024;
const SYMBOL_RE = /^[A-Z0-9.\-]{1,15}$/;
const startedAt = Date.now();

const redisOptions = {
  retryStrategy: (times) => Math.min(times * 50, 2000),
  maxRetriesPerRequest: null,
  enableOfflineQueue: true,
};
const redis = new Redis(REDIS_URL, redisOptions); // sessions
const pubClient = new Redis(REDIS_URL, redisOptions);
const subClient = pubClient.duplicate();
for (const [name, c] of [['redis', redis], ['pub', pubClient], ['sub', subClient]]) {
  c.on('error', (err) => console.error(`[node ${NODE_ID}] ${name} client error: ${err.message}`));
}

const httpServer = http.createServer(handleHttp);
const io = new Server(httpServer, {
  transports: ['websocket'],
  pingInterval: PING_INTERVAL_MS,
  pingTimeout: PING_TIMEOUT_MS,
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
  maxHttpBufferSize: MAX_BODY,
  cors: { origin: process.env.CORS_ORIGIN || '*' },
});
io.adapter(createAdapter(pubClient, subClient));

function meta(room) {
  return { room, offset: 0, epoch: 'redis', ts: Date.now() };
}

function emitToRoom(room, event, data) {
  io.to(room).emit(event, data, meta(room));
}

function unauthorized(message) {
  const err = new Error('UNAUTHORIZED');
  err.data = { code: 'UNAUTHORIZED', message };
  return err;
}

io.use(async (socket, next) => {
  const sessionId = socket.handshake.auth && socket.handshake.auth.sessionId;
  if (typeof sessionId !== 'string' || sessionId.length === 0) {
    return next(unauthorized('missing sessionId'));
  }
  try {
    const userId = await redis.get(`session:${sessionId}`);
    if (!userId) return next(unauthorized('unknown or expired session'));
    socket.data.userId = userId;
    return next();
  } catch (err) {
    return next(unauthorized(`session check failed: ${err.message}`));
  }
});

function reply(socket, ack, event, payload) {
  socket.emit(event, payload);
  if (typeof ack === 'function') ack(payload);
}

function fail(socket, ack, event, code, message) {
  const error = { code, message, event };
  socket.emit('error', error);
  if (typeof ack === 'function') ack({ error: { code, message } });
}

io.on('connection', (socket) => {
  const userId = socket.data.userId;
  socket.join(`user:${userId}`);

  socket.on('subscribe:watchlist', (payload, ack) => {
    const symbols = payload && Array.isArray(payload.symbols) ? payload.symbols : null;
    if (!symbols || symbols.length === 0 || !symbols.every((s) => typeof s === 'string' && SYMBOL_RE.test(s))) {
      return fail(socket, ack, 'subscribe:watchlist', 'INVALID_PAYLOAD', 'symbols must match ^[A-Z0-9.\\-]{1,15}$');
    }
    const rooms = symbols.map((s) => `watchlist:${s}`);
    socket.join(rooms);
    reply(socket, ack, 'subscribed:watchlist', { symbols, rooms });
  });
  socket.on('unsubscribe:watchlist', (payload, ack) => {
    const symbols = payload && Array.isArray(payload.symbols) ? payload.symbols : [];
    for (const s of symbols) socket.leave(`watchlist:${s}`);
    reply(socket, ack, 'unsubscribed:watchlist', { symbols });
  });
  socket.on('subscribe:portfolio', (_payload, ack) => {
    const room = `portfolio:${userId}`;
    socket.join(room);
    reply(socket, ack, 'subscribed:portfolio', { room, offset: 0, epoch: 'redis', recovered: false });
  });
  socket.on('unsubscribe:portfolio', (_payload, ack) => {
    const room = `portfolio:${userId}`;
    socket.leave(room);
    reply(socket, ack, 'unsubscribed:portfolio', { room });
  });
  socket.on('ping', (_payload, ack) => {
    if (typeof ack === 'function') ack({ serverTime: new Date().toISOString() });
  });

  socket.emit('connected', { userId, socketId: socket.id, nodeId: NODE_ID, serverTime: new Date().toISOString() });
});

// ---- quote coalescer (seed: "max once per 100ms per symbol") ----
const quoteQueue = new Map();
setInterval(() => {
  if (quoteQueue.size === 0) return;
  for (const [symbol, quote] of quoteQueue) {
    emitToRoom(`watchlist:${symbol}`, 'quote:update', { symbol, quote, timestamp: new Date().toISOString() });
  }
  quoteQueue.clear();
}, QUOTE_THROTTLE_MS).unref();

// ---- HTTP API ----
function send(res, status, body) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks = [];
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(Object.assign(new Error('payload too large'), { status: 413, code: 'PAYLOAD_TOO_LARGE' }));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      try {
        resolve(chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {});
      } catch (_e) {
        reject(Object.assign(new Error('invalid JSON'), { status: 400, code: 'INVALID_PAYLOAD' }));
      }
    });
    req.on('error', reject);
  });
}

function authorized(req) {
  const h = req.headers.authorization || '';
  const want = `Bearer ${API_KEY}`;
  return h.length === want.length && crypto.timingSafeEqual(Buffer.from(h), Buffer.from(want));
}

async function handleHttp(req, res) {
  const url = req.url.split('?')[0];
  try {
    if (req.method === 'GET' && (url === '/healthz' || url === '/readyz')) return send(res, 200, { status: 'ok' });
    if (req.method === 'GET' && url === '/health/websocket') {
      const healthy = pubClient.status === 'ready';
      return send(res, healthy ? 200 : 503, {
        status: healthy ? 'healthy' : 'unhealthy',
        timestamp: new Date().toISOString(),
        stats: { totalConnections: io.engine.clientsCount, adapter: 'redis', uptime: (Date.now() - startedAt) / 1000 },
        redis: { status: pubClient.status, healthy },
      });
    }
    if (!url.startsWith('/api/')) return send(res, 404, { code: 'NOT_FOUND', message: url });
    if (!authorized(req)) return send(res, 401, { code: 'UNAUTHORIZED', message: 'bad or missing API key' });

    if (req.method === 'POST' && url === '/api/sessions') {
      const body = await readJson(req);
      if (typeof body.userId !== 'string' || body.userId.length === 0) {
        return send(res, 400, { code: 'INVALID_PAYLOAD', message: 'userId required' });
      }
      const ttl = Number.isInteger(body.ttlSeconds) && body.ttlSeconds > 0 ? body.ttlSeconds : SESSION_TTL_SECONDS;
      const sessionId = crypto.randomBytes(16).toString('hex');
      await redis.set(`session:${sessionId}`, body.userId, 'EX', ttl);
      return send(res, 201, { sessionId, userId: body.userId, expiresAt: new Date(Date.now() + ttl * 1000).toISOString() });
    }
    if (req.method === 'POST' && url === '/api/emit') {
      const body = await readJson(req);
      const hasRoom = typeof body.room === 'string' && body.room.length > 0;
      const hasUser = typeof body.userId === 'string' && body.userId.length > 0;
      if (hasRoom === hasUser || typeof body.event !== 'string' || body.event.length === 0) {
        return send(res, 400, { code: 'INVALID_PAYLOAD', message: 'exactly one of room/userId, and event, required' });
      }
      const room = hasRoom ? body.room : `user:${body.userId}`;
      emitToRoom(room, body.event, body.data === undefined ? null : body.data);
      return send(res, 200, { room, offset: 0, epoch: 'redis' });
    }
    if (req.method === 'POST' && url === '/api/quotes') {
      const body = await readJson(req);
      if (typeof body.symbol !== 'string' || !SYMBOL_RE.test(body.symbol)) {
        return send(res, 400, { code: 'INVALID_PAYLOAD', message: 'bad symbol' });
      }
      quoteQueue.set(body.symbol, body.quote);
      return send(res, 202, { accepted: true });
    }
    return send(res, 404, { code: 'NOT_FOUND', message: url });
  } catch (err) {
    return send(res, err.status || 500, { code: err.code || 'INTERNAL', message: err.message });
  }
}

httpServer.keepAliveTimeout = 65000;
httpServer.listen(PORT, '127.0.0.1', () => {
  console.log(`[node ${NODE_ID}] baseline listening on 127.0.0.1:${PORT} (redis ${REDIS_URL})`);
});

function shutdown(signal) {
  console.log(`[node ${NODE_ID}] ${signal}: shutting down`);
  io.local.emit('server:shutdown', { reason: signal, reconnectAfterMs: 1000 });
  setTimeout(() => {
    io.close();
    for (const c of [redis, pubClient, subClient]) c.disconnect();
    process.exit(0);
  }, 200).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
