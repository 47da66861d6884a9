//! The glue to the (virtual) hardware, for `x86_64-unknown-none` only.
//!
//! Owns the CPU from the first instruction on: boot entry and page tables
//! ([`boot`], [`paging`]), COM1 ([`serial`]), the IDT ([`idt`]), the
//! interrupt controllers and timers ([`pic`], [`pit`], [`lapic`],
//! [`ioapic`], [`cmos`]), the firmware's tables and the memory map
//! ([`firmware`], [`memmap`]), the second CPU ([`smp`]), power-off
//! ([`power`]), the time-stamp counter for benchmarks ([`tsc`]) and
//! faults a fuzzer survives ([`trap`]).
//! Trusts the boot loader for the entry state its protocol promises, and
//! nothing the hardware reports.

pub mod boot;
pub mod cmos;
pub mod cpu;
pub mod firmware;
pub mod idt;
pub mod ioapic;
pub mod lapic;
pub mod memmap;
pub mod paging;
pub mod phys;
pub mod pic;
pub mod pit;
pub mod power;
pub mod serial;
pub mod smp;
pub mod trap;
pub mod tsc;
