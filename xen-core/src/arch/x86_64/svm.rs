//! AMD-V on the metal: detection at boot and a world-switch self-test,
//! the first step of the SVM backend.
//!
//! At boot, on the boot CPU (interrupts off, before the other CPUs and any
//! guest), [`probe_and_selftest`] reads CPUID, logs what the CPU offers
//! (SVM with its revision, ASIDs, NPT; or VMX, whose backend is not
//! written yet), and, with SVM and NPT, runs a tiny 32-bit protected-mode
//! guest under nested paging:
//!
//! - the guest writes a greeting to port `0xe9` one byte at a time (IOIO
//!   exits, emulated here), stores a marker in its RAM, asks CPUID leaf 0
//!   (the hypervisor answers with the signature `Oxen`), writes to
//!   `0xfee00000`, which the nested page table does not map (a nested page
//!   fault the hypervisor completes by skipping the instruction), and
//!   halts (the HLT exit ends the test);
//! - the hypervisor checks every exit and the guest's memory, logs one
//!   line, frees every frame and restores `EFER`.
//!
//! What the VMCB fields mean is in `xen_core::svm` (pure). The VMCB,
//! host-save area, permission maps and nested tables are frames from the
//! allocator, direct-mapped; the world switch is [`svm_vmrun`] below.
//! Nothing here can stop the boot: a failure is logged and the test ends.

use core::arch::global_asm;

use super::instr::{self, msr};
use super::paging::phys_to_virt;
use xen_core::mm::Mfn;
use xen_core::svm::{self, exit, vmcb, IoExit, SvmCaps, NPT_RWU};

/// Guest-physical layout of the self-test guest: code at 0x1000, data
/// (markers) at 0x2000 (the third guest frame).
const GUEST_CODE_GPA: u64 = 0x1000;
/// Unmapped in the nested tables: the guest's write there is an NPF.
const GUEST_MMIO_GPA: u64 = 0xfee0_0000;
/// The port the guest writes its greeting to.
const GUEST_PORT: u16 = 0xe9;
/// Exits before the test gives up.
const MAX_EXITS: usize = 256;
/// CPUID exits the guest makes after the first, for the round-trip
/// figure.
pub(super) const TIMED_CPUIDS: usize = 64;
/// What the guest must say.
const GREETING: &[u8] = b"hvm: hello from the self-test guest\n";

/// The guest's general registers other than RAX and RSP (which live in
/// the VMCB), in [`svm_vmrun`]'s order.
#[repr(C)]
#[derive(Default)]
struct GuestGprs {
    rbx: u64,
    rcx: u64,
    rdx: u64,
    rsi: u64,
    rdi: u64,
    rbp: u64,
    r8: u64,
    r9: u64,
    r10: u64,
    r11: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
}

global_asm!(
    r#"
    .pushsection .text.svm, "ax", @progbits
    /* svm_vmrun(vmcb_pa: rdi, gprs: rsi): runs the guest until #VMEXIT.
       The guest's RAX/RSP/RIP/RFLAGS are in the VMCB; its other
       registers are loaded from and saved to *gprs. Call with IF clear. */
    .balign 16
    .globl svm_vmrun
svm_vmrun:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
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
    vmrun %rax
    /* #VMEXIT: RAX and RSP are the host's again (the VMCB's PA and the
       stack above); everything else is the guest's. */
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
    stgi
    add $16, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret
    .popsection

    /* The self-test guest: 32-bit protected mode, paging off, flat
       segments, loaded at GUEST_CODE_GPA (0x1000). */
    .pushsection .rodata.svm_guest, "a", @progbits
    .globl svm_guest_start
svm_guest_start:
    .code32
    mov $(3f - svm_guest_start + 0x1000), %esi
    mov $0xe9, %dx
1:  lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 1b
2:  mov $0x2000, %edi
    movl $0x4f58454e, (%edi)
    xor %eax, %eax
    cpuid
    mov %ebx, 4(%edi)
    mov $64, %ebp
4:  mov $1, %eax
    cpuid
    dec %ebp
    jnz 4b
    movl $0x12345678, 0xfee00000
    movl $0x21212121, 8(%edi)
    hlt
    ud2
3:  .asciz "hvm: hello from the self-test guest\n"
    .code64
    .globl svm_guest_end
svm_guest_end:
    .popsection
    "#,
    options(att_syntax)
);

extern "C" {
    fn svm_vmrun(vmcb_pa: u64, gprs: *mut GuestGprs);
    static svm_guest_start: u8;
    static svm_guest_end: u8;
}

/// What the CPU offers for hardware virtualization, found at boot.
pub fn detect() -> (Option<SvmCaps>, bool) {
    let max_ext = instr::cpuid(0x8000_0000, 0).eax;
    let ext_ecx = if max_ext >= 0x8000_0001 {
        instr::cpuid(0x8000_0001, 0).ecx
    } else {
        0
    };
    let a = if max_ext >= 0x8000_000a {
        let r = instr::cpuid(0x8000_000a, 0);
        (r.eax, r.ebx, r.edx)
    } else {
        (0, 0, 0)
    };
    let vmx = instr::cpuid(1, 0).ecx & svm::CPUID_VMX != 0;
    (svm::detect(ext_ecx, max_ext, a), vmx)
}

/// Frames the self-test borrows (freed at the end).
struct Frames {
    hsave: Mfn,
    vmcb: Mfn,
    iopm: Mfn,
    msrpm: Mfn,
    npt: [Mfn; 4],
    guest: [Mfn; 3],
}

fn alloc_frames() -> Option<Frames> {
    let singles = crate::memory::alloc_frames::<9>()?;
    let (iopm, msrpm) = {
        let mut fa = crate::memory::FRAMES.lock();
        let fa = fa.as_mut()?;
        (fa.alloc_contig(3, 1).ok(), fa.alloc_contig(2, 1).ok())
    };
    let f = Frames {
        hsave: singles[0],
        vmcb: singles[1],
        iopm: iopm.unwrap_or(Mfn(0)),
        msrpm: msrpm.unwrap_or(Mfn(0)),
        npt: [singles[2], singles[3], singles[4], singles[5]],
        guest: [singles[6], singles[7], singles[8]],
    };
    if iopm.is_none() || msrpm.is_none() {
        crate::memory::free_frame_list(&singles);
        let mut fa = crate::memory::FRAMES.lock();
        if let Some(fa) = fa.as_mut() {
            if let Some(m) = iopm {
                let _ = fa.free_contig(m, 3);
            }
            if let Some(m) = msrpm {
                let _ = fa.free_contig(m, 2);
            }
        }
        return None;
    }
    Some(f)
}

fn free_frames(f: &Frames) {
    crate::memory::free_frame_list(&[f.hsave, f.vmcb]);
    crate::memory::free_frame_list(&f.npt);
    crate::memory::free_frame_list(&f.guest);
    let mut fa = crate::memory::FRAMES.lock();
    if let Some(fa) = fa.as_mut() {
        let _ = fa.free_contig(f.iopm, 3);
        let _ = fa.free_contig(f.msrpm, 2);
    }
}

/// A direct-mapped frame as bytes.
///
/// # Safety
/// `m` must be a frame the caller owns exclusively (allocated for this
/// test and not handed to anyone else), for as long as the slice lives.
unsafe fn frame_bytes<'a>(m: Mfn, pages: usize) -> &'a mut [u8] {
    // SAFETY: the direct map covers every RAM frame; the caller owns the
    // frames `m..m+pages` exclusively.
    unsafe { core::slice::from_raw_parts_mut(phys_to_virt(m.maddr()) as *mut u8, pages * 4096) }
}

fn put<const N: usize>(page: &mut [u8], off: usize, v: [u8; N]) {
    page[off..off + N].copy_from_slice(&v);
}

fn put_u64(page: &mut [u8], off: usize, v: u64) {
    put(page, off, v.to_le_bytes());
}

fn get_u64(page: &[u8], off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&page[off..off + 8]);
    u64::from_le_bytes(b)
}

fn put_seg(page: &mut [u8], seg: usize, sel: u16, attrib: u16, limit: u32, base: u64) {
    put(page, seg + vmcb::SEG_SELECTOR, sel.to_le_bytes());
    put(page, seg + vmcb::SEG_ATTRIB, attrib.to_le_bytes());
    put(page, seg + vmcb::SEG_LIMIT, limit.to_le_bytes());
    put_u64(page, seg + vmcb::SEG_BASE, base);
}

/// What the self-test guest did by its HLT (the same guest under SVM and
/// VMX): what it said through port 0xe9, its data frame, the I/O exits,
/// CPUID exits and page faults of the nested tables seen.
pub(super) struct SelftestRun<'a> {
    /// The bytes it wrote to port 0xe9.
    pub said: &'a [u8],
    /// Its data frame (the markers at 0..12).
    pub data: &'a [u8],
    /// I/O exits, and what the backend calls them.
    pub exits: (u32, &'static str),
    /// CPUID exits.
    pub cpuid: u32,
    /// Nested page faults, and what the backend calls them.
    pub faults: (u32, &'static str),
}

impl SelftestRun<'_> {
    /// Checks what the guest did; the log line's summary (with the
    /// median of the timed CPUID round trips, `cycles[1..]`).
    pub fn verdict(
        &self,
        cycles: &mut [u64; TIMED_CPUIDS + 1],
    ) -> Result<alloc::string::String, alloc::string::String> {
        use alloc::format;
        let said = self.said;
        if said != GREETING {
            return Err(format!(
                "the guest said {:?}",
                core::str::from_utf8(said).unwrap_or("?")
            ));
        }
        let marks = (&self.data[0..4], &self.data[4..8], &self.data[8..12]);
        if marks != (&b"NEXO"[..], &b"Oxen"[..], &b"!!!!"[..]) {
            return Err(format!("guest memory holds {marks:?}"));
        }
        let cpuid = self.cpuid;
        if cpuid as usize != TIMED_CPUIDS + 1 {
            return Err(format!("{cpuid} CPUID exits, want {}", TIMED_CPUIDS + 1));
        }
        let timed = &mut cycles[1..];
        timed.sort_unstable();
        Ok(format!(
            "the guest said {:?} ({} {} exits), got \"Oxen\" from {cpuid} CPUID, \
             {} {}, halted; CPUID exit round trip median {} cycles (min {}, {} exits)",
            core::str::from_utf8(&said[..said.len() - 1]).unwrap_or("?"),
            self.exits.0,
            self.exits.1,
            self.faults.0,
            self.faults.1,
            timed[timed.len() / 2],
            timed[0],
            timed.len()
        ))
    }
}

/// Whether the boot found SVM with nested paging (and ASIDs to run guests
/// under): what HVM domains with `XEN_DOMCTL_CDF_hap` need (Xen's
/// `hvm_enabled && hvm_hap_supported()`). Set once, by the boot CPU.
static HAP_AVAILABLE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Whether HVM domains with hardware-assisted paging can be created
/// (SVM with NPT, or VMX with EPT and unrestricted guest, passed its
/// self-test).
pub fn hap_available() -> bool {
    HAP_AVAILABLE.load(core::sync::atomic::Ordering::Acquire) || super::vmx::vmx_ready()
}

/// Whether HVM guests run under VMX (else SVM).
pub fn is_vmx() -> bool {
    !HAP_AVAILABLE.load(core::sync::atomic::Ordering::Acquire) && super::vmx::vmx_ready()
}

/// Detects SVM/VMX, logs them, and runs the world-switch self-test when
/// SVM with NPT is there. Boot CPU, interrupts off, before any guest.
pub fn probe_and_selftest() {
    let (svm_caps, vmx) = detect();
    if vmx {
        super::vmx::probe_and_selftest();
    }
    let Some(caps) = svm_caps else {
        if !vmx {
            log::info!("HVM: no hardware virtualization (neither SVM nor VMX)");
        }
        return;
    };
    if instr::rdmsr_safe(svm::msr::VM_CR).is_some_and(|v| v & svm::msr::VM_CR_SVMDIS != 0) {
        log::warn!("HVM: SVM is disabled by the firmware (VM_CR.SVMDIS)");
        return;
    }
    log::info!(
        "HVM: SVM (AMD-V) revision {}, {} ASIDs, nested paging {}, nrip-save {}, decode assists {}",
        caps.revision,
        caps.asids,
        if caps.npt { "yes" } else { "no" },
        if caps.nrips { "yes" } else { "no" },
        if caps.decode_assists { "yes" } else { "no" },
    );
    if !caps.npt || caps.asids < 2 {
        log::warn!("HVM: SVM without nested paging (or ASIDs): Oxen's HVM needs NPT");
        return;
    }
    let Some(f) = alloc_frames() else {
        log::warn!("HVM: SVM self-test skipped (no free frames)");
        return;
    };
    let efer = instr::rdmsr(msr::EFER);
    // SAFETY: setting EFER.SVME only enables the SVM instructions (CPUID
    // said SVM exists and VM_CR does not disable it); restored below.
    unsafe { instr::wrmsr(msr::EFER, efer | svm::msr::EFER_SVME) };
    let hsave_before = instr::rdmsr(svm::msr::VM_HSAVE_PA);
    // SAFETY: VM_HSAVE_PA takes the physical address of a page the CPU
    // may write on VMRUN: `f.hsave` is ours alone until it is freed.
    unsafe { instr::wrmsr(svm::msr::VM_HSAVE_PA, f.hsave.maddr()) };
    let r = selftest(&f);
    // SAFETY: putting back the values read above.
    unsafe {
        instr::wrmsr(svm::msr::VM_HSAVE_PA, hsave_before);
        instr::wrmsr(msr::EFER, efer);
    }
    free_frames(&f);
    match r {
        Ok(s) => {
            log::info!("HVM: SVM world switch self-test passed: {s}");
            HAP_AVAILABLE.store(true, core::sync::atomic::Ordering::Release);
        }
        Err(e) => log::error!("HVM: SVM world switch self-test FAILED: {e}"),
    }
}

/// Builds the guest and runs it to its HLT; a summary or what went wrong.
fn selftest(f: &Frames) -> Result<alloc::string::String, alloc::string::String> {
    use alloc::format;
    for m in [f.hsave, f.vmcb].iter().chain(&f.npt).chain(&f.guest) {
        crate::memory::clear_frame(*m);
    }
    // SAFETY: every frame below was allocated for this test alone
    // (alloc_frames) and is freed only after `selftest` returns.
    let (vmcb_page, iopm, msrpm, pml4, pdpt, pd, pt, code) = unsafe {
        (
            frame_bytes(f.vmcb, 1),
            frame_bytes(f.iopm, 3),
            frame_bytes(f.msrpm, 2),
            frame_bytes(f.npt[0], 1),
            frame_bytes(f.npt[1], 1),
            frame_bytes(f.npt[2], 1),
            frame_bytes(f.npt[3], 1),
            frame_bytes(f.guest[1], 1),
        )
    };
    // Every port and every MSR intercepted.
    iopm.fill(0xff);
    msrpm.fill(0xff);
    // Nested tables: GPA 0..0x3000 -> the three guest frames.
    put_u64(pml4, 0, f.npt[1].maddr() | NPT_RWU);
    put_u64(pdpt, 0, f.npt[2].maddr() | NPT_RWU);
    put_u64(pd, 0, f.npt[3].maddr() | NPT_RWU);
    for (i, g) in f.guest.iter().enumerate() {
        put_u64(pt, i * 8, g.maddr() | NPT_RWU);
    }
    // SAFETY: both symbols delimit one blob in .rodata.
    let blob = unsafe {
        let s = &raw const svm_guest_start;
        let e = &raw const svm_guest_end;
        core::slice::from_raw_parts(s, e as usize - s as usize)
    };
    if blob.len() > 4096 {
        return Err(format!("guest blob of {} bytes", blob.len()));
    }
    code[..blob.len()].copy_from_slice(blob);

    // The VMCB.
    let v = vmcb_page;
    put(
        v,
        vmcb::INTERCEPT_MISC1,
        (vmcb::INTERCEPT_CPUID
            | vmcb::INTERCEPT_HLT
            | vmcb::INTERCEPT_IOIO
            | vmcb::INTERCEPT_MSR
            | vmcb::INTERCEPT_SHUTDOWN
            | vmcb::INTERCEPT_INTR
            | vmcb::INTERCEPT_NMI)
            .to_le_bytes(),
    );
    put(
        v,
        vmcb::INTERCEPT_MISC2,
        (vmcb::INTERCEPT2_VMRUN | vmcb::INTERCEPT2_VMMCALL).to_le_bytes(),
    );
    put_u64(v, vmcb::IOPM_BASE_PA, f.iopm.maddr());
    put_u64(v, vmcb::MSRPM_BASE_PA, f.msrpm.maddr());
    put(v, vmcb::GUEST_ASID, 1u32.to_le_bytes());
    v[vmcb::TLB_CONTROL] = 1;
    put_u64(v, vmcb::NP_ENABLE, 1);
    put_u64(v, vmcb::N_CR3, f.npt[0].maddr());
    put_seg(v, vmcb::CS, 0x08, 0xc9b, 0xffff_ffff, 0);
    for s in [vmcb::DS, vmcb::ES, vmcb::SS] {
        put_seg(v, s, 0x10, 0xc93, 0xffff_ffff, 0);
    }
    put_seg(v, vmcb::FS, 0, 0, 0, 0);
    put_seg(v, vmcb::GS, 0, 0, 0, 0);
    put_seg(v, vmcb::GDTR, 0, 0, 0xffff, 0);
    put_seg(v, vmcb::IDTR, 0, 0, 0xffff, 0);
    put_seg(v, vmcb::LDTR, 0, 0x82, 0xffff, 0);
    put_seg(v, vmcb::TR, 0, 0x8b, 0xffff, 0);
    v[vmcb::CPL] = 0;
    put_u64(v, vmcb::EFER, svm::msr::EFER_SVME);
    put_u64(v, vmcb::CR0, 0x11);
    put_u64(v, vmcb::CR3, 0);
    put_u64(v, vmcb::CR4, 0);
    put_u64(v, vmcb::DR6, 0xffff_0ff0);
    put_u64(v, vmcb::DR7, 0x400);
    put_u64(v, vmcb::RFLAGS, 0x2);
    put_u64(v, vmcb::RIP, GUEST_CODE_GPA);
    put_u64(v, vmcb::RSP, 0x3000);
    put_u64(v, vmcb::G_PAT, 0x0007_0406_0007_0406);

    let mut gprs = GuestGprs::default();
    let mut said = alloc::vec::Vec::new();
    let (mut ioio, mut cpuid, mut npf) = (0u32, 0u32, 0u32);
    let mut cpuid_cycles = [0u64; TIMED_CPUIDS + 1];
    for _ in 0..MAX_EXITS {
        let t0 = instr::rdtsc();
        // SAFETY: the VMCB, its maps and nested tables are well-formed
        // frames we own; interrupts are off (boot CPU, before the timer);
        // svm_vmrun saves and restores every callee-saved register and
        // returns on the host stack it was called on.
        unsafe { svm_vmrun(f.vmcb.maddr(), &mut gprs) };
        let dt = instr::rdtsc().wrapping_sub(t0);
        let code = get_u64(v, vmcb::EXITCODE);
        let info1 = get_u64(v, vmcb::EXITINFO1);
        let info2 = get_u64(v, vmcb::EXITINFO2);
        let rip = get_u64(v, vmcb::RIP);
        match code {
            exit::IOIO => {
                let io = IoExit::decode(info1).ok_or(format!("bad IOIO info {info1:#x}"))?;
                if io.port != GUEST_PORT || io.is_in || io.string || io.size != 1 {
                    return Err(format!("unexpected I/O {io:?}"));
                }
                said.push(get_u64(v, vmcb::RAX) as u8);
                ioio += 1;
                // EXITINFO2 holds the next RIP for IOIO exits.
                put_u64(v, vmcb::RIP, info2);
            }
            exit::CPUID => {
                if let Some(c) = cpuid_cycles.get_mut(cpuid as usize) {
                    *c = dt;
                }
                cpuid += 1;
                put_u64(v, vmcb::RAX, 0xd);
                gprs.rbx = u64::from(u32::from_le_bytes(*b"Oxen"));
                gprs.rcx = 0;
                gprs.rdx = 0;
                put_u64(v, vmcb::RIP, rip + 2);
            }
            exit::NPF => {
                // EXITINFO1 bit 1: a write; EXITINFO2: the guest-physical
                // address. The instruction is `movl $imm32, abs32` (10
                // bytes): completed by skipping it.
                if info2 != GUEST_MMIO_GPA || info1 & 2 == 0 {
                    return Err(format!(
                        "nested page fault at {info2:#x} (info {info1:#x}, rip {rip:#x})"
                    ));
                }
                npf += 1;
                put_u64(v, vmcb::RIP, rip + 10);
            }
            exit::HLT => {
                // SAFETY: the data frame is ours (see above).
                let data = unsafe { frame_bytes(f.guest[2], 1) };
                let run = SelftestRun {
                    said: &said,
                    data,
                    exits: (ioio, "IOIO"),
                    cpuid,
                    faults: (npf, "nested page fault"),
                };
                return run.verdict(&mut cpuid_cycles);
            }
            c => {
                return Err(format!(
                    "exit {c:#x} ({}) at rip {rip:#x}, info {info1:#x}/{info2:#x}",
                    exit::name(c)
                ))
            }
        }
        // Only the first run flushes the TLB.
        v[vmcb::TLB_CONTROL] = 0;
    }
    Err(format!("no HLT after {MAX_EXITS} exits"))
}
