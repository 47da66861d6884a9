//! Test guest (an unprivileged domain, built by Dom0): every privileged
//! operation is refused with `-EPERM`, as Xen 4.17 (with its default XSM
//! policy) refuses it to a domain that is not the control domain: each
//! domctl and sysctl the toolstack uses, memory_op on another domain,
//! foreign `mmu_update` and pins, event channels allocated in another
//! domain's table or inspected there, SCHEDOP_remote_shutdown, reading
//! the hypervisor console, and the hardware domain's device operations
//! (issue 5): `PHYSDEVOP_map_pirq`/`unmap_pirq`/`setup_gsi`/`apic_read`/
//! `pci_device_add`, `EVTCHNOP_bind_pirq` of a PIRQ it has no access to,
//! and mapping device memory (the IO-APIC page, the ECAM) with
//! `mmu_update` and `DOMID_IO`. Afterwards the guest still runs (the
//! refusals changed nothing) and reports its verdict.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use dom0_tools::pvtest::Checks;
    use hypercall_abi::domctl::{DomctlCmd, XenDomctl};
    use hypercall_abi::errno::Errno as AbiErrno;
    use hypercall_abi::event_channel::{EvtchnBindPirq, EvtchnOp};
    use hypercall_abi::hypercall::Hypercall;
    use hypercall_abi::memory::{MemoryOp, XenMemoryReservation};
    use hypercall_abi::physdev::{
        MapPirqType, PhysdevApic, PhysdevMapPirq, PhysdevOp, PhysdevPciDeviceAdd, PhysdevSetupGsi,
        PhysdevUnmapPirq,
    };
    use hypercall_abi::sched::{SchedOp, SchedRemoteShutdown};
    use hypercall_abi::sysctl::{SysctlCmd, XenSysctl};
    use hypercall_abi::xen::{MmuUpdate, DOMID_IO, DOMID_SELF};
    use pv_guest_lib::hypercall::{hypercall1, hypercall2};
    use pv_guest_lib::{events, frame, mm, mmu, println, Errno, StartInfo};

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
        hardware(&mut c);
        c.finish()
    }

    fn physdev<T: zerocopy::IntoBytes + zerocopy::FromBytes>(
        op: PhysdevOp,
        arg: &mut T,
    ) -> Result<u64, Errno> {
        // SAFETY: Xen reads (and may write back) the command's struct.
        check(unsafe {
            hypercall2(
                Hypercall::PhysdevOp,
                u64::from(op.raw()),
                arg as *mut T as u64,
            )
        })
    }

    /// The hardware domain's device operations, each refused.
    fn hardware(c: &mut Checks) {
        let eperm = AbiErrno::EPERM;
        for (what, ty, index) in [
            ("PHYSDEVOP_map_pirq GSI 8", MapPirqType::Gsi as i32, 8),
            ("PHYSDEVOP_map_pirq MSI", MapPirqType::Msi as i32, -1),
        ] {
            let mut m = PhysdevMapPirq {
                domid: DOMID_SELF,
                r#type: ty,
                index,
                pirq: -1,
                ..Default::default()
            };
            c.err(what, physdev(PhysdevOp::MapPirq, &mut m), eperm);
        }
        c.err(
            "PHYSDEVOP_unmap_pirq",
            physdev(
                PhysdevOp::UnmapPirq,
                &mut PhysdevUnmapPirq {
                    domid: DOMID_SELF,
                    pirq: 8,
                    ..Default::default()
                },
            ),
            eperm,
        );
        c.err(
            "PHYSDEVOP_setup_gsi",
            physdev(
                PhysdevOp::SetupGsi,
                &mut PhysdevSetupGsi {
                    gsi: 20,
                    triggering: 1,
                    polarity: 1,
                    ..Default::default()
                },
            ),
            eperm,
        );
        c.err(
            "PHYSDEVOP_apic_read",
            physdev(
                PhysdevOp::ApicRead,
                &mut PhysdevApic {
                    apic_physbase: 0xfec0_0000,
                    ..Default::default()
                },
            ),
            eperm,
        );
        c.err(
            "PHYSDEVOP_pci_device_add",
            physdev(PhysdevOp::PciDeviceAdd, &mut PhysdevPciDeviceAdd::default()),
            eperm,
        );
        let mut b = EvtchnBindPirq {
            pirq: 8,
            flags: 0,
            port: 0,
        };
        c.err(
            "EVTCHNOP_bind_pirq 8",
            events::op_raw(u64::from(EvtchnOp::BindPirq.raw()), &mut b),
            eperm,
        );
        // Device memory: the L1 entry of a page of our own.
        let Some(_) = c.ok("frame allocator", frame::init().map(|_| ())) else {
            return;
        };
        let va = 0xffff_c000_0030_0000u64;
        let Some(l1) = c.ok(
            "an L1 table of our own",
            frame::with_pt(|p| mm::ensure_l1(p, frame::kernel_l4(), va)),
        ) else {
            return;
        };
        let ptr = (l1 << 12) | (((va >> 12) & 511) * 8);
        for (what, maddr) in [
            ("mmu_update DOMID_IO of the IO-APIC page", 0xfec0_0000u64),
            ("mmu_update DOMID_IO of the PCI ECAM", 0xb000_0000),
            ("mmu_update DOMID_SELF of the PCI ECAM", 0xb000_0000),
        ] {
            let dom = if what.contains("DOMID_IO") {
                DOMID_IO
            } else {
                DOMID_SELF
            };
            let req = MmuUpdate {
                ptr,
                val: maddr | 0x3,
            };
            c.err(
                what,
                mmu::mmu_update_foreign(&[req], dom).map_err(|e| e.errno),
                eperm,
            );
        }
    }
}
