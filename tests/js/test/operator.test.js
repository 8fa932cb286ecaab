'use strict';
// Operator endpoints: health, readiness, metrics, cluster status, status page.

const assert = require('node:assert/strict');

const { emit, request } = require('../lib/api');
const { eventually, once } = require('../lib/wait');
const { test, useTopology } = require('../lib/harness');

const env = useTopology();

test('GET /health/websocket on a fresh server: 200 healthy with the seed shape, no API key needed', async () => {
  for (const node of env.nodes) {
    // Once every node is ready, health settles within a few seconds at most.
    const res = await eventually(async () => {
      const r = await request(node.base, 'GET', '/health/websocket', { key: null });
      assert.equal(r.status, 200, `${node.name}: ${r.text}`);
      assert.equal(r.body.status, 'healthy', `${node.name}: ${r.text}`);
      return r;
    }, 5000, 100);
    const h = res.body;
    assert.ok(h.timestamp !== undefined);
    assert.ok(Number.isFinite(typeof h.timestamp === 'number' ? h.timestamp : Date.parse(h.timestamp)), 'timestamp is a time');
    for (const k of ['totalConnections', 'uniqueUsers', 'adapter', 'uptime']) assert.ok(k in h.stats, `stats.${k}`);
    assert.equal(typeof h.stats.totalConnections, 'number');
    if (env.topology === 'redis') {
      // Redis mode: the seed's redis block, no raft block.
      assert.ok(h.redis, `redis block: ${res.text}`);
      assert.equal(h.redis.healthy, true);
      assert.equal(typeof h.redis.status, 'string');
      assert.equal(h.raft, undefined, 'no raft block in Redis mode');
    } else {
      // Raft is the default fan-out: raft block present.
      assert.ok(h.raft, `raft block: ${res.text}`);
      for (const k of ['leader', 'term', 'commitIndex', 'appliedIndex', 'lagging']) assert.ok(k in h.raft, `raft.${k}`);
      assert.equal(h.raft.lagging, false);
      assert.equal(h.redis, undefined, 'no redis block without Redis');
    }
  }
});

test('GET /healthz and /readyz answer 200 without a key', async () => {
  for (const node of env.nodes) {
    assert.equal((await request(node.base, 'GET', '/healthz', { key: null })).status, 200);
    assert.equal((await request(node.base, 'GET', '/readyz', { key: null })).status, 200);
  }
});

test('GET /metrics is Prometheus text with the promised families', async () => {
  // Traffic first, so every family has samples: a connection, a delivered durable event.
  const { socket, userId } = await env.connectUser('metrics');
  const got = once(socket, 'trade:executed', 5000);
  await emit(env.api(), { userId, event: 'trade:executed', data: { m: 1 } });
  await got;
  const res = await request(env.clientNode.base, 'GET', '/metrics', { key: null });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') || '', /^text\/plain/);
  const lines = res.text.split('\n').filter((l) => l.length > 0);
  assert.ok(lines.length > 0);
  const sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+]?([0-9.eE+-]+|NaN|Inf|\+Inf|-Inf)( [0-9]+)?$/;
  for (const l of lines) {
    if (l.startsWith('#')) {
      assert.match(l, /^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* /, `comment line: ${l}`);
    } else {
      assert.match(l, sample, `sample line: ${l}`);
    }
  }
  const names = new Set(lines.filter((l) => !l.startsWith('#')).map((l) => l.split(/[{ ]/)[0]));
  // Matched without the "raftcast_" namespace prefix, so /raft/ means Raft metrics.
  const has = (re) => [...names].some((n) => re.test(n.replace(/^raftcast_/, '')));
  assert.ok(has(/connection/), `a connections metric: ${[...names].join(', ')}`);
  assert.ok(has(/user/), 'a unique users metric');
  assert.ok(has(/room/), 'a rooms metric');
  assert.ok(has(/latency|duration|seconds_bucket/), 'a latency histogram');
  if (env.topology === 'redis') {
    assert.ok(has(/redis/), `Redis status metric: ${[...names].join(', ')}`);
  } else {
    assert.ok(has(/raft|term|commit|applied/), `Raft metrics (term/leader/commit/apply lag): ${[...names].join(', ')}`);
  }
  assert.ok(has(/memory|resident|rss/), 'process memory');
  assert.ok(lines.some((l) => /^# TYPE \S+ histogram$/.test(l)), 'at least one histogram');
  assert.ok(
    lines.some((l) => !l.startsWith('#') && /event="trade:executed"/.test(l)),
    'events/deliveries counted by event name (label event="trade:executed")',
  );
});

test('GET /cluster/status → {nodeId, leaderId, term, commitIndex, appliedIndex, nodes[]}', async (t) => {
  if (env.topology === 'redis') {
    // Redis mode has no Raft group: each node describes itself only.
    const r = await request(env.clientNode.base, 'GET', '/cluster/status', { key: null });
    assert.equal(r.status, 200, r.text);
    assert.equal(String(r.body.nodeId), String(env.clientNode.nodeId));
    assert.equal(r.body.adapter, 'redis');
    t.diagnostic('Redis mode: per-node view only');
    return;
  }
  // Peers' reachability is known within a few seconds of every node being ready.
  const res = await eventually(async () => {
    const r = await request(env.clientNode.base, 'GET', '/cluster/status', { key: null });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.body.nodes.every((n) => n.reachable === true), `all reachable: ${r.text}`);
    return r;
  }, 5000, 100);
  const s = res.body;
  for (const k of ['nodeId', 'leaderId', 'term', 'commitIndex', 'appliedIndex', 'nodes']) assert.ok(k in s, `has ${k}`);
  assert.equal(String(s.nodeId), String(env.clientNode.nodeId));
  assert.equal(s.nodes.length, env.nodes.length);
  for (const n of s.nodes) {
    for (const k of ['id', 'addr', 'role', 'reachable', 'connections']) assert.ok(k in n, `node has ${k}: ${JSON.stringify(n)}`);
    assert.ok(['leader', 'follower', 'learner'].includes(n.role));
    assert.equal(n.reachable, true);
  }
  assert.equal(s.nodes.filter((n) => n.role === 'leader').length, 1);
  assert.equal(String(s.nodes.find((n) => n.role === 'leader').id), String(s.leaderId));
});

test('GET / is a status page a person can read', async () => {
  const res = await request(env.clientNode.base, 'GET', '/', { key: null });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') || '', /text\/html/);
  assert.match(res.text, /raftcast/i);
});

test('operator paths carry no secret', async () => {
  for (const path of ['/health/websocket', '/metrics', '/cluster/status', '/']) {
    const res = await request(env.clientNode.base, 'GET', path, { key: null });
    assert.ok(!res.text.includes('test-key'), `${path} leaks the API key`);
    assert.ok(!res.text.includes('test-jwt-secret'), `${path} leaks the JWT secret`);
    assert.ok(!res.text.includes('test-cluster-secret'), `${path} leaks the cluster secret`);
  }
});
