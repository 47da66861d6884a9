//! Dom0's own IP networking, the parts that are not I/O: the `ip=` option
//! of Dom0's command line, addresses (`10.0.3.2`, `10.0.3.2:8002`) and
//! sizes (`64M`) as the shell takes them, the errors of the TCP calls
//! ([`NetError`]), ICMP echo messages and `ping`'s statistics, and what
//! `tcp-send`/`tcp-recv` move and print (a deterministic [`pattern`], a
//! [`Crc32`], [`Rate`]).
//!
//! The stack itself (smoltcp on a port of `xenbr0`) is
//! `toolstack/ip.rs`; see `docs/network.md`.
//!
//! # `ip=`
//!
//! Close to Linux's `ip=` kernel parameter (`Documentation/admin-guide/
//! nfs/nfsroot.rst`), in three forms:
//!
//! - `ip=ADDR/PREFIX[:GATEWAY]`, e.g. `ip=10.0.3.1/24` or
//!   `ip=10.0.2.15/24:10.0.2.2` (Oxen's short form);
//! - Linux's `ip=CLIENT:SERVER:GATEWAY:NETMASK[:HOSTNAME[:DEVICE[:AUTOCONF]]]`
//!   with a static client address (`SERVER`, `HOSTNAME`, `DEVICE` and
//!   `AUTOCONF` are accepted and ignored; an empty `GATEWAY` means none, an
//!   empty `NETMASK` the class-less default `/24`);
//! - `ip=dhcp` (or Linux's `ip=on`): ask a DHCP server.
//!
//! `ip=off`/`ip=none` (or no `ip=` at all) means no stack. The last `ip=`
//! on the line wins, as in Linux.

#![forbid(unsafe_code)]

use alloc::format;
use alloc::string::{String, ToString};
use core::fmt;

/// An IPv4 address, network byte order.
pub type Ipv4 = [u8; 4];

/// How Dom0's address is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpConfig {
    /// A fixed address.
    Static {
        /// Dom0's address.
        addr: Ipv4,
        /// The network's prefix length (0..=32).
        prefix: u8,
        /// The default route, if any.
        gateway: Option<Ipv4>,
    },
    /// Ask a DHCP server (QEMU user networking has one at 10.0.2.2).
    Dhcp,
}

impl fmt::Display for IpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpConfig::Static {
                addr,
                prefix,
                gateway,
            } => {
                write!(f, "{}/{prefix}", Addr(*addr))?;
                if let Some(g) = gateway {
                    write!(f, " via {}", Addr(*g))?;
                }
                Ok(())
            }
            IpConfig::Dhcp => f.write_str("dhcp"),
        }
    }
}

/// Displays an IPv4 address in dotted decimal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addr(pub Ipv4);

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a}.{b}.{c}.{d}")
    }
}

/// Displays a MAC address as `52:54:00:12:34:56`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// Finds the last `ip=` word on Dom0's command line: `None` if there is
/// none (or it says `off`/`none`), else the configuration or a one-line
/// error saying what is wrong with it.
pub fn from_cmdline(cmdline: &str) -> Option<Result<IpConfig, String>> {
    let value = cmdline
        .split_whitespace()
        .rev()
        .find_map(|w| w.strip_prefix("ip="))?;
    match value {
        "off" | "none" => None,
        v => Some(parse(v).map_err(|e| format!("ip={v}: {e}"))),
    }
}

/// Parses the value of `ip=` (see the module documentation).
pub fn parse(v: &str) -> Result<IpConfig, String> {
    match v {
        "" => return Err("empty (expected ADDR/PREFIX[:GATEWAY] or dhcp)".into()),
        "dhcp" | "on" => return Ok(IpConfig::Dhcp),
        _ => {}
    }
    if v.contains('/') {
        let (cidr, gw) = match v.split_once(':') {
            Some((c, g)) => (c, Some(g)),
            None => (v, None),
        };
        let (addr, prefix) = cidr.split_once('/').ok_or("expected ADDR/PREFIX")?;
        let addr = ipv4(addr).ok_or_else(|| format!("{addr:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|&p| (1..=32).contains(&p))
            .ok_or_else(|| format!("prefix {prefix:?} is not a number from 1 to 32"))?;
        let gateway = match gw {
            None => None,
            Some(g) => {
                Some(ipv4(g).ok_or_else(|| format!("gateway {g:?} is not an IPv4 address"))?)
            }
        };
        return check_static(addr, prefix, gateway);
    }
    // Linux's long form.
    let fields: alloc::vec::Vec<&str> = v.split(':').collect();
    if fields.len() < 4 {
        return Err(
            "expected ADDR/PREFIX[:GATEWAY], CLIENT:SERVER:GATEWAY:NETMASK[:...] or dhcp".into(),
        );
    }
    let addr =
        ipv4(fields[0]).ok_or_else(|| format!("client {:?} is not an IPv4 address", fields[0]))?;
    let gateway = match fields[2] {
        "" => None,
        g => Some(ipv4(g).ok_or_else(|| format!("gateway {g:?} is not an IPv4 address"))?),
    };
    let prefix = match fields[3] {
        "" => 24,
        m => ipv4(m)
            .and_then(mask_prefix)
            .ok_or_else(|| format!("netmask {m:?} is not a netmask"))?,
    };
    if let Some(a) = fields
        .get(6)
        .filter(|a| !matches!(**a, "" | "off" | "none"))
    {
        return Err(format!("autoconf {a:?}: only a static address or ip=dhcp"));
    }
    check_static(addr, prefix, gateway)
}

fn check_static(addr: Ipv4, prefix: u8, gateway: Option<Ipv4>) -> Result<IpConfig, String> {
    let unusable = |a: Ipv4| a == [0; 4] || a == [255; 4] || a[0] >= 224 || a[0] == 127;
    if unusable(addr) {
        return Err(format!("{} cannot be a host's address", Addr(addr)));
    }
    if let Some(g) = gateway {
        if unusable(g) || !same_subnet(addr, g, prefix) {
            return Err(format!(
                "gateway {} is not on {}/{prefix}",
                Addr(g),
                Addr(addr)
            ));
        }
    }
    Ok(IpConfig::Static {
        addr,
        prefix,
        gateway,
    })
}

/// Whether `a` and `b` are in the same `/prefix` network.
pub fn same_subnet(a: Ipv4, b: Ipv4, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    u32::from_be_bytes(a) & mask == u32::from_be_bytes(b) & mask
}

/// The prefix length of a contiguous netmask (`255.255.255.0` → 24).
pub fn mask_prefix(m: Ipv4) -> Option<u8> {
    let m = u32::from_be_bytes(m);
    let ones = m.leading_ones();
    (m.checked_shl(ones).unwrap_or(0) == 0 && ones > 0).then_some(ones as u8)
}

/// Parses a dotted-decimal IPv4 address (exactly four decimal parts
/// 0..=255, no leading `+`, no spaces).
pub fn ipv4(s: &str) -> Option<Ipv4> {
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for o in out.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Parses `HOST:PORT` (`10.0.3.2:8002`; port 1..=65535).
pub fn host_port(s: &str) -> Result<(Ipv4, u16), String> {
    let (h, p) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?}: expected HOST:PORT"))?;
    let h = ipv4(h).ok_or_else(|| format!("{h:?} is not an IPv4 address"))?;
    Ok((h, port(p)?))
}

/// Splits `HOST:PORT` (`"10.0.3.2:8002"`) for
/// `Toolstack::tcp_connect(host, port, ..)`, checking both.
pub fn split_host_port(s: &str) -> Result<(&str, u16), NetError> {
    let bad = || NetError::BadAddress(s.to_string());
    let (h, p) = s.rsplit_once(':').ok_or_else(bad)?;
    ipv4(h).ok_or_else(bad)?;
    Ok((h, port(p).map_err(|_| bad())?))
}

/// Parses a TCP port (1..=65535).
pub fn port(p: &str) -> Result<u16, String> {
    p.parse()
        .ok()
        .filter(|&n| n != 0)
        .ok_or_else(|| format!("{p:?} is not a port (1-65535)"))
}

/// Parses a byte count: digits with an optional binary suffix `K`, `M`,
/// `G` (also `KiB`, `MiB`, `GiB`), at most 64 GiB.
pub fn size(s: &str) -> Option<u64> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let shift = match unit {
        "" => 0,
        "K" | "k" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        _ => return None,
    };
    n.checked_shl(shift)
        .filter(|&b| b >> shift == n && b <= 64 << 30)
}

/// Why a TCP call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetError {
    /// Dom0 has no IP stack (no `ip=` on its command line, or no bridge).
    NoStack,
    /// Not an address the stack can use (`tcp_connect`'s host).
    BadAddress(String),
    /// The peer answered the connection request with a reset: nobody
    /// listens on that port.
    Refused,
    /// The peer reset an established connection.
    Reset,
    /// Nothing moved for the whole timeout (no answer to the connection
    /// request, to ARP, or no window/data).
    TimedOut,
    /// The peer closed the connection before all was received (or it is
    /// no longer open for sending).
    Closed,
    /// The stack refused the request (e.g. the port is already in use).
    Busy(&'static str),
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::NoStack => {
                f.write_str("Dom0 has no IP address (boot it with ip=ADDR/PREFIX)")
            }
            NetError::BadAddress(a) => write!(f, "{a}: not an IPv4 address Dom0 can reach"),
            NetError::Refused => f.write_str("connection refused"),
            NetError::Reset => f.write_str("connection reset by peer"),
            NetError::TimedOut => f.write_str("connection timed out"),
            NetError::Closed => f.write_str("connection closed by peer"),
            NetError::Busy(why) => f.write_str(why),
        }
    }
}

// ---- ICMP echo -----------------------------------------------------------------

/// Bytes of data in `ping`'s echo requests (Linux's default).
pub const PING_DATA: usize = 56;
/// ICMP header size.
pub const ICMP_HDR: usize = 8;

/// The Internet checksum (RFC 1071) of `data`.
pub fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP echo request (type 8) with `ident`, `seq` and
/// [`PING_DATA`] bytes of data starting with `stamp` (the send time, ns).
pub fn echo_request(ident: u16, seq: u16, stamp: u64) -> [u8; ICMP_HDR + PING_DATA] {
    let mut p = [0u8; ICMP_HDR + PING_DATA];
    p[0] = 8;
    p[4..6].copy_from_slice(&ident.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    p[8..16].copy_from_slice(&stamp.to_le_bytes());
    for (i, b) in p[16..].iter_mut().enumerate() {
        *b = (0x10 + i) as u8;
    }
    let c = inet_checksum(&p);
    p[2..4].copy_from_slice(&c.to_be_bytes());
    p
}

/// An echo reply (type 0) we can use: its ident, sequence number, the
/// stamp its data carries and its ICMP length. `None` for anything else
/// (wrong type, short, bad checksum).
pub fn echo_reply(p: &[u8]) -> Option<(u16, u16, u64, usize)> {
    if p.len() < ICMP_HDR + 8 || p[0] != 0 || p[1] != 0 || inet_checksum(p) != 0 {
        return None;
    }
    let ident = u16::from_be_bytes([p[4], p[5]]);
    let seq = u16::from_be_bytes([p[6], p[7]]);
    let mut s = [0u8; 8];
    s.copy_from_slice(&p[8..16]);
    Some((ident, seq, u64::from_le_bytes(s), p.len()))
}

/// `ping`'s round-trip statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PingStats {
    /// Requests sent.
    pub sent: u32,
    /// Replies received.
    pub received: u32,
    min_ns: u64,
    max_ns: u64,
    sum_ns: u128,
    sum_sq_ns: u128,
}

impl PingStats {
    /// Records one reply's round trip.
    pub fn reply(&mut self, rtt_ns: u64) {
        if self.received == 0 || rtt_ns < self.min_ns {
            self.min_ns = rtt_ns;
        }
        self.max_ns = self.max_ns.max(rtt_ns);
        self.sum_ns += u128::from(rtt_ns);
        self.sum_sq_ns += u128::from(rtt_ns) * u128::from(rtt_ns);
        self.received += 1;
    }

    /// Linux's summary: `3 packets transmitted, 3 received, 0% packet
    /// loss, time 2003ms` and, with replies, `rtt min/avg/max/mdev =
    /// 0.512/0.640/0.801/0.120 ms`.
    pub fn summary(&self, elapsed_ns: u64) -> String {
        let loss = ((self.sent - self.received.min(self.sent)) * 100)
            .checked_div(self.sent)
            .unwrap_or(0);
        let mut s = format!(
            "{} packets transmitted, {} received, {loss}% packet loss, time {}ms",
            self.sent,
            self.received,
            elapsed_ns / 1_000_000
        );
        if self.received > 0 {
            let n = u128::from(self.received);
            let avg = self.sum_ns / n;
            let var = (self.sum_sq_ns / n).saturating_sub(avg * avg);
            s.push_str(&format!(
                "\nrtt min/avg/max/mdev = {}/{}/{}/{} ms",
                Ms(self.min_ns),
                Ms(avg as u64),
                Ms(self.max_ns),
                Ms(isqrt(var) as u64)
            ));
        }
        s
    }
}

fn isqrt(v: u128) -> u128 {
    if v < 2 {
        return v;
    }
    let mut x = v;
    let mut y = x.div_ceil(2);
    while y < x {
        x = y;
        y = (x + v / x) / 2;
    }
    x
}

/// Nanoseconds shown as milliseconds with three decimals (`0.845`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ms(pub u64);

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1_000_000, self.0 / 1000 % 1000)
    }
}

// ---- bulk transfers ------------------------------------------------------------

/// `tcp-send`'s data: byte `off` of the stream. Cheap to make and to
/// check, and no byte repeats at a short period (so a lost or duplicated
/// segment changes the checksum).
pub fn pattern(off: u64, buf: &mut [u8]) {
    let mut off = off;
    let mut rest = buf;
    // Unaligned head, byte by byte.
    while !off.is_multiple_of(8) && !rest.is_empty() {
        rest[0] = pattern_word(off / 8).to_le_bytes()[(off % 8) as usize];
        rest = &mut rest[1..];
        off += 1;
    }
    let mut chunks = rest.chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&pattern_word(off / 8).to_le_bytes());
        off += 8;
    }
    let tail = chunks.into_remainder();
    let w = pattern_word(off / 8).to_le_bytes();
    let n = tail.len();
    tail.copy_from_slice(&w[..n]);
}

fn pattern_word(i: u64) -> u64 {
    // splitmix64's finaliser: a bijection, so every word differs.
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// CRC-32 (IEEE 802.3, as `crc32`/zlib/`cksum -a crc32b`), slicing by 8.
#[derive(Clone, Copy, Debug)]
pub struct Crc32(u32);

const CRC_TABLES: [[u32; 256]; 8] = crc_tables();

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut s = 1;
        while s < 8 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            s += 1;
        }
        i += 1;
    }
    t
}

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32 {
    /// The CRC of nothing.
    pub fn new() -> Crc32 {
        Crc32(!0)
    }

    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        let t = &CRC_TABLES;
        let mut c = self.0;
        let mut chunks = data.chunks_exact(8);
        for b in &mut chunks {
            let lo = c ^ u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            c = t[7][(lo & 0xff) as usize]
                ^ t[6][(lo >> 8 & 0xff) as usize]
                ^ t[5][(lo >> 16 & 0xff) as usize]
                ^ t[4][(lo >> 24) as usize]
                ^ t[3][b[4] as usize]
                ^ t[2][b[5] as usize]
                ^ t[1][b[6] as usize]
                ^ t[0][b[7] as usize];
        }
        for &b in chunks.remainder() {
            c = t[0][((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }

    /// The CRC so far.
    pub fn value(&self) -> u32 {
        !self.0
    }
}

/// A transfer's figures, for `tcp-send`/`tcp-recv`'s last line:
/// `67108864 bytes in 12.345 s (5.44 MB/s)` (MB = 10^6 bytes, as `dd`
/// and iperf print).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Bytes moved.
    pub bytes: u64,
    /// In how long.
    pub ns: u64,
}

impl Rate {
    /// Hundredths of MB/s.
    pub fn centi_mb_s(&self) -> u64 {
        let ns = u128::from(self.ns.max(1));
        (u128::from(self.bytes) * 100_000 / ns).min(u128::from(u64::MAX)) as u64
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.centi_mb_s();
        write!(
            f,
            "{} bytes in {}.{:03} s ({}.{:02} MB/s)",
            self.bytes,
            self.ns / 1_000_000_000,
            self.ns / 1_000_000 % 1000,
            c / 100,
            c % 100
        )
    }
}

/// `ip addr`'s lines for Dom0's interface, as `ip addr show xenbr0`
/// prints them on a Linux Dom0.
pub fn ip_addr_lines(
    bridge: &str,
    mac: [u8; 6],
    mtu: usize,
    addr: Option<(Ipv4, u8)>,
    how: &str,
) -> String {
    let mut s = format!(
        "1: {bridge}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu {mtu} state UP\n    link/ether {} brd ff:ff:ff:ff:ff:ff",
        MacAddr(mac)
    );
    match addr {
        Some((a, p)) => {
            let bits = if p == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(p.min(32)))
            };
            let brd = (u32::from_be_bytes(a) | !bits).to_be_bytes();
            s.push_str(&format!(
                "\n    inet {}/{p} brd {} scope global {how}{bridge}",
                Addr(a),
                Addr(brd)
            ));
        }
        None => s.push_str("\n    (no IPv4 address yet)"),
    }
    s
}

/// Renders `e` with the peer: `10.0.3.2:8002: connection refused`.
pub fn peer_error(host: &str, port: u16, e: &NetError) -> String {
    match e {
        NetError::BadAddress(_) | NetError::NoStack => e.to_string(),
        _ => format!("{host}:{port}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec;

    #[test]
    fn cmdline_finds_the_last_ip_option() {
        assert_eq!(from_cmdline(""), None);
        assert_eq!(from_cmdline("console=hvc0 quiet"), None);
        assert_eq!(
            from_cmdline("x ip=10.0.3.1/24 y"),
            Some(Ok(IpConfig::Static {
                addr: [10, 0, 3, 1],
                prefix: 24,
                gateway: None
            }))
        );
        assert_eq!(
            from_cmdline("ip=10.0.3.1/24 ip=dhcp"),
            Some(Ok(IpConfig::Dhcp))
        );
        assert_eq!(from_cmdline("ip=10.0.3.1/24 ip=off"), None);
        assert_eq!(from_cmdline("ip=none"), None);
        // Only whole words.
        assert_eq!(from_cmdline("vip=10.0.3.1/24"), None);
    }

    #[test]
    fn short_form_with_gateway() {
        assert_eq!(
            parse("10.0.2.15/24:10.0.2.2"),
            Ok(IpConfig::Static {
                addr: [10, 0, 2, 15],
                prefix: 24,
                gateway: Some([10, 0, 2, 2])
            })
        );
        assert_eq!(
            IpConfig::Static {
                addr: [10, 0, 2, 15],
                prefix: 24,
                gateway: Some([10, 0, 2, 2])
            }
            .to_string(),
            "10.0.2.15/24 via 10.0.2.2"
        );
    }

    #[test]
    fn linux_long_form() {
        assert_eq!(
            parse("10.0.3.1::10.0.3.254:255.255.255.0:dom0:eth0:off"),
            Ok(IpConfig::Static {
                addr: [10, 0, 3, 1],
                prefix: 24,
                gateway: Some([10, 0, 3, 254])
            })
        );
        assert_eq!(
            parse("192.168.1.5:::255.255.0.0"),
            Ok(IpConfig::Static {
                addr: [192, 168, 1, 5],
                prefix: 16,
                gateway: None
            })
        );
        assert!(parse("192.168.1.5:::255.0.255.0")
            .unwrap_err()
            .contains("netmask"));
        assert!(parse("192.168.1.5::::x:eth0:dhcp")
            .unwrap_err()
            .contains("autoconf"));
    }

    #[test]
    fn malformed_ip_options_say_what_is_wrong() {
        for (bad, why) in [
            ("", "empty"),
            ("10.0.3.1", "expected"),
            ("10.0.3/24", "not an IPv4 address"),
            ("10.0.3.256/24", "not an IPv4 address"),
            ("10.0.3.1/33", "prefix"),
            ("10.0.3.1/0", "prefix"),
            ("10.0.3.1/x", "prefix"),
            ("10.0.3.1/24:10.0.4.1", "not on"),
            ("10.0.3.1/24:gw", "gateway"),
            ("0.0.0.0/8", "cannot be"),
            ("224.0.0.1/4", "cannot be"),
            ("dhcpx", "expected"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(!e.contains('\n'));
        }
        assert_eq!(
            from_cmdline("ip=10.0.3.1/99"),
            Some(Err(
                "ip=10.0.3.1/99: prefix \"99\" is not a number from 1 to 32".to_string()
            ))
        );
    }

    #[test]
    fn addresses_and_ports() {
        assert_eq!(ipv4("10.0.3.2"), Some([10, 0, 3, 2]));
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4.5",
            "1.2.3.-4",
            "01234.1.1.1",
            " 1.2.3.4",
            "a.b.c.d",
        ] {
            assert_eq!(ipv4(bad), None, "{bad:?}");
        }
        assert_eq!(host_port("10.0.3.2:8002"), Ok(([10, 0, 3, 2], 8002)));
        assert_eq!(split_host_port("10.0.3.2:8002"), Ok(("10.0.3.2", 8002)));
        for bad in ["10.0.3.2", "10.0.3.2:", "10.0.3.2:0", "host:80", ":80"] {
            assert_eq!(
                split_host_port(bad),
                Err(NetError::BadAddress(bad.to_string())),
                "{bad:?}"
            );
        }
        assert!(host_port("10.0.3.2").is_err());
        assert!(host_port("10.0.3.2:0").is_err());
        assert!(host_port("10.0.3.2:65536").is_err());
        assert!(host_port("host:80").is_err());
        assert_eq!(mask_prefix([255, 255, 255, 0]), Some(24));
        assert_eq!(mask_prefix([255, 255, 255, 255]), Some(32));
        assert_eq!(mask_prefix([0, 0, 0, 0]), None);
        assert!(same_subnet([10, 0, 3, 1], [10, 0, 3, 200], 24));
        assert!(!same_subnet([10, 0, 3, 1], [10, 0, 4, 1], 24));
    }

    #[test]
    fn sizes() {
        assert_eq!(size("4096"), Some(4096));
        assert_eq!(size("64M"), Some(64 << 20));
        assert_eq!(size("64MiB"), Some(64 << 20));
        assert_eq!(size("16K"), Some(16 << 10));
        assert_eq!(size("1G"), Some(1 << 30));
        assert_eq!(size("0"), Some(0));
        for bad in ["", "M", "1T", "-1", "65G", "99999999999999999999", "1.5M"] {
            assert_eq!(size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn errors_are_one_line() {
        assert_eq!(NetError::Refused.to_string(), "connection refused");
        assert_eq!(
            peer_error("10.0.3.2", 9, &NetError::TimedOut),
            "10.0.3.2:9: connection timed out"
        );
        assert!(NetError::NoStack.to_string().contains("ip="));
    }

    #[test]
    fn checksums() {
        // RFC 1071's example.
        assert_eq!(
            inet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        let req = echo_request(0x1234, 7, 99);
        assert_eq!(inet_checksum(&req), 0);
        // The same bytes as a reply.
        let mut rep = req;
        rep[0] = 0;
        let c = u16::from_be_bytes([rep[2], rep[3]]).wrapping_add(0x0800);
        rep[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(echo_reply(&rep), Some((0x1234, 7, 99, 64)));
        assert_eq!(echo_reply(&req), None);
        rep[20] ^= 1;
        assert_eq!(echo_reply(&rep), None);
        assert_eq!(echo_reply(&[0; 4]), None);
    }

    #[test]
    fn ping_summary() {
        let mut s = PingStats {
            sent: 3,
            ..PingStats::default()
        };
        s.reply(1_000_000);
        s.reply(3_000_000);
        assert_eq!(
            s.summary(2_003_000_000),
            "3 packets transmitted, 2 received, 33% packet loss, time 2003ms\n\
             rtt min/avg/max/mdev = 1.000/2.000/3.000/1.000 ms"
        );
        let none = PingStats {
            sent: 2,
            ..PingStats::default()
        };
        assert_eq!(
            none.summary(0),
            "2 packets transmitted, 0 received, 100% packet loss, time 0ms"
        );
    }

    #[test]
    fn crc32_matches_zlib() {
        let mut c = Crc32::new();
        c.update(b"123456789");
        assert_eq!(c.value(), 0xcbf4_3926);
        // Any split gives the same CRC.
        let data: vec::Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut whole = Crc32::new();
        whole.update(&data);
        for cut in [0, 1, 7, 8, 9, 500, 999] {
            let mut c = Crc32::new();
            c.update(&data[..cut]);
            c.update(&data[cut..]);
            assert_eq!(c.value(), whole.value(), "cut {cut}");
        }
        // The byte-by-byte definition.
        let mut slow = !0u32;
        for &b in &data {
            slow ^= u32::from(b);
            for _ in 0..8 {
                slow = if slow & 1 != 0 {
                    0xedb8_8320 ^ (slow >> 1)
                } else {
                    slow >> 1
                };
            }
        }
        assert_eq!(whole.value(), !slow);
    }

    #[test]
    fn pattern_is_the_same_however_it_is_cut() {
        let mut whole = vec![0u8; 1000];
        pattern(3, &mut whole);
        for cut in [0, 1, 5, 8, 13, 999] {
            let mut a = vec![0u8; 1000];
            let (x, y) = a.split_at_mut(cut);
            pattern(3, x);
            pattern(3 + cut as u64, y);
            assert_eq!(a, whole, "cut {cut}");
        }
        assert_ne!(whole[..8], whole[8..16]);
    }

    #[test]
    fn rates() {
        let r = Rate {
            bytes: 64 << 20,
            ns: 12_345_000_000,
        };
        assert_eq!(r.to_string(), "67108864 bytes in 12.345 s (5.43 MB/s)");
        assert_eq!(
            Rate { bytes: 0, ns: 0 }.to_string(),
            "0 bytes in 0.000 s (0.00 MB/s)"
        );
    }

    #[test]
    fn ip_addr_looks_like_linux() {
        let s = ip_addr_lines(
            "xenbr0",
            [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            1500,
            Some(([10, 0, 3, 1], 24)),
            "",
        );
        assert_eq!(
            s,
            "1: xenbr0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP\n    \
             link/ether 52:54:00:12:34:56 brd ff:ff:ff:ff:ff:ff\n    \
             inet 10.0.3.1/24 brd 10.0.3.255 scope global xenbr0"
        );
    }
}
