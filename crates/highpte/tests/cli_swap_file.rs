//! `--swap-file PATH`: an overcommitted run with its swap device in a host file reports the
//! same simulation as with swap in host memory and leaves no file behind; compare gives each
//! run its own file; a path the host refuses, or a machine without swap, is bad input.

mod cli_common;
use cli_common::*;
use std::path::Path;

/// 2 processes write and read back 24M each on a 32M machine with 64M of swap: about a
/// second of a debug build.
const OVERCOMMIT: &str = r#"
name = "overcommit"

[machine]
config = "nohighmem"
ram = "32M"
swap = "64M"
cpus = 2

[processes]
count = 2

[[phases]]
name = "fill"
ops = [
    { op = "mmap", name = "ballast", size = "24M" },
    { op = "touch", region = "ballast", write = true },
]

[[phases]]
name = "verify"
ops = [ { op = "touch", region = "ballast" } ]
"#;

fn workload(dir: &Path) -> String {
    write_file(dir, "overcommit.toml", OVERCOMMIT)
}

#[test]
fn swap_in_a_file_is_the_same_run_as_swap_in_memory() {
    let dir = tmp_dir("swap-file-same-run");
    let w = workload(&dir);
    let swap = dir.join("swap");
    let swap_arg = swap.display().to_string();
    let in_file = json_of(&["run", &w, "--check", "--json", "--swap-file", &swap_arg]);
    assert!(!swap.exists(), "the swap file is removed at the end");
    let in_memory = json_of(&["run", &w, "--check", "--json"]);
    assert_run_object(&in_file);
    assert_eq!(in_file["outcome"], "completed", "{in_file}");
    assert_eq!(
        in_file["check_failures"],
        serde_json::json!([]),
        "{in_file}"
    );
    let c = &in_file["counters"];
    assert!(c["pswpout"].as_u64().unwrap() > 1000, "{c}");
    assert!(c["pswpin"].as_u64().unwrap() > 1000, "{c}");
    for k in [
        "event_hash",
        "cycles",
        "cycles_all_cpus",
        "counters",
        "meminfo_end",
        "operations",
    ] {
        assert_eq!(in_file[k], in_memory[k], "{k} differs with --swap-file");
    }
}

#[test]
fn compare_gives_each_run_its_own_numbered_file() {
    let dir = tmp_dir("swap-file-compare");
    let w = workload(&dir);
    let base = dir.join("swap");
    // PATH itself is not one of the runs' files: left alone
    std::fs::write(&base, b"not mine").unwrap();
    let runs = json_of(&[
        "compare",
        &w,
        "--configs",
        "nohighmem,4g",
        "--jobs",
        "2",
        "--json",
        "--swap-file",
        &base.display().to_string(),
    ]);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for r in runs {
        assert_eq!(r["outcome"], "completed", "{r}");
        assert!(r["counters"]["pswpout"].as_u64().unwrap() > 0, "{r}");
    }
    assert!(!dir.join("swap.0").exists() && !dir.join("swap.1").exists());
    assert_eq!(
        std::fs::read(&base).unwrap(),
        b"not mine",
        "PATH itself is not used when each run has its own file"
    );
}

#[test]
fn a_swap_file_the_host_refuses_is_bad_input_naming_it() {
    let dir = tmp_dir("swap-file-bad-path");
    let w = workload(&dir);
    let missing = dir.join("no-such-dir").join("swap");
    let m = missing.display().to_string();
    bad_input(
        &["run", &w, "--swap-file", &m],
        &[&m, "No such file or directory", "directory does not exist"],
    );
    let d = dir.display().to_string();
    bad_input(&["run", &w, "--swap-file", &d], &[&d, "not a regular file"]);
    // several runs: the first numbered file is tried before any run starts
    bad_input(
        &["matrix", "--overcommit", "--swap-file", &m],
        &[&format!("{m}.0"), "directory does not exist"],
    );
}

#[test]
fn a_swap_file_without_swap_is_bad_input() {
    bad_input(
        &["run", "churn", "--swap-file", "/tmp/unused-swap"],
        &[
            "--swap-file /tmp/unused-swap",
            "needs a swap device",
            "--swap SIZE",
        ],
    );
    bad_input(
        &[
            "run",
            "churn",
            "--swap",
            "0",
            "--swap-file",
            "/tmp/unused-swap",
        ],
        &["needs a swap device"],
    );
    bad_input(
        &["stress", "--swap-file", "/tmp/unused-swap"],
        &["needs a swap device", "--overcommit"],
    );
    bad_input(
        &["matrix", "--swap-file", "/tmp/unused-swap"],
        &["needs a swap device", "--overcommit"],
    );
    bad_input(
        &["boot", "--swap-file", "/tmp/unused-swap"],
        &["needs a swap device", "--swap SIZE"],
    );
    assert!(!Path::new("/tmp/unused-swap").exists());
}

#[test]
fn a_host_write_error_stops_the_run_with_a_failed_check_naming_the_file() {
    use std::os::unix::process::CommandExt;
    let dir = tmp_dir("swap-file-full");
    let w = workload(&dir);
    let swap = dir.join("swap");
    let swap_arg = swap.display().to_string();
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("highpte"));
    cmd.args(["run", &w, "--json", "--swap-file", &swap_arg]);
    // SAFETY: setrlimit is async-signal-safe; the child only lowers its own file-size limit
    // (64 blocks: the swap file's write of block 64 fails with EFBIG, as a full disk fails
    // with ENOSPC) before exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 64 * 4096,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let out = cmd.output().expect("run highpte");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed check; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the JSON report");
    let outcome = v["outcome"].as_str().unwrap_or("");
    assert!(
        outcome.starts_with("host I/O error: writing block"),
        "{outcome}"
    );
    assert!(outcome.contains(&swap_arg), "{outcome}");
    assert!(outcome.contains("File too large"), "{outcome}");
    let checks = v["check_failures"].to_string();
    assert!(
        checks.contains("simulation stopped: host I/O error"),
        "{checks}"
    );
    assert!(!swap.exists(), "the swap file is removed");
}
