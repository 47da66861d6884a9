//! pv-guest-lib's xenbus client talking to dom0-tools' xenstored over an
//! in-memory ring page, as a guest talks to Dom0: the client writes
//! requests into the page and "notifies" (runs the daemon's poll); waiting
//! polls every ring.

use std::boxed::Box;
use std::cell::RefCell;
use std::rc::Rc;

use dom0_tools::xenstore::layout::{ConsoleInfo, DomainInfo};
use dom0_tools::xenstore::{ConnId, MemHost, Quotas, Xenstored, DOM0_CONN};
use pv_guest_lib::abi::io::xs_wire::XENSTORE_ERROR_RINGIDX;
use pv_guest_lib::xenbus::page::{self, MemPage, SharedPage};
use pv_guest_lib::xenbus::wire::Message;
use pv_guest_lib::xenbus::{
    Access, Perm, RingTransport, ShutdownRequest, Transport, WatchEvent, Xenbus, XsErr, XsError,
    NO_TX,
};

type Daemon = Rc<RefCell<Xenstored<MemHost>>>;
type Guest = Xenbus<RingTransport<MemPage, Box<dyn FnMut()>, Box<dyn FnMut() -> bool>>>;

fn daemon() -> Daemon {
    let d = Rc::new(RefCell::new(Xenstored::new(
        MemHost::default(),
        Quotas::default(),
    )));
    d.borrow_mut().init_dom0("Domain-0").unwrap();
    d
}

/// Builds domain `domid` as the domain builder would and connects a guest
/// client to its ring.
fn guest(d: &Daemon, domid: u16) -> (Guest, ConnId, MemPage) {
    let page = MemPage::new();
    let mfn = 0x1000 + u64::from(domid);
    let uuid = format!("00000000-0000-0000-0000-{domid:012}");
    let name = format!("guest{domid}");
    let conn = {
        let mut xs = d.borrow_mut();
        xs.host().add_ring(domid, mfn, page.clone());
        xs.create_domain(&DomainInfo {
            domid,
            name: &name,
            uuid: &uuid,
            vcpus: 1,
            max_vcpus: 1,
            target_kb: 65536,
            max_kb: 65536,
            store_mfn: mfn,
            store_port: 1,
            console: Some(ConsoleInfo {
                ring_ref: mfn + 1,
                port: 2,
                backend_domid: 0,
            }),
        })
        .unwrap()
    };
    let (d1, d2) = (d.clone(), d.clone());
    let mut budget = 10_000;
    let notify: Box<dyn FnMut()> = Box::new(move || {
        d1.borrow_mut().poll(conn);
    });
    let wait: Box<dyn FnMut() -> bool> = Box::new(move || {
        d2.borrow_mut().poll_all();
        budget -= 1;
        budget > 0
    });
    (
        Xenbus::new(RingTransport::new(page.clone(), notify, wait)),
        conn,
        page,
    )
}

/// Dom0's tools as a client of the in-process connection.
struct Local {
    d: Daemon,
    conn: ConnId,
}

impl Transport for Local {
    fn send(&mut self, data: &[u8]) -> Result<usize, XsError> {
        self.d.borrow_mut().handle(self.conn, data);
        Ok(data.len())
    }
    fn recv(&mut self) -> Result<Option<Message>, XsError> {
        let m = self.d.borrow_mut().take_output(self.conn);
        m.map(|m| Message::decode(&m).ok_or(XsError::Protocol))
            .transpose()
    }
    fn wait(&mut self) -> bool {
        false
    }
}

fn ev(path: &str, token: &str) -> WatchEvent {
    WatchEvent {
        path: path.into(),
        token: token.into(),
    }
}

#[test]
fn guest_reads_writes_and_lists() {
    let d = daemon();
    let (mut g, _, _) = guest(&d, 3);
    assert_eq!(g.read_string(NO_TX, "name").unwrap(), "guest3");
    assert_eq!(g.read_string(NO_TX, "/local/domain/3/domid").unwrap(), "3");
    assert_eq!(g.get_domain_path(3).unwrap(), "/local/domain/3");
    g.write(NO_TX, "data/greeting", b"hello").unwrap();
    g.write(NO_TX, "data/other", b"").unwrap();
    assert_eq!(g.directory(NO_TX, "data").unwrap(), ["greeting", "other"]);
    assert_eq!(g.read(NO_TX, "data/greeting").unwrap(), b"hello");
    assert_eq!(g.read(NO_TX, "data/nope"), Err(XsError::Xs(XsErr::ENOENT)));
    assert_eq!(
        g.write(NO_TX, "name", b"x"),
        Err(XsError::Xs(XsErr::EACCES))
    );
    assert_eq!(
        g.read(NO_TX, "/local/domain/0/name"),
        Err(XsError::Xs(XsErr::EACCES))
    );
    assert_eq!(
        g.get_perms(NO_TX, "data/greeting").unwrap(),
        [Perm::new(3, Access::None)]
    );
    g.set_perms(
        NO_TX,
        "data/greeting",
        &[Perm::new(3, Access::None), Perm::new(0, Access::Read)],
    )
    .unwrap();
    assert_eq!(g.get_perms(NO_TX, "data/greeting").unwrap().len(), 2);
    g.mkdir(NO_TX, "data/sub/dir").unwrap();
    g.rm(NO_TX, "data/sub").unwrap();
    assert_eq!(g.directory(NO_TX, "data").unwrap(), ["greeting", "other"]);
    assert_eq!(
        d.borrow_mut()
            .read("/local/domain/3/data/greeting")
            .unwrap(),
        b"hello"
    );
    assert!(d.borrow().store().check());
}

#[test]
fn values_bigger_than_the_ring() {
    let d = daemon();
    let (mut g, _, _) = guest(&d, 3);
    d.borrow_mut()
        .write("/local/domain/3/data/big", &[b'b'; 4000])
        .unwrap();
    assert_eq!(g.read(NO_TX, "data/big").unwrap(), [b'b'; 4000]);
    let v: Vec<u8> = (0..2048).map(|i| b'a' + (i % 26) as u8).collect();
    for i in 0..20 {
        g.write(NO_TX, &format!("data/v{i}"), &v).unwrap();
        assert_eq!(g.read(NO_TX, &format!("data/v{i}")).unwrap(), v);
    }
    assert_eq!(
        g.write(NO_TX, "data/too-big", &[0; 2049]),
        Err(XsError::Xs(XsErr::ENOSPC))
    );
    assert_eq!(g.write(NO_TX, "data/x", &[0; 4096]), Err(XsError::TooBig));
}

#[test]
fn watches_deliver_events() {
    let d = daemon();
    let (mut g, _, _) = guest(&d, 3);
    g.watch("data", "tok").unwrap();
    assert_eq!(g.next_event().unwrap(), Some(ev("data", "tok")));
    assert_eq!(g.next_event().unwrap(), None);
    d.borrow_mut()
        .write("/local/domain/3/data/k", b"1")
        .unwrap();
    assert_eq!(g.wait_event().unwrap(), ev("data/k", "tok"));
    // Events that arrive while waiting for a reply are kept.
    d.borrow_mut()
        .write("/local/domain/3/data/j", b"1")
        .unwrap();
    assert_eq!(g.read(NO_TX, "data/k").unwrap(), b"1");
    assert_eq!(g.next_event().unwrap(), Some(ev("data/j", "tok")));
    g.unwatch("data", "tok").unwrap();
    assert_eq!(g.unwatch("data", "tok"), Err(XsError::Xs(XsErr::ENOENT)));
    d.borrow_mut()
        .write("/local/domain/3/data/k", b"2")
        .unwrap();
    assert_eq!(g.next_event().unwrap(), None);
    g.watch("data", "again").unwrap();
    g.reset_watches().unwrap();
    d.borrow_mut()
        .write("/local/domain/3/data/k", b"3")
        .unwrap();
    assert_eq!(g.next_event().unwrap(), None);
}

#[test]
fn transactions_retry_on_conflict() {
    let d = daemon();
    let (mut g, _, _) = guest(&d, 3);
    g.write(NO_TX, "data/counter", b"0").unwrap();
    let mut attempts = 0;
    let d2 = d.clone();
    let v = g
        .transaction(|xb, tx| {
            attempts += 1;
            let n: u32 = xb.read_string(tx, "data/counter")?.parse().unwrap();
            if attempts == 1 {
                // Someone else bumps it meanwhile.
                d2.borrow_mut()
                    .write("/local/domain/3/data/counter", b"10")
                    .unwrap();
            }
            xb.write(tx, "data/counter", (n + 1).to_string().as_bytes())?;
            Ok(n + 1)
        })
        .unwrap();
    assert_eq!(attempts, 2);
    assert_eq!(v, 11);
    assert_eq!(g.read_string(NO_TX, "data/counter").unwrap(), "11");
    // An error inside aborts.
    let r: Result<(), _> = g.transaction(|xb, tx| {
        xb.write(tx, "data/counter", b"99")?;
        xb.read(tx, "data/missing").map(drop)
    });
    assert_eq!(r, Err(XsError::Xs(XsErr::ENOENT)));
    assert_eq!(g.read_string(NO_TX, "data/counter").unwrap(), "11");
    // Raw start/end.
    let tx = g.transaction_start().unwrap();
    g.write(tx, "data/t", b"x").unwrap();
    g.transaction_end(tx, false).unwrap();
    assert_eq!(g.read(NO_TX, "data/t"), Err(XsError::Xs(XsErr::ENOENT)));
    assert_eq!(g.transaction_end(tx, true), Err(XsError::Xs(XsErr::ENOENT)));
}

#[test]
fn shutdown_requests_reach_the_guest() {
    let d = daemon();
    let (mut g, _, _) = guest(&d, 3);
    g.watch_shutdown().unwrap();
    assert_eq!(
        d.borrow_mut()
            .read("/local/domain/3/control/feature-poweroff")
            .unwrap(),
        b"1"
    );
    // The initial event finds nothing to do.
    let e = g.wait_event().unwrap();
    assert_eq!(e.path, "control/shutdown");
    assert_eq!(g.check_shutdown().unwrap(), None);
    for (what, want) in [
        ("reboot", ShutdownRequest::Reboot),
        ("poweroff", ShutdownRequest::Poweroff),
        ("suspend", ShutdownRequest::Suspend),
        ("crash", ShutdownRequest::Crash),
        ("halt", ShutdownRequest::Poweroff),
    ] {
        // `xl shutdown`: the toolstack writes the request...
        d.borrow_mut()
            .write("/local/domain/3/control/shutdown", what.as_bytes())
            .unwrap();
        assert_eq!(g.wait_shutdown().unwrap(), want);
        // ...and sees the guest acknowledge it.
        assert_eq!(
            d.borrow_mut()
                .read("/local/domain/3/control/shutdown")
                .unwrap(),
            b""
        );
        // Our own acknowledgement fires the watch once more: nothing to do.
        while let Some(e) = g.next_event().unwrap() {
            assert_eq!(e.token, "control-shutdown");
            assert_eq!(g.check_shutdown().unwrap(), None);
        }
    }
}

#[test]
fn dom0_tools_over_the_local_connection() {
    let d = daemon();
    let mut x = Xenbus::new(Local {
        d: d.clone(),
        conn: DOM0_CONN,
    });
    assert_eq!(x.read_string(NO_TX, "name").unwrap(), "Domain-0");
    x.watch("@introduceDomain", "in").unwrap();
    x.watch("@releaseDomain", "out").unwrap();
    assert_eq!(x.next_event().unwrap(), Some(ev("@introduceDomain", "in")));
    assert_eq!(x.next_event().unwrap(), Some(ev("@releaseDomain", "out")));
    let page = MemPage::new();
    d.borrow_mut().host().add_ring(5, 0x55, page.clone());
    assert!(!x.is_domain_introduced(5).unwrap());
    x.introduce(5, 0x55, 9).unwrap();
    assert_eq!(x.next_event().unwrap(), Some(ev("@introduceDomain", "in")));
    assert!(x.is_domain_introduced(5).unwrap());
    assert_eq!(page.load_u32(page::SERVER_FEATURES), 3);
    x.release(5).unwrap();
    assert_eq!(x.next_event().unwrap(), Some(ev("@releaseDomain", "out")));
    assert_eq!(x.release(5), Err(XsError::Xs(XsErr::ENOENT)));
    x.control(&["print", "from xl"]).unwrap();
    assert!(d.borrow().log().any(|l| l == "from xl"));
    assert_eq!(x.control(&["bogus"]), Err(XsError::Xs(XsErr::EINVAL)));
}

#[test]
fn a_hostile_guest_breaks_only_its_own_connection() {
    let d = daemon();
    let (mut a, _, _) = guest(&d, 3);
    let (mut b, _, _) = guest(&d, 4);
    let (mut evil, evil_conn, evil_page) = guest(&d, 5);
    a.write(NO_TX, "data/x", b"a").unwrap();
    evil.write(NO_TX, "data/x", b"e").unwrap();
    evil.watch("data", "w").unwrap();
    // The evil guest pushes its producer index far ahead.
    evil_page.store_u32(
        page::REQ_PROD,
        evil_page.load_u32(page::REQ_PROD).wrapping_add(4096),
    );
    d.borrow_mut().poll(evil_conn);
    assert_eq!(evil_page.load_u32(page::ERROR), XENSTORE_ERROR_RINGIDX);
    assert_eq!(
        d.borrow().conn_info(evil_conn).unwrap().broken,
        Some(XENSTORE_ERROR_RINGIDX)
    );
    // Its client sees the error on its next request (the ring is garbage).
    assert!(evil.read(NO_TX, "data/x").is_err());
    // Everyone else carries on.
    b.write(NO_TX, "data/y", b"b").unwrap();
    assert_eq!(a.read(NO_TX, "data/x").unwrap(), b"a");
    assert_eq!(b.read(NO_TX, "data/y").unwrap(), b"b");
    assert_eq!(d.borrow().conn_info(evil_conn).unwrap().watches, 0);
    assert!(d.borrow().store().check());
}
