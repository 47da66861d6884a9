//! One blkif request, from the copied-out ring slot to the response:
//! validation of everything the frontend wrote (operation, segment count,
//! `first_sect`/`last_sect`, alignment to the sector size, the sector range,
//! write access, the indirect descriptor pages) and execution against the
//! [`BlockStore`] with the data moved by grant copies.
//!
//! As Linux's blkback: an unknown operation, or one whose feature is not
//! offered, gets `BLKIF_RSP_EOPNOTSUPP`; a malformed request or a grant the
//! frontend cannot back gets `BLKIF_RSP_ERROR` and touches nothing (data is
//! copied in before anything is written, and read data is copied out only
//! after the read succeeded).

use alloc::vec::Vec;

use hypercall_abi::io::blkif::{
    BlkifOp, BlkifRequestSegment, BlkifResponse, BlkifRsp, BlkifSringEntry, BLKIF_DISCARD_SECURE,
    BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_SECTOR_SIZE,
    BLKIF_SEGS_PER_INDIRECT_FRAME,
};
use zerocopy::FromBytes;

use alloc::boxed::Box;

use super::store::{BlockStore, IoError};
use super::{CopySeg, GrantMapper, IoBuf, MAX_PERSISTENT};
use pv_guest_lib::grant::GrantRef;

/// A device's persistently mapped grants.
pub type PMap<P> = alloc::collections::BTreeMap<GrantRef, P>;

/// The smallest data buffer a device keeps (a 32-segment request).
const MIN_BUF: usize = 32 * 4096;

/// Sectors in a page.
const SECTORS_PER_PAGE: u8 = 8;

/// What a device allows (from its features and mode).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The frontend's domain (whose grants the segments are).
    pub domid: u16,
    /// Mode `r`.
    pub readonly: bool,
    /// `feature-flush-cache` / `feature-barrier` offered.
    pub flush: bool,
    /// `feature-discard` offered.
    pub discard: bool,
    /// `feature-max-indirect-segments` offered (0: none).
    pub max_indirect: u32,
    /// Disk size in 512-byte sectors.
    pub sectors: u64,
    /// Logical sector size in bytes.
    pub sector_size: u32,
}

/// Counters of what a device answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Reads done.
    pub reads: u64,
    /// Writes done (barriers included).
    pub writes: u64,
    /// Flushes and empty barriers done.
    pub flushes: u64,
    /// Discards done.
    pub discards: u64,
    /// Indirect requests among them.
    pub indirect: u64,
    /// `BLKIF_RSP_ERROR` answers.
    pub errors: u64,
    /// `BLKIF_RSP_EOPNOTSUPP` answers.
    pub unsupported: u64,
    /// Sectors read.
    pub sectors_read: u64,
    /// Sectors written.
    pub sectors_written: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fail {
    Error,
    NotSupported,
}

impl From<IoError> for Fail {
    fn from(e: IoError) -> Self {
        match e {
            IoError::Io => Fail::Error,
            IoError::Unsupported => Fail::NotSupported,
        }
    }
}

/// Executes the request in `e` (already copied out of the ring) and
/// builds its response.
pub fn handle<G: GrantMapper + ?Sized, S: BlockStore + ?Sized>(
    lim: &Limits,
    grants: &mut G,
    store: &mut S,
    pmaps: Option<&mut PMap<G::Page>>,
    buf: &mut Option<Box<dyn IoBuf>>,
    stats: &mut Stats,
    e: &BlkifSringEntry,
) -> BlkifResponse {
    // `id` sits at offset 8 in every request layout.
    let id = e.req.id;
    let op = e.req.operation;
    let r = dispatch(lim, grants, store, pmaps, buf, stats, e);
    let status = match r {
        Ok(()) => BlkifRsp::Okay,
        Err(Fail::Error) => {
            stats.errors += 1;
            BlkifRsp::Error
        }
        Err(Fail::NotSupported) => {
            stats.unsupported += 1;
            BlkifRsp::Eopnotsupp
        }
    };
    BlkifResponse {
        id,
        operation: op,
        status: status as i16,
        ..Default::default()
    }
}

fn dispatch<G: GrantMapper + ?Sized, S: BlockStore + ?Sized>(
    lim: &Limits,
    grants: &mut G,
    store: &mut S,
    mut pmaps: Option<&mut PMap<G::Page>>,
    buf: &mut Option<Box<dyn IoBuf>>,
    stats: &mut Stats,
    e: &BlkifSringEntry,
) -> Result<(), Fail> {
    let Some(op) = BlkifOp::from_raw(u64::from(e.req.operation)) else {
        return Err(Fail::NotSupported);
    };
    match op {
        BlkifOp::Read | BlkifOp::Write => {
            let n = usize::from(e.req.nr_segments);
            if n == 0 || n > BLKIF_MAX_SEGMENTS_PER_REQUEST {
                return Err(Fail::Error);
            }
            let segs = &e.req.seg[..n];
            rw(
                lim,
                grants,
                store,
                pmaps.as_deref_mut(),
                buf,
                stats,
                op == BlkifOp::Write,
                false,
                e.req.sector_number,
                segs,
            )
        }
        // Linux's blkfront sends FUA writes as a flush with data, and old
        // frontends a barrier with data: flush, write, flush. Empty, they
        // are plain flushes.
        BlkifOp::WriteBarrier | BlkifOp::FlushDiskcache => {
            if !lim.flush {
                return Err(Fail::NotSupported);
            }
            let n = usize::from(e.req.nr_segments);
            if n > BLKIF_MAX_SEGMENTS_PER_REQUEST {
                return Err(Fail::Error);
            }
            if n == 0 {
                return flush(lim, store, stats);
            }
            let segs = &e.req.seg[..n];
            rw(
                lim,
                grants,
                store,
                pmaps.as_deref_mut(),
                buf,
                stats,
                true,
                true,
                e.req.sector_number,
                segs,
            )
        }
        BlkifOp::Discard => {
            if !lim.discard {
                return Err(Fail::NotSupported);
            }
            let d = e.discard();
            if d.flag & BLKIF_DISCARD_SECURE != 0 {
                return Err(Fail::NotSupported);
            }
            if lim.readonly {
                return Err(Fail::Error);
            }
            check_range(lim, d.sector_number, d.nr_sectors)?;
            if d.nr_sectors > 0 {
                store.discard(d.sector_number, d.nr_sectors)?;
            }
            stats.discards += 1;
            Ok(())
        }
        BlkifOp::Indirect => {
            if lim.max_indirect == 0 {
                return Err(Fail::NotSupported);
            }
            let ind = e.indirect();
            let write = match BlkifOp::from_raw(u64::from(ind.indirect_op)) {
                Some(BlkifOp::Read) => false,
                Some(BlkifOp::Write) => true,
                _ => return Err(Fail::Error),
            };
            let n = usize::from(ind.nr_segments);
            if n == 0 || n > lim.max_indirect as usize {
                return Err(Fail::Error);
            }
            let pages = n.div_ceil(BLKIF_SEGS_PER_INDIRECT_FRAME);
            if pages > BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST {
                return Err(Fail::Error);
            }
            // Fetch the descriptors: one copy per indirect page.
            let seg_size = core::mem::size_of::<BlkifRequestSegment>();
            let mut raw = alloc::vec![0u8; n * seg_size];
            let copies: Vec<CopySeg> = (0..pages)
                .map(|p| {
                    let first = p * BLKIF_SEGS_PER_INDIRECT_FRAME;
                    let cnt = (n - first).min(BLKIF_SEGS_PER_INDIRECT_FRAME);
                    CopySeg {
                        gref: ind.indirect_grefs[p],
                        offset: 0,
                        len: (cnt * seg_size) as u16,
                    }
                })
                .collect();
            fetch(lim, grants, pmaps.as_deref_mut(), &copies, &mut raw)?;
            let segs: Vec<BlkifRequestSegment> = raw
                .chunks_exact(seg_size)
                .map(|c| BlkifRequestSegment::read_from_bytes(c).unwrap_or_default())
                .collect();
            stats.indirect += 1;
            rw(
                lim,
                grants,
                store,
                pmaps,
                buf,
                stats,
                write,
                false,
                ind.sector_number,
                &segs,
            )
        }
        BlkifOp::Reserved1 => Err(Fail::NotSupported),
    }
}

fn flush<S: BlockStore + ?Sized>(
    lim: &Limits,
    store: &mut S,
    stats: &mut Stats,
) -> Result<(), Fail> {
    if lim.readonly {
        return Err(Fail::Error);
    }
    store.flush()?;
    stats.flushes += 1;
    Ok(())
}

fn check_range(lim: &Limits, sector: u64, count: u64) -> Result<(), Fail> {
    let align = u64::from(lim.sector_size / 512).max(1) - 1;
    if (sector | count) & align != 0 {
        return Err(Fail::Error);
    }
    match sector.checked_add(count) {
        Some(end) if end <= lim.sectors => Ok(()),
        _ => Err(Fail::Error),
    }
}

#[allow(clippy::too_many_arguments)]
fn rw<G: GrantMapper + ?Sized, S: BlockStore + ?Sized>(
    lim: &Limits,
    grants: &mut G,
    store: &mut S,
    pmaps: Option<&mut PMap<G::Page>>,
    buf: &mut Option<Box<dyn IoBuf>>,
    stats: &mut Stats,
    write: bool,
    barrier: bool,
    sector: u64,
    segs: &[BlkifRequestSegment],
) -> Result<(), Fail> {
    let mut copies = Vec::with_capacity(segs.len());
    let mut total: u64 = 0;
    for s in segs {
        if s.last_sect >= SECTORS_PER_PAGE || s.last_sect < s.first_sect {
            return Err(Fail::Error);
        }
        let n = u64::from(s.last_sect - s.first_sect) + 1;
        total += n;
        copies.push(CopySeg {
            gref: s.gref,
            offset: u16::from(s.first_sect) * BLKIF_SECTOR_SIZE as u16,
            len: (n as usize * BLKIF_SECTOR_SIZE) as u16,
        });
    }
    check_range(lim, sector, total)?;
    if write && lim.readonly {
        return Err(Fail::Error);
    }
    let len = total as usize * BLKIF_SECTOR_SIZE;
    let have = buf.as_mut().map_or(0, |b| b.bytes().len());
    if have < len {
        // Grown once to the largest request size; never shrunk while
        // connected (requests are at most 256 pages).
        *buf = Some(grants.io_buf(len.next_power_of_two().max(MIN_BUF)));
    }
    let Some(buf) = buf.as_mut().and_then(|b| b.bytes().get_mut(..len)) else {
        return Err(Fail::Error);
    };
    if write {
        fetch(lim, grants, pmaps, &copies, buf)?;
        if barrier {
            store.flush()?;
        }
        store.write(sector, buf)?;
        if barrier {
            store.flush()?;
            stats.flushes += 1;
        }
        stats.writes += 1;
        stats.sectors_written += total;
    } else {
        store.read(sector, buf)?;
        deliver(lim, grants, pmaps, &copies, buf)?;
        stats.reads += 1;
        stats.sectors_read += total;
    }
    Ok(())
}

/// Maps every grant of `segs` not mapped yet, if they all fit under
/// [`MAX_PERSISTENT`]; false (nothing left half done that matters: extra
/// mappings are simply kept) if one cannot be mapped or there is no room.
fn map_all<G: GrantMapper + ?Sized>(
    lim: &Limits,
    grants: &mut G,
    pmaps: &mut PMap<G::Page>,
    segs: &[CopySeg],
) -> bool {
    for s in segs {
        if pmaps.contains_key(&s.gref) {
            continue;
        }
        if pmaps.len() >= MAX_PERSISTENT {
            return false;
        }
        match grants.map_persistent(lim.domid, s.gref) {
            Ok(p) => {
                pmaps.insert(s.gref, p);
            }
            Err(_) => return false,
        }
    }
    true
}

/// Copies the frontend's `segs` into `buf`: from persistently mapped
/// pages when the device has them (mapping new grants on first use), by
/// grant copy otherwise.
fn fetch<G: GrantMapper + ?Sized>(
    lim: &Limits,
    grants: &mut G,
    pmaps: Option<&mut PMap<G::Page>>,
    segs: &[CopySeg],
    buf: &mut [u8],
) -> Result<(), Fail> {
    if let Some(pm) = pmaps {
        if map_all(lim, grants, pm, segs) {
            let mut pos = 0;
            for s in segs {
                let len = usize::from(s.len);
                let (Some(page), Some(out)) = (pm.get(&s.gref), buf.get_mut(pos..pos + len)) else {
                    return Err(Fail::Error);
                };
                grants.page_read(page, usize::from(s.offset), out);
                pos += len;
            }
            return Ok(());
        }
    }
    grants
        .copy_in(lim.domid, segs, buf)
        .map_err(|_| Fail::Error)
}

/// Copies `buf` out into the frontend's `segs` (as [`fetch`]).
fn deliver<G: GrantMapper + ?Sized>(
    lim: &Limits,
    grants: &mut G,
    pmaps: Option<&mut PMap<G::Page>>,
    segs: &[CopySeg],
    buf: &[u8],
) -> Result<(), Fail> {
    if let Some(pm) = pmaps {
        if map_all(lim, grants, pm, segs) {
            let mut pos = 0;
            for s in segs {
                let len = usize::from(s.len);
                let (Some(page), Some(data)) = (pm.get(&s.gref), buf.get(pos..pos + len)) else {
                    return Err(Fail::Error);
                };
                grants.page_write(page, usize::from(s.offset), data);
                pos += len;
            }
            return Ok(());
        }
    }
    grants
        .copy_out(lim.domid, segs, buf)
        .map_err(|_| Fail::Error)
}
