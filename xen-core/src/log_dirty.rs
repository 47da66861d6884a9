//! Log-dirty mode of HVM/PVH domains (`XEN_DOMCTL_shadow_op`), as Xen's
//! HAP does it: every RAM frame of the p2m is write-protected
//! ([`P2mType::RamLogDirty`](xen_core::hvm::p2m::P2mType)); the guest's
//! first write to a frame is a nested page fault that marks it dirty and
//! makes that one frame writable again; `CLEAN` hands the bitmap to the
//! toolstack, clears it and write-protects again.
//!
//! Writes that do not go through the guest's nested tables are marked
//! too: the hypervisor's own copies into guest memory (hypercall results
//! through [`crate::domain::HVM_SPACE`], emulated instructions' memory
//! operands) [`note`] the frame on this CPU and [`flush_noted`] marks it
//! once the exit is handled; registered `vcpu_info` frames, which the
//! hypervisor updates all the time, are reported dirty by every `CLEAN`;
//! a writable foreign mapping Dom0 drops ([`note_foreign`], as Xen's
//! `put_page_from_l1e`) and a writable grant mapping unmapped or a grant
//! copy into the domain's frame (Xen's `gnttab_mark_dirty`) mark it.
//!
//! PV domains (direct paging, no p2m to protect) are write-protected in
//! their own L1 entries instead: every writable mapping of one of the
//! domain's RAM frames gets R/W cleared and Oxen's marker
//! ([`xen_core::mm::ptval::LOGDIRTY_RO`]) set; it stays *logically*
//! writable (its writable type reference stands, every accounting path
//! reads it through `ptval::logical_l1e`). The guest's first write to it
//! is a #PF that [`pv_write_fault`] fixes (marks the frame's pfn dirty,
//! restores R/W) without bouncing it. The hypervisor's copies into the
//! guest's memory see such entries as writable
//! (`guest_walk::translate_pv`) and mark what they write; page-table
//! updates mark the tables they write and the frames they map writable
//! (`pv_mm::with_pt`). `CLEAN` hands out and clears the bitmap, then
//! protects every writable mapping again; `OFF` restores R/W everywhere.
//! A PV domain's log lives in [`PV_LOGS`] (a leaf lock, taken under the
//! frame-table lock), not in its `Domain`, so that page-table glue
//! running under the frame-table lock can mark frames.
//!
//! **Owns** the glue: the domctl, the fault, the per-CPU notes. The
//! bitmap is `xen_core::mm::log_dirty` (pure), the p2m walks are
//! `xen_core::hvm::p2m`.

use crate::domain::{Domain, RunState};
use alloc::vec::Vec;
use hypercall_abi::domctl::{
    ShadowOp, XenDomctlShadowOp, XenDomctlShadowOpStats, XEN_DOMCTL_SHADOW_ENABLE_LOG_DIRTY,
};
use hypercall_abi::errno::Errno;
use spin::Mutex;
use xen_core::mm::log_dirty::{words_for, DirtyLog};

/// A domain's log: its bitmap on the hypervisor's heap.
pub type Log = DirtyLog<Vec<u64>>;

/// Bytes of bitmap copied to the toolstack per `copy_to_guest`.
const COPY_CHUNK: usize = 512;

/// Frames noted on one CPU between two flushes before it gives up naming
/// them (then the whole domain counts as dirty).
const NOTE_MAX: usize = 64;

/// Frames the hypervisor wrote on this CPU for the domain whose exit or
/// hypercall it is handling, and whether there were more than fit.
struct Noted {
    gfns: heapless::Vec<u64, NOTE_MAX>,
    overflow: bool,
}

static NOTED: [Mutex<Noted>; crate::arch::x86_64::percpu::MAX_CPUS] = [const {
    Mutex::new(Noted {
        gfns: heapless::Vec::new(),
        overflow: false,
    })
};
    crate::arch::x86_64::percpu::MAX_CPUS];

/// Domains in log-dirty mode now (foreign unmaps are only queued then).
static ACTIVE: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Frames of other domains whose writable foreign mappings were dropped:
/// (owner, mfn), drained by that owner's next `CLEAN`/`PEEK`; and the
/// owners some of whose entries did not fit.
struct Foreign {
    frames: heapless::Vec<(u16, u64), 1024>,
    overflowed: heapless::Vec<u16, 16>,
}

static FOREIGN: Mutex<Foreign> = Mutex::new(Foreign {
    frames: heapless::Vec::new(),
    overflowed: heapless::Vec::new(),
});

/// A writable foreign mapping of `owner`'s frame `mfn` went away (called
/// with page-table locks held: only queues).
pub fn note_foreign(owner: u16, mfn: xen_core::mm::Mfn) {
    if ACTIVE.load(core::sync::atomic::Ordering::Acquire) == 0 {
        return;
    }
    let mut f = FOREIGN.lock();
    if f.frames.contains(&(owner, mfn.0)) {
        return;
    }
    if f.frames.push((owner, mfn.0)).is_err() && !f.overflowed.contains(&owner) {
        let _ = f.overflowed.push(owner);
    }
}

/// `domid` leaves log-dirty mode (OFF, or destroyed in it).
pub fn forget(domid: u16) {
    ACTIVE.fetch_sub(1, core::sync::atomic::Ordering::AcqRel);
    let mut f = FOREIGN.lock();
    f.frames.retain(|&(o, _)| o != domid);
    f.overflowed.retain(|&o| o != domid);
}

/// Marks `domid`'s queued foreign-written frames in `log`.
fn drain_foreign(domid: u16, log: &mut Log) {
    let mut f = FOREIGN.lock();
    if let Some(i) = f.overflowed.iter().position(|&o| o == domid) {
        f.overflowed.swap_remove(i);
        for g in 0..log.frames() {
            log.mark(g);
        }
    }
    f.frames.retain(|&(o, mfn)| {
        if o != domid {
            return true;
        }
        if let Some(gfn) = crate::memory::m2p(xen_core::mm::Mfn(mfn)) {
            log.mark(gfn);
        }
        false
    });
}

fn noted() -> Option<&'static Mutex<Noted>> {
    NOTED.get(crate::arch::x86_64::percpu::this_cpu().cpu as usize)
}

/// The hypervisor wrote guest frame `gfn` of the HVM domain it is serving
/// on this CPU (not through the guest's nested tables).
pub fn note(gfn: u64) {
    // Nothing to log while no domain is in log-dirty mode: the exit path
    // then pays one load.
    if ACTIVE.load(core::sync::atomic::Ordering::Acquire) == 0 {
        return;
    }
    if let Some(n) = noted() {
        let mut n = n.lock();
        if !n.gfns.contains(&gfn) && n.gfns.push(gfn).is_err() {
            n.overflow = true;
        }
    }
}

/// Marks what this CPU [`note`]d as dirty in `d`'s log (if it has one)
/// and forgets it.
pub fn flush_noted(d: &mut Domain) {
    // Notes taken before the last domain left log-dirty mode are flushed
    // the next time one is in it: an extra mark, never a missing one.
    if ACTIVE.load(core::sync::atomic::Ordering::Acquire) == 0 {
        return;
    }
    let Some(n) = noted() else { return };
    let (gfns, overflow) = {
        let mut n = n.lock();
        let g = core::mem::take(&mut n.gfns);
        (g, core::mem::replace(&mut n.overflow, false))
    };
    let Some(hvm) = d.hvm.as_mut() else { return };
    let Some(log) = hvm.log_dirty.as_mut() else {
        return;
    };
    if overflow {
        // Which ones is lost: all of them, to be safe.
        for g in 0..log.frames() {
            log.mark(g);
        }
    }
    for g in gfns {
        log.mark(g);
        let _ = crate::hvm_glue::with_p2m(&mut hvm.p2m, |p2m, mem| p2m.mark_written(mem, g));
    }
}

/// A write nested page fault at `gfn`: if it hit a log-dirty frame, marks
/// it dirty and writable; true if so (the guest retries the write).
pub fn write_fault(d: &mut Domain, gfn: u64) -> bool {
    let Some(hvm) = d.hvm.as_mut() else {
        return false;
    };
    if hvm.log_dirty.is_none() {
        return false;
    }
    let made = crate::hvm_glue::with_p2m(&mut hvm.p2m, |p2m, mem| p2m.mark_written(mem, gfn));
    if made != Ok(true) {
        return false;
    }
    if let Some(log) = hvm.log_dirty.as_mut() {
        log.fault();
        log.mark(gfn);
    }
    true
}

/// Makes every CPU running one of `d`'s vCPUs exit, so that its next
/// entry drops the translations a p2m change made stale (SVM flushes on
/// every VMRUN, VMX INVEPTs before every entry).
fn kick_running(d: &Domain) {
    for v in &d.vcpus {
        if let RunState::Running(cpu) = v.state {
            crate::sched::kick(cpu as usize);
        }
    }
}

/// The guest frames of `d`'s registered `vcpu_info`s (guest RAM the
/// hypervisor keeps writing).
fn vcpu_info_gfns(d: &Domain) -> impl Iterator<Item = u64> + '_ {
    d.vcpus
        .iter()
        .map(|v| v.vcpu_info_maddr >> 12)
        .filter(move |&mfn| mfn != d.shared_info_maddr >> 12)
        .filter_map(|mfn| crate::memory::m2p(xen_core::mm::Mfn(mfn)))
}

/// `XEN_DOMCTL_shadow_op` on domain `d` for a toolstack whose bitmap
/// buffer is in address space `cr3`; true if `op` goes back to it.
pub fn shadow_op(d: &mut Domain, op: &mut XenDomctlShadowOp, cr3: u64) -> Result<bool, Errno> {
    let kind = ShadowOp::from_raw(u64::from(op.op)).ok_or(Errno::EINVAL)?;
    if !d.is_hvm() {
        match kind {
            ShadowOp::Off => {
                pv_off(d.domid);
                return Ok(false);
            }
            ShadowOp::EnableLogdirty => return pv_enable(d),
            ShadowOp::Enable if op.mode == XEN_DOMCTL_SHADOW_ENABLE_LOG_DIRTY => {
                return pv_enable(d)
            }
            ShadowOp::Clean | ShadowOp::Peek => {
                return pv_clean(d, op, cr3, kind == ShadowOp::Clean)
            }
            _ => {}
        }
    }
    match kind {
        ShadowOp::Off => {
            let domid = d.domid;
            if let Some(hvm) = d.hvm.as_mut() {
                if hvm.log_dirty.take().is_some() {
                    forget(domid);
                    crate::hvm_glue::with_p2m(&mut hvm.p2m, |p2m, mem| {
                        p2m.clear_logdirty_range(mem, 0, xen_core::hvm::p2m::GFN_LIMIT)
                    })
                    .map_err(|_| Errno::ENOMEM)?;
                    kick_running(d);
                }
            }
            Ok(false)
        }
        ShadowOp::EnableLogdirty => enable(d),
        ShadowOp::Enable if op.mode == XEN_DOMCTL_SHADOW_ENABLE_LOG_DIRTY => enable(d),
        ShadowOp::Enable | ShadowOp::EnableTest => Err(Errno::EINVAL),
        ShadowOp::Clean | ShadowOp::Peek => {
            let clean = kind == ShadowOp::Clean;
            let infos: Vec<u64> = vcpu_info_gfns(d).collect();
            let domid = d.domid;
            let hvm = d.hvm.as_mut().ok_or(Errno::EINVAL)?;
            let log = hvm.log_dirty.as_mut().ok_or(Errno::EINVAL)?;
            for g in infos {
                log.mark(g);
            }
            drain_foreign(domid, log);
            let pages = op.pages.min(log.frames());
            op.stats = XenDomctlShadowOpStats {
                fault_count: log.faults,
                dirty_count: log.dirtied,
            };
            if op.dirty_bitmap != 0 {
                let mut buf = [0u8; COPY_CHUNK];
                let bytes = pages.div_ceil(8);
                let mut off = 0u64;
                while off < bytes {
                    let n = (bytes - off).min(COPY_CHUNK as u64) as usize;
                    log.copy_out(off * 8, &mut buf[..n], false);
                    if off + n as u64 == bytes && pages % 8 != 0 {
                        // Bits past `pages` in the last byte stay clear.
                        buf[n - 1] &= (1u8 << (pages % 8)) - 1;
                    }
                    crate::domain::copy_to_guest(cr3, op.dirty_bitmap + off, &buf[..n])?;
                    off += n as u64;
                }
            }
            if clean {
                // Only what was handed over is cleared.
                let mut sink = [0u8; COPY_CHUNK];
                let mut g = 0;
                while g < pages {
                    let n = (pages - g).div_ceil(8).min(COPY_CHUNK as u64) as usize;
                    log.copy_out(g, &mut sink[..n], true);
                    g += n as u64 * 8;
                }
                log.reset_stats();
                crate::hvm_glue::with_p2m(&mut hvm.p2m, |p2m, mem| {
                    p2m.set_readonly_range(mem, 0, pages)
                })
                .map_err(|_| Errno::ENOMEM)?;
                kick_running(d);
            }
            op.pages = pages;
            Ok(true)
        }
        ShadowOp::GetAllocation => {
            // HAP's paging pool: the p2m's tables come from the general
            // allocator here, there is no pool to size.
            op.mb = 0;
            Ok(true)
        }
        ShadowOp::SetAllocation => Ok(false),
    }
}

fn enable(d: &mut Domain) -> Result<bool, Errno> {
    let hvm = d.hvm.as_mut().ok_or(Errno::EINVAL)?;
    if hvm.log_dirty.is_some() {
        return Err(Errno::EINVAL);
    }
    let frames =
        crate::hvm_glue::with_p2m(&mut hvm.p2m, |p2m, mem| Ok::<_, ()>(p2m.highest_gfn(mem)))
            .ok()
            .flatten()
            .map_or(0, |g| g + 1);
    let mut bits = Vec::new();
    bits.try_reserve_exact(words_for(frames))
        .map_err(|_| Errno::ENOMEM)?;
    bits.resize(words_for(frames), 0);
    crate::hvm_glue::with_p2m(&mut hvm.p2m, |p2m, mem| {
        p2m.set_readonly_range(mem, 0, frames)
    })
    .map_err(|_| Errno::ENOMEM)?;
    hvm.log_dirty = Some(DirtyLog::new(bits, frames));
    ACTIVE.fetch_add(1, core::sync::atomic::Ordering::AcqRel);
    kick_running(d);
    Ok(false)
}

// PV domains ---------------------------------------------------------------

/// A PV domain's log.
struct PvLog {
    domid: u16,
    log: Log,
}

/// The logs of PV domains in log-dirty mode. Lock order: the domain table,
/// then the frame table, then this (nothing is locked under it but
/// `FOREIGN`).
static PV_LOGS: Mutex<Vec<PvLog>> = Mutex::new(Vec::new());

/// Frames a PV domain's bitmap covers at most (2 MiB of bitmap): a
/// guest's M2P entries are its own to choose.
const PV_MAX_FRAMES: u64 = 1 << 24;

/// Whether some domain is in log-dirty mode (else nothing needs marking).
pub fn any_active() -> bool {
    ACTIVE.load(core::sync::atomic::Ordering::Acquire) != 0
}

/// Marks frames the hypervisor wrote, or mapped writable, in the logs of
/// the PV domains owning them (called with the frame-table lock held).
pub fn mark_pv_frames(
    ft: &xen_core::mm::frame_table::FrameTable<'static>,
    mfns: &[xen_core::mm::Mfn],
) {
    use xen_core::mm::frame_table::Owner;
    if mfns.is_empty() || !any_active() {
        return;
    }
    let mut logs = PV_LOGS.lock();
    if logs.is_empty() {
        return;
    }
    for &mfn in mfns {
        let Ok(Owner::Domain(o)) = ft.owner(mfn) else {
            continue;
        };
        if let Some(l) = logs.iter_mut().find(|l| l.domid == o.0) {
            if let Some(pfn) = crate::memory::m2p(mfn) {
                l.log.mark(pfn);
            }
        }
    }
}

/// Marks pfn `pfn` of PV domain `domid` dirty (a frame it owns got that
/// pfn, or was given to it: Xen's `paging_mark_pfn_dirty`).
pub fn mark_pv_pfn(domid: u16, pfn: u64) {
    if !any_active() {
        return;
    }
    if let Some(l) = PV_LOGS.lock().iter_mut().find(|l| l.domid == domid) {
        l.log.mark(pfn);
    }
}

/// Set when a PV domain first enters log-dirty mode: from then on a PV
/// write fault may be one its protection caused, even after `OFF` (the
/// fault may have been taken just before).
static PV_EVER: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// A PV guest's page fault at `va` with error code `error_code`: if it is
/// a write to a mapping log-dirty mode protected, marks the frame dirty,
/// makes the mapping writable again and returns true (the guest retries
/// the write; the fault is not bounced). Also true if the mapping is
/// already writable again (another vCPU's fault, `CLEAN` or `OFF` raced
/// this one): a stale translation on this CPU, dropped here.
pub fn pv_write_fault(domid: u16, va: u64, error_code: u64) -> bool {
    use xen_core::mm::frame_table::{Owner, PageFlags, PageType};
    use xen_core::mm::pte::{PteFlags, ADDR_MASK};
    use xen_core::mm::ptval::{logical_l1e, unprotect_l1e, LOGDIRTY_RO};
    use xen_core::mm::Mfn;
    const PRESENT: u64 = 1;
    const WRITE: u64 = 1 << 1;
    /// Reserved bit, instruction fetch, protection key, shadow stack.
    const OTHER: u64 = (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6);
    if !PV_EVER.load(core::sync::atomic::Ordering::Acquire)
        || error_code & (PRESENT | WRITE) != PRESENT | WRITE
        || error_code & OTHER != 0
    {
        return false;
    }
    let cr3 = crate::arch::x86_64::instr::read_cr3() & ADDR_MASK;
    let fixed = {
        let ft = crate::memory::FRAME_TABLE.lock();
        let Some(ft) = ft.as_ref() else { return false };
        let Some((l1, index)) =
            xen_core::guest_walk::write_fault_slot(&crate::pv_mm::RawReader, cr3, va)
        else {
            return false;
        };
        let l1 = Mfn(l1 >> 12);
        let live = ft.info(l1).is_ok_and(|i| {
            i.owner() == Owner::Domain(xen_core::mm::frame_table::DomId(domid))
                && i.page_type() == PageType::L1
                && i.type_count() > 0
                && i.flags().contains(PageFlags::VALIDATED)
        });
        if !live {
            return false;
        }
        match crate::pv_mm::update_l1e(l1, index, unprotect_l1e) {
            Some((_, new)) => {
                // Still under the frame-table lock, so no CLEAN can clear
                // the mark and protect again in between.
                if let Some(l) = PV_LOGS.lock().iter_mut().find(|l| l.domid == domid) {
                    l.log.fault();
                    if let Some(pfn) = crate::memory::m2p(Mfn((new & ADDR_MASK) >> 12)) {
                        l.log.mark(pfn);
                    }
                }
                true
            }
            None => {
                // Not (or no longer) protected: writable now means a stale
                // translation here, anything else is the guest's fault.
                let e = read_l1e(l1, index);
                let need = PteFlags::PRESENT.bits() | PteFlags::RW.bits() | PteFlags::USER.bits();
                e & LOGDIRTY_RO == 0 && logical_l1e(e) & need == need
            }
        }
    };
    if fixed {
        crate::arch::x86_64::flush::local_one(va);
    }
    fixed
}

/// Entry `index` of the live L1 `l1` (frame-table lock held).
fn read_l1e(l1: xen_core::mm::Mfn, index: usize) -> u64 {
    use xen_core::guest_walk::PteReader;
    crate::pv_mm::RawReader
        .read_pte(l1.maddr(), index)
        .unwrap_or(0)
}

/// The frames the hypervisor keeps writing for PV domain `d`: its
/// shared_info and registered `vcpu_info`s.
fn pv_always_dirty(d: &Domain) -> Vec<xen_core::mm::Mfn> {
    let mut v: Vec<xen_core::mm::Mfn> = d
        .vcpus
        .iter()
        .map(|v| xen_core::mm::Mfn(v.vcpu_info_maddr >> 12))
        .collect();
    v.push(xen_core::mm::Mfn(d.shared_info_maddr >> 12));
    v.sort_unstable();
    v.dedup();
    v
}

fn pv_enable(d: &mut Domain) -> Result<bool, Errno> {
    use xen_core::mm::frame_table::{DomId, Owner};
    let domid = d.domid;
    if d.is_privileged || d.dying {
        return Err(Errno::EINVAL);
    }
    if PV_LOGS.lock().iter().any(|l| l.domid == domid) {
        return Err(Errno::EINVAL);
    }
    // Every frame the domain owns must have its bit: the highest pfn its
    // frames have in the M2P, or its reservation, whichever is larger.
    let highest = {
        let ft = crate::memory::FRAME_TABLE.lock();
        let ft = ft.as_ref().ok_or(Errno::EINVAL)?;
        (0..ft.len() as u64)
            .map(xen_core::mm::Mfn)
            .filter(|&m| ft.owner(m) == Ok(Owner::Domain(DomId(domid))))
            .filter_map(crate::memory::m2p)
            .filter(|&p| p < PV_MAX_FRAMES)
            .max()
            .map_or(0, |p| p + 1)
    };
    let frames = highest
        .max(d.max_pages)
        .max(d.tot_pages)
        .max(d.p2m.len() as u64)
        .min(PV_MAX_FRAMES);
    let mut bits = Vec::new();
    bits.try_reserve_exact(words_for(frames))
        .map_err(|_| Errno::ENOMEM)?;
    bits.resize(words_for(frames), 0);
    let protected = {
        let ft = crate::memory::FRAME_TABLE.lock();
        let ft = ft.as_ref().ok_or(Errno::EINVAL)?;
        PV_LOGS.lock().push(PvLog {
            domid,
            log: DirtyLog::new(bits, frames),
        });
        ACTIVE.fetch_add(1, core::sync::atomic::Ordering::AcqRel);
        PV_EVER.store(true, core::sync::atomic::Ordering::Release);
        crate::pv_mm::rewrite_l1es(ft, domid, true, xen_core::mm::ptval::protect_l1e)
    };
    crate::arch::x86_64::flush::domain(domid);
    log::debug!("d{domid}: log-dirty on ({frames} frames, {protected} mappings protected)");
    Ok(false)
}

/// PV `OFF`: every protected mapping writable again, the log gone (a
/// domain not in log-dirty mode: nothing to do).
fn pv_off(domid: u16) {
    let was = {
        let ft = crate::memory::FRAME_TABLE.lock();
        let Some(ft) = ft.as_ref() else { return };
        let mut logs = PV_LOGS.lock();
        let Some(i) = logs.iter().position(|l| l.domid == domid) else {
            return;
        };
        let log = logs.swap_remove(i);
        drop(logs);
        crate::pv_mm::rewrite_l1es(ft, domid, false, xen_core::mm::ptval::unprotect_l1e);
        log
    };
    drop(was);
    forget(domid);
    crate::arch::x86_64::flush::domain(domid);
}

/// A PV domain goes away: its log with it (its protected entries are
/// dropped as the writable ones they stand for).
pub fn pv_teardown(domid: u16) {
    let log = {
        let mut logs = PV_LOGS.lock();
        logs.iter()
            .position(|l| l.domid == domid)
            .map(|i| logs.swap_remove(i))
    };
    if log.is_some() {
        forget(domid);
    }
}

/// PV `CLEAN` (`clean`) or `PEEK`.
fn pv_clean(
    d: &mut Domain,
    op: &mut XenDomctlShadowOp,
    cr3: u64,
    clean: bool,
) -> Result<bool, Errno> {
    let domid = d.domid;
    let always = pv_always_dirty(d);
    let (snap, pages) = {
        let ft = crate::memory::FRAME_TABLE.lock();
        let ft = ft.as_ref().ok_or(Errno::EINVAL)?;
        let mut logs = PV_LOGS.lock();
        let l = logs
            .iter_mut()
            .find(|l| l.domid == domid)
            .ok_or(Errno::EINVAL)?;
        let log = &mut l.log;
        for &m in &always {
            if let Some(pfn) = crate::memory::m2p(m) {
                log.mark(pfn);
            }
        }
        drain_foreign(domid, log);
        let pages = op.pages.min(log.frames());
        op.stats = XenDomctlShadowOpStats {
            fault_count: log.faults,
            dirty_count: log.dirtied,
        };
        let full = (pages / 8) as usize;
        let mut snap = Vec::new();
        if op.dirty_bitmap != 0 {
            snap.try_reserve_exact(pages.div_ceil(8) as usize)
                .map_err(|_| Errno::ENOMEM)?;
            snap.resize(pages.div_ceil(8) as usize, 0u8);
        }
        if clean || op.dirty_bitmap != 0 {
            let mut sink = [0u8; COPY_CHUNK];
            let mut byte = 0usize;
            while byte < full {
                let n = (full - byte).min(COPY_CHUNK);
                log.copy_out(byte as u64 * 8, &mut sink[..n], clean);
                if let Some(dst) = snap.get_mut(byte..byte + n) {
                    dst.copy_from_slice(&sink[..n]);
                }
                byte += n;
            }
            // The last, partial byte: only the frames handed over.
            for g in full as u64 * 8..pages {
                if log.is_dirty(g) {
                    if let Some(b) = snap.get_mut(full) {
                        *b |= 1 << (g % 8);
                    }
                    if clean {
                        log.clear(g);
                    }
                }
            }
        }
        if clean {
            log.reset_stats();
            drop(logs);
            crate::pv_mm::rewrite_l1es(ft, domid, true, xen_core::mm::ptval::protect_l1e);
        }
        (snap, pages)
    };
    if clean {
        crate::arch::x86_64::flush::domain(domid);
    }
    if op.dirty_bitmap != 0 {
        if let Err(e) = crate::domain::copy_to_guest(cr3, op.dirty_bitmap, &snap) {
            if clean {
                // Nothing was handed over: the frames stay dirty.
                let mut logs = PV_LOGS.lock();
                if let Some(l) = logs.iter_mut().find(|l| l.domid == domid) {
                    for (i, b) in snap.iter().enumerate() {
                        for bit in 0..8 {
                            if b & (1 << bit) != 0 {
                                l.log.mark(i as u64 * 8 + bit);
                            }
                        }
                    }
                }
            }
            return Err(e);
        }
    }
    op.pages = pages;
    Ok(true)
}
