//! Guest user mode: running a ring-3 program with its own page tables.
//!
//! On x86_64 PV the guest kernel *and* guest user code run in ring 3; what
//! separates them is the page tables. Xen keeps two roots per vCPU: the
//! kernel's (`MMUEXT_NEW_BASEPTR`) and the user's
//! (`MMUEXT_NEW_USER_BASEPTR`), and switches between them itself:
//!
//! - to user mode, when the kernel `iret`s (the hypercall) to a frame whose
//!   `cs` has RPL 3 (`FLAT_USER_CS` = `FLAT_RING3_CS64` = 0xe033);
//! - back to the kernel on a `syscall` (bounced to the
//!   `CALLBACKTYPE_syscall` callback with `rcx, r11, rip, cs, rflags, rsp,
//!   ss`), an exception (to the trap table) or an event upcall, on the
//!   stack given with `stack_switch`.
//!
//! [`run`] saves the kernel's context, points `stack_switch` just below it
//! on the same vCPU stack, installs the user root and enters user mode.
//! System calls go to the kernel's [`SyscallHandler`], user faults to its
//! [`FaultHandler`] (e.g. a page fault handled by mapping a page); either
//! can end the program, and then [`run`] returns with the [`UserExit`].
//! A system call returns to user mode with `VGCF_in_syscall` (the `sysret`
//! path), as Linux's `xen_sysret64`.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::abi::arch_x86::{FLAT_KERNEL_SS, FLAT_USER_CS, FLAT_USER_SS};
use crate::frame::{self, AddressSpace};
use crate::mm::{PtError, PteFlags};
use crate::trap::{self, IretFrame, TrapFrame};

/// How a user program ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserExit {
    /// It asked to exit with this code.
    Exit(u64),
    /// It took a fault the kernel did not handle.
    Fault {
        /// Vector.
        vector: u64,
        /// Error code.
        error_code: u64,
        /// Faulting rip.
        rip: u64,
        /// Faulting address (page faults).
        cr2: u64,
    },
    /// Entering user mode failed before it ran.
    Setup(PtError),
}

/// What a system call handler decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syscall {
    /// Return to the program with this value in `rax`.
    Return(u64),
    /// End the program with this code.
    Exit(u64),
}

/// Handles a `syscall` from the program: number in `f.rax`, arguments in
/// `f.rdi, f.rsi, f.rdx, f.r10, f.r8, f.r9`.
pub type SyscallHandler = fn(&mut TrapFrame, &AddressSpace) -> Syscall;

/// Handles an exception in the program; true to resume it.
pub type FaultHandler = fn(&mut TrapFrame, &AddressSpace) -> bool;

const MAX: usize = crate::smp::MAX_VCPUS as usize;

struct Slot {
    saved_rsp: AtomicU64,
    l4: AtomicU64,
    syscall: AtomicUsize,
    fault: AtomicUsize,
    kind: AtomicU64,
    a: AtomicU64,
    b: AtomicU64,
    c: AtomicU64,
    d: AtomicU64,
}

static SLOTS: [Slot; MAX] = [const {
    Slot {
        saved_rsp: AtomicU64::new(0),
        l4: AtomicU64::new(0),
        syscall: AtomicUsize::new(0),
        fault: AtomicUsize::new(0),
        kind: AtomicU64::new(0),
        a: AtomicU64::new(0),
        b: AtomicU64::new(0),
        c: AtomicU64::new(0),
        d: AtomicU64::new(0),
    }
}; MAX];

const KIND_EXIT: u64 = 1;
const KIND_FAULT: u64 = 2;

/// How far below `run`'s frame the kernel stack for user-mode entries
/// starts.
const ENTRY_STACK_GAP: u64 = 1024;

fn slot() -> &'static Slot {
    &SLOTS[crate::percpu::current_vcpu() as usize % MAX]
}

/// Runs a user program at `entry` with stack pointer `stack_top` in
/// `space`, until it exits or takes a fault `fault` does not handle.
/// Events are enabled while it runs.
pub fn run(
    space: &AddressSpace,
    entry: u64,
    stack_top: u64,
    syscall: SyscallHandler,
    fault: FaultHandler,
) -> UserExit {
    if let Err(e) = crate::mmu::new_user_baseptr(space.l4_mfn) {
        return UserExit::Setup(PtError::Hypervisor(e));
    }
    let sp = (crate::arch::rsp() - ENTRY_STACK_GAP) & !15;
    // SAFETY: `sp` is on this vCPU's stack, below everything `run` and
    // `enter_user` keep there, and nothing else uses that space while the
    // program runs.
    if let Err(e) = unsafe { crate::xen::stack_switch(FLAT_KERNEL_SS, sp) } {
        return UserExit::Setup(PtError::Hypervisor(e));
    }
    let s = slot();
    s.l4.store(space.l4_mfn, Ordering::Release);
    s.syscall.store(syscall as usize, Ordering::Release);
    s.fault.store(fault as usize, Ordering::Release);
    s.kind.store(0, Ordering::Release);
    trap::set_user_hook(Some(user_hook));
    let was_enabled = crate::events::irqs_enabled();
    let frame = IretFrame {
        rip: entry,
        cs: u64::from(FLAT_USER_CS),
        rflags: 0x200,
        rsp: stack_top,
        ss: u64::from(FLAT_USER_SS),
    };
    crate::events::irq_disable();
    s.saved_rsp.store(0, Ordering::Release);
    // SAFETY: the user root is installed, the entry stack is below this
    // frame on this vCPU's stack, and the slot (a static) outlives the
    // call; the hook passes its value to `exit_to_kernel`.
    let _code = unsafe { trap::enter_user(&frame, s.saved_rsp.as_ptr()) };
    // Back in the kernel, on this stack, events masked (we came from a
    // trap handler).
    if was_enabled {
        crate::events::irq_enable();
    }
    let s = slot();
    match s.kind.load(Ordering::Acquire) {
        KIND_EXIT => UserExit::Exit(s.a.load(Ordering::Acquire)),
        _ => UserExit::Fault {
            vector: s.a.load(Ordering::Acquire),
            error_code: s.b.load(Ordering::Acquire),
            rip: s.c.load(Ordering::Acquire),
            cr2: s.d.load(Ordering::Acquire),
        },
    }
}

/// Installed as the trap layer's user hook while a program runs.
fn user_hook(f: &mut TrapFrame) {
    let s = slot();
    let space = AddressSpace {
        l4_mfn: s.l4.load(Ordering::Acquire),
    };
    if f.vector() == trap::VECTOR_SYSCALL {
        let h = s.syscall.load(Ordering::Acquire);
        // SAFETY: `run` stored a SyscallHandler function pointer.
        let h: SyscallHandler = unsafe { core::mem::transmute::<usize, SyscallHandler>(h) };
        match h(f, &space) {
            Syscall::Return(v) => {
                f.rax = v;
                f.return_via_sysret();
            }
            Syscall::Exit(code) => {
                s.a.store(code, Ordering::Release);
                s.kind.store(KIND_EXIT, Ordering::Release);
                leave(s)
            }
        }
        return;
    }
    let h = s.fault.load(Ordering::Acquire);
    // SAFETY: `run` stored a FaultHandler function pointer.
    let h: FaultHandler = unsafe { core::mem::transmute::<usize, FaultHandler>(h) };
    if h(f, &space) {
        return;
    }
    s.a.store(f.vector(), Ordering::Release);
    s.b.store(f.error_code, Ordering::Release);
    s.c.store(f.rip, Ordering::Release);
    s.d.store(f.cr2(), Ordering::Release);
    s.kind.store(KIND_FAULT, Ordering::Release);
    leave(s)
}

fn leave(_s: &Slot) -> ! {
    trap::set_user_hook(None);
    let saved = current_saved_rsp();
    // SAFETY: `saved` is what `enter_user` stored on this vCPU for the
    // `run` call that is still waiting (the hook only runs while one is).
    unsafe { trap::exit_to_kernel(saved, 0) }
}

fn current_saved_rsp() -> u64 {
    // `enter_user` stored it straight into this vCPU's slot.
    slot().saved_rsp.load(Ordering::Acquire)
}

/// Maps `code` at `va` (page aligned) in `space`, read-only and executable
/// for the program: copies it into fresh frames.
pub fn load(space: &AddressSpace, va: u64, code: &[u8]) -> Result<(), PtError> {
    for (i, chunk) in code.chunks(4096).enumerate() {
        let f = frame::alloc_frame()?;
        imp::copy_in(f.va, chunk);
        space.map(va + i as u64 * 4096, f.mfn, PteFlags::USER_RO)?;
    }
    Ok(())
}

/// Maps `pages` fresh zeroed writable pages at `va` in `space`; returns the
/// address just past them (a stack top).
pub fn map_zeroed(space: &AddressSpace, va: u64, pages: u64) -> Result<u64, PtError> {
    for i in 0..pages {
        let f = frame::alloc_frame()?;
        space.map(va + i * 4096, f.mfn, PteFlags::USER_RW)?;
    }
    Ok(va + pages * 4096)
}

#[cfg(target_os = "none")]
mod imp {
    pub fn copy_in(va: u64, bytes: &[u8]) {
        // SAFETY: `va` is a frame fresh from the allocator (direct-mapped,
        // writable, used by nothing) and `bytes` is at most one page.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), va as *mut u8, bytes.len().min(4096))
        }
    }
}

#[cfg(not(target_os = "none"))]
mod imp {
    pub fn copy_in(_va: u64, _bytes: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_compare() {
        assert_ne!(UserExit::Exit(0), UserExit::Exit(1));
        assert_eq!(Syscall::Return(3), Syscall::Return(3));
        assert_eq!(ENTRY_STACK_GAP % 16, 0);
    }
}
