//! The seed's claim that kmap()-based page tables are "deadlock land": `explain-deadlock`
//! finds a seed where the persistent strategy deadlocks, names the kmaps each task holds, and
//! the same seed runs to completion with the seed's kmap_atomic.

use assert_cmd::Command;

#[test]
fn persistent_kmap_deadlocks_and_atomic_does_not() {
    let out = Command::cargo_bin("highpte")
        .unwrap()
        .args(["explain-deadlock", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["persistent"]["deadlocked"], true);
    let holders = v["persistent"]["pkmap_holders"].as_array().unwrap();
    // every entry of the 2-entry window is held by a task that is asleep waiting for another
    assert_eq!(holders.len(), 2, "{v}");
    let outcome = v["persistent"]["outcome"].as_str().unwrap();
    assert!(outcome.contains("pkmap free entry"), "{outcome}");
    assert_eq!(v["atomic"]["deadlocked"], false);
    assert_eq!(v["atomic"]["completed"], true);
    // the replay command reproduces it bit for bit
    let seed = v["seed"].as_u64().unwrap().to_string();
    let run = |strategy: &str| {
        let out = Command::cargo_bin("highpte")
            .unwrap()
            .args([
                "run",
                "../../workloads/kmap-deadlock.toml",
                "--pkmap-entries",
                "2",
                "--stress",
                "--seed",
                &seed,
                "--strategy",
                strategy,
                "--json",
            ])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("run --json")
    };
    let r = run("persistent");
    assert_eq!(r["event_hash"], v["persistent"]["event_hash"]);
    assert!(
        r["outcome"].as_str().unwrap().contains("deadlock"),
        "{}",
        r["outcome"]
    );
}
