//! The device model of one HVM guest on the metal (what QEMU does for a
//! guest in a Xen system, on Dom0's service loop): the guest's ioreq page
//! mapped into Dom0, Dom0's ends of the per-vCPU event channels, and the
//! devices ([`DeviceModel`]: COM1, the PCI host bridge). The protocol and
//! every check are in [`crate::devmodel::server`] (host-tested); this
//! file only maps, binds and notifies.
//!
//! COM1's output is handed to the toolstack ([`HvmIo::take_output`]),
//! which puts it in the guest's console backlog (`xl console`). An ACPI
//! S5 write to PM1a_CNT or a reset through 0xcf9 shuts the domain down
//! (`SCHEDOP_remote_shutdown`, poweroff or reboot), as QEMU does.

use alloc::vec::Vec;

use super::lifecycle;
use crate::devmodel::ioreq::{DeviceModel, PowerRequest};
use crate::devmodel::server::{IoreqServer, RawIopage};
use crate::xc::{self, foreign::ForeignGuestMemory, foreign::ForeignMap};
use pv_guest_lib::events;

/// Dom0's side of one HVM guest's device model.
pub struct HvmIo {
    domid: u16,
    /// The ioreq page (`HVM_PARAM_IOREQ_PFN`), mapped writable.
    page_map: ForeignMap,
    server: IoreqServer,
    dm: DeviceModel<Vec<u8>>,
    /// The guest's memory, for `data_is_ptr` requests.
    mem: ForeignGuestMemory,
    /// Refusals already reported.
    reported: u64,
    /// The device model shut the domain down since the last look.
    shut_down: bool,
    /// The ISA IRQ lines as last told to the hypervisor (bit N: IRQ N).
    irq_levels: u16,
}

impl HvmIo {
    /// The device model of `domid` with `vcpus` vCPUs, over its ioreq page
    /// `page_map` (one page, mapped).
    pub fn new(domid: u16, page_map: ForeignMap, vcpus: u32) -> HvmIo {
        HvmIo {
            domid,
            page_map,
            server: IoreqServer::new(vcpus),
            dm: DeviceModel::new(Vec::new()),
            mem: ForeignGuestMemory::new(domid),
            reported: 0,
            shut_down: false,
            irq_levels: 0,
        }
    }

    fn page(&self) -> Option<RawIopage> {
        let p = self.page_map.page_ptr(0)?;
        // SAFETY: `page_map` keeps the page mapped writable for as long as
        // `self` lives, and the RawIopage does not outlive this call's
        // borrow of `self` (callers use it within one method).
        Some(unsafe { RawIopage::new(p) })
    }

    /// One step: binds the ports the hypervisor has put in the slots
    /// (`vp_eport`), answers every slot in `STATE_IOREQ_READY` and
    /// notifies its vCPU's port. Returns the requests answered.
    pub fn service(&mut self) -> usize {
        let Some(page) = self.page() else { return 0 };
        for b in self.server.to_bind(&page) {
            if let Some(old) = b.old_local {
                let _ = events::close(old);
            }
            let local = match events::bind_interdomain(self.domid, b.remote) {
                Ok(l) => Some(l),
                Err(e) => {
                    log::warn!(
                        "d{}: device model: binding vCPU {}'s ioreq port {}: {e}",
                        self.domid,
                        b.slot,
                        b.remote
                    );
                    None
                }
            };
            self.server.bound(b.slot, b.remote, local);
        }
        for p in self.server.local_ports() {
            let _ = events::take_fired(p);
        }
        let n = self.server.serve(&page, &mut self.dm, &mut self.mem, |p| {
            let _ = events::send(p);
        });
        self.update_irqs();
        if let Some(req) = self.dm.power_request() {
            // As QEMU in a Xen system: the device model shuts the domain
            // down; the toolstack's reaper applies on_poweroff/on_reboot.
            let reason = match req {
                PowerRequest::Poweroff => lifecycle::reason::POWEROFF,
                PowerRequest::Reboot => lifecycle::reason::REBOOT,
            };
            match xc::remote_shutdown(self.domid, reason) {
                Ok(()) => self.shut_down = true,
                Err(e) => log::warn!(
                    "d{}: device model: {req:?}: shutdown failed: {e}",
                    self.domid
                ),
            }
        }
        let st = *self.server.stats();
        if st.refused > self.reported {
            self.reported = st.refused;
            if let Some(e) = st.last_error {
                log::warn!(
                    "d{}: device model refused an ioreq ({e}); answered with all ones",
                    self.domid
                );
            }
        }
        n
    }

    /// Tells the hypervisor the ISA IRQ lines that changed
    /// (`XEN_DMOP_set_isa_irq_level`): the UART's IRQ 4.
    fn update_irqs(&mut self) {
        let now = self.dm.isa_irq_levels();
        let changed = now ^ self.irq_levels;
        for irq in (0..16u8).filter(|i| changed & (1 << i) != 0) {
            let level = now & (1 << irq) != 0;
            if let Err(e) = xc::set_isa_irq_level(self.domid, irq, level) {
                log::warn!(
                    "d{}: device model: IRQ {irq} level {level}: {e}",
                    self.domid
                );
            }
        }
        self.irq_levels = now;
    }

    /// Whether the device model shut the domain down (ACPI S5, reset)
    /// since the last call: the toolstack's reaper should look.
    pub fn take_shut_down(&mut self) -> bool {
        core::mem::take(&mut self.shut_down)
    }

    /// What the guest wrote to COM1 since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        core::mem::take(self.dm.com1.sink_mut())
    }

    /// The device model's state (`xl save`).
    pub fn save_state(&self) -> Vec<u8> {
        self.dm.save_state()
    }

    /// Loads a saved device model state (`xl restore`), before the guest
    /// first runs.
    pub fn load_state(&mut self, state: &[u8]) -> Result<(), &'static str> {
        self.dm.load_state(state)?;
        self.update_irqs();
        Ok(())
    }

    /// Keyboard input for COM1 (`xl console`); what does not fit its FIFO
    /// is dropped, as on a real line.
    pub fn input(&mut self, bytes: &[u8]) {
        self.dm.com1.receive(bytes);
        self.update_irqs();
    }
}

impl Drop for HvmIo {
    fn drop(&mut self) {
        for p in self.server.take_ports() {
            let _ = events::close(p);
        }
        // The page mapping goes with `page_map`, the memory window with
        // `mem`.
    }
}
