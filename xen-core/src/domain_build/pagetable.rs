//! The PV guest's bootstrap page tables (Xen's dom0_build.c mapping loop and
//! `mark_pv_pt_pages_rdonly`): every page of the bootstrap region mapped to
//! the MFN the caller's p2m gives, the page-table frames themselves read-only,
//! and the hypervisor's L4 slots copied in. Owns the walk; writes only through
//! [`FrameSink`] and trusts the p2m only as far as checking every MFN it returns.
//!
//! Table frames are the PFNs of the layout's page-table area, taken in order:
//! the L4 first (so `pt_base` is the L4, as guests expect), then, walking the
//! region upward, each new L3, L2 and L1 as it is first needed. Leaf entries
//! are Xen's `L1_PROT` (present, rw, user, accessed), intermediate entries
//! `L2/L3/L4_PROT` (the same plus dirty): x86_64 PV kernels run in ring 3.

use core::fmt;

use super::layout::BootLayout;
use crate::mm::frame_table::PageType;
use crate::mm::pte::{self, PteFlags};
use crate::mm::{Mfn, Pfn, MAX_PHYS_ADDR, PAGE_SHIFT, PAGE_SIZE};

/// First L4 slot of the hypervisor's range (`HYPERVISOR_VIRT_START`).
pub const XEN_L4_FIRST_SLOT: usize = 256;
/// Number of hypervisor L4 slots (256..=271).
pub const XEN_L4_SLOTS: usize = 16;

/// A paging level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PtLevel {
    /// Maps 4 KiB pages.
    L1 = 1,
    /// Points at L1 tables.
    L2 = 2,
    /// Points at L2 tables.
    L3 = 3,
    /// The root.
    L4 = 4,
}

impl PtLevel {
    /// The frame-table type of a table at this level.
    pub const fn page_type(self) -> PageType {
        match self {
            PtLevel::L1 => PageType::L1,
            PtLevel::L2 => PageType::L2,
            PtLevel::L3 => PageType::L3,
            PtLevel::L4 => PageType::L4,
        }
    }

    /// Bit position of the virtual-address index for this level.
    const fn shift(self) -> u32 {
        PAGE_SHIFT + 9 * (self as u32 - 1)
    }

    /// This level's index of `va`.
    const fn index(self, va: u64) -> usize {
        ((va >> self.shift()) & 511) as usize
    }
}

/// One page-table frame the builder used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PtFrame {
    /// Its level.
    pub level: PtLevel,
    /// Its PFN in the guest.
    pub pfn: Pfn,
    /// Its machine frame.
    pub mfn: Mfn,
}

impl Default for PtFrame {
    fn default() -> Self {
        PtFrame {
            level: PtLevel::L1,
            pfn: Pfn(0),
            mfn: Mfn(0),
        }
    }
}

/// Where the tables are written (the glue maps the frames; tests use memory).
pub trait FrameSink {
    /// `mfn` becomes a table of `level`: set all its 512 entries to 0.
    fn clear_table(&mut self, mfn: Mfn, level: PtLevel);
    /// Set entry `index` of the table at `table`.
    fn write_entry(&mut self, table: Mfn, index: usize, entry: u64);
}

/// The domain's pfn → mfn map.
pub trait P2m {
    /// The machine frame backing `pfn`, if any.
    fn mfn(&self, pfn: Pfn) -> Option<Mfn>;
}

impl<F: Fn(Pfn) -> Option<Mfn>> P2m for F {
    fn mfn(&self, pfn: Pfn) -> Option<Mfn> {
        self(pfn)
    }
}

/// The hypervisor's part of every guest L4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HypervisorSlots {
    /// Entries for L4 slots 256..=271, copied as they are (zero ones skipped:
    /// the table was cleared).
    pub template: [u64; XEN_L4_SLOTS],
    /// A slot (256..=271) to point back at the L4 itself with
    /// `__PAGE_HYPERVISOR_RW` (Xen's linear page-table slot), if wanted.
    pub self_map_slot: Option<usize>,
}

/// What the builder produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PtSummary {
    /// The L4 (the guest's CR3 frame; pin it).
    pub l4: Mfn,
    /// Number of entries filled in the caller's `PtFrame` list.
    pub nr_frames: usize,
}

/// Why the tables could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PtError {
    /// The p2m has no frame for this PFN.
    NoMfn(Pfn),
    /// The p2m gave a frame at or above 2^52 bytes.
    MfnTooLarge(Mfn),
    /// The caller's frame list is too short.
    FrameListTooSmall {
        /// Entries needed.
        needed: u64,
    },
    /// The self-map slot is not a hypervisor slot.
    BadSelfMapSlot(usize),
    /// The bootstrap region uses an L4 slot reserved for the hypervisor.
    RegionInHypervisorSlots,
    /// The layout's fields contradict each other (not made by `compute`).
    InconsistentLayout,
    /// The layout's page-table count does not match the walk (a layout bug).
    TableCountMismatch {
        /// Frames the layout reserved.
        reserved: u64,
    },
}

impl fmt::Display for PtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoMfn(pfn) => write!(f, "no machine frame for pfn {pfn}"),
            Self::MfnTooLarge(mfn) => write!(f, "mfn {mfn} beyond the physical address width"),
            Self::FrameListTooSmall { needed } => {
                write!(f, "page-table frame list needs {needed} entries")
            }
            Self::BadSelfMapSlot(s) => write!(f, "L4 slot {s} is not a hypervisor slot"),
            Self::RegionInHypervisorSlots => {
                write!(f, "bootstrap region uses the hypervisor's L4 slots")
            }
            Self::InconsistentLayout => write!(f, "inconsistent bootstrap layout"),
            Self::TableCountMismatch { reserved } => {
                write!(
                    f,
                    "layout reserved {reserved} page-table frames, walk disagrees"
                )
            }
        }
    }
}

/// Build the bootstrap page tables of `layout` into the frames of its
/// page-table area, recording each table in `frames` (at least
/// `layout.nr_pt_frames()` long). Returns the L4 and the count.
pub fn build_bootstrap_tables<S: FrameSink, M: P2m + ?Sized>(
    layout: &BootLayout,
    p2m: &M,
    xen: &HypervisorSlots,
    sink: &mut S,
    frames: &mut [PtFrame],
) -> Result<PtSummary, PtError> {
    check_inputs(layout, xen, frames.len())?;
    let mut b = Builder {
        p2m,
        sink,
        frames,
        used: 0,
        first_pfn: layout.pt_pfn().0,
        reserved: layout.nr_pt_frames(),
    };
    let l4 = b.new_table(PtLevel::L4)?;
    b.install_xen_slots(l4, xen);
    let mut path = [None; 3]; // current L3, L2, L1: (tag, mfn)
    for pfn in 0..layout.nr_bootstrap_pages() {
        let va = layout.v_start + (pfn << PAGE_SHIFT);
        let l1 = b.walk_to_l1(l4, va, &mut path)?;
        let mfn = b.mfn(Pfn(pfn))?;
        let flags = leaf_flags(layout, Pfn(pfn));
        b.sink
            .write_entry(l1, PtLevel::L1.index(va), pte::entry(mfn.maddr(), flags));
    }
    if b.used as u64 != b.reserved {
        return Err(PtError::TableCountMismatch {
            reserved: b.reserved,
        });
    }
    Ok(PtSummary {
        l4,
        nr_frames: b.used,
    })
}

fn check_inputs(
    layout: &BootLayout,
    xen: &HypervisorSlots,
    nr_frames: usize,
) -> Result<(), PtError> {
    let needed = layout.nr_pt_frames();
    if (nr_frames as u64) < needed {
        return Err(PtError::FrameListTooSmall { needed });
    }
    if let Some(slot) = xen.self_map_slot {
        if !xen_slot(slot) {
            return Err(PtError::BadSelfMapSlot(slot));
        }
    }
    let region = layout.region();
    let pts = layout.page_tables;
    let consistent = !region.is_empty()
        && region.start.is_multiple_of(PAGE_SIZE)
        && region.end.is_multiple_of(PAGE_SIZE)
        && pts.start.is_multiple_of(PAGE_SIZE)
        && region.start <= pts.start
        && pts.end <= region.end
        && pts.len() == needed.saturating_mul(PAGE_SIZE);
    if !consistent {
        return Err(PtError::InconsistentLayout);
    }
    let first = PtLevel::L4.index(region.start);
    let last = PtLevel::L4.index(region.end - 1);
    if (first..=last).any(xen_slot) {
        return Err(PtError::RegionInHypervisorSlots);
    }
    Ok(())
}

fn xen_slot(slot: usize) -> bool {
    (XEN_L4_FIRST_SLOT..XEN_L4_FIRST_SLOT + XEN_L4_SLOTS).contains(&slot)
}

/// Leaf flags: the page-table frames are read-only to the guest.
fn leaf_flags(layout: &BootLayout, pfn: Pfn) -> PteFlags {
    let pt = layout.pt_pfn().0;
    if (pt..pt + layout.nr_pt_frames()).contains(&pfn.0) {
        pte::L1_PROT.difference(PteFlags::RW)
    } else {
        pte::L1_PROT
    }
}

struct Builder<'a, S, M: ?Sized> {
    p2m: &'a M,
    sink: &'a mut S,
    frames: &'a mut [PtFrame],
    used: usize,
    first_pfn: u64,
    reserved: u64,
}

impl<S: FrameSink, M: P2m + ?Sized> Builder<'_, S, M> {
    fn mfn(&self, pfn: Pfn) -> Result<Mfn, PtError> {
        let mfn = self.p2m.mfn(pfn).ok_or(PtError::NoMfn(pfn))?;
        if mfn.0 >= MAX_PHYS_ADDR >> PAGE_SHIFT {
            return Err(PtError::MfnTooLarge(mfn));
        }
        Ok(mfn)
    }

    /// Take the next page-table frame and clear it.
    fn new_table(&mut self, level: PtLevel) -> Result<Mfn, PtError> {
        if self.used as u64 == self.reserved {
            return Err(PtError::TableCountMismatch {
                reserved: self.reserved,
            });
        }
        let pfn = Pfn(self.first_pfn + self.used as u64);
        let mfn = self.mfn(pfn)?;
        self.sink.clear_table(mfn, level);
        self.frames[self.used] = PtFrame { level, pfn, mfn };
        self.used += 1;
        Ok(mfn)
    }

    fn install_xen_slots(&mut self, l4: Mfn, xen: &HypervisorSlots) {
        for (i, &template) in xen.template.iter().enumerate() {
            let slot = XEN_L4_FIRST_SLOT + i;
            let e = if xen.self_map_slot == Some(slot) {
                pte::entry(l4.maddr(), pte::HYPERVISOR_RW)
            } else {
                template
            };
            if e != 0 {
                self.sink.write_entry(l4, slot, e);
            }
        }
    }

    /// The L1 covering `va`, creating the L3/L2/L1 on the way when `va`
    /// enters a new 512 GiB / 1 GiB / 2 MiB slot. `path` remembers the
    /// current table of each level, tagged with the slot it covers.
    fn walk_to_l1(
        &mut self,
        l4: Mfn,
        va: u64,
        path: &mut [Option<(u64, Mfn)>; 3],
    ) -> Result<Mfn, PtError> {
        let mut parent = (l4, PtLevel::L4);
        for (slot, level) in path.iter_mut().zip([PtLevel::L3, PtLevel::L2, PtLevel::L1]) {
            let tag = va >> parent.1.shift();
            let table = match *slot {
                Some((t, mfn)) if t == tag => mfn,
                _ => {
                    let mfn = self.new_table(level)?;
                    let e = pte::entry(mfn.maddr(), pte::UPPER_PROT);
                    self.sink.write_entry(parent.0, parent.1.index(va), e);
                    *slot = Some((tag, mfn));
                    mfn
                }
            };
            parent = (table, level);
        }
        Ok(parent.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain_build::layout::{DomainKind, LayoutParams};
    use crate::domain_build::VRange;
    use std::collections::HashMap;
    use std::format;
    use std::vec;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;
    const LINUX_BASE: u64 = 0xffff_ffff_8000_0000;

    /// Machine memory holding page tables only.
    #[derive(Default)]
    struct FakeMem {
        tables: HashMap<u64, (PtLevel, Vec<u64>)>,
    }

    impl FrameSink for FakeMem {
        fn clear_table(&mut self, mfn: Mfn, level: PtLevel) {
            let old = self.tables.insert(mfn.0, (level, vec![0; 512]));
            assert!(old.is_none(), "frame {mfn:?} used twice");
        }

        fn write_entry(&mut self, table: Mfn, index: usize, entry: u64) {
            let t = self
                .tables
                .get_mut(&table.0)
                .expect("write to a frame never cleared");
            assert!(index < 512);
            assert_eq!(t.1[index], 0, "entry {index} of {table:?} written twice");
            t.1[index] = entry;
        }
    }

    impl FakeMem {
        /// Walk like the MMU: the leaf MFN and the effective flags (RW and
        /// USER only if set at every level).
        fn translate(&self, l4: Mfn, va: u64) -> Option<(Mfn, PteFlags)> {
            let mut table = l4;
            let mut eff = PteFlags::RW | PteFlags::USER;
            for level in [PtLevel::L4, PtLevel::L3, PtLevel::L2, PtLevel::L1] {
                let (lvl, entries) = self.tables.get(&table.0)?;
                assert_eq!(*lvl, level);
                let e = entries[level.index(va)];
                let flags = pte::entry_flags(e);
                if !flags.contains(PteFlags::PRESENT) {
                    return None;
                }
                if level != PtLevel::L1 {
                    assert_eq!(flags, pte::UPPER_PROT, "intermediate flags at {level:?}");
                }
                eff &= flags | !(PteFlags::RW | PteFlags::USER);
                table = Mfn(pte::entry_addr(e) >> PAGE_SHIFT);
                if level == PtLevel::L1 {
                    return Some((table, flags & !(PteFlags::RW | PteFlags::USER) | eff));
                }
            }
            None
        }
    }

    /// A scattered p2m: pfn -> 0x8_0000 + (pfn * 7919) mod 2^20.
    fn scattered(pfn: Pfn) -> Option<Mfn> {
        Some(Mfn(0x8_0000 + (pfn.0 * 7919) % (1 << 20)))
    }

    fn xen_slots() -> HypervisorSlots {
        let mut template = [0u64; XEN_L4_SLOTS];
        for (i, e) in template.iter_mut().enumerate() {
            *e = pte::entry((0x100 + i as u64) << PAGE_SHIFT, pte::HYPERVISOR_RW);
        }
        template[5] = 0; // unused slots stay empty
        HypervisorSlots {
            template,
            self_map_slot: Some(258),
        }
    }

    fn linux_layout(kind: DomainKind) -> BootLayout {
        let kernel = VRange::new(LINUX_BASE + 16 * MIB, LINUX_BASE + 26 * MIB + 0x345);
        BootLayout::compute(&LayoutParams {
            virt_base: LINUX_BASE,
            kernel,
            ramdisk_len: 3 * MIB + 5,
            unmapped_initrd: false,
            nr_pages: 65_536,
            kind,
            hypercall_page: None,
            forbidden: VRange::HYPERVISOR,
        })
        .unwrap()
    }

    fn build(layout: &BootLayout, p2m: &dyn P2m) -> (FakeMem, PtSummary, Vec<PtFrame>) {
        let mut mem = FakeMem::default();
        let mut frames = vec![PtFrame::default(); layout.nr_pt_frames() as usize];
        let s = build_bootstrap_tables(layout, p2m, &xen_slots(), &mut mem, &mut frames).unwrap();
        (mem, s, frames)
    }

    fn check_mapping(layout: &BootLayout, p2m: &dyn P2m) {
        let (mem, summary, frames) = build(layout, p2m);
        assert_eq!(summary.nr_frames as u64, layout.nr_pt_frames());
        assert_eq!(frames.len(), summary.nr_frames);
        // The L4 is the first page-table frame: pt_base.
        assert_eq!(frames[0].level, PtLevel::L4);
        assert_eq!(frames[0].pfn, layout.pt_pfn());
        assert_eq!(summary.l4, p2m.mfn(layout.pt_pfn()).unwrap());
        // Frames are the page-table area's PFNs in order, levels as counted.
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(f.pfn, Pfn(layout.pt_pfn().0 + i as u64));
            assert_eq!(Some(f.mfn), p2m.mfn(f.pfn));
            assert_eq!(mem.tables[&f.mfn.0].0, f.level);
        }
        let count = |lvl| frames.iter().filter(|f| f.level == lvl).count() as u64;
        let c = layout.pt_counts;
        assert_eq!(
            (
                count(PtLevel::L4),
                count(PtLevel::L3),
                count(PtLevel::L2),
                count(PtLevel::L1)
            ),
            (c.l4, c.l3, c.l2, c.l1)
        );
        assert_eq!(mem.tables.len() as u64, layout.nr_pt_frames());
        // Every bootstrap page: the right frame and permissions.
        let pt = layout.page_tables;
        for pfn in 0..layout.nr_bootstrap_pages() {
            let va = layout.v_start + pfn * 4096;
            let (mfn, flags) = mem
                .translate(summary.l4, va)
                .unwrap_or_else(|| panic!("{va:#x} unmapped"));
            assert_eq!(Some(mfn), p2m.mfn(Pfn(pfn)));
            let want = if pt.contains(va) {
                pte::L1_PROT.difference(PteFlags::RW)
            } else {
                pte::L1_PROT
            };
            assert_eq!(flags, want, "flags of {va:#x}");
        }
        // Nothing beyond the region.
        assert_eq!(mem.translate(summary.l4, layout.v_end), None);
        let below = layout.v_start.wrapping_sub(4096);
        if !xen_slot(PtLevel::L4.index(below)) {
            assert_eq!(mem.translate(summary.l4, below), None);
        }
        // Hypervisor slots.
        let l4 = &mem.tables[&summary.l4.0].1;
        let xen = xen_slots();
        for i in 0..XEN_L4_SLOTS {
            let slot = XEN_L4_FIRST_SLOT + i;
            if Some(slot) == xen.self_map_slot {
                assert_eq!(l4[slot], pte::entry(summary.l4.maddr(), pte::HYPERVISOR_RW));
            } else {
                assert_eq!(l4[slot], xen.template[i], "slot {slot}");
            }
        }
        // Only the region's slots and the hypervisor's are used.
        let region_slots = PtLevel::L4.index(layout.v_start)..=PtLevel::L4.index(layout.v_end - 1);
        for (slot, &e) in l4.iter().enumerate() {
            if !region_slots.contains(&slot) && !xen_slot(slot) {
                assert_eq!(e, 0, "stray L4 slot {slot}");
            }
        }
    }

    #[test]
    fn dom0_linux_like_identity_p2m() {
        let layout = linux_layout(DomainKind::Dom0);
        let base = 0x4_0000u64;
        check_mapping(&layout, &move |pfn: Pfn| Some(Mfn(base + pfn.0)));
    }

    #[test]
    fn domu_with_scattered_p2m() {
        check_mapping(&linux_layout(DomainKind::DomU), &scattered);
    }

    #[test]
    fn low_region_crossing_1gib_and_512gib() {
        for base in [(1u64 << 30) - 4 * MIB, (1u64 << 39) - 4 * MIB, 0] {
            let layout = BootLayout::compute(&LayoutParams {
                virt_base: base,
                kernel: VRange::new(base, base + 6 * MIB),
                ramdisk_len: 0,
                unmapped_initrd: true,
                nr_pages: 8192,
                kind: DomainKind::Dom0,
                hypercall_page: None,
                forbidden: VRange::HYPERVISOR,
            })
            .unwrap();
            check_mapping(&layout, &scattered);
        }
    }

    #[test]
    fn region_just_above_the_hypervisor_slots() {
        let base = VRange::HYPERVISOR.end;
        let layout = BootLayout::compute(&LayoutParams {
            virt_base: base,
            kernel: VRange::new(base, base + MIB),
            ramdisk_len: 0,
            unmapped_initrd: false,
            nr_pages: 4096,
            kind: DomainKind::Dom0,
            hypercall_page: None,
            forbidden: VRange::HYPERVISOR,
        })
        .unwrap();
        check_mapping(&layout, &scattered);
    }

    #[test]
    fn errors() {
        let layout = linux_layout(DomainKind::Dom0);
        let n = layout.nr_pt_frames() as usize;
        let mut mem = FakeMem::default();
        let mut frames = vec![PtFrame::default(); n];
        // Missing p2m entry (the 100th page).
        let holey = |pfn: Pfn| (pfn.0 != 100).then_some(Mfn(pfn.0 + 0x1000));
        assert_eq!(
            build_bootstrap_tables(&layout, &holey, &xen_slots(), &mut mem, &mut frames),
            Err(PtError::NoMfn(Pfn(100)))
        );
        // MFN beyond 2^52 bytes.
        let mut mem = FakeMem::default();
        let huge = |pfn: Pfn| Some(Mfn(if pfn.0 == 7 { 1 << 40 } else { pfn.0 + 0x1000 }));
        assert_eq!(
            build_bootstrap_tables(&layout, &huge, &xen_slots(), &mut mem, &mut frames),
            Err(PtError::MfnTooLarge(Mfn(1 << 40)))
        );
        // Short frame list.
        let mut short = vec![PtFrame::default(); n - 1];
        assert_eq!(
            build_bootstrap_tables(
                &layout,
                &scattered,
                &xen_slots(),
                &mut FakeMem::default(),
                &mut short
            ),
            Err(PtError::FrameListTooSmall { needed: n as u64 })
        );
        // Bad self-map slot.
        for slot in [0usize, 255, 272, usize::MAX] {
            let xen = HypervisorSlots {
                self_map_slot: Some(slot),
                ..xen_slots()
            };
            assert_eq!(
                build_bootstrap_tables(
                    &layout,
                    &scattered,
                    &xen,
                    &mut FakeMem::default(),
                    &mut frames
                ),
                Err(PtError::BadSelfMapSlot(slot))
            );
        }
        // No self map is fine.
        let xen = HypervisorSlots {
            self_map_slot: None,
            ..xen_slots()
        };
        assert!(build_bootstrap_tables(
            &layout,
            &scattered,
            &xen,
            &mut FakeMem::default(),
            &mut frames
        )
        .is_ok());
    }

    #[test]
    fn hostile_layouts_are_refused() {
        // A layout inside the hypervisor slots (only possible with a custom forbidden range).
        let base = VRange::HYPERVISOR.start + (1 << 39);
        let layout = BootLayout::compute(&LayoutParams {
            virt_base: base,
            kernel: VRange::new(base, base + MIB),
            ramdisk_len: 0,
            unmapped_initrd: false,
            nr_pages: 4096,
            kind: DomainKind::Dom0,
            hypercall_page: None,
            forbidden: VRange::new(0, 0),
        })
        .unwrap();
        let mut frames = vec![PtFrame::default(); layout.nr_pt_frames() as usize];
        assert_eq!(
            build_bootstrap_tables(
                &layout,
                &scattered,
                &xen_slots(),
                &mut FakeMem::default(),
                &mut frames
            ),
            Err(PtError::RegionInHypervisorSlots)
        );
        // Hand-made inconsistent layouts.
        let good = linux_layout(DomainKind::Dom0);
        let mut frames = vec![PtFrame::default(); 4096];
        let bad_layouts = [
            BootLayout {
                v_end: good.v_start,
                ..good
            },
            BootLayout { v_end: 0, ..good },
            BootLayout {
                page_tables: VRange::new(good.v_end, good.v_end + 0x1000 * good.nr_pt_frames()),
                ..good
            },
            BootLayout {
                page_tables: VRange::new(good.page_tables.start + 1, good.page_tables.end + 1),
                ..good
            },
            BootLayout {
                page_tables: VRange::new(good.page_tables.start, good.page_tables.end + 0x1000),
                ..good
            },
        ];
        for (i, l) in bad_layouts.iter().enumerate() {
            assert_eq!(
                build_bootstrap_tables(
                    l,
                    &scattered,
                    &xen_slots(),
                    &mut FakeMem::default(),
                    &mut frames
                ),
                Err(PtError::InconsistentLayout),
                "case {i}"
            );
        }
        // Counts that do not match the region.
        let mut counts = good.pt_counts;
        counts.l1 -= 1;
        let l = BootLayout {
            pt_counts: counts,
            page_tables: VRange::new(good.page_tables.start, good.page_tables.end - 0x1000),
            ..good
        };
        assert_eq!(
            build_bootstrap_tables(
                &l,
                &scattered,
                &xen_slots(),
                &mut FakeMem::default(),
                &mut frames
            ),
            Err(PtError::TableCountMismatch {
                reserved: good.nr_pt_frames() - 1
            })
        );
        counts.l1 += 2;
        let l = BootLayout {
            pt_counts: counts,
            page_tables: VRange::new(good.page_tables.start, good.page_tables.end + 0x1000),
            ..good
        };
        assert_eq!(
            build_bootstrap_tables(
                &l,
                &scattered,
                &xen_slots(),
                &mut FakeMem::default(),
                &mut frames
            ),
            Err(PtError::TableCountMismatch {
                reserved: good.nr_pt_frames() + 1
            })
        );
    }

    #[test]
    fn levels_and_display() {
        assert_eq!(PtLevel::L4.page_type(), PageType::L4);
        assert_eq!(PtLevel::L1.page_type(), PageType::L1);
        assert_eq!(PtLevel::L4.index(0xffff_8000_0000_0000), 256);
        assert_eq!(PtLevel::L3.index(0xffff_ffff_8000_0000), 510);
        assert_eq!(PtLevel::L2.index(0x20_0000), 1);
        assert_eq!(PtLevel::L1.index(0x1000), 1);
        assert_eq!(
            format!("{}", PtError::NoMfn(Pfn(5))),
            "no machine frame for pfn 0x5"
        );
    }
}
