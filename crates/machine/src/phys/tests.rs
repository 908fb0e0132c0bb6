use super::*;

#[test]
fn sizes_are_checked() {
    assert_eq!(
        PhysMem::new(0).unwrap_err(),
        PhysMemError::BadSize { size: 0 }
    );
    assert_eq!(
        PhysMem::new(4097).unwrap_err(),
        PhysMemError::BadSize { size: 4097 }
    );
    assert_eq!(
        PhysMem::new(MAX_PHYS_MEM + 4096).unwrap_err(),
        PhysMemError::BadSize {
            size: MAX_PHYS_MEM + 4096
        }
    );
    let m = PhysMem::new(16 * 4096).unwrap();
    assert_eq!(m.size(), 65536);
    assert_eq!(m.nr_pages(), 16);
}

#[test]
fn little_endian_and_out_of_range() {
    let m = PhysMem::new(2 * 4096).unwrap();
    m.write_u64(0x10, 0x1122_3344_5566_7788).unwrap();
    assert_eq!(m.read_u32(0x10).unwrap(), 0x5566_7788);
    assert_eq!(m.read_u32(0x14).unwrap(), 0x1122_3344);
    let mut b = [0u8; 3];
    m.read_bytes(0x10, &mut b).unwrap();
    assert_eq!(b, [0x88, 0x77, 0x66]);
    // unaligned, straddling the page boundary
    m.write_u32(0xffe, 0xdead_beef).unwrap();
    assert_eq!(m.read_u32(0xffe).unwrap(), 0xdead_beef);
    // last bytes are fine, one more is not
    m.write_u64(8192 - 8, 7).unwrap();
    assert_eq!(m.read_u64(8192 - 8).unwrap(), 7);
    assert_eq!(
        m.read_u64(8192 - 7),
        Err(PhysMemError::OutOfRange { addr: 8185, len: 8 })
    );
    assert_eq!(
        m.write_u32(8192 - 3, 1),
        Err(PhysMemError::OutOfRange { addr: 8189, len: 4 })
    );
    assert_eq!(
        m.read_u32(u64::MAX - 1),
        Err(PhysMemError::OutOfRange {
            addr: u64::MAX - 1,
            len: 4
        })
    );
    assert!(m.write_bytes(8190, &[1, 2, 3]).is_err());
    assert!(m.read_bytes(8191, &mut [0u8; 1]).is_ok());
    assert!(m.zero_page(2).is_err());
    assert!(m.copy_page(0, 2).is_err());
    assert!(m.copy_page(2, 0).is_err());
    assert!(m.page_is_zero(u64::MAX).is_err());
    assert!(m.release_range(1, 2).is_err());
    assert!(m.release_range(u64::MAX, 2).is_err());
    assert!(m.release_range(2, 0).is_ok());
}

#[test]
fn zero_copy_release() {
    let m = PhysMem::new(8 * 4096).unwrap();
    assert!(m.page_is_zero(3).unwrap());
    m.write_bytes(3 * 4096 + 100, &[9; 50]).unwrap();
    assert!(!m.page_is_zero(3).unwrap());
    m.copy_page(5, 3).unwrap();
    assert_eq!(m.read_u32(5 * 4096 + 100).unwrap(), 0x0909_0909);
    assert_eq!(m.read_u32(5 * 4096 + 96).unwrap(), 0);
    m.zero_page(3).unwrap();
    assert!(m.page_is_zero(3).unwrap());
    assert!(!m.page_is_zero(5).unwrap());
    m.write_u64(6 * 4096, u64::MAX).unwrap();
    m.release_range(5, 2).unwrap();
    assert!(m.page_is_zero(5).unwrap());
    assert!(m.page_is_zero(6).unwrap());
    assert_eq!(m.read_u64(6 * 4096).unwrap(), 0);
}

#[test]
fn sixty_four_gigabytes_last_byte() {
    let m = PhysMem::new(MAX_PHYS_MEM).unwrap();
    assert_eq!(m.nr_pages(), 16 << 20);
    m.write_bytes(MAX_PHYS_MEM - 1, &[0xab]).unwrap();
    let mut b = [0u8];
    m.read_bytes(MAX_PHYS_MEM - 1, &mut b).unwrap();
    assert_eq!(b, [0xab]);
    assert!(m.write_bytes(MAX_PHYS_MEM, &[0]).is_err());
    // one page touched: far less than a megabyte committed
    assert!(m.resident_bytes() <= 64 * 1024, "{}", m.resident_bytes());
}

#[test]
fn resident_bytes_follow_touched_pages() {
    let m = PhysMem::new(1 << 30).unwrap();
    assert_eq!(m.resident_bytes(), 0);
    // reads of never-written frames commit nothing
    for pfn in 0..64 {
        assert!(m.page_is_zero(pfn * 1000).unwrap());
    }
    assert_eq!(m.resident_bytes(), 0);
    for pfn in 0..10 {
        m.write_u32(pfn * 4096 * 1000, 1).unwrap();
    }
    assert_eq!(m.resident_bytes(), 10 * 4096);
    // clearing a never-written frame commits nothing: it already reads as zero
    m.zero_page(3).unwrap();
    assert_eq!(m.resident_bytes(), 10 * 4096);
    // a copy of such a frame commits nothing either
    m.copy_page(4, 3).unwrap();
    assert_eq!(m.resident_bytes(), 10 * 4096);
    // a written frame that is cleared stays committed and reads as zero
    m.write_u32(3 * 4096 + 4092, 7).unwrap();
    assert_eq!(m.resident_bytes(), 11 * 4096);
    m.zero_page(3).unwrap();
    assert_eq!(m.resident_bytes(), 11 * 4096);
    assert_eq!(m.read_u32(3 * 4096 + 4092).unwrap(), 0);
    assert!(m.page_is_zero(3).unwrap());
    m.release_range(3, 1).unwrap();
    assert_eq!(m.resident_bytes(), 10 * 4096);
    m.release_range(0, 5000).unwrap();
    assert_eq!(m.resident_bytes(), 5 * 4096);
    assert_eq!(m.read_u32(0).unwrap(), 0);
    assert_eq!(m.read_u32(5000 * 4096).unwrap(), 1);
}

#[test]
fn whole_page_writes_are_shared_on_the_host() {
    let m = PhysMem::new(1 << 30).unwrap();
    let mut page = [0u8; 4096];
    for (i, b) in page.iter_mut().enumerate() {
        *b = (i % 251) as u8 + 1;
    }
    // the first frame written with a content keeps it in its own host page
    m.write_bytes(1000 * 4096, &page).unwrap();
    assert_eq!((m.shared_bytes(), m.resident_bytes()), (0, 4096));
    // 199 more with the same 4 KB: the content moves into the store at the second, and
    // the host holds two pages for all 200 (the store's and the first frame's, now stale)
    for pfn in 1001..1200 {
        m.write_bytes(pfn * 4096, &page).unwrap();
    }
    assert_eq!((m.shared_bytes(), m.resident_bytes()), (4096, 2 * 4096));
    assert_eq!(
        m.read_u32(1100 * 4096 + 8).unwrap(),
        u32::from_le_bytes([9, 10, 11, 12])
    );
    // a small write gives that frame its own copy; the others keep sharing
    m.write_u64(1100 * 4096 + 4088, 0).unwrap();
    assert_eq!(m.resident_bytes(), 3 * 4096);
    assert_eq!(m.read_u64(1100 * 4096 + 4088).unwrap(), 0);
    let mut last = [0u8; 1];
    m.read_bytes(1101 * 4096 + 4095, &mut last).unwrap();
    assert_eq!(last[0], page[4095]);
    // a copy of a shared frame shares too
    m.copy_page(5, 1000).unwrap();
    assert_eq!(m.resident_bytes(), 3 * 4096);
    assert!(!m.page_is_zero(5).unwrap());
    // a unique content stays in the frame's own page; a stored one is shared
    let mut other = page;
    other[0] = 0xee;
    m.write_bytes(7 * 4096, &other).unwrap();
    assert_eq!((m.shared_bytes(), m.resident_bytes()), (4096, 4 * 4096));
    assert_eq!(m.read_u32(7 * 4096).unwrap() & 0xff, 0xee);
    m.write_bytes(7 * 4096, &page).unwrap();
    assert_eq!((m.shared_bytes(), m.resident_bytes()), (4096, 4 * 4096));
    assert_eq!(m.read_u32(7 * 4096).unwrap() & 0xff, 1);
    // the remembered frame changed since: no sharing with its old content
    m.write_bytes(8 * 4096, &other).unwrap();
    assert_eq!(m.shared_bytes(), 4096);
    // an all-zero whole-page write clears: the store lets go with the last sharer
    for pfn in (1000..1200).chain([5, 7, 8]) {
        m.write_bytes(pfn * 4096, &[0u8; 4096]).unwrap();
    }
    assert_eq!(m.shared_bytes(), 0);
    assert!(m.page_is_zero(1000).unwrap());
    assert!(m.page_is_zero(1100).unwrap());
}

/// Sharing and the written-frame bits are host-side only: any mix of accessors reads
/// back exactly what a plain byte array would hold.
mod model {
    use super::*;
    use proptest::prelude::*;

    const PAGES: u64 = 6;

    #[derive(Debug, Clone)]
    enum Op {
        U32(u64, u32),
        U64(u64, u64),
        Bytes(u64, Vec<u8>),
        Page(u64, u8, u16),
        Zero(u64),
        Copy(u64, u64),
        Release(u64, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let pa = 0..PAGES * 4096 - 8;
        let pfn = 0..PAGES;
        prop_oneof![
            (pa.clone(), any::<u32>()).prop_map(|(a, v)| Op::U32(a, v)),
            (pa.clone(), any::<u64>()).prop_map(|(a, v)| Op::U64(a, v)),
            (pa, prop::collection::vec(any::<u8>(), 0..9000)).prop_map(|(a, b)| Op::Bytes(a, b)),
            // whole pages from a few contents, so that frames share
            (pfn.clone(), 0..3u8, 0..4096u16).prop_map(|(p, v, at)| Op::Page(p, v, at)),
            pfn.clone().prop_map(Op::Zero),
            (pfn.clone(), pfn.clone()).prop_map(|(d, s)| Op::Copy(d, s)),
            (pfn, 0..3u64).prop_map(|(p, n)| Op::Release(p, n)),
        ]
    }

    fn frame(model: &mut [u8], p: u64) -> &mut [u8] {
        &mut model[(p * 4096) as usize..((p + 1) * 4096) as usize]
    }

    proptest! {
        #[test]
        fn reads_match_a_byte_array(ops in prop::collection::vec(op(), 1..60)) {
            let m = PhysMem::new(PAGES * 4096).unwrap();
            let mut model = vec![0u8; (PAGES * 4096) as usize];
            for op in ops {
                match op {
                    Op::U32(a, v) => {
                        m.write_u32(a, v).unwrap();
                        model[a as usize..a as usize + 4].copy_from_slice(&v.to_le_bytes());
                    }
                    Op::U64(a, v) => {
                        m.write_u64(a, v).unwrap();
                        model[a as usize..a as usize + 8].copy_from_slice(&v.to_le_bytes());
                    }
                    Op::Bytes(a, b) => {
                        let n = b.len().min(model.len() - a as usize);
                        m.write_bytes(a, &b[..n]).unwrap();
                        model[a as usize..a as usize + n].copy_from_slice(&b[..n]);
                    }
                    Op::Page(p, v, at) => {
                        let mut page = [0u8; 4096];
                        page[at as usize % (64 * (v as usize + 1))] = v;
                        m.write_bytes(p * 4096, &page).unwrap();
                        frame(&mut model, p).copy_from_slice(&page);
                    }
                    Op::Zero(p) => {
                        m.zero_page(p).unwrap();
                        frame(&mut model, p).fill(0);
                    }
                    Op::Copy(d, s) => {
                        m.copy_page(d, s).unwrap();
                        let src = frame(&mut model, s).to_vec();
                        frame(&mut model, d).copy_from_slice(&src);
                    }
                    Op::Release(p, n) => {
                        let n = n.min(PAGES - p);
                        m.release_range(p, n).unwrap();
                        model[(p * 4096) as usize..((p + n) * 4096) as usize].fill(0);
                    }
                }
            }
            let mut got = vec![0u8; model.len()];
            m.read_bytes(0, &mut got).unwrap();
            prop_assert_eq!(&got, &model);
            for a in (0..PAGES * 4096 - 8).step_by(4093) {
                let want = u64::from_le_bytes(model[a as usize..a as usize + 8].try_into().unwrap());
                prop_assert_eq!(m.read_u64(a).unwrap(), want);
            }
            for p in 0..PAGES {
                let zero = frame(&mut model, p).iter().all(|&b| b == 0);
                prop_assert_eq!(m.page_is_zero(p).unwrap(), zero);
            }
            // every store page is still referenced by some frame
            let shared = (0..PAGES).filter(|&p| m.is_shared(p)).count() as u64;
            prop_assert!(m.shared_bytes() <= shared * 4096);
        }
    }
}
