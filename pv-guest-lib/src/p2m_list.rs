//! The p2m published for the toolstack: Linux's `xen_build_mfn_list_list`.
//!
//! To save (or migrate) a PV guest, the toolstack must find the guest's
//! p2m (the `mfn_list` array, 8 bytes per pseudo-physical frame) in
//! machine memory. The guest publishes it as a three-level tree in
//! `shared_info.arch`:
//!
//! - `max_pfn` (offset 0 of `arch_shared_info`): the number of p2m
//!   entries;
//! - `pfn_to_mfn_frame_list_list` (offset 8): the machine frame of the
//!   *frame-list-list* page, which holds the machine frames of the
//!   *frame-list* pages, which hold (512 per page) the machine frames of
//!   the p2m's own pages.
//!
//! libxc's `x86_pv_map_m2p`/`map_p2m_tree` reads `max_pfn`, maps the
//! frame-list-list, the first `ceil(p2m pages / 512)` frame lists named
//! there, and the p2m pages they name. Unused slots are 0.
//!
//! [`Shape`] and [`fill`] are the pure part (tested on the host); on the
//! metal, [`publish`] allocates the pages once, fills them from the live
//! p2m and writes the two fields, and is called again after a restore
//! (the p2m pages then have new machine frames). [`lookup`] walks a
//! published tree, as the toolstack does; [`check`] uses it to verify
//! what was published.

use crate::error::Errno;

/// Machine frame numbers per page.
pub const PER_PAGE: usize = 512;

/// Frame lists the frame-list-list can name (512 GiB of p2m entries).
pub const MAX_LISTS: usize = PER_PAGE;

/// How big the tree for `max_pfn` p2m entries is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// p2m entries (`shared_info.arch.max_pfn`).
    pub max_pfn: u64,
    /// Pages the p2m array takes (`ceil(max_pfn / 512)`).
    pub p2m_pages: usize,
    /// Frame-list pages (`ceil(p2m_pages / 512)`).
    pub lists: usize,
}

/// Why the tree cannot be built or read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListError {
    /// No p2m entries.
    Empty,
    /// More than [`MAX_LISTS`] frame lists would be needed.
    TooBig(u64),
    /// The slices given do not match the shape.
    Mismatch,
    /// A machine frame the tree names cannot be read (`lookup`).
    Unreadable(u64),
    /// An index past the tree.
    OutOfRange(u64),
    /// A p2m page has no machine frame (the p2m names it invalid).
    NoFrame(usize),
    /// The hypervisor refused something (mapping, allocation).
    Hypervisor(Errno),
}

impl core::fmt::Display for ListError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ListError::Empty => f.write_str("the p2m is empty"),
            ListError::TooBig(n) => write!(f, "{n} p2m entries need more than 512 frame lists"),
            ListError::Mismatch => f.write_str("buffers do not match the tree's shape"),
            ListError::Unreadable(m) => write!(f, "frame {m:#x} of the tree cannot be read"),
            ListError::OutOfRange(i) => write!(f, "p2m page {i} is outside the tree"),
            ListError::NoFrame(i) => write!(f, "p2m page {i} has no machine frame"),
            ListError::Hypervisor(e) => write!(f, "hypervisor: {e}"),
        }
    }
}

impl Shape {
    /// The tree for `max_pfn` p2m entries.
    pub fn new(max_pfn: u64) -> Result<Shape, ListError> {
        if max_pfn == 0 {
            return Err(ListError::Empty);
        }
        let per = PER_PAGE as u64;
        let p2m_pages = max_pfn.div_ceil(per);
        let lists = p2m_pages.div_ceil(per);
        if lists > MAX_LISTS as u64 {
            return Err(ListError::TooBig(max_pfn));
        }
        Ok(Shape {
            max_pfn,
            p2m_pages: p2m_pages as usize,
            lists: lists as usize,
        })
    }
}

/// Fills the frame-list pages (`lists`, one per [`Shape::lists`]) with the
/// machine frames of the p2m pages (`p2m_mfn(i)` for each of
/// [`Shape::p2m_pages`]) and the frame-list-list page (`fll`) with the
/// machine frames of the frame lists (`list_mfns`). Unused slots are 0.
pub fn fill(
    shape: &Shape,
    mut p2m_mfn: impl FnMut(usize) -> Result<u64, ListError>,
    list_mfns: &[u64],
    lists: &mut [&mut [u64; PER_PAGE]],
    fll: &mut [u64; PER_PAGE],
) -> Result<(), ListError> {
    if list_mfns.len() != shape.lists || lists.len() != shape.lists {
        return Err(ListError::Mismatch);
    }
    for (i, page) in lists.iter_mut().enumerate() {
        for (j, slot) in page.iter_mut().enumerate() {
            let n = i * PER_PAGE + j;
            *slot = if n < shape.p2m_pages { p2m_mfn(n)? } else { 0 };
        }
    }
    for (i, slot) in fll.iter_mut().enumerate() {
        *slot = list_mfns.get(i).copied().unwrap_or(0);
    }
    Ok(())
}

/// The machine frame of p2m page `index`, found as the toolstack finds it:
/// through the frame-list-list `fll` and the frame list it names, read with
/// `read` (which gives `None` for a frame it cannot read).
pub fn lookup(
    shape: &Shape,
    fll: &[u64; PER_PAGE],
    index: u64,
    mut read: impl FnMut(u64) -> Option<[u64; PER_PAGE]>,
) -> Result<u64, ListError> {
    if index >= shape.p2m_pages as u64 {
        return Err(ListError::OutOfRange(index));
    }
    let list_mfn = fll[(index / PER_PAGE as u64) as usize];
    let list = read(list_mfn).ok_or(ListError::Unreadable(list_mfn))?;
    Ok(list[(index % PER_PAGE as u64) as usize])
}

#[cfg(target_os = "none")]
mod imp {
    use super::*;
    use crate::frame::{self, Frame};
    use core::sync::atomic::Ordering;

    /// The pages of the tree, allocated by the first [`publish`].
    struct Pages {
        fll: Frame,
        lists: heapless::Vec<Frame, MAX_LISTS>,
    }

    /// A page for the tree: from the bootstrap region's padding if it has
    /// one left (so the frame allocator's run, which the heap grows on,
    /// is not broken up), else from the frame allocator.
    fn alloc() -> Result<Frame, ListError> {
        if let Some(p) = crate::page_alloc::alloc_page() {
            let va = p.as_ptr() as u64;
            if let Some(pfn) = frame::direct_pfn(va) {
                if let Some(mfn) = frame::pfn_to_mfn(pfn) {
                    return Ok(Frame { pfn, mfn, va });
                }
            }
        }
        frame::alloc_frame()
            .map_err(|_| ListError::Hypervisor(Errno::from_abi(crate::abi::errno::Errno::ENOMEM)))
    }

    static PAGES: spin::Mutex<Option<Pages>> = spin::Mutex::new(None);

    fn page(f: &Frame) -> &'static mut [u64; PER_PAGE] {
        // SAFETY: `f` is a frame the allocator gave this module for good;
        // it is mapped writable at `va` (the direct map), page aligned, and
        // only this module touches it, under the PAGES lock.
        unsafe { &mut *(f.va as *mut [u64; PER_PAGE]) }
    }

    /// The p2m's shape, and the machine frame of its page `i`.
    fn p2m_shape() -> Result<Shape, ListError> {
        let si = crate::boot::start_info().ok_or(ListError::Empty)?;
        if si.mfn_list % 4096 != 0 {
            return Err(ListError::Mismatch);
        }
        Shape::new(si.nr_pages)
    }

    fn p2m_page_mfn(i: usize) -> Result<u64, ListError> {
        let si = crate::boot::start_info().ok_or(ListError::Empty)?;
        let l = crate::boot::layout().ok_or(ListError::Empty)?;
        let va = si.mfn_list + (i as u64) * 4096;
        l.va_to_pfn(va)
            .and_then(frame::pfn_to_mfn)
            .ok_or(ListError::NoFrame(i))
    }

    /// Builds (the first time) or refreshes the tree from the live p2m and
    /// writes `max_pfn` and `pfn_to_mfn_frame_list_list` into the shared
    /// info page. Call after [`crate::runtime::init`], and again after a
    /// restore (same pages, new machine frames). Returns the tree's shape.
    pub fn publish() -> Result<Shape, ListError> {
        let shared = crate::shared::get().ok_or(ListError::Empty)?;
        let shape = p2m_shape()?;
        let mut g = PAGES.lock();
        if g.as_ref().is_none_or(|p| p.lists.len() != shape.lists) {
            let fll = alloc()?;
            let mut lists = heapless::Vec::new();
            for _ in 0..shape.lists {
                let _ = lists.push(alloc()?);
            }
            *g = Some(Pages { fll, lists });
        }
        let p = g.as_mut().ok_or(ListError::Empty)?;
        let mut list_mfns: heapless::Vec<u64, MAX_LISTS> = heapless::Vec::new();
        for f in p.lists.iter() {
            let m = frame::pfn_to_mfn(f.pfn).ok_or(ListError::Unreadable(f.pfn))?;
            let _ = list_mfns.push(m);
        }
        let fll_mfn = frame::pfn_to_mfn(p.fll.pfn).ok_or(ListError::Unreadable(p.fll.pfn))?;
        let mut pages: heapless::Vec<&mut [u64; PER_PAGE], MAX_LISTS> = heapless::Vec::new();
        for f in p.lists.iter() {
            let _ = pages.push(page(f));
        }
        fill(&shape, p2m_page_mfn, &list_mfns, &mut pages, page(&p.fll))?;
        shared.arch[0].store(shape.max_pfn, Ordering::Release);
        shared.arch[1].store(fll_mfn, Ordering::Release);
        Ok(shape)
    }

    /// Walks the published tree as the toolstack would (machine frames
    /// through the M2P to this guest's direct map) and compares every p2m
    /// page's frame with the live p2m. Returns the shape.
    pub fn check() -> Result<Shape, ListError> {
        let shared = crate::shared::get().ok_or(ListError::Empty)?;
        let shape = p2m_shape()?;
        let max = shared.arch[0].load(Ordering::Acquire);
        if max != shape.max_pfn {
            return Err(ListError::Mismatch);
        }
        let read = |mfn: u64| -> Option<[u64; PER_PAGE]> {
            let pfn = frame::mfn_to_pfn(mfn)?;
            let va = frame::direct_va(pfn)?;
            // SAFETY: `va` is the direct-map address of one of our own
            // frames (checked against the p2m), mapped and page aligned.
            Some(unsafe { core::ptr::read_volatile(va as *const [u64; PER_PAGE]) })
        };
        let fll_mfn = shared.arch[1].load(Ordering::Acquire);
        let fll = read(fll_mfn).ok_or(ListError::Unreadable(fll_mfn))?;
        for i in 0..shape.p2m_pages {
            if lookup(&shape, &fll, i as u64, read)? != p2m_page_mfn(i)? {
                return Err(ListError::NoFrame(i));
            }
        }
        Ok(shape)
    }
}

#[cfg(target_os = "none")]
pub use imp::{check, publish};

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn shapes() {
        assert_eq!(Shape::new(0), Err(ListError::Empty));
        let s = Shape::new(1).unwrap();
        assert_eq!((s.p2m_pages, s.lists), (1, 1));
        let s = Shape::new(512).unwrap();
        assert_eq!((s.p2m_pages, s.lists), (1, 1));
        let s = Shape::new(513).unwrap();
        assert_eq!((s.p2m_pages, s.lists), (2, 1));
        // 1 GiB: 262144 pfns, 512 p2m pages, one full frame list.
        let s = Shape::new(262_144).unwrap();
        assert_eq!((s.p2m_pages, s.lists), (512, 1));
        let s = Shape::new(262_145).unwrap();
        assert_eq!((s.p2m_pages, s.lists), (513, 2));
        // The most one frame-list-list can name.
        let max = 512u64 * 512 * 512;
        assert_eq!(Shape::new(max).unwrap().lists, 512);
        assert_eq!(Shape::new(max + 1), Err(ListError::TooBig(max + 1)));
    }

    #[test]
    fn fill_then_lookup_round_trips() {
        let shape = Shape::new(300_000).unwrap();
        let p2m: Vec<u64> = (0..shape.p2m_pages as u64)
            .map(|i| 0x10_000 + i * 3)
            .collect();
        let list_mfns: Vec<u64> = (0..shape.lists as u64).map(|i| 0x9000 + i).collect();
        let mut lists = vec![[0xdeadu64; PER_PAGE]; shape.lists];
        let mut fll = [0xdeadu64; PER_PAGE];
        {
            let mut refs: Vec<&mut [u64; PER_PAGE]> = lists.iter_mut().collect();
            fill(&shape, |i| Ok(p2m[i]), &list_mfns, &mut refs, &mut fll).unwrap();
        }
        assert_eq!(&fll[..2], &list_mfns[..]);
        assert!(fll[2..].iter().all(|&m| m == 0));
        // The second list holds the rest, then zeros.
        let rest = shape.p2m_pages - PER_PAGE;
        assert_eq!(lists[1][rest - 1], p2m[shape.p2m_pages - 1]);
        assert!(lists[1][rest..].iter().all(|&m| m == 0));
        let mem: BTreeMap<u64, [u64; PER_PAGE]> = list_mfns
            .iter()
            .copied()
            .zip(lists.iter().copied())
            .collect();
        for i in 0..shape.p2m_pages as u64 {
            let got = lookup(&shape, &fll, i, |m| mem.get(&m).copied()).unwrap();
            assert_eq!(got, p2m[i as usize]);
        }
        assert_eq!(
            lookup(&shape, &fll, shape.p2m_pages as u64, |m| mem
                .get(&m)
                .copied()),
            Err(ListError::OutOfRange(shape.p2m_pages as u64))
        );
        // A frame list the reader cannot map.
        assert_eq!(
            lookup(&shape, &fll, 0, |_| None),
            Err(ListError::Unreadable(0x9000))
        );
    }

    #[test]
    fn fill_refuses_mismatched_buffers() {
        let shape = Shape::new(1024).unwrap();
        let mut page = [7u64; PER_PAGE];
        let mut fll = [0u64; PER_PAGE];
        let p2m = |i: usize| Ok(i as u64 + 1);
        assert_eq!(
            fill(&shape, p2m, &[], &mut [&mut page], &mut fll),
            Err(ListError::Mismatch)
        );
        assert_eq!(
            fill(&shape, p2m, &[3], &mut [], &mut fll),
            Err(ListError::Mismatch)
        );
        // A p2m page without a frame stops it.
        assert_eq!(
            fill(
                &shape,
                |i| Err(ListError::NoFrame(i)),
                &[3],
                &mut [&mut page],
                &mut fll
            ),
            Err(ListError::NoFrame(0))
        );
        assert_eq!(fill(&shape, p2m, &[3], &mut [&mut page], &mut fll), Ok(()));
        assert_eq!(&page[..3], &[1, 2, 0]);
        assert_eq!(&fll[..2], &[3, 0]);
    }
}
