//! Every privileged instruction this kernel uses, wrapped once.
//!
//! Port I/O, CPUID, control-register and MSR reads are safe functions: the
//! kernel drives no DMA-capable device, so no port access can break memory
//! safety, and a read of a missing MSR is a #GP that the IDT reports.
//! What can break the kernel's memory model (MSR writes, loading an IDT,
//! MMIO at an arbitrary address) is `unsafe`.

use core::arch::asm;

pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: port input touches no memory (see the module comment).
    unsafe {
        asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    v
}

pub fn outb(port: u16, v: u8) {
    // SAFETY: port output touches no memory (see the module comment).
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    };
}

pub fn inw(port: u16) -> u16 {
    let v: u16;
    // SAFETY: as `inb`.
    unsafe {
        asm!("in ax, dx", out("ax") v, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    v
}

pub fn outw(port: u16, v: u16) {
    // SAFETY: as `outb`.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack, preserves_flags))
    };
}

/// The four registers CPUID returns.
#[derive(Debug, Clone, Copy)]
pub struct Cpuid {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

pub fn cpuid(leaf: u32, subleaf: u32) -> Cpuid {
    let (eax, ecx, edx): (u32, u32, u32);
    let rbx: u64;
    // SAFETY: CPUID exists on every x86_64 CPU and touches no memory; RBX
    // (reserved by LLVM) is saved and restored around it.
    unsafe {
        asm!(
            "mov {t}, rbx",
            "cpuid",
            "xchg {t}, rbx",
            t = out(reg) rbx,
            inout("eax") leaf => eax,
            inout("ecx") subleaf => ecx,
            out("edx") edx,
            options(nomem, nostack, preserves_flags)
        )
    };
    Cpuid {
        eax,
        ebx: rbx as u32,
        ecx,
        edx,
    }
}

pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reading an MSR touches no memory; a missing one raises #GP,
    // which the IDT reports.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    u64::from(hi) << 32 | u64::from(lo)
}

/// # Safety
/// The write must not change anything the kernel relies on (paging, the
/// APIC base it has recorded, ...).
pub unsafe fn wrmsr(msr: u32, v: u64) {
    // SAFETY: the caller vouches for the value.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nostack, preserves_flags))
    };
}

pub fn cr0() -> u64 {
    let v;
    // SAFETY: reading CR0 has no effect.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

pub fn cr3() -> u64 {
    let v;
    // SAFETY: reading CR3 has no effect.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

pub fn cr4() -> u64 {
    let v;
    // SAFETY: reading CR4 has no effect.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

pub fn cr2() -> u64 {
    let v;
    // SAFETY: reading CR2 has no effect.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Drops the TLB entry for `va` on this CPU.
pub fn invlpg(va: u64) {
    // SAFETY: flushing a TLB entry only makes the CPU re-read the tables.
    unsafe { asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) };
}

/// Enables interrupts (the IDT is loaded before anything unmasks a source).
pub fn sti() {
    // SAFETY: the IDT has a handler for every vector this kernel unmasks.
    unsafe { asm!("sti", options(nomem, nostack)) };
}

pub fn cli() {
    // SAFETY: disabling interrupts is always sound.
    unsafe { asm!("cli", options(nomem, nostack)) };
}

/// Halts this CPU for good, interrupts off.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: with interrupts off, hlt only waits for NMI/INIT.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

pub fn pause() {
    core::hint::spin_loop();
}

/// # Safety
/// `base` must point at `limit + 1` bytes of gate descriptors that stay
/// valid (and whose handlers stay valid) for as long as this IDT is loaded.
pub unsafe fn lidt(base: u64, limit: u16) {
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let p = Pointer { limit, base };
    // SAFETY: the caller vouches for the table.
    unsafe { asm!("lidt [{}]", in(reg) &p, options(readonly, nostack, preserves_flags)) };
}

/// Reads a 32-bit device register.
///
/// # Safety
/// `pa` must be a 4-byte aligned device register inside the 1:1 map.
pub unsafe fn mmio_read32(pa: u64) -> u32 {
    // SAFETY: the caller vouches for the address; the 1:1 map makes the
    // physical address usable as a pointer.
    unsafe { (pa as *const u32).read_volatile() }
}

/// Writes a 32-bit device register.
///
/// # Safety
/// As [`mmio_read32`], and the write must not break the kernel.
pub unsafe fn mmio_write32(pa: u64, v: u32) {
    // SAFETY: the caller vouches for the address and the value.
    unsafe { (pa as *mut u32).write_volatile(v) }
}
