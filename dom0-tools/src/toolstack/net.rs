//! The guests' network on the metal: netback ([`Netback`] over
//! [`MetalHost`]), the bridge `xenbr0` and Dom0's virtio-net NIC as the
//! bridge's uplink port, driven from [`super::Toolstack::service`]; and
//! Dom0's own IP stack ([`Ip`], with `ip=` on Dom0's command line) as one
//! more port of the bridge ([`HOST`]).
//!
//! Trusts the pure netback and bridge code to validate everything a guest
//! writes (rings, xenstore); this file only moves frames between them and
//! the NIC, and keeps Dom0 informed. Interrupt driven: the vifs' event
//! channels and the NIC's MSI-X interrupt (an event channel too) wake
//! Dom0's idle loop; the NIC's interrupt is EOI'd on every pass that saw
//! it fire ([`Nic::poll_recv`]).

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::ip::{self, Ip};
use crate::netback::metal::{self, MetalHost};
use crate::netback::{self, Netback, VifParams, UPLINK_PORT_BASE};
use crate::virtio::dev::Nic;
use crate::xenstore::{Host, Xenstored};
use crate::xl::backend::{NicConfig, NicInfo};
use crate::xlcfg::{MacGenerator, VifSpec};
use hypercall_abi::io::xenbus::XenbusState;
use pv_guest_lib::{events, println, time};

/// The bridge Xen's `vif-bridge` script uses by default, which the NIC
/// joins.
pub const BRIDGE: &str = crate::vif::DEFAULT_BRIDGE;
/// The NIC's port on [`BRIDGE`].
const UPLINK: u32 = UPLINK_PORT_BASE;
/// The shortest idle sleep Dom0's IP stack's timers ask for.
const MIN_IP_SLEEP_NS: u64 = 500_000;
/// Dom0's own IP stack's port on [`BRIDGE`] (an uplink-numbered port:
/// netback hands its frames to us, as it does the NIC's).
const HOST: u32 = UPLINK_PORT_BASE + 1;

/// Dom0's network: netback, its bridges and the uplink.
pub struct Net {
    /// None if Dom0 could not set netback up (no frame for its copies).
    nb: Option<Netback<MetalHost>>,
    nic: Option<Nic>,
    macs: MacGenerator,
    /// Frames for the NIC, gathered during a pass.
    out: Vec<Vec<u8>>,
    /// Vifs whose disconnection was reported on the console.
    reported: BTreeSet<(u16, u32)>,
    /// Dom0's own TCP/IP stack on the bridge, if `ip=` asked for one.
    pub(super) ip: Option<Ip>,
    /// Frames the stack sent, during a pass.
    ip_out: Vec<Vec<u8>>,
    /// When the stack's next timer is due ([`Net::wake_at`]).
    ip_wake: Option<u64>,
}

impl Net {
    /// Netback with `nic` (if any) as `xenbr0`'s uplink.
    pub fn new(nic: Option<Nic>) -> Net {
        let mut nb = MetalHost::new().map(Netback::new);
        match (&mut nb, &nic) {
            (None, _) => println!("Dom0: netback: no memory for its grant copies: no vifs"),
            (Some(nb), Some(_)) => {
                nb.add_uplink(BRIDGE, UPLINK);
                println!("Dom0: {BRIDGE}: bridge with uplink eth0");
            }
            (Some(_), None) => println!("Dom0: {BRIDGE}: bridge without uplink (no NIC)"),
        }
        let seed = time::now_ns() ^ time::wallclock().map_or(0, |(s, ns)| s << 32 | u64::from(ns));
        let cmdline = pv_guest_lib::start_info().map_or("", |si| si.cmd_line());
        let ip = match nb.as_mut() {
            Some(nb) => {
                let ip = ip::from_cmdline(cmdline, nic.as_ref().map(Nic::mac), seed);
                if ip.is_some() {
                    nb.add_uplink(BRIDGE, HOST);
                }
                ip
            }
            None => {
                println!("Dom0: no bridge: Dom0 has no IP address");
                None
            }
        };
        Net {
            nb,
            nic,
            macs: MacGenerator::new(seed),
            out: Vec::new(),
            reported: BTreeSet::new(),
            ip,
            ip_out: Vec::new(),
            ip_wake: None,
        }
    }

    /// Creates vif `spec` of `domid` (libxl's nodes, then netback's
    /// probe), with the MAC it names or a generated `00:16:3e` one; the
    /// device id is `spec`'s or the next free one. Returns the device id.
    pub fn add_vif<X: Host>(
        &mut self,
        xs: &mut Xenstored<X>,
        domid: u16,
        spec: &VifSpec,
    ) -> Result<u32, String> {
        let nb = self.nb.as_mut().ok_or("netback is not available")?;
        let devid = spec.devid.unwrap_or_else(|| netback::next_devid(xs, domid));
        if nb.state(domid, devid).is_some() {
            return Err(format!("vif {devid} of domain {domid} already exists"));
        }
        let p = VifParams::from_spec(spec, &mut self.macs);
        netback::create_vif(xs, domid, devid, &p)
            .and_then(|()| nb.attach(xs, domid, devid))
            .map_err(|e| {
                nb.detach(xs, domid, devid);
                format!("vif {devid}: xenstore: {e:?}")
            })?;
        Ok(devid)
    }

    /// Whether `domid` has vif `devid`.
    pub fn has(&self, domid: u16, devid: u32) -> bool {
        self.nb
            .as_ref()
            .is_some_and(|nb| nb.state(domid, devid).is_some())
    }

    /// `xl network-list`'s rows for `domid`.
    pub fn list<X: Host>(&self, xs: &mut Xenstored<X>, domid: u16) -> Vec<NicInfo> {
        netback::list_vifs(xs, domid)
            .into_iter()
            .filter_map(|d| netback::nic_info(xs, domid, d))
            .collect()
    }

    /// `xl list -l`'s view of `domid`'s vifs.
    pub fn configs<X: Host>(&self, xs: &mut Xenstored<X>, domid: u16) -> Vec<NicConfig> {
        self.list(xs, domid)
            .into_iter()
            .map(|n| NicConfig {
                backend_domid: n.backend_id,
                devid: n.devid,
                mac: n.mac,
                bridge: xs
                    .read(&format!("{}/bridge", n.backend))
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Starts `xl network-detach`'s handshake (the frontend closes, then
    /// the device goes).
    pub fn request_detach<X: Host>(&mut self, xs: &mut Xenstored<X>, domid: u16, devid: u32) {
        if let Some(nb) = self.nb.as_mut() {
            nb.request_detach(xs, domid, devid);
        }
    }

    /// Removes vif `devid` of `domid` at once (a frontend that does not
    /// close in time, as libxl's forced removal).
    pub fn detach<X: Host>(&mut self, xs: &mut Xenstored<X>, domid: u16, devid: u32) {
        if let Some(nb) = self.nb.as_mut() {
            nb.detach(xs, domid, devid);
            self.removed(domid, devid);
        }
    }

    /// Drops every vif of a domain that is going away: its rings are
    /// unmapped and its ports closed before the domain is destroyed.
    pub fn forget<X: Host>(&mut self, xs: &mut Xenstored<X>, domid: u16) {
        if let Some(nb) = self.nb.as_mut() {
            nb.detach_domain(xs, domid);
        }
        self.reported.retain(|k| k.0 != domid);
    }

    fn removed(&mut self, domid: u16, devid: u32) {
        self.reported.remove(&(domid, devid));
        println!(
            "Dom0: vif{domid}.{devid} removed ({} guest pages grant-mapped by Dom0)",
            metal::mapped_pages()
        );
    }

    /// One pass: frontends' state changes, the NIC's received frames into
    /// the bridge, every vif's rings, the frames for the NIC out. True if
    /// anything moved (or a vif has more for the next pass).
    pub fn service<X: Host>(&mut self, xs: &mut Xenstored<X>) -> bool {
        let Some(nb) = self.nb.as_mut() else {
            return false;
        };
        let now = time::now_ns();
        let mut out = core::mem::take(&mut self.out);
        let mut ip = self.ip.as_mut();
        // Frames the bridge sends to an uplink-numbered port: the NIC's,
        // or Dom0's own stack's.
        let mut to_port = |p: u32, f: &[u8]| {
            if p == HOST {
                if let Some(ip) = ip.as_mut() {
                    ip.input(f);
                }
            } else {
                out.push(f.to_vec());
            }
        };
        let mut moved = 0;
        if let Some(nic) = self.nic.as_mut() {
            // Polled always when the NIC has no interrupt; otherwise when
            // it fired (poll_recv EOIs it) or a frame waits anyway.
            let fired = nic.irq().is_none_or(|i| events::take_fired(i.port));
            if fired || nic.can_recv() {
                let mut frames = Vec::new();
                nic.poll_recv(|f| frames.push(f.to_vec()));
                for f in &frames {
                    nb.uplink_input(UPLINK, f, now, &mut to_port);
                }
                moved += frames.len();
            }
        }
        let vifs = nb.vifs().next().is_some();
        if vifs {
            nb.xenbus_changed(xs);
            moved += nb.service(xs, now, &mut to_port);
        }
        // Dom0's own stack: what came for it, its timers, what it sends
        // (into the bridge, as any port's frames; frames for a vif are
        // delivered on the next pass, which `more` asks for).
        let mut ip_more = false;
        if let Some(ip) = self.ip.as_mut() {
            let mut sent = core::mem::take(&mut self.ip_out);
            ip_more = ip.poll(&mut sent);
            // At least a little sleep: a timer smoltcp keeps reporting as
            // due without work to do must not make Dom0 spin.
            self.ip_wake = ip
                .poll_delay_ns()
                .map(|d| now.saturating_add(d.max(MIN_IP_SLEEP_NS)));
            let nic = &mut self.nic;
            for f in sent.drain(..) {
                nb.uplink_input(HOST, &f, now, &mut |p, g| {
                    // Straight to the NIC (no copy into `out`): the bulk
                    // of a TCP stream goes this way.
                    if p == UPLINK {
                        if let Some(nic) = nic.as_mut() {
                            let _ = nic.send(g);
                        }
                    } else if p != HOST {
                        out.push(g.to_vec());
                    }
                });
            }
            self.ip_out = sent;
        }
        let more = nb.more_work();
        match self.nic.as_mut() {
            Some(nic) => {
                for f in out.drain(..) {
                    // A full or failing NIC drops the frame, as a switch
                    // would.
                    let _ = nic.send(&f);
                }
            }
            None => out.clear(),
        }
        self.out = out;
        if vifs {
            self.report(xs);
        }
        moved > 0 || more || ip_more
    }

    /// When Dom0's IP stack wants to run again (a retransmission, a
    /// delayed ACK, ARP), system time in ns, as of the last pass: bounds
    /// Dom0's idle sleep.
    pub fn wake_at(&self) -> Option<u64> {
        self.ip_wake
    }

    /// Says on the console which vifs netback disconnected (and why) and
    /// which hot-unplugs finished.
    fn report<X: Host>(&mut self, xs: &mut Xenstored<X>) {
        let Some(nb) = self.nb.as_mut() else { return };
        for (domid, devid) in nb.take_removed() {
            self.removed(domid, devid);
        }
        let Some(nb) = self.nb.as_ref() else { return };
        let closing: Vec<(u16, u32)> = nb
            .vifs()
            .filter(|&(d, n)| nb.state(d, n) == Some(XenbusState::Closing))
            .filter(|k| !self.reported.contains(k))
            .collect();
        for (domid, devid) in closing {
            if let Ok(msg) = xs.read(&netback::error_path(domid, devid)) {
                println!(
                    "Dom0: vif{domid}.{devid} disconnected: {}",
                    String::from_utf8_lossy(&msg)
                );
                self.reported.insert((domid, devid));
            }
        }
    }
}
