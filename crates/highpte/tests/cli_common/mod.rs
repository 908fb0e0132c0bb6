//! Helpers shared by the end-to-end tests of the `highpte` binary (`tests/cli_*.rs`).
//!
//! Every test runs the real binary built by cargo (release in CI) through `assert_cmd`.

#![allow(dead_code)]

use assert_cmd::Command;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The `highpte` binary.
pub fn highpte() -> Command {
    Command::cargo_bin("highpte").expect("the highpte binary is built")
}

/// A fresh, empty directory for one test's files (under cargo's target tmp dir).
pub fn tmp_dir(test: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{test}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create the test's temp dir");
    d
}

/// Run `highpte ARGS`, expect exit status 0, and parse stdout as JSON.
pub fn json_of(args: &[&str]) -> Value {
    let out = highpte().args(args).output().expect("run highpte");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "highpte {args:?} exited {:?}; stderr:\n{stderr}",
        out.status.code()
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "highpte {args:?} printed invalid JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Run `highpte ARGS`, expect status 0, and return stdout.
pub fn stdout_of(args: &[&str]) -> String {
    let out = highpte().args(args).output().expect("run highpte");
    assert_eq!(
        out.status.code(),
        Some(0),
        "highpte {args:?} exited {:?}; stderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `highpte ARGS` expecting bad-input status 2, an error on stderr that contains every
/// string of `needles` (case-insensitive), no panic, and nothing on stdout. Returns stderr.
pub fn bad_input(args: &[&str], needles: &[&str]) -> String {
    let out = highpte().args(args).output().expect("run highpte");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "highpte {args:?} should exit 2 (bad input); exited {:?}; stderr:\n{stderr}",
        out.status.code()
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "highpte {args:?} panicked:\n{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "highpte {args:?} printed to stdout on bad input:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.starts_with("highpte: "),
        "the error should start with 'highpte: ':\n{stderr}"
    );
    let lower = stderr.to_lowercase();
    for n in needles {
        assert!(
            lower.contains(&n.to_lowercase()),
            "highpte {args:?}: the error should mention {n:?}:\n{stderr}"
        );
    }
    stderr
}

/// The kB keys every `meminfo` object has.
pub const MEMINFO_KEYS: &[&str] = &[
    "MemTotal",
    "MemFree",
    "LowTotal",
    "LowFree",
    "HighTotal",
    "HighFree",
    "PageTables",
];

/// Check a `meminfo` object: the documented kB keys, all whole numbers, consistent.
pub fn assert_meminfo(m: &Value) {
    for k in MEMINFO_KEYS {
        assert!(
            m[k].is_u64(),
            "meminfo.{k} should be a whole number of kB: {m}"
        );
    }
    let g = |k: &str| m[k].as_u64().unwrap_or(0);
    assert_eq!(g("MemTotal"), g("LowTotal") + g("HighTotal"), "{m}");
    assert_eq!(g("MemFree"), g("LowFree") + g("HighFree"), "{m}");
    assert!(
        g("LowFree") <= g("LowTotal") && g("HighFree") <= g("HighTotal"),
        "{m}"
    );
}

/// Check one run object (`run --json`, an element of `compare`/`sweep --json`): every
/// documented key with its type.
pub fn assert_run_object(v: &Value) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("a run is a JSON object: {v}"));
    for k in [
        "config",
        "strategy",
        "seed",
        "processes_started",
        "processes_failed",
        "first_failure",
        "meminfo",
        "pagetables",
        "counters",
        "cycles",
        "host_seconds",
        "event_hash",
    ] {
        assert!(obj.contains_key(k), "run object lacks {k:?}: {v}");
    }
    assert!(v["config"].is_string() && v["strategy"].is_string());
    assert!(v["seed"].is_u64());
    assert!(v["processes_started"].is_u64() && v["processes_failed"].is_u64());
    match &v["first_failure"] {
        Value::Null => {}
        Value::Object(f) => {
            for k in ["process", "call", "errno_or_signal", "LowFree"] {
                assert!(f.contains_key(k), "first_failure lacks {k:?}: {v}");
            }
            assert!(f["process"].is_u64() && f["LowFree"].is_u64());
            assert!(f["call"].is_string() && f["errno_or_signal"].is_string());
        }
        other => panic!("first_failure should be null or an object: {other}"),
    }
    assert_meminfo(&v["meminfo"]);
    assert!(v["pagetables"]["low_pages"].is_u64() && v["pagetables"]["high_pages"].is_u64());
    let counters = v["counters"]
        .as_object()
        .unwrap_or_else(|| panic!("counters is an object: {v}"));
    assert!(
        counters.values().all(Value::is_u64),
        "counters are whole numbers"
    );
    for k in ["kmap_atomic", "kmap", "invlpg", "tlb_shootdowns", "faults"] {
        assert!(counters.contains_key(k), "counters lack {k:?}");
    }
    assert!(v["cycles"].as_u64().unwrap_or(0) > 0, "cycles > 0");
    assert!(v["host_seconds"].as_f64().is_some_and(|s| s >= 0.0));
    let h = v["event_hash"].as_str().unwrap_or("");
    assert!(
        h.starts_with("0x") && h.len() == 18 && u64::from_str_radix(&h[2..], 16).is_ok(),
        "event_hash is a 64-bit hex string: {h:?}"
    );
}

/// Check that `path` is an SVG file whose text contains `title`.
pub fn assert_svg(path: &Path, title: &str) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("plot {} not written: {e}", path.display()));
    let head = text.trim_start();
    assert!(
        head.starts_with("<svg") || head.starts_with("<?xml"),
        "{} is not SVG: {}",
        path.display(),
        &head[..head.len().min(80)]
    );
    assert!(
        text.trim_end().ends_with("</svg>"),
        "{} is truncated",
        path.display()
    );
    assert!(
        text.contains(title),
        "{} does not contain the title {title:?}",
        path.display()
    );
}

/// Write `text` to `dir/name` and return the path as a string.
pub fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write a test file");
    p.display().to_string()
}
