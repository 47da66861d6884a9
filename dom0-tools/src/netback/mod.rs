//! netback: Dom0's side of Xen's netif protocol, and the bridges its vifs
//! hang off, as pure logic.
//!
//! - [`create_vif`] writes what libxl writes for `vif = [...]` (frontend
//!   `device/vif/<devid>` and backend `backend/vif/<domid>/<devid>`
//!   directories with their permissions); [`Netback::attach`] then does
//!   what Linux netback's probe does: advertise the features
//!   (`feature-sg`, `feature-rx-copy`, `feature-rx-flip = 0`,
//!   `feature-split-event-channels`, ...) and go to `InitWait`.
//! - [`Netback::xenbus_changed`] follows the frontend's `state` (call it
//!   when a watch on the frontend's or backend's directory fires): on
//!   `Initialised`/`Connected` it reads `tx-ring-ref`, `rx-ring-ref`,
//!   `event-channel` (or `event-channel-tx`/`-rx`), `request-rx-copy`
//!   (must be 1: no page flipping), `feature-rx-notify` (mandatory, as in
//!   Linux), `feature-sg`; maps the rings and binds the channels through
//!   the [`NetbackHost`], joins the bridge named by `bridge`, and goes
//!   `Connected`. `Closing`/`Closed` from the frontend tear it down;
//!   [`Netback::detach`] (`xl network-detach`, domain death) removes it.
//! - [`Netback::service`] moves frames: every vif's TX ring into its
//!   bridge (frames whose source is not the vif's MAC are dropped, so a
//!   guest cannot steal another's traffic by teaching the bridge its
//!   address; [`Netback::antispoof`] turns that off), then out to other
//!   vifs' RX queues or to an uplink (the physical NIC, through the
//!   caller); [`Netback::uplink_input`] brings the NIC's frames in.
//! - [`list_vifs`], [`next_devid`] and [`nic_info`] answer `xl
//!   network-list`/`network-attach` from xenstore, as libxl does;
//!   [`Netback::request_detach`] is `xl network-detach`'s handshake.
//!
//! A frontend that breaks the ring protocol is disconnected alone (see
//! [`ring`]): its rings are unmapped, its ports closed, the error is
//! written to `/local/domain/0/error/backend/vif/<domid>/<devid>/error`
//! (as `xenbus_dev_fatal` does) and the backend goes `Closing`. Nothing
//! here panics on guest input.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use hypercall_abi::io::xenbus::XenbusState;
use pv_guest_lib::xenbus::page::SharedPage;
use pv_guest_lib::xenbus::wire::{parse_u32, Access, Perm};

use crate::bridge::{Bridge, PortId};
use crate::vif::Mac;
use crate::xenstore::{DomId, Host, Xenstored};

pub mod csum;
#[cfg(target_os = "none")]
pub mod metal;
pub mod ring;

pub use ring::{VifFault, VifRings, VifStats};

/// A grant reference.
pub type GrantRef = u32;

/// `GNTTABOP_copy` between a guest's grant and a Dom0 buffer. Errors carry
/// the `GNTST_*` status.
pub trait GrantCopier {
    /// Copies `dst.len()` bytes from `domid`'s grant `gref` at `offset`.
    /// Must fail (not fault) for a bad reference, a grant not for Dom0, or
    /// a range beyond the page.
    fn copy_from_guest(
        &mut self,
        domid: DomId,
        gref: GrantRef,
        offset: u16,
        dst: &mut [u8],
    ) -> Result<(), i16>;
    /// Copies `src` into `domid`'s grant `gref` at `offset` (the grant must
    /// be writable).
    fn copy_to_guest(
        &mut self,
        domid: DomId,
        gref: GrantRef,
        offset: u16,
        src: &[u8],
    ) -> Result<(), i16>;
}

/// What netback needs from Dom0's kernel besides grant copies.
pub trait NetbackHost: GrantCopier {
    /// A guest's ring page mapped into Dom0 (`GNTTABOP_map_grant_ref`);
    /// dropping it unmaps it.
    type Page: SharedPage;
    /// Maps `domid`'s grant `gref` (a ring page).
    fn map_ring(&mut self, domid: DomId, gref: GrantRef) -> Option<Self::Page>;
    /// Binds to `domid`'s unbound port `remote_port`; returns ours.
    fn bind(&mut self, domid: DomId, remote_port: u32) -> Option<u32>;
    /// Closes a port [`NetbackHost::bind`] returned.
    fn unbind(&mut self, local_port: u32);
    /// Sends an event on our port.
    fn notify(&mut self, local_port: u32);
}

/// What libxl records for a vif.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VifParams {
    /// The guest's MAC.
    pub mac: Mac,
    /// The bridge to join.
    pub bridge: String,
    /// The hotplug script (recorded only).
    pub script: String,
}

impl VifParams {
    /// From an xl.cfg `vif = [...]` entry; its MAC comes from `gen` if it
    /// gives none.
    pub fn from_spec(
        spec: &crate::xlcfg::VifSpec,
        gen: &mut crate::xlcfg::MacGenerator,
    ) -> VifParams {
        VifParams {
            mac: Mac(spec.mac_or_generate(gen)),
            bridge: spec.bridge_or_default().to_string(),
            script: spec
                .script
                .clone()
                .unwrap_or_else(|| crate::vif::DEFAULT_SCRIPT.to_string()),
        }
    }
}

/// `/local/domain/<domid>/device/vif/<devid>`.
pub fn frontend_path(domid: DomId, devid: u32) -> String {
    format!("/local/domain/{domid}/device/vif/{devid}")
}

/// `/local/domain/0/backend/vif/<domid>/<devid>`.
pub fn backend_path(domid: DomId, devid: u32) -> String {
    format!("/local/domain/0/backend/vif/{domid}/{devid}")
}

/// Where `xenbus_dev_fatal` reports a backend's error.
pub fn error_path(domid: DomId, devid: u32) -> String {
    format!("/local/domain/0/error/backend/vif/{domid}/{devid}/error")
}

fn num(v: impl Into<u64>) -> String {
    pv_guest_lib::xenbus::wire::decimal(v.into())
}

/// Writes the nodes libxl's `libxl__device_nic_add` writes for a vif of
/// `domid` served by Dom0: frontend (owned by the guest, readable by Dom0)
/// `backend`, `backend-id`, `state = 1`, `handle`, `mac`; backend (owned
/// by Dom0, readable by the guest) `frontend`, `frontend-id`, `online =
/// 1`, `state = 1`, `script`, `mac`, `bridge`, `handle`, `type = vif`.
pub fn create_vif<H: Host>(
    xs: &mut Xenstored<H>,
    domid: DomId,
    devid: u32,
    p: &VifParams,
) -> Result<(), pv_guest_lib::xenbus::XsErr> {
    let fe = frontend_path(domid, devid);
    let be = backend_path(domid, devid);
    let mac = p.mac.to_string();
    let _ = xs.rm(&fe);
    let _ = xs.rm(&be);
    xs.mknod(
        &be,
        &[Perm::new(0, Access::None), Perm::new(domid, Access::Read)],
    )?;
    for (k, v) in [
        ("frontend", fe.as_str()),
        ("frontend-id", &num(domid)),
        ("online", "1"),
        ("state", "1"),
        ("script", &p.script),
        ("mac", &mac),
        ("bridge", &p.bridge),
        ("handle", &num(devid)),
        ("type", "vif"),
    ] {
        xs.write(&format!("{be}/{k}"), v.as_bytes())?;
    }
    xs.mknod(
        &fe,
        &[Perm::new(domid, Access::None), Perm::new(0, Access::Read)],
    )?;
    for (k, v) in [
        ("backend", be.as_str()),
        ("backend-id", "0"),
        ("state", "1"),
        ("handle", &num(devid)),
        ("mac", &mac),
    ] {
        xs.write(&format!("{fe}/{k}"), v.as_bytes())?;
    }
    Ok(())
}

/// The vif device ids of `domid` (its `device/vif` directory), sorted.
pub fn list_vifs<H: Host>(xs: &mut Xenstored<H>, domid: DomId) -> Vec<u32> {
    let mut v: Vec<u32> = xs
        .directory(&format!("/local/domain/{domid}/device/vif"))
        .unwrap_or_default()
        .iter()
        .filter_map(|d| d.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

/// The device id `xl network-attach` gives a vif without `devid=`: one
/// past the highest in use (libxl's `libxl__device_nextid`).
pub fn next_devid<H: Host>(xs: &mut Xenstored<H>, domid: DomId) -> u32 {
    list_vifs(xs, domid).last().map_or(0, |d| d + 1)
}

/// What `xl network-list` shows of a vif, read from xenstore as
/// `libxl_device_nic_getinfo` does (`-1` for what the frontend has not
/// published yet).
pub fn nic_info<H: Host>(
    xs: &mut Xenstored<H>,
    domid: DomId,
    devid: u32,
) -> Option<crate::xl::backend::NicInfo> {
    let fe = frontend_path(domid, devid);
    let be = String::from_utf8(xs.read(&format!("{fe}/backend")).ok()?).ok()?;
    let mut num = |p: &str| -> i32 {
        xs.read(p)
            .ok()
            .and_then(|v| parse_u32(&v))
            .and_then(|v| i32::try_from(v).ok())
            .unwrap_or(-1)
    };
    let backend_id = num(&format!("{fe}/backend-id"));
    let state = num(&format!("{be}/state"));
    let evtch = match num(&format!("{fe}/event-channel")) {
        -1 => num(&format!("{fe}/event-channel-tx")),
        p => p,
    };
    let rref_tx = num(&format!("{fe}/tx-ring-ref"));
    let rref_rx = num(&format!("{fe}/rx-ring-ref"));
    let mac = xs
        .read(&format!("{be}/mac"))
        .ok()
        .and_then(|v| Mac::parse(core::str::from_utf8(&v).ok()?))
        .unwrap_or_default();
    Some(crate::xl::backend::NicInfo {
        devid,
        backend_id: backend_id.max(0) as u32,
        frontend_id: u32::from(domid),
        mac: mac.0,
        state,
        evtch,
        rref_tx,
        rref_rx,
        backend: be,
    })
}

/// The bridge port of a vif.
pub fn vif_port(domid: DomId, devid: u32) -> PortId {
    u32::from(domid) << 16 | (devid & 0xffff)
}

/// The first port number of uplinks (physical NICs): above every vif's.
pub const UPLINK_PORT_BASE: PortId = 0xffff_0000;

struct Vif<P> {
    bridge: String,
    /// The MAC libxl recorded; frames from the guest must carry it.
    mac: Option<Mac>,
    /// Frames dropped for a forged source address.
    spoofed: u64,
    state: XenbusState,
    rings: Option<VifRings<P>>,
}

/// Dom0's network back end: every vif and the bridges. See the module
/// documentation.
pub struct Netback<H: NetbackHost> {
    host: H,
    vifs: BTreeMap<(DomId, u32), Vif<H::Page>>,
    bridges: BTreeMap<String, Bridge>,
    /// Uplink port → bridge name.
    uplinks: BTreeMap<PortId, String>,
    more: bool,
    removed: Vec<(DomId, u32)>,
    /// Drop guest frames whose source is not the vif's MAC (default on).
    pub antispoof: bool,
}

/// Backend features advertised at probe.
const FEATURES: &[(&str, &str)] = &[
    ("feature-sg", "1"),
    ("feature-gso-tcpv4", "0"),
    ("feature-gso-tcpv6", "0"),
    ("feature-ipv6-csum-offload", "0"),
    ("feature-rx-copy", "1"),
    ("feature-rx-flip", "0"),
    ("feature-multicast-control", "0"),
    ("feature-dynamic-multicast-control", "0"),
    ("feature-split-event-channels", "1"),
    ("multi-queue-max-queues", "1"),
    ("feature-ctrl-ring", "0"),
];

impl<H: NetbackHost> Netback<H> {
    /// No vifs, no bridges.
    pub fn new(host: H) -> Self {
        Netback {
            host,
            vifs: BTreeMap::new(),
            bridges: BTreeMap::new(),
            uplinks: BTreeMap::new(),
            more: false,
            removed: Vec::new(),
            antispoof: true,
        }
    }

    /// The host.
    pub fn host(&mut self) -> &mut H {
        &mut self.host
    }

    /// A bridge, by name.
    pub fn bridge(&self, name: &str) -> Option<&Bridge> {
        self.bridges.get(name)
    }

    /// Adds a physical NIC as `port` (≥ [`UPLINK_PORT_BASE`]) of `bridge`.
    pub fn add_uplink(&mut self, bridge: &str, port: PortId) {
        self.bridges
            .entry(bridge.to_string())
            .or_default()
            .add_port(port);
        self.uplinks.insert(port, bridge.to_string());
    }

    /// The vifs: `(domid, devid)`.
    pub fn vifs(&self) -> impl Iterator<Item = (DomId, u32)> + '_ {
        self.vifs.keys().copied()
    }

    /// The backend state of a vif.
    pub fn state(&self, domid: DomId, devid: u32) -> Option<XenbusState> {
        self.vifs.get(&(domid, devid)).map(|v| v.state)
    }

    /// Counters of a connected vif.
    pub fn stats(&self, domid: DomId, devid: u32) -> Option<VifStats> {
        self.vifs
            .get(&(domid, devid))?
            .rings
            .as_ref()
            .map(VifRings::stats)
    }

    /// Frames of a vif dropped because their source address was not the
    /// vif's MAC (see [`Netback::antispoof`]).
    pub fn spoofed(&self, domid: DomId, devid: u32) -> Option<u64> {
        self.vifs.get(&(domid, devid)).map(|v| v.spoofed)
    }

    /// The local event ports of a connected vif (TX, RX).
    pub fn ports(&self, domid: DomId, devid: u32) -> Option<(u32, u32)> {
        let r = self.vifs.get(&(domid, devid))?.rings.as_ref()?;
        Some((r.tx_port, r.rx_port))
    }

    /// The vif a local event port belongs to.
    pub fn vif_of_port(&self, port: u32) -> Option<(DomId, u32)> {
        self.vifs.iter().find_map(|(k, v)| {
            let r = v.rings.as_ref()?;
            (r.tx_port == port || r.rx_port == port).then_some(*k)
        })
    }

    /// Probes the backend device libxl created ([`create_vif`]): writes the
    /// features and goes `InitWait`.
    pub fn attach<X: Host>(
        &mut self,
        xs: &mut Xenstored<X>,
        domid: DomId,
        devid: u32,
    ) -> Result<(), pv_guest_lib::xenbus::XsErr> {
        let be = backend_path(domid, devid);
        let mac = xs
            .read(&format!("{be}/mac"))
            .ok()
            .and_then(|v| Mac::parse(core::str::from_utf8(&v).ok()?));
        let bridge = xs
            .read(&format!("{be}/bridge"))
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_else(|_| crate::vif::DEFAULT_BRIDGE.to_string());
        for (k, v) in FEATURES {
            xs.write(&format!("{be}/{k}"), v.as_bytes())?;
        }
        xs.write(&format!("{be}/state"), b"2")?;
        // What the vif-bridge hotplug script reports once the vif is on
        // its bridge (libxl waits for it).
        xs.write(&format!("{be}/hotplug-status"), b"connected")?;
        self.detach_rings(domid, devid);
        self.vifs.insert(
            (domid, devid),
            Vif {
                bridge,
                mac,
                spoofed: 0,
                state: XenbusState::InitWait,
                rings: None,
            },
        );
        Ok(())
    }

    /// Removes a vif (hot-unplug or domain death): unmaps, unbinds, leaves
    /// the bridge, removes both xenstore directories.
    pub fn detach<X: Host>(&mut self, xs: &mut Xenstored<X>, domid: DomId, devid: u32) {
        self.detach_rings(domid, devid);
        self.vifs.remove(&(domid, devid));
        let _ = xs.rm(&backend_path(domid, devid));
        let _ = xs.rm(&frontend_path(domid, devid));
        let _ = xs.rm(&format!(
            "/local/domain/0/error/backend/vif/{domid}/{devid}"
        ));
    }

    /// Starts a graceful hot-unplug (`xl network-detach`), as libxl does:
    /// `online = 0` and `Closing`, so the frontend closes; the device is
    /// removed once the frontend is `Closed` (or gone) — see
    /// [`Netback::take_removed`].
    pub fn request_detach<X: Host>(&mut self, xs: &mut Xenstored<X>, domid: DomId, devid: u32) {
        if !self.vifs.contains_key(&(domid, devid)) {
            return;
        }
        let _ = xs.write(&format!("{}/online", backend_path(domid, devid)), b"0");
        self.detach_rings(domid, devid);
        self.set_state(xs, domid, devid, XenbusState::Closing);
        self.xenbus_changed(xs);
    }

    /// Devices removed since the last call (finished hot-unplugs).
    pub fn take_removed(&mut self) -> Vec<(DomId, u32)> {
        core::mem::take(&mut self.removed)
    }

    /// Every vif of a domain that is going away.
    pub fn detach_domain<X: Host>(&mut self, xs: &mut Xenstored<X>, domid: DomId) {
        let devs: Vec<u32> = self
            .vifs
            .keys()
            .filter(|k| k.0 == domid)
            .map(|k| k.1)
            .collect();
        for d in devs {
            self.detach(xs, domid, d);
        }
        let _ = xs.rm(&format!("/local/domain/0/backend/vif/{domid}"));
    }

    fn detach_rings(&mut self, domid: DomId, devid: u32) {
        let Some(v) = self.vifs.get_mut(&(domid, devid)) else {
            return;
        };
        if let Some(r) = v.rings.take() {
            self.host.unbind(r.tx_port);
            if r.rx_port != r.tx_port {
                self.host.unbind(r.rx_port);
            }
            // Dropping the rings unmaps the pages.
        }
        if let Some(b) = self.bridges.get_mut(&v.bridge) {
            b.remove_port(vif_port(domid, devid));
        }
    }

    fn set_state<X: Host>(
        &mut self,
        xs: &mut Xenstored<X>,
        domid: DomId,
        devid: u32,
        s: XenbusState,
    ) {
        if let Some(v) = self.vifs.get_mut(&(domid, devid)) {
            v.state = s;
        }
        let _ = xs.write(
            &format!("{}/state", backend_path(domid, devid)),
            num(s.raw()).as_bytes(),
        );
    }

    /// `xenbus_dev_fatal`: records `msg`, disconnects, goes `Closing`.
    fn fatal<X: Host>(&mut self, xs: &mut Xenstored<X>, domid: DomId, devid: u32, msg: &str) {
        let _ = xs.write(&error_path(domid, devid), msg.as_bytes());
        self.detach_rings(domid, devid);
        self.set_state(xs, domid, devid, XenbusState::Closing);
    }

    /// Reacts to the frontends' `state` (call when a watch fires; cheap
    /// when nothing changed).
    pub fn xenbus_changed<X: Host>(&mut self, xs: &mut Xenstored<X>) {
        let keys: Vec<(DomId, u32)> = self.vifs.keys().copied().collect();
        for (domid, devid) in keys {
            let fe = frontend_path(domid, devid);
            let fstate = xs
                .read(&format!("{fe}/state"))
                .ok()
                .and_then(|v| parse_u32(&v))
                .and_then(|v| XenbusState::from_raw(u64::from(v)))
                .unwrap_or(XenbusState::Unknown);
            let Some(cur) = self.vifs.get(&(domid, devid)).map(|v| v.state) else {
                continue;
            };
            // Hot-unplug (`online = 0`, see `request_detach`): once the
            // frontend has let go (or is gone), remove the device.
            if matches!(fstate, XenbusState::Closed | XenbusState::Unknown)
                && xs
                    .read(&format!("{}/online", backend_path(domid, devid)))
                    .as_deref()
                    == Ok(b"0".as_slice())
            {
                self.detach(xs, domid, devid);
                self.removed.push((domid, devid));
                continue;
            }
            match fstate {
                XenbusState::Initialised | XenbusState::Connected
                    if cur == XenbusState::InitWait =>
                {
                    if let Err(msg) = self.connect(xs, domid, devid) {
                        self.fatal(xs, domid, devid, &msg);
                    }
                }
                XenbusState::Closing if cur != XenbusState::Closing => {
                    self.detach_rings(domid, devid);
                    self.set_state(xs, domid, devid, XenbusState::Closing);
                }
                XenbusState::Closed | XenbusState::Unknown
                    if cur != XenbusState::Closed && cur != XenbusState::InitWait =>
                {
                    self.detach_rings(domid, devid);
                    self.set_state(xs, domid, devid, XenbusState::Closed);
                }
                XenbusState::Initialising
                    if matches!(cur, XenbusState::Closed | XenbusState::Closing) =>
                {
                    // The frontend restarts (a reboot without a rebuild,
                    // or a driver reload): probe again.
                    let _ = xs.rm(&format!(
                        "/local/domain/0/error/backend/vif/{domid}/{devid}"
                    ));
                    self.set_state(xs, domid, devid, XenbusState::InitWait);
                }
                _ => {}
            }
        }
    }

    fn connect<X: Host>(
        &mut self,
        xs: &mut Xenstored<X>,
        domid: DomId,
        devid: u32,
    ) -> Result<(), String> {
        let fe = frontend_path(domid, devid);
        let read = |xs: &mut Xenstored<X>, k: &str| -> Option<u32> {
            xs.read(&format!("{fe}/{k}"))
                .ok()
                .and_then(|v| parse_u32(&v))
        };
        let need = |xs: &mut Xenstored<X>, k: &str| -> Result<u32, String> {
            read(xs, k).ok_or_else(|| format!("reading {fe}/{k}"))
        };
        if read(xs, "multi-queue-num-queues").unwrap_or(1) != 1 {
            return Err("guest requested more queues than supported".into());
        }
        let tx_ref = need(xs, "tx-ring-ref")?;
        let rx_ref = need(xs, "rx-ring-ref")?;
        let (tx_ev, rx_ev) = match read(xs, "event-channel") {
            Some(p) => (p, p),
            None => (need(xs, "event-channel-tx")?, need(xs, "event-channel-rx")?),
        };
        if read(xs, "request-rx-copy").unwrap_or(0) != 1 {
            return Err(format!("{fe}/request-rx-copy: rx copy is required"));
        }
        if read(xs, "feature-rx-notify").unwrap_or(0) != 1 {
            return Err("feature-rx-notify is mandatory".into());
        }
        let sg = read(xs, "feature-sg").unwrap_or(0) == 1;

        let tx = self
            .host
            .map_ring(domid, tx_ref)
            .ok_or_else(|| format!("mapping shared-frames {tx_ref}/{rx_ref}"))?;
        let rx = self
            .host
            .map_ring(domid, rx_ref)
            .ok_or_else(|| format!("mapping shared-frames {tx_ref}/{rx_ref}"))?;
        let tx_port = self
            .host
            .bind(domid, tx_ev)
            .ok_or_else(|| format!("binding event-channel {tx_ev}"))?;
        let rx_port = if rx_ev == tx_ev {
            tx_port
        } else {
            match self.host.bind(domid, rx_ev) {
                Some(p) => p,
                None => {
                    self.host.unbind(tx_port);
                    return Err(format!("binding event-channel {rx_ev}"));
                }
            }
        };
        let rings = VifRings::new(domid, tx, rx, tx_port, rx_port, sg);
        let Some(v) = self.vifs.get_mut(&(domid, devid)) else {
            return Ok(());
        };
        v.rings = Some(rings);
        let bridge = v.bridge.clone();
        self.bridges
            .entry(bridge)
            .or_default()
            .add_port(vif_port(domid, devid));
        self.set_state(xs, domid, devid, XenbusState::Connected);
        Ok(())
    }

    /// One pass of the data path at `now_ns`: every connected vif's TX ring
    /// through its bridge (frames for an uplink go to `uplink_out(port,
    /// frame)`), then every RX queue into its guest. Vifs whose frontend
    /// broke the protocol are disconnected. Returns frames moved; see
    /// [`Netback::more_work`].
    pub fn service<X: Host>(
        &mut self,
        xs: &mut Xenstored<X>,
        now_ns: u64,
        uplink_out: &mut dyn FnMut(PortId, &[u8]),
    ) -> usize {
        let keys: Vec<(DomId, u32)> = self.vifs.keys().copied().collect();
        let mut moved = 0;
        let mut faults = Vec::new();
        self.more = false;
        // TX: gather each vif's frames, then switch them.
        for &(domid, devid) in &keys {
            let mut frames: Vec<Vec<u8>> = Vec::new();
            let Some(v) = self.vifs.get_mut(&(domid, devid)) else {
                continue;
            };
            let Some(r) = v.rings.as_mut() else {
                continue;
            };
            let bridge = v.bridge.clone();
            let own = v.mac.filter(|_| self.antispoof);
            // One budget per vif per pass, so no guest can keep the
            // back end to itself.
            match r.tx_poll(&mut self.host, &mut |f| frames.push(f.to_vec())) {
                Ok(n) if n == ring::TX_BUDGET => self.more = true,
                Ok(_) => {}
                Err(f) => faults.push((domid, devid, f)),
            }
            for f in frames {
                if own.is_some_and(|m| Mac::src_of(&f) != Some(m)) {
                    if let Some(v) = self.vifs.get_mut(&(domid, devid)) {
                        v.spoofed += 1;
                    }
                    continue;
                }
                moved += 1;
                self.switch(&bridge, vif_port(domid, devid), &f, now_ns, uplink_out);
            }
        }
        // RX.
        for &(domid, devid) in &keys {
            let Some(r) = self
                .vifs
                .get_mut(&(domid, devid))
                .and_then(|v| v.rings.as_mut())
            else {
                continue;
            };
            if r.rx_queued() == 0 {
                continue;
            }
            match r.rx_poll(&mut self.host) {
                Ok(n) => moved += n,
                Err(f) => faults.push((domid, devid, f)),
            }
        }
        for (domid, devid, f) in faults {
            self.fatal(xs, domid, devid, f.message());
        }
        moved
    }

    /// The last [`Netback::service`] stopped at a vif's budget: call it
    /// again soon (without waiting for an event).
    pub fn more_work(&self) -> bool {
        self.more
    }

    /// A frame from the physical NIC on uplink `port`.
    pub fn uplink_input(
        &mut self,
        port: PortId,
        frame: &[u8],
        now_ns: u64,
        uplink_out: &mut dyn FnMut(PortId, &[u8]),
    ) {
        if let Some(b) = self.uplinks.get(&port).cloned() {
            self.switch(&b, port, frame, now_ns, uplink_out);
        }
    }

    fn switch(
        &mut self,
        bridge: &str,
        from: PortId,
        frame: &[u8],
        now_ns: u64,
        uplink_out: &mut dyn FnMut(PortId, &[u8]),
    ) {
        let Some(b) = self.bridges.get_mut(bridge) else {
            return;
        };
        let fwd = b.input(from, frame, now_ns);
        for p in fwd.ports() {
            if p >= UPLINK_PORT_BASE {
                uplink_out(p, frame);
                continue;
            }
            let key = ((p >> 16) as DomId, p & 0xffff);
            if let Some(r) = self.vifs.get_mut(&key).and_then(|v| v.rings.as_mut()) {
                r.rx_enqueue(frame);
            }
        }
    }
}
