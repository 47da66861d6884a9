//! The CPUID view of an HVM guest.
//!
//! **Owns**: the HVM CPUID policy of a domain ([`HvmCpuidPolicy`], computed
//! once from the host's raw leaves, the vCPU count and a few hardware
//! capabilities) and the per-vCPU lookup ([`HvmCpuidPolicy::lookup`]) that
//! fills in the per-vCPU parts (APIC ids, OSXSAVE/OSPKE, XSAVE size, Xen's
//! vCPU id leaf).
//!
//! **Trusts**: the caller's host-CPUID closure (the `cpuid` instruction on
//! the metal, a table in tests). Leaf and subleaf come from the guest: every
//! value outside the policy reads as zeros, nothing indexes out of bounds.
//!
//! **Follows** Xen 4.17 (`xen/arch/x86/cpu-policy.c`, `cpuid.c`:
//! `guest_cpuid`, `cpuid_hypervisor_leaves`; `tools/libs/guest/xg_cpuid_x86.c`
//! for the legacy topology) where it matters to a guest:
//! - leaf 1 ECX[31] (hypervisor) set; VMX, SVM, SMX and everything whose MSRs
//!   [`super::msr`] refuses (MCE/MCA, DS/PEBS, thermal, SPEC_CTRL family,
//!   ARCH_CAPABILITIES, TSC_ADJUST, XSS, perf counters) hidden, so an OS that
//!   trusts CPUID never takes a #GP on an MSR it was promised (DEVIATION:
//!   Xen 4.17 virtualises SPEC_CTRL/PRED_CMD, MCE banks and TSC_ADJUST and
//!   so offers those features);
//! - leaf 6 says only ARAT, leaves 3, 5, 8..0xa, 0xc read as zeros; the
//!   guest-physical width is capped at 48 bits (4-level nested paging);
//! - APIC ids are `2 * vcpu_id` (leaf 1 EBX[31:24], leaf 0xb EDX) and the
//!   topology leaves describe N single-threaded cores of a 2-thread-per-core
//!   package, which is what Xen's legacy topology ends up saying.
//!   DEVIATION: Xen derives the counts by doubling the host's values; Oxen
//!   computes them from N (the host's topology says nothing about the guest).
//! - Xen's leaves at `0x40000000` (no Viridian, so never `0x40000100`).
//!   Leaf `+4` EAX: VCPU_ID_PRESENT, DOMID_PRESENT and UPCALL_VECTOR always;
//!   IOMMU_MAPPINGS because Oxen has no IOMMU (Xen sets it when IOMMU is
//!   off); APIC_ACCESS_VIRT / X2APIC_VIRT only from [`HvmHwCaps`] (VMX APIC
//!   virtualisation), never on SVM.
//! - Extended leaves stop at `0x80000008` on both vendors (DEVIATION: Xen
//!   offers AMD guests up to `0x80000021`; TOPOEXT is hidden accordingly).

use crate::cpuid_policy::{Leaf, Vendor, XenTimeLeaf};
use hypercall_abi::arch_x86::{
    XEN_CPUID_FIRST_LEAF, XEN_CPUID_HYPERCALL_PAGES, XEN_CPUID_LEAF_HVM, XEN_CPUID_LEAF_HYPERCALL,
    XEN_CPUID_LEAF_TIME, XEN_CPUID_LEAF_VERSION, XEN_CPUID_MAX_NUM_LEAVES, XEN_CPUID_SIGNATURE_EBX,
    XEN_CPUID_SIGNATURE_ECX, XEN_CPUID_SIGNATURE_EDX, XEN_HVM_CPUID_APIC_ACCESS_VIRT,
    XEN_HVM_CPUID_DOMID_PRESENT, XEN_HVM_CPUID_IOMMU_MAPPINGS, XEN_HVM_CPUID_UPCALL_VECTOR,
    XEN_HVM_CPUID_VCPU_ID_PRESENT, XEN_HVM_CPUID_X2APIC_VIRT, XEN_HYPERCALL_MSR,
};
use hypercall_abi::version::XEN_VERSION;

const EAX: usize = 0;
const EBX: usize = 1;
const ECX: usize = 2;
const EDX: usize = 3;
const EMPTY: Leaf = [0; 4];

/// Highest basic leaf the guest sees (the XSAVE leaf).
pub const MAX_BASIC: u32 = 0xd;
/// Highest extended leaf the guest sees.
pub const MAX_EXTD: u32 = 0x8000_0008;
/// Leaf 4 subleaves kept (Xen's `CPUID_GUEST_NR_CACHE`).
const NR_CACHE: usize = 6;
/// Leaf 0xd subleaves kept (XSAVE components 0..=62).
const NR_XSTATE: usize = 63;
const NR_EXTD: usize = (MAX_EXTD - 0x8000_0000) as usize + 1;
/// Widest guest-physical address offered (4-level NPT/EPT: 48 bits).
pub const MAX_GUEST_PADDR_BITS: u32 = 48;
/// Most vCPUs whose APIC ids (2 * i) fit leaf 1's 8-bit field.
pub const MAX_VCPUS: u32 = 128;

/// Feature bits by leaf and register (Intel SDM vol 2A "CPUID"; AMD APM vol 3 appendix E).
pub mod bits {
    /// Leaf 6 EAX: APIC timer always running (ARAT).
    pub const L6A_ARAT: u32 = 1 << 2;
    /// Leaf 1 ECX: MONITOR/MWAIT.
    pub const L1C_MONITOR: u32 = 1 << 3;
    /// Leaf 1 ECX: VMX.
    pub const L1C_VMX: u32 = 1 << 5;
    /// Leaf 1 ECX: x2APIC.
    pub const L1C_X2APIC: u32 = 1 << 21;
    /// Leaf 1 ECX: TSC deadline timer.
    pub const L1C_TSC_DEADLINE: u32 = 1 << 24;
    /// Leaf 1 ECX: XSAVE.
    pub const L1C_XSAVE: u32 = 1 << 26;
    /// Leaf 1 ECX: OSXSAVE (CR4.OSXSAVE mirror).
    pub const L1C_OSXSAVE: u32 = 1 << 27;
    /// Leaf 1 ECX: running under a hypervisor.
    pub const L1C_HYPERVISOR: u32 = 1 << 31;
    /// Leaf 1 ECX bits hidden: DTES64 2, MONITOR 3, DS_CPL 4, VMX 5, SMX 6,
    /// EIST 7, TM2 8, SDBG 11, xTPR 14, PDCM 15, DCA 18, OSXSAVE 27 (dynamic).
    pub const L1C_HIDE: u32 = (1 << 2)
        | L1C_MONITOR
        | (1 << 4)
        | L1C_VMX
        | (1 << 6)
        | (1 << 7)
        | (1 << 8)
        | (1 << 11)
        | (1 << 14)
        | (1 << 15)
        | (1 << 18)
        | L1C_OSXSAVE;
    /// Leaf 1 EDX: MCE 7, MCA 14, PSN 18, DS 21, ACPI 22, TM 29, PBE 31 hidden.
    pub const L1D_HIDE: u32 =
        (1 << 7) | (1 << 14) | (1 << 18) | (1 << 21) | (1 << 22) | (1 << 29) | (1 << 31);
    /// Leaf 1 EDX: APIC present.
    pub const L1D_APIC: u32 = 1 << 9;
    /// Leaf 1 EDX: hyper-threading (EBX[23:16] valid).
    pub const L1D_HTT: u32 = 1 << 28;
    /// Leaf 7.0 EBX hidden: TSC_ADJUST 1, SGX 2, PQM 12, MPX 14, PQE 15, PT 25.
    pub const L7B_HIDE: u32 = (1 << 1) | (1 << 2) | (1 << 12) | (1 << 14) | (1 << 15) | (1 << 25);
    /// Leaf 7.0 ECX: OSPKE (CR4.PKE mirror).
    pub const L7C_OSPKE: u32 = 1 << 4;
    /// Leaf 7.0 ECX hidden: OSPKE 4 (dynamic), WAITPKG 5, CET_SS 7, TME 13,
    /// ENQCMD 29, SGX_LC 30, PKS 31.
    pub const L7C_HIDE: u32 =
        L7C_OSPKE | (1 << 5) | (1 << 7) | (1 << 13) | (1 << 29) | (1 << 30) | (1 << 31);
    /// Leaf 7.0 EDX kept: AVX512_4VNNIW 2, AVX512_4FMAPS 3, FSRM 4,
    /// VP2INTERSECT 8, MD_CLEAR 10, SERIALIZE 14, AMX_BF16 22, AVX512_FP16 23,
    /// AMX_TILE 24, AMX_INT8 25. The rest (IBRS/STIBP/SSBD/L1D_FLUSH/
    /// ARCH_CAPS/CET_IBT/HYBRID...) promise MSRs the guest does not get.
    pub const L7D_KEEP: u32 = (1 << 2)
        | (1 << 3)
        | (1 << 4)
        | (1 << 8)
        | (1 << 10)
        | (1 << 14)
        | (1 << 22)
        | (1 << 23)
        | (1 << 24)
        | (1 << 25);
    /// Leaf 0xd.1 EAX kept: XSAVEOPT 0, XSAVEC 1, XGETBV1 2 (XSAVES hidden: no XSS).
    pub const LDA_KEEP: u32 = 0b111;
    /// XCR0 components offered: x87, SSE, AVX, AVX-512 (opmask, ZMM_Hi256,
    /// Hi16_ZMM), PKRU, AMX (TILECFG, TILEDATA).
    pub const XCR0_KEEP: u64 =
        (1 << 0) | (1 << 1) | (1 << 2) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 9) | (3 << 17);
    /// Leaf 0x80000001 ECX hidden: CmpLegacy 1, SVM 2, OSVW 9, IBS 10,
    /// SKINIT 12, WDT 13, LWP 15, NODEID 19, TOPOEXT 22, PERFCTR_CORE 23,
    /// PERFCTR_NB 24, DBX 26, PERFCTR_LLC 28, MWAITX 29.
    pub const E1C_HIDE: u32 = (1 << 1)
        | (1 << 2)
        | (1 << 9)
        | (1 << 10)
        | (1 << 12)
        | (1 << 13)
        | (1 << 15)
        | (1 << 19)
        | (1 << 22)
        | (1 << 23)
        | (1 << 24)
        | (1 << 26)
        | (1 << 28)
        | (1 << 29);
    /// Leaf 0x80000001 ECX: SVM.
    pub const E1C_SVM: u32 = 1 << 2;
    /// Leaf 0x80000001 EDX: RDTSCP.
    pub const E1D_RDTSCP: u32 = 1 << 27;
    /// Leaf 0x80000007 EDX kept: invariant TSC 8.
    pub const E7D_KEEP: u32 = 1 << 8;
    /// Leaf 0x80000008 EBX kept: CLZERO 0, XSAVEERPTR 2, WBNOINVD 9.
    pub const E8B_KEEP: u32 = (1 << 0) | (1 << 2) | (1 << 9);
}

/// VMX APIC-virtualisation controls the glue found (all false on SVM),
/// for Xen's leaf `+4` EAX.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmHwCaps {
    /// Secondary control "APIC-register virtualization".
    pub apic_reg_virt: bool,
    /// Secondary control "virtualize x2APIC mode".
    pub virtualize_x2apic_mode: bool,
    /// Secondary control "virtual-interrupt delivery".
    pub virtual_intr_delivery: bool,
}

/// Per-domain inputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HvmCpuidConfig {
    /// Number of vCPUs (1..=[`MAX_VCPUS`]; clamped into that range).
    pub vcpus: u32,
    /// The domain's id (Xen leaf `+4` ECX).
    pub domid: u16,
    /// Hardware APIC virtualisation.
    pub hw: HvmHwCaps,
    /// Xen time-leaf parameters (leaf `+3`).
    pub time: XenTimeLeaf,
}

/// Per-call state of the asking vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuCpuidState {
    /// The vCPU's index (APIC id `2 * vcpu_id`).
    pub vcpu_id: u32,
    /// Guest CR4 (OSXSAVE bit 18, PKE bit 22 mirrored into CPUID).
    pub cr4: u64,
    /// Guest XCR0 (leaf 0xd.0 EBX).
    pub xcr0: u64,
}

impl Default for VcpuCpuidState {
    fn default() -> Self {
        Self {
            vcpu_id: 0,
            cr4: 0,
            xcr0: 0b11,
        }
    }
}

const CR4_OSXSAVE: u64 = 1 << 18;
const CR4_PKE: u64 = 1 << 22;

/// An HVM domain's CPUID table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HvmCpuidPolicy {
    vendor: Vendor,
    cfg: HvmCpuidConfig,
    basic: [Leaf; MAX_BASIC as usize + 1],
    cache: [Leaf; NR_CACHE],
    feat7: Leaf,
    xstate: [Leaf; NR_XSTATE],
    extd: [Leaf; NR_EXTD],
    xcr0_mask: u64,
    host_rdtscp: bool,
}

/// ceil(log2(n)) for n >= 1.
fn ceil_log2(n: u32) -> u32 {
    32 - n.saturating_sub(1).leading_zeros()
}

impl HvmCpuidPolicy {
    /// Computes the policy. `host(leaf, subleaf)` returns what the host CPU
    /// returns; it is only asked for leaves the host advertises.
    pub fn from_host(host: impl Fn(u32, u32) -> Leaf, cfg: HvmCpuidConfig) -> Self {
        let mut cfg = cfg;
        cfg.vcpus = cfg.vcpus.clamp(1, MAX_VCPUS);
        let n = cfg.vcpus;
        let l0 = host(0, 0);
        let vendor = Vendor::from_leaf0(l0);
        let host_max = l0[EAX];
        let hb = |leaf: u32, sub: u32| {
            if leaf <= host_max {
                host(leaf, sub)
            } else {
                EMPTY
            }
        };
        let host_emax = host(0x8000_0000, 0)[EAX];
        let he = |leaf: u32| {
            if (0x8000_0000..=host_emax).contains(&leaf) && host_emax >> 16 == 0x8000 {
                host(leaf, 0)
            } else {
                EMPTY
            }
        };

        let mut basic = [EMPTY; MAX_BASIC as usize + 1];
        basic[0] = [MAX_BASIC, l0[EBX], l0[ECX], l0[EDX]];
        let mut l1 = hb(1, 0);
        l1[ECX] &= !bits::L1C_HIDE;
        l1[ECX] |= bits::L1C_HYPERVISOR | bits::L1C_X2APIC | bits::L1C_TSC_DEADLINE;
        l1[EDX] &= !bits::L1D_HIDE;
        l1[EDX] |= bits::L1D_APIC | bits::L1D_HTT;
        // EBX: brand 7:0 and CLFLUSH size 15:8 from the host; logical
        // processor count 23:16 covers APIC ids 0..2N; APIC id per vCPU.
        l1[EBX] = (l1[EBX] & 0xffff) | ((2 * n).min(255) << 16);
        basic[1] = l1;
        basic[2] = hb(2, 0);
        // Leaf 6: only ARAT (EAX[2]): the vLAPIC timer never stops in a C-state.
        // DEVIATION: Xen 4.17 offers HVM guests no leaf-6 bits (KVM sets ARAT).
        basic[6] = [bits::L6A_ARAT, 0, 0, 0];

        let core_bits = ceil_log2(n);
        let mut cache = [EMPTY; NR_CACHE];
        if !vendor.is_amd_like() {
            for (i, c) in cache.iter_mut().enumerate() {
                let mut l = hb(4, i as u32);
                if l[EAX] & 0x1f == 0 {
                    break;
                }
                // EAX[31:26] addressable core ids - 1; EAX[25:14] threads
                // sharing the cache - 1 = 0 (as Xen's legacy topology).
                l[EAX] = (l[EAX] & 0x3fff) | (((1 << core_bits) - 1) << 26);
                *c = l;
            }
        }

        let mut f7 = hb(7, 0);
        f7[EAX] = 0; // only subleaf 0
        f7[EBX] &= !bits::L7B_HIDE;
        f7[ECX] &= !bits::L7C_HIDE;
        f7[EDX] &= bits::L7D_KEEP;

        let mut xstate = [EMPTY; NR_XSTATE];
        let mut xcr0_mask = 0;
        if l1[ECX] & bits::L1C_XSAVE != 0 {
            let d0 = hb(0xd, 0);
            xcr0_mask = (u64::from(d0[EAX]) | (u64::from(d0[EDX]) << 32)) & bits::XCR0_KEEP;
            if f7[ECX] & (1 << 3) == 0 {
                xcr0_mask &= !(1 << 9); // PKRU needs PKU
            }
            for (i, x) in xstate.iter_mut().enumerate().skip(2) {
                if xcr0_mask & (1 << i) != 0 {
                    *x = hb(0xd, i as u32);
                    x[ECX] &= 0b10; // XSS flag clear; keep 64-byte alignment bit
                    x[EDX] = 0;
                }
            }
            let mut d1 = hb(0xd, 1);
            d1 = [d1[EAX] & bits::LDA_KEEP, 0, 0, 0];
            xstate[1] = d1;
            let max_size = Self::xsave_size_of(&xstate, xcr0_mask);
            xstate[0] = [
                xcr0_mask as u32,
                max_size,
                max_size,
                (xcr0_mask >> 32) as u32,
            ];
        } else {
            l1[ECX] &= !bits::L1C_XSAVE;
            basic[1] = l1;
        }

        let mut extd = [EMPTY; NR_EXTD];
        for (i, e) in extd.iter_mut().enumerate() {
            *e = he(0x8000_0000 + i as u32);
        }
        let host_rdtscp = extd[1][EDX] & bits::E1D_RDTSCP != 0;
        extd[0][EAX] = MAX_EXTD;
        extd[1][ECX] &= !bits::E1C_HIDE;
        extd[7] = [0, 0, 0, extd[7][EDX] & bits::E7D_KEEP];
        // Guest-physical width: at most the 48 bits a 4-level nested walk
        // translates (Xen's `paging_max_paddr_bits` with HAP).
        let pa = (extd[8][EAX] & 0xff).min(MAX_GUEST_PADDR_BITS);
        extd[8][EAX] = (extd[8][EAX] & !0xff) | pa;
        extd[8][EBX] &= bits::E8B_KEEP;
        extd[8][EDX] = 0;
        extd[8][ECX] = if vendor.is_amd_like() {
            // NC 7:0 = threads - 1, ApicIdSize 15:12 (as Xen's doubling).
            ((2 * n - 1).min(255)) | (ceil_log2(2 * n) << 12)
        } else {
            0
        };
        Self {
            vendor,
            cfg,
            basic,
            cache,
            feat7: f7,
            xstate,
            extd,
            xcr0_mask,
            host_rdtscp,
        }
    }

    /// The policy of a levelled domain (`XEN_DOMCTL_set_cpu_policy`):
    /// [`Self::from_host`] over host leaves masked by `lv`, then its own
    /// feature words masked (the bits it forces on, such as x2APIC or
    /// HYPERVISOR, can be levelled away too) and the XSAVE components
    /// of features levelled away dropped.
    pub fn from_host_levelled(
        host: impl Fn(u32, u32) -> Leaf,
        cfg: HvmCpuidConfig,
        lv: &crate::cpuid_level::Levelling,
    ) -> Self {
        let mut p = Self::from_host(|l, s| lv.mask_host_leaf(l, s, host(l, s)), cfg);
        p.basic[1] = lv.mask_leaf(1, 0, p.basic[1]);
        p.basic[6] = lv.mask_leaf(6, 0, p.basic[6]);
        p.feat7 = lv.mask_leaf(7, 0, p.feat7);
        p.xstate[1] = lv.mask_leaf(0xd, 1, p.xstate[1]);
        for i in [1, 7, 8] {
            p.extd[i] = lv.mask_leaf(0x8000_0000 | i as u32, 0, p.extd[i]);
        }
        if p.basic[1][ECX] & bits::L1C_XSAVE == 0 {
            p.xcr0_mask = 0;
            p.xstate = [EMPTY; NR_XSTATE];
        } else {
            if p.basic[1][ECX] & (1 << 28) == 0 {
                p.xcr0_mask &= !((1 << 2) | (7 << 5));
            }
            if p.feat7[EBX] & (1 << 16) == 0 {
                p.xcr0_mask &= !(7 << 5);
            }
            for (i, x) in p.xstate.iter_mut().enumerate().skip(2) {
                if p.xcr0_mask & (1 << i) == 0 {
                    *x = EMPTY;
                }
            }
            let size = Self::xsave_size_of(&p.xstate, p.xcr0_mask);
            p.xstate[0] = [p.xcr0_mask as u32, size, size, (p.xcr0_mask >> 32) as u32];
        }
        p
    }

    /// The policy as `XEN_DOMCTL_get_cpu_policy` hands it out: what vCPU
    /// 0 with CR4 and XCR0 at reset would read.
    pub fn serialise(&self) -> crate::cpuid_level::Entries {
        let v = VcpuCpuidState::default();
        crate::cpuid_level::serialise(|l, s| self.lookup(&v, l, s))
    }

    fn xsave_size_of(xstate: &[Leaf; NR_XSTATE], xcr0: u64) -> u32 {
        let mut size = 512 + 64; // legacy area + XSAVE header
        for (i, x) in xstate.iter().enumerate().skip(2) {
            if xcr0 & (1 << i) != 0 {
                size = size.max(x[EBX].saturating_add(x[EAX]));
            }
        }
        size
    }

    /// Size of a compacted (XSAVEC) area for `xcr0`: components in order,
    /// 64-byte aligned where leaf 0xd.i ECX[1] says so (SDM vol 1 §13.4.3).
    fn compressed_size(&self, xcr0: u64) -> u32 {
        let mut size: u32 = 512 + 64;
        for (i, x) in self.xstate.iter().enumerate().skip(2) {
            if xcr0 & (1 << i) != 0 {
                if x[ECX] & 0b10 != 0 {
                    size = size.saturating_add(63) & !63;
                }
                size = size.saturating_add(x[EAX]);
            }
        }
        size
    }

    /// Guest physical address width (CPUID 0x80000008 EAX[7:0]).
    pub fn phys_addr_bits(&self) -> u32 {
        self.extd[8][EAX] & 0xff
    }

    /// Whether a CPUID feature bit is offered: `leaf` 1, 7 or 0x80000001,
    /// register index 0..=3 (EAX..EDX), bit 0..=31.
    pub fn has(&self, leaf: u32, reg: usize, bit: u32) -> bool {
        let l = match leaf {
            1 => self.basic[1],
            7 => self.feat7,
            0x8000_0001 => self.extd[1],
            _ => return false,
        };
        bit < 32 && l.get(reg).is_some_and(|r| r & (1 << bit) != 0)
    }

    /// The host's vendor.
    pub fn vendor(&self) -> Vendor {
        self.vendor
    }

    /// The vCPU count the topology describes.
    pub fn vcpus(&self) -> u32 {
        self.cfg.vcpus
    }

    /// XCR0 bits the guest may set.
    pub fn xcr0_mask(&self) -> u64 {
        self.xcr0_mask
    }

    /// RDTSCP (and so IA32_TSC_AUX) is offered.
    pub fn has_rdtscp(&self) -> bool {
        self.extd[1][EDX] & bits::E1D_RDTSCP != 0
    }

    /// The guest's APIC id for vCPU `vcpu_id` (Xen: `vcpu_id * 2`).
    pub fn apic_id(vcpu_id: u32) -> u32 {
        vcpu_id.wrapping_mul(2)
    }

    /// What `cpuid(leaf, subleaf)` returns to vCPU `v`.
    pub fn lookup(&self, v: &VcpuCpuidState, leaf: u32, subleaf: u32) -> Leaf {
        let apic = Self::apic_id(v.vcpu_id);
        match leaf {
            0x4000_0000..=0x4000_00ff => self.xen_leaf(v, leaf - XEN_CPUID_FIRST_LEAF, subleaf),
            1 => {
                let mut r = self.basic[1];
                r[EBX] = (r[EBX] & 0x00ff_ffff) | ((apic & 0xff) << 24);
                if v.cr4 & CR4_OSXSAVE != 0 && r[ECX] & bits::L1C_XSAVE != 0 {
                    r[ECX] |= bits::L1C_OSXSAVE;
                }
                r
            }
            4 => self.cache.get(subleaf as usize).copied().unwrap_or(EMPTY),
            7 if subleaf == 0 => {
                let mut r = self.feat7;
                if v.cr4 & CR4_PKE != 0 && r[ECX] & (1 << 3) != 0 {
                    r[ECX] |= bits::L7C_OSPKE;
                }
                r
            }
            7 => EMPTY,
            0xb => {
                // x2APIC topology: SMT level (1 bit, one thread present),
                // core level (N cores), then invalid levels.
                let core_shift = 1 + ceil_log2(self.cfg.vcpus);
                let (a, b, ty) = match subleaf {
                    0 => (1, 1, 1),
                    1 => (core_shift, self.cfg.vcpus, 2),
                    _ => (0, 0, 0),
                };
                [a, b, (ty << 8) | (subleaf & 0xff), apic]
            }
            0xd => {
                let mut r = self.xstate.get(subleaf as usize).copied().unwrap_or(EMPTY);
                if subleaf == 0 && r != EMPTY {
                    r[EBX] = Self::xsave_size_of(&self.xstate, v.xcr0 & self.xcr0_mask);
                }
                if subleaf == 1 && r[EAX] & (1 << 1) != 0 {
                    // XSAVEC: compacted size for XCR0 (no XSS states offered).
                    r[EBX] = self.compressed_size(v.xcr0 & self.xcr0_mask);
                }
                r
            }
            0..=MAX_BASIC => self.basic[leaf as usize],
            0x8000_0000..=MAX_EXTD => self.extd[(leaf - 0x8000_0000) as usize],
            _ => EMPTY,
        }
    }

    /// Xen's leaves (`cpuid_hypervisor_leaves`, HVM without Viridian).
    fn xen_leaf(&self, v: &VcpuCpuidState, idx: u32, subleaf: u32) -> Leaf {
        match idx {
            0 => [
                XEN_CPUID_FIRST_LEAF + XEN_CPUID_MAX_NUM_LEAVES,
                XEN_CPUID_SIGNATURE_EBX,
                XEN_CPUID_SIGNATURE_ECX,
                XEN_CPUID_SIGNATURE_EDX,
            ],
            XEN_CPUID_LEAF_VERSION => [XEN_VERSION, 0, 0, 0],
            // ECX's MMU_PT_UPDATE_PRESERVE_AD is PV-only.
            XEN_CPUID_LEAF_HYPERCALL => [XEN_CPUID_HYPERCALL_PAGES, XEN_HYPERCALL_MSR, 0, 0],
            XEN_CPUID_LEAF_TIME => {
                let t = &self.cfg.time;
                match subleaf {
                    0 => [
                        u32::from(t.vtsc)
                            | (u32::from(t.host_tsc_is_safe) << 1)
                            | (u32::from(self.host_rdtscp) << 2),
                        t.tsc_mode,
                        t.tsc_khz,
                        t.incarnation,
                    ],
                    1 => {
                        let off = if t.vtsc { 0 } else { t.vtsc_offset };
                        [
                            off as u32,
                            (off >> 32) as u32,
                            t.mul_frac,
                            i32::from(t.shift) as u32,
                        ]
                    }
                    2 => [t.cpu_khz, 0, 0, 0],
                    _ => EMPTY,
                }
            }
            XEN_CPUID_LEAF_HVM if subleaf == 0 => {
                let hw = &self.cfg.hw;
                let mut a = XEN_HVM_CPUID_IOMMU_MAPPINGS
                    | XEN_HVM_CPUID_VCPU_ID_PRESENT
                    | XEN_HVM_CPUID_DOMID_PRESENT
                    | XEN_HVM_CPUID_UPCALL_VECTOR;
                if hw.apic_reg_virt {
                    a |= XEN_HVM_CPUID_APIC_ACCESS_VIRT;
                }
                if hw.virtualize_x2apic_mode && hw.apic_reg_virt && hw.virtual_intr_delivery {
                    a |= XEN_HVM_CPUID_X2APIC_VIRT;
                }
                [a, v.vcpu_id, u32::from(self.cfg.domid), 0]
            }
            _ => EMPTY, // leaf +5 is PV-only; beyond the max leaf: zeros
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn sig(s: &[u8; 12]) -> Leaf {
        let w = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
        [0x16, w(0), w(8), w(4)]
    }

    /// A host with every feature bit set, to see what gets through.
    fn host(vendor: &[u8; 12]) -> HashMap<(u32, u32), Leaf> {
        let mut h = HashMap::new();
        h.insert((0, 0), sig(vendor));
        h.insert((1, 0), [0x000a_0655, 0x0810_0800, 0xffff_ffff, 0xffff_ffff]);
        for i in 0..4 {
            h.insert((4, i), [0xfc00_4121 + i, 0x01c0_003f, 0x3f, 0]);
        }
        h.insert((7, 0), [2, !0, !0, !0]);
        h.insert((0xd, 0), [0x2ff, 0xa88, 0xa88, 0]);
        h.insert((0xd, 1), [0xf, 0, 0x1900, 0]);
        h.insert((0xd, 2), [256, 576, 0, 0]);
        h.insert((0xd, 5), [64, 832, 0, 0]);
        h.insert((0xd, 6), [512, 896, 0, 0]);
        h.insert((0xd, 7), [1024, 1408, 0, 0]);
        h.insert((0xd, 9), [8, 2432, 0, 0]);
        h.insert((0x8000_0000, 0), [0x8000_0021, 0, 0, 0]);
        h.insert((0x8000_0001, 0), [0, 0, !0, !0]);
        h.insert((0x8000_0007, 0), [0, 0, 0, !0]);
        h.insert((0x8000_0008, 0), [0x3034, !0, 0x3f, 0]);
        h
    }

    fn policy(vendor: &[u8; 12], vcpus: u32) -> HvmCpuidPolicy {
        let h = host(vendor);
        HvmCpuidPolicy::from_host(
            |l, s| h.get(&(l, s)).copied().unwrap_or(EMPTY),
            HvmCpuidConfig {
                vcpus,
                domid: 7,
                ..Default::default()
            },
        )
    }

    const VENDORS: [&[u8; 12]; 2] = [b"GenuineIntel", b"AuthenticAMD"];

    #[test]
    fn hvm_cpuid_signature_and_xen_leaves() {
        for v in VENDORS {
            let p = policy(v, 2);
            let vc = VcpuCpuidState {
                vcpu_id: 1,
                ..Default::default()
            };
            let l = p.lookup(&vc, 0x4000_0000, 0);
            assert_eq!(l[EAX], 0x4000_0005);
            let mut s = [0u8; 12];
            s[0..4].copy_from_slice(&l[EBX].to_le_bytes());
            s[4..8].copy_from_slice(&l[ECX].to_le_bytes());
            s[8..12].copy_from_slice(&l[EDX].to_le_bytes());
            assert_eq!(&s, b"XenVMMXenVMM");
            assert_eq!(p.lookup(&vc, 0x4000_0001, 0), [0x0004_0011, 0, 0, 0]);
            assert_eq!(p.lookup(&vc, 0x4000_0002, 0), [1, 0x4000_0000, 0, 0]);
            // IOMMU_MAPPINGS | VCPU_ID | DOMID | UPCALL_VECTOR, vcpu 1, domid 7.
            assert_eq!(p.lookup(&vc, 0x4000_0004, 0), [0x5c, 1, 7, 0]);
            assert_eq!(p.lookup(&vc, 0x4000_0004, 1), EMPTY);
            assert_eq!(p.lookup(&vc, 0x4000_0005, 0), EMPTY);
            assert_eq!(p.lookup(&vc, 0x4000_0006, 0), EMPTY);
            assert_eq!(p.lookup(&vc, 0x4000_0100, 0), EMPTY);
        }
    }

    #[test]
    fn hvm_cpuid_apic_virt_bits_from_hw() {
        let h = host(b"GenuineIntel");
        let p = HvmCpuidPolicy::from_host(
            |l, s| h.get(&(l, s)).copied().unwrap_or(EMPTY),
            HvmCpuidConfig {
                vcpus: 1,
                hw: HvmHwCaps {
                    apic_reg_virt: true,
                    virtualize_x2apic_mode: true,
                    virtual_intr_delivery: true,
                },
                ..Default::default()
            },
        );
        let a = p.lookup(&VcpuCpuidState::default(), 0x4000_0004, 0)[EAX];
        assert_eq!(a & 0b11, 0b11);
    }

    #[test]
    fn hvm_cpuid_leaf1_hides_vmx_svm_sets_hypervisor() {
        for v in VENDORS {
            let p = policy(v, 1);
            let vc = VcpuCpuidState::default();
            let l1 = p.lookup(&vc, 1, 0);
            assert_eq!(l1[ECX] & bits::L1C_VMX, 0);
            assert_eq!(l1[ECX] & (1 << 6), 0, "SMX");
            assert_eq!(l1[ECX] & bits::L1C_MONITOR, 0);
            assert_ne!(l1[ECX] & bits::L1C_HYPERVISOR, 0);
            assert_ne!(l1[ECX] & bits::L1C_X2APIC, 0);
            assert_eq!(l1[ECX] & bits::L1C_OSXSAVE, 0);
            assert_eq!(
                l1[EDX] & (1 << 7 | 1 << 14 | 1 << 22 | 1 << 29),
                0,
                "MCE/MCA/ACPI/TM"
            );
            assert_eq!(l1[EAX], 0x000a_0655);
            let e1 = p.lookup(&vc, 0x8000_0001, 0);
            assert_eq!(e1[ECX] & bits::E1C_SVM, 0);
            assert_eq!(e1[ECX] & (1 << 1), 0, "CmpLegacy");
            assert_eq!(p.lookup(&vc, 0x8000_0000, 0)[EAX], 0x8000_0008);
            assert_eq!(p.lookup(&vc, 0x8000_0009, 0), EMPTY);
            assert_eq!(p.lookup(&vc, 0, 0)[EAX], 0xd);
            assert_eq!(p.lookup(&vc, 0xe, 0), EMPTY);
            assert_eq!(p.lookup(&vc, 6, 0), [bits::L6A_ARAT, 0, 0, 0]);
            assert_eq!(p.lookup(&vc, 5, 0), EMPTY, "no MONITOR leaf");
            assert_eq!(p.lookup(&vc, 0xa, 0), EMPTY, "no PMU");
            assert_eq!(p.lookup(&vc, 0x16, 0), EMPTY);
            // Leaf 7: no SPEC_CTRL family, TSC_ADJUST, SGX, PT.
            let l7 = p.lookup(&vc, 7, 0);
            assert_eq!(l7[EAX], 0);
            assert_eq!(l7[EDX] & (1 << 26 | 1 << 27 | 1 << 29 | 1 << 31), 0);
            assert_eq!(l7[EBX] & bits::L7B_HIDE, 0);
            assert_eq!(p.lookup(&vc, 7, 1), EMPTY);
            // OSXSAVE/OSPKE follow CR4.
            let vc2 = VcpuCpuidState {
                cr4: CR4_OSXSAVE | CR4_PKE,
                ..vc
            };
            assert_ne!(p.lookup(&vc2, 1, 0)[ECX] & bits::L1C_OSXSAVE, 0);
            assert_ne!(p.lookup(&vc2, 7, 0)[ECX] & bits::L7C_OSPKE, 0);
            // XSAVE: x87|SSE|AVX|AVX-512|PKRU offered, size follows XCR0.
            assert_eq!(p.xcr0_mask(), 0x2e7);
            let d0 = p.lookup(&vc, 0xd, 0);
            assert_eq!((d0[EAX], d0[ECX]), (0x2e7, 2440));
            assert_eq!(d0[EBX], 576);
            let vc3 = VcpuCpuidState { xcr0: 0x7, ..vc };
            assert_eq!(p.lookup(&vc3, 0xd, 0)[EBX], 832);
            // XSAVEC compacted size: 576 + AVX 256 (+ AVX-512 aligned).
            assert_eq!(p.lookup(&vc3, 0xd, 1), [0x7, 832, 0, 0]);
            assert_eq!(p.lookup(&vc, 0xd, 1), [0x7, 576, 0, 0]);
            let vc4 = VcpuCpuidState { xcr0: 0xe7, ..vc };
            assert_eq!(p.lookup(&vc4, 0xd, 1)[EBX], 832 + 64 + 512 + 1024);
            assert_eq!(p.phys_addr_bits(), 48, "host 52 bits capped to 48");
            assert!(p.has(1, ECX, 31) && !p.has(1, ECX, 5) && !p.has(9, 0, 0));
            assert_eq!(p.lookup(&vc, 0xd, 3), EMPTY);
            assert_eq!(p.lookup(&vc, 0xd, 999), EMPTY);
        }
    }

    #[test]
    fn hvm_cpuid_topology_1_2_4_vcpus() {
        for (n, lppp, core_bits) in [(1u32, 2u32, 0u32), (2, 4, 1), (4, 8, 2)] {
            for v in VENDORS {
                let p = policy(v, n);
                for id in 0..n {
                    let vc = VcpuCpuidState {
                        vcpu_id: id,
                        ..Default::default()
                    };
                    let l1 = p.lookup(&vc, 1, 0);
                    assert_eq!(l1[EBX] >> 24, 2 * id);
                    assert_eq!((l1[EBX] >> 16) & 0xff, lppp);
                    assert_eq!(l1[EBX] & 0xffff, 0x0800, "brand/CLFLUSH kept");
                    assert_ne!(l1[EDX] & bits::L1D_HTT, 0);
                    let b0 = p.lookup(&vc, 0xb, 0);
                    assert_eq!(b0, [1, 1, 0x100, 2 * id]);
                    let b1 = p.lookup(&vc, 0xb, 1);
                    assert_eq!(b1, [1 + core_bits, n, 0x201, 2 * id]);
                    assert_eq!(p.lookup(&vc, 0xb, 2), [0, 0, 2, 2 * id]);
                    let e8 = p.lookup(&vc, 0x8000_0008, 0);
                    let l4 = p.lookup(&vc, 4, 0);
                    if v == b"GenuineIntel" {
                        assert_eq!(l4[EAX] >> 26, (1 << core_bits) - 1);
                        assert_eq!((l4[EAX] >> 14) & 0xfff, 0);
                        assert_eq!(e8[ECX], 0);
                    } else {
                        assert_eq!(l4, EMPTY);
                        assert_eq!(e8[ECX] & 0xff, 2 * n - 1);
                        assert_eq!((e8[ECX] >> 12) & 0xf, core_bits + 1);
                    }
                }
            }
        }
    }

    #[test]
    fn hvm_cpuid_never_panics() {
        let p = policy(b"AuthenticAMD", 0); // clamped to 1
        assert_eq!(p.vcpus(), 1);
        let p2 = policy(b"GenuineIntel", u32::MAX);
        assert_eq!(p2.vcpus(), MAX_VCPUS);
        let vc = VcpuCpuidState {
            vcpu_id: u32::MAX,
            cr4: !0,
            xcr0: !0,
        };
        for leaf in [0, 1, 4, 7, 0xb, 0xd, 0x4000_0003, 0x8000_0008, u32::MAX] {
            for sub in [0, 1, 2, 62, 63, u32::MAX] {
                let _ = p.lookup(&vc, leaf, sub);
                let _ = p2.lookup(&vc, leaf, sub);
            }
        }
        // An empty host (all zeros) still gives a consistent, bounded table.
        let e = HvmCpuidPolicy::from_host(|_, _| EMPTY, HvmCpuidConfig::default());
        assert_eq!(e.lookup(&vc, 0xd, 0), EMPTY);
        assert_eq!(e.vendor(), Vendor::Unknown);
    }

    #[test]
    fn levelling_an_hvm_policy() {
        use crate::cpuid_level::{audit, Levelling};
        for v in VENDORS {
            let h = host(v);
            let hl = |l, s| h.get(&(l, s)).copied().unwrap_or(EMPTY);
            let cfg = HvmCpuidConfig {
                vcpus: 2,
                domid: 7,
                ..Default::default()
            };
            let def = HvmCpuidPolicy::from_host(hl, cfg);
            assert_eq!(
                HvmCpuidPolicy::from_host_levelled(hl, cfg, &Levelling::default()),
                def
            );
            let ser = def.serialise();
            let mut sub = ser.as_slice().to_vec();
            let l1 = sub.iter_mut().find(|e| e.leaf == 1).unwrap();
            l1.regs[ECX] &= !((1 << 20) | (1 << 28) | bits::L1C_X2APIC);
            let lv = audit(ser.as_slice(), ser.as_slice(), &sub).unwrap();
            let p = HvmCpuidPolicy::from_host_levelled(hl, cfg, &lv);
            let vc = VcpuCpuidState::default();
            let l1 = p.lookup(&vc, 1, 0);
            assert_eq!(l1[ECX] & ((1 << 20) | (1 << 28) | bits::L1C_X2APIC), 0);
            assert!(!p.has(7, EBX, 5), "AVX2 follows AVX");
            assert_eq!(p.xcr0_mask() & 0b100, 0, "no YMM without AVX");
            assert_eq!(p.lookup(&vc, 0xd, 2), EMPTY);
            assert_eq!(l1[EDX], def.lookup(&vc, 1, 0)[EDX]);
            // Asking for a bit the default hides (VMX) is refused.
            let mut sub = ser.as_slice().to_vec();
            sub.iter_mut().find(|e| e.leaf == 1).unwrap().regs[ECX] |= bits::L1C_VMX;
            assert_eq!(
                audit(ser.as_slice(), ser.as_slice(), &sub)
                    .unwrap_err()
                    .leaf,
                1
            );
        }
    }
}
