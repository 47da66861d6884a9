//! The first instructions: the two boot entry points and the switch to long mode.
//!
//! Owns the Multiboot2 header, the PVH ELF note, the bootstrap GDT and page
//! tables, and the jump into the higher half. Trusts the boot loader to have
//! put us in 32-bit protected mode with paging off (both protocols promise it).
//! Both entries end in `xen_core_start(protocol, info_paddr)` on the BSP stack.

use core::arch::global_asm;

/// How the boot loader reached us; passed to `xen_core_start` in `edi`.
pub const BOOT_PROTOCOL_PVH: u32 = 1;
/// Multiboot2 (GRUB); `esi` holds the physical address of the info structure.
/// (3 means a Multiboot2 entry whose `eax` did not hold the magic.)
pub const BOOT_PROTOCOL_MULTIBOOT2: u32 = 2;

global_asm!(
    r#"
    .set MB2_MAGIC,            0xe85250d6
    .set MB2_BOOTLOADER_MAGIC, 0x36d76289
    .set XEN_ELFNOTE_PHYS32_ENTRY, 18
    .set BOOT_STACK_SIZE,      4096
    .set MSR_EFER,             0xc0000080
    .set EFER_LME,             (1 << 8)
    .set EFER_NXE,             (1 << 11)
    .set CR0_PE,               (1 << 0)
    .set CR0_WP,               (1 << 16)
    .set CR0_PG,               (1 << 31)
    .set CR4_PAE,              (1 << 5)
    .set PTE_P_RW,             0x3
    .set PDE_2M,               0x83

    /* ---- Multiboot2 header (must be in the first 32 KiB, 8-byte aligned) ---- */
    .section .multiboot2, "a"
    .balign 8
mb2_header:
    .long MB2_MAGIC
    .long 0                              /* architecture: i386 protected mode */
    .long mb2_header_end - mb2_header
    .long 0x100000000 - (MB2_MAGIC + (mb2_header_end - mb2_header))
    .balign 8
    .short 3, 0                          /* entry address tag */
    .long 12
    .long mb2_start32
    .balign 8
    .short 0, 0                          /* end tag */
    .long 8
mb2_header_end:

    /* ---- PVH entry note: QEMU -kernel and Xen's PVH loaders use it ---- */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 4
    .long XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .balign 4
    .long pvh_start32
    .balign 4

    /* ---- 32-bit entry code, linked at its physical address ---- */
    .section .boot.text, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov $1, %edi
    mov %ebx, %esi
    jmp boot_common32

    .global mb2_start32
mb2_start32:
    cli
    cld
    mov $2, %edi
    cmp $MB2_BOOTLOADER_MAGIC, %eax
    je 1f
    mov $3, %edi
1:  mov %ebx, %esi

boot_common32:
    mov $boot32_stack_top, %esp
    /* EFER: long mode, and no-execute when the CPU has it (W^X needs it). */
    mov $0x80000001, %eax
    cpuid
    xor %ebx, %ebx
    bt $20, %edx
    jnc 2f
    mov $EFER_NXE, %ebx
2:  mov $MSR_EFER, %ecx
    rdmsr
    or $EFER_LME, %eax
    or %ebx, %eax
    wrmsr
    mov %cr4, %eax
    or $CR4_PAE, %eax
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov %cr0, %eax
    or $(CR0_PG | CR0_WP | CR0_PE), %eax
    mov %eax, %cr0
    lgdt boot_gdtr
    ljmp $0x08, $start64_low

    .code64
start64_low:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    movabs $start64_high, %rax
    jmp *%rax

    /* ---- bootstrap data ---- */
    .section .boot.data, "aw"
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff            /* 0x08: ring 0 code, 64-bit */
    .quad 0x00cf92000000ffff            /* 0x10: ring 0 data */
boot_gdt_end:
    .balign 16
boot_gdtr:
    .short boot_gdt_end - boot_gdt - 1
    .quad boot_gdt
    .balign 16
boot32_stack:
    .fill 256, 1, 0
boot32_stack_top:

    /* Bootstrap page tables: the low 4 GiB identity-mapped with 2 MiB pages,
       and the first 1 GiB again at XEN_VIRT_START (L4 slot 261, L3 slot 321). */
    .section .boot.pagetables, "aw"
    .balign 4096
    .global boot_pml4
boot_pml4:
    .quad boot_pdpt_low + PTE_P_RW
    .fill 260, 8, 0
    .quad boot_pdpt_high + PTE_P_RW
    .fill 250, 8, 0
boot_pdpt_low:
    .quad boot_pd_ident + 0 * 4096 + PTE_P_RW
    .quad boot_pd_ident + 1 * 4096 + PTE_P_RW
    .quad boot_pd_ident + 2 * 4096 + PTE_P_RW
    .quad boot_pd_ident + 3 * 4096 + PTE_P_RW
    .fill 508, 8, 0
boot_pdpt_high:
    .fill 321, 8, 0
    .quad boot_pd_ident + PTE_P_RW
    .fill 190, 8, 0
boot_pd_ident:
    .set i, 0
    .rept 2048
    .quad (i << 21) + PDE_2M
    .set i, i + 1
    .endr

    /* ---- 64-bit entry in the higher half ---- */
    .section .text.entry, "ax"
start64_high:
    /* Zero .bss (loaders should, but a fresh stack must not hold junk). */
    lea __bss_start(%rip), %rdx
    lea __bss_end(%rip), %rcx
    sub %rdx, %rcx
    mov %edi, %r8d
    mov %rdx, %rdi
    xor %eax, %eax
    rep stosb
    mov %r8d, %edi
    lea (bsp_stack_top - 512 - 176)(%rip), %rsp    /* below CpuInfo and the guest frame */
    xor %ebp, %ebp
    mov %esi, %esi
    call xen_core_start
3:  cli
    hlt
    jmp 3b

    .section .bss.stack, "aw", @nobits
    .balign 65536
    .global bsp_stack
bsp_stack:
    .fill 65536, 1, 0
    .global bsp_stack_top
bsp_stack_top:
    "#,
    options(att_syntax)
);
