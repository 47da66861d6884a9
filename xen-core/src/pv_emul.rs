//! Privileged-instruction emulation for PV guests: the glue between a #GP
//! or #UD taken from guest code and the pure emulator in
//! `xen_core::x86_emul`.
//!
//! A PV kernel runs in ring 3, so `mov %cr0`, `rdmsr`, `in`/`out`,
//! `int $0x80` through our DPL-0 gates and Xen's forced-emulation prefix
//! fault into xen-core. [`handle`] fetches the bytes at the faulting RIP
//! through the vCPU's current page tables, runs `x86_emul::handle_gp` /
//! `handle_ud` over an [`Env`] (the [`x86_emul::PrivEnv`] of the running
//! vCPU), and says what `pv::guest_exception` must do: resume (registers
//! already updated), deliver a software interrupt, or bounce a fault.
//!
//! **Owns**: the per-vCPU emulated state Xen keeps in `arch.pv` (virtual
//! CR2/CR4, IOPL, the I/O bitmap handle, TSC_AUX, SPEC_CTRL, the guest's
//! CPUID-faulting bit: [`VcpuEmul`]), the per-domain state (the CPUID
//! policy, the I/O-port permissions, the CMOS index and PCI CF8 latches:
//! [`DomainEmul`]), and loading the few real registers that follow the
//! vCPU ([`load_vcpu`]: CR4.TSD, TSC_AUX, SPEC_CTRL, CPUID faulting).
//!
//! **Trusts**: `x86_emul` for the policy (which instruction, which MSR,
//! which port). It re-checks the one thing that touches hardware on the
//! guest's behalf: a real `in`/`out` happens only on ports the domain's
//! [`IoPorts`] permit (never 0xcf8 as a dword, never CMOS, never ports
//! xen-core keeps); real MSR writes go only to the few MSRs named here
//! (TSC_AUX, SPEC_CTRL, PRED_CMD, FLUSH_CMD, the FS/GS bases), and every
//! real MSR access on the guest's behalf goes through
//! `rdmsr_safe`/`wrmsr_safe`, so a missing MSR cannot fault xen-core.
//!
//! **Follows** Xen 4.17 `xen/arch/x86/pv/emul-priv-op.c`,
//! `emul-inv-op.c`, `traps.c` (`do_general_protection`), `msr.c`,
//! `dom0_build.c` (`dom0_setup_permissions`), `time.c`
//! (`rtc_guest_{read,write}`), `pci.c` (`pci_conf_{read,write}`).
//! Deviations are listed in `docs/abi-deviations.md`.

use crate::arch::x86_64::entry::TrapFrame;
use crate::arch::x86_64::instr::{self, msr};
use crate::arch::x86_64::paging::phys_to_virt;
use crate::domain::{copy_from_guest, Domain, Vcpu};
use crate::memory::FRAME_TABLE;
use alloc::boxed::Box;
use spin::{Mutex, Once};
use xen_core::cpuid_policy::{
    feat, CpuidContext, CpuidSource, Leaf, PolicyOptions, PvCpuidPolicy, Vendor, XenTimeLeaf,
};
use xen_core::ioports::IoPorts;
use xen_core::mm::frame_table::{DomId, Owner, PageType, TypeGet};
use xen_core::mm::{ptval, Mfn};
use xen_core::x86_emul::{
    self, gpr, BaseReg, Cr3Result, DrFault, Effect, HypercallPageResult, PrivEnv, RegFile, VirtIo,
    PV_CR4_GUEST_VISIBLE_MASK,
};

/// CR4.TSD: `rdtsc` faults outside ring 0.
const CR4_TSD: u64 = 1 << 2;
/// MSRs touched here beyond `instr::msr`.
const MSR_SPEC_CTRL: u32 = 0x48;
const MSR_PRED_CMD: u32 = 0x49;
const MSR_FLUSH_CMD: u32 = 0x10b;
const MSR_INTEL_PLATFORM_INFO: u32 = 0xce;
const MSR_INTEL_MISC_FEATURES_ENABLES: u32 = 0x140;
const MSR_TSC_AUX: u32 = 0xc000_0103;
/// PLATFORM_INFO bit 31: CPUID faulting supported.
const PLATFORM_INFO_CPUID_FAULTING: u64 = 1 << 31;
/// MISC_FEATURES_ENABLES bit 0: CPUID faulting on.
const MISC_FEATURES_CPUID_FAULTING: u64 = 1 << 0;
/// The `isa-debug-exit` port xen-core powers QEMU off through (kept from
/// the hardware domain, like Xen keeps the ports it drives itself).
const DEBUG_EXIT_PORT: u16 = 0xf4;
/// CMOS index and data ports.
const RTC_PORT0: u16 = 0x70;
const RTC_PORT1: u16 = 0x71;
/// PCI configuration mechanism #1.
const PCI_CONF_ADDRESS: u16 = 0xcf8;
const PCI_CONF_DATA: u16 = 0xcfc;
/// DR6 bits that always read as one.
const DR6_DEFAULT: u64 = 0xffff_0ff0;

/// Per-vCPU emulated state (Xen's `v->arch.pv` and `v->arch.msrs` parts).
#[derive(Clone, Copy, Debug)]
pub struct VcpuEmul {
    /// Virtual CR2 (`ctrlreg[2]`): the last #PF address bounced, or what
    /// the guest wrote.
    pub cr2: u64,
    /// Virtual CR4 (`ctrlreg[4]`), as `pv_fixup_guest_cr4` leaves it.
    pub cr4: u64,
    /// Virtual IOPL, 0..=3 (`PHYSDEVOP_set_iopl`).
    pub iopl: u8,
    /// Guest virtual address of the I/O bitmap (`PHYSDEVOP_set_iobitmap`).
    pub iobmp: u64,
    /// Ports the I/O bitmap covers.
    pub iobmp_limit: u32,
    /// The guest's TSC_AUX.
    pub tsc_aux: u32,
    /// The guest's SPEC_CTRL.
    pub spec_ctrl: u64,
    /// The guest turned CPUID faulting on (MISC_FEATURES_ENABLES bit 0).
    pub cpuid_faulting: bool,
}

impl VcpuEmul {
    /// A new vCPU's state (Xen's `pv_vcpu_initialise`): CR4 shows the
    /// hypervisor's visible bits, IOPL 0, no I/O bitmap.
    pub fn new() -> Self {
        Self {
            cr2: 0,
            cr4: instr::read_cr4() & PV_CR4_GUEST_VISIBLE_MASK,
            iopl: 0,
            iobmp: 0,
            iobmp_limit: 0,
            tsc_aux: 0,
            spec_ctrl: 0,
            cpuid_faulting: false,
        }
    }
}

impl Default for VcpuEmul {
    fn default() -> Self {
        Self::new()
    }
}

/// Per-domain emulated state.
pub struct DomainEmul {
    /// The domain's CPUID policy.
    pub cpuid: Box<PvCpuidPolicy>,
    /// I/O ports the domain may access directly (`ioport_caps`).
    pub ioports: IoPorts,
    /// The latched CMOS index (`arch.cmos_idx`).
    pub cmos_idx: u8,
    /// The latched PCI CONFIG_ADDRESS (`arch.pci_cf8`).
    pub pci_cf8: u32,
}

impl DomainEmul {
    /// A new domain's state: the PV CPUID policy; for the hardware domain
    /// every port but those Xen 4.17 keeps (and the ones xen-core drives),
    /// for any other none.
    pub fn new(is_privileged: bool) -> Self {
        let opts = PolicyOptions {
            hardware_domain: is_privileged,
            ..PolicyOptions::default()
        };
        let ioports = if is_privileged {
            IoPorts::hardware_domain(
                PM_TIMER_PORT.get().copied(),
                Some(crate::arch::x86_64::serial::COM1),
                &[(DEBUG_EXIT_PORT, DEBUG_EXIT_PORT)],
            )
            .unwrap_or_else(|_| {
                log::error!("hardware domain I/O ports: too many ranges; granting none");
                IoPorts::none()
            })
        } else {
            IoPorts::none()
        };
        Self {
            cpuid: Box::new(PvCpuidPolicy::from_host(host_cpuid_for_policy, opts)),
            ioports,
            cmos_idx: 0,
            pci_cf8: 0,
        }
    }
}

impl DomainEmul {
    /// The PV policy a domain gets by default (the base levelling is
    /// checked against).
    pub fn default_cpuid(is_privileged: bool) -> PvCpuidPolicy {
        PvCpuidPolicy::from_host(host_cpuid_for_policy, policy_options(is_privileged))
    }

    /// Replaces the domain's policy by the default one levelled by `lv`
    /// (XEN_DOMCTL_set_cpu_policy, before the domain first runs).
    pub fn relevel(&mut self, is_privileged: bool, lv: &xen_core::cpuid_level::Levelling) {
        *self.cpuid = PvCpuidPolicy::from_host_levelled(
            host_cpuid_for_policy,
            policy_options(is_privileged),
            lv,
        );
    }
}

fn policy_options(is_privileged: bool) -> PolicyOptions {
    PolicyOptions {
        hardware_domain: is_privileged,
        ..PolicyOptions::default()
    }
}

/// The host CPUID as the PV policy is computed from: the real leaves,
/// minus what xen-core does not context-switch (XSAVE: it saves guest FPU
/// state with FXSAVE and leaves CR4.OSXSAVE off; FSGSBASE: CR4.FSGSBASE is
/// never set), as Xen's policy on a host where Xen does not use them.
fn host_cpuid_for_policy(leaf: u32, subleaf: u32) -> Leaf {
    let r = instr::cpuid(leaf, subleaf);
    let mut l = [r.eax, r.ebx, r.ecx, r.edx];
    match (leaf, subleaf) {
        (1, _) => l[2] &= !(feat::l1c::XSAVE | feat::l1c::OSXSAVE),
        (7, 0) => l[1] &= !feat::l7b::FSGSBASE,
        _ => {}
    }
    l
}

/// The ACPI PM timer's I/O port (from the FADT), kept from Dom0 as Xen does.
static PM_TIMER_PORT: Once<u16> = Once::new();

/// Records the ACPI PM timer port found at boot (before Dom0 is built).
pub fn set_pm_timer_port(port: u16) {
    PM_TIMER_PORT.call_once(|| port);
}

/// Whether the host has CPUID faulting (Intel's PLATFORM_INFO bit 31, as
/// Xen 4.17's `probe_cpuid_faulting`), probed once.
fn host_cpuid_faulting() -> bool {
    static HAS: Once<bool> = Once::new();
    *HAS.call_once(|| {
        let l0 = instr::cpuid(0, 0);
        let vendor = Vendor::from_leaf0([l0.eax, l0.ebx, l0.ecx, l0.edx]);
        vendor == Vendor::Intel
            && instr::rdmsr_safe(MSR_INTEL_PLATFORM_INFO)
                .is_some_and(|v| v & PLATFORM_INFO_CPUID_FAULTING != 0)
            && instr::rdmsr_safe(MSR_INTEL_MISC_FEATURES_ENABLES).is_some()
    })
}

/// The host has TSC_AUX (RDTSCP or RDPID), probed once.
fn host_has_tsc_aux() -> bool {
    static HAS: Once<bool> = Once::new();
    *HAS.call_once(|| {
        instr::cpuid(0x8000_0001, 0).edx & feat::e1d::RDTSCP != 0
            || instr::cpuid(7, 0).ecx & feat::l7c::RDPID != 0
    })
}

/// The host has SPEC_CTRL (IBRS on Intel or AMD), probed once.
fn host_has_spec_ctrl() -> bool {
    static HAS: Once<bool> = Once::new();
    *HAS.call_once(|| {
        instr::cpuid(7, 0).edx & feat::l7d::IBRSB != 0
            || instr::cpuid(0x8000_0008, 0).ebx & feat::e8b::IBRS != 0
    })
}

/// Loads the real registers that follow a PV vCPU onto this CPU (from the
/// context switch): CR4.TSD from its virtual CR4, TSC_AUX, SPEC_CTRL, and
/// CPUID faulting on (Xen enables it for every PV vCPU when the host has
/// it, so native `cpuid` traps and answers from the domain's policy).
pub fn load_vcpu(v: &Vcpu) {
    set_real_tsd(v.emul.cr4 & CR4_TSD != 0);
    if host_cpuid_faulting() {
        // SAFETY: the MSR exists (probed); CPUID faulting affects only
        // CPL > 0, i.e. guests, never xen-core.
        unsafe {
            instr::wrmsr_safe(
                MSR_INTEL_MISC_FEATURES_ENABLES,
                MISC_FEATURES_CPUID_FAULTING,
            )
        };
    }
    if host_has_tsc_aux() {
        // SAFETY: TSC_AUX only feeds RDTSCP/RDPID; xen-core does not use it.
        unsafe { instr::wrmsr_safe(MSR_TSC_AUX, u64::from(v.emul.tsc_aux)) };
    }
    if host_has_spec_ctrl() {
        // SAFETY: SPEC_CTRL bits only change speculation behaviour; the
        // value was checked against the policy's valid bits.
        unsafe { instr::wrmsr_safe(MSR_SPEC_CTRL, v.emul.spec_ctrl) };
    }
}

fn set_real_tsd(on: bool) {
    let cr4 = instr::read_cr4();
    let want = if on { cr4 | CR4_TSD } else { cr4 & !CR4_TSD };
    if want != cr4 {
        // SAFETY: only TSD changes (rdtsc outside ring 0 faults and is
        // emulated); every other bit is the value just read.
        unsafe { instr::write_cr4(want) };
    }
}

/// What the exception path must do after [`handle`].
#[derive(Clone, Copy, Debug)]
pub enum Action {
    /// Return to the guest with the (updated) frame; if `dr6` is non-zero,
    /// raise #DB with those DR6 bits first.
    Resume {
        /// DR6 bits of a #DB to raise, or 0.
        dr6: u32,
    },
    /// Deliver software interrupt `vector` through the trap table (the
    /// frame's RIP already points past the `int`).
    SoftInt {
        /// The vector.
        vector: u8,
    },
    /// Bounce exception `vector` (the frame's RIP is where it was raised).
    Fault {
        /// The vector.
        vector: u8,
        /// Its error code, if it has one.
        error_code: Option<u32>,
        /// The faulting address of a #PF.
        cr2: Option<u64>,
    },
}

fn regs_of(f: &TrapFrame) -> RegFile {
    RegFile {
        gpr: [
            f.rax, f.rcx, f.rdx, f.rbx, f.rsp, f.rbp, f.rsi, f.rdi, f.r8, f.r9, f.r10, f.r11,
            f.r12, f.r13, f.r14, f.r15,
        ],
        rip: f.rip,
        rflags: f.rflags,
    }
}

fn store_regs(f: &mut TrapFrame, r: &RegFile) {
    let g = &r.gpr;
    f.rax = g[gpr::RAX];
    f.rcx = g[gpr::RCX];
    f.rdx = g[gpr::RDX];
    f.rbx = g[gpr::RBX];
    f.rsp = g[gpr::RSP];
    f.rbp = g[gpr::RBP];
    f.rsi = g[gpr::RSI];
    f.rdi = g[gpr::RDI];
    f.r8 = g[8];
    f.r9 = g[9];
    f.r10 = g[10];
    f.r11 = g[11];
    f.r12 = g[12];
    f.r13 = g[13];
    f.r14 = g[14];
    f.r15 = g[gpr::R15];
    f.rip = r.rip;
    // RFLAGS is never changed by an emulated instruction.
}

/// Emulates the instruction behind a #GP or #UD that vCPU `vi` of `d`
/// raised in guest code; `frame` holds its registers (updated in place).
pub fn handle(frame: &mut TrapFrame, d: &mut Domain, vi: usize) -> Option<Action> {
    let v = d.vcpus.get(vi)?;
    let cr3 = v.current_table();
    let (bytes, n, fetch_fault) =
        x86_emul::fetch_insn(frame.rip, |va, buf| copy_from_guest(cr3, va, buf).is_ok());
    let regs = regs_of(frame);
    let gp = frame.vector == u64::from(x86_emul::vector::GP);
    let mut env = Env { d, vi };
    let effect = if gp {
        x86_emul::handle_gp(
            &bytes[..n],
            fetch_fault,
            &regs,
            frame.error_code as u32,
            &mut env,
        )
    } else {
        x86_emul::handle_ud(&bytes[..n], fetch_fault, &regs, &mut env)
    };
    Some(match effect {
        Effect::Done { regs, dr6 } => {
            store_regs(frame, &regs);
            Action::Resume { dr6 }
        }
        Effect::SoftInt { vector, rip } => {
            frame.rip = rip;
            Action::SoftInt { vector }
        }
        Effect::Fault {
            vector,
            error_code,
            rip,
            cr2,
        } => {
            frame.rip = rip;
            Action::Fault {
                vector,
                error_code,
                cr2,
            }
        }
        Effect::Retry => Action::Resume { dr6: 0 },
    })
}

/// The running vCPU, for the emulator.
pub struct Env<'a> {
    d: &'a mut Domain,
    vi: usize,
}

impl Env<'_> {
    fn v(&self) -> &Vcpu {
        &self.d.vcpus[self.vi]
    }

    fn vm(&mut self) -> &mut Vcpu {
        &mut self.d.vcpus[self.vi]
    }

    /// A direct port access is allowed only on ports the domain owns, and
    /// never on the ports Xen always virtualises (CMOS, CONFIG_ADDRESS as
    /// a dword): a second check behind x86_emul's `admin_io_okay`.
    fn port_ok(&self, port: u16, size: u8) -> bool {
        let (first, end) = (u32::from(port), u32::from(port) + u32::from(size));
        matches!(size, 1 | 2 | 4)
            && end <= 0x1_0000
            && self.d.emul.ioports.permitted(port, (end - 1) as u16)
            && !(first <= u32::from(RTC_PORT1) && end > u32::from(RTC_PORT0))
            && !(port == PCI_CONF_ADDRESS && size == 4)
    }
}

static CMOS_LOCK: Mutex<()> = Mutex::new(());
/// Serialises CONFIG_ADDRESS/CONFIG_DATA pairs (the emulator and `hwirq`).
pub static PCI_LOCK: Mutex<()> = Mutex::new(());

fn raw_in(port: u16, size: u8) -> u32 {
    match size {
        1 => u32::from(instr::inb(port)),
        2 => u32::from(instr::inw(port)),
        _ => instr::inl(port),
    }
}

fn raw_out(port: u16, size: u8, val: u32) {
    match size {
        1 => instr::outb(port, val as u8),
        2 => instr::outw(port, val as u16),
        _ => instr::outl(port, val),
    }
}

impl PrivEnv for Env<'_> {
    fn guest_kernel_mode(&self) -> bool {
        self.v().kernel_mode
    }

    fn vcpu_id(&self) -> u32 {
        self.v().id
    }

    fn cpuid(&self, leaf: u32, subleaf: u32, source: CpuidSource) -> Leaf {
        let v = self.v();
        let hz = crate::time::tsc_hz();
        let (mul, shift) = crate::time::time_scale(hz);
        let khz = (hz / 1000).min(u64::from(u32::MAX)) as u32;
        let ctx = CpuidContext {
            source,
            kernel_mode: v.kernel_mode,
            guest_cr4: v.emul.cr4,
            xen_cr4: instr::read_cr4(),
            time: XenTimeLeaf {
                tsc_khz: khz,
                cpu_khz: khz,
                mul_frac: mul,
                shift,
                ..XenTimeLeaf::default()
            },
            upper_mfn_bound: crate::memory::max_mfn(),
            ..CpuidContext::default()
        };
        self.d.emul.cpuid.guest_cpuid(leaf, subleaf, &ctx)
    }

    fn iopl(&self) -> u8 {
        self.v().emul.iopl
    }

    fn gp_handler_registered(&self) -> bool {
        self.v().trap_table[usize::from(x86_emul::vector::GP)].address != 0
    }

    fn trap_dpl(&self, vector: u8) -> u8 {
        self.v().trap_table[usize::from(vector)].dpl()
    }

    fn host_cr0(&self) -> u64 {
        instr::read_cr0()
    }

    fn guest_ts(&self) -> bool {
        self.v().fpu_ts
    }

    fn fpu_taskswitch(&mut self, ts: bool) {
        crate::hypercall::cpu::do_fpu_taskswitch(self.vm(), ts);
    }

    fn cr2(&self) -> u64 {
        self.v().emul.cr2
    }

    fn set_cr2(&mut self, val: u64) {
        let v = self.vm();
        v.emul.cr2 = val;
        crate::pv::set_vcpu_info_cr2(v, val);
    }

    fn cr3_pfn(&self) -> u64 {
        // A PV domain is not translated: the "gfn" Xen reports is the MFN.
        self.v().guest_table >> 12
    }

    fn new_guest_cr3(&mut self, pfn: u64) -> Cr3Result {
        // Xen's write_cr(3) → new_guest_cr3: a PV domain is not
        // translated, so the frame is a machine frame; it must be an L4 of
        // the domain (validated now if need be). Only the guest kernel
        // writes CR3 (x86_emul checked), so the kernel table is live: load
        // it, flushing the TLB even when it is the same table.
        let old = Mfn(self.v().guest_table >> 12);
        let new = Mfn(pfn);
        let r = crate::pv_mm::with_pt(self.d.domid, |ctx, ft, mem| {
            ptval::new_baseptr(ctx, ft, mem, Some(old), Some(new))
        });
        match r {
            Ok(()) => {
                let v = self.vm();
                v.guest_table = new.maddr();
                crate::pv_mm::load_cr3(v.current_table());
                Cr3Result::Ok
            }
            Err(e) => {
                log::debug!("d{}: mov to cr3 {new:?}: {e}", self.d.domid);
                Cr3Result::Invalid
            }
        }
    }

    fn cr4(&self) -> u64 {
        self.v().emul.cr4
    }

    fn xen_cr4(&self) -> u64 {
        instr::read_cr4()
    }

    fn set_cr4(&mut self, val: u64) {
        self.vm().emul.cr4 = val;
        set_real_tsd(val & CR4_TSD != 0);
    }

    fn set_xcr0(&mut self, _val: u64) -> bool {
        // The policy offers no XSAVE (see `host_cpuid_for_policy`).
        false
    }

    fn debugreg(&self, n: u8) -> u64 {
        let fallback = if n == 6 { DR6_DEFAULT } else { 0 };
        crate::hypercall::cpu::do_get_debugreg(self.v(), u64::from(n)).unwrap_or(fallback)
    }

    fn set_debugreg(&mut self, n: u8, val: u64) -> Result<(), DrFault> {
        crate::hypercall::cpu::do_set_debugreg(self.vm(), u64::from(n), val)
            .map_err(|_| DrFault::Gp)
    }

    fn seg_base(&self, reg: BaseReg) -> u64 {
        let v = self.v();
        match reg {
            BaseReg::Fs => instr::rdmsr(msr::FS_BASE),
            BaseReg::GsKernel if v.kernel_mode => instr::rdmsr(msr::GS_BASE),
            BaseReg::GsKernel => v.gs_base_kernel,
            BaseReg::GsUser if !v.kernel_mode => instr::rdmsr(msr::GS_BASE),
            BaseReg::GsUser => v.gs_base_user,
        }
    }

    fn set_seg_base(&mut self, reg: BaseReg, val: u64) {
        // x86_emul checked `val` is canonical.
        if !x86_emul::is_canonical(val) {
            return;
        }
        let v = self.vm();
        let active = match reg {
            BaseReg::Fs => {
                v.fs_base = val;
                Some(msr::FS_BASE)
            }
            BaseReg::GsKernel => {
                v.gs_base_kernel = val;
                v.kernel_mode.then_some(msr::GS_BASE)
            }
            BaseReg::GsUser => {
                v.gs_base_user = val;
                (!v.kernel_mode).then_some(msr::GS_BASE)
            }
        };
        if let Some(m) = active {
            // SAFETY: FS_BASE and GS_BASE are the guest's while it runs
            // (xen-core's per-CPU pointer is in KERNEL_GS_BASE); canonical.
            unsafe { instr::wrmsr(m, val) };
        }
    }

    fn host_efer(&self) -> u64 {
        // SVME is the hypervisor's (set once a CPU ran an HVM vCPU).
        instr::rdmsr(msr::EFER) & !xen_core::svm::msr::EFER_SVME
    }

    fn guest_tsc(&mut self) -> u64 {
        instr::rdtsc()
    }

    fn tsc_aux(&self) -> u32 {
        self.v().emul.tsc_aux
    }

    fn set_tsc_aux(&mut self, val: u32) {
        self.vm().emul.tsc_aux = val;
        // SAFETY: as in `load_vcpu`.
        unsafe { instr::wrmsr_safe(MSR_TSC_AUX, u64::from(val)) };
    }

    fn spec_ctrl(&self) -> u64 {
        self.v().emul.spec_ctrl
    }

    fn set_spec_ctrl(&mut self, val: u64) {
        self.vm().emul.spec_ctrl = val;
        // SAFETY: as in `load_vcpu` (x86_emul checked the valid bits).
        unsafe { instr::wrmsr_safe(MSR_SPEC_CTRL, val) };
    }

    fn host_wrmsr_cmd(&mut self, msr: u32, val: u64) {
        if matches!(msr, MSR_PRED_CMD | MSR_FLUSH_CMD) {
            // SAFETY: command MSRs (barrier / L1D flush) with a value
            // x86_emul restricted to the defined command bit; no state.
            unsafe { instr::wrmsr_safe(msr, val) };
        }
    }

    fn host_rdmsr(&self, msr: u32) -> Option<u64> {
        instr::rdmsr_safe(msr)
    }

    fn cpuid_faulting_available(&self) -> bool {
        host_cpuid_faulting()
    }

    fn cpuid_faulting(&self) -> bool {
        self.v().emul.cpuid_faulting
    }

    fn set_cpuid_faulting(&mut self, on: bool) {
        self.vm().emul.cpuid_faulting = on;
    }

    fn write_hypercall_page(&mut self, gfn: u64) -> HypercallPageResult {
        // PV: the "gfn" is a machine frame the domain must own and be able
        // to map writable (not a page table or descriptor page).
        let mfn = Mfn(gfn);
        let owner = Owner::Domain(DomId(self.d.domid));
        let mut ft = FRAME_TABLE.lock();
        let Some(ft) = ft.as_mut() else {
            return HypercallPageResult::Invalid;
        };
        match ft.get_page_and_type(mfn, owner, PageType::Writable) {
            Ok(TypeGet::Validated) => {}
            Ok(TypeGet::NeedsValidation) => {
                let _ = ft.put_page_and_type(mfn);
                return HypercallPageResult::Invalid;
            }
            Err(_) => return HypercallPageResult::Invalid,
        }
        // SAFETY: the domain owns the frame and we hold a writable type
        // reference, so it is RAM in the direct map that is no page table.
        let page = unsafe { &mut *(phys_to_virt(mfn.maddr()) as *mut [u8; 4096]) };
        hypercall_abi::hypercall::fill_hypercall_page(page);
        crate::log_dirty::mark_pv_frames(ft, &[mfn]);
        let _ = ft.put_page_and_type(mfn);
        HypercallPageResult::Ok
    }

    fn iobmp_limit(&self) -> u32 {
        self.v().emul.iobmp_limit
    }

    fn read_iobmp(&mut self, offset: u32) -> Result<u16, u64> {
        // Xen reads the two bytes with the guest kernel's page tables;
        // bytes it cannot read count as 0xff (no access).
        let v = self.v();
        let base = v.emul.iobmp.wrapping_add(u64::from(offset));
        let mut b = [0xffu8; 2];
        for (i, byte) in b.iter_mut().enumerate() {
            let mut one = [0u8; 1];
            if copy_from_guest(v.guest_table, base.wrapping_add(i as u64), &mut one).is_ok() {
                *byte = one[0];
            } else {
                break;
            }
        }
        Ok(u16::from_le_bytes(b))
    }

    fn ioports_permitted(&self, first: u16, last: u16) -> bool {
        self.d.emul.ioports.permitted(first, last)
    }

    fn port_in(&mut self, port: u16, size: u8) -> u32 {
        if !self.port_ok(port, size) {
            return !0;
        }
        raw_in(port, size)
    }

    fn port_out(&mut self, port: u16, size: u8, val: u32) {
        if self.port_ok(port, size) {
            raw_out(port, size, val);
        }
    }

    fn virt_io_read(&mut self, dev: VirtIo) -> u32 {
        match dev {
            VirtIo::Cmos(RTC_PORT0) => u32::from(self.d.emul.cmos_idx),
            VirtIo::Cmos(_) => {
                if !self.d.emul.ioports.permitted(RTC_PORT0, RTC_PORT1) {
                    return !0;
                }
                let _g = CMOS_LOCK.lock();
                instr::outb(RTC_PORT0, self.d.emul.cmos_idx & 0x7f);
                u32::from(instr::inb(RTC_PORT1))
            }
            VirtIo::PciCf8 => self.d.emul.pci_cf8,
            VirtIo::PciCfgData { offset, size } => {
                if !self.d.is_privileged || !matches!(size, 1 | 2 | 4) {
                    return !0;
                }
                let _g = PCI_LOCK.lock();
                instr::outl(PCI_CONF_ADDRESS, self.d.emul.pci_cf8);
                raw_in(PCI_CONF_DATA + u16::from(offset & 3), size)
            }
            // PIT channel 2 and port 0x61 are not modelled (see the
            // deviations): nothing answers.
            VirtIo::Pit(_) => !0,
        }
    }

    fn virt_io_write(&mut self, dev: VirtIo, val: u32) {
        match dev {
            VirtIo::Cmos(RTC_PORT0) => self.d.emul.cmos_idx = val as u8,
            VirtIo::Cmos(_) => {
                if !self.d.emul.ioports.permitted(RTC_PORT0, RTC_PORT1) {
                    return;
                }
                let _g = CMOS_LOCK.lock();
                instr::outb(RTC_PORT0, self.d.emul.cmos_idx & 0x7f);
                instr::outb(RTC_PORT1, val as u8);
            }
            VirtIo::PciCf8 => self.d.emul.pci_cf8 = val,
            VirtIo::PciCfgData { offset, size } => {
                if !self.d.is_privileged || !matches!(size, 1 | 2 | 4) {
                    return;
                }
                let _g = PCI_LOCK.lock();
                instr::outl(PCI_CONF_ADDRESS, self.d.emul.pci_cf8);
                raw_out(PCI_CONF_DATA + u16::from(offset & 3), size, val);
            }
            VirtIo::Pit(_) => {}
        }
    }

    fn cache_flush_permitted(&self) -> bool {
        // Xen's `cache_flush_permitted`: the domain has I/O memory or
        // ports (Oxen grants neither to anyone but the hardware domain).
        !self.d.emul.ioports.ranges().is_empty()
    }

    fn wbinvd(&mut self) {
        // SAFETY: write back and invalidate caches: no memory effects
        // visible to Rust.
        unsafe { core::arch::asm!("wbinvd", options(nostack, preserves_flags)) };
    }
}
