//! Bringing up the application processors (INIT-SIPI-SIPI, Intel SDM vol 3
//! §9.4.4) through a real-mode trampoline copied to low memory, and the
//! per-CPU setup every CPU runs (GDT, TSS, IDT, syscall MSRs, APIC timer).

use super::apic;
use super::entry::syscall_entry;
use super::gdt::{self, GDT_PAGES, HYPERVISOR_CS, RING3_CS32};
use super::instr::{self, msr, rdmsr, wrmsr};
use super::paging::{self, phys_to_virt};
use super::percpu::{self, CpuInfo, IST_TOP_OFFSETS, MAX_CPUS, STACK_BLOCK_SIZE};
use super::pool;
use core::arch::global_asm;
use core::sync::atomic::{AtomicU32, Ordering};

/// Physical page the trampoline runs from (below 1 MiB, 4 KiB aligned).
pub const TRAMPOLINE_PHYS: u64 = 0x8000;

const ICR_INIT: u32 = 0x0000_4500;
const ICR_STARTUP: u32 = 0x0000_4600;
/// RFLAGS bits cleared on SYSCALL: TF, IF, DF, IOPL, NT, AC.
const SYSCALL_FMASK: u64 = 0x0004_7700;
const CR4_PGE: u64 = 1 << 7;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const CR4_SMEP: u64 = 1 << 20;

static CPUS_ONLINE: AtomicU32 = AtomicU32::new(0);
static APIC_IDS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(u32::MAX) }; MAX_CPUS];

/// The APIC ID of logical CPU `cpu`, once it is up.
pub fn apic_id_of(cpu: usize) -> Option<u32> {
    let id = APIC_IDS.get(cpu)?.load(Ordering::Acquire);
    (id != u32::MAX).then_some(id)
}

global_asm!(
    r#"
    .set TRAMP, 0x8000
    .section .rodata
    .balign 16
    .global ap_trampoline_start
ap_trampoline_start:
    .code16
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    lgdtl (tramp_gdtr - ap_trampoline_start)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $(TRAMP + tramp32 - ap_trampoline_start)
    .code32
tramp32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov (TRAMP + tramp_cr3 - ap_trampoline_start), %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx
    rdmsr
    or (TRAMP + tramp_efer - ap_trampoline_start), %eax
    wrmsr
    mov %cr0, %eax
    and $0x9fffffff, %eax
    or $0x80010001, %eax
    mov %eax, %cr0
    ljmp $0x18, $(TRAMP + tramp64 - ap_trampoline_start)
    .code64
tramp64:
    mov (TRAMP + tramp_stack - ap_trampoline_start), %rsp
    mov (TRAMP + tramp_cpu - ap_trampoline_start), %edi
    mov (TRAMP + tramp_entry - ap_trampoline_start), %rax
    jmp *%rax
    .balign 8
tramp_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
    .quad 0x00af9a000000ffff
tramp_gdtr:
    .short 31
    .long TRAMP + tramp_gdt - ap_trampoline_start
    .balign 8
    .global tramp_stack, tramp_entry, tramp_cr3, tramp_efer, tramp_cpu
tramp_stack: .quad 0
tramp_entry: .quad 0
tramp_cr3:   .long 0
tramp_efer:  .long 0
tramp_cpu:   .long 0
    .global ap_trampoline_end
ap_trampoline_end:
    "#,
    options(att_syntax)
);

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static tramp_stack: u8;
    static tramp_entry: u8;
    static tramp_cr3: u8;
    static tramp_efer: u8;
    static tramp_cpu: u8;
    static boot_pml4: u8;
}

/// Records the boot CPU's APIC ID (CPU 0).
pub fn set_bsp_apic_id(id: u32) {
    APIC_IDS[0].store(id, Ordering::Release);
}

/// Number of CPUs that reported in.
pub fn cpus_online() -> u32 {
    CPUS_ONLINE.load(Ordering::SeqCst)
}

/// Per-CPU setup; `block` is the CPU's stack block (already holding its
/// `CpuInfo`, initialised by the caller).
fn cpu_init(info: &'static mut CpuInfo) {
    let block = info.stack_top - percpu::STACK_TOP_OFFSET;
    info.tss.rsp[0] = info.stack_top;
    for (i, off) in IST_TOP_OFFSETS.iter().enumerate() {
        info.tss.ist[i] = block + off;
    }
    let gdt = pool::alloc(GDT_PAGES * 4096, 4096).expect("boot pool exhausted (GDT)");
    info.gdt_va.store(gdt, Ordering::Release);
    let ldt = pool::alloc(gdt::LDT_PAGES * 4096, 4096).expect("boot pool exhausted (LDT)");
    info.ldt_va.store(ldt, Ordering::Release);
    // SAFETY: `gdt` is fresh zeroed pool memory of GDT_PAGES pages, owned by
    // this CPU forever; the TSS lives in this CPU's CpuInfo forever.
    unsafe { gdt::load(gdt as *mut u64, &info.tss) };
    super::traps::load_idt();
    // SAFETY: xen-core's syscall entry expects exactly this setup: kernel
    // CS/SS from STAR[47:32], the guest's flat ring-3 selectors from
    // STAR[63:48], interrupts masked on entry, and KERNEL_GS_BASE pointing at
    // this CPU's CpuInfo (guests cannot reach it: they run in ring 3).
    unsafe {
        wrmsr(msr::EFER, rdmsr(msr::EFER) | msr::EFER_SCE);
        wrmsr(
            msr::STAR,
            (u64::from(RING3_CS32) << 48) | (u64::from(HYPERVISOR_CS) << 32),
        );
        wrmsr(msr::LSTAR, syscall_entry as *const () as u64);
        wrmsr(msr::CSTAR, syscall_entry as *const () as u64);
        wrmsr(msr::FMASK, SYSCALL_FMASK);
        wrmsr(msr::KERNEL_GS_BASE, info as *const CpuInfo as u64);
        wrmsr(msr::GS_BASE, 0);
    }
    let mut cr4 = instr::read_cr4() | CR4_PGE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    if instr::cpuid(7, 0).ebx & (1 << 7) != 0 {
        cr4 |= CR4_SMEP;
    }
    // SAFETY: PGE, OSFXSR/OSXMMEXCPT and SMEP (when present) only add
    // protection or enable state the CPU has; PAE stays on.
    unsafe { instr::write_cr4(cr4) };
}

/// Sets up the boot CPU on the stack block it booted on.
pub fn init_bsp(apic_id: u32) {
    let block = percpu::cpu_info_addr(instr::read_rsp()) - percpu::STACK_TOP_OFFSET;
    // SAFETY: the BSP runs on the static `bsp_stack` block, which is 64 KiB
    // aligned and mapped; its CpuInfo area has not been used yet.
    let info = unsafe { percpu::init_block(block, 0, apic_id) };
    cpu_init(info);
    CPUS_ONLINE.store(1, Ordering::SeqCst);
}

/// Starts every AP in `apic_ids` (the BSP's own ID is skipped).
pub fn start_aps(apic_ids: &[u32], bsp_apic_id: u32) {
    // SAFETY: linker symbols of the trampoline's bounds and parameters.
    let (start, end) = unsafe {
        (
            &ap_trampoline_start as *const u8,
            &ap_trampoline_end as *const u8,
        )
    };
    let len = end as usize - start as usize;
    let dst = phys_to_virt(TRAMPOLINE_PHYS) as *mut u8;
    // SAFETY: TRAMPOLINE_PHYS is a free RAM page below 1 MiB (the boot
    // information that lived there was copied out before), mapped by the
    // direct map; the source is the trampoline's bytes in .rodata.
    unsafe { core::ptr::copy_nonoverlapping(start, dst, len) };
    let param = |s: &u8| s as *const u8 as u64 - start as u64 + TRAMPOLINE_PHYS;
    // SAFETY: the parameter symbols lie inside the trampoline just copied.
    let (p_stack, p_entry, p_cr3, p_efer, p_cpu) = unsafe {
        (
            param(&tramp_stack),
            param(&tramp_entry),
            param(&tramp_cr3),
            param(&tramp_efer),
            param(&tramp_cpu),
        )
    };
    let wr64 = |pa: u64, v: u64| {
        // SAFETY: `pa` is a parameter slot in the trampoline page (direct map).
        unsafe { (phys_to_virt(pa) as *mut u64).write_volatile(v) }
    };
    let wr32 = |pa: u64, v: u32| {
        // SAFETY: as above.
        unsafe { (phys_to_virt(pa) as *mut u32).write_volatile(v) }
    };
    // SAFETY: boot_pml4 is the bootstrap L4 in the low boot section (linked
    // at its physical address), which identity-maps the trampoline and maps
    // the image at XEN_VIRT_START.
    wr32(p_cr3, unsafe { &boot_pml4 as *const u8 as u64 } as u32);
    wr32(p_efer, (rdmsr(msr::EFER) & 0xffff_ffff) as u32);
    wr64(p_entry, ap_entry as *const () as u64);
    let mut next_cpu = 1u32;
    for &apic_id in apic_ids.iter().filter(|&&id| id != bsp_apic_id) {
        let Some(block) = pool::alloc(STACK_BLOCK_SIZE as usize, STACK_BLOCK_SIZE as usize) else {
            log::warn!("boot pool exhausted: not starting APIC ID {apic_id}");
            break;
        };
        paging::punch_guard(block);
        // SAFETY: a fresh, mapped, 64 KiB-aligned pool block for this AP.
        let info = unsafe { percpu::init_block(block, next_cpu, apic_id) };
        // Start below the guest frame area at the top of the stack, with
        // the stack as a `call` leaves it (rsp = 8 mod 16): the trampoline
        // jumps to ap_entry, and 16-byte aligned locals (the FXRSTOR image)
        // are only aligned if the function starts as the ABI says.
        wr64(p_stack, info.stack_top - super::entry::TRAP_FRAME_SIZE - 8);
        wr32(p_cpu, next_cpu);
        let before = cpus_online();
        apic::send_ipi(apic_id, ICR_INIT);
        crate::time::udelay(10_000);
        for _ in 0..2 {
            apic::send_ipi(apic_id, ICR_STARTUP | (TRAMPOLINE_PHYS >> 12) as u32);
            crate::time::udelay(200);
            if cpus_online() > before {
                break;
            }
        }
        let deadline = crate::time::now_us() + 500_000;
        while cpus_online() == before && crate::time::now_us() < deadline {
            core::hint::spin_loop();
        }
        if cpus_online() == before {
            log::warn!("CPU{next_cpu} (APIC ID {apic_id}) did not come up");
            continue;
        }
        next_cpu += 1;
    }
}

/// Where an AP lands from the trampoline, on its own stack block.
extern "C" fn ap_entry(cpu: u32) -> ! {
    // SAFETY: the idle tables map everything this CPU touches from now on.
    unsafe { instr::write_cr3(paging::idle_l4()) };
    let rsp = instr::read_rsp();
    let addr = percpu::cpu_info_addr(rsp);
    // SAFETY: the BSP initialised this block's CpuInfo before sending SIPI
    // and does not touch it again.
    let info = unsafe { &mut *(addr as *mut CpuInfo) };
    debug_assert_eq!(info.cpu, cpu);
    cpu_init(info);
    apic::init_ap();
    apic::start_timer();
    APIC_IDS[cpu as usize].store(apic::id(), Ordering::Release);
    log::info!("CPU{} online (APIC ID {})", cpu, apic::id());
    CPUS_ONLINE.fetch_add(1, Ordering::SeqCst);
    crate::sched::idle_loop();
}
