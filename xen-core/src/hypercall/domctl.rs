//! `__HYPERVISOR_domctl`: the toolstack's control of other domains
//! (Dom0 only): create, destroy, pause, inspect, size and schedule them,
//! and set up their vCPUs — Xen 4.17's `do_domctl`, for PV domains.
//!
//! Every command checks the caller's privilege first (`-EPERM`) and the
//! interface version (`-EACCES`), as Xen does; the target is found among
//! `Call::others` (or is the caller itself where Xen allows that).

use super::{Call, Deferred};
use crate::domain::{read_guest, write_guest, DomId, Domain, RunState};
use crate::memory::{self, FRAMES, FRAME_TABLE};
use alloc::boxed::Box;
use hypercall_abi::arch_x86::VcpuGuestContext;
use hypercall_abi::domctl::*;
use hypercall_abi::errno::Errno;
use hypercall_abi::xen::SharedInfo;
use xen_core::mm::frame_table::{DomId as FtDomId, Owner, PageType};
use xen_core::mm::Mfn;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// `DOMID_FIRST_RESERVED`: ids from here on are special.
const DOMID_FIRST_RESERVED: DomId = 0x7ff0;
/// Most vCPUs a PV domain may have: their `vcpu_info`s start in
/// shared_info (`XEN_LEGACY_MAX_VCPUS`).
const MAX_VCPUS: u32 = 32;
/// Where the search for a free domain id goes on from (Xen's `rover`).
static ROVER: core::sync::atomic::AtomicU16 = core::sync::atomic::AtomicU16::new(0);

/// `HYPERVISOR_domctl(struct xen_domctl *)`.
#[inline(never)]
pub fn domctl(c: &mut Call) -> Result<i64, Errno> {
    let arg = c.args()[0];
    // Xen's order: the copy (-EFAULT), the interface version (-EACCES),
    // the target domain (-ESRCH), then the XSM check (-EPERM).
    let mut op: XenDomctl = read_guest(c.cr3, arg)?;
    if op.interface_version != XEN_DOMCTL_INTERFACE_VERSION {
        return Err(Errno::EACCES);
    }
    let cmd = DomctlCmd::from_raw(u64::from(op.cmd));
    let needs_target = !matches!(
        cmd,
        Some(DomctlCmd::Createdomain | DomctlCmd::Getdomaininfo) | None
    );
    if needs_target
        && op.domain != c.dom.domid
        && op.domain != hypercall_abi::xen::DOMID_SELF
        && c.others.get(op.domain).is_none()
    {
        return Err(Errno::ESRCH);
    }
    if !c.dom.is_privileged {
        return Err(Errno::EPERM);
    }
    let cmd = cmd.ok_or(Errno::ENOSYS)?;
    let copy_back = match cmd {
        DomctlCmd::Createdomain => createdomain(c, &mut op)?,
        DomctlCmd::Getdomaininfo => getdomaininfo(c, &mut op)?,
        DomctlCmd::Destroydomain => destroydomain(c, op.domain)?,
        _ => {
            let caller = c.dom.domid;
            let cr3 = c.cr3;
            let domid = op.domain;
            let d = target(c, domid)?;
            let self_target = d.domid == caller;
            let (target_id, vcpus) = (d.domid, d.vcpus.len() as u32);
            let r = on_domain(cmd, d, &mut op, cr3, self_target);
            if r.is_ok() && matches!(cmd, DomctlCmd::Pausedomain) {
                // Xen's domain_pause returns once no vCPU runs: a caller
                // reading the domain's memory or dirty bitmap next must
                // not see it still writing.
                c.deferred = Some(Deferred::WaitOffCpu(target_id, vcpus));
            }
            if r.is_err() && matches!(cmd, DomctlCmd::SetCpuPolicy) {
                // Xen copies err_leaf/err_subleaf/err_msr back on failure.
                write_guest(cr3, arg, &op)?;
            }
            r?
        }
    };
    if copy_back {
        write_guest(c.cr3, arg, &op)?;
    }
    Ok(0)
}

/// The domain a command is for: another domain, or the caller itself.
fn target<'c>(c: &'c mut Call, domid: DomId) -> Result<&'c mut Domain, Errno> {
    if domid == c.dom.domid || domid == hypercall_abi::xen::DOMID_SELF {
        return Ok(c.dom);
    }
    c.others.get(domid).ok_or(Errno::ESRCH)
}

/// The commands on one existing domain. Returns whether `op` goes back.
fn on_domain(
    cmd: DomctlCmd,
    d: &mut Domain,
    op: &mut XenDomctl,
    cr3: u64,
    self_target: bool,
) -> Result<bool, Errno> {
    match cmd {
        DomctlCmd::Pausedomain => {
            if self_target {
                return Err(Errno::EINVAL);
            }
            if d.dying {
                return Err(Errno::EINVAL);
            }
            d.pause_count = d.pause_count.checked_add(1).ok_or(Errno::EOVERFLOW)?;
            crate::sched::domain_pause(d)?;
            Ok(false)
        }
        DomctlCmd::Unpausedomain => {
            if self_target {
                return Err(Errno::EINVAL);
            }
            if d.pause_count == 0 {
                return Err(Errno::EINVAL);
            }
            if d.is_hvm() {
                // Its runtime and first vCPU, the first time (vCPU 0
                // needs a context: XEN_DOMCTL_sethvmcontext).
                crate::hvm_run::prepare_unpause(d)?;
            }
            d.pause_count -= 1;
            crate::sched::domain_unpause(d)?;
            d.creation_finished = true;
            Ok(false)
        }
        DomctlCmd::Resumedomain => {
            // Xen: not on oneself (it could not pause itself); on anyone
            // else it clears the shutdown and lets the vCPUs run on.
            if self_target {
                return Err(Errno::EINVAL);
            }
            crate::sched::domain_resume(d);
            Ok(false)
        }
        DomctlCmd::MaxMem => {
            let m: XenDomctlMaxMem = op.payload();
            // Xen: new_max = max_memkb >> (PAGE_SHIFT - 10).
            d.max_pages = m.max_memkb >> 2;
            Ok(false)
        }
        DomctlCmd::MaxVcpus => {
            // vCPUs come with createdomain since Xen 4.12; the old call only
            // confirms the count.
            let m: XenDomctlMaxVcpus = op.payload();
            if m.max as usize != d.vcpus.len() {
                return Err(Errno::EINVAL);
            }
            Ok(false)
        }
        DomctlCmd::Setvcpucontext => {
            let vc: XenDomctlVcpucontext = op.payload();
            set_vcpu_context(d, vc, cr3, self_target)?;
            Ok(false)
        }
        DomctlCmd::Sethvmcontext => {
            if self_target {
                return Err(Errno::EINVAL);
            }
            let h: XenDomctlHvmcontext = op.payload();
            let size = h.size as usize;
            if size > MAX_HVM_CONTEXT {
                return Err(Errno::EINVAL);
            }
            let mut buf = alloc::vec![0u8; size];
            crate::domain::copy_from_guest(cr3, h.buffer, &mut buf)?;
            crate::hvm_run::set_context(d, &buf)?;
            Ok(false)
        }
        DomctlCmd::Gethvmcontext => {
            let mut h: XenDomctlHvmcontext = op.payload();
            let need = crate::hvm_run::get_context(d, &mut [])?;
            if h.buffer != 0 {
                if (h.size as usize) < need {
                    return Err(Errno::ENOSPC);
                }
                let mut buf = alloc::vec![0u8; need];
                let n = crate::hvm_run::get_context(d, &mut buf)?;
                crate::domain::copy_to_guest(cr3, h.buffer, &buf[..n])?;
            }
            h.size = need as u32;
            op.set_payload(&h);
            Ok(true)
        }
        DomctlCmd::Getvcpucontext => {
            let vc: XenDomctlVcpucontext = op.payload();
            let v = d.vcpus.get(vc.vcpu as usize).ok_or(Errno::EINVAL)?;
            if vc.ctxt == 0 {
                return Err(Errno::EFAULT);
            }
            if (d.pause_count > 0 || d.shutdown.is_some()) && crate::sched::on_cpu(d, vc.vcpu) {
                // Stopped, but still leaving its CPU: its registers are
                // not saved yet (Xen's vcpu_pause would wait; the caller
                // tries again).
                return Err(Errno::EAGAIN);
            }
            write_guest(cr3, vc.ctxt, &vcpu_context(v))?;
            Ok(false)
        }
        DomctlCmd::Getvcpuinfo => {
            let mut vi: XenDomctlGetvcpuinfo = op.payload();
            let v = d.vcpus.get(vi.vcpu as usize).ok_or(Errno::EINVAL)?;
            let now = crate::time::now_ns();
            vi.online = u8::from(v.state != RunState::Down);
            vi.blocked = u8::from(v.state == RunState::Blocked);
            vi.running = u8::from(matches!(v.state, RunState::Running(_)));
            vi.cpu_time = v
                .runstate
                .time_in(hypercall_abi::vcpu::RunstateState::Running, now);
            vi.cpu = match v.state {
                RunState::Running(c) => c,
                _ => crate::sched::vcpu_cpu(d, vi.vcpu).unwrap_or(0) as u32,
            };
            op.set_payload(&vi);
            Ok(true)
        }
        DomctlCmd::Setvcpuaffinity | DomctlCmd::Getvcpuaffinity => {
            let mut a: XenDomctlVcpuaffinity = op.payload();
            if a.vcpu as usize >= d.vcpus.len() {
                return Err(Errno::EINVAL);
            }
            if a.flags & !(XEN_VCPUAFFINITY_HARD | XEN_VCPUAFFINITY_SOFT | XEN_VCPUAFFINITY_FORCE)
                != 0
                || a.flags & (XEN_VCPUAFFINITY_HARD | XEN_VCPUAFFINITY_SOFT) == 0
            {
                return Err(Errno::EINVAL);
            }
            // Soft affinity is accepted and has no effect (one node).
            if cmd == DomctlCmd::Setvcpuaffinity && a.flags & XEN_VCPUAFFINITY_HARD != 0 {
                let mask = read_bitmap(cr3, &a.cpumap_hard)?;
                crate::sched::set_affinity(d, a.vcpu, mask)?;
            }
            let hard = crate::sched::affinity(d, a.vcpu)?;
            if a.flags & XEN_VCPUAFFINITY_HARD != 0 {
                write_bitmap(cr3, &mut a.cpumap_hard, hard)?;
            }
            if a.flags & XEN_VCPUAFFINITY_SOFT != 0 {
                write_bitmap(cr3, &mut a.cpumap_soft, u64::MAX)?;
            }
            op.set_payload(&a);
            Ok(true)
        }
        DomctlCmd::SchedulerOp => {
            let mut s: XenDomctlSchedulerOp = op.payload();
            if s.sched_id != SchedulerId::Credit as u32 {
                return Err(Errno::EINVAL);
            }
            match s.cmd {
                0 => {
                    // XEN_DOMCTL_SCHEDOP_putinfo
                    let p = s.credit();
                    crate::sched::set_params(d, p.weight, p.cap)?;
                    Ok(false)
                }
                1 => {
                    // XEN_DOMCTL_SCHEDOP_getinfo
                    let p = crate::sched::get_params(d);
                    s.set_credit(&XenDomctlSchedCredit {
                        weight: p.weight,
                        cap: p.cap,
                    });
                    op.set_payload(&s);
                    Ok(true)
                }
                _ => Err(Errno::EINVAL),
            }
        }
        DomctlCmd::Setdomainhandle => {
            let h: XenDomctlSetdomainhandle = op.payload();
            d.handle = h.handle;
            Ok(false)
        }
        DomctlCmd::Settimeoffset => {
            let t: XenDomctlSettimeoffset = op.payload();
            d.time_offset = t.time_offset_seconds;
            Ok(false)
        }
        DomctlCmd::HypercallInit => {
            let h: XenDomctlHypercallInit = op.payload();
            // An HVM domain's gmfn is a guest frame: through its p2m.
            let mfn = match &d.hvm {
                Some(hvm) => crate::hvm_glue::lookup(hvm, h.gmfn).ok_or(Errno::EINVAL)?,
                None => Mfn(h.gmfn),
            };
            hypercall_init(d, mfn)?;
            Ok(false)
        }
        DomctlCmd::SetAddressSize => {
            let a: XenDomctlAddressSize = op.payload();
            if a.size != 64 {
                return Err(Errno::EINVAL);
            }
            Ok(false)
        }
        DomctlCmd::Getpageframeinfo3 => {
            let g: XenDomctlGetpageframeinfo3 = op.payload();
            getpageframeinfo3(d, &g, cr3)?;
            Ok(false)
        }
        DomctlCmd::ShadowOp => {
            // Xen: a domain cannot change its own paging mode.
            if self_target {
                return Err(Errno::EINVAL);
            }
            let mut so: hypercall_abi::domctl::XenDomctlShadowOp = op.payload();
            let back = crate::log_dirty::shadow_op(d, &mut so, cr3)?;
            op.set_payload(&so);
            Ok(back)
        }
        DomctlCmd::GetAddressSize => {
            op.set_payload(&XenDomctlAddressSize { size: 64 });
            Ok(true)
        }
        DomctlCmd::GetCpuPolicy => {
            let mut p: XenDomctlCpuPolicy = op.payload();
            get_cpu_policy(d, &mut p, cr3)?;
            op.set_payload(&p);
            Ok(true)
        }
        DomctlCmd::SetCpuPolicy => {
            let mut p: XenDomctlCpuPolicy = op.payload();
            let r = set_cpu_policy(d, &mut p, cr3, self_target);
            op.set_payload(&p);
            r.map(|()| false)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// Reads the first 64 CPUs of a `xenctl_bitmap`.
fn read_bitmap(cr3: u64, b: &XenctlBitmap) -> Result<u64, Errno> {
    let bytes = (b.nr_bits as usize).div_ceil(8).min(8);
    let mut raw = [0u8; 8];
    crate::domain::copy_from_guest(cr3, b.bitmap, &mut raw[..bytes])?;
    let mut m = u64::from_le_bytes(raw);
    if b.nr_bits < 64 {
        m &= (1u64 << b.nr_bits) - 1;
    }
    Ok(m)
}

/// Writes a CPU mask into a `xenctl_bitmap` (as much as it holds; the rest
/// of its bytes zeroed, as Xen's `cpumask_to_xenctl_bitmap`).
fn write_bitmap(cr3: u64, b: &mut XenctlBitmap, mask: u64) -> Result<(), Errno> {
    let bytes = (b.nr_bits as usize).div_ceil(8);
    let raw = mask.to_le_bytes();
    let mut off = 0;
    while off < bytes {
        let n = (bytes - off).min(8);
        let chunk: [u8; 8] = if off == 0 { raw } else { [0; 8] };
        crate::domain::copy_to_guest(cr3, b.bitmap + off as u64, &chunk[..n])?;
        off += n;
    }
    Ok(())
}

/// XEN_DOMCTL_createdomain: a new PV domain, paused, with its vCPUs down,
/// its shared_info and no memory (the builder populates it).
fn createdomain(c: &mut Call, op: &mut XenDomctl) -> Result<bool, Errno> {
    let cd: XenDomctlCreatedomain = op.payload();
    let hvm =
        xen_core::hvm_dom::check_create_flags(cd.flags, crate::arch::x86_64::svm::hap_available())?;
    if cd.max_vcpus == 0 || cd.max_vcpus > MAX_VCPUS {
        return Err(Errno::EINVAL);
    }
    let grants = xen_core::grant_table::GrantTable::for_createdomain(
        cd.max_grant_frames,
        cd.max_maptrack_frames,
    )
    .map_err(|_| Errno::EINVAL)?;
    let domid = if op.domain > 0 && op.domain < DOMID_FIRST_RESERVED {
        if !domid_free(c, op.domain) {
            return Err(Errno::EEXIST);
        }
        op.domain
    } else {
        let mut found = None;
        let start = ROVER.load(core::sync::atomic::Ordering::Relaxed);
        let mut id = start;
        for _ in 1..DOMID_FIRST_RESERVED {
            id = if id + 1 >= DOMID_FIRST_RESERVED {
                1
            } else {
                id + 1
            };
            if domid_free(c, id) {
                found = Some(id);
                break;
            }
        }
        let id = found.ok_or(Errno::ENOMEM)?;
        ROVER.store(id, core::sync::atomic::Ordering::Relaxed);
        id
    };

    // shared_info: a hypervisor page the domain owns, writable for good.
    let shinfo = FRAMES
        .lock()
        .as_mut()
        .and_then(|fa| fa.alloc().ok())
        .ok_or(Errno::ENOMEM)?;
    memory::clear_frame(shinfo);
    {
        let mut si = SharedInfo::new_zeroed();
        for v in si.vcpu_info.iter_mut() {
            v.evtchn_upcall_mask = 1;
        }
        crate::time::fill_vcpu_time(&mut si.vcpu_info[0].time);
        crate::time::fill_wallclock(&mut si);
        // SAFETY: the frame was just allocated and cleared; nothing else
        // refers to it yet.
        let page = unsafe { memory::frame_bytes(shinfo) };
        page[..core::mem::size_of::<SharedInfo>()].copy_from_slice(si.as_bytes());
    }
    {
        let mut ft = FRAME_TABLE.lock();
        let ft = ft.as_mut().ok_or(Errno::ENOMEM)?;
        let owner = Owner::Domain(FtDomId(domid));
        if ft.assign(shinfo, owner).is_err()
            || ft
                .get_page_and_type(shinfo, owner, PageType::Writable)
                .is_err()
        {
            if let Some(fa) = FRAMES.lock().as_mut() {
                let _ = fa.free(shinfo);
            }
            return Err(Errno::ENOMEM);
        }
    }
    let mut d = Domain::new(domid, false, cd.max_vcpus, shinfo.maddr());
    d.handle = cd.handle;
    d.grants = Box::new(grants);
    d.pause_count = 1;
    if hvm {
        // Which devices the hypervisor emulates: libxl asks for all (HVM)
        // or the local APIC alone (PVH); a toolstack that says nothing
        // gets the HVM set.
        let emu = cd.arch.emulation_flags;
        let all = hypercall_abi::arch_x86::XEN_X86_EMU_ALL;
        if emu & !all != 0 || (emu != 0 && emu & hypercall_abi::arch_x86::XEN_X86_EMU_LAPIC == 0) {
            release_shared_info(domid, shinfo);
            return Err(Errno::EINVAL);
        }
        match crate::hvm_glue::new_hvm() {
            Ok(mut h) => {
                h.emulation = if emu == 0 {
                    xen_core::hvm::platform::PlatformConfig::EMU_HVM
                } else {
                    emu
                };
                d.hvm = Some(h)
            }
            Err(e) => {
                release_shared_info(domid, shinfo);
                return Err(e);
            }
        }
    }
    if let Err(e) = crate::sched::domain_init(&d).and_then(|()| crate::sched::domain_pause(&d)) {
        let _ = crate::sched::domain_destroy(domid);
        crate::hvm_glue::teardown(&mut d);
        release_shared_info(domid, shinfo);
        return Err(e);
    }
    log::debug!(
        "d{domid}: created ({} vCPUs{})",
        cd.max_vcpus,
        if hvm { ", HVM with NPT" } else { "" }
    );
    c.deferred = Some(Deferred::Insert(Box::new(d)));
    op.domain = domid;
    Ok(true)
}

/// Whether `id` can be given to a new domain: no domain has it, and no
/// frame of a destroyed domain with that id is still referenced.
fn domid_free(c: &Call, id: DomId) -> bool {
    if id == c.dom.domid || c.others.iter().any(|d| d.domid == id) {
        return false;
    }
    let owner = Owner::Domain(FtDomId(id));
    let ft = FRAME_TABLE.lock();
    let Some(ft) = ft.as_ref() else { return false };
    !(0..ft.len() as u64).any(|m| ft.owner(Mfn(m)) == Ok(owner))
}

fn release_shared_info(domid: DomId, shinfo: Mfn) {
    crate::pv_mm::with_pt(domid, |_, ft, mem| {
        use xen_core::mm::frame_table::PagePut;
        use xen_core::mm::ptval::PtMemory;
        let _ = ft.put_page_and_type(shinfo);
        if let Ok(PagePut::Freed) = ft.release(shinfo) {
            mem.frame_freed(shinfo);
        }
    });
}

/// XEN_DOMCTL_getdomaininfo, with Xen 4.17's lookup: the first domain whose
/// id is at least the one asked for.
fn getdomaininfo(c: &mut Call, op: &mut XenDomctl) -> Result<bool, Errno> {
    if op.domain >= DOMID_FIRST_RESERVED {
        return Err(Errno::EINVAL);
    }
    let want = op.domain;
    let mut best: Option<&Domain> = None;
    for d in core::iter::once(&*c.dom).chain(c.others.iter()) {
        if d.domid >= want && best.is_none_or(|b| d.domid < b.domid) {
            best = Some(d);
        }
    }
    let d = best.ok_or(Errno::ESRCH)?;
    let info = domain_info(d);
    op.domain = d.domid;
    op.set_payload(&info);
    Ok(true)
}

/// A domain's `xen_domctl_getdomaininfo` (also sysctl getdomaininfolist).
pub fn domain_info(d: &Domain) -> XenDomctlGetdomaininfo {
    let now = crate::time::now_ns();
    let mut i = XenDomctlGetdomaininfo::new_zeroed();
    i.domain = d.domid;
    let mut flags = 0;
    if d.dying {
        flags |= XEN_DOMINF_DYING;
    }
    if let Some(r) = d.shutdown {
        flags |=
            XEN_DOMINF_SHUTDOWN | ((r.raw() & XEN_DOMINF_SHUTDOWNMASK) << XEN_DOMINF_SHUTDOWNSHIFT);
    }
    if d.pause_count > 0 {
        flags |= XEN_DOMINF_PAUSED;
    }
    if d.is_hvm() {
        flags |= XEN_DOMINF_HVM_GUEST | XEN_DOMINF_HAP;
    }
    let up = d.vcpus.iter().filter(|v| v.state != RunState::Down).count();
    if d.vcpus
        .iter()
        .any(|v| matches!(v.state, RunState::Running(_)))
    {
        flags |= XEN_DOMINF_RUNNING;
    } else if up > 0
        && d.vcpus
            .iter()
            .all(|v| matches!(v.state, RunState::Blocked | RunState::Down))
    {
        flags |= XEN_DOMINF_BLOCKED;
    }
    i.flags = flags;
    i.tot_pages = d.tot_pages;
    i.max_pages = d.max_pages;
    i.shared_info_frame = d.shared_info_maddr >> 12;
    i.cpu_time = d
        .vcpus
        .iter()
        .map(|v| {
            v.runstate
                .time_in(hypercall_abi::vcpu::RunstateState::Running, now)
        })
        .sum();
    i.nr_online_vcpus = up as u32;
    i.max_vcpu_id = d.vcpus.len().saturating_sub(1) as u32;
    i.handle = d.handle;
    i.gpaddr_bits = 52;
    i
}

/// XEN_DOMCTL_destroydomain: takes a domain apart. `-EAGAIN` (the
/// toolstack retries, as libxc does) while one of its vCPUs is still on a
/// CPU. Every frame goes back to the allocator once nothing outside the
/// domain refers to it any more.
fn destroydomain(c: &mut Call, domid: DomId) -> Result<bool, Errno> {
    if domid == c.dom.domid || domid == hypercall_abi::xen::DOMID_SELF {
        return Err(Errno::EINVAL);
    }
    let d = c.others.get(domid).ok_or(Errno::ESRCH)?;
    if d.is_privileged {
        return Err(Errno::EPERM);
    }
    if !d.dying {
        d.dying = true;
        log::debug!("d{domid}: destroying");
        crate::sched::domain_shutdown(d);
    }
    if let Err(e) = crate::sched::domain_destroy(domid) {
        // Still current on some CPU: it leaves at that CPU's next exit.
        crate::arch::x86_64::flush::domain(domid);
        return Err(if e == Errno::EBUSY { Errno::EAGAIN } else { e });
    }
    // Its event channels and memory go once the table is whole again.
    c.deferred = Some(Deferred::Remove(domid));
    Ok(false)
}

/// The largest HVM context buffer taken (a header, 128 CPU records and
/// the end record fit).
const MAX_HVM_CONTEXT: usize = 160 * 1024;

/// XEN_DOMCTL_setvcpucontext: the vCPU's initial state (Xen's
/// `arch_set_info_guest`), for a paused domain.
fn set_vcpu_context(
    d: &mut Domain,
    vc: XenDomctlVcpucontext,
    cr3: u64,
    self_target: bool,
) -> Result<(), Errno> {
    if self_target || (vc.vcpu as usize) >= d.vcpus.len() {
        return Err(Errno::EINVAL);
    }
    if d.is_hvm() {
        // An HVM vCPU's context is a save record
        // (XEN_DOMCTL_sethvmcontext), not a PV one.
        return Err(Errno::EOPNOTSUPP);
    }
    if vc.ctxt == 0 {
        // Xen resets the vCPU; a vCPU that ran cannot be reset here yet.
        return Err(Errno::EINVAL);
    }
    // Paused, or shut down (libxc's xc_domain_resume sets the suspended
    // vCPU's return value before XEN_DOMCTL_resumedomain).
    if d.pause_count == 0 && d.shutdown.is_none() {
        return Err(Errno::EINVAL);
    }
    if d.pause_count == 0 && crate::sched::on_cpu(d, vc.vcpu) {
        // Shut down, but the vCPU has not left its CPU yet (it does at
        // that CPU's next exit): its live registers and page tables are
        // still in use there. The caller tries again.
        return Err(Errno::EAGAIN);
    }
    let ctx: VcpuGuestContext = read_guest(cr3, vc.ctxt)?;
    let domid = d.domid;
    let v = &mut d.vcpus[vc.vcpu as usize];
    let (old, old_user) = (v.guest_table, v.guest_table_user);
    super::vcpu::initialise(domid, v, &ctx)?;
    if old != 0 || old_user != 0 {
        super::vcpu::put_base_pointers(domid, old, old_user);
    }
    if ctx.flags & hypercall_abi::arch_x86::VGCF_ONLINE != 0 {
        crate::sched::vcpu_up(d, vc.vcpu);
    }
    Ok(())
}

/// A vCPU's `vcpu_guest_context` (XEN_DOMCTL_getvcpucontext).
fn vcpu_context(v: &crate::domain::Vcpu) -> VcpuGuestContext {
    let mut ctx = VcpuGuestContext::new_zeroed();
    let r = &v.regs;
    let u = &mut ctx.user_regs;
    (u.r15, u.r14, u.r13, u.r12, u.rbp, u.rbx) = (r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx);
    (u.r11, u.r10, u.r9, u.r8, u.rax, u.rcx) = (r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx);
    (u.rdx, u.rsi, u.rdi, u.rip, u.rsp) = (r.rdx, r.rsi, r.rdi, r.rip, r.rsp);
    u.rflags = r.rflags;
    u.cs = 0xe033;
    u.ss = 0xe02b;
    ctx.flags = v.vgc_flags
        | if v.state != RunState::Down {
            hypercall_abi::arch_x86::VGCF_ONLINE
        } else {
            0
        };
    if v.fpu_valid {
        ctx.fpu_ctxt.copy_from_slice(&v.fpu.0);
        ctx.flags |= hypercall_abi::arch_x86::VGCF_I387_VALID;
    }
    for (i, t) in v
        .trap_table
        .iter()
        .enumerate()
        .filter(|(_, t)| t.address != 0)
    {
        if let Some(slot) = ctx.trap_ctxt.get_mut(i) {
            *slot = *t;
        }
    }
    ctx.ldt_base = v.ldt_base;
    ctx.ldt_ents = v.ldt_ents;
    for (i, f) in v.gdt_frames.iter().enumerate() {
        ctx.gdt_frames[i] = f >> 12;
    }
    ctx.gdt_ents = v.gdt_ents;
    ctx.kernel_ss = v.kernel_ss;
    ctx.kernel_sp = v.kernel_sp;
    ctx.ctrlreg[3] = v.guest_table;
    ctx.ctrlreg[1] = v.guest_table_user;
    ctx.debugreg = v.debugreg;
    ctx.event_callback_eip = v.callbacks.event;
    ctx.failsafe_callback_eip = v.callbacks.failsafe;
    ctx.syscall_callback_eip = v.callbacks.syscall;
    ctx.fs_base = v.fs_base;
    ctx.gs_base_kernel = v.gs_base_kernel;
    ctx.gs_base_user = v.gs_base_user;
    ctx
}

/// XEN_DOMCTL_hypercall_init: writes the hypercall page into the domain's
/// frame `mfn` (a PV guest's gmfn is its machine frame).
fn hypercall_init(d: &Domain, mfn: Mfn) -> Result<(), Errno> {
    let owner = Owner::Domain(FtDomId(d.domid));
    crate::pv_mm::with_pt(d.domid, |_, ft, mem| {
        let ok = ft
            .info(mfn)
            .is_ok_and(|i| i.owner() == owner && i.count() > 0);
        if !ok || ft.get_page_type(mfn, PageType::Writable).is_err() {
            return Err(Errno::EINVAL);
        }
        // SAFETY: the frame is the domain's, held writable (so no page
        // table) by the type reference taken above while we write it.
        let page: &mut [u8; 4096] = unsafe { memory::frame_bytes(mfn) }
            .try_into()
            .map_err(|_| Errno::EINVAL)?;
        hypercall_abi::hypercall::fill_hypercall_page(page);
        mem.written(mfn);
        let _ = ft.put_page_type(mfn);
        Ok(())
    })
}

/// The domain's CPUID policy as `get_cpu_policy` hands it out.
fn current_cpu_policy(d: &Domain) -> Box<xen_core::cpuid_level::Entries> {
    if d.is_hvm() {
        Box::new(crate::hvm_run::current_cpuid_serialised(d))
    } else {
        Box::new(d.emul.cpuid.serialise())
    }
}

/// XEN_DOMCTL_get_cpu_policy: the CPUID leaves (Xen's
/// `x86_cpuid_copy_to_buffer` order) and no MSR entries (Oxen serialises
/// none: DEVIATION, Xen 4.17 hands out PLATFORM_INFO and
/// ARCH_CAPABILITIES). NULL handles ask for the sizes; a buffer too
/// small is `-ENOBUFS`.
fn get_cpu_policy(d: &Domain, p: &mut XenDomctlCpuPolicy, cr3: u64) -> Result<(), Errno> {
    use hypercall_abi::arch_x86::XenCpuidLeaf;
    use xen_core::cpuid_level::MAX_SERIALISED_LEAVES;
    if p.leaves == 0 {
        p.nr_leaves = MAX_SERIALISED_LEAVES as u32;
    } else {
        let cur = current_cpu_policy(d);
        let entries = cur.as_slice();
        if (p.nr_leaves as usize) < entries.len() {
            return Err(Errno::ENOBUFS);
        }
        let mut buf = alloc::vec::Vec::with_capacity(entries.len() * 24);
        for e in entries {
            let l = XenCpuidLeaf {
                leaf: e.leaf,
                subleaf: e.subleaf,
                a: e.regs[0],
                b: e.regs[1],
                c: e.regs[2],
                d: e.regs[3],
            };
            buf.extend_from_slice(l.as_bytes());
        }
        crate::domain::copy_to_guest(cr3, p.leaves, &buf)?;
        p.nr_leaves = entries.len() as u32;
    }
    p.nr_msrs = 0;
    Ok(())
}

/// XEN_DOMCTL_set_cpu_policy: levels the domain's CPUID down
/// ([`xen_core::cpuid_level::audit`] says what is refused; `err_leaf` /
/// `err_subleaf` name the leaf). Not on itself (`-EINVAL`), not once the
/// domain has been unpaused (`-EEXIST`, as Xen). MSR entries: Oxen has
/// none to set, so any is `-ERANGE` with `err_msr` naming it (Xen's
/// answer for an MSR outside its policy).
fn set_cpu_policy(
    d: &mut Domain,
    p: &mut XenDomctlCpuPolicy,
    cr3: u64,
    self_target: bool,
) -> Result<(), Errno> {
    use hypercall_abi::arch_x86::{XenCpuidLeaf, XenMsrEntry};
    use xen_core::cpuid_level::{audit, Entry, MAX_SERIALISED_LEAVES};
    if self_target {
        return Err(Errno::EINVAL);
    }
    if d.creation_finished {
        return Err(Errno::EEXIST);
    }
    p.err_leaf = u32::MAX;
    p.err_subleaf = u32::MAX;
    p.err_msr = u32::MAX;
    if p.nr_leaves as usize > MAX_SERIALISED_LEAVES {
        return Err(Errno::E2BIG);
    }
    let n = p.nr_leaves as usize;
    let mut raw = alloc::vec![0u8; n * core::mem::size_of::<XenCpuidLeaf>()];
    if n > 0 {
        crate::domain::copy_from_guest(cr3, p.leaves, &mut raw)?;
    }
    let submitted: alloc::vec::Vec<Entry> = raw
        .chunks_exact(core::mem::size_of::<XenCpuidLeaf>())
        .filter_map(|c| XenCpuidLeaf::read_from_bytes(c).ok())
        .map(|l| Entry {
            leaf: l.leaf,
            subleaf: l.subleaf,
            regs: [l.a, l.b, l.c, l.d],
        })
        .collect();
    if p.nr_msrs > 0 {
        let m: XenMsrEntry = read_guest(cr3, p.msrs)?;
        p.err_msr = m.idx;
        return Err(Errno::ERANGE);
    }
    let (default, current) = if d.is_hvm() {
        (
            Box::new(crate::hvm_run::default_cpuid(d).serialise()),
            Box::new(crate::hvm_run::current_cpuid_serialised(d)),
        )
    } else {
        (
            Box::new(crate::pv_emul::DomainEmul::default_cpuid(d.is_privileged).serialise()),
            Box::new(d.emul.cpuid.serialise()),
        )
    };
    let lv = audit(default.as_slice(), current.as_slice(), &submitted).map_err(|r| {
        p.err_leaf = r.leaf;
        p.err_subleaf = r.subleaf;
        r.errno
    })?;
    d.cpuid_levelling = lv;
    if !d.is_hvm() {
        d.emul.relevel(d.is_privileged, &lv);
    }
    Ok(())
}

/// Most frames one `XEN_DOMCTL_getpageframeinfo3` may ask about (Xen's).
const PFINFO_MAX: u64 = 1024;

/// `XEN_DOMCTL_getpageframeinfo3`: each of `num` frames of `d` replaced, in
/// place, by its type as a save needs it (Xen 4.17's `arr[j] = type`). An
/// HVM domain's frames are gfns: `XTAB` where nothing (or a host device's
/// MMIO) is mapped, `NOTAB` for RAM. A PV domain's are machine frames:
/// `XTAB` unless `d` owns them, else the page-table level (`L1TAB`..
/// `L4TAB`, with `LPINTAB` if pinned) or `NOTAB`.
fn getpageframeinfo3(
    d: &mut Domain,
    g: &XenDomctlGetpageframeinfo3,
    cr3: u64,
) -> Result<(), Errno> {
    if g.num > PFINFO_MAX {
        return Err(Errno::E2BIG);
    }
    for i in 0..g.num {
        let at = g.array.wrapping_add(i * 8);
        let mut raw = [0u8; 8];
        crate::domain::copy_from_guest(cr3, at, &mut raw)?;
        let frame = u64::from_le_bytes(raw);
        let ty = match d.hvm.as_mut() {
            Some(h) => {
                let kind = crate::hvm_glue::with_p2m(&mut h.p2m, |p2m, mem| {
                    p2m.lookup(mem, frame).map(|e| e.kind)
                });
                match kind {
                    Some(xen_core::hvm::p2m::P2mType::MmioDirect) | None => XEN_DOMCTL_PFINFO_XTAB,
                    Some(_) => XEN_DOMCTL_PFINFO_NOTAB,
                }
            }
            None => pv_frame_type(d.domid, Mfn(frame)),
        };
        crate::domain::copy_to_guest(cr3, at, &u64::from(ty).to_le_bytes())?;
    }
    Ok(())
}

/// A PV domain's frame as getpageframeinfo3 reports it.
fn pv_frame_type(domid: DomId, mfn: Mfn) -> u32 {
    let ft = FRAME_TABLE.lock();
    let Some(ft) = ft.as_ref() else {
        return XEN_DOMCTL_PFINFO_XTAB;
    };
    if ft.owner(mfn) != Ok(Owner::Domain(FtDomId(domid))) {
        return XEN_DOMCTL_PFINFO_XTAB;
    }
    let level = match ft.page_type(mfn) {
        Ok(PageType::L1) => XEN_DOMCTL_PFINFO_L1TAB,
        Ok(PageType::L2) => XEN_DOMCTL_PFINFO_L2TAB,
        Ok(PageType::L3) => XEN_DOMCTL_PFINFO_L3TAB,
        Ok(PageType::L4) => XEN_DOMCTL_PFINFO_L4TAB,
        _ => XEN_DOMCTL_PFINFO_NOTAB,
    };
    if level != XEN_DOMCTL_PFINFO_NOTAB && ft.is_pinned(mfn) == Ok(true) {
        level | XEN_DOMCTL_PFINFO_LPINTAB
    } else {
        level
    }
}
