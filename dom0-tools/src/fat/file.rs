//! [`FileStore`]: a [`BlockStore`] over a file's [`FileExtents`], so
//! blkback can serve an image file in a FAT file system as a disk. It
//! reads and writes the file's existing sectors only; the file's size,
//! the FAT and the directories never change.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use super::{FatError, FileExtents, Run, Volume, SECTOR};
use crate::blkback::{BlockStore, IoError, StoreIo};

/// A disk image file on `S`, as a disk.
pub struct FileStore<S: BlockStore> {
    dev: S,
    ext: FileExtents,
}

impl<S: BlockStore> FileStore<S> {
    /// Serves `extents` of `dev`. The file must be whole sectors of the
    /// device, and each run aligned to them and on the device.
    pub fn new(dev: S, extents: FileExtents) -> Result<Self, FatError> {
        Self::named(dev, extents, String::new())
    }

    /// Finds the FAT file system on `dev` ([`Volume::find`]) and serves
    /// its file `path`.
    pub fn open(mut dev: S, path: &str) -> Result<Self, FatError> {
        let vol = Volume::find(&mut dev)?;
        let ext = vol.open(&mut dev, path)?;
        Self::named(dev, ext, path.to_string())
    }

    fn named(dev: S, ext: FileExtents, path: String) -> Result<Self, FatError> {
        let align = u64::from(dev.sector_size()).max(SECTOR);
        let unaligned = |what| FatError::Unaligned {
            path: path.clone(),
            what,
            align,
        };
        if !ext.len.is_multiple_of(align) {
            return Err(unaligned("its size"));
        }
        let unit = align / SECTOR;
        let mut next = 0u64;
        for r in &ext.runs {
            if r.file_sector != next || r.sectors == 0 {
                return Err(unaligned("its extent list"));
            }
            if !r.file_sector.is_multiple_of(unit)
                || !r.dev_sector.is_multiple_of(unit)
                || !r.sectors.is_multiple_of(unit)
            {
                return Err(unaligned("its clusters' placement"));
            }
            match r.dev_sector.checked_add(r.sectors) {
                Some(end) if end <= dev.sectors() => {}
                _ => {
                    return Err(FatError::BeyondDevice {
                        offset: r.dev_sector.saturating_mul(SECTOR),
                    })
                }
            }
            next = next
                .checked_add(r.sectors)
                .ok_or(unaligned("its extent list"))?;
        }
        if next != ext.len / SECTOR {
            return Err(unaligned("its extent list"));
        }
        Ok(FileStore { dev, ext })
    }

    /// Where the file is.
    pub fn extents(&self) -> &FileExtents {
        &self.ext
    }

    /// The device underneath.
    pub fn into_inner(self) -> S {
        self.dev
    }

    /// The pieces of the `bytes` bytes at file sector `sector`: (device
    /// sector, bytes) in order.
    fn pieces(&mut self, sector: u64, bytes: usize) -> Result<Vec<(u64, usize)>, IoError> {
        let mut v = Vec::new();
        self.split(sector, bytes, |_, at, r| {
            v.push((at, r.len()));
            Ok(())
        })?;
        Ok(v)
    }

    /// Calls `f(run_part_device_sector, byte_range_of_buffer)` for each
    /// piece of the `bytes` bytes at file sector `sector`.
    fn split(
        &mut self,
        sector: u64,
        bytes: usize,
        mut f: impl FnMut(&mut S, u64, core::ops::Range<usize>) -> Result<(), IoError>,
    ) -> Result<(), IoError> {
        let count = (bytes as u64).div_ceil(SECTOR);
        match sector.checked_add(count) {
            Some(end) if end <= self.sectors() && (bytes as u64).is_multiple_of(SECTOR) => {}
            _ => return Err(IoError::Io),
        }
        let mut i = self
            .ext
            .runs
            .partition_point(|r: &Run| r.file_sector + r.sectors <= sector);
        let (mut s, mut done) = (sector, 0usize);
        while done < bytes {
            let r = self.ext.runs.get(i).ok_or(IoError::Io)?;
            let skip = s - r.file_sector;
            let n = (r.sectors - skip).min(((bytes - done) as u64) / SECTOR);
            let len = (n * SECTOR) as usize;
            f(&mut self.dev, r.dev_sector + skip, done..done + len)?;
            done += len;
            s += n;
            i += 1;
        }
        Ok(())
    }
}

impl<S: BlockStore> BlockStore for FileStore<S> {
    fn sectors(&self) -> u64 {
        self.ext.len / SECTOR
    }
    fn sector_size(&self) -> u32 {
        self.dev.sector_size()
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.split(sector, buf.len(), |dev, at, r| dev.read(at, &mut buf[r]))
    }
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), IoError> {
        self.split(sector, data.len(), |dev, at, r| dev.write(at, &data[r]))
    }
    /// One batch on the device, an I/O split where the file's runs are.
    fn batch(&mut self, ios: &mut [StoreIo<'_>]) -> Vec<Result<(), IoError>> {
        let mut out = vec![Ok(()); ios.len()];
        let mut owner = Vec::with_capacity(ios.len());
        let mut sub = Vec::with_capacity(ios.len());
        for (i, io) in ios.iter_mut().enumerate() {
            let pieces = match self.pieces(io.sector(), io.len()) {
                Ok(p) => p,
                Err(e) => {
                    out[i] = Err(e);
                    continue;
                }
            };
            match io {
                StoreIo::Read(_, b) => {
                    let mut rest: &mut [u8] = b;
                    for (at, len) in pieces {
                        let (head, tail) = core::mem::take(&mut rest).split_at_mut(len);
                        rest = tail;
                        owner.push(i);
                        sub.push(StoreIo::Read(at, head));
                    }
                }
                StoreIo::Write(_, d) => {
                    let mut rest: &[u8] = d;
                    for (at, len) in pieces {
                        let (head, tail) = rest.split_at(len);
                        rest = tail;
                        owner.push(i);
                        sub.push(StoreIo::Write(at, head));
                    }
                }
            }
        }
        for (i, r) in owner.into_iter().zip(self.dev.batch(&mut sub)) {
            if out[i].is_ok() {
                out[i] = r;
            }
        }
        out
    }
    fn flush(&mut self) -> Result<(), IoError> {
        self.dev.flush()
    }
    fn can_flush(&self) -> bool {
        self.dev.can_flush()
    }
}
