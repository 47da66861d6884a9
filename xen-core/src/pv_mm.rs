//! The page-table glue of PV domains: runs `xen_core::mm::ptval` (the pure
//! validation rules) over real memory, under the frame-table lock, and does
//! what the pure code leaves to it (its "glue's duties"): TLB flushes before
//! a frame changes type, giving freed frames back to the allocator only
//! after every CPU has flushed, and loading new base pointers.
//!
//! Owns [`DirectMapPt`], the `PtMemory` over the direct map, and
//! [`with_pt`], the one way the hypercalls and the domain builder touch
//! page-table accounting.

use crate::arch::x86_64::paging::{self, phys_to_virt};
use crate::arch::x86_64::{flush, instr};
use crate::memory::{self, FRAMES, FRAME_TABLE, INVALID_M2P_ENTRY};
use alloc::vec::Vec;
use xen_core::mm::frame_table::{DomId, FrameTable};
use xen_core::mm::ptval::{PtContext, PtMemory};
use xen_core::mm::Mfn;

/// Page tables of one domain, reached through the direct map.
pub struct DirectMapPt {
    /// The domain whose tables these are.
    domid: u16,
    /// Frames whose last reference went during this operation.
    freed: Vec<Mfn>,
    /// While some domain is in log-dirty mode: frames this operation
    /// wrote (page tables) or mapped writable, marked dirty in their
    /// owner's log before the frame table is unlocked.
    dirtied: Vec<Mfn>,
}

impl DirectMapPt {
    /// The operation wrote frame `mfn` of a domain through the direct map
    /// (`MMUEXT_CLEAR_PAGE`/`COPY_PAGE`): log-dirty mode must see it.
    pub fn written(&mut self, mfn: Mfn) {
        self.dirtied(mfn);
    }

    fn dirtied(&mut self, mfn: Mfn) {
        if crate::log_dirty::any_active() && self.dirtied.last() != Some(&mfn) {
            self.dirtied.push(mfn);
        }
    }
}

impl PtMemory for DirectMapPt {
    fn read_pte(&self, table: Mfn, index: usize) -> u64 {
        // SAFETY: ptval only asks about frames of the domain that are in the
        // frame table (so inside RAM, covered by the direct map), with
        // index < 512; an aligned u64 read there cannot fault.
        unsafe {
            (phys_to_virt(table.maddr()) as *const u64)
                .add(index & 511)
                .read_volatile()
        }
    }

    fn write_pte(&mut self, table: Mfn, index: usize, val: u64) {
        self.dirtied(table);
        // SAFETY: as in read_pte; the frame is the domain's page table (or a
        // page it may write), and a single aligned 8-byte store is atomic,
        // so the MMU never sees a torn entry.
        unsafe {
            (phys_to_virt(table.maddr()) as *mut u64)
                .add(index & 511)
                .write_volatile(val)
        }
    }

    fn swap_pte(&mut self, table: Mfn, index: usize, val: u64) -> u64 {
        self.dirtied(table);
        // SAFETY: as in read_pte; an aligned u64 of the direct map, which
        // the hardware updates (A/D) with locked operations too, so the
        // exchange sees every bit it set.
        let e = unsafe {
            &*((phys_to_virt(table.maddr()) as *const core::sync::atomic::AtomicU64)
                .add(index & 511))
        };
        e.swap(val, core::sync::atomic::Ordering::AcqRel)
    }

    fn flush_before_type_change(&mut self, _mfn: Mfn) {
        flush::domain(self.domid);
    }

    fn frame_freed(&mut self, mfn: Mfn) {
        self.freed.push(mfn);
    }

    fn grant_pte_dropped(&mut self, entry: u64) {
        crate::hypercall::grant_table::note_implicit_unmap(self.domid, entry);
    }

    fn foreign_writable_dropped(&mut self, mfn: Mfn, owner: xen_core::mm::frame_table::DomId) {
        crate::log_dirty::note_foreign(owner.0, mfn);
    }

    fn writable_mapped(&mut self, mfn: Mfn) {
        self.dirtied(mfn);
    }

    fn table_validated(&mut self, mfn: Mfn) {
        self.dirtied(mfn);
    }
}

/// The validation context of domain `domid`.
pub fn context(domid: u16) -> PtContext {
    PtContext {
        domid: DomId(domid),
        pg_owner: DomId(domid),
        xen_l4_slots: paging::hypervisor_l4_entries(),
        max_mfn: memory::max_mfn(),
        iomem: crate::hwirq::iomem_of(domid),
    }
}

/// [`with_pt`] for updates of `domid`'s tables whose new L1 entries map
/// frames of `pg_owner` (a privileged domain's foreign mappings).
pub fn with_pt_foreign<R>(
    domid: u16,
    pg_owner: u16,
    f: impl FnOnce(&PtContext, &mut FrameTable<'static>, &mut DirectMapPt) -> R,
) -> R {
    with_pt(domid, |ctx, ft, mem| {
        let ctx = PtContext {
            pg_owner: DomId(pg_owner),
            ..*ctx
        };
        f(&ctx, ft, mem)
    })
}

/// Runs `f` on domain `domid`'s page tables with the frame table locked,
/// then returns the frames that were freed to the allocator (after a flush
/// of every CPU, so no stale translation of them survives).
pub fn with_pt<R>(
    domid: u16,
    f: impl FnOnce(&PtContext, &mut FrameTable<'static>, &mut DirectMapPt) -> R,
) -> R {
    let ctx = context(domid);
    let mut mem = DirectMapPt {
        domid,
        freed: Vec::new(),
        dirtied: Vec::new(),
    };
    let r = {
        let mut ft = FRAME_TABLE.lock();
        let ft = ft.as_mut().expect("frame table is set up at boot");
        let r = f(&ctx, ft, &mut mem);
        crate::log_dirty::mark_pv_frames(ft, &mem.dirtied);
        r
    };
    give_back(domid, &mem.freed);
    r
}

/// Returns frames whose last reference went to the allocator, after every
/// CPU has dropped its translations of them.
pub fn give_back(domid: u16, freed: &[Mfn]) {
    if freed.is_empty() {
        return;
    }
    flush::domain(domid);
    let mut fa = FRAMES.lock();
    for &mfn in freed {
        memory::set_m2p(mfn, INVALID_M2P_ENTRY);
        if let Some(fa) = fa.as_mut() {
            if let Err(e) = fa.free(mfn) {
                log::error!("freeing {mfn:?}: {e:?}");
            }
        }
    }
}

/// Switches this CPU to the page table at machine address `cr3`, dropping
/// every translation of the previous one, global ones included (Xen's
/// `write_ptbase`).
pub fn load_cr3(cr3: u64) {
    // SAFETY: callers pass a validated guest L4 (which carries xen-core's
    // slots) or the idle table, so xen-core stays mapped.
    unsafe { instr::write_cr3(cr3) };
    flush::local();
}

/// Takes every frame reference a dying domain holds (Xen's
/// `domain_relinquish_resources` for a PV domain): its vCPUs' base pointers
/// and descriptor pages, its pins, whatever its page tables still hold
/// (cycles included), its shared_info, and the allocation reference of
/// each frame it owns. Frames nothing else refers to go back to the
/// allocator at once; one still mapped by another domain (a foreign or
/// grant mapping) goes back when that mapping goes. The domain's vCPUs
/// must be off every CPU.
pub fn relinquish(d: &mut crate::domain::Domain) {
    use xen_core::mm::frame_table::{PageFlags, PagePut};
    use xen_core::mm::ptval;
    let domid = d.domid;
    crate::log_dirty::pv_teardown(domid);
    let shinfo = Mfn(d.shared_info_maddr >> 12);
    let mut vcpu_refs: Vec<(Option<Mfn>, Option<Mfn>)> = Vec::new();
    let mut desc: Vec<Mfn> = Vec::new();
    for v in d.vcpus.iter_mut() {
        let k = (v.guest_table != 0).then_some(Mfn(v.guest_table >> 12));
        let u = (v.guest_table_user != 0).then_some(Mfn(v.guest_table_user >> 12));
        vcpu_refs.push((k, u));
        desc.extend(
            v.gdt_frames
                .iter()
                .chain(v.ldt_frames.iter())
                .map(|&f| Mfn(f >> 12)),
        );
        v.guest_table = 0;
        v.guest_table_user = 0;
        v.gdt_frames.clear();
        v.ldt_frames.clear();
    }
    let freed_before = memory::free_frames();
    with_pt(domid, |ctx, ft, mem| {
        for (k, u) in vcpu_refs {
            for t in [k, u].into_iter().flatten() {
                let _ = ptval::new_baseptr(ctx, ft, mem, Some(t), None);
            }
        }
        for f in desc {
            if let Ok((_, PagePut::Freed)) = ft.put_page_and_type(f) {
                mem.frame_freed(f);
            }
        }
        let owner = ctx.owner();
        let mine = |ft: &FrameTable<'static>, m: Mfn| ft.owner(m) == Ok(owner);
        for m in (0..ft.len() as u64).map(Mfn) {
            if mine(ft, m) && ft.is_pinned(m) == Ok(true) {
                let _ = ptval::unpin(ctx, ft, mem, m);
            }
        }
        for m in (0..ft.len() as u64).map(Mfn) {
            if mine(ft, m) {
                ptval::relinquish_table(ctx, ft, mem, m);
            }
        }
        if mine(ft, shinfo) {
            if let Ok((_, PagePut::Freed)) = ft.put_page_and_type(shinfo) {
                mem.frame_freed(shinfo);
            }
        }
        for m in (0..ft.len() as u64).map(Mfn) {
            let allocated = ft
                .info(m)
                .is_ok_and(|i| i.owner() == owner && i.flags().contains(PageFlags::ALLOCATED));
            if allocated {
                if let Ok(PagePut::Freed) = ft.release(m) {
                    mem.frame_freed(m);
                }
            }
        }
    });
    log::debug!(
        "d{domid}: relinquished its memory ({} frames back)",
        memory::free_frames().saturating_sub(freed_before)
    );
    d.tot_pages = 0;
}

/// Reads page-table entries through the direct map, for walks the
/// hypervisor makes in a PV guest's tables (frames inside RAM only).
pub struct RawReader;

impl xen_core::guest_walk::PteReader for RawReader {
    fn read_pte(&self, table: u64, index: usize) -> Option<u64> {
        if table >> 12 > memory::max_mfn() || index >= 512 {
            return None;
        }
        // SAFETY: `table` is a frame inside RAM (checked above), covered by
        // the direct map; an aligned u64 read there cannot fault.
        Some(unsafe {
            (phys_to_virt(table & !0xfff) as *const u64)
                .add(index)
                .read_volatile()
        })
    }
}

/// Entry `index` of L1 table `l1` as an atomic: the hardware sets A/D in
/// it concurrently on any CPU running the domain.
fn l1e_atomic(l1: Mfn, index: usize) -> &'static core::sync::atomic::AtomicU64 {
    // SAFETY: callers pass a frame inside RAM (a live page table of a
    // domain, checked in the frame table under its lock) and index < 512
    // (masked): an aligned u64 in the direct map, which is never unmapped;
    // AtomicU64 has the layout of u64 and every access to the entry from
    // here on is atomic or a single aligned store.
    unsafe {
        &*((phys_to_virt(l1.maddr()) as *const core::sync::atomic::AtomicU64).add(index & 511))
    }
}

/// Rewrites entry `index` of L1 table `l1` to `f(old)` with a
/// compare-and-exchange (retried if the hardware changed A/D meanwhile),
/// unless `f` answers `None`. Returns `(old, new)` if it wrote. The caller
/// holds the frame-table lock and has checked `l1` is a live L1.
pub fn update_l1e(l1: Mfn, index: usize, f: impl Fn(u64) -> Option<u64>) -> Option<(u64, u64)> {
    use core::sync::atomic::Ordering;
    let e = l1e_atomic(l1, index);
    let mut old = e.load(Ordering::Acquire);
    loop {
        let new = f(old)?;
        match e.compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some((old, new)),
            Err(now) => old = now,
        }
    }
}

/// Domain `domid`'s live (validated, referenced) L1 tables.
pub fn live_l1s<'a>(ft: &'a FrameTable<'static>, domid: u16) -> impl Iterator<Item = Mfn> + 'a {
    use xen_core::mm::frame_table::{Owner, PageFlags, PageType};
    (0..ft.len() as u64).map(Mfn).filter(move |&m| {
        ft.info(m).is_ok_and(|i| {
            i.owner() == Owner::Domain(DomId(domid))
                && i.page_type() == PageType::L1
                && i.type_count() > 0
                && i.flags().contains(PageFlags::VALIDATED)
        })
    })
}

/// Log-dirty mode's walks: applies `f` (`ptval::protect_l1e` or
/// `unprotect_l1e`) to every entry of `domid`'s live L1 tables, with
/// `own_ram_only` only to entries mapping a RAM frame `domid` owns.
/// Returns how many entries changed. The caller holds the frame-table lock
/// (so no update runs concurrently) and flushes the domain's TLBs after.
pub fn rewrite_l1es(
    ft: &FrameTable<'static>,
    domid: u16,
    own_ram_only: bool,
    f: fn(u64) -> Option<u64>,
) -> u64 {
    use xen_core::mm::frame_table::Owner;
    use xen_core::mm::pte::ADDR_MASK;
    let max = memory::max_mfn();
    let mut n = 0;
    let l1s: Vec<Mfn> = live_l1s(ft, domid).collect();
    for l1 in l1s {
        for i in 0..512 {
            let e = l1e_atomic(l1, i).load(core::sync::atomic::Ordering::Acquire);
            if f(e).is_none() {
                continue;
            }
            if own_ram_only {
                let target = Mfn((e & ADDR_MASK) >> 12);
                if target.0 > max || ft.owner(target) != Ok(Owner::Domain(DomId(domid))) {
                    continue;
                }
            }
            if update_l1e(l1, i, f).is_some() {
                n += 1;
            }
        }
    }
    n
}
