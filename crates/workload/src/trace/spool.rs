//! A decompressed copy of a compressed trace, shared by every instance that replays it.
//!
//! A zstd decoder keeps a window of recent output, and a trace compressed in one shot has a
//! window as large as the whole decompressed trace (62 MB for the SQLite trace): 500
//! instances each decompressing for themselves would hold 500 windows. So the one pass that
//! scans a compressed trace before a run also writes its decompressed bytes to an unnamed
//! temporary file (removed when the run ends), and each instance reads that file through its
//! own 64 KB buffer, at its own offset. Host memory is then a buffer per instance whatever the
//! trace's length; the file's pages are the host's page cache, which it can drop.

use super::reader::{open_trace_with, TraceError, TraceReader};
use super::scan::{scan_reader, TraceInfo};
use std::cell::RefCell;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::rc::Rc;

/// The decompressed bytes of one trace, in an unnamed temporary file.
#[derive(Debug)]
pub struct Spool {
    file: File,
    name: String,
}

type Sink = Rc<RefCell<Option<BufWriter<File>>>>;

/// Copies what it reads into a sink (dropped, with the copy given up, on a write error).
struct Tee {
    inner: Box<dyn Read>,
    sink: Sink,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut sink = self.sink.borrow_mut();
        if let Some(w) = sink.as_mut() {
            if w.write_all(&buf[..n]).is_err() {
                *sink = None;
            }
        }
        Ok(n)
    }
}

/// Scan the trace at `path` once ([`super::scan_trace`]); if it is compressed, keep its
/// decompressed bytes in a [`Spool`] for the replays. No spool (the replays then decompress
/// for themselves) for a plain trace, or when no temporary file can be written.
pub fn scan_and_spool(path: &Path) -> Result<(TraceInfo, Option<Spool>), TraceError> {
    let sink: Sink = Rc::new(RefCell::new(
        tempfile::tempfile()
            .ok()
            .map(|f| BufWriter::with_capacity(1 << 16, f)),
    ));
    let tee_sink = sink.clone();
    let mut compressed = false;
    let mut r = open_trace_with(path, |inner| {
        compressed = true;
        Box::new(Tee {
            inner,
            sink: tee_sink,
        })
    })?;
    let mut info = scan_reader(&mut r)?;
    info.compressed = compressed;
    drop(r);
    let spool = if compressed {
        sink.borrow_mut()
            .take()
            .and_then(|w| w.into_inner().ok())
            .map(|file| Spool {
                file,
                name: path.display().to_string(),
            })
    } else {
        None
    };
    Ok((info, spool))
}

impl Spool {
    /// A reader of the decompressed trace from its start, with a buffer of its own.
    pub fn reader(self: &Rc<Self>) -> Result<TraceReader, TraceError> {
        TraceReader::new(
            Box::new(SpoolReader {
                spool: self.clone(),
                pos: 0,
            }),
            self.name.clone(),
            true,
        )
    }
}

/// One instance's position in a spool (positioned reads: the instances share the file).
struct SpoolReader {
    spool: Rc<Spool>,
    pos: u64,
}

impl Read for SpoolReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = read_at(&self.spool.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(unix)]
fn read_at(f: &File, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(f, buf, pos)
}

#[cfg(windows)]
fn read_at(f: &File, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(f, buf, pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{AccessKind, Record, TraceWriter};

    #[test]
    fn two_readers_of_one_spool_read_the_same_records() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.pgt.zst");
        let mut w = TraceWriter::new(Vec::new(), true);
        let recs: Vec<Record> = (0..5000u64)
            .map(|i| Record::Access {
                kind: AccessKind::ALL[(i % 4) as usize],
                page: 0x8048 + (i * 7919) % 1000,
            })
            .collect();
        for r in &recs {
            w.push(r).expect("vec");
        }
        std::fs::write(&path, w.finish().expect("vec")).expect("write");
        let (info, spool) = scan_and_spool(&path).expect("scans");
        assert_eq!(info.records, 5000);
        assert!(info.compressed);
        let spool = Rc::new(spool.expect("a compressed trace is spooled"));
        let (mut a, mut b) = (spool.reader().expect("a"), spool.reader().expect("b"));
        for want in &recs {
            // interleaved, as instances are
            assert_eq!(a.next_record().expect("a").as_ref(), Some(want));
            assert_eq!(b.next_record().expect("b").as_ref(), Some(want));
        }
        assert!(a.next_record().expect("end").is_none());
    }
}
