//! `cargo xtask qemu`: run a bare-metal scenario and report it, beside the simulator.

use crate::qemu::{self, QemuRun};
use anyhow::{bail, Context, Result};
use highpte_arch::MemoryVariant;
use highpte_kernel::Meminfo;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// The scenarios the bare-metal kernel knows.
pub const SCENARIOS: [&str; 5] = ["boot", "sga", "fork-cow", "munmap", "stale-kmap"];

/// The meminfo figures held against the simulator, and how far they may differ.
const AGREEMENT: [&str; 2] = ["PageTables", "LowFree"];
const TOLERANCE: f64 = 0.01;
/// The meminfo rows of the text report, in /proc/meminfo's order.
const MEMINFO_KEYS: [&str; 10] = [
    "MemTotal",
    "MemFree",
    "LowTotal",
    "LowFree",
    "HighTotal",
    "HighFree",
    "PageTables",
    "PageTablesLow",
    "PageTablesHigh",
    "PageTablePools",
];

/// `cargo xtask qemu` arguments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The scenario: boot (boot log and meminfo), sga (processes attach a SysV segment and
    /// read every page), fork-cow, munmap (unmap the middle of a mapping), stale-kmap (the
    /// debug helpers catch a use of a released kmap_atomic slot).
    #[arg(default_value = "boot", value_parser = SCENARIOS)]
    pub scenario: String,
    /// Memory configuration: nohighmem, 4g, 4g-highpte, 64g or 64g-highpte.
    #[arg(long, default_value = "64g-highpte")]
    pub config: String,
    /// RAM of the emulated PC (QEMU's -m), e.g. 8G.
    #[arg(long, default_value = "8G")]
    pub ram: String,
    /// sga: processes that attach the segment.
    #[arg(long, default_value_t = 64)]
    pub procs: u32,
    /// sga: size of the segment, e.g. 64M.
    #[arg(long, default_value = "64M")]
    pub size: String,
    /// Seed of the kernel's random choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object (the keys of `highpte run --json` where they apply).
    #[arg(long)]
    pub json: bool,
    /// Do not run the simulator beside it.
    #[arg(long)]
    pub no_compare: bool,
    /// Stop QEMU after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

/// Run the scenario; true if it passed (and agreed with the simulator where compared).
pub fn run(a: &Args) -> Result<bool> {
    let variant: MemoryVariant = a
        .config
        .parse()
        .map_err(|e| anyhow::anyhow!("--config {}: {e}", a.config))?;
    let ram = highpte_arch::size::parse_size(&a.ram)
        .map_err(|e| anyhow::anyhow!("--ram {}: {e}", a.ram))?;
    if !((64 << 20)..=(16 << 30)).contains(&ram) {
        bail!("--ram {}: the bare-metal runs take 64M to 16G", a.ram);
    }
    if variant == MemoryVariant::NoHighmem && ram > (896 << 20) {
        bail!(
            "--config nohighmem addresses 896M of RAM at most: give --ram 896M or less (the simulator refuses more)"
        );
    }
    if a.scenario == "stale-kmap" && !variant.highpte() {
        bail!(
            "stale-kmap needs a -highpte configuration (pte pages reached through kmap_atomic): give --config 4g-highpte or 64g-highpte"
        );
    }
    let size = highpte_arch::size::parse_size(&a.size)
        .map_err(|e| anyhow::anyhow!("--size {}: {e}", a.size))?;
    if !(4096..=(1 << 30)).contains(&size) || size % 4096 != 0 {
        bail!(
            "--size {}: the segment takes whole 4K pages, 4K to 1G",
            a.size
        );
    }
    if a.procs == 0 || a.procs > 4096 {
        bail!("--procs {}: 1 to 4096", a.procs);
    }
    let image = qemu::build_image(a.json)?;
    let append = format!(
        "scenario={} config={} ram={ram} procs={} size={size} seed={}",
        a.scenario,
        variant.name(),
        a.procs,
        a.seed
    );
    let run = qemu::boot(&image, ram, &append, Duration::from_secs(a.timeout))?;
    let meminfo = tagged_json(&run, "meminfo")?;
    let counters = tagged_json(&run, "counters")?;
    let checks: Vec<Value> = run.tagged("check").map(check_json).collect();
    let sim = if a.no_compare || !matches!(a.scenario.as_str(), "boot" | "sga") {
        None
    } else {
        Some(simulate(a, variant, ram, size)?)
    };
    let agreement = sim.as_ref().map(|s| agreement(&meminfo, &s["meminfo"]));
    let agrees = agreement
        .as_ref()
        .is_none_or(|ag| ag.values().all(|v| v["within"] == true));
    let pass = run.passed() && agrees;
    if a.json {
        let mut o = json!({
            "scenario": a.scenario,
            "config": variant.name(),
            "kernel": "linux-6.1",
            "cpus": 1,
            "preempt": false,
            "ram_bytes": ram,
            "machine": "qemu",
            "qemu_status": run.status,
            "qemu_seconds": run.seconds,
            "pass": pass,
            "checks": checks,
            "meminfo": meminfo,
            "pagetables": meminfo.get("PageTables").cloned().unwrap_or(Value::Null),
            "counters": counters,
            "serial": run.readable().collect::<Vec<_>>(),
        });
        if let Some(s) = &sim {
            o["simulator"] = json!({"meminfo": s["meminfo"], "counters": s["counters"]});
            o["agreement"] = Value::Object(agreement.clone().unwrap_or_default());
        }
        println!("{}", serde_json::to_string_pretty(&o)?);
    } else {
        print_text(
            a,
            variant,
            &run,
            &meminfo,
            sim.as_ref(),
            agreement.as_ref(),
            pass,
        );
    }
    Ok(pass)
}

fn tagged_json(run: &QemuRun, tag: &str) -> Result<Value> {
    match run.tagged(tag).last() {
        Some(s) => serde_json::from_str(s).with_context(|| format!("the kernel's @{tag} line")),
        // a run that ends in an oops (stale-kmap's expected one) prints no figures
        None => Ok(Value::Object(Map::new())),
    }
}

fn check_json(line: &str) -> Value {
    let (verdict, rest) = line.split_once(' ').unwrap_or((line, ""));
    let (name, detail) = rest.split_once(": ").unwrap_or((rest, ""));
    json!({"name": name, "pass": verdict == "pass", "detail": detail})
}

/// The simulator's run of the same scenario, in this process: a boot of the same machine, or
/// the sga the bare-metal kernel runs as a workload file. Its meminfo (and counters) as JSON.
fn simulate(a: &Args, variant: MemoryVariant, ram: u64, size: u64) -> Result<Value> {
    let ram_arg = format!("{}M", ram >> 20);
    if a.scenario == "sga" {
        let text = sga_workload(variant, &ram_arg, a.procs, size, a.seed);
        let spec = highpte_workload::parse_workload(&text, "sga-baremetal.toml")
            .map_err(|e| anyhow::anyhow!("the sga workload: {e}"))?;
        let rep = highpte_workload::runner::run(&spec, &Default::default())
            .map_err(|e| anyhow::anyhow!("the simulator's run: {e}"))?;
        let counters: Map<String, Value> = rep
            .counters
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        return Ok(json!({"meminfo": meminfo_json(&rep.meminfo_peak), "counters": counters}));
    }
    let mut cfg = highpte_arch::Config::new(variant, ram, 1, false)
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    cfg.kernel = highpte_arch::KernelProfile::Linux61;
    let m = if variant.pae() {
        boot_meminfo::<highpte_arch::Pae>(cfg)?
    } else {
        boot_meminfo::<highpte_arch::TwoLevel>(cfg)?
    };
    Ok(json!({"meminfo": meminfo_json(&m), "counters": {}}))
}

fn boot_meminfo<M: highpte_arch::PagingMode>(cfg: highpte_arch::Config) -> Result<Meminfo> {
    let kopts = highpte_kernel::KernelOptions::defaults_for(&cfg);
    let mopts = highpte_machine::MachineOptions {
        cpus: 1,
        ram_bytes: cfg.ram_bytes,
        preempt: false,
        ..Default::default()
    };
    let mut sys = highpte_machine::System::<M>::boot(cfg, kopts, mopts)
        .map_err(|e| anyhow::anyhow!("the simulator's boot: {e}"))?;
    sys.inspect(|h, k| k.meminfo(h))
        .map_err(|e| anyhow::anyhow!("the simulator's meminfo: {e}"))
}

/// The meminfo keys the bare-metal kernel prints, from the simulator's figures.
fn meminfo_json(m: &Meminfo) -> Value {
    json!({
        "MemTotal": m.mem_total, "MemFree": m.mem_free,
        "LowTotal": m.low_total, "LowFree": m.low_free,
        "HighTotal": m.high_total, "HighFree": m.high_free,
        "PageTables": m.page_tables, "PageTablesLow": m.page_tables_low,
        "PageTablesHigh": m.page_tables_high, "PageTablePools": m.pt_pools,
    })
}

/// The sga the bare-metal kernel runs, as a workload file: every process maps a page for its
/// program's code, process 0 creates and writes the segment, then every process attaches it
/// and reads each page with one user fault.
pub fn sga_workload(variant: MemoryVariant, ram: &str, procs: u32, size: u64, seed: u64) -> String {
    format!(
        r#"# Written by `cargo xtask qemu sga`: the bare-metal sga scenario, for the simulator.
name = "sga-baremetal"
description = "Each process maps a page for its code; process 0 writes a SysV segment; {procs} processes attach it and read every page (one user fault each), then stay."
[machine]
config = "{config}"
ram = "{ram}"
cpus = 1
preempt = false
kernel = "linux-6.1"
seed = {seed}
[processes]
count = {procs}
[[phases]]
name = "program"
[[phases.ops]]
op = "mmap"
name = "code"
size = "4K"
prot = "rwx"
[[phases.ops]]
op = "touch"
region = "code"
write = true
[[phases]]
name = "create"
run_by = "first"
[[phases.ops]]
op = "shmget"
key = 1
size = "{size}"
create = true
[[phases.ops]]
op = "shmat"
key = 1
name = "init"
[[phases.ops]]
op = "touch"
region = "init"
pattern = "sequential"
write = true
[[phases.ops]]
op = "shmdt"
region = "init"
[[phases]]
name = "attach"
[[phases.ops]]
op = "shmat"
key = 1
name = "sga"
[[phases.ops]]
op = "touch"
region = "sga"
pattern = "sequential"
write = false
populate = false
[[phases.ops]]
op = "pause"
"#,
        config = variant.name(),
        size = size,
    )
}

fn agreement(bm: &Value, sim: &Value) -> Map<String, Value> {
    let mut m = Map::new();
    for key in AGREEMENT {
        let (Some(b), Some(s)) = (bm[key].as_u64(), sim[key].as_u64()) else {
            continue;
        };
        let err = if s == 0 {
            if b == 0 {
                0.0
            } else {
                1.0
            }
        } else {
            (b as f64 - s as f64) / s as f64
        };
        m.insert(
            key.into(),
            json!({"baremetal": b, "simulator": s, "error": err, "within": err.abs() <= TOLERANCE}),
        );
    }
    m
}

fn print_text(
    a: &Args,
    variant: MemoryVariant,
    run: &QemuRun,
    meminfo: &Value,
    sim: Option<&Value>,
    agreement: Option<&Map<String, Value>>,
    pass: bool,
) {
    for l in run.readable() {
        println!("{l}");
    }
    for c in run.tagged("check") {
        println!("check {c}");
    }
    println!();
    println!(
        "{} on {} (QEMU {}, {}, {}): {} in {:.1} s",
        a.scenario,
        variant.name(),
        qemu::QEMU,
        qemu::CPU,
        a.ram,
        if pass { "PASS" } else { "FAIL" },
        run.seconds
    );
    if !run.passed() {
        println!("  {}", run.failure());
    }
    let Some(sim) = sim else { return };
    println!();
    println!(
        "{:<16}{:>14}{:>14}{:>10}",
        "meminfo (kB)", "bare metal", "simulator", "error"
    );
    for k in MEMINFO_KEYS {
        let (Some(b), Some(s)) = (meminfo[k].as_u64(), sim["meminfo"][k].as_u64()) else {
            continue;
        };
        let err = agreement
            .and_then(|ag| ag.get(k))
            .map(|e| {
                format!(
                    "{:+.2}%{}",
                    e["error"].as_f64().unwrap_or(0.0) * 100.0,
                    if e["within"] == true { "" } else { " !" }
                )
            })
            .unwrap_or_default();
        println!("{k:<16}{b:>14}{s:>14}{err:>10}");
    }
    println!(
        "(PageTables and LowFree must agree within {}%)",
        TOLERANCE * 100.0
    );
}
