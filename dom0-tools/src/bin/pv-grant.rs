//! Test Dom0: grant tables v1 against Xen 4.17, with self-grants (a domain
//! may grant to itself, so one domain exercises both ends).
//!
//! Positives: query_size, set/get_version, setup_table and mapping the
//! table, grant_access, host mappings (writable, read-only), device
//! mappings, unmaps, copies between grants and frames, batches with a bad
//! request in the middle. Xen's answers for the negatives: revocation
//! (end of access) while mapped is refused (`GTF_reading`/`GTF_writing`
//! are set), a granted frame given back while mapped stays alive until the
//! unmap and is gone after it, bad refs, handles, flags, domains, pointers,
//! counts and copy bounds each get Xen's `GNTST_*` or errno. Across
//! domains (Dom0 arranging it, since no domU kernel runs yet): Dom0 creates
//! a domain, sets up its grant table (`setup_table` for another domain, as
//! a privileged domain may), writes a grant for itself into the domain's
//! table through a foreign mapping, then maps, reads, writes, copies and
//! unmaps the domain's frame, with the domain's entry showing the pins.
//! Last, the
//! domain removes a grant PTE with `update_va_mapping` instead of
//! `unmap_grant_ref`: the hypervisor must crash it (the harness expects
//! the crash).

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use dom0_tools::pvtest::Checks;
    use hypercall_abi::domctl::{DomctlCmd, XenDomctl, XenDomctlCreatedomain, XenDomctlMaxMem};
    use hypercall_abi::errno::Errno as AbiErrno;
    use hypercall_abi::grant_table::{
        GntStatus, GnttabCacheFlush, GnttabGetStatusFrames, GnttabGetVersion, GnttabMapGrantRef,
        GnttabOp, GnttabSetVersion, GnttabSetupTable, GnttabSwapGrantRef, GnttabUnmapAndReplace,
        GnttabUnmapGrantRef, GNTMAP_CONTAINS_PTE, GNTMAP_DEVICE_MAP, GNTMAP_HOST_MAP,
        GNTMAP_READONLY, GNTTAB_CACHE_CLEAN, GNTTAB_CACHE_INVAL, GNTTAB_CACHE_SOURCE_GREF,
        GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_WRITING,
    };
    use hypercall_abi::hypercall::Hypercall;
    use hypercall_abi::memory::{MemoryOp, XenAddToPhysmap, XenMapSpace, XenMemoryReservation};
    use hypercall_abi::xen::DOMID_SELF;
    use pv_guest_lib::error::{self, Errno};
    use pv_guest_lib::frame;
    use pv_guest_lib::grant::{self, CopyPtr, GrantError, GrantTable};
    use pv_guest_lib::memory;
    use pv_guest_lib::mm::{self, Pte, PteFlags};
    use pv_guest_lib::mmu::{self, Flush};
    use pv_guest_lib::{events, println, shared, trap, StartInfo};
    use zerocopy::FromZeros;

    pv_guest_lib::entry!(main);

    /// Where grants are mapped (L4 slot 384).
    const TEST_VA: u64 = 0xffff_c000_0010_0000;
    /// Where the grant table is mapped.
    const GT_VA: u64 = 0xffff_c000_0020_0000;
    /// xen-core's own text: a frame no guest owns.
    const HYPERVISOR_MFN: u64 = 0x208;
    /// No such domain.
    const NO_DOMAIN: u16 = 0x1234;
    const HOST: u32 = GNTMAP_HOST_MAP;
    const DEV: u32 = GNTMAP_DEVICE_MAP;
    const RO: u32 = GNTMAP_READONLY;

    fn read(va: u64) -> u64 {
        // SAFETY: callers only read pages they mapped.
        unsafe { core::ptr::read_volatile(va as *const u64) }
    }

    fn write(va: u64, v: u64) {
        // SAFETY: callers only write pages they mapped writable.
        unsafe { core::ptr::write_volatile(va as *mut u64, v) }
    }

    /// A raw grant_table_op on one struct.
    fn raw<T>(cmd: u64, op: &mut T, count: u64) -> Result<u64, Errno> {
        // SAFETY: `op` is one valid struct; for count > 1 the hypervisor
        // must refuse before reading more (checked by these tests).
        error::check(unsafe { grant::grant_table_op_raw(cmd, op as *mut T as u64, count) })
    }

    fn raw_ptr(cmd: u64, uop: u64, count: u64) -> Result<u64, Errno> {
        // SAFETY: hostile pointers; the hypervisor must refuse them.
        error::check(unsafe { grant::grant_table_op_raw(cmd, uop, count) })
    }

    /// Expects `Err(Status(want))`.
    fn st<T: core::fmt::Debug>(
        c: &mut Checks,
        what: &str,
        r: Result<T, GrantError>,
        want: GntStatus,
    ) {
        match r {
            Err(GrantError::Status(s)) if s == want.raw() => {
                c.check(what, true, format_args!("{}", want.name()))
            }
            other => c.check(
                what,
                false,
                format_args!("got {other:?}, want {}", want.name()),
            ),
        };
    }

    fn status_of(s: i16) -> Result<(), GrantError> {
        grant::status(s)
    }

    fn version_checks(c: &mut Checks) {
        let cmd = u64::from(GnttabOp::SetVersion.raw());
        let mut v = GnttabSetVersion { version: 1 };
        c.ok("set_version(1)", raw(cmd, &mut v, 1));
        let mut v = GnttabSetVersion { version: 2 };
        c.err(
            "set_version(2) (Oxen offers v1 only)",
            raw(cmd, &mut v, 1),
            AbiErrno::ENOSYS,
        );
        c.check(
            "set_version(2) reports version 1",
            v.version == 1,
            format_args!("{}", v.version),
        );
        let mut v = GnttabSetVersion { version: 3 };
        c.err("set_version(3)", raw(cmd, &mut v, 1), AbiErrno::EINVAL);
        let cmd = u64::from(GnttabOp::GetVersion.raw());
        let mut g = GnttabGetVersion {
            dom: DOMID_SELF,
            ..Default::default()
        };
        c.ok("get_version(DOMID_SELF)", raw(cmd, &mut g, 1));
        c.check(
            "it is version 1",
            g.version == 1,
            format_args!("{}", g.version),
        );
        let mut g = GnttabGetVersion {
            dom: NO_DOMAIN,
            ..Default::default()
        };
        c.err(
            "get_version of no domain",
            raw(cmd, &mut g, 1),
            AbiErrno::ESRCH,
        );
        let cmd = u64::from(GnttabOp::GetStatusFrames.raw());
        let mut s = GnttabGetStatusFrames {
            nr_frames: 0,
            dom: DOMID_SELF,
            ..Default::default()
        };
        c.ok(
            "get_status_frames of 0 frames",
            raw(cmd, &mut s, 1).and(Ok(s.status)),
        );
        c.ok("  status okay", status_of(s.status));
        s.nr_frames = 1;
        c.ok(
            "get_status_frames of 1 frame (v1 has none)",
            raw(cmd, &mut s, 1),
        );
        st(c, "  status", status_of(s.status), GntStatus::GeneralError);
        c.err(
            "get_status_frames with count 2",
            raw(cmd, &mut s, 2),
            AbiErrno::EINVAL,
        );
    }

    fn setup_checks(c: &mut Checks) {
        c.check(
            "query_size before setup: 1 frame of 64",
            grant::query_size(DOMID_SELF) == Ok((1, 64)),
            format_args!("{:?}", grant::query_size(DOMID_SELF)),
        );
        st(
            c,
            "query_size of no domain",
            grant::query_size(NO_DOMAIN),
            GntStatus::BadDomain,
        );
        let cmd = u64::from(GnttabOp::SetupTable.raw());
        let mut frames = [0u64; 2];
        let mut s = GnttabSetupTable {
            dom: DOMID_SELF,
            nr_frames: 1,
            frame_list: frames.as_mut_ptr() as u64,
            ..Default::default()
        };
        c.err(
            "setup_table with count 2",
            raw(cmd, &mut s, 2),
            AbiErrno::EINVAL,
        );
        s.nr_frames = 65;
        s.frame_list = 0;
        c.ok("setup_table of 65 frames", raw(cmd, &mut s, 1));
        st(
            c,
            "  status (limit 64)",
            status_of(s.status),
            GntStatus::GeneralError,
        );
        s.nr_frames = 1;
        s.frame_list = 0xffff_8000_0000_1000;
        c.err(
            "setup_table, frame list in the hypervisor's range",
            raw(cmd, &mut s, 1),
            AbiErrno::EFAULT,
        );
        s.frame_list = 0x1000;
        c.ok("setup_table, frame list unmapped", raw(cmd, &mut s, 1));
        st(c, "  status", status_of(s.status), GntStatus::BadVirtAddr);
        s.frame_list = frames.as_mut_ptr() as u64;
        s.dom = NO_DOMAIN;
        c.ok("setup_table of no domain", raw(cmd, &mut s, 1));
        st(c, "  status", status_of(s.status), GntStatus::BadDomain);
        c.err(
            "setup_table, request unmapped",
            raw_ptr(cmd, 0x1000, 1),
            AbiErrno::EFAULT,
        );
    }

    fn add_to_physmap(
        domid: u16,
        space: XenMapSpace,
        idx: u64,
        cmd_extra: u64,
    ) -> Result<u64, Errno> {
        let x = XenAddToPhysmap {
            domid,
            size: 0,
            space: space.raw(),
            idx,
            gpfn: 0x1000,
        };
        // SAFETY: one valid argument struct, read by the hypervisor.
        error::check(unsafe {
            pv_guest_lib::hypercall::hypercall2(
                Hypercall::MemoryOp,
                MemoryOp::AddToPhysmap as u64 | cmd_extra,
                &x as *const _ as u64,
            )
        })
    }

    fn cache_flush(addr: u64, offset: u16, length: u16, op: u32) -> Result<u64, Errno> {
        let mut f = GnttabCacheFlush {
            a: addr,
            offset,
            length,
            op,
        };
        raw(u64::from(GnttabOp::CacheFlush.raw()), &mut f, 1)
    }

    fn cache_flush_checks(c: &mut Checks, own: u64) {
        let both = GNTTAB_CACHE_CLEAN | GNTTAB_CACHE_INVAL;
        c.ok(
            "cache_flush of our own frame",
            cache_flush(own << 12, 0, 4096, both),
        );
        c.ok(
            "cache_flush clean only",
            cache_flush(own << 12, 64, 64, GNTTAB_CACHE_CLEAN),
        );
        c.err(
            "cache_flush invalidate only (x86)",
            cache_flush(own << 12, 0, 64, GNTTAB_CACHE_INVAL),
            AbiErrno::EOPNOTSUPP,
        );
        c.err(
            "cache_flush by grant reference",
            cache_flush(8, 0, 64, both | GNTTAB_CACHE_SOURCE_GREF),
            AbiErrno::EINVAL,
        );
        c.err(
            "cache_flush past the page",
            cache_flush(own << 12, 4000, 200, both),
            AbiErrno::EINVAL,
        );
        c.err(
            "cache_flush of a hypervisor frame",
            cache_flush(HYPERVISOR_MFN << 12, 0, 64, both),
            AbiErrno::EPERM,
        );
        c.err(
            "cache_flush beyond RAM",
            cache_flush(1 << 50, 0, 64, both),
            AbiErrno::EINVAL,
        );
        c.ok(
            "cache_flush of length 0",
            cache_flush(HYPERVISOR_MFN << 12, 0, 0, both),
        );
    }

    fn physmap_checks(c: &mut Checks) {
        c.err(
            "add_to_physmap of a grant frame (PV: Xen says -EACCES)",
            add_to_physmap(DOMID_SELF, XenMapSpace::GrantTable, 0, 0),
            AbiErrno::EACCES,
        );
        c.err(
            "add_to_physmap of shared_info (PV: -EACCES)",
            add_to_physmap(DOMID_SELF, XenMapSpace::SharedInfo, 0, 0),
            AbiErrno::EACCES,
        );
        c.err(
            "add_to_physmap of gmfn_foreign (batch only: -ENOSYS)",
            add_to_physmap(DOMID_SELF, XenMapSpace::GmfnForeign, 0, 0),
            AbiErrno::ENOSYS,
        );
        c.err(
            "add_to_physmap for no domain",
            add_to_physmap(NO_DOMAIN, XenMapSpace::GrantTable, 0, 0),
            AbiErrno::ESRCH,
        );
        c.err(
            "add_to_physmap with a start extent beyond 16 bits",
            add_to_physmap(DOMID_SELF, XenMapSpace::GrantTable, 0, 0x1_0000 << 6),
            AbiErrno::EDOM,
        );
    }

    fn hostile_checks(c: &mut Checks, gref: u32) {
        let map = u64::from(GnttabOp::MapGrantRef.raw());
        c.err(
            "grant_table_op with count 0x80000000",
            raw_ptr(map, GT_VA, 0x8000_0000),
            AbiErrno::EINVAL,
        );
        c.err(
            "map with a request array in the hypervisor",
            raw_ptr(map, 0xffff_8000_0000_0000, 1),
            AbiErrno::EFAULT,
        );
        c.err(
            "map with 0x7fffffff requests wrapping the address space",
            raw_ptr(map, 0xffff_ffff_ffff_f000, 0x7fff_ffff),
            AbiErrno::EFAULT,
        );
        c.err(
            "map with an unmapped request",
            raw_ptr(map, 0x1000, 1),
            AbiErrno::EFAULT,
        );
        c.err(
            "an unknown command (99)",
            raw_ptr(99, GT_VA, 1),
            AbiErrno::ENOSYS,
        );
        c.err(
            "continuation bits on map_grant_ref",
            raw_ptr(map | 0x1000, GT_VA, 0),
            AbiErrno::EINVAL,
        );
        c.ok("map_grant_ref with count 0", raw_ptr(map, 0, 0));
        st(
            c,
            "map with neither host nor device flag",
            grant::map(0, gref, TEST_VA, RO),
            GntStatus::BadGntref,
        );
        st(
            c,
            "map from DOMID_SELF (Xen wants a real id)",
            grant::map(DOMID_SELF, gref, TEST_VA, HOST),
            GntStatus::BadDomain,
        );
        st(
            c,
            "map from no domain",
            grant::map(NO_DOMAIN, gref, TEST_VA, HOST),
            GntStatus::BadDomain,
        );
        st(
            c,
            "map of ref 99999",
            grant::map(0, 99_999, TEST_VA, HOST),
            GntStatus::BadGntref,
        );
        st(
            c,
            "map of an unused ref (invalid entry)",
            grant::map(0, 500, TEST_VA, HOST),
            GntStatus::GeneralError,
        );
        st(
            c,
            "map at a hypervisor address",
            grant::map(0, gref, 0xffff_8000_0000_0000, HOST),
            GntStatus::GeneralError,
        );
        st(
            c,
            "map at a non-canonical address",
            grant::map(0, gref, 0x0000_8000_0000_0000, HOST),
            GntStatus::GeneralError,
        );
        st(
            c,
            "map where no L1 exists",
            grant::map(0, gref, 0x0000_4000_0000_0000, HOST),
            GntStatus::GeneralError,
        );
        st(
            c,
            "map contains_pte at a misaligned PTE address",
            grant::map(0, gref, 0x1003, HOST | GNTMAP_CONTAINS_PTE),
            GntStatus::GeneralError,
        );
        st(
            c,
            "map contains_pte in a frame that is no L1",
            grant::map(0, gref, HYPERVISOR_MFN << 12, HOST | GNTMAP_CONTAINS_PTE),
            GntStatus::GeneralError,
        );
        st(
            c,
            "unmap of handle 0xffff",
            grant::unmap(0xffff, TEST_VA, 0),
            GntStatus::BadHandle,
        );
        st(
            c,
            "unmap of handle 0xffffffff",
            grant::unmap(u32::MAX, 0, 0),
            GntStatus::BadHandle,
        );
        let rep = u64::from(GnttabOp::UnmapAndReplace.raw());
        let mut u = GnttabUnmapAndReplace {
            host_addr: TEST_VA,
            new_addr: 0,
            handle: 0x7777,
            ..Default::default()
        };
        c.ok("unmap_and_replace of a bad handle", raw(rep, &mut u, 1));
        st(c, "  status", status_of(u.status), GntStatus::BadHandle);
        c.err(
            "transfer (not offered)",
            raw_ptr(u64::from(GnttabOp::Transfer.raw()), GT_VA, 1),
            AbiErrno::ENOSYS,
        );
    }

    fn domctl(op: &mut XenDomctl) -> Result<i64, Errno> {
        // SAFETY: the hypervisor reads and writes back the one envelope.
        let r = unsafe {
            pv_guest_lib::hypercall::hypercall1(Hypercall::Domctl, op as *mut XenDomctl as u64)
        };
        error::check(r).map(|v| v as i64)
    }

    /// Where Dom0 maps the other domain's grant frame and data frame.
    const FOREIGN_VA: u64 = 0x0000_7f00_0000_0000;
    /// Where Dom0 maps the other domain's grant.
    const CROSS_VA: u64 = 0xffff_c000_0030_0000;

    /// A grant from another domain, arranged by Dom0.
    fn cross_domain(c: &mut Checks, kernel_l4: u64, dest: u64, dest_va: u64) {
        let mut op = XenDomctl::new(DomctlCmd::Createdomain, 0);
        let mut cd = XenDomctlCreatedomain::new_zeroed();
        cd.max_vcpus = 1;
        cd.max_grant_frames = -1;
        cd.max_maptrack_frames = -1;
        op.set_payload(&cd);
        if c.ok("createdomain", domctl(&mut op)).is_none() {
            return;
        }
        let d = op.domain;
        let mut mm_op = XenDomctl::new(DomctlCmd::MaxMem, d);
        mm_op.set_payload(&XenDomctlMaxMem { max_memkb: 64 });
        c.ok("max_mem 64 KiB", domctl(&mut mm_op));
        let mut list = [0u64; 16];
        for (i, g) in list.iter_mut().enumerate() {
            *g = i as u64;
        }
        let r = XenMemoryReservation {
            extent_start: list.as_mut_ptr() as u64,
            nr_extents: list.len() as u64,
            extent_order: 0,
            mem_flags: 0,
            domid: d,
            _pad26: [0; 3],
        };
        // SAFETY: the reservation and its list are valid for the call.
        let n = error::check(unsafe {
            pv_guest_lib::hypercall::hypercall2(
                Hypercall::MemoryOp,
                MemoryOp::PopulatePhysmap as u64,
                &r as *const _ as u64,
            )
        });
        c.check(
            "populate_physmap of 16 frames",
            n == Ok(16),
            format_args!("{n:?}"),
        );
        c.check(
            "query_size of the new domain: 1 frame of 64",
            grant::query_size(d) == Ok((1, 64)),
            format_args!("{:?}", grant::query_size(d)),
        );
        let mut gframes = [0u64; 1];
        if c.ok(
            "setup_table for the other domain (privileged)",
            grant::setup_table(d, &mut gframes),
        )
        .is_none()
        {
            return;
        }
        let (g, x) = (gframes[0], list[0]);
        let Ok(l1) = frame::with_pt(|b| mm::ensure_l1(b, kernel_l4, FOREIGN_VA)) else {
            c.error(format_args!("no L1 for FOREIGN_VA"));
            return;
        };
        let upd = [
            mmu::pt_update(
                l1,
                mm::index(FOREIGN_VA, 1),
                Pte::new(g, PteFlags::KERNEL_RW),
            ),
            mmu::pt_update(
                l1,
                mm::index(FOREIGN_VA + 4096, 1),
                Pte::new(x, PteFlags::KERNEL_RW),
            ),
        ];
        if c.ok(
            "map its grant frame and a data frame (foreign mmu_update)",
            mmu::mmu_update_foreign(&upd, d).map_err(|e| e.errno),
        )
        .is_none()
        {
            return;
        }
        let entry = |r: u32| FOREIGN_VA + u64::from(r) * 8;
        write(FOREIGN_VA + 4096, 0xd0d0_0001);
        // Its grants: ref 8 to Dom0 (frame x), ref 9 to domain 5.
        write(entry(8), (x << 32) | u64::from(GTF_PERMIT_ACCESS));
        write(
            entry(9),
            (x << 32) | (5 << 16) | u64::from(GTF_PERMIT_ACCESS),
        );
        st(
            c,
            "map its grant for another domain",
            grant::map(d, 9, CROSS_VA, HOST),
            GntStatus::GeneralError,
        );
        if let Some(m) = c.ok("map its grant for Dom0", grant::map(d, 8, CROSS_VA, HOST)) {
            c.check(
                "read its frame through the grant",
                read(CROSS_VA) == 0xd0d0_0001,
                format_args!("{:#x}", read(CROSS_VA)),
            );
            write(CROSS_VA + 8, 0xd0d0_0002);
            c.check(
                "our write reached its frame",
                read(FOREIGN_VA + 4096 + 8) == 0xd0d0_0002,
                format_args!("{:#x}", read(FOREIGN_VA + 4096 + 8)),
            );
            let f = read(entry(8)) as u16;
            c.check(
                "its entry shows GTF_reading|GTF_writing",
                f == GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING,
                format_args!("{f:#x}"),
            );
            c.ok(
                "copy from its grant into our frame",
                grant::copy(
                    CopyPtr::Grant {
                        dom: d,
                        gref: 8,
                        offset: 8,
                    },
                    CopyPtr::Frame {
                        mfn: dest,
                        offset: 0,
                    },
                    8,
                ),
            );
            c.check(
                "copied",
                read(dest_va) == 0xd0d0_0002,
                format_args!("{:#x}", read(dest_va)),
            );
            let both = GNTTAB_CACHE_CLEAN | GNTTAB_CACHE_INVAL;
            c.ok(
                "cache_flush of its frame while we have its grant",
                cache_flush(x << 12, 0, 4096, both),
            );
            st(
                c,
                "unmap it through the wrong address",
                grant::unmap(m.handle, TEST_VA, 0),
                GntStatus::GeneralError,
            );
            c.ok("unmap it", grant::unmap(m.handle, CROSS_VA, 0));
            let f = read(entry(8)) as u16;
            c.check(
                "its entry is clear again",
                f == GTF_PERMIT_ACCESS,
                format_args!("{f:#x}"),
            );
            c.err(
                "cache_flush of its frame without a grant",
                cache_flush(x << 12, 0, 64, GNTTAB_CACHE_CLEAN),
                AbiErrno::EINVAL,
            );
        }
        let clear = [
            mmu::pt_update(l1, mm::index(FOREIGN_VA, 1), Pte(0)),
            mmu::pt_update(l1, mm::index(FOREIGN_VA + 4096, 1), Pte(0)),
        ];
        c.ok(
            "drop the foreign mappings",
            mmu::mmu_update(&clear).map_err(|e| e.errno),
        );
        c.ok(
            "destroydomain",
            domctl(&mut XenDomctl::new(DomctlCmd::Destroydomain, d)),
        );
    }

    fn main(si: &'static StartInfo) -> ! {
        println!("pv-grant: Oxen grant table test (Xen 4.17 semantics)");
        let mut c = Checks::new("pv-grant");
        c.ok("map shared_info", shared::map(si.shared_info).map(|_| ()));
        c.ok("install traps", trap::install());
        events::irq_enable();
        let Some(info) = c.ok("frame allocator", frame::init()) else {
            c.finish();
        };
        let me: u16 = 0;

        version_checks(&mut c);
        setup_checks(&mut c);
        physmap_checks(&mut c);
        let Some(mut gt) = c.ok("setup and map a 4-frame table", GrantTable::setup(4, GT_VA))
        else {
            c.finish();
        };
        c.check(
            "query_size after setup: 4 frames of 64",
            grant::query_size(DOMID_SELF) == Ok((4, 64)),
            format_args!("{:?}", grant::query_size(DOMID_SELF)),
        );
        // An L1 for TEST_VA, with the slot empty.
        let Some(scratch) = c.ok("a scratch frame", frame::alloc_frame()) else {
            c.finish();
        };
        c.ok(
            "map TEST_VA",
            frame::map_kernel(TEST_VA, scratch.mfn, PteFlags::KERNEL_RW),
        );
        c.ok(
            "unmap it again (its L1 stays)",
            frame::unmap_kernel(TEST_VA),
        );

        // Frames that are ours and mapped nowhere else: give two back (the
        // reservation is full), take two new ones.
        for _ in 0..2 {
            if let Some(f) = c.ok("a frame to give back", frame::alloc_frame()) {
                c.ok(
                    "unmap its direct-map alias",
                    mmu::update_va_mapping(f.va, 0, Flush::InvlpgAll),
                );
                c.check(
                    "XENMEM_decrease_reservation of it",
                    memory::decrease_reservation(&[f.mfn], 0) == Ok(1),
                    format_args!("mfn {:#x}", f.mfn),
                );
            }
        }
        let mut mfns = [0u64; 2];
        c.check(
            "XENMEM_increase_reservation of 2 frames",
            memory::increase_reservation(&mut mfns, 0) == Ok(2),
            format_args!("{mfns:x?}"),
        );
        let (a, b) = (mfns[0], mfns[1]);
        let Some(ga) = c.ok("grant frame A to ourselves", gt.grant_access(me, a, false)) else {
            c.finish();
        };
        hostile_checks(&mut c, ga);

        // Host mapping, writable.
        if let Some(m) = c.ok(
            "map grant A writable at TEST_VA",
            grant::map(me, ga, TEST_VA, HOST),
        ) {
            c.check(
                "dev_bus_addr is A's machine address",
                m.dev_bus_addr == a << 12,
                format_args!("{:#x}", m.dev_bus_addr),
            );
            write(TEST_VA, 0x600d_f00d);
            c.check(
                "write and read back through the mapping",
                read(TEST_VA) == 0x600d_f00d,
                format_args!("{:#x}", read(TEST_VA)),
            );
            let f = gt.flags(ga);
            c.check(
                "GTF_reading and GTF_writing are set while mapped",
                f == GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING,
                format_args!("{f:#x}"),
            );
            c.check(
                "revocation while mapped: end_access refused",
                gt.end_access(ga) == Err(GrantError::Busy),
                format_args!("flags {:#x}", gt.flags(ga)),
            );
            let pte = frame::lookup_kernel(TEST_VA).unwrap_or(Pte(0));
            c.check(
                "the grant PTE is writable and NX",
                pte.writable() && pte.0 >> 63 == 1,
                format_args!("{:#x}", pte.0),
            );
            let map = u64::from(GnttabOp::MapGrantRef.raw());
            let mut dup = GnttabMapGrantRef {
                host_addr: 0,
                flags: DEV | RO,
                r#ref: ga,
                dom: me,
                ..Default::default()
            };
            c.ok(
                "a second (device) mapping of the same grant",
                raw(map, &mut dup, 1),
            );
            c.ok("  status", status_of(dup.status));
            st(
                &mut c,
                "unmap at the wrong address",
                grant::unmap(m.handle, TEST_VA + 0x1000, 0),
                GntStatus::GeneralError,
            );
            st(
                &mut c,
                "unmap with the wrong bus address",
                grant::unmap(dup.handle, 0, 0x1000),
                GntStatus::GeneralError,
            );
            let cur = memory::current_reservation(DOMID_SELF).unwrap_or(0);
            c.check(
                "give frame A back while it is mapped (Xen: accepted, freed later)",
                memory::decrease_reservation(&[a], 0) == Ok(1),
                format_args!("current reservation was {cur}"),
            );
            c.check(
                "the mapped frame stays alive",
                read(TEST_VA) == 0x600d_f00d,
                format_args!("{:#x}", read(TEST_VA)),
            );
            c.ok("unmap the host mapping", grant::unmap(m.handle, TEST_VA, 0));
            st(
                &mut c,
                "unmap it twice",
                grant::unmap(m.handle, TEST_VA, 0),
                GntStatus::BadHandle,
            );
            let f = gt.flags(ga);
            c.check(
                "GTF_writing is clear, GTF_reading stays for the device mapping",
                f == GTF_PERMIT_ACCESS | GTF_READING,
                format_args!("{f:#x}"),
            );
            c.ok(
                "unmap the device mapping",
                grant::unmap(dup.handle, 0, a << 12),
            );
            c.check(
                "no flags left",
                gt.flags(ga) == GTF_PERMIT_ACCESS,
                format_args!("{:#x}", gt.flags(ga)),
            );
            st(
                &mut c,
                "map the grant of the given-back frame",
                grant::map(me, ga, TEST_VA, HOST),
                GntStatus::BadPage,
            );
            c.ok("end access now", gt.end_access(ga));
        }

        // Read-only grant of B.
        let Some(gb) = c.ok("grant frame B read-only", gt.grant_access(me, b, true)) else {
            c.finish();
        };
        st(
            &mut c,
            "a read-only grant mapped writable",
            grant::map(me, gb, TEST_VA, HOST),
            GntStatus::GeneralError,
        );
        c.check(
            "no flags set by the refused map",
            gt.flags(gb) == GTF_PERMIT_ACCESS | GTF_READONLY,
            format_args!("{:#x}", gt.flags(gb)),
        );
        if let Some(m) = c.ok("map it read-only", grant::map(me, gb, TEST_VA, HOST | RO)) {
            let pte = frame::lookup_kernel(TEST_VA).unwrap_or(Pte(0));
            c.check(
                "the PTE is read-only",
                pte.present() && !pte.writable(),
                format_args!("{:#x}", pte.0),
            );
            c.check(
                "only GTF_reading is set",
                gt.flags(gb) == GTF_PERMIT_ACCESS | GTF_READONLY | GTF_READING,
                format_args!("{:#x}", gt.flags(gb)),
            );
            c.ok("unmap it", grant::unmap(m.handle, TEST_VA, 0));
        }

        // unmap_and_replace: the scratch frame's mapping moves into the slot.
        write(scratch.va, 0x5c5c_0001);
        if let Some(m) = c.ok(
            "map B read-only again",
            grant::map(me, gb, TEST_VA, HOST | RO),
        ) {
            c.ok(
                "map the scratch frame next to it",
                frame::map_kernel(TEST_VA + 0x1000, scratch.mfn, PteFlags::KERNEL_RW),
            );
            let mut u = GnttabUnmapAndReplace {
                host_addr: TEST_VA,
                new_addr: TEST_VA + 0x1000,
                handle: m.handle,
                ..Default::default()
            };
            c.ok(
                "unmap_and_replace moving the scratch mapping in",
                raw(u64::from(GnttabOp::UnmapAndReplace.raw()), &mut u, 1)
                    .map_err(GrantError::from)
                    .and_then(|_| status_of(u.status)),
            );
            c.check(
                "TEST_VA now shows the scratch frame",
                read(TEST_VA) == 0x5c5c_0001,
                format_args!("{:#x}", read(TEST_VA)),
            );
            let next = frame::lookup_kernel(TEST_VA + 0x1000).unwrap_or(Pte(0));
            c.check(
                "its old address is empty",
                !next.present(),
                format_args!("{:#x}", next.0),
            );
            c.check(
                "B's grant is free again",
                gt.flags(gb) == GTF_PERMIT_ACCESS | GTF_READONLY,
                format_args!("{:#x}", gt.flags(gb)),
            );
            c.ok("unmap the moved mapping", frame::unmap_kernel(TEST_VA));
        }

        // Copies: B is read-only granted; C is writable granted.
        let Some(cf) = c.ok("frame C", frame::alloc_frame()) else {
            c.finish()
        };
        let Some(gc) = c.ok("grant frame C writable", gt.grant_access(me, cf.mfn, false)) else {
            c.finish()
        };
        let Some(df) = c.ok("frame D", frame::alloc_frame()) else {
            c.finish()
        };
        write(df.va + 8, 0x1122_3344_5566_7788);
        c.ok(
            "copy 8 bytes from our frame D into grant C",
            grant::copy(
                CopyPtr::Frame {
                    mfn: df.mfn,
                    offset: 8,
                },
                CopyPtr::Grant {
                    dom: me,
                    gref: gc,
                    offset: 16,
                },
                8,
            ),
        );
        c.check(
            "the bytes arrived",
            read(cf.va + 16) == 0x1122_3344_5566_7788,
            format_args!("{:#x}", read(cf.va + 16)),
        );
        c.ok(
            "copy a whole page from grant C into frame D",
            grant::copy(
                CopyPtr::Grant {
                    dom: me,
                    gref: gc,
                    offset: 0,
                },
                CopyPtr::Frame {
                    mfn: df.mfn,
                    offset: 0,
                },
                4096,
            ),
        );
        c.check(
            "page copied",
            read(df.va + 16) == 0x1122_3344_5566_7788,
            format_args!("{:#x}", read(df.va + 16)),
        );
        c.check(
            "no flags left after the copies",
            gt.flags(gc) == GTF_PERMIT_ACCESS,
            format_args!("{:#x}", gt.flags(gc)),
        );
        st(
            &mut c,
            "copy into a read-only grant",
            grant::copy(
                CopyPtr::Frame {
                    mfn: df.mfn,
                    offset: 0,
                },
                CopyPtr::Grant {
                    dom: me,
                    gref: gb,
                    offset: 0,
                },
                8,
            ),
            GntStatus::GeneralError,
        );
        st(
            &mut c,
            "copy crossing the end of the page",
            grant::copy(
                CopyPtr::Grant {
                    dom: me,
                    gref: gc,
                    offset: 4090,
                },
                CopyPtr::Frame {
                    mfn: df.mfn,
                    offset: 0,
                },
                8,
            ),
            GntStatus::BadCopyArg,
        );
        st(
            &mut c,
            "copy of a bad ref",
            grant::copy(
                CopyPtr::Grant {
                    dom: me,
                    gref: 99_999,
                    offset: 0,
                },
                CopyPtr::Frame {
                    mfn: df.mfn,
                    offset: 0,
                },
                8,
            ),
            GntStatus::BadGntref,
        );
        st(
            &mut c,
            "copy from a frame that is not ours",
            grant::copy(
                CopyPtr::Frame {
                    mfn: HYPERVISOR_MFN,
                    offset: 0,
                },
                CopyPtr::Frame {
                    mfn: df.mfn,
                    offset: 0,
                },
                8,
            ),
            GntStatus::BadPage,
        );
        st(
            &mut c,
            "copy from a grant of no domain",
            grant::copy(
                CopyPtr::Grant {
                    dom: NO_DOMAIN,
                    gref: gc,
                    offset: 0,
                },
                CopyPtr::Frame {
                    mfn: df.mfn,
                    offset: 0,
                },
                8,
            ),
            GntStatus::BadDomain,
        );
        let mut op = grant::copy_op(
            CopyPtr::Frame {
                mfn: df.mfn,
                offset: 0,
            },
            CopyPtr::Frame {
                mfn: cf.mfn,
                offset: 0,
            },
            8,
        );
        op.source.domid = me;
        let r = grant::copy_batch(core::slice::from_mut(&mut op))
            .map_err(GrantError::from)
            .and(status_of(op.status));
        st(
            &mut c,
            "copy naming a frame with a real domid (only DOMID_SELF may)",
            r,
            GntStatus::PermissionDenied,
        );

        // A batch with a bad request in the middle.
        let mut ops = [
            GnttabMapGrantRef {
                host_addr: 0,
                flags: DEV,
                r#ref: gc,
                dom: me,
                ..Default::default()
            },
            GnttabMapGrantRef {
                host_addr: 0,
                flags: DEV,
                r#ref: 99_999,
                dom: me,
                ..Default::default()
            },
            GnttabMapGrantRef {
                host_addr: TEST_VA,
                flags: HOST,
                r#ref: gc,
                dom: me,
                ..Default::default()
            },
        ];
        c.ok("a batch of 3 maps", grant::map_batch(&mut ops));
        let sts = [ops[0].status, ops[1].status, ops[2].status];
        c.check(
            "statuses: okay, bad_gntref, okay",
            sts == [0, GntStatus::BadGntref.raw(), 0],
            format_args!("{sts:?}"),
        );
        c.check(
            "the mapping shows frame C",
            read(TEST_VA + 16) == 0x1122_3344_5566_7788,
            format_args!("{:#x}", read(TEST_VA + 16)),
        );
        let mut un = [
            GnttabUnmapGrantRef {
                host_addr: 0,
                dev_bus_addr: cf.mfn << 12,
                handle: ops[0].handle,
                ..Default::default()
            },
            GnttabUnmapGrantRef {
                host_addr: 0,
                dev_bus_addr: 0,
                handle: 0x5555,
                ..Default::default()
            },
        ];
        c.ok("a batch of 2 unmaps", grant::unmap_batch(&mut un));
        c.check(
            "statuses: okay, bad_handle",
            [un[0].status, un[1].status] == [0, GntStatus::BadHandle.raw()],
            format_args!("{:?}", [un[0].status, un[1].status]),
        );
        c.check(
            "revocation while mapped is still refused",
            gt.end_access(gc) == Err(GrantError::Busy),
            format_args!("{:#x}", gt.flags(gc)),
        );

        // swap_grant_ref: C's grant is mapped, so it cannot move.
        let swap = |a: u32, b: u32| {
            let mut op = GnttabSwapGrantRef {
                ref_a: a,
                ref_b: b,
                ..Default::default()
            };
            raw(u64::from(GnttabOp::SwapGrantRef.raw()), &mut op, 1).map(|_| op.status)
        };
        st(
            &mut c,
            "swap_grant_ref of a mapped grant",
            swap(gc, 600).map_err(GrantError::from).and_then(status_of),
            GntStatus::Eagain,
        );
        st(
            &mut c,
            "swap_grant_ref of ref 99999",
            swap(600, 99_999)
                .map_err(GrantError::from)
                .and_then(status_of),
            GntStatus::BadGntref,
        );
        c.ok(
            "swap_grant_ref of B's grant with an unused one",
            swap(gb, 600).map_err(GrantError::from).and_then(status_of),
        );
        c.check(
            "B's entry moved",
            gt.flags(600) == GTF_PERMIT_ACCESS | GTF_READONLY && gt.flags(gb) == 0,
            format_args!("{:#x} {:#x}", gt.flags(600), gt.flags(gb)),
        );
        c.ok(
            "and back",
            swap(gb, 600).map_err(GrantError::from).and_then(status_of),
        );

        cache_flush_checks(&mut c, df.mfn);
        cross_domain(&mut c, info.kernel_l4, df.mfn, df.va);

        let (n, failed) = c.counts();
        if failed != 0 {
            c.finish();
        }
        println!("pv-grant: {n} checks, 0 failed");
        println!("pv-grant: removing the grant PTE at TEST_VA with update_va_mapping: the hypervisor must crash this domain");
        let r = mmu::update_va_mapping(TEST_VA, 0, Flush::InvlpgLocal);
        c.check(
            "the implicit unmap crashed the domain",
            false,
            format_args!("update_va_mapping returned {r:?}"),
        );
        c.finish()
    }
}
