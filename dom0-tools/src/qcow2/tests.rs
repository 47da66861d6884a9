//! Tests of the qcow2 reader and writer: hand-built images with every
//! header field and table entry out of range (always run), a byte-flip
//! fuzz loop, and images made by the host's `qemu-img`/`qemu-io`
//! (skipped, saying so, where a tool is missing), checked afterwards with
//! `qemu-img check` and `qemu-img convert -O raw`.

use std::format;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;
use std::{eprintln, fs};

use super::*;
use crate::blkback::MemDisk;
use crate::testutil::{run, Temp};

// ---------------------------------------------------------------------
// Helpers.

fn disk(bytes: &[u8]) -> MemDisk {
    let mut d = MemDisk::new((bytes.len() as u64).div_ceil(SECTOR));
    d.data[..bytes.len()].copy_from_slice(bytes);
    d.durable.copy_from_slice(&d.data);
    d
}

fn open(bytes: &[u8]) -> Result<Qcow2<MemDisk>, Qcow2Error> {
    Qcow2::open(disk(bytes))
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

/// A tiny PRNG (xorshift64) for patterns and fuzzing.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

// ---------------------------------------------------------------------
// A hand-built image.

/// Cluster layout of [`Built`]: header, refcount table, refcount block,
/// L1 table, one L2 table (for L1 entry 0), one data cluster (guest
/// cluster 0), then `spare` free clusters.
const CB: u32 = 12;
const CL: usize = 1 << CB;
const RT: usize = CL;
const RB: usize = 2 * CL;
const L1: usize = 3 * CL;
const L2: usize = 4 * CL;
const DATA: usize = 5 * CL;
/// Guest bytes one L2 table maps (512 entries of 4 KiB).
const L2_SPAN: u64 = (CL as u64 / 8) * CL as u64;

struct Built {
    b: Vec<u8>,
}

impl Built {
    /// A version `version` image of `size` guest bytes with `spare` free
    /// clusters after its data.
    fn new(version: u32, size: u64, spare: usize) -> Built {
        let mut b = vec![0u8; DATA + CL + spare * CL];
        b[0..4].copy_from_slice(&MAGIC);
        put32(&mut b, hdr::VERSION, version);
        put32(&mut b, hdr::CLUSTER_BITS, CB);
        put64(&mut b, hdr::SIZE, size);
        put32(&mut b, hdr::L1_SIZE, size.div_ceil(L2_SPAN) as u32);
        put64(&mut b, hdr::L1_TABLE_OFFSET, L1 as u64);
        put64(&mut b, hdr::REFCOUNT_TABLE_OFFSET, RT as u64);
        put32(&mut b, hdr::REFCOUNT_TABLE_CLUSTERS, 1);
        if version == 3 {
            put32(&mut b, hdr::REFCOUNT_ORDER, 4);
            put32(&mut b, hdr::HEADER_LENGTH, 112);
        }
        put64(&mut b, RT, RB as u64);
        for c in 0..6 {
            b[RB + 2 * c..RB + 2 * c + 2].copy_from_slice(&1u16.to_be_bytes());
        }
        put64(&mut b, L1, L2 as u64 | entry::COPIED);
        put64(&mut b, L2, DATA as u64 | entry::COPIED);
        b[DATA..DATA + CL].fill(0x5a);
        Built { b }
    }
    fn set_l2(&mut self, i: usize, e: u64) {
        put64(&mut self.b, L2 + 8 * i, e);
    }
    fn refcount(b: &[u8], host: usize) -> u16 {
        let i = RB + 2 * (host / CL);
        u16::from_be_bytes([b[i], b[i + 1]])
    }
}

fn read_vec(q: &mut Qcow2<MemDisk>, at: u64, len: usize) -> Result<Vec<u8>, IoError> {
    let mut v = vec![0u8; len];
    q.read(at / SECTOR, &mut v).map(|()| v)
}

#[test]
fn magic() {
    assert!(is_qcow2(b"QFI\xfb\0\0\0\x03"));
    assert!(is_qcow2(b"QFI\xfb"));
    assert!(!is_qcow2(b"QFI"));
    assert!(!is_qcow2(b"\0\0\0\0QFI\xfb"));
    assert!(!is_qcow2(&[]));
}

#[test]
fn hand_built_reads() {
    for version in [2, 3] {
        let mut i = Built::new(version, 4 * L2_SPAN, 0);
        if version == 3 {
            // Cluster 1: zero flag, unallocated; cluster 2: zero flag at
            // a real cluster (the data cluster: reads zeros anyway).
            i.set_l2(1, entry::ZERO);
            i.set_l2(2, DATA as u64 | entry::ZERO | entry::COPIED);
        }
        let mut q = open(&i.b).unwrap();
        assert_eq!(q.sectors(), 4 * L2_SPAN / 512);
        assert_eq!(q.version(), version);
        assert_eq!(q.cluster_size(), CL as u64);
        let v = read_vec(&mut q, 0, 3 * CL + 1024).unwrap();
        assert!(v[..CL].iter().all(|&x| x == 0x5a));
        assert!(v[CL..].iter().all(|&x| x == 0));
        // Past the L2 table: unallocated L1 entries read as zeros.
        let v = read_vec(&mut q, 3 * L2_SPAN, CL).unwrap();
        assert!(v.iter().all(|&x| x == 0));
        // Out of range requests.
        assert_eq!(q.read(q.sectors(), &mut [0; 512]), Err(IoError::Io));
        assert_eq!(q.read(q.sectors() - 1, &mut [0; 1024]), Err(IoError::Io));
        assert_eq!(q.read(u64::MAX, &mut [0; 512]), Err(IoError::Io));
        assert_eq!(q.write(u64::MAX / 2, &[0; 512]), Err(IoError::Io));
        q.read(0, &mut []).unwrap();
    }
}

#[test]
fn hand_built_header_errors() {
    use Qcow2Error::*;
    let good = Built::new(3, 4 * L2_SPAN, 0).b;
    let file = good.len() as u64;
    assert!(open(&good).is_ok());
    let bad = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        let e = open(&b).err().expect("accepted a bad image");
        let msg = e.to_string();
        assert!(msg.starts_with("qcow2") && !msg.contains('\n'), "{msg}");
        e
    };
    let field = |field: &'static str, value: u64| BadField { field, value };
    assert_eq!(bad(&|b| b[0] = b'X'), NotQcow2);
    assert_eq!(bad(&|b| put32(b, 4, 1)), Version(1));
    assert_eq!(bad(&|b| put32(b, 4, 4)), Version(4));
    assert_eq!(bad(&|b| put32(b, 20, 8)), field("cluster_bits", 8));
    assert_eq!(bad(&|b| put32(b, 20, 22)), field("cluster_bits", 22));
    assert_eq!(
        bad(&|b| put32(b, 20, u32::MAX)),
        field("cluster_bits", u32::MAX as u64)
    );
    assert_eq!(bad(&|b| put32(b, 100, 100)), field("header_length", 100));
    assert_eq!(bad(&|b| put32(b, 100, 105)), field("header_length", 105));
    assert_eq!(
        bad(&|b| put32(b, 100, 1 << 20)),
        field("header_length", 1 << 20)
    );
    assert_eq!(bad(&|b| put64(b, 72, 1)), Dirty);
    assert_eq!(bad(&|b| put64(b, 72, 2)), Corrupt);
    assert_eq!(bad(&|b| put64(b, 72, 4)), ExternalData);
    assert_eq!(bad(&|b| put64(b, 72, 16)), ExtendedL2);
    assert_eq!(bad(&|b| put64(b, 72, 1 << 5 | 1)), UnknownFeatures(1 << 5));
    assert_eq!(bad(&|b| put64(b, 72, 1 << 63)), UnknownFeatures(1 << 63));
    assert_eq!(bad(&|b| put64(b, 72, 8)), field("incompatible_features", 8));
    assert_eq!(bad(&|b| b[104] = 1), Compression(1));
    assert_eq!(bad(&|b| put32(b, 96, 7)), field("refcount_order", 7));
    assert_eq!(bad(&|b| put64(b, 8, 0x1000)), BackingFile);
    assert_eq!(bad(&|b| put32(b, 32, 1)), Encrypted(1));
    assert_eq!(bad(&|b| put32(b, 32, 2)), Encrypted(2));
    assert_eq!(bad(&|b| put64(b, 24, 1000)), field("size", 1000));
    assert_eq!(
        bad(&|b| put64(b, 24, u64::MAX - 511)),
        L1TooSmall {
            entries: 4,
            needed: (u64::MAX - 511).div_ceil(L2_SPAN)
        }
    );
    assert_eq!(
        bad(&|b| put32(b, 36, 3)),
        L1TooSmall {
            entries: 3,
            needed: 4
        }
    );
    assert_eq!(
        bad(&|b| put32(b, 36, u32::MAX)),
        field("l1_size", u32::MAX as u64)
    );
    // 4 Mi entries are allowed by the limit but not by this file.
    assert_eq!(
        bad(&|b| put32(b, 36, 4 << 20)),
        BeyondFile {
            what: "L1 table",
            offset: L1 as u64,
            len: 32 << 20,
            file
        }
    );
    assert_eq!(
        bad(&|b| put64(b, 40, L1 as u64 + 8)),
        Unaligned {
            what: "L1 table",
            offset: L1 as u64 + 8
        }
    );
    assert_eq!(
        bad(&|b| put64(b, 40, file)),
        BeyondFile {
            what: "L1 table",
            offset: file,
            len: 32,
            file
        }
    );
    assert!(matches!(
        bad(&|b| put64(b, 40, !(CL as u64 - 1))),
        BeyondFile {
            what: "L1 table",
            ..
        }
    ));
    assert_eq!(
        bad(&|b| put64(b, 48, RT as u64 + 512)),
        Unaligned {
            what: "refcount table",
            offset: RT as u64 + 512
        }
    );
    assert_eq!(
        bad(&|b| put64(b, 48, file)),
        BeyondFile {
            what: "refcount table",
            offset: file,
            len: CL as u64,
            file
        }
    );
    assert_eq!(
        bad(&|b| put32(b, 56, 0)),
        field("refcount_table_clusters", 0)
    );
    assert_eq!(
        bad(&|b| put32(b, 56, u32::MAX)),
        field("refcount_table_clusters", u32::MAX as u64)
    );
    assert!(matches!(
        bad(&|b| put32(b, 56, 100)),
        BeyondFile {
            what: "refcount table",
            ..
        }
    ));
    assert_eq!(
        bad(&|b| put32(b, 60, u32::MAX)),
        field("nb_snapshots", u32::MAX as u64)
    );
    assert_eq!(
        bad(&|b| {
            put32(b, 60, 1);
            put64(b, 64, 1 << 40);
        }),
        BeyondFile {
            what: "snapshot table",
            offset: 1 << 40,
            len: 40,
            file
        }
    );
    // L1 entries: past the file, misaligned, reserved bits.
    for e in [
        file | entry::COPIED,
        (L2 as u64 + 512) | entry::COPIED,
        L2 as u64 | 1,
        L2 as u64 | 1 << 56,
        entry::OFFSET_MASK,
    ] {
        assert_eq!(
            bad(&|b| put64(b, L1 + 8, e)),
            BadL1Entry { index: 1, entry: e }
        );
    }
    // Too short, or empty.
    assert_eq!(open(&good[..0]).err(), Some(TooShort { len: 0 }));
    assert_eq!(
        Qcow2::open(MemDisk::new(0)).err(),
        Some(TooShort { len: 0 })
    );
    assert!(matches!(open(&good[..512]), Err(BeyondFile { .. })));
    // Version 2: the v3 fields are not read.
    let mut v2 = Built::new(2, 4 * L2_SPAN, 0).b;
    put64(&mut v2, 72, u64::MAX);
    assert!(open(&v2).is_ok());
    // A 4096-byte-sector store with 512-byte clusters.
    let mut b = good.clone();
    put32(&mut b, 20, 9);
    put32(&mut b, 36, 256);
    let mut d = disk(&b);
    d.sector_size = 4096;
    assert_eq!(
        Qcow2::open(d).err(),
        Some(SectorSize {
            cluster: 512,
            sector: 4096
        })
    );
    // Every message is one line.
    for e in [
        Io {
            offset: 0,
            error: IoError::Io,
        },
        TooShort { len: 1 },
        NotQcow2,
        Version(9),
        field("size", 1),
        BackingFile,
        Encrypted(1),
        Dirty,
        Corrupt,
        ExternalData,
        ExtendedL2,
        Compression(1),
        UnknownFeatures(32),
        L1TooSmall {
            entries: 1,
            needed: 2,
        },
        Unaligned {
            what: "L1 table",
            offset: 1,
        },
        BeyondFile {
            what: "L1 table",
            offset: 1,
            len: 2,
            file: 3,
        },
        BadL1Entry { index: 1, entry: 2 },
        SectorSize {
            cluster: 512,
            sector: 4096,
        },
    ] {
        let m = e.to_string();
        assert!(
            m.starts_with("qcow2: ") && !m.contains('\n') && m.len() < 120,
            "{m}"
        );
    }
}

#[test]
fn hand_built_bad_l2_entries_fail_their_requests_only() {
    let cl = CL as u64;
    let mut i = Built::new(2, 4 * L2_SPAN, 0);
    let file = i.b.len() as u64;
    i.set_l2(1, file | entry::COPIED); // past the file
    i.set_l2(2, (DATA as u64 + 512) | entry::COPIED); // misaligned
    i.set_l2(3, DATA as u64 | 1 << 57 | entry::COPIED); // reserved bits
    i.set_l2(4, DATA as u64 | entry::ZERO | entry::COPIED); // zero flag in v2
    i.set_l2(5, DATA as u64 | 1 << 4); // reserved bits
    i.set_l2(6, entry::COMPRESSED | 0x1234); // compressed
    i.set_l2(7, entry::OFFSET_MASK | entry::COPIED);
    let mut q = open(&i.b).unwrap();
    for c in 1..=7 {
        assert_eq!(
            read_vec(&mut q, c * cl, 512),
            Err(IoError::Io),
            "cluster {c}"
        );
        assert_eq!(q.write((c * cl) / SECTOR, &[1; 512]), Err(IoError::Io));
        // A request spanning a good cluster and a bad one fails whole.
        assert_eq!(read_vec(&mut q, c * cl - 512, 1024), Err(IoError::Io));
    }
    assert_eq!(read_vec(&mut q, 0, 512).unwrap(), vec![0x5a; 512]);
    assert_eq!(read_vec(&mut q, 8 * cl, 512).unwrap(), vec![0; 512]);
    // Nothing was changed by the failed writes.
    let d = q.into_inner();
    assert_eq!(&d.data[..i.b.len()], &i.b[..]);
}

#[test]
fn hand_built_refcount_table_problems_refuse_allocation() {
    // Refcount table entry past the file / misaligned: allocation fails.
    for e in [1u64 << 40, RB as u64 + 8, 0] {
        let mut i = Built::new(3, 4 * L2_SPAN, 4);
        put64(&mut i.b, RT, e);
        let mut q = open(&i.b).unwrap();
        assert_eq!(q.write(CL as u64 / SECTOR, &[7; 512]), Err(IoError::Io));
        // In-place writes still work.
        q.write(0, &[7; 512]).unwrap();
        assert_eq!(read_vec(&mut q, 0, 512).unwrap(), vec![7; 512]);
    }
}

#[test]
fn hand_built_writes_allocate_from_spare_room() {
    let cl = CL as u64;
    let mut i = Built::new(3, 4 * L2_SPAN, 4);
    i.set_l2(3, (DATA as u64 + cl) | entry::ZERO | entry::COPIED);
    // That spare cluster is now in use.
    i.b[RB + 12..RB + 14].copy_from_slice(&1u16.to_be_bytes());
    i.b[DATA + CL..DATA + 2 * CL].fill(0xee);
    let mut q = open(&i.b).unwrap();
    // In place.
    q.write(1, &[1; 1024]).unwrap();
    // Zero flag cleared: zeros around the data.
    q.write((3 * cl + 512) / SECTOR, &[3; 512]).unwrap();
    let v = read_vec(&mut q, 3 * cl, CL).unwrap();
    assert!(v[..512].iter().all(|&x| x == 0) && v[512..1024].iter().all(|&x| x == 3));
    assert!(v[1024..].iter().all(|&x| x == 0));
    // A new data cluster in the existing L2 table.
    let flushes = q.inner.flushes;
    q.write((cl + 1024) / SECTOR, &[2; 512]).unwrap();
    assert!(q.inner.flushes > flushes, "no flush before the L2 entry");
    // A new L2 table and data cluster (uses the last two spare clusters).
    q.write(L2_SPAN * 2 / SECTOR, &[4; 512]).unwrap();
    // Full now.
    assert_eq!(q.write((5 * cl) / SECTOR, &[5; 512]), Err(IoError::Io));
    assert_eq!(q.write((L2_SPAN * 3) / SECTOR, &[5; 512]), Err(IoError::Io));
    // What the guest sees.
    let v = read_vec(&mut q, 0, 4 * CL).unwrap();
    let mut want = vec![0u8; 4 * CL];
    want[..CL].fill(0x5a);
    want[512..1536].fill(1);
    want[CL + 1024..CL + 1536].fill(2);
    want[3 * CL + 512..3 * CL + 1024].fill(3);
    assert_eq!(v, want);
    let v = read_vec(&mut q, L2_SPAN * 2, CL).unwrap();
    assert!(v[..512].iter().all(|&x| x == 4) && v[512..].iter().all(|&x| x == 0));
    q.flush().unwrap();
    // The metadata: refcounts of every cluster 1, entries with COPIED.
    let d = q.into_inner();
    let b = &d.durable;
    for c in 0..10 {
        assert_eq!(Built::refcount(b, c * CL), 1, "cluster {c}");
    }
    let l2e = |i: usize| u64::from_be_bytes(b[L2 + 8 * i..L2 + 8 * i + 8].try_into().unwrap());
    assert_eq!(l2e(1), (DATA + 2 * CL) as u64 | entry::COPIED);
    assert_eq!(l2e(3), (DATA + CL) as u64 | entry::COPIED);
    let l1e = u64::from_be_bytes(b[L1 + 16..L1 + 24].try_into().unwrap());
    assert_eq!(l1e, (DATA + 4 * CL) as u64 | entry::COPIED);
    // And qemu-img agrees, if it is here.
    if let Some(qi) = tool("qemu-img") {
        let t = Temp::new("qcow2", "built.qcow2");
        fs::write(&t.0, b).unwrap();
        check_clean(&qi, &t.0);
        let raw = to_raw(&qi, &t.0);
        assert_eq!(&raw[..4 * CL], &want[..]);
        assert_eq!(&raw[L2_SPAN as usize * 2..][..4], &[4; 4]);
    }
}

#[test]
fn snapshot_shared_clusters_are_not_written() {
    let mut i = Built::new(3, 4 * L2_SPAN, 2);
    // Data cluster and L2 table shared (no COPIED flags).
    put64(&mut i.b, L1, L2 as u64);
    i.set_l2(0, DATA as u64);
    let mut q = open(&i.b).unwrap();
    assert_eq!(read_vec(&mut q, 0, 512).unwrap(), vec![0x5a; 512]);
    assert_eq!(q.write(0, &[1; 512]), Err(IoError::Io));
    assert_eq!(q.write(CL as u64 / SECTOR, &[1; 512]), Err(IoError::Io));
    let d = q.into_inner();
    assert_eq!(&d.data[..i.b.len()], &i.b[..]);
}

#[test]
fn autoclear_bits_are_cleared_before_the_first_change() {
    let mut i = Built::new(3, 4 * L2_SPAN, 2);
    put64(&mut i.b, hdr::AUTOCLEAR_FEATURES, 0b11);
    let mut q = open(&i.b).unwrap();
    q.write(0, &[1; 512]).unwrap(); // in place: no metadata change
    assert_eq!(be64(&q.inner.data, hdr::AUTOCLEAR_FEATURES), 0b11);
    q.write(CL as u64 / SECTOR, &[1; 512]).unwrap();
    assert_eq!(be64(&q.inner.data, hdr::AUTOCLEAR_FEATURES), 0);
}

#[test]
fn store_errors_are_io_errors() {
    let i = Built::new(3, 4 * L2_SPAN, 2);
    let mut d = disk(&i.b);
    d.bad_sector = Some((L2 / 512) as u64);
    let mut q = Qcow2::open(d).unwrap();
    assert_eq!(read_vec(&mut q, 0, 512), Err(IoError::Io));
    q.inner.bad_sector = None;
    assert_eq!(read_vec(&mut q, 0, 512).unwrap(), vec![0x5a; 512]);
    let mut d = disk(&i.b);
    d.bad_sector = Some(0);
    assert_eq!(
        Qcow2::open(d).err(),
        Some(Qcow2Error::Io {
            offset: 0,
            error: IoError::Io
        })
    );
}

/// Opens, reads every cluster and writes a few of `b`: must not panic.
fn poke(b: &[u8], rng: &mut Rng) {
    let Ok(mut q) = open(b) else { return };
    let cl = q.cluster_size() as usize;
    let sectors = q.sectors();
    let mut buf = vec![0u8; cl.min(1 << 16)];
    let clusters = (sectors * SECTOR / cl as u64).min(64);
    for c in 0..clusters {
        let _ = q.read(c * cl as u64 / SECTOR, &mut buf);
    }
    for _ in 0..4 {
        if sectors == 0 {
            break;
        }
        let s = rng.below(sectors);
        let _ = q.write(s, &[0xcc; 512]);
        let _ = q.read(s, &mut [0; 512]);
    }
    let _ = q.flush();
}

#[test]
fn fuzz_hand_built() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let base = Built::new(3, 4 * L2_SPAN, 2).b;
    for _ in 0..3000 {
        let mut b = base.clone();
        for _ in 0..1 + rng.below(4) {
            // Mostly metadata: the header, the tables' first entries.
            let at = match rng.below(4) {
                0 => rng.below(112) as usize,
                1 => RT + rng.below(16) as usize,
                2 => L1 + rng.below(32) as usize,
                _ => rng.below(b.len() as u64) as usize,
            };
            b[at] ^= 1 << rng.below(8);
        }
        poke(&b, &mut rng);
    }
}

// ---------------------------------------------------------------------
// Images made by the host's qemu-img and qemu-io.

/// The tool's path, or `None` (and a note) if it is not installed.
fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/bin", "/usr/local/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!("SKIP: `{name}` is not installed; install qemu-utils to run this test");
    }
    found
}

/// `qemu-img check` finds no errors and no leaks.
fn check_clean(qi: &Path, img: &Path) {
    let out = run(Command::new(qi).args(["check", "-f", "qcow2"]).arg(img));
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("No errors were found"), "{out}");
    assert!(!out.contains("leaked"), "{out}");
}

fn to_raw(qi: &Path, img: &Path) -> Vec<u8> {
    let t = Temp::new("qcow2", "out.raw");
    run(Command::new(qi)
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(img)
        .arg(&t.0));
    fs::read(&t.0).unwrap()
}

/// Guest contents: random, a zero gap, a repeating pattern, zeros.
fn contents(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut v = vec![0u8; size];
    for x in &mut v[..size / 8] {
        *x = rng.next() as u8;
    }
    for (i, x) in v[size / 4..size / 4 + size / 8].iter_mut().enumerate() {
        *x = (i / 512) as u8;
    }
    v[size / 2 + 4096..size / 2 + 8192].fill(0xab);
    v
}

/// Reads all of `q` in odd-sized pieces and compares with `want`.
fn read_all_and_compare(q: &mut Qcow2<MemDisk>, want: &[u8]) {
    assert_eq!(q.sectors() * SECTOR, want.len() as u64);
    let mut at = 0usize;
    let mut rng = Rng(7);
    while at < want.len() {
        let len = ((1 + rng.below(96)) as usize * 512).min(want.len() - at);
        let got = read_vec(q, at as u64, len).unwrap();
        assert!(got == want[at..at + len], "differs in {at}..+{len}");
        at += len;
    }
}

/// Writes `(offset, length, byte)` through `q` and into `want`.
fn write_some(q: &mut Qcow2<MemDisk>, want: &mut [u8], writes: &[(usize, usize, u8)]) {
    for &(at, len, x) in writes {
        q.write(at as u64 / SECTOR, &vec![x; len])
            .unwrap_or_else(|e| panic!("write {at}+{len}: {e:?}"));
        want[at..at + len].fill(x);
    }
}

/// Saves `q`'s file (as the store has it after a flush) to `path`.
fn save(mut q: Qcow2<MemDisk>, path: &Path) {
    q.flush().unwrap();
    fs::write(path, q.into_inner().durable).unwrap();
}

const SIZE: usize = 8 << 20;

/// Writes touching: the random start, a cluster boundary, the zero gap,
/// the pattern, the last sector.
fn writes(cluster: usize) -> Vec<(usize, usize, u8)> {
    vec![
        (4096, 8192, 0x11),
        (cluster - 512, 1024, 0x22),
        (SIZE / 8 + 3 * 512, 2048, 0x33),
        (SIZE / 4 + 512, 512, 0x44),
        (SIZE * 3 / 4, 3 * cluster, 0x55),
        (SIZE - 512, 512, 0x66),
    ]
}

#[test]
fn qemu_images_read_and_write() {
    let Some(qi) = tool("qemu-img") else { return };
    for compat in ["1.1", "0.10"] {
        for prealloc in ["off", "metadata", "falloc"] {
            for cluster in [4096usize, 65536] {
                let what = format!("compat={compat} preallocation={prealloc} cluster={cluster}");
                eprintln!("{what}");
                let want0 = contents(SIZE, cluster as u64 ^ compat.len() as u64);
                let raw = Temp::new("qcow2", "in.raw");
                let img = Temp::new("qcow2", "img.qcow2");
                fs::write(&raw.0, &want0).unwrap();
                run(Command::new(&qi)
                    .args(["convert", "-f", "raw", "-O", "qcow2", "-o"])
                    .arg(format!(
                        "compat={compat},preallocation={prealloc},cluster_size={cluster}"
                    ))
                    .arg(&raw.0)
                    .arg(&img.0));
                let bytes = fs::read(&img.0).unwrap();
                let mut q = open(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(q.version(), if compat == "1.1" { 3 } else { 2 });
                read_all_and_compare(&mut q, &want0);

                let mut want = want0.clone();
                if prealloc == "off" {
                    // No room: writes to unallocated clusters fail,
                    // nothing changes.
                    let at = SIZE * 3 / 4;
                    assert_eq!(q.write(at as u64 / SECTOR, &[9; 512]), Err(IoError::Io));
                    let d = q.into_inner();
                    assert_eq!(&d.data[..bytes.len()], &bytes[..], "{what}");
                    // With 1 MiB of room at the end: they allocate.
                    let mut roomy = bytes.clone();
                    roomy.resize(bytes.len().div_ceil(cluster) * cluster + (1 << 20), 0);
                    q = open(&roomy).unwrap();
                }
                write_some(&mut q, &mut want, &writes(cluster));
                read_all_and_compare(&mut q, &want);
                save(q, &img.0);
                check_clean(&qi, &img.0);
                assert!(
                    to_raw(&qi, &img.0) == want,
                    "{what}: qemu-img sees other data"
                );
            }
        }
    }
}

#[test]
fn qemu_io_zero_clusters() {
    let Some(qi) = tool("qemu-img") else { return };
    let Some(qio) = tool("qemu-io") else { return };
    for prealloc in ["metadata", "off"] {
        let img = Temp::new("qcow2", "z.qcow2");
        run(Command::new(&qi)
            .args(["create", "-q", "-f", "qcow2", "-o"])
            .arg(format!("preallocation={prealloc}"))
            .arg(&img.0)
            .arg("4M"));
        // Data, then zero clusters (with and without their space).
        run(Command::new(&qio)
            .args(["-f", "qcow2"])
            .args([
                "-c",
                "write -P 0xab 0 256k",
                "-c",
                "write -z 64k 64k",
                "-c",
                "write -z -u 128k 64k",
                "-c",
                "write -P 0xcd 1M 64k",
                "-c",
                "write -z 1M 64k",
            ])
            .arg(&img.0));
        let mut want = vec![0u8; 4 << 20];
        want[..256 << 10].fill(0xab);
        want[64 << 10..192 << 10].fill(0);
        let bytes = fs::read(&img.0).unwrap();
        let mut q = open(&bytes).unwrap();
        read_all_and_compare(&mut q, &want);
        // Rewrite parts of the zeroed clusters: the rest stays zero.
        let w = [
            (64 << 10, 512, 1u8),
            (128 << 10, 4096, 2),
            ((1 << 20) + 4096, 512, 3),
        ];
        if prealloc == "off" {
            // Zero clusters without space need room.
            let mut roomy = bytes.clone();
            roomy.resize(bytes.len().div_ceil(65536) * 65536 + (1 << 20), 0);
            q = open(&roomy).unwrap();
        }
        write_some(&mut q, &mut want, &w);
        read_all_and_compare(&mut q, &want);
        save(q, &img.0);
        check_clean(&qi, &img.0);
        assert!(to_raw(&qi, &img.0) == want, "preallocation={prealloc}");
    }
}

#[test]
fn qemu_compressed_clusters_fail_alone() {
    let Some(qi) = tool("qemu-img") else { return };
    let size = 1 << 20;
    let mut want = vec![0u8; size];
    // Compressible data in clusters 0, 2; random in 4; zeros elsewhere.
    want[..65536].fill(0x42);
    want[2 * 65536..3 * 65536].fill(0x43);
    let mut rng = Rng(3);
    for x in &mut want[4 * 65536..5 * 65536] {
        *x = rng.next() as u8;
    }
    let raw = Temp::new("qcow2", "c.raw");
    let img = Temp::new("qcow2", "c.qcow2");
    fs::write(&raw.0, &want).unwrap();
    run(Command::new(&qi)
        .args(["convert", "-c", "-f", "raw", "-O", "qcow2"])
        .arg(&raw.0)
        .arg(&img.0));
    let bytes = fs::read(&img.0).unwrap();
    let mut q = open(&bytes).unwrap();
    let mut failed = 0;
    for c in 0..size / 65536 {
        let at = c * 65536;
        match read_vec(&mut q, at as u64, 65536) {
            Ok(v) => assert!(v == want[at..at + 65536], "cluster {c}"),
            Err(e) => {
                assert_eq!(e, IoError::Io);
                assert!(c == 0 || c == 2 || c == 4, "cluster {c} failed");
                failed += 1;
            }
        }
    }
    assert!(failed >= 2, "no compressed clusters seen");
    assert_eq!(q.write(0, &[1; 512]), Err(IoError::Io));
    // Other clusters still read.
    assert_eq!(read_vec(&mut q, 65536, 512).unwrap(), vec![0; 512]);
}

#[test]
fn fuzz_qemu_image() {
    let Some(qi) = tool("qemu-img") else { return };
    let raw = Temp::new("qcow2", "f.raw");
    let img = Temp::new("qcow2", "f.qcow2");
    fs::write(&raw.0, contents(1 << 20, 5)).unwrap();
    run(Command::new(&qi)
        .args([
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "-o",
            "cluster_size=4096",
        ])
        .arg(&raw.0)
        .arg(&img.0));
    let base = fs::read(&img.0).unwrap();
    assert!(open(&base).is_ok());
    let mut rng = Rng(0x1234_5678);
    let meta = base.len().min(6 * 4096) as u64;
    for _ in 0..400 {
        let mut b = base.clone();
        for _ in 0..1 + rng.below(3) {
            let at = if rng.below(2) == 0 {
                rng.below(112)
            } else {
                rng.below(meta)
            } as usize;
            b[at] ^= 1 << rng.below(8);
        }
        poke(&b, &mut rng);
    }
}

#[test]
fn sector_size_4096_store() {
    let Some(qi) = tool("qemu-img") else { return };
    let img = Temp::new("qcow2", "s.qcow2");
    run(Command::new(&qi)
        .args([
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "preallocation=metadata",
        ])
        .arg(&img.0)
        .arg("1M"));
    let bytes = fs::read(&img.0).unwrap();
    let mut d = disk(&bytes);
    d.sector_size = 4096;
    let mut q = Qcow2::open(d).unwrap();
    assert_eq!(q.sector_size(), 4096);
    q.write(8, &[9; 4096]).unwrap();
    let mut v = vec![0; 8192];
    q.read(0, &mut v).unwrap();
    assert!(v[..4096].iter().all(|&x| x == 0) && v[4096..].iter().all(|&x| x == 9));
    save(q, &img.0);
    check_clean(&qi, &img.0);
}

#[test]
fn qemu_refcount_widths() {
    let Some(qi) = tool("qemu-img") else { return };
    for bits in [1, 2, 8, 32, 64] {
        let want0 = contents(SIZE, bits);
        let raw = Temp::new("qcow2", "w.raw");
        let img = Temp::new("qcow2", "w.qcow2");
        fs::write(&raw.0, &want0).unwrap();
        run(Command::new(&qi)
            .args(["convert", "-f", "raw", "-O", "qcow2", "-o"])
            .arg(format!("refcount_bits={bits},cluster_size=4096"))
            .arg(&raw.0)
            .arg(&img.0));
        let mut bytes = fs::read(&img.0).unwrap();
        bytes.resize(bytes.len().div_ceil(4096) * 4096 + (1 << 20), 0);
        let mut q = open(&bytes).unwrap();
        let mut want = want0.clone();
        write_some(&mut q, &mut want, &writes(4096));
        read_all_and_compare(&mut q, &want);
        save(q, &img.0);
        check_clean(&qi, &img.0);
        assert!(to_raw(&qi, &img.0) == want, "refcount_bits={bits}");
    }
}
