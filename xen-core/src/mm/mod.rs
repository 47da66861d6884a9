//! Machine memory management: the boot RAM map, the physical frame allocator
//! and Xen's frame table. Pure bookkeeping over numbers: this module owns the
//! frame-number types and trusts nothing it is given (every range is checked).

pub mod frame_alloc;
pub mod frame_table;
pub mod log_dirty;
pub mod memmap;
pub mod ptval;

/// x86-64 4-level paging entry bits (Intel SDM vol 3 §4.5, tables 4-15 to
/// 4-20; the same bit positions at every level). The one place PTE bits are
/// named.
pub mod pte {
    use bitflags::bitflags;

    bitflags! {
        /// Flag bits of a page-table entry.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct PteFlags: u64 {
            /// P: the entry is valid.
            const PRESENT = 1 << 0;
            /// R/W: writes allowed.
            const RW = 1 << 1;
            /// U/S: user-mode (ring 3) access allowed.
            const USER = 1 << 2;
            /// PWT: page-level write-through.
            const PWT = 1 << 3;
            /// PCD: page-level cache disable.
            const PCD = 1 << 4;
            /// A: accessed.
            const ACCESSED = 1 << 5;
            /// D: dirty (leaf entries).
            const DIRTY = 1 << 6;
            /// PS: maps a large page (L2/L3) / PAT (L1).
            const PSE = 1 << 7;
            /// G: global translation (leaf entries).
            const GLOBAL = 1 << 8;
            /// XD: execute disable.
            const NX = 1 << 63;
        }
    }

    /// Bits 12..=51: the physical address of the frame or next table.
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
    /// Entries per table.
    pub const ENTRIES: usize = 512;

    /// Xen's `BASE_PROT` for x86_64 PV: guest kernel and user both run in
    /// ring 3, so everything is user-accessible.
    pub const BASE_PROT: PteFlags = PteFlags::PRESENT
        .union(PteFlags::RW)
        .union(PteFlags::USER)
        .union(PteFlags::ACCESSED);
    /// Xen's `L1_PROT` for the bootstrap mapping.
    pub const L1_PROT: PteFlags = BASE_PROT;
    /// Xen's `L2_PROT`/`L3_PROT`/`L4_PROT`: `BASE_PROT` | dirty.
    pub const UPPER_PROT: PteFlags = BASE_PROT.union(PteFlags::DIRTY);
    /// Xen's `__PAGE_HYPERVISOR_RW`: present, writable, accessed, dirty, NX.
    pub const HYPERVISOR_RW: PteFlags = PteFlags::PRESENT
        .union(PteFlags::RW)
        .union(PteFlags::ACCESSED)
        .union(PteFlags::DIRTY)
        .union(PteFlags::NX);

    /// An entry pointing at machine address `maddr` (must be page aligned
    /// and below 2^52; other bits are masked off).
    pub const fn entry(maddr: u64, flags: PteFlags) -> u64 {
        (maddr & ADDR_MASK) | flags.bits()
    }

    /// The machine address an entry points at.
    pub const fn entry_addr(entry: u64) -> u64 {
        entry & ADDR_MASK
    }

    /// The flags of an entry.
    pub const fn entry_flags(entry: u64) -> PteFlags {
        PteFlags::from_bits_truncate(entry)
    }
}

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
    fn pte_helpers() {
        use pte::*;
        let e = entry(0x1234_5000, L1_PROT);
        assert_eq!(e, 0x1234_5027);
        assert_eq!(entry_addr(e), 0x1234_5000);
        assert_eq!(entry_flags(e), L1_PROT);
        assert_eq!(UPPER_PROT.bits(), 0x67);
        assert_eq!(entry(u64::MAX, PteFlags::empty()), ADDR_MASK);
        assert_eq!(entry_flags(entry(0, HYPERVISOR_RW)), HYPERVISOR_RW);
        assert_eq!(HYPERVISOR_RW.bits(), 0x8000_0000_0000_0063);
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
