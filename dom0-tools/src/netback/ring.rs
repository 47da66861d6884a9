//! One connected vif's data path: the guest's TX ring (guest → Dom0,
//! copied out of the guest's grants) and RX ring (Dom0 → guest, copied
//! into the buffers the guest posted: "rx copy").
//!
//! Everything the frontend writes is validated, with Linux netback's
//! verdicts:
//!
//! - **fatal** (the vif is disconnected, [`VifFault`]): ring indexes that
//!   claim more requests than the ring holds, a packet of more than
//!   [`XEN_NETIF_NR_SLOTS_MIN`] slots, a slot crossing its page, an
//!   extra-info slot of an unknown type or too many of them;
//! - **error response** (`NETIF_RSP_ERROR`, packet dropped, the vif keeps
//!   working): a grant that cannot be copied, a packet shorter than an
//!   Ethernet header or longer than [`MAX_FRAME`], fragment sizes that do
//!   not add up, a GSO request (not offered).
//!
//! Frames sent with `NETTXF_csum_blank` get their TCP/UDP checksum
//! completed ([`super::csum`]) before they reach the bridge.
//!
//! RX: a frame is copied into one posted buffer per page of it (several
//! only with `feature-sg`); a buffer whose grant cannot be written gets an
//! error status for its slot. Each response goes to the slot of the
//! request it answers (netfront relies on that). Frames for a guest that
//! posts no buffers queue up to [`RX_QUEUE_MAX`] frames or
//! [`RX_QUEUE_MAX_BYTES`] bytes and are then dropped.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use hypercall_abi::io::netif::{
    NetifExtraInfo, NetifExtraType, NetifRsp, NetifRxRequest, NetifRxResponse, NetifTxRequest,
    NetifTxResponse, NETRXF_MORE_DATA, NETTXF_CSUM_BLANK, NETTXF_EXTRA_INFO, NETTXF_MORE_DATA,
    NET_RX_RING_SIZE, NET_TX_RING_SIZE, XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_NR_SLOTS_MIN,
};
use hypercall_abi::io::ring::{need_notify, RingIdx};
use pv_guest_lib::netfront::sring;
use pv_guest_lib::netfront::{RX_ENTRY, TX_ENTRY};
use pv_guest_lib::xenbus::page::SharedPage;

use super::{GrantCopier, NetbackHost};
use crate::xenstore::DomId;

/// Bytes of a page.
pub const PAGE_SIZE: usize = 4096;
/// Shortest frame accepted (an Ethernet header).
pub const ETH_HLEN: usize = 14;
/// Longest frame accepted from a guest: 1500 bytes of payload, Ethernet
/// and VLAN headers (no GSO is offered).
pub const MAX_FRAME: usize = 1500 + 14 + 4;
/// Frames queued for a guest that posts no receive buffers.
pub const RX_QUEUE_MAX: usize = 256;
/// Bytes queued for such a guest.
pub const RX_QUEUE_MAX_BYTES: usize = 512 * 1024;
/// Packets taken from one TX ring per [`VifRings::tx_poll`] (fairness).
pub const TX_BUDGET: usize = 64;
/// Extra-info slots one packet may carry.
const MAX_EXTRAS: usize = 4;

/// Why a vif was disconnected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VifFault {
    /// `req_prod` claims more TX requests than the ring holds.
    TxRingOverflow,
    /// `req_prod` claims more RX requests than the ring holds.
    RxRingOverflow,
    /// A packet of more than [`XEN_NETIF_NR_SLOTS_MIN`] slots.
    TooManySlots,
    /// A slot whose data crosses its page.
    CrossPage,
    /// An extra-info slot of an unknown type, or too many.
    BadExtra,
}

impl VifFault {
    /// What the error node says.
    pub fn message(self) -> &'static str {
        match self {
            VifFault::TxRingOverflow => "Impossible number of tx requests",
            VifFault::RxRingOverflow => "Impossible number of rx requests",
            VifFault::TooManySlots => "Too many slots in a tx packet",
            VifFault::CrossPage => "Cross page boundary",
            VifFault::BadExtra => "Bad extra info",
        }
    }
}

/// Counters of one vif.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VifStats {
    /// Frames taken from the guest.
    pub tx_packets: u64,
    /// Guest packets answered with an error.
    pub tx_errors: u64,
    /// Frames delivered to the guest.
    pub rx_packets: u64,
    /// Frames for the guest dropped (queue full, too big, copy failed).
    pub rx_dropped: u64,
}

/// The rings of one connected vif.
pub struct VifRings<P> {
    domid: DomId,
    tx: P,
    rx: P,
    /// Local port for TX notifications.
    pub tx_port: u32,
    /// Local port for RX notifications (the same as `tx_port` without
    /// split event channels).
    pub rx_port: u32,
    sg: bool,
    tx_req_cons: RingIdx,
    tx_rsp_prod: RingIdx,
    rx_req_cons: RingIdx,
    rx_rsp_prod: RingIdx,
    rx_queue: VecDeque<Vec<u8>>,
    rx_queue_bytes: usize,
    fault: Option<VifFault>,
    stats: VifStats,
}

struct Slot {
    req: NetifTxRequest,
    extra: bool,
}

impl<P: SharedPage> VifRings<P> {
    /// Rings the backend just mapped (the frontend initialised them).
    /// `sg`: the frontend's `feature-sg` (several RX slots per frame).
    pub fn new(domid: DomId, tx: P, rx: P, tx_port: u32, rx_port: u32, sg: bool) -> Self {
        // Start where the frontend's indexes are (zero for a fresh ring).
        let tx_req_cons = tx.load_u32(sring::RSP_PROD);
        let rx_req_cons = rx.load_u32(sring::RSP_PROD);
        VifRings {
            domid,
            tx,
            rx,
            tx_port,
            rx_port,
            sg,
            tx_req_cons,
            tx_rsp_prod: tx_req_cons,
            rx_req_cons,
            rx_rsp_prod: rx_req_cons,
            rx_queue: VecDeque::new(),
            rx_queue_bytes: 0,
            fault: None,
            stats: VifStats::default(),
        }
    }

    /// The guest.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// Counters.
    pub fn stats(&self) -> VifStats {
        self.stats
    }

    /// Why the vif was disconnected, if it was.
    pub fn fault(&self) -> Option<VifFault> {
        self.fault
    }

    /// Frames waiting for receive buffers.
    pub fn rx_queued(&self) -> usize {
        self.rx_queue.len()
    }

    fn fail(&mut self, f: VifFault) -> VifFault {
        self.fault = Some(f);
        self.rx_queue.clear();
        self.rx_queue_bytes = 0;
        f
    }

    fn tx_read(&self, idx: RingIdx) -> NetifTxRequest {
        sring::read_slot(&self.tx, idx, NET_TX_RING_SIZE, TX_ENTRY)
    }

    fn tx_respond(&mut self, id: u16, status: NetifRsp) {
        let rsp = NetifTxResponse {
            id,
            status: status.raw(),
        };
        sring::write_slot(&self.tx, self.tx_rsp_prod, NET_TX_RING_SIZE, TX_ENTRY, &rsp);
        self.tx_rsp_prod = self.tx_rsp_prod.wrapping_add(1);
    }

    /// Takes up to [`TX_BUDGET`] packets from the guest, handing each good
    /// frame to `sink`, answers every request and notifies the guest if it
    /// asked. Returns the packets consumed (good or not), or the fault
    /// that disconnects the vif.
    pub fn tx_poll<H: NetbackHost<Page = P>>(
        &mut self,
        host: &mut H,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, VifFault> {
        if let Some(f) = self.fault {
            return Err(f);
        }
        let r = self.tx_work(host, sink);
        // Push whatever was answered, even on a fault.
        let old = self.tx.load_u32(sring::RSP_PROD);
        if old != self.tx_rsp_prod {
            self.tx.store_u32(sring::RSP_PROD, self.tx_rsp_prod);
            if need_notify(old, self.tx_rsp_prod, self.tx.load_u32(sring::RSP_EVENT)) {
                host.notify(self.tx_port);
            }
        }
        r.map_err(|f| self.fail(f))
    }

    fn tx_work(
        &mut self,
        host: &mut dyn GrantCopier,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, VifFault> {
        let mut done = 0;
        let mut slots: Vec<Slot> = Vec::new();
        while done < TX_BUDGET {
            let prod = self.tx.load_u32(sring::REQ_PROD);
            let avail = prod.wrapping_sub(self.tx_req_cons);
            if avail as usize > NET_TX_RING_SIZE {
                return Err(VifFault::TxRingOverflow);
            }
            if avail == 0 {
                // RING_FINAL_CHECK_FOR_REQUESTS.
                self.tx
                    .store_u32(sring::REQ_EVENT, self.tx_req_cons.wrapping_add(1));
                if self.tx.load_u32(sring::REQ_PROD) == self.tx_req_cons {
                    break;
                }
                continue;
            }
            // Gather one packet's slots; stop (without consuming) if the
            // guest has not published all of them yet.
            slots.clear();
            let mut idx = self.tx_req_cons;
            let first = self.tx_read(idx);
            idx = idx.wrapping_add(1);
            slots.push(Slot {
                req: first,
                extra: false,
            });
            let mut bad = false;
            let mut incomplete = false;
            if first.flags & NETTXF_EXTRA_INFO != 0 {
                let mut n = 0;
                loop {
                    if idx == prod {
                        incomplete = true;
                        break;
                    }
                    n += 1;
                    if n > MAX_EXTRAS {
                        return Err(VifFault::BadExtra);
                    }
                    let raw = self.tx_read(idx);
                    idx = idx.wrapping_add(1);
                    let ex: NetifExtraInfo =
                        hypercall_abi::union_read(zerocopy::IntoBytes::as_bytes(&raw));
                    match NetifExtraType::from_raw(u64::from(ex.r#type)) {
                        Some(NetifExtraType::McastAdd | NetifExtraType::McastDel)
                        | Some(NetifExtraType::Hash) => {}
                        // Not offered: drop the packet, keep the vif.
                        Some(NetifExtraType::Gso) => bad = true,
                        _ => return Err(VifFault::BadExtra),
                    }
                    slots.push(Slot {
                        req: raw,
                        extra: true,
                    });
                    if ex.flags & XEN_NETIF_EXTRA_FLAG_MORE == 0 {
                        break;
                    }
                }
            }
            let mut cur_flags = first.flags;
            let mut frags = 1;
            while !incomplete && cur_flags & NETTXF_MORE_DATA != 0 {
                if frags >= XEN_NETIF_NR_SLOTS_MIN as usize {
                    return Err(VifFault::TooManySlots);
                }
                if idx == prod {
                    incomplete = true;
                    break;
                }
                let r = self.tx_read(idx);
                idx = idx.wrapping_add(1);
                cur_flags = r.flags;
                frags += 1;
                slots.push(Slot {
                    req: r,
                    extra: false,
                });
            }
            if incomplete {
                if avail as usize >= NET_TX_RING_SIZE {
                    return Err(VifFault::TooManySlots);
                }
                self.tx.store_u32(sring::REQ_EVENT, prod.wrapping_add(1));
                if self.tx.load_u32(sring::REQ_PROD) == prod {
                    break;
                }
                continue;
            }
            // Sizes: the first slot's size is the whole packet.
            let total = first.size as usize;
            let mut rest = 0usize;
            for s in slots.iter().skip(1).filter(|s| !s.extra) {
                if s.req.offset as usize + s.req.size as usize > PAGE_SIZE {
                    return Err(VifFault::CrossPage);
                }
                rest += s.req.size as usize;
            }
            let first_len = total.checked_sub(rest);
            match first_len {
                Some(l) if first.offset as usize + l > PAGE_SIZE => {
                    return Err(VifFault::CrossPage)
                }
                None => bad = true,
                _ => {}
            }
            if !(ETH_HLEN..=MAX_FRAME).contains(&total) {
                bad = true;
            }
            let mut frame = Vec::new();
            if !bad {
                frame = vec![0u8; total];
                let mut at = 0;
                for (i, s) in slots.iter().filter(|s| !s.extra).enumerate() {
                    let len = if i == 0 {
                        first_len.unwrap_or(0)
                    } else {
                        s.req.size as usize
                    };
                    if host
                        .copy_from_guest(
                            self.domid,
                            s.req.gref,
                            s.req.offset,
                            &mut frame[at..at + len],
                        )
                        .is_err()
                    {
                        bad = true;
                        break;
                    }
                    at += len;
                }
            }
            self.tx_req_cons = idx;
            let status = if bad { NetifRsp::Error } else { NetifRsp::Okay };
            for s in &slots {
                if s.extra {
                    self.tx_respond(0, NetifRsp::Null);
                } else {
                    self.tx_respond(s.req.id, status);
                }
            }
            if bad {
                self.stats.tx_errors += 1;
            } else {
                self.stats.tx_packets += 1;
                if first.flags & NETTXF_CSUM_BLANK != 0 {
                    super::csum::complete(&mut frame);
                }
                sink(&frame);
            }
            done += 1;
        }
        Ok(done)
    }

    /// Queues a frame for the guest (dropped if the queue is full, the vif
    /// is down, or the frame cannot fit the guest's buffers). Call
    /// [`VifRings::rx_poll`] to deliver.
    pub fn rx_enqueue(&mut self, frame: &[u8]) -> bool {
        if self.fault.is_some()
            || self.rx_queue.len() >= RX_QUEUE_MAX
            || self.rx_queue_bytes + frame.len() > RX_QUEUE_MAX_BYTES
            || frame.len() < ETH_HLEN
            || (!self.sg && frame.len() > PAGE_SIZE)
            || frame.len() > PAGE_SIZE * XEN_NETIF_NR_SLOTS_MIN as usize
        {
            self.stats.rx_dropped += 1;
            return false;
        }
        self.rx_queue_bytes += frame.len();
        self.rx_queue.push_back(frame.to_vec());
        true
    }

    /// Copies queued frames into the buffers the guest posted, answers
    /// them and notifies the guest if it asked. Returns frames delivered.
    pub fn rx_poll<H: NetbackHost<Page = P>>(&mut self, host: &mut H) -> Result<usize, VifFault> {
        if let Some(f) = self.fault {
            return Err(f);
        }
        let r = self.rx_work(host);
        let old = self.rx.load_u32(sring::RSP_PROD);
        if old != self.rx_rsp_prod {
            self.rx.store_u32(sring::RSP_PROD, self.rx_rsp_prod);
            if need_notify(old, self.rx_rsp_prod, self.rx.load_u32(sring::RSP_EVENT)) {
                host.notify(self.rx_port);
            }
        }
        r.map_err(|f| self.fail(f))
    }

    fn rx_work(&mut self, host: &mut dyn GrantCopier) -> Result<usize, VifFault> {
        let mut done = 0;
        while let Some(frame) = self.rx_queue.front() {
            let need = frame.len().div_ceil(PAGE_SIZE) as u32;
            let prod = self.rx.load_u32(sring::REQ_PROD);
            let avail = prod.wrapping_sub(self.rx_req_cons);
            if avail as usize > NET_RX_RING_SIZE {
                return Err(VifFault::RxRingOverflow);
            }
            if avail < need {
                // Ask to be told when enough buffers are posted.
                self.rx
                    .store_u32(sring::REQ_EVENT, self.rx_req_cons.wrapping_add(need));
                let prod = self.rx.load_u32(sring::REQ_PROD);
                if prod.wrapping_sub(self.rx_req_cons) < need {
                    break;
                }
                continue;
            }
            let frame = self.rx_queue.pop_front().unwrap_or_default();
            self.rx_queue_bytes -= frame.len();
            let mut ok = true;
            for (i, chunk) in frame.chunks(PAGE_SIZE).enumerate() {
                let req: NetifRxRequest =
                    sring::read_slot(&self.rx, self.rx_req_cons, NET_RX_RING_SIZE, RX_ENTRY);
                self.rx_req_cons = self.rx_req_cons.wrapping_add(1);
                let copied = host.copy_to_guest(self.domid, req.gref, 0, chunk).is_ok();
                ok &= copied;
                let last = (i + 1) * PAGE_SIZE >= frame.len();
                let rsp = NetifRxResponse {
                    id: req.id,
                    offset: 0,
                    flags: if last { 0 } else { NETRXF_MORE_DATA },
                    status: if copied {
                        chunk.len() as i16
                    } else {
                        NetifRsp::Error.raw()
                    },
                };
                sring::write_slot(&self.rx, self.rx_rsp_prod, NET_RX_RING_SIZE, RX_ENTRY, &rsp);
                self.rx_rsp_prod = self.rx_rsp_prod.wrapping_add(1);
            }
            if ok {
                self.stats.rx_packets += 1;
            } else {
                self.stats.rx_dropped += 1;
            }
            done += 1;
        }
        Ok(done)
    }
}
