//! Test Dom0: privileged instructions, emulated or bounced as Xen 4.17 does
//! for a PV kernel.
//!
//! `cpuid` behind Xen's forced-emulation prefix (`ud2; .ascii "xen"`) shows
//! the hypervisor leaves at 0x40000000 ("XenVMMXenVMM", version 4.17, the
//! hypercall-page MSR); `rdmsr`/`wrmsr` of MSRs a PV guest may use (FS base,
//! EFER) and of ones it may not (#GP); CR0 (TS via the emulated `mov`/`clts`),
//! CR2, CR3 (read, and reload of the current table; #GP for a frame that
//! is not the domain's), CR4 (TSD); `wbinvd`; port I/O under Xen's rules: with the
//! default virtual IOPL 0 and no I/O bitmap every `in` is bounced as #GP;
//! with `PHYSDEVOP_set_iopl(1)` a port Dom0 may use (0x80) is accessed and
//! one Xen keeps from Dom0 (the PIT, 0x40) reads all ones (Xen virtualises
//! it, no #GP); with IOPL 0 and a `PHYSDEVOP_set_iobitmap` bitmap that
//! allows only 0x80, `in` from 0x40 bounces #GP; `cli`/`sti` are no-ops
//! with IOPL 1 and #GP with IOPL 0; `hlt` is #GP (a PV kernel blocks with
//! SCHEDOP_block); `int $0x80` reaches a trap-table entry with DPL 3 and
//! `int $0x81` through a DPL-0 entry is #GP with the IDT error code; the
//! forced-emulation prefix before anything but `cpuid` is #UD.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use core::arch::asm;
    use core::sync::atomic::{AtomicU64, Ordering};

    use dom0_tools::pvtest::Checks;
    use hypercall_abi::arch_x86::{
        SegBase, TrapInfo, FLAT_KERNEL_CS, TI_IF_FLAG, XEN_CPUID_FIRST_LEAF,
        XEN_CPUID_LEAF_HYPERCALL, XEN_CPUID_LEAF_VERSION, XEN_CPUID_SIGNATURE, XEN_HYPERCALL_MSR,
    };
    use hypercall_abi::version::XEN_VERSION;
    use pv_guest_lib::trap::{self, TrapAction, TrapFrame};
    use pv_guest_lib::{arch, events, println, shared, xen, StartInfo};

    pv_guest_lib::entry!(main);

    const MSR_APIC_BASE: u32 = 0x1b;
    const MSR_TSC_DEADLINE: u32 = 0x6e0;
    const MSR_EFER: u32 = 0xc000_0080;
    const MSR_FS_BASE: u32 = 0xc000_0100;
    const EFER_SCE: u64 = 1 << 0;
    const EFER_LME: u64 = 1 << 8;
    const EFER_LMA: u64 = 1 << 10;
    const EFER_NXE: u64 = 1 << 11;
    const CR0_PE: u64 = 1 << 0;
    const CR0_TS: u64 = 1 << 3;
    const CR0_PG: u64 = 1 << 31;
    const CR4_TSD: u64 = 1 << 2;
    const CR4_PAE: u64 = 1 << 5;
    /// The PIT's first port: Xen denies Dom0 0x40-0x43.
    const DENIED_PORT: u16 = 0x40;
    /// POST diagnostics: Dom0 may use it.
    const ALLOWED_PORT: u16 = 0x80;
    const FS_BASE: u64 = 0x0000_1234_5000;
    const FS_BASE2: u64 = 0x0000_1234_6000;
    const CR2_VALUE: u64 = 0x0000_0bad_c0de_0000;
    /// The software interrupts: one reaching a DPL-3 trap-table entry, one
    /// hitting a DPL-0 entry.
    const SOFT_VECTOR: u8 = 0x80;
    const SOFT_VECTOR_DPL0: u8 = 0x81;
    /// An unused exception stub of pv-guest-lib (it pushes vector 22 and a
    /// zero error code) whose address the soft-interrupt entries use.
    const SOFT_STUB: u8 = 22;

    static GP_COUNT: AtomicU64 = AtomicU64::new(0);
    static GP_EC: AtomicU64 = AtomicU64::new(u64::MAX);
    static GP_RIP_OK: AtomicU64 = AtomicU64::new(0);
    static UD_COUNT: AtomicU64 = AtomicU64::new(0);
    static UD_RIP: AtomicU64 = AtomicU64::new(0);
    static SOFT_COUNT: AtomicU64 = AtomicU64::new(0);
    static SOFT_RIP: AtomicU64 = AtomicU64::new(0);

    /// A bitmap allowing only port 0x80 (a set bit denies the port).
    #[repr(C, align(4096))]
    struct IoBitmap([u8; 8192]);
    static mut IOBITMAP: IoBitmap = IoBitmap([0xff; 8192]);

    /// #GP: the probe puts the faulting instruction in rsi, the resume
    /// address in rdi.
    fn on_gp(f: &mut TrapFrame) -> TrapAction {
        GP_COUNT.fetch_add(1, Ordering::SeqCst);
        GP_EC.store(f.error_code, Ordering::SeqCst);
        GP_RIP_OK.store(u64::from(f.rip == f.rsi), Ordering::SeqCst);
        if f.rip != f.rsi {
            // Not one of the probes: report it and crash.
            return TrapAction::Unhandled;
        }
        f.rip = f.rdi;
        TrapAction::Resume
    }

    /// #UD (the emulation prefix not understood): resume at rdx.
    fn on_ud(f: &mut TrapFrame) -> TrapAction {
        UD_COUNT.fetch_add(1, Ordering::SeqCst);
        UD_RIP.store(f.rip, Ordering::SeqCst);
        f.rip = f.rdx;
        TrapAction::Resume
    }

    /// The software interrupt's handler: the frame's rip is after the `int`.
    fn on_soft(f: &mut TrapFrame) -> TrapAction {
        SOFT_COUNT.fetch_add(1, Ordering::SeqCst);
        SOFT_RIP.store(f.rip, Ordering::SeqCst);
        TrapAction::Resume
    }

    /// Runs the asm `$insn` (one instruction, at label 2) with the #GP
    /// convention; evaluates to whether it was bounced as #GP.
    macro_rules! faults {
        ($insn:literal $(, $($op:tt)*)?) => {{
            let before = GP_COUNT.load(Ordering::SeqCst);
            // SAFETY: the instruction is emulated by the hypervisor or its
            // #GP is bounced to on_gp, which resumes at label 3; the
            // operands name every register it touches.
            unsafe {
                asm!(
                    "lea rsi, [rip + 2f]",
                    "lea rdi, [rip + 3f]",
                    "2:",
                    $insn,
                    "3:",
                    out("rsi") _,
                    out("rdi") _,
                    $($($op)*)?
                );
            }
            GP_COUNT.load(Ordering::SeqCst) != before
        }};
    }

    /// `in al, dx`; `None` if it faulted (#GP).
    fn probe_in(port: u16) -> Option<u8> {
        let v: u8;
        let gp = faults!("in al, dx", in("dx") port, inout("al") 0xeeu8 => v);
        (!gp).then_some(v)
    }

    /// `rdmsr`; `None` if it faulted.
    fn probe_rdmsr(msr: u32) -> Option<u64> {
        let (lo, hi): (u32, u32);
        let gp = faults!("rdmsr", in("ecx") msr, inout("eax") 0u32 => lo, inout("edx") 0u32 => hi);
        (!gp).then_some((u64::from(hi) << 32) | u64::from(lo))
    }

    /// `wrmsr`; false if it faulted.
    fn probe_wrmsr(msr: u32, v: u64) -> bool {
        !faults!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32)
    }

    /// `mov %crN, %rax`; `None` if it faulted.
    fn probe_read_cr(n: u8) -> Option<u64> {
        let v: u64;
        let gp = match n {
            0 => faults!("mov rax, cr0", inout("rax") 0u64 => v),
            2 => faults!("mov rax, cr2", inout("rax") 0u64 => v),
            3 => faults!("mov rax, cr3", inout("rax") 0u64 => v),
            _ => faults!("mov rax, cr4", inout("rax") 0u64 => v),
        };
        (!gp).then_some(v)
    }

    /// `mov %rax, %crN`; false if it faulted.
    fn probe_write_cr(n: u8, v: u64) -> bool {
        !match n {
            0 => faults!("mov cr0, rax", in("rax") v),
            2 => faults!("mov cr2, rax", in("rax") v),
            3 => faults!("mov cr3, rax", in("rax") v),
            _ => faults!("mov cr4, rax", in("rax") v),
        }
    }

    /// Forced-emulation cpuid with the #UD convention; `None` on #UD.
    fn probe_xen_cpuid(leaf: u32) -> Option<arch::CpuidResult> {
        let before = UD_COUNT.load(Ordering::SeqCst);
        let (eax, ebx, ecx, edx): (u32, u32, u32, u32);
        // SAFETY: emulated by Xen as cpuid, or #UD bounced to on_ud which
        // resumes at label 3; rbx is saved around it (reserved by LLVM).
        unsafe {
            asm!(
                "mov {tmp:r}, rbx",
                "lea rdx, [rip + 3f]",
                ".byte 0x0f, 0x0b, 0x78, 0x65, 0x6e",
                "cpuid",
                "3:",
                "xchg {tmp:r}, rbx",
                tmp = out(reg) ebx,
                inout("eax") leaf => eax,
                inout("ecx") 0u32 => ecx,
                out("edx") edx,
            );
        }
        (UD_COUNT.load(Ordering::SeqCst) == before).then_some(arch::CpuidResult {
            eax,
            ebx,
            ecx,
            edx,
        })
    }

    /// A probed value in hex, or "#GP" if the probe faulted.
    struct Hex(Option<u64>);

    impl core::fmt::Display for Hex {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self.0 {
                Some(v) => write!(f, "{v:#x}"),
                None => f.write_str("#GP"),
            }
        }
    }

    fn gp_detail() -> (u64, u64) {
        (
            GP_EC.load(Ordering::SeqCst),
            GP_RIP_OK.load(Ordering::SeqCst),
        )
    }

    fn main(si: &'static StartInfo) -> ! {
        println!("pv-privop: Oxen PV privileged-instruction test (Xen 4.17 semantics)");
        let mut c = Checks::new("pv-privop");
        c.ok("map shared_info", shared::map(si.shared_info).map(|_| ()));
        c.ok("install traps", trap::install());
        trap::set_handler(trap::GENERAL_PROTECTION, on_gp);
        trap::set_handler(trap::INVALID_OPCODE, on_ud);
        trap::set_handler(SOFT_STUB, on_soft);
        events::irq_enable();

        cpuid_checks(&mut c);
        msr_checks(&mut c);
        cr_checks(&mut c, si);
        io_checks(&mut c);
        misc_checks(&mut c);
        c.finish()
    }

    fn cpuid_checks(c: &mut Checks) {
        let base = probe_xen_cpuid(XEN_CPUID_FIRST_LEAF);
        c.check(
            "forced-emulation cpuid is emulated (no #UD)",
            base.is_some(),
            format_args!("{} #UD", UD_COUNT.load(Ordering::SeqCst)),
        );
        if let Some(r) = base {
            let sig = r.signature();
            c.check(
                "leaf 0x40000000 says XenVMMXenVMM",
                &sig == XEN_CPUID_SIGNATURE,
                format_args!(
                    "{:?}, max leaf {:#x}",
                    pv_guest_lib::util::utf8_prefix(&sig),
                    r.eax
                ),
            );
            c.check(
                "it has the version and hypercall leaves",
                r.eax >= XEN_CPUID_FIRST_LEAF + XEN_CPUID_LEAF_HYPERCALL,
                format_args!("max leaf {:#x}", r.eax),
            );
        }
        if let Some(r) = probe_xen_cpuid(XEN_CPUID_FIRST_LEAF + XEN_CPUID_LEAF_VERSION) {
            c.check(
                "leaf 0x40000001 is version 4.17",
                r.eax == XEN_VERSION,
                format_args!("{}.{}", r.eax >> 16, r.eax & 0xffff),
            );
        }
        if let Some(r) = probe_xen_cpuid(XEN_CPUID_FIRST_LEAF + XEN_CPUID_LEAF_HYPERCALL) {
            c.check(
                "leaf 0x40000002: hypercall pages and MSR",
                r.eax >= 1 && r.ebx == XEN_HYPERCALL_MSR,
                format_args!("{} pages, msr {:#x}", r.eax, r.ebx),
            );
        }
        if let Some(r) = probe_xen_cpuid(1) {
            c.check(
                "forced cpuid leaf 1 has the hypervisor bit",
                r.ecx & (1 << 31) != 0,
                format_args!("ecx {:#x}", r.ecx),
            );
        }
        let native = arch::cpuid(0, 0);
        c.note(format_args!(
            "native cpuid leaf 0: {:?}",
            pv_guest_lib::util::utf8_prefix(&{
                let s = native.signature();
                [
                    s[0], s[1], s[2], s[3], s[8], s[9], s[10], s[11], s[4], s[5], s[6], s[7],
                ]
            })
        ));
        // The prefix before anything but cpuid is not emulated: #UD at the
        // ud2 (Xen's emulate_forced_invalid_op).
        let ud = UD_COUNT.load(Ordering::SeqCst);
        let expect: u64;
        // SAFETY: ud2 + "xen" + rdtsc: #UD bounced to on_ud, which resumes
        // at label 3; rdtsc (if it ran) only writes eax/edx.
        unsafe {
            asm!(
                "lea {e}, [rip + 2f]",
                "lea rdx, [rip + 3f]",
                "2:",
                ".byte 0x0f, 0x0b, 0x78, 0x65, 0x6e",
                "rdtsc",
                "3:",
                e = out(reg) expect,
                out("rdx") _,
                out("eax") _,
            );
        }
        c.check(
            "forced-emulation prefix before rdtsc bounces #UD at the ud2",
            UD_COUNT.load(Ordering::SeqCst) == ud + 1 && UD_RIP.load(Ordering::SeqCst) == expect,
            format_args!(
                "{} #UD at {:#x}, want {expect:#x}",
                UD_COUNT.load(Ordering::SeqCst) - ud,
                UD_RIP.load(Ordering::SeqCst)
            ),
        );
    }

    fn msr_checks(c: &mut Checks) {
        // SAFETY: nothing in this kernel uses FS-relative addressing.
        c.ok("set_segment_base(SEGBASE_FS)", unsafe {
            xen::set_segment_base(SegBase::Fs, FS_BASE)
        });
        // (An unexpected #GP here is not resumed: on_gp only resumes the
        // probes, which name the faulting instruction in rsi.)
        let fs = probe_rdmsr(MSR_FS_BASE);
        c.check(
            "rdmsr FS_BASE is emulated and shows the base",
            fs == Some(FS_BASE),
            format_args!("{}", Hex(fs)),
        );
        let wr = probe_wrmsr(MSR_FS_BASE, FS_BASE2);
        let fs = probe_rdmsr(MSR_FS_BASE);
        c.check(
            "wrmsr FS_BASE is emulated and reads back",
            wr && fs == Some(FS_BASE2),
            format_args!("write ok {wr}, read {}", Hex(fs)),
        );
        let efer = probe_rdmsr(MSR_EFER);
        c.check(
            "rdmsr EFER shows long mode (LME, LMA) and SCE",
            efer.is_some_and(|e| {
                e & (EFER_LME | EFER_LMA | EFER_SCE) == EFER_LME | EFER_LMA | EFER_SCE
            }),
            format_args!("{}", Hex(efer)),
        );
        if let Some(e) = efer {
            c.check(
                "wrmsr EFER with the value read is accepted",
                probe_wrmsr(MSR_EFER, e),
                format_args!("{e:#x}"),
            );
            let gp = GP_COUNT.load(Ordering::SeqCst);
            let ok = probe_wrmsr(MSR_EFER, e ^ EFER_NXE);
            let (ec, rip_ok) = gp_detail();
            c.check(
                "wrmsr EFER changing a bit bounces #GP(0)",
                !ok && GP_COUNT.load(Ordering::SeqCst) == gp + 1 && ec == 0 && rip_ok == 1,
                format_args!("ec {ec:#x}, rip ok {rip_ok}"),
            );
        }
        let denied_write = probe_wrmsr(MSR_APIC_BASE, 0);
        c.check(
            "wrmsr APIC_BASE (not writable by PV) bounces #GP",
            !denied_write,
            format_args!("written: {denied_write}"),
        );
        let r = probe_rdmsr(MSR_TSC_DEADLINE);
        c.check(
            "rdmsr of an MSR PV guests do not see (TSC_DEADLINE) bounces #GP",
            r.is_none(),
            format_args!("{}", Hex(r)),
        );
    }

    fn cr_checks(c: &mut Checks, si: &StartInfo) {
        let cr0 = probe_read_cr(0);
        c.check(
            "mov %cr0 is emulated: PE and PG set",
            cr0.is_some_and(|v| v & (CR0_PE | CR0_PG) == CR0_PE | CR0_PG),
            format_args!("{}", Hex(cr0)),
        );
        if let Some(cr0) = cr0 {
            // Only TS may change: set it, see it, clts, see it clear.
            let set = probe_write_cr(0, cr0 | CR0_TS);
            let with_ts = probe_read_cr(0);
            let clts = !faults!("clts");
            let without_ts = probe_read_cr(0);
            c.check(
                "mov to %cr0 sets TS, clts clears it",
                set && clts
                    && with_ts.is_some_and(|v| v & CR0_TS != 0)
                    && without_ts.is_some_and(|v| v & CR0_TS == 0),
                format_args!(
                    "set {set}, {}, clts {clts}, {}",
                    Hex(with_ts),
                    Hex(without_ts)
                ),
            );
            let bad = probe_write_cr(0, cr0 & !CR0_PG);
            c.check(
                "mov to %cr0 changing PG bounces #GP",
                !bad,
                format_args!("written: {bad}"),
            );
        }
        let w = probe_write_cr(2, CR2_VALUE);
        let cr2 = probe_read_cr(2);
        c.check(
            "mov %cr2 round-trips",
            w && cr2 == Some(CR2_VALUE),
            format_args!("write ok {w}, read {}", Hex(cr2)),
        );
        let cr3 = probe_read_cr(3);
        let in_p2m = cr3.is_some_and(|v| {
            let mfn = v >> 12;
            // SAFETY: the p2m list the builder mapped: nr_pages u64s.
            let p2m = unsafe {
                core::slice::from_raw_parts(si.mfn_list as *const u64, si.nr_pages as usize)
            };
            v & 0xfff == 0 && p2m.contains(&mfn)
        });
        c.check(
            "mov %cr3 shows the machine address of one of our frames",
            in_p2m,
            format_args!("{}", Hex(cr3)),
        );
        if let Some(v) = cr3 {
            let same = probe_write_cr(3, v);
            let after = probe_read_cr(3);
            c.check(
                "mov to %cr3 of the current table is emulated (a TLB flush)",
                same && after == Some(v),
                format_args!("write ok {same}, read {}", Hex(after)),
            );
        }
        let gp = GP_COUNT.load(Ordering::SeqCst);
        let bad = probe_write_cr(3, 0);
        c.check(
            "mov to %cr3 of a frame that is not ours bounces #GP",
            !bad && GP_COUNT.load(Ordering::SeqCst) == gp + 1,
            format_args!("written: {bad}"),
        );
        let cr4 = probe_read_cr(4);
        c.check(
            "mov %cr4 is emulated: PAE set",
            cr4.is_some_and(|v| v & CR4_PAE != 0),
            format_args!("{}", Hex(cr4)),
        );
        if let Some(cr4) = cr4 {
            let set = probe_write_cr(4, cr4 | CR4_TSD);
            let with_tsd = probe_read_cr(4);
            let t0 = arch::rdtsc();
            let t1 = arch::rdtsc();
            let clear = probe_write_cr(4, cr4);
            let after = probe_read_cr(4);
            c.check(
                "CR4.TSD is kept, rdtsc still works in the kernel, and clears",
                set && clear
                    && with_tsd.is_some_and(|v| v & CR4_TSD != 0)
                    && after == Some(cr4)
                    && t1 >= t0,
                format_args!("{} then {}, tsc {t0} -> {t1}", Hex(with_tsd), Hex(after)),
            );
        }
    }

    fn io_checks(c: &mut Checks) {
        // Virtual IOPL 0 and no I/O bitmap: every port access is #GP.
        let gp = GP_COUNT.load(Ordering::SeqCst);
        let r = probe_in(ALLOWED_PORT);
        let (ec, rip_ok) = gp_detail();
        c.check(
            "with IOPL 0 and no I/O bitmap, in from 0x80 bounces #GP(0)",
            r.is_none() && GP_COUNT.load(Ordering::SeqCst) == gp + 1 && ec == 0 && rip_ok == 1,
            format_args!("{r:?}, ec {ec:#x}, rip ok {rip_ok}"),
        );
        let cli_gp = faults!("cli");
        c.check(
            "with IOPL 0, cli bounces #GP",
            cli_gp,
            format_args!("#GP: {cli_gp}"),
        );

        c.ok("PHYSDEVOP_set_iopl(1)", xen::physdev_set_iopl(1));
        let allowed = probe_in(ALLOWED_PORT);
        c.check(
            "in from a permitted port (0x80) is emulated",
            allowed.is_some(),
            format_args!("{allowed:?}"),
        );
        let pit = probe_in(DENIED_PORT);
        c.check(
            "in from a port Xen keeps (PIT 0x40) reads all ones, no #GP",
            pit == Some(0xff),
            format_args!("{pit:?}"),
        );
        let cli_gp = faults!("cli");
        let sti_gp = faults!("sti");
        c.check(
            "with IOPL 1, cli and sti are skipped",
            !cli_gp && !sti_gp,
            format_args!("#GP: cli {cli_gp}, sti {sti_gp}"),
        );
        c.ok("PHYSDEVOP_set_iopl(0)", xen::physdev_set_iopl(0));
        let bad = xen::physdev_set_iopl(4);
        c.check(
            "PHYSDEVOP_set_iopl(4) is -EINVAL",
            bad == Err(pv_guest_lib::error::Errno::EINVAL),
            format_args!("{bad:?}"),
        );

        // IOPL 0 with a bitmap allowing only 0x80.
        let bitmap = core::ptr::addr_of_mut!(IOBITMAP);
        // SAFETY: single-threaded; nothing else uses the bitmap.
        unsafe { (*bitmap).0[usize::from(ALLOWED_PORT >> 3)] &= !(1 << (ALLOWED_PORT & 7)) };
        // SAFETY: the bitmap is a static: valid for the kernel's lifetime.
        c.ok("PHYSDEVOP_set_iobitmap", unsafe {
            xen::physdev_set_iobitmap(bitmap as *const u8, 65536)
        });
        let allowed = probe_in(ALLOWED_PORT);
        c.check(
            "with the bitmap, in from 0x80 is emulated",
            allowed.is_some(),
            format_args!("{allowed:?}"),
        );
        let gp = GP_COUNT.load(Ordering::SeqCst);
        let denied = probe_in(DENIED_PORT);
        c.check(
            "in from a denied port (PIT 0x40) bounces #GP",
            denied.is_none() && GP_COUNT.load(Ordering::SeqCst) == gp + 1,
            format_args!("{denied:?}, {} #GP", GP_COUNT.load(Ordering::SeqCst) - gp),
        );
        let (ec, rip_ok) = gp_detail();
        c.check(
            "the #GP has error code 0 and rip at the in",
            ec == 0 && rip_ok == 1,
            format_args!("ec {ec:#x}, rip ok {rip_ok}"),
        );
        // SAFETY: a null bitmap with no ports is never read.
        c.ok("PHYSDEVOP_set_iobitmap(none)", unsafe {
            xen::physdev_set_iobitmap(core::ptr::null(), 0)
        });
    }

    fn misc_checks(c: &mut Checks) {
        let gp = faults!("hlt");
        c.check(
            "hlt bounces #GP (not emulated)",
            gp,
            format_args!("#GP: {gp}"),
        );
        let gp = faults!("wbinvd");
        c.check(
            "wbinvd is emulated for Dom0",
            !gp,
            format_args!("#GP: {gp}"),
        );
        // A non-canonical load: #GP(0) whose bytes are not an instruction
        // Xen emulates: bounced as is.
        let gp = faults!("mov rax, [rax]", inout("rax") 0x8000_0000_0000_0000u64 => _);
        let (ec, rip_ok) = gp_detail();
        c.check(
            "#GP from a non-canonical load is bounced as is",
            gp && ec == 0 && rip_ok == 1,
            format_args!("ec {ec:#x}, rip ok {rip_ok}"),
        );

        // Software interrupts through the trap table.
        let stub = trap::trap_ctxt()[usize::from(SOFT_STUB)].address;
        let entry = |vector: u8, dpl: u8| TrapInfo {
            vector,
            flags: dpl | TI_IF_FLAG,
            cs: FLAT_KERNEL_CS,
            _pad4: 0,
            address: stub,
        };
        let table = [
            entry(SOFT_VECTOR, 3),
            entry(SOFT_VECTOR_DPL0, 0),
            TrapInfo::default(),
        ];
        // SAFETY: the address is pv-guest-lib's stub for vector 22, written
        // for Xen's exception bounce frame; the table is terminated.
        c.ok("set_trap_table for int $0x80 and $0x81", unsafe {
            xen::set_trap_table(&table)
        });
        let expect: u64;
        // SAFETY: int $0x80 is delivered to on_soft, which resumes after it.
        unsafe {
            asm!("lea {e}, [rip + 2f]", "int 0x80", "2:", e = out(reg) expect);
        }
        c.check(
            "int $0x80 reaches the DPL-3 trap-table entry, rip after the int",
            SOFT_COUNT.load(Ordering::SeqCst) == 1 && SOFT_RIP.load(Ordering::SeqCst) == expect,
            format_args!(
                "{} deliveries, rip {:#x}, want {expect:#x}",
                SOFT_COUNT.load(Ordering::SeqCst),
                SOFT_RIP.load(Ordering::SeqCst)
            ),
        );
        let gp = faults!("int 0x81");
        let (ec, rip_ok) = gp_detail();
        let want = (u64::from(SOFT_VECTOR_DPL0) << 3) | 2;
        c.check(
            "int $0x81 through a DPL-0 entry bounces #GP with the IDT error code",
            gp && ec == want && rip_ok == 1 && SOFT_COUNT.load(Ordering::SeqCst) == 1,
            format_args!("ec {ec:#x} (want {want:#x}), rip ok {rip_ok}"),
        );
    }
}
