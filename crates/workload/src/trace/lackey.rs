//! Converting valgrind lackey output (`--tool=lackey --trace-mem=yes --trace-syscalls=yes`,
//! memory and system-call lines on one descriptor) to PGT1.
//!
//! The conversion keeps what the format keeps (docs/traces.md): a fetch record when the
//! instruction page changes, a data record when the data page changes or on the first
//! write/modify to the current data page, the collapsing state reset after every system-call
//! record; an access that crosses a page boundary gives two records. `mmap`/`mmap2`,
//! `munmap`, `mprotect`, `brk`, `mremap` and `madvise` that succeeded become records; other
//! system calls and valgrind's own `==PID==` lines are skipped. Pages touched while no traced
//! `mmap` or the traced heap covered them become the initial regions, written first.
//!
//! Memory: the set of touched pages and the body of the trace, compressed, are held until the
//! end (the regions must come first); the lackey text is streamed.

use super::record::{AccessKind, Record};
use super::scan::PageSet;
use super::writer::TraceWriter;
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};

/// A line of lackey output the converter cannot read.
#[derive(Debug)]
pub struct LackeyError {
    /// 1-based line number (0: reading the input failed).
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for LackeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for LackeyError {}

/// What a conversion produced.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConvertStats {
    /// Lines read.
    pub lines: u64,
    /// Access lines read.
    pub access_lines: u64,
    /// Records written (initial regions included).
    pub records: u64,
    /// Initial-region records.
    pub regions: u64,
    /// System-call records.
    pub syscalls: u64,
}

const MAP_ANONYMOUS: u64 = 0x20;

fn pages(len: u64) -> u64 {
    len.div_ceil(4096)
}

/// Parse one lackey argument: `0x...` hex (a `(string)` after it ignored) or a decimal
/// (possibly negative).
fn arg(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.split('(').next().unwrap_or(s).trim();
    if let Some(h) = s.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()
    } else {
        s.parse::<i64>().ok().map(|v| v as u64)
    }
}

/// The converter's state.
struct Conv<W: Write> {
    body: TraceWriter<W>,
    last_fetch: Option<u64>,
    last_data: Option<u64>,
    data_written: bool,
    /// Mapped by traced calls: start page -> end page.
    covered: BTreeMap<u64, u64>,
    heap: Option<(u64, u64)>,
    uncovered: PageSet,
    uncovered_pages: BTreeMap<u64, ()>,
    stats: ConvertStats,
}

impl<W: Write> Conv<W> {
    fn is_covered(&self, p: u64) -> bool {
        if let Some((s, e)) = self.heap {
            if p >= s && p < e {
                return true;
            }
        }
        self.covered
            .range(..=p)
            .next_back()
            .is_some_and(|(_, e)| p < *e)
    }

    fn cover(&mut self, s: u64, e: u64) {
        self.uncover(s, e);
        self.covered.insert(s, e);
    }

    fn uncover(&mut self, s: u64, e: u64) {
        let hit: Vec<(u64, u64)> = self
            .covered
            .range(..e)
            .filter(|(_, b)| **b > s)
            .map(|(a, b)| (*a, *b))
            .collect();
        for (a, b) in hit {
            self.covered.remove(&a);
            if a < s {
                self.covered.insert(a, s);
            }
            if b > e {
                self.covered.insert(e, b);
            }
        }
    }

    fn access(&mut self, kind: AccessKind, page: u64) -> std::io::Result<()> {
        let emit = if kind == AccessKind::Fetch {
            let e = self.last_fetch != Some(page);
            self.last_fetch = Some(page);
            e
        } else if self.last_data != Some(page) {
            self.last_data = Some(page);
            self.data_written = kind.writes();
            true
        } else if kind.writes() && !self.data_written {
            self.data_written = true;
            true
        } else {
            false
        };
        if emit {
            if !self.is_covered(page) && self.uncovered.insert(page) {
                self.uncovered_pages.insert(page, ());
            }
            self.body.push(&Record::Access { kind, page })?;
        }
        Ok(())
    }

    fn syscall(&mut self, r: Record) -> std::io::Result<()> {
        self.last_fetch = None;
        self.last_data = None;
        self.data_written = false;
        self.stats.syscalls += 1;
        self.body.push(&r)
    }
}

/// Convert lackey output from `input` (plain text or zstd) to a PGT1 trace on `out`
/// (zstd-compressed when `zstd`).
pub fn convert<R: BufRead + 'static, W: Write>(
    input: R,
    out: W,
    zstd: bool,
) -> Result<ConvertStats, LackeyError> {
    let io = |e: std::io::Error| LackeyError {
        line: 0,
        message: format!("cannot read or write: {e}"),
    };
    let src = super::reader::maybe_decompress(input).map_err(io)?;
    let mut lines = std::io::BufReader::with_capacity(1 << 16, src);
    let mut c = Conv {
        body: TraceWriter::body(Vec::new(), true),
        last_fetch: None,
        last_data: None,
        data_written: false,
        covered: BTreeMap::new(),
        heap: None,
        uncovered: PageSet::default(),
        uncovered_pages: BTreeMap::new(),
        stats: ConvertStats::default(),
    };
    // a system call whose result comes on a later line ([async])
    let mut pending: BTreeMap<String, (String, Vec<u64>)> = BTreeMap::new();
    let mut line = String::new();
    let mut n = 0u64;
    loop {
        line.clear();
        let got = lines.read_line(&mut line).map_err(io)?;
        if got == 0 {
            break;
        }
        n += 1;
        let l = line.trim_end_matches(['\n', '\r']);
        if let Some((kind, addr, size)) = access_line(l, n)? {
            c.stats.access_lines += 1;
            let first = addr >> 12;
            let last = addr.saturating_add(size.max(1) - 1) >> 12;
            c.access(kind, first).map_err(io)?;
            if last != first {
                c.access(kind, last).map_err(io)?;
            }
            continue;
        }
        let Some((name, args, ret)) = syscall_line(l, &mut pending) else {
            continue;
        };
        if let Some(rec) = syscall_record(&mut c, &name, &args, ret) {
            c.syscall(rec).map_err(io)?;
        }
    }
    c.stats.lines = n;
    finish(c, out, zstd)
}

/// An access line (`I  ADDR,SIZE` or ` L|S|M ADDR,SIZE`): its kind, address and size; `None`
/// for any other line.
fn access_line(l: &str, n: u64) -> Result<Option<(AccessKind, u64, u64)>, LackeyError> {
    let bad = |what: &str| LackeyError {
        line: n,
        message: format!("{what}: '{}'", l.chars().take(80).collect::<String>()),
    };
    let kind = if l.starts_with("I ") {
        Some(AccessKind::Fetch)
    } else if let Some(r) = l.strip_prefix(' ') {
        match r.as_bytes().first() {
            Some(b'L') => Some(AccessKind::Read),
            Some(b'S') => Some(AccessKind::Write),
            Some(b'M') => Some(AccessKind::Modify),
            _ => None,
        }
    } else {
        None
    };
    let Some(kind) = kind else {
        return Ok(None);
    };
    let rest = l[2..].trim();
    let (a, sz) = rest
        .split_once(',')
        .ok_or_else(|| bad("an access line without ',SIZE'"))?;
    let addr = u64::from_str_radix(a.trim(), 16)
        .map_err(|_| bad("an access address that is not hexadecimal"))?;
    let size: u64 = sz
        .trim()
        .parse()
        .map_err(|_| bad("an access size that is not a number"))?;
    Ok(Some((kind, addr, size)))
}

/// A system call line whose call succeeded (`SYSCALL[pid,tid](nr) sys_NAME ( args ) -->
/// ... Success(0x...)`, its result possibly on a later `[async]` line): its name, arguments
/// and result.
fn syscall_line(
    l: &str,
    pending: &mut BTreeMap<String, (String, Vec<u64>)>,
) -> Option<(String, Vec<u64>, u64)> {
    let rest = l.strip_prefix("SYSCALL[")?;
    // SYSCALL[pid,tid](nr) sys_NAME ( args ) --> ... Success(0x...)
    let (who, after) = rest.split_once(") ")?;
    let (name, args) = if let Some(done) = after.strip_prefix("... [async] --> ") {
        match pending.remove(who) {
            Some((name, args)) => (name, (args, done.to_string())),
            None => return None,
        }
    } else {
        let (name, tail) = after.split_once(" ( ")?;
        let (argtext, result) = tail.split_once(" ) ").or_else(|| tail.split_once(" )["))?;
        let args: Vec<u64> = argtext.split(", ").map(|a| arg(a).unwrap_or(0)).collect();
        if result.contains("[async] ...") {
            pending.insert(who.to_string(), (name.to_string(), args));
            return None;
        }
        (name.to_string(), (args, result.to_string()))
    };
    let (args, result) = args;
    let ok = result.split("Success(").nth(1)?;
    let ret = arg(ok.trim_end().trim_end_matches(')'))?;
    Some((name, args, ret))
}

/// The record of a system call that changes the address space, with its effect on which
/// pages are covered by mappings; `None` for any other call.
fn syscall_record<B: Write>(c: &mut Conv<B>, name: &str, args: &[u64], ret: u64) -> Option<Record> {
    let a = |i: usize| args.get(i).copied().unwrap_or(0);
    Some(match name {
        "sys_mmap2" | "sys_mmap" | "sys_old_mmap" => {
            let (s, np) = (ret >> 12, pages(a(1)));
            c.cover(s, s + np);
            Record::Mmap {
                start: s,
                npages: np,
                prot: a(2) as u32,
                flags: a(3) as u32,
                file: a(3) & MAP_ANONYMOUS == 0,
            }
        }
        "sys_munmap" => {
            let (s, np) = (a(0) >> 12, pages(a(1)));
            c.uncover(s, s + np);
            Record::Munmap {
                start: s,
                npages: np,
            }
        }
        "sys_mprotect" => Record::Mprotect {
            start: a(0) >> 12,
            npages: pages(a(1)),
            prot: a(2) as u32,
        },
        "sys_brk" => {
            let nb = pages(ret);
            c.heap = Some(match c.heap {
                None => (nb, nb),
                Some((s, _)) => (s, nb.max(s)),
            });
            Record::Brk { new_break: nb }
        }
        "sys_mremap" => {
            let (o, on) = (a(0) >> 12, pages(a(1)));
            let (nw, nn) = (ret >> 12, pages(a(2)));
            c.uncover(o, o + on);
            c.cover(nw, nw + nn);
            Record::Mremap {
                old: o,
                old_npages: on,
                new: nw,
                new_npages: nn,
            }
        }
        "sys_madvise" => Record::Madvise {
            start: a(0) >> 12,
            npages: pages(a(1)),
            advice: a(2) as u32,
        },
        _ => return None,
    })
}

/// Writes the trace: the initial regions (the touched pages no mapping covered, coalesced),
/// then the body of records.
fn finish<W: Write>(mut c: Conv<Vec<u8>>, out: W, zstd: bool) -> Result<ConvertStats, LackeyError> {
    let io = |e: std::io::Error| LackeyError {
        line: 0,
        message: format!("cannot read or write: {e}"),
    };
    let body_records = c.body.records();
    let body = c.body.finish().map_err(io)?;
    // the initial regions: uncovered touched pages, coalesced
    let mut head = TraceWriter::new(out, zstd);
    let mut run: Option<(u64, u64)> = None;
    let mut regions = 0u64;
    for &p in c.uncovered_pages.keys() {
        run = match run {
            Some((s, e)) if e == p => Some((s, p + 1)),
            Some((s, e)) => {
                head.push(&Record::Region {
                    start: s,
                    npages: e - s,
                })
                .map_err(io)?;
                regions += 1;
                Some((p, p + 1))
            }
            None => Some((p, p + 1)),
        };
    }
    if let Some((s, e)) = run {
        head.push(&Record::Region {
            start: s,
            npages: e - s,
        })
        .map_err(io)?;
        regions += 1;
    }
    let mut out = head.finish().map_err(io)?;
    if zstd {
        out.write_all(&body).map_err(io)?;
    } else {
        let mut dec = super::reader::maybe_decompress(std::io::Cursor::new(body)).map_err(io)?;
        std::io::copy(&mut dec, &mut out).map_err(io)?;
    }
    out.flush().map_err(io)?;
    c.stats.regions = regions;
    c.stats.records = body_records + regions;
    Ok(c.stats)
}

/// Read everything of `r` (for tests and small inputs).
pub fn read_all(mut r: impl Read) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    r.read_to_end(&mut v)?;
    Ok(v)
}
