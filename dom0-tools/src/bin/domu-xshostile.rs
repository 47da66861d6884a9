//! A hostile guest (domU) for xenstored: it first talks to xenstore
//! properly (reads its name), then corrupts its ring the ways Xen's XSAs
//! about xenstored ring handling describe: a request header claiming a
//! payload longer than XENSTORE_PAYLOAD_MAX, a producer index more than a
//! ring ahead of the consumer, and a flood of notifications. Dom0's
//! xenstored must cut only this guest's connection: Dom0 and every other
//! guest carry on (the boot test checks with `xl` and another guest).
//! Afterwards the guest says what it did and stays up until destroyed.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use pv_guest_lib::xenbus::metal::{self, Location};
    use pv_guest_lib::{domu, events, println, runtime, time, StartInfo};

    pv_guest_lib::entry!(kmain);

    /// `struct xenstore_domain_interface` offsets.
    const REQ: usize = 0;
    const REQ_CONS: usize = 2048;
    const REQ_PROD: usize = 2052;

    fn kmain(si: &'static StartInfo) -> ! {
        println!("domu-xshostile: up");
        if runtime::init().is_err() {
            println!("domu-xshostile: no runtime");
            pv_guest_lib::xen::crash();
        }
        match domu::connect(si) {
            Ok(mut xs) => {
                let id = domu::identity(&mut xs);
                println!("domu-xshostile: xenstore answers, I am {:?}", id.name);
            }
            Err(e) => println!("domu-xshostile: no xenstore ({e:?})"),
        }
        // The ring page, as the xenbus client found it.
        let p2m: &[core::sync::atomic::AtomicU64] = pv_guest_lib::boot::p2m().unwrap_or(&[]);
        let Location::Mapped { va, .. } = metal::locate(
            si.store_mfn,
            pv_guest_lib::frame::m2p_raw,
            p2m,
            pv_guest_lib::frame::direct_va,
        ) else {
            println!("domu-xshostile: store page not mapped; nothing to corrupt");
            idle()
        };
        let page = va as *mut u8;
        let port = si.store_evtchn;
        // SAFETY: `page` is our own xenstore ring page, mapped writable;
        // only this code touches it from now on.
        unsafe {
            let w32 = |off: usize, v: u32| (page.add(off) as *mut u32).write_volatile(v);
            let r32 = |off: usize| (page.add(off) as *const u32).read_volatile();
            // 1. A header claiming a 1 MiB payload.
            let prod = r32(REQ_PROD);
            let hdr: [u32; 4] = [1 /* XS_READ */, 7, 0, 1 << 20];
            for (i, word) in hdr.iter().enumerate() {
                let off = (prod as usize + i * 4) % 1024;
                w32(REQ + off, *word);
            }
            w32(REQ_PROD, prod.wrapping_add(16));
            let _ = events::send(port);
            time::sleep_ns(100_000_000);
            // 2. A producer far ahead of the consumer.
            let cons = r32(REQ_CONS);
            w32(REQ_PROD, cons.wrapping_add(100_000));
            let _ = events::send(port);
            time::sleep_ns(100_000_000);
            // 3. A notification flood.
            for _ in 0..10_000 {
                let _ = events::send(port);
            }
        }
        println!("domu-xshostile: done corrupting my xenstore ring");
        idle()
    }

    fn idle() -> ! {
        loop {
            time::sleep_ns(1_000_000_000);
        }
    }
}
