//! Scrubbing memory before a domain gets it, on every online CPU at once
//! (as Xen's boot-time scrubber spreads the work over all CPUs).
//!
//! The boot CPU publishes a job (a range cut into 2 MiB chunks) and wakes the
//! others with an IPI; every CPU takes chunks until none are left.

use crate::arch::x86_64::apic;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Work unit.
const CHUNK: u64 = 2 << 20;

static ACTIVE: AtomicBool = AtomicBool::new(false);
static BASE: AtomicU64 = AtomicU64::new(0);
static LEN: AtomicU64 = AtomicU64::new(0);
static NEXT: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU64 = AtomicU64::new(0);

fn chunks() -> u64 {
    LEN.load(Ordering::Acquire).div_ceil(CHUNK)
}

/// Takes chunks of the current job until there are none left.
fn work() {
    let (base, len) = (BASE.load(Ordering::Acquire), LEN.load(Ordering::Acquire));
    loop {
        let i = NEXT.fetch_add(1, Ordering::AcqRel);
        if i >= chunks() {
            break;
        }
        let start = i * CHUNK;
        let n = CHUNK.min(len - start);
        // SAFETY: the job's range belongs to the boot CPU's caller of
        // `zero_all_cpus`, which waits until every chunk is done.
        unsafe { crate::memory::zero_bytes(base + start, n) };
        DONE.fetch_add(1, Ordering::AcqRel);
    }
}

/// Called from the IPI handler on every other CPU.
pub fn on_ipi() {
    if ACTIVE.load(Ordering::Acquire) {
        work();
    }
}

/// Zeroes `[va, va + len)` (page aligned) using every online CPU.
///
/// # Safety
/// The range must be mapped, writable memory owned by the caller.
pub unsafe fn zero_all_cpus(va: u64, len: u64) {
    BASE.store(va, Ordering::Release);
    LEN.store(len, Ordering::Release);
    NEXT.store(0, Ordering::Release);
    DONE.store(0, Ordering::Release);
    ACTIVE.store(true, Ordering::Release);
    apic::ipi_all_but_self(apic::CALL_FUNCTION_VECTOR);
    work();
    while DONE.load(Ordering::Acquire) < chunks() {
        core::hint::spin_loop();
    }
    ACTIVE.store(false, Ordering::Release);
}
