//! End-to-end tests of `highpte run` through the binary: the JSON run object (docs/json.md),
//! the plot, determinism (same seed, same `event_hash`), workload files, and bad input
//! (exit 2; file errors name file:line:col; never a panic). Small machines and few processes
//! keep each run under a second or two.

mod cli_common;
use cli_common::*;

/// A small sga: 20 processes in two steps on a 2G machine.
const SMALL_SGA: &[&str] = &[
    "run",
    "sga",
    "--processes",
    "20",
    "--ramp",
    "10,10",
    "--ram",
    "2G",
];

#[test]
fn run_json_has_the_documented_keys_and_plot_is_svg() {
    let dir = tmp_dir("run-json");
    let plot = dir.join("run.svg");
    let mut args = SMALL_SGA.to_vec();
    let plot_s = plot.display().to_string();
    args.extend(["--json", "--plot", &plot_s]);
    let v = json_of(&args);
    assert_run_object(&v);
    assert_eq!(v["config"], "64g-highpte");
    assert_eq!(v["strategy"], "atomic");
    assert_eq!(v["seed"].as_u64(), Some(1));
    assert_eq!(v["processes_started"].as_u64(), Some(20));
    assert_eq!(v["processes_failed"].as_u64(), Some(0));
    assert!(v["first_failure"].is_null());
    assert_eq!(
        v["steps"].as_array().map(Vec::len),
        Some(2),
        "two ramp steps"
    );
    // 20 processes x 512M of PAE page tables (256 pte pages each) in high memory.
    assert!(v["pagetables"]["high_pages"].as_u64().unwrap() >= 20 * 256);
    assert!(v["counters"]["kmap_atomic"].as_u64().unwrap() > 0);
    assert_svg(&plot, "sga on 64g-highpte");
}

#[test]
fn run_same_seed_same_event_hash() {
    let hash = |seed: &str| {
        let v = json_of(&[
            "run",
            "churn",
            "--processes",
            "4",
            "--ram",
            "1G",
            "--seed",
            seed,
            "--json",
        ]);
        assert_run_object(&v);
        assert_eq!(v["seed"].as_u64(), seed.parse().ok());
        v["event_hash"].as_str().unwrap().to_string()
    };
    let a = hash("7");
    assert_eq!(a, hash("7"), "the same seed gives the same run");
    assert_ne!(a, hash("8"), "another seed gives another run");
    let sga = |_: ()| {
        let mut args = SMALL_SGA.to_vec();
        args.push("--json");
        json_of(&args)["event_hash"].as_str().unwrap().to_string()
    };
    assert_eq!(sga(()), sga(()), "sga twice: same event_hash");
}

#[test]
fn run_text_report_and_lowmem_config() {
    let out = stdout_of(&[
        "run",
        "sga",
        "--config",
        "64g",
        "--processes",
        "10",
        "--ramp",
        "none",
        "--ram",
        "2G",
    ]);
    for s in [
        "sga on 64g",
        "LowFree",
        "meminfo at the last step",
        "counters:",
        "event hash",
    ] {
        assert!(out.contains(s), "the report should contain {s:?}:\n{out}");
    }
}

#[test]
fn run_workload_file() {
    let dir = tmp_dir("run-file");
    let f = write_file(
        &dir,
        "hello.toml",
        r#"name = "hello"
[machine]
config = "4g-highpte"
ram = "256M"
cpus = 2
[processes]
count = 3
[[phases]]
name = "main"
ops = [
    { op = "mmap", name = "heap", size = "8M" },
    { op = "touch", region = "heap", write = true },
]
"#,
    );
    let v = json_of(&["run", &f, "--json"]);
    assert_run_object(&v);
    assert_eq!(v["workload"], "hello");
    assert_eq!(v["config"], "4g-highpte");
    assert_eq!(v["processes_started"].as_u64(), Some(3));
    assert!(v["first_failure"].is_null());
    let v = json_of(&["run", &f, "--config", "4g", "--cpus", "1", "--json"]);
    assert_eq!(v["config"], "4g", "flags override the file");
    assert_eq!(v["strategy"], "lowmem");
}

/// `machine.kernel` in a file and `--kernel` on the command line reach the run, and every
/// report says which profile ran: the JSON always, the text's machine line and the replay
/// command when it is not the default 2.5.
#[test]
fn run_kernel_profile_from_file_and_flag() {
    let dir = tmp_dir("run-kernel");
    let text = |kernel: &str| {
        format!(
            "name = \"k\"\n[machine]\nconfig = \"64g-highpte\"\nram = \"8G\"\ncpus = 1\n{kernel}[[phases]]\nname = \"main\"\nops = [ {{ op = \"mmap\", name = \"heap\", size = \"8M\" }}, {{ op = \"touch\", region = \"heap\", write = true }} ]\n"
        )
    };
    let plain = write_file(&dir, "plain.toml", &text(""));
    let v = json_of(&["run", &plain, "--json"]);
    assert_eq!(v["kernel"], "2.5", "the default profile");
    assert!(
        !v["replay"].as_str().unwrap().contains("--kernel"),
        "{}",
        v["replay"]
    );
    let out = stdout_of(&["run", &plain]);
    assert!(!out.contains("kernel"), "the default is not named:\n{out}");
    let v = json_of(&["run", &plain, "--kernel", "linux-6.1", "--json"]);
    assert_eq!(v["kernel"], "linux-6.1", "--kernel reaches the run");
    let six = write_file(&dir, "six.toml", &text("kernel = \"linux-6.1\"\n"));
    let v = json_of(&["run", &six, "--json"]);
    assert_eq!(v["kernel"], "linux-6.1", "machine.kernel reaches the run");
    let replay = v["replay"].as_str().unwrap();
    assert!(replay.contains(" --kernel linux-6.1"), "{replay}");
    let out = stdout_of(&["run", &six]);
    assert!(
        out.lines()
            .next()
            .unwrap()
            .contains("on 64g-highpte, kernel linux-6.1 (PAE paging)"),
        "{out}"
    );
    let v = json_of(&["run", &six, "--kernel", "2.5", "--json"]);
    assert_eq!(v["kernel"], "2.5", "the flag overrides the file");
    bad_input(
        &["run", &plain, "--kernel", "2.6"],
        &["unknown kernel profile '2.6'", "linux-6.1"],
    );
    let bad = write_file(&dir, "bad.toml", &text("kernel = \"2.6\"\n"));
    bad_input(
        &["run", &bad],
        &["bad.toml:6:1", "unknown kernel profile \"2.6\""],
    );
}

/// The bad workload files every command must refuse with file:line:col.
pub fn bad_files(dir: &std::path::Path) -> Vec<(String, &'static str, &'static str)> {
    let phases = "[[phases]]\nname = \"p\"\nops = [ { op = \"pause\" } ]\n";
    vec![
        (
            write_file(
                dir,
                "unknown_key.toml",
                &format!("name = \"x\"\n[machine]\nconfig = \"4g\"\ncolour = \"red\"\n{phases}"),
            ),
            "unknown_key.toml:4:1",
            "colour",
        ),
        (
            write_file(
                dir,
                "wrong_type.toml",
                &format!("name = \"x\"\n[machine]\ncpus = \"four\"\n{phases}"),
            ),
            "wrong_type.toml:3:8",
            "invalid type",
        ),
        (
            write_file(
                dir,
                "zero.toml",
                &format!("name = \"x\"\n[processes]\ncount = 0\n{phases}"),
            ),
            "zero.toml:3:1",
            "count = 0",
        ),
        (
            write_file(
                dir,
                "big.toml",
                &format!("name = \"x\"\n[machine]\nram = \"128G\"\n{phases}"),
            ),
            "big.toml:3:1",
            "128G",
        ),
        (
            write_file(
                dir,
                "cfg_ram.toml",
                &format!("name = \"x\"\n[machine]\nconfig = \"4g\"\nram = \"8G\"\n{phases}"),
            ),
            "cfg_ram.toml:4:1",
            "more than config \"4g\" can address",
        ),
        (
            write_file(dir, "syntax.toml", "name = \"x\n"),
            "syntax.toml:1:",
            "",
        ),
    ]
}

#[test]
fn run_bad_input_exits_2() {
    let dir = tmp_dir("run-bad");
    for (f, at, what) in bad_files(&dir) {
        bad_input(&["run", &f], &[at, what]);
    }
    bad_input(
        &["run", "nosuch"],
        &[
            "unknown workload 'nosuch'",
            "sga, wli, forkstorm, churn, pagecache",
        ],
    );
    bad_input(&["run", "nosuch.toml"], &["nosuch.toml", "cannot read"]);
    bad_input(
        &["run", "sga", "--config", "65g"],
        &["unknown configuration '65g'"],
    );
    bad_input(&["run", "sga", "--ram", "big"], &["not a size"]);
    bad_input(&["run", "sga", "--ram", "15M"], &["16M to 64G"]);
    bad_input(&["run", "sga", "--ram", "65G"], &["16M to 64G"]);
    bad_input(&["run", "sga", "--cpus", "0"], &["out of range"]);
    bad_input(&["run", "sga", "--cpus", "33"], &["out of range"]);
    // (RAM beyond what --config addresses is used as Linux did: cli_defects.rs)
    bad_input(
        &["run", "sga", "--processes", "0"],
        &["0 processes is out of range: accepted 1 to 32767"],
    );
    bad_input(
        &["run", "sga", "--ramp", "0,1"],
        &["--ramp '0,1'", "START,STEP"],
    );
    bad_input(&["run", "sga", "--seed", "-1"], &["-1"]);
    // (clap names the missing WORKLOAD on its second line, which usage_error drops.)
    bad_input(&["run"], &["required arguments"]);
}
