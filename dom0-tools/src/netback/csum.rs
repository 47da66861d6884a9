//! Checksum completion for frames a guest sent with `NETTXF_csum_blank`
//! (Linux netfront offloads TCP/UDP checksums by default): Dom0 delivers
//! only complete frames (receivers, the physical NIC and our own
//! netfront all want them), so netback fills the TCP or UDP checksum of
//! IPv4 and IPv6 packets in, from scratch (whatever partial sum the guest
//! left in the field is ignored). Other frames are left alone.

/// Ethertypes.
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
        acc = (acc & 0xffff) + (acc >> 16);
    }
    if let [b] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*b) << 8);
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Fills in the TCP/UDP checksum of an Ethernet frame carrying IPv4 or
/// IPv6 (no extension headers, no IPv4 fragments). Returns whether it
/// did.
pub fn complete(frame: &mut [u8]) -> bool {
    if frame.len() < 14 {
        return false;
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let ip = &mut frame[14..];
    let (proto, l4_off, l4_len, pseudo) = match ethertype {
        ETH_P_IP => {
            if ip.len() < 20 || ip[0] >> 4 != 4 {
                return false;
            }
            let ihl = usize::from(ip[0] & 0xf) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff;
            if ihl < 20 || total < ihl || total > ip.len() || frag != 0 {
                return false;
            }
            let l4_len = total - ihl;
            let mut acc = sum(&ip[12..20], 0);
            acc = sum(&[0, ip[9]], acc);
            acc = sum(&(l4_len as u16).to_be_bytes(), acc);
            (ip[9], ihl, l4_len, acc)
        }
        ETH_P_IPV6 => {
            if ip.len() < 40 || ip[0] >> 4 != 6 {
                return false;
            }
            let l4_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            if 40 + l4_len > ip.len() {
                return false;
            }
            let mut acc = sum(&ip[8..40], 0);
            acc = sum(&(l4_len as u32).to_be_bytes(), acc);
            acc = sum(&[0, 0, 0, ip[6]], acc);
            (ip[6], 40, l4_len, acc)
        }
        _ => return false,
    };
    let field = match proto {
        IPPROTO_TCP if l4_len >= 20 => 16,
        IPPROTO_UDP if l4_len >= 8 => 6,
        _ => return false,
    };
    let l4 = &mut ip[l4_off..l4_off + l4_len];
    l4[field] = 0;
    l4[field + 1] = 0;
    let mut c = !fold(sum(l4, pseudo));
    if proto == IPPROTO_UDP && c == 0 {
        c = 0xffff;
    }
    l4[field..field + 2].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// An Ethernet + IPv4 + UDP frame with `payload`.
    fn udp4(payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&[0xff; 6]);
        f.extend_from_slice(&[0, 0x16, 0x3e, 0, 0, 1]);
        f.extend_from_slice(&[0x08, 0x00]);
        let total = 20 + 8 + payload.len();
        f.extend_from_slice(&[
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0x40,
            0,
            64,
            17,
            0,
            0,
        ]);
        f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        let ul = 8 + payload.len();
        f.extend_from_slice(&[
            0x30,
            0x39,
            0x00,
            0x35,
            (ul >> 8) as u8,
            ul as u8,
            0x12,
            0x34,
        ]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn a_known_udp_checksum() {
        // 10.0.0.1:12345 → 10.0.0.2:53, "hello" (smoltcp checks ours in
        // tests/netif_smoltcp.rs).
        let mut f = udp4(b"hello");
        assert!(complete(&mut f));
        let c = u16::from_be_bytes([f[14 + 20 + 6], f[14 + 20 + 7]]);
        // Re-summing with the checksum in place gives all ones.
        let ip = &f[14..];
        let mut acc = sum(&ip[12..20], 0);
        acc = sum(&[0, 17], acc);
        acc = sum(&13u16.to_be_bytes(), acc);
        assert_eq!(fold(sum(&ip[20..], acc)), 0xffff);
        assert_ne!(c, 0);
        // Odd and even lengths, idempotent.
        for n in 0..40 {
            let mut f = udp4(&alloc::vec![n as u8; n]);
            assert!(complete(&mut f));
            let once = f.clone();
            assert!(complete(&mut f));
            assert_eq!(f, once);
        }
    }

    #[test]
    fn leaves_other_frames_alone() {
        let mut arp = udp4(b"x");
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!complete(&mut arp));
        let mut short = udp4(b"x");
        short.truncate(30);
        assert!(!complete(&mut short));
        let mut frag = udp4(b"x");
        frag[14 + 6] = 0x20; // more fragments
        assert!(!complete(&mut frag));
        assert!(!complete(&mut [0u8; 5]));
        // A lying total length is refused, not followed.
        let mut liar = udp4(b"x");
        liar[14 + 2] = 0xff;
        assert!(!complete(&mut liar));
    }
}
