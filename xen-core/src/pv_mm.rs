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
        // SAFETY: as in read_pte; the frame is the domain's page table (or a
        // page it may write), and a single aligned 8-byte store is atomic,
        // so the MMU never sees a torn entry.
        unsafe {
            (phys_to_virt(table.maddr()) as *mut u64)
                .add(index & 511)
                .write_volatile(val)
        }
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
}

/// The validation context of domain `domid`.
pub fn context(domid: u16) -> PtContext {
    PtContext {
        domid: DomId(domid),
        xen_l4_slots: paging::hypervisor_l4_entries(),
        max_mfn: memory::max_mfn(),
    }
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
    };
    let r = {
        let mut ft = FRAME_TABLE.lock();
        let ft = ft.as_mut().expect("frame table is set up at boot");
        f(&ctx, ft, &mut mem)
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
