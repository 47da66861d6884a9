//! What an xl.cfg disk's `target=` names on Oxen's Dom0, and who may use
//! it: [`Medium::parse`] and [`Sharing`] (the rules of Xen's block hotplug
//! script: a medium a guest writes is that guest's alone).
//!
//! - `/dev/vda`, `phy:/dev/vda`: a whole disk of Dom0's (`vda`, `vdb`, …
//!   in PCI order);
//! - `/dev/vda1`: primary partition 1 of its MBR;
//! - `/mnt/vda/dir/guest.img` (or `/mnt/vda1/...`): a raw image file on
//!   the FAT file system of that disk (or partition), which Dom0 finds at
//!   boot;
//! - anything else: a raw image file in Dom0's ramdisk, served from memory.

use alloc::string::String;
use alloc::vec::Vec;

/// A disk target, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Medium<'a> {
    /// A whole disk (`vda`).
    Disk(&'a str),
    /// A primary MBR partition (`vda`, 1..=4).
    Partition(&'a str, u32),
    /// A file on the FAT volume of a disk (`vda`, partition or 0 for the
    /// whole disk, path inside the volume starting with `/`).
    File {
        /// The disk.
        disk: &'a str,
        /// Its partition holding the volume (0: the whole disk).
        partition: u32,
        /// The path inside the volume.
        path: &'a str,
    },
    /// A file in Dom0's ramdisk.
    Ramdisk(&'a str),
}

/// Where Dom0 mounts the FAT volumes it finds.
pub const MOUNT_ROOT: &str = "/mnt/";

/// Splits `vda1` into (`vda`, 1); `vda` into (`vda`, 0). None if it is not
/// a virtio disk name.
pub fn split_disk_name(name: &str) -> Option<(&str, u32)> {
    let rest = name.strip_prefix("vd")?;
    let letters = rest.bytes().take_while(u8::is_ascii_lowercase).count();
    if letters == 0 || letters > 2 {
        return None;
    }
    let (disk, part) = name.split_at(2 + letters);
    if part.is_empty() {
        return Some((disk, 0));
    }
    if !part.bytes().all(|b| b.is_ascii_digit()) || part.starts_with('0') {
        return None;
    }
    match part.parse() {
        Ok(n @ 1..=4) => Some((disk, n)),
        _ => None,
    }
}

/// The name a volume is mounted under: `vda` or `vda1`.
pub fn volume_name(disk: &str, partition: u32) -> String {
    if partition == 0 {
        String::from(disk)
    } else {
        alloc::format!("{disk}{partition}")
    }
}

impl<'a> Medium<'a> {
    /// Classifies a disk target (`phy:` and `file:` prefixes, which xl's
    /// legacy syntax allows, are dropped).
    pub fn parse(target: &'a str) -> Medium<'a> {
        let t = target
            .strip_prefix("phy:")
            .or_else(|| target.strip_prefix("file:"))
            .unwrap_or(target);
        if let Some(dev) = t.strip_prefix("/dev/") {
            if let Some((disk, part)) = split_disk_name(dev) {
                return if part == 0 {
                    Medium::Disk(disk)
                } else {
                    Medium::Partition(disk, part)
                };
            }
        }
        if let Some(rest) = t.strip_prefix(MOUNT_ROOT) {
            let (vol, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            if let Some((disk, partition)) = split_disk_name(vol) {
                if path.len() > 1 {
                    return Medium::File {
                        disk,
                        partition,
                        path,
                    };
                }
            }
        }
        Medium::Ramdisk(t)
    }

    /// The disk it lives on, if any.
    pub fn disk(&self) -> Option<&'a str> {
        match *self {
            Medium::Disk(d) | Medium::Partition(d, _) | Medium::File { disk: d, .. } => Some(d),
            Medium::Ramdisk(_) => None,
        }
    }

    /// Whether two media can hold the same sectors (a whole disk overlaps
    /// its partitions and files; a partition its files; a file itself).
    pub fn overlaps(&self, other: &Medium<'_>) -> bool {
        use Medium::*;
        match (self, other) {
            (Ramdisk(a), Ramdisk(b)) => a == b,
            (Ramdisk(_), _) | (_, Ramdisk(_)) => false,
            (Disk(a), o) | (o, Disk(a)) => o.disk() == Some(*a),
            (Partition(a, p), Partition(b, q)) => a == b && p == q,
            (
                Partition(a, p),
                File {
                    disk, partition, ..
                },
            )
            | (
                File {
                    disk, partition, ..
                },
                Partition(a, p),
            ) => a == disk && (p == partition || *partition == 0),
            (
                File {
                    disk: a,
                    partition: p,
                    path: x,
                },
                File {
                    disk: b,
                    partition: q,
                    path: y,
                },
            ) => a == b && p == q && x.eq_ignore_ascii_case(y),
        }
    }
}

/// The media guests use, for the sharing rule.
#[derive(Default, Debug)]
pub struct Sharing {
    users: Vec<User>,
}

#[derive(Debug)]
struct User {
    domid: u16,
    devid: u32,
    target: String,
    writable: bool,
}

impl Sharing {
    /// Records that `domid`'s device `devid` uses `target`, unless that
    /// breaks the rule: a medium written by one domain is not used by any
    /// other, and one read by others is not written. The error names the
    /// holder.
    pub fn claim(
        &mut self,
        domid: u16,
        devid: u32,
        target: &str,
        writable: bool,
    ) -> Result<(), String> {
        let m = Medium::parse(target);
        if !matches!(m, Medium::Ramdisk(_)) {
            for u in &self.users {
                if u.domid == domid && u.devid == devid {
                    continue;
                }
                let conflict = (writable || u.writable)
                    && u.domid != domid
                    && Medium::parse(&u.target).overlaps(&m);
                if conflict {
                    return Err(alloc::format!(
                        "{target} is in use by domain {} ({}, {}), and so cannot be used now",
                        u.domid,
                        u.target,
                        if u.writable {
                            "read-write"
                        } else {
                            "read-only"
                        }
                    ));
                }
            }
        }
        self.release(domid, devid);
        self.users.push(User {
            domid,
            devid,
            target: String::from(target),
            writable,
        });
        Ok(())
    }

    /// Forgets one device.
    pub fn release(&mut self, domid: u16, devid: u32) {
        self.users
            .retain(|u| !(u.domid == domid && u.devid == devid));
    }

    /// Forgets a domain's devices.
    pub fn release_domain(&mut self, domid: u16) {
        self.users.retain(|u| u.domid != domid);
    }

    /// Who uses media overlapping `target`: `d1 xvda (rw)` each.
    pub fn users_of(&self, target: &str) -> Vec<String> {
        let m = Medium::parse(target);
        self.users
            .iter()
            .filter(|u| Medium::parse(&u.target).overlaps(&m))
            .map(|u| {
                let vdev = crate::xlcfg::disk::devid_to_xvd(u.devid)
                    .unwrap_or_else(|| alloc::format!("{}", u.devid));
                let mode = if u.writable { "rw" } else { "ro" };
                alloc::format!("d{} {vdev} ({mode}, {})", u.domid, u.target)
            })
            .collect()
    }

    /// How many devices are recorded.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_targets() {
        assert_eq!(Medium::parse("/dev/vda"), Medium::Disk("vda"));
        assert_eq!(Medium::parse("phy:/dev/vdb"), Medium::Disk("vdb"));
        assert_eq!(Medium::parse("/dev/vda2"), Medium::Partition("vda", 2));
        assert_eq!(
            Medium::parse("/mnt/vda/images/g.img"),
            Medium::File {
                disk: "vda",
                partition: 0,
                path: "/images/g.img"
            }
        );
        assert_eq!(
            Medium::parse("file:/mnt/vdc1/g.img"),
            Medium::File {
                disk: "vdc",
                partition: 1,
                path: "/g.img"
            }
        );
        // Not ours: served from the ramdisk.
        for t in [
            "/boot/disk.img",
            "/dev/sda",
            "/dev/vda5",
            "/dev/vda0",
            "/dev/vd",
            "/mnt/vda",
            "/mnt/vda/",
            "/mnt/sda/x.img",
        ] {
            assert!(matches!(Medium::parse(t), Medium::Ramdisk(_)), "{t}");
        }
        assert_eq!(split_disk_name("vdaa"), Some(("vdaa", 0)));
        assert_eq!(split_disk_name("vdab3"), Some(("vdab", 3)));
        assert_eq!(split_disk_name("vdabc"), None);
        assert_eq!(volume_name("vda", 0), "vda");
        assert_eq!(volume_name("vda", 1), "vda1");
    }

    #[test]
    fn overlap_rules() {
        let p = Medium::parse;
        assert!(p("/dev/vda").overlaps(&p("/dev/vda1")));
        assert!(p("/dev/vda").overlaps(&p("/mnt/vda1/x.img")));
        assert!(!p("/dev/vda").overlaps(&p("/dev/vdb")));
        assert!(!p("/dev/vda1").overlaps(&p("/dev/vda2")));
        assert!(p("/dev/vda1").overlaps(&p("/mnt/vda1/x")));
        assert!(!p("/dev/vda1").overlaps(&p("/mnt/vda2/x")));
        assert!(p("/mnt/vda/X.IMG").overlaps(&p("/mnt/vda/x.img")));
        assert!(!p("/mnt/vda/a.img").overlaps(&p("/mnt/vda/b.img")));
        assert!(p("/boot/d.img").overlaps(&p("/boot/d.img")));
    }

    #[test]
    fn a_written_medium_is_one_domains() {
        let mut s = Sharing::default();
        s.claim(1, 51712, "/dev/vdb", true).unwrap();
        let e = s.claim(2, 51712, "/dev/vdb", false).unwrap_err();
        assert!(e.contains("in use by domain 1"), "{e}");
        assert!(s.claim(2, 51712, "/mnt/vdb/x.img", false).is_err());
        // Its own second use, and re-claiming the same device, are fine.
        s.claim(1, 51728, "/dev/vdb", false).unwrap();
        s.claim(1, 51712, "/dev/vdb", true).unwrap();
        // Read-only sharing is allowed; then nobody may write.
        s.claim(3, 51712, "/dev/vdc", false).unwrap();
        s.claim(4, 51712, "/dev/vdc", false).unwrap();
        assert!(s.claim(5, 51712, "/dev/vdc", true).is_err());
        // Ramdisk images are copied per guest: always fine.
        s.claim(3, 51728, "/boot/d.img", true).unwrap();
        s.claim(4, 51728, "/boot/d.img", true).unwrap();
        assert_eq!(
            s.users_of("/dev/vdc"),
            ["d3 xvda (ro, /dev/vdc)", "d4 xvda (ro, /dev/vdc)"]
        );
        s.release_domain(1);
        s.claim(2, 51712, "/dev/vdb", true).unwrap();
        s.release(2, 51712);
        assert_eq!(s.len(), 4);
    }
}
