//! Dom0's own hardware, found once at boot: PCI enumeration, the virtio
//! disks (named `vda`, `vdb`, … in bus order, as Linux names them, so
//! `phy:/dev/vda` in an xl.cfg means what a Xen user expects) and the
//! first virtio NIC (the uplink of the guests' bridge).
//!
//! Devices that fail to open are reported on the console and skipped:
//! Dom0 keeps running without them.

use alloc::format;
use alloc::string::String;
#[cfg(target_os = "none")]
use alloc::vec::Vec;

#[cfg(target_os = "none")]
use crate::pci::{self, metal::PortConfig};
#[cfg(target_os = "none")]
use crate::virtio::dev::{self, Disk, Nic};
#[cfg(target_os = "none")]
use pv_guest_lib::println;
#[cfg(target_os = "none")]
use virtio_drivers::transport::DeviceType;

/// A disk of Dom0's and its name.
#[cfg(target_os = "none")]
pub struct NamedDisk {
    /// `vda`, `vdb`, ….
    pub name: String,
    /// The driver.
    pub disk: Disk,
}

/// What [`probe`] found.
#[cfg(target_os = "none")]
#[derive(Default)]
pub struct Hardware {
    /// The virtio-blk disks, in bus order.
    pub disks: Vec<NamedDisk>,
    /// The first virtio-net NIC.
    pub nic: Option<Nic>,
}

/// The Linux-style name of the `n`th virtio disk: `vda`..`vdz`, `vdaa`...
pub fn disk_name(n: usize) -> String {
    let letter = |i: usize| char::from(b'a' + (i % 26) as u8);
    if n < 26 {
        format!("vd{}", letter(n))
    } else {
        format!("vd{}{}", letter(n / 26 - 1), letter(n))
    }
}

#[cfg(target_os = "none")]
/// Enumerates PCI through CONFIG_ADDRESS/CONFIG_DATA and opens every
/// virtio disk and the first virtio NIC, interrupt driven.
pub fn probe() -> Hardware {
    let mut hw = Hardware::default();
    let mut ports = match PortConfig::new() {
        Ok(p) => p,
        Err(e) => {
            println!("Dom0: no PCI access ({e}): no disks or NICs");
            return hw;
        }
    };
    let fns = pci::enumerate(&ports);
    for found in dev::find(&fns) {
        let f = found.function;
        match found.kind {
            DeviceType::Block => {
                let name = disk_name(hw.disks.len());
                let opened = dev::open(&mut ports, &f, true)
                    .and_then(|(t, irq, _)| Disk::new(t, irq, f.bdf));
                match opened {
                    Ok(disk) => {
                        let mib = disk.sectors() / 2048;
                        let irq = if disk.irq().is_some() {
                            "MSI-X"
                        } else {
                            "polled"
                        };
                        let ro = if disk.readonly() { ", read-only" } else { "" };
                        println!(
                            "Dom0: /dev/{name}: virtio-blk at {}, {mib} MiB ({} sectors){ro}, {irq}",
                            f.bdf,
                            disk.sectors()
                        );
                        hw.disks.push(NamedDisk { name, disk });
                    }
                    Err(e) => println!("Dom0: virtio-blk at {}: {e}", f.bdf),
                }
            }
            DeviceType::Network if hw.nic.is_none() => {
                let opened =
                    dev::open(&mut ports, &f, true).and_then(|(t, irq, _)| Nic::new(t, irq, f.bdf));
                match opened {
                    Ok(nic) => {
                        let m = nic.mac();
                        println!(
                            "Dom0: eth0: virtio-net at {}, MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                            f.bdf, m[0], m[1], m[2], m[3], m[4], m[5]
                        );
                        hw.nic = Some(nic);
                    }
                    Err(e) => println!("Dom0: virtio-net at {}: {e}", f.bdf),
                }
            }
            _ => {}
        }
    }
    hw
}

#[cfg(test)]
mod tests {
    use super::disk_name;

    #[test]
    fn names_as_linux() {
        assert_eq!(disk_name(0), "vda");
        assert_eq!(disk_name(1), "vdb");
        assert_eq!(disk_name(25), "vdz");
        assert_eq!(disk_name(26), "vdaa");
        assert_eq!(disk_name(27), "vdab");
        assert_eq!(disk_name(52), "vdba");
    }
}
