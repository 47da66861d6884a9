//! Domains and their vCPUs: what xen-core knows about each guest, the guest
//! memory accessors hypercalls use, and shutting down or crashing a domain.
//!
//! Owns the domain table. Trusts nothing a guest wrote: guest pointers are
//! translated through the guest's own page tables in software
//! (`xen_core::guest_walk`) and copied through the direct map.

use crate::arch::x86_64::entry::TrapFrame;
use crate::arch::x86_64::paging::phys_to_virt;
use crate::arch::x86_64::traps::{dump_registers, vector_name};
use crate::arch::x86_64::{instr, power};
use alloc::boxed::Box;
use alloc::vec::Vec;
use hypercall_abi::arch_x86::TrapInfo;
use hypercall_abi::errno::Errno;
use hypercall_abi::sched::ShutdownReason;
use spin::Mutex;
use xen_core::guest_walk::{self, PteReader};

/// A domain's ID (Xen's `domid_t`).
pub type DomId = u16;

/// Callbacks a PV guest registers (set_callbacks / callback_op).
#[derive(Clone, Copy, Debug, Default)]
pub struct Callbacks {
    /// Event upcall entry.
    pub event: u64,
    /// Failsafe callback (bad segment on return to guest).
    pub failsafe: u64,
    /// 64-bit syscall from guest user mode.
    pub syscall: u64,
    /// NMI callback.
    pub nmi: u64,
    /// Flags (CALLBACKF_mask_events) per callback type, by type number.
    pub flags: [u16; 8],
}

/// One virtual CPU.
pub struct Vcpu {
    /// Its number in the domain.
    pub id: u32,
    /// Whether it is up (VCPUOP_is_up).
    pub is_up: bool,
    /// Machine address of its L4 page table (guest kernel CR3).
    pub cr3: u64,
    /// Guest kernel stack for bounces (stack_switch).
    pub kernel_ss: u64,
    /// Guest kernel stack pointer for bounces.
    pub kernel_sp: u64,
    /// The virtual IDT (set_trap_table), indexed by vector; address 0 = none.
    pub trap_table: Box<[TrapInfo; 256]>,
    /// Registered callbacks.
    pub callbacks: Callbacks,
}

/// A domain.
pub struct Domain {
    /// Its ID.
    pub domid: DomId,
    /// Whether it is privileged (Dom0).
    pub is_privileged: bool,
    /// Its vCPUs.
    pub vcpus: Vec<Vcpu>,
    /// Pages it owns now.
    pub tot_pages: u64,
    /// Pages it may own.
    pub max_pages: u64,
    /// Machine address of its shared_info page.
    pub shared_info_maddr: u64,
    /// Pseudo-physical to machine frame map (for the builder and M2P).
    pub p2m: Vec<u64>,
    /// Set once it has shut down.
    pub shutdown: Option<ShutdownReason>,
    /// SCHEDOP_shutdown_code's recorded reason.
    pub shutdown_code: Option<u32>,
    /// Whether its console output is at the start of a line.
    pub console_at_line_start: bool,
    /// Whether it has written to the console yet.
    pub console_written: bool,
    /// Its command line, handed over in start_info.
    pub handle: [u8; 16],
}

impl Domain {
    /// A fresh domain with `nr_vcpus` vCPUs, all down.
    pub fn new(domid: DomId, is_privileged: bool, nr_vcpus: u32) -> Self {
        let vcpus = (0..nr_vcpus)
            .map(|id| Vcpu {
                id,
                is_up: false,
                cr3: 0,
                kernel_ss: 0,
                kernel_sp: 0,
                trap_table: Box::new([TrapInfo::default(); 256]),
                callbacks: Callbacks::default(),
            })
            .collect();
        Domain {
            domid,
            is_privileged,
            vcpus,
            tot_pages: 0,
            max_pages: 0,
            shared_info_maddr: 0,
            p2m: Vec::new(),
            shutdown: None,
            shutdown_code: None,
            console_at_line_start: true,
            console_written: false,
            handle: [0; 16],
        }
    }
}

/// The domain table.
pub static DOMAINS: Mutex<Vec<Domain>> = Mutex::new(Vec::new());

/// Highest machine address the direct map covers (set at boot).
static MAX_MADDR: spin::Once<u64> = spin::Once::new();

/// Records the end of RAM, beyond which guest page tables may not point.
pub fn set_max_maddr(max: u64) {
    MAX_MADDR.call_once(|| max);
}

struct DirectMapReader;

impl PteReader for DirectMapReader {
    fn read_pte(&self, table: u64, index: usize) -> Option<u64> {
        if table + 4096 > *MAX_MADDR.get()? || index >= 512 {
            return None;
        }
        // SAFETY: `table` is a page inside RAM covered by the direct map
        // (checked above); reading a u64 there cannot fault.
        Some(unsafe {
            (phys_to_virt(table) as *const u64)
                .add(index)
                .read_volatile()
        })
    }
}

/// Copies `buf.len()` bytes from guest virtual address `va` of the address
/// space rooted at `cr3`. -EFAULT if any byte is not readable by the guest.
pub fn copy_from_guest(cr3: u64, va: u64, buf: &mut [u8]) -> Result<(), Errno> {
    let mut done = 0usize;
    while done < buf.len() {
        let cur = va.checked_add(done as u64).ok_or(Errno::EFAULT)?;
        let ma =
            guest_walk::translate(&DirectMapReader, cr3, cur, false).map_err(|_| Errno::EFAULT)?;
        let chunk = (4096 - (cur & 0xfff) as usize).min(buf.len() - done);
        if ma + chunk as u64 > *MAX_MADDR.get().ok_or(Errno::EFAULT)? {
            return Err(Errno::EFAULT);
        }
        // SAFETY: [ma, ma+chunk) lies in one guest-readable page inside the
        // direct map; the destination is our own buffer.
        unsafe {
            core::ptr::copy_nonoverlapping(
                phys_to_virt(ma) as *const u8,
                buf[done..].as_mut_ptr(),
                chunk,
            )
        };
        done += chunk;
    }
    Ok(())
}

/// Copies `buf` to guest virtual address `va`; -EFAULT unless every byte is
/// guest-writable.
pub fn copy_to_guest(cr3: u64, va: u64, buf: &[u8]) -> Result<(), Errno> {
    let mut done = 0usize;
    while done < buf.len() {
        let cur = va.checked_add(done as u64).ok_or(Errno::EFAULT)?;
        let ma =
            guest_walk::translate(&DirectMapReader, cr3, cur, true).map_err(|_| Errno::EFAULT)?;
        let chunk = (4096 - (cur & 0xfff) as usize).min(buf.len() - done);
        if ma + chunk as u64 > *MAX_MADDR.get().ok_or(Errno::EFAULT)? {
            return Err(Errno::EFAULT);
        }
        // SAFETY: [ma, ma+chunk) lies in one guest-writable page of the
        // guest's own memory (page-table frames are never mapped writable).
        unsafe {
            core::ptr::copy_nonoverlapping(buf[done..].as_ptr(), phys_to_virt(ma) as *mut u8, chunk)
        };
        done += chunk;
    }
    Ok(())
}

/// Reads a plain-old-data value from guest memory.
pub fn read_guest<T: zerocopy::FromBytes + zerocopy::IntoBytes>(
    cr3: u64,
    va: u64,
) -> Result<T, Errno> {
    let mut v = T::new_zeroed();
    copy_from_guest(cr3, va, v.as_mut_bytes())?;
    Ok(v)
}

/// Writes a plain-old-data value to guest memory.
pub fn write_guest<T: zerocopy::IntoBytes + zerocopy::Immutable>(
    cr3: u64,
    va: u64,
    v: &T,
) -> Result<(), Errno> {
    copy_to_guest(cr3, va, v.as_bytes())
}

/// Shuts `d` down for `reason`. Dom0 going away stops the machine, with an
/// exit code that names the reason.
pub fn domain_shutdown(d: &mut Domain, reason: ShutdownReason) -> ! {
    d.shutdown = Some(reason);
    if d.is_privileged {
        let what = match reason {
            ShutdownReason::Poweroff => "halted",
            ShutdownReason::Reboot => "rebooted",
            ShutdownReason::Crash => "crashed",
            _ => "shut down",
        };
        log::info!(
            "Hardware Dom0 {}: {} ({})",
            what,
            "powering off machine",
            reason.name()
        );
        power::power_off(reason.raw());
    }
    // Only Dom0 exists so far; other domains arrive with the toolstack.
    log::info!("d{} shut down: {}", d.domid, reason.name());
    crate::sched::idle_loop();
}

/// Crashes the current domain, with a register dump, as Xen's
/// `domain_crash()` does.
pub fn crash_current(frame: &TrapFrame, why: core::fmt::Arguments) -> ! {
    let mut doms = DOMAINS.lock();
    let Some(d) = doms.first_mut() else {
        log::error!("guest fault with no current domain");
        power::halt_fatal();
    };
    let vcpu = d.vcpus.first().map_or(0, |v| v.id);
    crate::println!("(XEN) domain crash: d{}v{}: {}", d.domid, vcpu, why);
    crate::println!(
        "(XEN) ----[ Domain {} (vcpu#{}) crashed on cpu#{} ]----",
        d.domid,
        vcpu,
        crate::arch::x86_64::percpu::this_cpu().cpu
    );
    crate::println!(
        "(XEN) RIP:    {:04x}:{:016x}   RFLAGS: {:016x}",
        frame.cs,
        frame.rip,
        frame.rflags
    );
    crate::println!(
        "(XEN) CR2: {:016x}   CR3: {:016x}",
        instr::read_cr2(),
        instr::read_cr3()
    );
    dump_registers(frame);
    domain_shutdown(d, ShutdownReason::Crash);
}

/// A fault or trap raised while a PV guest was running.
pub fn guest_exception(frame: &mut TrapFrame) {
    let v = frame.vector;
    let handler = {
        let doms = DOMAINS.lock();
        doms.first()
            .and_then(|d| d.vcpus.first())
            .map(|vc| vc.trap_table[(v & 0xff) as usize].address)
            .unwrap_or(0)
    };
    if handler == 0 {
        crash_current(
            frame,
            format_args!(
                "{} (vector {}, error {:#x}) with no guest handler",
                vector_name(v),
                v,
                frame.error_code
            ),
        );
    }
    crash_current(
        frame,
        format_args!(
            "{} (vector {}, error {:#x}): bouncing to the guest handler at {:#x} arrives with PV trap bouncing",
            vector_name(v),
            v,
            frame.error_code,
            handler
        ),
    );
}
