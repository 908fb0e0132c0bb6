//! Choosing a workload (built-in name or file) and applying command-line overrides to it.

use crate::args::MachineArgs;
use clap::Args;
use highpte_workload::{builtin, builtin_names, load_workload, Ramp, WorkloadSpec};
use std::path::Path;

/// What a workload-running command takes besides the machine.
#[derive(Args, Clone, Debug)]
pub struct WorkloadArgs {
    /// A built-in workload (sga, wli, forkstorm, churn, pagecache) or a workload file (.toml).
    pub workload: String,
    #[command(flatten)]
    pub machine: MachineArgs,
    /// Seed of every random choice.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Target number of processes (the ramp's end).
    #[arg(long)]
    pub processes: Option<u32>,
    /// Ramp as START,STEP (e.g. 100,100); "none" starts all at once.
    #[arg(long)]
    pub ramp: Option<String>,
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
        let mut spec = if let Some(s) = builtin(&self.workload) {
            s
        } else if Path::new(&self.workload).exists() || self.workload.ends_with(".toml") {
            load_workload(Path::new(&self.workload)).map_err(|e| InputError(e.to_string()))?
        } else {
            return Err(InputError(format!(
                "unknown workload '{}': expected a built-in ({}) or a workload file path",
                self.workload,
                builtin_names().collect::<Vec<_>>().join(", ")
            )));
        };
        self.apply(&mut spec)?;
        Ok(spec)
    }

    /// Apply the command-line overrides to `spec` and validate it.
    pub fn apply(&self, spec: &mut WorkloadSpec) -> Result<(), InputError> {
        let m = &self.machine;
        if let Some(v) = m.config {
            spec.machine.config = v.name().to_string();
        }
        if let Some(r) = m.ram {
            spec.machine.ram = highpte_workload::Size(r);
        }
        if let Some(c) = m.cpus {
            spec.machine.cpus = c;
        }
        if m.preempt {
            spec.machine.preempt = true;
        }
        if m.no_preempt {
            spec.machine.preempt = false;
        }
        if let Some(s) = m.strategy {
            spec.machine.strategy = Some(s.name().to_string());
        }
        if let Some(a) = m.pt_alloc {
            spec.machine.pt_alloc = Some(a.name().to_string());
        }
        if m.debug {
            spec.machine.debug = true;
        }
        if let Some(s) = m.swap {
            spec.machine.swap = highpte_workload::Size(s);
        }
        if let Some(r) = m.reclaim {
            spec.machine.reclaim = Some(r.name().to_string());
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
