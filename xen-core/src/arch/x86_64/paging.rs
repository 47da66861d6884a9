//! xen-core's own page tables (Xen's `idle_pg_table`).
//!
//! The hypervisor lives in the L4 slots Xen reserves in every x86_64 guest
//! (256..=271): the image at XEN_VIRT_START (4 KiB pages, W^X: text RX,
//! read-only data R+NX, data RW+NX, stack guard pages unmapped), and a direct
//! map of all RAM at DIRECTMAP_VIRT_START (RW+NX). A PV guest's L4 copies those
//! slots, so every table below them is shared with all guests.

use super::instr::{invlpg, write_cr3};
use super::pool;
use spin::Mutex;
use xen_core::mm::pte::PteFlags;

/// Where the image is linked (Xen 4.17's XEN_VIRT_START).
pub const XEN_VIRT_START: u64 = 0xFFFF_82D0_4000_0000;
/// Start of the direct map of machine memory (Xen's DIRECTMAP_VIRT_START).
pub const DIRECTMAP_VIRT_START: u64 = 0xFFFF_8300_0000_0000;
/// Start of the hypervisor's uncached I/O mappings (inside the direct map's
/// L4 range, above any RAM we could have).
pub const IOREMAP_VIRT_START: u64 = 0xFFFF_82C0_0000_0000;
/// First and last L4 slot owned by the hypervisor in every address space.
pub const HYPERVISOR_L4_SLOTS: core::ops::RangeInclusive<usize> = 256..=271;

const PAGE: u64 = 4096;
const LARGE: u64 = 2 << 20;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __data_end: u8;
    static bsp_stack: u8;
}

struct Tables {
    l4_phys: u64,
    next_ioremap: u64,
}

static NX: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The no-execute bit if the CPU has it (EFER.NXE is set at boot), else 0.
pub fn nx() -> u64 {
    NX.load(core::sync::atomic::Ordering::Relaxed)
}

static TABLES: Mutex<Tables> = Mutex::new(Tables {
    l4_phys: 0,
    next_ioremap: IOREMAP_VIRT_START,
});

/// Virtual to physical for addresses in the image (and the boot pool).
pub fn image_virt_to_phys(va: u64) -> u64 {
    va - XEN_VIRT_START
}

/// Physical to virtual through the direct map.
pub fn phys_to_virt(pa: u64) -> u64 {
    DIRECTMAP_VIRT_START + pa
}

/// Accesses a page-table page by its physical address. Before the switch the
/// tables come from the boot pool (inside the image), afterwards too: the
/// pool is in the image, so both views work through `XEN_VIRT_START`.
fn table(pa: u64) -> *mut u64 {
    (pa + XEN_VIRT_START) as *mut u64
}

fn new_table() -> u64 {
    let va = pool::alloc_page().expect("boot pool exhausted while building page tables");
    image_virt_to_phys(va)
}

fn index(va: u64, level: u32) -> usize {
    ((va >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

/// Returns the table at `level - 1` under entry `idx` of `t`, creating it.
fn next_level(t: u64, idx: usize) -> u64 {
    // SAFETY: `t` is a page-table page from the boot pool, mapped in the image.
    let e = unsafe { table(t).add(idx).read() };
    if e & PteFlags::PRESENT.bits() != 0 {
        assert!(e & PteFlags::PSE.bits() == 0, "mapping over a large page");
        return e & ADDR_MASK;
    }
    let n = new_table();
    // Intermediate entries grant everything; leaves restrict.
    // SAFETY: as above; idx < 512.
    unsafe {
        table(t)
            .add(idx)
            .write(n | PteFlags::PRESENT.bits() | PteFlags::RW.bits())
    };
    n
}

/// Maps `[va, va+len)` to `[pa, pa+len)` with `flags`, using 2 MiB pages
/// where both addresses are aligned.
fn map_range(l4: u64, mut va: u64, mut pa: u64, len: u64, flags: u64) {
    let end = va + len;
    while va < end {
        let l3 = next_level(l4, index(va, 4));
        let l2 = next_level(l3, index(va, 3));
        if va.is_multiple_of(LARGE) && pa.is_multiple_of(LARGE) && end - va >= LARGE {
            // SAFETY: l2 is a pool page table; the index is < 512.
            unsafe {
                table(l2)
                    .add(index(va, 2))
                    .write(pa | flags | PteFlags::PSE.bits())
            };
            va += LARGE;
            pa += LARGE;
            continue;
        }
        let l1 = next_level(l2, index(va, 2));
        // SAFETY: l1 is a pool page table; the index is < 512.
        unsafe { table(l1).add(index(va, 1)).write(pa | flags) };
        va += PAGE;
        pa += PAGE;
    }
}

/// Removes the 4 KiB mapping of `va` (used for stack guard pages).
pub fn unmap_page(va: u64) {
    let t = TABLES.lock();
    let mut tbl = t.l4_phys;
    for level in (2..=4).rev() {
        // SAFETY: walking our own tables, all in the boot pool.
        let e = unsafe { table(tbl).add(index(va, level)).read() };
        if e & PteFlags::PRESENT.bits() == 0 || e & PteFlags::PSE.bits() != 0 {
            return;
        }
        tbl = e & ADDR_MASK;
    }
    // SAFETY: tbl is an L1 page-table page of ours.
    unsafe { table(tbl).add(index(va, 1)).write(0) };
    invlpg(va);
}

fn sym(s: &u8) -> u64 {
    s as *const u8 as u64
}

/// Builds the idle page tables and switches this CPU to them. `ram` lists
/// the machine's RAM ranges (start, end) for the direct map.
pub fn init(ram: &[(u64, u64)], nx: bool) {
    let nx = if nx { PteFlags::NX.bits() } else { 0 };
    NX.store(nx, core::sync::atomic::Ordering::Relaxed);
    let l4 = new_table();
    // Touch every hypervisor L4 slot so guests that copy them share the
    // tables below (later additions then show up everywhere).
    for slot in HYPERVISOR_L4_SLOTS {
        next_level(l4, slot);
    }
    // SAFETY: the linker-script symbols mark page-aligned section bounds.
    let (ts, te, rs, re, ds, de) = unsafe {
        (
            sym(&__text_start),
            sym(&__text_end),
            sym(&__rodata_start),
            sym(&__rodata_end),
            sym(&__data_start),
            sym(&__data_end),
        )
    };
    let p = PteFlags::PRESENT.bits() | PteFlags::GLOBAL.bits();
    map_range(l4, ts, image_virt_to_phys(ts), te - ts, p);
    map_range(l4, rs, image_virt_to_phys(rs), re - rs, p | nx);
    // Data and .bss with 4 KiB pages only, so guard pages can be punched.
    let mut va = ds;
    while va < de {
        map_range(
            l4,
            va,
            image_virt_to_phys(va),
            PAGE,
            p | PteFlags::RW.bits() | nx,
        );
        va += PAGE;
    }
    for &(start, end) in ram {
        map_range(
            l4,
            phys_to_virt(start),
            start,
            end - start,
            p | PteFlags::RW.bits() | nx,
        );
    }
    {
        let mut t = TABLES.lock();
        t.l4_phys = l4;
    }
    // SAFETY: the new tables map the image (text, rodata, data, .bss with the
    // current stack and the pool) at the same virtual addresses as the boot
    // tables, so execution continues seamlessly.
    unsafe { write_cr3(l4) };
    // The BSP's guard page.
    // SAFETY: bsp_stack is the linker symbol of the BSP stack block.
    punch_guard(sym(unsafe { &bsp_stack }));
}

/// Unmaps the guard page at the bottom of a stack block.
pub fn punch_guard(block: u64) {
    unmap_page(block);
}

/// Physical address of the idle L4 (what APs and idle CPUs load into CR3).
pub fn idle_l4() -> u64 {
    TABLES.lock().l4_phys
}

/// The hypervisor's L4 entries, read once: every slot gets its L3 in
/// [`init`] and its last flag (USER, for the M2P) in [`map_m2p`], both
/// before the first domain; from then on only lower levels change.
static HYPERVISOR_L4: spin::Once<[u64; 16]> = spin::Once::new();

/// The 16 hypervisor L4 entries every PV guest's L4 must carry.
pub fn hypervisor_l4_entries() -> &'static [u64; 16] {
    HYPERVISOR_L4.call_once(|| {
        let l4 = idle_l4();
        let mut out = [0u64; 16];
        for (i, slot) in HYPERVISOR_L4_SLOTS.enumerate() {
            // SAFETY: the idle L4 is a pool page table.
            out[i] = unsafe { table(l4).add(slot).read() };
        }
        out
    })
}

/// Read-only machine-to-phys table every PV guest sees (Xen's
/// RO_MPT_VIRT_START = MACH2PHYS_VIRT_START).
pub const RO_MPT_VIRT_START: u64 = 0xFFFF_8000_0000_0000;

/// Maps the M2P table (`len` bytes at machine address `pa`) read-only and
/// user-accessible at RO_MPT_VIRT_START, so PV guests can read it.
pub fn map_m2p(pa: u64, len: u64) {
    assert!(
        !HYPERVISOR_L4.is_completed(),
        "the M2P is mapped after the hypervisor's L4 entries were handed out"
    );
    let l4 = TABLES.lock().l4_phys;
    // The path down to the M2P must allow user access at every level.
    let mut va = RO_MPT_VIRT_START;
    while va < RO_MPT_VIRT_START + len {
        let l3 = next_level(l4, index(va, 4));
        let l2 = next_level(l3, index(va, 3));
        for (t, i) in [(l4, index(va, 4)), (l3, index(va, 3))] {
            // SAFETY: our own pool page tables; i < 512.
            unsafe { *table(t).add(i) |= PteFlags::USER.bits() };
        }
        let l1 = next_level(l2, index(va, 2));
        // SAFETY: as above.
        unsafe { *table(l2).add(index(va, 2)) |= PteFlags::USER.bits() };
        // SAFETY: as above.
        unsafe {
            table(l1).add(index(va, 1)).write(
                (pa + va - RO_MPT_VIRT_START)
                    | PteFlags::PRESENT.bits()
                    | PteFlags::USER.bits()
                    | nx(),
            )
        };
        va += PAGE;
    }
}

/// Maps `len` bytes of device memory at `pa` uncached; returns the VA.
pub fn ioremap(pa: u64, len: u64) -> u64 {
    let mut t = TABLES.lock();
    let off = pa % PAGE;
    let base = pa - off;
    let size = (len + off).next_multiple_of(PAGE);
    let va = t.next_ioremap;
    t.next_ioremap += size + PAGE;
    let l4 = t.l4_phys;
    drop(t);
    let mut i = 0;
    while i < size {
        map_range(
            l4,
            va + i,
            base + i,
            PAGE,
            PteFlags::PRESENT.bits()
                | PteFlags::RW.bits()
                | PteFlags::PCD.bits()
                | PteFlags::PWT.bits()
                | nx(),
        );
        i += PAGE;
    }
    va + off
}

/// Walks the hypervisor's half of the idle tables and counts leaf mappings
/// that are both writable and executable (there must be none), returning
/// (leaves checked, W+X leaves).
pub fn audit_wx() -> (u64, u64) {
    fn walk(t: u64, level: u32, checked: &mut u64, bad: &mut u64) {
        for i in 0..512usize {
            // SAFETY: walking our own pool page tables.
            let e = unsafe { table(t).add(i).read() };
            if e & PteFlags::PRESENT.bits() == 0 {
                continue;
            }
            let leaf = level == 1 || e & PteFlags::PSE.bits() != 0;
            if leaf {
                *checked += 1;
                if e & PteFlags::RW.bits() != 0 && e & PteFlags::NX.bits() == 0 {
                    *bad += 1;
                }
            } else {
                walk(e & ADDR_MASK, level - 1, checked, bad);
            }
        }
    }
    let l4 = idle_l4();
    let (mut checked, mut bad) = (0, 0);
    for slot in HYPERVISOR_L4_SLOTS {
        // SAFETY: the idle L4 is a pool page table.
        let e = unsafe { table(l4).add(slot).read() };
        if e & PteFlags::PRESENT.bits() != 0 {
            walk(e & ADDR_MASK, 3, &mut checked, &mut bad);
        }
    }
    (checked, bad)
}

/// Points the 4 KiB mapping of `va` (in the image or boot pool) at machine
/// address `pa`, read-write for xen-core only, and flushes it locally.
pub fn remap_page(va: u64, pa: u64) {
    let t = TABLES.lock();
    let mut tbl = t.l4_phys;
    for level in (2..=4).rev() {
        // SAFETY: walking our own tables, all in the boot pool.
        let e = unsafe { table(tbl).add(index(va, level)).read() };
        if e & PteFlags::PRESENT.bits() == 0 || e & PteFlags::PSE.bits() != 0 {
            return;
        }
        tbl = e & ADDR_MASK;
    }
    let flags = PteFlags::PRESENT.bits() | PteFlags::RW.bits() | nx();
    // SAFETY: tbl is an L1 page-table page of ours; callers only remap
    // pages of their own per-CPU GDT.
    unsafe { table(tbl).add(index(va, 1)).write((pa & ADDR_MASK) | flags) };
    super::instr::invlpg(va);
}
