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

/** Every raftcast process started by this test file and not yet reaped. */
const live = new Set();
/** Every redis-server started by this test file and not yet stopped: { child, dir }. */
const liveRedis = new Set();
/** Temp dirs made by this file and not yet removed (data dirs, redis dirs). */
const tempDirs = new Set();

function makeTempDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

function removeTempDir(dir) {
  fs.rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

// However this file ends (a failed hook, a timeout, an uncaught error): no process and no
// temp dir outlives it. A signal ends it through process.exit so that this runs too.
process.on('exit', () => {
  for (const child of [...[...live].map((p) => p.child), ...[...liveRedis].map((r) => r.child)]) {
    try {
      child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  for (const dir of tempDirs) {
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => process.exit(128 + os.constants.signals[sig]));
}

function binaryPath() {
  if (process.env.RAFTCAST_BIN) return path.resolve(process.env.RAFTCAST_BIN);
  const candidates = [path.join(REPO_ROOT, 'target', 'debug', 'raftcast')];
  if (process.env.CARGO_TARGET_DIR) {
    candidates.push(path.join(path.resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR), 'debug', 'raftcast'));
  }
  for (const c of candidates) if (fs.existsSync(c)) return c;
  throw new Error(`raftcast binary not found (tried ${candidates.join(', ')}); build it or set RAFTCAST_BIN`);
}

// Ports for servers come from a range below the kernel's ephemeral range: a port picked
// there (by binding port 0) and released could be taken by any outgoing connection before
// the server binds it — the nodes' own connections to Redis or to each other included.
// 10000-19999, not tests/cluster_common's 20000-31999, so that the Rust cluster tests
// running at the same time on the machine draw from another pool.
const PORT_MIN = 10_000;
const PORT_MAX = 20_000; // exclusive
/** Ports handed out by this file: never twice, even once free again. */
const handedOut = new Set();

/** The kernel's ephemeral port range, [low, high]. */
function ephemeralRange() {
  try {
    const [low, high] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (low > 0 && high >= low) return [low, high];
  } catch {
    /* not Linux */
  }
  return [32768, 65535];
}

/** Whether a listener can bind 127.0.0.1:port now (it is closed again at once). */
function canListen(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/**
 * n distinct free TCP ports on 127.0.0.1, at random between PORT_MIN and PORT_MAX, outside
 * the ephemeral range, bindable now, and never handed out before by this file.
 */
async function freePorts(n) {
  const [ephLow, ephHigh] = ephemeralRange();
  const ports = [];
  for (let tries = 0; ports.length < n; tries++) {
    if (tries >= 10_000) {
      throw new Error(`no free port in ${PORT_MIN}-${PORT_MAX - 1} outside the ephemeral range ${ephLow}-${ephHigh}`);
    }
    const p = PORT_MIN + Math.floor(Math.random() * (PORT_MAX - PORT_MIN));
    if ((p >= ephLow && p <= ephHigh) || handedOut.has(p)) continue;
    if (!(await canListen(p))) continue;
    handedOut.add(p);
    ports.push(p);
  }
  return ports;
}

async function freePort() {
  return (await freePorts(1))[0];
}

/** How many times a start whose port was taken meanwhile is tried again with new ports. */
const PORT_ATTEMPTS = 3;

function isAddressInUse(err) {
  return /address already in use|EADDRINUSE/i.test(String(err?.message ?? err));
}

/**
 * Runs start() (which picks its own ports) again with new ports when a server could not bind
 * one because another process took it between the pick and the bind.
 */
async function withPortRetry(what, start) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (err) {
      if (attempt >= PORT_ATTEMPTS || !isAddressInUse(err)) throw err;
      process.stderr.write(`# ${what}: a port was taken before the server bound it; again with new ports (${attempt}/${PORT_ATTEMPTS})\n`);
    }
  }
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
    this.dataDir = o.dataDir ?? makeTempDir('raftcast-e2e-');
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
    if (this.ownsDataDir) removeTempDir(this.dataDir);
  }
}

/** One node (a one-member Raft group). Resolves once /readyz answers 200. */
async function startServer(extraArgs = [], opts = {}) {
  return withPortRetry('startServer', async () => {
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
  });
}

/** n nodes forming one Raft group. Resolves once every node's /readyz answers 200. */
async function startCluster(n = 3, extraArgs = [], opts = {}) {
  return withPortRetry('startCluster', async () => {
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
  });
}

function topologyName() {
  const t = process.env.RAFTCAST_TOPOLOGY || 'single';
  if (!['single', 'cluster', 'redis'].includes(t)) {
    throw new Error(`RAFTCAST_TOPOLOGY must be single, cluster or redis, not ${t}`);
  }
  return t;
}

const REDIS_READY_TIMEOUT_MS = 10_000;
const REDIS_STOP_GRACE_MS = 3000;
const REDIS_LINES_KEPT = 50;

/**
 * Asks 127.0.0.1:port for `INFO server` and resolves with the answering process's pid (null
 * when nothing answers within probeMs).
 */
function redisPid(port, probeMs = 500) {
  return new Promise((resolve) => {
    let buf = '';
    const done = (v) => {
      sock.destroy();
      resolve(v);
    };
    const sock = net.connect(port, '127.0.0.1', () => sock.write('INFO server\r\n'));
    sock.setTimeout(probeMs, () => done(null));
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      const m = /\r\nprocess_id:(\d+)\r\n/.exec(buf);
      if (m) done(Number(m[1]));
      else if (buf.startsWith('-')) done(null); // an error reply: not a usable redis-server
    });
    sock.on('error', () => done(null));
    sock.on('close', () => done(null));
  });
}

/**
 * A private redis-server on 127.0.0.1:port (no persistence, its dir a fresh temp dir).
 * Resolves once that very process answers (another server on the port does not count).
 * Stopped by stop(), or killed with its dir removed when this file's process ends.
 */
async function startRedis(port) {
  const dir = makeTempDir('raftcast-e2e-redis-');
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
  const child = spawn('redis-server', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const rec = { child, dir, exit: null, lines: [] };
  liveRedis.add(rec);
  const keep = (chunk) => {
    rec.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    if (rec.lines.length > REDIS_LINES_KEPT) rec.lines.splice(0, rec.lines.length - REDIS_LINES_KEPT);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      rec.exit = { code, signal };
      resolve(rec.exit);
    });
    child.on('error', (err) => {
      rec.exit = { code: null, signal: null, error: err.message };
      resolve(rec.exit);
    });
  });
  const output = () => rec.lines.join('\n');

  const stop = async () => {
    if (!rec.exit) {
      child.kill('SIGTERM');
      let timer;
      const timedOut = await Promise.race([
        exited.then(() => false),
        new Promise((r) => {
          timer = setTimeout(() => r(true), REDIS_STOP_GRACE_MS);
        }),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        child.kill('SIGKILL');
        await exited;
      }
    }
    liveRedis.delete(rec);
    removeTempDir(dir);
  };

  const deadline = Date.now() + REDIS_READY_TIMEOUT_MS;
  let last = 'no answer yet';
  for (;;) {
    if (rec.exit) {
      await stop();
      const hint = rec.exit.error ? ' (is redis-server installed?)' : '';
      throw new Error(`redis-server on port ${port} exited before it answered: ${JSON.stringify(rec.exit)}${hint}\n${output()}`);
    }
    const pid = await redisPid(port);
    if (pid === child.pid) break;
    if (pid !== null) last = `another redis-server (pid ${pid}) answers on port ${port}`;
    if (Date.now() >= deadline) {
      await stop();
      throw new Error(`redis-server did not answer on port ${port} within ${REDIS_READY_TIMEOUT_MS} ms (last: ${last})\n${output()}`);
    }
    await sleep(50);
  }
  return { url: `redis://127.0.0.1:${port}`, port, output, stop };
}

/** n nodes in Redis mode on one private redis-server. */
async function startRedisNodes(n = 2, extraArgs = [], opts = {}) {
  return withPortRetry('startRedisNodes', async () => {
    // The nodes' public and peer ports, then redis-server's.
    const ports = await freePorts(2 * n + 1);
    const redis = await startRedis(ports[2 * n]);
    const nodes = [];
    try {
      for (let i = 0; i < n; i++) {
        const [port, peerPort] = [ports[i], ports[n + i]];
        const args = ['--redis-url', redis.url, '--node-id', String(i + 1), ...extraArgs];
        nodes.push(new RaftcastProcess({ name: `node${i + 1}`, nodeId: i + 1, port, peerPort, extraArgs: args }).start());
      }
      await Promise.all(nodes.map((p) => p.waitReady(opts.readyTimeoutMs)));
    } catch (err) {
      await Promise.all(nodes.map((p) => p.stop(2000)));
      nodes.forEach((p) => p.removeDataDir());
      await redis.stop();
      throw err;
    }
    return { nodes, redis };
  });
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
