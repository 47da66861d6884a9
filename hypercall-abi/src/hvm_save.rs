//! HVM save records (`public/arch-x86/hvm/save.h`, `public/hvm/save.h`):
//! the format of `XEN_DOMCTL_gethvmcontext` / `sethvmcontext` buffers.
//!
//! A buffer is a sequence of records, each a [`HvmSaveDescriptor`]
//! followed by `length` bytes of the type its `typecode` names; it starts
//! with a [`HvmSaveHeader`] record and ends with an `END` record (typecode
//! 0, length 0). A toolstack that boots an HVM or PVH guest directly (as
//! libxc's `vcpu_hvm`) reads the context, rewrites the vCPU's
//! [`HvmHwCpu`] record (protected mode, entry point, boot registers) and
//! sets it back.

use zerocopy::FromZeros;

/// `HVM_FILE_MAGIC`: [`HvmSaveHeader::magic`].
pub const HVM_FILE_MAGIC: u32 = 0x5438_1286;
/// `HVM_FILE_VERSION`.
pub const HVM_FILE_VERSION: u32 = 1;

/// Record type codes (`DECLARE_HVM_SAVE_TYPE`).
pub mod code {
    /// The terminating record.
    pub const END: u16 = 0;
    /// [`super::HvmSaveHeader`].
    pub const HEADER: u16 = 1;
    /// [`super::HvmHwCpu`], one per vCPU (instance = vCPU id).
    pub const CPU: u16 = 2;
    /// 8259 PIC pair.
    pub const PIC: u16 = 3;
    /// IOAPIC.
    pub const IOAPIC: u16 = 4;
    /// Local APIC (base MSR, state).
    pub const LAPIC: u16 = 5;
    /// Local APIC registers.
    pub const LAPIC_REGS: u16 = 6;
    /// PCI interrupt wires.
    pub const PCI_IRQ: u16 = 7;
    /// ISA interrupt wires.
    pub const ISA_IRQ: u16 = 8;
    /// PCI link routing.
    pub const PCI_LINK: u16 = 9;
    /// 8254 PIT.
    pub const PIT: u16 = 10;
    /// RTC/CMOS.
    pub const RTC: u16 = 11;
    /// HPET.
    pub const HPET: u16 = 12;
    /// ACPI PM timer.
    pub const PMTIMER: u16 = 13;
    /// MTRRs and PAT.
    pub const MTRR: u16 = 14;
    /// Viridian.
    pub const VIRIDIAN: u16 = 15;
    /// `HVM_SAVE_CODE_MAX`.
    pub const MAX: u16 = 15;
}

abi_struct! {
    /// `struct hvm_save_descriptor`: what follows and how long it is.
    pub struct HvmSaveDescriptor {
        /// One of [`code`].
        pub typecode: u16,
        /// Which one (the vCPU for per-vCPU records).
        pub instance: u16,
        /// Bytes of data after this descriptor.
        pub length: u32,
    }
}

abi_struct! {
    /// `struct hvm_save_header`: the first record.
    pub struct HvmSaveHeader {
        /// [`HVM_FILE_MAGIC`].
        pub magic: u32,
        /// [`HVM_FILE_VERSION`].
        pub version: u32,
        /// Version of the hypervisor that saved it.
        pub changeset: u64,
        /// CPUID leaf 1 EAX of the saving machine.
        pub cpuid: u32,
        /// Guest TSC frequency in kHz.
        pub gtsc_khz: u32,
    }
}

abi_struct! {
    /// `struct hvm_hw_cpu`: one vCPU's architectural state. Segment
    /// attributes (`*_arbytes`) are in the 12-bit form (type, S, DPL, P,
    /// AVL, L, D/B, G), as in an AMD VMCB.
    pub struct HvmHwCpu {
        /// FXSAVE image.
        pub fpu_regs: [u8; 512],
        /// RAX.
        pub rax: u64,
        /// RBX.
        pub rbx: u64,
        /// RCX.
        pub rcx: u64,
        /// RDX.
        pub rdx: u64,
        /// RBP.
        pub rbp: u64,
        /// RSI.
        pub rsi: u64,
        /// RDI.
        pub rdi: u64,
        /// RSP.
        pub rsp: u64,
        /// R8.
        pub r8: u64,
        /// R9.
        pub r9: u64,
        /// R10.
        pub r10: u64,
        /// R11.
        pub r11: u64,
        /// R12.
        pub r12: u64,
        /// R13.
        pub r13: u64,
        /// R14.
        pub r14: u64,
        /// R15.
        pub r15: u64,
        /// RIP.
        pub rip: u64,
        /// RFLAGS.
        pub rflags: u64,
        /// CR0.
        pub cr0: u64,
        /// CR2.
        pub cr2: u64,
        /// CR3.
        pub cr3: u64,
        /// CR4.
        pub cr4: u64,
        /// DR0.
        pub dr0: u64,
        /// DR1.
        pub dr1: u64,
        /// DR2.
        pub dr2: u64,
        /// DR3.
        pub dr3: u64,
        /// DR6.
        pub dr6: u64,
        /// DR7.
        pub dr7: u64,
        /// CS selector.
        pub cs_sel: u32,
        /// DS selector.
        pub ds_sel: u32,
        /// ES selector.
        pub es_sel: u32,
        /// FS selector.
        pub fs_sel: u32,
        /// GS selector.
        pub gs_sel: u32,
        /// SS selector.
        pub ss_sel: u32,
        /// TR selector.
        pub tr_sel: u32,
        /// LDTR selector.
        pub ldtr_sel: u32,
        /// CS limit.
        pub cs_limit: u32,
        /// DS limit.
        pub ds_limit: u32,
        /// ES limit.
        pub es_limit: u32,
        /// FS limit.
        pub fs_limit: u32,
        /// GS limit.
        pub gs_limit: u32,
        /// SS limit.
        pub ss_limit: u32,
        /// TR limit.
        pub tr_limit: u32,
        /// LDTR limit.
        pub ldtr_limit: u32,
        /// IDTR limit.
        pub idtr_limit: u32,
        /// GDTR limit.
        pub gdtr_limit: u32,
        /// CS base.
        pub cs_base: u64,
        /// DS base.
        pub ds_base: u64,
        /// ES base.
        pub es_base: u64,
        /// FS base.
        pub fs_base: u64,
        /// GS base.
        pub gs_base: u64,
        /// SS base.
        pub ss_base: u64,
        /// TR base.
        pub tr_base: u64,
        /// LDTR base.
        pub ldtr_base: u64,
        /// IDTR base.
        pub idtr_base: u64,
        /// GDTR base.
        pub gdtr_base: u64,
        /// CS attributes.
        pub cs_arbytes: u32,
        /// DS attributes.
        pub ds_arbytes: u32,
        /// ES attributes.
        pub es_arbytes: u32,
        /// FS attributes.
        pub fs_arbytes: u32,
        /// GS attributes.
        pub gs_arbytes: u32,
        /// SS attributes.
        pub ss_arbytes: u32,
        /// TR attributes.
        pub tr_arbytes: u32,
        /// LDTR attributes.
        pub ldtr_arbytes: u32,
        /// SYSENTER_CS.
        pub sysenter_cs: u64,
        /// SYSENTER_ESP.
        pub sysenter_esp: u64,
        /// SYSENTER_EIP.
        pub sysenter_eip: u64,
        /// KERNEL_GS_BASE.
        pub shadow_gs: u64,
        /// Which of the MSRs below are meaningful (Xen: unused, 0).
        pub msr_flags: u64,
        /// LSTAR.
        pub msr_lstar: u64,
        /// STAR.
        pub msr_star: u64,
        /// CSTAR.
        pub msr_cstar: u64,
        /// SFMASK.
        pub msr_syscall_mask: u64,
        /// EFER.
        pub msr_efer: u64,
        /// TSC_AUX.
        pub msr_tsc_aux: u64,
        /// The guest's TSC.
        pub tsc: u64,
        /// Pending event: vector (bits 0-7), type (8-10), error code valid
        /// (11), valid (31).
        pub pending_event: u32,
        /// Its error code.
        pub error_code: u32,
    }
}

impl Default for HvmHwCpu {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl Default for HvmSaveHeader {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

/// Size of a [`HvmHwCpu`] record's data.
pub const HVM_HW_CPU_SIZE: usize = core::mem::size_of::<HvmHwCpu>();

abi_struct! {
    /// `struct hvm_hw_lapic` (record [`code::LAPIC`], one per vCPU): the
    /// local APIC's state outside its register page.
    pub struct HvmHwLapic {
        /// IA32_APIC_BASE.
        pub apic_base_msr: u64,
        /// `VLAPIC_SW_DISABLED` (1) | `VLAPIC_HW_DISABLED` (2).
        pub disabled: u32,
        /// The timer divisor.
        pub timer_divisor: u32,
        /// IA32_TSC_DEADLINE.
        pub tdt_msr: u64,
    }
}

/// Bytes of `struct hvm_hw_lapic_regs` (record [`code::LAPIC_REGS`]).
pub const HVM_HW_LAPIC_REGS_SIZE: usize = 1024;
const _: () = assert!(core::mem::size_of::<HvmHwLapic>() == 24);
const _: () = assert!(HVM_HW_CPU_SIZE == 1024);
const _: () = assert!(core::mem::size_of::<HvmSaveDescriptor>() == 8);
const _: () = assert!(core::mem::size_of::<HvmSaveHeader>() == 24);

/// One record of a context buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Its descriptor.
    pub desc: HvmSaveDescriptor,
    /// Its data (`desc.length` bytes).
    pub data: &'a [u8],
}

/// Why a context buffer is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// A descriptor or its data runs past the end of the buffer.
    Truncated,
    /// No `END` record before the buffer ends.
    NoEnd,
}

/// The records of `buf` up to (not including) its `END` record, checked
/// to lie inside the buffer.
pub fn records(buf: &[u8]) -> Result<alloc_free::Records<'_>, RecordError> {
    alloc_free::Records::new(buf)
}

/// Record iteration without allocation.
pub mod alloc_free {
    use super::*;
    use zerocopy::FromBytes;

    /// The checked records of a buffer (see [`super::records`]).
    #[derive(Clone, Debug)]
    pub struct Records<'a> {
        buf: &'a [u8],
        pos: usize,
    }

    impl<'a> Records<'a> {
        /// Checks the whole buffer first: every record inside it, an
        /// `END` record reached.
        pub fn new(buf: &'a [u8]) -> Result<Self, RecordError> {
            let mut pos = 0usize;
            loop {
                let (desc, next) = at(buf, pos)?;
                if desc.typecode == code::END {
                    return Ok(Records { buf, pos: 0 });
                }
                pos = next;
            }
        }
    }

    fn at(buf: &[u8], pos: usize) -> Result<(HvmSaveDescriptor, usize), RecordError> {
        let dsz = core::mem::size_of::<HvmSaveDescriptor>();
        let head = buf
            .get(pos..pos.checked_add(dsz).ok_or(RecordError::Truncated)?)
            .ok_or(if pos >= buf.len() {
                RecordError::NoEnd
            } else {
                RecordError::Truncated
            })?;
        let desc = HvmSaveDescriptor::read_from_bytes(head).map_err(|_| RecordError::Truncated)?;
        let end = (pos + dsz)
            .checked_add(desc.length as usize)
            .ok_or(RecordError::Truncated)?;
        if end > buf.len() {
            return Err(RecordError::Truncated);
        }
        Ok((desc, end))
    }

    impl<'a> Iterator for Records<'a> {
        type Item = Record<'a>;
        fn next(&mut self) -> Option<Record<'a>> {
            let (desc, end) = at(self.buf, self.pos).ok()?;
            if desc.typecode == code::END {
                return None;
            }
            let start = self.pos + core::mem::size_of::<HvmSaveDescriptor>();
            self.pos = end;
            Some(Record {
                desc,
                data: &self.buf[start..end],
            })
        }
    }
}

/// Appends one record (descriptor and data) to `out`; the bytes written.
pub fn put_record(
    out: &mut [u8],
    pos: usize,
    typecode: u16,
    instance: u16,
    data: &[u8],
) -> Option<usize> {
    use zerocopy::IntoBytes;
    let desc = HvmSaveDescriptor {
        typecode,
        instance,
        length: u32::try_from(data.len()).ok()?,
    };
    let dsz = core::mem::size_of::<HvmSaveDescriptor>();
    let end = pos.checked_add(dsz)?.checked_add(data.len())?;
    let dst = out.get_mut(pos..end)?;
    dst[..dsz].copy_from_slice(desc.as_bytes());
    dst[dsz..].copy_from_slice(data);
    Some(end - pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;
    use zerocopy::IntoBytes;

    #[test]
    fn hvm_hw_cpu_matches_save_h() {
        assert_eq!(offset_of!(HvmHwCpu, rax), 512);
        assert_eq!(offset_of!(HvmHwCpu, rip), 640);
        assert_eq!(offset_of!(HvmHwCpu, cr0), 656);
        assert_eq!(offset_of!(HvmHwCpu, dr0), 688);
        assert_eq!(offset_of!(HvmHwCpu, cs_sel), 736);
        assert_eq!(offset_of!(HvmHwCpu, cs_limit), 768);
        assert_eq!(offset_of!(HvmHwCpu, idtr_limit), 800);
        assert_eq!(offset_of!(HvmHwCpu, cs_base), 808);
        assert_eq!(offset_of!(HvmHwCpu, gdtr_base), 880);
        assert_eq!(offset_of!(HvmHwCpu, cs_arbytes), 888);
        assert_eq!(offset_of!(HvmHwCpu, sysenter_cs), 920);
        assert_eq!(offset_of!(HvmHwCpu, shadow_gs), 944);
        assert_eq!(offset_of!(HvmHwCpu, msr_efer), 992);
        assert_eq!(offset_of!(HvmHwCpu, tsc), 1008);
        assert_eq!(offset_of!(HvmHwCpu, pending_event), 1016);
        assert_eq!(offset_of!(HvmHwCpu, error_code), 1020);
        assert_eq!(offset_of!(HvmSaveHeader, cpuid), 16);
    }

    fn buffer() -> [u8; 2048] {
        let mut b = [0u8; 2048];
        let h = HvmSaveHeader {
            magic: HVM_FILE_MAGIC,
            version: HVM_FILE_VERSION,
            ..Default::default()
        };
        let mut pos = put_record(&mut b, 0, code::HEADER, 0, h.as_bytes()).unwrap();
        let cpu = HvmHwCpu {
            rip: 0x10_0000,
            ..Default::default()
        };
        pos += put_record(&mut b, pos, code::CPU, 0, cpu.as_bytes()).unwrap();
        put_record(&mut b, pos, code::END, 0, &[]).unwrap();
        b
    }

    #[test]
    fn records_walk_a_buffer_to_its_end() {
        let b = buffer();
        let mut it = records(&b).unwrap();
        let r = [it.next().unwrap(), it.next().unwrap()];
        assert!(it.next().is_none());
        assert_eq!(r[0].desc.typecode, code::HEADER);
        assert_eq!(r[1].desc.typecode, code::CPU);
        assert_eq!(r[1].data.len(), HVM_HW_CPU_SIZE);
    }

    #[test]
    fn malformed_buffers_are_refused() {
        let b = buffer();
        let cut = 8 + 24 + 8 + 100;
        assert_eq!(records(&b[..cut]).unwrap_err(), RecordError::Truncated);
        assert_eq!(records(&b[..8 + 24]).unwrap_err(), RecordError::NoEnd);
        assert_eq!(records(&[]).unwrap_err(), RecordError::NoEnd);
        let mut huge = b;
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(records(&huge).unwrap_err(), RecordError::Truncated);
        assert!(put_record(&mut [0u8; 10], 0, code::CPU, 0, &[0; 4]).is_none());
    }
}
