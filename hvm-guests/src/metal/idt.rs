//! The IDT: the 32 exception vectors report the fault and stop the
//! machine (an exception in a test kernel is a FAILED check, never a
//! hang) unless [`super::trap`] armed a fixup, in which case the fault is
//! recorded and the CPU resumes at the fixup; an NMI is counted and
//! returns; the LAPIC timer vector counts ticks and sends EOI; the spurious
//! vector returns. Every other vector is not present, so a stray interrupt
//! surfaces as #NP with its vector in the error code.
//!
//! The stubs are assembly; the handlers are Rust with the C ABI. No SSE is
//! used (the target is soft-float), so only the general registers the C
//! ABI lets a callee clobber are saved.

use super::cpu::{self, lidt};
use core::arch::global_asm;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, Ordering};

/// The LAPIC timer's vector.
pub const TIMER_VECTOR: u8 = 0x40;
/// The LAPIC's spurious-interrupt vector.
pub const SPURIOUS_VECTOR: u8 = 0xff;
/// The kernel's 64-bit code selector (the boot GDT's).
const CODE64: u16 = 0x08;
/// Present, DPL 0, 64-bit interrupt gate.
const GATE_INTERRUPT: u8 = 0x8e;

/// LAPIC timer interrupts taken (on any CPU).
pub static TICKS: AtomicU32 = AtomicU32::new(0);

#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_lo: u16,
    selector: u16,
    ist: u8,
    attr: u8,
    offset_mid: u16,
    offset_hi: u32,
    reserved: u32,
}

impl Gate {
    const ABSENT: Gate = Gate {
        offset_lo: 0,
        selector: 0,
        ist: 0,
        attr: 0,
        offset_mid: 0,
        offset_hi: 0,
        reserved: 0,
    };

    fn interrupt(handler: u64) -> Gate {
        Gate {
            offset_lo: handler as u16,
            selector: CODE64,
            ist: 0,
            attr: GATE_INTERRUPT,
            offset_mid: (handler >> 16) as u16,
            offset_hi: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Table(UnsafeCell<[Gate; 256]>);

// SAFETY: the BSP fills the table once in `init`, before interrupts are
// enabled and before another CPU runs; afterwards it is only read (by the
// CPUs, through IDTR).
unsafe impl Sync for Table {}

static IDT: Table = Table(UnsafeCell::new([Gate::ABSENT; 256]));

unsafe extern "C" {
    /// The 32 exception stubs' addresses, in vector order.
    static bare_exc_stubs: [u64; 32];
    fn bare_timer_stub();
    fn bare_spurious_stub();
}

/// Fills the IDT. BSP only, once, with interrupts off.
pub fn init() {
    let gates = IDT.0.get();
    // SAFETY: `bare_exc_stubs` is a table of 32 addresses in .rodata,
    // written by the assembler; reading it has no side effect.
    let stubs = unsafe { &bare_exc_stubs };
    // SAFETY: no other CPU runs and interrupts are off (see `Sync` above),
    // so nothing else reads or writes the table now.
    let gates = unsafe { &mut *gates };
    for (v, &stub) in stubs.iter().enumerate() {
        gates[v] = Gate::interrupt(stub);
    }
    gates[usize::from(TIMER_VECTOR)] = Gate::interrupt(bare_timer_stub as *const () as u64);
    gates[usize::from(SPURIOUS_VECTOR)] = Gate::interrupt(bare_spurious_stub as *const () as u64);
}

/// Loads the IDT on this CPU.
pub fn load() {
    // SAFETY: the table is static and its stubs are in the kernel's text;
    // both live forever.
    unsafe {
        lidt(
            IDT.0.get() as u64,
            (core::mem::size_of::<[Gate; 256]>() - 1) as u16,
        )
    };
}

/// What the exception stubs push, from the stack pointer up.
#[repr(C)]
pub struct ExceptionFrame {
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const EXCEPTION_NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved 15",
    "#MF x87 error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD error",
    "#VE virtualization exception",
    "#CP control protection",
    "reserved 22",
    "reserved 23",
    "reserved 24",
    "reserved 25",
    "reserved 26",
    "reserved 27",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security exception",
    "reserved 31",
];

/// Reports an exception as a failed check and powers off.
#[unsafe(no_mangle)]
extern "C" fn bare_exception(f: &ExceptionFrame) -> ! {
    let name = EXCEPTION_NAMES
        .get(f.vector as usize)
        .copied()
        .unwrap_or("?");
    let cr2 = if f.vector == 14 { cpu::cr2() } else { 0 };
    super::serial::emergency(format_args!(
        "bare: exception: FAILED vector {} ({name}) error {:#x} at rip {:#x} rsp {:#x} cr2 {cr2:#x} on APIC ID {}\n\
         bare: checks FAILED (unexpected exception)\n",
        f.vector,
        f.error,
        f.rip,
        f.rsp,
        super::lapic::id()
    ));
    super::power::power_off()
}

/// The LAPIC timer's handler.
#[unsafe(no_mangle)]
extern "C" fn bare_timer_interrupt() {
    TICKS.fetch_add(1, Ordering::Relaxed);
    super::lapic::eoi();
}

global_asm!(
    r#"
    .section .text.bare_idt, "ax"
    .code64
    .macro EXC_STUB n, has_error
    .balign 16
bare_exc_\n:
    .if \has_error == 0
    push $0
    .endif
    push $\n
    jmp bare_exc_common
    .endm

    EXC_STUB 0, 0
    EXC_STUB 1, 0
    /* NMI: counted, then back to whatever it interrupted. */
    .balign 16
bare_exc_2:
    lock incq bare_nmi_count(%rip)
    iretq
    EXC_STUB 3, 0
    EXC_STUB 4, 0
    EXC_STUB 5, 0
    EXC_STUB 6, 0
    EXC_STUB 7, 0
    EXC_STUB 8, 1
    EXC_STUB 9, 0
    EXC_STUB 10, 1
    EXC_STUB 11, 1
    EXC_STUB 12, 1
    EXC_STUB 13, 1
    EXC_STUB 14, 1
    EXC_STUB 15, 0
    EXC_STUB 16, 0
    EXC_STUB 17, 1
    EXC_STUB 18, 0
    EXC_STUB 19, 0
    EXC_STUB 20, 0
    EXC_STUB 21, 1
    EXC_STUB 22, 0
    EXC_STUB 23, 0
    EXC_STUB 24, 0
    EXC_STUB 25, 0
    EXC_STUB 26, 0
    EXC_STUB 27, 0
    EXC_STUB 28, 0
    EXC_STUB 29, 1
    EXC_STUB 30, 1
    EXC_STUB 31, 0

    /* A fault where trap.rs armed a fixup: record the vector and the
       faulting RIP, disarm, and return to the fixup (stack: vector,
       error, then the CPU's frame). */
bare_exc_common:
    cmpq $0, bare_fixup_rip(%rip)
    je 1f
    push %rax
    mov 8(%rsp), %rax
    mov %rax, bare_fixup_vector(%rip)
    mov 24(%rsp), %rax
    mov %rax, bare_fixup_fault_rip(%rip)
    mov bare_fixup_rip(%rip), %rax
    mov %rax, 24(%rsp)
    movq $0, bare_fixup_rip(%rip)
    pop %rax
    add $16, %rsp
    iretq
1:
    mov %rsp, %rdi
    and $-16, %rsp
    call bare_exception
    ud2

    /* The CPU pushed 5 words onto a 16-byte aligned stack; 9 more leave it
       aligned for the call. */
    .balign 16
    .global bare_timer_stub
bare_timer_stub:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    cld
    call bare_timer_interrupt
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    iretq

    /* Spurious interrupts get no EOI (SDM 11.9). */
    .balign 16
    .global bare_spurious_stub
bare_spurious_stub:
    iretq

    .section .rodata.bare_idt, "a"
    .balign 8
    .global bare_exc_stubs
bare_exc_stubs:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad bare_exc_\n
    .endr
    "#,
    options(att_syntax)
);
