//! The assembly entry and exit paths: exception/interrupt stubs, the PV
//! `syscall` entry (hypercalls), and the return to a guest.
//!
//! Every path builds the same `TrapFrame` on the hypervisor stack and hands a
//! pointer to Rust; every return pops it and leaves with `iretq`, except a
//! hypercall's plain return, which leaves with `sysretq` where that is the
//! same (`xen_core::sysret`), as Xen's does.

use core::arch::global_asm;

/// Saved registers, in the order the entry paths push them (lowest address
/// first). The general-purpose part matches Xen's `cpu_user_regs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// Interrupt vector, or `VECTOR_SYSCALL` for a guest `syscall`.
    pub vector: u64,
    /// Hardware error code (0 where the exception has none).
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Size of a `TrapFrame` (checked against the assembly).
pub const TRAP_FRAME_SIZE: u64 = 22 * 8;
const _: () = assert!(core::mem::size_of::<TrapFrame>() as u64 == TRAP_FRAME_SIZE);

/// `vector` value of a frame built by the syscall entry (Xen's TRAP_syscall).
pub const VECTOR_SYSCALL: u64 = 0x100;

impl TrapFrame {
    /// Whether the frame was taken from ring 3 (a PV guest).
    pub fn is_from_guest(&self) -> bool {
        self.cs & 3 == 3
    }
}

extern "C" {
    /// Table of the 256 interrupt stub addresses, indexed by vector.
    pub static isr_stub_table: [u64; 256];
    /// The `syscall` entry point (MSR_LSTAR).
    pub fn syscall_entry();
    /// Pops the `TrapFrame` at `rsp` and returns through `iretq`.
    pub fn return_to_frame() -> !;
}

global_asm!(
    r#"
    .altmacro
    .macro ISR_STUB vec
    .balign 16
    isr_stub_\vec:
    .if (\vec == 8) || (\vec == 10) || (\vec == 11) || (\vec == 12) || (\vec == 13) || (\vec == 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
    .else
        push $0
    .endif
        push $\vec
        jmp isr_common
    .endm

    .macro ISR_ADDR vec
        .quad isr_stub_\vec
    .endm

    .section .text
    .set v, 0
    .rept 256
    ISR_STUB %v
    .set v, v + 1
    .endr

    .macro PUSH_GPRS
        push %rdi
        push %rsi
        push %rdx
        push %rcx
        push %rax
        push %r8
        push %r9
        push %r10
        push %r11
        push %rbx
        push %rbp
        push %r12
        push %r13
        push %r14
        push %r15
    .endm

    .macro POP_GPRS
        pop %r15
        pop %r14
        pop %r13
        pop %r12
        pop %rbp
        pop %rbx
        pop %r11
        pop %r10
        pop %r9
        pop %r8
        pop %rax
        pop %rcx
        pop %rdx
        pop %rsi
        pop %rdi
    .endm

isr_common:
    PUSH_GPRS
    cld
    mov %rsp, %rdi
    call trap_dispatch
    .global return_to_frame
return_to_frame:
    POP_GPRS
    add $16, %rsp
    iretq

    /* PV guest `syscall`: rcx = guest rip, r11 = guest rflags, rsp = guest's.
       Interrupts are masked by MSR_FMASK. Build a TrapFrame on our stack. */
    .global syscall_entry
syscall_entry:
    swapgs
    mov %rsp, %gs:0
    mov %gs:8, %rsp
    push $0xe02b
    push %gs:0
    swapgs
    push %r11
    push $0xe033
    push %rcx
    push $0
    push ${vector_syscall}
    PUSH_GPRS
    cld
    mov %rsp, %rdi
    call pv_syscall_dispatch
    test %rax, %rax
    jz return_to_frame
    /* The frame passed xen_core::sysret::may_sysret: rcx = rip and
       r11 = rflags, flat ring-3 selectors, canonical rip. Interrupts off
       from here: the next instructions run on the guest's stack (NMI and
       #MC have IST stacks). */
    cli
    POP_GPRS
    mov 40(%rsp), %rsp
    sysretq

    .section .rodata
    .balign 8
    .global isr_stub_table
isr_stub_table:
    .set v, 0
    .rept 256
    ISR_ADDR %v
    .set v, v + 1
    .endr
    .noaltmacro
    "#,
    vector_syscall = const VECTOR_SYSCALL,
    options(att_syntax)
);

/// Switches to `frame` (which must sit on this CPU's stack at its top) and
/// returns to the context it describes.
///
/// # Safety
/// `frame` must hold a consistent context: for a guest, selectors and flags
/// sanitised by the caller.
pub unsafe fn enter_frame(frame: *const TrapFrame) -> ! {
    // SAFETY: per the contract; `return_to_frame` pops exactly one TrapFrame.
    unsafe {
        core::arch::asm!(
            "mov rsp, {f}",
            "jmp {ret}",
            f = in(reg) frame,
            ret = sym return_to_frame,
            options(noreturn)
        )
    }
}
