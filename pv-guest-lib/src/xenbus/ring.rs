//! The guest's end of the xenstore ring: [`RingClient`] produces requests
//! into `req[]` and consumes replies and watch events from `rsp[]`, and
//! [`RingTransport`] pairs it with "notify the other end" and "wait for an
//! event" hooks (an event channel on the metal, a call into an in-process
//! `xenstored` on the host) to make a [`Transport`].
//!
//! Indexes read from the page are checked: a producer more than a ring ahead
//! of its consumer, or a reply longer than `XENSTORE_PAYLOAD_MAX`, is a
//! protocol error ([`XsError::Protocol`]), never a panic.

use alloc::vec::Vec;

use super::page::{
    ring_read, ring_write, SharedPage, REQ, REQ_CONS, REQ_PROD, RSP, RSP_CONS, RSP_PROD,
};
use super::wire::{Header, Message, HEADER_LEN, XENSTORE_PAYLOAD_MAX, XENSTORE_RING_SIZE};
use super::{Transport, XsError};

const RING: u32 = XENSTORE_RING_SIZE as u32;

/// The guest side of a xenstore ring page.
pub struct RingClient<P> {
    page: P,
    inbuf: Vec<u8>,
}

impl<P: SharedPage> RingClient<P> {
    /// A client over `page` (as the domain builder left it: zeroed).
    pub fn new(page: P) -> Self {
        RingClient {
            page,
            inbuf: Vec::new(),
        }
    }

    /// The page.
    pub fn page(&self) -> &P {
        &self.page
    }

    /// Writes as much of `data` as fits in the request ring and publishes
    /// it; returns how many bytes went in (0 if the ring is full).
    pub fn send(&mut self, data: &[u8]) -> Result<usize, XsError> {
        let cons = self.page.load_u32(REQ_CONS);
        let prod = self.page.load_u32(REQ_PROD);
        let used = prod.wrapping_sub(cons);
        if used > RING {
            return Err(XsError::Protocol);
        }
        let n = ((RING - used) as usize).min(data.len());
        ring_write(&self.page, REQ, prod, &data[..n]);
        self.page.store_u32(REQ_PROD, prod.wrapping_add(n as u32));
        Ok(n)
    }

    /// Consumes what the response ring holds and returns the next complete
    /// message, if any. Returns `(message, consumed_bytes)`.
    pub fn recv(&mut self) -> Result<(Option<Message>, bool), XsError> {
        let mut consumed = false;
        loop {
            if let Some(m) = self.take_buffered()? {
                return Ok((Some(m), consumed));
            }
            let cons = self.page.load_u32(RSP_CONS);
            let prod = self.page.load_u32(RSP_PROD);
            let avail = prod.wrapping_sub(cons);
            if avail > RING {
                return Err(XsError::Protocol);
            }
            if avail == 0 {
                return Ok((None, consumed));
            }
            let start = self.inbuf.len();
            self.inbuf.resize(start + avail as usize, 0);
            ring_read(&self.page, RSP, cons, &mut self.inbuf[start..]);
            self.page.store_u32(RSP_CONS, cons.wrapping_add(avail));
            consumed = true;
        }
    }

    fn take_buffered(&mut self) -> Result<Option<Message>, XsError> {
        let Some(header) = Header::decode(&self.inbuf) else {
            return Ok(None);
        };
        let len = header.len as usize;
        if len > XENSTORE_PAYLOAD_MAX {
            return Err(XsError::Protocol);
        }
        if self.inbuf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let payload = self.inbuf[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.inbuf.drain(..HEADER_LEN + len);
        Ok(Some(Message { header, payload }))
    }
}

/// A [`RingClient`] with its event-channel hooks: `notify` kicks xenstored
/// (`EVTCHNOP_send` on the store port), `wait` blocks until the port fires
/// and returns `false` to give up (a host test's bounded loop).
pub struct RingTransport<P, N, W> {
    ring: RingClient<P>,
    notify: N,
    wait: W,
}

impl<P, N, W> RingTransport<P, N, W>
where
    P: SharedPage,
    N: FnMut(),
    W: FnMut() -> bool,
{
    /// A transport over `page`.
    pub fn new(page: P, notify: N, wait: W) -> Self {
        RingTransport {
            ring: RingClient::new(page),
            notify,
            wait,
        }
    }

    /// The ring.
    pub fn ring(&self) -> &RingClient<P> {
        &self.ring
    }
}

impl<P, N, W> Transport for RingTransport<P, N, W>
where
    P: SharedPage,
    N: FnMut(),
    W: FnMut() -> bool,
{
    fn send(&mut self, data: &[u8]) -> Result<usize, XsError> {
        let n = self.ring.send(data)?;
        if n > 0 {
            (self.notify)();
        }
        Ok(n)
    }

    fn recv(&mut self) -> Result<Option<Message>, XsError> {
        let (m, consumed) = self.ring.recv()?;
        if consumed {
            // xenstored may be waiting for room in the response ring.
            (self.notify)();
        }
        Ok(m)
    }

    fn wait(&mut self) -> bool {
        (self.wait)()
    }
}
