//! The page-fault error code pushed by the processor (SDM vol. 3, 4.7, figure 4-12).

use bitflags::bitflags;

bitflags! {
    /// Page-fault error code bits.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
    pub struct PageFaultErrorCode: u32 {
        /// Bit 0, P: 0 = the page was not present; 1 = a protection violation.
        const PRESENT = 1 << 0;
        /// Bit 1, W/R: the access was a write.
        const WRITE = 1 << 1;
        /// Bit 2, U/S: the access was made in user mode (CPL 3).
        const USER = 1 << 2;
        /// Bit 3, RSVD: a reserved bit was set in some paging-structure entry.
        const RSVD = 1 << 3;
        /// Bit 4, I/D: the access was an instruction fetch.
        const INSTR = 1 << 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn error_code_bits_match_the_sdm() {
        assert_eq!(PageFaultErrorCode::PRESENT.bits(), 1);
        assert_eq!(PageFaultErrorCode::WRITE.bits(), 2);
        assert_eq!(PageFaultErrorCode::USER.bits(), 4);
        assert_eq!(PageFaultErrorCode::RSVD.bits(), 8);
        assert_eq!(PageFaultErrorCode::INSTR.bits(), 16);
    }
}
