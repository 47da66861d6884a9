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
//!   suspend, crash requests from the toolstack).
//!
//! Pure logic with no hypercalls: the event channel lives behind the
//! transport's `notify`/`wait` hooks, so everything here runs on the host.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

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
