//! # fat — disk images and save files in a FAT file system
//!
//! Lets blkback serve a raw disk image *file* that lives in a FAT12/16/32
//! file system on Dom0's disk (whole disk or an MBR primary partition),
//! made on a host with `mkfs.fat` and filled with `mcopy`, and lets
//! `xl save` write a file there. [`Volume`] finds a file and maps it to
//! device sectors ([`FileExtents`]); [`FileStore`] then reads and writes
//! the file's sectors in place (it never changes the FAT or directories).
//!
//! What is written (`write.rs`): [`Volume::create`], [`Volume::set_len`]
//! and [`Volume::remove`] change the FAT (every copy, or only the active
//! one when FAT32 mirroring is off; FAT32 entries' high 4 bits kept),
//! FAT32's FSInfo free count and next-free hint, and directory entries
//! (VFAT long names with a unique 8.3 alias; a directory grows by a
//! zeroed cluster, FAT12/16's fixed root cannot). File data is not
//! zeroed. Each operation reads and checks all it will touch first —
//! including one pass over the FAT and a walk of the directory tree, so
//! a chain shared with another file is refused, not freed — and writes
//! only once it knows it will succeed: out of space changes nothing.
//! Writes are ordered so a crash leaves at worst lost clusters, never a
//! cross-link: a new chain is made in the FAT before an entry points to
//! it, and a directory's new cluster is zeroed before it is linked; an
//! entry lets go of clusters (removed, replaced, or its size cut) before
//! they are freed. Nothing is cached between calls.
//!
//! Everything on the disk is untrusted: the boot sector is validated
//! ([`Volume::mount`]), cluster chains are followed with loop detection
//! and checked against the file's size, and every error is a [`FatError`]
//! whose `Display` is a one-line message for the user. Nothing here
//! panics on any disk contents.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::blkback::{BlockStore, IoError};

mod bpb;
mod dir;
mod file;
mod mbr;
mod name;
#[cfg(test)]
mod tests;
mod write;
#[cfg(test)]
mod write_tests;

use bpb::{Geometry, Root};
pub use file::FileStore;
pub use mbr::{partitions, Partition};
pub use name::DosTime;

/// Bytes in a blkif sector: the unit of every sector number here.
const SECTOR: u64 = 512;
/// The most bytes a directory may have (65536 entries, spec section 6).
const MAX_DIR_BYTES: u64 = 65536 * bpb::DIRENT;

/// The FAT variant, decided by the cluster count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatKind {
    /// 12-bit FAT entries (fewer than 4085 clusters).
    Fat12,
    /// 16-bit FAT entries (fewer than 65525 clusters).
    Fat16,
    /// 28-bit FAT entries.
    Fat32,
}

impl fmt::Display for FatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FatKind::Fat12 => "FAT12",
            FatKind::Fat16 => "FAT16",
            FatKind::Fat32 => "FAT32",
        })
    }
}

/// What is wrong with a file's or directory's cluster chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainProblem {
    /// The chain comes back on itself.
    Loop,
    /// End of chain after `clusters` clusters; the size needs `needed`.
    Short {
        /// Clusters found.
        clusters: u64,
        /// Clusters the size needs.
        needed: u64,
    },
    /// The chain goes on after the clusters the size needs.
    Long {
        /// Clusters the size needs.
        needed: u64,
    },
    /// The file has a size but no first cluster.
    Empty,
    /// The size needs more clusters than the file system has.
    TooBig {
        /// Clusters the size needs.
        needed: u64,
    },
    /// The FAT entry of cluster `after` marks the next cluster bad.
    Bad {
        /// The last good cluster.
        after: u32,
    },
    /// The FAT entry of cluster `after` is free (0) or reserved (1).
    Free {
        /// The last good cluster.
        after: u32,
    },
    /// A cluster number outside the file system.
    OutOfRange {
        /// The cluster number.
        cluster: u32,
    },
}

/// Why finding or reading a file failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FatError {
    /// The device failed reading 512-byte sector `sector`.
    Io {
        /// First sector of the failed read.
        sector: u64,
        /// The device's error.
        error: IoError,
    },
    /// A read would go past the end of the device.
    BeyondDevice {
        /// The byte offset asked for.
        offset: u64,
    },
    /// No FAT boot sector (the reason says what is missing).
    NotFat(&'static str),
    /// A boot-sector field has an impossible value.
    BadField {
        /// The field, as the spec names it.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// The file system claims more sectors than its device or partition.
    TooLarge {
        /// 512-byte sectors the file system needs from its start.
        needed: u64,
        /// 512-byte sectors available there.
        available: u64,
    },
    /// Neither the whole disk nor any MBR partition holds FAT.
    NoVolume {
        /// Partitions tried.
        tried: usize,
    },
    /// No such file or directory.
    NotFound(String),
    /// A path component that must be a directory is a file.
    NotADirectory(String),
    /// A file was asked for but this is a directory.
    IsADirectory(String),
    /// A bad cluster chain.
    Chain {
        /// The file or directory.
        path: String,
        /// What is wrong.
        problem: ChainProblem,
    },
    /// A directory longer than FAT allows (65536 entries).
    DirTooLarge(String),
    /// A file served as a disk must be whole, aligned sectors.
    Unaligned {
        /// The file ("" if not known).
        path: String,
        /// What is wrong.
        what: &'static str,
        /// The alignment needed, in bytes.
        align: u64,
    },
    /// The device failed writing 512-byte sector `sector`.
    WriteFailed {
        /// First sector of the failed write.
        sector: u64,
        /// The device's error.
        error: IoError,
    },
    /// The device failed a flush (a write barrier).
    FlushFailed(IoError),
    /// A name FAT cannot store.
    BadName {
        /// The name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Not enough free clusters; nothing was changed.
    NoSpace {
        /// Bytes free (for a replaced file, its own clusters included).
        free: u64,
        /// Bytes needed (whole clusters, directory growth included).
        needed: u64,
    },
    /// The fixed root directory of FAT12/16 has no free slots left.
    RootFull {
        /// Its entries.
        entries: u64,
    },
    /// A FAT file holds at most 4 GiB - 1 bytes.
    FileTooLarge {
        /// The file.
        path: String,
        /// The size asked for.
        len: u64,
    },
    /// A file's cluster chain shares a cluster with another file or
    /// directory; changing it would damage the other.
    CrossLinked {
        /// The file.
        path: String,
        /// The shared cluster.
        cluster: u32,
    },
}

fn name_or_image(path: &str) -> &str {
    if path.is_empty() {
        "image file"
    } else {
        path
    }
}

impl fmt::Display for FatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FatError::Io { sector, error } => {
                write!(f, "disk read failed at sector {sector} ({error:?})")
            }
            FatError::BeyondDevice { offset } => {
                write!(
                    f,
                    "file system points past the end of the disk (byte {offset})"
                )
            }
            FatError::NotFat(why) => write!(f, "not a FAT file system ({why})"),
            FatError::BadField { field, value } => {
                write!(
                    f,
                    "not a valid FAT file system (boot sector: {field} = {value})"
                )
            }
            FatError::TooLarge { needed, available } => write!(
                f,
                "FAT file system needs {needed} sectors but only {available} are there"
            ),
            FatError::NoVolume { tried } => write!(
                f,
                "no FAT file system on the whole disk or its {tried} MBR partition(s)"
            ),
            FatError::NotFound(p) => write!(f, "{p}: No such file or directory"),
            FatError::NotADirectory(p) => write!(f, "{p}: Not a directory"),
            FatError::IsADirectory(p) => write!(f, "{p}: Is a directory"),
            FatError::Chain { path, problem } => {
                write!(f, "cluster chain of {path} ")?;
                match problem {
                    ChainProblem::Loop => write!(f, "loops"),
                    ChainProblem::Short { clusters, needed } => write!(
                        f,
                        "ends after {clusters} cluster(s) but its size needs {needed}"
                    ),
                    ChainProblem::Long { needed } => {
                        write!(f, "is longer than its size ({needed} cluster(s))")
                    }
                    ChainProblem::Empty => write!(f, "is empty (first cluster 0) but needs clusters"),
                    ChainProblem::TooBig { needed } => write!(
                        f,
                        "cannot exist: its size needs {needed} clusters, more than the file system has"
                    ),
                    ChainProblem::Bad { after } => {
                        write!(f, "runs into a bad cluster after cluster {after}")
                    }
                    ChainProblem::Free { after } => {
                        write!(f, "runs into a free cluster after cluster {after}")
                    }
                    ChainProblem::OutOfRange { cluster } => {
                        write!(f, "points to cluster {cluster}, outside the file system")
                    }
                }
            }
            FatError::DirTooLarge(p) => {
                write!(f, "{p}: directory longer than FAT allows (65536 entries)")
            }
            FatError::Unaligned { path, what, align } => write!(
                f,
                "{}: {what} is not a multiple of {align} bytes; a disk image must be whole sectors",
                name_or_image(path)
            ),
            FatError::WriteFailed { sector, error } => {
                write!(f, "disk write failed at sector {sector} ({error:?})")
            }
            FatError::FlushFailed(error) => write!(f, "disk flush failed ({error:?})"),
            FatError::BadName { name, why } => {
                write!(f, "{name:?}: not a valid FAT file name ({why})")
            }
            FatError::NoSpace { free, needed } => write!(
                f,
                "no space left on the FAT file system: {free} bytes free, {needed} needed"
            ),
            FatError::RootFull { entries } => write!(
                f,
                "root directory full (all {entries} entries used); use a subdirectory"
            ),
            FatError::FileTooLarge { path, len } => write!(
                f,
                "{path}: {len} bytes is more than a FAT file can hold (4 GiB - 1)"
            ),
            FatError::CrossLinked { path, cluster } => write!(
                f,
                "{path} shares cluster {cluster} with another file (file system damaged; run fsck.fat)"
            ),
        }
    }
}

/// Reads `out.len()` bytes at byte `offset` of `dev`, whatever the
/// device's sector size and alignment.
pub(crate) fn read_bytes(
    dev: &mut impl BlockStore,
    offset: u64,
    out: &mut [u8],
) -> Result<(), FatError> {
    let ss = u64::from(dev.sector_size());
    let beyond = FatError::BeyondDevice { offset };
    let end = offset.checked_add(out.len() as u64).ok_or(beyond.clone())?;
    let dev_bytes = dev.sectors().saturating_mul(SECTOR);
    if end > dev_bytes || ss < SECTOR || !ss.is_power_of_two() {
        return Err(beyond);
    }
    let first = offset / ss * ss;
    let last = end.div_ceil(ss).checked_mul(ss).ok_or(beyond.clone())?;
    let io = |error| FatError::Io {
        sector: first / SECTOR,
        error,
    };
    if first == offset && last == end {
        return dev.read(first / SECTOR, out).map_err(io);
    }
    let len = usize::try_from(last - first).map_err(|_| beyond)?;
    let mut tmp = vec![0u8; len];
    dev.read(first / SECTOR, &mut tmp).map_err(io)?;
    let at = (offset - first) as usize;
    out.copy_from_slice(&tmp[at..at + out.len()]);
    Ok(())
}

/// Writes `data` at byte `offset` of `dev`, reading and merging the
/// device sectors it only partly covers.
pub(crate) fn write_bytes(
    dev: &mut impl BlockStore,
    offset: u64,
    data: &[u8],
) -> Result<(), FatError> {
    let ss = u64::from(dev.sector_size());
    let beyond = FatError::BeyondDevice { offset };
    let end = offset
        .checked_add(data.len() as u64)
        .ok_or(beyond.clone())?;
    let dev_bytes = dev.sectors().saturating_mul(SECTOR);
    if end > dev_bytes || ss < SECTOR || !ss.is_power_of_two() {
        return Err(beyond);
    }
    let first = offset / ss * ss;
    let last = end.div_ceil(ss).checked_mul(ss).ok_or(beyond.clone())?;
    let io = |error| FatError::WriteFailed {
        sector: first / SECTOR,
        error,
    };
    if first == offset && last == end {
        return dev.write(first / SECTOR, data).map_err(io);
    }
    let len = usize::try_from(last - first).map_err(|_| beyond)?;
    let mut tmp = vec![0u8; len];
    read_bytes(dev, first, &mut tmp)?;
    let at = (offset - first) as usize;
    tmp[at..at + data.len()].copy_from_slice(data);
    dev.write(first / SECTOR, &tmp).map_err(io)
}

/// One piece of a file: `sectors` 512-byte sectors from the file's sector
/// `file_sector` are at the device's sector `dev_sector`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// First sector in the file.
    pub file_sector: u64,
    /// First sector on the device (absolute, partition offset included).
    pub dev_sector: u64,
    /// Length in sectors.
    pub sectors: u64,
}

/// Where a file's bytes are on the device: `runs` cover the file's
/// sectors `0..len.div_ceil(512)` in order, each as long as possible.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileExtents {
    /// The file's size in bytes.
    pub len: u64,
    /// Its sectors.
    pub runs: Vec<Run>,
}

/// One file or subdirectory, as [`Volume::list`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The long (VFAT) name, or the short name if there is no valid one.
    pub name: String,
    /// The 8.3 name.
    pub short_name: String,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// Where a directory's entries are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    /// The root directory, fixed region or chain.
    Root,
    Cluster(u32),
}

/// What a FAT entry says comes after a cluster.
enum Next {
    Cluster(u32),
    End,
    Bad,
    Free,
    Out(u32),
}

/// What a chain's FAT entry other than "next" or "end" after cluster `c`
/// means.
fn broken(next: Next, c: u32) -> ChainProblem {
    match next {
        Next::Bad => ChainProblem::Bad { after: c },
        Next::Out(n) => ChainProblem::OutOfRange { cluster: n },
        Next::Free | Next::End | Next::Cluster(_) => ChainProblem::Free { after: c },
    }
}

/// The logical FAT sector last read, so walking a chain reads each FAT
/// sector about once.
struct FatCache {
    sector: Option<u64>,
    buf: Vec<u8>,
}

/// Brent's cycle detection over a cluster chain, with the cluster count
/// as a hard bound on its length.
struct LoopCheck {
    tortoise: u32,
    power: u64,
    lam: u64,
    steps: u64,
    max: u64,
}

impl LoopCheck {
    fn new(first: u32, max: u64) -> Self {
        LoopCheck {
            tortoise: first,
            power: 1,
            lam: 1,
            steps: 0,
            max,
        }
    }

    /// Takes the next cluster of the chain; true if the chain loops.
    fn looped(&mut self, c: u32) -> bool {
        if c == self.tortoise {
            return true;
        }
        self.steps += 1;
        if self.steps > self.max {
            return true;
        }
        if self.power == self.lam {
            self.tortoise = c;
            self.power = self.power.saturating_mul(2);
            self.lam = 0;
        }
        self.lam += 1;
        false
    }
}

/// A mounted FAT file system: its validated geometry and where it starts.
/// Holds no reference to the device; every method takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    first_sector: u64,
    base: u64,
    geo: Geometry,
    /// Where to look for free clusters next (FAT12/16; FAT32 keeps its
    /// hint in FSInfo).
    next_free: u32,
}

/// Case-insensitive name comparison (Unicode simple upper-casing, as FAT
/// does for long names).
fn same_name(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_uppercase)
        .eq(b.chars().flat_map(char::to_uppercase))
}

impl Volume {
    /// Mounts the FAT file system whose boot sector is at 512-byte sector
    /// `first_sector`; it must fit on the device.
    pub fn mount(dev: &mut impl BlockStore, first_sector: u64) -> Result<Volume, FatError> {
        let available = dev.sectors().saturating_sub(first_sector);
        Self::mount_within(dev, first_sector, available)
    }

    /// Mounts a file system that must fit in `sectors` sectors from
    /// `first_sector` (a partition).
    pub fn mount_within(
        dev: &mut impl BlockStore,
        first_sector: u64,
        sectors: u64,
    ) -> Result<Volume, FatError> {
        let base = first_sector
            .checked_mul(SECTOR)
            .ok_or(FatError::BeyondDevice { offset: u64::MAX })?;
        let mut boot = [0u8; 512];
        read_bytes(dev, base, &mut boot)?;
        let geo = bpb::parse(&boot)?;
        let needed = geo.total_bytes / SECTOR;
        let available = sectors.min(dev.sectors().saturating_sub(first_sector));
        if needed > available {
            return Err(FatError::TooLarge { needed, available });
        }
        Ok(Volume {
            first_sector,
            base,
            geo,
            next_free: 2,
        })
    }

    /// Finds a FAT file system: on the whole disk (a "superfloppy", as
    /// `mkfs.fat -C` makes), else in the first MBR primary partition that
    /// holds one (FAT-typed partitions first, then any other type except
    /// extended or GPT-protective ones).
    pub fn find(dev: &mut impl BlockStore) -> Result<Volume, FatError> {
        let whole = match Volume::mount(dev, 0) {
            Ok(v) => return Ok(v),
            Err(e @ (FatError::Io { .. } | FatError::BeyondDevice { .. })) => return Err(e),
            Err(e) => e,
        };
        let parts = partitions(dev)?;
        if parts.is_empty() {
            return Err(whole);
        }
        let mut order: Vec<&Partition> = parts.iter().filter(|p| p.is_fat()).collect();
        order.extend(parts.iter().filter(|p| !p.is_fat() && p.may_hold_fs()));
        let mut only = None;
        for p in &order {
            match Volume::mount_within(dev, p.start, p.sectors) {
                Ok(v) => return Ok(v),
                Err(e @ FatError::Io { .. }) => return Err(e),
                Err(e) => only = Some(e),
            }
        }
        match only {
            Some(e) if order.len() == 1 => Err(e),
            _ => Err(FatError::NoVolume { tried: order.len() }),
        }
    }

    /// FAT12, FAT16 or FAT32.
    pub fn kind(&self) -> FatKind {
        self.geo.kind
    }

    /// Where the file system starts (512-byte sectors).
    pub fn first_sector(&self) -> u64 {
        self.first_sector
    }

    /// Its size in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.geo.total_bytes / SECTOR
    }

    /// Bytes per cluster.
    pub fn cluster_bytes(&self) -> u64 {
        self.geo.cluster
    }

    /// Number of data clusters.
    pub fn clusters(&self) -> u64 {
        self.geo.clusters
    }

    /// Byte offset on the device of cluster `c` (2..clusters + 2).
    fn cluster_offset(&self, c: u32) -> u64 {
        // c < 2^28 + 2 and cluster ≤ 2^19, so no overflow; the volume fits
        // the device, checked at mount.
        self.base + self.geo.data_start + (u64::from(c) - 2) * self.geo.cluster
    }

    fn valid_cluster(&self, c: u32) -> bool {
        c >= 2 && u64::from(c) < self.geo.clusters + 2
    }

    fn fat_byte(
        &self,
        dev: &mut impl BlockStore,
        cache: &mut FatCache,
        at: u64,
    ) -> Result<u8, FatError> {
        let sector = at / self.geo.bps;
        if cache.sector != Some(sector) {
            cache.sector = None;
            cache.buf.resize(self.geo.bps as usize, 0);
            let off = self.base + self.geo.fat_start + sector * self.geo.bps;
            read_bytes(dev, off, &mut cache.buf)?;
            cache.sector = Some(sector);
        }
        Ok(cache.buf[(at % self.geo.bps) as usize])
    }

    /// The FAT entry of valid cluster `c`.
    fn next(
        &self,
        dev: &mut impl BlockStore,
        cache: &mut FatCache,
        c: u32,
    ) -> Result<Next, FatError> {
        let c64 = u64::from(c);
        let (value, end, bad) = match self.geo.kind {
            FatKind::Fat12 => {
                let at = c64 + c64 / 2;
                let v = u32::from(self.fat_byte(dev, cache, at)?)
                    | u32::from(self.fat_byte(dev, cache, at + 1)?) << 8;
                let v = if c.is_multiple_of(2) {
                    v & 0xFFF
                } else {
                    v >> 4
                };
                (v, 0xFF8, 0xFF7)
            }
            FatKind::Fat16 => {
                let at = c64 * 2;
                let v = u32::from(self.fat_byte(dev, cache, at)?)
                    | u32::from(self.fat_byte(dev, cache, at + 1)?) << 8;
                (v, 0xFFF8, 0xFFF7)
            }
            FatKind::Fat32 => {
                let at = c64 * 4;
                let mut v = 0u32;
                for i in 0..4 {
                    v |= u32::from(self.fat_byte(dev, cache, at + i)?) << (8 * i);
                }
                (v & 0x0FFF_FFFF, 0x0FFF_FFF8, 0x0FFF_FFF7)
            }
        };
        Ok(if value >= end {
            Next::End
        } else if value == bad {
            Next::Bad
        } else if value < 2 {
            Next::Free
        } else if self.valid_cluster(value) {
            Next::Cluster(value)
        } else {
            Next::Out(value)
        })
    }

    fn fat_cache(&self) -> FatCache {
        FatCache {
            sector: None,
            buf: Vec::new(),
        }
    }

    /// The clusters of the file `path` starting at `first` with `len`
    /// bytes, as device runs.
    fn file_runs(
        &self,
        dev: &mut impl BlockStore,
        path: &str,
        first: u32,
        len: u64,
    ) -> Result<Vec<Run>, FatError> {
        let chain = |problem| FatError::Chain {
            path: path.to_string(),
            problem,
        };
        let needed = len.div_ceil(self.geo.cluster);
        if needed == 0 {
            return Ok(Vec::new());
        }
        if needed > self.geo.clusters {
            return Err(chain(ChainProblem::TooBig { needed }));
        }
        if first == 0 {
            return Err(chain(ChainProblem::Empty));
        }
        if !self.valid_cluster(first) {
            return Err(chain(ChainProblem::OutOfRange { cluster: first }));
        }
        let per_cluster = self.geo.cluster / SECTOR;
        let total_sectors = len.div_ceil(SECTOR);
        let mut cache = self.fat_cache();
        let mut check = LoopCheck::new(first, self.geo.clusters);
        let mut runs: Vec<Run> = Vec::new();
        let mut c = first;
        let mut have = 0u64;
        loop {
            let file_sector = have * per_cluster;
            let dev_sector = self.cluster_offset(c) / SECTOR;
            let sectors = per_cluster.min(total_sectors - file_sector);
            match runs.last_mut() {
                Some(r) if r.dev_sector + r.sectors == dev_sector => r.sectors += sectors,
                _ => runs.push(Run {
                    file_sector,
                    dev_sector,
                    sectors,
                }),
            }
            have += 1;
            let next = self.next(dev, &mut cache, c)?;
            c = match (next, have == needed) {
                (Next::End, true) => return Ok(runs),
                (Next::Cluster(n), true) => {
                    let problem = self.long_or_loop(dev, &mut cache, check, n, needed)?;
                    return Err(chain(problem));
                }
                (Next::Cluster(n), false) => n,
                (Next::End, false) => {
                    return Err(chain(ChainProblem::Short {
                        clusters: have,
                        needed,
                    }))
                }
                (other, _) => return Err(chain(broken(other, c))),
            };
            if check.looped(c) {
                return Err(chain(ChainProblem::Loop));
            }
        }
    }

    /// A chain went on past the file's size from cluster `c`: says whether
    /// it ends later (too long) or never does (a loop).
    fn long_or_loop(
        &self,
        dev: &mut impl BlockStore,
        cache: &mut FatCache,
        mut check: LoopCheck,
        mut c: u32,
        needed: u64,
    ) -> Result<ChainProblem, FatError> {
        loop {
            if check.looped(c) {
                return Ok(ChainProblem::Loop);
            }
            match self.next(dev, cache, c)? {
                Next::Cluster(n) => c = n,
                _ => return Ok(ChainProblem::Long { needed }),
            }
        }
    }

    /// Calls `visit` on each entry of directory `dir` (named `path` in
    /// errors) until it returns true or the directory ends.
    fn scan(
        &self,
        dev: &mut impl BlockStore,
        dir: Dir,
        path: &str,
        mut visit: impl FnMut(dir::Raw) -> bool,
    ) -> Result<(), FatError> {
        let fat32 = self.geo.kind == FatKind::Fat32;
        let mut parser = dir::Parser::default();
        let bps = self.geo.bps;
        let mut buf = vec![0u8; bps as usize];
        // Feeds one directory sector; true when done.
        let mut sector = |dev: &mut _, off: u64, entries: u64| -> Result<bool, FatError> {
            read_bytes(dev, off, &mut buf)?;
            for e in buf.chunks_exact(32).take(entries as usize) {
                match parser.feed(e, fat32) {
                    dir::Step::End => return Ok(true),
                    dir::Step::Skip => {}
                    dir::Step::Entry(raw) => {
                        if visit(raw) {
                            return Ok(true);
                        }
                    }
                }
            }
            Ok(false)
        };
        let first = match (dir, self.geo.root) {
            (Dir::Root, Root::Fixed { start, entries }) => {
                let per = bps / bpb::DIRENT;
                let mut left = entries;
                let mut off = self.base + start;
                while left > 0 {
                    if sector(dev, off, left.min(per))? {
                        return Ok(());
                    }
                    left = left.saturating_sub(per);
                    off += bps;
                }
                return Ok(());
            }
            (Dir::Root, Root::Cluster(c)) | (Dir::Cluster(c), _) => c,
        };
        let chain = |problem| FatError::Chain {
            path: path.to_string(),
            problem,
        };
        if !self.valid_cluster(first) {
            return Err(chain(ChainProblem::OutOfRange { cluster: first }));
        }
        let mut cache = self.fat_cache();
        let mut check = LoopCheck::new(first, self.geo.clusters);
        let mut c = first;
        let mut bytes = 0u64;
        loop {
            let start = self.cluster_offset(c);
            for s in 0..self.geo.cluster / bps {
                if sector(dev, start + s * bps, bps / bpb::DIRENT)? {
                    return Ok(());
                }
            }
            bytes += self.geo.cluster;
            c = match self.next(dev, &mut cache, c)? {
                Next::End => return Ok(()),
                Next::Cluster(n) => n,
                other => return Err(chain(broken(other, c))),
            };
            if check.looped(c) {
                return Err(chain(ChainProblem::Loop));
            }
            if bytes >= MAX_DIR_BYTES {
                return Err(FatError::DirTooLarge(path.to_string()));
            }
        }
    }

    /// Looks up `name` in `dir`.
    fn lookup(
        &self,
        dev: &mut impl BlockStore,
        dir: Dir,
        dir_path: &str,
        name: &str,
    ) -> Result<Option<dir::Raw>, FatError> {
        let mut found = None;
        self.scan(dev, dir, dir_path, |e| {
            if !e.dot && (same_name(&e.name, name) || same_name(&e.short, name)) {
                found = Some(e);
                true
            } else {
                false
            }
        })?;
        Ok(found)
    }

    /// Walks `path` (components separated by `/`, case-insensitive, long
    /// or short names, `.` and `..` understood, leading `/` optional).
    /// Returns the entry it names, or `None` for the root.
    fn resolve(&self, dev: &mut impl BlockStore, path: &str) -> Result<Option<dir::Raw>, FatError> {
        // The directories walked through, for `..`; the root is implicit.
        let mut stack: Vec<(dir::Raw, Dir)> = Vec::new();
        let mut walked = String::new();
        let mut cur: Option<dir::Raw> = None;
        for comp in path.split('/') {
            if comp.is_empty() || comp == "." {
                continue;
            }
            if let Some(e) = &cur {
                if e.attr & dir::ATTR_DIRECTORY == 0 {
                    return Err(FatError::NotADirectory(walked));
                }
            }
            walked.push('/');
            walked.push_str(comp);
            if comp == ".." {
                stack.pop();
                cur = stack.last().map(|(e, _)| e.clone());
                continue;
            }
            let dir = stack.last().map_or(Dir::Root, |&(_, d)| d);
            let parent = &walked[..walked.len() - comp.len() - 1];
            let e = self
                .lookup(dev, dir, if parent.is_empty() { "/" } else { parent }, comp)?
                .ok_or_else(|| FatError::NotFound(path.to_string()))?;
            if e.attr & dir::ATTR_DIRECTORY != 0 {
                if e.cluster == 0 {
                    // Only `..` may point at the root with 0.
                    return Err(FatError::Chain {
                        path: walked,
                        problem: ChainProblem::Empty,
                    });
                }
                stack.push((e.clone(), Dir::Cluster(e.cluster)));
            }
            cur = Some(e);
        }
        Ok(cur)
    }

    /// The files and subdirectories of directory `dir_path` (`/` or `""`
    /// for the root), without `.` and `..`, in disk order.
    pub fn list(
        &self,
        dev: &mut impl BlockStore,
        dir_path: &str,
    ) -> Result<Vec<DirEntry>, FatError> {
        let dir = match self.resolve(dev, dir_path)? {
            None => Dir::Root,
            Some(e) if e.attr & dir::ATTR_DIRECTORY != 0 => Dir::Cluster(e.cluster),
            Some(_) => return Err(FatError::NotADirectory(dir_path.to_string())),
        };
        let mut out = Vec::new();
        self.scan(dev, dir, dir_path, |e| {
            if !e.dot {
                let is_dir = e.attr & dir::ATTR_DIRECTORY != 0;
                out.push(DirEntry {
                    name: e.name,
                    short_name: e.short,
                    size: if is_dir { 0 } else { u64::from(e.size) },
                    is_dir,
                });
            }
            false
        })?;
        Ok(out)
    }

    /// Maps the file `path` to device sectors, checking its whole cluster
    /// chain against its size.
    pub fn open(&self, dev: &mut impl BlockStore, path: &str) -> Result<FileExtents, FatError> {
        match self.resolve(dev, path)? {
            None => Err(FatError::IsADirectory(path.to_string())),
            Some(e) if e.attr & dir::ATTR_DIRECTORY != 0 => {
                Err(FatError::IsADirectory(path.to_string()))
            }
            Some(e) => {
                let len = u64::from(e.size);
                let runs = self.file_runs(dev, path, e.cluster, len)?;
                Ok(FileExtents { len, runs })
            }
        }
    }
}
