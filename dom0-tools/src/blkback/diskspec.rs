//! xl's `disk = [ '<diskspec>', ... ]` entries
//! (`docs/misc/xl-disk-configuration.txt`): comma-separated positional
//! parameters (`target`, `format`, `vdev`, `access`, in that order, each
//! may be empty), `key=value` pairs and flags, `target=` last consuming the
//! rest; and the deprecated xend forms
//! `[<format>:][<target>],<vdev>[:<devtype>],<access>` with prefixes such as
//! `phy:`, `file:`, `tap:aio:`, `raw:`, `qcow2:`.
//!
//! ```
//! use dom0_tools::blkback::diskspec::{DiskFormat, DiskSpec};
//! let d = DiskSpec::parse("phy:/dev/vg/guest,xvda,w").unwrap();
//! assert_eq!((d.target.as_deref(), d.vdev.as_str(), d.writable), (Some("/dev/vg/guest"), "xvda", true));
//! let d = DiskSpec::parse("format=qcow2, vdev=xvdb, access=ro, target=/img/a,b.qcow2").unwrap();
//! assert_eq!((d.format, d.devid, d.writable), (DiskFormat::Qcow2, 51728, false));
//! assert_eq!(d.target.as_deref(), Some("/img/a,b.qcow2"));
//! ```

use alloc::format;
use alloc::string::{String, ToString};

use super::toolstack::parse_vdev;

/// An image format (`format=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DiskFormat {
    /// `raw` (the default).
    #[default]
    Raw,
    /// `qcow`.
    Qcow,
    /// `qcow2`.
    Qcow2,
    /// `vhd`.
    Vhd,
    /// `qed`.
    Qed,
}

impl DiskFormat {
    fn parse(s: &str) -> Option<DiskFormat> {
        Some(match s {
            "raw" => DiskFormat::Raw,
            "qcow" => DiskFormat::Qcow,
            "qcow2" => DiskFormat::Qcow2,
            "vhd" => DiskFormat::Vhd,
            "qed" => DiskFormat::Qed,
            _ => return None,
        })
    }

    /// The name xl uses.
    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow => "qcow",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vhd => "vhd",
            DiskFormat::Qed => "qed",
        }
    }
}

/// One parsed disk specification.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskSpec {
    /// The disk or image path (`/dev/` prepended to relative ones);
    /// `None` for an empty CD-ROM drive.
    pub target: Option<String>,
    /// Image format.
    pub format: DiskFormat,
    /// The guest's name for it (`xvda`, `hdc`, ...).
    pub vdev: String,
    /// Its device id ([`parse_vdev`]).
    pub devid: u32,
    /// Read-write (`access=rw`, the default except for CD-ROMs).
    pub writable: bool,
    /// `devtype=cdrom` / `cdrom` / `<vdev>:cdrom`.
    pub cdrom: bool,
    /// `backend=<domain-name>`.
    pub backend: Option<String>,
    /// `backendtype=` (`phy`, `tap`, `qdisk`).
    pub backendtype: Option<String>,
    /// `script=` (or a deprecated `iscsi:`-style prefix).
    pub script: Option<String>,
    /// Advertise discard (`discard`, the default; `no-discard`).
    pub discard: bool,
    /// `direct-io-safe`.
    pub direct_io_safe: bool,
}

const IGNORED_PREFIXES: [&str; 7] = [
    "tapdisk:", "tap2:", "tap:", "aio:", "ioemu:", "file:", "phy:",
];
const SCRIPT_PREFIXES: [&str; 4] = ["iscsi:", "nbd:", "enbd:", "drbd:"];

impl DiskSpec {
    /// Parses one `<diskspec>`; the error says what is wrong.
    pub fn parse(spec: &str) -> Result<DiskSpec, String> {
        let mut d = DiskSpec {
            discard: true,
            ..Default::default()
        };
        let mut target: Option<String> = None;
        let mut format: Option<Option<DiskFormat>> = None; // Some(None): given empty
        let mut vdev: Option<String> = None;
        let mut access: Option<Option<bool>> = None;
        let mut depr_prefix = false;
        let mut devtype_set = false;
        let mut rest = spec;
        while !rest.is_empty() {
            let t = rest.trim_start();
            // `target=` eats the remainder.
            if let Some(v) = t.strip_prefix("target=") {
                target = Some(v.to_string());
                break;
            }
            let (param, next) = match t.find(',') {
                Some(i) => (&t[..i], Some(&t[i + 1..])),
                None => (t, None),
            };
            rest = next.unwrap_or("");
            let param = param.trim_end();
            if let Some((k, v)) = param.split_once('=') {
                let v = v.to_string();
                let dup = |set: bool| {
                    if set {
                        Err(format!("{k} specified more than once"))
                    } else {
                        Ok(())
                    }
                };
                match k {
                    "format" => {
                        dup(format.is_some())?;
                        format = Some(parse_format(&v)?);
                    }
                    "vdev" => {
                        dup(vdev.is_some())?;
                        vdev = Some(v);
                    }
                    "access" => {
                        dup(access.is_some())?;
                        access = Some(parse_access(&v)?);
                    }
                    "devtype" => {
                        dup(devtype_set)?;
                        devtype_set = true;
                        match v.as_str() {
                            "cdrom" => d.cdrom = true,
                            "disk" | "" => {}
                            _ => return Err(format!("unknown devtype {v}")),
                        }
                    }
                    "backend" => d.backend = Some(v),
                    "backendtype" => match v.as_str() {
                        "phy" | "tap" | "qdisk" | "standalone" => d.backendtype = Some(v),
                        _ => return Err(format!("unknown backendtype {v}")),
                    },
                    "script" => d.script = Some(v),
                    "colo-host" | "colo-port" | "colo-export" | "active-disk" | "hidden-disk" => {
                        return Err("COLO disks are not supported".into())
                    }
                    _ => return Err(format!("unknown disk parameter {k}")),
                }
                continue;
            }
            match param {
                "cdrom" => {
                    d.cdrom = true;
                    continue;
                }
                "discard" => {
                    d.discard = true;
                    continue;
                }
                "no-discard" => {
                    d.discard = false;
                    continue;
                }
                "direct-io-safe" => {
                    d.direct_io_safe = true;
                    continue;
                }
                "colo" => return Err("COLO disks are not supported".into()),
                _ => {}
            }
            // A positional parameter.
            if target.is_none() {
                let mut p = param;
                loop {
                    if let Some(x) = IGNORED_PREFIXES.iter().find_map(|pre| p.strip_prefix(pre)) {
                        p = x;
                        depr_prefix = true;
                    } else if let Some((f, x)) = ["raw:", "qcow2:", "qcow:", "vhd:"]
                        .iter()
                        .find_map(|pre| p.strip_prefix(pre).map(|x| (&pre[..pre.len() - 1], x)))
                    {
                        format = Some(DiskFormat::parse(f));
                        p = x;
                        depr_prefix = true;
                    } else if let Some((s, x)) = SCRIPT_PREFIXES
                        .iter()
                        .find_map(|pre| p.strip_prefix(pre).map(|x| (&pre[..pre.len() - 1], x)))
                    {
                        d.script = Some(format!("block-{s}"));
                        p = x;
                        depr_prefix = true;
                    } else {
                        break;
                    }
                }
                target = Some(p.to_string());
            } else if !depr_prefix
                && format.is_none()
                && vdev.is_none()
                && !param.ends_with(":cdrom")
            {
                format = Some(parse_format(param)?);
            } else if vdev.is_none() {
                vdev = Some(param.to_string());
            } else if access.is_none() {
                access = Some(parse_access(param)?);
            } else {
                return Err(format!("too many positional parameters ({param})"));
            }
        }
        let mut vdev = vdev.filter(|v| !v.is_empty()).ok_or("no vdev specified")?;
        if let Some(dev) = vdev.strip_suffix(":cdrom") {
            d.cdrom = true;
            vdev = dev.to_string();
        } else if let Some(dev) = vdev.strip_suffix(":disk") {
            vdev = dev.to_string();
        }
        d.devid = parse_vdev(&vdev).ok_or_else(|| format!("invalid vdev {vdev}"))?;
        d.vdev = vdev;
        d.format = format.flatten().unwrap_or_default();
        d.writable = access.flatten().unwrap_or(!d.cdrom);
        d.target = target.filter(|t| !t.is_empty()).map(|t| {
            if t.starts_with('/') || d.script.is_some() {
                t
            } else {
                format!("/dev/{t}")
            }
        });
        if d.target.is_none() && !d.cdrom {
            return Err("no target specified".into());
        }
        Ok(d)
    }
}

fn parse_format(s: &str) -> Result<Option<DiskFormat>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    DiskFormat::parse(s)
        .map(Some)
        .ok_or_else(|| format!("unknown disk format {s}"))
}

fn parse_access(s: &str) -> Result<Option<bool>, String> {
    match s {
        "" => Ok(None),
        "r" | "ro" => Ok(Some(false)),
        "w" | "rw" => Ok(Some(true)),
        _ => Err(format!("unknown access {s}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> DiskSpec {
        DiskSpec::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_documents_equivalent_forms() {
        let want = DiskSpec {
            target: Some("/dev/vg/guest-volume".into()),
            format: DiskFormat::Raw,
            vdev: "hda".into(),
            devid: 768,
            writable: true,
            discard: true,
            ..Default::default()
        };
        for s in [
            "/dev/vg/guest-volume,,hda",
            "/dev/vg/guest-volume,raw,hda,rw",
            "format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume",
            "raw:/dev/vg/guest-volume,hda,w",
        ] {
            assert_eq!(p(s), want, "{s}");
        }
        let want = DiskSpec {
            target: Some("/root/image.iso".into()),
            vdev: "hdc".into(),
            devid: 22 << 8,
            writable: false,
            cdrom: true,
            discard: true,
            ..Default::default()
        };
        for s in [
            "/root/image.iso,,hdc,cdrom",
            "/root/image.iso,,hdc,,cdrom",
            "/root/image.iso,raw,hdc,devtype=cdrom",
            "format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso",
            "raw:/root/image.iso,hdc:cdrom,ro",
        ] {
            assert_eq!(p(s), want, "{s}");
        }
    }

    #[test]
    fn legacy_and_misc() {
        let d = p("phy:/dev/vg/g,xvda,w");
        assert_eq!(
            (d.target.as_deref(), d.devid, d.writable),
            (Some("/dev/vg/g"), 51712, true)
        );
        let d = p("file:/x.iso,xvdc:cdrom,r");
        assert!(d.cdrom && !d.writable && d.devid == 51744);
        let d = p("tap:aio:qcow2:/images/g.qcow2,xvdb,w");
        assert_eq!(d.format, DiskFormat::Qcow2);
        assert_eq!(d.target.as_deref(), Some("/images/g.qcow2"));
        let d = p(",hdc:cdrom,r");
        assert!(d.cdrom && d.target.is_none());
        let d = p("sdb1,,xvde");
        assert_eq!(d.target.as_deref(), Some("/dev/sdb1"));
        let d = p("/i.img, qcow2, xvdf, ro, no-discard, backend=dd, direct-io-safe");
        assert_eq!(d.format, DiskFormat::Qcow2);
        assert!(!d.discard && d.direct_io_safe && !d.writable);
        assert_eq!(d.backend.as_deref(), Some("dd"));
        let d = p("iscsi:iqn.2001-05.com.example:x,xvda,w");
        assert_eq!(d.script.as_deref(), Some("block-iscsi"));
        assert_eq!(d.target.as_deref(), Some("iqn.2001-05.com.example:x"));
        for bad in [
            "/a",
            "/a,,",
            "/a,ntfs,xvda",
            "/a,,xvda,rx",
            "/a,,xvda,w,extra",
            "/a,,floppy",
            "/a,,xvda,w,bogus=1",
            "vdev=xvda,vdev=xvdb,target=/a",
            "/a,,xvda,colo",
            ",,xvda",
        ] {
            assert!(DiskSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
