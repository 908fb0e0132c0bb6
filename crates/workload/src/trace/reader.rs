//! A streaming reader of PGT1 traces, plain (`.pgt`) or zstd-compressed (`.pgt.zst`, one or
//! more frames): a fixed 64 KB buffer whatever the trace's length, a typed error with the
//! record number and byte offset for every malformed input, and no panic.

use super::record::{AccessKind, Record};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// The four bytes a PGT1 trace starts with.
pub const MAGIC: &[u8; 4] = b"PGT1";
/// The four bytes a zstd frame starts with (RFC 8878 section 3.1.1).
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// The address-bits byte the format writes (64-bit addresses).
pub const ADDRESS_BITS: u8 = 0x40;

const BUF_SIZE: usize = 64 * 1024;
/// The longest LEB128 encoding of a 64-bit value.
const MAX_VARINT: usize = 10;

/// What is wrong with a trace.
#[derive(Debug)]
pub enum TraceErrorKind {
    /// The file could not be opened or read.
    Io(std::io::Error),
    /// The zstd decoder refused the compressed data.
    Zstd(String),
    /// The first bytes are not `PGT1`.
    BadMagic([u8; 4]),
    /// The file ends inside the 5-byte header.
    TruncatedHeader,
    /// The address-bits byte is not 13..=64.
    BadAddressBits(u8),
    /// The stream ends inside a varint.
    TruncatedVarint,
    /// A varint has more than 10 bytes (or overflows 64 bits).
    VarintTooLong,
    /// A record's type (subtype of type 7) is not one the format defines.
    UnknownRecord {
        /// The subtype (`v >> 3` of a type-7 record).
        subtype: u64,
    },
    /// A page (or the end of a range) past the end of the trace's address space.
    PastEnd {
        /// The page.
        page: u128,
        /// Pages the address space has (`2^(bits - 12)`).
        limit: u64,
    },
    /// A fetch record of the page the previous fetch record named, with no system-call
    /// record between: a writer keeps a fetch only when the instruction page changes, so this
    /// is a corrupt stream (a run of zero bytes decodes as exactly that).
    RepeatedFetch {
        /// The page.
        page: u64,
    },
    /// A field out of its range (prot, flags, file flag).
    BadField {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
}

/// An error reading a trace, with where it happened.
#[derive(Debug)]
pub struct TraceError {
    /// The trace's name (its path).
    pub name: String,
    /// The record (1-based) being read, once past the header.
    pub record: Option<u64>,
    /// Byte offset in the PGT1 stream (decompressed, for a compressed trace) where the
    /// record or header starts.
    pub offset: u64,
    /// Whether the trace is compressed (the offset is then in the decompressed stream).
    pub compressed: bool,
    /// What is wrong.
    pub kind: TraceErrorKind,
}

impl fmt::Display for TraceErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "cannot read it: {e}"),
            Self::Zstd(e) => write!(f, "zstd error: {e} (is the file a complete .zst?)"),
            Self::BadMagic(m) => write!(
                f,
                "not a PGT1 trace: it starts with {:02x} {:02x} {:02x} {:02x}, expected \"PGT1\" (50 47 54 31) or a zstd frame (28 b5 2f fd); convert lackey output with 'highpte trace convert'",
                m[0], m[1], m[2], m[3]
            ),
            Self::TruncatedHeader => write!(f, "truncated header: a PGT1 trace starts with 5 bytes (\"PGT1\" and the address bits)"),
            Self::BadAddressBits(b) => write!(f, "address bits {b} in the header: expected 13 to 64 (the format writes 64)"),
            Self::TruncatedVarint => write!(f, "truncated varint: the trace ends inside a number (a cut file?)"),
            Self::VarintTooLong => write!(f, "varint longer than 10 bytes or over 64 bits"),
            Self::UnknownRecord { subtype } => write!(f, "unknown record type 7/{subtype}: expected 1 brk, 2 mremap, 3 madvise or 4 initial region"),
            Self::PastEnd { page, limit } => write!(f, "page {page:#x} is past the end of the address space ({limit:#x} pages)"),
            Self::RepeatedFetch { page } => write!(f, "fetch of page {page:#x} repeats the previous fetch record (a writer keeps a fetch only when the instruction page changes): the stream is corrupt, e.g. zero bytes where records should be"),
            Self::BadField { field, value } => write!(f, "{field} {value:#x} is out of range"),
        }
    }
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stream = if self.compressed {
            " of the decompressed stream"
        } else {
            ""
        };
        match self.record {
            Some(r) => write!(
                f,
                "trace {}: record {r} (byte {}{stream}): {}",
                self.name, self.offset, self.kind
            ),
            None => write!(
                f,
                "trace {}: byte {}{stream}: {}",
                self.name, self.offset, self.kind
            ),
        }
    }
}

impl std::error::Error for TraceError {}

/// A reader of concatenated zstd frames (a stream `zstd` or `highpte trace convert` wrote).
struct ZstdFrames<R: BufRead> {
    dec: Option<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>,
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let Some(dec) = self.dec.as_mut() else {
                return Ok(0);
            };
            let n = dec.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // the frame ended: another one may follow
            let Some(dec) = self.dec.take() else {
                return Ok(0);
            };
            let (mut src, fd) = dec.into_parts();
            if src.fill_buf()?.is_empty() {
                return Ok(0);
            }
            let next = ruzstd::decoding::StreamingDecoder::new_with_decoder(src, fd)
                .map_err(std::io::Error::other)?;
            self.dec = Some(next);
        }
    }
}

/// `src` as a reader of its bytes: decompressed if it starts with a zstd frame, as it is
/// otherwise.
pub fn maybe_decompress<R: BufRead + 'static>(mut src: R) -> std::io::Result<Box<dyn Read>> {
    let head = src.fill_buf()?;
    if head.len() >= 4 && head[..4] == ZSTD_MAGIC {
        let dec = ruzstd::decoding::StreamingDecoder::new(src).map_err(std::io::Error::other)?;
        Ok(Box::new(ZstdFrames { dec: Some(dec) }))
    } else {
        Ok(Box::new(src))
    }
}

/// A streaming PGT1 reader.
pub struct TraceReader {
    src: Box<dyn Read>,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    /// Bytes of the stream before `buf[0]`.
    base: u64,
    eof: bool,
    /// Delta bases: fetches, data.
    prev: [u64; 2],
    /// True once a fetch record was read since the last non-access record (`prev[0]` is then
    /// the current instruction page, which a fetch record must change).
    in_fetch_run: bool,
    records: u64,
    limit: u64,
    name: String,
    compressed: bool,
    /// Offset of the record being read.
    rec_start: u64,
}

/// Open a trace file, compressed or not (told by its first bytes, not its name).
pub fn open_trace(path: &Path) -> Result<TraceReader, TraceError> {
    open_trace_with(path, |r| r)
}

/// Open a trace file like [`open_trace`], reading a compressed one's decompressed bytes
/// through `wrap` (which may copy them somewhere as they pass).
pub fn open_trace_with(
    path: &Path,
    wrap: impl FnOnce(Box<dyn Read>) -> Box<dyn Read>,
) -> Result<TraceReader, TraceError> {
    let name = path.display().to_string();
    let err = |kind| TraceError {
        name: name.clone(),
        record: None,
        offset: 0,
        compressed: false,
        kind,
    };
    let f = File::open(path).map_err(|e| err(TraceErrorKind::Io(e)))?;
    let mut br = BufReader::with_capacity(BUF_SIZE, f);
    let head = br.fill_buf().map_err(|e| err(TraceErrorKind::Io(e)))?;
    if head.len() >= 4 && head[..4] == ZSTD_MAGIC {
        let dec = ruzstd::decoding::StreamingDecoder::new(br).map_err(|e| TraceError {
            compressed: true,
            ..err(TraceErrorKind::Zstd(e.to_string()))
        })?;
        TraceReader::new(
            wrap(Box::new(ZstdFrames { dec: Some(dec) })),
            name.clone(),
            true,
        )
    } else {
        TraceReader::new(Box::new(br), name.clone(), false)
    }
}

#[inline(always)]
fn unzigzag(d: u64) -> i64 {
    ((d >> 1) as i64) ^ -((d & 1) as i64)
}

impl TraceReader {
    /// A reader of the PGT1 stream `src` (already decompressed); reads and checks the header.
    pub fn new(src: Box<dyn Read>, name: String, compressed: bool) -> Result<Self, TraceError> {
        let mut r = TraceReader {
            src,
            buf: vec![0u8; BUF_SIZE].into_boxed_slice(),
            pos: 0,
            len: 0,
            base: 0,
            eof: false,
            prev: [0, 0],
            in_fetch_run: false,
            records: 0,
            limit: 0,
            name,
            compressed,
            rec_start: 0,
        };
        r.refill()?;
        if r.len < 5 {
            let mut m = [0u8; 4];
            m[..r.len.min(4)].copy_from_slice(&r.buf[..r.len.min(4)]);
            if r.len >= 4 || m[..r.len] != MAGIC[..r.len] {
                return Err(r.error_at(None, 0, TraceErrorKind::BadMagic(m)));
            }
            return Err(r.error_at(None, 0, TraceErrorKind::TruncatedHeader));
        }
        let mut m = [0u8; 4];
        m.copy_from_slice(&r.buf[..4]);
        if &m != MAGIC {
            return Err(r.error_at(None, 0, TraceErrorKind::BadMagic(m)));
        }
        let bits = r.buf[4];
        if !(13..=64).contains(&bits) {
            return Err(r.error_at(None, 4, TraceErrorKind::BadAddressBits(bits)));
        }
        r.limit = if bits == 64 {
            1 << 52
        } else {
            1u64 << (bits - 12)
        };
        r.pos = 5;
        Ok(r)
    }

    /// Records read so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Pages the trace's address space has.
    pub fn page_limit(&self) -> u64 {
        self.limit
    }

    /// The trace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn error_at(&self, record: Option<u64>, offset: u64, kind: TraceErrorKind) -> TraceError {
        TraceError {
            name: self.name.clone(),
            record,
            offset,
            compressed: self.compressed,
            kind,
        }
    }

    #[cold]
    fn error(&self, kind: TraceErrorKind) -> TraceError {
        self.error_at(Some(self.records + 1), self.rec_start, kind)
    }

    /// Move the unread bytes to the front and read until at least `MAX_VARINT` are buffered
    /// or the stream ends.
    #[cold]
    #[inline(never)]
    fn refill(&mut self) -> Result<(), TraceError> {
        self.buf.copy_within(self.pos..self.len, 0);
        self.base += self.pos as u64;
        self.len -= self.pos;
        self.pos = 0;
        while !self.eof && self.len < MAX_VARINT * 8 {
            match self.src.read(&mut self.buf[self.len..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let kind = if self.compressed && e.kind() == std::io::ErrorKind::Other {
                        TraceErrorKind::Zstd(e.to_string())
                    } else {
                        TraceErrorKind::Io(e)
                    };
                    let offset = self.base + self.len as u64;
                    return Err(self.error_at(Some(self.records + 1), offset, kind));
                }
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, TraceError> {
        if self.len - self.pos < MAX_VARINT {
            self.refill()?;
        }
        let avail = &self.buf[self.pos..self.len];
        let mut v = 0u64;
        for (i, &b) in avail.iter().enumerate().take(MAX_VARINT) {
            if i == MAX_VARINT - 1 && b > 1 {
                return Err(self.error(TraceErrorKind::VarintTooLong));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.pos += i + 1;
                return Ok(v);
            }
        }
        if avail.len() >= MAX_VARINT {
            Err(self.error(TraceErrorKind::VarintTooLong))
        } else {
            Err(self.error(TraceErrorKind::TruncatedVarint))
        }
    }

    fn page(&self, v: u64) -> Result<u64, TraceError> {
        if v >= self.limit {
            return Err(self.error(TraceErrorKind::PastEnd {
                page: u128::from(v),
                limit: self.limit,
            }));
        }
        Ok(v)
    }

    fn range(&mut self) -> Result<(u64, u64), TraceError> {
        let start = self.varint()?;
        let n = self.varint()?;
        let end = u128::from(start) + u128::from(n);
        if end > u128::from(self.limit) {
            return Err(self.error(TraceErrorKind::PastEnd {
                page: end,
                limit: self.limit,
            }));
        }
        Ok((start, n))
    }

    fn small(&mut self, field: &'static str) -> Result<u32, TraceError> {
        let v = self.varint()?;
        u32::try_from(v).map_err(|_| self.error(TraceErrorKind::BadField { field, value: v }))
    }

    /// The next record, or `None` at the end of the trace.
    #[inline]
    pub fn next_record(&mut self) -> Result<Option<Record>, TraceError> {
        if self.pos == self.len {
            self.refill()?;
            if self.len == 0 {
                return Ok(None);
            }
        }
        self.rec_start = self.base + self.pos as u64;
        let v = self.varint()?;
        let op = v & 7;
        let rec = if op < 4 {
            let s = usize::from(op != 0);
            let page = self.prev[s].wrapping_add(unzigzag(v >> 3) as u64);
            if page >= self.limit {
                return Err(self.error(TraceErrorKind::PastEnd {
                    page: u128::from(page),
                    limit: self.limit,
                }));
            }
            if op == 0 {
                if self.in_fetch_run && page == self.prev[0] {
                    return Err(self.error(TraceErrorKind::RepeatedFetch { page }));
                }
                self.in_fetch_run = true;
            }
            self.prev[s] = page;
            let kind = AccessKind::ALL[op as usize];
            Record::Access { kind, page }
        } else {
            self.in_fetch_run = false;
            self.syscall(v)?
        };
        self.records += 1;
        Ok(Some(rec))
    }

    #[inline(never)]
    fn syscall(&mut self, v: u64) -> Result<Record, TraceError> {
        Ok(match v & 7 {
            4 => {
                let (start, npages) = self.range()?;
                let prot = self.small("prot")?;
                let flags = self.small("flags")?;
                let file = self.varint()?;
                if file > 1 {
                    return Err(self.error(TraceErrorKind::BadField {
                        field: "file flag",
                        value: file,
                    }));
                }
                Record::Mmap {
                    start,
                    npages,
                    prot,
                    flags,
                    file: file == 1,
                }
            }
            5 => {
                let (start, npages) = self.range()?;
                Record::Munmap { start, npages }
            }
            6 => {
                let (start, npages) = self.range()?;
                let prot = self.small("prot")?;
                Record::Mprotect {
                    start,
                    npages,
                    prot,
                }
            }
            _ => match v >> 3 {
                1 => {
                    let b = self.varint()?;
                    Record::Brk {
                        new_break: self.page(b)?,
                    }
                }
                2 => {
                    let (old, old_npages) = self.range()?;
                    let (new, new_npages) = self.range()?;
                    Record::Mremap {
                        old,
                        old_npages,
                        new,
                        new_npages,
                    }
                }
                3 => {
                    let (start, npages) = self.range()?;
                    let advice = self.small("advice")?;
                    Record::Madvise {
                        start,
                        npages,
                        advice,
                    }
                }
                4 => {
                    let (start, npages) = self.range()?;
                    Record::Region { start, npages }
                }
                subtype => return Err(self.error(TraceErrorKind::UnknownRecord { subtype })),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::writer::TraceWriter;

    fn reader(bytes: Vec<u8>) -> Result<TraceReader, TraceError> {
        let src = maybe_decompress(std::io::Cursor::new(bytes)).expect("in memory");
        TraceReader::new(src, "t".into(), false)
    }

    fn read_all(bytes: Vec<u8>) -> Result<Vec<Record>, TraceError> {
        let mut r = reader(bytes)?;
        let mut v = Vec::new();
        while let Some(x) = r.next_record()? {
            v.push(x);
        }
        Ok(v)
    }

    fn sample() -> Vec<Record> {
        vec![
            Record::Region {
                start: 0x8048,
                npages: 4,
            },
            Record::Access {
                kind: AccessKind::Fetch,
                page: 0x8048,
            },
            Record::Access {
                kind: AccessKind::Write,
                page: 0xfeb18,
            },
            Record::Access {
                kind: AccessKind::Read,
                page: 0x8049,
            },
            Record::Brk { new_break: 0x8219 },
            Record::Mmap {
                start: 0x4000,
                npages: 3,
                prot: 3,
                flags: 0x22,
                file: false,
            },
            Record::Access {
                kind: AccessKind::Modify,
                page: 0x4001,
            },
        ]
    }

    fn encode(zstd: bool) -> Vec<u8> {
        let mut w = TraceWriter::new(Vec::new(), zstd);
        for r in sample() {
            w.push(&r).expect("vec");
        }
        w.finish().expect("vec")
    }

    #[test]
    fn round_trip_plain_and_zstd() {
        assert_eq!(read_all(encode(false)).expect("plain"), sample());
        assert_eq!(read_all(encode(true)).expect("zstd"), sample());
    }

    #[test]
    fn wrong_magic() {
        let e = read_all(b"PGT2\x40\x00".to_vec()).unwrap_err();
        assert!(matches!(e.kind, TraceErrorKind::BadMagic(_)), "{e}");
        assert_eq!(e.offset, 0);
        assert!(e.to_string().contains("not a PGT1 trace"), "{e}");
    }

    #[test]
    fn a_megabyte_of_zeros_is_refused_at_once() {
        let e = read_all(vec![0; 1 << 20]).unwrap_err();
        assert!(
            matches!(e.kind, TraceErrorKind::BadMagic([0, 0, 0, 0])),
            "{e}"
        );
    }

    #[test]
    fn zeros_after_a_header_are_refused_at_the_second_record() {
        let mut b = b"PGT1\x40".to_vec();
        b.extend(vec![0u8; 1 << 20]);
        let e = read_all(b).unwrap_err();
        assert!(
            matches!(e.kind, TraceErrorKind::RepeatedFetch { page: 0 }),
            "{e}"
        );
        assert_eq!((e.record, e.offset), (Some(2), 6));
        // a fetch of the same page after a system-call record is fine
        let mut w = TraceWriter::new(Vec::new(), false);
        let f = Record::Access {
            kind: AccessKind::Fetch,
            page: 7,
        };
        for r in [f, Record::Brk { new_break: 9 }, f] {
            w.push(&r).expect("vec");
        }
        assert_eq!(read_all(w.finish().expect("vec")).expect("valid").len(), 3);
    }

    #[test]
    fn truncated_header_and_bad_bits() {
        let e = read_all(b"PGT".to_vec()).unwrap_err();
        assert!(matches!(e.kind, TraceErrorKind::TruncatedHeader), "{e}");
        let e = read_all(b"PGT1\x05".to_vec()).unwrap_err();
        assert!(matches!(e.kind, TraceErrorKind::BadAddressBits(5)), "{e}");
    }

    #[test]
    fn truncated_varint_names_record_and_offset() {
        let e = read_all(b"PGT1\x40\x10\x80".to_vec()).unwrap_err();
        assert!(matches!(e.kind, TraceErrorKind::TruncatedVarint), "{e}");
        assert_eq!(e.record, Some(2));
        assert_eq!(e.offset, 6);
    }

    #[test]
    fn overlong_varint() {
        let mut b = b"PGT1\x40".to_vec();
        b.extend([0xffu8; 11]);
        let e = read_all(b).unwrap_err();
        assert!(matches!(e.kind, TraceErrorKind::VarintTooLong), "{e}");
    }

    #[test]
    fn unknown_record_type() {
        let e = read_all(b"PGT1\x40\x2f".to_vec()).unwrap_err(); // (5 << 3) | 7
        assert!(
            matches!(e.kind, TraceErrorKind::UnknownRecord { subtype: 5 }),
            "{e}"
        );
        assert_eq!(e.record, Some(1));
    }

    #[test]
    fn address_past_the_end() {
        // a fetch 1 page below 0: page -1
        let e = read_all(b"PGT1\x40\x18".to_vec()).unwrap_err(); // zigzag(-1) = 1, << 3
        assert!(matches!(e.kind, TraceErrorKind::PastEnd { .. }), "{e}");
        // an mmap that ends past 2^52 pages
        let mut b = b"PGT1\x40\x04".to_vec();
        crate::trace::writer::put_varint(&mut b, (1 << 52) - 1);
        b.extend([2, 3, 0x22, 0]);
        let e = read_all(b).unwrap_err();
        assert!(matches!(e.kind, TraceErrorKind::PastEnd { .. }), "{e}");
    }

    #[test]
    fn zstd_errors_are_reported_not_panicked() {
        let mut z = encode(true);
        z.truncate(z.len() / 2);
        assert!(read_all(z).is_err());
        let mut g = ZSTD_MAGIC.to_vec();
        g.extend([0xff; 64]);
        // refused when the frame header is read, or when the first block is
        let bad = maybe_decompress(std::io::Cursor::new(g))
            .map(|src| TraceReader::new(src, "t".into(), true).is_err());
        assert!(bad.unwrap_or(true));
    }
}
