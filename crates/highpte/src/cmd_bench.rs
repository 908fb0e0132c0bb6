//! `highpte bench`: host time beside simulated cycles, in one run.
//!
//! 1. Anonymous first-touch faults on recycled memory: natively through the host's Linux kernel
//!    and in the simulator, alternated, with the ratio of the rates.
//! 2. User loads that hit the simulated TLB, per host second.
//! 3. The designs side by side: pte strategy (lowmem, atomic, persistent) on fault-, fork-,
//!    munmap-heavy work and sga; the persistent kmap lock as CPUs go 1 to 16; page-table
//!    allocators (pool, quicklist, buddy).
//! 4. Boot of a 64 GB machine (in a child process, for a clean peak RSS) and host memory
//!    against simulated memory touched.
//! 5. The demo's host time (the binary itself, `demo --quiet`).
//!
//! Tables go to stdout; `--report DIR` also writes `DIR/report.md` and SVG plots.

use crate::bench::boot::{boot_and_memory, child, demo};
use crate::bench::designs::{allocators, cost_models, designs, sweep};
use crate::bench::host_vs_sim::{faults_vs_host, tlb_hits};
use crate::bench::native;
use crate::bench::table::Table;
use crate::plot::{self as plots, Series};
use clap::Args;
use highpte_arch::size::{GB, MB};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// `highpte bench`.
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Write DIR/report.md (the tables) and SVG plots into DIR.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Smaller sizes (under a minute): the same tables with less precision.
    #[arg(long)]
    pub quick: bool,
    /// Run only these parts (comma-separated): faults, tlb (TLB-hit loads and trace replay
    /// side by side), replay (the replay alone), designs, costs, sweep, alloc, boot, demo.
    #[arg(long, value_delimiter = ',', value_parser = ["faults", "tlb", "replay", "designs", "costs", "sweep", "alloc", "boot", "demo"])]
    pub only: Vec<String>,
    /// The page trace the replay measurement replays (default: the SQLite trace in
    /// ../shared/traces/ if there, else the checked-in sample; --quick: the sample).
    #[arg(long, value_name = "TRACE")]
    pub trace: Option<PathBuf>,
    /// Print one JSON object instead of the tables: {"tables": [{title, headers, rows,
    /// notes}], "host_seconds"}.
    #[arg(long)]
    pub json: bool,
    /// Print CSV instead of the tables: one row per table cell, columns table, row, column,
    /// value (long format, for pandas).
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
    /// Internal: run one measurement in this (child) process and print it as JSON.
    #[arg(long, hide = true)]
    pub child: Option<String>,
}

/// Sizes of every part.
pub(crate) struct Scale {
    /// Host-vs-simulator fault loop: pages per round, rounds, alternations.
    pub(crate) fault_pages: u32,
    pub(crate) fault_rounds: u32,
    pub(crate) alternations: u32,
    /// TLB-hit loads.
    pub(crate) loads: u64,
    /// Design workloads (per process, one process per CPU).
    pub(crate) d_fault_rounds: u32,
    pub(crate) d_fork_pages: u32,
    pub(crate) d_forks: u32,
    pub(crate) d_munmap_pages: u32,
    pub(crate) d_munmap_rounds: u32,
    pub(crate) sga_processes: u32,
    pub(crate) sweep_rounds: u32,
    pub(crate) pt_rounds: u32,
    /// Simulated memory touched after the 64 GB boot.
    pub(crate) touch_bytes: u64,
}

pub(crate) const QUICK: Scale = Scale {
    fault_pages: 4096,
    fault_rounds: 24,
    alternations: 3,
    loads: 20_000_000,
    d_fault_rounds: 2,
    d_fork_pages: 8192,
    d_forks: 4,
    d_munmap_pages: 8192,
    d_munmap_rounds: 2,
    sga_processes: 100,
    sweep_rounds: 1,
    pt_rounds: 4,
    touch_bytes: 512 * MB,
};

pub(crate) const FULL: Scale = Scale {
    fault_pages: 4096,
    fault_rounds: 64,
    alternations: 5,
    loads: 100_000_000,
    d_fault_rounds: 8,
    d_fork_pages: 16384,
    d_forks: 16,
    d_munmap_pages: 16384,
    d_munmap_rounds: 8,
    sga_processes: 300,
    sweep_rounds: 8,
    pt_rounds: 16,
    touch_bytes: 2 * GB,
};

/// CPUs of the design comparison (the sga and forkstorm workloads' machines have 4).
pub(crate) const DESIGN_CPUS: u32 = 4;
pub(crate) const DESIGN_RAM: u64 = 8 * GB;
pub(crate) const SWEEP_CPUS: [u32; 5] = [1, 2, 4, 8, 16];

pub fn run(a: &BenchArgs) -> anyhow::Result<u8> {
    if let Some(which) = &a.child {
        return child(which, a.quick);
    }
    let sc = if a.quick { &QUICK } else { &FULL };
    let t_all = Instant::now();
    let mut out = Output::new(
        a.report.clone(),
        a.json || a.csv,
        crate::progress::enabled(a.quiet, a.json || a.csv),
    )?;
    out.csv = a.csv;
    out.text(&format!(
        "# highpte bench{}\n\nhost: {}; simulated cost model: pentium4-xeon-2002 (2 GHz); \
         every simulated machine is PAE (`64g` for lowmem ptes, `64g-highpte` for atomic and \
         persistent).\n",
        if a.quick { " --quick" } else { "" },
        native::host_description()
    ));

    let on = |p: &str| a.only.is_empty() || a.only.iter().any(|o| o == p);
    if on("faults") {
        faults_vs_host(&mut out, sc)?;
    }
    if on("tlb") {
        tlb_hits(&mut out, sc)?;
    }
    if on("tlb") || a.only.iter().any(|o| o == "replay") {
        out.progress("trace replay");
        let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/sqlite-first60k.pgt.zst");
        let trace = match (&a.trace, a.quick) {
            (Some(t), _) => t.clone(),
            (None, true) => sample,
            (None, false) => crate::bench::replay::pick_trace(None),
        };
        out.table(&crate::bench::replay::table(&trace)?);
    }
    if on("designs") {
        designs(&mut out, sc)?;
    }
    if on("costs") {
        cost_models(&mut out, sc)?;
    }
    if on("sweep") {
        sweep(&mut out, sc)?;
    }
    if on("alloc") {
        allocators(&mut out, sc)?;
    }
    if on("boot") {
        boot_and_memory(&mut out, a.quick)?;
    }
    if on("demo") {
        demo(&mut out, a.quick)?;
    }

    out.text(&format!(
        "\nwhole bench: {:.1} s host time.\n",
        t_all.elapsed().as_secs_f64()
    ));
    out.finish(t_all.elapsed().as_secs_f64())?;
    Ok(0)
}

/// Where tables go: stdout (as text, or as JSON at the end), the report file when asked.
pub(crate) struct Output {
    dir: Option<PathBuf>,
    md: String,
    /// Print JSON at the end instead of text as it comes.
    json: bool,
    /// On a terminal: what is being measured, and how many measurements are done.
    bar: Option<indicatif::ProgressBar>,
    tables: Vec<serde_json::Value>,
    /// Print CSV at the end (with `json` set, so that no text is printed as it comes).
    csv: bool,
}

impl Output {
    fn new(dir: Option<PathBuf>, json: bool, progress: bool) -> anyhow::Result<Self> {
        if let Some(d) = &dir {
            std::fs::create_dir_all(d)?;
        }
        let bar = progress.then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} bench [{elapsed}] {pos} measured; now: {msg}",
            ) {
                b.set_style(style);
            }
            b.enable_steady_tick(std::time::Duration::from_millis(200));
            b
        });
        Ok(Self {
            dir,
            md: String::new(),
            json,
            bar,
            tables: Vec::new(),
            csv: false,
        })
    }
    pub(crate) fn text(&mut self, s: &str) {
        if !self.json {
            match &self.bar {
                Some(b) => b.suspend(|| println!("{s}")),
                None => println!("{s}"),
            }
            let _ = std::io::stdout().flush();
        }
        self.md.push_str(s);
        self.md.push('\n');
    }
    pub(crate) fn table(&mut self, t: &Table) {
        self.tables.push(serde_json::json!({
            "title": t.title,
            "headers": t.headers,
            "rows": t.rows,
            "notes": t.notes,
        }));
        self.text(&t.render());
    }
    pub(crate) fn progress(&self, s: &str) {
        if let Some(b) = &self.bar {
            b.set_message(s.to_string());
            b.inc(1);
        }
    }
    /// Write a plot (when reporting) and link it from the report.
    pub(crate) fn plot(
        &mut self,
        file: &str,
        title: &str,
        x: &str,
        y: &str,
        series: &[Series],
    ) -> anyhow::Result<()> {
        if let Some(d) = &self.dir {
            plots::lines(&d.join(file), title, x, y, series)?;
            self.md.push_str(&format!("![{title}]({file})\n\n"));
        }
        Ok(())
    }
    pub(crate) fn finish(&self, host_seconds: f64) -> anyhow::Result<()> {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if let Some(d) = &self.dir {
            let p = d.join("report.md");
            std::fs::write(&p, &self.md)?;
            if !self.json {
                println!("report: {}", p.display());
            }
        }
        if self.csv {
            let header: Vec<String> = ["table", "row", "column", "value"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let mut rows = Vec::new();
            for t in &self.tables {
                let title = t["title"].as_str().unwrap_or_default();
                let headers = t["headers"].as_array().cloned().unwrap_or_default();
                for (i, r) in t["rows"].as_array().into_iter().flatten().enumerate() {
                    for (j, cell) in r.as_array().into_iter().flatten().enumerate() {
                        rows.push(vec![
                            title.to_string(),
                            (i + 1).to_string(),
                            headers
                                .get(j)
                                .and_then(|h| h.as_str())
                                .unwrap_or_default()
                                .to_string(),
                            cell.as_str().unwrap_or_default().to_string(),
                        ]);
                    }
                }
            }
            return crate::cmd_compare::print_csv(&header, &rows);
        }
        if self.json {
            let v = serde_json::json!({
                "tables": self.tables,
                "report": self.dir.as_ref().map(|d| d.join("report.md").display().to_string()),
                "host_seconds": host_seconds,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Ok(())
    }
}

pub(crate) fn per(n: u64, d: u64) -> f64 {
    n as f64 / d.max(1) as f64
}
