//! Test Dom0: the trap layer against Xen's PV exception semantics.
//!
//! Registers the virtual IDT and callbacks, then: `int3` is bounced to the
//! handler with a kernel-mode frame (`cs` RPL 0) and events masked, and
//! `iret` brings back every register; a page fault on an unmapped kernel
//! address is fixed by mapping a page in the handler and the access
//! retried; a non-canonical load raises #GP and `ud2` #UD, both bounced and
//! skipped. One line per check, then the verdict.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use core::arch::asm;
    use core::sync::atomic::{AtomicU64, Ordering};

    use dom0_tools::pvtest::Checks;
    use pv_guest_lib::mm::PteFlags;
    use pv_guest_lib::trap::{self, TrapAction, TrapFrame};
    use pv_guest_lib::{events, frame, println, shared, StartInfo};

    pv_guest_lib::entry!(main);

    /// Where the page-fault handler maps a page: L4 slot 384, far from the
    /// hypervisor's slots and from anything a builder maps.
    const FAULT_VA: u64 = 0xffff_c000_0000_0000;
    const MAGIC: u64 = 0x5eed_f00d_cafe_0001;
    const REG_MAGIC: u64 = 0x1234_5678_9abc_def0;

    static BP_COUNT: AtomicU64 = AtomicU64::new(0);
    static BP_RIP: AtomicU64 = AtomicU64::new(0);
    static BP_CS: AtomicU64 = AtomicU64::new(0);
    static BP_MASK_IN_HANDLER: AtomicU64 = AtomicU64::new(u64::MAX);
    static BP_SAVED_MASK: AtomicU64 = AtomicU64::new(u64::MAX);
    static PF_COUNT: AtomicU64 = AtomicU64::new(0);
    static PF_CR2: AtomicU64 = AtomicU64::new(0);
    static PF_EC: AtomicU64 = AtomicU64::new(0);
    static PF_MAP_ERR: AtomicU64 = AtomicU64::new(0);
    static GP_COUNT: AtomicU64 = AtomicU64::new(0);
    static GP_EC: AtomicU64 = AtomicU64::new(u64::MAX);
    static GP_RIP_OK: AtomicU64 = AtomicU64::new(0);
    static UD_COUNT: AtomicU64 = AtomicU64::new(0);
    static UD_RIP_OK: AtomicU64 = AtomicU64::new(0);

    fn mask_now() -> u64 {
        shared::get().and_then(|s| s.vcpu(0)).map_or(u64::MAX, |v| {
            u64::from(v.evtchn_upcall_mask.load(Ordering::SeqCst))
        })
    }

    fn on_bp(f: &mut TrapFrame) -> TrapAction {
        BP_COUNT.fetch_add(1, Ordering::SeqCst);
        BP_RIP.store(f.rip, Ordering::SeqCst);
        BP_CS.store(f.cs, Ordering::SeqCst);
        BP_SAVED_MASK.store(u64::from(f.saved_upcall_mask()), Ordering::SeqCst);
        BP_MASK_IN_HANDLER.store(mask_now(), Ordering::SeqCst);
        // Clobber what the interrupted code must get back from the frame.
        f.r12 = REG_MAGIC;
        TrapAction::Resume
    }

    fn on_pf(f: &mut TrapFrame) -> TrapAction {
        PF_COUNT.fetch_add(1, Ordering::SeqCst);
        let cr2 = f.cr2();
        PF_CR2.store(cr2, Ordering::SeqCst);
        PF_EC.store(f.error_code, Ordering::SeqCst);
        if cr2 & !0xfff != FAULT_VA || PF_COUNT.load(Ordering::SeqCst) > 1 {
            return skip_probe(f);
        }
        let fr = match frame::alloc_frame() {
            Ok(fr) => fr,
            Err(_) => {
                PF_MAP_ERR.store(1, Ordering::SeqCst);
                return skip_probe(f);
            }
        };
        // SAFETY: a fresh, zeroed, direct-mapped frame of ours.
        unsafe { core::ptr::write_volatile(fr.va as *mut u64, MAGIC) };
        match frame::map_kernel(FAULT_VA, fr.mfn, PteFlags::KERNEL_RW) {
            Ok(_) => TrapAction::Resume,
            Err(_) => {
                PF_MAP_ERR.store(2, Ordering::SeqCst);
                skip_probe(f)
            }
        }
    }

    /// The handler could not fix the fault: resume after the probe (rsi =
    /// the faulting instruction, rdx = where to resume) so the remaining
    /// checks still run.
    fn skip_probe(f: &mut TrapFrame) -> TrapAction {
        if f.rip != f.rsi {
            return TrapAction::Unhandled;
        }
        f.rip = f.rdx;
        TrapAction::Resume
    }

    /// #GP and #UD: the probes put the faulting instruction's address in
    /// rsi and where to resume in rdx.
    fn on_gp(f: &mut TrapFrame) -> TrapAction {
        GP_COUNT.fetch_add(1, Ordering::SeqCst);
        GP_EC.store(f.error_code, Ordering::SeqCst);
        GP_RIP_OK.store(u64::from(f.rip == f.rsi), Ordering::SeqCst);
        if f.rip != f.rsi {
            return TrapAction::Unhandled;
        }
        f.rip = f.rdx;
        TrapAction::Resume
    }

    fn on_ud(f: &mut TrapFrame) -> TrapAction {
        UD_COUNT.fetch_add(1, Ordering::SeqCst);
        UD_RIP_OK.store(u64::from(f.rip == f.rsi), Ordering::SeqCst);
        if f.rip != f.rsi {
            return TrapAction::Unhandled;
        }
        f.rip = f.rdx;
        TrapAction::Resume
    }

    fn main(si: &'static StartInfo) -> ! {
        println!("pv-traps: Oxen PV trap test (Xen 4.17 semantics)");
        let mut c = Checks::new("pv-traps");
        let shared_ok = c
            .ok(
                "map shared_info (update_va_mapping)",
                shared::map(si.shared_info).map(|_| ()),
            )
            .is_some();
        c.ok("set_trap_table", trap::install_trap_table());
        c.ok(
            "callback_op event/failsafe/syscall",
            trap::install_callbacks(),
        );
        c.ok("frame allocator", frame::init());
        trap::set_handler(trap::BREAKPOINT, on_bp);
        trap::set_handler(trap::PAGE_FAULT, on_pf);
        trap::set_handler(trap::GENERAL_PROTECTION, on_gp);
        trap::set_handler(trap::INVALID_OPCODE, on_ud);
        events::irq_enable();

        // int3: a trap; rip points after it; registers come back.
        let expect_rip: u64;
        let r12_after: u64;
        let rbx_after: u64;
        // SAFETY: int3 is bounced to on_bp, which resumes after it having
        // changed only the saved r12; the asm declares r12 and rbx as
        // outputs (rbx saved/restored around it since LLVM reserves it).
        unsafe {
            asm!(
                "push rbx",
                "mov rbx, {m}",
                "mov r12, {m}",
                "not r12",
                "lea {rip}, [rip + 2f]",
                "int3",
                "2:",
                "mov {rbx_out}, rbx",
                "pop rbx",
                m = in(reg) REG_MAGIC,
                rip = out(reg) expect_rip,
                rbx_out = out(reg) rbx_after,
                out("r12") r12_after,
            );
        }
        c.check(
            "int3 bounced once",
            BP_COUNT.load(Ordering::SeqCst) == 1,
            format_args!("{} entries", BP_COUNT.load(Ordering::SeqCst)),
        );
        c.check(
            "int3 frame rip is after the int3",
            BP_RIP.load(Ordering::SeqCst) == expect_rip,
            format_args!(
                "rip {:#x}, want {expect_rip:#x}",
                BP_RIP.load(Ordering::SeqCst)
            ),
        );
        let cs = BP_CS.load(Ordering::SeqCst);
        c.check(
            "int3 frame cs is the kernel's with RPL 0 (0xe030)",
            cs as u16 == 0xe030,
            format_args!("cs slot {cs:#x}"),
        );
        c.check(
            "events masked in the handler (TI_IF_FLAG)",
            !shared_ok || BP_MASK_IN_HANDLER.load(Ordering::SeqCst) == 1,
            format_args!("mask {}", BP_MASK_IN_HANDLER.load(Ordering::SeqCst)),
        );
        c.check(
            "saved upcall mask in the frame is 0",
            !shared_ok || BP_SAVED_MASK.load(Ordering::SeqCst) == 0,
            format_args!("{}", BP_SAVED_MASK.load(Ordering::SeqCst)),
        );
        c.check(
            "iret restored the event mask",
            !shared_ok || mask_now() == 0,
            format_args!("mask {}", mask_now()),
        );
        c.check(
            "iret restored registers from the frame",
            r12_after == REG_MAGIC && rbx_after == REG_MAGIC,
            format_args!("r12 {r12_after:#x} rbx {rbx_after:#x}"),
        );

        // A page fault fixed by the handler.
        let v: u64;
        // SAFETY: FAULT_VA is unmapped; the fault is bounced to on_pf,
        // which maps a page holding MAGIC there and retries the load (or,
        // if it cannot, resumes at label 3 with rax = 0).
        unsafe {
            asm!(
                "lea rsi, [rip + 2f]",
                "lea rdx, [rip + 3f]",
                "xor eax, eax",
                "2:",
                "mov rax, [{va}]",
                "3:",
                va = in(reg) FAULT_VA,
                out("rax") v,
                out("rsi") _,
                out("rdx") _,
            );
        }
        c.check(
            "page fault bounced once",
            PF_COUNT.load(Ordering::SeqCst) == 1,
            format_args!(
                "{} entries, handler error {}",
                PF_COUNT.load(Ordering::SeqCst),
                PF_MAP_ERR.load(Ordering::SeqCst)
            ),
        );
        c.check(
            "cr2 (vcpu_info.arch.cr2) is the faulting address",
            PF_CR2.load(Ordering::SeqCst) == FAULT_VA,
            format_args!("{:#x}", PF_CR2.load(Ordering::SeqCst)),
        );
        let ec = PF_EC.load(Ordering::SeqCst);
        c.check(
            "page-fault error code: not-present read from kernel mode",
            ec & (trap::pf::PRESENT | trap::pf::WRITE | trap::pf::USER) == 0,
            format_args!("{ec:#x}"),
        );
        c.check(
            "the access was retried after the handler mapped a page",
            v == MAGIC,
            format_args!("read {v:#x}"),
        );

        // #GP: a non-canonical load.
        // SAFETY: the load faults (#GP); on_gp resumes at label 3 without
        // touching memory. rsi/rdx carry the addresses to the handler.
        unsafe {
            asm!(
                "lea rsi, [rip + 2f]",
                "lea rdx, [rip + 3f]",
                "mov rax, 0x8000000000000000",
                "2:",
                "mov rax, [rax]",
                "3:",
                out("rax") _,
                out("rsi") _,
                out("rdx") _,
            );
        }
        c.check(
            "#GP from a non-canonical load bounced",
            GP_COUNT.load(Ordering::SeqCst) == 1,
            format_args!("{} entries", GP_COUNT.load(Ordering::SeqCst)),
        );
        c.check(
            "#GP error code 0, rip at the instruction",
            GP_EC.load(Ordering::SeqCst) == 0 && GP_RIP_OK.load(Ordering::SeqCst) == 1,
            format_args!(
                "ec {:#x}, rip ok {}",
                GP_EC.load(Ordering::SeqCst),
                GP_RIP_OK.load(Ordering::SeqCst)
            ),
        );

        // #UD: ud2 (not followed by the "xen" emulation signature).
        // SAFETY: ud2 faults (#UD); on_ud resumes at label 3.
        unsafe {
            asm!(
                "lea rsi, [rip + 2f]",
                "lea rdx, [rip + 3f]",
                "2:",
                "ud2",
                "nop",
                "3:",
                out("rsi") _,
                out("rdx") _,
            );
        }
        c.check(
            "#UD from ud2 bounced, rip at the instruction",
            UD_COUNT.load(Ordering::SeqCst) == 1 && UD_RIP_OK.load(Ordering::SeqCst) == 1,
            format_args!(
                "{} entries, rip ok {}",
                UD_COUNT.load(Ordering::SeqCst),
                UD_RIP_OK.load(Ordering::SeqCst)
            ),
        );
        c.check(
            "events enabled again after the traps",
            !shared_ok || events::irqs_enabled(),
            format_args!("mask {}", mask_now()),
        );
        c.finish()
    }
}
