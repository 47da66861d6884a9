//! Hostile and unusual frontends, played by hand on the raw rings: bad
//! grant references get error responses, broken ring indexes or slot
//! layouts disconnect the offender alone, and every other guest keeps
//! talking. Also the protocol corners netfront itself never uses
//! (multi-slot packets, extra-info slots, split event channels, SG
//! receive).

mod netif_common;

use dom0_tools::netback::{error_path, UPLINK_PORT_BASE};
use dom0_tools::vif::Mac;
use hypercall_abi::io::netif::{
    NetifExtraInfo, NetifRxRequest, NetifRxResponse, NetifTxRequest, NetifTxResponse,
    NETRXF_MORE_DATA, NETTXF_CSUM_BLANK, NETTXF_EXTRA_INFO, NETTXF_MORE_DATA, NET_RX_RING_SIZE,
    NET_TX_RING_SIZE,
};
use netif_common::*;
use pv_guest_lib::netfront::{sring, Netfront, NetfrontHost, RX_ENTRY, TX_ENTRY};
use pv_guest_lib::xenbus::page::{MemPage, SharedPage};
use pv_guest_lib::xenbus::NO_TX;

/// A frontend driven by hand.
struct Raw {
    host: GuestHost,
    tx: MemPage,
    rx: MemPage,
    tx_prod: u32,
    tx_cons: u32,
    rx_prod: u32,
    rx_cons: u32,
}

impl Raw {
    /// Publishes rings and keys (`overrides`: `(key, None)` leaves a key
    /// out, `(key, Some(v))` sets it) and goes Connected.
    fn new(w: &mut World, xb: &mut Xb, domid: u16, overrides: &[(&str, Option<&str>)]) -> Raw {
        let mut host = GuestHost::new(domid, w.grants.clone());
        let tx = MemPage::new();
        let rx = MemPage::new();
        sring::init(&tx);
        sring::init(&rx);
        let tx_ref = host.grant(&tx, 0, false).unwrap().to_string();
        let rx_ref = host.grant(&rx, 0, false).unwrap().to_string();
        let mut keys: Vec<(&str, Option<String>)> = vec![
            ("tx-ring-ref", Some(tx_ref)),
            ("rx-ring-ref", Some(rx_ref)),
            ("event-channel", Some("7".into())),
            ("request-rx-copy", Some("1".into())),
            ("feature-rx-notify", Some("1".into())),
        ];
        for (k, v) in overrides {
            keys.retain(|(kk, _)| kk != k);
            keys.push((k, v.map(str::to_string)));
        }
        for (k, v) in keys {
            if let Some(v) = v {
                xb.write(NO_TX, &format!("device/vif/0/{k}"), v.as_bytes())
                    .unwrap();
            }
        }
        xb.write(NO_TX, "device/vif/0/state", b"4").unwrap();
        w.pump();
        Raw {
            host,
            tx,
            rx,
            tx_prod: 0,
            tx_cons: 0,
            rx_prod: 0,
            rx_cons: 0,
        }
    }

    /// A page granted to Dom0 holding `data` at `off`.
    fn buffer(&mut self, off: usize, data: &[u8], ro: bool) -> u32 {
        let p = self.host.alloc_page().unwrap();
        p.write(off, data);
        self.host.grant(&p, 0, ro).unwrap()
    }

    fn push_tx(&mut self, reqs: &[NetifTxRequest]) {
        for r in reqs {
            sring::write_slot(&self.tx, self.tx_prod, NET_TX_RING_SIZE, TX_ENTRY, r);
            self.tx_prod += 1;
        }
        self.tx.store_u32(sring::REQ_PROD, self.tx_prod);
    }

    fn tx_responses(&mut self) -> Vec<NetifTxResponse> {
        let prod = self.tx.load_u32(sring::RSP_PROD);
        let mut v = Vec::new();
        while self.tx_cons != prod {
            v.push(sring::read_slot(
                &self.tx,
                self.tx_cons,
                NET_TX_RING_SIZE,
                TX_ENTRY,
            ));
            self.tx_cons += 1;
        }
        v
    }

    fn post_rx(&mut self, id: u16, gref: u32) {
        let r = NetifRxRequest { id, pad: 0, gref };
        sring::write_slot(&self.rx, self.rx_prod, NET_RX_RING_SIZE, RX_ENTRY, &r);
        self.rx_prod += 1;
        self.rx.store_u32(sring::REQ_PROD, self.rx_prod);
    }

    fn rx_responses(&mut self) -> Vec<NetifRxResponse> {
        let prod = self.rx.load_u32(sring::RSP_PROD);
        let mut v = Vec::new();
        while self.rx_cons != prod {
            v.push(sring::read_slot(
                &self.rx,
                self.rx_cons,
                NET_RX_RING_SIZE,
                RX_ENTRY,
            ));
            self.rx_cons += 1;
        }
        v
    }
}

fn req(gref: u32, offset: u16, flags: u16, id: u16, size: u16) -> NetifTxRequest {
    NetifTxRequest {
        gref,
        offset,
        flags,
        id,
        size,
    }
}

/// Guest 1 is the raw frontend; guests 2 and 3 are well-behaved netfronts.
struct Scene {
    w: World,
    raw: Raw,
    b: Netfront<GuestHost>,
    c: Netfront<GuestHost>,
    _xr: Xb,
    _xb: Xb,
    _xc: Xb,
}

fn scene(overrides: &[(&str, Option<&str>)]) -> Scene {
    let mut w = World::new();
    let mut xr = w.add_guest(1, mac(1));
    let mut xb = w.add_guest(2, mac(2));
    let mut xc = w.add_guest(3, mac(3));
    let mut b = w.netfront(&mut xb, 2);
    let mut c = w.netfront(&mut xc, 3);
    // The bridge learns B and C before guest 1 connects (as their ARP
    // traffic would teach it).
    talk(&mut w, &mut b, &mut c);
    let raw = Raw::new(&mut w, &mut xr, 1, overrides);
    Scene {
        w,
        raw,
        b,
        c,
        _xr: xr,
        _xb: xb,
        _xc: xc,
    }
}

/// B and C exchange a frame each way.
fn talk(w: &mut World, b: &mut Netfront<GuestHost>, c: &mut Netfront<GuestHost>) {
    // Let earlier traffic settle first.
    loop {
        drain(b);
        drain(c);
        if w.pump() == 0 {
            break;
        }
    }
    drain(b);
    drain(c);
    let f = frame(mac(3), mac(2), b"still here");
    b.send(&f).unwrap();
    w.pump();
    assert_eq!(drain(c), vec![f]);
    let g = frame(mac(2), mac(3), b"me too");
    c.send(&g).unwrap();
    w.pump();
    assert_eq!(drain(b), vec![g]);
}

impl Scene {
    /// B and C can still exchange frames.
    fn others_still_talk(&mut self) {
        talk(&mut self.w, &mut self.b, &mut self.c);
    }

    fn assert_disconnected(&mut self, why: &str) {
        assert_eq!(self.w.backend_state(1).as_deref(), Some("5"));
        assert_eq!(self.w.read(&error_path(1, 0)).as_deref(), Some(why));
        assert_eq!(self.w.mapped.get(), 4, "the offender's rings are unmapped");
        assert!(self.w.nb.ports(1, 0).is_none());
        assert!(!self.w.nb.host().bound.iter().any(|&p| p / 1000 == 1));
        self.others_still_talk();
    }
}

#[test]
fn a_good_raw_frontend_works_with_multi_slot_packets_and_extras() {
    let mut s = scene(&[]);
    assert_eq!(s.w.backend_state(1).as_deref(), Some("4"));
    // 300 bytes: 100 in the first slot, 200 in the second; an extra-info
    // (multicast add) slot between them.
    let f = frame(mac(2), mac(1), &[0xab; 286]);
    let g1 = s.raw.buffer(4000 - 4, &f[..100], true);
    let g2 = s.raw.buffer(0, &f[100..], true);
    let mut ex = NetifExtraInfo {
        r#type: 2,
        ..Default::default()
    };
    ex.u.size = 0x1600;
    let mut exr = NetifTxRequest::default();
    hypercall_abi::union_write(zerocopy::IntoBytes::as_mut_bytes(&mut exr), &ex);
    s.raw.push_tx(&[
        req(g1, 3996, NETTXF_MORE_DATA | NETTXF_EXTRA_INFO, 7, 300),
        exr,
        req(g2, 0, 0, 8, 200),
    ]);
    s.w.pump();
    let rsp = s.raw.tx_responses();
    assert_eq!(
        rsp.iter().map(|r| (r.id, r.status)).collect::<Vec<_>>(),
        [(7, 0), (0, 1), (8, 0)]
    );
    assert_eq!(drain(&mut s.b), vec![f]);
    s.others_still_talk();
}

#[test]
fn bad_grants_get_error_responses_and_the_vif_keeps_working() {
    let mut s = scene(&[]);
    let f = frame(mac(2), mac(1), &[1; 50]);
    // A reference that does not exist, and one granted to another domain.
    let other = {
        let p = s.raw.host.alloc_page().unwrap();
        s.raw.host.grant(&p, 3, true).unwrap()
    };
    s.raw
        .push_tx(&[req(9999, 0, 0, 1, 64), req(other, 0, 0, 2, 64)]);
    s.w.pump();
    let r = s.raw.tx_responses();
    assert_eq!(
        r.iter().map(|r| (r.id, r.status)).collect::<Vec<_>>(),
        [(1, -1), (2, -1)]
    );
    // Runt, oversized, and sizes that do not add up.
    let g = s.raw.buffer(0, &f, true);
    s.raw.push_tx(&[
        req(g, 0, 0, 3, 10),
        req(g, 0, NETTXF_MORE_DATA, 4, 3000),
        req(g, 0, 0, 5, 1500),
        req(g, 0, NETTXF_MORE_DATA, 6, 64),
        req(g, 0, 0, 7, 100),
    ]);
    s.w.pump();
    let r = s.raw.tx_responses();
    assert_eq!(
        r.iter().map(|r| (r.id, r.status)).collect::<Vec<_>>(),
        [(3, -1), (4, -1), (5, -1), (6, -1), (7, -1)]
    );
    assert!(drain(&mut s.b).is_empty());
    // Then a good one goes through.
    s.raw.push_tx(&[req(g, 0, 0, 8, f.len() as u16)]);
    s.w.pump();
    assert_eq!(s.raw.tx_responses()[0].status, 0);
    assert_eq!(drain(&mut s.b), vec![f]);
    assert_eq!(s.w.backend_state(1).as_deref(), Some("4"));
    assert_eq!(s.w.nb.stats(1, 0).unwrap().tx_errors, 5);
    s.others_still_talk();
}

#[test]
fn tx_index_jumping_past_the_ring_disconnects() {
    let mut s = scene(&[]);
    s.raw.tx.store_u32(sring::REQ_PROD, 1000);
    s.w.pump();
    s.assert_disconnected("Impossible number of tx requests");
}

#[test]
fn a_slot_crossing_its_page_disconnects() {
    let mut s = scene(&[]);
    let g = s.raw.buffer(0, &[0; 64], true);
    s.raw.push_tx(&[req(g, 4000, 0, 1, 200)]);
    s.w.pump();
    s.assert_disconnected("Cross page boundary");
}

#[test]
fn too_many_slots_disconnect() {
    let mut s = scene(&[]);
    let g = s.raw.buffer(0, &[0; 64], true);
    let reqs: Vec<_> = (0..19)
        .map(|i| req(g, 0, NETTXF_MORE_DATA, i, 64))
        .collect();
    s.raw.push_tx(&reqs);
    s.w.pump();
    s.assert_disconnected("Too many slots in a tx packet");
}

#[test]
fn an_unknown_extra_disconnects() {
    let mut s = scene(&[]);
    let g = s.raw.buffer(0, &[0; 64], true);
    let mut exr = NetifTxRequest::default();
    let ex = NetifExtraInfo {
        r#type: 9,
        ..Default::default()
    };
    hypercall_abi::union_write(zerocopy::IntoBytes::as_mut_bytes(&mut exr), &ex);
    s.raw.push_tx(&[req(g, 0, NETTXF_EXTRA_INFO, 1, 64), exr]);
    s.w.pump();
    s.assert_disconnected("Bad extra info");
}

#[test]
fn an_incomplete_packet_waits_for_its_slots() {
    let mut s = scene(&[]);
    let f = frame(mac(2), mac(1), &[5; 186]);
    let g = s.raw.buffer(0, &f, true);
    s.raw.push_tx(&[req(g, 0, NETTXF_MORE_DATA, 1, 200)]);
    s.w.pump();
    assert!(s.raw.tx_responses().is_empty());
    assert_eq!(s.w.backend_state(1).as_deref(), Some("4"));
    let g2 = s.raw.buffer(0, &f[100..], true);
    // Rewrite: 100 bytes in the first, the rest in the second.
    sring::write_slot(
        &s.raw.tx,
        0,
        NET_TX_RING_SIZE,
        TX_ENTRY,
        &req(g, 0, NETTXF_MORE_DATA, 1, 200),
    );
    s.raw.push_tx(&[req(g2, 0, 0, 2, 100)]);
    s.w.pump();
    assert_eq!(s.raw.tx_responses().len(), 2);
    assert_eq!(drain(&mut s.b), vec![f]);
}

#[test]
fn rx_bad_grants_get_error_status_and_rx_index_jumps_disconnect() {
    let mut s = scene(&[]);
    // Buffers: a bad reference, a read-only grant, then a good one.
    let ro = s.raw.buffer(0, &[], true);
    let good = s.raw.buffer(0, &[], false);
    s.raw.post_rx(1, 4242);
    s.raw.post_rx(2, ro);
    s.raw.post_rx(3, good);
    for i in 0..3u8 {
        s.b.send(&frame(mac(1), mac(2), &[i; 46])).unwrap();
    }
    s.w.pump();
    let r = s.raw.rx_responses();
    assert_eq!(
        r.iter().map(|r| (r.id, r.status)).collect::<Vec<_>>(),
        [(1, -1), (2, -1), (3, 60)]
    );
    let page = s.w.grants.get(1, good).unwrap().page;
    let mut got = [0u8; 60];
    page.read(0, &mut got);
    assert_eq!(got.to_vec(), frame(mac(1), mac(2), &[2; 46]));
    assert_eq!(s.w.backend_state(1).as_deref(), Some("4"));
    // Now claim a thousand buffers.
    s.raw.rx.store_u32(sring::REQ_PROD, 1000);
    s.b.send(&frame(mac(1), mac(2), &[9; 46])).unwrap();
    s.w.pump();
    s.assert_disconnected("Impossible number of rx requests");
}

#[test]
fn a_guest_that_never_posts_buffers_only_loses_its_own_frames() {
    let mut s = scene(&[]);
    for i in 0..1000u32 {
        while s
            .b
            .send(&frame(Mac::BROADCAST, mac(2), &i.to_le_bytes()))
            .is_err()
        {
            s.w.pump();
            drain(&mut s.c);
        }
        if i % 50 == 0 {
            s.w.pump();
            drain(&mut s.c);
        }
    }
    s.w.pump();
    drain(&mut s.c);
    let st = s.w.nb.stats(1, 0).unwrap();
    assert_eq!(st.rx_packets, 0);
    assert!(st.rx_dropped >= 1000 - 256, "{st:?}");
    // C got every one (and the warm-up frame).
    assert_eq!(s.w.nb.stats(3, 0).unwrap().rx_packets, 1001);
    s.others_still_talk();
}

#[test]
fn requests_after_close_are_ignored() {
    let mut s = scene(&[]);
    s._xr.write(NO_TX, "device/vif/0/state", b"5").unwrap();
    s.w.pump();
    assert_eq!(s.w.backend_state(1).as_deref(), Some("5"));
    assert_eq!(s.w.mapped.get(), 4);
    let f = frame(mac(2), mac(1), &[0; 50]);
    let g = s.raw.buffer(0, &f, true);
    s.raw.push_tx(&[req(g, 0, 0, 1, 64)]);
    s.raw.tx.store_u32(sring::REQ_PROD, 0xdead_beef);
    s.w.pump();
    assert!(s.raw.tx_responses().is_empty());
    assert!(drain(&mut s.b).is_empty());
    s._xr.write(NO_TX, "device/vif/0/state", b"6").unwrap();
    s.w.pump();
    assert_eq!(s.w.backend_state(1).as_deref(), Some("6"));
    s.others_still_talk();
}

#[test]
fn bad_setups_are_refused_with_an_error_node() {
    for (overrides, why) in [
        (
            &[("request-rx-copy", Some("0"))][..],
            "/local/domain/1/device/vif/0/request-rx-copy: rx copy is required",
        ),
        (
            &[("feature-rx-notify", None)][..],
            "feature-rx-notify is mandatory",
        ),
        (
            &[("tx-ring-ref", Some("31337"))][..],
            "mapping shared-frames 31337/9",
        ),
        (
            &[("event-channel", None)][..],
            "reading /local/domain/1/device/vif/0/event-channel-tx",
        ),
        (
            &[("tx-ring-ref", Some("junk"))][..],
            "reading /local/domain/1/device/vif/0/tx-ring-ref",
        ),
        (
            &[("multi-queue-num-queues", Some("4"))][..],
            "guest requested more queues than supported",
        ),
    ] {
        let mut s = scene(overrides);
        assert_eq!(s.w.backend_state(1).as_deref(), Some("5"), "{why}");
        assert_eq!(s.w.read(&error_path(1, 0)).as_deref(), Some(why));
        assert_eq!(s.w.mapped.get(), 4, "{why}");
        s.others_still_talk();
    }
}

#[test]
fn split_event_channels_and_sg_receive() {
    let mut s = scene(&[
        ("event-channel", None),
        ("event-channel-tx", Some("7")),
        ("event-channel-rx", Some("8")),
        ("feature-sg", Some("1")),
    ]);
    assert_eq!(s.w.nb.ports(1, 0), Some((1007, 1008)));
    let nic = UPLINK_PORT_BASE;
    s.w.nb.add_uplink("xenbr0", nic);
    let big = frame(mac(1), Mac([0x52, 0x54, 0, 0, 0, 1]), &vec![7u8; 6000 - 14]);
    let g1 = s.raw.buffer(0, &[], false);
    let g2 = s.raw.buffer(0, &[], false);
    s.raw.post_rx(10, g1);
    s.raw.post_rx(11, g2);
    let now = s.w.now;
    s.w.nb.uplink_input(nic, &big, now, &mut |_, _| {});
    s.w.pump();
    let r = s.raw.rx_responses();
    assert_eq!(
        r.iter()
            .map(|r| (r.id, r.status, r.flags & NETRXF_MORE_DATA))
            .collect::<Vec<_>>(),
        [(10, 4096, NETRXF_MORE_DATA), (11, 1904, 0)]
    );
    let mut got = vec![0u8; 6000];
    s.w.grants
        .get(1, g1)
        .unwrap()
        .page
        .read(0, &mut got[..4096]);
    s.w.grants
        .get(1, g2)
        .unwrap()
        .page
        .read(0, &mut got[4096..]);
    assert_eq!(got, big);
    // Only the RX port was notified for it.
    assert!(s.w.nb.host().notified.contains(&1008));
    s.others_still_talk();
}

#[test]
fn blank_checksums_are_completed_on_the_way() {
    let mut s = scene(&[]);
    // IPv4/UDP 10.0.0.1 → 10.0.0.2 with a blank (garbage) checksum.
    let mut ip = vec![0x45, 0, 0, 20 + 8 + 4, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
    ip.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 12, 0xde, 0xad, b'p', b'i', b'n', b'g']);
    let f = frame(mac(2), mac(1), &ip);
    let g = s.raw.buffer(0, &f, true);
    s.raw
        .push_tx(&[req(g, 0, NETTXF_CSUM_BLANK, 1, f.len() as u16)]);
    s.w.pump();
    let mut want = f.clone();
    assert!(dom0_tools::netback::csum::complete(&mut want));
    assert_ne!(want, f);
    assert_eq!(drain(&mut s.b), vec![want]);
}

/// xorshift64*, for reproducible garbage.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Random slots (with plausible sizes, flags and references often enough
/// to get deep into the parser) and random indexes: netback never panics,
/// the offender is at worst disconnected, and the others keep talking.
#[test]
fn garbage_on_the_rings_never_hurts_anyone_else() {
    let (mut connected, mut cut, mut sent, mut refused) = (0, 0, 0, 0);
    for seed in 1..=24u64 {
        let mut s = scene(&[]);
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let good = s.raw.buffer(0, &frame(mac(2), mac(1), &[0x5a; 100]), true);
        let rxg = s.raw.buffer(0, &[], false);
        for round in 0..40 {
            let n = (rng.next() % 24) as u32;
            for _ in 0..n {
                let r = rng.next();
                // A third of the seeds are wild; the rest mostly plausible.
                let wild = seed.is_multiple_of(3);
                let req = NetifTxRequest {
                    gref: match r % 4 {
                        0 | 3 if !wild => good,
                        0 => good,
                        1 => rxg,
                        _ => (r >> 8) as u32 % 64,
                    },
                    offset: if !wild || r & 0x100 != 0 {
                        0
                    } else {
                        (r >> 16) as u16 % 5000
                    },
                    flags: if wild {
                        (r >> 32) as u16 & 0xf
                    } else {
                        (r >> 32) as u16 & 0x3 | if (r >> 36).is_multiple_of(8) { 4 } else { 0 }
                    },
                    id: (r >> 40) as u16,
                    size: match (r >> 48) % 3 {
                        0 => 114,
                        1 => (r >> 52) as u16 % 2000,
                        _ if wild => (r >> 50) as u16,
                        _ => 60 + (r >> 52) as u16 % 100,
                    },
                };
                sring::write_slot(&s.raw.tx, s.raw.tx_prod, NET_TX_RING_SIZE, TX_ENTRY, &req);
                s.raw.tx_prod = s.raw.tx_prod.wrapping_add(1);
                // A plausible frontend posts no more buffers than fit.
                if !wild && s.raw.rx_prod.wrapping_sub(s.raw.rx_cons) >= 200 {
                    continue;
                }
                let rr = NetifRxRequest {
                    id: r as u16,
                    pad: 0,
                    gref: if r & 1 == 0 { rxg } else { (r >> 20) as u32 },
                };
                sring::write_slot(&s.raw.rx, s.raw.rx_prod, NET_RX_RING_SIZE, RX_ENTRY, &rr);
                s.raw.rx_prod = s.raw.rx_prod.wrapping_add(1);
            }
            // Sometimes the indexes themselves are garbage.
            let wild = seed.is_multiple_of(3);
            let tx_prod = if wild && rng.next().is_multiple_of(16) {
                rng.next() as u32
            } else {
                s.raw.tx_prod
            };
            let rx_prod = if wild && rng.next().is_multiple_of(16) {
                rng.next() as u32
            } else {
                s.raw.rx_prod
            };
            s.raw.tx.store_u32(sring::REQ_PROD, tx_prod);
            s.raw.rx.store_u32(sring::REQ_PROD, rx_prod);
            if rng.next().is_multiple_of(8) {
                s.raw.tx.store_u32(sring::RSP_EVENT, rng.next() as u32);
            }
            // Traffic towards guest 1 too.
            let _ = s.b.send(&frame(mac(1), mac(2), &[round as u8; 60]));
            s.w.pump();
            s.raw.tx_responses();
            s.raw.rx_responses();
        }
        let st = s.w.backend_state(1).unwrap();
        assert!(st == "4" || st == "5", "seed {seed}: state {st}");
        if st == "5" {
            assert!(s.w.read(&error_path(1, 0)).is_some());
            assert_eq!(s.w.mapped.get(), 4);
            cut += 1;
        } else {
            connected += 1;
            let v = s.w.nb.stats(1, 0).unwrap();
            sent += v.tx_packets;
            refused += v.tx_errors;
        }
        s.others_still_talk();
    }
    // The garbage reached every verdict.
    assert!(connected > 0 && cut > 0, "{connected} {cut}");
    assert!(sent > 0 && refused > 0, "{sent} {refused}");
}

/// The same from the other side: a backend writing garbage into
/// netfront's rings gets errors, never a panic.
#[test]
fn garbage_from_a_backend_never_panics_netfront() {
    for seed in 1..=24u64 {
        let mut w = World::new();
        let mut xa = w.add_guest(1, mac(1));
        let mut a = w.netfront(&mut xa, 1);
        let key = |k: &str| -> u32 {
            w.read(&format!("/local/domain/1/device/vif/0/{k}"))
                .unwrap()
                .parse()
                .unwrap()
        };
        let (txr, rxr) = (key("tx-ring-ref"), key("rx-ring-ref"));
        let tx = w.grants.get(1, txr).unwrap().page;
        let rx = w.grants.get(1, rxr).unwrap().page;
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        for _ in 0..50 {
            for _ in 0..8 {
                let off = 64 + (rng.next() % (4096 - 64 - 8)) as usize;
                tx.write(off, &rng.next().to_le_bytes());
                let off = 64 + (rng.next() % (4096 - 64 - 8)) as usize;
                rx.write(off, &rng.next().to_le_bytes());
            }
            let r = rng.next();
            tx.store_u32(sring::RSP_PROD, (r % 80) as u32);
            rx.store_u32(sring::RSP_PROD, ((r >> 8) % 80) as u32);
            let _ = a.recv(|f| f.len());
            let _ = a.poll_tx();
            let _ = a.send(&frame(mac(2), mac(1), &[1; 50]));
        }
    }
}

#[test]
fn a_guest_cannot_steal_anothers_address() {
    let mut s = scene(&[]);
    // Guest 1 sends with B's address as its source, to teach the bridge.
    let forged = frame(Mac::BROADCAST, mac(2), b"I am B now");
    let g = s.raw.buffer(0, &forged, true);
    s.raw.push_tx(&[req(g, 0, 0, 1, forged.len() as u16)]);
    s.w.pump();
    assert_eq!(s.raw.tx_responses()[0].status, 0);
    assert_eq!(s.w.nb.spoofed(1, 0), Some(1));
    assert!(drain(&mut s.c).is_empty());
    let br = s.w.nb.bridge("xenbr0").unwrap();
    assert_eq!(
        br.lookup(&mac(2), s.w.now),
        Some(dom0_tools::netback::vif_port(2, 0))
    );
    s.others_still_talk();
    // With antispoofing off (a guest that bridges others), it passes.
    s.w.nb.antispoof = false;
    s.raw.push_tx(&[req(g, 0, 0, 2, forged.len() as u16)]);
    s.w.pump();
    assert_eq!(drain(&mut s.c), vec![forged]);
}
