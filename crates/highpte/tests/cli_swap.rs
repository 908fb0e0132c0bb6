//! Swap and reclaim through the command: an overcommitted stress cell with each reclaim
//! design, the swap fields of the JSON report, and bad swap/reclaim input.

mod cli_common;
use cli_common::*;

#[test]
fn overcommitted_cell_swaps_with_both_designs() {
    for r in ["scan", "rmap"] {
        let v = json_of(&[
            "stress",
            "--config",
            "nohighmem",
            "--cpus",
            "2",
            "--seed",
            "4",
            "--ops",
            "100",
            "--processes",
            "4",
            "--overcommit",
            "--reclaim",
            r,
            "--json",
        ]);
        let run = &v;
        assert_eq!(v["pass"], true, "{r}: {v}");
        assert_eq!(run["reclaim"], r);
        // 128 MB of RAM and twice that of swap
        assert_eq!(run["swap_bytes"], 256u64 << 20);
        assert_eq!(run["meminfo_end"]["SwapTotal"], (256u64 << 10) - 4);
        let c = &run["counters"];
        assert!(c["pswpout"].as_u64().unwrap() > 10_000, "{r}: {c}");
        assert!(c["pswpin"].as_u64().unwrap() > 10_000, "{r}: {c}");
        assert!(c["kswapd_wakeups"].as_u64().unwrap() > 0, "{r}: {c}");
        // every slot and the swap cache given back at the end
        assert_eq!(
            run["meminfo_end"]["SwapFree"], run["meminfo_end"]["SwapTotal"],
            "{r}"
        );
        assert_eq!(run["meminfo_end"]["SwapCached"], 0, "{r}");
        let zones = run["reclaim_zones"].as_array().unwrap();
        assert!(
            zones.iter().any(|z| z["reclaimed"].as_u64().unwrap() > 0),
            "{r}: {zones:?}"
        );
    }
}

#[test]
fn bad_swap_and_reclaim_input_exits_2() {
    bad_input(
        &["run", "churn", "--swap", "lots"],
        &["swap size", "not a size"],
    );
    bad_input(&["run", "churn", "--swap", "65G"], &["too big", "64G"]);
    bad_input(
        &["run", "churn", "--reclaim", "lru"],
        &["lru", "scan or rmap"],
    );
    bad_input(&["stress", "--reclaim", "x"], &["scan or rmap"]);
    bad_input(
        &["matrix", "--overcommit", "--reclaim", "x"],
        &["scan", "rmap"],
    );
}
