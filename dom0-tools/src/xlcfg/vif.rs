//! Network interface specifications (`vif = [...]` in xl.cfg, `xl
//! network-attach` arguments), as xl-network-configuration(5) defines them
//! and xl's `parse_nic_config` reads them, and MAC addresses: parsing,
//! printing, and generating them with Xen's `00:16:3e` prefix as libxl
//! does for a vif without `mac=`.
//!
//! A spec is a comma-separated list of `key=value` settings: `mac=`,
//! `bridge=`, `ip=`, `model=`, `type=vif|ioemu`, `vifname=`, `script=`,
//! `backend=`, `rate=`, `gatewaydev=` (`netdev=` is its deprecated name),
//! `devid=`, `mtu=`, `trusted`/`untrusted`, `accel=` (ignored, as xl
//! does) and COLO's `colo_*=` and `forwarddev=`. An empty spec (`''`) is a vif with every default.
//!
//! As in xl, a config entry is split at commas (empty pieces skipped) and
//! each piece loses its leading spaces but not its trailing ones
//! (`'ip=10.0.0.1 ,bridge=br0'` gives the IP `10.0.0.1 `); a
//! `network-attach` argument is one setting, commas and all. Values are
//! taken as they are (`script="vif-bridge"` keeps its quotes).
//!
//! ```text
//! vif = [ 'mac=00:16:3e:00:00:01,bridge=xenbr0', 'bridge=xenbr1,rate=10Mb/s@20ms' ]
//! ```

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Xen's organisationally unique identifier: generated MACs start with it.
pub const XEN_OUI: [u8; 3] = [0x00, 0x16, 0x3e];

/// The kind of vif (`type=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NicType {
    /// A PV interface only (`type=vif`).
    Vif,
    /// A PV interface plus an emulated one for HVM guests (`type=ioemu`).
    VifIoemu,
}

impl NicType {
    /// The name xl.cfg uses.
    pub fn as_str(self) -> &'static str {
        match self {
            NicType::Vif => "vif",
            NicType::VifIoemu => "ioemu",
        }
    }
}

/// A transmit rate limit (`rate=10Mb/s@20ms`): so many bytes per
/// replenishment interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VifRate {
    /// Bytes that may be sent per interval.
    pub bytes_per_interval: u64,
    /// The interval, µs (default 50 ms).
    pub interval_usecs: u32,
}

/// One network interface, as a spec describes it (libxl's
/// `libxl_device_nic` after `parse_nic_config`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VifSpec {
    /// The device id (`devid=`; in a config, the entry's index unless
    /// given). `None`: the next free one (`network-attach`).
    pub devid: Option<u32>,
    /// `mac=`; `None`: generate one ([`MacGenerator`]).
    pub mac: Option<[u8; 6]>,
    /// `bridge=`: the bridge to join (`None`: the default, `xenbr0`).
    pub bridge: Option<String>,
    /// `ip=`: address(es) for the vif script / frontend.
    pub ip: Option<String>,
    /// `model=`: the emulated NIC model (HVM).
    pub model: Option<String>,
    /// `type=`.
    pub nictype: Option<NicType>,
    /// `vifname=`: the back-end interface's name.
    pub vifname: Option<String>,
    /// `script=`: the hotplug script.
    pub script: Option<String>,
    /// `backend=`: the back-end domain's name (`None`: Dom0).
    pub backend: Option<String>,
    /// `rate=`.
    pub rate: Option<VifRate>,
    /// `gatewaydev=` (or the deprecated `netdev=`).
    pub gatewaydev: Option<String>,
    /// `mtu=`; `None`: the back end's default.
    pub mtu: Option<u32>,
    /// `trusted` / `untrusted`: whether the back end may trust the
    /// frontend (libxl's XSA-403 knob).
    pub trusted: Option<bool>,
    /// COLO settings (`colo_*=`, `forwarddev=`), in order.
    pub colo: Vec<(String, String)>,
}

/// The bridge a vif joins when its spec names none (libxl's default).
pub const DEFAULT_BRIDGE: &str = "xenbr0";

impl VifSpec {
    /// The bridge it joins: `bridge=` or [`DEFAULT_BRIDGE`].
    pub fn bridge_or_default(&self) -> &str {
        self.bridge.as_deref().unwrap_or(DEFAULT_BRIDGE)
    }

    /// Its MAC: `mac=`, or the next one `gen` makes.
    pub fn mac_or_generate(&self, gen: &mut MacGenerator) -> [u8; 6] {
        self.mac.unwrap_or_else(|| gen.next_mac())
    }

    /// Applies one `key=value` setting (`parse_nic_config`).
    pub fn apply(&mut self, token: &str) -> Result<(), VifError> {
        match token {
            "trusted" => {
                self.trusted = Some(true);
                return Ok(());
            }
            "untrusted" => {
                self.trusted = Some(false);
                return Ok(());
            }
            _ => {}
        }
        let Some((key, val)) = token.split_once('=') else {
            return Err(VifError::Unrecognized(token.to_owned()));
        };
        let s = || Some(val.to_owned());
        match key {
            "type" => {
                self.nictype = Some(match val {
                    "vif" => NicType::Vif,
                    "ioemu" => NicType::VifIoemu,
                    _ => return Err(VifError::InvalidParameter("type")),
                })
            }
            "mac" => {
                self.mac = Some(parse_mac_lenient(val).ok_or(VifError::InvalidParameter("mac"))?)
            }
            "bridge" => self.bridge = s(),
            "netdev" | "gatewaydev" => self.gatewaydev = s(),
            "ip" => self.ip = s(),
            "script" => self.script = s(),
            "backend" => self.backend = s(),
            "vifname" => self.vifname = s(),
            "model" => self.model = s(),
            "rate" => self.rate = Some(parse_rate(val)?),
            "accel" => {}
            "devid" => self.devid = Some(parse_devid(val)?),
            "mtu" => self.mtu = Some(parse_devid(val)?),
            k if k == "forwarddev" || COLO_KEYS.contains(&k) => {
                self.colo.retain(|(x, _)| x != k);
                self.colo.push((k.to_owned(), val.to_owned()));
            }
            _ => return Err(VifError::Unrecognized(token.to_owned())),
        }
        Ok(())
    }
}

/// The COLO keys `parse_nic_config` knows.
pub const COLO_KEYS: &[&str] = &[
    "colo_sock_mirror_id",
    "colo_sock_mirror_ip",
    "colo_sock_mirror_port",
    "colo_sock_compare_sec_in_id",
    "colo_sock_compare_sec_in_ip",
    "colo_sock_compare_sec_in_port",
    "colo_sock_redirector0_id",
    "colo_sock_redirector0_ip",
    "colo_sock_redirector0_port",
    "colo_sock_redirector1_id",
    "colo_sock_redirector1_ip",
    "colo_sock_redirector1_port",
    "colo_sock_redirector2_id",
    "colo_sock_redirector2_ip",
    "colo_sock_redirector2_port",
    "colo_sock_compare_pri_in_id",
    "colo_sock_compare_pri_in_ip",
    "colo_sock_compare_pri_in_port",
    "colo_sock_compare_notify_id",
    "colo_sock_compare_notify_ip",
    "colo_sock_compare_notify_port",
    "colo_filter_mirror_queue",
    "colo_filter_mirror_outdev",
    "colo_filter_redirector0_queue",
    "colo_filter_redirector0_indev",
    "colo_filter_redirector0_outdev",
    "colo_filter_redirector1_queue",
    "colo_filter_redirector1_indev",
    "colo_filter_redirector1_outdev",
    "colo_compare_pri_in",
    "colo_compare_sec_in",
    "colo_compare_out",
    "colo_compare_notify_dev",
    "colo_sock_sec_redirector0_id",
    "colo_sock_sec_redirector0_ip",
    "colo_sock_sec_redirector0_port",
    "colo_sock_sec_redirector1_id",
    "colo_sock_sec_redirector1_ip",
    "colo_sock_sec_redirector1_port",
    "colo_filter_sec_redirector0_queue",
    "colo_filter_sec_redirector0_indev",
    "colo_filter_sec_redirector0_outdev",
    "colo_filter_sec_redirector1_queue",
    "colo_filter_sec_redirector1_indev",
    "colo_filter_sec_redirector1_outdev",
    "colo_filter_sec_rewriter0_queue",
    "colo_checkpoint_host",
    "colo_checkpoint_port",
];

/// Why a vif spec was refused (xl's messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VifError {
    /// `Invalid parameter `mac'.` (or `type`).
    InvalidParameter(&'static str),
    /// `unrecognized argument `foo=bar'`.
    Unrecognized(String),
    /// A bad `rate=` (libxlu: `config parsing error in vif: MESSAGE in
    /// `RATE'`).
    Rate {
        /// `invalid rate`, `rate overflow`, ...
        message: &'static str,
        /// The text concerned.
        rate: String,
    },
    /// A `devid=` that is no number.
    BadNumber(String),
}

impl VifError {
    /// Whether xl prints this one after the config's source name
    /// (`FILE: ` or `command line: `), as libxlu's messages are.
    pub fn has_source_prefix(&self) -> bool {
        matches!(self, VifError::Rate { .. })
    }
}

impl fmt::Display for VifError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VifError::InvalidParameter(p) => write!(f, "Invalid parameter `{p}'."),
            VifError::Unrecognized(t) => write!(f, "unrecognized argument `{t}'"),
            VifError::Rate { message, rate } => {
                write!(f, "config parsing error in vif: {message} in `{rate}'")
            }
            VifError::BadNumber(s) => write!(f, "xl: failed to convert \"{s}\" to number"),
        }
    }
}

/// `strtoul`: optional white space and sign, then digits in `radix` (base
/// 16 takes an optional `0x`; base 0 picks from the prefix). Returns the
/// value (saturated; wrapped for `-`, as C does) and the bytes used (0: no
/// number).
fn strtoul(s: &[u8], radix: u32) -> (u64, usize) {
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
    let hex_prefix = s.get(i) == Some(&b'0')
        && matches!(s.get(i + 1), Some(b'x' | b'X'))
        && s.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
    let (radix, start) = match radix {
        16 if hex_prefix => (16, i + 2),
        0 if hex_prefix => (16, i + 2),
        0 if s.get(i) == Some(&b'0') => (8, i),
        0 => (10, i),
        r => (r, i),
    };
    let mut j = start;
    let mut v: u64 = 0;
    while let Some(d) = s.get(j).and_then(|&c| (c as char).to_digit(radix)) {
        v = v
            .saturating_mul(u64::from(radix))
            .saturating_add(u64::from(d));
        j += 1;
    }
    if j == start {
        return (0, 0);
    }
    (if neg { v.wrapping_neg() } else { v }, j)
}

/// xl's `mac=` reading: six `strtoul(.., 16)` numbers, each at most 255,
/// separated by any one character (`00:16:3E:5A:21:07`, `0:16:3e:0:0:1`);
/// anything after the sixth is ignored.
fn parse_mac_lenient(s: &str) -> Option<[u8; 6]> {
    let b = s.as_bytes();
    let mut at = 0;
    let mut mac = [0u8; 6];
    for (i, m) in mac.iter_mut().enumerate() {
        if at > b.len() {
            return None;
        }
        let (v, used) = strtoul(&b[at..], 16);
        if used == 0 || v > 255 {
            return None;
        }
        *m = v as u8;
        at += used;
        // xl steps over one separator; past the end of the string is
        // undefined in C and refused here.
        if i < 5 && at >= b.len() {
            return None;
        }
        at += 1;
    }
    Some(mac)
}

/// A MAC as `network-detach` and libxl read it (`libxl__parse_mac`): six
/// two-digit hex numbers with one separator between them (`00:16:3e:0a:0b:0c`).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let b = s.as_bytes();
    if b.len() < 17 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, m) in mac.iter_mut().enumerate() {
        let p = &b[i * 3..i * 3 + 2];
        if !p.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        *m = u8::from_str_radix(core::str::from_utf8(p).ok()?, 16).ok()?;
    }
    Some(mac)
}

/// A MAC as xl prints it: `00:16:3e:0a:0b:0c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// Makes MACs as libxl does for vifs without one: Xen's [`XEN_OUI`], then
/// three random bytes, the first with its top bit clear (libxl takes them
/// from a fresh UUID, masking the first with `0x7f`). The bytes come from
/// a SplitMix64 stream on the given seed (Dom0 seeds it from the TSC; a
/// test seeds it with a constant), so the same seed gives the same MACs.
#[derive(Clone, Debug)]
pub struct MacGenerator {
    state: u64,
}

impl MacGenerator {
    /// A generator on `seed`.
    pub fn new(seed: u64) -> MacGenerator {
        MacGenerator { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The next MAC.
    pub fn next_mac(&mut self) -> [u8; 6] {
        let r = self.next_u64().to_le_bytes();
        [XEN_OUI[0], XEN_OUI[1], XEN_OUI[2], r[0] & 0x7f, r[1], r[2]]
    }
}

/// One MAC with Xen's prefix from `seed` (the first [`MacGenerator`] gives).
pub fn generate_mac(seed: u64) -> [u8; 6] {
    MacGenerator::new(seed).next_mac()
}

/// `xl: failed to convert` unless `s` starts with a decimal number
/// (strtoul, base 10; trailing text ignored as xl does); at most
/// `i32::MAX` (libxl's devid is an int).
fn parse_devid(s: &str) -> Result<u32, VifError> {
    let (v, used) = strtoul(s.as_bytes(), 10);
    if used == 0 || v > i32::MAX as u64 {
        return Err(VifError::BadNumber(s.to_owned()));
    }
    Ok(v as u32)
}

/// `rate=`: `N[GMK](B|b)/s[@INTERVAL]`, INTERVAL `N[m|u][s]` (no unit:
/// seconds), as libxlu's `xlu_vif_parse_rate` reads it.
pub fn parse_rate(rate: &str) -> Result<VifRate, VifError> {
    let err = |message: &'static str, r: &str| VifError::Rate {
        message,
        rate: r.to_owned(),
    };
    let (bytes, interval) = match rate.split_once('@') {
        Some((b, i)) => (b, Some(i)),
        None => (rate, None),
    };
    if bytes.is_empty() {
        return Err(err("no rate specified", rate));
    }
    // ^[0-9]+[GMK]?[Bb]/s$
    let b = bytes.as_bytes();
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let mut k = digits;
    if matches!(b.get(k), Some(b'G' | b'M' | b'K')) {
        k += 1;
    }
    let valid = digits > 0 && matches!(b.get(k), Some(b'B' | b'b')) && &b[k + 1..] == b"/s";
    if !valid {
        return Err(err("invalid rate", bytes));
    }
    let (mut v, used) = strtoul(b, 0);
    if v == 0 || v > u64::from(u32::MAX) {
        return Err(err("rate overflow", bytes));
    }
    let p = &b[used..];
    match p.first() {
        Some(b'G') => v *= 1_000_000_000,
        Some(b'M') => v *= 1_000_000,
        Some(b'K') => v *= 1000,
        _ => {}
    }
    if p.first() == Some(&b'b') || p.get(1) == Some(&b'b') {
        v /= 8;
    }
    let mut interval_usecs: u32 = 50_000;
    if let Some(iv) = interval {
        // ^[0-9]+[mu]?s?$
        let ib = iv.as_bytes();
        let d = ib.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut k = d;
        if matches!(ib.get(k), Some(b'm' | b'u')) {
            k += 1;
        }
        if ib.get(k) == Some(&b's') {
            k += 1;
        }
        if d == 0 || k != ib.len() {
            return Err(err("invalid replenishment interval", iv));
        }
        let (mut t, used) = strtoul(ib, 0);
        if t == 0 || t > u64::from(u32::MAX) {
            return Err(err("replenishment interval overflow", iv));
        }
        match ib.get(used) {
            Some(b's') | None => t *= 1_000_000,
            Some(b'm') => t *= 1000,
            _ => {}
        }
        if t > u64::from(u32::MAX) {
            return Err(err("replenishment interval overflow", iv));
        }
        interval_usecs = t as u32;
    }
    if v > u64::MAX / u64::from(interval_usecs) {
        return Err(err("rate overflow", rate));
    }
    Ok(VifRate {
        bytes_per_interval: v * u64::from(interval_usecs) / 1_000_000,
        interval_usecs,
    })
}

/// Parses one `vif` entry of a config as xl does (split at commas, empty
/// pieces skipped, leading spaces dropped); `devid` is the entry's index.
pub fn parse_vif_spec(spec: &str, devid: u32) -> Result<VifSpec, VifError> {
    let mut nic = VifSpec {
        devid: Some(devid),
        ..VifSpec::default()
    };
    for piece in spec.split(',').filter(|p| !p.is_empty()) {
        nic.apply(piece.trim_start_matches(' '))?;
    }
    Ok(nic)
}

/// Parses `xl network-attach`'s settings, one per argument; the devid is
/// left for the back end to choose unless given.
pub fn parse_vif_args(args: &[&str]) -> Result<VifSpec, VifError> {
    let mut nic = VifSpec::default();
    for a in args {
        nic.apply(a)?;
    }
    Ok(nic)
}

/// The `rate=` text of a rate, for messages (`N bytes every M us`).
pub fn describe_rate(r: &VifRate) -> String {
    format!(
        "{} bytes every {} us",
        r.bytes_per_interval, r.interval_usecs
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn full_spec() {
        let v = parse_vif_spec(
            "mac=00:16:3E:5A:21:07,bridge=xenbr1, ip=10.0.0.2 ,model=e1000,type=ioemu,vifname=web0,script=vif-route,backend=netdom,gatewaydev=eth0",
            2,
        )
        .unwrap();
        assert_eq!(v.devid, Some(2));
        assert_eq!(v.mac, Some([0x00, 0x16, 0x3e, 0x5a, 0x21, 0x07]));
        assert_eq!(v.bridge.as_deref(), Some("xenbr1"));
        assert_eq!(
            v.ip.as_deref(),
            Some("10.0.0.2 "),
            "trailing space kept, as xl does"
        );
        assert_eq!(v.model.as_deref(), Some("e1000"));
        assert_eq!(v.nictype, Some(NicType::VifIoemu));
        assert_eq!(v.vifname.as_deref(), Some("web0"));
        assert_eq!(v.script.as_deref(), Some("vif-route"));
        assert_eq!(v.backend.as_deref(), Some("netdom"));
        assert_eq!(v.gatewaydev.as_deref(), Some("eth0"));
        assert_eq!(v.bridge_or_default(), "xenbr1");
    }

    #[test]
    fn empty_and_defaults() {
        let v = parse_vif_spec("", 0).unwrap();
        assert_eq!(
            v,
            VifSpec {
                devid: Some(0),
                ..VifSpec::default()
            }
        );
        assert_eq!(v.bridge_or_default(), "xenbr0");
        let v = parse_vif_spec(",,bridge=br0,,", 1).unwrap();
        assert_eq!(v.bridge.as_deref(), Some("br0"));
        let v = parse_vif_spec("devid=7,netdev=eth1,accel=x,mtu=9000,untrusted", 0).unwrap();
        assert_eq!((v.devid, v.gatewaydev.as_deref()), (Some(7), Some("eth1")));
        assert_eq!((v.mtu, v.trusted), (Some(9000), Some(false)));
        assert_eq!(parse_vif_spec("trusted", 0).unwrap().trusted, Some(true));
        let v = parse_vif_spec("colo_compare_out=c,forwarddev=f,colo_compare_out=d", 0).unwrap();
        assert_eq!(
            v.colo,
            vec![
                ("forwarddev".to_string(), "f".to_string()),
                ("colo_compare_out".to_string(), "d".to_string())
            ]
        );
    }

    #[test]
    fn macs() {
        for (s, m) in [
            ("00:16:3e:00:00:01", [0, 0x16, 0x3e, 0, 0, 1]),
            ("0:16:3e:0:0:1", [0, 0x16, 0x3e, 0, 0, 1]),
            ("00-16-3E-AA-BB-CC", [0, 0x16, 0x3e, 0xaa, 0xbb, 0xcc]),
            ("00:16:3e:00:00:01:junk", [0, 0x16, 0x3e, 0, 0, 1]),
            ("0x0:16:3e:0:0:ff", [0, 0x16, 0x3e, 0, 0, 0xff]),
        ] {
            assert_eq!(parse_mac_lenient(s), Some(m), "{s}");
        }
        for s in [
            "",
            "00:16:3e",
            "00:16:3e:00:00:",
            "100:16:3e:00:00:01",
            "zz:16:3e:00:00:01",
            "-1:0:0:0:0:0",
        ] {
            assert_eq!(parse_mac_lenient(s), None, "{s}");
            let e = parse_vif_spec(&format!("mac={s}"), 0).unwrap_err();
            assert_eq!(e.to_string(), "Invalid parameter `mac'.");
        }
        assert_eq!(
            parse_mac("00:16:3e:0a:0b:0c"),
            Some([0, 0x16, 0x3e, 0x0a, 0x0b, 0x0c])
        );
        assert_eq!(parse_mac("0:16:3e:0a:0b:0c"), None);
        assert_eq!(parse_mac("00:16:3e:0a:0b"), None);
        assert_eq!(
            Mac([0, 0x16, 0x3e, 0x0a, 0xb, 0xff]).to_string(),
            "00:16:3e:0a:0b:ff"
        );
    }

    #[test]
    fn generated_macs_have_xens_prefix_and_follow_the_seed() {
        let mut g = MacGenerator::new(42);
        let mut seen = Vec::new();
        for _ in 0..1000 {
            let m = g.next_mac();
            assert_eq!(&m[..3], &XEN_OUI);
            assert!(m[3] < 0x80, "libxl clears the top bit");
            assert!(!seen.contains(&m), "a repeat in 1000");
            seen.push(m);
        }
        let mut a = MacGenerator::new(7);
        let mut b = MacGenerator::new(7);
        assert_eq!(a.next_mac(), b.next_mac());
        assert_ne!(generate_mac(1), generate_mac(2));
        assert_eq!(generate_mac(7), MacGenerator::new(7).next_mac());
        let spec = VifSpec {
            mac: Some([1, 2, 3, 4, 5, 6]),
            ..VifSpec::default()
        };
        assert_eq!(spec.mac_or_generate(&mut a), [1, 2, 3, 4, 5, 6]);
        assert_eq!(&VifSpec::default().mac_or_generate(&mut a)[..3], &XEN_OUI);
    }

    #[test]
    fn rates() {
        let r = parse_rate("10Mb/s").unwrap();
        assert_eq!(
            r,
            VifRate {
                bytes_per_interval: 62_500,
                interval_usecs: 50_000
            }
        );
        let r = parse_rate("100MB/s@20ms").unwrap();
        assert_eq!(
            r,
            VifRate {
                bytes_per_interval: 2_000_000,
                interval_usecs: 20_000
            }
        );
        let r = parse_rate("1GB/s@1s").unwrap();
        assert_eq!(r.interval_usecs, 1_000_000);
        let r = parse_rate("8Kb/s@500ms").unwrap();
        assert_eq!(
            r,
            VifRate {
                bytes_per_interval: 500,
                interval_usecs: 500_000
            }
        );
        let r = parse_rate("8MB/s@500us").unwrap();
        assert_eq!(
            r,
            VifRate {
                bytes_per_interval: 4000,
                interval_usecs: 500
            }
        );
        let r = parse_rate("1024B/s@2").unwrap();
        assert_eq!(r.interval_usecs, 2_000_000);
        for (s, msg) in [
            ("", "config parsing error in vif: no rate specified in `'"),
            (
                "@20ms",
                "config parsing error in vif: no rate specified in `@20ms'",
            ),
            (
                "10Mbit/s",
                "config parsing error in vif: invalid rate in `10Mbit/s'",
            ),
            (
                "0Mb/s",
                "config parsing error in vif: rate overflow in `0Mb/s'",
            ),
            (
                "99999999999B/s",
                "config parsing error in vif: rate overflow in `99999999999B/s'",
            ),
            (
                "10Mb/s@20h",
                "config parsing error in vif: invalid replenishment interval in `20h'",
            ),
            (
                "10Mb/s@0ms",
                "config parsing error in vif: replenishment interval overflow in `0ms'",
            ),
            (
                "10Mb/s@5000s",
                "config parsing error in vif: replenishment interval overflow in `5000s'",
            ),
        ] {
            assert_eq!(parse_rate(s).unwrap_err().to_string(), msg, "{s}");
        }
        let v = parse_vif_spec("rate=10Mb/s", 0).unwrap();
        assert_eq!(
            v.rate.map(|r| describe_rate(&r)).as_deref(),
            Some("62500 bytes every 50000 us")
        );
        assert!(parse_vif_spec("rate=fast", 0)
            .unwrap_err()
            .has_source_prefix());
    }

    #[test]
    fn never_panics() {
        let alphabet = [
            "mac=",
            "rate=",
            "@",
            "/s",
            "b",
            "B",
            "M",
            "G",
            "0",
            "9",
            ":",
            ",",
            " ",
            "devid=",
            "x",
            "\u{e9}",
            "-",
            "ms",
            "us",
            "s",
            "4294967296",
            "0x",
        ];
        let mut seed = 0x9e37_79b9_u64;
        for _ in 0..5000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut x = seed;
            let mut s = String::new();
            for _ in 0..(seed % 8) {
                s.push_str(alphabet[(x % alphabet.len() as u64) as usize]);
                x = x / alphabet.len() as u64 + 1;
            }
            let _ = parse_vif_spec(&s, 0);
            let _ = parse_rate(&s);
            let _ = parse_mac(&s);
            let _ = parse_mac_lenient(&s);
        }
    }

    #[test]
    fn errors() {
        let e = |s: &str| parse_vif_spec(s, 0).unwrap_err().to_string();
        assert_eq!(e("type=e1000"), "Invalid parameter `type'.");
        assert_eq!(
            e("bridge=br0,colour=red"),
            "unrecognized argument `colour=red'"
        );
        assert_eq!(e("xenbr0"), "unrecognized argument `xenbr0'");
        assert_eq!(e("Bridge=br0"), "unrecognized argument `Bridge=br0'");
        assert_eq!(e("devid=x"), "xl: failed to convert \"x\" to number");
        assert_eq!(
            e("devid=4294967296"),
            "xl: failed to convert \"4294967296\" to number"
        );
        // A tab is not skipped; a network-attach argument is not split.
        assert_eq!(e("\tbridge=br0"), "unrecognized argument `\tbridge=br0'");
        let v = parse_vif_args(&["bridge=a,b", "mac=00:16:3e:00:00:09"]).unwrap();
        assert_eq!((v.devid, v.bridge.as_deref()), (None, Some("a,b")));
        assert_eq!(parse_devid("12abc"), Ok(12));
    }
}
