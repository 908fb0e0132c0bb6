//! The multiboot (v1) information: the command line and the firmware's memory map.

use alloc::string::String;
use alloc::vec::Vec;

/// EAX at entry from a multiboot loader.
pub const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;

const PAGE_OFFSET: u32 = 0xC000_0000;

/// What the loader told us.
pub struct Info {
    /// The command line (QEMU's `-append`, after the image's name).
    pub cmdline: String,
    /// The e820 map: (start, length, type); type 1 is usable RAM.
    pub mmap: Vec<(u64, u64, u32)>,
}

/// Read a value at a physical address below 1 GB.
///
/// # Safety
/// `pa` is below 1 GB, mapped at PAGE_OFFSET by the temporary tables.
unsafe fn rd<T: Copy>(pa: u32) -> T {
    // SAFETY: forwarded; multiboot structures are not aligned, so read unaligned.
    unsafe { core::ptr::read_unaligned((PAGE_OFFSET + pa) as *const T) }
}

impl Info {
    /// Copy what we need out of the structure at physical `mbi`.
    ///
    /// # Safety
    /// `mbi` is the multiboot information the loader left, below 1 GB, before anything
    /// overwrote it.
    pub unsafe fn read(mbi: u32) -> Info {
        // SAFETY: the loader's structure and the strings and map it points to.
        unsafe {
            let flags: u32 = rd(mbi);
            let mut cmdline = String::new();
            if flags & (1 << 2) != 0 {
                let mut p: u32 = rd(mbi + 16);
                loop {
                    let b: u8 = rd(p);
                    if b == 0 || cmdline.len() > 4096 {
                        break;
                    }
                    cmdline.push(b as char);
                    p += 1;
                }
            }
            let mut mmap = Vec::new();
            if flags & (1 << 6) != 0 {
                let len: u32 = rd(mbi + 44);
                let addr: u32 = rd(mbi + 48);
                let mut at = addr;
                while at < addr + len {
                    let size: u32 = rd(at);
                    let base: u64 = rd(at + 4);
                    let length: u64 = rd(at + 12);
                    let ty: u32 = rd(at + 20);
                    mmap.push((base, length, ty));
                    at += size + 4;
                }
            }
            Info { cmdline, mmap }
        }
    }

    /// The value of `key=value` on the command line.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.cmdline.split_whitespace().find_map(|w| {
            let (k, v) = w.split_once('=')?;
            (k == key).then_some(v)
        })
    }

    /// True if `[start, end)` is usable RAM in the firmware's map.
    pub fn is_ram(&self, start: u64, end: u64) -> bool {
        self.mmap
            .iter()
            .any(|&(b, l, t)| t == 1 && b <= start && end <= b + l)
    }
}
