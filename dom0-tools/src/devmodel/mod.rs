//! Dom0's device model for HVM guests (QEMU's part in a Xen system, much
//! smaller): the devices a guest reaches through an ioreq server when the
//! hypervisor does not emulate them itself.
//!
//! **Owns**: the emulated devices' state ([`uart16550`]: COM1, whose output
//! goes to the guest's `xl console`; the PCI host bridge in [`ioreq`]) and
//! the dispatch of Xen `ioreq_t` requests to them ([`ioreq`]).
//! **Trusts**: nothing in a request: sizes, counts, addresses and the
//! direction flag are checked, and guest memory is reached only through
//! the fallible [`ioreq::GuestMemory`] trait.
//!
//! Pure logic, host-tested; the glue (mapping the ioreq page, the event
//! channel, the console ring) lives with the rest of Dom0's HVM support.

pub mod ioreq;
pub mod uart16550;

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
