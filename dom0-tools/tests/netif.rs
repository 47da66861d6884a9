//! netfront ↔ netback through the real xenstored, in-memory rings and a
//! fake grant table: the xenbus handshake with the keys Linux and libxl
//! use, frames between two guests across the learning bridge, the
//! physical uplink, detach.

mod netif_common;

use dom0_tools::netback::{VifParams, UPLINK_PORT_BASE};
use dom0_tools::vif::Mac;
use netif_common::*;
use pv_guest_lib::xenbus::NO_TX;

#[test]
fn handshake_writes_the_keys_xen_uses() {
    let mut w = World::new();
    let mut xb = w.add_guest(1, mac(1));
    let be = "/local/domain/0/backend/vif/1/0";
    let fe = "/local/domain/1/device/vif/0";
    for (k, v) in [
        ("frontend", fe),
        ("frontend-id", "1"),
        ("online", "1"),
        ("mac", "00:16:3e:00:00:01"),
        ("bridge", "xenbr0"),
        ("handle", "0"),
        ("type", "vif"),
        ("feature-sg", "1"),
        ("feature-rx-copy", "1"),
        ("feature-rx-flip", "0"),
        ("feature-split-event-channels", "1"),
        ("hotplug-status", "connected"),
        ("state", "2"),
    ] {
        assert_eq!(w.read(&format!("{be}/{k}")).as_deref(), Some(v), "{k}");
    }
    // The guest reads its own device directory and the backend's.
    assert_eq!(xb.read_string(NO_TX, "device/vif/0/backend").unwrap(), be);
    assert_eq!(
        xb.read_string(NO_TX, "device/vif/0/backend-id").unwrap(),
        "0"
    );
    assert_eq!(
        xb.read_string(NO_TX, &format!("{be}/feature-rx-copy"))
            .unwrap(),
        "1"
    );
    // ... but not another guest's.
    let mut other = w.add_guest(2, mac(2));
    assert!(other.read(NO_TX, &format!("{fe}/mac")).is_err());

    let nf = w.netfront(&mut xb, 1);
    assert!(nf.is_connected());
    assert_eq!(nf.mac(), mac(1).0);
    for (k, v) in [
        ("state", "4"),
        ("request-rx-copy", "1"),
        ("feature-rx-notify", "1"),
        ("feature-no-csum-offload", "1"),
    ] {
        assert_eq!(w.read(&format!("{fe}/{k}")).as_deref(), Some(v), "{k}");
    }
    assert!(w.read(&format!("{fe}/tx-ring-ref")).is_some());
    assert!(w.read(&format!("{fe}/event-channel")).is_some());
    assert_eq!(w.backend_state(1).as_deref(), Some("4"));
    assert_eq!(w.mapped.get(), 2);
    assert_eq!(w.nb.ports(1, 0), Some((1011, 1011)));
    assert!(w.d.borrow().store().check());
}

#[test]
fn two_guests_talk_across_the_bridge() {
    let mut w = World::new();
    let mut xa = w.add_guest(1, mac(1));
    let mut xb = w.add_guest(2, mac(2));
    let mut a = w.netfront(&mut xa, 1);
    let mut b = w.netfront(&mut xb, 2);

    // A broadcasts (an ARP-like hello): B and the bridge's other ports see it.
    let hello = frame(Mac::BROADCAST, mac(1), b"who has B?");
    a.send(&hello).unwrap();
    w.pump();
    assert_eq!(drain(&mut b), vec![hello.clone()]);
    assert!(drain(&mut a).is_empty(), "no hairpin");

    // B answers unicast; the bridge learned A.
    let reply = frame(mac(1), mac(2), b"B is here");
    b.send(&reply).unwrap();
    w.pump();
    assert_eq!(drain(&mut a), vec![reply]);
    assert!(drain(&mut b).is_empty());

    // Many frames both ways, more than the rings and buffers hold at once.
    for round in 0..10u32 {
        for i in 0..40u32 {
            let n = round * 100 + i;
            let pa = frame(mac(2), mac(1), &n.to_le_bytes().repeat(100));
            while a.send(&pa).is_err() {
                w.pump();
                drain(&mut b);
            }
        }
        for _ in 0..4 {
            w.pump();
        }
        let got = drain(&mut b);
        assert!(!got.is_empty());
        for f in &got {
            assert_eq!(f.len(), 14 + 400);
            assert_eq!(&f[0..6], &mac(2).0);
        }
    }
    let sa = w.nb.stats(1, 0).unwrap();
    let sb = w.nb.stats(2, 0).unwrap();
    assert_eq!(sa.tx_packets, 1 + 400);
    assert_eq!(sa.tx_errors, 0);
    assert!(sb.rx_packets >= 400, "{sb:?}");
    assert_eq!(a.stats().tx_errors, 0);
    let br = w.nb.bridge("xenbr0").unwrap();
    assert_eq!(
        br.lookup(&mac(1), w.now),
        Some(dom0_tools::netback::vif_port(1, 0))
    );
    assert_eq!(
        br.lookup(&mac(2), w.now),
        Some(dom0_tools::netback::vif_port(2, 0))
    );
}

#[test]
fn the_physical_nic_is_a_bridge_port() {
    let mut w = World::new();
    let nic = UPLINK_PORT_BASE;
    w.nb.add_uplink("xenbr0", nic);
    let mut xa = w.add_guest(1, mac(1));
    let mut a = w.netfront(&mut xa, 1);
    let host = Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]);

    // A frame for an unknown host floods to the NIC.
    let out = frame(host, mac(1), b"to the world");
    a.send(&out).unwrap();
    w.pump();
    assert_eq!(w.uplink_out, vec![(nic, out)]);

    // The host answers through the NIC.
    let back = frame(mac(1), host, b"hello guest");
    let mut sent = Vec::new();
    w.nb.uplink_input(nic, &back, w.now, &mut |p, f| sent.push((p, f.to_vec())));
    assert!(sent.is_empty());
    w.pump();
    assert_eq!(drain(&mut a), vec![back]);
}

#[test]
fn close_and_detach_release_everything() {
    let mut w = World::new();
    let mut xa = w.add_guest(1, mac(1));
    let mut xb = w.add_guest(2, mac(2));
    let mut a = w.netfront(&mut xa, 1);
    let mut b = w.netfront(&mut xb, 2);
    assert_eq!(w.mapped.get(), 4);

    // A closes its device: the backend follows and lets go of its rings.
    let busy = a.close(&mut xa).unwrap();
    assert_eq!(busy, 0);
    w.pump();
    w.pump();
    assert_eq!(w.backend_state(1).as_deref(), Some("6"));
    assert_eq!(w.mapped.get(), 2);
    assert_eq!(w.grants.count(1), 0);
    assert!(w.nb.ports(1, 0).is_none());

    // B still works, and frames for A go nowhere.
    b.send(&frame(mac(1), mac(2), b"anyone?")).unwrap();
    w.pump();
    assert!(drain(&mut b).is_empty());

    // Hot-unplug B: both directories go, the mapping too.
    {
        let mut xs = w.d.borrow_mut();
        w.nb.detach(&mut xs, 2, 0);
    }
    assert_eq!(w.mapped.get(), 0);
    assert!(w.read("/local/domain/0/backend/vif/2/0").is_none());
    assert!(w.read("/local/domain/2/device/vif/0").is_none());
    assert!(w.nb.host().bound.is_empty());
    // Nothing serves B's rings any more: what it sends stays unanswered.
    assert_eq!(b.poll_tx().unwrap(), 1);
    b.send(&frame(mac(1), mac(2), b"x")).unwrap();
    w.pump();
    assert_eq!(b.poll_tx().unwrap(), 0);
}

#[test]
fn a_frontend_can_reconnect_after_closing() {
    let mut w = World::new();
    let mut xa = w.add_guest(1, mac(1));
    let mut xb = w.add_guest(2, mac(2));
    let mut a = w.netfront(&mut xa, 1);
    let mut b = w.netfront(&mut xb, 2);
    a.close(&mut xa).unwrap();
    w.pump();
    // The guest reboots its driver: state back to Initialising.
    xa.write(NO_TX, "device/vif/0/state", b"1").unwrap();
    w.pump();
    assert_eq!(w.backend_state(1).as_deref(), Some("2"));
    let mut a = w.netfront(&mut xa, 1);
    let f = frame(mac(2), mac(1), b"I am back");
    a.send(&f).unwrap();
    w.pump();
    assert_eq!(drain(&mut b), vec![f]);
    assert_eq!(w.mapped.get(), 4);
}

#[test]
fn generated_macs_reach_the_frontend() {
    let mut w = World::new();
    let m = Mac::generate(42);
    let mut xa = w.add_guest(1, m);
    let a = w.netfront(&mut xa, 1);
    assert_eq!(a.mac(), m.0);
    assert_eq!(a.mac()[..3], [0x00, 0x16, 0x3e]);
    use dom0_tools::xlcfg::{parse_vif_spec, MacGenerator};
    let spec = parse_vif_spec("bridge=xenbr1", 0).unwrap();
    let p = VifParams::from_spec(&spec, &mut MacGenerator::new(42));
    assert_eq!(
        p,
        VifParams {
            mac: m,
            bridge: "xenbr1".into(),
            script: "vif-bridge".into(),
        }
    );
    let spec = parse_vif_spec("mac=00:16:3e:12:34:56,script=vif-nat", 1).unwrap();
    let p = VifParams::from_spec(&spec, &mut MacGenerator::new(42));
    assert_eq!(p.mac.to_string(), "00:16:3e:12:34:56");
    assert_eq!(
        (p.bridge.as_str(), p.script.as_str()),
        ("xenbr0", "vif-nat")
    );
}

#[test]
fn a_hostile_backend_cannot_crash_netfront() {
    use pv_guest_lib::netfront::{sring, NetError};
    use pv_guest_lib::xenbus::page::SharedPage;
    let mut w = World::new();
    let mut xa = w.add_guest(1, mac(1));
    let mut a = w.netfront(&mut xa, 1);
    let rx_ref: u32 = w
        .read("/local/domain/1/device/vif/0/rx-ring-ref")
        .unwrap()
        .parse()
        .unwrap();
    let tx_ref: u32 = w
        .read("/local/domain/1/device/vif/0/tx-ring-ref")
        .unwrap()
        .parse()
        .unwrap();
    let rx = w.grants.get(1, rx_ref).unwrap().page;
    assert!(w.grants.get(1, tx_ref).is_some());
    // A response for an id never posted... with a length past the page.
    rx.write(64, &[200, 0, 0, 0, 0, 0, 0xff, 0x7f]);
    rx.store_u32(sring::RSP_PROD, 1);
    assert!(matches!(a.recv(|f| f.len()), Err(NetError::Protocol(_))));
    // Once broken, it stays down instead of trusting the rings.
    assert_eq!(
        a.send(&frame(mac(2), mac(1), b"x")),
        Err(NetError::BackendClosed)
    );

    let mut xb = w.add_guest(2, mac(2));
    let mut b = w.netfront(&mut xb, 2);
    let tx_ref: u32 = w
        .read("/local/domain/2/device/vif/0/tx-ring-ref")
        .unwrap()
        .parse()
        .unwrap();
    let tx = w.grants.get(2, tx_ref).unwrap().page;
    tx.store_u32(sring::RSP_PROD, 5000);
    assert!(matches!(b.poll_tx(), Err(NetError::Protocol(_))));
}

#[test]
fn one_budget_per_vif_per_pass() {
    let mut w = World::new();
    let mut xa = w.add_guest(1, mac(1));
    let mut xb = w.add_guest(2, mac(2));
    let mut a = w.netfront(&mut xa, 1);
    let mut b = w.netfront(&mut xb, 2);
    for i in 0..64u8 {
        a.send(&frame(mac(2), mac(1), &[i; 46])).unwrap();
    }
    b.send(&frame(mac(1), mac(2), b"meanwhile")).unwrap();
    w.pump();
    assert!(w.nb.more_work());
    assert_eq!(w.nb.stats(1, 0).unwrap().tx_packets, 64);
    assert_eq!(drain(&mut a), vec![frame(mac(1), mac(2), b"meanwhile")]);
    w.pump();
    assert!(!w.nb.more_work());
    assert_eq!(drain(&mut b).len(), 64);
}

#[test]
fn network_detach_handshake() {
    use pv_guest_lib::netfront::NetError;
    let mut w = World::new();
    let mut xa = w.add_guest(1, mac(1));
    let mut xb = w.add_guest(2, mac(2));
    let mut a = w.netfront(&mut xa, 1);
    let mut b = w.netfront(&mut xb, 2);
    {
        let mut xs = w.d.borrow_mut();
        w.nb.request_detach(&mut xs, 1, 0);
    }
    assert_eq!(w.backend_state(1).as_deref(), Some("5"));
    assert_eq!(w.mapped.get(), 2);
    // The guest's driver sees the backend closing and closes too.
    assert_eq!(a.connect_step(&mut xa), Err(NetError::BackendClosed));
    assert_eq!(a.close(&mut xa).unwrap(), 0);
    w.pump();
    assert_eq!(w.nb.take_removed(), vec![(1, 0)]);
    assert!(w.read("/local/domain/0/backend/vif/1/0").is_none());
    assert!(w.read("/local/domain/1/device/vif/0").is_none());
    assert_eq!(w.grants.count(1), 0);
    assert_eq!(w.nb.vifs().collect::<Vec<_>>(), vec![(2, 0)]);
    // B is unaffected.
    b.send(&frame(Mac::BROADCAST, mac(2), b"hi")).unwrap();
    w.pump();
    assert_eq!(w.nb.stats(2, 0).unwrap().tx_packets, 1);
}

#[test]
fn domain_destruction_mid_traffic_leaks_nothing() {
    let mut w = World::new();
    let mut xa = w.add_guest(1, mac(1));
    let mut xb = w.add_guest(2, mac(2));
    let mut a = w.netfront(&mut xa, 1);
    let mut b = w.netfront(&mut xb, 2);
    // Heavy traffic both ways, left in flight.
    for i in 0..60u8 {
        let _ = a.send(&frame(mac(2), mac(1), &[i; 1000]));
        let _ = b.send(&frame(mac(1), mac(2), &[i; 1000]));
    }
    w.pump();
    // `xl destroy` of domain 1: the toolstack removes its xenstore
    // directories and its vifs.
    {
        let mut xs = w.d.borrow_mut();
        xs.destroy_domain_dirs(1, "00000000-0000-0000-0000-000000000001")
            .unwrap();
        w.nb.detach_domain(&mut xs, 1);
    }
    w.pump();
    assert_eq!(w.mapped.get(), 2);
    assert!(!w.nb.host().bound.iter().any(|&p| p / 1000 == 1));
    assert!(w.read("/local/domain/0/backend/vif/1").is_none());
    assert_eq!(w.nb.vifs().collect::<Vec<_>>(), vec![(2, 0)]);
    // B keeps going: its frames to A's MAC now flood to nobody.
    drain(&mut b);
    b.poll_tx().unwrap();
    b.send(&frame(mac(1), mac(2), b"gone?")).unwrap();
    w.pump();
    assert_eq!(w.nb.stats(2, 0).unwrap().tx_errors, 0);
    let _ = a;
}

#[test]
fn network_list_reads_what_libxl_reads() {
    use dom0_tools::netback::{list_vifs, next_devid, nic_info};
    let mut w = World::new();
    let mut xa = w.add_guest(1, mac(1));
    {
        let mut xs = w.d.borrow_mut();
        assert_eq!(list_vifs(&mut xs, 1), vec![0]);
        assert_eq!(next_devid(&mut xs, 1), 1);
        assert_eq!(next_devid(&mut xs, 7), 0);
        let i = nic_info(&mut xs, 1, 0).unwrap();
        assert_eq!((i.state, i.evtch, i.rref_tx, i.rref_rx), (2, -1, -1, -1));
        assert!(nic_info(&mut xs, 1, 5).is_none());
    }
    let _a = w.netfront(&mut xa, 1);
    let mut xs = w.d.borrow_mut();
    let i = nic_info(&mut xs, 1, 0).unwrap();
    assert_eq!(i.mac, mac(1).0);
    assert_eq!(
        (i.devid, i.backend_id, i.frontend_id, i.state),
        (0, 0, 1, 4)
    );
    assert_eq!(i.evtch, 11);
    assert!(i.rref_tx >= 8 && i.rref_rx >= 8);
    assert_eq!(i.backend, "/local/domain/0/backend/vif/1/0");
}
