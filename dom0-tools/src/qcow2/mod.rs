//! # qcow2 — QEMU's qcow2 disk images, served as a disk
//!
//! [`Qcow2<S>`] reads and writes a qcow2 image (version 2 or 3, as
//! `qemu-img create -f qcow2` makes it) whose file's bytes are the store
//! `S` (a FAT [`FileStore`](crate::fat::FileStore), or a
//! [`MemDisk`](crate::blkback::MemDisk)). It trusts nothing in the file:
//! the header is validated once ([`Qcow2::open`]), every table entry is
//! checked against the file's size and alignment when used, and a bad
//! entry fails that request only. Nothing here panics on any file.
//!
//! ## What is supported
//! Standalone images: no backing file, encryption, external data file,
//! extended L2 entries or non-zlib compression; never dirty or marked
//! corrupt (run `qemu-img check -r all` first). Internal snapshots may be
//! present: their clusters are read, never written. Compressed clusters
//! are not decompressed: a request touching one fails ([`IoError::Io`]).
//! Discard is not supported.
//!
//! ## Write and allocation policy
//! The file cannot grow (a FAT file has a fixed size), so:
//! - writes to allocated clusters not shared with a snapshot (L2 entry's
//!   "copied" flag set) go in place — with `-o preallocation=metadata`
//!   (or `falloc`/`full`) every cluster is allocated;
//! - a preallocated "all zeros" cluster (v3) is written whole (zeros
//!   around the data), flushed, then its L2 entry loses the zero flag;
//! - an unallocated cluster gets a free cluster (refcount 0) of the
//!   existing file, found in the refcount blocks that already exist (so
//!   an image with room left at its end, e.g. `truncate -s +1G`, can
//!   fill up); an L2 table is allocated the same way if needed. Order:
//!   data (and the new L2 table), refcounts, flush, then the L2 entry or
//!   L1 entry. A crash at worst leaks a cluster (`qemu-img check`
//!   repairs leaks); no entry ever points at an unreferenced cluster.
//! - with no free cluster, the write fails ([`IoError::Io`]) and a
//!   warning says "qcow2 image full: create it with -o
//!   preallocation=metadata or larger". Refcount blocks and the refcount
//!   table are never allocated or moved.
//!
//! Format reference: QEMU's `docs/interop/qcow2.txt`.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::blkback::{BlockStore, IoError};

#[cfg(test)]
mod tests;

/// Bytes in a blkif sector: the unit of every sector number here.
const SECTOR: u64 = 512;
/// The file's first bytes (`QFI\xfb`, header field `magic`).
pub const MAGIC: [u8; 4] = *b"QFI\xfb";
/// Bytes of a version 2 header (fields up to `snapshots_offset`).
const V2_HEADER_LEN: u32 = 72;
/// Bytes of the file read for the header (`header_length` may not be
/// larger).
const HEADER_READ: u64 = 4096;
/// Bytes of the version 3 header up to `header_length` included.
const V3_HEADER_MIN: u32 = 104;
/// Smallest and largest `cluster_bits` (QEMU's limits: 512 B .. 2 MiB).
const MIN_CLUSTER_BITS: u32 = 9;
const MAX_CLUSTER_BITS: u32 = 21;
/// Largest L1 table, in bytes (QEMU's `QCOW_MAX_L1_SIZE`).
const MAX_L1_BYTES: u64 = 32 << 20;
/// Largest refcount table, in bytes (QEMU's `QCOW_MAX_REFTABLE_SIZE`).
const MAX_REFTABLE_BYTES: u64 = 8 << 20;
/// Most internal snapshots (QEMU's `QCOW_MAX_SNAPSHOTS`).
const MAX_SNAPSHOTS: u32 = 65536;
/// Largest `refcount_order` (64-bit refcounts).
const MAX_REFCOUNT_ORDER: u32 = 6;

/// Incompatible feature bits (header `incompatible_features`).
mod incompat {
    /// Refcounts may be wrong (lazy refcounts in use).
    pub const DIRTY: u64 = 1 << 0;
    /// QEMU found the image corrupt.
    pub const CORRUPT: u64 = 1 << 1;
    /// Guest data lives in an external file.
    pub const EXTERNAL_DATA: u64 = 1 << 2;
    /// The `compression_type` field is not zlib.
    pub const COMPRESSION: u64 = 1 << 3;
    /// L2 entries are 128 bits with subclusters.
    pub const EXTENDED_L2: u64 = 1 << 4;
    /// Every bit known here.
    pub const KNOWN: u64 = DIRTY | CORRUPT | EXTERNAL_DATA | COMPRESSION | EXTENDED_L2;
}

/// Header field offsets (qcow2.txt, "Header").
mod hdr {
    pub const VERSION: usize = 4;
    pub const BACKING_FILE_OFFSET: usize = 8;
    pub const CLUSTER_BITS: usize = 20;
    pub const SIZE: usize = 24;
    pub const CRYPT_METHOD: usize = 32;
    pub const L1_SIZE: usize = 36;
    pub const L1_TABLE_OFFSET: usize = 40;
    pub const REFCOUNT_TABLE_OFFSET: usize = 48;
    pub const REFCOUNT_TABLE_CLUSTERS: usize = 56;
    pub const NB_SNAPSHOTS: usize = 60;
    pub const SNAPSHOTS_OFFSET: usize = 64;
    pub const INCOMPATIBLE_FEATURES: usize = 72;
    pub const AUTOCLEAR_FEATURES: usize = 88;
    pub const REFCOUNT_ORDER: usize = 96;
    pub const HEADER_LENGTH: usize = 100;
    pub const COMPRESSION_TYPE: usize = 104;
}

/// Bits of L1 and L2 entries (qcow2.txt, "Cluster mapping").
mod entry {
    /// Host offset of the L2 table or data cluster (bits 9..55).
    pub const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
    /// Refcount is exactly one: may be written in place.
    pub const COPIED: u64 = 1 << 63;
    /// L2: a compressed cluster.
    pub const COMPRESSED: u64 = 1 << 62;
    /// L2 (v3): the cluster reads as zeros.
    pub const ZERO: u64 = 1 << 0;
    /// L1 bits that must be zero.
    pub const L1_RESERVED: u64 = 0x7f00_0000_0000_01ff;
    /// Standard L2 bits that must be zero.
    pub const L2_RESERVED: u64 = 0x3f00_0000_0000_01fe;
}

/// Why an image cannot be opened. `Display` is a one-line message for
/// the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Qcow2Error {
    /// The store failed reading at byte `offset` of the file.
    Io {
        /// Byte offset of the failed read.
        offset: u64,
        /// The store's error.
        error: IoError,
    },
    /// The file is shorter than a qcow2 header.
    TooShort {
        /// The file's size in bytes.
        len: u64,
    },
    /// The magic is not `QFI\xfb`.
    NotQcow2,
    /// A version other than 2 or 3.
    Version(u32),
    /// A header field has an impossible value.
    BadField {
        /// The field, as qcow2.txt names it.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// The image has a backing file.
    BackingFile,
    /// The image is encrypted (`crypt_method`).
    Encrypted(u32),
    /// The dirty bit is set (lazy refcounts were in use).
    Dirty,
    /// QEMU marked the image corrupt.
    Corrupt,
    /// Guest data lives in an external data file.
    ExternalData,
    /// Extended L2 entries (subclusters).
    ExtendedL2,
    /// A compression type other than zlib.
    Compression(u8),
    /// Incompatible feature bits nobody here knows.
    UnknownFeatures(u64),
    /// The L1 table has fewer entries than the virtual size needs.
    L1TooSmall {
        /// Entries in the header.
        entries: u32,
        /// Entries the size needs.
        needed: u64,
    },
    /// A table or cluster offset is not aligned to a cluster.
    Unaligned {
        /// What it is.
        what: &'static str,
        /// Its offset.
        offset: u64,
    },
    /// A table goes past the end of the file.
    BeyondFile {
        /// What it is.
        what: &'static str,
        /// Its offset.
        offset: u64,
        /// Its length in bytes.
        len: u64,
        /// The file's size.
        file: u64,
    },
    /// L1 entry `index` is malformed (reserved bits, misaligned or past
    /// the end of the file).
    BadL1Entry {
        /// Index in the L1 table.
        index: u64,
        /// The entry.
        entry: u64,
    },
    /// Clusters smaller than the store's sector size.
    SectorSize {
        /// Cluster size in bytes.
        cluster: u64,
        /// The store's sector size.
        sector: u32,
    },
}

impl fmt::Display for Qcow2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Qcow2Error::*;
        match self {
            Io { offset, error } => write!(f, "qcow2: read error at byte {offset}: {error:?}"),
            TooShort { len } => write!(f, "qcow2: file too short for a header ({len} bytes)"),
            NotQcow2 => f.write_str("qcow2: not a qcow2 image (no QFI\\xfb magic)"),
            Version(v) => write!(f, "qcow2: version {v} not supported (only 2 and 3)"),
            BadField { field, value } => write!(f, "qcow2: header field {field} = {value} is invalid"),
            BackingFile => f.write_str(
                "qcow2: image has a backing file; flatten it with qemu-img convert first",
            ),
            Encrypted(m) => write!(f, "qcow2: encrypted image (crypt_method {m}) not supported"),
            Dirty => f.write_str(
                "qcow2: image is dirty (lazy refcounts); run qemu-img check -r all first",
            ),
            Corrupt => f.write_str(
                "qcow2: image is marked corrupt; run qemu-img check -r all first",
            ),
            ExternalData => f.write_str("qcow2: external data files not supported"),
            ExtendedL2 => f.write_str("qcow2: extended L2 entries (subclusters) not supported"),
            Compression(t) => write!(f, "qcow2: compression type {t} not supported (only zlib)"),
            UnknownFeatures(b) => write!(f, "qcow2: unknown incompatible features {b:#x}"),
            L1TooSmall { entries, needed } => write!(
                f,
                "qcow2: L1 table has {entries} entries, the virtual size needs {needed}"
            ),
            Unaligned { what, offset } => {
                write!(f, "qcow2: {what} at byte {offset} is not cluster-aligned")
            }
            BeyondFile {
                what,
                offset,
                len,
                file,
            } => write!(
                f,
                "qcow2: {what} ({len} bytes at byte {offset}) goes past the end of the {file}-byte file"
            ),
            BadL1Entry { index, entry } => {
                write!(f, "qcow2: L1 entry {index} ({entry:#x}) is invalid")
            }
            SectorSize { cluster, sector } => write!(
                f,
                "qcow2: {cluster}-byte clusters are smaller than the disk's {sector}-byte sectors"
            ),
        }
    }
}

/// Whether `first_bytes` (the start of a file) look like a qcow2 image.
pub fn is_qcow2(first_bytes: &[u8]) -> bool {
    first_bytes.starts_with(&MAGIC)
}

/// Big-endian integers at `at` of `b` (0 if out of range).
fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}
fn be64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// The parsed, validated header.
#[derive(Clone, Debug)]
struct Header {
    version: u32,
    cluster_bits: u32,
    size: u64,
    l1_offset: u64,
    l1_bytes: u64,
    refcount_table_offset: u64,
    refcount_table_bytes: u64,
    refcount_order: u32,
    autoclear: u64,
}

/// What one guest cluster maps to (from its L2 entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mapping {
    /// No data: reads as zeros.
    Unallocated,
    /// Preallocated at `host` but reads as zeros (v3 zero flag).
    ZeroAt { host: u64, copied: bool },
    /// Data at `host`.
    Data { host: u64, copied: bool },
    /// A compressed cluster.
    Compressed,
}

/// Why a guest request failed, to warn about it once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Warn {
    Compressed = 0,
    BadEntry,
    Shared,
    Full,
}

/// A small write-through cache of metadata blocks (one store sector
/// each): L2 tables and refcount blocks.
struct MetaCache {
    block: usize,
    slots: Vec<(u64, Vec<u8>)>,
    next: usize,
}

/// Metadata blocks kept in [`MetaCache`].
const META_SLOTS: usize = 32;

impl MetaCache {
    fn find(&self, at: u64) -> Option<usize> {
        self.slots.iter().position(|(o, _)| *o == at)
    }
    /// Forgets blocks overlapping `start..end` of the file.
    fn invalidate(&mut self, start: u64, end: u64) {
        let bs = self.block as u64;
        self.slots
            .retain(|(o, _)| !(*o < end && o.saturating_add(bs) > start));
        self.next = self.next.min(self.slots.len());
    }
}

/// A qcow2 image in the file `S`, as a disk.
pub struct Qcow2<S: BlockStore> {
    inner: S,
    h: Header,
    /// The file's size in bytes (the store's, whole sectors).
    file_len: u64,
    cluster: u64,
    /// The L1 entries the virtual size needs.
    l1: Vec<u64>,
    cache: MetaCache,
    /// Where to start looking for a free cluster.
    free_hint: u64,
    /// Warnings already given (by [`Warn`] bit).
    warned: u32,
}

impl<S: BlockStore> Qcow2<S> {
    /// Validates the image in `inner` and serves it.
    pub fn open(mut inner: S) -> Result<Self, Qcow2Error> {
        let ss = inner.sector_size();
        let file_len = inner.sectors().saturating_mul(SECTOR);
        if file_len < u64::from(V2_HEADER_LEN) {
            return Err(Qcow2Error::TooShort { len: file_len });
        }
        // The header and its extensions: at most one 4 KiB page is read.
        let first = u64::from(ss).max(HEADER_READ).min(file_len);
        let mut b = vec![0u8; first as usize];
        read_raw(&mut inner, 0, &mut b).map_err(|error| Qcow2Error::Io { offset: 0, error })?;
        let h = parse_header(&b, file_len)?;
        let cluster = 1u64 << h.cluster_bits;
        if cluster < u64::from(ss) || !ss.is_power_of_two() || ss < SECTOR as u32 {
            return Err(Qcow2Error::SectorSize {
                cluster,
                sector: ss,
            });
        }
        if !h.size.is_multiple_of(u64::from(ss)) {
            return Err(Qcow2Error::BadField {
                field: "size",
                value: h.size,
            });
        }
        // L1 entries the size needs; parse_header checked they fit.
        let needed = l1_needed(h.size, h.cluster_bits).unwrap_or(0) as usize;
        let mut raw = vec![0u8; needed * 8];
        read_raw(&mut inner, h.l1_offset, &mut raw).map_err(|error| Qcow2Error::Io {
            offset: h.l1_offset,
            error,
        })?;
        let l1: Vec<u64> = raw
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        for (index, &e) in l1.iter().enumerate() {
            let off = e & entry::OFFSET_MASK;
            let bad = e & entry::L1_RESERVED != 0
                || !off.is_multiple_of(cluster)
                || off.checked_add(cluster).is_none_or(|end| end > file_len);
            if bad && e != 0 {
                return Err(Qcow2Error::BadL1Entry {
                    index: index as u64,
                    entry: e,
                });
            }
        }
        let block = u64::from(ss).max(SECTOR) as usize;
        Ok(Qcow2 {
            inner,
            h,
            file_len,
            cluster,
            l1,
            cache: MetaCache {
                block,
                slots: Vec::new(),
                next: 0,
            },
            free_hint: 0,
            warned: 0,
        })
    }

    /// The virtual disk's size in bytes.
    pub fn virtual_size(&self) -> u64 {
        self.h.size
    }

    /// The image's version (2 or 3).
    pub fn version(&self) -> u32 {
        self.h.version
    }

    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        self.cluster
    }

    /// The store underneath.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn warn(&mut self, w: Warn, what: fmt::Arguments<'_>) {
        let bit = 1u32 << (w as u32);
        if self.warned & bit == 0 {
            self.warned |= bit;
            log::warn!("{what}");
        }
    }

    // ----- metadata access -----

    /// The cache slot holding the block at file byte `at` (aligned).
    fn meta_block(&mut self, at: u64) -> Result<usize, IoError> {
        if let Some(i) = self.cache.find(at) {
            return Ok(i);
        }
        let mut b = vec![0u8; self.cache.block];
        read_raw(&mut self.inner, at, &mut b)?;
        let i = if self.cache.slots.len() < META_SLOTS {
            self.cache.slots.push((at, b));
            self.cache.slots.len() - 1
        } else {
            let i = self.cache.next % META_SLOTS;
            self.cache.next = (i + 1) % META_SLOTS;
            self.cache.slots[i] = (at, b);
            i
        };
        Ok(i)
    }

    /// The `width`-bit (1..=64) field number `index` of the table at
    /// file byte `table`: big-endian for whole bytes, LSB first inside a
    /// byte for narrower ones (QEMU's refcount layout).
    fn get_field(&mut self, table: u64, index: u64, width: u32) -> Result<u64, IoError> {
        let (at, byte, shift) = self.locate(table, index, width)?;
        let i = self.meta_block(at)?;
        let blk = &self.cache.slots[i].1;
        Ok(if width >= 8 {
            let n = (width / 8) as usize;
            blk.get(byte..byte + n)
                .ok_or(IoError::Io)?
                .iter()
                .fold(0u64, |v, &x| (v << 8) | u64::from(x))
        } else {
            (u64::from(*blk.get(byte).ok_or(IoError::Io)?) >> shift) & ((1 << width) - 1)
        })
    }

    /// Sets a field as [`Qcow2::get_field`] reads it, writing its block
    /// through to the store.
    fn set_field(&mut self, table: u64, index: u64, width: u32, v: u64) -> Result<(), IoError> {
        let (at, byte, shift) = self.locate(table, index, width)?;
        let i = self.meta_block(at)?;
        let blk = &mut self.cache.slots[i].1;
        if width >= 8 {
            let n = (width / 8) as usize;
            let dst = blk.get_mut(byte..byte + n).ok_or(IoError::Io)?;
            dst.copy_from_slice(&v.to_be_bytes()[8 - n..]);
        } else {
            let m = ((1u8 << width) - 1) << shift;
            let x = blk.get_mut(byte).ok_or(IoError::Io)?;
            *x = (*x & !m) | (((v as u8) << shift) & m);
        }
        let at = self.cache.slots[i].0;
        let r = self.inner.write(at / SECTOR, &self.cache.slots[i].1);
        if r.is_err() {
            self.cache.slots.swap_remove(i);
            self.cache.next = 0;
        }
        r
    }

    /// (block offset, byte in block, bit shift) of a field; the field
    /// must lie within the file.
    fn locate(&self, table: u64, index: u64, width: u32) -> Result<(u64, usize, u32), IoError> {
        let bit = index.checked_mul(u64::from(width)).ok_or(IoError::Io)?;
        let byte = table.checked_add(bit / 8).ok_or(IoError::Io)?;
        let end = byte
            .checked_add(u64::from(width.div_ceil(8)))
            .ok_or(IoError::Io)?;
        if end > self.file_len {
            return Err(IoError::Io);
        }
        let bs = self.cache.block as u64;
        Ok((byte / bs * bs, (byte % bs) as usize, (bit % 8) as u32))
    }

    // ----- mapping -----

    fn l2_entries(&self) -> u64 {
        self.cluster / 8
    }

    /// Checks a host cluster offset from a table entry.
    fn host_ok(&self, off: u64) -> bool {
        off.is_multiple_of(self.cluster) && off != 0 && off < self.file_len
    }

    /// What guest cluster `vc` maps to, and its L2 table (if any).
    fn lookup(&mut self, vc: u64) -> Result<(Mapping, Option<u64>), IoError> {
        let l1i = vc / self.l2_entries();
        let l1e = *self
            .l1
            .get(usize::try_from(l1i).map_err(|_| IoError::Io)?)
            .ok_or(IoError::Io)?;
        let l2 = l1e & entry::OFFSET_MASK;
        if l2 == 0 {
            return Ok((Mapping::Unallocated, None));
        }
        let e = self.get_field(l2, vc % self.l2_entries(), 64)?;
        if e & entry::COMPRESSED != 0 {
            return Ok((Mapping::Compressed, Some(l2)));
        }
        let host = e & entry::OFFSET_MASK;
        let zero = e & entry::ZERO != 0;
        let copied = e & entry::COPIED != 0;
        if e & entry::L2_RESERVED != 0 || (zero && self.h.version < 3) {
            return Err(self.bad_entry(vc, e));
        }
        if host != 0 && !self.host_ok(host) {
            return Err(self.bad_entry(vc, e));
        }
        Ok((
            match (host, zero) {
                (0, _) => Mapping::Unallocated,
                (h, true) => Mapping::ZeroAt { host: h, copied },
                (h, false) => Mapping::Data { host: h, copied },
            },
            Some(l2),
        ))
    }

    fn bad_entry(&mut self, vc: u64, e: u64) -> IoError {
        self.warn(
            Warn::BadEntry,
            format_args!("qcow2: L2 entry of cluster {vc} ({e:#x}) is invalid; image corrupt?"),
        );
        IoError::Io
    }

    /// Splits `len` bytes at guest byte `pos` into per-cluster pieces:
    /// calls `f(self, guest cluster, offset in cluster, buffer range)`.
    fn pieces(
        &mut self,
        sector: u64,
        len: usize,
        mut f: impl FnMut(&mut Self, u64, u64, core::ops::Range<usize>) -> Result<(), IoError>,
    ) -> Result<(), IoError> {
        let ss = u64::from(self.sector_size());
        let pos = sector.checked_mul(SECTOR).ok_or(IoError::Io)?;
        let end = pos.checked_add(len as u64).ok_or(IoError::Io)?;
        if end > self.h.size || !pos.is_multiple_of(ss) || !(len as u64).is_multiple_of(ss) {
            return Err(IoError::Io);
        }
        let mut done = 0usize;
        while done < len {
            let p = pos + done as u64;
            let vc = p / self.cluster;
            let off = p % self.cluster;
            let n = (self.cluster - off).min((len - done) as u64) as usize;
            f(self, vc, off, done..done + n)?;
            done += n;
        }
        Ok(())
    }

    // ----- allocation -----

    fn refcount_width(&self) -> u32 {
        1 << self.h.refcount_order
    }

    /// The refcount block covering host cluster `hc`, if it exists.
    fn refblock(&mut self, hc: u64) -> Result<Option<u64>, IoError> {
        let per_block = self.cluster * 8 / u64::from(self.refcount_width());
        let ti = hc / per_block;
        if ti >= self.h.refcount_table_bytes / 8 {
            return Ok(None);
        }
        let e = self.get_field(self.h.refcount_table_offset, ti, 64)?;
        let off = e & entry::OFFSET_MASK;
        if off == 0 {
            return Ok(None);
        }
        let end = off.saturating_add(self.cluster);
        if e & !entry::OFFSET_MASK != 0 || !self.host_ok(off) || end > self.file_len {
            self.warn(
                Warn::BadEntry,
                format_args!("qcow2: refcount table entry {ti} ({e:#x}) is invalid"),
            );
            return Err(IoError::Io);
        }
        Ok(Some(off))
    }

    /// Whether host cluster `hc` holds the header or a table found in it.
    fn reserved(&self, hc: u64) -> bool {
        let within = |start: u64, bytes: u64| {
            let first = start / self.cluster;
            hc >= first && hc < first + bytes.div_ceil(self.cluster).max(1)
        };
        hc == 0
            || within(self.h.l1_offset, self.h.l1_bytes)
            || within(self.h.refcount_table_offset, self.h.refcount_table_bytes)
    }

    /// A host cluster of the file with refcount 0 and a refcount block,
    /// or `None` if there is none.
    fn find_free(&mut self) -> Result<Option<u64>, IoError> {
        let clusters = self.file_len / self.cluster;
        let width = self.refcount_width();
        let per_block = self.cluster * 8 / u64::from(width);
        let mut hc = self.free_hint;
        while hc < clusters {
            let Some(rb) = self.refblock(hc)? else {
                // No refcount block: skip what it would cover.
                hc = (hc / per_block + 1) * per_block;
                continue;
            };
            if !self.reserved(hc) && self.get_field(rb, hc % per_block, width)? == 0 {
                self.free_hint = hc + 1;
                return Ok(Some(hc * self.cluster));
            }
            hc += 1;
        }
        self.free_hint = clusters;
        Ok(None)
    }

    fn set_refcount(&mut self, host: u64, v: u64) -> Result<(), IoError> {
        let hc = host / self.cluster;
        let width = self.refcount_width();
        let per_block = self.cluster * 8 / u64::from(width);
        let rb = self.refblock(hc)?.ok_or(IoError::Io)?;
        self.set_field(rb, hc % per_block, width, v)
    }

    /// Writes `data` at byte `off` of a fresh host cluster `host`, zeros
    /// around it.
    fn fill_cluster(&mut self, host: u64, off: u64, data: &[u8]) -> Result<(), IoError> {
        let end = off + data.len() as u64;
        self.write_data(host + off, data)?;
        let chunk = self.cluster.min(64 << 10);
        let zeros = vec![0u8; chunk as usize];
        for (mut a, b) in [(0, off), (end, self.cluster)] {
            while a < b {
                let n = (b - a).min(chunk);
                self.write_data(host + a, &zeros[..n as usize])?;
                a += n;
            }
        }
        Ok(())
    }

    /// Data write at file byte `at` (store-sector aligned).
    fn write_data(&mut self, at: u64, data: &[u8]) -> Result<(), IoError> {
        let end = at.checked_add(data.len() as u64).ok_or(IoError::Io)?;
        if end > self.file_len {
            return Err(IoError::Io);
        }
        self.cache.invalidate(at, end);
        self.inner.write(at / SECTOR, data)
    }

    fn full(&mut self) -> IoError {
        self.warn(
            Warn::Full,
            format_args!("qcow2 image full: create it with -o preallocation=metadata or larger"),
        );
        IoError::Io
    }

    /// Clears the autoclear feature bits before the first change, as
    /// qcow2.txt asks of a writer that does not know them.
    fn clear_autoclear(&mut self) -> Result<(), IoError> {
        if self.h.autoclear == 0 {
            return Ok(());
        }
        self.set_field(hdr::AUTOCLEAR_FEATURES as u64, 0, 64, 0)?;
        self.inner.flush()?;
        self.h.autoclear = 0;
        Ok(())
    }

    /// Writes `data` at `off` of guest cluster `vc`.
    fn write_piece(&mut self, vc: u64, off: u64, data: &[u8]) -> Result<(), IoError> {
        let (m, l2) = self.lookup(vc)?;
        match m {
            Mapping::Data { host, copied: true } => return self.write_data(host + off, data),
            Mapping::Compressed => {
                self.warn(
                    Warn::Compressed,
                    format_args!("qcow2: writing a compressed cluster is not supported"),
                );
                return Err(IoError::Io);
            }
            Mapping::Data { copied: false, .. } | Mapping::ZeroAt { copied: false, .. } => {
                self.warn(
                    Warn::Shared,
                    format_args!("qcow2: cluster {vc} is shared with a snapshot: not written"),
                );
                return Err(IoError::Io);
            }
            Mapping::ZeroAt { .. } | Mapping::Unallocated => {}
        }
        let l1i = (vc / self.l2_entries()) as usize;
        let l2i = vc % self.l2_entries();
        let l1e = self.l1.get(l1i).copied().ok_or(IoError::Io)?;
        if l2.is_some() && l1e & entry::COPIED == 0 {
            self.warn(
                Warn::Shared,
                format_args!("qcow2: an L2 table is shared with a snapshot: not written"),
            );
            return Err(IoError::Io);
        }
        self.clear_autoclear()?;
        if let Mapping::ZeroAt { host, .. } = m {
            // Preallocated: data and zeros, flush, then drop the flag.
            let l2 = l2.ok_or(IoError::Io)?;
            if host.saturating_add(self.cluster) > self.file_len {
                return Err(self.bad_entry(vc, host));
            }
            self.fill_cluster(host, off, data)?;
            self.inner.flush()?;
            return self.set_field(l2, l2i, 64, host | entry::COPIED);
        }
        let host = self.find_free()?.ok_or_else(|| self.full())?;
        match l2 {
            Some(l2) => {
                self.fill_cluster(host, off, data)?;
                self.set_refcount(host, 1)?;
                self.inner.flush()?;
                self.set_field(l2, l2i, 64, host | entry::COPIED)
            }
            None => {
                let Some(table) = self.find_free()? else {
                    self.free_hint = host / self.cluster;
                    return Err(self.full());
                };
                self.fill_cluster(host, off, data)?;
                let mut t = vec![0u8; self.cluster as usize];
                let at = (l2i * 8) as usize;
                t[at..at + 8].copy_from_slice(&(host | entry::COPIED).to_be_bytes());
                self.write_data(table, &t)?;
                self.set_refcount(host, 1)?;
                self.set_refcount(table, 1)?;
                self.inner.flush()?;
                let e = table | entry::COPIED;
                self.set_field(self.h.l1_offset, l1i as u64, 64, e)?;
                self.l1[l1i] = e;
                Ok(())
            }
        }
    }

    /// Reads `buf.len()` bytes at `off` of guest cluster `vc`.
    fn read_piece(&mut self, vc: u64, off: u64, buf: &mut [u8]) -> Result<(), IoError> {
        match self.lookup(vc)?.0 {
            Mapping::Unallocated | Mapping::ZeroAt { .. } => {
                buf.fill(0);
                Ok(())
            }
            Mapping::Data { host, .. } => {
                // The file may end inside its last cluster: zeros after.
                let at = host + off;
                let have = self.file_len.saturating_sub(at).min(buf.len() as u64) as usize;
                let (a, b) = buf.split_at_mut(have);
                b.fill(0);
                if a.is_empty() {
                    return Ok(());
                }
                self.inner.read(at / SECTOR, a)
            }
            Mapping::Compressed => {
                self.warn(
                    Warn::Compressed,
                    format_args!(
                        "qcow2: compressed clusters are not supported; convert the image without -c"
                    ),
                );
                Err(IoError::Io)
            }
        }
    }
}

/// Entries of L1 that `size` bytes need with `cluster_bits`.
fn l1_needed(size: u64, cluster_bits: u32) -> Option<u64> {
    let l2_bytes = 1u64.checked_shl(2 * cluster_bits - 3)?;
    Some(size.div_ceil(l2_bytes))
}

/// Checks that `len` bytes at `offset` are cluster-aligned and in the file.
fn table_ok(
    what: &'static str,
    offset: u64,
    len: u64,
    cluster: u64,
    file: u64,
) -> Result<(), Qcow2Error> {
    if !offset.is_multiple_of(cluster) {
        return Err(Qcow2Error::Unaligned { what, offset });
    }
    match offset.checked_add(len) {
        Some(end) if end <= file => Ok(()),
        _ => Err(Qcow2Error::BeyondFile {
            what,
            offset,
            len,
            file,
        }),
    }
}

/// Parses and validates the header in `b` (the file's first bytes).
fn parse_header(b: &[u8], file_len: u64) -> Result<Header, Qcow2Error> {
    use Qcow2Error::*;
    if !is_qcow2(b) {
        return Err(NotQcow2);
    }
    let bad = |field, value| BadField { field, value };
    let version = be32(b, hdr::VERSION);
    if version != 2 && version != 3 {
        return Err(Version(version));
    }
    let cluster_bits = be32(b, hdr::CLUSTER_BITS);
    if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
        return Err(bad("cluster_bits", cluster_bits.into()));
    }
    let cluster = 1u64 << cluster_bits;
    let (incompat, autoclear, refcount_order, compression) = if version == 3 {
        let header_len = be32(b, hdr::HEADER_LENGTH);
        if header_len < V3_HEADER_MIN
            || !header_len.is_multiple_of(8)
            || u64::from(header_len) > cluster
            || header_len as usize > b.len()
        {
            return Err(bad("header_length", header_len.into()));
        }
        let compression = if header_len > hdr::COMPRESSION_TYPE as u32 {
            b.get(hdr::COMPRESSION_TYPE).copied().unwrap_or(0)
        } else {
            0
        };
        (
            be64(b, hdr::INCOMPATIBLE_FEATURES),
            be64(b, hdr::AUTOCLEAR_FEATURES),
            be32(b, hdr::REFCOUNT_ORDER),
            compression,
        )
    } else {
        (0, 0, 4, 0)
    };
    if incompat & !incompat::KNOWN != 0 {
        return Err(UnknownFeatures(incompat & !incompat::KNOWN));
    }
    if incompat & incompat::DIRTY != 0 {
        return Err(Dirty);
    }
    if incompat & incompat::CORRUPT != 0 {
        return Err(Corrupt);
    }
    if incompat & incompat::EXTERNAL_DATA != 0 {
        return Err(ExternalData);
    }
    if incompat & incompat::EXTENDED_L2 != 0 {
        return Err(ExtendedL2);
    }
    if compression != 0 {
        return Err(Compression(compression));
    }
    if incompat & incompat::COMPRESSION != 0 {
        // The bit says "not zlib", the field says zlib.
        return Err(bad("incompatible_features", incompat));
    }
    if refcount_order > MAX_REFCOUNT_ORDER {
        return Err(bad("refcount_order", refcount_order.into()));
    }
    if be64(b, hdr::BACKING_FILE_OFFSET) != 0 {
        return Err(BackingFile);
    }
    let crypt = be32(b, hdr::CRYPT_METHOD);
    if crypt != 0 {
        return Err(Encrypted(crypt));
    }
    let size = be64(b, hdr::SIZE);
    if !size.is_multiple_of(SECTOR) {
        return Err(bad("size", size));
    }
    let l1_size = be32(b, hdr::L1_SIZE);
    let l1_offset = be64(b, hdr::L1_TABLE_OFFSET);
    let l1_bytes = u64::from(l1_size) * 8;
    if l1_bytes > MAX_L1_BYTES {
        return Err(bad("l1_size", l1_size.into()));
    }
    let needed = l1_needed(size, cluster_bits).ok_or(bad("size", size))?;
    if needed > u64::from(l1_size) {
        return Err(L1TooSmall {
            entries: l1_size,
            needed,
        });
    }
    if l1_size > 0 {
        table_ok("L1 table", l1_offset, l1_bytes, cluster, file_len)?;
    }
    let rt_offset = be64(b, hdr::REFCOUNT_TABLE_OFFSET);
    let rt_clusters = be32(b, hdr::REFCOUNT_TABLE_CLUSTERS);
    let rt_bytes = u64::from(rt_clusters) << cluster_bits;
    if rt_clusters == 0 || rt_bytes > MAX_REFTABLE_BYTES {
        return Err(bad("refcount_table_clusters", rt_clusters.into()));
    }
    table_ok("refcount table", rt_offset, rt_bytes, cluster, file_len)?;
    let nb_snapshots = be32(b, hdr::NB_SNAPSHOTS);
    if nb_snapshots > MAX_SNAPSHOTS {
        return Err(bad("nb_snapshots", nb_snapshots.into()));
    }
    if nb_snapshots > 0 {
        // At least a 40-byte fixed part per snapshot.
        let off = be64(b, hdr::SNAPSHOTS_OFFSET);
        table_ok(
            "snapshot table",
            off,
            u64::from(nb_snapshots) * 40,
            cluster,
            file_len,
        )?;
    }
    Ok(Header {
        version,
        cluster_bits,
        size,
        l1_offset,
        l1_bytes,
        refcount_table_offset: rt_offset,
        refcount_table_bytes: rt_bytes,
        refcount_order,
        autoclear,
    })
}

/// Reads `out.len()` bytes at file byte `at`, whatever the store's
/// sector size and alignment.
fn read_raw(s: &mut impl BlockStore, at: u64, out: &mut [u8]) -> Result<(), IoError> {
    if out.is_empty() {
        return Ok(());
    }
    let ss = u64::from(s.sector_size()).max(SECTOR);
    let end = at.checked_add(out.len() as u64).ok_or(IoError::Io)?;
    if end > s.sectors().saturating_mul(SECTOR) {
        return Err(IoError::Io);
    }
    let first = at / ss * ss;
    let last = end.div_ceil(ss) * ss;
    if first == at && last == end {
        return s.read(at / SECTOR, out);
    }
    let mut tmp = vec![0u8; usize::try_from(last - first).map_err(|_| IoError::Io)?];
    s.read(first / SECTOR, &mut tmp)?;
    let o = (at - first) as usize;
    out.copy_from_slice(&tmp[o..o + out.len()]);
    Ok(())
}

impl<S: BlockStore> BlockStore for Qcow2<S> {
    fn sectors(&self) -> u64 {
        self.h.size / SECTOR
    }
    fn sector_size(&self) -> u32 {
        self.inner.sector_size().max(SECTOR as u32)
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.pieces(sector, buf.len(), |q, vc, off, r| {
            q.read_piece(vc, off, &mut buf[r])
        })
    }
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), IoError> {
        self.pieces(sector, data.len(), |q, vc, off, r| {
            q.write_piece(vc, off, &data[r])
        })
    }
    fn flush(&mut self) -> Result<(), IoError> {
        self.inner.flush()
    }
    fn can_flush(&self) -> bool {
        self.inner.can_flush()
    }
}
