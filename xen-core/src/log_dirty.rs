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
    if !d.is_hvm() {
        // Xen switches a PV domain to shadow paging for this; Oxen does
        // not track PV guests' writable mappings yet.
        log::warn!(
            "d{}: log-dirty mode is for HVM/PVH domains only (so far)",
            d.domid
        );
        return Err(Errno::EOPNOTSUPP);
    }
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
