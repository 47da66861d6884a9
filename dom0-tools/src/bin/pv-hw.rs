//! Test Dom0: the hardware domain owns the machine's devices, as under Xen.
//!
//! - PCI configuration through CONFIG_ADDRESS/CONFIG_DATA (0xcf8/0xcfc,
//!   with `PHYSDEVOP_set_iopl(1)`): the q35 host bridge 00:00.0 is
//!   8086:29c0, and its PCIEXBAR register gives the ECAM base.
//! - Device memory through `mmu_update` with `foreigndom = DOMID_IO`: the
//!   ECAM page of 00:00.0 mapped uncached reads 8086:29c0 too. A RAM frame
//!   is never DOMID_IO's (`-EBUSY`), the IO-APIC and the local APIC /
//!   MSI window are the hypervisor's (`-EPERM`).
//! - An interrupt as an event channel: `PHYSDEVOP_map_pirq` (GSI 8, the
//!   RTC), `EVTCHNOP_bind_pirq`, `PHYSDEVOP_irq_status_query`; the RTC's
//!   periodic interrupt is received several times, each followed by
//!   reading RTC register C and `PHYSDEVOP_eoi`; closing the port and
//!   `PHYSDEVOP_unmap_pirq` stop it.
//! - Xen's error codes for bad PIRQ operations (unmapped, out of range,
//!   bound twice, unknown domain, bad type, absent PCI function).

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
mod kernel {
    use core::arch::asm;

    use dom0_tools::pvtest::Checks;
    use hypercall_abi::errno::Errno as AbiErrno;
    use hypercall_abi::event_channel::{EvtchnBindPirq, EvtchnOp, BIND_PIRQ_WILL_SHARE};
    use hypercall_abi::hypercall::Hypercall;
    use hypercall_abi::physdev::{
        MapPirqType, PhysdevEoi, PhysdevIrqStatusQuery, PhysdevMapPirq, PhysdevOp,
        PhysdevPciDeviceAdd, PhysdevUnmapPirq, XENIRQSTAT_NEEDS_EOI,
    };
    use hypercall_abi::xen::{MmuUpdate, DOMID_IO, DOMID_SELF};
    use pv_guest_lib::hypercall::hypercall2;
    use pv_guest_lib::{events, frame, mm, mmu, println, time, xen, Errno, StartInfo};

    pv_guest_lib::entry!(main);

    /// Where the test maps device pages.
    const TEST_VA: u64 = 0xffff_c000_0020_0000;
    /// The q35 host bridge's ids (vendor in the low half).
    const Q35_HOST_BRIDGE: u32 = 0x29c0_8086;
    /// The RTC's ISA IRQ and GSI.
    const RTC_GSI: i32 = 8;
    /// Events to receive.
    const WANT_EVENTS: u32 = 3;
    /// P, RW, PWT, PCD.
    const PTE_UC_RW: u64 = 1 | 2 | 8 | 16;

    fn check(r: i64) -> Result<u64, Errno> {
        pv_guest_lib::error::check(r)
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

    fn outl(port: u16, v: u32) {
        // SAFETY: port I/O, emulated by the hypervisor for a PV kernel.
        unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nostack)) };
    }
    fn inl(port: u16) -> u32 {
        let v: u32;
        // SAFETY: as `outl`.
        unsafe { asm!("in eax, dx", in("dx") port, out("eax") v, options(nostack)) };
        v
    }
    fn outb(port: u16, v: u8) {
        // SAFETY: as `outl`.
        unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nostack)) };
    }
    fn inb(port: u16) -> u8 {
        let v: u8;
        // SAFETY: as `outl`.
        unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nostack)) };
        v
    }

    fn pci_read(bus: u8, dev: u8, func: u8, off: u8) -> u32 {
        outl(
            0xcf8,
            0x8000_0000
                | u32::from(bus) << 16
                | u32::from(dev) << 11
                | u32::from(func) << 8
                | u32::from(off & 0xfc),
        );
        inl(0xcfc)
    }

    fn cmos_read(reg: u8) -> u8 {
        outb(0x70, reg);
        inb(0x71)
    }
    fn cmos_write(reg: u8, v: u8) {
        outb(0x70, reg);
        outb(0x71, v);
    }

    /// Writes the L1 entry for `va` with `foreigndom`.
    fn map_with(va: u64, val: u64, foreigndom: u16) -> Result<u32, Errno> {
        let l1 = frame::with_pt(|b| mm::ensure_l1(b, frame::kernel_l4(), va))
            .map_err(|_| Errno::from_abi(AbiErrno::ENOMEM))?;
        let req = MmuUpdate {
            ptr: (l1 << 12) | (((va >> 12) & 511) * 8),
            val,
        };
        mmu::mmu_update_foreign(&[req], foreigndom).map_err(|e| e.errno)
    }

    fn unmap(va: u64) {
        let _ = map_with(va, 0, DOMID_SELF);
        let _ = mmu::invlpg_local(va);
    }

    fn map_pirq(domid: u16, ty: i32, index: i32, pirq: i32) -> Result<i32, Errno> {
        let mut m = PhysdevMapPirq {
            domid,
            r#type: ty,
            index,
            pirq,
            ..Default::default()
        };
        physdev(PhysdevOp::MapPirq, &mut m).map(|_| m.pirq)
    }

    fn bind_pirq(pirq: u32, flags: u32) -> Result<u32, Errno> {
        let mut b = EvtchnBindPirq {
            pirq,
            flags,
            port: 0,
        };
        events::op_raw(u64::from(EvtchnOp::BindPirq.raw()), &mut b).map(|_| b.port)
    }

    fn eoi(pirq: u32) -> Result<u64, Errno> {
        physdev(PhysdevOp::Eoi, &mut PhysdevEoi { irq: pirq })
    }

    fn main(si: &'static StartInfo) -> ! {
        println!("pv-hw: Dom0 reaches PCI config space, device memory and interrupts");
        let mut c = Checks::new("pv-hw");
        c.check(
            "start_info says initial domain",
            si.is_dom0(),
            format_args!("flags {}", si.flags),
        );
        c.ok("PHYSDEVOP_set_iopl(1)", xen::physdev_set_iopl(1));
        c.ok(
            "runtime (shared_info, traps, frames, timer)",
            pv_guest_lib::runtime::init().map(|_| ()),
        );

        // ---- PCI configuration through 0xcf8/0xcfc ----
        let id = pci_read(0, 0, 0, 0);
        c.check(
            "00:00.0 through CONFIG_ADDRESS/CONFIG_DATA is the q35 host bridge",
            id == Q35_HOST_BRIDGE,
            format_args!("{:04x}:{:04x}", id & 0xffff, id >> 16),
        );
        let lo = pci_read(0, 0, 0, 0x60);
        let hi = pci_read(0, 0, 0, 0x64);
        let ecam = (u64::from(hi) << 32) | u64::from(lo & 0xf000_0000);
        c.check(
            "PCIEXBAR enabled",
            lo & 1 == 1 && ecam != 0,
            format_args!("ECAM at {ecam:#x}"),
        );

        // ---- Device memory through DOMID_IO ----
        if c
            .ok(
                "mmu_update DOMID_IO: map the ECAM page of 00:00.0 uncached",
                map_with(TEST_VA, ecam | PTE_UC_RW, DOMID_IO),
            )
            .is_some()
        {
            // SAFETY: TEST_VA now maps the host bridge's config page.
            let v = unsafe { core::ptr::read_volatile(TEST_VA as *const u32) };
            c.check(
                "ECAM reads 00:00.0's vendor and device",
                v == Q35_HOST_BRIDGE,
                format_args!("{:04x}:{:04x}", v & 0xffff, v >> 16),
            );
            // Device 31 function 0 (the LPC bridge) through ECAM equals
            // what CF8/CFC says.
            unmap(TEST_VA);
            let lpc = ecam + (31 << 15);
            if c
                .ok(
                    "mmu_update DOMID_SELF: Dom0 maps the LPC bridge's ECAM page too",
                    map_with(TEST_VA, lpc | PTE_UC_RW, DOMID_SELF),
                )
                .is_some()
            {
                // SAFETY: as above.
                let v = unsafe { core::ptr::read_volatile(TEST_VA as *const u32) };
                let w = pci_read(0, 31, 0, 0);
                c.check(
                    "00:1f.0 reads the same through ECAM and CF8/CFC",
                    v == w && v != 0xffff_ffff,
                    format_args!("{v:#010x}"),
                );
            }
            unmap(TEST_VA);
        }
        let ram_mfn = frame::pfn_to_mfn(1).unwrap_or(0);
        c.err(
            "mmu_update DOMID_IO of a RAM frame",
            map_with(TEST_VA, (ram_mfn << 12) | 3, DOMID_IO),
            AbiErrno::EBUSY,
        );
        c.err(
            "mmu_update DOMID_IO of the IO-APIC (the hypervisor's)",
            map_with(TEST_VA, 0xfec0_0000 | PTE_UC_RW, DOMID_IO),
            AbiErrno::EPERM,
        );
        c.err(
            "mmu_update DOMID_IO of the local APIC / MSI window",
            map_with(TEST_VA, 0xfee0_0000 | PTE_UC_RW, DOMID_IO),
            AbiErrno::EPERM,
        );

        // ---- PCI device reports ----
        let mut add = PhysdevPciDeviceAdd {
            devfn: 31 << 3,
            ..Default::default()
        };
        c.ok(
            "PHYSDEVOP_pci_device_add 00:1f.0",
            physdev(PhysdevOp::PciDeviceAdd, &mut add),
        );
        let mut absent = PhysdevPciDeviceAdd {
            devfn: 30 << 3,
            ..Default::default()
        };
        c.err(
            "PHYSDEVOP_pci_device_add of an absent function",
            physdev(PhysdevOp::PciDeviceAdd, &mut absent),
            AbiErrno::ENODEV,
        );

        // ---- PIRQ errors ----
        let gsi = MapPirqType::Gsi as i32;
        c.err(
            "map_pirq GSI 0",
            map_pirq(DOMID_SELF, gsi, 0, -1),
            AbiErrno::EINVAL,
        );
        c.err(
            "map_pirq GSI 9999",
            map_pirq(DOMID_SELF, gsi, 9999, -1),
            AbiErrno::EINVAL,
        );
        c.err(
            "map_pirq with a bad type",
            map_pirq(DOMID_SELF, 7, RTC_GSI, -1),
            AbiErrno::EINVAL,
        );
        c.err(
            "map_pirq for an unknown domain",
            map_pirq(0x1234, gsi, RTC_GSI, -1),
            AbiErrno::ESRCH,
        );
        c.err(
            "map_pirq MSI-X for an absent PCI function",
            {
                let mut m = PhysdevMapPirq {
                    domid: DOMID_SELF,
                    r#type: MapPirqType::Msi as i32,
                    index: -1,
                    pirq: -1,
                    bus: 0,
                    devfn: 30 << 3,
                    entry_nr: 0,
                    table_base: 0xfe00_0000,
                    ..Default::default()
                };
                physdev(PhysdevOp::MapPirq, &mut m)
            },
            AbiErrno::ENODEV,
        );
        c.err(
            "map_pirq MSI-X for a function without MSI-X (the host bridge)",
            {
                let mut m = PhysdevMapPirq {
                    domid: DOMID_SELF,
                    r#type: MapPirqType::Msi as i32,
                    index: -1,
                    pirq: -1,
                    table_base: 0xfe00_0000,
                    ..Default::default()
                };
                physdev(PhysdevOp::MapPirq, &mut m)
            },
            AbiErrno::ENODEV,
        );
        c.err(
            "bind_pirq of an unmapped PIRQ",
            bind_pirq(20, 0),
            AbiErrno::EPERM,
        );
        c.err(
            "bind_pirq past the domain's PIRQs",
            bind_pirq(100_000, 0),
            AbiErrno::EINVAL,
        );
        c.err("PHYSDEVOP_eoi past the domain's PIRQs", eoi(100_000), AbiErrno::EINVAL);
        c.err(
            "unmap_pirq of an unmapped PIRQ",
            physdev(
                PhysdevOp::UnmapPirq,
                &mut PhysdevUnmapPirq {
                    domid: DOMID_SELF,
                    pirq: 21,
                    ..Default::default()
                },
            ),
            AbiErrno::EINVAL,
        );

        // ---- The RTC's periodic interrupt as an event ----
        let Some(pirq) = c.ok(
            "map_pirq GSI 8 (RTC) as PIRQ 8",
            map_pirq(DOMID_SELF, gsi, RTC_GSI, RTC_GSI),
        ) else {
            c.finish();
        };
        c.check("the PIRQ is the GSI", pirq == RTC_GSI, format_args!("{pirq}"));
        c.check(
            "mapping it again changes nothing",
            map_pirq(DOMID_SELF, gsi, RTC_GSI, -1) == Ok(RTC_GSI),
            format_args!("{:?}", map_pirq(DOMID_SELF, gsi, RTC_GSI, -1)),
        );
        c.err(
            "map_pirq GSI 8 as another PIRQ",
            map_pirq(DOMID_SELF, gsi, RTC_GSI, 40),
            AbiErrno::EEXIST,
        );
        let pirq = pirq as u32;
        let mut q = PhysdevIrqStatusQuery { irq: pirq, flags: 0 };
        c.ok(
            "PHYSDEVOP_irq_status_query",
            physdev(PhysdevOp::IrqStatusQuery, &mut q),
        );
        c.check(
            "irq_status_query says needs EOI",
            q.flags & XENIRQSTAT_NEEDS_EOI != 0,
            format_args!("flags {:#x}", q.flags),
        );
        let Some(port) = c.ok(
            "EVTCHNOP_bind_pirq",
            bind_pirq(pirq, BIND_PIRQ_WILL_SHARE),
        ) else {
            c.finish();
        };
        c.err(
            "EVTCHNOP_bind_pirq again",
            bind_pirq(pirq, 0),
            AbiErrno::EEXIST,
        );
        let st = events::status(port);
        c.check(
            "EVTCHNOP_status says pirq 8",
            st.as_ref().is_ok_and(|s| {
                events::stat(s) == Some(hypercall_abi::event_channel::EvtchnStat::Pirq)
                    && s.pirq() == pirq
            }),
            format_args!("{st:?}"),
        );
        let _ = events::unmask(port);
        events::irq_enable();

        // 1024 Hz periodic interrupt: rate 6, periodic interrupt enable.
        let _ = cmos_read(0x0c);
        cmos_write(0x0a, 0x26);
        let b = cmos_read(0x0b);
        cmos_write(0x0b, b | 0x40);
        let mut got = 0;
        for _ in 0..WANT_EVENTS {
            let deadline = time::now_ns() + 2_000_000_000;
            let w = time::block_until(deadline, || {
                events::take_fired(port) || {
                    let p = events::is_pending(port);
                    if p {
                        events::clear_pending(port);
                    }
                    p
                }
            });
            if w != time::Wake::Ready {
                break;
            }
            got += 1;
            // Acknowledge at the device, then at the hypervisor.
            let _ = cmos_read(0x0c);
            if eoi(pirq).is_err() {
                break;
            }
        }
        c.check(
            "the RTC's periodic interrupt arrived on the event channel, EOI'd each time",
            got == WANT_EVENTS,
            format_args!("{got} of {WANT_EVENTS} events"),
        );
        cmos_write(0x0b, b & !0x40);
        let _ = cmos_read(0x0c);
        c.ok("PHYSDEVOP_eoi", eoi(pirq));
        c.ok("close the PIRQ's port", events::close(port));
        c.ok(
            "PHYSDEVOP_unmap_pirq",
            physdev(
                PhysdevOp::UnmapPirq,
                &mut PhysdevUnmapPirq {
                    domid: DOMID_SELF,
                    pirq: pirq as i32,
                    ..Default::default()
                },
            ),
        );
        c.err(
            "bind_pirq after unmap",
            bind_pirq(pirq, 0),
            AbiErrno::EPERM,
        );
        c.finish();
    }
}
