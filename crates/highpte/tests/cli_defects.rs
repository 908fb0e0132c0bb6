//! Issue 17's defects, each through the binary: hostile input, files the run did not create,
//! broken pipes, replays, late checks, one behaviour for one thing, and what reaches the
//! terminal.

mod cli_common;

use cli_common::{bad_input, highpte, json_of, stdout_of, tmp_dir};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A small workload file: 4g, 1G, one process, the given ops.
fn workload(dir: &Path, file: &str, ops: &str) -> String {
    let p = dir.join(file);
    std::fs::write(
        &p,
        format!(
            "name = \"w\"\n[machine]\nconfig = \"4g\"\nram = \"1G\"\ncpus = 1\n[processes]\ncount = 1\n[[phases]]\nname = \"a\"\nops = [ {ops} ]\n"
        ),
    )
    .expect("write the workload");
    p.display().to_string()
}

// ------------------------------------------------------------------------------------------
// 1. Unbounded host memory
// ------------------------------------------------------------------------------------------

#[test]
fn d1_an_endless_input_file_is_refused_at_the_cap() {
    let out = highpte()
        .args(["run", "/dev/zero"])
        .timeout(Duration::from_secs(60))
        .output()
        .expect("run highpte");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().next(),
        Some("highpte: /dev/zero: error: the workload file is larger than 1M (the most a workload file may hold)")
    );
}

#[test]
fn d1_a_file_bigger_than_the_disk_is_refused_before_the_run() {
    let dir = tmp_dir("d1-disk");
    let w = workload(
        &dir,
        "big.toml",
        "{ op = \"file_write\", file = \"f\", size = \"1T\" }",
    );
    let e = bad_input(&["run", &w], &[]);
    assert_eq!(
        e.lines().next().map(|l| l.replace(&w, "W")),
        Some("highpte: W:10:42: error: phases[0].ops[0].size: the files the workload writes add up to 1024G, more than the 16G disk of the simulated machine (file \"f\" alone: 1024G)".to_string())
    );
}

#[test]
fn d1_counts_that_cannot_finish_are_refused() {
    let dir = tmp_dir("d1-count");
    let w = workload(
        &dir,
        "count.toml",
        "{ op = \"mmap\", name = \"r\", size = \"1M\" }, { op = \"touch\", region = \"r\", count = 1000000000000 }",
    );
    bad_input(
        &["run", &w],
        &[
            "phases[0].ops[1].count",
            "about 1000000000001 page accesses",
        ],
    );
    bad_input(
        &["stress", "--ops", "99999999999"],
        &["--ops", "99999999999 is not in 1..=1000000"],
    );
    bad_input(&["matrix", "--ops", "99999999999"], &["--ops"]);
}

// ------------------------------------------------------------------------------------------
// 2. --swap-file never deletes a file the run did not create
// ------------------------------------------------------------------------------------------

#[test]
fn d2_swap_file_refuses_an_existing_file_and_leaves_it_alone() {
    let dir = tmp_dir("d2-swap");
    let important = dir.join("important.txt");
    std::fs::write(&important, "precious").expect("write");
    let imp = important.display().to_string();
    bad_input(
        &[
            "run",
            "sga",
            "--processes",
            "10",
            "--swap",
            "64M",
            "--swap-file",
            &imp,
        ],
        &[&imp, "already exists", "--swap-file-overwrite"],
    );
    assert_eq!(
        std::fs::read_to_string(&important).ok().as_deref(),
        Some("precious")
    );
    // compare: the numbered files PATH.0, PATH.1 are refused as well, and none is touched.
    let keep = dir.join("keep");
    let keep1 = dir.join("keep.1");
    std::fs::write(&keep1, "mine").expect("write");
    let k = keep.display().to_string();
    bad_input(
        &[
            "compare",
            "sga",
            "--configs",
            "64g,64g-highpte",
            "--processes",
            "10",
            "--swap",
            "64M",
            "--swap-file",
            &k,
        ],
        &[&keep1.display().to_string(), "already exists"],
    );
    assert_eq!(
        std::fs::read_to_string(&keep1).ok().as_deref(),
        Some("mine")
    );
    assert!(
        !dir.join("keep.0").exists(),
        "keep.0 was created by a refused run"
    );
    // said explicitly, the path is used (and the run removes the swap file it used)
    let out = highpte()
        .args([
            "run",
            "sga",
            "--processes",
            "10",
            "--swap",
            "64M",
            "--swap-file",
            &imp,
            "--swap-file-overwrite",
            "--quiet",
        ])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ------------------------------------------------------------------------------------------
// 3. Broken pipes
// ------------------------------------------------------------------------------------------

/// Run `highpte ARGS` with stdout a pipe whose reader is gone: the program must end quietly
/// (killed by SIGPIPE, as `yes | head` is), never panic.
fn closed_pipe(args: &[&str]) {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("highpte"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn highpte");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr, "",
        "highpte {args:?} wrote to stderr on a closed pipe"
    );
    use std::os::unix::process::ExitStatusExt;
    assert!(
        out.status.signal() == Some(libc_sigpipe()) || out.status.code() == Some(0),
        "highpte {args:?} ended with {:?}",
        out.status
    );
}

fn libc_sigpipe() -> i32 {
    13
}

#[test]
fn d3_a_closed_pipe_ends_the_program_quietly() {
    closed_pipe(&[
        "run",
        "sga",
        "--config",
        "4g",
        "--ram",
        "1G",
        "--processes",
        "100",
    ]);
    closed_pipe(&["boot", "--json"]);
    closed_pipe(&["sites"]);
}

// ------------------------------------------------------------------------------------------
// 4. Replays that replay; a deadlocked run reports where it stopped
// ------------------------------------------------------------------------------------------

/// Run a printed `highpte ...` command (with `--json` added) from `dir`; its event hash.
fn replay_hash(cmd: &str, dir: &Path) -> String {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"highpte"), "{cmd}");
    let out = highpte()
        .current_dir(dir)
        .args(&words[1..])
        .arg("--json")
        .output()
        .expect("run the replay");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{cmd}: no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    v["event_hash"].as_str().unwrap_or_default().to_string()
}

#[test]
fn d4_every_printed_replay_reproduces_the_run_from_any_directory() {
    let elsewhere = tmp_dir("d4-elsewhere");
    let v = json_of(&["explain-deadlock", "--json"]);
    for side in ["persistent", "atomic"] {
        let cmd = v[side]["replay"].as_str().expect("a replay command");
        assert_eq!(
            replay_hash(cmd, &elsewhere),
            v[side]["event_hash"].as_str().unwrap_or_default(),
            "{side}: {cmd}"
        );
    }
    // the run's own replay line reproduces it again
    let dead = v["persistent"]["replay"].as_str().unwrap_or_default();
    let words: Vec<&str> = dead.split_whitespace().skip(1).collect();
    let mut args = words.clone();
    args.push("--json");
    let out = highpte()
        .current_dir(&elsewhere)
        .args(&args)
        .output()
        .expect("run");
    let run: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let again = run["replay"].as_str().expect("run --json has replay");
    assert!(
        again.contains("--pkmap-entries 2") && again.contains("--stress"),
        "{again}"
    );
    assert_eq!(
        replay_hash(again, &elsewhere),
        run["event_hash"].as_str().unwrap_or_default()
    );
    // a workload file is replayed by its absolute path
    let dir = tmp_dir("d4-file");
    let w = workload(
        &dir,
        "w.toml",
        "{ op = \"mmap\", name = \"r\", size = \"1M\", populate = true }",
    );
    let r = json_of(&["run", &w, "--json"]);
    let cmd = r["replay"].as_str().unwrap_or_default();
    assert!(
        cmd.starts_with(&format!("highpte run {w} --config 4g --ram 1G --cpus 1")),
        "{cmd}"
    );
    assert_eq!(
        replay_hash(cmd, &elsewhere),
        r["event_hash"].as_str().unwrap_or_default()
    );
    // stress prints its replay with --json too
    let s = json_of(&[
        "stress",
        "--ops",
        "20",
        "--processes",
        "2",
        "--seed",
        "3",
        "--json",
    ]);
    let cmd = s["replay"].as_str().unwrap_or_default();
    assert_eq!(
        replay_hash(cmd, &elsewhere),
        s["event_hash"].as_str().unwrap_or_default()
    );
}

#[test]
fn d4_a_deadlocked_run_reports_the_state_it_stopped_in() {
    let args = [
        "run",
        "kmap-deadlock",
        "--pkmap-entries",
        "2",
        "--stress",
        "--seed",
        "2",
    ];
    let out = highpte().args(args).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("no failure: all"), "{text}");
    assert!(
        text.contains(
            "no process failed, but the machine deadlocked in step 1 with 8 processes started"
        ),
        "{text}"
    );
    assert!(!text.contains("MemTotal:                0 kB"), "{text}");
    assert_no_host_address(&text);
    let mut j = args.to_vec();
    j.push("--json");
    let v: Value =
        serde_json::from_slice(&highpte().args(&j).output().expect("run").stdout).expect("JSON");
    assert_eq!(v["deadlocked"], true);
    let steps = v["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 1, "{v}");
    assert_eq!(steps[0]["step"], 1);
    assert_eq!(steps[0]["processes"], 8);
    // the same machine as the atomic run of the same seed, which completes
    let atomic = json_of(&[
        "run",
        "kmap-deadlock",
        "--pkmap-entries",
        "2",
        "--stress",
        "--seed",
        "2",
        "--strategy",
        "atomic",
        "--json",
    ]);
    assert_eq!(v["meminfo"]["MemTotal"], atomic["meminfo"]["MemTotal"]);
    assert!(
        v["meminfo"]["MemTotal"].as_u64() > Some(2_000_000),
        "{}",
        v["meminfo"]
    );
    assert_no_host_address(&v.to_string());
    let text = stdout_of(&["explain-deadlock"]);
    assert!(text.contains("Seed 1 (the 1st tried) deadlocks:"), "{text}");
    assert_no_host_address(&text);
}

/// No parenthesised hexadecimal of 9 digits or more (a host pointer) in `s`.
fn assert_no_host_address(s: &str) {
    for (i, _) in s.match_indices("(0x") {
        let digits = s[i + 3..].bytes().take_while(u8::is_ascii_hexdigit).count();
        assert!(
            digits < 9,
            "a host address in the output: {}",
            &s[i..i + 3 + digits]
        );
    }
}

// ------------------------------------------------------------------------------------------
// 5. Inputs checked before the first simulated cycle
// ------------------------------------------------------------------------------------------

#[test]
fn d5_plot_paths_are_checked_first_and_png_means_png() {
    let dir = tmp_dir("d5-plot");
    let pdf = dir.join("out.pdf").display().to_string();
    bad_input(
        &["run", "sga", "--processes", "10", "--plot", &pdf],
        &[&pdf, ".svg or .png"],
    );
    assert!(!dir.join("out.pdf").exists());
    let missing = dir.join("no/such/dir/x.svg").display().to_string();
    bad_input(
        &["compare", "sga", "--processes", "10", "--plot", &missing],
        &[&missing, "cannot write"],
    );
    let png = dir.join("sweep.png");
    let p = png.display().to_string();
    let out = highpte()
        .args([
            "sweep",
            "sga",
            "--vary",
            "processes=10..20/10",
            "--quiet",
            "--plot",
            &p,
        ])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&png).expect("the plot");
    assert_eq!(&bytes[..4], b"\x89PNG", "sweep --plot x.png writes a PNG");
}

#[test]
fn d5_bad_values_are_refused_before_the_run() {
    bad_input(
        &["matrix", "--ops", "0"],
        &["--ops", "0 is not in 1..=1000000"],
    );
    bad_input(
        &["matrix", "--jobs", "0"],
        &["'0' is not a number of jobs: accepted 1 to 256"],
    );
    bad_input(
        &["compare", "sga", "--jobs", "0"],
        &["'0' is not a number of jobs: accepted 1 to 256"],
    );
    bad_input(
        &["run", "sga", "--pkmap-entries", "3"],
        &["3 kmap entries: accepted a power of two from 2 to 1024"],
    );
    bad_input(
        &["run", "sga", "--pkmap-entries", "1024"],
        &["512 entries LAST_PKMAP has with PAE"],
    );
    bad_input(&["matrix", "--reclaim", "rmap"], &["--overcommit"]);
    bad_input(&["stress", "--reclaim", "rmap"], &["--overcommit"]);
    bad_input(
        &["run", "sga", "--processes", "1000000000000"],
        &["1000000000000 processes is out of range: accepted 1 to 32767"],
    );
    let dir = tmp_dir("d5-count");
    let w = dir.join("w.toml");
    std::fs::write(&w, "name = \"w\"\n[processes]\ncount = 1000000000000\n[[phases]]\nname = \"a\"\nops = [ { op = \"pause\" } ]\n").expect("write");
    bad_input(
        &["run", &w.display().to_string()],
        &["processes.count", "expected a whole number from 1 to 32767"],
    );
}

// ------------------------------------------------------------------------------------------
// 6. One behaviour for one thing
// ------------------------------------------------------------------------------------------

const RAM_NOTE: &str = "a 4g kernel addresses at most 4G of RAM, so it uses 4G of the 8G and ignores the rest, as Linux did";

#[test]
fn d6_ram_beyond_the_config_is_used_as_linux_did_everywhere() {
    let out = highpte()
        .args([
            "run",
            "sga",
            "--config",
            "4g",
            "--ram",
            "8G",
            "--processes",
            "10",
            "--json",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["ram_bytes"], 4u64 << 30);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("highpte: note: {RAM_NOTE}\n")
    );
    let out = highpte()
        .args(["boot", "--config", "4g", "--ram", "8G", "--json"])
        .output()
        .expect("boot");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("highpte: note: {RAM_NOTE}\n")
    );
    let text = stdout_of(&[
        "compare",
        "sga",
        "--configs",
        "4g",
        "--ram",
        "8G",
        "--processes",
        "10",
        "--quiet",
    ]);
    assert!(text.contains(&format!("note: {RAM_NOTE}")), "{text}");
}

#[test]
fn d6_every_command_takes_the_same_switches() {
    let preempt = |args: &[&str]| json_of(args)["preempt"].clone();
    assert_eq!(
        preempt(&[
            "run",
            "sga",
            "--processes",
            "5",
            "--preempt",
            "off",
            "--json"
        ]),
        false
    );
    assert_eq!(
        preempt(&["run", "sga", "--processes", "5", "--no-preempt", "--json"]),
        false
    );
    assert_eq!(
        preempt(&["run", "sga", "--processes", "5", "--preempt", "--json"]),
        true
    );
    assert_eq!(
        preempt(&[
            "stress",
            "--ops",
            "5",
            "--processes",
            "1",
            "--preempt",
            "off",
            "--json"
        ]),
        false
    );
    assert_eq!(
        preempt(&[
            "stress",
            "--ops",
            "5",
            "--processes",
            "1",
            "--no-preempt",
            "--json"
        ]),
        false
    );
    assert_eq!(preempt(&["boot", "--no-preempt", "--json"]), false);
    for cmd in [
        "demo",
        "boot",
        "explain-deadlock",
        "matrix",
        "stress",
        "run",
        "compare",
        "sweep",
        "bench",
        "sites",
    ] {
        let help = stdout_of(&[cmd, "--help"]);
        for flag in ["--quiet", "--json"] {
            assert!(help.contains(flag), "highpte {cmd} lacks {flag}");
        }
    }
    for cmd in ["run", "stress"] {
        assert!(
            stdout_of(&[cmd, "--help"]).contains("--fail-alloc"),
            "{cmd} lacks --fail-alloc"
        );
    }
    for cmd in ["matrix", "compare", "sweep"] {
        assert!(
            stdout_of(&[cmd, "--help"]).contains("-j, --jobs"),
            "{cmd} lacks -j"
        );
    }
    let v = json_of(&[
        "run",
        "sga",
        "--processes",
        "5",
        "--fail-alloc",
        "site=pte_alloc_one",
        "--json",
    ]);
    assert!(v["first_failure"].is_object(), "{v}");
    // no arguments: the help on stderr, status 2
    let out = highpte().output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: highpte <COMMAND>"));
}

#[test]
fn d6_tables_and_json_number_processes_and_steps_alike() {
    let args = ["run", "sga", "--config", "64g", "--processes", "600"];
    let text = stdout_of(&args);
    let mut j = args.to_vec();
    j.push("--json");
    let v = json_of(&j);
    let f = &v["first_failure"];
    let line = format!(
        "first failure: process {} (pid {}) in step {},",
        f["process"], f["pid"], f["step"]
    );
    assert!(
        text.contains(&line),
        "the table says otherwise than JSON {f}:\n{text}"
    );
    assert_eq!(v["steps"][0]["step"], 1, "steps are numbered from 1");
}

#[test]
fn d6_error_wording() {
    let e = bad_input(
        &["stress", "--preempt", "maybe"],
        &["'maybe' is not on or off"],
    );
    assert_eq!(e.matches("possible values").count(), 0, "{e}");
    let e = bad_input(
        &["run", "sga", "--ram", "12Q"],
        &["RAM '12Q' is not a size"],
    );
    assert_eq!(e.matches("not a size").count(), 1, "{e}");
    let e = bad_input(
        &["run", "sga", "--seed", "-1"],
        &["seed '-1' is not a whole number"],
    );
    assert!(!e.contains("'-- -1'"), "{e}");
    let e = bad_input(
        &["stress", "--config", "5g"],
        &["unknown configuration '5g'"],
    );
    assert_eq!(e.lines().count(), 1, "{e}");
}

// ------------------------------------------------------------------------------------------
// 8. Output
// ------------------------------------------------------------------------------------------

#[test]
fn d8_meminfo_says_page_tables_once() {
    let text = stdout_of(&["run", "sga", "--processes", "5"]);
    assert_eq!(text.matches("PageTables:").count(), 1, "{text}");
}

#[test]
fn d8_names_are_escaped_and_cut() {
    let dir = tmp_dir("d8-name");
    let w = dir.join("w.toml");
    let name = format!("evil\\u001b[2J{}", "x".repeat(100_000));
    std::fs::write(&w, format!("name = \"{name}\"\n[machine]\nconfig = \"4g\"\nram = \"1G\"\n[processes]\ncount = 1\n[[phases]]\nname = \"a\"\nops = [ {{ op = \"pause\" }} ]\n")).expect("write");
    let out = highpte()
        .args(["run", &w.display().to_string()])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert!(!out.stdout.contains(&0x1b), "an ESC reached the terminal");
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or_default();
    assert!(first.starts_with("evil\\u{1b}[2Jxxxx"), "{first}");
    assert!(first.contains("... (99949 more characters)"), "{first}");
    assert!(text.len() < 10_000, "the name was echoed whole");
}

#[test]
fn d8_demo_writes_a_plot_only_when_asked() {
    let dir = tmp_dir("d8-demo");
    let out = highpte()
        .current_dir(&dir)
        .args(["demo", "--quick", "--json"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(v["plot"].is_null());
    assert_eq!(
        std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(99),
        0,
        "demo wrote into the current directory"
    );
}

// ------------------------------------------------------------------------------------------
// 7. Progress on a terminal, none on a pipe
// ------------------------------------------------------------------------------------------

/// Run `highpte ARGS` on a pseudo-terminal (util-linux `script`); everything it drew, with
/// carriage returns as line breaks and ANSI escape sequences removed.
fn on_a_terminal(args: &str) -> String {
    let bin = assert_cmd::cargo::cargo_bin("highpte");
    let out = Command::new("script")
        .args(["-qec", &format!("{} {args}", bin.display()), "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("util-linux script runs the command on a pseudo-terminal");
    let raw = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    let mut text = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            text.push(c);
        }
    }
    text
}

#[test]
fn d7_long_commands_show_progress_on_a_terminal_and_clear_it() {
    let t = on_a_terminal("stress --ops 20000 --processes 4");
    assert!(
        t.lines().any(|l| l.contains("stress on 64g-highpte [")
            && l.contains("0/1 steps")
            && l.contains(" operations")),
        "a one-step run's bar moves with its operations:\n{t}"
    );
    assert!(
        t.lines()
            .any(|l| l.starts_with("pass: churn on 64g-highpte")),
        "{t}"
    );
    let t = on_a_terminal("matrix --ops 20 --processes 2");
    assert!(
        t.lines()
            .any(|l| l.contains("matrix [") && l.contains("/20 cells")),
        "{t}"
    );
    assert!(
        t.lines().any(|l| l.starts_with("The seed's test matrix")),
        "{t}"
    );
    let t = on_a_terminal("explain-deadlock");
    assert!(
        t.lines()
            .any(|l| l.contains("looking for a deadlock [") && l.contains("/40 seeds")),
        "{t}"
    );
    // on a pipe: nothing but the report
    let out = highpte()
        .args(["stress", "--ops", "2000"])
        .output()
        .expect("run");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn d7_bench_prints_json_when_asked() {
    let v = json_of(&["bench", "--quick", "--only", "tlb", "--json"]);
    let tables = v["tables"].as_array().expect("tables");
    // the TLB-hit loop and, beside it, the replay of a trace
    assert_eq!(tables.len(), 2, "{v}");
    for t in tables {
        assert!(t["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert_eq!(t["rows"].as_array().map(Vec::len), Some(2), "{t}");
    }
    assert!(tables[1]["title"]
        .as_str()
        .is_some_and(|t| t.contains("sqlite-first60k.pgt.zst")));
}

#[test]
fn d4_matrix_cells_carry_the_replay_that_reproduces_them() {
    let elsewhere = tmp_dir("d4-matrix");
    let v = json_of(&["matrix", "--ops", "20", "--processes", "2", "--json"]);
    let cells = v["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 20);
    for c in [&cells[0], &cells[19]] {
        let cmd = c["replay"].as_str().expect("a replay command");
        assert_eq!(
            replay_hash(cmd, &elsewhere),
            c["event_hash"].as_str().unwrap_or_default(),
            "{cmd}"
        );
    }
}
