//! Per-vCPU CPU state a PV guest manages through hypercalls:
//! `set_segment_base`, `fpu_taskswitch`, `set_debugreg`, `get_debugreg`.

use super::Call;
use crate::arch::x86_64::instr::{self, msr};
use crate::domain::Vcpu;
use crate::pv::DR7_ENABLE_MASK;
use hypercall_abi::arch_x86::{SegBase, HYPERVISOR_VIRT_START};
use hypercall_abi::errno::Errno;
use xen_core::guest_walk::is_canonical;

/// DR6 bits a guest may not clear (reads as 1: Intel SDM vol 3 §17.2.3).
const DR6_DEFAULT: u64 = 0xffff_0ff0;
/// DR7 bits that must be zero: GD (13), and reserved 11..12, 14..15, 32+.
const DR7_RESERVED: u64 = 0xffff_ffff_0000_d800;
/// DR7 bit that must read as 1.
const DR7_DEFAULT: u64 = 1 << 10;
/// DR7 R/W field value "I/O breakpoint" (needs CR4.DE; refused for PV).
const DR7_RW_IO: u64 = 0b10;

pub fn set_segment_base(c: &mut Call) -> Result<i64, Errno> {
    let [which, base, ..] = c.args();
    let kernel = c.vcpu().kernel_mode;
    // Xen's `which` is an `unsigned int`.
    match SegBase::from_raw(u64::from(which as u32)).ok_or(Errno::EINVAL)? {
        SegBase::Fs => {
            if !is_canonical(base) {
                return Err(Errno::EINVAL);
            }
            c.vcpu().fs_base = base;
            // SAFETY: the FS base is the guest's; xen-core does not use FS.
            unsafe { instr::wrmsr(msr::FS_BASE, base) };
        }
        SegBase::GsKernel => {
            if !is_canonical(base) {
                return Err(Errno::EINVAL);
            }
            c.vcpu().gs_base_kernel = base;
            if kernel {
                // SAFETY: GS_BASE is the guest's (xen-core's per-CPU
                // pointer lives in KERNEL_GS_BASE).
                unsafe { instr::wrmsr(msr::GS_BASE, base) };
            }
        }
        SegBase::GsUser => {
            if !is_canonical(base) {
                return Err(Errno::EINVAL);
            }
            c.vcpu().gs_base_user = base;
            if !kernel {
                // SAFETY: as above.
                unsafe { instr::wrmsr(msr::GS_BASE, base) };
            }
        }
        SegBase::GsUserSel => {
            // Loading a selector resets the user GS base. Only the null
            // selector and the flat guest data selector are accepted
            // (a bad selector would fault inside xen-core).
            let sel = base & 0xffff;
            if sel != 0 && sel | 3 != u64::from(crate::arch::x86_64::gdt::RING3_DS) {
                return Err(Errno::EINVAL);
            }
            c.vcpu().gs_base_user = 0;
        }
    }
    Ok(0)
}

pub fn fpu_taskswitch(c: &mut Call) -> Result<i64, Errno> {
    let [set, ..] = c.args();
    do_fpu_taskswitch(c.vcpu(), set as u32 != 0);
    Ok(0)
}

/// Sets or clears the running vCPU's virtual CR0.TS (Xen's
/// `do_fpu_taskswitch`; also `clts` and `mov %cr0` emulation).
pub(crate) fn do_fpu_taskswitch(v: &mut Vcpu, ts: bool) {
    v.fpu_ts = ts;
    if ts {
        instr::stts();
    } else {
        instr::clts();
    }
}

/// Validates a debug register value as Xen's set_debugreg does.
fn check_debugreg(reg: u64, value: u64) -> Result<u64, Errno> {
    match reg {
        0..=3 => {
            // Breakpoints may only watch guest addresses.
            if !is_canonical(value)
                || (HYPERVISOR_VIRT_START..hypercall_abi::arch_x86::HYPERVISOR_VIRT_END)
                    .contains(&value)
            {
                return Err(Errno::EPERM);
            }
            Ok(value)
        }
        6 => {
            if value >> 32 != 0 {
                return Err(Errno::EINVAL);
            }
            Ok(value | DR6_DEFAULT)
        }
        7 => {
            if value & DR7_RESERVED != 0 {
                return Err(Errno::EINVAL);
            }
            for i in 0..4 {
                if value & (0b11 << (2 * i)) != 0 && (value >> (16 + 4 * i)) & 0b11 == DR7_RW_IO {
                    return Err(Errno::EPERM);
                }
            }
            Ok(value | DR7_DEFAULT)
        }
        _ => Err(Errno::EINVAL),
    }
}

pub fn set_debugreg(c: &mut Call) -> Result<i64, Errno> {
    let [reg, value, ..] = c.args();
    do_set_debugreg(c.vcpu(), reg, value)?;
    Ok(0)
}

/// Xen's `set_debugreg` on the running vCPU (also `mov %drN` emulation).
pub(crate) fn do_set_debugreg(dr: &mut Vcpu, reg: u64, value: u64) -> Result<(), Errno> {
    let v = check_debugreg(reg, value)?;
    dr.debugreg[reg as usize] = v;
    if reg == 7 || dr.debugreg[7] & DR7_ENABLE_MASK != 0 {
        let n = reg as usize;
        // SAFETY: validated above: addresses are the guest's, DR7 has no
        // GD or I/O breakpoints.
        unsafe { instr::write_dr(n, v) };
    }
    Ok(())
}

pub fn get_debugreg(c: &mut Call) -> Result<i64, Errno> {
    let [reg, ..] = c.args();
    do_get_debugreg(c.vcpu(), reg).map(|v| v as i64)
}

/// Xen's `get_debugreg` on the running vCPU (also `mov %drN` emulation).
pub(crate) fn do_get_debugreg(v: &Vcpu, reg: u64) -> Result<u64, Errno> {
    match reg {
        0..=3 | 7 => Ok(v.debugreg[reg as usize]),
        6 => Ok(instr::read_dr6() | DR6_DEFAULT),
        _ => Err(Errno::EINVAL),
    }
}
