//! The kmap_atomic slot types (`enum km_type`).
//!
//! 2.5.5 had BOUNCE_READ, SKB_DATA, SKB_DATA_SOFTIRQ, USER0, USER1, BIO_IRQ, PTE0 and PTE1;
//! PTE2 arrived with rmap (Aug 2002) and the IRQ/SOFTIRQ pairs later. Each CPU owns one fixmap
//! slot per type, so two users of the same type on one CPU at once is a bug the debug helpers
//! catch.

/// A kmap_atomic slot type.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[repr(u8)]
pub enum KmType {
    /// Bounce-buffer reads.
    BounceRead = 0,
    /// Network skb data.
    SkbData,
    /// Network skb data in softirq context.
    SkbDataSoftirq,
    /// copy_user_highpage: the first page.
    User0,
    /// copy_user_highpage: the second page.
    User1,
    /// Block I/O in interrupt context.
    BioIrq,
    /// `pte_offset_map`: the first mapped pte page.
    Pte0,
    /// `pte_offset_map_nested`: the second mapped pte page (fork, mremap).
    Pte1,
    /// rmap: reclaim maps a pte by its physical address.
    Pte2,
    /// Hard interrupt context, first.
    Irq0,
    /// Hard interrupt context, second.
    Irq1,
    /// Soft interrupt context, first.
    Softirq0,
    /// Soft interrupt context, second.
    Softirq1,
}

impl KmType {
    /// Number of slot types (`KM_TYPE_NR`).
    pub const NR: u32 = 13;
    /// Every type, in index order.
    pub const ALL: [KmType; 13] = [
        KmType::BounceRead,
        KmType::SkbData,
        KmType::SkbDataSoftirq,
        KmType::User0,
        KmType::User1,
        KmType::BioIrq,
        KmType::Pte0,
        KmType::Pte1,
        KmType::Pte2,
        KmType::Irq0,
        KmType::Irq1,
        KmType::Softirq0,
        KmType::Softirq1,
    ];
    /// The slot index of this type within one CPU's slots.
    pub const fn index(self) -> u32 {
        self as u32
    }
    /// The Linux name (`KM_PTE0`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            KmType::BounceRead => "KM_BOUNCE_READ",
            KmType::SkbData => "KM_SKB_DATA",
            KmType::SkbDataSoftirq => "KM_SKB_DATA_SOFTIRQ",
            KmType::User0 => "KM_USER0",
            KmType::User1 => "KM_USER1",
            KmType::BioIrq => "KM_BIO_IRQ",
            KmType::Pte0 => "KM_PTE0",
            KmType::Pte1 => "KM_PTE1",
            KmType::Pte2 => "KM_PTE2",
            KmType::Irq0 => "KM_IRQ0",
            KmType::Irq1 => "KM_IRQ1",
            KmType::Softirq0 => "KM_SOFTIRQ0",
            KmType::Softirq1 => "KM_SOFTIRQ1",
        }
    }
    /// The type with the given index.
    pub const fn from_index(i: u32) -> Option<KmType> {
        if i < Self::NR {
            Some(Self::ALL[i as usize])
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn indices_are_dense_and_ordered() {
        for (i, t) in KmType::ALL.iter().enumerate() {
            assert_eq!(t.index(), i as u32);
            assert_eq!(KmType::from_index(i as u32), Some(*t));
        }
        assert_eq!(KmType::Pte0.index(), 6);
        assert_eq!(KmType::Pte1.index(), 7);
        assert_eq!(KmType::Pte2.index(), 8);
        assert_eq!(KmType::from_index(13), None);
    }
}
