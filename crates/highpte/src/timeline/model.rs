//! The machine's timeline events as slices on tracks, the shape Perfetto and the swimlane
//! picture draw: a track per CPU (the running task, and inside it the system call, fault or
//! spin it is in), a track per task (its system calls, faults and waits from entry to exit,
//! across sleeps and migrations), a track per kmap_atomic slot and per pkmap entry, and
//! counters.
//!
//! Every begin is matched by an end on the same track, innermost first: what the machine
//! leaves open (a deadlock, a window's edge, the size cap) is closed where the timeline stops.
//! The CPUs' clocks interleave within a scheduling quantum, so a track shared by CPUs (a task
//! that migrates, a pkmap entry, a counter) can receive an event stamped a little before its
//! last one: such a stamp is moved forward to the last one, so every track's time only grows.

use super::{Kind, Kinds, Window};
use highpte_arch::KmType;
use highpte_kernel::{TaskId, TracePoint};
use highpte_machine::timeline::{RunEnd, TimelineEvent, What};
use std::collections::BTreeMap;

/// A track of the timeline.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Track {
    /// A simulated CPU.
    Cpu(u32),
    /// A task.
    Task(TaskId),
    /// A CPU's kmap_atomic slot.
    Slot(u32, KmType),
    /// A persistent-kmap entry.
    Pkmap(u32),
}

/// An argument value of a slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Val {
    /// A number.
    U(u64),
    /// An address or page frame number, shown in hex.
    Hex(u64),
    /// A name.
    S(&'static str),
}

/// Up to three named arguments of a slice.
pub type Args = [Option<(&'static str, Val)>; 3];

/// No arguments.
pub const NO_ARGS: Args = [None, None, None];

/// Where the slices go: a trace-event JSON file, or the picture's memory.
pub trait Out {
    /// A track is used for the first time.
    fn track(&mut self, track: Track, name: &str);
    /// A slice begins.
    fn begin(&mut self, track: Track, ts: u64, name: &str, kind: Kind, args: &Args);
    /// The innermost open slice of `track` ends.
    fn end(&mut self, track: Track, ts: u64, args: &Args);
    /// A moment (a preemption, a wake-up).
    fn instant(&mut self, track: Track, ts: u64, name: &'static str, kind: Kind, args: &Args);
    /// A slice whose length is known when it is written (a TLB-flush IPI handler, a
    /// kmap_atomic slot's use: one event instead of two).
    fn complete(&mut self, track: Track, ts: u64, dur: u64, name: &str, kind: Kind, args: &Args);
    /// An arrow from one moment to another.
    fn flow(&mut self, id: u64, from: (Track, u64), to: (Track, u64));
    /// A counter's value from `ts` on.
    fn counter(&mut self, name: &'static str, ts: u64, value: u64);
    /// True when the output reached its size cap: the model closes everything and stops.
    fn full(&self) -> bool {
        false
    }
}

/// A slice a task is in: a system call, a fault, a wait.
#[derive(Clone, Debug)]
struct Open {
    kind: Kind,
    name: String,
    args: Args,
    /// Also drawn on the CPU track while the task runs (not a sleep).
    on_cpu: bool,
}

#[derive(Clone, Debug, Default)]
struct TaskState {
    label: String,
    stack: Vec<Open>,
    cpu: Option<u32>,
    errno: Option<u16>,
}

#[derive(Clone, Copy, Debug, Default)]
struct TrackState {
    last: u64,
    depth: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Before,
    Active,
    Done,
}

/// The state machine from machine events to slices.
pub struct Model<O: Out> {
    /// The output.
    pub out: O,
    kinds: Kinds,
    window: Window,
    start_at: Option<u64>,
    end_at: Option<u64>,
    phase: Phase,
    tracks: BTreeMap<Track, TrackState>,
    tasks: Vec<TaskState>,
    running: BTreeMap<u32, TaskId>,
    /// kmap_atomic slots in use: the task, the page and since when.
    slots: BTreeMap<(u32, KmType), (TaskId, u64, u64)>,
    pkmap: Vec<(u32, u64)>,
    pkmap_pool: u32,
    counters: BTreeMap<&'static str, (u64, u64)>,
    flows: u64,
    last: u64,
    /// Where the output's size cap stopped the timeline, if it did.
    pub capped_at: Option<u64>,
}

/// The slice name of a page mapped in a slot or entry.
fn pfn_name(pfn: u64) -> String {
    format!("pfn {pfn:#x}")
}

impl<O: Out> Model<O> {
    /// A model writing to `out` what `kinds` selects inside `window`.
    pub fn new(out: O, kinds: Kinds, window: Window) -> Self {
        let start_at = match window.start {
            super::Point::Cycles(c) => Some(c),
            super::Point::Step(_) => None,
        };
        let end_at = match window.end {
            Some(super::Point::Cycles(c)) => Some(c),
            _ => None,
        };
        Self {
            out,
            kinds,
            window,
            start_at,
            end_at,
            phase: Phase::Before,
            tracks: BTreeMap::new(),
            tasks: Vec::new(),
            running: BTreeMap::new(),
            slots: BTreeMap::new(),
            pkmap: Vec::new(),
            pkmap_pool: 0,
            counters: BTreeMap::new(),
            flows: 0,
            last: 0,
            capped_at: None,
        }
    }

    fn task(&mut self, t: TaskId) -> &mut TaskState {
        let i = t.0 as usize;
        if self.tasks.len() <= i {
            self.tasks.resize_with(i + 1, TaskState::default);
        }
        let s = &mut self.tasks[i];
        if s.label.is_empty() {
            s.label = format!("task-{}", t.0);
        }
        s
    }

    /// The name of task `t` (`name-pid`, as ftrace writes it).
    pub fn set_name(&mut self, t: TaskId, name: &str) {
        self.task(t).label = format!("{name}-{}", t.0);
    }

    fn on(&self, kind: Kind) -> bool {
        self.phase == Phase::Active && self.kinds.has(kind)
    }

    /// The clamped stamp for `track` (declaring the track on first use).
    fn stamp(&mut self, track: Track, ts: u64) -> u64 {
        if !self.tracks.contains_key(&track) {
            let name = match track {
                Track::Cpu(c) => format!("CPU {c}"),
                Track::Task(t) => self.task(t).label.clone(),
                Track::Slot(c, ty) => format!("CPU {c} {}", ty.name()),
                Track::Pkmap(nr) => format!("pkmap entry {nr}"),
            };
            self.out.track(track, &name);
            self.tracks.insert(track, TrackState::default());
        }
        let st = self.tracks.entry(track).or_default();
        st.last = st.last.max(ts);
        self.last = self.last.max(st.last);
        st.last
    }

    fn begin(&mut self, track: Track, ts: u64, name: &str, kind: Kind, args: &Args) {
        if !self.on(kind) {
            return;
        }
        let ts = self.stamp(track, ts);
        self.tracks.entry(track).or_default().depth += 1;
        self.out.begin(track, ts, name, kind, args);
    }

    fn end(&mut self, track: Track, ts: u64, kind: Kind, args: &Args) {
        if !self.on(kind) || self.tracks.get(&track).is_none_or(|s| s.depth == 0) {
            return;
        }
        let ts = self.stamp(track, ts);
        self.tracks.entry(track).or_default().depth -= 1;
        self.out.end(track, ts, args);
    }

    /// End every slice open on `track`.
    fn close_track(&mut self, track: Track, ts: u64) {
        let depth = self.tracks.get(&track).map_or(0, |s| s.depth);
        for _ in 0..depth {
            let ts = self.stamp(track, ts);
            self.out.end(track, ts, &NO_ARGS);
        }
        if let Some(s) = self.tracks.get_mut(&track) {
            s.depth = 0;
        }
    }

    /// End every open slice, everywhere (the timeline stops at `ts`).
    fn close_all(&mut self, ts: u64) {
        let slots: Vec<(u32, KmType)> = self.slots.keys().copied().collect();
        for (cpu, ty) in slots {
            self.slot_release(cpu, ty, ts);
        }
        let open: Vec<Track> = self
            .tracks
            .iter()
            .filter(|(_, s)| s.depth > 0)
            .map(|(t, _)| *t)
            .collect();
        for t in open {
            self.close_track(t, ts);
        }
    }

    /// Begin, at the window's start, every slice that is open then.
    fn reopen_all(&mut self, ts: u64) {
        let running: Vec<(u32, TaskId)> = self.running.iter().map(|(c, t)| (*c, *t)).collect();
        for (cpu, t) in running {
            self.run_start(cpu, t, ts);
        }
        for i in 0..self.tasks.len() {
            let t = TaskId(i as u32);
            for o in self.tasks[i].stack.clone() {
                self.begin(Track::Task(t), ts, &o.name, o.kind, &o.args);
            }
        }
        for nr in 0..self.pkmap.len() {
            let (users, pfn) = self.pkmap[nr];
            if users > 0 {
                let track = Track::Pkmap(nr as u32);
                self.begin(track, ts, &pfn_name(pfn), Kind::Pkmap, &NO_ARGS);
            }
        }
    }

    /// The window opens or closes at this event; false when the event is past the end.
    fn window(&mut self, ev: &TimelineEvent) -> bool {
        if let What::Step { step } = ev.what {
            if self.start_at.is_none()
                && matches!(self.window.start, super::Point::Step(s) if step >= s)
            {
                self.start_at = Some(ev.at);
            }
            if self.end_at.is_none()
                && matches!(self.window.end, Some(super::Point::Step(s)) if step >= s)
            {
                self.end_at = Some(ev.at);
            }
        }
        if self.phase == Phase::Before && self.start_at.is_some_and(|s| ev.at >= s) {
            self.phase = Phase::Active;
            let s = self.start_at.unwrap_or(ev.at);
            self.reopen_all(s);
        }
        if self.phase == Phase::Active && self.end_at.is_some_and(|e| ev.at >= e) {
            let e = self.end_at.unwrap_or(ev.at);
            self.close_all(e);
            self.phase = Phase::Done;
        }
        self.phase != Phase::Done
    }

    /// Take one machine event.
    pub fn record(&mut self, ev: &TimelineEvent) {
        if !self.window(ev) {
            return;
        }
        let (cpu, at, t) = (ev.cpu, ev.at, ev.task);
        match ev.what {
            What::Spawn | What::Step { .. } => {
                self.task(t);
            }
            What::RunStart => {
                if let Some(o) = self.task(t).stack.last() {
                    if o.kind == Kind::Wait && !o.on_cpu {
                        self.pop(t, at, &NO_ARGS);
                    }
                }
                if let Some(prev) = self.running.insert(cpu, t) {
                    self.task(prev).cpu = None;
                    self.close_track(Track::Cpu(cpu), at);
                }
                self.run_start(cpu, t, at);
            }
            What::RunEnd { why } => self.run_end(cpu, t, at, why),
            What::SpinBegin { lock, holder } => {
                if self
                    .task(t)
                    .stack
                    .last()
                    .is_some_and(|o| o.kind == Kind::Wait)
                {
                    return;
                }
                let h = holder.map(|h| ("holder", Val::U(u64::from(h.0))));
                let args = [Some(("lock", Val::S(lock))), h, None];
                self.push(t, at, Kind::Wait, format!("spin: {lock}"), args, true);
            }
            What::SpinEnd => {
                if self
                    .task(t)
                    .stack
                    .last()
                    .is_some_and(|o| o.kind == Kind::Wait)
                {
                    self.pop(t, at, &NO_ARGS);
                }
            }
            What::Sleep { what } => {
                if self
                    .task(t)
                    .stack
                    .last()
                    .is_some_and(|o| o.kind == Kind::Wait)
                {
                    self.pop(t, at, &NO_ARGS);
                }
                let args = [Some(("on", Val::S(what))), None, None];
                self.push(t, at, Kind::Wait, format!("sleep: {what}"), args, false);
            }
            What::Wake { waker } => {
                let args = [Some(("by", Val::U(u64::from(waker.0)))), None, None];
                if self.on(Kind::Wait) {
                    let ts = self.stamp(Track::Task(t), at);
                    self.out
                        .instant(Track::Task(t), ts, "wakeup", Kind::Wait, &args);
                }
            }
            What::KernelExit => {
                let errno = self.task(t).errno.take();
                let args = [errno.map(|e| ("errno", Val::U(u64::from(e)))), None, None];
                self.pop_to(t, at, Kind::Syscall, &args);
            }
            What::SyscallResult { errno } => self.task(t).errno = errno,
            What::Kernel(p) => self.kernel(cpu, t, at, p),
            What::TlbIpi { to, to_at, cycles } => self.ipi(cpu, at, to, to_at, cycles),
            What::Exit { .. } => {}
            What::Memory(m) => {
                self.counter("LowFree (kB)", at, m.low_free);
                self.counter("HighFree (kB)", at, m.high_free);
                self.counter("PageTables low (kB)", at, m.page_tables_low);
                self.counter("PageTables high (kB)", at, m.page_tables_high);
            }
        }
        if self.out.full() && self.phase == Phase::Active {
            self.capped_at = Some(self.last);
            self.close_all(self.last);
            self.phase = Phase::Done;
        }
    }

    fn run_start(&mut self, cpu: u32, t: TaskId, at: u64) {
        self.task(t).cpu = Some(cpu);
        let label = self.task(t).label.clone();
        self.begin(Track::Cpu(cpu), at, &label, Kind::Sched, &NO_ARGS);
        for o in self.task(t).stack.clone() {
            if o.on_cpu {
                self.begin(Track::Cpu(cpu), at, &o.name, o.kind, &o.args);
            }
        }
    }

    fn run_end(&mut self, cpu: u32, t: TaskId, at: u64, why: RunEnd) {
        let kind = match why {
            RunEnd::KernelPreempt => Some("kernel"),
            RunEnd::UserPreempt => Some("user"),
            _ => None,
        };
        if let Some(kind) = kind.filter(|_| self.on(Kind::Sched)) {
            let ts = self.stamp(Track::Cpu(cpu), at);
            let args = [Some(("where", Val::S(kind))), None, None];
            self.out
                .instant(Track::Cpu(cpu), ts, "preempt", Kind::Sched, &args);
        }
        if self.running.get(&cpu) == Some(&t) {
            self.running.remove(&cpu);
            self.close_track(Track::Cpu(cpu), at);
        }
        self.task(t).cpu = None;
        if why == RunEnd::Exit {
            self.task(t).stack.clear();
            self.close_track(Track::Task(t), at);
        }
    }

    fn push(&mut self, t: TaskId, at: u64, kind: Kind, name: String, args: Args, on_cpu: bool) {
        self.begin(Track::Task(t), at, &name, kind, &args);
        if let Some(cpu) = self.task(t).cpu.filter(|_| on_cpu) {
            self.begin(Track::Cpu(cpu), at, &name, kind, &args);
        }
        let o = Open {
            kind,
            name,
            args,
            on_cpu,
        };
        self.task(t).stack.push(o);
    }

    fn pop(&mut self, t: TaskId, at: u64, args: &Args) {
        let Some(o) = self.task(t).stack.pop() else {
            return;
        };
        self.end(Track::Task(t), at, o.kind, args);
        if let Some(cpu) = self.task(t).cpu.filter(|_| o.on_cpu) {
            self.end(Track::Cpu(cpu), at, o.kind, args);
        }
    }

    /// Close the innermost open slice of `kind` and everything inside it.
    fn pop_to(&mut self, t: TaskId, at: u64, kind: Kind, args: &Args) {
        let Some(i) = self.task(t).stack.iter().rposition(|o| o.kind == kind) else {
            return;
        };
        while self.task(t).stack.len() > i + 1 {
            self.pop(t, at, &NO_ARGS);
        }
        self.pop(t, at, args);
    }

    fn kernel(&mut self, cpu: u32, t: TaskId, at: u64, p: TracePoint) {
        match p {
            TracePoint::SyscallEnter { name } => {
                self.push(t, at, Kind::Syscall, name.to_string(), NO_ARGS, true);
            }
            TracePoint::FaultEnter { addr, write } => {
                let access = Val::S(if write { "write" } else { "read" });
                let args = [
                    Some(("address", Val::Hex(addr.as_u64()))),
                    Some(("access", access)),
                    None,
                ];
                self.push(t, at, Kind::Fault, "page fault".into(), args, true);
            }
            TracePoint::FaultExit { signal } => {
                let result = Val::S(signal.map_or("handled", |s| s.name()));
                self.pop_to(t, at, Kind::Fault, &[Some(("result", result)), None, None]);
            }
            TracePoint::KmapAtomic { ty, pfn } => {
                self.slot_release(cpu, ty, at);
                self.slots.insert((cpu, ty), (t, pfn.0, at));
            }
            TracePoint::KunmapAtomic { ty } => self.slot_release(cpu, ty, at),
            TracePoint::Kmap { nr, pfn, pool } => {
                self.pkmap_pool = pool;
                let i = nr as usize;
                if self.pkmap.len() <= i {
                    self.pkmap.resize(i + 1, (0, 0));
                }
                self.pkmap[i].0 += 1;
                self.pkmap[i].1 = pfn.0;
                if self.pkmap[i].0 == 1 {
                    let args = [Some(("task", Val::U(u64::from(t.0)))), None, None];
                    self.begin(Track::Pkmap(nr), at, &pfn_name(pfn.0), Kind::Pkmap, &args);
                }
                self.pkmap_counter(at);
            }
            TracePoint::Kunmap { nr, .. } => {
                let Some(e) = self.pkmap.get_mut(nr as usize) else {
                    return;
                };
                e.0 = e.0.saturating_sub(1);
                if e.0 == 0 {
                    self.end(Track::Pkmap(nr), at, Kind::Pkmap, &NO_ARGS);
                }
                self.pkmap_counter(at);
            }
        }
    }

    /// The slot's use (if any) ends at `at`: one complete slice on the slot's track.
    fn slot_release(&mut self, cpu: u32, ty: KmType, at: u64) {
        let Some((t, pfn, start)) = self.slots.remove(&(cpu, ty)) else {
            return;
        };
        if !self.on(Kind::Kmap) {
            return;
        }
        let track = Track::Slot(cpu, ty);
        let start = self.stamp(track, start.max(self.start_at.unwrap_or(0)));
        let end = self.stamp(track, at);
        let args = [Some(("task", Val::U(u64::from(t.0)))), None, None];
        self.out
            .complete(track, start, end - start, &pfn_name(pfn), Kind::Kmap, &args);
    }

    fn pkmap_counter(&mut self, at: u64) {
        let used = self.pkmap.iter().filter(|e| e.0 > 0).count() as u64;
        let free = u64::from(self.pkmap_pool).saturating_sub(used);
        self.counter("pkmap free entries", at, free);
    }

    fn counter(&mut self, name: &'static str, at: u64, value: u64) {
        let (last_ts, last_v) = self.counters.get(name).copied().unwrap_or((0, u64::MAX));
        if value == last_v || !self.on(Kind::Memory) {
            return;
        }
        let ts = at.max(last_ts);
        self.counters.insert(name, (ts, value));
        self.last = self.last.max(ts);
        self.out.counter(name, ts, value);
    }

    fn ipi(&mut self, cpu: u32, at: u64, to: u32, to_at: u64, cycles: u64) {
        let inside = self.start_at.is_some_and(|s| to_at >= s && at >= s)
            && self.end_at.is_none_or(|e| to_at + cycles < e);
        if !self.on(Kind::Ipi) || !inside {
            return;
        }
        let (from, dest) = (Track::Cpu(cpu), Track::Cpu(to));
        let ts_from = self.stamp(from, at);
        let ts_to = self.stamp(dest, to_at);
        self.flows += 1;
        self.out.flow(self.flows, (from, ts_from), (dest, ts_to));
        self.out
            .complete(dest, ts_to, cycles, "TLB flush IPI", Kind::Ipi, &NO_ARGS);
        let st = self.tracks.entry(dest).or_default();
        st.last = st.last.max(ts_to + cycles);
    }

    /// The run is over at `at`: close what is open.
    pub fn finish(&mut self, at: u64) {
        if self.phase == Phase::Active {
            let at = at.max(self.last);
            self.close_all(self.end_at.map_or(at, |e| at.min(e)));
        }
        self.phase = Phase::Done;
    }
}
