//! `--timeline`, `--ftrace` and `--timeline-plot`: a run as a per-CPU timeline (Chrome
//! trace-event JSON for ui.perfetto.dev), as an ftrace-style text log, and as a swimlane
//! picture. The machine reports events through its timeline hook as they happen
//! ([`highpte_machine::timeline`]); the writers here stream them to their files.

mod chrome;
mod ftrace;
pub mod model;
mod svg;

use clap::Args;
use highpte_kernel::TaskId;
use highpte_machine::{TimelineEvent, TimelineHook, TimelineSink};
use model::Model;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The timeline options of `run`, `stress`, `replay` and `explain-deadlock`.
#[derive(Args, Clone, Debug, Default)]
pub struct TimelineArgs {
    /// Write the run's timeline as Chrome trace-event JSON: open it in ui.perfetto.dev
    /// (docs/timeline.md).
    #[arg(long, value_name = "FILE")]
    pub timeline: Option<PathBuf>,
    /// Write the same events as an ftrace-style text log (`task-pid [cpu] seconds: event:
    /// fields`).
    #[arg(long, value_name = "FILE")]
    pub ftrace: Option<PathBuf>,
    /// Draw the timeline's window as an SVG swimlane picture (CPUs, kmap slots, pkmap
    /// entries and waiting tasks as lanes).
    #[arg(long, value_name = "FILE")]
    pub timeline_plot: Option<PathBuf>,
    /// Only this part of the run: START..END in simulated cycles, or sN..sM in scheduler
    /// steps; either end may be left out (1000000.., ..s500).
    #[arg(long, value_name = "START..END", value_parser = parse_window)]
    pub timeline_window: Option<Window>,
    /// Only these kinds of events, comma-separated: sched, syscall, fault, kmap, pkmap,
    /// wait, ipi, memory (default: all).
    #[arg(long, value_name = "KINDS", value_parser = parse_kinds)]
    pub timeline_events: Option<Kinds>,
    /// Stop writing a timeline or ftrace file when it reaches this size (K, M, G suffixes).
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_cap)]
    pub timeline_max_size: u64,
}

/// A kind of timeline event (`--timeline-events`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// Run slices on the CPUs and preemptions.
    Sched,
    /// System calls.
    Syscall,
    /// Page faults.
    Fault,
    /// kmap_atomic slots.
    Kmap,
    /// Persistent kmap entries (and the free-entries counter).
    Pkmap,
    /// Spinlock and sleeping waits, wake-ups.
    Wait,
    /// TLB-flush IPIs.
    Ipi,
    /// Memory counters.
    Memory,
}

impl Kind {
    const ALL: [Kind; 8] = [
        Kind::Sched,
        Kind::Syscall,
        Kind::Fault,
        Kind::Kmap,
        Kind::Pkmap,
        Kind::Wait,
        Kind::Ipi,
        Kind::Memory,
    ];

    /// The kind's name (also the trace events' category).
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Sched => "sched",
            Kind::Syscall => "syscall",
            Kind::Fault => "fault",
            Kind::Kmap => "kmap",
            Kind::Pkmap => "pkmap",
            Kind::Wait => "wait",
            Kind::Ipi => "ipi",
            Kind::Memory => "memory",
        }
    }
}

/// A set of [`Kind`]s.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Kinds(u16);

impl Kinds {
    /// Every kind.
    pub const ALL: Kinds = Kinds(0xff);

    /// True if `k` is in the set.
    pub fn has(self, k: Kind) -> bool {
        self.0 & (1 << k as u16) != 0
    }
}

fn parse_kinds(s: &str) -> Result<Kinds, String> {
    let mut set = 0u16;
    for w in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let Some(k) = Kind::ALL.iter().find(|k| k.name() == w) else {
            return Err(format!("unknown timeline event kind '{w}': expected a comma-separated list of sched, syscall, fault, kmap, pkmap, wait, ipi, memory"));
        };
        set |= 1 << *k as u16;
    }
    if set == 0 {
        return Err("no timeline event kind given: expected a comma-separated list of sched, syscall, fault, kmap, pkmap, wait, ipi, memory".into());
    }
    Ok(Kinds(set))
}

/// One end of a window.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Point {
    /// A CPU clock, in cycles.
    Cycles(u64),
    /// A scheduler step (the N-th time the scheduler resumed a task).
    Step(u64),
}

/// The part of the run a timeline shows: from `start` (inclusive) to `end` (exclusive).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Window {
    /// Where it starts.
    pub start: Point,
    /// Where it ends (`None`: the end of the run).
    pub end: Option<Point>,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            start: Point::Cycles(0),
            end: None,
        }
    }
}

fn parse_window(s: &str) -> Result<Window, String> {
    let bad = || {
        format!("timeline window '{s}': expected START..END in cycles (1000000..2000000) or scheduler steps (s100..s200); either end may be left out")
    };
    let (a, b) = s.split_once("..").ok_or_else(bad)?;
    let point = |p: &str| -> Result<Option<Point>, String> {
        let p = p.trim().replace('_', "");
        if p.is_empty() {
            return Ok(None);
        }
        match p.strip_prefix('s') {
            Some(n) => n.parse().map(|n| Some(Point::Step(n))).map_err(|_| bad()),
            None => p.parse().map(|n| Some(Point::Cycles(n))).map_err(|_| bad()),
        }
    };
    let start = point(a)?.unwrap_or(Point::Cycles(0));
    let end = point(b)?;
    if let (Point::Cycles(x), Some(Point::Cycles(y))) | (Point::Step(x), Some(Point::Step(y))) =
        (start, end)
    {
        if y <= x {
            return Err(format!(
                "timeline window '{s}' is empty: END must be after START"
            ));
        }
    }
    Ok(Window { start, end })
}

fn parse_cap(s: &str) -> Result<u64, String> {
    let v = highpte_arch::size::parse_size(s)
        .map_err(|e| crate::args::size_error("timeline size cap", s, e))?;
    if v < 4096 {
        return Err(format!(
            "timeline size cap of {v} bytes is too small: give at least 4K"
        ));
    }
    Ok(v)
}

type Json = chrome::Chrome<BufWriter<File>>;
type Text = ftrace::Ftrace<BufWriter<File>>;

/// What the hook feeds: the writers of one command.
struct Recorder {
    args: TimelineArgs,
    chrome: Option<Model<Json>>,
    ftrace: Option<Text>,
    plot: Option<Model<svg::Lanes>>,
    /// The group the next machine's tracks go in (explain-deadlock's two runs).
    group: String,
    machines: u32,
    last: u64,
}

impl Recorder {
    fn kinds(&self) -> Kinds {
        self.args.timeline_events.unwrap_or(Kinds::ALL)
    }
    fn window(&self) -> Window {
        self.args.timeline_window.unwrap_or_default()
    }
}

impl TimelineSink for Recorder {
    fn record(&mut self, ev: &TimelineEvent) {
        self.last = self.last.max(ev.at);
        if let Some(m) = &mut self.chrome {
            m.record(ev);
        }
        if let Some(f) = &mut self.ftrace {
            f.record(ev);
        }
        if let Some(p) = &mut self.plot {
            p.record(ev);
        }
    }

    fn task_name(&mut self, task: TaskId, name: &str) {
        if let Some(m) = &mut self.chrome {
            m.set_name(task, name);
        }
        if let Some(f) = &mut self.ftrace {
            f.set_name(task, name);
        }
        if let Some(p) = &mut self.plot {
            p.set_name(task, name);
        }
    }

    fn machine(&mut self, _cpus: u32, clock_hz: u64) {
        self.machines += 1;
        let (kinds, window) = (self.kinds(), self.window());
        let last = self.last;
        if let Some(mut m) = self.chrome.take() {
            m.finish(last);
            let mut out = m.out;
            out.next_group(&self.group);
            out.set_clock(clock_hz);
            self.chrome = Some(Model::new(out, kinds, window));
        }
        if let Some(p) = &mut self.plot {
            if self.machines == 1 {
                p.out.set_clock(clock_hz);
            } else {
                p.finish(last); // the picture shows the first run
            }
        }
        if let Some(f) = &mut self.ftrace {
            f.next_machine(&self.group, clock_hz);
        }
        self.last = 0;
    }
}

/// The timeline writers of one command, between the start of its runs and their end.
pub struct Session {
    rec: Arc<Mutex<Recorder>>,
}

/// What a session wrote.
#[derive(Debug, Default)]
pub struct Written {
    /// Messages for the user (files written, caps reached).
    pub notes: Vec<String>,
}

fn create(path: &Path, what: &str) -> anyhow::Result<BufWriter<File>> {
    File::create(path).map(BufWriter::new).map_err(|e| {
        crate::workload_args::InputError(format!(
            "{what} {}: cannot write there ({e}); check that the directory exists and is writable",
            path.display()
        ))
        .into()
    })
}

impl Session {
    /// Open the files `args` names (none: no session, and runs cost nothing extra).
    pub fn start(args: &TimelineArgs) -> anyhow::Result<Option<Session>> {
        if args.timeline.is_none() && args.ftrace.is_none() && args.timeline_plot.is_none() {
            return Ok(None);
        }
        let kinds = args.timeline_events.unwrap_or(Kinds::ALL);
        let window = args.timeline_window.unwrap_or_default();
        let cap = args.timeline_max_size;
        let chrome = match &args.timeline {
            Some(p) => {
                let out = chrome::Chrome::new(create(p, "--timeline")?, cap, 2_000_000_000);
                Some(Model::new(out, kinds, window))
            }
            None => None,
        };
        let ftrace = match &args.ftrace {
            Some(p) => Some(ftrace::Ftrace::new(
                create(p, "--ftrace")?,
                kinds,
                window,
                2_000_000_000,
                cap,
            )),
            None => None,
        };
        let plot = match &args.timeline_plot {
            Some(p) => {
                svg::check_path(p)?;
                Some(Model::new(
                    svg::Lanes::new(2_000_000_000, cap),
                    kinds,
                    window,
                ))
            }
            None => None,
        };
        let rec = Recorder {
            args: args.clone(),
            chrome,
            ftrace,
            plot,
            group: String::new(),
            machines: 0,
            last: 0,
        };
        Ok(Some(Session {
            rec: Arc::new(Mutex::new(rec)),
        }))
    }

    /// The hook to put in the machine options of the run(s) to record.
    pub fn hook(&self) -> TimelineHook {
        TimelineHook(self.rec.clone())
    }

    /// Put the next machine's tracks under `group` (several runs in one file).
    pub fn group(&self, group: &str) {
        if let Ok(mut r) = self.rec.lock() {
            r.group = group.to_string();
        }
    }

    /// Close every file; say what was written and where a cap cut it.
    pub fn finish(self) -> anyhow::Result<Written> {
        let rec = Arc::try_unwrap(self.rec)
            .map_err(|_| anyhow::anyhow!("timeline: a machine still holds the recorder"))?
            .into_inner()
            .map_err(|_| anyhow::anyhow!("timeline: the recorder failed during the run"))?;
        let mut w = Written::default();
        let cap = rec.args.timeline_max_size;
        let capped = |what: &str, p: &Path, at: u64| {
            format!(
                "{what} {}: reached the size cap of {} at cycle {at}; the rest of the run is not in it (narrow it with --timeline-window or --timeline-events, or raise --timeline-max-size)",
                p.display(),
                highpte_arch::size::DisplaySize(cap)
            )
        };
        if let (Some(mut m), Some(p)) = (rec.chrome, &rec.args.timeline) {
            m.finish(rec.last);
            if let Some(at) = m.capped_at {
                w.notes.push(capped("--timeline", p, at));
            }
            m.out
                .finish()
                .map_err(|e| anyhow::anyhow!("--timeline {}: {e}", p.display()))?;
        }
        if let (Some(f), Some(p)) = (rec.ftrace, &rec.args.ftrace) {
            if let Some(at) = f.capped_at {
                w.notes.push(capped("--ftrace", p, at));
            }
            f.finish()
                .map_err(|e| anyhow::anyhow!("--ftrace {}: {e}", p.display()))?;
        }
        if let (Some(mut m), Some(p)) = (rec.plot, &rec.args.timeline_plot) {
            m.finish(rec.last);
            if let Some(note) = m.out.draw(p)? {
                w.notes.push(note);
            }
        }
        Ok(w)
    }
}

/// Close a session's files (if any) and tell the user what a size cap cut, on stderr.
pub fn finish(session: Option<Session>) -> anyhow::Result<()> {
    if let Some(s) = session {
        for note in s.finish()?.notes {
            eprintln!("highpte: {note}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_in_cycles_and_steps() {
        let w = parse_window("1_000..2000").unwrap();
        assert_eq!(w.start, Point::Cycles(1000));
        assert_eq!(w.end, Some(Point::Cycles(2000)));
        let w = parse_window("s5..").unwrap();
        assert_eq!((w.start, w.end), (Point::Step(5), None));
        assert_eq!(parse_window("..s9").unwrap().start, Point::Cycles(0));
        assert!(parse_window("9..9").unwrap_err().contains("empty"));
        assert!(parse_window("1-2").is_err());
        assert!(parse_window("x..").is_err());
    }

    #[test]
    fn kinds_parse_as_a_set() {
        let k = parse_kinds("fault, kmap").unwrap();
        assert!(k.has(Kind::Fault) && k.has(Kind::Kmap) && !k.has(Kind::Sched));
        assert!(Kind::ALL.iter().all(|k| Kinds::ALL.has(*k)));
        assert!(parse_kinds("").is_err());
        assert!(parse_kinds("sched,bogus").unwrap_err().contains("'bogus'"));
    }
}
