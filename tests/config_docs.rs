//! The README documents every server option that `raftcast --help` knows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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

/// The README's options section is exactly the generated table (run with
/// `UPDATE_README=1 cargo test --test config_docs` to regenerate it).
#[test]
fn readme_documents_every_option() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let (begin, end) = ("<!-- options:begin -->\n", "<!-- options:end -->");
    let start = readme
        .find(begin)
        .expect("README has an options:begin marker")
        + begin.len();
    let stop = readme.find(end).expect("README has an options:end marker");
    let table = raftcast::config::options_table();
    if std::env::var_os("UPDATE_README").is_some() {
        let updated = format!("{}{}{}", &readme[..start], table, &readme[stop..]);
        std::fs::write(&path, updated).expect("README is writable");
        return;
    }
    let missing: Vec<String> = table_flags()
        .into_iter()
        .filter(|flag| !readme.contains(flag.as_str()))
        .collect();
    assert!(missing.is_empty(), "README.md does not mention {missing:?}");
    assert_eq!(
        readme[start..stop].trim(),
        table.trim(),
        "README's options table is out of date: run UPDATE_README=1 cargo test --test config_docs"
    );
}
