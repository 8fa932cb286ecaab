//! glibc malloc tuning, applied once at start before any thread exists.
//!
//! glibc gives threads their own malloc arenas (up to eight per core). A raftcast node runs
//! tokio's workers, sled's I/O pool (seven threads) and the Raft log flushers; memory freed
//! by one thread stays in that thread's arena, so after a connection storm each arena keeps
//! its own high-water mark. One arena measured 20 % less RSS per idle connection on a
//! three-node cluster and no loss of throughput (docs/performance.md, session 7); threads
//! still allocate small blocks from their own cache without taking the arena's lock.
//! `MALLOC_ARENA_MAX` in the environment, read by glibc itself, takes precedence.

/// What [`tune`] did, for the startup log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArenaSetting {
    /// Limited to one arena.
    OneArena,
    /// `MALLOC_ARENA_MAX` is set in the environment: glibc's own reading of it stands.
    FromEnvironment,
    /// Not glibc (or glibc refused the setting): the allocator's defaults stand.
    Unchanged,
}

/// Limits glibc to one malloc arena unless `MALLOC_ARENA_MAX` is set. Call it first thing in
/// `main`, before the runtime starts its threads (threads that already have an arena keep it).
pub fn tune() -> ArenaSetting {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return ArenaSetting::FromEnvironment;
    }
    one_arena()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn one_arena() -> ArenaSetting {
    // SAFETY: mallopt only sets a tunable of glibc's allocator and may be called at any
    // time; M_ARENA_MAX takes effect for threads that have not chosen an arena yet.
    let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    if ok == 1 {
        ArenaSetting::OneArena
    } else {
        ArenaSetting::Unchanged
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn one_arena() -> ArenaSetting {
    ArenaSetting::Unchanged
}
