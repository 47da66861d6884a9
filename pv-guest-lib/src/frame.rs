//! Frames and the kernel's page tables on Xen: the P2M, the M2P, a direct
//! map of the domain's memory, a frame allocator, and the [`PtBackend`]
//! that edits page tables with hypercalls.
//!
//! # The direct map
//!
//! The domain builder maps the bootstrap region 1:1 from `VIRT_BASE`:
//! pseudo-physical frame `pfn` is at `VIRT_BASE + pfn * 4096`. This module
//! keeps that rule for every frame it hands out, growing the mapping 2 MiB
//! (one L1 table) at a time, so any frame below [`mapped_end_pfn`] has a
//! known virtual address ([`direct_va`]). That is how page tables are read:
//! entry → machine frame → M2P (`0xFFFF800000000000`, read-only, from the
//! hypervisor) → pseudo-physical frame → direct map. The direct map ends
//! below 2 GiB of pseudo-physical memory ([`MAX_DIRECT_PFNS`]); frames
//! above it are not handed out.
//!
//! # Page-table frames
//!
//! A frame that becomes a page table is zeroed, then its direct-map alias is
//! made read-only (`update_va_mapping`), and only then linked (Xen refuses
//! to type a frame with a writable mapping). Page tables are never written
//! directly, only with `mmu_update`.
//!
//! # Frames
//!
//! [`alloc_frame`] gives zeroed, direct-mapped frames from the domain's
//! pages above the bootstrap region (the bootstrap padding stays with
//! [`crate::page_alloc`], which this module also uses for its first page
//! tables). Freed frames go on a bounded free list.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::abi::arch_x86::MACH2PHYS_VIRT_START;
use crate::error::Errno;
use crate::layout::{PAGE_SIZE, VIRT_BASE};
use crate::mm::{self, Level, PtBackend, PtError, Pte, PteFlags};
use crate::mmu::{self, Flush};

/// Frames the direct map can cover (2 GiB minus one page: `VIRT_BASE` is
/// 2 GiB below the top of the address space).
pub const MAX_DIRECT_PFNS: u64 = (0u64.wrapping_sub(VIRT_BASE) / PAGE_SIZE) - 1;

/// Frames mapped per growth step (one L1 table).
pub const GROW_STEP: u64 = 512;

/// Capacity of the free list.
pub const FREE_LIST: usize = 512;

/// "No frame" in the P2M and M2P.
pub const INVALID_FRAME: u64 = u64::MAX;

/// A bump allocator over pseudo-physical frames plus a bounded free list
/// (pure logic).
#[derive(Debug)]
pub struct FramePool {
    next: u64,
    end: u64,
    free: heapless::Vec<u64, FREE_LIST>,
    lost: u64,
}

impl FramePool {
    /// Frames `[start, end)`.
    pub const fn new(start: u64, end: u64) -> FramePool {
        FramePool {
            next: start,
            end: if end < start { start } else { end },
            free: heapless::Vec::new(),
            lost: 0,
        }
    }

    /// A frame from the free list, else the next fresh one below `limit`.
    pub fn alloc_below(&mut self, limit: u64) -> Option<u64> {
        if let Some(p) = self.free.pop() {
            return Some(p);
        }
        if self.next < self.end && self.next < limit {
            self.next += 1;
            return Some(self.next - 1);
        }
        None
    }

    /// `n` contiguous fresh frames, the first a multiple of `align`
    /// (frames skipped for alignment go to the free list, as far as it
    /// has room).
    pub fn alloc_run(&mut self, n: u64, align: u64) -> Option<u64> {
        if n == 0 || align == 0 || !align.is_power_of_two() {
            return None;
        }
        let start = crate::util::align_up(self.next, align);
        let end = start.checked_add(n)?;
        if end > self.end {
            return None;
        }
        for p in self.next..start {
            self.free_frame(p);
        }
        self.next = end;
        Some(start)
    }

    /// Gives a frame back.
    pub fn free_frame(&mut self, pfn: u64) {
        if self.free.push(pfn).is_err() {
            self.lost += 1;
        }
    }

    /// The next fresh frame.
    pub fn next_fresh(&self) -> u64 {
        self.next
    }

    /// Frames still available.
    pub fn available(&self) -> u64 {
        (self.end - self.next) + self.free.len() as u64
    }

    /// Takes up to `n` never-handed-out frames off the top of the pool
    /// (the balloon driver gives them back to the hypervisor): the range
    /// `[start, end)` taken, highest first when returned one by one.
    pub fn take_tail(&mut self, n: u64) -> (u64, u64) {
        let n = n.min(self.end - self.next);
        self.end -= n;
        (self.end, self.end + n)
    }

    /// Puts frame `pfn` back on top of the pool if it is the one just
    /// above it (the reverse of [`FramePool::take_tail`]); `false` if not.
    pub fn extend_tail(&mut self, pfn: u64) -> bool {
        if pfn != self.end {
            return false;
        }
        self.end += 1;
        true
    }

    /// One past the highest frame the pool may hand out.
    pub fn end(&self) -> u64 {
        self.end
    }
}

struct State {
    pool: FramePool,
    /// Frames below this are in the direct map.
    mapped_end: u64,
    kernel_l4: u64,
}

static STATE: spin::Mutex<Option<State>> = spin::Mutex::new(None);
static MAPPED_END: AtomicU64 = AtomicU64::new(0);
/// One past the highest machine frame the M2P is read for.
static MAX_MFN: AtomicU64 = AtomicU64::new(0);

/// Frames assumed to exist when the hypervisor does not say (16 GiB).
const FALLBACK_MAX_MFN: u64 = 1 << 22;
static KERNEL_L4: AtomicU64 = AtomicU64::new(0);

/// What [`init`] found.
#[derive(Clone, Copy, Debug)]
pub struct MmInfo {
    /// Machine frame of the kernel's (boot) L4.
    pub kernel_l4: u64,
    /// First frame the allocator hands out.
    pub first_free_pfn: u64,
    /// Frames available to it.
    pub frames: u64,
}

/// Sets the frame allocator and page-table manager up from `start_info`
/// and the bootstrap layout. Idempotent.
pub fn init() -> Result<MmInfo, PtError> {
    let si = crate::boot::start_info().ok_or(PtError::NoMemory)?;
    let l = crate::boot::layout().ok_or(PtError::NoMemory)?;
    let mut st = STATE.lock();
    if let Some(s) = st.as_ref() {
        return Ok(MmInfo {
            kernel_l4: s.kernel_l4,
            first_free_pfn: s.pool.next_fresh(),
            frames: s.pool.available(),
        });
    }
    let max = crate::memory::maximum_ram_page().unwrap_or(FALLBACK_MAX_MFN);
    MAX_MFN.store(max.max(1), Ordering::Release);
    let l4_pfn = l.va_to_pfn(si.pt_base).ok_or(PtError::Unreadable(0))?;
    let kernel_l4 = pfn_to_mfn(l4_pfn).ok_or(PtError::Unreadable(0))?;
    let first = l.mapped_end.saturating_sub(VIRT_BASE) / PAGE_SIZE;
    let end = si.nr_pages.min(MAX_DIRECT_PFNS);
    let pool = FramePool::new(first, end);
    let info = MmInfo {
        kernel_l4,
        first_free_pfn: first,
        frames: pool.available(),
    };
    *st = Some(State {
        pool,
        mapped_end: first,
        kernel_l4,
    });
    MAPPED_END.store(first, Ordering::Release);
    KERNEL_L4.store(kernel_l4, Ordering::Release);
    Ok(info)
}

/// After a restore the guest's frames have new machine numbers (the
/// toolstack rewrote the p2m and every page table): re-reads the kernel
/// L4's machine frame and the host's highest machine frame.
pub fn refresh_after_restore() -> Result<(), PtError> {
    let si = crate::boot::start_info().ok_or(PtError::NoMemory)?;
    let l = crate::boot::layout().ok_or(PtError::NoMemory)?;
    let l4_pfn = l.va_to_pfn(si.pt_base).ok_or(PtError::Unreadable(0))?;
    let kernel_l4 = pfn_to_mfn(l4_pfn).ok_or(PtError::Unreadable(0))?;
    let max = crate::memory::maximum_ram_page().unwrap_or(FALLBACK_MAX_MFN);
    MAX_MFN.store(max.max(1), Ordering::Release);
    if let Some(st) = STATE.lock().as_mut() {
        st.kernel_l4 = kernel_l4;
    }
    KERNEL_L4.store(kernel_l4, Ordering::Release);
    Ok(())
}

/// Machine frame of pseudo-physical frame `pfn` (from `start_info.mfn_list`).
pub fn pfn_to_mfn(pfn: u64) -> Option<u64> {
    let p2m = crate::boot::p2m()?;
    let m = p2m.get(usize::try_from(pfn).ok()?)?.load(Ordering::Acquire);
    (m != INVALID_FRAME).then_some(m)
}

/// Sets the p2m entry of `pfn` (the balloon driver: [`INVALID_FRAME`]
/// when the frame goes back to the hypervisor, the new machine frame when
/// it is repopulated). `false` if `pfn` is outside the list.
pub fn set_p2m(pfn: u64, mfn: u64) -> bool {
    let Some(e) = crate::boot::p2m().and_then(|p| p.get(usize::try_from(pfn).ok()?)) else {
        return false;
    };
    e.store(mfn, Ordering::Release);
    true
}

/// The pseudo-physical frame of machine frame `mfn`, from the hypervisor's
/// read-only M2P, checked against our P2M (so a frame that is not ours
/// gives `None`).
pub fn mfn_to_pfn(mfn: u64) -> Option<u64> {
    let pfn = imp::m2p(mfn)?;
    (pfn_to_mfn(pfn) == Some(mfn)).then_some(pfn)
}

/// The raw M2P entry of `mfn` (whatever the hypervisor says).
pub fn m2p_raw(mfn: u64) -> Option<u64> {
    imp::m2p(mfn)
}

/// Frames below this are in the direct map.
pub fn mapped_end_pfn() -> u64 {
    MAPPED_END.load(Ordering::Acquire)
}

/// Machine frame of the kernel's L4 (0 before [`init`]).
pub fn kernel_l4() -> u64 {
    KERNEL_L4.load(Ordering::Acquire)
}

/// The direct-map address of `pfn`, if it is mapped there.
pub fn direct_va(pfn: u64) -> Option<u64> {
    let boot_end = crate::boot::layout().map_or(0, |l| (l.mapped_end - VIRT_BASE) / PAGE_SIZE);
    (pfn < mapped_end_pfn().max(boot_end)).then(|| VIRT_BASE + pfn * PAGE_SIZE)
}

/// The pseudo-physical frame of a direct-map address.
pub fn direct_pfn(va: u64) -> Option<u64> {
    let pfn = va.checked_sub(VIRT_BASE)? / PAGE_SIZE;
    direct_va(pfn).map(|_| pfn)
}

/// A frame handed out by [`alloc_frame`]: zeroed, mapped writable at `va`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Pseudo-physical frame.
    pub pfn: u64,
    /// Machine frame.
    pub mfn: u64,
    /// Direct-map address.
    pub va: u64,
}

impl Frame {
    fn of(pfn: u64) -> Option<Frame> {
        Some(Frame {
            pfn,
            mfn: pfn_to_mfn(pfn)?,
            va: direct_va(pfn)?,
        })
    }
}

/// A zeroed frame of the domain's memory, mapped writable in the direct map.
pub fn alloc_frame() -> Result<Frame, PtError> {
    let _irq = crate::events::IrqGuard::new();
    let mut g = STATE.lock();
    let st = g.as_mut().ok_or(PtError::NoMemory)?;
    let pfn = loop {
        if let Some(p) = st.pool.alloc_below(st.mapped_end) {
            break p;
        }
        grow(st)?;
    };
    drop(g);
    let f = Frame::of(pfn).ok_or(PtError::NoMemory)?;
    imp::zero(f.va);
    Ok(f)
}

/// `n` zeroed frames, contiguous in the direct map, the first aligned to
/// `align` frames. Returns the first.
pub fn alloc_frames(n: u64, align: u64) -> Result<Frame, PtError> {
    let _irq = crate::events::IrqGuard::new();
    let mut g = STATE.lock();
    let st = g.as_mut().ok_or(PtError::NoMemory)?;
    let first = st.pool.alloc_run(n, align).ok_or(PtError::NoMemory)?;
    while st.mapped_end < first + n {
        grow(st)?;
    }
    drop(g);
    for p in first..first + n {
        imp::zero(direct_va(p).ok_or(PtError::NoMemory)?);
    }
    Frame::of(first).ok_or(PtError::NoMemory)
}

/// Gives a frame back (it must be mapped writable in the direct map again
/// and used by nothing).
pub fn free_frame(f: Frame) {
    let _irq = crate::events::IrqGuard::new();
    if let Some(st) = STATE.lock().as_mut() {
        st.pool.free_frame(f.pfn);
    }
}

/// Takes a frame out of the allocator's reach for good (e.g. before
/// giving it back to the hypervisor).
pub fn forget_frame(_f: Frame) {}

/// Takes up to `n` frames the allocator has never handed out off its top
/// (for the balloon driver): `[start, end)`. Those below
/// [`mapped_end_pfn`] are still in the direct map.
pub fn take_tail(n: u64) -> (u64, u64) {
    let _irq = crate::events::IrqGuard::new();
    STATE
        .lock()
        .as_mut()
        .map_or((0, 0), |s| s.pool.take_tail(n))
}

/// Gives frame `pfn` back to the allocator (the balloon driver, once it
/// is backed and mapped again): on top of the pool if it was taken from
/// there, else on the free list.
pub fn give_back(pfn: u64) {
    let _irq = crate::events::IrqGuard::new();
    if let Some(st) = STATE.lock().as_mut() {
        if !st.pool.extend_tail(pfn) {
            st.pool.free_frame(pfn);
        }
    }
}

/// Frames the allocator can still hand out.
pub fn available() -> u64 {
    STATE.lock().as_ref().map_or(0, |s| s.pool.available())
}

/// Remaps the direct-map alias of `pfn` read-only (`writable == false`) or
/// writable.
pub fn set_direct_writable(pfn: u64, writable: bool) -> Result<(), Errno> {
    let va = direct_va(pfn).ok_or(Errno::EINVAL)?;
    let mfn = pfn_to_mfn(pfn).ok_or(Errno::EINVAL)?;
    let flags = if writable {
        PteFlags::KERNEL_RW
    } else {
        PteFlags::KERNEL_RO
    };
    mmu::update_va_mapping(va, Pte::new(mfn, flags).0, Flush::InvlpgAll)
}

/// Maps one more L1's worth of frames into the direct map.
fn grow(st: &mut State) -> Result<(), PtError> {
    let first = st.mapped_end;
    if first >= st.pool.end {
        return Err(PtError::NoMemory);
    }
    let end = (crate::util::align_down(first, GROW_STEP) + GROW_STEP).min(st.pool.end);
    let va = VIRT_BASE + first * PAGE_SIZE;
    let l4 = st.kernel_l4;
    let l1 = {
        let mut b = XenPt { st: Some(st) };
        mm::ensure_l1(&mut b, l4, va)?
    };
    let mut batch: heapless::Vec<crate::abi::xen::MmuUpdate, 64> = heapless::Vec::new();
    for pfn in first..end {
        let mfn = pfn_to_mfn(pfn).ok_or(PtError::NoMemory)?;
        let idx = mm::index(VIRT_BASE + pfn * PAGE_SIZE, 1);
        let _ = batch.push(mmu::pt_update(l1, idx, Pte::new(mfn, PteFlags::KERNEL_RW)));
        if batch.is_full() {
            mmu::mmu_update(&batch).map_err(|e| PtError::Hypervisor(e.errno))?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        mmu::mmu_update(&batch).map_err(|e| PtError::Hypervisor(e.errno))?;
    }
    st.mapped_end = end;
    MAPPED_END.store(end, Ordering::Release);
    Ok(())
}

/// The page-table backend that runs on Xen: reads through the M2P and the
/// direct map, writes with `mmu_update`, takes new tables from the
/// allocator (or the bootstrap padding).
pub struct XenPt<'a> {
    st: Option<&'a mut State>,
}

impl PtBackend for XenPt<'_> {
    fn read(&self, table_mfn: u64, index: usize) -> Result<Pte, PtError> {
        let pfn = mfn_to_pfn(table_mfn).ok_or(PtError::Unreadable(table_mfn))?;
        let va = direct_va(pfn).ok_or(PtError::Unreadable(table_mfn))?;
        Ok(Pte(imp::read_entry(va, index)))
    }

    fn write(
        &mut self,
        table_mfn: u64,
        level: Level,
        index: usize,
        pte: Pte,
    ) -> Result<(), PtError> {
        mmu::write_pte(table_mfn, level, index, pte).map_err(PtError::Hypervisor)
    }

    fn new_table(&mut self, _level: Level) -> Result<u64, PtError> {
        let mapped = self.st.as_mut().and_then(|s| {
            let limit = s.mapped_end;
            s.pool.alloc_below(limit)
        });
        let pfn = match mapped {
            Some(p) => p,
            None => {
                let page = crate::page_alloc::alloc_page().ok_or(PtError::NoMemory)?;
                direct_pfn(page.as_ptr() as u64).ok_or(PtError::NoMemory)?
            }
        };
        let va = direct_va(pfn).ok_or(PtError::NoMemory)?;
        imp::zero(va);
        set_direct_writable(pfn, false)?;
        pfn_to_mfn(pfn).ok_or(PtError::NoMemory)
    }
}

/// Runs `f` with the page-table backend (allocator locked, events masked).
pub fn with_pt<R>(f: impl FnOnce(&mut XenPt<'_>) -> R) -> R {
    let _irq = crate::events::IrqGuard::new();
    let mut g = STATE.lock();
    let mut b = XenPt { st: g.as_mut() };
    f(&mut b)
}

/// Maps machine frame `mfn` at `va` in the kernel's address space.
pub fn map_kernel(va: u64, mfn: u64, flags: PteFlags) -> Result<Pte, PtError> {
    let l4 = kernel_l4();
    with_pt(|b| mm::map(b, l4, va, Pte::new(mfn, flags)))
}

/// Removes the kernel mapping of `va` (with a TLB flush on all vCPUs).
pub fn unmap_kernel(va: u64) -> Result<Pte, PtError> {
    let l4 = kernel_l4();
    let old = with_pt(|b| mm::unmap(b, l4, va))?;
    if old.present() {
        mmu::invlpg_all(va)?;
    }
    Ok(old)
}

/// The kernel's leaf entry for `va`.
pub fn lookup_kernel(va: u64) -> Result<Pte, PtError> {
    let l4 = kernel_l4();
    with_pt(|b| mm::lookup(b, l4, va))
}

/// A page-table root of our own (e.g. a user address space): an L4 frame,
/// pinned, that can be filled with [`AddressSpace::map`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressSpace {
    /// Machine frame of the L4.
    pub l4_mfn: u64,
}

impl AddressSpace {
    /// A new, empty L4 (zeroed, made read-only, pinned: Xen fills its own
    /// slots when it validates it).
    pub fn new() -> Result<AddressSpace, PtError> {
        let l4 = with_pt(|b| b.new_table(4))?;
        mmu::pin(4, l4)?;
        Ok(AddressSpace { l4_mfn: l4 })
    }

    /// Maps `va` to `mfn` with `flags`; returns the old entry.
    pub fn map(&self, va: u64, mfn: u64, flags: PteFlags) -> Result<Pte, PtError> {
        with_pt(|b| mm::map(b, self.l4_mfn, va, Pte::new(mfn, flags)))
    }

    /// Unmaps `va`; returns the old entry.
    pub fn unmap(&self, va: u64) -> Result<Pte, PtError> {
        with_pt(|b| mm::unmap(b, self.l4_mfn, va))
    }

    /// The leaf entry for `va`.
    pub fn lookup(&self, va: u64) -> Result<Pte, PtError> {
        with_pt(|b| mm::lookup(b, self.l4_mfn, va))
    }

    /// Copies `buf.len()` bytes from `va` in this address space (through
    /// the direct map of the frames it maps). Fails on an unmapped page or
    /// a frame that is not ours.
    pub fn read(&self, mut va: u64, buf: &mut [u8]) -> Result<(), PtError> {
        let mut done = 0;
        while done < buf.len() {
            let e = self.lookup(va)?;
            if !e.present() {
                return Err(PtError::Unreadable(va));
            }
            let pfn = mfn_to_pfn(e.mfn()).ok_or(PtError::Unreadable(e.mfn()))?;
            let base = direct_va(pfn).ok_or(PtError::Unreadable(e.mfn()))?;
            let off = (va & 0xfff) as usize;
            let n = (4096 - off).min(buf.len() - done);
            imp::copy_out(base + off as u64, &mut buf[done..done + n]);
            done += n;
            va += n as u64;
        }
        Ok(())
    }
}

#[cfg(target_os = "none")]
mod imp {
    use super::*;

    pub fn m2p(mfn: u64) -> Option<u64> {
        // The M2P covers at most 2^35 frames (256 GiB of table); refuse
        // anything beyond the host's RAM so a bad mfn cannot fault.
        let max = match MAX_MFN.load(Ordering::Acquire) {
            0 => FALLBACK_MAX_MFN,
            m => m,
        };
        if mfn >= max {
            return None;
        }
        let p = (MACH2PHYS_VIRT_START + mfn * 8) as *const u64;
        // SAFETY: the hypervisor maps the M2P read-only at this address for
        // every PV guest, covering every machine frame below
        // maximum_ram_page; a volatile read of it has no side effects.
        Some(unsafe { core::ptr::read_volatile(p) })
    }

    pub fn read_entry(table_va: u64, index: usize) -> u64 {
        let p = (table_va + (index as u64 & 511) * 8) as *const u64;
        // SAFETY: `table_va` is the direct-map address of a page-table
        // frame (mapped read-only); entries are 8-byte aligned words the
        // hypervisor may change under us, hence the volatile read.
        unsafe { core::ptr::read_volatile(p) }
    }

    pub fn zero(va: u64) {
        // SAFETY: `va` is the direct-map address of a frame this module
        // just took out of the allocator: mapped writable, used by nothing.
        unsafe { core::ptr::write_bytes(va as *mut u8, 0, PAGE_SIZE as usize) }
    }

    pub fn copy_out(va: u64, buf: &mut [u8]) {
        // SAFETY: `va..va+len` lies inside one direct-mapped frame of ours
        // (checked by the caller); a byte copy into a Rust buffer.
        unsafe { core::ptr::copy_nonoverlapping(va as *const u8, buf.as_mut_ptr(), buf.len()) }
    }
}

#[cfg(not(target_os = "none"))]
mod imp {
    pub fn m2p(_mfn: u64) -> Option<u64> {
        let _ = (
            super::MACH2PHYS_VIRT_START,
            &super::MAX_MFN,
            super::FALLBACK_MAX_MFN,
        );
        None
    }
    pub fn read_entry(_table_va: u64, _index: usize) -> u64 {
        0
    }
    pub fn zero(_va: u64) {}
    pub fn copy_out(_va: u64, buf: &mut [u8]) {
        buf.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_tail_goes_to_the_balloon_and_comes_back() {
        let mut p = FramePool::new(100, 110);
        assert_eq!(p.alloc_below(u64::MAX), Some(100));
        // Only never-handed-out frames.
        assert_eq!(p.take_tail(5), (105, 110));
        assert_eq!(p.take_tail(100), (101, 105));
        assert_eq!(p.available(), 0);
        assert_eq!(p.alloc_below(u64::MAX), None);
        // Back in order: each one just above the top.
        assert!(!p.extend_tail(102));
        assert!(p.extend_tail(101));
        assert!(p.extend_tail(102));
        assert_eq!(p.end(), 103);
        assert_eq!(p.alloc_below(u64::MAX), Some(101));
        assert_eq!(p.available(), 1);
    }

    #[test]
    fn pool_bumps_then_reuses() {
        let mut p = FramePool::new(100, 110);
        assert_eq!(p.available(), 10);
        assert_eq!(p.alloc_below(101), Some(100));
        assert_eq!(p.alloc_below(101), None);
        assert_eq!(p.alloc_below(200), Some(101));
        p.free_frame(100);
        assert_eq!(p.alloc_below(0), Some(100));
        assert_eq!(p.available(), 8);
    }

    #[test]
    fn aligned_runs() {
        let mut p = FramePool::new(3, 100);
        assert_eq!(p.alloc_run(16, 16), Some(16));
        assert_eq!(p.next_fresh(), 32);
        // The skipped frames 3..16 are on the free list.
        assert_eq!(p.available(), 68 + 13);
        assert_eq!(p.alloc_run(100, 1), None);
        assert_eq!(p.alloc_run(0, 1), None);
        assert_eq!(p.alloc_run(1, 3), None);
    }

    #[test]
    fn inverted_range_is_empty() {
        let mut p = FramePool::new(10, 5);
        assert_eq!(p.available(), 0);
        assert_eq!(p.alloc_below(u64::MAX), None);
    }

    #[test]
    fn direct_map_limits() {
        assert_eq!(MAX_DIRECT_PFNS, (1 << 19) - 1);
        assert_eq!(direct_va(0), None); // nothing mapped before boot
    }
}
