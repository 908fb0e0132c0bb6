//! Folding a trace's addresses into the i386 user space (below `TASK_SIZE`, 0xC0000000).
//!
//! Under valgrind the traced program's layout is valgrind's: an i386 stack near 0xfeb18000,
//! above a 3G/1G kernel's user limit; amd64 traces put the stack near 0x1ffefff000. The fold
//! is deterministic and keeps every region's pages in order:
//! - the trace's pages (accesses, initial regions, system-call ranges) are grouped into
//!   clusters: ranges whose pages are less than 1 MB ([`CLUSTER_GAP`] pages) apart;
//! - clusters that end at or below `TASK_SIZE` stay where they are;
//! - the others are moved down, whole, highest first: the highest ends at `TASK_SIZE`, each
//!   next one ends 1 MB below the start of the one above it;
//! - if the moved clusters would come within 1 MB of the highest cluster that stays, the trace
//!   cannot fold and is refused, saying how many pages did not fit.

use super::scan::CLUSTER_GAP;

/// `TASK_SIZE` of the 3G/1G split, in pages: user addresses end here.
pub const TASK_SIZE_PAGE: u64 = (highpte_arch::layout::PAGE_OFFSET as u64) >> 12;

/// Where a trace's clusters go: `(start, end, delta)` for each moved cluster (a page `p` in
/// `[start, end)` replays at `p - delta`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fold {
    moves: Vec<(u64, u64, u64)>,
    /// The lowest moved page: every page below it stays.
    first_moved: u64,
}

impl Fold {
    /// The fold of `clusters` (pages `[start, end)`, lowest first, disjoint) into
    /// `[0, TASK_SIZE_PAGE)`, or why it cannot be done.
    pub fn plan(clusters: &[(u64, u64)]) -> Result<Fold, String> {
        let split = clusters.partition_point(|&(_, e)| e <= TASK_SIZE_PAGE);
        let (stay, go) = clusters.split_at(split);
        let mut fold = Fold {
            moves: Vec::new(),
            first_moved: u64::MAX,
        };
        let floor = stay.last().map_or(0, |&(_, e)| e + CLUSTER_GAP);
        let mut top = TASK_SIZE_PAGE;
        for &(s, e) in go.iter().rev() {
            let len = e - s;
            let need = go.iter().map(|(a, b)| b - a).sum::<u64>();
            if len > top || top - len < floor {
                return Err(format!(
                    "cannot fold the trace into the 3 GB i386 user space: {} pages ({} MB) in {} cluster(s) above 0xc0000000 do not fit between the highest region below it (ending at {:#x}) and 0xc0000000 with 1 MB gaps",
                    need,
                    need / 256,
                    go.len(),
                    stay.last().map_or(0, |&(_, e)| e << 12)
                ));
            }
            let ns = top - len;
            fold.moves.push((s, e, s - ns));
            fold.first_moved = fold.first_moved.min(s);
            top = ns.saturating_sub(CLUSTER_GAP);
        }
        fold.moves.sort_unstable();
        Ok(fold)
    }

    /// True if nothing moves.
    pub fn is_identity(&self) -> bool {
        self.moves.is_empty()
    }

    /// The moved clusters: `(start, end, new_start)` in pages.
    pub fn moves(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.moves.iter().map(|&(s, e, d)| (s, e, s - d))
    }

    /// Where page `p` replays. A page outside every cluster (impossible for a trace the plan
    /// was made from) stays.
    #[inline(always)]
    pub fn page(&self, p: u64) -> u64 {
        if p < self.first_moved {
            return p;
        }
        self.page_slow(p)
    }

    #[inline(never)]
    fn page_slow(&self, p: u64) -> u64 {
        for &(s, e, d) in &self.moves {
            if p >= s && p < e {
                return p - d;
            }
        }
        p
    }

    /// The address (32 bits) of page `p` after folding; `None` if it is still above the user
    /// space (not in any cluster the plan moved).
    #[inline(always)]
    pub fn addr(&self, p: u64) -> Option<u32> {
        let q = self.page(p);
        if q < TASK_SIZE_PAGE {
            Some((q << 12) as u32)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i386_stack_moves_below_task_size_keeping_order() {
        let cl = [(0x8048, 0x8220), (0xfeb00, 0xfeb19)];
        let f = Fold::plan(&cl).expect("folds");
        assert_eq!(f.page(0x8048), 0x8048);
        assert_eq!(f.page(0xfeb00), TASK_SIZE_PAGE - 0x19);
        assert_eq!(f.page(0xfeb18), TASK_SIZE_PAGE - 1);
        assert_eq!(f.addr(0xfeb18), Some(0xbfff_f000));
    }

    #[test]
    fn amd64_clusters_pack_from_the_top() {
        let cl = [
            (0x108, 0x200),
            (0x4800, 0x4900),
            (0x1_0000_0000, 0x1_0000_0010),
            (0x1ffeff0, 0x1fff000),
        ];
        let f = Fold::plan(&cl).expect("folds");
        assert_eq!(f.page(0x1fff000 - 1), TASK_SIZE_PAGE - 1);
        assert_eq!(f.page(0x1ffeff0), TASK_SIZE_PAGE - 0x10);
        // the next one down ends 1 MB below
        assert_eq!(
            f.page(0x1_0000_000f),
            TASK_SIZE_PAGE - 0x10 - CLUSTER_GAP - 1
        );
        assert_eq!(f.page(0x4800), 0x4800);
    }

    #[test]
    fn too_much_above_is_refused() {
        let cl = [(0x1000, 0xb0000), (0x100000, 0x120000)];
        let e = Fold::plan(&cl).unwrap_err();
        assert!(e.contains("cannot fold"), "{e}");
        assert!(e.contains("131072 pages"), "{e}");
    }
}
