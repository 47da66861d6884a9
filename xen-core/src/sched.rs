//! Scheduling, first cut: one vCPU (Dom0's vCPU0) on the boot CPU, the other
//! CPUs idle. The credit scheduler replaces this with run queues.

use crate::arch::x86_64::instr;

/// What a CPU with nothing to run does: wait for interrupts forever.
pub fn idle_loop() -> ! {
    loop {
        instr::sti_hlt();
    }
}

/// SCHEDOP_block: wait for the next interrupt (the guest re-checks its
/// condition afterwards, as Xen guests must), then return to the guest.
pub fn block_current() {
    instr::sti_hlt();
    instr::cli();
}
