//! `--timeline`, `--ftrace` and `--timeline-plot`: the JSON follows the trace-event format
//! (every B has its E on the same track, time only grows on a track, flow ids come in pairs),
//! its slices count what the kernel counted, a window holds only its events, and recording
//! never changes the run (its event hash).

mod cli_common;

use cli_common::{highpte, json_of, tmp_dir};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// A small run: 2 churn processes on 2 CPUs.
const RUN: &[&str] = &[
    "run",
    "churn",
    "--processes",
    "2",
    "--cpus",
    "2",
    "--json",
    "-q",
];

fn run_with(extra: &[&str]) -> Value {
    let mut args: Vec<&str> = RUN.to_vec();
    args.extend_from_slice(extra);
    json_of(&args)
}

fn counter(r: &Value, name: &str) -> u64 {
    r["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("counter {name}"))
}

/// The events of a trace-event file, checked against the format's rules.
fn check_trace(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("timeline written");
    let v: Value = serde_json::from_str(&text).expect("the timeline is JSON");
    let events = v["traceEvents"].as_array().expect("traceEvents").clone();
    let mut stacks: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    let mut last_ts: BTreeMap<(u64, u64), f64> = BTreeMap::new();
    let mut counters: BTreeMap<(u64, String), f64> = BTreeMap::new();
    let mut flows: BTreeMap<u64, (u32, u32)> = BTreeMap::new();
    for e in &events {
        let ph = e["ph"].as_str().expect("ph");
        if ph == "M" {
            continue;
        }
        let pid = e["pid"].as_u64().expect("pid");
        let tid = e["tid"].as_u64().expect("tid");
        let ts = e["ts"].as_f64().expect("ts");
        if ph == "C" {
            let k = (pid, e["name"].as_str().unwrap().to_string());
            let last = counters.insert(k.clone(), ts).unwrap_or(0.0);
            assert!(ts >= last, "counter {k:?} goes back in time: {e}");
            continue;
        }
        let last = last_ts.insert((pid, tid), ts).unwrap_or(0.0);
        assert!(
            ts >= last,
            "track {pid}/{tid} goes back in time ({last} then {ts}): {e}"
        );
        match ph {
            "B" => stacks
                .entry((pid, tid))
                .or_default()
                .push(e["name"].as_str().unwrap().to_string()),
            "E" => {
                let open = stacks.entry((pid, tid)).or_default().pop();
                assert!(open.is_some(), "E without B on track {pid}/{tid}: {e}");
            }
            "X" => {
                let dur = e["dur"].as_f64().expect("dur");
                assert!(dur >= 0.0, "{e}");
                last_ts.insert((pid, tid), ts + dur);
            }
            "s" => flows.entry(e["id"].as_u64().unwrap()).or_default().0 += 1,
            "f" => flows.entry(e["id"].as_u64().unwrap()).or_default().1 += 1,
            "i" => {}
            other => panic!("unexpected phase {other}: {e}"),
        }
    }
    for (track, open) in &stacks {
        assert!(open.is_empty(), "track {track:?} left open: {open:?}");
    }
    for (id, n) in &flows {
        assert_eq!(*n, (1, 1), "flow {id} is not one start and one end");
    }
    events
}

/// Slices of category `cat` that begin on the task tracks (process 2).
fn task_slices(events: &[Value], cat: &str) -> u64 {
    events
        .iter()
        .filter(|e| e["ph"] == "B" && e["pid"] == 2 && e["cat"] == cat)
        .count() as u64
}

#[test]
fn timeline_follows_the_format_counts_the_run_and_changes_nothing() {
    let dir = tmp_dir("timeline-format");
    let json = dir.join("t.json");
    let text = dir.join("t.txt");
    let plain = run_with(&[]);
    let r = run_with(&[
        "--timeline",
        json.to_str().unwrap(),
        "--ftrace",
        text.to_str().unwrap(),
    ]);
    assert_eq!(
        r["event_hash"], plain["event_hash"],
        "the timeline changed the run"
    );
    assert_eq!(r["counters"], plain["counters"]);
    let events = check_trace(&json);
    assert_eq!(task_slices(&events, "syscall"), counter(&r, "syscalls"));
    assert_eq!(task_slices(&events, "fault"), counter(&r, "faults"));
    let kmaps = events
        .iter()
        .filter(|e| e["ph"] == "X" && e["cat"] == "kmap")
        .count() as u64;
    assert_eq!(kmaps, counter(&r, "kmap_atomic"));
    assert!(counter(&r, "faults") > 100, "a run that faults");
    // faults carry their address, failed system calls their errno
    let fault = events
        .iter()
        .find(|e| e["ph"] == "B" && e["cat"] == "fault")
        .unwrap();
    assert!(fault["args"]["address"].as_str().unwrap().starts_with("0x"));
    assert!(events
        .iter()
        .any(|e| e["ph"] == "C" && e["name"] == "LowFree (kB)"));
    assert!(events
        .iter()
        .any(|e| e["ph"] == "B" && e["pid"] == 1 && e["cat"] == "sched"));
    // the ftrace log: the same events as lines `task-pid [cpu] seconds: event: fields`
    let log = std::fs::read_to_string(&text).unwrap();
    let line = regex_free_line_check(&log);
    assert!(line > 0);
    let count = |ev: &str| {
        log.lines()
            .filter(|l| l.contains(&format!(" {ev}: ")))
            .count() as u64
    };
    assert_eq!(count("sys_enter"), counter(&r, "syscalls"));
    assert_eq!(count("page_fault_user"), counter(&r, "faults"));
    assert_eq!(count("kmap_atomic"), counter(&r, "kmap_atomic"));
}

/// Every line of an ftrace log has the shape `NAME-PID [CCC] S.UUUUUU: EVENT: FIELDS`;
/// returns the number of lines.
fn regex_free_line_check(log: &str) -> usize {
    for l in log.lines() {
        let (who, rest) = l.trim_start().split_once(" [").expect(l);
        assert!(
            who.rsplit_once('-')
                .is_some_and(|(_, pid)| pid.parse::<u32>().is_ok()),
            "{l}"
        );
        let (cpu, rest) = rest.split_once("] ").expect(l);
        assert!(cpu.len() == 3 && cpu.parse::<u32>().is_ok(), "{l}");
        let (secs, rest) = rest.split_once(": ").expect(l);
        assert!(
            secs.parse::<f64>().is_ok() && secs.split_once('.').unwrap().1.len() == 6,
            "{l}"
        );
        assert!(
            rest.split_once(": ").is_some() || rest.ends_with(':'),
            "{l}"
        );
    }
    log.lines().count()
}

#[test]
fn a_window_holds_only_its_events() {
    let dir = tmp_dir("timeline-window");
    let json = dir.join("w.json");
    let text = dir.join("w.txt");
    // cycles 4,000,000 to 6,000,000 at the default 2 GHz: 2,000 to 3,000 us
    run_with(&[
        "--timeline",
        json.to_str().unwrap(),
        "--ftrace",
        text.to_str().unwrap(),
        "--timeline-window",
        "4000000..6000000",
    ]);
    let events = check_trace(&json);
    let timed: Vec<&Value> = events.iter().filter(|e| e["ph"] != "M").collect();
    assert!(timed.len() > 100, "the window has events");
    for e in &timed {
        let ts = e["ts"].as_f64().unwrap();
        let end = ts + e["dur"].as_f64().unwrap_or(0.0);
        assert!((2000.0..=3000.0).contains(&ts) && end <= 3000.0, "{e}");
    }
    for l in std::fs::read_to_string(&text).unwrap().lines() {
        let secs: f64 = l
            .split("] ")
            .nth(1)
            .unwrap()
            .split(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        // the end is exclusive in cycles; six decimals round the last cycle up to it
        assert!((0.002..=0.003).contains(&secs), "{l}");
    }
    // a window in scheduler steps, and only some kinds of events
    run_with(&[
        "--timeline",
        json.to_str().unwrap(),
        "--timeline-window",
        "s50..s500",
        "--timeline-events",
        "fault,kmap",
    ]);
    let events = check_trace(&json);
    assert!(events.iter().any(|e| e["cat"] == "fault"));
    for e in events.iter().filter(|e| e["ph"] != "M" && e["ph"] != "E") {
        assert!(e["cat"] == "fault" || e["cat"] == "kmap", "{e}");
    }
}

#[test]
fn the_size_cap_stops_the_file_and_says_so() {
    let dir = tmp_dir("timeline-cap");
    let json = dir.join("c.json");
    let mut args: Vec<&str> = RUN.to_vec();
    args.extend_from_slice(&[
        "--timeline",
        json.to_str().unwrap(),
        "--timeline-max-size",
        "64K",
    ]);
    let out = highpte().args(&args).output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("reached the size cap of 64K"), "{stderr}");
    let size = std::fs::metadata(&json).unwrap().len();
    assert!(size < 80 * 1024, "{size} bytes");
    check_trace(&json);
}

#[test]
fn explain_deadlock_shows_the_tasks_waiting_for_pkmap_entries() {
    let dir = tmp_dir("timeline-deadlock");
    let json = dir.join("dl.json");
    let svg = dir.join("dl.svg");
    let out = highpte()
        .args([
            "explain-deadlock",
            "-q",
            "--timeline",
            json.to_str().unwrap(),
        ])
        .args([
            "--timeline-plot",
            svg.to_str().unwrap(),
            "--timeline-events",
            "sched,pkmap,wait,syscall",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = check_trace(&json);
    let names: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "process_name")
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    assert!(names.iter().any(|n| n.contains("deadlock")), "{names:?}");
    assert!(names.iter().any(|n| n.contains("kmap_atomic")), "{names:?}");
    // tasks asleep waiting for a pkmap entry until the end, and the entries held
    let waits = events
        .iter()
        .filter(|e| e["ph"] == "B" && e["name"] == "sleep: pkmap free entry")
        .count();
    assert!(waits >= 2, "{waits} waits for a pkmap entry");
    assert!(events.iter().any(|e| e["ph"] == "B" && e["pid"] == 4));
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.starts_with("<svg") && picture.contains("pkmap entry"));
}

#[test]
fn stress_and_replay_take_a_timeline() {
    let dir = tmp_dir("timeline-stress");
    let json = dir.join("s.json");
    let out = highpte()
        .args([
            "stress",
            "--ops",
            "60",
            "--processes",
            "8",
            "--cpus",
            "4",
            "-q",
        ])
        .args(["--timeline", json.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = check_trace(&json);
    assert!(events.iter().any(|e| e["ph"] == "s"), "TLB IPIs as flows");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny-amd64.pgt.zst");
    let out = highpte()
        .args(["replay", data.to_str().unwrap(), "-q", "--ftrace"])
        .arg(dir.join("r.txt"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::read_to_string(dir.join("r.txt")).unwrap();
    assert!(
        log.contains(": page_fault_user: address=0x"),
        "{}",
        &log[..log.len().min(400)]
    );
}

#[test]
fn bad_timeline_options_are_usage_errors() {
    for (flag, value, says) in [
        ("--timeline-window", "5..1", "END must be after START"),
        ("--timeline-window", "abc", "expected START..END"),
        (
            "--timeline-events",
            "faults",
            "unknown timeline event kind 'faults'",
        ),
        ("--timeline-max-size", "1", "too small"),
    ] {
        let out = highpte()
            .args(["run", "churn", flag, value])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{flag} {value}: {stderr}");
    }
}
