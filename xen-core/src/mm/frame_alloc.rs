//! The boot-time physical frame allocator: hands out 4 KiB machine frames
//! (single, contiguous and aligned, below an address limit) from the RAM map.
//! Owns two bitmaps in caller-provided memory; trusts only its own bitmaps.
//!
//! Storage: `storage_words(nr_frames)` u64 words, split in two bitmaps of
//! `bitmap_words(nr_frames)` words each: `managed` (the frame is RAM given to
//! the allocator) and `free` (the frame is available). A frame that is not
//! managed (firmware holes, the hypervisor image, boot modules) can never be
//! allocated or freed; freeing a free frame is a double free. Allocation
//! searches top-down so that low memory (< 4 GiB, < 1 MiB) stays available
//! for the callers that need it, as Xen keeps its DMA zones for last.

use core::fmt;

use super::memmap::MemMap;
use super::{Mfn, PAGE_SHIFT};

const BITS: u64 = u64::BITS as u64;

/// Words of one bitmap covering `nr_frames` frames.
pub const fn bitmap_words(nr_frames: u64) -> usize {
    nr_frames.div_ceil(BITS) as usize
}

/// Words of storage [`FrameAllocator::new`] needs for `nr_frames` frames.
pub const fn storage_words(nr_frames: u64) -> usize {
    2 * bitmap_words(nr_frames)
}

/// Why an allocator operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameAllocError {
    /// The caller's storage cannot hold both bitmaps.
    StorageTooSmall {
        /// Words needed.
        needed: usize,
        /// Words given.
        given: usize,
    },
    /// No free run of frames satisfies the request.
    OutOfMemory {
        /// Frames requested.
        count: u64,
    },
    /// Alignment must be a non-zero power of two (in frames).
    BadAlignment(u64),
    /// A request for zero frames.
    ZeroCount,
    /// The frame lies beyond the frames the bitmaps cover.
    OutOfRange(Mfn),
    /// The frame is not RAM handed to the allocator (reserved or a hole).
    NotManaged(Mfn),
    /// The frame is already free.
    DoubleFree(Mfn),
    /// The frame is already managed by the allocator.
    AlreadyManaged(Mfn),
    /// The frame is managed but already allocated.
    NotFree(Mfn),
}

impl fmt::Display for FrameAllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StorageTooSmall { needed, given } => {
                write!(f, "frame bitmap needs {needed} words, got {given}")
            }
            Self::OutOfMemory { count } => write!(f, "out of memory allocating {count} frames"),
            Self::BadAlignment(a) => write!(f, "bad alignment {a:#x} frames"),
            Self::ZeroCount => write!(f, "zero-frame request"),
            Self::OutOfRange(m) => write!(f, "mfn {m} beyond the frame bitmap"),
            Self::NotManaged(m) => write!(f, "mfn {m} is not allocatable RAM"),
            Self::DoubleFree(m) => write!(f, "double free of mfn {m}"),
            Self::AlreadyManaged(m) => write!(f, "mfn {m} is already managed"),
            Self::NotFree(m) => write!(f, "mfn {m} is in use"),
        }
    }
}

/// A bitmap physical frame allocator over caller-provided storage.
pub struct FrameAllocator<'a> {
    managed: &'a mut [u64],
    free: &'a mut [u64],
    nr_frames: u64,
    total: u64,
    nr_free: u64,
    /// Every free frame is below this (a bound, not always tight): the
    /// search for the highest free frame starts here, not at the top of
    /// RAM, whose frames a big Dom0 holds; allocating the highest free
    /// frame lowers it, freeing one raises it.
    free_top: u64,
}

impl<'a> FrameAllocator<'a> {
    /// An allocator covering MFNs `0..nr_frames` with nothing managed yet.
    /// The storage is cleared; it must hold [`storage_words`]`(nr_frames)`.
    pub fn new(storage: &'a mut [u64], nr_frames: u64) -> Result<Self, FrameAllocError> {
        let words = bitmap_words(nr_frames);
        let needed = 2 * words;
        if storage.len() < needed {
            return Err(FrameAllocError::StorageTooSmall {
                needed,
                given: storage.len(),
            });
        }
        let (managed, rest) = storage.split_at_mut(words);
        let free = &mut rest[..words];
        managed.fill(0);
        free.fill(0);
        Ok(FrameAllocator {
            managed,
            free,
            nr_frames,
            total: 0,
            nr_free: 0,
            free_top: 0,
        })
    }

    /// An allocator whose free frames are exactly the RAM in `map`
    /// (reserve the bitmap storage itself in `map` first).
    pub fn from_memmap<const N: usize>(
        storage: &'a mut [u64],
        map: &MemMap<N>,
    ) -> Result<Self, FrameAllocError> {
        let mut fa = Self::new(storage, map.ram_end() >> PAGE_SHIFT)?;
        for r in map.ranges() {
            let start = r.start >> PAGE_SHIFT;
            fa.add_free_range(Mfn(start), (r.end >> PAGE_SHIFT) - start)?;
        }
        Ok(fa)
    }

    /// Frames the bitmaps cover (MFNs `0..nr_frames`).
    pub const fn nr_frames(&self) -> u64 {
        self.nr_frames
    }

    /// Frames handed to the allocator.
    pub const fn total_frames(&self) -> u64 {
        self.total
    }

    /// Frames currently free.
    pub const fn free_frames(&self) -> u64 {
        self.nr_free
    }

    /// True if `mfn` is managed and free.
    pub fn is_free(&self, mfn: Mfn) -> bool {
        mfn.0 < self.nr_frames && test(self.free, mfn.0)
    }

    /// True if `mfn` is RAM handed to the allocator (free or allocated).
    pub fn is_managed(&self, mfn: Mfn) -> bool {
        mfn.0 < self.nr_frames && test(self.managed, mfn.0)
    }

    /// Hand `count` frames from `start` to the allocator as free RAM (e.g. boot
    /// modules once consumed). All-or-nothing.
    pub fn add_free_range(&mut self, start: Mfn, count: u64) -> Result<(), FrameAllocError> {
        self.check_range(start, count)?;
        if let Some(m) = (start.0..start.0 + count).find(|&m| test(self.managed, m)) {
            return Err(FrameAllocError::AlreadyManaged(Mfn(m)));
        }
        for m in start.0..start.0 + count {
            set(self.managed, m);
            set(self.free, m);
        }
        self.free_top = self.free_top.max(start.0 + count);
        self.total += count;
        self.nr_free += count;
        Ok(())
    }

    /// Allocate one frame, anywhere.
    pub fn alloc(&mut self) -> Result<Mfn, FrameAllocError> {
        self.alloc_contig_below(1, 1, Mfn(self.nr_frames))
    }

    /// Allocate one frame with `mfn < limit` (e.g. `Mfn(0x100)` for the AP
    /// trampoline below 1 MiB).
    pub fn alloc_below(&mut self, limit: Mfn) -> Result<Mfn, FrameAllocError> {
        self.alloc_contig_below(1, 1, limit)
    }

    /// Allocate `count` contiguous frames whose first MFN is a multiple of
    /// `align` frames.
    pub fn alloc_contig(&mut self, count: u64, align: u64) -> Result<Mfn, FrameAllocError> {
        self.alloc_contig_below(count, align, Mfn(self.nr_frames))
    }

    /// Allocate `count` contiguous frames, first MFN a multiple of `align`,
    /// all below `limit` (exclusive). Takes the highest run that fits.
    pub fn alloc_contig_below(
        &mut self,
        count: u64,
        align: u64,
        limit: Mfn,
    ) -> Result<Mfn, FrameAllocError> {
        if count == 0 {
            return Err(FrameAllocError::ZeroCount);
        }
        if !align.is_power_of_two() {
            return Err(FrameAllocError::BadAlignment(align));
        }
        let limit = limit.0.min(self.nr_frames);
        let start = self
            .find_free_run(count, align, limit.min(self.free_top))
            .ok_or(FrameAllocError::OutOfMemory { count })?;
        for m in start..start + count {
            clear(self.free, m);
        }
        if count == 1 && align == 1 && limit >= self.free_top {
            // The highest free frame went: none is left at or above it.
            self.free_top = start;
        }
        self.nr_free -= count;
        Ok(Mfn(start))
    }

    /// Take specific free frames out of the pool (e.g. frames the boot path
    /// already uses). All-or-nothing.
    pub fn claim(&mut self, start: Mfn, count: u64) -> Result<(), FrameAllocError> {
        self.check_range(start, count)?;
        for m in start.0..start.0 + count {
            if !test(self.managed, m) {
                return Err(FrameAllocError::NotManaged(Mfn(m)));
            }
            if !test(self.free, m) {
                return Err(FrameAllocError::NotFree(Mfn(m)));
            }
        }
        for m in start.0..start.0 + count {
            clear(self.free, m);
        }
        self.nr_free -= count;
        Ok(())
    }

    /// Return one frame.
    pub fn free(&mut self, mfn: Mfn) -> Result<(), FrameAllocError> {
        self.free_contig(mfn, 1)
    }

    /// Return `count` frames from `start`. All-or-nothing: a reserved or
    /// already free frame anywhere in the run fails the whole call.
    pub fn free_contig(&mut self, start: Mfn, count: u64) -> Result<(), FrameAllocError> {
        self.check_range(start, count)?;
        for m in start.0..start.0 + count {
            if !test(self.managed, m) {
                return Err(FrameAllocError::NotManaged(Mfn(m)));
            }
            if test(self.free, m) {
                return Err(FrameAllocError::DoubleFree(Mfn(m)));
            }
        }
        for m in start.0..start.0 + count {
            set(self.free, m);
        }
        self.free_top = self.free_top.max(start.0 + count);
        self.nr_free += count;
        Ok(())
    }

    fn check_range(&self, start: Mfn, count: u64) -> Result<(), FrameAllocError> {
        if count == 0 {
            return Err(FrameAllocError::ZeroCount);
        }
        match start.0.checked_add(count) {
            Some(end) if end <= self.nr_frames => Ok(()),
            _ => Err(FrameAllocError::OutOfRange(Mfn(start
                .0
                .max(self.nr_frames)))),
        }
    }

    /// Highest `start` with `start % align == 0`, `start + count <= limit`
    /// and every frame in the run free.
    fn find_free_run(&self, count: u64, align: u64, limit: u64) -> Option<u64> {
        if count == 1 && align == 1 {
            return self.highest_free(limit);
        }
        let mut end = limit;
        loop {
            let start = end.checked_sub(count)? & !(align - 1);
            match self.highest_busy(start, start + count) {
                None => return Some(start),
                // Any run containing `busy` fails: the next must end at or below it.
                Some(busy) => end = busy,
            }
        }
    }

    /// The highest free frame below `limit`, a word (64 frames) at a time:
    /// single-frame allocations (every guest page) must not walk the busy
    /// frames above them one by one.
    fn highest_free(&self, limit: u64) -> Option<u64> {
        if limit == 0 {
            return None;
        }
        let mut word = (limit - 1) / BITS;
        let mut mask = bit_mask(0, (limit - word * BITS).min(BITS));
        loop {
            let free = self.free[word as usize] & mask;
            if free != 0 {
                return Some(word * BITS + u64::from(63 - free.leading_zeros()));
            }
            if word == 0 {
                return None;
            }
            word -= 1;
            mask = !0;
        }
    }

    /// The highest frame in `[start, end)` that is not free.
    fn highest_busy(&self, start: u64, end: u64) -> Option<u64> {
        let mut word = (end - 1) / BITS;
        loop {
            let lo = (word * BITS).max(start);
            let hi = ((word + 1) * BITS).min(end);
            let mask = bit_mask(lo % BITS, hi - lo);
            let busy = !self.free[word as usize] & mask;
            if busy != 0 {
                return Some(word * BITS + u64::from(63 - busy.leading_zeros()));
            }
            if lo == start {
                return None;
            }
            word -= 1;
        }
    }
}

/// `len` one-bits starting at bit `shift` (`len` in 1..=64).
fn bit_mask(shift: u64, len: u64) -> u64 {
    let ones = if len == BITS { !0 } else { (1u64 << len) - 1 };
    ones << shift
}

fn test(map: &[u64], bit: u64) -> bool {
    map[(bit / BITS) as usize] & (1 << (bit % BITS)) != 0
}

fn set(map: &mut [u64], bit: u64) {
    map[(bit / BITS) as usize] |= 1 << (bit % BITS);
}

fn clear(map: &mut [u64], bit: u64) {
    map[(bit / BITS) as usize] &= !(1 << (bit % BITS));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::memmap::RawEntry;
    use std::vec;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;

    fn storage(nr_frames: u64) -> Vec<u64> {
        // Garbage the allocator must clear.
        vec![0xdead_beef_dead_beef; storage_words(nr_frames)]
    }

    fn with_ram(frames: &[(u64, u64)], nr_frames: u64, f: impl FnOnce(&mut FrameAllocator)) {
        let mut st = storage(nr_frames);
        let mut fa = FrameAllocator::new(&mut st, nr_frames).unwrap();
        for &(s, n) in frames {
            fa.add_free_range(Mfn(s), n).unwrap();
        }
        f(&mut fa);
    }

    #[test]
    fn sizes() {
        assert_eq!(bitmap_words(0), 0);
        assert_eq!(bitmap_words(1), 1);
        assert_eq!(bitmap_words(64), 1);
        assert_eq!(bitmap_words(65), 2);
        assert_eq!(storage_words(65), 4);
        let mut st = vec![0; 3];
        assert_eq!(
            FrameAllocator::new(&mut st, 65).err(),
            Some(FrameAllocError::StorageTooSmall {
                needed: 4,
                given: 3
            })
        );
    }

    #[test]
    fn from_memmap_manages_exactly_the_ram() {
        let mut map: MemMap = MemMap::from_raw(&[
            RawEntry {
                addr: 0,
                size: 0x9f000,
                kind: 1,
            },
            RawEntry {
                addr: MIB,
                size: 7 * MIB,
                kind: 1,
            },
        ])
        .unwrap();
        map.reserve(0, MIB / 2).unwrap();
        let mut st = storage(2048);
        let fa = FrameAllocator::from_memmap(&mut st, &map).unwrap();
        assert_eq!(fa.nr_frames(), 2048);
        assert_eq!(fa.total_frames(), (0x9f000 - MIB / 2) / 4096 + 7 * 256);
        assert_eq!(fa.free_frames(), fa.total_frames());
        assert!(!fa.is_managed(Mfn(0)));
        assert!(!fa.is_managed(Mfn(0x7f)));
        assert!(fa.is_free(Mfn(0x80)));
        assert!(fa.is_free(Mfn(0x9e)));
        assert!(!fa.is_managed(Mfn(0x9f)));
        assert!(!fa.is_managed(Mfn(0xff)));
        assert!(fa.is_free(Mfn(0x100)));
        assert!(fa.is_free(Mfn(2047)));
        assert!(!fa.is_free(Mfn(2048)));
        assert!(!fa.is_managed(Mfn(u64::MAX)));
    }

    #[test]
    fn single_allocations_find_the_highest_free_frame_past_busy_words() {
        with_ram(&[(0, 300)], 300, |fa| {
            // Everything busy but a few scattered frames.
            let all: Vec<u64> = (0..300).map(|_| fa.alloc().unwrap().0).collect();
            assert_eq!(all.len(), 300);
            for m in [3u64, 64, 65, 127, 128, 250] {
                fa.free(Mfn(m)).unwrap();
            }
            let got: Vec<u64> = (0..6).map(|_| fa.alloc().unwrap().0).collect();
            assert_eq!(got, [250, 128, 127, 65, 64, 3]);
            assert_eq!(fa.alloc(), Err(FrameAllocError::OutOfMemory { count: 1 }));
            fa.free(Mfn(5)).unwrap();
            assert_eq!(
                fa.alloc_below(Mfn(5)),
                Err(FrameAllocError::OutOfMemory { count: 1 })
            );
            assert_eq!(fa.alloc_below(Mfn(6)), Ok(Mfn(5)));
        });
    }

    #[test]
    fn single_allocations_go_top_down_and_free_restores() {
        with_ram(&[(10, 5)], 100, |fa| {
            let got: Vec<u64> = (0..5).map(|_| fa.alloc().unwrap().0).collect();
            assert_eq!(got, [14, 13, 12, 11, 10]);
            assert_eq!(fa.free_frames(), 0);
            assert_eq!(fa.alloc(), Err(FrameAllocError::OutOfMemory { count: 1 }));
            fa.free(Mfn(12)).unwrap();
            assert_eq!(fa.free_frames(), 1);
            assert_eq!(fa.alloc(), Ok(Mfn(12)));
        });
    }

    #[test]
    fn alloc_below_limit() {
        with_ram(&[(0x80, 0x20), (0x100, 0x1000)], 0x1100, |fa| {
            assert_eq!(fa.alloc_below(Mfn(0x100)), Ok(Mfn(0x9f)));
            assert_eq!(fa.alloc_below(Mfn(0x81)), Ok(Mfn(0x80)));
            assert_eq!(
                fa.alloc_below(Mfn(0x81)),
                Err(FrameAllocError::OutOfMemory { count: 1 })
            );
            assert_eq!(
                fa.alloc_below(Mfn(0)),
                Err(FrameAllocError::OutOfMemory { count: 1 })
            );
            // A limit beyond the bitmap is clamped.
            assert_eq!(fa.alloc_below(Mfn(u64::MAX)), Ok(Mfn(0x10ff)));
        });
    }

    #[test]
    fn contiguous_aligned_allocation() {
        // Free: 1..=200 except 150 (busy hole in the middle).
        with_ram(&[(1, 149), (151, 50)], 256, |fa| {
            // 2 MiB-style alignment in small: 64 frames aligned to 64.
            assert_eq!(fa.alloc_contig(64, 64), Ok(Mfn(64)));
            // Nothing else aligned to 64 fits: 0 is a hole, 128.. hits 150.
            assert_eq!(
                fa.alloc_contig(64, 64),
                Err(FrameAllocError::OutOfMemory { count: 64 })
            );
            assert_eq!(fa.alloc_contig(50, 1), Ok(Mfn(151)));
            assert_eq!(fa.alloc_contig(21, 1), Ok(Mfn(129)));
            assert_eq!(fa.alloc_contig(3, 4), Ok(Mfn(60)));
            assert_eq!(fa.free_frames(), 199 - 64 - 50 - 21 - 3);
            // Free now: 1..=59, 63, 128; giving back 64..128 joins 63..=128.
            fa.free_contig(Mfn(64), 64).unwrap();
            assert_eq!(
                fa.alloc_contig(67, 1),
                Err(FrameAllocError::OutOfMemory { count: 67 })
            );
            assert_eq!(fa.alloc_contig(66, 1), Ok(Mfn(63)));
            assert_eq!(fa.alloc_contig(59, 1), Ok(Mfn(1)));
            assert_eq!(fa.free_frames(), 0);
        });
    }

    #[test]
    fn contiguous_across_word_boundaries() {
        with_ram(&[(0, 1000)], 1000, |fa| {
            fa.claim(Mfn(500), 1).unwrap();
            assert_eq!(fa.alloc_contig(499, 1), Ok(Mfn(501)));
            assert_eq!(fa.alloc_contig(200, 128), Ok(Mfn(256)));
            // Free now: 0..256 and 456..500.
            assert_eq!(
                fa.alloc_contig(257, 1),
                Err(FrameAllocError::OutOfMemory { count: 257 })
            );
            assert_eq!(fa.alloc_contig(44, 4), Ok(Mfn(456)));
            assert_eq!(fa.alloc_contig(256, 256), Ok(Mfn(0)));
            assert_eq!(fa.free_frames(), 0);
        });
    }

    #[test]
    fn bad_requests() {
        with_ram(&[(0, 64)], 64, |fa| {
            assert_eq!(fa.alloc_contig(0, 1), Err(FrameAllocError::ZeroCount));
            assert_eq!(fa.alloc_contig(1, 0), Err(FrameAllocError::BadAlignment(0)));
            assert_eq!(fa.alloc_contig(1, 3), Err(FrameAllocError::BadAlignment(3)));
            assert_eq!(
                fa.alloc_contig(u64::MAX, 1),
                Err(FrameAllocError::OutOfMemory { count: u64::MAX })
            );
            assert_eq!(fa.alloc_contig(1, 1 << 63), Ok(Mfn(0)));
            assert_eq!(fa.free_frames(), 63);
        });
    }

    #[test]
    fn double_free_and_reserved_frees_are_errors() {
        with_ram(&[(16, 16)], 64, |fa| {
            let m = fa.alloc().unwrap();
            fa.free(m).unwrap();
            assert_eq!(fa.free(m), Err(FrameAllocError::DoubleFree(m)));
            assert_eq!(fa.free(Mfn(3)), Err(FrameAllocError::NotManaged(Mfn(3))));
            assert_eq!(fa.free(Mfn(64)), Err(FrameAllocError::OutOfRange(Mfn(64))));
            assert_eq!(
                fa.free(Mfn(u64::MAX)),
                Err(FrameAllocError::OutOfRange(Mfn(u64::MAX)))
            );
            assert_eq!(
                fa.free_contig(Mfn(60), u64::MAX),
                Err(FrameAllocError::OutOfRange(Mfn(64)))
            );
            // A run with one bad frame frees nothing.
            let run = fa.alloc_contig(4, 1).unwrap();
            assert_eq!(run, Mfn(28));
            assert_eq!(
                fa.free_contig(Mfn(27), 5),
                Err(FrameAllocError::DoubleFree(Mfn(27)))
            );
            assert!(!fa.is_free(Mfn(28)));
            assert_eq!(
                fa.free_contig(run, 5),
                Err(FrameAllocError::NotManaged(Mfn(32)))
            );
            fa.free_contig(run, 4).unwrap();
            assert_eq!(fa.free_frames(), 16);
        });
    }

    #[test]
    fn claim_and_add_range_rules() {
        with_ram(&[(8, 8)], 32, |fa| {
            assert_eq!(
                fa.claim(Mfn(4), 2),
                Err(FrameAllocError::NotManaged(Mfn(4)))
            );
            fa.claim(Mfn(8), 2).unwrap();
            assert_eq!(fa.claim(Mfn(9), 2), Err(FrameAllocError::NotFree(Mfn(9))));
            assert_eq!(fa.free_frames(), 6);
            assert_eq!(
                fa.add_free_range(Mfn(0), 9),
                Err(FrameAllocError::AlreadyManaged(Mfn(8)))
            );
            assert!(!fa.is_managed(Mfn(0)));
            assert_eq!(
                fa.add_free_range(Mfn(30), 3),
                Err(FrameAllocError::OutOfRange(Mfn(32)))
            );
            assert_eq!(
                fa.add_free_range(Mfn(0), 0),
                Err(FrameAllocError::ZeroCount)
            );
            fa.add_free_range(Mfn(0), 8).unwrap();
            assert_eq!(fa.total_frames(), 16);
            assert_eq!(fa.free_frames(), 14);
            fa.free_contig(Mfn(8), 2).unwrap();
            assert_eq!(fa.free_frames(), 16);
        });
    }

    #[test]
    fn exhaust_and_refill_counts_stay_consistent() {
        with_ram(&[(0, 300)], 300, |fa| {
            let mut got = Vec::new();
            while let Ok(m) = fa.alloc() {
                got.push(m);
            }
            assert_eq!(got.len(), 300);
            assert_eq!(fa.free_frames(), 0);
            for m in got.iter().step_by(2) {
                fa.free(*m).unwrap();
            }
            assert_eq!(fa.free_frames(), 150);
            assert_eq!(
                fa.alloc_contig(2, 1),
                Err(FrameAllocError::OutOfMemory { count: 2 })
            );
        });
    }

    #[test]
    fn empty_allocator() {
        let mut st: [u64; 0] = [];
        let mut fa = FrameAllocator::new(&mut st, 0).unwrap();
        assert_eq!(fa.alloc(), Err(FrameAllocError::OutOfMemory { count: 1 }));
        assert_eq!(fa.free(Mfn(0)), Err(FrameAllocError::OutOfRange(Mfn(0))));
        assert_eq!(fa.total_frames(), 0);
    }

    #[test]
    fn display_is_informative() {
        let s = std::format!("{}", FrameAllocError::DoubleFree(Mfn(0x42)));
        assert_eq!(s, "double free of mfn 0x42");
    }

    /// The search bound (`free_top`) never hides a free frame: against a
    /// plain model, every allocation still takes the highest free frame
    /// (below its limit) through any mix of allocations and frees.
    #[test]
    fn the_search_bound_never_hides_a_free_frame() {
        const N: u64 = 1000;
        with_ram(&[(10, 300), (400, 590)], N, |fa| {
            let mut free: Vec<bool> = (0..N)
                .map(|m| (10..310).contains(&m) || (400..990).contains(&m))
                .collect();
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            let mut held: Vec<u64> = Vec::new();
            for _ in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                match x % 4 {
                    0 | 1 => {
                        let limit = if x.is_multiple_of(3) { (x >> 8) % N } else { N };
                        let want = (0..limit).rev().find(|&m| free[m as usize]);
                        match fa.alloc_below(Mfn(limit)) {
                            Ok(m) => {
                                assert_eq!(Some(m.0), want);
                                free[m.0 as usize] = false;
                                held.push(m.0);
                            }
                            Err(_) => assert_eq!(want, None),
                        }
                    }
                    2 if !held.is_empty() => {
                        let m = held.swap_remove(((x >> 8) as usize) % held.len());
                        fa.free(Mfn(m)).unwrap();
                        free[m as usize] = true;
                    }
                    _ => {
                        let want = (0..N - 1)
                            .rev()
                            .find(|&m| m % 2 == 0 && free[m as usize] && free[m as usize + 1]);
                        match fa.alloc_contig(2, 2) {
                            Ok(m) => {
                                assert_eq!(Some(m.0), want);
                                free[m.0 as usize] = false;
                                free[m.0 as usize + 1] = false;
                                held.push(m.0);
                                held.push(m.0 + 1);
                            }
                            Err(_) => assert_eq!(want, None),
                        }
                    }
                }
            }
        });
    }
}
