//! `highpte sites`: every named page-allocation site of the kernel, what allocates there and
//! what a failure there turns into (the names `--fail-alloc site=NAME` accepts).

use clap::Args;
use highpte_kernel::fault_inject::ALLOC_SITE_INFO;
use serde_json::json;

/// `highpte sites`.
#[derive(Args, Clone, Debug)]
pub struct SitesArgs {
    /// Print a JSON array of {name, description, on_failure}.
    #[arg(long)]
    pub json: bool,
    /// No progress output (the list is printed at once).
    #[arg(long, short)]
    pub quiet: bool,
}

/// List the sites.
pub fn run(a: &SitesArgs) -> anyhow::Result<u8> {
    if a.json {
        let v: Vec<_> = ALLOC_SITE_INFO
            .iter()
            .map(|s| json!({"name": s.name, "description": s.description, "on_failure": s.on_failure}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    let w = ALLOC_SITE_INFO
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0);
    for s in ALLOC_SITE_INFO {
        println!("{:<w$}  {}", s.name, s.description);
    }
    println!();
    println!(
        "fail one with: highpte stress ... --fail-alloc site=NAME (or site=NAME:N for its N-th allocation only); see docs/fault-injection.md"
    );
    Ok(0)
}
