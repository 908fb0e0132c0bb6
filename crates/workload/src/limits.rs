//! What the simulated machine can hold and what a run can finish, checked before the run.
//!
//! [`WorkloadSpec::validate`](crate::WorkloadSpec::validate) checks each value on its own
//! (a mapping within the 3G user address space, a file within 1T); this module checks the
//! workload as a whole against the machine: the files it writes must fit on the simulated
//! disk, and the memory accesses it asks for must be few enough to finish. It also caps the
//! size of a workload file read from the host, so that `highpte run /dev/zero` is an error
//! instead of a process that grows without bound.
//!
//! Host memory then stays bounded by the simulated memory a run touches: RAM (at most 64G),
//! swap (at most 64G) and the disk ([`DISK_BYTES`]).

use crate::spec::{Op, PathSeg, Problem, RunBy, WorkloadSpec};
use highpte_arch::size::{DisplaySize, GB, MB};
use highpte_arch::PAGE_SIZE;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// The largest workload file read: 1 MB (the longest shipped one is under 4 KB).
pub const MAX_WORKLOAD_FILE_BYTES: u64 = MB;

/// The simulated disk that holds the workload's files: 16G. Its blocks live in host memory,
/// so this is also the most host memory file data can take.
pub const DISK_BYTES: u64 = 16 * GB;

/// The most page accesses (user accesses, page writes and reads of files, populated pages,
/// an estimate per random operation) a workload may ask for: 2^33, about a quarter of an hour
/// of host time at the simulator's ~10 million accesses per second.
pub const MAX_WORK: u64 = 1 << 33;

/// Page accesses counted for one operation of a `random` op (a random mmap, touch or fork
/// touches a few dozen pages on average with the default 1M `max_size`).
pub const RANDOM_OP_WORK: u64 = 64;

/// Reads the workload file at `path`, refusing one larger than
/// [`MAX_WORKLOAD_FILE_BYTES`] without reading more than one byte past the cap (so a device
/// such as `/dev/zero` or an endless pipe is refused too). The error says what and how to
/// fix it, as `(message, hint)`.
pub fn read_workload_file(path: &Path) -> Result<Vec<u8>, (String, String)> {
    let not_found = || {
        "check the path, or name a built-in workload (sga, wli, forkstorm, churn, pagecache, kmap-deadlock)"
            .to_string()
    };
    let file = std::fs::File::open(path)
        .map_err(|e| (format!("cannot read the workload file: {e}"), not_found()))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err((
            "this is a directory, not a workload file".to_string(),
            not_found(),
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_WORKLOAD_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| (format!("cannot read the workload file: {e}"), not_found()))?;
    if bytes.len() as u64 > MAX_WORKLOAD_FILE_BYTES {
        return Err((
            format!(
                "the workload file is larger than {} (the most a workload file may hold)",
                DisplaySize(MAX_WORKLOAD_FILE_BYTES)
            ),
            "a workload file is a short TOML text (see workloads/README.md); check that this is the file you meant".to_string(),
        ));
    }
    Ok(bytes)
}

/// The accepted range of a whole-number key that serde reads as a wider type, for its error
/// message (`processes.count` is a `u32`, but only 1 to 32767 make sense).
pub fn key_range(path: &[PathSeg]) -> Option<&'static str> {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            PathSeg::Key(k) => Some(k.as_str()),
            PathSeg::Index(_) => None,
        })
        .collect();
    Some(match keys.as_slice() {
        ["processes", "count"] => "a whole number from 1 to 32767 (the pids Linux 2.5 has)",
        ["processes", "ramp", _] => "a whole number from 1 to processes.count",
        ["machine", "cpus"] => "a whole number from 1 (UP) to 32",
        ["phases", "repeat"] => "a whole number, 1 or more",
        ["phases", "ops", "children"] => "a whole number from 1 to 32767",
        _ => return None,
    })
}

fn key(k: &str) -> PathSeg {
    PathSeg::Key(k.to_string())
}

fn op_path(phase: usize, op: usize) -> Vec<PathSeg> {
    vec![
        key("phases"),
        PathSeg::Index(phase),
        key("ops"),
        PathSeg::Index(op),
    ]
}

/// How many times each phase is run in all: once per process that runs it (the top-level
/// processes by `run_by`, forked children by the forks that name it), times nothing else
/// (`repeat` is counted by the caller).
fn phase_instances(spec: &WorkloadSpec) -> Vec<u64> {
    let count = u64::from(spec.processes.count);
    let mut inst: Vec<u64> = spec
        .phases
        .iter()
        .map(|p| match p.run_by {
            RunBy::First => 1,
            RunBy::All | RunBy::EachNew => count,
            RunBy::Children => 0,
        })
        .collect();
    let index: BTreeMap<&str, usize> = spec
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    // Two passes reach children of children declared before their parent phase.
    for _ in 0..2 {
        let mut child = vec![0u64; spec.phases.len()];
        for (i, p) in spec.phases.iter().enumerate() {
            for op in &p.ops {
                if let Op::Fork {
                    children,
                    child_phase,
                    ..
                } = op
                {
                    if let Some(&k) = index.get(child_phase.as_str()) {
                        child[k] = child[k].saturating_add(
                            inst[i]
                                .saturating_mul(u64::from(p.repeat))
                                .saturating_mul(u64::from(*children)),
                        );
                    }
                }
            }
        }
        for (i, p) in spec.phases.iter().enumerate() {
            if p.run_by == RunBy::Children {
                inst[i] = child[i];
            }
        }
    }
    inst
}

/// The page accesses one run of `op` asks for; `regions` and `files` give the largest size
/// of each region and file name the workload defines.
fn op_work(op: &Op, regions: &BTreeMap<&str, u64>, files: &BTreeMap<&str, u64>) -> u64 {
    let pages = |b: u64| b.div_ceil(PAGE_SIZE);
    match op {
        Op::Touch {
            region,
            count,
            size,
            ..
        } => count.unwrap_or_else(|| match size {
            Some(s) => s.pages(),
            None => pages(regions.get(region.as_str()).copied().unwrap_or(3 * GB)),
        }),
        Op::FileWrite { size, count, .. } => count.unwrap_or(size.pages()),
        Op::FileRead {
            file, size, count, ..
        } => count.unwrap_or_else(|| match size {
            Some(s) => s.pages(),
            None => pages(files.get(file.as_str()).copied().unwrap_or(0)),
        }),
        Op::Mmap {
            size,
            populate: true,
            ..
        } => size.pages(),
        Op::Random { ops, .. } => ops.saturating_mul(RANDOM_OP_WORK),
        _ => 1,
    }
}

/// The checks of the workload as a whole: its files fit on the disk, its accesses can
/// finish. Problems point at the op that asks for the most.
pub fn check(spec: &WorkloadSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    let inst = phase_instances(spec);
    // Largest extent of every region and file name.
    let mut regions: BTreeMap<&str, u64> = BTreeMap::new();
    let mut shm: BTreeMap<i32, u64> = BTreeMap::new();
    let mut files: BTreeMap<&str, (u64, u64, Vec<PathSeg>)> = BTreeMap::new();
    for (i, ph) in spec.phases.iter().enumerate() {
        for (j, op) in ph.ops.iter().enumerate() {
            match op {
                Op::Mmap { name, size, .. } => {
                    let e = regions.entry(name.as_str()).or_default();
                    *e = (*e).max(size.0);
                }
                Op::Shmget { key, size, .. } => {
                    let e = shm.entry(*key).or_default();
                    *e = (*e).max(size.0);
                }
                Op::FileWrite {
                    file, size, offset, ..
                } => {
                    let end = offset.0.saturating_add(size.0);
                    // A `{p}` name is one file per process that runs the phase.
                    let copies = if file.contains("{p}") {
                        inst[i].max(1)
                    } else {
                        1
                    };
                    let e = files.entry(file.as_str()).or_insert((0, 1, op_path(i, j)));
                    if end > e.0 {
                        *e = (end, copies, op_path(i, j));
                    }
                }
                _ => {}
            }
        }
    }
    for ph in &spec.phases {
        for op in &ph.ops {
            match op {
                Op::Shmat { key, name, .. } => {
                    let size = shm.get(key).copied().unwrap_or(0);
                    let e = regions.entry(name.as_str()).or_default();
                    *e = (*e).max(size);
                }
                Op::MmapFile { name, size, .. } => {
                    let e = regions.entry(name.as_str()).or_default();
                    *e = (*e).max(size.map_or(3 * GB, |s| s.0));
                }
                _ => {}
            }
        }
    }
    let disk: u64 = files
        .values()
        .map(|(end, copies, _)| end.saturating_mul(*copies))
        .fold(0u64, u64::saturating_add);
    if disk > DISK_BYTES {
        let (name, (end, copies, path)) = files
            .iter()
            .max_by_key(|(_, (end, copies, _))| end.saturating_mul(*copies))
            .map(|(n, v)| (*n, v.clone()))
            .unwrap_or(("", (0, 1, Vec::new())));
        let mut p = path;
        p.push(key("size"));
        problems.push(Problem {
            path: p,
            message: format!(
                "the files the workload writes add up to {}, more than the {} disk of the simulated machine (file \"{name}\" alone: {}{})",
                DisplaySize(disk),
                DisplaySize(DISK_BYTES),
                DisplaySize(end),
                if copies > 1 { format!(" for each of {copies} processes") } else { String::new() }
            ),
            hint: format!(
                "write smaller files or fewer of them, so that they fit in {}",
                DisplaySize(DISK_BYTES)
            ),
        });
    }
    let file_sizes: BTreeMap<&str, u64> = files.iter().map(|(n, v)| (*n, v.0)).collect();
    let mut total = 0u64;
    let mut biggest: (u64, Vec<PathSeg>) = (0, Vec::new());
    for (i, ph) in spec.phases.iter().enumerate() {
        for (j, op) in ph.ops.iter().enumerate() {
            let w = op_work(op, &regions, &file_sizes)
                .saturating_mul(u64::from(ph.repeat))
                .saturating_mul(inst[i]);
            total = total.saturating_add(w);
            if w > biggest.0 {
                let mut p = op_path(i, j);
                match op {
                    Op::Random { .. } => p.push(key("ops")),
                    Op::Touch { count: Some(_), .. }
                    | Op::FileWrite { count: Some(_), .. }
                    | Op::FileRead { count: Some(_), .. } => p.push(key("count")),
                    _ => {}
                }
                biggest = (w, p);
            }
        }
    }
    if total > MAX_WORK {
        problems.push(Problem {
            path: biggest.1,
            message: format!(
                "the workload asks for about {total} page accesses in all (this op: {}, counting every process and repeat), more than the {MAX_WORK} a run can finish in reasonable time (the simulator makes about 10 million a second)",
                biggest.0
            ),
            hint: "lower count, ops, repeat or the number of processes".to_string(),
        });
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_workload;

    fn problems(text: &str) -> Vec<Problem> {
        let spec: WorkloadSpec = toml::from_str(text).expect("the test workload parses");
        check(&spec)
    }

    const HEAD: &str =
        "name = \"t\"\n[machine]\nconfig = \"4g\"\nram = \"1G\"\n[processes]\ncount = 4\n";

    #[test]
    fn a_file_bigger_than_the_disk_is_refused() {
        let p = problems(&format!(
            "{HEAD}[[phases]]\nname = \"a\"\nops = [ {{ op = \"file_write\", file = \"f\", size = \"1T\" }} ]\n"
        ));
        assert_eq!(p.len(), 1);
        assert_eq!(
            crate::spec::display_path(&p[0].path),
            "phases[0].ops[0].size"
        );
        assert!(
            p[0].message.starts_with(
                "the files the workload writes add up to 1024G, more than the 16G disk"
            ),
            "{}",
            p[0].message
        );
    }

    #[test]
    fn one_file_per_process_counts_each_copy() {
        // 4 processes x 5G = 20G > 16G; 4 x 4G = 16G fits exactly.
        let f = |size: &str| {
            problems(&format!(
                "{HEAD}[[phases]]\nname = \"a\"\nops = [ {{ op = \"file_write\", file = \"f-{{p}}\", size = \"{size}\" }} ]\n"
            ))
        };
        assert_eq!(f("5G").len(), 1);
        assert!(f("5G")[0].message.contains("5G for each of 4 processes"));
        assert!(f("4G").is_empty());
    }

    #[test]
    fn a_count_that_cannot_finish_is_refused() {
        let p = problems(&format!(
            "{HEAD}[[phases]]\nname = \"a\"\nops = [ {{ op = \"mmap\", name = \"r\", size = \"1M\" }}, {{ op = \"touch\", region = \"r\", count = 1000000000000 }} ]\n"
        ));
        assert_eq!(p.len(), 1);
        assert_eq!(
            crate::spec::display_path(&p[0].path),
            "phases[0].ops[1].count"
        );
        assert!(
            p[0].message.contains("about 4000000000004 page accesses"),
            "{}",
            p[0].message
        );
    }

    #[test]
    fn the_builtins_are_within_the_limits() {
        for name in crate::builtin_names() {
            let text = crate::builtin::builtin_text(name).expect("a built-in");
            let spec = parse_workload(text, name).expect("a valid built-in");
            assert_eq!(check(&spec), Vec::new(), "{name}");
        }
    }
}
