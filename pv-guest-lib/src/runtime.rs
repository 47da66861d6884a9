//! Bringing the whole library up in one call.
//!
//! [`init`] does, in order: map the shared info page; register the trap
//! table and the event, failsafe and syscall callbacks; set up the frame
//! allocator and page-table manager; give the heap its pages (feature
//! `alloc`); bind vCPU 0's `VIRQ_TIMER`; enable events. Each step that
//! fails is reported with its name, so a test kernel can say exactly what
//! the hypervisor refused. Kernels that want less call the steps
//! themselves (`shared::map`, `trap::install`, `frame::init`, ...).

use core::fmt;

use crate::error::Errno;
use crate::mm::PtError;

/// Pages [`init`] gives the heap (1 MiB).
pub const HEAP_PAGES: u64 = 256;

/// The step of [`init`] that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// Before boot, or on the host.
    NotBooted,
    /// Mapping the shared info page (`update_va_mapping`).
    SharedInfo(Errno),
    /// `set_trap_table` / callback registration.
    Traps(Errno),
    /// Frame allocator / page tables.
    Memory(PtError),
    /// The heap's pages.
    Heap(PtError),
    /// Binding `VIRQ_TIMER`.
    Timer(Errno),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::NotBooted => f.write_str("not booted"),
            InitError::SharedInfo(e) => write!(f, "mapping shared_info: {e}"),
            InitError::Traps(e) => write!(f, "registering traps/callbacks: {e}"),
            InitError::Memory(e) => write!(f, "memory: {e}"),
            InitError::Heap(e) => write!(f, "heap: {e}"),
            InitError::Timer(e) => write!(f, "binding VIRQ_TIMER: {e}"),
        }
    }
}

/// What [`init`] set up.
#[derive(Clone, Copy, Debug)]
pub struct Runtime {
    /// The memory manager's view.
    pub mm: crate::frame::MmInfo,
    /// vCPU 0's `VIRQ_TIMER` port.
    pub timer_port: crate::events::Port,
}

/// Brings everything up (see the module docs). Call once, on vCPU 0.
pub fn init() -> Result<Runtime, InitError> {
    let si = crate::boot::start_info().ok_or(InitError::NotBooted)?;
    crate::shared::map(si.shared_info).map_err(InitError::SharedInfo)?;
    crate::trap::install().map_err(InitError::Traps)?;
    let mm = crate::frame::init().map_err(InitError::Memory)?;
    #[cfg(feature = "alloc")]
    crate::heap::init(HEAP_PAGES).map_err(InitError::Heap)?;
    let timer_port = crate::time::init_vcpu_timer(0).map_err(InitError::Timer)?;
    // The p2m for the toolstack (save/restore), as Linux publishes it at
    // boot (not Dom0: nobody saves it); a guest that cannot is still a
    // guest, just not a saveable one.
    #[cfg(target_os = "none")]
    if !si.flags.initdomain() {
        if let Err(e) = crate::p2m_list::publish() {
            log::warn!("cannot publish the p2m frame list list: {e}");
        }
    }
    crate::events::irq_enable();
    Ok(Runtime { mm, timer_port })
}
