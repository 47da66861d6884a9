//! The hypervisor's view of usable RAM: a sorted, non-overlapping, page-aligned
//! list of RAM ranges built from the firmware's E820-style map, from which boot
//! code carves out what is already in use. Trusts nothing in the raw map.
//!
//! Overlaps are resolved like Linux's and Xen's E820 sanitisers: where RAM
//! and any other type overlap, the non-RAM type wins. Entries with zero size,
//! entries that wrap around 2^64 and anything at or above 2^52 (unaddressable
//! by x86-64 paging) are clipped or dropped, never trusted.

use core::fmt;

use super::{page_align_down, page_align_up, MAX_PHYS_ADDR};

/// E820 / Multiboot2 / `hvm_memmap_table_entry` memory types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum E820Type {
    /// 1: usable RAM.
    Ram,
    /// 2: reserved, unusable.
    Reserved,
    /// 3: ACPI tables, reclaimable after parsing.
    AcpiReclaimable,
    /// 4: ACPI non-volatile storage.
    AcpiNvs,
    /// 5: defective RAM.
    Unusable,
    /// Anything else (6 disabled, 7 persistent memory, vendor types).
    Other(u32),
}

impl E820Type {
    /// Decode the numeric type of a firmware entry.
    pub const fn from_raw(raw: u32) -> Self {
        match raw {
            1 => E820Type::Ram,
            2 => E820Type::Reserved,
            3 => E820Type::AcpiReclaimable,
            4 => E820Type::AcpiNvs,
            5 => E820Type::Unusable,
            other => E820Type::Other(other),
        }
    }

    /// The numeric type as the firmware spells it.
    pub const fn to_raw(self) -> u32 {
        match self {
            E820Type::Ram => 1,
            E820Type::Reserved => 2,
            E820Type::AcpiReclaimable => 3,
            E820Type::AcpiNvs => 4,
            E820Type::Unusable => 5,
            E820Type::Other(other) => other,
        }
    }
}

/// One entry of a firmware memory map, exactly as the boot protocol gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RawEntry {
    /// Physical start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// Numeric E820 type (see [`E820Type::from_raw`]).
    pub kind: u32,
}

impl RawEntry {
    /// Decoded type.
    pub const fn e820_type(&self) -> E820Type {
        E820Type::from_raw(self.kind)
    }

    /// The entry as a half-open range clipped to the addressable space;
    /// `None` if nothing addressable is left.
    fn clipped(&self) -> Option<MemRange> {
        let end = self.addr.saturating_add(self.size).min(MAX_PHYS_ADDR);
        (self.addr < end).then_some(MemRange {
            start: self.addr,
            end,
        })
    }
}

/// A half-open physical address range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MemRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl MemRange {
    /// `[start, end)`; callers keep `start <= end`.
    pub const fn new(start: u64, end: u64) -> Self {
        MemRange { start, end }
    }

    /// Length in bytes.
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// True if the range holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// True if the two ranges share at least one byte (an empty range shares none).
    pub const fn overlaps(&self, other: &MemRange) -> bool {
        !self.is_empty() && !other.is_empty() && self.start < other.end && other.start < self.end
    }
}

/// Why a memory map operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemMapError {
    /// The map needs more ranges than its fixed capacity.
    TooManyRanges {
        /// The capacity that was exceeded.
        capacity: usize,
    },
    /// `start > end` was passed to an operation.
    InvertedRange {
        /// Given start.
        start: u64,
        /// Given end.
        end: u64,
    },
}

impl fmt::Display for MemMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemMapError::TooManyRanges { capacity } => {
                write!(f, "memory map needs more than {capacity} ranges")
            }
            MemMapError::InvertedRange { start, end } => {
                write!(f, "inverted range {start:#x}..{end:#x}")
            }
        }
    }
}

/// Default capacity of a [`MemMap`].
pub const MEMMAP_CAPACITY: usize = 128;

/// Usable RAM: sorted, non-overlapping, non-adjacent (adjacent ranges are
/// merged) and page-aligned inward.
#[derive(Clone, Debug)]
pub struct MemMap<const N: usize = MEMMAP_CAPACITY> {
    ranges: [MemRange; N],
    len: usize,
}

impl<const N: usize> Default for MemMap<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> MemMap<N> {
    /// An empty map.
    pub const fn new() -> Self {
        MemMap {
            ranges: [MemRange { start: 0, end: 0 }; N],
            len: 0,
        }
    }

    /// Build the RAM map from a firmware memory map in any order, with any
    /// overlaps: RAM entries are merged, every non-RAM entry is carved out,
    /// then each range is shrunk to whole pages.
    pub fn from_raw(entries: &[RawEntry]) -> Result<Self, MemMapError> {
        let mut map = Self::new();
        for range in entries
            .iter()
            .filter(|e| e.e820_type() == E820Type::Ram)
            .filter_map(RawEntry::clipped)
        {
            map.insert_unaligned(range)?;
        }
        for range in entries
            .iter()
            .filter(|e| e.e820_type() != E820Type::Ram)
            .filter_map(RawEntry::clipped)
        {
            map.remove_unaligned(range)?;
        }
        map.align_inward();
        Ok(map)
    }

    /// The RAM ranges, sorted by address.
    pub fn ranges(&self) -> &[MemRange] {
        &self.ranges[..self.len]
    }

    /// Number of ranges.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// True if there is no RAM at all.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total bytes of RAM.
    pub fn total_ram(&self) -> u64 {
        self.ranges().iter().map(MemRange::len).sum()
    }

    /// One past the highest RAM byte (0 if there is no RAM): the bound a
    /// frame allocator or frame table must cover.
    pub fn ram_end(&self) -> u64 {
        self.ranges().last().map_or(0, |r| r.end)
    }

    /// True if every byte of `[start, end)` is RAM in this map.
    pub fn is_ram(&self, start: u64, end: u64) -> bool {
        start >= end
            || self
                .ranges()
                .iter()
                .any(|r| r.start <= start && end <= r.end)
    }

    /// Add RAM (e.g. a boot module given back after use); shrunk to whole pages.
    pub fn add_ram(&mut self, start: u64, end: u64) -> Result<(), MemMapError> {
        check_order(start, end)?;
        let start = page_align_up(start).unwrap_or(u64::MAX);
        let end = page_align_down(end.min(MAX_PHYS_ADDR));
        if start < end {
            self.insert_unaligned(MemRange { start, end })?;
        }
        Ok(())
    }

    /// Carve `[start, end)` out of RAM (hypervisor image, boot modules, the
    /// low 1 MiB, ...). Grown outward to whole pages: a partly used page is
    /// not RAM any more. Fails only if splitting a range exceeds capacity,
    /// in which case the map is unchanged.
    pub fn reserve(&mut self, start: u64, end: u64) -> Result<(), MemMapError> {
        check_order(start, end)?;
        let start = page_align_down(start);
        let end = page_align_up(end).unwrap_or(u64::MAX);
        if start < end {
            self.remove_unaligned(MemRange { start, end })?;
        }
        Ok(())
    }

    /// Union `range` into the map, merging with overlapping or touching ranges.
    fn insert_unaligned(&mut self, range: MemRange) -> Result<(), MemMapError> {
        let mut merged = range;
        // First index whose range ends at or after our start (may touch us).
        let first = self.ranges().partition_point(|r| r.end < merged.start);
        // One past the last index whose range starts at or before our end.
        let last = self.ranges().partition_point(|r| r.start <= merged.end);
        if first < last {
            merged.start = merged.start.min(self.ranges[first].start);
            merged.end = merged.end.max(self.ranges[last - 1].end);
        } else if self.len == N {
            return Err(MemMapError::TooManyRanges { capacity: N });
        }
        self.splice(first, last, &[merged]);
        Ok(())
    }

    /// Subtract `hole` from the map.
    fn remove_unaligned(&mut self, hole: MemRange) -> Result<(), MemMapError> {
        let first = self.ranges().partition_point(|r| r.end <= hole.start);
        let last = self.ranges().partition_point(|r| r.start < hole.end);
        if first >= last {
            return Ok(());
        }
        let head = MemRange::new(self.ranges[first].start, hole.start);
        let tail = MemRange::new(hole.end, self.ranges[last - 1].end);
        let mut keep = [MemRange::default(); 2];
        let mut n = 0;
        for piece in [head, tail] {
            if !piece.is_empty() {
                keep[n] = piece;
                n += 1;
            }
        }
        if self.len - (last - first) + n > N {
            return Err(MemMapError::TooManyRanges { capacity: N });
        }
        self.splice(first, last, &keep[..n]);
        Ok(())
    }

    /// Replace `ranges[first..last]` with `with`; the caller checked capacity.
    fn splice(&mut self, first: usize, last: usize, with: &[MemRange]) {
        let old_len = self.len;
        let new_len = old_len - (last - first) + with.len();
        let tail_to = first + with.len();
        self.ranges.copy_within(last..old_len, tail_to);
        self.ranges[first..tail_to].copy_from_slice(with);
        self.len = new_len;
    }

    /// Shrink every range to whole pages and drop the ones that vanish.
    fn align_inward(&mut self) {
        let mut out = 0;
        for i in 0..self.len {
            let r = self.ranges[i];
            let start = page_align_up(r.start).unwrap_or(u64::MAX);
            let end = page_align_down(r.end);
            if start < end {
                self.ranges[out] = MemRange { start, end };
                out += 1;
            }
        }
        self.len = out;
    }
}

fn check_order(start: u64, end: u64) -> Result<(), MemMapError> {
    if start > end {
        Err(MemMapError::InvertedRange { start, end })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;

    fn ram(addr: u64, size: u64) -> RawEntry {
        RawEntry {
            addr,
            size,
            kind: 1,
        }
    }

    fn res(addr: u64, size: u64, kind: u32) -> RawEntry {
        RawEntry { addr, size, kind }
    }

    fn pairs<const N: usize>(m: &MemMap<N>) -> Vec<(u64, u64)> {
        m.ranges().iter().map(|r| (r.start, r.end)).collect()
    }

    /// Invariants every map must keep.
    fn check_invariants<const N: usize>(m: &MemMap<N>) {
        for r in m.ranges() {
            assert!(r.start < r.end, "empty range {r:?}");
            assert_eq!(r.start % 4096, 0);
            assert_eq!(r.end % 4096, 0);
            assert!(r.end <= MAX_PHYS_ADDR);
        }
        for w in m.ranges().windows(2) {
            assert!(w[0].end < w[1].start, "unsorted/adjacent {w:?}");
        }
    }

    #[test]
    fn typical_qemu_map() {
        let m: MemMap = MemMap::from_raw(&[
            ram(0, 0x9fc00),
            res(0x9fc00, 0x400, 2),
            res(0xf0000, 0x10000, 2),
            ram(MIB, 511 * MIB - 0x20000),
            res(512 * MIB - 0x20000, 0x20000, 2),
            res(0xfffc0000, 0x40000, 2),
        ])
        .unwrap();
        check_invariants(&m);
        assert_eq!(pairs(&m), [(0, 0x9f000), (MIB, 512 * MIB - 0x20000)]);
        assert_eq!(m.total_ram(), 0x9f000 + 511 * MIB - 0x20000);
        assert_eq!(m.ram_end(), 512 * MIB - 0x20000);
    }

    #[test]
    fn unsorted_and_overlapping_ram_is_merged() {
        let m: MemMap = MemMap::from_raw(&[
            ram(8 * MIB, 4 * MIB),
            ram(0, 2 * MIB),
            ram(MIB, 2 * MIB),
            ram(3 * MIB, MIB), // touches the previous one
            ram(9 * MIB, MIB), // inside the first
        ])
        .unwrap();
        check_invariants(&m);
        assert_eq!(pairs(&m), [(0, 4 * MIB), (8 * MIB, 12 * MIB)]);
    }

    #[test]
    fn reserved_wins_over_ram_regardless_of_order() {
        for entries in [
            [ram(0, 16 * MIB), res(4 * MIB, MIB, 2)],
            [res(4 * MIB, MIB, 2), ram(0, 16 * MIB)],
        ] {
            let m: MemMap = MemMap::from_raw(&entries).unwrap();
            check_invariants(&m);
            assert_eq!(pairs(&m), [(0, 4 * MIB), (5 * MIB, 16 * MIB)]);
        }
    }

    #[test]
    fn all_non_ram_types_are_excluded() {
        for kind in [2, 3, 4, 5, 6, 7, 0, 0xdead] {
            let m: MemMap = MemMap::from_raw(&[ram(0, 8 * MIB), res(MIB, MIB, kind)]).unwrap();
            assert_eq!(pairs(&m), [(0, MIB), (2 * MIB, 8 * MIB)], "kind {kind}");
        }
    }

    #[test]
    fn unaligned_ram_shrinks_inward_but_adjacent_entries_join_first() {
        let m: MemMap = MemMap::from_raw(&[ram(0x1001, 0x2fff), ram(0x10000, 0x800)]).unwrap();
        check_invariants(&m);
        assert_eq!(pairs(&m), [(0x2000, 0x4000)]);
        // Two entries that meet at an unaligned address form one range.
        let m: MemMap = MemMap::from_raw(&[ram(0x1000, 0x1800), ram(0x2800, 0x1800)]).unwrap();
        assert_eq!(pairs(&m), [(0x1000, 0x4000)]);
    }

    #[test]
    fn unaligned_reservation_takes_whole_pages() {
        let m: MemMap = MemMap::from_raw(&[ram(0, 0x10000), res(0x3001, 0x10, 2)]).unwrap();
        assert_eq!(pairs(&m), [(0, 0x3000), (0x4000, 0x10000)]);
    }

    #[test]
    fn bogus_entries_are_dropped_or_clipped() {
        let m: MemMap = MemMap::from_raw(&[
            ram(0x5000, 0),                  // empty
            ram(u64::MAX - 0xfff, 0x10_000), // wraps, and beyond 2^52
            ram(MAX_PHYS_ADDR - 0x2000, 0x10_000),
            ram(0x100, 0x100), // less than a page
            res(0, 0, 2),
            res(u64::MAX, u64::MAX, 2),
        ])
        .unwrap();
        check_invariants(&m);
        assert_eq!(pairs(&m), [(MAX_PHYS_ADDR - 0x2000, MAX_PHYS_ADDR)]);
        let empty: MemMap = MemMap::from_raw(&[]).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.total_ram(), 0);
        assert_eq!(empty.ram_end(), 0);
    }

    #[test]
    fn reserve_carves_and_splits() {
        let mut m: MemMap = MemMap::from_raw(&[ram(0, 64 * MIB)]).unwrap();
        m.reserve(0, MIB).unwrap(); // low 1 MiB
        m.reserve(2 * MIB, 3 * MIB).unwrap(); // hypervisor image
        m.reserve(10 * MIB + 1, 12 * MIB - 1).unwrap(); // a module
        m.reserve(100 * MIB, 200 * MIB).unwrap(); // nothing there
        m.reserve(5 * MIB, 5 * MIB).unwrap(); // empty
        check_invariants(&m);
        assert_eq!(
            pairs(&m),
            [(MIB, 2 * MIB), (3 * MIB, 10 * MIB), (12 * MIB, 64 * MIB)]
        );
        assert!(m.is_ram(4 * MIB, 5 * MIB));
        assert!(!m.is_ram(MIB, 3 * MIB));
        assert!(!m.is_ram(0, 4096));
        assert!(m.is_ram(7, 7));
        // Reserve spanning several ranges.
        m.reserve(MIB + 4096, 20 * MIB).unwrap();
        assert_eq!(pairs(&m), [(MIB, MIB + 4096), (20 * MIB, 64 * MIB)]);
        // Reserve everything up to the top of the address space.
        m.reserve(0, u64::MAX).unwrap();
        assert!(m.is_empty());
    }

    #[test]
    fn add_ram_merges_and_aligns() {
        let mut m: MemMap = MemMap::from_raw(&[ram(0, MIB), ram(4 * MIB, MIB)]).unwrap();
        m.add_ram(MIB, 2 * MIB + 5).unwrap();
        assert_eq!(pairs(&m), [(0, 2 * MIB), (4 * MIB, 5 * MIB)]);
        m.add_ram(2 * MIB + 1, 4 * MIB).unwrap();
        assert_eq!(pairs(&m), [(0, 2 * MIB), (2 * MIB + 4096, 5 * MIB)]);
        m.add_ram(0x10, 0x20).unwrap(); // less than a page: no-op
        m.add_ram(u64::MAX - 5, u64::MAX).unwrap(); // unaddressable: no-op
        check_invariants(&m);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn inverted_ranges_are_rejected() {
        let mut m: MemMap = MemMap::from_raw(&[ram(0, MIB)]).unwrap();
        assert_eq!(
            m.reserve(5, 4),
            Err(MemMapError::InvertedRange { start: 5, end: 4 })
        );
        assert!(m.add_ram(5, 4).is_err());
        assert_eq!(pairs(&m), [(0, MIB)]);
    }

    #[test]
    fn capacity_is_enforced_without_corruption() {
        let entries: Vec<RawEntry> = (0..5).map(|i| ram(i * 2 * MIB, MIB)).collect();
        assert_eq!(
            MemMap::<4>::from_raw(&entries).unwrap_err(),
            MemMapError::TooManyRanges { capacity: 4 }
        );
        let mut m = MemMap::<4>::from_raw(&entries[..4]).unwrap();
        let before = pairs(&m);
        // Splitting a range needs a fifth slot.
        assert!(m.reserve(MIB / 2, MIB / 2 + 4096).is_err());
        assert_eq!(pairs(&m), before);
        // Merging frees slots even when full.
        m.add_ram(0, 8 * MIB).unwrap();
        assert_eq!(pairs(&m), [(0, 8 * MIB)]);
    }

    #[test]
    fn many_random_like_entries_keep_invariants() {
        // A deterministic pseudo-random soup of entries.
        let mut x: u64 = 0x1234_5678_9abc_def0;
        let mut entries = Vec::new();
        for _ in 0..60 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let addr = (x >> 20) % (256 * MIB);
            let size = (x >> 8) % (16 * MIB);
            let kind = if x.is_multiple_of(3) { 2 } else { 1 };
            entries.push(RawEntry { addr, size, kind });
        }
        let m: MemMap = MemMap::from_raw(&entries).unwrap();
        check_invariants(&m);
        // Every byte claimed RAM must be RAM in the input and in no other entry.
        for r in m.ranges() {
            for probe in [r.start, r.end - 1, (r.start + r.end) / 2] {
                assert!(entries
                    .iter()
                    .any(|e| e.kind == 1 && e.addr <= probe && probe < e.addr + e.size));
                assert!(!entries
                    .iter()
                    .any(|e| e.kind != 1 && e.addr <= probe && probe < e.addr + e.size));
            }
        }
    }

    #[test]
    fn type_round_trip() {
        for raw in 0..10 {
            assert_eq!(E820Type::from_raw(raw).to_raw(), raw);
        }
        assert_eq!(E820Type::from_raw(4), E820Type::AcpiNvs);
    }
}
