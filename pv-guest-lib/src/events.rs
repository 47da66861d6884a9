//! Event channels (2-level ABI): the `EVTCHNOP_*` calls, per-port handlers,
//! the upcall dispatcher and the guest's virtual interrupt flag.
//!
//! # Masking
//!
//! `vcpu_info.evtchn_upcall_mask` is a PV vCPU's interrupt flag: while it is
//! non-zero Xen does not call the event callback. [`IrqGuard`] (like
//! Linux's `local_irq_save`) sets it and restores the old value on drop; if
//! events arrived meanwhile (`evtchn_upcall_pending`), re-enabling makes a
//! cheap hypercall so that Xen delivers them on the way back (as Linux's
//! `xen_force_evtchn_callback`). Trap handlers, the event callback and the
//! syscall callback all run with events masked.
//!
//! # Dispatch
//!
//! Xen sets a port's bit in `shared_info.evtchn_pending`, then the word's
//! bit in the vCPU's `evtchn_pending_sel`, then `evtchn_upcall_pending`.
//! The upcall ([`upcall`]) undoes it in that order: clear
//! `evtchn_upcall_pending`; atomically take `evtchn_pending_sel`; for each
//! word, take the pending, unmasked bits, clear each port's pending bit
//! (atomically) *before* calling its handler. Ports bound to another vCPU
//! are left for that vCPU. Every delivered port is also recorded in a
//! software "fired" set ([`take_fired`]) and bumps [`generation`], which is
//! what the executor and the blocking helpers wait on.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::abi::event_channel::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindVcpu, EvtchnBindVirq,
    EvtchnClose, EvtchnOp, EvtchnReset, EvtchnSend, EvtchnStat, EvtchnStatus, EvtchnUnmask,
    EVTCHN_2L_NR_CHANNELS,
};
use crate::abi::hypercall::Hypercall;
use crate::abi::xen::{Virq, DOMID_SELF};
use crate::abi::{DomId, EvtchnPort};
use crate::error::{check, Errno};
use crate::hypercall::hypercall2;
use crate::shared::{self, SharedInfoView};

/// An event channel port.
pub type Port = EvtchnPort;

/// Number of ports in the 2-level ABI.
pub const NR_PORTS: usize = EVTCHN_2L_NR_CHANNELS as usize;

/// "Any vCPU" in the port → vCPU record.
const ANY_VCPU: u32 = u32::MAX;

// ---------------------------------------------------------------------------
// Virtual interrupt flag
// ---------------------------------------------------------------------------

fn my_vcpu_info() -> Option<&'static crate::shared::VcpuInfoView> {
    shared::get()?.vcpu(crate::percpu::current_vcpu())
}

/// Masks event upcalls on this vCPU; returns true if they were enabled.
pub fn irq_disable() -> bool {
    match my_vcpu_info() {
        Some(v) => v.evtchn_upcall_mask.swap(1, Ordering::AcqRel) == 0,
        None => false,
    }
}

/// Unmasks event upcalls on this vCPU, and has anything pending delivered.
pub fn irq_enable() {
    if let Some(v) = my_vcpu_info() {
        v.evtchn_upcall_mask.store(0, Ordering::Release);
        core::sync::atomic::fence(Ordering::SeqCst);
        if v.evtchn_upcall_pending.load(Ordering::Acquire) != 0 {
            force_callback();
        }
    }
}

/// True if upcalls are enabled on this vCPU.
pub fn irqs_enabled() -> bool {
    my_vcpu_info().is_some_and(|v| v.evtchn_upcall_mask.load(Ordering::Acquire) == 0)
}

/// Makes a harmless hypercall so that Xen delivers pending events on return.
pub fn force_callback() {
    let _ = crate::xen::version();
}

/// Events masked for its lifetime (restored to what they were on drop).
pub struct IrqGuard {
    was_enabled: bool,
}

impl IrqGuard {
    /// Masks events.
    pub fn new() -> IrqGuard {
        IrqGuard {
            was_enabled: irq_disable(),
        }
    }
}

impl Default for IrqGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for IrqGuard {
    fn drop(&mut self) {
        if self.was_enabled {
            irq_enable();
        }
    }
}

// ---------------------------------------------------------------------------
// EVTCHNOP_*
// ---------------------------------------------------------------------------

fn op<T>(cmd: EvtchnOp, arg: &mut T) -> Result<u64, Errno> {
    // SAFETY: `arg` is the argument struct Xen reads (and writes back) for
    // `cmd`; it is live and exactly that size.
    check(unsafe { hypercall2(Hypercall::EventChannelOp, cmd as u64, arg as *mut T as u64) })
}

/// Any `EVTCHNOP_*` with a caller-built argument (test kernels).
pub fn op_raw<T: zerocopy::IntoBytes + zerocopy::FromBytes>(
    cmd: u64,
    arg: &mut T,
) -> Result<u64, Errno> {
    // SAFETY: Xen reads/writes at most the command's struct; callers pass
    // the struct of that command or a bigger one, and every byte pattern
    // is valid for `T`.
    check(unsafe { hypercall2(Hypercall::EventChannelOp, cmd, arg as *mut T as u64) })
}

/// `EVTCHNOP_alloc_unbound`: a port in domain `dom` that `remote_dom` may bind.
pub fn alloc_unbound(dom: DomId, remote_dom: DomId) -> Result<Port, Errno> {
    let mut a = EvtchnAllocUnbound {
        dom,
        remote_dom,
        port: 0,
    };
    op(EvtchnOp::AllocUnbound, &mut a)?;
    Ok(a.port)
}

/// `EVTCHNOP_bind_interdomain`: connects to `remote_dom`'s unbound port.
pub fn bind_interdomain(remote_dom: DomId, remote_port: Port) -> Result<Port, Errno> {
    let mut a = EvtchnBindInterdomain {
        remote_dom,
        _pad2: 0,
        remote_port,
        local_port: 0,
    };
    op(EvtchnOp::BindInterdomain, &mut a)?;
    Ok(a.local_port)
}

/// `EVTCHNOP_bind_virq`: binds `virq` on `vcpu` (raw number, so tests can
/// pass bad ones).
pub fn bind_virq_raw(virq: u32, vcpu: u32) -> Result<Port, Errno> {
    let mut a = EvtchnBindVirq {
        virq,
        vcpu,
        port: 0,
    };
    op(EvtchnOp::BindVirq, &mut a)?;
    set_port_vcpu(a.port, vcpu);
    Ok(a.port)
}

/// `EVTCHNOP_bind_virq`.
pub fn bind_virq(virq: Virq, vcpu: u32) -> Result<Port, Errno> {
    bind_virq_raw(virq as u32, vcpu)
}

/// `EVTCHNOP_bind_ipi`: a port that, when sent on (from any vCPU),
/// notifies `vcpu`.
pub fn bind_ipi(vcpu: u32) -> Result<Port, Errno> {
    let mut a = EvtchnBindIpi { vcpu, port: 0 };
    op(EvtchnOp::BindIpi, &mut a)?;
    set_port_vcpu(a.port, vcpu);
    Ok(a.port)
}

/// `EVTCHNOP_bind_vcpu`: notifications of `port` go to `vcpu` from now on.
pub fn bind_vcpu(port: Port, vcpu: u32) -> Result<(), Errno> {
    let mut a = EvtchnBindVcpu { port, vcpu };
    op(EvtchnOp::BindVcpu, &mut a)?;
    set_port_vcpu(port, vcpu);
    Ok(())
}

/// `EVTCHNOP_send`: notifies the other end of `port`.
pub fn send(port: Port) -> Result<(), Errno> {
    let mut a = EvtchnSend { port };
    op(EvtchnOp::Send, &mut a).map(|_| ())
}

/// `EVTCHNOP_close` (the handler, if any, stays registered; see [`unbind`]).
pub fn close(port: Port) -> Result<(), Errno> {
    let mut a = EvtchnClose { port };
    op(EvtchnOp::Close, &mut a).map(|_| ())
}

/// `EVTCHNOP_status` of our own `port`.
pub fn status(port: Port) -> Result<EvtchnStatus, Errno> {
    status_of(DOMID_SELF, port)
}

/// `EVTCHNOP_status` of `dom`'s `port`.
pub fn status_of(dom: DomId, port: Port) -> Result<EvtchnStatus, Errno> {
    let mut a = EvtchnStatus {
        dom,
        port,
        ..Default::default()
    };
    op(EvtchnOp::Status, &mut a)?;
    Ok(a)
}

/// The [`EvtchnStat`] of a status answer, if Xen gave a known one.
pub fn stat(s: &EvtchnStatus) -> Option<EvtchnStat> {
    EvtchnStat::from_raw(u64::from(s.status))
}

/// `EVTCHNOP_unmask`: clears the mask bit and re-raises the event if it is
/// pending.
pub fn unmask(port: Port) -> Result<(), Errno> {
    let mut a = EvtchnUnmask { port };
    op(EvtchnOp::Unmask, &mut a).map(|_| ())
}

/// `EVTCHNOP_reset`: closes every port of `dom`.
pub fn reset(dom: DomId) -> Result<(), Errno> {
    let mut a = EvtchnReset { dom };
    op(EvtchnOp::Reset, &mut a).map(|_| ())
}

/// Sets `port`'s mask bit (in shared_info; no hypercall).
pub fn mask(port: Port) {
    if let (Some(s), Some((w, b))) = (shared::get(), split(port)) {
        s.evtchn_mask[w].fetch_or(b, Ordering::AcqRel);
    }
}

/// True if `port`'s pending bit is set.
pub fn is_pending(port: Port) -> bool {
    match (shared::get(), split(port)) {
        (Some(s), Some((w, b))) => s.evtchn_pending[w].load(Ordering::Acquire) & b != 0,
        _ => false,
    }
}

/// True if `port`'s mask bit is set.
pub fn is_masked(port: Port) -> bool {
    match (shared::get(), split(port)) {
        (Some(s), Some((w, b))) => s.evtchn_mask[w].load(Ordering::Acquire) & b != 0,
        _ => false,
    }
}

/// Clears `port`'s pending bit.
pub fn clear_pending(port: Port) {
    if let (Some(s), Some((w, b))) = (shared::get(), split(port)) {
        s.evtchn_pending[w].fetch_and(!b, Ordering::AcqRel);
    }
}

/// Word index and bit of a port.
pub const fn split(port: Port) -> Option<(usize, u64)> {
    if (port as usize) < NR_PORTS {
        Some((port as usize / 64, 1u64 << (port % 64)))
    } else {
        None
    }
}

// ---------------------------------------------------------------------------
// Handlers and dispatch
// ---------------------------------------------------------------------------

/// A port handler: called in the upcall, events masked, with the port and
/// the word given at registration.
pub type Handler = fn(Port, usize);

struct Slot {
    handler: AtomicUsize,
    data: AtomicUsize,
    vcpu: AtomicU32,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SLOT: Slot = Slot {
    handler: AtomicUsize::new(0),
    data: AtomicUsize::new(0),
    vcpu: AtomicU32::new(ANY_VCPU),
};

static SLOTS: [Slot; NR_PORTS] = [EMPTY_SLOT; NR_PORTS];
#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
static FIRED: [AtomicU64; NR_PORTS / 64] = [ZERO; NR_PORTS / 64];
static GENERATION: AtomicU64 = AtomicU64::new(0);
static UPCALLS: AtomicU64 = AtomicU64::new(0);
static UNHANDLED: AtomicU64 = AtomicU64::new(0);

fn set_port_vcpu(port: Port, vcpu: u32) {
    if let Some(s) = SLOTS.get(port as usize) {
        s.vcpu.store(vcpu, Ordering::Release);
    }
}

/// Registers `handler` for `port` (replacing any), called with `data`.
pub fn set_handler(port: Port, handler: Handler, data: usize) -> Result<(), Errno> {
    let s = SLOTS.get(port as usize).ok_or(Errno::EINVAL)?;
    s.data.store(data, Ordering::Release);
    s.handler.store(handler as usize, Ordering::Release);
    Ok(())
}

/// Removes `port`'s handler.
pub fn unbind(port: Port) {
    if let Some(s) = SLOTS.get(port as usize) {
        s.handler.store(0, Ordering::Release);
        s.vcpu.store(ANY_VCPU, Ordering::Release);
    }
}

/// Forgets every handler and fired flag: after a restore the domain's
/// event channels are gone (the new domain has none of them); the kernel
/// binds what it needs again.
pub fn forget_all() {
    for s in SLOTS.iter() {
        s.handler.store(0, Ordering::Release);
        s.data.store(0, Ordering::Release);
        s.vcpu.store(ANY_VCPU, Ordering::Release);
    }
    for f in FIRED.iter() {
        f.store(0, Ordering::Release);
    }
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// Takes (clears) `port`'s software "fired" flag: true if it was delivered
/// since the last take.
pub fn take_fired(port: Port) -> bool {
    match split(port) {
        Some((w, b)) => FIRED[w].fetch_and(!b, Ordering::AcqRel) & b != 0,
        None => false,
    }
}

/// True if `port` was delivered since the last [`take_fired`] (not cleared).
pub fn has_fired(port: Port) -> bool {
    match split(port) {
        Some((w, b)) => FIRED[w].load(Ordering::Acquire) & b != 0,
        None => false,
    }
}

/// Counts deliveries of any port (what waiters poll).
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// `(upcalls, events without a handler)` so far.
pub fn stats() -> (u64, u64) {
    (
        UPCALLS.load(Ordering::Relaxed),
        UNHANDLED.load(Ordering::Relaxed),
    )
}

/// The 2-level scan for `vcpu` (pure: works on any [`SharedInfoView`]).
/// `mine(port)` says whether this vCPU should take a port; `deliver` gets
/// each taken port after its pending bit is cleared. Returns how many
/// ports were delivered.
pub fn scan(
    s: &SharedInfoView,
    vcpu: u32,
    mut mine: impl FnMut(Port) -> bool,
    mut deliver: impl FnMut(Port),
) -> usize {
    let Some(vi) = s.vcpu(vcpu) else {
        return 0;
    };
    let mut n = 0;
    vi.evtchn_upcall_pending.store(0, Ordering::Release);
    loop {
        let sel = vi.evtchn_pending_sel.swap(0, Ordering::AcqRel);
        if sel == 0 {
            break;
        }
        let mut words = sel;
        while words != 0 {
            let w = words.trailing_zeros() as usize;
            words &= words - 1;
            let mut skipped = 0u64;
            loop {
                let ready = s.evtchn_pending[w].load(Ordering::Acquire)
                    & !s.evtchn_mask[w].load(Ordering::Acquire)
                    & !skipped;
                if ready == 0 {
                    break;
                }
                let b = ready.trailing_zeros();
                let port = (w * 64) as u32 + b;
                if !mine(port) {
                    skipped |= 1 << b;
                    continue;
                }
                s.evtchn_pending[w].fetch_and(!(1u64 << b), Ordering::AcqRel);
                deliver(port);
                n += 1;
            }
        }
    }
    n
}

/// The event upcall: called by the trap layer's event callback entry,
/// events masked, on the current vCPU's stack.
pub fn upcall() {
    UPCALLS.fetch_add(1, Ordering::Relaxed);
    let Some(s) = shared::get() else {
        return;
    };
    let me = crate::percpu::current_vcpu();
    scan(
        s,
        me,
        |port| {
            let v = SLOTS[port as usize].vcpu.load(Ordering::Acquire);
            v == ANY_VCPU || v == me
        },
        dispatch,
    );
}

fn dispatch(port: Port) {
    if let Some((w, b)) = split(port) {
        FIRED[w].fetch_or(b, Ordering::AcqRel);
    }
    GENERATION.fetch_add(1, Ordering::AcqRel);
    let slot = &SLOTS[port as usize];
    let h = slot.handler.load(Ordering::Acquire);
    if h == 0 {
        UNHANDLED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // SAFETY: only `set_handler` stores non-zero values here, and it stores
    // a `Handler` function pointer converted to usize.
    let f: Handler = unsafe { core::mem::transmute::<usize, Handler>(h) };
    f(port, slot.data.load(Ordering::Acquire));
}

/// Delivers `port` as the upcall would (host tests of code that waits).
#[cfg(test)]
pub(crate) fn tests_deliver(port: Port) {
    dispatch(port);
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::hypercall::mock;
    use std::vec::Vec;

    fn raise(s: &SharedInfoView, vcpu: u32, port: Port) {
        let (w, b) = split(port).unwrap();
        s.evtchn_pending[w].fetch_or(b, Ordering::SeqCst);
        let vi = s.vcpu(vcpu).unwrap();
        vi.evtchn_pending_sel.fetch_or(1 << w, Ordering::SeqCst);
        vi.evtchn_upcall_pending.store(1, Ordering::SeqCst);
    }

    #[test]
    fn scan_delivers_in_order_and_clears() {
        let s = crate::shared::test_view();
        for p in [3, 64, 130, 4095] {
            raise(s, 0, p);
        }
        let mut got = Vec::new();
        let n = scan(s, 0, |_| true, |p| got.push(p));
        assert_eq!(n, 4);
        assert_eq!(got, [3, 64, 130, 4095]);
        assert!(s
            .evtchn_pending
            .iter()
            .all(|w| w.load(Ordering::SeqCst) == 0));
        let vi = s.vcpu(0).unwrap();
        assert_eq!(vi.evtchn_pending_sel.load(Ordering::SeqCst), 0);
        assert_eq!(vi.evtchn_upcall_pending.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn masked_and_foreign_ports_stay_pending() {
        let s = crate::shared::test_view();
        raise(s, 1, 5);
        raise(s, 1, 6);
        raise(s, 1, 7);
        s.evtchn_mask[0].fetch_or(1 << 5, Ordering::SeqCst);
        let mut got = Vec::new();
        scan(s, 1, |p| p != 7, |p| got.push(p));
        assert_eq!(got, [6]);
        assert_eq!(
            s.evtchn_pending[0].load(Ordering::SeqCst),
            (1 << 5) | (1 << 7)
        );
        // Nothing for a vCPU without a selector bit.
        assert_eq!(scan(s, 2, |_| true, |_| ()), 0);
        assert_eq!(scan(s, 99, |_| true, |_| ()), 0);
    }

    #[test]
    fn handlers_and_fired_flags() {
        static SEEN: AtomicUsize = AtomicUsize::new(0);
        fn h(port: Port, data: usize) {
            SEEN.store(port as usize * 1000 + data, Ordering::SeqCst);
        }
        set_handler(4000, h, 7).unwrap();
        dispatch(4000);
        assert_eq!(SEEN.load(Ordering::SeqCst), 4_000_007);
        assert!(has_fired(4000));
        assert!(take_fired(4000));
        assert!(!take_fired(4000));
        unbind(4000);
        let before = stats().1;
        dispatch(4000);
        assert_eq!(stats().1, before + 1);
        assert!(set_handler(5000, h, 0).is_err());
        assert_eq!(split(4096), None);
    }

    #[test]
    fn evtchnop_arguments() {
        let _g = mock::install(|nr, a| {
            assert_eq!(nr, Hypercall::EventChannelOp as u64);
            match EvtchnOp::from_raw(a[0]).unwrap() {
                EvtchnOp::BindIpi => {
                    let r = mock::read(a[1], 8);
                    assert_eq!(&r[0..4], &2u32.to_ne_bytes());
                    mock::write(a[1] + 4, &9u32.to_ne_bytes());
                    0
                }
                EvtchnOp::AllocUnbound => {
                    let r = mock::read(a[1], 8);
                    assert_eq!(&r[0..2], &DOMID_SELF.to_ne_bytes());
                    assert_eq!(&r[2..4], &0u16.to_ne_bytes());
                    mock::write(a[1] + 4, &11u32.to_ne_bytes());
                    0
                }
                EvtchnOp::Send => crate::abi::errno::Errno::EINVAL.to_ret(),
                _ => -38,
            }
        });
        assert_eq!(bind_ipi(2), Ok(9));
        assert_eq!(SLOTS[9].vcpu.load(Ordering::SeqCst), 2);
        assert_eq!(alloc_unbound(DOMID_SELF, 0), Ok(11));
        assert_eq!(send(0), Err(Errno::EINVAL));
        assert_eq!(reset(DOMID_SELF), Err(Errno::ENOSYS));
    }
}
