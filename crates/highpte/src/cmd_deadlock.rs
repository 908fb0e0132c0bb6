//! `highpte explain-deadlock`: the seed's claim that kmap()-based page-table access is
//! "deadlock land", shown on a seed the search finds, with the same seed completing under the
//! seed's kmap_atomic design.

use clap::Args;
use highpte_kernel::PteStrategy;
use highpte_workload::runner::{self, RunOptions, RunReport};
use highpte_workload::{builtin, WorkloadSpec};
use serde_json::json;
use std::rc::Rc;

/// `highpte explain-deadlock`.
#[derive(Args, Clone, Debug)]
pub struct DeadlockArgs {
    /// Persistent kmap entries in the window (LAST_PKMAP is 512 with PAE; a small window shows
    /// the hazard at this scale).
    #[arg(long, default_value_t = 2, value_parser = parse_entries)]
    pub entries: u32,
    /// Try seeds 1..=N until one deadlocks.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(1..=100000))]
    pub seeds: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
    /// The deadlocked run and the same seed with kmap_atomic, side by side in one timeline
    /// (`--timeline`, `--ftrace`; `--timeline-plot` draws the deadlocked run).
    #[command(flatten)]
    pub timeline: crate::timeline::TimelineArgs,
}

/// A kmap window: a power of two from 2 to 512 (LAST_PKMAP with PAE; the workload is PAE).
fn parse_entries(s: &str) -> Result<u32, String> {
    let v = crate::args::parse_pkmap_entries(s)?;
    if v > 512 {
        return Err(format!(
            "{v} kmap entries: the workload runs with PAE, where LAST_PKMAP is 512"
        ));
    }
    Ok(v)
}

fn spec() -> anyhow::Result<WorkloadSpec> {
    builtin("kmap-deadlock").ok_or_else(|| anyhow::anyhow!("built-in kmap-deadlock missing"))
}

/// The command that replays seed `seed` of the workload with `entries` kmap entries (and
/// strategy `strategy` if given), from any directory.
fn replay(entries: u32, seed: u64, strategy: Option<&str>) -> String {
    format!(
        "highpte run kmap-deadlock --pkmap-entries {entries} --stress --seed {seed}{}",
        strategy
            .map(|s| format!(" --strategy {s}"))
            .unwrap_or_default()
    )
}

fn run_one(
    spec: &WorkloadSpec,
    entries: u32,
    timeline: Option<highpte_machine::TimelineHook>,
) -> anyhow::Result<RunReport> {
    let mut opts = RunOptions {
        stress: true,
        kernel_tweak: Some(Rc::new(move |k: &mut highpte_kernel::KernelOptions| {
            k.pkmap_entries = Some(entries)
        })),
        ..Default::default()
    };
    opts.machine.timeline = timeline;
    runner::run(spec, &opts)
        .map(crate::report::scrub)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

pub fn run(a: &DeadlockArgs) -> anyhow::Result<u8> {
    let base = spec()?;
    let mut found: Option<(u64, RunReport)> = None;
    let mut tried = 0;
    let bars = crate::progress::Bars::new(crate::progress::enabled(a.quiet, a.json));
    let bar = bars.items(a.seeds, "seeds", "looking for a deadlock");
    for seed in 1..=a.seeds {
        if let Some(b) = &bar {
            b.set_position(seed - 1);
        }
        let mut s = base.clone();
        s.machine.seed = seed;
        tried += 1;
        let r = run_one(&s, a.entries, None)?;
        if r.deadlocked {
            found = Some((seed, r));
            break;
        }
    }
    let Some((seed, dead)) = found else {
        bars.clear();
        println!(
            "No deadlock in seeds 1..={} with a {}-entry persistent kmap window: try more seeds (--seeds) or a smaller window (--entries).",
            a.seeds, a.entries
        );
        return Ok(0);
    };
    let mut atomic = base.clone();
    atomic.machine.seed = seed;
    atomic.machine.strategy = Some(PteStrategy::Atomic);
    let ok = run_one(&atomic, a.entries, None);
    bars.clear();
    let ok = ok?;
    if let Some(t) = crate::timeline::Session::start(&a.timeline)? {
        // the same two runs again (they replay bit for bit), recorded
        let mut dead_spec = base.clone();
        dead_spec.machine.seed = seed;
        t.group(&format!("persistent kmap, seed {seed}: deadlock"));
        run_one(&dead_spec, a.entries, Some(t.hook()))?;
        t.group(&format!("kmap_atomic, seed {seed}"));
        run_one(&atomic, a.entries, Some(t.hook()))?;
        crate::timeline::finish(Some(t))?;
    }
    let replay_dead = replay(a.entries, seed, None);
    let replay_atomic = replay(a.entries, seed, Some("atomic"));
    if a.json {
        let v = json!({
            "entries": a.entries,
            "seeds_tried": tried,
            "seed": seed,
            "persistent": {"deadlocked": true, "outcome": dead.outcome, "pkmap_holders": dead.pkmap_holders.iter().map(|(t, nr, pfn, place)| json!({"task": t, "entry": nr, "pfn": pfn, "place": place})).collect::<Vec<_>>(), "event_hash": format!("{:#018x}", dead.event_hash), "replay": replay_dead},
            "atomic": {"deadlocked": ok.deadlocked, "completed": !ok.failed_checks(), "operations": ok.operations, "outcome": ok.outcome, "event_hash": format!("{:#018x}", ok.event_hash), "replay": replay_atomic},
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!("kmap() is deadlock land: page tables mapped with persistent kmap() (the `persistent` strategy,");
    println!("Andrea Arcangeli's pte-highmem design) on 4 CPUs forking and mremapping, with a {}-entry kmap window.", a.entries);
    println!("fork's copy_page_range and mremap's move_page_tables hold one pte page mapped while they map a");
    println!("second one; when every entry is held by a task that sleeps waiting for one more, nobody can go on.");
    println!();
    println!(
        "Seed {seed} (the {} tried) deadlocks:",
        crate::text::ordinal(tried)
    );
    println!();
    println!("{}", dead.outcome);
    println!();
    println!(
        "Persistent kmaps held at the deadlock (task, kmap entry, pte page, where it was mapped):"
    );
    for (t, nr, pfn, place) in &dead.pkmap_holders {
        println!("  task {t:>4}: entry {nr} -> pfn {pfn:#x} ({place})");
    }
    println!();
    println!(
        "The same seed with the seed's kmap_atomic design: {} ({} operations, {} kmap_atomic mappings, no sleeping).",
        if ok.deadlocked {
            "ALSO DEADLOCKED (unexpected)".to_string()
        } else if ok.failed_checks() {
            format!("failed: {}", ok.check_failures.join("; "))
        } else {
            "runs to completion".to_string()
        },
        ok.operations,
        ok.counters.iter().find(|(k, _)| k == "kmap_atomic").map(|(_, v)| *v).unwrap_or(0)
    );
    println!();
    println!("replay the deadlock:  {replay_dead}");
    println!("replay with atomic:   {replay_atomic}");
    Ok(if ok.deadlocked {
        crate::EXIT_FAILURE_FOUND
    } else {
        0
    })
}
