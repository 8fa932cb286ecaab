//! `raftcast chaos --net netns` for real: a ~24 s run of a 3-node cluster of this build's
//! binary, each node in a network namespace of its own, with an isolated leader (a real
//! network partition) and a leader kill under load; it must pass, and leave no namespace,
//! link or process behind. Also: the namespaces go away when a set-up is dropped, and
//! leftovers of a crashed run (a dead owner pid) are swept.
//!
//! Needs root and `ip netns`; elsewhere every test prints why it skips and passes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use raftcast::chaos::execute;
use raftcast::chaos::netns::cmd::Tools;
use raftcast::chaos::netns::{self, Netns};
use raftcast::config::NetMode;
use tokio::sync::Mutex;

mod chaos_common;

/// One test at a time: each set-up sweeps leftovers, and the run wants both cores.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// Whether the mode can run here; prints the reason when not.
fn usable(test: &str) -> bool {
    match netns::available() {
        Ok(()) => true,
        Err(e) => {
            println!("{test}: skipped: {e}");
            false
        }
    }
}

fn ip(args: &[&str]) -> Result<String, netns::NetnsError> {
    Tools::find()?.ip(args)
}

fn namespaces_with(prefix: &str) -> Vec<String> {
    ip(&["netns", "list"])
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

fn host_link_exists(name: &str) -> bool {
    ip(&["link", "show", "dev", name]).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_netns_partition_and_kill() {
    let _serial = SERIAL.lock().await;
    if !usable("chaos_netns_partition_and_kill") {
        return;
    }
    let mine = format!("{}{}-", netns::PREFIX, std::process::id());
    let out_dir = std::env::temp_dir().join(format!("raftcast-chaos-netns-{}", std::process::id()));
    let args = chaos_common::args(
        &out_dir,
        11,
        Duration::from_secs(24),
        "isolate-leader,kill-leader",
        (Duration::from_secs(8), Duration::from_secs(3)),
        NetMode::Netns,
    );
    let outcome = execute(args, false)
        .await
        .expect("the netns chaos run could not be carried out");
    let r = &outcome.report;
    println!("{}", r.table());
    for line in &r.settings.net_detail {
        println!("net: {line}");
    }
    for f in &r.faults {
        println!("fault: {} — {}", f.kind, f.detail);
    }
    assert_eq!(r.faults.len(), 3, "three faults injected");
    let kinds: Vec<String> = r.faults.iter().map(|f| f.kind.to_string()).collect();
    assert!(kinds.contains(&"isolate-leader".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"kill-leader".to_owned()), "{kinds:?}");
    assert!(r.settings.net.starts_with("netns"), "{}", r.settings.net);
    assert!(r.settings.command.contains("--net netns"));
    assert!(r.findings.emits.ok > 100, "the publisher got emits through");
    assert!(
        r.verdict.passed,
        "netns chaos run failed: {:?}",
        r.verdict.failures
    );
    assert!(
        !r.harness_notes.iter().any(|n| n.contains("clean-up")),
        "{:?}",
        r.harness_notes
    );
    assert_eq!(
        namespaces_with(&mine),
        Vec::<String>::new(),
        "namespaces left"
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn dropping_a_setup_removes_everything() {
    let _serial = SERIAL.blocking_lock();
    if !usable("dropping_a_setup_removes_everything") {
        return;
    }
    let net = Netns::create(2).expect("set-up");
    let (tag, link) = (net.tag().to_owned(), net.host_link().to_owned());
    let names = namespaces_with(&tag);
    assert_eq!(names.len(), 3, "bridge + 2 nodes: {names:?}");
    assert!(host_link_exists(&link));
    drop(net);
    assert_eq!(namespaces_with(&tag), Vec::<String>::new());
    assert!(!host_link_exists(&link), "host link {link} left");
}

#[test]
fn leftovers_of_a_dead_run_are_swept() {
    let _serial = SERIAL.blocking_lock();
    if !usable("leftovers_of_a_dead_run_are_swept") {
        return;
    }
    // A pid that existed and is gone: a finished child's.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = format!("{}{dead}-0-n1", netns::PREFIX);
    ip(&["netns", "add", &stale]).unwrap();
    let net = Netns::create(1).expect("set-up");
    let swept = net.sweep_notes.join("; ");
    drop(net);
    let left = namespaces_with(&stale);
    if !left.is_empty() {
        let _ = ip(&["netns", "del", &stale]);
    }
    assert!(left.is_empty(), "stale {stale} not swept ({swept})");
    assert!(swept.contains(&stale), "{swept}");
}
