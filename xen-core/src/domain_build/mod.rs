//! The pure half of the PV domain builder (Xen's xen/arch/x86/pv/dom0_build.c
//! and libelf): parse the kernel ELF and its Xen notes, plan the initial
//! virtual layout, and write the bootstrap page tables. Owns no memory; trusts
//! neither the kernel image nor the sizes it is given.
//!
//! The glue then allocates the domain's frames, builds the p2m, copies the
//! kernel ([`elf::PvKernel::load_into`]), fills `start_info` and starts the
//! vCPU at [`elf::PvKernel::entry`] with `rsp` = [`layout::BootLayout::stack_top`]
//! and `rsi` = the `start_info` address.

pub mod elf;
pub mod layout;
pub mod pagetable;

use core::fmt;

pub use hypercall_abi::arch_x86::{HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START};

/// A half-open virtual address range `[start, end)`.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct VRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl VRange {
    /// `[start, end)`.
    pub const fn new(start: u64, end: u64) -> Self {
        VRange { start, end }
    }

    /// The hypervisor's reserved range in every PV address space (L4 slots 256..=271).
    pub const HYPERVISOR: VRange = VRange::new(HYPERVISOR_VIRT_START, HYPERVISOR_VIRT_END);

    /// Length in bytes.
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// True if the range holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// True if the two ranges share a byte (an empty range shares none).
    pub const fn overlaps(&self, other: &VRange) -> bool {
        !self.is_empty() && !other.is_empty() && self.start < other.end && other.start < self.end
    }

    /// True if `addr` lies in the range.
    pub const fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }
}

impl fmt::Debug for VRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}..{:#x}", self.start, self.end)
    }
}

impl fmt::Display for VRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}->{:#x}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vrange_basics() {
        let r = VRange::new(0x1000, 0x3000);
        assert_eq!(r.len(), 0x2000);
        assert!(!r.is_empty());
        assert!(r.contains(0x1000) && r.contains(0x2fff) && !r.contains(0x3000));
        assert!(r.overlaps(&VRange::new(0x2fff, 0x4000)));
        assert!(!r.overlaps(&VRange::new(0x3000, 0x4000)));
        assert!(!r.overlaps(&VRange::new(0x2000, 0x2000)));
        assert!(VRange::new(5, 3).is_empty());
        assert_eq!(VRange::HYPERVISOR.start >> 39 & 511, 256);
        assert_eq!((VRange::HYPERVISOR.end - 1) >> 39 & 511, 271);
        assert_eq!(std::format!("{:?}", r), "0x1000..0x3000");
    }
}
