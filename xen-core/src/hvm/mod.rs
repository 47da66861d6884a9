//! The vendor-neutral half of HVM (DESIGN.md decision 4).
//!
//! **Owns**: the platform devices the hypervisor emulates for unmodified
//! guests, each a pure state machine that builds for the host and is tested
//! there: the 8259A PIC pair, the 8254 PIT, the MC146818 RTC/CMOS, the
//! IOAPIC and the per-vCPU local APIC.
//!
//! **Trusts**: nothing from the guest: every port, MMIO and MSR value is
//! guest-controlled, so no device panics, allocates or uses `unsafe`. Time
//! comes from the caller as nanoseconds on one monotonic clock; routing
//! (PIC/IOAPIC → LAPIC, IPIs between LAPICs) is the caller's, from the
//! requests these devices return.

pub mod vioapic;
pub mod vlapic;
pub mod vpic;
pub mod vpit;
pub mod vrtc;
