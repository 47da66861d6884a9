//! Event delivery glue: each domain's event channel table
//! ([`xen_core::evtchn::EvtchnTable`]) over its live shared_info and
//! vcpu_info pages, raising VIRQs and event-channel notifications, and
//! waking or kicking the vCPU that must see them (Xen's
//! `evtchn_port_set_pending` → `vcpu_mark_events_pending` → `vcpu_kick`,
//! and `evtchn_check_pollers` for SCHEDOP_poll).
//!
//! Owns [`Words`], the one place that touches a guest's event bits: single
//! atomic byte operations through the direct map, never cached, since the
//! guest changes the same bits concurrently. Everything is called with
//! DOMAINS held (hypercalls, and the vtimer from CPU 0's tick) and with
//! interrupts off; nothing here takes DOMAINS.

use crate::arch::x86_64::paging::phys_to_virt;
use crate::domain::{Domain, RunState, Vcpu};
use alloc::boxed::Box;
use core::mem::offset_of;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use hypercall_abi::event_channel::EVTCHN_2L_NR_CHANNELS;
use hypercall_abi::xen::{SharedInfo, VcpuInfo, Virq, BITS_PER_XEN_ULONG};
use xen_core::evtchn::{two_level, EventWords, EvtchnTable, Notify};

/// A domain's event channel table, on the heap (about 67 KiB: too big for
/// a hypervisor stack, so it is built in zeroed memory, never moved
/// through the stack).
pub fn new_table(domid: u16, nr_vcpus: u32) -> Box<EvtchnTable> {
    let zeroed = Box::<EvtchnTable>::new_zeroed();
    // SAFETY: `EvtchnTable` documents that all-zero bytes are a valid table
    // (integers, bools, and `PortState`, a `repr(u8)` enum whose tag 0 is
    // the field-less `Free`); `init` then makes it a fresh table.
    let mut t = unsafe { zeroed.assume_init() };
    t.init(domid, nr_vcpus);
    t
}

/// One domain's 2-level event words: the `evtchn_pending`/`evtchn_mask`
/// bitmaps of its shared_info page and each vCPU's `vcpu_info`
/// (`evtchn_upcall_pending`, `evtchn_upcall_mask`, `evtchn_pending_sel`),
/// wherever the vCPU registered it.
///
/// Every bit operation is one locked byte operation on the byte holding the
/// bit: the same bit-level atomicity as Xen's `lock bts/btr`, and correct
/// whatever the alignment of a registered `vcpu_info` (Xen does not insist
/// on one). Ports, words and vCPUs out of range are treated as "already
/// set / masked / nothing to do", never as an index.
pub struct Words<'a> {
    shared_info: u64,
    vcpus: &'a [Vcpu],
}

impl<'a> Words<'a> {
    /// The event words of the domain whose shared_info page is at machine
    /// address `shared_info` and whose vCPUs are `vcpus`.
    pub fn new(shared_info: u64, vcpus: &'a [Vcpu]) -> Self {
        Words { shared_info, vcpus }
    }

    /// The byte holding bit `bit` of the little-endian bitmap at machine
    /// address `base`, and the bit's mask in it.
    fn bit(base: u64, bit: u32) -> (&'static AtomicU8, u8) {
        let maddr = base + u64::from(bit / 8);
        // SAFETY: callers pass a bitmap inside a domain's shared_info page
        // or vcpu_info area with `bit` inside the bitmap (checked by each
        // caller against the 2-level ABI's sizes). Both areas are frames
        // the hypervisor keeps allocated for the domain's lifetime
        // (shared_info is ours; a registered vcpu_info is a page of the
        // domain, checked at VCPUOP_register_vcpu_info) and covered by the
        // direct map. `AtomicU8` has the size and alignment of `u8`, and
        // only atomic operations are made through it, which is what memory
        // the guest writes concurrently needs.
        let byte = unsafe { &*(phys_to_virt(maddr) as *const AtomicU8) };
        (byte, 1 << (bit % 8))
    }

    /// Bit `bit` of the word bitmap at `base` in shared_info, a word at a
    /// time (the x86 `lock bts`/`btr` Xen uses, where a byte would need a
    /// compare-and-swap loop).
    fn word_bit(base: u64, bit: u32) -> (&'static AtomicU64, u64) {
        let maddr = base + u64::from(bit / 64) * 8;
        // SAFETY: as for `bit`, for the shared_info page only (which the
        // hypervisor allocated, page-aligned): both word bitmaps lie at
        // 8-byte-aligned offsets in it (checked below), so the word is
        // aligned for `AtomicU64`.
        let word = unsafe { &*(phys_to_virt(maddr) as *const AtomicU64) };
        (word, 1 << (bit % 64))
    }

    fn pending(&self, port: u32) -> Option<(&'static AtomicU64, u64)> {
        (port < EVTCHN_2L_NR_CHANNELS).then(|| {
            Self::word_bit(
                self.shared_info + offset_of!(SharedInfo, evtchn_pending) as u64,
                port,
            )
        })
    }

    fn mask(&self, port: u32) -> Option<(&'static AtomicU64, u64)> {
        (port < EVTCHN_2L_NR_CHANNELS).then(|| {
            Self::word_bit(
                self.shared_info + offset_of!(SharedInfo, evtchn_mask) as u64,
                port,
            )
        })
    }

    fn vcpu_info(&self, vcpu: u32) -> Option<u64> {
        self.vcpus
            .get(usize::try_from(vcpu).ok()?)
            .map(|v| v.vcpu_info_maddr)
    }

    fn sel(&self, vcpu: u32, word: u32) -> Option<(&'static AtomicU8, u8)> {
        if word as usize >= BITS_PER_XEN_ULONG {
            return None;
        }
        let vi = self.vcpu_info(vcpu)?;
        Some(Self::bit(
            vi + offset_of!(VcpuInfo, evtchn_pending_sel) as u64,
            word,
        ))
    }

    /// `evtchn_upcall_pending` (a whole byte: Xen and guests treat it as a
    /// flag, bit 0).
    fn upcall_pending(&self, vcpu: u32) -> Option<(&'static AtomicU8, u8)> {
        let vi = self.vcpu_info(vcpu)?;
        Some(Self::bit(
            vi + offset_of!(VcpuInfo, evtchn_upcall_pending) as u64,
            0,
        ))
    }

    fn upcall_mask(&self, vcpu: u32) -> Option<&'static AtomicU8> {
        let vi = self.vcpu_info(vcpu)?;
        Some(Self::bit(vi + offset_of!(VcpuInfo, evtchn_upcall_mask) as u64, 0).0)
    }
}

fn test_and_set((byte, m): (&AtomicU8, u8)) -> bool {
    byte.fetch_or(m, Ordering::SeqCst) & m != 0
}

fn test((byte, m): (&AtomicU8, u8)) -> bool {
    byte.load(Ordering::SeqCst) & m != 0
}

// The word bitmaps of shared_info are 8-byte aligned (`Words::word_bit`).
const _: () = assert!(offset_of!(SharedInfo, evtchn_pending) % 8 == 0);
const _: () = assert!(offset_of!(SharedInfo, evtchn_mask) % 8 == 0);

impl EventWords for Words<'_> {
    fn test_and_set_pending(&self, port: u32) -> bool {
        self.pending(port)
            .is_none_or(|(w, m)| w.fetch_or(m, Ordering::SeqCst) & m != 0)
    }
    fn test_pending(&self, port: u32) -> bool {
        self.pending(port)
            .is_some_and(|(w, m)| w.load(Ordering::SeqCst) & m != 0)
    }
    fn clear_pending(&self, port: u32) {
        if let Some((w, m)) = self.pending(port) {
            w.fetch_and(!m, Ordering::SeqCst);
        }
    }
    fn is_masked(&self, port: u32) -> bool {
        self.mask(port)
            .is_none_or(|(w, m)| w.load(Ordering::SeqCst) & m != 0)
    }
    fn test_and_clear_mask(&self, port: u32) -> bool {
        self.mask(port)
            .is_some_and(|(w, m)| w.fetch_and(!m, Ordering::SeqCst) & m != 0)
    }
    fn test_and_set_sel(&self, vcpu: u32, word: u32) -> bool {
        self.sel(vcpu, word).is_none_or(test_and_set)
    }
    fn set_upcall_pending(&self, vcpu: u32) -> bool {
        self.upcall_pending(vcpu).is_none_or(test_and_set)
    }
    fn upcall_masked(&self, vcpu: u32) -> bool {
        self.upcall_mask(vcpu)
            .is_none_or(|b| b.load(Ordering::SeqCst) != 0)
    }
}

/// `d`'s table (mutable) and its event words, borrowed together.
pub fn table_and_words(d: &mut Domain) -> (&mut EvtchnTable, Words<'_>) {
    (&mut d.evtchn, Words::new(d.shared_info_maddr, &d.vcpus))
}

/// Raises `d`'s own `port` on its notify vCPU (Xen's
/// `evtchn_port_set_pending`) and acts on the result. A free, reserved or
/// invalid port is ignored.
pub fn raise(d: &mut Domain, port: u32) {
    let (n, vcpu) = d
        .evtchn
        .raise_on(&Words::new(d.shared_info_maddr, &d.vcpus), port);
    notify_on(d, port, vcpu, n);
}

/// Acts on what raising or unmasking `d`'s `port` returned: an upcall newly
/// pending kicks the port's notify vCPU (Xen's `vcpu_mark_events_pending`
/// → `vcpu_kick`), and a port newly pending wakes the vCPUs polling it
/// (Xen's `evtchn_check_pollers`).
pub fn notify(d: &mut Domain, port: u32, n: Notify) {
    match d.evtchn.notify_vcpu(port) {
        Some(vcpu) => notify_on(d, port, vcpu, n),
        None if n.wake_pollers() => wake_pollers(d, port),
        None => {}
    }
}

/// [`notify`] with the port's notify vCPU already known (from raising it).
fn notify_on(d: &mut Domain, port: u32, vcpu: u32, n: Notify) {
    if n.kick() {
        kick_vcpu(d, vcpu);
    }
    if n.wake_pollers() {
        wake_pollers(d, port);
    }
}

/// Xen's `vcpu_kick`: a blocked vCPU (in SCHEDOP_block or SCHEDOP_poll)
/// becomes runnable; one running on another CPU gets an event-check IPI so
/// that it passes the exit path (which delivers the upcall) soon. One
/// running on this CPU, or waiting for a CPU, sees the event on its way
/// back to the guest anyway.
pub fn kick_vcpu(d: &mut Domain, vcpu: u32) {
    let Some(v) = d.vcpus.get_mut(vcpu as usize) else {
        return;
    };
    match v.state {
        RunState::Blocked => {
            v.poll_deadline = None;
            crate::sched::wake(d, vcpu);
        }
        RunState::Running(cpu) => crate::sched::kick(cpu as usize),
        RunState::Runnable | RunState::Down => {}
    }
}

/// Wakes every vCPU of `d` blocked in SCHEDOP_poll on `port`. Most of
/// the time none is blocked at all (Xen's `poll_mask` test): that is
/// decided inline, the search made out of line.
#[inline]
fn wake_pollers(d: &mut Domain, port: u32) {
    if d.vcpus.iter().any(|v| v.state == RunState::Blocked) {
        wake_blocked_pollers(d, port);
    }
}

#[inline(never)]
fn wake_blocked_pollers(d: &mut Domain, port: u32) {
    for id in 0..d.vcpus.len() {
        let v = &mut d.vcpus[id];
        if v.state == RunState::Blocked && v.poll_ports.contains(&port) {
            v.poll_deadline = None;
            crate::sched::wake(d, id as u32);
        }
    }
}

/// Raises `virq` for vCPU `vcpu` of `d` (the caller holds DOMAINS). A
/// per-vCPU VIRQ (`VIRQ_TIMER`, `VIRQ_DEBUG`, ...) goes to the port that
/// vCPU bound; a global one to the domain's port, on whichever vCPU that
/// port notifies (`vcpu` is then ignored). Nothing happens if the domain
/// has not bound the VIRQ, as in Xen.
pub fn send_virq(d: &mut Domain, vcpu: u32, virq: Virq) {
    if let Some(ev) = d.evtchn.send_virq(vcpu, virq) {
        raise(d, ev.port);
    }
}

/// Raises a global VIRQ (`VIRQ_CONSOLE`, `VIRQ_DOM_EXC`, ...) for `d`,
/// Xen's `send_guest_global_virq`.
pub fn send_global_virq(d: &mut Domain, virq: Virq) {
    send_virq(d, 0, virq);
}

/// Set when a domain other than Dom0 shuts down or crashes: the next tick
/// raises Dom0's `VIRQ_DOM_EXC` (Xen sends it from `domain_shutdown`, where
/// Oxen may not hold Dom0).
pub static DOM_EXC_PENDING: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// From CPU 0's tick (DOMAINS held): serial input for the hardware domain
/// raises its `VIRQ_CONSOLE` (Xen's `serial_rx` → `send_global_virq`; the
/// serial line has no interrupt here, so it is polled once a tick).
pub fn console_input_tick(doms: &mut [Domain]) {
    if DOM_EXC_PENDING.swap(false, core::sync::atomic::Ordering::AcqRel) {
        if let Some(d) = doms.iter_mut().find(|d| d.is_privileged) {
            send_global_virq(d, Virq::DomExc);
        }
    }
    if crate::console::poll_input() {
        if let Some(d) = doms.iter_mut().find(|d| d.is_privileged) {
            send_global_virq(d, Virq::Console);
        }
    }
    let mut keys = [0u8; crate::console::KEYS];
    let n = crate::console::take_keys(&mut keys);
    for &k in &keys[..n] {
        crate::keyhandler::handle(k, doms);
    }
}

/// Xen's `local_events_need_delivery` for vCPU `vcpu` of `d`: an upcall is
/// pending and the vCPU has events unmasked.
pub fn local_events_need_delivery(d: &Domain, vcpu: u32) -> bool {
    let w = Words::new(d.shared_info_maddr, &d.vcpus);
    // An HVM vCPU's mask is its RFLAGS.IF (the injection checks it), not
    // `evtchn_upcall_mask`, which HVM guests never clear (Xen's
    // hvm_local_events_need_delivery).
    w.upcall_pending(vcpu).is_some_and(test) && (d.is_hvm() || !w.upcall_masked(vcpu))
}

/// Whether `port` names a valid event channel of `d` (bound or not:
/// inside an allocated bucket, Xen's `port_is_valid`).
pub fn port_valid(d: &Domain, port: u32) -> bool {
    d.evtchn.port_is_valid(port)
}

/// Whether `port`'s pending bit is set in `d`'s shared_info.
pub fn port_pending(d: &Domain, port: u32) -> bool {
    two_level::is_pending(&Words::new(d.shared_info_maddr, &d.vcpus), port)
}
