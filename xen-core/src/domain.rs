//! Domains and their vCPUs: what xen-core knows about each guest, the guest
//! memory accessors hypercalls use, and shutting down or crashing a domain.
//!
//! Owns the domain table. Trusts nothing a guest wrote: guest pointers are
//! translated through the guest's own page tables in software
//! (`xen_core::guest_walk`) and copied through the direct map.

use crate::arch::x86_64::entry::TrapFrame;
use crate::arch::x86_64::paging::phys_to_virt;
use crate::arch::x86_64::traps::dump_registers;
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

/// Where a vCPU is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Not brought up (VCPUOP_up not done, or VCPUOP_down).
    Down,
    /// Waiting for a CPU.
    Runnable,
    /// On this physical CPU now.
    Running(u32),
    /// Blocked (SCHEDOP_block/poll) until an event or its timer.
    Blocked,
}

/// The FXSAVE image of a vCPU's x87/SSE state.
#[repr(C, align(16))]
pub struct FpuArea(pub [u8; 512]);

/// One virtual CPU.
pub struct Vcpu {
    /// Its number in the domain.
    pub id: u32,
    /// Its run state.
    pub state: RunState,
    /// Registers while it is not on a CPU (the live copy is on the CPU's
    /// stack while it runs).
    pub regs: TrapFrame,
    /// Guest kernel mode (true) or guest user mode: both run in ring 3.
    pub kernel_mode: bool,
    /// Machine address of the guest kernel's L4 (guest_table).
    pub guest_table: u64,
    /// Machine address of the guest user L4 (guest_table_user), 0 if none.
    pub guest_table_user: u64,
    /// Guest kernel stack for bounces from user mode (stack_switch).
    pub kernel_ss: u64,
    /// Guest kernel stack pointer for bounces from user mode.
    pub kernel_sp: u64,
    /// FS base.
    pub fs_base: u64,
    /// GS base while in guest kernel mode.
    pub gs_base_kernel: u64,
    /// GS base while in guest user mode.
    pub gs_base_user: u64,
    /// The virtual IDT (set_trap_table), indexed by vector; address 0 = none.
    pub trap_table: Box<[TrapInfo; 256]>,
    /// Registered callbacks.
    pub callbacks: Callbacks,
    /// `VGCF_*` flags that change delivery (syscall/failsafe disable events).
    pub vgc_flags: u64,
    /// Machine address of its vcpu_info (shared_info's slot, or registered).
    pub vcpu_info_maddr: u64,
    /// One-shot timer deadline, system time in ns.
    pub singleshot: Option<u64>,
    /// Periodic timer: (period, next deadline) in ns.
    pub periodic: Option<(u64, u64)>,
    /// When the periodic timer last fired (Xen's `periodic_last_event`):
    /// setting a period fires at once if a period has passed since.
    pub periodic_last: u64,
    /// Event-channel ports a SCHEDOP_poll waits on (empty: not polling).
    pub poll_ports: heapless::Vec<u32, 8>,
    /// When a SCHEDOP_poll gives up, system time in ns.
    pub poll_deadline: Option<u64>,
    /// x87/SSE state.
    pub fpu: Box<FpuArea>,
    /// Whether `fpu` holds state (else the vCPU starts from FNINIT).
    pub fpu_valid: bool,
    /// Virtual CR0.TS (fpu_taskswitch).
    pub fpu_ts: bool,
    /// Machine frames of its GDT (set_gdt), each typed as a descriptor page.
    pub gdt_frames: heapless::Vec<u64, 14>,
    /// Number of GDT entries it declared.
    pub gdt_ents: u64,
    /// Machine frames of its LDT (MMUEXT_SET_LDT), typed as descriptor pages.
    pub ldt_frames: heapless::Vec<u64, 16>,
    /// Number of LDT entries (0: no LDT).
    pub ldt_ents: u64,
    /// Guest virtual address of the LDT.
    pub ldt_base: u64,
    /// Debug registers DR0..DR7 (4 and 5 unused).
    pub debugreg: [u64; 8],
    /// An HVM vCPU's VMCB, registers and emulation state (from its first
    /// context); `None` for PV vCPUs.
    pub hvm: Option<Box<crate::hvm_run::HvmVcpuState>>,
    /// Runstate accounting (VCPUOP_get_runstate_info), kept by `sched`.
    pub runstate: xen_core::runstate::Runstate,
    /// Guest virtual address of its registered runstate area (0: none),
    /// refreshed at every context switch.
    pub runstate_guest: u64,
    /// Privileged-instruction emulation state (virtual CR2/CR4, IOPL, ...).
    pub emul: crate::pv_emul::VcpuEmul,
    /// Taken down by its domain's shutdown while it was up (Xen's
    /// `paused_for_shutdown`): `XEN_DOMCTL_resumedomain` brings it back.
    pub paused_for_shutdown: bool,
}

impl Vcpu {
    /// The page table the vCPU runs on in its current mode.
    pub fn current_table(&self) -> u64 {
        if self.kernel_mode || self.guest_table_user == 0 {
            self.guest_table
        } else {
            self.guest_table_user
        }
    }
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
    /// Its handle (xen_domain_handle_t).
    pub handle: [u8; 16],
    /// Its event channels (2-level ABI), sized for its vCPUs.
    pub evtchn: Box<xen_core::evtchn::EvtchnTable>,
    /// Credit scheduler weight and cap (XEN_DOMCTL_SCHEDOP_putinfo);
    /// change them with `sched::set_params`.
    pub sched_params: xen_core::credit::CreditParams,
    /// Privileged-instruction emulation state (CPUID policy, I/O ports).
    pub emul: crate::pv_emul::DomainEmul,
    /// Toolstack pauses outstanding (XEN_DOMCTL_pausedomain; a new domain
    /// starts with one, as Xen's).
    pub pause_count: u32,
    /// Set by the first XEN_DOMCTL_unpausedomain (Xen's
    /// `creation_finished`): from then on its CPU policy is fixed.
    pub creation_finished: bool,
    /// XEN_DOMCTL_set_cpu_policy's levelling of its CPUID (identity by
    /// default). A PV domain's policy is recomputed with it at once; an
    /// HVM domain's when its runtime is made, at the first unpause.
    pub cpuid_levelling: xen_core::cpuid_level::Levelling,
    /// Set once XEN_DOMCTL_destroydomain started taking it apart.
    pub dying: bool,
    /// XEN_DOMCTL_settimeoffset: seconds added to its wallclock.
    pub time_offset: i64,
    /// Its grant table (v1): shared frames, active entries, maptrack.
    /// Teardown: `hypercall::grant_table::{release_mappings, destroy_table}`.
    pub grants: Box<xen_core::grant_table::GrantTable>,
    /// Set for an HVM domain (`XEN_DOMCTL_CDF_hvm | CDF_hap`): its p2m.
    /// Its vCPUs never run yet (unpause and vCPU bring-up refuse it).
    pub hvm: Option<crate::hvm_glue::Hvm>,
}

/// Byte offset of `vcpu_info[i]` in shared_info.
pub fn vcpu_info_offset(i: u32) -> u64 {
    u64::from(i) * core::mem::size_of::<hypercall_abi::xen::VcpuInfo>() as u64
}

/// Default periodic timer of a new vCPU, as Xen gives PV vCPUs (10 ms).
pub const DEFAULT_PERIODIC_NS: u64 = 10_000_000;

impl Domain {
    /// A fresh domain with `nr_vcpus` vCPUs, all down.
    pub fn new(domid: DomId, is_privileged: bool, nr_vcpus: u32, shared_info_maddr: u64) -> Self {
        let created = crate::time::now_ns();
        let vcpus = (0..nr_vcpus)
            .map(|id| Vcpu {
                id,
                state: RunState::Down,
                regs: TrapFrame::default(),
                kernel_mode: true,
                guest_table: 0,
                guest_table_user: 0,
                kernel_ss: 0,
                kernel_sp: 0,
                fs_base: 0,
                gs_base_kernel: 0,
                gs_base_user: 0,
                trap_table: Box::new([TrapInfo::default(); 256]),
                callbacks: Callbacks::default(),
                vgc_flags: 0,
                vcpu_info_maddr: shared_info_maddr + vcpu_info_offset(id),
                singleshot: None,
                // Xen gives every PV vCPU a 10 ms periodic VIRQ_TIMER until
                // it stops it.
                periodic: Some((DEFAULT_PERIODIC_NS, DEFAULT_PERIODIC_NS)),
                periodic_last: 0,
                poll_ports: heapless::Vec::new(),
                poll_deadline: None,
                fpu: Box::new(FpuArea([0; 512])),
                fpu_valid: false,
                fpu_ts: false,
                gdt_frames: heapless::Vec::new(),
                gdt_ents: 0,
                ldt_frames: heapless::Vec::new(),
                ldt_ents: 0,
                ldt_base: 0,
                debugreg: [0; 8],
                hvm: None,
                runstate: xen_core::runstate::Runstate::new(created),
                runstate_guest: 0,
                emul: crate::pv_emul::VcpuEmul::new(),
                paused_for_shutdown: false,
            })
            .collect();
        Domain {
            domid,
            is_privileged,
            vcpus,
            tot_pages: 0,
            max_pages: 0,
            shared_info_maddr,
            p2m: Vec::new(),
            shutdown: None,
            shutdown_code: None,
            console_at_line_start: true,
            console_written: false,
            handle: [0; 16],
            evtchn: crate::event::new_table(domid, nr_vcpus),
            sched_params: xen_core::credit::CreditParams {
                weight: xen_core::credit::DEFAULT_WEIGHT,
                cap: 0,
            },
            emul: crate::pv_emul::DomainEmul::new(is_privileged),
            pause_count: 0,
            creation_finished: false,
            cpuid_levelling: xen_core::cpuid_level::Levelling::default(),
            dying: false,
            time_offset: 0,
            grants: Box::new(xen_core::grant_table::GrantTable::new()),
            hvm: None,
        }
    }

    /// Whether it is an HVM domain (its memory is in a p2m, and the frame
    /// numbers it and its toolstack name are guest frames).
    pub fn is_hvm(&self) -> bool {
        self.hvm.is_some()
    }
}

/// Finds a domain in the table.
pub fn find(doms: &mut [Domain], domid: DomId) -> Option<&mut Domain> {
    doms.iter_mut().find(|d| d.domid == domid)
}

/// Where domain `domid`, the one running on this CPU, is in the table:
/// first where this CPU last found it (the table changes only when a
/// domain is created or destroyed), else by a search, whose answer is
/// remembered. Constant time on the hypercall and exception paths however
/// many domains there are.
#[inline]
pub fn position_of_current(doms: &[Domain], domid: DomId) -> Option<usize> {
    use core::sync::atomic::Ordering;
    let slot = &crate::arch::x86_64::percpu::this_cpu().dom_slot;
    let hint = slot.load(Ordering::Relaxed) as usize;
    if doms.get(hint).is_some_and(|d| d.domid == domid) {
        return Some(hint);
    }
    let i = doms.iter().position(|d| d.domid == domid)?;
    slot.store(i as u32, Ordering::Relaxed);
    Some(i)
}

/// Adds `d` to the domain table (the caller holds DOMAINS).
#[inline(never)]
pub fn insert(doms: &mut Vec<Domain>, d: Domain) {
    doms.push(d);
}

/// Takes domain `domid` out of the table (the caller holds DOMAINS and has
/// torn it down).
pub fn remove(doms: &mut Vec<Domain>, domid: DomId) {
    doms.retain(|d| d.domid != domid);
}

/// The end of XEN_DOMCTL_destroydomain, once the domain table is whole
/// again: closes the dying domain's event channels (their peers' ends
/// become unbound), gives back its memory, removes it, and tells Dom0
/// (VIRQ_DOM_EXC).
#[inline(never)]
pub fn destroy(doms: &mut Vec<Domain>, domid: DomId) {
    if let Some(i) = doms.iter().position(|d| d.domid == domid) {
        if let Some((d, mut others)) = crate::hypercall::Others::split(doms, i) {
            crate::hypercall::evtchn::teardown(d, &mut others);
            crate::hypercall::grant_table::teardown(d, &mut others);
            crate::hvm_glue::teardown(d);
            crate::pv_mm::relinquish(d);
            if let Some(d0) = others.iter_mut().find(|o| o.is_privileged) {
                crate::event::send_global_virq(d0, hypercall_abi::xen::Virq::DomExc);
            }
        }
    }
    remove(doms, domid);
    log::debug!("d{domid}: destroyed");
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

/// `cr3` value that names the address space of the HVM vCPU whose
/// hypercall this CPU is serving ([`set_hvm_space`]): its own page tables
/// over its guest-physical memory, through its nested page tables.
pub const HVM_SPACE: u64 = u64::MAX;

/// Per CPU: the HVM vCPU's paging registers and its domain's nested
/// page-table root, while one of its hypercalls runs here.
static HVM_SPACES: [Mutex<Option<(xen_core::hvm::walk::PagingRegs, u64)>>;
    crate::arch::x86_64::percpu::MAX_CPUS] =
    [const { Mutex::new(None) }; crate::arch::x86_64::percpu::MAX_CPUS];

/// Makes [`HVM_SPACE`] mean this vCPU's address space (`Some`) or nothing
/// (`None`) on this CPU.
pub fn set_hvm_space(space: Option<(xen_core::hvm::walk::PagingRegs, u64)>) {
    let c = crate::arch::x86_64::percpu::this_cpu().cpu as usize;
    if let Some(slot) = HVM_SPACES.get(c) {
        *slot.lock() = space;
    }
}

/// Guest-physical memory through nested tables rooted at `ncr3`.
struct NestedReader(u64);

impl NestedReader {
    /// The machine address of guest-physical `gpa`, if it is RAM.
    fn maddr(&self, gpa: u64, write: bool) -> Option<u64> {
        let ma = guest_walk::translate(&DirectMapReader, self.0, gpa, write).ok()?;
        (ma < *MAX_MADDR.get()?).then_some(ma)
    }

    /// The p2m type of the leaf mapping `gpa` (bit 0 is present and bit 7
    /// a 2 MiB leaf in both NPT and EPT entries).
    fn leaf_type(&self, gpa: u64) -> Option<xen_core::hvm::p2m::P2mType> {
        let mut table = self.0 & !0xfff;
        for lvl in (1..=4u32).rev() {
            let idx = (gpa >> (12 + 9 * (lvl - 1))) & 511;
            if table >= *MAX_MADDR.get()? {
                return None;
            }
            // SAFETY: `table` is a nested-table frame of the domain (its
            // root, or an entry's address below), RAM in the direct map;
            // an aligned u64 read.
            let e = unsafe {
                (phys_to_virt(table) as *const u64)
                    .add(idx as usize)
                    .read_volatile()
            };
            if e & 1 == 0 {
                return None;
            }
            if lvl == 1 || (lvl == 2 && e & (1 << 7) != 0) {
                return xen_core::hvm::p2m::leaf_type(e);
            }
            table = e & 0x000f_ffff_ffff_f000;
        }
        None
    }
}

impl xen_core::hvm::walk::GuestPhys for NestedReader {
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        let ma = self.maddr(gpa & !7, false)?;
        // SAFETY: an aligned u64 inside a RAM page of the domain (its
        // nested tables map it), covered by the direct map.
        Some(unsafe { (phys_to_virt(ma) as *const u64).read_volatile() })
    }
    fn read_u32(&self, gpa: u64) -> Option<u32> {
        let ma = self.maddr(gpa & !3, false)?;
        // SAFETY: as in `read_u64`, 4-aligned.
        Some(unsafe { (phys_to_virt(ma) as *const u32).read_volatile() })
    }
}

/// The machine address of HVM guest virtual `va` in this CPU's HVM space.
fn translate_hvm(va: u64, write: bool) -> Result<u64, Errno> {
    use xen_core::hvm::emulate::Access;
    let c = crate::arch::x86_64::percpu::this_cpu().cpu as usize;
    let (regs, ncr3) = (*HVM_SPACES.get(c).ok_or(Errno::EFAULT)?.lock()).ok_or(Errno::EFAULT)?;
    let mem = NestedReader(ncr3);
    let access = if write { Access::Write } else { Access::Read };
    let gpa = xen_core::hvm::walk::translate(&mem, &regs, va, access).map_err(|_| Errno::EFAULT)?;
    if let Some(ma) = mem.maddr(gpa, write) {
        if write {
            crate::log_dirty::note(gpa >> 12);
        }
        return Ok(ma);
    }
    // Read-only in the nested tables: RAM in log-dirty mode may still be
    // written by the hypervisor (the frame is noted as dirty); a ROM not.
    if write && mem.leaf_type(gpa) == Some(xen_core::hvm::p2m::P2mType::RamLogDirty) {
        let ma = mem.maddr(gpa, false).ok_or(Errno::EFAULT)?;
        crate::log_dirty::note(gpa >> 12);
        return Ok(ma);
    }
    Err(Errno::EFAULT)
}

/// The machine address guest virtual address `va` maps to in the address
/// space rooted at `cr3` (-EFAULT if not mapped for the guest).
pub fn translate_guest(cr3: u64, va: u64) -> Result<u64, Errno> {
    if cr3 == HVM_SPACE {
        return translate_hvm(va, false);
    }
    let ma = guest_walk::translate(&DirectMapReader, cr3, va, false).map_err(|_| Errno::EFAULT)?;
    if ma >= *MAX_MADDR.get().ok_or(Errno::EFAULT)? {
        return Err(Errno::EFAULT);
    }
    Ok(ma)
}

/// Whether `[va, va + len)` of the PV address space rooted at `cr3` can be
/// reached directly, through the page tables loaded now (as Xen's
/// `copy_from_guest` always does): `cr3` is loaded (the calling vCPU's own
/// kernel table, the usual case), and the range lies wholly in the guest's
/// part of the address space, where nothing of xen-core's is mapped.
#[inline]
fn direct(cr3: u64, va: u64, len: usize) -> bool {
    const GUEST_LOW_END: u64 = 1 << 47;
    const GUEST_HIGH_START: u64 = 0xffff_8800_0000_0000;
    let Some(last) = (len as u64).checked_sub(1).and_then(|l| va.checked_add(l)) else {
        return false;
    };
    let guest_range = last < GUEST_LOW_END || va >= GUEST_HIGH_START;
    cr3 != HVM_SPACE && guest_range && instr::read_cr3() & !0xfff == cr3 & !0xfff
}

/// Copies `buf.len()` bytes from guest virtual address `va` of the address
/// space rooted at `cr3`. -EFAULT if any byte is not readable by the guest.
///
/// Through the loaded page tables where [`direct`] allows (a fault there
/// is fixed up, and the copy is made again the slow way, which gives the
/// precise answer), else by walking the guest's tables in software.
#[inline]
pub fn copy_from_guest(cr3: u64, va: u64, buf: &mut [u8]) -> Result<(), Errno> {
    // SAFETY: `buf` is ours, valid for its length.
    if unsafe { direct_from_guest(cr3, va, buf.as_mut_ptr(), buf.len()) } {
        return Ok(());
    }
    copy_from_guest_walk(cr3, va, buf)
}

/// The fast way of [`copy_from_guest`]: `len` bytes from guest `va` to
/// `dst` through the loaded page tables, if [`direct`] allows it. False if
/// it does not, or an access faulted (`dst` then holds part of the bytes
/// at most): the caller takes the slow way, which gives the precise answer.
///
/// # Safety
/// `dst` must be valid for writes of `len` bytes, in xen-core's memory.
#[inline]
unsafe fn direct_from_guest(cr3: u64, va: u64, dst: *mut u8, len: usize) -> bool {
    // SAFETY: `dst` per the contract; the guest side lies in the guest's
    // part of the loaded address space (checked by `direct`), whose
    // mappings the guest's validated page tables make; a fault is fixed up.
    direct(cr3, va, len) && unsafe { instr::guest_copy(dst, va as *const u8, len) }
}

#[inline(never)]
fn copy_from_guest_walk(cr3: u64, va: u64, buf: &mut [u8]) -> Result<(), Errno> {
    // The frame table's lock keeps the translation valid until the copy is
    // done: mappings change only under it, so the frame cannot be unmapped,
    // freed and given to another domain in between.
    let _mappings = crate::memory::FRAME_TABLE.lock();
    let mut done = 0usize;
    while done < buf.len() {
        let cur = va.checked_add(done as u64).ok_or(Errno::EFAULT)?;
        let ma = if cr3 == HVM_SPACE {
            translate_hvm(cur, false)?
        } else {
            guest_walk::translate(&DirectMapReader, cr3, cur, false).map_err(|_| Errno::EFAULT)?
        };
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
///
/// Directly where [`direct`] allows, as [`copy_from_guest`]: a write
/// through a read-only mapping faults (the CPU's CR0.WP), and so does one
/// through a mapping log-dirty mode protected, which the slow way then
/// makes and marks dirty; a write through a writable mapping is seen by
/// log-dirty mode as the guest's own writes are.
#[inline]
pub fn copy_to_guest(cr3: u64, va: u64, buf: &[u8]) -> Result<(), Errno> {
    if direct(cr3, va, buf.len()) {
        // SAFETY: as in copy_from_guest, the other way round.
        if unsafe { instr::guest_copy(va as *mut u8, buf.as_ptr(), buf.len()) } {
            return Ok(());
        }
    }
    copy_to_guest_walk(cr3, va, buf)
}

#[inline(never)]
fn copy_to_guest_walk(cr3: u64, va: u64, buf: &[u8]) -> Result<(), Errno> {
    // As in copy_from_guest; and the writable mapping found holds a writable
    // type reference, so under the lock the frame cannot become a page table
    // or descriptor page while we write it.
    let mappings = crate::memory::FRAME_TABLE.lock();
    let mut done = 0usize;
    while done < buf.len() {
        let cur = va.checked_add(done as u64).ok_or(Errno::EFAULT)?;
        let ma = if cr3 == HVM_SPACE {
            translate_hvm(cur, true)?
        } else {
            // A mapping log-dirty mode write-protected is writable for the
            // guest, so for us: the frame is marked dirty instead.
            let ma = guest_walk::translate_pv(&DirectMapReader, cr3, cur, true)
                .map_err(|_| Errno::EFAULT)?;
            if let Some(ft) = mappings.as_ref() {
                crate::log_dirty::mark_pv_frames(ft, &[xen_core::mm::Mfn(ma >> 12)]);
            }
            ma
        };
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
///
/// Straight into the value where [`direct`] allows, with no zeroing
/// first (the `iret` context and most hypercall arguments come this way).
#[inline]
pub fn read_guest<T: zerocopy::FromBytes + zerocopy::IntoBytes>(
    cr3: u64,
    va: u64,
) -> Result<T, Errno> {
    let mut v = core::mem::MaybeUninit::<T>::uninit();
    let size = core::mem::size_of::<T>();
    // SAFETY: `v` is `size` bytes of our own stack.
    if unsafe { direct_from_guest(cr3, va, v.as_mut_ptr().cast::<u8>(), size) } {
        // SAFETY: the copy succeeded, so all `size` bytes of `v` were
        // written, and `T: FromBytes` is valid for any bytes.
        return Ok(unsafe { v.assume_init() });
    }
    let mut v = T::new_zeroed();
    copy_from_guest_walk(cr3, va, v.as_mut_bytes())?;
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
/// exit code that names the reason; any other domain's vCPUs go down (the
/// caller reschedules).
pub fn domain_shutdown(d: &mut Domain, reason: ShutdownReason) {
    d.shutdown = Some(reason);
    crate::sched::log_stats(d);
    if d.is_privileged {
        let what = match reason {
            ShutdownReason::Poweroff => "halted",
            ShutdownReason::Reboot => "rebooted",
            ShutdownReason::Crash => "crashed",
            _ => "shut down",
        };
        log::info!(
            "Hardware Dom0 {what}: powering off machine ({})",
            reason.name()
        );
        power::power_off(reason.raw());
    }
    log::debug!("d{} shut down: {}", d.domid, reason.name());
    crate::sched::domain_shutdown(d);
    crate::event::DOM_EXC_PENDING.store(true, core::sync::atomic::Ordering::Release);
}

/// Crashes the vCPU's domain that is running on this CPU, with a register
/// dump, as Xen's `domain_crash()` does, and schedules something else.
pub fn crash_current(frame: &TrapFrame, why: core::fmt::Arguments) -> ! {
    {
        let mut doms = DOMAINS.lock();
        let Some((domid, vcpu)) = crate::sched::current() else {
            drop(doms);
            log::error!("guest fault with no current vCPU: {why}");
            power::halt_fatal();
        };
        let Some(d) = find(&mut doms, domid) else {
            drop(doms);
            log::error!("guest fault from a vanished domain d{domid}: {why}");
            power::halt_fatal();
        };
        crate::println!("(XEN) domain crash: d{domid}v{vcpu}: {why}");
        crate::println!(
            "(XEN) ----[ Domain {} (vcpu#{}) crashed on cpu#{} ]----",
            domid,
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
    crate::sched::schedule_away()
}
