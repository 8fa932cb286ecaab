//! [`ConfigError`]: what went wrong, naming the flag, variable or file key.

use std::path::PathBuf;

use super::{command, is_help_kind};

/// Why the configuration could not be loaded; every message names the flag, variable or
/// file key concerned.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A command-line error, or `--help` / `--version` (see [`ConfigError::is_help`]).
    #[error("{0}")]
    Cli(#[from] clap::Error),
    /// A value from the environment or the config file that the flag does not accept.
    #[error("{origin}: invalid value '{value}' for {flag}: {reason}")]
    InvalidValue {
        /// `environment variable X` or `config file F key K`.
        origin: String,
        /// The flag it sets.
        flag: String,
        /// The value given (`***` for secrets).
        value: String,
        /// What was wrong and what is expected.
        reason: String,
    },
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML.
    #[error("config file {} is not valid TOML: {source}", path.display())]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// The parse error, with line and column.
        source: toml::de::Error,
    },
    /// The config file has a key that is no option.
    #[error("config file {}: unknown key `{key}`{hint}", path.display())]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key as written.
        key: String,
        /// A suggestion.
        hint: String,
    },
    /// A config file value of the wrong TOML type.
    #[error("config file {}: key `{key}`: {reason}", path.display())]
    FileValue {
        /// The file.
        path: PathBuf,
        /// The key as written.
        key: String,
        /// What is expected.
        reason: String,
    },
    /// Values that are well-formed but do not fit together or are out of range.
    #[error("invalid {flag} (env {env}): {reason}")]
    Invalid {
        /// The flag, e.g. `--peers`.
        flag: String,
        /// Its env twin.
        env: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// [`Config::load`](super::Config::load) was asked to run a subcommand.
    #[error("`raftcast {0}` does not start a server (use parse_invocation)")]
    NotServe(String),
}

impl ConfigError {
    /// True for `--help` and `--version`: print the message and exit 0.
    pub fn is_help(&self) -> bool {
        matches!(self, ConfigError::Cli(e) if is_help_kind(e.kind()))
    }

    /// Prints the message (help to stdout, errors to stderr) and exits: 0 for help,
    /// 2 for usage and configuration errors.
    pub fn exit(self) -> ! {
        match self {
            ConfigError::Cli(e) => e.exit(),
            other => {
                eprintln!("error: {other}");
                std::process::exit(2)
            }
        }
    }

    pub(crate) fn invalid(long: &str, reason: impl Into<String>) -> Self {
        let cmd = command();
        let env = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long))
            .and_then(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        ConfigError::Invalid {
            flag: format!("--{long}"),
            env,
            reason: reason.into(),
        }
    }
}
