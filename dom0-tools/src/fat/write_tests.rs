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
    if data.len() % 512 == 0 {
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
