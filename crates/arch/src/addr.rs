//! Physical and virtual addresses and page frame numbers.
//!
//! Constructors are checked: a physical address wider than 36 bits (the PAE limit of the
//! 2002 machines) or a virtual address wider than 32 bits is an error, never truncated.

use core::fmt;

/// log2 of the 4 KB base page size.
pub const PAGE_SHIFT: u32 = 12;
/// The base page size, 4096 bytes.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// Mask selecting the page-aligned part of an address (as in Linux, `~(PAGE_SIZE - 1)`).
pub const PAGE_MASK: u64 = !(PAGE_SIZE - 1);
/// Widest physical address any configuration can form: 36 bits with PAE (SDM 4.4: MAXPHYADDR
/// of the Pentium 4 Xeon era).
pub const MAX_PHYS_BITS: u32 = 36;

/// A physical address (up to 36 bits).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysAddr(u64);

impl PhysAddr {
    /// A physical address, or `None` if it needs more than 36 bits.
    pub const fn new(addr: u64) -> Option<Self> {
        if addr >> MAX_PHYS_BITS == 0 {
            Some(Self(addr))
        } else {
            None
        }
    }
    /// A physical address whose width the caller has already checked.
    ///
    /// Panics (in every build) if it is wider than 36 bits: that is a kernel bug, not input.
    pub const fn new_checked(addr: u64) -> Self {
        match Self::new(addr) {
            Some(a) => a,
            None => panic!("physical address wider than 36 bits"),
        }
    }
    /// The raw value.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
    /// The frame holding this address.
    pub const fn pfn(self) -> Pfn {
        Pfn(self.0 >> PAGE_SHIFT)
    }
    /// Offset inside the 4 KB page.
    pub const fn page_offset(self) -> u64 {
        self.0 & (PAGE_SIZE - 1)
    }
    /// True if page aligned.
    pub const fn is_page_aligned(self) -> bool {
        self.page_offset() == 0
    }
    /// This address plus `off` bytes, or `None` past 36 bits.
    pub const fn checked_add(self, off: u64) -> Option<Self> {
        match self.0.checked_add(off) {
            Some(v) => Self::new(v),
            None => None,
        }
    }
}

impl fmt::Debug for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhysAddr({:#011x})", self.0)
    }
}
impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#011x}", self.0)
    }
}

/// A 32-bit linear (virtual) address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VirtAddr(u32);

impl VirtAddr {
    /// A virtual address from its 32-bit value.
    pub const fn new(addr: u32) -> Self {
        Self(addr)
    }
    /// A virtual address from a wider value, or `None` if it does not fit in 32 bits.
    pub const fn try_from_u64(addr: u64) -> Option<Self> {
        if addr >> 32 == 0 {
            Some(Self(addr as u32))
        } else {
            None
        }
    }
    /// The raw value.
    pub const fn as_u32(self) -> u32 {
        self.0
    }
    /// The raw value, widened.
    pub const fn as_u64(self) -> u64 {
        self.0 as u64
    }
    /// Virtual page number (address >> 12).
    pub const fn vpn(self) -> u32 {
        self.0 >> PAGE_SHIFT
    }
    /// Offset inside the 4 KB page.
    pub const fn page_offset(self) -> u32 {
        self.0 & (PAGE_SIZE as u32 - 1)
    }
    /// Round down to the page.
    pub const fn page_base(self) -> Self {
        Self(self.0 & PAGE_MASK as u32)
    }
    /// True if page aligned.
    pub const fn is_page_aligned(self) -> bool {
        self.page_offset() == 0
    }
    /// This address plus `off` bytes, or `None` on wrap past 4 GB.
    pub const fn checked_add(self, off: u32) -> Option<Self> {
        match self.0.checked_add(off) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }
}

impl fmt::Debug for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VirtAddr({:#010x})", self.0)
    }
}
impl fmt::Display for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

/// A page frame number: physical address >> 12 (24 bits suffice for 64 GB).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Pfn(pub u64);

impl Pfn {
    /// The frame's first byte.
    pub const fn addr(self) -> PhysAddr {
        PhysAddr(self.0 << PAGE_SHIFT)
    }
    /// The raw frame number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
    /// As an index into per-frame arrays (mem_map).
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phys_addr_width_is_checked() {
        assert!(PhysAddr::new((1 << 36) - 1).is_some());
        assert!(PhysAddr::new(1 << 36).is_none());
        assert_eq!(PhysAddr::new(0x1_2345_6789).unwrap().pfn(), Pfn(0x123456));
        assert_eq!(Pfn(0xfffff).addr().as_u64(), 0xffff_f000);
        assert!(PhysAddr::new(0xf_ffff_f000)
            .unwrap()
            .checked_add(0x1000)
            .is_none());
    }

    #[test]
    fn virt_addr_math() {
        let v = VirtAddr::new(0xc012_3456);
        assert_eq!(v.vpn(), 0xc0123);
        assert_eq!(v.page_offset(), 0x456);
        assert_eq!(v.page_base().as_u32(), 0xc012_3000);
        assert!(VirtAddr::try_from_u64(1 << 32).is_none());
        assert!(VirtAddr::new(0xffff_f000).checked_add(0x1000).is_none());
    }
}
