//! The PV console ring, guest side (`xencons_interface`,
//! `public/io/console.h`): what an ordinary domain prints with, since Xen
//! refuses `CONSOLEIO_write` from anything but the hardware domain.
//!
//! The domain builder puts the ring page in the bootstrap region and names
//! it in `start_info.console.domU` (machine frame and event channel). The
//! guest produces into `out` and consumes `in`; after producing it
//! notifies the back-end (Dom0's console daemon) on the event channel.
//!
//! [`Ring`] is the index arithmetic over one page, with volatile accesses
//! and masked indexes (the back-end's indexes are not trusted: a consumer
//! index that makes no sense leaves no space rather than a lot); [`active`]
//! finds this domain's ring from `start_info` (`None` for Dom0), and
//! [`write`]/[`read`] use it.

use core::sync::atomic::{fence, Ordering};

use crate::abi::io::console::{XENCONS_IN_SIZE, XENCONS_OUT_SIZE};
use crate::start_info::ConsoleInfo;

const IN_OFF: usize = 0;
const OUT_OFF: usize = XENCONS_IN_SIZE;
const IN_CONS: usize = XENCONS_IN_SIZE + XENCONS_OUT_SIZE;
const IN_PROD: usize = IN_CONS + 4;
const OUT_CONS: usize = IN_CONS + 8;
const OUT_PROD: usize = IN_CONS + 12;

/// How many times [`write`] yields waiting for the back-end to make room
/// before it drops the rest (a guest without a console daemon must not
/// hang on its first long line).
pub const WRITE_PATIENCE: u32 = 2000;

/// One console ring page and its event channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ring {
    page: usize,
    /// The event channel to notify the back-end on.
    pub port: u32,
}

impl Ring {
    /// A ring over the page at `page`.
    ///
    /// # Safety
    ///
    /// `page` must be 4096 readable and writable bytes that stay mapped
    /// for as long as the ring (and its copies) are used.
    pub unsafe fn new(page: *mut u8, port: u32) -> Ring {
        Ring {
            page: page as usize,
            port,
        }
    }

    fn ptr(&self, off: usize) -> *mut u8 {
        (self.page + off) as *mut u8
    }

    fn load_u32(&self, off: usize) -> u32 {
        // SAFETY: constant offsets inside the page (see `new`).
        unsafe { core::ptr::read_volatile(self.ptr(off) as *const u32) }
    }

    fn store_u32(&self, off: usize, v: u32) {
        // SAFETY: as `load_u32`.
        unsafe { core::ptr::write_volatile(self.ptr(off) as *mut u32, v) }
    }

    /// Puts as much of `bytes` into the output ring as fits; returns how
    /// many (0 when full).
    pub fn put(&self, bytes: &[u8]) -> usize {
        let cons = self.load_u32(OUT_CONS);
        let prod = self.load_u32(OUT_PROD);
        fence(Ordering::Acquire);
        let used = prod.wrapping_sub(cons) as usize;
        let space = XENCONS_OUT_SIZE.saturating_sub(used);
        let n = bytes.len().min(space);
        for (i, &b) in bytes[..n].iter().enumerate() {
            let idx = (prod.wrapping_add(i as u32) as usize) & (XENCONS_OUT_SIZE - 1);
            // SAFETY: `OUT_OFF + idx` < 4096 (masked index).
            unsafe { core::ptr::write_volatile(self.ptr(OUT_OFF + idx), b) };
        }
        fence(Ordering::Release);
        self.store_u32(OUT_PROD, prod.wrapping_add(n as u32));
        n
    }

    /// Takes pending input into `buf`; returns how many bytes.
    pub fn get(&self, buf: &mut [u8]) -> usize {
        let cons = self.load_u32(IN_CONS);
        let prod = self.load_u32(IN_PROD);
        fence(Ordering::Acquire);
        let avail = (prod.wrapping_sub(cons) as usize).min(XENCONS_IN_SIZE);
        let n = buf.len().min(avail);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            let idx = (cons.wrapping_add(i as u32) as usize) & (XENCONS_IN_SIZE - 1);
            // SAFETY: `IN_OFF + idx` < 1024 (masked index).
            *b = unsafe { core::ptr::read_volatile(self.ptr(IN_OFF + idx)) };
        }
        fence(Ordering::Release);
        self.store_u32(IN_CONS, cons.wrapping_add(n as u32));
        n
    }

    /// Tells the back-end something changed.
    pub fn notify(&self) {
        let _ = crate::events::send(self.port);
    }
}

static ACTIVE: spin::Once<Option<Ring>> = spin::Once::new();
/// The port after a restore ([`set_port`]); `u32::MAX`: start_info's.
static PORT: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(u32::MAX);

/// This domain's console ring: `None` for the initial domain (it has the
/// hypervisor console), before boot, or when start_info names a frame
/// that is not in the mapped bootstrap region.
pub fn active() -> Option<Ring> {
    let mut r = (*ACTIVE.call_once(find))?;
    let p = PORT.load(core::sync::atomic::Ordering::Acquire);
    if p != u32::MAX {
        r.port = p;
    }
    Some(r)
}

/// After a restore: the ring page is the same (same pseudo-physical
/// frame) but its event channel is new (`start_info.console.domU.evtchn`).
pub fn set_port(port: u32) {
    PORT.store(port, core::sync::atomic::Ordering::Release);
}

fn find() -> Option<Ring> {
    let si = crate::boot::start_info()?;
    let ConsoleInfo::DomU { mfn, evtchn } = si.console else {
        return None;
    };
    if si.flags.initdomain() {
        return None;
    }
    let l = crate::boot::layout()?;
    let pfn = crate::boot::p2m()?
        .iter()
        .position(|m| m.load(core::sync::atomic::Ordering::Acquire) == mfn)? as u64;
    let va = l.pfn_to_va(pfn)?;
    // SAFETY: the page is in the bootstrap region, which the builder
    // mapped writable for us (it is not a page table: those lie after it
    // and are read-only), and below the free pages, so nothing else in
    // this kernel uses it.
    Some(unsafe { Ring::new(va as *mut u8, evtchn) })
}

/// Writes all of `bytes` to the ring (waiting, by yielding, for the
/// back-end to make room; after [`WRITE_PATIENCE`] fruitless yields the
/// rest is dropped), notifying the back-end.
pub fn write(r: &Ring, mut bytes: &[u8]) {
    let mut patience = WRITE_PATIENCE;
    while !bytes.is_empty() {
        let n = r.put(bytes);
        bytes = &bytes[n..];
        r.notify();
        if n == 0 {
            if patience == 0 {
                return;
            }
            patience -= 1;
            let _ = crate::xen::sched_yield();
        } else {
            patience = WRITE_PATIENCE;
        }
    }
}

/// Reads pending input (0 if none); tells the back-end there is room.
pub fn read(r: &Ring, buf: &mut [u8]) -> usize {
    let n = r.get(buf);
    if n > 0 {
        r.notify();
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;

    fn page() -> Box<[u8; 4096]> {
        Box::new([0; 4096])
    }

    fn u32_at(p: &[u8; 4096], off: usize) -> u32 {
        u32::from_le_bytes(p[off..off + 4].try_into().unwrap())
    }

    #[test]
    fn put_fills_the_out_ring_and_stops_when_full() {
        let mut p = page();
        // SAFETY: the box outlives the ring.
        let r = unsafe { Ring::new(p.as_mut_ptr(), 5) };
        assert_eq!(r.put(b"hello\n"), 6);
        assert_eq!(&p[OUT_OFF..OUT_OFF + 6], b"hello\n");
        assert_eq!(u32_at(&p, OUT_PROD), 6);
        let big = [b'x'; 3000];
        assert_eq!(r.put(&big), XENCONS_OUT_SIZE - 6);
        assert_eq!(r.put(b"y"), 0);
        // The back-end consumed 10: room for 10, wrapping around.
        p[OUT_CONS..OUT_CONS + 4].copy_from_slice(&10u32.to_le_bytes());
        assert_eq!(r.put(b"0123456789abc"), 10);
        assert_eq!(&p[OUT_OFF..OUT_OFF + 10], b"0123456789");
    }

    #[test]
    fn hostile_back_end_indexes_leave_no_room() {
        let mut p = page();
        // SAFETY: the box outlives the ring.
        let r = unsafe { Ring::new(p.as_mut_ptr(), 5) };
        p[OUT_CONS..OUT_CONS + 4].copy_from_slice(&0x8000_0000u32.to_le_bytes());
        assert_eq!(r.put(b"x"), 0);
        // A producer claiming 4 GiB of input gives at most a ring's worth.
        p[IN_PROD..IN_PROD + 4].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        let mut buf = [0u8; 4096];
        assert_eq!(r.get(&mut buf), XENCONS_IN_SIZE);
    }

    #[test]
    fn get_reads_input_and_advances() {
        let mut p = page();
        p[..3].copy_from_slice(b"ls\n");
        p[IN_PROD..IN_PROD + 4].copy_from_slice(&3u32.to_le_bytes());
        // SAFETY: the box outlives the ring.
        let r = unsafe { Ring::new(p.as_mut_ptr(), 5) };
        let mut buf = [0u8; 2];
        assert_eq!(r.get(&mut buf), 2);
        assert_eq!(&buf, b"ls");
        assert_eq!(r.get(&mut buf), 1);
        assert_eq!(buf[0], b'\n');
        assert_eq!(r.get(&mut buf), 0);
        assert_eq!(u32_at(&p, IN_CONS), 3);
    }

    #[test]
    fn no_ring_before_boot() {
        assert_eq!(active(), None);
    }
}
