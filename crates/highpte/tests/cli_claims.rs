//! The demo's claims, checked at full scale with the built-in workloads' real defaults, and
//! `highpte demo --quick` end to end.
//!
//! These are the slow tests of the crate (about 30 s of host time in release on a 2-core
//! machine, most of it `sga` on `64g-highpte` ramping to 2000 processes). They are required,
//! not ignored: CI runs them once, in `cargo test --workspace --release`. The test harness runs
//! them side by side (one test per claim), so the slowest run bounds the wall time.

mod cli_common;
use cli_common::*;
use serde_json::Value;

const KB_PER_MB: u64 = 1024;
const KB_PER_GB: u64 = 1024 * 1024;

fn run(workload: &str, config: &str) -> Value {
    let v = json_of(&["run", workload, "--config", config, "--json"]);
    assert_run_object(&v);
    assert!(
        v["check_failures"].as_array().is_some_and(Vec::is_empty),
        "no check failed: {}",
        v["check_failures"]
    );
    v
}

#[test]
fn claim_sga_on_64g_fails_before_600_processes_with_lowfree_near_zero() {
    let v = run("sga", "64g");
    assert_eq!(
        v["ram_bytes"].as_u64(),
        Some(32 << 30),
        "the real default: 32G"
    );
    let f = &v["first_failure"];
    assert!(f.is_object(), "sga on 64g must fail: {v}");
    let started = v["processes_started"].as_u64().unwrap();
    assert!(
        started < 600,
        "fails before 600 processes (started {started})"
    );
    let low = f["LowFree"].as_u64().unwrap();
    assert!(
        low < 2 * KB_PER_MB,
        "LowFree near zero at the failure: {low} kB"
    );
    assert_eq!(f["errno_or_signal"], "ENOMEM");
}

#[test]
fn claim_sga_on_64g_highpte_reaches_2000_with_lowfree_above_200mb() {
    let v = run("sga", "64g-highpte");
    assert!(
        v["first_failure"].is_null(),
        "no failure: {}",
        v["first_failure"]
    );
    assert_eq!(v["processes_started"].as_u64(), Some(2000));
    assert_eq!(v["processes_failed"].as_u64(), Some(0));
    let low = v["meminfo"]["LowFree"].as_u64().unwrap();
    assert!(
        low > 200 * KB_PER_MB,
        "LowFree at the end {low} kB > 200 MB"
    );
    assert!(
        v["pagetables"]["high_pages"].as_u64().unwrap() >= 2000 * 256,
        "pte pages in high memory"
    );
}

#[test]
fn claim_wli_on_64g_fails_with_more_than_8gb_highfree() {
    let v = run("wli", "64g");
    assert_eq!(
        v["ram_bytes"].as_u64(),
        Some(12 << 30),
        "the real default: 12G"
    );
    let f = &v["first_failure"];
    assert!(f.is_object(), "wli on 64g must fail: {v}");
    let high = f["HighFree"].as_u64().unwrap();
    assert!(
        high > 8 * KB_PER_GB,
        "HighFree at the first failure {high} kB > 8 GB"
    );
    assert!(f["LowFree"].as_u64().unwrap() < 2 * KB_PER_MB);
}

#[test]
fn claim_wli_on_64g_highpte_runs_all_1024() {
    let v = run("wli", "64g-highpte");
    assert!(
        v["first_failure"].is_null(),
        "no failure: {}",
        v["first_failure"]
    );
    assert_eq!(v["processes_started"].as_u64(), Some(1024));
    assert_eq!(v["processes_failed"].as_u64(), Some(0));
}

#[test]
fn demo_quick_json_text_and_plot() {
    let dir = tmp_dir("demo");
    let plot = dir.join("demo.svg");
    let plot_s = plot.display().to_string();
    let v = json_of(&["demo", "--quick", "--json", "--plot", &plot_s]);
    for part in ["sga", "wli"] {
        let runs = v[part]
            .as_array()
            .unwrap_or_else(|| panic!("demo.{part} is a list"));
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0]["config"], "64g");
        assert_eq!(runs[1]["config"], "64g-highpte");
        runs.iter().for_each(assert_run_object);
    }
    assert!(
        v["sga"][0]["first_failure"].is_object(),
        "quick sga on 64g still fails"
    );
    assert!(v["sga"][1]["first_failure"].is_null());
    assert_eq!(v["plot"], plot_s.as_str());
    assert!(v["host_seconds"].as_f64().is_some());
    assert_svg(&plot, "sga: 512 MB SGA");
}
