//! End-to-end tests of `highpte boot` through the binary: the JSON object and its documented
//! keys (docs/json.md), the boot log, and bad machine flags (exit 2, one clear line).

mod cli_common;
use cli_common::*;

#[test]
fn boot_json_has_the_documented_keys() {
    let v = json_of(&["boot", "--json"]);
    assert_eq!(v["config"], "64g-highpte", "the default configuration");
    assert_eq!(v["ram_bytes"].as_u64(), Some(32 << 30), "the default RAM");
    assert_eq!(v["paging"], "PAE");
    let zones = v["zones"].as_array().expect("zones is a list");
    let names: Vec<&str> = zones.iter().filter_map(|z| z["name"].as_str()).collect();
    assert_eq!(names, ["DMA", "Normal", "HighMem"]);
    let mut prev_end = 0;
    for z in zones {
        for k in ["start_pfn", "end_pfn", "present_pages", "free_pages"] {
            assert!(z[k].is_u64(), "zone.{k} is a whole number: {z}");
        }
        let (s, e) = (
            z["start_pfn"].as_u64().unwrap(),
            z["end_pfn"].as_u64().unwrap(),
        );
        assert_eq!(s, prev_end, "zones are contiguous: {z}");
        assert!(e > s);
        assert!(z["free_pages"].as_u64() <= z["present_pages"].as_u64());
        prev_end = e;
    }
    assert_eq!(prev_end, (32u64 << 30) / 4096, "the zones cover the RAM");
    assert_meminfo(&v["meminfo"]);
    assert_eq!(
        v["meminfo"]["HighTotal"].as_u64(),
        Some(zones[2]["present_pages"].as_u64().unwrap() * 4)
    );
    let layout = v["layout"].as_object().expect("layout is an object");
    for k in [
        "PAGE_OFFSET",
        "high_memory",
        "VMALLOC_START",
        "VMALLOC_END",
        "PKMAP_BASE",
        "FIXADDR_START",
        "FIXADDR_TOP",
    ] {
        let s = layout[k]
            .as_str()
            .unwrap_or_else(|| panic!("layout.{k} is a string"));
        assert!(
            s.starts_with("0x") && s.len() == 10 && u32::from_str_radix(&s[2..], 16).is_ok(),
            "layout.{k} is a 32-bit hex address: {s}"
        );
    }
    assert_eq!(layout["PAGE_OFFSET"], "0xc0000000");
}

/// `--kernel` chooses the profile, and the JSON names it beside the configuration.
#[test]
fn boot_kernel_profile() {
    assert_eq!(json_of(&["boot", "--json"])["kernel"], "2.5", "the default");
    let v = json_of(&[
        "boot",
        "--kernel",
        "linux-6.1",
        "--config",
        "64g-highpte",
        "--ram",
        "8G",
        "--json",
    ]);
    assert_eq!(v["kernel"], "linux-6.1");
    assert_eq!(v["config"], "64g-highpte");
    bad_input(
        &["boot", "--kernel", "4.19"],
        &["unknown kernel profile '4.19'", "2.5", "linux-6.1"],
    );
}

#[test]
fn boot_flags_change_the_machine() {
    let v = json_of(&[
        "boot",
        "--config",
        "nohighmem",
        "--ram",
        "2G",
        "--cpus",
        "4",
        "--json",
    ]);
    assert_eq!(v["config"], "nohighmem");
    assert_eq!(v["cpus"].as_u64(), Some(4));
    assert_eq!(v["paging"], "2-level");
    assert_eq!(
        v["meminfo"]["HighTotal"].as_u64(),
        Some(0),
        "nohighmem ignores RAM above 896M"
    );
    let v = json_of(&["boot", "--config", "4g", "--ram", "16M", "--json"]);
    assert_eq!(
        v["ram_bytes"].as_u64(),
        Some(16 << 20),
        "16M is the smallest machine"
    );
    let text = stdout_of(&["boot", "--config", "4g-highpte", "--ram", "1G"]);
    assert!(
        text.contains("[boot]") && text.contains("LowFree:"),
        "{text}"
    );
}

#[test]
fn boot_bad_input_exits_2_with_one_clear_line() {
    bad_input(
        &["boot", "--config", "128g"],
        &["unknown configuration '128g'", "64g-highpte"],
    );
    bad_input(&["boot", "--ram", "lots"], &["'lots' is not a size"]);
    bad_input(&["boot", "--ram", "8M"], &["out of range", "16M to 64G"]);
    bad_input(&["boot", "--ram", "128G"], &["out of range", "16M to 64G"]);
    bad_input(&["boot", "--ram", "16M1"], &["not a size"]);
    bad_input(
        &["boot", "--cpus", "0"],
        &["0 CPUs is out of range", "1 (UP) to 32"],
    );
    bad_input(&["boot", "--cpus", "33"], &["33 CPUs is out of range"]);
    bad_input(&["boot", "--cpus", "four"], &["not a number of CPUs"]);
    bad_input(
        &["boot", "--strategy", "magic"],
        &["unknown pte strategy 'magic'"],
    );
    bad_input(
        &["boot", "--pt-alloc", "slab"],
        &["unknown page-table allocator 'slab'"],
    );
    bad_input(&["boot", "--frobnicate"], &["--frobnicate"]);
    let e = bad_input(&["boot", "--cpus", "0"], &[]);
    assert_eq!(e.trim_end().lines().count(), 1, "one line: {e}");
}
