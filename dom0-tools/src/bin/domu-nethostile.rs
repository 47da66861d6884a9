//! A hostile guest (domU) for netback: it connects its vif properly, then
//! writes its TX ring by hand: first a request with a grant reference it
//! never granted (netback must answer `NETIF_RSP_ERROR` and carry on),
//! then a producer index far past the ring (netback must disconnect this
//! vif alone, with an error in xenstore, and go `Closing`). Dom0 and every
//! other guest must not notice (the boot test pings between two others
//! meanwhile). It reports its checks, then stays up until destroyed.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    extern crate alloc;
    use alloc::format;
    use alloc::string::String;

    use dom0_tools::pvtest::Checks;
    use pv_guest_lib::abi::io::netif::{NetifTxRequest, NetifTxResponse, NET_TX_RING_SIZE};
    use pv_guest_lib::error::Errno;
    use pv_guest_lib::grant::{GrantError, GrantRef, GrantTable};
    use pv_guest_lib::netfront::metal::{MetalHost, MetalPage};
    use pv_guest_lib::netfront::{sring, Netfront, NetfrontHost, TX_ENTRY};
    use pv_guest_lib::xenbus::page::{RawPage, SharedPage};
    use pv_guest_lib::xenbus::NO_TX;
    use pv_guest_lib::{domu, events, runtime, time, StartInfo};

    pv_guest_lib::entry!(main);

    const GT_VA: u64 = 0xffff_c000_0020_0000;
    /// A grant reference this guest never handed out.
    const BAD_GREF: GrantRef = 0x00de_ad00;

    /// netfront's metal host, noting where the TX ring page (the first
    /// page netfront allocates) lives.
    struct Spy<'a> {
        inner: MetalHost<'a>,
        tx_ring_va: Option<u64>,
    }

    impl NetfrontHost for Spy<'_> {
        type Page = MetalPage;
        fn alloc_page(&mut self) -> Option<MetalPage> {
            let p = self.inner.alloc_page()?;
            self.tx_ring_va.get_or_insert(p.frame().va);
            Some(p)
        }
        fn grant(&mut self, p: &MetalPage, d: u16, ro: bool) -> Result<GrantRef, GrantError> {
            self.inner.grant(p, d, ro)
        }
        fn end_grant(&mut self, g: GrantRef) -> Result<(), GrantError> {
            self.inner.end_grant(g)
        }
        fn alloc_evtchn(&mut self, remote: u16) -> Result<u32, Errno> {
            self.inner.alloc_evtchn(remote)
        }
        fn close_evtchn(&mut self, port: u32) {
            self.inner.close_evtchn(port)
        }
        fn notify(&mut self, port: u32) {
            self.inner.notify(port)
        }
    }

    fn main(si: &'static StartInfo) -> ! {
        let mut c = Checks::new("domu-nethostile");
        if runtime::init().is_err() {
            c.error(format_args!("runtime init"));
            c.finish();
        }
        let mut xs = match domu::connect(si) {
            Ok(xs) => xs,
            Err(e) => {
                c.error(format_args!("connect to xenstore: {e:?}"));
                c.finish();
            }
        };
        let mut gt = match GrantTable::setup(4, GT_VA) {
            Ok(gt) => {
                c.check("set up the grant table", true, format_args!("4 frames"));
                gt
            }
            Err(e) => {
                c.check("set up the grant table", false, format_args!("{e:?}"));
                c.finish();
            }
        };
        let spy = Spy {
            inner: MetalHost { gt: &mut gt },
            tx_ring_va: None,
        };
        let mut nf = match Netfront::init(&mut xs, spy, 0) {
            Ok(n) => n,
            Err(e) => {
                c.error(format_args!("netfront init: {e:?}"));
                c.finish();
            }
        };
        let end = time::now_ns() + 30_000_000_000;
        while !matches!(nf.connect_step(&mut xs), Ok(true)) {
            if time::now_ns() > end {
                c.error(format_args!("netfront never connected"));
                c.finish();
            }
            time::sleep_ns(5_000_000);
        }
        c.check("netfront connects to netback", true, format_args!("vif 0"));
        let be = format!("{}/state", nf.backend_path());
        let port = nf.port();
        let Some(va) = nf.host().tx_ring_va else {
            c.error(format_args!("no TX ring page"));
            c.finish();
        };
        // SAFETY: `va` is the direct-map address of our own TX ring page
        // (netfront allocated it and keeps it for good); from here on only
        // this RawPage writes it (netfront is never used again), and the
        // backend only reads requests and writes responses there.
        let ring = unsafe { RawPage::new(va as *mut u8) };

        // 1. A request naming a grant we never made: an error response.
        let prod = ring.load_u32(sring::REQ_PROD);
        let req = NetifTxRequest {
            gref: BAD_GREF,
            offset: 0,
            flags: 0,
            id: 0,
            size: 60,
        };
        sring::write_slot(&ring, prod, NET_TX_RING_SIZE, TX_ENTRY, &req);
        ring.store_u32(sring::REQ_PROD, prod.wrapping_add(1));
        let _ = events::send(port);
        let end = time::now_ns() + 5_000_000_000;
        while ring.load_u32(sring::RSP_PROD) == prod && time::now_ns() < end {
            time::sleep_ns(10_000_000);
        }
        let rsp: NetifTxResponse = sring::read_slot(&ring, prod, NET_TX_RING_SIZE, TX_ENTRY);
        c.check(
            "a request with a grant never made gets NETIF_RSP_ERROR",
            ring.load_u32(sring::RSP_PROD) != prod && rsp.status == -1,
            format_args!("id {} status {}", rsp.id, rsp.status),
        );

        // 2. A producer index far past the ring: netback must disconnect.
        let cons = ring.load_u32(sring::RSP_PROD);
        ring.store_u32(sring::REQ_PROD, cons.wrapping_add(10_000));
        let _ = events::send(port);
        let end = time::now_ns() + 10_000_000_000;
        let mut state = String::new();
        while time::now_ns() < end {
            state = xs
                .read_string(NO_TX, &be)
                .unwrap_or_else(|e| format!("{e:?}"));
            if state == "5" || state == "6" {
                break;
            }
            time::sleep_ns(20_000_000);
        }
        c.check(
            "netback disconnects the vif after an index past the ring (Closing)",
            state == "5",
            format_args!("backend state {state}"),
        );
        // 3. And a notification flood on the dead channel.
        for _ in 0..10_000 {
            let _ = events::send(port);
        }
        let (n, failed) = c.counts();
        c.note(format_args!(
            "{n} checks, {failed} failed; done attacking netback"
        ));
        loop {
            time::sleep_ns(1_000_000_000);
        }
    }
}
