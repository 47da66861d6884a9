//! Running an HVM vCPU under VT-x. The vCPU's state lives in its software
//! VMCB (`svm_vcpu::SvmVcpu`, AMD's layout: one format for both vendors,
//! so the exit handling, injection and emulator glue above are shared);
//! for each run it is written into the vCPU's VMCS, the guest runs
//! (VMLAUNCH), and the exit is written back into the VMCB in SVM's terms
//! (exit code, EXITINFO1/2, EXITINTINFO).
//!
//! **Owns**: each CPU's VMXON region and host MSR values, the VMCS
//! contents, the translations (segments' access rights, events, exit
//! reasons, I/O and EPT-violation information), and what VT-x needs that
//! SVM does not: CR0.NE and CR4.VMXE kept set under guest/host masks
//! (writes to them are emulated here), the syscall MSRs and
//! KERNEL_GS_BASE switched by hand, `vmcall` in the hypercall page.
//! **Trusts**: the caller to run the vCPU on this CPU only until `run`
//! returns; guest values are data VM entry checks itself (a refused entry
//! becomes an invalid-state exit that crashes only the domain).

use core::sync::atomic::{AtomicU64, Ordering};

use super::instr::{self, msr};
use super::percpu::{this_cpu, MAX_CPUS};
use super::vmx::{self as hw, vmread, vmwrite, VmxGprs};
use xen_core::svm::{exit as sexit, vmcb};
use xen_core::vmx::{self, ctl, exit, field};

/// Each CPU's VMXON region (0: VMX not on yet).
static VMXON: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Each CPU's host STAR, LSTAR, CSTAR, SFMASK, KERNEL_GS_BASE.
static HOST_MSRS: [[AtomicU64; 5]; MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; 5] }; MAX_CPUS];

/// The MSRs VT-x does not switch, in [`HOST_MSRS`] order, with their
/// VMCB offsets.
const SWITCHED: [(u32, usize); 5] = [
    (msr::STAR, vmcb::STAR),
    (msr::LSTAR, vmcb::LSTAR),
    (msr::CSTAR, vmcb::CSTAR),
    (msr::FMASK, vmcb::SFMASK),
    (msr::KERNEL_GS_BASE, vmcb::KERNEL_GS_BASE),
];

/// Pin-based control: activate the VMX-preemption timer.
const PIN_PREEMPT_TIMER: u32 = 1 << 6;
/// VMCS field: the VMX-preemption timer value.
const GUEST_PREEMPT_TIMER: u32 = 0x482e;
/// Exit reason: the VMX-preemption timer expired.
const EXIT_PREEMPT_TIMER: u32 = 52;
/// Exit control: acknowledge the interrupt on exit (its vector in the
/// exit interruption information).
const EXIT_ACK_INTR: u32 = 1 << 15;
const CR0_NE: u64 = 1 << 5;
const CR0_PG: u64 = 1 << 31;
const CR4_VMXE: u64 = 1 << 13;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// VMX on for this CPU (CR0.NE, CR4.VMXE, VMXON), once; the host's
/// switched MSRs recorded. False if it cannot be.
pub fn cpu_ready() -> bool {
    let c = this_cpu().cpu as usize;
    let Some(slot) = VMXON.get(c) else {
        return false;
    };
    if slot.load(Ordering::Acquire) != 0 {
        return true;
    }
    let Some(caps) = hw::caps() else {
        return false;
    };
    let Some([region]) = crate::memory::alloc_frames::<1>() else {
        return false;
    };
    crate::memory::clear_frame(region);
    // SAFETY: the region is ours for good; its first dword the revision.
    unsafe {
        (super::paging::phys_to_virt(region.maddr()) as *mut u32).write_volatile(caps.revision)
    };
    let fc = instr::rdmsr_safe(vmx::msr::FEATURE_CONTROL).unwrap_or(0);
    // SAFETY: as at boot (vmx::probe_and_selftest): enabling VMX outside
    // SMX, CR0.NE and CR4.VMXE change nothing the hypervisor relies on;
    // VMXON takes our region.
    let on = unsafe {
        if fc & vmx::msr::FEATURE_CONTROL_LOCK == 0 {
            instr::wrmsr(
                vmx::msr::FEATURE_CONTROL,
                fc | vmx::msr::FEATURE_CONTROL_LOCK | vmx::msr::FEATURE_CONTROL_VMX_OUTSIDE_SMX,
            );
        }
        instr::write_cr0(instr::read_cr0() | CR0_NE);
        instr::write_cr4(instr::read_cr4() | CR4_VMXE);
        hw::vmx_op(0, region.maddr())
    };
    if !on {
        log::error!("HVM: VMXON failed on CPU{c}");
        return false;
    }
    for (i, (m, _)) in SWITCHED.iter().enumerate() {
        HOST_MSRS[c][i].store(instr::rdmsr(*m), Ordering::Relaxed);
    }
    slot.store(region.maddr(), Ordering::Release);
    true
}

/// Reads/writes the software VMCB of the vCPU being run.
struct Vmcb(u64);

impl Vmcb {
    fn r64(&self, off: usize) -> u64 {
        // SAFETY: `self.0` is the direct-map address of the vCPU's VMCB
        // frame (owned by it, not used by any hardware under VMX); `off`
        // is a field offset below 0x1000, 8-aligned.
        unsafe { ((self.0 + off as u64) as *const u64).read_volatile() }
    }
    fn w64(&self, off: usize, v: u64) {
        // SAFETY: as in `r64`.
        unsafe { ((self.0 + off as u64) as *mut u64).write_volatile(v) }
    }
    fn r32(&self, off: usize) -> u32 {
        // SAFETY: as in `r64`, 4-aligned.
        unsafe { ((self.0 + off as u64) as *const u32).read_volatile() }
    }
    fn r16(&self, off: usize) -> u16 {
        // SAFETY: as in `r64`, 2-aligned.
        unsafe { ((self.0 + off as u64) as *const u16).read_volatile() }
    }
    fn w16(&self, off: usize, v: u16) {
        // SAFETY: as in `r64`, 2-aligned.
        unsafe { ((self.0 + off as u64) as *mut u16).write_volatile(v) }
    }
    fn w32(&self, off: usize, v: u32) {
        // SAFETY: as in `r64`, 4-aligned.
        unsafe { ((self.0 + off as u64) as *mut u32).write_volatile(v) }
    }
    fn w8(&self, off: usize, v: u8) {
        // SAFETY: as in `r64`.
        unsafe { ((self.0 + off as u64) as *mut u8).write_volatile(v) }
    }
}

/// VMCB segment offsets in VMCS field order (ES, CS, SS, DS, FS, GS,
/// LDTR, TR).
const SEGS: [usize; 8] = [
    vmcb::ES,
    vmcb::CS,
    vmcb::SS,
    vmcb::DS,
    vmcb::FS,
    vmcb::GS,
    vmcb::LDTR,
    vmcb::TR,
];

/// Runs the vCPU whose VMCB is at direct-map address `vmcb_va`, with
/// `gprs` (RAX and RSP live in the VMCB), its VMCS frame `vmcs` and the
/// domain's nested tables at `ept_root`, once; the exit written back into
/// the VMCB. Interrupts off on entry and on return.
pub fn run(
    vmcb_va: u64,
    gprs: &mut super::svm_vcpu::GuestGprs,
    vmcs: u64,
    ept_root: u64,
) -> Result<(), ()> {
    if !cpu_ready() {
        return Err(());
    }
    let caps = hw::caps().ok_or(())?;
    let v = Vmcb(vmcb_va);
    // SAFETY: the VMCS frame is the vCPU's (allocated with it, revision
    // written); clearing then loading it makes it current here alone.
    if !unsafe { hw::vmx_op(1, vmcs) && hw::vmx_op(2, vmcs) } {
        return Err(());
    }
    let fail = |v: &Vmcb| {
        v.w64(vmcb::EXITCODE, sexit::INVALID);
        v.w64(vmcb::EXITINTINFO, 0);
    };
    if write_vmcs(&caps, &v, ept_root).is_err() {
        fail(&v);
        // SAFETY: the VMCS is ours; nothing of it stays current.
        unsafe { hw::vmx_op(1, vmcs) };
        return Ok(());
    }
    let mut g = VmxGprs::default();
    let s = gprs;
    g.r = [
        v.r64(vmcb::RAX),
        s.rbx,
        s.rcx,
        s.rdx,
        s.rsi,
        s.rdi,
        s.rbp,
        s.r[0],
        s.r[1],
        s.r[2],
        s.r[3],
        s.r[4],
        s.r[5],
        s.r[6],
        s.r[7],
    ];
    let c = this_cpu().cpu as usize;
    // The guest's syscall MSRs in, for the run.
    for (m, off) in SWITCHED {
        // SAFETY: guest values the MSR policy checked when they were
        // written (canonical addresses); the host's go back below before
        // anything of the hypervisor could use them.
        unsafe { instr::wrmsr(m, v.r64(off)) };
    }
    // The p2m may have changed since this EPT last ran here (log-dirty
    // write protection, a removed frame): drop its cached translations, as
    // the SVM side does with TLB_CONTROL on every VMRUN.
    // SAFETY: in VMX root operation (`cpu_ready` above), each type only
    // if the CPU has it.
    unsafe {
        if caps.invept_single() {
            hw::invept(Some(vmread(field::EPT_POINTER)));
        } else if caps.invept_all() {
            hw::invept(None);
        }
    }
    // SAFETY: the VMCS is current and complete (write_vmcs); its EPT
    // tables belong to the domain and stay while the vCPU exists;
    // vmx_run returns on this stack with the host state the VMCS holds
    // (VM exit leaves IF clear); interrupts are off, and an external
    // interrupt makes the guest exit (pin-based control), left pending
    // for the caller's loop to take.
    let rc = unsafe { hw::vmx_run(&mut g, 0) };
    for (i, (m, off)) in SWITCHED.iter().enumerate() {
        v.w64(*off, instr::rdmsr(*m));
        // SAFETY: the host's own values, recorded at VMXON.
        unsafe { instr::wrmsr(*m, HOST_MSRS[c][i].load(Ordering::Relaxed)) };
    }
    if rc != 0 {
        log::warn!(
            "HVM: VMLAUNCH failed, instruction error {}",
            vmread(field::VM_INSTRUCTION_ERROR)
        );
        fail(&v);
    } else {
        v.w64(vmcb::RAX, g.r[0]);
        (s.rbx, s.rcx, s.rdx, s.rsi, s.rdi, s.rbp) =
            (g.r[1], g.r[2], g.r[3], g.r[4], g.r[5], g.r[6]);
        s.r.copy_from_slice(&g.r[7..15]);
        read_back(&v, s);
    }
    // SAFETY: the VMCS is ours; cleared, it can be loaded on any CPU next.
    unsafe { hw::vmx_op(1, vmcs) };
    Ok(())
}

fn fitted(want: u32, cap: u64) -> u32 {
    // Controls Oxen cannot have are left out rather than failing: the
    // self-test proved the ones it needs.
    vmx::fit_controls(want, cap)
        .unwrap_or_else(|missing| vmx::fit_controls(want & !missing, cap).unwrap_or(cap as u32))
}

/// Writes controls, host state and the guest state from the VMCB.
fn write_vmcs(caps: &hw::VmxCaps, v: &Vmcb, ept_root: u64) -> Result<(), u32> {
    let efer = v.r64(vmcb::EFER) & !xen_core::svm::msr::EFER_SVME;
    let window = v.r64(vmcb::V_INTR) & vmcb::V_IRQ != 0;
    let mut proc = ctl::PROC_HLT
        | ctl::PROC_IO
        | ctl::PROC_SECONDARY
        | ctl::PROC_MWAIT
        | ctl::PROC_MONITOR
        | (1 << 3);
    if window {
        proc |= ctl::PROC_INTR_WINDOW;
    }
    // The VMX-preemption timer too, where there is one: the guest exits
    // at least every millisecond whatever its RFLAGS.IF (some
    // implementations hold external-interrupt exits back while it is
    // clear), so the host's timer and scheduler always get the CPU back.
    let pin = fitted(
        ctl::PIN_EXT_INT | ctl::PIN_NMI | PIN_PREEMPT_TIMER,
        caps.pin,
    );
    vmwrite(field::PIN_CONTROLS, u64::from(pin))?;
    if pin & PIN_PREEMPT_TIMER != 0 {
        let rate = instr::rdmsr_safe(0x485).unwrap_or(0) & 0x1f;
        let ticks = (crate::time::tsc_hz() / 1000) >> rate;
        vmwrite(GUEST_PREEMPT_TIMER, ticks.clamp(1, u64::from(u32::MAX)))?;
    }
    vmwrite(field::PROC_CONTROLS, u64::from(fitted(proc, caps.proc)))?;
    vmwrite(
        field::PROC2_CONTROLS,
        u64::from(fitted(ctl::PROC2_EPT | ctl::PROC2_UNRESTRICTED, caps.proc2)),
    )?;
    vmwrite(
        field::EXIT_CONTROLS,
        u64::from(fitted(
            ctl::EXIT_HOST_64 | ctl::EXIT_SAVE_EFER | ctl::EXIT_LOAD_EFER | EXIT_ACK_INTR,
            caps.exit,
        )),
    )?;
    let mut entry = ctl::ENTRY_LOAD_EFER;
    if efer & EFER_LMA != 0 {
        entry |= ctl::ENTRY_IA32E;
    }
    vmwrite(field::ENTRY_CONTROLS, u64::from(fitted(entry, caps.entry)))?;
    vmwrite(field::EXCEPTION_BITMAP, 0)?;
    vmwrite(field::EPT_POINTER, ept_root | 6 | (3 << 3))?;
    vmwrite(field::VMCS_LINK_POINTER, u64::MAX)?;
    vmwrite(0x2010, v.r64(vmcb::TSC_OFFSET))?;
    hw::write_host_state()?;
    // CR0.NE and CR4.VMXE: set in the real registers, hidden by the masks.
    let cr0 = v.r64(vmcb::CR0);
    let cr4 = v.r64(vmcb::CR4);
    vmwrite(field::CR0_MASK, CR0_NE)?;
    vmwrite(field::CR0_SHADOW, cr0)?;
    vmwrite(field::CR4_MASK, CR4_VMXE)?;
    vmwrite(field::CR4_SHADOW, cr4)?;
    vmwrite(field::GUEST_CR0, cr0 | CR0_NE)?;
    vmwrite(field::GUEST_CR3, v.r64(vmcb::CR3))?;
    vmwrite(field::GUEST_CR4, cr4 | CR4_VMXE)?;
    vmwrite(field::GUEST_DR7, v.r64(vmcb::DR7))?;
    vmwrite(field::GUEST_RSP, v.r64(vmcb::RSP))?;
    vmwrite(field::GUEST_RIP, v.r64(vmcb::RIP))?;
    vmwrite(field::GUEST_RFLAGS, v.r64(vmcb::RFLAGS) | 2)?;
    vmwrite(field::GUEST_EFER, efer)?;
    let mut segs = [(0u16, 0u64, 0u32, 0u32); 8];
    for (i, &off) in SEGS.iter().enumerate() {
        let attr = u32::from(v.r16(off + vmcb::SEG_ATTRIB));
        let mut ar = vmx::ar_from_attr(attr);
        if off == vmcb::TR && ar & (1 << 16) == 0 && ar & 0xf == 0x9 {
            // VM entry wants a busy TSS in TR.
            ar |= 0x2;
        }
        segs[i] = (
            v.r16(off + vmcb::SEG_SELECTOR),
            v.r64(off + vmcb::SEG_BASE),
            v.r32(off + vmcb::SEG_LIMIT),
            ar,
        );
    }
    hw::write_guest_segments(&segs)?;
    vmwrite(field::GUEST_GDTR_BASE, v.r64(vmcb::GDTR + vmcb::SEG_BASE))?;
    vmwrite(
        field::GUEST_GDTR_LIMIT,
        u64::from(v.r32(vmcb::GDTR + vmcb::SEG_LIMIT)),
    )?;
    vmwrite(field::GUEST_IDTR_BASE, v.r64(vmcb::IDTR + vmcb::SEG_BASE))?;
    vmwrite(
        field::GUEST_IDTR_LIMIT,
        u64::from(v.r32(vmcb::IDTR + vmcb::SEG_LIMIT)),
    )?;
    vmwrite(field::GUEST_SYSENTER_CS, v.r64(vmcb::SYSENTER_CS))?;
    vmwrite(field::GUEST_SYSENTER_ESP, v.r64(vmcb::SYSENTER_ESP))?;
    vmwrite(field::GUEST_SYSENTER_EIP, v.r64(vmcb::SYSENTER_EIP))?;
    // STI/MOV SS blocking.
    vmwrite(
        field::GUEST_INTERRUPTIBILITY,
        v.r64(vmcb::INTERRUPT_SHADOW) & 1,
    )?;
    vmwrite(field::GUEST_ACTIVITY_STATE, 0)?;
    vmwrite(field::GUEST_PENDING_DBG, 0)?;
    // An event to inject: the same layout in the low 32 bits.
    let ev = v.r64(vmcb::EVENTINJ);
    if ev & vmcb::EVENT_VALID != 0 {
        vmwrite(field::ENTRY_INTR_INFO, ev & 0xffff_ffff)?;
        vmwrite(field::ENTRY_EXCEPTION_ERROR_CODE, ev >> 32)?;
    } else {
        vmwrite(field::ENTRY_INTR_INFO, 0)?;
    }
    Ok(())
}

/// The guest state and the exit, back into the VMCB in SVM's terms.
fn read_back(v: &Vmcb, g: &super::svm_vcpu::GuestGprs) {
    let cr0_real = vmread(field::GUEST_CR0);
    let cr4_real = vmread(field::GUEST_CR4);
    // Masked bits read as the guest last set them.
    v.w64(
        vmcb::CR0,
        (cr0_real & !CR0_NE) | (vmread(field::CR0_SHADOW) & CR0_NE),
    );
    v.w64(
        vmcb::CR4,
        (cr4_real & !CR4_VMXE) | (vmread(field::CR4_SHADOW) & CR4_VMXE),
    );
    v.w64(vmcb::CR3, vmread(field::GUEST_CR3));
    v.w64(vmcb::RSP, vmread(field::GUEST_RSP));
    let rip = vmread(field::GUEST_RIP);
    v.w64(vmcb::RIP, rip);
    v.w64(vmcb::RFLAGS, vmread(field::GUEST_RFLAGS));
    v.w64(
        vmcb::EFER,
        vmread(field::GUEST_EFER) | xen_core::svm::msr::EFER_SVME,
    );
    for (i, &off) in SEGS.iter().enumerate() {
        let i = i as u32 * 2;
        v.w16(
            off + vmcb::SEG_SELECTOR,
            vmread(field::GUEST_ES_SELECTOR + i) as u16,
        );
        v.w64(off + vmcb::SEG_BASE, vmread(field::GUEST_ES_BASE + i));
        v.w32(
            off + vmcb::SEG_LIMIT,
            vmread(field::GUEST_ES_LIMIT + i) as u32,
        );
        v.w16(
            off + vmcb::SEG_ATTRIB,
            vmx::attr_from_ar(vmread(field::GUEST_ES_AR + i) as u32) as u16,
        );
    }
    v.w64(vmcb::GDTR + vmcb::SEG_BASE, vmread(field::GUEST_GDTR_BASE));
    v.w32(
        vmcb::GDTR + vmcb::SEG_LIMIT,
        vmread(field::GUEST_GDTR_LIMIT) as u32,
    );
    v.w64(vmcb::IDTR + vmcb::SEG_BASE, vmread(field::GUEST_IDTR_BASE));
    v.w32(
        vmcb::IDTR + vmcb::SEG_LIMIT,
        vmread(field::GUEST_IDTR_LIMIT) as u32,
    );
    v.w64(vmcb::SYSENTER_CS, vmread(field::GUEST_SYSENTER_CS));
    v.w64(vmcb::SYSENTER_ESP, vmread(field::GUEST_SYSENTER_ESP));
    v.w64(vmcb::SYSENTER_EIP, vmread(field::GUEST_SYSENTER_EIP));
    v.w8(
        vmcb::CPL,
        ((v.r16(vmcb::SS + vmcb::SEG_ATTRIB) >> 5) & 3) as u8,
    );
    v.w64(
        vmcb::INTERRUPT_SHADOW,
        u64::from(vmread(field::GUEST_INTERRUPTIBILITY) & 3 != 0),
    );
    // An event the exit cut short.
    let idt = vmread(field::IDT_VECTORING_INFO);
    v.w64(
        vmcb::EXITINTINFO,
        if idt & (1 << 31) != 0 {
            (idt & 0xffff_ffff) | (vmread(field::IDT_VECTORING_ERROR_CODE) << 32)
        } else {
            0
        },
    );
    let reason = vmread(field::EXIT_REASON) as u32;
    let q = vmread(field::EXIT_QUALIFICATION);
    let len = vmread(field::EXIT_INSTRUCTION_LEN);
    let (code, info1, info2) = if reason & (1 << 31) != 0 {
        (sexit::INVALID, 0, 0)
    } else {
        match reason & 0xffff {
            exit::EXTERNAL_INTERRUPT => {
                // Acknowledged on exit (implementations differ on what an
                // unacknowledged one does): handled here, as Xen's
                // vmx_do_extint.
                let info = vmread(field::EXIT_INTR_INFO);
                if info & (1 << 31) != 0 {
                    super::apic::handle_interrupt(info as u8);
                }
                (sexit::INTR, 0, 0)
            }
            exit::EXCEPTION_NMI => {
                let info = vmread(field::EXIT_INTR_INFO);
                if (info >> 8) & 7 == 2 {
                    // The NMI ended here (NMI exiting consumes it, unlike
                    // SVM's GIF): do what the host's NMI handler does.
                    super::flush::on_nmi();
                    (sexit::NMI, 0, 0)
                } else {
                    (
                        sexit::EXCP_BASE + (info & 0xff),
                        vmread(field::EXIT_INTR_ERROR_CODE),
                        0,
                    )
                }
            }
            exit::TRIPLE_FAULT => (sexit::SHUTDOWN, 0, 0),
            exit::INTERRUPT_WINDOW => (sexit::VINTR, 0, 0),
            // Nothing to do but let the host's interrupts in.
            EXIT_PREEMPT_TIMER => (sexit::INTR, 0, 0),
            exit::CPUID => (sexit::CPUID, 0, 0),
            exit::HLT => (sexit::HLT, 0, 0),
            exit::VMCALL => (sexit::VMMCALL, 0, 0),
            exit::RDMSR => (sexit::MSR, 0, 0),
            exit::WRMSR => (sexit::MSR, 1, 0),
            exit::IO => {
                let (port, size, is_in, string, rep) = vmx::io_qualification(q);
                let sz = match size {
                    1 => 1 << 4,
                    2 => 1 << 5,
                    _ => 1 << 6,
                };
                // Address size: the mode's (instruction information is
                // not decoded).
                let long = v.r64(vmcb::EFER) & EFER_LMA != 0
                    && v.r16(vmcb::CS + vmcb::SEG_ATTRIB) & (1 << 9) != 0;
                let a = if long { 1 << 9 } else { 1 << 8 };
                let info = (u64::from(port) << 16)
                    | sz
                    | a
                    | u64::from(is_in)
                    | u64::from(string) << 2
                    | u64::from(rep) << 3;
                (sexit::IOIO, info, rip.wrapping_add(len))
            }
            exit::EPT_VIOLATION => {
                let write = q & 2 != 0;
                let fetch = q & 4 != 0;
                (
                    sexit::NPF,
                    u64::from(write) << 1 | u64::from(fetch) << 4 | 1,
                    vmread(field::GUEST_PHYSICAL_ADDRESS),
                )
            }
            exit::CR_ACCESS => {
                emulate_cr(v, g, q, len);
                // Handled here: to the loop as a host interrupt (run again).
                (sexit::INTR, 0, 0)
            }
            exit::MWAIT | exit::MONITOR | exit::XSETBV => (sexit::MWAIT, 0, 0),
            r if exit::VMX_INSTRUCTIONS.contains(&r) => (sexit::VMRUN, 0, 0),
            r => (0x1000 + u64::from(r), q, 0),
        }
    };
    v.w64(vmcb::EXITCODE, code);
    v.w64(vmcb::EXITINFO1, info1);
    v.w64(vmcb::EXITINFO2, info2);
}

/// MOV to CR0/CR4 (the masked bits): the guest's value, with EFER.LMA
/// following CR0.PG when long mode is enabled. Other CR accesses do not
/// exit (no CR3 or CR8 exiting).
fn emulate_cr(v: &Vmcb, g: &super::svm_vcpu::GuestGprs, q: u64, len: u64) {
    let (cr, kind, reg, _) = vmx::cr_qualification(q);
    if kind != 0 {
        // LMSW/CLTS cannot touch the masked bits; nothing to do.
        return;
    }
    let val = match reg {
        0 => v.r64(vmcb::RAX),
        1 => g.rcx,
        2 => g.rdx,
        3 => g.rbx,
        4 => v.r64(vmcb::RSP),
        5 => g.rbp,
        6 => g.rsi,
        7 => g.rdi,
        r => g.r[usize::from(r & 7)],
    };
    match cr {
        0 => {
            v.w64(vmcb::CR0, val);
            let efer = v.r64(vmcb::EFER);
            if efer & EFER_LME != 0 {
                let lma = if val & CR0_PG != 0 { EFER_LMA } else { 0 };
                v.w64(vmcb::EFER, (efer & !EFER_LMA) | lma);
            }
        }
        4 => v.w64(vmcb::CR4, val),
        _ => {}
    }
    v.w64(vmcb::RIP, v.r64(vmcb::RIP).wrapping_add(len));
}
