//! Per-CPU data, found from the stack pointer as Xen does (`get_cpu_info()`).
//!
//! Every CPU owns one 64 KiB stack block, 64 KiB aligned:
//!
//! ```text
//!  block + 0x10000  +----------------------------+
//!                   | CpuInfo (512 bytes)        |  <- found by rsp | 0xffff
//!  block + 0xfe00   +----------------------------+  <- TSS.RSP0 / syscall stack top:
//!                   | main stack                 |     a guest's TrapFrame sits
//!                   |   (grows down)             |     right below this line
//!  block + 0x4000   +----------------------------+
//!                   | #MC IST stack (IST3)       |
//!  block + 0x3000   +----------------------------+
//!                   | NMI IST stack (IST2)       |
//!  block + 0x2000   +----------------------------+
//!                   | #DF IST stack (IST1)       |
//!  block + 0x1000   +----------------------------+
//!                   | guard page (unmapped)      |
//!  block            +----------------------------+
//! ```
//!
//! The syscall entry cannot use the stack pointer (it is the guest's), so it
//! reaches `CpuInfo` through `MSR_KERNEL_GS_BASE` with a `swapgs` pair; the
//! guest never runs `swapgs` (it is in ring 3), so that MSR is ours.

use super::gdt::Tss;
use super::instr::read_rsp;
use core::sync::atomic::{AtomicU32, AtomicU64};

/// Size and alignment of a CPU's stack block.
pub const STACK_BLOCK_SIZE: u64 = 0x10000;
/// Bytes at the top of the block reserved for `CpuInfo`.
pub const CPU_INFO_RESERVE: u64 = 512;
/// Offset of the stack top (TSS.RSP0) in the block.
pub const STACK_TOP_OFFSET: u64 = STACK_BLOCK_SIZE - CPU_INFO_RESERVE;
/// IST stack tops, as offsets in the block: #DF, NMI, #MC.
pub const IST_TOP_OFFSETS: [u64; 3] = [0x2000, 0x3000, 0x4000];
/// Most CPUs xen-core brings up.
pub const MAX_CPUS: usize = 32;

/// Offsets the assembly entry paths use (checked against the struct below).
pub const CPU_INFO_GUEST_RSP: usize = 0;
/// Offset of `stack_top`.
pub const CPU_INFO_STACK_TOP: usize = 8;

/// What each CPU knows about itself.
#[repr(C)]
pub struct CpuInfo {
    /// Scratch: the guest's `rsp` at syscall entry.
    pub guest_rsp: AtomicU64,
    /// Top of this CPU's main stack (where a guest frame ends).
    pub stack_top: u64,
    /// Logical CPU number (0 = the boot CPU).
    pub cpu: u32,
    /// Local APIC ID.
    pub apic_id: u32,
    /// LAPIC timer ticks seen (for the boot report and tests).
    pub timer_ticks: AtomicU64,
    /// Index into the domain table of the vCPU running here (u32::MAX: idle).
    pub current_vcpu: AtomicU32,
    /// Where in the domain table the running vCPU's domain was last found:
    /// a hint, checked before use (`domain::position_of_current`).
    pub dom_slot: AtomicU32,
    /// Virtual address of this CPU's GDT (pages 0..13 show the running
    /// vCPU's own GDT frames).
    pub gdt_va: AtomicU64,
    /// Virtual address of this CPU's LDT window (16 pages showing the
    /// running vCPU's LDT frames).
    pub ldt_va: AtomicU64,
    /// This CPU's task state segment.
    pub tss: Tss,
}

const _: () = {
    assert!(core::mem::offset_of!(CpuInfo, guest_rsp) == CPU_INFO_GUEST_RSP);
    assert!(core::mem::offset_of!(CpuInfo, stack_top) == CPU_INFO_STACK_TOP);
    assert!(core::mem::size_of::<CpuInfo>() as u64 <= CPU_INFO_RESERVE);
};

/// Address of the `CpuInfo` in the stack block holding `rsp`.
pub fn cpu_info_addr(rsp: u64) -> u64 {
    (rsp & !(STACK_BLOCK_SIZE - 1)) + STACK_TOP_OFFSET
}

/// This CPU's `CpuInfo`.
pub fn this_cpu() -> &'static CpuInfo {
    let addr = cpu_info_addr(read_rsp());
    // SAFETY: every stack xen-core runs on is a stack block whose CpuInfo was
    // initialised by `init_block` before the CPU switched to it (the BSP's by
    // `init_block` on the static block it boots on); it lives forever.
    unsafe { &*(addr as *const CpuInfo) }
}

/// Initialises the `CpuInfo` of the block at `block` and returns it.
///
/// # Safety
/// `block` must be a mapped, writable, 64 KiB-aligned stack block owned by
/// the CPU `cpu` and not yet in use by anyone else.
pub unsafe fn init_block(block: u64, cpu: u32, apic_id: u32) -> &'static mut CpuInfo {
    let info = (block + STACK_TOP_OFFSET) as *mut CpuInfo;
    // SAFETY: per the contract the memory is ours, mapped and suitably aligned
    // (block is 64 KiB aligned; STACK_TOP_OFFSET is a multiple of 512).
    unsafe {
        info.write(CpuInfo {
            guest_rsp: AtomicU64::new(0),
            stack_top: block + STACK_TOP_OFFSET,
            cpu,
            apic_id,
            timer_ticks: AtomicU64::new(0),
            current_vcpu: AtomicU32::new(u32::MAX),
            dom_slot: AtomicU32::new(0),
            gdt_va: AtomicU64::new(0),
            ldt_va: AtomicU64::new(0),
            tss: Tss::new(),
        });
        &mut *info
    }
}
