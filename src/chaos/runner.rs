//! One chaos run from start to verdict: start the cluster, connect the clients, start the
//! load, inject the scheduled faults, restore everything, wait for the cluster and the
//! clients to catch up, collect every node's histories, check, report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parking_lot::Mutex;
use tokio::sync::watch;

use super::check::{check, NodeHistory};
use super::client::{self, ClientSpec};
use super::cluster::Cluster;
use super::error::ChaosError;
use super::faults;
use super::interrupt::interrupted;
use super::load::{self, room_of, Target};
use super::netns::Netns;
use super::plan::{parse_kinds, Dice};
use super::plot;
use super::record::{ClientLog, EmitOutcome, FaultRecord, Journal};
use super::report::{Report, RunSettings, Verdict};
use crate::config::{ChaosArgs, NetMode};

/// Load before the first fault.
const WARMUP: Duration = Duration::from_secs(3);
/// Load after the last fault is undone, before the publisher stops.
const COOLDOWN: Duration = Duration::from_secs(3);
/// How long the cluster may take to form.
const FORM_TIMEOUT: Duration = Duration::from_secs(60);

/// A finished run: the report and where it was written.
#[derive(Debug)]
pub struct Outcome {
    pub report: Report,
    pub json: PathBuf,
    pub plot: Option<PathBuf>,
}

fn validate(a: &ChaosArgs) -> Result<(), ChaosError> {
    let bad = |m: &str| Err(ChaosError::Args(m.into()));
    if !(1..=9).contains(&a.nodes) {
        return bad("--nodes must be 1..=9");
    }
    if !(1..=1000).contains(&a.clients) || !(1..=100).contains(&a.users) {
        return bad("--clients must be 1..=1000 and --users 1..=100");
    }
    if !(1..=1000).contains(&a.batch) {
        return bad("--batch must be 1..=1000");
    }
    if a.rate > 10_000 || a.quote_rate > 10_000 {
        return bad("--rate and --quote-rate must be at most 10000");
    }
    if a.fault_every < Duration::from_millis(500) || a.fault_hold >= a.fault_every {
        return bad("--fault-every must be ≥ 500ms and longer than --fault-hold");
    }
    Ok(())
}

/// Runs the chaos test `args` describes. `show_progress` draws an indicatif bar on stderr.
pub async fn execute(args: ChaosArgs, show_progress: bool) -> Result<Outcome, ChaosError> {
    validate(&args)?;
    let kinds = parse_kinds(&args.faults)?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe().map_err(|e| ChaosError::io("current executable", e))?,
    };
    let wall = Instant::now();
    let mut dice = Dice::new(seed);
    let net = match args.net {
        NetMode::Switch => None,
        NetMode::Netns => Some(Netns::create(args.nodes)?),
    };
    let (net_summary, net_detail, mut net_notes) = announce(net.as_ref());
    let mut cluster = Cluster::new(binary.clone(), args.nodes, seed, net)?;
    let bar = progress_bar(show_progress, args.duration);
    bar.set_message(format!(
        "seed {seed}: starting {} nodes in {}",
        args.nodes,
        cluster.dir.display()
    ));
    let result = if cluster.netns().is_some() {
        // Ctrl-C must not leave namespaces behind: stop, then clean up below.
        tokio::select! {
            r = drive(&args, &kinds, seed, &mut dice, &mut cluster, &bar) => r,
            sig = interrupted() => Err(ChaosError::Interrupted(sig)),
        }
    } else {
        drive(&args, &kinds, seed, &mut dice, &mut cluster, &bar).await
    };
    bar.finish_and_clear();
    cluster.stop_all().await;
    if let Some(problems) = cluster.remove_net() {
        if problems.is_empty() {
            eprintln!("chaos: netns: namespaces, links and node processes removed");
        }
        for p in problems {
            eprintln!("chaos: netns clean-up: {p}");
            net_notes.push(format!("netns clean-up: {p}"));
        }
    }
    let (journal, histories, mut notes) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "chaos: run aborted; node logs are in {}",
                cluster.dir.display()
            );
            return Err(e);
        }
    };
    notes.extend(net_notes);
    let clients: Vec<ClientLog> = journal.clients.iter().map(|c| c.lock().clone()).collect();
    let emits = journal.emits.lock().clone();
    let fault_log = journal.faults.lock().clone();
    let findings = check(&emits, &clients, &histories, &fault_log);
    let failures = findings.failures();
    let passed = failures.is_empty();
    let keep = args.keep || !passed;
    if !keep {
        cluster.remove_dir();
    }
    let report = Report {
        verdict: Verdict { passed, failures },
        settings: RunSettings {
            seed,
            duration_s: args.duration.as_secs_f64(),
            nodes: args.nodes,
            clients: args.clients,
            users: args.users,
            rate: args.rate,
            batch: args.batch,
            quote_rate: args.quote_rate,
            fault_every_s: args.fault_every.as_secs_f64(),
            fault_hold_s: args.fault_hold.as_secs_f64(),
            faults: kinds.iter().map(|k| k.name().to_owned()).collect(),
            binary: binary.display().to_string(),
            command: command_line(&args, seed),
            net: net_summary,
            net_detail,
        },
        wall_s: wall.elapsed().as_secs_f64(),
        findings,
        faults: fault_log,
        clients,
        quotes: journal.quotes.lock().clone(),
        skipped_emits: *journal.skipped.lock(),
        harness_notes: notes,
        data_dir: keep.then(|| cluster.dir.display().to_string()),
    };
    report.write_json(&args.out)?;
    let plot_path = args
        .plot
        .clone()
        .unwrap_or_else(|| args.out.with_extension("png"));
    let title = format!(
        "raftcast chaos — seed {seed}, {} nodes, {} faults",
        args.nodes,
        report.faults.len()
    );
    let plot = match plot::draw(
        &plot_path,
        &report.findings.timeline,
        &report.faults,
        &title,
    ) {
        Ok(()) => Some(plot_path),
        Err(e) => {
            eprintln!("chaos: no plot: {e}");
            None
        }
    };
    Ok(Outcome {
        report,
        json: args.out.clone(),
        plot,
    })
}

/// The network mode for the report (summary, detail lines, notes); with `--net netns` also
/// printed, with what the sweep of crashed runs removed.
fn announce(net: Option<&Netns>) -> (String, Vec<String>, Vec<String>) {
    let Some(n) = net else {
        return (
            "switch: fault switch on 127.0.0.1".into(),
            vec!["fault switch (POST /cluster/fault) on 127.0.0.1".into()],
            Vec::new(),
        );
    };
    eprintln!("chaos: --net netns");
    for line in n.sweep_notes.iter().chain(&n.describe()) {
        eprintln!("chaos:   {line}");
    }
    (
        format!("netns: {}", n.netem().summary()),
        n.describe(),
        n.sweep_notes.clone(),
    )
}

fn progress_bar(show: bool, duration: Duration) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(duration.as_secs().max(1)),
        if show {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len}s {msg}")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The exact command that reruns this run.
fn command_line(a: &ChaosArgs, seed: u64) -> String {
    format!(
        "raftcast chaos --seed {seed} --duration {} --nodes {} --clients {} --users {} --rate {}{} --quote-rate {} --fault-every {} --fault-hold {} --faults {}{}",
        humantime::format_duration(a.duration),
        a.nodes,
        a.clients,
        a.users,
        a.rate,
        if a.batch > 1 {
            format!(" --batch {}", a.batch)
        } else {
            String::new()
        },
        a.quote_rate,
        humantime::format_duration(a.fault_every),
        humantime::format_duration(a.fault_hold),
        a.faults,
        if a.net == NetMode::Netns {
            " --net netns"
        } else {
            ""
        }
    )
}

type Collected = (Arc<Journal>, Vec<NodeHistory>, Vec<String>);

async fn drive(
    args: &ChaosArgs,
    kinds: &[super::plan::FaultKind],
    seed: u64,
    dice: &mut Dice,
    cluster: &mut Cluster,
    bar: &ProgressBar,
) -> Result<Collected, ChaosError> {
    let mut notes = Vec::new();
    // 1. The cluster.
    for i in 0..cluster.len() {
        cluster.spawn(i)?;
    }
    for i in 0..cluster.len() {
        if !cluster.wait_ready(i, FORM_TIMEOUT).await {
            let log = cluster
                .log_path(i)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            return Err(ChaosError::NotReady(format!(
                "node {} not ready (log: {log})",
                cluster.id(i)
            )));
        }
    }
    // 2. Users, sessions, clients.
    let users: Vec<String> = (0..args.users)
        .map(|u| format!("chaos-{seed}-{u}"))
        .collect();
    let mut sessions = Vec::new();
    for u in &users {
        sessions.push(cluster.create_session(u).await?);
    }
    let logs: Vec<ClientLog> = (0..args.clients)
        .map(|id| ClientLog {
            id,
            user: users[id % users.len()].clone(),
            room: room_of(&users[id % users.len()]),
            ..ClientLog::default()
        })
        .collect();
    let journal = Arc::new(Journal::new(logs));
    let (stop_clients, clients_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for id in 0..args.clients {
        let spec = ClientSpec {
            id,
            user: users[id % users.len()].clone(),
            session: sessions[id % users.len()].clone(),
            home: id % cluster.len(),
        };
        let log = journal.clients[id].clone();
        tasks.push(tokio::spawn(client::run(
            spec,
            cluster.view.clone(),
            journal.clone(),
            log,
            clients_rx.clone(),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while journal
        .clients
        .iter()
        .any(|c| c.lock().start_offset.is_none())
    {
        if Instant::now() > deadline {
            return Err(ChaosError::NotReady(
                "clients did not subscribe within 20 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // 3. The load.
    let target = Target {
        view: cluster.view.clone(),
        http: cluster.http.clone(),
        api_key: cluster.api_key.clone(),
    };
    let (stop_load, load_rx) = watch::channel(false);
    let publisher = tokio::spawn(load::publish(
        target.clone(),
        users.clone(),
        (args.rate, args.batch),
        journal.clone(),
        load_rx.clone(),
    ));
    let quoter = tokio::spawn(load::quotes(
        target,
        args.quote_rate,
        journal.clone(),
        load_rx,
    ));
    let phase = Arc::new(Mutex::new(String::from("warm-up")));
    let ticker = tokio::spawn(tick_progress(bar.clone(), journal.clone(), phase.clone()));
    tokio::time::sleep(WARMUP).await;

    // 4. Faults.
    let t0 = Instant::now();
    let count = (args.duration.as_millis() / args.fault_every.as_millis().max(1)) as usize;
    let schedule = dice.schedule(kinds, count);
    for (k, kind) in schedule.iter().enumerate() {
        let at = t0 + args.fault_every * k as u32;
        tokio::time::sleep_until(at.into()).await;
        let client_nodes: Vec<u64> = journal
            .clients
            .iter()
            .filter_map(|c| c.lock().nodes.last().copied())
            .collect();
        *phase.lock() = format!("fault {}/{}: {kind}", k + 1, schedule.len());
        match faults::inject(*kind, cluster, dice, &client_nodes).await {
            Ok(inj) => {
                // The fault is in force from here (recovery times are measured from it).
                let start_ms = journal.now_ms();
                tokio::time::sleep(args.fault_hold).await;
                if let Err(e) = faults::undo(cluster, &inj.undo).await {
                    notes.push(format!("undo of fault {} ({kind}): {e}", k + 1));
                }
                journal.faults.lock().push(FaultRecord {
                    kind: *kind,
                    nodes: inj.nodes,
                    detail: inj.detail,
                    start_ms,
                    end_ms: journal.now_ms(),
                    leader_before: inj.leader_before,
                });
            }
            Err(e) => notes.push(format!("fault {} ({kind}) not injected: {e}", k + 1)),
        }
        *phase.lock() = "recovering".into();
    }
    tokio::time::sleep_until((t0 + args.duration).into()).await;

    // 5. Restore, cool down, stop the load.
    *phase.lock() = "restoring".into();
    notes.extend(cluster.restore_all().await);
    *phase.lock() = "cool-down".into();
    tokio::time::sleep(COOLDOWN).await;
    let _ = stop_load.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), publisher).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), quoter).await;

    // 6. Wait for the nodes and the clients to catch up.
    *phase.lock() = "settling".into();
    let rooms: Vec<String> = users.iter().map(|u| room_of(u)).collect();
    if !settle(cluster, &journal, &rooms, args.settle).await {
        notes.push(format!(
            "not everything caught up within --settle {}",
            humantime::format_duration(args.settle)
        ));
    }
    let _ = stop_clients.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    ticker.abort();

    // 7. Every node's histories.
    *phase.lock() = "collecting histories".into();
    let mut histories = Vec::new();
    for i in 0..cluster.len() {
        for room in &rooms {
            match cluster.history(i, room).await {
                Ok((epoch, events)) => histories.push(NodeHistory {
                    node: cluster.id(i),
                    room: room.clone(),
                    epoch,
                    events,
                }),
                Err(e) => notes.push(e.to_string()),
            }
        }
    }
    Ok((journal, histories, notes))
}

/// Waits (bounded) until every node has the same last offset per room and every client has
/// received everything up to it.
async fn settle(cluster: &Cluster, journal: &Journal, rooms: &[String], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let mut done = true;
        for room in rooms {
            let mut lasts = Vec::new();
            for i in 0..cluster.len() {
                lasts.push(cluster.last_offset(i, room).await);
            }
            let top = lasts.iter().flatten().copied().max().unwrap_or(0);
            if lasts.iter().any(|l| *l != Some(top)) {
                done = false;
            }
            let behind = journal.clients.iter().any(|c| {
                let c = c.lock();
                &c.room == room && c.contiguous < top
            });
            done &= !behind;
        }
        if done {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

async fn tick_progress(bar: ProgressBar, journal: Arc<Journal>, phase: Arc<Mutex<String>>) {
    let start = Instant::now();
    loop {
        let (mut ok, mut refused, mut other) = (0u64, 0u64, 0u64);
        for e in journal.emits.lock().iter() {
            match e.outcome {
                EmitOutcome::Ok { .. } => ok += 1,
                EmitOutcome::Refused => refused += 1,
                _ => other += 1,
            }
        }
        let delivered: usize = journal
            .clients
            .iter()
            .map(|c| c.lock().deliveries.len())
            .sum();
        let warm = start.elapsed().saturating_sub(WARMUP);
        bar.set_position(warm.as_secs());
        bar.set_message(format!(
            "200:{ok} 503:{refused} other:{other} delivered:{delivered} | {}",
            phase.lock()
        ));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
