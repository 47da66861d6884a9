//! The xenstore ring page (`struct xenstore_domain_interface`) as shared
//! memory: [`SharedPage`] is how both ends (this crate's client and Dom0's
//! `xenstored`) touch it, [`MemPage`] is an in-memory page for host tests and
//! in-process connections, [`RawPage`] a mapped page on the metal.
//!
//! The page is shared with another domain that may be hostile, so every
//! access goes through the trait: indexes are loaded/stored as whole `u32`s
//! with acquire/release ordering, data is copied byte-wise, and an offset
//! outside the page is ignored (reads give zeros) instead of faulting.

use core::mem::offset_of;

use crate::abi::io::xs_wire::{XenstoreDomainInterface, XENSTORE_RING_SIZE};

/// Size of the shared page.
pub const PAGE_SIZE: usize = 4096;
/// Offset of the request ring (`req[]`).
pub const REQ: usize = offset_of!(XenstoreDomainInterface, req);
/// Offset of the response ring (`rsp[]`).
pub const RSP: usize = offset_of!(XenstoreDomainInterface, rsp);
/// Offset of `req_cons`.
pub const REQ_CONS: usize = offset_of!(XenstoreDomainInterface, req_cons);
/// Offset of `req_prod`.
pub const REQ_PROD: usize = offset_of!(XenstoreDomainInterface, req_prod);
/// Offset of `rsp_cons`.
pub const RSP_CONS: usize = offset_of!(XenstoreDomainInterface, rsp_cons);
/// Offset of `rsp_prod`.
pub const RSP_PROD: usize = offset_of!(XenstoreDomainInterface, rsp_prod);
/// Offset of `server_features`.
pub const SERVER_FEATURES: usize = offset_of!(XenstoreDomainInterface, server_features);
/// Offset of `connection`.
pub const CONNECTION: usize = offset_of!(XenstoreDomainInterface, connection);
/// Offset of `error`.
pub const ERROR: usize = offset_of!(XenstoreDomainInterface, error);

/// Shared memory holding a `xenstore_domain_interface`.
///
/// All methods take `&self`: the other side writes concurrently anyway.
/// Implementations must not panic on any offset (out-of-page accesses are
/// ignored / read as zero).
pub trait SharedPage {
    /// Loads the `u32` at `off` (acquire: later data reads see what the
    /// other side wrote before storing it).
    fn load_u32(&self, off: usize) -> u32;
    /// Stores `v` at `off` (release: earlier data writes are visible first).
    fn store_u32(&self, off: usize, v: u32);
    /// Copies `out.len()` bytes starting at `off` into `out`.
    fn read(&self, off: usize, out: &mut [u8]);
    /// Copies `data` to the page at `off`.
    fn write(&self, off: usize, data: &[u8]);
}

impl<P: SharedPage + ?Sized> SharedPage for &P {
    fn load_u32(&self, off: usize) -> u32 {
        (**self).load_u32(off)
    }
    fn store_u32(&self, off: usize, v: u32) {
        (**self).store_u32(off, v)
    }
    fn read(&self, off: usize, out: &mut [u8]) {
        (**self).read(off, out)
    }
    fn write(&self, off: usize, data: &[u8]) {
        (**self).write(off, data)
    }
}

/// Copies `out.len()` bytes out of the ring at `ring` (a page offset, [`REQ`]
/// or [`RSP`]) starting at free-running index `idx`, wrapping as needed.
pub fn ring_read<P: SharedPage + ?Sized>(page: &P, ring: usize, idx: u32, out: &mut [u8]) {
    let mut done = 0;
    let mut pos = idx as usize & (XENSTORE_RING_SIZE - 1);
    while done < out.len() {
        let chunk = (XENSTORE_RING_SIZE - pos).min(out.len() - done);
        page.read(ring + pos, &mut out[done..done + chunk]);
        done += chunk;
        pos = 0;
    }
}

/// Copies `data` into the ring at `ring` starting at free-running index
/// `idx`, wrapping as needed. The caller checked there is room.
pub fn ring_write<P: SharedPage + ?Sized>(page: &P, ring: usize, idx: u32, data: &[u8]) {
    let mut done = 0;
    let mut pos = idx as usize & (XENSTORE_RING_SIZE - 1);
    while done < data.len() {
        let chunk = (XENSTORE_RING_SIZE - pos).min(data.len() - done);
        page.write(ring + pos, &data[done..done + chunk]);
        done += chunk;
        pos = 0;
    }
}

#[cfg(feature = "alloc")]
pub use mem::MemPage;

#[cfg(feature = "alloc")]
mod mem {
    use alloc::boxed::Box;
    use alloc::rc::Rc;
    use core::cell::RefCell;

    use super::{SharedPage, PAGE_SIZE};

    /// A page in ordinary memory; clones share it (both ends of an
    /// in-process connection, or a test playing the hostile guest).
    /// Single-threaded: the borrow is never held across calls.
    #[derive(Clone)]
    pub struct MemPage(Rc<RefCell<Box<[u8; PAGE_SIZE]>>>);

    impl Default for MemPage {
        fn default() -> Self {
            Self::new()
        }
    }

    impl MemPage {
        /// A zeroed page (both rings empty, connected, no error).
        pub fn new() -> Self {
            MemPage(Rc::new(RefCell::new(Box::new([0; PAGE_SIZE]))))
        }

        /// Runs `f` on the raw bytes (tests corrupt the page with it).
        pub fn with_bytes<R>(&self, f: impl FnOnce(&mut [u8; PAGE_SIZE]) -> R) -> R {
            f(&mut self.0.borrow_mut())
        }
    }

    impl SharedPage for MemPage {
        fn load_u32(&self, off: usize) -> u32 {
            let mut b = [0u8; 4];
            self.read(off, &mut b);
            u32::from_le_bytes(b)
        }
        fn store_u32(&self, off: usize, v: u32) {
            self.write(off, &v.to_le_bytes());
        }
        fn read(&self, off: usize, out: &mut [u8]) {
            let page = self.0.borrow();
            match off.checked_add(out.len()) {
                Some(end) if end <= PAGE_SIZE => out.copy_from_slice(&page[off..end]),
                _ => out.fill(0),
            }
        }
        fn write(&self, off: usize, data: &[u8]) {
            let mut page = self.0.borrow_mut();
            if let Some(end) = off.checked_add(data.len()) {
                if end <= PAGE_SIZE {
                    page[off..end].copy_from_slice(data);
                }
            }
        }
    }
}

/// A page mapped at a fixed virtual address, shared with another domain.
///
/// Indexes are accessed as atomics, data with volatile byte copies, so a
/// concurrently writing peer can only produce garbage values, which the
/// protocol code validates.
pub struct RawPage {
    base: *mut u8,
}

impl RawPage {
    /// Wraps the page at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be 4 KiB aligned and point to a page mapped readable and
    /// writable for as long as the `RawPage` lives (another domain may write
    /// it concurrently; nothing in this address space may hold a reference to
    /// it).
    pub unsafe fn new(base: *mut u8) -> Self {
        RawPage { base }
    }

    fn atomic(&self, off: usize) -> Option<&core::sync::atomic::AtomicU32> {
        if !off.is_multiple_of(4) || off.checked_add(4).is_none_or(|e| e > PAGE_SIZE) {
            return None;
        }
        // SAFETY: `new`'s contract: the page is mapped and aligned, `off` is
        // 4-aligned and in the page; AtomicU32 tolerates concurrent writers.
        Some(unsafe { &*(self.base.add(off) as *const core::sync::atomic::AtomicU32) })
    }
}

impl SharedPage for RawPage {
    fn load_u32(&self, off: usize) -> u32 {
        self.atomic(off)
            .map_or(0, |a| a.load(core::sync::atomic::Ordering::Acquire))
    }
    fn store_u32(&self, off: usize, v: u32) {
        if let Some(a) = self.atomic(off) {
            a.store(v, core::sync::atomic::Ordering::Release)
        }
    }
    fn read(&self, off: usize, out: &mut [u8]) {
        match off.checked_add(out.len()) {
            Some(end) if end <= PAGE_SIZE => {
                for (i, b) in out.iter_mut().enumerate() {
                    // SAFETY: in the mapped page (checked above); volatile
                    // because the peer writes it behind our back.
                    *b = unsafe { core::ptr::read_volatile(self.base.add(off + i)) };
                }
            }
            _ => out.fill(0),
        }
    }
    fn write(&self, off: usize, data: &[u8]) {
        if let Some(end) = off.checked_add(data.len()) {
            if end <= PAGE_SIZE {
                for (i, b) in data.iter().enumerate() {
                    // SAFETY: in the mapped page (checked above).
                    unsafe { core::ptr::write_volatile(self.base.add(off + i), *b) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_match_xen() {
        assert_eq!((REQ, RSP, REQ_CONS, REQ_PROD), (0, 1024, 2048, 2052));
        assert_eq!((RSP_CONS, RSP_PROD, SERVER_FEATURES), (2056, 2060, 2064));
        assert_eq!((CONNECTION, ERROR), (2068, 2072));
    }

    #[test]
    fn ring_copies_wrap() {
        let p = MemPage::new();
        let data: alloc::vec::Vec<u8> = (0..100u8).collect();
        ring_write(&p, RSP, 1000, &data);
        let mut out = [0u8; 100];
        ring_read(&p, RSP, 1000 + 1024 * 7, &mut out);
        assert_eq!(&out[..], &data[..]);
        p.with_bytes(|b| {
            assert_eq!(b[RSP + 1023], 23);
            assert_eq!(b[RSP], 24);
            assert_eq!(b[REQ + 1023], 0);
        });
    }

    #[test]
    fn out_of_page_is_ignored() {
        let p = MemPage::new();
        p.write(4090, &[1; 10]);
        let mut out = [9u8; 10];
        p.read(4090, &mut out);
        assert_eq!(out, [0; 10]);
        assert_eq!(p.load_u32(usize::MAX), 0);
    }
}
