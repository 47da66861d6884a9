//! Test Dom0: HVM domains from the toolstack's side, before any HVM vCPU
//! runs. An HVM domain with nested paging (`XEN_DOMCTL_CDF_hvm | CDF_hap`)
//! is created, populated at guest frames (2 MiB and 4 KiB extents, up to
//! its limit), mapped into Dom0 by guest frame number (foreign
//! `mmu_update`, Xen's translated-guest rule), shrunk with
//! `decrease_reservation`, refused an unpause (vCPU 0 has no context yet)
//! and destroyed: free memory comes back exactly, once Dom0's last mapping
//! of one of its frames is gone and not before. `CDF_hvm` without
//! `CDF_hap` is refused (no shadow paging).

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use dom0_tools::pvtest::Checks;
    use dom0_tools::xc::{self, foreign::ForeignMap, CreateParams};
    use hypercall_abi::domctl::{
        XEN_DOMCTL_CDF_HAP, XEN_DOMCTL_CDF_HVM, XEN_DOMINF_HAP, XEN_DOMINF_HVM_GUEST,
        XEN_DOMINF_PAUSED,
    };
    use hypercall_abi::errno::Errno as AbiErrno;
    use pv_guest_lib::{frame, println, Errno, StartInfo};

    pv_guest_lib::entry!(main);

    /// 8 MiB in 2 MiB extents at guest frame 0.
    const LOW_EXTENTS: u64 = 4;
    const LOW_PAGES: u64 = LOW_EXTENTS * 512;
    /// Single frames at odd guest frames above the low range.
    const ODD_GFNS: [u64; 3] = [0x1001, 0x1003, 0x1005];
    /// Headroom under max_pages after those, which a later populate fills.
    const SPARE: u64 = 5;
    /// Guest frames mapped into Dom0 and checked.
    const MAPPED: [u64; 6] = [0, 1, 511, 512, LOW_PAGES - 1, 0x1001];

    fn free_pages() -> Result<u64, Errno> {
        xc::physinfo().map(|p| p.free_pages)
    }

    fn create(flags: u32) -> Result<u16, Errno> {
        let p = CreateParams {
            max_vcpus: 1,
            handle: [0x48; 16],
            ..CreateParams::default()
        };
        xc::create_domain_with_flags(&p, flags)
    }

    fn pattern(gfn: u64, i: usize) -> u64 {
        0x4856_4d00_0000_0000 ^ (gfn << 16) ^ i as u64
    }

    fn main(_si: &'static StartInfo) -> ! {
        println!("pv-hvm: Oxen HVM domain memory test (no vCPU runs)");
        let mut c = Checks::new("pv-hvm");
        if c.ok("frame allocator and kernel L4", frame::init())
            .is_none()
        {
            c.finish()
        }
        let Some(free0) = c.ok("free pages before", free_pages()) else {
            c.finish()
        };

        c.err(
            "createdomain CDF_hvm without CDF_hap (no shadow paging)",
            create(XEN_DOMCTL_CDF_HVM),
            AbiErrno::EINVAL,
        );
        c.err(
            "createdomain CDF_hap without CDF_hvm",
            create(XEN_DOMCTL_CDF_HAP),
            AbiErrno::EINVAL,
        );
        let Some(d) = c.ok(
            "createdomain CDF_hvm | CDF_hap",
            create(XEN_DOMCTL_CDF_HVM | XEN_DOMCTL_CDF_HAP),
        ) else {
            c.finish()
        };
        if let Some(i) = c.ok("getdomaininfo", xc::domain_info(d)) {
            c.check(
                "getdomaininfo shows an HVM (HAP) guest, paused, no memory",
                i.flags & XEN_DOMINF_HVM_GUEST != 0
                    && i.flags & XEN_DOMINF_HAP != 0
                    && i.flags & XEN_DOMINF_PAUSED != 0
                    && i.tot_pages == 0,
                format_args!("flags {:#x} pages {}", i.flags, i.tot_pages),
            );
        }
        let max = LOW_PAGES + ODD_GFNS.len() as u64 + SPARE;
        c.ok("max_mem", xc::set_max_mem(d, max * 4));

        // Memory.
        let mut low: [u64; LOW_EXTENTS as usize] = core::array::from_fn(|i| i as u64 * 512);
        if let Some(n) = c.ok(
            "populate 8 MiB at gfn 0 (order 9)",
            xc::populate_physmap_order(d, 9, &mut low),
        ) {
            c.check(
                "all four 2 MiB extents",
                n == LOW_EXTENTS as usize,
                format_args!("{n}"),
            );
        }
        c.check(
            "the list is left as it was (a translated guest gets no machine frames)",
            low.iter().enumerate().all(|(i, &g)| g == i as u64 * 512),
            format_args!("{low:x?}"),
        );
        if let Some(i) = c.ok("getdomaininfo after populating", xc::domain_info(d)) {
            c.check(
                "tot_pages is 8 MiB",
                i.tot_pages == LOW_PAGES,
                format_args!("{}", i.tot_pages),
            );
        }
        let mut odd = ODD_GFNS;
        if let Some(n) = c.ok(
            "populate odd gfns (order 0)",
            xc::populate_physmap_order(d, 0, &mut odd),
        ) {
            c.check("three frames", n == 3, format_args!("{n}"));
        }
        let mut again = [512u64];
        if let Some(n) = c.ok(
            "populate an extent that is populated already",
            xc::populate_physmap_order(d, 9, &mut again),
        ) {
            c.check("is not done (0 extents)", n == 0, format_args!("{n}"));
        }
        let mut again = [0x1003u64];
        if let Some(n) = c.ok(
            "populate a populated single gfn",
            xc::populate_physmap_order(d, 0, &mut again),
        ) {
            c.check("is not done either", n == 0, format_args!("{n}"));
        }
        let mut high = [1u64 << 36];
        c.err(
            "populate a gfn above the p2m's limit",
            xc::populate_physmap_order(d, 0, &mut high),
            AbiErrno::EINVAL,
        );
        let mut many: [u64; 20] = core::array::from_fn(|i| 0x2000 + i as u64);
        if let Some(n) = c.ok(
            "populate 20 frames with 5 left under max_pages",
            xc::populate_physmap_order(d, 0, &mut many),
        ) {
            c.check(
                "stops at the limit",
                n == SPARE as usize,
                format_args!("{n}"),
            );
        }
        if let Some(i) = c.ok("getdomaininfo at the limit", xc::domain_info(d)) {
            c.check(
                "tot_pages == max_pages",
                i.tot_pages == max && i.max_pages == max,
                format_args!("{} / {}", i.tot_pages, i.max_pages),
            );
        }

        // Dom0 maps guest frames by gfn.
        let mut kept = None;
        match ForeignMap::new(d, &MAPPED) {
            Ok(mut a) => {
                c.check(
                    "map 6 gfns into Dom0",
                    a.pages() == 6,
                    format_args!("{}", a.pages()),
                );
                let mut zero = true;
                for (k, &g) in MAPPED.iter().enumerate() {
                    if let Some(p) = a.page(k as u64) {
                        zero &= p.iter().all(|&b| b == 0);
                        for (i, w) in p.chunks_exact_mut(8).enumerate() {
                            w.copy_from_slice(&pattern(g, i).to_le_bytes());
                        }
                    }
                }
                c.check("fresh frames are zeroed", zero, format_args!("6 pages"));
                match ForeignMap::new(d, &MAPPED) {
                    Ok(mut b) => {
                        let mut same = b.pages() == 6;
                        for (k, &g) in MAPPED.iter().enumerate() {
                            if let Some(p) = b.page(k as u64) {
                                same &= p.chunks_exact(8).enumerate().all(|(i, w)| {
                                    u64::from_le_bytes(w.try_into().unwrap_or([0; 8]))
                                        == pattern(g, i)
                                });
                            }
                        }
                        c.check(
                            "a second mapping of the same gfns reads the patterns back",
                            same,
                            format_args!("{} pages", b.pages()),
                        );
                    }
                    Err(e) => {
                        c.check("second mapping", false, format_args!("{e}"));
                    }
                }
                drop(a);
            }
            Err(e) => {
                c.check("map 6 gfns into Dom0", false, format_args!("{e}"));
            }
        }
        c.err(
            "mapping an unpopulated gfn",
            ForeignMap::new(d, &[0x1002]).map(|m| m.pages()),
            AbiErrno::EINVAL,
        );

        // vCPU 0 has no context yet (XEN_DOMCTL_sethvmcontext): refused.
        c.err(
            "unpause an HVM domain whose vCPU 0 has no context",
            xc::unpause(d),
            AbiErrno::EINVAL,
        );
        if let Some(i) = c.ok(
            "getdomaininfo after the refused unpause",
            xc::domain_info(d),
        ) {
            c.check(
                "still paused, no vCPU up",
                i.flags & XEN_DOMINF_PAUSED != 0 && i.nr_online_vcpus == 0,
                format_args!("flags {:#x} online {}", i.flags, i.nr_online_vcpus),
            );
        }
        c.ok(
            "pinning an HVM domain's frame does nothing and succeeds (as Xen)",
            xc::pin_table(d, 1, 0x1001),
        );

        // Giving frames back. A 4 KiB page's frame goes back to the free
        // pool; taking one out of a 2 MiB page also costs the p2m a new
        // level-1 table (which is how this test sees 2 MiB pages in use).
        let free_a = free_pages().unwrap_or(0);
        let mut one = [0x1003u64];
        if let Some(n) = c.ok(
            "decrease_reservation of gfn 0x1003",
            xc::decrease_reservation(d, 0, &mut one),
        ) {
            c.check("one extent", n == 1, format_args!("{n}"));
        }
        let free_b = free_pages().unwrap_or(0);
        c.check(
            "its frame is free again",
            free_b == free_a + 1,
            format_args!("{free_a} -> {free_b}"),
        );
        c.err(
            "gfn 0x1003 no longer maps",
            ForeignMap::new(d, &[0x1003]).map(|m| m.pages()),
            AbiErrno::EINVAL,
        );
        let mut inside = [5u64];
        if let Some(n) = c.ok(
            "decrease_reservation of gfn 5 inside a 2 MiB page",
            xc::decrease_reservation(d, 0, &mut inside),
        ) {
            c.check("one extent", n == 1, format_args!("{n}"));
        }
        let free_c = free_pages().unwrap_or(0);
        c.check(
            "gfn 5 was in a 2 MiB page: its frame freed, a level-1 table taken",
            free_c == free_b,
            format_args!("{free_b} -> {free_c}"),
        );
        c.err(
            "gfn 5 no longer maps",
            ForeignMap::new(d, &[5]).map(|m| m.pages()),
            AbiErrno::EINVAL,
        );
        match ForeignMap::new(d, &[4, 6]) {
            Ok(mut m) => {
                let ok = (0..2u64).all(|k| {
                    m.page(k).is_some_and(|p| {
                        u64::from_le_bytes(p[..8].try_into().unwrap_or([0; 8])) == 0
                    })
                });
                c.check(
                    "its neighbours 4 and 6 still map (the 2 MiB page was split)",
                    ok && m.pages() == 2,
                    format_args!("{} pages", m.pages()),
                );
            }
            Err(e) => {
                c.check("its neighbours still map", false, format_args!("{e}"));
            }
        }
        let mut gone = [0x1003u64];
        if let Some(n) = c.ok(
            "decrease_reservation of a gfn given back already",
            xc::decrease_reservation(d, 0, &mut gone),
        ) {
            c.check("is not done", n == 0, format_args!("{n}"));
        }
        if let Some(i) = c.ok("getdomaininfo after decreasing", xc::domain_info(d)) {
            c.check(
                "tot_pages two less",
                i.tot_pages == max - 2,
                format_args!("{}", i.tot_pages),
            );
        }

        // Destroy, with one frame still mapped by Dom0.
        match ForeignMap::new(d, &[0x1001]) {
            Ok(mut m) => {
                if let Some(p) = m.page(0) {
                    p[..8].copy_from_slice(&0x0d0d_0e0e_u64.to_le_bytes());
                }
                kept = Some(m);
            }
            Err(e) => {
                c.check("keep gfn 0x1001 mapped", false, format_args!("{e}"));
            }
        }
        c.ok("destroydomain", xc::destroy(d));
        c.err(
            "getdomaininfo of the destroyed domain",
            xc::domain_info(d).map(|i| i.domid),
            AbiErrno::ESRCH,
        );
        if let Some(f) = c.ok("free pages after destroy, mapping kept", free_pages()) {
            c.check(
                "all but the mapped frame are free again",
                f + 1 == free0,
                format_args!("{free0} -> {f}"),
            );
        }
        if let Some(mut m) = kept.take() {
            let v = m
                .page(0)
                .map(|p| u64::from_le_bytes(p[..8].try_into().unwrap_or([0; 8])));
            c.check(
                "the mapped frame still holds what Dom0 wrote",
                v == Some(0x0d0d_0e0e),
                format_args!("{v:x?}"),
            );
            drop(m);
        }
        if let Some(f) = c.ok("free pages after the unmap", free_pages()) {
            c.check(
                "free memory is exactly as before",
                f == free0,
                format_args!("{free0} -> {f}"),
            );
        }
        c.finish()
    }
}
