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

use super::instr;
use super::percpu::{this_cpu, MAX_CPUS};
use super::{apic, smp};
use core::sync::atomic::{AtomicU64, Ordering};

const CR4_PGE: u64 = 1 << 7;
/// ICR: delivery mode NMI, destination "all excluding self".
const ICR_NMI_ALL_BUT_SELF: u32 = (0b11 << 18) | (0b100 << 8);

/// Generation of the latest all-CPU flush request.
static REQUESTED: AtomicU64 = AtomicU64::new(0);
/// Per CPU: the latest request generation it has flushed for.
static DONE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Flushes this CPU's TLB, global entries included.
pub fn local() {
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

/// Flushes every online CPU's TLB and returns once all have done so.
pub fn all() {
    let gen = REQUESTED.fetch_add(1, Ordering::AcqRel) + 1;
    let me = this_cpu().cpu as usize;
    let n = (smp::cpus_online() as usize).min(MAX_CPUS);
    if n > 1 {
        apic::send_ipi(0, ICR_NMI_ALL_BUT_SELF);
    }
    local();
    DONE[me].fetch_max(gen, Ordering::AcqRel);
    for (cpu, done) in DONE.iter().enumerate().take(n) {
        if cpu == me {
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
