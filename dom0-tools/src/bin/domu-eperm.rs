//! Test guest (an unprivileged domain, built by Dom0): every privileged
//! operation is refused with `-EPERM`, as Xen 4.17 (with its default XSM
//! policy) refuses it to a domain that is not the control domain: each
//! domctl and sysctl the toolstack uses, memory_op on another domain,
//! foreign `mmu_update` and pins, event channels allocated in another
//! domain's table or inspected there, SCHEDOP_remote_shutdown, and
//! reading the hypervisor console. Afterwards the guest still runs (the
//! refusals changed nothing) and reports its verdict.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use dom0_tools::pvtest::Checks;
    use hypercall_abi::domctl::{DomctlCmd, XenDomctl};
    use hypercall_abi::errno::Errno as AbiErrno;
    use hypercall_abi::hypercall::Hypercall;
    use hypercall_abi::memory::{MemoryOp, XenMemoryReservation};
    use hypercall_abi::sched::{SchedOp, SchedRemoteShutdown};
    use hypercall_abi::sysctl::{SysctlCmd, XenSysctl};
    use pv_guest_lib::hypercall::{hypercall1, hypercall2};
    use pv_guest_lib::{events, mmu, println, Errno, StartInfo};

    pv_guest_lib::entry!(main);

    /// Dom0: the domain every "other domain" operation names.
    const DOM0: u16 = 0;

    fn check(r: i64) -> Result<u64, Errno> {
        pv_guest_lib::error::check(r)
    }

    fn domctl(cmd: DomctlCmd, domid: u16) -> Result<u64, Errno> {
        let mut op = XenDomctl::new(cmd, domid);
        // SAFETY: Xen reads (and on success writes back) the envelope.
        check(unsafe { hypercall1(Hypercall::Domctl, &mut op as *mut XenDomctl as u64) })
    }

    fn sysctl(cmd: SysctlCmd) -> Result<u64, Errno> {
        let mut op = XenSysctl::new(cmd);
        // SAFETY: as domctl.
        check(unsafe { hypercall1(Hypercall::Sysctl, &mut op as *mut XenSysctl as u64) })
    }

    fn memory_op(cmd: MemoryOp, domid: u16) -> Result<u64, Errno> {
        let mut list = [0u64; 1];
        let r = XenMemoryReservation {
            extent_start: list.as_mut_ptr() as u64,
            nr_extents: 1,
            extent_order: 0,
            mem_flags: 0,
            domid,
            _pad26: [0; 3],
        };
        // SAFETY: Xen reads the reservation and at most one list entry.
        check(unsafe { hypercall2(Hypercall::MemoryOp, cmd as u64, &r as *const _ as u64) })
    }

    fn main(si: &'static StartInfo) -> ! {
        println!("domu-eperm: an unprivileged guest tries the control domain's operations");
        let mut c = Checks::new("domu-eperm");
        c.check(
            "start_info says not privileged",
            !si.is_dom0(),
            format_args!("flags {}", si.flags),
        );
        let eperm = AbiErrno::EPERM;
        for cmd in [
            DomctlCmd::Createdomain,
            DomctlCmd::Destroydomain,
            DomctlCmd::Pausedomain,
            DomctlCmd::Unpausedomain,
            DomctlCmd::Getdomaininfo,
            DomctlCmd::MaxMem,
            DomctlCmd::MaxVcpus,
            DomctlCmd::Setvcpucontext,
            DomctlCmd::Getvcpucontext,
            DomctlCmd::Getvcpuinfo,
            DomctlCmd::Setvcpuaffinity,
            DomctlCmd::Getvcpuaffinity,
            DomctlCmd::SchedulerOp,
            DomctlCmd::Setdomainhandle,
            DomctlCmd::Settimeoffset,
            DomctlCmd::HypercallInit,
            DomctlCmd::ShadowOp,
        ] {
            c.err(cmd.name(), domctl(cmd, DOM0), eperm);
        }
        for cmd in [
            SysctlCmd::Readconsole,
            SysctlCmd::Physinfo,
            SysctlCmd::SchedId,
            SysctlCmd::Getdomaininfolist,
            SysctlCmd::SchedulerOp,
            SysctlCmd::CpupoolOp,
        ] {
            c.err(cmd.name(), sysctl(cmd), eperm);
        }
        for (what, cmd) in [
            (
                "XENMEM_populate_physmap for Dom0",
                MemoryOp::PopulatePhysmap,
            ),
            (
                "XENMEM_increase_reservation for Dom0",
                MemoryOp::IncreaseReservation,
            ),
            (
                "XENMEM_decrease_reservation for Dom0",
                MemoryOp::DecreaseReservation,
            ),
        ] {
            c.err(what, memory_op(cmd, DOM0), eperm);
        }
        let dom0 = DOM0;
        // SAFETY: Xen reads the domid at the pointer.
        let r = unsafe {
            hypercall2(
                Hypercall::MemoryOp,
                MemoryOp::CurrentReservation as u64,
                &dom0 as *const u16 as u64,
            )
        };
        c.err("XENMEM_current_reservation of Dom0", check(r), eperm);
        c.err(
            "mmu_update with foreigndom Dom0",
            mmu::mmu_update_foreign(&[], DOM0).map_err(|e| e.errno),
            eperm,
        );
        c.err(
            "mmuext_op pin with foreigndom Dom0",
            {
                let op = mmu::ext(hypercall_abi::xen::MmuextCmd::PinL1Table, 1, 0);
                let mut done = 0u32;
                // SAFETY: Xen reads one op and writes `done`.
                check(unsafe {
                    pv_guest_lib::hypercall::hypercall4(
                        Hypercall::MmuextOp,
                        &op as *const _ as u64,
                        1,
                        &mut done as *mut u32 as u64,
                        u64::from(DOM0),
                    )
                })
            },
            eperm,
        );
        c.err(
            "EVTCHNOP_alloc_unbound in Dom0's table",
            events::alloc_unbound(DOM0, DOM0),
            eperm,
        );
        c.err(
            "EVTCHNOP_status of a Dom0 port",
            events::status_of(DOM0, 1),
            eperm,
        );
        c.err("EVTCHNOP_reset of Dom0", events::reset(DOM0), eperm);
        let rs = SchedRemoteShutdown {
            domain_id: DOM0,
            _pad2: 0,
            reason: 0,
        };
        // SAFETY: Xen reads the struct.
        let r = unsafe {
            hypercall2(
                Hypercall::SchedOp,
                SchedOp::RemoteShutdown as u64,
                &rs as *const _ as u64,
            )
        };
        c.err("SCHEDOP_remote_shutdown of Dom0", check(r), eperm);
        let mut buf = [0u8; 16];
        c.err(
            "CONSOLEIO_read",
            pv_guest_lib::xen::console_read(&mut buf),
            eperm,
        );
        c.finish()
    }
}
