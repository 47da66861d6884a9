//! netfront: a guest's side of Xen's netif protocol (`public/io/netif.h`),
//! as pure protocol logic over abstract pages, grants and event channels
//! ([`NetfrontHost`]) and the xenbus client ([`Xenbus`]).
//!
//! Setup follows Linux's `xen-netfront`: read `backend`, `backend-id` and
//! `mac` from `device/vif/<devid>`, wait for the backend to reach
//! `InitWait`, require `feature-rx-copy`, publish `tx-ring-ref`,
//! `rx-ring-ref`, `event-channel`, `request-rx-copy = 1`,
//! `feature-rx-notify = 1`, `feature-sg = 0`, `feature-no-csum-offload =
//! 1` (we always send and want complete checksums) and switch to
//! `Connected`; the device is up once the backend is `Connected` too.
//! [`Netfront::connect_step`] is one non-blocking step of that, so the
//! caller decides how to wait (a watch on the backend's `state`).
//!
//! Data: [`TX_BUFFERS`] transmit and [`RX_BUFFERS`] receive pages, each
//! granted to the backend once at setup (transmit ones read-only); a frame
//! goes out in one slot ([`Netfront::send`]), received frames come back
//! through [`Netfront::recv`], which reposts the buffer. What the backend
//! writes is validated (indexes, ids, lengths): a misbehaving backend gets
//! [`NetError::Protocol`], never a panic.
//!
//! On the metal, `metal::MetalHost` is the [`NetfrontHost`] (frames,
//! the grant table, event channels). With the `smoltcp` feature, `smol`
//! makes a [`Netfront`] a `smoltcp::phy::Device`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::abi::io::netif::{
    NetifRsp, NetifRxRequest, NetifRxResponse, NetifTxRequest, NetifTxResponse, NETRXF_MORE_DATA,
    NET_RX_RING_SIZE, NET_TX_RING_SIZE,
};
use crate::abi::io::ring::{need_notify, RingIdx};
use crate::abi::io::xenbus::XenbusState;
use crate::error::Errno;
use crate::grant::{GrantError, GrantRef};
use crate::xenbus::page::SharedPage;
use crate::xenbus::wire::{parse_u16, parse_u32};
use crate::xenbus::{Transport, Xenbus, XsError, NO_TX};

#[cfg(target_os = "none")]
pub mod metal;
#[cfg(feature = "smoltcp")]
pub mod smol;
pub mod sring;

/// Bytes of a page.
pub const PAGE_SIZE: usize = 4096;
/// Transmit buffers (frames in flight).
pub const TX_BUFFERS: usize = 64;
/// Receive buffers posted to the backend.
pub const RX_BUFFERS: usize = 64;
/// Shortest frame (an Ethernet header).
pub const ETH_HLEN: usize = 14;
/// Longest frame received (a multi-slot packet is reassembled up to this).
pub const MAX_RX_FRAME: usize = 65535;
/// Slot size of the TX ring (`union netif_tx_sring_entry`).
pub const TX_ENTRY: usize = 12;
/// Slot size of the RX ring.
pub const RX_ENTRY: usize = 8;

/// What netfront needs from the kernel it runs in.
pub trait NetfrontHost {
    /// A page of our own memory (ring or buffer), shareable by grant.
    type Page: SharedPage;
    /// A zeroed page.
    fn alloc_page(&mut self) -> Option<Self::Page>;
    /// Grants `domid` access to `page`; returns the reference.
    fn grant(
        &mut self,
        page: &Self::Page,
        domid: u16,
        readonly: bool,
    ) -> Result<GrantRef, GrantError>;
    /// Ends a grant ([`GrantError::Busy`] while the backend still uses it).
    fn end_grant(&mut self, gref: GrantRef) -> Result<(), GrantError>;
    /// An unbound event channel for `remote` to bind to.
    fn alloc_evtchn(&mut self, remote: u16) -> Result<u32, Errno>;
    /// Closes our port.
    fn close_evtchn(&mut self, port: u32);
    /// Notifies the backend through `port`.
    fn notify(&mut self, port: u32);
}

/// Why a netfront operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetError {
    /// A xenstore request failed.
    Xs(XsError),
    /// A key is missing or malformed (the path).
    BadKey(String),
    /// Granting or ending a grant failed.
    Grant(GrantError),
    /// No event channel.
    Evtchn(Errno),
    /// Out of memory for rings or buffers.
    NoMemory,
    /// The backend lacks a feature we need (`feature-rx-copy`).
    Unsupported(&'static str),
    /// The backend closed the device.
    BackendClosed,
    /// Not connected yet.
    NotConnected,
    /// Every transmit buffer is in flight; try again after [`Netfront::poll_tx`].
    Busy,
    /// The frame is shorter than an Ethernet header or longer than a page.
    BadFrame,
    /// The backend broke the protocol (bad index, id or length).
    Protocol(&'static str),
}

impl From<XsError> for NetError {
    fn from(e: XsError) -> Self {
        NetError::Xs(e)
    }
}

impl From<GrantError> for NetError {
    fn from(e: GrantError) -> Self {
        NetError::Grant(e)
    }
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames sent.
    pub tx_packets: u64,
    /// Transmit responses with an error status.
    pub tx_errors: u64,
    /// Frames received.
    pub rx_packets: u64,
    /// Receive responses with an error status (frame dropped).
    pub rx_errors: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the backend's `InitWait`.
    Init,
    /// Our keys are published; waiting for the backend's `Connected`.
    Published,
    /// Up.
    Connected,
    /// Broken or closed.
    Dead,
}

struct Buf<P> {
    page: P,
    gref: GrantRef,
}

/// A network device. See the module documentation.
pub struct Netfront<H: NetfrontHost> {
    host: H,
    devid: u32,
    path: String,
    backend: String,
    backend_id: u16,
    mac: [u8; 6],
    phase: Phase,
    port: u32,
    tx_ring: Buf<H::Page>,
    rx_ring: Buf<H::Page>,
    tx_bufs: Vec<Buf<H::Page>>,
    rx_bufs: Vec<Buf<H::Page>>,
    tx_free: Vec<u16>,
    tx_inflight: [bool; TX_BUFFERS],
    rx_posted: [bool; RX_BUFFERS],
    tx_req_prod: RingIdx,
    tx_rsp_cons: RingIdx,
    rx_req_prod: RingIdx,
    rx_rsp_cons: RingIdx,
    rx_frame: Vec<u8>,
    stats: NetStats,
}

fn parse_mac(s: &[u8]) -> Option<[u8; 6]> {
    let s = core::str::from_utf8(s).ok()?;
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in m.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

fn read_state<T: Transport>(xb: &mut Xenbus<T>, path: &str) -> XenbusState {
    xb.read(NO_TX, path)
        .ok()
        .and_then(|v| parse_u32(&v))
        .and_then(|v| XenbusState::from_raw(u64::from(v)))
        .unwrap_or(XenbusState::Unknown)
}

impl<H: NetfrontHost> Netfront<H> {
    /// Prepares `device/vif/<devid>`: reads the backend's location and our
    /// MAC, allocates and grants the rings and buffers, allocates the event
    /// channel. Nothing is published yet; call [`Netfront::connect_step`].
    pub fn init<T: Transport>(
        xb: &mut Xenbus<T>,
        mut host: H,
        devid: u32,
    ) -> Result<Self, NetError> {
        let path = format!("device/vif/{devid}");
        let key = |k: &str| format!("{path}/{k}");
        let backend = xb.read_string(NO_TX, &key("backend"))?;
        let bid = xb.read(NO_TX, &key("backend-id"))?;
        let backend_id = parse_u16(&bid).ok_or_else(|| NetError::BadKey(key("backend-id")))?;
        let mac =
            parse_mac(&xb.read(NO_TX, &key("mac"))?).ok_or_else(|| NetError::BadKey(key("mac")))?;

        let mut granted = Vec::new();
        let r = Self::alloc_all(&mut host, backend_id, &mut granted);
        let (tx_ring, rx_ring, tx_bufs, rx_bufs) = match r {
            Ok(v) => v,
            Err(e) => {
                for g in granted {
                    let _ = host.end_grant(g);
                }
                return Err(e);
            }
        };
        let port = match host.alloc_evtchn(backend_id) {
            Ok(p) => p,
            Err(e) => {
                for g in granted {
                    let _ = host.end_grant(g);
                }
                return Err(NetError::Evtchn(e));
            }
        };
        sring::init(&tx_ring.page);
        sring::init(&rx_ring.page);
        Ok(Netfront {
            host,
            devid,
            path,
            backend,
            backend_id,
            mac,
            phase: Phase::Init,
            port,
            tx_ring,
            rx_ring,
            tx_bufs,
            rx_bufs,
            tx_free: (0..TX_BUFFERS as u16).rev().collect(),
            tx_inflight: [false; TX_BUFFERS],
            rx_posted: [false; RX_BUFFERS],
            tx_req_prod: 0,
            tx_rsp_cons: 0,
            rx_req_prod: 0,
            rx_rsp_cons: 0,
            rx_frame: Vec::new(),
            stats: NetStats::default(),
        })
    }

    #[allow(clippy::type_complexity)]
    fn alloc_all(
        host: &mut H,
        backend: u16,
        granted: &mut Vec<GrantRef>,
    ) -> Result<
        (
            Buf<H::Page>,
            Buf<H::Page>,
            Vec<Buf<H::Page>>,
            Vec<Buf<H::Page>>,
        ),
        NetError,
    > {
        let mut one = |host: &mut H, ro: bool| -> Result<Buf<H::Page>, NetError> {
            let page = host.alloc_page().ok_or(NetError::NoMemory)?;
            let gref = host.grant(&page, backend, ro)?;
            granted.push(gref);
            Ok(Buf { page, gref })
        };
        let tx_ring = one(host, false)?;
        let rx_ring = one(host, false)?;
        let mut tx = Vec::with_capacity(TX_BUFFERS);
        for _ in 0..TX_BUFFERS {
            tx.push(one(host, true)?);
        }
        let mut rx = Vec::with_capacity(RX_BUFFERS);
        for _ in 0..RX_BUFFERS {
            rx.push(one(host, false)?);
        }
        Ok((tx_ring, rx_ring, tx, rx))
    }

    /// Our MAC address (from `device/vif/<devid>/mac`).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The device number.
    pub fn devid(&self) -> u32 {
        self.devid
    }

    /// The backend's xenstore directory (watch its `state`).
    pub fn backend_path(&self) -> &str {
        &self.backend
    }

    /// The backend's domain.
    pub fn backend_id(&self) -> u16 {
        self.backend_id
    }

    /// Our event channel port (bind a handler that calls
    /// [`Netfront::poll_tx`] / [`Netfront::recv`]).
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Counters.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Both ends are connected.
    pub fn is_connected(&self) -> bool {
        self.phase == Phase::Connected
    }

    /// The host (e.g. to reach the grant table).
    pub fn host(&mut self) -> &mut H {
        &mut self.host
    }

    /// One step of the xenbus handshake; `Ok(true)` once connected. Call
    /// again whenever the backend's `state` changes.
    pub fn connect_step<T: Transport>(&mut self, xb: &mut Xenbus<T>) -> Result<bool, NetError> {
        let be_state = read_state(xb, &format!("{}/state", self.backend));
        if matches!(be_state, XenbusState::Closing | XenbusState::Closed)
            && self.phase != Phase::Init
        {
            self.phase = Phase::Dead;
        }
        match self.phase {
            Phase::Dead => Err(NetError::BackendClosed),
            Phase::Connected => Ok(true),
            Phase::Init => {
                if !matches!(
                    be_state,
                    XenbusState::InitWait | XenbusState::Initialised | XenbusState::Connected
                ) {
                    return Ok(false);
                }
                let copy = xb
                    .read(NO_TX, &format!("{}/feature-rx-copy", self.backend))
                    .ok()
                    .and_then(|v| parse_u32(&v));
                if copy != Some(1) {
                    self.phase = Phase::Dead;
                    return Err(NetError::Unsupported("feature-rx-copy"));
                }
                self.publish(xb)?;
                self.phase = Phase::Published;
                self.connect_step(xb)
            }
            Phase::Published => {
                if be_state != XenbusState::Connected {
                    return Ok(false);
                }
                self.phase = Phase::Connected;
                self.refill_rx();
                Ok(true)
            }
        }
    }

    fn publish<T: Transport>(&mut self, xb: &mut Xenbus<T>) -> Result<(), NetError> {
        let p = self.path.clone();
        let tx_ref = self.tx_ring.gref;
        let rx_ref = self.rx_ring.gref;
        let port = self.port;
        xb.transaction(|xb, tx| {
            let w = |xb: &mut Xenbus<T>, k: &str, v: &str| {
                xb.write(tx, &format!("{p}/{k}"), v.as_bytes())
            };
            w(xb, "tx-ring-ref", &format!("{tx_ref}"))?;
            w(xb, "rx-ring-ref", &format!("{rx_ref}"))?;
            w(xb, "event-channel", &format!("{port}"))?;
            w(xb, "request-rx-copy", "1")?;
            w(xb, "feature-rx-notify", "1")?;
            w(xb, "feature-sg", "0")?;
            w(xb, "feature-gso-tcpv4", "0")?;
            w(xb, "feature-no-csum-offload", "1")?;
            Ok(())
        })?;
        xb.write(NO_TX, &format!("{p}/state"), b"4")?;
        Ok(())
    }

    /// Tells the backend we are going away (`Closing`, then `Closed`) and
    /// takes back every grant it no longer uses. Returns the grants that
    /// were still busy (the backend did not let go; leaked, as Linux does).
    pub fn close<T: Transport>(&mut self, xb: &mut Xenbus<T>) -> Result<usize, NetError> {
        let p = self.path.clone();
        xb.write(NO_TX, &format!("{p}/state"), b"5")?;
        xb.write(NO_TX, &format!("{p}/state"), b"6")?;
        self.phase = Phase::Dead;
        self.host.close_evtchn(self.port);
        let mut busy = 0;
        let grefs: Vec<GrantRef> = [self.tx_ring.gref, self.rx_ring.gref]
            .into_iter()
            .chain(self.tx_bufs.iter().map(|b| b.gref))
            .chain(self.rx_bufs.iter().map(|b| b.gref))
            .collect();
        for g in grefs {
            if self.host.end_grant(g).is_err() {
                busy += 1;
            }
        }
        Ok(busy)
    }

    /// After a restore in a new domain (`suspend` returned `Restored`, and
    /// the grant table was set up again): the old grants and event channel
    /// are gone with the old domain. Re-reads the backend's location (it
    /// may be another host's netback), grants the same pages again, takes a
    /// new event channel and starts the handshake over; frames in flight
    /// are dropped (TCP above retransmits). Then call
    /// [`Netfront::connect_step`] until connected, and send a frame (e.g.
    /// [`gratuitous_arp`]) so the new bridge learns where our MAC is.
    pub fn reconnect_after_restore<T: Transport>(
        &mut self,
        xb: &mut Xenbus<T>,
    ) -> Result<(), NetError> {
        let key = |k: &str| format!("{}/{k}", self.path);
        let backend = xb.read_string(NO_TX, &key("backend"))?;
        let bid = xb.read(NO_TX, &key("backend-id"))?;
        let backend_id = parse_u16(&bid).ok_or_else(|| NetError::BadKey(key("backend-id")))?;
        if let Some(m) = xb.read(NO_TX, &key("mac")).ok().and_then(|v| parse_mac(&v)) {
            self.mac = m;
        }
        self.backend = backend;
        self.backend_id = backend_id;
        self.phase = Phase::Dead;
        // The new table is empty: ending the old references frees them.
        let bufs = [&mut self.tx_ring, &mut self.rx_ring]
            .into_iter()
            .chain(self.tx_bufs.iter_mut())
            .chain(self.rx_bufs.iter_mut());
        for (i, b) in bufs.enumerate() {
            let _ = self.host.end_grant(b.gref);
            let ro = (2..2 + TX_BUFFERS).contains(&i);
            b.gref = self.host.grant(&b.page, backend_id, ro)?;
        }
        // The old port died with the old domain: no close.
        self.port = self
            .host
            .alloc_evtchn(backend_id)
            .map_err(NetError::Evtchn)?;
        sring::init(&self.tx_ring.page);
        sring::init(&self.rx_ring.page);
        self.tx_free = (0..TX_BUFFERS as u16).rev().collect();
        self.tx_inflight = [false; TX_BUFFERS];
        self.rx_posted = [false; RX_BUFFERS];
        self.tx_req_prod = 0;
        self.tx_rsp_cons = 0;
        self.rx_req_prod = 0;
        self.rx_rsp_cons = 0;
        self.rx_frame.clear();
        let _ = xb.write(NO_TX, &key("state"), b"1");
        self.phase = Phase::Init;
        Ok(())
    }

    fn push_tx(&mut self) {
        let old = self.tx_ring.page.load_u32(sring::REQ_PROD);
        self.tx_ring
            .page
            .store_u32(sring::REQ_PROD, self.tx_req_prod);
        let ev = self.tx_ring.page.load_u32(sring::REQ_EVENT);
        if need_notify(old, self.tx_req_prod, ev) {
            self.host.notify(self.port);
        }
    }

    fn push_rx(&mut self) {
        let old = self.rx_ring.page.load_u32(sring::REQ_PROD);
        if old == self.rx_req_prod {
            return;
        }
        self.rx_ring
            .page
            .store_u32(sring::REQ_PROD, self.rx_req_prod);
        let ev = self.rx_ring.page.load_u32(sring::REQ_EVENT);
        if need_notify(old, self.rx_req_prod, ev) {
            self.host.notify(self.port);
        }
    }

    /// Posts every free receive buffer.
    fn refill_rx(&mut self) {
        for id in 0..RX_BUFFERS {
            if self.rx_posted[id] {
                continue;
            }
            let req = NetifRxRequest {
                id: id as u16,
                pad: 0,
                gref: self.rx_bufs[id].gref,
            };
            sring::write_slot(
                &self.rx_ring.page,
                self.rx_req_prod,
                NET_RX_RING_SIZE,
                RX_ENTRY,
                &req,
            );
            self.rx_req_prod = self.rx_req_prod.wrapping_add(1);
            self.rx_posted[id] = true;
        }
        self.push_rx();
    }

    /// Collects transmit completions, freeing their buffers. Returns how
    /// many completed.
    pub fn poll_tx(&mut self) -> Result<usize, NetError> {
        let mut n = 0;
        loop {
            let prod = self.tx_ring.page.load_u32(sring::RSP_PROD);
            let pending = prod.wrapping_sub(self.tx_rsp_cons);
            if pending as usize > NET_TX_RING_SIZE
                || pending > self.tx_req_prod.wrapping_sub(self.tx_rsp_cons)
            {
                self.phase = Phase::Dead;
                return Err(NetError::Protocol("tx rsp_prod out of range"));
            }
            while self.tx_rsp_cons != prod {
                let rsp: NetifTxResponse = sring::read_slot(
                    &self.tx_ring.page,
                    self.tx_rsp_cons,
                    NET_TX_RING_SIZE,
                    TX_ENTRY,
                );
                self.tx_rsp_cons = self.tx_rsp_cons.wrapping_add(1);
                if rsp.status == NetifRsp::Null.raw() {
                    continue;
                }
                let id = rsp.id as usize;
                if id >= TX_BUFFERS || !self.tx_inflight[id] {
                    self.phase = Phase::Dead;
                    return Err(NetError::Protocol("tx response with a bad id"));
                }
                self.tx_inflight[id] = false;
                self.tx_free.push(id as u16);
                if rsp.status != NetifRsp::Okay.raw() {
                    self.stats.tx_errors += 1;
                }
                n += 1;
            }
            // RING_FINAL_CHECK_FOR_RESPONSES.
            self.tx_ring
                .page
                .store_u32(sring::RSP_EVENT, self.tx_rsp_cons.wrapping_add(1));
            if self.tx_ring.page.load_u32(sring::RSP_PROD) == self.tx_rsp_cons {
                return Ok(n);
            }
        }
    }

    /// Can [`Netfront::send`] take a frame now?
    pub fn can_send(&mut self) -> bool {
        if self.tx_free.is_empty() {
            let _ = self.poll_tx();
        }
        self.phase == Phase::Connected && !self.tx_free.is_empty()
    }

    /// Sends one Ethernet frame (14 bytes up to a page), with complete
    /// checksums.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), NetError> {
        match self.phase {
            Phase::Connected => {}
            Phase::Dead => return Err(NetError::BackendClosed),
            _ => return Err(NetError::NotConnected),
        }
        if frame.len() < ETH_HLEN || frame.len() > PAGE_SIZE {
            return Err(NetError::BadFrame);
        }
        if self.tx_free.is_empty() {
            self.poll_tx()?;
        }
        let id = self.tx_free.pop().ok_or(NetError::Busy)?;
        let buf = &self.tx_bufs[id as usize];
        buf.page.write(0, frame);
        let req = NetifTxRequest {
            gref: buf.gref,
            offset: 0,
            flags: 0,
            id,
            size: frame.len() as u16,
        };
        sring::write_slot(
            &self.tx_ring.page,
            self.tx_req_prod,
            NET_TX_RING_SIZE,
            TX_ENTRY,
            &req,
        );
        self.tx_req_prod = self.tx_req_prod.wrapping_add(1);
        self.tx_inflight[id as usize] = true;
        self.stats.tx_packets += 1;
        self.push_tx();
        Ok(())
    }

    /// Receives one frame, handing it to `f`; `Ok(None)` if none is
    /// waiting. The buffer is reposted before returning.
    pub fn recv<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, NetError> {
        if self.phase != Phase::Connected {
            return Err(if self.phase == Phase::Dead {
                NetError::BackendClosed
            } else {
                NetError::NotConnected
            });
        }
        let r = self.recv_frame();
        self.refill_rx();
        match r {
            Ok(true) => Ok(Some(f(&self.rx_frame))),
            Ok(false) => Ok(None),
            Err(e) => {
                self.phase = Phase::Dead;
                Err(e)
            }
        }
    }

    /// Reads responses until one whole good frame is in `rx_frame`
    /// (`Ok(true)`) or the ring is empty (`Ok(false)`).
    fn recv_frame(&mut self) -> Result<bool, NetError> {
        loop {
            let prod = self.rx_ring.page.load_u32(sring::RSP_PROD);
            let pending = prod.wrapping_sub(self.rx_rsp_cons);
            if pending as usize > NET_RX_RING_SIZE
                || pending > self.rx_req_prod.wrapping_sub(self.rx_rsp_cons)
            {
                return Err(NetError::Protocol("rx rsp_prod out of range"));
            }
            if pending == 0 {
                self.rx_ring
                    .page
                    .store_u32(sring::RSP_EVENT, self.rx_rsp_cons.wrapping_add(1));
                if self.rx_ring.page.load_u32(sring::RSP_PROD) == self.rx_rsp_cons {
                    return Ok(false);
                }
                continue;
            }
            // One packet: slots until one without MORE_DATA. Every slot of
            // it must be there already.
            let mut n = 0u32;
            let mut complete = false;
            while n < pending {
                let rsp: NetifRxResponse = sring::read_slot(
                    &self.rx_ring.page,
                    self.rx_rsp_cons.wrapping_add(n),
                    NET_RX_RING_SIZE,
                    RX_ENTRY,
                );
                n += 1;
                if rsp.flags & NETRXF_MORE_DATA == 0 {
                    complete = true;
                    break;
                }
            }
            if !complete {
                if pending as usize >= RX_BUFFERS {
                    return Err(NetError::Protocol("rx packet longer than our buffers"));
                }
                return Ok(false);
            }
            self.rx_frame.clear();
            let mut bad = false;
            for _ in 0..n {
                let rsp: NetifRxResponse = sring::read_slot(
                    &self.rx_ring.page,
                    self.rx_rsp_cons,
                    NET_RX_RING_SIZE,
                    RX_ENTRY,
                );
                self.rx_rsp_cons = self.rx_rsp_cons.wrapping_add(1);
                let id = rsp.id as usize;
                if id >= RX_BUFFERS || !self.rx_posted[id] {
                    return Err(NetError::Protocol("rx response with a bad id"));
                }
                self.rx_posted[id] = false;
                if rsp.status < 0 {
                    bad = true;
                    continue;
                }
                let len = rsp.status as usize;
                let off = rsp.offset as usize;
                if off + len > PAGE_SIZE || self.rx_frame.len() + len > MAX_RX_FRAME {
                    bad = true;
                    continue;
                }
                let start = self.rx_frame.len();
                self.rx_frame.resize(start + len, 0);
                self.rx_bufs[id].page.read(off, &mut self.rx_frame[start..]);
            }
            if bad || self.rx_frame.len() < ETH_HLEN {
                self.stats.rx_errors += 1;
                continue;
            }
            self.stats.rx_packets += 1;
            return Ok(true);
        }
    }
}

/// A gratuitous ARP (an ARP request for our own address, broadcast), so
/// that switches and bridges learn where `mac` is and peers refresh their
/// caches: what a guest sends after moving to another host.
pub fn gratuitous_arp(mac: [u8; 6], ip: [u8; 4]) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    // Ethernet, IPv4, 6-byte MACs, 4-byte addresses, request.
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip);
    f[32..38].copy_from_slice(&[0; 6]);
    f[38..42].copy_from_slice(&ip);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gratuitous_arp_frame() {
        let f = gratuitous_arp([0, 0x16, 0x3e, 1, 2, 3], [10, 0, 3, 10]);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &[0, 0x16, 0x3e, 1, 2, 3]);
        assert_eq!(&f[12..14], &[8, 6]);
        assert_eq!(&f[20..22], &[0, 1]);
        assert_eq!(&f[22..28], &f[6..12]);
        assert_eq!(&f[28..32], &[10, 0, 3, 10]);
        assert_eq!(&f[38..42], &[10, 0, 3, 10]);
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac(b"00:16:3e:aa:0b:Cc"),
            Some([0, 0x16, 0x3e, 0xaa, 0x0b, 0xcc])
        );
        assert_eq!(parse_mac(b"00:16:3e:aa:0b"), None);
        assert_eq!(parse_mac(b"00:16:3e:aa:0b:cc:dd"), None);
        assert_eq!(parse_mac(b"00:16:3e:aa:0b:c"), None);
    }
}
