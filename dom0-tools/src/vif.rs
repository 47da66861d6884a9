//! MAC addresses as netback and the bridge handle them: parsed from the
//! backend's `mac` node, classified (unicast, group, broadcast), taken
//! from frames, or generated the way libxl does with Xen's OUI `00:16:3e`
//! (the same stream as [`crate::xlcfg::MacGenerator`]). The `vif = [...]`
//! specs themselves are [`crate::xlcfg::VifSpec`].

use core::fmt;

pub use crate::xlcfg::vif::{DEFAULT_BRIDGE, XEN_OUI};

/// The hotplug script libxl records by default.
pub const DEFAULT_SCRIPT: &str = "vif-bridge";

/// An Ethernet MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The broadcast address.
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    /// Parses `xx:xx:xx:xx:xx:xx` (hex, either case, two digits each).
    pub fn parse(s: &str) -> Option<Mac> {
        let b = s.as_bytes();
        if b.len() != 17 {
            return None;
        }
        let mut m = [0u8; 6];
        for (i, out) in m.iter_mut().enumerate() {
            let p = i * 3;
            if i < 5 && b[p + 2] != b':' {
                return None;
            }
            let hi = (b[p] as char).to_digit(16)?;
            let lo = (b[p + 1] as char).to_digit(16)?;
            *out = (hi * 16 + lo) as u8;
        }
        Some(Mac(m))
    }

    /// libxl's random MAC: `00:16:3e`, then three bytes from `seed` with
    /// the top bit of the fourth cleared (`mac[3] = r[0] & 0x7f`, as
    /// `libxl__device_nic_setdefault` does); [`crate::xlcfg::generate_mac`].
    pub fn generate(seed: u64) -> Mac {
        Mac(crate::xlcfg::generate_mac(seed))
    }

    /// Group (multicast or broadcast) address: bit 0 of the first byte.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    /// The broadcast address.
    pub fn is_broadcast(&self) -> bool {
        *self == Mac::BROADCAST
    }

    /// A unicast address that may be learned (not group, not all zero).
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && self.0 != [0; 6]
    }

    /// The destination address of an Ethernet frame.
    pub fn dst_of(frame: &[u8]) -> Option<Mac> {
        frame.get(0..6).map(|b| Mac(b.try_into().unwrap_or([0; 6])))
    }

    /// The source address of an Ethernet frame.
    pub fn src_of(frame: &[u8]) -> Option<Mac> {
        frame
            .get(6..12)
            .map(|b| Mac(b.try_into().unwrap_or([0; 6])))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn parse_and_print() {
        let m = Mac::parse("00:16:3E:0a:Bc:ff").unwrap();
        assert_eq!(m, Mac([0, 0x16, 0x3e, 0x0a, 0xbc, 0xff]));
        assert_eq!(format!("{m}"), "00:16:3e:0a:bc:ff");
        for bad in [
            "",
            "00:16:3e:0a:bc",
            "00:16:3e:0a:bc:fff",
            "00-16-3e-0a-bc-ff",
            "0g:16:3e:0a:bc:ff",
            "00:16:3e:0a:bc:f ",
            "+0:16:3e:0a:bc:ff",
        ] {
            assert_eq!(Mac::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn generated_macs_are_xen_unicast_and_stable() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..2000u64 {
            let m = Mac::generate(seed);
            assert_eq!(m.0[..3], XEN_OUI);
            assert_eq!(m.0[3] & 0x80, 0);
            assert!(m.is_unicast());
            assert_eq!(m, Mac::generate(seed));
            assert_eq!(m.0, crate::xlcfg::MacGenerator::new(seed).next_mac());
            seen.insert(m);
        }
        assert!(seen.len() > 1990, "{}", seen.len());
    }

    #[test]
    fn classify() {
        assert!(Mac::BROADCAST.is_broadcast() && Mac::BROADCAST.is_multicast());
        assert!(Mac([0x01, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(!Mac([0; 6]).is_unicast());
        let f = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 8, 0];
        assert_eq!(Mac::dst_of(&f), Some(Mac([1, 2, 3, 4, 5, 6])));
        assert_eq!(Mac::src_of(&f), Some(Mac([7, 8, 9, 10, 11, 12])));
        assert_eq!(Mac::src_of(&f[..11]), None);
    }
}
