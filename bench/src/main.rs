//! raftcast-bench: a Socket.IO load generator (Engine.IO 4 / Socket.IO 5 over WebSocket) and
//! the report writer for `bench/run.sh`.
//!
//! ```text
//! raftcast-bench scenario --scenario fanout --system baseline --nodes 127.0.0.1:5011,... \
//!     --api-key k --pids 123,124,125 --pid-file /tmp/redis.pid --profile smoke --out r.json
//! raftcast-bench wait --nodes 127.0.0.1:5011 --path /healthz --timeout-s 30
//! raftcast-bench report --results bench/results/latest --out bench
//! ```

mod client;
mod error;
mod hist;
mod http;
mod plots;
mod procstat;
mod report;
mod result;
mod scenario;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::{BenchError, Result};
use crate::scenario::{Env, Profile};

#[derive(Parser)]
#[command(version, about = "raftcast benchmark harness")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum ScenarioName {
    /// M1 memory per idle connection + M6 handshakes/s
    Idle,
    /// M3 CPU per million deliveries + M2 max one-room fan-out
    Fanout,
    /// M3b + M2b: the same as `fanout` with the emits posted ten at a time
    Burst,
    /// M4 cross-node latency at 100 emits/s + M5 max cross-node emits/s
    Crossnode,
    /// M7 leader kill / Redis restart during 1,000 emits/s
    Failover,
    /// S1-S5 the seed guide's latency table, one operation at a time
    Seed,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProfileName {
    Smoke,
    Full,
}

#[derive(Args)]
struct ScenarioArgs {
    #[arg(long, value_enum)]
    scenario: ScenarioName,
    /// Name of the system under test (raftcast, baseline, raw).
    #[arg(long)]
    system: String,
    /// Public addresses of the nodes, comma-separated (node id = position).
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<SocketAddr>,
    #[arg(long, default_value = "k")]
    api_key: String,
    /// Server pids in node order, sampled in /proc for RSS and CPU.
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    /// Extra pid files whose process counts as part of the system (e.g. Redis).
    #[arg(long)]
    pid_file: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "smoke")]
    profile: ProfileName,
    /// Number of 127.0.0.x source addresses to spread client connections over.
    #[arg(long, default_value_t = 4)]
    source_ips: u8,
    /// M7: find the Raft leader via GET /cluster/status and SIGKILL its pid.
    #[arg(long)]
    kill_leader: bool,
    /// M7: shell command that disrupts the system (e.g. restarts Redis).
    #[arg(long)]
    disrupt_cmd: Option<String>,
    /// Override the profile's connection count for `idle`.
    #[arg(long)]
    conns: Option<usize>,
    /// Override the profile's settle time for `idle`, in seconds.
    #[arg(long)]
    settle_s: Option<u64>,
    /// Override the profile's one-room fan-out member count.
    #[arg(long)]
    members: Option<usize>,
    /// Override the profile's members per room in `crossnode` (3: one on each node, the
    /// durable-commit throughput with little fan-out).
    #[arg(long)]
    cross_members: Option<usize>,
    /// Emits per request in the M5 ramp of `crossnode` (raftcast only: more than 1 posts
    /// them together to `/api/emit/batch`).
    #[arg(long)]
    cross_batch: Option<usize>,
    /// Emits per request in `fanout` (M3 and M2; raftcast only: more than 1 posts them
    /// together to `/api/emit/batch`, so every member gets them back to back).
    #[arg(long)]
    fan_batch: Option<usize>,
    /// Emits posted together in `fanout` (M3 and M2), each its own `/api/emit` request (any
    /// system): the same average rate in bursts, so every member gets them back to back.
    /// Above 1 it is also the burst size of the `burst` scenario (default 10).
    #[arg(long)]
    fan_burst: Option<usize>,
    /// Override the first emit rate of the M5 ramp (emits/s).
    #[arg(long)]
    cross_start_rate: Option<f64>,
    /// Override the profile's number of ramp steps (M2 and M5).
    #[arg(long)]
    max_steps: Option<usize>,
    /// Override the profile's number of refining steps after a ramp's first failure (M2
    /// and M5; each halves the gap between the last passing and the first failing rate).
    #[arg(long)]
    refine_steps: Option<usize>,
    /// Override the profile's step duration, in seconds.
    #[arg(long)]
    step_s: Option<u64>,
    #[arg(long, default_value_t = 1)]
    round: u32,
    /// Runtime worker threads of the load generator (1 leaves the other core to servers).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one scenario against a running system and write its JSON result.
    Scenario(Box<ScenarioArgs>),
    /// Wait until every node answers 200 on `path`.
    Wait {
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<SocketAddr>,
        #[arg(long, default_value = "/healthz")]
        path: String,
        #[arg(long, default_value_t = 30)]
        timeout_s: u64,
    },
    /// Aggregate result JSONs into RESULTS.md and plots.
    Report {
        /// Directory with the scenario JSON files.
        #[arg(long)]
        results: PathBuf,
        /// Directory that receives RESULTS.md and plots/.
        #[arg(long)]
        out: PathBuf,
    },
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?)
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("raftcast-bench: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Scenario(args) => {
            let ScenarioArgs {
                scenario,
                system,
                nodes,
                api_key,
                pids,
                pid_file,
                profile,
                source_ips,
                kill_leader,
                disrupt_cmd,
                conns,
                settle_s,
                step_s,
                members,
                cross_members,
                cross_batch,
                fan_batch,
                fan_burst,
                cross_start_rate,
                max_steps,
                refine_steps,
                round,
                threads,
                out,
            } = *args;
            let mut profile = match profile {
                ProfileName::Smoke => Profile::smoke(),
                ProfileName::Full => Profile::full(),
            };
            if let Some(c) = conns {
                profile.idle_conns = c;
            }
            if let Some(s) = settle_s {
                profile.idle_settle_s = s;
            }
            if let Some(m) = members {
                profile.fan_members = m;
            }
            if let Some(m) = cross_members {
                profile.cross_members_per_room = m.max(1);
            }
            if let Some(b) = cross_batch {
                profile.cross_batch = b.clamp(1, 1000);
            }
            if let Some(b) = fan_batch {
                profile.fan_batch = b.clamp(1, 1000);
            }
            if let Some(b) = fan_burst {
                profile.fan_burst = b.clamp(1, 256);
            }
            if let Some(r) = cross_start_rate {
                profile.cross_start_rate = r.max(1.0);
            }
            if let Some(m) = max_steps {
                profile.fan_max_steps = m;
                profile.cross_max_steps = m;
            }
            if let Some(r) = refine_steps {
                profile.refine_steps = r;
            }
            if let Some(s) = step_s {
                profile.step_s = s;
            }
            if source_ips == 0 {
                return Err(BenchError::Config("--source-ips must be at least 1".into()));
            }
            let env = Env {
                system,
                nodes,
                api_key,
                watched: procstat::Watched {
                    pids: pids.clone(),
                    pid_files: pid_file,
                },
                pids,
                source_ips: (1..=source_ips)
                    .map(|i| Ipv4Addr::new(127, 0, 0, i))
                    .collect(),
                profile,
                kill_leader,
                disrupt_cmd,
                round,
            };
            let rt = runtime(threads)?;
            let res = rt.block_on(async {
                match scenario {
                    ScenarioName::Idle => scenario::idle(&env).await,
                    ScenarioName::Fanout => scenario::fanout(&env).await,
                    ScenarioName::Burst => scenario::burst(&env).await,
                    ScenarioName::Crossnode => scenario::crossnode(&env).await,
                    ScenarioName::Failover => scenario::failover(&env).await,
                    ScenarioName::Seed => scenario::seed(&env).await,
                }
            })?;
            // Client tasks may still be closing; do not wait for them.
            rt.shutdown_timeout(Duration::from_millis(500));
            for m in &res.metrics {
                println!(
                    "{:<9} {:<3} {:<38} {:>14.3} {:<20} (loadgen CPU {:.0} %, server CPU {:.0} %, other {:.0} %, steal {:.0} %)",
                    res.system,
                    m.id,
                    m.name,
                    m.value,
                    m.unit,
                    m.loadgen_cpu_pct,
                    m.server_cpu_pct,
                    m.other_cpu_pct.unwrap_or(0.0),
                    m.steal_pct.unwrap_or(0.0)
                );
            }
            for n in &res.notes {
                println!("{:<9}     note: {n}", res.system);
            }
            if let Some(dir) = out.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&out, serde_json::to_vec_pretty(&res)?)?;
            Ok(())
        }
        Cmd::Wait {
            nodes,
            path,
            timeout_s,
        } => runtime(1)?.block_on(wait(nodes, path, timeout_s)),
        Cmd::Report { results, out } => report::write(&results, &out),
    }
}

async fn wait(nodes: Vec<SocketAddr>, path: String, timeout_s: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(timeout_s);
    for addr in nodes {
        loop {
            let mut c = http::HttpConn::new(addr);
            let ok = matches!(
                tokio::time::timeout(Duration::from_secs(2), c.request("GET", &path, None, None)).await,
                Ok(Ok(r)) if r.status == 200
            );
            if ok {
                break;
            }
            if Instant::now() >= deadline {
                return Err(BenchError::Timeout(format!("{addr}{path} not ready")));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}
