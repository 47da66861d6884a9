//! A domain's log-dirty bitmap (Xen's `paging_log_dirty`): one bit per
//! guest frame, set when the frame is written while the domain is in
//! log-dirty mode, read (and cleared) by the toolstack with
//! `XEN_DOMCTL_shadow_op` `PEEK`/`CLEAN` between pre-copy rounds.
//!
//! **Owns**: the bits and the two counters Xen reports
//! (`xen_domctl_shadow_op_stats`: faults and newly dirtied pages since the
//! last clean). Pure: the glue write-protects the p2m, takes the faults and
//! copies the bitmap out. The bits live in storage the caller gives (`B`:
//! a `Vec<u64>` in the hypervisor), one word per 64 frames.

/// Words of bitmap storage [`DirtyLog::new`] needs for `frames` frames.
pub const fn words_for(frames: u64) -> usize {
    frames.div_ceil(64) as usize
}

/// The log-dirty state of one domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirtyLog<B> {
    bits: B,
    frames: u64,
    /// Write faults taken since the last clean.
    pub faults: u32,
    /// Frames that became dirty since the last clean.
    pub dirtied: u32,
}

impl<B: AsRef<[u64]> + AsMut<[u64]>> DirtyLog<B> {
    /// A clean log over guest frames `[0, frames)` in `bits` (zeroed
    /// here), which must hold [`words_for`]`(frames)` words; fewer make
    /// the log cover only what they hold.
    pub fn new(mut bits: B, frames: u64) -> Self {
        bits.as_mut().fill(0);
        let frames = frames.min(bits.as_ref().len() as u64 * 64);
        DirtyLog {
            bits,
            frames,
            faults: 0,
            dirtied: 0,
        }
    }

    /// Frames covered.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Marks `gfn` dirty (a frame past the end is ignored); true if it was
    /// clean.
    pub fn mark(&mut self, gfn: u64) -> bool {
        if gfn >= self.frames {
            return false;
        }
        let (w, b) = ((gfn / 64) as usize, gfn % 64);
        let bits = self.bits.as_mut();
        let was = bits[w] & (1 << b) != 0;
        bits[w] |= 1 << b;
        if !was {
            self.dirtied = self.dirtied.saturating_add(1);
        }
        !was
    }

    /// Clears `gfn` (a frame past the end is ignored).
    pub fn clear(&mut self, gfn: u64) {
        if gfn < self.frames {
            self.bits.as_mut()[(gfn / 64) as usize] &= !(1 << (gfn % 64));
        }
    }

    /// Counts a write fault.
    pub fn fault(&mut self) {
        self.faults = self.faults.saturating_add(1);
    }

    /// Whether `gfn` is dirty.
    pub fn is_dirty(&self, gfn: u64) -> bool {
        gfn < self.frames && self.bits.as_ref()[(gfn / 64) as usize] & (1 << (gfn % 64)) != 0
    }

    /// Dirty frames now.
    pub fn count(&self) -> u64 {
        self.bits
            .as_ref()
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum()
    }

    /// The bitmap bytes for frames `[first, first + 8 * out.len())` into
    /// `out` (little-endian bit order, as Xen's `unsigned long` bitmap on
    /// x86); bits past the log's end read as zero. With `clear`, the bits
    /// copied are cleared.
    pub fn copy_out(&mut self, first: u64, out: &mut [u8], clear: bool) {
        for (i, byte) in out.iter_mut().enumerate() {
            let mut v = 0u8;
            for b in 0..8 {
                let gfn = first + i as u64 * 8 + b;
                if self.is_dirty(gfn) {
                    v |= 1 << b;
                    if clear {
                        self.bits.as_mut()[(gfn / 64) as usize] &= !(1 << (gfn % 64));
                    }
                }
            }
            *byte = v;
        }
    }

    /// Starts a new round: the counters back to zero.
    pub fn reset_stats(&mut self) {
        self.faults = 0;
        self.dirtied = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_copies_and_clears() {
        let mut l = DirtyLog::new(std::vec![7u64; words_for(100)], 100);
        assert_eq!(l.count(), 0, "the storage is cleared");
        assert!(l.mark(0) && l.mark(9) && l.mark(99));
        assert!(!l.mark(9), "already dirty");
        assert!(!l.mark(100) && !l.mark(u64::MAX), "past the end");
        l.fault();
        l.fault();
        assert_eq!((l.count(), l.dirtied, l.faults), (3, 3, 2));
        // Peek: bytes 0..2 (frames 0..16), nothing cleared.
        let mut b = [0xffu8; 2];
        l.copy_out(0, &mut b, false);
        assert_eq!(b, [0b1, 0b10]);
        assert_eq!(l.count(), 3);
        // Clean the whole bitmap, asking for more bytes than it covers.
        let mut all = [0xffu8; 16];
        l.copy_out(0, &mut all, true);
        assert_eq!(all[12], 0b1000, "frame 99 = byte 12, bit 3");
        assert_eq!(all[13..], [0, 0, 0], "past the end: zero");
        assert_eq!(l.count(), 0);
        l.reset_stats();
        assert_eq!((l.dirtied, l.faults), (0, 0));
        // A window starting mid-bitmap.
        l.mark(70);
        let mut w = [0u8; 1];
        l.copy_out(64, &mut w, false);
        assert_eq!(w, [0b100_0000]);
        // Clearing one frame.
        l.mark(71);
        l.clear(70);
        l.clear(1000);
        assert!(!l.is_dirty(70) && l.is_dirty(71));
        // Too little storage: the log covers what it holds.
        let short = DirtyLog::new([0u64; 1], 100);
        assert_eq!(short.frames(), 64);
    }
}
