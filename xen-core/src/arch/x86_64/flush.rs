//! TLB flushes: this CPU's, and every CPU's, synchronously.
//!
//! Owns the cross-CPU flush protocol. A flush of all CPUs must be complete
//! before the caller goes on (a frame about to become a page table must not
//! stay writable through a stale translation anywhere, Xen's flush in
//! `_get_page_type`), yet the requester may hold locks other CPUs are
//! spinning on with interrupts off. So the request is an NMI, which reaches
//! a CPU whatever it is doing: every CPU flushes in its NMI handler and
//! acknowledges the generation it saw. Requests from several CPUs at once
//! are fine: a CPU waiting for acknowledgements still takes NMIs.
//!
//! A flush is always complete, global translations included (CR4.PGE
//! toggle), as Xen's `do_tlb_flush`: PV guests may set G on their own
//! mappings and xen-core sets it on their user mappings.
//!
//! [`domain`] flushes only the CPUs running one of the domain's vCPUs now
//! (Xen's `domain_dirty_cpumask`): every vCPU load flushes completely, and
//! xen-core itself never reaches guest memory through guest translations,
//! so translations a CPU kept from a domain it no longer runs are never
//! used again.

use super::instr;
use super::percpu::{this_cpu, MAX_CPUS};
use super::{apic, smp};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const CR4_PGE: u64 = 1 << 7;

/// ICR: delivery mode NMI, one destination.
const ICR_NMI: u32 = 0b100 << 8;
/// `RUNNING` value of a CPU that runs no guest.
const NO_DOMAIN: u32 = u32::MAX;

/// Per CPU: the domain whose vCPU it runs, or `NO_DOMAIN`.
static RUNNING: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(NO_DOMAIN) }; MAX_CPUS];

/// Records which domain this CPU runs (the scheduler calls it before it
/// loads a vCPU, and when it goes idle).
pub fn set_running(domid: Option<u16>) {
    if let Some(r) = RUNNING.get(this_cpu().cpu as usize) {
        r.store(domid.map_or(NO_DOMAIN, u32::from), Ordering::Release);
    }
}

/// Generation of the latest all-CPU flush request.
static REQUESTED: AtomicU64 = AtomicU64::new(0);
/// Per CPU: the latest request generation it has flushed for.
static DONE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Whether this machine has INVPCID (CPUID.(7,0):EBX bit 10).
fn has_invpcid() -> bool {
    static HAS: spin::Once<bool> = spin::Once::new();
    *HAS.call_once(|| instr::cpuid(0, 0).eax >= 7 && instr::cpuid(7, 0).ebx & (1 << 10) != 0)
}

/// Flushes this CPU's TLB, global entries included: one INVPCID where the
/// CPU has it (as Xen's `do_tlb_flush`), else a CR4.PGE toggle, which is
/// two flushes (each write of PGE flushes everything).
pub fn local() {
    if has_invpcid() {
        instr::invpcid_flush_all();
        return;
    }
    let cr4 = instr::read_cr4();
    if cr4 & CR4_PGE != 0 {
        // SAFETY: toggling PGE off and back on changes no other CR4 bit;
        // the only effect is a complete TLB flush.
        unsafe {
            instr::write_cr4(cr4 & !CR4_PGE);
            instr::write_cr4(cr4);
        }
    } else {
        // SAFETY: reloading the current CR3 keeps the same address space.
        unsafe { instr::write_cr3(instr::read_cr3()) };
    }
}

/// Drops this CPU's translation of `va` (global or not).
pub fn local_one(va: u64) {
    instr::invlpg(va);
}

/// Flushes this CPU and every CPU running a vCPU of `domid`, and returns
/// once all have done so.
pub fn domain(domid: u16) {
    flush_where(|cpu| RUNNING[cpu].load(Ordering::Acquire) == u32::from(domid));
}

fn flush_where(wanted: impl Fn(usize) -> bool) {
    let gen = REQUESTED.fetch_add(1, Ordering::AcqRel) + 1;
    let me = this_cpu().cpu as usize;
    let n = (smp::cpus_online() as usize).min(MAX_CPUS);
    let mut targets = 0u64;
    for cpu in (0..n).filter(|&c| c != me && wanted(c)) {
        if let Some(id) = smp::apic_id_of(cpu) {
            targets |= 1 << cpu;
            apic::send_ipi(id, ICR_NMI);
        }
    }
    local();
    DONE[me].fetch_max(gen, Ordering::AcqRel);
    for (cpu, done) in DONE.iter().enumerate().take(n) {
        if targets & (1 << cpu) == 0 {
            continue;
        }
        while done.load(Ordering::Acquire) < gen {
            core::hint::spin_loop();
        }
    }
}

/// The NMI handler's part: flush, then acknowledge every request made
/// before the flush began.
pub fn on_nmi() {
    let gen = REQUESTED.load(Ordering::Acquire);
    local();
    if let Some(done) = DONE.get(this_cpu().cpu as usize) {
        done.fetch_max(gen, Ordering::AcqRel);
    }
}
