//! The blkif shared ring (`public/io/ring.h` with blkif's entries), both
//! ends: [`FrontRing`] (the guest's blkfront) and [`BackRing`] (Dom0's
//! blkback uses it too). The ring spans 1–16 granted pages
//! (`ring-page-order`), reached through [`SharedPage`]s, so the same code
//! runs on mapped pages on the metal and on in-memory pages in host tests.
//!
//! The peer may be hostile: every index it writes is read once and checked
//! before use (a producer index that claims more than a ring of work is an
//! [`RingError::Overflow`]), entries are copied out of the shared page
//! before they are looked at (no double fetch), and slot offsets are always
//! masked into the ring.

use alloc::vec::Vec;
use core::sync::atomic::{fence, Ordering};

use zerocopy::{FromBytes, IntoBytes};

use crate::abi::io::blkif::{blk_ring_size, BlkifResponse, BlkifSringEntry};
use crate::abi::io::ring::{need_notify, RingIdx, SRING_HEADER_SIZE};
use crate::xenbus::page::{SharedPage, PAGE_SIZE};

/// Offset of `req_prod` in the header.
pub const REQ_PROD: usize = 0;
/// Offset of `req_event`.
pub const REQ_EVENT: usize = 4;
/// Offset of `rsp_prod`.
pub const RSP_PROD: usize = 8;
/// Offset of `rsp_event`.
pub const RSP_EVENT: usize = 12;
/// Size of one ring slot (`union blkif_sring_entry`).
pub const ENTRY_SIZE: usize = core::mem::size_of::<BlkifSringEntry>();
/// Size of a response.
pub const RSP_SIZE: usize = core::mem::size_of::<BlkifResponse>();
/// Largest `ring-page-order` supported (16 pages, as Linux's
/// `XENBUS_MAX_RING_GRANT_ORDER`).
pub const MAX_RING_PAGE_ORDER: u32 = 4;

/// The peer broke the ring protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The peer's producer index claims more entries than the ring holds
    /// (or moved backwards).
    Overflow {
        /// The producer index it wrote.
        prod: RingIdx,
        /// Our private index it was checked against.
        base: RingIdx,
    },
}

/// The shared pages of a ring, as one contiguous byte range.
pub struct SharedRing<P> {
    pages: Vec<P>,
    size: u32,
}

impl<P: SharedPage> SharedRing<P> {
    /// A ring over `pages` (1, 2, 4, 8 or 16 of them, in `ring-ref<N>`
    /// order); `None` for any other count.
    pub fn new(pages: Vec<P>) -> Option<Self> {
        let n = pages.len();
        if n == 0 || !n.is_power_of_two() || n > 1 << MAX_RING_PAGE_ORDER {
            return None;
        }
        Some(SharedRing {
            size: blk_ring_size(n) as u32,
            pages,
        })
    }

    /// Number of slots (a power of two).
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The pages (for unmapping or revoking).
    pub fn into_pages(self) -> Vec<P> {
        self.pages
    }

    /// The pages.
    pub fn pages(&self) -> &[P] {
        &self.pages
    }

    /// Zeroes the header and every slot (the frontend does this before
    /// granting: `SHARED_RING_INIT`).
    pub fn init(&self) {
        let zero = [0u8; PAGE_SIZE];
        for p in &self.pages {
            p.write(0, &zero);
        }
        fence(Ordering::SeqCst);
    }

    fn load(&self, off: usize) -> RingIdx {
        self.pages[0].load_u32(off)
    }

    fn store(&self, off: usize, v: RingIdx) {
        self.pages[0].store_u32(off, v)
    }

    fn slot_offset(&self, idx: RingIdx) -> usize {
        SRING_HEADER_SIZE + (idx & (self.size - 1)) as usize * ENTRY_SIZE
    }

    /// Copies bytes at ring offset `off` (may cross pages).
    fn read(&self, mut off: usize, out: &mut [u8]) {
        let mut done = 0;
        while done < out.len() {
            let (pg, po) = (off / PAGE_SIZE, off % PAGE_SIZE);
            let n = (PAGE_SIZE - po).min(out.len() - done);
            match self.pages.get(pg) {
                Some(p) => p.read(po, &mut out[done..done + n]),
                None => out[done..done + n].fill(0),
            }
            done += n;
            off += n;
        }
    }

    fn write(&self, mut off: usize, data: &[u8]) {
        let mut done = 0;
        while done < data.len() {
            let (pg, po) = (off / PAGE_SIZE, off % PAGE_SIZE);
            let n = (PAGE_SIZE - po).min(data.len() - done);
            if let Some(p) = self.pages.get(pg) {
                p.write(po, &data[done..done + n]);
            }
            done += n;
            off += n;
        }
    }

    /// Copies slot `idx` out of the ring.
    pub fn read_slot(&self, idx: RingIdx) -> BlkifSringEntry {
        let mut e = BlkifSringEntry::default();
        self.read(self.slot_offset(idx), e.as_mut_bytes());
        e
    }

    /// Writes a whole slot (a request).
    pub fn write_slot(&self, idx: RingIdx, e: &BlkifSringEntry) {
        self.write(self.slot_offset(idx), e.as_bytes());
    }

    /// Reads slot `idx` as a response.
    pub fn read_response(&self, idx: RingIdx) -> BlkifResponse {
        let mut b = [0u8; RSP_SIZE];
        self.read(self.slot_offset(idx), &mut b);
        BlkifResponse::read_from_bytes(&b).unwrap_or_default()
    }

    /// Writes a response into slot `idx`.
    pub fn write_response(&self, idx: RingIdx, r: &BlkifResponse) {
        self.write(self.slot_offset(idx), r.as_bytes());
    }
}

/// The frontend's end: produces requests, consumes responses.
pub struct FrontRing<P> {
    ring: SharedRing<P>,
    req_prod_pvt: RingIdx,
    rsp_cons: RingIdx,
}

impl<P: SharedPage> FrontRing<P> {
    /// Initialises the shared ring (`SHARED_RING_INIT` + `FRONT_RING_INIT`).
    pub fn new(ring: SharedRing<P>) -> Self {
        ring.init();
        ring.store(RSP_EVENT, 1);
        ring.store(REQ_EVENT, 1);
        FrontRing {
            ring,
            req_prod_pvt: 0,
            rsp_cons: 0,
        }
    }

    /// The shared ring.
    pub fn shared(&self) -> &SharedRing<P> {
        &self.ring
    }

    /// The pages.
    pub fn into_pages(self) -> Vec<P> {
        self.ring.into_pages()
    }

    /// Slots not holding an unanswered request (`RING_FREE_REQUESTS`).
    pub fn free_requests(&self) -> u32 {
        self.ring.size - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Queues a request (not yet visible: see
    /// [`FrontRing::push_requests`]). False if the ring is full.
    pub fn put_request(&mut self, e: &BlkifSringEntry) -> bool {
        if self.free_requests() == 0 {
            return false;
        }
        self.ring.write_slot(self.req_prod_pvt, e);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        true
    }

    /// Publishes queued requests; true if the backend wants an event
    /// (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`).
    pub fn push_requests(&mut self) -> bool {
        let old = self.ring.load(REQ_PROD);
        let new = self.req_prod_pvt;
        fence(Ordering::Release);
        self.ring.store(REQ_PROD, new);
        fence(Ordering::SeqCst);
        need_notify(old, new, self.ring.load(REQ_EVENT))
    }

    /// The next response, if the backend produced one. A backend that
    /// claims more responses than there are requests outstanding is an
    /// error.
    pub fn next_response(&mut self) -> Result<Option<BlkifResponse>, RingError> {
        let rp = self.ring.load(RSP_PROD);
        fence(Ordering::Acquire);
        let outstanding = self.req_prod_pvt.wrapping_sub(self.rsp_cons);
        let avail = rp.wrapping_sub(self.rsp_cons);
        if avail > outstanding {
            return Err(RingError::Overflow {
                prod: rp,
                base: self.rsp_cons,
            });
        }
        if avail == 0 {
            return Ok(None);
        }
        let r = self.ring.read_response(self.rsp_cons);
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(r))
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES`: asks for an event on the next
    /// response; true if responses arrived meanwhile.
    pub fn final_check_for_responses(&mut self) -> bool {
        if self.ring.load(RSP_PROD) != self.rsp_cons {
            return true;
        }
        self.ring.store(RSP_EVENT, self.rsp_cons.wrapping_add(1));
        fence(Ordering::SeqCst);
        self.ring.load(RSP_PROD) != self.rsp_cons
    }

    /// Requests not yet answered.
    pub fn outstanding(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }
}

/// The backend's end: consumes requests, produces responses.
pub struct BackRing<P> {
    ring: SharedRing<P>,
    req_cons: RingIdx,
    rsp_prod_pvt: RingIdx,
}

impl<P: SharedPage> BackRing<P> {
    /// `BACK_RING_ATTACH` at the indexes the shared page holds now (0 for
    /// a fresh ring): a frontend's first requests may already be there.
    pub fn new(ring: SharedRing<P>) -> Self {
        let start = ring.load(RSP_PROD);
        BackRing {
            ring,
            req_cons: start,
            rsp_prod_pvt: start,
        }
    }

    /// The shared ring.
    pub fn shared(&self) -> &SharedRing<P> {
        &self.ring
    }

    /// The pages (to unmap).
    pub fn into_pages(self) -> Vec<P> {
        self.ring.into_pages()
    }

    /// Copies out the next request, if the frontend produced one. The
    /// frontend's `req_prod` must stay within a ring of our responses
    /// (`RING_REQUEST_PROD_OVERFLOW`); otherwise the ring is broken and
    /// must be shut down.
    pub fn next_request(&mut self) -> Result<Option<BlkifSringEntry>, RingError> {
        let rp = self.ring.load(REQ_PROD);
        fence(Ordering::Acquire);
        if rp.wrapping_sub(self.rsp_prod_pvt) > self.ring.size {
            return Err(RingError::Overflow {
                prod: rp,
                base: self.rsp_prod_pvt,
            });
        }
        if rp == self.req_cons {
            return Ok(None);
        }
        // RING_REQUEST_CONS_OVERFLOW: no slot to answer in yet.
        if self.req_cons.wrapping_sub(self.rsp_prod_pvt) >= self.ring.size {
            return Ok(None);
        }
        let e = self.ring.read_slot(self.req_cons);
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(Some(e))
    }

    /// Queues a response (visible after [`BackRing::push_responses`]).
    pub fn put_response(&mut self, r: &BlkifResponse) {
        self.ring.write_response(self.rsp_prod_pvt, r);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
    }

    /// Publishes queued responses; true if the frontend wants an event
    /// (`RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`).
    pub fn push_responses(&mut self) -> bool {
        let old = self.ring.load(RSP_PROD);
        let new = self.rsp_prod_pvt;
        fence(Ordering::Release);
        self.ring.store(RSP_PROD, new);
        fence(Ordering::SeqCst);
        need_notify(old, new, self.ring.load(RSP_EVENT))
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`: asks for an event on the next
    /// request; true if requests arrived meanwhile.
    pub fn final_check_for_requests(&mut self) -> bool {
        if self.ring.load(REQ_PROD) != self.req_cons {
            return true;
        }
        self.ring.store(REQ_EVENT, self.req_cons.wrapping_add(1));
        fence(Ordering::SeqCst);
        self.ring.load(REQ_PROD) != self.req_cons
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xenbus::page::MemPage;
    use alloc::vec;

    fn pair(n: usize) -> (FrontRing<MemPage>, BackRing<MemPage>, Vec<MemPage>) {
        let pages: Vec<MemPage> = (0..n).map(|_| MemPage::new()).collect();
        let f = FrontRing::new(SharedRing::new(pages.clone()).unwrap());
        let b = BackRing::new(SharedRing::new(pages.clone()).unwrap());
        (f, b, pages)
    }

    fn req(id: u64) -> BlkifSringEntry {
        let mut e = BlkifSringEntry::default();
        e.req.id = id;
        e.req.nr_segments = 11;
        for (i, s) in e.req.seg.iter_mut().enumerate() {
            s.gref = id as u32 * 100 + i as u32;
        }
        e
    }

    #[test]
    fn sizes() {
        assert!(SharedRing::new(vec![MemPage::new(); 3]).is_none());
        assert!(SharedRing::<MemPage>::new(vec![]).is_none());
        assert!(SharedRing::new(vec![MemPage::new(); 32]).is_none());
        assert_eq!(
            SharedRing::new(vec![MemPage::new(); 4]).unwrap().size(),
            128
        );
    }

    #[test]
    fn round_trip_wrapping_across_pages() {
        let (mut f, mut b, _) = pair(4);
        let mut id = 0u64;
        // Several laps of a 128-slot ring: slots straddle page boundaries.
        for _ in 0..5 {
            while f.free_requests() > 0 {
                assert!(f.put_request(&req(id)));
                id += 1;
            }
            assert!(!f.put_request(&req(0)));
            f.push_requests();
            let mut n = 0;
            while let Some(e) = b.next_request().unwrap() {
                let r = BlkifResponse {
                    id: e.req.id,
                    operation: 1,
                    ..Default::default()
                };
                assert_eq!(e.req.seg[10].gref, e.req.id as u32 * 100 + 10);
                b.put_response(&r);
                n += 1;
            }
            assert_eq!(n, 128);
            b.push_responses();
            let first = id - 128;
            for k in first..id {
                assert_eq!(f.next_response().unwrap().unwrap().id, k);
            }
            assert_eq!(f.next_response().unwrap(), None);
        }
    }

    #[test]
    fn notify_hold_off() {
        let (mut f, mut b, _) = pair(1);
        f.put_request(&req(1));
        // Fresh ring: req_event = 1, so the first request notifies.
        assert!(f.push_requests());
        f.put_request(&req(2));
        // Backend has not re-armed: no event needed.
        assert!(!f.push_requests());
        while b.next_request().unwrap().is_some() {}
        assert!(!b.final_check_for_requests());
        f.put_request(&req(3));
        assert!(f.push_requests());
    }

    #[test]
    fn backend_rejects_jumping_req_prod() {
        let (_f, mut b, pages) = pair(1);
        pages[0].store_u32(REQ_PROD, 33);
        assert!(matches!(b.next_request(), Err(RingError::Overflow { .. })));
        pages[0].store_u32(REQ_PROD, u32::MAX); // backwards
        assert!(b.next_request().is_err());
        pages[0].store_u32(REQ_PROD, 32); // exactly a ring: fine
        for _ in 0..32 {
            assert!(b.next_request().unwrap().is_some());
        }
        assert!(b.next_request().unwrap().is_none());
    }

    #[test]
    fn frontend_rejects_extra_responses() {
        let (mut f, _b, pages) = pair(1);
        f.put_request(&req(1));
        f.push_requests();
        pages[0].store_u32(RSP_PROD, 2);
        assert!(f.next_response().is_err());
        pages[0].store_u32(RSP_PROD, 1);
        assert!(f.next_response().unwrap().is_some());
    }
}
