//! Dom0's toolstack: what libxl, xenconsoled and xenstored do for `xl` on
//! Xen, in one place. [`Toolstack`] implements [`crate::xl::XlBackend`]
//! over the hypercall wrappers ([`crate::xc`]), the PV domain builder
//! ([`crate::builder`]), xenstored ([`crate::xenstore`]) and the console
//! back-end ([`crate::consoled`]), and [`Toolstack::service`] is the back
//! ends' main loop step: it answers guests' xenstore requests, collects
//! their console output, and applies the `on_poweroff`/`on_reboot`/
//! `on_crash` actions when they shut down ([`lifecycle`]).
//!
//! The decisions are pure ([`lifecycle`]); the rest runs on the metal.

pub mod devices;
pub mod lifecycle;
pub mod media;

#[cfg(target_os = "none")]
mod glue;
#[cfg(target_os = "none")]
mod hvm;
#[cfg(target_os = "none")]
pub mod ip;
#[cfg(target_os = "none")]
mod net;

pub use crate::ipconf::NetError;
#[cfg(target_os = "none")]
pub use glue::Toolstack;
#[cfg(target_os = "none")]
pub use ip::TcpConn;
