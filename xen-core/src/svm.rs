//! AMD-V (SVM) facts, as pure data: what the CPU offers ([`SvmCaps`] from
//! CPUID), the VMCB's layout ([`vmcb`]: the control area and the state
//! save area at the offsets of AMD's APM vol. 2, appendix B), segment
//! attributes in the VMCB's packed form, and the exit codes and the
//! `IOIO` exit's information word.
//!
//! **Owns** the numbers; the hardware glue (`arch::x86_64::svm`) uses them
//! to build VMCBs and decode `#VMEXIT`s. Nothing here touches hardware,
//! so `cargo test` checks the layout and the decoders.

/// What the CPU's SVM offers (CPUID `0x8000_000A`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SvmCaps {
    /// SVM revision.
    pub revision: u8,
    /// Number of ASIDs.
    pub asids: u32,
    /// Nested paging (NPT).
    pub npt: bool,
    /// Next-RIP saved on exits (`nrip-save`).
    pub nrips: bool,
    /// VMCB clean bits.
    pub vmcb_clean: bool,
    /// TLB flush by ASID.
    pub flush_by_asid: bool,
    /// Decode assists (instruction bytes on #NPF).
    pub decode_assists: bool,
}

/// CPUID `0x8000_0001` ECX bit: SVM.
pub const CPUID_SVM: u32 = 1 << 2;
/// CPUID `1` ECX bit: VMX.
pub const CPUID_VMX: u32 = 1 << 5;

/// SVM's capabilities from CPUID `0x8000_0001`.ECX and leaf `0x8000_000A`
/// (EAX, EBX, EDX), or None without SVM.
pub fn detect(ext_ecx: u32, max_ext_leaf: u32, a: (u32, u32, u32)) -> Option<SvmCaps> {
    if ext_ecx & CPUID_SVM == 0 || max_ext_leaf < 0x8000_000a {
        return None;
    }
    let (eax, ebx, edx) = a;
    Some(SvmCaps {
        revision: eax as u8,
        asids: ebx,
        npt: edx & (1 << 0) != 0,
        nrips: edx & (1 << 3) != 0,
        vmcb_clean: edx & (1 << 5) != 0,
        flush_by_asid: edx & (1 << 6) != 0,
        decode_assists: edx & (1 << 7) != 0,
    })
}

/// MSRs SVM adds.
pub mod msr {
    /// `VM_CR`: bit 4 (`SVMDIS`) set means firmware disabled SVM.
    pub const VM_CR: u32 = 0xc001_0114;
    /// `VM_CR.SVMDIS`.
    pub const VM_CR_SVMDIS: u64 = 1 << 4;
    /// `VM_HSAVE_PA`: the host state save area.
    pub const VM_HSAVE_PA: u32 = 0xc001_0117;
    /// `EFER.SVME`.
    pub const EFER_SVME: u64 = 1 << 12;
}

/// The VMCB: byte offsets of its fields (a 4 KiB page).
pub mod vmcb {
    // ---- Control area ----
    /// CR read intercepts (low 16 bits) and writes (high 16).
    pub const INTERCEPT_CR: usize = 0x000;
    /// DR read/write intercepts.
    pub const INTERCEPT_DR: usize = 0x004;
    /// Exception intercepts (bit per vector).
    pub const INTERCEPT_EXCEPTIONS: usize = 0x008;
    /// Intercept vector 3 (`INTERCEPT_*` bits below).
    pub const INTERCEPT_MISC1: usize = 0x00c;
    /// Intercept vector 4 (`INTERCEPT2_*` bits below).
    pub const INTERCEPT_MISC2: usize = 0x010;
    /// I/O permission map's physical address (12 KiB).
    pub const IOPM_BASE_PA: usize = 0x040;
    /// MSR permission map's physical address (8 KiB).
    pub const MSRPM_BASE_PA: usize = 0x048;
    /// TSC offset.
    pub const TSC_OFFSET: usize = 0x050;
    /// Guest ASID (32 bits).
    pub const GUEST_ASID: usize = 0x058;
    /// TLB control (8 bits).
    pub const TLB_CONTROL: usize = 0x05c;
    /// Virtual interrupt control (V_TPR, V_IRQ, ...).
    pub const V_INTR: usize = 0x060;
    /// Interrupt shadow.
    pub const INTERRUPT_SHADOW: usize = 0x068;
    /// Exit code.
    pub const EXITCODE: usize = 0x070;
    /// Exit information 1.
    pub const EXITINFO1: usize = 0x078;
    /// Exit information 2.
    pub const EXITINFO2: usize = 0x080;
    /// Event being delivered when the exit happened.
    pub const EXITINTINFO: usize = 0x088;
    /// Bit 0: nested paging on.
    pub const NP_ENABLE: usize = 0x090;
    /// Event to inject on the next VMRUN.
    pub const EVENTINJ: usize = 0x0a8;
    /// Nested page table root (host physical).
    pub const N_CR3: usize = 0x0b0;
    /// VMCB clean bits.
    pub const CLEAN: usize = 0x0c0;
    /// Next sequential RIP (with `nrip-save`).
    pub const NRIP: usize = 0x0c8;

    // ---- State save area (from 0x400) ----
    /// ES; each segment is selector (u16), attributes (u16), limit (u32),
    /// base (u64): 16 bytes.
    pub const ES: usize = 0x400;
    /// CS.
    pub const CS: usize = 0x410;
    /// SS.
    pub const SS: usize = 0x420;
    /// DS.
    pub const DS: usize = 0x430;
    /// FS.
    pub const FS: usize = 0x440;
    /// GS.
    pub const GS: usize = 0x450;
    /// GDTR (limit and base used).
    pub const GDTR: usize = 0x460;
    /// LDTR.
    pub const LDTR: usize = 0x470;
    /// IDTR.
    pub const IDTR: usize = 0x480;
    /// TR.
    pub const TR: usize = 0x490;
    /// CPL (8 bits).
    pub const CPL: usize = 0x4cb;
    /// EFER.
    pub const EFER: usize = 0x4d0;
    /// CR4.
    pub const CR4: usize = 0x548;
    /// CR3.
    pub const CR3: usize = 0x550;
    /// CR0.
    pub const CR0: usize = 0x558;
    /// DR7.
    pub const DR7: usize = 0x560;
    /// DR6.
    pub const DR6: usize = 0x568;
    /// RFLAGS.
    pub const RFLAGS: usize = 0x570;
    /// RIP.
    pub const RIP: usize = 0x578;
    /// RSP.
    pub const RSP: usize = 0x5d8;
    /// RAX.
    pub const RAX: usize = 0x5f8;
    /// STAR (VMLOAD/VMSAVE state, as the four below).
    pub const STAR: usize = 0x600;
    /// LSTAR.
    pub const LSTAR: usize = 0x608;
    /// CSTAR.
    pub const CSTAR: usize = 0x610;
    /// SFMASK.
    pub const SFMASK: usize = 0x618;
    /// KERNEL_GS_BASE.
    pub const KERNEL_GS_BASE: usize = 0x620;
    /// SYSENTER_CS.
    pub const SYSENTER_CS: usize = 0x628;
    /// SYSENTER_ESP.
    pub const SYSENTER_ESP: usize = 0x630;
    /// SYSENTER_EIP.
    pub const SYSENTER_EIP: usize = 0x638;
    /// CR2.
    pub const CR2: usize = 0x640;
    /// Guest PAT.
    pub const G_PAT: usize = 0x668;

    /// Segment field offsets within a segment.
    pub const SEG_SELECTOR: usize = 0;
    /// Attributes.
    pub const SEG_ATTRIB: usize = 2;
    /// Limit.
    pub const SEG_LIMIT: usize = 4;
    /// Base.
    pub const SEG_BASE: usize = 8;

    /// Intercept vector 3: physical interrupts.
    pub const INTERCEPT_INTR: u32 = 1 << 0;
    /// NMIs.
    pub const INTERCEPT_NMI: u32 = 1 << 1;
    /// CPUID.
    pub const INTERCEPT_CPUID: u32 = 1 << 18;
    /// HLT.
    pub const INTERCEPT_HLT: u32 = 1 << 24;
    /// IN/OUT (through the IOPM).
    pub const INTERCEPT_IOIO: u32 = 1 << 27;
    /// RDMSR/WRMSR (through the MSRPM).
    pub const INTERCEPT_MSR: u32 = 1 << 28;
    /// Shutdown (triple fault).
    pub const INTERCEPT_SHUTDOWN: u32 = 1 << 31;
    /// Virtual interrupt window (with `V_IRQ`).
    pub const INTERCEPT_VINTR: u32 = 1 << 4;
    /// IRET (an NMI window).
    pub const INTERCEPT_IRET: u32 = 1 << 20;
    /// INVLPGA.
    pub const INTERCEPT_INVLPGA: u32 = 1 << 26;
    /// Intercept vector 4: VMRUN (required by the architecture).
    pub const INTERCEPT2_VMRUN: u32 = 1 << 0;
    /// VMMCALL.
    pub const INTERCEPT2_VMMCALL: u32 = 1 << 1;
    /// VMLOAD.
    pub const INTERCEPT2_VMLOAD: u32 = 1 << 2;
    /// VMSAVE.
    pub const INTERCEPT2_VMSAVE: u32 = 1 << 3;
    /// STGI.
    pub const INTERCEPT2_STGI: u32 = 1 << 4;
    /// CLGI.
    pub const INTERCEPT2_CLGI: u32 = 1 << 5;
    /// SKINIT.
    pub const INTERCEPT2_SKINIT: u32 = 1 << 6;
    /// MONITOR.
    pub const INTERCEPT2_MONITOR: u32 = 1 << 10;
    /// MWAIT.
    pub const INTERCEPT2_MWAIT: u32 = 1 << 11;
    /// XSETBV.
    pub const INTERCEPT2_XSETBV: u32 = 1 << 13;

    /// `V_INTR` bits: a virtual interrupt is pending (`V_IRQ`).
    pub const V_IRQ: u64 = 1 << 8;
    /// `V_INTR` bits: `V_IGN_TPR`.
    pub const V_IGN_TPR: u64 = 1 << 20;
    /// `V_INTR` bits: the guest's RFLAGS.IF masks only virtual
    /// interrupts; physical ones follow the host's IF.
    pub const V_INTR_MASKING: u64 = 1 << 24;

    /// `EVENTINJ`/`EXITINTINFO`: valid.
    pub const EVENT_VALID: u64 = 1 << 31;
    /// An error code follows in bits 32..63.
    pub const EVENT_EV: u64 = 1 << 11;
    /// Type: external interrupt.
    pub const EVENT_TYPE_INTR: u64 = 0 << 8;
    /// Type: NMI.
    pub const EVENT_TYPE_NMI: u64 = 2 << 8;
    /// Type: exception.
    pub const EVENT_TYPE_EXCEPTION: u64 = 3 << 8;
}

/// Exit codes (`EXITCODE`).
pub mod exit {
    /// CR0 read (CRn read = 0x00 + n).
    pub const CR0_READ: u64 = 0x00;
    /// Exception vector 0 (vector n = 0x40 + n).
    pub const EXCP_BASE: u64 = 0x40;
    /// Physical interrupt.
    pub const INTR: u64 = 0x60;
    /// NMI.
    pub const NMI: u64 = 0x61;
    /// CPUID.
    pub const CPUID: u64 = 0x72;
    /// HLT.
    pub const HLT: u64 = 0x78;
    /// IN/OUT.
    pub const IOIO: u64 = 0x7b;
    /// RDMSR/WRMSR.
    pub const MSR: u64 = 0x7c;
    /// Shutdown (triple fault).
    pub const SHUTDOWN: u64 = 0x7f;
    /// VMRUN.
    pub const VMRUN: u64 = 0x80;
    /// VMMCALL.
    pub const VMMCALL: u64 = 0x81;
    /// Virtual interrupt window.
    pub const VINTR: u64 = 0x64;
    /// IRET.
    pub const IRET: u64 = 0x74;
    /// INVLPGA.
    pub const INVLPGA: u64 = 0x7a;
    /// VMLOAD.
    pub const VMLOAD: u64 = 0x82;
    /// VMSAVE.
    pub const VMSAVE: u64 = 0x83;
    /// STGI.
    pub const STGI: u64 = 0x84;
    /// CLGI.
    pub const CLGI: u64 = 0x85;
    /// SKINIT.
    pub const SKINIT: u64 = 0x86;
    /// MONITOR.
    pub const MONITOR: u64 = 0x8a;
    /// MWAIT.
    pub const MWAIT: u64 = 0x8b;
    /// XSETBV.
    pub const XSETBV: u64 = 0x8d;
    /// Nested page fault.
    pub const NPF: u64 = 0x400;
    /// The VMCB's state was invalid.
    pub const INVALID: u64 = u64::MAX;

    /// A name for the log.
    pub fn name(code: u64) -> &'static str {
        match code {
            0x00..=0x0f => "CR read",
            0x10..=0x1f => "CR write",
            0x40..=0x5f => "exception",
            INTR => "INTR",
            NMI => "NMI",
            CPUID => "CPUID",
            HLT => "HLT",
            IOIO => "IOIO",
            MSR => "MSR",
            SHUTDOWN => "SHUTDOWN",
            VMRUN => "VMRUN",
            VMMCALL => "VMMCALL",
            VINTR => "VINTR",
            IRET => "IRET",
            VMLOAD | VMSAVE | STGI | CLGI | SKINIT | INVLPGA => "SVM instruction",
            MONITOR | MWAIT => "MONITOR/MWAIT",
            XSETBV => "XSETBV",
            NPF => "NPF",
            INVALID => "INVALID",
            _ => "other",
        }
    }
}

/// An `IOIO` exit's EXITINFO1, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoExit {
    /// The port.
    pub port: u16,
    /// Bytes: 1, 2 or 4.
    pub size: u8,
    /// IN (else OUT).
    pub is_in: bool,
    /// INS/OUTS.
    pub string: bool,
    /// With REP.
    pub rep: bool,
}

impl IoExit {
    /// Decodes EXITINFO1; None if the size bits are not exactly one of
    /// SZ8/SZ16/SZ32.
    pub fn decode(info1: u64) -> Option<IoExit> {
        let size = match (info1 >> 4) & 0b111 {
            0b001 => 1,
            0b010 => 2,
            0b100 => 4,
            _ => return None,
        };
        Some(IoExit {
            port: (info1 >> 16) as u16,
            size,
            is_in: info1 & 1 != 0,
            string: info1 & (1 << 2) != 0,
            rep: info1 & (1 << 3) != 0,
        })
    }
}

/// The VMCB's packed segment attributes from a descriptor's access byte
/// (bits 40..48) and flags nibble (bits 52..56).
pub fn seg_attrib(descriptor: u64) -> u16 {
    (((descriptor >> 40) & 0xff) | ((descriptor >> 44) & 0xf00)) as u16
}

/// A nested page table entry's flags: present, writable, user (nested
/// walks are user accesses: every level needs U).
pub const NPT_RWU: u64 = 0b111;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_qemus_svm() {
        // QEMU -cpu max: SVM, revision 1, 16 ASIDs, NPT.
        let c = detect(CPUID_SVM, 0x8000_0021, (1, 16, 1)).unwrap();
        assert_eq!((c.revision, c.asids, c.npt, c.nrips), (1, 16, true, false));
        assert_eq!(detect(0, 0x8000_0021, (1, 16, 1)), None);
        assert_eq!(detect(CPUID_SVM, 0x8000_0008, (1, 16, 1)), None);
        let all = detect(CPUID_SVM, 0x8000_000a, (1, 8, 0xe9)).unwrap();
        assert!(all.nrips && all.vmcb_clean && all.flush_by_asid && all.decode_assists);
    }

    #[test]
    fn layout_is_apms() {
        use vmcb::*;
        assert_eq!(EXITCODE, 0x70);
        assert_eq!(N_CR3, 0xb0);
        assert_eq!(CS - ES, 16);
        assert_eq!(TR, 0x490);
        assert_eq!(RAX, 0x5f8);
        assert_eq!(G_PAT, 0x668);
    }

    #[test]
    fn segment_attributes() {
        // A flat 32-bit ring-0 code segment: 0x00cf9b000000ffff.
        assert_eq!(seg_attrib(0x00cf_9b00_0000_ffff), 0xc9b);
        // 64-bit code: 0x00af9b000000ffff (L set, D clear).
        assert_eq!(seg_attrib(0x00af_9b00_0000_ffff), 0xa9b);
        // Data: 0x00cf93000000ffff.
        assert_eq!(seg_attrib(0x00cf_9300_0000_ffff), 0xc93);
    }

    #[test]
    fn io_exits() {
        // out %al, $0xe9: port 0xe9, SZ8, OUT.
        let io = IoExit::decode((0xe9 << 16) | (1 << 4)).unwrap();
        assert_eq!(
            io,
            IoExit {
                port: 0xe9,
                size: 1,
                is_in: false,
                string: false,
                rep: false
            }
        );
        // rep insw from 0x1f0.
        let io = IoExit::decode((0x1f0 << 16) | (1 << 5) | 0b1101).unwrap();
        assert!(io.is_in && io.string && io.rep && io.size == 2);
        assert_eq!(IoExit::decode(0b011 << 4), None);
        assert_eq!(IoExit::decode(0), None);
        assert_eq!(exit::name(exit::NPF), "NPF");
        assert_eq!(exit::name(0x13), "CR write");
    }
}
