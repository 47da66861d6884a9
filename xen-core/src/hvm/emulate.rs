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
//! `mov` to/from moffs (`a0`–`a3`), `movzx`/`movsx` (`0f b6 b7 be bf`,
//! `movsxd` `63`),
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

use crate::x86_emul::{is_canonical, DecodeError, Prefixes, Segment, MAX_INSN_LEN};

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
        if p.take_legacy(b) {
            // A REX followed by a legacy prefix is ignored.
            p.rex = 0;
        } else if mode == Mode::Bits64 && (0x40..=0x4f).contains(&b) {
            p.rex = b;
        } else {
            break;
        }
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
        // movsxd (`movslq`); in 32-bit code 63 is ARPL.
        0x63 if mode == Mode::Bits64 => {
            let (reg, rm) = d.modrm()?;
            (
                Op::MovExtend {
                    dst: reg,
                    src: rm,
                    src_size: full_size.min(4),
                    signed: true,
                },
                full_size,
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
            let cs_base = match mode {
                Mode::Bits64 => 0,
                _ => env.segment_base(Segment::Cs),
            };
            let linear = cs_base.wrapping_add(next);
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
            // EIP wraps at 32 bits, IP at 16.
            Mode::Bits32 => rip.wrapping_add(insn.len as u64) & 0xffff_ffff,
            Mode::Bits16 => rip.wrapping_add(insn.len as u64) & 0xffff,
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
    (v as u8).count_ones().is_multiple_of(2)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::vec::Vec;
    use std::{format, vec};

    const MMIO_BASE: u64 = 0xfee0_0000;
    const MMIO_END: u64 = 0xfef0_0000;
    const RAM_SIZE: usize = 0x20000;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Io {
        Read(u64, u8),
        Write(u64, u8, u64),
    }

    /// A vCPU: identity paging except `unmapped` pages, RAM at
    /// 0..RAM_SIZE, MMIO at MMIO_BASE..MMIO_END backed by a byte map.
    struct Fake {
        mode: Mode,
        rip: u64,
        rflags: u64,
        regs: [u64; 16],
        seg: [u64; 6],
        ram: Vec<u8>,
        mmio: BTreeMap<u64, u8>,
        log: Vec<Io>,
        unmapped: Vec<u64>,
        /// MMIO accesses answered before the next one is pending.
        pending_after: Option<usize>,
        sets: usize,
    }

    impl Fake {
        fn new(mode: Mode) -> Self {
            Fake {
                mode,
                rip: 0x1000,
                rflags: 0x2,
                regs: [0; 16],
                seg: [0; 6],
                ram: vec![0; RAM_SIZE],
                mmio: BTreeMap::new(),
                log: Vec::new(),
                unmapped: Vec::new(),
                pending_after: None,
                sets: 0,
            }
        }

        fn mmio_val(&self, gpa: u64, size: u8) -> u64 {
            (0..u64::from(size)).fold(0, |v, i| {
                v | u64::from(*self.mmio.get(&(gpa + i)).unwrap_or(&0)) << (8 * i)
            })
        }

        fn set_mmio(&mut self, gpa: u64, size: u8, val: u64) {
            for i in 0..u64::from(size) {
                self.mmio.insert(gpa + i, (val >> (8 * i)) as u8);
            }
        }

        fn tick(&mut self) -> Result<(), Pending> {
            match &mut self.pending_after {
                Some(0) => Err(Pending),
                Some(n) => {
                    *n -= 1;
                    Ok(())
                }
                None => Ok(()),
            }
        }
    }

    fn seg_index(s: Segment) -> usize {
        match s {
            Segment::Es => 0,
            Segment::Cs => 1,
            Segment::Ss => 2,
            Segment::Ds => 3,
            Segment::Fs => 4,
            Segment::Gs => 5,
        }
    }

    impl Env for Fake {
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
            self.regs[reg]
        }
        fn set_gpr(&mut self, reg: usize, val: u64) {
            self.sets += 1;
            self.regs[reg] = val;
        }
        fn segment_base(&self, seg: Segment) -> u64 {
            self.seg[seg_index(seg)]
        }
        fn translate(&mut self, linear: u64, access: Access) -> Result<u64, Fault> {
            if self.unmapped.contains(&(linear & !0xfff)) {
                let w = if access == Access::Write { 2 } else { 0 };
                let f = if access == Access::Fetch { 16 } else { 0 };
                return Err(Fault::page_fault(linear, w | f));
            }
            Ok(linear)
        }
        fn is_mmio(&self, gpa: u64) -> bool {
            (MMIO_BASE..MMIO_END).contains(&gpa)
        }
        fn read_ram(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), Fault> {
            let s = gpa as usize;
            match self.ram.get(s..s.saturating_add(buf.len())) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    Ok(())
                }
                None => Err(Fault::GP0),
            }
        }
        fn write_ram(&mut self, gpa: u64, buf: &[u8]) -> Result<(), Fault> {
            let s = gpa as usize;
            match self.ram.get_mut(s..s.saturating_add(buf.len())) {
                Some(dst) => {
                    dst.copy_from_slice(buf);
                    Ok(())
                }
                None => Err(Fault::GP0),
            }
        }
        fn mmio_read(&mut self, gpa: u64, size: u8) -> Result<u64, Pending> {
            assert!(matches!(size, 1 | 2 | 4 | 8), "MMIO size {size}");
            self.tick()?;
            self.log.push(Io::Read(gpa, size));
            Ok(self.mmio_val(gpa, size))
        }
        fn mmio_write(&mut self, gpa: u64, size: u8, val: u64) -> Result<(), Pending> {
            assert!(matches!(size, 1 | 2 | 4 | 8), "MMIO size {size}");
            assert_eq!(val & !mask(size), 0, "value wider than the access");
            self.tick()?;
            self.log.push(Io::Write(gpa, size, val));
            self.set_mmio(gpa, size, val);
            Ok(())
        }
    }

    const RAX: usize = 0;
    const RCX: usize = 1;
    const RDX: usize = 2;
    const RBX: usize = 3;
    const RBP: usize = 5;
    const RSI: usize = 6;
    const RDI: usize = 7;

    fn done(o: Outcome) -> (u64, u64) {
        match o {
            Outcome::Done {
                new_rip,
                new_rflags,
            } => (new_rip, new_rflags),
            other => panic!("not done: {other:?}"),
        }
    }

    fn run64(bytes: &[u8], f: &mut Fake) -> u64 {
        let (rip, _) = done(emulate(bytes, f));
        rip - f.rip
    }

    // --- Decoding ---------------------------------------------------------

    fn mem(seg: Segment, base: Option<u8>, index: Option<u8>, scale: u8, disp: i64) -> Operand {
        Operand::Mem(Mem {
            seg,
            base,
            index,
            scale,
            disp,
            rip_relative: false,
        })
    }

    #[test]
    fn emulate_decode_table() {
        use Segment::*;
        let r = |n: u8| Operand::Reg(n);
        let cases: Vec<(Mode, &[u8], Op, usize, u8)> = vec![
            // mov (%rax),%eax
            (
                Mode::Bits64,
                &[0x8b, 0x00],
                Op::Mov {
                    dst: r(0),
                    src: mem(Ds, Some(0), None, 1, 0),
                },
                2,
                4,
            ),
            // mov %eax,0x300(%rdx)
            (
                Mode::Bits64,
                &[0x89, 0x82, 0x00, 0x03, 0x00, 0x00],
                Op::Mov {
                    dst: mem(Ds, Some(2), None, 1, 0x300),
                    src: r(0),
                },
                6,
                4,
            ),
            // mov %r9,-8(%rsp,%r10,8)
            (
                Mode::Bits64,
                &[0x4e, 0x89, 0x4c, 0xd4, 0xf8],
                Op::Mov {
                    dst: mem(Ss, Some(4), Some(10), 8, -8),
                    src: r(9),
                },
                5,
                8,
            ),
            // movw $0x1234,%fs:(%r13)
            (
                Mode::Bits64,
                &[0x64, 0x66, 0x41, 0xc7, 0x45, 0x00, 0x34, 0x12],
                Op::Mov {
                    dst: mem(Fs, Some(13), None, 1, 0),
                    src: Operand::Imm(0x1234),
                },
                8,
                2,
            ),
            // movzbl 0x10(%rbx),%ecx
            (
                Mode::Bits64,
                &[0x0f, 0xb6, 0x4b, 0x10],
                Op::MovExtend {
                    dst: 1,
                    src: mem(Ds, Some(3), None, 1, 0x10),
                    src_size: 1,
                    signed: false,
                },
                4,
                4,
            ),
            // movswq (%rdi),%rax
            (
                Mode::Bits64,
                &[0x48, 0x0f, 0xbf, 0x07],
                Op::MovExtend {
                    dst: 0,
                    src: mem(Ds, Some(7), None, 1, 0),
                    src_size: 2,
                    signed: true,
                },
                4,
                8,
            ),
            // orl $0x100,(%rax)  (81 /1 id)
            (
                Mode::Bits64,
                &[0x81, 0x08, 0x00, 0x01, 0x00, 0x00],
                Op::Alu {
                    op: AluOp::Or,
                    dst: mem(Ds, Some(0), None, 1, 0),
                    src: Operand::Imm(0x100),
                },
                6,
                4,
            ),
            // andq $-2,8(%rax)  (83 /4 ib, sign-extended)
            (
                Mode::Bits64,
                &[0x48, 0x83, 0x60, 0x08, 0xfe],
                Op::Alu {
                    op: AluOp::And,
                    dst: mem(Ds, Some(0), None, 1, 8),
                    src: Operand::Imm(-2i64 as u64),
                },
                5,
                8,
            ),
            // lock xchg %eax,(%rdx)
            (
                Mode::Bits64,
                &[0xf0, 0x87, 0x02],
                Op::Xchg {
                    reg: 0,
                    rm: mem(Ds, Some(2), None, 1, 0),
                },
                3,
                4,
            ),
            // mov 0x1122334455667788,%eax (moffs64)
            (
                Mode::Bits64,
                &[0xa1, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11],
                Op::Mov {
                    dst: r(0),
                    src: mem(Ds, None, None, 1, 0x1122_3344_5566_7788),
                },
                9,
                4,
            ),
            // 32-bit: mov 0x10(%ebp),%eax — SS, no REX, rm=5 disp32 absolute
            (
                Mode::Bits32,
                &[0x8b, 0x45, 0x10],
                Op::Mov {
                    dst: r(0),
                    src: mem(Ss, Some(5), None, 1, 0x10),
                },
                3,
                4,
            ),
            (
                Mode::Bits32,
                &[0x89, 0x05, 0x00, 0x00, 0xe0, 0xfe],
                Op::Mov {
                    dst: mem(Ds, None, None, 1, 0xfee0_0000u32 as i32 as i64),
                    src: r(0),
                },
                6,
                4,
            ),
            // 32-bit moffs is 4 bytes; 66 → 16-bit operand
            (
                Mode::Bits32,
                &[0x66, 0xa3, 0x00, 0x03, 0xe0, 0xfe],
                Op::Mov {
                    dst: mem(Ds, None, None, 1, 0xfee0_0300u32 as i32 as i64),
                    src: r(0),
                },
                6,
                2,
            ),
            // 16-bit: mov (%bx,%si),%ax ; mov 2(%bp),%ax (SS) ; es mov %ax,(0x1234)
            (
                Mode::Bits16,
                &[0x8b, 0x00],
                Op::Mov {
                    dst: r(0),
                    src: mem(Ds, Some(3), Some(6), 1, 0),
                },
                2,
                2,
            ),
            (
                Mode::Bits16,
                &[0x8b, 0x46, 0x02],
                Op::Mov {
                    dst: r(0),
                    src: mem(Ss, Some(5), None, 1, 2),
                },
                3,
                2,
            ),
            (
                Mode::Bits16,
                &[0x26, 0x89, 0x06, 0x34, 0x12],
                Op::Mov {
                    dst: mem(Es, None, None, 1, 0x1234),
                    src: r(0),
                },
                5,
                2,
            ),
            // 16-bit code, 66 67: mov %eax,(%ebx)
            (
                Mode::Bits16,
                &[0x66, 0x67, 0x89, 0x03],
                Op::Mov {
                    dst: mem(Ds, Some(3), None, 1, 0),
                    src: r(0),
                },
                4,
                4,
            ),
            // rep stosl
            (Mode::Bits64, &[0xf3, 0xab], Op::Stos, 2, 4),
            // rep movsb with fs source
            (
                Mode::Bits64,
                &[0xf3, 0x64, 0xa4],
                Op::Movs { seg: Fs },
                3,
                1,
            ),
            // btsl $3,(%rax)
            (
                Mode::Bits64,
                &[0x0f, 0xba, 0x28, 0x03],
                Op::Bt {
                    op: BtOp::Bts,
                    base: mem(Ds, Some(0), None, 1, 0),
                    bit: Operand::Imm(3),
                },
                4,
                4,
            ),
            // testb $0x80,0x11(%rax)
            (
                Mode::Bits64,
                &[0xf6, 0x40, 0x11, 0x80],
                Op::Alu {
                    op: AluOp::Test,
                    dst: mem(Ds, Some(0), None, 1, 0x11),
                    src: Operand::Imm(-128i64 as u64),
                },
                4,
                1,
            ),
        ];
        for (mode, bytes, op, len, size) in cases {
            let d = decode(bytes, mode).unwrap_or_else(|e| panic!("{bytes:02x?}: {e:?}"));
            assert_eq!(
                (d.op, d.len, d.size),
                (op, len, size),
                "{bytes:02x?} in {mode:?}"
            );
            // Every proper prefix of the bytes is truncated.
            for n in 0..len {
                assert_eq!(decode(&bytes[..n], mode), Err(DecodeError::Truncated));
            }
        }
        // RIP-relative in 64-bit mode.
        let d = decode(&[0xc7, 0x05, 0x10, 0, 0, 0, 1, 0, 0, 0], Mode::Bits64).unwrap();
        assert!(
            matches!(d.op, Op::Mov { dst: Operand::Mem(m), .. } if m.rip_relative && m.disp == 0x10)
        );
        assert_eq!(d.len, 10);
    }

    #[test]
    fn emulate_decode_rejects() {
        for (bytes, mode, err) in [
            (&[0xff, 0x00][..], Mode::Bits64, DecodeError::Unsupported), // inc (%rax)
            (&[0xf0, 0x8b, 0x00], Mode::Bits64, DecodeError::Invalid),   // lock mov
            (&[0xf0, 0x39, 0x00], Mode::Bits64, DecodeError::Invalid),   // lock cmp
            (&[0xf0, 0x01, 0xc0], Mode::Bits64, DecodeError::Invalid),   // lock add reg
            (&[0x40, 0x8b, 0x00], Mode::Bits32, DecodeError::Unsupported), // inc %eax
            (
                &[0x0f, 0xba, 0x00, 0x00],
                Mode::Bits64,
                DecodeError::Invalid,
            ),
            (&[0x66; 15], Mode::Bits64, DecodeError::Invalid),
            (&[0x66; 20], Mode::Bits64, DecodeError::Invalid),
            (&[], Mode::Bits64, DecodeError::Truncated),
        ] {
            assert_eq!(decode(bytes, mode), Err(err), "{bytes:02x?}");
        }
        // 32-bit code: 48 is `dec %eax`, not REX.W.
        assert_eq!(
            decode(&[0x48, 0x89, 0x00], Mode::Bits32),
            Err(DecodeError::Unsupported)
        );
        // REX before a legacy prefix is dropped.
        let d = decode(&[0x48, 0x66, 0x89, 0x00], Mode::Bits64).unwrap();
        assert_eq!(d.size, 2);
    }

    /// Assembles `lines` with the host's GNU `as` and decodes the result
    /// instruction by instruction: the lengths must add up exactly.
    fn assemble(code: &str, lines: &[&str]) -> Option<Vec<u8>> {
        let dir = std::env::temp_dir().join(format!("oxen-emul-{}-{code}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let mut src = format!(".{code}\n");
        for l in lines {
            src.push_str(l);
            src.push('\n');
        }
        std::fs::write(dir.join("t.s"), src).ok()?;
        let ok = std::process::Command::new("as")
            .args(["--64", "-o"])
            .arg(dir.join("t.o"))
            .arg(dir.join("t.s"))
            .status()
            .ok()?
            .success()
            && std::process::Command::new("objcopy")
                .args(["-O", "binary", "-j", ".text"])
                .arg(dir.join("t.o"))
                .arg(dir.join("t.bin"))
                .status()
                .ok()?
                .success();
        let bytes = std::fs::read(dir.join("t.bin")).ok();
        let _ = std::fs::remove_dir_all(&dir);
        if ok {
            bytes
        } else {
            None
        }
    }

    #[test]
    fn emulate_decode_assembled() {
        let sets: [(&str, Mode, &[&str]); 3] = [
            (
                "code64",
                Mode::Bits64,
                &[
                    "mov (%rax),%eax",
                    "mov %eax,0x300(%rdx)",
                    "movl $0x12345678,0x1000(%rip)",
                    "movq $-1,0x10(%r12)",
                    "mov %r15b,(%r8,%r9,4)",
                    "mov %ah,(%rbx)",
                    "mov %sil,0x7f(%rdi)",
                    "mov 0x80(%rsp),%cx",
                    "mov (%rbp),%r11",
                    "movb $5,%gs:0x20",
                    "movabs 0xfee00020,%eax",
                    "movabs %rax,0xfee00300",
                    "movabs %al,0x1122334455667788",
                    "addr32 mov (%eax),%edx",
                    "movzbl (%rax),%eax",
                    "movzwq 2(%rax),%r10",
                    "movsbw (%rax),%dx",
                    "movslq (%rax),%rax",
                    "add %eax,(%rbx)",
                    "or %cl,(%rbx)",
                    "adc 4(%rbx),%rdx",
                    "sbb %ax,(%rbx)",
                    "and $0xfffffeff,(%rdi)",
                    "sub $1,(%rdi)",
                    "xor %edx,(%rsi)",
                    "cmpb $0x7f,(%rsi)",
                    "cmp (%rsi),%r8",
                    "test %eax,(%rsi)",
                    "testl $0x1000,(%rsi)",
                    "testb $1,0x10(%rsi)",
                    "xchg %eax,(%rdx)",
                    "lock xchg %r9,(%rdx)",
                    "lock orl $1,(%rdx)",
                    "lock btsl $3,(%rdx)",
                    "btr %eax,(%rdx)",
                    "btc %rax,(%rdx)",
                    "bt $63,(%rdx)",
                    "rep stosl",
                    "rep stosb",
                    "rep movsq",
                    "movsw",
                    "lodsl",
                    "rep movsb %fs:(%rsi),%es:(%rdi)",
                    "mov 0x12345678(,%rcx,8),%eax",
                    "mov (%r13),%eax",
                    "mov (%r12),%eax",
                ],
            ),
            (
                "code32",
                Mode::Bits32,
                &[
                    "mov (%eax),%eax",
                    "mov %eax,0xfee00300",
                    "movw $0x55,0x10(%ebp)",
                    "mov 0xfec00000,%eax",
                    "mov %al,0xfec00010",
                    "movzbl (%esi),%ecx",
                    "orl $0x10,(%edi,%ecx,4)",
                    "addr16 mov (%bx,%si),%eax",
                    "rep stosl",
                    "rep movsb",
                    "xchg %dx,(%ebx)",
                    "lock andl $0,(%ebx)",
                ],
            ),
            (
                "code16",
                Mode::Bits16,
                &[
                    "mov (%bx,%si),%ax",
                    "mov %ax,0x10(%bp,%di)",
                    "mov 0x1234,%al",
                    "movl $0x11223344,%es:(%di)",
                    "mov (%eax),%ecx",
                    "mov 0x8(%esp),%ax",
                    "rep stosw",
                    "rep movsl",
                    "cmpw $0x10,(%si)",
                    "btw $1,(%bx)",
                ],
            ),
        ];
        for (code, mode, lines) in sets {
            let Some(bytes) = assemble(code, lines) else {
                std::eprintln!("skipped: no working `as`/`objcopy` on this host");
                return;
            };
            let mut pos = 0;
            for line in lines {
                let d = decode(&bytes[pos..], mode)
                    .unwrap_or_else(|e| panic!("{code} `{line}`: {e:?} at {:02x?}", &bytes[pos..]));
                pos += d.len;
            }
            assert_eq!(pos, bytes.len(), "{code}: lengths do not add up");
        }
    }

    // --- Emulation ----------------------------------------------------------

    #[test]
    fn emulate_readl_writel() {
        let mut f = Fake::new(Mode::Bits64);
        // mov (%rax),%eax: readl
        f.regs[RAX] = MMIO_BASE + 0x30;
        f.set_mmio(MMIO_BASE + 0x30, 4, 0x5001_0014);
        assert_eq!(run64(&[0x8b, 0x00], &mut f), 2);
        assert_eq!(f.regs[RAX], 0x5001_0014, "upper half zeroed");
        assert_eq!(f.log, [Io::Read(MMIO_BASE + 0x30, 4)]);

        // mov %eax,0x300(%rdx): writel
        let mut f = Fake::new(Mode::Bits64);
        f.regs[RAX] = 0xdead_beef_0000_4500;
        f.regs[RDX] = MMIO_BASE;
        assert_eq!(run64(&[0x89, 0x82, 0x00, 0x03, 0x00, 0x00], &mut f), 6);
        assert_eq!(f.log, [Io::Write(MMIO_BASE + 0x300, 4, 0x4500)]);
        assert_eq!(f.sets, 0, "no register written");

        // movl $imm, disp(%rip)
        let mut f = Fake::new(Mode::Bits64);
        f.rip = MMIO_BASE - 0x1000;
        let disp = 0x1000 + 0xb0 - 10;
        let mut b = vec![0xc7, 0x05];
        b.extend_from_slice(&(disp as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(run64(&b, &mut f), 10);
        assert_eq!(f.log, [Io::Write(MMIO_BASE + 0xb0, 4, 0)]);

        // movb %ah,(%rbx) and, with a REX, %spl.
        let mut f = Fake::new(Mode::Bits64);
        f.regs[RAX] = 0x1234;
        f.regs[4] = 0x99;
        f.regs[RBX] = MMIO_BASE;
        run64(&[0x88, 0x23], &mut f);
        run64(&[0x40, 0x88, 0x23], &mut f);
        assert_eq!(
            f.log,
            [Io::Write(MMIO_BASE, 1, 0x12), Io::Write(MMIO_BASE, 1, 0x99)]
        );

        // 16-bit read merges: mov (%rbx),%ax
        f.regs[RAX] = 0xffff_ffff_ffff_ffff;
        f.set_mmio(MMIO_BASE, 2, 0x1234);
        run64(&[0x66, 0x8b, 0x03], &mut f);
        assert_eq!(f.regs[RAX], 0xffff_ffff_ffff_1234);
        // mov (%rbx),%bh
        run64(&[0x8a, 0x3b], &mut f);
        assert_eq!(f.regs[RBX], MMIO_BASE | 0x3400);
    }

    #[test]
    fn emulate_moves() {
        let mut f = Fake::new(Mode::Bits64);
        f.regs[RBX] = MMIO_BASE;
        f.set_mmio(MMIO_BASE + 0x10, 2, 0x80f0);
        run64(&[0x0f, 0xb6, 0x4b, 0x10], &mut f); // movzbl 0x10(%rbx),%ecx
        assert_eq!(f.regs[RCX], 0xf0);
        run64(&[0x48, 0x0f, 0xbf, 0x4b, 0x10], &mut f); // movswq
        assert_eq!(f.regs[RCX], 0xffff_ffff_ffff_80f0);
        run64(&[0x0f, 0xbe, 0x4b, 0x10], &mut f); // movsbl
        assert_eq!(f.regs[RCX], 0xffff_fff0);
        f.set_mmio(MMIO_BASE + 0x10, 4, 0x8000_0001);
        run64(&[0x48, 0x63, 0x4b, 0x10], &mut f); // movslq
        assert_eq!(f.regs[RCX], 0xffff_ffff_8000_0001);

        // moffs: movabs 0xfee00020,%eax and movabs %rax,0xfee00300
        f.set_mmio(MMIO_BASE + 0x20, 4, 0x14);
        let mut b = vec![0xa1];
        b.extend_from_slice(&(MMIO_BASE + 0x20).to_le_bytes());
        assert_eq!(run64(&b, &mut f), 9);
        assert_eq!(f.regs[RAX], 0x14);
        f.regs[RAX] = 0x0102_0304_0506_0708;
        let mut b = vec![0x48, 0xa3];
        b.extend_from_slice(&(MMIO_BASE + 0x300).to_le_bytes());
        run64(&b, &mut f);
        assert_eq!(f.mmio_val(MMIO_BASE + 0x300, 8), 0x0102_0304_0506_0708);

        // xchg %eax,(%rdx)
        f.regs[RDX] = MMIO_BASE + 0x40;
        f.set_mmio(MMIO_BASE + 0x40, 4, 0xaaaa);
        f.regs[RAX] = 0x5555;
        run64(&[0x87, 0x02], &mut f);
        assert_eq!(
            (f.regs[RAX], f.mmio_val(MMIO_BASE + 0x40, 4)),
            (0xaaaa, 0x5555)
        );
    }

    #[test]
    fn emulate_legacy_modes() {
        // 32-bit: mov 0x10(%ebp),%eax reads SS-relative.
        let mut f = Fake::new(Mode::Bits32);
        f.seg[seg_index(Segment::Ss)] = 0xfee0_0000;
        f.seg[seg_index(Segment::Ds)] = 0x1000_0000;
        f.regs[RBP] = 0x100;
        f.regs[RAX] = 0xffff_ffff_0000_0000;
        f.set_mmio(MMIO_BASE + 0x110, 4, 7);
        let (rip, _) = done(emulate(&[0x8b, 0x45, 0x10], &mut f));
        assert_eq!(rip, 0x1003);
        assert_eq!(f.regs[RAX] & 0xffff_ffff, 7);

        // 16-bit: mov %ax,0x10(%bp,%di) wraps at 64 KiB, SS-relative.
        let mut f = Fake::new(Mode::Bits16);
        f.seg[seg_index(Segment::Ss)] = 0xfee0_0000;
        f.regs[RBP] = 0xfff0;
        f.regs[RDI] = 0x8;
        f.regs[RAX] = 0xbeef;
        done(emulate(&[0x89, 0x43, 0x10], &mut f));
        assert_eq!(f.log, [Io::Write(MMIO_BASE + 0x8, 2, 0xbeef)]);

        // 16-bit code with 66 67: movl %eax,%es:(%ebx)
        let mut f = Fake::new(Mode::Bits16);
        f.seg[seg_index(Segment::Es)] = 0xfe00_0000;
        f.regs[RBX] = 0xe0_0010;
        f.regs[RAX] = 0x1122_3344;
        done(emulate(&[0x26, 0x66, 0x67, 0x89, 0x03], &mut f));
        assert_eq!(f.log, [Io::Write(MMIO_BASE + 0x10, 4, 0x1122_3344)]);

        // 32-bit moffs: mov %al,0xfec00010 — IOAPIC is not in our MMIO
        // window, so it is RAM... put MMIO there instead: 0xfee00010.
        let mut f = Fake::new(Mode::Bits32);
        f.regs[RAX] = 0x42;
        done(emulate(&[0xa2, 0x10, 0x00, 0xe0, 0xfe], &mut f));
        assert_eq!(f.log, [Io::Write(MMIO_BASE + 0x10, 1, 0x42)]);
    }

    #[test]
    fn emulate_rep_stos_and_movs() {
        // rep stosl over MMIO (memset_io).
        let mut f = Fake::new(Mode::Bits64);
        f.regs[RCX] = 4;
        f.regs[RDI] = MMIO_BASE + 0x100;
        f.regs[RAX] = 0xabcd;
        assert_eq!(run64(&[0xf3, 0xab], &mut f), 2);
        assert_eq!(f.regs[RCX], 0);
        assert_eq!(f.regs[RDI], MMIO_BASE + 0x110);
        assert_eq!(
            f.log,
            (0..4)
                .map(|i| Io::Write(MMIO_BASE + 0x100 + 4 * i, 4, 0xabcd))
                .collect::<Vec<_>>()
        );

        // Backwards with DF.
        let mut f = Fake::new(Mode::Bits64);
        f.rflags |= rflags::DF;
        f.regs[RCX] = 2;
        f.regs[RDI] = MMIO_BASE + 0x100;
        run64(&[0xf3, 0xab], &mut f);
        assert_eq!(f.regs[RDI], MMIO_BASE + 0xf8);
        assert_eq!(
            f.log,
            [
                Io::Write(MMIO_BASE + 0x100, 4, 0),
                Io::Write(MMIO_BASE + 0xfc, 4, 0)
            ]
        );

        // rep with RCX = 0: nothing, RIP advances.
        let mut f = Fake::new(Mode::Bits64);
        f.regs[RDI] = MMIO_BASE;
        assert_eq!(run64(&[0xf3, 0xab], &mut f), 2);
        assert!(f.log.is_empty());

        // A long rep stops after MAX_REP with RIP unchanged.
        let mut f = Fake::new(Mode::Bits64);
        f.regs[RCX] = 1000;
        f.regs[RDI] = MMIO_BASE;
        assert_eq!(run64(&[0xf3, 0xaa], &mut f), 0);
        assert_eq!(f.regs[RCX], 1000 - MAX_REP);
        assert_eq!(f.regs[RDI], MMIO_BASE + MAX_REP);
        assert_eq!(f.log.len() as u64, MAX_REP);

        // rep movsb from MMIO to RAM (memcpy_fromio), 32-bit addressing in
        // 64-bit mode zero-extends RSI/RDI/RCX.
        let mut f = Fake::new(Mode::Bits64);
        for i in 0..8 {
            f.set_mmio(MMIO_BASE + i, 1, 0x10 + i);
        }
        f.regs[RSI] = 0xffff_ffff_0000_0000 | MMIO_BASE;
        f.regs[RDI] = 0x2000;
        f.regs[RCX] = 0x1_0000_0008;
        assert_eq!(run64(&[0x67, 0xf3, 0xa4], &mut f), 3);
        assert_eq!(
            &f.ram[0x2000..0x2008],
            &[0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17]
        );
        assert_eq!(
            (f.regs[RSI], f.regs[RDI], f.regs[RCX]),
            (MMIO_BASE + 8, 0x2008, 0)
        );

        // 16-bit: rep stosw wraps DI at 64 KiB and keeps ECX's upper half.
        let mut f = Fake::new(Mode::Bits16);
        f.seg[seg_index(Segment::Es)] = MMIO_BASE;
        f.regs[RDI] = 0x1_fffe;
        f.regs[RCX] = 0xabcd_0002;
        done(emulate(&[0xf3, 0xab], &mut f));
        assert_eq!((f.regs[RDI], f.regs[RCX]), (0x1_0002, 0xabcd_0000));
        assert_eq!(
            f.log,
            [
                Io::Write(MMIO_BASE + 0xfffe, 2, 0),
                Io::Write(MMIO_BASE, 2, 0)
            ]
        );

        // lodsl
        let mut f = Fake::new(Mode::Bits64);
        f.regs[RSI] = MMIO_BASE;
        f.set_mmio(MMIO_BASE, 4, 0x77);
        run64(&[0xad], &mut f);
        assert_eq!((f.regs[RAX], f.regs[RSI]), (0x77, MMIO_BASE + 4));
    }

    #[test]
    fn emulate_retry_and_faults() {
        // Pending MMIO: nothing changes.
        let mut f = Fake::new(Mode::Bits64);
        f.regs[RAX] = MMIO_BASE;
        f.pending_after = Some(0);
        assert_eq!(emulate(&[0x8b, 0x00], &mut f), Outcome::Retry);
        assert_eq!((f.sets, f.regs[RAX]), (0, MMIO_BASE));

        // Pending in the middle of a rep: the iterations done stand.
        let mut f = Fake::new(Mode::Bits64);
        f.regs[RCX] = 10;
        f.regs[RDI] = MMIO_BASE;
        f.pending_after = Some(3);
        assert_eq!(run64(&[0xf3, 0xab], &mut f), 0);
        assert_eq!((f.regs[RCX], f.regs[RDI]), (7, MMIO_BASE + 12));

        // Non-canonical: #GP(0); via the stack: #SS(0).
        let mut f = Fake::new(Mode::Bits64);
        f.regs[RAX] = 0x8000_0000_0000_0000;
        assert_eq!(
            emulate(&[0x8b, 0x00], &mut f),
            Outcome::Exception(Fault::GP0)
        );
        f.regs[RBP] = 0x8000_0000_0000_0000;
        assert_eq!(
            emulate(&[0x8b, 0x45, 0x00], &mut f),
            Outcome::Exception(Fault::SS0)
        );

        // #PF from the page tables, with CR2 and the write bit.
        let mut f = Fake::new(Mode::Bits64);
        f.regs[RAX] = 0x5008;
        f.unmapped.push(0x5000);
        assert_eq!(
            emulate(&[0x89, 0x00], &mut f),
            Outcome::Exception(Fault::page_fault(0x5008, 2))
        );

        // A write straddling into an unmapped page touches neither page.
        let mut f = Fake::new(Mode::Bits64);
        f.regs[RAX] = 0x4ffe;
        f.unmapped.push(0x5000);
        f.ram[0x4ffe] = 0xaa;
        assert_eq!(
            emulate(&[0x89, 0x00], &mut f),
            Outcome::Exception(Fault::page_fault(0x5000, 2))
        );
        assert_eq!(f.ram[0x4ffe], 0xaa);

        // A fault in the middle of a rep keeps the finished iterations.
        let mut f = Fake::new(Mode::Bits64);
        f.regs[RCX] = 4;
        f.regs[RDI] = 0x4ff8;
        f.unmapped.push(0x5000);
        assert!(matches!(
            emulate(&[0xf3, 0xab], &mut f),
            Outcome::Exception(_)
        ));
        assert_eq!((f.regs[RCX], f.regs[RDI]), (2, 0x5000));

        // Unsupported and invalid: #UD.
        let mut f = Fake::new(Mode::Bits64);
        assert_eq!(
            emulate(&[0xff, 0x00], &mut f),
            Outcome::Exception(Fault::UD)
        );
        assert_eq!(
            emulate(&[0xf0, 0x8b, 0x00], &mut f),
            Outcome::Exception(Fault::UD)
        );

        // Truncated: the fetch of the next byte faults, or #UD.
        let mut f = Fake::new(Mode::Bits64);
        f.rip = 0x4ffe;
        f.unmapped.push(0x5000);
        assert_eq!(
            emulate(&[0x89, 0x82], &mut f),
            Outcome::Exception(Fault::page_fault(0x5000, 16))
        );
        f.unmapped.clear();
        assert_eq!(
            emulate(&[0x89, 0x82], &mut f),
            Outcome::Exception(Fault::UD)
        );
    }

    #[test]
    fn emulate_page_split_mmio() {
        // A 4-byte read 2 bytes before a page end: two 2-byte MMIO reads.
        let mut f = Fake::new(Mode::Bits64);
        f.regs[RAX] = MMIO_BASE + 0xffe;
        f.set_mmio(MMIO_BASE + 0xffe, 4, 0x4433_2211);
        run64(&[0x8b, 0x00], &mut f);
        assert_eq!(f.regs[RAX], 0x4433_2211);
        assert_eq!(
            f.log,
            [
                Io::Read(MMIO_BASE + 0xffe, 2),
                Io::Read(MMIO_BASE + 0x1000, 2)
            ]
        );
        // An 8-byte write 3 bytes before: 2+1, then 4+1.
        let mut f = Fake::new(Mode::Bits64);
        f.regs[RAX] = MMIO_BASE + 0xffd;
        f.regs[RDX] = 0x0807_0605_0403_0201;
        run64(&[0x48, 0x89, 0x10], &mut f);
        assert_eq!(
            f.log,
            [
                Io::Write(MMIO_BASE + 0xffd, 2, 0x0201),
                Io::Write(MMIO_BASE + 0xfff, 1, 0x03),
                Io::Write(MMIO_BASE + 0x1000, 4, 0x0706_0504),
                Io::Write(MMIO_BASE + 0x1004, 1, 0x08),
            ]
        );
    }

    /// The reference: flags from the definitions, with i128/u128 math.
    fn reference(op: AluOp, a: u64, b: u64, cf: bool, size: u8) -> (u64, u64) {
        let bits = u32::from(size) * 8;
        let m = if bits == 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        let (a, b) = (a & m, b & m);
        let sx = |v: u64| -> i128 { (((v as u128) << (128 - bits)) as i128) >> (128 - bits) };
        let c = u128::from(cf && matches!(op, AluOp::Adc | AluOp::Sbb));
        let (r, carry, over, af) = match op {
            AluOp::Add | AluOp::Adc => {
                let u = a as u128 + b as u128 + c;
                let s = sx(a) + sx(b) + c as i128;
                let r = u as u64 & m;
                (
                    r,
                    u >> bits != 0,
                    s != sx(r),
                    ((a & 0xf) + (b & 0xf) + c as u64) > 0xf,
                )
            }
            AluOp::Sub | AluOp::Sbb | AluOp::Cmp => {
                let s = sx(a) - sx(b) - c as i128;
                let r = (a as u128).wrapping_sub(b as u128).wrapping_sub(c) as u64 & m;
                let borrow = (a as u128) < b as u128 + c;
                (r, borrow, s != sx(r), (a & 0xf) < (b & 0xf) + c as u64)
            }
            AluOp::And | AluOp::Test => (a & b, false, false, false),
            AluOp::Or => (a | b, false, false, false),
            AluOp::Xor => (a ^ b, false, false, false),
        };
        let mut f = 0;
        f |= if carry { rflags::CF } else { 0 };
        f |= if over { rflags::OF } else { 0 };
        f |= if af { rflags::AF } else { 0 };
        f |= if r == 0 { rflags::ZF } else { 0 };
        f |= if sx(r) < 0 { rflags::SF } else { 0 };
        f |= if (r & 0xff).count_ones() % 2 == 0 {
            rflags::PF
        } else {
            0
        };
        (r, f)
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        /// Values with edges (0, max, sign bits) more often than chance.
        fn operand(&mut self) -> u64 {
            match self.next() % 6 {
                0 => 0,
                1 => u64::MAX,
                2 => 1 << (self.next() % 64),
                3 => (1 << (self.next() % 64)) - 1,
                _ => self.next(),
            }
        }
    }

    #[test]
    fn emulate_alu_flags_vs_reference() {
        let ops = [
            (AluOp::Add, 0x00u8),
            (AluOp::Or, 0x08),
            (AluOp::Adc, 0x10),
            (AluOp::Sbb, 0x18),
            (AluOp::And, 0x20),
            (AluOp::Sub, 0x28),
            (AluOp::Xor, 0x30),
            (AluOp::Cmp, 0x38),
            (AluOp::Test, 0x84),
        ];
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for (op, opc) in ops {
            for size in [1u8, 2, 4, 8] {
                for _ in 0..400 {
                    let a = rng.operand();
                    let b = rng.operand();
                    let cf = rng.next() & 1 == 1;
                    // `op %edx,(%rax)`: 00/01-style r/m, reg; prefixes for size.
                    let mut bytes = Vec::new();
                    match size {
                        2 => bytes.push(0x66),
                        8 => bytes.push(0x48),
                        _ => {}
                    }
                    bytes.push(if size == 1 { opc } else { opc | 1 });
                    bytes.push(0x10);
                    let mut f = Fake::new(Mode::Bits64);
                    f.rflags = 0x2 | if cf { rflags::CF } else { 0 } | rflags::DF;
                    f.regs[RAX] = MMIO_BASE + 0x80;
                    f.regs[RDX] = b;
                    f.set_mmio(MMIO_BASE + 0x80, 8, a);
                    let (_, fl) = done(emulate(&bytes, &mut f));
                    let (want, want_f) = reference(op, a, b, cf, size);
                    let got = f.mmio_val(MMIO_BASE + 0x80, size);
                    let ctx = format!("{op:?} size {size} a {a:#x} b {b:#x} cf {cf}");
                    if op.writes() {
                        assert_eq!(got, want, "{ctx}");
                    } else {
                        assert_eq!(got, a & mask(size), "{ctx}: not written");
                        assert!(f.log.iter().all(|io| matches!(io, Io::Read(..))), "{ctx}");
                    }
                    assert_eq!(fl & rflags::ARITH, want_f, "{ctx}");
                    assert_eq!(
                        fl & !rflags::ARITH,
                        0x2 | rflags::DF,
                        "{ctx}: other flags kept"
                    );
                    // The same through the pure function.
                    let cf_in = if cf { rflags::CF } else { 0 };
                    assert_eq!(alu(op, a, b, cf_in, size), (want, want_f), "{ctx}");
                }
            }
        }
    }

    #[test]
    fn emulate_alu_forms() {
        // orl $0x100,(%rax) ; andq $-2,8(%rax) ; cmp (%rax),%edx ; testb $0x80
        let mut f = Fake::new(Mode::Bits64);
        f.regs[RAX] = MMIO_BASE;
        f.set_mmio(MMIO_BASE, 4, 0x11);
        run64(&[0x81, 0x08, 0x00, 0x01, 0x00, 0x00], &mut f);
        assert_eq!(f.mmio_val(MMIO_BASE, 4), 0x111);
        f.set_mmio(MMIO_BASE + 8, 8, u64::MAX);
        run64(&[0x48, 0x83, 0x60, 0x08, 0xfe], &mut f);
        assert_eq!(f.mmio_val(MMIO_BASE + 8, 8), u64::MAX - 1);
        f.regs[RDX] = 0x111;
        let (_, fl) = done(emulate(&[0x3b, 0x10], &mut f));
        assert_ne!(fl & rflags::ZF, 0);
        f.set_mmio(MMIO_BASE + 0x11, 1, 0x80);
        let (_, fl) = done(emulate(&[0xf6, 0x40, 0x11, 0x80], &mut f));
        assert_eq!(fl & (rflags::ZF | rflags::SF), rflags::SF);
        // add (%rax),%edx writes the register.
        run64(&[0x03, 0x10], &mut f);
        assert_eq!(f.regs[RDX], 0x222);
    }

    #[test]
    fn emulate_bit_tests() {
        let mut f = Fake::new(Mode::Bits64);
        f.regs[RDX] = MMIO_BASE + 0x10;
        // lock btsl $3,(%rdx)
        let (_, fl) = done(emulate(&[0xf0, 0x0f, 0xba, 0x2a, 0x03], &mut f));
        assert_eq!((fl & rflags::CF, f.mmio_val(MMIO_BASE + 0x10, 4)), (0, 8));
        // bt $35,(%rdx): immediate taken modulo 32.
        let (_, fl) = done(emulate(&[0x0f, 0xba, 0x22, 35], &mut f));
        assert_eq!(fl & rflags::CF, rflags::CF);
        // btr %eax,(%rdx) with eax = 35: the dword after, bit 3.
        f.set_mmio(MMIO_BASE + 0x14, 4, 0xff);
        f.regs[RAX] = 35;
        let (_, fl) = done(emulate(&[0x0f, 0xb3, 0x02], &mut f));
        assert_eq!(fl & rflags::CF, rflags::CF);
        assert_eq!(f.mmio_val(MMIO_BASE + 0x14, 4), 0xf7);
        // btc with a negative offset: eax = -1 → the dword before, bit 31.
        f.regs[RAX] = 0xffff_ffff;
        done(emulate(&[0x0f, 0xbb, 0x02], &mut f));
        assert_eq!(f.mmio_val(MMIO_BASE + 0xc, 4), 0x8000_0000);
    }

    /// Random bytes, registers and environments never panic, and a call
    /// does a bounded amount of work.
    #[test]
    fn emulate_random_bytes_never_panic() {
        let interesting: [u8; 24] = [
            0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x48, 0x41, 0x4c,
            0x0f, 0x88, 0x8b, 0xc7, 0x81, 0xa5, 0xab, 0xa1, 0xba, 0x87,
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut outcomes = [0usize; 3];
        for i in 0..200_000 {
            let mode = [Mode::Bits16, Mode::Bits32, Mode::Bits64][(rng.next() % 3) as usize];
            let len = (rng.next() % 17) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.next().is_multiple_of(3) {
                        interesting[(rng.next() % 24) as usize]
                    } else {
                        rng.next() as u8
                    }
                })
                .collect();
            let mut f = Fake::new(mode);
            f.ram = Vec::new(); // every RAM access faults (#GP from the fake)
            f.rip = rng.operand();
            f.rflags = rng.next();
            for r in &mut f.regs {
                *r = if rng.next().is_multiple_of(2) {
                    MMIO_BASE + (rng.next() % 0x2000)
                } else {
                    rng.operand()
                };
            }
            for s in &mut f.seg {
                *s = rng.operand();
            }
            if rng.next().is_multiple_of(4) {
                f.pending_after = Some((rng.next() % 4) as usize);
            }
            if i % 7 == 0 {
                f.unmapped.push(MMIO_BASE + 0x1000);
            }
            let o = emulate(&bytes, &mut f);
            outcomes[match o {
                Outcome::Done { .. } => 0,
                Outcome::Retry => 1,
                Outcome::Exception(_) => 2,
            }] += 1;
            assert!(
                f.log.len() as u64 <= 4 * MAX_REP,
                "{bytes:02x?}: {} accesses",
                f.log.len()
            );
            let _ = decode(&bytes, mode);
        }
        assert!(outcomes.iter().all(|&n| n > 0), "{outcomes:?}");
    }
}
