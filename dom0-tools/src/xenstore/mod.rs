//! # xenstored — Dom0's xenstore daemon, as a state machine
//!
//! Owns the store ([`store`]), the connections (Dom0's own in-process one,
//! further local ones, and one per introduced domain over its ring page),
//! watches, transactions, quotas and the wire protocol of
//! `docs/misc/xenstore.txt`. No I/O of its own: the main loop
//!
//! - calls [`Xenstored::handle`] with whole messages from local clients and
//!   collects their replies with [`Xenstored::take_output`];
//! - calls [`Xenstored::poll`] when a domain's store event channel fires,
//!   which reads requests from that domain's ring, answers them, writes
//!   queued replies and watch events to every ring with room, and returns
//!   the ports to notify ([`transport`]);
//! - maps ring pages and binds event channels through a [`Host`] when a
//!   domain is introduced.
//!
//! [`layout`] holds the initial contents, the `/local/domain/<id>`
//! entries the domain builder writes, and Dom0's direct accessors
//! ([`Xenstored::read`], [`Xenstored::write`], ...); [`local`] lets Dom0
//! code use pv-guest-lib's `Xenbus` client over an in-process connection.
//! After changing the store directly, call [`Xenstored::flush_output`] to
//! push the watch events it caused into the rings.
//!
//! Semantics follow C xenstored (4.17): errors by name (`ENOENT`, `EACCES`,
//! ...), unknown types get `ENOSYS`, quotas (entries per domain, node size,
//! watches, transactions, permissions per node, path length) give `ENOSPC`
//! (`E2BIG` for watches); Dom0 is privileged. A domain that breaks the
//! protocol (bad ring indexes, oversized messages, an event backlog it never
//! drains) loses only its own connection; it can ask for a reset through the
//! page's `connection` field (`XENSTORE_RECONNECT`). Nothing here panics on
//! any input.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use pv_guest_lib::xenbus::page::SharedPage;
use pv_guest_lib::xenbus::wire::{
    decimal, encode, join_strings, parse_u16, parse_u32, parse_u64, split_strings, Header, MsgType,
    Perm, XsErr, HEADER_LEN, XENSTORE_PAYLOAD_MAX, XENSTORE_REL_PATH_MAX,
};

pub mod layout;
pub mod local;
pub mod store;
pub mod transport;

pub use local::LocalTransport;
pub use transport::{Notify, PollResult};

use store::{basename, domain_path, is_child, join, parent, rights, valid_path, Rights};
pub use store::{DomId, Node, Store};

/// `DOMID_SELF`.
pub const DOMID_SELF: DomId = 0x7ff0;
/// First reserved domain id (`DOMID_FIRST_RESERVED`).
pub const DOMID_FIRST_RESERVED: DomId = 0x7ff0;
/// Special watch fired when a domain is introduced.
pub const INTRODUCE_DOMAIN: &str = "@introduceDomain";
/// Special watch fired when a domain is released.
pub const RELEASE_DOMAIN: &str = "@releaseDomain";

/// A connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u32);

/// Dom0's own in-process connection, always present.
pub const DOM0_CONN: ConnId = ConnId(0);

/// Limits (C xenstored's defaults, `xenstored -h`). Dom0 is exempt from the
/// per-domain ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quotas {
    /// Nodes a domain may own (`-E`, 1000).
    pub entries_per_domain: usize,
    /// Bytes of one node's value (`-S`, 2048).
    pub max_node_size: usize,
    /// Watches per connection (`-W`, 128).
    pub watches_per_domain: usize,
    /// Open transactions per connection (`-t`, 10).
    pub transactions: usize,
    /// Permission entries per node (`-A`, 5).
    pub perms_per_node: usize,
    /// Nodes one transaction may touch (`-T`, 1024).
    pub transaction_nodes: usize,
    /// Path length below `/local/domain/<id>/` (`-M`, 2048).
    pub max_path_len: usize,
    /// Replies queued for a connection before xenstored stops reading its
    /// requests (`-Q`, 20).
    pub outstanding_requests: usize,
    /// Bytes queued for a ring connection (replies and events) before it is
    /// cut off as not draining its ring.
    pub max_output_bytes: usize,
    /// Bytes (paths and values) a connection's open transactions may hold
    /// (C xenstored bounds this with its per-domain memory quota).
    pub transaction_memory: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            entries_per_domain: 1000,
            max_node_size: 2048,
            watches_per_domain: 128,
            transactions: 10,
            perms_per_node: 5,
            transaction_nodes: 1024,
            max_path_len: XENSTORE_REL_PATH_MAX,
            outstanding_requests: 20,
            max_output_bytes: 128 * 1024,
            transaction_memory: 512 * 1024,
        }
    }
}

/// What xenstored needs from Dom0's kernel to serve a domain.
pub trait Host {
    /// The mapped ring page; dropping it (on release) unmaps it.
    type Page: SharedPage;
    /// Maps the ring page of `domid` at machine frame `mfn`.
    fn map_ring(&mut self, domid: DomId, mfn: u64) -> Option<Self::Page>;
    /// Binds to `domid`'s unbound event channel `remote_port`; returns the
    /// local port.
    fn bind(&mut self, domid: DomId, remote_port: u32) -> Option<u32>;
    /// Closes a port [`Host::bind`] returned.
    fn unbind(&mut self, local_port: u32);
}

/// A [`Host`] over in-memory pages: rings of domains the tests (or an
/// in-process guest) set up with [`MemHost::add_ring`]; local port = remote
/// port + 1000.
#[derive(Default)]
pub struct MemHost {
    pages: BTreeMap<(DomId, u64), pv_guest_lib::xenbus::page::MemPage>,
    /// Ports unbound so far.
    pub unbound: Vec<u32>,
}

impl MemHost {
    /// Registers the ring page `domid` has at `mfn`.
    pub fn add_ring(&mut self, domid: DomId, mfn: u64, page: pv_guest_lib::xenbus::page::MemPage) {
        self.pages.insert((domid, mfn), page);
    }
}

impl Host for MemHost {
    type Page = pv_guest_lib::xenbus::page::MemPage;
    fn map_ring(&mut self, domid: DomId, mfn: u64) -> Option<Self::Page> {
        self.pages.get(&(domid, mfn)).cloned()
    }
    fn bind(&mut self, _domid: DomId, remote_port: u32) -> Option<u32> {
        remote_port.checked_add(1000)
    }
    fn unbind(&mut self, local_port: u32) {
        self.unbound.push(local_port);
    }
}

#[derive(Clone, Debug)]
struct Watch {
    /// Absolute path or `@special`.
    path: String,
    /// Whether the client gave it relative to its home.
    relative: bool,
    token: String,
}

#[derive(Clone, Debug)]
struct Change {
    path: String,
    perms: Vec<Perm>,
    /// The permissions before a `SET_PERMS`: who could read before hears
    /// about losing access.
    old_perms: Option<Vec<Perm>>,
    /// A removal: watches below `path` fire too.
    recursive: bool,
}

impl Tx {
    /// Memory held: paths and values of what it wrote, paths it read.
    fn bytes(&self) -> usize {
        let written: usize = self
            .overlay
            .iter()
            .map(|(p, n)| p.len() + n.as_ref().map_or(0, |n| n.value.len()))
            .sum();
        written + self.accessed.keys().map(String::len).sum::<usize>()
    }
}

#[derive(Default, Debug)]
struct Tx {
    /// Nodes written (`Some`) or removed (`None`) in the transaction.
    overlay: BTreeMap<String, Option<Node>>,
    /// Generation (`None`: absent) of each committed node first touched.
    accessed: BTreeMap<String, Option<u64>>,
    changes: Vec<Change>,
    /// Entry-count changes per owner.
    delta: BTreeMap<DomId, isize>,
    /// A request in it broke a transaction quota: committing it fails
    /// (C xenstored's `trans->fail`, answered with `ENOMEM`).
    failed: bool,
}

pub(crate) struct Ring<P> {
    page: P,
    mfn: u64,
    port: u32,
    /// Our copies of the indexes we own; the page's are the guest's view.
    req_cons: u32,
    rsp_prod: u32,
}

pub(crate) struct Out {
    bytes: Vec<u8>,
    reply: bool,
}

pub(crate) struct Conn<P> {
    domid: DomId,
    ring: Option<Ring<P>>,
    target: Option<DomId>,
    watches: Vec<Watch>,
    txs: BTreeMap<u32, Tx>,
    out: VecDeque<Out>,
    out_bytes: usize,
    /// Replies (not events) in `out`.
    replies: usize,
    /// Bytes of `out.front()` already in the ring.
    out_off: usize,
    inbuf: Vec<u8>,
    /// `XENSTORE_ERROR_*` once cut off.
    broken: Option<u32>,
    dropped_events: u64,
}

impl<P> Conn<P> {
    fn new(domid: DomId, ring: Option<Ring<P>>) -> Self {
        Conn {
            domid,
            ring,
            target: None,
            watches: Vec::new(),
            txs: BTreeMap::new(),
            out: VecDeque::new(),
            out_bytes: 0,
            replies: 0,
            out_off: 0,
            inbuf: Vec::new(),
            broken: None,
            dropped_events: 0,
        }
    }

    fn privileged(&self) -> bool {
        self.domid == 0
    }

    fn pending_replies(&self) -> usize {
        self.replies
    }

    fn push_out(&mut self, o: Out) {
        self.out_bytes += o.bytes.len();
        self.replies += usize::from(o.reply);
        self.out.push_back(o);
    }

    fn pop_out(&mut self) -> Option<Out> {
        let o = self.out.pop_front()?;
        self.out_bytes = self.out_bytes.saturating_sub(o.bytes.len());
        self.replies = self.replies.saturating_sub(usize::from(o.reply));
        Some(o)
    }

    /// Drops watches, transactions and buffers (reset, reconnect, cut-off).
    fn reset(&mut self) {
        self.watches.clear();
        self.txs.clear();
        self.out.clear();
        self.replies = 0;
        self.out_bytes = 0;
        self.out_off = 0;
        self.inbuf.clear();
    }
}

/// Connection statistics, for `xl`/debugging and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    /// The domain at the other end.
    pub domid: DomId,
    /// Served over a ring page (vs in-process).
    pub ring: bool,
    /// `Some(XENSTORE_ERROR_*)` once cut off.
    pub broken: Option<u32>,
    /// Watches set.
    pub watches: usize,
    /// Open transactions.
    pub transactions: usize,
    /// Messages queued for it.
    pub queued: usize,
    /// Bytes queued for it.
    pub queued_bytes: usize,
    /// Watch events dropped (in-process connections over their limit).
    pub dropped_events: u64,
}

/// The daemon.
pub struct Xenstored<H: Host> {
    store: Store,
    conns: BTreeMap<ConnId, Conn<H::Page>>,
    domains: BTreeMap<DomId, ConnId>,
    next_conn: u32,
    next_tx: u32,
    quotas: Quotas,
    host: H,
    log: VecDeque<String>,
    logging: bool,
    /// Connections whose output grew during the current request.
    touched: Vec<ConnId>,
    /// Domains whose shutdown already fired `@releaseDomain` (until
    /// `XS_RESUME`).
    shutdown_seen: Vec<DomId>,
    /// Permissions of `@introduceDomain` and `@releaseDomain`.
    special: [Vec<Perm>; 2],
}

type Reply = Vec<u8>;

fn ok() -> Result<Reply, XsErr> {
    Ok(b"OK\0".to_vec())
}

/// The single NUL-terminated string a request carries (`<path>|`).
fn one_arg(payload: &[u8]) -> Result<&str, XsErr> {
    let body = payload.strip_suffix(&[0]).ok_or(XsErr::EINVAL)?;
    if body.contains(&0) {
        return Err(XsErr::EINVAL);
    }
    core::str::from_utf8(body).map_err(|_| XsErr::EINVAL)
}

/// At least `n` NUL-terminated strings (extra reserved ones are allowed).
fn args(payload: &[u8], n: usize) -> Result<Vec<&[u8]>, XsErr> {
    let v = split_strings(payload).ok_or(XsErr::EINVAL)?;
    if v.len() < n {
        return Err(XsErr::EINVAL);
    }
    Ok(v)
}

fn text(b: &[u8]) -> Result<&str, XsErr> {
    core::str::from_utf8(b).map_err(|_| XsErr::EINVAL)
}

/// Reads and writes either the committed store or a transaction's view.
struct View<'a> {
    store: &'a mut Store,
    tx: Option<&'a mut Tx>,
    changes: Vec<Change>,
}

impl View<'_> {
    fn get(&mut self, path: &str) -> Option<Node> {
        if let Some(tx) = self.tx.as_deref_mut() {
            if let Some(o) = tx.overlay.get(path) {
                return o.clone();
            }
            let n = self.store.get(path);
            tx.accessed
                .entry(String::from(path))
                .or_insert(n.map(|n| n.gen));
            return n.cloned();
        }
        self.store.get(path).cloned()
    }

    fn touched(&self) -> usize {
        self.tx
            .as_deref()
            .map_or(0, |t| t.overlay.len() + t.accessed.len())
    }

    fn entries(&self, domid: DomId) -> usize {
        let base = self.store.entries(domid) as isize;
        let d = self
            .tx
            .as_deref()
            .and_then(|t| t.delta.get(&domid).copied())
            .unwrap_or(0);
        (base + d).max(0) as usize
    }

    fn put(&mut self, path: &str, node: Node) {
        let old_owner = self.get(path).map(|n| n.owner());
        match self.tx.as_deref_mut() {
            Some(tx) => {
                if let Some(o) = old_owner {
                    *tx.delta.entry(o).or_insert(0) -= 1;
                }
                *tx.delta.entry(node.owner()).or_insert(0) += 1;
                tx.overlay.insert(String::from(path), Some(node));
            }
            None => self.store.insert(path, node),
        }
    }

    fn remove(&mut self, path: &str) {
        let old_owner = self.get(path).map(|n| n.owner());
        match self.tx.as_deref_mut() {
            Some(tx) => {
                if let Some(o) = old_owner {
                    *tx.delta.entry(o).or_insert(0) -= 1;
                }
                tx.overlay.insert(String::from(path), None);
            }
            None => {
                self.store.remove(path);
            }
        }
    }

    fn changed(&mut self, path: &str, perms: Vec<Perm>, recursive: bool) {
        self.changes.push(Change {
            path: String::from(path),
            perms,
            old_perms: None,
            recursive,
        });
    }
}

/// Who is asking.
#[derive(Clone, Copy)]
struct Caller {
    domid: DomId,
    privileged: bool,
    target: Option<DomId>,
}

impl Caller {
    fn rights(&self, node: &Node) -> Rights {
        rights(&node.perms, self.domid, self.privileged, self.target)
    }
}

impl<H: Host> Xenstored<H> {
    /// A daemon with the initial store ([`layout::init_store`]) and Dom0's
    /// connection ([`DOM0_CONN`]).
    pub fn new(host: H, quotas: Quotas) -> Self {
        let mut xs = Xenstored {
            store: Store::new(),
            conns: BTreeMap::new(),
            domains: BTreeMap::new(),
            next_conn: 1,
            next_tx: 1,
            quotas,
            host,
            log: VecDeque::new(),
            logging: true,
            touched: Vec::new(),
            shutdown_seen: Vec::new(),
            special: [
                vec![Perm::new(0, pv_guest_lib::xenbus::Access::None)],
                vec![Perm::new(0, pv_guest_lib::xenbus::Access::None)],
            ],
        };
        xs.conns.insert(DOM0_CONN, Conn::new(0, None));
        xs.domains.insert(0, DOM0_CONN);
        layout::init_store(&mut xs.store);
        xs
    }

    /// The committed store (read-only).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The quotas in force.
    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    /// The host.
    pub fn host(&mut self) -> &mut H {
        &mut self.host
    }

    /// Lines logged by `XS_CONTROL print` and by xenstored itself (the last
    /// 64).
    pub fn log(&self) -> impl Iterator<Item = &str> {
        self.log.iter().map(String::as_str)
    }

    fn logln(&mut self, s: String) {
        if self.logging {
            if self.log.len() >= 64 {
                self.log.pop_front();
            }
            self.log.push_back(s);
        }
    }

    /// A further in-process connection for `domid` (Dom0's tools and
    /// back-ends use 0; tests use others to play a guest without a ring).
    pub fn connect_local(&mut self, domid: DomId) -> ConnId {
        let id = self.alloc_conn();
        self.conns.insert(id, Conn::new(domid, None));
        id
    }

    /// Closes an in-process connection (not [`DOM0_CONN`], not a domain's
    /// ring: those go with [`Xenstored::release`]).
    pub fn disconnect(&mut self, conn: ConnId) {
        if conn != DOM0_CONN && self.conns.get(&conn).is_some_and(|c| c.ring.is_none()) {
            self.conns.remove(&conn);
        }
    }

    fn alloc_conn(&mut self) -> ConnId {
        loop {
            let id = ConnId(self.next_conn);
            self.next_conn = self.next_conn.wrapping_add(1).max(1);
            if !self.conns.contains_key(&id) {
                return id;
            }
        }
    }

    /// The ring connection of `domid`, if introduced.
    pub fn domain_conn(&self, domid: DomId) -> Option<ConnId> {
        self.domains.get(&domid).copied()
    }

    /// Every connection.
    pub fn conn_ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.conns.keys().copied()
    }

    /// Statistics of `conn`.
    pub fn conn_info(&self, conn: ConnId) -> Option<ConnInfo> {
        let c = self.conns.get(&conn)?;
        Some(ConnInfo {
            domid: c.domid,
            ring: c.ring.is_some(),
            broken: c.broken,
            watches: c.watches.len(),
            transactions: c.txs.len(),
            queued: c.out.len(),
            queued_bytes: c.out_bytes,
            dropped_events: c.dropped_events,
        })
    }

    /// The next queued message for `conn` (replies and watch events of
    /// in-process connections; ring connections are drained by
    /// [`Xenstored::poll`]).
    pub fn take_output(&mut self, conn: ConnId) -> Option<Vec<u8>> {
        let c = self.conns.get_mut(&conn)?;
        if c.out_off != 0 {
            return None; // partly in a ring already
        }
        let o = c.pop_out()?;
        Some(o.bytes)
    }

    /// Handles one whole message (header and payload) from `conn`: the
    /// reply, then any watch events, are queued on the connections they are
    /// for. Returns those connections.
    pub fn handle(&mut self, conn: ConnId, msg: &[u8]) -> Vec<ConnId> {
        self.touched.clear();
        let Some(c) = self.conns.get(&conn) else {
            return Vec::new();
        };
        if c.broken.is_some() {
            return Vec::new();
        }
        let Some(h) = Header::decode(msg) else {
            self.queue_error(conn, Header::default(), XsErr::EINVAL);
            return core::mem::take(&mut self.touched);
        };
        let payload = &msg[HEADER_LEN..];
        if h.len as usize > XENSTORE_PAYLOAD_MAX {
            self.queue_error(conn, h, XsErr::E2BIG);
        } else if payload.len() != h.len as usize {
            self.queue_error(conn, h, XsErr::EINVAL);
        } else {
            let mut after = Vec::new();
            match self.dispatch(conn, &h, payload, &mut after) {
                Ok(reply) => {
                    let ty = h.msg_type().unwrap_or(MsgType::Error);
                    let bytes = encode(ty, h.req_id, h.tx_id, &reply);
                    self.queue(conn, bytes, true);
                }
                Err(e) => self.queue_error(conn, h, e),
            }
            for (to, bytes) in after {
                self.queue(to, bytes, false);
            }
        }
        core::mem::take(&mut self.touched)
    }

    fn queue_error(&mut self, conn: ConnId, h: Header, e: XsErr) {
        let bytes = encode(
            MsgType::Error,
            h.req_id,
            h.tx_id,
            &join_strings(&[e.name().as_bytes()]),
        );
        self.queue(conn, bytes, true);
    }

    fn queue(&mut self, conn: ConnId, bytes: Vec<u8>, reply: bool) {
        let limit = self.quotas.max_output_bytes;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.broken.is_some() {
            return;
        }
        if !reply && c.out_bytes + bytes.len() > limit {
            if c.ring.is_some() {
                // A domain that never drains its ring: cut it off.
                self.cut_off(conn, pv_guest_lib::abi::io::xs_wire::XENSTORE_ERROR_COMM);
            } else {
                c.dropped_events += 1;
            }
            return;
        }
        c.push_out(Out { bytes, reply });
        if !self.touched.contains(&conn) {
            self.touched.push(conn);
        }
    }

    /// Cuts `conn` off (its ring only): drops its watches, transactions and
    /// queues, records `error` in its page. The domain stays introduced
    /// and may reconnect.
    fn cut_off(&mut self, conn: ConnId, error: u32) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.reset();
        c.broken = Some(error);
        let domid = c.domid;
        if let Some(r) = &c.ring {
            r.page.store_u32(pv_guest_lib::xenbus::page::ERROR, error);
        }
        let mut s = String::from("cut off domain ");
        s.push_str(&decimal(domid.into()));
        self.logln(s);
    }

    fn caller(&self, conn: ConnId) -> Option<Caller> {
        let c = self.conns.get(&conn)?;
        Some(Caller {
            domid: c.domid,
            privileged: c.privileged(),
            target: c.target,
        })
    }

    /// Turns a client path into an absolute one (relative paths are below
    /// `/local/domain/<domid>`), checking its syntax. Returns the path and
    /// whether it was relative.
    fn canonical(&self, domid: DomId, raw: &str, special: bool) -> Result<(String, bool), XsErr> {
        if let Some(name) = raw.strip_prefix('@') {
            if !special || name.is_empty() || raw.len() > XENSTORE_REL_PATH_MAX {
                return Err(XsErr::EINVAL);
            }
            valid_path(&join("/", name), self.quotas.max_path_len)?;
            return Ok((String::from(raw), false));
        }
        let (abs, rel) = if raw.starts_with('/') {
            (String::from(raw), false)
        } else {
            if raw.is_empty() {
                return Err(XsErr::EINVAL);
            }
            (join(&domain_path(domid), raw), true)
        };
        valid_path(&abs, self.quotas.max_path_len)?;
        Ok((abs, rel))
    }

    fn dispatch(
        &mut self,
        conn: ConnId,
        h: &Header,
        p: &[u8],
        after: &mut Vec<(ConnId, Vec<u8>)>,
    ) -> Result<Reply, XsErr> {
        let ty = h.msg_type().ok_or(XsErr::ENOSYS)?;
        let caller = self.caller(conn).ok_or(XsErr::EINVAL)?;
        // As C xenstored: privileged-only types first, then the
        // transaction id (ignored by WATCH/UNWATCH) must exist.
        let privileged_only = matches!(
            ty,
            MsgType::Control
                | MsgType::Introduce
                | MsgType::Release
                | MsgType::IsDomainIntroduced
                | MsgType::Resume
                | MsgType::SetTarget
        );
        if privileged_only && !caller.privileged {
            return Err(XsErr::EACCES);
        }
        let known_tx = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.txs.contains_key(&h.tx_id));
        if h.tx_id != 0 && !matches!(ty, MsgType::Watch | MsgType::Unwatch) && !known_tx {
            return Err(XsErr::ENOENT);
        }
        match ty {
            MsgType::Read
            | MsgType::Write
            | MsgType::Mkdir
            | MsgType::Rm
            | MsgType::Directory
            | MsgType::DirectoryPart
            | MsgType::GetPerms
            | MsgType::SetPerms => {
                if p.first() == Some(&b'@') {
                    return self.special_perms_op(caller, ty, p);
                }
                self.store_op(conn, caller, ty, h.tx_id, p, after)
            }
            MsgType::Watch => self.watch(conn, caller, p, after),
            MsgType::Unwatch => {
                let a = args(p, 2)?;
                let (path, _) = self.canonical(caller.domid, text(a[0])?, true)?;
                let token = text(a[1])?;
                let c = self.conns.get_mut(&conn).ok_or(XsErr::EINVAL)?;
                let i = c
                    .watches
                    .iter()
                    .position(|w| w.path == path && w.token == token)
                    .ok_or(XsErr::ENOENT)?;
                c.watches.remove(i);
                ok()
            }
            MsgType::ResetWatches => {
                let c = self.conns.get_mut(&conn).ok_or(XsErr::EINVAL)?;
                c.watches.clear();
                c.txs.clear();
                ok()
            }
            MsgType::TransactionStart => {
                // The payload is reserved (clients send ""); C xenstored
                // ignores it.
                let _ = p;
                if h.tx_id != 0 {
                    return Err(XsErr::EBUSY);
                }
                let limit = self.quotas.transactions;
                let n = self.conns.get(&conn).map_or(0, |c| c.txs.len());
                if !caller.privileged && n >= limit {
                    return Err(XsErr::ENOSPC);
                }
                let id = self.alloc_tx();
                let c = self.conns.get_mut(&conn).ok_or(XsErr::EINVAL)?;
                c.txs.insert(id, Tx::default());
                Ok(join_strings(&[decimal(id.into()).as_bytes()]))
            }
            MsgType::TransactionEnd => {
                let commit = match one_arg(p)? {
                    "T" => true,
                    "F" => false,
                    _ => return Err(XsErr::EINVAL),
                };
                let c = self.conns.get_mut(&conn).ok_or(XsErr::EINVAL)?;
                let tx = c.txs.remove(&h.tx_id).ok_or(XsErr::ENOENT)?;
                if commit && tx.failed {
                    return Err(XsErr::ENOMEM);
                }
                if commit {
                    self.commit(caller, tx, after)?;
                }
                ok()
            }
            MsgType::GetDomainPath => {
                let d = parse_u16(one_arg(p)?.as_bytes()).ok_or(XsErr::EINVAL)?;
                Ok(join_strings(&[domain_path(d).as_bytes()]))
            }
            MsgType::IsDomainIntroduced => {
                let d = parse_u16(one_arg(p)?.as_bytes()).ok_or(XsErr::EINVAL)?;
                let yes = d == DOMID_SELF || self.domains.contains_key(&d);
                Ok(if yes {
                    b"T\0".to_vec()
                } else {
                    b"F\0".to_vec()
                })
            }
            MsgType::Introduce => {
                if !caller.privileged {
                    return Err(XsErr::EACCES);
                }
                let a = args(p, 3)?;
                let domid = parse_u16(a[0]).ok_or(XsErr::EINVAL)?;
                let mfn = parse_u64(a[1]).ok_or(XsErr::EINVAL)?;
                let port = parse_u32(a[2]).ok_or(XsErr::EINVAL)?;
                self.introduce_inner(domid, mfn, port, after)
                    .map(|_| b"OK\0".to_vec())
            }
            MsgType::Release => {
                if !caller.privileged {
                    return Err(XsErr::EACCES);
                }
                let d = parse_u16(one_arg(p)?.as_bytes()).ok_or(XsErr::EINVAL)?;
                self.release_inner(d, after)?;
                ok()
            }
            MsgType::Resume => {
                if !caller.privileged {
                    return Err(XsErr::EACCES);
                }
                let d = parse_u16(one_arg(p)?.as_bytes()).ok_or(XsErr::EINVAL)?;
                if d == 0 || !self.domains.contains_key(&d) {
                    return Err(XsErr::ENOENT);
                }
                self.shutdown_seen.retain(|&x| x != d);
                ok()
            }
            MsgType::SetTarget => {
                if !caller.privileged {
                    return Err(XsErr::EACCES);
                }
                let a = args(p, 2)?;
                let d = parse_u16(a[0]).ok_or(XsErr::EINVAL)?;
                let t = parse_u16(a[1]).ok_or(XsErr::EINVAL)?;
                let cid = self.domains.get(&d).copied().ok_or(XsErr::ENOENT)?;
                if d == 0 {
                    return Err(XsErr::EINVAL);
                }
                if let Some(c) = self.conns.get_mut(&cid) {
                    c.target = Some(t);
                }
                ok()
            }
            MsgType::Control => {
                if !caller.privileged {
                    return Err(XsErr::EACCES);
                }
                self.control(p)
            }
            MsgType::WatchEvent | MsgType::Error | MsgType::Invalid => Err(XsErr::ENOSYS),
        }
    }

    fn special_perms(&self, name: &str) -> Option<&[Perm]> {
        match name {
            INTRODUCE_DOMAIN => Some(&self.special[0]),
            RELEASE_DOMAIN => Some(&self.special[1]),
            _ => None,
        }
    }

    /// `GET_PERMS`/`SET_PERMS` on `@introduceDomain`/`@releaseDomain`,
    /// whose permissions decide who receives those events.
    fn special_perms_op(&mut self, caller: Caller, ty: MsgType, p: &[u8]) -> Result<Reply, XsErr> {
        let a = split_strings(p).ok_or(XsErr::EINVAL)?;
        let name = text(a.first().ok_or(XsErr::EINVAL)?)?;
        let i = match name {
            INTRODUCE_DOMAIN => 0,
            RELEASE_DOMAIN => 1,
            _ => return Err(XsErr::ENOENT),
        };
        let r = rights(
            &self.special[i],
            caller.domid,
            caller.privileged,
            caller.target,
        );
        if ty == MsgType::GetPerms {
            if a.len() != 1 {
                return Err(XsErr::EINVAL);
            }
            let strs: Vec<String> = self.special[i].iter().map(|p| p.to_wire()).collect();
            let refs: Vec<&[u8]> = strs.iter().map(|s| s.as_bytes()).collect();
            return Ok(join_strings(&refs));
        }
        if a.len() < 2 {
            return Err(XsErr::EINVAL);
        }
        if !caller.privileged && a.len() - 1 > self.quotas.perms_per_node {
            return Err(XsErr::ENOSPC);
        }
        let perms = a[1..]
            .iter()
            .map(|s| Perm::parse(s).ok_or(XsErr::EINVAL))
            .collect::<Result<Vec<_>, _>>()?;
        if !(r.owner && r.write) {
            return Err(XsErr::EACCES);
        }
        self.special[i] = perms;
        ok()
    }

    fn alloc_tx(&mut self) -> u32 {
        loop {
            let id = self.next_tx;
            self.next_tx = self.next_tx.wrapping_add(1).max(1);
            if !self.conns.values().any(|c| c.txs.contains_key(&id)) {
                return id;
            }
        }
    }

    fn control(&mut self, p: &[u8]) -> Result<Reply, XsErr> {
        let a = args(p, 1)?;
        let cmd = text(a[0])?;
        match cmd {
            "help" => Ok(join_strings(&[
                b"check\nhelp\nlog\nmemreport\nprint\nquota\n",
            ])),
            "memreport" => {
                let mut s = alloc::format!("nodes {}\n", self.store.len());
                for (id, c) in &self.conns {
                    s.push_str(&alloc::format!(
                        "conn {} domid {} ring {} watches {} transactions {} queued {}/{}B{}\n",
                        id.0,
                        c.domid,
                        c.ring.is_some(),
                        c.watches.len(),
                        c.txs.len(),
                        c.out.len(),
                        c.out_bytes,
                        if c.broken.is_some() { " broken" } else { "" },
                    ));
                }
                Ok(join_strings(&[s.as_bytes()]))
            }
            "check" => {
                if self.store.check() {
                    ok()
                } else {
                    Err(XsErr::EIO)
                }
            }
            "print" => {
                let s = text(a.get(1).ok_or(XsErr::EINVAL)?)?;
                self.logln(String::from(s));
                ok()
            }
            "log" => {
                match a.get(1).map(|s| &s[..]) {
                    Some(b"on") => self.logging = true,
                    Some(b"off") => self.logging = false,
                    _ => return Err(XsErr::EINVAL),
                }
                ok()
            }
            "quota" => {
                let q = &mut self.quotas;
                let fields: [(&str, &mut usize); 6] = [
                    ("nodes", &mut q.entries_per_domain),
                    ("nodesize", &mut q.max_node_size),
                    ("watches", &mut q.watches_per_domain),
                    ("transactions", &mut q.transactions),
                    ("permissions", &mut q.perms_per_node),
                    ("path-max", &mut q.max_path_len),
                ];
                match (a.get(1), a.get(2)) {
                    (None, _) => {
                        let mut s = String::new();
                        for (name, v) in fields {
                            s.push_str(name);
                            s.push(' ');
                            s.push_str(&decimal(*v as u64));
                            s.push('\n');
                        }
                        Ok(join_strings(&[s.as_bytes()]))
                    }
                    (Some(name), Some(val)) => {
                        let v = parse_u32(val).ok_or(XsErr::EINVAL)? as usize;
                        let (_, slot) = fields
                            .into_iter()
                            .find(|(n, _)| n.as_bytes() == *name)
                            .ok_or(XsErr::EINVAL)?;
                        *slot = v;
                        ok()
                    }
                    _ => Err(XsErr::EINVAL),
                }
            }
            _ => Err(XsErr::EINVAL),
        }
    }

    fn watch(
        &mut self,
        conn: ConnId,
        caller: Caller,
        p: &[u8],
        after: &mut Vec<(ConnId, Vec<u8>)>,
    ) -> Result<Reply, XsErr> {
        let a = args(p, 2)?;
        let raw = text(a[0])?;
        let token = text(a[1])?;
        let (path, relative) = self.canonical(caller.domid, raw, true)?;
        let limit = self.quotas.watches_per_domain;
        let c = self.conns.get_mut(&conn).ok_or(XsErr::EINVAL)?;
        if c.watches.iter().any(|w| w.path == path && w.token == token) {
            return Err(XsErr::EEXIST);
        }
        if !caller.privileged && c.watches.len() >= limit {
            return Err(XsErr::E2BIG);
        }
        c.watches.push(Watch {
            path,
            relative,
            token: String::from(token),
        });
        // Fired once straight away, with the path as given.
        let ev = encode(
            MsgType::WatchEvent,
            0,
            0,
            &join_strings(&[raw.as_bytes(), token.as_bytes()]),
        );
        after.push((conn, ev));
        ok()
    }

    /// Queues watch events for a change of `path` (or a special event).
    fn fire(&self, ch: &Change, after: &mut Vec<(ConnId, Vec<u8>)>) {
        for (&id, c) in &self.conns {
            if c.broken.is_some() {
                continue;
            }
            // As C xenstored: the node (now or before a perms change) or
            // its parent must be readable.
            let can = |perms: &[Perm]| rights(perms, c.domid, c.privileged(), c.target).read;
            let permitted = can(&ch.perms)
                || ch.old_perms.as_deref().is_some_and(can)
                || parent(&ch.path)
                    .and_then(|p| self.store.get(p))
                    .is_some_and(|p| can(&p.perms));
            if !permitted {
                continue;
            }
            for w in &c.watches {
                let epath = if is_child(&ch.path, &w.path) {
                    ch.path.as_str()
                } else if ch.recursive && is_child(&w.path, &ch.path) {
                    w.path.as_str()
                } else {
                    continue;
                };
                let shown = if w.relative {
                    let home = domain_path(c.domid);
                    epath
                        .strip_prefix(home.as_str())
                        .and_then(|s| s.strip_prefix('/'))
                        .unwrap_or(epath)
                } else {
                    epath
                };
                let payload = join_strings(&[shown.as_bytes(), w.token.as_bytes()]);
                after.push((id, encode(MsgType::WatchEvent, 0, 0, &payload)));
            }
        }
    }

    fn fire_special(&self, name: &str, _domid: DomId, after: &mut Vec<(ConnId, Vec<u8>)>) {
        // As C xenstored: privileged connections, and those the special
        // node's permissions let read.
        let perms = self.special_perms(name).unwrap_or(&[]);
        for (&id, c) in &self.conns {
            if c.broken.is_some() || !rights(perms, c.domid, c.privileged(), c.target).read {
                continue;
            }
            for w in c.watches.iter().filter(|w| w.path == name) {
                let payload = join_strings(&[name.as_bytes(), w.token.as_bytes()]);
                after.push((id, encode(MsgType::WatchEvent, 0, 0, &payload)));
            }
        }
    }

    fn commit(
        &mut self,
        caller: Caller,
        tx: Tx,
        after: &mut Vec<(ConnId, Vec<u8>)>,
    ) -> Result<(), XsErr> {
        for (path, gen) in &tx.accessed {
            if self.store.get(path).map(|n| n.gen) != *gen {
                return Err(XsErr::EAGAIN);
            }
        }
        // Concurrent transactions may each have fitted the entries quota.
        if !caller.privileged {
            let d = tx.delta.get(&caller.domid).copied().unwrap_or(0);
            let total = self.store.entries(caller.domid) as isize + d;
            if d > 0 && total > self.quotas.entries_per_domain as isize {
                return Err(XsErr::ENOSPC);
            }
        }
        for (path, node) in tx.overlay {
            match node {
                Some(n) => self.store.insert(&path, n),
                None => {
                    self.store.remove(&path);
                }
            }
        }
        for ch in &tx.changes {
            self.fire(ch, after);
        }
        Ok(())
    }

    fn store_op(
        &mut self,
        conn: ConnId,
        caller: Caller,
        ty: MsgType,
        tx_id: u32,
        p: &[u8],
        after: &mut Vec<(ConnId, Vec<u8>)>,
    ) -> Result<Reply, XsErr> {
        // The request's first string is its path.
        let end = p.iter().position(|&b| b == 0).ok_or(XsErr::EINVAL)?;
        let (path, _) = self.canonical(caller.domid, text(&p[..end])?, false)?;
        let rest = &p[end + 1..];
        let mut tx = if tx_id != 0 {
            let c = self.conns.get_mut(&conn).ok_or(XsErr::EINVAL)?;
            Some(c.txs.remove(&tx_id).ok_or(XsErr::ENOENT)?)
        } else {
            None
        };
        let quotas = self.quotas;
        let mut view = View {
            store: &mut self.store,
            tx: tx.as_mut(),
            changes: Vec::new(),
        };
        let r = op(&mut view, caller, &quotas, ty, &path, rest);
        let changes = core::mem::take(&mut view.changes);
        let mut over = view.touched() > quotas.transaction_nodes;
        if let Some(mut t) = tx {
            t.changes.extend(changes);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.txs.insert(tx_id, t);
                let bytes: usize = c.txs.values().map(Tx::bytes).sum();
                over |= bytes > quotas.transaction_memory;
            }
            if over && !caller.privileged {
                // XSA-326: the transaction is poisoned, so what the refused
                // request (and any other) did in it is never committed.
                if let Some(t) = self
                    .conns
                    .get_mut(&conn)
                    .and_then(|c| c.txs.get_mut(&tx_id))
                {
                    t.failed = true;
                }
                return Err(XsErr::ENOSPC);
            }
        } else {
            for ch in &changes {
                self.fire(ch, after);
            }
        }
        r
    }

    /// Starts serving `domid` over its ring page at `mfn` and event channel
    /// `port` (what `XS_INTRODUCE` does; the domain builder may call it
    /// directly). Returns the connection.
    pub fn introduce(&mut self, domid: DomId, mfn: u64, port: u32) -> Result<ConnId, XsErr> {
        let mut after = Vec::new();
        self.touched.clear();
        let r = self.introduce_inner(domid, mfn, port, &mut after);
        for (to, bytes) in after {
            self.queue(to, bytes, false);
        }
        r
    }

    fn introduce_inner(
        &mut self,
        domid: DomId,
        mfn: u64,
        port: u32,
        after: &mut Vec<(ConnId, Vec<u8>)>,
    ) -> Result<ConnId, XsErr> {
        if domid == 0 || domid >= DOMID_FIRST_RESERVED {
            return Err(XsErr::EINVAL);
        }
        if let Some(&cid) = self.domains.get(&domid) {
            // Re-introduction: rebind the event channel, reset the rings.
            let local = self.host.bind(domid, port).ok_or(XsErr::EINVAL)?;
            let old = self
                .conns
                .get_mut(&cid)
                .and_then(|c| c.ring.as_mut())
                .map(|r| {
                    let old = r.port;
                    r.port = local;
                    old
                });
            if let Some(old) = old {
                self.host.unbind(old);
            }
            self.reset_ring(cid);
            return Ok(cid);
        }
        let page = self.host.map_ring(domid, mfn).ok_or(XsErr::EINVAL)?;
        let local = self.host.bind(domid, port).ok_or(XsErr::EINVAL)?;
        let cid = self.alloc_conn();
        let ring = Ring {
            page,
            mfn,
            port: local,
            req_cons: 0,
            rsp_prod: 0,
        };
        self.conns.insert(cid, Conn::new(domid, Some(ring)));
        self.domains.insert(domid, cid);
        self.reset_ring(cid);
        self.fire_special(INTRODUCE_DOMAIN, domid, after);
        self.logln(alloc::format!(
            "introduced domain {domid} (mfn {mfn:#x}, port {port})"
        ));
        Ok(cid)
    }

    /// Stops serving `domid` (what `XS_RELEASE` does): unbinds its event
    /// channel, forgets its connection, fires `@releaseDomain`. Its nodes
    /// stay (the toolstack removes `/local/domain/<id>`).
    pub fn release(&mut self, domid: DomId) -> Result<(), XsErr> {
        let mut after = Vec::new();
        self.touched.clear();
        let r = self.release_inner(domid, &mut after);
        for (to, bytes) in after {
            self.queue(to, bytes, false);
        }
        r
    }

    fn release_inner(
        &mut self,
        domid: DomId,
        after: &mut Vec<(ConnId, Vec<u8>)>,
    ) -> Result<(), XsErr> {
        if domid == 0 {
            return Err(XsErr::EINVAL);
        }
        let cid = self.domains.remove(&domid).ok_or(XsErr::ENOENT)?;
        self.shutdown_seen.retain(|&d| d != domid);
        if let Some(c) = self.conns.remove(&cid) {
            if let Some(r) = c.ring {
                self.host.unbind(r.port);
            }
        }
        // Connections targeting it lose the target.
        for c in self.conns.values_mut() {
            if c.target == Some(domid) {
                c.target = None;
            }
        }
        // XSA-322: the id may be reused; a new domain with it must not
        // inherit this one's rights (its nodes stay, now Dom0's).
        self.store.revoke_domain(domid);
        self.fire_special(RELEASE_DOMAIN, domid, after);
        self.logln(alloc::format!("released domain {domid}"));
        Ok(())
    }

    /// Tells xenstored that `domid` has shut down or crashed (Dom0 sees
    /// `VIRQ_DOM_EXC`): fires `@releaseDomain` once, as C xenstored does,
    /// until `XS_RESUME` re-arms it. The connection stays until
    /// [`Xenstored::release`].
    pub fn domain_shutdown(&mut self, domid: DomId) {
        if !self.domains.contains_key(&domid) || self.shutdown_seen.contains(&domid) {
            return;
        }
        self.shutdown_seen.push(domid);
        let mut after = Vec::new();
        self.touched.clear();
        self.fire_special(RELEASE_DOMAIN, domid, &mut after);
        for (to, bytes) in after {
            self.queue(to, bytes, false);
        }
    }

    /// Whether `domid` is introduced (Dom0 always is).
    pub fn is_introduced(&self, domid: DomId) -> bool {
        self.domains.contains_key(&domid)
    }
}

/// A store operation on `path` (already absolute and valid) with the rest
/// of the payload `rest`.
fn op(
    v: &mut View<'_>,
    caller: Caller,
    q: &Quotas,
    ty: MsgType,
    path: &str,
    rest: &[u8],
) -> Result<Reply, XsErr> {
    match ty {
        MsgType::Read => {
            no_more(rest)?;
            Ok(get(v, caller, path, false)?.value)
        }
        MsgType::Directory => {
            no_more(rest)?;
            let n = get(v, caller, path, false)?;
            let names: Vec<&[u8]> = n.children.iter().map(|c| c.as_bytes()).collect();
            Ok(join_strings(&names))
        }
        MsgType::DirectoryPart => {
            let off = split_strings(rest)
                .filter(|a| !a.is_empty())
                .and_then(|a| parse_u32(a[0]))
                .ok_or(XsErr::EINVAL)? as usize;
            let n = get(v, caller, path, false)?;
            directory_part(&n, off)
        }
        MsgType::GetPerms => {
            no_more(rest)?;
            let n = get(v, caller, path, false)?;
            let strs: Vec<String> = n.perms.iter().map(|p| p.to_wire()).collect();
            let refs: Vec<&[u8]> = strs.iter().map(|s| s.as_bytes()).collect();
            Ok(join_strings(&refs))
        }
        MsgType::Write => {
            if !caller.privileged && rest.len() > q.max_node_size {
                return Err(XsErr::ENOSPC);
            }
            let mut n = match get(v, caller, path, true) {
                Ok(n) => n,
                Err(XsErr::ENOENT) => create(v, caller, q, path)?,
                Err(e) => return Err(e),
            };
            n.value = rest.to_vec();
            let perms = n.perms.clone();
            v.put(path, n);
            v.changed(path, perms, false);
            ok()
        }
        MsgType::Mkdir => {
            no_more(rest)?;
            match get(v, caller, path, true) {
                Ok(_) => ok(),
                Err(XsErr::ENOENT) => {
                    let n = create(v, caller, q, path)?;
                    let perms = n.perms.clone();
                    v.put(path, n);
                    v.changed(path, perms, false);
                    ok()
                }
                Err(e) => Err(e),
            }
        }
        MsgType::Rm => {
            no_more(rest)?;
            match get(v, caller, path, true) {
                Ok(n) => {
                    if path == "/" {
                        return Err(XsErr::EINVAL);
                    }
                    remove_tree(v, path, n.clone());
                    if let Some(pp) = parent(path) {
                        if let Some(mut parent_node) = v.get(pp) {
                            let name = basename(path);
                            parent_node.children.retain(|c| c != name);
                            v.put(pp, parent_node);
                        }
                    }
                    v.changed(path, n.perms, true);
                    ok()
                }
                // Not there: fine if the parent is.
                Err(XsErr::ENOENT) => match parent(path).and_then(|pp| v.get(pp)) {
                    Some(_) => ok(),
                    None => Err(XsErr::ENOENT),
                },
                Err(e) => Err(e),
            }
        }
        MsgType::SetPerms => {
            let strs = split_strings(rest).ok_or(XsErr::EINVAL)?;
            if strs.is_empty() {
                return Err(XsErr::EINVAL);
            }
            if !caller.privileged && strs.len() > q.perms_per_node {
                return Err(XsErr::ENOSPC);
            }
            let perms = strs
                .iter()
                .map(|s| Perm::parse(s).ok_or(XsErr::EINVAL))
                .collect::<Result<Vec<_>, _>>()?;
            let mut n = get(v, caller, path, true)?;
            if !caller.rights(&n).owner {
                return Err(XsErr::EACCES);
            }
            if !caller.privileged && perms[0].domid != n.owner() {
                return Err(XsErr::EPERM);
            }
            // Events go to who could read before and who can read now.
            let old = n.perms.clone();
            n.perms = perms.clone();
            v.put(path, n);
            v.changed(path, perms, false);
            if let Some(ch) = v.changes.last_mut() {
                ch.old_perms = Some(old);
            }
            ok()
        }
        _ => Err(XsErr::ENOSYS),
    }
}

fn no_more(rest: &[u8]) -> Result<(), XsErr> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(XsErr::EINVAL)
    }
}

/// The node at `path` if `caller` may read it (or write it, `write`).
/// A missing node is `ENOENT`, or `EACCES` if its nearest existing ancestor
/// is unreadable (so unreadable subtrees do not leak their shape).
fn get(v: &mut View<'_>, caller: Caller, path: &str, write: bool) -> Result<Node, XsErr> {
    match v.get(path) {
        Some(n) => {
            let r = caller.rights(&n);
            if (write && !r.write) || (!write && !r.read) {
                return Err(XsErr::EACCES);
            }
            Ok(n)
        }
        None => {
            let mut p = parent(path);
            while let Some(pp) = p {
                if let Some(n) = v.get(pp) {
                    return Err(if caller.rights(&n).read {
                        XsErr::ENOENT
                    } else {
                        XsErr::EACCES
                    });
                }
                p = parent(pp);
            }
            Err(XsErr::ENOENT)
        }
    }
}

/// Creates the missing ancestors of `path` (which does not exist) and
/// returns a fresh node for `path` itself, not yet stored (the caller
/// stores it after setting its value). New nodes inherit their parent's
/// permissions; a non-privileged creator becomes the owner.
fn create(v: &mut View<'_>, caller: Caller, q: &Quotas, path: &str) -> Result<Node, XsErr> {
    // Find the nearest existing ancestor.
    let mut missing: Vec<&str> = vec![path];
    let mut anc = parent(path);
    let base = loop {
        let Some(a) = anc else {
            return Err(XsErr::ENOENT);
        };
        if let Some(n) = v.get(a) {
            break (a, n);
        }
        missing.push(a);
        anc = parent(a);
    };
    let (mut dir, mut dir_node) = base;
    if !caller.rights(&dir_node).write {
        return Err(XsErr::EACCES);
    }
    if !caller.privileged && v.entries(caller.domid) + missing.len() > q.entries_per_domain {
        return Err(XsErr::ENOSPC);
    }
    let mut perms = dir_node.perms.clone();
    if !caller.privileged {
        if let Some(first) = perms.first_mut() {
            first.domid = caller.domid;
        }
    }
    // Top-down: link each missing node into its parent.
    for &m in missing.iter().rev() {
        dir_node.children.push(String::from(basename(m)));
        v.put(dir, dir_node);
        if m == path {
            return Ok(Node::new(Vec::new(), perms));
        }
        v.put(m, Node::new(Vec::new(), perms.clone()));
        dir = m;
        dir_node = v
            .get(m)
            .unwrap_or_else(|| Node::new(Vec::new(), perms.clone()));
    }
    Err(XsErr::ENOENT)
}

fn remove_tree(v: &mut View<'_>, path: &str, node: Node) {
    // Iterative, so a deep tree cannot exhaust the stack.
    let mut stack: Vec<(String, Node)> = vec![(String::from(path), node)];
    while let Some((p, n)) = stack.pop() {
        for c in &n.children {
            let cp = join(&p, c);
            if let Some(cn) = v.get(&cp) {
                stack.push((cp, cn));
            }
        }
        v.remove(&p);
    }
}

fn directory_part(n: &Node, off: usize) -> Result<Reply, XsErr> {
    let all = {
        let names: Vec<&[u8]> = n.children.iter().map(|c| c.as_bytes()).collect();
        join_strings(&names)
    };
    if off > all.len() {
        return Err(XsErr::EINVAL);
    }
    let mut out = join_strings(&[decimal(n.gen).as_bytes()]);
    let room = XENSTORE_PAYLOAD_MAX - out.len() - 1;
    let mut taken = 0;
    let rest = &all[off..];
    // Whole names only.
    while taken < rest.len() {
        let len = rest[taken..]
            .iter()
            .position(|&b| b == 0)
            .map_or(rest.len() - taken, |i| i + 1);
        if taken + len > room {
            break;
        }
        taken += len;
    }
    out.extend_from_slice(&rest[..taken]);
    if taken == rest.len() {
        out.push(0); // end of list
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
