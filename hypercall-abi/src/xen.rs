//! Core ABI from `public/xen.h`: domain ids, console_io, VIRQs, MMU update and
//! MMUEXT operations, VM assists, multicalls, and the shared memory pages Xen
//! gives every guest (`start_info`, `shared_info`, `vcpu_info`, `vcpu_time_info`).

use crate::arch_x86::{ArchSharedInfo, ArchVcpuInfo};
use crate::{DomId, EvtchnPort, GuestHandle, XenPfn, XenUlong};

// ---------------------------------------------------------------------------
// Domain identifiers
// ---------------------------------------------------------------------------

/// First domain id reserved for special pseudo-domains; real domains are below it.
pub const DOMID_FIRST_RESERVED: DomId = 0x7ff0;
/// "The calling domain": accepted wherever a domid argument is.
pub const DOMID_SELF: DomId = DOMID_FIRST_RESERVED;
/// Pseudo-domain owning I/O memory (MMIO), used in mmu_update/grant ops.
pub const DOMID_IO: DomId = 0x7ff1;
/// Pseudo-domain representing Xen itself (pages owned by the hypervisor).
pub const DOMID_XEN: DomId = 0x7ff2;
/// Pseudo-domain owning copy-on-write shared pages (memory sharing).
pub const DOMID_COW: DomId = 0x7ff3;
/// Invalid / "no domain".
pub const DOMID_INVALID: DomId = 0x7ff4;
/// The idle domain.
pub const DOMID_IDLE: DomId = 0x7fff;
/// Mask of the valid bits of a domid.
pub const DOMID_MASK: DomId = 0x7fff;

/// The control domain's id.
pub const DOMID_DOM0: DomId = 0;

/// `xen_domain_handle_t`: a 16-byte opaque UUID the toolstack assigns to a
/// domain (written by tools via `XEN_DOMCTL_setdomainhandle`; readable by the
/// guest via `XENVER_guest_handle`).
pub type XenDomainHandle = [u8; 16];

// ---------------------------------------------------------------------------
// console_io
// ---------------------------------------------------------------------------

abi_enum! {
    /// `__HYPERVISOR_console_io` commands (`CONSOLEIO_*`).
    ///
    /// There is no argument struct: the call is
    /// `console_io(cmd, count, buffer)` where `buffer` is a guest virtual
    /// address of `count` bytes. `write` copies the bytes to Xen's console and
    /// returns 0; `read` (control domain only) copies up to `count` bytes of
    /// pending serial input into `buffer` and returns the number read.
    pub enum ConsoleIoOp: u32, raw u64 {
        /// Write `count` bytes from `buffer` to the hypervisor console.
        Write = 0 => "CONSOLEIO_write",
        /// Read up to `count` bytes of console input into `buffer`.
        Read = 1 => "CONSOLEIO_read",
    }
}

// ---------------------------------------------------------------------------
// VIRQs
// ---------------------------------------------------------------------------

abi_enum! {
    /// Virtual IRQs (`VIRQ_*`) a guest binds with `EVTCHNOP_bind_virq`.
    ///
    /// Per-vCPU VIRQs (timer, debug, xenoprof, xenpmu) are bound once per vCPU;
    /// global ones only on vCPU 0.
    pub enum Virq: u32, raw u64 {
        /// Per-vCPU timer (periodic or single-shot) fired.
        Timer = 0 => "VIRQ_TIMER",
        /// Per-vCPU: request guest to dump debug info ('q' key).
        Debug = 1 => "VIRQ_DEBUG",
        /// Global (dom0): bytes received on the emergency console.
        Console = 2 => "VIRQ_CONSOLE",
        /// Global (dom0): a domain exited or crashed.
        DomExc = 3 => "VIRQ_DOM_EXC",
        /// Global: trace buffer has records to consume.
        Tbuf = 4 => "VIRQ_TBUF",
        /// Global: a debugger domain should look at a guest.
        Debugger = 6 => "VIRQ_DEBUGGER",
        /// Per-vCPU: xenoprof sample available.
        Xenoprof = 7 => "VIRQ_XENOPROF",
        /// Global: Xen's console ring has new data.
        ConRing = 8 => "VIRQ_CON_RING",
        /// Global: physical CPU changed state.
        PcpuState = 9 => "VIRQ_PCPU_STATE",
        /// Global: memory event (vm_event) ring has requests.
        MemEvent = 10 => "VIRQ_MEM_EVENT",
        /// Global: Argo message pending.
        Argo = 11 => "VIRQ_ARGO",
        /// Global: Xen is low on memory.
        Enomem = 12 => "VIRQ_ENOMEM",
        /// Per-vCPU: PMU interrupt.
        Xenpmu = 13 => "VIRQ_XENPMU",
        /// Architecture VIRQ 0 (x86: `VIRQ_MCA`, machine check).
        Arch0 = 16 => "VIRQ_ARCH_0",
        /// Architecture VIRQ 1 (x86: `VIRQ_XC_RESERVED`).
        Arch1 = 17 => "VIRQ_ARCH_1",
        /// Architecture VIRQ 2.
        Arch2 = 18 => "VIRQ_ARCH_2",
        /// Architecture VIRQ 3.
        Arch3 = 19 => "VIRQ_ARCH_3",
        /// Architecture VIRQ 4.
        Arch4 = 20 => "VIRQ_ARCH_4",
        /// Architecture VIRQ 5.
        Arch5 = 21 => "VIRQ_ARCH_5",
        /// Architecture VIRQ 6.
        Arch6 = 22 => "VIRQ_ARCH_6",
        /// Architecture VIRQ 7.
        Arch7 = 23 => "VIRQ_ARCH_7",
    }
}

impl Virq {
    /// x86: machine-check VIRQ (`VIRQ_MCA` = `VIRQ_ARCH_0`).
    pub const MCA: Virq = Virq::Arch0;

    /// True for VIRQs bound per vCPU (`virq_is_global()` is false).
    pub const fn is_per_vcpu(self) -> bool {
        matches!(
            self,
            Virq::Timer | Virq::Debug | Virq::Xenoprof | Virq::Xenpmu
        )
    }
}

/// Number of VIRQ numbers (`NR_VIRQS`).
pub const NR_VIRQS: u32 = 24;

// ---------------------------------------------------------------------------
// mmu_update
// ---------------------------------------------------------------------------

abi_enum! {
    /// Command encoded in the low 2 bits of [`MmuUpdate::ptr`] (`MMU_*`).
    pub enum MmuUpdateCmd: u32, raw u64 {
        /// `ptr` is the machine address of a PTE; write `val` to it (checked).
        NormalPtUpdate = 0 => "MMU_NORMAL_PT_UPDATE",
        /// `ptr` is an MFN << 12; set `M2P[mfn] = val` (a PFN).
        MachphysUpdate = 1 => "MMU_MACHPHYS_UPDATE",
        /// As `NormalPtUpdate` but keep the hardware Accessed/Dirty bits.
        PtUpdatePreserveAd = 2 => "MMU_PT_UPDATE_PRESERVE_AD",
        /// As `NormalPtUpdate` but `val` holds an MFN even for translated guests.
        PtUpdateNoTranslate = 3 => "MMU_PT_UPDATE_NO_TRANSLATE",
    }
}

/// Mask of the command bits in [`MmuUpdate::ptr`].
pub const MMU_UPDATE_CMD_MASK: u64 = 0x3;

/// **Oxen extension** (not in Xen's ABI): the L1-entry bit (bit 58, one of
/// the software bits Xen leaves to guests) that marks a writable mapping
/// Oxen write-protected because its domain is in log-dirty mode
/// (`XEN_DOMCTL_shadow_op` `ENABLE_LOGDIRTY`; Xen uses shadow page tables
/// for this, Oxen write-protects the guest's own L1 entries). An entry
/// carrying it has R/W clear in hardware but is *logically writable*: read
/// it as if R/W were set and this bit clear. Guests may not set it
/// (`mmu_update` refuses it with `-EINVAL`); they, and a toolstack reading
/// a guest's page tables through foreign mappings during a live save, may
/// see it in entries of frames not written since the last `CLEAN`.
pub const OXEN_L1E_LOGDIRTY_RO: u64 = 1 << 58;

abi_struct! {
    /// One request of `__HYPERVISOR_mmu_update` (`struct mmu_update`), written
    /// by the guest in an array it passes by handle.
    pub struct MmuUpdate {
        /// Machine address of the target (PTE or M2P slot) with the
        /// [`MmuUpdateCmd`] in bits 0..2.
        pub ptr: u64,
        /// New value: the PTE contents, or the PFN for `MachphysUpdate`.
        pub val: u64,
    }
}

impl MmuUpdate {
    /// The command in the low bits of `ptr`, if known.
    pub const fn cmd(&self) -> Option<MmuUpdateCmd> {
        MmuUpdateCmd::from_raw(self.ptr & MMU_UPDATE_CMD_MASK)
    }

    /// `ptr` with the command bits cleared.
    pub const fn addr(&self) -> u64 {
        self.ptr & !MMU_UPDATE_CMD_MASK
    }
}

// ---------------------------------------------------------------------------
// mmuext_op
// ---------------------------------------------------------------------------

abi_enum! {
    /// `__HYPERVISOR_mmuext_op` commands (`MMUEXT_*`), in [`MmuextOp::cmd`].
    pub enum MmuextCmd: u32, raw u64 {
        /// Pin frame `arg1.mfn` as an L1 page table.
        PinL1Table = 0 => "MMUEXT_PIN_L1_TABLE",
        /// Pin frame `arg1.mfn` as an L2 page table.
        PinL2Table = 1 => "MMUEXT_PIN_L2_TABLE",
        /// Pin frame `arg1.mfn` as an L3 page table.
        PinL3Table = 2 => "MMUEXT_PIN_L3_TABLE",
        /// Pin frame `arg1.mfn` as an L4 page table.
        PinL4Table = 3 => "MMUEXT_PIN_L4_TABLE",
        /// Unpin page table `arg1.mfn`.
        UnpinTable = 4 => "MMUEXT_UNPIN_TABLE",
        /// Switch the kernel page-table base (CR3) to `arg1.mfn`.
        NewBaseptr = 5 => "MMUEXT_NEW_BASEPTR",
        /// Flush this vCPU's TLB.
        TlbFlushLocal = 6 => "MMUEXT_TLB_FLUSH_LOCAL",
        /// Invalidate `arg1.linear_addr` in this vCPU's TLB.
        InvlpgLocal = 7 => "MMUEXT_INVLPG_LOCAL",
        /// Flush TLBs of the vCPUs in bitmap `arg2.vcpumask`.
        TlbFlushMulti = 8 => "MMUEXT_TLB_FLUSH_MULTI",
        /// Invalidate `arg1.linear_addr` on the vCPUs in `arg2.vcpumask`.
        InvlpgMulti = 9 => "MMUEXT_INVLPG_MULTI",
        /// Flush the TLBs of all vCPUs.
        TlbFlushAll = 10 => "MMUEXT_TLB_FLUSH_ALL",
        /// Invalidate `arg1.linear_addr` on all vCPUs.
        InvlpgAll = 11 => "MMUEXT_INVLPG_ALL",
        /// Write back and invalidate this CPU's caches.
        FlushCache = 12 => "MMUEXT_FLUSH_CACHE",
        /// Set the LDT: base `arg1.linear_addr`, `arg2.nr_ents` entries.
        SetLdt = 13 => "MMUEXT_SET_LDT",
        /// Switch the user-mode page-table base to `arg1.mfn` (x86_64 PV).
        NewUserBaseptr = 15 => "MMUEXT_NEW_USER_BASEPTR",
        /// Zero frame `arg1.mfn`.
        ClearPage = 16 => "MMUEXT_CLEAR_PAGE",
        /// Copy frame `arg2.src_mfn` to `arg1.mfn`.
        CopyPage = 17 => "MMUEXT_COPY_PAGE",
        /// Write back and invalidate all CPUs' caches.
        FlushCacheGlobal = 18 => "MMUEXT_FLUSH_CACHE_GLOBAL",
        /// Mark superpage `arg1.mfn` (obsolete; fails).
        MarkSuper = 19 => "MMUEXT_MARK_SUPER",
        /// Unmark superpage `arg1.mfn` (obsolete; fails).
        UnmarkSuper = 20 => "MMUEXT_UNMARK_SUPER",
    }
}

abi_struct! {
    /// One request of `__HYPERVISOR_mmuext_op` (`struct mmuext_op`), written by
    /// the guest. `arg1` and `arg2` are C unions, kept as raw words here with
    /// named accessors.
    pub struct MmuextOp {
        /// The command, an [`MmuextCmd`].
        pub cmd: u32,
        /// Implicit C padding; zero.
        pub _pad4: u32,
        /// Union `arg1`: `mfn` (pin/unpin/new baseptr/clear/copy page) or
        /// `linear_addr` (invlpg, set_ldt).
        pub arg1: u64,
        /// Union `arg2`: `nr_ents` (u32, set_ldt), `vcpumask` (guest handle of
        /// a vCPU bitmap, *_MULTI) or `src_mfn` (copy_page).
        pub arg2: u64,
    }
}

impl MmuextOp {
    /// `arg1.mfn`.
    pub const fn mfn(&self) -> XenPfn {
        self.arg1
    }
    /// `arg1.linear_addr`.
    pub const fn linear_addr(&self) -> u64 {
        self.arg1
    }
    /// `arg2.nr_ents` (the low 32 bits of `arg2`).
    pub const fn nr_ents(&self) -> u32 {
        self.arg2 as u32
    }
    /// `arg2.vcpumask` (guest handle).
    pub const fn vcpumask(&self) -> GuestHandle {
        self.arg2
    }
    /// `arg2.src_mfn`.
    pub const fn src_mfn(&self) -> XenPfn {
        self.arg2
    }
}

// ---------------------------------------------------------------------------
// update_va_mapping flags
// ---------------------------------------------------------------------------

/// `update_va_mapping` flags: no TLB flush.
pub const UVMF_NONE: u64 = 0;
/// `update_va_mapping` flags: flush the whole TLB.
pub const UVMF_TLB_FLUSH: u64 = 1;
/// `update_va_mapping` flags: invalidate just the updated address.
pub const UVMF_INVLPG: u64 = 2;
/// Mask of the flush-type bits.
pub const UVMF_FLUSHTYPE_MASK: u64 = 3;
/// Flush on the vCPUs in the bitmap whose address is in the upper bits (or-ed in).
pub const UVMF_MULTI: u64 = 0;
/// Flush only on the local vCPU.
pub const UVMF_LOCAL: u64 = 0;
/// Flush on all vCPUs.
pub const UVMF_ALL: u64 = 1 << 2;

// ---------------------------------------------------------------------------
// vm_assist
// ---------------------------------------------------------------------------

abi_enum! {
    /// First argument of `__HYPERVISOR_vm_assist` (`VMASST_CMD_*`).
    pub enum VmAssistCmd: u32, raw u64 {
        /// Turn an assist on.
        Enable = 0 => "VMASST_CMD_enable",
        /// Turn an assist off.
        Disable = 1 => "VMASST_CMD_disable",
    }
}

abi_enum! {
    /// Second argument of `__HYPERVISOR_vm_assist` (`VMASST_TYPE_*`).
    pub enum VmAssistType: u32, raw u64 {
        /// 32-bit only: emulate 4 GiB segments.
        FourGbSegments = 0 => "VMASST_TYPE_4gb_segments",
        /// 32-bit only: notify on 4 GiB segment fixups.
        FourGbSegmentsNotify = 1 => "VMASST_TYPE_4gb_segments_notify",
        /// Writable page tables (trap-and-emulate PTE writes).
        WritablePagetables = 2 => "VMASST_TYPE_writable_pagetables",
        /// PAE CR3 above 4 GiB.
        PaeExtendedCr3 = 3 => "VMASST_TYPE_pae_extended_cr3",
        /// IOPL handled architecturally (from EFLAGS in the bounce frame).
        ArchitecturalIopl = 4 => "VMASST_TYPE_architectural_iopl",
        /// Set `XEN_RUNSTATE_UPDATE` while updating the runstate area.
        RunstateUpdateFlag = 5 => "VMASST_TYPE_runstate_update_flag",
        /// Strict M2P: the guest's M2P view hides frames it does not own.
        M2pStrict = 32 => "VMASST_TYPE_m2p_strict",
    }
}

// ---------------------------------------------------------------------------
// multicall
// ---------------------------------------------------------------------------

/// Number of argument words in a [`MulticallEntry`].
pub const MULTICALL_MAX_ARGS: usize = 6;

abi_struct! {
    /// One entry of `__HYPERVISOR_multicall` (`struct multicall_entry`).
    /// The guest writes `op` and `args`; Xen writes `result` (the sub-call's
    /// return value) back in place.
    pub struct MulticallEntry {
        /// Hypercall number ([`crate::hypercall::Hypercall`]).
        pub op: XenUlong,
        /// Return value of the call, written by Xen.
        pub result: XenUlong,
        /// Arguments, in hypercall order.
        pub args: [XenUlong; MULTICALL_MAX_ARGS],
    }
}

// ---------------------------------------------------------------------------
// vcpu_time_info / vcpu_info / shared_info
// ---------------------------------------------------------------------------

/// `vcpu_time_info.flags`: TSC is stable across CPUs, readers may skip the
/// monotonicity fixup (`XEN_PVCLOCK_TSC_STABLE_BIT`).
pub const XEN_PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;
/// `vcpu_time_info.flags`: the guest was stopped (`XEN_PVCLOCK_GUEST_STOPPED`).
pub const XEN_PVCLOCK_GUEST_STOPPED: u8 = 1 << 1;

abi_struct! {
    /// Per-vCPU system time (`struct vcpu_time_info`), written by Xen, read by
    /// the guest. Xen increments `version` to an odd value before an update and
    /// to an even value after; readers retry while it is odd or changed.
    ///
    /// `system_time_ns = system_time + ((tsc - tsc_timestamp) << tsc_shift (or >> -tsc_shift)) * tsc_to_system_mul >> 32`.
    pub struct VcpuTimeInfo {
        /// Update counter (odd while Xen is writing).
        pub version: u32,
        /// Padding; zero.
        pub pad0: u32,
        /// TSC value at which `system_time` was sampled.
        pub tsc_timestamp: u64,
        /// Nanoseconds since boot at `tsc_timestamp`.
        pub system_time: u64,
        /// 32.32 fixed-point multiplier from (shifted) TSC ticks to ns.
        pub tsc_to_system_mul: u32,
        /// Power-of-two shift applied to the TSC delta first (signed).
        pub tsc_shift: i8,
        /// `XEN_PVCLOCK_*` flags.
        pub flags: u8,
        /// Padding; zero.
        pub pad1: [u8; 2],
    }
}

abi_struct! {
    /// Per-vCPU data in the shared info page or a registered area
    /// (`struct vcpu_info`, 64 bytes). Xen sets `evtchn_upcall_pending` and bits
    /// of `evtchn_pending_sel`; the guest owns `evtchn_upcall_mask` (its virtual
    /// interrupt flag: non-zero masks event upcalls).
    pub struct VcpuInfo {
        /// Set by Xen when an event is pending for this vCPU; cleared by guest.
        pub evtchn_upcall_pending: u8,
        /// Guest-written mask: non-zero disables event upcalls.
        pub evtchn_upcall_mask: u8,
        /// Implicit C padding; zero.
        pub _pad2: [u8; 6],
        /// Selector: bit N set means word N of `evtchn_pending` may have bits set
        /// (2-level ABI). Set by Xen, cleared (atomically) by the guest.
        pub evtchn_pending_sel: XenUlong,
        /// Architecture-specific part (`cr2` of the last page fault).
        pub arch: ArchVcpuInfo,
        /// System time for this vCPU.
        pub time: VcpuTimeInfo,
    }
}

/// Number of vCPUs whose [`VcpuInfo`] lives in the shared info page
/// (`XEN_LEGACY_MAX_VCPUS`); others must register an area with
/// `VCPUOP_register_vcpu_info`.
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;

/// Bits in a `xen_ulong_t` (64 on x86_64).
pub const BITS_PER_XEN_ULONG: usize = 64;

/// Number of words in `shared_info.evtchn_pending`/`evtchn_mask`
/// (`sizeof(xen_ulong_t) * 8`).
pub const EVTCHN_2L_WORDS: usize = BITS_PER_XEN_ULONG;

abi_struct! {
    /// The shared info page (`struct shared_info`), one per domain, mapped by
    /// the guest at the frame in `start_info.shared_info` (PV) or via
    /// `XENMEM_add_to_physmap(XENMAPSPACE_shared_info)`.
    /// Xen writes pending bits, wallclock and vcpu time; the guest writes mask bits.
    pub struct SharedInfo {
        /// Per-vCPU info for vCPUs 0..[`XEN_LEGACY_MAX_VCPUS`].
        pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
        /// 2-level event channel pending bitmap (4096 ports). Set by Xen,
        /// cleared by the guest.
        pub evtchn_pending: [XenUlong; EVTCHN_2L_WORDS],
        /// 2-level event channel mask bitmap; owned by the guest (Xen sets a
        /// bit when a port is bound).
        pub evtchn_mask: [XenUlong; EVTCHN_2L_WORDS],
        /// Wallclock version counter (odd while Xen is updating).
        pub wc_version: u32,
        /// Wallclock seconds at system time 0 (low 32 bits).
        pub wc_sec: u32,
        /// Wallclock nanoseconds at system time 0.
        pub wc_nsec: u32,
        /// Upper 32 bits of the wallclock seconds.
        pub wc_sec_hi: u32,
        /// Architecture-specific part (PV p2m information).
        pub arch: ArchSharedInfo,
    }
}

// ---------------------------------------------------------------------------
// start_info
// ---------------------------------------------------------------------------

/// Prefix of `start_info.magic` for 64-bit PV guests. Xen 4.17's dom0 builder
/// may append "p" (PAE); guests must compare only this prefix.
pub const START_INFO_MAGIC_PREFIX: &[u8] = b"xen-3.0-x86_64";

/// Length of `start_info.magic`.
pub const START_INFO_MAGIC_LEN: usize = 32;

/// Length of `start_info.cmd_line` (`MAX_GUEST_CMDLINE`).
pub const MAX_GUEST_CMDLINE: usize = 1024;

/// `start_info.flags`: this domain is privileged.
pub const SIF_PRIVILEGED: u32 = 1 << 0;
/// `start_info.flags`: this is the initial control domain (dom0).
pub const SIF_INITDOMAIN: u32 = 1 << 1;
/// `start_info.flags`: `mod_start`/`mod_len` describe a multiboot module list.
pub const SIF_MULTIBOOT_MOD: u32 = 1 << 2;
/// `start_info.flags`: `mod_start` is a PFN rather than a virtual address.
pub const SIF_MOD_START_PFN: u32 = 1 << 3;
/// `start_info.flags`: the p2m is virtually mapped for tools (`first_p2m_pfn`).
pub const SIF_VIRT_P2M_4TOOLS: u32 = 1 << 4;
/// `start_info.flags`: mask of the power-management bits.
pub const SIF_PM_MASK: u32 = 0xff << 8;

abi_struct! {
    /// `start_info.console` for the initial domain: where the VGA/console info
    /// (`dom0_vga_console_info`) sits inside the start_info page.
    pub struct StartInfoConsoleDom0 {
        /// Byte offset of the console info from the start of start_info.
        pub info_off: u32,
        /// Size of the console info.
        pub info_size: u32,
    }
}

abi_struct! {
    /// `start_info.console` for unprivileged domains: the PV console ring.
    pub struct StartInfoConsoleDomU {
        /// Machine frame of the [`crate::io::console::XenconsInterface`] page.
        pub mfn: XenPfn,
        /// Event channel for the console ring.
        pub evtchn: EvtchnPort,
        /// Implicit C padding; zero.
        pub _pad12: u32,
    }
}

abi_struct! {
    /// The `console` union of `start_info` (16 bytes), stored as raw words.
    /// Read/write it as [`StartInfoConsoleDomU`] (ordinary guests) or
    /// [`StartInfoConsoleDom0`] (when `SIF_INITDOMAIN` is set).
    pub struct StartInfoConsole {
        /// Raw union storage.
        pub raw: [u64; 2],
    }
}

impl StartInfoConsole {
    /// Builds the domU form.
    pub fn from_dom_u(c: StartInfoConsoleDomU) -> Self {
        zerocopy::transmute!(c)
    }
    /// Builds the dom0 form (the unused upper 8 bytes are zero).
    pub fn from_dom0(c: StartInfoConsoleDom0) -> Self {
        let word: u64 = zerocopy::transmute!(c);
        Self { raw: [word, 0] }
    }
    /// Reads the union as the domU form.
    pub fn dom_u(&self) -> StartInfoConsoleDomU {
        zerocopy::transmute!(self.raw)
    }
    /// Reads the union as the dom0 form.
    pub fn dom0(&self) -> StartInfoConsoleDom0 {
        zerocopy::transmute!(self.raw[0])
    }
}

abi_struct! {
    /// The start info page (`struct start_info`), written by the domain builder
    /// (Xen for dom0, the toolstack for domU) and handed to a PV kernel in
    /// `rsi` at entry. Read-only for the guest in practice.
    pub struct StartInfo {
        /// "xen-3.0-x86_64" (see [`START_INFO_MAGIC_PREFIX`]), NUL padded.
        pub magic: [u8; START_INFO_MAGIC_LEN],
        /// Total pages allocated to this domain.
        pub nr_pages: XenUlong,
        /// Machine address of the shared info page.
        pub shared_info: XenUlong,
        /// `SIF_*` flags.
        pub flags: u32,
        /// Implicit C padding; zero.
        pub _pad52: u32,
        /// Machine frame of the xenstore ring page.
        pub store_mfn: XenPfn,
        /// Event channel for xenstore.
        pub store_evtchn: EvtchnPort,
        /// Implicit C padding; zero.
        pub _pad68: u32,
        /// Console union (dom0 vs domU form).
        pub console: StartInfoConsole,
        /// Virtual address of the initial page tables (L4).
        pub pt_base: XenUlong,
        /// Number of bootstrap page-table frames.
        pub nr_pt_frames: XenUlong,
        /// Virtual address of the page-frame (p2m) list.
        pub mfn_list: XenUlong,
        /// Virtual address (or PFN with `SIF_MOD_START_PFN`) of the initrd/modules.
        pub mod_start: XenUlong,
        /// Size of the initrd/modules in bytes.
        pub mod_len: XenUlong,
        /// Kernel command line, NUL terminated.
        pub cmd_line: [u8; MAX_GUEST_CMDLINE],
        /// PFN of the first p2m table page (with `SIF_VIRT_P2M_4TOOLS`).
        pub first_p2m_pfn: XenUlong,
        /// Number of p2m table frames.
        pub nr_p2m_frames: XenUlong,
    }
}

impl StartInfo {
    /// True if `magic` starts with [`START_INFO_MAGIC_PREFIX`].
    pub fn magic_ok(&self) -> bool {
        self.magic.starts_with(START_INFO_MAGIC_PREFIX)
    }
    /// The command line up to its first NUL.
    pub fn cmd_line_bytes(&self) -> &[u8] {
        let n = self
            .cmd_line
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(MAX_GUEST_CMDLINE);
        &self.cmd_line[..n]
    }
}

zeroed_default!(
    MmuUpdate,
    MmuextOp,
    MulticallEntry,
    VcpuTimeInfo,
    VcpuInfo,
    SharedInfo,
    StartInfoConsoleDom0,
    StartInfoConsoleDomU,
    StartInfoConsole,
    StartInfo,
);
