//! Tests of the FAT reader: hand-built FAT12/16 images (always run), and
//! images made by the host's `mkfs.fat`, `mcopy`, `mmd` and `sfdisk`
//! (skipped, saying so, where a tool is missing).

use std::format;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;
use std::{eprintln, fs};

use super::*;
use crate::blkback::MemDisk;
use crate::testutil::{run, Temp};

// ---------------------------------------------------------------------
// A hand-built FAT12/16 image.

/// A tiny FAT12/16 volume built byte by byte: 1 reserved sector, 2 FATs,
/// a fixed root directory.
struct Tiny {
    d: Vec<u8>,
    bps: usize,
    spc: usize,
    fatsz: usize,
    root_entries: usize,
    bits: u32,
}

const RSVD: usize = 1;
const NFATS: usize = 2;

impl Tiny {
    /// A volume of `clusters` clusters of `spc` sectors of `bps` bytes
    /// (the cluster count decides FAT12 or FAT16).
    fn new(clusters: usize, spc: usize, bps: usize) -> Tiny {
        let bits: u32 = if clusters < 4085 { 12 } else { 16 };
        assert!(clusters < 65525);
        let fat_bytes = ((clusters + 2) * bits as usize).div_ceil(8);
        let fatsz = fat_bytes.div_ceil(bps);
        let root_entries = 64.max(bps / 32);
        let root_sectors = (root_entries * 32).div_ceil(bps);
        let total = RSVD + NFATS * fatsz + root_sectors + clusters * spc;
        let mut t = Tiny {
            d: vec![0; total * bps],
            bps,
            spc,
            fatsz,
            root_entries,
            bits,
        };
        let b = &mut t.d;
        b[0..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
        b[3..11].copy_from_slice(b"MSWIN4.1");
        b[11..13].copy_from_slice(&(bps as u16).to_le_bytes());
        b[13] = spc as u8;
        b[14..16].copy_from_slice(&(RSVD as u16).to_le_bytes());
        b[16] = NFATS as u8;
        b[17..19].copy_from_slice(&(root_entries as u16).to_le_bytes());
        if total < 65536 {
            b[19..21].copy_from_slice(&(total as u16).to_le_bytes());
        } else {
            b[32..36].copy_from_slice(&(total as u32).to_le_bytes());
        }
        b[21] = 0xF8;
        b[22..24].copy_from_slice(&(fatsz as u16).to_le_bytes());
        b[510] = 0x55;
        b[511] = 0xAA;
        t.set_fat(0, 0xFFF8);
        t.set_fat(1, 0xFFFF);
        t
    }

    fn eoc(&self) -> u32 {
        if self.bits == 12 {
            0xFFF
        } else {
            0xFFFF
        }
    }

    fn set_fat(&mut self, n: u32, v: u32) {
        for f in 0..NFATS {
            let base = (RSVD + f * self.fatsz) * self.bps;
            if self.bits == 12 {
                let at = base + n as usize * 3 / 2;
                let old = u16::from_le_bytes([self.d[at], self.d[at + 1]]);
                let v = (v & 0xFFF) as u16;
                let new = if n.is_multiple_of(2) {
                    (old & 0xF000) | v
                } else {
                    (old & 0x000F) | (v << 4)
                };
                self.d[at..at + 2].copy_from_slice(&new.to_le_bytes());
            } else {
                let at = base + n as usize * 2;
                self.d[at..at + 2].copy_from_slice(&(v as u16).to_le_bytes());
            }
        }
    }

    fn root_offset(&self) -> usize {
        (RSVD + NFATS * self.fatsz) * self.bps
    }

    fn cluster_offset(&self, c: u32) -> usize {
        let root_sectors = (self.root_entries * 32).div_ceil(self.bps);
        self.root_offset() + root_sectors * self.bps + (c as usize - 2) * self.spc * self.bps
    }

    fn cluster_bytes(&self) -> usize {
        self.spc * self.bps
    }

    /// Writes `entries` at slot `slot` of the root directory.
    fn put_root(&mut self, slot: usize, entries: &[[u8; 32]]) {
        let at = self.root_offset() + slot * 32;
        for (i, e) in entries.iter().enumerate() {
            self.d[at + i * 32..at + i * 32 + 32].copy_from_slice(e);
        }
    }

    /// Writes `entries` at slot `slot` of the directory in cluster `c`.
    fn put_dir(&mut self, c: u32, slot: usize, entries: &[[u8; 32]]) {
        let at = self.cluster_offset(c) + slot * 32;
        for (i, e) in entries.iter().enumerate() {
            self.d[at + i * 32..at + i * 32 + 32].copy_from_slice(e);
        }
    }

    /// Chains `clusters` in order and writes `data` into them.
    fn put_file(&mut self, clusters: &[u32], data: &[u8]) {
        for (i, &c) in clusters.iter().enumerate() {
            let next = clusters.get(i + 1).copied().unwrap_or(self.eoc());
            self.set_fat(c, next);
            let cb = self.cluster_bytes();
            let part = &data[(i * cb).min(data.len())..((i + 1) * cb).min(data.len())];
            let at = self.cluster_offset(c);
            self.d[at..at + part.len()].copy_from_slice(part);
        }
    }

    fn disk(&self) -> MemDisk {
        let mut m = MemDisk::new((self.d.len() / 512) as u64);
        m.data.copy_from_slice(&self.d);
        m.durable.copy_from_slice(&self.d);
        m
    }
}

/// An 11-byte short name from `"NAME.EXT"`.
fn short(name: &str) -> [u8; 11] {
    let mut s = [b' '; 11];
    let (base, ext) = name.split_once('.').unwrap_or((name, ""));
    s[..base.len()].copy_from_slice(base.as_bytes());
    s[8..8 + ext.len()].copy_from_slice(ext.as_bytes());
    s
}

/// A short entry.
fn sfn(name: [u8; 11], attr: u8, cluster: u32, size: u32) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[..11].copy_from_slice(&name);
    e[11] = attr;
    e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
    e
}

/// The long entries (in disk order) and short entry for `long`.
fn lfn(long: &str, name: [u8; 11], attr: u8, cluster: u32, size: u32) -> Vec<[u8; 32]> {
    let mut units: Vec<u16> = long.encode_utf16().collect();
    let n = units.len().div_ceil(13);
    if units.len() < n * 13 {
        units.push(0);
    }
    units.resize(n * 13, 0xFFFF);
    let sum = dir::checksum(&name);
    let offs = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
    let mut out = Vec::new();
    for ord in (1..=n).rev() {
        let mut e = [0u8; 32];
        e[0] = ord as u8 | if ord == n { 0x40 } else { 0 };
        e[11] = 0x0F;
        e[13] = sum;
        for (i, &o) in offs.iter().enumerate() {
            e[o..o + 2].copy_from_slice(&units[(ord - 1) * 13 + i].to_le_bytes());
        }
        out.push(e);
    }
    out.push(sfn(name, attr, cluster, size));
    out
}

pub(super) fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    (0..len).map(|_| r.next() as u8).collect()
}

/// xorshift64*: deterministic test randomness.
pub(super) struct Rng(pub u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub(super) fn read_all(s: &mut impl BlockStore) -> Vec<u8> {
    let mut v = vec![0u8; (s.sectors() * 512) as usize];
    s.read(0, &mut v).unwrap();
    v
}

/// A FAT12 volume with a fragmented long-named file, a short-named file
/// and a subdirectory holding one more file.
fn sample() -> (Tiny, Vec<u8>) {
    let mut t = Tiny::new(200, 1, 512);
    let data = pattern(6 * 512, 7);
    // Fragmented on purpose: 5,6,7 then 20,21 then 10.
    t.put_file(&[5, 6, 7, 20, 21, 10], &data);
    let mut root = lfn(
        "Guest Disk Image.img",
        short("GUESTD~1.IMG"),
        0x20,
        5,
        data.len() as u32,
    );
    let mut vol_label = sfn(short("MYLABEL"), 0x08, 0, 0);
    vol_label[11] = 0x08;
    root.insert(0, vol_label);
    t.put_root(0, &root);
    let mut readme = sfn(short("README.TXT"), 0x20, 30, 5);
    readme[12] = 0x08 | 0x10; // NT: lower-case base and extension
    t.put_root(root.len(), &[readme]);
    t.put_file(&[30], b"hello");
    // Subdirectory "Images" in cluster 40 with "inner.img" at 41..=42.
    t.put_root(
        root.len() + 1,
        &lfn("Images", short("IMAGES"), 0x10, 40, 0)[..],
    );
    t.put_file(&[40], &[]);
    let inner = pattern(1024, 9);
    t.put_file(&[41, 42], &inner);
    let mut ents = vec![
        sfn(*b".          ", 0x10, 40, 0),
        sfn(*b"..         ", 0x10, 0, 0),
    ];
    ents.extend(lfn("inner.img", short("INNER.IMG"), 0x20, 41, 1024));
    t.put_dir(40, 0, &ents);
    (t, data)
}

// ---------------------------------------------------------------------
// Boot sector.

#[test]
fn fat_bpb_kinds() {
    for (clusters, kind) in [
        (100, FatKind::Fat12),
        (4084, FatKind::Fat12),
        (4085, FatKind::Fat16),
    ] {
        let t = Tiny::new(clusters, 1, 512);
        let mut d = t.disk();
        let v = Volume::mount(&mut d, 0).unwrap();
        assert_eq!(v.kind(), kind, "{clusters} clusters");
        assert_eq!(v.clusters(), clusters as u64);
        assert_eq!(v.sectors(), d.sectors());
        assert_eq!(v.cluster_bytes(), 512);
    }
    let t = Tiny::new(300, 4, 2048);
    let v = Volume::mount(&mut t.disk(), 0).unwrap();
    assert_eq!((v.kind(), v.cluster_bytes()), (FatKind::Fat12, 8192));
}

#[test]
fn fat_bpb_hostile_values() {
    let t = Tiny::new(100, 1, 512);
    let cases: &[(&[(usize, u8)], &str)] = &[
        (&[(510, 0)], "not a FAT file system (no boot signature)"),
        (
            &[(0, 0x33)],
            "not a FAT file system (no jump instruction before the BPB)",
        ),
        (&[(11, 0), (12, 0)], "bytes per sector = 0"),
        (&[(11, 0xBC), (12, 0x02)], "bytes per sector = 700"),
        (&[(11, 0), (12, 0x20)], "bytes per sector = 8192"),
        (&[(11, 0), (12, 0x01)], "bytes per sector = 256"),
        (&[(13, 0)], "sectors per cluster = 0"),
        (&[(13, 3)], "sectors per cluster = 3"),
        (&[(14, 0)], "reserved sectors = 0"),
        (&[(16, 0)], "number of FATs = 0"),
        (&[(17, 0)], "root directory entries = 0"),
        (&[(21, 0x12)], "media descriptor = 18"),
        (&[(22, 0)], "sectors per FAT = 0"),
        (&[(19, 4), (20, 0)], "total sectors = 4"),
        (&[(19, 0), (20, 0)], "total sectors = 0"),
        // 300 sectors: more than the device, though the FAT could hold it.
        (
            &[(19, 44), (20, 1)],
            "FAT file system needs 300 sectors but only 107 are there",
        ),
        (&[(16, 200)], "total sectors"),
    ];
    for (patch, want) in cases {
        let mut d = t.disk();
        for &(at, v) in *patch {
            d.data[at] = v;
        }
        let e = Volume::mount(&mut d, 0).unwrap_err().to_string();
        assert!(e.contains(want), "patch {patch:?}: {e}");
    }
    // A FAT too small for the clusters.
    let mut t2 = Tiny::new(1000, 1, 512);
    // Grow the data area, keeping the FAT at 3 sectors (enough for 1000).
    let total = t2.d.len() / 512 + 2000;
    t2.d.resize(total * 512, 0);
    t2.d[19..21].copy_from_slice(&(total as u16).to_le_bytes());
    let e = Volume::mount(&mut t2.disk(), 0).unwrap_err();
    assert!(
        matches!(
            e,
            FatError::BadField {
                field: "sectors per FAT",
                ..
            }
        ),
        "{e}"
    );
    // The device is too small for the volume.
    let mut d = t.disk();
    d.data.truncate(d.data.len() - 512);
    d.durable.truncate(d.data.len());
    assert!(matches!(
        Volume::mount(&mut d, 0),
        Err(FatError::TooLarge { .. })
    ));
    // Mounting past the end of the device.
    let mut d = t.disk();
    assert!(matches!(
        Volume::mount(&mut d, u64::MAX),
        Err(FatError::BeyondDevice { .. })
    ));
    assert!(matches!(
        Volume::mount(&mut d, 1 << 60),
        Err(FatError::BeyondDevice { .. })
    ));
}

#[test]
fn fat_bpb_fat32_fields() {
    // A FAT32 boot sector with a bad root cluster, version and FAT16 fields.
    let clusters = 70000u32;
    let fatsz = (clusters + 2).div_ceil(128);
    let total = 32 + 2 * fatsz + clusters;
    let mut b = [0u8; 512];
    b[0..3].copy_from_slice(&[0xEB, 0x58, 0x90]);
    b[11..13].copy_from_slice(&512u16.to_le_bytes());
    b[13] = 1;
    b[14] = 32;
    b[16] = 2;
    b[21] = 0xF8;
    b[32..36].copy_from_slice(&total.to_le_bytes());
    b[36..40].copy_from_slice(&fatsz.to_le_bytes());
    b[44..48].copy_from_slice(&2u32.to_le_bytes());
    b[510] = 0x55;
    b[511] = 0xAA;
    let g = bpb::parse(&b).unwrap();
    assert_eq!(g.kind, FatKind::Fat32);
    assert_eq!(g.clusters, u64::from(clusters));
    assert_eq!(g.root, bpb::Root::Cluster(2));
    for (at, v, want) in [
        (44, 1u8, "root directory cluster = 1"),
        (47, 0x10, "root directory cluster"),
        (42, 1, "FAT32 version = 1"),
        (17, 16, "root directory entries (FAT32) = 16"),
        (40, 0x83, "active FAT = 3"),
    ] {
        let mut c = b;
        c[at] = v;
        let e = bpb::parse(&c).unwrap_err().to_string();
        assert!(e.contains(want), "{at}: {e}");
    }
    // Mirroring off, second FAT active.
    let mut c = b;
    c[40] = 0x81;
    let g2 = bpb::parse(&c).unwrap();
    assert_eq!(g2.fat_start, g.fat_start + u64::from(fatsz) * 512);
}

// ---------------------------------------------------------------------
// Directories and names.

#[test]
fn fat_list_long_and_short_names() {
    let (t, data) = sample();
    let mut d = t.disk();
    let v = Volume::mount(&mut d, 0).unwrap();
    let l = v.list(&mut d, "/").unwrap();
    let names: Vec<(&str, &str, u64, bool)> = l
        .iter()
        .map(|e| (e.name.as_str(), e.short_name.as_str(), e.size, e.is_dir))
        .collect();
    assert_eq!(
        names,
        [
            (
                "Guest Disk Image.img",
                "GUESTD~1.IMG",
                data.len() as u64,
                false
            ),
            ("readme.txt", "readme.txt", 5, false),
            ("Images", "IMAGES", 0, true),
        ]
    );
    let sub = v.list(&mut d, "images").unwrap();
    assert_eq!(sub.len(), 1);
    assert_eq!(sub[0].name, "inner.img");
    assert_eq!(v.list(&mut d, "").unwrap(), l);
    assert_eq!(v.list(&mut d, "/Images/..").unwrap(), l);
}

#[test]
fn fat_lfn_checksum_and_order() {
    let (mut t, _) = sample();
    // Break the checksum of the second long entry: the name falls back.
    let root = t.root_offset();
    let at = root + 2 * 32 + 13; // entry 0 is the label, 1..=2 long parts
    t.d[at] ^= 1;
    let mut d = t.disk();
    let v = Volume::mount(&mut d, 0).unwrap();
    assert_eq!(v.list(&mut d, "/").unwrap()[0].name, "GUESTD~1.IMG");
    // Swap the long entries: out of order, also ignored.
    let (mut t, _) = sample();
    let (a, b) = (root + 32, root + 64);
    let first: Vec<u8> = t.d[a..a + 32].to_vec();
    t.d.copy_within(b..b + 32, a);
    t.d[b..b + 32].copy_from_slice(&first);
    let mut d = t.disk();
    assert_eq!(v.list(&mut d, "/").unwrap()[0].name, "GUESTD~1.IMG");
    // A long name with non-ASCII characters and exactly 13 units.
    let mut t = Tiny::new(50, 1, 512);
    t.put_root(0, &lfn("Ünïcødé-13chr", short("UNICOD~1"), 0x20, 0, 0));
    t.put_root(2, &lfn("abcdefghijklm", short("ABCDEF~1"), 0x20, 0, 0));
    let mut d = t.disk();
    let v = Volume::mount(&mut d, 0).unwrap();
    let l = v.list(&mut d, "/").unwrap();
    assert_eq!(l[0].name, "Ünïcødé-13chr");
    assert_eq!(l[1].name, "abcdefghijklm");
    assert!(v.open(&mut d, "/üNÏCØDÉ-13CHR").is_ok());
    // Deleted entries and the end marker.
    let ro = t.root_offset();
    t.d[ro + 3 * 32] = 0xE5; // the second short entry: its long name is an orphan
    let mut d = t.disk();
    assert_eq!(v.list(&mut d, "/").unwrap().len(), 1);
    t.d[ro] = 0;
    let mut d = t.disk();
    assert!(v.list(&mut d, "/").unwrap().is_empty());
}

#[test]
fn fat_open_paths() {
    let (t, data) = sample();
    let mut d = t.disk();
    let v = Volume::mount(&mut d, 0).unwrap();
    let by_long = v.open(&mut d, "/guest disk IMAGE.img").unwrap();
    let by_short = v.open(&mut d, "GUESTD~1.IMG").unwrap();
    assert_eq!(by_long, by_short);
    assert_eq!(by_long.len, data.len() as u64);
    assert_eq!(
        by_long.runs,
        [
            Run {
                file_sector: 0,
                dev_sector: t.cluster_offset(5) as u64 / 512,
                sectors: 3
            },
            Run {
                file_sector: 3,
                dev_sector: t.cluster_offset(20) as u64 / 512,
                sectors: 2
            },
            Run {
                file_sector: 5,
                dev_sector: t.cluster_offset(10) as u64 / 512,
                sectors: 1
            },
        ]
    );
    let inner = v.open(&mut d, "//Images/./INNER.IMG").unwrap();
    assert_eq!(inner.runs.len(), 1);
    assert_eq!(inner.runs[0].sectors, 2);
    let msg = |p: &str| v.open(&mut t.disk(), p).unwrap_err().to_string();
    assert_eq!(
        msg("/images/guest.img"),
        "/images/guest.img: No such file or directory"
    );
    assert_eq!(msg("/readme.txt/x"), "/readme.txt: Not a directory");
    assert_eq!(msg("/Images"), "/Images: Is a directory");
    assert_eq!(msg("/"), "/: Is a directory");
    assert_eq!(msg("/MYLABEL"), "/MYLABEL: No such file or directory");
    // FileStore reads the fragmented file back.
    let mut fs = FileStore::new(t.disk(), by_long).unwrap();
    assert_eq!(read_all(&mut fs), data);
    // A batch splits I/Os across runs and fails only the bad one.
    use crate::blkback::StoreIo;
    let (mut a, mut b) = (vec![0u8; 4 * 512], vec![0u8; 2 * 512]);
    let new = pattern(3 * 512, 9);
    let mut bad = [0u8; 512];
    let res = fs.batch(&mut [
        StoreIo::Read(1, &mut a),
        StoreIo::Read(6, &mut bad),
        StoreIo::Read(4, &mut b),
    ]);
    assert_eq!(res, [Ok(()), Err(crate::blkback::IoError::Io), Ok(())]);
    assert_eq!(a, data[512..5 * 512]);
    assert_eq!(b, data[4 * 512..]);
    let res = fs.batch(&mut [StoreIo::Write(2, &new)]);
    assert_eq!(res, [Ok(())]);
    let mut want = data.clone();
    want[2 * 512..5 * 512].copy_from_slice(&new);
    assert_eq!(read_all(&mut fs), want);
}

#[test]
fn fat_directory_chain_loops() {
    let (mut t, _) = sample();
    t.set_fat(40, 40);
    // No end marker in the cluster, so the scan follows the chain.
    for slot in 4..16 {
        t.put_dir(40, slot, &[[0xE5; 32]]);
    }
    let mut d = t.disk();
    let v = Volume::mount(&mut d, 0).unwrap();
    let e = v.open(&mut d, "/images/nothere").unwrap_err();
    assert_eq!(e.to_string(), "cluster chain of /images loops");
    // A directory claiming cluster 0 or one past the end.
    let (mut t, _) = sample();
    let at = t.root_offset() + 6 * 32 + 26; // the IMAGES short entry
    t.d[at..at + 2].copy_from_slice(&0u16.to_le_bytes());
    let mut d = t.disk();
    let e = v.list(&mut d, "/images").unwrap_err().to_string();
    assert_eq!(
        e,
        "cluster chain of /images is empty (first cluster 0) but needs clusters"
    );
    t.d[at..at + 2].copy_from_slice(&5000u16.to_le_bytes());
    let mut d = t.disk();
    let e = v.list(&mut d, "/images").unwrap_err().to_string();
    assert_eq!(
        e,
        "cluster chain of /images points to cluster 5000, outside the file system"
    );
}

// ---------------------------------------------------------------------
// Cluster chains.

/// A volume with one file `F.IMG` of `size` bytes starting at cluster 5,
/// its chain set by `chain`.
fn chained(size: u32, chain: &[(u32, u32)]) -> Result<FileExtents, FatError> {
    let mut t = Tiny::new(100, 1, 512);
    t.put_root(0, &[sfn(short("F.IMG"), 0x20, 5, size)]);
    for &(c, v) in chain {
        t.set_fat(c, v);
    }
    let mut d = t.disk();
    let v = Volume::mount(&mut d, 0).unwrap();
    v.open(&mut d, "/f.img")
}

#[test]
fn fat_chain_errors() {
    let eoc = 0xFFF;
    let err = |size, chain: &[(u32, u32)]| chained(size, chain).unwrap_err().to_string();
    assert!(chained(1024, &[(5, 6), (6, eoc)]).is_ok());
    assert!(chained(0, &[]).unwrap().runs.is_empty());
    assert_eq!(
        err(2048, &[(5, 6), (6, 5)]),
        "cluster chain of /f.img loops"
    );
    assert_eq!(
        err(1024, &[(5, 6), (6, 5)]),
        "cluster chain of /f.img loops"
    );
    assert_eq!(err(512, &[(5, 5)]), "cluster chain of /f.img loops");
    assert_eq!(
        err(100 * 512, &[(5, 6), (6, 7), (7, 8), (8, 6)]),
        "cluster chain of /f.img loops"
    );
    assert_eq!(
        err(2048, &[(5, 6), (6, eoc)]),
        "cluster chain of /f.img ends after 2 cluster(s) but its size needs 4"
    );
    assert_eq!(
        err(1024, &[(5, 6), (6, 7), (7, eoc)]),
        "cluster chain of /f.img is longer than its size (2 cluster(s))"
    );
    assert_eq!(
        err(2048, &[(5, 6), (6, 0xFF7)]),
        "cluster chain of /f.img runs into a bad cluster after cluster 6"
    );
    assert_eq!(
        err(2048, &[(5, 6), (6, 0)]),
        "cluster chain of /f.img runs into a free cluster after cluster 6"
    );
    assert_eq!(
        err(2048, &[(5, 1)]),
        "cluster chain of /f.img runs into a free cluster after cluster 5"
    );
    assert_eq!(
        err(2048, &[(5, 102)]),
        "cluster chain of /f.img points to cluster 102, outside the file system"
    );
    assert_eq!(
        err(200 * 512, &[]),
        "cluster chain of /f.img cannot exist: its size needs 200 clusters, more than the file system has"
    );
    // A file with a size but no cluster.
    let mut t = Tiny::new(100, 1, 512);
    t.put_root(0, &[sfn(short("F.IMG"), 0x20, 0, 512)]);
    let mut d = t.disk();
    let v = Volume::mount(&mut d, 0).unwrap();
    assert_eq!(
        v.open(&mut d, "f.img").unwrap_err().to_string(),
        "cluster chain of f.img is empty (first cluster 0) but needs clusters"
    );
}

#[test]
fn fat16_long_chain_and_partial_last_cluster() {
    // FAT16, 2 KiB clusters, a 100-cluster file in two halves, with a
    // 1536-byte tail.
    let mut t = Tiny::new(5000, 4, 512);
    assert_eq!(t.bits, 16);
    let mut clusters: Vec<u32> = (1000..1050).collect();
    clusters.extend(3000..3050);
    let len = 99 * 2048 + 1536;
    let data = pattern(len, 3);
    t.put_file(&clusters, &data);
    t.put_root(
        0,
        &lfn(
            "a long name for a long file.img",
            short("ALONGN~1.IMG"),
            0x20,
            1000,
            len as u32,
        ),
    );
    let mut d = t.disk();
    let v = Volume::mount(&mut d, 0).unwrap();
    assert_eq!(v.kind(), FatKind::Fat16);
    let ext = v.open(&mut d, "/A LONG NAME FOR A LONG FILE.IMG").unwrap();
    assert_eq!(ext.runs.len(), 2);
    assert_eq!(ext.runs[1].file_sector, 200);
    assert_eq!(ext.runs[1].sectors, 49 * 4 + 3);
    let mut fs = FileStore::new(d, ext).unwrap();
    assert_eq!(read_all(&mut fs), data);
}

// ---------------------------------------------------------------------
// MBR.

/// Puts an MBR with `parts` (type, start, len) in front of a copy of `t`
/// at sector `start` of a disk of `total` sectors.
fn mbr_disk(t: &Tiny, start: u64, total: u64, parts: &[(u8, u32, u32)]) -> MemDisk {
    let mut d = MemDisk::new(total);
    let at = start as usize * 512;
    d.data[at..at + t.d.len()].copy_from_slice(&t.d);
    for (i, &(kind, s, n)) in parts.iter().enumerate() {
        let e = 446 + i * 16;
        d.data[e + 4] = kind;
        d.data[e + 8..e + 12].copy_from_slice(&s.to_le_bytes());
        d.data[e + 12..e + 16].copy_from_slice(&n.to_le_bytes());
    }
    d.data[510] = 0x55;
    d.data[511] = 0xAA;
    d
}

#[test]
fn fat_mbr_partitions() {
    let (t, data) = sample();
    let n = (t.d.len() / 512) as u32;
    let mut d = mbr_disk(
        &t,
        2048,
        2048 + u64::from(n),
        &[(0x83, 63, 100), (0x0C, 2048, n)],
    );
    let p = partitions(&mut d).unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(
        (p[1].number, p[1].kind, p[1].start, p[1].sectors),
        (2, 0x0C, 2048, u64::from(n))
    );
    assert!(p[1].is_fat() && !p[0].is_fat());
    let v = Volume::find(&mut d).unwrap();
    assert_eq!(v.first_sector(), 2048);
    let ext = v.open(&mut d, "/Guest Disk Image.img").unwrap();
    assert!(ext.runs.iter().all(|r| r.dev_sector >= 2048));
    let mut fs = FileStore::new(d, ext).unwrap();
    assert_eq!(read_all(&mut fs), data);
    // A FAT in a partition typed Linux is found too.
    let mut d = mbr_disk(&t, 2048, 2048 + u64::from(n), &[(0x83, 2048, n)]);
    assert_eq!(Volume::find(&mut d).unwrap().first_sector(), 2048);
    // A partition shorter than its file system is refused.
    let mut d = mbr_disk(&t, 2048, 2048 + u64::from(n), &[(0x0C, 2048, n - 1)]);
    assert!(matches!(
        Volume::find(&mut d),
        Err(FatError::TooLarge { .. })
    ));
    // Two candidates, neither FAT.
    let mut d = mbr_disk(
        &t,
        2048,
        4096 + u64::from(n),
        &[(0x0C, 4096, n), (0x0B, 3000, 10)],
    );
    let e = Volume::find(&mut d).unwrap_err().to_string();
    assert_eq!(
        e,
        "no FAT file system on the whole disk or its 2 MBR partition(s)"
    );
    // An extended partition is listed but not tried.
    let mut d = mbr_disk(&t, 2048, 2048 + u64::from(n), &[(0x05, 2048, n)]);
    assert_eq!(partitions(&mut d).unwrap().len(), 1);
    assert!(Volume::find(&mut d).is_err());
    // A bad status byte: not an MBR.
    let mut d = mbr_disk(&t, 2048, 2048 + u64::from(n), &[(0x0C, 2048, n)]);
    d.data[446] = 0x12;
    assert!(partitions(&mut d).unwrap().is_empty());
    // No signature: nothing to find.
    let mut d = MemDisk::new(10);
    assert!(partitions(&mut d).unwrap().is_empty());
    assert_eq!(
        Volume::find(&mut d).unwrap_err().to_string(),
        "not a FAT file system (no boot signature)"
    );
}

#[test]
fn fat_superfloppy_is_not_an_mbr() {
    // mkfs.fat may write a fake partition table into a whole-disk FAT's
    // boot sector; it stays a superfloppy.
    let (mut t, _) = sample();
    let e = 446;
    t.d[e] = 0x80;
    t.d[e + 4] = 0x01;
    t.d[e + 8..e + 12].copy_from_slice(&1u32.to_le_bytes());
    t.d[e + 12..e + 16].copy_from_slice(&10u32.to_le_bytes());
    let mut d = t.disk();
    assert!(partitions(&mut d).unwrap().is_empty());
    assert_eq!(Volume::find(&mut d).unwrap().first_sector(), 0);
}

#[test]
fn fat_4k_sector_disk() {
    // A 4096-byte-sector disk: the MBR counts in 4 KiB sectors.
    let mut t = Tiny::new(300, 1, 4096);
    let data = pattern(3 * 4096, 11);
    t.put_file(&[2, 3, 9], &data);
    t.put_root(0, &[sfn(short("DISK.IMG"), 0x20, 2, data.len() as u32)]);
    let n4 = (t.d.len() / 4096) as u32;
    let mut d = mbr_disk(&t, 256 * 8, (256 + u64::from(n4)) * 8, &[(0x0E, 256, n4)]);
    d.sector_size = 4096;
    let p = partitions(&mut d).unwrap();
    assert_eq!((p[0].start, p[0].sectors), (2048, u64::from(n4) * 8));
    let v = Volume::find(&mut d).unwrap();
    let ext = v.open(&mut d, "disk.img").unwrap();
    let mut fs = FileStore::new(d, ext).unwrap();
    assert_eq!(fs.sector_size(), 4096);
    assert_eq!(read_all(&mut fs), data);
    fs.write(8, &[0xAB; 4096]).unwrap();
    let mut back = [0u8; 4096];
    fs.read(8, &mut back).unwrap();
    assert_eq!(back, [0xAB; 4096]);
}

// ---------------------------------------------------------------------
// FileStore.

#[test]
fn fat_filestore_rules() {
    let (t, data) = sample();
    let mut d = t.disk();
    let v = Volume::mount(&mut d, 0).unwrap();
    // readme.txt is 5 bytes: not a disk.
    let ext = v.open(&mut d, "/readme.txt").unwrap();
    let e = FileStore::new(t.disk(), ext).err().unwrap().to_string();
    assert_eq!(
        e,
        "image file: its size is not a multiple of 512 bytes; a disk image must be whole sectors"
    );
    let e = FileStore::open(t.disk(), "/README.TXT")
        .err()
        .unwrap()
        .to_string();
    assert!(e.starts_with("/README.TXT: its size"), "{e}");
    // A run off the device or a gap in the runs.
    let bad = FileExtents {
        len: 512,
        runs: vec![Run {
            file_sector: 0,
            dev_sector: 1 << 40,
            sectors: 1,
        }],
    };
    assert!(matches!(
        FileStore::new(t.disk(), bad),
        Err(FatError::BeyondDevice { .. })
    ));
    let gap = FileExtents {
        len: 1024,
        runs: vec![Run {
            file_sector: 0,
            dev_sector: 100,
            sectors: 1,
        }],
    };
    assert!(FileStore::new(t.disk(), gap).is_err());
    // Reads, writes, flush, no discard, bounds.
    let mut fs = FileStore::open(t.disk(), "/Guest Disk Image.img").unwrap();
    assert_eq!(fs.sectors(), 6);
    assert!(!fs.can_discard());
    assert_eq!(fs.discard(0, 1), Err(IoError::Unsupported));
    assert_eq!(fs.read(6, &mut [0; 512]), Err(IoError::Io));
    assert_eq!(fs.read(5, &mut [0; 1024]), Err(IoError::Io));
    assert_eq!(fs.read(u64::MAX, &mut [0; 512]), Err(IoError::Io));
    assert_eq!(fs.write(0, &[0; 100]), Err(IoError::Io));
    let new = pattern(4 * 512, 99);
    fs.write(2, &new).unwrap(); // spans all three runs
    let mut want = data.clone();
    want[1024..].copy_from_slice(&new);
    assert_eq!(read_all(&mut fs), want);
    fs.flush().unwrap();
    let disk = fs.into_inner();
    assert_eq!(disk.flushes, 1);
    assert_eq!(disk.durable, disk.data);
    // Nothing outside the file's clusters changed.
    let mut expect = t.d.clone();
    for (i, c) in [5u32, 6, 7, 20, 21, 10].into_iter().enumerate() {
        let at = t.cluster_offset(c);
        expect[at..at + 512].copy_from_slice(&want[i * 512..(i + 1) * 512]);
    }
    assert!(disk.data == expect);
    // I/O errors pass through as IoError; while mounting they name the sector.
    let mut d = t.disk();
    d.bad_sector = Some(t.cluster_offset(20) as u64 / 512);
    let mut fs = FileStore::open(d, "/Guest Disk Image.img").unwrap();
    assert_eq!(fs.read(0, &mut [0; 3 * 512]), Ok(()));
    assert_eq!(fs.read(3, &mut [0; 512]), Err(IoError::Io));
    let mut d = t.disk();
    d.bad_sector = Some(0);
    assert_eq!(
        Volume::find(&mut d).unwrap_err().to_string(),
        "disk read failed at sector 0 (Io)"
    );
}

// ---------------------------------------------------------------------
// Randomized.

#[test]
fn fat_random_geometry_and_fragmentation() {
    let mut r = Rng(0x5EED_F00D);
    for round in 0..40 {
        let bps = 512 << r.below(4);
        let fat16 = bps <= 1024 && r.below(2) == 0;
        let spc = if fat16 { 1 } else { 1 << r.below(4) };
        let clusters = if fat16 {
            4085 + r.below(3000)
        } else {
            16 + r.below(1500)
        } as usize;
        let mut t = Tiny::new(clusters, spc, bps);
        let cb = t.cluster_bytes();
        // A fragmented allocation: mostly runs, sometimes a jump.
        let n = 1 + r.below(clusters.min(60) as u64) as usize;
        let mut used = vec![false; clusters + 2];
        let mut chain = Vec::new();
        let mut c = 2 + r.below(clusters as u64) as usize;
        while chain.len() < n {
            if used[c] || r.below(4) == 0 {
                c = 2 + r.below(clusters as u64) as usize;
                continue;
            }
            used[c] = true;
            chain.push(c as u32);
            c = if c + 1 < clusters + 2 { c + 1 } else { 2 };
        }
        let tail = r.below((cb / 512) as u64) as usize * 512;
        let len = n * cb - tail;
        let data = pattern(len, round);
        t.put_file(&chain, &data);
        t.put_root(
            0,
            &lfn(
                "random.img",
                short("RANDOM.IMG"),
                0x20,
                chain[0],
                len as u32,
            ),
        );
        let mut d = t.disk();
        let v = Volume::mount(&mut d, 0).unwrap();
        assert_eq!(
            v.kind(),
            if fat16 {
                FatKind::Fat16
            } else {
                FatKind::Fat12
            }
        );
        let ext = v.open(&mut d, "RANDOM.img").unwrap();
        let breaks = chain.windows(2).filter(|w| w[1] != w[0] + 1).count();
        assert_eq!(ext.runs.len(), breaks + 1, "round {round}");
        let mut fs = FileStore::new(d, ext).unwrap();
        let mut reference = data;
        let sectors = fs.sectors();
        for _ in 0..30 {
            let at = r.below(sectors);
            let cnt = 1 + r.below((sectors - at).min(40));
            let range = at as usize * 512..(at + cnt) as usize * 512;
            if r.below(2) == 0 {
                let new = pattern(range.len(), r.next());
                fs.write(at, &new).unwrap();
                reference[range].copy_from_slice(&new);
            } else {
                let mut got = vec![0; range.len()];
                fs.read(at, &mut got).unwrap();
                assert!(got == reference[range], "round {round}");
            }
        }
        assert!(read_all(&mut fs) == reference, "round {round}");
        // The metadata is untouched: the file still opens the same.
        let mut d = fs.into_inner();
        let ext2 = v.open(&mut d, "/random.img").unwrap();
        assert_eq!(ext2.len, len as u64);
    }
}

#[test]
fn fat_hostile_bytes_never_panic() {
    let (t, _) = sample();
    let mut r = Rng(42);
    // Flip random bytes of the metadata area (boot sector, FATs, root,
    // the subdirectory) and make sure every operation returns.
    let meta_end = t.cluster_offset(43);
    for _ in 0..3000 {
        let mut d = t.disk();
        for _ in 0..1 + r.below(8) {
            let at = if r.below(3) == 0 {
                r.below(64)
            } else {
                r.below(meta_end as u64)
            } as usize;
            d.data[at] = r.next() as u8;
        }
        if let Ok(v) = Volume::find(&mut d) {
            let _ = v.list(&mut d, "/");
            let _ = v.list(&mut d, "/images");
            for p in ["/Guest Disk Image.img", "/images/inner.img", "readme.txt"] {
                if let Ok(ext) = v.open(&mut d, p) {
                    if let Ok(mut fs) = FileStore::new(d.clone(), ext) {
                        let _ = read_all(&mut fs);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------
// Images made by the host's tools.

/// The tool's path, or `None` (and a note) if it is not installed.
pub(super) fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!(
            "SKIP: `{name}` is not installed; install dosfstools/mtools/fdisk to run this test"
        );
    }
    found
}

pub(super) fn load(p: &Path) -> MemDisk {
    let bytes = fs::read(p).unwrap();
    let mut d = MemDisk::new((bytes.len() / 512) as u64);
    d.data.copy_from_slice(&bytes);
    d.durable.copy_from_slice(&bytes);
    d
}

/// Fills `img` (mtools spec `spec`, e.g. `img` or `img@@1M`) with a
/// fragmented long-named image in a subdirectory and a few other files,
/// then checks reading, writing and what the host sees afterwards.
fn exercise(img: &Path, spec: &str, kind: FatKind, first_sector: u64) {
    let mcopy = |args: &[&str]| run(Command::new("mcopy").arg("-i").arg(spec).args(args));
    run(Command::new("mmd")
        .arg("-i")
        .arg(spec)
        .args(["::/images", "::/images/old"]));
    let filler = Temp::new("fat", "filler.bin");
    fs::write(&filler.0, pattern(40 * 1024, 1)).unwrap();
    let f = filler.0.to_str().unwrap();
    for n in ["::/a.bin", "::/b.bin", "::/c.bin"] {
        mcopy(&[f, n]);
    }
    run(Command::new("mdel").arg("-i").arg(spec).arg("::/b.bin"));
    if kind == FatKind::Fat32 {
        // Forget FSInfo's next-free hint, so mtools fills b.bin's hole
        // first and the image comes out fragmented.
        let mut bytes = fs::read(img).unwrap();
        let base = first_sector as usize * 512;
        let bps = u16::from_le_bytes([bytes[base + 11], bytes[base + 12]]) as usize;
        let fsinfo = u16::from_le_bytes([bytes[base + 48], bytes[base + 49]]) as usize;
        let at = base + fsinfo * bps + 492;
        bytes[at..at + 4].copy_from_slice(&[0xFF; 4]);
        fs::write(img, bytes).unwrap();
    }
    let image = Temp::new("fat", "guest.img");
    let data = pattern(300 * 1024, 2);
    fs::write(&image.0, &data).unwrap();
    let host_name = "::/images/Guest Disk Image.img";
    mcopy(&[image.0.to_str().unwrap(), host_name]);
    mcopy(&[f, "::/images/old/Another Old Image.IMG"]);

    let mut d = load(img);
    let v = Volume::find(&mut d).unwrap();
    assert_eq!((v.kind(), v.first_sector()), (kind, first_sector));
    let names: Vec<String> = v
        .list(&mut d, "/IMAGES")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["old", "Guest Disk Image.img"]);
    let root: Vec<String> = v
        .list(&mut d, "/")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(root, ["images", "a.bin", "c.bin"]);
    let old = v.open(&mut d, "images/OLD/another old image.img").unwrap();
    assert_eq!(
        read_all(&mut FileStore::new(d.clone(), old).unwrap()),
        pattern(40 * 1024, 1)
    );
    let ext = v.open(&mut d, "/images/guest disk image.img").unwrap();
    assert!(
        ext.runs.len() >= 2,
        "mtools did not fragment the image: {:?}",
        ext.runs
    );
    let mut store = FileStore::new(d, ext).unwrap();
    assert_eq!(read_all(&mut store), data);
    // Write through the store; the host must see the new bytes.
    let mut want = data.clone();
    let mut r = Rng(77);
    for _ in 0..20 {
        let at = r.below(600);
        let n = 1 + r.below(600 - at).min(64);
        let new = pattern(n as usize * 512, r.next());
        store.write(at, &new).unwrap();
        want[at as usize * 512..][..new.len()].copy_from_slice(&new);
    }
    store.flush().unwrap();
    fs::write(img, &store.into_inner().durable).unwrap();
    let seen = mcopy(&[host_name, "-"]);
    assert!(seen == want, "the host reads different bytes");
    // Random damage to the real metadata (boot sector, FATs, and the
    // first directory clusters) never panics.
    let mut d = std::rc::Rc::new(core::cell::RefCell::new(load(img)));
    let meta = (v.base + v.geo.data_start + 8 * v.geo.cluster) as usize;
    let base = v.base as usize;
    let mut r = Rng(0xBAD);
    for _ in 0..300 {
        let saved = d.borrow().data[base..meta].to_vec();
        for _ in 0..1 + r.below(6) {
            let at = base + r.below((meta - base) as u64) as usize;
            d.borrow_mut().data[at] = r.next() as u8;
        }
        if let Ok(v) = Volume::find(&mut d) {
            let _ = v.list(&mut d, "/images/old");
            if let Ok(ext) = v.open(&mut d, "/images/guest disk image.img") {
                if let Ok(mut s) = FileStore::new(d.clone(), ext) {
                    let _ = s.read(0, &mut [0; 4096]);
                }
            }
        }
        d.borrow_mut().data[base..meta].copy_from_slice(&saved);
    }
    if let Some(fsck) = tool("fsck.fat") {
        if !spec.contains("@@") {
            run(Command::new(fsck).arg("-n").arg(img));
        }
    }
}

#[test]
fn fat16_made_by_mkfs() {
    let (Some(mkfs), Some(_), Some(_)) = (tool("mkfs.fat"), tool("mcopy"), tool("mmd")) else {
        return;
    };
    let img = Temp::new("fat", "fat16.img");
    run(Command::new(mkfs)
        .args(["-F", "16", "-C"])
        .arg(&img.0)
        .arg("16384"));
    exercise(&img.0, img.0.to_str().unwrap(), FatKind::Fat16, 0);
}

#[test]
fn fat32_made_by_mkfs() {
    let (Some(mkfs), Some(_), Some(_)) = (tool("mkfs.fat"), tool("mcopy"), tool("mmd")) else {
        return;
    };
    let img = Temp::new("fat", "fat32.img");
    run(Command::new(mkfs)
        .args(["-F", "32", "-s", "1", "-C"])
        .arg(&img.0)
        .arg("40960"));
    exercise(&img.0, img.0.to_str().unwrap(), FatKind::Fat32, 0);
}

/// An MBR disk made by `sfdisk` with one partition at 1 MiB of `type`,
/// formatted with `mkfs.fat --offset`.
fn partitioned(fat: &str, kind: FatKind, ptype: &str, part_kib: u64) {
    let (Some(mkfs), Some(sfdisk), Some(_), Some(_)) =
        (tool("mkfs.fat"), tool("sfdisk"), tool("mcopy"), tool("mmd"))
    else {
        return;
    };
    let img = Temp::new("fat", "mbr.img");
    let f = fs::File::create(&img.0).unwrap();
    f.set_len((1024 + part_kib + 512) * 1024).unwrap();
    drop(f);
    let mut child = Command::new(sfdisk)
        .arg("--quiet")
        .arg(&img.0)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let script = format!(
        "label: dos\nstart=2048, size={}, type={ptype}\n",
        part_kib * 2
    );
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    run(Command::new(mkfs)
        .args(["-F", fat, "-s", "1", "--offset", "2048", "-h", "2048"])
        .arg(&img.0)
        .arg(part_kib.to_string()));
    let mut d = load(&img.0);
    let p = partitions(&mut d).unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].start, p[0].sectors), (2048, part_kib * 2));
    let spec = format!("{}@@1M", img.0.to_str().unwrap());
    exercise(&img.0, &spec, kind, 2048);
}

#[test]
fn fat16_in_mbr_partition() {
    partitioned("16", FatKind::Fat16, "e", 20 * 1024);
}

#[test]
fn fat32_in_mbr_partition() {
    partitioned("32", FatKind::Fat32, "c", 40 * 1024);
}
