//! Suspend and resume, as a Xen PV guest does it for `xl save`,
//! `xl save -c` and migration (Linux's `xen_suspend`/`do_suspend`).
//!
//! The toolstack writes `suspend` to `control/shutdown`; the guest
//! acknowledges it ([`crate::domu::ShutdownWatcher::accept_suspend`]) and
//! calls [`suspend`], which:
//!
//! 1. refuses while another vCPU is up: [`suspend_smp`] first parks the
//!    vCPUs [`crate::hotplug`] runs, and brings them back afterwards;
//! 2. masks events and maps the shared-info alias back to its own frame
//!    ([`crate::shared::detach`], Linux's `xen_pre_suspend`), so no page
//!    table names a frame the guest does not own;
//! 3. turns `start_info`'s `store_mfn` and `console.domU.mfn` into
//!    pseudo-physical frames (Linux's `xen_pre_suspend`; libxc's restore
//!    reads them so), back if the suspend is cancelled;
//! 4. `SCHEDOP_shutdown(SHUTDOWN_suspend)` with `rdx` = the machine frame
//!    of the `start_info` page ([`crate::xen::sched_suspend`]).
//!
//! The call returns when the domain runs again:
//!
//! - **1, cancelled** (`xl save -c`, or a save that failed): the same
//!   domain runs on; shared info is mapped again, nothing else changed.
//! - **0, restored** into a new domain: the toolstack rewrote `start_info`
//!   (shared info's machine address, `store_mfn`/`store_evtchn`,
//!   `console.domU`) and the p2m, and every page table, for the new
//!   machine frames. The guest maps the new shared info, refreshes what
//!   it cached of machine frames ([`crate::frame::refresh_after_restore`]),
//!   forgets every event channel (the new domain has none of them), binds
//!   `VIRQ_TIMER` again, takes the new store and console ports, unmasks
//!   what it binds (restore leaves every port masked), and republishes
//!   the p2m frame list list ([`crate::p2m_list::publish`]). The caller
//!   then re-registers its xenstore watches (xenstored does not keep a
//!   domain's watches across a restore) and reconnects its devices.
//!
//! The grant table and a registered `vcpu_info` are not used by the
//! kernels this library suspends today; a kernel that maps grant frames
//! must unmap them before (as Linux's `gnttab_suspend`) and set them up
//! again after.

use core::fmt;

use crate::error::Errno;
use crate::start_info::StartInfo;
use crate::xenbus::metal::StoreTransport;
use crate::xenbus::Xenbus;

/// How the domain came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resumed {
    /// The suspend was cancelled: the same domain runs on.
    Cancelled,
    /// Restored into a new domain (the new `start_info` values).
    Restored {
        /// Machine address of the new shared info page.
        shared_info: u64,
        /// The new xenstore event channel.
        store_evtchn: u32,
        /// The new console event channel (0: none).
        console_evtchn: u32,
    },
}

/// Why [`suspend`] failed. Except for [`SuspendError::Resume`], the
/// domain was not suspended and runs on as before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuspendError {
    /// Not booted (no `start_info` or layout), or the `start_info` page
    /// has no machine frame.
    NotBooted,
    /// Another vCPU is up.
    OtherVcpus(u32),
    /// Mapping the shared-info alias back to its own frame failed.
    Detach(Errno),
    /// The hypervisor refused the suspend.
    Hypercall(Errno),
    /// After a restore, a step of bringing the guest back failed.
    Resume(&'static str, Errno),
}

impl fmt::Display for SuspendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuspendError::NotBooted => f.write_str("not booted"),
            SuspendError::OtherVcpus(v) => write!(f, "vCPU {v} is up: suspend one vCPU only"),
            SuspendError::Detach(e) => write!(f, "unmapping shared info: {e}"),
            SuspendError::Hypercall(e) => write!(f, "SCHEDOP_shutdown(suspend): {e}"),
            SuspendError::Resume(what, e) => write!(f, "after the restore, {what}: {e}"),
        }
    }
}

/// Linux's `xen_pre_suspend`/`xen_post_suspend(cancelled)`: in the
/// `start_info` page, `store_mfn` and `console.domU.mfn` become
/// pseudo-physical frame numbers for the suspend (libxc's restore reads
/// them as such and writes the new machine frames), and machine frames
/// again if it is cancelled. `to_pfn` says which way.
#[cfg(target_os = "none")]
fn convert_start_info(si: &StartInfo, to_pfn: bool) -> Result<(), SuspendError> {
    let p = si.va as *mut crate::abi::xen::StartInfo;
    // SAFETY: the start_info page, mapped read-write in the bootstrap
    // region for the domain's life; only this (single-vCPU, events
    // masked) path writes it, through volatile copies.
    let mut raw = unsafe { core::ptr::read_volatile(p) };
    let conv = |v: u64| {
        if to_pfn {
            crate::frame::mfn_to_pfn(v)
        } else {
            crate::frame::pfn_to_mfn(v)
        }
    };
    let store = conv(raw.store_mfn).ok_or(SuspendError::NotBooted)?;
    let mut console = raw.console.dom_u();
    console.mfn = conv(console.mfn).ok_or(SuspendError::NotBooted)?;
    raw.store_mfn = store;
    raw.console = crate::abi::xen::StartInfoConsole::from_dom_u(console);
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(p, raw) };
    Ok(())
}

#[cfg(not(target_os = "none"))]
fn convert_start_info(_si: &StartInfo, _to_pfn: bool) -> Result<(), SuspendError> {
    Ok(())
}

/// What the restore left in `start_info`, read from the page itself (the
/// copy [`crate::boot::start_info`] made at boot is the old domain's).
#[cfg(target_os = "none")]
fn reread_start_info(si: &StartInfo) -> StartInfo {
    // SAFETY: `si.va` is the start_info page the builder mapped for us in
    // the bootstrap region (readable for the domain's life, never freed);
    // the toolstack rewrote it while the domain was not running, so a
    // volatile copy reads its current contents.
    let raw = unsafe { core::ptr::read_volatile(si.va as *const crate::abi::xen::StartInfo) };
    StartInfo::from_raw(&raw, si.va)
}

#[cfg(not(target_os = "none"))]
fn reread_start_info(si: &StartInfo) -> StartInfo {
    si.clone()
}

fn on_store_event(_port: crate::events::Port, _data: usize) {
    // As domu's: the delivery itself wakes the transport's waits.
}

/// Suspends the domain (see the module docs) and brings it back. `xs` is
/// the domain's xenstore client: after a restore it talks on the new
/// store port.
pub fn suspend(xs: &mut Xenbus<StoreTransport>) -> Result<Resumed, SuspendError> {
    let si = crate::boot::start_info().ok_or(SuspendError::NotBooted)?;
    let l = crate::boot::layout().ok_or(SuspendError::NotBooted)?;
    let srec = l
        .va_to_pfn(si.va)
        .and_then(crate::frame::pfn_to_mfn)
        .ok_or(SuspendError::NotBooted)?;
    for v in 1..crate::smp::count() {
        if crate::smp::is_up(v) == Ok(true) {
            return Err(SuspendError::OtherVcpus(v));
        }
    }
    // The shared info frame the domain runs with now (the boot one, or the
    // one of the last restore).
    let current = CURRENT_SHARED.load(core::sync::atomic::Ordering::Acquire);
    let old_shared = if current != 0 {
        current
    } else {
        si.shared_info
    };
    let irq = crate::events::IrqGuard::new();
    convert_start_info(si, true)?;
    if let Err(e) = crate::shared::detach() {
        let _ = convert_start_info(si, false);
        return Err(SuspendError::Detach(e));
    }
    let r = crate::xen::sched_suspend(srec);
    let resumed = match r {
        Ok(0) => {
            let new = reread_start_info(si);
            let r = come_back(xs, &new);
            drop(irq);
            return r;
        }
        Ok(_) => Ok(Resumed::Cancelled),
        Err(e) => Err(SuspendError::Hypercall(e)),
    };
    // Cancelled or refused: the same domain, the same shared info.
    crate::shared::remap(old_shared)
        .map_err(|e| SuspendError::Resume("remapping shared info", e))?;
    convert_start_info(si, false)?;
    drop(irq);
    resumed
}

/// How long [`suspend_smp`] waits for the other vCPUs to go down.
const PARK_PATIENCE_NS: u64 = 5_000_000_000;

/// Suspends a domain whose other vCPUs run under [`crate::hotplug`]
/// (started with `main`), the way Linux takes its secondary CPUs out
/// around a suspend: each running vCPU is asked down and parks itself
/// (`VCPUOP_down`, so the image holds only vCPU 0), then [`suspend`].
/// Afterwards the same vCPUs come back: woken where they parked if the
/// suspend was cancelled or refused, started afresh on `main` in a new
/// domain (which has no context for them). A vCPU that does not park in
/// time is woken again and the suspend refused
/// ([`SuspendError::OtherVcpus`]); the domain runs on.
pub fn suspend_smp(
    xs: &mut Xenbus<StoreTransport>,
    main: crate::smp::VcpuMain,
) -> Result<Resumed, SuspendError> {
    use crate::hotplug::{self, VcpuState};
    let n = crate::smp::count();
    let mut parked: u64 = 0;
    for v in 1..n {
        if hotplug::set_online(v, false, main) == hotplug::Change::Stopping {
            parked |= 1 << v;
        }
    }
    let down = |v: u32| hotplug::state(v) == VcpuState::Parked && crate::smp::is_up(v) == Ok(false);
    let deadline = crate::time::now_ns() + PARK_PATIENCE_NS;
    while !(1..n).filter(|v| parked & (1 << v) != 0).all(down) {
        if crate::time::now_ns() > deadline {
            let late = (1..n)
                .find(|&v| parked & (1 << v) != 0 && !down(v))
                .unwrap_or(0);
            wake_all(parked, main, false);
            return Err(SuspendError::OtherVcpus(late));
        }
        let _ = crate::xen::sched_yield();
    }
    let r = suspend(xs);
    wake_all(parked, main, matches!(r, Ok(Resumed::Restored { .. })));
    r
}

/// Brings the vCPUs of `mask` back: started afresh (`restored`: the new
/// domain has no context for them) or woken where they parked.
fn wake_all(mask: u64, main: crate::smp::VcpuMain, restored: bool) {
    for v in 1..crate::smp::MAX_VCPUS {
        if mask & (1 << v) == 0 {
            continue;
        }
        if restored {
            crate::hotplug::forget(v);
        }
        let _ = crate::hotplug::set_online(v, true, main);
    }
}

/// The shared info machine address after the last restore (0: the boot
/// one in `start_info`).
static CURRENT_SHARED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The restored half (events still masked).
fn come_back(xs: &mut Xenbus<StoreTransport>, new: &StartInfo) -> Result<Resumed, SuspendError> {
    use crate::start_info::ConsoleInfo;
    let fail = |what| move |e| SuspendError::Resume(what, e);
    crate::shared::remap(new.shared_info).map_err(fail("mapping the new shared info"))?;
    CURRENT_SHARED.store(new.shared_info, core::sync::atomic::Ordering::Release);
    crate::frame::refresh_after_restore()
        .map_err(|_| SuspendError::Resume("re-reading the kernel L4", Errno::EINVAL))?;
    crate::events::forget_all();
    crate::time::forget_after_restore();
    let timer = crate::time::init_vcpu_timer(0).map_err(fail("binding VIRQ_TIMER"))?;
    crate::events::unmask(timer).map_err(fail("unmasking VIRQ_TIMER"))?;
    let store = new.store_evtchn;
    xs.transport().set_port(store);
    crate::events::set_handler(store, on_store_event, 0).map_err(fail("the store port"))?;
    crate::events::unmask(store).map_err(fail("unmasking the store port"))?;
    let console_evtchn = match new.console {
        ConsoleInfo::DomU { evtchn, .. } => {
            crate::console_ring::set_port(evtchn);
            evtchn
        }
        ConsoleInfo::Dom0 { .. } => 0,
    };
    #[cfg(target_os = "none")]
    crate::p2m_list::publish().map_err(|_| {
        SuspendError::Resume(
            "republishing the p2m",
            Errno::from_abi(crate::abi::errno::Errno::ENOMEM),
        )
    })?;
    Ok(Resumed::Restored {
        shared_info: new.shared_info,
        store_evtchn: store,
        console_evtchn,
    })
}
