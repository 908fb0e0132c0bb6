//! The commands the docs name inside running text (`` `highpte run pagecache --quiet` ``,
//! `` `highpte bench --only faults` ``, usage synopses with `..` placeholders) are not run by
//! `docs_examples`, but they must not go stale either: every inline `highpte ...` span must name
//! a command that exists, and every long flag it shows must be one that command takes (checked
//! against its `--help`). A renamed flag or command fails here until the prose is fixed.

use assert_cmd::Command;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// README.md, workloads/README.md and every page under docs/.
fn pages() -> Vec<PathBuf> {
    let mut v = vec![repo().join("README.md"), repo().join("workloads/README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("read docs/")
        .map(|e| e.expect("a docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    v.extend(docs);
    v
}

/// The inline code spans of `text` that start with `highpte ` or are `highpte`, with their
/// line numbers (fenced blocks are left to `docs_examples`).
fn inline_commands(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        for (i, span) in line.split('`').enumerate() {
            if i % 2 == 1 && span.starts_with("highpte ") {
                out.push((n + 1, span.replace("\\|", "|")));
            }
        }
    }
    out
}

/// The command paths a span names: `highpte matrix|sweep ... --shard` names two; leading
/// lower-case words (`trace info`, `run pagecache`: clap reads a workload name as the
/// positional argument, which `--help` ignores).
fn command_paths(span: &str) -> Vec<Vec<String>> {
    let words: Vec<&str> = span.split_whitespace().skip(1).collect();
    let lead: Vec<&str> = words
        .iter()
        .take_while(|w| {
            w.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '|')
                && !w.starts_with('-')
        })
        .copied()
        .collect();
    match lead.first() {
        None => vec![vec![]],
        Some(first) if first.contains('|') => {
            first.split('|').map(|c| vec![c.to_string()]).collect()
        }
        Some(_) => vec![lead.iter().map(|s| s.to_string()).collect()],
    }
}

/// The long flags a span shows (`--config ..`, `[--json|--csv]`, `--vary=...`).
fn long_flags(span: &str) -> Vec<String> {
    let mut v = Vec::new();
    for piece in span.split(|c: char| c.is_whitespace() || "[]|()".contains(c)) {
        if let Some(rest) = piece.strip_prefix("--") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if !name.is_empty() {
                v.push(format!("--{name}"));
            }
        }
    }
    v
}

#[test]
fn inline_commands_name_real_commands_and_flags() {
    let mut help: HashMap<Vec<String>, Result<String, String>> = HashMap::new();
    let mut failures = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("read a page");
        let rel = page
            .strip_prefix(repo())
            .unwrap_or(&page)
            .display()
            .to_string();
        for (line, span) in inline_commands(&text) {
            if span.starts_with("highpte help ") || span.starts_with("highpte ... ") {
                continue;
            }
            for path in command_paths(&span) {
                let h = help.entry(path.clone()).or_insert_with(|| {
                    let out = Command::cargo_bin("highpte")
                        .expect("the highpte binary")
                        .args(&path)
                        .arg("--help")
                        .output()
                        .expect("run highpte --help");
                    if out.status.success() {
                        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
                    } else {
                        Err(String::from_utf8_lossy(&out.stderr).into_owned())
                    }
                });
                checked += 1;
                match h {
                    Err(e) => failures.push(format!(
                        "{rel}:{line}: `{span}`: `highpte {} --help` fails: {e}",
                        path.join(" ")
                    )),
                    Ok(text) => {
                        for flag in long_flags(&span) {
                            let takes = text.contains(&format!("{flag} "))
                                || text.contains(&format!("{flag},"))
                                || text.contains(&format!("{flag}\n"))
                                || text.contains(&format!("{flag}="))
                                || text.contains(&format!("{flag}["));
                            if !takes {
                                failures.push(format!(
                                    "{rel}:{line}: `{span}`: `highpte {}` takes no {flag}",
                                    path.join(" ")
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 80, "only {checked} inline commands found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_span_parser_finds_paths_and_flags() {
    assert_eq!(
        command_paths("highpte matrix|sweep ... --shard I/N"),
        vec![vec!["matrix".to_string()], vec!["sweep".to_string()]]
    );
    assert_eq!(
        command_paths("highpte trace info TRACE --json"),
        vec![vec!["trace".to_string(), "info".to_string()]]
    );
    assert_eq!(
        command_paths("highpte --cost FILE"),
        vec![Vec::<String>::new()]
    );
    assert_eq!(
        long_flags("highpte run X [--json|--csv] [--swap SIZE [--swap-file PATH]]"),
        ["--json", "--csv", "--swap", "--swap-file"]
    );
    assert_eq!(
        inline_commands("a `highpte run x --quiet` b `ls`\n```\n`highpte no`\n```\n"),
        vec![(1, "highpte run x --quiet".to_string())]
    );
}
