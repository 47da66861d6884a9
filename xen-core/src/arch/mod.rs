//! Architecture glue. Only x86_64.
pub mod x86_64;
