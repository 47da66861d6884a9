//! The toolstack's half of a vbd (what libxl's `device_disk_add` writes):
//! the back-end directory `/local/domain/0/backend/vbd/<domid>/<devid>`
//! (owned by Dom0, readable by the guest) and the frontend directory
//! `/local/domain/<domid>/device/vbd/<devid>` (owned by the guest,
//! readable by Dom0), both in state Initialising; and the virtual device
//! names of `docs/misc/vbd-interface.txt` (`xvda` → 51712).

use alloc::format;
use alloc::string::String;

use pv_guest_lib::xenbus::{Access, Perm, XsErr};

use super::{backend_path, frontend_path};
use crate::xenstore::{Host, Xenstored};

/// A disk as the toolstack describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VbdSpec<'a> {
    /// The guest.
    pub domid: u16,
    /// The device id ([`parse_vdev`]).
    pub devid: u32,
    /// The name the guest sees (`dev`, e.g. `xvda`).
    pub vdev: &'a str,
    /// `params`: what backs it (path of the disk or image).
    pub params: &'a str,
    /// `w` or `r`.
    pub writable: bool,
    /// `device-type` `cdrom` rather than `disk`.
    pub cdrom: bool,
}

/// Writes both directories (libxl's layout and permissions), states
/// Initialising.
pub fn add_vbd<H: Host>(xs: &mut Xenstored<H>, spec: &VbdSpec<'_>) -> Result<(), XsErr> {
    let be = backend_path(spec.domid, spec.devid);
    let fe = frontend_path(spec.domid, spec.devid);
    let be_perms = [
        Perm::new(0, Access::None),
        Perm::new(spec.domid, Access::Read),
    ];
    let fe_perms = [
        Perm::new(spec.domid, Access::None),
        Perm::new(0, Access::Read),
    ];
    let _ = xs.rm(&be);
    let _ = xs.rm(&fe);
    xs.mknod(&be, &be_perms)?;
    let dtype = if spec.cdrom { "cdrom" } else { "disk" };
    let devid = format!("{}", spec.devid);
    let domid = format!("{}", spec.domid);
    let nodes: [(&str, &str); 13] = [
        ("frontend", &fe),
        ("frontend-id", &domid),
        ("online", "1"),
        ("removable", if spec.cdrom { "1" } else { "0" }),
        ("bootable", "1"),
        ("dev", spec.vdev),
        ("type", "phy"),
        ("mode", if spec.writable { "w" } else { "r" }),
        ("device-type", dtype),
        ("discard-enable", if spec.writable { "1" } else { "0" }),
        ("params", spec.params),
        ("virtual-device", &devid),
        ("state", "1"),
    ];
    for (k, v) in nodes {
        let p = format!("{be}/{k}");
        xs.write(&p, v.as_bytes())?;
        xs.set_perms(&p, &be_perms)?;
    }
    xs.mknod(&fe, &fe_perms)?;
    let nodes: [(&str, &str); 5] = [
        ("backend", &be),
        ("backend-id", "0"),
        ("virtual-device", &devid),
        ("device-type", dtype),
        ("state", "1"),
    ];
    for (k, v) in nodes {
        let p = format!("{fe}/{k}");
        xs.write(&p, v.as_bytes())?;
        xs.set_perms(&p, &fe_perms)?;
    }
    Ok(())
}

/// Removes both directories (after the device is gone).
pub fn remove_vbd<H: Host>(xs: &mut Xenstored<H>, domid: u16, devid: u32) {
    let _ = xs.rm(&backend_path(domid, devid));
    let _ = xs.rm(&frontend_path(domid, devid));
}

/// The devices of `domid` listed under the back-end root (`xl
/// block-list`).
pub fn list_vbds<H: Host>(xs: &mut Xenstored<H>, domid: u16) -> alloc::vec::Vec<u32> {
    let mut v: alloc::vec::Vec<u32> = xs
        .directory(&format!("{}/{domid}", super::BACKEND_ROOT))
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

fn disk_index(letters: &str) -> Option<u32> {
    // a..z, aa..zz, ...: bijective base 26.
    if letters.is_empty() || letters.len() > 3 {
        return None;
    }
    let mut n: u32 = 0;
    for c in letters.bytes() {
        if !c.is_ascii_lowercase() {
            return None;
        }
        n = n * 26 + u32::from(c - b'a') + 1;
    }
    Some(n - 1)
}

fn split_name(s: &str) -> Option<(u32, u32)> {
    let i = s.find(|c: char| c.is_ascii_digit()).unwrap_or(s.len());
    let disk = disk_index(&s[..i])?;
    let part = if i == s.len() {
        0
    } else {
        let p = &s[i..];
        if p.starts_with('0') {
            return None;
        }
        p.parse().ok()?
    };
    Some((disk, part))
}

/// The device id of a vdev name (`docs/misc/vbd-interface.txt`): `xvdX[N]`,
/// `hdX[N]`, `sdX[N]`, `dNpM`, or a plain number.
pub fn parse_vdev(name: &str) -> Option<u32> {
    let name = name.split(':').next()?;
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        return name.parse().ok();
    }
    let ext = |disk: u32, part: u32| -> Option<u32> {
        (disk < (1 << 20) && part < 256).then_some((1 << 28) | (disk << 8) | part)
    };
    if let Some(rest) = name.strip_prefix('d') {
        if let Some((d, p)) = rest.split_once('p').or(Some((rest, "0"))) {
            let disk: u32 = d.parse().ok()?;
            let part: u32 = p.parse().ok()?;
            return ext(disk, part);
        }
    }
    if let Some(rest) = name.strip_prefix("xvd") {
        let (disk, part) = split_name(rest)?;
        if disk < 16 && part < 16 {
            return Some((202 << 8) | (disk << 4) | part);
        }
        return ext(disk, part);
    }
    if let Some(rest) = name.strip_prefix("hd") {
        let (disk, part) = split_name(rest)?;
        if disk >= 4 || part >= 64 {
            return None;
        }
        let major = [3, 3, 22, 22][disk as usize];
        return Some((major << 8) | ((disk % 2) * 64) | part);
    }
    if let Some(rest) = name.strip_prefix("sd") {
        let (disk, part) = split_name(rest)?;
        if disk < 16 && part < 16 {
            return Some((8 << 8) | (disk << 4) | part);
        }
        return ext(disk, part);
    }
    None
}

/// The `xvd` name of a device id (for `xl block-list`).
pub fn vdev_name(devid: u32) -> String {
    let letters = |mut d: u32| {
        let mut s = alloc::vec::Vec::new();
        loop {
            s.push(b'a' + (d % 26) as u8);
            if d < 26 {
                break;
            }
            d = d / 26 - 1;
        }
        s.reverse();
        String::from_utf8(s).unwrap_or_default()
    };
    let (disk, part) = if devid & (1 << 28) != 0 {
        ((devid >> 8) & 0xfffff, devid & 0xff)
    } else if devid >> 8 == 202 {
        ((devid >> 4) & 0xf, devid & 0xf)
    } else {
        return format!("{devid}");
    };
    if part == 0 {
        format!("xvd{}", letters(disk))
    } else {
        format!("xvd{}{part}", letters(disk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vdev_names() {
        assert_eq!(parse_vdev("xvda"), Some(51712));
        assert_eq!(parse_vdev("xvda1"), Some(51713));
        assert_eq!(parse_vdev("xvdb"), Some(51728));
        assert_eq!(parse_vdev("xvdc:cdrom"), Some(51744));
        assert_eq!(parse_vdev("xvdp15"), Some((202 << 8) | (15 << 4) | 15));
        assert_eq!(parse_vdev("xvdq"), Some((1 << 28) | (16 << 8)));
        assert_eq!(parse_vdev("xvdaa"), Some((1 << 28) | (26 << 8)));
        assert_eq!(parse_vdev("hda"), Some(3 << 8));
        assert_eq!(parse_vdev("hdb2"), Some((3 << 8) | 66));
        assert_eq!(parse_vdev("hdc"), Some(22 << 8));
        assert_eq!(parse_vdev("sda1"), Some((8 << 8) | 1));
        assert_eq!(parse_vdev("d0p1"), Some((1 << 28) | 1));
        assert_eq!(parse_vdev("d3"), Some((1 << 28) | (3 << 8)));
        assert_eq!(parse_vdev("51712"), Some(51712));
        for bad in [
            "", "xvd", "xvdA", "xvda01", "hde", "floppy", "dxp1", "xvdaaaa",
        ] {
            assert_eq!(parse_vdev(bad), None, "{bad}");
        }
        for n in ["xvda", "xvdb3", "xvdq", "xvdaa", "xvdzz7"] {
            assert_eq!(vdev_name(parse_vdev(n).unwrap()), n);
        }
    }
}
