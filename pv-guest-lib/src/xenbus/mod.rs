//! XenBus: a guest's client for xenstore (`docs/misc/xenstore.txt`).
//!
//! - [`wire`]: message headers, payload strings, permissions, error names
//!   (shared with Dom0's `xenstored` in `dom0-tools`);
//! - [`page`]: the `xenstore_domain_interface` page as shared memory
//!   ([`page::MemPage`] for host tests, [`page::RawPage`] on the metal);
//! - [`ring`]: the guest end of the rings and a [`Transport`] over them;
//! - [`Xenbus`]: the client API — read, write, mkdir, rm, directory,
//!   permissions, watches with queued events, transactions with a retry
//!   helper, and the domain-management requests;
//! - [`shutdown`]: the `control/shutdown` protocol (poweroff, reboot,
//!   suspend, crash requests from the toolstack);
//! - [`metal`]: the transport a booted domain uses (the `start_info` ring
//!   page and event channel); [`crate::domu::connect`] is how an ordinary
//!   domain gets a client over it, and [`crate::domu::ShutdownWatcher`]
//!   the whole shutdown protocol.
//!
//! Everything but [`metal`] is pure logic with no hypercalls: the event
//! channel lives behind the transport's hooks, so it runs on the host.
//!
//! A PV kernel's shutdown handling, end to end:
//!
//! ```no_run
//! # fn f(si: &pv_guest_lib::StartInfo) -> Option<()> {
//! let mut xs = pv_guest_lib::xenbus::metal::connect(si)?;
//! xs.watch_shutdown().ok()?;
//! let req = xs.wait_shutdown().ok()?; // e.g. after `xl reboot`
//! pv_guest_lib::xen::shutdown(req.reason());
//! # }
//! ```

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub mod metal;
pub mod page;
pub mod ring;
pub mod shutdown;
pub mod wire;

pub use ring::{RingClient, RingTransport};
pub use shutdown::ShutdownRequest;
pub use wire::{Access, MsgType, Perm, XsErr};

use wire::{decimal, encode, join_strings, split_strings, Message, XENSTORE_PAYLOAD_MAX};

/// A transaction id; [`NO_TX`] outside transactions.
pub type TxId = u32;
/// No transaction.
pub const NO_TX: TxId = 0;
/// How often [`Xenbus::transaction`] retries a transaction that ended in
/// `EAGAIN` before giving up.
pub const TX_RETRIES: usize = 16;

/// Why a xenstore request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XsError {
    /// xenstored answered `XS_ERROR` with this error.
    Xs(XsErr),
    /// The ring or a reply broke the protocol (bad index, oversized or
    /// mistyped reply).
    Protocol,
    /// The request would exceed `XENSTORE_PAYLOAD_MAX`.
    TooBig,
    /// The transport gave up waiting.
    NoReply,
}

impl From<XsErr> for XsError {
    fn from(e: XsErr) -> Self {
        XsError::Xs(e)
    }
}

impl fmt::Display for XsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XsError::Xs(e) => write!(f, "xenstore: {e}"),
            XsError::Protocol => f.write_str("xenstore: protocol error"),
            XsError::TooBig => f.write_str("xenstore: request too big"),
            XsError::NoReply => f.write_str("xenstore: no reply"),
        }
    }
}

/// How [`Xenbus`] moves bytes: a non-blocking byte pipe to xenstored plus a
/// way to wait.
pub trait Transport {
    /// Sends as much of `data` as fits now (and notifies xenstored);
    /// returns how many bytes went.
    fn send(&mut self, data: &[u8]) -> Result<usize, XsError>;
    /// The next complete message from xenstored, if one is there.
    fn recv(&mut self) -> Result<Option<Message>, XsError>;
    /// Blocks until xenstored may have made progress; `false` gives up.
    fn wait(&mut self) -> bool;
}

/// A watch event: the path that changed and the token of the watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The changed path (relative if the watch was set relative).
    pub path: String,
    /// The watch's token.
    pub token: String,
}

/// A xenstore client over a [`Transport`].
///
/// Requests are synchronous (one outstanding at a time); watch events that
/// arrive meanwhile are queued for [`Xenbus::next_event`].
pub struct Xenbus<T> {
    transport: T,
    next_req: u32,
    events: VecDeque<WatchEvent>,
}

fn utf8(b: &[u8]) -> Result<String, XsError> {
    core::str::from_utf8(b)
        .map(String::from)
        .map_err(|_| XsError::Protocol)
}

impl<T: Transport> Xenbus<T> {
    /// A client over `transport`.
    pub fn new(transport: T) -> Self {
        Xenbus {
            transport,
            next_req: 1,
            events: VecDeque::new(),
        }
    }

    /// The transport.
    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Sends one request and waits for its reply's payload.
    pub fn request(&mut self, ty: MsgType, tx: TxId, payload: &[u8]) -> Result<Vec<u8>, XsError> {
        if payload.len() > XENSTORE_PAYLOAD_MAX {
            return Err(XsError::TooBig);
        }
        let req_id = self.next_req;
        self.next_req = self.next_req.wrapping_add(1);
        let msg = encode(ty, req_id, tx, payload);
        let mut sent = 0;
        while sent < msg.len() {
            sent += self.transport.send(&msg[sent..])?;
            if sent < msg.len() {
                self.pump()?;
                if !self.transport.wait() {
                    return Err(XsError::NoReply);
                }
            }
        }
        loop {
            while let Some(m) = self.transport.recv()? {
                match m.header.msg_type() {
                    Some(MsgType::WatchEvent) => self.queue_event(&m.payload)?,
                    _ if m.header.req_id != req_id => {} // stray reply
                    Some(MsgType::Error) => {
                        return Err(XsError::Xs(
                            XsErr::from_name(&m.payload).unwrap_or(XsErr::EINVAL),
                        ))
                    }
                    Some(t) if t == ty => return Ok(m.payload),
                    _ => return Err(XsError::Protocol),
                }
            }
            if !self.transport.wait() {
                return Err(XsError::NoReply);
            }
        }
    }

    fn queue_event(&mut self, payload: &[u8]) -> Result<(), XsError> {
        let parts = split_strings(payload).ok_or(XsError::Protocol)?;
        if parts.len() < 2 {
            return Err(XsError::Protocol);
        }
        self.events.push_back(WatchEvent {
            path: utf8(parts[0])?,
            token: utf8(parts[1])?,
        });
        Ok(())
    }

    /// Drains what the transport holds without waiting (events are queued;
    /// replies without a request are dropped).
    fn pump(&mut self) -> Result<(), XsError> {
        while let Some(m) = self.transport.recv()? {
            if m.header.msg_type() == Some(MsgType::WatchEvent) {
                self.queue_event(&m.payload)?;
            }
        }
        Ok(())
    }

    fn ok(&mut self, ty: MsgType, tx: TxId, payload: &[u8]) -> Result<(), XsError> {
        self.request(ty, tx, payload).map(|_| ())
    }

    /// `XS_READ`: the value at `path`.
    pub fn read(&mut self, tx: TxId, path: &str) -> Result<Vec<u8>, XsError> {
        self.request(MsgType::Read, tx, &join_strings(&[path.as_bytes()]))
    }

    /// `XS_READ` of a UTF-8 value.
    pub fn read_string(&mut self, tx: TxId, path: &str) -> Result<String, XsError> {
        utf8(&self.read(tx, path)?)
    }

    /// `XS_WRITE`: sets `path` to `value`, creating missing parents.
    pub fn write(&mut self, tx: TxId, path: &str, value: &[u8]) -> Result<(), XsError> {
        let mut p = join_strings(&[path.as_bytes()]);
        p.extend_from_slice(value);
        self.ok(MsgType::Write, tx, &p)
    }

    /// `XS_MKDIR`: makes sure `path` exists.
    pub fn mkdir(&mut self, tx: TxId, path: &str) -> Result<(), XsError> {
        self.ok(MsgType::Mkdir, tx, &join_strings(&[path.as_bytes()]))
    }

    /// `XS_RM`: removes `path` and everything below it.
    pub fn rm(&mut self, tx: TxId, path: &str) -> Result<(), XsError> {
        self.ok(MsgType::Rm, tx, &join_strings(&[path.as_bytes()]))
    }

    /// `XS_DIRECTORY`: the names of `path`'s children.
    pub fn directory(&mut self, tx: TxId, path: &str) -> Result<Vec<String>, XsError> {
        let r = self.request(MsgType::Directory, tx, &join_strings(&[path.as_bytes()]))?;
        split_strings(&r)
            .ok_or(XsError::Protocol)?
            .into_iter()
            .map(utf8)
            .collect()
    }

    /// `XS_GET_PERMS`.
    pub fn get_perms(&mut self, tx: TxId, path: &str) -> Result<Vec<Perm>, XsError> {
        let r = self.request(MsgType::GetPerms, tx, &join_strings(&[path.as_bytes()]))?;
        split_strings(&r)
            .ok_or(XsError::Protocol)?
            .into_iter()
            .map(|s| Perm::parse(s).ok_or(XsError::Protocol))
            .collect()
    }

    /// `XS_SET_PERMS`: `perms[0]` is the owner and everyone's default.
    pub fn set_perms(&mut self, tx: TxId, path: &str, perms: &[Perm]) -> Result<(), XsError> {
        let mut p = join_strings(&[path.as_bytes()]);
        for perm in perms {
            p.extend_from_slice(perm.to_wire().as_bytes());
            p.push(0);
        }
        self.ok(MsgType::SetPerms, tx, &p)
    }

    /// `XS_WATCH`: xenstored fires the watch once straight away.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        self.ok(
            MsgType::Watch,
            NO_TX,
            &join_strings(&[path.as_bytes(), token.as_bytes()]),
        )
    }

    /// `XS_UNWATCH`.
    pub fn unwatch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        self.ok(
            MsgType::Unwatch,
            NO_TX,
            &join_strings(&[path.as_bytes(), token.as_bytes()]),
        )
    }

    /// `XS_RESET_WATCHES`: drops all watches and transactions, and the
    /// queued events (everything received before the reply predates the
    /// reset).
    pub fn reset_watches(&mut self) -> Result<(), XsError> {
        self.ok(MsgType::ResetWatches, NO_TX, b"\0")?;
        self.events.clear();
        Ok(())
    }

    /// The next queued watch event, after draining the transport (no
    /// waiting).
    pub fn next_event(&mut self) -> Result<Option<WatchEvent>, XsError> {
        self.pump()?;
        Ok(self.events.pop_front())
    }

    /// Waits for the next watch event.
    pub fn wait_event(&mut self) -> Result<WatchEvent, XsError> {
        loop {
            if let Some(e) = self.next_event()? {
                return Ok(e);
            }
            if !self.transport.wait() {
                return Err(XsError::NoReply);
            }
        }
    }

    /// `XS_TRANSACTION_START`.
    pub fn transaction_start(&mut self) -> Result<TxId, XsError> {
        let r = self.request(MsgType::TransactionStart, NO_TX, b"\0")?;
        let id = r.strip_suffix(&[0]).unwrap_or(&r);
        wire::parse_u32(id).ok_or(XsError::Protocol)
    }

    /// `XS_TRANSACTION_END`: commits (`commit`) or aborts; a commit that
    /// conflicted with another change fails with `EAGAIN`.
    pub fn transaction_end(&mut self, tx: TxId, commit: bool) -> Result<(), XsError> {
        self.ok(
            MsgType::TransactionEnd,
            tx,
            if commit { b"T\0" } else { b"F\0" },
        )
    }

    /// Runs `f` in a transaction, retrying (up to [`TX_RETRIES`] times) while
    /// the commit fails with `EAGAIN`; an error from `f` aborts.
    pub fn transaction<R>(
        &mut self,
        mut f: impl FnMut(&mut Self, TxId) -> Result<R, XsError>,
    ) -> Result<R, XsError> {
        for _ in 0..TX_RETRIES {
            let tx = self.transaction_start()?;
            match f(self, tx) {
                Ok(r) => match self.transaction_end(tx, true) {
                    Ok(()) => return Ok(r),
                    Err(XsError::Xs(XsErr::EAGAIN)) => continue,
                    Err(e) => return Err(e),
                },
                Err(e) => {
                    let _ = self.transaction_end(tx, false);
                    return Err(e);
                }
            }
        }
        Err(XsError::Xs(XsErr::EAGAIN))
    }

    /// `XS_GET_DOMAIN_PATH`: `/local/domain/<domid>`.
    pub fn get_domain_path(&mut self, domid: u16) -> Result<String, XsError> {
        let r = self.request(
            MsgType::GetDomainPath,
            NO_TX,
            &join_strings(&[decimal(domid.into()).as_bytes()]),
        )?;
        utf8(r.strip_suffix(&[0]).unwrap_or(&r))
    }

    /// `XS_IS_DOMAIN_INTRODUCED`.
    pub fn is_domain_introduced(&mut self, domid: u16) -> Result<bool, XsError> {
        let r = self.request(
            MsgType::IsDomainIntroduced,
            NO_TX,
            &join_strings(&[decimal(domid.into()).as_bytes()]),
        )?;
        Ok(r.first() == Some(&b'T'))
    }

    /// `XS_INTRODUCE` (Dom0 only): start serving `domid`'s ring at `mfn`,
    /// bound to its unbound event channel `port`.
    pub fn introduce(&mut self, domid: u16, mfn: u64, port: u32) -> Result<(), XsError> {
        let (d, m, p) = (decimal(domid.into()), decimal(mfn), decimal(port.into()));
        self.ok(
            MsgType::Introduce,
            NO_TX,
            &join_strings(&[d.as_bytes(), m.as_bytes(), p.as_bytes()]),
        )
    }

    /// `XS_RELEASE` (Dom0 only).
    pub fn release(&mut self, domid: u16) -> Result<(), XsError> {
        self.ok(
            MsgType::Release,
            NO_TX,
            &join_strings(&[decimal(domid.into()).as_bytes()]),
        )
    }

    /// `XS_CONTROL` with `args` (e.g. `["print", "hello"]`); the reply payload.
    pub fn control(&mut self, args: &[&str]) -> Result<Vec<u8>, XsError> {
        let parts: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        self.request(MsgType::Control, NO_TX, &join_strings(&parts))
    }
}

#[cfg(test)]
mod tests {
    use super::page::{MemPage, SharedPage, RSP, RSP_PROD};
    use super::wire::Header;
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec;

    type Script = Box<dyn FnMut(&Message) -> Vec<Message>>;

    /// A scripted xenstored: answers each request with what `script` says.
    struct Mock {
        inbox: Vec<u8>,
        out: VecDeque<Message>,
        script: Script,
        max_send: usize,
        waits: usize,
        max_waits: usize,
    }

    impl Transport for Mock {
        fn send(&mut self, data: &[u8]) -> Result<usize, XsError> {
            let n = data.len().min(self.max_send);
            self.inbox.extend_from_slice(&data[..n]);
            while let Some(h) = Header::decode(&self.inbox) {
                let len = wire::HEADER_LEN + h.len as usize;
                if self.inbox.len() < len {
                    break;
                }
                let m = Message::decode(&self.inbox[..len]).unwrap();
                self.inbox.drain(..len);
                let replies = (self.script)(&m);
                self.out.extend(replies);
            }
            Ok(n)
        }
        fn recv(&mut self) -> Result<Option<Message>, XsError> {
            Ok(self.out.pop_front())
        }
        fn wait(&mut self) -> bool {
            self.waits += 1;
            self.waits < self.max_waits
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

    fn client(script: impl FnMut(&Message) -> Vec<Message> + 'static) -> Xenbus<Mock> {
        Xenbus::new(Mock {
            inbox: Vec::new(),
            out: VecDeque::new(),
            script: Box::new(script),
            max_send: usize::MAX,
            waits: 0,
            max_waits: 5,
        })
    }

    #[test]
    fn replies_matched_by_req_id_events_queued() {
        let mut xb = client(|m| {
            let id = m.header.req_id;
            vec![
                msg(MsgType::Read, id + 100, b"stray"),
                msg(MsgType::WatchEvent, 0, b"a/b\0tok\0"),
                msg(MsgType::Read, id, b"value"),
            ]
        });
        assert_eq!(xb.read(NO_TX, "x").unwrap(), b"value");
        assert_eq!(
            xb.next_event().unwrap(),
            Some(WatchEvent {
                path: "a/b".into(),
                token: "tok".into()
            })
        );
        assert_eq!(xb.next_event().unwrap(), None);
    }

    #[test]
    fn errors_and_bad_replies() {
        let mut xb = client(|m| {
            let id = m.header.req_id;
            match m.header.msg_type() {
                Some(MsgType::Read) => vec![msg(MsgType::Error, id, b"EACCES\0")],
                Some(MsgType::Write) => vec![msg(MsgType::Error, id, b"EWHATEVER\0")],
                Some(MsgType::Mkdir) => vec![msg(MsgType::Read, id, b"OK\0")],
                Some(MsgType::Directory) => vec![msg(MsgType::Directory, id, b"a\0b")],
                Some(MsgType::TransactionStart) => vec![msg(MsgType::TransactionStart, id, b"x\0")],
                Some(MsgType::Watch) => vec![msg(MsgType::WatchEvent, 0, b"only-path\0")],
                _ => vec![],
            }
        });
        assert_eq!(xb.read(NO_TX, "x"), Err(XsError::Xs(XsErr::EACCES)));
        assert_eq!(xb.write(NO_TX, "x", b""), Err(XsError::Xs(XsErr::EINVAL)));
        assert_eq!(xb.mkdir(NO_TX, "x"), Err(XsError::Protocol));
        assert_eq!(xb.directory(NO_TX, "x"), Err(XsError::Protocol));
        assert_eq!(xb.transaction_start(), Err(XsError::Protocol));
        assert_eq!(xb.watch("p", "t"), Err(XsError::Protocol));
        assert_eq!(xb.rm(NO_TX, "x"), Err(XsError::NoReply));
        assert_eq!(xb.write(NO_TX, "x", &[0; 4095]), Err(XsError::TooBig));
    }

    #[test]
    fn partial_sends_and_retry_helper() {
        let mut tries = 0;
        let mut xb = client(move |m| {
            let id = m.header.req_id;
            match m.header.msg_type() {
                Some(MsgType::TransactionStart) => vec![msg(MsgType::TransactionStart, id, b"7\0")],
                Some(MsgType::TransactionEnd) => {
                    tries += 1;
                    if tries < 3 {
                        vec![msg(MsgType::Error, id, b"EAGAIN\0")]
                    } else {
                        vec![msg(MsgType::TransactionEnd, id, b"OK\0")]
                    }
                }
                Some(t) => vec![msg(t, id, b"OK\0")],
                None => vec![],
            }
        });
        xb.transport().max_send = 5; // a tiny ring
        xb.transport().max_waits = 10_000;
        let mut runs = 0;
        xb.transaction(|xb, tx| {
            assert_eq!(tx, 7);
            runs += 1;
            xb.write(tx, "k", b"v")
        })
        .unwrap();
        assert_eq!(runs, 3);
        // Always EAGAIN: gives up.
        let mut xb = client(|m| {
            let id = m.header.req_id;
            match m.header.msg_type() {
                Some(MsgType::TransactionStart) => vec![msg(MsgType::TransactionStart, id, b"1\0")],
                _ => vec![msg(MsgType::Error, id, b"EAGAIN\0")],
            }
        });
        assert_eq!(
            xb.transaction(|_, _| Ok(())),
            Err(XsError::Xs(XsErr::EAGAIN))
        );
    }

    #[test]
    fn ring_client_rejects_a_hostile_server() {
        let page = MemPage::new();
        let mut rc = RingClient::new(page.clone());
        page.store_u32(RSP_PROD, 5000);
        assert_eq!(rc.recv().err(), Some(XsError::Protocol));
        let page = MemPage::new();
        let mut rc = RingClient::new(page.clone());
        let h = Header {
            ty: 2,
            req_id: 1,
            tx_id: 0,
            len: 5000,
        };
        page.write(RSP, &h.encode());
        page.store_u32(RSP_PROD, 16);
        assert_eq!(rc.recv().err(), Some(XsError::Protocol));
        let page = MemPage::new();
        let mut rc = RingClient::new(page.clone());
        page.store_u32(page::REQ_CONS, 3000);
        assert_eq!(rc.send(b"x"), Err(XsError::Protocol));
    }
}
