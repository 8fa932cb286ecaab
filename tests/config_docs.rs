//! The README documents every server option that `raftcast --help` knows.

use std::path::Path;

/// Every `--flag` named in the first column of the generated options table.
fn table_flags() -> Vec<String> {
    raftcast::config::options_table()
        .lines()
        .skip(2)
        .filter_map(|line| {
            let first = line.split('|').nth(1)?.trim().trim_matches('`');
            first.starts_with("--").then(|| first.to_string())
        })
        .collect()
}

#[test]
fn options_table_is_not_empty() {
    let flags = table_flags();
    assert!(flags.len() > 30, "only {} flags in the table", flags.len());
    assert!(flags.iter().any(|f| f == "--port"));
}

#[test]
#[ignore = "README not written yet"]
fn readme_documents_every_option() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let missing: Vec<String> = table_flags()
        .into_iter()
        .filter(|flag| !readme.contains(flag.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md does not mention {missing:?}; the table from raftcast::config::options_table():\n{}",
        raftcast::config::options_table()
    );
}
