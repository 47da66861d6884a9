//! xenstored serving a hostile guest's ring page (dom0-tools
//! `xenstore::transport`): arbitrary bytes as the guest's request stream,
//! interleaved with polls, reads of the response ring, and writes of the
//! page's indexes and `connection` field.
//!
//! Input: a program of one-byte operations with their arguments. Checks:
//! no panic; another introduced guest (domain 4) is still served
//! afterwards; nothing outside `/local/domain/3` changed; the store is
//! consistent; the hostile domain's queued output stays bounded.
#![no_main]

#[path = "../common/xs.rs"]
mod xs;

use libfuzzer_sys::fuzz_target;
use pv_guest_lib::xenbus::page::{self as pg, MemPage, SharedPage};
use pv_guest_lib::xenbus::wire::{encode, MsgType};
use pv_guest_lib::xenbus::RingClient;

const FIELDS: [usize; 6] = [
    pg::REQ_CONS,
    pg::REQ_PROD,
    pg::RSP_CONS,
    pg::RSP_PROD,
    pg::CONNECTION,
    pg::ERROR,
];

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
    fn u32(&mut self) -> u32 {
        let mut w = [0u8; 4];
        let b = self.bytes(4);
        w[..b.len()].copy_from_slice(b);
        u32::from_le_bytes(w)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut xs = xs::daemon();
    let bad_page = MemPage::new();
    let good_page = MemPage::new();
    xs.host().add_ring(3, 0x30, bad_page.clone());
    xs.host().add_ring(4, 0x40, good_page.clone());
    let bad = xs
        .create_domain(&xs::info(3, "00000000-0000-0000-0000-000000000003", 0x30))
        .unwrap();
    let good = xs
        .create_domain(&xs::info(4, "00000000-0000-0000-0000-000000000004", 0x40))
        .unwrap();
    xs.poll_all();
    let before = xs::outside(&xs, 3);
    let mut guest = RingClient::new(bad_page.clone());

    let mut input = Input(data);
    let mut ops = 0;
    while let Some(op) = input.byte() {
        ops += 1;
        if ops > 256 {
            break;
        }
        match op % 8 {
            // Request bytes, as a well-behaved client would write them.
            0..=2 => {
                let n = usize::from(input.byte().unwrap_or(0)) * 4 + usize::from(op >> 3);
                let chunk = input.bytes(n).to_vec();
                let _ = guest.send(&chunk);
            }
            3 => {
                xs.poll(bad);
            }
            4 => {
                // Read replies; garbage is the guest's own problem.
                for _ in 0..32 {
                    match guest.recv() {
                        Ok((Some(_), _)) => {}
                        _ => break,
                    }
                }
            }
            5 => {
                let field = FIELDS[usize::from(op >> 3) % FIELDS.len()];
                let v = input.u32();
                bad_page.store_u32(field, v);
            }
            6 => {
                // A well-formed request with a fuzzed payload.
                let ty = u32::from(input.byte().unwrap_or(0)) % 32;
                let len = usize::from(input.byte().unwrap_or(0)) * 2;
                let payload = input.bytes(len).to_vec();
                let Some(ty) = MsgType::from_raw(u64::from(ty)) else {
                    continue;
                };
                let _ = guest.send(&encode(ty, u32::from(op), 0, &payload));
            }
            _ => {
                xs.poll_all();
                xs.flush_output();
            }
        }
    }
    xs.poll_all();

    // The other guest is still served.
    let mut client = RingClient::new(good_page.clone());
    while let Ok((Some(_), _)) = client.recv() {}
    let req = encode(MsgType::GetDomainPath, 77, 0, b"4\0");
    assert_eq!(client.send(&req).unwrap(), req.len(), "good ring full");
    xs.poll(good);
    let mut answered = false;
    for _ in 0..8 {
        match client.recv() {
            Ok((Some(m), _)) if m.header.req_id == 77 => {
                assert_eq!(m.payload, b"/local/domain/4\0");
                answered = true;
                break;
            }
            Ok((Some(_), _)) => {}
            _ => {
                xs.poll(good);
            }
        }
    }
    assert!(answered, "domain 4 is no longer served");

    assert!(xs.store().check(), "store inconsistent");
    assert_eq!(
        xs::outside(&xs, 3),
        before,
        "domain 3 changed nodes outside its home"
    );
    if let Some(info) = xs.conn_info(bad) {
        assert!(
            info.queued_bytes <= xs.quotas().max_output_bytes + 2 * 4096,
            "unbounded output: {} bytes",
            info.queued_bytes
        );
    }
});
