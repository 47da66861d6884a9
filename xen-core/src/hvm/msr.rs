//! The MSR allow-list of an HVM guest: which MSRs an intercepted
//! RDMSR/WRMSR may touch and what each access means.
//!
//! **Owns**: the decision for every intercepted MSR access ([`rdmsr`],
//! [`wrmsr`]), the validity checks Xen 4.17 applies to written values
//! (`hvm_efer_valid`/`hvm_set_efer`, `pat_msr_valid`, `mtrr_*_msr_set`,
//! canonical addresses), and the per-vCPU MTRR registers ([`MsrState`]).
//! Everything not listed here is #GP, as the issue asks (Xen emulates more,
//! e.g. MCE banks and the SPEC_CTRL family; [`super::cpuid`] hides the
//! features that would promise them).
//!
//! **Trusts**: nothing from the guest: the MSR index and value are arbitrary,
//! and no value reaches hardware state unchecked. The caller carries out the
//! returned [`MsrAction`] (VMCB/VMCS fields, the TSC offset, the vLAPIC, the
//! hypercall page) and fills [`MsrPolicy`] from the domain's CPUID policy and
//! [`GuestMsrCtx`] from the vCPU.
//!
//! | MSR | read | write |
//! |---|---|---|
//! | TSC `0x10` | [`MsrAction::ReadTsc`] | [`MsrAction::WriteTsc`] |
//! | APIC_BASE `0x1b`, TSC_DEADLINE `0x6e0`, x2APIC `0x800..=0x8ff` | [`MsrAction::Vlapic`] | same |
//! | UCODE_REV / PATCHLEVEL `0x8b` | microcode revision | Intel: ignored; AMD: #GP |
//! | MTRRcap `0xfe` | VCNT 8, FIX, WC | #GP |
//! | SYSENTER_CS/ESP/EIP `0x174..=0x176` | guest state | guest state (ESP/EIP canonical) |
//! | MISC_ENABLE `0x1a0` (Intel) | host value, Xen's mask | same value ignored, else #GP |
//! | MTRR var `0x200..=0x20f`, fixed, DEF_TYPE `0x2ff` | [`MsrState`] | checked, stored |
//! | PAT `0x277` | guest state | checked (each byte 0,1,4..7) |
//! | Xen hypercall page `0x40000000` | 0 | [`MsrAction::InstallHypercallPage`] (page index 0 only) |
//! | EFER `0xc0000080` | guest EFER | checked: [`MsrAction::SetEfer`] |
//! | STAR, LSTAR, CSTAR, SFMASK, FS/GS/KERNEL_GS_BASE | guest state (VMLOAD/VMSAVE on SVM) | canonical / SFMASK high half zero |
//! | TSC_AUX `0xc0000103` (with RDTSCP/RDPID) | guest state | 32-bit values |
//! | anything else | #GP | #GP |

use crate::guest_walk::is_canonical;
use crate::hvm::vlapic::{MSR_APIC_BASE, MSR_TSC_DEADLINE, MSR_X2APIC_FIRST, MSR_X2APIC_LAST};
use crate::x86_emul::{
    MSR_AMD_PATCHLEVEL, MSR_EFER, MSR_FS_BASE, MSR_GS_BASE, MSR_IA32_CR_PAT, MSR_IA32_MISC_ENABLE,
    MSR_IA32_TSC, MSR_SHADOW_GS_BASE, MSR_TSC_AUX, XEN_MSR_BASE,
};

/// IA32_MTRRCAP (SDM vol 3A §12.11.1).
pub const MSR_MTRR_CAP: u32 = 0xfe;
/// IA32_SYSENTER_CS.
pub const MSR_SYSENTER_CS: u32 = 0x174;
/// IA32_SYSENTER_ESP.
pub const MSR_SYSENTER_ESP: u32 = 0x175;
/// IA32_SYSENTER_EIP.
pub const MSR_SYSENTER_EIP: u32 = 0x176;
/// IA32_MTRR_PHYSBASE0; PHYSMASKn is `0x201 + 2n`.
pub const MSR_MTRR_PHYS_BASE0: u32 = 0x200;
/// IA32_MTRR_DEF_TYPE.
pub const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
/// The fixed-range MTRRs in Xen's order (SDM §12.11.2.2).
pub const MSR_MTRR_FIXED: [u32; NUM_FIXED] = [
    0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f,
];
/// STAR (AMD APM vol 2 §6.1.1).
pub const MSR_STAR: u32 = 0xc000_0081;
/// LSTAR.
pub const MSR_LSTAR: u32 = 0xc000_0082;
/// CSTAR.
pub const MSR_CSTAR: u32 = 0xc000_0083;
/// SFMASK (bits 63:32 reserved).
pub const MSR_SFMASK: u32 = 0xc000_0084;

/// Variable-range MTRR pairs offered (Xen's `MTRR_VCNT`).
pub const NUM_VAR: usize = 8;
/// Fixed-range MTRRs.
pub const NUM_FIXED: usize = 11;
/// MTRRcap as Xen reports it: WC (bit 10), FIX (bit 8), VCNT 8.
pub const MTRR_CAP_VALUE: u64 = (1 << 10) | (1 << 8) | NUM_VAR as u64;
/// MTRR_DEF_TYPE.E (bit 11) and .FE (bit 10).
const DEF_TYPE_E: u64 = 1 << 11;
const DEF_TYPE_FE: u64 = 1 << 10;
/// Memory type write-back.
const MT_WB: u64 = 6;
/// The reset PAT (SDM §13.12.4): WB, WT, UC-, UC, repeated.
pub const PAT_RESET: u64 = 0x0007_0406_0007_0406;

// EFER bits (AMD APM vol 2 §3.1.7).
/// EFER.SCE.
pub const EFER_SCE: u64 = 1 << 0;
/// EFER.LME.
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA.
pub const EFER_LMA: u64 = 1 << 10;
/// EFER.NXE.
pub const EFER_NXE: u64 = 1 << 11;
/// EFER.SVME (never for a guest: nested virtualisation is not offered).
pub const EFER_SVME: u64 = 1 << 12;
/// EFER.FFXSR.
pub const EFER_FFXSE: u64 = 1 << 14;
/// EFER.TCE.
pub const EFER_TCE: u64 = 1 << 15;

// MISC_ENABLE bits Xen's guest_misc_enable adjusts (SDM vol 4 table 2-2).
const MISC_ENABLE_PERF_AVAIL: u64 = 1 << 7;
const MISC_ENABLE_BTS_UNAVAIL: u64 = 1 << 11;
const MISC_ENABLE_PEBS_UNAVAIL: u64 = 1 << 12;
const MISC_ENABLE_MONITOR_ENABLE: u64 = 1 << 18;
const MISC_ENABLE_XTPR_DISABLE: u64 = 1 << 23;

/// A register kept in the VMCB save area / VMCS guest-state area (on SVM,
/// the STAR family, KERNEL_GS_BASE and SYSENTER_* are VMLOAD/VMSAVE state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestReg {
    /// IA32_SYSENTER_CS.
    SysenterCs,
    /// IA32_SYSENTER_ESP.
    SysenterEsp,
    /// IA32_SYSENTER_EIP.
    SysenterEip,
    /// IA32_PAT (`G_PAT` under NPT, `GUEST_IA32_PAT` under EPT).
    Pat,
    /// STAR.
    Star,
    /// LSTAR.
    Lstar,
    /// CSTAR (not used by Intel hardware; kept for the guest).
    Cstar,
    /// SFMASK.
    Sfmask,
    /// FS.base.
    FsBase,
    /// GS.base.
    GsBase,
    /// KERNEL_GS_BASE (SWAPGS shadow).
    KernelGsBase,
    /// IA32_TSC_AUX.
    TscAux,
}

/// What the exit handler does for one RDMSR/WRMSR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsrAction {
    /// RDMSR: return this value in EDX:EAX.
    Value(u64),
    /// WRMSR done (stored in [`MsrState`], or a write Xen ignores).
    Done,
    /// RDMSR: return the guest-state register.
    ReadReg(GuestReg),
    /// WRMSR: store this (checked) value in the guest-state register.
    WriteReg(GuestReg, u64),
    /// WRMSR EFER: the new guest EFER (LMA kept from the current value, as
    /// the hardware owns it). On SVM the glue adds SVME in the VMCB copy.
    SetEfer(u64),
    /// RDMSR TSC: host TSC plus the vCPU's offset.
    ReadTsc,
    /// WRMSR TSC: set the offset so the guest TSC reads this value now.
    WriteTsc(u64),
    /// The vLAPIC handles it (its own #GP rules apply).
    Vlapic,
    /// WRMSR of Xen's hypercall MSR: write the hypercall page into guest
    /// frame `gfn`; #GP if the frame is not ordinary writable RAM of the guest.
    InstallHypercallPage {
        /// Guest frame to fill.
        gfn: u64,
    },
    /// Inject #GP(0).
    Gp,
}

/// Domain-wide facts the decisions depend on (from the CPUID policy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsrPolicy {
    /// Intel-like vendor (MISC_ENABLE exists; UCODE_REV writes are allowed).
    pub intel: bool,
    /// Long mode offered (EFER.LME/LMA).
    pub lm: bool,
    /// SYSCALL offered (EFER.SCE).
    pub syscall: bool,
    /// NX offered (EFER.NXE).
    pub nx: bool,
    /// FFXSR offered (EFER.FFXSE).
    pub ffxsr: bool,
    /// TCE offered (EFER.TCE).
    pub tce: bool,
    /// RDTSCP or RDPID offered (TSC_AUX exists).
    pub tsc_aux: bool,
    /// Guest physical address width (CPUID 0x80000008 EAX[7:0]), for MTRR
    /// reserved bits; values outside 36..=52 are treated as 36.
    pub phys_addr_bits: u32,
    /// The host's IA32_MISC_ENABLE (Xen shows its own, adjusted).
    pub host_misc_enable: u64,
    /// Microcode revision to report in MSR 0x8b.
    pub ucode_rev: u64,
}

impl MsrPolicy {
    /// The policy matching a domain's CPUID view, plus the two host values
    /// Xen shows (IA32_MISC_ENABLE, the microcode revision).
    pub fn from_cpuid(
        cpuid: &super::cpuid::HvmCpuidPolicy,
        host_misc_enable: u64,
        ucode_rev: u64,
    ) -> Self {
        const E1: u32 = 0x8000_0001;
        Self {
            intel: !cpuid.vendor().is_amd_like(),
            lm: cpuid.has(E1, 3, 29),
            syscall: cpuid.has(E1, 3, 11),
            nx: cpuid.has(E1, 3, 20),
            ffxsr: cpuid.vendor().is_amd_like() && cpuid.has(E1, 3, 25),
            tce: cpuid.has(E1, 2, 17),
            tsc_aux: cpuid.has(E1, 3, 27) || cpuid.has(7, 2, 22),
            phys_addr_bits: cpuid.phys_addr_bits(),
            host_misc_enable,
            ucode_rev,
        }
    }
}

/// What the vCPU is doing, for EFER checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestMsrCtx {
    /// The guest's current EFER (without the hypervisor's SVME).
    pub efer: u64,
    /// Guest CR0.PG.
    pub paging: bool,
}

/// The per-vCPU MSRs kept here: the MTRRs (Xen's `struct mtrr_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsrState {
    /// MTRR_DEF_TYPE.
    pub def_type: u64,
    /// Fixed-range MTRRs, in [`MSR_MTRR_FIXED`] order.
    pub fixed: [u64; NUM_FIXED],
    /// Variable-range MTRRs: `[base, mask]` pairs.
    pub var: [[u64; 2]; NUM_VAR],
}

/// Bytes of Xen's `struct hvm_hw_mtrr` (save record `MTRR`, one per
/// vCPU): PAT, the 8 variable pairs, the 11 fixed ranges, MTRRcap,
/// MTRR_DEF_TYPE.
pub const MTRR_SAVE_LEN: usize = 8 + 16 * 8 + NUM_FIXED * 8 + 8 + 8;

impl MsrState {
    /// Xen's `struct hvm_hw_mtrr`, with the vCPU's PAT `pat`.
    pub fn save(&self, pat: u64) -> [u8; MTRR_SAVE_LEN] {
        let mut words = [0u64; MTRR_SAVE_LEN / 8];
        words[0] = pat;
        for (i, [base, mask]) in self.var.iter().enumerate() {
            words[1 + 2 * i] = *base;
            words[2 + 2 * i] = *mask;
        }
        words[17..17 + NUM_FIXED].copy_from_slice(&self.fixed);
        words[17 + NUM_FIXED] = MTRR_CAP_VALUE;
        words[18 + NUM_FIXED] = self.def_type;
        let mut b = [0u8; MTRR_SAVE_LEN];
        for (chunk, w) in b.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// A saved `struct hvm_hw_mtrr`, checked as the MSR writes would be
    /// (memory types, reserved bits, addresses within `phys_bits`): the
    /// MTRRs and the PAT, or `None`.
    pub fn load(b: &[u8; MTRR_SAVE_LEN], phys_bits: u32) -> Option<(MsrState, u64)> {
        let w = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[8 * i..8 * i + 8]);
            u64::from_le_bytes(x)
        };
        let pat = w(0);
        let above = !((1u64 << phys_bits.clamp(36, 52)) - 1);
        let mut s = MsrState::default();
        for i in 0..NUM_VAR {
            let (base, mask) = (w(1 + 2 * i), w(2 + 2 * i));
            let base_ok = mtrr_type_valid(base & 0xff) && base & 0xf00 == 0 && base & above == 0;
            let mask_ok = mask & 0x7ff == 0 && mask & above == 0;
            if !(base_ok && mask_ok) {
                return None;
            }
            s.var[i] = [base, mask];
        }
        for i in 0..NUM_FIXED {
            let v = w(17 + i);
            if !fixed_valid(v) {
                return None;
            }
            s.fixed[i] = v;
        }
        let def = w(18 + NUM_FIXED);
        if def & !(DEF_TYPE_E | DEF_TYPE_FE | 0xff) != 0 || !mtrr_type_valid(def & 0xff) {
            return None;
        }
        s.def_type = def;
        pat_valid(pat).then_some((s, pat))
    }
}

impl Default for MsrState {
    /// Enabled, default type WB, no fixed or variable ranges: what firmware
    /// leaves for a guest whose RAM is all WB. DEVIATION: Xen starts at 0
    /// and leaves programming to hvmloader/the toolstack; Oxen boots kernels
    /// directly, without firmware to do it.
    fn default() -> Self {
        Self {
            def_type: DEF_TYPE_E | MT_WB,
            fixed: [0; NUM_FIXED],
            var: [[0; 2]; NUM_VAR],
        }
    }
}

/// Valid MTRR/PAT memory types: UC 0, WC 1, WT 4, WP 5, WB 6 (SDM table 12-8).
fn mtrr_type_valid(t: u64) -> bool {
    matches!(t, 0 | 1 | 4 | 5 | 6)
}

/// Every byte a valid PAT type: the MTRR types plus UC- 7 (Xen's `pat_msr_valid`).
fn pat_valid(v: u64) -> bool {
    v.to_le_bytes().iter().all(|&b| matches!(b, 0 | 1 | 4..=7))
}

/// Every byte a valid MTRR type (fixed-range registers).
fn fixed_valid(v: u64) -> bool {
    v.to_le_bytes()
        .iter()
        .all(|&b| mtrr_type_valid(u64::from(b)))
}

fn phys_bits(p: &MsrPolicy) -> u32 {
    if (36..=52).contains(&p.phys_addr_bits) {
        p.phys_addr_bits
    } else {
        36
    }
}

/// Xen's `guest_misc_enable`: no perfmon/MONITOR, BTS/PEBS unavailable, xTPR off.
fn guest_misc_enable(host: u64) -> u64 {
    (host & !(MISC_ENABLE_PERF_AVAIL | MISC_ENABLE_MONITOR_ENABLE))
        | MISC_ENABLE_BTS_UNAVAIL
        | MISC_ENABLE_PEBS_UNAVAIL
        | MISC_ENABLE_XTPR_DISABLE
}

fn fixed_index(msr: u32) -> Option<usize> {
    MSR_MTRR_FIXED.iter().position(|&m| m == msr)
}

fn var_index(msr: u32) -> Option<(usize, usize)> {
    let off = msr.checked_sub(MSR_MTRR_PHYS_BASE0)? as usize;
    (off < 2 * NUM_VAR).then_some((off / 2, off % 2))
}

fn guest_reg(msr: u32, p: &MsrPolicy) -> Option<GuestReg> {
    Some(match msr {
        MSR_SYSENTER_CS => GuestReg::SysenterCs,
        MSR_SYSENTER_ESP => GuestReg::SysenterEsp,
        MSR_SYSENTER_EIP => GuestReg::SysenterEip,
        MSR_IA32_CR_PAT => GuestReg::Pat,
        MSR_STAR => GuestReg::Star,
        MSR_LSTAR => GuestReg::Lstar,
        MSR_CSTAR => GuestReg::Cstar,
        MSR_SFMASK => GuestReg::Sfmask,
        MSR_FS_BASE => GuestReg::FsBase,
        MSR_GS_BASE => GuestReg::GsBase,
        MSR_SHADOW_GS_BASE => GuestReg::KernelGsBase,
        MSR_TSC_AUX if p.tsc_aux => GuestReg::TscAux,
        _ => return None,
    })
}

fn is_vlapic(msr: u32) -> bool {
    msr == MSR_APIC_BASE
        || msr == MSR_TSC_DEADLINE
        || (MSR_X2APIC_FIRST..=MSR_X2APIC_LAST).contains(&msr)
}

/// The decision for `rdmsr(msr)`.
pub fn rdmsr(msr: u32, state: &MsrState, p: &MsrPolicy, ctx: &GuestMsrCtx) -> MsrAction {
    if is_vlapic(msr) {
        return MsrAction::Vlapic;
    }
    if let Some(r) = guest_reg(msr, p) {
        return MsrAction::ReadReg(r);
    }
    if let Some(i) = fixed_index(msr) {
        return MsrAction::Value(state.fixed[i]);
    }
    if let Some((i, half)) = var_index(msr) {
        return MsrAction::Value(state.var[i][half]);
    }
    match msr {
        MSR_IA32_TSC => MsrAction::ReadTsc,
        MSR_AMD_PATCHLEVEL => MsrAction::Value(p.ucode_rev),
        MSR_MTRR_CAP => MsrAction::Value(MTRR_CAP_VALUE),
        MSR_MTRR_DEF_TYPE => MsrAction::Value(state.def_type),
        MSR_IA32_MISC_ENABLE if p.intel => MsrAction::Value(guest_misc_enable(p.host_misc_enable)),
        // guest_rdmsr_xen: the hypercall-page MSR reads as zero.
        XEN_MSR_BASE => MsrAction::Value(0),
        MSR_EFER => MsrAction::Value(ctx.efer),
        _ => MsrAction::Gp,
    }
}

/// The decision for `wrmsr(msr, value)`; MTRR writes update `state`.
pub fn wrmsr(
    msr: u32,
    value: u64,
    state: &mut MsrState,
    p: &MsrPolicy,
    ctx: &GuestMsrCtx,
) -> MsrAction {
    if is_vlapic(msr) {
        return MsrAction::Vlapic;
    }
    if let Some(r) = guest_reg(msr, p) {
        let ok = match r {
            GuestReg::SysenterCs | GuestReg::Star => true,
            GuestReg::Pat => pat_valid(value),
            GuestReg::Sfmask | GuestReg::TscAux => value >> 32 == 0,
            GuestReg::SysenterEsp
            | GuestReg::SysenterEip
            | GuestReg::Lstar
            | GuestReg::Cstar
            | GuestReg::FsBase
            | GuestReg::GsBase
            | GuestReg::KernelGsBase => is_canonical(value),
        };
        return if ok {
            MsrAction::WriteReg(r, value)
        } else {
            MsrAction::Gp
        };
    }
    if let Some(i) = fixed_index(msr) {
        if !fixed_valid(value) {
            return MsrAction::Gp;
        }
        state.fixed[i] = value;
        return MsrAction::Done;
    }
    if let Some((i, half)) = var_index(msr) {
        // Xen's mtrr_var_range_msr_set: bits at or above MAXPHYADDR, and
        // base bits 11:8 / mask bits 10:0, are reserved; base type valid.
        let reserved = !((1u64 << phys_bits(p)) - 1) | if half == 1 { 0x7ff } else { 0xf00 };
        if value & reserved != 0 || (half == 0 && !mtrr_type_valid(value & 0xff)) {
            return MsrAction::Gp;
        }
        state.var[i][half] = value;
        return MsrAction::Done;
    }
    match msr {
        MSR_IA32_TSC => MsrAction::WriteTsc(value),
        // Xen: Intel's "write 0 then CPUID" revision probe is harmless; AMD
        // PATCHLEVEL is read-only.
        MSR_AMD_PATCHLEVEL if p.intel => MsrAction::Done,
        MSR_MTRR_DEF_TYPE => {
            if value & !(DEF_TYPE_E | DEF_TYPE_FE | 0xff) != 0 || !mtrr_type_valid(value & 0xff) {
                return MsrAction::Gp;
            }
            state.def_type = value;
            MsrAction::Done
        }
        MSR_IA32_MISC_ENABLE if p.intel => {
            if value == guest_misc_enable(p.host_misc_enable) {
                MsrAction::Done
            } else {
                MsrAction::Gp
            }
        }
        XEN_MSR_BASE => {
            // guest_wrmsr_xen: low 12 bits are the page index; one page only.
            if value & 0xfff != 0 {
                return MsrAction::Gp;
            }
            MsrAction::InstallHypercallPage { gfn: value >> 12 }
        }
        MSR_EFER => efer_write(value, p, ctx),
        _ => MsrAction::Gp,
    }
}

/// Xen's `hvm_efer_valid` + `hvm_set_efer` for a WRMSR.
fn efer_write(value: u64, p: &MsrPolicy, ctx: &GuestMsrCtx) -> MsrAction {
    let mut allowed = 0;
    if p.syscall {
        allowed |= EFER_SCE;
    }
    if p.lm {
        allowed |= EFER_LME | EFER_LMA;
    }
    if p.nx {
        allowed |= EFER_NXE;
    }
    if p.ffxsr {
        allowed |= EFER_FFXSE;
    }
    if p.tce {
        allowed |= EFER_TCE;
    }
    if value & !allowed != 0 {
        return MsrAction::Gp; // reserved, or a feature not offered (SVME, LMSLE)
    }
    if value & EFER_LMA != 0 && value & EFER_LME == 0 {
        return MsrAction::Gp;
    }
    if (value ^ ctx.efer) & EFER_LME != 0 && ctx.paging {
        return MsrAction::Gp; // LME may not change while paging is on
    }
    MsrAction::SetEfer((value & !EFER_LMA) | (ctx.efer & EFER_LMA))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pol() -> MsrPolicy {
        MsrPolicy {
            intel: true,
            lm: true,
            syscall: true,
            nx: true,
            ffxsr: false,
            tce: false,
            tsc_aux: true,
            phys_addr_bits: 40,
            host_misc_enable: 0x0085_0089,
            ucode_rev: 0x1234_0000_0000,
        }
    }

    fn rd(msr: u32) -> MsrAction {
        rdmsr(msr, &MsrState::default(), &pol(), &GuestMsrCtx::default())
    }

    fn wr(msr: u32, v: u64) -> MsrAction {
        wrmsr(
            msr,
            v,
            &mut MsrState::default(),
            &pol(),
            &GuestMsrCtx::default(),
        )
    }

    #[test]
    fn mtrr_records_round_trip_and_bad_ones_are_refused() {
        let mut m = MsrState::default();
        m.var[0] = [0x8000_0000, 0xf_c000_0800]; // 2 GiB, UC, valid
        m.fixed[0] = 0x0606_0606_0606_0606;
        m.def_type = DEF_TYPE_E | DEF_TYPE_FE | MT_WB;
        let b = m.save(PAT_RESET);
        assert_eq!(
            &b[MTRR_SAVE_LEN - 16..MTRR_SAVE_LEN - 8],
            &MTRR_CAP_VALUE.to_le_bytes()
        );
        let (n, pat) = MsrState::load(&b, 36).unwrap();
        assert_eq!(
            (n.var, n.fixed, n.def_type, pat),
            (m.var, m.fixed, m.def_type, PAT_RESET)
        );
        // A type 2 (reserved) in a fixed range, a PAT byte 3, reserved
        // mask bits, a base past the physical address width.
        for (at, v) in [(8 * 17, 2u64), (0, 3), (8 * 2, 0xf_c000_0801), (8, 1 << 40)] {
            let mut bad = b;
            bad[at..at + 8].copy_from_slice(&v.to_le_bytes());
            assert!(MsrState::load(&bad, 36).is_none(), "word at {at} = {v:#x}");
        }
    }

    #[test]
    fn hvm_msr_guest_state_registers() {
        use GuestReg::*;
        for (msr, reg) in [
            (0x174, SysenterCs),
            (0x175, SysenterEsp),
            (0x176, SysenterEip),
            (0x277, Pat),
            (0xc000_0081, Star),
            (0xc000_0082, Lstar),
            (0xc000_0083, Cstar),
            (0xc000_0084, Sfmask),
            (0xc000_0100, FsBase),
            (0xc000_0101, GsBase),
            (0xc000_0102, KernelGsBase),
            (0xc000_0103, TscAux),
        ] {
            assert_eq!(rd(msr), MsrAction::ReadReg(reg), "{msr:#x}");
            let ok = if reg == Pat { PAT_RESET } else { 0x10 };
            assert_eq!(wr(msr, ok), MsrAction::WriteReg(reg, ok), "{msr:#x}");
        }
        let noncanon = 0x0000_8000_0000_0000;
        for msr in [
            0x175,
            0x176,
            0xc000_0082,
            0xc000_0083,
            0xc000_0100,
            0xc000_0101,
            0xc000_0102,
        ] {
            assert_eq!(wr(msr, noncanon), MsrAction::Gp, "{msr:#x}");
            assert_eq!(
                wr(msr, 0xffff_8000_0000_0000),
                MsrAction::WriteReg(guest_reg(msr, &pol()).unwrap(), 0xffff_8000_0000_0000)
            );
        }
        assert_eq!(
            wr(0xc000_0081, u64::MAX),
            MsrAction::WriteReg(Star, u64::MAX)
        );
        assert_eq!(wr(0xc000_0084, 1 << 32), MsrAction::Gp);
        assert_eq!(wr(0xc000_0103, 1 << 32), MsrAction::Gp);
        // PAT: 2 and 3 are reserved types, 8+ too.
        assert_eq!(wr(0x277, 0x0007_0406_0007_0402), MsrAction::Gp);
        assert_eq!(wr(0x277, 0x0007_0406_0007_0408), MsrAction::Gp);
        assert_eq!(
            wr(0x277, 0x0707_0707_0707_0707),
            MsrAction::WriteReg(Pat, 0x0707_0707_0707_0707)
        );
        // No RDTSCP/RDPID: no TSC_AUX.
        let p = MsrPolicy {
            tsc_aux: false,
            ..pol()
        };
        let c = GuestMsrCtx::default();
        assert_eq!(
            rdmsr(0xc000_0103, &MsrState::default(), &p, &c),
            MsrAction::Gp
        );
        assert_eq!(
            wrmsr(0xc000_0103, 0, &mut MsrState::default(), &p, &c),
            MsrAction::Gp
        );
    }

    #[test]
    fn hvm_msr_delegations_tsc_hypercall_page() {
        for msr in [0x1b, 0x6e0, 0x800, 0x830, 0x8ff] {
            assert_eq!(rd(msr), MsrAction::Vlapic);
            assert_eq!(wr(msr, 0xdead), MsrAction::Vlapic);
        }
        assert_eq!(rd(0x10), MsrAction::ReadTsc);
        assert_eq!(wr(0x10, 42), MsrAction::WriteTsc(42));
        assert_eq!(rd(0x4000_0000), MsrAction::Value(0));
        assert_eq!(
            wr(0x4000_0000, 0x12_3000),
            MsrAction::InstallHypercallPage { gfn: 0x123 }
        );
        assert_eq!(wr(0x4000_0000, 0x12_3001), MsrAction::Gp, "page index 1");
        assert_eq!(rd(0x4000_0001), MsrAction::Gp);
        assert_eq!(wr(0x4000_0001, 0), MsrAction::Gp);
        assert_eq!(rd(0x8b), MsrAction::Value(0x1234_0000_0000));
        assert_eq!(wr(0x8b, 0), MsrAction::Done);
        let amd = MsrPolicy {
            intel: false,
            ..pol()
        };
        let c = GuestMsrCtx::default();
        assert_eq!(
            wrmsr(0x8b, 0, &mut MsrState::default(), &amd, &c),
            MsrAction::Gp
        );
    }

    #[test]
    fn hvm_msr_misc_enable() {
        // Host: fast strings 0, PERF_AVAIL 7, MONITOR 18, bit 23 clear...
        let want = (0x0085_0089 & !(1 << 7 | 1 << 18)) | 1 << 11 | 1 << 12 | 1 << 23;
        assert_eq!(rd(0x1a0), MsrAction::Value(want));
        assert_eq!(wr(0x1a0, want), MsrAction::Done);
        assert_eq!(wr(0x1a0, want ^ 1), MsrAction::Gp);
        let amd = MsrPolicy {
            intel: false,
            ..pol()
        };
        let c = GuestMsrCtx::default();
        assert_eq!(rdmsr(0x1a0, &MsrState::default(), &amd, &c), MsrAction::Gp);
    }

    #[test]
    fn hvm_msr_mtrrs() {
        let p = pol();
        let c = GuestMsrCtx::default();
        let mut s = MsrState::default();
        assert_eq!(rdmsr(0xfe, &s, &p, &c), MsrAction::Value(0x508));
        assert_eq!(wrmsr(0xfe, 0x508, &mut s, &p, &c), MsrAction::Gp);
        assert_eq!(rdmsr(0x2ff, &s, &p, &c), MsrAction::Value(0x806));
        assert_eq!(wrmsr(0x2ff, 0xc00, &mut s, &p, &c), MsrAction::Done);
        assert_eq!(rdmsr(0x2ff, &s, &p, &c), MsrAction::Value(0xc00));
        assert_eq!(wrmsr(0x2ff, 0x1000, &mut s, &p, &c), MsrAction::Gp);
        assert_eq!(wrmsr(0x2ff, 0x802, &mut s, &p, &c), MsrAction::Gp, "type 2");
        for (i, msr) in MSR_MTRR_FIXED.iter().enumerate() {
            let v = 0x0606_0606_0505_0400 + [0, 1, 4, 5, 6][i % 5];
            assert_eq!(wrmsr(*msr, v, &mut s, &p, &c), MsrAction::Done);
            assert_eq!(rdmsr(*msr, &s, &p, &c), MsrAction::Value(v));
            assert_eq!(wrmsr(*msr, 0x0300, &mut s, &p, &c), MsrAction::Gp);
        }
        // Variable: 40-bit physical addresses.
        assert_eq!(
            wrmsr(0x200, 0x80_0000_0006, &mut s, &p, &c),
            MsrAction::Done
        );
        assert_eq!(
            wrmsr(0x201, 0xff_c000_0800, &mut s, &p, &c),
            MsrAction::Done
        );
        assert_eq!(rdmsr(0x200, &s, &p, &c), MsrAction::Value(0x80_0000_0006));
        assert_eq!(rdmsr(0x201, &s, &p, &c), MsrAction::Value(0xff_c000_0800));
        assert_eq!(
            wrmsr(0x20e, 1 << 40, &mut s, &p, &c),
            MsrAction::Gp,
            "above MAXPHYADDR"
        );
        assert_eq!(
            wrmsr(0x20e, 0x106, &mut s, &p, &c),
            MsrAction::Gp,
            "base bit 8"
        );
        assert_eq!(wrmsr(0x20e, 0x3, &mut s, &p, &c), MsrAction::Gp, "type 3");
        assert_eq!(
            wrmsr(0x20f, 0x801, &mut s, &p, &c),
            MsrAction::Gp,
            "mask bit 0"
        );
        assert_eq!(rdmsr(0x20f, &s, &p, &c), MsrAction::Value(0));
        assert_eq!(rdmsr(0x210, &s, &p, &c), MsrAction::Gp, "only 8 pairs");
    }

    #[test]
    fn hvm_msr_efer() {
        let p = pol();
        let mut s = MsrState::default();
        let off = GuestMsrCtx {
            efer: 0,
            paging: false,
        };
        let on = GuestMsrCtx {
            efer: EFER_LME | EFER_LMA | EFER_SCE,
            paging: true,
        };
        assert_eq!(rdmsr(MSR_EFER, &s, &p, &on), MsrAction::Value(on.efer));
        let lme = EFER_LME | EFER_SCE | EFER_NXE;
        assert_eq!(
            wrmsr(MSR_EFER, lme, &mut s, &p, &off),
            MsrAction::SetEfer(lme)
        );
        // LMA is the hardware's: kept from the current value.
        assert_eq!(
            wrmsr(MSR_EFER, EFER_LME | EFER_NXE, &mut s, &p, &on),
            MsrAction::SetEfer(EFER_LME | EFER_LMA | EFER_NXE)
        );
        // Reserved bits, SVME, LMSLE, features not offered.
        for bad in [
            1 << 1,
            1 << 9,
            EFER_SVME,
            1 << 13,
            EFER_FFXSE,
            EFER_TCE,
            1 << 16,
            1 << 63,
        ] {
            assert_eq!(
                wrmsr(MSR_EFER, bad, &mut s, &p, &off),
                MsrAction::Gp,
                "{bad:#x}"
            );
        }
        let p2 = MsrPolicy {
            ffxsr: true,
            tce: true,
            ..p
        };
        assert_eq!(
            wrmsr(MSR_EFER, EFER_FFXSE | EFER_TCE, &mut s, &p2, &off),
            MsrAction::SetEfer(EFER_FFXSE | EFER_TCE)
        );
        let nolm = MsrPolicy {
            lm: false,
            nx: false,
            ..p
        };
        assert_eq!(
            wrmsr(MSR_EFER, EFER_LME, &mut s, &nolm, &off),
            MsrAction::Gp
        );
        assert_eq!(
            wrmsr(MSR_EFER, EFER_NXE, &mut s, &nolm, &off),
            MsrAction::Gp
        );
        // LMA without LME; LME change with paging on.
        assert_eq!(wrmsr(MSR_EFER, EFER_LMA, &mut s, &p, &off), MsrAction::Gp);
        assert_eq!(wrmsr(MSR_EFER, EFER_SCE, &mut s, &p, &on), MsrAction::Gp);
        let pg32 = GuestMsrCtx {
            efer: 0,
            paging: true,
        };
        assert_eq!(wrmsr(MSR_EFER, EFER_LME, &mut s, &p, &pg32), MsrAction::Gp);
    }

    #[test]
    fn hvm_msr_policy_from_cpuid() {
        use crate::hvm::cpuid::{HvmCpuidConfig, HvmCpuidPolicy};
        let amd = |l: u32, _s: u32| match l {
            0 => [1, 0x6874_7541, 0x444d_4163, 0x6974_6e65], // AuthenticAMD
            0x8000_0000 => [0x8000_0008, 0, 0, 0],
            0x8000_0001 => [
                0,
                0,
                1 << 17 | 1 << 2,
                1 << 29 | 1 << 11 | 1 << 20 | 1 << 25 | 1 << 27,
            ],
            0x8000_0008 => [0x3028, 0, 0, 0],
            _ => [0; 4],
        };
        let c = HvmCpuidPolicy::from_host(amd, HvmCpuidConfig::default());
        let p = MsrPolicy::from_cpuid(&c, 0, 0);
        assert!(!p.intel && p.lm && p.syscall && p.nx && p.ffxsr && p.tce && p.tsc_aux);
        assert_eq!(p.phys_addr_bits, 40);
        let bare = HvmCpuidPolicy::from_host(|_, _| [0; 4], HvmCpuidConfig::default());
        let p = MsrPolicy::from_cpuid(&bare, 0, 0);
        assert!(!p.lm && !p.nx && !p.tsc_aux);
        let ctx = GuestMsrCtx::default();
        assert_eq!(
            wrmsr(MSR_EFER, EFER_LME, &mut MsrState::default(), &p, &ctx),
            MsrAction::Gp
        );
    }

    #[test]
    fn hvm_msr_unknown_is_gp() {
        for msr in [
            0,
            0x3a,
            0x48,
            0x49,
            0x10a,
            0x179,
            0x17a,
            0x1d9,
            0x3b,
            0x400,
            0x4d0,
            0x6df,
            0x6e1,
            0x7ff,
            0x900,
            0xc000_0080 - 1,
            0xc000_0085,
            0xc000_0104,
            0xc001_0015,
            0xc001_0114,
            0x4000_0200,
            u32::MAX,
        ] {
            assert_eq!(rd(msr), MsrAction::Gp, "rd {msr:#x}");
            assert_eq!(wr(msr, 0), MsrAction::Gp, "wr {msr:#x}");
        }
    }
}
