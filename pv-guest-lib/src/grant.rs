//! Grant tables (v1), the client side: share a frame of ours with another
//! domain, take access back, map and copy other domains' grants.
//!
//! - [`GrantTable::setup`] asks the hypervisor for the table
//!   (`GNTTABOP_setup_table`) and maps its frames at a virtual address the
//!   caller chooses; [`GrantTable::grant_access`] fills a free entry
//!   (frame and domain first, the `GTF_permit_access` flags last, after a
//!   barrier, as Xen requires); [`GrantTable::end_access`] takes it back
//!   only while the hypervisor shows no mapping or copy in progress
//!   (`GTF_reading` / `GTF_writing`), else [`GrantError::Busy`] — the
//!   "end access with busy check" of Linux's
//!   `gnttab_end_foreign_access_ref`.
//! - [`map`], [`unmap`], [`copy`] and their batch forms
//!   ([`map_batch`], [`unmap_batch`], [`copy_batch`]) are
//!   `GNTTABOP_map_grant_ref`, `unmap_grant_ref` and `copy`, with each
//!   request's `GNTST_*` status turned into a [`GrantError`].
//!
//! The entry logic ([`Entries`], [`RefAlloc`]) is plain memory and atomics,
//! tested on the host.

use core::sync::atomic::{fence, AtomicU16, AtomicU64, Ordering};

use crate::abi::grant_table::{
    GntStatus, GnttabCopy, GnttabCopyPtr, GnttabMapGrantRef, GnttabOp, GnttabQuerySize,
    GnttabSetupTable, GnttabUnmapGrantRef, GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF,
    GNTTAB_NR_RESERVED_ENTRIES, GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_WRITING,
};
use crate::abi::hypercall::Hypercall;
use crate::abi::xen::DOMID_SELF;
use crate::error::Errno;

/// A grant reference.
pub type GrantRef = u32;

/// Entries per table frame (v1: 8 bytes each).
pub const ENTRIES_PER_FRAME: u32 = 512;
/// Most table frames a [`GrantTable`] maps.
pub const MAX_FRAMES: usize = 8;

/// Why a grant operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantError {
    /// The hypercall itself failed.
    Errno(Errno),
    /// The hypervisor refused the request with this `GNTST_*` status.
    Status(i16),
    /// The grant is mapped or being copied: access cannot end yet.
    Busy,
    /// No free grant reference.
    NoFreeRefs,
    /// A reference we did not hand out, or beyond the table.
    BadRef,
}

impl From<Errno> for GrantError {
    fn from(e: Errno) -> Self {
        GrantError::Errno(e)
    }
}

impl core::fmt::Display for GrantError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GrantError::Errno(e) => write!(f, "{e}"),
            GrantError::Status(s) => match GntStatus::from_raw(i64::from(*s)) {
                Some(st) => f.write_str(st.name()),
                None => write!(f, "GNTST {s}"),
            },
            GrantError::Busy => f.write_str("grant in use"),
            GrantError::NoFreeRefs => f.write_str("no free grant reference"),
            GrantError::BadRef => f.write_str("bad grant reference"),
        }
    }
}

/// A `GNTST_*` status as a result.
pub fn status(st: i16) -> Result<(), GrantError> {
    if st == GntStatus::Okay.raw() {
        Ok(())
    } else {
        Err(GrantError::Status(st))
    }
}

/// `HYPERVISOR_grant_table_op(cmd, uop, count)`, raw: the return value.
///
/// # Safety
///
/// `uop` must point to `count` request structs of the kind `cmd` takes,
/// which the hypervisor reads and writes.
pub unsafe fn grant_table_op_raw(cmd: u64, uop: u64, count: u64) -> i64 {
    // SAFETY: the caller's contract.
    unsafe { crate::hypercall::hypercall3(Hypercall::GrantTableOp, cmd, uop, count) }
}

fn op<T>(cmd: GnttabOp, ops: &mut [T]) -> Result<(), Errno> {
    // SAFETY: `ops` is a valid, writable array of the struct `cmd` takes.
    let r = unsafe {
        grant_table_op_raw(
            u64::from(cmd.raw()),
            ops.as_mut_ptr() as u64,
            ops.len() as u64,
        )
    };
    crate::error::check(r).map(|_| ())
}

/// `GNTTABOP_setup_table` for `dom`: sizes its table to `frames.len()`
/// frames and writes their machine frame numbers into `frames`.
pub fn setup_table(dom: u16, frames: &mut [u64]) -> Result<(), GrantError> {
    let mut s = GnttabSetupTable {
        dom,
        nr_frames: frames.len() as u32,
        frame_list: frames.as_mut_ptr() as u64,
        ..Default::default()
    };
    op(GnttabOp::SetupTable, core::slice::from_mut(&mut s))?;
    status(s.status)
}

/// `GNTTABOP_query_size`: (current, maximum) frames of `dom`'s table.
pub fn query_size(dom: u16) -> Result<(u32, u32), GrantError> {
    let mut q = GnttabQuerySize {
        dom,
        ..Default::default()
    };
    op(GnttabOp::QuerySize, core::slice::from_mut(&mut q))?;
    status(q.status)?;
    Ok((q.nr_frames, q.max_nr_frames))
}

/// A grant mapped with [`map`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The handle for [`unmap`].
    pub handle: u32,
    /// The frame's bus (machine) address.
    pub dev_bus_addr: u64,
}

/// `GNTTABOP_map_grant_ref` on a batch: each request's status is in it.
pub fn map_batch(ops: &mut [GnttabMapGrantRef]) -> Result<(), Errno> {
    op(GnttabOp::MapGrantRef, ops)
}

/// `GNTTABOP_unmap_grant_ref` on a batch.
pub fn unmap_batch(ops: &mut [GnttabUnmapGrantRef]) -> Result<(), Errno> {
    op(GnttabOp::UnmapGrantRef, ops)
}

/// `GNTTABOP_copy` on a batch.
pub fn copy_batch(ops: &mut [GnttabCopy]) -> Result<(), Errno> {
    op(GnttabOp::Copy, ops)
}

/// Maps grant `gref` of domain `dom` with `GNTMAP_*` `flags` at
/// `host_addr` (a linear address of ours, or with `GNTMAP_contains_pte` the
/// machine address of a PTE).
pub fn map(dom: u16, gref: GrantRef, host_addr: u64, flags: u32) -> Result<Mapping, GrantError> {
    let mut m = GnttabMapGrantRef {
        host_addr,
        flags,
        r#ref: gref,
        dom,
        ..Default::default()
    };
    map_batch(core::slice::from_mut(&mut m))?;
    status(m.status)?;
    Ok(Mapping {
        handle: m.handle,
        dev_bus_addr: m.dev_bus_addr,
    })
}

/// Unmaps `handle` (host mapping at `host_addr` and/or device mapping at
/// `dev_bus_addr`; 0 leaves that part).
pub fn unmap(handle: u32, host_addr: u64, dev_bus_addr: u64) -> Result<(), GrantError> {
    let mut u = GnttabUnmapGrantRef {
        host_addr,
        dev_bus_addr,
        handle,
        ..Default::default()
    };
    unmap_batch(core::slice::from_mut(&mut u))?;
    status(u.status)
}

/// One side of a [`copy`]: a grant of a domain, or a frame of ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyPtr {
    /// Grant `gref` of domain `dom`, at `offset`.
    Grant {
        /// The granting domain.
        dom: u16,
        /// Its grant.
        gref: GrantRef,
        /// Byte offset in the frame.
        offset: u16,
    },
    /// Our own machine frame `mfn` (`DOMID_SELF`), at `offset`.
    Frame {
        /// The frame.
        mfn: u64,
        /// Byte offset.
        offset: u16,
    },
}

impl CopyPtr {
    fn raw(self) -> (GnttabCopyPtr, bool) {
        match self {
            CopyPtr::Grant { dom, gref, offset } => (
                GnttabCopyPtr {
                    u: u64::from(gref),
                    domid: dom,
                    offset,
                    ..Default::default()
                },
                true,
            ),
            CopyPtr::Frame { mfn, offset } => (
                GnttabCopyPtr {
                    u: mfn,
                    domid: DOMID_SELF,
                    offset,
                    ..Default::default()
                },
                false,
            ),
        }
    }
}

/// The `GNTTABOP_copy` request for `len` bytes from `src` to `dst`.
pub fn copy_op(src: CopyPtr, dst: CopyPtr, len: u16) -> GnttabCopy {
    let (source, sg) = src.raw();
    let (dest, dg) = dst.raw();
    let mut flags = 0;
    if sg {
        flags |= GNTCOPY_SOURCE_GREF;
    }
    if dg {
        flags |= GNTCOPY_DEST_GREF;
    }
    GnttabCopy {
        source,
        dest,
        len,
        flags,
        ..Default::default()
    }
}

/// Copies `len` bytes from `src` to `dst` (`GNTTABOP_copy`).
pub fn copy(src: CopyPtr, dst: CopyPtr, len: u16) -> Result<(), GrantError> {
    let mut c = copy_op(src, dst, len);
    copy_batch(core::slice::from_mut(&mut c))?;
    status(c.status)
}

/// A view of v1 shared entries (each one `u64`: flags, domid, frame) in
/// memory the hypervisor reads and updates concurrently.
pub struct Entries<'a> {
    e: &'a [AtomicU64],
}

impl<'a> Entries<'a> {
    /// Entries over `e`.
    pub fn new(e: &'a [AtomicU64]) -> Self {
        Entries { e }
    }

    fn flags_word(&self, gref: GrantRef) -> Option<&AtomicU16> {
        let e = self.e.get(gref as usize)?;
        // SAFETY: the low 16 bits of an aligned u64 are an aligned u16 of
        // the same allocation (x86 is little-endian); the hypervisor
        // updates them with 16/32-bit atomics too.
        Some(unsafe { &*(e as *const AtomicU64 as *const AtomicU16) })
    }

    /// Grants `domid` access to machine frame `frame` through `gref`:
    /// frame and domain first, then (after a barrier) the flags.
    pub fn grant(
        &self,
        gref: GrantRef,
        domid: u16,
        frame: u64,
        readonly: bool,
    ) -> Result<(), GrantError> {
        let e = self.e.get(gref as usize).ok_or(GrantError::BadRef)?;
        let frame = u32::try_from(frame).map_err(|_| GrantError::BadRef)?;
        e.store(
            u64::from(domid) << 16 | u64::from(frame) << 32,
            Ordering::Release,
        );
        fence(Ordering::SeqCst);
        let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
        self.flags_word(gref)
            .ok_or(GrantError::BadRef)?
            .store(flags, Ordering::Release);
        Ok(())
    }

    /// The entry's flags (with the hypervisor's `GTF_reading`/`GTF_writing`).
    pub fn flags(&self, gref: GrantRef) -> u16 {
        self.flags_word(gref)
            .map_or(0, |f| f.load(Ordering::Acquire))
    }

    /// Takes the grant back, unless it is mapped or being copied
    /// ([`GrantError::Busy`]; try again later).
    pub fn end_access(&self, gref: GrantRef) -> Result<(), GrantError> {
        let f = self.flags_word(gref).ok_or(GrantError::BadRef)?;
        let mut cur = f.load(Ordering::Acquire);
        loop {
            if cur & (GTF_READING | GTF_WRITING) != 0 {
                return Err(GrantError::Busy);
            }
            match f.compare_exchange(cur, 0, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(v) => cur = v,
            }
        }
    }
}

/// Free grant references (the first [`GNTTAB_NR_RESERVED_ENTRIES`] are the
/// toolstack's and never handed out).
#[derive(Debug)]
pub struct RefAlloc {
    used: [u64; MAX_FRAMES * ENTRIES_PER_FRAME as usize / 64],
    n: u32,
}

impl RefAlloc {
    /// References `0..n` (at most `MAX_FRAMES` frames' worth).
    pub fn new(n: u32) -> Self {
        let n = n.min(MAX_FRAMES as u32 * ENTRIES_PER_FRAME);
        let mut a = RefAlloc {
            used: [0; MAX_FRAMES * ENTRIES_PER_FRAME as usize / 64],
            n,
        };
        for r in 0..GNTTAB_NR_RESERVED_ENTRIES.min(n) {
            a.used[(r / 64) as usize] |= 1 << (r % 64);
        }
        a
    }

    /// A free reference.
    pub fn alloc(&mut self) -> Option<GrantRef> {
        for (i, w) in self.used.iter_mut().enumerate() {
            if *w != u64::MAX {
                let b = (!*w).trailing_zeros();
                let r = i as u32 * 64 + b;
                if r >= self.n {
                    return None;
                }
                *w |= 1 << b;
                return Some(r);
            }
        }
        None
    }

    /// Gives `r` back; false if it was not handed out.
    pub fn free(&mut self, r: GrantRef) -> bool {
        if r < GNTTAB_NR_RESERVED_ENTRIES || r >= self.n {
            return false;
        }
        let (i, b) = ((r / 64) as usize, r % 64);
        let was = self.used[i] & (1 << b) != 0;
        self.used[i] &= !(1 << b);
        was
    }
}

/// Our own grant table, set up and mapped.
#[derive(Debug)]
pub struct GrantTable {
    va: u64,
    frames: usize,
    refs: RefAlloc,
}

impl GrantTable {
    /// Sets up `nr_frames` (1..=[`MAX_FRAMES`]) table frames and maps them
    /// writable at `va` (page-aligned, unused; `nr_frames` pages).
    pub fn setup(nr_frames: usize, va: u64) -> Result<GrantTable, GrantError> {
        if nr_frames == 0 || nr_frames > MAX_FRAMES || va & 0xfff != 0 {
            return Err(GrantError::Errno(Errno::EINVAL));
        }
        let mut mfns = [0u64; MAX_FRAMES];
        setup_table(DOMID_SELF, &mut mfns[..nr_frames])?;
        for (i, &mfn) in mfns[..nr_frames].iter().enumerate() {
            map_frame(va + i as u64 * 4096, mfn)?;
        }
        Ok(GrantTable {
            va,
            frames: nr_frames,
            refs: RefAlloc::new(nr_frames as u32 * ENTRIES_PER_FRAME),
        })
    }

    /// Before a suspend (Linux's `gnttab_suspend`): unmaps the table's
    /// frames, which are the hypervisor's, not the guest's (a saved
    /// guest's page tables may only name its own frames). Nothing may use
    /// the table until [`resume`](Self::resume).
    pub fn suspend(&mut self) -> Result<(), GrantError> {
        for i in 0..self.frames {
            unmap_frame(self.va + i as u64 * 4096)?;
        }
        Ok(())
    }

    /// After a suspend: sets the table up again and maps it where it was.
    /// If the suspend was cancelled these are the same frames and every
    /// grant stands; after a restore the new domain's table is empty (the
    /// grants are gone: front ends grant their pages again, and must not
    /// end the old references expecting the old backend's state).
    pub fn resume(&mut self) -> Result<(), GrantError> {
        let mut mfns = [0u64; MAX_FRAMES];
        setup_table(DOMID_SELF, &mut mfns[..self.frames])?;
        for (i, &mfn) in mfns[..self.frames].iter().enumerate() {
            map_frame(self.va + i as u64 * 4096, mfn)?;
        }
        Ok(())
    }

    /// The shared entries.
    pub fn entries(&self) -> Entries<'_> {
        // SAFETY: `frames` pages at `va` are the table frames, mapped
        // writable for as long as `self` lives; AtomicU64 has u64's layout.
        let e = unsafe {
            core::slice::from_raw_parts(
                self.va as *const AtomicU64,
                self.frames * ENTRIES_PER_FRAME as usize,
            )
        };
        Entries::new(e)
    }

    /// Lets `domid` map or copy our machine frame `frame` (read-only if
    /// `readonly`); returns the reference to hand over.
    pub fn grant_access(
        &mut self,
        domid: u16,
        frame: u64,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        let r = self.refs.alloc().ok_or(GrantError::NoFreeRefs)?;
        if let Err(e) = self.entries().grant(r, domid, frame, readonly) {
            self.refs.free(r);
            return Err(e);
        }
        Ok(r)
    }

    /// Takes grant `r` back: [`GrantError::Busy`] while it is mapped or
    /// being copied (the reference stays ours, try again later).
    pub fn end_access(&mut self, r: GrantRef) -> Result<(), GrantError> {
        if r < GNTTAB_NR_RESERVED_ENTRIES || r >= self.refs.n {
            return Err(GrantError::BadRef);
        }
        self.entries().end_access(r)?;
        self.refs.free(r);
        Ok(())
    }

    /// The flags of entry `r` as the hypervisor left them.
    pub fn flags(&self, r: GrantRef) -> u16 {
        self.entries().flags(r)
    }
}

#[cfg(target_os = "none")]
fn map_frame(va: u64, mfn: u64) -> Result<(), GrantError> {
    crate::frame::map_kernel(va, mfn, crate::mm::PteFlags::KERNEL_RW)
        .map(|_| ())
        .map_err(|_| GrantError::Errno(Errno::from_abi(crate::abi::errno::Errno::ENOMEM)))
}

#[cfg(not(target_os = "none"))]
fn map_frame(_va: u64, _mfn: u64) -> Result<(), GrantError> {
    Err(GrantError::Errno(Errno::ENOSYS))
}

#[cfg(target_os = "none")]
fn unmap_frame(va: u64) -> Result<(), GrantError> {
    crate::frame::unmap_kernel(va)
        .map(|_| ())
        .map_err(|_| GrantError::Errno(Errno::EINVAL))
}

#[cfg(not(target_os = "none"))]
fn unmap_frame(_va: u64) -> Result<(), GrantError> {
    Err(GrantError::Errno(Errno::ENOSYS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn grant_then_end_access_with_busy_check() {
        let raw: Vec<AtomicU64> = (0..16).map(|_| AtomicU64::new(0)).collect();
        let e = Entries::new(&raw);
        e.grant(9, 3, 0x1234, true).unwrap();
        let v = raw[9].load(Ordering::Relaxed);
        assert_eq!(v as u16, GTF_PERMIT_ACCESS | GTF_READONLY);
        assert_eq!((v >> 16) as u16, 3);
        assert_eq!((v >> 32) as u32, 0x1234);
        // The hypervisor marks it mapped: busy.
        raw[9].fetch_or(u64::from(GTF_READING), Ordering::Relaxed);
        assert_eq!(e.end_access(9), Err(GrantError::Busy));
        assert_eq!(e.flags(9), GTF_PERMIT_ACCESS | GTF_READONLY | GTF_READING);
        raw[9].fetch_and(!u64::from(GTF_READING), Ordering::Relaxed);
        e.end_access(9).unwrap();
        assert_eq!(e.flags(9), 0);
        assert_eq!(e.grant(16, 1, 1, false), Err(GrantError::BadRef));
        assert_eq!(e.grant(1, 1, 1 << 40, false), Err(GrantError::BadRef));
        assert_eq!(e.end_access(99), Err(GrantError::BadRef));
    }

    #[test]
    fn refs_skip_the_reserved_ones() {
        let mut a = RefAlloc::new(10);
        assert_eq!(a.alloc(), Some(8));
        assert_eq!(a.alloc(), Some(9));
        assert_eq!(a.alloc(), None);
        assert!(a.free(8));
        assert!(!a.free(8));
        assert!(!a.free(0));
        assert!(!a.free(10));
        assert_eq!(a.alloc(), Some(8));
        let mut big = RefAlloc::new(u32::MAX);
        let mut n = 0;
        while big.alloc().is_some() {
            n += 1;
        }
        assert_eq!(n, MAX_FRAMES as u32 * ENTRIES_PER_FRAME - 8);
    }

    #[test]
    fn copy_ops_and_errors() {
        let c = copy_op(
            CopyPtr::Grant {
                dom: 4,
                gref: 9,
                offset: 8,
            },
            CopyPtr::Frame {
                mfn: 0x55,
                offset: 16,
            },
            100,
        );
        assert_eq!(c.flags, GNTCOPY_SOURCE_GREF);
        assert_eq!((c.source.u, c.source.domid, c.source.offset), (9, 4, 8));
        assert_eq!(
            (c.dest.u, c.dest.domid, c.dest.offset),
            (0x55, DOMID_SELF, 16)
        );
        assert_eq!(status(0), Ok(()));
        assert_eq!(status(-3), Err(GrantError::Status(-3)));
        assert_eq!(
            std::format!("{}", GrantError::Status(-3)),
            "GNTST_bad_gntref"
        );
    }
}
