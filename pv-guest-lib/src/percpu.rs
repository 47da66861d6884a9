//! Which vCPU am I? Per-vCPU stacks with a header.
//!
//! Every vCPU runs on a [`STACK_SIZE`] stack aligned to its size, whose
//! lowest 16 bytes hold a [`Header`] with the vCPU id. The id of the running
//! vCPU is therefore one mask of `rsp` away ([`current_vcpu`]), with no
//! segment-base hypercalls. Trap and event frames land on the same stack
//! (Xen pushes them on the current kernel stack, or, from user mode, at the
//! `stack_switch` stack, which this library keeps inside the vCPU's stack).
//! vCPU 0 uses the boot stack (`boot.rs` aligns it).

use crate::layout::PAGE_SIZE;

/// Size (and alignment) of a vCPU stack: 64 KiB.
pub const STACK_SIZE: u64 = 16 * PAGE_SIZE;

/// Marks a stack header.
pub const HEADER_MAGIC: u64 = 0x5043_5055_5354_4b21; // "PCPUSTK!"

/// The bottom of every vCPU stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// [`HEADER_MAGIC`].
    pub magic: u64,
    /// The vCPU that runs on this stack.
    pub vcpu: u64,
}

/// The stack base (header address) for a stack pointer.
pub const fn stack_base(rsp: u64) -> u64 {
    rsp & !(STACK_SIZE - 1)
}

/// The vCPU id in a header (0 if the header is not one of ours).
pub const fn header_vcpu(h: Header) -> u32 {
    if h.magic == HEADER_MAGIC && h.vcpu < u32::MAX as u64 {
        h.vcpu as u32
    } else {
        0
    }
}

/// The id of the vCPU running this code.
pub fn current_vcpu() -> u32 {
    header_vcpu(imp::read_header(stack_base(crate::arch::rsp())))
}

/// True if the current stack carries a valid header.
pub fn stack_ok() -> bool {
    imp::read_header(stack_base(crate::arch::rsp())).magic == HEADER_MAGIC
}

/// Writes the header of the stack whose lowest address is `base`.
///
/// # Safety
/// `base` must be the [`STACK_SIZE`]-aligned bottom of a stack this library
/// owns (mapped writable), with nothing else in its lowest 16 bytes.
pub unsafe fn init_stack(base: u64, vcpu: u32) {
    // SAFETY: the caller's contract.
    unsafe { imp::write_header(base, vcpu) }
}

#[cfg(target_os = "none")]
mod imp {
    use super::*;

    pub fn read_header(base: u64) -> Header {
        // SAFETY: `base` is the aligned bottom of the current stack: all of
        // a vCPU stack is mapped (the boot stack is in .bss, the others in
        // the direct map), so the 16 bytes are readable; a volatile read of
        // plain integers.
        unsafe { core::ptr::read_volatile(base as *const Header) }
    }

    pub unsafe fn write_header(base: u64, vcpu: u32) {
        let h = Header {
            magic: HEADER_MAGIC,
            vcpu: u64::from(vcpu),
        };
        // SAFETY: the caller (`init_stack`) guarantees the memory.
        unsafe { core::ptr::write_volatile(base as *mut Header, h) }
    }
}

#[cfg(not(target_os = "none"))]
mod imp {
    use super::*;

    pub fn read_header(_base: u64) -> Header {
        Header {
            magic: HEADER_MAGIC,
            vcpu: 0,
        }
    }

    pub unsafe fn write_header(_base: u64, _vcpu: u32) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_and_header() {
        assert_eq!(stack_base(0x1_2345_6789), 0x1_2345_0000);
        assert_eq!(stack_base(0x1_2340_0000), 0x1_2340_0000);
        assert_eq!(
            header_vcpu(Header {
                magic: HEADER_MAGIC,
                vcpu: 3
            }),
            3
        );
        assert_eq!(header_vcpu(Header { magic: 0, vcpu: 3 }), 0);
        assert_eq!(current_vcpu(), 0);
        assert!(stack_ok());
    }
}
