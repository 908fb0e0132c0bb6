//! Choosing a workload (built-in name or file) and applying command-line overrides to it.

use crate::args::MachineArgs;
use clap::Args;
use highpte_workload::{builtin, builtin_names, load_workload, Ramp, WorkloadSpec};
use std::path::Path;

/// What a workload-running command takes besides the machine.
#[derive(Args, Clone, Debug)]
pub struct WorkloadArgs {
    /// A built-in workload (sga, wli, forkstorm, churn, pagecache, kmap-deadlock), a workload
    /// file (.toml), or a page trace (.pgt, .pgt.zst) replayed in --processes instances.
    pub workload: String,
    #[command(flatten)]
    pub machine: MachineArgs,
    /// Seed of every random choice: 0 to 2^64-1.
    #[arg(long, value_parser = crate::args::parse_seed, allow_hyphen_values = true)]
    pub seed: Option<u64>,
    /// Target number of processes (the ramp's end): 1 to 32767.
    #[arg(long, value_parser = crate::args::parse_processes)]
    pub processes: Option<u32>,
    /// Ramp as START,STEP (e.g. 100,100); "none" starts all at once.
    #[arg(long)]
    pub ramp: Option<String>,
    /// For a trace: how its instances start: "exec" (default: each its own process, mapping
    /// the program itself) or "fork" (forked from one parent that loaded the text, which they
    /// share copy-on-write; no --ramp). See docs/traces.md.
    #[arg(long, value_enum)]
    pub instances_from: Option<InstancesFrom>,
}

/// How the instances of a replayed trace start (`--instances-from`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum InstancesFrom {
    /// Each instance is a process of its own that maps the program itself, like an exec.
    #[default]
    Exec,
    /// One parent maps the program and loads its text, then forks the instances.
    Fork,
}

/// Why a workload could not be prepared (bad input: exit status 2).
#[derive(Debug)]
pub struct InputError(pub String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for InputError {}

impl WorkloadArgs {
    /// Load the workload and apply the overrides; validate the result.
    pub fn spec(&self) -> Result<WorkloadSpec, InputError> {
        let is_trace = highpte_workload::trace::is_trace_path(&self.workload);
        let forked = self.instances_from == Some(InstancesFrom::Fork);
        if self.instances_from.is_some() && !is_trace {
            return Err(InputError(format!(
                "--instances-from applies to a page trace (.pgt, .pgt.zst), not to '{}': leave it out, or give a trace",
                self.workload
            )));
        }
        if forked && self.ramp.as_deref().is_some_and(|r| r != "none") {
            return Err(InputError(
                "--ramp needs --instances-from exec: forked instances all start from one parent in one step".to_string(),
            ));
        }
        let mut spec = if let Some(s) = builtin(&self.workload) {
            s
        } else if is_trace {
            highpte_workload::trace::replay_workload(
                &self.workload,
                self.processes.unwrap_or(1),
                forked,
            )
            .map_err(InputError)?
        } else if Path::new(&self.workload).exists() || self.workload.ends_with(".toml") {
            load_workload(Path::new(&self.workload)).map_err(|e| InputError(e.to_string()))?
        } else {
            return Err(InputError(format!(
                "unknown workload '{}': expected a built-in ({}) or a workload file path",
                self.workload,
                builtin_names().collect::<Vec<_>>().join(", ")
            )));
        };
        spec.name = crate::text::display_name(&spec.name);
        if forked {
            // the instances are the parent's children: one top-level process
            let own = WorkloadArgs {
                processes: None,
                ..self.clone()
            };
            own.apply(&mut spec)?;
        } else {
            self.apply(&mut spec)?;
        }
        Ok(spec)
    }

    /// Apply the command-line overrides to `spec` and validate it.
    pub fn apply(&self, spec: &mut WorkloadSpec) -> Result<(), InputError> {
        let m = &self.machine;
        if let Some(v) = m.config {
            spec.machine.config = v;
        }
        if let Some(k) = m.kernel {
            spec.machine.kernel = k;
        }
        if let Some(r) = m.ram {
            spec.machine.ram = highpte_workload::Size(r);
        }
        if let Some(c) = m.cpus {
            spec.machine.cpus = c;
        }
        if let Some(p) = m.preempt.value() {
            spec.machine.preempt = p;
        }
        let v = spec.machine.config;
        // More RAM than the configuration addresses (given on the command line: a file
        // saying so is refused by its validation): use what it addresses, as Linux did.
        if let Some(note) = crate::args::ram_note(v, spec.machine.ram.0) {
            eprintln!("highpte: note: {note}");
            spec.machine.ram = highpte_workload::Size(v.max_usable_ram());
        }
        if let Some(n) = m.pkmap_entries {
            if v.pae() && n > 512 {
                return Err(InputError(format!(
                    "--pkmap-entries {n} is more than the 512 entries LAST_PKMAP has with PAE ({}): use at most 512",
                    v.name()
                )));
            }
        }
        if let Some(s) = m.strategy {
            spec.machine.strategy = Some(s);
        }
        if let Some(a) = m.pt_alloc {
            spec.machine.pt_alloc = Some(a);
        }
        if m.debug {
            spec.machine.debug = true;
        }
        if let Some(s) = m.swap {
            spec.machine.swap = highpte_workload::Size(s);
        }
        if let Some(r) = m.reclaim {
            spec.machine.reclaim = Some(r);
        }
        if let Some(s) = self.seed {
            spec.machine.seed = s;
        }
        if let Some(n) = self.processes {
            spec.processes.count = n;
            if let Some(r) = &mut spec.processes.ramp {
                r.start = r.start.min(n.max(1));
            }
        }
        if let Some(r) = &self.ramp {
            if r == "none" {
                spec.processes.ramp = None;
            } else {
                let parts: Vec<&str> = r.split(',').collect();
                let parse = |s: &str| s.trim().parse::<u32>().ok().filter(|v| *v > 0);
                match (parts.len(), parts.first().and_then(|s| parse(s)), parts.get(1).and_then(|s| parse(s))) {
                    (2, Some(start), Some(step)) => spec.processes.ramp = Some(Ramp { start, step }),
                    _ => return Err(InputError(format!("--ramp '{r}': expected START,STEP with two positive numbers (e.g. 100,100) or 'none'"))),
                }
            }
        }
        m.swap_file.require_swap(
            spec.machine.swap.0 > 0,
            "give --swap SIZE (more than 0), or run a workload with swap",
        )?;
        if let Err(problems) = spec.validate() {
            let msg: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            return Err(InputError(format!(
                "workload '{}' with these options is invalid: {}",
                spec.name,
                msg.join("; ")
            )));
        }
        Ok(())
    }
}
