//! The first instructions: both entry conventions, the 1:1 page tables,
//! the switch to long mode (for the BSP and, through the SIPI trampoline,
//! the AP), then the Rust runtime start and the binary's `main`.
//!
//! Entry: 32-bit protected mode, paging off, as both protocols promise.
//! * PVH (`XEN_ELFNOTE_PHYS32_ENTRY`, QEMU `-kernel`): EBX = the physical
//!   address of `hvm_start_info` (magic 0x336ec578).
//! * Multiboot2 (header magic 0xE85250D6, entry-address tag): EAX =
//!   0x36d76289, EBX = the boot information.
//!
//! Memory: the image is linked and loaded at 1 MiB (`bare.ld`); .bss holds
//! the page tables, the stacks and the IDT. The boot code maps the low
//! 4 GiB 1:1 with 2 MiB pages (the top GiB uncached) and nothing else.
//! The AP trampoline is copied to 0x8000 when an AP is started (`smp`).

use super::{idt, lapic, pic, pit, serial};
use crate::bootinfo::Protocol;
use core::arch::global_asm;

/// What the boot loader handed over.
#[derive(Debug, Clone, Copy)]
pub struct Boot {
    /// How the kernel was entered (`None`: the entry stub passed junk).
    pub protocol: Option<Protocol>,
    /// Physical address of `hvm_start_info` or the Multiboot2 information.
    pub info: u64,
}

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// The image's physical extent.
pub fn image_range() -> (u64, u64) {
    (
        &raw const __image_start as u64,
        &raw const __image_end as u64,
    )
}

unsafe extern "Rust" {
    /// The binary's main (see [`entry!`](crate::entry)).
    fn bare_main(boot: Boot) -> !;
}

/// Names the binary's `fn(Boot) -> !` as the kernel's main.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(export_name = "bare_main")]
        fn __bare_main(boot: $crate::metal::boot::Boot) -> ! {
            let main: fn($crate::metal::boot::Boot) -> ! = $main;
            main(boot)
        }
    };
}

/// The BSP's first Rust code: console, PIC out of the way, IDT, PIT clock,
/// local APIC; then the binary's main.
#[unsafe(no_mangle)]
extern "C" fn bare_rust_start(protocol: u32, info: u32) -> ! {
    serial::init();
    pic::remap_and_mask();
    idt::init();
    idt::load();
    pit::init();
    let boot = Boot {
        protocol: Protocol::from_stub(protocol),
        info: u64::from(info),
    };
    let (start, end) = image_range();
    crate::println!(
        "bare: booted via {} (boot information at {:#x}); image at {start:#x}-{end:#x}",
        boot.protocol.map_or("an unknown entry", Protocol::name),
        boot.info
    );
    if let Err(e) = lapic::init(idt::SPURIOUS_VECTOR) {
        crate::println!("bare: local APIC not usable: {e}");
    }
    // SAFETY: `bare_main` is the binary's `fn(Boot) -> !`, exported under
    // that name by `entry!`; a kernel without it does not link.
    unsafe { bare_main(boot) }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    serial::emergency(format_args!(
        "bare: panic: FAILED {info}\nbare: checks FAILED (panic)\n"
    ));
    super::power::power_off()
}

global_asm!(
    r#"
    .set MB2_HEADER_MAGIC,     0xe85250d6
    .set MB2_BOOTLOADER_MAGIC, 0x36d76289
    .set XEN_ELFNOTE_PHYS32_ENTRY, 18
    .set MSR_EFER,             0xc0000080
    .set EFER_LME,             (1 << 8)
    .set CR0_PE,               (1 << 0)
    .set CR0_PG,               (1 << 31)
    .set CR4_PAE,              (1 << 5)
    .set PTE_P_RW,             0x3
    .set PDE_2M,               0x83
    .set PTE_PWT_PCD,          0x18
    .set UNCACHED_FIRST_PDE,   1536       /* 3 GiB: APICs, PCI holes */
    .set CODE64,               0x08
    .set DATA,                 0x10
    .set CODE32,               0x18

    /* ---- Multiboot2 header: in the file's first 32 KiB, 8-aligned ---- */
    .section .multiboot2, "a"
    .balign 8
bare_mb2_header:
    .long MB2_HEADER_MAGIC
    .long 0                                /* i386 protected mode */
    .long bare_mb2_header_end - bare_mb2_header
    .long 0x100000000 - (MB2_HEADER_MAGIC + (bare_mb2_header_end - bare_mb2_header))
    .balign 8
    .short 3, 0                            /* entry address tag */
    .long 12
    .long bare_mb2_start32
    .balign 8
    .short 0, 0                            /* end tag */
    .long 8
bare_mb2_header_end:

    /* ---- PVH entry note (QEMU reads the address as 8 bytes for ELF64) ---- */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 8
    .long XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .balign 4
    .quad bare_pvh_start32

    /* ---- 32-bit entries (the BSP) ---- */
    .section .boot.text, "ax"
    .code32
    .global bare_pvh_start32
bare_pvh_start32:
    cli
    cld
    mov $1, %edi
    mov %ebx, %esi
    jmp bare_common32

    .global bare_mb2_start32
bare_mb2_start32:
    cli
    cld
    mov $2, %edi
    cmp $MB2_BOOTLOADER_MAGIC, %eax
    je 1f
    mov $3, %edi
1:  mov %ebx, %esi

bare_common32:
    /* Zero .bss (page tables, stacks); edi/esi carry the boot values. */
    mov %edi, %ebp
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb
    mov %ebp, %edi

    /* PML4[0] -> PDPT; PDPT[0..4] -> four PDs; 2048 PDEs of 2 MiB each. */
    mov $bare_pdpt, %eax
    or $PTE_P_RW, %eax
    mov %eax, bare_pml4
    mov $bare_pd, %eax
    or $PTE_P_RW, %eax
    xor %ecx, %ecx
2:  mov %eax, bare_pdpt(,%ecx,8)
    add $4096, %eax
    inc %ecx
    cmp $4, %ecx
    jb 2b
    xor %ecx, %ecx
3:  mov %ecx, %eax
    shl $21, %eax
    or $PDE_2M, %eax
    cmp $UNCACHED_FIRST_PDE, %ecx
    jb 4f
    or $PTE_PWT_PCD, %eax
4:  mov %eax, bare_pd(,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jb 3b

    .macro ENTER_LONG_MODE target
    mov %cr4, %eax
    or $CR4_PAE, %eax
    mov %eax, %cr4
    mov $bare_pml4, %eax
    mov %eax, %cr3
    mov $MSR_EFER, %ecx
    rdmsr
    or $EFER_LME, %eax
    wrmsr
    mov %cr0, %eax
    or $(CR0_PG | CR0_PE), %eax
    mov %eax, %cr0
    lgdt bare_gdtr
    ljmp $CODE64, $\target
    .endm

    ENTER_LONG_MODE bare_start64

    /* ---- The AP: real-mode trampoline, copied to 0x8000 (smp.rs) ---- */
    .code16
    .global bare_ap_trampoline
bare_ap_trampoline:
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    lgdtl (bare_ap_gdtr - bare_ap_trampoline)
    mov %cr0, %eax
    or $CR0_PE, %eax
    mov %eax, %cr0
    ljmpl $CODE32, $bare_ap_start32
    .balign 8
bare_ap_gdtr:
    .short bare_gdt_end - bare_gdt - 1
    .long bare_gdt
    .global bare_ap_trampoline_end
bare_ap_trampoline_end:

    .code32
bare_ap_start32:
    mov $DATA, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    ENTER_LONG_MODE bare_ap_start64

    /* ---- 64-bit ---- */
    .code64
bare_start64:
    mov $DATA, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    lea bare_bsp_stack_top(%rip), %rsp
    xor %ebp, %ebp
    mov %edi, %edi
    mov %esi, %esi
    call bare_rust_start
5:  cli
    hlt
    jmp 5b

bare_ap_start64:
    mov $DATA, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    mov bare_ap_stack_top(%rip), %rsp
    xor %ebp, %ebp
    call bare_ap_rust
6:  cli
    hlt
    jmp 6b

    /* ---- GDT: one layout for the BSP and the AP ---- */
    .section .data.bare_gdt, "aw"
    .balign 16
bare_gdt:
    .quad 0
    .quad 0x00af9a000000ffff               /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff               /* 0x10: data */
    .quad 0x00cf9a000000ffff               /* 0x18: 32-bit code (the AP) */
bare_gdt_end:
    .balign 16
bare_gdtr:
    .short bare_gdt_end - bare_gdt - 1
    .quad bare_gdt

    /* ---- page tables and the BSP's stack (zeroed by the entry) ---- */
    .section .bss.bare_boot, "aw", @nobits
    .balign 4096
    .global bare_pml4
bare_pml4:
    .skip 4096
bare_pdpt:
    .skip 4096
bare_pd:
    .skip 4 * 4096
    .balign 16
bare_bsp_stack:
    .skip 65536
bare_bsp_stack_top:
    "#,
    options(att_syntax)
);
