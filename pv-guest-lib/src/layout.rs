//! Where things are in a PV domain at boot, and which memory is free.
//!
//! # The kernel image
//!
//! `pv-kernel.ld` links the kernel at [`VIRT_BASE`] (`0xFFFFFFFF80000000`,
//! the `XEN_ELFNOTE_VIRT_BASE` note) with `XEN_ELFNOTE_PADDR_OFFSET` = 0, so
//! a segment's `p_paddr` is its offset from `VIRT_BASE` (as Linux does) and
//! the first `PT_LOAD` is at `VIRT_BASE` itself: pseudo-physical frame `n`
//! of the bootstrap region is at `VIRT_BASE + n * 4096`.
//!
//! # The bootstrap region (`public/xen.h`, "start_info")
//!
//! The domain builder maps one contiguous virtual region starting at
//! `VIRT_BASE`, 1:1 onto the first pseudo-physical frames, holding in order:
//! the kernel image, the ramdisk, the p2m list, `start_info`, (domU: the
//! xenstore and console rings), the bootstrap page tables (`pt_base`,
//! `nr_pt_frames`; the **only read-only** part) and a one-page boot stack
//! (`rsp` at entry is its top). Everything is 4 KiB aligned. The region
//! ends on a 4 MiB boundary with **at least 512 KiB** of mapped, writable,
//! unused padding after the last element.
//!
//! [`BootstrapLayout::compute`] finds the end of the last element from what
//! `start_info` and the entry `rsp` say, and takes the smallest region end the
//! rules allow: `align_up(elements_end + 512 KiB, 4 MiB)`, never beyond the
//! domain's `nr_pages`. The pages in between (`free_start..free_end`) are
//! what [`crate::page_alloc`] hands out. Pages beyond the region exist (the
//! domain owns `nr_pages`) but are not mapped until the kernel maps them.

#![forbid(unsafe_code)]

use crate::start_info::StartInfo;
use crate::util::align_up;

/// `XEN_ELFNOTE_VIRT_BASE`: where the kernel is linked and the bootstrap
/// region starts. Must match `VIRT_BASE` in `pv-kernel.ld`.
pub const VIRT_BASE: u64 = 0xFFFF_FFFF_8000_0000;

/// `XEN_ELFNOTE_PADDR_OFFSET`: 0, so `virt = p_paddr + VIRT_BASE`.
pub const PADDR_OFFSET: u64 = 0;

/// Page size.
pub const PAGE_SIZE: u64 = crate::abi::XEN_PAGE_SIZE as u64;

/// The bootstrap region ends on a multiple of this (4 MiB).
pub const BOOTSTRAP_ALIGN: u64 = 4 << 20;

/// The bootstrap region has at least this much padding after its last element.
pub const BOOTSTRAP_MIN_PADDING: u64 = 512 << 10;

/// Size of the boot stack the builder sets up (one page, `rsp` at its top).
pub const BUILDER_STACK_SIZE: u64 = PAGE_SIZE;

/// How far past the page tables an entry `rsp` may be and still be believed
/// to be the top of the builder's boot stack.
pub const MAX_BUILDER_STACK_GAP: u64 = 16 * PAGE_SIZE;

/// What is where at boot, and which mapped pages are free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootstrapLayout {
    /// Start of the bootstrap region ([`VIRT_BASE`]).
    pub virt_base: u64,
    /// End of the kernel image (after `.bss`), page aligned.
    pub image_end: u64,
    /// End of the last bootstrap element, page aligned.
    pub elements_end: u64,
    /// End of the guaranteed-mapped region.
    pub mapped_end: u64,
    /// First free mapped page (== `elements_end`).
    pub free_start: u64,
    /// One past the last free mapped page (`>= free_start`).
    pub free_end: u64,
}

impl BootstrapLayout {
    /// Works the layout out from `start_info`, the end of the kernel image
    /// (`__pv_image_end`) and the stack pointer the builder passed.
    ///
    /// Elements that lie outside `VIRT_BASE .. VIRT_BASE + nr_pages pages`
    /// (a relocated p2m, a hostile value) are ignored; every sum saturates.
    pub fn compute(si: &StartInfo, image_end: u64, entry_sp: u64) -> BootstrapLayout {
        let virt_base = VIRT_BASE;
        let domain_end = virt_base.saturating_add(si.memory_bytes());
        let inside = |start: u64, end: u64| start >= virt_base && start <= end && end <= domain_end;

        let image_end = align_up(image_end.max(virt_base), PAGE_SIZE);
        let mut last = image_end;
        let mut note = |start: u64, end: u64| {
            if inside(start, end) {
                last = last.max(align_up(end, PAGE_SIZE));
            }
        };
        if let Some((start, len)) = si.ramdisk() {
            note(start, start.saturating_add(len));
        }
        note(si.mfn_list, si.mfn_list_end());
        note(si.va, si.va.saturating_add(PAGE_SIZE));
        let pt_end = si.pt_end();
        note(si.pt_base, pt_end);
        if inside(si.pt_base, pt_end) {
            note(pt_end, pt_end.saturating_add(BUILDER_STACK_SIZE));
        }
        if entry_sp >= pt_end && entry_sp - pt_end <= MAX_BUILDER_STACK_GAP {
            note(entry_sp, entry_sp);
        }
        let elements_end = last.min(align_down_page(domain_end));
        let mapped_end = align_up(
            elements_end.saturating_add(BOOTSTRAP_MIN_PADDING),
            BOOTSTRAP_ALIGN,
        )
        .min(align_down_page(domain_end));
        let free_start = elements_end;
        let free_end = mapped_end.max(free_start);
        BootstrapLayout {
            virt_base,
            image_end,
            elements_end,
            mapped_end,
            free_start,
            free_end,
        }
    }

    /// Number of free mapped pages.
    pub fn free_pages(&self) -> u64 {
        (self.free_end - self.free_start) / PAGE_SIZE
    }

    /// The pseudo-physical frame number of a bootstrap-region address.
    pub fn va_to_pfn(&self, va: u64) -> Option<u64> {
        if va >= self.virt_base && va < self.mapped_end {
            Some((va - self.virt_base) / PAGE_SIZE)
        } else {
            None
        }
    }

    /// The virtual address of a pseudo-physical frame in the bootstrap region.
    pub fn pfn_to_va(&self, pfn: u64) -> Option<u64> {
        let va = self.virt_base.checked_add(pfn.checked_mul(PAGE_SIZE)?)?;
        (va < self.mapped_end).then_some(va)
    }

    /// True if `[va, va + len)` lies inside the mapped bootstrap region.
    pub fn contains(&self, va: u64, len: u64) -> bool {
        match va.checked_add(len) {
            Some(end) => va >= self.virt_base && end <= self.mapped_end,
            None => false,
        }
    }
}

fn align_down_page(x: u64) -> u64 {
    crate::util::align_down(x, PAGE_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::start_info::tests::sample_raw;

    const MIB: u64 = 1 << 20;

    fn si() -> StartInfo {
        // Kernel 0..1 MiB, ramdisk at 1 MiB (0x1200 bytes), p2m at
        // +0x102000 (0x8000 pages * 8 = 256 KiB), start_info at +0x142000,
        // page tables +0x143000..+0x149000, stack page +0x149000..+0x14a000.
        StartInfo::from_raw(&sample_raw(), VIRT_BASE + 0x142000)
    }

    #[test]
    fn dom0_like_layout() {
        let l = BootstrapLayout::compute(&si(), VIRT_BASE + 0x8_0123, VIRT_BASE + 0x14a000);
        assert_eq!(l.image_end, VIRT_BASE + 0x8_1000);
        assert_eq!(l.elements_end, VIRT_BASE + 0x14a000);
        assert_eq!(l.mapped_end, VIRT_BASE + 4 * MIB);
        assert_eq!(l.free_start, VIRT_BASE + 0x14a000);
        assert_eq!(l.free_pages(), (4 * MIB - 0x14a000) / PAGE_SIZE);
        assert_eq!(l.va_to_pfn(VIRT_BASE + 0x14a000), Some(0x14a));
        assert_eq!(l.pfn_to_va(0x14a), Some(VIRT_BASE + 0x14a000));
        assert_eq!(l.pfn_to_va(0x400), None);
        assert!(l.contains(VIRT_BASE, 4 * MIB));
        assert!(!l.contains(VIRT_BASE, 4 * MIB + 1));
        assert!(!l.contains(u64::MAX, 2));
    }

    #[test]
    fn less_than_512k_before_a_4m_boundary_adds_4m() {
        let mut raw = sample_raw();
        raw.pt_base = VIRT_BASE + 4 * MIB - 0x10000; // stack ends 4M - 60K
        raw.nr_pt_frames = 3;
        let s = StartInfo::from_raw(&raw, VIRT_BASE + 0x142000);
        let l = BootstrapLayout::compute(&s, VIRT_BASE + 0x1000, 0);
        assert_eq!(l.elements_end, VIRT_BASE + 4 * MIB - 0xc000);
        assert_eq!(l.mapped_end, VIRT_BASE + 8 * MIB);
    }

    #[test]
    fn entry_sp_beyond_the_stack_page_is_believed_if_close() {
        let l = BootstrapLayout::compute(&si(), VIRT_BASE, VIRT_BASE + 0x14c000);
        assert_eq!(l.elements_end, VIRT_BASE + 0x14c000);
        // Far away: ignored.
        let l = BootstrapLayout::compute(&si(), VIRT_BASE, VIRT_BASE + 0x300000);
        assert_eq!(l.elements_end, VIRT_BASE + 0x14a000);
    }

    #[test]
    fn capped_by_the_domain_size() {
        let mut raw = sample_raw();
        raw.nr_pages = 0x200; // 2 MiB
        let s = StartInfo::from_raw(&raw, VIRT_BASE + 0x142000);
        let l = BootstrapLayout::compute(&s, VIRT_BASE, 0);
        assert_eq!(l.mapped_end, VIRT_BASE + 2 * MIB);
        assert!(l.free_end >= l.free_start);
    }

    #[test]
    fn hostile_start_info_gives_an_empty_or_sane_layout() {
        let mut raw = sample_raw();
        raw.nr_pages = u64::MAX;
        raw.pt_base = u64::MAX - 4096;
        raw.nr_pt_frames = u64::MAX;
        raw.mfn_list = 0x1000;
        raw.mod_start = u64::MAX - 1;
        raw.mod_len = u64::MAX;
        let s = StartInfo::from_raw(&raw, u64::MAX);
        let l = BootstrapLayout::compute(&s, u64::MAX, u64::MAX);
        assert!(l.free_end >= l.free_start);
        assert_eq!(l.free_end % PAGE_SIZE, 0);

        let mut raw = sample_raw();
        raw.nr_pages = 0;
        let s = StartInfo::from_raw(&raw, VIRT_BASE);
        let l = BootstrapLayout::compute(&s, VIRT_BASE + 0x5000, 0);
        assert_eq!(l.free_pages(), 0);
    }

    #[test]
    fn linker_script_agrees_with_virt_base() {
        let ld = include_str!("../pv-kernel.ld");
        assert!(
            ld.contains("VIRT_BASE = 0xFFFFFFFF80000000;"),
            "pv-kernel.ld must link at VIRT_BASE"
        );
        assert_eq!(VIRT_BASE, 0xFFFF_FFFF_8000_0000);
    }
}
