//! netif request decoding in netback (dom0-tools `netback::ring`): a
//! hostile frontend's TX and RX rings (slots, indexes, extra-info slots,
//! fragments) and frames queued for it, through a fake grant table.
//!
//! Input: a program of one-byte operations: write bytes into the TX or RX
//! ring page, move `req_prod`, poll TX, queue a frame for the guest, poll
//! RX. Checks: no panic; every frame handed to the bridge is an Ethernet
//! frame of `ETH_HLEN..=MAX_FRAME` bytes; a poll takes at most
//! `TX_BUDGET` packets; a fault sticks (later polls return it, no frame
//! is queued any more); read-only grants are never written; the guest's
//! `rsp_prod` never runs ahead of what it produced.
#![no_main]

use std::collections::BTreeMap;

use dom0_tools::netback::ring::{VifRings, ETH_HLEN, MAX_FRAME, TX_BUDGET};
use dom0_tools::netback::{GrantCopier, GrantRef, NetbackHost};
use dom0_tools::xenstore::DomId;
use libfuzzer_sys::fuzz_target;
use pv_guest_lib::netfront::sring;
use pv_guest_lib::xenbus::page::{MemPage, SharedPage, PAGE_SIZE};

const GUEST: DomId = 1;
const GRANTS: GrantRef = 8;
const READONLY_FROM: GrantRef = 6;

struct Host {
    pages: BTreeMap<GrantRef, MemPage>,
}

impl Host {
    fn page(&self, domid: DomId, g: GrantRef) -> Result<&MemPage, i16> {
        if domid != GUEST {
            return Err(-1);
        }
        self.pages.get(&g).ok_or(-4)
    }
}

impl GrantCopier for Host {
    fn copy_from_guest(
        &mut self,
        d: DomId,
        g: GrantRef,
        off: u16,
        dst: &mut [u8],
    ) -> Result<(), i16> {
        let p = self.page(d, g)?;
        if usize::from(off) + dst.len() > PAGE_SIZE {
            return Err(-7);
        }
        p.read(usize::from(off), dst);
        Ok(())
    }
    fn copy_to_guest(&mut self, d: DomId, g: GrantRef, off: u16, src: &[u8]) -> Result<(), i16> {
        if g >= READONLY_FROM {
            return Err(-3);
        }
        let p = self.page(d, g)?;
        if usize::from(off) + src.len() > PAGE_SIZE {
            return Err(-7);
        }
        p.write(usize::from(off), src);
        Ok(())
    }
}

impl NetbackHost for Host {
    type Page = MemPage;
    fn map_ring(&mut self, _domid: DomId, _gref: GrantRef) -> Option<MemPage> {
        None
    }
    fn bind(&mut self, _domid: DomId, _remote_port: u32) -> Option<u32> {
        None
    }
    fn unbind(&mut self, _local_port: u32) {}
    fn notify(&mut self, _local_port: u32) {}
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.byte().unwrap_or(0)) | u16::from(self.byte().unwrap_or(0)) << 8
    }
}

fn read_page(p: &MemPage) -> Vec<u8> {
    let mut v = vec![0u8; PAGE_SIZE];
    p.read(0, &mut v);
    v
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let sg = input.byte().unwrap_or(0) & 1 != 0;
    let pages = (0..GRANTS)
        .map(|g| {
            let p = MemPage::new();
            let b: Vec<u8> = (0..PAGE_SIZE)
                .map(|i| (i as u8).wrapping_mul(g as u8 + 1))
                .collect();
            p.write(0, &b);
            (g, p)
        })
        .collect();
    let mut host = Host { pages };
    let ro_before: Vec<Vec<u8>> = (READONLY_FROM..GRANTS)
        .map(|g| read_page(&host.pages[&g]))
        .collect();
    let tx = MemPage::new();
    let rx = MemPage::new();
    let mut vif = VifRings::new(GUEST, tx.clone(), rx.clone(), 5, 5, sg);
    let mut tx_prod = 0u32;
    let mut rx_prod = 0u32;
    let mut fault = None;

    let mut ops = 0;
    while let Some(op) = input.byte() {
        ops += 1;
        if ops > 128 {
            break;
        }
        match op % 8 {
            0 | 1 => {
                let page = if op % 8 == 0 { &tx } else { &rx };
                // Slots start at 64; the fuzzer's offsets land on them.
                let off = 64 + usize::from(input.u16()) % (PAGE_SIZE - 64);
                let n = usize::from(input.byte().unwrap_or(0));
                let b = input.bytes(n.min(PAGE_SIZE - off)).to_vec();
                page.write(off, &b);
            }
            2 => {
                let step = input.byte().unwrap_or(0);
                tx_prod = if step == 0xff {
                    u32::from(input.u16()) << 8
                } else {
                    tx_prod.wrapping_add(u32::from(step % 8))
                };
                tx.store_u32(sring::REQ_PROD, tx_prod);
            }
            3 => {
                let step = input.byte().unwrap_or(0);
                rx_prod = if step == 0xff {
                    u32::from(input.u16()) << 8
                } else {
                    rx_prod.wrapping_add(u32::from(step % 8))
                };
                rx.store_u32(sring::REQ_PROD, rx_prod);
            }
            4 | 5 => {
                let mut frames = Vec::new();
                let r = vif.tx_poll(&mut host, &mut |f: &[u8]| frames.push(f.len()));
                for &len in &frames {
                    assert!(
                        (ETH_HLEN..=MAX_FRAME).contains(&len),
                        "frame of {len} bytes"
                    );
                }
                match r {
                    Ok(n) => {
                        assert!(fault.is_none(), "a poll after a fault succeeded");
                        assert!(n <= TX_BUDGET, "{n} packets in one poll");
                        assert!(frames.len() <= n);
                    }
                    Err(f) => {
                        if let Some(old) = fault {
                            assert_eq!(f, old, "the fault changed");
                        }
                        fault = Some(f);
                        assert_eq!(vif.fault(), Some(f));
                    }
                }
                let rsp = tx.load_u32(sring::RSP_PROD);
                if fault.is_none() {
                    assert!(
                        tx_prod.wrapping_sub(rsp) as usize <= 512,
                        "TX rsp_prod {rsp} ahead of req_prod {tx_prod}"
                    );
                }
            }
            6 => {
                let len = usize::from(input.u16()) % (3 * PAGE_SIZE);
                let frame: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let queued = vif.rx_enqueue(&frame);
                if fault.is_some() {
                    assert!(!queued, "a frame queued for a faulted vif");
                }
            }
            _ => match vif.rx_poll(&mut host) {
                Ok(_) => assert!(fault.is_none(), "an RX poll after a fault succeeded"),
                Err(f) => {
                    if let Some(old) = fault {
                        assert_eq!(f, old);
                    }
                    fault = Some(f);
                }
            },
        }
    }
    for (i, g) in (READONLY_FROM..GRANTS).enumerate() {
        assert!(
            read_page(&host.pages[&g]) == ro_before[i],
            "read-only grant {g} written"
        );
    }
});
