//! The link faults of the namespace mode and their undoing, by mechanism.
//!
//! With `netem` (probed at set-up; `RAFTCAST_CHAOS_NETEM=off` forces the fallback), a fault
//! on the link `from → to` is an `htb` root on `from`'s `eth0` whose `u32` filter steers
//! packets for `to`'s address into a class with a `netem` leaf: `loss 100%` for a cut,
//! `delay 200ms` for a slow link. Without `netem`:
//!
//! - a cut is an `ip rule from <from>/32 blackhole` in `to`'s namespace: `from`'s packets
//!   cross the bridge and are dropped silently on arrival (the sender gets no error, as
//!   with real loss). The rule sits at preference 100, ahead of the `local` table, which
//!   set-up moves from preference 0 to 1000 in every node namespace (otherwise packets for
//!   a local address never reach a later rule);
//! - a slow link is the same `htb` + `u32` steering into a `tbf` leaf: 128 kbit/s, bursts
//!   of 4 kB, packets queued longer than 250 ms dropped — a bandwidth limit whose delay
//!   grows with the traffic, not a fixed delay.
//!
//! The harness's own traffic (from 10.231.S.1) never matches: only node-to-node packets are
//! hit, like the fault switch's peer-only faults. Healing a node deletes exactly what was
//! added to its namespace.

use super::cmd::Tools;
use super::error::NetnsError;
use super::{Netns, NODE_IF};

/// Preference of the fault rules.
const FAULT_RULE_PREF: &str = "100";
/// Preference the `local` table's rule is moved to.
const LOCAL_RULE_PREF: &str = "1000";
/// The slow link with netem: delay each way (as `--net switch`'s 200 ms).
const NETEM_DELAY: &str = "200ms";
/// The slow link without netem: `tbf` rate, burst and longest queueing.
const TBF_RATE: &str = "128kbit";
const TBF_BURST: &str = "4kb";
const TBF_LATENCY: &str = "250ms";
/// Rate of the pass-through classes (no limit in practice).
const OPEN_RATE: &str = "10gbit";
/// Env switch that turns netem off even where the kernel has it (to test the fallback).
pub const NETEM_ENV: &str = "RAFTCAST_CHAOS_NETEM";

/// Whether the kernel has `netem`, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Netem {
    Available,
    /// The probe's error (e.g. "Specified qdisc kind is unknown.") or the env switch.
    Missing(String),
}

impl Netem {
    /// From the probe's `tc qdisc add ... netem` (None: not tried) and [`NETEM_ENV`].
    pub fn from_probe(probe: Option<Result<String, NetnsError>>) -> Netem {
        let off = std::env::var(NETEM_ENV)
            .is_ok_and(|v| matches!(v.trim(), "off" | "0" | "no" | "false"));
        match probe {
            _ if off => Netem::Missing(format!("turned off by {NETEM_ENV}")),
            Some(Ok(_)) => Netem::Available,
            Some(Err(NetnsError::Command { message, .. })) => Netem::Missing(message),
            Some(Err(e)) => Netem::Missing(e.to_string()),
            None => Netem::Missing("not probed".into()),
        }
    }

    fn on(&self) -> bool {
        *self == Netem::Available
    }

    /// One line for the terminal and the report.
    pub fn describe(&self) -> String {
        match self {
            Netem::Available => "available (tc qdisc netem)".into(),
            Netem::Missing(why) => format!("not available: {why} — using the fallbacks"),
        }
    }

    /// The mechanisms in a few words (the report's table).
    pub fn summary(&self) -> &'static str {
        if self.on() {
            "tc netem (loss, delay)"
        } else {
            "ip rule blackhole, tbf (no netem)"
        }
    }

    /// A cut's mechanism in a few words (each fault's detail).
    pub fn cut_short(&self) -> &'static str {
        if self.on() {
            "netns: netem loss 100%"
        } else {
            "netns: ip rule blackhole on arrival"
        }
    }

    /// A slow link's mechanism in a few words (each fault's detail).
    pub fn slow_short(&self) -> String {
        if self.on() {
            format!("netns: netem delay {NETEM_DELAY}")
        } else {
            format!("netns: tbf {TBF_RATE}, queueing ≤ {TBF_LATENCY}")
        }
    }

    /// How a cut (isolation, one-way loss) is made.
    pub fn cut_mechanism(&self) -> String {
        if self.on() {
            "tc netem loss 100% on the sender's eth0 (htb + u32 on the peer's address)".into()
        } else {
            format!(
                "ip rule from <sender> blackhole (pref {FAULT_RULE_PREF}) in the receiver's \
                 namespace: silent drop on arrival"
            )
        }
    }

    /// How a slow link is made.
    pub fn slow_mechanism(&self) -> String {
        if self.on() {
            format!("tc netem delay {NETEM_DELAY} each way (htb + u32 on the peer's address)")
        } else {
            format!(
                "tc tbf rate {TBF_RATE} burst {TBF_BURST} latency {TBF_LATENCY} each way \
                 (htb + u32 on the peer's address; a bandwidth limit, not a fixed delay)"
            )
        }
    }
}

/// What a node's namespace carries now (so healing removes exactly that).
#[derive(Debug, Default, Clone)]
pub struct NodeFaults {
    rules: usize,
    root: bool,
    loss: bool,
    slow: bool,
}

/// A class under the `htb` root, with its leaf qdisc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf {
    Loss,
    Slow,
}

impl Leaf {
    fn class(self) -> &'static str {
        match self {
            Leaf::Loss => "1:2",
            Leaf::Slow => "1:3",
        }
    }

    fn handle(self) -> &'static str {
        match self {
            Leaf::Loss => "20:",
            Leaf::Slow => "30:",
        }
    }

    /// The leaf qdisc's kind and parameters.
    fn qdisc(self, netem: bool) -> Vec<&'static str> {
        match (self, netem) {
            (Leaf::Loss, _) => vec!["netem", "loss", "100%"],
            (Leaf::Slow, true) => vec!["netem", "delay", NETEM_DELAY],
            (Leaf::Slow, false) => vec![
                "tbf",
                "rate",
                TBF_RATE,
                "burst",
                TBF_BURST,
                "latency",
                TBF_LATENCY,
            ],
        }
    }
}

/// Set-up of a node namespace: the `local` table's rule moves behind the fault rules.
pub fn prepare_rules(tools: &Tools, ns: &str) -> Result<(), NetnsError> {
    tools.ip(&[
        "-n",
        ns,
        "rule",
        "add",
        "pref",
        LOCAL_RULE_PREF,
        "lookup",
        "local",
    ])?;
    tools.ip(&["-n", ns, "rule", "del", "pref", "0"])?;
    Ok(())
}

impl Netns {
    fn update(&self, i: usize, f: impl FnOnce(&mut NodeFaults)) {
        if let Some(s) = self.state.lock().get_mut(i) {
            f(s);
        }
    }

    fn current(&self, i: usize) -> NodeFaults {
        self.state.lock().get(i).cloned().unwrap_or_default()
    }

    /// Drops everything node `from` sends to node `to` (indexes).
    pub async fn cut(&self, from: usize, to: usize) -> Result<(), NetnsError> {
        if self.netem.on() {
            return self.shape(from, to, Leaf::Loss).await;
        }
        let ns = self.node_namespace(to);
        let src = format!("{}/32", self.node_ip(from));
        self.tools
            .ip_async(&[
                "-n",
                &ns,
                "rule",
                "add",
                "pref",
                FAULT_RULE_PREF,
                "from",
                &src,
                "blackhole",
            ])
            .await?;
        self.update(to, |s| s.rules += 1);
        Ok(())
    }

    /// Slows what node `from` sends to node `to`.
    pub async fn slow(&self, from: usize, to: usize) -> Result<(), NetnsError> {
        self.shape(from, to, Leaf::Slow).await
    }

    async fn shape(&self, from: usize, to: usize, leaf: Leaf) -> Result<(), NetnsError> {
        let ns = self.node_namespace(from);
        let tc = |args: Vec<&str>| {
            let mut all = vec!["-n", ns.as_str()];
            all.extend(args);
            all.into_iter().map(str::to_owned).collect::<Vec<String>>()
        };
        let run = |args: Vec<String>| async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            self.tools.tc_async(&refs).await
        };
        let now = self.current(from);
        if !now.root {
            run(tc(vec![
                "qdisc", "add", "dev", NODE_IF, "root", "handle", "1:", "htb", "default", "1",
            ]))
            .await?;
            self.update(from, |s| s.root = true);
            run(tc(vec![
                "class", "add", "dev", NODE_IF, "parent", "1:", "classid", "1:1", "htb", "rate",
                OPEN_RATE, "quantum", "1514",
            ]))
            .await?;
        }
        let has = if leaf == Leaf::Loss {
            now.loss
        } else {
            now.slow
        };
        if !has {
            run(tc(vec![
                "class",
                "add",
                "dev",
                NODE_IF,
                "parent",
                "1:",
                "classid",
                leaf.class(),
                "htb",
                "rate",
                OPEN_RATE,
                "quantum",
                "1514",
            ]))
            .await?;
            let mut q = vec![
                "qdisc",
                "add",
                "dev",
                NODE_IF,
                "parent",
                leaf.class(),
                "handle",
                leaf.handle(),
            ];
            q.extend(leaf.qdisc(self.netem.on()));
            run(tc(q)).await?;
            self.update(from, |s| match leaf {
                Leaf::Loss => s.loss = true,
                Leaf::Slow => s.slow = true,
            });
        }
        let dst = format!("{}/32", self.node_ip(to));
        run(tc(vec![
            "filter",
            "add",
            "dev",
            NODE_IF,
            "parent",
            "1:",
            "protocol",
            "ip",
            "prio",
            "1",
            "u32",
            "match",
            "ip",
            "dst",
            &dst,
            "flowid",
            leaf.class(),
        ]))
        .await?;
        Ok(())
    }

    /// Removes every fault from node `i`'s namespace (a no-op for an untouched node).
    pub async fn heal(&self, i: usize) -> Result<(), NetnsError> {
        let now = self.current(i);
        let ns = self.node_namespace(i);
        let mut first_err = None;
        for _ in 0..now.rules {
            if let Err(e) = self
                .tools
                .ip_async(&["-n", &ns, "rule", "del", "pref", FAULT_RULE_PREF])
                .await
            {
                first_err.get_or_insert(e);
            }
        }
        if now.root {
            if let Err(e) = self
                .tools
                .tc_async(&["-n", &ns, "qdisc", "del", "dev", NODE_IF, "root"])
                .await
            {
                first_err.get_or_insert(e);
            }
        }
        self.update(i, |s| *s = NodeFaults::default());
        first_err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leaf_follows_the_probe() {
        assert_eq!(Leaf::Slow.qdisc(true), ["netem", "delay", "200ms"]);
        assert_eq!(Leaf::Slow.qdisc(false)[0], "tbf");
        assert_eq!(Leaf::Loss.qdisc(true), ["netem", "loss", "100%"]);
        let missing = Netem::from_probe(Some(Err(NetnsError::Command {
            command: "tc qdisc add".into(),
            message: "Error: Specified qdisc kind is unknown.".into(),
        })));
        assert!(missing.describe().contains("qdisc kind is unknown"));
        assert!(missing.cut_mechanism().contains("blackhole"));
        assert!(missing.slow_mechanism().contains("tbf"));
        assert!(Netem::Available.slow_mechanism().contains("netem delay"));
    }

    #[test]
    fn netem_delays_like_the_fault_switch() {
        let ms = crate::chaos::faults::SLOW_LINK_MS;
        assert_eq!(NETEM_DELAY, format!("{ms}ms"));
    }
}
