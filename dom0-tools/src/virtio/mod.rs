//! Virtio devices for Dom0: the machine's disk and NIC under QEMU
//! (`virtio-blk-pci`, `virtio-net-pci`), driven with the `virtio-drivers`
//! crate through its PCI transport.
//!
//! - `hal` (target only): `virtio_drivers::Hal` for a PV Dom0. Devices see
//!   *machine* addresses: DMA memory is a run of Dom0 frames whose machine
//!   frames are contiguous (checked page by page through the P2M, as
//!   Linux's `xen_swiotlb` checks `xen_phys_to_bus`), and a buffer the
//!   crate shares is handed over in place when its pages are machine
//!   contiguous, else through a bounce run copied in and out. Device
//!   memory is mapped with `mmu_update` and `DOMID_IO`
//!   (`pci::metal::map_io`).
//! - `dev` (target only): finding the devices, MSI-X interrupts as event
//!   channels (`PHYSDEVOP_map_pirq` type MSI with the table's address,
//!   `EVTCHNOP_bind_pirq`), the virtqueues' MSI-X vectors (the crate's
//!   transport leaves them unset), and the safe `Disk` and
//!   `Nic` wrappers that sleep on the event channel until the
//!   device has answered.
//!
//! The pure parts (which pages a buffer spans, whether machine frames are
//! contiguous) are here and tested on the host.

#[cfg(target_os = "none")]
pub mod blk;
#[cfg(target_os = "none")]
pub mod dev;
#[cfg(target_os = "none")]
pub mod hal;

/// Page size.
pub const PAGE: u64 = 4096;

/// The pages `[va, va + len)` touches: the first page's address and the
/// count (`None` for an empty or wrapping range).
pub fn page_span(va: u64, len: u64) -> Option<(u64, u64)> {
    if len == 0 {
        return None;
    }
    let first = va & !(PAGE - 1);
    let last = va.checked_add(len - 1)? & !(PAGE - 1);
    Some((first, (last - first) / PAGE + 1))
}

/// True if the machine frames `mfns` follow each other.
pub fn machine_contiguous(mfns: impl IntoIterator<Item = u64>) -> bool {
    let mut prev: Option<u64> = None;
    for m in mfns {
        if let Some(p) = prev {
            if p.checked_add(1) != Some(m) {
                return false;
            }
        }
        prev = Some(m);
    }
    true
}

/// The machine address of byte `va` of a buffer, given its page's frame.
pub const fn maddr_of(mfn: u64, va: u64) -> u64 {
    (mfn * PAGE) | (va & (PAGE - 1))
}

/// An Ethernet frame's building blocks (for the test kernel and the
/// bridge's uplink): ARP request/reply layouts.
pub mod ether {
    /// EtherType ARP.
    pub const ETH_P_ARP: u16 = 0x0806;
    /// Broadcast MAC.
    pub const BROADCAST: [u8; 6] = [0xff; 6];

    /// An ARP "who-has `target` tell `sender_ip`" from `mac` (60 bytes,
    /// padded to Ethernet's minimum).
    pub fn arp_request(mac: [u8; 6], sender_ip: [u8; 4], target: [u8; 4]) -> [u8; 60] {
        let mut f = [0u8; 60];
        f[0..6].copy_from_slice(&BROADCAST);
        f[6..12].copy_from_slice(&mac);
        f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
        f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
        f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
        f[18] = 6;
        f[19] = 4;
        f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
        f[22..28].copy_from_slice(&mac);
        f[28..32].copy_from_slice(&sender_ip);
        // target MAC unknown (zero)
        f[38..42].copy_from_slice(&target);
        f
    }

    /// If `frame` is an ARP reply to `to` saying where `ip` is, the MAC.
    pub fn arp_reply_from(frame: &[u8], to: [u8; 6], ip: [u8; 4]) -> Option<[u8; 6]> {
        if frame.len() < 42
            || frame[0..6] != to
            || frame[12..14] != ETH_P_ARP.to_be_bytes()
            || frame[20..22] != 2u16.to_be_bytes()
            || frame[28..32] != ip
        {
            return None;
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&frame[22..28]);
        Some(mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        assert_eq!(page_span(0x1000, 0), None);
        assert_eq!(page_span(0x1000, 1), Some((0x1000, 1)));
        assert_eq!(page_span(0x1000, 4096), Some((0x1000, 1)));
        assert_eq!(page_span(0x1fff, 2), Some((0x1000, 2)));
        assert_eq!(page_span(0x1800, 8192), Some((0x1000, 3)));
        assert_eq!(page_span(u64::MAX, 2), None);
    }

    #[test]
    fn contiguity() {
        assert!(machine_contiguous([]));
        assert!(machine_contiguous([7]));
        assert!(machine_contiguous([7, 8, 9]));
        assert!(!machine_contiguous([7, 9]));
        assert!(!machine_contiguous([8, 7]));
        assert!(!machine_contiguous([u64::MAX, 0]));
        assert_eq!(maddr_of(0x1234, 0xffff_8000_0000_0abc), 0x1234abc);
    }

    #[test]
    fn arp_round_trip() {
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let req = ether::arp_request(mac, [10, 0, 2, 15], [10, 0, 2, 2]);
        assert_eq!(&req[0..6], &[0xff; 6]);
        assert_eq!(&req[38..42], &[10, 0, 2, 2]);
        // Build the reply the gateway would send.
        let gw = [0x52, 0x55, 10, 0, 2, 2];
        let mut rep = [0u8; 60];
        rep[0..6].copy_from_slice(&mac);
        rep[6..12].copy_from_slice(&gw);
        rep[12..14].copy_from_slice(&[8, 6]);
        rep[20..22].copy_from_slice(&[0, 2]);
        rep[22..28].copy_from_slice(&gw);
        rep[28..32].copy_from_slice(&[10, 0, 2, 2]);
        assert_eq!(ether::arp_reply_from(&rep, mac, [10, 0, 2, 2]), Some(gw));
        assert_eq!(ether::arp_reply_from(&rep, mac, [10, 0, 2, 3]), None);
        assert_eq!(ether::arp_reply_from(&rep[..30], mac, [10, 0, 2, 2]), None);
        assert_eq!(ether::arp_reply_from(&req, mac, [10, 0, 2, 2]), None);
    }
}
