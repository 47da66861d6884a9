//! A fake guest memory for host tests of the device model and builders.

use std::vec;
use std::vec::Vec;

use super::{GuestMemory, MemoryFault};

/// Guest RAM at [base, base + len).
pub struct Ram {
    pub base: u64,
    /// The contents.
    pub bytes: Vec<u8>,
}

impl Ram {
    pub fn new(base: u64, len: usize) -> Ram {
        Ram {
            base,
            bytes: vec![0; len],
        }
    }

    pub fn range(&self, gpa: u64, len: usize) -> Result<core::ops::Range<usize>, MemoryFault> {
        let off = gpa
            .checked_sub(self.base)
            .and_then(|o| usize::try_from(o).ok())
            .filter(|&o| o.checked_add(len).is_some_and(|e| e <= self.bytes.len()))
            .ok_or(MemoryFault { gpa })?;
        Ok(off..off + len)
    }
}

impl GuestMemory for Ram {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryFault> {
        let r = self.range(gpa, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }

    fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), MemoryFault> {
        let r = self.range(gpa, buf.len())?;
        self.bytes[r].copy_from_slice(buf);
        Ok(())
    }
}

/// Sparse guest RAM `[0, size)`: pages appear when first written and read
/// as zeros before (for builders' tests with hundreds of MiB).
pub struct Sparse {
    /// Bytes of RAM.
    pub size: u64,
    pages: std::collections::BTreeMap<u64, Vec<u8>>,
}

impl Sparse {
    /// `size` bytes of zeros.
    pub fn new(size: u64) -> Sparse {
        Sparse {
            size,
            pages: Default::default(),
        }
    }

    fn check(&self, gpa: u64, len: usize) -> Result<(), MemoryFault> {
        match gpa.checked_add(len as u64) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(MemoryFault { gpa }),
        }
    }

    /// `len` bytes at `gpa` (panics outside: tests only).
    pub fn get(&mut self, gpa: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        GuestMemory::read(self, gpa, &mut v).unwrap();
        v
    }
}

impl GuestMemory for Sparse {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryFault> {
        self.check(gpa, buf.len())?;
        for (i, b) in buf.iter_mut().enumerate() {
            let a = gpa + i as u64;
            *b = self
                .pages
                .get(&(a >> 12))
                .map_or(0, |p| p[(a & 0xfff) as usize]);
        }
        Ok(())
    }

    fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), MemoryFault> {
        self.check(gpa, buf.len())?;
        for (i, &b) in buf.iter().enumerate() {
            let a = gpa + i as u64;
            if b == 0 && !self.pages.contains_key(&(a >> 12)) {
                continue;
            }
            let p = self.pages.entry(a >> 12).or_insert_with(|| vec![0; 4096]);
            p[(a & 0xfff) as usize] = b;
        }
        Ok(())
    }
}

/// Deterministic noise for robustness tests (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `bytes` with 1 to 4 random bytes in `bytes[..within]` replaced.
    pub fn mutate(&mut self, bytes: &[u8], within: usize) -> Vec<u8> {
        let mut b = bytes.to_vec();
        let within = within.min(b.len()).max(1);
        for _ in 0..=self.next() % 4 {
            let at = (self.next() % within as u64) as usize;
            if let Some(x) = b.get_mut(at) {
                *x = self.next() as u8;
            }
        }
        b
    }
}
