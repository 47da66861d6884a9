//! A writer for cpio "newc" archives (the format of a Linux initramfs), used
//! for Dom0's boot ramdisk.
//!
//! Written by hand: the format is 110 bytes of ASCII hex per entry, and the
//! harness needs nothing but "write these files and directories".
//!
//! Each entry is a header of `070701` followed by 13 eight-digit hex fields
//! (ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
//! rdevmajor, rdevminor, namesize, check), then the NUL-terminated name,
//! padded to 4 bytes, then the data, padded to 4 bytes.  The archive ends
//! with an entry named `TRAILER!!!`.  Names are stored without a leading
//! `/` (`etc/oxen-release`), as Linux's `gen_init_cpio` writes them.

use std::collections::BTreeSet;
use std::fmt;

/// `S_IFREG`.
pub const MODE_FILE: u32 = 0o100000;
/// `S_IFDIR`.
pub const MODE_DIR: u32 = 0o040000;
/// The name of the final entry.
pub const TRAILER: &str = "TRAILER!!!";
/// The newc magic.
pub const MAGIC: &[u8; 6] = b"070701";

/// A problem with an entry's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpioError {
    /// The name is empty, has a NUL, a `.`/`..` component, or is the trailer's.
    BadName(String),
    /// The same path was added twice.
    Duplicate(String),
    /// A file is larger than the format's 32-bit size field.
    TooLarge(String),
}

impl fmt::Display for CpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpioError::BadName(n) => write!(f, "bad cpio entry name {n:?}"),
            CpioError::Duplicate(n) => write!(f, "{n:?} is already in the archive"),
            CpioError::TooLarge(n) => write!(f, "{n:?} is larger than 4 GiB"),
        }
    }
}

impl std::error::Error for CpioError {}

/// Builds a newc archive in memory.  Parent directories are added
/// automatically, before their first child.
#[derive(Debug, Default)]
pub struct CpioWriter {
    out: Vec<u8>,
    names: BTreeSet<String>,
    next_ino: u32,
    mtime: u32,
}

impl CpioWriter {
    /// An empty archive; every entry gets mtime 0 so builds are reproducible.
    pub fn new() -> Self {
        Self {
            out: Vec::new(),
            names: BTreeSet::new(),
            next_ino: 1,
            mtime: 0,
        }
    }

    /// Normalises `/etc/x` and `etc/x` to `etc/x`, rejecting odd names.
    fn normalise(path: &str) -> Result<String, CpioError> {
        let trimmed = path.trim_start_matches('/').trim_end_matches('/');
        let bad = trimmed.is_empty()
            || trimmed.contains('\0')
            || trimmed == TRAILER
            || trimmed
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..");
        if bad {
            return Err(CpioError::BadName(path.to_string()));
        }
        Ok(trimmed.to_string())
    }

    fn ensure_parents(&mut self, name: &str) -> Result<(), CpioError> {
        let mut prefix = String::new();
        let comps: Vec<&str> = name.split('/').collect();
        for comp in &comps[..comps.len() - 1] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(comp);
            if !self.names.contains(&prefix) {
                let p = prefix.clone();
                self.names.insert(p.clone());
                self.entry(&p, MODE_DIR | 0o755, 2, &[]);
            }
        }
        Ok(())
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, data: &[u8]) {
        let ino = if name == TRAILER { 0 } else { self.next_ino };
        if name != TRAILER {
            self.next_ino += 1;
        }
        let namesize = name.len() as u32 + 1;
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            self.mtime,
            data.len() as u32,
            0, // devmajor
            0, // devminor
            0, // rdevmajor
            0, // rdevminor
            namesize,
            0, // check
        ];
        self.out.extend_from_slice(MAGIC);
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        pad4(&mut self.out);
        self.out.extend_from_slice(data);
        pad4(&mut self.out);
    }

    /// Adds a directory (mode 0755).
    pub fn add_dir(&mut self, path: &str) -> Result<&mut Self, CpioError> {
        let name = Self::normalise(path)?;
        if self.names.contains(&name) {
            return Err(CpioError::Duplicate(name));
        }
        self.ensure_parents(&name)?;
        self.names.insert(name.clone());
        self.entry(&name, MODE_DIR | 0o755, 2, &[]);
        Ok(self)
    }

    /// Adds a regular file with the given permission bits (e.g. 0o644).
    pub fn add_file(&mut self, path: &str, perm: u32, data: &[u8]) -> Result<&mut Self, CpioError> {
        let name = Self::normalise(path)?;
        if self.names.contains(&name) {
            return Err(CpioError::Duplicate(name));
        }
        if u32::try_from(data.len()).is_err() {
            return Err(CpioError::TooLarge(name));
        }
        self.ensure_parents(&name)?;
        self.names.insert(name.clone());
        self.entry(&name, MODE_FILE | (perm & 0o7777), 1, data);
        Ok(self)
    }

    /// Writes the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry(TRAILER, 0, 1, &[]);
        self.out
    }
}

fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

/// One entry read back from an archive (for tests and diagnostics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub mode: u32,
    pub data: Vec<u8>,
}

/// Parses a newc archive up to its trailer.  Strict: any malformation is an error.
pub fn parse(mut buf: &[u8]) -> Result<Vec<Entry>, String> {
    let start_len = buf.len();
    let mut entries = Vec::new();
    loop {
        let off = start_len - buf.len();
        if buf.len() < 110 {
            return Err(format!("truncated header at offset {off}"));
        }
        if &buf[..6] != MAGIC {
            return Err(format!("bad magic at offset {off}"));
        }
        let mut fields = [0u32; 13];
        for (i, f) in fields.iter_mut().enumerate() {
            let hex =
                std::str::from_utf8(&buf[6 + i * 8..14 + i * 8]).map_err(|e| e.to_string())?;
            *f = u32::from_str_radix(hex, 16).map_err(|e| format!("field {i} at {off}: {e}"))?;
        }
        let (mode, filesize, namesize) = (fields[1], fields[6] as usize, fields[11] as usize);
        let name_end = 110 + namesize;
        let data_start = name_end.next_multiple_of(4);
        if buf.len() < data_start || namesize == 0 || buf[name_end - 1] != 0 {
            return Err(format!("bad name at offset {off}"));
        }
        let name = String::from_utf8(buf[110..name_end - 1].to_vec()).map_err(|e| e.to_string())?;
        let data_end = data_start + filesize;
        if buf.len() < data_end {
            return Err(format!("truncated data of {name:?}"));
        }
        if name == TRAILER {
            return Ok(entries);
        }
        entries.push(Entry {
            name,
            mode,
            data: buf[data_start..data_end].to_vec(),
        });
        let next = data_end.next_multiple_of(4);
        if buf.len() < next {
            return Err("missing padding".into());
        }
        buf = &buf[next..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_archive_is_just_the_trailer() {
        let a = CpioWriter::new().finish();
        // 110 header + 11 name bytes ("TRAILER!!!\0") = 121, padded to 124.
        assert_eq!(a.len(), 124);
        assert_eq!(&a[..6], b"070701");
        assert_eq!(&a[110..121], b"TRAILER!!!\0");
        assert!(parse(&a).unwrap().is_empty());
    }

    #[test]
    fn header_fields_are_exact() {
        let mut w = CpioWriter::new();
        w.add_file("/hello", 0o644, b"hi\n").unwrap();
        let a = w.finish();
        let hdr = std::str::from_utf8(&a[..110]).unwrap();
        assert_eq!(
            hdr,
            concat!(
                "070701", "00000001", "000081a4", "00000000", "00000000", "00000001", "00000000",
                "00000003", "00000000", "00000000", "00000000", "00000000", "00000006", "00000000"
            )
        );
        // Name "hello\0" ends at 116, already 4-aligned; data follows, padded to 120.
        assert_eq!(&a[110..116], b"hello\0");
        assert_eq!(&a[116..119], b"hi\n");
        assert_eq!(a[119], 0);
        assert_eq!(&a[120..126], b"070701");
    }

    #[test]
    fn round_trip_with_parents_and_alignment() {
        let mut w = CpioWriter::new();
        w.add_file("/etc/oxen-release", 0o644, b"Oxen 0.1.0\n")
            .unwrap();
        w.add_file("/guest.elf", 0o755, &[0x7f, b'E', b'L', b'F', 1])
            .unwrap();
        w.add_file("a/b/c", 0o600, b"").unwrap();
        let a = w.finish();
        assert_eq!(a.len() % 4, 0);
        let e = parse(&a).unwrap();
        let names: Vec<&str> = e.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["etc", "etc/oxen-release", "guest.elf", "a", "a/b", "a/b/c"]
        );
        assert_eq!(e[0].mode, MODE_DIR | 0o755);
        assert_eq!(e[1].mode, MODE_FILE | 0o644);
        assert_eq!(e[1].data, b"Oxen 0.1.0\n");
        assert_eq!(e[2].data, [0x7f, b'E', b'L', b'F', 1]);
        assert_eq!(e[2].mode, MODE_FILE | 0o755);
    }

    #[test]
    fn rejects_bad_and_duplicate_names() {
        let mut w = CpioWriter::new();
        assert!(matches!(
            w.add_file("", 0o644, b""),
            Err(CpioError::BadName(_))
        ));
        assert!(matches!(
            w.add_file("/", 0o644, b""),
            Err(CpioError::BadName(_))
        ));
        assert!(matches!(
            w.add_file("a/../b", 0o644, b""),
            Err(CpioError::BadName(_))
        ));
        assert!(matches!(
            w.add_file("TRAILER!!!", 0o644, b""),
            Err(CpioError::BadName(_))
        ));
        w.add_file("/x", 0o644, b"1").unwrap();
        assert!(matches!(
            w.add_file("x", 0o644, b"2"),
            Err(CpioError::Duplicate(_))
        ));
        w.add_dir("d").unwrap();
        assert!(matches!(w.add_dir("/d/"), Err(CpioError::Duplicate(_))));
    }

    #[test]
    fn system_cpio_agrees_when_installed() {
        // Cross-check against GNU cpio if this machine has it; our own parser
        // above is the real check, so this one only adds confidence.
        let Ok(out) = std::process::Command::new("cpio").arg("--version").output() else {
            eprintln!("cpio(1) not installed: cross-check skipped");
            return;
        };
        if !out.status.success() {
            return;
        }
        let mut w = CpioWriter::new();
        w.add_file("/etc/oxen-release", 0o644, b"Oxen 0.1.0\n")
            .unwrap();
        w.add_file("/odd-size", 0o644, b"12345").unwrap();
        let a = w.finish();
        let mut child = std::process::Command::new("cpio")
            .args(["-it", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&a).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "etc\netc/oxen-release\nodd-size\n"
        );
    }
}
