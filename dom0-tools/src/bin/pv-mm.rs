//! Test Dom0: PV memory management against Xen 4.17.
//!
//! Positives: memory_op queries, growing the direct map with batched
//! `mmu_update`s, mapping and remapping pages with `mmu_update` and
//! `update_va_mapping`, TLB flushes, `new_baseptr`, M2P updates, pinning an
//! L1, reservations. Negatives, each with Xen's exact error, and the guest
//! carrying on after each: mapping a frame the domain gave back (-EBUSY), a
//! writable mapping of a pinned L1 (-EBUSY), an L4 entry in the
//! hypervisor's slots (-EINVAL), unpinning a table that is not pinned
//! (-EINVAL), pinning twice (-EINVAL), pinning a frame that is mapped
//! writable (-EINVAL), reserved bits in an L1 entry (-EINVAL).

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use dom0_tools::pvtest::{want, Checks};
    use hypercall_abi::xen::DOMID_SELF;
    use pv_guest_lib::error::Errno;
    use pv_guest_lib::frame::{self, Frame};
    use pv_guest_lib::memory::{self, E820Entry};
    use pv_guest_lib::mm::{self, Pte, PteFlags};
    use pv_guest_lib::mmu::{self, Flush};
    use pv_guest_lib::{events, println, shared, trap, StartInfo};

    pv_guest_lib::entry!(main);

    /// The page this test maps and remaps (L4 slot 384).
    const TEST_VA: u64 = 0xffff_c000_0010_0000;

    fn read(va: u64) -> u64 {
        // SAFETY: callers only read pages they just mapped.
        unsafe { core::ptr::read_volatile(va as *const u64) }
    }

    fn write(f: &Frame, v: u64) {
        // SAFETY: `f` is a frame from the allocator, mapped writable at f.va.
        unsafe { core::ptr::write_volatile(f.va as *mut u64, v) }
    }

    fn single(r: Result<u32, mmu::BatchError>) -> Result<u32, Errno> {
        r.map_err(|e| e.errno)
    }

    /// Frames and tables the domain may not touch; a table in use.
    fn hostile_checks(c: &mut Checks, kernel_l4: u64) {
        // xen-core's own text (loaded at 2 MiB + 32 KiB): RAM the domain
        // does not own. Xen: "real_pg_owner ... not pg_owner" -> -EBUSY.
        const HYPERVISOR_MFN: u64 = 0x208;
        c.err(
            "update_va_mapping of a hypervisor frame, read-only",
            mmu::update_va_mapping(
                TEST_VA,
                Pte::new(HYPERVISOR_MFN, PteFlags::KERNEL_RO).0,
                Flush::InvlpgLocal,
            ),
            want::MAP_NOT_OWNED,
        );
        c.err(
            "MMUEXT_PIN_L1_TABLE of a hypervisor frame",
            mmu::pin(1, HYPERVISOR_MFN),
            want::TABLE_NOT_OWNED,
        );
        c.err(
            "MMUEXT_NEW_BASEPTR to a frame that is not an L4",
            mmu::new_baseptr(HYPERVISOR_MFN),
            want::TABLE_NOT_OWNED,
        );
        c.check(
            "test page still mapped",
            read(TEST_VA) == 0xf0f0_0001,
            format_args!("{:#x}", read(TEST_VA)),
        );
        // Unpinning the L4 in use succeeds (the base pointer holds its
        // own reference): the table stays validated and stays read-only.
        c.ok("MMUEXT_UNPIN_TABLE of the L4 in use", mmu::unpin(kernel_l4));
        c.err(
            "a writable mapping of the unpinned but loaded L4",
            mmu::update_va_mapping(
                TEST_VA,
                Pte::new(kernel_l4, PteFlags::KERNEL_RW).0,
                Flush::InvlpgLocal,
            ),
            want::WRITABLE_MAP_OF_PAGE_TABLE,
        );
        c.ok("pin the L4 again", mmu::pin(4, kernel_l4));
        c.check(
            "test page still mapped after all that",
            read(TEST_VA) == 0xf0f0_0001,
            format_args!("{:#x}", read(TEST_VA)),
        );
    }

    /// `lar` of `sel`: the access rights if the descriptor is visible.
    fn lar(sel: u64) -> Option<u64> {
        let (rights, ok): (u64, u8);
        // SAFETY: lar only reads a descriptor; it never faults on a bad one.
        unsafe {
            core::arch::asm!("lar {r}, {s}", "setz {ok}", r = out(reg) rights, s = in(reg) sel, ok = out(reg_byte) ok)
        };
        (ok != 0).then_some(rights)
    }

    /// MMUEXT_SET_LDT: a descriptor in a read-only page becomes visible
    /// through an LDT selector; bad LDTs are refused.
    fn ldt_checks(c: &mut Checks) {
        const LDT_SEL: u64 = 0x7; // index 0, TI = LDT, RPL 3
        c.check(
            "no LDT at first",
            lar(LDT_SEL).is_none(),
            format_args!("{:?}", lar(LDT_SEL)),
        );
        let Some(f) = c.ok("a frame for the LDT", frame::alloc_frame()) else {
            return;
        };
        // A flat 32-bit data segment, DPL 3.
        write(&f, 0x00cf_f200_0000_ffff);
        c.err(
            "MMUEXT_SET_LDT on a page mapped writable",
            mmu::set_ldt(f.va, 1),
            want::LDT_WRITABLE,
        );
        c.ok(
            "make the LDT page read-only",
            frame::set_direct_writable(f.pfn, false),
        );
        c.err(
            "MMUEXT_SET_LDT at an unaligned base",
            mmu::set_ldt(f.va + 8, 1),
            want::LDT_BAD,
        );
        c.err(
            "MMUEXT_SET_LDT with 8193 entries",
            mmu::set_ldt(f.va, 8193),
            want::LDT_BAD,
        );
        c.err(
            "MMUEXT_SET_LDT in the hypervisor's range",
            mmu::set_ldt(0xffff_8000_0000_0000, 1),
            want::LDT_BAD,
        );
        c.ok("MMUEXT_SET_LDT", mmu::set_ldt(f.va, 1));
        let rights = lar(LDT_SEL);
        c.check(
            "the LDT descriptor is visible (present data, DPL 3)",
            rights.is_some_and(|r| r & 0xff00 == 0xf200 || r & 0xff00 == 0xf300),
            format_args!("{rights:x?}"),
        );
        c.err(
            "the LDT page cannot be made writable while loaded",
            frame::set_direct_writable(f.pfn, true),
            want::WRITABLE_MAP_OF_PAGE_TABLE,
        );
        c.ok("MMUEXT_SET_LDT with no entries", mmu::set_ldt(0, 0));
        c.check(
            "no LDT any more",
            lar(LDT_SEL).is_none(),
            format_args!("{:?}", lar(LDT_SEL)),
        );
        c.ok(
            "the page is writable again",
            frame::set_direct_writable(f.pfn, true),
        );
    }

    fn main(si: &'static StartInfo) -> ! {
        println!("pv-mm: Oxen PV memory test (Xen 4.17 semantics)");
        let mut c = Checks::new("pv-mm");
        c.ok("map shared_info", shared::map(si.shared_info).map(|_| ()));
        c.ok("install traps", trap::install());
        events::irq_enable();

        // memory_op queries.
        if let Some(max) = c.ok("XENMEM_maximum_ram_page", memory::maximum_ram_page()) {
            c.check(
                "maximum_ram_page is above our frames",
                max > si.nr_pages,
                format_args!("{max:#x}"),
            );
        }
        let cur = c.ok(
            "XENMEM_current_reservation",
            memory::current_reservation(DOMID_SELF),
        );
        if let Some(cur) = cur {
            c.check(
                "current_reservation is start_info.nr_pages",
                cur == si.nr_pages,
                format_args!("{cur} vs {}", si.nr_pages),
            );
        }
        if let (Some(m), Some(cur)) = (
            c.ok(
                "XENMEM_maximum_reservation",
                memory::maximum_reservation(DOMID_SELF),
            ),
            cur,
        ) {
            c.check(
                "maximum >= current reservation",
                m >= cur,
                format_args!("{m} >= {cur}"),
            );
        }
        // Xen keeps no pseudo-physical e820 for its PV Dom0 (it reads the
        // machine's): XENMEM_memory_map is -ENOSYS there, as Xen 4.17 answers.
        let mut map = [E820Entry::default(); 16];
        c.err(
            "XENMEM_memory_map for a PV Dom0",
            memory::memory_map(&mut map),
            hypercall_abi::errno::Errno::ENOSYS,
        );
        let mut m2p = [0u64; 16];
        if let Some(n) = c.ok(
            "XENMEM_machphys_mfn_list",
            memory::machphys_mfn_list(&mut m2p),
        ) {
            c.check(
                "machphys_mfn_list is not empty",
                n > 0,
                format_args!("{n} extents"),
            );
        }

        // The page-table manager.
        let Some(info) = c.ok("frame allocator and kernel L4", frame::init()) else {
            c.finish()
        };
        let l4_pfn = frame::mfn_to_pfn(info.kernel_l4);
        c.check(
            "M2P maps the kernel L4 back to its pfn",
            l4_pfn.is_some(),
            format_args!(
                "mfn {:#x} -> {:?}, raw {:?}",
                info.kernel_l4,
                l4_pfn,
                frame::m2p_raw(info.kernel_l4)
            ),
        );
        let Some(f) = c.ok(
            "alloc_frame (grows the direct map: batched mmu_update)",
            frame::alloc_frame(),
        ) else {
            c.finish()
        };
        let Some(g) = c.ok("a second frame", frame::alloc_frame()) else {
            c.finish()
        };
        write(&f, 0xf0f0_0001);
        write(&g, 0x9090_0002);
        c.check(
            "new frames are writable",
            read(f.va) == 0xf0f0_0001,
            format_args!("{:#x}", read(f.va)),
        );

        c.ok(
            "mmu_update: map a page (creating L3/L2/L1 tables)",
            frame::map_kernel(TEST_VA, f.mfn, PteFlags::KERNEL_RW),
        );
        c.check(
            "the mapping shows the frame",
            read(TEST_VA) == 0xf0f0_0001,
            format_args!("{:#x}", read(TEST_VA)),
        );
        c.ok(
            "update_va_mapping: remap with UVMF_INVLPG",
            mmu::update_va_mapping(
                TEST_VA,
                Pte::new(g.mfn, PteFlags::KERNEL_RW).0,
                Flush::InvlpgLocal,
            ),
        );
        c.check(
            "the remapping shows the other frame",
            read(TEST_VA) == 0x9090_0002,
            format_args!("{:#x}", read(TEST_VA)),
        );
        c.ok(
            "update_va_mapping with UVMF_TLB_FLUSH|UVMF_ALL",
            mmu::update_va_mapping(
                TEST_VA,
                Pte::new(f.mfn, PteFlags::KERNEL_RW).0,
                Flush::TlbAll,
            ),
        );
        c.ok("MMUEXT_TLB_FLUSH_LOCAL", mmu::tlb_flush_local());
        c.ok("MMUEXT_TLB_FLUSH_ALL", mmu::tlb_flush_all());
        c.ok("MMUEXT_INVLPG_LOCAL", mmu::invlpg_local(TEST_VA));
        c.ok("MMUEXT_INVLPG_ALL", mmu::invlpg_all(TEST_VA));
        c.ok(
            "MMUEXT_NEW_BASEPTR (same L4)",
            mmu::new_baseptr(info.kernel_l4),
        );
        c.ok(
            "MMU_MACHPHYS_UPDATE of an own frame",
            single(mmu::mmu_update(&[mmu::machphys_update(f.mfn, f.pfn)])),
        );
        c.check(
            "still mapped after the flushes",
            read(TEST_VA) == 0xf0f0_0001,
            format_args!("{:#x}", read(TEST_VA)),
        );

        // The L1 that maps TEST_VA (for the pinned-L1 checks below).
        let l1 = frame::with_pt(|b| mm::find_l1(b, info.kernel_l4, TEST_VA));
        let l1 = c.ok("find the L1 of the test page", l1).flatten();
        // Reserved bits: Xen refuses PSE in an L2 entry (no superpages for
        // PV) from any domain. (In an L1 entry a domain with I/O
        // capabilities, like Dom0, may set every flag bit Xen 4.17 knows,
        // bits 52..62 included: those are the guest's own.)
        let l2 = frame::with_pt(|b| {
            use mm::PtBackend;
            let l3 = b.read(info.kernel_l4, mm::index(TEST_VA, 4))?.mfn();
            let l2 = b.read(l3, mm::index(TEST_VA, 3))?.mfn();
            Ok::<_, mm::PtError>((l2, b.read(l2, mm::index(TEST_VA, 2))?))
        });
        if let Some((l2, l2e)) = c.ok("find the L2 of the test page", l2) {
            let bad = Pte(l2e.0 | PteFlags::PSE.0);
            c.err(
                "L2 entry with PSE (a superpage)",
                single(mmu::mmu_update(&[mmu::pt_update(
                    l2,
                    mm::index(TEST_VA, 2),
                    bad,
                )])),
                want::L2_RESERVED_BITS,
            );
            c.check(
                "mapping unchanged after the refusal",
                read(TEST_VA) == 0xf0f0_0001,
                format_args!("{:#x}", read(TEST_VA)),
            );
        }

        ldt_checks(&mut c);
        hostile_checks(&mut c, info.kernel_l4);

        // Pinning an L1.
        if let Some(p) = c.ok("a frame for a page table", frame::alloc_frame()) {
            c.err(
                "pin a frame that is mapped writable",
                mmu::pin(1, p.mfn),
                want::PIN_WRITABLE_FRAME,
            );
            c.ok(
                "make its direct-map alias read-only",
                frame::set_direct_writable(p.pfn, false),
            );
            c.ok("MMUEXT_PIN_L1_TABLE", mmu::pin(1, p.mfn));
            c.err("pin it twice", mmu::pin(1, p.mfn), want::PIN_TWICE);
            c.err(
                "update_va_mapping: writable mapping of the pinned L1",
                mmu::update_va_mapping(
                    TEST_VA,
                    Pte::new(p.mfn, PteFlags::KERNEL_RW).0,
                    Flush::InvlpgLocal,
                ),
                want::WRITABLE_MAP_OF_PAGE_TABLE,
            );
            if let Some(l1) = l1 {
                c.err(
                    "mmu_update: writable mapping of the pinned L1",
                    single(mmu::mmu_update(&[mmu::pt_update(
                        l1,
                        mm::index(TEST_VA, 1),
                        Pte::new(p.mfn, PteFlags::KERNEL_RW),
                    )])),
                    want::WRITABLE_MAP_OF_PAGE_TABLE,
                );
            }
            c.check(
                "mapping unchanged",
                read(TEST_VA) == 0xf0f0_0001,
                format_args!("{:#x}", read(TEST_VA)),
            );
            c.ok(
                "read-only mapping of the pinned L1 is fine",
                mmu::update_va_mapping(
                    TEST_VA,
                    Pte::new(p.mfn, PteFlags::KERNEL_RO).0,
                    Flush::InvlpgLocal,
                ),
            );
            c.check(
                "it reads as an empty table",
                read(TEST_VA) == 0,
                format_args!("{:#x}", read(TEST_VA)),
            );
            c.ok(
                "map the test page back",
                mmu::update_va_mapping(
                    TEST_VA,
                    Pte::new(f.mfn, PteFlags::KERNEL_RW).0,
                    Flush::InvlpgLocal,
                ),
            );
            c.ok("MMUEXT_UNPIN_TABLE", mmu::unpin(p.mfn));
            c.err(
                "unpin a table that is not pinned",
                mmu::unpin(p.mfn),
                want::UNPIN_NOT_PINNED,
            );
            c.ok(
                "its alias writable again",
                frame::set_direct_writable(p.pfn, true),
            );
        }

        // An L4 entry in the hypervisor's slots.
        if let Some(z) = c.ok("a zeroed frame", frame::alloc_frame()) {
            c.ok("made read-only", frame::set_direct_writable(z.pfn, false));
            for slot in [256usize, 260, 271] {
                c.err(
                    match slot {
                        256 => "L4 entry in hypervisor slot 256",
                        260 => "L4 entry in hypervisor slot 260",
                        _ => "L4 entry in hypervisor slot 271",
                    },
                    single(mmu::mmu_update(&[mmu::pt_update(
                        info.kernel_l4,
                        slot,
                        Pte::new(z.mfn, PteFlags::TABLE),
                    )])),
                    want::L4_HYPERVISOR_SLOT,
                );
            }
            c.check(
                "still alive, test page intact",
                read(TEST_VA) == 0xf0f0_0001,
                format_args!("{:#x}", read(TEST_VA)),
            );
        }

        // A frame the domain does not own any more.
        if let Some(d) = c.ok("a frame to give back", frame::alloc_frame()) {
            c.ok(
                "unmap its direct-map alias",
                mmu::update_va_mapping(d.va, 0, Flush::InvlpgAll),
            );
            let before = memory::current_reservation(DOMID_SELF).unwrap_or(0);
            c.check(
                "XENMEM_decrease_reservation of one frame",
                memory::decrease_reservation(&[d.mfn], 0) == Ok(1),
                format_args!("mfn {:#x}", d.mfn),
            );
            let after = memory::current_reservation(DOMID_SELF).unwrap_or(0);
            c.check(
                "reservation went down by one",
                after + 1 == before,
                format_args!("{before} -> {after}"),
            );
            c.err(
                "update_va_mapping of a frame the domain gave back",
                mmu::update_va_mapping(
                    TEST_VA,
                    Pte::new(d.mfn, PteFlags::KERNEL_RW).0,
                    Flush::InvlpgLocal,
                ),
                want::MAP_FOREIGN_FRAME,
            );
            if let Some(l1) = l1 {
                c.err(
                    "mmu_update of a frame the domain gave back",
                    single(mmu::mmu_update(&[mmu::pt_update(
                        l1,
                        mm::index(TEST_VA, 1),
                        Pte::new(d.mfn, PteFlags::KERNEL_RO),
                    )])),
                    want::MAP_FOREIGN_FRAME,
                );
            }
            c.check(
                "test page intact",
                read(TEST_VA) == 0xf0f0_0001,
                format_args!("{:#x}", read(TEST_VA)),
            );
            let mut out = [0u64; 1];
            if c.check(
                "XENMEM_increase_reservation of one frame",
                memory::increase_reservation(&mut out, 0) == Ok(1),
                format_args!("mfn {:#x}", out[0]),
            ) {
                let n = out[0];
                c.ok(
                    "M2P update for the new frame",
                    single(mmu::mmu_update(&[mmu::machphys_update(n, d.pfn)])),
                );
                c.ok(
                    "map the new frame where the old one was",
                    mmu::update_va_mapping(
                        d.va,
                        Pte::new(n, PteFlags::KERNEL_RW).0,
                        Flush::InvlpgAll,
                    ),
                );
                // SAFETY: d.va now maps the new frame, writable, ours alone.
                unsafe { core::ptr::write_volatile(d.va as *mut u64, 77) };
                c.check(
                    "the new frame is usable",
                    read(d.va) == 77,
                    format_args!("{}", read(d.va)),
                );
                let now = memory::current_reservation(DOMID_SELF).unwrap_or(0);
                c.check("reservation back up", now == before, format_args!("{now}"));
            }
        }

        // The guest carries on.
        if let Some(h) = c.ok("allocation after all the refusals", frame::alloc_frame()) {
            write(&h, 0xabcd);
            c.ok(
                "map it",
                frame::map_kernel(TEST_VA + 0x1000, h.mfn, PteFlags::KERNEL_RW),
            );
            c.check(
                "and use it",
                read(TEST_VA + 0x1000) == 0xabcd,
                format_args!("{:#x}", read(TEST_VA + 0x1000)),
            );
            c.ok("unmap it", frame::unmap_kernel(TEST_VA + 0x1000));
        }
        c.finish()
    }
}
