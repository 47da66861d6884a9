//! pv-guest-lib's `domu` (an ordinary domain's side of `xl shutdown`,
//! `xl reboot`, ...) against dom0-tools' xenstored, over an in-memory ring
//! page as a guest talks to Dom0: the toolstack writes
//! `/local/domain/<id>/control/shutdown` as Dom0, the guest's
//! `ShutdownWatcher` takes the request, acknowledges it and says how to
//! shut down.

use std::boxed::Box;
use std::cell::RefCell;
use std::rc::Rc;

use dom0_tools::xenstore::layout::DomainInfo;
use dom0_tools::xenstore::{MemHost, Quotas, Xenstored, DOM0_CONN};
use pv_guest_lib::abi::sched::ShutdownReason;
use pv_guest_lib::domu::{self, Identity, Outcome, Shutdown, ShutdownWatcher};
use pv_guest_lib::xenbus::page::MemPage;
use pv_guest_lib::xenbus::wire::Message;
use pv_guest_lib::xenbus::{
    Access, Perm, RingTransport, ShutdownRequest, Transport, Xenbus, XsErr, XsError, NO_TX,
};

type Daemon = Rc<RefCell<Xenstored<MemHost>>>;
type Guest = Xenbus<RingTransport<MemPage, Box<dyn FnMut()>, Box<dyn FnMut() -> bool>>>;

const DOMID: u16 = 5;

fn daemon() -> Daemon {
    let d = Rc::new(RefCell::new(Xenstored::new(
        MemHost::default(),
        Quotas::default(),
    )));
    d.borrow_mut().init_dom0("Domain-0").unwrap();
    d
}

/// Builds domain [`DOMID`] ("hello") as the toolstack would (nodes,
/// introduction) and connects a guest client to its ring. The client's
/// "notify" runs the daemon on its ring; its "wait" polls every ring and
/// gives up after a while (nothing else happens in a host test).
fn guest(d: &Daemon) -> Guest {
    let page = MemPage::new();
    let mfn = 0x4242;
    let conn = {
        let mut xs = d.borrow_mut();
        xs.host().add_ring(DOMID, mfn, page.clone());
        xs.create_domain(&DomainInfo {
            domid: DOMID,
            name: "hello",
            uuid: "00000000-0000-0000-0000-000000000005",
            vcpus: 1,
            max_vcpus: 1,
            target_kb: 16384,
            max_kb: 16384,
            store_mfn: mfn,
            store_port: 1,
            console: None,
        })
        .unwrap()
    };
    let (d1, d2) = (d.clone(), d.clone());
    let mut budget = 1_000;
    let notify: Box<dyn FnMut()> = Box::new(move || {
        d1.borrow_mut().poll(conn);
    });
    let wait: Box<dyn FnMut() -> bool> = Box::new(move || {
        d2.borrow_mut().poll_all();
        budget -= 1;
        budget > 0
    });
    Xenbus::new(RingTransport::new(page, notify, wait))
}

fn home(p: &str) -> String {
    format!("/local/domain/{DOMID}/{p}")
}

/// What `xl shutdown`/`xl reboot` do: write the request as Dom0.
fn xl_request(d: &Daemon, what: &str) {
    d.borrow_mut()
        .write(&home("control/shutdown"), what.as_bytes())
        .unwrap();
}

/// What libxl's `pvcontrol_acked` checks: "" (or gone) means acknowledged.
fn acked(d: &Daemon) -> bool {
    match d.borrow_mut().read(&home("control/shutdown")) {
        Ok(v) => v.is_empty(),
        Err(XsErr::ENOENT) => true,
        Err(e) => panic!("reading control/shutdown: {e:?}"),
    }
}

#[test]
fn the_guest_knows_who_it_is() {
    let d = daemon();
    let mut g = guest(&d);
    assert_eq!(
        domu::identity(&mut g),
        Identity {
            domid: Some(DOMID),
            name: Some("hello".into())
        }
    );
}

#[test]
fn features_are_published_where_the_toolstack_made_room() {
    let d = daemon();
    let mut g = guest(&d);
    let w = ShutdownWatcher::start(&mut g).unwrap();
    assert_eq!(w.published(), ["poweroff", "reboot"]);
    for f in ["poweroff", "reboot"] {
        assert_eq!(
            d.borrow_mut()
                .read(&home(&format!("control/feature-{f}")))
                .unwrap(),
            b"1"
        );
        // Still the guest's node, as libxl made it.
        assert_eq!(
            d.borrow_mut()
                .get_perms(&home(&format!("control/feature-{f}")))
                .unwrap(),
            [Perm::new(DOMID, Access::None)]
        );
    }
    // Suspend is not supported, so not advertised.
    assert_eq!(
        d.borrow_mut()
            .read(&home("control/feature-suspend"))
            .unwrap(),
        b""
    );
}

#[test]
fn without_the_toolstack_nodes_features_are_skipped_and_requests_still_work() {
    let d = daemon();
    let mut g = guest(&d);
    for f in ["poweroff", "reboot", "suspend"] {
        d.borrow_mut()
            .rm(&home(&format!("control/feature-{f}")))
            .unwrap();
    }
    // control/ is Dom0's: the guest cannot create nodes there.
    let mut w = ShutdownWatcher::start(&mut g).unwrap();
    assert!(w.published().is_empty());
    assert_eq!(
        g.read(NO_TX, "control/feature-poweroff"),
        Err(XsError::Xs(XsErr::ENOENT))
    );
    assert_eq!(w.poll(&mut g).unwrap(), None);
    xl_request(&d, "poweroff");
    assert!(matches!(
        w.wait(&mut g).unwrap(),
        Outcome::Shutdown(Shutdown {
            reason: ShutdownReason::Poweroff,
            ..
        })
    ));
    assert!(acked(&d));
}

#[test]
fn xl_requests_are_acknowledged_and_carried_out() {
    let d = daemon();
    let mut g = guest(&d);
    let mut w = ShutdownWatcher::start(&mut g).unwrap();
    // The watch's first firing: nothing asked yet.
    assert_eq!(w.poll(&mut g).unwrap(), None);
    for (what, request, reason) in [
        (
            "poweroff",
            ShutdownRequest::Poweroff,
            ShutdownReason::Poweroff,
        ),
        ("reboot", ShutdownRequest::Reboot, ShutdownReason::Reboot),
        ("halt", ShutdownRequest::Poweroff, ShutdownReason::Poweroff),
        ("crash", ShutdownRequest::Crash, ShutdownReason::Crash),
    ] {
        xl_request(&d, what);
        assert!(!acked(&d));
        assert_eq!(
            w.wait(&mut g).unwrap(),
            Outcome::Shutdown(Shutdown {
                request,
                value: what.into(),
                reason
            })
        );
        assert!(acked(&d), "{what} not acknowledged");
        // Our own acknowledgement fires the watch once more: nothing to do.
        assert_eq!(w.poll(&mut g).unwrap(), None);
    }
}

#[test]
fn a_request_made_before_the_guest_watched_is_taken() {
    let d = daemon();
    let mut g = guest(&d);
    xl_request(&d, "reboot");
    let mut w = ShutdownWatcher::start(&mut g).unwrap();
    let s = w.wait_for_shutdown(&mut g).unwrap();
    assert_eq!(s.reason, ShutdownReason::Reboot);
    assert!(acked(&d));
}

#[test]
fn suspend_is_left_for_the_toolstack_to_time_out() {
    let d = daemon();
    let mut g = guest(&d);
    let mut w = ShutdownWatcher::start(&mut g).unwrap();
    assert_eq!(w.poll(&mut g).unwrap(), None);
    for what in ["suspend", "s3", ""] {
        xl_request(&d, what);
        d.borrow_mut().poll_all(); // the watch event reaches the ring
        let o = w.poll(&mut g).unwrap();
        if what.is_empty() {
            assert_eq!(o, None); // the toolstack cancelled
        } else {
            assert_eq!(o, Some(Outcome::Refused { value: what.into() }));
            assert_eq!(
                d.borrow_mut().read(&home("control/shutdown")).unwrap(),
                what.as_bytes()
            );
        }
    }
    // After a refused request the next one is taken.
    xl_request(&d, "suspend");
    xl_request(&d, "poweroff");
    let s = w.wait_for_shutdown(&mut g).unwrap();
    assert_eq!(s.request, ShutdownRequest::Poweroff);
    assert!(acked(&d));
}

#[test]
fn dom0_sees_the_acknowledgement_through_its_own_watch() {
    // libxl's xswait: Dom0 watches control/shutdown after writing it and
    // completes `xl shutdown` when the value becomes "".
    struct Local(Daemon);
    impl Transport for Local {
        fn send(&mut self, data: &[u8]) -> Result<usize, XsError> {
            self.0.borrow_mut().handle(DOM0_CONN, data);
            Ok(data.len())
        }
        fn recv(&mut self) -> Result<Option<Message>, XsError> {
            let m = self.0.borrow_mut().take_output(DOM0_CONN);
            m.map(|m| Message::decode(&m).ok_or(XsError::Protocol))
                .transpose()
        }
        fn wait(&mut self) -> bool {
            false
        }
    }
    let d = daemon();
    let mut g = guest(&d);
    let mut w = ShutdownWatcher::start(&mut g).unwrap();
    assert_eq!(w.poll(&mut g).unwrap(), None);
    let mut xl = Xenbus::new(Local(d.clone()));
    let path = home("control/shutdown");
    xl.write(NO_TX, &path, b"poweroff").unwrap();
    xl.watch(&path, "xswait").unwrap();
    assert_eq!(xl.next_event().unwrap().unwrap().token, "xswait");
    assert_eq!(xl.read(NO_TX, &path).unwrap(), b"poweroff");
    assert!(matches!(
        w.wait(&mut g).unwrap(),
        Outcome::Shutdown(Shutdown {
            reason: ShutdownReason::Poweroff,
            ..
        })
    ));
    let e = xl
        .next_event()
        .unwrap()
        .expect("the ack fired Dom0's watch");
    assert_eq!(e.path, path);
    assert_eq!(xl.read(NO_TX, &path).unwrap(), b"");
}
