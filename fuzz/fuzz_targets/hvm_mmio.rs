//! The instruction decoder and emulator behind HVM MMIO exits (xen-core
//! `hvm::emulate`), and the PV privileged-instruction decoder (xen-core
//! `x86_emul::decode`), on the same bytes.
//!
//! Input: a mode byte, a register seed, then up to 15 instruction bytes.
//! The fake vCPU has 64 KiB of RAM at 0, MMIO above it (answering, or
//! pending, as the mode byte says) and nothing mapped past 128 KiB.
//! Checks: a decoded instruction is 1..=15 bytes, within the bytes given,
//! and decodes the same from exactly its own bytes; `Truncated` only for
//! fewer than 15 bytes; `Retry` (an MMIO read pending) changed no
//! register and no RAM; `Done` moves RIP past the instruction (or leaves
//! it for a `rep` with iterations left); exceptions are #GP, #SS, #UD or
//! #PF (with CR2 for #PF only).
#![no_main]

use libfuzzer_sys::fuzz_target;
use xen_core::hvm::emulate::{decode, emulate, vector, Access, Env, Fault, Mode, Outcome, Pending};
use xen_core::x86_emul::{self, DecodeError, Segment, MAX_INSN_LEN};

const RAM_END: u64 = 0x1_0000;
const MMIO_END: u64 = 0x2_0000;

struct Vcpu {
    mode: Mode,
    rip: u64,
    rflags: u64,
    regs: [u64; 16],
    ram: Vec<u8>,
    pending: bool,
    reg_writes: usize,
    ram_writes: usize,
    mmio_writes: usize,
}

impl Env for Vcpu {
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
        assert!(reg < 16, "register {reg}");
        self.regs[reg]
    }
    fn set_gpr(&mut self, reg: usize, val: u64) {
        assert!(reg < 16, "register {reg}");
        self.regs[reg] = val;
        self.reg_writes += 1;
    }
    fn segment_base(&self, seg: Segment) -> u64 {
        match seg {
            Segment::Fs => 0x100,
            Segment::Gs => 0x200,
            _ => 0,
        }
    }
    fn translate(&mut self, linear: u64, access: Access) -> Result<u64, Fault> {
        if linear < MMIO_END {
            Ok(linear)
        } else {
            let code = if access == Access::Write { 2 } else { 0 };
            Err(Fault::page_fault(linear, code))
        }
    }
    fn is_mmio(&self, gpa: u64) -> bool {
        (RAM_END..MMIO_END).contains(&gpa)
    }
    fn read_ram(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), Fault> {
        let at = gpa as usize;
        assert!(
            gpa < RAM_END && at + buf.len() <= self.ram.len(),
            "RAM read at {gpa:#x}"
        );
        assert_eq!(
            at / 4096,
            (at + buf.len().max(1) - 1) / 4096,
            "RAM read crosses a page"
        );
        buf.copy_from_slice(&self.ram[at..at + buf.len()]);
        Ok(())
    }
    fn write_ram(&mut self, gpa: u64, buf: &[u8]) -> Result<(), Fault> {
        let at = gpa as usize;
        assert!(
            gpa < RAM_END && at + buf.len() <= self.ram.len(),
            "RAM write at {gpa:#x}"
        );
        assert_eq!(
            at / 4096,
            (at + buf.len().max(1) - 1) / 4096,
            "RAM write crosses a page"
        );
        self.ram[at..at + buf.len()].copy_from_slice(buf);
        self.ram_writes += 1;
        Ok(())
    }
    fn mmio_read(&mut self, gpa: u64, size: u8) -> Result<u64, Pending> {
        assert!(matches!(size, 1 | 2 | 4 | 8), "MMIO read of {size} bytes");
        assert!(self.is_mmio(gpa), "MMIO read of RAM at {gpa:#x}");
        if self.pending {
            return Err(Pending);
        }
        Ok(gpa.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
    fn mmio_write(&mut self, gpa: u64, size: u8, _val: u64) -> Result<(), Pending> {
        assert!(matches!(size, 1 | 2 | 4 | 8), "MMIO write of {size} bytes");
        assert!(self.is_mmio(gpa), "MMIO write of RAM at {gpa:#x}");
        self.mmio_writes += 1;
        Ok(())
    }
}

fn check_decode(bytes: &[u8], mode: Mode) {
    match decode(bytes, mode) {
        Ok(insn) => {
            assert!(
                (1..=MAX_INSN_LEN).contains(&insn.len),
                "length {}",
                insn.len
            );
            assert!(insn.len <= bytes.len());
            assert_eq!(decode(&bytes[..insn.len], mode), Ok(insn), "prefix decode");
        }
        Err(DecodeError::Truncated) => assert!(bytes.len() < MAX_INSN_LEN),
        Err(_) => {}
    }
    match x86_emul::decode(bytes) {
        Ok(d) => {
            assert!((1..=MAX_INSN_LEN).contains(&d.len), "PV length {}", d.len);
            assert!(d.len <= bytes.len());
            assert_eq!(x86_emul::decode(&bytes[..d.len]), Ok(d), "PV prefix decode");
        }
        Err(DecodeError::Truncated) => assert!(bytes.len() < MAX_INSN_LEN),
        Err(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let (seed, insn) = rest.split_at(rest.len().min(8));
    let insn = &insn[..insn.len().min(MAX_INSN_LEN)];
    let mode = match m % 3 {
        0 => Mode::Bits16,
        1 => Mode::Bits32,
        _ => Mode::Bits64,
    };
    for mode in [Mode::Bits16, Mode::Bits32, Mode::Bits64] {
        check_decode(insn, mode);
    }

    let mut s = [0u8; 8];
    s[..seed.len()].copy_from_slice(seed);
    let seed = u64::from_le_bytes(s);
    // Registers near RAM or MMIO, as the seed picks.
    let regs: [u64; 16] = core::array::from_fn(|i| {
        let v = seed.rotate_left(i as u32 * 4);
        match (m >> 2) & 3 {
            0 => v & 0xffff,
            1 => RAM_END - 0x40 + (v & 0x7f),
            2 => v & 0x1_ffff,
            _ => v,
        }
    });
    let mut vcpu = Vcpu {
        mode,
        rip: 0x1000 + (seed & 0xff),
        rflags: 0x2 | (u64::from(m >> 4 & 1) << 10),
        regs,
        ram: vec![0x5a; RAM_END as usize],
        pending: m & 0x20 != 0,
        reg_writes: 0,
        ram_writes: 0,
        mmio_writes: 0,
    };
    let regs_before = vcpu.regs;
    let len = decode(insn, mode).map(|i| i.len);
    match emulate(insn, &mut vcpu) {
        Outcome::Retry => {
            assert_eq!(vcpu.reg_writes, 0, "a pending access changed registers");
            assert_eq!(vcpu.regs, regs_before);
            assert_eq!(vcpu.ram_writes, 0, "a pending access wrote RAM");
        }
        Outcome::Done { new_rip, .. } => {
            let len = len.expect("emulated an instruction that does not decode") as u64;
            let next = match mode {
                Mode::Bits64 => vcpu.rip.wrapping_add(len),
                Mode::Bits32 => vcpu.rip.wrapping_add(len) & 0xffff_ffff,
                Mode::Bits16 => vcpu.rip.wrapping_add(len) & 0xffff,
            };
            assert!(new_rip == next || new_rip == vcpu.rip, "RIP {new_rip:#x}");
        }
        Outcome::Exception(f) => {
            assert!(
                [vector::GP, vector::SS, vector::UD, vector::PF].contains(&f.vector),
                "vector {}",
                f.vector
            );
            assert_eq!(f.cr2.is_some(), f.vector == vector::PF);
        }
    }
});
