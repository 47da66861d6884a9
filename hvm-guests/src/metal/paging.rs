//! Paging: the boot code's 1:1 map of the low 4 GiB (2 MiB pages, the top
//! GiB uncached for the APICs and PCI holes), and the paging check's second
//! mapping of one frame at [`ALIAS_VA`] through 4 KiB tables of its own,
//! and [`unmap_low_mib`] (the fuzzer's: the first MiB not mapped at all).
//! Owns PML4 slot 1; the boot code owns slot 0 (but for the first 2 MiB
//! once [`unmap_low_mib`] split them).

use super::cpu::{cr0, cr3, cr4, invlpg, rdmsr};
use crate::report::Why;
use crate::why;
use core::cell::UnsafeCell;

/// Where the probe frame is mapped a second time: PML4 slot 1 (512 GiB),
/// far above any RAM, so a hit there cannot be the 1:1 map.
pub const ALIAS_VA: u64 = 0x0000_0080_0000_0000;
const ALIAS_PML4_SLOT: usize = 1;

pub const CR0_PE: u64 = 1 << 0;
pub const CR0_PG: u64 = 1 << 31;
pub const CR4_PAE: u64 = 1 << 5;
pub const IA32_EFER: u32 = 0xc000_0080;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;
const PTE_PRESENT_WRITABLE: u64 = 0b11;
const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;

#[repr(C, align(4096))]
struct Page(UnsafeCell<[u64; 512]>);

// SAFETY: only the BSP touches these pages, in `alias_probe` and
// `unmap_low_mib`, which run once before any second CPU starts; the CPU's
// page walker reads them.
unsafe impl Sync for Page {}

impl Page {
    const fn new() -> Self {
        Page(UnsafeCell::new([0; 512]))
    }

    fn pa(&self) -> u64 {
        // 1:1 map: the address is the physical address.
        self.0.get() as u64
    }
}

static ALIAS_PDPT: Page = Page::new();
static ALIAS_PD: Page = Page::new();
static ALIAS_PT: Page = Page::new();
static PROBE: Page = Page::new();
static LOW_PT: Page = Page::new();

/// Maps the first 2 MiB through 4 KiB pages with the first MiB left out,
/// so a null or small pointer faults instead of reaching memory (the
/// boot information and firmware tables there are not needed any more).
/// The kernel image, linked at 1 MiB, stays mapped.
pub fn unmap_low_mib() -> Result<(), Why> {
    let (start, end) = super::boot::image_range();
    if start < 1 << 20 || end > 2 << 20 {
        return Err(why!(
            "the kernel image {start:#x}-{end:#x} is not inside the second MiB"
        ));
    }
    let pml4 = (cr3() & PTE_ADDR) as *const u64;
    // SAFETY: CR3 holds the boot code's PML4 in the 1:1 map; its slot 0
    // points at the boot PDPT, whose slot 0 points at the PD of the first
    // GiB (the boot code's layout, 1:1 mapped).
    let pd = unsafe {
        let pdpt = (pml4.read_volatile() & PTE_ADDR) as *const u64;
        (pdpt.read_volatile() & PTE_ADDR) as *mut u64
    };
    // SAFETY: the PD's first entry is the boot code's 2 MiB page at 0.
    let old = unsafe { pd.read_volatile() };
    if old & (1 << 7) == 0 {
        return Err(why!("the first 2 MiB are not one large page ({old:#x})"));
    }
    for i in 256..512 {
        write_entry(
            LOW_PT.0.get().cast(),
            i,
            (i as u64) << 12 | PTE_PRESENT_WRITABLE,
        );
    }
    write_entry(pd, 0, LOW_PT.pa() | PTE_PRESENT_WRITABLE);
    // SAFETY: reloading CR3 with its own value flushes the TLB; the new
    // entries map the running code exactly as before.
    unsafe { core::arch::asm!("mov {t}, cr3", "mov cr3, {t}", t = out(reg) _, options(nostack)) };
    Ok(())
}

/// Control registers and EFER, for the report.
pub struct State {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

pub fn state() -> State {
    State {
        cr0: cr0(),
        cr3: cr3(),
        cr4: cr4(),
        efer: rdmsr(IA32_EFER),
    }
}

fn write_entry(table: *mut u64, index: usize, value: u64) {
    // SAFETY: callers pass a page table (4 KiB, 512 entries) in the 1:1
    // map and an index below 512; the entries written point at this
    // module's own tables and frame.
    unsafe { table.add(index).write_volatile(value) }
}

/// Maps the probe frame at [`ALIAS_VA`], writes through each mapping and
/// reads through the other, then removes the alias.
pub fn alias_probe() -> Result<(), Why> {
    let s = state();
    if s.cr0 & CR0_PG == 0 || s.cr4 & CR4_PAE == 0 || s.efer & EFER_LMA == 0 {
        return Err(why!(
            "not in 4-level paging (cr0 {:#x} cr4 {:#x} efer {:#x})",
            s.cr0,
            s.cr4,
            s.efer
        ));
    }
    let pml4 = (s.cr3 & PTE_ADDR) as *mut u64;
    // SAFETY: CR3 holds the boot code's PML4, in the 1:1 map.
    let old = unsafe { pml4.add(ALIAS_PML4_SLOT).read_volatile() };
    if old != 0 {
        return Err(why!(
            "PML4 slot {ALIAS_PML4_SLOT} is already in use ({old:#x})"
        ));
    }
    write_entry(
        ALIAS_PT.0.get().cast(),
        0,
        PROBE.pa() | PTE_PRESENT_WRITABLE,
    );
    write_entry(
        ALIAS_PD.0.get().cast(),
        0,
        ALIAS_PT.pa() | PTE_PRESENT_WRITABLE,
    );
    write_entry(
        ALIAS_PDPT.0.get().cast(),
        0,
        ALIAS_PD.pa() | PTE_PRESENT_WRITABLE,
    );
    write_entry(
        pml4,
        ALIAS_PML4_SLOT,
        ALIAS_PDPT.pa() | PTE_PRESENT_WRITABLE,
    );
    invlpg(ALIAS_VA);

    let alias = ALIAS_VA as *mut u64;
    let direct = PROBE.0.get().cast::<u64>();
    const A: u64 = 0x0bad_cafe_f00d_0001;
    const B: u64 = 0x5eed_1234_abcd_0002;
    // SAFETY: `alias` and `direct` both map the probe frame (just set up),
    // which nothing else uses; offsets stay inside the 4 KiB page.
    let result = unsafe {
        alias.add(7).write_volatile(A);
        let seen_direct = direct.add(7).read_volatile();
        direct.add(300).write_volatile(B);
        let seen_alias = alias.add(300).read_volatile();
        if seen_direct != A {
            Err(why!(
                "wrote {A:#x} at {ALIAS_VA:#x}+56, the frame holds {seen_direct:#x}"
            ))
        } else if seen_alias != B {
            Err(why!(
                "wrote {B:#x} in the frame, {ALIAS_VA:#x}+2400 reads {seen_alias:#x}"
            ))
        } else {
            Ok(())
        }
    };
    write_entry(pml4, ALIAS_PML4_SLOT, 0);
    invlpg(ALIAS_VA);
    result
}
