//! `--shard I/N` (run the I-th of N deterministic slices of a command's cells) and
//! `highpte merge` (join the shards' JSON into the table, JSON and plot of one unsharded run).
//!
//! Cell `k` (0-based, in the order the unsharded command lists its cells) belongs to shard
//! `k mod N + 1`: neighbouring cells, which tend to cost alike, go to different shards. A
//! shard prints one JSON document (see docs/cluster.md): the command, the parameters that
//! decide its cells and its output, which slice it is, its cells' JSON (each with its index
//! `cell`) and its notes. `merge` checks that the shards belong together and cover every
//! cell once, then renders them exactly as the unsharded command would.

use crate::workload_args::InputError;
use clap::Args;
use serde_json::{json, Value};
use std::path::PathBuf;

/// The version of the shard document format.
pub const SHARD_FORMAT: u64 = 1;

/// `--shard I/N`: slice `index` (1-based) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Which slice, 1 to `count`.
    pub index: usize,
    /// How many slices.
    pub count: usize,
}

/// Most shards a command may be split into.
pub const MAX_SHARDS: usize = 100_000;

/// clap parser for `--shard I/N`.
pub fn parse_shard(s: &str) -> Result<Shard, String> {
    let form = "expected I/N with 1 <= I <= N, e.g. 2/10 for the second of ten shards";
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("'{s}' is not a shard: {form}"))?;
    let num = |t: &str| t.trim().parse::<usize>().ok();
    match (num(i), num(n)) {
        (Some(index), Some(count)) if index >= 1 && index <= count && count <= MAX_SHARDS => {
            Ok(Shard { index, count })
        }
        (Some(_), Some(count)) if count > MAX_SHARDS => {
            Err(format!("'{s}': at most {MAX_SHARDS} shards"))
        }
        _ => Err(format!("'{s}' is not a shard: {form}")),
    }
}

impl Shard {
    /// True if cell `k` (0-based) is this shard's.
    pub fn takes(&self, k: usize) -> bool {
        k % self.count == self.index - 1
    }
}

/// The JSON document a shard prints.
pub fn document(
    command: &str,
    params: Value,
    shard: Shard,
    cells_total: usize,
    cells: Vec<Value>,
    notes: &[String],
    host_seconds: f64,
) -> Value {
    json!({
        "highpte_shard": SHARD_FORMAT,
        "command": command,
        "params": params,
        "shard": {"index": shard.index, "count": shard.count},
        "cells_total": cells_total,
        "cells": cells,
        "notes": notes,
        "host_seconds": host_seconds,
    })
}

/// `highpte merge`.
#[derive(Args, Clone, Debug)]
pub struct MergeArgs {
    /// The shards' JSON documents (`--shard I/N` output of matrix, sweep or compare), in any
    /// order: every shard of one command, each once.
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
    /// Print the JSON of the unsharded command instead of its table.
    #[arg(long)]
    pub json: bool,
    /// Print the CSV of the unsharded command (one row per cell) instead of its table.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// Write the plot the unsharded command would (compare, sweep; SVG or PNG by extension).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress output (merging shows none).
    #[arg(long, short)]
    pub quiet: bool,
}

/// The joined shards of one command.
pub struct Merged {
    /// `matrix`, `sweep` or `compare`.
    pub command: String,
    /// The parameters every shard carried.
    pub params: Value,
    /// Every cell, in cell order.
    pub cells: Vec<Value>,
    /// The shards' notes, each once, in shard order.
    pub notes: Vec<String>,
    /// The shards' host seconds, added up.
    pub host_seconds: f64,
}

/// Read and check the shard documents: one command with the same parameters, every shard
/// 1..N once, every cell once.
pub fn join(files: &[PathBuf]) -> Result<Merged, InputError> {
    let err = |f: &PathBuf, what: String| InputError(format!("merge: {}: {what}", f.display()));
    let mut docs: Vec<(PathBuf, Value)> = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).map_err(|e| err(f, format!("cannot read it ({e})")))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            err(
                f,
                format!("not JSON ({e}); give the output of a command run with --shard I/N"),
            )
        })?;
        if v["highpte_shard"].as_u64() != Some(SHARD_FORMAT) {
            return Err(err(f, "not a shard document: run matrix, sweep or compare with --shard I/N and give their output".to_string()));
        }
        docs.push((f.clone(), v));
    }
    let Some((first_file, first)) = docs.first().cloned() else {
        return Err(InputError("merge: no files".to_string()));
    };
    let count = first["shard"]["count"].as_u64().unwrap_or(0) as usize;
    let total = first["cells_total"].as_u64().unwrap_or(0) as usize;
    let mut seen = vec![None::<PathBuf>; count];
    for (f, d) in &docs {
        for key in ["command", "params", "cells_total"] {
            if d[key] != first[key] {
                return Err(err(
                    f,
                    format!(
                        "its {key} differs from {}'s: shards of different commands cannot be merged",
                        first_file.display()
                    ),
                ));
            }
        }
        if d["shard"]["count"] != first["shard"]["count"] {
            return Err(err(
                f,
                format!(
                    "it is one of {} shards, {} one of {count}",
                    d["shard"]["count"],
                    first_file.display()
                ),
            ));
        }
        let i = d["shard"]["index"].as_u64().unwrap_or(0) as usize;
        let slot = seen
            .get_mut(i.wrapping_sub(1))
            .ok_or_else(|| err(f, format!("shard index {i} is not 1 to {count}")))?;
        if let Some(other) = slot {
            return Err(err(
                f,
                format!(
                    "shard {i}/{count} is given twice (also {})",
                    other.display()
                ),
            ));
        }
        *slot = Some(f.clone());
    }
    let missing: Vec<String> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_none())
        .map(|(i, _)| format!("{}/{count}", i + 1))
        .collect();
    if !missing.is_empty() {
        return Err(InputError(format!(
            "merge: shard(s) {} missing: give every shard's output",
            missing.join(", ")
        )));
    }
    docs.sort_by_key(|(_, d)| d["shard"]["index"].as_u64().unwrap_or(0));
    let mut cells: Vec<Option<Value>> = vec![None; total];
    let mut notes: Vec<String> = Vec::new();
    let mut host_seconds = 0.0;
    for (f, d) in &docs {
        host_seconds += d["host_seconds"].as_f64().unwrap_or(0.0);
        for n in d["notes"].as_array().into_iter().flatten() {
            let n = n.as_str().unwrap_or_default().to_string();
            if !notes.contains(&n) {
                notes.push(n);
            }
        }
        for c in d["cells"].as_array().into_iter().flatten() {
            let k = c["cell"].as_u64().unwrap_or(u64::MAX) as usize;
            match cells.get_mut(k) {
                Some(slot @ None) => *slot = Some(c.clone()),
                Some(Some(_)) => return Err(err(f, format!("cell {k} appears twice"))),
                None => {
                    return Err(err(
                        f,
                        format!("cell {k} is not 0 to {}", total.saturating_sub(1)),
                    ))
                }
            }
        }
    }
    let cells: Vec<Value> = cells
        .into_iter()
        .enumerate()
        .map(|(k, c)| c.ok_or_else(|| InputError(format!("merge: cell {k} is in no shard"))))
        .collect::<Result<_, _>>()?;
    Ok(Merged {
        command: first["command"].as_str().unwrap_or_default().to_string(),
        params: first["params"].clone(),
        cells,
        notes,
        host_seconds,
    })
}

/// `highpte merge`.
pub fn run(a: &MergeArgs) -> anyhow::Result<u8> {
    if let Some(p) = &a.plot {
        crate::plot::check_path(p)?;
    }
    let m = join(&a.files)?;
    let out = crate::cmd_compare::Output {
        json: a.json,
        csv: a.csv,
        plot: a.plot.clone(),
    };
    match m.command.as_str() {
        "matrix" => crate::cmd_matrix::render_matrix(&m.params, &m.cells, &out, m.host_seconds),
        "compare" => crate::cmd_compare::render(&m.params, &m.cells, &m.notes, &out),
        "sweep" => crate::cmd_sweep::render(&m.params, &m.cells, &m.notes, &out),
        other => Err(InputError(format!("merge: unknown command '{other}' in the shards")).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_split_cells_round_robin() {
        assert_eq!(parse_shard("2/3"), Ok(Shard { index: 2, count: 3 }));
        assert!(parse_shard("0/3").is_err());
        assert!(parse_shard("4/3").is_err());
        assert!(parse_shard("3").is_err());
        let s = Shard { index: 2, count: 3 };
        let mine: Vec<usize> = (0..10).filter(|&k| s.takes(k)).collect();
        assert_eq!(mine, [1, 4, 7]);
    }
}
