//! Intel VT-x on the metal: detection at boot and a world-switch
//! self-test, the first step of the VMX backend (as `svm.rs` was for
//! SVM).
//!
//! At boot, on the boot CPU (interrupts off, before the other CPUs and any
//! guest), [`probe_and_selftest`] checks what VT-x offers (EPT with a
//! 4-level walk and write-back tables, unrestricted guest: what Oxen's HVM
//! needs), turns VMX on (`IA32_FEATURE_CONTROL`, CR0.NE, CR4.VMXE,
//! VMXON), and runs the same tiny 32-bit guest as the SVM self-test under
//! EPT: it prints through port 0xe9 (I/O exits), asks CPUID 65 times
//! (the hypervisor answers `Oxen`; 64 timed round trips), writes to
//! 0xfee00000 which EPT does not map (an EPT violation the hypervisor
//! completes by skipping the instruction) and halts. Then VMX goes off
//! again and every frame comes back; the result is one log line.
//!
//! The numbers (controls, field encodings, exit reasons) are in
//! `xen_core::vmx` (pure). Nothing here can stop the boot: a failure is
//! logged and the test ends.

use core::arch::{asm, global_asm};

use super::instr;
use super::paging::phys_to_virt;
use xen_core::mm::Mfn;
use xen_core::vmx::{self, ctl, exit, field, msr};

/// Guest-physical layout of the self-test guest (as the SVM one).
const GUEST_CODE_GPA: u64 = 0x1000;
/// Not mapped by EPT: the guest's write there is an EPT violation.
const GUEST_MMIO_GPA: u64 = 0xfee0_0000;
/// Exits before the test gives up.
const MAX_EXITS: usize = 256;
use super::svm::TIMED_CPUIDS;
/// EPT entry: read, write, execute.
const EPT_RWX: u64 = 0b111;
/// EPT leaf memory type: write-back.
const EPT_WB: u64 = 6 << 3;

/// Every general register of the guest (VMX keeps none in the VMCS but
/// RSP), in [`vmx_run`]'s order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct VmxGprs {
    /// RAX, RBX, RCX, RDX, RSI, RDI, RBP, R8..R15.
    pub r: [u64; 15],
}

/// Index of each register in [`VmxGprs::r`].
pub mod reg {
    /// RAX.
    pub const RAX: usize = 0;
    /// RBX.
    pub const RBX: usize = 1;
    /// RCX.
    pub const RCX: usize = 2;
    /// RDX.
    pub const RDX: usize = 3;
}

global_asm!(
    r#"
    .pushsection .text.vmx, "ax", @progbits
    /* vmx_run(gprs: rdi, resume: esi) -> eax: runs the current VMCS's
       guest until a VM exit (0), or reports a failed VMLAUNCH/VMRESUME
       (1: VMfailInvalid, 2: VMfailValid). HOST_RSP and HOST_RIP are set
       here; everything else of the host state by the caller. Call with
       IF clear. */
    .balign 16
    .globl vmx_run
vmx_run:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    push %rdi
    mov $0x6c14, %eax
    vmwrite %rsp, %rax
    lea 1f(%rip), %rdx
    mov $0x6c16, %eax
    vmwrite %rdx, %rax
    cmp $0, %esi
    mov 0(%rdi), %rax
    mov 8(%rdi), %rbx
    mov 16(%rdi), %rcx
    mov 24(%rdi), %rdx
    mov 32(%rdi), %rsi
    mov 48(%rdi), %rbp
    mov 56(%rdi), %r8
    mov 64(%rdi), %r9
    mov 72(%rdi), %r10
    mov 80(%rdi), %r11
    mov 88(%rdi), %r12
    mov 96(%rdi), %r13
    mov 104(%rdi), %r14
    mov 112(%rdi), %r15
    mov 40(%rdi), %rdi
    jne 3f
    vmlaunch
    jmp 2f
3:  vmresume
2:  /* Failed: CF means VMfailInvalid, ZF VMfailValid. */
    mov $1, %eax
    jc 4f
    mov $2, %eax
4:  add $8, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret
1:  /* VM exit: RSP is HOST_RSP (the gprs pointer on top). */
    push %rdi
    mov 8(%rsp), %rdi
    mov %rax, 0(%rdi)
    mov %rbx, 8(%rdi)
    mov %rcx, 16(%rdi)
    mov %rdx, 24(%rdi)
    mov %rsi, 32(%rdi)
    mov %rbp, 48(%rdi)
    mov %r8, 56(%rdi)
    mov %r9, 64(%rdi)
    mov %r10, 72(%rdi)
    mov %r11, 80(%rdi)
    mov %r12, 88(%rdi)
    mov %r13, 96(%rdi)
    mov %r14, 104(%rdi)
    mov %r15, 112(%rdi)
    pop %rax
    mov %rax, 40(%rdi)
    add $8, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    xor %eax, %eax
    ret
    .popsection
    "#,
    options(att_syntax)
);

extern "C" {
    /// See the assembly above.
    pub(super) fn vmx_run(gprs: *mut VmxGprs, resume: u32) -> u32;
    static svm_guest_start: u8;
    static svm_guest_end: u8;
}

/// VMWRITE of the current VMCS; `Err` with the field if it failed.
pub fn vmwrite(f: u32, v: u64) -> Result<(), u32> {
    let ok: u8;
    // SAFETY: VMWRITE touches only the current VMCS (VMX is on and one is
    // current whenever this is called); a bad field sets the flags, read
    // back below.
    unsafe {
        asm!(
            "vmwrite {f}, {v}",
            "seta {ok}",
            f = in(reg) u64::from(f),
            v = in(reg) v,
            ok = out(reg_byte) ok,
            options(nostack)
        )
    };
    if ok == 1 {
        Ok(())
    } else {
        Err(f)
    }
}

/// VMREAD of the current VMCS (0 if the field cannot be read).
pub fn vmread(f: u32) -> u64 {
    let v: u64;
    // SAFETY: as in `vmwrite`; VMREAD writes only its register operand.
    unsafe {
        asm!(
            "vmread {v}, {f}",
            v = out(reg) v,
            f = in(reg) u64::from(f),
            options(nostack)
        )
    };
    v
}

/// VMXON/VMCLEAR/VMPTRLD of a physical address; true if it succeeded.
///
/// # Safety
/// `pa` must be a 4 KiB frame owned by the caller for this use, holding
/// the VMX revision identifier.
pub(super) unsafe fn vmx_op(op: u8, pa: u64) -> bool {
    let ok: u8;
    let mem = pa;
    // SAFETY: per the contract; the instructions read their 64-bit operand
    // from `mem` on our stack.
    unsafe {
        match op {
            0 => asm!("vmxon [{m}]", "seta {ok}", m = in(reg) &mem, ok = out(reg_byte) ok),
            1 => asm!("vmclear [{m}]", "seta {ok}", m = in(reg) &mem, ok = out(reg_byte) ok),
            _ => asm!("vmptrld [{m}]", "seta {ok}", m = in(reg) &mem, ok = out(reg_byte) ok),
        }
    }
    ok == 1
}

/// `INVEPT`: drops the TLB's guest-physical (and combined) translations
/// of the EPT rooted at `eptp` (single-context, type 1) or of every EPT
/// (all-context, type 2) when `eptp` is `None`. False if the CPU refused.
///
/// # Safety
/// This CPU must be in VMX root operation (VMXON done), and the CPU must
/// support the type used (`VmxCaps::invept_single`/`invept_all`).
pub(super) unsafe fn invept(eptp: Option<u64>) -> bool {
    let desc: [u64; 2] = [eptp.unwrap_or(0), 0];
    let ty: u64 = if eptp.is_some() { 1 } else { 2 };
    let ok: u8;
    // SAFETY: per the contract; INVEPT only drops cached translations and
    // reads its 16-byte descriptor from our stack.
    unsafe {
        asm!("invept {t}, [{d}]", "seta {ok}", t = in(reg) ty, d = in(reg) &desc, ok = out(reg_byte) ok)
    };
    ok == 1
}

/// What VT-x offers, read from the capability MSRs.
#[derive(Clone, Copy, Debug)]
pub struct VmxCaps {
    /// VMCS revision identifier.
    pub revision: u32,
    /// Pin-based controls allowed (capability MSR value).
    pub pin: u64,
    /// Primary processor-based controls allowed.
    pub proc: u64,
    /// Secondary processor-based controls allowed.
    pub proc2: u64,
    /// Exit controls allowed.
    pub exit: u64,
    /// Entry controls allowed.
    pub entry: u64,
    /// IA32_VMX_EPT_VPID_CAP.
    pub ept: u64,
}

impl VmxCaps {
    /// INVEPT with the all-context type (EPT_VPID_CAP bits 20 and 26).
    pub fn invept_all(&self) -> bool {
        self.ept & (1 << 20) != 0 && self.ept & (1 << 26) != 0
    }

    /// INVEPT with the single-context type (bits 20 and 25).
    pub fn invept_single(&self) -> bool {
        self.ept & (1 << 20) != 0 && self.ept & (1 << 25) != 0
    }

    /// EPT with a 4-level walk and write-back paging structures.
    pub fn ept_usable(&self) -> bool {
        self.proc2 >> 32 & u64::from(ctl::PROC2_EPT) != 0
            && self.ept & (1 << 6) != 0
            && self.ept & (1 << 14) != 0
    }
    /// Unrestricted guest (real mode, paging off).
    pub fn unrestricted(&self) -> bool {
        self.proc2 >> 32 & u64::from(ctl::PROC2_UNRESTRICTED) != 0
    }
}

fn read_caps() -> Option<VmxCaps> {
    let basic = instr::rdmsr_safe(msr::BASIC)?;
    let truectl = basic & (1 << 55) != 0;
    let pick = |t: u32, l: u32| instr::rdmsr_safe(if truectl { t } else { l });
    let proc = pick(msr::TRUE_PROCBASED, msr::PROCBASED)?;
    let proc2 = if proc >> 32 & u64::from(ctl::PROC_SECONDARY) != 0 {
        instr::rdmsr_safe(msr::PROCBASED2).unwrap_or(0)
    } else {
        0
    };
    Some(VmxCaps {
        revision: (basic & 0x7fff_ffff) as u32,
        pin: pick(msr::TRUE_PINBASED, msr::PINBASED)?,
        proc,
        proc2,
        exit: pick(msr::TRUE_EXIT, msr::EXIT)?,
        entry: pick(msr::TRUE_ENTRY, msr::ENTRY)?,
        ept: instr::rdmsr_safe(msr::EPT_VPID_CAP).unwrap_or(0),
    })
}

/// Frames the self-test borrows (freed at the end).
struct Frames {
    vmxon: Mfn,
    vmcs: Mfn,
    ept: [Mfn; 4],
    guest: [Mfn; 3],
}

/// A direct-mapped frame as bytes.
///
/// # Safety
/// `m` must be a frame the caller owns exclusively for as long as the
/// slice lives.
unsafe fn frame_bytes<'a>(m: Mfn) -> &'a mut [u8] {
    // SAFETY: the direct map covers every RAM frame; the caller owns it.
    unsafe { core::slice::from_raw_parts_mut(phys_to_virt(m.maddr()) as *mut u8, 4096) }
}

fn put_u64(page: &mut [u8], off: usize, v: u64) {
    page[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// Detects VT-x, and with EPT and unrestricted guest, runs the self-test.
/// Boot CPU, interrupts off, before any guest.
pub fn probe_and_selftest() {
    if instr::cpuid(1, 0).ecx & vmx::CPUID_VMX == 0 {
        return;
    }
    let fc = instr::rdmsr_safe(msr::FEATURE_CONTROL).unwrap_or(0);
    if fc & msr::FEATURE_CONTROL_LOCK != 0 && fc & msr::FEATURE_CONTROL_VMX_OUTSIDE_SMX == 0 {
        log::warn!("HVM: VMX is disabled by the firmware (IA32_FEATURE_CONTROL)");
        return;
    }
    let Some(caps) = read_caps() else {
        log::warn!("HVM: VMX capability MSRs unreadable");
        return;
    };
    log::info!(
        "HVM: VMX (Intel VT-x) revision {:#x}, EPT {}, unrestricted guest {}",
        caps.revision,
        if caps.ept_usable() { "yes" } else { "no" },
        if caps.unrestricted() { "yes" } else { "no" },
    );
    if !caps.ept_usable() || !caps.unrestricted() {
        log::warn!("HVM: VMX without EPT or unrestricted guest: Oxen's VMX backend needs both");
        return;
    }
    if fc & msr::FEATURE_CONTROL_LOCK == 0 {
        // SAFETY: enabling VMX outside SMX and locking the MSR is what
        // firmware would do; the register is unlocked (checked).
        unsafe {
            instr::wrmsr(
                msr::FEATURE_CONTROL,
                fc | msr::FEATURE_CONTROL_LOCK | msr::FEATURE_CONTROL_VMX_OUTSIDE_SMX,
            )
        };
    }
    let Some(singles) = crate::memory::alloc_frames::<9>() else {
        log::warn!("HVM: VMX self-test skipped (no free frames)");
        return;
    };
    let f = Frames {
        vmxon: singles[0],
        vmcs: singles[1],
        ept: [singles[2], singles[3], singles[4], singles[5]],
        guest: [singles[6], singles[7], singles[8]],
    };
    for m in singles {
        crate::memory::clear_frame(m);
    }
    let r = with_vmx_on(&caps, &f);
    crate::memory::free_frame_list(&singles);
    match r {
        Ok(s) => {
            log::info!("HVM: VMX world switch self-test passed: {s}");
            *CAPS.lock() = Some(caps);
            READY.store(true, core::sync::atomic::Ordering::Release);
        }
        Err(e) => log::error!("HVM: VMX world switch self-test FAILED: {e}"),
    }
}

/// Set when the self-test passed: HVM guests run under VMX.
static READY: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
/// What the boot found (the controls every VMCS is fitted to).
static CAPS: spin::Mutex<Option<VmxCaps>> = spin::Mutex::new(None);

/// Whether VMX passed its boot self-test.
pub fn vmx_ready() -> bool {
    READY.load(core::sync::atomic::Ordering::Acquire)
}

/// The capabilities found at boot.
pub fn caps() -> Option<VmxCaps> {
    *CAPS.lock()
}

const CR0_NE: u64 = 1 << 5;
const CR4_VMXE: u64 = 1 << 13;

/// VMXON, the test, VMXOFF; CR0/CR4 put back.
fn with_vmx_on(caps: &VmxCaps, f: &Frames) -> Result<alloc::string::String, alloc::string::String> {
    let (cr0, cr4) = (instr::read_cr0(), instr::read_cr4());
    // SAFETY: the VMXON and VMCS regions are ours (allocated above); the
    // revision goes in their first dword.
    unsafe {
        frame_bytes(f.vmxon)[..4].copy_from_slice(&caps.revision.to_le_bytes());
        frame_bytes(f.vmcs)[..4].copy_from_slice(&caps.revision.to_le_bytes());
    }
    // SAFETY: CR0.NE (native x87 error reporting, as Xen runs) and
    // CR4.VMXE (only allows VMXON) change nothing else; both are required
    // by VMX (the fixed-bit MSRs) and put back below.
    unsafe {
        instr::write_cr0(cr0 | CR0_NE);
        instr::write_cr4(cr4 | CR4_VMXE);
    }
    // SAFETY: the VMXON region is ours and holds the revision.
    let on = unsafe { vmx_op(0, f.vmxon.maddr()) };
    let r = if on {
        // SAFETY: the VMCS region is ours and holds the revision.
        let r = if unsafe { vmx_op(1, f.vmcs.maddr()) && vmx_op(2, f.vmcs.maddr()) } {
            selftest(caps, f)
        } else {
            Err("VMCLEAR/VMPTRLD failed".into())
        };
        // SAFETY: leaving VMX operation; the VMCS is cleared first so
        // nothing of it stays cached.
        unsafe {
            vmx_op(1, f.vmcs.maddr());
            asm!("vmxoff", options(nostack));
        }
        r
    } else {
        Err("VMXON failed".into())
    };
    // SAFETY: restoring the values read above.
    unsafe {
        instr::write_cr4(cr4);
        instr::write_cr0(cr0);
    }
    r
}

/// The EPTP of the test's tables, and the tables: GPA 0..0x3000 to the
/// three guest frames.
fn build_ept(f: &Frames) -> u64 {
    // SAFETY: the four EPT frames are ours, cleared.
    let (pml4, pdpt, pd, pt) = unsafe {
        (
            frame_bytes(f.ept[0]),
            frame_bytes(f.ept[1]),
            frame_bytes(f.ept[2]),
            frame_bytes(f.ept[3]),
        )
    };
    put_u64(pml4, 0, f.ept[1].maddr() | EPT_RWX);
    put_u64(pdpt, 0, f.ept[2].maddr() | EPT_RWX);
    put_u64(pd, 0, f.ept[3].maddr() | EPT_RWX);
    for (i, g) in f.guest.iter().enumerate() {
        put_u64(pt, i * 8, g.maddr() | EPT_RWX | EPT_WB);
    }
    // Write-back paging structures, a 4-level walk (length - 1 = 3).
    f.ept[0].maddr() | 6 | (3 << 3)
}

/// Host state: what the CPU returns to at every exit.
pub(super) fn write_host_state() -> Result<(), u32> {
    use super::gdt::{HYPERVISOR_CS, HYPERVISOR_DS};
    let (gdt_base, idt_base, tr) = descriptor_tables();
    vmwrite(field::HOST_CR0, instr::read_cr0())?;
    vmwrite(field::HOST_CR3, instr::read_cr3())?;
    vmwrite(field::HOST_CR4, instr::read_cr4())?;
    vmwrite(field::HOST_CS_SELECTOR, u64::from(HYPERVISOR_CS))?;
    vmwrite(field::HOST_SS_SELECTOR, u64::from(HYPERVISOR_DS))?;
    for sel in [
        field::HOST_ES_SELECTOR,
        field::HOST_DS_SELECTOR,
        field::HOST_FS_SELECTOR,
        field::HOST_GS_SELECTOR,
    ] {
        vmwrite(sel, 0)?;
    }
    vmwrite(field::HOST_TR_SELECTOR, u64::from(tr))?;
    vmwrite(field::HOST_FS_BASE, instr::rdmsr(instr::msr::FS_BASE))?;
    vmwrite(field::HOST_GS_BASE, instr::rdmsr(instr::msr::GS_BASE))?;
    let tss = &super::percpu::this_cpu().tss as *const _ as u64;
    vmwrite(field::HOST_TR_BASE, tss)?;
    vmwrite(field::HOST_GDTR_BASE, gdt_base)?;
    vmwrite(field::HOST_IDTR_BASE, idt_base)?;
    vmwrite(field::HOST_SYSENTER_CS, 0)?;
    vmwrite(field::HOST_SYSENTER_ESP, 0)?;
    vmwrite(field::HOST_SYSENTER_EIP, 0)?;
    vmwrite(field::HOST_EFER, instr::rdmsr(instr::msr::EFER))?;
    Ok(())
}

/// GDTR base, IDTR base, TR selector of this CPU.
fn descriptor_tables() -> (u64, u64, u16) {
    let mut gdtr = [0u8; 10];
    let mut idtr = [0u8; 10];
    let tr: u16;
    // SAFETY: SGDT/SIDT write 10 bytes into our buffers; STR reads TR.
    unsafe {
        asm!("sgdt [{}]", in(reg) gdtr.as_mut_ptr(), options(nostack));
        asm!("sidt [{}]", in(reg) idtr.as_mut_ptr(), options(nostack));
        asm!("str {0:x}", out(reg) tr, options(nostack, nomem));
    }
    let base = |b: &[u8; 10]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[2..10]);
        u64::from_le_bytes(w)
    };
    (base(&gdtr), base(&idtr), tr)
}

/// The guest's segment registers: (selector, base, limit, access rights)
/// for ES, CS, SS, DS, FS, GS, LDTR, TR, in VMCS field order.
pub(super) fn write_guest_segments(segs: &[(u16, u64, u32, u32); 8]) -> Result<(), u32> {
    for (i, &(sel, base, limit, ar)) in segs.iter().enumerate() {
        let i = i as u32 * 2;
        vmwrite(field::GUEST_ES_SELECTOR + i, u64::from(sel))?;
        vmwrite(field::GUEST_ES_BASE + i, base)?;
        vmwrite(field::GUEST_ES_LIMIT + i, u64::from(limit))?;
        vmwrite(field::GUEST_ES_AR + i, u64::from(ar))?;
    }
    Ok(())
}

fn setup_vmcs(caps: &VmxCaps, eptp: u64) -> Result<(), alloc::string::String> {
    use alloc::format;
    let fit = |want: u32, cap: u64, what: &str| {
        vmx::fit_controls(want, cap).map_err(|m| format!("{what} controls {m:#x} not allowed"))
    };
    let pin = fit(ctl::PIN_EXT_INT | ctl::PIN_NMI, caps.pin, "pin-based")?;
    let proc = fit(
        ctl::PROC_HLT | ctl::PROC_IO | ctl::PROC_SECONDARY,
        caps.proc,
        "processor-based",
    )?;
    let proc2 = fit(
        ctl::PROC2_EPT | ctl::PROC2_UNRESTRICTED,
        caps.proc2,
        "secondary",
    )?;
    let exitc = fit(
        ctl::EXIT_HOST_64 | ctl::EXIT_SAVE_EFER | ctl::EXIT_LOAD_EFER,
        caps.exit,
        "exit",
    )?;
    let entry = fit(ctl::ENTRY_LOAD_EFER, caps.entry, "entry")?;
    let w = |f: u32, v: u64| vmwrite(f, v).map_err(|f| format!("VMWRITE {f:#x} failed"));
    w(field::PIN_CONTROLS, u64::from(pin))?;
    w(field::PROC_CONTROLS, u64::from(proc))?;
    w(field::PROC2_CONTROLS, u64::from(proc2))?;
    w(field::EXIT_CONTROLS, u64::from(exitc))?;
    w(field::ENTRY_CONTROLS, u64::from(entry))?;
    w(field::EXCEPTION_BITMAP, 0)?;
    w(field::EPT_POINTER, eptp)?;
    w(field::VMCS_LINK_POINTER, u64::MAX)?;
    write_host_state().map_err(|f| format!("host VMWRITE {f:#x} failed"))?;
    // The guest: 32-bit protected mode, paging off (unrestricted guest).
    let fixed0 = instr::rdmsr(msr::CR0_FIXED0) & !(1 | (1 << 31));
    w(field::GUEST_CR0, 0x11 | fixed0)?;
    w(field::GUEST_CR3, 0)?;
    w(field::GUEST_CR4, instr::rdmsr(msr::CR4_FIXED0))?;
    w(field::GUEST_DR7, 0x400)?;
    w(field::GUEST_RSP, 0x3000)?;
    w(field::GUEST_RIP, GUEST_CODE_GPA)?;
    w(field::GUEST_RFLAGS, 2)?;
    let code = vmx::ar_from_attr(0xc9b);
    let data = vmx::ar_from_attr(0xc93);
    write_guest_segments(&[
        (0x10, 0, 0xffff_ffff, data),
        (0x08, 0, 0xffff_ffff, code),
        (0x10, 0, 0xffff_ffff, data),
        (0x10, 0, 0xffff_ffff, data),
        (0, 0, 0xffff, vmx::ar_from_attr(0x93)),
        (0, 0, 0xffff, vmx::ar_from_attr(0x93)),
        (0, 0, 0xffff, vmx::ar_from_attr(0)),
        (0, 0, 0x67, vmx::ar_from_attr(0x8b)),
    ])
    .map_err(|f| format!("guest segment VMWRITE {f:#x} failed"))?;
    w(field::GUEST_GDTR_BASE, 0)?;
    w(field::GUEST_GDTR_LIMIT, 0xffff)?;
    w(field::GUEST_IDTR_BASE, 0)?;
    w(field::GUEST_IDTR_LIMIT, 0xffff)?;
    w(field::GUEST_EFER, 0)?;
    w(field::GUEST_INTERRUPTIBILITY, 0)?;
    w(field::GUEST_ACTIVITY_STATE, 0)?;
    w(field::GUEST_PENDING_DBG, 0)?;
    w(field::GUEST_SYSENTER_CS, 0)?;
    w(field::GUEST_SYSENTER_ESP, 0)?;
    w(field::GUEST_SYSENTER_EIP, 0)?;
    Ok(())
}

/// Builds the guest and runs it to its HLT; a summary or what went wrong.
fn selftest(caps: &VmxCaps, f: &Frames) -> Result<alloc::string::String, alloc::string::String> {
    use alloc::format;
    // SAFETY: both symbols delimit one blob in .rodata (svm.rs).
    let blob = unsafe {
        let s = &raw const svm_guest_start;
        let e = &raw const svm_guest_end;
        core::slice::from_raw_parts(s, e as usize - s as usize)
    };
    // SAFETY: the guest frames are ours, cleared.
    unsafe { frame_bytes(f.guest[1])[..blob.len()].copy_from_slice(blob) };
    let eptp = build_ept(f);
    setup_vmcs(caps, eptp)?;
    let mut gprs = VmxGprs::default();
    let mut said = alloc::vec::Vec::new();
    let (mut io, mut cpuid, mut ept) = (0u32, 0u32, 0u32);
    let mut cycles = [0u64; TIMED_CPUIDS + 1];
    let mut launched = false;
    for _ in 0..MAX_EXITS {
        let t0 = instr::rdtsc();
        // SAFETY: the VMCS is current and complete (setup_vmcs), its EPT
        // tables and guest frames are ours; interrupts are off (boot CPU,
        // before the timer); vmx_run saves and restores every
        // callee-saved register and returns on the stack it was called on.
        let rc = unsafe { vmx_run(&mut gprs, u32::from(launched)) };
        let dt = instr::rdtsc().wrapping_sub(t0);
        if rc != 0 {
            return Err(format!(
                "VM{} failed ({}), instruction error {}",
                if launched { "RESUME" } else { "LAUNCH" },
                if rc == 1 {
                    "VMfailInvalid"
                } else {
                    "VMfailValid"
                },
                vmread(field::VM_INSTRUCTION_ERROR)
            ));
        }
        launched = true;
        let reason = vmread(field::EXIT_REASON) as u32;
        let q = vmread(field::EXIT_QUALIFICATION);
        let rip = vmread(field::GUEST_RIP);
        let len = vmread(field::EXIT_INSTRUCTION_LEN);
        let advance = |n: u64| vmwrite(field::GUEST_RIP, rip + n).map_err(|_| "VMWRITE RIP");
        match reason & 0xffff {
            exit::IO => {
                let (port, size, is_in, _, _) = vmx::io_qualification(q);
                if port != 0xe9 || is_in || size != 1 {
                    return Err(format!("unexpected I/O exit {q:#x}"));
                }
                said.push(gprs.r[reg::RAX] as u8);
                io += 1;
                advance(len)?;
            }
            exit::CPUID => {
                if let Some(c) = cycles.get_mut(cpuid as usize) {
                    *c = dt;
                }
                cpuid += 1;
                gprs.r[reg::RAX] = 0xd;
                gprs.r[reg::RBX] = u64::from(u32::from_le_bytes(*b"Oxen"));
                gprs.r[reg::RCX] = 0;
                gprs.r[reg::RDX] = 0;
                advance(len)?;
            }
            exit::EPT_VIOLATION => {
                let gpa = vmread(field::GUEST_PHYSICAL_ADDRESS);
                if gpa != GUEST_MMIO_GPA || q & 2 == 0 {
                    return Err(format!("EPT violation at {gpa:#x} (qualification {q:#x})"));
                }
                ept += 1;
                advance(10)?;
            }
            exit::HLT => {
                // SAFETY: the data frame is ours.
                let data = unsafe { frame_bytes(f.guest[2]) };
                let run = super::svm::SelftestRun {
                    said: &said,
                    data,
                    exits: (io, "I/O"),
                    cpuid,
                    faults: (ept, "EPT violation"),
                };
                return run.verdict(&mut cycles);
            }
            r => {
                return Err(format!(
                    "exit reason {r} at rip {rip:#x}, qualification {q:#x}{}",
                    if reason & (1 << 31) != 0 {
                        " (VM entry failed)"
                    } else {
                        ""
                    }
                ))
            }
        }
    }
    Err(format!("no HLT after {MAX_EXITS} exits"))
}
