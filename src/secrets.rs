//! Secrets a node makes for itself when none is given: kept in its data dir (mode 0600) so
//! a restart keeps them, and their location (never their value) is logged.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Why a secret could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The value given, or the one stored in `data_dir/<file>`, or a new random one stored there.
pub fn ensure(
    given: Option<&str>,
    data_dir: &Path,
    file: &str,
    what: &str,
) -> Result<String, SecretError> {
    if let Some(v) = given {
        return Ok(v.to_owned());
    }
    let path = data_dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => {
            tracing::info!(path = %path.display(), "using the {what} stored in the data dir");
            return Ok(s.trim().to_owned());
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(SecretError::Read { path, source }),
    }
    std::fs::create_dir_all(data_dir).map_err(|source| SecretError::Create {
        path: data_dir.to_owned(),
        source,
    })?;
    let value = format!(
        "{}{}",
        crate::socketio::random_id(),
        crate::socketio::random_id()
    );
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path).map_err(|source| SecretError::Create {
        path: path.clone(),
        source,
    })?;
    f.write_all(value.as_bytes())
        .map_err(|source| SecretError::Create {
            path: path.clone(),
            source,
        })?;
    tracing::warn!(path = %path.display(), "no {what} given: generated one and stored it there (read it from that file)");
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_reuses() {
        let dir =
            std::env::temp_dir().join(format!("raftcast-secret-{}", crate::socketio::random_id()));
        let a = ensure(None, &dir, "api-key", "API key").unwrap();
        let b = ensure(None, &dir, "api-key", "API key").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            ensure(Some("given"), &dir, "api-key", "API key").unwrap(),
            "given"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
