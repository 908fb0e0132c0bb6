//! The seed's 20-kernel matrix under VM stress, through the binary: every cell passes, and a
//! cell replays bit for bit from its seed.

use assert_cmd::Command;

#[test]
fn the_twenty_kernels_pass_churn_stress() {
    let out = Command::cargo_bin("highpte")
        .unwrap()
        .args([
            "matrix",
            "--seeds",
            "3",
            "--ops",
            "300",
            "--processes",
            "6",
            "--json",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("matrix --json is JSON");
    let cells = v["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 60, "20 kernels x 3 seeds");
    for c in cells {
        assert_eq!(c["pass"], true, "cell failed: {c}");
        assert!(c["operations"].as_u64().unwrap() >= 6 * 300, "{c}");
        assert!(c["faults"].as_u64().unwrap() > 0, "{c}");
    }
    // the five configs, UP and SMP, preempt on and off, all present
    for cfg in ["nohighmem", "4g", "4g-highpte", "64g", "64g-highpte"] {
        for cpus in [1, 4] {
            for preempt in [true, false] {
                assert!(
                    cells.iter().any(|c| c["config"] == cfg
                        && c["cpus"] == cpus
                        && c["preempt"] == preempt),
                    "missing {cfg} {cpus} {preempt}"
                );
            }
        }
    }
    assert!(out.status.success());
}

/// The matrix overcommitted (swap twice RAM, a ballast twice RAM checked page by page and a
/// file ballast of half of RAM checked through read(), then churn with file I/O) with both
/// reclaim designs: every cell passes, swapped both ways and read file pages back from the disk.
#[test]
fn the_twenty_kernels_pass_overcommitted_with_both_reclaim_designs() {
    let out = Command::cargo_bin("highpte")
        .unwrap()
        .args([
            "matrix",
            "--overcommit",
            "--seeds",
            "1",
            "--ops",
            "100",
            "--processes",
            "4",
            "--json",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("matrix --json is JSON");
    let cells = v["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 40, "20 kernels x 2 reclaim designs");
    for c in cells {
        assert_eq!(c["pass"], true, "cell failed: {c}");
        assert!(
            c["pswpout"].as_u64().unwrap() > 0,
            "nothing swapped out: {c}"
        );
        assert!(c["pswpin"].as_u64().unwrap() > 0, "nothing swapped in: {c}");
        // the file ballast (half of RAM) was written back and read again from the disk
        assert!(
            c["fs_pages_written"].as_u64().unwrap() > 0,
            "no file page written back: {c}"
        );
        assert!(
            c["fs_pages_read"].as_u64().unwrap() > 0,
            "no file page read back: {c}"
        );
    }
    for r in ["scan", "rmap"] {
        assert_eq!(
            cells.iter().filter(|c| c["reclaim"] == r).count(),
            20,
            "{r}"
        );
    }
    assert!(out.status.success());
}

#[test]
fn a_stress_cell_replays_bit_for_bit() {
    let run = || {
        let out = Command::cargo_bin("highpte")
            .unwrap()
            .args([
                "stress",
                "--config",
                "64g-highpte",
                "--cpus",
                "4",
                "--preempt",
                "on",
                "--seed",
                "11",
                "--ops",
                "300",
                "--json",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            v["event_hash"].as_str().unwrap().to_string(),
            v["operations"].as_u64().unwrap(),
        )
    };
    let a = run();
    let b = run();
    assert_eq!(a, b);
    // a different seed gives a different run
    let out = Command::cargo_bin("highpte")
        .unwrap()
        .args([
            "stress",
            "--config",
            "64g-highpte",
            "--cpus",
            "4",
            "--preempt",
            "on",
            "--seed",
            "12",
            "--ops",
            "300",
            "--json",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(v["event_hash"].as_str().unwrap(), a.0);
}
