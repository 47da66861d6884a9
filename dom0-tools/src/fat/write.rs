//! Changing the file system: creating, resizing and removing files
//! ([`Volume::create`], [`Volume::set_len`], [`Volume::remove`]) and
//! counting free space ([`Volume::free_bytes`]).
//!
//! Every operation first reads and checks everything it will touch —
//! the directory, the file's chain, one pass over the whole FAT and one
//! walk of the directory tree (so a chain shared with another file is
//! found, not freed) — and decides every cluster it will use; only then
//! does it write, in an order that leaves at worst lost clusters after a
//! crash, never a cross-link (see the module header in `mod.rs`).

use alloc::collections::btree_map::Entry;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use super::bpb::{Root, DIRENT};
use super::dir::{
    self, checksum, ATTR_DIRECTORY, ATTR_LONG_NAME, ATTR_LONG_NAME_MASK, END, FREE, KANJI_E5,
    LAST_LONG,
};
use super::name::{self, DosTime};
use super::{
    broken, read_bytes, same_name, write_bytes, ChainProblem, Dir, FatError, FatKind, FileExtents,
    LoopCheck, Next, Volume, MAX_DIR_BYTES,
};
use crate::blkback::BlockStore;

/// The archive attribute: set on every file written (spec section 6).
const ATTR_ARCHIVE: u8 = 0x20;
/// FSInfo signatures and fields (spec section 5).
const FSI_LEAD: u32 = 0x4161_5252;
const FSI_STRUC: u32 = 0x6141_7272;
const FSI_TRAIL: u32 = 0xAA55_0000;
const FSI_FREE_COUNT: usize = 488;
const FSI_NEXT_FREE: usize = 492;
/// Bytes of FAT read at a time when scanning it whole.
const SCAN_CHUNK: u64 = 65536;

/// One bit per cluster number.
struct Bitmap(Vec<u64>);

impl Bitmap {
    fn new(bits: u64) -> Bitmap {
        Bitmap(vec![0; bits.div_ceil(64) as usize])
    }
    fn get(&self, i: u32) -> bool {
        self.0
            .get(i as usize / 64)
            .is_some_and(|w| w >> (i % 64) & 1 != 0)
    }
    fn set(&mut self, i: u32, v: bool) {
        if let Some(w) = self.0.get_mut(i as usize / 64) {
            if v {
                *w |= 1 << (i % 64);
            } else {
                *w &= !(1 << (i % 64));
            }
        }
    }
}

/// What one pass over the FAT found.
struct FatMap {
    /// Clusters that may be allocated: free in the FAT, and (after
    /// [`FatMap::exclude`]) used by no chain or directory entry.
    free: Bitmap,
    /// Clusters some FAT entry points to.
    pointed: Bitmap,
    /// Clusters two or more FAT entries point to.
    shared: Bitmap,
    /// Free entries in the FAT, as FSInfo counts them.
    free_count: u64,
    /// Cluster numbers end here.
    limit: u32,
}

impl FatMap {
    /// Takes clusters that are free in the FAT but still referenced (a
    /// damaged FAT) out of the free set: allocating them would cross-link.
    fn exclude(&mut self, firsts: &[u32]) {
        for (f, p) in self.free.0.iter_mut().zip(&self.pointed.0) {
            *f &= !p;
        }
        for &c in firsts {
            self.free.set(c, false);
        }
    }

    fn usable(&self) -> u64 {
        self.free.0.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// The first free cluster in `from..to`.
    fn next_free(&self, from: u32, to: u32) -> Option<u32> {
        let mut c = from;
        while c < to {
            let w = self.free.0[c as usize / 64] >> (c % 64);
            if w == 0 {
                c = (c / 64 + 1) * 64;
                continue;
            }
            c += w.trailing_zeros();
            return (c < to).then_some(c);
        }
        None
    }

    /// Free clusters in a row from `c`, counting to at most `max`.
    fn run_len(&self, c: u32, max: u64, to: u32) -> u64 {
        let mut n = 0;
        while n < max && c as u64 + n < u64::from(to) && self.free.get(c + n as u32) {
            n += 1;
        }
        n
    }

    /// Takes `n` free clusters (the caller checked there are), as few
    /// runs as it can: the run at `hint` if long enough, else the first
    /// run long enough from `hint` on (wrapping), else the free clusters
    /// in order from `hint`.
    fn allocate(&mut self, n: u64, hint: u32) -> Vec<u32> {
        let hint = if hint >= 2 && hint < self.limit {
            hint
        } else {
            2
        };
        let mut out = Vec::new();
        let take = |m: &mut FatMap, out: &mut Vec<u32>, start: u32, k: u64| {
            for c in start..start + k as u32 {
                m.free.set(c, false);
                out.push(c);
            }
        };
        if n == 0 {
            return out;
        }
        for (from, to) in [(hint, self.limit), (2, hint)] {
            let mut c = from;
            while let Some(s) = self.next_free(c, to) {
                let len = self.run_len(s, n, to);
                if len == n {
                    take(self, &mut out, s, n);
                    return out;
                }
                c = s + len as u32;
            }
        }
        for (from, to) in [(hint, self.limit), (2, hint)] {
            let mut c = from;
            while let Some(s) = self.next_free(c, to) {
                let len = self.run_len(s, n - out.len() as u64, to);
                take(self, &mut out, s, len);
                if out.len() as u64 == n {
                    return out;
                }
                c = s + len as u32;
            }
        }
        out
    }
}

/// FAT sectors read for changing, by logical sector of the FAT.
#[derive(Default)]
struct FatTable {
    sectors: BTreeMap<u64, Vec<u8>>,
    dirty: BTreeSet<u64>,
}

/// A directory read whole, to find slots in and write entries back.
struct DirImage {
    /// Its path, for errors.
    path: String,
    /// The fixed root's byte offset on the device, or `None` for a chain.
    fixed: Option<u64>,
    /// Its clusters, in order (empty for the fixed root).
    clusters: Vec<u32>,
    data: Vec<u8>,
    /// The first slot with the end marker (or the slot count).
    end: usize,
}

impl DirImage {
    fn slots(&self) -> usize {
        self.data.len() / DIRENT as usize
    }
    fn slot(&mut self, i: usize) -> &mut [u8] {
        &mut self.data[i * 32..i * 32 + 32]
    }
}

/// The file a path names, and its directory.
struct Target {
    dir: DirImage,
    /// The last path component.
    leaf: String,
    /// Its entry, if it exists: (slot, entry).
    found: Option<(usize, dir::Raw)>,
    /// Every short name in the directory.
    taken: BTreeSet<[u8; 11]>,
}

/// A short entry for a new file.
fn new_entry(short: &[u8; 11], now: DosTime) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[..11].copy_from_slice(short);
    e[11] = ATTR_ARCHIVE;
    e[13] = now.hundredths;
    e[14..16].copy_from_slice(&now.time.to_le_bytes());
    e[16..18].copy_from_slice(&now.date.to_le_bytes());
    e
}

/// Points an entry at `cluster` with `size` bytes, modified (and
/// accessed) `now`, archive bit set.
fn set_entry(e: &mut [u8], cluster: u32, size: u32, now: DosTime) {
    e[11] |= ATTR_ARCHIVE;
    e[18..20].copy_from_slice(&now.date.to_le_bytes());
    e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    e[22..24].copy_from_slice(&now.time.to_le_bytes());
    e[24..26].copy_from_slice(&now.date.to_le_bytes());
    e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
}

/// The FAT entries that chain `clusters` in order, the last ending it.
fn chain_sets(clusters: &[u32], eoc: u32) -> impl Iterator<Item = (u32, u32)> + '_ {
    clusters
        .iter()
        .enumerate()
        .map(move |(i, &c)| (c, clusters.get(i + 1).copied().unwrap_or(eoc)))
}

fn file_size(path: &str, len: u64) -> Result<u32, FatError> {
    u32::try_from(len).map_err(|_| FatError::FileTooLarge {
        path: path.to_string(),
        len,
    })
}

impl Volume {
    /// The end-of-chain value this FAT writes.
    fn eoc(&self) -> u32 {
        match self.geo.kind {
            FatKind::Fat12 => 0xFFF,
            FatKind::Fat16 => 0xFFFF,
            FatKind::Fat32 => 0x0FFF_FFFF,
        }
    }

    /// Calls `f(cluster, entry)` for every data cluster's FAT entry (the
    /// high 4 bits of FAT32 entries dropped), reading the FAT in chunks.
    fn each_entry(
        &self,
        dev: &mut impl BlockStore,
        mut f: impl FnMut(u32, u32),
    ) -> Result<(), FatError> {
        let n = self.geo.clusters + 2;
        let start = self.base + self.geo.fat_start;
        // The boot sector check makes the FAT hold all n entries.
        match self.geo.kind {
            FatKind::Fat12 => {
                let mut buf = vec![0u8; (n * 3).div_ceil(2) as usize];
                read_bytes(dev, start, &mut buf)?;
                for c in 2..n {
                    let at = (c + c / 2) as usize;
                    let v = u32::from(u16::from_le_bytes([buf[at], buf[at + 1]]));
                    f(c as u32, if c % 2 == 0 { v & 0xFFF } else { v >> 4 });
                }
            }
            FatKind::Fat16 | FatKind::Fat32 => {
                let width = if self.geo.kind == FatKind::Fat16 {
                    2
                } else {
                    4
                };
                let per = SCAN_CHUNK / width;
                let mut buf = Vec::new();
                let mut first = 0;
                while first < n {
                    let count = per.min(n - first);
                    buf.resize((count * width) as usize, 0);
                    read_bytes(dev, start + first * width, &mut buf)?;
                    for (i, e) in buf.chunks_exact(width as usize).enumerate() {
                        let c = first + i as u64;
                        if c < 2 {
                            continue;
                        }
                        let v = if width == 2 {
                            u32::from(u16::from_le_bytes([e[0], e[1]]))
                        } else {
                            u32::from_le_bytes([e[0], e[1], e[2], e[3]]) & 0x0FFF_FFFF
                        };
                        f(c as u32, v);
                    }
                    first += count;
                }
            }
        }
        Ok(())
    }

    /// Bytes free: free clusters in the FAT times the cluster size.
    pub fn free_bytes(&self, dev: &mut impl BlockStore) -> Result<u64, FatError> {
        let mut free = 0u64;
        self.each_entry(dev, |_, v| free += u64::from(v == 0))?;
        Ok(free * self.geo.cluster)
    }

    /// One pass over the FAT: free clusters and who is pointed to.
    fn fat_map(&self, dev: &mut impl BlockStore) -> Result<FatMap, FatError> {
        let limit = self.geo.clusters + 2;
        let mut m = FatMap {
            free: Bitmap::new(limit),
            pointed: Bitmap::new(limit),
            shared: Bitmap::new(limit),
            free_count: 0,
            limit: limit as u32,
        };
        let eoc_from = match self.geo.kind {
            FatKind::Fat12 => 0xFF7,
            FatKind::Fat16 => 0xFFF7,
            FatKind::Fat32 => 0x0FFF_FFF7,
        };
        self.each_entry(dev, |c, v| {
            if v == 0 {
                m.free.set(c, true);
                m.free_count += 1;
            } else if v < eoc_from && self.valid_cluster(v) {
                if m.pointed.get(v) {
                    m.shared.set(v, true);
                }
                m.pointed.set(v, true);
            }
        })?;
        Ok(m)
    }

    /// The first cluster of every file and directory on the volume
    /// (FAT32's root included), sorted, from a walk of the whole tree.
    fn first_clusters(&self, dev: &mut impl BlockStore) -> Result<Vec<u32>, FatError> {
        let mut firsts = Vec::new();
        let mut seen = BTreeSet::new();
        if let Root::Cluster(c) = self.geo.root {
            firsts.push(c);
            seen.insert(c);
        }
        let mut todo = vec![(Dir::Root, String::new())];
        while let Some((d, path)) = todo.pop() {
            let mut subdirs = Vec::new();
            let shown = if path.is_empty() { "/" } else { &path };
            self.scan(dev, d, shown, |e| {
                if !e.dot && e.cluster != 0 {
                    firsts.push(e.cluster);
                    if e.attr & ATTR_DIRECTORY != 0 {
                        subdirs.push((e.cluster, e.name));
                    }
                }
                false
            })?;
            for (c, name) in subdirs {
                if self.valid_cluster(c) && seen.insert(c) {
                    todo.push((Dir::Cluster(c), alloc::format!("{path}/{name}")));
                }
            }
        }
        firsts.sort_unstable();
        Ok(firsts)
    }

    /// The whole chain of file `path` from `first`, checked against its
    /// `size` like [`Volume::open`] does (a size-0 file may still have
    /// clusters: they are returned, to be freed).
    fn chain(
        &self,
        dev: &mut impl BlockStore,
        path: &str,
        first: u32,
        size: u32,
    ) -> Result<Vec<u32>, FatError> {
        let err = |problem| FatError::Chain {
            path: path.to_string(),
            problem,
        };
        let needed = u64::from(size).div_ceil(self.geo.cluster);
        if first == 0 {
            return if needed == 0 {
                Ok(Vec::new())
            } else {
                Err(err(ChainProblem::Empty))
            };
        }
        if needed > self.geo.clusters {
            return Err(err(ChainProblem::TooBig { needed }));
        }
        if !self.valid_cluster(first) {
            return Err(err(ChainProblem::OutOfRange { cluster: first }));
        }
        let mut cache = self.fat_cache();
        let mut check = LoopCheck::new(first, self.geo.clusters);
        let mut out = vec![first];
        let mut c = first;
        loop {
            match self.next(dev, &mut cache, c)? {
                Next::End => break,
                Next::Cluster(n) => {
                    if check.looped(n) {
                        return Err(err(ChainProblem::Loop));
                    }
                    out.push(n);
                    c = n;
                }
                other => return Err(err(broken(other, c))),
            }
        }
        let have = out.len() as u64;
        if needed > 0 && have < needed {
            return Err(err(ChainProblem::Short {
                clusters: have,
                needed,
            }));
        }
        if needed > 0 && have > needed {
            return Err(err(ChainProblem::Long { needed }));
        }
        Ok(out)
    }

    /// Fails if any cluster of `chain` (a file's, starting at its entry's
    /// first cluster) is also reached from elsewhere: another FAT entry
    /// pointing into it, or another entry starting in it.
    fn check_shared(
        path: &str,
        chain: &[u32],
        map: &FatMap,
        firsts: &[u32],
    ) -> Result<(), FatError> {
        let starts =
            |c: u32| firsts.partition_point(|&f| f <= c) - firsts.partition_point(|&f| f < c);
        for (i, &c) in chain.iter().enumerate() {
            let shared = if i == 0 {
                map.pointed.get(c) || starts(c) > 1
            } else {
                map.shared.get(c) || starts(c) > 0
            };
            if shared {
                return Err(FatError::CrossLinked {
                    path: path.to_string(),
                    cluster: c,
                });
            }
        }
        Ok(())
    }

    /// One pass over the FAT and the directory tree; fails if the file's
    /// chain `old` or its directory's chain is shared with anything else.
    /// The map's free set holds only clusters safe to allocate.
    fn checked(
        &self,
        dev: &mut impl BlockStore,
        path: &str,
        old: &[u32],
        dir: &DirImage,
    ) -> Result<FatMap, FatError> {
        let mut map = self.fat_map(dev)?;
        let firsts = self.first_clusters(dev)?;
        Self::check_shared(path, old, &map, &firsts)?;
        Self::check_shared(&dir.path, &dir.clusters, &map, &firsts)?;
        map.exclude(&firsts);
        Ok(map)
    }

    /// FAT sector `s` (logical, from the FAT's start), read into `t` the
    /// first time.
    fn table_sector<'t>(
        &self,
        dev: &mut impl BlockStore,
        t: &'t mut FatTable,
        s: u64,
    ) -> Result<&'t mut Vec<u8>, FatError> {
        match t.sectors.entry(s) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => {
                let mut buf = vec![0u8; self.geo.bps as usize];
                let off = self.base + self.geo.fat_start + s * self.geo.bps;
                read_bytes(dev, off, &mut buf)?;
                Ok(e.insert(buf))
            }
        }
    }

    /// Replaces the `n` bytes of the FAT at byte `at` (little-endian,
    /// within one sector) by `f(old)`.
    fn table_update(
        &self,
        dev: &mut impl BlockStore,
        t: &mut FatTable,
        at: u64,
        n: usize,
        f: impl FnOnce(u32) -> u32,
    ) -> Result<(), FatError> {
        let s = at / self.geo.bps;
        let o = (at % self.geo.bps) as usize;
        let buf = self.table_sector(dev, t, s)?;
        let mut b = [0u8; 4];
        b[..n].copy_from_slice(&buf[o..o + n]);
        let v = f(u32::from_le_bytes(b)).to_le_bytes();
        buf[o..o + n].copy_from_slice(&v[..n]);
        t.dirty.insert(s);
        Ok(())
    }

    /// Sets the FAT entry of cluster `c` to `v` in `t` (FAT32's high 4
    /// bits kept).
    fn table_set(
        &self,
        dev: &mut impl BlockStore,
        t: &mut FatTable,
        c: u32,
        v: u32,
    ) -> Result<(), FatError> {
        let c = u64::from(c);
        match self.geo.kind {
            FatKind::Fat12 => {
                // 12 bits over two bytes that may sit in two sectors.
                let at = c + c / 2;
                let (lo, hi) = if c % 2 == 0 {
                    (v & 0xFF, 0xF0 | (v >> 8 & 0x0F))
                } else {
                    ((v << 4 & 0xF0) | 0x0F, v >> 4 & 0xFF)
                };
                let (keep_lo, keep_hi) = if c % 2 == 0 { (0, 0xF0) } else { (0x0F, 0) };
                self.table_update(dev, t, at, 1, |o| (o & keep_lo) | (lo & !keep_lo))?;
                self.table_update(dev, t, at + 1, 1, |o| (o & keep_hi) | (hi & !keep_hi))
            }
            // Entries are aligned: never across a sector.
            FatKind::Fat16 => self.table_update(dev, t, c * 2, 2, |_| v & 0xFFFF),
            FatKind::Fat32 => {
                self.table_update(dev, t, c * 4, 4, |o| (o & 0xF000_0000) | (v & 0x0FFF_FFFF))
            }
        }
    }

    /// Sets FAT entries, writes the sectors they are in to every live FAT
    /// copy, and makes them durable before returning.
    fn fat_stage(
        &self,
        dev: &mut impl BlockStore,
        sets: impl IntoIterator<Item = (u32, u32)>,
    ) -> Result<(), FatError> {
        let mut t = FatTable::default();
        for (c, v) in sets {
            self.table_set(dev, &mut t, c, v)?;
        }
        let copies: Vec<u64> = match self.geo.active_fat {
            Some(i) => vec![i],
            None => (0..self.geo.nfats).collect(),
        };
        // Runs of consecutive dirty sectors, one write per run and copy.
        let dirty: Vec<u64> = t.dirty.iter().copied().collect();
        let mut i = 0;
        while i < dirty.len() {
            let mut j = i + 1;
            while j < dirty.len() && dirty[j] == dirty[j - 1] + 1 {
                j += 1;
            }
            let mut buf = Vec::new();
            for s in &dirty[i..j] {
                buf.extend_from_slice(&t.sectors[s]);
            }
            for &k in &copies {
                let off = self.base
                    + self.geo.fats_start
                    + k * self.geo.fat_bytes
                    + dirty[i] * self.geo.bps;
                write_bytes(dev, off, &buf)?;
            }
            i = j;
        }
        Self::barrier(dev)
    }

    /// Makes every write so far durable before any later one (where the
    /// device has a volatile cache to flush).
    fn barrier(dev: &mut impl BlockStore) -> Result<(), FatError> {
        if dev.can_flush() {
            dev.flush().map_err(FatError::FlushFailed)?;
        }
        Ok(())
    }

    /// FAT32's FSInfo sector, if it has one with valid signatures: its
    /// byte offset and contents.
    fn fsinfo(&self, dev: &mut impl BlockStore) -> Result<Option<(u64, [u8; 512])>, FatError> {
        let Some(off) = self.geo.fsinfo else {
            return Ok(None);
        };
        let at = self.base + off;
        let mut s = [0u8; 512];
        read_bytes(dev, at, &mut s)?;
        let u = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
        Ok((u(0) == FSI_LEAD && u(484) == FSI_STRUC && u(508) == FSI_TRAIL).then_some((at, s)))
    }

    /// Where to start looking for free clusters.
    fn hint(&self, dev: &mut impl BlockStore) -> Result<u32, FatError> {
        if let Some((_, s)) = self.fsinfo(dev)? {
            let at = FSI_NEXT_FREE;
            let n = u32::from_le_bytes([s[at], s[at + 1], s[at + 2], s[at + 3]]);
            if self.valid_cluster(n) {
                return Ok(n);
            }
        }
        Ok(self.next_free)
    }

    /// Records the free count and (if something was allocated, ending at
    /// `last`) the next-free hint: in FSInfo on FAT32, in memory always;
    /// then flushes.
    fn note_free(
        &mut self,
        dev: &mut impl BlockStore,
        free: u64,
        last: Option<u32>,
    ) -> Result<(), FatError> {
        let next = last.map(|c| if self.valid_cluster(c + 1) { c + 1 } else { 2 });
        if let Some(n) = next {
            self.next_free = n;
        }
        if let Some((at, s)) = self.fsinfo(dev)? {
            // The free count and the hint after it, in one write.
            let mut f = [0u8; 8];
            f[..4].copy_from_slice(&(free as u32).to_le_bytes());
            f[4..].copy_from_slice(&s[FSI_NEXT_FREE..FSI_NEXT_FREE + 4]);
            if let Some(n) = next {
                f[4..].copy_from_slice(&n.to_le_bytes());
            }
            write_bytes(dev, at + FSI_FREE_COUNT as u64, &f)?;
        }
        // The operation is durable when it returns.
        Self::barrier(dev)
    }

    /// Reads directory `d` whole.
    fn load_dir(
        &self,
        dev: &mut impl BlockStore,
        d: Dir,
        path: &str,
    ) -> Result<DirImage, FatError> {
        let mut img = DirImage {
            path: path.to_string(),
            fixed: None,
            clusters: Vec::new(),
            data: Vec::new(),
            end: 0,
        };
        match (d, self.geo.root) {
            (Dir::Root, Root::Fixed { start, entries }) => {
                img.fixed = Some(self.base + start);
                img.data = vec![0; (entries * DIRENT) as usize];
                read_bytes(dev, self.base + start, &mut img.data)?;
            }
            (Dir::Root, Root::Cluster(first)) | (Dir::Cluster(first), _) => {
                let err = |problem| FatError::Chain {
                    path: path.to_string(),
                    problem,
                };
                if !self.valid_cluster(first) {
                    return Err(err(ChainProblem::OutOfRange { cluster: first }));
                }
                let cb = self.geo.cluster as usize;
                let mut cache = self.fat_cache();
                let mut check = LoopCheck::new(first, self.geo.clusters);
                let mut c = first;
                loop {
                    img.clusters.push(c);
                    let at = img.data.len();
                    img.data.resize(at + cb, 0);
                    read_bytes(dev, self.cluster_offset(c), &mut img.data[at..])?;
                    c = match self.next(dev, &mut cache, c)? {
                        Next::End => break,
                        Next::Cluster(n) => n,
                        other => return Err(err(broken(other, c))),
                    };
                    if check.looped(c) {
                        return Err(err(ChainProblem::Loop));
                    }
                    if img.data.len() as u64 >= MAX_DIR_BYTES {
                        return Err(FatError::DirTooLarge(path.to_string()));
                    }
                }
            }
        }
        img.end = (0..img.slots())
            .find(|&i| img.data[i * 32] == END)
            .unwrap_or(img.slots());
        Ok(img)
    }

    /// Byte offset on the device of slot `i` of `img`.
    fn slot_offset(&self, img: &DirImage, i: usize) -> u64 {
        let b = i as u64 * DIRENT;
        match img.fixed {
            Some(off) => off + b,
            None => {
                self.cluster_offset(img.clusters[(b / self.geo.cluster) as usize])
                    + b % self.geo.cluster
            }
        }
    }

    /// Writes slots `from..to` of `img` back.
    fn write_slots(
        &self,
        dev: &mut impl BlockStore,
        img: &DirImage,
        from: usize,
        to: usize,
    ) -> Result<(), FatError> {
        let mut i = from;
        while i < to {
            let start = self.slot_offset(img, i);
            let mut j = i + 1;
            while j < to && self.slot_offset(img, j) == start + (j - i) as u64 * DIRENT {
                j += 1;
            }
            write_bytes(dev, start, &img.data[i * 32..j * 32])?;
            i = j;
        }
        Ok(())
    }

    /// Finds the directory of `path` and the entry `path` names in it.
    fn locate(&self, dev: &mut impl BlockStore, path: &str) -> Result<Target, FatError> {
        let (parent, leaf) = match path.rfind('/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => ("", path),
        };
        name::check_long(leaf)?;
        let d = match self.resolve(dev, parent)? {
            None => Dir::Root,
            Some(e) if e.attr & ATTR_DIRECTORY != 0 => Dir::Cluster(e.cluster),
            Some(_) => return Err(FatError::NotADirectory(parent.to_string())),
        };
        let dir = self.load_dir(dev, d, if parent.is_empty() { "/" } else { parent })?;
        let fat32 = self.geo.kind == FatKind::Fat32;
        let mut parser = dir::Parser::default();
        let mut taken = BTreeSet::new();
        let mut found = None;
        for i in 0..dir.end {
            let e = &dir.data[i * 32..i * 32 + 32];
            if e[0] != FREE && e[11] & ATTR_LONG_NAME_MASK != ATTR_LONG_NAME {
                let mut s = [0u8; 11];
                s.copy_from_slice(&e[..11]);
                if s[0] == KANJI_E5 {
                    s[0] = FREE;
                }
                taken.insert(s);
            }
            if let dir::Step::Entry(raw) = parser.feed(e, fat32) {
                if found.is_none()
                    && !raw.dot
                    && (same_name(&raw.name, leaf) || same_name(&raw.short, leaf))
                {
                    found = Some((i, raw));
                }
            }
        }
        Ok(Target {
            dir,
            leaf: leaf.to_string(),
            found,
            taken,
        })
    }

    /// Where `k` new entries go in `img`: the first slot of the first run
    /// of `k` free slots, and how many clusters the directory must grow
    /// by for it.
    fn place(&self, img: &DirImage, k: usize) -> Result<(usize, u64), FatError> {
        let mut run = 0;
        for i in 0..img.slots() {
            if i >= img.end || img.data[i * 32] == FREE {
                run += 1;
                if run == k {
                    return Ok((i + 1 - k, 0));
                }
            } else {
                run = 0;
            }
        }
        if img.fixed.is_some() {
            return Err(FatError::RootFull {
                entries: img.slots() as u64,
            });
        }
        let per = (self.geo.cluster / DIRENT) as usize;
        let grow = (k - run).div_ceil(per);
        if ((img.slots() + grow * per) as u64) * DIRENT > MAX_DIR_BYTES {
            return Err(FatError::DirTooLarge(img.path.clone()));
        }
        Ok((img.slots() - run, grow as u64))
    }

    /// Creates the file `path` (the same path syntax [`Volume::open`]
    /// takes) with `len` bytes allocated, replacing a file of that name
    /// (its clusters freed; its entry, name included, reused); the
    /// parent directory must exist. Returns the new file's extents.
    ///
    /// On an error nothing on the disk has changed, unless the error is
    /// the device failing a write.
    pub fn create(
        &mut self,
        dev: &mut impl BlockStore,
        path: &str,
        len: u64,
        now: DosTime,
    ) -> Result<FileExtents, FatError> {
        let size = file_size(path, len)?;
        let mut t = self.locate(dev, path)?;
        let old = match &t.found {
            Some((_, e)) if e.attr & ATTR_DIRECTORY != 0 => {
                return Err(FatError::IsADirectory(path.to_string()))
            }
            Some((_, e)) => self.chain(dev, path, e.cluster, e.size)?,
            None => Vec::new(),
        };
        let mut map = self.checked(dev, path, &old, &t.dir)?;
        for &c in &old {
            map.free.set(c, true);
        }
        // The new entries and where they go.
        let mut entries = Vec::new();
        let (mut start, mut grow) = (0, 0);
        if t.found.is_none() {
            let short = match name::exact_short(&t.leaf) {
                Some(s) if !t.taken.contains(&s) => s,
                _ => {
                    let s = name::alias(&t.leaf, &t.taken).ok_or(FatError::BadName {
                        name: t.leaf.clone(),
                        why: "no free 8.3 alias left in its directory",
                    })?;
                    entries = name::long_entries(&t.leaf, &s);
                    s
                }
            };
            entries.push(new_entry(&short, now));
            (start, grow) = self.place(&t.dir, entries.len())?;
        }
        let want = len.div_ceil(self.geo.cluster);
        let usable = map.usable();
        if want + grow > usable {
            return Err(FatError::NoSpace {
                free: usable * self.geo.cluster,
                needed: (want + grow) * self.geo.cluster,
            });
        }
        let dir_last = t.dir.clusters.last().copied();
        let dir_new = map.allocate(grow, dir_last.map_or(2, |c| c + 1));
        let hint = self.hint(dev)?;
        let file = map.allocate(want, hint);
        // Nothing has been written yet; from here on, in crash-safe order.
        // 1. A replaced file's entry lets go of its old chain first.
        if let Some((slot, _)) = &t.found {
            set_entry(t.dir.slot(*slot), 0, 0, now);
            self.write_slots(dev, &t.dir, *slot, slot + 1)?;
            Self::barrier(dev)?;
        }
        // 2. New directory clusters are zeroed before they are linked.
        if !dir_new.is_empty() {
            let zero = vec![0u8; self.geo.cluster as usize];
            for &c in &dir_new {
                write_bytes(dev, self.cluster_offset(c), &zero)?;
            }
        }
        // 3. The old chain freed, the new chains made (nothing refers to
        //    any of them yet).
        let eoc = self.eoc();
        let frees = old.iter().map(|&c| (c, 0));
        self.fat_stage(
            dev,
            frees
                .chain(chain_sets(&file, eoc))
                .chain(chain_sets(&dir_new, eoc)),
        )?;
        // 4. The directory's chain takes in its new clusters.
        if let (Some(last), Some(&first)) = (dir_last, dir_new.first()) {
            self.fat_stage(dev, [(last, first)])?;
            t.dir.clusters.extend_from_slice(&dir_new);
            let n = t.dir.data.len() + self.geo.cluster as usize * dir_new.len();
            t.dir.data.resize(n, 0);
        }
        // 5. The entry points at the new chain.
        let first = file.first().copied().unwrap_or(0);
        match &t.found {
            Some((slot, _)) => {
                set_entry(t.dir.slot(*slot), first, size, now);
                self.write_slots(dev, &t.dir, *slot, slot + 1)?;
            }
            None => {
                let k = entries.len();
                for (i, e) in entries.iter().enumerate() {
                    t.dir.slot(start + i).copy_from_slice(e);
                }
                set_entry(t.dir.slot(start + k - 1), first, size, now);
                let mut to = start + k;
                // Entries written over the end marker: the slot after
                // them becomes the end marker.
                if to > t.dir.end && to < t.dir.slots() && t.dir.data[to * 32] != END {
                    t.dir.slot(to).fill(0);
                    to += 1;
                }
                self.write_slots(dev, &t.dir, start, to)?;
            }
        }
        let free = map.free_count + old.len() as u64 - want - grow;
        let last = file.last().or(dir_new.last()).copied();
        self.note_free(dev, free, last)?;
        let runs = self.file_runs(dev, path, first, len)?;
        Ok(FileExtents { len, runs })
    }

    /// Grows (allocating clusters) or shrinks (freeing them) the file
    /// `path` to `len` bytes; returns its new extents. New bytes are not
    /// zeroed.
    pub fn set_len(
        &mut self,
        dev: &mut impl BlockStore,
        path: &str,
        len: u64,
        now: DosTime,
    ) -> Result<FileExtents, FatError> {
        let size = file_size(path, len)?;
        let mut t = self.locate(dev, path)?;
        let (slot, e) = t
            .found
            .take()
            .ok_or_else(|| FatError::NotFound(path.to_string()))?;
        if e.attr & ATTR_DIRECTORY != 0 {
            return Err(FatError::IsADirectory(path.to_string()));
        }
        let old = self.chain(dev, path, e.cluster, e.size)?;
        let mut map = self.checked(dev, path, &old, &t.dir)?;
        let want = len.div_ceil(self.geo.cluster) as usize;
        let eoc = self.eoc();
        let first;
        if want > old.len() {
            let more = (want - old.len()) as u64;
            let usable = map.usable();
            if more > usable {
                return Err(FatError::NoSpace {
                    free: usable * self.geo.cluster,
                    needed: more * self.geo.cluster,
                });
            }
            let hint = match old.last() {
                Some(&c) => c + 1,
                None => self.hint(dev)?,
            };
            let new = map.allocate(more, hint);
            // The new clusters chained, then linked to the file, then
            // the entry's size.
            self.fat_stage(dev, chain_sets(&new, eoc))?;
            if let (Some(&last), Some(&n)) = (old.last(), new.first()) {
                self.fat_stage(dev, [(last, n)])?;
            }
            first = old.first().or(new.first()).copied().unwrap_or(0);
            set_entry(t.dir.slot(slot), first, size, now);
            self.write_slots(dev, &t.dir, slot, slot + 1)?;
            self.note_free(dev, map.free_count - more, new.last().copied())?;
        } else {
            // The entry's size first, then the chain cut, then the tail
            // freed.
            first = if want == 0 { 0 } else { old[0] };
            set_entry(t.dir.slot(slot), first, size, now);
            self.write_slots(dev, &t.dir, slot, slot + 1)?;
            Self::barrier(dev)?;
            if want < old.len() {
                if want > 0 {
                    self.fat_stage(dev, [(old[want - 1], eoc)])?;
                }
                self.fat_stage(dev, old[want..].iter().map(|&c| (c, 0)))?;
                let freed = (old.len() - want) as u64;
                self.note_free(dev, map.free_count + freed, None)?;
            }
        }
        let runs = self.file_runs(dev, path, first, len)?;
        Ok(FileExtents { len, runs })
    }

    /// Removes the file `path` (not a directory): its entry (and long
    /// name) is marked deleted, then its clusters are freed.
    pub fn remove(&mut self, dev: &mut impl BlockStore, path: &str) -> Result<(), FatError> {
        let mut t = self.locate(dev, path)?;
        let (slot, e) = t
            .found
            .take()
            .ok_or_else(|| FatError::NotFound(path.to_string()))?;
        if e.attr & ATTR_DIRECTORY != 0 {
            return Err(FatError::IsADirectory(path.to_string()));
        }
        let old = self.chain(dev, path, e.cluster, e.size)?;
        let map = self.checked(dev, path, &old, &t.dir)?;
        // The long-name entries before the short one that carry its
        // checksum go too.
        let sum = checksum(&t.dir.data[slot * 32..slot * 32 + 11]);
        let mut from = slot;
        while from > 0 {
            let p = &t.dir.data[(from - 1) * 32..from * 32];
            if p[0] == FREE || p[11] & ATTR_LONG_NAME_MASK != ATTR_LONG_NAME || p[13] != sum {
                break;
            }
            from -= 1;
            if p[0] & LAST_LONG != 0 {
                break;
            }
        }
        for i in from..=slot {
            t.dir.slot(i)[0] = FREE;
        }
        self.write_slots(dev, &t.dir, from, slot + 1)?;
        Self::barrier(dev)?;
        self.fat_stage(dev, old.iter().map(|&c| (c, 0)))?;
        self.note_free(dev, map.free_count + old.len() as u64, None)?;
        Ok(())
    }
}
