//! A swap device kept in a host file, for runs whose swap does not fit in host memory.
//!
//! Block N lives at byte N × 4096 of the file, read and written with positioned I/O. The
//! file is created (or truncated) when the machine is built and never pre-written, so it is
//! sparse: the host file system allocates only the blocks written. A bitset in host memory
//! (one bit per block, 2 MB for a 64 GB swap device) says which blocks hold data; a block
//! never written, discarded, or written with zeros reads as zeros without touching the file,
//! and writing zeros only clears its bit.
//!
//! The file is scratch space: it is removed when the [`SwapFile`] is dropped (with the
//! machine). A discarded block keeps its old bytes in the file until it is written again; the
//! file grows to at most the highest block written.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::BLOCK_BYTES;

/// Most blocks a swap file holds: the swap entry's offset field (2^24 slots, 64 GB).
pub const MAX_SWAP_FILE_BLOCKS: u64 = highpte_arch::swap::SWP_OFFSET_MAX as u64 + 1;

/// Why a swap file could not be set up when the machine was built.
#[derive(Debug, thiserror::Error)]
#[error("cannot use '{}' as the swap file: {source}; {hint}", path.display())]
pub struct SwapFileError {
    /// The path asked for.
    pub path: PathBuf,
    /// What the host OS said.
    pub source: io::Error,
    /// How to fix it.
    pub hint: &'static str,
}

impl SwapFileError {
    fn new(path: &Path, source: io::Error) -> Self {
        let hint = match source.kind() {
            io::ErrorKind::NotFound => {
                "its directory does not exist: create it or choose a path in an existing directory"
            }
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                "choose a path in a directory you can write to"
            }
            io::ErrorKind::InvalidInput => "choose a path that is not taken, or a regular file",
            _ => "choose a path on a writable local file system",
        };
        Self {
            path: path.to_path_buf(),
            source,
            hint,
        }
    }
}

/// A host I/O error on the swap file during a run. The machine stops the simulation with
/// [`crate::RunOutcome::HostIo`]: the kernel has no way to recover a page it cannot read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostIoError {
    /// The swap file.
    pub path: PathBuf,
    /// The block being transferred.
    pub block: u64,
    /// True for a write (page to file), false for a read.
    pub write: bool,
    /// The OS error number (`errno`), when the OS gave one.
    pub errno: Option<i32>,
    /// The OS's description of the error.
    pub message: String,
}

impl HostIoError {
    fn new(path: &Path, block: u64, write: bool, e: &io::Error) -> Self {
        Self {
            path: path.to_path_buf(),
            block,
            write,
            errno: e.raw_os_error(),
            message: e.to_string(),
        }
    }
}

impl std::fmt::Display for HostIoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hint = match self.errno {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG) => {
                "free space there, or put the swap file on a file system with room for the swap size"
            }
            _ => "check the file system that holds it",
        };
        write!(
            f,
            "host I/O error: {} block {} of the swap file '{}' failed: {}; {hint}",
            if self.write { "writing" } else { "reading" },
            self.block,
            self.path.display(),
            self.message
        )
    }
}

impl std::error::Error for HostIoError {}

/// The blocks of one swap device, in a host file (see the module docs).
#[derive(Debug)]
pub struct SwapFile {
    file: File,
    path: PathBuf,
    /// One bit per block, set while the block holds data in the file; grows on demand up to
    /// the highest block written.
    present: Vec<u64>,
    /// Bits set in `present`.
    stored: usize,
}

impl SwapFile {
    /// Create the file at `path`, or truncate it if it is a regular file already.
    pub fn create(path: &Path) -> Result<Self, SwapFileError> {
        if let Ok(m) = std::fs::metadata(path) {
            if !m.is_file() {
                let e = io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "it exists and is not a regular file",
                );
                return Err(SwapFileError::new(path, e));
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| SwapFileError::new(path, e))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            present: Vec::new(),
            stored: 0,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Blocks holding data.
    pub fn stored_blocks(&self) -> usize {
        self.stored
    }

    /// Host memory the block bitset takes, in bytes.
    pub fn bitset_bytes(&self) -> usize {
        self.present.len() * 8
    }

    /// The file's size on the host, in bytes (its highest written byte, not the disk space
    /// it takes: the file is sparse).
    pub fn host_len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn holds(&self, block: u64) -> bool {
        let word = (block / 64) as usize;
        self.present
            .get(word)
            .is_some_and(|w| w & (1 << (block % 64)) != 0)
    }

    /// Set or clear the bit of `block` (which [`SwapFile::offset`] checked), keeping `stored`.
    fn set(&mut self, block: u64, on: bool) {
        let word = (block / 64) as usize;
        let bit = 1u64 << (block % 64);
        if word >= self.present.len() {
            if !on {
                return;
            }
            self.present.resize(word + 1, 0);
        }
        let w = &mut self.present[word];
        if (*w & bit != 0) != on {
            *w ^= bit;
            if on {
                self.stored += 1;
            } else {
                self.stored -= 1;
            }
        }
    }

    /// The byte offset of `block`, refusing blocks a swap entry cannot name (they would make
    /// the bitset huge).
    fn offset(&self, block: u64, write: bool) -> Result<u64, HostIoError> {
        if block >= MAX_SWAP_FILE_BLOCKS {
            let e = io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "block {block} is past the largest swap device ({MAX_SWAP_FILE_BLOCKS} blocks)"
                ),
            );
            return Err(HostIoError::new(&self.path, block, write, &e));
        }
        Ok(block * BLOCK_BYTES as u64)
    }

    /// Read block `block` into `buf` (zeros if it holds no data).
    pub fn read(&self, block: u64, buf: &mut [u8; BLOCK_BYTES]) -> Result<(), HostIoError> {
        if !self.holds(block) {
            buf.fill(0);
            return Ok(());
        }
        let off = self.offset(block, false)?;
        self.file
            .read_exact_at(buf, off)
            .map_err(|e| HostIoError::new(&self.path, block, false, &e))
    }

    /// Write `buf` to block `block`; a block of zeros only clears its bit.
    pub fn write(&mut self, block: u64, buf: &[u8; BLOCK_BYTES]) -> Result<(), HostIoError> {
        let off = self.offset(block, true)?;
        if buf.iter().all(|&b| b == 0) {
            self.set(block, false);
            return Ok(());
        }
        self.file
            .write_all_at(buf, off)
            .map_err(|e| HostIoError::new(&self.path, block, true, &e))?;
        self.set(block, true);
        Ok(())
    }

    /// Forget a block's contents (its bytes stay in the file until it is written again).
    pub fn discard(&mut self, block: u64) {
        if block < MAX_SWAP_FILE_BLOCKS {
            self.set(block, false);
        }
    }
}

impl Drop for SwapFile {
    fn drop(&mut self) {
        // Scratch space: nothing in it means anything once the machine is gone. Removing a
        // file another process already removed is not an error worth reporting.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "highpte-swapfile-unit-{}-{name}",
            std::process::id()
        ))
    }

    #[test]
    fn bitset_counts_sets_and_clears_once() {
        let p = scratch("bitset");
        let mut f = SwapFile::create(&p).unwrap();
        let mut page = [0u8; 4096];
        page[0] = 1;
        for b in [0, 63, 64, 1000, 1000] {
            f.write(b, &page).unwrap();
        }
        assert_eq!(f.stored_blocks(), 4, "block 1000 written twice counts once");
        assert!(f.holds(63) && f.holds(64) && !f.holds(62) && !f.holds(65));
        assert_eq!(f.bitset_bytes(), (1000 / 64 + 1) * 8);
        f.discard(64);
        f.discard(64);
        f.discard(5_000_000); // beyond the bitset: nothing to clear, no growth
        assert_eq!(f.stored_blocks(), 3);
        assert_eq!(f.bitset_bytes(), (1000 / 64 + 1) * 8);
        f.write(63, &[0u8; 4096]).unwrap();
        assert_eq!(f.stored_blocks(), 2);
        // the largest device fits in a 2 MB bitset
        f.write(MAX_SWAP_FILE_BLOCKS - 1, &page).unwrap();
        assert_eq!(f.bitset_bytes(), 2 << 20);
        let e = f.write(MAX_SWAP_FILE_BLOCKS, &page).unwrap_err();
        assert!(
            e.to_string().contains("past the largest swap device"),
            "{e}"
        );
        drop(f);
        assert!(!p.exists(), "the file is removed with the swap file");
    }

    #[test]
    fn a_directory_or_missing_parent_is_refused_with_the_path() {
        let e = SwapFile::create(&std::env::temp_dir()).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let missing = scratch("no-such-dir").join("swap");
        let e = SwapFile::create(&missing).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(&missing.display().to_string()), "{text}");
        assert!(text.contains("directory does not exist"), "{text}");
        assert_eq!(e.source.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn host_write_errors_name_the_path_block_and_errno() {
        let p = scratch("readonly");
        let mut f = SwapFile::create(&p).unwrap();
        // a read-only handle on the same file: every write fails with EBADF
        f.file = File::open(&p).unwrap();
        let mut page = [0u8; 4096];
        page[7] = 7;
        let e = f.write(3, &page).unwrap_err();
        assert_eq!(e.errno, Some(libc::EBADF));
        assert_eq!((e.block, e.write), (3, true));
        let text = e.to_string();
        assert!(text.contains("writing block 3"), "{text}");
        assert!(text.contains(&p.display().to_string()), "{text}");
        assert_eq!(f.stored_blocks(), 0, "a failed write stores nothing");
    }
}
