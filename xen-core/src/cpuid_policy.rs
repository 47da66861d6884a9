//! The CPUID view of a 64-bit PV guest.
//!
//! **Owns**: the PV CPUID policy of a domain ([`PvCpuidPolicy`], computed
//! once from the host's raw leaves) and the per-call lookup
//! ([`PvCpuidPolicy::guest_cpuid`]) that adds the dynamic parts (OSXSAVE,
//! XSAVE sizes, Xen's hypervisor leaves at `0x40000000`, the hardware
//! domain's historical leaks).
//!
//! **Trusts**: the caller's host-CPUID closure (it is the real `cpuid`
//! instruction on the metal, a table in tests) and the dynamic
//! [`CpuidContext`] the glue fills from the vCPU. Leaf and subleaf come from
//! the guest and are never trusted: every out-of-range value yields zeros,
//! nothing indexes out of bounds.
//!
//! **Follows** Xen 4.17: `xen/arch/x86/cpu-policy.c` (`calculate_host_policy`,
//! `calculate_pv_{max,def}_policy`, `guest_common_*_adjustments`,
//! `recalculate_xstate`, `recalculate_misc`, `recalculate_cpuid_policy`),
//! `xen/arch/x86/cpuid.c` (`guest_cpuid`, `cpuid_hypervisor_leaves`) and the
//! guest-visibility annotations of `xen/include/public/arch-x86/cpufeatureset.h`
//! (a PV guest gets by default exactly the features annotated `A`).
//!
//! Deliberate differences from Xen 4.17 (each marked `DEVIATION` below):
//! - x2APIC is hidden. Xen up to 4.18 leaked the host's x2APIC bit into PV
//!   guests although it never let them enable x2APIC mode; 4.19 stopped
//!   offering it (see the comment in `calculate_pv_max_policy`). Linux PV
//!   masks it itself, so either choice works for Linux.
//! - DBEXT (AMD data-breakpoint masks) is hidden: Oxen does not virtualise
//!   the `DRn_ADDRESS_MASK` MSRs.
//! - Feature words Xen 4.17 has no featureset word for (leaf 7 subleaf 1
//!   ECX/EDX, subleaf 2 EAX..ECX) are zeroed rather than passed through.
//! - Only the deep-feature dependencies that matter after PV masking are
//!   applied (XSAVE → AVX → AVX-512, IBRSB → STIBP/SSBD/PSFD); Xen's
//!   generated table is larger but the rest cannot trigger once the
//!   features are masked as here.
//!
//! Written by hand (no crate models Xen's PV policy); no allocation, no
//! unsafe: the policy is a fixed-size table (~2.2 KiB) kept per domain.

use hypercall_abi::arch_x86::{
    XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD, XEN_CPUID_FIRST_LEAF, XEN_CPUID_HYPERCALL_PAGES,
    XEN_CPUID_LEAF_HVM, XEN_CPUID_LEAF_HYPERCALL, XEN_CPUID_LEAF_PV, XEN_CPUID_LEAF_TIME,
    XEN_CPUID_LEAF_VERSION, XEN_CPUID_MAX_NUM_LEAVES, XEN_CPUID_SIGNATURE_EBX,
    XEN_CPUID_SIGNATURE_ECX, XEN_CPUID_SIGNATURE_EDX, XEN_HYPERCALL_MSR,
};
use hypercall_abi::version::XEN_VERSION;

/// One CPUID result: `[eax, ebx, ecx, edx]`.
pub type Leaf = [u32; 4];

const EAX: usize = 0;
const EBX: usize = 1;
const ECX: usize = 2;
const EDX: usize = 3;
const EMPTY: Leaf = [0; 4];

/// Basic leaves Xen keeps (`CPUID_GUEST_NR_BASIC`: 0..=0xd).
pub const NR_BASIC: usize = 0xd + 1;
/// Leaf 4 subleaves Xen keeps (`CPUID_GUEST_NR_CACHE`).
pub const NR_CACHE: usize = 5 + 1;
/// Leaf 7 subleaves Xen keeps (`CPUID_GUEST_NR_FEAT`).
pub const NR_FEAT: usize = 2 + 1;
/// Leaf 0xd subleaves Xen keeps (`CPUID_GUEST_NR_XSTATE`).
pub const NR_XSTATE: usize = 62 + 1;
/// Extended leaves on Intel (`CPUID_GUEST_NR_EXTD_INTEL`: up to 0x80000008).
pub const NR_EXTD_INTEL: usize = 0x8 + 1;
/// Extended leaves on AMD/Hygon (`CPUID_GUEST_NR_EXTD_AMD`: up to 0x80000021).
pub const NR_EXTD_AMD: usize = 0x21 + 1;
const NR_EXTD: usize = NR_EXTD_AMD;

/// The CPU vendor, from leaf 0's signature (Xen's `x86_cpuid_lookup_vendor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    /// "GenuineIntel".
    Intel,
    /// "AuthenticAMD".
    Amd,
    /// "HygonGenuine".
    Hygon,
    /// "CentaurHauls".
    Centaur,
    /// "  Shanghai  ".
    Shanghai,
    /// Anything else.
    Unknown,
}

impl Vendor {
    /// Decodes the vendor from leaf 0 (signature in EBX, EDX, ECX order).
    pub fn from_leaf0(l: Leaf) -> Self {
        let mut sig = [0u8; 12];
        sig[0..4].copy_from_slice(&l[EBX].to_le_bytes());
        sig[4..8].copy_from_slice(&l[EDX].to_le_bytes());
        sig[8..12].copy_from_slice(&l[ECX].to_le_bytes());
        match &sig {
            b"GenuineIntel" => Self::Intel,
            b"AuthenticAMD" => Self::Amd,
            b"HygonGenuine" => Self::Hygon,
            b"CentaurHauls" => Self::Centaur,
            b"  Shanghai  " => Self::Shanghai,
            _ => Self::Unknown,
        }
    }

    /// AMD or Hygon (Xen's `X86_VENDOR_AMD | X86_VENDOR_HYGON` tests).
    pub fn is_amd_like(self) -> bool {
        matches!(self, Self::Amd | Self::Hygon)
    }
}

/// Builds a 32-bit mask from bit numbers.
const fn bits(list: &[u32]) -> u32 {
    let mut m = 0;
    let mut i = 0;
    while i < list.len() {
        m |= 1 << list[i];
        i += 1;
    }
    m
}

/// Feature bits, named as in `cpufeatureset.h`, by register.
pub mod feat {
    /// Leaf 1 EDX.
    pub mod l1d {
        /// x87 FPU.
        pub const FPU: u32 = 1 << 0;
        /// Debugging extensions (CR4.DE).
        pub const DE: u32 = 1 << 2;
        /// Page size extensions (hidden from PV: 'S').
        pub const PSE: u32 = 1 << 3;
        /// Time stamp counter.
        pub const TSC: u32 = 1 << 4;
        /// RDMSR/WRMSR.
        pub const MSR: u32 = 1 << 5;
        /// Machine check exception.
        pub const MCE: u32 = 1 << 7;
        /// On-chip APIC.
        pub const APIC: u32 = 1 << 9;
        /// SYSENTER/SYSEXIT.
        pub const SEP: u32 = 1 << 11;
        /// MTRRs (hidden from PV; leaked to the hardware domain's kernel).
        pub const MTRR: u32 = 1 << 12;
        /// Global pages (hidden from PV).
        pub const PGE: u32 = 1 << 13;
        /// 36-bit PSE (hidden from PV).
        pub const PSE36: u32 = 1 << 17;
        /// Debug store (hidden).
        pub const DS: u32 = 1 << 21;
        /// Hyper-threading: leaf 1 EBX[23:16] is valid.
        pub const HTT: u32 = 1 << 28;
        /// Thermal monitor (hidden).
        pub const TM1: u32 = 1 << 29;
        /// Pending break enable (hidden).
        pub const PBE: u32 = 1 << 31;
    }
    /// Leaf 1 ECX.
    pub mod l1c {
        /// 64-bit debug store (hidden).
        pub const DTES64: u32 = 1 << 2;
        /// MONITOR/MWAIT (hidden).
        pub const MONITOR: u32 = 1 << 3;
        /// CPL-qualified debug store (hidden).
        pub const DSCPL: u32 = 1 << 4;
        /// VMX (hidden from PV).
        pub const VMX: u32 = 1 << 5;
        /// SMX (hidden).
        pub const SMX: u32 = 1 << 6;
        /// Enhanced SpeedStep (hidden; leaked to the hardware domain's kernel).
        pub const EIST: u32 = 1 << 7;
        /// Thermal monitor 2 (hidden).
        pub const TM2: u32 = 1 << 8;
        /// FMA.
        pub const FMA: u32 = 1 << 12;
        /// xTPR update control (hidden).
        pub const XTPR: u32 = 1 << 14;
        /// Perf/debug capability MSR (hidden).
        pub const PDCM: u32 = 1 << 15;
        /// Process-context identifiers (hidden from PV: 'H').
        pub const PCID: u32 = 1 << 17;
        /// Direct cache access (hidden).
        pub const DCA: u32 = 1 << 18;
        /// x2APIC (hidden, see the module notes).
        pub const X2APIC: u32 = 1 << 21;
        /// TSC deadline timer (hidden from PV: 'S').
        pub const TSC_DEADLINE: u32 = 1 << 24;
        /// XSAVE/XRSTOR/XSETBV/XGETBV.
        pub const XSAVE: u32 = 1 << 26;
        /// OSXSAVE (dynamic: mirrors CR4.OSXSAVE).
        pub const OSXSAVE: u32 = 1 << 27;
        /// AVX.
        pub const AVX: u32 = 1 << 28;
        /// F16C.
        pub const F16C: u32 = 1 << 29;
        /// Running under a hypervisor.
        pub const HYPERVISOR: u32 = 1 << 31;
    }
    /// Leaf 0x80000001 EDX.
    pub mod e1d {
        /// SYSCALL/SYSRET.
        pub const SYSCALL: u32 = 1 << 11;
        /// No-execute.
        pub const NX: u32 = 1 << 20;
        /// 1 GiB pages (hidden from PV: 'H').
        pub const PAGE1GB: u32 = 1 << 26;
        /// RDTSCP.
        pub const RDTSCP: u32 = 1 << 27;
        /// Long mode.
        pub const LM: u32 = 1 << 29;
    }
    /// Leaf 0x80000001 ECX.
    pub mod e1c {
        /// LAHF/SAHF in long mode.
        pub const LAHF_LM: u32 = 1 << 0;
        /// SVM (hidden from PV).
        pub const SVM: u32 = 1 << 2;
        /// CR8 in 32-bit mode (hidden from PV).
        pub const CR8_LEGACY: u32 = 1 << 4;
        /// XOP.
        pub const XOP: u32 = 1 << 11;
        /// FMA4.
        pub const FMA4: u32 = 1 << 16;
        /// Data breakpoint extension (hidden, see the module notes).
        pub const DBEXT: u32 = 1 << 26;
        /// MONITORX (hidden).
        pub const MONITORX: u32 = 1 << 29;
    }
    /// Leaf 7 subleaf 0 EBX.
    pub mod l7b {
        /// RD/WR{FS,GS}BASE.
        pub const FSGSBASE: u32 = 1 << 0;
        /// TSC_ADJUST (hidden from PV).
        pub const TSC_ADJUST: u32 = 1 << 1;
        /// AVX2.
        pub const AVX2: u32 = 1 << 5;
        /// x87 FDP only updated on exceptions (host value folded in).
        pub const FDP_EXCP_ONLY: u32 = 1 << 6;
        /// SMEP (hidden from PV).
        pub const SMEP: u32 = 1 << 7;
        /// INVPCID (hidden from PV).
        pub const INVPCID: u32 = 1 << 10;
        /// FPU CS/DS stored as zero (host value folded in).
        pub const NO_FPU_SEL: u32 = 1 << 13;
        /// MPX (not offered by default).
        pub const MPX: u32 = 1 << 14;
        /// AVX-512 Foundation.
        pub const AVX512F: u32 = 1 << 16;
        /// SMAP (hidden from PV).
        pub const SMAP: u32 = 1 << 20;
    }
    /// Leaf 7 subleaf 0 ECX.
    pub mod l7c {
        /// UMIP (hidden from PV).
        pub const UMIP: u32 = 1 << 2;
        /// Protection keys (hidden from PV).
        pub const PKU: u32 = 1 << 3;
        /// OSPKE (dynamic: mirrors CR4.PKE).
        pub const OSPKE: u32 = 1 << 4;
        /// Vector AES.
        pub const VAES: u32 = 1 << 9;
        /// Vector carry-less multiply.
        pub const VPCLMULQDQ: u32 = 1 << 10;
        /// RDPID.
        pub const RDPID: u32 = 1 << 22;
    }
    /// Leaf 7 subleaf 0 EDX.
    pub mod l7d {
        /// MD_CLEAR (VERW flushes buffers).
        pub const MD_CLEAR: u32 = 1 << 10;
        /// IBRS and IBPB (Intel).
        pub const IBRSB: u32 = 1 << 26;
        /// STIBP.
        pub const STIBP: u32 = 1 << 27;
        /// L1D_FLUSH (hidden from PV: 'S').
        pub const L1D_FLUSH: u32 = 1 << 28;
        /// IA32_ARCH_CAPABILITIES (not offered by default).
        pub const ARCH_CAPS: u32 = 1 << 29;
        /// SSBD via SPEC_CTRL.
        pub const SSBD: u32 = 1 << 31;
    }
    /// Leaf 0x80000008 EBX.
    pub mod e8b {
        /// IBPB only (AMD bit).
        pub const IBPB: u32 = 1 << 12;
        /// SPEC_CTRL.IBRS (AMD bit; hidden from PV: 'S').
        pub const IBRS: u32 = 1 << 14;
        /// SPEC_CTRL.SSBD (AMD bit; hidden from PV: 'S').
        pub const AMD_SSBD: u32 = 1 << 24;
        /// SPEC_CTRL.PSFD (AMD bit; hidden from PV: 'S').
        pub const PSFD: u32 = 1 << 28;
    }
    /// Leaf 0x80000007 EDX.
    pub mod e7d {
        /// Invariant TSC (given to the hardware domain only).
        pub const ITSC: u32 = 1 << 8;
    }
    /// Leaf 7 subleaf 2 EDX.
    pub mod l7_2d {
        /// SPEC_CTRL.PSFD (Intel bit).
        pub const INTEL_PSFD: u32 = 1 << 0;
    }
}

// --- The PV default featureset: every bit annotated 'A' in cpufeatureset.h ---

/// Leaf 1 EDX bits a PV guest sees by default.
pub const PV_1D: u32 = bits(&[
    0, 2, 4, 5, 6, 7, 8, 9, 11, 14, 15, 16, 19, 22, 23, 24, 25, 26, 27, 28,
]);
/// Leaf 1 ECX bits a PV guest sees by default (X2APIC dropped: DEVIATION).
pub const PV_1C: u32 = bits(&[0, 1, 9, 12, 13, 19, 20, 22, 23, 25, 26, 28, 29, 30, 31]);
/// Leaf 0x80000001 EDX bits (before the AMD mirror of leaf 1 EDX).
pub const PV_E1D: u32 = bits(&[11, 20, 22, 25, 27, 29, 30, 31]);
/// Leaf 0x80000001 ECX bits (DBEXT dropped: DEVIATION).
pub const PV_E1C: u32 = bits(&[0, 1, 5, 6, 7, 8, 11, 16, 21]);
/// Leaf 0xd subleaf 1 EAX bits (XSAVEOPT, XSAVEC, XGETBV1; not XSAVES).
pub const PV_DA1: u32 = bits(&[0, 1, 2]);
/// Leaf 7 subleaf 0 EBX bits.
pub const PV_7B0: u32 = bits(&[
    0, 3, 5, 8, 9, 11, 16, 17, 18, 19, 21, 23, 24, 26, 27, 28, 29, 30, 31,
]);
/// Leaf 7 subleaf 0 ECX bits.
pub const PV_7C0: u32 = bits(&[0, 1, 6, 8, 9, 10, 11, 12, 14, 22, 25]);
/// Leaf 0x80000007 EDX bits (none by default).
pub const PV_E7D: u32 = 0;
/// Leaf 0x80000008 EBX bits.
pub const PV_E8B: u32 = bits(&[0, 2, 12, 26, 29, 30]);
/// Leaf 7 subleaf 0 EDX bits.
pub const PV_7D0: u32 = bits(&[2, 3, 10, 26, 27, 31]);
/// Leaf 7 subleaf 1 EAX bits.
pub const PV_7A1: u32 = bits(&[5]);
/// Leaf 0x80000021 EAX bits.
pub const PV_E21A: u32 = bits(&[2]);
/// Leaf 7 subleaf 2 EDX bits.
pub const PV_7D2: u32 = bits(&[0]);

/// Leaf 1 EDX bits AMD mirrors into 0x80000001 EDX
/// (`CPUID_COMMON_1D_FEATURES`: FPU..APIC, MTRR..PSE36, MMX, FXSR).
pub const COMMON_1D: u32 = 0x0183_f3ff;

// XSAVE state components (XCR0 bits).
/// x87 state.
pub const XSTATE_FP: u64 = 1 << 0;
/// SSE state.
pub const XSTATE_SSE: u64 = 1 << 1;
/// AVX upper halves.
pub const XSTATE_YMM: u64 = 1 << 2;
/// MPX bounds registers.
pub const XSTATE_BNDREGS: u64 = 1 << 3;
/// MPX bounds config.
pub const XSTATE_BNDCSR: u64 = 1 << 4;
/// AVX-512 opmask.
pub const XSTATE_OPMASK: u64 = 1 << 5;
/// AVX-512 ZMM upper halves.
pub const XSTATE_ZMM: u64 = 1 << 6;
/// AVX-512 ZMM16-31.
pub const XSTATE_HI_ZMM: u64 = 1 << 7;
/// Size of the legacy region plus the XSAVE header.
pub const XSTATE_AREA_MIN_SIZE: u32 = 512 + 64;

// CR4 bits the dynamic leaves look at.
const CR4_OSXSAVE: u64 = 1 << 18;
const CR4_PKE: u64 = 1 << 22;

/// Why CPUID is being answered: Xen tells a faulted CPUID (#GP, CPUID
/// faulting) from the forced-emulation prefix (#UD) and lets a few things
/// differ (OSXSAVE, the hardware domain's MONITOR leak).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuidSource {
    /// A native `cpuid` that faulted (#GP, CPUID faulting).
    Faulted,
    /// The forced-emulation prefix `ud2; .ascii "xen"; cpuid` (#UD).
    Forced,
}

/// Time parameters for Xen's time leaf (`base + 3`), as the domain's time
/// code keeps them (`d->arch.{vtsc,tsc_mode,tsc_khz,incarnation,...}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenTimeLeaf {
    /// The domain's TSC is emulated (`vtsc`).
    pub vtsc: bool,
    /// The host TSC is safe (invariant and synchronised: `host_tsc_is_safe`).
    pub host_tsc_is_safe: bool,
    /// `tsc_mode` (0 default, 1 always emulate, 2 native, 3 no emulate).
    pub tsc_mode: u32,
    /// The guest's TSC frequency in kHz.
    pub tsc_khz: u32,
    /// Migration incarnation.
    pub incarnation: u32,
    /// `vtsc_offset` (reported only when the TSC is not emulated).
    pub vtsc_offset: u64,
    /// TSC-to-ns multiplier (`vtsc_to_ns.mul_frac`).
    pub mul_frac: u32,
    /// TSC-to-ns shift (`vtsc_to_ns.shift`, signed).
    pub shift: i8,
    /// Physical CPU frequency in kHz (`cpu_khz`).
    pub cpu_khz: u32,
}

/// Per-call state that Xen's `guest_cpuid` reads from the current vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidContext {
    /// How the CPUID reached the hypervisor.
    pub source: CpuidSource,
    /// The vCPU is in guest kernel mode.
    pub kernel_mode: bool,
    /// The guest's virtual CR4 (`arch.pv.ctrlreg[4]`).
    pub guest_cr4: u64,
    /// The hypervisor's own CR4 (for the OSXSAVE leak of enlightened CPUID).
    pub xen_cr4: u64,
    /// The vCPU's XCR0 (leaf 0xd subleaf 0 EBX).
    pub xcr0: u64,
    /// The vCPU's IA32_XSS (leaf 0xd subleaf 1 EBX; 0 for PV).
    pub xss: u64,
    /// Xen time-leaf parameters.
    pub time: XenTimeLeaf,
    /// The highest MFN the host may ever hand out (`get_upper_mfn_bound`),
    /// for the PV leaf's address width.
    pub upper_mfn_bound: u64,
}

impl Default for CpuidContext {
    fn default() -> Self {
        Self {
            source: CpuidSource::Faulted,
            kernel_mode: true,
            guest_cr4: 0,
            xen_cr4: 0,
            xcr0: XSTATE_FP | XSTATE_SSE,
            xss: 0,
            time: XenTimeLeaf::default(),
            upper_mfn_bound: 0,
        }
    }
}

/// Domain-wide choices that shape the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyOptions {
    /// The domain is the hardware domain (Dom0): ITSC if the host has it,
    /// and Xen's historical MONITOR/EIST/MTRR leaks to its kernel.
    pub hardware_domain: bool,
    /// Advertise `XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD` in `base + 2`
    /// ECX. Xen always does for PV; clear it only while `mmu_update` lacks
    /// `MMU_PT_UPDATE_PRESERVE_AD`.
    pub mmu_pt_update_preserve_ad: bool,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        Self {
            hardware_domain: false,
            mmu_pt_update_preserve_ad: true,
        }
    }
}

/// A 64-bit PV domain's CPUID policy (Xen's `pv_def_cpu_policy` after
/// `recalculate_cpuid_policy`), plus the few host facts the dynamic part
/// needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PvCpuidPolicy {
    vendor: Vendor,
    opts: PolicyOptions,
    basic: [Leaf; NR_BASIC],
    cache: [Leaf; NR_CACHE],
    feat: [Leaf; NR_FEAT],
    xstate: [Leaf; NR_XSTATE],
    extd: [Leaf; NR_EXTD],
    host_monitor: bool,
    host_eist: bool,
    host_mtrr: bool,
    host_rdtscp: bool,
    host_leaf5: Leaf,
}

/// Clamps a host's max-extended-leaf value to an index into `extd`.
fn extd_max_index(raw_max: u32, vendor: Vendor) -> usize {
    let limit = if vendor.is_amd_like() {
        NR_EXTD_AMD
    } else {
        NR_EXTD_INTEL
    } - 1;
    if raw_max & 0xffff_0000 != 0x8000_0000 {
        return 0;
    }
    ((raw_max & 0xffff) as usize).min(limit)
}

impl PvCpuidPolicy {
    /// Computes the PV policy from the host's raw CPUID.
    ///
    /// `host(leaf, subleaf)` must return what the host CPU returns (the
    /// `cpuid` instruction); it is only asked for leaves the host
    /// advertises.
    pub fn from_host(host: impl Fn(u32, u32) -> Leaf, opts: PolicyOptions) -> Self {
        let l0 = host(0, 0);
        let vendor = Vendor::from_leaf0(l0);
        let host_max = l0[EAX] as usize;
        let hleaf = |leaf: u32, sub: u32| {
            if (leaf as usize) <= host_max {
                host(leaf, sub)
            } else {
                EMPTY
            }
        };
        let e0 = host(0x8000_0000, 0);
        let emax = extd_max_index(e0[EAX], vendor);
        let hext = |idx: usize, sub: u32| {
            if idx <= emax {
                host(0x8000_0000 | idx as u32, sub)
            } else {
                EMPTY
            }
        };

        let h1 = hleaf(1, 0);
        let h7 = hleaf(7, 0);
        let he1 = hext(1, 0);
        let he8 = hext(8, 0);
        let hd1 = hleaf(0xd, 1);

        let mut p = Self {
            vendor,
            opts,
            basic: [EMPTY; NR_BASIC],
            cache: [EMPTY; NR_CACHE],
            feat: [EMPTY; NR_FEAT],
            xstate: [EMPTY; NR_XSTATE],
            extd: [EMPTY; NR_EXTD],
            host_monitor: h1[ECX] & feat::l1c::MONITOR != 0,
            host_eist: h1[ECX] & feat::l1c::EIST != 0,
            host_mtrr: h1[EDX] & feat::l1d::MTRR != 0,
            host_rdtscp: he1[EDX] & feat::e1d::RDTSCP != 0,
            host_leaf5: hleaf(5, 0),
        };

        // --- Featureset: host & PV default mask, then Xen's adjustments. ---
        let mut f1d = h1[EDX] & PV_1D;
        let mut f1c = h1[ECX] & PV_1C;
        let mut fe1d = he1[EDX] & PV_E1D;
        let fe1c = he1[ECX] & PV_E1C;
        let mut fda1 = hd1[EAX] & PV_DA1;
        let mut f7b0 = h7[EBX] & PV_7B0;
        let mut f7c0 = h7[ECX] & PV_7C0;
        let mut f7d0 = h7[EDX] & PV_7D0;
        let mut fe8b = he8[EBX] & PV_E8B;
        let mut f7a1 = if h7[EAX] >= 1 {
            hleaf(7, 1)[EAX] & PV_7A1
        } else {
            0
        };
        let mut f7d2 = if h7[EAX] >= 2 {
            hleaf(7, 2)[EDX] & PV_7D2
        } else {
            0
        };
        let fe21a = hext(0x21, 0)[EAX] & PV_E21A;
        let mut fe7d = 0;

        // init_amd() drops SEP from the host capabilities: Xen runs in long
        // mode, where AMD has no SYSENTER.
        if vendor.is_amd_like() {
            f1d &= !feat::l1d::SEP;
        }
        // guest_common_feature_adjustments().
        f1c |= feat::l1c::HYPERVISOR;
        if f7d0 & feat::l7d::IBRSB != 0 {
            f7d0 |= feat::l7d::STIBP;
        }
        if h7[EDX] & feat::l7d::IBRSB != 0 {
            fe8b |= feat::e8b::IBPB;
        }
        // Topology flags follow the host (PV sees the host topology).
        f1d = (f1d & !feat::l1d::HTT) | (h1[EDX] & feat::l1d::HTT);
        // The domain's basic max leaf must reach 0xd for XSAVE.
        let basic_max = host_max.min(NR_BASIC - 1);
        if basic_max < 0xd {
            f1c &= !feat::l1c::XSAVE;
        }
        // Deep dependencies (sanitise_featureset), the subset that matters.
        if f1c & feat::l1c::XSAVE == 0 {
            f1c &= !(feat::l1c::AVX | feat::l1c::FMA | feat::l1c::F16C);
            fda1 = 0;
        }
        if f1c & feat::l1c::AVX == 0 {
            f1c &= !(feat::l1c::FMA | feat::l1c::F16C);
            f7b0 &= !(feat::l7b::AVX2 | feat::l7b::AVX512F);
            f7c0 &= !(feat::l7c::VAES | feat::l7c::VPCLMULQDQ);
        }
        if f7b0 & feat::l7b::AVX512F == 0 {
            // Every AVX-512 feature hangs off AVX512F.
            f7b0 &= !bits(&[17, 21, 26, 27, 28, 30, 31]);
            f7c0 &= !bits(&[1, 6, 11, 12, 14]);
            f7d0 &= !bits(&[2, 3]);
            f7a1 &= !bits(&[5]);
        }
        if f7d0 & feat::l7d::IBRSB == 0 {
            f7d0 &= !(feat::l7d::STIBP | feat::l7d::SSBD);
            f7d2 &= !feat::l7_2d::INTEL_PSFD;
        }
        // Fold the host's FDP_EXCP_ONLY and NO_FPU_SEL into the guest view.
        f7b0 |= h7[EBX] & (feat::l7b::FDP_EXCP_ONLY | feat::l7b::NO_FPU_SEL);
        // AMD mirrors the common leaf-1 EDX bits into 0x80000001 EDX.
        if vendor.is_amd_like() {
            fe1d |= f1d & COMMON_1D;
        }
        // Dom0 does not migrate: give it the invariant TSC.
        if opts.hardware_domain {
            fe7d |= hext(7, 0)[EDX] & feat::e7d::ITSC;
        }
        fe7d |= hext(7, 0)[EDX] & PV_E7D;

        // --- Basic leaves. ---
        p.basic[0] = [basic_max as u32, l0[EBX], l0[ECX], l0[EDX]];
        if basic_max >= 1 {
            // Processor type clobbered, initial APIC ID dynamic (zero).
            p.basic[1] = [h1[EAX] & 0x0fff_0fff, h1[EBX] & 0x00ff_ffff, f1c, f1d];
        }
        if vendor == Vendor::Intel {
            if basic_max >= 2 {
                let mut l2 = hleaf(2, 0);
                l2[EAX] = (l2[EAX] & !0xff) | 1; // fixed to one query
                p.basic[2] = l2;
            }
            if basic_max >= 4 {
                for (i, slot) in p.cache.iter_mut().enumerate() {
                    let mut c = hleaf(4, i as u32);
                    let ty = c[EAX] & 0x1f;
                    if !(1..=3).contains(&ty) {
                        break;
                    }
                    c[EAX] &= 0xffff_c3ff;
                    c[EDX] &= 0x7;
                    *slot = c;
                }
            }
        }
        // Leaves 3, 5, 6, 8, 9, 0xa (vPMU off), 0xb (topology), 0xc: empty.
        if basic_max >= 7 {
            let max_sub = h7[EAX].min(NR_FEAT as u32 - 1);
            p.feat[0] = [max_sub, f7b0, f7c0, f7d0];
            if max_sub >= 1 {
                p.feat[1] = [f7a1, 0, 0, 0];
            }
            if max_sub >= 2 {
                p.feat[2] = [0, 0, 0, f7d2];
            }
        }

        // --- XSAVE (recalculate_xstate). ---
        if f1c & feat::l1c::XSAVE != 0 {
            let mut xstates = XSTATE_FP | XSTATE_SSE;
            if f1c & feat::l1c::AVX != 0 {
                xstates |= XSTATE_YMM;
            }
            if f7b0 & feat::l7b::AVX512F != 0 {
                xstates |= XSTATE_OPMASK | XSTATE_ZMM | XSTATE_HI_ZMM;
            }
            let ecx_mask = if fda1 & (1 << 1) != 0 { 1 << 1 } else { 0 }; // XSAVEC → ALIGN64
            for (i, slot) in p.xstate.iter_mut().enumerate().skip(2) {
                if xstates & (1 << i) != 0 {
                    let h = hleaf(0xd, i as u32);
                    *slot = [h[EAX], h[EBX], h[ECX] & ecx_mask, 0];
                }
            }
            let max_size = p.uncompressed_size(xstates);
            p.xstate[0] = [xstates as u32, 0, max_size, (xstates >> 32) as u32];
            p.xstate[1] = [fda1, 0, 0, 0];
        }

        // --- Extended leaves (recalculate_misc). ---
        p.extd[0] = [0x8000_0000 | emax as u32, 0, 0, 0];
        if vendor.is_amd_like() {
            p.extd[0][EBX] = l0[EBX];
            p.extd[0][ECX] = l0[ECX];
            p.extd[0][EDX] = l0[EDX];
        }
        if emax >= 1 {
            p.extd[1] = if vendor.is_amd_like() {
                [p.basic[1][EAX], he1[EBX] & 0xff00_ffff, fe1c, fe1d]
            } else {
                [0, 0, fe1c, fe1d]
            };
        }
        for (i, slot) in p.extd.iter_mut().enumerate().take(5).skip(2) {
            if emax >= i {
                *slot = hext(i, 0); // brand string
            }
        }
        if emax >= 5 && vendor.is_amd_like() {
            p.extd[5] = hext(5, 0);
        }
        if emax >= 6 {
            let h = hext(6, 0);
            p.extd[6] = if vendor.is_amd_like() {
                h
            } else {
                [0, 0, h[ECX], 0]
            };
        }
        if emax >= 7 {
            p.extd[7] = [0, 0, 0, fe7d];
        }
        if emax >= 8 {
            let phys = (he8[EAX] & 0xff).max(36);
            let ecx = if vendor.is_amd_like() {
                he8[ECX] & 0x0003_f0ff
            } else {
                0
            };
            p.extd[8] = [phys | (48 << 8), fe8b, ecx, 0];
        }
        if vendor.is_amd_like() {
            // 9, 0xa (no SVM for PV), 0xb..=0x18, 0x19 (no PAGE1GB for PV),
            // 0x1b..=0x20: empty. 0x1a (perf hints) passes through.
            if emax >= 0x1a {
                p.extd[0x1a] = hext(0x1a, 0);
            }
            if emax >= 0x21 {
                p.extd[0x21] = [fe21a, 0, 0, 0];
            }
        }
        p
    }

    /// The policy of a levelled domain (`XEN_DOMCTL_set_cpu_policy`):
    /// computed as [`Self::from_host`] from host leaves whose feature
    /// words are masked by `lv` (so the dependency and XSAVE rules see
    /// the levelled features: no AVX means no AVX2 and no YMM state),
    /// then with its own feature words masked too (for the bits the
    /// policy sets itself, such as HYPERVISOR).
    pub fn from_host_levelled(
        host: impl Fn(u32, u32) -> Leaf,
        opts: PolicyOptions,
        lv: &crate::cpuid_level::Levelling,
    ) -> Self {
        let mut p = Self::from_host(|l, s| lv.mask_host_leaf(l, s, host(l, s)), opts);
        p.basic[1] = lv.mask_leaf(1, 0, p.basic[1]);
        p.basic[6] = lv.mask_leaf(6, 0, p.basic[6]);
        for (i, f) in p.feat.iter_mut().enumerate() {
            *f = lv.mask_leaf(7, i as u32, *f);
        }
        p.xstate[1] = lv.mask_leaf(0xd, 1, p.xstate[1]);
        for i in [1, 7, 8] {
            p.extd[i] = lv.mask_leaf(0x8000_0000 | i as u32, 0, p.extd[i]);
        }
        p
    }

    /// The policy as `XEN_DOMCTL_get_cpu_policy` hands it out.
    pub fn serialise(&self) -> crate::cpuid_level::Entries {
        crate::cpuid_level::serialise(|l, s| self.policy_leaf(l, s))
    }

    /// The vendor of the host (and so of the guest's view).
    pub fn vendor(&self) -> Vendor {
        self.vendor
    }

    /// The static (policy) value of a leaf, before dynamic adjustments.
    /// Out-of-range leaves and subleaves are all zeros (the AMD model).
    pub fn policy_leaf(&self, leaf: u32, subleaf: u32) -> Leaf {
        match leaf {
            0..=0xd => {
                if leaf > self.basic[0][EAX] {
                    return EMPTY;
                }
                match leaf {
                    0x4 => self.cache.get(subleaf as usize).copied().unwrap_or(EMPTY),
                    0x7 => {
                        if subleaf > self.feat[0][EAX] {
                            EMPTY
                        } else {
                            self.feat.get(subleaf as usize).copied().unwrap_or(EMPTY)
                        }
                    }
                    0xb => EMPTY,
                    0xd => {
                        if !self.has_xsave() {
                            EMPTY
                        } else {
                            self.xstate.get(subleaf as usize).copied().unwrap_or(EMPTY)
                        }
                    }
                    _ => self.basic[leaf as usize],
                }
            }
            0x8000_0000..=0x8000_ffff => {
                let idx = (leaf & 0xffff) as usize;
                let max = (self.extd[0][EAX] & 0xffff) as usize;
                if idx > max {
                    EMPTY
                } else {
                    self.extd.get(idx).copied().unwrap_or(EMPTY)
                }
            }
            _ => EMPTY,
        }
    }

    /// Whether the policy offers XSAVE.
    pub fn has_xsave(&self) -> bool {
        self.basic[1][ECX] & feat::l1c::XSAVE != 0
    }

    /// XCR0 bits the guest may set (leaf 0xd subleaf 0 EDX:EAX).
    pub fn xcr0_mask(&self) -> u64 {
        u64::from(self.xstate[0][EAX]) | (u64::from(self.xstate[0][EDX]) << 32)
    }

    /// `xstate_uncompressed_size`: the XSAVE area size for `xcr0`.
    pub fn uncompressed_size(&self, xcr0: u64) -> u32 {
        let mut size = XSTATE_AREA_MIN_SIZE;
        for (i, &[sz, off, ..]) in self.xstate.iter().enumerate().skip(2) {
            if xcr0 & (1 << i) != 0 {
                size = size.max(off.saturating_add(sz));
            }
        }
        size
    }

    /// `xstate_compressed_size`: the XSAVEC area size for `xcr0 | xss`.
    pub fn compressed_size(&self, xstates: u64) -> u32 {
        let mut size = XSTATE_AREA_MIN_SIZE;
        for (i, &[sz, _, c, _]) in self.xstate.iter().enumerate().skip(2) {
            if xstates & (1 << i) != 0 {
                if c & (1 << 1) != 0 {
                    size = size.saturating_add(63) & !63;
                }
                size = size.saturating_add(sz);
            }
        }
        size
    }

    /// What the guest sees for `cpuid(leaf, subleaf)` (Xen's `guest_cpuid`).
    pub fn guest_cpuid(&self, leaf: u32, subleaf: u32, ctx: &CpuidContext) -> Leaf {
        if (XEN_CPUID_FIRST_LEAF..XEN_CPUID_FIRST_LEAF + 0x200).contains(&leaf) {
            return self.hypervisor_leaf(leaf, subleaf, ctx);
        }
        if leaf == 5 {
            if let Some(l) = self.leaf5_leak(ctx) {
                return l;
            }
        }
        let mut res = self.policy_leaf(leaf, subleaf);
        if res == EMPTY {
            return res;
        }
        let hwdom_kernel = self.opts.hardware_domain && ctx.kernel_mode;
        match leaf {
            0x1 => {
                // Non-architectural OSXSAVE for PV (see Xen's long comment):
                // the enlightened (forced) CPUID of the kernel sees Xen's.
                if ctx.guest_cr4 & CR4_OSXSAVE != 0
                    || (self.has_xsave()
                        && ctx.source == CpuidSource::Forced
                        && ctx.kernel_mode
                        && ctx.xen_cr4 & CR4_OSXSAVE != 0)
                {
                    res[ECX] |= feat::l1c::OSXSAVE;
                }
                if hwdom_kernel {
                    if self.host_monitor && ctx.source == CpuidSource::Faulted {
                        res[ECX] |= feat::l1c::MONITOR;
                    }
                    if self.host_eist {
                        res[ECX] |= feat::l1c::EIST;
                    }
                }
                if hwdom_kernel && self.host_mtrr {
                    res[EDX] |= feat::l1d::MTRR;
                }
            }
            0x7 if subleaf == 0 && ctx.guest_cr4 & CR4_PKE != 0 => {
                res[ECX] |= feat::l7c::OSPKE;
            }
            0xd => match subleaf {
                0 => res[EBX] = self.uncompressed_size(ctx.xcr0 & self.xcr0_mask()),
                1 if res[EAX] & (1 << 1) != 0 => {
                    res[EBX] = self.compressed_size((ctx.xcr0 | ctx.xss) & self.xcr0_mask());
                }
                _ => {}
            },
            0x8000_0001 if hwdom_kernel && self.host_mtrr && self.vendor.is_amd_like() => {
                res[EDX] |= feat::l1d::MTRR;
            }
            _ => {}
        }
        res
    }

    /// The hardware domain's kernel sees the host MONITOR leaf when a
    /// faulted CPUID asks for leaf 5 (and the host has MONITOR).
    fn leaf5_leak(&self, ctx: &CpuidContext) -> Option<Leaf> {
        (self.opts.hardware_domain
            && ctx.kernel_mode
            && self.host_monitor
            && ctx.source == CpuidSource::Faulted)
            .then_some(self.host_leaf5)
    }

    /// Xen's leaves at `0x40000000` (`cpuid_hypervisor_leaves`). PV
    /// domains never have Viridian, so the base is always `0x40000000` and
    /// `0x40000100..` reads as zeros.
    fn hypervisor_leaf(&self, leaf: u32, subleaf: u32, ctx: &CpuidContext) -> Leaf {
        let base = XEN_CPUID_FIRST_LEAF;
        let limit = XEN_CPUID_MAX_NUM_LEAVES;
        let idx = leaf - base;
        if idx > limit {
            return EMPTY;
        }
        let mut r = EMPTY;
        match idx {
            0 => {
                r = [
                    base + limit,
                    XEN_CPUID_SIGNATURE_EBX,
                    XEN_CPUID_SIGNATURE_ECX,
                    XEN_CPUID_SIGNATURE_EDX,
                ]
            }
            XEN_CPUID_LEAF_VERSION => r[EAX] = XEN_VERSION,
            XEN_CPUID_LEAF_HYPERCALL => {
                r[EAX] = XEN_CPUID_HYPERCALL_PAGES;
                r[EBX] = XEN_HYPERCALL_MSR;
                if self.opts.mmu_pt_update_preserve_ad {
                    r[ECX] = XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD;
                }
            }
            XEN_CPUID_LEAF_TIME => {
                let t = &ctx.time;
                match subleaf {
                    0 => {
                        r = [
                            u32::from(t.vtsc)
                                | (u32::from(t.host_tsc_is_safe) << 1)
                                | (u32::from(self.host_rdtscp) << 2),
                            t.tsc_mode,
                            t.tsc_khz,
                            t.incarnation,
                        ]
                    }
                    1 => {
                        // The offset is already applied to an emulated TSC.
                        let off = if t.vtsc { 0 } else { t.vtsc_offset };
                        r = [
                            off as u32,
                            (off >> 32) as u32,
                            t.mul_frac,
                            i32::from(t.shift) as u32,
                        ];
                    }
                    2 => r[EAX] = t.cpu_khz,
                    _ => {}
                }
            }
            XEN_CPUID_LEAF_HVM => {} // HVM only: zeros for PV.
            XEN_CPUID_LEAF_PV if subleaf == 0 => {
                // flsl(upper MFN bound) + PAGE_SHIFT.
                let fls = 64 - ctx.upper_mfn_bound.leading_zeros();
                r[EBX] = fls + 12;
            }
            _ => {}
        }
        r
    }
}

/// Xen's `valid_xcr0`: architectural consistency of an XCR0 value.
pub fn valid_xcr0(xcr0: u64) -> bool {
    if xcr0 & XSTATE_FP == 0 {
        return false;
    }
    if xcr0 & XSTATE_YMM != 0 && xcr0 & XSTATE_SSE == 0 {
        return false;
    }
    let avx512 = XSTATE_OPMASK | XSTATE_ZMM | XSTATE_HI_ZMM;
    if xcr0 & avx512 != 0 && (xcr0 & XSTATE_YMM == 0 || !xcr0 & avx512 != 0) {
        return false;
    }
    (xcr0 & XSTATE_BNDREGS == 0) == (xcr0 & XSTATE_BNDCSR == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake host: a small table keyed by (leaf, subleaf); missing → 0.
    struct FakeHost {
        leaves: std::vec::Vec<(u32, u32, Leaf)>,
    }

    impl FakeHost {
        fn get(&self, leaf: u32, sub: u32) -> Leaf {
            self.leaves
                .iter()
                .find(|(l, s, _)| *l == leaf && (*s == sub || *s == u32::MAX))
                .map(|x| x.2)
                .unwrap_or(EMPTY)
        }
        fn set(&mut self, leaf: u32, sub: u32, v: Leaf) {
            self.leaves.retain(|(l, s, _)| !(*l == leaf && *s == sub));
            self.leaves.push((leaf, sub, v));
        }
    }

    fn vendor_regs(sig: &[u8; 12]) -> (u32, u32, u32) {
        let w = |i: usize| u32::from_le_bytes([sig[i], sig[i + 1], sig[i + 2], sig[i + 3]]);
        (w(0), w(4), w(8)) // ebx, edx, ecx
    }

    /// An Intel host with everything interesting switched on.
    fn intel_host_all() -> FakeHost {
        let (b, d, c) = vendor_regs(b"GenuineIntel");
        let mut h = FakeHost {
            leaves: std::vec::Vec::new(),
        };
        h.set(0, 0, [0x16, b, c, d]);
        // Family 6, processor type bits 13:12 set to check they get clobbered.
        h.set(
            1,
            0,
            [0x0000_30f1 | 0x0009_0000, 0x0510_0800, u32::MAX, u32::MAX],
        );
        h.set(2, 0, [0x0076_0305, 0, 0, 0x00c3_0000]);
        h.set(3, 0, [1, 2, 3, 4]);
        h.set(4, 0, [0x1c00_4121, 0x01c0_003f, 0x3f, 0xffff_ffff]);
        h.set(4, 1, [0x1c00_4122, 0x01c0_003f, 0x3f, 0]);
        h.set(4, 2, [0, 0, 0, 0]);
        h.set(5, 0, [0x40, 0x40, 3, 0x1120]);
        h.set(6, 0, [0x77, 2, 9, 0]);
        h.set(7, 0, [2, u32::MAX, u32::MAX, u32::MAX]);
        h.set(7, 1, [u32::MAX, u32::MAX, u32::MAX, u32::MAX]);
        h.set(7, 2, [u32::MAX, u32::MAX, u32::MAX, u32::MAX]);
        h.set(0xa, 0, [0x0704_3004, 0, 0, 0x603]);
        h.set(0xb, 0, [1, 2, 0x100, 7]);
        h.set(0xd, 0, [0xff, 0xa88, 0xa88, 0]);
        h.set(0xd, 1, [0xf, 0, 0, 0]);
        h.set(0xd, 2, [256, 576, 0, 0]);
        h.set(0xd, 3, [64, 960, 0, 0]);
        h.set(0xd, 4, [64, 1024, 0, 0]);
        h.set(0xd, 5, [64, 1088, 2, 0]);
        h.set(0xd, 6, [512, 1152, 2, 0]);
        h.set(0xd, 7, [1024, 1664, 2, 0]);
        h.set(0x8000_0000, 0, [0x8000_0008, 0, 0, 0]);
        h.set(0x8000_0001, 0, [0x11, 0x22, u32::MAX, u32::MAX]);
        h.set(
            0x8000_0002,
            0,
            [0x6574_6e49, 0x2952_286c, 0x6f65_5820, 0x2952_286e],
        );
        h.set(0x8000_0006, 0, [5, 6, 0x0100_6040, 8]);
        h.set(0x8000_0007, 0, [1, 2, 3, 0x100]);
        h.set(0x8000_0008, 0, [0x3027, u32::MAX, 0xff, 1]);
        h
    }

    fn amd_host_all() -> FakeHost {
        let (b, d, c) = vendor_regs(b"AuthenticAMD");
        let mut h = FakeHost {
            leaves: std::vec::Vec::new(),
        };
        h.set(0, 0, [0xd, b, c, d]);
        h.set(1, 0, [0x00a2_0f10, 0x0410_0800, u32::MAX, u32::MAX]);
        h.set(4, 0, [0x1c00_4121, 1, 2, 3]);
        h.set(7, 0, [0, u32::MAX, u32::MAX, u32::MAX]);
        h.set(0xd, 0, [0x7, 0x340, 0x340, 0]);
        h.set(0xd, 1, [0xf, 0, 0, 0]);
        h.set(0xd, 2, [256, 576, 0, 0]);
        h.set(0x8000_0000, 0, [0x8000_0028, b, c, d]);
        h.set(
            0x8000_0001,
            0,
            [0x00a2_0f10, 0x2000_0000 | 0x00ff_0000, u32::MAX, u32::MAX],
        );
        h.set(0x8000_0005, 0, [5, 5, 5, 5]);
        h.set(0x8000_0007, 0, [1, 2, 3, 0x100]);
        h.set(0x8000_0008, 0, [0x3030, u32::MAX, 0xffff_ffff, 0]);
        h.set(0x8000_000a, 0, [1, 0x8000, 0, u32::MAX]);
        h.set(0x8000_0019, 0, [9, 9, 9, 9]);
        h.set(0x8000_001a, 0, [6, 0, 0, 0]);
        h.set(0x8000_001e, 0, [7, 7, 7, 7]);
        h.set(0x8000_0021, 0, [u32::MAX, 1, 1, 1]);
        h
    }

    fn policy(h: &FakeHost) -> PvCpuidPolicy {
        PvCpuidPolicy::from_host(|l, s| h.get(l, s), PolicyOptions::default())
    }

    fn ctx() -> CpuidContext {
        CpuidContext::default()
    }

    #[test]
    fn vendor_detection() {
        for (sig, v) in [
            (b"GenuineIntel", Vendor::Intel),
            (b"AuthenticAMD", Vendor::Amd),
            (b"HygonGenuine", Vendor::Hygon),
            (b"CentaurHauls", Vendor::Centaur),
            (b"  Shanghai  ", Vendor::Shanghai),
            (b"TCGTCGTCGTCG", Vendor::Unknown),
        ] {
            let (b, d, c) = vendor_regs(sig);
            assert_eq!(Vendor::from_leaf0([0, b, c, d]), v);
        }
    }

    #[test]
    fn leaf1_hides_what_pv_must_not_see() {
        let p = policy(&intel_host_all());
        let l1 = p.guest_cpuid(1, 0, &ctx());
        use feat::l1c::*;
        for (bit, name) in [
            (VMX, "VMX"),
            (MONITOR, "MONITOR"),
            (X2APIC, "X2APIC"),
            (PCID, "PCID"),
            (TSC_DEADLINE, "TSC_DEADLINE"),
            (DTES64, "DTES64"),
            (DSCPL, "DSCPL"),
            (SMX, "SMX"),
            (EIST, "EIST"),
            (TM2, "TM2"),
            (XTPR, "XTPR"),
            (PDCM, "PDCM"),
            (DCA, "DCA"),
            (OSXSAVE, "OSXSAVE"),
        ] {
            assert_eq!(l1[ECX] & bit, 0, "leaf 1 ECX {name} must be hidden");
        }
        assert_ne!(l1[ECX] & HYPERVISOR, 0, "HYPERVISOR set");
        assert_ne!(l1[ECX] & XSAVE, 0);
        assert_ne!(l1[ECX] & AVX, 0);
        use feat::l1d::*;
        for (bit, name) in [
            (PSE, "PSE"),
            (PGE, "PGE"),
            (PSE36, "PSE36"),
            (MTRR, "MTRR"),
            (DS, "DS"),
            (TM1, "TM1"),
            (PBE, "PBE"),
            (1 << 1, "VME"),
            (1 << 10, "reserved 10"),
        ] {
            assert_eq!(l1[EDX] & bit, 0, "leaf 1 EDX {name} must be hidden");
        }
        for bit in [FPU, DE, TSC, MSR, MCE, APIC, SEP, HTT] {
            assert_ne!(l1[EDX] & bit, 0, "leaf 1 EDX {bit:#x} kept");
        }
        // Processor type cleared, APIC ID cleared, the rest of EBX kept.
        assert_eq!(l1[EAX], 0x0009_00f1);
        assert_eq!(l1[EBX], 0x0010_0800);
    }

    #[test]
    fn hypervisor_bit_set_even_if_host_lacks_it() {
        let mut h = intel_host_all();
        h.set(1, 0, [0x306f1, 0, 0, 0]);
        let p = policy(&h);
        assert_eq!(p.guest_cpuid(1, 0, &ctx())[ECX], feat::l1c::HYPERVISOR);
    }

    #[test]
    fn leaf7_filtering() {
        let p = policy(&intel_host_all());
        let l7 = p.guest_cpuid(7, 0, &ctx());
        assert_eq!(l7[EAX], 2, "max subleaf min(host, 2)");
        use feat::l7b::*;
        for bit in [
            TSC_ADJUST,
            SMEP,
            SMAP,
            INVPCID,
            MPX,
            1 << 2,
            1 << 12,
            1 << 15,
        ] {
            assert_eq!(l7[EBX] & bit, 0, "7.0 EBX {bit:#x} hidden");
        }
        assert_eq!(l7[EBX], PV_7B0 | FDP_EXCP_ONLY | NO_FPU_SEL);
        use feat::l7c::*;
        for bit in [UMIP, PKU, OSPKE, 1 << 7, 1 << 29] {
            assert_eq!(l7[ECX] & bit, 0, "7.0 ECX {bit:#x} hidden");
        }
        assert_eq!(l7[ECX], PV_7C0);
        assert_eq!(l7[EDX], PV_7D0);
        assert_eq!(l7[EDX] & feat::l7d::L1D_FLUSH, 0);
        assert_eq!(l7[EDX] & feat::l7d::ARCH_CAPS, 0);
        assert_eq!(p.guest_cpuid(7, 1, &ctx()), [PV_7A1, 0, 0, 0]);
        assert_eq!(p.guest_cpuid(7, 2, &ctx()), [0, 0, 0, PV_7D2]);
        assert_eq!(p.guest_cpuid(7, 3, &ctx()), EMPTY);
        assert_eq!(p.guest_cpuid(7, u32::MAX, &ctx()), EMPTY);
    }

    #[test]
    fn stibp_follows_ibrsb_and_ibpb_offered() {
        let mut h = intel_host_all();
        h.set(7, 0, [0, 0, 0, feat::l7d::IBRSB]);
        let p = policy(&h);
        let d = p.guest_cpuid(7, 0, &ctx())[EDX];
        assert_ne!(d & feat::l7d::STIBP, 0);
        assert_ne!(
            p.guest_cpuid(0x8000_0008, 0, &ctx())[EBX] & feat::e8b::IBPB,
            0
        );
        // Without IBRSB: SSBD goes (deep dependency), no IBPB synthesised.
        h.set(7, 0, [0, 0, 0, feat::l7d::SSBD | feat::l7d::STIBP]);
        h.set(0x8000_0008, 0, [0x3027, 0, 0, 0]);
        let p = policy(&h);
        assert_eq!(p.guest_cpuid(7, 0, &ctx())[EDX], 0);
        assert_eq!(p.guest_cpuid(0x8000_0008, 0, &ctx())[EBX], 0);
    }

    #[test]
    fn extended_leaves_intel() {
        let p = policy(&intel_host_all());
        assert_eq!(
            p.guest_cpuid(0x8000_0000, 0, &ctx()),
            [0x8000_0008, 0, 0, 0]
        );
        let e1 = p.guest_cpuid(0x8000_0001, 0, &ctx());
        assert_eq!(e1[EAX], 0);
        assert_eq!(e1[EBX], 0);
        use feat::e1c::*;
        for bit in [SVM, CR8_LEGACY, DBEXT, MONITORX, 1 << 3, 1 << 10, 1 << 15] {
            assert_eq!(e1[ECX] & bit, 0, "e1 ECX {bit:#x} hidden");
        }
        assert_eq!(e1[ECX], PV_E1C);
        use feat::e1d::*;
        for bit in [SYSCALL, NX, LM, RDTSCP] {
            assert_ne!(e1[EDX] & bit, 0, "e1 EDX {bit:#x} kept");
        }
        assert_eq!(e1[EDX] & PAGE1GB, 0);
        assert_eq!(e1[EDX], PV_E1D, "Intel: no leaf-1 mirror");
        assert_eq!(p.guest_cpuid(0x8000_0002, 0, &ctx())[EAX], 0x6574_6e49);
        assert_eq!(
            p.guest_cpuid(0x8000_0006, 0, &ctx()),
            [0, 0, 0x0100_6040, 0]
        );
        assert_eq!(
            p.guest_cpuid(0x8000_0007, 0, &ctx()),
            EMPTY,
            "no ITSC for domU"
        );
        let e8 = p.guest_cpuid(0x8000_0008, 0, &ctx());
        assert_eq!(e8, [0x27 | (48 << 8), PV_E8B, 0, 0]);
        assert_eq!(p.guest_cpuid(0x8000_0009, 0, &ctx()), EMPTY);
        assert_eq!(p.guest_cpuid(0x8000_0021, 0, &ctx()), EMPTY);
    }

    #[test]
    fn extended_leaves_amd() {
        let h = amd_host_all();
        let p = policy(&h);
        assert_eq!(p.vendor(), Vendor::Amd);
        let e0 = p.guest_cpuid(0x8000_0000, 0, &ctx());
        assert_eq!(e0[EAX], 0x8000_0021, "clamped to Xen's AMD limit");
        assert_eq!(e0[EBX..], p.guest_cpuid(0, 0, &ctx())[EBX..]);
        let l1 = p.guest_cpuid(1, 0, &ctx());
        let e1 = p.guest_cpuid(0x8000_0001, 0, &ctx());
        assert_eq!(e1[EAX], l1[EAX]);
        assert_eq!(e1[EBX], 0x2000_0000);
        assert_eq!(e1[ECX] & feat::e1c::SVM, 0, "SVM hidden");
        assert_eq!(e1[EDX] & COMMON_1D, l1[EDX] & COMMON_1D, "AMD mirror");
        assert_eq!(l1[EDX] & feat::l1d::SEP, 0, "no SYSENTER on AMD long mode");
        assert_eq!(p.guest_cpuid(4, 0, &ctx()), EMPTY, "no leaf 4 on AMD");
        assert_eq!(p.guest_cpuid(0x8000_0005, 0, &ctx()), [5; 4]);
        assert_eq!(p.guest_cpuid(0x8000_000a, 0, &ctx()), EMPTY, "no SVM leaf");
        assert_eq!(p.guest_cpuid(0x8000_0019, 0, &ctx()), EMPTY, "no 1G pages");
        assert_eq!(p.guest_cpuid(0x8000_001a, 0, &ctx()), [6, 0, 0, 0]);
        assert_eq!(p.guest_cpuid(0x8000_001e, 0, &ctx()), EMPTY);
        assert_eq!(p.guest_cpuid(0x8000_0021, 0, &ctx()), [PV_E21A, 0, 0, 0]);
        assert_eq!(p.guest_cpuid(0x8000_0022, 0, &ctx()), EMPTY);
        let e8 = p.guest_cpuid(0x8000_0008, 0, &ctx());
        assert_eq!(e8[ECX], 0x0003_f0ff);
    }

    #[test]
    fn hygon_is_amd_like() {
        let mut h = amd_host_all();
        let (b, d, c) = vendor_regs(b"HygonGenuine");
        h.set(0, 0, [0xd, b, c, d]);
        let p = policy(&h);
        assert_eq!(p.vendor(), Vendor::Hygon);
        assert_eq!(p.guest_cpuid(0x8000_0000, 0, &ctx())[EAX], 0x8000_0021);
    }

    #[test]
    fn basic_leaves_emptied() {
        let p = policy(&intel_host_all());
        assert_eq!(
            p.guest_cpuid(0, 0, &ctx())[EAX],
            0xd,
            "clamped to Xen's basic limit"
        );
        for leaf in [3, 5, 6, 8, 9, 0xa, 0xb, 0xc] {
            assert_eq!(p.guest_cpuid(leaf, 0, &ctx()), EMPTY, "leaf {leaf:#x}");
        }
        assert_eq!(p.guest_cpuid(0xe, 0, &ctx()), EMPTY);
        assert_eq!(p.guest_cpuid(0x16, 0, &ctx()), EMPTY);
        assert_eq!(p.guest_cpuid(0x2000_0000, 0, &ctx()), EMPTY);
        assert_eq!(p.guest_cpuid(0xffff_ffff, 0, &ctx()), EMPTY);
        let l2 = p.guest_cpuid(2, 0, &ctx());
        assert_eq!(l2[EAX] & 0xff, 1);
        let c0 = p.guest_cpuid(4, 0, &ctx());
        assert_eq!(c0, [0x1c00_4121 & 0xffff_c3ff, 0x01c0_003f, 0x3f, 7]);
        assert_eq!(p.guest_cpuid(4, 1, &ctx())[EAX], 0x1c00_4122 & 0xffff_c3ff);
        assert_eq!(p.guest_cpuid(4, 2, &ctx()), EMPTY);
        assert_eq!(p.guest_cpuid(4, 99, &ctx()), EMPTY);
    }

    #[test]
    fn small_host_max_leaf() {
        let mut h = intel_host_all();
        let l0 = h.get(0, 0);
        h.set(0, 0, [5, l0[1], l0[2], l0[3]]);
        let p = policy(&h);
        assert_eq!(p.guest_cpuid(7, 0, &ctx()), EMPTY);
        assert_eq!(p.guest_cpuid(0xd, 0, &ctx()), EMPTY);
        assert_eq!(p.guest_cpuid(1, 0, &ctx())[ECX] & feat::l1c::XSAVE, 0);
        assert_eq!(
            p.guest_cpuid(1, 0, &ctx())[ECX] & feat::l1c::AVX,
            0,
            "AVX needs XSAVE"
        );
    }

    #[test]
    fn xsave_leaf() {
        let p = policy(&intel_host_all());
        // FP|SSE|YMM|OPMASK|ZMM|HI_ZMM, never MPX (3,4).
        assert_eq!(p.xcr0_mask(), 0xe7);
        let d0 = p.guest_cpuid(0xd, 0, &ctx());
        assert_eq!(d0[EAX], 0xe7);
        assert_eq!(d0[EDX], 0);
        assert_eq!(d0[ECX], 1664 + 1024, "max size over allowed components");
        assert_eq!(d0[EBX], 576, "size for the current xcr0 = FP|SSE");
        let c = CpuidContext { xcr0: 0x7, ..ctx() };
        assert_eq!(p.guest_cpuid(0xd, 0, &c)[EBX], 576 + 256);
        let d1 = p.guest_cpuid(0xd, 1, &c);
        assert_eq!(d1[EAX], 0x7, "XSAVES hidden");
        assert_eq!(d1[EBX], 576 + 256, "compressed size");
        let c = CpuidContext {
            xcr0: 0xe7,
            ..ctx()
        };
        // 576+256=832, align 64 → 832, +64 = 896, align → 896, +512 = 1408, +1024 = 2432.
        assert_eq!(p.guest_cpuid(0xd, 1, &c)[EBX], 2432);
        assert_eq!(p.guest_cpuid(0xd, 2, &ctx()), [256, 576, 0, 0]);
        assert_eq!(p.guest_cpuid(0xd, 3, &ctx()), EMPTY, "MPX state hidden");
        assert_eq!(p.guest_cpuid(0xd, 5, &ctx()), [64, 1088, 2, 0]);
        assert_eq!(p.guest_cpuid(0xd, 63, &ctx()), EMPTY);
        assert_eq!(p.guest_cpuid(0xd, 1000, &ctx()), EMPTY);
    }

    #[test]
    fn avx512_needs_avx_and_xsave() {
        let mut h = intel_host_all();
        let mut l1 = h.get(1, 0);
        l1[ECX] &= !feat::l1c::AVX;
        h.set(1, 0, l1);
        let p = policy(&h);
        let l7 = p.guest_cpuid(7, 0, &ctx());
        assert_eq!(l7[EBX] & feat::l7b::AVX512F, 0);
        assert_eq!(l7[EBX] & feat::l7b::AVX2, 0);
        assert_eq!(l7[EDX] & 0xc, 0, "4VNNIW/4FMAPS follow AVX512F");
        assert_eq!(p.guest_cpuid(7, 1, &ctx())[EAX], 0);
        assert_eq!(p.xcr0_mask(), 0x3);
    }

    #[test]
    fn osxsave_and_ospke_are_dynamic() {
        let p = policy(&intel_host_all());
        let c = CpuidContext {
            guest_cr4: CR4_OSXSAVE | CR4_PKE,
            ..ctx()
        };
        assert_ne!(p.guest_cpuid(1, 0, &c)[ECX] & feat::l1c::OSXSAVE, 0);
        assert_ne!(p.guest_cpuid(7, 0, &c)[ECX] & feat::l7c::OSPKE, 0);
        // The enlightened (forced) CPUID of the kernel sees Xen's OSXSAVE...
        let forced = CpuidContext {
            source: CpuidSource::Forced,
            xen_cr4: CR4_OSXSAVE,
            ..ctx()
        };
        assert_ne!(p.guest_cpuid(1, 0, &forced)[ECX] & feat::l1c::OSXSAVE, 0);
        // ...but not user mode, nor a faulted CPUID.
        let user = CpuidContext {
            kernel_mode: false,
            ..forced
        };
        assert_eq!(p.guest_cpuid(1, 0, &user)[ECX] & feat::l1c::OSXSAVE, 0);
        let faulted = CpuidContext {
            source: CpuidSource::Faulted,
            ..forced
        };
        assert_eq!(p.guest_cpuid(1, 0, &faulted)[ECX] & feat::l1c::OSXSAVE, 0);
    }

    #[test]
    fn hardware_domain_leaks() {
        let h = intel_host_all();
        let opts = PolicyOptions {
            hardware_domain: true,
            ..PolicyOptions::default()
        };
        let p = PvCpuidPolicy::from_host(|l, s| h.get(l, s), opts);
        let l1 = p.guest_cpuid(1, 0, &ctx());
        assert_ne!(
            l1[ECX] & feat::l1c::MONITOR,
            0,
            "faulted CPUID sees MONITOR"
        );
        assert_ne!(l1[ECX] & feat::l1c::EIST, 0);
        assert_ne!(l1[EDX] & feat::l1d::MTRR, 0);
        assert_eq!(p.guest_cpuid(5, 0, &ctx()), [0x40, 0x40, 3, 0x1120]);
        let forced = CpuidContext {
            source: CpuidSource::Forced,
            ..ctx()
        };
        assert_eq!(p.guest_cpuid(1, 0, &forced)[ECX] & feat::l1c::MONITOR, 0);
        assert_eq!(p.guest_cpuid(5, 0, &forced), EMPTY);
        let user = CpuidContext {
            kernel_mode: false,
            ..ctx()
        };
        assert_eq!(
            p.guest_cpuid(1, 0, &user)[ECX] & (feat::l1c::MONITOR | feat::l1c::EIST),
            0
        );
        assert_eq!(p.guest_cpuid(0x8000_0007, 0, &ctx())[EDX], feat::e7d::ITSC);
        // A domU never sees them.
        let p = policy(&h);
        assert_eq!(p.guest_cpuid(5, 0, &ctx()), EMPTY);
        assert_eq!(p.guest_cpuid(1, 0, &ctx())[EDX] & feat::l1d::MTRR, 0);
    }

    #[test]
    fn xen_leaves() {
        let p = policy(&intel_host_all());
        let c = CpuidContext {
            time: XenTimeLeaf {
                vtsc: false,
                host_tsc_is_safe: true,
                tsc_mode: 0,
                tsc_khz: 2_000_000,
                incarnation: 3,
                vtsc_offset: 0x1_2345_6789,
                mul_frac: 0x8000_0000,
                shift: -1,
                cpu_khz: 2_100_000,
            },
            upper_mfn_bound: 0xf_ffff,
            ..ctx()
        };
        let b = XEN_CPUID_FIRST_LEAF;
        let l0 = p.guest_cpuid(b, 0, &c);
        assert_eq!(
            l0,
            [
                b + 5,
                XEN_CPUID_SIGNATURE_EBX,
                XEN_CPUID_SIGNATURE_ECX,
                XEN_CPUID_SIGNATURE_EDX
            ]
        );
        let mut sig = [0u8; 12];
        sig[..4].copy_from_slice(&l0[1].to_le_bytes());
        sig[4..8].copy_from_slice(&l0[2].to_le_bytes());
        sig[8..].copy_from_slice(&l0[3].to_le_bytes());
        assert_eq!(&sig, b"XenVMMXenVMM");
        assert_eq!(p.guest_cpuid(b + 1, 0, &c), [(4 << 16) | 17, 0, 0, 0]);
        assert_eq!(p.guest_cpuid(b + 2, 0, &c), [1, 0x4000_0000, 1, 0]);
        assert_eq!(p.guest_cpuid(b + 3, 0, &c), [0b110, 0, 2_000_000, 3]);
        assert_eq!(
            p.guest_cpuid(b + 3, 1, &c),
            [0x2345_6789, 1, 0x8000_0000, u32::MAX]
        );
        assert_eq!(p.guest_cpuid(b + 3, 2, &c), [2_100_000, 0, 0, 0]);
        assert_eq!(p.guest_cpuid(b + 3, 3, &c), EMPTY);
        assert_eq!(p.guest_cpuid(b + 4, 0, &c), EMPTY, "HVM leaf zero for PV");
        assert_eq!(p.guest_cpuid(b + 5, 0, &c), [0, 20 + 12, 0, 0]);
        assert_eq!(p.guest_cpuid(b + 5, 1, &c), EMPTY);
        assert_eq!(p.guest_cpuid(b + 6, 0, &c), EMPTY);
        assert_eq!(
            p.guest_cpuid(b + 0x100, 0, &c),
            EMPTY,
            "no Viridian shift for PV"
        );
        assert_eq!(p.guest_cpuid(b + 0x1ff, 0, &c), EMPTY);
        // An emulated TSC reports offset 0.
        let v = CpuidContext {
            time: XenTimeLeaf {
                vtsc: true,
                ..c.time
            },
            ..c
        };
        assert_eq!(p.guest_cpuid(b + 3, 1, &v)[..2], [0, 0]);
        assert_eq!(p.guest_cpuid(b + 3, 0, &v)[EAX], 0b111);
        // Without PRESERVE_AD.
        let h = intel_host_all();
        let opts = PolicyOptions {
            mmu_pt_update_preserve_ad: false,
            ..PolicyOptions::default()
        };
        let p = PvCpuidPolicy::from_host(|l, s| h.get(l, s), opts);
        assert_eq!(p.guest_cpuid(b + 2, 0, &c)[ECX], 0);
    }

    #[test]
    fn no_extended_leaves_host() {
        let mut h = intel_host_all();
        h.set(0x8000_0000, 0, [0, 0, 0, 0]);
        let p = policy(&h);
        assert_eq!(
            p.guest_cpuid(0x8000_0000, 0, &ctx()),
            [0x8000_0000, 0, 0, 0]
        );
        assert_eq!(p.guest_cpuid(0x8000_0001, 0, &ctx()), EMPTY);
    }

    #[test]
    fn xcr0_validity() {
        assert!(valid_xcr0(0x1));
        assert!(valid_xcr0(0x3));
        assert!(valid_xcr0(0x7));
        assert!(valid_xcr0(0xe7));
        assert!(valid_xcr0(0x1f));
        assert!(!valid_xcr0(0x0));
        assert!(!valid_xcr0(0x2), "FP mandatory");
        assert!(!valid_xcr0(0x5), "YMM needs SSE");
        assert!(!valid_xcr0(0x67), "AVX-512 all or nothing");
        assert!(!valid_xcr0(0xe3), "AVX-512 needs YMM");
        assert!(!valid_xcr0(0xb), "BNDREGS needs BNDCSR");
    }

    #[test]
    fn never_panics_on_any_leaf() {
        let p = policy(&amd_host_all());
        for leaf in (0..0x30)
            .chain(0x4000_0000..0x4000_0210)
            .chain(0x8000_0000..0x8000_0030)
        {
            for sub in [0, 1, 2, 62, 63, 64, u32::MAX] {
                let _ = p.guest_cpuid(leaf, sub, &ctx());
            }
        }
        for leaf in [
            0x3fff_ffff,
            0x7fff_ffff,
            0x8000_ffff,
            0x8001_0000,
            0xc000_0000,
            u32::MAX,
        ] {
            assert_eq!(p.guest_cpuid(leaf, 0, &ctx()), EMPTY);
        }
    }

    #[test]
    fn levelling_clears_features_and_their_dependents() {
        use crate::cpuid_level::{audit, Levelling, ECX};
        let h = intel_host_all();
        let host = |l, s| h.get(l, s);
        let def = policy(&h);
        let same = PvCpuidPolicy::from_host_levelled(
            host,
            PolicyOptions::default(),
            &Levelling::default(),
        );
        assert_eq!(same, def);
        let ser = def.serialise();
        let mut sub = ser.as_slice().to_vec();
        let l1 = sub.iter_mut().find(|e| e.leaf == 1).unwrap();
        assert_ne!(l1.regs[ECX] & (1 << 20), 0, "sse4_2 offered by default");
        l1.regs[ECX] &= !((1 << 20) | feat::l1c::AVX);
        let lv = audit(ser.as_slice(), ser.as_slice(), &sub).unwrap();
        let p = PvCpuidPolicy::from_host_levelled(host, PolicyOptions::default(), &lv);
        let l1 = p.guest_cpuid(1, 0, &ctx());
        assert_eq!(l1[ECX] & (1 << 20), 0, "sse4_2 levelled away");
        assert_eq!(l1[ECX] & feat::l1c::AVX, 0);
        assert_eq!(l1[ECX] & feat::l1c::FMA, 0, "FMA needs AVX");
        assert_eq!(
            p.guest_cpuid(7, 0, &ctx())[1] & feat::l7b::AVX2,
            0,
            "AVX2 needs AVX"
        );
        assert_eq!(p.xcr0_mask() & XSTATE_YMM, 0, "no YMM state without AVX");
        assert_ne!(l1[ECX] & feat::l1c::HYPERVISOR, 0);
        // Everything else as before.
        assert_eq!(l1[3], def.guest_cpuid(1, 0, &ctx())[3]);
        // A second levelling is checked against the default, not the
        // current policy, and what `current` says is accepted back.
        let cur = p.serialise();
        assert!(audit(ser.as_slice(), cur.as_slice(), cur.as_slice()).is_ok());
    }
}
