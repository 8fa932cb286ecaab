//! Removing namespaces and links: this run's at its end (processes inside are killed first,
//! or the namespace would outlive its name), and, at the start of a run, the leftovers of
//! crashed runs — only names of this mode's pattern whose owner process (the pid in the
//! name) no longer exists, so a concurrent run is never touched.

use std::path::Path;

use super::cmd::{kill_pid, Tools};
use super::error::NetnsError;
use super::{HOST_LINK_PREFIX, PREFIX};

/// The pid in a namespace name `rcchaos-<pid>-...`.
pub fn namespace_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, tail) = rest.split_once('-')?;
    (!tail.is_empty()).then_some(())?;
    pid.parse().ok()
}

/// The pid in a host link name `rcc<pid>h<k>`.
pub fn link_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(HOST_LINK_PREFIX)?;
    let (pid, k) = rest.split_once('h')?;
    (!k.is_empty() && k.bytes().all(|b| b.is_ascii_digit())).then_some(())?;
    pid.parse().ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Names of the network namespaces (`ip netns list`).
pub fn namespaces(tools: &Tools) -> Result<Vec<String>, NetnsError> {
    Ok(tools
        .ip(&["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect())
}

/// Names of the host's links (`ip -o link show`).
pub fn host_links(tools: &Tools) -> Result<Vec<String>, NetnsError> {
    Ok(tools
        .ip(&["-o", "link", "show"])?
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|n| n.trim_end_matches(':'))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect())
}

/// Deletes host link `name`. The kernel also removes a veth whose peer's namespace goes
/// away, but asynchronously: a link that vanished meanwhile is not an error.
pub fn remove_link(tools: &Tools, name: &str) -> Result<(), NetnsError> {
    match tools.ip(&["link", "del", name]) {
        Err(_) if !host_links(tools)?.iter().any(|l| l == name) => Ok(()),
        r => r.map(|_| ()),
    }
}

/// Kills every process in namespace `name`, then deletes it.
pub fn remove_namespace(tools: &Tools, name: &str) -> Result<(), NetnsError> {
    if let Ok(pids) = tools.ip(&["netns", "pids", name]) {
        for pid in pids.lines().filter_map(|p| p.trim().parse::<u32>().ok()) {
            kill_pid(pid);
        }
    }
    tools.ip(&["netns", "del", name]).map(|_| ())
}

/// Removes the namespaces and host links of crashed runs; says what it did.
pub fn sweep(tools: &Tools) -> Vec<String> {
    let mut notes = Vec::new();
    let me = std::process::id();
    let stale = |owner: Option<u32>| owner.is_some_and(|p| p != me && !alive(p));
    match namespaces(tools) {
        Ok(names) => {
            for name in names.iter().filter(|n| stale(namespace_owner(n))) {
                match remove_namespace(tools, name) {
                    Ok(()) => notes.push(format!("removed namespace {name} of a crashed run")),
                    Err(e) => notes.push(format!("leftover namespace {name} not removed: {e}")),
                }
            }
        }
        Err(e) => notes.push(format!("cannot list namespaces for leftovers: {e}")),
    }
    // A host link outlives its run only if the bridge namespace could not be deleted.
    if let Ok(links) = host_links(tools) {
        for link in links.iter().filter(|l| stale(link_owner(l))) {
            match remove_link(tools, link) {
                Ok(()) => notes.push(format!("removed host link {link} of a crashed run")),
                Err(e) => notes.push(format!("leftover host link {link} not removed: {e}")),
            }
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_come_from_the_names() {
        assert_eq!(namespace_owner("rcchaos-4242-0-n1"), Some(4242));
        assert_eq!(namespace_owner("rcchaos-4242-1-br"), Some(4242));
        assert_eq!(namespace_owner("rcchaos-x-0-br"), None);
        assert_eq!(namespace_owner("rcchaos-4242"), None);
        assert_eq!(namespace_owner("other-4242-0-n1"), None);
        assert_eq!(link_owner("rcc4242h0"), Some(4242));
        assert_eq!(link_owner("rcc4242h"), None);
        assert_eq!(link_owner("rcc42x2h1"), None);
        assert_eq!(link_owner("eth0"), None);
    }
}
