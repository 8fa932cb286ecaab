//! `raftcast chaos --net netns`: every node in a network namespace of its own, and real
//! network faults instead of the nodes' fault switch.
//!
//! Layout of one run (`TAG` = `rcchaos-<pid>-<k>`, `S` = a free third octet, see
//! [`subnet`]):
//!
//! ```text
//!  host netns                 TAG-br (no address)            TAG-n1 … TAG-nN
//!  rcc<pid>h<k> 10.231.S.1 ── harness ┐                ┌ p1 ── eth0 10.231.S.11
//!                                     ├── br0 (bridge) ┼ p2 ── eth0 10.231.S.12
//!                                     ┘                └ …
//! ```
//!
//! The node namespaces hold only their `/24` (no default route), the bridge namespace has
//! no address at all, so nothing is routed towards the host's own network; the harness
//! (clients, publisher, status and history reads) reaches the nodes from the host through
//! the one veth `rcc<pid>h<k>`. Nodes run as `ip netns exec TAG-nI raftcast ...` (which
//! execs: the child's pid is the node's, so SIGKILL/SIGSTOP work as in the switch mode).
//!
//! Set-up probes first: root, `ip`/`tc`, a scratch namespace with a veth pair on which a
//! `netem` qdisc is tried; the [`shape`] module picks the fault mechanisms from the result.
//! Everything is removed by [`Netns::remove`] (also from `Drop`, so on errors and panics;
//! the runner turns SIGINT/SIGTERM into an orderly stop); at the start, leftovers of
//! crashed runs are swept ([`sweep`]).

pub mod cmd;
pub mod error;
pub mod shape;
pub mod subnet;
pub mod sweep;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

pub use error::NetnsError;

use cmd::{effective_uid, Tools};
use shape::{Netem, NodeFaults};
use sweep::remove_namespace;

/// Prefix of every namespace this mode creates (`rcchaos-<pid>-<k>-…`).
pub const PREFIX: &str = "rcchaos-";
/// Prefix of the host end of the harness veth (`rcc<pid>h<k>`, within 15 characters).
pub const HOST_LINK_PREFIX: &str = "rcc";
/// Public port of every node (each has its own address).
pub const PUBLIC_PORT: u16 = 7000;
/// Peer (Raft) port of every node.
pub const PEER_PORT: u16 = 7001;
/// The node's interface inside its namespace.
pub const NODE_IF: &str = "eth0";
/// Host part of the harness address; node `i` (index) gets `NODE_HOST_BASE + 1 + i`.
const HARNESS_HOST: u8 = 1;
const NODE_HOST_BASE: u8 = 10;

/// Runs of this process so far (two runs in one process get different names).
static RUNS: AtomicU32 = AtomicU32::new(0);

/// Whether this process could use the mode: root, iproute2, and a namespace can be made.
/// (What `--net netns` checks first; the test uses it to decide whether to skip.)
pub fn available() -> Result<(), NetnsError> {
    let mut net = Netns::blank(1)?;
    net.probe().map(|_| ())
}

/// One run's namespaces, links and fault state.
pub struct Netns {
    tools: Tools,
    tag: String,
    host_link: String,
    subnet: u8,
    nodes: usize,
    netem: Netem,
    made: Vec<String>,
    link_made: bool,
    state: Mutex<Vec<NodeFaults>>,
    removed: bool,
    /// What the sweep of crashed runs' leftovers did.
    pub sweep_notes: Vec<String>,
}

impl Netns {
    /// The names and tools of a new run; creates nothing.
    fn blank(nodes: usize) -> Result<Netns, NetnsError> {
        match effective_uid() {
            Some(0) => {}
            Some(uid) => return Err(NetnsError::NotRoot(uid)),
            None => {
                return Err(NetnsError::Unavailable(
                    "cannot read the uid from /proc/self/status".into(),
                ))
            }
        }
        let tools = Tools::find()?;
        let pid = std::process::id();
        let k = RUNS.fetch_add(1, Ordering::Relaxed) % 10_000;
        Ok(Netns {
            tools,
            tag: format!("{PREFIX}{pid}-{k}"),
            host_link: format!("{HOST_LINK_PREFIX}{pid}h{k}"),
            subnet: 0,
            nodes,
            netem: Netem::Missing(String::new()),
            made: Vec::new(),
            link_made: false,
            state: Mutex::new((0..nodes).map(|_| NodeFaults::default()).collect()),
            removed: false,
            sweep_notes: Vec::new(),
        })
    }

    /// Sweeps leftovers, probes, and builds the bridge and `nodes` node namespaces. On an
    /// error everything made so far is removed again (by `Drop`).
    pub fn create(nodes: usize) -> Result<Netns, NetnsError> {
        let mut net = Netns::blank(nodes)?;
        net.sweep_notes = sweep::sweep(&net.tools);
        net.netem = net.probe()?;
        let seed = std::process::id()
            .wrapping_mul(7)
            .wrapping_add(RUNS.load(Ordering::Relaxed));
        net.subnet = subnet::choose(&net.tools, seed)?;
        net.build()?;
        Ok(net)
    }

    fn add_namespace(&mut self, name: &str) -> Result<(), NetnsError> {
        self.tools.ip(&["netns", "add", name])?;
        self.made.push(name.to_owned());
        Ok(())
    }

    /// A scratch namespace with a veth pair: can namespaces be made, and has the kernel
    /// `netem`? The scratch namespace is removed before returning.
    fn probe(&mut self) -> Result<Netem, NetnsError> {
        let ns = format!("{}-probe", self.tag);
        self.add_namespace(&ns)
            .map_err(|e| NetnsError::Unavailable(e.to_string()))?;
        let veth = self.tools.ip(&[
            "-n", &ns, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1",
        ]);
        let netem = veth.as_ref().ok().map(|_| {
            self.tools.tc(&[
                "-n", &ns, "qdisc", "add", "dev", "probe0", "root", "netem", "delay", "1ms",
            ])
        });
        let removed = remove_namespace(&self.tools, &ns);
        self.made.retain(|n| *n != ns);
        veth?;
        removed?;
        Ok(Netem::from_probe(netem))
    }

    fn build(&mut self) -> Result<(), NetnsError> {
        let br = self.bridge_namespace();
        self.add_namespace(&br)?;
        let ip = self.tools.clone();
        ip.ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip.ip(&["-n", &br, "link", "set", "br0", "up"])?;
        let host = self.host_link.clone();
        ip.ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", "harness", "netns", &br,
        ])?;
        self.link_made = true;
        // No IPv6 chatter from the host end into the test network (best effort).
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{host}/disable_ipv6"), "1");
        ip.ip(&["-n", &br, "link", "set", "harness", "master", "br0", "up"])?;
        let harness = format!("{}/24", self.harness_ip());
        ip.ip(&["addr", "add", &harness, "dev", &host])?;
        ip.ip(&["link", "set", &host, "up"])?;
        for i in 0..self.nodes {
            let ns = self.node_namespace(i);
            self.add_namespace(&ns)?;
            let port = format!("p{}", i + 1);
            ip.ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", NODE_IF, "netns",
                &ns,
            ])?;
            ip.ip(&["-n", &br, "link", "set", &port, "master", "br0", "up"])?;
            let addr = format!("{}/24", self.node_ip(i));
            ip.ip(&["-n", &ns, "addr", "add", &addr, "dev", NODE_IF])?;
            ip.ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip.ip(&["-n", &ns, "link", "set", NODE_IF, "up"])?;
            shape::prepare_rules(&ip, &ns)?;
        }
        Ok(())
    }

    /// Namespace of node index `i`.
    pub fn node_namespace(&self, i: usize) -> String {
        format!("{}-n{}", self.tag, i + 1)
    }

    /// The bridge's namespace.
    pub fn bridge_namespace(&self) -> String {
        format!("{}-br", self.tag)
    }

    /// The common prefix of this run's namespace names.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The host end of the harness veth.
    pub fn host_link(&self) -> &str {
        &self.host_link
    }

    /// Address of node index `i`.
    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        let host = NODE_HOST_BASE.saturating_add(1).saturating_add(i as u8);
        Ipv4Addr::new(subnet::BASE[0], subnet::BASE[1], self.subnet, host)
    }

    /// The harness's address (host end of the harness veth).
    pub fn harness_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(subnet::BASE[0], subnet::BASE[1], self.subnet, HARNESS_HOST)
    }

    /// `ip`, to start node processes with `ip netns exec`.
    pub fn tools(&self) -> &Tools {
        &self.tools
    }

    /// The layout and the mechanism per fault kind, one line each (terminal and report).
    pub fn describe(&self) -> Vec<String> {
        let last = self.node_ip(self.nodes.saturating_sub(1));
        vec![
            format!(
                "namespaces {tag}-br (bridge) and {tag}-n1..n{n}; subnet 10.231.{s}.0/24, \
                 nodes .{first}..{last_host}, harness {h} on host link {link}",
                tag = self.tag,
                n = self.nodes,
                s = self.subnet,
                first = self.node_ip(0).octets()[3],
                last_host = last.octets()[3],
                h = self.harness_ip(),
                link = self.host_link,
            ),
            format!("netem: {}", self.netem.describe()),
            format!("isolate-leader, one-way: {}", self.netem.cut_mechanism()),
            format!("slow-link: {}", self.netem.slow_mechanism()),
            "kill-*, pause-*: signals, as with --net switch".into(),
        ]
    }

    /// Whether `netem` is in use.
    pub fn netem(&self) -> &Netem {
        &self.netem
    }

    /// Kills what runs in the namespaces, deletes them and the host link, and checks that
    /// nothing with this run's names is left. Returns the problems (empty: all gone).
    pub fn remove(&mut self) -> Vec<String> {
        if self.removed {
            return Vec::new();
        }
        self.removed = true;
        let mut problems = Vec::new();
        for ns in std::mem::take(&mut self.made).iter().rev() {
            if let Err(e) = remove_namespace(&self.tools, ns) {
                problems.push(e.to_string());
            }
        }
        // The host end goes with the bridge namespace; delete it if it did not.
        if self.link_made {
            match sweep::host_links(&self.tools) {
                Ok(links) if links.contains(&self.host_link) => {
                    if let Err(e) = sweep::remove_link(&self.tools, &self.host_link) {
                        problems.push(e.to_string());
                    }
                }
                Ok(_) => {}
                Err(e) => problems.push(e.to_string()),
            }
        }
        let mine = format!("{}-", self.tag);
        match sweep::namespaces(&self.tools) {
            Ok(names) => problems.extend(
                names
                    .iter()
                    .filter(|n| n.starts_with(&mine))
                    .map(|n| format!("namespace {n} is still there")),
            ),
            Err(e) => problems.push(e.to_string()),
        }
        problems
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for p in self.remove() {
            eprintln!("chaos: netns clean-up: {p}");
        }
    }
}
