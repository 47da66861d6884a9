//! The time-stamp counter, read so that two reads bracket exactly the code
//! between them (Intel SDM vol. 2B, RDTSC/RDTSCP; Intel's "How to Benchmark
//! Code Execution Times" white paper; AMD APM vol. 3, RDTSCP).
//!
//! * [`begin`]: `lfence; rdtsc; lfence`. The first LFENCE waits for what
//!   came before; the second keeps the timed code from starting before
//!   the read.
//! * [`end`]: `rdtscp; lfence` where CPUID says RDTSCP exists (it waits
//!   for the timed code to finish; the LFENCE keeps what follows out),
//!   else `lfence; rdtsc; lfence`.
//!
//! LFENCE orders execution on Intel, and on AMD where the OS made it
//! dispatch-serialising (MSR C001_1029 bit 1, which Linux sets and this
//! kernel does not touch); under QEMU TCG, which executes in order, the
//! fences cost next to nothing. The TSC is QEMU TCG's host TSC (plus the
//! guest's offset), so cycles are the host's.

use super::cpu;
use core::arch::asm;

/// CPUID leaf 0x80000001 EDX: RDTSCP (and IA32_TSC_AUX).
const EXT1_EDX_RDTSCP: u32 = 1 << 27;

/// Whether this CPU has RDTSCP, as CPUID says.
pub fn has_rdtscp() -> bool {
    cpu::cpuid(0x8000_0000, 0).eax >= 0x8000_0001
        && cpu::cpuid(0x8000_0001, 0).edx & EXT1_EDX_RDTSCP != 0
}

/// Reads the TSC at the start of a timed region.
#[inline(always)]
pub fn begin() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: LFENCE and RDTSC touch no memory; the kernel runs at CPL 0,
    // so CR4.TSD cannot make RDTSC fault.
    unsafe {
        asm!(
            "lfence",
            "rdtsc",
            "lfence",
            out("eax") lo,
            out("edx") hi,
            options(nostack, preserves_flags)
        )
    };
    u64::from(hi) << 32 | u64::from(lo)
}

/// Reads the TSC at the end of a timed region; `RDTSCP` says whether to
/// use RDTSCP (only where [`has_rdtscp`]).
#[inline(always)]
pub fn end<const RDTSCP: bool>() -> u64 {
    let (lo, hi): (u32, u32);
    if RDTSCP {
        // SAFETY: as `begin`; RDTSCP also writes ECX (IA32_TSC_AUX), which
        // is declared clobbered, and the caller checked that it exists.
        unsafe {
            asm!(
                "rdtscp",
                "lfence",
                out("eax") lo,
                out("edx") hi,
                out("ecx") _,
                options(nostack, preserves_flags)
            )
        };
    } else {
        // SAFETY: as `begin`.
        unsafe {
            asm!(
                "lfence",
                "rdtsc",
                "lfence",
                out("eax") lo,
                out("edx") hi,
                options(nostack, preserves_flags)
            )
        };
    }
    u64::from(hi) << 32 | u64::from(lo)
}
