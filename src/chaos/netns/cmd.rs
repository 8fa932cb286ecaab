//! Running `ip` and `tc` for the namespace mode: where the tools are, whether this process
//! is root, and one command at a time — blocking (set-up and clean-up, which also run from
//! `Drop`) or async (faults during the run) — each with a time limit.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::error::NetnsError;

/// Longest any single `ip`/`tc` command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(10);

/// The effective uid of this process, from `/proc/self/status` (the crate has no unsafe
/// code, so no `geteuid`).
pub fn effective_uid() -> Option<u32> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Finds `name` on PATH or in the usual sbin directories (root's PATH may lack them).
fn find(name: &str) -> Result<PathBuf, NetnsError> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| NetnsError::NoTool(format!("`{name}` not found on PATH nor in /usr/sbin")))
}

/// The iproute2 tools, found once.
#[derive(Debug, Clone)]
pub struct Tools {
    ip: PathBuf,
    tc: PathBuf,
}

impl Tools {
    /// Finds `ip` and `tc`.
    pub fn find() -> Result<Tools, NetnsError> {
        Ok(Tools {
            ip: find("ip")?,
            tc: find("tc")?,
        })
    }

    /// `ip ARGS`, blocking; its stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String, NetnsError> {
        run_blocking(&self.ip, args)
    }

    /// `tc ARGS`, blocking; its stdout.
    pub fn tc(&self, args: &[&str]) -> Result<String, NetnsError> {
        run_blocking(&self.tc, args)
    }

    /// `ip ARGS` without blocking the runtime.
    pub async fn ip_async(&self, args: &[&str]) -> Result<String, NetnsError> {
        run_async(&self.ip, args).await
    }

    /// `tc ARGS` without blocking the runtime.
    pub async fn tc_async(&self, args: &[&str]) -> Result<String, NetnsError> {
        run_async(&self.tc, args).await
    }

    /// The path of `ip` (node processes start as `ip netns exec NS BINARY ...`).
    pub fn ip_path(&self) -> &Path {
        &self.ip
    }
}

fn shown(prog: &Path, args: &[&str]) -> String {
    let name = prog.file_name().and_then(|n| n.to_str()).unwrap_or("?");
    format!("{name} {}", args.join(" "))
}

fn failed(prog: &Path, args: &[&str], message: impl Into<String>) -> NetnsError {
    NetnsError::Command {
        command: shown(prog, args),
        message: message.into(),
    }
}

fn outcome(
    prog: &Path,
    args: &[&str],
    ok: bool,
    stdout: Vec<u8>,
    stderr: &[u8],
) -> Result<String, NetnsError> {
    if ok {
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(stderr).trim().to_owned();
        Err(failed(
            prog,
            args,
            if err.is_empty() {
                "exit status not 0".into()
            } else {
                err
            },
        ))
    }
}

/// Runs `prog args` and waits at most [`COMMAND_LIMIT`] (then kills it).
fn run_blocking(prog: &Path, args: &[&str]) -> Result<String, NetnsError> {
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(prog, args, format!("cannot start: {e}")))?;
    // Read stdout on a thread so a long listing cannot fill the pipe while we wait.
    let reader = child.stdout.take().map(|mut out| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            buf
        })
    });
    let deadline = Instant::now() + COMMAND_LIMIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(prog, args, "timed out"));
            }
            Err(e) => return Err(failed(prog, args, e.to_string())),
        }
    };
    let stdout = reader.and_then(|r| r.join().ok()).unwrap_or_default();
    let mut stderr = Vec::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_end(&mut stderr);
    }
    outcome(prog, args, status.success(), stdout, &stderr)
}

/// Runs `prog args` on the runtime, at most [`COMMAND_LIMIT`].
async fn run_async(prog: &Path, args: &[&str]) -> Result<String, NetnsError> {
    let out = tokio::process::Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(COMMAND_LIMIT, out).await {
        Err(_) => Err(failed(prog, args, "timed out")),
        Ok(Err(e)) => Err(failed(prog, args, format!("cannot start: {e}"))),
        Ok(Ok(o)) => outcome(prog, args, o.status.success(), o.stdout, &o.stderr),
    }
}

/// SIGKILL `pid` through `kill(1)`; whether it was sent.
pub fn kill_pid(pid: u32) -> bool {
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_uid() {
        assert!(effective_uid().is_some());
    }

    #[test]
    fn a_failing_command_reports_its_stderr() {
        let sh = PathBuf::from("/bin/sh");
        let e = run_blocking(&sh, &["-c", "echo boom >&2; exit 3"]).map(|_| ());
        let text = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("boom"), "{text}");
        assert_eq!(
            run_blocking(&sh, &["-c", "echo hi"]).ok().as_deref(),
            Some("hi\n")
        );
    }
}
