//! The memory pattern `bare-count` keeps and checks: each 4 KiB page holds
//! its generation in word 0 and, in words 1..512, values derived from the
//! page's number, its generation and the word's index. A page is checked
//! without knowing its history (word 0 says which generation it should
//! hold), so a guest can verify its whole memory after being saved and
//! restored, or moved: any frame lost, zeroed, swapped or half-written
//! fails.

/// u64 words in a 4 KiB page.
pub const WORDS: usize = 512;

/// Word `i` (1..512) of page `page` at generation `gen` (splitmix64).
pub fn word(page: u64, gen: u64, i: usize) -> u64 {
    let mut z = page
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(gen.wrapping_mul(0xbf58_476d_1ce4_e5b9))
        .wrapping_add(i as u64);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Writes page `page` at generation `gen` into `p`.
pub fn fill(p: &mut [u64; WORDS], page: u64, gen: u64) {
    p[0] = gen;
    for (i, w) in p.iter_mut().enumerate().skip(1) {
        *w = word(page, gen, i);
    }
}

/// The first word of `p` that does not match the generation in its word
/// 0, if any.
pub fn check(p: &[u64; WORDS], page: u64) -> Option<usize> {
    let gen = p[0];
    (1..WORDS).find(|&i| p[i] != word(page, gen, i))
}

/// FNV-1a over a page's words, continuing from `h` (start with
/// [`FNV_START`]).
pub fn fnv(h: u64, p: &[u64; WORDS]) -> u64 {
    p.iter()
        .fold(h, |h, &w| (h ^ w).wrapping_mul(0x0000_0100_0000_01b3))
}

/// FNV-1a's offset basis.
pub const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filled_page_checks_and_any_damage_is_found() {
        let mut p = [0u64; WORDS];
        fill(&mut p, 7, 3);
        assert_eq!(check(&p, 7), None);
        assert_eq!(check(&p, 8), Some(1), "another page's frame");
        let mut q = p;
        q[0] = 4;
        assert!(check(&q, 7).is_some(), "a stale generation");
        let mut q = p;
        q[511] ^= 1;
        assert_eq!(check(&q, 7), Some(511));
        assert_eq!(check(&[0; WORDS], 7), Some(1), "a zeroed frame");
        assert_ne!(fnv(FNV_START, &p), fnv(FNV_START, &q));
    }
}
