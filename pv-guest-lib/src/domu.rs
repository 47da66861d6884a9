//! Ordinary (unprivileged) domains: what a PV guest that is not Dom0 does
//! to behave like a Xen guest towards the toolstack.
//!
//! A domain built by `xl create` gets a xenstore ring page and event
//! channel in `start_info` (`store_mfn`, `store_evtchn`); the toolstack has
//! already introduced it to xenstored and written its home directory,
//! `/local/domain/<domid>` (`name`, `domid`, `control/...`). The guest:
//!
//! 1. [`connect`]s: finds (or maps) the ring page and returns a
//!    [`Xenbus`] client whose waits sleep in `SCHEDOP_block` until the store
//!    port fires (see [`crate::xenbus::metal`]). The event channel is
//!    already bound to Dom0 by the builder: the guest only sends on it and
//!    takes its events; nothing new is bound.
//! 2. Starts a [`ShutdownWatcher`]: publishes `control/feature-poweroff`
//!    and `control/feature-reboot` = "1" (as Linux does; the toolstack
//!    creates those nodes writable for the guest) and watches
//!    `control/shutdown`.
//! 3. When `xl shutdown`/`xl reboot`/`xl destroy`-with-crash write a request
//!    there, the watcher acknowledges it (writes "" in the same
//!    transaction that read it) and the guest shuts down with the matching
//!    `SCHEDOP_shutdown` reason ([`action`]): `poweroff`/`halt` →
//!    poweroff, `reboot` → reboot, `crash` → crash. `suspend` (save,
//!    migrate) is not supported: it is left unacknowledged and logged, so
//!    `xl save` times out and says the guest did not acknowledge it.
//!
//! ```no_run
//! # fn f(si: &pv_guest_lib::StartInfo) {
//! use pv_guest_lib::domu;
//! pv_guest_lib::runtime::init().unwrap();
//! let mut xs = domu::connect(si).unwrap();
//! let me = domu::identity(&mut xs);
//! pv_guest_lib::println!("I am domain {:?} ({:?})", me.domid, me.name);
//! let watcher = domu::ShutdownWatcher::start(&mut xs).unwrap();
//! watcher.run(&mut xs) // acknowledges the next request and shuts down
//! # }
//! ```
//!
//! Everything but [`connect`] and [`ShutdownWatcher::run`] is pure
//! protocol over any [`Transport`], tested on the host against a scripted
//! xenstored (here) and against Dom0's real one (`dom0-tools/tests/
//! domu_shutdown.rs`).

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::abi::sched::ShutdownReason;
use crate::start_info::StartInfo;
use crate::xenbus::metal::{StoreError, StoreTransport};
use crate::xenbus::shutdown::{Pending, SHUTDOWN_NODE, SHUTDOWN_TOKEN};
use crate::xenbus::{ShutdownRequest, Transport, WatchEvent, Xenbus, XsError, NO_TX};

/// The `control/feature-<name>` nodes [`ShutdownWatcher::start`] sets to
/// "1": the requests this guest carries out.
pub const FEATURES: [&str; 2] = ["poweroff", "reboot"];

/// Why [`connect`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// This is the initial domain (`SIF_INITDOMAIN`): Dom0 runs xenstored
    /// and has no store ring.
    InitialDomain,
    /// [`crate::runtime::init`] has not run (no shared info page or heap:
    /// nothing to sleep on, nowhere to put messages).
    NotInitialised,
    /// The ring page could not be found or mapped.
    Store(StoreError),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::InitialDomain => f.write_str("the initial domain has no xenstore ring"),
            ConnectError::NotInitialised => f.write_str("runtime::init has not run"),
            ConnectError::Store(e) => e.fmt(f),
        }
    }
}

/// True for a domain that is not the initial domain (a domU).
pub fn is_domu(si: &StartInfo) -> bool {
    !si.flags.initdomain()
}

fn on_store_event(_port: crate::events::Port, _data: usize) {
    // Nothing to do in the upcall: every delivery bumps
    // `events::generation`, which wakes `block_until` to re-check the ring.
}

/// Connects this domain to xenstored over the ring `start_info` names
/// (call after [`crate::runtime::init`]). Registers a handler for the
/// store port (the wake-up itself comes from the event's delivery) and
/// unmasks it; binds nothing new.
pub fn connect(si: &StartInfo) -> Result<Xenbus<StoreTransport>, ConnectError> {
    if si.flags.initdomain() {
        return Err(ConnectError::InitialDomain);
    }
    if crate::shared::get().is_none() || !runtime_has_heap() {
        return Err(ConnectError::NotInitialised);
    }
    let t = StoreTransport::from_start_info(si).map_err(ConnectError::Store)?;
    let port = t.port();
    let _ = crate::events::set_handler(port, on_store_event, 0);
    let _ = crate::events::unmask(port);
    Ok(Xenbus::new(t))
}

#[cfg(target_os = "none")]
fn runtime_has_heap() -> bool {
    crate::heap::stats() != (0, 0)
}

#[cfg(not(target_os = "none"))]
fn runtime_has_heap() -> bool {
    true // the host's allocator
}

/// Who this domain is, from its xenstore home (`domid`, `name`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// `/local/domain/<id>/domid`, if readable and a number.
    pub domid: Option<u16>,
    /// `/local/domain/<id>/name` (the name `xl list` shows), if readable.
    pub name: Option<String>,
}

/// Reads `domid` and `name` from the domain's home directory (relative
/// paths: xenstored resolves them against `/local/domain/<domid>`).
/// Missing or unreadable nodes give `None`.
pub fn identity<T: Transport>(xs: &mut Xenbus<T>) -> Identity {
    let domid = xs
        .read(NO_TX, "domid")
        .ok()
        .and_then(|v| crate::xenbus::wire::parse_u16(&v));
    let name = xs.read_string(NO_TX, "name").ok();
    Identity { domid, name }
}

/// The `SCHEDOP_shutdown` reason a request is carried out with; `None` for
/// the requests this library does not support (`suspend`).
pub fn action(request: ShutdownRequest) -> Option<ShutdownReason> {
    match request {
        ShutdownRequest::Poweroff => Some(ShutdownReason::Poweroff),
        ShutdownRequest::Reboot => Some(ShutdownReason::Reboot),
        ShutdownRequest::Crash => Some(ShutdownReason::Crash),
        ShutdownRequest::Suspend => None,
    }
}

/// A request the guest took (and acknowledged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shutdown {
    /// What was asked.
    pub request: ShutdownRequest,
    /// The value the toolstack wrote (`"poweroff"`, `"halt"`, ...).
    pub value: String,
    /// How to carry it out.
    pub reason: ShutdownReason,
}

/// What [`ShutdownWatcher::poll`] found in `control/shutdown`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A request taken and acknowledged: shut down with its `reason`.
    Shutdown(Shutdown),
    /// A value left in place, unacknowledged (`suspend`, or a word that is
    /// no request); already logged.
    Refused {
        /// The value.
        value: String,
    },
}

/// The `control/shutdown` protocol of an ordinary domain (see the module
/// docs).
///
/// The watcher owns the client's watch-event queue while it polls: events
/// of other watches are kept for [`ShutdownWatcher::take_other_events`].
#[derive(Debug)]
pub struct ShutdownWatcher {
    published: Vec<&'static str>,
    check: bool,
    suspend: bool,
    others: VecDeque<WatchEvent>,
}

impl ShutdownWatcher {
    /// Publishes [`FEATURES`] (best effort: a toolstack that did not create
    /// the nodes leaves `control/` read-only for the guest; what failed is
    /// logged) and watches `control/shutdown`. The watch fires once at
    /// once, so a request written before the guest got here is seen by the
    /// first [`poll`](Self::poll).
    pub fn start<T: Transport>(xs: &mut Xenbus<T>) -> Result<ShutdownWatcher, XsError> {
        let mut published = Vec::new();
        for f in FEATURES {
            let mut path = String::from("control/feature-");
            path.push_str(f);
            match xs.write(NO_TX, &path, b"1") {
                Ok(()) => published.push(f),
                Err(e) => log::warn!("domu: cannot publish {path}: {e}"),
            }
        }
        xs.watch(SHUTDOWN_NODE, SHUTDOWN_TOKEN)?;
        Ok(ShutdownWatcher {
            published,
            check: false,
            suspend: false,
            others: VecDeque::new(),
        })
    }

    /// Takes `suspend` requests too (a kernel that carries them out with
    /// [`crate::suspend`]): they are acknowledged and returned with
    /// [`ShutdownReason::Suspend`]; also publishes
    /// `control/feature-suspend` (best effort).
    pub fn accept_suspend<T: Transport>(&mut self, xs: &mut Xenbus<T>) {
        self.suspend = true;
        match xs.write(NO_TX, "control/feature-suspend", b"1") {
            Ok(()) => self.published.push("suspend"),
            Err(e) => log::warn!("domu: cannot publish control/feature-suspend: {e}"),
        }
    }

    /// The features [`start`](Self::start) managed to publish.
    pub fn published(&self) -> &[&'static str] {
        &self.published
    }

    /// Without waiting: takes the watch events that arrived and, if
    /// `control/shutdown` fired, reads it; a supported request is
    /// acknowledged and returned, anything else is logged and left.
    /// `None` if there is nothing (new) to do. After an error the check is
    /// retried on the next call.
    pub fn poll<T: Transport>(&mut self, xs: &mut Xenbus<T>) -> Result<Option<Outcome>, XsError> {
        while let Some(ev) = xs.next_event()? {
            if ev.token == SHUTDOWN_TOKEN {
                self.check = true;
            } else {
                self.others.push_back(ev);
            }
        }
        if !self.check {
            return Ok(None);
        }
        let suspend = self.suspend;
        let pending = xs.check_shutdown_with(|r| {
            action(r).is_some() || (suspend && r == ShutdownRequest::Suspend)
        })?;
        self.check = false;
        Ok(match pending {
            None => None,
            Some(Pending::Taken { request, value }) => {
                let reason = match request {
                    ShutdownRequest::Suspend => ShutdownReason::Suspend,
                    r => action(r).unwrap_or(ShutdownReason::Poweroff),
                };
                Some(Outcome::Shutdown(Shutdown {
                    request,
                    value,
                    reason,
                }))
            }
            Some(Pending::Refused { request, value }) => {
                match request {
                    Some(r) => log::warn!(
                        "domu: shutdown request '{}' not supported: left unacknowledged",
                        r.as_str()
                    ),
                    None => log::warn!(
                        "domu: ignoring unknown shutdown request '{}'",
                        value.escape_debug()
                    ),
                }
                Some(Outcome::Refused { value })
            }
        })
    }

    /// Waits for the next [`Outcome`], sleeping in the transport's `wait`
    /// between polls. `Err(XsError::NoReply)` when the transport gives up
    /// waiting (on the metal: after the transport's timeout; call again).
    pub fn wait<T: Transport>(&mut self, xs: &mut Xenbus<T>) -> Result<Outcome, XsError> {
        loop {
            if let Some(o) = self.poll(xs)? {
                return Ok(o);
            }
            if !xs.transport().wait() {
                return Err(XsError::NoReply);
            }
        }
    }

    /// Waits, however long it takes, for a request the guest carries out:
    /// refused values are logged and skipped, transport timeouts retried.
    /// Returns other errors (a broken ring).
    pub fn wait_for_shutdown<T: Transport>(
        &mut self,
        xs: &mut Xenbus<T>,
    ) -> Result<Shutdown, XsError> {
        loop {
            match self.wait(xs) {
                Ok(Outcome::Shutdown(s)) => return Ok(s),
                Ok(Outcome::Refused { .. }) | Err(XsError::NoReply) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Events of other watches that arrived while polling.
    pub fn take_other_events(&mut self) -> impl Iterator<Item = WatchEvent> + '_ {
        self.others.drain(..)
    }

    /// Removes the watch.
    pub fn stop<T: Transport>(self, xs: &mut Xenbus<T>) -> Result<(), XsError> {
        xs.unwatch(SHUTDOWN_NODE, SHUTDOWN_TOKEN)
    }

    /// Serves `control/shutdown` for good: waits for a request, logs it and
    /// shuts the domain down with its reason. If the ring breaks, logs it
    /// and idles (the toolstack can still destroy the domain).
    pub fn run<T: Transport>(mut self, xs: &mut Xenbus<T>) -> ! {
        match self.wait_for_shutdown(xs) {
            Ok(s) => {
                log::info!("domu: shutdown request '{}', shutting down", s.value);
                crate::xen::shutdown(s.reason)
            }
            Err(e) => {
                log::error!("domu: lost xenstore while waiting for control/shutdown: {e}");
                crate::executor::run()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xenbus::wire::{self, split_strings, Header, Message, MsgType, XsErr};
    use alloc::collections::BTreeMap;
    use alloc::rc::Rc;
    use alloc::string::ToString;
    use alloc::vec;
    use core::cell::RefCell;

    /// A scripted xenstored: a flat map of relative paths, watches that
    /// fire on writes below them, nodes the guest may not write, and
    /// transaction commits that fail with `EAGAIN` a given number of times.
    #[derive(Default)]
    struct Store {
        nodes: BTreeMap<String, Vec<u8>>,
        readonly: Vec<String>,
        watches: Vec<(String, String)>,
        out: VecDeque<Message>,
        eagain: usize,
        log: Vec<(MsgType, String)>,
        fired_by_last: usize,
        /// Writes of the open transaction.
        pending: Vec<(String, Vec<u8>)>,
    }

    impl Store {
        fn fire(&mut self, path: &str) {
            let hits: Vec<String> = self
                .watches
                .iter()
                .filter(|(w, _)| path == w || path.starts_with(&(w.clone() + "/")))
                .map(|(_, t)| t.clone())
                .collect();
            for t in hits {
                self.out.push_back(msg(
                    MsgType::WatchEvent,
                    0,
                    &wire::join_strings(&[path.as_bytes(), t.as_bytes()]),
                ));
            }
        }

        /// What `xl shutdown` does: writes the node (as Dom0).
        fn toolstack_write(&mut self, path: &str, v: &[u8]) {
            self.nodes.insert(path.into(), v.to_vec());
            self.fire(path);
        }

        /// Queues the reply to `m` (and any watch events it fires).
        fn answer(&mut self, m: &Message) {
            let r = self.reply(m);
            // The reply goes before the events the request fired.
            let at = self.out.len() - self.fired_by_last;
            self.out.insert(at, r);
        }

        fn reply(&mut self, m: &Message) -> Message {
            let before = self.out.len();
            let r = self.reply_inner(m);
            self.fired_by_last = self.out.len() - before;
            r
        }

        fn reply_inner(&mut self, m: &Message) -> Message {
            let id = m.header.req_id;
            let ty = m.header.msg_type().unwrap();
            // Every request here starts with a NUL-terminated path.
            let nul = m.payload.iter().position(|&b| b == 0).unwrap_or(0);
            let path = String::from_utf8_lossy(&m.payload[..nul]).into_owned();
            let parts = split_strings(&m.payload).unwrap_or_default();
            self.log.push((ty, path.clone()));
            let err = |e: XsErr| {
                msg(
                    MsgType::Error,
                    id,
                    &wire::join_strings(&[e.name().as_bytes()]),
                )
            };
            match ty {
                MsgType::Read => match self
                    .pending
                    .iter()
                    .rev()
                    .find(|(p, _)| *p == path && m.header.tx_id != 0)
                    .map(|(_, v)| v)
                    .or(self.nodes.get(&path))
                {
                    Some(v) => msg(ty, id, &v.clone()),
                    None => err(XsErr::ENOENT),
                },
                MsgType::Write => {
                    if self.readonly.contains(&path) {
                        return err(XsErr::EACCES);
                    }
                    let v = m.payload[nul + 1..].to_vec();
                    if m.header.tx_id != 0 {
                        self.pending.push((path, v)); // until the commit
                    } else {
                        self.nodes.insert(path.clone(), v);
                        self.fire(&path);
                    }
                    msg(ty, id, b"OK\0")
                }
                MsgType::Watch => {
                    let token = String::from_utf8_lossy(parts[1]).into_owned();
                    self.watches.push((path.clone(), token.clone()));
                    // A new watch fires once at once.
                    self.out.push_back(msg(
                        MsgType::WatchEvent,
                        0,
                        &wire::join_strings(&[path.as_bytes(), token.as_bytes()]),
                    ));
                    msg(ty, id, b"OK\0")
                }
                MsgType::Unwatch => {
                    self.watches.retain(|(w, _)| *w != path);
                    msg(ty, id, b"OK\0")
                }
                MsgType::TransactionStart => msg(ty, id, b"7\0"),
                MsgType::TransactionEnd => {
                    let pending = core::mem::take(&mut self.pending);
                    if m.payload.first() != Some(&b'T') {
                        msg(ty, id, b"OK\0")
                    } else if self.eagain > 0 {
                        self.eagain -= 1;
                        err(XsErr::EAGAIN)
                    } else {
                        for (p, v) in pending {
                            self.nodes.insert(p.clone(), v);
                            self.fire(&p);
                        }
                        msg(ty, id, b"OK\0")
                    }
                }
                _ => err(XsErr::EINVAL),
            }
        }
    }

    fn msg(ty: MsgType, req_id: u32, payload: &[u8]) -> Message {
        Message {
            header: Header {
                ty: ty.raw(),
                req_id,
                tx_id: 0,
                len: payload.len() as u32,
            },
            payload: payload.to_vec(),
        }
    }

    struct Scripted {
        store: Rc<RefCell<Store>>,
        inbox: Vec<u8>,
        waits: usize,
    }

    impl Transport for Scripted {
        fn send(&mut self, data: &[u8]) -> Result<usize, XsError> {
            self.inbox.extend_from_slice(data);
            while let Some(h) = Header::decode(&self.inbox) {
                let len = wire::HEADER_LEN + h.len as usize;
                if self.inbox.len() < len {
                    break;
                }
                let m = Message::decode(&self.inbox[..len]).unwrap();
                self.inbox.drain(..len);
                self.store.borrow_mut().answer(&m);
            }
            Ok(data.len())
        }
        fn recv(&mut self) -> Result<Option<Message>, XsError> {
            Ok(self.store.borrow_mut().out.pop_front())
        }
        fn wait(&mut self) -> bool {
            self.waits += 1;
            false // nothing else will happen: the test drives the store
        }
    }

    fn guest() -> (Xenbus<Scripted>, Rc<RefCell<Store>>) {
        let store = Rc::new(RefCell::new(Store::default()));
        {
            let mut s = store.borrow_mut();
            for (k, v) in [
                ("domid", &b"7"[..]),
                ("name", b"hello"),
                ("control/shutdown", b""),
                ("control/feature-poweroff", b""),
                ("control/feature-reboot", b""),
            ] {
                s.nodes.insert(k.into(), v.to_vec());
            }
        }
        let t = Scripted {
            store: store.clone(),
            inbox: Vec::new(),
            waits: 0,
        };
        (Xenbus::new(t), store)
    }

    fn node(s: &Rc<RefCell<Store>>, p: &str) -> Option<Vec<u8>> {
        s.borrow().nodes.get(p).cloned()
    }

    #[test]
    fn requests_map_to_shutdown_reasons() {
        assert_eq!(
            action(ShutdownRequest::Poweroff),
            Some(ShutdownReason::Poweroff)
        );
        assert_eq!(
            action(ShutdownRequest::Reboot),
            Some(ShutdownReason::Reboot)
        );
        assert_eq!(action(ShutdownRequest::Crash), Some(ShutdownReason::Crash));
        assert_eq!(action(ShutdownRequest::Suspend), None);
        // "halt" is a poweroff.
        assert_eq!(
            ShutdownRequest::parse(b"halt").and_then(action),
            Some(ShutdownReason::Poweroff)
        );
    }

    #[test]
    fn start_publishes_features_and_watches() {
        let (mut xs, s) = guest();
        let w = ShutdownWatcher::start(&mut xs).unwrap();
        assert_eq!(w.published(), ["poweroff", "reboot"]);
        assert_eq!(node(&s, "control/feature-poweroff").unwrap(), b"1");
        assert_eq!(node(&s, "control/feature-reboot").unwrap(), b"1");
        // Suspend is not supported: not advertised.
        assert_eq!(node(&s, "control/feature-suspend"), None);
        assert_eq!(
            s.borrow().watches,
            [(
                "control/shutdown".to_string(),
                "control-shutdown".to_string()
            )]
        );
    }

    #[test]
    fn features_are_best_effort() {
        let (mut xs, s) = guest();
        s.borrow_mut().readonly = vec!["control/feature-reboot".into()];
        let w = ShutdownWatcher::start(&mut xs).unwrap();
        assert_eq!(w.published(), ["poweroff"]);
        assert_eq!(node(&s, "control/feature-reboot").unwrap(), b"");
    }

    #[test]
    fn each_request_is_acknowledged_and_mapped() {
        let (mut xs, s) = guest();
        let mut w = ShutdownWatcher::start(&mut xs).unwrap();
        // The watch's first firing: nothing asked yet.
        assert_eq!(w.poll(&mut xs).unwrap(), None);
        assert_eq!(w.poll(&mut xs).unwrap(), None);
        for (value, request, reason) in [
            (
                "poweroff",
                ShutdownRequest::Poweroff,
                ShutdownReason::Poweroff,
            ),
            ("halt", ShutdownRequest::Poweroff, ShutdownReason::Poweroff),
            ("reboot", ShutdownRequest::Reboot, ShutdownReason::Reboot),
            ("crash", ShutdownRequest::Crash, ShutdownReason::Crash),
        ] {
            s.borrow_mut()
                .toolstack_write("control/shutdown", value.as_bytes());
            assert_eq!(
                w.poll(&mut xs).unwrap(),
                Some(Outcome::Shutdown(Shutdown {
                    request,
                    value: value.into(),
                    reason
                }))
            );
            // Acknowledged: the toolstack sees "".
            assert_eq!(node(&s, "control/shutdown").unwrap(), b"");
            // The acknowledgement fires the watch again: nothing to do.
            assert_eq!(w.poll(&mut xs).unwrap(), None);
        }
        // Read and acknowledged in one transaction.
        let log = &s.borrow().log;
        let i = log
            .iter()
            .rposition(|(t, p)| *t == MsgType::Write && p == "control/shutdown")
            .unwrap();
        assert_eq!(log[i - 2].0, MsgType::TransactionStart);
        assert_eq!(log[i - 1], (MsgType::Read, "control/shutdown".into()));
        assert_eq!(log[i + 1].0, MsgType::TransactionEnd);
    }

    #[test]
    fn suspend_and_garbage_are_left_unacknowledged() {
        let (mut xs, s) = guest();
        let mut w = ShutdownWatcher::start(&mut xs).unwrap();
        assert_eq!(w.poll(&mut xs).unwrap(), None);
        for v in ["suspend", "explode", "POWEROFF"] {
            s.borrow_mut()
                .toolstack_write("control/shutdown", v.as_bytes());
            assert_eq!(
                w.poll(&mut xs).unwrap(),
                Some(Outcome::Refused { value: v.into() })
            );
            assert_eq!(node(&s, "control/shutdown").unwrap(), v.as_bytes());
            // Not re-reported until the node changes again.
            assert_eq!(w.poll(&mut xs).unwrap(), None);
        }
        // wait_for_shutdown skips a refused value and takes the next request.
        s.borrow_mut()
            .toolstack_write("control/shutdown", b"suspend");
        s.borrow_mut()
            .toolstack_write("control/shutdown", b"reboot");
        let got = w.wait_for_shutdown(&mut xs).unwrap();
        assert_eq!(got.reason, ShutdownReason::Reboot);
    }

    #[test]
    fn suspend_is_taken_once_accepted() {
        let (mut xs, s) = guest();
        let mut w = ShutdownWatcher::start(&mut xs).unwrap();
        w.accept_suspend(&mut xs);
        assert_eq!(w.published(), ["poweroff", "reboot", "suspend"]);
        assert_eq!(node(&s, "control/feature-suspend").unwrap(), b"1");
        assert_eq!(w.poll(&mut xs).unwrap(), None);
        s.borrow_mut()
            .toolstack_write("control/shutdown", b"suspend");
        assert_eq!(
            w.poll(&mut xs).unwrap(),
            Some(Outcome::Shutdown(Shutdown {
                request: ShutdownRequest::Suspend,
                value: "suspend".into(),
                reason: ShutdownReason::Suspend
            }))
        );
        // Acknowledged, as `xl save` waits for.
        assert_eq!(node(&s, "control/shutdown").unwrap(), b"");
        // The other requests still work.
        s.borrow_mut()
            .toolstack_write("control/shutdown", b"poweroff");
        assert!(matches!(
            w.poll(&mut xs).unwrap(),
            Some(Outcome::Shutdown(Shutdown {
                reason: ShutdownReason::Poweroff,
                ..
            }))
        ));
    }

    #[test]
    fn a_request_made_before_the_watch_is_seen() {
        let (mut xs, s) = guest();
        s.borrow_mut()
            .nodes
            .insert("control/shutdown".into(), b"poweroff".to_vec());
        let mut w = ShutdownWatcher::start(&mut xs).unwrap();
        match w.wait(&mut xs).unwrap() {
            Outcome::Shutdown(sd) => assert_eq!(sd.reason, ShutdownReason::Poweroff),
            o => panic!("{o:?}"),
        }
        assert_eq!(node(&s, "control/shutdown").unwrap(), b"");
    }

    #[test]
    fn conflicting_commits_are_retried() {
        let (mut xs, s) = guest();
        let mut w = ShutdownWatcher::start(&mut xs).unwrap();
        assert_eq!(w.poll(&mut xs).unwrap(), None);
        s.borrow_mut().eagain = 2;
        s.borrow_mut()
            .toolstack_write("control/shutdown", b"reboot");
        assert!(matches!(
            w.poll(&mut xs).unwrap(),
            Some(Outcome::Shutdown(Shutdown {
                request: ShutdownRequest::Reboot,
                ..
            }))
        ));
        let starts = s
            .borrow()
            .log
            .iter()
            .filter(|(t, _)| *t == MsgType::TransactionStart)
            .count();
        assert_eq!(starts, 4); // the first (empty) check, then 3 tries
    }

    #[test]
    fn other_watch_events_are_kept_and_waits_give_up() {
        let (mut xs, s) = guest();
        let mut w = ShutdownWatcher::start(&mut xs).unwrap();
        xs.watch("data", "mine").unwrap();
        assert_eq!(w.wait(&mut xs), Err(XsError::NoReply));
        s.borrow_mut().toolstack_write("data/x", b"1");
        assert_eq!(w.poll(&mut xs).unwrap(), None);
        let others: Vec<WatchEvent> = w.take_other_events().collect();
        assert_eq!(others.len(), 2); // the watch's first firing, then data/x
        assert_eq!(others[1].path, "data/x");
        w.stop(&mut xs).unwrap();
        assert!(s.borrow().watches.iter().all(|(p, _)| p == "data"));
    }

    #[test]
    fn identity_from_the_home_directory() {
        let (mut xs, s) = guest();
        assert_eq!(
            identity(&mut xs),
            Identity {
                domid: Some(7),
                name: Some("hello".into())
            }
        );
        s.borrow_mut().nodes.clear();
        assert_eq!(identity(&mut xs), Identity::default());
    }

    #[test]
    fn connect_refuses_dom0_and_before_init() {
        let raw = crate::start_info::tests::sample_raw();
        let dom0 = StartInfo::from_raw(&raw, 0);
        assert!(!is_domu(&dom0));
        assert_eq!(connect(&dom0).err(), Some(ConnectError::InitialDomain));
        let mut raw = raw;
        raw.flags = 0;
        raw.store_mfn = 0x42;
        let domu = StartInfo::from_raw(&raw, 0);
        assert!(is_domu(&domu));
        assert_eq!(connect(&domu).err(), Some(ConnectError::NotInitialised));
    }
}
