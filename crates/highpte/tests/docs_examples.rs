//! Every command example in README.md, docs/ and workloads/README.md is run, and the output
//! the page shows must be what the command prints now: a change that moves a figure fails
//! here until the page is regenerated.
//!
//! The format, in fenced code blocks of the Markdown pages:
//!
//! * `$ highpte ARGS` (or `$ target/release/highpte ARGS`, `$ cargo run --release -- ARGS`)
//!   is an example; a trailing `  # comment` is not part of it. The lines after it, up to the
//!   next `$ ` line or the end of the block, are output it must print (stdout, then stderr),
//!   in that order; lines it prints in between may be left out (pages abridge tables), and
//!   `[..]` in a shown line stands for any text (host seconds, which vary). A line `...`
//!   only marks an abridgement.
//! * In ```` ```sh ```` blocks, a line that starts with one of those commands is an example
//!   too, with no output shown: it must exit 0 (unless it is a usage line, with `[...]`,
//!   `a|b` or CAPITAL placeholders).
//! * `> FILE` at the end of an example sends its stdout to FILE (for a later example).
//! * `<!-- file NAME -->` on the line before a block makes the block the file NAME in the
//!   directory the examples of that page run in (a workload file an example names).
//! * `<!-- not run: REASON -->` on the line before a block skips its examples (host-time
//!   measurements that take minutes); this test lists how many it skips per page.
//!
//! Examples run from a fresh directory holding a link to the repository's `workloads/` and a
//! link `traces/` to the checked-in test traces (`crates/highpte/tests/data/`), so they may
//! write plots and name `workloads/*.toml` and `traces/*.pgt.zst`.
//!
//! After a change that moves figures on purpose, `HIGHPTE_BLESS_DOCS=1 cargo test --release
//! -p highpte --test docs_examples` rewrites each shown line that no longer matches with the
//! output line of the same shape (the same text once runs of digits and of spaces are
//! folded), in order; lines it cannot pair (a changed wording, a `[..]` line) still fail and
//! are left to a person. Read `git diff` afterwards: every moved figure needs its reason.

mod cli_common;

use cli_common::tmp_dir;
use std::path::{Path, PathBuf};

/// One example of a page.
#[derive(Debug)]
struct Example {
    line: usize,
    args: Vec<String>,
    /// The output lines shown, with their (0-based) line index in the page.
    shown: Vec<(usize, String)>,
    must_succeed: bool,
}

/// What a page holds: examples, files to create, blocks not run.
#[derive(Debug, Default)]
struct Page {
    examples: Vec<Example>,
    files: Vec<(String, String)>,
    skipped: usize,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The arguments of a command line if it runs highpte.
fn highpte_args(cmd: &str) -> Option<Vec<String>> {
    let cmd = match cmd.find("  #") {
        Some(i) => &cmd[..i],
        None => cmd,
    };
    let rest = [
        "highpte ",
        "target/release/highpte ",
        "cargo run --release -- ",
    ]
    .iter()
    .find_map(|p| cmd.strip_prefix(p))?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn parse(text: &str) -> Page {
    let mut page = Page::default();
    let mut in_block = false;
    let mut block_lang = String::new();
    let mut file: Option<(String, String)> = None;
    let mut skip = false;
    let mut prev = "";
    // the example whose output the following lines of this block show
    let mut open_example = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_end();
        if let Some(fence) = t.trim_start().strip_prefix("```") {
            if in_block {
                in_block = false;
                open_example = false;
                if let Some(f) = file.take() {
                    page.files.push(f);
                }
            } else {
                in_block = true;
                block_lang = fence.trim().to_string();
                let directive = prev
                    .trim()
                    .strip_prefix("<!--")
                    .and_then(|d| d.strip_suffix("-->"))
                    .map(|d| d.trim().to_string());
                skip = false;
                match directive.as_deref() {
                    Some(d) if d.starts_with("file ") => {
                        file = Some((d[5..].trim().to_string(), String::new()));
                    }
                    Some(d) if d.starts_with("not run:") => {
                        skip = true;
                        page.skipped += 1;
                    }
                    _ => {}
                }
            }
            prev = t;
            continue;
        }
        prev = t;
        if !in_block {
            continue;
        }
        if let Some((_, body)) = &mut file {
            body.push_str(line);
            body.push('\n');
            continue;
        }
        if skip {
            continue;
        }
        if let Some(cmd) = t.strip_prefix("$ ") {
            open_example = true;
            if let Some(args) = highpte_args(cmd) {
                page.examples.push(Example {
                    line: i + 1,
                    args,
                    shown: Vec::new(),
                    must_succeed: false,
                });
            } else {
                page.examples.push(Example {
                    line: i + 1,
                    args: Vec::new(),
                    shown: Vec::new(),
                    must_succeed: false,
                });
            }
            continue;
        }
        if block_lang == "sh" && !is_synopsis(t) {
            if let Some(args) = highpte_args(t) {
                page.examples.push(Example {
                    line: i + 1,
                    args,
                    shown: Vec::new(),
                    must_succeed: true,
                });
                continue;
            }
        }
        if !open_example {
            continue;
        }
        if let Some(ex) = page.examples.last_mut() {
            if !t.trim().is_empty() && t.trim() != "..." && !ex.must_succeed {
                ex.shown.push((i, t.to_string()));
            }
        }
    }
    page.examples.retain(|e| !e.args.is_empty());
    page
}

/// A usage line rather than an example: optional parts in brackets, alternatives, or
/// placeholders in capitals (`highpte run WORKLOAD|FILE [--json]`).
fn is_synopsis(line: &str) -> bool {
    let cmd = line.split("  #").next().unwrap_or(line);
    cmd.contains('[')
        || cmd.contains('|')
        || cmd.split_whitespace().any(|w| {
            let letters: String = w.chars().filter(|c| c.is_alphabetic()).collect();
            letters.len() >= 3 && letters.chars().all(|c| c.is_ascii_uppercase())
        })
}

/// A line's shape: runs of digits (with their decimal points and thousands separators) folded
/// to `#` and runs of spaces to one, so a table row whose figures moved keeps its shape.
fn shape(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            while chars
                .peek()
                .is_some_and(|d| d.is_ascii_digit() || *d == '.' || *d == ',')
            {
                chars.next();
            }
            out.push('#');
        } else if c == ' ' {
            while chars.peek() == Some(&' ') {
                chars.next();
            }
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// The first run of digits in `line`, if any.
fn first_number(line: &str) -> Option<&str> {
    let start = line.find(|c: char| c.is_ascii_digit())?;
    let len = line[start..]
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(line.len() - start);
    Some(&line[start..start + len])
}

/// `line` matches `pattern`, where `[..]` in the pattern is any text.
fn matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("[..]").collect();
    if parts.len() == 1 {
        return pattern == line;
    }
    let mut rest = line;
    for (k, part) in parts.iter().enumerate() {
        if k == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if k == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(j) => rest = &rest[j + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Run every example of `page_path` (relative to the repository) and check what it shows.
fn check_page(page_path: &str) {
    let text = std::fs::read_to_string(repo().join(page_path)).expect("read the page");
    let page = parse(&text);
    let dir = tmp_dir(&format!("docs-{}", page_path.replace('/', "-")));
    #[cfg(unix)]
    std::os::unix::fs::symlink(repo().join("workloads"), dir.join("workloads"))
        .expect("link workloads/");
    #[cfg(unix)]
    std::os::unix::fs::symlink(repo().join("crates/highpte/tests/data"), dir.join("traces"))
        .expect("link traces/");
    for (name, body) in &page.files {
        std::fs::write(dir.join(name), body).expect("write an example's file");
    }
    let mut failures = Vec::new();
    let bless = std::env::var_os("HIGHPTE_BLESS_DOCS").is_some();
    let mut rewrites: Vec<(usize, String)> = Vec::new();
    for ex in &page.examples {
        // `> FILE` at the end sends stdout to FILE in the page's directory
        let (args, into) = match ex.args.iter().position(|a| a == ">") {
            Some(k) => (&ex.args[..k], ex.args.get(k + 1)),
            None => (&ex.args[..], None),
        };
        let out = cli_common::highpte()
            .current_dir(&dir)
            .args(args)
            .env("COLUMNS", "200")
            .output()
            .expect("run the example");
        let stdout = match into {
            Some(f) => {
                std::fs::write(dir.join(f), &out.stdout).expect("write the example's output");
                String::new()
            }
            None => String::from_utf8_lossy(&out.stdout).into_owned(),
        };
        let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<&str> = all.lines().map(str::trim_end).collect();
        let cmd = format!("highpte {}", ex.args.join(" "));
        if all.contains("panicked") {
            failures.push(format!("{page_path}:{}: `{cmd}` panicked:\n{all}", ex.line));
            continue;
        }
        if ex.must_succeed && out.status.code() != Some(0) {
            failures.push(format!(
                "{page_path}:{}: `{cmd}` exited {:?}:\n{all}",
                ex.line,
                out.status.code()
            ));
            continue;
        }
        let mut at = 0;
        for (page_line, shown) in &ex.shown {
            let found = lines[at..].iter().position(|l| matches(shown, l));
            let blessed = found.is_none() && bless && !shown.contains("[..]");
            let found = match found {
                Some(k) => Some(k),
                None if blessed => {
                    // of the lines of the same shape, the one with the same first number
                    // (a table's row key) if there is one, else the first
                    let want = shape(shown);
                    let same: Vec<usize> = (at..lines.len())
                        .filter(|&i| shape(lines[i]) == want)
                        .collect();
                    let key = first_number(shown);
                    let k = same
                        .iter()
                        .find(|&&i| first_number(lines[i]) == key)
                        .or(same.first())
                        .map(|&i| i - at);
                    if let Some(k) = k {
                        rewrites.push((*page_line, lines[at + k].to_string()));
                    }
                    k
                }
                None => None,
            };
            match found {
                Some(k) => at += k + 1,
                None => {
                    failures.push(format!(
                        "{page_path}:{}: `{cmd}` no longer prints (after line {at} of its output):\n  {shown}\nit prints:\n{all}",
                        ex.line
                    ));
                    break;
                }
            }
        }
    }
    if !rewrites.is_empty() {
        let mut out: Vec<String> = text.lines().map(str::to_string).collect();
        for (i, new) in &rewrites {
            eprintln!("{page_path}:{}: blessed\n  - {}\n  + {new}", i + 1, out[*i]);
            out[*i] = new.clone();
        }
        let mut body = out.join("\n");
        if text.ends_with('\n') {
            body.push('\n');
        }
        std::fs::write(repo().join(page_path), body).expect("rewrite the page");
    }
    eprintln!(
        "{page_path}: {} examples run, {} blocks not run",
        page.examples.len(),
        page.skipped
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_matcher_takes_wildcards_and_the_parser_finds_examples() {
    assert!(matches("host [..] s", "host 0.81 s"));
    assert!(matches("a [..] b [..]", "a x b y"));
    assert!(!matches("host [..] s", "host 0.81 ms!"));
    assert!(!matches("exact", "exactly"));
    assert_eq!(
        shape("  64g   fails at 433 procs, 1,234.5 MB"),
        "#g fails at # procs, # MB"
    );
    assert_eq!(
        shape("64g fails at 9 procs, 7 MB"),
        shape("64g  fails at 433 procs, 1.5 MB")
    );
    assert_eq!(first_number("│ 400 ┆ 95.6 MB"), Some("400"));
    assert_eq!(first_number("no digits"), None);
    assert!(is_synopsis("highpte run WORKLOAD|FILE [--json]"));
    assert!(!is_synopsis(
        "highpte run sga --config 64g --ram 16G  # FLAGS override"
    ));
    let p = parse("```\n$ highpte run sga  # a comment\nline 1\n...\nline 2\n$ ls\n```\n```sh\nhighpte boot\nhighpte boot [--json]\n```\n<!-- not run: slow -->\n```sh\nhighpte bench\n```\n");
    assert_eq!(p.examples.len(), 2, "{p:?}");
    assert_eq!(p.examples[0].args, ["run", "sga"]);
    assert_eq!(
        p.examples[0].shown,
        [(2, "line 1".to_string()), (4, "line 2".to_string())]
    );
    assert_eq!(p.examples[1].args, ["boot"]);
    assert!(p.examples[1].must_succeed);
    assert_eq!(p.skipped, 1);
}

#[test]
fn readme() {
    check_page("README.md");
}

#[test]
fn docs_cli() {
    check_page("docs/cli.md");
}

#[test]
fn docs_json() {
    check_page("docs/json.md");
}

#[test]
fn docs_reclaim() {
    check_page("docs/reclaim.md");
}

#[test]
fn docs_traces() {
    check_page("docs/traces.md");
}

#[test]
fn docs_files() {
    check_page("docs/files.md");
}

#[test]
fn docs_fault_injection() {
    check_page("docs/fault-injection.md");
}

#[test]
fn docs_performance() {
    check_page("docs/performance.md");
}

#[test]
fn docs_hostile_input() {
    check_page("docs/hostile-input.md");
}

#[test]
fn docs_timeline() {
    check_page("docs/timeline.md");
}

#[test]
fn docs_cluster() {
    check_page("docs/cluster.md");
}

#[test]
fn workloads_readme() {
    check_page("workloads/README.md");
}
