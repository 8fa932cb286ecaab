//! Markdown documentation generated from the clap command.

use clap::{Arg, CommandFactory};

use super::cli::{Cli, COMPUTED_DEFAULTS};

/// A Markdown table of every server option: flag | env | default | meaning.
///
/// Generated from the same clap command `--help` uses, so it cannot drift from the code.
pub fn options_table() -> String {
    let mut out = String::from("| flag | env | default | meaning |\n|---|---|---|---|\n");
    for arg in Cli::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_else(|| "—".into());
        out.push_str(&format!(
            "| `--{long}` | {env} | {} | {} |\n",
            default_text(arg),
            cell(&arg.get_help().map(ToString::to_string).unwrap_or_default()),
        ));
    }
    out
}

fn default_text(arg: &Arg) -> String {
    if let Some((_, text)) = COMPUTED_DEFAULTS.iter().find(|(id, _)| arg.get_id() == *id) {
        return cell(text);
    }
    let values: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if values.is_empty() {
        "—".into()
    } else {
        format!("`{}`", values.join(","))
    }
}

/// Escapes text for a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
