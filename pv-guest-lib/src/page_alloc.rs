//! A page allocator over the domain's free, already-mapped pages.
//!
//! At boot, the pages between the last bootstrap element and the end of the
//! mapped bootstrap region ([`crate::layout::BootstrapLayout`]'s
//! `free_start..free_end`: at least 512 KiB, up to the next 4 MiB boundary)
//! are mapped writable and used by nothing. This allocator hands them out,
//! zeroed, one bump at a time; pages are never returned. It is enough for
//! rings, grant pages and small heaps; a kernel that needs more memory maps
//! further frames of its `nr_pages` itself (`mmu_update`).

use crate::layout::PAGE_SIZE;

/// A bump allocator over a range of page-aligned addresses (pure logic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BumpRegion {
    next: u64,
    end: u64,
    start: u64,
}

impl BumpRegion {
    /// An allocator over `[start, end)`, shrunk inwards to page boundaries.
    pub const fn new(start: u64, end: u64) -> BumpRegion {
        let start = crate::util::align_up(start, PAGE_SIZE);
        let end = crate::util::align_down(end, PAGE_SIZE);
        let end = if end < start { start } else { end };
        BumpRegion {
            next: start,
            end,
            start,
        }
    }

    /// An allocator with nothing to give.
    pub const fn empty() -> BumpRegion {
        BumpRegion {
            next: 0,
            end: 0,
            start: 0,
        }
    }

    /// Takes `n` contiguous pages; their first address.
    pub fn alloc(&mut self, n: u64) -> Option<u64> {
        if n == 0 {
            return None;
        }
        let bytes = n.checked_mul(PAGE_SIZE)?;
        let end = self.next.checked_add(bytes)?;
        if end > self.end {
            return None;
        }
        let at = self.next;
        self.next = end;
        Some(at)
    }

    /// Pages left.
    pub fn free_pages(&self) -> u64 {
        (self.end - self.next) / PAGE_SIZE
    }

    /// Pages handed out.
    pub fn used_pages(&self) -> u64 {
        (self.next - self.start) / PAGE_SIZE
    }
}

static REGION: spin::Mutex<BumpRegion> = spin::Mutex::new(BumpRegion::empty());

/// Gives the allocator its region (the boot code does this before the
/// kernel's main runs). A second call replaces the region.
///
/// # Safety
/// Every page in `[start, end)` must be mapped writable and used by nothing
/// else, now and later (the allocator hands out `&'static mut` to them).
pub unsafe fn init(start: u64, end: u64) {
    *REGION.lock() = BumpRegion::new(start, end);
}

/// A zeroed page of the domain's own memory.
pub fn alloc_page() -> Option<&'static mut [u8; PAGE_SIZE as usize]> {
    let va = REGION.lock().alloc(1)?;
    let page = va as *mut [u8; PAGE_SIZE as usize];
    // SAFETY: `init`'s contract: the page is mapped, writable, page aligned
    // and unused; the bump allocator gives each page out once, so this is
    // the only reference to it.
    let page = unsafe { &mut *page };
    page.fill(0);
    Some(page)
}

/// `n` zeroed, virtually contiguous pages.
pub fn alloc_pages(n: usize) -> Option<&'static mut [u8]> {
    let bytes = usize::try_from(PAGE_SIZE).ok()?.checked_mul(n)?;
    let va = REGION.lock().alloc(n as u64)?;
    // SAFETY: as in `alloc_page`, for all `n` pages of the allocation.
    let pages = unsafe { core::slice::from_raw_parts_mut(va as *mut u8, bytes) };
    pages.fill(0);
    Some(pages)
}

/// `(used, free)` page counts.
pub fn stats() -> (u64, u64) {
    let r = REGION.lock();
    (r.used_pages(), r.free_pages())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bump_hands_out_each_page_once() {
        let mut r = BumpRegion::new(0x1000, 0x5000);
        assert_eq!(r.free_pages(), 4);
        assert_eq!(r.alloc(1), Some(0x1000));
        assert_eq!(r.alloc(2), Some(0x2000));
        assert_eq!(r.alloc(2), None);
        assert_eq!(r.alloc(1), Some(0x4000));
        assert_eq!(r.alloc(1), None);
        assert_eq!((r.used_pages(), r.free_pages()), (4, 0));
    }

    #[test]
    fn unaligned_and_inverted_ranges_shrink() {
        let r = BumpRegion::new(0x1001, 0x3fff);
        assert_eq!(r.free_pages(), 1);
        let r = BumpRegion::new(0x5000, 0x1000);
        assert_eq!(r.free_pages(), 0);
        let mut r = BumpRegion::new(u64::MAX - 10, u64::MAX);
        assert_eq!(r.alloc(1), None);
    }

    #[test]
    fn silly_requests_fail() {
        let mut r = BumpRegion::new(0x1000, 0x9000);
        assert_eq!(r.alloc(0), None);
        assert_eq!(r.alloc(u64::MAX), None);
        assert_eq!(r.alloc(u64::MAX / PAGE_SIZE), None);
        assert_eq!(r.free_pages(), 8);
        assert_eq!(BumpRegion::empty().free_pages(), 0);
    }

    #[test]
    fn global_allocator_uses_its_region() {
        extern crate std;
        // A real, writable, page-aligned host buffer stands in for the
        // bootstrap padding.
        let layout = std::alloc::Layout::from_size_align(4 * 4096, 4096).unwrap();
        // SAFETY: non-zero size.
        let mem = unsafe { std::alloc::alloc(layout) };
        assert!(!mem.is_null());
        // SAFETY: the 4 pages are ours and unused until the test ends.
        unsafe { init(mem as u64, mem as u64 + 4 * 4096) };
        let p = alloc_page().unwrap();
        assert!(p.iter().all(|&b| b == 0));
        p[0] = 1;
        let q = alloc_pages(3).unwrap();
        assert_eq!(q.len(), 3 * 4096);
        assert!(alloc_page().is_none());
        assert_eq!(stats(), (4, 0));
        // SAFETY: an empty region.
        unsafe { init(0, 0) };
        // The buffer is leaked on purpose: the allocator handed out 'static refs.
    }
}
