//! The Chrome trace-event JSON format (what ui.perfetto.dev and chrome://tracing open),
//! written as the run goes: one event per line, through a buffer, never the whole run in
//! memory.
//!
//! Tracks are threads of a few "processes": CPUs, tasks, kmap_atomic slots, pkmap entries
//! and memory counters. Timestamps are microseconds of simulated time: cycles at the cost
//! model's clock. Several runs can share one file (explain-deadlock puts the deadlocked run
//! and the kmap_atomic run side by side), each under its own group of processes.

use super::model::{Args, Out, Track, Val};
use super::Kind;
use std::collections::BTreeSet;
use std::io::{self, Write};

/// The processes of one run, numbered from a base.
const CPUS: u32 = 1;
const TASKS: u32 = 2;
const SLOTS: u32 = 3;
const PKMAP: u32 = 4;
const MEMORY: u32 = 5;
const PROCESSES: u32 = 5;

/// A trace-event JSON file being written.
pub struct Chrome<W: Write> {
    w: W,
    bytes: u64,
    cap: u64,
    error: Option<io::Error>,
    /// Cycles per microsecond.
    per_us: f64,
    pid_base: u32,
    group: String,
    first: bool,
    named: BTreeSet<u32>,
    line: String,
}

impl<W: Write> Chrome<W> {
    /// Start a file on `w`, stopping after about `cap` bytes, with timestamps converted at
    /// `clock_hz`.
    pub fn new(mut w: W, cap: u64, clock_hz: u64) -> Self {
        let head = "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n";
        let error = w.write_all(head.as_bytes()).err();
        Self {
            w,
            bytes: head.len() as u64,
            cap,
            error,
            per_us: clock_hz as f64 / 1e6,
            pid_base: 0,
            group: String::new(),
            first: true,
            named: BTreeSet::new(),
            line: String::with_capacity(256),
        }
    }

    /// Put the next run's tracks in a new group of processes named after `group`.
    pub fn next_group(&mut self, group: &str) {
        if !self.named.is_empty() {
            self.pid_base += PROCESSES + 1;
        }
        self.group = group.to_string();
    }

    /// Convert timestamps at `clock_hz` from now on.
    pub fn set_clock(&mut self, clock_hz: u64) {
        self.per_us = clock_hz as f64 / 1e6;
    }

    /// Close the JSON and flush: the first write error, if any.
    pub fn finish(mut self) -> io::Result<W> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.w.write_all(b"\n]}\n")?;
        self.w.flush()?;
        Ok(self.w)
    }

    fn ts(&self, cycles: u64) -> String {
        format!("{:.3}", cycles as f64 / self.per_us)
    }

    fn pid_tid(&self, track: Track) -> (u32, u32) {
        let (p, tid) = match track {
            Track::Cpu(c) => (CPUS, c),
            Track::Task(t) => (TASKS, t.0),
            Track::Slot(c, ty) => (SLOTS, c * 16 + ty.index()),
            Track::Pkmap(nr) => (PKMAP, nr),
        };
        (self.pid_base + p, tid)
    }

    /// Write the line in `self.line` (one event object).
    fn emit(&mut self) {
        if self.error.is_some() {
            return;
        }
        let sep = if self.first { "" } else { ",\n" };
        self.first = false;
        let r = self
            .w
            .write_all(sep.as_bytes())
            .and_then(|_| self.w.write_all(self.line.as_bytes()));
        self.bytes += (sep.len() + self.line.len()) as u64;
        if let Err(e) = r {
            self.error = Some(e);
        }
    }

    /// Name process `p` (of this group) on first use.
    fn process(&mut self, p: u32) {
        let pid = self.pid_base + p;
        if !self.named.insert(pid) {
            return;
        }
        let name = match p {
            CPUS => "CPUs",
            TASKS => "tasks",
            SLOTS => "kmap_atomic slots",
            PKMAP => "pkmap entries",
            _ => "memory",
        };
        let full = if self.group.is_empty() {
            name.to_string()
        } else {
            format!("{name} ({})", self.group)
        };
        self.line = format!(
            "{{\"ph\":\"M\",\"pid\":{pid},\"name\":\"process_name\",\"args\":{{\"name\":{}}}}}",
            json_str(&full)
        );
        self.emit();
        self.line = format!(
            "{{\"ph\":\"M\",\"pid\":{pid},\"name\":\"process_sort_index\",\"args\":{{\"sort_index\":{pid}}}}}"
        );
        self.emit();
    }

    /// Start an event line: `{"ph":..,"pid":..,"tid":..,"ts":..`.
    fn head(&mut self, ph: &str, track: Track, ts: u64) {
        let (pid, tid) = self.pid_tid(track);
        let ts = self.ts(ts);
        self.line.clear();
        self.line.push_str(&format!(
            "{{\"ph\":\"{ph}\",\"pid\":{pid},\"tid\":{tid},\"ts\":{ts}"
        ));
    }

    fn args(&mut self, args: &Args) {
        let mut first = true;
        for (k, v) in args.iter().flatten() {
            self.line.push_str(if first { ",\"args\":{" } else { "," });
            first = false;
            let v = match v {
                Val::U(n) => n.to_string(),
                Val::Hex(n) => json_str(&format!("{n:#x}")),
                Val::S(s) => json_str(s),
            };
            self.line.push_str(&format!("\"{k}\":{v}"));
        }
        if !first {
            self.line.push('}');
        }
    }
}

/// `s` as a JSON string literal.
fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

impl<W: Write> Out for Chrome<W> {
    fn track(&mut self, track: Track, name: &str) {
        let (pid, tid) = self.pid_tid(track);
        self.process(pid - self.pid_base);
        self.line = format!(
            "{{\"ph\":\"M\",\"pid\":{pid},\"tid\":{tid},\"name\":\"thread_name\",\"args\":{{\"name\":{}}}}}",
            json_str(name)
        );
        self.emit();
        self.line = format!(
            "{{\"ph\":\"M\",\"pid\":{pid},\"tid\":{tid},\"name\":\"thread_sort_index\",\"args\":{{\"sort_index\":{tid}}}}}"
        );
        self.emit();
    }

    fn begin(&mut self, track: Track, ts: u64, name: &str, kind: Kind, args: &Args) {
        self.head("B", track, ts);
        let (name, cat) = (json_str(name), kind.name());
        self.line
            .push_str(&format!(",\"name\":{name},\"cat\":\"{cat}\""));
        self.args(args);
        self.line.push('}');
        self.emit();
    }

    fn end(&mut self, track: Track, ts: u64, args: &Args) {
        self.head("E", track, ts);
        self.args(args);
        self.line.push('}');
        self.emit();
    }

    fn instant(&mut self, track: Track, ts: u64, name: &'static str, kind: Kind, args: &Args) {
        self.head("i", track, ts);
        let cat = kind.name();
        self.line.push_str(&format!(
            ",\"s\":\"t\",\"name\":\"{name}\",\"cat\":\"{cat}\""
        ));
        self.args(args);
        self.line.push('}');
        self.emit();
    }

    fn complete(&mut self, track: Track, ts: u64, dur: u64, name: &str, kind: Kind, args: &Args) {
        self.head("X", track, ts);
        // the end's stamp minus the start's, so the slice ends exactly where the track's
        // next event may begin
        let dur = format!(
            "{:.3}",
            ((ts + dur) as f64 / self.per_us * 1000.0).round() / 1000.0
                - (ts as f64 / self.per_us * 1000.0).round() / 1000.0
        );
        let (name, cat) = (json_str(name), kind.name());
        self.line
            .push_str(&format!(",\"dur\":{dur},\"name\":{name},\"cat\":\"{cat}\""));
        self.args(args);
        self.line.push('}');
        self.emit();
    }

    fn flow(&mut self, id: u64, from: (Track, u64), to: (Track, u64)) {
        let cat = Kind::Ipi.name();
        self.head("s", from.0, from.1);
        self.line.push_str(&format!(
            ",\"id\":{id},\"name\":\"TLB shootdown\",\"cat\":\"{cat}\"}}"
        ));
        self.emit();
        self.head("f", to.0, to.1);
        self.line.push_str(&format!(
            ",\"bp\":\"e\",\"id\":{id},\"name\":\"TLB shootdown\",\"cat\":\"{cat}\"}}"
        ));
        self.emit();
    }

    fn counter(&mut self, name: &'static str, ts: u64, value: u64) {
        self.process(MEMORY);
        let pid = self.pid_base + MEMORY;
        let ts = self.ts(ts);
        self.line = format!(
            "{{\"ph\":\"C\",\"pid\":{pid},\"tid\":0,\"ts\":{ts},\"name\":\"{name}\",\"cat\":\"memory\",\"args\":{{\"value\":{value}}}}}"
        );
        self.emit();
    }

    fn full(&self) -> bool {
        self.bytes >= self.cap || self.error.is_some()
    }
}
