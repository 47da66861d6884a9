//! Deliberate faults, for kernels that test how the hypervisor handles them.

use core::arch::asm;

/// An address no PV kernel maps: the second page of the low half (guest
/// user space, where nothing is mapped at boot).
pub const UNMAPPED_LOW: u64 = 0x1000;

/// Reads 8 bytes at `addr` with a single `mov`. If nothing is mapped there
/// and no trap handler is registered, the hypervisor crashes the domain and
/// this never returns.
///
/// # Safety
/// `addr` must not be device memory whose reads have side effects. The read
/// is opaque to the compiler (inline assembly), so it does not create a
/// Rust reference and cannot break aliasing rules.
pub unsafe fn read_u64(addr: u64) -> u64 {
    let v: u64;
    // SAFETY: a plain load; the caller rules out side-effecting memory. A
    // fault is the purpose.
    unsafe {
        asm!(
            "mov ({a}), {v}",
            a = in(reg) addr,
            v = lateout(reg) v,
            options(att_syntax, nostack, readonly, preserves_flags)
        );
    }
    v
}
