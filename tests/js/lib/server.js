'use strict';
// Start and stop real `raftcast` processes for the end-to-end tests.
//
//   RAFTCAST_BIN          path of the binary (default <repo>/target/debug/raftcast, then
//                         $CARGO_TARGET_DIR/debug/raftcast)
//   RAFTCAST_TOPOLOGY     single (default) | cluster | redis — see startTopology()
//   RAFTCAST_E2E_VERBOSE  1: stream every server log line to stderr as it comes
//   RAFTCAST_E2E_RUST_LOG RUST_LOG given to the servers (default "info")

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const { sleep } = require('./wait');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const API_KEY = 'test-key';
const JWT_SECRET = 'test-jwt-secret';
const CLUSTER_SECRET = 'test-cluster-secret';
const PING_INTERVAL_MS = 300;
const PING_TIMEOUT_MS = 200;
const READY_TIMEOUT_MS = Number(process.env.RAFTCAST_E2E_READY_TIMEOUT_MS || 60_000);
const STOP_GRACE_MS = 15_000;
const LOG_LINES_KEPT = 400;

/** Every process started by this test file and not yet reaped. */
const live = new Set();

process.on('exit', () => {
  for (const p of live) {
    try {
      p.child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

function binaryPath() {
  if (process.env.RAFTCAST_BIN) return path.resolve(process.env.RAFTCAST_BIN);
  const candidates = [path.join(REPO_ROOT, 'target', 'debug', 'raftcast')];
  if (process.env.CARGO_TARGET_DIR) {
    candidates.push(path.join(path.resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR), 'debug', 'raftcast'));
  }
  for (const c of candidates) if (fs.existsSync(c)) return c;
  throw new Error(`raftcast binary not found (tried ${candidates.join(', ')}); build it or set RAFTCAST_BIN`);
}

/**
 * n distinct free TCP ports on 127.0.0.1: listen on port 0, note the port, close.
 * All listeners stay open until every port is picked, so the n ports differ.
 */
async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const srv = net.createServer();
      await new Promise((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(0, '127.0.0.1', resolve);
      });
      servers.push(srv);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

async function freePort() {
  return (await freePorts(1))[0];
}

class RaftcastProcess {
  /**
   * @param {object} o
   * @param {string} o.name       label used in logs
   * @param {number} o.port       public port
   * @param {number} o.peerPort   peer (Raft) port
   * @param {number} [o.nodeId]
   * @param {string} [o.peers]    "1=127.0.0.1:Q1,2=..."
   * @param {string[]} [o.extraArgs]
   */
  constructor(o) {
    this.name = o.name;
    this.port = o.port;
    this.peerPort = o.peerPort;
    this.nodeId = o.nodeId ?? 1;
    this.peers = o.peers;
    this.extraArgs = o.extraArgs ?? [];
    this.dataDir = o.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'raftcast-e2e-'));
    this.ownsDataDir = !o.dataDir;
    this.base = `http://127.0.0.1:${this.port}`;
    this.lines = [];
    this.child = null;
    this.exit = null; // { code, signal } once exited
    this.exited = null; // promise of the above
  }

  args() {
    const defaults = [
      ['--port', String(this.port)],
      ['--data-dir', this.dataDir],
      ['--api-key', API_KEY],
      ['--jwt-secret', JWT_SECRET],
      ['--ping-interval-ms', String(PING_INTERVAL_MS)],
      ['--ping-timeout-ms', String(PING_TIMEOUT_MS)],
      ['--peer-port', String(this.peerPort)],
    ];
    if (this.peers) {
      defaults.push(['--node-id', String(this.nodeId)], ['--peers', this.peers], ['--cluster-secret', CLUSTER_SECRET]);
    }
    // A flag given in extraArgs replaces the default (a flag may be given only once).
    return defaults.filter(([flag]) => !this.extraArgs.includes(flag)).flat().concat(this.extraArgs);
  }

  start() {
    const bin = binaryPath();
    const args = this.args();
    this.log(`$ ${bin} ${args.join(' ')}`);
    const child = spawn(bin, args, {
      cwd: this.dataDir,
      env: { ...process.env, RUST_LOG: process.env.RAFTCAST_E2E_RUST_LOG || 'info', NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    live.add(this);
    const onData = (stream) => {
      let partial = '';
      return (chunk) => {
        partial += chunk.toString('utf8');
        const parts = partial.split('\n');
        partial = parts.pop();
        for (const line of parts) this.log(`${stream}| ${line}`);
      };
    };
    child.stdout.on('data', onData('out'));
    child.stderr.on('data', onData('err'));
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        this.log(`process exited code=${code} signal=${signal}`);
        live.delete(this);
        resolve(this.exit);
      });
      child.on('error', (err) => {
        this.exit = { code: null, signal: null, error: err };
        this.log(`spawn error: ${err.message}`);
        live.delete(this);
        resolve(this.exit);
      });
    });
    return this;
  }

  log(line) {
    const stamped = `[${new Date().toISOString().slice(11, 23)} ${this.name}] ${line}`;
    this.lines.push(stamped);
    if (this.lines.length > LOG_LINES_KEPT) this.lines.splice(0, this.lines.length - LOG_LINES_KEPT);
    if (process.env.RAFTCAST_E2E_VERBOSE === '1') process.stderr.write(stamped + '\n');
  }

  logs() {
    return this.lines.join('\n');
  }

  /** Poll GET /readyz until 200, with a deadline. */
  async waitReady(timeoutMs = READY_TIMEOUT_MS) {
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer yet';
    while (Date.now() < deadline) {
      if (this.exit) {
        throw new Error(`${this.name} exited before it was ready (${JSON.stringify(this.exit)})\n${this.logs()}`);
      }
      try {
        const res = await fetch(`${this.base}/readyz`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        if (res.status === 200) return;
        last = `HTTP ${res.status}`;
      } catch (err) {
        last = err.cause?.code || err.message;
      }
      await sleep(50);
    }
    throw new Error(`${this.name} not ready within ${timeoutMs} ms (last: ${last})\n${this.logs()}`);
  }

  /** Send a signal without waiting. */
  signal(sig) {
    if (this.child && !this.exit) this.child.kill(sig);
  }

  /** SIGTERM, then SIGKILL after graceMs. Resolves with { code, signal }. */
  async stop(graceMs = STOP_GRACE_MS) {
    if (!this.child) return null;
    if (!this.exit) {
      this.child.kill('SIGTERM');
      let timer;
      const timedOut = await Promise.race([
        this.exited.then(() => false),
        new Promise((r) => {
          timer = setTimeout(() => r(true), graceMs);
        }),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        this.log(`did not exit within ${graceMs} ms of SIGTERM: SIGKILL`);
        this.child.kill('SIGKILL');
        await this.exited;
      }
    }
    return this.exit;
  }

  removeDataDir() {
    if (this.ownsDataDir) fs.rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** One node (a one-member Raft group). Resolves once /readyz answers 200. */
async function startServer(extraArgs = [], opts = {}) {
  const [port, peerPort] = await freePorts(2);
  const p = new RaftcastProcess({ name: opts.name ?? 'node1', port, peerPort, extraArgs }).start();
  try {
    await p.waitReady(opts.readyTimeoutMs);
  } catch (err) {
    await p.stop(2000);
    p.removeDataDir();
    throw err;
  }
  return p;
}

/** n nodes forming one Raft group. Resolves once every node's /readyz answers 200. */
async function startCluster(n = 3, extraArgs = [], opts = {}) {
  const ports = await freePorts(2 * n);
  const peers = Array.from({ length: n }, (_, i) => `${i + 1}=127.0.0.1:${ports[n + i]}`).join(',');
  const nodes = Array.from({ length: n }, (_, i) =>
    new RaftcastProcess({
      name: `node${i + 1}`,
      nodeId: i + 1,
      port: ports[i],
      peerPort: ports[n + i],
      peers,
      extraArgs,
    }).start(),
  );
  try {
    await Promise.all(nodes.map((p) => p.waitReady(opts.readyTimeoutMs)));
  } catch (err) {
    await Promise.all(nodes.map((p) => p.stop(2000)));
    nodes.forEach((p) => p.removeDataDir());
    throw err;
  }
  return nodes;
}

function topologyName() {
  const t = process.env.RAFTCAST_TOPOLOGY || 'single';
  if (!['single', 'cluster', 'redis'].includes(t)) {
    throw new Error(`RAFTCAST_TOPOLOGY must be single, cluster or redis, not ${t}`);
  }
  return t;
}

/** A private redis-server on a free loopback port (no persistence); resolves when it answers. */
async function startRedis(port) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'raftcast-e2e-redis-'));
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise((r) => child.on('exit', r));
  const deadline = Date.now() + 10000;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const sock = net.connect(port, '127.0.0.1', () => {
        sock.write('PING\r\n');
      });
      sock.setTimeout(500, () => { sock.destroy(); resolve(false); });
      sock.on('data', (d) => { sock.destroy(); resolve(d.toString().startsWith('+PONG')); });
      sock.on('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error('redis-server did not answer within 10 s (is it installed?)');
    }
    await sleep(50);
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(3000)]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** n nodes in Redis mode on one private redis-server. */
async function startRedisNodes(n = 2, extraArgs = []) {
  // All ports at once: ports picked in separate calls may come back twice.
  const ports = await freePorts(2 * n + 1);
  const redis = await startRedis(ports[2 * n]);
  const nodes = [];
  try {
    for (let i = 0; i < n; i++) {
      const [port, peerPort] = [ports[i], ports[n + i]];
      const args = ['--redis-url', redis.url, '--node-id', String(i + 1), ...extraArgs];
      nodes.push(new RaftcastProcess({ name: `node${i + 1}`, nodeId: i + 1, port, peerPort, extraArgs: args }).start());
    }
    await Promise.all(nodes.map((p) => p.waitReady()));
  } catch (err) {
    await Promise.all(nodes.map((p) => p.stop(2000)));
    nodes.forEach((p) => p.removeDataDir());
    await redis.stop();
    throw err;
  }
  return { nodes, redis };
}

/**
 * The system under test, as RAFTCAST_TOPOLOGY says:
 *   single:  one node; clients and API calls go to it.
 *   cluster: three nodes; clients connect to node 2, API calls alternate between node 1
 *            and node 3, so every delivery crosses nodes.
 *   redis:   two nodes in Redis mode on a private redis-server; clients on node 2, API
 *            calls on node 1.
 */
async function startTopology({ extraArgs = [] } = {}) {
  const topology = topologyName();
  let nodes;
  let redis = null;
  if (topology === 'single') nodes = [await startServer(extraArgs)];
  else if (topology === 'cluster') nodes = await startCluster(3, extraArgs);
  else ({ nodes, redis } = await startRedisNodes(2, extraArgs));
  // Clients on node 2, API calls on the other node(s): every delivery crosses nodes.
  const clientNode = topology === 'single' ? nodes[0] : nodes[1];
  const apiNodes = topology === 'single' ? [nodes[0]] : topology === 'cluster' ? [nodes[0], nodes[2]] : [nodes[0]];
  const otherClientNode = topology === 'single' ? nodes[0] : topology === 'cluster' ? nodes[2] : nodes[0];
  let turn = 0;
  return {
    topology,
    nodes,
    clientNode,
    apiNodes,
    /** URL the socket.io clients connect to. */
    clientUrl: clientNode.base,
    /** Another node's URL for clients (node 3 in a cluster; the same node when single). */
    otherClientUrl: otherClientNode.base,
    /** Base URL for the next API call (alternates in a cluster). */
    api() {
      const n = apiNodes[turn % apiNodes.length];
      turn += 1;
      return n.base;
    },
    logs() {
      return nodes.map((n) => n.logs()).join('\n');
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
      nodes.forEach((n) => n.removeDataDir());
      if (redis) await redis.stop();
    },
  };
}

/** Tail of every live or recently stopped process's log. */
function dumpLogs(header, processes) {
  const list = processes ?? [...live];
  if (list.length === 0) return;
  process.stderr.write(`\n===== raftcast logs (${header}) =====\n`);
  for (const p of list) process.stderr.write(p.logs() + '\n');
  process.stderr.write('===== end of raftcast logs =====\n');
}

module.exports = {
  API_KEY,
  JWT_SECRET,
  CLUSTER_SECRET,
  PING_INTERVAL_MS,
  PING_TIMEOUT_MS,
  REPO_ROOT,
  RaftcastProcess,
  binaryPath,
  dumpLogs,
  freePort,
  freePorts,
  live,
  startCluster,
  startServer,
  startTopology,
  topologyName,
};
