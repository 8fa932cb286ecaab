//! Free loopback ports for tests that start `raftcast` processes.
//!
//! A port found by binding `:0` and releasing it comes from the kernel's ephemeral range,
//! where any outgoing connection (another test's client, a node's peer link) can take it
//! before the process under test binds it: CI saw `Address already in use` on a node's peer
//! port that way. These come from below that range, are bindable when handed out, and are
//! never handed out twice by one registry.

/// A free loopback port: below the kernel's ephemeral range (so no outgoing connection
/// takes it meanwhile), bindable now, and never handed out twice by this process.
pub fn free_port() -> u16 {
    static USED: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut used = USED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let p: u16 = rand::random_range(20_000..32_000);
        if used.contains(&p) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            used.push(p);
            return p;
        }
    }
}
