//! Every privileged instruction xen-core uses, wrapped once.
//!
//! Each wrapper states what it touches; callers stay in safe Rust where the
//! instruction cannot break memory safety (port I/O to devices we own, reading
//! MSRs and control registers) and `unsafe` where it can (writes to CR3, MSRs,
//! descriptor tables).

use core::arch::asm;

/// Reads a byte from an I/O port.
pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: port reads have no memory effects visible to Rust; xen-core only
    // reads ports of devices it owns (UART, PIT, CMOS).
    unsafe {
        asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Reads a 16-bit value from an I/O port.
pub fn inw(port: u16) -> u16 {
    let v: u16;
    // SAFETY: as for `inb` (also used for ports the PV emulator checked the
    // domain may access).
    unsafe {
        asm!("in ax, dx", out("ax") v, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Reads a 32-bit value from an I/O port.
pub fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as for `inw`.
    unsafe {
        asm!("in eax, dx", out("eax") v, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Writes a byte to an I/O port.
pub fn outb(port: u16, v: u8) {
    // SAFETY: port writes go to devices xen-core owns (UART, PIT, PIC, debug
    // exit); none of them can DMA into memory Rust relies on.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    };
}

/// Writes a 16-bit value to an I/O port.
pub fn outw(port: u16, v: u16) {
    // SAFETY: as for `outb` (used for the ACPI PM1a control register).
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack, preserves_flags))
    };
}

/// Writes a 32-bit value to an I/O port.
pub fn outl(port: u16, v: u32) {
    // SAFETY: as for `outb`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags))
    };
}

/// Reads a model-specific register.
pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reading an MSR has no memory effects; callers only name MSRs
    // that exist on every x86_64 CPU or that they checked with CPUID.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes a model-specific register.
///
/// # Safety
/// The MSR must exist and the value must not break invariants xen-core relies
/// on (e.g. EFER.LME, the syscall entry points, the GS bases).
pub unsafe fn wrmsr(msr: u32, v: u64) {
    // SAFETY: the caller upholds the function's contract.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32,
             options(nostack, preserves_flags))
    };
}

// `rdmsr`/`wrmsr` that may fault: the #GP handler sees the faulting RIP at
// `oxen_*msr_safe_insn` and resumes at the matching fixup, which reports
// the failure (Xen's `rdmsr_safe`/`wrmsr_safe` with an exception-table
// entry).
core::arch::global_asm!(
    r#"
    .section .text.msr_safe, "ax"
    .global oxen_rdmsr_safe
    .global oxen_rdmsr_safe_insn
    .global oxen_rdmsr_safe_fixup
    .global oxen_wrmsr_safe
    .global oxen_wrmsr_safe_insn
    .global oxen_wrmsr_safe_fixup
oxen_rdmsr_safe:
    mov ecx, edi
oxen_rdmsr_safe_insn:
    rdmsr
    shl rdx, 32
    mov eax, eax
    or rax, rdx
    mov [rsi], rax
    xor eax, eax
    ret
oxen_rdmsr_safe_fixup:
    mov eax, 1
    ret
oxen_wrmsr_safe:
    mov ecx, edi
    mov eax, esi
    mov rdx, rsi
    shr rdx, 32
oxen_wrmsr_safe_insn:
    wrmsr
    xor eax, eax
    ret
oxen_wrmsr_safe_fixup:
    mov eax, 1
    ret
    /* oxen_guest_copy8/4(dst, src): one 8- or 4-byte move (Xen's
       get_user/put_user: a hypercall's small argument).
       oxen_guest_copy(dst, src, len): 32 bytes a round, then at most one
       step each of 16, 8 and 4 bytes, then the last bytes one by one: no
       `rep movs`, which an emulator runs one element per step, and few
       branches (a bounce frame or an iret context is a round or two and
       a step or two).
       All copy through the loaded page tables and return 0, or 1 if an
       access faulted: a #PF/#GP anywhere in [oxen_guest_copy8,
       oxen_guest_copy_end) resumes at oxen_guest_copy_fixup, and nothing
       in that range touches the stack. */
    .global oxen_guest_copy8
    .global oxen_guest_copy4
    .global oxen_guest_copy
    .global oxen_guest_copy_end
    .global oxen_guest_copy_fixup
oxen_guest_copy8:
    mov rax, [rsi]
    mov [rdi], rax
    jmp oxen_guest_copy_end
oxen_guest_copy4:
    mov eax, [rsi]
    mov [rdi], eax
    jmp oxen_guest_copy_end
oxen_guest_copy:
    cmp rdx, 32
    jb 2f
1:
    mov rax, [rsi]
    mov rcx, [rsi + 8]
    mov r8, [rsi + 16]
    mov r9, [rsi + 24]
    mov [rdi], rax
    mov [rdi + 8], rcx
    mov [rdi + 16], r8
    mov [rdi + 24], r9
    add rsi, 32
    add rdi, 32
    sub rdx, 32
    cmp rdx, 32
    jae 1b
2:
    test dl, 16
    jz 3f
    mov rax, [rsi]
    mov rcx, [rsi + 8]
    mov [rdi], rax
    mov [rdi + 8], rcx
    add rsi, 16
    add rdi, 16
3:
    test dl, 8
    jz 7f
    mov rax, [rsi]
    mov [rdi], rax
    add rsi, 8
    add rdi, 8
7:
    test dl, 4
    jz 4f
    mov eax, [rsi]
    mov [rdi], eax
    add rsi, 4
    add rdi, 4
4:
    and edx, 3
    jz 6f
5:
    mov al, [rsi]
    mov [rdi], al
    inc rsi
    inc rdi
    dec edx
    jnz 5b
6:
oxen_guest_copy_end:
    xor eax, eax
    ret
oxen_guest_copy_fixup:
    mov eax, 1
    ret
    .global oxen_fixup_selftest
    .global oxen_fixup_selftest_insn
    .global oxen_fixup_selftest_fixup
oxen_fixup_selftest:
    xor eax, eax
oxen_fixup_selftest_insn:
    mov rdi, [rdi]
    ret
oxen_fixup_selftest_fixup:
    mov eax, 1
    ret
    .text
"#
);

extern "C" {
    /// `rdmsr` of `msr` into `*out`; returns 0, or 1 if it faulted.
    fn oxen_rdmsr_safe(msr: u32, out: *mut u64) -> u32;
    /// `wrmsr` of `val` to `msr`; returns 0, or 1 if it faulted.
    fn oxen_wrmsr_safe(msr: u32, val: u64) -> u32;
    static oxen_rdmsr_safe_insn: u8;
    static oxen_rdmsr_safe_fixup: u8;
    static oxen_wrmsr_safe_insn: u8;
    static oxen_wrmsr_safe_fixup: u8;
    /// Loads from `addr` at a fixed-up instruction: returns 1 if it faulted.
    fn oxen_fixup_selftest(addr: u64) -> u32;
    fn oxen_guest_copy(dst: *mut u8, src: *const u8, len: usize) -> u32;
    fn oxen_guest_copy8(dst: *mut u8, src: *const u8) -> u32;
    fn oxen_guest_copy4(dst: *mut u8, src: *const u8) -> u32;
    static oxen_guest_copy_end: u8;
    static oxen_guest_copy_fixup: u8;
    static oxen_fixup_selftest_insn: u8;
    static oxen_fixup_selftest_fixup: u8;
}

/// Checks that the exception fixups work (the `*msr_safe` wrappers rely on
/// them, and QEMU's TCG never faults on an unknown MSR): a load from a
/// non-canonical address must come back as a fault, not stop the machine.
pub fn exception_fixup_selftest() -> bool {
    // SAFETY: the load's #GP (non-canonical address) resumes at the fixup
    // with the same stack; nothing is written.
    unsafe { oxen_fixup_selftest(0x8000_0000_0000_0000) == 1 }
}

/// Checks [`guest_copy`]'s arithmetic (rounds of 32, steps of 16, 8, 4
/// and the last bytes) on xen-core's own memory: every length from 0 to
/// 100 at every source and destination misalignment 0..8 copies exactly
/// its bytes and nothing beyond them.
pub fn guest_copy_selftest() -> bool {
    let mut src = [0u8; 112];
    for (i, b) in src.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(1);
    }
    for len in 0..=100usize {
        for (so, d_o) in [(0, 0), (1, 3), (3, 0), (7, 5), (0, 7)] {
            let mut dst = [0xeeu8; 112];
            // SAFETY: both buffers are ours, on this stack, and hold
            // offset + len bytes (at most 107 of 112); nothing faults.
            let ok = unsafe { guest_copy(dst.as_mut_ptr().add(d_o), src.as_ptr().add(so), len) };
            if !ok
                || dst[d_o..d_o + len] != src[so..so + len]
                || dst[..d_o]
                    .iter()
                    .chain(&dst[d_o + len..])
                    .any(|&b| b != 0xee)
            {
                return false;
            }
        }
    }
    true
}

/// Reads an MSR that may not exist: `None` if the CPU refused (#GP).
pub fn rdmsr_safe(msr: u32) -> Option<u64> {
    let mut v = 0u64;
    // SAFETY: reading an MSR has no memory effects; a #GP on the rdmsr is
    // turned into a return of 1 by `exception_fixup` (the handler resumes
    // at the fixup with the same stack); `v` is a valid u64 to write.
    let failed = unsafe { oxen_rdmsr_safe(msr, &mut v) };
    (failed == 0).then_some(v)
}

/// Writes an MSR that may not exist or may refuse the value: false if the
/// CPU refused (#GP).
///
/// # Safety
/// As [`wrmsr`]: if the write succeeds it must not break xen-core's
/// invariants.
pub unsafe fn wrmsr_safe(msr: u32, val: u64) -> bool {
    // SAFETY: the caller upholds the contract; a #GP is fixed up as for
    // `rdmsr_safe`.
    unsafe { oxen_wrmsr_safe(msr, val) == 0 }
}

/// Copies `len` bytes from `src` to `dst` through the page tables loaded
/// now, one of which is a PV guest's address (the guest's own mappings,
/// with their permissions: a write to a read-only page faults as the guest
/// would). False if an access faulted (#PF or #GP), part of the bytes
/// possibly copied.
///
/// # Safety
/// Of `src` and `dst`, the side in xen-core's memory must be valid for
/// `len` bytes; the guest side must lie wholly in the guest's part of the
/// address space (canonical, outside the hypervisor's range), so that
/// nothing of xen-core's is reached through it, and the loaded CR3 must be
/// the guest's.
#[inline]
pub unsafe fn guest_copy(dst: *mut u8, src: *const u8, len: usize) -> bool {
    // SAFETY: per the contract; a fault on a guest access resumes at the
    // fixup (see `guest_copy_fixup`) with the stack as it was.
    unsafe {
        match len {
            8 => oxen_guest_copy8(dst, src) == 0,
            4 => oxen_guest_copy4(dst, src) == 0,
            _ => oxen_guest_copy(dst, src, len) == 0,
        }
    }
}

/// Where xen-core resumes after a page fault at `rip`, if that
/// instruction is in [`guest_copy`]'s copying part (whose only memory
/// accesses are the copy's own; none touches the stack).
pub fn guest_copy_fixup(rip: u64) -> Option<u64> {
    let start = oxen_guest_copy8 as *const () as u64;
    let end = core::ptr::addr_of!(oxen_guest_copy_end) as u64;
    (start..end)
        .contains(&rip)
        .then_some(core::ptr::addr_of!(oxen_guest_copy_fixup) as u64)
}

/// Where xen-core resumes after a fault at `rip` in its own code, if that
/// instruction expects to fault (the `*msr_safe` wrappers).
pub fn exception_fixup(rip: u64) -> Option<u64> {
    // Only the addresses of the assembly labels are taken, never read.
    let (ri, rf, wi, wf) = (
        core::ptr::addr_of!(oxen_rdmsr_safe_insn) as u64,
        core::ptr::addr_of!(oxen_rdmsr_safe_fixup) as u64,
        core::ptr::addr_of!(oxen_wrmsr_safe_insn) as u64,
        core::ptr::addr_of!(oxen_wrmsr_safe_fixup) as u64,
    );
    let (ti, tf) = (
        core::ptr::addr_of!(oxen_fixup_selftest_insn) as u64,
        core::ptr::addr_of!(oxen_fixup_selftest_fixup) as u64,
    );
    if rip == ri {
        Some(rf)
    } else if rip == wi {
        Some(wf)
    } else if rip == ti {
        Some(tf)
    } else {
        None
    }
}

/// Result of one CPUID leaf.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuidResult {
    /// EAX output.
    pub eax: u32,
    /// EBX output.
    pub ebx: u32,
    /// ECX output.
    pub ecx: u32,
    /// EDX output.
    pub edx: u32,
}

/// Executes CPUID for `leaf`/`subleaf`.
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    CpuidResult {
        eax: r.eax,
        ebx: r.ebx,
        ecx: r.ecx,
        edx: r.edx,
    }
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads a counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Reads CR0.
pub fn read_cr0() -> u64 {
    let v;
    // SAFETY: reading a control register has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads CR2 (the faulting address of the last page fault).
pub fn read_cr2() -> u64 {
    let v;
    // SAFETY: reading a control register has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads CR3.
pub fn read_cr3() -> u64 {
    let v;
    // SAFETY: reading a control register has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads CR4.
pub fn read_cr4() -> u64 {
    let v;
    // SAFETY: reading a control register has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Loads CR3.
///
/// # Safety
/// `v` must name a valid L4 table that maps xen-core (text, stacks, data) at
/// the addresses it runs at.
pub unsafe fn write_cr3(v: u64) {
    // SAFETY: the caller upholds the function's contract.
    unsafe { asm!("mov cr3, {}", in(reg) v, options(nostack, preserves_flags)) };
}

/// Loads CR4.
///
/// # Safety
/// The new value must keep PAE on and only enable features the CPU has.
pub unsafe fn write_cr4(v: u64) {
    // SAFETY: the caller upholds the function's contract.
    unsafe { asm!("mov cr4, {}", in(reg) v, options(nostack, preserves_flags)) };
}

/// Loads CR0.
///
/// # Safety
/// The new value must keep protected mode, paging and write protection
/// on, and change only bits whose effects the caller accounts for.
pub unsafe fn write_cr0(v: u64) {
    // SAFETY: the caller upholds the function's contract.
    unsafe { asm!("mov cr0, {}", in(reg) v, options(nostack, preserves_flags)) };
}

/// CR0.TS: the next x87/SSE instruction raises #NM.
pub const CR0_TS: u64 = 1 << 3;

/// Clears CR0.TS.
pub fn clts() {
    // SAFETY: clearing TS only re-enables x87/SSE instructions.
    unsafe { asm!("clts", options(nomem, nostack, preserves_flags)) };
}

/// Sets CR0.TS.
pub fn stts() {
    let v = read_cr0() | CR0_TS;
    // SAFETY: setting TS only makes x87/SSE instructions trap (#NM); xen-core
    // itself uses SSE only with TS clear (it clears TS first).
    unsafe { asm!("mov cr0, {}", in(reg) v, options(nostack, preserves_flags)) };
}

/// Saves the x87/SSE state to `area` (512 bytes, 16-byte aligned).
pub fn fxsave(area: &mut [u8; 512]) {
    clts();
    // SAFETY: `area` is a writable 512-byte buffer; callers use 16-byte
    // aligned storage (FpuArea).
    unsafe { asm!("fxsave64 [{}]", in(reg) area.as_mut_ptr(), options(nostack, preserves_flags)) };
}

/// Loads the x87/SSE state from `area`.
pub fn fxrstor(area: &[u8; 512]) {
    clts();
    let mut a = *area;
    // Reserved MXCSR bits would #GP in xen-core: keep only the defined ones.
    let mxcsr = u32::from_le_bytes([a[24], a[25], a[26], a[27]]) & 0xffff;
    a[24..28].copy_from_slice(&mxcsr.to_le_bytes());
    // 16-byte alignment by hand: it must not depend on how aligned the
    // stack happens to be on this path.
    let mut buf = [0u8; 512 + 16];
    let off = buf.as_ptr().align_offset(16);
    buf[off..off + 512].copy_from_slice(&a);
    // SAFETY: `buf[off..]` is a 16-byte aligned FXSAVE image with a valid
    // MXCSR, inside `buf`.
    unsafe {
        asm!("fxrstor64 [{}]", in(reg) buf[off..].as_ptr(), options(nostack, preserves_flags))
    };
}

/// Resets the x87/SSE state (FNINIT and a default MXCSR).
pub fn fpu_init() {
    clts();
    let mxcsr: u32 = 0x1f80;
    // SAFETY: FNINIT and LDMXCSR with the architectural default value.
    unsafe { asm!("fninit", "ldmxcsr [{}]", in(reg) &mxcsr, options(nostack, preserves_flags)) };
}

/// Writes debug register `n` (0..=3, 6 or 7).
///
/// # Safety
/// DR7 must not enable breakpoints on xen-core's own addresses.
pub unsafe fn write_dr(n: usize, v: u64) {
    // SAFETY: per the contract.
    unsafe {
        match n {
            0 => asm!("mov dr0, {}", in(reg) v, options(nostack, preserves_flags)),
            1 => asm!("mov dr1, {}", in(reg) v, options(nostack, preserves_flags)),
            2 => asm!("mov dr2, {}", in(reg) v, options(nostack, preserves_flags)),
            3 => asm!("mov dr3, {}", in(reg) v, options(nostack, preserves_flags)),
            6 => asm!("mov dr6, {}", in(reg) v, options(nostack, preserves_flags)),
            7 => asm!("mov dr7, {}", in(reg) v, options(nostack, preserves_flags)),
            _ => {}
        }
    }
}

/// Reads DR6 (debug status).
pub fn read_dr6() -> u64 {
    let v;
    // SAFETY: reads a register.
    unsafe { asm!("mov {}, dr6", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Flushes this CPU's whole TLB, global entries included, with one
/// INVPCID (type 2, every context).
pub fn invpcid_flush_all() {
    let desc = [0u64; 2];
    // SAFETY: INVPCID type 2 (every PCID, global translations included)
    // only drops TLB entries; the descriptor is readable and ignored for
    // this type. Callers check CPUID.(7,0):EBX.INVPCID first.
    unsafe {
        core::arch::asm!("invpcid {t}, [{d}]", t = in(reg) 2u64, d = in(reg) desc.as_ptr(),
            options(nostack, preserves_flags))
    };
}

/// Invalidates the TLB entry for one linear address.
pub fn invlpg(va: u64) {
    // SAFETY: dropping a TLB entry never breaks memory safety.
    unsafe { asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) };
}

/// Writes back and invalidates the caches.
pub fn wbinvd() {
    // SAFETY: flushing caches has no effect on memory contents.
    unsafe { asm!("wbinvd", options(nostack, preserves_flags)) };
}

/// Halts until the next interrupt.
pub fn hlt() {
    // SAFETY: HLT only waits for an interrupt.
    unsafe { asm!("hlt", options(nomem, nostack, preserves_flags)) };
}

/// Enables interrupts and halts atomically (the `sti; hlt` shadow).
pub fn sti_hlt() {
    // SAFETY: enabling interrupts is safe once the IDT is loaded (callers do
    // this only after `traps::init`).
    unsafe { asm!("sti; hlt", options(nomem, nostack)) };
}

/// Lets pending interrupts in (`sti; nop` takes any that wait) and masks
/// them again.
pub fn sti_nop_cli() {
    // SAFETY: as in `sti_hlt`; interrupt handlers return here.
    unsafe { asm!("sti", "nop", "cli", options(nomem, nostack)) };
}

/// Disables interrupts.
pub fn cli() {
    // SAFETY: masking interrupts cannot break memory safety.
    unsafe { asm!("cli", options(nomem, nostack)) };
}

/// Current stack pointer.
pub fn read_rsp() -> u64 {
    let v;
    // SAFETY: reads a register.
    unsafe { asm!("mov {}, rsp", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Model-specific register numbers xen-core uses (Intel SDM vol 4).
#[allow(dead_code)] // a table of the architecture's names, not all used yet
pub mod msr {
    /// Extended feature enable register.
    pub const EFER: u32 = 0xc000_0080;
    /// SYSCALL selectors.
    pub const STAR: u32 = 0xc000_0081;
    /// SYSCALL 64-bit entry point.
    pub const LSTAR: u32 = 0xc000_0082;
    /// SYSCALL compatibility-mode entry point.
    pub const CSTAR: u32 = 0xc000_0083;
    /// RFLAGS bits cleared on SYSCALL.
    pub const FMASK: u32 = 0xc000_0084;
    /// FS base.
    pub const FS_BASE: u32 = 0xc000_0100;
    /// GS base.
    pub const GS_BASE: u32 = 0xc000_0101;
    /// The base SWAPGS exchanges with GS base; xen-core keeps its per-CPU
    /// pointer here while a PV guest runs.
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
    /// Local APIC base.
    pub const APIC_BASE: u32 = 0x1b;
    /// EFER.SCE: SYSCALL enable.
    pub const EFER_SCE: u64 = 1 << 0;
    /// EFER.NXE: no-execute enable.
    pub const EFER_NXE: u64 = 1 << 11;
}
