//! A PGT1 writer: records in, the format's bytes out (plain, or zstd in frames of at most
//! [`FRAME_BYTES`] so that memory stays bounded whatever the trace's length).

use super::reader::{ADDRESS_BITS, MAGIC};
use super::record::Record;
use std::io::Write;

/// Uncompressed bytes per zstd frame.
pub const FRAME_BYTES: usize = 4 << 20;

/// Append `v` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(d: i64) -> u64 {
    ((d << 1) ^ (d >> 63)) as u64
}

/// Encodes records as PGT1 and writes them to `W`, plain or zstd-compressed.
pub struct TraceWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
    prev: [u64; 2],
    zstd: bool,
    records: u64,
}

impl<W: Write> TraceWriter<W> {
    /// A writer; the header goes out with the first frame.
    pub fn new(out: W, zstd: bool) -> Self {
        let mut buf = Vec::with_capacity(FRAME_BYTES + 64);
        buf.extend_from_slice(MAGIC);
        buf.push(ADDRESS_BITS);
        TraceWriter {
            out,
            buf,
            prev: [0, 0],
            zstd,
            records: 0,
        }
    }

    /// A writer of records only, without the header: a trace's body, to be appended to a
    /// stream that has the header (zstd frames concatenate).
    pub fn body(out: W, zstd: bool) -> Self {
        let mut w = Self::new(out, zstd);
        w.buf.clear();
        w
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Append one record.
    pub fn push(&mut self, r: &Record) -> std::io::Result<()> {
        let b = &mut self.buf;
        match *r {
            Record::Access { kind, page } => {
                let s = usize::from(kind as u8 != 0);
                let d = page.wrapping_sub(self.prev[s]) as i64;
                self.prev[s] = page;
                put_varint(b, (zigzag(d) << 3) | kind as u64);
            }
            Record::Mmap {
                start,
                npages,
                prot,
                flags,
                file,
            } => {
                put_varint(b, 4);
                for v in [
                    start,
                    npages,
                    u64::from(prot),
                    u64::from(flags),
                    u64::from(file),
                ] {
                    put_varint(b, v);
                }
            }
            Record::Munmap { start, npages } => {
                put_varint(b, 5);
                put_varint(b, start);
                put_varint(b, npages);
            }
            Record::Mprotect {
                start,
                npages,
                prot,
            } => {
                put_varint(b, 6);
                for v in [start, npages, u64::from(prot)] {
                    put_varint(b, v);
                }
            }
            Record::Brk { new_break } => {
                put_varint(b, (1 << 3) | 7);
                put_varint(b, new_break);
            }
            Record::Mremap {
                old,
                old_npages,
                new,
                new_npages,
            } => {
                put_varint(b, (2 << 3) | 7);
                for v in [old, old_npages, new, new_npages] {
                    put_varint(b, v);
                }
            }
            Record::Madvise {
                start,
                npages,
                advice,
            } => {
                put_varint(b, (3 << 3) | 7);
                for v in [start, npages, u64::from(advice)] {
                    put_varint(b, v);
                }
            }
            Record::Region { start, npages } => {
                put_varint(b, (4 << 3) | 7);
                put_varint(b, start);
                put_varint(b, npages);
            }
        }
        self.records += 1;
        if self.buf.len() >= FRAME_BYTES {
            self.flush_frame()?;
        }
        Ok(())
    }

    fn flush_frame(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.zstd {
            let c = ruzstd::encoding::compress_to_vec(
                &self.buf[..],
                ruzstd::encoding::CompressionLevel::Fastest,
            );
            self.out.write_all(&c)?;
        } else {
            self.out.write_all(&self.buf)?;
        }
        self.buf.clear();
        Ok(())
    }

    /// Write what is buffered and return the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.flush_frame()?;
        self.out.flush()?;
        Ok(self.out)
    }
}
