//! The daemon's end of each domain's ring page: reads whole requests from
//! `req[]` (however the guest splits them), hands them to
//! [`Xenstored::handle`], and writes queued replies and watch events into
//! `rsp[]` as room allows. [`Xenstored::poll`] is what Dom0's main loop
//! calls when a domain's store event channel fires; it returns the ports
//! to notify.
//!
//! Everything on the page is the guest's to scribble on, so xenstored keeps
//! its own copies of the indexes it owns (`req_cons`, `rsp_prod`) and only
//! reads `req_prod` and `rsp_cons`. A producer more than a ring ahead (or a
//! consumer ahead of the producer) cuts the connection off with
//! `XENSTORE_ERROR_RINGIDX`, a header announcing more than
//! `XENSTORE_PAYLOAD_MAX` bytes with `XENSTORE_ERROR_PROTO`; either way only
//! that domain's connection is affected. Flow control: once
//! `Quotas::outstanding_requests` replies wait for a domain that does not
//! drain its ring, its requests are left in the ring; watch events beyond
//! `Quotas::max_output_bytes` cut it off (`XENSTORE_ERROR_COMM`). One poll
//! consumes at most [`POLL_BUDGET`] request bytes per connection, so a
//! guest refilling its ring forever cannot starve the others.

use alloc::vec::Vec;

use pv_guest_lib::abi::io::xs_wire::{
    XENSTORE_CONNECTED, XENSTORE_ERROR_NONE, XENSTORE_ERROR_PROTO, XENSTORE_ERROR_RINGIDX,
    XENSTORE_RECONNECT, XENSTORE_SERVER_FEATURE_ERROR, XENSTORE_SERVER_FEATURE_RECONNECTION,
};
use pv_guest_lib::xenbus::page::{
    ring_read, ring_write, SharedPage, CONNECTION, ERROR, REQ, REQ_CONS, REQ_PROD, RSP, RSP_CONS,
    RSP_PROD, SERVER_FEATURES,
};
use pv_guest_lib::xenbus::wire::{Header, HEADER_LEN, XENSTORE_PAYLOAD_MAX, XENSTORE_RING_SIZE};

use super::{ConnId, DomId, Host, Xenstored};

const RING: u32 = XENSTORE_RING_SIZE as u32;

/// Request bytes one [`Xenstored::poll`] consumes from one connection at
/// most.
pub const POLL_BUDGET: usize = 4 * XENSTORE_RING_SIZE;

/// "Send an event on this port": the domain has replies to read or room to
/// write more requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notify {
    /// The connection.
    pub conn: ConnId,
    /// The domain.
    pub domid: DomId,
    /// The local (Dom0) end of its store event channel.
    pub port: u32,
}

/// What a poll did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollResult {
    /// Ports to notify.
    pub notify: Vec<Notify>,
    /// Connections that still have requests waiting (budget used up): poll
    /// them again.
    pub more: Vec<ConnId>,
}

impl PollResult {
    fn notify(&mut self, n: Notify) {
        if !self.notify.contains(&n) {
            self.notify.push(n);
        }
    }
}

enum Step {
    Idle,
    Progress,
    Budget,
}

impl<H: Host> Xenstored<H> {
    /// Serves `conn`'s ring (call on its event channel): handles
    /// reconnection requests, reads and answers requests, then flushes
    /// pending output of every ring connection.
    pub fn poll(&mut self, conn: ConnId) -> PollResult {
        let mut res = PollResult::default();
        self.poll_one(conn, &mut res);
        self.flush_all(&mut res);
        res
    }

    /// [`Xenstored::poll`] for every ring connection.
    pub fn poll_all(&mut self) -> PollResult {
        let mut res = PollResult::default();
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.ring.is_some())
            .map(|(&i, _)| i)
            .collect();
        for id in ids {
            self.poll_one(id, &mut res);
        }
        self.flush_all(&mut res);
        res
    }

    /// Writes pending output (e.g. watch events caused by Dom0's direct
    /// writes) into every ring with room, without reading requests.
    pub fn flush_output(&mut self) -> PollResult {
        let mut res = PollResult::default();
        self.flush_all(&mut res);
        res
    }

    fn notify_of(&self, conn: ConnId) -> Option<Notify> {
        let c = self.conns.get(&conn)?;
        Some(Notify {
            conn,
            domid: c.domid,
            port: c.ring.as_ref()?.port,
        })
    }

    fn poll_one(&mut self, conn: ConnId, res: &mut PollResult) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let Some(r) = &c.ring else { return };
        if r.page.load_u32(CONNECTION) == XENSTORE_RECONNECT {
            self.reset_ring(conn);
            if let Some(n) = self.notify_of(conn) {
                res.notify(n);
            }
        }
        let mut budget = POLL_BUDGET;
        loop {
            let step = self.read_requests(conn, &mut budget);
            let wrote = self.flush(conn);
            if wrote || matches!(step, Step::Progress | Step::Budget) {
                if let Some(n) = self.notify_of(conn) {
                    res.notify(n);
                }
            }
            match step {
                Step::Budget => {
                    res.more.push(conn);
                    return;
                }
                Step::Idle if !wrote => return,
                _ => {}
            }
        }
    }

    /// Reads and handles requests until the ring is empty, the connection
    /// has too many unread replies, or the budget is spent.
    fn read_requests(&mut self, conn: ConnId, budget: &mut usize) -> Step {
        let mut step = Step::Idle;
        loop {
            let limit = self.quotas.outstanding_requests;
            let Some(c) = self.conns.get_mut(&conn) else {
                return step;
            };
            if c.broken.is_some() || c.pending_replies() >= limit {
                return step;
            }
            let Some(r) = c.ring.as_mut() else {
                return step;
            };
            if *budget == 0 {
                let pending = r.page.load_u32(REQ_PROD) != r.req_cons;
                return if pending { Step::Budget } else { step };
            }
            let prod = r.page.load_u32(REQ_PROD);
            let avail = prod.wrapping_sub(r.req_cons);
            if avail > RING {
                self.cut_off(conn, XENSTORE_ERROR_RINGIDX);
                return step;
            }
            if avail == 0 {
                return step;
            }
            // Take what completes the header, or else the payload.
            let have = c.inbuf.len();
            let need = if have < HEADER_LEN {
                HEADER_LEN - have
            } else {
                let len = Header::decode(&c.inbuf).map_or(0, |h| h.len as usize);
                HEADER_LEN + len - have
            };
            let n = need.min(avail as usize).min(*budget);
            c.inbuf.resize(have + n, 0);
            ring_read(&r.page, REQ, r.req_cons, &mut c.inbuf[have..]);
            r.req_cons = r.req_cons.wrapping_add(n as u32);
            r.page.store_u32(REQ_CONS, r.req_cons);
            *budget -= n;
            step = Step::Progress;
            let Some(h) = Header::decode(&c.inbuf) else {
                continue;
            };
            if h.len as usize > XENSTORE_PAYLOAD_MAX {
                self.cut_off(conn, XENSTORE_ERROR_PROTO);
                return step;
            }
            if c.inbuf.len() == HEADER_LEN + h.len as usize {
                let msg = core::mem::take(&mut c.inbuf);
                self.handle(conn, &msg);
            }
        }
    }

    fn flush_all(&mut self, res: &mut PollResult) {
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.ring.is_some() && !c.out.is_empty())
            .map(|(&i, _)| i)
            .collect();
        for id in ids {
            if self.flush(id) {
                if let Some(n) = self.notify_of(id) {
                    res.notify(n);
                }
            }
        }
    }

    /// Writes queued output of `conn` into its response ring; whether
    /// anything was written.
    fn flush(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        if c.broken.is_some() {
            return false;
        }
        let Some(r) = c.ring.as_mut() else {
            return false;
        };
        let cons = r.page.load_u32(RSP_CONS);
        let used = r.rsp_prod.wrapping_sub(cons);
        if used > RING {
            self.cut_off(conn, XENSTORE_ERROR_RINGIDX);
            return false;
        }
        let mut space = (RING - used) as usize;
        let mut wrote = false;
        while space > 0 {
            let Some(front) = c.out.front() else { break };
            let chunk = &front.bytes[c.out_off..];
            let n = chunk.len().min(space);
            ring_write(&r.page, RSP, r.rsp_prod, &chunk[..n]);
            r.rsp_prod = r.rsp_prod.wrapping_add(n as u32);
            space -= n;
            wrote = true;
            c.out_off += n;
            if c.out_off == front.bytes.len() {
                c.out_off = 0;
                // (`Conn::pop_out`, with `c.ring` borrowed.)
                if let Some(o) = c.out.pop_front() {
                    c.out_bytes = c.out_bytes.saturating_sub(o.bytes.len());
                    c.replies = c.replies.saturating_sub(usize::from(o.reply));
                }
            }
        }
        if wrote {
            r.page.store_u32(RSP_PROD, r.rsp_prod);
        }
        wrote
    }

    /// Empties both rings and the connection's state and advertises our
    /// features (introduction and `XENSTORE_RECONNECT`).
    pub(crate) fn reset_ring(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.reset();
        c.broken = None;
        let Some(r) = c.ring.as_mut() else { return };
        r.req_cons = 0;
        r.rsp_prod = 0;
        for off in [REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD] {
            r.page.store_u32(off, 0);
        }
        r.page.store_u32(
            SERVER_FEATURES,
            XENSTORE_SERVER_FEATURE_RECONNECTION | XENSTORE_SERVER_FEATURE_ERROR,
        );
        r.page.store_u32(ERROR, XENSTORE_ERROR_NONE);
        r.page.store_u32(CONNECTION, XENSTORE_CONNECTED);
    }

    /// The ring connection whose event channel is local port `port` (what
    /// the main loop looks up when a port fires).
    pub fn conn_for_port(&self, port: u32) -> Option<ConnId> {
        self.conns
            .iter()
            .find(|(_, c)| c.ring.as_ref().is_some_and(|r| r.port == port))
            .map(|(&id, _)| id)
    }

    /// The machine frame of `conn`'s ring page.
    pub fn ring_mfn(&self, conn: ConnId) -> Option<u64> {
        self.conns.get(&conn)?.ring.as_ref().map(|r| r.mfn)
    }
}
