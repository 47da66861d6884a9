//! Faults a fuzzer survives: each operation here arms a fixup (a resume
//! address the IDT's exception path jumps to instead of stopping the
//! machine, see [`super::idt`]), runs one instruction that may fault, and
//! says which exception it raised, if any. [`exec`] runs a generated
//! instruction stream the same way, on a scratch stack, with every
//! register set by the caller.
//!
//! **Owns**: the fixup state (`bare_fixup_*`, read by the IDT's assembly),
//! the NMI count, the stream trampoline. One CPU only (the BSP): the
//! fixup is global.

use core::arch::{asm, global_asm};
use core::sync::atomic::{compiler_fence, AtomicU64, Ordering};

/// No exception was raised.
pub const NO_FAULT: u64 = u64::MAX;

/// Where the exception path resumes (0: not armed).
#[unsafe(export_name = "bare_fixup_rip")]
static FIXUP_RIP: AtomicU64 = AtomicU64::new(0);
/// The vector of the last recovered exception.
#[unsafe(export_name = "bare_fixup_vector")]
static FIXUP_VECTOR: AtomicU64 = AtomicU64::new(NO_FAULT);
/// Where it was raised (for a trap such as int3: the next instruction).
#[unsafe(export_name = "bare_fixup_fault_rip")]
static FAULT_RIP: AtomicU64 = AtomicU64::new(0);
/// NMIs taken.
#[unsafe(export_name = "bare_nmi_count")]
static NMI_COUNT: AtomicU64 = AtomicU64::new(0);

/// NMIs taken so far.
pub fn nmis() -> u64 {
    NMI_COUNT.load(Ordering::Relaxed)
}

fn arm() {
    FIXUP_VECTOR.store(NO_FAULT, Ordering::Relaxed);
    compiler_fence(Ordering::SeqCst);
}

/// The vector raised since [`arm`] (`None`: none).
fn raised() -> Option<u64> {
    compiler_fence(Ordering::SeqCst);
    match FIXUP_VECTOR.load(Ordering::Relaxed) {
        NO_FAULT => None,
        v => Some(v),
    }
}

/// Runs one instruction (`$insn`) under a fixup; the operands follow.
macro_rules! guarded {
    ($insn:literal, $($op:tt)*) => {{
        arm();
        // SAFETY: the instruction is one of this module's, with operands
        // its caller vouches for; a fault resumes at label 2 with the
        // stack as it was (the IDT's fixup path pops exactly what the CPU
        // and the stub pushed), and outputs are then meaningless but
        // initialised.
        unsafe {
            asm!(
                "lea {t}, [rip + 2f]",
                "mov qword ptr [rip + {f}], {t}",
                $insn,
                "mov qword ptr [rip + {f}], 0",
                "2:",
                t = out(reg) _,
                f = sym FIXUP_RIP,
                $($op)*
            )
        };
        raised()
    }};
}

/// `in` of `size` (1, 2, 4) bytes: the value or the exception's vector.
pub fn port_in(port: u16, size: u8) -> Result<u32, u64> {
    let mut v: u32 = 0;
    let f = match size {
        1 => guarded!("in al, dx", in("dx") port, inout("eax") v),
        2 => guarded!("in ax, dx", in("dx") port, inout("eax") v),
        _ => guarded!("in eax, dx", in("dx") port, inout("eax") v),
    };
    f.map_or(Ok(v), Err)
}

/// `out` of `size` (1, 2, 4) bytes.
///
/// # Safety
/// The port write must not reset the machine, power it off or make a
/// device write memory the kernel uses (no DMA-capable device exists in
/// this guest; the caller skips the reset and power-off ports).
pub unsafe fn port_out(port: u16, size: u8, v: u32) -> Result<(), u64> {
    let f = match size {
        1 => guarded!("out dx, al", in("dx") port, in("eax") v),
        2 => guarded!("out dx, ax", in("dx") port, in("eax") v),
        _ => guarded!("out dx, eax", in("dx") port, in("eax") v),
    };
    f.map_or(Ok(()), Err)
}

/// A read of `size` (1, 2, 4, 8) bytes at `pa`.
///
/// # Safety
/// `pa` is in the 1:1 map's device range (no RAM the kernel uses); a read
/// there has no effect on memory.
pub unsafe fn mmio_read(pa: u64, size: u8) -> Result<u64, u64> {
    let mut v: u64 = 0;
    let f = match size {
        1 => guarded!("movzx {v:e}, byte ptr [{a}]", a = in(reg) pa, v = inout(reg) v),
        2 => guarded!("movzx {v:e}, word ptr [{a}]", a = in(reg) pa, v = inout(reg) v),
        4 => guarded!("mov {v:e}, dword ptr [{a}]", a = in(reg) pa, v = inout(reg) v),
        _ => guarded!("mov {v}, qword ptr [{a}]", a = in(reg) pa, v = inout(reg) v),
    };
    f.map_or(Ok(v), Err)
}

/// A write of `size` (1, 2, 4, 8) bytes at `pa`.
///
/// # Safety
/// As [`mmio_read`], and the write must not stop the guest (INIT to
/// itself and the like).
pub unsafe fn mmio_write(pa: u64, size: u8, v: u64) -> Result<(), u64> {
    let f = match size {
        1 => guarded!("mov byte ptr [{a}], {v:l}", a = in(reg) pa, v = in(reg) v),
        2 => guarded!("mov word ptr [{a}], {v:x}", a = in(reg) pa, v = in(reg) v),
        4 => guarded!("mov dword ptr [{a}], {v:e}", a = in(reg) pa, v = in(reg) v),
        _ => guarded!("mov qword ptr [{a}], {v}", a = in(reg) pa, v = in(reg) v),
    };
    f.map_or(Ok(()), Err)
}

pub fn rdmsr(msr: u32) -> Result<u64, u64> {
    let (mut lo, mut hi): (u32, u32) = (0, 0);
    let f = guarded!("rdmsr", in("ecx") msr, inout("eax") lo, inout("edx") hi);
    f.map_or(Ok(u64::from(hi) << 32 | u64::from(lo)), Err)
}

/// # Safety
/// The value must not break what the kernel relies on (long mode, its
/// page tables, where its APIC is).
pub unsafe fn wrmsr(msr: u32, v: u64) -> Result<(), u64> {
    let f = guarded!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32);
    f.map_or(Ok(()), Err)
}

/// CPUID: EAX, EBX, ECX, EDX, or the vector it raised.
pub fn cpuid(leaf: u32, sub: u32) -> Result<[u32; 4], u64> {
    let (mut a, mut c, mut d) = (leaf, sub, 0u32);
    let mut b: u64 = 0;
    let f = guarded!(
        "mov {s}, rbx\ncpuid\nxchg {s}, rbx",
        s = inout(reg) b,
        inout("eax") a,
        inout("ecx") c,
        inout("edx") d
    );
    f.map_or(Ok([a, b as u32, c, d]), Err)
}

/// A Xen hypercall straight through VMMCALL (or VMCALL), without the
/// hypercall page: RAX = `nr`, RDI, RSI, RDX, R10, R8 = `args`; the
/// return value or the vector raised.
///
/// # Safety
/// The hypercall must not give away or remap memory the kernel uses, and
/// every pointer in `args` must be to scratch memory or none at all.
pub unsafe fn hypercall(nr: u64, args: [u64; 5], vmcall: bool) -> Result<u64, u64> {
    let mut ret = nr;
    let [a0, a1, a2, a3, a4] = args;
    let f = if vmcall {
        guarded!(
            "vmcall",
            inout("rax") ret,
            inout("rdi") a0 => _,
            inout("rsi") a1 => _,
            inout("rdx") a2 => _,
            inout("r10") a3 => _,
            inout("r8") a4 => _,
            out("rcx") _,
            out("r9") _,
            out("r11") _,
        )
    } else {
        guarded!(
            "vmmcall",
            inout("rax") ret,
            inout("rdi") a0 => _,
            inout("rsi") a1 => _,
            inout("rdx") a2 => _,
            inout("r10") a3 => _,
            inout("r8") a4 => _,
            out("rcx") _,
            out("r9") _,
            out("r11") _,
        )
    };
    f.map_or(Ok(ret), Err)
}

/// Registers for [`exec`], in the CPU's numbering (RAX, RCX, RDX, RBX,
/// RSP, RBP, RSI, RDI, R8 ... R15).
pub type Regs = [u64; 16];

unsafe extern "C" {
    fn bare_fuzz_exec(regs: *const Regs, code: u64);
}

/// Runs the code at `code` with `regs` (RSP too) until it raises an
/// exception, which it must (the caller ends it with `int3`); returns the
/// vector and the RIP the exception reported. Interrupts must be off.
///
/// # Safety
/// Whatever the code can do before it faults must not hurt the kernel:
/// every memory operand it can form from `regs` must be device memory or
/// the scratch stack `regs[4]` points into, it must not load state the
/// kernel runs on (GDT, IDT, CR0, segment registers) or transfer control,
/// and `regs[4]` must leave room below it for an exception frame.
pub unsafe fn exec(regs: &Regs, code: u64) -> (u64, u64) {
    arm();
    // SAFETY: the caller vouches for the code and registers; the
    // trampoline saves and restores every callee-saved register and the
    // stack pointer, and it always comes back through the fixup.
    unsafe { bare_fuzz_exec(regs, code) };
    (
        raised().unwrap_or(NO_FAULT),
        FAULT_RIP.load(Ordering::Relaxed),
    )
}

global_asm!(
    r#"
    .section .data.bare_fuzz, "aw"
    .balign 8
bare_fuzz_saved_rsp:
    .quad 0
bare_fuzz_target:
    .quad 0

    .section .text.bare_fuzz, "ax"
    .global bare_fuzz_exec
bare_fuzz_exec:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, bare_fuzz_saved_rsp(%rip)
    lea bare_fuzz_back(%rip), %rax
    mov %rax, bare_fixup_rip(%rip)
    mov %rsi, bare_fuzz_target(%rip)
    mov 0(%rdi), %rax
    mov 8(%rdi), %rcx
    mov 16(%rdi), %rdx
    mov 24(%rdi), %rbx
    mov 32(%rdi), %rsp
    mov 40(%rdi), %rbp
    mov 48(%rdi), %rsi
    mov 64(%rdi), %r8
    mov 72(%rdi), %r9
    mov 80(%rdi), %r10
    mov 88(%rdi), %r11
    mov 96(%rdi), %r12
    mov 104(%rdi), %r13
    mov 112(%rdi), %r14
    mov 120(%rdi), %r15
    mov 56(%rdi), %rdi
    jmp *bare_fuzz_target(%rip)
bare_fuzz_back:
    mov bare_fuzz_saved_rsp(%rip), %rsp
    cld
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret
    "#,
    options(att_syntax)
);
