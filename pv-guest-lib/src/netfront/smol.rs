//! A [`smoltcp`] network device over [`Netfront`] (feature `smoltcp`):
//! build a `smoltcp::iface::Interface` with `Medium::Ethernet` and the
//! vif's MAC, and poll it with a [`Netfront`] as the device. The stack
//! answers ICMP echo requests itself (`auto-icmp-echo-reply`), so a guest
//! with an address is pingable. `smoltcp` is re-exported for the versions
//! to match.
//!
//! ```ignore
//! use smoltcp::iface::{Config, Interface, SocketSet};
//! use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};
//! let cfg = Config::new(EthernetAddress(nf.mac()).into());
//! let mut iface = Interface::new(cfg, &mut nf, now());
//! iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::v4(10, 0, 0, 2), 24)).unwrap());
//! let mut sockets = SocketSet::new(Vec::new());
//! // add tcp/udp/icmp sockets, then on every event or timer:
//! iface.poll(now(), &mut nf, &mut sockets);
//! ```
//!
//! Receiving copies the frame out of the granted page into a token
//! (smoltcp's tokens outlive the borrow netfront could lend); transmitting
//! builds the frame in a buffer and sends it in one slot.

pub use smoltcp;

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;

use super::{Netfront, NetfrontHost, PAGE_SIZE};

/// The largest IP packet we carry (Ethernet MTU).
pub const MTU: usize = 1500;

/// A received frame.
pub struct NetRxToken(Vec<u8>);

impl RxToken for NetRxToken {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.0)
    }
}

/// Permission to send one frame.
pub struct NetTxToken<'a, H: NetfrontHost>(&'a mut Netfront<H>);

impl<H: NetfrontHost> TxToken for NetTxToken<'_, H> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut buf = vec![0u8; len.min(PAGE_SIZE)];
        let r = f(&mut buf);
        // smoltcp has no way to hear of a failure here; a dropped frame is
        // what a full NIC queue does too.
        let _ = self.0.send(&buf);
        r
    }
}

impl<H: NetfrontHost> Device for Netfront<H> {
    type RxToken<'a>
        = NetRxToken
    where
        Self: 'a;
    type TxToken<'a>
        = NetTxToken<'a, H>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.recv(|f| f.to_vec()).ok().flatten()?;
        Some((NetRxToken(frame), NetTxToken(self)))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.can_send().then_some(NetTxToken(self))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU + 14;
        caps.max_burst_size = Some(super::TX_BUFFERS);
        caps
    }
}
