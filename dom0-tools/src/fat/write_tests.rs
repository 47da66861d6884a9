//! Tests of creating, resizing and removing files: images made by the
//! host's `mkfs.fat`, `mmd`, `mcopy` and `sfdisk`, changed here, then
//! checked with `fsck.fat -n` and read back with mtools (skipped, saying
//! so, where a tool is missing); damaged FATs; a randomized run.

use std::collections::BTreeMap;
use std::format;
use std::process::{Command, Stdio};
use std::string::{String, ToString};
use std::vec::Vec;
use std::{fs, vec};

use super::tests::{load, pattern, read_all, tool, Rng};
use super::*;
use crate::blkback::MemDisk;
use crate::testutil::{run, Temp};

/// 2025-12-06 05:46:40 UTC.
const NOW: u64 = 1_765_000_000;

fn now() -> DosTime {
    DosTime::from_unix(NOW)
}

/// A FAT date and time from its parts.
fn dos(y: u16, mo: u16, d: u16, h: u16, mi: u16, s: u16, hundredths: u8) -> DosTime {
    DosTime {
        date: (y - 1980) << 9 | mo << 5 | d,
        time: h << 11 | mi << 5 | (s / 2),
        hundredths,
    }
}

#[test]
fn fat_dos_time() {
    assert_eq!(DosTime::from_unix(NOW), dos(2025, 12, 6, 5, 46, 40, 0));
    assert_eq!(
        DosTime::from_unix(NOW + 1),
        dos(2025, 12, 6, 5, 46, 41, 100)
    );
    // A leap day, the last second of it.
    assert_eq!(
        DosTime::from_unix(951_782_400 + 86_399),
        dos(2000, 2, 29, 23, 59, 59, 100)
    );
    // Clamped to what FAT can hold.
    assert_eq!(DosTime::from_unix(0), dos(1980, 1, 1, 0, 0, 0, 0));
    assert_eq!(DosTime::from_unix(315_532_800), dos(1980, 1, 1, 0, 0, 0, 0));
    let last = dos(2107, 12, 31, 23, 59, 59, 100);
    assert_eq!(DosTime::from_unix(4_354_819_199), last);
    assert_eq!(DosTime::from_unix(u64::MAX), last);
}

/// Whether the host tools these tests use are installed (a note if not).
fn tools() -> bool {
    ["mkfs.fat", "fsck.fat", "mcopy", "mmd", "mdir", "sfdisk"]
        .iter()
        .all(|t| tool(t).is_some())
}

/// An image file on the host, with its mtools spec and its volume's
/// first sector.
struct Img {
    file: Temp,
    spec: String,
    first: u64,
}

impl Img {
    /// A whole-disk volume of `kib` KiB made by `mkfs.fat args`.
    fn mkfs(args: &[&str], kib: u64) -> Img {
        let file = Temp::new("fatw", "img");
        run(Command::new("mkfs.fat")
            .args(args)
            .arg("-C")
            .arg(&file.0)
            .arg(kib.to_string()));
        let spec = file.0.to_str().unwrap().to_string();
        Img {
            file,
            spec,
            first: 0,
        }
    }

    /// An MBR disk (sfdisk) with one partition of `kib` KiB at 1 MiB,
    /// formatted by `mkfs.fat args`.
    fn partitioned(args: &[&str], ptype: &str, kib: u64) -> Img {
        let file = Temp::new("fatw", "mbr");
        fs::File::create(&file.0)
            .unwrap()
            .set_len((1024 + kib + 512) * 1024)
            .unwrap();
        let mut child = Command::new("sfdisk")
            .arg("--quiet")
            .arg(&file.0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let script = format!("label: dos\nstart=2048, size={}, type={ptype}\n", kib * 2);
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
        run(Command::new("mkfs.fat")
            .args(args)
            .args(["--offset", "2048", "-h", "2048"])
            .arg(&file.0)
            .arg(kib.to_string()));
        let spec = format!("{}@@1M", file.0.to_str().unwrap());
        Img {
            file,
            spec,
            first: 2048,
        }
    }

    fn mt(&self, cmd: &str, args: &[&str]) -> Vec<u8> {
        run(Command::new(cmd)
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&self.spec)
            .args(args))
    }

    fn disk(&self) -> MemDisk {
        load(&self.file.0)
    }

    fn save(&self, d: &MemDisk) {
        fs::write(&self.file.0, &d.data).unwrap();
    }

    /// `fsck.fat -n` on the volume must find nothing to say.
    fn fsck(&self, when: &str) {
        let data = fs::read(&self.file.0).unwrap();
        let vol = Temp::new("fatw", "fsck");
        fs::write(&vol.0, &data[self.first as usize * 512..]).unwrap();
        let out = Command::new("fsck.fat")
            .arg("-n")
            .arg(&vol.0)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let clean = text
            .lines()
            .all(|l| l.starts_with("fsck.fat ") || l.contains(" files, "));
        let bad = ["differ", "lost", "free cluster", "Free cluster", "Orphan"]
            .iter()
            .any(|w| text.contains(w));
        assert!(
            out.status.success() && clean && !bad,
            "fsck.fat {when}:\n{text}"
        );
    }

    /// The file's bytes as mtools reads them.
    fn read(&self, path: &str) -> Vec<u8> {
        self.mt("mcopy", &[&format!("::{path}"), "-"])
    }

    /// `mdir -a` of a directory.
    fn mdir(&self, dir: &str) -> String {
        String::from_utf8(self.mt("mdir", &["-a", &format!("::{dir}")])).unwrap()
    }

    /// Free bytes as `mdir` reports them (FAT32: from FSInfo).
    fn mdir_free(&self) -> u64 {
        let text = self.mdir("/");
        let line = text
            .lines()
            .find(|l| l.contains("bytes free"))
            .unwrap_or_else(|| panic!("no free count in\n{text}"));
        line.replace("bytes free", "")
            .chars()
            .filter(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    }
}

/// Writes `data` as the file at `ext`: through [`FileStore`] when it is
/// whole sectors, else sector by sector into its runs.
fn fill(d: &mut MemDisk, ext: &FileExtents, data: &[u8]) {
    assert_eq!(ext.len, data.len() as u64);
    if data.len().is_multiple_of(512) {
        let mut s = FileStore::new(core::mem::replace(d, MemDisk::new(0)), ext.clone()).unwrap();
        s.write(0, data).unwrap();
        assert_eq!(read_all(&mut s), data);
        *d = s.into_inner();
        return;
    }
    for r in &ext.runs {
        let from = (r.file_sector * 512) as usize;
        let to = ((r.file_sector + r.sectors) * 512) as usize;
        let mut buf = data[from..to.min(data.len())].to_vec();
        buf.resize(to - from, 0);
        d.write(r.dev_sector, &buf).unwrap();
    }
}

/// The file's bytes as the reader sees them.
fn vol_read(v: &Volume, d: &mut MemDisk, path: &str) -> Vec<u8> {
    let ext = v.open(d, path).unwrap();
    let mut out = Vec::new();
    for r in &ext.runs {
        let mut b = vec![0u8; r.sectors as usize * 512];
        d.read(r.dev_sector, &mut b).unwrap();
        out.extend_from_slice(&b);
    }
    out.truncate(ext.len as usize);
    out
}

/// FSInfo's free count (FAT32).
fn fsinfo_free(v: &Volume, d: &MemDisk) -> Option<u32> {
    let at = (v.base + v.geo.fsinfo?) as usize + 488;
    Some(u32::from_le_bytes(d.data[at..at + 4].try_into().unwrap()))
}

/// Creates, writes, grows, shrinks, replaces and removes files in the
/// root and a subdirectory of `img`, checking with fsck and mtools after
/// each step.
fn exercise_writes(img: &Img, kind: FatKind) {
    img.mt("mmd", &["::/sub"]);
    let mut d = img.disk();
    let mut v = Volume::find(&mut d).unwrap();
    assert_eq!((v.kind(), v.first_sector()), (kind, img.first));
    let cb = v.cluster_bytes();
    let fresh = v.free_bytes(&mut d).unwrap();
    assert_eq!(fresh, img.mdir_free());
    // A file made by mtools, to be replaced.
    let old = Temp::new("fatw", "old");
    fs::write(&old.0, pattern(10_000, 1)).unwrap();
    img.mt("mcopy", &[old.0.to_str().unwrap(), "::/old.bin"]);
    let mut d = img.disk();
    let with_old = v.free_bytes(&mut d).unwrap();
    assert_eq!(with_old, fresh - 10_000u64.div_ceil(cb) * cb);

    let files: &[(&str, usize)] = &[
        ("/README.TXT", 1000),
        ("/guest.save", 64 * 1024),
        ("/sub/A Long Name For A Save File.bin", 3 * 4096 + 17),
        ("/sub/X.DAT", 0),
        ("/sub/ünïcödé näme.img", 512 * 7),
        ("/old.bin", 20_000),
    ];
    let mut want = BTreeMap::new();
    for (i, &(path, len)) in files.iter().enumerate() {
        let ext = v.create(&mut d, path, len as u64, now()).unwrap();
        let data = pattern(len, 100 + i as u64);
        fill(&mut d, &ext, &data);
        want.insert(path, data);
    }
    let used: u64 = want
        .values()
        .map(|c| (c.len() as u64).div_ceil(cb) * cb)
        .sum();
    assert_eq!(v.free_bytes(&mut d).unwrap(), fresh - used);
    if kind == FatKind::Fat32 {
        assert_eq!(u64::from(fsinfo_free(&v, &d).unwrap()) * cb, fresh - used);
    }
    img.save(&d);
    img.fsck("after create");
    assert_eq!(img.mdir_free(), fresh - used);
    for (path, data) in &want {
        assert!(&img.read(path) == data, "{path} reads back different");
        assert_eq!(&vol_read(&v, &mut d, path), data);
    }
    let root = img.mdir("/");
    assert!(root.contains("guest.save"), "{root}");
    assert!(root.contains("README   TXT"), "{root}");
    let sub = img.mdir("/sub");
    assert!(sub.contains("A Long Name For A Save File.bin"), "{sub}");
    assert!(sub.contains("ünïcödé näme.img"), "{sub}");
    // Short names: README.TXT alone, the rest with aliases.
    let l = v.list(&mut d, "/").unwrap();
    let names: Vec<(&str, &str)> = l
        .iter()
        .map(|e| (e.name.as_str(), e.short_name.as_str()))
        .collect();
    assert!(names.contains(&("README.TXT", "README.TXT")), "{names:?}");
    assert!(names.contains(&("guest.save", "GUEST~1.SAV")), "{names:?}");
    assert!(names.contains(&("old.bin", "old.bin")), "{names:?}");

    // Grow, keeping the contents; the new end written too.
    let g = want.get_mut("/guest.save").unwrap();
    let ext = v.set_len(&mut d, "/guest.save", 200 * 1024, now()).unwrap();
    g.extend(pattern(200 * 1024 - g.len(), 55));
    fill(&mut d, &ext, g);
    assert!(ext.runs.len() <= 2, "{:?}", ext.runs);
    // Shrink to an odd size, and one file to nothing.
    let ext = v.set_len(&mut d, "/sub/A Long Name For A Save File.bin", 5000, now());
    want.get_mut("/sub/A Long Name For A Save File.bin")
        .unwrap()
        .truncate(5000);
    assert_eq!(ext.unwrap().len, 5000);
    v.set_len(&mut d, "/README.TXT", 0, now()).unwrap();
    want.get_mut("/README.TXT").unwrap().clear();
    // Grow an empty file.
    let ext = v.set_len(&mut d, "/sub/X.DAT", 3000, now()).unwrap();
    let x = pattern(3000, 66);
    fill(&mut d, &ext, &x);
    want.insert("/sub/X.DAT", x);
    let used: u64 = want
        .values()
        .map(|c| (c.len() as u64).div_ceil(cb) * cb)
        .sum();
    assert_eq!(v.free_bytes(&mut d).unwrap(), fresh - used);
    img.save(&d);
    img.fsck("after set_len");
    assert_eq!(img.mdir_free(), fresh - used);
    for (path, data) in &want {
        assert!(&img.read(path) == data, "{path} reads back different");
    }

    // Errors: directories, missing files, bad names.
    assert_eq!(
        v.create(&mut d, "/SUB", 0, now()),
        Err(FatError::IsADirectory("/SUB".into()))
    );
    assert_eq!(
        v.remove(&mut d, "/sub"),
        Err(FatError::IsADirectory("/sub".into()))
    );
    assert!(matches!(
        v.create(&mut d, "/nodir/x", 0, now()),
        Err(FatError::NotFound(_))
    ));
    assert!(matches!(
        v.create(&mut d, "/old.bin/x", 0, now()),
        Err(FatError::NotADirectory(_))
    ));
    assert!(matches!(
        v.remove(&mut d, "/none"),
        Err(FatError::NotFound(_))
    ));
    assert!(matches!(
        v.create(&mut d, "/big", 1 << 32, now()),
        Err(FatError::FileTooLarge { .. })
    ));

    // Remove everything; the free count comes back.
    for path in want.keys() {
        v.remove(&mut d, path).unwrap();
    }
    assert_eq!(v.free_bytes(&mut d).unwrap(), fresh);
    assert!(v.list(&mut d, "/sub").unwrap().is_empty());
    img.save(&d);
    img.fsck("after remove");
    assert_eq!(img.mdir_free(), fresh);
}

#[test]
fn fat12_writes() {
    if tools() {
        exercise_writes(&Img::mkfs(&["-F", "12", "-s", "1"], 1536), FatKind::Fat12);
    }
}

#[test]
fn fat16_writes() {
    if tools() {
        exercise_writes(&Img::mkfs(&["-F", "16", "-s", "1"], 8192), FatKind::Fat16);
    }
}

#[test]
fn fat32_writes() {
    if tools() {
        exercise_writes(&Img::mkfs(&["-F", "32", "-s", "1"], 40960), FatKind::Fat32);
    }
}

#[test]
fn fat32_writes_in_mbr_partition() {
    if tools() {
        let img = Img::partitioned(&["-F", "32", "-s", "1"], "c", 40 * 1024);
        exercise_writes(&img, FatKind::Fat32);
    }
}

#[test]
fn fat16_writes_in_mbr_partition() {
    if tools() {
        let img = Img::partitioned(&["-F", "16", "-s", "4"], "e", 20 * 1024);
        exercise_writes(&img, FatKind::Fat16);
    }
}

/// `len` bytes cheap to make: a random 4 KiB block repeated, each 512
/// bytes stamped with its offset so misplaced sectors show.
fn contents(len: usize, seed: u64) -> Vec<u8> {
    let block = pattern(4096, seed);
    let mut v = Vec::with_capacity(len + 4096);
    while v.len() < len {
        v.extend_from_slice(&block);
    }
    v.truncate(len);
    for (i, s) in v.chunks_mut(512).enumerate() {
        let n = s.len().min(8);
        s[..n].copy_from_slice(&(i as u64).to_le_bytes()[..n]);
    }
    v
}

/// A disk that counts the writes made to it.
struct Counting<'a> {
    d: &'a mut MemDisk,
    writes: u32,
    flushes: u32,
}

impl BlockStore for Counting<'_> {
    fn sectors(&self) -> u64 {
        self.d.sectors()
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.d.read(sector, buf)
    }
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), IoError> {
        self.writes += 1;
        self.d.write(sector, data)
    }
    /// Counted, not done: a copy of the whole disk each time is slow.
    fn flush(&mut self) -> Result<(), IoError> {
        self.flushes += 1;
        Ok(())
    }
}

/// Runs `op` on `d` and checks it wrote nothing.
fn no_writes<T>(d: &mut MemDisk, op: impl FnOnce(&mut Counting) -> T) -> T {
    let mut c = Counting {
        d,
        writes: 0,
        flushes: 0,
    };
    let r = op(&mut c);
    assert_eq!(
        (c.writes, c.flushes),
        (0, 0),
        "a failed operation wrote to the disk"
    );
    r
}

#[test]
fn fat_write_aliases_and_names() {
    if !tools() {
        return;
    }
    let img = Img::mkfs(&["-F", "16", "-s", "1"], 8192);
    img.mt("mmd", &["::/d"]);
    // mtools' own file takes GUEST~1.SAV first.
    let f = Temp::new("fatw", "x");
    fs::write(&f.0, b"mtools").unwrap();
    img.mt("mcopy", &[f.0.to_str().unwrap(), "::/d/guest.savx"]);
    let mut d = img.disk();
    let mut v = Volume::find(&mut d).unwrap();
    let long255 = "n".repeat(251) + ".bin";
    let names = [
        "guest.save",
        "guest.saved",
        "Guest.Save2",
        "guest.sav",
        "GUEST.SAVE3",
        "a b.c",
        ".hidden",
        "x.tar.gz",
        "lower",
        "MiXeD.TxT",
        "Ω.bin",
        "plus+sign;=x,y.img",
        long255.as_str(),
        "UPPER8.EXT",
    ];
    let mut want = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let data = pattern(100 * i + 1, i as u64);
        let ext = v
            .create(&mut d, &format!("/d/{n}"), data.len() as u64, now())
            .unwrap();
        fill(&mut d, &ext, &data);
        want.push((n, data));
    }
    let list = v.list(&mut d, "/d").unwrap();
    assert_eq!(list.len(), names.len() + 1);
    let short_of = |n: &str| {
        list.iter()
            .find(|e| e.name == n)
            .unwrap_or_else(|| panic!("{n} not listed: {list:?}"))
            .short_name
            .clone()
    };
    assert_eq!(short_of("guest.savx"), "GUEST~1.SAV");
    assert_eq!(short_of("guest.save"), "GUEST~2.SAV");
    assert_eq!(short_of("guest.saved"), "GUEST~3.SAV");
    assert_eq!(short_of("Guest.Save2"), "GUEST~4.SAV");
    assert_eq!(short_of("guest.sav"), "GUEST.SAV");
    assert_eq!(short_of("lower"), "LOWER");
    assert_eq!(short_of("x.tar.gz"), "XTAR~1.GZ");
    assert_eq!(short_of("UPPER8.EXT"), "UPPER8.EXT");
    let mut shorts: Vec<String> = list.iter().map(|e| e.short_name.to_uppercase()).collect();
    shorts.sort();
    shorts.dedup();
    assert_eq!(shorts.len(), list.len(), "aliases collide: {list:?}");
    img.save(&d);
    img.fsck("after creating aliased names");
    let dir = img.mdir("/d");
    for (n, data) in &want {
        let shown = if **n == "UPPER8.EXT" {
            "UPPER8   EXT"
        } else {
            n
        };
        assert!(dir.contains(shown), "mdir does not show {n}:\n{dir}");
        assert!(
            &img.read(&format!("/d/{n}")) == data,
            "{n} reads back different"
        );
        // Found by either name, in any case.
        let short = short_of(n);
        assert_eq!(
            &vol_read(&v, &mut d, &format!("/D/{}", short.to_lowercase())),
            data
        );
    }
    assert!(dir.contains("GUEST~4  SAV"), "{dir}");
    // The same name in other case (or its alias) is the same file: it is
    // replaced, its entry and name kept.
    let ext = v.create(&mut d, "/D/GUEST.SAVE", 2000, now()).unwrap();
    fill(&mut d, &ext, &pattern(2000, 99));
    let ext = v.create(&mut d, "/d/guest~3.sav", 10, now()).unwrap();
    fill(&mut d, &ext, b"0123456789");
    let after = v.list(&mut d, "/d").unwrap();
    assert_eq!(after.len(), list.len());
    let e = after.iter().find(|e| e.name == "guest.save").unwrap();
    assert_eq!((e.short_name.as_str(), e.size), ("GUEST~2.SAV", 2000));
    let e = after.iter().find(|e| e.name == "guest.saved").unwrap();
    assert_eq!((e.short_name.as_str(), e.size), ("GUEST~3.SAV", 10));
    img.save(&d);
    img.fsck("after replacing by other names");
    assert!(img.read("/d/guest.save") == pattern(2000, 99));
    assert_eq!(img.read("/d/guest.saved"), b"0123456789");
    // Names FAT cannot hold; nothing written.
    let long256 = "x".repeat(256);
    for bad in [
        "",
        ".",
        "..",
        "a:b",
        "a*b",
        "q?",
        "a\"b",
        "a<b",
        "a>b",
        "a|b",
        "a\\b",
        "ctl\u{1}x",
        "dot.",
        "space ",
        &long256,
    ] {
        let r = no_writes(&mut d, |d| v.create(d, &format!("/d/{bad}"), 1, now()));
        assert!(matches!(r, Err(FatError::BadName { .. })), "{bad:?}: {r:?}");
        std::println!("{}", r.unwrap_err());
    }
}

#[test]
fn fat_write_directory_growth_and_full_root() {
    if !tools() {
        return;
    }
    // FAT16 with 512-byte clusters (16 entries each) and a 32-entry root.
    let img = Img::mkfs(&["-F", "16", "-s", "1", "-r", "32"], 8192);
    img.mt("mmd", &["::/sub"]);
    let mut d = img.disk();
    let mut v = Volume::find(&mut d).unwrap();
    let fresh = v.free_bytes(&mut d).unwrap();
    let name = |i: usize| format!("a rather long file name, number {i:03}.save");
    for i in 0..60 {
        let ext = v
            .create(&mut d, &format!("/sub/{}", name(i)), 700, now())
            .unwrap();
        fill(&mut d, &ext, &pattern(700, i as u64));
    }
    // 60 files x 5 slots + 2 = 302 slots: 19 clusters of directory.
    let dir_grown = fresh - v.free_bytes(&mut d).unwrap() - 60 * 1024;
    assert_eq!(dir_grown, 18 * 512);
    // Deleted slots are reused: no more growth.
    for i in (0..60).step_by(3) {
        v.remove(&mut d, &format!("/sub/{}", name(i))).unwrap();
    }
    let before = v.free_bytes(&mut d).unwrap();
    for i in (0..60).step_by(3) {
        v.create(&mut d, &format!("/sub/{}", name(i + 100)), 0, now())
            .unwrap();
    }
    assert_eq!(v.free_bytes(&mut d).unwrap(), before);
    img.save(&d);
    img.fsck("after growing a directory");
    let dir = img.mdir("/sub");
    for i in 0..60 {
        let n = if i % 3 == 0 { name(i + 100) } else { name(i) };
        assert!(dir.contains(&n), "{n} missing:\n{dir}");
    }
    assert!(img.read(&format!("/sub/{}", name(59))) == pattern(700, 59));
    // The fixed root fills up: 1 entry for sub, 6 files of 5 slots.
    let mut made = 0;
    let err = loop {
        match v.create(&mut d, &format!("/{}", name(made)), 10, now()) {
            Ok(_) => made += 1,
            Err(e) => break e,
        }
        assert!(made < 100);
    };
    assert_eq!(made, 6);
    assert_eq!(err, FatError::RootFull { entries: 32 });
    // A short name still fits in the last slot; then nothing does.
    v.create(&mut d, "/S1", 0, now()).unwrap();
    let r = no_writes(&mut d, |d| v.create(d, "/S2", 0, now()));
    assert_eq!(r, Err(FatError::RootFull { entries: 32 }));
    img.save(&d);
    img.fsck("with a full root");
    // FAT32's root is a chain: it grows.
    let img = Img::mkfs(&["-F", "32", "-s", "1"], 40960);
    let mut d = img.disk();
    let mut v = Volume::find(&mut d).unwrap();
    // A big file on a fresh volume is one run.
    let ext = v.create(&mut d, "/big.save", 30 << 20, now()).unwrap();
    assert_eq!(ext.runs.len(), 1, "{:?}", ext.runs);
    for i in 0..40 {
        v.create(&mut d, &format!("/{}", name(i)), 1, now())
            .unwrap();
    }
    let l = v.list(&mut d, "/").unwrap();
    assert_eq!(l.len(), 41, "{l:#?}");
    img.save(&d);
    img.fsck("after growing FAT32's root");
    let root = img.mdir("/");
    assert!(root.contains(&name(39)), "{root}");
}

#[test]
fn fat_write_out_of_space() {
    if !tools() {
        return;
    }
    let img = Img::mkfs(&["-F", "12", "-s", "1"], 1536);
    img.mt("mmd", &["::/sub"]);
    let mut d = img.disk();
    let mut v = Volume::find(&mut d).unwrap();
    let free = v.free_bytes(&mut d).unwrap();
    let before = d.data.clone();
    let r = no_writes(&mut d, |d| v.create(d, "/big.img", free + 1, now()));
    assert_eq!(
        r,
        Err(FatError::NoSpace {
            free,
            needed: free + 512
        })
    );
    assert_eq!(
        r.unwrap_err().to_string(),
        format!(
            "no space left on the FAT file system: {free} bytes free, {} needed",
            free + 512
        )
    );
    assert!(d.data == before);
    // Fill it; then even a directory that must grow finds no cluster.
    for i in 0..14 {
        v.create(&mut d, &format!("/sub/F{i}"), 0, now()).unwrap();
    }
    let ext = v.create(&mut d, "/big.img", free, now()).unwrap();
    assert_eq!(ext.runs.len(), 1, "{:?}", ext.runs);
    fill(&mut d, &ext, &pattern(free as usize, 3));
    assert_eq!(v.free_bytes(&mut d).unwrap(), 0);
    let full = d.data.clone();
    for r in [
        no_writes(&mut d, |d| v.create(d, "/more", 1, now()).map(drop)),
        no_writes(&mut d, |d| v.create(d, "/sub/F14", 0, now()).map(drop)),
        no_writes(&mut d, |d| {
            v.set_len(d, "/big.img", free + 1, now()).map(drop)
        }),
    ] {
        assert!(matches!(r, Err(FatError::NoSpace { free: 0, .. })), "{r:?}");
    }
    assert!(d.data == full);
    // Empty files need no cluster; a replacement reuses the old ones.
    v.create(&mut d, "/empty", 0, now()).unwrap();
    let ext = v.create(&mut d, "/BIG.IMG", free, now()).unwrap();
    fill(&mut d, &ext, &pattern(free as usize, 4));
    img.save(&d);
    img.fsck("when full");
    assert!(img.read("/big.img") == pattern(free as usize, 4));
    v.remove(&mut d, "/big.img").unwrap();
    assert_eq!(v.free_bytes(&mut d).unwrap(), free);
}

/// `count` random creates, resizes and removes on `img`, checked against
/// a model, then by fsck and mtools.
fn random_ops(img: &Img, seed: u64, count: usize, max_len: u64) {
    img.mt("mmd", &["::/sub", "::/sub/deep"]);
    let mut d = img.disk();
    let mut v = Volume::find(&mut d).unwrap();
    let fresh = v.free_bytes(&mut d).unwrap();
    let cb = v.cluster_bytes();
    let paths = [
        "/A.BIN",
        "/b.bin",
        "/Some Long Name.dat",
        "/sub/X",
        "/sub/another long file name here.img",
        "/sub/deep/f.txt",
        "/sub/deep/F2.TXT",
        "/sub/deep/Ωmega.save",
        "/guest.save",
        "/guest.saved",
    ];
    let mut model: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    let mut r = Rng(seed);
    let (mut nospace, mut done) = (0, 0);
    for step in 0..count {
        let path = paths[r.below(paths.len() as u64) as usize];
        let len = match r.below(4) {
            0 => r.below(3) * 512,
            _ => r.below(max_len),
        };
        let op = r.below(3);
        let mut c = Counting {
            d: &mut d,
            writes: 0,
            flushes: 0,
        };
        let res = match (op, model.contains_key(path)) {
            (0, _) => v.create(&mut c, path, len, now()).map(Some),
            (1, true) => v.set_len(&mut c, path, len, now()).map(Some),
            (_, true) => v.remove(&mut c, path).map(|_| None),
            (_, false) => {
                let e = v.remove(&mut c, path);
                assert!(matches!(e, Err(FatError::NotFound(_))), "{e:?}");
                continue;
            }
        };
        let writes = c.writes;
        match res {
            Ok(Some(ext)) => {
                let mut data = if op == 1 {
                    model[path].clone()
                } else {
                    Vec::new()
                };
                let keep = data.len().min(len as usize);
                data.truncate(keep);
                data.extend(contents(len as usize - keep, r.next()));
                fill(&mut d, &ext, &data);
                model.insert(path, data);
                done += 1;
            }
            Ok(None) => {
                model.remove(path);
                done += 1;
            }
            Err(FatError::NoSpace { .. }) => {
                assert_eq!(writes, 0, "step {step}: NoSpace after writing");
                nospace += 1;
            }
            Err(e) => panic!("step {step}: {path}: {e}"),
        }
        if step % 50 == 0 || step + 1 == count {
            for (p, data) in &model {
                assert!(&vol_read(&v, &mut d, p) == data, "step {step}: {p}");
            }
            let used: u64 = model
                .values()
                .map(|c| (c.len() as u64).div_ceil(cb) * cb)
                .sum();
            assert!(v.free_bytes(&mut d).unwrap() <= fresh - used);
        }
    }
    assert!(nospace > 0 && done > count / 3, "{nospace} / {done}");
    img.save(&d);
    img.fsck("after random operations");
    for (p, data) in &model {
        assert!(&img.read(p) == data, "{p} reads back different");
    }
    assert_eq!(img.mdir_free(), v.free_bytes(&mut d).unwrap());
    for p in model.keys() {
        v.remove(&mut d, p).unwrap();
    }
    // Only the directories' growth is left.
    let left = fresh - v.free_bytes(&mut d).unwrap();
    assert!(left <= 4 * cb, "{left}");
}

#[test]
fn fat12_random_writes() {
    if tools() {
        random_ops(
            &Img::mkfs(&["-F", "12", "-s", "1"], 1536),
            0x5EED,
            300,
            600 * 1024,
        );
    }
}

#[test]
fn fat32_random_writes() {
    if tools() {
        random_ops(
            &Img::mkfs(&["-F", "32", "-s", "1"], 36000),
            0xF32,
            300,
            16 << 20,
        );
    }
}

/// The clusters of `path`, from its extents.
fn clusters_of(v: &Volume, d: &mut MemDisk, path: &str) -> Vec<u32> {
    let ext = v.open(d, path).unwrap();
    let cb = v.cluster_bytes();
    let mut out = Vec::new();
    for r in &ext.runs {
        let first = (r.dev_sector * 512 - v.base - v.geo.data_start) / cb + 2;
        for i in 0..(r.sectors * 512).div_ceil(cb) {
            out.push((first + i) as u32);
        }
    }
    out
}

/// Sets FAT16 entry `c` in every FAT.
fn poke_fat16(v: &Volume, d: &mut MemDisk, c: u32, val: u16) {
    for k in 0..v.geo.nfats {
        let at = (v.base + v.geo.fats_start + k * v.geo.fat_bytes) as usize + 2 * c as usize;
        d.data[at..at + 2].copy_from_slice(&val.to_le_bytes());
    }
}

/// Points the root entry with short name `short` at `cluster`, `size`.
fn poke_root(v: &Volume, d: &mut MemDisk, short: &[u8; 11], cluster: u32, size: u32) {
    let bpb::Root::Fixed { start, entries } = v.geo.root else {
        panic!("not FAT12/16")
    };
    let root = (v.base + start) as usize;
    let e = (0..entries as usize)
        .map(|i| root + i * 32)
        .find(|&at| &d.data[at..at + 11] == short)
        .unwrap();
    d.data[e + 26..e + 28].copy_from_slice(&(cluster as u16).to_le_bytes());
    d.data[e + 28..e + 32].copy_from_slice(&size.to_le_bytes());
}

#[test]
fn fat_write_damaged_fat() {
    if !tools() {
        return;
    }
    let img = Img::mkfs(&["-F", "16", "-s", "1"], 8192);
    img.mt("mmd", &["::/sub"]);
    let mut good = img.disk();
    let mut v = Volume::find(&mut good).unwrap();
    for (p, n) in [
        ("/A.BIN", 1536),
        ("/B.BIN", 1024),
        ("/C.BIN", 0),
        ("/D.BIN", 512),
    ] {
        v.create(&mut good, p, n, now()).unwrap();
    }
    let a = clusters_of(&v, &mut good, "/A.BIN");
    let b = clusters_of(&v, &mut good, "/B.BIN");
    assert_eq!((a.len(), b.len()), (3, 2));
    // Every operation on `paths` must fail with `want` and write nothing.
    let check =
        |d: &mut MemDisk, v: &mut Volume, paths: &[&str], want: &dyn Fn(&FatError) -> bool| {
            for p in paths {
                let rs = [
                    no_writes(d, |d| v.remove(d, p)),
                    no_writes(d, |d| v.set_len(d, p, 512, now()).map(drop)),
                    no_writes(d, |d| v.set_len(d, p, 8192, now()).map(drop)),
                    no_writes(d, |d| v.create(d, p, 4096, now()).map(drop)),
                ];
                for r in rs {
                    assert!(r.as_ref().is_err_and(want), "{p}: {r:?}");
                }
            }
        };
    // A loop.
    let mut d = good.clone();
    poke_fat16(&v, &mut d, a[2], a[0] as u16);
    check(&mut d, &mut v, &["/A.BIN"], &|e| {
        matches!(
            e,
            FatError::Chain {
                problem: ChainProblem::Loop,
                ..
            }
        )
    });
    // Out of range, free and bad in the middle of a chain.
    for (val, problem) in [
        (0xFFF0, ChainProblem::OutOfRange { cluster: 0xFFF0 }),
        (0, ChainProblem::Free { after: a[0] }),
        (0xFFF7, ChainProblem::Bad { after: a[0] }),
    ] {
        let mut d = good.clone();
        poke_fat16(&v, &mut d, a[0], val);
        check(&mut d, &mut v, &["/A.BIN"], &|e| {
            *e == FatError::Chain {
                path: "/A.BIN".into(),
                problem: problem.clone(),
            }
        });
    }
    // B's chain runs into A's: both are cross-linked.
    let mut d = good.clone();
    poke_fat16(&v, &mut d, b[1], a[2] as u16);
    poke_root(&v, &mut d, b"B       BIN", b[0], 1536);
    check(
        &mut d,
        &mut v,
        &["/A.BIN", "/B.BIN"],
        &|e| matches!(e, FatError::CrossLinked { cluster, .. } if *cluster == a[2]),
    );
    // C's entry starts inside A's chain.
    let mut d = good.clone();
    poke_root(&v, &mut d, b"C       BIN", a[1], 1024);
    check(
        &mut d,
        &mut v,
        &["/A.BIN", "/C.BIN"],
        &|e| matches!(e, FatError::CrossLinked { cluster, .. } if *cluster == a[1]),
    );
    // Two entries with the same first cluster.
    let mut d = good.clone();
    poke_root(&v, &mut d, b"C       BIN", a[0], 1536);
    check(
        &mut d,
        &mut v,
        &["/A.BIN", "/C.BIN"],
        &|e| matches!(e, FatError::CrossLinked { cluster, .. } if *cluster == a[0]),
    );
    // A's chain runs on into a directory: neither A nor a file in the
    // directory may change.
    let mut d = good.clone();
    let sub = v.resolve(&mut d, "/sub").unwrap().unwrap().cluster;
    poke_fat16(&v, &mut d, a[2], sub as u16);
    poke_root(&v, &mut d, b"A       BIN", a[0], 2048);
    let cross =
        |e: &FatError| matches!(e, FatError::CrossLinked { cluster, .. } if *cluster == sub);
    check(&mut d, &mut v, &["/A.BIN"], &cross);
    let r = no_writes(&mut d, |d| v.create(d, "/sub/new.bin", 1, now()));
    assert!(r.as_ref().is_err_and(cross), "{r:?}");
    // A chain into a cluster the FAT calls free: that cluster is never
    // handed out (so "all free space" is one cluster short).
    let mut d = good.clone();
    let dd = clusters_of(&v, &mut d, "/D.BIN");
    poke_fat16(&v, &mut d, dd[0], 0);
    poke_root(&v, &mut d, b"D       BIN", 0, 0);
    poke_fat16(&v, &mut d, b[1], dd[0] as u16);
    let free = v.free_bytes(&mut d).unwrap();
    let r = no_writes(&mut d, |d| v.create(d, "/E.BIN", free, now()));
    assert_eq!(
        r,
        Err(FatError::NoSpace {
            free: free - 512,
            needed: free
        })
    );
    let ext = v.create(&mut d, "/E.BIN", free - 512, now()).unwrap();
    assert!(
        !clusters_of(&v, &mut d, "/E.BIN").contains(&dd[0]),
        "{ext:?}"
    );
}

#[test]
fn fat_write_random_damage_never_panics() {
    if !tools() {
        return;
    }
    let img = Img::mkfs(&["-F", "12", "-s", "1"], 1024);
    img.mt("mmd", &["::/sub"]);
    let mut good = img.disk();
    let mut v = Volume::find(&mut good).unwrap();
    let paths = ["/a.bin", "/B.BIN", "/sub/c long.bin", "/sub/D"];
    for (i, p) in paths.iter().enumerate() {
        v.create(&mut good, p, 700 * i as u64 + 100, now()).unwrap();
    }
    let meta = v.base + v.geo.data_start + 4 * v.geo.cluster;
    let mut r = Rng(0xDA4A6E);
    let mut ok = 0;
    for _ in 0..300 {
        let mut d = good.clone();
        for _ in 0..1 + r.below(8) {
            let at = 512 + r.below(meta - 512) as usize;
            d.data[at] = r.next() as u8;
        }
        let Ok(mut v) = Volume::find(&mut d) else {
            continue;
        };
        for _ in 0..4 {
            let p = paths[r.below(4) as usize];
            let len = r.below(20_000);
            let res = match r.below(4) {
                0 => v.create(&mut d, p, len, now()).map(drop),
                1 => v.set_len(&mut d, p, len, now()).map(drop),
                2 => v.remove(&mut d, p),
                _ => v.free_bytes(&mut d).map(drop),
            };
            ok += usize::from(res.is_ok());
        }
    }
    assert!(ok > 0);
}

/// What an operation did to the disk, in order.
enum Event {
    Write(u64, Vec<u8>),
    Flush,
}

/// A disk that records its writes and flushes.
struct Recorder<'a> {
    d: &'a mut MemDisk,
    log: Vec<Event>,
}

impl BlockStore for Recorder<'_> {
    fn sectors(&self) -> u64 {
        self.d.sectors()
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.d.read(sector, buf)
    }
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), IoError> {
        self.log.push(Event::Write(sector, data.to_vec()));
        self.d.write(sector, data)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        self.log.push(Event::Flush);
        Ok(())
    }
}

/// Every disk a power cut during an operation could leave: everything
/// before some flush, plus any subset of the writes after it up to the
/// next one (a write cache may reorder them).
fn crash_states(before: &MemDisk, log: &[Event]) -> Vec<MemDisk> {
    let epochs: Vec<Vec<(u64, &[u8])>> = log
        .split(|e| matches!(e, Event::Flush))
        .map(|ep| {
            ep.iter()
                .filter_map(|e| match e {
                    Event::Write(s, d) => Some((*s, d.as_slice())),
                    Event::Flush => None,
                })
                .collect()
        })
        .collect();
    let mut out = Vec::new();
    let mut base = before.clone();
    for ep in &epochs {
        assert!(ep.len() <= 8, "{} writes between two flushes", ep.len());
        for mask in 0u32..1 << ep.len() {
            let mut d = base.clone();
            for (i, (s, data)) in ep.iter().enumerate() {
                if mask >> i & 1 != 0 {
                    d.write(*s, data).unwrap();
                }
            }
            out.push(d);
        }
        for (s, data) in ep {
            base.write(*s, data).unwrap();
        }
    }
    out
}

#[test]
fn fat_write_crash_never_cross_links() {
    if !tools() {
        return;
    }
    let img = Img::mkfs(&["-F", "12", "-s", "1"], 1024);
    img.mt("mmd", &["::/sub"]);
    let mut d = img.disk();
    let mut v = Volume::find(&mut d).unwrap();
    // A bystander that must survive every crash, and a nearly full
    // subdirectory (14 of 16 slots) so the next long name grows it.
    let keep = pattern(3000, 1);
    let ext = v.create(&mut d, "/keep.bin", 3000, now()).unwrap();
    fill(&mut d, &ext, &keep);
    for i in 0..12 {
        v.create(&mut d, &format!("/sub/F{i}"), 0, now()).unwrap();
    }
    type Op = fn(&mut Volume, &mut Recorder) -> Result<(), FatError>;
    let ops: [(&str, Op); 6] = [
        ("create growing a directory", |v, r| {
            v.create(r, "/sub/a long name.save", 5000, now()).map(drop)
        }),
        ("create", |v, r| {
            v.create(r, "/guest.save", 4000, now()).map(drop)
        }),
        ("replace", |v, r| {
            v.create(r, "/GUEST.SAVE", 6000, now()).map(drop)
        }),
        ("grow", |v, r| {
            v.set_len(r, "/guest.save", 9000, now()).map(drop)
        }),
        ("shrink", |v, r| {
            v.set_len(r, "/guest.save", 1000, now()).map(drop)
        }),
        ("remove", |v, r| v.remove(r, "/guest.save")),
    ];
    let vol = Temp::new("fatw", "crash");
    let mut states = 0;
    for (what, op) in ops {
        let before = d.clone();
        let mut r = Recorder {
            d: &mut d,
            log: Vec::new(),
        };
        op(&mut v, &mut r).unwrap();
        let log = r.log;
        assert!(
            matches!(log.last(), Some(Event::Flush)),
            "{what}: no final flush"
        );
        for (i, s) in crash_states(&before, &log).iter().enumerate() {
            states += 1;
            fs::write(&vol.0, &s.data).unwrap();
            let out = Command::new("fsck.fat")
                .arg("-n")
                .arg(&vol.0)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            for bad in ["share", "free cluster", "Contains a", "bad cluster", "Bad"] {
                assert!(!text.contains(bad), "{what}, crash state {i}:\n{text}");
            }
            let mut s = s.clone();
            let cv = Volume::find(&mut s).unwrap();
            assert!(
                vol_read(&cv, &mut s, "/keep.bin") == keep,
                "{what}, state {i}"
            );
        }
    }
    assert!(states > 30, "{states}");
}

/// A disk with 4 KiB sectors that refuses anything unaligned.
struct Strict4k<'a>(&'a mut MemDisk);

impl BlockStore for Strict4k<'_> {
    fn sectors(&self) -> u64 {
        self.0.sectors()
    }
    fn sector_size(&self) -> u32 {
        4096
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        assert!(
            sector.is_multiple_of(8) && buf.len().is_multiple_of(4096),
            "unaligned read"
        );
        self.0.read(sector, buf)
    }
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), IoError> {
        assert!(
            sector.is_multiple_of(8) && data.len().is_multiple_of(4096),
            "unaligned write"
        );
        self.0.write(sector, data)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        Ok(())
    }
}

#[test]
fn fat_write_4k_sector_disk() {
    if !tools() {
        return;
    }
    // 512-byte FAT sectors on a 4 KiB-sector disk (every write merges),
    // then 4 KiB ones.
    for args in [
        &["-F", "16", "-s", "8"][..],
        &["-F", "16", "-S", "4096", "-s", "1"],
    ] {
        let img = Img::mkfs(args, 40960);
        img.mt("mmd", &["::/sub"]);
        let mut d = img.disk();
        let mut s = Strict4k(&mut d);
        let mut v = Volume::find(&mut s).unwrap();
        let fresh = v.free_bytes(&mut s).unwrap();
        v.create(&mut s, "/sub/a long name.save", 100_000, now())
            .unwrap();
        v.create(&mut s, "/B.BIN", 5000, now()).unwrap();
        v.set_len(&mut s, "/sub/a long name.save", 300_000, now())
            .unwrap();
        v.set_len(&mut s, "/B.BIN", 1, now()).unwrap();
        v.remove(&mut s, "/B.BIN").unwrap();
        let used = 300_000u64.div_ceil(v.cluster_bytes()) * v.cluster_bytes();
        assert_eq!(v.free_bytes(&mut s).unwrap(), fresh - used);
        img.save(&d);
        img.fsck("on a 4 KiB-sector disk");
        assert!(img.mdir("/sub").contains("a long name.save"));
        assert_eq!(img.read("/sub/a long name.save").len(), 300_000);
        assert_eq!(img.mdir_free(), fresh - used);
    }
}
