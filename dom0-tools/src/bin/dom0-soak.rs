//! Test Dom0: the soak test of issue 8. Creates and destroys
//! [`TOTAL`] guests through the toolstack ([`Toolstack`], what `xl`
//! drives), [`AT_ONCE`] at a time, and checks that everything comes back
//! exactly:
//!
//! - the hypervisor's free memory (`XEN_SYSCTL_physinfo`);
//! - Dom0's own free frames and heap bytes in use;
//! - Dom0's grant mappings (maptrack in use, from the hypervisor's `g`
//!   debug key, read back through `XEN_SYSCTL_readconsole`);
//! - xenstore: the same nodes as before (leftovers are listed);
//! - no domain but Dom0.
//!
//! Most guests are the example guest (`/etc/xen/hello.cfg`: up once it
//! has said its first line); every [`NET_EVERY`]th is `domu-net` with a
//! vif on `xenbr0`, up once netback has connected it (which maps its
//! rings through grants: the maptrack check bites). A progress line goes
//! out every 100 guests.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    extern crate alloc;

    use alloc::format;
    use alloc::string::String;
    use alloc::vec::Vec;

    use dom0_tools::bench::has_line;
    use dom0_tools::pvtest::{Checks, ConsoleOut};
    use dom0_tools::ramdisk::Archive;
    use dom0_tools::toolstack::Toolstack;
    use dom0_tools::xc;
    use dom0_tools::xl::backend::CreateRequest;
    use dom0_tools::xl::XlBackend;
    use pv_guest_lib::{println, time, StartInfo};

    pv_guest_lib::entry!(main);

    /// Guests created and destroyed.
    const TOTAL: usize = 1000;
    /// Guests alive at once.
    const AT_ONCE: usize = 4;
    /// Guests after which Dom0's own state must have settled: its tables
    /// and buffers have grown to what the load needs (the first vif, the
    /// first of each kind of guest); from there on nothing may grow.
    const WARM_UP: usize = 100;
    /// Every how many guests one is a networked one.
    const NET_EVERY: usize = 25;
    /// Heap pages for the toolstack.
    const HEAP_PAGES: u64 = 4096;
    const HELLO_CFG: &str = "/etc/xen/hello.cfg";
    /// How long a guest may take to be up.
    const UP_NS: u64 = 30_000_000_000;
    /// How long the back ends run idle before a measurement.
    const SETTLE_NS: u64 = 200_000_000;
    /// `XenbusState_Connected`.
    const CONNECTED: i32 = 4;

    /// What must come back.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Baseline {
        free_pages: u64,
        dom0_frames: u64,
        dom0_heap: usize,
        maptrack: Option<u64>,
        domains: usize,
    }

    /// Dom0's maptrack in use, from the `g` debug key's dump in the
    /// hypervisor's console (`(XEN) grant-table for d0: ... maptrack in
    /// use N of M`), read from `index` on.
    fn maptrack(index: &mut u32) -> Option<u64> {
        xc::debug_keys(b"g").ok()?;
        // The key is handled at the next event delivery.
        let deadline = time::now_ns() + 2_000_000_000;
        let mut text = String::new();
        loop {
            let mut buf = alloc::vec![0u8; 16384];
            let n = xc::read_console(index, &mut buf).ok()?;
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if let Some(v) = text
                .lines()
                .filter_map(|l| l.split("grant-table for d0: ").nth(1))
                .filter_map(|r| r.split("maptrack in use ").nth(1))
                .filter_map(|r| r.split_whitespace().next()?.parse().ok())
                .next_back()
            {
                return Some(v);
            }
            if time::now_ns() > deadline {
                return None;
            }
            let _ = pv_guest_lib::xen::sched_yield();
        }
    }

    fn domains() -> usize {
        let mut n = 0;
        let mut next = 0u16;
        let mut out = [xc::DomainInfo::default(); 8];
        while let Ok(got) = xc::domain_list(next, &mut out) {
            n += got;
            match out[..got].last() {
                Some(d) if got == out.len() => next = d.domid.saturating_add(1),
                _ => break,
            }
        }
        n
    }

    fn baseline(index: &mut u32) -> Baseline {
        Baseline {
            free_pages: xc::physinfo().map_or(0, |p| p.free_pages),
            dom0_frames: pv_guest_lib::frame::available(),
            dom0_heap: pv_guest_lib::heap::stats().0,
            maptrack: maptrack(index),
            domains: domains(),
        }
    }

    fn request(extra: &[String]) -> CreateRequest {
        CreateRequest {
            config_file: Some(String::from(HELLO_CFG)),
            extra_config: extra.to_vec(),
            quiet: true,
            ..CreateRequest::default()
        }
    }

    /// Whether guest `id` is up: its first console line (hello) or its
    /// vif connected (net).
    fn up(ts: &mut Toolstack, id: u32, net: bool) -> bool {
        if net {
            ts.network_list(id)
                .is_ok_and(|l| l.first().is_some_and(|n| n.state == CONNECTED))
        } else {
            ts.console_backlog(id as u16)
                .is_some_and(|b| has_line(b.as_slices()))
        }
    }

    fn main(_si: &'static StartInfo) -> ! {
        println!("dom0-soak: {TOTAL} guests created and destroyed, {AT_ONCE} at a time");
        let mut c = Checks::new("dom0-soak");
        if c.ok("runtime::init", pv_guest_lib::runtime::init().map(|_| ()))
            .is_none()
            || c.ok("heap", pv_guest_lib::heap::init(HEAP_PAGES)).is_none()
        {
            c.finish()
        }
        let ramdisk = pv_guest_lib::ramdisk().map(Archive::new);
        let has_net = ramdisk.and_then(|a| a.find("/boot/domu-net")).is_some();
        c.check(
            "the networked guest is in the ramdisk",
            has_net,
            format_args!("/boot/domu-net"),
        );
        let mut ts = Toolstack::new(ramdisk);
        let mut index = 0u32;
        let nodes_before = ts.xenstore_paths();
        let mut nodes_warm = nodes_before.clone();
        // What the toolstack sets up once (the bridge, netback, its tables
        // grown to their working size) is not a leak: Dom0's own figures
        // are compared with those after WARM_UP guests.
        let before_warm = baseline(&mut index);
        let mut created = 0usize;
        let mut failed = 0usize;
        let t0 = time::now_ns();
        let mut warm: Option<Baseline> = None;
        while created < TOTAL {
            if created == WARM_UP {
                // Measured as at the end: the back ends idle first, and
                // nothing of this loop's on the heap.
                ts.serve_until(SETTLE_NS, |_| false);
                // (The list first: it is on the heap at both measurements.)
                nodes_warm = ts.xenstore_paths();
                warm = Some(baseline(&mut index));
            }
            let mut ids: Vec<(u32, bool)> = Vec::new();
            for _ in 0..AT_ONCE.min(TOTAL - created) {
                let n = created;
                let net = n.is_multiple_of(NET_EVERY);
                let mut extra = alloc::vec![format!("name=\"soak{n}\"")];
                if net {
                    extra.push(String::from("kernel=\"/boot/domu-net\""));
                    extra.push(format!(
                        "extra=\"ip=10.0.9.{}/24 serve\"",
                        2 + n / NET_EVERY % 200
                    ));
                    extra.push(String::from("vif=[\"bridge=xenbr0\"]"));
                }
                created += 1;
                match ts.create(&request(&extra), &mut ConsoleOut) {
                    Ok(Some(id)) => ids.push((id, net)),
                    r => {
                        failed += 1;
                        println!("dom0-soak: xl create soak{n}: {r:?}");
                    }
                }
            }
            for &(id, net) in &ids {
                if !ts.serve_until(UP_NS, |ts| up(ts, id, net)) {
                    failed += 1;
                    println!("dom0-soak: d{id} did not come up (net {net})");
                }
            }
            for &(id, _) in &ids {
                if let Err(e) = ts.destroy(id) {
                    failed += 1;
                    println!("dom0-soak: xl destroy d{id}: {e}");
                }
            }
            // Let the back ends see the domains go.
            ts.serve_until(50_000_000, |_| false);
            if created.is_multiple_of(100) {
                println!(
                    "dom0-soak: {created}/{TOTAL} guests, {failed} failures, {} s, free {} pages, Dom0 heap {} bytes in use, {} xenstore nodes",
                    (time::now_ns() - t0) / 1_000_000_000,
                    xc::physinfo().map_or(0, |p| p.free_pages),
                    pv_guest_lib::heap::stats().0,
                    ts.xenstore_paths().len()
                );
            }
        }
        ts.serve_until(SETTLE_NS, |_| false);
        let after = baseline(&mut index);
        let warm = warm.unwrap_or_else(|| before_warm.clone());
        c.check(
            "every guest was created, came up and was destroyed",
            failed == 0,
            format_args!("{failed} failures in {created}"),
        );
        c.check(
            "the hypervisor's free memory is back exactly",
            after.free_pages == before_warm.free_pages,
            format_args!(
                "{} pages before, {} after",
                before_warm.free_pages, after.free_pages
            ),
        );
        c.check(
            "Dom0's free frames are back exactly (after the first 100 guests)",
            after.dom0_frames == warm.dom0_frames,
            format_args!(
                "{} at boot, {} after the first 100 guests, {} at the end",
                before_warm.dom0_frames, warm.dom0_frames, after.dom0_frames
            ),
        );
        c.check(
            "Dom0's heap in use is back exactly (after the first 100 guests)",
            after.dom0_heap == warm.dom0_heap,
            format_args!(
                "{} bytes at boot, {} after the first 100 guests, {} at the end",
                before_warm.dom0_heap, warm.dom0_heap, after.dom0_heap
            ),
        );
        c.check(
            "Dom0 maps no grant any more (maptrack in use as before)",
            after.maptrack.is_some() && after.maptrack == before_warm.maptrack,
            format_args!(
                "{:?} before, {:?} after",
                before_warm.maptrack, after.maptrack
            ),
        );
        // The first vif leaves `/local/domain/0/backend/vif` (as libxl's
        // does); after the warm-up, nothing may grow.
        let nodes_after = ts.xenstore_paths();
        let left: Vec<&String> = nodes_after
            .iter()
            .filter(|p| !nodes_warm.contains(p))
            .take(10)
            .collect();
        c.check(
            "xenstore holds exactly the nodes it held after the first 100 guests",
            nodes_after == nodes_warm && nodes_before.iter().all(|p| nodes_after.contains(p)),
            format_args!(
                "{} nodes at boot, {} after the first 100 guests, {} at the end; new ones: {left:?}",
                nodes_before.len(),
                nodes_warm.len(),
                nodes_after.len()
            ),
        );
        c.check(
            "no domain is left but Dom0",
            after.domains == 1,
            format_args!("{} domains", after.domains),
        );
        c.finish()
    }
}
