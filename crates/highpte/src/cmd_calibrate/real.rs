//! The real kernel's measurements as `highpte calibrate` reads them: the JSON documents
//! `tools/realkernel/collect.py` writes, checked before any simulation, every problem naming
//! its file.

use super::{MODES, PER_PROCESS_N, REGIONS};
use crate::workload_args::InputError;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One real run with what the simulator runs for it.
pub(super) type RealCase = (&'static str, &'static str, u64, RealRun);

/// What one real-kernel JSON document says, as far as the comparison needs it.
pub(super) struct RealRun {
    /// meminfo right after boot.
    pub(super) boot: RealMeminfo,
    /// meminfo with the parent's region written, before any child.
    pub(super) parent: RealMeminfo,
    /// meminfo after each child, by number of children.
    pub(super) steps: Vec<(u32, RealMeminfo)>,
    /// Children alive when the run stopped, and why it stopped (`death`: the first OOM kill).
    pub(super) stop_children: u32,
    pub(super) stop_why: String,
}

/// The meminfo figures compared, kB.
#[derive(Clone, Copy, Debug)]
pub(super) struct RealMeminfo {
    pub(super) low_total: i64,
    pub(super) high_total: i64,
    pub(super) low_free: i64,
    pub(super) page_tables: i64,
    /// kB on the DMA and Normal zones' per-CPU page lists (zoneinfo `count`), where the run
    /// recorded them.
    pub(super) low_pcp: Option<i64>,
}

impl RealMeminfo {
    /// Low memory not in use, kB: LowFree plus the pages on the low zones' per-CPU lists,
    /// which 6.1's LowFree leaves out although they are free for the next allocation. Without
    /// the lists (older data), LowFree.
    pub(super) fn low_unused(&self) -> i64 {
        self.low_free + self.low_pcp.unwrap_or(0)
    }
}

impl RealRun {
    pub(super) fn at(&self, n: u32) -> Option<&RealMeminfo> {
        self.steps.iter().find(|(c, _)| *c == n).map(|(_, m)| m)
    }
}

/// The default data directory: the checked-in measurements of this repository.
pub(super) fn default_data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/realkernel")
}

/// Read and check one real-kernel JSON document; every problem names the file.
fn read_real(path: &Path) -> Result<RealRun, InputError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| {
        InputError(format!(
            "cannot read the real-kernel measurements {shown}: {e} (give --data DIR with the JSON files tools/realkernel/run.sh writes)"
        ))
    })?;
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| InputError(format!("{shown} is not valid JSON: {e}")))?;
    let bad = |what: &str| {
        InputError(format!(
            "{shown}: {what} (expected the JSON tools/realkernel/collect.py writes)"
        ))
    };
    let meminfo = |s: &Value, what: &str| -> Result<RealMeminfo, InputError> {
        let m = &s["meminfo"];
        let get = |k: &str| {
            m[k].as_i64()
                .ok_or_else(|| bad(&format!("{what}: no meminfo.{k}")))
        };
        let zones = &s["zones"];
        let pcp = |z: &str| zones[z]["pcp"].as_i64();
        Ok(RealMeminfo {
            low_total: get("LowTotal")?,
            high_total: get("HighTotal")?,
            low_free: get("LowFree")?,
            page_tables: get("PageTables")?,
            low_pcp: pcp("DMA").zip(pcp("Normal")).map(|(d, n)| 4 * (d + n)),
        })
    };
    let steps = doc["steps"]
        .as_array()
        .ok_or_else(|| bad("no \"steps\" list"))?;
    let phase = |p: &str| -> Result<RealMeminfo, InputError> {
        let s = steps
            .iter()
            .find(|s| s["phase"] == p)
            .ok_or_else(|| bad(&format!("no step with phase \"{p}\"")))?;
        meminfo(s, &format!("the \"{p}\" step"))
    };
    let mut at = Vec::new();
    for s in steps.iter().filter(|s| s["phase"] == "step") {
        let n = s["children"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad("a step without a number of \"children\""))?;
        at.push((n, meminfo(s, &format!("the step with {n} children"))?));
    }
    let stop = &doc["stop"];
    Ok(RealRun {
        boot: phase("boot")?,
        parent: phase("parent")?,
        steps: at,
        stop_children: stop["children"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad("no \"stop\".\"children\""))?,
        stop_why: stop["why"].as_str().unwrap_or("").to_string(),
    })
}

/// Read and check every real run before minutes of simulation: bad input first.
pub(super) fn read_all(dir: &Path) -> anyhow::Result<Vec<RealCase>> {
    if !dir.is_dir() {
        return Err(InputError(format!(
            "--data {}: no such directory (it holds the real kernel's {{nohigh,highpte}}-{{256,1024}}M.json)",
            dir.display()
        ))
        .into());
    }
    let mut real = Vec::new();
    for (mode, config) in MODES {
        for region in REGIONS {
            let path = dir.join(format!("{mode}-{region}M.json"));
            let r = read_real(&path)?;
            if r.at(PER_PROCESS_N).is_none() {
                return Err(InputError(format!(
                    "{}: no step with {PER_PROCESS_N} children (the per-process figures need it)",
                    path.display()
                ))
                .into());
            }
            real.push((mode, config, region, r));
        }
    }
    Ok(real)
}
