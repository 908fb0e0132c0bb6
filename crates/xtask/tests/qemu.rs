//! The bare-metal kernel under QEMU, end to end through `cargo xtask qemu`: each scenario
//! boots the same kernel core on the emulated PC, and `boot` and `sga` agree with the
//! simulator. Needs Debian's rustc-web, cargo-web, rust-web-src and qemu-system-x86
//! (`scripts/install-qemu-deps`, which `.ci/run` runs); without them the tests fail and say so.

use serde_json::Value;
use std::process::Command;

fn xtask(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("running xtask");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn qemu_json(args: &[&str]) -> Value {
    let mut a = vec!["qemu"];
    a.extend_from_slice(args);
    a.push("--json");
    let (code, out, err) = xtask(&a);
    assert!(
        code == 0 || code == 1,
        "xtask {a:?} failed with {code}: {err}\n(the bare-metal tests need `scripts/install-qemu-deps`)"
    );
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("xtask {a:?}: bad JSON ({e}): {out}\n{err}"))
}

fn checks_pass(v: &Value, names: &[&str]) {
    let checks = v["checks"].as_array().expect("checks");
    for n in names {
        let c = checks
            .iter()
            .find(|c| c["name"] == *n)
            .unwrap_or_else(|| panic!("no check {n:?} in {checks:?}"));
        assert_eq!(c["pass"], true, "check {n}: {c}");
    }
}

#[test]
fn boot_64g_highpte_matches_the_simulator() {
    let v = qemu_json(&["boot", "--config", "64g-highpte", "--ram", "8G"]);
    assert_eq!(v["pass"], true, "{v:#}");
    assert_eq!(v["qemu_status"], 33);
    // the linux-6.1 profile on QEMU's 8 GB PC: the firmware map the profile models
    assert_eq!(v["meminfo"]["LowTotal"], 725_880);
    assert_eq!(v["meminfo"]["HighTotal"], 7_487_368);
    assert_eq!(
        v["meminfo"]["LowFree"],
        v["simulator"]["meminfo"]["LowFree"]
    );
    assert_eq!(v["meminfo"], v["simulator"]["meminfo"]);
    let serial: Vec<&str> = v["serial"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(serial.contains(&"7311MB HIGHMEM available."), "{serial:?}");
    assert!(
        serial.contains(&"  [0x100000000-0x23fffffff] usable"),
        "QEMU's e820 map shows RAM above 4 GB: {serial:?}"
    );
}

/// 64 processes attach a 64 MB segment and their ring-3 programs read every page, each read
/// a real user-mode #PF: with PAE a process needs 3 pmds + 32 pte pages for the segment and
/// one for its code page (9,216 kB for 64), in high memory with highpte and in low memory
/// without; both kernels agree with the simulator to the kB.
#[test]
fn sga_agrees_with_the_simulator_in_both_designs() {
    for (config, low_free, pt_high) in [("64g-highpte", 710_692, 8_448), ("64g", 702_244, 0)] {
        let v = qemu_json(&["sga", "--config", config, "--ram", "8G"]);
        assert_eq!(v["pass"], true, "{config}: {v:#}");
        checks_pass(&v, &["data"]);
        let m = &v["meminfo"];
        assert_eq!(m["PageTables"], 9_216, "{config}");
        assert_eq!(m["PageTablesHigh"], pt_high, "{config}");
        assert_eq!(m["LowFree"], low_free, "{config}");
        assert_eq!(v["pagetables"], 9_216);
        for key in ["PageTables", "LowFree"] {
            assert_eq!(v["agreement"][key]["within"], true, "{config} {key}");
            assert_eq!(v["agreement"][key]["error"], 0.0, "{config} {key}");
        }
        // 64 code pages, 16,384 writes by the creator, 64 x 16,384 reads: one fault each
        assert_eq!(v["counters"]["faults"], 1_065_024, "{config}");
        assert_eq!(
            v["counters"]["faults"],
            v["simulator"]["counters"]["faults"]
        );
        if config == "64g-highpte" {
            assert!(v["counters"]["kmap_atomic"].as_u64().unwrap() > 1_000_000);
        } else {
            // only clear_highpage of the segment's 16,384 pages and the 64 code pages (all
            // in high memory) maps them
            assert_eq!(v["counters"]["kmap_atomic"], 16_448);
        }
    }
}

#[test]
fn fork_copies_on_write_through_the_real_mmu() {
    let v = qemu_json(&["fork-cow", "--config", "64g-highpte"]);
    assert_eq!(v["pass"], true, "{v:#}");
    checks_pass(
        &v,
        &[
            "child reads the parent's data",
            "child writes copy",
            "child sees its writes",
            "parent keeps its data",
            "wait",
        ],
    );
    assert_eq!(v["counters"]["faults_cow"], 64);
}

#[test]
fn munmap_in_the_middle_on_two_level_paging() {
    let v = qemu_json(&["munmap", "--config", "4g-highpte", "--ram", "4G"]);
    assert_eq!(v["pass"], true, "{v:#}");
    checks_pass(
        &v,
        &[
            "the middle is gone",
            "the rest keeps its data",
            "page tables",
        ],
    );
    let gone = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "the middle is gone")
        .unwrap();
    assert_eq!(gone["detail"], "256 of 256 reads fault with a signal");
    assert_eq!(v["counters"]["faults_sigsegv"], 256);
}

/// The debug helpers clear a released kmap_atomic slot's pte; a stale pointer then faults on
/// the real CPU and the oops names the mapping it used to be.
#[test]
fn the_debug_helpers_catch_a_stale_kmap_on_real_hardware() {
    let v = qemu_json(&["stale-kmap", "--config", "64g-highpte"]);
    assert_eq!(v["pass"], true, "{v:#}");
    let serial = v["serial"].as_array().unwrap();
    let bug = serial
        .iter()
        .filter_map(|l| l.as_str())
        .find(|l| l.starts_with("BUG [kernel page fault]"))
        .expect("the oops");
    assert!(
        bug.contains(
            "BUG: unable to handle kernel paging request at 0xfffee000: page fault error code 0x0"
        ),
        "{bug}"
    );
    assert!(
        bug.contains("0xfffee000 is CPU 0's KM_PTE0 slot, released: it mapped pfn")
            && bug.ends_with("for task 1 until kunmap_atomic at pte_unmap (a use after unmap)"),
        "{bug}"
    );
}

#[test]
fn bad_arguments_are_refused_before_booting() {
    let (code, _, err) = xtask(&["qemu", "sga", "--config", "128g"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--config 128g"), "{err}");
    let (code, _, err) = xtask(&["qemu", "sga", "--config", "nohighmem", "--ram", "4G"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("give --ram 896M or less"), "{err}");
    let (code, _, err) = xtask(&["qemu", "sga", "--ram", "lots"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--ram lots"), "{err}");
    let (code, _, err) = xtask(&["qemu", "stale-kmap", "--config", "64g"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("stale-kmap needs a -highpte configuration"),
        "{err}"
    );
    for size in ["0", "1000", "2G"] {
        let (code, _, err) = xtask(&["qemu", "sga", "--size", size]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(&format!("--size {size}: the segment takes whole 4K pages")),
            "{err}"
        );
    }
    let (code, _, err) = xtask(&["qemu", "sga", "--procs", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--procs 0: 1 to 4096"), "{err}");
    let (code, _, err) = xtask(&["qemu", "nosuch"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nosuch"), "{err}");
}

/// A shown line matches an output line: equal, with `[..]` standing for any text.
fn line_matches(shown: &str, line: &str) -> bool {
    let parts: Vec<&str> = shown.split("[..]").collect();
    if parts.len() == 1 {
        return shown.trim_end() == line.trim_end();
    }
    let mut rest = line.trim_end();
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(p) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(p.trim_end());
        } else {
            let Some(at) = rest.find(p) else { return false };
            rest = &rest[at + p.len()..];
        }
    }
    true
}

/// Every `$ cargo xtask qemu …` example of README.md and docs/baremetal.md prints the lines
/// the page shows, in order (`...` abridges, `[..]` is any text).
#[test]
fn the_pages_show_what_cargo_xtask_qemu_prints() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut examples = 0;
    for page in ["README.md", "docs/baremetal.md"] {
        let text = std::fs::read_to_string(root.join(page)).expect(page);
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let Some(cmd) = l.strip_prefix("$ cargo xtask ") else {
                continue;
            };
            let shown: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|s| !s.starts_with("```") && !s.starts_with("$ "))
                .copied()
                .filter(|s| *s != "...")
                .collect();
            let args: Vec<&str> = cmd.split_whitespace().collect();
            let (code, out, err) = xtask(&args);
            assert!(
                code == 0,
                "{page}:{}: `cargo xtask {cmd}` exited {code}: {err}",
                i + 1
            );
            let mut at = out.lines();
            for s in &shown {
                assert!(
                    at.by_ref().any(|o| line_matches(s, o)),
                    "{page}:{}: `cargo xtask {cmd}` does not print {s:?} (in this order); it printed:\n{out}",
                    i + 1
                );
            }
            examples += 1;
        }
    }
    assert!(examples >= 2, "the pages show {examples} examples");
}
