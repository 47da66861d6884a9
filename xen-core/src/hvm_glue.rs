//! The memory glue of HVM domains: their nested page tables
//! (`xen_core::hvm::p2m`, pure) over the frame allocator and the direct
//! map, and the guest-frame operations `memory_op`, `mmu_update` and
//! domain destruction need (populate, translate, remove, tear down).
//!
//! Owns [`Hvm`], what an HVM domain has beyond a PV one, and
//! [`AllocTables`], the `TableMemory` the p2m lives in. Trusts the p2m
//! module to touch only the table frames it was given; guest frame numbers
//! are checked here (range, alignment) before the p2m sees them.
//!
//! Table frames belong to no domain in the frame table (Xen takes them
//! from the domain's paging pool, not its `tot_pages`). A table frame the
//! p2m gives back is returned to the allocator at the end of the operation:
//! no HVM vCPU can run yet (`XEN_DOMCTL_unpausedomain` refuses HVM
//! domains), so no CPU can hold it in a nested TLB or paging-structure
//! cache. Once vCPUs run, that return must wait for a nested TLB flush.

use crate::arch::x86_64::paging::phys_to_virt;
use crate::domain::Domain;
use crate::memory::{self, FRAMES, FRAME_TABLE};
use alloc::vec::Vec;
use hypercall_abi::errno::Errno;
use xen_core::hvm::p2m::{self, P2m, P2mFormat, P2mPerms, P2mType, TableMemory};
use xen_core::mm::frame_table::{DomId as FtDomId, Owner, PageFlags, PagePut};
use xen_core::mm::ptval::PtMemory;
use xen_core::mm::Mfn;

pub use xen_core::hvm_dom::MAX_ORDER;

/// What an HVM domain has beyond a PV one.
pub struct Hvm {
    /// Its guest-physical to machine map: AMD NPT or Intel EPT tables.
    pub p2m: P2m,
    /// Its devices and policies, once it first runs.
    pub rt: Option<alloc::boxed::Box<crate::hvm_run::Runtime>>,
    /// `HVM_PARAM_*`.
    pub params: crate::hvm_run::Params,
    /// `XEN_X86_EMU_*`: the devices the hypervisor emulates for it.
    pub emulation: u32,
    /// Its dirty bitmap while in log-dirty mode ([`crate::log_dirty`]).
    pub log_dirty: Option<crate::log_dirty::Log>,
    /// LAPIC records `sethvmcontext` loaded before the domain first ran
    /// (its devices are made then): (vCPU, state, register page).
    pub pending_lapics: Vec<crate::hvm_run::SavedLapic>,
    /// The PIC pair and IOAPIC records loaded before the domain first ran.
    pub pending_platform: Option<alloc::boxed::Box<crate::hvm_run::SavedPlatform>>,
    /// What the guest wrote to Xen's debug port 0xe9 since its last newline.
    pub debug_line: Vec<u8>,
}

/// Nested-table frames from the frame allocator, reached through the
/// direct map. Frames the p2m frees are collected and returned by
/// [`with_tables`].
pub struct AllocTables {
    freed: Vec<Mfn>,
}

impl TableMemory for AllocTables {
    fn alloc_table(&mut self) -> Option<Mfn> {
        let mfn = FRAMES.lock().as_mut()?.alloc().ok()?;
        memory::clear_frame(mfn);
        Some(mfn)
    }

    fn free_table(&mut self, table: Mfn) {
        self.freed.push(table);
    }

    fn read_entry(&self, table: Mfn, index: usize) -> u64 {
        // SAFETY: the p2m reads only table frames `alloc_table` handed it
        // (RAM from the allocator, covered by the direct map, owned by the
        // p2m until `free_table`), and `index & 511` stays inside the
        // frame; an aligned u64 read there cannot fault.
        unsafe {
            (phys_to_virt(table.maddr()) as *const u64)
                .add(index & (p2m::ENTRIES - 1))
                .read_volatile()
        }
    }

    fn write_entry(&mut self, table: Mfn, index: usize, value: u64) {
        // SAFETY: as in read_entry: the frame is one of the p2m's tables,
        // which nothing else maps or writes; a single aligned 8-byte store
        // is atomic, so a hardware walk never sees a torn entry.
        unsafe {
            (phys_to_virt(table.maddr()) as *mut u64)
                .add(index & (p2m::ENTRIES - 1))
                .write_volatile(value)
        }
    }
}

/// Runs `f` over the allocator-backed table memory, then returns the table
/// frames the p2m freed to the allocator.
fn with_tables<R>(f: impl FnOnce(&mut AllocTables) -> R) -> R {
    let mut mem = AllocTables { freed: Vec::new() };
    let r = f(&mut mem);
    memory::free_frame_list(&mem.freed);
    r
}

/// Runs `f` on a domain's p2m over the allocator-backed table memory.
pub fn with_p2m<R>(p2m: &mut P2m, f: impl FnOnce(&mut P2m, &mut AllocTables) -> R) -> R {
    with_tables(|mem| f(p2m, mem))
}

/// A new HVM domain's state: an empty NPT p2m (its root table allocated).
pub fn new_hvm() -> Result<Hvm, Errno> {
    let format = if crate::arch::x86_64::svm::is_vmx() {
        P2mFormat::Ept
    } else {
        P2mFormat::Npt
    };
    let p2m = with_tables(|mem| P2m::new(mem, format)).map_err(|_| Errno::ENOMEM)?;
    Ok(Hvm {
        p2m,
        rt: None,
        params: [0; hypercall_abi::hvm::HVM_NR_PARAMS as usize],
        emulation: xen_core::hvm::platform::PlatformConfig::EMU_HVM,
        log_dirty: None,
        pending_lapics: Vec::new(),
        pending_platform: None,
        debug_line: Vec::new(),
    })
}

/// The machine frame backing guest frame `gfn` of `hvm`, if populated.
pub fn lookup(hvm: &Hvm, gfn: u64) -> Option<Mfn> {
    lookup_p2m(&hvm.p2m, gfn)
}

/// The machine frame `p2m` maps guest frame `gfn` to, if populated.
pub fn lookup_p2m(p2m: &P2m, gfn: u64) -> Option<Mfn> {
    let mem = AllocTables { freed: Vec::new() };
    p2m.lookup(&mem, gfn).map(|e| e.mfn)
}

/// Why an extent could not be populated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PopulateError {
    /// The range does not fit under the p2m's limit, or is misaligned
    /// for its order, or the order is too large (-EINVAL).
    BadGfn,
    /// A frame of the range is populated already.
    Populated,
    /// The domain would exceed `max_pages`, or memory ran out.
    NoMemory,
}

/// The frames of an extent of `1 << order` frames: one aligned run where
/// the allocator has one (so the p2m can use a 2 MiB page), single frames
/// otherwise. All or none.
fn alloc_extent(order: u32) -> Option<Vec<Mfn>> {
    let n = 1u64 << order;
    let mut fa = FRAMES.lock();
    let fa = fa.as_mut()?;
    if order > 0 {
        if let Ok(base) = fa.alloc_contig(n, n) {
            return Some((0..n).map(|i| Mfn(base.0 + i)).collect());
        }
    }
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        match fa.alloc() {
            Ok(m) => out.push(m),
            Err(_) => {
                for m in out {
                    let _ = fa.free(m);
                }
                return None;
            }
        }
    }
    Some(out)
}

/// `populate_physmap` of one extent: fresh zeroed frames, owned by `d` and
/// counted in its `tot_pages`, mapped read/write/execute at
/// `[gfn, gfn + (1 << order))` (2 MiB pages where the frames allow), their
/// M2P entries set to their guest frames (Xen's `set_gpfn_from_mfn`).
pub fn populate_extent(d: &mut Domain, gfn: u64, order: u32) -> Result<(), PopulateError> {
    let domid = d.domid;
    let Some(hvm) = d.hvm.as_mut() else {
        return Err(PopulateError::BadGfn);
    };
    let range = xen_core::hvm_dom::extent_range(gfn, order).map_err(|_| PopulateError::BadGfn)?;
    let n = range.end - range.start;
    if d.tot_pages.saturating_add(n) > d.max_pages {
        return Err(PopulateError::NoMemory);
    }
    {
        let mem = AllocTables { freed: Vec::new() };
        if range.clone().any(|g| hvm.p2m.lookup(&mem, g).is_some()) {
            return Err(PopulateError::Populated);
        }
    }
    let mfns = alloc_extent(order).ok_or(PopulateError::NoMemory)?;
    for &m in &mfns {
        memory::clear_frame(m);
    }
    let owner = Owner::Domain(FtDomId(domid));
    let assigned = {
        let mut guard = FRAME_TABLE.lock();
        match guard.as_mut() {
            None => false,
            Some(ft) => match mfns.iter().position(|&m| ft.assign(m, owner).is_err()) {
                None => true,
                Some(i) => {
                    // Cannot happen for frames fresh from the allocator;
                    // undo (the released frames are free in the table).
                    for &done in &mfns[..i] {
                        let _ = ft.release(done);
                    }
                    false
                }
            },
        }
    };
    if !assigned {
        memory::free_frame_list(&mfns);
        return Err(PopulateError::NoMemory);
    }
    let mapped = with_tables(|mem| {
        hvm.p2m
            .populate(mem, gfn, &mfns, P2mPerms::RWX, P2mType::Ram)
            .inspect_err(|_| {
                // Nothing of the range was mapped before (checked above),
                // so these unmaps split no 2 MiB page and allocate nothing.
                if order == p2m::ORDER_2M {
                    let _ = hvm.p2m.unmap(mem, gfn, order);
                } else {
                    for g in gfn..gfn + n {
                        let _ = hvm.p2m.unmap(mem, g, p2m::ORDER_4K);
                    }
                }
            })
    });
    if mapped.is_err() {
        crate::pv_mm::with_pt(domid, |_, ft, pt| {
            for &m in &mfns {
                if let Ok(PagePut::Freed) = ft.release(m) {
                    pt.frame_freed(m);
                }
            }
        });
        return Err(PopulateError::NoMemory);
    }
    for (i, &m) in mfns.iter().enumerate() {
        memory::set_m2p(m, gfn + i as u64);
    }
    d.tot_pages += n;
    Ok(())
}

/// `decrease_reservation` of one guest frame (Xen's `guest_remove_page`
/// for a translated domain): unmaps it from the p2m and drops the
/// domain's allocation reference; the frame goes back to the allocator
/// once nothing else (a Dom0 mapping) holds it. False if `gfn` is not
/// populated or the p2m cannot split the 2 MiB page around it.
pub fn remove_gfn(d: &mut Domain, gfn: u64) -> bool {
    let domid = d.domid;
    let Some(mfn) = d.hvm.as_ref().and_then(|h| lookup(h, gfn)) else {
        return false;
    };
    // A registered vcpu_info lives there: the hypervisor keeps writing it,
    // so the frame stays (Xen holds a page reference for it).
    if d.vcpus.iter().any(|v| v.vcpu_info_maddr >> 12 == mfn.0) {
        return false;
    }
    let Some(hvm) = d.hvm.as_mut() else {
        return false;
    };
    if with_tables(|mem| hvm.p2m.unmap(mem, gfn, p2m::ORDER_4K)).is_err() {
        return false;
    }
    let owner = Owner::Domain(FtDomId(domid));
    let released = crate::pv_mm::with_pt(domid, |_, ft, pt| {
        let ok = ft
            .info(mfn)
            .is_ok_and(|i| i.owner() == owner && i.flags().contains(PageFlags::ALLOCATED));
        if !ok {
            return false;
        }
        match ft.release(mfn) {
            Ok(PagePut::Freed) => {
                pt.frame_freed(mfn);
                true
            }
            Ok(PagePut::InUse) => true,
            Err(_) => false,
        }
    });
    if released {
        d.tot_pages = d.tot_pages.saturating_sub(1);
    }
    released
}

/// Maps a frame the domain does not own as RAM, `mfn` (its shared_info
/// or a grant-table frame: `XENMEM_add_to_physmap`), at guest frame
/// `gfn`, in place of whatever was there (a RAM frame there is given back
/// as `decrease_reservation` would). Teardown never frees it as the
/// domain's memory (it is not the domain's in the frame table).
pub fn map_special(d: &mut Domain, gfn: u64, mfn: Mfn) -> Result<(), Errno> {
    if d.hvm.as_ref().is_some_and(|h| lookup(h, gfn).is_some()) && !remove_gfn(d, gfn) {
        // Not RAM of the domain (an earlier special frame): just unmap it.
        let hvm = d.hvm.as_mut().ok_or(Errno::EINVAL)?;
        with_tables(|mem| hvm.p2m.unmap(mem, gfn, p2m::ORDER_4K)).map_err(|_| Errno::EINVAL)?;
    }
    let hvm = d.hvm.as_mut().ok_or(Errno::EINVAL)?;
    with_tables(|mem| {
        hvm.p2m
            .map(mem, gfn, mfn, p2m::ORDER_4K, P2mPerms::RWX, P2mType::Ram)
    })
    .map_err(|_| Errno::EINVAL)
}

/// Frees every table frame of a dying HVM domain's p2m (its memory frames
/// go with the rest of its frames, `pv_mm::relinquish`).
pub fn teardown(d: &mut Domain) {
    if let Some(hvm) = d.hvm.take() {
        if hvm.log_dirty.is_some() {
            crate::log_dirty::forget(d.domid);
        }
        with_tables(|mem| hvm.p2m.destroy(mem));
    }
}
