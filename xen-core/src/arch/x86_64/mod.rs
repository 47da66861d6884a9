//! x86_64 hardware glue: boot entry, instructions, descriptor tables, paging,
//! APIC, SMP bring-up and the guest entry/exit paths.
pub mod acpi;
pub mod apic;
pub mod boot;
pub mod entry;
pub mod flush;
pub mod gdt;
pub mod instr;
pub mod ioapic;
pub mod paging;
pub mod percpu;
pub mod pic;
pub mod pool;
pub mod power;
pub mod serial;
pub mod smp;
pub mod svm;
pub mod svm_vcpu;
pub mod syscall_floor;
pub mod traps;
pub mod vmx;
