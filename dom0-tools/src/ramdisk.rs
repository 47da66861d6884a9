//! Reading Dom0's boot ramdisk: a cpio "newc" archive (the Linux initramfs
//! format, as `gen_init_cpio` and the test harness write it).
//!
//! Each entry is a 110-byte ASCII header — magic `070701` (or `070702`, the
//! CRC variant) and 13 eight-digit hex fields: ino, mode, uid, gid, nlink,
//! mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize,
//! check — then the NUL-terminated name, padded so the data starts on a
//! 4-byte boundary, then the data, padded to 4 bytes. The entry named
//! `TRAILER!!!` ends the archive.
//!
//! The ramdisk comes from outside Dom0, so the parser trusts nothing: every
//! offset is checked, every sum is checked, a bad archive is an error with
//! the offset where it went wrong, and nothing here can panic or read out of
//! bounds. Written by hand: it is a hundred lines, and no cpio crate parses
//! without an allocator.

#![forbid(unsafe_code)]

use core::fmt;

/// The newc magic.
pub const MAGIC_NEWC: &[u8; 6] = b"070701";
/// The newc-with-CRC magic.
pub const MAGIC_CRC: &[u8; 6] = b"070702";
/// Size of an entry header.
pub const HEADER_LEN: usize = 110;
/// Name of the last entry.
pub const TRAILER: &str = "TRAILER!!!";

/// File type bits of `mode`.
pub const S_IFMT: u32 = 0o170000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;

/// Header field names, in order, for error messages.
const FIELDS: [&str; 13] = [
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
];
const F_INO: usize = 0;
const F_MODE: usize = 1;
const F_UID: usize = 2;
const F_GID: usize = 3;
const F_NLINK: usize = 4;
const F_MTIME: usize = 5;
const F_FILESIZE: usize = 6;
const F_NAMESIZE: usize = 11;

/// What is wrong with an archive, and where (byte offset of the entry or field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpioError {
    /// The archive is empty.
    Empty,
    /// Fewer than 110 bytes left for a header.
    TruncatedHeader {
        /// Offset of the header.
        offset: usize,
    },
    /// The header does not start with `070701`/`070702`.
    BadMagic {
        /// Offset of the header.
        offset: usize,
    },
    /// A header field is not eight hex digits.
    BadField {
        /// Offset of the header.
        offset: usize,
        /// The field's name.
        field: &'static str,
    },
    /// The name is empty, runs past the archive, lacks its NUL, or is not UTF-8.
    BadName {
        /// Offset of the header.
        offset: usize,
    },
    /// The data runs past the end of the archive.
    TruncatedData {
        /// Offset of the header.
        offset: usize,
    },
    /// The archive ended without a `TRAILER!!!` entry.
    NoTrailer,
}

impl fmt::Display for CpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CpioError::Empty => f.write_str("empty archive"),
            CpioError::TruncatedHeader { offset } => {
                write!(f, "truncated header at offset {offset}")
            }
            CpioError::BadMagic { offset } => {
                write!(f, "bad magic at offset {offset} (not cpio newc)")
            }
            CpioError::BadField { offset, field } => {
                write!(f, "bad {field} field in the header at offset {offset}")
            }
            CpioError::BadName { offset } => write!(f, "bad name in the entry at offset {offset}"),
            CpioError::TruncatedData { offset } => {
                write!(f, "data of the entry at offset {offset} runs past the end")
            }
            CpioError::NoTrailer => f.write_str("no TRAILER!!! entry"),
        }
    }
}

/// What kind of file an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (its data is the target).
    Symlink,
    /// Anything else (devices, fifos, sockets).
    Other,
}

/// One archive member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The name as stored (usually without a leading `/`: `etc/oxen-release`).
    pub name: &'a str,
    /// Inode number.
    pub ino: u32,
    /// Type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Link count.
    pub nlink: u32,
    /// Modification time (seconds since the epoch).
    pub mtime: u32,
    /// The file's contents.
    pub data: &'a [u8],
    /// Offset of this entry's header in the archive.
    pub offset: usize,
}

impl<'a> Entry<'a> {
    /// The entry's type.
    pub fn kind(&self) -> Kind {
        match self.mode & S_IFMT {
            S_IFREG => Kind::File,
            S_IFDIR => Kind::Dir,
            S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        }
    }

    /// The name without leading `/` or `./`.
    pub fn path(&self) -> &'a str {
        normalize(self.name)
    }

    /// Permission bits (`mode & 0o7777`).
    pub fn perm(&self) -> u32 {
        self.mode & 0o7777
    }
}

/// Strips leading `/` and `./` components.
pub fn normalize(mut p: &str) -> &str {
    loop {
        if let Some(r) = p.strip_prefix('/') {
            p = r;
        } else if let Some(r) = p.strip_prefix("./") {
            p = r;
        } else {
            return p;
        }
    }
}

/// A cpio newc archive in memory.
#[derive(Clone, Copy, Debug)]
pub struct Archive<'a> {
    data: &'a [u8],
}

impl<'a> Archive<'a> {
    /// Wraps `data`; nothing is parsed until asked.
    pub const fn new(data: &'a [u8]) -> Self {
        Archive { data }
    }

    /// The archive's bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.data
    }

    /// The entries, in order, up to (not including) the trailer. After an
    /// error the iterator yields that error once and then ends.
    pub fn entries(&self) -> Entries<'a> {
        Entries {
            data: self.data,
            pos: 0,
            done: false,
        }
    }

    /// Parses the whole archive: `Ok(number of entries)` if it is well
    /// formed up to and including its trailer.
    pub fn validate(&self) -> Result<usize, CpioError> {
        if self.data.is_empty() {
            return Err(CpioError::Empty);
        }
        let mut it = self.entries();
        let mut n = 0;
        for e in &mut it {
            e?;
            n += 1;
        }
        if it.saw_trailer() {
            Ok(n)
        } else {
            Err(CpioError::NoTrailer)
        }
    }

    /// The entry at `path` (with or without a leading `/`), if the archive
    /// up to it parses.
    pub fn find(&self, path: &str) -> Option<Entry<'a>> {
        let want = normalize(path);
        self.entries()
            .map_while(Result::ok)
            .find(|e| e.path() == want)
    }

    /// The regular files, in order (stops quietly at the first error; use
    /// [`Archive::validate`] to find it).
    pub fn files(&self) -> impl Iterator<Item = Entry<'a>> {
        self.entries()
            .map_while(Result::ok)
            .filter(|e| e.kind() == Kind::File)
    }
}

/// Iterator over an archive's entries (see [`Archive::entries`]).
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    data: &'a [u8],
    pos: usize,
    /// Set at the trailer (pos == usize::MAX marks it) or after an error.
    done: bool,
}

impl Entries<'_> {
    /// True once the trailer has been reached.
    pub fn saw_trailer(&self) -> bool {
        self.done && self.pos == usize::MAX
    }
}

/// Rounds up to a multiple of 4; `None` on overflow.
fn pad4(x: usize) -> Option<usize> {
    x.checked_add(3).map(|v| v & !3)
}

fn hex8(b: &[u8]) -> Option<u32> {
    if b.len() != 8 {
        return None;
    }
    let mut v: u32 = 0;
    for &c in b {
        let d = (c as char).to_digit(16)?;
        v = (v << 4) | d;
    }
    Some(v)
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, CpioError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.parse_one();
        match &r {
            Err(_) => self.done = true,
            Ok(None) => {
                self.done = true;
                self.pos = usize::MAX;
            }
            Ok(Some(_)) => {}
        }
        r.transpose()
    }
}

impl<'a> Entries<'a> {
    /// Parses the entry at `pos`: `Ok(None)` at the trailer.
    fn parse_one(&mut self) -> Result<Option<Entry<'a>>, CpioError> {
        let offset = self.pos;
        if offset >= self.data.len() {
            return Err(CpioError::NoTrailer);
        }
        let header = offset
            .checked_add(HEADER_LEN)
            .and_then(|end| self.data.get(offset..end))
            .ok_or(CpioError::TruncatedHeader { offset })?;
        let magic = &header[..6];
        if magic != MAGIC_NEWC && magic != MAGIC_CRC {
            return Err(CpioError::BadMagic { offset });
        }
        let mut f = [0u32; 13];
        for (i, v) in f.iter_mut().enumerate() {
            let start = 6 + i * 8;
            *v = hex8(&header[start..start + 8]).ok_or(CpioError::BadField {
                offset,
                field: FIELDS[i],
            })?;
        }
        let bad_name = CpioError::BadName { offset };
        let namesize = f[F_NAMESIZE] as usize;
        if namesize == 0 {
            return Err(bad_name);
        }
        let name_start = offset + HEADER_LEN;
        let name_end = name_start.checked_add(namesize).ok_or(bad_name)?;
        let raw_name = self.data.get(name_start..name_end).ok_or(bad_name)?;
        let (last, name_bytes) = raw_name.split_last().ok_or(bad_name)?;
        if *last != 0 || name_bytes.contains(&0) {
            return Err(bad_name);
        }
        let name = core::str::from_utf8(name_bytes).map_err(|_| bad_name)?;

        let truncated = CpioError::TruncatedData { offset };
        let data_start = pad4(name_end).ok_or(truncated)?;
        let filesize = f[F_FILESIZE] as usize;
        let data_end = data_start.checked_add(filesize).ok_or(truncated)?;
        if name == TRAILER {
            return Ok(None);
        }
        let data = self.data.get(data_start..data_end).ok_or(truncated)?;
        // The next header may start past the end (the caller reports a
        // missing trailer then).
        self.pos = pad4(data_end).unwrap_or(usize::MAX - 1);
        Ok(Some(Entry {
            name,
            ino: f[F_INO],
            mode: f[F_MODE],
            uid: f[F_UID],
            gid: f[F_GID],
            nlink: f[F_NLINK],
            mtime: f[F_MTIME],
            data,
            offset,
        }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::format;
    use std::string::ToString;
    use std::vec;
    use std::vec::Vec;

    /// Writes one newc entry, as `gen_init_cpio` does.
    pub(crate) fn entry(out: &mut Vec<u8>, ino: u32, mode: u32, name: &str, data: &[u8]) {
        let hdr = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        out.extend_from_slice(hdr.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }

    /// The ramdisk the harness builds, plus a few extras.
    pub(crate) fn sample() -> Vec<u8> {
        let mut a = Vec::new();
        entry(&mut a, 1, S_IFDIR | 0o755, "etc", b"");
        entry(
            &mut a,
            2,
            S_IFREG | 0o644,
            "etc/oxen-release",
            b"Oxen 0.1.0\n",
        );
        entry(&mut a, 3, S_IFREG | 0o755, "guest.elf", b"\x7fELF1");
        entry(&mut a, 4, S_IFLNK | 0o777, "link", b"guest.elf");
        entry(&mut a, 5, S_IFREG | 0o644, "empty", b"");
        entry(&mut a, 0, 0, TRAILER, b"");
        a
    }

    #[test]
    fn parses_the_sample() {
        let data = sample();
        let a = Archive::new(&data);
        assert_eq!(a.validate(), Ok(5));
        let names: Vec<_> = a.entries().map(|e| e.unwrap().name).collect();
        assert_eq!(
            names,
            ["etc", "etc/oxen-release", "guest.elf", "link", "empty"]
        );
        let rel = a.find("/etc/oxen-release").unwrap();
        assert_eq!(rel.data, b"Oxen 0.1.0\n");
        assert_eq!(rel.kind(), Kind::File);
        assert_eq!(rel.perm(), 0o644);
        assert_eq!(rel.path(), "etc/oxen-release");
        assert_eq!(a.find("etc").unwrap().kind(), Kind::Dir);
        assert_eq!(a.find("./link").unwrap().kind(), Kind::Symlink);
        assert!(a.find("nope").is_none());
        let files: Vec<_> = a.files().map(|e| e.path()).collect();
        assert_eq!(files, ["etc/oxen-release", "guest.elf", "empty"]);
    }

    #[test]
    fn crc_magic_and_leading_slashes() {
        let mut data = Vec::new();
        entry(&mut data, 1, S_IFREG | 0o600, "/./x", b"abc");
        entry(&mut data, 0, 0, TRAILER, b"");
        data[5] = b'2';
        let a = Archive::new(&data);
        assert_eq!(a.validate(), Ok(1));
        assert_eq!(a.find("x").unwrap().data, b"abc");
        assert_eq!(normalize("//./a/b"), "a/b");
    }

    #[test]
    fn empty_and_garbage() {
        assert_eq!(Archive::new(b"").validate(), Err(CpioError::Empty));
        assert_eq!(
            Archive::new(b"070701").validate(),
            Err(CpioError::TruncatedHeader { offset: 0 })
        );
        let junk = [0x42u8; 200];
        assert_eq!(
            Archive::new(&junk).validate(),
            Err(CpioError::BadMagic { offset: 0 })
        );
        let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".repeat(10);
        assert_eq!(
            Archive::new(&elf).validate(),
            Err(CpioError::BadMagic { offset: 0 })
        );
    }

    #[test]
    fn missing_trailer() {
        let mut data = Vec::new();
        entry(&mut data, 1, S_IFREG, "a", b"1");
        assert_eq!(Archive::new(&data).validate(), Err(CpioError::NoTrailer));
        // Entries before the missing trailer are still readable.
        assert_eq!(Archive::new(&data).find("a").unwrap().data, b"1");
    }

    #[test]
    fn bad_fields() {
        let mut data = sample();
        data[6 + 8 * F_FILESIZE + 3] = b'g';
        let err = Archive::new(&data).validate().unwrap_err();
        assert_eq!(
            err,
            CpioError::BadField {
                offset: 0,
                field: "filesize"
            }
        );
        assert_eq!(
            err.to_string(),
            "bad filesize field in the header at offset 0"
        );
    }

    #[test]
    fn names_must_be_nul_terminated_utf8_and_in_bounds() {
        // namesize 0
        let mut data = sample();
        data[6 + 8 * F_NAMESIZE..6 + 8 * F_NAMESIZE + 8].copy_from_slice(b"00000000");
        assert_eq!(
            Archive::new(&data).validate(),
            Err(CpioError::BadName { offset: 0 })
        );
        // namesize past the end
        let mut data = sample();
        data[6 + 8 * F_NAMESIZE..6 + 8 * F_NAMESIZE + 8].copy_from_slice(b"ffffffff");
        assert_eq!(
            Archive::new(&data).validate(),
            Err(CpioError::BadName { offset: 0 })
        );
        // no NUL at the end of the name
        let mut data = sample();
        data[HEADER_LEN + 3] = b'x';
        assert_eq!(
            Archive::new(&data).validate(),
            Err(CpioError::BadName { offset: 0 })
        );
        // not UTF-8
        let mut data = sample();
        data[HEADER_LEN] = 0xff;
        assert_eq!(
            Archive::new(&data).validate(),
            Err(CpioError::BadName { offset: 0 })
        );
    }

    #[test]
    fn data_past_the_end() {
        let mut data = Vec::new();
        entry(&mut data, 1, S_IFREG, "big", b"0123456789");
        let cut = &data[..data.len() - 4];
        assert_eq!(
            Archive::new(cut).validate(),
            Err(CpioError::TruncatedData { offset: 0 })
        );
        let mut huge = data.clone();
        huge[6 + 8 * F_FILESIZE..6 + 8 * F_FILESIZE + 8].copy_from_slice(b"ffffffff");
        assert_eq!(
            Archive::new(&huge).validate(),
            Err(CpioError::TruncatedData { offset: 0 })
        );
    }

    #[test]
    fn errors_are_reported_once_then_the_iterator_ends() {
        let junk = [0u8; 300];
        let mut it = Archive::new(&junk).entries();
        assert!(matches!(it.next(), Some(Err(_))));
        assert!(it.next().is_none());
        assert!(!it.saw_trailer());
    }

    #[test]
    fn every_truncation_and_every_byte_flip_is_handled() {
        let data = sample();
        // The trailer's own padding may be missing; anything shorter is broken.
        let trailer_at = data.len() - pad4(HEADER_LEN + TRAILER.len() + 1).unwrap();
        let min_len = trailer_at + HEADER_LEN + TRAILER.len() + 1;
        for n in 0..data.len() {
            let a = Archive::new(&data[..n]);
            assert_eq!(a.validate().is_ok(), n >= min_len, "prefix of {n} bytes");
            let _ = a.files().count();
            let _ = a.find("etc/oxen-release");
        }
        for i in 0..data.len() {
            for v in [0u8, b'0', b'f', 0xff, b'\n'] {
                let mut d = data.clone();
                d[i] = v;
                let a = Archive::new(&d);
                let _ = a.validate();
                for e in a.entries().flatten() {
                    let _ = (e.kind(), e.path(), e.data.len());
                }
            }
        }
    }

    #[test]
    fn pseudo_random_inputs_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let base = sample();
        for round in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut d = if round % 2 == 0 {
                base.clone()
            } else {
                vec![0u8; (x % 512) as usize]
            };
            for k in 0..8 {
                if d.is_empty() {
                    break;
                }
                let i = ((x >> (k * 8)) as usize) % d.len();
                d[i] = (x >> k) as u8;
            }
            let a = Archive::new(&d);
            let _ = a.validate();
            let _ = a.files().count();
        }
    }
}
