//! Picking the run's private subnet, `10.231.S.0/24`: the first S (starting from one derived
//! from the process id, so parallel runs differ) whose /24 overlaps no address and no route
//! the host already has (the default route aside).

use std::net::Ipv4Addr;

use super::cmd::Tools;
use super::error::NetnsError;

/// First two octets of every subnet the mode uses.
pub const BASE: [u8; 2] = [10, 231];

/// An IPv4 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Prefix {
    fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len.min(32)))
        }
    }

    /// Whether the two prefixes share an address.
    pub fn overlaps(&self, other: &Prefix) -> bool {
        let m = Prefix::mask(self.len.min(other.len));
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }

    /// `a.b.c.d/len` or `a.b.c.d` (a /32).
    pub fn parse(s: &str) -> Option<Prefix> {
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => (a, l.parse().ok().filter(|l| *l <= 32)?),
            None => (s, 32),
        };
        Some(Prefix {
            addr: a.parse().ok()?,
            len,
        })
    }
}

/// The route types `ip route` prints before the prefix.
const ROUTE_TYPES: [&str; 11] = [
    "unicast",
    "local",
    "broadcast",
    "multicast",
    "anycast",
    "blackhole",
    "unreachable",
    "prohibit",
    "throw",
    "nat",
    "xresolve",
];

/// The prefixes in use on the host, from `ip -4 -o addr` and `ip -4 route show table all`
/// output (the default route is not counted: it covers everything).
pub fn prefixes_in_use(addrs: &str, routes: &str) -> Vec<Prefix> {
    let mut out = Vec::new();
    for line in addrs.lines() {
        let mut words = line.split_whitespace();
        if words.any(|w| w == "inet") {
            if let Some(p) = words.next().and_then(Prefix::parse) {
                out.push(p);
            }
        }
    }
    for line in routes.lines() {
        let mut words = line.split_whitespace().peekable();
        if words.peek().is_some_and(|w| ROUTE_TYPES.contains(w)) {
            words.next();
        }
        if let Some(p) = words.next().and_then(Prefix::parse) {
            out.push(p);
        }
    }
    out
}

/// The first free third octet, trying every value once from a start derived from `seed`.
pub fn pick(used: &[Prefix], seed: u32) -> Option<u8> {
    (0..250u32)
        .map(|k| ((seed.wrapping_add(k)) % 250 + 1) as u8)
        .find(|s| {
            let mine = Prefix {
                addr: Ipv4Addr::new(BASE[0], BASE[1], *s, 0),
                len: 24,
            };
            !used.iter().any(|p| p.overlaps(&mine))
        })
}

/// Picks the run's subnet from the host's addresses and routes now.
pub fn choose(tools: &Tools, seed: u32) -> Result<u8, NetnsError> {
    let addrs = tools.ip(&["-4", "-o", "addr", "show"])?;
    let routes = tools.ip(&["-4", "route", "show", "table", "all"])?;
    pick(&prefixes_in_use(&addrs, &routes), seed).ok_or(NetnsError::NoSubnet)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRS: &str = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
                         4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\n\
                         9: rcc1h0    inet 10.231.7.1/24 scope global rcc1h0\n";
    const ROUTES: &str = "default via 192.0.2.1 dev eth0\n\
                          10.231.8.0/24 dev x proto kernel scope link src 10.231.8.1\n\
                          local 10.231.9.1 dev y table local proto kernel scope host\n\
                          blackhole 10.231.10.0/23\n";

    #[test]
    fn skips_subnets_the_host_uses() {
        let used = prefixes_in_use(ADDRS, ROUTES);
        assert_eq!(used.len(), 6, "{used:?}");
        // Seed 6 starts at 7: 7 (addr), 8 (route), 9 (local), 10 and 11 (the /23) are taken.
        assert_eq!(pick(&used, 6), Some(12));
        assert_eq!(pick(&used, 0), Some(1));
    }

    #[test]
    fn a_covering_route_takes_every_subnet() {
        let used = prefixes_in_use("", "10.0.0.0/8 via 192.0.2.9 dev eth0\n");
        assert_eq!(pick(&used, 3), None);
        let used = prefixes_in_use("", "default via 192.0.2.1 dev eth0\n");
        assert_eq!(pick(&used, 3), Some(4));
    }

    #[test]
    fn prefixes_overlap_by_the_shorter_mask() {
        let p = |s| {
            Prefix::parse(s).unwrap_or(Prefix {
                addr: Ipv4Addr::UNSPECIFIED,
                len: 0,
            })
        };
        assert!(p("10.231.5.0/24").overlaps(&p("10.231.5.77")));
        assert!(p("10.0.0.0/8").overlaps(&p("10.231.5.0/24")));
        assert!(!p("10.231.5.0/24").overlaps(&p("10.231.6.0/24")));
        assert!(Prefix::parse("10.1.2.3/40").is_none());
    }
}
