//! The IDT and the Rust side of every exception and interrupt.
//!
//! Owns IDTR. A fault in xen-core itself prints a crash dump and stops the
//! machine; a fault raised by a PV guest is the guest's business and goes to
//! the domain code (which crashes only that domain).

use super::entry::{isr_stub_table, TrapFrame};
use super::gdt::{DescriptorPointer, HYPERVISOR_CS};
use super::instr::{read_cr0, read_cr2, read_cr3, read_cr4};
use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};

/// Exception vectors (Intel SDM vol 3 §6.3.1).
#[allow(dead_code)] // a table of the architecture's names, not all used yet
pub mod vector {
    pub const DIVIDE_ERROR: u8 = 0;
    pub const DEBUG: u8 = 1;
    pub const NMI: u8 = 2;
    pub const BREAKPOINT: u8 = 3;
    pub const OVERFLOW: u8 = 4;
    pub const BOUND: u8 = 5;
    pub const INVALID_OPCODE: u8 = 6;
    pub const DEVICE_NOT_AVAILABLE: u8 = 7;
    pub const DOUBLE_FAULT: u8 = 8;
    pub const INVALID_TSS: u8 = 10;
    pub const SEGMENT_NOT_PRESENT: u8 = 11;
    pub const STACK_FAULT: u8 = 12;
    pub const GENERAL_PROTECTION: u8 = 13;
    pub const PAGE_FAULT: u8 = 14;
    pub const X87: u8 = 16;
    pub const ALIGNMENT_CHECK: u8 = 17;
    pub const MACHINE_CHECK: u8 = 18;
    pub const SIMD: u8 = 19;
    pub const VIRTUALIZATION: u8 = 20;
    pub const CONTROL_PROTECTION: u8 = 21;
    /// First vector that is not an exception.
    pub const FIRST_EXTERNAL: u8 = 32;
}

/// Names of the exceptions, for crash dumps.
const EXCEPTION_NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "NMI",
    "breakpoint",
    "overflow",
    "bound range",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor overrun",
    "invalid TSS",
    "segment not present",
    "stack fault",
    "general protection",
    "page fault",
    "reserved",
    "x87 FP error",
    "alignment check",
    "machine check",
    "SIMD FP error",
    "virtualization",
    "control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "hypervisor injection",
    "VMM communication",
    "security",
    "reserved",
];

/// Human name of a vector.
pub fn vector_name(v: u64) -> &'static str {
    match v {
        0..=31 => EXCEPTION_NAMES[v as usize],
        _ => "interrupt",
    }
}

#[repr(C, align(16))]
struct Idt([u64; 512]);

static mut IDT: Idt = Idt([0; 512]);

/// Gate type: 64-bit interrupt gate (IF cleared on entry).
const GATE_INTERRUPT: u64 = 0xe;

fn gate(handler: u64, ist: u64, dpl: u64) -> (u64, u64) {
    let low = (handler & 0xffff)
        | (u64::from(HYPERVISOR_CS) << 16)
        | (ist << 32)
        | (GATE_INTERRUPT << 40)
        | (dpl << 45)
        | (1 << 47)
        | ((handler >> 16) & 0xffff) << 48;
    (low, handler >> 32)
}

/// Fills the IDT (once, on the boot CPU).
pub fn init_idt() {
    // SAFETY: called once on the BSP before any other CPU runs or any
    // interrupt is enabled, so nothing else reads or writes IDT meanwhile.
    let idt = unsafe { &mut *core::ptr::addr_of_mut!(IDT) };
    // SAFETY: isr_stub_table is an immutable table emitted by entry.rs.
    let stubs = unsafe { &isr_stub_table };
    for (v, &handler) in stubs.iter().enumerate() {
        let ist = match v as u8 {
            vector::DOUBLE_FAULT => 1,
            vector::NMI => 2,
            vector::MACHINE_CHECK => 3,
            _ => 0,
        };
        // int3 and into may be raised by a PV guest on purpose (Xen allows it).
        let dpl = match v as u8 {
            vector::BREAKPOINT | vector::OVERFLOW => 3,
            _ => 0,
        };
        let (lo, hi) = gate(handler, ist, dpl);
        idt.0[2 * v] = lo;
        idt.0[2 * v + 1] = hi;
    }
}

/// Loads IDTR on this CPU.
pub fn load_idt() {
    let ptr = DescriptorPointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: core::ptr::addr_of!(IDT) as u64,
    };
    // SAFETY: IDT was filled by `init_idt` with gates to our stubs and lives
    // forever.
    unsafe { asm!("lidt [{}]", in(reg) &ptr, options(readonly, nostack, preserves_flags)) };
}

static CRASHING: AtomicBool = AtomicBool::new(false);

/// The Rust entry for every vector (called from `isr_common`).
#[no_mangle]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    let v = frame.vector;
    // NMI and #MC run on IST stacks: handle them in place and return to
    // whatever they interrupted, without the guest exit path (which works
    // on the frame at the top of the main stack).
    // NMIs are xen-core's TLB-flush requests (see `flush`): flushing is
    // harmless whatever else raised one.
    if v == u64::from(vector::NMI) {
        super::flush::on_nmi();
        return;
    }
    if v == u64::from(vector::MACHINE_CHECK) {
        fatal_trap(frame);
    }
    if v >= u64::from(vector::FIRST_EXTERNAL) {
        super::apic::handle_interrupt(v as u8);
    } else if frame.is_from_guest() {
        if crate::pv::guest_exception(frame) {
            // Events delivered, nothing to schedule: straight back.
            return;
        }
    } else if let Some(fixup) = hypervisor_fixup(frame) {
        // An instruction that may fault (rdmsr_safe): resume at its fixup.
        frame.rip = fixup;
    } else {
        fatal_trap(frame);
    }
    if frame.is_from_guest() {
        crate::sched::exit_to_guest(frame);
    }
}

/// The fixup address for a fault xen-core expected (Xen's exception
/// table): a #GP of the `*msr_safe` wrappers, or a #PF/#GP of a direct copy
/// from or to a PV guest's memory (`instr::guest_copy`).
fn hypervisor_fixup(frame: &TrapFrame) -> Option<u64> {
    let v = frame.vector;
    if v == u64::from(vector::PAGE_FAULT) || v == u64::from(vector::GENERAL_PROTECTION) {
        if let Some(f) = super::instr::guest_copy_fixup(frame.rip) {
            return Some(f);
        }
    }
    if v != u64::from(vector::GENERAL_PROTECTION) {
        return None;
    }
    super::instr::exception_fixup(frame.rip)
}

/// Prints a crash dump of a fault in xen-core and stops the machine.
fn fatal_trap(frame: &TrapFrame) -> ! {
    if CRASHING.swap(true, Ordering::SeqCst) {
        loop {
            super::instr::cli();
            super::instr::hlt();
        }
    }
    let cpu = super::percpu::this_cpu().cpu;
    crate::println!("(XEN) ----[ Oxen hypervisor fault: CPU{} ]----", cpu);
    crate::println!(
        "(XEN) {} (vector {}), error code {:#x}",
        vector_name(frame.vector),
        frame.vector,
        frame.error_code
    );
    crate::println!("(XEN) RIP:    {:04x}:{:016x}", frame.cs, frame.rip);
    crate::println!(
        "(XEN) RFLAGS: {:016x}   CR2: {:016x}",
        frame.rflags,
        read_cr2()
    );
    dump_registers(frame);
    crate::println!(
        "(XEN) cr0: {:016x}   cr3: {:016x}   cr4: {:016x}",
        read_cr0(),
        read_cr3(),
        read_cr4()
    );
    crate::println!("(XEN) Xen call trace (return addresses):");
    crate::println!("(XEN)    [<{:016x}>] (fault RIP)", frame.rip);
    backtrace(frame.rbp);
    crate::println!("(XEN) ****************************************");
    crate::println!(
        "(XEN) Panic on CPU {}: fatal trap {}",
        cpu,
        vector_name(frame.vector)
    );
    crate::println!("(XEN) ****************************************");
    super::power::halt_fatal();
}

/// Prints the general-purpose registers of `frame`, Xen style.
pub fn dump_registers(f: &TrapFrame) {
    crate::println!(
        "(XEN) rax: {:016x}   rbx: {:016x}   rcx: {:016x}",
        f.rax,
        f.rbx,
        f.rcx
    );
    crate::println!(
        "(XEN) rdx: {:016x}   rsi: {:016x}   rdi: {:016x}",
        f.rdx,
        f.rsi,
        f.rdi
    );
    crate::println!(
        "(XEN) rbp: {:016x}   rsp: {:016x}   r8:  {:016x}",
        f.rbp,
        f.rsp,
        f.r8
    );
    crate::println!(
        "(XEN) r9:  {:016x}   r10: {:016x}   r11: {:016x}",
        f.r9,
        f.r10,
        f.r11
    );
    crate::println!(
        "(XEN) r12: {:016x}   r13: {:016x}   r14: {:016x}",
        f.r12,
        f.r13,
        f.r14
    );
    crate::println!(
        "(XEN) r15: {:016x}   cs:  {:04x}   ss: {:04x}",
        f.r15,
        f.cs,
        f.ss
    );
}

/// Walks the frame-pointer chain starting at `rbp`, staying inside the
/// current stack block so a corrupt chain cannot fault.
fn backtrace(mut rbp: u64) {
    let block_lo =
        super::percpu::cpu_info_addr(super::instr::read_rsp()) - super::percpu::STACK_TOP_OFFSET;
    let block_hi = block_lo + super::percpu::STACK_TOP_OFFSET;
    for _ in 0..32 {
        if rbp < block_lo || rbp + 16 > block_hi || !rbp.is_multiple_of(8) {
            break;
        }
        // SAFETY: rbp was checked to lie inside this CPU's mapped stack block.
        let (next, ret) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        if ret == 0 {
            break;
        }
        crate::println!("(XEN)    [<{:016x}>]", ret);
        rbp = next;
    }
}
