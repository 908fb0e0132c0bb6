//! Host-side sharing of identical simulated pages: the content store behind [`super`] (`crate::phys`).
//!
//! When the simulated machine writes a whole 4 KB frame in one go (a pte page filled or
//! cleared by the kernel's block walk, a page read from disk) with bytes that another frame
//! was written with, the bytes are kept here, once, and both frames refer to them. Two
//! thousand processes attaching the same shared segment fill two thousand identical sets of
//! pte pages: on the host they are one set. Nothing simulated changes; a frame reads the same
//! bytes either way, and the first small write to it gives it its own copy again (see
//! `PhysMem::unshare`).

use highpte_arch::PAGE_SIZE;
use std::collections::HashMap;

/// One page of content.
pub(crate) type Page = [u8; PAGE_SIZE as usize];

/// Distinct page contents with reference counts, found by a hash of their bytes.
///
/// Ids start at 1 (0 is "no content" in the frame table). A page whose last reference goes
/// is dropped; its id is reused.
#[derive(Default)]
pub(crate) struct PageStore {
    /// Content by id - 1 (`None`: a free id).
    pages: Vec<Option<Box<Page>>>,
    /// References by id - 1.
    refs: Vec<u32>,
    /// Hash of each page's content, by id - 1 (to find its index entry when it goes).
    hashes: Vec<u64>,
    /// Ids free for reuse.
    free: Vec<u32>,
    /// Content hash to the id holding that content. On a collision (another content, same
    /// hash) the later page is stored without an index entry, so it is simply not shared.
    index: HashMap<u64, u32>,
    /// Pages held.
    live: u64,
}

/// A hash of a page's bytes: four independent multiply-rotate lanes over its 64-bit words
/// (about 0.1 us for 4 KB), folded together. Equal content gives an equal hash; the store
/// compares the bytes before sharing, so a collision only costs a missed share.
pub(crate) fn page_hash(p: &Page) -> u64 {
    const K: [u64; 4] = [
        0x9E37_79B9_7F4A_7C15,
        0xC2B2_AE3D_27D4_EB4F,
        0x1656_67B1_9E37_79F9,
        0x85EB_CA77_C2B2_AE63,
    ];
    let mut lanes = K;
    for chunk in p.chunks_exact(32) {
        for (l, (lane, k)) in lanes.iter_mut().zip(K).enumerate() {
            let w = u64::from_le_bytes(chunk[l * 8..l * 8 + 8].try_into().unwrap_or([0; 8]));
            *lane = (*lane ^ w).wrapping_mul(k).rotate_left(29);
        }
    }
    let mut h = lanes[0] ^ lanes[1].rotate_left(17) ^ lanes[2].rotate_left(34);
    h ^= lanes[3].rotate_left(51);
    h ^= h >> 32;
    h.wrapping_mul(K[0])
}

impl PageStore {
    /// The id of a stored page equal to `content` (whose [`page_hash`] is `h`), with one more
    /// reference; `None` (and nothing stored) if no equal page is held.
    pub(crate) fn find(&mut self, h: u64, content: &Page) -> Option<u32> {
        let id = *self.index.get(&h)?;
        let i = (id - 1) as usize;
        if self.pages[i].as_deref() != Some(content) {
            return None;
        }
        self.refs[i] += 1;
        Some(id)
    }

    /// Store `content` (whose [`page_hash`] is `h`) with one reference; returns its id.
    pub(crate) fn insert(&mut self, h: u64, content: &Page) -> u32 {
        let id = match self.free.pop() {
            Some(id) => {
                let i = (id - 1) as usize;
                self.pages[i] = Some(Box::new(*content));
                self.refs[i] = 1;
                self.hashes[i] = h;
                id
            }
            None => {
                self.pages.push(Some(Box::new(*content)));
                self.refs.push(1);
                self.hashes.push(h);
                self.pages.len() as u32
            }
        };
        self.index.entry(h).or_insert(id);
        self.live += 1;
        id
    }

    /// The content of `id`.
    ///
    /// # Panics
    /// If `id` holds no page (a bug in the frame table).
    #[inline]
    pub(crate) fn get(&self, id: u32) -> &Page {
        match self.pages[(id - 1) as usize].as_deref() {
            Some(p) => p,
            None => panic!("page store: id {id} is free"),
        }
    }

    /// One more reference to `id`.
    pub(crate) fn retain(&mut self, id: u32) {
        self.refs[(id - 1) as usize] += 1;
    }

    /// One reference to `id` less; the page goes with the last.
    pub(crate) fn release(&mut self, id: u32) {
        let i = (id - 1) as usize;
        self.refs[i] -= 1;
        if self.refs[i] == 0 {
            self.pages[i] = None;
            if self.index.get(&self.hashes[i]) == Some(&id) {
                self.index.remove(&self.hashes[i]);
            }
            self.free.push(id);
            self.live -= 1;
        }
    }

    /// Host bytes the stored pages take.
    pub(crate) fn bytes(&self) -> u64 {
        self.live * PAGE_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(fill: u8, at: usize) -> Page {
        let mut p = [0u8; PAGE_SIZE as usize];
        p[at] = fill;
        p
    }

    fn intern(s: &mut PageStore, p: &Page) -> u32 {
        let h = page_hash(p);
        s.find(h, p).unwrap_or_else(|| s.insert(h, p))
    }

    #[test]
    fn equal_content_is_stored_once() {
        let mut s = PageStore::default();
        let a = intern(&mut s, &page(1, 0));
        let b = intern(&mut s, &page(1, 0));
        let c = intern(&mut s, &page(1, 4095));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(s.bytes(), 2 * 4096);
        assert_eq!(s.get(c)[4095], 1);
        s.release(a);
        assert_eq!(s.bytes(), 2 * 4096);
        s.release(b);
        assert_eq!(s.bytes(), 4096);
        // the freed id is reused, and the old content is not found any more
        assert_eq!(s.find(page_hash(&page(1, 0)), &page(1, 0)), None);
        let d = intern(&mut s, &page(2, 7));
        assert_eq!(d, a);
        assert_eq!(s.get(d)[7], 2);
        let e = intern(&mut s, &page(1, 0));
        assert_ne!(e, d);
        s.retain(e);
        s.release(e);
        assert_eq!(s.get(e)[0], 1);
        assert_eq!(s.bytes(), 3 * 4096);
        // a hash that names another content finds nothing
        assert_eq!(s.find(page_hash(&page(1, 0)), &page(3, 3)), None);
    }

    #[test]
    fn hash_sees_every_word() {
        let base = page_hash(&page(0, 0));
        for at in (0..4096).step_by(97) {
            assert_ne!(page_hash(&page(0x80, at)), base, "byte {at}");
        }
    }
}
