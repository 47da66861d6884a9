//! What a virtual block device is backed by: [`BlockStore`] (the whole
//! disk, a partition, an image file — Dom0's glue implements it over its
//! drivers), and [`MemDisk`], an in-memory store with a volatile write
//! cache for tests.

use alloc::vec;
use alloc::vec::Vec;

use hypercall_abi::io::blkif::BLKIF_SECTOR_SIZE;

/// Why a [`BlockStore`] operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoError {
    /// The medium failed (`BLKIF_RSP_ERROR`).
    Io,
    /// The store cannot do this (`BLKIF_RSP_EOPNOTSUPP`).
    Unsupported,
}

/// One I/O of a [`BlockStore::batch`]: a read into, or a write from, a
/// buffer of whole sectors at a 512-byte sector number.
#[derive(Debug)]
pub enum StoreIo<'a> {
    /// Read `buf.len()` bytes from the sector into the buffer.
    Read(u64, &'a mut [u8]),
    /// Write the buffer at the sector.
    Write(u64, &'a [u8]),
}

impl StoreIo<'_> {
    /// The sector it starts at.
    pub fn sector(&self) -> u64 {
        match self {
            StoreIo::Read(s, _) | StoreIo::Write(s, _) => *s,
        }
    }
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        match self {
            StoreIo::Read(_, b) => b.len(),
            StoreIo::Write(_, d) => d.len(),
        }
    }
    /// Whether it moves no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The same I/O at another sector, borrowing this one's buffer.
    pub fn at(&mut self, sector: u64) -> StoreIo<'_> {
        match self {
            StoreIo::Read(_, b) => StoreIo::Read(sector, b),
            StoreIo::Write(_, d) => StoreIo::Write(sector, d),
        }
    }
}

/// One read or write handed to a store to run in the background
/// ([`BlockStore::submit`]), owning its buffer: the store keeps it, and
/// nobody else can touch the buffer, until it hands the I/O back
/// ([`BlockStore::poll_completed`]).
pub struct OwnedIo {
    /// Who submitted it (a store shared by several devices hands each its
    /// own completions only).
    pub owner: u64,
    /// The submitter's name for it.
    pub tag: u64,
    /// A write (else a read).
    pub write: bool,
    /// The 512-byte sector it starts at.
    pub sector: u64,
    /// Bytes moved: the first `len` of `buf`.
    pub len: usize,
    /// The data (read into, or written from).
    pub buf: alloc::boxed::Box<dyn super::IoBuf>,
}

impl core::fmt::Debug for OwnedIo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "OwnedIo({}/{} {} {}+{})",
            self.owner,
            self.tag,
            if self.write { "w" } else { "r" },
            self.sector,
            self.len
        )
    }
}

/// What [`BlockStore::submit`] did with an I/O.
#[derive(Debug)]
pub enum Submitted {
    /// On the device: it comes back from [`BlockStore::poll_completed`].
    InFlight,
    /// Done already (a store without a queue), with its result.
    Done(OwnedIo, Result<(), IoError>),
    /// The device's queue is full: try again after a completion.
    Busy(OwnedIo),
}

/// Runs `io` now on `store`'s blocking calls.
pub fn run_now<S: BlockStore + ?Sized>(store: &mut S, mut io: OwnedIo) -> Submitted {
    let r = match io.buf.bytes().get_mut(..io.len) {
        Some(b) if io.write => store.write(io.sector, b),
        Some(b) => store.read(io.sector, b),
        None => Err(IoError::Io),
    };
    Submitted::Done(io, r)
}

/// Sectors of a backing store. Sector numbers and counts are in 512-byte
/// units (blkif's), always aligned to [`BlockStore::sector_size`] and within
/// [`BlockStore::sectors`] — blkback checks before calling.
pub trait BlockStore {
    /// Size in 512-byte sectors.
    fn sectors(&self) -> u64;
    /// Logical sector size in bytes (a power of two, at least 512).
    fn sector_size(&self) -> u32 {
        512
    }
    /// Reads `buf.len()` bytes (whole sectors) from `sector`.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError>;
    /// Writes `data` (whole sectors) at `sector`; may sit in a volatile
    /// cache until [`BlockStore::flush`].
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), IoError>;
    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), IoError>;
    /// Runs independent reads and writes, in any order or all at once (a
    /// caller that needs one before another waits for the first batch);
    /// each one's result is in its slot of the returned vector. The
    /// default runs them one by one; a device with a queue keeps them all
    /// in flight.
    fn batch(&mut self, ios: &mut [StoreIo<'_>]) -> Vec<Result<(), IoError>> {
        ios.iter_mut()
            .map(|io| match io {
                StoreIo::Read(s, b) => self.read(*s, b),
                StoreIo::Write(s, d) => self.write(*s, d),
            })
            .collect()
    }
    /// Starts `io` without waiting for it (its range checked by the
    /// caller). The default runs it at once ([`run_now`]); a device with a
    /// queue keeps it in flight, and it comes back, result and buffer,
    /// from [`BlockStore::poll_completed`]. In-flight I/Os have no order
    /// among themselves; a caller that needs one before another (a
    /// flush) waits for the first.
    fn submit(&mut self, io: OwnedIo) -> Submitted {
        run_now(self, io)
    }
    /// The I/Os of `owner` that completed since the last call (never
    /// waits).
    fn poll_completed(&mut self, _owner: u64) -> Vec<(OwnedIo, Result<(), IoError>)> {
        Vec::new()
    }
    /// I/Os of `owner` submitted and not yet handed back.
    fn outstanding(&self, _owner: u64) -> usize {
        0
    }
    /// Sleeps until some I/O in flight (anyone's) completes; returns at
    /// once when none is.
    fn wait_any(&mut self) {}
    /// Whether [`BlockStore::flush`] is worth calling (`feature-flush-cache`).
    fn can_flush(&self) -> bool {
        true
    }
    /// Whether [`BlockStore::submit`] takes I/Os whose data is scattered
    /// ([`super::IoBuf::dma_segments`], an [`super::SgBuf`]) and moves it
    /// in place. The default, false: blkback gives this store contiguous
    /// buffers only.
    fn takes_segments(&self) -> bool {
        false
    }
    /// Drops the contents of `count` sectors from `sector` (reads may then
    /// return anything).
    fn discard(&mut self, _sector: u64, _count: u64) -> Result<(), IoError> {
        Err(IoError::Unsupported)
    }
    /// Whether [`BlockStore::discard`] works (`feature-discard`).
    fn can_discard(&self) -> bool {
        false
    }
}

/// An in-memory disk: writes land in a volatile cache ([`MemDisk::data`])
/// and reach [`MemDisk::durable`] on flush, so tests can tell what a crash
/// would keep.
#[derive(Clone, Debug)]
pub struct MemDisk {
    /// What reads see.
    pub data: Vec<u8>,
    /// What survives a power cut (updated by flushes).
    pub durable: Vec<u8>,
    /// Flushes done.
    pub flushes: u64,
    /// Discards done.
    pub discards: u64,
    /// Sector size.
    pub sector_size: u32,
    /// Whether discard is supported.
    pub discard: bool,
    /// Reads and writes touching this sector fail with [`IoError::Io`].
    pub bad_sector: Option<u64>,
}

impl MemDisk {
    /// A zeroed disk of `sectors` 512-byte sectors.
    pub fn new(sectors: u64) -> MemDisk {
        let n = sectors as usize * BLKIF_SECTOR_SIZE;
        MemDisk {
            data: vec![0; n],
            durable: vec![0; n],
            flushes: 0,
            discards: 0,
            sector_size: 512,
            discard: true,
            bad_sector: None,
        }
    }

    fn range(&self, sector: u64, len: usize) -> Result<core::ops::Range<usize>, IoError> {
        let start = usize::try_from(sector)
            .ok()
            .and_then(|s| s.checked_mul(BLKIF_SECTOR_SIZE))
            .ok_or(IoError::Io)?;
        let end = start.checked_add(len).ok_or(IoError::Io)?;
        if end > self.data.len() {
            return Err(IoError::Io);
        }
        if let Some(b) = self.bad_sector {
            let nsect = len.div_ceil(BLKIF_SECTOR_SIZE) as u64;
            if (sector..sector + nsect).contains(&b) {
                return Err(IoError::Io);
            }
        }
        Ok(start..end)
    }
}

impl BlockStore for MemDisk {
    fn sectors(&self) -> u64 {
        (self.data.len() / BLKIF_SECTOR_SIZE) as u64
    }
    fn sector_size(&self) -> u32 {
        self.sector_size
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let r = self.range(sector, buf.len())?;
        buf.copy_from_slice(&self.data[r]);
        Ok(())
    }
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), IoError> {
        let r = self.range(sector, data.len())?;
        self.data[r].copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), IoError> {
        self.durable.copy_from_slice(&self.data);
        self.flushes += 1;
        Ok(())
    }
    fn discard(&mut self, sector: u64, count: u64) -> Result<(), IoError> {
        if !self.discard {
            return Err(IoError::Unsupported);
        }
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(BLKIF_SECTOR_SIZE))
            .ok_or(IoError::Io)?;
        let r = self.range(sector, len)?;
        self.data[r].fill(0);
        self.discards += 1;
        Ok(())
    }
    fn can_discard(&self) -> bool {
        self.discard
    }
}

/// A shared handle to a store (`Rc<RefCell<S>>`), so a test or the glue
/// can look at a store blkback is using.
impl<S: BlockStore> BlockStore for alloc::rc::Rc<core::cell::RefCell<S>> {
    fn sectors(&self) -> u64 {
        self.borrow().sectors()
    }
    fn sector_size(&self) -> u32 {
        self.borrow().sector_size()
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.borrow_mut().read(sector, buf)
    }
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), IoError> {
        self.borrow_mut().write(sector, data)
    }
    fn batch(&mut self, ios: &mut [StoreIo<'_>]) -> Vec<Result<(), IoError>> {
        self.borrow_mut().batch(ios)
    }
    fn submit(&mut self, io: OwnedIo) -> Submitted {
        self.borrow_mut().submit(io)
    }
    fn poll_completed(&mut self, owner: u64) -> Vec<(OwnedIo, Result<(), IoError>)> {
        self.borrow_mut().poll_completed(owner)
    }
    fn outstanding(&self, owner: u64) -> usize {
        self.borrow().outstanding(owner)
    }
    fn wait_any(&mut self) {
        self.borrow_mut().wait_any()
    }
    fn flush(&mut self) -> Result<(), IoError> {
        self.borrow_mut().flush()
    }
    fn can_flush(&self) -> bool {
        self.borrow().can_flush()
    }
    fn takes_segments(&self) -> bool {
        self.borrow().takes_segments()
    }
    fn discard(&mut self, sector: u64, count: u64) -> Result<(), IoError> {
        self.borrow_mut().discard(sector, count)
    }
    fn can_discard(&self) -> bool {
        self.borrow().can_discard()
    }
}

/// A boxed store (a format, such as qcow2, layered over any medium).
impl<S: BlockStore + ?Sized> BlockStore for alloc::boxed::Box<S> {
    fn sectors(&self) -> u64 {
        (**self).sectors()
    }
    fn sector_size(&self) -> u32 {
        (**self).sector_size()
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        (**self).read(sector, buf)
    }
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), IoError> {
        (**self).write(sector, data)
    }
    fn batch(&mut self, ios: &mut [StoreIo<'_>]) -> Vec<Result<(), IoError>> {
        (**self).batch(ios)
    }
    fn submit(&mut self, io: OwnedIo) -> Submitted {
        (**self).submit(io)
    }
    fn poll_completed(&mut self, owner: u64) -> Vec<(OwnedIo, Result<(), IoError>)> {
        (**self).poll_completed(owner)
    }
    fn outstanding(&self, owner: u64) -> usize {
        (**self).outstanding(owner)
    }
    fn wait_any(&mut self) {
        (**self).wait_any()
    }
    fn flush(&mut self) -> Result<(), IoError> {
        (**self).flush()
    }
    fn can_flush(&self) -> bool {
        (**self).can_flush()
    }
    fn takes_segments(&self) -> bool {
        (**self).takes_segments()
    }
    fn discard(&mut self, sector: u64, count: u64) -> Result<(), IoError> {
        (**self).discard(sector, count)
    }
    fn can_discard(&self) -> bool {
        (**self).can_discard()
    }
}

/// A window of another store: `len` sectors from sector `start` (a
/// partition, or a raw image stored contiguously). Requests never leave
/// the window.
pub struct Slice<S> {
    inner: S,
    start: u64,
    len: u64,
}

impl<S: BlockStore> Slice<S> {
    /// The window, or `None` if it does not fit `inner` or is misaligned
    /// to its sector size.
    pub fn new(inner: S, start: u64, len: u64) -> Option<Self> {
        let align = u64::from(inner.sector_size() / 512).max(1);
        let end = start.checked_add(len)?;
        if end > inner.sectors() || !start.is_multiple_of(align) || !len.is_multiple_of(align) {
            return None;
        }
        Some(Slice { inner, start, len })
    }

    /// The store underneath.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn at(&self, sector: u64, bytes: usize) -> Result<u64, IoError> {
        let n = bytes.div_ceil(BLKIF_SECTOR_SIZE) as u64;
        match sector.checked_add(n) {
            Some(end) if end <= self.len => Ok(self.start + sector),
            _ => Err(IoError::Io),
        }
    }
}

impl<S: BlockStore> BlockStore for Slice<S> {
    fn sectors(&self) -> u64 {
        self.len
    }
    fn sector_size(&self) -> u32 {
        self.inner.sector_size()
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let s = self.at(sector, buf.len())?;
        self.inner.read(s, buf)
    }
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), IoError> {
        let s = self.at(sector, data.len())?;
        self.inner.write(s, data)
    }
    fn batch(&mut self, ios: &mut [StoreIo<'_>]) -> Vec<Result<(), IoError>> {
        let mut out = vec![Ok(()); ios.len()];
        let mut owner = Vec::with_capacity(ios.len());
        let mut sub = Vec::with_capacity(ios.len());
        for (i, io) in ios.iter_mut().enumerate() {
            match self.at(io.sector(), io.len()) {
                Ok(s) => {
                    owner.push(i);
                    sub.push(io.at(s));
                }
                Err(e) => out[i] = Err(e),
            }
        }
        for (i, r) in owner.into_iter().zip(self.inner.batch(&mut sub)) {
            out[i] = r;
        }
        out
    }
    fn submit(&mut self, mut io: OwnedIo) -> Submitted {
        match self.at(io.sector, io.len) {
            Ok(s) => io.sector = s,
            Err(e) => return Submitted::Done(io, Err(e)),
        }
        match self.inner.submit(io) {
            Submitted::InFlight => Submitted::InFlight,
            Submitted::Done(mut io, r) => {
                io.sector -= self.start;
                Submitted::Done(io, r)
            }
            Submitted::Busy(mut io) => {
                io.sector -= self.start;
                Submitted::Busy(io)
            }
        }
    }
    fn poll_completed(&mut self, owner: u64) -> Vec<(OwnedIo, Result<(), IoError>)> {
        let mut v = self.inner.poll_completed(owner);
        for (io, _) in &mut v {
            io.sector = io.sector.saturating_sub(self.start);
        }
        v
    }
    fn outstanding(&self, owner: u64) -> usize {
        self.inner.outstanding(owner)
    }
    fn wait_any(&mut self) {
        self.inner.wait_any()
    }
    fn flush(&mut self) -> Result<(), IoError> {
        self.inner.flush()
    }
    fn can_flush(&self) -> bool {
        self.inner.can_flush()
    }
    fn takes_segments(&self) -> bool {
        self.inner.takes_segments()
    }
    fn discard(&mut self, sector: u64, count: u64) -> Result<(), IoError> {
        match sector.checked_add(count) {
            Some(end) if end <= self.len => self.inner.discard(self.start + sector, count),
            _ => Err(IoError::Io),
        }
    }
    fn can_discard(&self) -> bool {
        self.inner.can_discard()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_stay_inside() {
        let mut s = Slice::new(MemDisk::new(100), 10, 20).unwrap();
        assert_eq!(s.sectors(), 20);
        s.write(0, &[1; 512]).unwrap();
        s.write(19, &[2; 512]).unwrap();
        assert_eq!(s.write(20, &[3; 512]), Err(IoError::Io));
        assert_eq!(s.write(19, &[3; 1024]), Err(IoError::Io));
        assert_eq!(s.read(u64::MAX, &mut [0; 512]), Err(IoError::Io));
        assert_eq!(s.discard(10, u64::MAX), Err(IoError::Io));
        s.discard(19, 1).unwrap();
        let d = s.into_inner();
        assert_eq!(d.data[10 * 512], 1);
        assert_eq!(d.data[29 * 512], 0);
        assert!(Slice::new(MemDisk::new(100), 90, 11).is_none());
        assert!(Slice::new(MemDisk::new(100), u64::MAX, 2).is_none());
        let mut big = MemDisk::new(64);
        big.sector_size = 4096;
        assert!(Slice::new(big.clone(), 4, 8).is_none());
        assert!(Slice::new(big, 8, 16).is_some());
    }

    #[test]
    fn slice_batches_stay_inside() {
        let mut s = Slice::new(MemDisk::new(100), 10, 20).unwrap();
        let (a, b) = ([1u8; 512], [2u8; 1024]);
        let mut r = [0u8; 512];
        let res = s.batch(&mut [
            StoreIo::Write(0, &a),
            StoreIo::Write(19, &b),
            StoreIo::Write(19, &a),
            StoreIo::Read(0, &mut r),
        ]);
        assert_eq!(res, [Ok(()), Err(IoError::Io), Ok(()), Ok(())]);
        assert_eq!(r, a);
        let d = s.into_inner();
        assert_eq!(d.data[10 * 512], 1);
        assert_eq!(d.data[29 * 512], 1);
        assert_eq!(d.data[30 * 512], 0);
    }
}
