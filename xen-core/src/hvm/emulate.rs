//! Decoding and emulating the instruction an HVM guest used to touch MMIO
//! that nobody maps (the LAPIC or IOAPIC page, a device model's range): the
//! nested-page fault leaves the vCPU at that instruction, and the glue
//! hands its bytes here with an [`Env`] over the vCPU.
//!
//! - [`decode`] turns up to 15 bytes into an [`Insn`] for 16-, 32- or
//!   64-bit code ([`Mode`]): legacy prefixes (`66`, `67`, segment
//!   overrides, `rep`, `lock`), REX, ModRM/SIB with 16-bit and 32/64-bit
//!   addressing, RIP-relative operands, displacements and immediates.
//! - [`emulate`] computes its effect through the [`Env`]: registers and
//!   RFLAGS, guest RAM and MMIO, and answers an [`Outcome`]: done (new RIP
//!   and RFLAGS), retry (an MMIO access is waiting for a device model), or
//!   an exception to inject (#GP for a non-canonical address, #PF from the
//!   guest's page tables, #UD for what is not emulated).
//!
//! The instructions: `mov` r/m↔reg and immediate (`88 89 8a 8b c6 c7`),
//! `mov` to/from moffs (`a0`–`a3`), `movzx`/`movsx` (`0f b6 b7 be bf`),
//! the ALU family `add or adc sbb and sub xor cmp` (`00`–`3b`, `80 81 83`),
//! `test` (`84 85`, `f6 f7 /0`), `xchg` (`86 87`), `bt bts btr btc`
//! (`0f a3 ab b3 bb`, `0f ba /4-7`), and the string moves `movs stos lods`
//! (`a4 a5 aa ab ac ad`) with `rep` and the direction flag.
//!
//! **Owns**: decoding, effective addresses (segment base, address-size
//! wrap, canonical check), splitting an access at a page boundary, the
//! arithmetic and its flags, the `rep` bookkeeping. **Trusts**: the [`Env`]
//! for the vCPU's state, translation and memory. Nothing taken from the
//! bytes or registers is trusted: no input panics (indexes are masked,
//! arithmetic wraps, slices are bounds-checked) and a `rep` does at most
//! [`MAX_REP`] iterations per call; the guest re-executes the rest.
//!
//! **Follows** Xen 4.17's `xen/arch/x86/hvm/emulate.c` (`hvmemul_*`: a
//! linear access split at page boundaries, each piece either RAM or MMIO;
//! `rep` capped per exit; a completed MMIO read is kept by the glue so the
//! re-executed instruction finds it) and the Intel SDM vol. 2 encodings.
//!
//! Deliberate differences from Xen (which uses its full `x86_emulate`):
//! segment limits and access rights are not checked (the glue supplies
//! segment bases only); `cmps`/`scas`/`ins`/`outs`, `cmpxchg`, `xadd`,
//! SSE/AVX moves and `inc`/`dec`/`not`/`neg` on MMIO are not emulated
//! (#UD); LOCK is accepted where the SDM allows it and the access is done
//! as a plain read-modify-write (the vCPU is paused, and MMIO has no other
//! writer that could see the gap).
//!
//! Reuses [`crate::x86_emul`]'s prefix types and decode errors. Its decoder
//! itself is for 64-bit PV code only (no 16-bit addressing, no `moffs`,
//! REX everywhere), so the ModRM/SIB decoding here is its own, mode-aware.

use crate::x86_emul::{is_canonical, DecodeError, Prefixes, Rep, Segment, MAX_INSN_LEN};

/// Most `rep` iterations done per call; the guest re-executes the
/// instruction for the rest (with RCX, RSI, RDI already advanced).
pub const MAX_REP: u64 = 256;

/// Exception vectors this module raises.
pub mod vector {
    /// #UD.
    pub const UD: u8 = 6;
    /// #SS.
    pub const SS: u8 = 12;
    /// #GP.
    pub const GP: u8 = 13;
    /// #PF.
    pub const PF: u8 = 14;
}

/// RFLAGS bits (Intel SDM vol. 1 §3.4.3).
pub mod rflags {
    /// Carry.
    pub const CF: u64 = 1 << 0;
    /// Parity.
    pub const PF: u64 = 1 << 2;
    /// Adjust.
    pub const AF: u64 = 1 << 4;
    /// Zero.
    pub const ZF: u64 = 1 << 6;
    /// Sign.
    pub const SF: u64 = 1 << 7;
    /// Direction.
    pub const DF: u64 = 1 << 10;
    /// Overflow.
    pub const OF: u64 = 1 << 11;
    /// The six arithmetic status flags.
    pub const ARITH: u64 = CF | PF | AF | ZF | SF | OF;
}

/// The code size the instruction executes in: CS.L / CS.D (real mode and
/// virtual-8086 mode are `Bits16`; the glue gives segment bases for them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 16-bit code.
    Bits16,
    /// 32-bit code.
    Bits32,
    /// 64-bit code (long mode, CS.L).
    Bits64,
}

/// A memory operand: `seg:[base + index*scale + disp]`, wrapped to the
/// address size; with `rip_relative`, the base is the next instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mem {
    /// The segment (the default one, or the override).
    pub seg: Segment,
    /// Base register (0..16).
    pub base: Option<u8>,
    /// Index register (0..16).
    pub index: Option<u8>,
    /// 1, 2, 4 or 8.
    pub scale: u8,
    /// Sign-extended displacement (a 64-bit moffs for `a0`–`a3`).
    pub disp: i64,
    /// `[rip + disp]` (64-bit mode, `mod=00 rm=101`).
    pub rip_relative: bool,
}

/// An operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    /// A general register (0..16; for byte operands without REX, 4..8 are
    /// AH, CH, DH, BH).
    Reg(u8),
    /// Memory.
    Mem(Mem),
    /// An immediate, sign-extended to 64 bits.
    Imm(u64),
}

/// The two-operand arithmetic and logic instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AluOp {
    /// `add`.
    Add,
    /// `or`.
    Or,
    /// `adc`.
    Adc,
    /// `sbb`.
    Sbb,
    /// `and`.
    And,
    /// `sub`.
    Sub,
    /// `xor`.
    Xor,
    /// `cmp` (no write).
    Cmp,
    /// `test` (no write).
    Test,
}

impl AluOp {
    const GROUP1: [AluOp; 8] = [
        AluOp::Add,
        AluOp::Or,
        AluOp::Adc,
        AluOp::Sbb,
        AluOp::And,
        AluOp::Sub,
        AluOp::Xor,
        AluOp::Cmp,
    ];

    /// Whether the destination is written.
    pub fn writes(self) -> bool {
        !matches!(self, AluOp::Cmp | AluOp::Test)
    }
}

/// The bit-test instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BtOp {
    /// `bt`.
    Bt,
    /// `bts`.
    Bts,
    /// `btr`.
    Btr,
    /// `btc`.
    Btc,
}

/// What the instruction does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `dst ← src`.
    Mov {
        /// Destination (register or memory).
        dst: Operand,
        /// Source (register, memory or immediate).
        src: Operand,
    },
    /// `movzx`/`movsx`: `reg ← extend(src)`.
    MovExtend {
        /// Destination register.
        dst: u8,
        /// Source.
        src: Operand,
        /// Source size in bytes (1 or 2).
        src_size: u8,
        /// Sign-extend (`movsx`).
        signed: bool,
    },
    /// `dst ← dst op src`, flags.
    Alu {
        /// Which.
        op: AluOp,
        /// Destination (and left operand).
        dst: Operand,
        /// Right operand.
        src: Operand,
    },
    /// `xchg reg, r/m`.
    Xchg {
        /// The register.
        reg: u8,
        /// The other operand.
        rm: Operand,
    },
    /// `bt*`: CF ← bit `bit` of `base` (then set, reset or complement).
    Bt {
        /// Which.
        op: BtOp,
        /// The bit string.
        base: Operand,
        /// The bit offset (register: signed, may reach outside `base`).
        bit: Operand,
    },
    /// `movs`: `[es:rdi] ← [seg:rsi]`.
    Movs {
        /// Source segment.
        seg: Segment,
    },
    /// `stos`: `[es:rdi] ← rax`.
    Stos,
    /// `lods`: `rax ← [seg:rsi]`.
    Lods {
        /// Source segment.
        seg: Segment,
    },
}

/// A decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// What it does.
    pub op: Op,
    /// Its length: RIP advances by this much.
    pub len: usize,
    /// Operand size in bytes (1, 2, 4, 8).
    pub size: u8,
    /// Address size in bytes (2, 4, 8).
    pub addr_size: u8,
    /// The code size it was decoded for.
    pub mode: Mode,
    /// Its prefixes.
    pub prefixes: Prefixes,
}

impl Insn {
    /// Byte registers 4..8 are SPL..DIL (a REX is present) rather than
    /// AH..BH.
    fn rex_bytes(&self) -> bool {
        self.prefixes.rex != 0
    }

    /// With a `rep` prefix (`f3` or `f2`; both repeat `movs`/`stos`/`lods`).
    pub fn rep(&self) -> bool {
        self.prefixes.rep.is_some()
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.pos >= MAX_INSN_LEN {
            return Err(DecodeError::Invalid);
        }
        let b = *self.bytes.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    /// `n` bytes (1, 2, 4, 8), little-endian, sign-extended to 64 bits.
    fn signed(&mut self, n: u8) -> Result<i64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..n {
            v |= u64::from(self.u8()?) << (8 * i);
        }
        let shift = 64 - 8 * u32::from(n);
        Ok(((v << shift) as i64) >> shift)
    }
}

/// Decodes the instruction at the start of `bytes` for `mode`.
///
/// [`DecodeError::Truncated`]: `bytes` end before the instruction does;
/// [`DecodeError::Invalid`]: the CPU would #UD (longer than 15 bytes, LOCK
/// where not allowed, a register form where memory is required);
/// [`DecodeError::Unsupported`]: not an instruction emulated here.
pub fn decode(bytes: &[u8], mode: Mode) -> Result<Insn, DecodeError> {
    let mut c = Cursor { bytes, pos: 0 };
    let mut p = Prefixes::default();
    let mut b;
    loop {
        b = c.u8()?;
        match b {
            0x66 => p.opsize = true,
            0x67 => p.addrsize = true,
            0xf0 => p.lock = true,
            0xf2 => p.rep = Some(Rep::Repne),
            0xf3 => p.rep = Some(Rep::Rep),
            0x26 => p.segment = Some(Segment::Es),
            0x2e => p.segment = Some(Segment::Cs),
            0x36 => p.segment = Some(Segment::Ss),
            0x3e => p.segment = Some(Segment::Ds),
            0x64 => p.segment = Some(Segment::Fs),
            0x65 => p.segment = Some(Segment::Gs),
            0x40..=0x4f if mode == Mode::Bits64 => {
                p.rex = b;
                continue;
            }
            _ => break,
        }
        // A REX followed by a legacy prefix is ignored.
        p.rex = 0;
    }

    let addr_size = match (mode, p.addrsize) {
        (Mode::Bits64, false) => 8,
        (Mode::Bits64, true) | (Mode::Bits32, false) | (Mode::Bits16, true) => 4,
        (Mode::Bits32, true) | (Mode::Bits16, false) => 2,
    };
    let full_size = if p.rex_w() {
        8
    } else if p.opsize == (mode == Mode::Bits16) {
        4
    } else {
        2
    };
    let mut d = Decoder {
        c,
        p,
        mode,
        addr_size,
    };

    let mut lock_ok = false;
    let (op, size) = match b {
        // ALU r/m, reg and reg, r/m: 00-03, 08-0b, ..., 38-3b.
        0x00..=0x3f if b & 7 < 4 && b & 0xc0 == 0 => {
            let alu = AluOp::GROUP1[usize::from(b >> 3)];
            let size = if b & 1 == 0 { 1 } else { full_size };
            let (reg, rm) = d.modrm()?;
            let reg = Operand::Reg(reg);
            if b & 2 == 0 {
                lock_ok = alu.writes() && matches!(rm, Operand::Mem(_));
                (
                    Op::Alu {
                        op: alu,
                        dst: rm,
                        src: reg,
                    },
                    size,
                )
            } else {
                (
                    Op::Alu {
                        op: alu,
                        dst: reg,
                        src: rm,
                    },
                    size,
                )
            }
        }
        0x80 | 0x81 | 0x83 => {
            let size = if b == 0x80 { 1 } else { full_size };
            let (ext, rm) = d.modrm()?;
            let imm = d.imm(if b == 0x81 { size } else { 1 })?;
            let alu = AluOp::GROUP1[usize::from(ext & 7)];
            lock_ok = alu.writes() && matches!(rm, Operand::Mem(_));
            (
                Op::Alu {
                    op: alu,
                    dst: rm,
                    src: imm,
                },
                size,
            )
        }
        0x84 | 0x85 => {
            let size = if b == 0x84 { 1 } else { full_size };
            let (reg, rm) = d.modrm()?;
            (
                Op::Alu {
                    op: AluOp::Test,
                    dst: rm,
                    src: Operand::Reg(reg),
                },
                size,
            )
        }
        0xf6 | 0xf7 => {
            let size = if b == 0xf6 { 1 } else { full_size };
            let (ext, rm) = d.modrm()?;
            if ext & 7 > 1 {
                return Err(DecodeError::Unsupported); // not/neg/mul/div
            }
            let imm = d.imm(size)?;
            (
                Op::Alu {
                    op: AluOp::Test,
                    dst: rm,
                    src: imm,
                },
                size,
            )
        }
        0x86 | 0x87 => {
            let size = if b == 0x86 { 1 } else { full_size };
            let (reg, rm) = d.modrm()?;
            lock_ok = matches!(rm, Operand::Mem(_));
            (Op::Xchg { reg, rm }, size)
        }
        0x88..=0x8b => {
            let size = if b & 1 == 0 { 1 } else { full_size };
            let (reg, rm) = d.modrm()?;
            let reg = Operand::Reg(reg);
            let (dst, src) = if b & 2 == 0 { (rm, reg) } else { (reg, rm) };
            (Op::Mov { dst, src }, size)
        }
        0xc6 | 0xc7 => {
            let size = if b == 0xc6 { 1 } else { full_size };
            let (ext, rm) = d.modrm()?;
            if ext & 7 != 0 {
                return Err(DecodeError::Unsupported); // xabort/xbegin
            }
            let imm = d.imm(size)?;
            (Op::Mov { dst: rm, src: imm }, size)
        }
        0xa0..=0xa3 => {
            let size = if b & 1 == 0 { 1 } else { full_size };
            let off = d.c.signed(d.addr_size)?;
            let mem = Operand::Mem(Mem {
                seg: d.p.segment.unwrap_or(Segment::Ds),
                base: None,
                index: None,
                scale: 1,
                disp: off,
                rip_relative: false,
            });
            let rax = Operand::Reg(0);
            let (dst, src) = if b & 2 == 0 { (rax, mem) } else { (mem, rax) };
            (Op::Mov { dst, src }, size)
        }
        0xa4 | 0xa5 => (
            Op::Movs {
                seg: d.p.segment.unwrap_or(Segment::Ds),
            },
            if b == 0xa4 { 1 } else { full_size },
        ),
        0xaa | 0xab => (Op::Stos, if b == 0xaa { 1 } else { full_size }),
        0xac | 0xad => (
            Op::Lods {
                seg: d.p.segment.unwrap_or(Segment::Ds),
            },
            if b == 0xac { 1 } else { full_size },
        ),
        0x0f => {
            let b2 = d.c.u8()?;
            match b2 {
                0xb6 | 0xb7 | 0xbe | 0xbf => {
                    let (reg, rm) = d.modrm()?;
                    (
                        Op::MovExtend {
                            dst: reg,
                            src: rm,
                            src_size: if b2 & 1 == 0 { 1 } else { 2 },
                            signed: b2 & 8 != 0,
                        },
                        full_size,
                    )
                }
                0xa3 | 0xab | 0xb3 | 0xbb => {
                    let (reg, rm) = d.modrm()?;
                    let op = match b2 {
                        0xa3 => BtOp::Bt,
                        0xab => BtOp::Bts,
                        0xb3 => BtOp::Btr,
                        _ => BtOp::Btc,
                    };
                    lock_ok = op != BtOp::Bt && matches!(rm, Operand::Mem(_));
                    (
                        Op::Bt {
                            op,
                            base: rm,
                            bit: Operand::Reg(reg),
                        },
                        full_size,
                    )
                }
                0xba => {
                    let (ext, rm) = d.modrm()?;
                    let op = match ext & 7 {
                        4 => BtOp::Bt,
                        5 => BtOp::Bts,
                        6 => BtOp::Btr,
                        7 => BtOp::Btc,
                        _ => return Err(DecodeError::Invalid),
                    };
                    let bit = Operand::Imm(u64::from(d.c.u8()?));
                    lock_ok = op != BtOp::Bt && matches!(rm, Operand::Mem(_));
                    (Op::Bt { op, base: rm, bit }, full_size)
                }
                _ => return Err(DecodeError::Unsupported),
            }
        }
        _ => return Err(DecodeError::Unsupported),
    };
    if d.p.lock && !lock_ok {
        return Err(DecodeError::Invalid);
    }
    Ok(Insn {
        op,
        len: d.c.pos,
        size,
        addr_size,
        mode,
        prefixes: d.p,
    })
}

struct Decoder<'a> {
    c: Cursor<'a>,
    p: Prefixes,
    mode: Mode,
    addr_size: u8,
}

impl Decoder<'_> {
    /// An immediate of `size` bytes (8 reads 4, sign-extended).
    fn imm(&mut self, size: u8) -> Result<Operand, DecodeError> {
        let n = size.min(4);
        Ok(Operand::Imm(self.c.signed(n)? as u64))
    }

    /// ModRM (and SIB, displacement): the reg field (with REX.R) and the
    /// r/m operand.
    fn modrm(&mut self) -> Result<(u8, Operand), DecodeError> {
        let m = self.c.u8()?;
        let md = m >> 6;
        let reg = ((m >> 3) & 7) | (self.p.rex_r() << 3);
        let rm = m & 7;
        if md == 3 {
            return Ok((reg, Operand::Reg(rm | (self.p.rex_b() << 3))));
        }
        let mut mem = Mem {
            seg: Segment::Ds,
            base: None,
            index: None,
            scale: 1,
            disp: 0,
            rip_relative: false,
        };
        let mut stack = false;
        if self.addr_size == 2 {
            // 16-bit addressing (SDM vol. 2 table 2-1).
            const BX: u8 = 3;
            const BP: u8 = 5;
            const SI: u8 = 6;
            const DI: u8 = 7;
            let (base, index) = match rm {
                0 => (Some(BX), Some(SI)),
                1 => (Some(BX), Some(DI)),
                2 => (Some(BP), Some(SI)),
                3 => (Some(BP), Some(DI)),
                4 => (Some(SI), None),
                5 => (Some(DI), None),
                6 if md == 0 => (None, None),
                6 => (Some(BP), None),
                _ => (Some(BX), None),
            };
            mem.base = base;
            mem.index = index;
            stack = base == Some(BP);
            mem.disp = match (md, rm) {
                (0, 6) | (2, _) => self.c.signed(2)?,
                (1, _) => self.c.signed(1)?,
                _ => 0,
            };
        } else {
            // 32/64-bit addressing (SDM vol. 2 tables 2-2, 2-3).
            if rm == 4 {
                let sib = self.c.u8()?;
                let idx = ((sib >> 3) & 7) | (self.p.rex_x() << 3);
                mem.scale = 1 << (sib >> 6);
                mem.index = (idx != 4).then_some(idx);
                if sib & 7 == 5 && md == 0 {
                    mem.disp = self.c.signed(4)?;
                } else {
                    let base = (sib & 7) | (self.p.rex_b() << 3);
                    mem.base = Some(base);
                    stack = base & 7 == 4 || base & 7 == 5;
                }
            } else if rm == 5 && md == 0 {
                mem.rip_relative = self.mode == Mode::Bits64;
                mem.disp = self.c.signed(4)?;
            } else {
                let base = rm | (self.p.rex_b() << 3);
                mem.base = Some(base);
                stack = rm == 5;
            }
            match md {
                1 => mem.disp = self.c.signed(1)?,
                2 => mem.disp = self.c.signed(4)?,
                _ => {}
            }
        }
        let default = if stack { Segment::Ss } else { Segment::Ds };
        mem.seg = self.p.segment.unwrap_or(default);
        Ok((reg, Operand::Mem(mem)))
    }
}

// ---------------------------------------------------------------------------
// Emulation
// ---------------------------------------------------------------------------

/// An exception to inject into the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Its vector.
    pub vector: u8,
    /// Its error code, if it has one.
    pub error_code: Option<u32>,
    /// For #PF: the faulting linear address (CR2).
    pub cr2: Option<u64>,
}

impl Fault {
    /// #GP(0).
    pub const GP0: Fault = Fault {
        vector: vector::GP,
        error_code: Some(0),
        cr2: None,
    };
    /// #SS(0).
    pub const SS0: Fault = Fault {
        vector: vector::SS,
        error_code: Some(0),
        cr2: None,
    };
    /// #UD.
    pub const UD: Fault = Fault {
        vector: vector::UD,
        error_code: None,
        cr2: None,
    };

    /// #PF at `addr` with `error_code`.
    pub fn page_fault(addr: u64, error_code: u32) -> Fault {
        Fault {
            vector: vector::PF,
            error_code: Some(error_code),
            cr2: Some(addr),
        }
    }
}

/// How memory is being accessed (for [`Env::translate`]'s permission
/// checks and #PF error code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Fetch,
}

/// An MMIO access that cannot complete now: it went to a device model and
/// the vCPU waits for the answer, then re-executes the instruction (the
/// glue keeps the answer for it, as Xen's `hvmemul_cache`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending;

/// What the emulator needs of the vCPU, implemented by the HVM glue.
pub trait Env {
    /// The code size at the faulting instruction.
    fn mode(&self) -> Mode;
    /// RIP of the faulting instruction.
    fn rip(&self) -> u64;
    /// RFLAGS.
    fn rflags(&self) -> u64;
    /// General register `reg` (0 = rax .. 15 = r15).
    fn gpr(&self, reg: usize) -> u64;
    /// Sets general register `reg` (the whole 64 bits).
    fn set_gpr(&mut self, reg: usize, val: u64);
    /// The base of segment `seg` (in 64-bit mode only FS and GS are asked).
    fn segment_base(&self, seg: Segment) -> u64;
    /// Translates a linear address through the guest's page tables, or
    /// the fault the guest takes (#PF with its error code).
    fn translate(&mut self, linear: u64, access: Access) -> Result<u64, Fault>;
    /// Whether guest-physical `gpa` is MMIO (emulated or forwarded)
    /// rather than RAM.
    fn is_mmio(&self, gpa: u64) -> bool;
    /// Reads guest RAM at `gpa` (within one page).
    fn read_ram(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), Fault>;
    /// Writes guest RAM at `gpa` (within one page).
    fn write_ram(&mut self, gpa: u64, buf: &[u8]) -> Result<(), Fault>;
    /// Reads `size` (1, 2, 4, 8) bytes of MMIO at `gpa`.
    fn mmio_read(&mut self, gpa: u64, size: u8) -> Result<u64, Pending>;
    /// Writes `size` (1, 2, 4, 8) bytes of MMIO at `gpa`.
    fn mmio_write(&mut self, gpa: u64, size: u8, val: u64) -> Result<(), Pending>;
}

/// What became of the instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done; the registers it changed are written through [`Env::set_gpr`].
    /// RIP is past it, or still at it when a `rep` has iterations left.
    Done {
        /// The new RIP.
        new_rip: u64,
        /// The new RFLAGS.
        new_rflags: u64,
    },
    /// An MMIO access is pending: nothing was changed; run it again when
    /// the answer is in.
    Retry,
    /// Inject this. The registers are as the architecture leaves them at
    /// the fault (a `rep` keeps the iterations it finished).
    Exception(Fault),
}

const PAGE_SIZE: u64 = 4096;

/// Why an access stopped.
enum Stop {
    Pending,
    Fault(Fault),
}

impl From<Fault> for Stop {
    fn from(f: Fault) -> Self {
        Stop::Fault(f)
    }
}

fn mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

fn sign_bit(size: u8) -> u64 {
    1 << (u32::from(size.clamp(1, 8)) * 8 - 1)
}

fn sign_extend(v: u64, size: u8) -> u64 {
    let shift = 64 - 8 * u32::from(size.clamp(1, 8));
    (((v << shift) as i64) >> shift) as u64
}

/// Emulates the instruction at the start of `bytes` (fetched from the
/// guest's CS:RIP; up to 15 bytes, fewer if the fetch stopped at an
/// unmapped page).
pub fn emulate(bytes: &[u8], env: &mut impl Env) -> Outcome {
    let mode = env.mode();
    let insn = match decode(bytes, mode) {
        Ok(i) => i,
        Err(DecodeError::Truncated) => {
            // The CPU would fetch the next byte: if that page is not
            // mapped, that is the fault the guest takes.
            let next = env.rip().wrapping_add(bytes.len() as u64);
            let linear = env.segment_base(Segment::Cs).wrapping_add(next);
            return match env.translate(linear, Access::Fetch) {
                Err(f) => Outcome::Exception(f),
                Ok(_) => Outcome::Exception(Fault::UD),
            };
        }
        Err(_) => return Outcome::Exception(Fault::UD),
    };
    let mut e = Emu::new(env, insn);
    let r = e.run();
    e.finish(r)
}

struct Emu<'a, E: Env> {
    env: &'a mut E,
    insn: Insn,
    regs: [u64; 16],
    dirty: u16,
    rflags: u64,
    next_rip: u64,
}

/// How `run` ended.
enum End {
    /// RIP past the instruction.
    Next,
    /// RIP stays (a `rep` with iterations left).
    Again,
}

impl<'a, E: Env> Emu<'a, E> {
    fn new(env: &'a mut E, insn: Insn) -> Self {
        let mut regs = [0u64; 16];
        for (i, r) in regs.iter_mut().enumerate() {
            *r = env.gpr(i);
        }
        let rip = env.rip();
        let next_rip = match insn.mode {
            Mode::Bits64 => rip.wrapping_add(insn.len as u64),
            // EIP/IP wrap at 32 bits (the glue keeps CS.D consistent).
            _ => rip.wrapping_add(insn.len as u64) & 0xffff_ffff,
        };
        Emu {
            rflags: env.rflags(),
            env,
            insn,
            regs,
            dirty: 0,
            next_rip,
        }
    }

    fn commit(&mut self) {
        for i in 0..16 {
            if self.dirty & (1 << i) != 0 {
                self.env.set_gpr(i, self.regs[i]);
            }
        }
    }

    fn finish(mut self, r: Result<End, Stop>) -> Outcome {
        match r {
            Ok(end) => {
                self.commit();
                Outcome::Done {
                    new_rip: match end {
                        End::Next => self.next_rip,
                        End::Again => self.env.rip(),
                    },
                    new_rflags: self.rflags,
                }
            }
            Err(Stop::Pending) => Outcome::Retry,
            Err(Stop::Fault(f)) => {
                // Registers a `rep` already advanced stay advanced.
                self.commit();
                Outcome::Exception(f)
            }
        }
    }

    fn reg_get(&self, r: u8, size: u8) -> u64 {
        let r = usize::from(r & 15);
        if size == 1 && !self.insn.rex_bytes() && (4..8).contains(&r) {
            return (self.regs[r - 4] >> 8) & 0xff;
        }
        self.regs[r] & mask(size)
    }

    fn set_full(&mut self, r: usize, v: u64) {
        let r = r & 15;
        self.regs[r] = v;
        self.dirty |= 1 << r;
    }

    fn reg_set(&mut self, r: u8, size: u8, v: u64) {
        let r = usize::from(r & 15);
        let cur = self.regs[r];
        let new = match size {
            1 if !self.insn.rex_bytes() && (4..8).contains(&r) => {
                let cur = self.regs[r - 4];
                self.set_full(r - 4, (cur & !0xff00) | ((v & 0xff) << 8));
                return;
            }
            1 => (cur & !0xff) | (v & 0xff),
            2 => (cur & !0xffff) | (v & 0xffff),
            // A 32-bit write zero-extends (in 64-bit mode; outside it the
            // upper half is not visible).
            4 => v & 0xffff_ffff,
            _ => v,
        };
        self.set_full(r, new);
    }

    /// The linear address of `mem` (plus `extra` bytes), with the
    /// canonical check of 64-bit mode.
    fn linear(&self, mem: &Mem, extra: u64) -> Result<u64, Fault> {
        let asz = self.insn.addr_size;
        let mut ea = mem.disp as u64;
        if mem.rip_relative {
            ea = ea.wrapping_add(self.next_rip);
        }
        if let Some(b) = mem.base {
            ea = ea.wrapping_add(self.regs[usize::from(b & 15)]);
        }
        if let Some(i) = mem.index {
            ea = ea.wrapping_add(self.regs[usize::from(i & 15)].wrapping_mul(u64::from(mem.scale)));
        }
        let ea = ea.wrapping_add(extra) & mask(asz);
        self.seg_linear(mem.seg, ea)
    }

    fn seg_linear(&self, seg: Segment, ea: u64) -> Result<u64, Fault> {
        if self.insn.mode == Mode::Bits64 {
            let base = match seg {
                Segment::Fs | Segment::Gs => self.env.segment_base(seg),
                _ => 0,
            };
            let la = base.wrapping_add(ea);
            if !is_canonical(la) {
                return Err(if seg == Segment::Ss {
                    Fault::SS0
                } else {
                    Fault::GP0
                });
            }
            Ok(la)
        } else {
            Ok(self.env.segment_base(seg).wrapping_add(ea) & 0xffff_ffff)
        }
    }

    /// Splits `size` bytes at `la` at page boundaries and translates each
    /// piece (all before any is touched): (gpa, offset in the operand,
    /// length).
    fn pieces(&mut self, la: u64, size: u8, access: Access) -> Result<[(u64, u8, u8); 2], Fault> {
        let size = size.clamp(1, 8);
        let in_page = (PAGE_SIZE - (la % PAGE_SIZE)).min(u64::from(size)) as u8;
        let first = self.env.translate(la, access)?;
        let mut out = [(first, 0, in_page), (0, in_page, 0)];
        if in_page < size {
            let la2 = if self.insn.mode == Mode::Bits64 {
                la.wrapping_add(u64::from(in_page))
            } else {
                la.wrapping_add(u64::from(in_page)) & 0xffff_ffff
            };
            out[1] = (self.env.translate(la2, access)?, in_page, size - in_page);
        }
        Ok(out)
    }

    /// Reads `size` bytes at linear `la`.
    fn read_linear(&mut self, la: u64, size: u8) -> Result<u64, Stop> {
        let mut bytes = [0u8; 8];
        for (gpa, off, len) in self.pieces(la, size, Access::Read)? {
            let (off, len) = (usize::from(off), usize::from(len));
            if len == 0 {
                continue;
            }
            self.read_phys(gpa, &mut bytes[off..off + len])?;
        }
        Ok(u64::from_le_bytes(bytes) & mask(size))
    }

    /// Writes `size` bytes of `val` at linear `la`.
    fn write_linear(&mut self, la: u64, size: u8, val: u64) -> Result<(), Stop> {
        let bytes = val.to_le_bytes();
        for (gpa, off, len) in self.pieces(la, size, Access::Write)? {
            let (off, len) = (usize::from(off), usize::from(len));
            if len == 0 {
                continue;
            }
            self.write_phys(gpa, &bytes[off..off + len])?;
        }
        Ok(())
    }

    /// MMIO in power-of-two pieces (a piece at a page split may be 3, 5,
    /// 6 or 7 bytes long), else RAM.
    fn read_phys(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), Stop> {
        if !self.env.is_mmio(gpa) {
            return Ok(self.env.read_ram(gpa, buf)?);
        }
        let mut done = 0;
        while done < buf.len() {
            let n = chunk(buf.len() - done);
            let v = self
                .env
                .mmio_read(gpa.wrapping_add(done as u64), n as u8)
                .map_err(|_| Stop::Pending)?;
            buf[done..done + n].copy_from_slice(&v.to_le_bytes()[..n]);
            done += n;
        }
        Ok(())
    }

    fn write_phys(&mut self, gpa: u64, buf: &[u8]) -> Result<(), Stop> {
        if !self.env.is_mmio(gpa) {
            return Ok(self.env.write_ram(gpa, buf)?);
        }
        let mut done = 0;
        while done < buf.len() {
            let n = chunk(buf.len() - done);
            let mut v = [0u8; 8];
            v[..n].copy_from_slice(&buf[done..done + n]);
            self.env
                .mmio_write(
                    gpa.wrapping_add(done as u64),
                    n as u8,
                    u64::from_le_bytes(v),
                )
                .map_err(|_| Stop::Pending)?;
            done += n;
        }
        Ok(())
    }

    fn read_op(&mut self, op: &Operand, size: u8) -> Result<u64, Stop> {
        match op {
            Operand::Reg(r) => Ok(self.reg_get(*r, size)),
            Operand::Imm(v) => Ok(v & mask(size)),
            Operand::Mem(m) => {
                let la = self.linear(m, 0)?;
                self.read_linear(la, size)
            }
        }
    }

    fn write_op(&mut self, op: &Operand, size: u8, val: u64) -> Result<(), Stop> {
        match op {
            Operand::Reg(r) => {
                self.reg_set(*r, size, val);
                Ok(())
            }
            Operand::Imm(_) => Err(Stop::Fault(Fault::UD)),
            Operand::Mem(m) => {
                let la = self.linear(m, 0)?;
                self.write_linear(la, size, val)
            }
        }
    }

    fn run(&mut self) -> Result<End, Stop> {
        let size = self.insn.size;
        match self.insn.op {
            Op::Mov { dst, src } => {
                let v = self.read_op(&src, size)?;
                self.write_op(&dst, size, v)?;
            }
            Op::MovExtend {
                dst,
                src,
                src_size,
                signed,
            } => {
                let v = self.read_op(&src, src_size)?;
                let v = if signed { sign_extend(v, src_size) } else { v };
                self.reg_set(dst, size, v & mask(size));
            }
            Op::Alu { op, dst, src } => {
                let a = self.read_op(&dst, size)?;
                let b = self.read_op(&src, size)?;
                let (r, flags) = alu(op, a, b, self.rflags, size);
                if op.writes() {
                    self.write_op(&dst, size, r)?;
                }
                self.rflags = (self.rflags & !rflags::ARITH) | flags;
            }
            Op::Xchg { reg, rm } => {
                let m = self.read_op(&rm, size)?;
                let r = self.reg_get(reg, size);
                self.write_op(&rm, size, r)?;
                self.reg_set(reg, size, m);
            }
            Op::Bt { op, base, bit } => self.bt(op, base, bit)?,
            Op::Movs { .. } | Op::Stos | Op::Lods { .. } => return self.string(),
        }
        Ok(End::Next)
    }

    fn bt(&mut self, op: BtOp, base: Operand, bit: Operand) -> Result<(), Stop> {
        let size = self.insn.size;
        let bits = u64::from(size) * 8;
        // A register offset is signed and may select memory outside the
        // operand (SDM `BT`); an immediate is taken modulo the size.
        let (target, bitpos) = match (&base, &bit) {
            (Operand::Mem(m), Operand::Reg(r)) => {
                let off = sign_extend(self.reg_get(*r, size), size) as i64;
                let word = off.div_euclid(bits as i64);
                let m = Mem {
                    disp: m.disp.wrapping_add(word.wrapping_mul(i64::from(size))),
                    ..*m
                };
                (Operand::Mem(m), off.rem_euclid(bits as i64) as u64)
            }
            _ => {
                let b = self.read_op(&bit, size)?;
                (base, b % bits)
            }
        };
        let v = self.read_op(&target, size)?;
        let cf = (v >> bitpos) & 1;
        let new = match op {
            BtOp::Bt => None,
            BtOp::Bts => Some(v | (1 << bitpos)),
            BtOp::Btr => Some(v & !(1 << bitpos)),
            BtOp::Btc => Some(v ^ (1 << bitpos)),
        };
        if let Some(n) = new {
            self.write_op(&target, size, n)?;
        }
        self.rflags = (self.rflags & !rflags::CF) | cf;
        Ok(())
    }

    /// `movs`/`stos`/`lods`, with `rep`: at most [`MAX_REP`] iterations.
    fn string(&mut self) -> Result<End, Stop> {
        const RCX: usize = 1;
        const RSI: usize = 6;
        const RDI: usize = 7;
        let size = self.insn.size;
        let amask = mask(self.insn.addr_size);
        let step = if self.rflags & rflags::DF != 0 {
            (u64::from(size)).wrapping_neg()
        } else {
            u64::from(size)
        };
        let rep = self.insn.rep();
        let mut count = if rep { self.regs[RCX] & amask } else { 1 };
        let mut done = 0u64;
        while count > 0 {
            if done == MAX_REP {
                return Ok(End::Again);
            }
            let r = self.string_once(size);
            match r {
                Ok(()) => {}
                // Iterations already done stand; the guest re-executes.
                Err(Stop::Pending) if done > 0 => return Ok(End::Again),
                Err(e) => return Err(e),
            }
            let (si, di) = match self.insn.op {
                Op::Movs { .. } => (true, true),
                Op::Stos => (false, true),
                _ => (true, false),
            };
            for (reg, moves) in [(RSI, si), (RDI, di)] {
                if moves {
                    let v = self.regs[reg];
                    self.set_full(reg, self.addr_reg(v, v.wrapping_add(step)));
                }
            }
            count -= 1;
            done += 1;
            if rep {
                self.set_full(RCX, self.addr_reg(self.regs[RCX], count));
            }
        }
        Ok(End::Next)
    }

    /// The new value of an address-sized register (RCX, RSI, RDI of a
    /// string instruction) that was `old` and becomes `new` at the
    /// address size: 16-bit updates keep the rest; in 64-bit mode a 32-bit
    /// one zero-extends.
    fn addr_reg(&self, old: u64, new: u64) -> u64 {
        let amask = mask(self.insn.addr_size);
        if self.insn.addr_size == 4 && self.insn.mode == Mode::Bits64 {
            new & amask
        } else {
            (old & !amask) | (new & amask)
        }
    }

    fn string_once(&mut self, size: u8) -> Result<(), Stop> {
        const RAX: usize = 0;
        const RSI: usize = 6;
        const RDI: usize = 7;
        let amask = mask(self.insn.addr_size);
        let src = |s: &Self, seg| s.seg_linear(seg, s.regs[RSI] & amask);
        let dst = |s: &Self| s.seg_linear(Segment::Es, s.regs[RDI] & amask);
        match self.insn.op {
            Op::Movs { seg } => {
                let from = src(self, seg)?;
                let to = dst(self)?;
                let v = self.read_linear(from, size)?;
                self.write_linear(to, size, v)
            }
            Op::Stos => {
                let to = dst(self)?;
                let v = self.regs[RAX] & mask(size);
                self.write_linear(to, size, v)
            }
            Op::Lods { seg } => {
                let from = src(self, seg)?;
                let v = self.read_linear(from, size)?;
                self.reg_set(RAX as u8, size, v);
                Ok(())
            }
            _ => Err(Stop::Fault(Fault::UD)),
        }
    }
}

/// The largest of 8, 4, 2, 1 that is at most `n`.
fn chunk(n: usize) -> usize {
    match n {
        8.. => 8,
        4..=7 => 4,
        2 | 3 => 2,
        _ => 1,
    }
}

/// Even parity of the low byte: PF.
fn parity(v: u64) -> bool {
    (v as u8).count_ones() % 2 == 0
}

/// `a op b` at `size` bytes with carry-in from `flags_in` (adc/sbb): the
/// result and the new arithmetic flags (Intel SDM vol. 2; AF is cleared
/// by the logical operations, where the SDM leaves it undefined).
pub fn alu(op: AluOp, a: u64, b: u64, flags_in: u64, size: u8) -> (u64, u64) {
    let m = mask(size);
    let sign = sign_bit(size);
    let (a, b) = (a & m, b & m);
    let carry_in = flags_in & rflags::CF;
    let mut f = 0;
    let r = match op {
        AluOp::Add | AluOp::Adc => {
            let c = if op == AluOp::Adc { carry_in } else { 0 };
            let wide = u128::from(a) + u128::from(b) + u128::from(c);
            let r = (wide as u64) & m;
            if wide > u128::from(m) {
                f |= rflags::CF;
            }
            if (a ^ r) & (b ^ r) & sign != 0 {
                f |= rflags::OF;
            }
            if (a ^ b ^ r) & 0x10 != 0 {
                f |= rflags::AF;
            }
            r
        }
        AluOp::Sub | AluOp::Sbb | AluOp::Cmp => {
            let c = if op == AluOp::Sbb { carry_in } else { 0 };
            let r = a.wrapping_sub(b).wrapping_sub(c) & m;
            if u128::from(a) < u128::from(b) + u128::from(c) {
                f |= rflags::CF;
            }
            if (a ^ b) & (a ^ r) & sign != 0 {
                f |= rflags::OF;
            }
            if (a ^ b ^ r) & 0x10 != 0 {
                f |= rflags::AF;
            }
            r
        }
        AluOp::And | AluOp::Test => a & b,
        AluOp::Or => a | b,
        AluOp::Xor => a ^ b,
    };
    if r == 0 {
        f |= rflags::ZF;
    }
    if r & sign != 0 {
        f |= rflags::SF;
    }
    if parity(r) {
        f |= rflags::PF;
    }
    (r, f)
}
