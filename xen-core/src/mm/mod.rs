//! Machine memory management: the boot RAM map, the physical frame allocator
//! and Xen's frame table. Pure bookkeeping over numbers: this module owns the
//! frame-number types and trusts nothing it is given (every range is checked).

pub mod frame_alloc;
pub mod frame_table;
pub mod memmap;
pub mod pte;

use core::fmt;

/// log2 of the x86 base page size.
pub const PAGE_SHIFT: u32 = 12;
/// The x86 base page size: every frame is 4 KiB.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// Highest physical address width x86-64 paging can express (Intel SDM vol 3 §4.1.4).
pub const MAX_PHYS_ADDR_BITS: u32 = 52;
/// Exclusive upper bound of physical addresses (2^52).
pub const MAX_PHYS_ADDR: u64 = 1 << MAX_PHYS_ADDR_BITS;

/// A machine frame number: a host-physical address >> 12.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mfn(pub u64);

/// A guest pseudo-physical frame number (an index into the domain's p2m).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pfn(pub u64);

impl Mfn {
    /// The frame holding machine address `maddr` (rounded down).
    pub const fn from_maddr(maddr: u64) -> Self {
        Mfn(maddr >> PAGE_SHIFT)
    }

    /// Machine address of the frame's first byte (wrapping is impossible for
    /// any frame below 2^52, the only ones the allocator hands out).
    pub const fn maddr(self) -> u64 {
        self.0 << PAGE_SHIFT
    }
}

impl Pfn {
    /// Pseudo-physical address of the frame's first byte.
    pub const fn paddr(self) -> u64 {
        self.0 << PAGE_SHIFT
    }
}

impl fmt::Debug for Mfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mfn {:#x}", self.0)
    }
}

impl fmt::Display for Mfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Debug for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pfn {:#x}", self.0)
    }
}

impl fmt::Display for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Round `x` down to a multiple of the page size.
pub const fn page_align_down(x: u64) -> u64 {
    x & !(PAGE_SIZE - 1)
}

/// Round `x` up to a multiple of the page size; `None` on overflow.
pub const fn page_align_up(x: u64) -> Option<u64> {
    match x.checked_add(PAGE_SIZE - 1) {
        Some(v) => Some(page_align_down(v)),
        None => None,
    }
}

/// Number of frames needed to hold `bytes` (Xen's `PFN_UP`).
pub const fn pfn_up(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    #[test]
    fn mfn_conversions() {
        assert_eq!(Mfn::from_maddr(0x1234_5678).0, 0x12345);
        assert_eq!(Mfn(0x12345).maddr(), 0x1234_5000);
        assert_eq!(Pfn(3).paddr(), 0x3000);
        assert_eq!(format!("{:?}", Mfn(0x10)), "mfn 0x10");
        assert_eq!(format!("{}", Pfn(0x10)), "0x10");
    }

    #[test]
    fn alignment_helpers() {
        assert_eq!(page_align_down(0x1fff), 0x1000);
        assert_eq!(page_align_up(0x1001), Some(0x2000));
        assert_eq!(page_align_up(0x1000), Some(0x1000));
        assert_eq!(page_align_up(u64::MAX), None);
        assert_eq!(pfn_up(0), 0);
        assert_eq!(pfn_up(1), 1);
        assert_eq!(pfn_up(4096), 1);
        assert_eq!(pfn_up(4097), 2);
        assert_eq!(pfn_up(u64::MAX), 1 << 52);
    }
}
