//! Test Dom0: domain control (`domctl`/`sysctl`) with Xen 4.17's semantics,
//! without building a guest: a domain is created paused with no memory,
//! sized, populated, inspected, mapped by Dom0 (foreign `mmu_update`),
//! paused and unpaused, and destroyed; free memory returns exactly to its
//! value before — once Dom0's foreign mapping of one of its frames is gone,
//! not before (the frame stays allocated while mapped, as in Xen). Bad
//! arguments get Xen's answers: wrong interface version `-EACCES`, unknown
//! command `-ENOSYS`, missing domain `-ESRCH`, taken id `-EEXIST`, bad vCPU
//! counts and flags `-EINVAL`, pausing oneself `-EINVAL`. Its CPUID policy
//! can be levelled down (`set_cpu_policy`) until it is first unpaused
//! (then `-EEXIST`); a feature its default lacks is `-EINVAL` naming the
//! leaf.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use dom0_tools::pvtest::Checks;
    use dom0_tools::xc;
    use hypercall_abi::arch_x86::XenCpuidLeaf;
    use hypercall_abi::domctl::{
        DomctlCmd, XenDomctl, XenDomctlCpuPolicy, XenDomctlCreatedomain, XenDomctlGetdomaininfo,
        XenDomctlMaxMem, XEN_DOMCTL_CDF_HVM, XEN_DOMCTL_INTERFACE_VERSION, XEN_DOMINF_PAUSED,
        XEN_DOMINF_SHUTDOWN, XEN_DOMINF_SHUTDOWNMASK, XEN_DOMINF_SHUTDOWNSHIFT,
    };
    use hypercall_abi::errno::Errno as AbiErrno;
    use hypercall_abi::hypercall::Hypercall;
    use hypercall_abi::memory::{MemoryOp, XenMemoryExchange, XenMemoryReservation};
    use hypercall_abi::sysctl::{
        SysctlCmd, XenSysctl, XenSysctlPhysinfo, XenSysctlReadconsole, XenSysctlSchedId,
    };
    use pv_guest_lib::frame;
    use pv_guest_lib::mm::{self, PteFlags};
    use pv_guest_lib::{mmu, println, Errno, StartInfo};
    use zerocopy::FromZeros;

    pv_guest_lib::entry!(main);

    /// A free virtual address in Dom0 for the foreign mapping.
    const MAP_VA: u64 = 0x0000_7f00_0000_0000;
    /// Pages given to the test domain.
    const PAGES: u64 = 256;

    fn ret(r: i64) -> Result<i64, Errno> {
        pv_guest_lib::error::check(r).map(|v| v as i64)
    }

    fn domctl(op: &mut XenDomctl) -> Result<i64, Errno> {
        // SAFETY: Xen reads and writes back the one envelope `op` points to.
        ret(unsafe {
            pv_guest_lib::hypercall::hypercall1(Hypercall::Domctl, op as *mut XenDomctl as u64)
        })
    }

    fn sysctl(op: &mut XenSysctl) -> Result<i64, Errno> {
        // SAFETY: as domctl.
        ret(unsafe {
            pv_guest_lib::hypercall::hypercall1(Hypercall::Sysctl, op as *mut XenSysctl as u64)
        })
    }

    fn free_pages() -> Result<u64, Errno> {
        let mut op = XenSysctl::new(SysctlCmd::Physinfo);
        sysctl(&mut op)?;
        Ok(op.payload::<XenSysctlPhysinfo>().free_pages)
    }

    fn create(domid: u16, vcpus: u32, flags: u32) -> Result<u16, Errno> {
        let mut op = XenDomctl::new(DomctlCmd::Createdomain, domid);
        let mut cd = XenDomctlCreatedomain::new_zeroed();
        cd.max_vcpus = vcpus;
        cd.flags = flags;
        cd.max_grant_frames = -1;
        cd.max_maptrack_frames = -1;
        cd.handle = [0x0a; 16];
        op.set_payload(&cd);
        domctl(&mut op)?;
        Ok(op.domain)
    }

    fn simple(cmd: DomctlCmd, domid: u16) -> Result<i64, Errno> {
        domctl(&mut XenDomctl::new(cmd, domid))
    }

    fn info(domid: u16) -> Result<(u16, XenDomctlGetdomaininfo), Errno> {
        let mut op = XenDomctl::new(DomctlCmd::Getdomaininfo, domid);
        domctl(&mut op)?;
        Ok((op.domain, op.payload()))
    }

    fn populate(domid: u16, list: &mut [u64]) -> Result<i64, Errno> {
        let r = XenMemoryReservation {
            extent_start: list.as_mut_ptr() as u64,
            nr_extents: list.len() as u64,
            extent_order: 0,
            mem_flags: 0,
            domid,
            _pad26: [0; 3],
        };
        // SAFETY: Xen reads the reservation and rewrites `list` in place.
        ret(unsafe {
            pv_guest_lib::hypercall::hypercall2(
                Hypercall::MemoryOp,
                MemoryOp::PopulatePhysmap as u64,
                &r as *const _ as u64,
            )
        })
    }

    fn exchange(domid: u16, ins: &mut [u64], outs: &mut [u64]) -> Result<i64, Errno> {
        let res = |l: &mut [u64]| XenMemoryReservation {
            extent_start: l.as_mut_ptr() as u64,
            nr_extents: l.len() as u64,
            extent_order: 0,
            mem_flags: 0,
            domid,
            _pad26: [0; 3],
        };
        let x = XenMemoryExchange {
            r#in: res(ins),
            out: res(outs),
            nr_exchanged: 0,
        };
        // SAFETY: Xen reads both lists, rewrites `outs` and the struct.
        ret(unsafe {
            pv_guest_lib::hypercall::hypercall2(
                Hypercall::MemoryOp,
                MemoryOp::Exchange as u64,
                &x as *const _ as u64,
            )
        })
    }

    /// Room for a serialised policy and one more leaf (Dom0's heap is
    /// small here: everything is on the stack).
    const POLICY_MAX: usize = 121;

    /// A CPUID policy: `n` leaves of `l`.
    #[derive(Clone, Copy)]
    struct Policy {
        l: [XenCpuidLeaf; POLICY_MAX],
        n: usize,
    }

    impl Policy {
        fn leaves(&self) -> &[XenCpuidLeaf] {
            &self.l[..self.n]
        }
    }

    /// `XEN_DOMCTL_{get,set}_cpu_policy` on the new, never-run domain `d`;
    /// returns its policy (SSE4.2 levelled away).
    fn cpu_policy_checks(c: &mut Checks, d: u16) -> Option<Policy> {
        const NO_SUBLEAF: u32 = u32::MAX;
        // Sizes: NULL handles ask for Xen's maxima.
        let mut op = XenDomctl::new(DomctlCmd::GetCpuPolicy, d);
        op.set_payload(&XenDomctlCpuPolicy::new_zeroed());
        if c.ok("get_cpu_policy with NULL handles", domctl(&mut op))
            .is_some()
        {
            let p: XenDomctlCpuPolicy = op.payload();
            c.check(
                "it says 120 leaves (CPUID_MAX_SERIALISED_LEAVES), 0 MSRs",
                p.nr_leaves == 120 && p.nr_msrs == 0,
                format_args!("{} leaves, {} MSRs", p.nr_leaves, p.nr_msrs),
            );
        }
        let mut one = [XenCpuidLeaf::new_zeroed(); 1];
        c.err(
            "get_cpu_policy into a 1-leaf buffer",
            xc::get_cpu_policy_into(d, &mut one),
            AbiErrno::ENOBUFS,
        );
        let mut pol = Policy {
            l: [XenCpuidLeaf::new_zeroed(); POLICY_MAX],
            n: 0,
        };
        pol.n = c.ok("get_cpu_policy", xc::get_cpu_policy_into(d, &mut pol.l))?;
        let l1 = pol.leaves().iter().position(|l| l.leaf == 1);
        c.check(
            "it starts with leaf 0 and has leaf 1",
            pol.leaves()
                .first()
                .is_some_and(|l| l.leaf == 0 && l.subleaf == NO_SUBLEAF)
                && l1.is_some()
                && pol.n < POLICY_MAX,
            format_args!("{} leaves", pol.n),
        );
        let l1 = l1?;
        let set = |p: &Policy| xc::set_cpu_policy(d, p.leaves());
        c.ok(
            "set_cpu_policy with the policy unchanged",
            set(&pol).map_err(|e| e.errno),
        );
        // VMX is never offered to a PV guest: not a levelling down.
        let mut bad = pol;
        bad.l[l1].c |= 1 << 5;
        let r = set(&bad);
        c.check(
            "setting a feature the default lacks: -EINVAL, err_leaf 1",
            r.is_err_and(|e| e.errno == AbiErrno::EINVAL && e.leaf == 1 && e.subleaf == NO_SUBLEAF),
            format_args!("{r:?}"),
        );
        let mut bad = pol;
        bad.l[l1].a ^= 0xf0; // the model
        let r = set(&bad);
        c.check(
            "changing leaf 1's model: -EINVAL, err_leaf 1",
            r.is_err_and(|e| e.errno == AbiErrno::EINVAL && e.leaf == 1),
            format_args!("{r:?}"),
        );
        let mut bad = pol;
        bad.l[bad.n] = XenCpuidLeaf {
            leaf: 0x1234_5678,
            subleaf: NO_SUBLEAF,
            ..XenCpuidLeaf::new_zeroed()
        };
        bad.n += 1;
        let r = set(&bad);
        c.check(
            "a leaf Xen has no slot for: -ERANGE naming it",
            r.is_err_and(|e| e.errno == AbiErrno::ERANGE && e.leaf == 0x1234_5678),
            format_args!("{r:?}"),
        );
        let many = Policy {
            l: [pol.l[0]; POLICY_MAX],
            n: POLICY_MAX,
        };
        c.err(
            "121 leaves",
            set(&many).map_err(|e| e.errno),
            AbiErrno::E2BIG,
        );
        c.err(
            "set_cpu_policy on Dom0 itself",
            xc::set_cpu_policy(0, pol.leaves()).map_err(|e| e.errno),
            AbiErrno::EINVAL,
        );
        // Levelling SSE4.2 away (QEMU's -cpu max has it).
        let had = pol.l[l1].c & (1 << 20) != 0;
        let mut lev = pol;
        lev.l[l1].c &= !(1 << 20);
        c.ok(
            "set_cpu_policy without SSE4.2",
            set(&lev).map_err(|e| e.errno),
        );
        let mut now = [XenCpuidLeaf::new_zeroed(); POLICY_MAX];
        if let Some(n) = c.ok("get_cpu_policy after", xc::get_cpu_policy_into(d, &mut now)) {
            let ecx = now[..n].iter().find(|l| l.leaf == 1).map_or(0, |l| l.c);
            c.check(
                "SSE4.2 is gone, nothing else in leaf 1 ECX changed",
                had && ecx == pol.l[l1].c & !(1 << 20),
                format_args!("had {had}, ecx {:#x} -> {ecx:#x}", pol.l[l1].c),
            );
        }
        Some(lev)
    }

    fn main(_si: &'static StartInfo) -> ! {
        println!("pv-domctl: Oxen domain control test (Xen 4.17 semantics)");
        let mut c = Checks::new("pv-domctl");
        let Some(info0) = c.ok("frame allocator and kernel L4", frame::init()) else {
            c.finish()
        };

        // The machine.
        let mut op = XenSysctl::new(SysctlCmd::SchedId);
        if c.ok("sysctl sched_id", sysctl(&mut op)).is_some() {
            let id = op.payload::<XenSysctlSchedId>().sched_id;
            c.check("the scheduler is credit (5)", id == 5, format_args!("{id}"));
        }
        let mut op = XenSysctl::new(SysctlCmd::Physinfo);
        if c.ok("sysctl physinfo", sysctl(&mut op)).is_some() {
            let p: XenSysctlPhysinfo = op.payload();
            c.check(
                "physinfo: 2 CPUs, free <= total",
                p.nr_cpus == 2 && p.free_pages <= p.total_pages && p.cpu_khz > 0,
                format_args!(
                    "{} cpus, {}/{} pages, {} kHz",
                    p.nr_cpus, p.free_pages, p.total_pages, p.cpu_khz
                ),
            );
        }
        let mut buf = [0u8; 512];
        let mut op = XenSysctl::new(SysctlCmd::Readconsole);
        let mut r = XenSysctlReadconsole::new_zeroed();
        r.buffer = buf.as_mut_ptr() as u64;
        r.count = buf.len() as u32;
        op.set_payload(&r);
        if c.ok("sysctl readconsole", sysctl(&mut op)).is_some() {
            let r: XenSysctlReadconsole = op.payload();
            let text = &buf[..r.count as usize];
            c.check(
                "the console history has xen-core's boot lines",
                text.windows(4).any(|w| w == b"Oxen"),
                format_args!("{} bytes", r.count),
            );
        }

        // Refusals.
        let mut bad = XenDomctl::new(DomctlCmd::Getdomaininfo, 0);
        bad.interface_version = XEN_DOMCTL_INTERFACE_VERSION - 1;
        c.err(
            "domctl with an old interface version",
            domctl(&mut bad),
            AbiErrno::EACCES,
        );
        let mut bad = XenDomctl::new(DomctlCmd::Getdomaininfo, 0);
        bad.cmd = 9999;
        c.err("unknown domctl", domctl(&mut bad), AbiErrno::ENOSYS);
        c.err(
            "createdomain with 0 vCPUs",
            create(0, 0, 0),
            AbiErrno::EINVAL,
        );
        c.err(
            "createdomain with 33 vCPUs",
            create(0, 33, 0),
            AbiErrno::EINVAL,
        );
        c.err(
            "createdomain HVM without CDF_hap (Oxen has no shadow paging)",
            create(0, 1, XEN_DOMCTL_CDF_HVM),
            AbiErrno::EINVAL,
        );
        c.err(
            "pause a domain that does not exist",
            simple(DomctlCmd::Pausedomain, 77),
            AbiErrno::ESRCH,
        );
        c.err(
            "pause oneself",
            simple(DomctlCmd::Pausedomain, 0),
            AbiErrno::EINVAL,
        );
        c.err(
            "destroy oneself",
            simple(DomctlCmd::Destroydomain, 0),
            AbiErrno::EINVAL,
        );
        c.err(
            "getdomaininfo of a reserved id",
            info(0x7ff0),
            AbiErrno::EINVAL,
        );

        // A domain.
        let Some(free0) = c.ok("free pages before", free_pages()) else {
            c.finish()
        };
        let Some(d) = c.ok("createdomain (any id)", create(0, 2, 0)) else {
            c.finish()
        };
        c.check("the new domain has id 1", d == 1, format_args!("d{d}"));
        c.err(
            "createdomain with a taken id",
            create(d, 1, 0),
            AbiErrno::EEXIST,
        );
        if let Some((id, i)) = c.ok("getdomaininfo", info(d)) {
            c.check(
                "paused, no vCPU up, 2 vCPUs, no memory, our handle",
                id == d
                    && i.flags & XEN_DOMINF_PAUSED != 0
                    && i.nr_online_vcpus == 0
                    && i.max_vcpu_id == 1
                    && i.tot_pages == 0
                    && i.handle == [0x0a; 16],
                format_args!(
                    "flags {:#x} online {} max id {} pages {}",
                    i.flags, i.nr_online_vcpus, i.max_vcpu_id, i.tot_pages
                ),
            );
        }
        if let Some((id, _)) = c.ok("getdomaininfo from id 1 up finds it (Xen 4.17)", info(1)) {
            c.check("it is the domain found", id == d, format_args!("d{id}"));
        }
        let mut mm = XenDomctl::new(DomctlCmd::MaxMem, d);
        mm.set_payload(&XenDomctlMaxMem {
            max_memkb: PAGES * 4,
        });
        c.ok("max_mem 1 MiB", domctl(&mut mm));
        let mut list = [0u64; PAGES as usize + 8];
        for (i, g) in list.iter_mut().enumerate() {
            *g = i as u64;
        }
        if let Some(n) = c.ok(
            "populate_physmap of the domain, 8 past its limit",
            populate(d, &mut list),
        ) {
            c.check("stops at the limit", n == PAGES as i64, format_args!("{n}"));
        }
        let mfn = list[0];
        if let Some((_, i)) = c.ok("getdomaininfo after populating", info(d)) {
            c.check(
                "tot_pages and max_pages",
                i.tot_pages == PAGES && i.max_pages == PAGES,
                format_args!("{} / {}", i.tot_pages, i.max_pages),
            );
        }
        if let Some(f) = c.ok("free pages with the domain", free_pages()) {
            c.check(
                "its pages (and shared_info) came out of the free pool",
                f + PAGES < free0,
                format_args!("{free0} -> {f}"),
            );
        }

        // Dom0 maps one of its frames (a foreign mapping) and writes it.
        let l1 = frame::with_pt(|b| mm::ensure_l1(b, info0.kernel_l4, MAP_VA));
        let pte = mm::Pte((mfn << 12) | PteFlags::KERNEL_RW.0);
        let upd = mmu::pt_update(l1.unwrap_or(0), mm::index(MAP_VA, 1), pte);
        c.err(
            "mapping it without foreigndom",
            mmu::mmu_update(&[upd]).map_err(|e| e.errno),
            AbiErrno::EBUSY,
        );
        c.err(
            "foreigndom naming oneself",
            mmu::mmu_update_foreign(&[upd], 0).map_err(|e| e.errno),
            AbiErrno::ESRCH,
        );
        c.ok(
            "mmu_update with foreigndom maps its frame",
            mmu::mmu_update_foreign(&[upd], d).map_err(|e| e.errno),
        );
        // SAFETY: MAP_VA now maps the test domain's frame, writable.
        unsafe { (MAP_VA as *mut u64).write_volatile(0x5a5a_1234) };
        // SAFETY: as above.
        let back = unsafe { (MAP_VA as *const u64).read_volatile() };
        c.check(
            "Dom0 wrote and read it",
            back == 0x5a5a_1234,
            format_args!("{back:#x}"),
        );

        // XENMEM_exchange: two of its frames for two new ones; the one Dom0
        // maps cannot be taken.
        if let Some(f_before) = c.ok("free pages before exchanging", free_pages()) {
            let mut ins = [list[1], list[2]];
            let mut outs = [1u64, 2];
            let r = exchange(d, &mut ins, &mut outs);
            if c.ok("XENMEM_exchange of two frames", r).is_some() {
                c.check(
                    "two new frames, the domain's size and free memory unchanged",
                    outs[0] > 2
                        && outs[1] > 2
                        && outs[0] != outs[1]
                        && info(d).is_ok_and(|(_, i)| i.tot_pages == PAGES)
                        && free_pages() == Ok(f_before),
                    format_args!(
                        "{:#x} {:#x} -> {:#x} {:#x}",
                        list[1], list[2], outs[0], outs[1]
                    ),
                );
            }
            let mut ins = [mfn];
            let mut outs = [0u64];
            c.err(
                "XENMEM_exchange of a frame Dom0 maps",
                exchange(d, &mut ins, &mut outs),
                AbiErrno::EINVAL,
            );
        }

        // CPU policy (issue 7): levelled down before the domain first runs.
        let policy = cpu_policy_checks(&mut c, d);

        // Pause / unpause.
        c.ok(
            "unpause (it was created paused)",
            simple(DomctlCmd::Unpausedomain, d),
        );
        if let Some(p) = policy {
            c.err(
                "set_cpu_policy once the domain has been unpaused",
                xc::set_cpu_policy(d, p.leaves()).map_err(|e| e.errno),
                AbiErrno::EEXIST,
            );
            let mut again = [XenCpuidLeaf::new_zeroed(); POLICY_MAX];
            c.ok(
                "get_cpu_policy still answers",
                xc::get_cpu_policy_into(d, &mut again),
            );
        }
        c.err(
            "unpause again",
            simple(DomctlCmd::Unpausedomain, d),
            AbiErrno::EINVAL,
        );
        c.ok("pause", simple(DomctlCmd::Pausedomain, d));
        if let Some((_, i)) = c.ok("getdomaininfo", info(d)) {
            c.check(
                "paused",
                i.flags & XEN_DOMINF_PAUSED != 0,
                format_args!("{:#x}", i.flags),
            );
        }

        // XEN_DOMCTL_resumedomain (issue 7), Xen's semantics: not on
        // oneself, ESRCH for no domain, nothing to do for a domain that is
        // not shut down, and a suspended domain is running again after it.
        c.err(
            "resumedomain of oneself",
            simple(DomctlCmd::Resumedomain, 0),
            AbiErrno::EINVAL,
        );
        c.err(
            "resumedomain of a domain that does not exist",
            simple(DomctlCmd::Resumedomain, 77),
            AbiErrno::ESRCH,
        );
        c.ok(
            "resumedomain of a domain that is not shut down (a no-op, as Xen)",
            simple(DomctlCmd::Resumedomain, d),
        );
        let shut = |i: &XenDomctlGetdomaininfo| {
            (i.flags & XEN_DOMINF_SHUTDOWN != 0)
                .then_some((i.flags >> XEN_DOMINF_SHUTDOWNSHIFT) & XEN_DOMINF_SHUTDOWNMASK)
        };
        if let Some((_, i)) = c.ok("getdomaininfo after the no-op resume", info(d)) {
            c.check(
                "still paused, not shut down",
                i.flags & XEN_DOMINF_PAUSED != 0 && shut(&i).is_none(),
                format_args!("{:#x}", i.flags),
            );
        }
        c.ok(
            "remote_shutdown with SHUTDOWN_suspend",
            pv_guest_lib::xen::remote_shutdown(d, hypercall_abi::sched::ShutdownReason::Suspend),
        );
        if let Some((_, i)) = c.ok("getdomaininfo of the suspended domain", info(d)) {
            c.check(
                "shut down with reason suspend (2)",
                shut(&i) == Some(2),
                format_args!("{:#x}", i.flags),
            );
        }
        c.ok(
            "resumedomain of the suspended domain",
            simple(DomctlCmd::Resumedomain, d),
        );
        if let Some((_, i)) = c.ok("getdomaininfo after resumedomain", info(d)) {
            c.check(
                "no longer shut down, still paused",
                shut(&i).is_none() && i.flags & XEN_DOMINF_PAUSED != 0,
                format_args!("{:#x}", i.flags),
            );
        }

        // Destroy: everything but the frame Dom0 maps comes back at once.
        c.ok("destroydomain", simple(DomctlCmd::Destroydomain, d));
        c.err(
            "getdomaininfo of the destroyed domain (none at or above its id)",
            info(d).map(|(id, _)| id),
            AbiErrno::ESRCH,
        );
        if let Some(f) = c.ok("free pages after destroy, mapping kept", free_pages()) {
            c.check(
                "all but the mapped frame are free again",
                f + 1 == free0,
                format_args!("{free0} -> {f}"),
            );
        }
        // SAFETY: the frame stays allocated while mapped.
        let still = unsafe { (MAP_VA as *const u64).read_volatile() };
        c.check(
            "the mapped frame still holds what Dom0 wrote",
            still == 0x5a5a_1234,
            format_args!("{still:#x}"),
        );
        c.err(
            "a new domain cannot get the id whose frame is still mapped",
            create(d, 1, 0),
            AbiErrno::EEXIST,
        );
        let clear = mmu::pt_update(l1.unwrap_or(0), mm::index(MAP_VA, 1), mm::Pte(0));
        c.ok("unmap it", mmu::mmu_update(&[clear]).map_err(|e| e.errno));
        if let Some(f) = c.ok("free pages after the unmap", free_pages()) {
            c.check(
                "free memory is exactly as before",
                f == free0,
                format_args!("{free0} -> {f}"),
            );
        }
        if let Some(d2) = c.ok("the id is free again", create(d, 1, 0)) {
            c.ok("destroy it", simple(DomctlCmd::Destroydomain, d2));
        }
        c.finish()
    }
}
