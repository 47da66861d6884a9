//! Test Dom0: privileged instructions, emulated or bounced as Xen 4.17 does
//! for a PV kernel.
//!
//! `cpuid` behind Xen's forced-emulation prefix (`ud2; .ascii "xen"`) shows
//! the hypervisor leaves at 0x40000000 ("XenVMMXenVMM", version 4.17, the
//! hypercall-page MSR); `rdmsr` of MSRs a PV guest may read (FS base after
//! `set_segment_base`, EFER); CR0/CR4 reads; port I/O to a port Dom0 may
//! use, and to one Xen denies Dom0 (the PIT, 0x40), which is bounced to the
//! kernel's #GP handler.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use core::arch::asm;
    use core::sync::atomic::{AtomicU64, Ordering};

    use dom0_tools::pvtest::Checks;
    use hypercall_abi::arch_x86::{
        SegBase, XEN_CPUID_FIRST_LEAF, XEN_CPUID_LEAF_HYPERCALL, XEN_CPUID_LEAF_VERSION,
        XEN_CPUID_SIGNATURE, XEN_HYPERCALL_MSR,
    };
    use hypercall_abi::version::XEN_VERSION;
    use pv_guest_lib::trap::{self, TrapAction, TrapFrame};
    use pv_guest_lib::{arch, events, println, shared, xen, StartInfo};

    pv_guest_lib::entry!(main);

    const MSR_EFER: u32 = 0xc000_0080;
    const MSR_FS_BASE: u32 = 0xc000_0100;
    const EFER_SCE: u64 = 1 << 0;
    const EFER_LME: u64 = 1 << 8;
    const EFER_LMA: u64 = 1 << 10;
    const CR0_PE: u64 = 1 << 0;
    const CR0_PG: u64 = 1 << 31;
    const CR4_PAE: u64 = 1 << 5;
    /// The PIT's first port: Xen denies Dom0 0x40-0x43.
    const DENIED_PORT: u16 = 0x40;
    /// POST diagnostics: Dom0 may use it.
    const ALLOWED_PORT: u16 = 0x80;
    const FS_BASE: u64 = 0x0000_1234_5000;

    static GP_COUNT: AtomicU64 = AtomicU64::new(0);
    static GP_EC: AtomicU64 = AtomicU64::new(u64::MAX);
    static GP_RIP_OK: AtomicU64 = AtomicU64::new(0);
    static UD_COUNT: AtomicU64 = AtomicU64::new(0);

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

    /// #UD (the emulation prefix not understood): the same convention.
    fn on_ud(f: &mut TrapFrame) -> TrapAction {
        UD_COUNT.fetch_add(1, Ordering::SeqCst);
        f.rip = f.rdx;
        TrapAction::Resume
    }

    /// `in $port, %al` with the #GP convention; `None` if it faulted.
    fn probe_in(port: u16) -> Option<u8> {
        let before = GP_COUNT.load(Ordering::SeqCst);
        let v: u8;
        // SAFETY: a port read; if the hypervisor bounces #GP, on_gp resumes
        // at label 3 with al unchanged (0xee).
        unsafe {
            asm!(
                "mov al, 0xee",
                "lea rsi, [rip + 2f]",
                "lea rdi, [rip + 3f]",
                "2:",
                "in al, dx",
                "3:",
                "xor edi, edi",
                in("dx") port,
                out("al") v,
                out("rsi") _,
                out("rdi") _,
                options(nomem, nostack)
            );
        }
        (GP_COUNT.load(Ordering::SeqCst) == before).then_some(v)
    }

    /// `rdmsr` with the #GP convention; `None` if it faulted.
    fn probe_rdmsr(msr: u32) -> Option<u64> {
        let before = GP_COUNT.load(Ordering::SeqCst);
        let (lo, hi): (u32, u32);
        // SAFETY: emulated by the hypervisor, or #GP bounced to on_gp which
        // resumes at label 3.
        unsafe {
            asm!(
                "xor eax, eax",
                "xor edx, edx",
                "lea rsi, [rip + 2f]",
                "lea rdi, [rip + 3f]",
                "2:",
                "rdmsr",
                "3:",
                in("ecx") msr,
                out("eax") lo,
                out("edx") hi,
                out("rsi") _,
                out("rdi") _,
                options(nomem, nostack)
            );
        }
        (GP_COUNT.load(Ordering::SeqCst) == before).then_some((u64::from(hi) << 32) | u64::from(lo))
    }

    /// `mov %crN, %rax` (N = 0 or 4) with the #GP convention.
    fn probe_cr(n: u8) -> Option<u64> {
        let before = GP_COUNT.load(Ordering::SeqCst);
        let v: u64;
        // SAFETY: as probe_rdmsr.
        unsafe {
            if n == 0 {
                asm!(
                    "xor eax, eax",
                    "lea rsi, [rip + 2f]",
                    "lea rdi, [rip + 3f]",
                    "2:",
                    "mov rax, cr0",
                    "3:",
                    out("rax") v, out("rsi") _, out("rdi") _,
                    options(nomem, nostack)
                );
            } else {
                asm!(
                    "xor eax, eax",
                    "lea rsi, [rip + 2f]",
                    "lea rdi, [rip + 3f]",
                    "2:",
                    "mov rax, cr4",
                    "3:",
                    out("rax") v, out("rsi") _, out("rdi") _,
                    options(nomem, nostack)
                );
            }
        }
        (GP_COUNT.load(Ordering::SeqCst) == before).then_some(v)
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

    fn main(si: &'static StartInfo) -> ! {
        println!("pv-privop: Oxen PV privileged-instruction test (Xen 4.17 semantics)");
        let mut c = Checks::new("pv-privop");
        c.ok("map shared_info", shared::map(si.shared_info).map(|_| ()));
        c.ok("install traps", trap::install());
        trap::set_handler(trap::GENERAL_PROTECTION, on_gp);
        trap::set_handler(trap::INVALID_OPCODE, on_ud);
        events::irq_enable();

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
            format_args!("{fs:#x?} (None: #GP)"),
        );
        let efer = probe_rdmsr(MSR_EFER);
        c.check(
            "rdmsr EFER shows long mode (LME, LMA) and SCE",
            efer.is_some_and(|e| {
                e & (EFER_LME | EFER_LMA | EFER_SCE) == EFER_LME | EFER_LMA | EFER_SCE
            }),
            format_args!("{efer:#x?}"),
        );
        let cr0 = probe_cr(0);
        c.check(
            "mov %cr0 is emulated: PE and PG set",
            cr0.is_some_and(|v| v & (CR0_PE | CR0_PG) == CR0_PE | CR0_PG),
            format_args!("{cr0:#x?}"),
        );
        let cr4 = probe_cr(4);
        c.check(
            "mov %cr4 is emulated: PAE set",
            cr4.is_some_and(|v| v & CR4_PAE != 0),
            format_args!("{cr4:#x?}"),
        );

        let allowed = probe_in(ALLOWED_PORT);
        c.check(
            "in from a permitted port (0x80) is emulated",
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
        c.check(
            "the #GP has error code 0 and rip at the in",
            GP_EC.load(Ordering::SeqCst) == 0 && GP_RIP_OK.load(Ordering::SeqCst) == 1,
            format_args!(
                "ec {:#x}, rip ok {}",
                GP_EC.load(Ordering::SeqCst),
                GP_RIP_OK.load(Ordering::SeqCst)
            ),
        );
        c.finish()
    }
}
