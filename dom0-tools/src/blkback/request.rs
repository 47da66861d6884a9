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

use super::store::{BlockStore, IoError, OwnedIo, StoreIo};
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
    /// Reads and writes the device did in place, in the frontend's pages
    /// (no copy in Dom0).
    pub in_place: u64,
    /// Times blkback looked at the ring and the store (each an event
    /// from the frontend or the store, or a poll).
    pub visits: u64,
    /// Times it notified the frontend of responses.
    pub notifies: u64,
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

/// The response to request `e` with result `r` (counted in `stats`).
fn respond(e: &BlkifSringEntry, r: Result<(), Fail>, stats: &mut Stats) -> BlkifResponse {
    // `id` sits at offset 8 in every request layout.
    respond_to(e.req.id, e.req.operation, r, stats)
}

/// The response to request `id` (operation `operation`) with result `r`.
fn respond_to(id: u64, operation: u8, r: Result<(), Fail>, stats: &mut Stats) -> BlkifResponse {
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
        operation,
        status: status as i16,
        ..Default::default()
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
    let r = dispatch(lim, grants, store, pmaps, buf, stats, e);
    respond(e, r, stats)
}

/// Most bytes of data one [`handle_batch`] keeps in flight (the device's
/// buffer grows up to this; a single request is at most 1 MiB).
pub const BATCH_BYTES: usize = 2 << 20;

/// A read or write, validated, waiting for its data I/O in a batch.
struct Staged {
    /// Its slot among the batch's requests (and responses).
    slot: usize,
    write: bool,
    sector: u64,
    copies: Vec<CopySeg>,
    /// Sectors.
    total: u64,
    /// Where its data sits in the device's buffer.
    off: usize,
    len: usize,
}

/// Executes the requests `es` (copied out of the ring, in ring order) and
/// builds their responses, in the same order. Reads and writes are
/// validated and their data copied in one by one, then go to the store as
/// one [`BlockStore::batch`], so the device works on them together; any
/// other request (flush, barrier, discard, unknown) first waits for every
/// request before it, then runs alone, as [`handle`]. Requests in flight
/// together have no order among themselves (as on any blkif backend: a
/// frontend that needs one before another waits for the first).
pub fn handle_batch<G: GrantMapper + ?Sized, S: BlockStore + ?Sized>(
    lim: &Limits,
    grants: &mut G,
    store: &mut S,
    mut pmaps: Option<&mut PMap<G::Page>>,
    buf: &mut Option<Box<dyn IoBuf>>,
    stats: &mut Stats,
    es: &[BlkifSringEntry],
) -> Vec<BlkifResponse> {
    let mut out: Vec<Option<BlkifResponse>> = alloc::vec![None; es.len()];
    let mut staged: Vec<Staged> = Vec::new();
    let mut used = 0usize;
    for (slot, e) in es.iter().enumerate() {
        let Some(plan) = plan_data(lim, grants, pmaps.as_deref_mut(), stats, e) else {
            // Ordered: everything before it first.
            run_staged(
                lim,
                grants,
                store,
                pmaps.as_deref_mut(),
                buf,
                stats,
                es,
                &mut staged,
                &mut out,
            );
            used = 0;
            out[slot] = Some(handle(
                lim,
                grants,
                store,
                pmaps.as_deref_mut(),
                buf,
                stats,
                e,
            ));
            continue;
        };
        let (write, sector, copies, total) = match plan {
            Ok(p) => p,
            Err(f) => {
                out[slot] = Some(respond(e, Err(f), stats));
                continue;
            }
        };
        let len = total as usize * BLKIF_SECTOR_SIZE;
        let cap = buf.as_mut().map_or(0, |b| b.bytes().len());
        if used + len > cap {
            // No room: run what is staged, and grow towards what this
            // batch wanted (up to BATCH_BYTES).
            run_staged(
                lim,
                grants,
                store,
                pmaps.as_deref_mut(),
                buf,
                stats,
                es,
                &mut staged,
                &mut out,
            );
            let want = (used + len)
                .next_power_of_two()
                .clamp(MIN_BUF, BATCH_BYTES)
                .max(len);
            if want > cap {
                *buf = None;
                *buf = Some(grants.io_buf(want));
            }
            used = 0;
        }
        let Some(region) = buf
            .as_mut()
            .and_then(|b| b.bytes().get_mut(used..used + len))
        else {
            out[slot] = Some(respond(e, Err(Fail::Error), stats));
            continue;
        };
        if write {
            if let Err(f) = fetch(lim, grants, pmaps.as_deref_mut(), &copies, region) {
                out[slot] = Some(respond(e, Err(f), stats));
                continue;
            }
        }
        staged.push(Staged {
            slot,
            write,
            sector,
            copies,
            total,
            off: used,
            len,
        });
        used += len;
    }
    run_staged(
        lim,
        grants,
        store,
        pmaps,
        buf,
        stats,
        es,
        &mut staged,
        &mut out,
    );
    out.into_iter()
        .zip(es)
        .map(|(r, e)| r.unwrap_or_else(|| respond(e, Err(Fail::Error), stats)))
        .collect()
}

/// Runs the staged reads and writes as one store batch, copies read data
/// out and fills in their responses.
#[allow(clippy::too_many_arguments)]
fn run_staged<G: GrantMapper + ?Sized, S: BlockStore + ?Sized>(
    lim: &Limits,
    grants: &mut G,
    store: &mut S,
    mut pmaps: Option<&mut PMap<G::Page>>,
    buf: &mut Option<Box<dyn IoBuf>>,
    stats: &mut Stats,
    es: &[BlkifSringEntry],
    staged: &mut Vec<Staged>,
    out: &mut [Option<BlkifResponse>],
) {
    if staged.is_empty() {
        return;
    }
    let Some(bytes) = buf.as_mut().map(|b| b.bytes()) else {
        // Not reachable: staging needed the buffer.
        for s in staged.drain(..) {
            out[s.slot] = Some(respond(&es[s.slot], Err(Fail::Error), stats));
        }
        return;
    };
    let results = {
        let mut ios = Vec::with_capacity(staged.len());
        let mut rest: &mut [u8] = bytes;
        let mut at = 0;
        for s in staged.iter() {
            // Regions are consecutive from 0, in staging order, and were
            // inside the buffer when staged (a region that is not ends
            // the batch there: its I/O and the later ones fail).
            let Some((head, tail)) = s
                .off
                .checked_sub(at)
                .and_then(|gap| core::mem::take(&mut rest).get_mut(gap..))
                .and_then(|from| from.split_at_mut_checked(s.len))
            else {
                break;
            };
            rest = tail;
            at = s.off + s.len;
            ios.push(if s.write {
                StoreIo::Write(s.sector, head)
            } else {
                StoreIo::Read(s.sector, head)
            });
        }
        store.batch(&mut ios)
    };
    for (k, s) in staged.drain(..).enumerate() {
        let mut r = results
            .get(k)
            .copied()
            .unwrap_or(Err(IoError::Io))
            .map_err(Fail::from);
        if r.is_ok() {
            if s.write {
                stats.writes += 1;
                stats.sectors_written += s.total;
            } else {
                r = match bytes.get(s.off..s.off + s.len) {
                    Some(data) => deliver(lim, grants, pmaps.as_deref_mut(), &s.copies, data),
                    None => Err(Fail::Error),
                };
                if r.is_ok() {
                    stats.reads += 1;
                    stats.sectors_read += s.total;
                }
            }
        }
        out[s.slot] = Some(respond(&es[s.slot], r, stats));
    }
}

// ---- Streaming: one request at a time, in flight on the store ----------------

/// Free data buffers a device keeps for its requests in flight.
#[derive(Default)]
pub struct Pool {
    free: Vec<Box<dyn IoBuf>>,
}

/// Buffers a [`Pool`] keeps, and their bytes at most (what a device
/// had before streaming: one buffer of [`BATCH_BYTES`]).
const POOL_KEEP: usize = 16;
const POOL_BYTES: usize = BATCH_BYTES;

impl Pool {
    /// A buffer of at least `len` bytes (contents undefined: a read
    /// overwrites it, a write fills it first).
    pub fn take<G: GrantMapper + ?Sized>(&mut self, grants: &mut G, len: usize) -> Box<dyn IoBuf> {
        let best = self
            .free
            .iter_mut()
            .enumerate()
            .map(|(k, b)| (k, b.bytes().len()))
            .filter(|&(_, n)| n >= len)
            .min_by_key(|&(_, n)| n);
        match best {
            Some((k, _)) => self.free.swap_remove(k),
            None => grants.io_buf(len.next_power_of_two().max(4096)),
        }
    }

    /// Gives a buffer back (kept if there is room, or in place of the
    /// smallest kept one if it is bigger and fits then).
    pub fn give(&mut self, mut b: Box<dyn IoBuf>) {
        if b.dma_segments().is_some() {
            // The frontend's pages, not a buffer to reuse.
            return;
        }
        let n = b.bytes().len();
        let sizes: Vec<usize> = self.free.iter_mut().map(|b| b.bytes().len()).collect();
        let kept: usize = sizes.iter().sum();
        if sizes.len() < POOL_KEEP && kept + n <= POOL_BYTES {
            self.free.push(b);
            return;
        }
        let smallest = sizes.iter().enumerate().min_by_key(|&(_, m)| *m);
        if let Some((k, &m)) = smallest {
            if m < n && kept - m + n <= POOL_BYTES {
                self.free[k] = b;
            }
        }
    }

    /// Drops every buffer.
    pub fn clear(&mut self) {
        self.free.clear();
    }
}

/// A read or write on the store: what answering it needs.
#[derive(Debug)]
pub struct Flight {
    id: u64,
    operation: u8,
    write: bool,
    copies: Vec<CopySeg>,
    total: u64,
    /// Bytes of data.
    pub len: usize,
}

/// What to do with a request taken off the ring ([`prepare`]).
pub enum Prepared {
    /// Answered already (it was bad).
    Answer(BlkifResponse),
    /// Not a read or write: after everything before it, through
    /// [`handle`].
    Ordered,
    /// A read or write to give the store ([`BlockStore::submit`]), its
    /// data fetched if a write; [`finish`] answers it.
    Io(Flight, OwnedIo),
}

/// Validates request `e` and, for a read or write, gives it a buffer and
/// makes it `owner`'s I/O `tag` (`(owner, tag)`). With `in_place` (the
/// store takes segments) and every segment persistently mapped, the
/// buffer is the frontend's pages themselves ([`GrantMapper::dma_buf`]);
/// otherwise one from `pool`, filled from the frontend's pages for a
/// write.
#[allow(clippy::too_many_arguments)]
pub fn prepare<G: GrantMapper + ?Sized>(
    lim: &Limits,
    grants: &mut G,
    mut pmaps: Option<&mut PMap<G::Page>>,
    pool: &mut Pool,
    stats: &mut Stats,
    e: &BlkifSringEntry,
    (owner, tag): (u64, u64),
    in_place: bool,
) -> Prepared {
    let Some(plan) = plan_data(lim, grants, pmaps.as_deref_mut(), stats, e) else {
        return Prepared::Ordered;
    };
    let (write, sector, copies, total) = match plan {
        Ok(p) => p,
        Err(f) => return Prepared::Answer(respond(e, Err(f), stats)),
    };
    let len = total as usize * BLKIF_SECTOR_SIZE;
    let direct = match pmaps.as_deref_mut() {
        Some(pm) if in_place => in_place_buf(lim, grants, pm, &copies),
        _ => None,
    };
    if let Some(buf) = direct {
        stats.in_place += 1;
        let io = OwnedIo {
            owner,
            tag,
            write,
            sector,
            len,
            buf,
        };
        let f = Flight {
            id: e.req.id,
            operation: e.req.operation,
            write,
            copies,
            total,
            len,
        };
        return Prepared::Io(f, io);
    }
    let mut buf = pool.take(grants, len);
    if write {
        let r = match buf.bytes().get_mut(..len) {
            Some(region) => fetch(lim, grants, pmaps, &copies, region),
            None => Err(Fail::Error),
        };
        if let Err(f) = r {
            pool.give(buf);
            return Prepared::Answer(respond(e, Err(f), stats));
        }
    }
    let io = OwnedIo {
        owner,
        tag,
        write,
        sector,
        len,
        buf,
    };
    let f = Flight {
        id: e.req.id,
        operation: e.req.operation,
        write,
        copies,
        total,
        len,
    };
    Prepared::Io(f, io)
}

/// Answers a read or write the store finished with `r`: a read's data
/// goes out to the frontend's pages first.
pub fn finish<G: GrantMapper + ?Sized>(
    lim: &Limits,
    grants: &mut G,
    pmaps: Option<&mut PMap<G::Page>>,
    stats: &mut Stats,
    f: &Flight,
    io: &mut OwnedIo,
    r: Result<(), IoError>,
) -> BlkifResponse {
    let mut r = r.map_err(Fail::from);
    if r.is_ok() {
        if f.write {
            stats.writes += 1;
            stats.sectors_written += f.total;
        } else {
            r = if io.buf.dma_segments().is_some() {
                // Read in place: the data is in the frontend's pages.
                Ok(())
            } else {
                match io.buf.bytes().get(..f.len) {
                    Some(data) => deliver(lim, grants, pmaps, &f.copies, data),
                    None => Err(Fail::Error),
                }
            };
            if r.is_ok() {
                stats.reads += 1;
                stats.sectors_read += f.total;
            }
        }
    }
    respond_to(f.id, f.operation, r, stats)
}

/// A read or write: (write, sector, segments, sectors).
type Plan = (bool, u64, Vec<CopySeg>, u64);

/// If `e` is a plain read or write (direct or indirect), validates it
/// (fetching indirect descriptors) and says what to move; `None` for any
/// other operation.
fn plan_data<G: GrantMapper + ?Sized>(
    lim: &Limits,
    grants: &mut G,
    pmaps: Option<&mut PMap<G::Page>>,
    stats: &mut Stats,
    e: &BlkifSringEntry,
) -> Option<Result<Plan, Fail>> {
    let op = BlkifOp::from_raw(u64::from(e.req.operation))?;
    Some(match op {
        BlkifOp::Read | BlkifOp::Write => {
            let n = usize::from(e.req.nr_segments);
            if n == 0 || n > BLKIF_MAX_SEGMENTS_PER_REQUEST {
                return Some(Err(Fail::Error));
            }
            let write = op == BlkifOp::Write;
            plan(lim, write, e.req.sector_number, &e.req.seg[..n])
                .map(|(c, t)| (write, e.req.sector_number, c, t))
        }
        BlkifOp::Indirect => {
            if lim.max_indirect == 0 {
                return Some(Err(Fail::NotSupported));
            }
            let ind = e.indirect();
            let write = match BlkifOp::from_raw(u64::from(ind.indirect_op)) {
                Some(BlkifOp::Read) => false,
                Some(BlkifOp::Write) => true,
                _ => return Some(Err(Fail::Error)),
            };
            let n = usize::from(ind.nr_segments);
            if n == 0 || n > lim.max_indirect as usize {
                return Some(Err(Fail::Error));
            }
            let pages = n.div_ceil(BLKIF_SEGS_PER_INDIRECT_FRAME);
            if pages > BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST {
                return Some(Err(Fail::Error));
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
            if let Err(f) = fetch(lim, grants, pmaps, &copies, &mut raw) {
                return Some(Err(f));
            }
            let segs: Vec<BlkifRequestSegment> = raw
                .chunks_exact(seg_size)
                .map(|c| BlkifRequestSegment::read_from_bytes(c).unwrap_or_default())
                .collect();
            stats.indirect += 1;
            plan(lim, write, ind.sector_number, &segs)
                .map(|(c, t)| (write, ind.sector_number, c, t))
        }
        _ => return None,
    })
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
    if let Some(p) = plan_data(lim, grants, pmaps.as_deref_mut(), stats, e) {
        let (write, sector, copies, total) = p?;
        return exec(
            lim, grants, store, pmaps, buf, stats, write, false, sector, &copies, total,
        );
    }
    let Some(op) = BlkifOp::from_raw(u64::from(e.req.operation)) else {
        return Err(Fail::NotSupported);
    };
    match op {
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
            let (copies, total) = plan(lim, true, e.req.sector_number, &e.req.seg[..n])?;
            exec(
                lim,
                grants,
                store,
                pmaps,
                buf,
                stats,
                true,
                true,
                e.req.sector_number,
                &copies,
                total,
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
        // Handled by `plan_data`.
        BlkifOp::Read | BlkifOp::Write | BlkifOp::Indirect => Err(Fail::Error),
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

/// Validates a read's or write's segments and range: the grant-copy
/// pieces and the sector count.
fn plan(
    lim: &Limits,
    write: bool,
    sector: u64,
    segs: &[BlkifRequestSegment],
) -> Result<(Vec<CopySeg>, u64), Fail> {
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
    Ok((copies, total))
}

/// Runs one planned read or write on its own (a barrier's around it).
#[allow(clippy::too_many_arguments)]
fn exec<G: GrantMapper + ?Sized, S: BlockStore + ?Sized>(
    lim: &Limits,
    grants: &mut G,
    store: &mut S,
    pmaps: Option<&mut PMap<G::Page>>,
    buf: &mut Option<Box<dyn IoBuf>>,
    stats: &mut Stats,
    write: bool,
    barrier: bool,
    sector: u64,
    copies: &[CopySeg],
    total: u64,
) -> Result<(), Fail> {
    let len = total as usize * BLKIF_SECTOR_SIZE;
    let have = buf.as_mut().map_or(0, |b| b.bytes().len());
    if have < len {
        // Grown to the largest request size; never shrunk while
        // connected (requests are at most 256 pages).
        *buf = None;
        *buf = Some(grants.io_buf(len.next_power_of_two().max(MIN_BUF)));
    }
    let Some(buf) = buf.as_mut().and_then(|b| b.bytes().get_mut(..len)) else {
        return Err(Fail::Error);
    };
    if write {
        fetch(lim, grants, pmaps, copies, buf)?;
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
        deliver(lim, grants, pmaps, copies, buf)?;
        stats.reads += 1;
        stats.sectors_read += total;
    }
    Ok(())
}

/// Maps the grants of `segs` not mapped yet while there is room (under
/// [`MAX_PERSISTENT`], and as long as the glue agrees); the rest go by
/// grant copy. A grant that cannot be mapped stops the mapping (it fails
/// again in the copy if it is bad).
fn map_some<G: GrantMapper + ?Sized>(
    lim: &Limits,
    grants: &mut G,
    pmaps: &mut PMap<G::Page>,
    segs: &[CopySeg],
) {
    for s in segs {
        if pmaps.contains_key(&s.gref) {
            continue;
        }
        if pmaps.len() >= MAX_PERSISTENT {
            return;
        }
        match grants.map_persistent(lim.domid, s.gref) {
            Ok(p) => {
                pmaps.insert(s.gref, p);
            }
            Err(_) => return,
        }
    }
}

/// The frontend's `segs` as one buffer the store reads and writes in
/// place, if every one is (or can now be) persistently mapped and the
/// glue can hand them to a device ([`GrantMapper::dma_buf`]).
fn in_place_buf<G: GrantMapper + ?Sized>(
    lim: &Limits,
    grants: &mut G,
    pmaps: &mut PMap<G::Page>,
    segs: &[CopySeg],
) -> Option<Box<dyn IoBuf>> {
    map_some(lim, grants, pmaps, segs);
    let pieces = segs
        .iter()
        .map(|s| Some((pmaps.get(&s.gref)?, s.offset, s.len)))
        .collect::<Option<Vec<_>>>()?;
    grants.dma_buf(&pieces)
}

/// The runs of `segs` (index range, byte range in the buffer) that are
/// not mapped persistently: each goes as one grant copy.
fn unmapped_runs<P>(
    pmaps: &PMap<P>,
    segs: &[CopySeg],
) -> Vec<(core::ops::Range<usize>, core::ops::Range<usize>)> {
    let mut runs = Vec::new();
    let (mut pos, mut start) = (0usize, None);
    for (k, s) in segs.iter().enumerate() {
        let mapped = pmaps.contains_key(&s.gref);
        match (mapped, start) {
            (false, None) => start = Some((k, pos)),
            (true, Some((k0, p0))) => {
                runs.push((k0..k, p0..pos));
                start = None;
            }
            _ => {}
        }
        pos += usize::from(s.len);
    }
    if let Some((k0, p0)) = start {
        runs.push((k0..segs.len(), p0..pos));
    }
    runs
}

/// Copies the frontend's `segs` into `buf`: from persistently mapped
/// pages when the device has them (mapping new grants on first use, as
/// many as there is room for), by grant copy otherwise (first, so a bad
/// grant fails the request before anything else is read).
fn fetch<G: GrantMapper + ?Sized>(
    lim: &Limits,
    grants: &mut G,
    pmaps: Option<&mut PMap<G::Page>>,
    segs: &[CopySeg],
    buf: &mut [u8],
) -> Result<(), Fail> {
    let Some(pm) = pmaps else {
        return grants
            .copy_in(lim.domid, segs, buf)
            .map_err(|_| Fail::Error);
    };
    map_some(lim, grants, pm, segs);
    for (ks, bs) in unmapped_runs(pm, segs) {
        let (Some(sg), Some(out)) = (segs.get(ks), buf.get_mut(bs)) else {
            return Err(Fail::Error);
        };
        grants
            .copy_in(lim.domid, sg, out)
            .map_err(|_| Fail::Error)?;
    }
    let mut pos = 0;
    for s in segs {
        let len = usize::from(s.len);
        if let Some(page) = pm.get(&s.gref) {
            let Some(out) = buf.get_mut(pos..pos + len) else {
                return Err(Fail::Error);
            };
            grants.page_read(page, usize::from(s.offset), out);
        }
        pos += len;
    }
    Ok(())
}

/// Copies `buf` out into the frontend's `segs` (as [`fetch`]).
fn deliver<G: GrantMapper + ?Sized>(
    lim: &Limits,
    grants: &mut G,
    pmaps: Option<&mut PMap<G::Page>>,
    segs: &[CopySeg],
    buf: &[u8],
) -> Result<(), Fail> {
    let Some(pm) = pmaps else {
        return grants
            .copy_out(lim.domid, segs, buf)
            .map_err(|_| Fail::Error);
    };
    map_some(lim, grants, pm, segs);
    for (ks, bs) in unmapped_runs(pm, segs) {
        let (Some(sg), Some(data)) = (segs.get(ks), buf.get(bs)) else {
            return Err(Fail::Error);
        };
        grants
            .copy_out(lim.domid, sg, data)
            .map_err(|_| Fail::Error)?;
    }
    let mut pos = 0;
    for s in segs {
        let len = usize::from(s.len);
        if let Some(page) = pm.get(&s.gref) {
            let Some(data) = buf.get(pos..pos + len) else {
                return Err(Fail::Error);
            };
            grants.page_write(page, usize::from(s.offset), data);
        }
        pos += len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_keeps_at_most_its_bytes_preferring_big_buffers() {
        let mut p = Pool::default();
        for _ in 0..12 {
            p.give(Box::new(alloc::vec![0u8; 256 << 10]));
        }
        assert_eq!(p.free.len(), BATCH_BYTES / (256 << 10));
        p.clear();
        for _ in 0..20 {
            p.give(Box::new(alloc::vec![0u8; 4096]));
        }
        assert_eq!(p.free.len(), POOL_KEEP);
        // A bigger one replaces the smallest while the total fits.
        p.give(Box::new(alloc::vec![0u8; 64 << 10]));
        assert_eq!(p.free.len(), POOL_KEEP);
        let total: usize = p.free.iter_mut().map(|b| b.bytes().len()).sum();
        assert_eq!(total, 15 * 4096 + (64 << 10));
        // One that cannot fit is dropped.
        p.give(Box::new(alloc::vec![0u8; 4 << 20]));
        assert!(p.free.iter_mut().all(|b| b.bytes().len() < 4 << 20));
    }
}
