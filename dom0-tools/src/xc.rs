//! A small libxc for Dom0: safe wrappers around the toolstack hypercalls
//! (`domctl`, `sysctl`, `memory_op` on another domain, `mmu_update` and
//! `mmuext_op` with a `foreigndom`, `EVTCHNOP_alloc_unbound` for another
//! domain), with Xen 4.17's ABI and libxc's calling conventions
//! (tools/libs/ctrl/xc_domain.c, xc_private.c).
//!
//! Every call builds its argument struct on the stack, passes it by
//! pointer and copies the answer out; Xen's error comes back as an
//! [`Errno`]. Nothing here trusts what Xen writes back beyond the sizes
//! asked for. The [`ForeignMap`] window maps other domains' frames into
//! Dom0's address space (Linux privcmd does the same with
//! `mmu_update(..., foreigndom)`).

use hypercall_abi::arch_x86::{VcpuGuestContext, XenCpuidLeaf};
use hypercall_abi::domctl::{
    DomctlCmd, DomctlSchedOp, SchedulerId, XenDomctl, XenDomctlCpuPolicy, XenDomctlCreatedomain,
    XenDomctlGetdomaininfo, XenDomctlGetvcpuinfo, XenDomctlHvmcontext, XenDomctlMaxMem,
    XenDomctlSchedCredit, XenDomctlSchedulerOp, XenDomctlVcpuaffinity, XenDomctlVcpucontext,
    XenctlBitmap, XEN_DOMINF_DYING, XEN_DOMINF_PAUSED, XEN_DOMINF_SHUTDOWN,
    XEN_DOMINF_SHUTDOWNMASK, XEN_DOMINF_SHUTDOWNSHIFT, XEN_VCPUAFFINITY_HARD,
};
use hypercall_abi::errno::Errno as AbiErrno;
use hypercall_abi::hvm::{HvmOp, HvmParam, XenHvmParam};
use hypercall_abi::hypercall::Hypercall;
use hypercall_abi::memory::{MemoryOp, XenMemoryReservation};
use hypercall_abi::sysctl::{
    SysctlCmd, XenSysctl, XenSysctlCreditSchedule, XenSysctlDebugKeys, XenSysctlGetdomaininfolist,
    XenSysctlPhysinfo, XenSysctlReadconsole, XenSysctlSchedulerOp, XEN_SYSCTL_SCHEDOP_GETINFO,
    XEN_SYSCTL_SCHEDOP_PUTINFO,
};
use hypercall_abi::xen::{MmuextCmd, DOMID_SELF};
use hypercall_abi::DomId;
use pv_guest_lib::error::{check, Errno};
use pv_guest_lib::hypercall::{hypercall1, hypercall2, hypercall3, hypercall4};
use pv_guest_lib::mmu::{self, BatchError};
use zerocopy::{FromZeros, IntoBytes};

/// A domain's state as `getdomaininfo` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DomainInfo {
    /// Its id.
    pub domid: DomId,
    /// `XEN_DOMINF_*`.
    pub flags: u32,
    /// Pages it has.
    pub tot_pages: u64,
    /// Its limit.
    pub max_pages: u64,
    /// Machine frame of its shared info page.
    pub shared_info_frame: u64,
    /// CPU time used (ns).
    pub cpu_time: u64,
    /// vCPUs online.
    pub nr_online_vcpus: u32,
    /// Highest vCPU id.
    pub max_vcpu_id: u32,
}

impl DomainInfo {
    /// From Xen's struct.
    pub fn from_raw(r: &XenDomctlGetdomaininfo) -> DomainInfo {
        DomainInfo {
            domid: r.domain,
            flags: r.flags,
            tot_pages: r.tot_pages,
            max_pages: r.max_pages,
            shared_info_frame: r.shared_info_frame,
            cpu_time: r.cpu_time,
            nr_online_vcpus: r.nr_online_vcpus,
            max_vcpu_id: r.max_vcpu_id,
        }
    }

    /// Shut down (`XEN_DOMINF_shutdown`)?
    pub fn is_shutdown(&self) -> bool {
        self.flags & XEN_DOMINF_SHUTDOWN != 0
    }

    /// Dying?
    pub fn is_dying(&self) -> bool {
        self.flags & XEN_DOMINF_DYING != 0
    }

    /// Paused by the toolstack?
    pub fn is_paused(&self) -> bool {
        self.flags & XEN_DOMINF_PAUSED != 0
    }

    /// The `SHUTDOWN_*` reason, meaningful when [`Self::is_shutdown`].
    pub fn shutdown_reason(&self) -> u32 {
        (self.flags >> XEN_DOMINF_SHUTDOWNSHIFT) & XEN_DOMINF_SHUTDOWNMASK
    }
}

/// Names of the `SHUTDOWN_*` reasons (xen/include/public/sched.h).
pub fn shutdown_reason_name(r: u32) -> &'static str {
    match r {
        0 => "poweroff",
        1 => "reboot",
        2 => "suspend",
        3 => "crash",
        4 => "watchdog",
        5 => "soft_reset",
        _ => "unknown",
    }
}

/// A vCPU's state (`getvcpuinfo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuInfo {
    /// Online?
    pub online: bool,
    /// Blocked?
    pub blocked: bool,
    /// Running?
    pub running: bool,
    /// CPU time (ns).
    pub cpu_time: u64,
    /// Physical CPU.
    pub cpu: u32,
}

/// What `sysctl physinfo` says about the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysInfo {
    /// Online CPUs.
    pub nr_cpus: u32,
    /// CPU frequency (kHz).
    pub cpu_khz: u32,
    /// Total pages.
    pub total_pages: u64,
    /// Free pages.
    pub free_pages: u64,
    /// Pages waiting to be scrubbed.
    pub scrub_pages: u64,
    /// `XEN_SYSCTL_PHYSCAP_*`.
    pub capabilities: u32,
}

fn domctl(d: &mut XenDomctl) -> Result<u64, Errno> {
    // SAFETY: Xen reads and writes back exactly one `xen_domctl` (the
    // envelope's size is fixed by the ABI); `d` is live for the call.
    // Buffers the payload points to are the caller's concern (see each
    // wrapper).
    check(unsafe { hypercall1(Hypercall::Domctl, d as *mut XenDomctl as u64) })
}

fn sysctl(s: &mut XenSysctl) -> Result<u64, Errno> {
    // SAFETY: as `domctl`, with `xen_sysctl`.
    check(unsafe { hypercall1(Hypercall::Sysctl, s as *mut XenSysctl as u64) })
}

/// Parameters of a new PV domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateParams {
    /// Requested domid (0: let Xen pick, as libxl does).
    pub domid: DomId,
    /// vCPUs.
    pub max_vcpus: u32,
    /// Highest event channel port (libxl's default is 1023).
    pub max_evtchn_port: u32,
    /// Grant table frames (libxl's default is 32).
    pub max_grant_frames: i32,
    /// Maptrack frames (libxl's default is 1024).
    pub max_maptrack_frames: i32,
    /// Domain handle (UUID).
    pub handle: [u8; 16],
}

impl Default for CreateParams {
    fn default() -> Self {
        CreateParams {
            domid: 0,
            max_vcpus: 1,
            max_evtchn_port: 1023,
            max_grant_frames: 32,
            max_maptrack_frames: 1024,
            handle: [0; 16],
        }
    }
}

/// `XEN_DOMCTL_createdomain` for a PV guest (flags 0, no emulated
/// devices, grant table v1 at most): the new domain, paused.
pub fn create_domain(p: &CreateParams) -> Result<DomId, Errno> {
    let mut c = XenDomctlCreatedomain::new_zeroed();
    c.handle = p.handle;
    c.max_vcpus = p.max_vcpus;
    c.max_evtchn_port = p.max_evtchn_port;
    c.max_grant_frames = p.max_grant_frames;
    c.max_maptrack_frames = p.max_maptrack_frames;
    c.grant_opts = 1; // XEN_DOMCTL_GRANT_version(1)
    let mut d = XenDomctl::new(DomctlCmd::Createdomain, p.domid);
    d.set_payload(&c);
    domctl(&mut d)?;
    Ok(d.domain)
}

/// `XEN_DOMCTL_createdomain` with `XEN_DOMCTL_CDF_*` flags (e.g.
/// `CDF_hvm | CDF_hap` for an HVM domain with nested paging): the new
/// domain, paused.
pub fn create_domain_with_flags(p: &CreateParams, flags: u32) -> Result<DomId, Errno> {
    create_domain_emulating(p, flags, 0)
}

/// [`create_domain_with_flags`] with the x86 `emulation_flags`
/// (`XEN_X86_EMU_*`: which devices the hypervisor emulates; libxl asks
/// for the local APIC alone for PVH; 0 leaves Oxen's HVM default).
pub fn create_domain_emulating(
    p: &CreateParams,
    flags: u32,
    emulation: u32,
) -> Result<DomId, Errno> {
    let mut c = XenDomctlCreatedomain::new_zeroed();
    c.flags = flags;
    c.arch.emulation_flags = emulation;
    c.handle = p.handle;
    c.max_vcpus = p.max_vcpus;
    c.max_evtchn_port = p.max_evtchn_port;
    c.max_grant_frames = p.max_grant_frames;
    c.max_maptrack_frames = p.max_maptrack_frames;
    c.grant_opts = 1; // XEN_DOMCTL_GRANT_version(1)
    let mut d = XenDomctl::new(DomctlCmd::Createdomain, p.domid);
    d.set_payload(&c);
    domctl(&mut d)?;
    Ok(d.domain)
}

fn simple(cmd: DomctlCmd, domid: DomId) -> Result<(), Errno> {
    let mut d = XenDomctl::new(cmd, domid);
    domctl(&mut d).map(|_| ())
}

/// `XEN_DOMCTL_max_mem`: the domain's memory limit in KiB.
pub fn set_max_mem(domid: DomId, max_memkb: u64) -> Result<(), Errno> {
    let mut d = XenDomctl::new(DomctlCmd::MaxMem, domid);
    d.set_payload(&XenDomctlMaxMem { max_memkb });
    domctl(&mut d).map(|_| ())
}

/// `XEN_DOMCTL_unpausedomain`.
pub fn unpause(domid: DomId) -> Result<(), Errno> {
    simple(DomctlCmd::Unpausedomain, domid)
}

/// `XEN_DOMCTL_pausedomain`.
pub fn pause(domid: DomId) -> Result<(), Errno> {
    simple(DomctlCmd::Pausedomain, domid)
}

/// `XEN_DOMCTL_resumedomain`: a domain shut down with `SHUTDOWN_suspend`
/// runs on (libxc's `xc_domain_resume`; set the vCPU's return value first).
pub fn resume_domain(domid: DomId) -> Result<(), Errno> {
    simple(DomctlCmd::Resumedomain, domid)
}

/// `XEN_DOMCTL_destroydomain`, repeated while Xen says -EAGAIN (it
/// relinquishes the domain's memory preemptibly), as `xc_domain_destroy`.
pub fn destroy(domid: DomId) -> Result<(), Errno> {
    loop {
        match simple(DomctlCmd::Destroydomain, domid) {
            Err(e) if e.is(AbiErrno::EAGAIN) => continue,
            r => return r,
        }
    }
}

/// `XEN_DOMCTL_getdomaininfo` of exactly `domid`: -ESRCH if it does not
/// exist (Xen 4.17 answers with the next domain up; that is checked).
pub fn domain_info(domid: DomId) -> Result<DomainInfo, Errno> {
    let mut d = XenDomctl::new(DomctlCmd::Getdomaininfo, domid);
    domctl(&mut d)?;
    let info: XenDomctlGetdomaininfo = d.payload();
    if info.domain != domid {
        return Err(Errno::from_abi(AbiErrno::ESRCH));
    }
    Ok(DomainInfo::from_raw(&info))
}

/// `XEN_SYSCTL_getdomaininfolist` from `first`: fills `out`, returns how
/// many.
pub fn domain_list(first: DomId, out: &mut [DomainInfo]) -> Result<usize, Errno> {
    const CHUNK: usize = 8;
    let mut raw = [XenDomctlGetdomaininfo::new_zeroed(); CHUNK];
    let want = out.len().min(CHUNK);
    let mut s = XenSysctl::new(SysctlCmd::Getdomaininfolist);
    s.set_payload(&XenSysctlGetdomaininfolist {
        first_domain: first,
        _pad2: 0,
        max_domains: want as u32,
        buffer: raw.as_mut_ptr() as u64,
        num_domains: 0,
        _pad20: 0,
    });
    sysctl(&mut s)?;
    let r: XenSysctlGetdomaininfolist = s.payload();
    let n = (r.num_domains as usize).min(want);
    for (o, i) in out.iter_mut().zip(&raw[..n]) {
        *o = DomainInfo::from_raw(i);
    }
    Ok(n)
}

/// `XEN_SYSCTL_physinfo`.
pub fn physinfo() -> Result<PhysInfo, Errno> {
    let mut s = XenSysctl::new(SysctlCmd::Physinfo);
    sysctl(&mut s)?;
    let p: XenSysctlPhysinfo = s.payload();
    Ok(PhysInfo {
        nr_cpus: p.nr_cpus,
        cpu_khz: p.cpu_khz,
        total_pages: p.total_pages,
        free_pages: p.free_pages,
        scrub_pages: p.scrub_pages,
        capabilities: p.capabilities,
    })
}

/// `XEN_SYSCTL_debug_keys`: `keys` handled as if typed on the
/// hypervisor's console after CTRL-A (their output goes to its console,
/// `xl dmesg`).
pub fn debug_keys(keys: &[u8]) -> Result<(), Errno> {
    let mut s = XenSysctl::new(SysctlCmd::DebugKeys);
    s.set_payload(&XenSysctlDebugKeys {
        keys: keys.as_ptr() as u64,
        nr_keys: u32::try_from(keys.len()).unwrap_or(u32::MAX),
        _pad12: 0,
    });
    // The hypervisor reads at most `nr_keys` bytes of `keys`, live for
    // the call.
    sysctl(&mut s).map(|_| ())
}

/// `XEN_SYSCTL_readconsole` (incremental from `*index`, which advances):
/// the hypervisor's console ring into `buf`; returns the bytes read.
pub fn read_console(index: &mut u32, buf: &mut [u8]) -> Result<usize, Errno> {
    let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
    let mut s = XenSysctl::new(SysctlCmd::Readconsole);
    s.set_payload(&XenSysctlReadconsole {
        clear: 0,
        incremental: 1,
        pad0: 0,
        pad1: 0,
        index: *index,
        buffer: buf.as_mut_ptr() as u64,
        count: len,
        _pad20: 0,
    });
    sysctl(&mut s)?;
    let r: XenSysctlReadconsole = s.payload();
    *index = r.index;
    Ok((r.count as usize).min(buf.len()))
}

/// `XEN_DOMCTL_setvcpucontext`.
pub fn set_vcpu_context(domid: DomId, vcpu: u32, ctxt: &VcpuGuestContext) -> Result<(), Errno> {
    let mut d = XenDomctl::new(DomctlCmd::Setvcpucontext, domid);
    d.set_payload(&XenDomctlVcpucontext {
        vcpu,
        _pad4: 0,
        ctxt: ctxt as *const VcpuGuestContext as u64,
    });
    domctl(&mut d).map(|_| ())
}

/// `XEN_DOMCTL_getvcpucontext`.
pub fn get_vcpu_context(domid: DomId, vcpu: u32) -> Result<VcpuGuestContext, Errno> {
    let mut ctxt = VcpuGuestContext::new_zeroed();
    let mut d = XenDomctl::new(DomctlCmd::Getvcpucontext, domid);
    d.set_payload(&XenDomctlVcpucontext {
        vcpu,
        _pad4: 0,
        ctxt: ctxt.as_mut_bytes().as_mut_ptr() as u64,
    });
    domctl(&mut d)?;
    Ok(ctxt)
}

/// `XEN_DOMCTL_sethvmcontext`: loads an HVM domain's state from `buf`, a
/// buffer of save records (`HEADER`, per-vCPU `CPU`, ..., `END`; see
/// [`hypercall_abi::hvm_save`]), as libxc's `xc_domain_hvm_setcontext`.
pub fn set_hvm_context(domid: DomId, buf: &[u8]) -> Result<(), Errno> {
    let size = u32::try_from(buf.len()).map_err(|_| Errno::EINVAL)?;
    let mut d = XenDomctl::new(DomctlCmd::Sethvmcontext, domid);
    d.set_payload(&XenDomctlHvmcontext {
        size,
        _pad4: 0,
        buffer: buf.as_ptr() as u64,
    });
    // Xen reads `size` bytes of `buf`, live for the call.
    domctl(&mut d).map(|_| ())
}

/// `XEN_DOMCTL_gethvmcontext` with a NULL buffer: how many bytes the
/// domain's save records take.
pub fn hvm_context_size(domid: DomId) -> Result<usize, Errno> {
    let mut d = XenDomctl::new(DomctlCmd::Gethvmcontext, domid);
    d.set_payload(&XenDomctlHvmcontext {
        size: 0,
        _pad4: 0,
        buffer: 0,
    });
    domctl(&mut d)?;
    Ok(d.payload::<XenDomctlHvmcontext>().size as usize)
}

/// `XEN_DOMCTL_gethvmcontext`: the domain's save records into `buf`;
/// returns the bytes written (at most `buf.len()`).
pub fn get_hvm_context(domid: DomId, buf: &mut [u8]) -> Result<usize, Errno> {
    let size = u32::try_from(buf.len()).map_err(|_| Errno::EINVAL)?;
    let mut d = XenDomctl::new(DomctlCmd::Gethvmcontext, domid);
    d.set_payload(&XenDomctlHvmcontext {
        size,
        _pad4: 0,
        buffer: buf.as_mut_ptr() as u64,
    });
    // Xen writes at most `size` bytes into `buf`, live for the call.
    domctl(&mut d)?;
    Ok((d.payload::<XenDomctlHvmcontext>().size as usize).min(buf.len()))
}

fn hvm_param_op(op: HvmOp, p: &mut XenHvmParam) -> Result<(), Errno> {
    // SAFETY: Xen reads and (for get) writes back one `xen_hvm_param`,
    // live for the call.
    check(unsafe { hypercall2(Hypercall::HvmOp, op as u64, p as *mut XenHvmParam as u64) })
        .map(|_| ())
}

/// `HVMOP_set_param` on `domid` (libxc's `xc_hvm_param_set`).
pub fn hvm_set_param(domid: DomId, param: HvmParam, value: u64) -> Result<(), Errno> {
    let mut p = XenHvmParam {
        domid,
        pad: 0,
        index: param as u32,
        value,
    };
    hvm_param_op(HvmOp::SetParam, &mut p)
}

/// `HVMOP_get_param` on `domid` (libxc's `xc_hvm_param_get`).
pub fn hvm_get_param(domid: DomId, param: HvmParam) -> Result<u64, Errno> {
    let mut p = XenHvmParam {
        domid,
        pad: 0,
        index: param as u32,
        value: 0,
    };
    hvm_param_op(HvmOp::GetParam, &mut p)?;
    Ok(p.value)
}

/// `SCHEDOP_remote_shutdown`: shuts `domid` down for `reason` (a
/// `SHUTDOWN_*` code), as libxc's `xc_domain_shutdown`; the toolstack
/// then acts on it as on a guest's own shutdown.
pub fn remote_shutdown(domid: DomId, reason: u32) -> Result<(), Errno> {
    let mut a = hypercall_abi::sched::SchedRemoteShutdown {
        domain_id: domid,
        _pad2: 0,
        reason,
    };
    // SAFETY: Xen reads one `sched_remote_shutdown`, live for the call.
    check(unsafe {
        hypercall2(
            Hypercall::SchedOp,
            hypercall_abi::sched::SchedOp::RemoteShutdown as u64,
            &mut a as *mut hypercall_abi::sched::SchedRemoteShutdown as u64,
        )
    })
    .map(|_| ())
}

/// `XEN_DMOP_set_isa_irq_level` (`dm_op`): the device model sets ISA IRQ
/// line `irq` (0..16) of HVM domain `domid`, as libxendevicemodel's
/// `xendevicemodel_set_isa_irq_level`.
pub fn set_isa_irq_level(domid: DomId, irq: u8, level: bool) -> Result<(), Errno> {
    /// `XEN_DMOP_set_isa_irq_level`.
    const OP: u32 = 9;
    // struct xen_dm_op: op, pad, then xen_dm_op_set_isa_irq_level.
    let mut op = [0u8; 16];
    op[..4].copy_from_slice(&OP.to_le_bytes());
    op[8] = irq;
    op[9] = u8::from(level);
    // xen_dm_op_buf_t: a handle and its size.
    let mut buf = [0u64; 2];
    buf[0] = op.as_mut_ptr() as u64;
    buf[1] = op.len() as u64;
    // SAFETY: Xen reads the one buffer descriptor and the operation it
    // names, both live for the call.
    check(unsafe {
        hypercall3(
            Hypercall::DmOp,
            u64::from(domid),
            1,
            buf.as_mut_ptr() as u64,
        )
    })
    .map(|_| ())
}

/// `XEN_DOMCTL_getvcpuinfo`.
pub fn vcpu_info(domid: DomId, vcpu: u32) -> Result<VcpuInfo, Errno> {
    let mut d = XenDomctl::new(DomctlCmd::Getvcpuinfo, domid);
    d.set_payload(&XenDomctlGetvcpuinfo {
        vcpu,
        ..XenDomctlGetvcpuinfo::new_zeroed()
    });
    domctl(&mut d)?;
    let v: XenDomctlGetvcpuinfo = d.payload();
    Ok(VcpuInfo {
        online: v.online != 0,
        blocked: v.blocked != 0,
        running: v.running != 0,
        cpu_time: v.cpu_time,
        cpu: v.cpu,
    })
}

/// `XEN_DOMCTL_setvcpuaffinity` (hard): `vcpu` may run only on the CPUs
/// set in `cpumap` (bit n of byte n/8 = CPU n).
pub fn set_vcpu_affinity(domid: DomId, vcpu: u32, cpumap: &[u8]) -> Result<(), Errno> {
    let mut hard = [0u8; 32];
    let n = cpumap.len().min(hard.len());
    hard[..n].copy_from_slice(&cpumap[..n]);
    let mut soft = [0xffu8; 32];
    let mut d = XenDomctl::new(DomctlCmd::Setvcpuaffinity, domid);
    d.set_payload(&XenDomctlVcpuaffinity {
        vcpu,
        flags: XEN_VCPUAFFINITY_HARD,
        cpumap_hard: XenctlBitmap {
            bitmap: hard.as_mut_ptr() as u64,
            nr_bits: (n * 8) as u32,
            _pad12: 0,
        },
        cpumap_soft: XenctlBitmap {
            bitmap: soft.as_mut_ptr() as u64,
            nr_bits: (n * 8) as u32,
            _pad12: 0,
        },
    });
    // Xen writes the effective maps back into the buffers (live above).
    domctl(&mut d).map(|_| ())
}

/// `XEN_DOMCTL_getvcpuaffinity` (hard): the first 64 CPUs `vcpu` may run on.
pub fn get_vcpu_affinity(domid: DomId, vcpu: u32) -> Result<u64, Errno> {
    let mut hard = [0u8; 8];
    let mut d = XenDomctl::new(DomctlCmd::Getvcpuaffinity, domid);
    d.set_payload(&XenDomctlVcpuaffinity {
        vcpu,
        flags: XEN_VCPUAFFINITY_HARD,
        cpumap_hard: XenctlBitmap {
            bitmap: hard.as_mut_ptr() as u64,
            nr_bits: 64,
            _pad12: 0,
        },
        cpumap_soft: XenctlBitmap {
            bitmap: 0,
            nr_bits: 0,
            _pad12: 0,
        },
    });
    // Xen writes the map into `hard` (live above).
    domctl(&mut d)?;
    Ok(u64::from_le_bytes(hard))
}

/// `XEN_SYSCTL_scheduler_op` getinfo for the credit scheduler of pool 0:
/// (tslice ms, ratelimit µs, migration delay µs).
pub fn sched_credit_globals_get() -> Result<(u32, u32, u32), Errno> {
    let mut s = XenSysctl::new(SysctlCmd::SchedulerOp);
    let mut op = XenSysctlSchedulerOp::new_zeroed();
    op.sched_id = SchedulerId::Credit as u32;
    op.cmd = XEN_SYSCTL_SCHEDOP_GETINFO;
    s.set_payload(&op);
    sysctl(&mut s)?;
    let c = s.payload::<XenSysctlSchedulerOp>().sched_credit();
    Ok((c.tslice_ms, c.ratelimit_us, c.vcpu_migr_delay_us))
}

/// `XEN_SYSCTL_scheduler_op` putinfo for the credit scheduler of pool 0.
pub fn sched_credit_globals_set(
    tslice_ms: u32,
    ratelimit_us: u32,
    migr_us: u32,
) -> Result<(), Errno> {
    let mut s = XenSysctl::new(SysctlCmd::SchedulerOp);
    let mut op = XenSysctlSchedulerOp::new_zeroed();
    op.sched_id = SchedulerId::Credit as u32;
    op.cmd = XEN_SYSCTL_SCHEDOP_PUTINFO;
    op.set_sched_credit(&XenSysctlCreditSchedule {
        tslice_ms,
        ratelimit_us,
        vcpu_migr_delay_us: migr_us,
    });
    s.set_payload(&op);
    sysctl(&mut s).map(|_| ())
}

/// `XEN_SYSCTL_readconsole` of everything kept (from the oldest byte, or
/// the last clear) into `buf`; `clear` forgets it afterwards (`xl dmesg -c`).
pub fn read_console_all(clear: bool, buf: &mut [u8]) -> Result<usize, Errno> {
    let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
    let mut s = XenSysctl::new(SysctlCmd::Readconsole);
    s.set_payload(&XenSysctlReadconsole {
        clear: u8::from(clear),
        incremental: 0,
        pad0: 0,
        pad1: 0,
        index: 0,
        buffer: buf.as_mut_ptr() as u64,
        count: len,
        _pad20: 0,
    });
    sysctl(&mut s)?;
    let r: XenSysctlReadconsole = s.payload();
    Ok((r.count as usize).min(buf.len()))
}

/// `XEN_DOMCTL_scheduler_op` putinfo for the credit scheduler.
pub fn sched_credit_set(domid: DomId, weight: u16, cap: u16) -> Result<(), Errno> {
    let mut op = XenDomctlSchedulerOp {
        sched_id: SchedulerId::Credit as u32,
        cmd: DomctlSchedOp::Putinfo as u32,
        u: [0; 2],
    };
    op.set_credit(&XenDomctlSchedCredit { weight, cap });
    let mut d = XenDomctl::new(DomctlCmd::SchedulerOp, domid);
    d.set_payload(&op);
    domctl(&mut d).map(|_| ())
}

/// `XEN_DOMCTL_scheduler_op` getinfo for the credit scheduler: (weight, cap).
pub fn sched_credit_get(domid: DomId) -> Result<(u16, u16), Errno> {
    let op = XenDomctlSchedulerOp {
        sched_id: SchedulerId::Credit as u32,
        cmd: DomctlSchedOp::Getinfo as u32,
        u: [0; 2],
    };
    let mut d = XenDomctl::new(DomctlCmd::SchedulerOp, domid);
    d.set_payload(&op);
    domctl(&mut d)?;
    let c = d.payload::<XenDomctlSchedulerOp>().credit();
    Ok((c.weight, c.cap))
}

/// `XEN_DOMCTL_hypercall_init`: Xen writes its hypercall page into the
/// domain's frame `gmfn` (libxc's `setup_hypercall_page`).
pub fn hypercall_init(domid: DomId, gmfn: u64) -> Result<(), Errno> {
    let mut d = XenDomctl::new(DomctlCmd::HypercallInit, domid);
    d.set_payload(&gmfn);
    domctl(&mut d).map(|_| ())
}

/// `XENMEM_populate_physmap` for `domid`: `pfns` in, the machine frames
/// Xen gave out (x86 PV: not translated) in the same slots. Returns how
/// many extents were populated (less than asked means Xen ran out).
pub fn populate_physmap(domid: DomId, pfns: &mut [u64]) -> Result<usize, Errno> {
    let mut r = XenMemoryReservation::new_zeroed();
    r.extent_start = pfns.as_mut_ptr() as u64;
    r.nr_extents = pfns.len() as u64;
    r.extent_order = 0;
    r.domid = domid;
    // SAFETY: Xen reads `pfns.len()` entries from `pfns` and writes as many
    // back; it reads the reservation struct. Both live for the call.
    let n = check(unsafe {
        hypercall2(
            Hypercall::MemoryOp,
            MemoryOp::PopulatePhysmap as u64,
            &mut r as *mut XenMemoryReservation as u64,
        )
    })?;
    Ok((n as usize).min(pfns.len()))
}

fn reservation_op(
    op: MemoryOp,
    domid: DomId,
    order: u32,
    list: &mut [u64],
) -> Result<usize, Errno> {
    let mut r = XenMemoryReservation::new_zeroed();
    r.extent_start = list.as_mut_ptr() as u64;
    r.nr_extents = list.len() as u64;
    r.extent_order = order;
    r.domid = domid;
    // SAFETY: Xen reads (and for PV populate, rewrites) `list.len()`
    // entries of `list` and reads the reservation; both live for the call.
    let n = check(unsafe {
        hypercall2(
            Hypercall::MemoryOp,
            op as u64,
            &mut r as *mut XenMemoryReservation as u64,
        )
    })?;
    Ok((n as usize).min(list.len()))
}

/// `XENMEM_populate_physmap` of extents of `1 << order` frames for
/// `domid`. For an HVM (translated) domain `gfns` holds the first guest
/// frame of each extent and is left as it is. Returns the extents done.
pub fn populate_physmap_order(domid: DomId, order: u32, gfns: &mut [u64]) -> Result<usize, Errno> {
    reservation_op(MemoryOp::PopulatePhysmap, domid, order, gfns)
}

/// `XENMEM_decrease_reservation` of extents of `1 << order` frames of
/// `domid` (guest frames for an HVM domain, machine frames for PV).
/// Returns the extents given back.
pub fn decrease_reservation(domid: DomId, order: u32, frames: &mut [u64]) -> Result<usize, Errno> {
    reservation_op(MemoryOp::DecreaseReservation, domid, order, frames)
}

/// `populate_physmap` of every PFN in `pfns`, in batches, all or nothing
/// from the caller's point of view (-ENOMEM if Xen gave fewer).
pub fn populate_physmap_exact(domid: DomId, pfns: &mut [u64]) -> Result<(), Errno> {
    for chunk in pfns.chunks_mut(512) {
        let n = populate_physmap(domid, chunk)?;
        if n != chunk.len() {
            return Err(Errno::from_abi(AbiErrno::ENOMEM));
        }
    }
    Ok(())
}

/// `XENMEM_current_reservation` of `domid`.
pub fn current_reservation(domid: DomId) -> Result<u64, Errno> {
    pv_guest_lib::memory::current_reservation(domid)
}

/// `XENMEM_maximum_gpfn` of `domid`: its highest guest frame (an HVM
/// domain's highest mapped gfn), what a save walks up to.
pub fn maximum_gpfn(domid: DomId) -> Result<u64, Errno> {
    let d = domid;
    // SAFETY: Xen reads one `domid_t` at the address, live for the call.
    check(unsafe {
        hypercall2(
            Hypercall::MemoryOp,
            MemoryOp::MaximumGpfn as u64,
            &d as *const DomId as u64,
        )
    })
}

/// `XEN_DOMCTL_getpageframeinfo3` (libxc's `xc_get_pfn_type_batch`): each
/// of `frames` (gfns of an HVM domain, mfns of a PV one; at most 1024)
/// replaced by its `XEN_DOMCTL_PFINFO_*` type.
pub fn page_types(domid: DomId, frames: &mut [u64]) -> Result<(), Errno> {
    let mut d = XenDomctl::new(DomctlCmd::Getpageframeinfo3, domid);
    d.set_payload(&hypercall_abi::domctl::XenDomctlGetpageframeinfo3 {
        num: frames.len() as u64,
        array: frames.as_mut_ptr() as u64,
    });
    // Xen reads and rewrites `num` entries of `frames`, live for the call.
    domctl(&mut d).map(|_| ())
}

/// `XEN_DOMCTL_shadow_op` `op` on `domid`, with a dirty bitmap of
/// `bitmap.len() * 8` frames for CLEAN/PEEK: the frames the bitmap covers
/// as Xen reports them.
pub fn shadow_op(
    domid: DomId,
    op: hypercall_abi::domctl::ShadowOp,
    bitmap: &mut [u8],
) -> Result<u64, Errno> {
    let mut d = XenDomctl::new(DomctlCmd::ShadowOp, domid);
    let (addr, pages) = if bitmap.is_empty() {
        (0, 0)
    } else {
        (bitmap.as_mut_ptr() as u64, bitmap.len() as u64 * 8)
    };
    d.set_payload(&hypercall_abi::domctl::XenDomctlShadowOp {
        op: op.raw(),
        dirty_bitmap: addr,
        pages,
        ..Default::default()
    });
    // Xen writes at most `pages` bits into `bitmap`, live for the call.
    domctl(&mut d)?;
    Ok(d.payload::<hypercall_abi::domctl::XenDomctlShadowOp>()
        .pages)
}

/// `mmuext_op` with a `foreigndom`: pin the table `mfn` of `domid` at
/// `level` (libxc's `pin_table`).
pub fn pin_table(domid: DomId, level: u8, mfn: u64) -> Result<(), Errno> {
    let cmd = match level {
        1 => MmuextCmd::PinL1Table,
        2 => MmuextCmd::PinL2Table,
        3 => MmuextCmd::PinL3Table,
        _ => MmuextCmd::PinL4Table,
    };
    mmuext_foreign(&[mmu::ext(cmd, mfn, 0)], domid).map_err(|e| e.errno)
}

/// `MMUEXT_UNPIN_TABLE` on `domid`'s frame.
pub fn unpin_table(domid: DomId, mfn: u64) -> Result<(), Errno> {
    mmuext_foreign(&[mmu::ext(MmuextCmd::UnpinTable, mfn, 0)], domid).map_err(|e| e.errno)
}

fn mmuext_foreign(ops: &[hypercall_abi::xen::MmuextOp], domid: DomId) -> Result<(), BatchError> {
    let mut done: u32 = 0;
    // SAFETY: Xen reads `ops.len()` 24-byte ops and writes `done`.
    let r = unsafe {
        hypercall4(
            Hypercall::MmuextOp,
            ops.as_ptr() as u64,
            ops.len() as u64,
            &mut done as *mut u32 as u64,
            u64::from(domid),
        )
    };
    check(r)
        .map(|_| ())
        .map_err(|errno| BatchError { errno, done })
}

/// `EVTCHNOP_alloc_unbound` in `domid` for `remote` to bind (libxc's
/// `xc_evtchn_alloc_unbound`): the new port, in `domid`.
pub fn evtchn_alloc_unbound(domid: DomId, remote: DomId) -> Result<u32, Errno> {
    pv_guest_lib::events::alloc_unbound(domid, remote)
}

/// Dom0's own domid as the hypervisor knows it in foreign calls.
pub const SELF: DomId = DOMID_SELF;

/// A window of Dom0 virtual addresses where other domains' frames are
/// mapped (one L1 table's worth per slot group), the way Linux's privcmd
/// maps them: an `MMU_NORMAL_PT_UPDATE` of Dom0's own L1 entry, with
/// `foreigndom` = the owner, so Xen takes the reference against it.
#[cfg(target_os = "none")]
pub mod foreign {
    use super::*;
    use pv_guest_lib::frame;
    use pv_guest_lib::mm::{self, Pte, PteFlags};

    /// Where the window starts: L4 slot 500, far from the kernel's direct
    /// map at the top, its heap and its user address spaces.
    pub const WINDOW_BASE: u64 = 0xFFFF_FA00_0000_0000;
    /// Pages in the window (512 MiB of address space).
    pub const WINDOW_PAGES: u64 = 131_072;
    /// Most pages one mapping may hold.
    pub const MAX_MAP_PAGES: u64 = 8192;

    /// Which pages of the window are taken (one bit per page).
    static USED: spin::Mutex<[u64; (WINDOW_PAGES / 64) as usize]> =
        spin::Mutex::new([0; (WINDOW_PAGES / 64) as usize]);

    fn used(map: &[u64], page: u64) -> bool {
        map[(page / 64) as usize] & (1 << (page % 64)) != 0
    }

    fn mark(map: &mut [u64], first: u64, n: u64, on: bool) {
        for p in first..first + n {
            if on {
                map[(p / 64) as usize] |= 1 << (p % 64);
            } else {
                map[(p / 64) as usize] &= !(1 << (p % 64));
            }
        }
    }

    /// First fit: the lowest run of `n` free pages in the window.
    fn take(n: u64) -> Option<u64> {
        let mut map = USED.lock();
        let mut start = 0;
        while start + n <= WINDOW_PAGES {
            match (start..start + n).find(|&p| used(&*map, p)) {
                None => {
                    mark(&mut *map, start, n, true);
                    return Some(start);
                }
                Some(busy) => start = busy + 1,
            }
        }
        None
    }

    /// Up to [`MAX_MAP_PAGES`] foreign frames mapped at consecutive
    /// addresses; unmapped on drop.
    #[derive(Debug)]
    pub struct ForeignMap {
        /// First page of the window it holds.
        first: u64,
        /// Pages of the window it holds.
        reserved: u64,
        base: u64,
        pages: u64,
        domid: DomId,
        /// Mapped writable ([`Self::page`] hands out `&mut` only then).
        writable: bool,
    }

    impl ForeignMap {
        /// Maps `mfns` (frames of `domid`) writable, in order.
        pub fn new(domid: DomId, mfns: &[u64]) -> Result<ForeignMap, Errno> {
            Self::with_flags(domid, mfns, PteFlags::KERNEL_RW)
        }

        /// Maps `mfns` (frames of `domid`) read-only, in order: frames the
        /// hypervisor will not map writable (a suspended PV guest's page
        /// tables and descriptor pages) can be read so, and reading a
        /// guest in log-dirty mode this way marks nothing dirty (a
        /// writable foreign mapping marks every frame it held when it
        /// goes). [`page`](Self::page) refuses such a map: read with
        /// [`read_page`](Self::read_page).
        pub fn new_readonly(domid: DomId, mfns: &[u64]) -> Result<ForeignMap, Errno> {
            Self::with_flags(domid, mfns, PteFlags::KERNEL_RO)
        }

        fn with_flags(domid: DomId, mfns: &[u64], flags: PteFlags) -> Result<ForeignMap, Errno> {
            let n = mfns.len() as u64;
            if n == 0 || n > MAX_MAP_PAGES {
                return Err(Errno::EINVAL);
            }
            let first = take(n).ok_or(Errno::from_abi(AbiErrno::ENOMEM))?;
            let mut m = ForeignMap {
                first,
                reserved: n,
                base: WINDOW_BASE + first * 4096,
                pages: 0,
                domid,
                writable: flags.contains(PteFlags::RW),
            };
            m.map_all(mfns, flags)?;
            Ok(m)
        }

        fn map_all(&mut self, mfns: &[u64], flags: PteFlags) -> Result<(), Errno> {
            let l4 = frame::kernel_l4();
            let mut batch: heapless::Vec<hypercall_abi::xen::MmuUpdate, 64> = heapless::Vec::new();
            let mut cur_l1 = (u64::MAX, 0u64);
            for (i, &mfn) in mfns.iter().enumerate() {
                let va = self.base + i as u64 * 4096;
                let tag = va >> 21;
                if cur_l1.0 != tag {
                    if !batch.is_empty() {
                        self.flush(&batch)?;
                        batch.clear();
                    }
                    let l1 = frame::with_pt(|b| mm::ensure_l1(b, l4, va))
                        .map_err(|_| Errno::from_abi(AbiErrno::ENOMEM))?;
                    cur_l1 = (tag, l1);
                }
                let idx = mm::index(va, 1);
                let _ = batch.push(mmu::pt_update(cur_l1.1, idx, Pte::new(mfn, flags)));
                if batch.is_full() {
                    self.flush(&batch)?;
                    batch.clear();
                }
            }
            if !batch.is_empty() {
                self.flush(&batch)?;
            }
            Ok(())
        }

        fn flush(&mut self, batch: &[hypercall_abi::xen::MmuUpdate]) -> Result<(), Errno> {
            let r = mmu::mmu_update_foreign(batch, self.domid);
            let done = match r {
                Ok(_) => batch.len() as u64,
                Err(e) => u64::from(e.done),
            };
            self.pages += done;
            r.map(|_| ()).map_err(|e| e.errno)
        }

        /// The first mapped byte.
        pub fn base(&self) -> u64 {
            self.base
        }

        /// Pages mapped.
        pub fn pages(&self) -> u64 {
            self.pages
        }

        /// Page `i` as bytes; `None` past the end or for a read-only map.
        pub fn page(&mut self, i: u64) -> Option<&mut [u8; 4096]> {
            if i >= self.pages || !self.writable {
                return None;
            }
            // SAFETY: page `i` of the window is mapped (writable) to a
            // frame of the other domain for as long as `self` lives; the
            // window slot is ours alone, and the borrow of `self` keeps
            // it from being unmapped meanwhile. The other domain may
            // write it concurrently: callers treat the bytes as data only.
            Some(unsafe { &mut *((self.base + i * 4096) as *mut [u8; 4096]) })
        }

        /// Copies page `i` (mapped read-only or writable) into `out`;
        /// false if it is not mapped.
        pub fn read_page(&self, i: u64, out: &mut [u8]) -> bool {
            if i >= self.pages || out.len() != 4096 {
                return false;
            }
            // SAFETY: page `i` of the window is mapped (at least readable)
            // to a frame of the other domain for as long as `self` lives;
            // 4096 bytes from its address are ours to read. The other
            // domain may write the frame meanwhile: the bytes are data
            // only (a live save reads a frame written later again).
            let src =
                unsafe { core::slice::from_raw_parts((self.base + i * 4096) as *const u8, 4096) };
            out.copy_from_slice(src);
            true
        }

        /// Raw pointer to page `i` (for shared rings read with volatile
        /// accesses).
        pub fn page_ptr(&self, i: u64) -> Option<*mut u8> {
            (i < self.pages).then(|| (self.base + i * 4096) as *mut u8)
        }
    }

    /// Pages [`ForeignGuestMemory`] tries to keep mapped at once.
    const GUEST_WINDOW_PAGES: u64 = 256;

    /// An HVM (translated) domain's memory by guest-physical address, for
    /// the HVM builder and the device model's `data_is_ptr` requests:
    /// accesses go through a window of guest frames mapped with
    /// [`ForeignMap`] (frame numbers read as GFNs), moved when an access
    /// falls outside it. Inside the populated ranges it was told of, the
    /// window reaches up to [`GUEST_WINDOW_PAGES`] ahead (sequential
    /// writes map once per window); elsewhere it holds exactly the frames
    /// of the access. An access to a frame that is not populated fails
    /// ([`crate::devmodel::MemoryFault`]).
    pub struct ForeignGuestMemory {
        domid: DomId,
        /// Populated `(first gfn, count)` ranges the window may span.
        ranges: alloc::vec::Vec<(u64, u64)>,
        /// The window: its first guest frame and the mapping.
        window: Option<(u64, ForeignMap)>,
    }

    impl ForeignGuestMemory {
        /// `domid`'s memory, nothing mapped yet; each access maps just
        /// its own frames.
        pub fn new(domid: DomId) -> ForeignGuestMemory {
            Self::with_ranges(domid, alloc::vec::Vec::new())
        }

        /// `domid`'s memory whose frames `ranges` (`(first gfn, count)`)
        /// are populated.
        pub fn with_ranges(domid: DomId, ranges: alloc::vec::Vec<(u64, u64)>) -> Self {
            ForeignGuestMemory {
                domid,
                ranges,
                window: None,
            }
        }

        /// How many frames from `first` a window may hold, at least `need`.
        fn span(&self, first: u64, need: u64) -> u64 {
            let end = self
                .ranges
                .iter()
                .find(|&&(s, n)| first >= s && first < s + n)
                .map_or(0, |&(s, n)| s + n);
            end.saturating_sub(first).min(GUEST_WINDOW_PAGES).max(need)
        }

        /// Dom0's address of guest-physical `gpa` with `len` bytes mapped
        /// behind it (`len` within one window).
        fn reach(&mut self, gpa: u64, len: u64) -> Option<*mut u8> {
            let first = gpa >> 12;
            let last = gpa.checked_add(len.max(1) - 1)? >> 12;
            let inside = |(w, m): &(u64, ForeignMap)| first >= *w && last < *w + m.pages();
            if !self.window.as_ref().is_some_and(inside) {
                self.window = None;
                let need = last - first + 1;
                let frames: alloc::vec::Vec<u64> =
                    (first..first + self.span(first, need)).collect();
                let m = ForeignMap::new(self.domid, &frames).ok()?;
                self.window = Some((first, m));
            }
            let (w, m) = self.window.as_ref()?;
            Some((m.base() + (gpa - (w << 12))) as *mut u8)
        }

        fn each_chunk(
            &mut self,
            gpa: u64,
            len: usize,
            mut f: impl FnMut(*mut u8, usize, usize),
        ) -> Result<(), crate::devmodel::MemoryFault> {
            let chunk = (GUEST_WINDOW_PAGES as usize / 2) * 4096;
            let mut done = 0;
            while done < len {
                let n = (len - done).min(chunk);
                let at = gpa
                    .checked_add(done as u64)
                    .ok_or(crate::devmodel::MemoryFault { gpa })?;
                let p = self
                    .reach(at, n as u64)
                    .ok_or(crate::devmodel::MemoryFault { gpa: at })?;
                f(p, done, n);
                done += n;
            }
            Ok(())
        }
    }

    impl crate::devmodel::GuestMemory for ForeignGuestMemory {
        fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), crate::devmodel::MemoryFault> {
            let len = buf.len();
            let dst = buf.as_mut_ptr();
            self.each_chunk(gpa, len, |p, off, n| {
                // SAFETY: `reach` mapped `n` bytes at `p` (the window
                // lives in `self` until the next `reach`); `dst + off` has
                // `n` bytes of `buf` left. The guest may write its memory
                // meanwhile: the bytes are data only.
                unsafe { core::ptr::copy_nonoverlapping(p as *const u8, dst.add(off), n) }
            })
        }

        fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), crate::devmodel::MemoryFault> {
            let len = buf.len();
            let src = buf.as_ptr();
            self.each_chunk(gpa, len, |p, off, n| {
                // SAFETY: as in `read`, the other way round (the window is
                // mapped writable).
                unsafe { core::ptr::copy_nonoverlapping(src.add(off), p, n) }
            })
        }
    }

    impl Drop for ForeignMap {
        fn drop(&mut self) {
            // Clear the entries one L1 table at a time, in batches, then
            // flush once: the references Xen took on the frames go.
            let l4 = frame::kernel_l4();
            let mut batch: heapless::Vec<hypercall_abi::xen::MmuUpdate, 64> = heapless::Vec::new();
            let mut cur: (u64, Option<u64>) = (u64::MAX, None);
            for i in 0..self.pages {
                let va = self.base + i * 4096;
                if cur.0 != va >> 21 {
                    cur = (
                        va >> 21,
                        frame::with_pt(|b| mm::find_l1(b, l4, va)).ok().flatten(),
                    );
                }
                if let Some(l1) = cur.1 {
                    let _ = batch.push(mmu::pt_update(l1, mm::index(va, 1), Pte::EMPTY));
                }
                if batch.is_full() {
                    let _ = mmu::mmu_update(&batch);
                    batch.clear();
                }
            }
            if !batch.is_empty() {
                let _ = mmu::mmu_update(&batch);
            }
            let _ = mmu::tlb_flush_all();
            mark(&mut *USED.lock(), self.first, self.reserved, false);
        }
    }
}

/// `XEN_DOMCTL_get_cpu_policy` into `buf`: the number of CPUID leaves
/// written (`-ENOBUFS` if `buf` is too small). MSR entries are not asked
/// for.
pub fn get_cpu_policy_into(domid: DomId, buf: &mut [XenCpuidLeaf]) -> Result<usize, Errno> {
    let n = u32::try_from(buf.len()).map_err(|_| Errno::from_abi(AbiErrno::EINVAL))?;
    let mut d = XenDomctl::new(DomctlCmd::GetCpuPolicy, domid);
    d.set_payload(&XenDomctlCpuPolicy {
        nr_leaves: n,
        leaves: buf.as_mut_ptr() as u64,
        ..XenDomctlCpuPolicy::new_zeroed()
    });
    // Xen writes at most `n` entries into `buf`, live for the call.
    domctl(&mut d)?;
    Ok((d.payload::<XenDomctlCpuPolicy>().nr_leaves as usize).min(buf.len()))
}

/// `XEN_DOMCTL_get_cpu_policy`: the domain's CPUID policy, as Xen
/// serialises it (libxc's `xc_get_domain_cpu_policy`: first the size,
/// then the leaves).
pub fn get_cpu_policy(domid: DomId) -> Result<alloc::vec::Vec<XenCpuidLeaf>, Errno> {
    let mut d = XenDomctl::new(DomctlCmd::GetCpuPolicy, domid);
    d.set_payload(&XenDomctlCpuPolicy::new_zeroed());
    domctl(&mut d)?;
    let n = d.payload::<XenDomctlCpuPolicy>().nr_leaves.min(1024) as usize;
    let mut leaves = alloc::vec![XenCpuidLeaf::new_zeroed(); n];
    let got = get_cpu_policy_into(domid, &mut leaves)?;
    leaves.truncate(got);
    Ok(leaves)
}

/// Why `XEN_DOMCTL_set_cpu_policy` refused a policy: the error and the
/// leaf, subleaf and MSR Xen blames (`u32::MAX` for none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuPolicyError {
    /// The hypercall's error.
    pub errno: Errno,
    /// `err_leaf`.
    pub leaf: u32,
    /// `err_subleaf`.
    pub subleaf: u32,
    /// `err_msr`.
    pub msr: u32,
}

/// `XEN_DOMCTL_set_cpu_policy` with CPUID leaves only (libxc's
/// `xc_set_domain_cpu_policy`).
pub fn set_cpu_policy(domid: DomId, leaves: &[XenCpuidLeaf]) -> Result<(), CpuPolicyError> {
    let mut d = XenDomctl::new(DomctlCmd::SetCpuPolicy, domid);
    d.set_payload(&XenDomctlCpuPolicy {
        nr_leaves: leaves.len() as u32,
        leaves: leaves.as_ptr() as u64,
        err_leaf: u32::MAX,
        err_subleaf: u32::MAX,
        err_msr: u32::MAX,
        ..XenDomctlCpuPolicy::new_zeroed()
    });
    // Xen reads `nr_leaves` entries of `leaves`, live for the call.
    domctl(&mut d).map(|_| ()).map_err(|errno| {
        let p = d.payload::<XenDomctlCpuPolicy>();
        CpuPolicyError {
            errno,
            leaf: p.err_leaf,
            subleaf: p.err_subleaf,
            msr: p.err_msr,
        }
    })
}
