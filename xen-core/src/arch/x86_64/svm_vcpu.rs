//! AMD-V vCPUs: each HVM vCPU's VMCB, the world switch with the state
//! VMRUN leaves alone (VMLOAD/VMSAVE), the per-CPU host state, and the
//! translation between a VMCB and the vendor-neutral layer
//! (`xen_core::hvm::exit`): exits decoded into `Exit`, events injected
//! through `EVENTINJ`/`V_IRQ`, registers and guest memory served to the
//! emulator (the [`Guest`] adapter).
//!
//! **Owns**: the VMCB frames (one per vCPU, freed with it), the shared
//! all-intercepting I/O and MSR permission maps, each CPU's host-save
//! area and host VMLOAD state. **Trusts**: the caller (the scheduler's
//! HVM loop, holding `DOMAINS` except across the VMRUN itself) to run a
//! vCPU on one CPU at a time and to keep its domain alive meanwhile;
//! nothing from the guest: every VMCB field the guest can change is read
//! as data, and whatever VMRUN refuses (`VMEXIT_INVALID`) crashes only
//! that domain.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use super::instr::{self, msr};
use super::paging::phys_to_virt;
use super::percpu::{this_cpu, MAX_CPUS};
use hypercall_abi::hvm_save::HvmHwCpu;
use xen_core::hvm::emulate::{Access, Env, Fault, Mode, Pending};
use xen_core::hvm::exit::{self as hx, IoDir, IoExit};
use xen_core::hvm::msr::{GuestMsrCtx, GuestReg};
use xen_core::hvm::walk::{self, GuestPhys, PagingRegs};
use xen_core::mm::Mfn;
use xen_core::svm::{self, exit, vmcb};
use xen_core::x86_emul::Segment;

/// The guest's general registers other than RAX and RSP (which live in
/// the VMCB), in [`svm_run`]'s order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestGprs {
    /// RBX.
    pub rbx: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// RSI.
    pub rsi: u64,
    /// RDI.
    pub rdi: u64,
    /// RBP.
    pub rbp: u64,
    /// R8..R15.
    pub r: [u64; 8],
}

global_asm!(
    r#"
    .pushsection .text.svm, "ax", @progbits
    /* svm_run(vmcb_pa: rdi, gprs: rsi, host_pa: rdx): loads the guest's
       VMLOAD state, runs it until #VMEXIT with the host's IF set (so a
       physical interrupt makes the guest exit; GIF keeps it pending until
       the caller's sti), saves the guest's VMSAVE state and reloads the
       host's. Returns with IF clear and GIF set. */
    .balign 16
    .globl svm_run
svm_run:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    push %rdx
    push %rsi
    push %rdi
    mov %rdi, %rax
    mov 0(%rsi), %rbx
    mov 8(%rsi), %rcx
    mov 16(%rsi), %rdx
    mov 32(%rsi), %rdi
    mov 40(%rsi), %rbp
    mov 48(%rsi), %r8
    mov 56(%rsi), %r9
    mov 64(%rsi), %r10
    mov 72(%rsi), %r11
    mov 80(%rsi), %r12
    mov 88(%rsi), %r13
    mov 96(%rsi), %r14
    mov 104(%rsi), %r15
    mov 24(%rsi), %rsi
    clgi
    vmload %rax
    sti
    vmrun %rax
    /* #VMEXIT: GIF clear; RAX and RSP are the host's again. */
    push %rsi
    mov 16(%rsp), %rsi
    mov %rbx, 0(%rsi)
    mov %rcx, 8(%rsi)
    mov %rdx, 16(%rsi)
    mov %rdi, 32(%rsi)
    mov %rbp, 40(%rsi)
    mov %r8, 48(%rsi)
    mov %r9, 56(%rsi)
    mov %r10, 64(%rsi)
    mov %r11, 72(%rsi)
    mov %r12, 80(%rsi)
    mov %r13, 88(%rsi)
    mov %r14, 96(%rsi)
    mov %r15, 104(%rsi)
    pop %rax
    mov %rax, 24(%rsi)
    mov 0(%rsp), %rax
    vmsave %rax
    mov 16(%rsp), %rax
    vmload %rax
    cli
    stgi
    add $24, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret
    .popsection
    "#,
    options(att_syntax)
);

extern "C" {
    fn svm_run(vmcb_pa: u64, gprs: *mut GuestGprs, host_pa: u64);
}

// ---- Per CPU ------------------------------------------------------------------

/// Each CPU's host VMLOAD state (a VMCB-format frame, VMSAVEd once), 0
/// until the CPU first runs an HVM vCPU.
static HOST_STATE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Readies this CPU for VMRUN the first time it runs an HVM vCPU:
/// EFER.SVME, a host-save area, and its host VMLOAD state captured with
/// VMSAVE (TR, LDTR (null: a PV vCPU's LDT is dropped when it is switched
/// away), the syscall MSRs, KERNEL_GS_BASE: what the PV entry paths need
/// back after a guest ran). Returns the host state's address.
pub fn cpu_ready() -> Option<u64> {
    let c = this_cpu().cpu as usize;
    let slot = HOST_STATE.get(c)?;
    let pa = slot.load(Ordering::Acquire);
    if pa != 0 {
        return Some(pa);
    }
    let [hsave, host] = crate::memory::alloc_frames::<2>()?;
    crate::memory::clear_frame(hsave);
    crate::memory::clear_frame(host);
    // SAFETY: SVM was found and tested at boot (hap_available); SVME only
    // enables the SVM instructions. VM_HSAVE_PA takes a page the CPU may
    // write on VMRUN: `hsave` is this CPU's alone, forever. VMSAVE writes
    // only the VMLOAD/VMSAVE state of the `host` frame, ours too.
    unsafe {
        instr::wrmsr(msr::EFER, instr::rdmsr(msr::EFER) | svm::msr::EFER_SVME);
        instr::wrmsr(svm::msr::VM_HSAVE_PA, hsave.maddr());
        core::arch::asm!("vmsave rax", in("rax") host.maddr(), options(nostack));
    }
    slot.store(host.maddr(), Ordering::Release);
    Some(host.maddr())
}

/// The I/O and MSR permission maps every HVM vCPU shares: every port and
/// every MSR intercepted (3 and 2 contiguous frames of ones).
static PERMISSION_MAPS: spin::Mutex<Option<(u64, u64)>> = spin::Mutex::new(None);

/// Readies this CPU for HVM guests at its bring-up (frames taken once,
/// kept for good, as Xen's per-CPU SVM state): nothing without SVM.
pub fn cpu_init() {
    if super::svm::is_vmx() {
        let _ = super::vmx_vcpu::cpu_ready();
    } else if super::svm::hap_available() {
        let _ = permission_maps();
        let _ = cpu_ready();
    }
}

fn permission_maps() -> Option<(u64, u64)> {
    let mut m = PERMISSION_MAPS.lock();
    if let Some(p) = *m {
        return Some(p);
    }
    let (iopm, msrpm) = {
        let mut fa = crate::memory::FRAMES.lock();
        let fa = fa.as_mut()?;
        let iopm = fa.alloc_contig(3, 1).ok()?;
        match fa.alloc_contig(2, 1) {
            Ok(msrpm) => (iopm, msrpm),
            Err(_) => {
                let _ = fa.free_contig(iopm, 3);
                return None;
            }
        }
    };
    // SAFETY: both runs are fresh frames from the allocator, direct-mapped,
    // kept for good; nothing else writes them.
    unsafe {
        core::ptr::write_bytes(phys_to_virt(iopm.maddr()) as *mut u8, 0xff, 3 * 4096);
        core::ptr::write_bytes(phys_to_virt(msrpm.maddr()) as *mut u8, 0xff, 2 * 4096);
    }
    *m = Some((iopm.maddr(), msrpm.maddr()));
    *m
}

// ---- The vCPU ------------------------------------------------------------------

/// Guest TLB entries are flushed on every VMRUN (`TLB_CONTROL` 1: QEMU's
/// SVM does not keep ASIDs apart, and nested-table frames may be reused
/// as soon as a flush IPI made every CPU exit).
const TLB_FLUSH_ALL: u8 = 1;
/// CR0.ET (always one on anything newer than a 386).
const CR0_ET: u64 = 1 << 4;
/// CR0.PE.
const CR0_PE: u64 = 1;
/// CR0.PG.
const CR0_PG: u64 = 1 << 31;
/// EFER.LMA.
const EFER_LMA: u64 = 1 << 10;
/// Reset PAT.
const PAT_RESET: u64 = 0x0007_0406_0007_0406;

/// One HVM vCPU's hardware state. Under VT-x the VMCB is the vCPU's
/// software state, written into its VMCS for each run
/// (`vmx_vcpu::run`).
pub struct SvmVcpu {
    vmcb: Mfn,
    /// The VMCS frame under VT-x.
    vmcs: Option<Mfn>,
    /// The domain's nested-table root (EPT under VT-x).
    ept_root: u64,
    /// General registers while it is not in VMRUN.
    pub gprs: GuestGprs,
    /// Halted (HLT) until an interrupt, or this system time.
    pub wake_at: Option<u64>,
    /// The event `EVENTINJ` carries now, if any (to re-inject one the
    /// exit interrupted).
    injected: bool,
}

impl Drop for SvmVcpu {
    fn drop(&mut self) {
        crate::memory::free_frame_list(&[self.vmcb]);
        if let Some(v) = self.vmcs {
            crate::memory::free_frame_list(&[v]);
        }
    }
}

impl SvmVcpu {
    /// A vCPU with a fresh VMCB (intercepts, permission maps, nested
    /// paging on `ncr3`), its registers from `cpu`; `None` without memory
    /// (or without SVM on this machine).
    pub fn new(cpu: &HvmHwCpu, ncr3: u64) -> Option<SvmVcpu> {
        if !super::svm::hap_available() {
            return None;
        }
        let vmx = super::svm::is_vmx();
        let (iopm, msrpm) = if vmx { (0, 0) } else { permission_maps()? };
        let [frame] = crate::memory::alloc_frames::<1>()?;
        crate::memory::clear_frame(frame);
        let vmcs = if vmx {
            let rev = super::vmx::caps()?.revision;
            let Some([m]) = crate::memory::alloc_frames::<1>() else {
                crate::memory::free_frame_list(&[frame]);
                return None;
            };
            crate::memory::clear_frame(m);
            // SAFETY: a fresh frame of ours; its first dword the VMCS
            // revision identifier.
            unsafe { (phys_to_virt(m.maddr()) as *mut u32).write_volatile(rev) };
            Some(m)
        } else {
            None
        };
        let mut v = SvmVcpu {
            vmcb: frame,
            vmcs,
            ept_root: ncr3,
            gprs: GuestGprs::default(),
            wake_at: None,
            injected: false,
        };
        v.w32(
            vmcb::INTERCEPT_MISC1,
            vmcb::INTERCEPT_INTR
                | vmcb::INTERCEPT_NMI
                | vmcb::INTERCEPT_CPUID
                | vmcb::INTERCEPT_HLT
                | vmcb::INTERCEPT_IOIO
                | vmcb::INTERCEPT_MSR
                | vmcb::INTERCEPT_INVLPGA
                | vmcb::INTERCEPT_SHUTDOWN,
        );
        v.w32(
            vmcb::INTERCEPT_MISC2,
            vmcb::INTERCEPT2_VMRUN
                | vmcb::INTERCEPT2_VMMCALL
                | vmcb::INTERCEPT2_VMLOAD
                | vmcb::INTERCEPT2_VMSAVE
                | vmcb::INTERCEPT2_STGI
                | vmcb::INTERCEPT2_CLGI
                | vmcb::INTERCEPT2_SKINIT
                | vmcb::INTERCEPT2_MONITOR
                | vmcb::INTERCEPT2_MWAIT
                | vmcb::INTERCEPT2_XSETBV,
        );
        v.w64(vmcb::IOPM_BASE_PA, iopm);
        v.w64(vmcb::MSRPM_BASE_PA, msrpm);
        v.w32(vmcb::GUEST_ASID, 1);
        v.w64(vmcb::NP_ENABLE, 1);
        v.w64(vmcb::N_CR3, ncr3);
        v.w64(vmcb::V_INTR, vmcb::V_INTR_MASKING);
        v.w64(vmcb::G_PAT, PAT_RESET);
        v.set_context(cpu);
        Some(v)
    }

    fn ptr(&self, off: usize) -> *mut u8 {
        (phys_to_virt(self.vmcb.maddr()) + (off as u64 & 0xfff)) as *mut u8
    }

    fn r64(&self, off: usize) -> u64 {
        // SAFETY: the VMCB frame is this vCPU's alone (allocated in `new`,
        // freed on drop), direct-mapped; `off` is a field offset below
        // 0x1000 and 8-aligned; the CPU writes it only inside `svm_run`,
        // when no access runs here.
        unsafe { (self.ptr(off) as *const u64).read_volatile() }
    }

    fn w64(&mut self, off: usize, v: u64) {
        // SAFETY: as in `r64`.
        unsafe { (self.ptr(off) as *mut u64).write_volatile(v) }
    }

    fn r32(&self, off: usize) -> u32 {
        // SAFETY: as in `r64` (4-aligned).
        unsafe { (self.ptr(off) as *const u32).read_volatile() }
    }

    fn w32(&mut self, off: usize, v: u32) {
        // SAFETY: as in `r64` (4-aligned).
        unsafe { (self.ptr(off) as *mut u32).write_volatile(v) }
    }

    fn r16(&self, off: usize) -> u16 {
        // SAFETY: as in `r64` (2-aligned).
        unsafe { (self.ptr(off) as *const u16).read_volatile() }
    }

    fn w16(&mut self, off: usize, v: u16) {
        // SAFETY: as in `r64` (2-aligned).
        unsafe { (self.ptr(off) as *mut u16).write_volatile(v) }
    }

    fn w8(&mut self, off: usize, v: u8) {
        // SAFETY: as in `r64`.
        unsafe { self.ptr(off).write_volatile(v) }
    }

    fn r8(&self, off: usize) -> u8 {
        // SAFETY: as in `r64`.
        unsafe { self.ptr(off).read_volatile() }
    }

    fn seg(&self, seg: usize) -> (u16, u16, u32, u64) {
        (
            self.r16(seg + vmcb::SEG_SELECTOR),
            self.r16(seg + vmcb::SEG_ATTRIB),
            self.r32(seg + vmcb::SEG_LIMIT),
            self.r64(seg + vmcb::SEG_BASE),
        )
    }

    fn set_seg(&mut self, seg: usize, sel: u32, attrib: u32, limit: u32, base: u64) {
        self.w16(seg + vmcb::SEG_SELECTOR, sel as u16);
        self.w16(seg + vmcb::SEG_ATTRIB, (attrib & 0xfff) as u16);
        self.w32(seg + vmcb::SEG_LIMIT, limit);
        self.w64(seg + vmcb::SEG_BASE, base);
    }

    /// Loads the architectural state of `c` (Xen's `hvm_load_cpu_ctxt`,
    /// minus the FPU, which the scheduler keeps in the `Vcpu`).
    pub fn set_context(&mut self, c: &HvmHwCpu) {
        self.set_seg(vmcb::CS, c.cs_sel, c.cs_arbytes, c.cs_limit, c.cs_base);
        self.set_seg(vmcb::DS, c.ds_sel, c.ds_arbytes, c.ds_limit, c.ds_base);
        self.set_seg(vmcb::ES, c.es_sel, c.es_arbytes, c.es_limit, c.es_base);
        self.set_seg(vmcb::FS, c.fs_sel, c.fs_arbytes, c.fs_limit, c.fs_base);
        self.set_seg(vmcb::GS, c.gs_sel, c.gs_arbytes, c.gs_limit, c.gs_base);
        self.set_seg(vmcb::SS, c.ss_sel, c.ss_arbytes, c.ss_limit, c.ss_base);
        self.set_seg(vmcb::TR, c.tr_sel, c.tr_arbytes, c.tr_limit, c.tr_base);
        self.set_seg(
            vmcb::LDTR,
            c.ldtr_sel,
            c.ldtr_arbytes,
            c.ldtr_limit,
            c.ldtr_base,
        );
        self.set_seg(vmcb::GDTR, 0, 0, c.gdtr_limit, c.gdtr_base);
        self.set_seg(vmcb::IDTR, 0, 0, c.idtr_limit, c.idtr_base);
        // CPL is SS.DPL (real mode: 0).
        let cpl = if c.cr0 & CR0_PE != 0 {
            ((c.ss_arbytes >> 5) & 3) as u8
        } else {
            0
        };
        self.w8(vmcb::CPL, cpl);
        self.w64(vmcb::CR0, c.cr0 | CR0_ET);
        self.w64(vmcb::CR2, c.cr2);
        self.w64(vmcb::CR3, c.cr3);
        self.w64(vmcb::CR4, c.cr4);
        self.w64(vmcb::DR6, c.dr6 | 0xffff_0ff0);
        self.w64(vmcb::DR7, (c.dr7 & 0xffff_ffff) | 0x400);
        self.w64(vmcb::EFER, c.msr_efer | svm::msr::EFER_SVME);
        self.w64(vmcb::RFLAGS, c.rflags | 2);
        self.w64(vmcb::RIP, c.rip);
        self.w64(vmcb::RSP, c.rsp);
        self.w64(vmcb::RAX, c.rax);
        self.w64(vmcb::STAR, c.msr_star);
        self.w64(vmcb::LSTAR, c.msr_lstar);
        self.w64(vmcb::CSTAR, c.msr_cstar);
        self.w64(vmcb::SFMASK, c.msr_syscall_mask);
        self.w64(vmcb::KERNEL_GS_BASE, c.shadow_gs);
        self.w64(vmcb::SYSENTER_CS, c.sysenter_cs);
        self.w64(vmcb::SYSENTER_ESP, c.sysenter_esp);
        self.w64(vmcb::SYSENTER_EIP, c.sysenter_eip);
        self.gprs = GuestGprs {
            rbx: c.rbx,
            rcx: c.rcx,
            rdx: c.rdx,
            rsi: c.rsi,
            rdi: c.rdi,
            rbp: c.rbp,
            r: [c.r8, c.r9, c.r10, c.r11, c.r12, c.r13, c.r14, c.r15],
        };
        // An event on its way in (Xen's `pending_event`: the same bits as
        // EVENTINJ's low half; the error code the high half). A reserved
        // type (1), or an error code on anything but an exception, is
        // dropped, as Xen's hvm_load_cpu_ctxt refuses it.
        let ev = u64::from(c.pending_event);
        let ty = (ev >> 8) & 7;
        let ok = ev & (1 << 31) != 0 && ty != 1 && ty != 7 && (ev & (1 << 11) == 0 || ty == 3);
        self.w64(
            vmcb::EVENTINJ,
            if ok {
                (ev & 0x8000_0fff) | (u64::from(c.error_code) << 32)
            } else {
                0
            },
        );
        self.injected = ok;
        self.wake_at = None;
    }

    /// The architectural state (Xen's `hvm_save_cpu_ctxt`, FPU left to the
    /// caller).
    pub fn context(&self) -> HvmHwCpu {
        let mut c = HvmHwCpu::default();
        let s = |o| self.seg(o);
        (c.cs_sel, c.cs_arbytes, c.cs_limit, c.cs_base) = wide(s(vmcb::CS));
        (c.ds_sel, c.ds_arbytes, c.ds_limit, c.ds_base) = wide(s(vmcb::DS));
        (c.es_sel, c.es_arbytes, c.es_limit, c.es_base) = wide(s(vmcb::ES));
        (c.fs_sel, c.fs_arbytes, c.fs_limit, c.fs_base) = wide(s(vmcb::FS));
        (c.gs_sel, c.gs_arbytes, c.gs_limit, c.gs_base) = wide(s(vmcb::GS));
        (c.ss_sel, c.ss_arbytes, c.ss_limit, c.ss_base) = wide(s(vmcb::SS));
        (c.tr_sel, c.tr_arbytes, c.tr_limit, c.tr_base) = wide(s(vmcb::TR));
        (c.ldtr_sel, c.ldtr_arbytes, c.ldtr_limit, c.ldtr_base) = wide(s(vmcb::LDTR));
        (_, _, c.gdtr_limit, c.gdtr_base) = s(vmcb::GDTR);
        (_, _, c.idtr_limit, c.idtr_base) = s(vmcb::IDTR);
        c.cr0 = self.r64(vmcb::CR0);
        c.cr2 = self.r64(vmcb::CR2);
        c.cr3 = self.r64(vmcb::CR3);
        c.cr4 = self.r64(vmcb::CR4);
        c.dr6 = self.r64(vmcb::DR6);
        c.dr7 = self.r64(vmcb::DR7);
        c.msr_efer = self.r64(vmcb::EFER) & !svm::msr::EFER_SVME;
        c.rflags = self.r64(vmcb::RFLAGS);
        c.rip = self.r64(vmcb::RIP);
        c.rsp = self.r64(vmcb::RSP);
        c.rax = self.r64(vmcb::RAX);
        c.msr_star = self.r64(vmcb::STAR);
        c.msr_lstar = self.r64(vmcb::LSTAR);
        c.msr_cstar = self.r64(vmcb::CSTAR);
        c.msr_syscall_mask = self.r64(vmcb::SFMASK);
        c.shadow_gs = self.r64(vmcb::KERNEL_GS_BASE);
        c.sysenter_cs = self.r64(vmcb::SYSENTER_CS);
        c.sysenter_esp = self.r64(vmcb::SYSENTER_ESP);
        c.sysenter_eip = self.r64(vmcb::SYSENTER_EIP);
        let g = &self.gprs;
        (c.rbx, c.rcx, c.rdx, c.rsi, c.rdi, c.rbp) = (g.rbx, g.rcx, g.rdx, g.rsi, g.rdi, g.rbp);
        [c.r8, c.r9, c.r10, c.r11, c.r12, c.r13, c.r14, c.r15] = g.r;
        if self.injected {
            let ev = self.r64(vmcb::EVENTINJ);
            c.pending_event = ev as u32;
            c.error_code = (ev >> 32) as u32;
        }
        c
    }

    /// The state INIT leaves (real mode at F000:FFF0), waiting for SIPI.
    pub fn init_state(&mut self) {
        self.set_context(&init_cpu());
    }

    /// Starts the vCPU in real mode at `vector << 12` (a start-up IPI).
    pub fn sipi(&mut self, vector: u8) {
        let mut c = init_cpu();
        c.cs_sel = u32::from(vector) << 8;
        c.cs_base = u64::from(vector) << 12;
        c.rip = 0;
        self.set_context(&c);
    }

    /// Whether `EVENTINJ` holds an event for the next VMRUN.
    pub fn event_pending(&self) -> bool {
        self.injected
    }

    /// Whether the guest can take an external interrupt now (RFLAGS.IF,
    /// no interrupt shadow, nothing being injected).
    pub fn can_take_interrupt(&self) -> bool {
        self.r64(vmcb::RFLAGS) & (1 << 9) != 0
            && self.r64(vmcb::INTERRUPT_SHADOW) & 1 == 0
            && !self.injected
    }

    /// Puts an event on `EVENTINJ` for the next VMRUN.
    fn inject_event(&mut self, vector: u8, kind: u64, error: Option<u32>) {
        let mut e = u64::from(vector) | kind | vmcb::EVENT_VALID;
        if let Some(code) = error {
            e |= vmcb::EVENT_EV | (u64::from(code) << 32);
        }
        self.w64(vmcb::EVENTINJ, e);
        self.injected = true;
    }

    /// Injects external interrupt `vector`.
    pub fn inject_interrupt(&mut self, vector: u8) {
        self.inject_event(vector, vmcb::EVENT_TYPE_INTR, None);
    }

    /// Injects an NMI.
    pub fn inject_nmi(&mut self) {
        self.inject_event(2, vmcb::EVENT_TYPE_NMI, None);
    }

    /// Asks for an exit as soon as the guest can take an interrupt
    /// (`V_IRQ` with the `VINTR` intercept), or stops asking.
    pub fn want_interrupt_window(&mut self, on: bool) {
        let mut vi = self.r64(vmcb::V_INTR);
        let mut m = self.r32(vmcb::INTERCEPT_MISC1);
        if on {
            vi |= vmcb::V_IRQ | vmcb::V_IGN_TPR;
            m |= vmcb::INTERCEPT_VINTR;
        } else {
            vi &= !(vmcb::V_IRQ | vmcb::V_IGN_TPR);
            m &= !vmcb::INTERCEPT_VINTR;
        }
        self.w64(vmcb::V_INTR, vi);
        self.w32(vmcb::INTERCEPT_MISC1, m);
    }

    /// Runs the guest once, until it exits. Interrupts off on entry and on
    /// return (a physical interrupt that made it exit is pending; the
    /// caller lets it in).
    pub fn run(&mut self) -> Result<(), ()> {
        if let Some(vmcs) = self.vmcs {
            super::vmx_vcpu::run(
                phys_to_virt(self.vmcb.maddr()),
                &mut self.gprs,
                vmcs.maddr(),
                self.ept_root,
            )?;
            self.after_exit();
            return Ok(());
        }
        let host = cpu_ready().ok_or(())?;
        self.w8(vmcb::TLB_CONTROL, TLB_FLUSH_ALL);
        // SAFETY: the VMCB is well-formed (built in `new`, every field the
        // guest or `set_context` sets is data VMRUN checks itself: a bad
        // one exits with VMEXIT_INVALID); its maps and nested tables stay
        // allocated while the vCPU exists, and the caller keeps the vCPU
        // (so these frames and `gprs`) alive and on this CPU alone until
        // `svm_run` returns; `host` is this CPU's host state. svm_run
        // saves and restores every callee-saved register and returns on
        // the stack it was called on, with IF clear.
        unsafe { svm_run(self.vmcb.maddr(), &mut self.gprs, host) };
        self.after_exit();
        Ok(())
    }

    /// After an exit: an event it cut short (EXITINTINFO) is injected
    /// again (the platform counted it as delivered).
    fn after_exit(&mut self) {
        let ii = self.r64(vmcb::EXITINTINFO);
        if ii & vmcb::EVENT_VALID != 0 {
            self.w64(vmcb::EVENTINJ, ii);
            self.injected = true;
        } else {
            self.w64(vmcb::EVENTINJ, 0);
            self.injected = false;
        }
    }

    /// The exit just taken, in vendor-neutral terms (`None`: an SVM
    /// instruction the guest may not use, to answer with #UD).
    pub fn exit(&self) -> Option<hx::Exit> {
        let code = self.r64(vmcb::EXITCODE);
        let info1 = self.r64(vmcb::EXITINFO1);
        let info2 = self.r64(vmcb::EXITINFO2);
        let rip = self.r64(vmcb::RIP);
        Some(match code {
            exit::CPUID => hx::Exit::Cpuid { insn_len: 2 },
            exit::MSR if info1 == 0 => hx::Exit::Rdmsr { insn_len: 2 },
            exit::MSR => hx::Exit::Wrmsr { insn_len: 2 },
            exit::HLT => hx::Exit::Hlt { insn_len: 1 },
            exit::VMMCALL => hx::Exit::Vmcall { insn_len: 3 },
            exit::INTR => hx::Exit::Intr,
            exit::NMI => hx::Exit::Nmi,
            exit::VINTR => hx::Exit::InterruptWindow,
            exit::SHUTDOWN => hx::Exit::Shutdown,
            exit::INVALID => hx::Exit::Invalid,
            exit::NPF => hx::Exit::Npf {
                gpa: info2,
                write: info1 & 2 != 0,
                fetch: info1 & 0x10 != 0,
            },
            exit::IOIO => {
                let Some(io) = svm::IoExit::decode(info1) else {
                    return Some(hx::Exit::Unknown(code));
                };
                // Address size: bits 7..9 (A16, A32, A64).
                let addr_size = match (info1 >> 7) & 0b111 {
                    0b001 => 2,
                    0b010 => 4,
                    _ => 8,
                };
                hx::Exit::Io(IoExit {
                    port: io.port,
                    size: io.size,
                    dir: if io.is_in { IoDir::In } else { IoDir::Out },
                    string: io.string,
                    rep: io.rep,
                    addr_size,
                    seg: Segment::Ds,
                    insn_len: info2.wrapping_sub(rip).min(15) as u8,
                })
            }
            c if (exit::EXCP_BASE..exit::EXCP_BASE + 32).contains(&c) => hx::Exit::Exception {
                vector: (c - exit::EXCP_BASE) as u8,
                error_code: Some(info1 as u32),
            },
            exit::VMRUN
            | exit::VMLOAD
            | exit::VMSAVE
            | exit::STGI
            | exit::CLGI
            | exit::SKINIT
            | exit::INVLPGA
            | exit::MONITOR
            | exit::MWAIT
            | exit::XSETBV => return None,
            c => hx::Exit::Unknown(c),
        })
    }

    /// The guest's PAT.
    pub fn pat(&self) -> u64 {
        self.r64(vmcb::G_PAT)
    }

    /// Sets the guest's PAT (checked by the caller).
    pub fn set_pat(&mut self, pat: u64) {
        self.w64(vmcb::G_PAT, pat);
    }

    /// The guest's TSC minus the host's (non-zero once it writes its TSC).
    pub fn tsc_offset(&self) -> u64 {
        self.r64(vmcb::TSC_OFFSET)
    }

    /// RIP now.
    pub fn rip(&self) -> u64 {
        self.r64(vmcb::RIP)
    }

    /// Sets RIP (dropping the interrupt shadow: an instruction completed).
    pub fn set_rip(&mut self, rip: u64) {
        self.w64(vmcb::RIP, rip);
        self.w64(vmcb::INTERRUPT_SHADOW, 0);
    }

    /// RAX.
    pub fn rax(&self) -> u64 {
        self.r64(vmcb::RAX)
    }

    /// Sets RAX.
    pub fn set_rax(&mut self, v: u64) {
        self.w64(vmcb::RAX, v);
    }

    /// Whether the vCPU runs 64-bit code (EFER.LMA and CS.L).
    pub fn long_mode(&self) -> bool {
        self.r64(vmcb::EFER) & EFER_LMA != 0
            && self.r16(vmcb::CS + vmcb::SEG_ATTRIB) & (1 << 9) != 0
    }

    /// Current privilege level.
    pub fn cpl(&self) -> u8 {
        self.r8(vmcb::CPL)
    }

    /// The paging registers, for walks of its page tables.
    pub fn paging_regs(&self) -> PagingRegs {
        PagingRegs {
            cr0: self.r64(vmcb::CR0),
            cr3: self.r64(vmcb::CR3),
            cr4: self.r64(vmcb::CR4),
            efer: self.r64(vmcb::EFER),
            cpl: self.r8(vmcb::CPL),
        }
    }

    /// The raw exit code, for logs.
    pub fn exit_code(&self) -> u64 {
        self.r64(vmcb::EXITCODE)
    }

    /// Injects #UD (an instruction the guest may not use).
    pub fn inject_ud(&mut self) {
        self.inject_event(6, vmcb::EVENT_TYPE_EXCEPTION, None);
    }
}

fn wide((sel, attr, limit, base): (u16, u16, u32, u64)) -> (u32, u32, u32, u64) {
    (u32::from(sel), u32::from(attr), limit, base)
}

/// The INIT state (Intel SDM table 10-1; AMD APM 14.1.3).
fn init_cpu() -> HvmHwCpu {
    let data = |c: &mut HvmHwCpu| {
        (
            c.ds_arbytes,
            c.es_arbytes,
            c.fs_arbytes,
            c.gs_arbytes,
            c.ss_arbytes,
        ) = (0x93, 0x93, 0x93, 0x93, 0x93);
        (c.ds_limit, c.es_limit, c.fs_limit, c.gs_limit, c.ss_limit) =
            (0xffff, 0xffff, 0xffff, 0xffff, 0xffff);
    };
    let mut c = HvmHwCpu {
        cs_sel: 0xf000,
        cs_base: 0xffff_0000,
        cs_limit: 0xffff,
        cs_arbytes: 0x9b,
        rip: 0xfff0,
        rflags: 2,
        cr0: 0x6000_0010,
        rdx: 0x600,
        tr_arbytes: 0x8b,
        tr_limit: 0xffff,
        ldtr_arbytes: 0x82,
        ldtr_limit: 0xffff,
        gdtr_limit: 0xffff,
        idtr_limit: 0xffff,
        dr6: 0xffff_0ff0,
        dr7: 0x400,
        ..Default::default()
    };
    data(&mut c);
    c
}

// ---- The emulator's view -------------------------------------------------------

/// Guest-physical memory of one HVM domain, through its p2m.
pub struct GuestRam<'a> {
    /// The domain's nested page tables.
    pub p2m: &'a xen_core::hvm::p2m::P2m,
}

impl GuestRam<'_> {
    /// The direct-map address of guest byte `gpa` (its page RAM).
    fn va(&self, gpa: u64) -> Option<u64> {
        let mfn = crate::hvm_glue::lookup_p2m(self.p2m, gpa >> 12)?;
        Some(phys_to_virt(mfn.maddr()) + (gpa & 0xfff))
    }

    /// Copies guest RAM at `gpa` (within one page) into `buf`.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Option<()> {
        if (gpa & 0xfff) as usize + buf.len() > 4096 {
            return None;
        }
        let va = self.va(gpa)?;
        // SAFETY: `va` is inside a RAM frame of this domain (its p2m says
        // so), direct-mapped, and the range stays in that page (checked);
        // the guest may write it concurrently, hence a plain byte copy into
        // our own buffer with no reference to guest memory kept.
        unsafe { core::ptr::copy_nonoverlapping(va as *const u8, buf.as_mut_ptr(), buf.len()) };
        Some(())
    }

    /// Writes `buf` to guest RAM at `gpa` (within one page).
    pub fn write(&self, gpa: u64, buf: &[u8]) -> Option<()> {
        if (gpa & 0xfff) as usize + buf.len() > 4096 {
            return None;
        }
        let va = self.va(gpa)?;
        // SAFETY: as in `read`, the other way round.
        unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), va as *mut u8, buf.len()) };
        // Written behind the nested tables' back: dirty in log-dirty mode.
        crate::log_dirty::note(gpa >> 12);
        Some(())
    }
}

impl GuestPhys for GuestRam<'_> {
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(gpa & !7, &mut b)?;
        Some(u64::from_le_bytes(b))
    }
    fn read_u32(&self, gpa: u64) -> Option<u32> {
        let mut b = [0u8; 4];
        self.read(gpa & !3, &mut b)?;
        Some(u32::from_le_bytes(b))
    }
}

/// One vCPU as the vendor-neutral exit handler sees it.
pub struct Guest<'a> {
    /// The vCPU.
    pub v: &'a mut SvmVcpu,
    /// Its number.
    pub id: usize,
    /// Its domain's memory.
    pub ram: GuestRam<'a>,
}

impl Guest<'_> {
    fn paging(&self) -> PagingRegs {
        self.v.paging_regs()
    }
}

const GPR_RSP: usize = 4;

impl Env for Guest<'_> {
    fn mode(&self) -> Mode {
        let cs_attr = self.v.r16(vmcb::CS + vmcb::SEG_ATTRIB);
        if self.v.r64(vmcb::CR0) & CR0_PE == 0 {
            Mode::Bits16
        } else if self.v.r64(vmcb::EFER) & EFER_LMA != 0 && cs_attr & (1 << 9) != 0 {
            Mode::Bits64
        } else if cs_attr & (1 << 10) != 0 {
            Mode::Bits32
        } else {
            Mode::Bits16
        }
    }
    fn rip(&self) -> u64 {
        self.v.r64(vmcb::RIP)
    }
    fn rflags(&self) -> u64 {
        self.v.r64(vmcb::RFLAGS)
    }
    fn gpr(&self, reg: usize) -> u64 {
        let g = &self.v.gprs;
        match reg {
            0 => self.v.r64(vmcb::RAX),
            1 => g.rcx,
            2 => g.rdx,
            3 => g.rbx,
            GPR_RSP => self.v.r64(vmcb::RSP),
            5 => g.rbp,
            6 => g.rsi,
            7 => g.rdi,
            8..=15 => g.r[reg - 8],
            _ => 0,
        }
    }
    fn set_gpr(&mut self, reg: usize, val: u64) {
        let g = &mut self.v.gprs;
        match reg {
            0 => self.v.w64(vmcb::RAX, val),
            1 => g.rcx = val,
            2 => g.rdx = val,
            3 => g.rbx = val,
            GPR_RSP => self.v.w64(vmcb::RSP, val),
            5 => g.rbp = val,
            6 => g.rsi = val,
            7 => g.rdi = val,
            8..=15 => g.r[reg - 8] = val,
            _ => {}
        }
    }
    fn segment_base(&self, seg: Segment) -> u64 {
        let off = match seg {
            Segment::Es => vmcb::ES,
            Segment::Cs => vmcb::CS,
            Segment::Ss => vmcb::SS,
            Segment::Ds => vmcb::DS,
            Segment::Fs => vmcb::FS,
            Segment::Gs => vmcb::GS,
        };
        self.v.r64(off + vmcb::SEG_BASE)
    }
    fn translate(&mut self, linear: u64, access: Access) -> Result<u64, Fault> {
        walk::translate(&self.ram, &self.paging(), linear, access)
    }
    fn is_mmio(&self, gpa: u64) -> bool {
        // The LAPIC and IOAPIC pages are never RAM (the memory map keeps
        // them out): whatever is not RAM is MMIO.
        crate::hvm_glue::lookup_p2m(self.ram.p2m, gpa >> 12).is_none()
    }
    fn read_ram(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), Fault> {
        self.ram.read(gpa, buf).ok_or(Fault::GP0)
    }
    fn write_ram(&mut self, gpa: u64, buf: &[u8]) -> Result<(), Fault> {
        self.ram.write(gpa, buf).ok_or(Fault::GP0)
    }
    fn mmio_read(&mut self, _gpa: u64, _size: u8) -> Result<u64, Pending> {
        Err(Pending)
    }
    fn mmio_write(&mut self, _gpa: u64, _size: u8, _val: u64) -> Result<(), Pending> {
        Err(Pending)
    }
}

impl hx::Vcpu for Guest<'_> {
    fn id(&self) -> usize {
        self.id
    }
    fn set_rip(&mut self, rip: u64) {
        self.v.w64(vmcb::RIP, rip);
        self.v.w64(vmcb::INTERRUPT_SHADOW, 0);
    }
    fn set_rflags(&mut self, rflags: u64) {
        self.v.w64(vmcb::RFLAGS, rflags | 2);
    }
    fn inject(&mut self, fault: Fault) {
        if let Some(cr2) = fault.cr2 {
            self.v.w64(vmcb::CR2, cr2);
        }
        self.v
            .inject_event(fault.vector, vmcb::EVENT_TYPE_EXCEPTION, fault.error_code);
    }
    fn cpuid_state(&self) -> xen_core::hvm::cpuid::VcpuCpuidState {
        xen_core::hvm::cpuid::VcpuCpuidState {
            vcpu_id: self.id as u32,
            cr4: self.v.r64(vmcb::CR4),
            xcr0: 0b11,
        }
    }
    fn msr_ctx(&self) -> GuestMsrCtx {
        GuestMsrCtx {
            efer: self.v.r64(vmcb::EFER) & !svm::msr::EFER_SVME,
            paging: self.v.r64(vmcb::CR0) & CR0_PG != 0,
        }
    }
    fn guest_reg(&self, reg: GuestReg) -> u64 {
        match reg_offset(reg) {
            Some(off) => self.v.r64(off),
            None => 0,
        }
    }
    fn set_guest_reg(&mut self, reg: GuestReg, val: u64) {
        if let Some(off) = reg_offset(reg) {
            self.v.w64(off, val);
        }
    }
    fn set_efer(&mut self, efer: u64) {
        self.v.w64(vmcb::EFER, efer | svm::msr::EFER_SVME);
    }
    fn tsc(&self) -> u64 {
        instr::rdtsc().wrapping_add(self.v.r64(vmcb::TSC_OFFSET))
    }
    fn set_tsc(&mut self, tsc: u64) {
        self.v
            .w64(vmcb::TSC_OFFSET, tsc.wrapping_sub(instr::rdtsc()));
    }
    fn install_hypercall_page(&mut self, gfn: u64) -> bool {
        let mut page = [0xccu8; 4096];
        for (i, stub) in page.chunks_exact_mut(32).enumerate() {
            // mov $i, %eax; vmmcall; ret
            stub[0] = 0xb8;
            stub[1..5].copy_from_slice(&(i as u32).to_le_bytes());
            // VMMCALL on AMD, VMCALL on Intel.
            let call = if self.v.vmcs.is_some() { 0xc1 } else { 0xd9 };
            stub[5..8].copy_from_slice(&[0x0f, 0x01, call]);
            stub[8] = 0xc3;
        }
        self.ram.write(gfn << 12, &page).is_some()
    }
}

/// Where a [`GuestReg`] lives in the VMCB (`None`: TSC_AUX, which SVM
/// does not switch: reads as 0, writes are dropped).
fn reg_offset(reg: GuestReg) -> Option<usize> {
    Some(match reg {
        GuestReg::SysenterCs => vmcb::SYSENTER_CS,
        GuestReg::SysenterEsp => vmcb::SYSENTER_ESP,
        GuestReg::SysenterEip => vmcb::SYSENTER_EIP,
        GuestReg::Pat => vmcb::G_PAT,
        GuestReg::Star => vmcb::STAR,
        GuestReg::Lstar => vmcb::LSTAR,
        GuestReg::Cstar => vmcb::CSTAR,
        GuestReg::Sfmask => vmcb::SFMASK,
        GuestReg::FsBase => vmcb::FS + vmcb::SEG_BASE,
        GuestReg::GsBase => vmcb::GS + vmcb::SEG_BASE,
        GuestReg::KernelGsBase => vmcb::KERNEL_GS_BASE,
        GuestReg::TscAux => return None,
    })
}
