//! Dom0's own TCP/IP stack on the metal: a smoltcp [`Interface`] that is
//! one more port of the bridge `xenbr0`, as a Linux Dom0's address on
//! `xenbr0` is (so Dom0 reaches the guests on the bridge and, through the
//! NIC's uplink port, other hosts), and the TCP calls `xl migrate` and the
//! shell's `ping`/`tcp-send`/`tcp-recv` use.
//!
//! The port's MAC is the NIC's, as Linux gives a bridge the (lowest) MAC
//! of its ports, which is in practice the physical NIC's (vifs are
//! `fe:ff:ff:ff:ff:ff`): a peer sees one station per host, and the NIC
//! needs no promiscuous mode for Dom0's own traffic. Without a NIC the
//! port gets a locally administered MAC of its own.
//!
//! [`Ip`] is owned by [`super::net::Net`] and polled on every
//! [`Toolstack::service`] pass (timers, retransmissions, ARP, DHCP), TCP
//! call or not. The TCP calls wait the way every other wait in Dom0 does:
//! `service()` then `idle()` (which sleeps at most 20 ms, or until an
//! event such as the NIC's interrupt), so guests keep being served.
//!
//! Nothing here panics on network input: smoltcp validates every frame,
//! and the socket handles in [`TcpConn`] are only made and freed here.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::{dhcpv4, icmp, tcp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address};

use super::glue::Toolstack;
use crate::ipconf::{self, Addr, Crc32, IpConfig, Ipv4, NetError, PingStats, Rate};
use pv_guest_lib::{println, time};

/// The Ethernet MTU (no jumbo frames: the virtio NIC's buffers are 2 KiB).
pub const MTU: usize = 1500;
/// Each TCP connection's receive and send buffers. 1 MiB each: a window
/// (scaled, RFC 7323) big enough for a migration stream on a LAN, and
/// four of them fit in Dom0's 16 MiB heap beside everything else.
pub const TCP_BUF: usize = 1 << 20;
/// The first ephemeral port (IANA's, as Linux's `ip_local_port_range`
/// ends up for most).
const EPHEMERAL: u16 = 49152;
/// ICMP identifier of `ping`'s requests.
const PING_IDENT: u16 = 0x0e0d;
/// The receive window we advertise, in full segments (smoltcp caps the
/// window at this many MSS): more than the path can buffer makes the
/// sender overrun it and lose frames; smoltcp then recovers slowly.
const RX_BURST: usize = 128;
/// Frames waiting for the stack, most (a full receive window in flight
/// is ~700 frames; the bridge drops beyond this, as a full NIC would).
const RX_QUEUE_MAX: usize = 2048;

/// The smoltcp device: frames the bridge forwarded to Dom0's port, and
/// the frames the stack sent, for the bridge.
#[derive(Default)]
pub struct Port {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

/// A received frame.
pub struct PortRx(Vec<u8>);

impl RxToken for PortRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

/// Room for one frame to send.
pub struct PortTx<'a>(&'a mut Vec<Vec<u8>>);

impl TxToken for PortTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl Device for Port {
    type RxToken<'a> = PortRx;
    type TxToken<'a> = PortTx<'a>;

    fn receive(&mut self, _t: Instant) -> Option<(PortRx, PortTx<'_>)> {
        let f = self.rx.pop_front()?;
        Some((PortRx(f), PortTx(&mut self.tx)))
    }

    fn transmit(&mut self, _t: Instant) -> Option<PortTx<'_>> {
        Some(PortTx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU + 14;
        // What we advertise as our receive window, at most: the frames
        // the way in can hold (the NIC's ring, QEMU's socket buffer)
        // without dropping. See RX_BURST.
        caps.max_burst_size = Some(RX_BURST);
        caps
    }
}

/// smoltcp's clock: Dom0's system time.
fn now() -> Instant {
    Instant::from_micros((time::now_ns() / 1000) as i64)
}

fn v4(a: Ipv4) -> Ipv4Address {
    Ipv4Address::new(a[0], a[1], a[2], a[3])
}

/// Dom0's interface on `xenbr0`. See the module documentation.
pub struct Ip {
    iface: Interface,
    sockets: SocketSet<'static>,
    port: Port,
    mac: [u8; 6],
    config: IpConfig,
    dhcp: Option<SocketHandle>,
    /// Address and prefix, once configured.
    addr: Option<(Ipv4, u8)>,
    next_port: u16,
}

impl Ip {
    /// The stack with `mac` (must be unicast) configured as `config` says.
    pub fn new(mac: [u8; 6], config: IpConfig, seed: u64) -> Ip {
        let mut port = Port::default();
        let mut cfg = Config::new(EthernetAddress(mac).into());
        cfg.random_seed = seed;
        let mut iface = Interface::new(cfg, &mut port, now());
        let mut sockets = SocketSet::new(Vec::new());
        let mut dhcp = None;
        let mut addr = None;
        match config {
            IpConfig::Static {
                addr: a,
                prefix,
                gateway,
            } => {
                iface.update_ip_addrs(|v| {
                    let _ = v.push(IpCidr::new(IpAddress::Ipv4(v4(a)), prefix));
                });
                if let Some(g) = gateway {
                    let _ = iface.routes_mut().add_default_ipv4_route(v4(g));
                }
                addr = Some((a, prefix));
            }
            IpConfig::Dhcp => dhcp = Some(sockets.add(dhcpv4::Socket::new())),
        }
        Ip {
            iface,
            sockets,
            port,
            mac,
            config,
            dhcp,
            addr,
            next_port: EPHEMERAL.wrapping_add((seed % 8192) as u16),
        }
    }

    /// The MAC of Dom0's port.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// A frame the bridge forwarded to Dom0's port.
    pub fn input(&mut self, frame: &[u8]) {
        if self.port.rx.len() < RX_QUEUE_MAX {
            self.port.rx.push_back(frame.to_vec());
        }
    }

    /// Runs the stack (received frames, timers, sockets); the frames it
    /// sends are appended to `out`. True if anything happened.
    pub fn poll(&mut self, out: &mut Vec<Vec<u8>>) -> bool {
        let had_rx = !self.port.rx.is_empty();
        let r = self.iface.poll(now(), &mut self.port, &mut self.sockets);
        self.dhcp_events();
        let sent = !self.port.tx.is_empty();
        out.append(&mut self.port.tx);
        had_rx || sent || r == PollResult::SocketStateChanged
    }

    /// How soon the stack wants polling again (a retransmission, a
    /// delayed ACK, ARP, DHCP), if it has a timer.
    pub fn poll_delay_ns(&mut self) -> Option<u64> {
        self.iface
            .poll_delay(now(), &self.sockets)
            .map(|d| d.total_micros().saturating_mul(1000))
    }

    fn dhcp_events(&mut self) {
        let Some(h) = self.dhcp else { return };
        let ev = self.sockets.get_mut::<dhcpv4::Socket>(h).poll();
        match ev {
            None => {}
            Some(dhcpv4::Event::Configured(c)) => {
                let a = c.address.address().octets();
                let p = c.address.prefix_len();
                self.iface.update_ip_addrs(|v| {
                    v.clear();
                    let _ = v.push(IpCidr::Ipv4(c.address));
                });
                match c.router {
                    Some(r) => {
                        let _ = self.iface.routes_mut().add_default_ipv4_route(r);
                    }
                    None => {
                        let _ = self.iface.routes_mut().remove_default_ipv4_route();
                    }
                }
                self.addr = Some((a, p));
                match c.router {
                    Some(r) => println!(
                        "Dom0: xenbr0: DHCP: {}/{p} via {}",
                        Addr(a),
                        Addr(r.octets())
                    ),
                    None => println!("Dom0: xenbr0: DHCP: {}/{p}", Addr(a)),
                }
            }
            Some(dhcpv4::Event::Deconfigured) => {
                self.iface.update_ip_addrs(|v| v.clear());
                let _ = self.iface.routes_mut().remove_default_ipv4_route();
                // (smoltcp also says so once at start, with no lease yet.)
                if self.addr.take().is_some() {
                    println!("Dom0: xenbr0: DHCP: lease lost, no address");
                }
            }
        }
    }

    fn ephemeral_port(&mut self) -> u16 {
        loop {
            let p = self.next_port;
            self.next_port = if p == u16::MAX { EPHEMERAL } else { p + 1 };
            let used = self.sockets.iter().any(|(_, s)| match s {
                smoltcp::socket::Socket::Tcp(t) => t.local_endpoint().is_some_and(|e| e.port == p),
                _ => false,
            });
            if !used {
                return p;
            }
        }
    }

    /// A TCP socket with [`TCP_BUF`] buffers; `Busy` if the heap cannot
    /// hold them (Dom0 goes on).
    fn new_tcp(&mut self) -> Result<SocketHandle, NetError> {
        let buf = || {
            let mut v = Vec::new();
            v.try_reserve_exact(TCP_BUF).ok()?;
            v.resize(TCP_BUF, 0u8);
            Some(v)
        };
        let (Some(rx), Some(tx)) = (buf(), buf()) else {
            return Err(NetError::Busy("not enough memory for another connection"));
        };
        let mut s = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
        // Bulk transfers: no Nagle delay on a stream's last short
        // segment.
        s.set_nagle_enabled(false);
        Ok(self.sockets.add(s))
    }

    fn tcp(&mut self, c: &TcpConn) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(c.0)
    }
}

/// An open TCP connection (a socket of Dom0's stack). Made by
/// [`Toolstack::tcp_connect`] or [`Toolstack::tcp_accept`]; give it back
/// with [`Toolstack::tcp_close`] or [`Toolstack::tcp_abort`] (dropping it
/// leaks the socket and its 2 MiB of buffers until Dom0 reboots).
#[derive(Debug)]
pub struct TcpConn(SocketHandle);

impl fmt::Display for TcpConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// What a connection's state says about sending or receiving.
fn closed_reason(s: &tcp::Socket<'_>) -> NetError {
    if s.state() == tcp::State::Closed {
        NetError::Reset
    } else {
        NetError::Closed
    }
}

impl Toolstack {
    fn ip(&mut self) -> Result<&mut Ip, NetError> {
        self.net.ip.as_mut().ok_or(NetError::NoStack)
    }

    /// One wait step: serve guests (which polls the stack), sleep until
    /// an event or a short while if nothing happened.
    fn net_wait(&mut self) {
        if !self.service() {
            self.idle();
        }
    }

    /// Dom0's address and prefix, if it has one (`ip=`, or DHCP's lease).
    pub fn ip_address(&self) -> Option<(Ipv4, u8)> {
        self.net.ip.as_ref().and_then(|ip| ip.addr)
    }

    /// `ip addr`: Dom0's interface as `ip addr show xenbr0` shows it on
    /// a Linux Dom0. False if Dom0 has no stack.
    pub fn ip_addr(&self, out: &mut dyn fmt::Write) -> bool {
        let Some(ip) = self.net.ip.as_ref() else {
            let _ = writeln!(out, "ip: {}", NetError::NoStack);
            return false;
        };
        let how = if matches!(ip.config, IpConfig::Dhcp) {
            "dynamic "
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{}",
            ipconf::ip_addr_lines(super::net::BRIDGE, ip.mac(), MTU, ip.addr, how)
        );
        true
    }

    /// Connects to `host:port` (`host` an IPv4 address), waiting (serving
    /// guests) up to `timeout_ns` for the handshake. [`NetError::Refused`]
    /// if the peer resets (nobody listens), [`NetError::TimedOut`] if
    /// nothing answers (no such host: ARP goes unanswered).
    pub fn tcp_connect(
        &mut self,
        host: &str,
        port: u16,
        timeout_ns: u64,
    ) -> Result<TcpConn, NetError> {
        let addr = ipconf::ipv4(host).ok_or_else(|| NetError::BadAddress(host.into()))?;
        if port == 0 {
            return Err(NetError::BadAddress(format!("{host}:0")));
        }
        let deadline = time::now_ns().saturating_add(timeout_ns);
        // With DHCP the address may still be coming.
        while self.ip()?.addr.is_none() {
            if time::now_ns() >= deadline {
                return Err(NetError::TimedOut);
            }
            self.net_wait();
        }
        let ip = self.ip()?;
        let local = ip.ephemeral_port();
        let h = ip.new_tcp()?;
        let remote = IpEndpoint::new(IpAddress::Ipv4(v4(addr)), port);
        let cx = ip.iface.context();
        if ip
            .sockets
            .get_mut::<tcp::Socket>(h)
            .connect(cx, remote, local)
            .is_err()
        {
            ip.sockets.remove(h);
            return Err(NetError::BadAddress(format!("{host}:{port}")));
        }
        let c = TcpConn(h);
        loop {
            let ip = self.ip()?;
            match ip.tcp(&c).state() {
                tcp::State::SynSent | tcp::State::SynReceived => {}
                tcp::State::Closed => {
                    ip.sockets.remove(c.0);
                    return Err(NetError::Refused);
                }
                _ => return Ok(c),
            }
            if time::now_ns() >= deadline {
                ip.tcp(&c).abort();
                ip.sockets.remove(c.0);
                return Err(NetError::TimedOut);
            }
            self.net_wait();
        }
    }

    /// Listens on `port` and waits (serving guests) up to `timeout_ns`
    /// for one connection, which it returns (the port is not listened on
    /// afterwards).
    pub fn tcp_accept(&mut self, port: u16, timeout_ns: u64) -> Result<TcpConn, NetError> {
        if port == 0 {
            return Err(NetError::Busy("cannot listen on port 0"));
        }
        let ip = self.ip()?;
        let in_use = ip.sockets.iter().any(|(_, s)| match s {
            smoltcp::socket::Socket::Tcp(t) => {
                t.is_open()
                    && (t.listen_endpoint().port == port
                        || t.local_endpoint().is_some_and(|e| e.port == port))
            }
            _ => false,
        });
        if in_use {
            return Err(NetError::Busy("address already in use"));
        }
        let h = ip.new_tcp()?;
        if ip.sockets.get_mut::<tcp::Socket>(h).listen(port).is_err() {
            ip.sockets.remove(h);
            return Err(NetError::Busy("cannot listen on that port"));
        }
        let c = TcpConn(h);
        let deadline = time::now_ns().saturating_add(timeout_ns);
        loop {
            let ip = self.ip()?;
            match ip.tcp(&c).state() {
                tcp::State::Listen | tcp::State::SynReceived => {}
                // A half-open attempt that was reset: listen again.
                tcp::State::Closed => {
                    let _ = ip.tcp(&c).listen(port);
                }
                _ => return Ok(c),
            }
            if time::now_ns() >= deadline {
                ip.tcp(&c).abort();
                ip.sockets.remove(c.0);
                return Err(NetError::TimedOut);
            }
            self.net_wait();
        }
    }

    /// The connection's peer, `10.0.3.1:49152`.
    pub fn tcp_peer(&mut self, c: &TcpConn) -> Option<String> {
        let e = self.ip().ok()?.tcp(c).remote_endpoint()?;
        Some(format!("{e}"))
    }

    /// Sends all of `data` (into the send buffer: [`Toolstack::tcp_close`]
    /// waits for the peer to have it), serving guests while the buffer is
    /// full. [`NetError::Reset`]/[`NetError::Closed`] if the peer resets
    /// or the connection can no longer send, [`NetError::TimedOut`] if
    /// nothing moves (no byte taken, none acknowledged) for `timeout_ns`.
    pub fn tcp_send_all(
        &mut self,
        c: &TcpConn,
        data: &[u8],
        timeout_ns: u64,
    ) -> Result<(), NetError> {
        let mut off = 0;
        let mut moved_at = time::now_ns();
        let mut queued = usize::MAX;
        loop {
            let s = self.ip()?.tcp(c);
            if !s.may_send() {
                return Err(closed_reason(s));
            }
            if s.can_send() && off < data.len() {
                let n = s.send_slice(&data[off..]).map_err(|_| closed_reason(s))?;
                if n > 0 {
                    off += n;
                    moved_at = time::now_ns();
                }
            }
            let q = s.send_queue();
            if q < queued {
                moved_at = time::now_ns();
            }
            queued = q;
            if off == data.len() {
                // Get it going before returning.
                self.service();
                return Ok(());
            }
            if time::now_ns().saturating_sub(moved_at) >= timeout_ns {
                return Err(NetError::TimedOut);
            }
            self.net_wait();
        }
    }

    /// Receives exactly `buf.len()` bytes, serving guests while waiting.
    /// [`NetError::Closed`] if the peer closes first, [`NetError::Reset`]
    /// if it resets, [`NetError::TimedOut`] if no byte comes for
    /// `timeout_ns`.
    pub fn tcp_recv_exact(
        &mut self,
        c: &TcpConn,
        buf: &mut [u8],
        timeout_ns: u64,
    ) -> Result<(), NetError> {
        let mut got = 0;
        while got < buf.len() {
            match self.tcp_recv(c, &mut buf[got..], timeout_ns)? {
                0 => return Err(NetError::Closed),
                n => got += n,
            }
        }
        Ok(())
    }

    /// Receives what is there (at least one byte), serving guests while
    /// nothing is; `Ok(0)` once the peer has closed and everything was
    /// read. [`NetError::Reset`] if it resets, [`NetError::TimedOut`] if
    /// nothing comes for `timeout_ns`.
    pub fn tcp_recv(
        &mut self,
        c: &TcpConn,
        buf: &mut [u8],
        timeout_ns: u64,
    ) -> Result<usize, NetError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = time::now_ns().saturating_add(timeout_ns);
        loop {
            let s = self.ip()?.tcp(c);
            if s.can_recv() {
                let n = s.recv_slice(buf).map_err(|_| closed_reason(s))?;
                if n > 0 {
                    return Ok(n);
                }
            }
            if !s.may_recv() {
                return match s.state() {
                    tcp::State::Closed => Err(NetError::Reset),
                    _ => Ok(0),
                };
            }
            if time::now_ns() >= deadline {
                return Err(NetError::TimedOut);
            }
            self.net_wait();
        }
    }

    /// Non-blocking: the bytes that can be read now (0 if none).
    /// [`NetError::Closed`] once the peer has closed and everything was
    /// read, [`NetError::Reset`] if it reset.
    pub fn tcp_recv_some(&mut self, c: &TcpConn, buf: &mut [u8]) -> Result<usize, NetError> {
        let s = self.ip()?.tcp(c);
        if s.can_recv() && !buf.is_empty() {
            return s.recv_slice(buf).map_err(|_| closed_reason(s));
        }
        if !s.may_recv() {
            return Err(closed_reason(s));
        }
        Ok(0)
    }

    /// Flushes and closes gracefully: sends FIN after the data, waits (up
    /// to `timeout_ns`, serving guests) until the peer acknowledged all
    /// of it and the FIN, then frees the socket. On timeout the
    /// connection is reset ([`NetError::TimedOut`]); if the peer reset it
    /// before taking everything, [`NetError::Reset`].
    pub fn tcp_close(&mut self, c: TcpConn, timeout_ns: u64) -> Result<(), NetError> {
        let deadline = time::now_ns().saturating_add(timeout_ns);
        self.ip()?.tcp(&c).close();
        loop {
            let s = self.ip()?.tcp(&c);
            let state = s.state();
            let unacked = s.send_queue();
            // Done once both sides closed (TIME-WAIT, or CLOSED after
            // LAST-ACK): the peer has every byte and our FIN, and the
            // peer's FIN was acknowledged, so it is not left waiting.
            if matches!(state, tcp::State::TimeWait | tcp::State::Closed) {
                self.ip()?.sockets.remove(c.0);
                return if state == tcp::State::Closed && unacked > 0 {
                    Err(NetError::Reset)
                } else {
                    Ok(())
                };
            }
            if time::now_ns() >= deadline {
                if state == tcp::State::FinWait2 {
                    // Everything was acknowledged; the peer just never
                    // closed its side. Ours is closed: done (a late FIN
                    // gets a reset from the stack).
                    self.ip()?.sockets.remove(c.0);
                    return Ok(());
                }
                self.tcp_abort(c);
                return Err(NetError::TimedOut);
            }
            self.net_wait();
        }
    }

    /// Aborts the connection (sends RST) and frees the socket.
    pub fn tcp_abort(&mut self, c: TcpConn) {
        let Ok(ip) = self.ip() else { return };
        ip.tcp(&c).abort();
        // One pass sends the RST before the socket goes.
        self.service();
        if let Ok(ip) = self.ip() {
            ip.sockets.remove(c.0);
        }
    }

    /// `ping HOST [COUNT]`: ICMP echo requests a second apart, printed as
    /// Linux's ping prints them (COUNT at most 65535). True if a reply
    /// came.
    pub fn ping(&mut self, host: &str, count: u32) -> bool {
        // Sequence numbers are 16 bits.
        let count = count.min(u32::from(u16::MAX));
        let Some(dst) = ipconf::ipv4(host) else {
            println!("ping: {host}: Name or service not known (an IPv4 address, please)");
            return false;
        };
        let ip = match self.ip() {
            Ok(ip) => ip,
            Err(e) => {
                println!("ping: {e}");
                return false;
            }
        };
        let sock = icmp::Socket::new(
            icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 8], vec![0u8; 2048]),
            icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 8], vec![0u8; 2048]),
        );
        let h = ip.sockets.add(sock);
        let _ = ip
            .sockets
            .get_mut::<icmp::Socket>(h)
            .bind(icmp::Endpoint::Ident(PING_IDENT));
        println!(
            "PING {host} ({host}) {}({}) bytes of data.",
            ipconf::PING_DATA,
            ipconf::PING_DATA + ipconf::ICMP_HDR + 20
        );
        let start = time::now_ns();
        let mut stats = PingStats::default();
        let mut seen = vec![false; count as usize + 1];
        let mut next_send = start;
        let mut end = u64::MAX;
        loop {
            let now = time::now_ns();
            if stats.sent < count && now >= next_send {
                let seq = (stats.sent + 1) as u16;
                let req = ipconf::echo_request(PING_IDENT, seq, now);
                let Ok(ip) = self.ip() else { break };
                let s = ip.sockets.get_mut::<icmp::Socket>(h);
                if s.send_slice(&req, IpAddress::Ipv4(v4(dst))).is_ok() {
                    stats.sent += 1;
                }
                next_send = next_send.saturating_add(1_000_000_000);
                if stats.sent == count {
                    // Linux waits for the last reply up to its -W (about
                    // a second on a LAN); so do we.
                    end = now.saturating_add(2_000_000_000);
                }
            }
            let Ok(ip) = self.ip() else { break };
            let s = ip.sockets.get_mut::<icmp::Socket>(h);
            let mut buf = [0u8; 256];
            while let Ok((n, from)) = s.recv_slice(&mut buf) {
                let Some((ident, seq, stamp, len)) = ipconf::echo_reply(&buf[..n]) else {
                    continue;
                };
                if ident != PING_IDENT || from != IpAddress::Ipv4(v4(dst)) {
                    continue;
                }
                let dup = seen.get(usize::from(seq)).copied().unwrap_or(true);
                if usize::from(seq) < seen.len() {
                    seen[usize::from(seq)] = true;
                }
                let rtt = time::now_ns().saturating_sub(stamp);
                if dup {
                    println!(
                        "{len} bytes from {host}: icmp_seq={seq} time={} ms (DUP!)",
                        ipconf::Ms(rtt)
                    );
                } else {
                    stats.reply(rtt);
                    println!(
                        "{len} bytes from {host}: icmp_seq={seq} time={} ms",
                        ipconf::Ms(rtt)
                    );
                }
            }
            if stats.sent == count && (stats.received == count || time::now_ns() >= end) {
                break;
            }
            self.net_wait();
        }
        if let Ok(ip) = self.ip() {
            ip.sockets.remove(h);
        }
        println!();
        println!("--- {host} ping statistics ---");
        println!("{}", stats.summary(time::now_ns().saturating_sub(start)));
        stats.received > 0
    }

    /// `tcp-recv PORT`: accepts one connection, reads until the peer
    /// closes, prints the bytes, MB/s and their CRC-32.
    pub fn tcp_recv_cmd(&mut self, port: u16, accept_ns: u64) -> bool {
        if let Err(e) = self.ip() {
            println!("tcp-recv: {e}");
            return false;
        }
        println!("tcp-recv: listening on port {port}");
        let c = match self.tcp_accept(port, accept_ns) {
            Ok(c) => c,
            Err(e) => {
                println!("tcp-recv: port {port}: {e}");
                return false;
            }
        };
        let peer = self.tcp_peer(&c).unwrap_or_default();
        println!("tcp-recv: connection from {peer}");
        let start = time::now_ns();
        let mut crc = Crc32::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; 64 << 10];
        let r = loop {
            match self.tcp_recv(&c, &mut buf, IDLE_TRANSFER_NS) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    crc.update(&buf[..n]);
                    total += n as u64;
                }
                Err(e) => break Err(e),
            }
        };
        let rate = Rate {
            bytes: total,
            ns: time::now_ns().saturating_sub(start),
        };
        let closed = match r {
            Ok(()) => self.tcp_close(c, IDLE_TRANSFER_NS),
            Err(e) => {
                self.tcp_abort(c);
                Err(e)
            }
        };
        match closed {
            Ok(()) => {
                println!("tcp-recv: received {rate}, crc32 {:08x}", crc.value());
                true
            }
            Err(e) => {
                println!(
                    "tcp-recv: {peer}: {e} after {rate}, crc32 {:08x}",
                    crc.value()
                );
                false
            }
        }
    }

    /// `tcp-send HOST:PORT SIZE`: connects, sends SIZE bytes of
    /// [`ipconf::pattern`], closes, prints the bytes, MB/s and CRC-32.
    pub fn tcp_send_cmd(&mut self, host: &str, port: u16, size: u64) -> bool {
        let c = match self.tcp_connect(host, port, CONNECT_NS) {
            Ok(c) => c,
            Err(e) => {
                println!("tcp-send: {}", ipconf::peer_error(host, port, &e));
                return false;
            }
        };
        println!("tcp-send: connected to {host}:{port}");
        let start = time::now_ns();
        let mut crc = Crc32::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut off = 0u64;
        let r = loop {
            if off >= size {
                break self.tcp_close(c, IDLE_TRANSFER_NS);
            }
            let n = (size - off).min(buf.len() as u64) as usize;
            ipconf::pattern(off, &mut buf[..n]);
            crc.update(&buf[..n]);
            if let Err(e) = self.tcp_send_all(&c, &buf[..n], IDLE_TRANSFER_NS) {
                self.tcp_abort(c);
                break Err(e);
            }
            off += n as u64;
        };
        let rate = Rate {
            bytes: off,
            ns: time::now_ns().saturating_sub(start),
        };
        match r {
            Ok(()) => {
                println!("tcp-send: sent {rate}, crc32 {:08x}", crc.value());
                true
            }
            Err(e) => {
                println!(
                    "tcp-send: {} after {rate}",
                    ipconf::peer_error(host, port, &e)
                );
                false
            }
        }
    }
}

/// How long `tcp-send` waits for the handshake.
pub const CONNECT_NS: u64 = 10_000_000_000;
/// How long a transfer may stall before `tcp-send`/`tcp-recv` give up.
pub const IDLE_TRANSFER_NS: u64 = 30_000_000_000;

/// How a stack for Dom0 is made from its command line: `None` (and a
/// console line saying why) if there is to be none.
pub fn from_cmdline(cmdline: &str, mac: Option<[u8; 6]>, seed: u64) -> Option<Ip> {
    let config = match ipconf::from_cmdline(cmdline) {
        None => {
            println!("Dom0: no ip= on the command line: Dom0 has no IP address");
            return None;
        }
        Some(Err(e)) => {
            println!("Dom0: {e}: Dom0 has no IP address");
            return None;
        }
        Some(Ok(c)) => c,
    };
    let mac = match mac {
        Some(m) if m[0] & 1 == 0 && m != [0; 6] => m,
        // No NIC: a locally administered address of our own.
        _ => {
            let b = seed.to_le_bytes();
            [0x02, 0x16, 0x3e, b[0], b[1], b[2]]
        }
    };
    let ip = Ip::new(mac, config, seed);
    println!(
        "Dom0: {}: {config}, MAC {}",
        super::net::BRIDGE,
        ipconf::MacAddr(mac)
    );
    Some(ip)
}
