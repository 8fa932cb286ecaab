//! The env and config-file layers under the command line.
//!
//! clap parses the command line with its env lookups switched off. For every option the
//! command line did not set, the value comes from the given env map, else from the config
//! file; each such value is checked on its own (so an error names the variable or file key),
//! then appended as `--flag=value` and the whole line is parsed once more into the typed
//! structs. What is left unset gets clap's default.

use std::collections::{BTreeMap, HashMap};
use std::error::Error as _;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue};
use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

use super::ConfigError;

/// Arguments that never come from env or file.
const BUILTIN: &[&str] = &["help", "version"];

/// Values read from a config file, by long flag name.
pub(crate) struct FileValues {
    path: PathBuf,
    /// long flag name → (key as written, value as a flag string).
    values: BTreeMap<String, (String, String)>,
}

/// Where a value came from, for error messages.
fn env_origin(name: &str) -> String {
    format!("environment variable {name}")
}

fn file_origin(path: &Path, key: &str) -> String {
    format!("config file {} key `{key}`", path.display())
}

/// The command with every env lookup removed (so parsing never reads the process env).
pub(crate) fn without_env(cmd: Command) -> Command {
    cmd.mut_args(|a| a.env(None::<&'static str>))
        .mut_subcommands(without_env)
}

/// Long names of the options a config file may set.
fn file_keys(cmd: &Command) -> Vec<String> {
    cmd.get_arguments()
        .filter(|a| !BUILTIN.contains(&a.get_id().as_str()) && a.get_id() != "config")
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect()
}

/// Reads and checks the keys of a TOML config file.
pub(crate) fn read_file(path: &Path, cmd: &Command) -> Result<FileValues, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|source| ConfigError::ParseFile {
        path: path.to_path_buf(),
        source,
    })?;
    let known = file_keys(cmd);
    let mut values = BTreeMap::new();
    for (key, value) in table {
        let long = key.replace('_', "-");
        if !known.contains(&long) {
            return Err(ConfigError::UnknownKey {
                path: path.to_path_buf(),
                hint: unknown_key_hint(&long, &known),
                key,
            });
        }
        let file_err = |reason: String| ConfigError::FileValue {
            path: path.to_path_buf(),
            key: key.clone(),
            reason,
        };
        let flat = flatten(&value).map_err(file_err)?;
        if let Some((first, _)) = values.insert(long, (key.clone(), flat)) {
            return Err(file_err(format!("set twice (also as `{first}`)")));
        }
    }
    Ok(FileValues {
        path: path.to_path_buf(),
        values,
    })
}

/// A TOML value as the string the flag would take.
fn flatten(value: &toml::Value) -> Result<String, String> {
    use toml::Value;
    let scalar = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Float(f) => Ok(f.to_string()),
        Value::Boolean(b) => Ok(b.to_string()),
        _ => Err("expected a string, number or boolean".to_string()),
    };
    match value {
        Value::Array(items) => Ok(items
            .iter()
            .map(scalar)
            .collect::<Result<Vec<_>, _>>()?
            .join(",")),
        // `[peers]` table: `1 = "127.0.0.1:6000"`.
        Value::Table(t) => Ok(t
            .iter()
            .map(|(k, v)| scalar(v).map(|v| format!("{k}={v}")))
            .collect::<Result<Vec<_>, _>>()?
            .join(",")),
        Value::Datetime(_) => Err("expected a string, number or boolean, not a date".into()),
        v => scalar(v),
    }
}

fn unknown_key_hint(key: &str, known: &[String]) -> String {
    let best = known
        .iter()
        .map(|k| (edit_distance(key, k), k))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, k)) if d <= 3 => format!(" (did you mean `{k}`?)"),
        _ => " (keys are the long flag names, e.g. `port`, `data-dir`; see `raftcast --help`)"
            .to_string(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// `--flag=value` arguments for every option of `full` (with env names) that the command
/// line left unset and the env map or the file sets. `bare` is the same command level
/// without env lookups; it checks each value alone.
pub(crate) fn layered_args(
    full: &Command,
    bare: &Command,
    matches: &ArgMatches,
    env: &HashMap<String, String>,
    file: Option<&FileValues>,
) -> Result<Vec<OsString>, ConfigError> {
    let mut extra = Vec::new();
    for arg in full.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if BUILTIN.contains(&id) || matches.value_source(id) == Some(ValueSource::CommandLine) {
            continue;
        }
        let from_env = arg.get_env().and_then(|n| n.to_str()).and_then(|n| {
            env.get(n)
                .filter(|v| !v.is_empty())
                .map(|v| (env_origin(n), v))
        });
        let from_file = || {
            file.and_then(|f| {
                f.values
                    .get(long)
                    .map(|(key, v)| (file_origin(&f.path, key), v))
            })
        };
        let Some((origin, value)) = from_env.or_else(from_file) else {
            continue;
        };
        let flag = format!("--{long}={value}");
        if let Err(err) = bare
            .clone()
            .try_get_matches_from([bare.get_name().to_string(), flag.clone()])
        {
            return Err(ConfigError::InvalidValue {
                origin,
                flag: format!("--{long}"),
                value: if is_secret(id) {
                    "***".into()
                } else {
                    value.clone()
                },
                reason: clap_reason(&err),
            });
        }
        extra.push(OsString::from(flag));
    }
    Ok(extra)
}

fn is_secret(id: &str) -> bool {
    matches!(
        id,
        "cluster_secret" | "api_key" | "jwt_secret" | "redis_url"
    )
}

/// The part of a clap error that says what was wrong with a value.
fn clap_reason(err: &clap::Error) -> String {
    if let Some(source) = err.source() {
        return source.to_string();
    }
    if let Some(ContextValue::Strings(valid)) = err.get(ContextKind::ValidValue) {
        return format!("expected one of: {}", valid.join(", "));
    }
    let rendered = err.render().to_string();
    rendered
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string()
}
