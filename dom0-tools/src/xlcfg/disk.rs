//! Disk specifications (`disk = [...]` in xl.cfg, `xl block-attach`
//! arguments), as Xen's xl-disk-configuration(5) defines them and libxlu's
//! flex scanner (tools/libs/util/libxlu_disk_l.l) reads them, plus the
//! virtual device names (`xvda`, `hdc`, `sdb3`, `d0p1`, `51712`) and the
//! device numbers they stand for (docs/misc/vbd-interface.txt, libxl's
//! `libxl__device_disk_dev_number`): the number a frontend finds in
//! xenstore as `virtual-device` and the `device/vbd/N` directory name.
//!
//! A spec is a comma-separated list of parameters, either `key=value`
//! (`target=`, `format=`, `vdev=`, `access=`, `devtype=`, `backend=`,
//! `backendtype=`, `script=`, `specification=`, ...), flags (`cdrom`,
//! `discard`, `no-discard`, `direct-io-safe`, `trusted`, ...), or
//! positional, in the order `target,format,vdev,access` (the format may be
//! left out when the vdev follows; a `phy:`/`file:`/`raw:`/`qcow2:`...
//! prefix on the target is the old way of giving the format or script).
//! `target=` must come last: it takes the rest of the spec, commas and all.
//!
//! ```text
//! '/dev/vg/guest-volume,raw,xvda,rw'          positional
//! 'phy:/dev/vg0/web01-disk,xvda2,w'           prefix, vdev, access
//! 'file:/x.iso,xvdc:cdrom,r'                  deprecated vdev:devtype
//! 'format=qcow2, vdev=xvdb, target=/i,m.qcow2'
//! ',,hdc:cdrom,r'                             an empty CD-ROM drive
//! ```
//!
//! [`parse_disk_spec`] reproduces the scanner rule for rule (longest
//! match, first rule on ties, trailing contexts, the errors it reports and
//! where it stops), then libxlu's checks (a vdev, a target unless the
//! device is removable) and, beyond them, that the vdev names a device
//! (libxl only finds out when it adds the disk).

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// A disk image format (`format=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFormat {
    /// Raw (the default).
    Raw,
    /// qcow.
    Qcow,
    /// qcow2.
    Qcow2,
    /// VHD.
    Vhd,
    /// No medium (an empty CD-ROM drive).
    Empty,
    /// QED.
    Qed,
}

impl DiskFormat {
    /// The name xl.cfg and libxl use.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow => "qcow",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vhd => "vhd",
            DiskFormat::Empty => "empty",
            DiskFormat::Qed => "qed",
        }
    }

    fn from_name(s: &str) -> Option<DiskFormat> {
        Some(match s {
            "" | "raw" => DiskFormat::Raw,
            "qcow" => DiskFormat::Qcow,
            "qcow2" => DiskFormat::Qcow2,
            "vhd" => DiskFormat::Vhd,
            "empty" => DiskFormat::Empty,
            "qed" => DiskFormat::Qed,
            _ => return None,
        })
    }
}

/// The kind of back end (`backendtype=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskBackendType {
    /// The kernel's blkback.
    Phy,
    /// blktap.
    Tap,
    /// QEMU's qdisk.
    Qdisk,
    /// Standalone (virtio).
    Standalone,
}

impl DiskBackendType {
    /// The name xl.cfg and libxl use.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskBackendType::Phy => "phy",
            DiskBackendType::Tap => "tap",
            DiskBackendType::Qdisk => "qdisk",
            DiskBackendType::Standalone => "standalone",
        }
    }
}

/// The protocol the guest sees (`specification=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskSpecification {
    /// Xen's blkif.
    Xen,
    /// virtio-blk.
    Virtio,
}

impl DiskSpecification {
    /// The name xl.cfg and libxl use.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskSpecification::Xen => "xen",
            DiskSpecification::Virtio => "virtio",
        }
    }
}

/// COLO replication settings of a disk (`colo`, `colo-host=`, ...; Xen
/// calls them unstable).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ColoDisk {
    /// `colo` / `no-colo`.
    pub enable: Option<bool>,
    /// `colo-host=`.
    pub host: Option<String>,
    /// `colo-port=`.
    pub port: Option<i32>,
    /// `colo-export=`.
    pub export: Option<String>,
    /// `active-disk=`.
    pub active_disk: Option<String>,
    /// `hidden-disk=`.
    pub hidden_disk: Option<String>,
}

/// One disk, as a spec describes it (libxl's `libxl_device_disk` after
/// `xlu_disk_parse`), with its device number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    /// The backing file or device (`target=`, or the first positional
    /// parameter), as given: `None` or empty for a drive without medium
    /// (libxl tells the two apart in its JSON; see [`DiskSpec::medium`]).
    pub target: Option<String>,
    /// The image format; `Empty` when there is no medium.
    pub format: DiskFormat,
    /// The virtual device name as given (`xvda`).
    pub vdev: String,
    /// The Xen device number of `vdev` ([`vdev_to_devid`]).
    pub devid: u32,
    /// Writable (`access=rw`; always `false` for a CD-ROM).
    pub readwrite: bool,
    /// A CD-ROM (`devtype=cdrom`, `cdrom`, `vdev:cdrom`).
    pub cdrom: bool,
    /// Removable medium (CD-ROMs).
    pub removable: bool,
    /// The back-end domain's name (`backend=`); `None` = Dom0.
    pub backend: Option<String>,
    /// `backendtype=` (or implied by a prefix); `None` = libxl picks.
    pub backend_type: Option<DiskBackendType>,
    /// `specification=`; `None` = Xen's.
    pub specification: Option<DiskSpecification>,
    /// The hotplug script (`script=`, or `block-iscsi` etc. from a prefix).
    pub script: Option<String>,
    /// `discard` / `no-discard`; `None` = the default (on where supported).
    pub discard: Option<bool>,
    /// `direct-io-safe`.
    pub direct_io_safe: bool,
    /// `trusted` / `untrusted`.
    pub trusted: Option<bool>,
    /// `grant_usage=1|0`.
    pub grant_usage: Option<bool>,
    /// COLO settings.
    pub colo: ColoDisk,
}

impl DiskSpec {
    /// The backing file or device, if there is one (a non-empty target).
    pub fn medium(&self) -> Option<&str> {
        self.target.as_deref().filter(|t| !t.is_empty())
    }

    /// The frontend's `device-type` in xenstore: `cdrom` or `disk`.
    pub fn device_type(&self) -> &'static str {
        if self.cdrom {
            "cdrom"
        } else {
            "disk"
        }
    }

    /// The backend's `mode`: `w` or `r`.
    pub fn mode(&self) -> &'static str {
        if self.readwrite {
            "w"
        } else {
            "r"
        }
    }
}

/// One complaint of the disk spec scanner (`xlu__disk_err`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSyntaxError {
    /// What is wrong (`unknown value for format`).
    pub message: String,
    /// The text it is about, if any.
    pub near: Option<String>,
    /// The spec being parsed.
    pub spec: String,
}

impl fmt::Display for DiskSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "config parsing error in disk specification: {}",
            self.message
        )?;
        if let Some(n) = &self.near {
            write!(f, ": near `{n}'")?;
        }
        write!(f, " in `{}'", self.spec)
    }
}

/// Why a disk spec was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskError {
    /// The scanner's complaints, in order (at least one), as libxlu prints
    /// them.
    Syntax(Vec<DiskSyntaxError>),
    /// The vdev names no Xen virtual disk (libxl's message).
    BadVdev(String),
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskError::Syntax(errs) => {
                for (i, e) in errs.iter().enumerate() {
                    if i > 0 {
                        f.write_str("\n")?;
                    }
                    e.fmt(f)?;
                }
                Ok(())
            }
            DiskError::BadVdev(v) => {
                write!(f, "Invalid or unsupported virtual disk identifier {v}")
            }
        }
    }
}

// ---- device numbers (vbd-interface.txt) ----

/// Xen's major number for `xvd` disks 0..15 with partitions 0..15.
pub const XEN_VBD_MAJOR: u32 = 202;

/// `device_virtdisk_matches`: `PREFIX` + letters (base 26, `a`=0, `aa`=26)
/// + an optional partition number without leading zeros.
fn virtdisk_matches(v: &str, prefix: &str, max_index: u32, max_part: u32) -> Option<(u32, u32)> {
    let rest = v.strip_prefix(prefix)?;
    let letters = rest.bytes().take_while(u8::is_ascii_lowercase).count();
    if letters == 0 {
        // libxl lets this through with disk -1; no device has that number.
        return None;
    }
    let mut index: i64 = -1;
    for c in rest.bytes().take(letters) {
        index = (index + 1) * 26 + i64::from(c - b'a');
        if index > i64::from(max_index) {
            return None;
        }
    }
    let part = &rest[letters..];
    if part.is_empty() {
        return Some((index as u32, 0));
    }
    if part.starts_with('0') || !part.bytes().all(|b| b.is_ascii_digit()) || part.len() > 9 {
        return None;
    }
    let p: u32 = part.parse().ok()?;
    (p <= max_part).then_some((index as u32, p))
}

/// C's `%i`: optional white space and sign, then `0x` hex, `0` octal or
/// decimal. Returns the value and the bytes used.
fn scan_c_int(s: &[u8]) -> Option<(i64, usize)> {
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
        i += 1;
    }
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let (radix, start) = if s.get(i) == Some(&b'0')
        && matches!(s.get(i + 1), Some(b'x' | b'X'))
        && s.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
    {
        (16, i + 2)
    } else if s.get(i) == Some(&b'0') {
        (8, i)
    } else {
        (10, i)
    };
    let mut j = start;
    let mut v: i64 = 0;
    while let Some(d) = s.get(j).and_then(|&c| (c as char).to_digit(radix)) {
        v = v.checked_mul(i64::from(radix))?.checked_add(i64::from(d))?;
        if v > i64::from(i32::MAX) + 1 {
            return None;
        }
        j += 1;
    }
    if j == start {
        return None;
    }
    Some((if neg { -v } else { v }, j))
}

/// `d<N>p<M>` (sscanf `"d%ip%i%n"`, the whole name), disk below 2^20,
/// partition below 256.
fn dnpm(v: &str) -> Option<(u32, u32)> {
    let s = v.as_bytes();
    if s.first() != Some(&b'd') {
        return None;
    }
    let (disk, n) = scan_c_int(&s[1..])?;
    let at = 1 + n;
    if s.get(at) != Some(&b'p') {
        return None;
    }
    let (part, m) = scan_c_int(&s[at + 1..])?;
    if at + 1 + m != s.len() || !(0..1 << 20).contains(&disk) || !(0..256).contains(&part) {
        return None;
    }
    Some((disk as u32, part as u32))
}

/// The Xen device number of a virtual device name, as libxl computes it
/// (`libxl__device_disk_dev_number`, docs/misc/vbd-interface.txt):
///
/// - `xvdX[N]` and `d<D>p<P>`: `202<<8 | disk<<4 | part` for disks 0..15
///   with partitions 0..15, else the extended `1<<28 | disk<<8 | part`
///   (disks up to 2^20-1, partitions up to 255);
/// - a plain number (C syntax: `51712`, `0xca00`, `0145000`) up to
///   `i32::MAX` is taken as it is;
/// - `hdX[N]` (4 disks, 63 partitions): IDE majors 3 and 22;
/// - `sdX[N]` (16 disks, 15 partitions): SCSI major 8.
///
/// `None` if it is none of these.
pub fn vdev_to_devid(vdev: &str) -> Option<u32> {
    if let Some((disk, part)) =
        dnpm(vdev).or_else(|| virtdisk_matches(vdev, "xvd", (1 << 20) - 1, 255))
    {
        return Some(if disk <= 15 && part <= 15 {
            (XEN_VBD_MAJOR << 8) | (disk << 4) | part
        } else {
            (1 << 28) | (disk << 8) | part
        });
    }
    if let Some(n) = plain_number(vdev) {
        return Some(n);
    }
    if let Some((disk, part)) = virtdisk_matches(vdev, "hd", 3, 63) {
        return Some(((if disk < 2 { 3 } else { 22 }) << 8) | ((disk & 1) << 6) | part);
    }
    if let Some((disk, part)) = virtdisk_matches(vdev, "sd", 15, 15) {
        return Some((8 << 8) | (disk << 4) | part);
    }
    None
}

/// `strtoul(s, &end, 0)` consuming all of `s`, at most `INT_MAX`
/// (negative numbers, which strtoul would wrap, are refused).
fn plain_number(s: &str) -> Option<u32> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let t = t.strip_prefix('+').unwrap_or(t);
    if t.is_empty() || t.starts_with('-') {
        return None;
    }
    let (v, used) = scan_c_int(t.as_bytes())?;
    (used == t.len() && (0..=i64::from(i32::MAX)).contains(&v)).then_some(v as u32)
}

/// The disk and partition a Xen-style name (`xvd*`, `d*p*`) stands for.
pub fn vdev_disk_partition(vdev: &str) -> Option<(u32, u32)> {
    dnpm(vdev).or_else(|| virtdisk_matches(vdev, "xvd", (1 << 20) - 1, 255))
}

/// The `xvd` name of a Xen device number (`51712` → `xvda`, `51713` →
/// `xvda1`, extended numbers too); `None` for other majors.
pub fn devid_to_xvd(devid: u32) -> Option<String> {
    let (disk, part) = if devid >> 8 == XEN_VBD_MAJOR {
        ((devid >> 4) & 15, devid & 15)
    } else if devid >> 28 == 1 {
        ((devid >> 8) & 0xfffff, devid & 0xff)
    } else {
        return None;
    };
    // Base 26 with a=0, aa=26 (bijective).
    let mut letters = Vec::new();
    let mut n = disk + 1;
    while n > 0 {
        n -= 1;
        letters.push(b'a' + (n % 26) as u8);
        n /= 26;
    }
    letters.reverse();
    let mut s = String::from("xvd");
    s.push_str(core::str::from_utf8(&letters).unwrap_or(""));
    if part != 0 {
        s.push_str(&format!("{part}"));
    }
    Some(s)
}

// ---- the scanner ----

/// What the scanner is filling in (`libxl_device_disk` with its
/// "unset" values).
#[derive(Default)]
struct Partial {
    pdev_path: Option<String>,
    vdev: Option<String>,
    format: Option<DiskFormat>,
    backend: Option<String>,
    backend_type: Option<DiskBackendType>,
    specification: Option<DiskSpecification>,
    script: Option<String>,
    readwrite: bool,
    is_cdrom: bool,
    discard: Option<bool>,
    direct_io_safe: bool,
    trusted: Option<bool>,
    grant_usage: Option<bool>,
    colo: ColoDisk,
}

/// `DiskParseContext`.
struct Dpc<'s> {
    disk: Partial,
    had_depr_prefix: bool,
    access_set: bool,
    spec: &'s str,
    errors: Vec<DiskSyntaxError>,
}

/// Which string field `savestring` sets.
#[derive(Clone, Copy)]
enum Field {
    Target,
    Vdev,
    Backend,
    Script,
    ColoHost,
    ColoExport,
    ActiveDisk,
    HiddenDisk,
}

impl Dpc<'_> {
    fn err(&mut self, near: Option<&str>, message: &str) {
        self.errors.push(DiskSyntaxError {
            message: message.to_owned(),
            near: near.map(str::to_owned),
            spec: self.spec.to_owned(),
        });
    }

    fn savestring(&mut self, field: Field, value: &str) {
        let (slot, what) = match field {
            Field::Target => (&mut self.disk.pdev_path, "target"),
            Field::Vdev => (&mut self.disk.vdev, "vdev"),
            Field::Backend => (&mut self.disk.backend, "backend"),
            Field::Script => (&mut self.disk.script, "script"),
            Field::ColoHost => (&mut self.disk.colo.host, "colo-host"),
            Field::ColoExport => (&mut self.disk.colo.export, "colo-export"),
            Field::ActiveDisk => (&mut self.disk.colo.active_disk, "active-disk"),
            Field::HiddenDisk => (&mut self.disk.colo.hidden_disk, "hidden-disk"),
        };
        if slot.as_deref().is_some_and(|s| !s.is_empty()) {
            let m = format!("{what} respecified");
            self.err(Some(value), &m);
            return;
        }
        *slot = Some(value.to_owned());
    }

    fn setformat(&mut self, s: &str) {
        match DiskFormat::from_name(s) {
            Some(f) => match self.disk.format {
                Some(old) if old != f => self.err(Some(s), "format respecified"),
                _ => self.disk.format = Some(f),
            },
            None => self.err(Some(s), "unknown value for format"),
        }
    }

    fn setaccess(&mut self, s: &str) {
        match s {
            "r" | "ro" => self.disk.readwrite = false,
            "rw" | "w" | "" => self.disk.readwrite = true,
            _ => self.err(Some(s), "unknown value for access"),
        }
    }

    fn setbackendtype(&mut self, s: &str) {
        let t = match s {
            "phy" => DiskBackendType::Phy,
            "tap" => DiskBackendType::Tap,
            "qdisk" => DiskBackendType::Qdisk,
            "standalone" => DiskBackendType::Standalone,
            _ => return self.err(Some(s), "unknown value for backendtype"),
        };
        match self.disk.backend_type {
            Some(old) if old != t => self.err(Some(s), "backend respecified"),
            _ => self.disk.backend_type = Some(t),
        }
    }

    fn setspecification(&mut self, s: &str) {
        let t = match s {
            "xen" => DiskSpecification::Xen,
            "virtio" => DiskSpecification::Virtio,
            _ => return self.err(Some(s), "unknown value for specification"),
        };
        match self.disk.specification {
            Some(old) if old != t => self.err(Some(s), "specification respecified"),
            _ => self.disk.specification = Some(t),
        }
    }

    fn setcoloport(&mut self, s: &str) {
        match atoi(s) {
            0 => self.err(Some(s), "unknown value for colo_port"),
            p => self.disk.colo.port = Some(p),
        }
    }

    /// `<vdev>:<devtype>`; false (doing nothing) if there is no colon.
    fn vdev_and_devtype(&mut self, s: &str) -> bool {
        let Some(colon) = s.rfind(':') else {
            return false;
        };
        self.savestring(Field::Vdev, &s[..colon]);
        match &s[colon + 1..] {
            "cdrom" => self.disk.is_cdrom = true,
            "disk" => self.disk.is_cdrom = false,
            t => self.err(Some(t), "unknown deprecated type"),
        }
        true
    }

    /// A positional parameter.
    fn positional(&mut self, s: &str) -> bool {
        if !self.errors.is_empty() {
            // Previous errors may just lead to subsequent ones.
        } else if self.disk.pdev_path.is_none() {
            self.savestring(Field::Target, s);
        } else if !self.had_depr_prefix && self.disk.format.is_none() {
            let empty_target = self.disk.pdev_path.as_deref() == Some("");
            if empty_target && self.vdev_and_devtype(s) {
                self.disk.format = Some(DiskFormat::Empty);
            } else {
                self.setformat(s);
            }
        } else if self.disk.vdev.is_none() {
            if !self.vdev_and_devtype(s) {
                self.savestring(Field::Vdev, s);
            }
        } else if !self.access_set {
            self.access_set = true;
            self.setaccess(s);
        } else {
            self.err(Some(s), "too many positional parameters");
            return false;
        }
        true
    }
}

/// C's `atoi`.
fn atoi(s: &str) -> i32 {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut v: i64 = 0;
    for b in t.bytes().take_while(u8::is_ascii_digit) {
        v = (v * 10 + i64::from(b - b'0')).min(i64::from(u32::MAX));
    }
    let v = if neg { -v } else { v };
    v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// The scanner's rules, in libxlu_disk_l.l's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    Ws,
    KeyVal(Key),
    Flag(FlagRule),
    DevtypeCdrom,
    DevtypeDisk,
    DevtypeOther,
    Target,
    Unknown,
    FormatPrefix,
    ScriptPrefix,
    IgnoredPrefix,
    BadPrefix,
    Positional,
    Dot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Format,
    Access,
    Backend,
    BackendType,
    Specification,
    Vdev,
    Script,
    ColoHost,
    ColoPort,
    ColoExport,
    ActiveDisk,
    HiddenDisk,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FlagRule {
    Cdrom,
    DirectIoSafe,
    Discard,
    NoDiscard,
    Colo,
    NoColo,
    Trusted,
    Untrusted,
    GrantUsage1,
    GrantUsage0,
}

/// The end of `.*` from `i` (up to a newline).
fn line_end(s: &[u8], i: usize) -> usize {
    s[i..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(s.len(), |p| i + p)
}

/// `LIT,?` at `i`: the match length.
fn lit(s: &[u8], i: usize, l: &str) -> Option<usize> {
    let l = l.as_bytes();
    if !s[i..].starts_with(l) {
        return None;
    }
    Some(l.len() + usize::from(s.get(i + l.len()) == Some(&b',')))
}

/// `KEY=[^,]*,?` at `i` (`key` includes the `=`).
fn keyval(s: &[u8], i: usize, key: &str) -> Option<usize> {
    let k = key.as_bytes();
    if !s[i..].starts_with(k) {
        return None;
    }
    let v = i + k.len();
    let end = s[v..]
        .iter()
        .position(|&c| c == b',')
        .map_or(s.len(), |p| v + p);
    Some(end - i + usize::from(end < s.len()))
}

/// `(alt1|alt2|...):/.*` at `i`: (whole length with context, consumed).
fn prefix_rule(s: &[u8], i: usize, alts: &[&str]) -> Option<(usize, usize)> {
    alts.iter()
        .filter_map(|a| {
            let a = a.as_bytes();
            (s[i..].starts_with(a) && s.get(i + a.len()) == Some(&b':')).then_some(a.len() + 1)
        })
        .max()
        .map(|used| (line_end(s, i + used) - i, used))
}

const KEYS: &[(&str, Key)] = &[
    ("format=", Key::Format),
    ("access=", Key::Access),
    ("backend=", Key::Backend),
    ("backendtype=", Key::BackendType),
    ("specification=", Key::Specification),
    ("vdev=", Key::Vdev),
    ("script=", Key::Script),
    ("colo-host=", Key::ColoHost),
    ("colo-port=", Key::ColoPort),
    ("colo-export=", Key::ColoExport),
    ("active-disk=", Key::ActiveDisk),
    ("hidden-disk=", Key::HiddenDisk),
];

const FLAGS: &[(&str, FlagRule)] = &[
    ("cdrom", FlagRule::Cdrom),
    ("direct-io-safe", FlagRule::DirectIoSafe),
    ("discard", FlagRule::Discard),
    ("no-discard", FlagRule::NoDiscard),
    ("colo", FlagRule::Colo),
    ("no-colo", FlagRule::NoColo),
    ("trusted", FlagRule::Trusted),
    ("untrusted", FlagRule::Untrusted),
    ("grant_usage=1", FlagRule::GrantUsage1),
    ("grant_usage=0", FlagRule::GrantUsage0),
];

/// The rule flex picks at `i` (longest match, earliest rule on a tie),
/// with the length consumed (trailing context excluded).
fn next_token(s: &[u8], i: usize) -> (Rule, usize) {
    // Candidates in rule order: (rule, length with context, consumed).
    let mut cands: Vec<(Rule, usize, usize)> = Vec::new();
    let is_ws = |c: u8| matches!(c, b' ' | b'\t' | b'\n');
    let ws = s[i..].iter().take_while(|&&c| is_ws(c)).count();
    if ws > 0 {
        let after = i + ws;
        let total = if after < s.len() {
            line_end(s, after) - i
        } else {
            ws
        };
        cands.push((Rule::Ws, total, ws));
    }
    // Rule order of the file: format=, cdrom, devtype=..., access=,
    // backend=, backendtype=, specification=, vdev=, script=, flags,
    // colo..., trusted, grant_usage, target=, unknown, prefixes, positional.
    let kv = |k: Key| -> Option<(Rule, usize, usize)> {
        let name = KEYS.iter().find(|(_, x)| *x == k).map(|(n, _)| *n)?;
        keyval(s, i, name).map(|l| (Rule::KeyVal(k), l, l))
    };
    let fl = |f: FlagRule| -> Option<(Rule, usize, usize)> {
        let name = FLAGS.iter().find(|(_, x)| *x == f).map(|(n, _)| *n)?;
        lit(s, i, name).map(|l| (Rule::Flag(f), l, l))
    };
    cands.extend(kv(Key::Format));
    cands.extend(fl(FlagRule::Cdrom));
    if let Some(l) = lit(s, i, "devtype=cdrom") {
        cands.push((Rule::DevtypeCdrom, l, l));
    }
    if let Some(l) = lit(s, i, "devtype=disk") {
        cands.push((Rule::DevtypeDisk, l, l));
    }
    if let Some(l) = keyval(s, i, "devtype=") {
        cands.push((Rule::DevtypeOther, l, l));
    }
    for k in [
        Key::Access,
        Key::Backend,
        Key::BackendType,
        Key::Specification,
        Key::Vdev,
        Key::Script,
    ] {
        cands.extend(kv(k));
    }
    for f in [
        FlagRule::DirectIoSafe,
        FlagRule::Discard,
        FlagRule::NoDiscard,
        FlagRule::Colo,
        FlagRule::NoColo,
    ] {
        cands.extend(fl(f));
    }
    for k in [
        Key::ColoHost,
        Key::ColoPort,
        Key::ColoExport,
        Key::ActiveDisk,
        Key::HiddenDisk,
    ] {
        cands.extend(kv(k));
    }
    for f in [
        FlagRule::Trusted,
        FlagRule::Untrusted,
        FlagRule::GrantUsage1,
        FlagRule::GrantUsage0,
    ] {
        cands.extend(fl(f));
    }
    if s[i..].starts_with(b"target=") {
        let l = line_end(s, i) - i;
        cands.push((Rule::Target, l, l));
    }
    // [a-z][-a-z0-9]*=[^,],?
    if s[i].is_ascii_lowercase() {
        let name = 1 + s[i + 1..]
            .iter()
            .take_while(|&&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            .count();
        let eq = i + name;
        if s.get(eq) == Some(&b'=') && s.get(eq + 1).is_some_and(|&c| c != b',') {
            let l = name + 2 + usize::from(s.get(eq + 2) == Some(&b','));
            cands.push((Rule::Unknown, l, l));
        }
    }
    for (rule, alts) in [
        (Rule::FormatPrefix, &["raw", "qcow", "qcow2", "vhd"][..]),
        (Rule::ScriptPrefix, &["iscsi", "nbd", "enbd", "drbd"][..]),
        (Rule::IgnoredPrefix, &["tapdisk"][..]),
        (Rule::IgnoredPrefix, &["tap", "tap2"][..]),
        (Rule::IgnoredPrefix, &["aio"][..]),
        (Rule::IgnoredPrefix, &["ioemu"][..]),
        (Rule::IgnoredPrefix, &["file"][..]),
        (Rule::IgnoredPrefix, &["phy"][..]),
    ] {
        if let Some((l, used)) = prefix_rule(s, i, alts) {
            cands.push((rule, l, used));
        }
    }
    // [a-z][a-z0-9]*:/([^a-z0-9].*)?
    if s[i].is_ascii_lowercase() {
        let name = 1 + s[i + 1..]
            .iter()
            .take_while(|&&c| c.is_ascii_lowercase() || c.is_ascii_digit())
            .count();
        if s.get(i + name) == Some(&b':') {
            let used = name + 1;
            let after = i + used;
            let total = match s.get(after) {
                Some(&c) if !(c.is_ascii_lowercase() || c.is_ascii_digit()) => {
                    line_end(s, after + 1) - i
                }
                _ => used,
            };
            cands.push((Rule::BadPrefix, total, used));
        }
    }
    // [^=,]*,|[^=,]+,?
    let run = s[i..]
        .iter()
        .take_while(|&&c| c != b'=' && c != b',')
        .count();
    let pos = if s.get(i + run) == Some(&b',') {
        run + 1
    } else {
        run
    };
    if pos > 0 {
        cands.push((Rule::Positional, pos, pos));
    }
    cands.push((Rule::Dot, 1, 1));
    let mut best = cands[0];
    for c in &cands[1..] {
        if c.1 > best.1 {
            best = *c;
        }
    }
    (best.0, best.2)
}

/// `STRIP(',')`.
fn strip_comma(t: &str) -> &str {
    t.strip_suffix(',').unwrap_or(t)
}

/// The value after the first `=`.
fn from_equals(t: &str) -> &str {
    t.split_once('=').map_or("", |(_, v)| v)
}

/// Runs the scanner over one spec; stops where libxlu's rules `return`.
fn scan(dpc: &mut Dpc<'_>) {
    let s = dpc.spec.as_bytes();
    let text = |a: usize, b: usize| String::from_utf8_lossy(&s[a..b]).into_owned();
    let mut i = 0;
    while i < s.len() {
        let (rule, used) = next_token(s, i);
        let t = text(i, i + used);
        i += used;
        match rule {
            Rule::Ws => {}
            Rule::KeyVal(k) => {
                let v = from_equals(strip_comma(&t));
                match k {
                    Key::Format => dpc.setformat(v),
                    Key::Access => dpc.setaccess(v),
                    Key::Backend => dpc.savestring(Field::Backend, v),
                    Key::BackendType => dpc.setbackendtype(v),
                    Key::Specification => dpc.setspecification(v),
                    Key::Vdev => dpc.savestring(Field::Vdev, v),
                    Key::Script => dpc.savestring(Field::Script, v),
                    Key::ColoHost => dpc.savestring(Field::ColoHost, v),
                    Key::ColoPort => dpc.setcoloport(v),
                    Key::ColoExport => dpc.savestring(Field::ColoExport, v),
                    Key::ActiveDisk => dpc.savestring(Field::ActiveDisk, v),
                    Key::HiddenDisk => dpc.savestring(Field::HiddenDisk, v),
                }
            }
            Rule::Flag(f) => match f {
                FlagRule::Cdrom => dpc.disk.is_cdrom = true,
                FlagRule::DirectIoSafe => dpc.disk.direct_io_safe = true,
                FlagRule::Discard => dpc.disk.discard = Some(true),
                FlagRule::NoDiscard => dpc.disk.discard = Some(false),
                FlagRule::Colo => dpc.disk.colo.enable = Some(true),
                FlagRule::NoColo => dpc.disk.colo.enable = Some(false),
                FlagRule::Trusted => dpc.disk.trusted = Some(true),
                FlagRule::Untrusted => dpc.disk.trusted = Some(false),
                FlagRule::GrantUsage1 => dpc.disk.grant_usage = Some(true),
                FlagRule::GrantUsage0 => dpc.disk.grant_usage = Some(false),
            },
            Rule::DevtypeCdrom => dpc.disk.is_cdrom = true,
            Rule::DevtypeDisk => dpc.disk.is_cdrom = false,
            Rule::DevtypeOther => dpc.err(Some(&t), "unknown value for type"),
            Rule::Target => {
                let v = from_equals(strip_comma(&t)).to_owned();
                dpc.savestring(Field::Target, &v);
            }
            Rule::Unknown => dpc.err(Some(&t), "unknown parameter"),
            Rule::FormatPrefix => {
                dpc.had_depr_prefix = true;
                dpc.setformat(t.trim_end_matches(':'));
            }
            Rule::ScriptPrefix => {
                dpc.had_depr_prefix = true;
                let script = format!("block-{}", t.trim_end_matches(':'));
                dpc.savestring(Field::Script, &script);
            }
            Rule::IgnoredPrefix => dpc.had_depr_prefix = true,
            Rule::BadPrefix => {
                dpc.err(Some(&t), "unknown deprecated disk prefix");
                return;
            }
            Rule::Positional => {
                if !dpc.positional(strip_comma(&t)) {
                    return;
                }
            }
            Rule::Dot => {
                // BEGIN(LEXERR); yymore(): the rest of the line, from here.
                let end = line_end(s, i - used);
                let near = text(i - used, end.max(i));
                dpc.err(Some(&near), "bad disk syntax");
                return;
            }
        }
    }
}

/// Parses a disk spec given in parts (`xl block-attach` takes one per
/// argument; a config's `disk` entries are one part each), as
/// `xlu_disk_parse` does, and checks the vdev.
pub fn parse_disk_spec_parts(parts: &[&str]) -> Result<DiskSpec, DiskError> {
    let mut disk = Partial {
        readwrite: true,
        ..Partial::default()
    };
    let mut had_depr_prefix = false;
    let mut access_set = false;
    let mut last = "";
    for part in parts {
        let mut dpc = Dpc {
            disk,
            had_depr_prefix,
            access_set,
            spec: part,
            errors: Vec::new(),
        };
        scan(&mut dpc);
        if !dpc.errors.is_empty() {
            return Err(DiskError::Syntax(dpc.errors));
        }
        disk = dpc.disk;
        had_depr_prefix = dpc.had_depr_prefix;
        access_set = dpc.access_set;
        last = part;
    }
    let mut format = disk.format.unwrap_or(DiskFormat::Raw);
    let removable = disk.is_cdrom;
    if disk.is_cdrom {
        disk.readwrite = false;
        if disk.pdev_path.as_deref().is_none_or(str::is_empty) {
            format = DiskFormat::Empty;
        }
    }
    let syntax = |message: &str| {
        DiskError::Syntax(alloc::vec![DiskSyntaxError {
            message: message.to_owned(),
            near: None,
            spec: last.to_owned(),
        }])
    };
    let Some(vdev) = disk.vdev else {
        return Err(syntax("no vdev specified"));
    };
    if disk.pdev_path.is_none() && !removable {
        return Err(syntax("no target specified (and device not removable)"));
    }
    let devid = vdev_to_devid(&vdev).ok_or_else(|| DiskError::BadVdev(vdev.clone()))?;
    let target = disk.pdev_path;
    if target.as_deref().is_none_or(str::is_empty) {
        format = DiskFormat::Empty;
    }
    Ok(DiskSpec {
        target,
        format,
        vdev,
        devid,
        readwrite: disk.readwrite,
        cdrom: disk.is_cdrom,
        removable,
        backend: disk.backend,
        backend_type: disk.backend_type,
        specification: disk.specification,
        script: disk.script,
        discard: disk.discard,
        direct_io_safe: disk.direct_io_safe,
        trusted: disk.trusted,
        grant_usage: disk.grant_usage,
        colo: disk.colo,
    })
}

/// Parses one disk spec (one entry of a config's `disk` list).
pub fn parse_disk_spec(spec: &str) -> Result<DiskSpec, DiskError> {
    parse_disk_spec_parts(&[spec])
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn ok(s: &str) -> DiskSpec {
        parse_disk_spec(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn bad(s: &str) -> String {
        parse_disk_spec(s).unwrap_err().to_string()
    }

    #[test]
    fn vdev_numbers_follow_vbd_interface_txt() {
        let cases: &[(&str, u32)] = &[
            ("xvda", 51712),
            ("xvda1", 51713),
            ("xvdb", 51728),
            ("xvdp15", 202 << 8 | 15 << 4 | 15),
            ("xvdq", 1 << 28 | 16 << 8),
            ("xvda16", 1 << 28 | 16),
            ("xvdaa", 1 << 28 | 26 << 8),
            ("xvdba3", 1 << 28 | 52 << 8 | 3),
            ("d0p0", 51712),
            ("d1p2", 51730),
            ("d16p0", 1 << 28 | 16 << 8),
            ("d0x10p0", 1 << 28 | 16 << 8),
            ("d0p255", 1 << 28 | 255),
            ("hda", 3 << 8),
            ("hdb", 3 << 8 | 64),
            ("hdc", 22 << 8),
            ("hdd1", 22 << 8 | 64 | 1),
            ("hda63", 3 << 8 | 63),
            ("sda", 8 << 8),
            ("sdb3", 8 << 8 | 16 | 3),
            ("sdp15", 8 << 8 | 15 << 4 | 15),
            ("51712", 51712),
            ("0x1", 1),
            ("010", 8),
            ("2147483647", 0x7fff_ffff),
        ];
        for &(v, n) in cases {
            assert_eq!(vdev_to_devid(v), Some(n), "{v}");
        }
        for v in [
            "",
            "xvd",
            "xvdA",
            "xvda0",
            "xvda01",
            "xvda256",
            "xvda-1",
            "hde",
            "hda64",
            "sdq",
            "sda16",
            "d0",
            "d0p",
            "d0p256",
            "d1048576p0",
            "d-1p0",
            "d0p0x",
            "2147483648",
            "-1",
            "vda",
            "xvda 1",
            "xvda+1",
            "08",
        ] {
            assert_eq!(vdev_to_devid(v), None, "{v:?}");
        }
        assert_eq!(vdev_disk_partition("xvdb2"), Some((1, 2)));
        for v in ["xvda", "xvdb3", "xvdq", "xvdaa7", "xvdzz"] {
            assert_eq!(devid_to_xvd(vdev_to_devid(v).unwrap()).as_deref(), Some(v));
        }
        assert_eq!(devid_to_xvd(8 << 8), None);
    }

    #[test]
    fn positional_forms() {
        let d = ok("/dev/vg/guest-volume,raw,xvda,rw");
        assert_eq!(d.target.as_deref(), Some("/dev/vg/guest-volume"));
        assert_eq!(
            (d.format, d.vdev.as_str(), d.readwrite, d.devid),
            (DiskFormat::Raw, "xvda", true, 51712)
        );
        let d = ok("/root/install.iso,raw,xvdc,cdrom");
        assert!(d.cdrom && d.removable && !d.readwrite);
        assert_eq!(d.format, DiskFormat::Raw);
        assert_eq!(d.device_type(), "cdrom");
        let d = ok("/i.qcow2,qcow2,xvdb,r");
        assert_eq!(
            (d.format, d.readwrite, d.mode()),
            (DiskFormat::Qcow2, false, "r")
        );
        // Format left out: the vdev follows a prefixed target.
        let d = ok("phy:/dev/vg0/web01-disk,xvda2,w");
        assert_eq!(d.target.as_deref(), Some("/dev/vg0/web01-disk"));
        assert_eq!(
            (d.vdev.as_str(), d.devid, d.readwrite),
            ("xvda2", 51714, true)
        );
        let d = ok("file:/srv/xen/netbsd.img,0x1,w");
        assert_eq!((d.vdev.as_str(), d.devid), ("0x1", 1));
        // Deprecated vdev:devtype.
        let d = ok("file:/x.iso,xvdc:cdrom,r");
        assert_eq!((d.vdev.as_str(), d.cdrom), ("xvdc", true));
        // An empty CD-ROM drive.
        let d = ok(",,hdc:cdrom,r");
        assert_eq!((d.target.as_deref(), d.medium()), (Some(""), None));
        assert_eq!(
            (d.format, d.vdev.as_str(), d.cdrom),
            (DiskFormat::Empty, "hdc", true)
        );
        // An empty format means raw; empty access means rw.
        let d = ok("/d,,xvda,");
        assert_eq!((d.format, d.readwrite), (DiskFormat::Raw, true));
        // Format prefixes.
        let d = ok("qcow2:/vm/a.qcow2,xvda,w");
        assert_eq!(
            (d.format, d.target.as_deref()),
            (DiskFormat::Qcow2, Some("/vm/a.qcow2"))
        );
        let d = ok("iscsi:iqn.2001-05.com.example:disk,xvda,w");
        assert_eq!(d.script.as_deref(), Some("block-iscsi"));
        assert_eq!(d.target.as_deref(), Some("iqn.2001-05.com.example:disk"));
        let d = ok("tap:aio:/x.img,xvda,w");
        assert_eq!(d.target.as_deref(), Some("/x.img"));
        // Whitespace before parameters is skipped.
        let d = ok("  /d , raw, xvda");
        assert_eq!(d.target.as_deref(), Some("/d "));
        assert_eq!(d.vdev, "xvda");
    }

    #[test]
    fn key_value_forms() {
        let d = ok("format=raw, vdev=xvda, access=r, target=/srv/alpine.iso");
        assert_eq!(d.target.as_deref(), Some("/srv/alpine.iso"));
        assert!(!d.readwrite);
        let d = ok("vdev=xvdb,format=qcow2,target=/a,b:c.qcow2");
        assert_eq!(d.target.as_deref(), Some("/a,b:c.qcow2"));
        let d = ok("vdev=hdc,devtype=cdrom,access=rw,target=");
        assert!(d.cdrom && !d.readwrite);
        assert_eq!((d.medium(), d.format), (None, DiskFormat::Empty));
        let d = ok("vdev=hdc,devtype=cdrom");
        assert_eq!((d.target, d.format), (None, DiskFormat::Empty));
        let d = ok("/d,raw,xvda,backend=driverdom,backendtype=qdisk,script=block-x,discard,direct-io-safe,trusted,grant_usage=0,specification=xen");
        assert_eq!(d.backend.as_deref(), Some("driverdom"));
        assert_eq!(d.backend_type, Some(DiskBackendType::Qdisk));
        assert_eq!(d.script.as_deref(), Some("block-x"));
        assert_eq!((d.discard, d.direct_io_safe), (Some(true), true));
        assert_eq!((d.trusted, d.grant_usage), (Some(true), Some(false)));
        assert_eq!(d.specification, Some(DiskSpecification::Xen));
        let d = ok("/d,raw,xvda,no-discard,untrusted,colo,colo-host=h,colo-port=9000,colo-export=e,active-disk=a,hidden-disk=h2");
        assert_eq!((d.discard, d.trusted), (Some(false), Some(false)));
        assert_eq!(d.colo.enable, Some(true));
        assert_eq!(d.colo.port, Some(9000));
        assert_eq!(d.colo.hidden_disk.as_deref(), Some("h2"));
        // A flag name inside a target path is no flag.
        let d = ok("/cdrom.img,raw,xvda");
        assert!(!d.cdrom);
        // Without a prefix, the second positional parameter is the format.
        assert_eq!(
            bad("/d,xvda"),
            "config parsing error in disk specification: unknown value for format: near `xvda' in `/d,xvda'"
        );
    }

    #[test]
    fn several_parts_make_one_disk() {
        let d = parse_disk_spec_parts(&["/d", "raw", "xvdb", "ro"]).unwrap();
        assert_eq!(
            (d.target.as_deref(), d.vdev.as_str(), d.readwrite),
            (Some("/d"), "xvdb", false)
        );
        let d = parse_disk_spec_parts(&["vdev=xvdc", "target=/x,y"]).unwrap();
        assert_eq!(d.target.as_deref(), Some("/x,y"));
        assert_eq!(
            parse_disk_spec_parts(&["/d", "raw", "xvdb", "ro", "rw"]).unwrap_err().to_string(),
            "config parsing error in disk specification: too many positional parameters: near `rw' in `rw'"
        );
    }

    #[test]
    fn errors_as_libxlu_reports_them() {
        assert_eq!(
            bad("/d,bogus,xvda"),
            "config parsing error in disk specification: unknown value for format: near `bogus' in `/d,bogus,xvda'"
        );
        assert_eq!(
            bad("/d,raw,xvda,rx"),
            "config parsing error in disk specification: unknown value for access: near `rx' in `/d,raw,xvda,rx'"
        );
        assert_eq!(
            bad("/d,raw,xvda,rw,extra"),
            "config parsing error in disk specification: too many positional parameters: near `extra' in `/d,raw,xvda,rw,extra'"
        );
        assert_eq!(
            bad("/d"),
            "config parsing error in disk specification: no vdev specified in `/d'"
        );
        assert_eq!(
            bad("vdev=xvda"),
            "config parsing error in disk specification: no target specified (and device not removable) in `vdev=xvda'"
        );
        // The unknown-parameter rule takes one character of the value.
        assert_eq!(
            bad("/d,raw,xvda,colour=blue"),
            "config parsing error in disk specification: unknown parameter: near `colour=b' in `/d,raw,xvda,colour=blue'"
        );
        assert_eq!(
            bad("/d,raw,xvda,devtype=floppy"),
            "config parsing error in disk specification: unknown value for type: near `devtype=floppy' in `/d,raw,xvda,devtype=floppy'"
        );
        assert_eq!(
            bad("nfs:/srv/d,xvda"),
            "config parsing error in disk specification: unknown deprecated disk prefix: near `nfs:' in `nfs:/srv/d,xvda'"
        );
        assert_eq!(
            bad("/d,raw,xvda:floppy"),
            "config parsing error in disk specification: unknown deprecated type: near `floppy' in `/d,raw,xvda:floppy'"
        );
        assert_eq!(
            bad("vdev=xvda,vdev=xvdb,target=/d"),
            "config parsing error in disk specification: vdev respecified: near `xvdb' in `vdev=xvda,vdev=xvdb,target=/d'"
        );
        assert_eq!(
            bad("/d,raw,xvda,format=raw,format=qcow2"),
            "config parsing error in disk specification: format respecified: near `qcow2' in `/d,raw,xvda,format=raw,format=qcow2'"
        );
        assert_eq!(
            bad("/d,raw,xvda,backendtype=nbd"),
            "config parsing error in disk specification: unknown value for backendtype: near `nbd' in `/d,raw,xvda,backendtype=nbd'"
        );
        assert_eq!(
            bad("/d,raw,xvda,colo-port=x"),
            "config parsing error in disk specification: unknown value for colo_port: near `x' in `/d,raw,xvda,colo-port=x'"
        );
        assert_eq!(
            bad("/d,=x"),
            "config parsing error in disk specification: bad disk syntax: near `=x' in `/d,=x'"
        );
        assert_eq!(
            bad("/d,raw,xvdz0,w"),
            "Invalid or unsupported virtual disk identifier xvdz0"
        );
        // Errors that do not stop the scanner are all reported.
        assert_eq!(
            bad("/d,raw,xvda,access=q,devtype=tape"),
            "config parsing error in disk specification: unknown value for access: near `q' in `/d,raw,xvda,access=q,devtype=tape'\n\
             config parsing error in disk specification: unknown value for type: near `devtype=tape' in `/d,raw,xvda,access=q,devtype=tape'"
        );
    }

    #[test]
    fn never_panics() {
        let alphabet = [
            "a", "=", ",", ":", " ", "\n", "x", "vd", "phy", "target=", "format=", "raw", "é", "0",
            "devtype=", "cdrom", "/", "\t", "-",
        ];
        let mut seed = 0x1234_5678_u64;
        for _ in 0..4000 {
            let mut s = String::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let n = (seed % 9) as usize;
            let mut x = seed;
            for _ in 0..n {
                s.push_str(alphabet[(x % alphabet.len() as u64) as usize]);
                x /= alphabet.len() as u64;
                if x == 0 {
                    x = seed.rotate_left(17);
                }
            }
            let _ = parse_disk_spec(&s);
            let _ = vdev_to_devid(&s);
        }
    }
}
