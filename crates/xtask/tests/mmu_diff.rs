//! The differential MMU test end to end: `cargo xtask mmu-diff --mode both` builds the
//! bare-metal image, probes page tables under QEMU in both paging modes and replays every
//! probe on the simulator's MMU; both must agree on every probe, and seed 1 must exercise
//! what the test exists for (faults of every kind, large pages, frames and page tables above
//! 4 GB with PAE, CPL 3 probes, instruction fetches). The figures of seed 1 are deterministic: the kernel's
//! choices come from its seeded PRNG and QEMU's MMU is deterministic.
//!
//! It needs Debian's rustc (rustc-web, rust-web-src) and qemu-system-x86_64
//! (`scripts/install-qemu-deps`), and fails, not skips, without them.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn require_tools() {
    let mut missing = Vec::new();
    if !Path::new("/usr/bin/rustc").exists() || !Path::new("/usr/bin/cargo").exists() {
        missing.push("Debian's rustc and cargo (/usr/bin/rustc, /usr/bin/cargo)");
    }
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        missing.push("qemu-system-x86_64");
    }
    assert!(
        missing.is_empty(),
        "the differential MMU test needs {}: run scripts/install-qemu-deps",
        missing.join(" and ")
    );
}

fn mode<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["modes"]
        .as_array()
        .expect("modes")
        .iter()
        .find(|m| m["mode"] == name)
        .unwrap_or_else(|| panic!("no {name} mode in {report}"))
}

fn n(m: &Value, key: &str) -> u64 {
    m[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {m}"))
}

fn fault(m: &Value, code: &str) -> u64 {
    m["faults"][code].as_u64().unwrap_or(0)
}

#[test]
fn qemu_and_the_simulator_translate_alike() {
    require_tools();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["mmu-diff", "--mode", "both", "--probes", "4000", "--json"])
        .output()
        .expect("running xtask mmu-diff");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "xtask mmu-diff ({}) printed no JSON report ({e}):\n{stdout}\n{stderr}",
            out.status
        )
    });
    for name in ["2level", "pae"] {
        let m = mode(&report, name);
        assert_eq!(
            n(m, "mismatches"),
            0,
            "{name}: QEMU and the simulator disagree: {:#}",
            m["mismatch_details"]
        );
        assert_eq!(n(m, "probes"), 4000, "{name}");
        assert_eq!(n(m, "translated") + n(m, "faulted"), 4000, "{name}");
    }
    assert_eq!(report["mismatches"], 0);
    assert!(out.status.success(), "xtask mmu-diff: {}", out.status);

    // 2-level paging with PSE, seed 1
    let m = mode(&report, "2level");
    assert_eq!(n(m, "translated"), 1710);
    assert_eq!(n(m, "large_page_translations"), 66);
    assert_eq!(n(m, "above_4g_translations"), 0);
    assert_eq!(n(m, "cpl3_probes"), 2034);
    assert_eq!(n(m, "cpl3_translated"), 642);
    assert_eq!(n(m, "fetches"), 825);
    assert_eq!(n(m, "fetches_translated"), 419);
    let expect = [
        ("0x0", 424),
        ("0x2", 268),
        ("0x3", 205),
        ("0x4", 435),
        ("0x5", 338),
        ("0x6", 288),
        ("0x7", 326),
        ("0xa", 1),
        ("0xc", 4),
        ("0xe", 1),
    ];
    for (code, count) in expect {
        assert_eq!(fault(m, code), count, "2level: #PF error {code}");
    }
    assert_eq!(n(m, "table_pages"), 56);
    assert_eq!(n(m, "pages_compared_at_end"), 56);

    // PAE, seed 1: frames and pte pages above 4 GB
    let m = mode(&report, "pae");
    assert_eq!(n(m, "translated"), 1680);
    assert_eq!(n(m, "large_page_translations"), 52);
    assert_eq!(n(m, "above_4g_translations"), 836);
    assert_eq!(n(m, "table_pages_above_4g"), 29);
    assert_eq!(n(m, "cpl3_probes"), 2025);
    assert_eq!(n(m, "cpl3_translated"), 675);
    assert_eq!(n(m, "fetches"), 825);
    assert_eq!(n(m, "fetches_translated"), 412);
    let expect = [
        ("0x0", 413),
        ("0x2", 284),
        ("0x3", 199),
        ("0x4", 405),
        ("0x5", 265),
        ("0x6", 275),
        ("0x7", 327),
        ("0x8", 45),
        ("0xa", 29),
        ("0xc", 54),
        ("0xe", 24),
    ];
    for (code, count) in expect {
        assert_eq!(fault(m, code), count, "pae: #PF error {code}");
    }
    // every reserved-bit fault is one of QEMU's RSVD-without-P error codes (the simulator
    // reports them with P, as the SDM says)
    assert_eq!(n(m, "qemu_rsvd_without_p"), 152);
    assert_eq!(n(m, "reserved_bit_faults"), 152);
    assert_eq!(n(m, "table_pages"), 64);
}
