//! More vCPUs: counting them, bringing them up, taking them down.
//!
//! A PV domain's vCPUs other than 0 start down. The kernel describes a
//! starting state with `VCPUOP_initialise` (a `vcpu_guest_context`: flags
//! `VGCF_in_kernel`, registers with `rip`/`rsp`/`cs`/`ss`, the kernel L4 in
//! `ctrlreg[3]` as `xen_pfn_to_cr3(mfn)`, the stack Xen switches to from user
//! mode, the virtual IDT and the callbacks, no GDT frames) and starts it
//! with `VCPUOP_up`, as Linux's `cpu_initialize_context` does.
//!
//! `VGCF_online` is deliberately *not* set: in Xen 4.17 it clears the
//! vCPU's "down" flag inside `VCPUOP_initialise` without waking it, after
//! which `VCPUOP_up` finds nothing to do and the vCPU never runs. (It is
//! meant for the toolstack's `setvcpucontext`.)
//!
//! Each vCPU runs on its own [`percpu::STACK_SIZE`] stack from
//! [`crate::frame`]; it starts in [`secondary_entry`], which binds its
//! `VIRQ_TIMER`, enables events and calls the function given to [`start`].
//! Only vCPUs 0..32 (those with a `vcpu_info` in the shared info page) are
//! supported.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::abi::arch_x86::{VcpuGuestContext, FLAT_KERNEL_CS, FLAT_KERNEL_SS, VGCF_IN_KERNEL};
use crate::abi::hypercall::Hypercall;
use crate::abi::vcpu::VcpuOp;
use crate::error::{check, Errno};
use crate::hypercall::hypercall3;
use crate::percpu;
use zerocopy::FromZeros;

/// vCPUs this module handles.
pub const MAX_VCPUS: u32 = 32;

/// What runs on a started vCPU.
pub type VcpuMain = fn(u32) -> !;

static ENTRY: [AtomicUsize; MAX_VCPUS as usize] =
    [const { AtomicUsize::new(0) }; MAX_VCPUS as usize];
static ONLINE: [AtomicBool; MAX_VCPUS as usize] =
    [const { AtomicBool::new(false) }; MAX_VCPUS as usize];

fn vcpu_op_raw(cmd: VcpuOp, vcpu: u32, arg: u64) -> Result<u64, Errno> {
    // SAFETY: callers pass 0 or the address of the live argument `cmd`
    // takes (a `vcpu_guest_context` for VCPUOP_initialise).
    check(unsafe { hypercall3(Hypercall::VcpuOp, cmd as u64, u64::from(vcpu), arg) })
}

/// The domain's vCPU count: the first id `VCPUOP_is_up` refuses
/// (`-ENOENT` on Xen), at most [`MAX_VCPUS`].
pub fn count() -> u32 {
    (1..MAX_VCPUS)
        .find(|&id| crate::xen::vcpu_is_up(id).is_err())
        .unwrap_or(MAX_VCPUS)
}

/// `VCPUOP_is_up`.
pub fn is_up(vcpu: u32) -> Result<bool, Errno> {
    crate::xen::vcpu_is_up(vcpu)
}

/// `VCPUOP_up`.
pub fn up(vcpu: u32) -> Result<(), Errno> {
    vcpu_op_raw(VcpuOp::Up, vcpu, 0).map(|_| ())
}

/// `VCPUOP_down` (a vCPU may take itself down).
pub fn down(vcpu: u32) -> Result<(), Errno> {
    vcpu_op_raw(VcpuOp::Down, vcpu, 0).map(|_| ())
}

/// `VCPUOP_initialise` with a caller-built context.
pub fn initialise(vcpu: u32, ctx: &VcpuGuestContext) -> Result<(), Errno> {
    vcpu_op_raw(VcpuOp::Initialise, vcpu, ctx as *const _ as u64).map(|_| ())
}

/// The starting context of a vCPU (pure): kernel mode at `rip` on `rsp`,
/// page tables `l4_mfn`, the given IDT and callbacks.
pub fn context(
    rip: u64,
    rsp: u64,
    l4_mfn: u64,
    trap_ctxt: &[crate::abi::arch_x86::TrapInfo; 256],
    callbacks: (u64, u64, u64),
) -> VcpuGuestContext {
    let mut c = VcpuGuestContext::new_zeroed();
    c.flags = VGCF_IN_KERNEL;
    c.user_regs.rip = rip;
    c.user_regs.rsp = rsp;
    c.user_regs.cs = FLAT_KERNEL_CS;
    c.user_regs.ss = FLAT_KERNEL_SS;
    c.user_regs.rflags = 0x200; // IF: events enabled (Xen forces it anyway)
    c.trap_ctxt = *trap_ctxt;
    c.kernel_ss = u64::from(FLAT_KERNEL_SS);
    c.kernel_sp = rsp;
    c.ctrlreg[3] = l4_mfn << 12; // xen_pfn_to_cr3
    c.event_callback_eip = callbacks.0;
    c.failsafe_callback_eip = callbacks.1;
    c.syscall_callback_eip = callbacks.2;
    c
}

/// Why [`start`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// The id is 0 or too big.
    BadVcpu,
    /// No frames for its stack.
    NoMemory,
    /// `VCPUOP_initialise` failed.
    Initialise(Errno),
    /// `VCPUOP_up` failed.
    Up(Errno),
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartError::BadVcpu => f.write_str("bad vCPU id"),
            StartError::NoMemory => f.write_str("no memory for its stack"),
            StartError::Initialise(e) => write!(f, "VCPUOP_initialise: {e}"),
            StartError::Up(e) => write!(f, "VCPUOP_up: {e}"),
        }
    }
}

/// Starts vCPU `vcpu` running `main(vcpu)` on a fresh stack, with the same
/// kernel page tables, virtual IDT and callbacks as the caller.
pub fn start(vcpu: u32, main: VcpuMain) -> Result<(), StartError> {
    if vcpu == 0 || vcpu >= MAX_VCPUS {
        return Err(StartError::BadVcpu);
    }
    let pages = percpu::STACK_SIZE / crate::layout::PAGE_SIZE;
    let stack = crate::frame::alloc_frames(pages, pages).map_err(|_| StartError::NoMemory)?;
    // SAFETY: `stack.va` is the STACK_SIZE-aligned start of STACK_SIZE
    // freshly allocated, direct-mapped, zeroed bytes that only this vCPU
    // will use.
    unsafe { percpu::init_stack(stack.va, vcpu) };
    ENTRY[vcpu as usize].store(main as usize, Ordering::Release);
    let top = stack.va + percpu::STACK_SIZE - 64;
    let ctx = context(
        imp::trampoline(),
        top,
        crate::frame::kernel_l4(),
        &crate::trap::trap_ctxt(),
        crate::trap::callback_entries(),
    );
    initialise(vcpu, &ctx).map_err(StartError::Initialise)?;
    up(vcpu).map_err(StartError::Up)
}

/// True once `vcpu` has reached its main function.
pub fn online(vcpu: u32) -> bool {
    ONLINE
        .get(vcpu as usize)
        .is_some_and(|o| o.load(Ordering::Acquire))
}

/// Where a started vCPU lands (from the trampoline, on its own stack).
extern "C" fn secondary_entry() -> ! {
    let me = percpu::current_vcpu();
    let _ = crate::time::init_vcpu_timer(me);
    ONLINE[me as usize % MAX_VCPUS as usize].store(true, Ordering::Release);
    crate::events::irq_enable();
    let e = ENTRY[me as usize % MAX_VCPUS as usize].load(Ordering::Acquire);
    if e == 0 {
        let _ = down(me);
        crate::xen::crash();
    }
    // SAFETY: `start` stored a `VcpuMain` function pointer as usize.
    let main: VcpuMain = unsafe { core::mem::transmute::<usize, VcpuMain>(e) };
    main(me)
}

#[cfg(target_os = "none")]
mod imp {
    use core::arch::global_asm;

    global_asm!(
        ".pushsection .text.pv_smp, \"ax\", @progbits",
        ".balign 16",
        ".globl pv_secondary_start",
        "pv_secondary_start:",
        "    cld",
        "    and $-16, %rsp",
        "    xor %ebp, %ebp",
        "    call {entry}",
        "    ud2",
        ".popsection",
        entry = sym super::secondary_entry,
        options(att_syntax)
    );

    extern "C" {
        fn pv_secondary_start();
    }

    pub fn trampoline() -> u64 {
        pv_secondary_start as *const () as usize as u64
    }
}

#[cfg(not(target_os = "none"))]
mod imp {
    pub fn trampoline() -> u64 {
        let _ = super::secondary_entry as extern "C" fn() -> !;
        0x4000
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::arch_x86::{TrapInfo, VGCF_ONLINE};
    use crate::hypercall::mock;

    #[test]
    fn context_fields() {
        let mut idt = [TrapInfo::default(); 256];
        idt[14].address = 0x1234;
        let c = context(0x1000, 0x2000, 0x55, &idt, (1, 2, 3));
        assert_eq!(c.flags, VGCF_IN_KERNEL);
        assert_eq!(c.flags & VGCF_ONLINE, 0);
        assert_eq!(c.ctrlreg[3], 0x55000);
        assert_eq!((c.user_regs.rip, c.user_regs.rsp), (0x1000, 0x2000));
        assert_eq!(c.user_regs.cs, FLAT_KERNEL_CS);
        assert_eq!(c.kernel_sp, 0x2000);
        assert_eq!(c.trap_ctxt[14].address, 0x1234);
        assert_eq!(
            (
                c.event_callback_eip,
                c.failsafe_callback_eip,
                c.syscall_callback_eip
            ),
            (1, 2, 3)
        );
        assert_eq!(c.gdt_ents, 0);
    }

    #[test]
    fn counting_stops_at_the_first_refusal() {
        let _g = mock::install(|_, a| if a[1] < 3 { 1 } else { -2 });
        assert_eq!(count(), 3);
        assert_eq!(start(0, |_| panic!()), Err(StartError::BadVcpu));
        assert!(!online(5));
    }
}
