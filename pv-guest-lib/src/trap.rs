//! Traps, events and system calls: the entry layer.
//!
//! # What Xen delivers (x86_64 PV, `public/arch-x86/xen-x86_64.h`)
//!
//! Every guest-kernel entry (exception, event upcall, `syscall` from guest
//! user mode) gets a *bounce frame* on the kernel stack, lowest address
//! first:
//!
//! ```text
//! rcx, r11, [error code], rip, cs | saved_upcall_mask << 32, rflags, rsp, ss
//! ```
//!
//! (the error code only for vectors 8, 10-14, 17, 21, 29, 30). `rcx` and
//! `r11` are the interrupted context's values (Xen clobbers the registers).
//! `cs` has its RPL cleared (`0xe030`) when the interrupted context was the
//! guest kernel, and is `0xe033` for guest user mode; from user mode Xen has
//! also switched to the kernel page tables and to the `stack_switch` stack.
//! The failsafe callback gets `rcx, r11, ds, es, fs, gs, rip, cs, rflags,
//! rsp, ss`.
//!
//! # What the stubs do
//!
//! Each stub pops `rcx`/`r11` back into their registers, pushes a dummy
//! error code where the CPU has none and the vector number, saves every
//! general-purpose register and calls [`pv_trap_dispatch`] with a
//! [`TrapFrame`]. Handlers may change any field (e.g. `rip` to skip an
//! instruction). The way back is the `iret` hypercall, exactly as Linux's
//! `xen_iret` and mini-os do it: restore the registers, leave `flags`
//! (`VGCF_in_syscall` or 0) on top of `rip, cs, rflags, rsp, ss` and jump to
//! the hypercall page's `iret` slot, which pushes `rcx, r11, rax` to
//! complete Xen's `struct iret_context`. Xen restores the event mask from
//! `rflags.IF` and, if `cs & 3 == 3`, switches to guest user mode.
//!
//! # Registration
//!
//! [`install`] registers the virtual IDT (`set_trap_table`: vectors 3 and 4
//! with DPL 3 so `int3`/`into` work, every vector masking events on entry)
//! and the event, failsafe and syscall callbacks (`callback_op`, syscall and
//! failsafe with `CALLBACKF_mask_events`; the event callback always masks).
//! Handlers are plain functions: [`set_handler`].

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::abi::arch_x86::{TrapInfo, FLAT_KERNEL_CS, TI_IF_FLAG, VGCF_IN_SYSCALL};
use crate::abi::callback::{CallbackType, CALLBACKF_MASK_EVENTS};
use crate::error::Errno;

/// Exception vectors with a hardware error code.
pub const VECTORS_WITH_ERROR_CODE: [u8; 10] = [8, 10, 11, 12, 13, 14, 17, 21, 29, 30];

/// Pseudo-vector of the event upcall in a [`TrapFrame`].
pub const VECTOR_EVENT: u64 = 0x100;
/// Pseudo-vector of the failsafe callback.
pub const VECTOR_FAILSAFE: u64 = 0x101;
/// Pseudo-vector of a `syscall` from guest user mode.
pub const VECTOR_SYSCALL: u64 = 0x102;

/// `#DE`.
pub const DIVIDE_ERROR: u8 = 0;
/// `#DB`.
pub const DEBUG: u8 = 1;
/// `#BP` (int3).
pub const BREAKPOINT: u8 = 3;
/// `#UD`.
pub const INVALID_OPCODE: u8 = 6;
/// `#GP`.
pub const GENERAL_PROTECTION: u8 = 13;
/// `#PF`.
pub const PAGE_FAULT: u8 = 14;

/// Bit set in `TrapFrame::vector` to return with `VGCF_in_syscall`.
const SYSRET_BIT: u64 = 1 << 63;

/// Page-fault error code bits.
pub mod pf {
    /// The page was present (protection violation).
    pub const PRESENT: u64 = 1 << 0;
    /// A write.
    pub const WRITE: u64 = 1 << 1;
    /// From user mode (always set for PV guests, which run in ring 3).
    pub const USER: u64 = 1 << 2;
    /// An instruction fetch.
    pub const FETCH: u64 = 1 << 4;
}

/// The saved state of an interrupted context, as the entry stubs lay it
/// out (lowest address first).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapFrame {
    /// r15.
    pub r15: u64,
    /// r14.
    pub r14: u64,
    /// r13.
    pub r13: u64,
    /// r12.
    pub r12: u64,
    /// r11 (from the bounce frame).
    pub r11: u64,
    /// r10.
    pub r10: u64,
    /// r9.
    pub r9: u64,
    /// r8.
    pub r8: u64,
    /// rbp.
    pub rbp: u64,
    /// rdi.
    pub rdi: u64,
    /// rsi.
    pub rsi: u64,
    /// rdx.
    pub rdx: u64,
    /// rcx (from the bounce frame).
    pub rcx: u64,
    /// rbx.
    pub rbx: u64,
    /// rax.
    pub rax: u64,
    /// Vector (0..32, or one of the `VECTOR_*` pseudo-vectors).
    pub vector: u64,
    /// Error code (0 where the CPU has none).
    pub error_code: u64,
    /// Interrupted rip.
    pub rip: u64,
    /// Interrupted cs, with the saved upcall mask in bits 32..40.
    pub cs: u64,
    /// Interrupted rflags (IF = the inverse of the saved upcall mask).
    pub rflags: u64,
    /// Interrupted rsp.
    pub rsp: u64,
    /// Interrupted ss.
    pub ss: u64,
}

impl TrapFrame {
    /// The vector (without internal bits).
    pub fn vector(&self) -> u64 {
        self.vector & !SYSRET_BIT
    }
    /// The code selector (low 16 bits of the cs slot).
    pub fn cs(&self) -> u16 {
        self.cs as u16
    }
    /// The upcall mask saved when Xen built the frame.
    pub fn saved_upcall_mask(&self) -> u8 {
        (self.cs >> crate::abi::arch_x86::BOUNCE_FRAME_UPCALL_MASK_SHIFT) as u8
    }
    /// True if the interrupted context was guest user mode (`cs & 3 == 3`).
    pub fn from_user(&self) -> bool {
        self.cs & 3 == 3
    }
    /// The faulting address of a page fault (`vcpu_info.arch.cr2`).
    pub fn cr2(&self) -> u64 {
        crate::shared::get()
            .and_then(|s| s.vcpu(crate::percpu::current_vcpu()))
            .map_or(0, |v| v.cr2.load(Ordering::Acquire))
    }
    /// Resumes `len` bytes after the faulting instruction.
    pub fn skip(&mut self, len: u64) {
        self.rip = self.rip.wrapping_add(len);
    }
    /// Returns with `VGCF_in_syscall` (the `sysret` path: rcx and r11 are
    /// not restored; Xen uses them for rip and rflags).
    pub fn return_via_sysret(&mut self) {
        self.vector |= SYSRET_BIT;
    }
    /// The `iret_context.flags` this frame returns with.
    pub fn iret_flags(&self) -> u64 {
        if self.vector & SYSRET_BIT != 0 {
            VGCF_IN_SYSCALL
        } else {
            0
        }
    }
}

/// What a handler decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapAction {
    /// Resume the (possibly changed) frame.
    Resume,
    /// Not handled: report and crash the domain.
    Unhandled,
}

/// An exception handler.
pub type TrapHandler = fn(&mut TrapFrame) -> TrapAction;

/// Handles traps and system calls from guest user mode (installed by
/// [`crate::user`]); it either returns (resume the frame) or does not
/// return at all (back to the kernel).
pub type UserHook = fn(&mut TrapFrame);

static HANDLERS: [AtomicUsize; 32] = [const { AtomicUsize::new(0) }; 32];
static USER_HOOK: AtomicUsize = AtomicUsize::new(0);
static COUNTS: [AtomicU64; 35] = [const { AtomicU64::new(0) }; 35];

/// Sets the handler of exception `vector` (0..32).
pub fn set_handler(vector: u8, h: TrapHandler) {
    if let Some(s) = HANDLERS.get(vector as usize) {
        s.store(h as usize, Ordering::Release);
    }
}

/// Removes the handler of exception `vector`.
pub fn clear_handler(vector: u8) {
    if let Some(s) = HANDLERS.get(vector as usize) {
        s.store(0, Ordering::Release);
    }
}

/// Sets the user-mode hook.
pub fn set_user_hook(h: Option<UserHook>) {
    USER_HOOK.store(h.map_or(0, |f| f as usize), Ordering::Release);
}

/// How many times `vector` (0..32, or a `VECTOR_*`) was entered.
pub fn count(vector: u64) -> u64 {
    let i = match vector {
        0..32 => vector as usize,
        VECTOR_EVENT => 32,
        VECTOR_FAILSAFE => 33,
        VECTOR_SYSCALL => 34,
        _ => return 0,
    };
    COUNTS[i].load(Ordering::Relaxed)
}

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn handler(vector: u64) -> Option<TrapHandler> {
    let h = HANDLERS.get(vector as usize)?.load(Ordering::Acquire);
    // SAFETY: only `set_handler` stores non-zero values: TrapHandler
    // function pointers as usize.
    (h != 0).then(|| unsafe { core::mem::transmute::<usize, TrapHandler>(h) })
}

#[cfg_attr(not(target_os = "none"), allow(dead_code))]
fn user_hook() -> Option<UserHook> {
    let h = USER_HOOK.load(Ordering::Acquire);
    // SAFETY: only `set_user_hook` stores non-zero values: UserHook
    // function pointers as usize.
    (h != 0).then(|| unsafe { core::mem::transmute::<usize, UserHook>(h) })
}

/// Failsafe callbacks in a row before the domain is crashed.
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
const MAX_FAILSAFES: u64 = 16;

/// Called by the entry stubs with the saved frame (events masked).
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
extern "C" fn pv_trap_dispatch(f: &mut TrapFrame) {
    let v = f.vector();
    let idx = match v {
        0..32 => v as usize,
        VECTOR_EVENT => 32,
        VECTOR_FAILSAFE => 33,
        _ => 34,
    };
    let n = COUNTS[idx].fetch_add(1, Ordering::Relaxed) + 1;
    match v {
        VECTOR_EVENT => crate::events::upcall(),
        VECTOR_FAILSAFE => {
            // Xen could not load our data segments on the way back; it has
            // loaded null ones. Retry the return (Linux's "category 1").
            if n > MAX_FAILSAFES {
                fatal(f, "too many failsafe callbacks");
            }
        }
        VECTOR_SYSCALL => match user_hook() {
            Some(h) => h(f),
            None => fatal(f, "syscall from user mode without a handler"),
        },
        _ => {
            if f.from_user() {
                if let Some(h) = user_hook() {
                    h(f);
                    f.error_code = f.iret_flags();
                    return;
                }
            }
            let action = handler(v).map_or(TrapAction::Unhandled, |h| h(f));
            if action == TrapAction::Unhandled {
                fatal(f, "unhandled exception");
            }
        }
    }
    // The error-code slot becomes iret_context.flags on the way out.
    f.error_code = f.iret_flags();
}

/// Prints the frame (without the console lock) and crashes the domain.
pub fn fatal(f: &TrapFrame, why: &str) -> ! {
    use core::fmt::Write;
    let mut c = crate::console::Console;
    let _ = writeln!(
        c,
        "pv-guest-lib: {why}: vector {:#x} error {:#x} at rip {:#x} cs {:#x} rflags {:#x} rsp {:#x} cr2 {:#x} (vcpu {})",
        f.vector(),
        f.error_code,
        f.rip,
        f.cs,
        f.rflags,
        f.rsp,
        f.cr2(),
        crate::percpu::current_vcpu()
    );
    crate::xen::crash()
}

/// Builds the virtual IDT for the stub addresses `entries[v]` (pure): every
/// vector but 2 (NMI has its own callback), DPL 3 for 3 and 4, DPL 0 for
/// the rest, events masked on entry, `FLAT_KERNEL_CS`, and the terminating
/// zero entry.
pub fn build_trap_table(entries: &[u64; 32]) -> [TrapInfo; 32] {
    let mut t = [TrapInfo::default(); 32];
    let mut n = 0;
    for (v, &addr) in entries.iter().enumerate() {
        if v == 2 || addr == 0 {
            continue;
        }
        let dpl = if v == 3 || v == 4 { 3 } else { 0 };
        t[n] = TrapInfo {
            vector: v as u8,
            flags: dpl | TI_IF_FLAG,
            cs: FLAT_KERNEL_CS,
            _pad4: 0,
            address: addr,
        };
        n += 1;
    }
    t
}

/// The full 256-entry `trap_ctxt` of a `vcpu_guest_context` (indexed by
/// vector), for bringing up other vCPUs.
pub fn trap_ctxt() -> [TrapInfo; 256] {
    let mut all = [TrapInfo::default(); 256];
    for t in build_trap_table(&imp::entries()) {
        if t.address != 0 {
            all[t.vector as usize] = t;
        }
    }
    all
}

/// Entry points: `(event, failsafe, syscall)`.
pub fn callback_entries() -> (u64, u64, u64) {
    imp::callbacks()
}

/// Registers the virtual IDT with `set_trap_table`.
pub fn install_trap_table() -> Result<(), Errno> {
    let table = build_trap_table(&imp::entries());
    // SAFETY: every address is one of this module's entry stubs, written for
    // Xen's exception bounce frame; the table ends with a zero entry (the
    // array has 32 slots for 31 vectors).
    unsafe { crate::xen::set_trap_table(&table) }.map(|_| ())
}

/// Registers the event, failsafe and syscall callbacks (`callback_op`,
/// falling back to `set_callbacks` on `-ENOSYS`).
pub fn install_callbacks() -> Result<(), Errno> {
    let (event, failsafe, syscall) = imp::callbacks();
    // SAFETY: the addresses are this module's event, failsafe and syscall
    // entries, each written for the frame Xen builds for that callback.
    let r = unsafe { crate::xen::callback_register(CallbackType::Event, event, 0) };
    match r {
        Err(e) if e == Errno::ENOSYS => {
            // SAFETY: as above.
            return unsafe { crate::xen::set_callbacks(event, failsafe, syscall) }.map(|_| ());
        }
        r => r?,
    };
    // SAFETY: as above.
    unsafe {
        crate::xen::callback_register(CallbackType::Failsafe, failsafe, CALLBACKF_MASK_EVENTS)?;
        crate::xen::callback_register(CallbackType::Syscall, syscall, CALLBACKF_MASK_EVENTS)?;
    }
    Ok(())
}

/// [`install_trap_table`] and [`install_callbacks`].
pub fn install() -> Result<(), Errno> {
    install_trap_table()?;
    install_callbacks()
}

/// Enters guest user mode with the `iret` hypercall at `rip`/`rsp`
/// (`FLAT_USER_CS`, `FLAT_USER_SS`, events enabled), after saving this
/// kernel context; returns the value a later [`exit_to_kernel`] passes.
///
/// # Safety
/// The user page tables must be installed (`MMUEXT_NEW_USER_BASEPTR`) and
/// the kernel stack Xen switches to on the way back (`stack_switch`) must
/// lie below this call's frame on the current vCPU stack. `save` must stay
/// valid until the matching [`exit_to_kernel`].
pub unsafe fn enter_user(frame: &IretFrame, save: *mut u64) -> u64 {
    // SAFETY: the caller's contract.
    unsafe { imp::enter_user(frame, save) }
}

/// Abandons the current trap frame and returns from the [`enter_user`]
/// whose context was saved at `saved_rsp`, with `code`.
///
/// # Safety
/// `saved_rsp` must be the value [`enter_user`] stored, on this vCPU, and
/// that call must not have returned yet.
pub unsafe fn exit_to_kernel(saved_rsp: u64, code: u64) -> ! {
    // SAFETY: the caller's contract.
    unsafe { imp::exit_to_kernel(saved_rsp, code) }
}

/// The five words an `iret` pops.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IretFrame {
    /// rip.
    pub rip: u64,
    /// cs.
    pub cs: u64,
    /// rflags.
    pub rflags: u64,
    /// rsp.
    pub rsp: u64,
    /// ss.
    pub ss: u64,
}

#[cfg(target_os = "none")]
mod imp {
    use super::*;
    use core::arch::global_asm;

    global_asm!(
        ".pushsection .text.pv_traps, \"ax\", @progbits",
        ".macro pv_entry vec, has_ec",
        "    .balign 16",
        "pv_trap_entry_\\vec:",
        "    pop %rcx",
        "    pop %r11",
        "    .if \\has_ec == 0",
        "    push $0",
        "    .endif",
        "    push $\\vec",
        "    jmp pv_trap_common",
        ".endm",
        "pv_entry 0, 0",
        "pv_entry 1, 0",
        "pv_entry 2, 0",
        "pv_entry 3, 0",
        "pv_entry 4, 0",
        "pv_entry 5, 0",
        "pv_entry 6, 0",
        "pv_entry 7, 0",
        "pv_entry 8, 1",
        "pv_entry 9, 0",
        "pv_entry 10, 1",
        "pv_entry 11, 1",
        "pv_entry 12, 1",
        "pv_entry 13, 1",
        "pv_entry 14, 1",
        "pv_entry 15, 0",
        "pv_entry 16, 0",
        "pv_entry 17, 1",
        "pv_entry 18, 0",
        "pv_entry 19, 0",
        "pv_entry 20, 0",
        "pv_entry 21, 1",
        "pv_entry 22, 0",
        "pv_entry 23, 0",
        "pv_entry 24, 0",
        "pv_entry 25, 0",
        "pv_entry 26, 0",
        "pv_entry 27, 0",
        "pv_entry 28, 0",
        "pv_entry 29, 1",
        "pv_entry 30, 1",
        "pv_entry 31, 0",
        "    .balign 16",
        ".globl pv_event_entry",
        "pv_event_entry:",
        "    pop %rcx",
        "    pop %r11",
        "    push $0",
        "    push ${event}",
        "    jmp pv_trap_common",
        "    .balign 16",
        ".globl pv_failsafe_entry",
        "pv_failsafe_entry:",
        "    pop %rcx",
        "    pop %r11",
        "    add $32, %rsp", // ds, es, fs, gs
        "    push $0",
        "    push ${failsafe}",
        "    jmp pv_trap_common",
        "    .balign 16",
        ".globl pv_syscall_entry",
        "pv_syscall_entry:",
        "    pop %rcx",
        "    pop %r11",
        "    push $0",
        "    push ${syscall}",
        "    jmp pv_trap_common",
        "    .balign 16",
        "pv_trap_common:",
        "    push %rax",
        "    push %rbx",
        "    push %rcx",
        "    push %rdx",
        "    push %rsi",
        "    push %rdi",
        "    push %rbp",
        "    push %r8",
        "    push %r9",
        "    push %r10",
        "    push %r11",
        "    push %r12",
        "    push %r13",
        "    push %r14",
        "    push %r15",
        "    cld",
        "    mov %rsp, %rdi",
        "    mov %rsp, %rbx",
        "    and $-16, %rsp",
        "    call {dispatch}",
        "    mov %rbx, %rsp",
        "    pop %r15",
        "    pop %r14",
        "    pop %r13",
        "    pop %r12",
        "    pop %r11",
        "    pop %r10",
        "    pop %r9",
        "    pop %r8",
        "    pop %rbp",
        "    pop %rdi",
        "    pop %rsi",
        "    pop %rdx",
        "    pop %rcx",
        "    pop %rbx",
        "    pop %rax",
        "    add $8, %rsp", // the vector; the error-code slot now holds iret flags
        "    jmp hypercall_page + {iret_slot}",
        // enter_user(frame: *const IretFrame, save: *mut u64) -> u64
        "    .balign 16",
        ".globl pv_enter_user",
        "pv_enter_user:",
        "    push %rbp",
        "    push %rbx",
        "    push %r12",
        "    push %r13",
        "    push %r14",
        "    push %r15",
        "    mov %rsp, (%rsi)",
        "    push 32(%rdi)",
        "    push 24(%rdi)",
        "    push 16(%rdi)",
        "    push 8(%rdi)",
        "    push 0(%rdi)",
        "    push $0",
        "    xor %eax, %eax",
        "    xor %ebx, %ebx",
        "    xor %ecx, %ecx",
        "    xor %edx, %edx",
        "    xor %esi, %esi",
        "    xor %edi, %edi",
        "    xor %ebp, %ebp",
        "    xor %r8d, %r8d",
        "    xor %r9d, %r9d",
        "    xor %r10d, %r10d",
        "    xor %r11d, %r11d",
        "    xor %r12d, %r12d",
        "    xor %r13d, %r13d",
        "    xor %r14d, %r14d",
        "    xor %r15d, %r15d",
        "    jmp hypercall_page + {iret_slot}",
        // exit_to_kernel(saved_rsp, code) -> !
        "    .balign 16",
        ".globl pv_exit_to_kernel",
        "pv_exit_to_kernel:",
        "    mov %rsi, %rax",
        "    mov %rdi, %rsp",
        "    pop %r15",
        "    pop %r14",
        "    pop %r13",
        "    pop %r12",
        "    pop %rbx",
        "    pop %rbp",
        "    ret",
        ".popsection",
        ".pushsection .rodata.pv_trap_entries, \"a\", @progbits",
        ".balign 8",
        ".globl pv_trap_entries",
        "pv_trap_entries:",
        ".quad pv_trap_entry_0",
        ".quad pv_trap_entry_1",
        ".quad pv_trap_entry_2",
        ".quad pv_trap_entry_3",
        ".quad pv_trap_entry_4",
        ".quad pv_trap_entry_5",
        ".quad pv_trap_entry_6",
        ".quad pv_trap_entry_7",
        ".quad pv_trap_entry_8",
        ".quad pv_trap_entry_9",
        ".quad pv_trap_entry_10",
        ".quad pv_trap_entry_11",
        ".quad pv_trap_entry_12",
        ".quad pv_trap_entry_13",
        ".quad pv_trap_entry_14",
        ".quad pv_trap_entry_15",
        ".quad pv_trap_entry_16",
        ".quad pv_trap_entry_17",
        ".quad pv_trap_entry_18",
        ".quad pv_trap_entry_19",
        ".quad pv_trap_entry_20",
        ".quad pv_trap_entry_21",
        ".quad pv_trap_entry_22",
        ".quad pv_trap_entry_23",
        ".quad pv_trap_entry_24",
        ".quad pv_trap_entry_25",
        ".quad pv_trap_entry_26",
        ".quad pv_trap_entry_27",
        ".quad pv_trap_entry_28",
        ".quad pv_trap_entry_29",
        ".quad pv_trap_entry_30",
        ".quad pv_trap_entry_31",
        ".popsection",
        event = const VECTOR_EVENT,
        failsafe = const VECTOR_FAILSAFE,
        syscall = const VECTOR_SYSCALL,
        dispatch = sym pv_trap_dispatch,
        iret_slot = const crate::abi::hypercall::Hypercall::Iret as usize
            * crate::abi::hypercall::HYPERCALL_SLOT_SIZE,
        options(att_syntax)
    );

    extern "C" {
        static pv_trap_entries: [u64; 32];
        fn pv_event_entry();
        fn pv_failsafe_entry();
        fn pv_syscall_entry();
        fn pv_enter_user(frame: *const IretFrame, save: *mut u64) -> u64;
        fn pv_exit_to_kernel(saved_rsp: u64, code: u64) -> !;
    }

    pub fn entries() -> [u64; 32] {
        // SAFETY: a read-only table of 32 addresses defined just above.
        unsafe { core::ptr::read(&raw const pv_trap_entries) }
    }

    pub fn callbacks() -> (u64, u64, u64) {
        (
            pv_event_entry as *const () as usize as u64,
            pv_failsafe_entry as *const () as usize as u64,
            pv_syscall_entry as *const () as usize as u64,
        )
    }

    pub unsafe fn enter_user(frame: &IretFrame, save: *mut u64) -> u64 {
        // SAFETY: the caller's contract (see `super::enter_user`).
        unsafe { pv_enter_user(frame, save) }
    }

    pub unsafe fn exit_to_kernel(saved_rsp: u64, code: u64) -> ! {
        // SAFETY: the caller's contract (see `super::exit_to_kernel`).
        unsafe { pv_exit_to_kernel(saved_rsp, code) }
    }
}

#[cfg(not(target_os = "none"))]
mod imp {
    use super::*;

    pub fn entries() -> [u64; 32] {
        core::array::from_fn(|v| 0x1000 + v as u64 * 16)
    }
    pub fn callbacks() -> (u64, u64, u64) {
        (0x2000, 0x2010, 0x2020)
    }
    pub unsafe fn enter_user(_frame: &IretFrame, _save: *mut u64) -> u64 {
        0
    }
    pub unsafe fn exit_to_kernel(_saved_rsp: u64, _code: u64) -> ! {
        panic!("no user mode on the host")
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn frame_layout_matches_the_stubs() {
        assert_eq!(core::mem::size_of::<TrapFrame>(), 22 * 8);
        assert_eq!(core::mem::offset_of!(TrapFrame, rax), 14 * 8);
        assert_eq!(core::mem::offset_of!(TrapFrame, vector), 15 * 8);
        assert_eq!(core::mem::offset_of!(TrapFrame, rip), 17 * 8);
        assert_eq!(core::mem::offset_of!(TrapFrame, ss), 21 * 8);
    }

    #[test]
    fn frame_accessors() {
        let mut f = TrapFrame {
            cs: 0xe030 | (1 << 32),
            vector: 14,
            ..Default::default()
        };
        assert_eq!(f.cs(), 0xe030);
        assert_eq!(f.saved_upcall_mask(), 1);
        assert!(!f.from_user());
        f.cs = 0xe033;
        assert!(f.from_user());
        assert_eq!(f.iret_flags(), 0);
        f.return_via_sysret();
        assert_eq!(f.vector(), 14);
        assert_eq!(f.iret_flags(), VGCF_IN_SYSCALL);
        f.rip = 10;
        f.skip(2);
        assert_eq!(f.rip, 12);
    }

    #[test]
    fn trap_table_shape() {
        let e: [u64; 32] = core::array::from_fn(|v| 0x1000 + v as u64);
        let t = build_trap_table(&e);
        // 31 vectors (no NMI) and the terminator.
        assert_eq!(t.iter().filter(|t| t.address != 0).count(), 31);
        assert_eq!(t[31].address, 0);
        assert!(t.iter().all(|t| t.address == 0 || t.vector != 2));
        let bp = t.iter().find(|t| t.vector == 3).unwrap();
        assert_eq!(bp.dpl(), 3);
        assert!(bp.disables_events());
        let pf = t.iter().find(|t| t.vector == 14).unwrap();
        assert_eq!((pf.dpl(), pf.cs, pf.address), (0, FLAT_KERNEL_CS, 0x100e));
        let all = trap_ctxt();
        assert_eq!(all[14].vector, 14);
        assert_eq!(all[2].address, 0);
        assert_eq!(count(1000), 0);
    }

    #[test]
    fn error_code_vectors_match_the_stubs() {
        let src = include_str!("trap.rs");
        for v in 0..32u8 {
            let has = VECTORS_WITH_ERROR_CODE.contains(&v);
            let line = format!("\"pv_entry {v}, {}\",", has as u8);
            assert!(src.contains(&line), "missing {line}");
        }
    }
}
