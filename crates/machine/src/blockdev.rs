//! Simulated block devices (swap devices and the disk), kept in host memory.
//!
//! Blocks are 4 KB pages, stored sparsely: a block never written (or discarded, or written
//! with zeros) costs no host memory and reads as zeros. Transfers are DMA between a device
//! block and a physical page of the simulated machine, so the kernel needs no mapping of the
//! page (as a bio on real hardware).

use highpte_kernel::BlockDev;
use std::collections::HashMap;

/// Cycles charged to the CPU that issues one 4 KB transfer: 100 µs at the 2002 model's
/// 2 GHz, a streaming 2002 IDE disk (~40 MB/s) on clustered swap or file I/O. Seeks are not
/// modelled. The issuing task then yields its CPU (`cond_resched`) as a task waiting for
/// I/O would.
pub const BLOCK_IO_CYCLES: u64 = 200_000;

/// One 4 KB block.
type Block = Box<[u8; 4096]>;

/// Every block device of the machine.
#[derive(Default)]
pub struct BlockStore {
    blocks: HashMap<(BlockDev, u64), Block>,
    reads: u64,
    writes: u64,
}

impl BlockStore {
    /// Read block `block` of `dev` into `buf`.
    pub fn read(&mut self, dev: BlockDev, block: u64, buf: &mut [u8; 4096]) {
        self.reads += 1;
        match self.blocks.get(&(dev, block)) {
            Some(b) => buf.copy_from_slice(&b[..]),
            None => buf.fill(0),
        }
    }

    /// Write `buf` to block `block` of `dev`.
    pub fn write(&mut self, dev: BlockDev, block: u64, buf: &[u8; 4096]) {
        self.writes += 1;
        if buf.iter().all(|&b| b == 0) {
            self.blocks.remove(&(dev, block));
        } else {
            match self.blocks.get_mut(&(dev, block)) {
                Some(b) => b.copy_from_slice(buf),
                None => {
                    self.blocks.insert((dev, block), Box::new(*buf));
                }
            }
        }
    }

    /// Look at a block without counting a read (for tests and reports).
    pub fn peek(&self, dev: BlockDev, block: u64, buf: &mut [u8; 4096]) {
        match self.blocks.get(&(dev, block)) {
            Some(b) => buf.copy_from_slice(&b[..]),
            None => buf.fill(0),
        }
    }

    /// Forget a block's contents.
    pub fn discard(&mut self, dev: BlockDev, block: u64) {
        self.blocks.remove(&(dev, block));
    }

    /// Blocks holding data (host memory: 4 KB each).
    pub fn stored_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Blocks read and written since boot.
    pub fn io_counts(&self) -> (u64, u64) {
        (self.reads, self.writes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_blocks_read_back_and_zero_when_unwritten() {
        let mut s = BlockStore::default();
        let mut buf = [0u8; 4096];
        s.read(BlockDev::Swap(0), 7, &mut buf);
        assert!(buf.iter().all(|&b| b == 0));
        buf[100] = 42;
        s.write(BlockDev::Swap(0), 7, &buf);
        assert_eq!(s.stored_blocks(), 1);
        let mut back = [0u8; 4096];
        s.read(BlockDev::Swap(0), 7, &mut back);
        assert_eq!(back[100], 42);
        // other devices are separate
        s.read(BlockDev::Disk, 7, &mut back);
        assert_eq!(back[100], 0);
        s.discard(BlockDev::Swap(0), 7);
        assert_eq!(s.stored_blocks(), 0);
        s.write(BlockDev::Disk, 1, &[0u8; 4096]);
        assert_eq!(s.stored_blocks(), 0, "a zero block costs nothing");
        assert_eq!(s.io_counts(), (3, 2));
    }
}
