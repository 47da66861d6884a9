//! The PV domain's start-of-day virtual layout, as xen/include/public/xen.h
//! documents before `struct start_info` and xen/arch/x86/pv/dom0_build.c
//! computes it. Owns the arithmetic; trusts none of its inputs (all checked).
//!
//! From `virt_base` (`v_start`) upward, each element 4 KiB aligned:
//!   a. the kernel image `[virt_kstart, virt_kend)`
//!   b. the initial ram disk, unless the kernel takes it by PFN
//!      (`MOD_START_PFN`: then it follows the bootstrap region in PFN space)
//!   c. the p2m list, `nr_pages` * 8 bytes (`mfn_list`)
//!   d. the `start_info` page (Dom0: also holds the VGA console info)
//!   e. unless Dom0: the xenstore ring page
//!   f. unless Dom0: the console ring page
//!   g. the bootstrap page tables (`pt_base`; the L4 first)
//!   h. the bootstrap stack (one page; `rsp` = its end)
//! and `v_end` is the next 4 MiB boundary with at least 512 KiB to spare.
//! The region maps 1:1 onto the domain's first PFNs: vaddr = v_start + pfn * 4096.
//! The page-table count depends on `v_end`, which depends on it: like Xen we
//! try 2, 3, ... tables until the count covers the region. The first answer
//! is exact, so every table frame is used. `INIT_P2M` is not honoured: the
//! p2m is always in the region (`mfn_list` tells the guest where).

use core::fmt;

use hypercall_abi::xen::StartInfo;

use super::elf::PvKernel;
use super::VRange;
use crate::mm::{pfn_up, Pfn, PAGE_SHIFT, PAGE_SIZE};

/// `v_end` is aligned to this (4 MiB).
pub const REGION_ALIGN: u64 = 4 << 20;
/// Free space guaranteed after the last bootstrap element (512 KiB).
pub const MIN_PADDING: u64 = 512 << 10;
/// Bytes per p2m entry on x86_64.
pub const P2M_ENTRY_SIZE: u64 = 8;
/// Give up if this many page-table frames do not suffice.
const MAX_PT_PAGES: u64 = 1 << 20;

const L4_SHIFT: u32 = 39;
const L3_SHIFT: u32 = 30;
const L2_SHIFT: u32 = 21;

// The start_info page also holds Dom0's dom0_vga_console_info (< 64 bytes).
const _: () = assert!(size_of::<StartInfo>() + 64 <= PAGE_SIZE as usize);

/// Which kind of domain is being built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainKind {
    /// The initial domain: no xenstore or console ring pages.
    Dom0,
    /// Any other PV domain: xenstore and console ring pages after start_info.
    DomU,
}

/// Inputs of the layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayoutParams {
    /// `VIRT_BASE`: start of the bootstrap region (page aligned).
    pub virt_base: u64,
    /// The loaded kernel.
    pub kernel: VRange,
    /// Initial ram disk length in bytes (0 = none).
    pub ramdisk_len: u64,
    /// The kernel takes the ram disk by PFN, outside the bootstrap mapping.
    pub unmapped_initrd: bool,
    /// Pages the domain gets in total.
    pub nr_pages: u64,
    /// Dom0 or not.
    pub kind: DomainKind,
    /// The kernel's hypercall page, which must lie in the region.
    pub hypercall_page: Option<u64>,
    /// Range the region must not touch (the hypervisor's).
    pub forbidden: VRange,
}

impl LayoutParams {
    /// Parameters for `kernel`, avoiding the hypervisor's range.
    pub fn for_kernel(
        kernel: &PvKernel,
        ramdisk_len: u64,
        nr_pages: u64,
        kind: DomainKind,
    ) -> Self {
        LayoutParams {
            virt_base: kernel.virt_base,
            kernel: kernel.kernel_range(),
            ramdisk_len,
            unmapped_initrd: kernel.unmapped_initrd(),
            nr_pages,
            kind,
            hypercall_page: kernel.hypercall_page(),
            forbidden: VRange::HYPERVISOR,
        }
    }
}

/// Why no layout fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// `virt_base` is not page aligned.
    MisalignedBase(u64),
    /// The kernel does not lie at or above `virt_base`.
    KernelBelowBase,
    /// The layout would run past the top of the address space.
    AddressOverflow,
    /// The domain's pages cannot hold the bootstrap region.
    TooSmall {
        /// Pages the layout needs.
        needed: u64,
        /// Pages the domain has.
        nr_pages: u64,
    },
    /// The region overlaps the forbidden (hypervisor) range.
    OverlapsForbidden {
        /// The bootstrap region.
        region: VRange,
    },
    /// The hypercall page lies outside the region.
    BadHypercallPage(u64),
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::MisalignedBase(b) => write!(f, "virt_base {b:#x} is not page aligned"),
            Self::KernelBelowBase => write!(f, "kernel starts below virt_base"),
            Self::AddressOverflow => write!(f, "bootstrap region runs past the address space"),
            Self::TooSmall { needed, nr_pages } => write!(
                f,
                "domain allocation is too small for kernel image ({needed} pages needed, \
                 {nr_pages} given)"
            ),
            Self::OverlapsForbidden { region } => {
                write!(f, "image {region} overlaps with Xen private area")
            }
            Self::BadHypercallPage(va) => write!(f, "invalid HYPERCALL_PAGE {va:#x}"),
        }
    }
}

/// Page-table frames per level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PtCounts {
    /// L4 tables (always 1).
    pub l4: u64,
    /// L3 tables.
    pub l3: u64,
    /// L2 tables.
    pub l2: u64,
    /// L1 tables.
    pub l1: u64,
}

impl PtCounts {
    /// Tables needed to map `region` with 4 KiB pages (Xen's `NR()` sums).
    pub fn for_region(region: VRange) -> Self {
        PtCounts {
            l4: 1,
            l3: tables_spanned(region, L4_SHIFT),
            l2: tables_spanned(region, L3_SHIFT),
            l1: tables_spanned(region, L2_SHIFT),
        }
    }

    /// All of them.
    pub fn total(&self) -> u64 {
        self.l4 + self.l3 + self.l2 + self.l1
    }
}

/// The computed layout. All ranges are virtual; `*_pfn` are pseudo-physical.
/// Fields are public for reading; make one with [`BootLayout::compute`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootLayout {
    /// Start of the bootstrap region (= `virt_base`).
    pub v_start: u64,
    /// End of the bootstrap region (4 MiB aligned).
    pub v_end: u64,
    /// Kernel image.
    pub kernel: VRange,
    /// The ram disk inside the region, if mapped.
    pub ramdisk: Option<VRange>,
    /// First PFN of the ram disk, if there is one (mapped or not).
    pub ramdisk_pfn: Option<Pfn>,
    /// Ram disk length in bytes.
    pub ramdisk_len: u64,
    /// The p2m list (`start_info.mfn_list`).
    pub p2m: VRange,
    /// The `start_info` page (`rsi` at entry).
    pub start_info: u64,
    /// The xenstore ring page (DomU only).
    pub xenstore: Option<u64>,
    /// The console ring page (DomU only).
    pub console: Option<u64>,
    /// The bootstrap page tables (`pt_base` = its start, the L4).
    pub page_tables: VRange,
    /// How many tables of each level the page tables hold.
    pub pt_counts: PtCounts,
    /// The bootstrap stack page.
    pub stack: VRange,
    /// Pages the domain has in total (p2m entries).
    pub nr_pages: u64,
}

impl BootLayout {
    /// Compute the layout, as `dom0_construct_pv` does.
    pub fn compute(p: &LayoutParams) -> Result<Self, LayoutError> {
        if !p.virt_base.is_multiple_of(PAGE_SIZE) {
            return Err(LayoutError::MisalignedBase(p.virt_base));
        }
        if p.kernel.start < p.virt_base || p.kernel.end < p.kernel.start {
            return Err(LayoutError::KernelBelowBase);
        }
        let mut cursor = Cursor(round_pgup(p.kernel.end)?);
        let ramdisk = match (p.ramdisk_len, p.unmapped_initrd) {
            (0, _) | (_, true) => None,
            (len, false) => Some(cursor.take(len)?),
        };
        let p2m_len = p
            .nr_pages
            .checked_mul(P2M_ENTRY_SIZE)
            .ok_or(LayoutError::AddressOverflow)?;
        let p2m = cursor.take(p2m_len)?;
        let start_info = cursor.take(PAGE_SIZE)?.start;
        let (xenstore, console) = match p.kind {
            DomainKind::Dom0 => (None, None),
            DomainKind::DomU => (
                Some(cursor.take(PAGE_SIZE)?.start),
                Some(cursor.take(PAGE_SIZE)?.start),
            ),
        };
        let (page_tables, pt_counts, stack, v_end) = fit_page_tables(p.virt_base, cursor.0)?;
        let layout = BootLayout {
            v_start: p.virt_base,
            v_end,
            kernel: p.kernel,
            ramdisk,
            ramdisk_pfn: None,
            ramdisk_len: p.ramdisk_len,
            p2m,
            start_info,
            xenstore,
            console,
            page_tables,
            pt_counts,
            stack,
            nr_pages: p.nr_pages,
        };
        layout.finish(p)
    }

    /// Place an unmapped ram disk and run the checks that need `v_end`.
    fn finish(mut self, p: &LayoutParams) -> Result<Self, LayoutError> {
        self.ramdisk_pfn = match (self.ramdisk, p.ramdisk_len) {
            (Some(r), _) => self.vaddr_to_pfn(r.start),
            (None, 0) => None,
            (None, _) => Some(Pfn(self.nr_bootstrap_pages())),
        };
        let needed = self.pages_needed();
        if needed > p.nr_pages {
            return Err(LayoutError::TooSmall {
                needed,
                nr_pages: p.nr_pages,
            });
        }
        if self.region().overlaps(&p.forbidden) {
            return Err(LayoutError::OverlapsForbidden {
                region: self.region(),
            });
        }
        match p.hypercall_page {
            Some(va) if !self.region().contains(va) => Err(LayoutError::BadHypercallPage(va)),
            _ => Ok(self),
        }
    }

    /// The whole bootstrap region `[v_start, v_end)`.
    pub fn region(&self) -> VRange {
        VRange::new(self.v_start, self.v_end)
    }

    /// Pages mapped by the bootstrap page tables (PFNs `0..n`).
    pub fn nr_bootstrap_pages(&self) -> u64 {
        self.v_end.saturating_sub(self.v_start) >> PAGE_SHIFT
    }

    /// Pages the domain needs at least: the region, plus an unmapped ram disk.
    pub fn pages_needed(&self) -> u64 {
        let unmapped = match self.ramdisk {
            None => pfn_up(self.ramdisk_len),
            Some(_) => 0,
        };
        self.nr_bootstrap_pages() + unmapped
    }

    /// PFN of a bootstrap virtual address.
    pub fn vaddr_to_pfn(&self, va: u64) -> Option<Pfn> {
        self.region()
            .contains(va)
            .then(|| Pfn((va - self.v_start) >> PAGE_SHIFT))
    }

    /// Virtual address of a bootstrap PFN.
    pub fn pfn_to_vaddr(&self, pfn: Pfn) -> Option<u64> {
        (pfn.0 < self.nr_bootstrap_pages()).then(|| self.v_start + (pfn.0 << PAGE_SHIFT))
    }

    /// `start_info.pt_base`: the L4's virtual address.
    pub fn pt_base(&self) -> u64 {
        self.page_tables.start
    }

    /// `start_info.nr_pt_frames`.
    pub fn nr_pt_frames(&self) -> u64 {
        self.pt_counts.total()
    }

    /// PFN of the first page-table frame (the L4).
    pub fn pt_pfn(&self) -> Pfn {
        Pfn(self.page_tables.start.saturating_sub(self.v_start) >> PAGE_SHIFT)
    }

    /// PFN of the start_info page.
    pub fn start_info_pfn(&self) -> Pfn {
        Pfn(self.start_info.saturating_sub(self.v_start) >> PAGE_SHIFT)
    }

    /// Initial `rsp`.
    pub fn stack_top(&self) -> u64 {
        self.stack.end
    }

    /// True if there is a ram disk outside the bootstrap mapping: copy it to
    /// the frames of PFNs `ramdisk_pfn..` and set `SIF_MOD_START_PFN` in
    /// `start_info.flags` (Xen: `!vinitrd_start && initrd_len`).
    pub fn ramdisk_unmapped(&self) -> bool {
        self.ramdisk.is_none() && self.ramdisk_len > 0
    }

    /// `start_info.mod_start`: the ram disk's address, or its PFN if
    /// unmapped (then set `SIF_MOD_START_PFN`); 0 without a ram disk.
    pub fn mod_start(&self) -> u64 {
        match (self.ramdisk, self.ramdisk_pfn) {
            (Some(r), _) => r.start,
            (None, Some(pfn)) => pfn.0,
            (None, None) => 0,
        }
    }
}

/// Packs elements upward, each page aligned.
struct Cursor(u64);

impl Cursor {
    fn take(&mut self, len: u64) -> Result<VRange, LayoutError> {
        let start = self.0;
        let end = start.checked_add(len).ok_or(LayoutError::AddressOverflow)?;
        self.0 = round_pgup(end)?;
        Ok(VRange::new(start, end))
    }
}

/// Xen's search for the page-table count: returns the tables' range, the
/// per-level counts, the stack page and `v_end`.
fn fit_page_tables(
    v_start: u64,
    vpt_start: u64,
) -> Result<(VRange, PtCounts, VRange, u64), LayoutError> {
    for nr_pt in 2..MAX_PT_PAGES {
        let vpt_end = add(vpt_start, nr_pt * PAGE_SIZE)?;
        let vstack_end = add(vpt_end, PAGE_SIZE)?;
        let mut v_end = add(vstack_end, REGION_ALIGN - 1)? & !(REGION_ALIGN - 1);
        if v_end - vstack_end < MIN_PADDING {
            v_end = add(v_end, REGION_ALIGN)?;
        }
        let counts = PtCounts::for_region(VRange::new(v_start, v_end));
        if counts.total() <= nr_pt {
            let pts = VRange::new(vpt_start, vpt_end);
            return Ok((pts, counts, VRange::new(vpt_end, vstack_end), v_end));
        }
    }
    Err(LayoutError::AddressOverflow)
}

/// Xen's `NR(l, h, s)`: `2^s`-sized slots spanned by `[l, h)`.
fn tables_spanned(r: VRange, shift: u32) -> u64 {
    let mask = (1u128 << shift) - 1;
    let hi = (u128::from(r.end) + mask) & !mask;
    let lo = u128::from(r.start) & !mask;
    (hi.saturating_sub(lo) >> shift) as u64
}

fn add(a: u64, b: u64) -> Result<u64, LayoutError> {
    a.checked_add(b).ok_or(LayoutError::AddressOverflow)
}

fn round_pgup(x: u64) -> Result<u64, LayoutError> {
    crate::mm::page_align_up(x).ok_or(LayoutError::AddressOverflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain_build::elf::{testelf, ElfPolicy};
    use std::format;

    const MIB: u64 = 1 << 20;
    const LINUX_BASE: u64 = 0xffff_ffff_8000_0000;

    fn params(virt_base: u64, kernel: VRange, ramdisk_len: u64, nr_pages: u64) -> LayoutParams {
        LayoutParams {
            virt_base,
            kernel,
            ramdisk_len,
            unmapped_initrd: false,
            nr_pages,
            kind: DomainKind::Dom0,
            hypercall_page: None,
            forbidden: VRange::HYPERVISOR,
        }
    }

    fn check_invariants(l: &BootLayout) {
        let mut elements = std::vec![l.kernel];
        elements.extend(l.ramdisk);
        elements.push(l.p2m);
        elements.push(VRange::new(l.start_info, l.start_info + PAGE_SIZE));
        elements.extend(l.xenstore.map(|v| VRange::new(v, v + PAGE_SIZE)));
        elements.extend(l.console.map(|v| VRange::new(v, v + PAGE_SIZE)));
        elements.push(l.page_tables);
        elements.push(l.stack);
        for pair in elements.windows(2) {
            // Packed: each starts at the page-rounded end of the previous.
            assert_eq!(
                pair[1].start,
                pair[0].end.next_multiple_of(PAGE_SIZE),
                "{pair:?}"
            );
        }
        assert!(l.v_start <= l.kernel.start);
        assert_eq!(l.v_end % REGION_ALIGN, 0);
        assert!(l.v_end - l.stack.end >= MIN_PADDING);
        assert!(l.v_end - l.stack.end < MIN_PADDING + REGION_ALIGN);
        assert_eq!(l.stack.len(), PAGE_SIZE);
        assert_eq!(l.page_tables.len(), l.nr_pt_frames() * PAGE_SIZE);
        assert_eq!(l.pt_counts, PtCounts::for_region(l.region()));
        assert_eq!(l.p2m.len(), l.nr_pages * 8);
        assert!(l.pages_needed() <= l.nr_pages);
    }

    #[test]
    fn linux_dom0_layout() {
        let kernel = VRange::new(0xffff_ffff_8100_0000, 0xffff_ffff_82a0_0000);
        let l = BootLayout::compute(&params(LINUX_BASE, kernel, 10 * MIB, 131_072)).unwrap();
        check_invariants(&l);
        assert_eq!(
            l.ramdisk,
            Some(VRange::new(0xffff_ffff_82a0_0000, 0xffff_ffff_8340_0000))
        );
        assert_eq!(
            l.p2m,
            VRange::new(0xffff_ffff_8340_0000, 0xffff_ffff_8350_0000)
        );
        assert_eq!(l.start_info, 0xffff_ffff_8350_0000);
        assert_eq!((l.xenstore, l.console), (None, None));
        assert_eq!(
            l.pt_counts,
            PtCounts {
                l4: 1,
                l3: 1,
                l2: 1,
                l1: 28
            }
        );
        assert_eq!(
            l.page_tables,
            VRange::new(0xffff_ffff_8350_1000, 0xffff_ffff_8352_0000)
        );
        assert_eq!(l.pt_base(), 0xffff_ffff_8350_1000);
        assert_eq!(
            l.stack,
            VRange::new(0xffff_ffff_8352_0000, 0xffff_ffff_8352_1000)
        );
        assert_eq!(l.stack_top(), 0xffff_ffff_8352_1000);
        assert_eq!(l.v_end, 0xffff_ffff_8380_0000);
        assert_eq!(l.nr_bootstrap_pages(), 56 * 256);
        assert_eq!(l.ramdisk_pfn, Some(Pfn(0x2a00)));
        assert_eq!(l.mod_start(), 0xffff_ffff_82a0_0000);
        assert!(!l.ramdisk_unmapped());
        assert_eq!(l.pt_pfn(), Pfn(0x3501));
        assert_eq!(l.start_info_pfn(), Pfn(0x3500));
    }

    #[test]
    fn padding_forces_an_extra_4mib() {
        let l = BootLayout::compute(&params(0, VRange::new(0, 0x38_0000), 0, 4096)).unwrap();
        check_invariants(&l);
        assert_eq!(l.page_tables, VRange::new(0x38_9000, 0x39_0000));
        assert_eq!(l.stack.end, 0x39_1000);
        assert_eq!(l.v_end, 8 * MIB);
        assert_eq!(
            l.pt_counts,
            PtCounts {
                l4: 1,
                l3: 1,
                l2: 1,
                l1: 4
            }
        );
    }

    #[test]
    fn crossing_1gib_and_512gib_boundaries() {
        let base = (1 << 30) - 4 * MIB;
        let l =
            BootLayout::compute(&params(base, VRange::new(base, base + 6 * MIB), 0, 8192)).unwrap();
        check_invariants(&l);
        assert_eq!((l.pt_counts.l3, l.pt_counts.l2), (1, 2));
        let base = (1 << 39) - 4 * MIB;
        let l =
            BootLayout::compute(&params(base, VRange::new(base, base + 6 * MIB), 0, 8192)).unwrap();
        check_invariants(&l);
        assert_eq!((l.pt_counts.l3, l.pt_counts.l2), (2, 2));
    }

    #[test]
    fn domu_has_xenstore_and_console_pages() {
        let mut p = params(
            LINUX_BASE,
            VRange::new(LINUX_BASE + 16 * MIB, LINUX_BASE + 20 * MIB),
            0,
            65_536,
        );
        p.kind = DomainKind::DomU;
        let l = BootLayout::compute(&p).unwrap();
        check_invariants(&l);
        assert_eq!(l.xenstore, Some(l.start_info + PAGE_SIZE));
        assert_eq!(l.console, Some(l.start_info + 2 * PAGE_SIZE));
        assert_eq!(l.page_tables.start, l.start_info + 3 * PAGE_SIZE);
    }

    #[test]
    fn unmapped_and_absent_ramdisks() {
        let mut p = params(
            LINUX_BASE,
            VRange::new(LINUX_BASE + 16 * MIB, LINUX_BASE + 20 * MIB),
            0,
            65_536,
        );
        let l = BootLayout::compute(&p).unwrap();
        assert_eq!((l.ramdisk, l.ramdisk_pfn, l.mod_start()), (None, None, 0));
        assert!(!l.ramdisk_unmapped());
        assert_eq!(l.p2m.start, LINUX_BASE + 20 * MIB);
        p.ramdisk_len = 5 * MIB + 1;
        p.unmapped_initrd = true;
        let l = BootLayout::compute(&p).unwrap();
        check_invariants(&l);
        assert_eq!(l.ramdisk, None);
        assert!(l.ramdisk_unmapped());
        assert_eq!(l.p2m.start, LINUX_BASE + 20 * MIB);
        assert_eq!(l.ramdisk_pfn, Some(Pfn(l.nr_bootstrap_pages())));
        assert_eq!(l.mod_start(), l.nr_bootstrap_pages());
        assert_eq!(l.pages_needed(), l.nr_bootstrap_pages() + 5 * 256 + 1);
        // Exactly enough pages.
        p.nr_pages = l.pages_needed();
        // (the p2m shrinks with nr_pages, so recompute and re-fit)
        let l2 = BootLayout::compute(&p).unwrap();
        assert!(l2.pages_needed() <= p.nr_pages);
    }

    #[test]
    fn too_small() {
        let kernel = VRange::new(LINUX_BASE + 16 * MIB, LINUX_BASE + 20 * MIB);
        let l = BootLayout::compute(&params(LINUX_BASE, kernel, 0, 65_536)).unwrap();
        let needed = l.nr_bootstrap_pages();
        let err = BootLayout::compute(&params(LINUX_BASE, kernel, 0, needed - 1)).unwrap_err();
        assert!(matches!(err, LayoutError::TooSmall { nr_pages, .. } if nr_pages == needed - 1));
        assert!(format!("{err}").contains("too small"));
        assert!(BootLayout::compute(&params(LINUX_BASE, kernel, 0, needed)).is_ok());
        // An unmapped ram disk counts too.
        let mut p = params(LINUX_BASE, kernel, 4096, needed);
        p.unmapped_initrd = true;
        assert_eq!(
            BootLayout::compute(&p).unwrap_err(),
            LayoutError::TooSmall {
                needed: needed + 1,
                nr_pages: needed
            }
        );
    }

    #[test]
    fn bad_parameters() {
        let k = VRange::new(0x40_0000, 0x50_0000);
        assert_eq!(
            BootLayout::compute(&params(0x1001, k, 0, 4096)).unwrap_err(),
            LayoutError::MisalignedBase(0x1001)
        );
        assert_eq!(
            BootLayout::compute(&params(0x50_0000, k, 0, 4096)).unwrap_err(),
            LayoutError::KernelBelowBase
        );
        assert_eq!(
            BootLayout::compute(&params(0, VRange::new(0x50_0000, 0x40_0000), 0, 4096))
                .unwrap_err(),
            LayoutError::KernelBelowBase
        );
        let top = u64::MAX - 0xfff;
        assert_eq!(
            BootLayout::compute(&params(top, VRange::new(top, u64::MAX), 0, 1)).unwrap_err(),
            LayoutError::AddressOverflow
        );
        assert_eq!(
            BootLayout::compute(&params(0, k, 0, u64::MAX)).unwrap_err(),
            LayoutError::AddressOverflow
        );
        assert_eq!(
            BootLayout::compute(&params(0, k, u64::MAX - 0x10_0000, 4096)).unwrap_err(),
            LayoutError::AddressOverflow
        );
        // v_end would be 2^64.
        let base = u64::MAX - 4 * MIB + 1;
        assert_eq!(
            BootLayout::compute(&params(base, VRange::new(base, base + MIB), 0, 4096)).unwrap_err(),
            LayoutError::AddressOverflow
        );
    }

    #[test]
    fn hypervisor_range_and_hypercall_page() {
        // Region growing into the hypervisor hole from below.
        let base = VRange::HYPERVISOR.start - 8 * MIB;
        let ok =
            BootLayout::compute(&params(base, VRange::new(base, base + 7 * MIB), 0, 8192)).unwrap();
        assert_eq!(ok.v_end, VRange::HYPERVISOR.start);
        let kernel = VRange::new(base, base + 8 * MIB - 0x4_0000);
        let err = BootLayout::compute(&params(base, kernel, 0, 8192)).unwrap_err();
        assert!(matches!(err, LayoutError::OverlapsForbidden { .. }));
        assert!(format!("{err}").contains("Xen private area"));
        let base = VRange::HYPERVISOR.end - 4 * MIB;
        assert!(matches!(
            BootLayout::compute(&params(base, VRange::new(base, base + MIB), 0, 8192)),
            Err(LayoutError::OverlapsForbidden { .. })
        ));
        let base = VRange::HYPERVISOR.end;
        assert!(BootLayout::compute(&params(base, VRange::new(base, base + MIB), 0, 8192)).is_ok());
        // Hypercall page in and out of the region.
        let k = VRange::new(LINUX_BASE + 16 * MIB, LINUX_BASE + 20 * MIB);
        let mut p = params(LINUX_BASE, k, 0, 65_536);
        p.hypercall_page = Some(k.start + 0x2000);
        assert!(BootLayout::compute(&p).is_ok());
        p.hypercall_page = Some(LINUX_BASE - 0x1000);
        assert_eq!(
            BootLayout::compute(&p).unwrap_err(),
            LayoutError::BadHypercallPage(LINUX_BASE - 0x1000)
        );
    }

    #[test]
    fn pfn_conversions() {
        let l = BootLayout::compute(&params(
            LINUX_BASE,
            VRange::new(LINUX_BASE, LINUX_BASE + MIB),
            0,
            4096,
        ))
        .unwrap();
        assert_eq!(l.vaddr_to_pfn(LINUX_BASE), Some(Pfn(0)));
        assert_eq!(l.vaddr_to_pfn(LINUX_BASE + 0x1fff), Some(Pfn(1)));
        assert_eq!(l.vaddr_to_pfn(LINUX_BASE - 1), None);
        assert_eq!(l.vaddr_to_pfn(l.v_end), None);
        assert_eq!(l.pfn_to_vaddr(Pfn(3)), Some(LINUX_BASE + 0x3000));
        assert_eq!(l.pfn_to_vaddr(Pfn(l.nr_bootstrap_pages())), None);
        assert_eq!(l.pfn_to_vaddr(Pfn(u64::MAX)), None);
    }

    #[test]
    fn from_parsed_kernel() {
        let img = testelf::linux_like().build();
        let k = PvKernel::parse(&img, &ElfPolicy::default()).unwrap();
        let p = LayoutParams::for_kernel(&k, 0x1234, 32_768, DomainKind::Dom0);
        assert_eq!(p.virt_base, testelf::VIRT_BASE);
        assert!(p.unmapped_initrd);
        let l = BootLayout::compute(&p).unwrap();
        check_invariants(&l);
        assert_eq!(l.kernel, k.kernel_range());
        assert_eq!(l.v_start, testelf::VIRT_BASE);
        assert_eq!(l.ramdisk, None);
        assert!(l.region().contains(k.hypercall_page().unwrap()));
    }

    #[test]
    fn many_shapes_keep_invariants() {
        let mut x: u64 = 0x853c_49e6_748f_ea9b;
        for _ in 0..500 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let base = (x % (1 << 40)) & !(PAGE_SIZE - 1);
            let kstart = base + (x >> 8) % (64 * MIB);
            let kend = kstart + (x >> 16) % (64 * MIB);
            let ramdisk = if x.is_multiple_of(3) {
                0
            } else {
                (x >> 24) % (300 * MIB)
            };
            let mut p = params(base, VRange::new(kstart, kend), ramdisk, 1 << 20);
            p.unmapped_initrd = x.is_multiple_of(5);
            p.kind = if x.is_multiple_of(2) {
                DomainKind::Dom0
            } else {
                DomainKind::DomU
            };
            let l = BootLayout::compute(&p).unwrap();
            check_invariants(&l);
            // Minimal: one table fewer would not map the region it implies.
            assert!(l.nr_pt_frames() >= 4);
        }
    }
}
