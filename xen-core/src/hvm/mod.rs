//! The vendor-neutral half of HVM (DESIGN.md decision 4).
//!
//! **Owns**: the platform devices the hypervisor emulates for unmodified
//! guests, each a pure state machine that builds for the host and is tested
//! there: the 8259A PIC pair, the 8254 PIT, the MC146818 RTC/CMOS, the
//! IOAPIC and the per-vCPU local APIC; and the decoding and emulation of
//! the instructions a guest touches MMIO with ([`emulate`]); the guest's
//! nested page tables (NPT or EPT, [`p2m`]); and its CPUID and MSR views
//! ([`cpuid`], [`msr`]: pure decisions the exit handlers carry out).
//!
//! **Trusts**: nothing from the guest: every port, MMIO and MSR value and
//! every instruction byte is guest-controlled, so nothing here panics,
//! allocates or uses `unsafe`. Time comes from the caller as nanoseconds on
//! one monotonic clock; routing (PIC/IOAPIC → LAPIC, IPIs between LAPICs)
//! is the caller's, from the requests these devices return.

pub mod cpuid;
pub mod emulate;
pub mod exit;
pub mod msr;
pub mod p2m;
pub mod platform;
pub mod vacpi;
pub mod vioapic;
pub mod vlapic;
pub mod vpic;
pub mod vpit;
pub mod vrtc;
pub mod walk;
