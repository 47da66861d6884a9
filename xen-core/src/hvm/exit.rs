//! The vendor-neutral VM-exit handler: the SVM (and later VMX) backend
//! decodes its exit into an [`Exit`], calls [`handle`], and carries out
//! the [`ExitOutcome`] and the platform [`Actions`] (Xen's
//! `hvm_emulate_one`, `hvm_io_intercept`/`hvmemul_do_io`, `hvm_hlt`,
//! `hvm_msr_read_intercept`, `hvm_triple_fault`, in one place).
//!
//! **Owns**: what each exit means: CPUID through [`super::cpuid`], MSRs
//! through [`super::msr`] (refused ones inject #GP), port I/O to the
//! [`Platform`] or as an ioreq to the device model, nested page faults on
//! MMIO through [`super::emulate`], HLT, triple faults; the per-vCPU
//! emulation state ([`HvmVcpu`]: the MTRRs, the ioreq in flight, the
//! replay log of an MMIO instruction that waits for the device model);
//! and the ioreqs themselves (`hypercall_abi::hvm::Ioreq`).
//! **Trusts**: the glue's [`Vcpu`] for registers, guest memory and the
//! few things only it can do (VMCB/VMCS fields, the TSC offset, the
//! hypercall page), and its decoding of the exit; nothing from the
//! guest: every register, address and instruction byte is checked or
//! harmless, and a guest that breaks the rules crashes only itself
//! ([`ExitOutcome::Crash`]).
//!
//! ## How the glue runs a vCPU
//!
//! ```text
//! loop {
//!     lock the domain's Platform
//!     next = platform.advance(now, &mut acts)      // arm a timer for `next`
//!     match pending_injection(&mut platform, id, can_nmi, can_intr) { ... } // EVENTINJ / window
//!     unlock; VMRUN; decode the exit into `Exit`; lock
//!     outcome = handle(exit, &mut vcpu, &mut hvm_vcpu, &mut platform, &policies, now, &mut acts)
//!     carry out `acts` (Kick/Init/Sipi/PowerOff/Reset/DebugOut), then `outcome`:
//!       Resume → loop; Block → sleep until a Kick or the timer; Down → offline
//!       WaitIoreq(req) → publish req in the vCPU's ioreq slot (state READY),
//!         notify the device model, sleep; when it answers (IORESP_READY):
//!         outcome = complete_ioreq(req.data, ...) and go on as above
//!       Hypercall → dispatch, advance RIP unless preempted
//!       Crash/PowerOff/Reset → shut the domain down
//! }
//! ```
//!
//! **String port I/O** (`rep outsb` to a UART is the typical case): to an
//! emulated port, up to [`MAX_REP`] elements are done per exit from guest
//! memory; to the device model, one element per ioreq, its value in
//! `data` (`data_is_ptr` is never set, so the device model never touches
//! guest memory). After each element the registers advance; RIP stays on
//! the instruction until RCX reaches 0, so the guest re-executes it (and
//! takes interrupts in between), as a `rep` does on hardware.
//!
//! **MMIO** through the device model: the instruction is emulated until
//! its first access the [`Platform`] does not claim; that access becomes
//! the ioreq and the instruction is re-emulated when the answer is in.
//! Accesses already done are replayed from a log rather than repeated (as
//! Xen's `hvmemul_cache`/`mmio_cache`), so an instruction that touches
//! MMIO twice sends two ioreqs, one at a time, and no access happens
//! twice (but for a `rep` element that is retried after the elements
//! before it completed: it starts afresh on re-execution). A replay that
//! does not repeat the logged accesses (another vCPU rewrote the
//! instruction) crashes the domain, as Xen does.

use super::cpuid::{HvmCpuidPolicy, VcpuCpuidState};
use super::emulate::{self, rflags, Access, Env, Fault, Mode, Outcome, MAX_REP};
use super::msr::{self, GuestMsrCtx, GuestReg, MsrAction, MsrPolicy, MsrState};
use super::platform::{Action, Actions, MmioResult, Platform, PortResult};
use crate::x86_emul::{is_canonical, Segment, MAX_INSN_LEN};
use hypercall_abi::hvm::{Ioreq, IoreqType, IOREQ_BITS_DF, IOREQ_BITS_DIR};

const RAX: usize = 0;
const RCX: usize = 1;
const RDX: usize = 2;
const RBX: usize = 3;
const RSI: usize = 6;
const RDI: usize = 7;
const PAGE_SIZE: u64 = 4096;
/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;
/// #MC.
const VECTOR_MC: u8 = 18;
/// MMIO accesses an instruction's replay log holds (a `movs` from MMIO
/// to MMIO split at pages needs 8).
const MMIO_LOG: usize = 16;

/// Direction of a port access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoDir {
    /// IN/INS: the guest reads.
    In,
    /// OUT/OUTS: the guest writes.
    Out,
}

/// A port I/O exit (SVM: EXITINFO1 of `IOIO`, see `crate::svm::IoExit`;
/// VMX: the exit qualification).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoExit {
    /// The port.
    pub port: u16,
    /// 1, 2 or 4 bytes.
    pub size: u8,
    /// IN or OUT.
    pub dir: IoDir,
    /// INS/OUTS.
    pub string: bool,
    /// With REP.
    pub rep: bool,
    /// Address size of a string instruction: 2, 4 or 8 bytes.
    pub addr_size: u8,
    /// OUTS's source segment (DS unless overridden; SVM reports it with
    /// decode assists, VMX in the instruction information). INS always
    /// writes ES:RDI.
    pub seg: Segment,
    /// The instruction's length (SVM: EXITINFO2 − RIP; VMX: the exit
    /// instruction length).
    pub insn_len: u8,
}

/// Why the guest stopped, in vendor-neutral terms. Instruction exits
/// carry the instruction's length (SVM: nRIP − RIP, or the fixed lengths
/// without NRIPS; VMX: the exit instruction length); their operands come
/// from the registers (CPUID leaf/subleaf in EAX/ECX, the MSR in ECX, the
/// WRMSR value in EDX:EAX).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// CPUID.
    Cpuid {
        /// Instruction length.
        insn_len: u8,
    },
    /// RDMSR.
    Rdmsr {
        /// Instruction length.
        insn_len: u8,
    },
    /// WRMSR.
    Wrmsr {
        /// Instruction length.
        insn_len: u8,
    },
    /// IN/OUT/INS/OUTS.
    Io(IoExit),
    /// A nested page fault (SVM `NPF`, VMX EPT violation/misconfig).
    Npf {
        /// The guest-physical address.
        gpa: u64,
        /// A write access.
        write: bool,
        /// An instruction fetch.
        fetch: bool,
    },
    /// HLT.
    Hlt {
        /// Instruction length.
        insn_len: u8,
    },
    /// VMMCALL/VMCALL: a Xen hypercall.
    Vmcall {
        /// Instruction length.
        insn_len: u8,
    },
    /// A host interrupt arrived (the glue let the host take it).
    Intr,
    /// A host NMI arrived.
    Nmi,
    /// The guest can take an interrupt now (SVM `VINTR`, VMX
    /// interrupt-window exiting).
    InterruptWindow,
    /// Triple fault (SVM `SHUTDOWN`, VMX triple fault).
    Shutdown,
    /// VM entry failed: invalid guest state (SVM `INVALID`).
    Invalid,
    /// An intercepted exception.
    Exception {
        /// Its vector.
        vector: u8,
        /// Its error code, if it has one.
        error_code: Option<u32>,
    },
    /// An exit code the backend does not know.
    Unknown(u64),
}

/// What the glue does next with the vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitOutcome {
    /// Enter the guest again: registers, RIP (already advanced where the
    /// instruction completed) and any exception to inject are set.
    Resume,
    /// HLT with interrupts enabled and nothing pending: sleep until an
    /// [`Action::Kick`] for this vCPU or the platform timer fires, then
    /// resume (the glue re-checks `pending_injection` under the platform
    /// lock before sleeping, so no wake-up is lost).
    Block,
    /// HLT with interrupts disabled and no NMI pending: the vCPU is down
    /// (Xen's `hvm_vcpu_down`) until INIT/SIPI; if it was the last one,
    /// the actions hold [`Action::PowerOff`].
    Down,
    /// Send this request to the device model and wait for its answer,
    /// then call [`complete_ioreq`]. `vp_eport` and `state` are the
    /// glue's to fill (it publishes `state` = READY last). With no device
    /// model (PVH, or none attached yet) answer at once with
    /// `complete_ioreq(u64::MAX, ..)`: reads see all ones and writes
    /// vanish, as Xen's `null_handler`.
    WaitIoreq(Ioreq),
    /// A hypercall: the glue dispatches it and advances RIP by
    /// `insn_len` unless it was preempted (the guest then re-executes it).
    Hypercall {
        /// Instruction length.
        insn_len: u8,
    },
    /// The guest asked for power-off (also in the actions).
    PowerOff,
    /// The guest asked for a reset (also in the actions).
    Reset,
    /// Crash the domain (only this domain): why.
    Crash(&'static str),
}

/// What the glue does to get a pending event into the guest before
/// entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    /// Nothing is pending.
    Nothing,
    /// Inject an NMI (already taken from the platform).
    Nmi,
    /// Inject this external interrupt vector (already acknowledged).
    Vector(u8),
    /// An interrupt is pending but the guest can't take it now: ask for
    /// an interrupt-window exit (SVM `V_IRQ` + `VINTR` intercept).
    InterruptWindow,
    /// An NMI is pending but NMIs are blocked: ask for an NMI-window exit
    /// (SVM: intercept IRET).
    NmiWindow,
}

/// The next event for vCPU `vcpu`: `can_nmi` when NMIs are not blocked,
/// `can_intr` when RFLAGS.IF is set, there is no interrupt shadow and no
/// other event is being injected. An event taken here and not delivered
/// (the exit reports it in SVM's EXITINTINFO / VMX's IDT-vectoring
/// information) is the glue's to inject again from there: the platform
/// already counts it as taken.
pub fn pending_injection(
    plat: &mut Platform,
    vcpu: usize,
    can_nmi: bool,
    can_intr: bool,
) -> Injection {
    if plat.nmi_pending(vcpu) {
        if can_nmi {
            plat.take_nmi(vcpu);
            return Injection::Nmi;
        }
        return Injection::NmiWindow;
    }
    if plat.pending_interrupt(vcpu).is_none() {
        return Injection::Nothing;
    }
    if !can_intr {
        return Injection::InterruptWindow;
    }
    match plat.take_interrupt(vcpu) {
        Some(v) => Injection::Vector(v),
        None => Injection::Nothing,
    }
}

/// What the glue provides of one vCPU: [`Env`] (registers, translation,
/// guest memory; `is_mmio` says whether a guest-physical address is not
/// RAM in the p2m) and the rest. [`Env::mmio_read`]/[`Env::mmio_write`]
/// are never called through a `Vcpu` (MMIO goes to the [`Platform`] or
/// out as an ioreq here); the glue answers them with `Err(Pending)`.
pub trait Vcpu: Env {
    /// The vCPU's index in its domain (the platform's vCPU number).
    fn id(&self) -> usize;
    /// Sets RIP, and drops the STI/MOV SS interrupt shadow (an emulated
    /// instruction completed).
    fn set_rip(&mut self, rip: u64);
    /// Sets RFLAGS.
    fn set_rflags(&mut self, rflags: u64);
    /// Injects `fault` on the next entry (CR2 too for #PF).
    fn inject(&mut self, fault: Fault);
    /// CR4 and XCR0, for CPUID.
    fn cpuid_state(&self) -> VcpuCpuidState;
    /// EFER and CR0.PG, for MSR checks.
    fn msr_ctx(&self) -> GuestMsrCtx;
    /// A register kept in the VMCB/VMCS.
    fn guest_reg(&self, reg: GuestReg) -> u64;
    /// Sets a register kept in the VMCB/VMCS (value already checked).
    fn set_guest_reg(&mut self, reg: GuestReg, val: u64);
    /// Sets the guest's EFER (checked; SVM adds SVME in its copy).
    fn set_efer(&mut self, efer: u64);
    /// The guest's TSC now.
    fn tsc(&self) -> u64;
    /// Makes the guest's TSC read `tsc` now (the TSC offset).
    fn set_tsc(&mut self, tsc: u64);
    /// Writes Xen's hypercall page into guest frame `gfn`; false if it is
    /// not ordinary writable RAM of the guest (the WRMSR then #GPs).
    fn install_hypercall_page(&mut self, gfn: u64) -> bool;
    /// The bytes at CS:RIP, up to 15 (fewer where the fetch stopped at an
    /// unmapped page), or the fault the fetch takes. The default walks
    /// the guest's tables through [`Env`]; SVM with decode assists may
    /// answer from the VMCB's instruction bytes instead.
    fn insn_bytes(&mut self, buf: &mut [u8; MAX_INSN_LEN]) -> Result<usize, Fault> {
        let mode = self.mode();
        let base = match mode {
            Mode::Bits64 => 0,
            _ => self.segment_base(Segment::Cs),
        };
        let la = linear_wrap(mode, base.wrapping_add(self.rip()));
        let mut n = 0;
        while n < MAX_INSN_LEN {
            let at = linear_wrap(mode, la.wrapping_add(n as u64));
            let len = (MAX_INSN_LEN - n).min((PAGE_SIZE - at % PAGE_SIZE) as usize);
            let gpa = match self.translate(at, Access::Fetch) {
                Ok(g) => g,
                Err(f) if n == 0 => return Err(f),
                Err(_) => break,
            };
            if self.is_mmio(gpa) || self.read_ram(gpa, &mut buf[n..n + len]).is_err() {
                if n == 0 {
                    return Err(Fault::GP0);
                }
                break;
            }
            n += len;
        }
        Ok(n)
    }
}

/// The domain-wide policies an exit consults.
#[derive(Clone, Copy, Debug)]
pub struct Policies<'a> {
    /// CPUID.
    pub cpuid: &'a HvmCpuidPolicy,
    /// MSRs.
    pub msr: &'a MsrPolicy,
}

/// One MMIO access of the instruction being emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MmioAccess {
    gpa: u64,
    size: u8,
    write: bool,
    /// The value written, or the value read.
    val: u64,
}

/// The ioreq in flight, and what its answer completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InFlight {
    /// IN: the answer goes to AL/AX/EAX.
    PortIn { size: u8, insn_len: u8 },
    /// OUT.
    PortOut { insn_len: u8 },
    /// One element of OUTS.
    StringOut { io: IoExit },
    /// One element of INS: the answer goes to these guest-physical
    /// pieces (translated before the device saw the read).
    StringIn { io: IoExit, pieces: Pieces },
    /// An MMIO access of an instruction being emulated.
    Mmio(MmioAccess),
}

/// A linear range split at a page boundary: `(gpa, len)`, the second
/// piece's len 0 when unused.
type Pieces = [(u64, u8); 2];

/// The vendor-neutral state of one HVM vCPU (Xen's `struct hvm_vcpu`,
/// the parts that are not registers).
#[derive(Clone, Debug, Default)]
pub struct HvmVcpu {
    /// The MTRRs ([`super::msr`]).
    pub msrs: MsrState,
    in_flight: Option<InFlight>,
    log: [Option<MmioAccess>; MMIO_LOG],
    log_len: usize,
    log_overflow: bool,
}

impl HvmVcpu {
    /// Whether an ioreq is outstanding (the vCPU must not run).
    pub fn waiting_for_ioreq(&self) -> bool {
        self.in_flight.is_some()
    }

    fn clear_log(&mut self) {
        self.log_len = 0;
        self.log_overflow = false;
    }

    fn log_push(&mut self, a: MmioAccess) {
        match self.log.get_mut(self.log_len) {
            Some(slot) => {
                *slot = Some(a);
                self.log_len += 1;
            }
            None => self.log_overflow = true,
        }
    }
}

/// The mask of an operand of `size` bytes.
fn mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// A linear address as the mode wraps it.
fn linear_wrap(mode: Mode, la: u64) -> u64 {
    match mode {
        Mode::Bits64 => la,
        _ => la & 0xffff_ffff,
    }
}

/// RIP after an instruction of `len` bytes (EIP wraps at 32 bits, IP at
/// 16, as [`emulate`] does).
fn next_rip(mode: Mode, rip: u64, len: u8) -> u64 {
    let r = rip.wrapping_add(u64::from(len));
    match mode {
        Mode::Bits64 => r,
        Mode::Bits32 => r & 0xffff_ffff,
        Mode::Bits16 => r & 0xffff,
    }
}

fn advance(v: &mut impl Vcpu, len: u8) {
    let rip = next_rip(v.mode(), v.rip(), len);
    v.set_rip(rip);
}

fn set_edx_eax(v: &mut impl Vcpu, val: u64) {
    v.set_gpr(RAX, val & 0xffff_ffff);
    v.set_gpr(RDX, val >> 32);
}

fn ioreq(kind: IoreqType, addr: u64, size: u8, data: u64, dir: IoDir, df: bool) -> Ioreq {
    let mut r = Ioreq {
        addr,
        data,
        count: 1,
        size: u32::from(size),
        r#type: kind.raw(),
        ..Ioreq::default()
    };
    if dir == IoDir::In {
        r.bits |= IOREQ_BITS_DIR;
    }
    if df {
        r.bits |= IOREQ_BITS_DF;
    }
    r
}

/// Handles one exit of `vcpu` at `now`. `hvm` is the vCPU's
/// [`HvmVcpu`]; `acts` collects what the platform asks of the glue (pass
/// an empty list per exit).
pub fn handle(
    exit: Exit,
    vcpu: &mut impl Vcpu,
    hvm: &mut HvmVcpu,
    plat: &mut Platform,
    pol: &Policies<'_>,
    now: u64,
    acts: &mut Actions,
) -> ExitOutcome {
    if hvm.in_flight.is_some() {
        // The glue ran a vCPU that waits for the device model.
        return ExitOutcome::Crash("vCPU ran with an ioreq outstanding");
    }
    let out = match exit {
        Exit::Cpuid { insn_len } => {
            let leaf = vcpu.gpr(RAX) as u32;
            let sub = vcpu.gpr(RCX) as u32;
            let r = pol.cpuid.lookup(&vcpu.cpuid_state(), leaf, sub);
            for (reg, val) in [(RAX, r[0]), (RBX, r[1]), (RCX, r[2]), (RDX, r[3])] {
                vcpu.set_gpr(reg, u64::from(val));
            }
            advance(vcpu, insn_len);
            ExitOutcome::Resume
        }
        Exit::Rdmsr { insn_len } => rdmsr(vcpu, hvm, plat, pol, now, insn_len),
        Exit::Wrmsr { insn_len } => wrmsr(vcpu, hvm, plat, pol, now, insn_len, acts),
        Exit::Io(io) => port_io(io, vcpu, hvm, plat, now, acts),
        Exit::Npf { gpa, fetch, .. } => {
            let id = vcpu.id();
            if !(plat.claims_mmio(id, gpa) || vcpu.is_mmio(gpa)) {
                ExitOutcome::Crash("nested page fault outside RAM and MMIO")
            } else if fetch {
                ExitOutcome::Crash("instruction fetch from MMIO")
            } else {
                hvm.clear_log();
                emulate_mmio(vcpu, hvm, plat, now, acts)
            }
        }
        Exit::Hlt { insn_len } => {
            advance(vcpu, insn_len);
            let id = vcpu.id();
            if plat.nmi_pending(id) {
                ExitOutcome::Resume
            } else if vcpu.rflags() & RFLAGS_IF == 0 {
                plat.vcpu_down(id, acts);
                ExitOutcome::Down
            } else if plat.pending_interrupt(id).is_some() {
                ExitOutcome::Resume
            } else {
                ExitOutcome::Block
            }
        }
        Exit::Vmcall { insn_len } => ExitOutcome::Hypercall { insn_len },
        Exit::Intr | Exit::Nmi | Exit::InterruptWindow => ExitOutcome::Resume,
        Exit::Shutdown => ExitOutcome::Crash("triple fault"),
        Exit::Invalid => ExitOutcome::Crash("VM entry failed: invalid guest state"),
        Exit::Exception { vector, .. } if vector == VECTOR_MC || vector >= 32 => {
            ExitOutcome::Crash("machine check or bad vector in an exception exit")
        }
        Exit::Exception { vector, error_code } => {
            // Intercepted only to be seen: give it back to the guest.
            vcpu.inject(Fault {
                vector,
                error_code,
                cr2: None,
            });
            ExitOutcome::Resume
        }
        Exit::Unknown(_) => ExitOutcome::Crash("unknown VM exit"),
    };
    shutdown_first(out, acts)
}

/// A power-off or reset the platform asked for wins over resuming.
fn shutdown_first(out: ExitOutcome, acts: &Actions) -> ExitOutcome {
    match out {
        ExitOutcome::Crash(_) => out,
        _ if acts.contains(&Action::PowerOff) => ExitOutcome::PowerOff,
        _ if acts.contains(&Action::Reset) => ExitOutcome::Reset,
        _ => out,
    }
}

/// The device model answered the ioreq [`handle`] (or this) returned:
/// `data` is the answered request's `data` (the value read, for reads).
/// Finishes the instruction and says what next, as [`handle`].
pub fn complete_ioreq(
    data: u64,
    vcpu: &mut impl Vcpu,
    hvm: &mut HvmVcpu,
    plat: &mut Platform,
    now: u64,
    acts: &mut Actions,
) -> ExitOutcome {
    let Some(f) = hvm.in_flight.take() else {
        return ExitOutcome::Crash("ioreq answer with none outstanding");
    };
    let out = match f {
        InFlight::PortIn { size, insn_len } => {
            set_port_result(vcpu, size, data as u32);
            advance(vcpu, insn_len);
            ExitOutcome::Resume
        }
        InFlight::PortOut { insn_len } => {
            advance(vcpu, insn_len);
            ExitOutcome::Resume
        }
        InFlight::StringOut { io } => {
            let mut regs = StringRegs::load(vcpu);
            regs.step(&io);
            regs.store(vcpu, &io);
            ExitOutcome::Resume
        }
        InFlight::StringIn { io, pieces } => {
            let bytes = data.to_le_bytes();
            if write_pieces(vcpu, &pieces, &bytes).is_err() {
                return ExitOutcome::Crash("INS buffer went away");
            }
            let mut regs = StringRegs::load(vcpu);
            regs.step(&io);
            regs.store(vcpu, &io);
            ExitOutcome::Resume
        }
        InFlight::Mmio(mut a) => {
            if !a.write {
                a.val = data & mask(a.size);
            }
            hvm.log_push(a);
            emulate_mmio(vcpu, hvm, plat, now, acts)
        }
    };
    shutdown_first(out, acts)
}

// ----- MSRs ----------------------------------------------------------------

fn gp(vcpu: &mut impl Vcpu) -> ExitOutcome {
    vcpu.inject(Fault::GP0);
    ExitOutcome::Resume
}

fn rdmsr(
    vcpu: &mut impl Vcpu,
    hvm: &mut HvmVcpu,
    plat: &mut Platform,
    pol: &Policies<'_>,
    now: u64,
    insn_len: u8,
) -> ExitOutcome {
    let msr = vcpu.gpr(RCX) as u32;
    let val = match msr::rdmsr(msr, &hvm.msrs, pol.msr, &vcpu.msr_ctx()) {
        MsrAction::Value(v) => v,
        MsrAction::ReadReg(r) => vcpu.guest_reg(r),
        MsrAction::ReadTsc => vcpu.tsc(),
        MsrAction::Vlapic => match plat.msr_read(vcpu.id(), msr, now) {
            Ok(v) => v,
            Err(_) => return gp(vcpu),
        },
        // Write-only answers never come from rdmsr; refuse them anyway.
        MsrAction::Gp
        | MsrAction::Done
        | MsrAction::WriteReg(..)
        | MsrAction::SetEfer(_)
        | MsrAction::WriteTsc(_)
        | MsrAction::InstallHypercallPage { .. } => return gp(vcpu),
    };
    set_edx_eax(vcpu, val);
    advance(vcpu, insn_len);
    ExitOutcome::Resume
}

fn wrmsr(
    vcpu: &mut impl Vcpu,
    hvm: &mut HvmVcpu,
    plat: &mut Platform,
    pol: &Policies<'_>,
    now: u64,
    insn_len: u8,
    acts: &mut Actions,
) -> ExitOutcome {
    let msr = vcpu.gpr(RCX) as u32;
    let val = (vcpu.gpr(RDX) << 32) | (vcpu.gpr(RAX) & 0xffff_ffff);
    match msr::wrmsr(msr, val, &mut hvm.msrs, pol.msr, &vcpu.msr_ctx()) {
        MsrAction::Done => {}
        MsrAction::WriteReg(r, v) => vcpu.set_guest_reg(r, v),
        MsrAction::SetEfer(e) => vcpu.set_efer(e),
        MsrAction::WriteTsc(t) => vcpu.set_tsc(t),
        MsrAction::Vlapic => {
            let tsc = vcpu.tsc();
            if plat.msr_write(vcpu.id(), msr, val, now, tsc, acts).is_err() {
                return gp(vcpu);
            }
        }
        MsrAction::InstallHypercallPage { gfn } => {
            if !vcpu.install_hypercall_page(gfn) {
                return gp(vcpu);
            }
        }
        MsrAction::Gp | MsrAction::Value(_) | MsrAction::ReadReg(_) | MsrAction::ReadTsc => {
            return gp(vcpu)
        }
    }
    advance(vcpu, insn_len);
    ExitOutcome::Resume
}

// ----- port I/O -------------------------------------------------------------

/// IN's result into AL/AX (the rest of RAX kept) or EAX (zero-extended).
fn set_port_result(vcpu: &mut impl Vcpu, size: u8, val: u32) {
    let rax = vcpu.gpr(RAX);
    let new = match size {
        1 => (rax & !0xff) | u64::from(val & 0xff),
        2 => (rax & !0xffff) | u64::from(val & 0xffff),
        _ => u64::from(val),
    };
    vcpu.set_gpr(RAX, new);
}

fn port_io(
    io: IoExit,
    vcpu: &mut impl Vcpu,
    hvm: &mut HvmVcpu,
    plat: &mut Platform,
    now: u64,
    acts: &mut Actions,
) -> ExitOutcome {
    if !matches!(io.size, 1 | 2 | 4) {
        return ExitOutcome::Crash("port I/O exit with a bad size");
    }
    if io.string {
        return string_io(io, vcpu, hvm, plat, now, acts);
    }
    match io.dir {
        IoDir::Out => {
            let val = vcpu.gpr(RAX) as u32 & mask(io.size) as u32;
            match plat.port_out(io.port, io.size, val, now, acts) {
                PortResult::Handled(_) => {
                    advance(vcpu, io.insn_len);
                    ExitOutcome::Resume
                }
                PortResult::Forward => {
                    hvm.in_flight = Some(InFlight::PortOut {
                        insn_len: io.insn_len,
                    });
                    let r = ioreq(
                        IoreqType::Pio,
                        u64::from(io.port),
                        io.size,
                        u64::from(val),
                        IoDir::Out,
                        false,
                    );
                    ExitOutcome::WaitIoreq(r)
                }
            }
        }
        IoDir::In => match plat.port_in(io.port, io.size, now, acts) {
            PortResult::Handled(v) => {
                set_port_result(vcpu, io.size, v);
                advance(vcpu, io.insn_len);
                ExitOutcome::Resume
            }
            PortResult::Forward => {
                hvm.in_flight = Some(InFlight::PortIn {
                    size: io.size,
                    insn_len: io.insn_len,
                });
                let r = ioreq(
                    IoreqType::Pio,
                    u64::from(io.port),
                    io.size,
                    0,
                    IoDir::In,
                    false,
                );
                ExitOutcome::WaitIoreq(r)
            }
        },
    }
}

/// RCX/RSI/RDI of a string instruction, at its address size.
struct StringRegs {
    mode: Mode,
    rip: u64,
    df: bool,
    rcx: u64,
    rsi: u64,
    rdi: u64,
}

impl StringRegs {
    fn load(v: &impl Vcpu) -> Self {
        Self {
            mode: v.mode(),
            rip: v.rip(),
            df: v.rflags() & rflags::DF != 0,
            rcx: v.gpr(RCX),
            rsi: v.gpr(RSI),
            rdi: v.gpr(RDI),
        }
    }

    fn amask(io: &IoExit) -> u64 {
        mask(io.addr_size)
    }

    /// An address-size register that was `old` and becomes `new`: 16-bit
    /// updates keep the rest, 32-bit ones zero-extend in 64-bit mode.
    fn update(&self, io: &IoExit, old: u64, new: u64) -> u64 {
        let m = Self::amask(io);
        if io.addr_size == 4 && self.mode == Mode::Bits64 {
            new & m
        } else {
            (old & !m) | (new & m)
        }
    }

    /// Elements left (1 without REP).
    fn count(&self, io: &IoExit) -> u64 {
        if io.rep {
            self.rcx & Self::amask(io)
        } else {
            1
        }
    }

    /// One element done.
    fn step(&mut self, io: &IoExit) {
        let size = u64::from(io.size);
        let delta = if self.df { size.wrapping_neg() } else { size };
        match io.dir {
            IoDir::Out => self.rsi = self.update(io, self.rsi, self.rsi.wrapping_add(delta)),
            IoDir::In => self.rdi = self.update(io, self.rdi, self.rdi.wrapping_add(delta)),
        }
        if io.rep {
            self.rcx = self.update(io, self.rcx, self.rcx.wrapping_sub(1));
        }
    }

    /// Writes the registers back; RIP moves past the instruction once no
    /// element is left.
    fn store(&self, v: &mut impl Vcpu, io: &IoExit) {
        v.set_gpr(RCX, self.rcx);
        v.set_gpr(RSI, self.rsi);
        v.set_gpr(RDI, self.rdi);
        if !io.rep || self.count(io) == 0 {
            v.set_rip(next_rip(self.mode, self.rip, io.insn_len));
        }
    }

    /// The linear address of the next element.
    fn linear(&self, v: &impl Vcpu, io: &IoExit) -> Result<u64, Fault> {
        let (seg, off) = match io.dir {
            IoDir::Out => (io.seg, self.rsi),
            IoDir::In => (Segment::Es, self.rdi),
        };
        let off = off & Self::amask(io);
        if self.mode == Mode::Bits64 {
            let base = match seg {
                Segment::Fs | Segment::Gs => v.segment_base(seg),
                _ => 0,
            };
            let la = base.wrapping_add(off);
            if !is_canonical(la) {
                return Err(if seg == Segment::Ss {
                    Fault::SS0
                } else {
                    Fault::GP0
                });
            }
            Ok(la)
        } else {
            Ok(v.segment_base(seg).wrapping_add(off) & 0xffff_ffff)
        }
    }
}

/// Translates `size` bytes at `la`, split at a page boundary.
fn pieces(v: &mut impl Vcpu, la: u64, size: u8, access: Access) -> Result<Pieces, Fault> {
    let mode = v.mode();
    let first = (PAGE_SIZE - la % PAGE_SIZE).min(u64::from(size)) as u8;
    let g0 = v.translate(la, access)?;
    let mut out = [(g0, first), (0, 0)];
    if first < size {
        let la2 = linear_wrap(mode, la.wrapping_add(u64::from(first)));
        out[1] = (v.translate(la2, access)?, size - first);
    }
    Ok(out)
}

/// Why a string I/O buffer access stopped.
enum BufError {
    Fault(Fault),
    Mmio,
}

fn read_pieces(v: &mut impl Vcpu, p: &Pieces) -> Result<u64, BufError> {
    let mut bytes = [0u8; 8];
    let mut at = 0usize;
    for &(gpa, len) in p {
        let len = usize::from(len);
        if len == 0 {
            continue;
        }
        if v.is_mmio(gpa) {
            return Err(BufError::Mmio);
        }
        v.read_ram(gpa, &mut bytes[at..at + len])
            .map_err(BufError::Fault)?;
        at += len;
    }
    Ok(u64::from_le_bytes(bytes))
}

fn write_pieces(v: &mut impl Vcpu, p: &Pieces, bytes: &[u8; 8]) -> Result<(), BufError> {
    let mut at = 0usize;
    for &(gpa, len) in p {
        let len = usize::from(len);
        if len == 0 {
            continue;
        }
        if v.is_mmio(gpa) {
            return Err(BufError::Mmio);
        }
        v.write_ram(gpa, &bytes[at..at + len])
            .map_err(BufError::Fault)?;
        at += len;
    }
    Ok(())
}

/// INS/OUTS: see the module documentation.
fn string_io(
    io: IoExit,
    vcpu: &mut impl Vcpu,
    hvm: &mut HvmVcpu,
    plat: &mut Platform,
    now: u64,
    acts: &mut Actions,
) -> ExitOutcome {
    if !matches!(io.addr_size, 2 | 4 | 8) {
        return ExitOutcome::Crash("string I/O exit with a bad address size");
    }
    let mut regs = StringRegs::load(vcpu);
    if regs.count(&io) == 0 {
        regs.store(vcpu, &io);
        return ExitOutcome::Resume;
    }
    let access = match io.dir {
        IoDir::Out => Access::Read,
        IoDir::In => Access::Write,
    };
    let local = plat.owns_port(io.port);
    let mut done = 0u64;
    let stop: Option<BufError> = loop {
        if done == MAX_REP || regs.count(&io) == 0 || acts.room() < Actions::ONE_CALL {
            break None;
        }
        let p = match regs.linear(vcpu, &io) {
            Ok(la) => match pieces(vcpu, la, io.size, access) {
                Ok(p) => p,
                Err(f) => break Some(BufError::Fault(f)),
            },
            Err(f) => break Some(BufError::Fault(f)),
        };
        match io.dir {
            IoDir::Out => {
                let val = match read_pieces(vcpu, &p) {
                    Ok(v) => v as u32 & mask(io.size) as u32,
                    Err(e) => break Some(e),
                };
                if !local {
                    hvm.in_flight = Some(InFlight::StringOut { io });
                    let r = ioreq(
                        IoreqType::Pio,
                        u64::from(io.port),
                        io.size,
                        u64::from(val),
                        IoDir::Out,
                        regs.df,
                    );
                    return ExitOutcome::WaitIoreq(r);
                }
                plat.port_out(io.port, io.size, val, now, acts);
            }
            IoDir::In => {
                if !local {
                    if p.iter().any(|&(g, len)| len != 0 && vcpu.is_mmio(g)) {
                        break Some(BufError::Mmio);
                    }
                    hvm.in_flight = Some(InFlight::StringIn { io, pieces: p });
                    let r = ioreq(
                        IoreqType::Pio,
                        u64::from(io.port),
                        io.size,
                        0,
                        IoDir::In,
                        regs.df,
                    );
                    return ExitOutcome::WaitIoreq(r);
                }
                let v = match plat.port_in(io.port, io.size, now, acts) {
                    PortResult::Handled(v) => v,
                    PortResult::Forward => u32::MAX,
                };
                if let Err(e) = write_pieces(vcpu, &p, &u64::from(v).to_le_bytes()) {
                    break Some(e);
                }
            }
        }
        regs.step(&io);
        done += 1;
    };
    // Elements done so far stand (a fault leaves the registers at the
    // faulting element, as hardware does).
    vcpu.set_gpr(RCX, regs.rcx);
    vcpu.set_gpr(RSI, regs.rsi);
    vcpu.set_gpr(RDI, regs.rdi);
    match stop {
        Some(BufError::Fault(f)) => {
            vcpu.inject(f);
            ExitOutcome::Resume
        }
        Some(BufError::Mmio) => ExitOutcome::Crash("string port I/O with an MMIO buffer"),
        None => {
            regs.store(vcpu, &io);
            ExitOutcome::Resume
        }
    }
}

// ----- MMIO -----------------------------------------------------------------

/// The emulator's view of the vCPU during an MMIO instruction: guest state
/// from the glue, MMIO from the platform, the replay log, or the device
/// model.
struct MmioEnv<'a, V: Vcpu> {
    vcpu: &'a mut V,
    hvm: &'a mut HvmVcpu,
    plat: &'a mut Platform,
    now: u64,
    acts: &'a mut Actions,
    /// The next access's position in the log.
    pos: usize,
    /// The access that must go to the device model.
    request: Option<MmioAccess>,
    diverged: bool,
}

impl<V: Vcpu> MmioEnv<'_, V> {
    fn access(
        &mut self,
        gpa: u64,
        size: u8,
        write: bool,
        val: u64,
    ) -> Result<u64, emulate::Pending> {
        if self.request.is_some() || self.diverged {
            return Err(emulate::Pending);
        }
        let want = MmioAccess {
            gpa,
            size,
            write,
            val: if write { val } else { 0 },
        };
        if self.pos < self.hvm.log_len {
            let Some(got) = self.hvm.log[self.pos] else {
                self.diverged = true;
                return Err(emulate::Pending);
            };
            let same = got.gpa == gpa
                && got.size == size
                && got.write == write
                && (!write || got.val == val);
            if !same {
                self.diverged = true;
                return Err(emulate::Pending);
            }
            self.pos += 1;
            return Ok(if write { 0 } else { got.val });
        }
        let id = self.vcpu.id();
        let r = if write {
            self.plat
                .mmio_write(id, gpa, size, val, self.now, self.acts)
        } else {
            self.plat.mmio_read(id, gpa, size, self.now)
        };
        match r {
            MmioResult::Handled(v) => {
                let done = MmioAccess {
                    val: if write { val } else { v },
                    ..want
                };
                self.hvm.log_push(done);
                self.pos += 1;
                Ok(if write { 0 } else { v })
            }
            MmioResult::Forward => {
                self.request = Some(want);
                Err(emulate::Pending)
            }
        }
    }
}

impl<V: Vcpu> Env for MmioEnv<'_, V> {
    fn mode(&self) -> Mode {
        self.vcpu.mode()
    }
    fn rip(&self) -> u64 {
        self.vcpu.rip()
    }
    fn rflags(&self) -> u64 {
        self.vcpu.rflags()
    }
    fn gpr(&self, reg: usize) -> u64 {
        self.vcpu.gpr(reg)
    }
    fn set_gpr(&mut self, reg: usize, val: u64) {
        self.vcpu.set_gpr(reg, val)
    }
    fn segment_base(&self, seg: Segment) -> u64 {
        self.vcpu.segment_base(seg)
    }
    fn translate(&mut self, linear: u64, access: Access) -> Result<u64, Fault> {
        self.vcpu.translate(linear, access)
    }
    fn is_mmio(&self, gpa: u64) -> bool {
        self.plat.claims_mmio(self.vcpu.id(), gpa) || self.vcpu.is_mmio(gpa)
    }
    fn read_ram(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), Fault> {
        self.vcpu.read_ram(gpa, buf)
    }
    fn write_ram(&mut self, gpa: u64, buf: &[u8]) -> Result<(), Fault> {
        self.vcpu.write_ram(gpa, buf)
    }
    fn mmio_read(&mut self, gpa: u64, size: u8) -> Result<u64, emulate::Pending> {
        self.access(gpa, size, false, 0)
    }
    fn mmio_write(&mut self, gpa: u64, size: u8, val: u64) -> Result<(), emulate::Pending> {
        self.access(gpa, size, true, val).map(|_| ())
    }
}

/// Emulates the instruction at RIP (again, after an ioreq answer).
fn emulate_mmio(
    vcpu: &mut impl Vcpu,
    hvm: &mut HvmVcpu,
    plat: &mut Platform,
    now: u64,
    acts: &mut Actions,
) -> ExitOutcome {
    let mut buf = [0u8; MAX_INSN_LEN];
    let n = match vcpu.insn_bytes(&mut buf) {
        Ok(n) => n.min(MAX_INSN_LEN),
        Err(f) => {
            hvm.clear_log();
            vcpu.inject(f);
            return ExitOutcome::Resume;
        }
    };
    let mut env = MmioEnv {
        vcpu: &mut *vcpu,
        hvm: &mut *hvm,
        plat,
        now,
        acts,
        pos: 0,
        request: None,
        diverged: false,
    };
    let outcome = emulate::emulate(&buf[..n], &mut env);
    let (request, diverged) = (env.request, env.diverged);
    if diverged {
        hvm.clear_log();
        return ExitOutcome::Crash("MMIO instruction replay diverged");
    }
    match outcome {
        Outcome::Done {
            new_rip,
            new_rflags,
        } => {
            // A request found after progress (a `rep` that stops early)
            // is dropped: the guest re-executes that iteration.
            hvm.clear_log();
            vcpu.set_rflags(new_rflags);
            vcpu.set_rip(new_rip);
            ExitOutcome::Resume
        }
        Outcome::Exception(f) => {
            hvm.clear_log();
            vcpu.inject(f);
            ExitOutcome::Resume
        }
        Outcome::Retry => match request {
            Some(_) if hvm.log_overflow => {
                hvm.clear_log();
                ExitOutcome::Crash("MMIO instruction needs too many accesses")
            }
            Some(a) => {
                hvm.in_flight = Some(InFlight::Mmio(a));
                let dir = if a.write { IoDir::Out } else { IoDir::In };
                ExitOutcome::WaitIoreq(ioreq(IoreqType::Copy, a.gpa, a.size, a.val, dir, false))
            }
            None => {
                hvm.clear_log();
                ExitOutcome::Crash("MMIO emulation stalled without a request")
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hvm::cpuid::HvmCpuidConfig;
    use crate::hvm::platform::PlatformConfig;
    use hypercall_abi::hvm::IOREQ_READ;
    use hypercall_abi::hvm::IOREQ_WRITE;
    use std::vec;
    use std::vec::Vec;

    const MS: u64 = 1_000_000;
    const RAM: usize = 0x2_0000;
    /// Where the fake device model's MMIO lives.
    const DM_MMIO: u64 = 0xe000_0000;
    /// Code goes here.
    const CODE: u64 = 0x1000;
    /// A linear page that is not mapped (#PF).
    const HOLE: u64 = 0x8000;

    /// A vCPU with flat, identity-mapped RAM at 0 and everything above it
    /// MMIO.
    struct Guest {
        id: usize,
        mode: Mode,
        rip: u64,
        rflags: u64,
        regs: [u64; 16],
        ram: Vec<u8>,
        injected: Vec<Fault>,
        efer: u64,
        tsc: u64,
        regs_vmcb: Vec<(GuestReg, u64)>,
        hypercall_gfn: Option<u64>,
    }

    impl Guest {
        fn new(id: usize, mode: Mode) -> Self {
            Self {
                id,
                mode,
                rip: CODE,
                rflags: 0x2 | RFLAGS_IF,
                regs: [0; 16],
                ram: vec![0; RAM],
                injected: Vec::new(),
                efer: 0,
                tsc: 1000,
                regs_vmcb: Vec::new(),
                hypercall_gfn: None,
            }
        }

        /// Puts `code` at RIP.
        fn code(&mut self, code: &[u8]) {
            let at = self.rip as usize;
            self.ram[at..at + code.len()].copy_from_slice(code);
        }
    }

    impl Env for Guest {
        fn mode(&self) -> Mode {
            self.mode
        }
        fn rip(&self) -> u64 {
            self.rip
        }
        fn rflags(&self) -> u64 {
            self.rflags
        }
        fn gpr(&self, reg: usize) -> u64 {
            self.regs[reg & 15]
        }
        fn set_gpr(&mut self, reg: usize, val: u64) {
            self.regs[reg & 15] = val;
        }
        fn segment_base(&self, _seg: Segment) -> u64 {
            0
        }
        fn translate(&mut self, linear: u64, access: Access) -> Result<u64, Fault> {
            if linear & !0xfff == HOLE {
                let w = if access == Access::Write { 2 } else { 0 };
                return Err(Fault::page_fault(linear, w));
            }
            Ok(linear)
        }
        fn is_mmio(&self, gpa: u64) -> bool {
            gpa >= RAM as u64
        }
        fn read_ram(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), Fault> {
            let at = gpa as usize;
            let src = self.ram.get(at..at + buf.len()).ok_or(Fault::GP0)?;
            buf.copy_from_slice(src);
            Ok(())
        }
        fn write_ram(&mut self, gpa: u64, buf: &[u8]) -> Result<(), Fault> {
            let at = gpa as usize;
            let dst = self.ram.get_mut(at..at + buf.len()).ok_or(Fault::GP0)?;
            dst.copy_from_slice(buf);
            Ok(())
        }
        fn mmio_read(&mut self, _gpa: u64, _size: u8) -> Result<u64, emulate::Pending> {
            Err(emulate::Pending)
        }
        fn mmio_write(&mut self, _gpa: u64, _size: u8, _val: u64) -> Result<(), emulate::Pending> {
            Err(emulate::Pending)
        }
    }

    impl Vcpu for Guest {
        fn id(&self) -> usize {
            self.id
        }
        fn set_rip(&mut self, rip: u64) {
            self.rip = rip;
        }
        fn set_rflags(&mut self, rflags: u64) {
            self.rflags = rflags;
        }
        fn inject(&mut self, fault: Fault) {
            self.injected.push(fault);
        }
        fn cpuid_state(&self) -> VcpuCpuidState {
            VcpuCpuidState {
                vcpu_id: self.id as u32,
                ..VcpuCpuidState::default()
            }
        }
        fn msr_ctx(&self) -> GuestMsrCtx {
            GuestMsrCtx {
                efer: self.efer,
                paging: false,
            }
        }
        fn guest_reg(&self, reg: GuestReg) -> u64 {
            self.regs_vmcb
                .iter()
                .rev()
                .find(|(r, _)| *r == reg)
                .map_or(0, |(_, v)| *v)
        }
        fn set_guest_reg(&mut self, reg: GuestReg, val: u64) {
            self.regs_vmcb.push((reg, val));
        }
        fn set_efer(&mut self, efer: u64) {
            self.efer = efer;
        }
        fn tsc(&self) -> u64 {
            self.tsc
        }
        fn set_tsc(&mut self, tsc: u64) {
            self.tsc = tsc;
        }
        fn install_hypercall_page(&mut self, gfn: u64) -> bool {
            if gfn < (RAM as u64 >> 12) {
                self.hypercall_gfn = Some(gfn);
                true
            } else {
                false
            }
        }
    }

    /// A domain: platform, policies, one [`HvmVcpu`] per vCPU.
    struct Dom {
        plat: Platform,
        cpuid: HvmCpuidPolicy,
        msr: MsrPolicy,
        hvm: Vec<HvmVcpu>,
        acts: Actions,
    }

    impl Dom {
        fn new(vcpus: usize) -> Self {
            Self {
                plat: Platform::new(
                    PlatformConfig {
                        vcpus,
                        ..PlatformConfig::default()
                    },
                    0,
                ),
                cpuid: HvmCpuidPolicy::from_host(
                    |_, _| [0; 4],
                    HvmCpuidConfig {
                        vcpus: vcpus as u32,
                        ..HvmCpuidConfig::default()
                    },
                ),
                msr: MsrPolicy::default(),
                hvm: vec![HvmVcpu::default(); vcpus],
                acts: Actions::new(),
            }
        }

        fn exit(&mut self, g: &mut Guest, e: Exit, now: u64) -> ExitOutcome {
            let pol = Policies {
                cpuid: &self.cpuid,
                msr: &self.msr,
            };
            let slot = g.id.min(self.hvm.len() - 1);
            let hvm = &mut self.hvm[slot];
            handle(e, g, hvm, &mut self.plat, &pol, now, &mut self.acts)
        }

        fn complete(&mut self, g: &mut Guest, data: u64, now: u64) -> ExitOutcome {
            let slot = g.id.min(self.hvm.len() - 1);
            let hvm = &mut self.hvm[slot];
            complete_ioreq(data, g, hvm, &mut self.plat, now, &mut self.acts)
        }

        fn actions(&mut self) -> Vec<Action> {
            let v = self.acts.iter().copied().collect();
            self.acts.clear();
            v
        }

        /// `out dx, al/ax/eax` as the guest runs it.
        fn out(&mut self, g: &mut Guest, port: u16, size: u8, val: u64) -> ExitOutcome {
            g.regs[RAX] = val;
            self.exit(g, Exit::Io(io(port, size, IoDir::Out)), 0)
        }

        /// `in al/ax/eax, dx`.
        fn inp(&mut self, g: &mut Guest, port: u16, size: u8) -> ExitOutcome {
            self.exit(g, Exit::Io(io(port, size, IoDir::In)), 0)
        }

        /// `mov [rbx], eax` (32-bit code) at RIP: a store to MMIO.
        fn store32(&mut self, g: &mut Guest, gpa: u64, val: u32, now: u64) -> ExitOutcome {
            g.code(&[0x89, 0x03]);
            g.regs[RBX] = gpa;
            g.regs[RAX] = u64::from(val);
            let rip = g.rip;
            let out = self.exit(g, npf(gpa, true), now);
            if out == ExitOutcome::Resume {
                assert_eq!(g.rip, rip + 2, "store at {gpa:#x} completed");
            }
            out
        }
    }

    fn io(port: u16, size: u8, dir: IoDir) -> IoExit {
        IoExit {
            port,
            size,
            dir,
            string: false,
            rep: false,
            addr_size: 4,
            seg: Segment::Ds,
            insn_len: 1,
        }
    }

    fn npf(gpa: u64, write: bool) -> Exit {
        Exit::Npf {
            gpa,
            write,
            fetch: false,
        }
    }

    #[test]
    fn pit_at_100hz_reaches_the_guest_via_pic_then_via_ioapic() {
        let mut d = Dom::new(1);
        let mut g = Guest::new(0, Mode::Bits32);
        // LAPIC on, LINT0 ExtINT (Linux's init_bsp_APIC), through MMIO.
        d.store32(&mut g, 0xfee0_00f0, 0x1ff, 0);
        d.store32(&mut g, 0xfee0_0350, 0x700, 0);
        // The PIC (vectors 0x30/0x38, IRQ0 unmasked) and the PIT at 100 Hz.
        for (port, v) in [
            (0x20, 0x11),
            (0x21, 0x30),
            (0x21, 0x04),
            (0x21, 0x01),
            (0xa0, 0x11),
            (0xa1, 0x38),
            (0xa1, 0x02),
            (0xa1, 0x01),
            (0x21, 0xfa),
            (0x43, 0x34),
            (0x40, 11932 & 0xff),
            (0x40, 11932 >> 8),
        ] {
            assert_eq!(d.out(&mut g, port, 1, v), ExitOutcome::Resume);
        }
        assert_eq!(g.rip, 0x1004 + 12, "every OUT advanced RIP");
        let tick = d.plat.advance(0, &mut d.acts).unwrap();
        // The guest idles.
        g.code(&[0xf4]);
        assert_eq!(
            d.exit(&mut g, Exit::Hlt { insn_len: 1 }, 0),
            ExitOutcome::Block
        );
        d.actions();
        let next = d.plat.advance(tick, &mut d.acts).unwrap();
        assert_eq!(d.actions(), [Action::Kick(0)]);
        assert_eq!(
            pending_injection(&mut d.plat, 0, true, false),
            Injection::InterruptWindow
        );
        assert_eq!(
            pending_injection(&mut d.plat, 0, true, true),
            Injection::Vector(0x30)
        );
        d.out(&mut g, 0x20, 1, 0x20); // EOI

        // Now through the IOAPIC: mask the PIC and LINT0, route pin 2.
        d.out(&mut g, 0x21, 1, 0xff);
        d.store32(&mut g, 0xfee0_0350, 0x1_0700, 0);
        d.store32(&mut g, 0xfec0_0000, 0x14, 0); // IOREGSEL = RTE 2 low
        d.store32(&mut g, 0xfec0_0010, 0x41, 0); // vector 0x41, edge, unmasked
        d.store32(&mut g, 0xfec0_0000, 0x15, 0);
        d.store32(&mut g, 0xfec0_0010, 0, 0); // destination APIC id 0
        assert_eq!(d.plat.ioapic().rte(2), 0x41);
        d.actions();
        d.plat.advance(next, &mut d.acts);
        assert_eq!(d.actions(), [Action::Kick(0)]);
        assert_eq!(
            pending_injection(&mut d.plat, 0, true, true),
            Injection::Vector(0x41)
        );
        assert_eq!(
            pending_injection(&mut d.plat, 0, true, true),
            Injection::Nothing
        );
        d.store32(&mut g, 0xfee0_00b0, 0, next); // LAPIC EOI
        assert!(!d.plat.lapic(0).unwrap().isr_has(0x41));
    }

    #[test]
    fn lapic_timer_periodic_wakes_a_halted_vcpu() {
        let mut d = Dom::new(1);
        let mut g = Guest::new(0, Mode::Bits32);
        d.store32(&mut g, 0xfee0_00f0, 0x1ff, 0);
        d.store32(&mut g, 0xfee0_03e0, 0xb, 0);
        d.store32(&mut g, 0xfee0_0320, 0x2_00ef, 0);
        d.store32(&mut g, 0xfee0_0380, 2_000_000, 0); // 2 ms
        for n in 1..=3u64 {
            assert_eq!(
                d.exit(&mut g, Exit::Hlt { insn_len: 1 }, 0),
                ExitOutcome::Block
            );
            d.actions();
            assert_eq!(
                d.plat.advance(n * 2 * MS, &mut d.acts),
                Some((n + 1) * 2 * MS)
            );
            assert_eq!(d.actions(), [Action::Kick(0)]);
            // HLT with the interrupt already pending does not block.
            assert_eq!(
                d.exit(&mut g, Exit::Hlt { insn_len: 1 }, 0),
                ExitOutcome::Resume
            );
            assert_eq!(
                pending_injection(&mut d.plat, 0, true, true),
                Injection::Vector(0xef)
            );
            d.store32(&mut g, 0xfee0_00b0, 0, n * 2 * MS);
        }
    }

    #[test]
    fn tsc_deadline_timer_through_wrmsr() {
        let mut d = Dom::new(1);
        let mut g = Guest::new(0, Mode::Bits64);
        d.store32(&mut g, 0xfee0_00f0, 0x1ff, 0);
        d.store32(&mut g, 0xfee0_0320, 0x4_00ee, 0); // TSC-deadline mode
        g.tsc = 5_000;
        g.regs[RCX] = 0x6e0;
        g.regs[RAX] = 5_000 + 3_000_000; // 3 ms at the default 1 GHz TSC
        g.regs[RDX] = 0;
        assert_eq!(
            d.exit(&mut g, Exit::Wrmsr { insn_len: 2 }, 0),
            ExitOutcome::Resume
        );
        assert!(g.injected.is_empty());
        assert_eq!(d.plat.advance(0, &mut d.acts), Some(3 * MS));
        d.actions();
        assert_eq!(d.plat.advance(3 * MS, &mut d.acts), None);
        assert_eq!(d.actions(), [Action::Kick(0)]);
        assert_eq!(
            pending_injection(&mut d.plat, 0, true, true),
            Injection::Vector(0xee)
        );
        g.regs[RCX] = 0x6e0;
        d.exit(&mut g, Exit::Rdmsr { insn_len: 2 }, 0);
        assert_eq!(g.regs[RAX], 0, "an expired deadline reads 0");
    }

    #[test]
    fn fixed_ipi_between_vcpus() {
        let mut d = Dom::new(2);
        let mut g0 = Guest::new(0, Mode::Bits32);
        let mut g1 = Guest::new(1, Mode::Bits32);
        d.store32(&mut g0, 0xfee0_00f0, 0x1ff, 0);
        d.store32(&mut g1, 0xfee0_00f0, 0x1ff, 0);
        d.actions();
        d.store32(&mut g0, 0xfee0_0310, 2 << 24, 0);
        d.store32(&mut g0, 0xfee0_0300, 0x40fd, 0);
        assert_eq!(d.actions(), [Action::Kick(1)]);
        assert_eq!(
            pending_injection(&mut d.plat, 0, true, true),
            Injection::Nothing
        );
        assert_eq!(
            pending_injection(&mut d.plat, 1, true, true),
            Injection::Vector(0xfd)
        );
    }

    #[test]
    fn init_sipi_from_the_bsp() {
        let mut d = Dom::new(2);
        let mut g0 = Guest::new(0, Mode::Bits32);
        d.store32(&mut g0, 0xfee0_00f0, 0x1ff, 0);
        d.store32(&mut g0, 0xfee0_0310, 2 << 24, 0);
        d.actions();
        d.store32(&mut g0, 0xfee0_0300, 0xc500, 0);
        assert_eq!(d.actions(), [Action::Init(1)]);
        d.store32(&mut g0, 0xfee0_0300, 0x8500, 0);
        d.store32(&mut g0, 0xfee0_0300, 0x0610, 0);
        d.store32(&mut g0, 0xfee0_0300, 0x0610, 0);
        assert_eq!(
            d.actions(),
            [Action::Sipi {
                vcpu: 1,
                vector: 0x10
            }]
        );
        // The same through x2APIC's ICR MSR.
        let mut d = Dom::new(2);
        let mut g0 = Guest::new(0, Mode::Bits64);
        for (msr, val, len) in [(0x1bu32, 0xfee0_0d00u64, 2u8), (0x80f, 0x1ff, 2)] {
            g0.regs[RCX] = u64::from(msr);
            g0.regs[RAX] = val & 0xffff_ffff;
            g0.regs[RDX] = val >> 32;
            assert_eq!(
                d.exit(&mut g0, Exit::Wrmsr { insn_len: len }, 0),
                ExitOutcome::Resume
            );
        }
        assert!(g0.injected.is_empty());
        g0.regs[RCX] = 0x830;
        g0.regs[RDX] = 2;
        g0.regs[RAX] = 0x4500;
        d.exit(&mut g0, Exit::Wrmsr { insn_len: 2 }, 0);
        g0.regs[RAX] = 0x0620;
        d.exit(&mut g0, Exit::Wrmsr { insn_len: 2 }, 0);
        assert_eq!(
            d.actions(),
            [
                Action::Init(1),
                Action::Sipi {
                    vcpu: 1,
                    vector: 0x20
                }
            ]
        );
        assert!(g0.injected.is_empty());
    }

    #[test]
    fn triple_fault_and_bad_exits_crash() {
        let mut d = Dom::new(1);
        let mut g = Guest::new(0, Mode::Bits64);
        assert_eq!(
            d.exit(&mut g, Exit::Shutdown, 0),
            ExitOutcome::Crash("triple fault")
        );
        assert!(matches!(
            d.exit(&mut g, Exit::Invalid, 0),
            ExitOutcome::Crash(_)
        ));
        assert!(matches!(
            d.exit(&mut g, Exit::Unknown(0x1234), 0),
            ExitOutcome::Crash(_)
        ));
        assert!(matches!(
            d.exit(
                &mut g,
                Exit::Exception {
                    vector: 18,
                    error_code: None
                },
                0
            ),
            ExitOutcome::Crash(_)
        ));
        // An intercepted #UD is reflected.
        assert_eq!(
            d.exit(
                &mut g,
                Exit::Exception {
                    vector: 6,
                    error_code: None
                },
                0
            ),
            ExitOutcome::Resume
        );
        assert_eq!(g.injected, [Fault::UD]);
        // Host events just resume.
        for e in [Exit::Intr, Exit::Nmi, Exit::InterruptWindow] {
            assert_eq!(d.exit(&mut g, e, 0), ExitOutcome::Resume);
        }
        assert_eq!(
            d.exit(&mut g, Exit::Vmcall { insn_len: 3 }, 0),
            ExitOutcome::Hypercall { insn_len: 3 }
        );
        assert_eq!(g.rip, CODE);
    }

    #[test]
    fn unknown_ports_become_ioreqs() {
        let mut d = Dom::new(1);
        let mut g = Guest::new(0, Mode::Bits64);
        let ExitOutcome::WaitIoreq(r) = d.out(&mut g, 0x3f8, 1, 0xdead_0041) else {
            panic!("not forwarded")
        };
        assert_eq!((r.addr, r.data, r.count, r.size), (0x3f8, 0x41, 1, 1));
        assert_eq!(r.dir(), IOREQ_WRITE);
        assert_eq!(r.r#type, IoreqType::Pio.raw());
        assert!(!r.data_is_ptr() && !r.df());
        assert_eq!(r.state(), 0);
        assert_eq!(g.rip, CODE, "RIP waits for the answer");
        assert!(d.hvm[0].waiting_for_ioreq());
        // The glue must not run it meanwhile.
        assert!(matches!(
            d.exit(&mut g, Exit::Intr, 0),
            ExitOutcome::Crash(_)
        ));
        assert_eq!(d.complete(&mut g, 0, 0), ExitOutcome::Resume);
        assert_eq!(g.rip, CODE + 1);
        // IN AL keeps the rest of RAX; IN EAX zero-extends.
        g.regs[RAX] = 0xffff_ffff_ffff_ffff;
        let ExitOutcome::WaitIoreq(r) = d.inp(&mut g, 0x3fd, 1) else {
            panic!()
        };
        assert_eq!((r.addr, r.size, r.dir()), (0x3fd, 1, IOREQ_READ));
        d.complete(&mut g, 0x60, 0);
        assert_eq!(g.regs[RAX], 0xffff_ffff_ffff_ff60);
        let ExitOutcome::WaitIoreq(_) = d.inp(&mut g, 0xcfc, 4) else {
            panic!()
        };
        d.complete(&mut g, 0x1234_5678_9abc_def0, 0);
        assert_eq!(g.regs[RAX], 0x9abc_def0);
        assert_eq!(g.rip, CODE + 3);
        assert!(matches!(d.complete(&mut g, 0, 0), ExitOutcome::Crash(_)));
    }

    fn outs(port: u16, rep: bool) -> Exit {
        Exit::Io(IoExit {
            string: true,
            rep,
            addr_size: 8,
            insn_len: 2,
            ..io(port, 1, IoDir::Out)
        })
    }

    #[test]
    fn rep_outsb_to_the_debug_port_and_to_a_uart() {
        let mut d = Dom::new(1);
        let mut g = Guest::new(0, Mode::Bits64);
        g.ram[0x3000..0x3006].copy_from_slice(b"hello\n");
        g.regs[RSI] = 0x3000;
        g.regs[RCX] = 6;
        assert_eq!(d.exit(&mut g, outs(0xe9, true), 0), ExitOutcome::Resume);
        let bytes: Vec<u8> = d
            .actions()
            .iter()
            .map(|a| match a {
                Action::DebugOut(b) => *b,
                a => panic!("{a:?}"),
            })
            .collect();
        assert_eq!(bytes, b"hello\n");
        assert_eq!((g.regs[RCX], g.regs[RSI], g.rip), (0, 0x3006, CODE + 2));

        // To the device model's UART: one element per ioreq; RIP stays
        // until RCX is 0.
        g.rip = CODE;
        g.regs[RSI] = 0x3000;
        g.regs[RCX] = 3;
        for (i, c) in b"hel".iter().enumerate() {
            let ExitOutcome::WaitIoreq(r) = d.exit(&mut g, outs(0x3f8, true), 0) else {
                panic!()
            };
            assert_eq!(
                (r.addr, r.data, r.count, r.size),
                (0x3f8, u64::from(*c), 1, 1)
            );
            assert_eq!(g.regs[RCX], 3 - i as u64);
            assert_eq!(d.complete(&mut g, 0, 0), ExitOutcome::Resume);
            assert_eq!(g.regs[RCX], 2 - i as u64);
            let want = if i == 2 { CODE + 2 } else { CODE };
            assert_eq!(g.rip, want);
        }
        assert_eq!(g.regs[RSI], 0x3003);
        // RCX = 0: nothing to do.
        g.rip = CODE;
        assert_eq!(d.exit(&mut g, outs(0x3f8, true), 0), ExitOutcome::Resume);
        assert_eq!(g.rip, CODE + 2);
        // Backwards with DF, 16-bit addressing wraps SI.
        g.rip = CODE;
        g.rflags |= rflags::DF;
        g.regs[RSI] = 0xffff_0000;
        g.regs[RCX] = 0xabcd_0002;
        let e = Exit::Io(IoExit {
            string: true,
            rep: true,
            addr_size: 2,
            insn_len: 2,
            ..io(0xe9, 1, IoDir::Out)
        });
        d.exit(&mut g, e, 0);
        assert_eq!(g.regs[RSI], 0xffff_fffe);
        assert_eq!(g.regs[RCX], 0xabcd_0000);
        assert_eq!(g.rip, CODE + 2);
    }

    #[test]
    fn rep_insb_from_the_device_model_and_a_fault() {
        let mut d = Dom::new(1);
        let mut g = Guest::new(0, Mode::Bits64);
        g.regs[RDI] = 0x4000;
        g.regs[RCX] = 2;
        let ins = Exit::Io(IoExit {
            string: true,
            rep: true,
            addr_size: 8,
            insn_len: 2,
            ..io(0x60, 1, IoDir::In)
        });
        for v in [0xaau64, 0xbb] {
            let ExitOutcome::WaitIoreq(r) = d.exit(&mut g, ins, 0) else {
                panic!()
            };
            assert_eq!(r.dir(), IOREQ_READ);
            d.complete(&mut g, v, 0);
        }
        assert_eq!(&g.ram[0x4000..0x4002], &[0xaa, 0xbb]);
        assert_eq!((g.regs[RCX], g.regs[RDI], g.rip), (0, 0x4002, CODE + 2));
        // INS into an unmapped page: #PF before the device is asked.
        g.rip = CODE;
        g.regs[RDI] = HOLE;
        g.regs[RCX] = 1;
        assert_eq!(d.exit(&mut g, ins, 0), ExitOutcome::Resume);
        assert_eq!(g.injected, [Fault::page_fault(HOLE, 2)]);
        assert_eq!(g.rip, CODE);
        // A local port: the PIC's IMR, twice.
        g.injected.clear();
        g.regs[RDI] = 0x5000;
        g.regs[RCX] = 2;
        let ins21 = Exit::Io(IoExit {
            string: true,
            rep: true,
            addr_size: 8,
            insn_len: 2,
            ..io(0x21, 1, IoDir::In)
        });
        assert_eq!(d.exit(&mut g, ins21, 0), ExitOutcome::Resume);
        assert_eq!(&g.ram[0x5000..0x5002], &[0, 0]);
        assert_eq!((g.regs[RCX], g.rip), (0, CODE + 2));
    }

    #[test]
    fn mmio_reads_and_writes_through_the_device_model() {
        let mut d = Dom::new(1);
        let mut g = Guest::new(0, Mode::Bits64);
        // mov eax, [rbx]
        g.code(&[0x8b, 0x03]);
        g.regs[RBX] = DM_MMIO + 0x10;
        let ExitOutcome::WaitIoreq(r) = d.exit(&mut g, npf(DM_MMIO + 0x10, false), 0) else {
            panic!()
        };
        assert_eq!((r.addr, r.size, r.count), (DM_MMIO + 0x10, 4, 1));
        assert_eq!((r.dir(), r.r#type), (IOREQ_READ, IoreqType::Copy.raw()));
        assert_eq!(g.rip, CODE);
        assert_eq!(d.complete(&mut g, 0x1234_5678, 0), ExitOutcome::Resume);
        assert_eq!((g.regs[RAX], g.rip), (0x1234_5678, CODE + 2));

        // A store of an immediate: mov dword [rbx], 0xcafe
        g.code(&[0xc7, 0x03, 0xfe, 0xca, 0, 0]);
        let ExitOutcome::WaitIoreq(r) = d.exit(&mut g, npf(DM_MMIO + 0x10, true), 0) else {
            panic!()
        };
        assert_eq!((r.dir(), r.data, r.size), (IOREQ_WRITE, 0xcafe, 4));
        assert_eq!(d.complete(&mut g, 0, 0), ExitOutcome::Resume);
        assert_eq!(g.rip, CODE + 2 + 6);

        // movsb from the device model to the LAPIC's TPR: one ioreq, then
        // the local write.
        d.store32(&mut g, 0xfee0_00f0, 0x1ff, 0);
        g.code(&[0xa4]);
        g.regs[RSI] = DM_MMIO;
        g.regs[RDI] = 0xfee0_0080;
        let rip = g.rip;
        let ExitOutcome::WaitIoreq(r) = d.exit(&mut g, npf(DM_MMIO, false), 0) else {
            panic!()
        };
        assert_eq!((r.addr, r.size, r.dir()), (DM_MMIO, 1, IOREQ_READ));
        assert_eq!(d.complete(&mut g, 0x70, 0), ExitOutcome::Resume);
        assert_eq!(d.plat.lapic(0).unwrap().tpr(), 0x70);
        assert_eq!(
            (g.regs[RSI], g.regs[RDI], g.rip),
            (DM_MMIO + 1, 0xfee0_0081, rip + 1)
        );

        // And back: the LAPIC read is done once and replayed.
        g.code(&[0xa4]);
        g.regs[RSI] = 0xfee0_0080;
        g.regs[RDI] = DM_MMIO + 8;
        let ExitOutcome::WaitIoreq(r) = d.exit(&mut g, npf(DM_MMIO + 8, true), 0) else {
            panic!()
        };
        assert_eq!((r.addr, r.data, r.dir()), (DM_MMIO + 8, 0x70, IOREQ_WRITE));
        assert_eq!(d.complete(&mut g, 0, 0), ExitOutcome::Resume);
        assert_eq!(g.rip, rip + 2);

        // A replay that does something else crashes the domain.
        g.code(&[0x8b, 0x03]);
        g.regs[RBX] = DM_MMIO;
        let ExitOutcome::WaitIoreq(_) = d.exit(&mut g, npf(DM_MMIO, false), 0) else {
            panic!()
        };
        g.code(&[0x8b, 0x03]);
        d.hvm[0].log[0] = None;
        d.hvm[0].log_len = 1;
        assert!(matches!(d.complete(&mut g, 0, 0), ExitOutcome::Crash(_)));
    }

    #[test]
    fn npf_outside_mmio_or_on_fetch_crashes_and_bad_bytes_fault() {
        let mut d = Dom::new(1);
        let mut g = Guest::new(0, Mode::Bits64);
        assert!(matches!(
            d.exit(&mut g, npf(0x1000, true), 0),
            ExitOutcome::Crash(_)
        ));
        let fetch = Exit::Npf {
            gpa: DM_MMIO,
            write: false,
            fetch: true,
        };
        assert!(matches!(d.exit(&mut g, fetch, 0), ExitOutcome::Crash(_)));
        // An instruction the emulator does not do: #UD.
        g.code(&[0x0f, 0x0b]);
        assert_eq!(d.exit(&mut g, npf(DM_MMIO, false), 0), ExitOutcome::Resume);
        assert_eq!(g.injected, [Fault::UD]);
        // RIP in an unmapped page: the fetch's #PF.
        g.injected.clear();
        g.rip = HOLE + 4;
        assert_eq!(d.exit(&mut g, npf(DM_MMIO, false), 0), ExitOutcome::Resume);
        assert_eq!(g.injected[0].vector, emulate::vector::PF);
        // An instruction cut by an unmapped page: #PF at the page.
        g.injected.clear();
        g.rip = HOLE - 1;
        g.code(&[0x8b]);
        assert_eq!(d.exit(&mut g, npf(DM_MMIO, false), 0), ExitOutcome::Resume);
        assert_eq!(g.injected, [Fault::page_fault(HOLE, 0)]);
        assert_eq!(g.rip, HOLE - 1);
    }

    #[test]
    fn msrs_cpuid_and_refusals() {
        let mut d = Dom::new(1);
        let mut g = Guest::new(0, Mode::Bits64);
        // A refused MSR: #GP, RIP stays.
        g.regs[RCX] = 0x1234;
        assert_eq!(
            d.exit(&mut g, Exit::Rdmsr { insn_len: 2 }, 0),
            ExitOutcome::Resume
        );
        assert_eq!(g.injected, [Fault::GP0]);
        assert_eq!(g.rip, CODE);
        g.injected.clear();
        // x2APIC MSRs while in xAPIC mode: #GP.
        g.regs[RCX] = 0x802;
        d.exit(&mut g, Exit::Rdmsr { insn_len: 2 }, 0);
        g.regs[RCX] = 0x830;
        d.exit(&mut g, Exit::Wrmsr { insn_len: 2 }, 0);
        assert_eq!(g.injected, [Fault::GP0, Fault::GP0]);
        g.injected.clear();
        // APIC base: EDX:EAX.
        g.regs[RCX] = 0x1b;
        d.exit(&mut g, Exit::Rdmsr { insn_len: 2 }, 0);
        assert_eq!(
            (g.regs[RAX], g.regs[RDX], g.rip),
            (0xfee0_0900, 0, CODE + 2)
        );
        // TSC, MTRR default type, a VMCB register, the hypercall page.
        g.regs[RCX] = 0x10;
        g.regs[RAX] = 5;
        g.regs[RDX] = 1;
        d.exit(&mut g, Exit::Wrmsr { insn_len: 2 }, 0);
        assert_eq!(g.tsc, (1 << 32) | 5);
        g.regs[RCX] = 0x2ff;
        d.exit(&mut g, Exit::Rdmsr { insn_len: 2 }, 0);
        assert_eq!(g.regs[RAX], 0x806);
        g.regs[RCX] = 0x174;
        g.regs[RAX] = 0x10;
        g.regs[RDX] = 0;
        d.exit(&mut g, Exit::Wrmsr { insn_len: 2 }, 0);
        assert_eq!(g.guest_reg(GuestReg::SysenterCs), 0x10);
        g.regs[RCX] = 0x4000_0000;
        g.regs[RAX] = 0x5000;
        d.exit(&mut g, Exit::Wrmsr { insn_len: 2 }, 0);
        assert_eq!(g.hypercall_gfn, Some(5));
        g.regs[RAX] = 0xf000_0000;
        d.exit(&mut g, Exit::Wrmsr { insn_len: 2 }, 0);
        assert_eq!(g.injected, [Fault::GP0]);
        // CPUID: Xen's signature.
        g.regs[RAX] = 0x4000_0000;
        g.regs[RCX] = 0;
        let rip = g.rip;
        d.exit(&mut g, Exit::Cpuid { insn_len: 2 }, 0);
        assert_eq!(
            g.regs[RBX] as u32,
            hypercall_abi::arch_x86::XEN_CPUID_SIGNATURE_EBX
        );
        assert_eq!(g.rip, rip + 2);
    }

    #[test]
    fn without_a_device_model_forwarded_accesses_read_all_ones() {
        let mut d = Dom::new(1);
        let mut g = Guest::new(0, Mode::Bits64);
        let answer = |d: &mut Dom, g: &mut Guest, mut out: ExitOutcome| {
            while let ExitOutcome::WaitIoreq(_) = out {
                out = d.complete(g, u64::MAX, 0);
            }
            out
        };
        g.regs[RAX] = 0;
        let out = d.inp(&mut g, 0x3f8, 2);
        assert_eq!(answer(&mut d, &mut g, out), ExitOutcome::Resume);
        assert_eq!((g.regs[RAX], g.rip), (0xffff, CODE + 1));
        // rep outsb of 3 bytes: three exits, each answered at once.
        g.regs[RSI] = 0x3000;
        g.regs[RCX] = 3;
        let start = g.rip;
        for _ in 0..3 {
            let out = d.exit(&mut g, outs(0x3f8, true), 0);
            assert_eq!(answer(&mut d, &mut g, out), ExitOutcome::Resume);
        }
        assert_eq!((g.regs[RCX], g.rip), (0, start + 2));
        // mov eax, [rbx] from nobody's MMIO.
        g.code(&[0x8b, 0x03]);
        g.regs[RBX] = DM_MMIO;
        let out = d.exit(&mut g, npf(DM_MMIO, false), 0);
        assert_eq!(answer(&mut d, &mut g, out), ExitOutcome::Resume);
        assert_eq!(g.regs[RAX], 0xffff_ffff);
    }

    #[test]
    fn s5_powers_off_and_debug_port_prints() {
        let mut d = Dom::new(1);
        let mut g = Guest::new(0, Mode::Bits32);
        assert_eq!(d.out(&mut g, 0xe9, 1, u64::from(b'!')), ExitOutcome::Resume);
        assert_eq!(d.actions(), [Action::DebugOut(b'!')]);
        assert_eq!(d.out(&mut g, 0xb004, 2, 0x2000), ExitOutcome::PowerOff);
        assert_eq!(d.actions(), [Action::PowerOff]);
        assert_eq!(d.out(&mut g, 0xcf9, 1, 0x06), ExitOutcome::Reset);
    }

    #[test]
    fn hlt_blocks_resumes_or_goes_down() {
        let mut d = Dom::new(2);
        let mut g1 = Guest::new(1, Mode::Bits64);
        d.plat
            .msr_write(0, 0x1b, 0xfee0_0900, 0, 0, &mut d.acts)
            .unwrap();
        assert_eq!(
            d.exit(&mut g1, Exit::Hlt { insn_len: 1 }, 0),
            ExitOutcome::Block
        );
        assert_eq!(g1.rip, CODE + 1);
        g1.rflags &= !RFLAGS_IF;
        assert_eq!(
            d.exit(&mut g1, Exit::Hlt { insn_len: 1 }, 0),
            ExitOutcome::Down
        );
        // The BSP going down too powers the domain off.
        let mut g0 = Guest::new(0, Mode::Bits64);
        g0.rflags &= !RFLAGS_IF;
        assert_eq!(
            d.exit(&mut g0, Exit::Hlt { insn_len: 1 }, 0),
            ExitOutcome::PowerOff
        );
    }

    #[test]
    fn state_sizes() {
        // What the glue embeds per domain and per vCPU, and puts on its
        // stack per exit.
        assert!(core::mem::size_of::<Platform>() <= 8192);
        assert!(core::mem::size_of::<HvmVcpu>() <= 1024);
        assert!(core::mem::size_of::<Actions>() <= 1100);
        std::println!(
            "Platform {} HvmVcpu {} Actions {}",
            core::mem::size_of::<Platform>(),
            core::mem::size_of::<HvmVcpu>(),
            core::mem::size_of::<Actions>()
        );
    }

    /// A tiny xorshift for the fuzz tests.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn hostile_exits_never_panic() {
        let mut d = Dom::new(2);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for &id in &[0usize, 1, 2, 16, usize::MAX] {
            for mode in [Mode::Bits16, Mode::Bits32, Mode::Bits64] {
                let mut g = Guest::new(id, mode);
                for i in 0..3000u32 {
                    for r in g.regs.iter_mut() {
                        *r = rng(&mut seed);
                        if *r & 1 == 0 {
                            *r &= 0x1_ffff;
                        }
                    }
                    g.rflags = rng(&mut seed) & 0xfd7;
                    g.rip = rng(&mut seed) & 0x1_ffff;
                    let b: [u8; 8] = rng(&mut seed).to_le_bytes();
                    let at = (g.rip as usize).min(RAM - 16);
                    g.ram[at..at + 8].copy_from_slice(&b);
                    let x = rng(&mut seed);
                    let e = match i % 9 {
                        0 => Exit::Io(IoExit {
                            port: x as u16,
                            size: (x >> 16) as u8 % 9,
                            dir: if x & (1 << 24) != 0 {
                                IoDir::In
                            } else {
                                IoDir::Out
                            },
                            string: x & (1 << 25) != 0,
                            rep: x & (1 << 26) != 0,
                            addr_size: (x >> 27) as u8 % 10,
                            seg: Segment::Fs,
                            insn_len: (x >> 40) as u8,
                        }),
                        1 => npf(x, x & 1 != 0),
                        2 => npf(0xfee0_0000 | (x & 0xfff), x & 1 != 0),
                        3 => npf(0xfec0_0000 | (x & 0xfff), x & 1 != 0),
                        4 => Exit::Rdmsr { insn_len: x as u8 },
                        5 => Exit::Wrmsr { insn_len: x as u8 },
                        6 => Exit::Exception {
                            vector: x as u8,
                            error_code: Some(x as u32),
                        },
                        7 => Exit::Cpuid { insn_len: 2 },
                        _ => Exit::Hlt { insn_len: x as u8 },
                    };
                    let slot = id.min(1);
                    let pol = Policies {
                        cpuid: &d.cpuid,
                        msr: &d.msr,
                    };
                    let mut out = handle(
                        e,
                        &mut g,
                        &mut d.hvm[slot],
                        &mut d.plat,
                        &pol,
                        0,
                        &mut d.acts,
                    );
                    // Answer whatever was asked, with garbage.
                    while let ExitOutcome::WaitIoreq(_) = out {
                        out = complete_ioreq(
                            rng(&mut seed),
                            &mut g,
                            &mut d.hvm[slot],
                            &mut d.plat,
                            0,
                            &mut d.acts,
                        );
                    }
                    d.acts.clear();
                    let _ = pending_injection(&mut d.plat, id, x & 1 != 0, x & 2 != 0);
                }
            }
        }
    }
}
