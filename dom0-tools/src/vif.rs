//! Virtual network interfaces as xl sees them: MAC addresses (parsed from
//! the config, or generated the way libxl does with Xen's OUI `00:16:3e`),
//! and the `vif = [ "..." ]` spec strings of xl.cfg
//! (`docs/man/xl-network-configuration.5.pod`).

use alloc::string::{String, ToString};
use core::fmt;

/// Xen's organisationally unique identifier, the first three bytes of every
/// MAC libxl generates.
pub const XEN_OUI: [u8; 3] = [0x00, 0x16, 0x3e];

/// The bridge a vif joins when the spec names none (libxl's default).
pub const DEFAULT_BRIDGE: &str = "xenbr0";

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
    /// `libxl__device_nic_setdefault` does). The same seed gives the same
    /// address; callers mix in something unique (domain id, uuid, device
    /// number, a clock).
    pub fn generate(seed: u64) -> Mac {
        let r = splitmix64(seed).to_le_bytes();
        Mac([XEN_OUI[0], XEN_OUI[1], XEN_OUI[2], r[0] & 0x7f, r[1], r[2]])
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

/// SplitMix64: a well-mixed 64-bit hash of the seed.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One entry of xl.cfg's `vif = [...]`, e.g.
/// `"mac=00:16:3e:00:00:01,bridge=xenbr0"`. Keys xl knows but Oxen does
/// not act on (`model`, `rate`, `gatewaydev`, ...) are kept as given.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct VifSpec {
    /// `mac=`: `None` means "generate one".
    pub mac: Option<Mac>,
    /// `bridge=` (default [`DEFAULT_BRIDGE`]).
    pub bridge: Option<String>,
    /// `ip=`.
    pub ip: Option<String>,
    /// `script=`.
    pub script: Option<String>,
    /// `vifname=`.
    pub vifname: Option<String>,
    /// `type=` (`vif` or `ioemu`).
    pub kind: Option<String>,
    /// `model=`.
    pub model: Option<String>,
    /// `backend=` (domain name or id serving the vif).
    pub backend: Option<String>,
    /// `rate=`.
    pub rate: Option<String>,
    /// `mtu=`.
    pub mtu: Option<u32>,
    /// `devid=`.
    pub devid: Option<u32>,
    /// `gatewaydev=`.
    pub gatewaydev: Option<String>,
}

/// Why a vif spec was refused (xl's messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VifSpecError {
    /// `unrecognized argument `KEY'`.
    Unknown(String),
    /// `invalid mac address: VALUE` (and other malformed values).
    BadValue(String, String),
}

impl fmt::Display for VifSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VifSpecError::Unknown(k) => write!(f, "unrecognized argument `{k}'"),
            VifSpecError::BadValue(k, v) if k == "mac" => write!(f, "invalid mac address: {v}"),
            VifSpecError::BadValue(k, v) => write!(f, "invalid {k}: {v}"),
        }
    }
}

impl VifSpec {
    /// Parses a comma-separated `key=value` spec (the empty spec is valid:
    /// every default).
    pub fn parse(spec: &str) -> Result<VifSpec, VifSpecError> {
        let mut v = VifSpec::default();
        for tok in spec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (k, val) = tok.split_once('=').unwrap_or((tok, ""));
            let bad = || VifSpecError::BadValue(k.to_string(), val.to_string());
            let s = Some(val.to_string());
            match k {
                "mac" => v.mac = Some(Mac::parse(val).ok_or_else(bad)?),
                "bridge" => v.bridge = s,
                "ip" => v.ip = s,
                "script" => v.script = s,
                "vifname" => v.vifname = s,
                "type" => v.kind = s,
                "model" => v.model = s,
                "backend" => v.backend = s,
                "rate" => v.rate = s,
                "gatewaydev" => v.gatewaydev = s,
                "mtu" => v.mtu = Some(val.parse().map_err(|_| bad())?),
                "devid" => v.devid = Some(val.parse().map_err(|_| bad())?),
                "accel" => {}
                _ => return Err(VifSpecError::Unknown(tok.to_string())),
            }
        }
        Ok(v)
    }

    /// The bridge, defaulted.
    pub fn bridge(&self) -> &str {
        self.bridge.as_deref().unwrap_or(DEFAULT_BRIDGE)
    }

    /// The MAC, or one generated from `seed` when the spec gave none.
    pub fn mac_or_generate(&self, seed: u64) -> Mac {
        self.mac.unwrap_or_else(|| Mac::generate(seed))
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

    #[test]
    fn vif_specs() {
        let v = VifSpec::parse("mac=00:16:3e:00:00:01, bridge=br1,ip=10.0.0.2,mtu=1500").unwrap();
        assert_eq!(v.mac, Some(Mac([0, 0x16, 0x3e, 0, 0, 1])));
        assert_eq!(v.bridge(), "br1");
        assert_eq!(v.ip.as_deref(), Some("10.0.0.2"));
        assert_eq!(v.mtu, Some(1500));
        let d = VifSpec::parse("").unwrap();
        assert_eq!(d.bridge(), DEFAULT_BRIDGE);
        assert_eq!(d.mac_or_generate(7), Mac::generate(7));
        assert_eq!(
            VifSpec::parse("mac=zz").unwrap_err().to_string(),
            "invalid mac address: zz"
        );
        assert_eq!(
            VifSpec::parse("bogus=1").unwrap_err().to_string(),
            "unrecognized argument `bogus=1'"
        );
    }
}
