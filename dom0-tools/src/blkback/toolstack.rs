//! The toolstack's half of a vbd (what libxl's `device_disk_add` writes):
//! the back-end directory `/local/domain/0/backend/vbd/<domid>/<devid>`
//! (owned by Dom0, readable by the guest) and the frontend directory
//! `/local/domain/<domid>/device/vbd/<devid>` (owned by the guest,
//! readable by Dom0), both in state Initialising. Device names and
//! `disk = [...]` specifications are parsed by [`crate::xlcfg::disk`].

use alloc::format;

use pv_guest_lib::xenbus::{Access, Perm, XsErr};

use super::{backend_path, frontend_path};
use crate::xenstore::{Host, Xenstored};
use crate::xl::backend::BlockInfo;
use crate::xlcfg::disk::DiskSpec;

/// A disk as the toolstack describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VbdSpec<'a> {
    /// The guest.
    pub domid: u16,
    /// The device id ([`vdev_to_devid`](crate::xlcfg::disk::vdev_to_devid)).
    pub devid: u32,
    /// The name the guest sees (`dev`, e.g. `xvda`).
    pub vdev: &'a str,
    /// `params`: what backs it (path of the disk or image).
    pub params: &'a str,
    /// `w` or `r`.
    pub writable: bool,
    /// `device-type` `cdrom` rather than `disk`.
    pub cdrom: bool,
    /// `discard-enable`.
    pub discard: bool,
}

impl<'a> VbdSpec<'a> {
    /// The vbd an xl `disk = [...]` entry describes, for `domid`.
    pub fn from_disk(domid: u16, d: &'a DiskSpec) -> Self {
        VbdSpec {
            domid,
            devid: d.devid,
            vdev: &d.vdev,
            params: d.target.as_deref().unwrap_or(""),
            writable: d.readwrite,
            cdrom: d.cdrom,
            discard: d.discard.unwrap_or(true),
        }
    }
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
        (
            "discard-enable",
            if spec.writable && spec.discard {
                "1"
            } else {
                "0"
            },
        ),
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

/// `xl block-list` for `domid`: each vbd's back-end state and the
/// frontend's event channel and ring reference (-1 where missing), as
/// libxl's `libxl_device_disk_getinfo` reads them.
pub fn block_list<H: Host>(xs: &mut Xenstored<H>, domid: u16) -> alloc::vec::Vec<BlockInfo> {
    let num = |xs: &mut Xenstored<H>, p: &str| -> i32 {
        xs.read(p)
            .ok()
            .and_then(|v| core::str::from_utf8(&v).ok()?.trim().parse().ok())
            .unwrap_or(-1)
    };
    list_vbds(xs, domid)
        .into_iter()
        .map(|devid| {
            let be = backend_path(domid, devid);
            let fe = frontend_path(domid, devid);
            BlockInfo {
                devid,
                backend_id: 0,
                frontend_id: u32::from(domid),
                state: num(xs, &format!("{be}/state")),
                evtch: num(xs, &format!("{fe}/event-channel")),
                rref: num(xs, &format!("{fe}/ring-ref")),
                backend: be,
            }
        })
        .collect()
}
