//! Vendor-neutral HVM: instruction emulation for MMIO (and, beside it, the
//! platform device models).

pub mod emulate;
