//! Test Dom0: named regression checks for the Xen security advisories whose
//! bug class applies to Oxen (docs/xsa.md), run against the real
//! hypervisor: PV page-table validation (XSA-148, XSA-182), hypercall
//! argument arrays (XSA-212), grant lifetime (XSA-224), event-channel
//! ports (XSA-221, XSA-338). Each check does what the advisory's attacker
//! did and expects the answer Xen gives since the fix, then that nothing
//! else broke. Lines: `dom0-xsa: XSA-NNN <what>: ok (<detail>)`.
//!
//! The same advisories are also covered by host unit tests of the logic
//! (`xsa_*` in xen-core, dom0-tools); this kernel proves the glue passes
//! the hostile input through to that logic.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use dom0_tools::pvtest::{want, Checks};
    use hypercall_abi::errno::Errno as AbiErrno;
    use hypercall_abi::event_channel::EvtchnStat;
    use hypercall_abi::grant_table::{
        GNTMAP_DEVICE_MAP, GNTMAP_HOST_MAP, GTF_PERMIT_ACCESS, GTF_READING, GTF_WRITING,
    };
    use hypercall_abi::hypercall::Hypercall;
    use hypercall_abi::memory::{MemoryOp, XenMemoryExchange, XenMemoryReservation};
    use hypercall_abi::xen::DOMID_SELF;
    use pv_guest_lib::error::{self, Errno};
    use pv_guest_lib::frame::{self, Frame};
    use pv_guest_lib::grant::{self, GrantTable};
    use pv_guest_lib::memory;
    use pv_guest_lib::mm::{self, Pte, PteFlags};
    use pv_guest_lib::mmu::{self, Flush};
    use pv_guest_lib::{events, println, shared, trap, xen, StartInfo};

    pv_guest_lib::entry!(main);

    /// The page the page-table checks map (L4 slot 384).
    const TEST_VA: u64 = 0xffff_c000_0010_0000;
    /// Where a read-only alias of a page table goes (same L1).
    const ALIAS_VA: u64 = TEST_VA + 0x1000;
    /// Where the grant checks map (same L1).
    const GRANT_VA: u64 = TEST_VA + 0x2000;
    /// Where the grant table is mapped.
    const GT_VA: u64 = 0xffff_c000_0020_0000;
    /// The first address of the hypervisor's reserved range.
    const HYPERVISOR_VIRT_START: u64 = 0xffff_8000_0000_0000;
    const MARK: u64 = 0x5a5a_0148_0182_0212;

    fn read(va: u64) -> u64 {
        // SAFETY: callers only read pages they mapped.
        unsafe { core::ptr::read_volatile(va as *const u64) }
    }

    fn write(va: u64, v: u64) {
        // SAFETY: callers only write pages they mapped writable.
        unsafe { core::ptr::write_volatile(va as *mut u64, v) }
    }

    fn single(r: Result<u32, mmu::BatchError>) -> Result<u32, Errno> {
        r.map_err(|e| e.errno)
    }

    /// The L1 and L2 tables mapping `va`, and the L2 entry.
    fn tables_of(l4: u64, va: u64) -> Result<(u64, u64, Pte), mm::PtError> {
        frame::with_pt(|b| {
            use mm::PtBackend;
            let l3 = b.read(l4, mm::index(va, 4))?.mfn();
            let l2 = b.read(l3, mm::index(va, 3))?.mfn();
            let l2e = b.read(l2, mm::index(va, 2))?;
            Ok((l2e.mfn(), l2, l2e))
        })
    }

    /// XSA-148: "x86: Uncontrolled creation of large page mappings by PV
    /// guests". Xen's mod_l2_entry fast path (same frame, same presence)
    /// skipped the flag check, so setting PSE on an L2 entry turned the L1
    /// below into a writable 2 MiB mapping of whatever it pointed at. Oxen
    /// refuses PSE in any L2 update (-EINVAL), fast path or not.
    fn xsa_148(c: &mut Checks, l2: u64, l2e: Pte, l1: u64) {
        let slot = mm::index(TEST_VA, 2);
        for (what, val) in [
            (
                "XSA-148 L2 entry gains PSE on the fast path (same L1)",
                Pte(l2e.0 | PteFlags::PSE.0),
            ),
            (
                "XSA-148 L2 entry gains PSE and loses RW",
                Pte((l2e.0 | PteFlags::PSE.0) & !PteFlags::RW.0),
            ),
        ] {
            c.err(
                what,
                single(mmu::mmu_update(&[mmu::pt_update(l2, slot, val)])),
                want::L2_RESERVED_BITS,
            );
        }
        c.err(
            "XSA-148 the L1 is still a page table: no writable mapping of it",
            mmu::update_va_mapping(
                ALIAS_VA,
                Pte::new(l1, PteFlags::KERNEL_RW).0,
                Flush::InvlpgLocal,
            ),
            want::WRITABLE_MAP_OF_PAGE_TABLE,
        );
        c.check(
            "XSA-148 mapping unchanged after the refusals",
            read(TEST_VA) == MARK,
            format_args!("{:#x}", read(TEST_VA)),
        );
    }

    /// XSA-182: "Potential privilege escalation in PV guests" (CVE-2016-6258,
    /// SUSE's wording; fix: "Remove
    /// unsafe bits from the mod_l?_entry fastpath ... All changes in
    /// writeability and cacheability must go through full re-validation").
    /// A read-only mapping of a live page table must stay read-only when
    /// only RW changes (-EBUSY), and an L4 mapping itself (the advisory's
    /// read-only linear page table) is refused by Oxen outright (-EINVAL,
    /// docs/abi-deviations.md).
    fn xsa_182(c: &mut Checks, l4: u64, l1: u64) {
        c.ok(
            "XSA-182 read-only alias of the L1 (allowed)",
            mmu::update_va_mapping(
                ALIAS_VA,
                Pte::new(l1, PteFlags::KERNEL_RO).0,
                Flush::InvlpgLocal,
            ),
        );
        let ro = frame::lookup_kernel(ALIAS_VA).unwrap_or(Pte(0));
        let own = read(ALIAS_VA + 8 * mm::index(TEST_VA, 1) as u64);
        c.err(
            "XSA-182 same frame, only RW added (mmu_update)",
            single(mmu::mmu_update(&[mmu::pt_update(
                l1,
                mm::index(ALIAS_VA, 1),
                Pte(ro.0 | PteFlags::RW.0),
            )])),
            want::WRITABLE_MAP_OF_PAGE_TABLE,
        );
        c.err(
            "XSA-182 same frame, only RW added (update_va_mapping)",
            mmu::update_va_mapping(ALIAS_VA, ro.0 | PteFlags::RW.0, Flush::InvlpgLocal),
            want::WRITABLE_MAP_OF_PAGE_TABLE,
        );
        let now = frame::lookup_kernel(ALIAS_VA).unwrap_or(Pte(0));
        c.check(
            "XSA-182 the alias stayed read-only and reads the L1",
            now.0 & PteFlags::RW.0 == 0 && read(ALIAS_VA + 8 * mm::index(TEST_VA, 1) as u64) == own,
            format_args!("pte {:#x}", now.0),
        );
        c.ok(
            "XSA-182 drop the alias",
            mmu::update_va_mapping(ALIAS_VA, 0, Flush::InvlpgLocal),
        );
        let linear = Pte(Pte::new(l4, PteFlags::TABLE).0 & !PteFlags::RW.0);
        c.err(
            "XSA-182 read-only L4 self-map (linear page table) refused",
            single(mmu::mmu_update(&[mmu::pt_update(l4, 400, linear)])),
            AbiErrno::EINVAL,
        );
        c.check(
            "XSA-182 test page intact",
            read(TEST_VA) == MARK,
            format_args!("{:#x}", read(TEST_VA)),
        );
    }

    /// A raw XENMEM_exchange.
    fn exchange(x: &mut XenMemoryExchange) -> Result<u64, Errno> {
        // SAFETY: `x` is one valid struct; the arrays it names are the
        // hostile part, which the hypervisor must refuse.
        error::check(unsafe {
            pv_guest_lib::hypercall::hypercall2(
                Hypercall::MemoryOp,
                MemoryOp::Exchange as u64,
                x as *mut XenMemoryExchange as u64,
            )
        })
    }

    /// XSA-212: "x86: broken check in memory_exchange() permits PV guest
    /// breakout". Xen checked its guest arrays only at their start; Oxen
    /// checks each element's address: arrays in the hypervisor's range get
    /// -EFAULT (Xen's `guest_handle_okay` answer), nothing is exchanged and
    /// the domain keeps its memory.
    fn xsa_212(c: &mut Checks, f: &Frame) {
        let before = memory::current_reservation(DOMID_SELF).unwrap_or(0);
        let mut out = [0u64; 1];
        let res = |start: u64| XenMemoryReservation {
            extent_start: start,
            nr_extents: 1,
            domid: DOMID_SELF,
            ..Default::default()
        };
        let mut x = XenMemoryExchange {
            r#in: res(HYPERVISOR_VIRT_START + 0x1000),
            out: res(out.as_mut_ptr() as u64),
            nr_exchanged: 0,
        };
        c.err(
            "XSA-212 exchange with its in-array in Xen's memory",
            exchange(&mut x),
            AbiErrno::EFAULT,
        );
        c.check(
            "XSA-212 nothing exchanged",
            x.nr_exchanged == 0 && out[0] == 0,
            format_args!("nr_exchanged {}", x.nr_exchanged),
        );
        let inp = [f.mfn];
        let mut x = XenMemoryExchange {
            r#in: res(inp.as_ptr() as u64),
            out: res(HYPERVISOR_VIRT_START + 0x2000),
            nr_exchanged: 0,
        };
        c.err(
            "XSA-212 exchange with its out-array in Xen's memory",
            exchange(&mut x),
            AbiErrno::EFAULT,
        );
        let after = memory::current_reservation(DOMID_SELF).unwrap_or(0);
        c.check(
            "XSA-212 the domain kept its frame and its memory",
            x.nr_exchanged == 0 && after == before && read(f.va) == 0x212,
            format_args!("{before} -> {after} pages"),
        );
    }

    /// XSA-224: "grant table operations mishandle reference counts": a
    /// device+host mapping followed by a host-only unmap dropped the device
    /// part's references too. Oxen keeps them: the grant stays busy and the
    /// frame cannot become a page table until the device part goes.
    fn xsa_224(c: &mut Checks) {
        let mut gt = match GrantTable::setup(1, GT_VA) {
            Ok(gt) => gt,
            Err(e) => {
                c.check("XSA-224 grant table", false, format_args!("{e:?}"));
                return;
            }
        };
        let Some(g) = c.ok("XSA-224 a frame to grant", frame::alloc_frame()) else {
            return;
        };
        write(g.va, 0x224);
        let Some(gref) = c.ok(
            "XSA-224 grant it to ourselves",
            gt.grant_access(0, g.mfn, false),
        ) else {
            return;
        };
        let Some(m) = c.ok(
            "XSA-224 map it for host and device",
            grant::map(0, gref, GRANT_VA, GNTMAP_HOST_MAP | GNTMAP_DEVICE_MAP),
        ) else {
            return;
        };
        c.ok(
            "XSA-224 unmap the host part only",
            grant::unmap(m.handle, GRANT_VA, 0),
        );
        let fl = gt.flags(gref);
        c.check(
            "XSA-224 the device part keeps the grant busy",
            fl == GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING,
            format_args!("flags {fl:#x}"),
        );
        c.ok(
            "XSA-224 its direct-map alias read-only",
            frame::set_direct_writable(g.pfn, false),
        );
        c.err(
            "XSA-224 the device-mapped frame cannot become a page table",
            mmu::pin(1, g.mfn),
            want::PIN_WRITABLE_FRAME,
        );
        c.ok(
            "XSA-224 unmap the device part",
            grant::unmap(m.handle, 0, g.mfn << 12),
        );
        c.check(
            "XSA-224 the grant is free again",
            gt.flags(gref) == GTF_PERMIT_ACCESS,
            format_args!("flags {:#x}", gt.flags(gref)),
        );
        if c.ok("XSA-224 now it may be pinned", mmu::pin(1, g.mfn))
            .is_some()
        {
            c.ok("XSA-224 unpin", mmu::unpin(g.mfn));
        }
        c.ok(
            "XSA-224 alias writable again",
            frame::set_direct_writable(g.pfn, true),
        );
        c.ok("XSA-224 end access", gt.end_access(gref));
        c.check(
            "XSA-224 frame contents intact",
            read(g.va) == 0x224,
            format_args!("{:#x}", read(g.va)),
        );
    }

    /// XSA-221: "does not validate the port numbers of polled event channel
    /// ports" (CVE-2017-10917; the XTF test polls every port). Oxen's
    /// SCHEDOP_poll must answer -EINVAL for exactly the ports
    /// EVTCHNOP_status calls invalid, and return at once (timeout already
    /// past) for the others.
    fn xsa_221(c: &mut Checks) {
        let was = events::irq_disable();
        let mut bad = None;
        let mut invalid = 0u32;
        let ports = (0..=4100u32).chain([1 << 16, 1 << 31, u32::MAX]);
        for port in ports {
            let valid = events::status(port) != Err(Errno::EINVAL);
            let r = xen::sched_poll(&[port], 1);
            let good = if valid {
                r.is_ok()
            } else {
                invalid += 1;
                r == Err(Errno::EINVAL)
            };
            if !good && bad.is_none() {
                bad = Some((port, valid, r));
            }
        }
        if was {
            events::irq_enable();
        }
        c.check(
            "XSA-221 SCHEDOP_poll of every port: -EINVAL exactly for invalid ports",
            bad.is_none() && invalid > 0,
            format_args!("{invalid} invalid; first mismatch {bad:?}"),
        );
    }

    /// XSA-338: "once valid event channels may not turn invalid". Xen's
    /// evtchn_reset shrank the valid range under other users' feet. After
    /// EVTCHNOP_reset every port stays valid: a port of the second bucket
    /// reads back closed (not -EINVAL), and allocation works again.
    fn xsa_338(c: &mut Checks) {
        let mut last = None;
        for _ in 0..80 {
            match events::alloc_unbound(0, 0) {
                Ok(p) => last = Some(p),
                Err(e) => {
                    c.check("XSA-338 allocate 80 ports", false, format_args!("{e}"));
                    return;
                }
            }
        }
        let Some(p) = last.filter(|&p| p >= 64) else {
            c.check(
                "XSA-338 a port in the second bucket",
                false,
                format_args!("{last:?}"),
            );
            return;
        };
        c.ok(
            "XSA-338 EVTCHNOP_reset of ourselves",
            events::reset(DOMID_SELF),
        );
        events::forget_all();
        let st = events::status(p);
        c.check(
            "XSA-338 a port of the second bucket is still valid, and closed",
            st.as_ref()
                .is_ok_and(|s| events::stat(s) == Some(EvtchnStat::Closed)),
            format_args!("port {p}: {:?}", st.map(|s| s.status)),
        );
        c.err(
            "XSA-338 sending on it: closed, not a fault",
            events::send(p),
            want::EVTCHN_BAD_PORT,
        );
        let again = events::alloc_unbound(0, 0);
        c.check(
            "XSA-338 allocation works after the reset",
            again.is_ok_and(|q| q < 64),
            format_args!("{again:?}"),
        );
    }

    fn main(si: &'static StartInfo) -> ! {
        println!("dom0-xsa: Oxen regression checks for Xen security advisories");
        let mut c = Checks::new("dom0-xsa");
        c.ok("map shared_info", shared::map(si.shared_info).map(|_| ()));
        c.ok("install traps", trap::install());
        events::irq_enable();
        let Some(info) = c.ok("frame allocator", frame::init()) else {
            c.finish()
        };
        let Some(f) = c.ok("a test frame", frame::alloc_frame()) else {
            c.finish()
        };
        write(f.va, MARK);
        c.ok(
            "map the test page",
            frame::map_kernel(TEST_VA, f.mfn, PteFlags::KERNEL_RW),
        );
        let Some((l1, l2, l2e)) = c.ok("find its L1 and L2", tables_of(info.kernel_l4, TEST_VA))
        else {
            c.finish()
        };
        xsa_148(&mut c, l2, l2e, l1);
        xsa_182(&mut c, info.kernel_l4, l1);
        if let Some(g) = c.ok("a frame for XSA-212", frame::alloc_frame()) {
            write(g.va, 0x212);
            xsa_212(&mut c, &g);
        }
        xsa_224(&mut c);
        xsa_221(&mut c);
        // Last: it closes every port we have.
        xsa_338(&mut c);
        c.check(
            "the domain carries on: test page intact",
            read(TEST_VA) == MARK,
            format_args!("{:#x}", read(TEST_VA)),
        );
        c.finish()
    }
}
