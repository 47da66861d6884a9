//! Per-CPU GDT and TSS, with Xen's selector layout.
//!
//! Xen reserves GDT page 14 onwards in every CPU's GDT (pages 0..13 hold a PV
//! guest's own GDT frames); the reserved entries start at selector 0xe000 and
//! give PV guests their flat ring-3 selectors (0xe023, 0xe02b, 0xe033).
//! Owns GDTR and TR.

use core::arch::asm;

/// First GDT page reserved for the hypervisor (Xen's FIRST_RESERVED_GDT_PAGE).
pub const FIRST_RESERVED_GDT_PAGE: usize = 14;
/// First reserved GDT entry.
pub const FIRST_RESERVED_GDT_ENTRY: usize = FIRST_RESERVED_GDT_PAGE * 4096 / 8;
/// Pages in a CPU's GDT (the 14 guest pages and the reserved page).
pub const GDT_PAGES: usize = FIRST_RESERVED_GDT_PAGE + 1;

/// Ring-0 64-bit code (Xen's `__HYPERVISOR_CS`).
pub const HYPERVISOR_CS: u16 = 0xe008;
/// Ring-0 data (Xen's `__HYPERVISOR_DS32`; used as SS).
pub const HYPERVISOR_DS: u16 = 0xe010;
/// Ring-3 32-bit code for PV guests (`FLAT_RING3_CS32`).
pub const RING3_CS32: u16 = 0xe023;
/// Ring-3 data for PV guests (`FLAT_RING3_DS32`, also `FLAT_RING3_SS64`).
pub const RING3_DS: u16 = 0xe02b;
/// Ring-3 64-bit code for PV guests (`FLAT_RING3_CS64`).
pub const RING3_CS64: u16 = 0xe033;
/// The TSS descriptor (two entries).
pub const TSS_SELECTOR: u16 = 0xe040;
/// The LDT descriptor of the running vCPU (two entries; Xen's LDT_ENTRY).
pub const LDT_SELECTOR: u16 = 0xe050;
/// Pages of a CPU's LDT window: the largest LDT (8192 entries).
pub const LDT_PAGES: usize = 16;

/// Descriptors of the reserved page, from selector 0xe000 (Intel SDM vol 3
/// §3.4.5: base/limit/type/S/DPL/P/L/D/G encoded in one quadword).
const RESERVED_DESCRIPTORS: [u64; 8] = [
    0,                     // 0xe000: unused
    0x00af_9a00_0000_ffff, // 0xe008: ring 0 code, 64-bit
    0x00cf_9200_0000_ffff, // 0xe010: ring 0 data
    0,                     // 0xe018: reserved
    0x00cf_fa00_0000_ffff, // 0xe023: ring 3 code, compatibility mode
    0x00cf_f200_0000_ffff, // 0xe02b: ring 3 data
    0x00af_fa00_0000_ffff, // 0xe033: ring 3 code, 64-bit
    0x00cf_9a00_0000_ffff, // 0xe038: ring 0 code, compatibility mode
];

/// The 64-bit task state segment (Intel SDM vol 3 §8.7).
#[repr(C, packed(4))]
pub struct Tss {
    _reserved0: u32,
    /// Stack pointers loaded on a privilege change to rings 0–2.
    pub rsp: [u64; 3],
    _reserved1: u64,
    /// Interrupt stack table.
    pub ist: [u64; 7],
    _reserved2: u64,
    _reserved3: u16,
    /// Offset of the I/O permission bitmap (past the limit: none).
    pub iomap_base: u16,
}

impl Tss {
    /// An empty TSS with no I/O bitmap.
    pub const fn new() -> Self {
        Tss {
            _reserved0: 0,
            rsp: [0; 3],
            _reserved1: 0,
            ist: [0; 7],
            _reserved2: 0,
            _reserved3: 0,
            iomap_base: core::mem::size_of::<Tss>() as u16,
        }
    }
}

impl Default for Tss {
    fn default() -> Self {
        Self::new()
    }
}

/// Fills the reserved page of the GDT at `gdt` (GDT_PAGES pages) and loads
/// GDTR, the segment registers and TR.
///
/// # Safety
/// `gdt` must point to `GDT_PAGES` zeroed, writable pages that live forever
/// and belong to this CPU; `tss` must be this CPU's TSS, living forever.
pub unsafe fn load(gdt: *mut u64, tss: *const Tss) {
    let base = FIRST_RESERVED_GDT_ENTRY;
    // SAFETY: the GDT has GDT_PAGES pages: entries up to base+10 are in bounds.
    unsafe {
        for (i, d) in RESERVED_DESCRIPTORS.iter().enumerate() {
            gdt.add(base + i).write(*d);
        }
        let tss_base = tss as u64;
        let limit = (core::mem::size_of::<Tss>() - 1) as u64;
        // Available 64-bit TSS (type 9), present, DPL 0.
        let low = (limit & 0xffff)
            | ((tss_base & 0xff_ffff) << 16)
            | (0x89 << 40)
            | ((limit >> 16) & 0xf) << 48
            | ((tss_base >> 24) & 0xff) << 56;
        let tss_idx = TSS_SELECTOR as usize / 8;
        gdt.add(tss_idx).write(low);
        gdt.add(tss_idx + 1).write(tss_base >> 32);
    }
    let limit = (LDT_SELECTOR as usize + 16 - 1) as u16;
    let gdtr = DescriptorPointer {
        limit,
        base: gdt as u64,
    };
    // SAFETY: the GDT just written holds valid code/data/TSS descriptors at
    // the selectors loaded here; the far return reloads CS with 0xe008.
    unsafe {
        asm!(
            "lgdt [{gdtr}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ss, {ds:x}",
            "xor {tmp:e}, {tmp:e}",
            "mov ds, {tmp:x}",
            "mov es, {tmp:x}",
            "ltr {tss:x}",
            // No LDT until a vCPU sets one (a clean LDTR: QEMU leaves the
            // reset-time limit of 0xffff in place until the first lldt).
            "lldt {tmp:x}",
            gdtr = in(reg) &gdtr,
            cs = in(reg) u64::from(HYPERVISOR_CS),
            ds = in(reg) u64::from(HYPERVISOR_DS),
            tss = in(reg) u64::from(TSS_SELECTOR),
            tmp = out(reg) _,
        );
    }
}

/// Points this CPU's LDT descriptor at `ents` entries at `base` (its LDT
/// window) and loads LDTR; `ents == 0` loads the null LDT.
///
/// # Safety
/// `gdt` must be this CPU's GDT (loaded by [`load`]); `[base, base +
/// ents * 8)` must stay mapped to checked descriptor pages while loaded.
pub unsafe fn load_ldt(gdt: *mut u64, base: u64, ents: u64) {
    if ents == 0 {
        // SAFETY: the null selector disables the LDT.
        unsafe { asm!("lldt {0:x}", in(reg) 0u16, options(nostack, preserves_flags)) };
        return;
    }
    let limit = ents * 8 - 1;
    // LDT (type 2), present, DPL 0.
    let low = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x82 << 40)
        | ((limit >> 16) & 0xf) << 48
        | ((base >> 24) & 0xff) << 56;
    let idx = LDT_SELECTOR as usize / 8;
    // SAFETY: the GDT's reserved page holds entries idx and idx + 1 (inside
    // GDTR's limit); the descriptor describes the caller's checked window.
    unsafe {
        gdt.add(idx).write_volatile(low);
        gdt.add(idx + 1).write_volatile(base >> 32);
        asm!("lldt {0:x}", in(reg) LDT_SELECTOR, options(nostack, preserves_flags));
    }
}

/// The operand of LGDT/LIDT.
#[repr(C, packed)]
pub struct DescriptorPointer {
    /// Size of the table minus one.
    pub limit: u16,
    /// Linear address of the table.
    pub base: u64,
}
