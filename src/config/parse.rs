//! Value parsers shared by flags, environment variables and the config file.
//!
//! Each parser returns a message that says what was expected; clap puts it next to the
//! flag name, and the env/file layer puts it next to the variable or key.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use super::Secret;

/// Parsed `--peers` list: node id → `host:port` of its peer listener.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Peers(pub BTreeMap<u64, String>);

/// One `--cors-origin` / `--frontend-url` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginList {
    /// `*` was given.
    Any,
    /// Normalised origins (`scheme://host[:port]`).
    List(Vec<String>),
}

/// A bind host: an IP address (IPv6 with or without brackets) or a DNS name.
pub(crate) fn parse_host(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("expected a host name or IP address, got an empty value".into());
    }
    let inner = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    if inner.contains(':') {
        return inner
            .parse::<Ipv6Addr>()
            .map(|ip| ip.to_string())
            .map_err(|_| format!("`{s}` is not a valid IPv6 address"));
    }
    if is_dns_or_ipv4(inner) {
        Ok(inner.to_string())
    } else {
        Err(format!(
            "`{s}` is not a host name or IP address (letters, digits, '.', '-' only)"
        ))
    }
}

fn is_dns_or_ipv4(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
}

/// `host:port` (IPv6 hosts in brackets); the port must be 1-65535.
pub(crate) fn parse_host_port(s: &str) -> Result<String, String> {
    parse_addr(s, false)
}

/// `host:port`; port 0 is accepted when `allow_zero` (an address not bound yet).
pub(crate) fn parse_addr(s: &str, allow_zero: bool) -> Result<String, String> {
    let s = s.trim();
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!(
            "`{s}` is not HOST:PORT (e.g. 127.0.0.1:6000 or [::1]:6000)"
        ));
    };
    if host.is_empty() {
        return Err(format!("`{s}` has no host (expected HOST:PORT)"));
    }
    let host = if let Some(inner) = host.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        inner
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("`{inner}` is not a valid IPv6 address"))?;
        host.to_string()
    } else if host.contains(':') {
        return Err(format!(
            "`{s}`: IPv6 addresses must be written in brackets, e.g. [::1]:6000"
        ));
    } else if is_dns_or_ipv4(host) {
        host.to_string()
    } else {
        return Err(format!("`{host}` is not a host name or IP address"));
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 || allow_zero => Ok(format!("{host}:{p}")),
        _ => Err(format!(
            "`{port}` in `{s}` is not a port (expected 1-65535)"
        )),
    }
}

/// `1=127.0.0.1:6000,2=127.0.0.1:6001`: ids ≥ 1, unique ids and addresses; empty = none.
pub(crate) fn parse_peers(s: &str) -> Result<Peers, String> {
    let mut peers = BTreeMap::new();
    for entry in s
        .split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let Some((id, addr)) = entry.split_once('=') else {
            return Err(format!(
                "entry `{entry}` is not ID=HOST:PORT (e.g. 1=127.0.0.1:6000)"
            ));
        };
        let id = id.trim();
        let id: u64 = match id.parse() {
            Ok(0) => return Err(format!("entry `{entry}`: node ids start at 1")),
            Ok(n) => n,
            Err(_) => {
                return Err(format!(
                    "entry `{entry}`: node id `{id}` is not a positive integer"
                ))
            }
        };
        let addr = parse_host_port(addr).map_err(|e| format!("peer {id}: {e}"))?;
        if let Some((other, _)) = peers.iter().find(|(_, a)| **a == addr) {
            return Err(format!("peers {other} and {id} both use address {addr}"));
        }
        if peers.insert(id, addr).is_some() {
            return Err(format!("node id {id} appears more than once"));
        }
    }
    Ok(Peers(peers))
}

/// Comma-separated origins, or `*`. Paths and trailing slashes are dropped
/// (`https://app.example.com/` → `https://app.example.com`).
pub(crate) fn parse_origins(s: &str) -> Result<OriginList, String> {
    let mut list = Vec::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if entry == "*" {
            return Ok(OriginList::Any);
        }
        let origin = normalise_origin(entry)?;
        if !list.contains(&origin) {
            list.push(origin);
        }
    }
    Ok(OriginList::List(list))
}

fn normalise_origin(entry: &str) -> Result<String, String> {
    let bad = || {
        format!("`{entry}` is not an origin (expected SCHEME://HOST[:PORT], e.g. https://app.example.com, or `*`)")
    };
    let (scheme, rest) = entry.split_once("://").ok_or_else(bad)?;
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if !scheme_ok || authority.is_empty() || authority.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        authority.to_ascii_lowercase()
    ))
}

/// A non-empty secret.
pub(crate) fn parse_secret(s: &str) -> Result<Secret, String> {
    if s.trim().is_empty() {
        Err("a secret must not be empty".into())
    } else {
        Ok(Secret::new(s))
    }
}

/// A `tracing` filter directive such as `info` or `raftcast=debug,openraft=warn`, with the
/// blanks around each comma-separated directive removed.
///
/// tracing-subscriber 0.3 parses a directive by walking its trimmed text but slicing the
/// untrimmed one, so a directive with leading blanks and a non-ASCII character (` A¡=`)
/// panics inside `EnvFilter::try_new`; trimmed, it parses (or is refused) like any other.
pub(crate) fn parse_log_filter(s: &str) -> Result<String, String> {
    let s = s.split(',').map(str::trim).collect::<Vec<_>>().join(",");
    tracing_subscriber::EnvFilter::try_new(&s)
        .map(|_| s)
        .map_err(|e| {
            format!("not a log filter ({e}); expected e.g. `info` or `raftcast=debug,info`")
        })
}

/// A `humantime` duration such as `250ms`, `10s`, `2m`, `24h`, `1h 30m`.
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; expected a duration such as 500ms, 10s, 2m or 24h"))
}
