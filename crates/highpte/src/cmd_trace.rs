//! `highpte trace info` and `highpte trace convert`: look into a page trace, and make one
//! from valgrind lackey output.

use crate::workload_args::InputError;
use clap::{Args, Subcommand};
use highpte_workload::trace::{self, Fold, TraceInfo};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// `highpte trace`.
#[derive(Args, Clone, Debug)]
pub struct TraceArgs {
    #[command(subcommand)]
    pub command: TraceCommand,
}

/// The `trace` subcommands.
#[derive(Subcommand, Clone, Debug)]
pub enum TraceCommand {
    /// Print a trace's records, accesses by kind, distinct pages, regions, system calls and
    /// how it folds into the i386 user space.
    Info(InfoArgs),
    /// Convert valgrind lackey output (--trace-mem=yes --trace-syscalls=yes) to PGT1.
    Convert(ConvertArgs),
}

/// `highpte trace info`.
#[derive(Args, Clone, Debug)]
pub struct InfoArgs {
    /// The trace (.pgt or .pgt.zst).
    pub trace: PathBuf,
    /// Print one JSON object (schema: docs/json.md).
    #[arg(long)]
    pub json: bool,
}

/// `highpte trace convert`.
#[derive(Args, Clone, Debug)]
pub struct ConvertArgs {
    /// The lackey output; `-` reads standard input. Plain text, or zstd-compressed.
    pub input: String,
    /// The PGT1 file to write (zstd-compressed unless its name ends in .pgt).
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Run `highpte trace ...`.
pub fn run(a: &TraceArgs) -> anyhow::Result<u8> {
    match &a.command {
        TraceCommand::Info(i) => info(i),
        TraceCommand::Convert(c) => convert(c),
    }
}

/// Scan a trace, as bad input (exit status 2) when it is malformed.
pub fn scan(path: &Path) -> Result<TraceInfo, InputError> {
    trace::scan_trace(path).map_err(|e| InputError(e.to_string()))
}

fn info(a: &InfoArgs) -> anyhow::Result<u8> {
    let i = scan(&a.trace)?;
    let fold = Fold::plan(&i.clusters);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&info_json(&i, &fold))?);
    } else {
        print_info(&a.trace, &i, &fold);
    }
    Ok(0)
}

/// The JSON object of `trace info` (docs/json.md).
pub fn info_json(i: &TraceInfo, fold: &Result<Fold, String>) -> Value {
    let kinds: serde_json::Map<String, Value> = trace::AccessKind::ALL
        .iter()
        .map(|k| (k.name().to_string(), json!(i.accesses[*k as usize])))
        .collect();
    json!({
        "records": i.records,
        "accesses": kinds,
        "distinct_pages": i.distinct_pages,
        "pages": {"fetch": i.pages_fetch, "data": i.pages_data, "written": i.pages_written},
        "regions": i.regions.iter().map(|(s, e)| json!({"start": format!("{:#x}", s << 12), "pages": e - s})).collect::<Vec<_>>(),
        "syscalls": i.syscalls,
        "file_mmaps": i.file_mmaps,
        "fold": match fold {
            Ok(f) => json!({"ok": true, "moves": f.moves().map(|(s, e, n)| json!({"from": format!("{:#x}", s << 12), "to": format!("{:#x}", n << 12), "pages": e - s})).collect::<Vec<_>>()}),
            Err(why) => json!({"ok": false, "why": why}),
        },
    })
}

fn print_info(path: &Path, i: &TraceInfo, fold: &Result<Fold, String>) {
    println!("trace {}", path.display());
    println!("records          {}", i.records);
    println!(
        "accesses         {} (fetch {}, read {}, write {}, modify {})",
        i.total_accesses(),
        i.accesses[0],
        i.accesses[1],
        i.accesses[2],
        i.accesses[3]
    );
    println!(
        "distinct pages   {} (fetch {}, data {}, written {})",
        i.distinct_pages, i.pages_fetch, i.pages_data, i.pages_written
    );
    let sys: Vec<String> = i.syscalls.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "system calls     {}{}",
        if sys.is_empty() {
            "none".to_string()
        } else {
            sys.join(", ")
        },
        if i.file_mmaps > 0 {
            format!(" ({} mmaps of files)", i.file_mmaps)
        } else {
            String::new()
        }
    );
    println!("initial regions  {}", i.regions.len());
    for (s, e) in &i.regions {
        println!("  {:#010x}-{:#010x} {:>6} pages", s << 12, e << 12, e - s);
    }
    match fold {
        Ok(f) if f.is_identity() => {
            println!("fold             none needed: every page is below 0xc0000000")
        }
        Ok(f) => {
            println!("fold             into the 3 GB i386 user space:");
            for (s, e, n) in f.moves() {
                println!(
                    "  {:#x}-{:#x} ({} pages) -> {:#010x}",
                    s << 12,
                    e << 12,
                    e - s,
                    n << 12
                );
            }
        }
        Err(why) => println!("fold             refused: {why}"),
    }
}

fn convert(a: &ConvertArgs) -> anyhow::Result<u8> {
    use std::io::BufReader;
    let zstd = !a.output.display().to_string().ends_with(".pgt");
    let out = std::fs::File::create(&a.output)
        .map_err(|e| InputError(format!("cannot create {}: {e}", a.output.display())))?;
    let out = std::io::BufWriter::new(out);
    let stats = if a.input == "-" {
        trace::lackey::convert(BufReader::new(std::io::stdin()), out, zstd)
    } else {
        let f = std::fs::File::open(&a.input)
            .map_err(|e| InputError(format!("cannot open {}: {e}", a.input)))?;
        trace::lackey::convert(BufReader::new(f), out, zstd)
    }
    .map_err(|e| InputError(format!("{}: {e}", a.input)))?;
    println!(
        "{} lines ({} accesses) -> {} records ({} initial regions, {} system calls) in {}",
        stats.lines,
        stats.access_lines,
        stats.records,
        stats.regions,
        stats.syscalls,
        a.output.display()
    );
    Ok(0)
}
