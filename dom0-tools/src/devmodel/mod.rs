//! Dom0's device model for HVM guests (QEMU's part in a Xen system, much
//! smaller): the devices a guest reaches through an ioreq server when the
//! hypervisor does not emulate them itself.
//!
//! **Owns**: the emulated devices' state ([`uart16550`]: COM1, whose output
//! goes to the guest's `xl console`; the PCI host bridge in [`ioreq`]) and
//! the dispatch of Xen `ioreq_t` requests to them ([`ioreq`]).
//! **Trusts**: nothing in a request: sizes, counts, addresses and the
//! direction flag are checked, and guest memory is reached only through
//! the fallible [`GuestMemory`] trait.
//!
//! Pure logic, host-tested ([`server`]: the shared ioreq page's slot
//! protocol); the glue (mapping the ioreq page, the event channels, the
//! console backlog) is in `toolstack::hvm`.

pub mod ioreq;
pub mod server;
pub mod uart16550;

#[cfg(test)]
pub(crate) mod testmem;

/// Guest memory as Dom0 reaches it (the glue maps the guest's frames):
/// the device model's rep requests and the HVM/PVH builders write and
/// read guest-physical addresses through it; every access may fail.
pub trait GuestMemory {
    /// Copies `buf.len()` bytes at guest-physical `gpa` into `buf`.
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryFault>;
    /// Copies `buf` to guest-physical `gpa`.
    fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), MemoryFault>;
}

/// Guest memory at this address could not be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryFault {
    /// The guest-physical address.
    pub gpa: u64,
}

/// A device on the port or memory bus, addressed by offset from its base.
///
/// Accesses are 1, 2, 4 or 8 bytes; the dispatcher splits accesses wider
/// than [`IoDevice::max_access`] into single bytes at successive
/// offsets, as the ISA bus does for an 8-bit device.
pub trait IoDevice {
    /// Reads `size` bytes at `offset` (the value in the low bytes).
    fn read(&mut self, offset: u64, size: u8) -> u64;
    /// Writes the low `size` bytes of `value` at `offset`.
    fn write(&mut self, offset: u64, size: u8, value: u64);
    /// The widest access the device takes whole.
    fn max_access(&self) -> u8 {
        8
    }
}
