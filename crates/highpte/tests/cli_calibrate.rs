//! `highpte calibrate`: the simulator against the checked-in measurements of a real Linux 6.1
//! 686-pae kernel (docs/fidelity.md, issue 18).
//!
//! * With `--kernel linux-6.1` every figure issue 18 names meets its target: LowTotal and
//!   HighTotal within 1%, PageTables per process within 2%, low memory per process within 5%
//!   (both modes, both region sizes), children alive at low-memory exhaustion within 5%. The
//!   targets are written here, not read from the command's output.
//! * With `--kernel 2.5` the figures are the ones the seed's profile has always given.
//! * Bad input (a missing or malformed data directory) exits 2 with a message naming it.

mod cli_common;

use cli_common::{bad_input, highpte, tmp_dir};
use serde_json::Value;
use std::path::Path;

/// Run `highpte calibrate ARGS --json --quiet`; return the exit status and the JSON.
fn calibrate(args: &[&str]) -> (i32, Value) {
    let out = highpte()
        .arg("calibrate")
        .args(args)
        .args(["--json", "--quiet"])
        .output()
        .expect("run highpte");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "calibrate {args:?} exited {code}; stderr:\n{stderr}"
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "calibrate {args:?} printed invalid JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(
        code == 0,
        v["pass"] == true,
        "the exit status says whether every target was met"
    );
    (code, v)
}

/// The row named `figure`.
fn row<'a>(v: &'a Value, figure: &str) -> &'a Value {
    v["rows"]
        .as_array()
        .expect("rows is a list")
        .iter()
        .find(|r| r["figure"] == figure)
        .unwrap_or_else(|| panic!("no row {figure:?} in:\n{v:#}"))
}

/// The figures issue 18 sets a target for, with the target.
fn targets() -> Vec<(String, f64)> {
    let mut t = vec![
        ("LowTotal (kB)".to_string(), 0.01),
        ("HighTotal (kB)".to_string(), 0.01),
    ];
    for mode in ["nohigh", "highpte"] {
        for region in [256, 1024] {
            t.push((
                format!("{mode}, {region} MB: low memory per child (B)"),
                0.05,
            ));
            t.push((
                format!("{mode}, {region} MB: PageTables per child (B)"),
                0.02,
            ));
        }
    }
    t.push((
        "nohigh, 1 GB: children alive when low memory runs out".to_string(),
        0.05,
    ));
    t
}

/// The relative error of a row, computed here from its figures.
fn error(r: &Value) -> f64 {
    let real = r["real"].as_i64().expect("real is a whole number") as f64;
    let sim = r["simulated"]
        .as_i64()
        .expect("simulated is a whole number") as f64;
    (sim - real) / real
}

/// Issue 18's acceptance test: the linux-6.1 profile (boot reservations and allocations,
/// 6.1's watermarks and lowmem_reserve, its fork, per-process objects and PAE pgd cache, its
/// OOM badness) meets every target against the real kernel's checked-in measurements.
#[test]
fn linux_6_1_meets_every_target() {
    let (_, v) = calibrate(&["--kernel", "linux-6.1"]);
    assert_eq!(v["kernel"], "linux-6.1");
    let mut missed = Vec::new();
    for (figure, tol) in targets() {
        let r = row(&v, &figure);
        assert_eq!(r["tolerance"].as_f64(), Some(tol), "{figure}: the target");
        let e = error(r);
        if e.abs() > tol {
            missed.push(format!(
                "{figure}: real {}, simulated {}, error {:+.1}% (target ±{}%)",
                r["real"],
                r["simulated"],
                100.0 * e,
                100.0 * tol
            ));
        }
    }
    assert!(missed.is_empty(), "targets missed:\n{}", missed.join("\n"));
    assert_eq!(v["pass"], true);
}

/// The 2.5 profile keeps its boot figures (LowTotal and HighTotal as docs/fidelity.md has
/// always given them), gives the measurement program's per-process figures (its page tables
/// are 2.5's: a pgd page and copies at fork), misses the targets it was never built for, and
/// says so with exit status 1. Its JSON is valid against the schema.
#[test]
fn the_2_5_profile_keeps_its_figures() {
    let (code, v) = calibrate(&["--kernel", "2.5", "--no-breaking-point"]);
    assert_eq!(v["kernel"], "2.5");
    assert_eq!(row(&v, "LowTotal (kB)")["real"].as_i64(), Some(725_828));
    assert_eq!(
        row(&v, "LowTotal (kB)")["simulated"].as_i64(),
        Some(814_064)
    );
    assert_eq!(
        row(&v, "HighTotal (kB)")["simulated"].as_i64(),
        Some(7_471_104)
    );
    let pt = row(&v, "nohigh, 1024 MB: PageTables per child (B)");
    // 133 pte pages, 3 pmd pages and the pgd page per child: 2.5 counts its pgd page
    assert_eq!(pt["real"].as_i64(), Some(2_130_368));
    assert_eq!(pt["simulated"].as_i64(), Some(2_134_016));
    assert_eq!(
        row(&v, "highpte, 256 MB: low memory per child (B)")["simulated"].as_i64(),
        Some(27_136)
    );
    assert_eq!(row(&v, "LowTotal (kB)")["pass"], false);
    assert_eq!(pt["pass"], true);
    // rows without a target are shown, not judged
    let lf = row(&v, "nohigh, 256 MB: LowFree with 16 children (kB)");
    assert!(lf["tolerance"].is_null() && lf["pass"].is_null(), "{lf}");
    assert_eq!(code, 1);
    let failed: Vec<&str> = v["failed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(failed.contains(&"LowTotal (kB)"), "{failed:?}");
    assert!(
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["figure"] != "nohigh, 1 GB: children alive when low memory runs out"),
        "--no-breaking-point leaves the breaking point out"
    );
    check_schema(&v);
}

fn check_schema(v: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schemas/highpte.schema.json");
    let full: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read the schema")).unwrap();
    let s = serde_json::json!({"$defs": full["$defs"], "$ref": "#/$defs/cmd_calibrate"});
    let validator = jsonschema::validator_for(&s).expect("a valid JSON Schema");
    let errors: Vec<String> = validator
        .iter_errors(v)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "cmd_calibrate: {}", errors.join("\n"));
}

#[test]
fn bad_data_exits_2_naming_the_path() {
    let d = tmp_dir("calibrate-bad-data");
    let missing = d.join("no-such-dir");
    let m = missing.display().to_string();
    bad_input(&["calibrate", "--data", &m], &[&m, "no such directory"]);
    // an empty directory: the first file it needs is named
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    bad_input(
        &["calibrate", "--data", &empty.display().to_string()],
        &["nohigh-256M.json", "cannot read"],
    );
    // a malformed file: named, with what is wrong
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/realkernel");
    let bad = d.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    for f in [
        "nohigh-256M.json",
        "nohigh-1024M.json",
        "highpte-256M.json",
        "highpte-1024M.json",
    ] {
        std::fs::copy(src.join(f), bad.join(f)).unwrap();
    }
    std::fs::write(bad.join("highpte-256M.json"), "{\"steps\": [").unwrap();
    bad_input(
        &["calibrate", "--data", &bad.display().to_string()],
        &["highpte-256M.json", "not valid JSON"],
    );
    std::fs::write(bad.join("highpte-256M.json"), "{\"steps\": []}").unwrap();
    bad_input(
        &["calibrate", "--data", &bad.display().to_string()],
        &["highpte-256M.json", "phase \"boot\""],
    );
    bad_input(&["calibrate", "--kernel", "4.19"], &["4.19", "linux-6.1"]);
}
