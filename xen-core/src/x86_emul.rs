//! Decoding and emulating the privileged instructions a 64-bit PV guest
//! faults on.
//!
//! A PV guest kernel runs in ring 3, so `mov %cr3`, `rdmsr`, `in`/`out`,
//! `cpuid` (under CPUID faulting), `int $N` through a DPL-0 gate and friends
//! trap to the hypervisor with #GP, and the forced-emulation prefix
//! `ud2; .ascii "xen"; cpuid` with #UD. The glue copies up to 15 bytes from
//! the faulting RIP and hands them here:
//!
//! - [`decode`] turns bytes into a [`Decoded`] instruction (legacy
//!   prefixes, REX, ModRM/SIB/displacement lengths), or says the bytes are
//!   [`DecodeError::Truncated`] (the fetch stopped early, e.g. at an
//!   unmapped page), [`DecodeError::Invalid`] (the CPU would #UD/#GP:
//!   longer than 15 bytes, a stray LOCK) or [`DecodeError::Unsupported`]
//!   (not an instruction Xen emulates for PV).
//! - [`handle_gp`] / [`handle_ud`] / [`emulate`] compute the effect of the
//!   instruction through a [`PrivEnv`] the glue implements: a new
//!   [`RegFile`] with RIP past the instruction, a software interrupt to
//!   deliver, a fault to bounce to the guest, or "retry later".
//!
//! **Owns**: instruction decoding, and the pure policy of Xen's PV
//! privileged-op emulation: which instructions are emulated at all, the
//! ring/IOPL/I/O-bitmap checks, the virtual CR0/CR4 rules, the PV MSR
//! policy (which MSRs read/write what, which #GP), port splitting for
//! virtualised ports, `int $N` permission, the forced-emulation rules.
//!
//! **Trusts**: the [`PrivEnv`] (the vCPU's state and the hardware). It does
//! not trust the bytes, the registers or anything derived from them: every
//! guest value is checked and no input can panic (indexes are masked to
//! 0..16, arithmetic wraps or saturates, slices are bounds-checked).
//!
//! **Follows** Xen 4.17: `xen/arch/x86/pv/emul-priv-op.c` (`validate`,
//! `read_cr`/`write_cr`, `read_msr`/`write_msr`, `guest_io_okay`,
//! `admin_io_okay`, `guest_io_read`/`guest_io_write`, `iopl_ok`,
//! `check_guest_io_breakpoint`), `xen/arch/x86/pv/emul-inv-op.c` (forced
//! emulation: only `cpuid`, only exactly `0f 0b 78 65 6e 0f a2`),
//! `xen/arch/x86/traps.c` (`do_general_protection`: `int $N` through a DPL
//! check, `permit_softint`), `xen/arch/x86/msr.c` (`guest_rdmsr`,
//! `guest_wrmsr`, `guest_{rd,wr}msr_xen`), `xen/arch/x86/pv/domain.c`
//! (`pv_fixup_guest_cr4`), `xen/arch/x86/x86_emulate/*` (ring-0 checks of
//! CLTS, MOV CR/DR, RDMSR/WRMSR, WBINVD, XSETBV, RDTSC(P), CPUID faulting).
//!
//! What Xen 4.17 does *not* emulate for PV, and so neither does this
//! module (the original fault is bounced to the guest): `hlt` (a PV kernel
//! blocks with `SCHEDOP_block`; `hlt` gets #GP), `invd`, `rdpmc`, `lmsw`,
//! `smsw`, `invlpg`, `int3`/`into`/`int1` (those arrive as #BP/#UD/#DB, not
//! #GP), and `cli`/`sti` are not virtualised: with sufficient virtual IOPL
//! they are skipped as no-ops (Xen's "fast & loose" comment: the event mask
//! is *not* changed), otherwise #GP. These all decode, so the glue can log
//! them.
//!
//! Deliberate differences (marked `DEVIATION`): `ins`/`outs` decode but are
//! not emulated (Xen emulates them; the original #GP is bounced); `int $N`
//! takes N and the instruction length from the decoded bytes rather than
//! from the #GP error code and a fixed length of 2 (QEMU 7.2 TCG pushes a
//! wrong error code; Xen after 4.17 also stopped assuming 2 bytes); the
//! CMOS-alias ports of the hardware domain are not modelled (only
//! 0x70/0x71 are treated as CMOS); cpufreq-controller Dom0 MSR passthrough
//! and vPMU are not modelled (vPMU MSRs read 0 and ignore writes, as Xen
//! with vPMU off).
//!
//! Written by hand: no `no_std` crate decodes x86 without allocation while
//! also covering just this set (iced-x86 is large and pulls in tables we
//! do not need in ring 0).

use crate::cpuid_policy::{feat, valid_xcr0, CpuidSource, Leaf, Vendor};

/// The architectural instruction length limit.
pub const MAX_INSN_LEN: usize = 15;

/// Xen's forced-emulation signature: `ud2; .ascii "xen"`.
pub const FORCED_EMUL_SIG: [u8; 5] = [0x0f, 0x0b, b'x', b'e', b'n'];

/// Exception vectors used here.
pub mod vector {
    /// #DB.
    pub const DB: u8 = 1;
    /// #UD.
    pub const UD: u8 = 6;
    /// #GP.
    pub const GP: u8 = 13;
    /// #PF.
    pub const PF: u8 = 14;
}

/// General-purpose register numbers, in x86 encoding order.
pub mod gpr {
    /// rax.
    pub const RAX: usize = 0;
    /// rcx.
    pub const RCX: usize = 1;
    /// rdx.
    pub const RDX: usize = 2;
    /// rbx.
    pub const RBX: usize = 3;
    /// rsp.
    pub const RSP: usize = 4;
    /// rbp.
    pub const RBP: usize = 5;
    /// rsi.
    pub const RSI: usize = 6;
    /// rdi.
    pub const RDI: usize = 7;
    /// r8 (r9..r15 follow).
    pub const R8: usize = 8;
    /// r15.
    pub const R15: usize = 15;
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

/// A segment-override prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    /// `26`.
    Es,
    /// `2e`.
    Cs,
    /// `36`.
    Ss,
    /// `3e`.
    Ds,
    /// `64`.
    Fs,
    /// `65`.
    Gs,
}

/// A repeat prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rep {
    /// `f3` (REP/REPE).
    Rep,
    /// `f2` (REPNE).
    Repne,
}

/// The prefixes an instruction carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prefixes {
    /// `66` operand-size override.
    pub opsize: bool,
    /// `67` address-size override.
    pub addrsize: bool,
    /// `f0` LOCK.
    pub lock: bool,
    /// The last of `f2`/`f3`.
    pub rep: Option<Rep>,
    /// The last segment override.
    pub segment: Option<Segment>,
    /// The REX byte (`0x40..=0x4f`) directly before the opcode, or 0.
    pub rex: u8,
}

impl Prefixes {
    /// Records `b` if it is a legacy prefix (operand/address size, LOCK,
    /// REP/REPNE, a segment override); false for any other byte.
    pub fn take_legacy(&mut self, b: u8) -> bool {
        match b {
            0x66 => self.opsize = true,
            0x67 => self.addrsize = true,
            0xf0 => self.lock = true,
            0xf2 => self.rep = Some(Rep::Repne),
            0xf3 => self.rep = Some(Rep::Rep),
            0x26 => self.segment = Some(Segment::Es),
            0x2e => self.segment = Some(Segment::Cs),
            0x36 => self.segment = Some(Segment::Ss),
            0x3e => self.segment = Some(Segment::Ds),
            0x64 => self.segment = Some(Segment::Fs),
            0x65 => self.segment = Some(Segment::Gs),
            _ => return false,
        }
        true
    }
    /// REX.W.
    pub fn rex_w(&self) -> bool {
        self.rex & 8 != 0
    }
    /// REX.R (extends ModRM.reg).
    pub fn rex_r(&self) -> u8 {
        (self.rex >> 2) & 1
    }
    /// REX.X (extends SIB.index).
    pub fn rex_x(&self) -> u8 {
        (self.rex >> 1) & 1
    }
    /// REX.B (extends ModRM.rm / SIB.base).
    pub fn rex_b(&self) -> u8 {
        self.rex & 1
    }
}

/// Where an `in`/`out` takes its port from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// An 8-bit immediate.
    Imm(u8),
    /// DX.
    Dx,
}

/// Direction of port I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoDir {
    /// Port to register/memory.
    In,
    /// Register/memory to port.
    Out,
}

/// A decoded memory operand (64-bit mode addressing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRef {
    /// Base register (0..16), if any.
    pub base: Option<u8>,
    /// Index register (0..16), if any.
    pub index: Option<u8>,
    /// Scale of the index (1, 2, 4, 8).
    pub scale: u8,
    /// Sign-extended displacement.
    pub disp: i32,
    /// RIP-relative (`mod=00 rm=101`): the address is next-RIP + disp.
    pub rip_relative: bool,
    /// 32-bit addressing (`67` prefix).
    pub addr32: bool,
    /// Segment override, if any (only FS/GS matter in 64-bit mode).
    pub segment: Option<Segment>,
}

/// A ModRM r/m operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RmOperand {
    /// A general-purpose register (0..16).
    Reg(u8),
    /// Memory.
    Mem(MemRef),
}

/// The instructions this decoder knows. Register numbers are 0 = rax ..
/// 15 = r15; CR/DR numbers include REX.R.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrivOp {
    /// `0f 20 /r`: `mov gpr, crN`.
    MovFromCr {
        /// Control register.
        cr: u8,
        /// Destination GPR.
        gpr: u8,
    },
    /// `0f 22 /r`: `mov crN, gpr`.
    MovToCr {
        /// Control register.
        cr: u8,
        /// Source GPR.
        gpr: u8,
    },
    /// `0f 21 /r`: `mov gpr, drN`.
    MovFromDr {
        /// Debug register (0..8).
        dr: u8,
        /// Destination GPR.
        gpr: u8,
    },
    /// `0f 23 /r`: `mov drN, gpr`.
    MovToDr {
        /// Debug register (0..8).
        dr: u8,
        /// Source GPR.
        gpr: u8,
    },
    /// `0f 06`.
    Clts,
    /// `0f 08`.
    Invd,
    /// `0f 09`.
    Wbinvd,
    /// `0f 30`.
    Wrmsr,
    /// `0f 31`.
    Rdtsc,
    /// `0f 32`.
    Rdmsr,
    /// `0f 33`.
    Rdpmc,
    /// `0f a2`.
    Cpuid,
    /// `0f 01 d1`.
    Xsetbv,
    /// `0f 01 f9`.
    Rdtscp,
    /// `f4`.
    Hlt,
    /// `fa`.
    Cli,
    /// `fb`.
    Sti,
    /// `e4 e5 ec ed`: `in` (size in [`Decoded::operand_size`]).
    In {
        /// Port source.
        port: Port,
    },
    /// `e6 e7 ee ef`: `out` (size in [`Decoded::operand_size`]).
    Out {
        /// Port source.
        port: Port,
    },
    /// `6c 6d 6e 6f`: `ins`/`outs` (string I/O; port in DX).
    StringIo {
        /// `ins` or `outs`.
        dir: IoDir,
        /// With a `rep` (`f3` or `f2`) prefix.
        rep: bool,
        /// Source segment of `outs` (DS unless overridden); ES for `ins`.
        segment: Segment,
    },
    /// `cd ib`: `int $vector`.
    Int {
        /// The immediate.
        vector: u8,
    },
    /// `cc`.
    Int3,
    /// `ce` (invalid in 64-bit mode: #UD).
    Into,
    /// `f1` (ICEBP).
    Int1,
    /// `0f 01 /6`.
    Lmsw {
        /// Source.
        src: RmOperand,
    },
    /// `0f 01 /4`.
    Smsw {
        /// Destination.
        dst: RmOperand,
    },
    /// `0f 01 /7` (memory form).
    Invlpg {
        /// The address operand.
        mem: MemRef,
    },
}

/// A decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// What it is.
    pub op: PrivOp,
    /// Total length in bytes, prefixes and forced-emulation signature
    /// included: RIP advances by this much.
    pub len: usize,
    /// Preceded by Xen's forced-emulation signature.
    pub forced: bool,
    /// Effective operand size in bytes (1, 2, 4, 8): the I/O width for
    /// `in`/`out`/string I/O, 8 for MOV CR/DR.
    pub operand_size: u8,
    /// Effective address size in bytes (8, or 4 with `67`).
    pub address_size: u8,
    /// The prefixes seen (of the instruction proper when `forced`).
    pub prefixes: Prefixes,
}

/// Why bytes did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not an instruction Xen emulates for PV guests: bounce the fault.
    Unsupported,
    /// The bytes end before the instruction does (and before 15 bytes):
    /// fetch more (the next page) and decode again.
    Truncated,
    /// The CPU would reject it (#UD/#GP): longer than 15 bytes, LOCK where
    /// not allowed, a nonexistent debug register.
    Invalid,
}

/// A bounds-checked cursor over the instruction bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn next(&mut self) -> Result<u8, DecodeError> {
        if self.pos >= MAX_INSN_LEN {
            return Err(DecodeError::Invalid);
        }
        let b = *self.bytes.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn imm32(&mut self) -> Result<i32, DecodeError> {
        let mut v = [0u8; 4];
        for b in &mut v {
            *b = self.next()?;
        }
        Ok(i32::from_le_bytes(v))
    }
}

/// Decodes the instruction at the start of `bytes` (64-bit mode).
///
/// `bytes` may be shorter than an instruction when the fetch stopped at a
/// page boundary: the answer is then [`DecodeError::Truncated`], never a
/// guess. Bytes past the instruction are ignored.
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    if bytes.len() >= FORCED_EMUL_SIG.len() && bytes[..FORCED_EMUL_SIG.len()] == FORCED_EMUL_SIG {
        // The signature counts towards the 15 bytes: what is left of them
        // once it is read bounds the instruction after it.
        let rest = &bytes[FORCED_EMUL_SIG.len()..];
        let room = MAX_INSN_LEN - FORCED_EMUL_SIG.len();
        let mut d = match decode_one(&rest[..rest.len().min(room)]) {
            Err(DecodeError::Truncated) if rest.len() >= room => return Err(DecodeError::Invalid),
            r => r?,
        };
        d.len += FORCED_EMUL_SIG.len();
        d.forced = true;
        return Ok(d);
    }
    if bytes.len() >= 2 && bytes.len() < FORCED_EMUL_SIG.len() && FORCED_EMUL_SIG.starts_with(bytes)
    {
        // `ud2` followed by the start of "xen": can't tell yet.
        return Err(DecodeError::Truncated);
    }
    decode_one(bytes)
}

fn decode_one(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut c = Cursor { bytes, pos: 0 };
    let mut p = Prefixes::default();
    let mut b;
    loop {
        b = c.next()?;
        if p.take_legacy(b) {
            // A REX followed by a legacy prefix is ignored.
            p.rex = 0;
        } else if (0x40..=0x4f).contains(&b) {
            p.rex = b;
        } else {
            break;
        }
    }

    let default_size = if p.rex_w() {
        8
    } else if p.opsize {
        2
    } else {
        4
    };
    let io_size = |byte_form: bool| {
        if byte_form {
            1
        } else if p.opsize {
            2
        } else {
            4
        }
    };
    let mut size = default_size;
    let mut lock_ok = false;

    let op = match b {
        0x0f => {
            let b2 = c.next()?;
            match b2 {
                0x06 => PrivOp::Clts,
                0x08 => PrivOp::Invd,
                0x09 => PrivOp::Wbinvd,
                0x20..=0x23 => {
                    // The mod field is ignored: always the register form.
                    let m = c.next()?;
                    let reg = ((m >> 3) & 7) | (p.rex_r() << 3);
                    let rm = (m & 7) | (p.rex_b() << 3);
                    size = 8;
                    match b2 {
                        0x20 | 0x22 => {
                            // AMD's alternative CR8 encoding: `lock mov cr0`.
                            lock_ok = true;
                            let cr = if p.lock { reg | 8 } else { reg };
                            if b2 == 0x20 {
                                PrivOp::MovFromCr { cr, gpr: rm }
                            } else {
                                PrivOp::MovToCr { cr, gpr: rm }
                            }
                        }
                        _ => {
                            if reg >= 8 {
                                return Err(DecodeError::Invalid); // DR8..15: #UD
                            }
                            if b2 == 0x21 {
                                PrivOp::MovFromDr { dr: reg, gpr: rm }
                            } else {
                                PrivOp::MovToDr { dr: reg, gpr: rm }
                            }
                        }
                    }
                }
                0x30 => PrivOp::Wrmsr,
                0x31 => PrivOp::Rdtsc,
                0x32 => PrivOp::Rdmsr,
                0x33 => PrivOp::Rdpmc,
                0xa2 => PrivOp::Cpuid,
                0x01 => {
                    let m = c.next()?;
                    let md = m >> 6;
                    let reg = (m >> 3) & 7;
                    let rm = m & 7;
                    if md == 3 {
                        let r = rm | (p.rex_b() << 3);
                        match (reg, rm) {
                            (2, 1) => PrivOp::Xsetbv,
                            (7, 1) => PrivOp::Rdtscp,
                            (4, _) => PrivOp::Smsw {
                                dst: RmOperand::Reg(r),
                            },
                            (6, _) => {
                                size = 2;
                                PrivOp::Lmsw {
                                    src: RmOperand::Reg(r),
                                }
                            }
                            _ => return Err(DecodeError::Unsupported),
                        }
                    } else {
                        if !matches!(reg, 4 | 6 | 7) {
                            return Err(DecodeError::Unsupported);
                        }
                        let mem = decode_mem(&mut c, &p, m)?;
                        match reg {
                            4 => {
                                size = 2;
                                PrivOp::Smsw {
                                    dst: RmOperand::Mem(mem),
                                }
                            }
                            6 => {
                                size = 2;
                                PrivOp::Lmsw {
                                    src: RmOperand::Mem(mem),
                                }
                            }
                            _ => PrivOp::Invlpg { mem },
                        }
                    }
                }
                _ => return Err(DecodeError::Unsupported),
            }
        }
        0xf4 => PrivOp::Hlt,
        0xfa => PrivOp::Cli,
        0xfb => PrivOp::Sti,
        0xcc => PrivOp::Int3,
        0xcd => PrivOp::Int { vector: c.next()? },
        0xce => PrivOp::Into,
        0xf1 => PrivOp::Int1,
        0xe4..=0xe7 => {
            size = io_size(b & 1 == 0);
            let port = Port::Imm(c.next()?);
            if b & 2 == 0 {
                PrivOp::In { port }
            } else {
                PrivOp::Out { port }
            }
        }
        0xec..=0xef => {
            size = io_size(b & 1 == 0);
            if b & 2 == 0 {
                PrivOp::In { port: Port::Dx }
            } else {
                PrivOp::Out { port: Port::Dx }
            }
        }
        0x6c..=0x6f => {
            size = io_size(b & 1 == 0);
            let dir = if b & 2 == 0 { IoDir::In } else { IoDir::Out };
            // INS always writes ES:rDI; OUTS reads DS:rSI, overridable.
            let segment = match dir {
                IoDir::In => Segment::Es,
                IoDir::Out => p.segment.unwrap_or(Segment::Ds),
            };
            PrivOp::StringIo {
                dir,
                rep: p.rep.is_some(),
                segment,
            }
        }
        _ => return Err(DecodeError::Unsupported),
    };
    if p.lock && !lock_ok {
        return Err(DecodeError::Invalid); // LOCK on these: #UD
    }
    Ok(Decoded {
        op,
        len: c.pos,
        forced: false,
        operand_size: size,
        address_size: if p.addrsize { 4 } else { 8 },
        prefixes: p,
    })
}

/// Decodes the memory form of a ModRM byte `m` (already consumed), its SIB
/// and displacement.
fn decode_mem(c: &mut Cursor<'_>, p: &Prefixes, m: u8) -> Result<MemRef, DecodeError> {
    let md = m >> 6;
    let rm = m & 7;
    let mut mem = MemRef {
        base: None,
        index: None,
        scale: 1,
        disp: 0,
        rip_relative: false,
        addr32: p.addrsize,
        segment: p.segment,
    };
    if rm == 4 {
        let sib = c.next()?;
        let idx = ((sib >> 3) & 7) | (p.rex_x() << 3);
        mem.scale = 1 << (sib >> 6);
        mem.index = (idx != 4).then_some(idx);
        if sib & 7 == 5 && md == 0 {
            mem.disp = c.imm32()?;
        } else {
            mem.base = Some((sib & 7) | (p.rex_b() << 3));
        }
    } else if rm == 5 && md == 0 {
        mem.rip_relative = true;
        mem.disp = c.imm32()?;
    } else {
        mem.base = Some(rm | (p.rex_b() << 3));
    }
    match md {
        1 => mem.disp = i32::from(c.next()? as i8),
        2 => mem.disp = c.imm32()?,
        _ => {}
    }
    Ok(mem)
}

// ---------------------------------------------------------------------------
// Emulation
// ---------------------------------------------------------------------------

/// The guest registers the emulator reads and writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegFile {
    /// rax..r15 in x86 order (see [`gpr`]).
    pub gpr: [u64; 16],
    /// The faulting RIP (the instruction's first byte).
    pub rip: u64,
    /// RFLAGS as the guest sees it (TF is honoured for single-step).
    pub rflags: u64,
}

/// How the instruction reached the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trap {
    /// #GP with its hardware error code.
    Gp {
        /// The error code the CPU pushed.
        error_code: u32,
    },
    /// #UD.
    Ud,
}

impl Trap {
    fn vector(self) -> u8 {
        match self {
            Trap::Gp { .. } => vector::GP,
            Trap::Ud => vector::UD,
        }
    }
}

/// What the glue must do after emulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The instruction completed: load `regs` (RIP already past it). If
    /// `dr6` is non-zero, raise #DB afterwards with these DR6 bits (B0..B3
    /// for matched I/O breakpoints, BS for single-step).
    Done {
        /// The new register state.
        regs: RegFile,
        /// DR6 bits of a #DB trap to raise next, or 0.
        dr6: u32,
    },
    /// Deliver software interrupt `vector` through the guest's trap table
    /// (Xen's `pv_inject_sw_interrupt`), with `rip` as the return address.
    SoftInt {
        /// The vector.
        vector: u8,
        /// The RIP after the `int` instruction.
        rip: u64,
    },
    /// Bounce this exception to the guest (Xen's `pv_inject_hw_exception`
    /// / `pv_inject_page_fault`). `rip` is where the guest sees it raised.
    Fault {
        /// The vector.
        vector: u8,
        /// The error code, for vectors that push one.
        error_code: Option<u32>,
        /// The RIP of the faulting instruction.
        rip: u64,
        /// The faulting address for #PF.
        cr2: Option<u64>,
    },
    /// Preempted (Xen's `X86EMUL_RETRY`): resume the guest unchanged; it
    /// will fault again and retry.
    Retry,
}

/// Result of the env's `new_guest_cr3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cr3Result {
    /// Switched.
    Ok,
    /// Preempted: retry (Xen's `-ERESTART`).
    Restart,
    /// The frame is not a valid L4 of the guest: #GP(0).
    Invalid,
}

/// Why `set_debugreg` refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrFault {
    /// #UD (Xen's `-ENODEV`).
    Ud,
    /// #GP(0) (a bad value).
    Gp,
}

/// The segment bases reached through MSRs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseReg {
    /// `MSR_FS_BASE`.
    Fs,
    /// `MSR_GS_BASE`: the kernel's GS base (active in guest kernel mode).
    GsKernel,
    /// `MSR_SHADOW_GS_BASE`: the user GS base.
    GsUser,
}

/// A port Xen virtualises when the domain has no direct access to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtIo {
    /// PIT channel 2 / control / port 0x61 (`pv_pit_handler`): 0x42, 0x43, 0x61.
    Pit(u16),
    /// CMOS/RTC index (0x70) or data (0x71) (`rtc_guest_{read,write}`).
    Cmos(u16),
    /// PCI CONFIG_ADDRESS as a dword (0xcf8).
    PciCf8,
    /// PCI CONFIG_DATA (0xcfc..=0xcff): byte `offset` in the dword, `size`
    /// bytes (1, 2 or 4). The env applies Xen's `pci_cfg_ok`.
    PciCfgData {
        /// Offset within the dword.
        offset: u8,
        /// Access size in bytes.
        size: u8,
    },
}

/// Result of writing the hypercall-page MSR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HypercallPageResult {
    /// Written.
    Ok,
    /// Try again (Xen: the frame is being paged in).
    Retry,
    /// Not a writable page of the guest: #GP(0).
    Invalid,
}

/// The emulated I/O breakpoints of a vCPU (Xen's `arch.dr[]`, `arch.dr7`
/// and `arch.pv.dr7_emul`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoBreakpoints {
    /// DR0..DR3.
    pub dr: [u64; 4],
    /// DR7 (for the LEN fields).
    pub dr7: u64,
    /// The enable bits of breakpoints of type I/O (`dr7_emul`).
    pub dr7_emul: u64,
}

/// The vCPU and machine state the emulator works on. The glue implements
/// it over the current vCPU; tests implement it over plain fields.
pub trait PrivEnv {
    // --- mode ---
    /// The vCPU is in guest kernel mode (Xen's `guest_kernel_mode`).
    fn guest_kernel_mode(&self) -> bool;
    /// The vCPU's id (0 = boot processor for `MSR_APIC_BASE`).
    fn vcpu_id(&self) -> u32;
    /// The guest's CPUID view (`cpuid_policy::PvCpuidPolicy::guest_cpuid`).
    fn cpuid(&self, leaf: u32, subleaf: u32, source: CpuidSource) -> Leaf;
    /// The guest's virtual IOPL, 0..=3 (`PHYSDEVOP_set_iopl`).
    fn iopl(&self) -> u8;
    /// `VMASST_TYPE_architectural_iopl` is on.
    fn architectural_iopl(&self) -> bool {
        false
    }
    /// The guest registered a #GP handler (trap table entry 13 non-zero).
    fn gp_handler_registered(&self) -> bool;
    /// DPL of the guest's trap-table entry for `vector`.
    fn trap_dpl(&self, vector: u8) -> u8;

    // --- control registers ---
    /// The real CR0 (Xen's `read_cr0()`).
    fn host_cr0(&self) -> u64;
    /// The guest's virtual CR0.TS.
    fn guest_ts(&self) -> bool;
    /// `do_fpu_taskswitch(ts)`.
    fn fpu_taskswitch(&mut self, ts: bool);
    /// The guest's virtual CR2.
    fn cr2(&self) -> u64;
    /// Set the virtual CR2 (and `vcpu_info.arch.cr2`).
    fn set_cr2(&mut self, val: u64);
    /// The guest frame number of the current kernel L4 (`mfn_to_gfn` of
    /// `guest_table`).
    fn cr3_pfn(&self) -> u64;
    /// `new_guest_cr3`: switch to the L4 at guest frame `pfn`.
    fn new_guest_cr3(&mut self, pfn: u64) -> Cr3Result;
    /// The guest's virtual CR4 (`arch.pv.ctrlreg[4]`).
    fn cr4(&self) -> u64;
    /// The hypervisor's CR4 features (`mmu_cr4_features`).
    fn xen_cr4(&self) -> u64;
    /// Store a new virtual CR4 (already filtered by [`pv_fixup_guest_cr4`])
    /// and reload the real CR4.
    fn set_cr4(&mut self, val: u64);
    /// Set XCR0 (already validated against the policy); false if refused.
    fn set_xcr0(&mut self, val: u64) -> bool;

    // --- debug registers ---
    /// DR0..3, DR6 or DR7 (`n` in 0..=3, 6, 7; DR7 with the I/O bits merged).
    fn debugreg(&self, n: u8) -> u64;
    /// Xen's `set_debugreg(n, val)` (`n` in 0..=3, 6, 7).
    fn set_debugreg(&mut self, n: u8, val: u64) -> Result<(), DrFault>;
    /// The I/O breakpoints, for `check_guest_io_breakpoint`.
    fn io_breakpoints(&self) -> IoBreakpoints {
        IoBreakpoints::default()
    }

    // --- MSR state ---
    /// A segment base.
    fn seg_base(&self, reg: BaseReg) -> u64;
    /// Set a segment base (canonical, checked here).
    fn set_seg_base(&mut self, reg: BaseReg, val: u64);
    /// The real EFER.
    fn host_efer(&self) -> u64;
    /// The guest's TSC (emulated or scaled as the domain's TSC mode says).
    fn guest_tsc(&mut self) -> u64;
    /// The guest's TSC_AUX.
    fn tsc_aux(&self) -> u32;
    /// Set the guest's TSC_AUX.
    fn set_tsc_aux(&mut self, val: u32);
    /// The guest's SPEC_CTRL.
    fn spec_ctrl(&self) -> u64;
    /// Set the guest's SPEC_CTRL (reserved bits checked here).
    fn set_spec_ctrl(&mut self, val: u64);
    /// Write a command MSR (PRED_CMD, FLUSH_CMD) to the real CPU.
    fn host_wrmsr_cmd(&mut self, msr: u32, val: u64);
    /// `rdmsr_safe` on the real CPU: `None` if it faults.
    fn host_rdmsr(&self, msr: u32) -> Option<u64>;
    /// The host supports CPUID faulting (PLATFORM_INFO bit 31 for the guest).
    fn cpuid_faulting_available(&self) -> bool;
    /// The guest turned its CPUID faulting on (MISC_FEATURES_ENABLES bit 0).
    fn cpuid_faulting(&self) -> bool;
    /// Set the guest's CPUID faulting.
    fn set_cpuid_faulting(&mut self, on: bool);
    /// Fill guest frame `gfn` with the hypercall page (Xen's hypercall MSR).
    fn write_hypercall_page(&mut self, gfn: u64) -> HypercallPageResult;
    /// The domain was created with `msr_relaxed`.
    fn msr_relaxed(&self) -> bool {
        false
    }

    // --- I/O ---
    /// Number of ports the guest's I/O bitmap covers (`iobmp_nr`).
    fn iobmp_limit(&self) -> u32 {
        0
    }
    /// Read the 2 bytes of the guest's I/O bitmap at byte `offset`
    /// (`port >> 3`), or the guest address that faulted.
    fn read_iobmp(&mut self, offset: u32) -> Result<u16, u64>;
    /// The administrator granted ports `first..=last` (`ioports_access_permitted`).
    fn ioports_permitted(&self, first: u16, last: u16) -> bool;
    /// A real `in` of `size` bytes.
    fn port_in(&mut self, port: u16, size: u8) -> u32;
    /// A real `out` of `size` bytes.
    fn port_out(&mut self, port: u16, size: u8, val: u32);
    /// Read a virtualised port; all ones if nothing answers.
    fn virt_io_read(&mut self, dev: VirtIo) -> u32 {
        let _ = dev;
        !0
    }
    /// Write a virtualised port.
    fn virt_io_write(&mut self, dev: VirtIo, val: u32) {
        let _ = (dev, val);
    }

    // --- caches ---
    /// The domain may flush caches (`cache_flush_permitted`).
    fn cache_flush_permitted(&self) -> bool;
    /// Execute a real `wbinvd`.
    fn wbinvd(&mut self);
}

// CR0/CR4/RFLAGS/DR6 bits.
const CR0_TS: u64 = 1 << 3;
const CR4_TSD: u64 = 1 << 2;
const CR4_DE: u64 = 1 << 3;
const CR4_PAE: u64 = 1 << 5;
const CR4_MCE: u64 = 1 << 6;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const CR4_FSGSBASE: u64 = 1 << 16;
const CR4_OSXSAVE: u64 = 1 << 18;
const RFLAGS_TF: u64 = 1 << 8;
/// DR6.BS (single-step).
pub const DR6_BS: u32 = 1 << 14;

/// CR4 bits a PV guest controls (`PV_CR4_GUEST_MASK`).
pub const PV_CR4_GUEST_MASK: u64 = CR4_TSD | CR4_DE | CR4_FSGSBASE | CR4_OSXSAVE;
/// Hypervisor CR4 bits a PV guest sees (`PV_CR4_GUEST_VISIBLE_MASK`).
pub const PV_CR4_GUEST_VISIBLE_MASK: u64 = CR4_PAE | CR4_MCE | CR4_OSFXSR | CR4_OSXMMEXCPT;

/// The policy facts `pv_fixup_guest_cr4` looks at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cr4Policy {
    /// CPUID TSC.
    pub tsc: bool,
    /// CPUID DE.
    pub de: bool,
    /// CPUID FSGSBASE.
    pub fsgsbase: bool,
    /// CPUID XSAVE.
    pub xsave: bool,
}

impl Cr4Policy {
    /// Reads the facts from a guest CPUID view.
    pub fn from_cpuid(cpuid: impl Fn(u32, u32) -> Leaf) -> Self {
        let l1 = cpuid(1, 0);
        let l7 = cpuid(7, 0);
        Self {
            tsc: l1[3] & feat::l1d::TSC != 0,
            de: l1[3] & feat::l1d::DE != 0,
            fsgsbase: l7[1] & feat::l7b::FSGSBASE != 0,
            xsave: l1[2] & feat::l1c::XSAVE != 0,
        }
    }
}

/// Xen's `pv_fixup_guest_cr4`: the guest-visible CR4 after the guest
/// writes `cr4`.
pub fn pv_fixup_guest_cr4(cr4: u64, policy: Cr4Policy, xen_cr4: u64) -> u64 {
    let mut cr4 = cr4;
    if !policy.tsc {
        cr4 &= !CR4_TSD;
    }
    if !policy.de {
        cr4 &= !CR4_DE;
    }
    if !policy.fsgsbase {
        cr4 &= !CR4_FSGSBASE;
    }
    if !policy.xsave {
        cr4 &= !CR4_OSXSAVE;
    }
    (cr4 & PV_CR4_GUEST_MASK) | (xen_cr4 & PV_CR4_GUEST_VISIBLE_MASK)
}

/// Xen's `xen_pfn_to_cr3` (x86_64: a plain shift).
pub const fn xen_pfn_to_cr3(pfn: u64) -> u64 {
    pfn << 12
}

/// Xen's `xen_cr3_to_pfn` (x86_64: a plain shift).
pub const fn xen_cr3_to_pfn(cr3: u64) -> u64 {
    cr3 >> 12
}

/// A 48-bit canonical address.
pub fn is_canonical(addr: u64) -> bool {
    (((addr << 16) as i64) >> 16) as u64 == addr
}

/// Xen's `iopl_ok`: the virtual IOPL covers the assumed CPL (1 for the
/// guest kernel, 0 with architectural IOPL, 3 for guest user).
pub fn iopl_ok(env: &impl PrivEnv) -> bool {
    let cpl = if env.guest_kernel_mode() {
        if env.architectural_iopl() {
            0
        } else {
            1
        }
    } else {
        3
    };
    cpl <= env.iopl()
}

/// How an emulation stops short of completing (kept small: the `Err` side
/// of the internal results).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Fault {
        vector: u8,
        error_code: Option<u32>,
        rip: u64,
        cr2: Option<u64>,
    },
    Retry,
}

impl From<Stop> for Effect {
    fn from(s: Stop) -> Effect {
        match s {
            Stop::Fault {
                vector,
                error_code,
                rip,
                cr2,
            } => Effect::Fault {
                vector,
                error_code,
                rip,
                cr2,
            },
            Stop::Retry => Effect::Retry,
        }
    }
}

fn fault(vector: u8, error_code: Option<u32>, rip: u64) -> Stop {
    Stop::Fault {
        vector,
        error_code,
        rip,
        cr2: None,
    }
}

fn gp0(regs: &RegFile) -> Stop {
    fault(vector::GP, Some(0), regs.rip)
}

fn ud(regs: &RegFile) -> Stop {
    fault(vector::UD, None, regs.rip)
}

fn page_fault(addr: u64, rip: u64) -> Stop {
    Stop::Fault {
        vector: vector::PF,
        error_code: Some(0),
        rip,
        cr2: Some(addr),
    }
}

/// The original fault, bounced unchanged ("pass on GPF as is").
fn passthrough(trap: Trap, regs: &RegFile) -> Stop {
    let error_code = match trap {
        Trap::Gp { error_code } => Some(error_code),
        Trap::Ud => None,
    };
    fault(trap.vector(), error_code, regs.rip)
}

/// Fetches the bytes at `rip` for [`handle_gp`]/[`handle_ud`]: up to
/// [`MAX_INSN_LEN`], one page at a time. `read(va, buf)` copies `buf.len()`
/// guest bytes at `va` (never crossing a page) or returns false. Returns
/// the bytes, how many were read and, if the fetch stopped early, the
/// first address that could not be read (the decoder then reports
/// [`DecodeError::Truncated`] only if the instruction needed those bytes).
pub fn fetch_insn(
    rip: u64,
    mut read: impl FnMut(u64, &mut [u8]) -> bool,
) -> ([u8; MAX_INSN_LEN], usize, Option<u64>) {
    let mut buf = [0u8; MAX_INSN_LEN];
    let mut got = 0usize;
    while got < MAX_INSN_LEN {
        let va = rip.wrapping_add(got as u64);
        let in_page = 4096 - (va & 0xfff) as usize;
        let chunk = in_page.min(MAX_INSN_LEN - got);
        if !read(va, &mut buf[got..got + chunk]) {
            return (buf, got, Some(va));
        }
        got += chunk;
    }
    (buf, got, None)
}

/// A #GP raised while a PV guest ran (Xen's `do_general_protection`):
/// `bytes` are those fetched at RIP; `fetch_fault` is the first guest
/// address that could not be read if the fetch stopped early.
pub fn handle_gp(
    bytes: &[u8],
    fetch_fault: Option<u64>,
    regs: &RegFile,
    error_code: u32,
    env: &mut impl PrivEnv,
) -> Effect {
    let trap = Trap::Gp { error_code };
    // External event (EXT), or a selector error code that is not an IDT
    // reference: nothing to emulate.
    if error_code & 1 != 0 || (error_code & 2 == 0 && error_code != 0) {
        return passthrough(trap, regs).into();
    }
    match decode(bytes) {
        Ok(d) if !d.forced => emulate(&d, regs, trap, env),
        Ok(_) => passthrough(trap, regs).into(),
        Err(DecodeError::Truncated) => match fetch_fault {
            Some(addr) => page_fault(addr, regs.rip).into(),
            None => passthrough(trap, regs).into(),
        },
        Err(_) => passthrough(trap, regs).into(),
    }
}

/// A #UD raised while a PV guest ran (Xen's `pv_emulate_invalid_op`): only
/// the forced-emulation prefix is handled.
pub fn handle_ud(
    bytes: &[u8],
    fetch_fault: Option<u64>,
    regs: &RegFile,
    env: &mut impl PrivEnv,
) -> Effect {
    match decode(bytes) {
        Ok(d) if d.forced => emulate(&d, regs, Trap::Ud, env),
        Err(DecodeError::Truncated) => match fetch_fault {
            // Xen reads the signature and the opcode with copy_from_user and
            // injects #PF(0) at the first unreadable byte.
            Some(addr) => page_fault(addr, regs.rip).into(),
            None => ud(regs).into(),
        },
        _ => ud(regs).into(),
    }
}

/// Emulates a decoded instruction that raised `trap`.
pub fn emulate(d: &Decoded, regs: &RegFile, trap: Trap, env: &mut impl PrivEnv) -> Effect {
    if d.forced {
        return emulate_forced(d, regs, trap, env);
    }
    let Trap::Gp { error_code } = trap else {
        return passthrough(trap, regs).into();
    };
    if let PrivOp::Int { vector } = d.op {
        // `int $N` through a DPL-0 gate: the error code has the IDT bit.
        if error_code & 3 != 2 {
            return passthrough(trap, regs).into();
        }
        let cpl_needed = if env.guest_kernel_mode() { 1 } else { 3 };
        return if env.trap_dpl(vector) >= cpl_needed {
            Effect::SoftInt {
                vector,
                rip: regs.rip.wrapping_add(d.len as u64),
            }
        } else {
            // The error code the CPU should have pushed (QEMU 7.2 does not).
            fault(vector::GP, Some((u32::from(vector) << 3) | 2), regs.rip).into()
        };
    }
    if error_code != 0 {
        return passthrough(trap, regs).into();
    }
    let mut e = Emu {
        regs: *regs,
        env,
        d,
        trap,
    };
    match e.run() {
        Ok(dr6) => {
            let mut regs = e.regs;
            regs.rip = regs.rip.wrapping_add(d.len as u64);
            let dr6 = dr6
                | if regs.rflags & RFLAGS_TF != 0 {
                    DR6_BS
                } else {
                    0
                };
            Effect::Done { regs, dr6 }
        }
        Err(stop) => stop.into(),
    }
}

/// The forced-emulation path (Xen's `emulate_forced_invalid_op`).
fn emulate_forced(d: &Decoded, regs: &RegFile, trap: Trap, env: &mut impl PrivEnv) -> Effect {
    // Only `ud2; "xen"; 0f a2`, exactly: no prefixes on the CPUID.
    if trap != Trap::Ud || d.op != PrivOp::Cpuid || d.len != FORCED_EMUL_SIG.len() + 2 {
        return passthrough(trap, regs).into();
    }
    if env.cpuid_faulting() && !env.guest_kernel_mode() {
        // Xen: RIP moves past the signature, then #GP with the #UD's
        // (zero) error code.
        let rip = regs.rip.wrapping_add(FORCED_EMUL_SIG.len() as u64);
        return fault(vector::GP, Some(0), rip).into();
    }
    let mut out = *regs;
    cpuid_into(&mut out, &*env, CpuidSource::Forced);
    out.rip = regs.rip.wrapping_add(d.len as u64);
    let dr6 = if out.rflags & RFLAGS_TF != 0 {
        DR6_BS
    } else {
        0
    };
    Effect::Done { regs: out, dr6 }
}

fn cpuid_into(regs: &mut RegFile, env: &impl PrivEnv, source: CpuidSource) {
    let r = env.cpuid(regs.gpr[gpr::RAX] as u32, regs.gpr[gpr::RCX] as u32, source);
    regs.gpr[gpr::RAX] = u64::from(r[0]);
    regs.gpr[gpr::RBX] = u64::from(r[1]);
    regs.gpr[gpr::RCX] = u64::from(r[2]);
    regs.gpr[gpr::RDX] = u64::from(r[3]);
}

/// One emulation in progress: `Ok(dr6 bits)` or the effect that ends it.
struct Emu<'a, E: PrivEnv> {
    regs: RegFile,
    env: &'a mut E,
    d: &'a Decoded,
    trap: Trap,
}

type EmuResult = Result<u32, Stop>;

impl<E: PrivEnv> Emu<'_, E> {
    fn gp(&self) -> Stop {
        gp0(&self.regs)
    }

    fn require_kernel(&self) -> Result<(), Stop> {
        if self.env.guest_kernel_mode() {
            Ok(())
        } else {
            Err(self.gp())
        }
    }

    fn reg(&self, n: u8) -> u64 {
        self.regs.gpr[usize::from(n & 15)]
    }

    fn set_reg(&mut self, n: u8, v: u64) {
        self.regs.gpr[usize::from(n & 15)] = v;
    }

    fn cpuid(&self, leaf: u32, sub: u32) -> Leaf {
        self.env.cpuid(leaf, sub, CpuidSource::Faulted)
    }

    fn vendor(&self) -> Vendor {
        Vendor::from_leaf0(self.cpuid(0, 0))
    }

    fn run(&mut self) -> EmuResult {
        match self.d.op {
            PrivOp::MovFromCr { cr, gpr } => {
                self.require_kernel()?;
                let v = self.read_cr(cr)?;
                self.set_reg(gpr, v);
                Ok(0)
            }
            PrivOp::MovToCr { cr, gpr } => {
                self.require_kernel()?;
                self.write_cr(cr, self.reg(gpr))?;
                Ok(0)
            }
            PrivOp::MovFromDr { dr, gpr } => {
                self.require_kernel()?;
                let n = self.dr_alias(dr)?;
                let v = self.env.debugreg(n);
                self.set_reg(gpr, v);
                Ok(0)
            }
            PrivOp::MovToDr { dr, gpr } => {
                self.require_kernel()?;
                let n = self.dr_alias(dr)?;
                match self.env.set_debugreg(n, self.reg(gpr)) {
                    Ok(()) => Ok(0),
                    Err(DrFault::Ud) => Err(ud(&self.regs)),
                    Err(DrFault::Gp) => Err(self.gp()),
                }
            }
            PrivOp::Clts => {
                self.require_kernel()?;
                self.env.fpu_taskswitch(false);
                Ok(0)
            }
            PrivOp::Wbinvd => {
                self.require_kernel()?;
                // Unprivileged domains: silently ignored (Linux uses it in
                // start-of-day timing loops).
                if self.env.cache_flush_permitted() {
                    self.env.wbinvd();
                }
                Ok(0)
            }
            PrivOp::Rdmsr => {
                self.require_kernel()?;
                let msr = self.regs.gpr[gpr::RCX] as u32;
                let v = self.read_msr(msr).map_err(|f| self.msr_fault(f))?;
                self.regs.gpr[gpr::RAX] = v & 0xffff_ffff;
                self.regs.gpr[gpr::RDX] = v >> 32;
                Ok(0)
            }
            PrivOp::Wrmsr => {
                self.require_kernel()?;
                let msr = self.regs.gpr[gpr::RCX] as u32;
                let v = (self.regs.gpr[gpr::RDX] << 32) | (self.regs.gpr[gpr::RAX] & 0xffff_ffff);
                self.write_msr(msr, v).map_err(|f| self.msr_fault(f))?;
                Ok(0)
            }
            PrivOp::Cpuid => {
                // With the guest's CPUID faulting on, user mode keeps its #GP.
                if self.env.cpuid_faulting() && !self.env.guest_kernel_mode() {
                    return Err(self.gp());
                }
                cpuid_into(&mut self.regs, &*self.env, CpuidSource::Faulted);
                Ok(0)
            }
            PrivOp::Rdtsc => {
                self.check_tsd()?;
                let t = self.env.guest_tsc();
                self.regs.gpr[gpr::RAX] = t & 0xffff_ffff;
                self.regs.gpr[gpr::RDX] = t >> 32;
                Ok(0)
            }
            PrivOp::Rdtscp => {
                if self.cpuid(0x8000_0001, 0)[3] & feat::e1d::RDTSCP == 0 {
                    return Err(ud(&self.regs));
                }
                self.check_tsd()?;
                let t = self.env.guest_tsc();
                let aux = self.read_msr(MSR_TSC_AUX).map_err(|f| self.msr_fault(f))?;
                self.regs.gpr[gpr::RAX] = t & 0xffff_ffff;
                self.regs.gpr[gpr::RDX] = t >> 32;
                self.regs.gpr[gpr::RCX] = aux & 0xffff_ffff;
                Ok(0)
            }
            PrivOp::Xsetbv => {
                // x86_emulate's order: prefixes, CR4.OSXSAVE (#UD), ring (#GP).
                if self.d.prefixes.opsize || self.d.prefixes.rep.is_some() {
                    return Err(ud(&self.regs));
                }
                if self.env.cr4() & CR4_OSXSAVE == 0 {
                    return Err(ud(&self.regs));
                }
                self.require_kernel()?;
                if self.regs.gpr[gpr::RCX] as u32 != 0 {
                    return Err(self.gp());
                }
                let v = (self.regs.gpr[gpr::RDX] << 32) | (self.regs.gpr[gpr::RAX] & 0xffff_ffff);
                let d0 = self.cpuid(0xd, 0);
                let mask = u64::from(d0[0]) | (u64::from(d0[3]) << 32);
                if !valid_xcr0(v) || v & !mask != 0 || !self.env.set_xcr0(v) {
                    return Err(self.gp());
                }
                Ok(0)
            }
            PrivOp::Cli | PrivOp::Sti => {
                // Skipped as a no-op with enough virtual IOPL; the event
                // mask is deliberately not touched (as Xen).
                if iopl_ok(&*self.env) {
                    Ok(0)
                } else {
                    Err(self.gp())
                }
            }
            PrivOp::In { port } => {
                let port = self.port(port);
                let size = self.d.operand_size;
                let bp = self.io_checks(port, size)?;
                let v = if self.admin_io_okay(port, size) {
                    self.env.port_in(port, size)
                } else {
                    self.guest_io_read(port, size)
                };
                let rax = self.regs.gpr[gpr::RAX];
                self.regs.gpr[gpr::RAX] = match size {
                    1 => (rax & !0xff) | u64::from(v & 0xff),
                    2 => (rax & !0xffff) | u64::from(v & 0xffff),
                    _ => u64::from(v),
                };
                Ok(bp)
            }
            PrivOp::Out { port } => {
                let port = self.port(port);
                let size = self.d.operand_size;
                let bp = self.io_checks(port, size)?;
                let v = (self.regs.gpr[gpr::RAX] as u32) & size_mask(size);
                if self.admin_io_okay(port, size) {
                    self.env.port_out(port, size, v);
                } else {
                    self.guest_io_write(port, size, v);
                }
                Ok(bp)
            }
            // DEVIATION: Xen emulates string I/O; Oxen bounces it.
            PrivOp::StringIo { .. } => Err(passthrough(self.trap, &self.regs)),
            // Not in Xen's `validate()` list: the #GP stands.
            PrivOp::Hlt
            | PrivOp::Invd
            | PrivOp::Rdpmc
            | PrivOp::Lmsw { .. }
            | PrivOp::Smsw { .. }
            | PrivOp::Invlpg { .. }
            | PrivOp::Int { .. }
            | PrivOp::Int3
            | PrivOp::Int1 => Err(passthrough(self.trap, &self.regs)),
            // Invalid in 64-bit mode.
            PrivOp::Into => Err(ud(&self.regs)),
        }
    }

    fn check_tsd(&self) -> Result<(), Stop> {
        if self.env.cr4() & CR4_TSD != 0 && !self.env.guest_kernel_mode() {
            Err(self.gp())
        } else {
            Ok(())
        }
    }

    fn read_cr(&self, cr: u8) -> Result<u64, Stop> {
        match cr {
            0 => {
                let ts = if self.env.guest_ts() { CR0_TS } else { 0 };
                Ok((self.env.host_cr0() & !CR0_TS) | ts)
            }
            2 => Ok(self.env.cr2()),
            3 => Ok(xen_pfn_to_cr3(self.env.cr3_pfn())),
            4 => Ok(self.env.cr4()),
            _ => Err(self.gp()),
        }
    }

    fn write_cr(&mut self, cr: u8, val: u64) -> Result<(), Stop> {
        match cr {
            0 => {
                // Only TS may change.
                if (val ^ self.env.host_cr0()) & !CR0_TS != 0 {
                    return Err(self.gp());
                }
                self.env.fpu_taskswitch(val & CR0_TS != 0);
                Ok(())
            }
            2 => {
                self.env.set_cr2(val);
                Ok(())
            }
            3 => match self.env.new_guest_cr3(xen_cr3_to_pfn(val)) {
                Cr3Result::Ok => Ok(()),
                Cr3Result::Restart => Err(Stop::Retry),
                Cr3Result::Invalid => Err(self.gp()),
            },
            4 => {
                let env = &*self.env;
                let policy = Cr4Policy::from_cpuid(|l, s| env.cpuid(l, s, CpuidSource::Faulted));
                let v = pv_fixup_guest_cr4(val, policy, self.env.xen_cr4());
                self.env.set_cr4(v);
                Ok(())
            }
            _ => Err(self.gp()),
        }
    }

    /// DR4/DR5 alias DR6/DR7 unless CR4.DE (then #UD).
    fn dr_alias(&self, dr: u8) -> Result<u8, Stop> {
        match dr {
            0..=3 | 6 | 7 => Ok(dr),
            4 | 5 if self.env.cr4() & CR4_DE == 0 => Ok(dr + 2),
            _ => Err(ud(&self.regs)),
        }
    }

    fn port(&self, p: Port) -> u16 {
        match p {
            Port::Imm(n) => u16::from(n),
            Port::Dx => self.regs.gpr[gpr::RDX] as u16,
        }
    }

    /// `guest_io_okay` then `check_guest_io_breakpoint`.
    fn io_checks(&mut self, port: u16, size: u8) -> Result<u32, Stop> {
        if !iopl_ok(&*self.env) {
            let end = u32::from(port) + u32::from(size);
            if end > self.env.iobmp_limit() {
                return Err(self.gp());
            }
            match self.env.read_iobmp(u32::from(port) >> 3) {
                Ok(mask) => {
                    let want = u32::from(size_mask_bits(size)) << (port & 7);
                    if u32::from(mask) & want != 0 {
                        return Err(self.gp());
                    }
                }
                Err(addr) => return Err(page_fault(addr, self.regs.rip)),
            }
        }
        Ok(self.io_breakpoint_match(port, size))
    }

    fn io_breakpoint_match(&self, port: u16, len: u8) -> u32 {
        let bp = self.env.io_breakpoints();
        if bp.dr7_emul == 0 || self.env.cr4() & CR4_DE == 0 {
            return 0;
        }
        let (port, len) = (u64::from(port), u64::from(len));
        let mut matched = 0;
        for (i, &dr) in bp.dr.iter().enumerate() {
            if bp.dr7_emul & (3 << (i * 2)) == 0 {
                continue;
            }
            let width: u64 = match (bp.dr7 >> (18 + i * 4)) & 3 {
                0 => 1,
                1 => 2,
                2 => 8,
                _ => 4,
            };
            let start = dr & !(width - 1);
            if start < port + len && start.wrapping_add(width) > port {
                matched |= 1 << i;
            }
        }
        matched
    }

    /// `admin_io_okay`: direct hardware access allowed.
    fn admin_io_okay(&self, port: u16, size: u8) -> bool {
        if port == 0xcf8 && size == 4 {
            return false;
        }
        if is_cmos_port(port, size) {
            return false;
        }
        match port.checked_add(u16::from(size) - 1) {
            Some(last) => self.env.ioports_permitted(port, last),
            None => false,
        }
    }

    /// `guest_io_read`: the virtualised ports, piecewise.
    fn guest_io_read(&mut self, port: u16, bytes: u8) -> u32 {
        let mut data = 0u32;
        let mut shift = 0u32;
        let mut port = port;
        let mut bytes = bytes;
        while bytes != 0 {
            let mut size = 1u8;
            let sub = if matches!(port, 0x42 | 0x43 | 0x61) {
                self.env.virt_io_read(VirtIo::Pit(port))
            } else if is_cmos_port(port, 1) {
                self.env.virt_io_read(VirtIo::Cmos(port))
            } else if port == 0xcf8 && bytes == 4 {
                size = 4;
                self.env.virt_io_read(VirtIo::PciCf8)
            } else if port & 0xfffc == 0xcfc {
                size = pci_data_size(port, bytes);
                self.env.virt_io_read(VirtIo::PciCfgData {
                    offset: (port & 3) as u8,
                    size,
                })
            } else if self.env.ioports_permitted(port, port) {
                if bytes > 1
                    && port & 1 == 0
                    && port < 0xffff
                    && self.env.ioports_permitted(port, port + 1)
                {
                    size = 2;
                }
                self.env.port_in(port, size)
            } else {
                !0
            };
            if size == 4 {
                return sub;
            }
            data |= (sub & size_mask(size)) << shift;
            shift += u32::from(size) * 8;
            port = port.wrapping_add(u16::from(size));
            bytes -= size;
        }
        data
    }

    /// `guest_io_write`: the virtualised ports, piecewise.
    fn guest_io_write(&mut self, port: u16, bytes: u8, data: u32) {
        let mut port = port;
        let mut bytes = bytes;
        let mut data = data;
        while bytes != 0 {
            let mut size = 1u8;
            if matches!(port, 0x42 | 0x43 | 0x61) {
                self.env.virt_io_write(VirtIo::Pit(port), data & 0xff);
            } else if is_cmos_port(port, 1) {
                self.env.virt_io_write(VirtIo::Cmos(port), data & 0xff);
            } else if port == 0xcf8 && bytes == 4 {
                size = 4;
                self.env.virt_io_write(VirtIo::PciCf8, data);
            } else if port & 0xfffc == 0xcfc {
                size = pci_data_size(port, bytes);
                let dev = VirtIo::PciCfgData {
                    offset: (port & 3) as u8,
                    size,
                };
                self.env.virt_io_write(dev, data & size_mask(size));
            } else if self.env.ioports_permitted(port, port) {
                if bytes > 1
                    && port & 1 == 0
                    && port < 0xffff
                    && self.env.ioports_permitted(port, port + 1)
                {
                    size = 2;
                }
                self.env.port_out(port, size, data & size_mask(size));
            }
            if size == 4 {
                return;
            }
            port = port.wrapping_add(u16::from(size));
            bytes -= size;
            data = data.checked_shr(u32::from(size) * 8).unwrap_or(0);
        }
    }

    fn msr_fault(&self, f: MsrFault) -> Stop {
        match f {
            MsrFault::Gp => self.gp(),
            MsrFault::Retry => Stop::Retry,
        }
    }

    fn has_lm(&self) -> bool {
        self.cpuid(0x8000_0001, 0)[3] & feat::e1d::LM != 0
    }

    fn has_tsc_aux(&self) -> bool {
        self.cpuid(0x8000_0001, 0)[3] & feat::e1d::RDTSCP != 0
            || self.cpuid(7, 0)[2] & feat::l7c::RDPID != 0
    }

    fn has_spec_ctrl(&self) -> bool {
        self.cpuid(7, 0)[3] & feat::l7d::IBRSB != 0
            || self.cpuid(0x8000_0008, 0)[1] & feat::e8b::IBRS != 0
    }

    /// `read_msr` (emul-priv-op.c) on top of `guest_rdmsr` (msr.c).
    fn read_msr(&mut self, msr: u32) -> Result<u64, MsrFault> {
        let r = self.read_msr_inner(msr);
        if r.is_err()
            && !self.env.gp_handler_registered()
            && msr >> 16 != 0x4000
            && self.env.host_rdmsr(msr).is_some()
        {
            // A guest without a #GP handler (early boot) reads 0 for MSRs
            // the hardware has, rather than dying.
            return Ok(0);
        }
        r
    }

    fn read_msr_inner(&mut self, msr: u32) -> Result<u64, MsrFault> {
        use MsrFault::Gp;
        let vendor = self.vendor();
        let intel = vendor == Vendor::Intel;
        let amd = vendor.is_amd_like();
        // --- guest_rdmsr ---
        match msr {
            MSR_AMD_PATCHLOADER | MSR_IA32_UCODE_WRITE | MSR_PRED_CMD | MSR_FLUSH_CMD => {
                return Err(Gp)
            }
            MSR_IA32_FEATURE_CONTROL => {
                return if matches!(vendor, Vendor::Intel | Vendor::Centaur | Vendor::Shanghai) {
                    Ok(FEATURE_CONTROL_LOCK)
                } else {
                    Err(Gp)
                };
            }
            MSR_IA32_PLATFORM_ID => {
                return if intel {
                    self.env.host_rdmsr(msr).ok_or(Gp)
                } else {
                    Err(Gp)
                };
            }
            MSR_AMD_PATCHLEVEL => {
                return if intel || vendor == Vendor::Amd {
                    self.env.host_rdmsr(msr).ok_or(Gp)
                } else {
                    Err(Gp)
                };
            }
            MSR_SPEC_CTRL => {
                return if self.has_spec_ctrl() {
                    Ok(self.env.spec_ctrl())
                } else {
                    Err(Gp)
                };
            }
            MSR_INTEL_PLATFORM_INFO => {
                return Ok(if self.env.cpuid_faulting_available() {
                    PLATFORM_INFO_CPUID_FAULTING
                } else {
                    0
                });
            }
            MSR_INTEL_MISC_FEATURES_ENABLES => return Ok(u64::from(self.env.cpuid_faulting())),
            m if is_vmce_msr(m) => return self.vmce_rdmsr(m, intel),
            MSR_IA32_PERF_STATUS | MSR_IA32_PERF_CTL => {
                return if matches!(vendor, Vendor::Intel | Vendor::Centaur) {
                    Ok(0)
                } else {
                    Err(Gp)
                };
            }
            MSR_IA32_THERM_STATUS => return if intel { Ok(0) } else { Err(Gp) },
            MSR_X2APIC_FIRST..=MSR_X2APIC_LAST => return Err(Gp),
            0x4000_0000..=0x4000_02ff => {
                // guest_rdmsr_xen: the hypercall-page MSR reads as zero.
                return if msr == XEN_MSR_BASE { Ok(0) } else { Err(Gp) };
            }
            MSR_TSC_AUX => {
                return if self.has_tsc_aux() {
                    Ok(u64::from(self.env.tsc_aux()))
                } else {
                    Err(Gp)
                };
            }
            MSR_K8_HWCR => return if amd { Ok(0) } else { Err(Gp) },
            MSR_AMD64_DE_CFG => {
                return if amd {
                    Ok(AMD64_DE_CFG_LFENCE_SERIALISE)
                } else {
                    Err(Gp)
                }
            }
            _ => {}
        }
        // --- read_msr ---
        match msr {
            MSR_APIC_BASE => {
                // Linux PV guests read it.
                let bsp = if self.env.vcpu_id() == 0 {
                    APIC_BASE_BSP
                } else {
                    0
                };
                Ok(APIC_BASE_ENABLE | APIC_DEFAULT_PHYS_BASE | bsp)
            }
            MSR_FS_BASE | MSR_GS_BASE | MSR_SHADOW_GS_BASE => {
                if !self.has_lm() {
                    return Err(Gp);
                }
                Ok(self.env.seg_base(base_reg(msr)))
            }
            MSR_IA32_TSC => Ok(self.env.guest_tsc()),
            MSR_EFER => Ok(guest_efer(self.env.host_efer())),
            MSR_IA32_CR_PAT => Ok(XEN_MSR_PAT),
            MSR_K7_FID_VID_CTL | MSR_K7_FID_VID_STATUS | MSR_K8_PSTATE_LIMIT..=MSR_K8_PSTATE7 => {
                if vendor == Vendor::Amd {
                    Ok(0)
                } else {
                    Err(Gp)
                }
            }
            MSR_FAM10H_MMIO_CONF_BASE | MSR_AMD64_NB_CFG => {
                // Not a pinned hardware-domain vCPU: reads as zero.
                if vendor == Vendor::Amd || msr == MSR_AMD64_NB_CFG {
                    Ok(0)
                } else {
                    Err(Gp)
                }
            }
            MSR_IA32_MISC_ENABLE => self.env.host_rdmsr(msr).map(guest_misc_enable).ok_or(Gp),
            MSR_IA32_PERF_CAPABILITIES => Ok(0),
            m if is_vpmu_msr(m, vendor) => Ok(0), // vPMU off: reads as zero
            _ => {
                if self.env.msr_relaxed() && self.env.host_rdmsr(msr).is_some() {
                    Ok(0)
                } else {
                    Err(Gp)
                }
            }
        }
    }

    /// `write_msr` (emul-priv-op.c) on top of `guest_wrmsr` (msr.c).
    fn write_msr(&mut self, msr: u32, val: u64) -> Result<(), MsrFault> {
        use MsrFault::Gp;
        let vendor = self.vendor();
        let intel = vendor == Vendor::Intel;
        let amd = vendor.is_amd_like();
        // --- guest_wrmsr ---
        match msr {
            MSR_IA32_PLATFORM_ID | MSR_INTEL_PLATFORM_INFO | MSR_ARCH_CAPABILITIES => {
                return Err(Gp)
            }
            MSR_AMD_PATCHLEVEL => {
                // Intel documents "write 0, CPUID, read"; nothing else.
                return if intel && val == 0 { Ok(()) } else { Err(Gp) };
            }
            MSR_AMD_PATCHLOADER | MSR_IA32_UCODE_WRITE => return Err(Gp),
            MSR_SPEC_CTRL => {
                if !self.has_spec_ctrl() || val & !self.spec_ctrl_valid_bits() != 0 {
                    return Err(Gp);
                }
                self.env.set_spec_ctrl(val);
                return Ok(());
            }
            MSR_PRED_CMD => {
                let ok = self.cpuid(7, 0)[3] & feat::l7d::IBRSB != 0
                    || self.cpuid(0x8000_0008, 0)[1] & feat::e8b::IBPB != 0;
                if !ok || val & !PRED_CMD_IBPB != 0 {
                    return Err(Gp);
                }
                self.env.host_wrmsr_cmd(msr, val);
                return Ok(());
            }
            MSR_FLUSH_CMD => {
                if self.cpuid(7, 0)[3] & feat::l7d::L1D_FLUSH == 0 || val & !FLUSH_CMD_L1D != 0 {
                    return Err(Gp);
                }
                self.env.host_wrmsr_cmd(msr, val);
                return Ok(());
            }
            MSR_INTEL_MISC_FEATURES_ENABLES => {
                let allowed = if self.env.cpuid_faulting_available() {
                    1
                } else {
                    0
                };
                if val & !allowed != 0 {
                    return Err(Gp);
                }
                self.env.set_cpuid_faulting(val & 1 != 0);
                return Ok(());
            }
            m if is_vmce_msr(m) => return self.vmce_wrmsr(m, intel),
            MSR_IA32_PERF_CTL => {
                return if matches!(vendor, Vendor::Intel | Vendor::Centaur) {
                    Ok(())
                } else {
                    Err(Gp)
                };
            }
            MSR_X2APIC_FIRST..=MSR_X2APIC_LAST => return Err(Gp),
            0x4000_0000..=0x4000_02ff => {
                if msr != XEN_MSR_BASE || val & 0xfff != 0 {
                    return Err(Gp);
                }
                return match self.env.write_hypercall_page(val >> 12) {
                    HypercallPageResult::Ok => Ok(()),
                    HypercallPageResult::Retry => Err(MsrFault::Retry),
                    HypercallPageResult::Invalid => Err(Gp),
                };
            }
            MSR_TSC_AUX => {
                if !self.has_tsc_aux() || val >> 32 != 0 {
                    return Err(Gp);
                }
                self.env.set_tsc_aux(val as u32);
                return Ok(());
            }
            MSR_AMD64_DE_CFG => return if amd { Ok(()) } else { Err(Gp) },
            _ => {}
        }
        // --- write_msr ---
        match msr {
            MSR_FS_BASE | MSR_GS_BASE | MSR_SHADOW_GS_BASE => {
                if !self.has_lm() || !is_canonical(val) {
                    return Err(Gp);
                }
                self.env.set_seg_base(base_reg(msr), val);
                Ok(())
            }
            MSR_EFER => {
                // Linux writes back the value it read; nothing may change.
                if val == guest_efer(self.env.host_efer()) {
                    Ok(())
                } else {
                    Err(Gp)
                }
            }
            MSR_K7_FID_VID_CTL
            | MSR_K7_FID_VID_STATUS
            | MSR_K8_PSTATE_LIMIT..=MSR_K8_PSTATE7
            | MSR_K8_HWCR => {
                if amd {
                    Ok(())
                } else {
                    Err(Gp)
                }
            }
            MSR_AMD64_NB_CFG => Ok(()),
            MSR_FAM10H_MMIO_CONF_BASE => {
                if vendor == Vendor::Amd {
                    Ok(())
                } else {
                    Err(Gp)
                }
            }
            MSR_IA32_MISC_ENABLE => {
                // A value other than what reads back is ignored (warned
                // about by Xen), not refused.
                self.env.host_rdmsr(msr).ok_or(Gp).map(|_| ())
            }
            MSR_IA32_MPERF | MSR_IA32_APERF => {
                if matches!(vendor, Vendor::Intel | Vendor::Amd | Vendor::Hygon) {
                    Ok(())
                } else {
                    Err(Gp)
                }
            }
            MSR_IA32_THERM_CONTROL | MSR_IA32_ENERGY_PERF_BIAS => {
                if intel {
                    Ok(())
                } else {
                    Err(Gp)
                }
            }
            m if is_vpmu_msr(m, vendor) => Ok(()), // vPMU off: writes ignored
            _ => {
                if self.env.msr_relaxed() && self.env.host_rdmsr(msr).is_some() {
                    Ok(())
                } else {
                    Err(Gp)
                }
            }
        }
    }

    /// `msr_spec_ctrl_valid_bits` for the 4.17 feature words.
    fn spec_ctrl_valid_bits(&self) -> u64 {
        let l7 = self.cpuid(7, 0);
        let e8 = self.cpuid(0x8000_0008, 0);
        let l72 = self.cpuid(7, 2);
        let ssbd = l7[3] & feat::l7d::SSBD != 0 || e8[1] & feat::e8b::AMD_SSBD != 0;
        let psfd = l72[3] & feat::l7_2d::INTEL_PSFD != 0 || e8[1] & feat::e8b::PSFD != 0;
        SPEC_CTRL_IBRS
            | SPEC_CTRL_STIBP
            | if ssbd { SPEC_CTRL_SSBD } else { 0 }
            | if psfd { SPEC_CTRL_PSFD } else { 0 }
    }

    /// A minimal vMCE (Xen's `vmce_rdmsr` with no injected errors): two
    /// banks, MCi_CTL all ones, everything else zero.
    fn vmce_rdmsr(&self, msr: u32, intel: bool) -> Result<u64, MsrFault> {
        match msr {
            MSR_P5_MC_ADDR | MSR_P5_MC_TYPE | MSR_IA32_MCG_STATUS => Ok(0),
            MSR_IA32_MCG_CAP => Ok(vmce_mcg_cap(intel)),
            MSR_IA32_MCG_CTL | MSR_IA32_MCG_EXT_CTL => Err(MsrFault::Gp), // no MCG_CTL_P, no LMCE
            _ => match vmce_bank(msr) {
                Some((_, BankReg::Ctl)) => Ok(!0),
                Some((_, BankReg::Ctl2)) if intel => Ok(0),
                Some((_, BankReg::Ctl2)) => Err(MsrFault::Gp),
                Some(_) => Ok(0),
                None => Err(MsrFault::Gp),
            },
        }
    }

    fn vmce_wrmsr(&self, msr: u32, intel: bool) -> Result<(), MsrFault> {
        match msr {
            MSR_IA32_MCG_STATUS => Ok(()),
            MSR_IA32_MCG_CAP | MSR_P5_MC_ADDR | MSR_P5_MC_TYPE => Err(MsrFault::Gp),
            MSR_IA32_MCG_CTL | MSR_IA32_MCG_EXT_CTL => Err(MsrFault::Gp),
            _ => match vmce_bank(msr) {
                Some((_, BankReg::Ctl2)) if !intel => Err(MsrFault::Gp),
                Some(_) => Ok(()),
                None => Err(MsrFault::Gp),
            },
        }
    }
}

/// How an MSR access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MsrFault {
    Gp,
    Retry,
}

fn size_mask(size: u8) -> u32 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    }
}

fn size_mask_bits(size: u8) -> u16 {
    (1u16 << size.min(4)) - 1
}

/// Bytes of a CONFIG_DATA access starting at `port` (never 3).
fn pci_data_size(port: u16, bytes: u8) -> u8 {
    let size = bytes.min(4 - (port & 3) as u8);
    if size == 3 {
        2
    } else {
        size
    }
}

/// The CMOS/RTC ports (0x70, 0x71), never accessed directly by guests.
/// DEVIATION: the hardware domain's extra CMOS aliases are not modelled.
fn is_cmos_port(port: u16, bytes: u8) -> bool {
    let (p, end) = (u32::from(port), u32::from(port) + u32::from(bytes));
    p <= RTC_PORT1 && end > RTC_PORT0
}

const RTC_PORT0: u32 = 0x70;
const RTC_PORT1: u32 = 0x71;

fn base_reg(msr: u32) -> BaseReg {
    match msr {
        MSR_FS_BASE => BaseReg::Fs,
        MSR_GS_BASE => BaseReg::GsKernel,
        _ => BaseReg::GsUser,
    }
}

/// Xen's `guest_efer`: known bits only, never SVME or AIBRSE.
pub fn guest_efer(host: u64) -> u64 {
    host & EFER_KNOWN_MASK & !(EFER_SVME | EFER_AIBRSE)
}

/// Xen's `guest_misc_enable`.
pub fn guest_misc_enable(val: u64) -> u64 {
    (val & !(MISC_ENABLE_PERF_AVAIL | MISC_ENABLE_MONITOR_ENABLE))
        | MISC_ENABLE_BTS_UNAVAIL
        | MISC_ENABLE_PEBS_UNAVAIL
        | MISC_ENABLE_XTPR_DISABLE
}

/// The vMCE MCG_CAP: two banks, TES_P and SER_P (and CMCI_P on Intel).
fn vmce_mcg_cap(intel: bool) -> u64 {
    let common = MCG_SER_P | VMCE_BANKS as u64;
    if intel {
        common | MCG_TES_P | MCG_CMCI_P
    } else {
        common
    }
}

const VMCE_BANKS: u32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BankReg {
    Ctl,
    Status,
    Addr,
    Misc,
    Ctl2,
}

/// The bank and register of a machine-check bank MSR the vMCE has.
fn vmce_bank(msr: u32) -> Option<(u32, BankReg)> {
    match msr {
        MSR_IA32_MC0_CTL..=0x47f => {
            let off = msr - MSR_IA32_MC0_CTL;
            let bank = off / 4;
            let reg = match off % 4 {
                0 => BankReg::Ctl,
                1 => BankReg::Status,
                2 => BankReg::Addr,
                _ => BankReg::Misc,
            };
            (bank < VMCE_BANKS).then_some((bank, reg))
        }
        MSR_IA32_MC0_CTL2..=0x29f => {
            let bank = msr - MSR_IA32_MC0_CTL2;
            (bank < VMCE_BANKS).then_some((bank, BankReg::Ctl2))
        }
        _ => None,
    }
}

fn is_vmce_msr(msr: u32) -> bool {
    matches!(
        msr,
        MSR_P5_MC_ADDR
            | MSR_P5_MC_TYPE
            | MSR_IA32_MCG_CAP..=MSR_IA32_MCG_CTL
            | MSR_IA32_MC0_CTL2..=0x29f
            | MSR_IA32_MC0_CTL..=0x47f
            | MSR_IA32_MCG_EXT_CTL
    )
}

/// The performance-counter MSRs Xen routes to the vPMU.
fn is_vpmu_msr(msr: u32, vendor: Vendor) -> bool {
    match vendor {
        Vendor::Intel => matches!(
            msr,
            0xc1..=0xc8 | 0x186..=0x189 | 0x309..=0x30b | 0x38d..=0x390
        ),
        Vendor::Amd | Vendor::Hygon => {
            matches!(msr, 0xc001_0000..=0xc001_0007 | 0xc001_0200..=0xc001_020b)
        }
        _ => false,
    }
}

// --- MSR numbers and bits (Xen's msr-index.h) ---
/// `MSR_P5_MC_ADDR`.
pub const MSR_P5_MC_ADDR: u32 = 0x0;
/// `MSR_P5_MC_TYPE`.
pub const MSR_P5_MC_TYPE: u32 = 0x1;
/// `MSR_IA32_TSC`.
pub const MSR_IA32_TSC: u32 = 0x10;
/// `MSR_IA32_PLATFORM_ID`.
pub const MSR_IA32_PLATFORM_ID: u32 = 0x17;
/// `MSR_APIC_BASE`.
pub const MSR_APIC_BASE: u32 = 0x1b;
/// `MSR_IA32_FEATURE_CONTROL`.
pub const MSR_IA32_FEATURE_CONTROL: u32 = 0x3a;
/// `MSR_SPEC_CTRL`.
pub const MSR_SPEC_CTRL: u32 = 0x48;
/// `MSR_PRED_CMD`.
pub const MSR_PRED_CMD: u32 = 0x49;
/// `MSR_IA32_UCODE_WRITE`.
pub const MSR_IA32_UCODE_WRITE: u32 = 0x79;
/// `MSR_AMD_PATCHLEVEL` = `MSR_IA32_UCODE_REV`.
pub const MSR_AMD_PATCHLEVEL: u32 = 0x8b;
/// `MSR_ARCH_CAPABILITIES`.
pub const MSR_ARCH_CAPABILITIES: u32 = 0x10a;
/// `MSR_FLUSH_CMD`.
pub const MSR_FLUSH_CMD: u32 = 0x10b;
/// `MSR_INTEL_PLATFORM_INFO`.
pub const MSR_INTEL_PLATFORM_INFO: u32 = 0xce;
/// `MSR_IA32_MPERF`.
pub const MSR_IA32_MPERF: u32 = 0xe7;
/// `MSR_IA32_APERF`.
pub const MSR_IA32_APERF: u32 = 0xe8;
/// `MSR_INTEL_MISC_FEATURES_ENABLES`.
pub const MSR_INTEL_MISC_FEATURES_ENABLES: u32 = 0x140;
/// `MSR_IA32_MCG_CAP`.
pub const MSR_IA32_MCG_CAP: u32 = 0x179;
/// `MSR_IA32_MCG_STATUS`.
pub const MSR_IA32_MCG_STATUS: u32 = 0x17a;
/// `MSR_IA32_MCG_CTL`.
pub const MSR_IA32_MCG_CTL: u32 = 0x17b;
/// `MSR_IA32_PERF_STATUS`.
pub const MSR_IA32_PERF_STATUS: u32 = 0x198;
/// `MSR_IA32_PERF_CTL`.
pub const MSR_IA32_PERF_CTL: u32 = 0x199;
/// `MSR_IA32_THERM_CONTROL`.
pub const MSR_IA32_THERM_CONTROL: u32 = 0x19a;
/// `MSR_IA32_THERM_STATUS`.
pub const MSR_IA32_THERM_STATUS: u32 = 0x19c;
/// `MSR_IA32_MISC_ENABLE`.
pub const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
/// `MSR_IA32_ENERGY_PERF_BIAS`.
pub const MSR_IA32_ENERGY_PERF_BIAS: u32 = 0x1b0;
/// `MSR_IA32_CR_PAT`.
pub const MSR_IA32_CR_PAT: u32 = 0x277;
/// `MSR_IA32_MC0_CTL2`.
pub const MSR_IA32_MC0_CTL2: u32 = 0x280;
/// `MSR_IA32_PERF_CAPABILITIES`.
pub const MSR_IA32_PERF_CAPABILITIES: u32 = 0x345;
/// `MSR_IA32_MC0_CTL`.
pub const MSR_IA32_MC0_CTL: u32 = 0x400;
/// `MSR_IA32_MCG_EXT_CTL`.
pub const MSR_IA32_MCG_EXT_CTL: u32 = 0x4d0;
/// First x2APIC MSR.
pub const MSR_X2APIC_FIRST: u32 = 0x800;
/// Last x2APIC MSR.
pub const MSR_X2APIC_LAST: u32 = 0x8ff;
/// Xen's MSR base for PV (the hypercall-page MSR).
pub const XEN_MSR_BASE: u32 = hypercall_abi::arch_x86::XEN_HYPERCALL_MSR;
/// `MSR_EFER`.
pub const MSR_EFER: u32 = 0xc000_0080;
/// `MSR_FS_BASE`.
pub const MSR_FS_BASE: u32 = 0xc000_0100;
/// `MSR_GS_BASE`.
pub const MSR_GS_BASE: u32 = 0xc000_0101;
/// `MSR_SHADOW_GS_BASE`.
pub const MSR_SHADOW_GS_BASE: u32 = 0xc000_0102;
/// `MSR_TSC_AUX`.
pub const MSR_TSC_AUX: u32 = 0xc000_0103;
/// `MSR_K8_HWCR`.
pub const MSR_K8_HWCR: u32 = 0xc001_0015;
/// `MSR_AMD64_NB_CFG`.
pub const MSR_AMD64_NB_CFG: u32 = 0xc001_001f;
/// `MSR_AMD_PATCHLOADER`.
pub const MSR_AMD_PATCHLOADER: u32 = 0xc001_0020;
/// `MSR_K7_FID_VID_CTL`.
pub const MSR_K7_FID_VID_CTL: u32 = 0xc001_0041;
/// `MSR_K7_FID_VID_STATUS`.
pub const MSR_K7_FID_VID_STATUS: u32 = 0xc001_0042;
/// `MSR_FAM10H_MMIO_CONF_BASE`.
pub const MSR_FAM10H_MMIO_CONF_BASE: u32 = 0xc001_0058;
/// `MSR_K8_PSTATE_LIMIT` (the P-state MSRs run to `MSR_K8_PSTATE7`).
pub const MSR_K8_PSTATE_LIMIT: u32 = 0xc001_0061;
/// `MSR_K8_PSTATE7`.
pub const MSR_K8_PSTATE7: u32 = 0xc001_006b;
/// `MSR_AMD64_DE_CFG`.
pub const MSR_AMD64_DE_CFG: u32 = 0xc001_1029;

const FEATURE_CONTROL_LOCK: u64 = 1;
const PLATFORM_INFO_CPUID_FAULTING: u64 = 1 << 31;
const PRED_CMD_IBPB: u64 = 1;
const FLUSH_CMD_L1D: u64 = 1;
const SPEC_CTRL_IBRS: u64 = 1 << 0;
const SPEC_CTRL_STIBP: u64 = 1 << 1;
const SPEC_CTRL_SSBD: u64 = 1 << 2;
const SPEC_CTRL_PSFD: u64 = 1 << 7;
const APIC_BASE_BSP: u64 = 1 << 8;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_DEFAULT_PHYS_BASE: u64 = 0xfee0_0000;
const AMD64_DE_CFG_LFENCE_SERIALISE: u64 = 1 << 1;
/// The PAT Xen runs with and shows PV guests (`XEN_MSR_PAT`).
pub const XEN_MSR_PAT: u64 = 0x0000_0501_0007_0406;
const EFER_SCE: u64 = 1 << 0;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;
const EFER_SVME: u64 = 1 << 12;
const EFER_FFXSE: u64 = 1 << 14;
const EFER_AIBRSE: u64 = 1 << 21;
const EFER_KNOWN_MASK: u64 =
    EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE | EFER_SVME | EFER_FFXSE | EFER_AIBRSE;
const MISC_ENABLE_PERF_AVAIL: u64 = 1 << 7;
const MISC_ENABLE_BTS_UNAVAIL: u64 = 1 << 11;
const MISC_ENABLE_PEBS_UNAVAIL: u64 = 1 << 12;
const MISC_ENABLE_MONITOR_ENABLE: u64 = 1 << 18;
const MISC_ENABLE_XTPR_DISABLE: u64 = 1 << 23;
const MCG_CMCI_P: u64 = 1 << 10;
const MCG_TES_P: u64 = 1 << 11;
const MCG_SER_P: u64 = 1 << 24;

#[cfg(test)]
mod tests {
    //! Encodings are written by hand from the Intel SDM Vol. 2 opcode
    //! tables; each test names the opcode row it exercises.
    use super::*;
    use crate::cpuid_policy::{CpuidContext, PolicyOptions, PvCpuidPolicy};
    use std::vec::Vec;

    fn dec(b: &[u8]) -> Decoded {
        decode(b).unwrap_or_else(|e| panic!("{b:02x?}: {e:?}"))
    }

    fn modrm(md: u8, reg: u8, rm: u8) -> u8 {
        (md << 6) | ((reg & 7) << 3) | (rm & 7)
    }

    /// A REX byte for the given R/X/B extension bits (None if all clear).
    fn rex(w: bool, r: u8, x: u8, b: u8) -> Option<u8> {
        let v = 0x40 | (u8::from(w) << 3) | ((r >> 3) << 2) | ((x >> 3) << 1) | (b >> 3);
        (v != 0x40).then_some(v)
    }

    // ----------------------------------------------------------------- fetch

    #[test]
    fn fetch_insn_stops_at_an_unreadable_page() {
        let mem = |va: u64, buf: &mut [u8]| {
            // Readable: the page at 0x1000 only; byte = low address bits.
            if va & !0xfff != 0x1000 || (va & 0xfff) as usize + buf.len() > 4096 {
                return false;
            }
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (va as usize + i) as u8;
            }
            true
        };
        let (b, n, f) = fetch_insn(0x1100, mem);
        assert_eq!((n, f), (15, None));
        assert_eq!(b[0], 0x00);
        assert_eq!(b[14], 0x0e);
        let (b, n, f) = fetch_insn(0x1ffd, mem);
        assert_eq!((n, f), (3, Some(0x2000)));
        assert_eq!(&b[..3], &[0xfd, 0xfe, 0xff]);
        let (_, n, f) = fetch_insn(0x3000, mem);
        assert_eq!((n, f), (0, Some(0x3000)));
        // The top of the address space wraps rather than overflowing.
        let (_, n, f) = fetch_insn(u64::MAX - 1, |_, _| false);
        assert_eq!((n, f), (0, Some(u64::MAX - 1)));
        let mut calls = 0;
        let (_, n, _) = fetch_insn(u64::MAX - 1, |_, _| {
            calls += 1;
            true
        });
        assert_eq!((n, calls), (15, 2));
    }

    #[test]
    fn a_truncated_fetch_bounces_a_page_fault_only_when_needed() {
        // `in al, dx` (1 byte) at the last byte of a page decodes from a
        // 1-byte fetch; `rdmsr` (2 bytes) needs the next page.
        assert_eq!(decode(&[0xec]).map(|d| d.len), Ok(1));
        assert_eq!(decode(&[0x0f]), Err(DecodeError::Truncated));
    }

    // ---------------------------------------------------------------- decode

    #[test]
    fn mov_cr_every_gpr_and_cr() {
        // SDM: 0F 20 /r MOV r64, CR0-CR7; REX.R + 0F 20 /0 MOV r64, CR8;
        //      0F 22 /r MOV CR0-CR7, r64; REX.R + 0F 22 /0 MOV CR8, r64.
        for cr in [0u8, 2, 3, 4, 8] {
            for g in 0u8..16 {
                for (opc, to) in [(0x20u8, false), (0x22u8, true)] {
                    let mut b = Vec::new();
                    if let Some(r) = rex(false, cr, 0, g) {
                        b.push(r);
                    }
                    b.extend_from_slice(&[0x0f, opc, modrm(3, cr, g)]);
                    let d = dec(&b);
                    let want = if to {
                        PrivOp::MovToCr { cr, gpr: g }
                    } else {
                        PrivOp::MovFromCr { cr, gpr: g }
                    };
                    assert_eq!(d.op, want, "{b:02x?}");
                    assert_eq!(d.len, b.len());
                    assert_eq!(d.operand_size, 8);
                    assert!(!d.forced);
                }
            }
        }
    }

    #[test]
    fn mov_cr_known_encodings() {
        // mov %cr3,%rax = 0f 20 d8; mov %rdi,%cr3 = 0f 22 df;
        // mov %cr8,%r15 = 45 0f 20 c7 (REX.RB).
        assert_eq!(
            dec(&[0x0f, 0x20, 0xd8]).op,
            PrivOp::MovFromCr { cr: 3, gpr: 0 }
        );
        assert_eq!(
            dec(&[0x0f, 0x22, 0xdf]).op,
            PrivOp::MovToCr { cr: 3, gpr: 7 }
        );
        assert_eq!(
            dec(&[0x45, 0x0f, 0x20, 0xc7]).op,
            PrivOp::MovFromCr { cr: 8, gpr: 15 }
        );
        // The mod field is ignored (always register form).
        assert_eq!(
            dec(&[0x0f, 0x20, 0x18]).op,
            PrivOp::MovFromCr { cr: 3, gpr: 0 }
        );
        assert_eq!(dec(&[0x0f, 0x20, 0x18]).len, 3);
        // 66 and REX.W do not change the 64-bit operand.
        let d = dec(&[0x66, 0x48, 0x0f, 0x22, 0xe0]);
        assert_eq!(d.op, PrivOp::MovToCr { cr: 4, gpr: 0 });
        assert_eq!(d.operand_size, 8);
        // AMD's LOCK MOV CR0 = MOV CR8 (F0 0F 20 /0).
        assert_eq!(
            dec(&[0xf0, 0x0f, 0x20, 0xc1]).op,
            PrivOp::MovFromCr { cr: 8, gpr: 1 }
        );
        assert_eq!(
            dec(&[0xf0, 0x0f, 0x22, 0xc1]).op,
            PrivOp::MovToCr { cr: 8, gpr: 1 }
        );
    }

    #[test]
    fn decode_mov_dr() {
        // SDM: 0F 21 /r MOV r64, DR0-DR7; 0F 23 /r MOV DR0-DR7, r64.
        for dr in 0u8..8 {
            for g in 0u8..16 {
                let mut b = Vec::new();
                if let Some(r) = rex(false, 0, 0, g) {
                    b.push(r);
                }
                b.extend_from_slice(&[0x0f, 0x21, modrm(3, dr, g)]);
                assert_eq!(dec(&b).op, PrivOp::MovFromDr { dr, gpr: g });
                let n = b.len();
                b[n - 2] = 0x23;
                assert_eq!(dec(&b).op, PrivOp::MovToDr { dr, gpr: g });
            }
        }
        // REX.R + 0F 21: DR8..15 do not exist (#UD).
        assert_eq!(decode(&[0x44, 0x0f, 0x21, 0xc0]), Err(DecodeError::Invalid));
        // LOCK MOV DR: #UD.
        assert_eq!(decode(&[0xf0, 0x0f, 0x23, 0xc0]), Err(DecodeError::Invalid));
    }

    #[test]
    fn simple_opcodes() {
        // SDM rows: 0F 06 CLTS; 0F 08 INVD; 0F 09 WBINVD; 0F 30 WRMSR;
        // 0F 31 RDTSC; 0F 32 RDMSR; 0F 33 RDPMC; 0F A2 CPUID;
        // NP 0F 01 D1 XSETBV; 0F 01 F9 RDTSCP; F4 HLT; FA CLI; FB STI;
        // CC INT3; CD ib INT imm8; CE INTO; F1 INT1.
        let cases: &[(&[u8], PrivOp)] = &[
            (&[0x0f, 0x06], PrivOp::Clts),
            (&[0x0f, 0x08], PrivOp::Invd),
            (&[0x0f, 0x09], PrivOp::Wbinvd),
            (&[0x0f, 0x30], PrivOp::Wrmsr),
            (&[0x0f, 0x31], PrivOp::Rdtsc),
            (&[0x0f, 0x32], PrivOp::Rdmsr),
            (&[0x0f, 0x33], PrivOp::Rdpmc),
            (&[0x0f, 0xa2], PrivOp::Cpuid),
            (&[0x0f, 0x01, 0xd1], PrivOp::Xsetbv),
            (&[0x0f, 0x01, 0xf9], PrivOp::Rdtscp),
            (&[0xf4], PrivOp::Hlt),
            (&[0xfa], PrivOp::Cli),
            (&[0xfb], PrivOp::Sti),
            (&[0xcc], PrivOp::Int3),
            (&[0xcd, 0x80], PrivOp::Int { vector: 0x80 }),
            (&[0xcd, 0x03], PrivOp::Int { vector: 3 }),
            (&[0xce], PrivOp::Into),
            (&[0xf1], PrivOp::Int1),
        ];
        for (b, op) in cases {
            let d = dec(b);
            assert_eq!(d.op, *op, "{b:02x?}");
            assert_eq!(d.len, b.len(), "{b:02x?}");
            assert_eq!(d.address_size, 8);
            // Trailing bytes are ignored.
            let mut longer = b.to_vec();
            longer.extend_from_slice(&[0x90; 8]);
            assert_eq!(dec(&longer), d);
        }
    }

    #[test]
    fn port_io() {
        // SDM: E4 ib IN AL,imm8; E5 ib IN eAX,imm8; E6 ib OUT imm8,AL;
        // E7 ib OUT imm8,eAX; EC IN AL,DX; ED IN eAX,DX; EE OUT DX,AL;
        // EF OUT DX,eAX; 66 selects the 16-bit forms; REX.W is ignored.
        let cases: &[(&[u8], PrivOp, u8)] = &[
            (
                &[0xe4, 0x60],
                PrivOp::In {
                    port: Port::Imm(0x60),
                },
                1,
            ),
            (
                &[0xe5, 0x71],
                PrivOp::In {
                    port: Port::Imm(0x71),
                },
                4,
            ),
            (
                &[0x66, 0xe5, 0x71],
                PrivOp::In {
                    port: Port::Imm(0x71),
                },
                2,
            ),
            (
                &[0xe6, 0x80],
                PrivOp::Out {
                    port: Port::Imm(0x80),
                },
                1,
            ),
            (
                &[0xe7, 0x80],
                PrivOp::Out {
                    port: Port::Imm(0x80),
                },
                4,
            ),
            (
                &[0x66, 0xe7, 0x80],
                PrivOp::Out {
                    port: Port::Imm(0x80),
                },
                2,
            ),
            (&[0xec], PrivOp::In { port: Port::Dx }, 1),
            (&[0xed], PrivOp::In { port: Port::Dx }, 4),
            (&[0x66, 0xed], PrivOp::In { port: Port::Dx }, 2),
            (&[0x48, 0xed], PrivOp::In { port: Port::Dx }, 4),
            (&[0x66, 0xec], PrivOp::In { port: Port::Dx }, 1),
            (&[0xee], PrivOp::Out { port: Port::Dx }, 1),
            (&[0xef], PrivOp::Out { port: Port::Dx }, 4),
            (&[0x66, 0xef], PrivOp::Out { port: Port::Dx }, 2),
            (&[0xf3, 0xee], PrivOp::Out { port: Port::Dx }, 1),
        ];
        for (b, op, size) in cases {
            let d = dec(b);
            assert_eq!(
                (d.op, d.operand_size, d.len),
                (*op, *size, b.len()),
                "{b:02x?}"
            );
        }
    }

    #[test]
    fn string_io() {
        // SDM: 6C INSB; 6D INSW/INSD; 6E OUTSB; 6F OUTSW/OUTSD; F3 REP.
        let d = dec(&[0x6c]);
        assert_eq!(
            d.op,
            PrivOp::StringIo {
                dir: IoDir::In,
                rep: false,
                segment: Segment::Es
            }
        );
        assert_eq!(d.operand_size, 1);
        let d = dec(&[0xf3, 0x6d]);
        assert_eq!(
            d.op,
            PrivOp::StringIo {
                dir: IoDir::In,
                rep: true,
                segment: Segment::Es
            }
        );
        assert_eq!(d.operand_size, 4);
        // A segment override does not apply to INS's destination.
        let d = dec(&[0x64, 0x66, 0xf3, 0x6d]);
        assert_eq!(
            d.op,
            PrivOp::StringIo {
                dir: IoDir::In,
                rep: true,
                segment: Segment::Es
            }
        );
        assert_eq!(d.operand_size, 2);
        let d = dec(&[0x6e]);
        assert_eq!(
            d.op,
            PrivOp::StringIo {
                dir: IoDir::Out,
                rep: false,
                segment: Segment::Ds
            }
        );
        let d = dec(&[0x2e, 0xf3, 0x6f]);
        assert_eq!(
            d.op,
            PrivOp::StringIo {
                dir: IoDir::Out,
                rep: true,
                segment: Segment::Cs
            }
        );
        let d = dec(&[0x67, 0x65, 0xf2, 0x66, 0x6f]);
        assert_eq!(
            d.op,
            PrivOp::StringIo {
                dir: IoDir::Out,
                rep: true,
                segment: Segment::Gs
            }
        );
        assert_eq!((d.operand_size, d.address_size, d.len), (2, 4, 5));
    }

    #[test]
    fn system_group_0f01() {
        // SDM: 0F 01 /4 SMSW r/m16 (r32/r64 with REX.W); 0F 01 /6 LMSW r/m16;
        // 0F 01 /7 INVLPG m.
        let d = dec(&[0x0f, 0x01, 0xe0]); // smsw %eax
        assert_eq!(
            d.op,
            PrivOp::Smsw {
                dst: RmOperand::Reg(0)
            }
        );
        assert_eq!(d.operand_size, 4);
        let d = dec(&[0x49, 0x0f, 0x01, 0xe3]); // smsw %r11
        assert_eq!(
            d.op,
            PrivOp::Smsw {
                dst: RmOperand::Reg(11)
            }
        );
        assert_eq!(d.operand_size, 8);
        assert_eq!(
            dec(&[0x0f, 0x01, 0xf6]).op,
            PrivOp::Lmsw {
                src: RmOperand::Reg(6)
            }
        );
        let base = MemRef {
            base: None,
            index: None,
            scale: 1,
            disp: 0,
            rip_relative: false,
            addr32: false,
            segment: None,
        };
        // invlpg (%rax): 0f 01 38.
        let d = dec(&[0x0f, 0x01, 0x38]);
        assert_eq!(
            d.op,
            PrivOp::Invlpg {
                mem: MemRef {
                    base: Some(0),
                    ..base
                }
            }
        );
        assert_eq!(d.len, 3);
        // invlpg 0x10(%rip): 0f 01 3d 10 00 00 00.
        let d = dec(&[0x0f, 0x01, 0x3d, 0x10, 0, 0, 0]);
        assert_eq!(
            d.op,
            PrivOp::Invlpg {
                mem: MemRef {
                    rip_relative: true,
                    disp: 0x10,
                    ..base
                }
            }
        );
        assert_eq!(d.len, 7);
        // invlpg -8(%rsp): 0f 01 7c 24 f8 (SIB base=rsp, no index).
        let d = dec(&[0x0f, 0x01, 0x7c, 0x24, 0xf8]);
        assert_eq!(
            d.op,
            PrivOp::Invlpg {
                mem: MemRef {
                    base: Some(4),
                    disp: -8,
                    ..base
                }
            }
        );
        assert_eq!(d.len, 5);
        // invlpg 0x12345678(%r12,%r13,4): 43 0f 01 bc ac 78 56 34 12 (REX.XB).
        let d = dec(&[0x43, 0x0f, 0x01, 0xbc, 0xac, 0x78, 0x56, 0x34, 0x12]);
        assert_eq!(
            d.op,
            PrivOp::Invlpg {
                mem: MemRef {
                    base: Some(12),
                    index: Some(13),
                    scale: 4,
                    disp: 0x1234_5678,
                    ..base
                }
            }
        );
        assert_eq!(d.len, 9);
        // invlpg 0x1000 (no base): 0f 01 3c 25 00 10 00 00 (SIB base=101, mod=00).
        let d = dec(&[0x0f, 0x01, 0x3c, 0x25, 0, 0x10, 0, 0]);
        assert_eq!(
            d.op,
            PrivOp::Invlpg {
                mem: MemRef {
                    disp: 0x1000,
                    ..base
                }
            }
        );
        assert_eq!(d.len, 8);
        // REX.X makes index 4 mean r12: 42 0f 01 3c 24 → (%rsp,%r12,1).
        let d = dec(&[0x42, 0x0f, 0x01, 0x3c, 0x24]);
        assert_eq!(
            d.op,
            PrivOp::Invlpg {
                mem: MemRef {
                    base: Some(4),
                    index: Some(12),
                    ..base
                }
            }
        );
        // smsw %fs:(%rbx) with 67: 64 67 0f 01 23.
        let d = dec(&[0x64, 0x67, 0x0f, 0x01, 0x23]);
        assert_eq!(
            d.op,
            PrivOp::Smsw {
                dst: RmOperand::Mem(MemRef {
                    base: Some(3),
                    addr32: true,
                    segment: Some(Segment::Fs),
                    ..base
                })
            }
        );
        assert_eq!((d.operand_size, d.address_size), (2, 4));
        // lmsw 0x7f(%rbp): 0f 01 75 7f (mod=01, rm=101 is rbp+disp8).
        let d = dec(&[0x0f, 0x01, 0x75, 0x7f]);
        assert_eq!(
            d.op,
            PrivOp::Lmsw {
                src: RmOperand::Mem(MemRef {
                    base: Some(5),
                    disp: 0x7f,
                    ..base
                })
            }
        );
        // Other 0F 01 forms are not ours: SGDT, XGETBV, SWAPGS, MONITOR.
        for b in [
            &[0x0f, 0x01, 0x00][..],
            &[0x0f, 0x01, 0xd0],
            &[0x0f, 0x01, 0xf8],
            &[0x0f, 0x01, 0xc8],
        ] {
            assert_eq!(decode(b), Err(DecodeError::Unsupported), "{b:02x?}");
        }
    }

    #[test]
    fn prefixes_recorded() {
        let d = dec(&[0xf3, 0x66, 0x2e, 0x67, 0x41, 0x0f, 0x20, 0xd8]);
        assert_eq!(d.op, PrivOp::MovFromCr { cr: 3, gpr: 8 });
        assert_eq!(d.len, 8);
        let p = d.prefixes;
        assert!(p.opsize && p.addrsize && !p.lock);
        assert_eq!(p.rep, Some(Rep::Rep));
        assert_eq!(p.segment, Some(Segment::Cs));
        assert_eq!(p.rex, 0x41);
        assert_eq!(d.address_size, 4);
        // Last segment override and last F2/F3 win.
        let p = dec(&[0x26, 0x36, 0x3e, 0x65, 0xf3, 0xf2, 0x0f, 0xa2]).prefixes;
        assert_eq!(p.segment, Some(Segment::Gs));
        assert_eq!(p.rep, Some(Rep::Repne));
        // A REX followed by a legacy prefix is ignored: 41 66 0f 20 c0 is rax.
        let d = dec(&[0x41, 0x66, 0x0f, 0x20, 0xc0]);
        assert_eq!(d.op, PrivOp::MovFromCr { cr: 0, gpr: 0 });
        assert_eq!(d.prefixes.rex, 0);
        // Two REX bytes: the last one counts.
        assert_eq!(
            dec(&[0x44, 0x41, 0x0f, 0x20, 0xc0]).op,
            PrivOp::MovFromCr { cr: 0, gpr: 8 }
        );
        // LOCK is #UD on everything but MOV CR.
        for b in [
            &[0xf0, 0x0f, 0xa2][..],
            &[0xf0, 0xe4, 0x60],
            &[0xf0, 0xcd, 0x80],
            &[0xf0, 0x0f, 0x32],
        ] {
            assert_eq!(decode(b), Err(DecodeError::Invalid), "{b:02x?}");
        }
    }

    #[test]
    fn truncated_never_guesses() {
        let full: &[&[u8]] = &[
            &[0x0f, 0x20, 0xd8],
            &[0x45, 0x0f, 0x22, 0xc7],
            &[0xcd, 0x80],
            &[0x66, 0xe5, 0x71],
            &[0x0f, 0x01, 0xf9],
            &[0x43, 0x0f, 0x01, 0xbc, 0xac, 0x78, 0x56, 0x34, 0x12],
            &[0x0f, 0x01, 0x3d, 0x10, 0, 0, 0],
            &[0x0f, 0x01, 0x75, 0x7f],
            &[0x0f, 0x0b, b'x', b'e', b'n', 0x0f, 0xa2],
            &[0xf3, 0x66, 0x2e, 0x67, 0x41, 0x0f, 0x20, 0xd8],
        ];
        for b in full {
            assert!(decode(b).is_ok(), "{b:02x?}");
            for n in 0..b.len() {
                assert_eq!(
                    decode(&b[..n]),
                    Err(DecodeError::Truncated),
                    "{:02x?}",
                    &b[..n]
                );
            }
        }
        // A lone `ud2` might still be the forced prefix.
        assert_eq!(decode(&[0x0f, 0x0b]), Err(DecodeError::Truncated));
        assert_eq!(
            decode(&[0x0f, 0x0b, b'x', b'e']),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn fifteen_byte_limit() {
        // 13 prefixes + 0F A2 = 15 bytes: fine.
        let mut b = std::vec![0x66u8; 13];
        b.extend_from_slice(&[0x0f, 0xa2]);
        let d = dec(&b);
        assert_eq!((d.op, d.len), (PrivOp::Cpuid, 15));
        // 14 prefixes + 0F A2 = 16 bytes: #GP on hardware.
        let mut b = std::vec![0x2e_u8; 14];
        b.extend_from_slice(&[0x0f, 0xa2]);
        assert_eq!(decode(&b), Err(DecodeError::Invalid));
        // Only 15 bytes given, all prefixes: still invalid, not truncated.
        assert_eq!(decode(&[0xf3; 15]), Err(DecodeError::Invalid));
        assert_eq!(decode(&[0xf3; 14]), Err(DecodeError::Truncated));
        // A 16-byte INVLPG (7 prefixes + 9 bytes) is invalid.
        let mut b = std::vec![0x3e_u8; 7];
        b.extend_from_slice(&[0x43, 0x0f, 0x01, 0xbc, 0xac, 0x78, 0x56, 0x34, 0x12]);
        assert_eq!(decode(&b), Err(DecodeError::Invalid));
        assert_eq!(dec(&b[1..]).len, 15);
    }

    #[test]
    fn unsupported() {
        for b in [
            &[0x90][..],         // NOP
            &[0x0f, 0x05],       // SYSCALL
            &[0x0f, 0x0b, 0x90], // UD2, not forced
            &[0x0f, 0x0b, b'x', b'e', b'N'],
            &[0x0f, 0x00, 0xc0], // SLDT
            &[0x0f, 0xff],       // UD0
            &[0xc3],
            &[0x48, 0x89, 0xc0],
        ] {
            assert_eq!(decode(b), Err(DecodeError::Unsupported), "{b:02x?}");
        }
        assert_eq!(decode(&[]), Err(DecodeError::Truncated));
    }

    #[test]
    fn forced_emulation() {
        // ud2; .ascii "xen"; cpuid = 0f 0b 78 65 6e 0f a2.
        let d = dec(&[0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0xa2]);
        assert_eq!((d.op, d.len, d.forced), (PrivOp::Cpuid, 7, true));
        let d = dec(&[0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x66, 0xed]);
        assert_eq!(
            (d.op, d.len, d.forced, d.operand_size),
            (PrivOp::In { port: Port::Dx }, 7, true, 2)
        );
        let d = dec(&[0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0x20, 0xd8]);
        assert_eq!(
            (d.op, d.len, d.forced),
            (PrivOp::MovFromCr { cr: 3, gpr: 0 }, 8, true)
        );
        // A prefix before the ud2 hides the signature.
        assert_eq!(
            decode(&[0x66, 0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0xa2]),
            Err(DecodeError::Unsupported)
        );
        // Signature twice: the inner ud2 is not ours.
        assert_eq!(
            decode(&[0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0xa2]),
            Err(DecodeError::Unsupported)
        );
    }

    #[test]
    fn forced_emulation_is_at_most_15_bytes_signature_included() {
        // Found by fuzzing (fuzz/fuzz_targets/hvm_mmio.rs): ten prefixes
        // after the signature made a complete 15-byte fetch "Truncated",
        // and longer slices decoded to more than 15 bytes.
        let mut b = FORCED_EMUL_SIG.to_vec();
        b.extend_from_slice(&[0x64; 10]);
        assert_eq!(decode(&b), Err(DecodeError::Invalid));
        b.extend_from_slice(&[0x0f, 0xa2]);
        assert_eq!(decode(&b), Err(DecodeError::Invalid));
        // Eight prefixes and cpuid: exactly 15 bytes, fine.
        let mut b = FORCED_EMUL_SIG.to_vec();
        b.extend_from_slice(&[0x64; 8]);
        b.extend_from_slice(&[0x0f, 0xa2]);
        let d = dec(&b);
        assert_eq!((d.op, d.len, d.forced), (PrivOp::Cpuid, 15, true));
        // Fewer than 15 bytes fetched: the rest may follow.
        assert_eq!(decode(&b[..12]), Err(DecodeError::Truncated));
    }

    // ----------------------------------------------------------------- env

    fn host_cpuid(leaf: u32, sub: u32) -> Leaf {
        let sig = *b"GenuineIntel";
        let w = |i: usize| u32::from_le_bytes([sig[i], sig[i + 1], sig[i + 2], sig[i + 3]]);
        match (leaf, sub) {
            (0, _) => [0xd, w(0), w(8), w(4)],
            // TSC, DE, MSR, PAE, ...; XSAVE, AVX.
            (1, _) => [0x306f1, 0, feat::l1c::XSAVE | feat::l1c::AVX, 0x178b_fbff],
            (7, 0) => [
                0,
                feat::l7b::FSGSBASE,
                feat::l7c::RDPID,
                feat::l7d::IBRSB | feat::l7d::SSBD,
            ],
            (0xd, 0) => [7, 832, 832, 0],
            (0xd, 2) => [256, 576, 0, 0],
            (0x8000_0000, _) => [0x8000_0008, 0, 0, 0],
            (0x8000_0001, _) => [
                0,
                0,
                1,
                feat::e1d::LM | feat::e1d::NX | feat::e1d::SYSCALL | feat::e1d::RDTSCP,
            ],
            (0x8000_0008, _) => [0x3027, 0, 0, 0],
            _ => [0; 4],
        }
    }

    struct Env {
        policy: PvCpuidPolicy,
        kernel: bool,
        vcpu: u32,
        iopl: u8,
        gp_handler: bool,
        dpl: [u8; 256],
        host_cr0: u64,
        ts: bool,
        ts_calls: Vec<bool>,
        cr2: u64,
        cr3_pfn: u64,
        cr3_result: Cr3Result,
        cr4: u64,
        xen_cr4: u64,
        xcr0: u64,
        dr: [u64; 8],
        dr_result: Result<(), DrFault>,
        bps: IoBreakpoints,
        bases: [u64; 3],
        efer: u64,
        tsc: u64,
        tsc_aux: u32,
        spec_ctrl: u64,
        cmd_writes: Vec<(u32, u64)>,
        host_msrs: Vec<(u32, u64)>,
        faulting_avail: bool,
        faulting: bool,
        hypercall_page: Option<u64>,
        hypercall_result: HypercallPageResult,
        relaxed: bool,
        iobmp: Vec<u8>,
        iobmp_fault: Option<u64>,
        permitted: Vec<(u16, u16)>,
        io: Vec<(char, u16, u8, u32)>,
        virt: Vec<(VirtIo, Option<u32>)>,
        flush_ok: bool,
        wbinvds: u32,
    }

    impl Env {
        fn new() -> Self {
            Self {
                policy: PvCpuidPolicy::from_host(host_cpuid, PolicyOptions::default()),
                kernel: true,
                vcpu: 0,
                iopl: 0,
                gp_handler: true,
                dpl: [0; 256],
                host_cr0: 0x8005_003b, // PG|WP|NE|ET|TS|MP|PE
                ts: false,
                ts_calls: Vec::new(),
                cr2: 0,
                cr3_pfn: 0x1234,
                cr3_result: Cr3Result::Ok,
                cr4: 0,
                xen_cr4: 0x0034_06e0,
                xcr0: 3,
                dr: [0; 8],
                dr_result: Ok(()),
                bps: IoBreakpoints::default(),
                bases: [0; 3],
                efer: 0xd01 | (1 << 12),
                tsc: 0x1_0000_0002,
                tsc_aux: 7,
                spec_ctrl: 0,
                cmd_writes: Vec::new(),
                host_msrs: std::vec![(MSR_IA32_MISC_ENABLE, 0x85_0089), (0x123, 55)],
                faulting_avail: true,
                faulting: false,
                hypercall_page: None,
                hypercall_result: HypercallPageResult::Ok,
                relaxed: false,
                iobmp: Vec::new(),
                iobmp_fault: None,
                permitted: Vec::new(),
                io: Vec::new(),
                virt: Vec::new(),
                flush_ok: false,
                wbinvds: 0,
            }
        }
    }

    impl PrivEnv for Env {
        fn guest_kernel_mode(&self) -> bool {
            self.kernel
        }
        fn vcpu_id(&self) -> u32 {
            self.vcpu
        }
        fn cpuid(&self, leaf: u32, subleaf: u32, source: CpuidSource) -> Leaf {
            let ctx = CpuidContext {
                source,
                kernel_mode: self.kernel,
                guest_cr4: self.cr4,
                ..CpuidContext::default()
            };
            self.policy.guest_cpuid(leaf, subleaf, &ctx)
        }
        fn iopl(&self) -> u8 {
            self.iopl
        }
        fn gp_handler_registered(&self) -> bool {
            self.gp_handler
        }
        fn trap_dpl(&self, vector: u8) -> u8 {
            self.dpl[usize::from(vector)]
        }
        fn host_cr0(&self) -> u64 {
            self.host_cr0
        }
        fn guest_ts(&self) -> bool {
            self.ts
        }
        fn fpu_taskswitch(&mut self, ts: bool) {
            self.ts = ts;
            self.ts_calls.push(ts);
        }
        fn cr2(&self) -> u64 {
            self.cr2
        }
        fn set_cr2(&mut self, val: u64) {
            self.cr2 = val;
        }
        fn cr3_pfn(&self) -> u64 {
            self.cr3_pfn
        }
        fn new_guest_cr3(&mut self, pfn: u64) -> Cr3Result {
            if self.cr3_result == Cr3Result::Ok {
                self.cr3_pfn = pfn;
            }
            self.cr3_result
        }
        fn cr4(&self) -> u64 {
            self.cr4
        }
        fn xen_cr4(&self) -> u64 {
            self.xen_cr4
        }
        fn set_cr4(&mut self, val: u64) {
            self.cr4 = val;
        }
        fn set_xcr0(&mut self, val: u64) -> bool {
            self.xcr0 = val;
            true
        }
        fn debugreg(&self, n: u8) -> u64 {
            self.dr[usize::from(n & 7)]
        }
        fn set_debugreg(&mut self, n: u8, val: u64) -> Result<(), DrFault> {
            if self.dr_result.is_ok() {
                self.dr[usize::from(n & 7)] = val;
            }
            self.dr_result
        }
        fn io_breakpoints(&self) -> IoBreakpoints {
            self.bps
        }
        fn seg_base(&self, reg: BaseReg) -> u64 {
            self.bases[reg as usize]
        }
        fn set_seg_base(&mut self, reg: BaseReg, val: u64) {
            self.bases[reg as usize] = val;
        }
        fn host_efer(&self) -> u64 {
            self.efer
        }
        fn guest_tsc(&mut self) -> u64 {
            self.tsc
        }
        fn tsc_aux(&self) -> u32 {
            self.tsc_aux
        }
        fn set_tsc_aux(&mut self, val: u32) {
            self.tsc_aux = val;
        }
        fn spec_ctrl(&self) -> u64 {
            self.spec_ctrl
        }
        fn set_spec_ctrl(&mut self, val: u64) {
            self.spec_ctrl = val;
        }
        fn host_wrmsr_cmd(&mut self, msr: u32, val: u64) {
            self.cmd_writes.push((msr, val));
        }
        fn host_rdmsr(&self, msr: u32) -> Option<u64> {
            self.host_msrs.iter().find(|m| m.0 == msr).map(|m| m.1)
        }
        fn cpuid_faulting_available(&self) -> bool {
            self.faulting_avail
        }
        fn cpuid_faulting(&self) -> bool {
            self.faulting
        }
        fn set_cpuid_faulting(&mut self, on: bool) {
            self.faulting = on;
        }
        fn write_hypercall_page(&mut self, gfn: u64) -> HypercallPageResult {
            self.hypercall_page = Some(gfn);
            self.hypercall_result
        }
        fn msr_relaxed(&self) -> bool {
            self.relaxed
        }
        fn iobmp_limit(&self) -> u32 {
            self.iobmp.len() as u32 * 8
        }
        fn read_iobmp(&mut self, offset: u32) -> Result<u16, u64> {
            if let Some(a) = self.iobmp_fault {
                return Err(a);
            }
            let o = offset as usize;
            let lo = self.iobmp.get(o).copied().unwrap_or(0xff);
            let hi = self.iobmp.get(o + 1).copied().unwrap_or(0xff);
            Ok(u16::from_le_bytes([lo, hi]))
        }
        fn ioports_permitted(&self, first: u16, last: u16) -> bool {
            self.permitted.iter().any(|&(a, b)| a <= first && last <= b)
        }
        fn port_in(&mut self, port: u16, size: u8) -> u32 {
            self.io.push(('i', port, size, 0));
            0xa1b2_c3d4 & size_mask(size)
        }
        fn port_out(&mut self, port: u16, size: u8, val: u32) {
            self.io.push(('o', port, size, val));
        }
        fn virt_io_read(&mut self, dev: VirtIo) -> u32 {
            self.virt.push((dev, None));
            match dev {
                VirtIo::PciCf8 => 0x8000_1234,
                VirtIo::Cmos(_) => 0x42,
                _ => !0,
            }
        }
        fn virt_io_write(&mut self, dev: VirtIo, val: u32) {
            self.virt.push((dev, Some(val)));
        }
        fn cache_flush_permitted(&self) -> bool {
            self.flush_ok
        }
        fn wbinvd(&mut self) {
            self.wbinvds += 1;
        }
    }

    const RIP: u64 = 0xffff_ffff_8100_0000;

    fn regs() -> RegFile {
        let mut r = RegFile {
            gpr: [0; 16],
            rip: RIP,
            rflags: 0x202,
        };
        for (i, g) in r.gpr.iter_mut().enumerate() {
            *g = 0x1111_1111_1111_1111u64.wrapping_mul(i as u64 + 1);
        }
        r
    }

    fn gp(env: &mut Env, bytes: &[u8], r: &RegFile) -> Effect {
        handle_gp(bytes, None, r, 0, env)
    }

    fn done(e: Effect) -> (RegFile, u32) {
        match e {
            Effect::Done { regs, dr6 } => (regs, dr6),
            other => panic!("expected Done, got {other:?}"),
        }
    }

    fn gp0_at(rip: u64) -> Effect {
        Effect::Fault {
            vector: vector::GP,
            error_code: Some(0),
            rip,
            cr2: None,
        }
    }

    fn ud_at(rip: u64) -> Effect {
        Effect::Fault {
            vector: vector::UD,
            error_code: None,
            rip,
            cr2: None,
        }
    }

    #[allow(clippy::result_large_err)] // test helper: compared with whole effects
    fn rdmsr(env: &mut Env, msr: u32) -> Result<u64, Effect> {
        let mut r = regs();
        r.gpr[gpr::RCX] = 0xdead_0000_0000_0000 | u64::from(msr);
        match gp(env, &[0x0f, 0x32], &r) {
            Effect::Done { regs: o, .. } => {
                assert_eq!(o.rip, RIP + 2);
                assert_eq!(o.gpr[gpr::RAX] >> 32, 0, "upper half of rax cleared");
                assert_eq!(o.gpr[gpr::RDX] >> 32, 0, "upper half of rdx cleared");
                Ok(o.gpr[gpr::RAX] | (o.gpr[gpr::RDX] << 32))
            }
            e => Err(e),
        }
    }

    #[allow(clippy::result_large_err)] // test helper: compared with whole effects
    fn wrmsr(env: &mut Env, msr: u32, val: u64) -> Result<(), Effect> {
        let mut r = regs();
        r.gpr[gpr::RCX] = u64::from(msr);
        // Upper halves of rax/rdx are ignored.
        r.gpr[gpr::RAX] = 0xffff_ffff_0000_0000 | (val & 0xffff_ffff);
        r.gpr[gpr::RDX] = 0xeeee_eeee_0000_0000 | (val >> 32);
        match gp(env, &[0x0f, 0x30], &r) {
            Effect::Done { regs: o, .. } => {
                assert_eq!(o.rip, RIP + 2);
                Ok(())
            }
            e => Err(e),
        }
    }

    // ------------------------------------------------------------ emulation

    #[test]
    fn mov_cr0_and_clts() {
        let mut env = Env::new();
        env.ts = true;
        let (o, _) = done(gp(&mut env, &[0x0f, 0x20, 0xc3], &regs())); // mov %cr0,%rbx
        assert_eq!(o.gpr[gpr::RBX], 0x8005_003b);
        assert_eq!(o.rip, RIP + 3);
        env.ts = false;
        let (o, _) = done(gp(&mut env, &[0x0f, 0x20, 0xc3], &regs()));
        assert_eq!(o.gpr[gpr::RBX], 0x8005_0033, "TS is the guest's");
        // Writing CR0 may only flip TS.
        let mut r = regs();
        r.gpr[gpr::RAX] = 0x8005_003b;
        done(gp(&mut env, &[0x0f, 0x22, 0xc0], &r));
        assert_eq!(env.ts_calls, [true]);
        r.gpr[gpr::RAX] = 0x8005_0033;
        done(gp(&mut env, &[0x0f, 0x22, 0xc0], &r));
        r.gpr[gpr::RAX] = 0x0005_003b; // clear PG
        assert_eq!(gp(&mut env, &[0x0f, 0x22, 0xc0], &r), gp0_at(RIP));
        assert_eq!(env.ts_calls, [true, false]);
        // CLTS (0F 06).
        env.ts = true;
        let (o, _) = done(gp(&mut env, &[0x0f, 0x06], &regs()));
        assert_eq!(o.rip, RIP + 2);
        assert!(!env.ts);
    }

    #[test]
    fn mov_cr2_cr3_cr4() {
        let mut env = Env::new();
        let mut r = regs();
        r.gpr[13] = 0xdead_beef;
        // 44 0f 22 d5 is REX.R: mov %rbp,%cr10 → #GP(0).
        assert_eq!(gp(&mut env, &[0x44, 0x0f, 0x22, 0xd5], &r), gp0_at(RIP));
        assert_eq!(env.cr2, 0);
        done(gp(&mut env, &[0x41, 0x0f, 0x22, 0xd5], &r)); // mov %r13,%cr2 (REX.B)
        assert_eq!(env.cr2, 0xdead_beef);
        let (o, _) = done(gp(&mut env, &[0x0f, 0x20, 0xd1], &regs())); // mov %cr2,%rcx
        assert_eq!(o.gpr[gpr::RCX], 0xdead_beef);
        // CR3 reads as xen_pfn_to_cr3(gfn).
        let (o, _) = done(gp(&mut env, &[0x0f, 0x20, 0xdf], &regs())); // mov %cr3,%rdi
        assert_eq!(o.gpr[gpr::RDI], 0x1234 << 12);
        r.gpr[gpr::RSI] = 0x0567_8000;
        done(gp(&mut env, &[0x0f, 0x22, 0xde], &r)); // mov %rsi,%cr3
        assert_eq!(env.cr3_pfn, 0x5678);
        env.cr3_result = Cr3Result::Restart;
        assert_eq!(gp(&mut env, &[0x0f, 0x22, 0xde], &r), Effect::Retry);
        env.cr3_result = Cr3Result::Invalid;
        assert_eq!(gp(&mut env, &[0x0f, 0x22, 0xde], &r), gp0_at(RIP));
        // CR4 writes go through pv_fixup_guest_cr4.
        r.gpr[gpr::RAX] = u64::MAX;
        done(gp(&mut env, &[0x0f, 0x22, 0xe0], &r));
        let guest = CR4_TSD | CR4_DE | CR4_FSGSBASE | CR4_OSXSAVE;
        assert_eq!(env.cr4, guest | (0x0034_06e0 & PV_CR4_GUEST_VISIBLE_MASK));
        let (o, _) = done(gp(&mut env, &[0x0f, 0x20, 0xe0], &regs()));
        assert_eq!(o.gpr[gpr::RAX], env.cr4);
        // CR1, CR5..7, CR8 and beyond: not emulated.
        for b in [
            &[0x0f, 0x20, 0xc8][..],
            &[0x0f, 0x22, 0xe8],
            &[0x44, 0x0f, 0x20, 0xc0],
            &[0xf0, 0x0f, 0x22, 0xc0],
        ] {
            assert_eq!(gp(&mut env, b, &r), gp0_at(RIP), "{b:02x?}");
        }
    }

    #[test]
    fn pv_fixup_guest_cr4_policy() {
        let none = Cr4Policy::default();
        assert_eq!(pv_fixup_guest_cr4(u64::MAX, none, 0), 0);
        let all = Cr4Policy {
            tsc: true,
            de: true,
            fsgsbase: true,
            xsave: true,
        };
        assert_eq!(pv_fixup_guest_cr4(u64::MAX, all, 0), PV_CR4_GUEST_MASK);
        assert_eq!(
            pv_fixup_guest_cr4(0, all, u64::MAX),
            PV_CR4_GUEST_VISIBLE_MASK
        );
        let no_fsgs = Cr4Policy {
            fsgsbase: false,
            ..all
        };
        assert_eq!(
            pv_fixup_guest_cr4(CR4_FSGSBASE | CR4_DE, no_fsgs, 0),
            CR4_DE
        );
    }

    #[test]
    fn privileged_ops_need_guest_kernel_mode() {
        let mut env = Env::new();
        env.kernel = false;
        for b in [
            &[0x0f, 0x20, 0xd8][..],
            &[0x0f, 0x22, 0xd8],
            &[0x0f, 0x21, 0xc0],
            &[0x0f, 0x23, 0xc0],
            &[0x0f, 0x06],
            &[0x0f, 0x09],
            &[0x0f, 0x30],
            &[0x0f, 0x32],
        ] {
            assert_eq!(gp(&mut env, b, &regs()), gp0_at(RIP), "{b:02x?}");
        }
        assert!(env.ts_calls.is_empty());
    }

    #[test]
    fn mov_dr() {
        let mut env = Env::new();
        env.dr[7] = 0x400;
        env.dr[6] = 0xffff_0ff0;
        let (o, _) = done(gp(&mut env, &[0x0f, 0x21, 0xf8], &regs())); // mov %dr7,%rax
        assert_eq!(o.gpr[gpr::RAX], 0x400);
        // DR4/DR5 alias DR6/DR7 without CR4.DE...
        let (o, _) = done(gp(&mut env, &[0x0f, 0x21, 0xe1], &regs())); // mov %dr4,%rcx
        assert_eq!(o.gpr[gpr::RCX], 0xffff_0ff0);
        let mut r = regs();
        r.gpr[9] = 0x1234;
        done(gp(&mut env, &[0x41, 0x0f, 0x23, 0xd9], &r)); // mov %r9,%dr3
        assert_eq!(env.dr[3], 0x1234);
        done(gp(&mut env, &[0x41, 0x0f, 0x23, 0xe9], &r)); // mov %r9,%dr5 → DR7
        assert_eq!(env.dr[7], 0x1234);
        // ...and #UD with it.
        env.cr4 = CR4_DE;
        assert_eq!(gp(&mut env, &[0x0f, 0x21, 0xe1], &regs()), ud_at(RIP));
        assert_eq!(gp(&mut env, &[0x0f, 0x23, 0xe9], &regs()), ud_at(RIP));
        env.dr_result = Err(DrFault::Gp);
        assert_eq!(gp(&mut env, &[0x0f, 0x23, 0xc0], &regs()), gp0_at(RIP));
        env.dr_result = Err(DrFault::Ud);
        assert_eq!(gp(&mut env, &[0x0f, 0x23, 0xc0], &regs()), ud_at(RIP));
    }

    #[test]
    fn msr_segment_bases() {
        let mut env = Env::new();
        for (msr, idx) in [(MSR_FS_BASE, 0), (MSR_GS_BASE, 1), (MSR_SHADOW_GS_BASE, 2)] {
            let v = 0xffff_8880_0000_1000 + idx as u64;
            wrmsr(&mut env, msr, v).unwrap();
            assert_eq!(env.bases[idx], v);
            assert_eq!(rdmsr(&mut env, msr), Ok(v));
            // Non-canonical: #GP, nothing written.
            assert_eq!(
                wrmsr(&mut env, msr, 0x0000_8000_0000_0000),
                Err(gp0_at(RIP))
            );
            assert_eq!(env.bases[idx], v);
        }
    }

    #[test]
    fn msr_efer_pat_apic_misc() {
        let mut env = Env::new();
        // Host EFER = SCE|LME|LMA|NXE|SVME: SVME hidden.
        assert_eq!(rdmsr(&mut env, MSR_EFER), Ok(0xd01));
        wrmsr(&mut env, MSR_EFER, 0xd01).unwrap();
        assert_eq!(wrmsr(&mut env, MSR_EFER, 0xd00), Err(gp0_at(RIP)));
        assert_eq!(wrmsr(&mut env, MSR_EFER, 0x1d01), Err(gp0_at(RIP)));
        assert_eq!(
            rdmsr(&mut env, MSR_IA32_CR_PAT),
            Ok(0x0007_0406 | (0x0501 << 32))
        );
        assert_eq!(rdmsr(&mut env, MSR_APIC_BASE), Ok(0xfee0_0900));
        env.vcpu = 3;
        assert_eq!(rdmsr(&mut env, MSR_APIC_BASE), Ok(0xfee0_0800));
        // MISC_ENABLE: PERF_AVAIL and MONITOR off, BTS/PEBS unavailable, xTPR off.
        let host = 0x85_0089u64;
        let want = (host & !(1 << 7) & !(1 << 18)) | (1 << 11) | (1 << 12) | (1 << 23);
        assert_eq!(rdmsr(&mut env, MSR_IA32_MISC_ENABLE), Ok(want));
        wrmsr(&mut env, MSR_IA32_MISC_ENABLE, 0).unwrap(); // ignored, not refused
        env.host_msrs.clear();
        assert_eq!(rdmsr(&mut env, MSR_IA32_MISC_ENABLE), Err(gp0_at(RIP)));
        assert_eq!(rdmsr(&mut env, MSR_IA32_PERF_CAPABILITIES), Ok(0));
        assert_eq!(rdmsr(&mut env, MSR_IA32_TSC), Ok(0x1_0000_0002));
        assert_eq!(rdmsr(&mut env, MSR_IA32_FEATURE_CONTROL), Ok(1));
        assert_eq!(rdmsr(&mut env, MSR_IA32_THERM_STATUS), Ok(0));
    }

    #[test]
    fn msr_unknown_and_relaxed() {
        let mut env = Env::new();
        // Unknown: #GP (msr_relaxed off), both directions.
        assert_eq!(rdmsr(&mut env, 0x123), Err(gp0_at(RIP)));
        assert_eq!(rdmsr(&mut env, 0xc001_1020), Err(gp0_at(RIP)));
        assert_eq!(wrmsr(&mut env, 0x123, 55), Err(gp0_at(RIP)));
        // x2APIC MSRs are not for PV.
        assert_eq!(rdmsr(&mut env, 0x802), Err(gp0_at(RIP)));
        assert_eq!(wrmsr(&mut env, 0x830, 0), Err(gp0_at(RIP)));
        // msr_relaxed: reads of MSRs the host has give 0, writes are dropped.
        env.relaxed = true;
        assert_eq!(rdmsr(&mut env, 0x123), Ok(0));
        wrmsr(&mut env, 0x123, 1).unwrap();
        assert_eq!(rdmsr(&mut env, 0x124), Err(gp0_at(RIP)));
        // A guest with no #GP handler reads 0 rather than dying, except for
        // Xen's own range.
        env.relaxed = false;
        env.gp_handler = false;
        assert_eq!(rdmsr(&mut env, 0x123), Ok(0));
        assert_eq!(rdmsr(&mut env, 0x124), Err(gp0_at(RIP)), "host lacks it");
        env.host_msrs.push((0x4000_0001, 9));
        assert_eq!(rdmsr(&mut env, 0x4000_0001), Err(gp0_at(RIP)));
        assert_eq!(
            wrmsr(&mut env, 0x123, 1),
            Err(gp0_at(RIP)),
            "writes never faked"
        );
    }

    #[test]
    fn msr_hypercall_page() {
        let mut env = Env::new();
        assert_eq!(rdmsr(&mut env, 0x4000_0000), Ok(0));
        assert_eq!(rdmsr(&mut env, 0x4000_0001), Err(gp0_at(RIP)));
        wrmsr(&mut env, 0x4000_0000, 0x1234_5000).unwrap();
        assert_eq!(env.hypercall_page, Some(0x12345));
        env.hypercall_page = None;
        assert_eq!(
            wrmsr(&mut env, 0x4000_0000, 0x1234_5001),
            Err(gp0_at(RIP)),
            "page index 1"
        );
        assert_eq!(env.hypercall_page, None);
        env.hypercall_result = HypercallPageResult::Invalid;
        assert_eq!(wrmsr(&mut env, 0x4000_0000, 0x1000), Err(gp0_at(RIP)));
        env.hypercall_result = HypercallPageResult::Retry;
        assert_eq!(wrmsr(&mut env, 0x4000_0000, 0x1000), Err(Effect::Retry));
        assert_eq!(
            wrmsr(&mut env, 0x4000_0200, 0x1000),
            Err(gp0_at(RIP)),
            "no Viridian shift"
        );
    }

    #[test]
    fn msr_speculation_and_faulting() {
        let mut env = Env::new();
        // IBRSB + SSBD offered: IBRS|STIBP|SSBD valid, PSFD not.
        wrmsr(&mut env, MSR_SPEC_CTRL, 0b111).unwrap();
        assert_eq!(env.spec_ctrl, 0b111);
        assert_eq!(rdmsr(&mut env, MSR_SPEC_CTRL), Ok(0b111));
        assert_eq!(wrmsr(&mut env, MSR_SPEC_CTRL, 1 << 7), Err(gp0_at(RIP)));
        wrmsr(&mut env, MSR_PRED_CMD, 1).unwrap();
        assert_eq!(env.cmd_writes, [(MSR_PRED_CMD, 1)]);
        assert_eq!(wrmsr(&mut env, MSR_PRED_CMD, 2), Err(gp0_at(RIP)));
        assert_eq!(
            rdmsr(&mut env, MSR_PRED_CMD),
            Err(gp0_at(RIP)),
            "write-only"
        );
        assert_eq!(
            wrmsr(&mut env, MSR_FLUSH_CMD, 1),
            Err(gp0_at(RIP)),
            "L1D_FLUSH hidden"
        );
        assert_eq!(rdmsr(&mut env, MSR_ARCH_CAPABILITIES), Err(gp0_at(RIP)));
        assert_eq!(wrmsr(&mut env, MSR_ARCH_CAPABILITIES, 0), Err(gp0_at(RIP)));
        // CPUID faulting.
        assert_eq!(rdmsr(&mut env, MSR_INTEL_PLATFORM_INFO), Ok(1 << 31));
        assert_eq!(
            wrmsr(&mut env, MSR_INTEL_PLATFORM_INFO, 0),
            Err(gp0_at(RIP))
        );
        wrmsr(&mut env, MSR_INTEL_MISC_FEATURES_ENABLES, 1).unwrap();
        assert!(env.faulting);
        assert_eq!(rdmsr(&mut env, MSR_INTEL_MISC_FEATURES_ENABLES), Ok(1));
        assert_eq!(
            wrmsr(&mut env, MSR_INTEL_MISC_FEATURES_ENABLES, 2),
            Err(gp0_at(RIP))
        );
        env.faulting_avail = false;
        assert_eq!(rdmsr(&mut env, MSR_INTEL_PLATFORM_INFO), Ok(0));
        assert_eq!(
            wrmsr(&mut env, MSR_INTEL_MISC_FEATURES_ENABLES, 1),
            Err(gp0_at(RIP))
        );
        // Microcode: Intel's "write 0" dance is accepted, nothing else.
        wrmsr(&mut env, MSR_AMD_PATCHLEVEL, 0).unwrap();
        assert_eq!(wrmsr(&mut env, MSR_AMD_PATCHLEVEL, 1), Err(gp0_at(RIP)));
        assert_eq!(wrmsr(&mut env, MSR_IA32_UCODE_WRITE, 0), Err(gp0_at(RIP)));
    }

    #[test]
    fn msr_tsc_aux_and_rdtscp() {
        let mut env = Env::new();
        assert_eq!(rdmsr(&mut env, MSR_TSC_AUX), Ok(7));
        wrmsr(&mut env, MSR_TSC_AUX, 9).unwrap();
        assert_eq!(wrmsr(&mut env, MSR_TSC_AUX, 1 << 32), Err(gp0_at(RIP)));
        let (o, _) = done(gp(&mut env, &[0x0f, 0x01, 0xf9], &regs()));
        assert_eq!(
            (o.gpr[gpr::RAX], o.gpr[gpr::RDX], o.gpr[gpr::RCX]),
            (2, 1, 9)
        );
        assert_eq!(o.rip, RIP + 3);
        // RDTSC (0F 31): CR4.TSD stops user mode only.
        let (o, _) = done(gp(&mut env, &[0x0f, 0x31], &regs()));
        assert_eq!((o.gpr[gpr::RAX], o.gpr[gpr::RDX]), (2, 1));
        env.cr4 = CR4_TSD;
        done(gp(&mut env, &[0x0f, 0x31], &regs()));
        env.kernel = false;
        assert_eq!(gp(&mut env, &[0x0f, 0x31], &regs()), gp0_at(RIP));
        assert_eq!(gp(&mut env, &[0x0f, 0x01, 0xf9], &regs()), gp0_at(RIP));
        env.cr4 = 0;
        done(gp(&mut env, &[0x0f, 0x31], &regs()));
    }

    #[test]
    fn msr_vmce_and_vpmu() {
        let mut env = Env::new();
        assert_eq!(
            rdmsr(&mut env, MSR_IA32_MCG_CAP),
            Ok(MCG_TES_P | MCG_SER_P | MCG_CMCI_P | 2)
        );
        assert_eq!(rdmsr(&mut env, MSR_IA32_MCG_STATUS), Ok(0));
        assert_eq!(rdmsr(&mut env, MSR_IA32_MCG_CTL), Err(gp0_at(RIP)));
        assert_eq!(rdmsr(&mut env, 0x400), Ok(u64::MAX), "MC0_CTL");
        assert_eq!(rdmsr(&mut env, 0x405), Ok(0), "MC1_STATUS");
        assert_eq!(rdmsr(&mut env, 0x408), Err(gp0_at(RIP)), "bank 2 absent");
        assert_eq!(rdmsr(&mut env, 0x281), Ok(0), "MC1_CTL2");
        wrmsr(&mut env, 0x401, 0).unwrap();
        assert_eq!(wrmsr(&mut env, MSR_IA32_MCG_CAP, 0), Err(gp0_at(RIP)));
        // vPMU off: counters read 0, writes are dropped.
        assert_eq!(rdmsr(&mut env, 0xc1), Ok(0));
        wrmsr(&mut env, 0x186, 0x43_003c).unwrap();
        assert_eq!(
            rdmsr(&mut env, 0xc001_0004),
            Err(gp0_at(RIP)),
            "AMD counters on Intel"
        );
    }

    #[test]
    fn cpuid_from_gp() {
        let mut env = Env::new();
        let mut r = regs();
        r.gpr[gpr::RAX] = 0xffff_ffff_4000_0000;
        r.gpr[gpr::RCX] = 0xffff_ffff_0000_0000;
        let (o, dr6) = done(gp(&mut env, &[0x0f, 0xa2], &r));
        assert_eq!(o.gpr[gpr::RAX], 0x4000_0005);
        assert_eq!(o.gpr[gpr::RBX], 0x566e_6558);
        assert_eq!(o.gpr[gpr::RCX], 0x6558_4d4d);
        assert_eq!(o.gpr[gpr::RDX], 0x4d4d_566e);
        assert_eq!(o.rip, RIP + 2);
        assert_eq!(dr6, 0);
        assert_eq!(o.gpr[gpr::RSI], r.gpr[gpr::RSI], "others untouched");
        // Leaf 1 from user mode works unless the guest turned faulting on.
        r.gpr[gpr::RAX] = 1;
        env.kernel = false;
        let (o, _) = done(gp(&mut env, &[0x0f, 0xa2], &r));
        assert_ne!(o.gpr[gpr::RCX] & u64::from(feat::l1c::HYPERVISOR), 0);
        env.faulting = true;
        assert_eq!(gp(&mut env, &[0x0f, 0xa2], &r), gp0_at(RIP));
        env.kernel = true;
        done(gp(&mut env, &[0x0f, 0xa2], &r));
    }

    #[test]
    fn forced_cpuid() {
        let mut env = Env::new();
        let sig_cpuid = [0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0xa2];
        let mut r = regs();
        r.gpr[gpr::RAX] = 0x4000_0001;
        let (o, _) = done(handle_ud(&sig_cpuid, None, &r, &mut env));
        assert_eq!(o.gpr[gpr::RAX], (4 << 16) | 17);
        assert_eq!(o.rip, RIP + 7);
        // Only CPUID, and only without prefixes.
        let bad: &[&[u8]] = &[
            &[0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x66, 0x0f, 0xa2],
            &[0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0x32],
            &[0x0f, 0x0b, 0x78, 0x65, 0x6e, 0xec],
            &[0x0f, 0x0b, 0x90],
            &[0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x90],
        ];
        for b in bad {
            assert_eq!(handle_ud(b, None, &r, &mut env), ud_at(RIP), "{b:02x?}");
        }
        // A forced instruction arriving with #GP is not emulated.
        assert_eq!(gp(&mut env, &sig_cpuid, &r), gp0_at(RIP));
        // User mode with CPUID faulting: #GP past the signature.
        env.kernel = false;
        env.faulting = true;
        assert_eq!(handle_ud(&sig_cpuid, None, &r, &mut env), gp0_at(RIP + 5));
        // The fetch hit an unmapped page: #PF(0) at that address.
        let pf = handle_ud(&sig_cpuid[..3], Some(RIP + 3), &r, &mut env);
        assert_eq!(
            pf,
            Effect::Fault {
                vector: vector::PF,
                error_code: Some(0),
                rip: RIP,
                cr2: Some(RIP + 3)
            }
        );
        assert_eq!(handle_ud(&sig_cpuid[..3], None, &r, &mut env), ud_at(RIP));
    }

    #[test]
    fn port_io_emulation() {
        let mut env = Env::new();
        env.iopl = 1; // kernel CPL is 1
        env.permitted.push((0x3f8, 0x3ff));
        let mut r = regs();
        r.gpr[gpr::RDX] = 0xffff_0000_0000_03f8;
        // in (%dx),%al keeps the rest of rax.
        let (o, _) = done(gp(&mut env, &[0xec], &r));
        assert_eq!(o.gpr[gpr::RAX], (r.gpr[gpr::RAX] & !0xff) | 0xd4);
        assert_eq!(o.rip, RIP + 1);
        // in (%dx),%ax keeps bits 16..63; in (%dx),%eax zero-extends.
        let (o, _) = done(gp(&mut env, &[0x66, 0xed], &r));
        assert_eq!(o.gpr[gpr::RAX], (r.gpr[gpr::RAX] & !0xffff) | 0xc3d4);
        assert_eq!(o.rip, RIP + 2);
        let (o, _) = done(gp(&mut env, &[0xed], &r));
        assert_eq!(o.gpr[gpr::RAX], 0xa1b2_c3d4);
        // out %al,(%dx) / out %eax,$imm8 not permitted → no hardware access.
        done(gp(&mut env, &[0xee], &r));
        assert_eq!(env.io.last(), Some(&('o', 0x3f8, 1, 0x11)));
        done(gp(&mut env, &[0xe7, 0x80], &r));
        assert_eq!(
            env.io.last(),
            Some(&('o', 0x3f8, 1, 0x11)),
            "port 0x80 not permitted: dropped"
        );
        // Denied by IOPL with no bitmap: #GP(0).
        env.iopl = 0;
        assert_eq!(gp(&mut env, &[0xec], &r), gp0_at(RIP));
        // User mode needs IOPL 3.
        env.iopl = 3;
        env.kernel = false;
        done(gp(&mut env, &[0xec], &r));
        env.iopl = 1;
        assert_eq!(gp(&mut env, &[0xec], &r), gp0_at(RIP));
    }

    #[test]
    fn io_bitmap() {
        let mut env = Env::new();
        env.permitted.push((0, 0xffff));
        env.iobmp = std::vec![0xff; 0x80]; // covers ports 0..0x400, all denied
        env.iobmp[0x3f8 >> 3] = 0x00; // 0x3f8..0x3ff allowed
        let mut r = regs();
        r.gpr[gpr::RDX] = 0x3f8;
        done(gp(&mut env, &[0xed], &r));
        r.gpr[gpr::RDX] = 0x3fd;
        // 0x3fd..0x400 spans into the next (denied) byte.
        assert_eq!(gp(&mut env, &[0xed], &r), gp0_at(RIP));
        done(gp(&mut env, &[0x66, 0xed], &r)); // 0x3fd..0x3ff
                                               // Beyond the bitmap: denied.
        r.gpr[gpr::RDX] = 0x400;
        assert_eq!(gp(&mut env, &[0xec], &r), gp0_at(RIP));
        // The bitmap is unreadable: #PF at the address the env reports.
        env.iobmp_fault = Some(0x7000_0000);
        r.gpr[gpr::RDX] = 0x3f8;
        assert_eq!(
            gp(&mut env, &[0xec], &r),
            Effect::Fault {
                vector: vector::PF,
                error_code: Some(0),
                rip: RIP,
                cr2: Some(0x7000_0000)
            }
        );
    }

    #[test]
    fn virtualised_ports() {
        let mut env = Env::new();
        env.iopl = 1;
        env.permitted.push((0, 0xffff)); // even full permission...
        let mut r = regs();
        // ...never reaches CONFIG_ADDRESS as a dword, nor the RTC.
        r.gpr[gpr::RDX] = 0xcf8;
        let (o, _) = done(gp(&mut env, &[0xed], &r));
        assert_eq!(o.gpr[gpr::RAX], 0x8000_1234);
        assert_eq!(env.virt.last(), Some(&(VirtIo::PciCf8, None)));
        r.gpr[gpr::RAX] = 0x8000_0010;
        done(gp(&mut env, &[0xef], &r));
        assert_eq!(env.virt.last(), Some(&(VirtIo::PciCf8, Some(0x8000_0010))));
        let (o, _) = done(gp(&mut env, &[0xe4, 0x71], &regs()));
        assert_eq!(o.gpr[gpr::RAX] & 0xff, 0x42);
        assert_eq!(env.virt.last(), Some(&(VirtIo::Cmos(0x71), None)));
        assert!(env.io.is_empty(), "no hardware access");
        // A byte of 0xcf8 with permission is a plain hardware access.
        r.gpr[gpr::RDX] = 0xcf8;
        done(gp(&mut env, &[0xec], &r));
        assert_eq!(env.io.last(), Some(&('i', 0xcf8, 1, 0)));
        // Without permission: PIT, CONFIG_DATA pieces, and all-ones.
        env.permitted.clear();
        env.virt.clear();
        done(gp(&mut env, &[0xe4, 0x61], &regs()));
        assert_eq!(env.virt, [(VirtIo::Pit(0x61), None)]);
        env.virt.clear();
        r.gpr[gpr::RDX] = 0xcfe;
        done(gp(&mut env, &[0xed], &r)); // dword at 0xcfe: 2 bytes of data, then 0xd00..
        assert_eq!(
            env.virt,
            [(VirtIo::PciCfgData { offset: 2, size: 2 }, None)]
        );
        r.gpr[gpr::RDX] = 0x1234;
        let (o, _) = done(gp(&mut env, &[0xed], &r));
        assert_eq!(o.gpr[gpr::RAX], 0xffff_ffff);
        // Partly permitted: low byte real, high byte all ones.
        env.permitted.push((0x1234, 0x1234));
        let (o, _) = done(gp(&mut env, &[0x66, 0xed], &r));
        assert_eq!(o.gpr[gpr::RAX] & 0xffff, 0xffd4);
        assert_eq!(env.io.last(), Some(&('i', 0x1234, 1, 0)));
        // Writes split the same way.
        r.gpr[gpr::RAX] = 0xaabb_ccdd;
        done(gp(&mut env, &[0xef], &r));
        assert_eq!(env.io.last(), Some(&('o', 0x1234, 1, 0xdd)));
        // Word-wide where both bytes are permitted.
        env.permitted.push((0x1236, 0x1237));
        r.gpr[gpr::RDX] = 0x1236;
        done(gp(&mut env, &[0x66, 0xef], &r));
        assert_eq!(env.io.last(), Some(&('o', 0x1236, 2, 0xccdd)));
        // Port 0xffff with a dword never wraps into permission checks.
        r.gpr[gpr::RDX] = 0xffff;
        done(gp(&mut env, &[0xed], &r));
    }

    #[test]
    fn io_breakpoints_and_single_step() {
        let mut env = Env::new();
        env.iopl = 1;
        env.permitted.push((0, 0xffff));
        env.cr4 = CR4_DE;
        env.bps = IoBreakpoints {
            dr: [0x3f8, 0x60, 0x3fc, 0],
            dr7: (3 << 18) | (1 << 26), // LEN0=4, LEN1=1 (00), LEN2=2
            dr7_emul: 0b11_0011,        // BP0, BP2 enabled
        };
        let mut r = regs();
        r.gpr[gpr::RDX] = 0x3fa;
        let (_, dr6) = done(gp(&mut env, &[0xec], &r));
        assert_eq!(dr6, 0b001);
        r.gpr[gpr::RDX] = 0x3fb;
        let (_, dr6) = done(gp(&mut env, &[0x66, 0xed], &r)); // 0x3fb..0x3fc
        assert_eq!(dr6, 0b101);
        let (_, dr6) = done(gp(&mut env, &[0xe4, 0x60], &regs()));
        assert_eq!(dr6, 0, "BP1 not enabled");
        env.cr4 = 0;
        r.gpr[gpr::RDX] = 0x3fa;
        let (_, dr6) = done(gp(&mut env, &[0xec], &r));
        assert_eq!(dr6, 0, "CR4.DE off");
        // TF set: single-step trap after the emulated instruction.
        r.rflags |= RFLAGS_TF;
        let (_, dr6) = done(gp(&mut env, &[0xec], &r));
        assert_eq!(dr6, DR6_BS);
    }

    #[test]
    fn cli_sti() {
        let mut env = Env::new();
        let r = regs();
        assert_eq!(gp(&mut env, &[0xfa], &r), gp0_at(RIP));
        env.iopl = 1;
        let (o, _) = done(gp(&mut env, &[0xfa], &r));
        assert_eq!(o.rip, RIP + 1);
        assert_eq!(o.rflags, r.rflags, "IF untouched: Xen treats it as a no-op");
        let (o, _) = done(gp(&mut env, &[0x66, 0xfb], &r));
        assert_eq!(o.rip, RIP + 2);
        env.kernel = false;
        assert_eq!(gp(&mut env, &[0xfb], &r), gp0_at(RIP));
    }

    #[test]
    fn software_interrupts() {
        let mut env = Env::new();
        env.dpl[0x80] = 3;
        env.dpl[0x81] = 1;
        let r = regs();
        // Real hardware error code: vector << 3 | IDT.
        let e = handle_gp(&[0xcd, 0x80], None, &r, (0x80 << 3) | 2, &mut env);
        assert_eq!(
            e,
            Effect::SoftInt {
                vector: 0x80,
                rip: RIP + 2
            }
        );
        // QEMU 7.2's wrong code (N*16+2): the decoded N wins.
        let e = handle_gp(&[0xcd, 0x80], None, &r, (0x80 * 16 + 2) & 0xffff, &mut env);
        assert_eq!(
            e,
            Effect::SoftInt {
                vector: 0x80,
                rip: RIP + 2
            }
        );
        // Prefixed INT: the return address is past the whole instruction.
        let e = handle_gp(
            &[0x66, 0x2e, 0xcd, 0x80],
            None,
            &r,
            (0x80 << 3) | 2,
            &mut env,
        );
        assert_eq!(
            e,
            Effect::SoftInt {
                vector: 0x80,
                rip: RIP + 4
            }
        );
        // DPL 1 gate: the kernel (CPL 1) may, user (CPL 3) may not.
        let e = handle_gp(&[0xcd, 0x81], None, &r, (0x81 << 3) | 2, &mut env);
        assert_eq!(
            e,
            Effect::SoftInt {
                vector: 0x81,
                rip: RIP + 2
            }
        );
        env.kernel = false;
        let e = handle_gp(&[0xcd, 0x81], None, &r, (0x81 * 16 + 2) & 0xffff, &mut env);
        let want = Effect::Fault {
            vector: vector::GP,
            error_code: Some((0x81 << 3) | 2),
            rip: RIP,
            cr2: None,
        };
        assert_eq!(e, want, "the correct error code");
        // DPL 0: nobody.
        env.kernel = true;
        let e = handle_gp(&[0xcd, 0x20], None, &r, (0x20 << 3) | 2, &mut env);
        assert_eq!(
            e,
            Effect::Fault {
                vector: vector::GP,
                error_code: Some((0x20 << 3) | 2),
                rip: RIP,
                cr2: None
            }
        );
        // An IDT error code at something that is not INT: passed on as is.
        let e = handle_gp(&[0x0f, 0xa2], None, &r, 0x402, &mut env);
        assert_eq!(
            e,
            Effect::Fault {
                vector: vector::GP,
                error_code: Some(0x402),
                rip: RIP,
                cr2: None
            }
        );
        // INT with error code 0 (not a gate fault): passed on.
        assert_eq!(gp(&mut env, &[0xcd, 0x80], &r), gp0_at(RIP));
    }

    #[test]
    fn error_codes_passed_through() {
        let mut env = Env::new();
        let r = regs();
        for ec in [1u32, 0x10, 0x1c, 0x13, 0xffff_fff8] {
            let e = handle_gp(&[0x0f, 0x32], None, &r, ec, &mut env);
            assert_eq!(
                e,
                Effect::Fault {
                    vector: vector::GP,
                    error_code: Some(ec),
                    rip: RIP,
                    cr2: None
                },
                "{ec:#x}"
            );
        }
    }

    #[test]
    fn not_emulated_for_pv() {
        let mut env = Env::new();
        env.iopl = 3;
        let r = regs();
        for b in [
            &[0xf4][..],         // HLT: PV kernels use SCHEDOP_block
            &[0x0f, 0x08],       // INVD
            &[0x0f, 0x33],       // RDPMC
            &[0x0f, 0x01, 0xf0], // LMSW %ax
            &[0x0f, 0x01, 0xe0], // SMSW %eax
            &[0x0f, 0x01, 0x38], // INVLPG (%rax)
            &[0xf3, 0x6c],       // REP INSB (DEVIATION)
            &[0x6f],             // OUTSD
            &[0xcc],             // INT3
            &[0xf1],             // INT1
            &[0x90],             // NOP: unsupported
            &[0xf0, 0x0f, 0xa2], // invalid
            &[0x0f],             // truncated, no fetch fault
        ] {
            assert_eq!(gp(&mut env, b, &r), gp0_at(RIP), "{b:02x?}");
        }
        assert_eq!(
            gp(&mut env, &[0xce], &r),
            ud_at(RIP),
            "INTO is #UD in long mode"
        );
        // Truncated with a fetch fault: #PF(0) at the unreadable byte.
        let e = handle_gp(&[0x0f], Some(RIP + 1), &r, 0, &mut env);
        assert_eq!(
            e,
            Effect::Fault {
                vector: vector::PF,
                error_code: Some(0),
                rip: RIP,
                cr2: Some(RIP + 1)
            }
        );
        // A non-forced instruction arriving as #UD stays #UD.
        assert_eq!(handle_ud(&[0x0f, 0x32], None, &r, &mut env), ud_at(RIP));
        assert_eq!(
            emulate(&dec(&[0x0f, 0x32]), &r, Trap::Ud, &mut env),
            ud_at(RIP)
        );
    }

    #[test]
    fn wbinvd() {
        let mut env = Env::new();
        let (o, _) = done(gp(&mut env, &[0x0f, 0x09], &regs()));
        assert_eq!(
            (o.rip, env.wbinvds),
            (RIP + 2, 0),
            "ignored when unprivileged"
        );
        env.flush_ok = true;
        done(gp(&mut env, &[0x0f, 0x09], &regs()));
        assert_eq!(env.wbinvds, 1);
    }

    #[test]
    fn xsetbv() {
        let mut env = Env::new();
        let mut r = regs();
        r.gpr[gpr::RCX] = 0;
        r.gpr[gpr::RAX] = 0xffff_ffff_0000_0007;
        r.gpr[gpr::RDX] = 0xffff_ffff_0000_0000;
        // CR4.OSXSAVE clear: #UD.
        assert_eq!(gp(&mut env, &[0x0f, 0x01, 0xd1], &r), ud_at(RIP));
        env.cr4 = CR4_OSXSAVE;
        done(gp(&mut env, &[0x0f, 0x01, 0xd1], &r));
        assert_eq!(env.xcr0, 7);
        // Bad values and XCR1: #GP(0).
        for (rcx, rax) in [(0u64, 5u64), (0, 2), (0, 0xe7), (1, 7)] {
            r.gpr[gpr::RCX] = rcx;
            r.gpr[gpr::RAX] = rax;
            assert_eq!(
                gp(&mut env, &[0x0f, 0x01, 0xd1], &r),
                gp0_at(RIP),
                "{rcx} {rax:#x}"
            );
        }
        assert_eq!(gp(&mut env, &[0x66, 0x0f, 0x01, 0xd1], &r), ud_at(RIP));
        env.kernel = false;
        r.gpr[gpr::RCX] = 0;
        r.gpr[gpr::RAX] = 3;
        assert_eq!(gp(&mut env, &[0x0f, 0x01, 0xd1], &r), gp0_at(RIP));
    }

    #[test]
    fn rip_wraps() {
        let mut env = Env::new();
        let mut r = regs();
        r.rip = u64::MAX;
        let (o, _) = done(gp(&mut env, &[0x0f, 0xa2], &r));
        assert_eq!(o.rip, 1);
    }

    #[test]
    fn helpers() {
        assert!(is_canonical(0));
        assert!(is_canonical(0x0000_7fff_ffff_ffff));
        assert!(is_canonical(0xffff_8000_0000_0000));
        assert!(!is_canonical(0x0000_8000_0000_0000));
        assert!(!is_canonical(0xffff_7fff_ffff_ffff));
        assert_eq!(xen_cr3_to_pfn(xen_pfn_to_cr3(0xabcde)), 0xabcde);
        assert_eq!(
            guest_efer(u64::MAX),
            EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE | EFER_FFXSE
        );
        assert_eq!(pci_data_size(0xcfc, 4), 4);
        assert_eq!(pci_data_size(0xcfd, 4), 2);
        assert_eq!(pci_data_size(0xcfd, 1), 1);
        assert_eq!(pci_data_size(0xcff, 2), 1);
    }

    /// Throws pseudo-random bytes, registers and error codes at the
    /// emulator: it must never panic.
    #[test]
    fn no_panics_on_garbage() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let interesting = [
            0x0f, 0x20, 0x22, 0x21, 0x23, 0x01, 0x30, 0x32, 0xa2, 0xcd, 0xec, 0xef, 0x66, 0xf0,
            0x41, 0x0b,
        ];
        let mut env = Env::new();
        env.permitted.push((0, 0xffff));
        env.iobmp = std::vec![0; 8];
        env.bps = IoBreakpoints {
            dr: [u64::MAX, 0, 0xffff, 1],
            dr7: u64::MAX,
            dr7_emul: u64::MAX,
        };
        env.cr4 = CR4_DE;
        for i in 0..20_000u32 {
            let len = (rnd() % 18) as usize;
            let mut b = [0u8; 18];
            for x in b.iter_mut() {
                let v = rnd();
                *x = if v & 1 == 0 {
                    interesting[(v >> 8) as usize % interesting.len()]
                } else {
                    (v >> 16) as u8
                };
            }
            if i % 7 == 0 {
                b[..5].copy_from_slice(&FORCED_EMUL_SIG);
            }
            let mut r = RegFile {
                gpr: [0; 16],
                rip: rnd(),
                rflags: rnd(),
            };
            for g in r.gpr.iter_mut() {
                *g = rnd();
            }
            env.kernel = rnd() & 1 == 0;
            env.iopl = (rnd() & 3) as u8;
            let ec = match rnd() % 4 {
                0 => 0,
                1 => (rnd() as u32) | 2,
                _ => rnd() as u32,
            };
            let _ = handle_gp(&b[..len], None, &r, ec, &mut env);
            let _ = handle_ud(&b[..len], Some(r.rip), &r, &mut env);
            if let Ok(d) = decode(&b[..len]) {
                assert!(d.len <= len && d.len <= MAX_INSN_LEN + FORCED_EMUL_SIG.len());
            }
        }
    }
}
