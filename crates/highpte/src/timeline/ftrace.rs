//! The timeline as an ftrace-style text log: one line per event,
//! `task-pid [cpu] seconds: event: fields`, for grep and for people who read traces as text.
//! Lines come in the order the simulation produced them; the CPUs' clocks interleave within
//! a scheduling quantum, as per-CPU trace buffers merged by hand would.

use super::{Kind, Kinds, Point, Window};
use highpte_kernel::{Errno, TaskId, TracePoint};
use highpte_machine::timeline::{RunEnd, TimelineEvent, What};
use std::io::{self, Write};

/// An ftrace-style log being written.
pub struct Ftrace<W: Write> {
    w: W,
    kinds: Kinds,
    window: Window,
    active: Option<bool>,
    start_at: Option<u64>,
    end_at: Option<u64>,
    per_s: f64,
    names: Vec<String>,
    bytes: u64,
    cap: u64,
    error: Option<io::Error>,
    /// Where the size cap stopped the log, if it did.
    pub capped_at: Option<u64>,
}

impl<W: Write> Ftrace<W> {
    /// A log on `w` of what `kinds` selects inside `window`, timestamps at `clock_hz`,
    /// stopping after about `cap` bytes.
    pub fn new(w: W, kinds: Kinds, window: Window, clock_hz: u64, cap: u64) -> Self {
        let start_at = match window.start {
            Point::Cycles(c) => Some(c),
            Point::Step(_) => None,
        };
        let end_at = match window.end {
            Some(Point::Cycles(c)) => Some(c),
            _ => None,
        };
        Self {
            w,
            kinds,
            window,
            active: None,
            start_at,
            end_at,
            per_s: clock_hz as f64,
            names: Vec::new(),
            bytes: 0,
            cap,
            error: None,
            capped_at: None,
        }
    }

    /// The name of task `t`.
    pub fn set_name(&mut self, t: TaskId, name: &str) {
        let i = t.0 as usize;
        if self.names.len() <= i {
            self.names.resize(i + 1, String::new());
        }
        self.names[i] = format!("{name}-{}", t.0);
    }

    /// A new machine starts (its tasks are numbered from 0 again): a comment line naming
    /// `group`, fresh names and window.
    pub fn next_machine(&mut self, group: &str, clock_hz: u64) {
        self.per_s = clock_hz as f64;
        self.names.clear();
        self.active = None;
        self.start_at = match self.window.start {
            Point::Cycles(c) => Some(c),
            Point::Step(_) => None,
        };
        self.end_at = match self.window.end {
            Some(Point::Cycles(c)) => Some(c),
            _ => None,
        };
        if !group.is_empty() && self.error.is_none() {
            let line = format!("# {group}\n");
            self.bytes += line.len() as u64;
            if let Err(e) = self.w.write_all(line.as_bytes()) {
                self.error = Some(e);
            }
        }
    }

    /// Flush; the first write error, if any.
    pub fn finish(mut self) -> io::Result<W> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.w.flush()?;
        Ok(self.w)
    }

    /// Whether `ev` is inside the window (resolving step bounds as steps go by).
    fn inside(&mut self, ev: &TimelineEvent) -> bool {
        if let What::Step { step } = ev.what {
            if self.start_at.is_none() && matches!(self.window.start, Point::Step(s) if step >= s) {
                self.start_at = Some(ev.at);
            }
            if self.end_at.is_none() && matches!(self.window.end, Some(Point::Step(s)) if step >= s)
            {
                self.end_at = Some(ev.at);
            }
        }
        if self.active == Some(false) {
            return false;
        }
        if self.end_at.is_some_and(|e| ev.at >= e) {
            self.active = Some(false);
            return false;
        }
        self.start_at.is_some_and(|s| ev.at >= s)
    }

    /// Write the line of one event, if its kind is selected and it is inside the window.
    pub fn record(&mut self, ev: &TimelineEvent) {
        if !self.inside(ev) || self.error.is_some() {
            return;
        }
        let Some((kind, event, fields)) = describe(ev) else {
            return;
        };
        if !self.kinds.has(kind) {
            return;
        }
        if self.bytes >= self.cap {
            if self.capped_at.is_none() {
                self.capped_at = Some(ev.at);
            }
            return;
        }
        let name = self
            .names
            .get(ev.task.0 as usize)
            .filter(|n| !n.is_empty())
            .cloned()
            .unwrap_or_else(|| format!("task-{}", ev.task.0));
        let secs = ev.at as f64 / self.per_s;
        let line = format!("{name:>16} [{:03}] {secs:.6}: {event}: {fields}\n", ev.cpu);
        self.bytes += line.len() as u64;
        if let Err(e) = self.w.write_all(line.as_bytes()) {
            self.error = Some(e);
        }
    }
}

/// An errno as `-12 (ENOMEM)`.
fn errno_text(e: u16) -> String {
    format!("-{e} ({})", Errno(i32::from(e)).name())
}

/// The kind, event name and fields of one event (`None`: no line).
fn describe(ev: &TimelineEvent) -> Option<(Kind, &'static str, String)> {
    let t = |t: TaskId| t.0;
    Some(match ev.what {
        What::Spawn => (Kind::Sched, "task_newtask", format!("pid={}", t(ev.task))),
        What::Step { .. } => return None,
        What::RunStart => (
            Kind::Sched,
            "sched_switch",
            format!("next_pid={}", t(ev.task)),
        ),
        What::RunEnd { why } => {
            let why = match why {
                RunEnd::KernelPreempt => "preempt (kernel)",
                RunEnd::UserPreempt => "preempt (user)",
                RunEnd::Schedule => "schedule",
                RunEnd::Sleep => "sleep",
                RunEnd::Exit => "exit",
            };
            (Kind::Sched, "sched_out", format!("reason={why}"))
        }
        What::SpinBegin { lock, holder } => {
            let h = holder.map_or(String::new(), |h| format!(" holder_pid={}", h.0));
            (Kind::Wait, "lock_contended", format!("lock={lock}{h}"))
        }
        What::SpinEnd => (Kind::Wait, "lock_acquired", String::from("after spinning")),
        What::Sleep { what } => (Kind::Wait, "sched_sleep", format!("on={what}")),
        What::Wake { waker } => (
            Kind::Wait,
            "sched_wakeup",
            format!("by_pid={} target_cpu={:03}", waker.0, ev.cpu),
        ),
        What::KernelExit => (Kind::Syscall, "kernel_exit", String::new()),
        What::SyscallResult { errno } => (
            Kind::Syscall,
            "sys_exit",
            format!("ret={}", errno.map_or("0".to_string(), errno_text)),
        ),
        What::Kernel(p) => return Some(kernel(p)),
        What::TlbIpi { to, cycles, .. } => (
            Kind::Ipi,
            "tlb_flush_ipi",
            format!("to_cpu={to:03} handler_cycles={cycles}"),
        ),
        What::Exit { code } => (Kind::Sched, "sched_process_exit", format!("code={code}")),
        What::Memory(m) => (
            Kind::Memory,
            "meminfo",
            format!(
                "LowFree={}kB HighFree={}kB PageTables_low={}kB PageTables_high={}kB",
                m.low_free, m.high_free, m.page_tables_low, m.page_tables_high
            ),
        ),
    })
}

fn kernel(p: TracePoint) -> (Kind, &'static str, String) {
    match p {
        TracePoint::SyscallEnter { name } => (Kind::Syscall, "sys_enter", format!("name={name}")),
        TracePoint::FaultEnter { addr, write } => (
            Kind::Fault,
            "page_fault_user",
            format!(
                "address={:#010x} access={}",
                addr.as_u32(),
                if write { "write" } else { "read" }
            ),
        ),
        TracePoint::FaultExit { signal } => (
            Kind::Fault,
            "page_fault_exit",
            format!("result={}", signal.map_or("handled", |s| s.name())),
        ),
        TracePoint::KmapAtomic { ty, pfn } => (
            Kind::Kmap,
            "kmap_atomic",
            format!("slot={} pfn={:#x}", ty.name(), pfn.0),
        ),
        TracePoint::KunmapAtomic { ty } => {
            (Kind::Kmap, "kunmap_atomic", format!("slot={}", ty.name()))
        }
        TracePoint::Kmap { nr, pfn, pool } => (
            Kind::Pkmap,
            "kmap",
            format!("entry={nr} pfn={:#x} pool={pool}", pfn.0),
        ),
        TracePoint::Kunmap { nr, pfn } => (
            Kind::Pkmap,
            "kunmap",
            format!("entry={nr} pfn={:#x}", pfn.0),
        ),
    }
}
