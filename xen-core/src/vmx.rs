//! Intel VT-x facts (Intel SDM vol. 3C, chapters 24–26 and appendix A–C),
//! pure so the host tests them: the capability MSRs, VMCS field
//! encodings, the controls Oxen asks for and how they are fitted to what
//! the CPU allows, exit reasons, and segment access rights in VMCS form.
//!
//! **Owns**: numbers and the arithmetic on them. **Trusts**: the caller
//! to read the MSRs and the VMCS; nothing here touches hardware.

/// CPUID.1:ECX.VMX.
pub const CPUID_VMX: u32 = 1 << 5;

/// Model-specific registers.
pub mod msr {
    /// IA32_FEATURE_CONTROL.
    pub const FEATURE_CONTROL: u32 = 0x3a;
    /// Lock bit.
    pub const FEATURE_CONTROL_LOCK: u64 = 1 << 0;
    /// VMXON outside SMX allowed.
    pub const FEATURE_CONTROL_VMX_OUTSIDE_SMX: u64 = 1 << 2;
    /// IA32_VMX_BASIC: revision (bits 0..30), TRUE controls (bit 55).
    pub const BASIC: u32 = 0x480;
    /// IA32_VMX_PINBASED_CTLS.
    pub const PINBASED: u32 = 0x481;
    /// IA32_VMX_PROCBASED_CTLS.
    pub const PROCBASED: u32 = 0x482;
    /// IA32_VMX_EXIT_CTLS.
    pub const EXIT: u32 = 0x483;
    /// IA32_VMX_ENTRY_CTLS.
    pub const ENTRY: u32 = 0x484;
    /// IA32_VMX_CR0_FIXED0.
    pub const CR0_FIXED0: u32 = 0x486;
    /// IA32_VMX_CR0_FIXED1.
    pub const CR0_FIXED1: u32 = 0x487;
    /// IA32_VMX_CR4_FIXED0.
    pub const CR4_FIXED0: u32 = 0x488;
    /// IA32_VMX_CR4_FIXED1.
    pub const CR4_FIXED1: u32 = 0x489;
    /// IA32_VMX_PROCBASED_CTLS2.
    pub const PROCBASED2: u32 = 0x48b;
    /// IA32_VMX_EPT_VPID_CAP.
    pub const EPT_VPID_CAP: u32 = 0x48c;
    /// IA32_VMX_TRUE_PINBASED_CTLS.
    pub const TRUE_PINBASED: u32 = 0x48d;
    /// IA32_VMX_TRUE_PROCBASED_CTLS.
    pub const TRUE_PROCBASED: u32 = 0x48e;
    /// IA32_VMX_TRUE_EXIT_CTLS.
    pub const TRUE_EXIT: u32 = 0x48f;
    /// IA32_VMX_TRUE_ENTRY_CTLS.
    pub const TRUE_ENTRY: u32 = 0x490;
}

/// Control bits.
pub mod ctl {
    /// Pin-based: external interrupts exit.
    pub const PIN_EXT_INT: u32 = 1 << 0;
    /// Pin-based: NMIs exit.
    pub const PIN_NMI: u32 = 1 << 3;
    /// Processor-based: interrupt-window exiting.
    pub const PROC_INTR_WINDOW: u32 = 1 << 2;
    /// HLT exiting.
    pub const PROC_HLT: u32 = 1 << 7;
    /// MWAIT exiting.
    pub const PROC_MWAIT: u32 = 1 << 10;
    /// Unconditional I/O exiting.
    pub const PROC_IO: u32 = 1 << 24;
    /// MONITOR exiting.
    pub const PROC_MONITOR: u32 = 1 << 29;
    /// Activate the secondary controls.
    pub const PROC_SECONDARY: u32 = 1 << 31;
    /// Secondary: enable EPT.
    pub const PROC2_EPT: u32 = 1 << 1;
    /// Secondary: unrestricted guest (real mode and paging off run).
    pub const PROC2_UNRESTRICTED: u32 = 1 << 7;
    /// Exit: host address-space size (64-bit host).
    pub const EXIT_HOST_64: u32 = 1 << 9;
    /// Exit: save the guest's EFER.
    pub const EXIT_SAVE_EFER: u32 = 1 << 20;
    /// Exit: load the host's EFER.
    pub const EXIT_LOAD_EFER: u32 = 1 << 21;
    /// Entry: IA-32e mode guest.
    pub const ENTRY_IA32E: u32 = 1 << 9;
    /// Entry: load the guest's EFER.
    pub const ENTRY_LOAD_EFER: u32 = 1 << 15;
}

/// Fits the controls `want` into what capability MSR value `cap` allows:
/// its low half says which bits must be one, its high half which may be.
/// `Err` with the wanted bits the CPU cannot set.
pub fn fit_controls(want: u32, cap: u64) -> Result<u32, u32> {
    let must = cap as u32;
    let may = (cap >> 32) as u32;
    let missing = want & !may;
    if missing != 0 {
        return Err(missing);
    }
    Ok((want | must) & may)
}

/// VMCS field encodings (SDM appendix B).
pub mod field {
    /// Guest ES selector (16-bit guest-state fields follow in steps of 2:
    /// ES, CS, SS, DS, FS, GS, LDTR, TR).
    pub const GUEST_ES_SELECTOR: u32 = 0x0800;
    /// Host ES selector (ES, CS, SS, DS, FS, GS, TR in steps of 2).
    pub const HOST_ES_SELECTOR: u32 = 0x0c00;
    /// Host CS selector.
    pub const HOST_CS_SELECTOR: u32 = 0x0c02;
    /// Host SS selector.
    pub const HOST_SS_SELECTOR: u32 = 0x0c04;
    /// Host DS selector.
    pub const HOST_DS_SELECTOR: u32 = 0x0c06;
    /// Host FS selector.
    pub const HOST_FS_SELECTOR: u32 = 0x0c08;
    /// Host GS selector.
    pub const HOST_GS_SELECTOR: u32 = 0x0c0a;
    /// Host TR selector.
    pub const HOST_TR_SELECTOR: u32 = 0x0c0c;
    /// EPT pointer.
    pub const EPT_POINTER: u32 = 0x201a;
    /// Guest-physical address of an EPT violation.
    pub const GUEST_PHYSICAL_ADDRESS: u32 = 0x2400;
    /// VMCS link pointer (all ones: none).
    pub const VMCS_LINK_POINTER: u32 = 0x2800;
    /// Guest IA32_PAT.
    pub const GUEST_PAT: u32 = 0x2804;
    /// Guest IA32_EFER.
    pub const GUEST_EFER: u32 = 0x2806;
    /// Host IA32_EFER.
    pub const HOST_EFER: u32 = 0x2c02;
    /// Pin-based controls.
    pub const PIN_CONTROLS: u32 = 0x4000;
    /// Primary processor-based controls.
    pub const PROC_CONTROLS: u32 = 0x4002;
    /// Exception bitmap.
    pub const EXCEPTION_BITMAP: u32 = 0x4004;
    /// Exit controls.
    pub const EXIT_CONTROLS: u32 = 0x400c;
    /// Entry controls.
    pub const ENTRY_CONTROLS: u32 = 0x4012;
    /// Entry interruption information (event injection).
    pub const ENTRY_INTR_INFO: u32 = 0x4016;
    /// Entry exception error code.
    pub const ENTRY_EXCEPTION_ERROR_CODE: u32 = 0x4018;
    /// Entry instruction length (software interrupts/exceptions).
    pub const ENTRY_INSTRUCTION_LEN: u32 = 0x401a;
    /// Secondary processor-based controls.
    pub const PROC2_CONTROLS: u32 = 0x401e;
    /// VM-instruction error.
    pub const VM_INSTRUCTION_ERROR: u32 = 0x4400;
    /// Exit reason.
    pub const EXIT_REASON: u32 = 0x4402;
    /// Exit interruption information.
    pub const EXIT_INTR_INFO: u32 = 0x4404;
    /// Exit interruption error code.
    pub const EXIT_INTR_ERROR_CODE: u32 = 0x4406;
    /// IDT-vectoring information (an event the exit interrupted).
    pub const IDT_VECTORING_INFO: u32 = 0x4408;
    /// IDT-vectoring error code.
    pub const IDT_VECTORING_ERROR_CODE: u32 = 0x440a;
    /// Exit instruction length.
    pub const EXIT_INSTRUCTION_LEN: u32 = 0x440c;
    /// Guest ES limit (ES, CS, SS, DS, FS, GS, LDTR, TR, GDTR, IDTR in steps
    /// of 2).
    pub const GUEST_ES_LIMIT: u32 = 0x4800;
    /// Guest GDTR limit.
    pub const GUEST_GDTR_LIMIT: u32 = 0x4810;
    /// Guest IDTR limit.
    pub const GUEST_IDTR_LIMIT: u32 = 0x4812;
    /// Guest ES access rights (ES .. TR in steps of 2).
    pub const GUEST_ES_AR: u32 = 0x4814;
    /// Guest interruptibility state.
    pub const GUEST_INTERRUPTIBILITY: u32 = 0x4824;
    /// Guest activity state.
    pub const GUEST_ACTIVITY_STATE: u32 = 0x4826;
    /// Guest SYSENTER_CS.
    pub const GUEST_SYSENTER_CS: u32 = 0x482a;
    /// Host SYSENTER_CS.
    pub const HOST_SYSENTER_CS: u32 = 0x4c00;
    /// CR0 guest/host mask.
    pub const CR0_MASK: u32 = 0x6000;
    /// CR4 guest/host mask.
    pub const CR4_MASK: u32 = 0x6002;
    /// CR0 read shadow.
    pub const CR0_SHADOW: u32 = 0x6004;
    /// CR4 read shadow.
    pub const CR4_SHADOW: u32 = 0x6006;
    /// Exit qualification.
    pub const EXIT_QUALIFICATION: u32 = 0x6400;
    /// Guest-linear address.
    pub const GUEST_LINEAR_ADDRESS: u32 = 0x640a;
    /// Guest CR0.
    pub const GUEST_CR0: u32 = 0x6800;
    /// Guest CR3.
    pub const GUEST_CR3: u32 = 0x6802;
    /// Guest CR4.
    pub const GUEST_CR4: u32 = 0x6804;
    /// Guest ES base (ES .. TR, then GDTR, IDTR in steps of 2).
    pub const GUEST_ES_BASE: u32 = 0x6806;
    /// Guest GDTR base.
    pub const GUEST_GDTR_BASE: u32 = 0x6816;
    /// Guest IDTR base.
    pub const GUEST_IDTR_BASE: u32 = 0x6818;
    /// Guest DR7.
    pub const GUEST_DR7: u32 = 0x681a;
    /// Guest RSP.
    pub const GUEST_RSP: u32 = 0x681c;
    /// Guest RIP.
    pub const GUEST_RIP: u32 = 0x681e;
    /// Guest RFLAGS.
    pub const GUEST_RFLAGS: u32 = 0x6820;
    /// Guest pending debug exceptions.
    pub const GUEST_PENDING_DBG: u32 = 0x6822;
    /// Guest SYSENTER_ESP.
    pub const GUEST_SYSENTER_ESP: u32 = 0x6824;
    /// Guest SYSENTER_EIP.
    pub const GUEST_SYSENTER_EIP: u32 = 0x6826;
    /// Host CR0.
    pub const HOST_CR0: u32 = 0x6c00;
    /// Host CR3.
    pub const HOST_CR3: u32 = 0x6c02;
    /// Host CR4.
    pub const HOST_CR4: u32 = 0x6c04;
    /// Host FS base.
    pub const HOST_FS_BASE: u32 = 0x6c06;
    /// Host GS base.
    pub const HOST_GS_BASE: u32 = 0x6c08;
    /// Host TR base.
    pub const HOST_TR_BASE: u32 = 0x6c0a;
    /// Host GDTR base.
    pub const HOST_GDTR_BASE: u32 = 0x6c0c;
    /// Host IDTR base.
    pub const HOST_IDTR_BASE: u32 = 0x6c0e;
    /// Host SYSENTER_ESP.
    pub const HOST_SYSENTER_ESP: u32 = 0x6c10;
    /// Host SYSENTER_EIP.
    pub const HOST_SYSENTER_EIP: u32 = 0x6c12;
    /// Host RSP.
    pub const HOST_RSP: u32 = 0x6c14;
    /// Host RIP.
    pub const HOST_RIP: u32 = 0x6c16;
}

/// Basic exit reasons (bits 0..15 of the exit reason).
pub mod exit {
    /// An exception or NMI.
    pub const EXCEPTION_NMI: u32 = 0;
    /// An external interrupt.
    pub const EXTERNAL_INTERRUPT: u32 = 1;
    /// Triple fault.
    pub const TRIPLE_FAULT: u32 = 2;
    /// INIT signal.
    pub const INIT: u32 = 3;
    /// Start-up IPI.
    pub const SIPI: u32 = 4;
    /// Interrupt window.
    pub const INTERRUPT_WINDOW: u32 = 7;
    /// CPUID.
    pub const CPUID: u32 = 10;
    /// HLT.
    pub const HLT: u32 = 12;
    /// VMCALL.
    pub const VMCALL: u32 = 18;
    /// Any other VMX instruction (VMCLEAR .. VMXON, INVEPT, INVVPID).
    pub const VMX_INSTRUCTIONS: [u32; 9] = [19, 20, 21, 22, 23, 24, 25, 26, 27];
    /// MOV to/from a control register.
    pub const CR_ACCESS: u32 = 28;
    /// I/O instruction.
    pub const IO: u32 = 30;
    /// RDMSR.
    pub const RDMSR: u32 = 31;
    /// WRMSR.
    pub const WRMSR: u32 = 32;
    /// VM entry failed: invalid guest state.
    pub const INVALID_GUEST_STATE: u32 = 33;
    /// MWAIT.
    pub const MWAIT: u32 = 36;
    /// MONITOR.
    pub const MONITOR: u32 = 39;
    /// EPT violation.
    pub const EPT_VIOLATION: u32 = 48;
    /// EPT misconfiguration.
    pub const EPT_MISCONFIG: u32 = 49;
    /// XSETBV.
    pub const XSETBV: u32 = 55;
}

/// VMCS access rights from the 12-bit attribute form Xen's save records
/// (and an AMD VMCB) use: type/S/DPL/P in bits 0..7, AVL/L/D/G in 8..11
/// move to 12..15; a not-present segment is "unusable" (bit 16).
pub fn ar_from_attr(attr: u32) -> u32 {
    let ar = (attr & 0xff) | ((attr & 0xf00) << 4);
    if attr & 0x80 == 0 {
        ar | (1 << 16)
    } else {
        ar
    }
}

/// The 12-bit attribute form of VMCS access rights (an unusable segment
/// reads as not present).
pub fn attr_from_ar(ar: u32) -> u32 {
    if ar & (1 << 16) != 0 {
        return 0;
    }
    (ar & 0xff) | ((ar >> 4) & 0xf00)
}

/// Exit qualification of an I/O exit, decoded: (port, size, in, string,
/// rep).
pub fn io_qualification(q: u64) -> (u16, u8, bool, bool, bool) {
    let size = ((q & 7) + 1) as u8;
    (
        (q >> 16) as u16,
        size,
        q & (1 << 3) != 0,
        q & (1 << 4) != 0,
        q & (1 << 5) != 0,
    )
}

/// Exit qualification of a control-register access: (CR number, access
/// type (0 MOV to CR, 1 MOV from CR, 2 CLTS, 3 LMSW), general register,
/// LMSW source data).
pub fn cr_qualification(q: u64) -> (u8, u8, u8, u16) {
    (
        (q & 0xf) as u8,
        ((q >> 4) & 3) as u8,
        ((q >> 8) & 0xf) as u8,
        (q >> 16) as u16,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_fit_the_capability_msrs() {
        // Bits 1, 2, 4 must be one; 0..7 and 31 may be.
        let cap = (0x8000_00ffu64 << 32) | 0x16;
        assert_eq!(fit_controls(ctl::PROC_HLT, cap), Ok(ctl::PROC_HLT | 0x16));
        assert_eq!(fit_controls(1 << 31, cap), Ok((1 << 31) | 0x16));
        assert_eq!(fit_controls(1 << 24, cap), Err(1 << 24));
    }

    #[test]
    fn access_rights_round_trip_and_null_segments_are_unusable() {
        // Flat 64-bit code (0xa9b), 32-bit data (0xc93), TSS (0x8b).
        assert_eq!(ar_from_attr(0xa9b), 0xa09b);
        assert_eq!(ar_from_attr(0xc93), 0xc093);
        assert_eq!(ar_from_attr(0x8b), 0x8b);
        assert_eq!(ar_from_attr(0), 1 << 16);
        for a in [0xa9b, 0xc93, 0x8b, 0x82, 0x93] {
            assert_eq!(attr_from_ar(ar_from_attr(a)), a);
        }
        assert_eq!(attr_from_ar(1 << 16), 0);
    }

    #[test]
    fn qualifications_decode() {
        // OUT DX, AL to 0xe9: size 1, out.
        assert_eq!(
            io_qualification(0x00e9_0000),
            (0xe9, 1, false, false, false)
        );
        // REP INSW from 0x3fd: size 2, in, string, rep.
        assert_eq!(io_qualification(0x03fd_0039), (0x3fd, 2, true, true, true));
        // MOV CR4, RAX: CR 4, type 0, register 0.
        assert_eq!(cr_qualification(0x4), (4, 0, 0, 0));
        // MOV RCX <- CR0 (type 1, register 1).
        assert_eq!(cr_qualification(0x110), (0, 1, 1, 0));
    }
}
