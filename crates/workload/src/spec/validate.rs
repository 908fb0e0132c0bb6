//! Validation of a parsed workload: every value checked, each problem reported with the path
//! of its key ([`PathSeg`]) so that [`crate::file`] can point at its line.

use super::check_op::file_name_problem;
use super::flow::Walk;
use super::{Op, RunBy, WorkloadSpec, MAX_PROCESSES, MAX_RAM, MAX_SWAP, MIN_RAM};
use highpte_arch::size::DisplaySize;
use highpte_arch::{MemoryVariant, MAX_CPUS, PAGE_SIZE};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One step of the path to a key in the file: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSeg {
    /// A key of a table.
    Key(String),
    /// An element of an array (0-based).
    Index(usize),
}

/// Renders a path the way the error messages do: `phases[1].ops[0].size`.
pub fn display_path(path: &[PathSeg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            PathSeg::Index(i) => {
                s.push_str(&format!("[{i}]"));
            }
        }
    }
    s
}

/// A value that parsed but is impossible: where it is, what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path of the offending key (or of the table missing it).
    pub path: Vec<PathSeg>,
    /// What is wrong and what was expected.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (hint: {})",
            display_path(&self.path),
            self.message,
            self.hint
        )
    }
}

pub(crate) struct Checker {
    problems: Vec<Problem>,
}

pub(super) fn key(k: &str) -> PathSeg {
    PathSeg::Key(k.to_string())
}

impl Checker {
    pub(crate) fn push(
        &mut self,
        path: Vec<PathSeg>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.problems.push(Problem {
            path,
            message: message.into(),
            hint: hint.into(),
        });
    }
}

pub(crate) fn with(path: &[PathSeg], k: &str) -> Vec<PathSeg> {
    let mut p = path.to_vec();
    p.push(key(k));
    p
}

/// What validation knows about a named region at a point of a phase sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum RegionKind {
    Mmap(u64),
    Shm(Option<u64>),
    /// A file mapping (length known if the op gave one).
    File(Option<u64>),
}

/// What the name-flow walk knows at a point: regions by name, shm keys with their sizes and
/// the names bound by `as`.
#[derive(Clone, Default)]
pub(super) struct Scope {
    pub(super) regions: BTreeMap<String, RegionKind>,
    pub(super) keys: BTreeMap<i32, Option<u64>>,
    /// Names bound by `as` in the exact layer.
    pub(super) names: BTreeSet<String>,
}

/// The path of op `j` of phase `i`.
pub(super) fn op_path(i: usize, j: usize) -> Vec<PathSeg> {
    vec![
        key("phases"),
        PathSeg::Index(i),
        key("ops"),
        PathSeg::Index(j),
    ]
}

pub(super) fn suggest_variant(ram: u64) -> String {
    let can: Vec<String> = MemoryVariant::ALL
        .into_iter()
        .filter(|v| v.max_usable_ram() >= ram)
        .map(|v| format!("\"{}\"", v.name()))
        .collect();
    if can.is_empty() {
        "no configuration addresses that much; use at most ram = \"64G\"".to_string()
    } else {
        format!(
            "config {} can address {}; or lower ram",
            can.join(" or "),
            DisplaySize(ram)
        )
    }
}

impl WorkloadSpec {
    /// Checks every value; returns the problems in file order (roughly), or `Ok` if there are
    /// none. Never panics.
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        let mut c = Checker {
            problems: Vec::new(),
        };
        if self.name.trim().is_empty() {
            c.push(
                vec![key("name")],
                "the workload name is empty",
                "give it a short name, e.g. name = \"mytest\"",
            );
        }
        self.check_machine(&mut c);
        self.check_processes(&mut c);
        self.check_phases(&mut c);
        if c.problems.is_empty() {
            // The whole against the machine, once every value is known to be sound.
            c.problems.extend(crate::limits::check(self));
        }
        if c.problems.is_empty() {
            Ok(())
        } else {
            Err(c.problems)
        }
    }

    fn check_machine(&self, c: &mut Checker) {
        let m = &self.machine;
        let p = vec![key("machine")];
        let unknown = &m.unknown;
        // An unknown config leaves the default in `m.config`: nothing to check RAM against.
        let variant = unknown.config.is_none().then_some(m.config);
        if let Some(name) = &unknown.config {
            c.push(
                with(&p, "config"),
                format!(
                    "unknown memory configuration \"{name}\"; expected one of: nohighmem, 4g, 4g-highpte, 64g, 64g-highpte"
                ),
                "use config = \"64g-highpte\" for a PAE machine with highpte, or \"64g\" to see the problem it solves",
            );
        }
        if m.cpus == 0 || m.cpus > MAX_CPUS {
            c.push(
                with(&p, "cpus"),
                format!(
                    "cpus = {} is out of range; expected 1 (UP) to {MAX_CPUS}",
                    m.cpus
                ),
                "use e.g. cpus = 4",
            );
        }
        let ram = m.ram.0;
        if !(MIN_RAM..=MAX_RAM).contains(&ram) {
            c.push(
                with(&p, "ram"),
                format!(
                    "ram = \"{}\" is out of range; expected 16M to 64G (36-bit physical addresses)",
                    m.ram
                ),
                if ram > MAX_RAM {
                    "no configuration addresses more than 64G; use at most ram = \"64G\" with config = \"64g\" or \"64g-highpte\"".to_string()
                } else {
                    "use at least ram = \"16M\" (the DMA zone alone is 16M)".to_string()
                },
            );
        } else if !ram.is_multiple_of(PAGE_SIZE) {
            c.push(
                with(&p, "ram"),
                format!("ram = {ram} is not a whole number of 4K pages"),
                "round it to a multiple of 4K, or use a suffix such as \"512M\"",
            );
        } else if let Some(v) = variant {
            if ram > v.max_usable_ram() {
                c.push(
                    with(&p, "ram"),
                    format!(
                        "ram = \"{}\" is more than config \"{}\" can address ({} at most)",
                        m.ram,
                        v.name(),
                        DisplaySize(v.max_usable_ram())
                    ),
                    suggest_variant(ram),
                );
            }
        }
        if let Some(s) = &unknown.strategy {
            c.push(
                with(&p, "strategy"),
                format!("unknown strategy \"{s}\"; expected one of: lowmem, atomic, persistent"),
                "remove the key to use the config's default (atomic with -highpte configs, lowmem otherwise)",
            );
        }
        if m.swap.0 > MAX_SWAP {
            c.push(
                with(&p, "swap"),
                format!(
                    "swap = \"{}\" is too big; at most 64G (2^24 slots of 4 KB)",
                    m.swap
                ),
                "use e.g. swap = \"8G\", or 0 for no swap",
            );
        }
        if let Some(s) = &unknown.reclaim {
            c.push(
                with(&p, "reclaim"),
                format!("unknown reclaim design \"{s}\"; expected one of: scan, rmap"),
                "remove the key to use the default (scan)",
            );
        }
        if let Some(s) = &unknown.kernel {
            c.push(
                with(&p, "kernel"),
                format!("unknown kernel profile \"{s}\"; expected one of: 2.5, linux-6.1"),
                "remove the key to use the default (2.5, the seed's kernel), or use kernel = \"linux-6.1\" to follow Debian 12's 686-pae kernel",
            );
        }
        if let Some(s) = &unknown.pt_alloc {
            c.push(
                with(&p, "pt_alloc"),
                format!(
                    "unknown page-table allocator \"{s}\"; expected one of: pool, quicklist, buddy"
                ),
                "remove the key to use the default (pool)",
            );
        }
    }

    fn check_processes(&self, c: &mut Checker) {
        let p = vec![key("processes")];
        let n = self.processes.count;
        if n == 0 {
            c.push(
                with(&p, "count"),
                "count = 0; expected at least 1 process",
                "use count = 1 or more",
            );
        } else if n > MAX_PROCESSES {
            c.push(
                with(&p, "count"),
                format!("count = {n} is more than the {MAX_PROCESSES} pids Linux 2.5 has"),
                format!("use count = {MAX_PROCESSES} or fewer"),
            );
        }
        if let Some(r) = self.processes.ramp {
            let rp = with(&p, "ramp");
            if r.start == 0 {
                c.push(
                    with(&rp, "start"),
                    "start = 0; expected at least 1 process in the first step",
                    "use e.g. ramp = { start = 100, step = 100 }",
                );
            } else if r.start > n {
                c.push(
                    with(&rp, "start"),
                    format!("start = {} is more than processes.count = {n}", r.start),
                    "make start at most count (count is the ramp's target)",
                );
            }
            if r.step == 0 {
                c.push(
                    with(&rp, "step"),
                    "step = 0; expected at least 1 process per step",
                    "use e.g. step = 100",
                );
            }
        }
    }

    fn check_phases(&self, c: &mut Checker) {
        if self.phases.is_empty() {
            c.push(
                vec![key("phases")],
                "the workload has no phases; expected at least one [[phases]] table",
                "add a [[phases]] table with a name and ops, see workloads/README.md",
            );
            return;
        }
        let index = self.check_phase_tables(c);
        // Static checks of every op, then the name-flow checks along the top-level sequence.
        self.check_ops(&index, c);
        self.check_files(c);
        self.check_name_flow(&index, c);
    }

    /// Each phase's name, repeat and ops; returns the phases by name.
    fn check_phase_tables(&self, c: &mut Checker) -> BTreeMap<&str, usize> {
        let mut index: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, ph) in self.phases.iter().enumerate() {
            let p = vec![key("phases"), PathSeg::Index(i)];
            if ph.name.trim().is_empty() {
                c.push(
                    with(&p, "name"),
                    "the phase name is empty",
                    "name every phase, e.g. name = \"setup\"",
                );
            } else if index.insert(ph.name.as_str(), i).is_some() {
                c.push(
                    with(&p, "name"),
                    format!("a phase named \"{}\" already exists", ph.name),
                    "give every phase its own name",
                );
            }
            if ph.repeat == 0 {
                c.push(
                    with(&p, "repeat"),
                    "repeat = 0; expected at least 1",
                    "use repeat = 1 (the default) or remove the phase",
                );
            }
            if ph.ops.is_empty() {
                c.push(
                    with(&p, "ops"),
                    "the phase has no ops; expected at least one",
                    "add ops, e.g. ops = [ { op = \"pause\" } ]",
                );
            }
        }
        if self.phases.iter().all(|p| p.run_by == RunBy::Children) {
            c.push(
                vec![key("phases"), PathSeg::Index(0), key("run_by")],
                "every phase is run_by = \"children\", so no process runs anything",
                "make at least one phase run_by = \"first\", \"all\" or \"each_new\"",
            );
        }
        index
    }

    /// Every op's own values, and the phase each fork names.
    fn check_ops(&self, index: &BTreeMap<&str, usize>, c: &mut Checker) {
        for (i, ph) in self.phases.iter().enumerate() {
            for (j, op) in ph.ops.iter().enumerate() {
                let p = op_path(i, j);
                super::check_op::check_op_values(op, &p, c);
                if let Some(x) = ph.expect_of(j) {
                    crate::exact::check::convenient_expect(op, x, &p, c);
                }
                if let Some(child_phase) = op.child_phase() {
                    self.check_child_phase(child_phase, index, &p, c);
                }
            }
        }
    }

    /// A fork's `child_phase` must name a phase that only children run.
    fn check_child_phase(
        &self,
        child_phase: &str,
        index: &BTreeMap<&str, usize>,
        p: &[PathSeg],
        c: &mut Checker,
    ) {
        match index.get(child_phase) {
            None => c.push(
                with(p, "child_phase"),
                format!("fork names child_phase \"{child_phase}\", but no phase has that name"),
                format!(
                    "use one of the phase names ({}) or add a [[phases]] table named \"{child_phase}\" with run_by = \"children\"",
                    self.phases.iter().map(|p| format!("\"{}\"", p.name)).collect::<Vec<_>>().join(", ")
                ),
            ),
            Some(&k) if self.phases[k].run_by != RunBy::Children => c.push(
                with(p, "child_phase"),
                format!(
                    "child_phase \"{child_phase}\" is run_by = \"{}\"; a child phase must be run_by = \"children\"",
                    run_by_name(self.phases[k].run_by)
                ),
                format!("set run_by = \"children\" in phase \"{child_phase}\" so that top-level processes do not run it too"),
            ),
            _ => {}
        }
    }

    /// Names and keys along the phases as the processes run them. Process 0 runs every
    /// top-level phase; the other processes all but the `first` ones. Region names belong to
    /// each process; shm keys are global (phases are barriers, so process 0's segments exist
    /// when the others get there).
    fn check_name_flow(&self, index: &BTreeMap<&str, usize>, c: &mut Checker) {
        let mut scope = Scope::default();
        let mut walk = Walk {
            stack: Vec::new(),
            index,
        };
        for (i, ph) in self.phases.iter().enumerate() {
            if ph.run_by != RunBy::Children {
                self.flow_phase(i, &mut scope, &mut walk, c);
            }
        }
        if self.processes.count > 1 {
            self.check_other_processes(&scope, &mut walk, c);
        }
        // Child phases no fork names: check them with what the top-level sequence defined.
        let forked: BTreeSet<&str> = self.all_ops().filter_map(Op::child_phase).collect();
        for (i, ph) in self.phases.iter().enumerate() {
            if ph.run_by == RunBy::Children && !forked.contains(ph.name.as_str()) {
                let mut s = scope.clone();
                self.flow_phase(i, &mut s, &mut walk, c);
            }
        }
    }

    /// The walk of the processes other than process 0, which share its shm keys (in `first`,
    /// the scope after process 0's walk) but not its regions.
    fn check_other_processes(&self, first: &Scope, walk: &mut Walk<'_>, c: &mut Checker) {
        let mut others = Scope {
            regions: BTreeMap::new(),
            keys: first.keys.clone(),
            names: BTreeSet::new(),
        };
        let before = c.problems.len();
        for (i, ph) in self.phases.iter().enumerate() {
            if matches!(ph.run_by, RunBy::All | RunBy::EachNew) {
                self.flow_phase(i, &mut others, walk, c);
            }
        }
        // Keep only what process 0's walk did not already report.
        let (first, rest) = c.problems.split_at(before);
        let new: Vec<Problem> = rest
            .iter()
            .filter(|p| !first.contains(p))
            .map(|p| Problem {
                message: format!(
                    "{} (in processes other than process 0, which do not run the run_by = \"first\" phases)",
                    p.message
                ),
                ..p.clone()
            })
            .collect();
        c.problems.truncate(before);
        c.problems.extend(new);
    }

    /// Every op of every phase, in file order.
    fn all_ops(&self) -> impl Iterator<Item = &Op> {
        self.phases.iter().flat_map(|p| p.ops.iter())
    }

    /// Files are one namespace shared by every process: a file read, mapped, synced or
    /// unlinked must be written by some `file_write` of the workload.
    fn check_files(&self, c: &mut Checker) {
        let written: BTreeSet<&str> = self
            .all_ops()
            .filter_map(|op| match op {
                Op::FileWrite { file, .. } => Some(file.as_str()),
                _ => None,
            })
            .collect();
        for (i, ph) in self.phases.iter().enumerate() {
            for (j, op) in ph.ops.iter().enumerate() {
                let file = match op {
                    Op::FileRead { file, .. }
                    | Op::MmapFile { file, .. }
                    | Op::Fsync { file }
                    | Op::Unlink { file } => file,
                    _ => continue,
                };
                if file_name_problem(file).is_some() || written.contains(file.as_str()) {
                    continue;
                }
                let p = vec![
                    key("phases"),
                    PathSeg::Index(i),
                    key("ops"),
                    PathSeg::Index(j),
                    key("file"),
                ];
                c.push(
                    p,
                    format!("file \"{file}\" is never written: no file_write op of the workload names it"),
                    if written.is_empty() {
                        format!("create it first with {{ op = \"file_write\", file = \"{file}\", size = ... }}")
                    } else {
                        format!(
                            "files the workload writes: {}; or add {{ op = \"file_write\", file = \"{file}\", size = ... }}",
                            written.iter().map(|f| format!("\"{f}\"")).collect::<Vec<_>>().join(", ")
                        )
                    },
                );
            }
        }
    }
}

fn run_by_name(r: RunBy) -> &'static str {
    match r {
        RunBy::First => "first",
        RunBy::All => "all",
        RunBy::EachNew => "each_new",
        RunBy::Children => "children",
    }
}
