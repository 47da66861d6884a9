//! `HYPERVISOR_grant_table_op` (and `XENMEM_add_to_physmap`), as Xen 4.17's
//! `do_grant_table_op` answers a 64-bit PV guest.
//!
//! The decisions live in `xen_core::grant_table` (pure, host-tested); this
//! module copies requests in and statuses out, finds the domains involved
//! (the caller, or another through `Call::others`), and runs the logic over
//! real memory under the frame-table lock (`pv_mm::with_pt`): shared entries
//! through the direct map with atomic updates ([`DirectShared`]), bookkeeping
//! pages and shared frames from the frame allocator ([`GntEnv`]).
//!
//! Batches are bounded: after [`BATCH`] requests `map_grant_ref`,
//! `unmap_grant_ref`, `unmap_and_replace`, `copy` and `swap_grant_ref`
//! become continuations, as Xen's preemption checks make them. Unmaps remove up to 32 PTEs, flush the caller's TLBs
//! once, then drop the references (Xen's `GNTTAB_UNMAP_BATCH_SIZE`).
//!
//! Domain teardown: [`teardown`] (or its parts: [`release_mappings`],
//! [`revoke_foreign_mappings`], [`destroy_table`]).

use super::{Call, Others, Outcome};
use crate::arch::x86_64::flush;
use crate::arch::x86_64::paging::{phys_to_virt, DIRECTMAP_VIRT_START};
use crate::domain::{copy_to_guest, read_guest, write_guest, Domain};
use crate::hvm_glue::Hvm;
use crate::memory::{self, FRAMES};
use crate::pv_mm::{with_pt, DirectMapPt};
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};
use hypercall_abi::errno::Errno;
use hypercall_abi::grant_table::{
    GntStatus, GnttabCacheFlush, GnttabCopy, GnttabGetStatusFrames, GnttabGetVersion,
    GnttabMapGrantRef, GnttabOp, GnttabQuerySize, GnttabSetVersion, GnttabSetupTable,
    GnttabSwapGrantRef, GnttabUnmapAndReplace, GnttabUnmapGrantRef, GNTCOPY_DEST_GREF,
    GNTCOPY_SOURCE_GREF,
};
use hypercall_abi::hypercall::Hypercall;
use hypercall_abi::memory::{XenAddToPhysmap, XenMapSpace};
use hypercall_abi::xen::DOMID_SELF;
use xen_core::grant_table::{
    self as gt, ActiveTable, CopyDomains, CopySide, GrantEnv, Local, MapRequest, Page, Remote,
    SharedEntries, UnmapRequest, Unmapped, MAX_GRANT_FRAMES,
};
use xen_core::mm::frame_table::{DomId as FtDomId, FrameTable};
use xen_core::mm::ptval::{PtContext, PtMemory};
use xen_core::mm::Mfn;

/// Requests handled per hypercall entry before continuing.
const BATCH: u32 = 256;
/// Unmaps between TLB flushes (Xen's `GNTTAB_UNMAP_BATCH_SIZE`).
const UNMAP_CHUNK: usize = 32;
/// Xen's `GNTTABOP_CONTINUATION_ARG_SHIFT`: the command is the low 12 bits.
const CMD_MASK: u32 = (1 << 12) - 1;
/// The only grant-table version Oxen offers (see docs/abi-deviations.md).
const VERSION: u32 = 1;
/// End of the hypervisor's range.
const HYPERVISOR_VIRT_END: u64 = 0xffff_8800_0000_0000;

// Implicit unmaps --------------------------------------------------------

/// One bit per domain id: a grant PTE of the domain went other than through
/// the grant-table code (Xen's "Attempt to implicitly unmap a granted PTE"),
/// so the domain is crashed when its hypercall returns.
static IMPLICIT_UNMAP: [AtomicU64; 0x7ff0 / 64] = [const { AtomicU64::new(0) }; 0x7ff0 / 64];

/// Records an implicit unmap of one of `domid`'s grant PTEs. Only a domain
/// doing it itself, in its own hypercall, is crashed for it; its tables
/// torn down by someone else (domain destruction) are no offence (Xen:
/// not while the domain is shutting down or dying).
pub fn note_implicit_unmap(domid: u16, entry: u64) {
    if crate::sched::current().map(|(d, _)| d) != Some(domid) {
        return;
    }
    log::warn!("d{domid}: attempt to implicitly unmap a granted PTE {entry:#018x}");
    if let Some(w) = IMPLICIT_UNMAP.get(usize::from(domid) / 64) {
        w.fetch_or(1 << (domid % 64), Ordering::AcqRel);
    }
}

/// Whether `domid` implicitly unmapped a grant PTE (and forgets it).
pub fn take_implicit_unmap(domid: u16) -> bool {
    let bit = 1 << (domid % 64);
    // A plain load first: this runs on every hypercall, and the bit is
    // almost never set.
    IMPLICIT_UNMAP
        .get(usize::from(domid) / 64)
        .is_some_and(|w| {
            w.load(Ordering::Acquire) & bit != 0 && w.fetch_and(!bit, Ordering::AcqRel) & bit != 0
        })
}

// The environment ---------------------------------------------------------

/// The grant-table logic's view of the machine: the page tables of the
/// calling domain (through `with_pt`'s [`DirectMapPt`]), the frame
/// allocator, TLB flushes, the direct map.
struct GntEnv<'a> {
    pt: &'a mut DirectMapPt,
    domid: u16,
}

impl PtMemory for GntEnv<'_> {
    fn read_pte(&self, table: Mfn, index: usize) -> u64 {
        self.pt.read_pte(table, index)
    }
    fn write_pte(&mut self, table: Mfn, index: usize, val: u64) {
        self.pt.write_pte(table, index, val)
    }
    fn swap_pte(&mut self, table: Mfn, index: usize, val: u64) -> u64 {
        self.pt.swap_pte(table, index, val)
    }
    fn flush_before_type_change(&mut self, mfn: Mfn) {
        self.pt.flush_before_type_change(mfn)
    }
    fn frame_freed(&mut self, mfn: Mfn) {
        self.pt.frame_freed(mfn)
    }
    fn grant_pte_dropped(&mut self, entry: u64) {
        note_implicit_unmap(self.domid, entry);
    }
    fn foreign_writable_dropped(&mut self, mfn: Mfn, owner: xen_core::mm::frame_table::DomId) {
        self.pt.foreign_writable_dropped(mfn, owner)
    }
    fn writable_mapped(&mut self, mfn: Mfn) {
        self.pt.writable_mapped(mfn)
    }
    fn table_validated(&mut self, mfn: Mfn) {
        self.pt.table_validated(mfn)
    }
}

impl GrantEnv for GntEnv<'_> {
    fn mark_dirty(&mut self, rd: u16, mfn: Mfn) {
        crate::log_dirty::note_foreign(rd, mfn);
    }

    fn alloc_page(&mut self) -> Option<&'static mut Page> {
        let mfn = self.alloc_frame()?;
        // SAFETY: a free frame just taken from the allocator (so no one
        // else refers to it), inside RAM and so covered by the direct map,
        // zeroed, page-aligned: a valid, exclusively owned `[u64; 512]`
        // until free_page gives it back.
        Some(unsafe { &mut *(phys_to_virt(mfn.maddr()) as *mut Page) })
    }

    fn alloc_page_uncleared(&mut self) -> Option<&'static mut Page> {
        let mfn = FRAMES.lock().as_mut()?.alloc().ok()?;
        // SAFETY: as in alloc_page; the contents are whatever the frame's
        // last user left, which the maptrack never reads before writing
        // (and never shows a guest).
        Some(unsafe { &mut *(phys_to_virt(mfn.maddr()) as *mut Page) })
    }

    fn free_page(&mut self, page: &'static mut Page) {
        let pa = page.as_ptr() as u64 - DIRECTMAP_VIRT_START;
        self.free_frame(Mfn(pa >> 12));
    }

    fn alloc_frame(&mut self) -> Option<Mfn> {
        let mfn = FRAMES.lock().as_mut()?.alloc().ok()?;
        memory::clear_frame(mfn);
        Some(mfn)
    }

    fn free_frame(&mut self, mfn: Mfn) {
        if let Some(fa) = FRAMES.lock().as_mut() {
            if let Err(e) = fa.free(mfn) {
                log::error!("grant table: freeing {mfn:?}: {e:?}");
            }
        }
    }

    fn flush_tlbs(&mut self) {
        flush::domain(self.domid);
    }

    fn copy(&mut self, src: Mfn, src_off: u16, dst: Mfn, dst_off: u16, len: u16) {
        let s = phys_to_virt(src.maddr()) + u64::from(src_off);
        let d = phys_to_virt(dst.maddr()) + u64::from(dst_off);
        // SAFETY: both frames are RAM (direct-mapped) and referenced by the
        // copy (the destination with a writable type, so it is no page
        // table); the ranges lie within their frames (checked by the pure
        // code); `copy` tolerates overlap (a frame copied onto itself).
        unsafe { core::ptr::copy(s as *const u8, d as *mut u8, usize::from(len)) };
        // Whoever owns it (the caller's own frame, or a granter's), a PV
        // domain in log-dirty mode sees it written.
        self.pt.written(dst);
    }
}

/// Runs `f` with the frame table and the calling domain's page tables.
fn with_env<R>(
    domid: u16,
    f: impl FnOnce(&PtContext, &mut FrameTable<'static>, &mut GntEnv<'_>) -> R,
) -> R {
    with_pt(domid, |ctx, ft, mem| {
        let mut env = GntEnv { pt: mem, domid };
        f(ctx, ft, &mut env)
    })
}

/// A domain's v1 shared entries through the direct map: its shared frames
/// as they are when the operation starts (they change only with
/// `setup_table` and teardown, never during one).
///
/// Two kinds of frame list: every frame ([`AllFrames`], for operations that
/// may touch any entry), or only the frame holding one entry
/// ([`EntryFrame`], for a map or an unmap, which touch exactly one): that
/// one copies no frame list, which (a 64-frame array zeroed, filled and
/// moved) was a tenth of a grant map's instructions. An entry outside the
/// frames held reads as not allocated.
struct DirectShared<F>(F);

/// The shared frames a [`DirectShared`] can reach.
trait SharedFrames {
    /// Shared frame `i` of the table, if held.
    fn frame(&self, i: usize) -> Option<Mfn>;
}

/// Every shared frame of a table.
struct AllFrames(heapless::Vec<Mfn, { MAX_GRANT_FRAMES as usize }>);

impl SharedFrames for AllFrames {
    fn frame(&self, i: usize) -> Option<Mfn> {
        self.0.get(i).copied()
    }
}

/// The one shared frame holding a given entry.
struct EntryFrame(Option<(usize, Mfn)>);

impl SharedFrames for EntryFrame {
    fn frame(&self, i: usize) -> Option<Mfn> {
        self.0.filter(|&(k, _)| k == i).map(|(_, f)| f)
    }
}

impl DirectShared<AllFrames> {
    fn of(t: &ActiveTable) -> Self {
        DirectShared(AllFrames(t.allocated_frames().iter().copied().collect()))
    }
}

impl DirectShared<EntryFrame> {
    /// Only the frame of entry `gref` (none if it is beyond the table).
    fn of_entry(t: &ActiveTable, gref: u32) -> Self {
        let i = (gref / gt::ENTRIES_PER_FRAME) as usize;
        DirectShared(EntryFrame(t.allocated_frames().get(i).map(|&f| (i, f))))
    }
}

impl<F: SharedFrames> DirectShared<F> {
    /// The virtual address of byte `off` of entry `gref`, if allocated.
    fn addr(&self, gref: u32, off: u64) -> Option<u64> {
        let f = self.0.frame((gref / gt::ENTRIES_PER_FRAME) as usize)?;
        Some(phys_to_virt(f.maddr()) + u64::from(gref % gt::ENTRIES_PER_FRAME) * 8 + off)
    }
}

impl<F: SharedFrames> SharedEntries for DirectShared<F> {
    fn header(&self, gref: u32) -> u32 {
        self.addr(gref, 0).map_or(0, |a| {
            // SAFETY: an aligned word of a shared grant frame (RAM, held by
            // the table); the guest may write it concurrently: atomics.
            unsafe { &*(a as *const AtomicU32) }.load(Ordering::Acquire)
        })
    }
    fn frame(&self, gref: u32) -> u32 {
        self.addr(gref, 4).map_or(0, |a| {
            // SAFETY: as in header.
            unsafe { &*(a as *const AtomicU32) }.load(Ordering::Acquire)
        })
    }
    fn cmpxchg_header(&mut self, gref: u32, old: u32, new: u32) -> u32 {
        self.addr(gref, 0).map_or(0, |a| {
            // SAFETY: as in header.
            let w = unsafe { &*(a as *const AtomicU32) };
            match w.compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(v) | Err(v) => v,
            }
        })
    }
    fn entry(&self, gref: u32) -> u64 {
        self.addr(gref, 0).map_or(0, |a| {
            // SAFETY: as in header.
            unsafe { &*(a as *const AtomicU64) }.load(Ordering::Acquire)
        })
    }
    fn set_entry(&mut self, gref: u32, e: u64) {
        if let Some(a) = self.addr(gref, 0) {
            // SAFETY: as in header.
            unsafe { &*(a as *const AtomicU64) }.store(e, Ordering::Release);
        }
    }
    fn clear_flags(&mut self, gref: u32, mask: u16) {
        if let Some(a) = self.addr(gref, 0) {
            // SAFETY: as in header; a 2-byte locked AND confined to `flags`
            // (Xen's gnttab_clear_flags).
            unsafe { &*(a as *const AtomicU16) }.fetch_and(!mask, Ordering::AcqRel);
        }
    }
}

// Dispatch ----------------------------------------------------------------

/// Xen's `guest_handle_okay` for a 64-bit PV guest (`array_access_ok`):
/// the element count is not absurd and the array starts at a guest address
/// (`__addr_ok`: below 2^47 or above the hypervisor's range). The copies
/// check the rest, element by element.
fn access_ok(addr: u64, count: u64, size: u64) -> bool {
    count < u64::MAX / size.max(1) && !(1 << 47..HYPERVISOR_VIRT_END).contains(&addr)
}

/// `HYPERVISOR_grant_table_op(cmd, uop, count)`.
#[inline(never)]
pub fn grant_table_op(c: &mut Call) -> Outcome {
    let [cmd, uop, count, ..] = c.args();
    let count = count as u32;
    if (count as i32) < 0 {
        return Outcome::Ret(Errno::EINVAL.to_ret());
    }
    let cmd = cmd as u32;
    let op = GnttabOp::from_raw(u64::from(cmd & CMD_MASK));
    if cmd & !CMD_MASK != 0 && op != Some(GnttabOp::CacheFlush) {
        return Outcome::Ret(Errno::EINVAL.to_ret());
    }
    let Some(op) = op else {
        return Outcome::Ret(Errno::ENOSYS.to_ret());
    };
    let r = match op {
        GnttabOp::MapGrantRef => return batch(c, op, uop, count, size_of::<GnttabMapGrantRef>()),
        GnttabOp::UnmapGrantRef => {
            return batch(c, op, uop, count, size_of::<GnttabUnmapGrantRef>())
        }
        GnttabOp::UnmapAndReplace => {
            return batch(c, op, uop, count, size_of::<GnttabUnmapAndReplace>())
        }
        GnttabOp::Copy => return batch(c, op, uop, count, size_of::<GnttabCopy>()),
        GnttabOp::SwapGrantRef => return batch(c, op, uop, count, size_of::<GnttabSwapGrantRef>()),
        GnttabOp::CacheFlush => cache_flush(c, cmd & !CMD_MASK, uop, count),
        GnttabOp::SetupTable => setup_table(c, uop, count),
        GnttabOp::QuerySize => query_size(c, uop, count),
        GnttabOp::SetVersion => set_version(c, uop),
        GnttabOp::GetVersion => get_version(c, uop),
        GnttabOp::GetStatusFrames => get_status_frames(c, uop, count),
        _ => Err(Errno::ENOSYS),
    };
    Outcome::Ret(r.unwrap_or_else(Errno::to_ret))
}

/// Turns the call into a continuation with `uop` and `count` advanced.
fn continuation(c: &mut Call, cmd: u64, uop: u64, count: u64) -> Outcome {
    let f = &mut *c.frame;
    f.rip = f.rip.wrapping_sub(2);
    f.rax = u64::from(Hypercall::GrantTableOp.raw());
    f.rdi = cmd;
    f.rsi = uop;
    f.rdx = count;
    Outcome::NoRet
}

/// The batched operations: one request at a time, statuses written back,
/// a continuation after [`BATCH`].
fn batch(c: &mut Call, op: GnttabOp, uop: u64, count: u32, size: usize) -> Outcome {
    let size = size as u64;
    if !access_ok(uop, u64::from(count), size) {
        return Outcome::Ret(Errno::EFAULT.to_ret());
    }
    let n = count.min(BATCH);
    let r = match op {
        GnttabOp::MapGrantRef => map_batch(c, uop, n),
        GnttabOp::Copy => copy_batch(c, uop, n),
        GnttabOp::SwapGrantRef => swap_batch(c, uop, n),
        _ => unmap_batch(c, uop, n, op == GnttabOp::UnmapAndReplace),
    };
    match r {
        Err(e) => Outcome::Ret(e.to_ret()),
        Ok(crash @ Outcome::Crash(_)) => crash,
        Ok(_) if n < count => continuation(
            c,
            u64::from(op.raw()),
            uop.wrapping_add(u64::from(n) * size),
            u64::from(count - n),
        ),
        Ok(_) => Outcome::Ret(0),
    }
}

/// The domain a grant operation names: the caller (`DOMID_SELF` where Xen
/// looks up "any id", or its own id) or another.
fn is_self(c: &Call, dom: u16, any_id: bool) -> bool {
    dom == c.dom.domid || (any_id && dom == DOMID_SELF)
}

fn map_batch(c: &mut Call, uop: u64, n: u32) -> Result<Outcome, Errno> {
    for i in 0..u64::from(n) {
        let va = uop.wrapping_add(i * size_of::<GnttabMapGrantRef>() as u64);
        let mut op: GnttabMapGrantRef = read_guest(c.cr3, va)?;
        match map_one(c, &op) {
            Ok(m) => {
                op.status = GntStatus::Okay.raw();
                op.handle = m.handle;
                op.dev_bus_addr = m.dev_bus_addr;
            }
            Err(st) => op.status = st.raw(),
        }
        write_guest(c.cr3, va, &op)?;
    }
    Ok(Outcome::Ret(0))
}

fn map_one(c: &mut Call, op: &GnttabMapGrantRef) -> Result<gt::Mapped, GntStatus> {
    gt::map_flags_ok(op.flags)?;
    let req = MapRequest {
        host_addr: op.host_addr,
        flags: op.flags,
        gref: op.r#ref,
    };
    let domid = c.dom.domid;
    let l4 = Mfn(c.dom.vcpus[c.vcpu].guest_table >> 12);
    // Xen looks the granter up by id: DOMID_SELF is no domain here.
    if is_self(c, op.dom, false) {
        let g = &mut *c.dom.grants;
        let xl = p2m_lookup(c.dom.hvm.as_ref());
        let mut shared = DirectShared::of_entry(&g.active, req.gref);
        with_env(domid, |ctx, ft, env| {
            let mut l = Local {
                ctx,
                l4,
                maptrack: &mut g.maptrack,
            };
            let mut r = Remote {
                domid: FtDomId(domid),
                active: &mut g.active,
                shared: &mut shared,
                p2m: as_dyn(&xl),
            };
            gt::map_grant_ref(env, ft, &mut l, &mut r, &req)
        })
    } else {
        let rd = c.others.get(op.dom).ok_or(GntStatus::BadDomain)?;
        let rdomid = rd.domid;
        let xl = p2m_lookup(rd.hvm.as_ref());
        let ractive = &mut rd.grants.active;
        let mut shared = DirectShared::of_entry(ractive, req.gref);
        let maptrack = &mut c.dom.grants.maptrack;
        with_env(domid, |ctx, ft, env| {
            let mut l = Local { ctx, l4, maptrack };
            let mut r = Remote {
                domid: FtDomId(rdomid),
                active: ractive,
                shared: &mut shared,
                p2m: as_dyn(&xl),
            };
            gt::map_grant_ref(env, ft, &mut l, &mut r, &req)
        })
    }
}

/// The granter's active table of a mapping, `None` if it is gone.
fn remote_active<'a>(
    dom: &'a mut Domain,
    others: &'a mut Others<'_>,
    rd: u16,
) -> Option<&'a mut ActiveTable> {
    if rd == dom.domid {
        Some(&mut dom.grants.active)
    } else {
        others.get(rd).map(|d| &mut d.grants.active)
    }
}

fn unmap_batch(c: &mut Call, uop: u64, n: u32, replace: bool) -> Result<Outcome, Errno> {
    let domid = c.dom.domid;
    let l4 = Mfn(c.dom.vcpus[c.vcpu].guest_table >> 12);
    let size = size_of::<GnttabUnmapGrantRef>() as u64;
    let mut i = 0u64;
    while i < u64::from(n) {
        let mut done: heapless::Vec<Unmapped, UNMAP_CHUNK> = heapless::Vec::new();
        let mut fault = None;
        let mut crash = false;
        let end = (i + UNMAP_CHUNK as u64).min(u64::from(n));
        while i < end {
            let va = uop.wrapping_add(i * size);
            let req = if replace {
                match read_guest::<GnttabUnmapAndReplace>(c.cr3, va) {
                    Ok(op) => Ok(UnmapRequest {
                        host_addr: op.host_addr,
                        dev_bus_addr: 0,
                        handle: op.handle,
                        new_addr: op.new_addr,
                    }),
                    Err(e) => {
                        fault = Some(e);
                        break;
                    }
                }
            } else {
                match read_guest::<GnttabUnmapGrantRef>(c.cr3, va) {
                    Ok(op) => Ok(UnmapRequest {
                        host_addr: op.host_addr,
                        dev_bus_addr: op.dev_bus_addr,
                        handle: op.handle,
                        new_addr: 0,
                    }),
                    Err(e) => {
                        fault = Some(e);
                        break;
                    }
                }
            };
            let st = match req.and_then(|r| unmap_one(c, l4, &r)) {
                Ok(Some(u)) => {
                    let _ = done.push(u);
                    GntStatus::Okay
                }
                Ok(None) => {
                    crash = true;
                    break;
                }
                Err(st) => st,
            };
            // The status field sits at offset 20 in both structs.
            if let Err(e) = copy_to_guest(c.cr3, va.wrapping_add(20), &st.raw().to_le_bytes()) {
                fault = Some(e);
                i += 1;
                break;
            }
            i += 1;
        }
        with_env(domid, |_, ft, env| {
            if done.iter().any(|u| u.needs_flush) {
                env.flush_tlbs();
            }
            for u in &done {
                let Some(ractive) = remote_active(c.dom, &mut c.others, u.rd) else {
                    continue;
                };
                let mut shared = DirectShared::of_entry(ractive, u.gref);
                gt::unmap_complete(env, ft, ractive, &mut shared, u);
            }
        });
        if crash {
            return Ok(Outcome::Crash("unmap of a grant whose domain is gone"));
        }
        if let Some(e) = fault {
            return Err(e);
        }
    }
    Ok(Outcome::Ret(0))
}

/// One unmap's first half; `Ok(None)`: the granter is gone (Xen crashes
/// the caller).
fn unmap_one(c: &mut Call, l4: Mfn, req: &UnmapRequest) -> Result<Option<Unmapped>, GntStatus> {
    let domid = c.dom.domid;
    let m = gt::unmap_lookup(&c.dom.grants.maptrack, req.handle)?;
    let (ractive, maptrack): (&ActiveTable, _) = if m.domid == domid {
        let g = &mut *c.dom.grants;
        (&g.active, &mut g.maptrack)
    } else {
        match c.others.get(m.domid) {
            Some(rd) => (&rd.grants.active, &mut c.dom.grants.maptrack),
            None => return Ok(None),
        }
    };
    with_env(domid, |ctx, ft, env| {
        let mut l = Local { ctx, l4, maptrack };
        gt::unmap_grant_ref(env, ft, &mut l, ractive, req).map(Some)
    })
}

fn swap_batch(c: &mut Call, uop: u64, n: u32) -> Result<Outcome, Errno> {
    let size = size_of::<GnttabSwapGrantRef>() as u64;
    for i in 0..u64::from(n) {
        let va = uop.wrapping_add(i * size);
        let op: GnttabSwapGrantRef = read_guest(c.cr3, va)?;
        let active = &c.dom.grants.active;
        let mut shared = DirectShared::of(active);
        let st = match gt::swap_grant_ref(active, &mut shared, op.ref_a, op.ref_b) {
            Ok(()) => GntStatus::Okay,
            Err(st) => st,
        };
        copy_to_guest(c.cr3, va.wrapping_add(8), &st.raw().to_le_bytes())?;
    }
    Ok(Outcome::Ret(0))
}

fn copy_batch(c: &mut Call, uop: u64, n: u32) -> Result<Outcome, Errno> {
    let size = size_of::<GnttabCopy>() as u64;
    for i in 0..u64::from(n) {
        let va = uop.wrapping_add(i * size);
        let op: GnttabCopy = read_guest(c.cr3, va)?;
        let st = match copy_one(c, &op) {
            Ok(()) => GntStatus::Okay,
            Err(st) => st,
        };
        copy_to_guest(c.cr3, va.wrapping_add(36), &st.raw().to_le_bytes())?;
    }
    Ok(Outcome::Ret(0))
}

/// The domain of one side of a copy (Xen's `gnttab_copy_lock_domain`):
/// only `DOMID_SELF` may name a frame directly.
fn copy_domain(c: &mut Call, dom: u16, is_gref: bool) -> Result<u16, GntStatus> {
    if dom != DOMID_SELF && !is_gref {
        return Err(GntStatus::PermissionDenied);
    }
    if is_self(c, dom, true) {
        return Ok(c.dom.domid);
    }
    c.others
        .get(dom)
        .map(|d| d.domid)
        .ok_or(GntStatus::BadDomain)
}

fn copy_one(c: &mut Call, op: &GnttabCopy) -> Result<(), GntStatus> {
    let sg = op.flags & GNTCOPY_SOURCE_GREF != 0;
    let dg = op.flags & GNTCOPY_DEST_GREF != 0;
    let sd = copy_domain(c, op.source.domid, sg)?;
    let dd = copy_domain(c, op.dest.domid, dg)?;
    let src = CopySide {
        u: op.source.u,
        is_gref: sg,
        offset: op.source.offset,
    };
    let dst = CopySide {
        u: op.dest.u,
        is_gref: dg,
        offset: op.dest.offset,
    };
    let me = c.dom.domid;
    let len = op.len;
    type Side<'s> = (&'s mut ActiveTable, u16, Option<&'s Hvm>);
    let run = |(a, ad, ha): Side<'_>, b: Option<Side<'_>>| {
        let mut sa = DirectShared::of(a);
        let xa = p2m_lookup(ha);
        let mut ra = Remote {
            domid: FtDomId(ad),
            active: a,
            shared: &mut sa,
            p2m: as_dyn(&xa),
        };
        with_env(me, |_, ft, env| match b {
            None => gt::copy_one(
                env,
                ft,
                FtDomId(me),
                CopyDomains::Same(&mut ra),
                &src,
                &dst,
                len,
            ),
            Some((b, bd, hb)) => {
                let mut sb = DirectShared::of(b);
                let xb = p2m_lookup(hb);
                let mut rb = Remote {
                    domid: FtDomId(bd),
                    active: b,
                    shared: &mut sb,
                    p2m: as_dyn(&xb),
                };
                gt::copy_one(
                    env,
                    ft,
                    FtDomId(me),
                    CopyDomains::Two(&mut ra, &mut rb),
                    &src,
                    &dst,
                    len,
                )
            }
        })
    };
    fn side(d: &mut Domain) -> (&mut ActiveTable, u16, Option<&Hvm>) {
        (&mut d.grants.active, d.domid, d.hvm.as_ref())
    }
    if sd == dd {
        let d = if sd == me {
            &mut *c.dom
        } else {
            c.others.get(sd).ok_or(GntStatus::BadDomain)?
        };
        return run(side(d), None);
    }
    // Two domains: the caller and another, or two others.
    if sd == me || dd == me {
        let other = if sd == me { dd } else { sd };
        let o = side(c.others.get(other).ok_or(GntStatus::BadDomain)?);
        let mine = side(&mut *c.dom);
        return if sd == me {
            run(mine, Some(o))
        } else {
            run(o, Some(mine))
        };
    }
    let mut it = c
        .others
        .iter_mut()
        .filter(|d| d.domid == sd || d.domid == dd);
    let (Some(x), Some(y)) = (it.next(), it.next()) else {
        return Err(GntStatus::BadDomain);
    };
    let (s, d) = if x.domid == sd { (x, y) } else { (y, x) };
    run(side(s), Some(side(d)))
}

/// A translated domain's gfn → mfn lookup, for [`Remote::p2m`].
fn p2m_lookup(h: Option<&Hvm>) -> Option<impl Fn(u64) -> Option<u64> + '_> {
    h.map(|h| move |gfn| crate::hvm_glue::lookup(h, gfn).map(|m| m.0))
}

/// [`p2m_lookup`]'s closure as [`Remote::p2m`] takes it.
fn as_dyn(f: &Option<impl Fn(u64) -> Option<u64>>) -> Option<&dyn Fn(u64) -> Option<u64>> {
    f.as_ref().map(|f| f as &dyn Fn(u64) -> Option<u64>)
}

/// `GNTTABOP_cache_flush` (x86): write back and invalidate a range of a
/// frame the caller owns or has a grant of pinned. Requests carry no
/// status: the first failing one ends the call with its error. Xen's
/// continuation argument (a grant-search position in the command's upper
/// bits) is never produced here (the search runs to the end at once); one
/// passed in only makes an empty first request `-EILSEQ`, as in Xen.
fn cache_flush(c: &mut Call, opaque: u32, uop: u64, count: u32) -> Result<i64, Errno> {
    let size = size_of::<GnttabCacheFlush>() as u64;
    if !access_ok(uop, u64::from(count), size) {
        return Err(Errno::EFAULT);
    }
    let me = c.dom.domid;
    for i in 0..u64::from(count) {
        let op: GnttabCacheFlush = read_guest(c.cr3, uop.wrapping_add(i * size))?;
        if gt::cache_flush_check(op.offset, op.length, op.op)? == gt::CacheFlush::Nothing {
            if i == 0 && opaque != 0 {
                return Err(Errno::EILSEQ);
            }
            continue;
        }
        let mfn = Mfn(op.a >> 12);
        let owner = with_env(me, |_, ft, _| ft.info(mfn).map(|i| (i.owner(), i.count())));
        let Ok((owner, count)) = owner else {
            return Err(Errno::EINVAL);
        };
        let Some(FtDomId(od)) = owner.domid().filter(|_| count > 0) else {
            return Err(Errno::EPERM);
        };
        if od != me {
            let Some(o) = c.others.get(od) else {
                return Err(Errno::EPERM);
            };
            if !gt::grant_map_exists(&o.grants.active, FtDomId(me), mfn) {
                return Err(Errno::EINVAL);
            }
        }
        let va = phys_to_virt(mfn.maddr()) + u64::from(op.offset);
        with_env(me, |_, _, _| {
            let mut line = va & !63;
            while line < va + u64::from(op.length) {
                // SAFETY: a line of a RAM frame in the direct map, held by
                // its owner (the frame table is locked); clflush only
                // writes back and invalidates, changing no data.
                unsafe { core::arch::x86_64::_mm_clflush(line as *const u8) };
                line += 64;
            }
        });
    }
    Ok(0)
}

// The single operations -----------------------------------------------------

/// The table of domain `dom` if the caller may act on it (Xen's
/// XSM_TARGET default: itself, or any domain for a privileged caller).
fn table_of<'a>(c: &'a mut Call<'_>, dom: u16) -> Result<(u16, &'a mut ActiveTable), GntStatus> {
    if is_self(c, dom, true) {
        let id = c.dom.domid;
        return Ok((id, &mut c.dom.grants.active));
    }
    let privileged = c.dom.is_privileged;
    let d = c.others.get(dom).ok_or(GntStatus::BadDomain)?;
    if !privileged {
        return Err(GntStatus::PermissionDenied);
    }
    Ok((d.domid, &mut d.grants.active))
}

fn setup_table(c: &mut Call, uop: u64, count: u32) -> Result<i64, Errno> {
    if count != 1 {
        return Err(Errno::EINVAL);
    }
    let op: GnttabSetupTable = read_guest(c.cr3, uop)?;
    if !access_ok(op.frame_list, u64::from(op.nr_frames), 8) {
        return Err(Errno::EFAULT);
    }
    let me = c.dom.domid;
    let cr3 = c.cr3;
    let st = match table_of(c, op.dom) {
        Err(st) => st,
        Ok((owner, table)) => {
            // A table already this size (the common call: a guest asking
            // for its frames again) needs no page-table work at all.
            let grown = op.nr_frames.max(gt::INITIAL_NR_GRANT_FRAMES) as usize
                <= table.allocated_frames().len()
                || (op.nr_frames <= table.max_frames()
                    && with_env(me, |_, ft, env| {
                        table.grow(env, ft, FtDomId(owner), op.nr_frames)
                    })
                    .is_ok());
            if grown {
                let mut st = GntStatus::Okay;
                let frames = table.allocated_frames();
                let n = (op.nr_frames as usize).min(frames.len());
                for (i, f) in frames[..n].iter().enumerate() {
                    let va = op.frame_list.wrapping_add(i as u64 * 8);
                    if copy_to_guest(cr3, va, &f.0.to_le_bytes()).is_err() {
                        st = GntStatus::BadVirtAddr;
                    }
                }
                st
            } else {
                GntStatus::GeneralError
            }
        }
    };
    copy_to_guest(cr3, uop.wrapping_add(8), &st.raw().to_le_bytes())?;
    Ok(0)
}

fn query_size(c: &mut Call, uop: u64, count: u32) -> Result<i64, Errno> {
    if count != 1 {
        return Err(Errno::EINVAL);
    }
    let mut op: GnttabQuerySize = read_guest(c.cr3, uop)?;
    let cr3 = c.cr3;
    match table_of(c, op.dom) {
        Err(st) => op.status = st.raw(),
        Ok((_, t)) => {
            op.nr_frames = t.nr_frames();
            op.max_nr_frames = t.max_frames();
            op.status = GntStatus::Okay.raw();
        }
    }
    write_guest(cr3, uop, &op)?;
    Ok(0)
}

fn set_version(c: &mut Call, uop: u64) -> Result<i64, Errno> {
    let mut op: GnttabSetVersion = read_guest(c.cr3, uop)?;
    let r = match op.version {
        VERSION => Ok(0),
        // Version 2 exists in Xen; Oxen behaves as Xen with
        // `gnttab=max-ver:1` (as before set_version was introduced).
        2 => Err(Errno::ENOSYS),
        _ => Err(Errno::EINVAL),
    };
    op.version = VERSION;
    write_guest(c.cr3, uop, &op)?;
    r
}

fn get_version(c: &mut Call, uop: u64) -> Result<i64, Errno> {
    let mut op: GnttabGetVersion = read_guest(c.cr3, uop)?;
    match table_of(c, op.dom) {
        Ok(_) => {}
        Err(GntStatus::BadDomain) => return Err(Errno::ESRCH),
        Err(_) => return Err(Errno::EPERM),
    }
    op.version = VERSION;
    write_guest(c.cr3, uop, &op)?;
    Ok(0)
}

fn get_status_frames(c: &mut Call, uop: u64, count: u32) -> Result<i64, Errno> {
    if count != 1 {
        return Err(Errno::EINVAL);
    }
    let mut op: GnttabGetStatusFrames = read_guest(c.cr3, uop)?;
    let cr3 = c.cr3;
    op.status = match table_of(c, op.dom) {
        Err(st) => st,
        // Version 1 tables have no status frames.
        Ok(_) if op.nr_frames > 0 => GntStatus::GeneralError,
        Ok(_) => GntStatus::Okay,
    }
    .raw();
    copy_to_guest(cr3, uop.wrapping_add(6), &op.status.to_le_bytes())?;
    Ok(0)
}

/// `XENMEM_add_to_physmap`, as Xen 4.17 answers it: the checks in Xen's
/// order, then -EACCES for a PV domain (`xatp_permission_check`: only
/// translated guests have a physmap to add to; PV guests get their grant
/// frames from `GNTTABOP_setup_table` and their shared_info from
/// `start_info`). The frames a translated guest will get are
/// `ActiveTable::frame_for_index`'s.
pub fn add_to_physmap(c: &mut Call) -> Result<i64, Errno> {
    let [cmd, arg, ..] = c.args();
    let start_extent = cmd >> hypercall_abi::memory::MEMOP_EXTENT_SHIFT;
    if start_extent > u64::from(u16::MAX) {
        return Err(Errno::EDOM);
    }
    let xatp: XenAddToPhysmap = read_guest(c.cr3, arg)?;
    if XenMapSpace::from_raw(u64::from(xatp.space)) == Some(XenMapSpace::GmfnForeign) {
        return Err(Errno::ENOSYS);
    }
    if !is_self(c, xatp.domid, true) && c.others.get(xatp.domid).is_none() {
        return Err(Errno::ESRCH);
    }
    let me = c.dom.domid;
    let privileged = c.dom.is_privileged;
    let d = if is_self(c, xatp.domid, true) {
        &mut *c.dom
    } else {
        if !privileged {
            return Err(Errno::EPERM);
        }
        c.others.get(xatp.domid).ok_or(Errno::ESRCH)?
    };
    if !d.is_hvm() {
        // A PV domain is not translated: it has no physmap to add to.
        return Err(Errno::EACCES);
    }
    // The frame the guest asks for, in a translated (HVM) domain.
    let mfn = match XenMapSpace::from_raw(u64::from(xatp.space)) {
        Some(XenMapSpace::SharedInfo) if xatp.idx == 0 => Mfn(d.shared_info_maddr >> 12),
        Some(XenMapSpace::SharedInfo) => return Err(Errno::EINVAL),
        Some(XenMapSpace::GrantTable) => {
            if xatp.idx & hypercall_abi::memory::XENMAPIDX_GRANT_TABLE_STATUS != 0 {
                // Status frames are grant table v2's.
                return Err(Errno::EINVAL);
            }
            let idx = u32::try_from(xatp.idx).map_err(|_| Errno::EINVAL)?;
            let owner = d.domid;
            let table = &mut d.grants.active;
            if idx >= table.max_frames() {
                return Err(Errno::EINVAL);
            }
            // Xen grows the table to cover the index.
            with_env(me, |_, ft, env| {
                table.grow(env, ft, FtDomId(owner), idx + 1)
            })
            .map_err(|_| Errno::ENOMEM)?;
            *table
                .allocated_frames()
                .get(idx as usize)
                .ok_or(Errno::EINVAL)?
        }
        _ => return Err(Errno::ENOSYS),
    };
    crate::hvm_glue::map_special(d, xatp.gpfn, mfn)?;
    Ok(0)
}

// Teardown ------------------------------------------------------------------

/// Everything grant-related of the dying domain `d`, in one call (domain
/// destruction, with the domain table locked and `others` split around
/// `d`; before or after `pv_mm::relinquish`, either works):
/// [`release_mappings`] (its mappings of anyone's grants),
/// [`revoke_foreign_mappings`] (other domains' mappings of its grants),
/// then [`destroy_table`] (its shared frames and bookkeeping).
pub fn teardown(d: &mut Domain, others: &mut Others<'_>) {
    release_mappings(d, others);
    revoke_foreign_mappings(d, others);
    if let Err(n) = destroy_table(d) {
        log::error!("d{}: {n} grants still pinned at teardown", d.domid);
    }
}

/// Releases every grant mapping the dying domain `d` holds (Xen's
/// `gnttab_release_mappings`, and the grant PTEs its page-table teardown
/// would drop): grant PTEs still in place are cleared with their
/// references, device mappings' references dropped, the granters' pins and
/// `GTF_reading`/`GTF_writing` bits cleared.
pub fn release_mappings(d: &mut Domain, others: &mut Others<'_>) {
    let domid = d.domid;
    let handles: alloc::vec::Vec<(u32, u16)> = d
        .grants
        .maptrack
        .mappings()
        .map(|(h, m)| (h, m.domid))
        .collect();
    for (h, rd) in handles {
        with_env(domid, |ctx, ft, env| {
            if rd == domid {
                let g = &mut *d.grants;
                let mut sh = DirectShared::of(&g.active);
                let remote = Some((&mut g.active, &mut sh));
                gt::release_mapping(env, ft, ctx, &mut g.maptrack, h, remote);
            } else if let Some(r) = others.get(rd) {
                let ra = &mut r.grants.active;
                let mut sh = DirectShared::of(ra);
                let mt = &mut d.grants.maptrack;
                gt::release_mapping(env, ft, ctx, mt, h, Some((ra, &mut sh)));
            } else {
                let mt = &mut d.grants.maptrack;
                gt::release_mapping::<_, DirectShared<EntryFrame>>(env, ft, ctx, mt, h, None);
            }
        });
    }
    // Whatever the teardown dropped on the way is no crash any more.
    let _ = take_implicit_unmap(domid);
}

/// Removes the other domains' mappings of the dying domain `d`'s grants
/// (their grant PTEs cleared, references dropped, handles freed: a later
/// unmap of such a handle gets `GNTST_bad_handle`). Xen instead keeps the
/// dying domain as a zombie until they unmap; see docs/abi-deviations.md.
pub fn revoke_foreign_mappings(d: &mut Domain, others: &mut Others<'_>) {
    let rd = d.domid;
    let ra = &mut d.grants.active;
    for o in others.iter_mut() {
        let handles: alloc::vec::Vec<u32> = o
            .grants
            .maptrack
            .mappings()
            .filter(|(_, m)| m.domid == rd)
            .map(|(h, _)| h)
            .collect();
        if handles.is_empty() {
            continue;
        }
        let mt = &mut o.grants.maptrack;
        with_env(o.domid, |ctx, ft, env| {
            for h in handles {
                let mut sh = DirectShared::of(ra);
                gt::release_mapping(env, ft, ctx, mt, h, Some((&mut *ra, &mut sh)));
            }
        });
    }
}

/// Frees the dying domain `d`'s grant table: its shared frames (given back
/// once nothing maps them), active entries and maptrack pages (Xen's
/// `grant_table_destroy`). `Err(n)`: `n` of its grants are still pinned
/// (call [`revoke_foreign_mappings`] first); nothing is freed then.
pub fn destroy_table(d: &mut Domain) -> Result<(), u32> {
    let domid = d.domid;
    let g = &mut *d.grants;
    with_env(domid, |_, ft, env| {
        g.active.destroy(env, ft)?;
        g.maptrack.destroy(env);
        Ok(())
    })
}
