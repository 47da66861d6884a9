//! The balloon driver: grows and shrinks the domain to the memory target
//! the toolstack sets (`xl mem-set` writes `memory/target`, in KiB, under
//! the domain's xenstore home, as Linux's `xen-balloon` reads it).
//!
//! **Shrinking** gives frames back to the hypervisor: frames the frame
//! allocator has never handed out (off the top of its pool), then free
//! ones; each is unmapped from the direct map, its p2m entry invalidated
//! and its machine frame released with `XENMEM_decrease_reservation`. The
//! pseudo-physical frames stay as holes. **Growing** fills holes again:
//! `XENMEM_increase_reservation` gives new machine frames, which get the
//! hole's M2P entry (`MMU_MACHPHYS_UPDATE`), p2m entry and direct-map
//! mapping, and go back to the allocator. Frames in use are never taken:
//! a guest that uses more than its target stays above it and says so
//! ([`Outcome::short`]).
//!
//! The arithmetic ([`plan`]) is pure and host-tested; [`Balloon`] is the
//! glue.

/// KiB per page.
pub const KIB_PER_PAGE: u64 = 4;

/// What to do to go from `current` pages towards `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Give this many pages back.
    Release(u64),
    /// Take this many pages back (at most as many as are ballooned).
    Reclaim(u64),
    /// At the target (or as near as the holes allow).
    Stay,
}

/// The step from `current` pages to `target`, given `holes` ballooned
/// pages that may be filled again and a `floor` the domain never shrinks
/// below.
pub fn plan(current: u64, target: u64, holes: u64, floor: u64) -> Step {
    let target = target.max(floor);
    if target < current {
        Step::Release(current - target)
    } else if target > current && holes > 0 {
        Step::Reclaim((target - current).min(holes))
    } else {
        Step::Stay
    }
}

/// `memory/target` (decimal KiB) in pages; `None` if it is not a number.
pub fn parse_target_kib(raw: &[u8]) -> Option<u64> {
    let s = core::str::from_utf8(raw)
        .ok()?
        .trim_end_matches(['\0', '\n']);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok().map(|kib| kib / KIB_PER_PAGE)
}

/// What one [`Balloon::set_target`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Pages given back.
    pub released: u64,
    /// Pages taken back.
    pub reclaimed: u64,
    /// The domain's pages afterwards (`XENMEM_current_reservation`).
    pub pages: u64,
    /// Pages it is still away from the target (frames in use, or the
    /// hypervisor had none to give).
    pub short: u64,
}

#[cfg(feature = "alloc")]
pub use glue::Balloon;

#[cfg(feature = "alloc")]
mod glue {
    use alloc::vec::Vec;

    use super::{plan, Outcome, Step};
    use crate::abi::xen::DOMID_SELF;
    use crate::error::Errno;
    use crate::frame::{self, INVALID_FRAME};
    use crate::mm::{Pte, PteFlags};
    use crate::mmu::{self, Flush};

    /// Frames per hypercall batch.
    const BATCH: usize = 64;

    /// The driver's state: the pseudo-physical frames it has given back.
    #[derive(Debug, Default)]
    pub struct Balloon {
        holes: Vec<u64>,
        /// Pages the domain never goes below.
        floor: u64,
    }

    impl Balloon {
        /// A driver that never shrinks the domain below `floor` pages.
        pub fn new(floor: u64) -> Balloon {
            Balloon {
                holes: Vec::new(),
                floor,
            }
        }

        /// Pages ballooned out now.
        pub fn ballooned(&self) -> u64 {
            self.holes.len() as u64
        }

        /// Moves the domain towards `target` pages.
        pub fn set_target(&mut self, target: u64) -> Result<Outcome, Errno> {
            let mut out = Outcome::default();
            let current = crate::memory::current_reservation(DOMID_SELF)?;
            match plan(current, target, self.ballooned(), self.floor) {
                Step::Release(n) => out.released = self.release(n)?,
                Step::Reclaim(n) => out.reclaimed = self.reclaim(n)?,
                Step::Stay => {}
            }
            out.pages = crate::memory::current_reservation(DOMID_SELF)?;
            out.short = out.pages.abs_diff(target.max(self.floor));
            if out.pages < target && self.holes.is_empty() {
                // Nothing ballooned to grow back: not short, just at the
                // most it ever had.
                out.short = 0;
            }
            Ok(out)
        }

        /// Gives up to `n` unused frames back; returns how many went.
        fn release(&mut self, n: u64) -> Result<u64, Errno> {
            let mut pfns: Vec<u64> = Vec::new();
            let (s, e) = frame::take_tail(n);
            pfns.extend((s..e).rev());
            while (pfns.len() as u64) < n {
                match frame::alloc_frame() {
                    Ok(f) => pfns.push(f.pfn),
                    Err(_) => break,
                }
            }
            let mut done = 0;
            let mut rest = &pfns[..];
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at(rest.len().min(BATCH));
                rest = tail;
                let mut mfns: heapless::Vec<u64, BATCH> = heapless::Vec::new();
                for &pfn in chunk {
                    let mfn = frame::pfn_to_mfn(pfn).ok_or(Errno::EINVAL)?;
                    if let Some(va) = frame::direct_va(pfn) {
                        mmu::update_va_mapping(va, 0, Flush::InvlpgAll)?;
                    }
                    frame::set_p2m(pfn, INVALID_FRAME);
                    let _ = mfns.push(mfn);
                }
                let gone = crate::memory::decrease_reservation(&mfns, 0).unwrap_or(0) as usize;
                for (i, &pfn) in chunk.iter().enumerate() {
                    if i < gone {
                        self.holes.push(pfn);
                    } else {
                        // Refused: back as it was.
                        restore(pfn, mfns[i])?;
                    }
                }
                done += gone as u64;
                if gone < chunk.len() {
                    // The hypervisor stopped taking them: the rest (still
                    // backed and mapped) go back to the allocator.
                    for &pfn in rest {
                        frame::give_back(pfn);
                    }
                    break;
                }
            }
            Ok(done)
        }

        /// Fills up to `n` holes with new frames; returns how many.
        fn reclaim(&mut self, n: u64) -> Result<u64, Errno> {
            let mut done = 0u64;
            while done < n && !self.holes.is_empty() {
                let k = (n - done).min(BATCH as u64).min(self.holes.len() as u64) as usize;
                let mut mfns = [0u64; BATCH];
                let got = crate::memory::increase_reservation(&mut mfns[..k], 0)? as usize;
                for &mfn in &mfns[..got.min(k)] {
                    let Some(pfn) = self.holes.pop() else { break };
                    restore(pfn, mfn)?;
                }
                done += got as u64;
                if got < k {
                    break;
                }
            }
            Ok(done)
        }
    }

    /// Backs `pfn` with `mfn` again: M2P, p2m, the direct map, then the
    /// allocator.
    fn restore(pfn: u64, mfn: u64) -> Result<(), Errno> {
        mmu::mmu_update(&[mmu::machphys_update(mfn, pfn)]).map_err(|e| e.errno)?;
        frame::set_p2m(pfn, mfn);
        if let Some(va) = frame::direct_va(pfn) {
            mmu::update_va_mapping(va, Pte::new(mfn, PteFlags::KERNEL_RW).0, Flush::InvlpgAll)?;
        }
        frame::give_back(pfn);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_moves_towards_the_target_within_holes_and_floor() {
        assert_eq!(plan(8192, 4096, 0, 1024), Step::Release(4096));
        assert_eq!(plan(4096, 8192, 4096, 1024), Step::Reclaim(4096));
        // Only as many as were ballooned come back.
        assert_eq!(plan(4096, 9000, 100, 1024), Step::Reclaim(100));
        assert_eq!(plan(4096, 9000, 0, 1024), Step::Stay);
        // Never below the floor.
        assert_eq!(plan(4096, 10, 0, 1024), Step::Release(3072));
        assert_eq!(plan(1024, 10, 0, 1024), Step::Stay);
        assert_eq!(plan(4096, 4096, 7, 1024), Step::Stay);
    }

    #[test]
    fn targets_are_decimal_kib() {
        assert_eq!(parse_target_kib(b"16384"), Some(4096));
        assert_eq!(parse_target_kib(b"16384\0"), Some(4096));
        assert_eq!(parse_target_kib(b"6"), Some(1));
        for bad in [&b""[..], b"-4", b"12k", b" 12", b"0x10", b"\xff"] {
            assert_eq!(parse_target_kib(bad), None, "{bad:?}");
        }
    }
}
