//! Simulated block devices (swap devices and the disk), kept in host memory or, for swap
//! device 0, in a host file ([`swap_file`]).
//!
//! Blocks are 4 KB pages, stored sparsely: a block never written (or discarded, or written
//! with zeros) costs no host memory and reads as zeros. Transfers are DMA between a device
//! block and a physical page of the simulated machine, so the kernel needs no mapping of the
//! page (as a bio on real hardware). Where a block is kept never changes what the simulation
//! sees: the same data comes back, at the same simulated cost.

pub mod swap_file;

use highpte_kernel::BlockDev;
use std::collections::HashMap;
use std::path::Path;
pub use swap_file::{HostIoError, SwapFile, SwapFileError};

/// Cycles charged to the CPU that issues one 4 KB transfer: 100 µs at the 2002 model's
/// 2 GHz, a streaming 2002 IDE disk (~40 MB/s) on clustered swap or file I/O. Seeks are not
/// modelled. The issuing task then yields its CPU (`cond_resched`) as a task waiting for
/// I/O would.
pub const BLOCK_IO_CYCLES: u64 = 200_000;

/// The swap device a swap file backs: the kernel's only one (type 0, see
/// `highpte_kernel::mm::swap`). Any other device stays in host memory.
pub const SWAP_FILE_DEVICE: BlockDev = BlockDev::Swap(0);

/// Bytes in a block: a block holds one page.
pub const BLOCK_BYTES: usize = highpte_arch::PAGE_SIZE as usize;

/// One block.
type Block = Box<[u8; BLOCK_BYTES]>;

/// Where the swap device's blocks live.
#[derive(Debug, Default)]
pub enum SwapBacking {
    /// In host memory, with the disk's.
    #[default]
    HostMemory,
    /// In a host file.
    File(SwapFile),
}

/// Every block device of the machine.
#[derive(Default)]
pub struct BlockStore {
    /// Blocks kept in host memory: the disk's, and the swap device's without a swap file.
    memory: HashMap<(BlockDev, u64), Block>,
    swap: SwapBacking,
    reads: u64,
    writes: u64,
}

impl BlockStore {
    /// Block devices in host memory, except swap device 0 in a file at `swap_file` (created
    /// or truncated now, removed when the store is dropped).
    pub fn new(swap_file: Option<&Path>) -> Result<Self, SwapFileError> {
        let swap = match swap_file {
            Some(p) => SwapBacking::File(SwapFile::create(p)?),
            None => SwapBacking::HostMemory,
        };
        Ok(Self {
            swap,
            ..Self::default()
        })
    }

    /// The swap file, if `dev`'s blocks live in one.
    #[inline]
    fn file_of(&mut self, dev: BlockDev) -> Option<&mut SwapFile> {
        match &mut self.swap {
            SwapBacking::File(f) if dev == SWAP_FILE_DEVICE => Some(f),
            _ => None,
        }
    }

    /// Read block `block` of `dev` into `buf`.
    pub fn read(
        &mut self,
        dev: BlockDev,
        block: u64,
        buf: &mut [u8; BLOCK_BYTES],
    ) -> Result<(), HostIoError> {
        self.reads += 1;
        self.peek(dev, block, buf)
    }

    /// Write `buf` to block `block` of `dev`.
    pub fn write(
        &mut self,
        dev: BlockDev,
        block: u64,
        buf: &[u8; BLOCK_BYTES],
    ) -> Result<(), HostIoError> {
        self.writes += 1;
        if let Some(f) = self.file_of(dev) {
            return f.write(block, buf);
        }
        if buf.iter().all(|&b| b == 0) {
            self.memory.remove(&(dev, block));
        } else {
            match self.memory.get_mut(&(dev, block)) {
                Some(b) => b.copy_from_slice(buf),
                None => {
                    self.memory.insert((dev, block), Box::new(*buf));
                }
            }
        }
        Ok(())
    }

    /// Look at a block without counting a read (for tests and reports).
    pub fn peek(
        &self,
        dev: BlockDev,
        block: u64,
        buf: &mut [u8; BLOCK_BYTES],
    ) -> Result<(), HostIoError> {
        match &self.swap {
            SwapBacking::File(f) if dev == SWAP_FILE_DEVICE => f.read(block, buf),
            _ => {
                match self.memory.get(&(dev, block)) {
                    Some(b) => buf.copy_from_slice(&b[..]),
                    None => buf.fill(0),
                }
                Ok(())
            }
        }
    }

    /// Forget a block's contents.
    pub fn discard(&mut self, dev: BlockDev, block: u64) {
        match self.file_of(dev) {
            Some(f) => f.discard(block),
            None => {
                self.memory.remove(&(dev, block));
            }
        }
    }

    /// Blocks holding data, in host memory and in the swap file.
    pub fn stored_blocks(&self) -> usize {
        self.memory_blocks() + self.swap_file().map_or(0, SwapFile::stored_blocks)
    }

    /// Blocks holding data in host memory (4 KB each).
    pub fn memory_blocks(&self) -> usize {
        self.memory.len()
    }

    /// The swap file, if the swap device lives in one.
    pub fn swap_file(&self) -> Option<&SwapFile> {
        match &self.swap {
            SwapBacking::File(f) => Some(f),
            SwapBacking::HostMemory => None,
        }
    }

    /// Blocks read and written since boot.
    pub fn io_counts(&self) -> (u64, u64) {
        (self.reads, self.writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::path::PathBuf;

    /// A scratch path for one test (unique in this process and across processes).
    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "highpte-blockdev-unit-{}-{name}",
            std::process::id()
        ))
    }

    fn page(fill: u8) -> [u8; 4096] {
        let mut b = [0u8; 4096];
        b[0] = fill;
        b[4095] = fill.wrapping_add(1);
        b
    }

    #[test]
    fn sparse_blocks_read_back_and_zero_when_unwritten() {
        let mut s = BlockStore::default();
        let mut buf = [0u8; 4096];
        s.read(BlockDev::Swap(0), 7, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
        buf[100] = 42;
        s.write(BlockDev::Swap(0), 7, &buf).unwrap();
        assert_eq!(s.stored_blocks(), 1);
        let mut back = [0u8; 4096];
        s.read(BlockDev::Swap(0), 7, &mut back).unwrap();
        assert_eq!(back[100], 42);
        // other devices are separate
        s.read(BlockDev::Disk, 7, &mut back).unwrap();
        assert_eq!(back[100], 0);
        s.discard(BlockDev::Swap(0), 7);
        assert_eq!(s.stored_blocks(), 0);
        s.write(BlockDev::Disk, 1, &[0u8; 4096]).unwrap();
        assert_eq!(s.stored_blocks(), 0, "a zero block costs nothing");
        assert_eq!(s.io_counts(), (3, 2));
    }

    #[test]
    fn file_backed_swap_round_trips_and_keeps_the_disk_in_memory() {
        let p = scratch("roundtrip");
        let mut s = BlockStore::new(Some(&p)).unwrap();
        assert_eq!(s.swap_file().map(SwapFile::path), Some(p.as_path()));
        s.write(BlockDev::Swap(0), 5, &page(9)).unwrap();
        s.write(BlockDev::Swap(0), 1000, &page(3)).unwrap();
        s.write(BlockDev::Disk, 5, &page(4)).unwrap();
        let mut back = [0u8; 4096];
        s.read(BlockDev::Swap(0), 5, &mut back).unwrap();
        assert_eq!(back, page(9));
        s.peek(BlockDev::Swap(0), 1000, &mut back).unwrap();
        assert_eq!(back, page(3));
        s.read(BlockDev::Disk, 5, &mut back).unwrap();
        assert_eq!(back, page(4), "the disk is a separate device");
        // block N at byte N * 4096 of the file
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes.len(), 1001 * 4096);
        assert_eq!(bytes[5 * 4096..6 * 4096], page(9));
        assert_eq!(bytes[1000 * 4096..], page(3));
        assert_eq!(s.stored_blocks(), 3);
        assert_eq!(
            s.memory_blocks(),
            1,
            "only the disk block is in host memory"
        );
        assert_eq!(s.io_counts(), (2, 3), "a peek is not a read");
        drop(s);
        assert!(!p.exists(), "the swap file is removed with the store");
    }

    #[test]
    fn zeros_and_discards_never_touch_the_file() {
        let p = scratch("zeros");
        let mut s = BlockStore::new(Some(&p)).unwrap();
        s.write(BlockDev::Swap(0), 40, &[0u8; 4096]).unwrap();
        assert_eq!(s.stored_blocks(), 0, "a zero block costs nothing");
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0, "nothing written");
        s.write(BlockDev::Swap(0), 2, &page(1)).unwrap();
        s.discard(BlockDev::Swap(0), 2);
        assert_eq!(s.stored_blocks(), 0);
        let mut back = page(77);
        s.read(BlockDev::Swap(0), 2, &mut back).unwrap();
        assert_eq!(back, [0u8; 4096], "a discarded block reads as zeros");
        // its old bytes stay in the file, never read again
        assert_eq!(std::fs::read(&p).unwrap()[2 * 4096..], page(1));
        s.write(BlockDev::Swap(0), 2, &page(5)).unwrap();
        s.write(BlockDev::Swap(0), 2, &[0u8; 4096]).unwrap();
        s.read(BlockDev::Swap(0), 2, &mut back).unwrap();
        assert_eq!(
            back, [0u8; 4096],
            "writing zeros over data reads back zeros"
        );
        assert_eq!(s.stored_blocks(), 0);
    }

    #[test]
    fn file_and_memory_backings_read_the_same() {
        // the same random sequence of writes (some of zeros), discards and reads on both
        let p = scratch("differential");
        let mut mem = BlockStore::default();
        let mut file = BlockStore::new(Some(&p)).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let devs = [BlockDev::Swap(0), BlockDev::Swap(1), BlockDev::Disk];
        for step in 0..4000 {
            let dev = devs[rng.random_range(0..devs.len())];
            let block = rng.random_range(0..300u64);
            match rng.random_range(0..4) {
                0 => {
                    let b = match rng.random_range(0..4u8) {
                        0 => [0u8; 4096],
                        v => page(v),
                    };
                    mem.write(dev, block, &b).unwrap();
                    file.write(dev, block, &b).unwrap();
                }
                1 => {
                    mem.discard(dev, block);
                    file.discard(dev, block);
                }
                _ => {
                    let (mut a, mut b) = ([1u8; 4096], [2u8; 4096]);
                    mem.read(dev, block, &mut a).unwrap();
                    file.read(dev, block, &mut b).unwrap();
                    assert_eq!(a, b, "step {step}: {dev:?} block {block}");
                }
            }
            assert_eq!(mem.stored_blocks(), file.stored_blocks(), "step {step}");
        }
        assert_eq!(mem.io_counts(), file.io_counts());
        let in_file = file.swap_file().map_or(0, SwapFile::stored_blocks);
        assert!(in_file > 0);
        assert_eq!(file.memory_blocks() + in_file, mem.memory_blocks());
    }
}
