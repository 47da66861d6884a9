//! The few CPU instructions a PV kernel issues itself: `rdtsc`, `cpuid`
//! (native, and through Xen's forced-emulation prefix), privileged
//! instructions Xen emulates for PV kernels (control-register reads,
//! `rdmsr`, port I/O), the current stack pointer, and deliberate faults for
//! test kernels.
//!
//! A PV kernel runs in ring 3, so a privileged instruction faults into the
//! hypervisor, which emulates it (Xen's `emulate_privileged_op`) or bounces
//! the fault to the kernel's trap handler. None of these touch Rust memory.

/// `ud2; .ascii "xen"`: Xen's forced-emulation prefix (`XEN_EMULATE_PREFIX`
/// in `public/arch-x86/xen.h`): the next instruction is emulated by Xen
/// (for PV guests, `cpuid` only), so a PV kernel sees the domain's
/// filtered CPUID, including the hypervisor leaves at 0x40000000.
pub const XEN_EMULATE_PREFIX: [u8; 5] = [0x0f, 0x0b, b'x', b'e', b'n'];

/// The four registers `cpuid` returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidResult {
    /// eax.
    pub eax: u32,
    /// ebx.
    pub ebx: u32,
    /// ecx.
    pub ecx: u32,
    /// edx.
    pub edx: u32,
}

impl CpuidResult {
    /// ebx, ecx, edx as 12 bytes (a vendor or hypervisor signature).
    pub fn signature(&self) -> [u8; 12] {
        let mut s = [0u8; 12];
        s[..4].copy_from_slice(&self.ebx.to_le_bytes());
        s[4..8].copy_from_slice(&self.ecx.to_le_bytes());
        s[8..].copy_from_slice(&self.edx.to_le_bytes());
        s
    }
}

#[cfg(target_os = "none")]
mod imp {
    use super::*;
    use core::arch::asm;

    pub fn rdtsc() -> u64 {
        let lo: u32;
        let hi: u32;
        // SAFETY: rdtsc reads the time-stamp counter; no memory, no stack.
        unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
        (u64::from(hi) << 32) | u64::from(lo)
    }

    pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
        let (eax, ebx, ecx, edx): (u32, u32, u32, u32);
        // SAFETY: cpuid only writes the four registers; rbx is reserved by
        // LLVM, so it is saved in another register around the instruction.
        unsafe {
            asm!(
                "mov {tmp:r}, rbx",
                "cpuid",
                "xchg {tmp:r}, rbx",
                tmp = out(reg) ebx,
                inout("eax") leaf => eax,
                inout("ecx") subleaf => ecx,
                out("edx") edx,
                options(nomem, nostack, preserves_flags)
            )
        };
        CpuidResult { eax, ebx, ecx, edx }
    }

    pub fn xen_cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
        let (eax, ebx, ecx, edx): (u32, u32, u32, u32);
        // SAFETY: `ud2; "xen"; cpuid` is emulated by Xen as a cpuid (it
        // advances rip past all 7 bytes); only the four registers change.
        unsafe {
            asm!(
                "mov {tmp:r}, rbx",
                ".byte 0x0f, 0x0b, 0x78, 0x65, 0x6e",
                "cpuid",
                "xchg {tmp:r}, rbx",
                tmp = out(reg) ebx,
                inout("eax") leaf => eax,
                inout("ecx") subleaf => ecx,
                out("edx") edx,
                options(nomem, nostack)
            )
        };
        CpuidResult { eax, ebx, ecx, edx }
    }

    pub fn read_cr0() -> u64 {
        let v: u64;
        // SAFETY: faults into the hypervisor, which emulates the read for a
        // PV kernel; only `v` changes.
        unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack)) };
        v
    }

    pub fn read_cr4() -> u64 {
        let v: u64;
        // SAFETY: as read_cr0.
        unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack)) };
        v
    }

    pub fn rdmsr(msr: u32) -> u64 {
        let (lo, hi): (u32, u32);
        // SAFETY: emulated by the hypervisor for allowed MSRs, a #GP
        // bounced to the kernel otherwise; no memory is touched.
        unsafe {
            asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack))
        };
        (u64::from(hi) << 32) | u64::from(lo)
    }

    pub fn inb(port: u16) -> u8 {
        let v: u8;
        // SAFETY: emulated (permitted port) or #GP bounced; no memory.
        unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack)) };
        v
    }

    pub fn rsp() -> u64 {
        let v: u64;
        // SAFETY: reads the stack pointer.
        unsafe { asm!("mov {}, rsp", out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }

    pub fn int3() {
        // SAFETY: raises #BP, which the kernel's trap handler resumes from.
        unsafe { asm!("int3", options(nomem, nostack)) };
    }

    pub fn pause() {
        core::hint::spin_loop();
    }
}

#[cfg(not(target_os = "none"))]
mod imp {
    use super::*;
    use core::sync::atomic::{AtomicU64, Ordering};

    /// A stand-in counter: every read advances it by 1000 "cycles".
    pub fn rdtsc() -> u64 {
        static TSC: AtomicU64 = AtomicU64::new(0);
        TSC.fetch_add(1000, Ordering::Relaxed) + 1000
    }
    pub fn cpuid(_leaf: u32, _subleaf: u32) -> CpuidResult {
        CpuidResult::default()
    }
    pub fn xen_cpuid(_leaf: u32, _subleaf: u32) -> CpuidResult {
        CpuidResult::default()
    }
    pub fn read_cr0() -> u64 {
        0
    }
    pub fn read_cr4() -> u64 {
        0
    }
    pub fn rdmsr(_msr: u32) -> u64 {
        0
    }
    pub fn inb(_port: u16) -> u8 {
        0xff
    }
    pub fn rsp() -> u64 {
        let x = 0u64;
        &x as *const u64 as u64
    }
    pub fn int3() {}
    pub fn pause() {
        core::hint::spin_loop();
    }
}

/// The time-stamp counter (a stand-in counter on the host).
pub fn rdtsc() -> u64 {
    imp::rdtsc()
}

/// Native `cpuid` (a PV kernel sees the host's leaves, unfiltered, unless
/// the CPU has CPUID faulting).
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    imp::cpuid(leaf, subleaf)
}

/// `cpuid` through [`XEN_EMULATE_PREFIX`]: the domain's CPUID as Xen
/// filters it. Faults (#UD bounced) on a hypervisor that does not know the
/// prefix.
pub fn xen_cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    imp::xen_cpuid(leaf, subleaf)
}

/// `mov %cr0, reg` (emulated by the hypervisor for PV kernels).
pub fn read_cr0() -> u64 {
    imp::read_cr0()
}

/// `mov %cr4, reg` (emulated by the hypervisor for PV kernels).
pub fn read_cr4() -> u64 {
    imp::read_cr4()
}

/// `rdmsr` (emulated for the MSRs Xen lets a PV kernel read; #GP otherwise).
pub fn rdmsr(msr: u32) -> u64 {
    imp::rdmsr(msr)
}

/// `in %dx, %al` (emulated for permitted ports; #GP otherwise).
pub fn inb(port: u16) -> u8 {
    imp::inb(port)
}

/// The current stack pointer.
pub fn rsp() -> u64 {
    imp::rsp()
}

/// `int3`.
pub fn int3() {
    imp::int3()
}

/// A spin-loop hint.
pub fn pause() {
    imp::pause()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_bytes() {
        let r = CpuidResult {
            eax: 0x4000_0005,
            ebx: crate::abi::arch_x86::XEN_CPUID_SIGNATURE_EBX,
            ecx: crate::abi::arch_x86::XEN_CPUID_SIGNATURE_ECX,
            edx: crate::abi::arch_x86::XEN_CPUID_SIGNATURE_EDX,
        };
        assert_eq!(&r.signature(), b"XenVMMXenVMM");
        assert_eq!(&XEN_EMULATE_PREFIX[2..], b"xen");
    }

    #[test]
    fn host_tsc_is_monotonic() {
        let a = rdtsc();
        let b = rdtsc();
        assert!(b >= a);
    }
}
