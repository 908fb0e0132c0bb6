//! Swap entries in non-present ptes, encoded the way Linux 2.5 did on i386.
//!
//! A pte that is not present and does not map a page (`_PAGE_PROTNONE`, bit 7, clear) but is
//! not empty holds a *swap entry*: which swap device (`type`) and which slot on it (`offset`)
//! the page was written to. The hardware ignores every other bit of a non-present entry
//! (SDM 4.3, 4.4.2), so the kernel is free to use them.
//!
//! The swap entry value (`swp_entry_t.val`) has bit 0 (P) and bit 7 (PROTNONE) clear, the
//! type in bits 1..=6 and the offset from bit 8 up:
//!
//! ```text
//!  31                                8 7 6          1 0
//! +-----------------------------------+-+------------+-+
//! |             offset                |0|    type    |0|
//! +-----------------------------------+-+------------+-+
//! ```
//!
//! * 2-level paging: the pte *is* the value (`__swp_entry_to_pte(x) = { x.val }`).
//! * PAE: the value sits in the high 32 bits and the low word is zero
//!   (`{ .pte_low = 0, .pte_high = x.val }`), so the P bit, in the low word, is clear whatever
//!   the offset. A PAE swap pte therefore has a zero low half: it is "not none" only through
//!   its high half, and code that tests `pte_none` must look at all 64 bits.
//!
//! Offset 0 of every device is its header and never holds a page, so no swap entry is zero.

use crate::entry::Entry;

/// Bits of the type field (`__swp_type`: 6 bits → up to 64 devices; Linux allowed 32).
pub const SWP_TYPE_BITS: u32 = 6;
/// Most swap devices (`MAX_SWAPFILES` of 2.5).
pub const MAX_SWAPFILES: u32 = 32;
/// Largest offset a swap entry can hold: 24 bits (64 GB of swap per device in 4 KB slots).
pub const SWP_OFFSET_MAX: u32 = (1 << 24) - 1;

/// A swap entry (`swp_entry_t`): device and slot.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SwapEntry {
    /// The swap device (`swp_type`).
    pub typ: u8,
    /// The slot on the device (`swp_offset`); never 0 (the header).
    pub offset: u32,
}

impl SwapEntry {
    /// `swp_entry(type, offset)`. `None` if the type or offset does not fit, or the offset is
    /// the header slot 0.
    pub const fn new(typ: u8, offset: u32) -> Option<SwapEntry> {
        if typ as u32 >= MAX_SWAPFILES || offset == 0 || offset > SWP_OFFSET_MAX {
            None
        } else {
            Some(SwapEntry { typ, offset })
        }
    }

    /// The 32-bit value (`swp_entry_t.val`).
    pub const fn val(self) -> u32 {
        ((self.typ as u32) << 1) | (self.offset << 8)
    }

    /// Decode a value; `None` for values that cannot be swap entries (P or bit 7 set, or
    /// offset 0).
    pub const fn from_val(val: u32) -> Option<SwapEntry> {
        if val & 0x81 != 0 {
            return None;
        }
        SwapEntry::new(((val >> 1) & 0x3f) as u8, val >> 8)
    }

    /// `__swp_entry_to_pte` for the paging mode (`pae`).
    pub const fn to_pte(self, pae: bool) -> Entry {
        if pae {
            Entry((self.val() as u64) << 32)
        } else {
            Entry(self.val() as u64)
        }
    }

    /// `__pte_to_swp_entry`: the swap entry a pte holds, or `None` for an empty pte, a
    /// present pte or a PROT_NONE pte (those map a page).
    pub const fn from_pte(pte: Entry, pae: bool) -> Option<SwapEntry> {
        if pte.0 & 0x81 != 0 {
            return None;
        }
        if pae {
            if pte.0 as u32 != 0 {
                return None;
            }
            SwapEntry::from_val((pte.0 >> 32) as u32)
        } else {
            if pte.0 >> 32 != 0 {
                return None;
            }
            SwapEntry::from_val(pte.0 as u32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The i386 layout of 2.5: type at bits 1..6, offset from bit 8.
    #[test]
    fn two_level_layout() {
        let e = SwapEntry::new(3, 0x12345).unwrap();
        assert_eq!(e.val(), 0x0123_4506);
        let pte = e.to_pte(false);
        assert_eq!(pte.bits(), 0x0123_4506);
        assert!(!pte.is_present() && !pte.is_none());
        assert_eq!(SwapEntry::from_pte(pte, false), Some(e));
    }

    /// PAE: the value in the high word, the low word (with P) zero.
    #[test]
    fn pae_layout() {
        let e = SwapEntry::new(1, 0xff_ffff).unwrap();
        let pte = e.to_pte(true);
        assert_eq!(pte.bits(), 0xffff_ff02_0000_0000);
        assert_eq!(pte.low(), 0);
        assert!(!pte.is_present() && !pte.is_none());
        assert_eq!(SwapEntry::from_pte(pte, true), Some(e));
    }

    #[test]
    fn pages_and_empty_ptes_are_not_swap_entries() {
        for pae in [false, true] {
            assert_eq!(SwapEntry::from_pte(Entry::NONE, pae), None);
            // present
            assert_eq!(SwapEntry::from_pte(Entry(0x1234_5067), pae), None);
            // PROT_NONE: bit 7 with a frame
            assert_eq!(SwapEntry::from_pte(Entry(0x1234_50a4), pae), None);
        }
        // a PAE pte with a low word is not a swap entry
        assert_eq!(SwapEntry::from_pte(Entry(0x1_0000_0100), true), None);
    }

    #[test]
    fn limits() {
        assert_eq!(SwapEntry::new(0, 0), None, "slot 0 is the header");
        assert_eq!(SwapEntry::new(32, 1), None);
        assert_eq!(SwapEntry::new(0, 1 << 24), None);
        assert!(SwapEntry::new(31, SWP_OFFSET_MAX).is_some());
    }
}
