//! The emulated platform of one HVM domain, wired together: the 8259A pair,
//! the PIT, the RTC/CMOS, the IOAPIC, the ACPI PM block, the reset ports,
//! Xen's debug port 0xe9 and one local APIC per vCPU (Xen's `hvm_domain`
//! devices plus `vlapic`s, and the routing in Xen's `hvm/irq.c`).
//!
//! **Owns**: the devices and the wires between them: ISA IRQs to the PIC
//! and the IOAPIC (ISA IRQ 0 is GSI 2, the MADT's interrupt source
//! override), the PIT on IRQ 0, the RTC on IRQ 8, the SCI on IRQ 9; the
//! PIC's INTR to the BSP's LINT0; IOAPIC messages and IPIs to the target
//! LAPICs (physical, logical, shorthands, lowest priority); EOI broadcasts
//! back to the IOAPIC; the INIT/SIPI state of each vCPU. It does not own
//! vCPU registers or the ioreq protocol ([`super::exit`] does).
//! **Trusts**: the caller's clock (`now`, ns, monotonic) and that the
//! domain's vCPUs call in one at a time (the glue holds the domain's
//! platform lock). Nothing from the guest: every port, size, address,
//! value and vCPU index is accepted without panicking; a vCPU index at or
//! beyond [`Platform::vcpus`] owns no LAPIC and gets no interrupts.
//!
//! Which devices exist follows Xen's `emulation_flags`
//! ([`PlatformConfig::emulation`]): all of them for HVM, only the LAPIC
//! (and port 0xe9) for PVH.
//!
//! Every call that can change interrupt state takes an [`Actions`] list
//! and appends what the glue must do: wake a vCPU ([`Action::Kick`]),
//! bring one through INIT/SIPI, power off, reset, or print a debug byte.
//!
//! Port accesses follow the bus: an access whose first port belongs to an
//! emulated device is split into bytes, each going to the device that
//! decodes that port (bytes nobody decodes read 0xff, writes vanish), as
//! the LPC bridge splits a wide cycle to an 8-bit device (QEMU does the
//! same; Xen instead answers such accesses to the PIC, PIT and RTC with
//! all ones). Any other access goes whole to the device model
//! ([`PortResult::Forward`]).

use super::vacpi::{PmConfig, PmRequest, VAcpi};
use super::vioapic::{Deliveries, VIoApic, IOAPIC_BASE};
use super::vlapic::{
    Accepted, Action as LapicAction, ApicFault, DeliveryMode, Ipi, LapicConfig, Shorthand, VLapic,
    MSR_APIC_BASE, MSR_TSC_DEADLINE, MSR_X2APIC_FIRST, MSR_X2APIC_LAST,
};
use super::vpic::VPic;
use super::vpit::VPit;
use super::vrtc::VRtc;
use hypercall_abi::arch_x86::{
    XEN_X86_EMU_IOAPIC, XEN_X86_EMU_LAPIC, XEN_X86_EMU_PIC, XEN_X86_EMU_PIT, XEN_X86_EMU_PM,
    XEN_X86_EMU_RTC,
};
use hypercall_abi::hvm::XEN_HVM_DEBUGCONS_IOPORT;

/// Most vCPUs a platform serves (one LAPIC each, kept inline). The glue
/// refuses HVM domains with more.
pub const MAX_VCPUS: usize = 16;
/// The IOAPIC's id (hvmloader's `IOAPIC_ID`, what the MADT says).
pub const IOAPIC_ID: u8 = 1;
/// System control port A: bit 0 is a fast reset on a 0→1 write, bit 1 the
/// A20 gate (QEMU's `port92`; kept for reads, never applied: A20 is
/// always on).
pub const PORT_SYSCTRL_A: u16 = 0x92;
/// The PIIX reset control register: a write with bit 2 (RST_CPU) resets
/// (the FADT's RESET_REG, value 6).
pub const PORT_RESET_CONTROL: u16 = 0xcf9;
/// The POST code port, used by Linux as an I/O delay; a sink (Xen lets
/// the guest reach hardware here; the glue may do that too).
pub const PORT_POST: u16 = 0x80;
/// The alternative I/O delay port; a sink like [`PORT_POST`].
pub const PORT_DELAY: u16 = 0xed;
/// The ISA IRQ the PIT's channel 0 drives.
pub const ISA_IRQ_PIT: u8 = 0;
/// The RTC's ISA IRQ.
pub const ISA_IRQ_RTC: u8 = 8;
/// The SCI's ISA IRQ (the FADT's SCI_INT).
pub const ISA_IRQ_SCI: u8 = 9;
/// How many actions one call can report.
pub const MAX_ACTIONS: usize = 64;

const RCR_RST_CPU: u8 = 1 << 2;
const RCR_SYS_RST: u8 = 1 << 1;
const SYSCTRL_A_RESET: u8 = 1 << 0;
const SYSCTRL_A_A20: u8 = 1 << 1;

/// The GSI an ISA IRQ arrives at on the IOAPIC (Xen's
/// `hvm_isa_irq_to_gsi`: IRQ 0 is overridden to GSI 2).
pub fn isa_irq_to_gsi(irq: u8) -> usize {
    if irq == 0 {
        2
    } else {
        usize::from(irq)
    }
}

/// Something the glue must do after a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// This vCPU has an interrupt (or NMI) pending: wake it if it blocked
    /// in HLT, or make it exit so the interrupt gets injected.
    Kick(usize),
    /// INIT reached this vCPU: its LAPIC is already reset; the glue stops
    /// it (it may be running elsewhere), resets its registers to the INIT
    /// state and keeps it off the CPU until [`Action::Sipi`].
    Init(usize),
    /// A start-up IPI for a vCPU waiting for one: start it in real mode at
    /// `vector << 12` (CS selector `vector << 8`, base `vector << 12`,
    /// IP 0).
    Sipi {
        /// The vCPU.
        vcpu: usize,
        /// The start page.
        vector: u8,
    },
    /// ACPI S5, or every vCPU went down: power the domain off
    /// (`SHUTDOWN_poweroff`).
    PowerOff,
    /// A reset through port 0x92 or 0xcf9 (`SHUTDOWN_reboot`).
    Reset,
    /// A byte written to Xen's debug port 0xe9 (Xen prints a line per
    /// newline, prefixed with the domain).
    DebugOut(u8),
}

/// The actions of one or more calls, in order; a repeated
/// [`Action::Kick`], [`Action::PowerOff`] or [`Action::Reset`] is kept
/// once. Holds [`MAX_ACTIONS`]; beyond that further actions are dropped,
/// which no single call reaches (callers that loop, like string I/O, stop
/// while [`Actions::room`] is low).
#[derive(Clone, Copy, Debug)]
pub struct Actions {
    items: [Action; MAX_ACTIONS],
    len: usize,
}

impl Default for Actions {
    fn default() -> Self {
        Self::new()
    }
}

impl Actions {
    /// Room the worst single platform call needs: a kick and an INIT for
    /// every vCPU, and a few more.
    pub const ONE_CALL: usize = 2 * MAX_VCPUS + 4;

    /// Empty.
    pub const fn new() -> Self {
        Self {
            items: [Action::PowerOff; MAX_ACTIONS],
            len: 0,
        }
    }

    /// Appends `a` (see the type's documentation for duplicates).
    pub fn push(&mut self, a: Action) {
        let dedup = matches!(a, Action::Kick(_) | Action::PowerOff | Action::Reset);
        if dedup && self.iter().any(|x| *x == a) {
            return;
        }
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = a;
            self.len += 1;
        }
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.len
    }

    /// None yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Free slots.
    pub fn room(&self) -> usize {
        MAX_ACTIONS - self.len
    }

    /// The actions in order.
    pub fn iter(&self) -> impl Iterator<Item = &Action> {
        self.items[..self.len].iter()
    }

    /// Forgets them all.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Whether `a` is among them.
    pub fn contains(&self, a: &Action) -> bool {
        self.iter().any(|x| x == a)
    }
}

/// The answer to a port access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortResult {
    /// Emulated here; for an IN, the value (the access's low bytes).
    Handled(u32),
    /// Not emulated here: send the access to the device model.
    Forward,
}

/// The answer to an MMIO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioResult {
    /// Emulated here; for a read, the value.
    Handled(u64),
    /// Not emulated here: send the access to the device model.
    Forward,
}

/// Per-domain parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlatformConfig {
    /// vCPUs (1..=[`MAX_VCPUS`]; clamped into that range). vCPU 0 is the
    /// BSP; vCPU `n` has APIC id `2n` (as `hvm::cpuid` and the MADT).
    pub vcpus: usize,
    /// Wall clock at creation, seconds since 1970 (the RTC's time).
    pub wall_secs: u64,
    /// RAM below 4 GiB and above, bytes (the CMOS memory-size bytes).
    pub ram_below_4g: u64,
    /// RAM above 4 GiB, bytes.
    pub ram_above_4g: u64,
    /// The LAPIC timer's clocks; `tsc_hz` is the guest's TSC rate, and
    /// `tsc_deadline` must agree with the domain's CPUID (leaf 1
    /// ECX[24]): without it IA32_TSC_DEADLINE #GPs.
    pub lapic: LapicConfig,
    /// The ACPI PM ports.
    pub pm: PmConfig,
    /// Which devices exist: Xen's `emulation_flags` (`XEN_X86_EMU_*`)
    /// from `createdomain`. The LAPIC always does (Xen requires it);
    /// without `PIC` the legacy chipset ports (0x80, 0x92, 0xcf9, 0xed)
    /// go too; port 0xe9 is always there. HPET, VGA and IOMMU are not
    /// emulated here whatever the flags say (the device model may).
    pub emulation: u32,
}

impl PlatformConfig {
    /// What an HVM guest has (libxl's flags, less what Oxen leaves to
    /// the device model or does not offer).
    pub const EMU_HVM: u32 = XEN_X86_EMU_LAPIC
        | XEN_X86_EMU_PM
        | XEN_X86_EMU_RTC
        | XEN_X86_EMU_IOAPIC
        | XEN_X86_EMU_PIC
        | XEN_X86_EMU_PIT;
    /// A PVH guest: a LAPIC and nothing else (libxl adds the IOAPIC only
    /// when asked).
    pub const EMU_PVH: u32 = XEN_X86_EMU_LAPIC;
}

impl Default for PlatformConfig {
    fn default() -> Self {
        Self {
            vcpus: 1,
            wall_secs: 0,
            ram_below_4g: 0,
            ram_above_4g: 0,
            lapic: LapicConfig::default(),
            pm: PmConfig::XEN_V1,
            emulation: Self::EMU_HVM,
        }
    }
}

/// The platform of one HVM domain.
#[derive(Clone, Debug)]
pub struct Platform {
    nr: usize,
    lapic_cfg: LapicConfig,
    pic: VPic,
    pit: VPit,
    rtc: VRtc,
    ioapic: VIoApic,
    acpi: VAcpi,
    lapics: [VLapic; MAX_VCPUS],
    /// Per-vCPU bits: NMI pending.
    nmi: u32,
    /// Per-vCPU bits: an ExtINT message arrived (take the vector from the
    /// PIC).
    extint: u32,
    /// Per-vCPU bits: after INIT, waiting for a start-up IPI.
    waiting_sipi: u32,
    /// Per-vCPU bits: running (not waiting for SIPI, not down).
    online: u32,
    /// ISA IRQ levels as driven through [`Platform::set_isa_irq_level`].
    isa_lines: u16,
    /// Whether the PIC's INTR reached the BSP at the last check.
    pic_to_bsp: bool,
    port92: u8,
    rcr: u8,
    /// `XEN_X86_EMU_*`.
    emu: u32,
}

fn bit(vcpu: usize) -> u32 {
    1u32.checked_shl(vcpu as u32).unwrap_or(0)
}

impl Platform {
    /// The platform at power-on, `now`: vCPU 0 running, the others waiting
    /// for SIPI; every device in its reset state.
    pub fn new(cfg: PlatformConfig, now: u64) -> Self {
        let nr = cfg.vcpus.clamp(1, MAX_VCPUS);
        let mut rtc = VRtc::new(cfg.wall_secs, now);
        rtc.set_memory_sizes(cfg.ram_below_4g, cfg.ram_above_4g);
        let lapics = core::array::from_fn(|i| {
            VLapic::new(
                super::cpuid::HvmCpuidPolicy::apic_id(i as u32),
                i == 0,
                cfg.lapic,
            )
        });
        let all = if nr >= 32 { u32::MAX } else { (1 << nr) - 1 };
        Self {
            nr,
            lapic_cfg: cfg.lapic,
            pic: VPic::new(),
            pit: VPit::new(),
            rtc,
            ioapic: VIoApic::new(IOAPIC_ID),
            acpi: VAcpi::new(cfg.pm, now),
            lapics,
            nmi: 0,
            extint: 0,
            waiting_sipi: all & !1,
            online: 1,
            isa_lines: 0,
            pic_to_bsp: false,
            port92: SYSCTRL_A_A20,
            rcr: 0,
            emu: cfg.emulation | XEN_X86_EMU_LAPIC,
        }
    }

    /// Whether the domain has the device `flag` (`XEN_X86_EMU_*`).
    pub fn emulates(&self, flag: u32) -> bool {
        self.emu & flag == flag
    }

    /// How many vCPUs.
    pub fn vcpus(&self) -> usize {
        self.nr
    }

    /// vCPU `vcpu`'s LAPIC, if it exists.
    pub fn lapic(&self, vcpu: usize) -> Option<&VLapic> {
        self.lapics[..self.nr].get(vcpu)
    }

    /// Loads the saved PIC pair (Xen's `PIC` records 0 and 1); `false`
    /// (nothing changed) if refused.
    pub fn restore_pic(
        &mut self,
        master: &[u8; super::vpic::PIC_SAVE_LEN],
        slave: &[u8; super::vpic::PIC_SAVE_LEN],
    ) -> bool {
        self.pic.restore(master, slave)
    }

    /// The RTC.
    pub fn rtc(&self) -> &VRtc {
        &self.rtc
    }

    /// The ACPI PM block (the PM timer).
    pub fn acpi(&self) -> &VAcpi {
        &self.acpi
    }

    /// Loads the saved PM timer (Xen's `PMTIMER` record) at `now`.
    pub fn restore_pmtimer(&mut self, b: &[u8; super::vacpi::PMTIMER_SAVE_LEN], now: u64) {
        self.acpi.restore(b, now);
    }

    /// Loads the saved PIT (Xen's `PIT` record) at `now`; `false` (nothing
    /// changed) if refused.
    pub fn restore_pit(&mut self, b: &[u8; super::vpit::PIT_SAVE_LEN], now: u64) -> bool {
        self.pit.restore(b, now)
    }

    /// Loads the saved RTC (Xen's `RTC` record) at `now`, the host's wall
    /// clock reading `host_secs`.
    pub fn restore_rtc(&mut self, b: &[u8; super::vrtc::RTC_SAVE_LEN], now: u64, host_secs: i64) {
        self.rtc.restore(b, now, host_secs);
    }

    /// Loads the saved IOAPIC (Xen's `IOAPIC` record); `false` (nothing
    /// changed) if refused.
    pub fn restore_ioapic(&mut self, b: &[u8; super::vioapic::IOAPIC_SAVE_LEN]) -> bool {
        self.ioapic.restore(b)
    }

    /// vCPU `vcpu`'s LAPIC, to load saved state into.
    pub fn lapic_mut(&mut self, vcpu: usize) -> Option<&mut VLapic> {
        self.lapics[..self.nr].get_mut(vcpu)
    }

    /// The PIC pair.
    pub fn pic(&self) -> &VPic {
        &self.pic
    }

    /// The PIT.
    pub fn pit(&self) -> &VPit {
        &self.pit
    }

    /// The IOAPIC.
    pub fn ioapic(&self) -> &VIoApic {
        &self.ioapic
    }

    /// The RTC/CMOS (e.g. for `set_wall_clock`).
    pub fn rtc_mut(&mut self) -> &mut VRtc {
        &mut self.rtc
    }

    /// Whether vCPU `vcpu` runs (started and not down).
    pub fn is_online(&self, vcpu: usize) -> bool {
        vcpu < self.nr && self.online & bit(vcpu) != 0
    }

    /// Whether vCPU `vcpu` waits for a start-up IPI.
    pub fn is_waiting_for_sipi(&self, vcpu: usize) -> bool {
        vcpu < self.nr && self.waiting_sipi & bit(vcpu) != 0
    }

    /// vCPU `vcpu` went down (HLT with interrupts off, Xen's
    /// `hvm_vcpu_down`). When no vCPU is left running, the domain powers
    /// off.
    pub fn vcpu_down(&mut self, vcpu: usize, acts: &mut Actions) {
        if vcpu >= self.nr {
            return;
        }
        self.online &= !bit(vcpu);
        if self.online == 0 {
            acts.push(Action::PowerOff);
        }
    }

    // ----- ports ------------------------------------------------------

    /// Whether an emulated device decodes `port`.
    pub fn owns_port(&self, port: u16) -> bool {
        let legacy = self.emulates(XEN_X86_EMU_PIC);
        port == XEN_HVM_DEBUGCONS_IOPORT
            || (legacy && VPic::handles(port))
            || (self.emulates(XEN_X86_EMU_PIT) && VPit::handles(port))
            || (self.emulates(XEN_X86_EMU_RTC) && VRtc::handles(port))
            || (self.emulates(XEN_X86_EMU_PM) && self.acpi.handles(port))
            || (legacy
                && matches!(
                    port,
                    PORT_SYSCTRL_A | PORT_RESET_CONTROL | PORT_POST | PORT_DELAY
                ))
    }

    /// A byte from an owned port (the devices are tried in the order
    /// [`Platform::owns_port`] checks them; their ports do not overlap).
    fn read_byte(&mut self, port: u16, now: u64) -> u8 {
        if VPic::handles(port) {
            self.pic.read(port)
        } else if VPit::handles(port) {
            self.pit.read(port, now)
        } else if VRtc::handles(port) {
            self.rtc.read(port, now)
        } else if self.acpi.handles(port) {
            self.acpi.read(port, now)
        } else {
            match port {
                PORT_SYSCTRL_A => self.port92,
                PORT_RESET_CONTROL => self.rcr,
                // Xen's hvm_print_line reads as all ones; so do the sinks.
                _ => 0xff,
            }
        }
    }

    fn write_byte(&mut self, port: u16, val: u8, now: u64, acts: &mut Actions) {
        if VPic::handles(port) {
            self.pic.write(port, val);
        } else if VPit::handles(port) {
            self.pit.write(port, val, now);
        } else if VRtc::handles(port) {
            self.rtc.write(port, val, now);
        } else if self.acpi.handles(port) {
            if let Some(PmRequest::PowerOff) = self.acpi.write(port, val, now) {
                acts.push(Action::PowerOff);
            }
        } else {
            match port {
                PORT_SYSCTRL_A => {
                    if val & SYSCTRL_A_RESET != 0 && self.port92 & SYSCTRL_A_RESET == 0 {
                        acts.push(Action::Reset);
                    }
                    self.port92 = val;
                }
                PORT_RESET_CONTROL => {
                    if val & RCR_RST_CPU != 0 {
                        acts.push(Action::Reset);
                    }
                    self.rcr = val & RCR_SYS_RST;
                }
                XEN_HVM_DEBUGCONS_IOPORT => acts.push(Action::DebugOut(val)),
                _ => {} // POST/delay sinks.
            }
        }
    }

    /// A guest `in` of `size` (1, 2 or 4) bytes from `port` at `now`.
    /// Other sizes read all ones and touch nothing.
    pub fn port_in(&mut self, port: u16, size: u8, now: u64, acts: &mut Actions) -> PortResult {
        if !matches!(size, 1 | 2 | 4) {
            return PortResult::Handled(u32::MAX);
        }
        if !self.owns_port(port) {
            return PortResult::Forward;
        }
        let mut v = 0u32;
        for i in 0..u16::from(size) {
            let p = port.wrapping_add(i);
            let b = if self.owns_port(p) {
                self.read_byte(p, now)
            } else {
                0xff
            };
            v |= u32::from(b) << (8 * i);
        }
        self.sync_lines(now, acts);
        PortResult::Handled(v)
    }

    /// A guest `out` of the low `size` (1, 2 or 4) bytes of `val` to
    /// `port` at `now`. Other sizes are ignored.
    pub fn port_out(
        &mut self,
        port: u16,
        size: u8,
        val: u32,
        now: u64,
        acts: &mut Actions,
    ) -> PortResult {
        if !matches!(size, 1 | 2 | 4) {
            return PortResult::Handled(0);
        }
        if !self.owns_port(port) {
            return PortResult::Forward;
        }
        for i in 0..u16::from(size) {
            let p = port.wrapping_add(i);
            if self.owns_port(p) {
                self.write_byte(p, (val >> (8 * i)) as u8, now, acts);
            }
        }
        self.sync_lines(now, acts);
        PortResult::Handled(0)
    }

    // ----- MMIO -------------------------------------------------------

    fn lapic_page(&self, vcpu: usize, gpa: u64) -> bool {
        self.lapic(vcpu)
            .and_then(VLapic::mmio_base)
            .is_some_and(|b| gpa & !0xfff == b)
    }

    fn ioapic_page(&self, gpa: u64) -> bool {
        self.emulates(XEN_X86_EMU_IOAPIC) && gpa & !0xfff == IOAPIC_BASE
    }

    /// Whether an access by `vcpu` at `gpa` is emulated here: its own
    /// LAPIC page (wherever IA32_APIC_BASE puts it, while in xAPIC mode)
    /// or the IOAPIC page.
    pub fn claims_mmio(&self, vcpu: usize, gpa: u64) -> bool {
        self.lapic_page(vcpu, gpa) || self.ioapic_page(gpa)
    }

    /// The 32-bit LAPIC register containing page offset `off` (LAPIC
    /// registers are 16-byte aligned; other dwords read 0).
    fn lapic_dword(&self, vcpu: usize, off: u64, now: u64) -> u32 {
        self.lapics[vcpu].mmio_read(off & !3, now)
    }

    /// A guest read of `size` (1, 2, 4 or 8) bytes at `gpa` by `vcpu` at
    /// `now`. LAPIC registers may be read in parts, as Xen allows; bytes
    /// past the page or in no register read 0. Other sizes read 0.
    pub fn mmio_read(&mut self, vcpu: usize, gpa: u64, size: u8, now: u64) -> MmioResult {
        if !self.claims_mmio(vcpu, gpa) {
            return MmioResult::Forward;
        }
        if !matches!(size, 1 | 2 | 4 | 8) {
            return MmioResult::Handled(0);
        }
        let off = gpa & 0xfff;
        let mut v = 0u64;
        for i in 0..u64::from(size) {
            let o = off + i;
            if o >= 0x1000 {
                break;
            }
            let dword = if self.lapic_page(vcpu, gpa) {
                self.lapic_dword(vcpu, o, now)
            } else {
                self.ioapic.mmio_read(o & !3)
            };
            v |= u64::from((dword >> (8 * (o & 3))) as u8) << (8 * i);
        }
        MmioResult::Handled(v)
    }

    /// A guest write of the low `size` (1, 2, 4 or 8) bytes of `val` at
    /// `gpa` by `vcpu` at `now`. A LAPIC write narrower than its register
    /// is merged into the register's current value (Xen's
    /// `vlapic_mmio_write`); wider or misaligned ones go dword by dword.
    /// IOAPIC writes take the value whatever the size (Xen's
    /// `vioapic_write`), at dword-aligned offsets only.
    pub fn mmio_write(
        &mut self,
        vcpu: usize,
        gpa: u64,
        size: u8,
        val: u64,
        now: u64,
        acts: &mut Actions,
    ) -> MmioResult {
        if !self.claims_mmio(vcpu, gpa) {
            return MmioResult::Forward;
        }
        if !matches!(size, 1 | 2 | 4 | 8) {
            return MmioResult::Handled(0);
        }
        let off = gpa & 0xfff;
        if self.lapic_page(vcpu, gpa) {
            let end = (off + u64::from(size)).min(0x1000);
            let mut dw = off & !3;
            while dw < end {
                let mut cur = self.lapic_dword(vcpu, dw, now).to_le_bytes();
                for (i, b) in cur.iter_mut().enumerate() {
                    let o = dw + i as u64;
                    if (off..end).contains(&o) {
                        *b = (val >> (8 * (o - off))) as u8;
                    }
                }
                let a = self.lapics[vcpu].mmio_write(dw, u32::from_le_bytes(cur), now);
                self.lapic_action(vcpu, a, acts);
                dw += 4;
            }
        } else if off & 3 == 0 {
            let d = self.ioapic.mmio_write(off, val as u32);
            self.route_ioapic(&d, acts);
        }
        self.sync_lines(now, acts);
        MmioResult::Handled(0)
    }

    // ----- MSRs -------------------------------------------------------

    /// RDMSR of IA32_APIC_BASE, IA32_TSC_DEADLINE or an x2APIC register by
    /// `vcpu` at `now` (the MSRs `hvm::msr` answers with
    /// `MsrAction::Vlapic`); `Err` means #GP.
    pub fn msr_read(&self, vcpu: usize, msr: u32, now: u64) -> Result<u64, ApicFault> {
        let a = self.lapic(vcpu).ok_or(ApicFault::Gp)?;
        match msr {
            MSR_APIC_BASE => Ok(a.apic_base()),
            MSR_TSC_DEADLINE if self.lapic_cfg.tsc_deadline => Ok(a.read_tsc_deadline()),
            MSR_X2APIC_FIRST..=MSR_X2APIC_LAST => a.read_msr(msr, now),
            _ => Err(ApicFault::Gp),
        }
    }

    /// WRMSR of the same MSRs by `vcpu` at `now`, the guest's TSC reading
    /// `now_tsc` (for IA32_TSC_DEADLINE); `Err` means #GP.
    pub fn msr_write(
        &mut self,
        vcpu: usize,
        msr: u32,
        val: u64,
        now: u64,
        now_tsc: u64,
        acts: &mut Actions,
    ) -> Result<(), ApicFault> {
        if vcpu >= self.nr {
            return Err(ApicFault::Gp);
        }
        let r = match msr {
            MSR_APIC_BASE => self.lapics[vcpu].write_apic_base(val),
            MSR_TSC_DEADLINE if self.lapic_cfg.tsc_deadline => {
                self.lapics[vcpu].write_tsc_deadline(val, now, now_tsc);
                Ok(())
            }
            MSR_X2APIC_FIRST..=MSR_X2APIC_LAST => self.lapics[vcpu]
                .write_msr(msr, val, now)
                .map(|a| self.lapic_action(vcpu, a, acts)),
            _ => Err(ApicFault::Gp),
        };
        self.sync_lines(now, acts);
        r
    }

    // ----- interrupt lines ---------------------------------------------

    /// Drives ISA IRQ `irq` (0–15; others ignored) to `level` (true =
    /// asserted): the PIC input and the IOAPIC pin it is wired to, those
    /// of them the domain has (the device model's
    /// `XEN_DMOP_set_isa_irq_level` lands here too).
    pub fn set_isa_irq_level(&mut self, irq: u8, level: bool, acts: &mut Actions) {
        if irq >= 16 {
            return;
        }
        if level {
            self.isa_lines |= 1 << irq;
        } else {
            self.isa_lines &= !(1 << irq);
        }
        if self.emulates(XEN_X86_EMU_PIC) {
            self.pic.set_irq(irq, level);
        }
        if self.emulates(XEN_X86_EMU_IOAPIC) {
            let d = self.ioapic.set_irq(isa_irq_to_gsi(irq), level);
            self.route_ioapic(&d, acts);
        }
        self.sync_pic(acts);
    }

    /// An edge on ISA IRQ `irq`: assert, then deassert.
    pub fn pulse_isa_irq(&mut self, irq: u8, acts: &mut Actions) {
        self.set_isa_irq_level(irq, true, acts);
        self.set_isa_irq_level(irq, false, acts);
    }

    /// Drives IOAPIC pin `gsi` alone (a GSI above the ISA range, e.g. PCI
    /// INTx from the device model); pins that don't exist are ignored.
    pub fn set_gsi_level(&mut self, gsi: usize, level: bool, acts: &mut Actions) {
        if !self.emulates(XEN_X86_EMU_IOAPIC) {
            return;
        }
        let d = self.ioapic.set_irq(gsi, level);
        self.route_ioapic(&d, acts);
    }

    /// A fixed, edge-triggered `vector` straight into `vcpu`'s LAPIC: the
    /// per-vCPU event-channel upcall vector
    /// (`HVMOP_set_evtchn_upcall_vector`, which Xen raises with
    /// `vlapic_set_irq`). Vectors below 16 are refused by the LAPIC.
    pub fn raise_lapic_vector(&mut self, vcpu: usize, vector: u8, acts: &mut Actions) {
        if vcpu >= self.nr {
            return;
        }
        let acc = self.lapics[vcpu].deliver(DeliveryMode::Fixed, vector, false);
        self.accepted(vcpu, acc, acts);
    }

    /// An MSI (the device model's `XEN_DMOP_inject_msi`): `addr` in the
    /// 0xfeexxxxx window (destination id bits 19:12, destination mode bit
    /// 2), `data` with the vector (7:0), delivery mode (10:8) and trigger
    /// mode (15), as the Intel SDM vol. 3 §11.11 lays them out. Addresses
    /// outside the window are dropped.
    pub fn deliver_msi(&mut self, addr: u64, data: u32, acts: &mut Actions) {
        if addr >> 20 != 0xfee {
            return;
        }
        let dest = ((addr >> 12) & 0xff) as u32;
        let msg = Ipi {
            mode: DeliveryMode::from_bits((data >> 8) as u8),
            vector: data as u8,
            level: data & (1 << 15) != 0,
            logical: addr & (1 << 2) != 0,
            dest: if dest == 0xff { u32::MAX } else { dest },
            shorthand: Shorthand::None,
        };
        self.deliver_message(None, &msg, acts);
    }

    /// Sets an ISA line only when it changes (level sources: RTC, SCI).
    fn follow_isa_line(&mut self, irq: u8, level: bool, acts: &mut Actions) {
        if (self.isa_lines & (1 << irq) != 0) != level {
            self.set_isa_irq_level(irq, level, acts);
        }
    }

    /// After device state changed: the RTC and SCI lines follow their
    /// devices, and a new PIC request wakes the BSP.
    fn sync_lines(&mut self, now: u64, acts: &mut Actions) {
        if self.emulates(XEN_X86_EMU_RTC) {
            let rtc = self.rtc.irq_asserted(now);
            self.follow_isa_line(ISA_IRQ_RTC, rtc, acts);
        }
        if self.emulates(XEN_X86_EMU_PM) {
            let sci = self.acpi.sci(now);
            self.follow_isa_line(ISA_IRQ_SCI, sci, acts);
        }
        self.sync_pic(acts);
    }

    /// Whether the PIC's INTR reaches `vcpu`: the BSP while its LAPIC
    /// takes PIC interrupts (LINT0 ExtINT, or the LAPIC disabled; Xen's
    /// `vlapic_accept_pic_intr` with `i8259_target` the BSP), or a vCPU an
    /// ExtINT message was sent to.
    fn pic_reaches(&self, vcpu: usize) -> bool {
        self.emulates(XEN_X86_EMU_PIC)
            && ((vcpu == 0 && self.lapics[0].accepts_pic_interrupts())
                || self.extint & bit(vcpu) != 0)
    }

    fn sync_pic(&mut self, acts: &mut Actions) {
        let now = self.pic.has_interrupt() && self.pic_reaches(0);
        if now && !self.pic_to_bsp {
            acts.push(Action::Kick(0));
        }
        self.pic_to_bsp = now;
    }

    // ----- message routing ----------------------------------------------

    fn route_ioapic(&mut self, d: &Deliveries, acts: &mut Actions) {
        for m in d.iter() {
            // An 8-bit broadcast is a broadcast in x2APIC mode too.
            let dest = if m.dest == 0xff {
                u32::MAX
            } else {
                u32::from(m.dest)
            };
            let msg = Ipi {
                mode: m.mode,
                vector: m.vector,
                level: m.level,
                logical: m.logical,
                dest,
                shorthand: Shorthand::None,
            };
            self.deliver_message(None, &msg, acts);
        }
    }

    fn lapic_action(&mut self, sender: usize, a: LapicAction, acts: &mut Actions) {
        match a {
            LapicAction::None => {}
            LapicAction::Ipi(ipi) => self.deliver_message(Some(sender), &ipi, acts),
            LapicAction::EoiBroadcast(v) => {
                let d = self.ioapic.eoi(v);
                self.route_ioapic(&d, acts);
            }
        }
    }

    /// Delivers an interrupt message (an IPI from `sender`, or an IOAPIC
    /// message when `sender` is `None`) to every LAPIC it names, or for
    /// lowest priority to the named one with the lowest PPR (the first on
    /// a tie; Xen's `vlapic_lowest_prio`).
    fn deliver_message(&mut self, sender: Option<usize>, msg: &Ipi, acts: &mut Actions) {
        let targets =
            (0..self.nr).filter(|&t| self.lapics[t].is_ipi_target(msg, sender == Some(t)));
        if msg.mode == DeliveryMode::LowestPriority {
            let best = targets
                .filter(|&t| self.lapics[t].enabled())
                .min_by_key(|&t| self.lapics[t].ppr());
            if let Some(t) = best {
                let acc = self.lapics[t].deliver(msg.mode, msg.vector, msg.level);
                self.accepted(t, acc, acts);
            }
            return;
        }
        let mut set = 0u32;
        for t in targets {
            set |= bit(t);
        }
        for t in 0..self.nr {
            if set & bit(t) != 0 {
                let acc = self.lapics[t].deliver(msg.mode, msg.vector, msg.level);
                self.accepted(t, acc, acts);
            }
        }
    }

    /// What a LAPIC's acceptance means for its vCPU.
    fn accepted(&mut self, t: usize, acc: Accepted, acts: &mut Actions) {
        let b = bit(t);
        match acc {
            Accepted::Pending => acts.push(Action::Kick(t)),
            Accepted::Nmi => {
                self.nmi |= b;
                acts.push(Action::Kick(t));
            }
            Accepted::ExtInt => {
                self.extint |= b;
                acts.push(Action::Kick(t));
            }
            Accepted::Init => {
                self.lapics[t].init();
                self.nmi &= !b;
                self.extint &= !b;
                self.online &= !b;
                self.waiting_sipi |= b;
                acts.push(Action::Init(t));
            }
            Accepted::StartUp(vector) => {
                if self.waiting_sipi & b != 0 {
                    self.waiting_sipi &= !b;
                    self.online |= b;
                    acts.push(Action::Sipi { vcpu: t, vector });
                }
            }
            Accepted::Smi | Accepted::Ignored => {}
        }
    }

    // ----- time -------------------------------------------------------

    /// Runs the platform's clocks up to `now`: PIT channel 0 edges pulse
    /// ISA IRQ 0 (missed periods coalesce into one edge), the RTC and the
    /// ACPI PM timer update IRQ 8 and the SCI, expired LAPIC timers put
    /// their vector in IRR. Returns when something will next happen (the
    /// earliest PIT, RTC, PM timer or LAPIC deadline), for the glue's
    /// timer. Call it before every VM entry, and when that timer fires.
    pub fn advance(&mut self, now: u64, acts: &mut Actions) -> Option<u64> {
        if self.emulates(XEN_X86_EMU_PIT) && self.pit.irq0_edges(now) > 0 {
            self.pulse_isa_irq(ISA_IRQ_PIT, acts);
        }
        for t in 0..self.nr {
            if self.lapics[t].poll_timer(now) && self.lapics[t].pending_vector().is_some() {
                acts.push(Action::Kick(t));
            }
        }
        self.sync_lines(now, acts);
        let mut next = None;
        let mut consider = |d: Option<u64>| {
            if let Some(d) = d {
                next = Some(next.map_or(d, |n: u64| n.min(d)));
            }
        };
        if self.emulates(XEN_X86_EMU_PIT) {
            consider(self.pit.next_irq0_deadline());
        }
        if self.emulates(XEN_X86_EMU_RTC) {
            consider(self.rtc.next_event_ns(now));
        }
        if self.emulates(XEN_X86_EMU_PM) {
            consider(self.acpi.next_deadline());
        }
        for a in &self.lapics[..self.nr] {
            consider(a.timer_deadline());
        }
        next
    }

    /// The toolstack's power button (`xl shutdown` of an HVM guest): sets
    /// PWRBTN_STS, raising the SCI if the guest enabled it.
    pub fn press_power_button(&mut self, now: u64, acts: &mut Actions) {
        self.acpi.press_power_button();
        self.sync_lines(now, acts);
    }

    // ----- interrupt delivery to vCPUs ---------------------------------

    /// Whether an NMI waits for `vcpu`.
    pub fn nmi_pending(&self, vcpu: usize) -> bool {
        vcpu < self.nr && self.nmi & bit(vcpu) != 0
    }

    /// Takes `vcpu`'s pending NMI (the glue injects it).
    pub fn take_nmi(&mut self, vcpu: usize) -> bool {
        let p = self.nmi_pending(vcpu);
        self.nmi &= !bit(vcpu);
        p
    }

    /// The vector `vcpu` would take if it accepted an external interrupt
    /// now. As Xen's `hvm_vcpu_has_pending_irq` (and the hardware, where
    /// ExtINT bypasses the LAPIC's priorities), the PIC comes first when
    /// it reaches the vCPU; then the LAPIC's highest IRR vector above PPR.
    pub fn pending_interrupt(&self, vcpu: usize) -> Option<u8> {
        let a = self.lapic(vcpu)?;
        if self.pic_reaches(vcpu) {
            if let Some(v) = self.pic.pending_vector() {
                return Some(v);
            }
        }
        a.pending_vector()
    }

    /// `vcpu` takes `vector`, which [`Platform::pending_interrupt`] named:
    /// the PIC's INTA (IRR → ISR there), or the LAPIC's IRR → ISR. Returns
    /// false, changing nothing, if `vector` is no longer what it would
    /// take.
    pub fn ack_interrupt(&mut self, vcpu: usize, vector: u8) -> bool {
        if vcpu >= self.nr {
            return false;
        }
        if self.pic_reaches(vcpu) && self.pic.pending_vector() == Some(vector) {
            self.pic.ack();
            self.extint &= !bit(vcpu);
            self.pic_to_bsp = self.pic.has_interrupt() && self.pic_reaches(0);
            return true;
        }
        if self.lapics[vcpu].pending_vector() == Some(vector) {
            return self.lapics[vcpu].ack().is_some();
        }
        false
    }

    /// [`Platform::pending_interrupt`] and [`Platform::ack_interrupt`] in
    /// one: the vector to inject now, if any.
    pub fn take_interrupt(&mut self, vcpu: usize) -> Option<u8> {
        let v = self.pending_interrupt(vcpu)?;
        self.ack_interrupt(vcpu, v).then_some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const MS: u64 = 1_000_000;

    fn list(a: &Actions) -> Vec<Action> {
        a.iter().copied().collect()
    }

    fn plat(n: usize) -> Platform {
        Platform::new(
            PlatformConfig {
                vcpus: n,
                ..PlatformConfig::default()
            },
            0,
        )
    }

    fn outb(p: &mut Platform, port: u16, v: u8, acts: &mut Actions) {
        assert_eq!(
            p.port_out(port, 1, u32::from(v), 0, acts),
            PortResult::Handled(0)
        );
    }

    fn lapic_w(p: &mut Platform, vcpu: usize, reg: u64, v: u32, acts: &mut Actions) {
        let r = p.mmio_write(vcpu, 0xfee0_0000 + reg, 4, u64::from(v), 0, acts);
        assert_eq!(r, MmioResult::Handled(0));
    }

    fn lapic_r(p: &mut Platform, vcpu: usize, reg: u64) -> u32 {
        match p.mmio_read(vcpu, 0xfee0_0000 + reg, 4, 0) {
            MmioResult::Handled(v) => v as u32,
            MmioResult::Forward => panic!("LAPIC read forwarded"),
        }
    }

    /// SVR enabled, LINT0 as given.
    fn enable_lapic(p: &mut Platform, vcpu: usize, lint0: u32, acts: &mut Actions) {
        lapic_w(p, vcpu, 0xf0, 0x1ff, acts);
        lapic_w(p, vcpu, 0x350, lint0, acts);
    }

    #[test]
    fn actions_dedup_and_capacity() {
        let mut a = Actions::new();
        a.push(Action::Kick(1));
        a.push(Action::Kick(1));
        a.push(Action::DebugOut(b'x'));
        a.push(Action::DebugOut(b'x'));
        assert_eq!(a.len(), 3);
        for _ in 0..200 {
            a.push(Action::DebugOut(0));
        }
        assert_eq!(a.len(), MAX_ACTIONS);
        assert_eq!(a.room(), 0);
        a.clear();
        assert!(a.is_empty());
    }

    #[test]
    fn wide_port_accesses_split_into_bytes() {
        let mut p = plat(1);
        let mut acts = Actions::new();
        // Mask everything: IMR = 0xff on both chips; inw 0x20 reads the
        // master's IRR (0) and IMR (0x21).
        outb(&mut p, 0x21, 0xff, &mut acts);
        assert_eq!(
            p.port_in(0x20, 2, 0, &mut acts),
            PortResult::Handled(0xff00)
        );
        // outw 0x70 is index 0x0a at 0x70, then 0x25 into register A.
        p.port_out(0x70, 2, 0x250a, 0, &mut acts);
        let PortResult::Handled(a) = p.port_in(0x71, 1, 0, &mut acts) else {
            panic!()
        };
        assert_eq!(a & 0x7f, 0x25);
        // 0xe9 as a word: one byte for the console, the other vanishes.
        p.port_out(0xe9, 2, 0x4241, 0, &mut acts);
        assert_eq!(list(&acts), [Action::DebugOut(b'A')]);
        // Unowned first port: forwarded whole.
        assert_eq!(p.port_in(0x3f8, 1, 0, &mut acts), PortResult::Forward);
        assert_eq!(
            p.port_out(0xcf8, 4, 0x8000_0000, 0, &mut acts),
            PortResult::Forward
        );
        assert_eq!(p.port_in(0x1f, 2, 0, &mut acts), PortResult::Forward);
    }

    /// Linux's `init_8259A`: vectors 0x30 (master) and 0x38 (slave),
    /// everything masked but the cascade and `unmask`.
    fn init_pic(p: &mut Platform, unmask: u8, acts: &mut Actions) {
        for (port, v) in [
            (0x21, 0xff),
            (0xa1, 0xff),
            (0x20, 0x11),
            (0x21, 0x30),
            (0x21, 0x04),
            (0x21, 0x01),
            (0xa0, 0x11),
            (0xa1, 0x38),
            (0xa1, 0x02),
            (0xa1, 0x01),
            (0x21, !(unmask | 0x04)),
        ] {
            outb(p, port, v, acts);
        }
    }

    /// PIT channel 0, mode 2, at 100 Hz (reload 11932).
    fn pit_100hz(p: &mut Platform, acts: &mut Actions) {
        outb(p, 0x43, 0x34, acts);
        outb(p, 0x40, (11932 & 0xff) as u8, acts);
        outb(p, 0x40, (11932 >> 8) as u8, acts);
    }

    /// Programs IOAPIC pin `pin`'s RTE low dword (destination APIC id 0).
    fn ioapic_rte(p: &mut Platform, pin: u32, lo: u32, acts: &mut Actions) {
        let base = IOAPIC_BASE;
        p.mmio_write(0, base, 4, u64::from(0x10 + 2 * pin), 0, acts);
        p.mmio_write(0, base + 0x10, 4, u64::from(lo), 0, acts);
        p.mmio_write(0, base, 4, u64::from(0x11 + 2 * pin), 0, acts);
        p.mmio_write(0, base + 0x10, 4, 0, 0, acts);
    }

    #[test]
    fn pit_at_100hz_reaches_the_bsp_through_the_pic() {
        let mut p = plat(2);
        let mut acts = Actions::new();
        init_pic(&mut p, 0x01, &mut acts);
        // LINT0 masked after reset: the PIC does not reach the BSP.
        pit_100hz(&mut p, &mut acts);
        let d = p.advance(0, &mut acts).unwrap();
        assert!((9_999_000..10_001_000).contains(&d), "{d}");
        enable_lapic(&mut p, 0, 0x700, &mut acts); // LINT0 ExtINT
        acts.clear();
        assert_eq!(p.advance(d - 1, &mut acts), Some(d));
        assert!(acts.is_empty());
        assert_eq!(p.pending_interrupt(0), None);
        let d2 = p.advance(d, &mut acts).unwrap();
        assert!(d2 > d + 9 * MS);
        assert_eq!(list(&acts), [Action::Kick(0)]);
        assert_eq!(p.pending_interrupt(0), Some(0x30));
        // Only the BSP hears the PIC.
        assert_eq!(p.pending_interrupt(1), None);
        assert!(!p.ack_interrupt(0, 0x31));
        assert_eq!(p.take_interrupt(0), Some(0x30));
        assert_eq!(p.pending_interrupt(0), None);
        // Until EOI, the next tick waits in IRR behind ISR... it is the same
        // priority, so it is not delivered.
        acts.clear();
        p.advance(d2, &mut acts);
        assert_eq!(p.pending_interrupt(0), None);
        outb(&mut p, 0x20, 0x20, &mut acts); // non-specific EOI
        assert_eq!(p.take_interrupt(0), Some(0x30));
        // Missed ticks coalesce into one edge.
        outb(&mut p, 0x20, 0x20, &mut acts);
        p.advance(d2 + 50 * MS, &mut acts);
        assert_eq!(p.take_interrupt(0), Some(0x30));
        outb(&mut p, 0x20, 0x20, &mut acts);
        assert_eq!(p.take_interrupt(0), None);
    }

    #[test]
    fn pit_reaches_the_bsp_through_ioapic_pin_2() {
        let mut p = plat(2);
        let mut acts = Actions::new();
        init_pic(&mut p, 0x00, &mut acts); // all masked but the cascade
        enable_lapic(&mut p, 0, 0x1_0700, &mut acts); // LINT0 masked
        enable_lapic(&mut p, 1, 0x1_0700, &mut acts);
        ioapic_rte(&mut p, 2, 0x31, &mut acts); // edge, fixed, physical, id 0
        pit_100hz(&mut p, &mut acts);
        let d = p.advance(0, &mut acts).unwrap();
        acts.clear();
        p.advance(d, &mut acts);
        assert_eq!(list(&acts), [Action::Kick(0)]);
        assert_eq!(p.pending_interrupt(1), None);
        assert_eq!(p.take_interrupt(0), Some(0x31));
        assert!(p.lapic(0).unwrap().isr_has(0x31));
        lapic_w(&mut p, 0, 0xb0, 0, &mut acts); // EOI
        assert!(!p.lapic(0).unwrap().isr_has(0x31));
        // Pin 0 is not the PIT's.
        assert_eq!(p.ioapic().rte(0) & 0xff, 0);
    }

    #[test]
    fn lapic_timer_periodic_kicks_its_vcpu() {
        let mut p = plat(2);
        let mut acts = Actions::new();
        enable_lapic(&mut p, 1, 0x1_0700, &mut acts);
        lapic_w(&mut p, 1, 0x3e0, 0xb, &mut acts); // divide by 1
        lapic_w(&mut p, 1, 0x320, 0x2_00ec, &mut acts); // periodic, 0xec
        lapic_w(&mut p, 1, 0x380, 1_000_000, &mut acts); // 1 ms at 1 GHz
        assert_eq!(p.advance(0, &mut acts), Some(MS));
        for tick in 1..=3u64 {
            acts.clear();
            let next = p.advance(tick * MS, &mut acts);
            assert_eq!(next, Some((tick + 1) * MS));
            assert_eq!(list(&acts), [Action::Kick(1)]);
            assert_eq!(p.take_interrupt(1), Some(0xec));
            assert_eq!(p.pending_interrupt(0), None);
            lapic_w(&mut p, 1, 0xb0, 0, &mut acts);
        }
        // The current count runs down.
        let c = lapic_r(&mut p, 1, 0x390);
        assert!(c <= 1_000_000);
    }

    #[test]
    fn fixed_ipis_physical_logical_and_shorthands() {
        let mut p = plat(3);
        let mut acts = Actions::new();
        for v in 0..3 {
            enable_lapic(&mut p, v, 0x1_0700, &mut acts);
            // Flat logical mode, LDR bit per vCPU.
            lapic_w(&mut p, v, 0xe0, 0xffff_ffff, &mut acts);
            lapic_w(&mut p, v, 0xd0, 1 << (24 + v), &mut acts);
        }
        acts.clear();
        // Physical: vCPU 2 has APIC id 4.
        lapic_w(&mut p, 0, 0x310, 4 << 24, &mut acts);
        lapic_w(&mut p, 0, 0x300, 0x4041, &mut acts);
        assert_eq!(list(&acts), [Action::Kick(2)]);
        assert_eq!(p.take_interrupt(2), Some(0x41));
        lapic_w(&mut p, 2, 0xb0, 0, &mut acts);
        // Logical: vCPUs 0 and 1 (bits 0 and 1).
        acts.clear();
        lapic_w(&mut p, 2, 0x310, 0x03 << 24, &mut acts);
        lapic_w(&mut p, 2, 0x300, 0x4842, &mut acts);
        assert_eq!(list(&acts), [Action::Kick(0), Action::Kick(1)]);
        // All excluding self.
        acts.clear();
        lapic_w(&mut p, 1, 0x300, 0xc_4043, &mut acts);
        assert_eq!(list(&acts), [Action::Kick(0), Action::Kick(2)]);
        // Self.
        acts.clear();
        lapic_w(&mut p, 1, 0x300, 0x4_4044, &mut acts);
        assert_eq!(list(&acts), [Action::Kick(1)]);
        assert_eq!(p.take_interrupt(0), Some(0x43));
        assert_eq!(p.take_interrupt(1), Some(0x44));
        // Lowest priority: the lowest PPR among 0..2 (vCPU 0 and 1 have
        // 0x43/0x44 in service, vCPU 2 nothing).
        acts.clear();
        lapic_w(&mut p, 0, 0x310, 0x07 << 24, &mut acts);
        lapic_w(&mut p, 0, 0x300, 0x4950, &mut acts);
        assert_eq!(list(&acts), [Action::Kick(2)]);
        // NMI.
        acts.clear();
        lapic_w(&mut p, 0, 0x310, 2 << 24, &mut acts);
        lapic_w(&mut p, 0, 0x300, 0x4400, &mut acts);
        assert_eq!(list(&acts), [Action::Kick(1)]);
        assert!(p.nmi_pending(1));
        assert!(p.take_nmi(1));
        assert!(!p.take_nmi(1));
    }

    #[test]
    fn ioapic_logical_lowest_priority() {
        let mut p = plat(2);
        let mut acts = Actions::new();
        for v in 0..2 {
            enable_lapic(&mut p, v, 0x1_0700, &mut acts);
            lapic_w(&mut p, v, 0xe0, 0xffff_ffff, &mut acts);
            lapic_w(&mut p, v, 0xd0, 1 << (24 + v), &mut acts);
        }
        // vCPU 0 busy at TPR 0x80: the interrupt goes to vCPU 1.
        lapic_w(&mut p, 0, 0x80, 0x80, &mut acts);
        // Pin 4: lowest priority, logical, edge, vector 0x34, to both.
        p.mmio_write(0, IOAPIC_BASE, 4, 0x18, 0, &mut acts);
        p.mmio_write(0, IOAPIC_BASE + 0x10, 4, 0x934, 0, &mut acts);
        p.mmio_write(0, IOAPIC_BASE, 4, 0x19, 0, &mut acts);
        p.mmio_write(0, IOAPIC_BASE + 0x10, 4, 0x0300_0000, 0, &mut acts);
        acts.clear();
        p.pulse_isa_irq(4, &mut acts);
        assert_eq!(list(&acts), [Action::Kick(1)]);
        assert_eq!(p.take_interrupt(1), Some(0x34));
        // A masked edge is lost.
        p.mmio_write(0, IOAPIC_BASE, 4, 0x18, 0, &mut acts);
        p.mmio_write(0, IOAPIC_BASE + 0x10, 4, 0x1_0934, 0, &mut acts);
        acts.clear();
        p.pulse_isa_irq(4, &mut acts);
        assert!(acts.is_empty());
    }

    #[test]
    fn upcall_vectors_and_msis() {
        let mut p = plat(2);
        let mut acts = Actions::new();
        enable_lapic(&mut p, 0, 0x1_0700, &mut acts);
        enable_lapic(&mut p, 1, 0x1_0700, &mut acts);
        acts.clear();
        p.raise_lapic_vector(1, 0xf3, &mut acts);
        p.raise_lapic_vector(7, 0xf3, &mut acts);
        p.raise_lapic_vector(0, 3, &mut acts); // illegal: an ESR bit
        assert_eq!(list(&acts), [Action::Kick(1)]);
        assert_eq!(p.take_interrupt(1), Some(0xf3));
        assert_eq!(p.take_interrupt(0), None);
        lapic_w(&mut p, 1, 0xb0, 0, &mut acts);
        // MSI to APIC id 2 (vCPU 1), physical, fixed, vector 0x61.
        acts.clear();
        p.deliver_msi(0xfee0_2000, 0x0061, &mut acts);
        assert_eq!(list(&acts), [Action::Kick(1)]);
        assert_eq!(p.take_interrupt(1), Some(0x61));
        // Broadcast NMI; an address outside the window does nothing.
        acts.clear();
        p.deliver_msi(0xfed0_0000, 0x0062, &mut acts);
        assert!(acts.is_empty());
        p.deliver_msi(0xfeef_f000, 0x0400, &mut acts);
        assert!(p.nmi_pending(0) && p.nmi_pending(1));
    }

    #[test]
    fn init_sipi_brings_up_an_ap() {
        let mut p = plat(2);
        let mut acts = Actions::new();
        enable_lapic(&mut p, 0, 0x700, &mut acts);
        assert!(p.is_waiting_for_sipi(1) && !p.is_online(1) && p.is_online(0));
        acts.clear();
        // Linux's wakeup_secondary_cpu_via_init: INIT assert, INIT
        // de-assert, then two SIPIs.
        lapic_w(&mut p, 0, 0x310, 2 << 24, &mut acts);
        lapic_w(&mut p, 0, 0x300, 0xc500, &mut acts);
        assert_eq!(list(&acts), [Action::Init(1)]);
        acts.clear();
        lapic_w(&mut p, 0, 0x300, 0x8500, &mut acts);
        assert!(acts.is_empty());
        lapic_w(&mut p, 0, 0x300, 0x069f, &mut acts);
        assert_eq!(
            list(&acts),
            [Action::Sipi {
                vcpu: 1,
                vector: 0x9f
            }]
        );
        assert!(p.is_online(1) && !p.is_waiting_for_sipi(1));
        acts.clear();
        lapic_w(&mut p, 0, 0x300, 0x069f, &mut acts);
        assert!(acts.is_empty(), "a second SIPI is ignored");
        // Both down: power off.
        p.vcpu_down(1, &mut acts);
        assert!(acts.is_empty());
        p.vcpu_down(0, &mut acts);
        assert_eq!(list(&acts), [Action::PowerOff]);
    }

    #[test]
    fn level_pin_redelivers_after_eoi_while_asserted() {
        let mut p = plat(1);
        let mut acts = Actions::new();
        enable_lapic(&mut p, 0, 0x1_0700, &mut acts);
        ioapic_rte(&mut p, 5, 0x8055, &mut acts); // level, vector 0x55
        acts.clear();
        p.set_isa_irq_level(5, true, &mut acts);
        assert_eq!(list(&acts), [Action::Kick(0)]);
        assert_eq!(p.take_interrupt(0), Some(0x55));
        lapic_w(&mut p, 0, 0xb0, 0, &mut acts); // EOI → broadcast → again
        assert_eq!(p.take_interrupt(0), Some(0x55));
        p.set_isa_irq_level(5, false, &mut acts);
        lapic_w(&mut p, 0, 0xb0, 0, &mut acts);
        assert_eq!(p.take_interrupt(0), None);
    }

    #[test]
    fn rtc_periodic_interrupt_on_irq8() {
        let mut p = plat(1);
        let mut acts = Actions::new();
        enable_lapic(&mut p, 0, 0x700, &mut acts);
        init_pic(&mut p, 0x00, &mut acts);
        outb(&mut p, 0xa1, !0x01, &mut acts); // unmask IRQ8
        outb(&mut p, 0x70, 0x0b, &mut acts);
        outb(&mut p, 0x71, 0x42, &mut acts); // PIE, 24h
        let d = p.advance(0, &mut acts).unwrap();
        assert!(d <= MS, "1024 Hz: {d}");
        acts.clear();
        p.advance(d, &mut acts);
        assert_eq!(list(&acts), [Action::Kick(0)]);
        assert_eq!(p.take_interrupt(0), Some(0x38));
        // Reading register C lowers the line.
        outb(&mut p, 0x70, 0x0c, &mut acts);
        assert!(
            matches!(p.port_in(0x71, 1, d, &mut acts), PortResult::Handled(v) if v & 0xc0 == 0xc0)
        );
    }

    #[test]
    fn power_off_reset_and_debug_ports() {
        let mut p = plat(1);
        let mut acts = Actions::new();
        p.port_out(0xb004, 2, 0x2000, 0, &mut acts);
        assert_eq!(list(&acts), [Action::PowerOff]);
        acts.clear();
        p.port_out(0xcf9, 1, 0x02, 0, &mut acts);
        assert!(acts.is_empty());
        assert_eq!(p.port_in(0xcf9, 1, 0, &mut acts), PortResult::Handled(0x02));
        p.port_out(0xcf9, 1, 0x06, 0, &mut acts);
        assert_eq!(list(&acts), [Action::Reset]);
        acts.clear();
        assert_eq!(p.port_in(0x92, 1, 0, &mut acts), PortResult::Handled(0x02));
        p.port_out(0x92, 1, 0x03, 0, &mut acts);
        assert_eq!(list(&acts), [Action::Reset]);
        acts.clear();
        p.port_out(0x92, 1, 0x03, 0, &mut acts);
        assert!(acts.is_empty(), "bit 0 resets on 0→1 only");
        for b in b"ok\n" {
            p.port_out(0xe9, 1, u32::from(*b), 0, &mut acts);
        }
        assert_eq!(
            list(&acts),
            [
                Action::DebugOut(b'o'),
                Action::DebugOut(b'k'),
                Action::DebugOut(b'\n')
            ]
        );
        assert_eq!(p.port_in(0xe9, 1, 0, &mut acts), PortResult::Handled(0xff));
        assert_eq!(p.port_in(0x80, 1, 0, &mut acts), PortResult::Handled(0xff));
    }

    #[test]
    fn power_button_raises_the_sci() {
        let mut p = plat(1);
        let mut acts = Actions::new();
        enable_lapic(&mut p, 0, 0x1_0700, &mut acts);
        ioapic_rte(&mut p, 9, 0x8059, &mut acts); // level, as the MADT says
        p.port_out(0xb002, 2, 0x0100, 0, &mut acts); // PWRBTN_EN
        acts.clear();
        p.press_power_button(0, &mut acts);
        assert_eq!(list(&acts), [Action::Kick(0)]);
        assert_eq!(p.take_interrupt(0), Some(0x59));
        // The guest clears PWRBTN_STS, then EOIs: no redelivery.
        p.port_out(0xb000, 2, 0x0100, 0, &mut acts);
        lapic_w(&mut p, 0, 0xb0, 0, &mut acts);
        assert_eq!(p.take_interrupt(0), None);
    }

    #[test]
    fn apic_base_relocation_and_x2apic_msrs() {
        let mut p = plat(2);
        let mut acts = Actions::new();
        enable_lapic(&mut p, 0, 0x1_0700, &mut acts);
        assert_eq!(p.msr_read(0, MSR_APIC_BASE, 0), Ok(0xfee0_0900));
        assert_eq!(p.msr_read(1, MSR_APIC_BASE, 0), Ok(0xfee0_0800));
        p.msr_write(0, MSR_APIC_BASE, 0xfed0_0900, 0, 0, &mut acts)
            .unwrap();
        assert_eq!(p.mmio_read(0, 0xfee0_0030, 4, 0), MmioResult::Forward);
        assert_eq!(
            p.mmio_read(0, 0xfed0_0030, 4, 0),
            MmioResult::Handled(u64::from(super::super::vlapic::APIC_VERSION))
        );
        // vCPU 1's page has not moved.
        assert!(p.claims_mmio(1, 0xfee0_0000) && !p.claims_mmio(1, 0xfed0_0000));
        // x2APIC: MMIO goes away, MSRs work.
        assert_eq!(p.msr_read(1, 0x802, 0), Err(ApicFault::Gp));
        p.msr_write(1, MSR_APIC_BASE, 0xfee0_0c00, 0, 0, &mut acts)
            .unwrap();
        assert!(!p.claims_mmio(1, 0xfee0_0000));
        assert_eq!(p.msr_read(1, 0x802, 0), Ok(2));
        p.msr_write(1, 0x80f, 0x1ff, 0, 0, &mut acts).unwrap();
        // An x2APIC IPI from vCPU 1 to APIC id 0 (vCPU 0, xAPIC).
        acts.clear();
        p.msr_write(1, 0x830, 0x4061, 0, 0, &mut acts).unwrap();
        assert_eq!(list(&acts), [Action::Kick(0)]);
        // Relocated page of vCPU 0 still works for the IPI's EOI.
        assert_eq!(p.take_interrupt(0), Some(0x61));
        // TSC deadline, and MSRs that are not the LAPIC's.
        assert_eq!(p.msr_read(0, MSR_TSC_DEADLINE, 0), Ok(0));
        assert_eq!(p.msr_read(0, 0x10, 0), Err(ApicFault::Gp));
        assert_eq!(p.msr_write(0, 0x10, 0, 0, 0, &mut acts), Err(ApicFault::Gp));
    }

    #[test]
    fn partial_lapic_accesses_merge() {
        let mut p = plat(1);
        let mut acts = Actions::new();
        enable_lapic(&mut p, 0, 0x1_0700, &mut acts);
        // A byte write to TPR's low byte, a word read of SVR.
        p.mmio_write(0, 0xfee0_0080, 1, 0x5a, 0, &mut acts);
        assert_eq!(lapic_r(&mut p, 0, 0x80), 0x5a);
        assert_eq!(p.mmio_read(0, 0xfee0_00f1, 1, 0), MmioResult::Handled(0x01));
        assert_eq!(
            p.mmio_read(0, 0xfee0_00f0, 2, 0),
            MmioResult::Handled(0x1ff)
        );
        // An 8-byte read: the register, then the 12 empty bytes after it.
        assert_eq!(
            p.mmio_read(0, 0xfee0_00f0, 8, 0),
            MmioResult::Handled(0x1ff)
        );
        // Garbage sizes read 0 and write nothing.
        assert_eq!(p.mmio_read(0, 0xfee0_00f0, 3, 0), MmioResult::Handled(0));
        p.mmio_write(0, 0xfee0_0080, 0, 0, 0, &mut acts);
        assert_eq!(lapic_r(&mut p, 0, 0x80), 0x5a);
    }

    #[test]
    fn pic_comes_before_the_lapic() {
        let mut p = plat(1);
        let mut acts = Actions::new();
        enable_lapic(&mut p, 0, 0x700, &mut acts);
        init_pic(&mut p, 0x02, &mut acts);
        lapic_w(&mut p, 0, 0x300, 0x4_40f0, &mut acts); // self IPI 0xf0
        p.pulse_isa_irq(1, &mut acts);
        assert_eq!(p.take_interrupt(0), Some(0x31));
        assert_eq!(p.take_interrupt(0), Some(0xf0));
    }

    #[test]
    fn pvh_has_a_lapic_and_the_debug_port_only() {
        let mut p = Platform::new(
            PlatformConfig {
                vcpus: 2,
                emulation: PlatformConfig::EMU_PVH,
                ..PlatformConfig::default()
            },
            0,
        );
        let mut acts = Actions::new();
        for port in [
            0x20, 0x21, 0x40, 0x43, 0x61, 0x70, 0x71, 0xb000, 0xb004, 0xcf9, 0x92,
        ] {
            assert_eq!(
                p.port_in(port, 1, 0, &mut acts),
                PortResult::Forward,
                "{port:#x}"
            );
        }
        assert_eq!(
            p.port_out(0xe9, 1, 0x41, 0, &mut acts),
            PortResult::Handled(0)
        );
        assert_eq!(list(&acts), [Action::DebugOut(b'A')]);
        assert!(!p.claims_mmio(0, IOAPIC_BASE) && p.claims_mmio(0, 0xfee0_0000));
        // ISA lines lead nowhere: no PIC vector ever reaches the BSP.
        acts.clear();
        p.pulse_isa_irq(0, &mut acts);
        p.set_isa_irq_level(4, true, &mut acts);
        assert!(acts.is_empty());
        assert_eq!(p.pending_interrupt(0), None);
        // The LAPIC works: a self IPI.
        enable_lapic(&mut p, 0, 0x1_0700, &mut acts);
        lapic_w(&mut p, 0, 0x300, 0x4_4050, &mut acts);
        assert_eq!(p.take_interrupt(0), Some(0x50));
        assert_eq!(p.advance(0, &mut acts), None);
    }

    #[test]
    fn hostile_ports_sizes_and_vcpus_never_panic() {
        let mut p = plat(2);
        let mut acts = Actions::new();
        for port in 0..=u16::MAX {
            for size in 0..=8u8 {
                let _ = p.port_in(port, size, u64::from(port), &mut acts);
                let _ = p.port_out(port, size, 0xffff_ffff, u64::from(port), &mut acts);
                let _ = p.port_out(port, size, 0x0100_0000, u64::from(port), &mut acts);
                acts.clear();
            }
        }
        for &vcpu in &[0, 1, 2, 15, 16, 31, 32, 63, 64, usize::MAX] {
            for size in 0..=16u8 {
                for &gpa in &[
                    0xfee0_0000u64,
                    0xfee0_0ffd,
                    0xfee0_0ffc,
                    0xfee0_0300,
                    0xfec0_0000,
                    0xfec0_0010,
                    0xfec0_0fff,
                    u64::MAX,
                    0,
                ] {
                    let _ = p.mmio_read(vcpu, gpa, size, 7);
                    let _ = p.mmio_write(vcpu, gpa, size, u64::MAX, 7, &mut acts);
                    acts.clear();
                }
            }
            for msr in [0x1b, 0x6e0, 0x800, 0x830, 0x8ff, 0] {
                let _ = p.msr_read(vcpu, msr, 0);
                let _ = p.msr_write(vcpu, msr, u64::MAX, 0, 0, &mut acts);
                acts.clear();
            }
            let _ = p.pending_interrupt(vcpu);
            let _ = p.ack_interrupt(vcpu, 0x30);
            let _ = p.take_interrupt(vcpu);
            let _ = p.take_nmi(vcpu);
            p.vcpu_down(vcpu, &mut acts);
            let _ = p.lapic(vcpu);
        }
        for irq in 0..=255u8 {
            p.set_isa_irq_level(irq, true, &mut acts);
            p.pulse_isa_irq(irq, &mut acts);
            p.set_gsi_level(usize::from(irq), true, &mut acts);
            acts.clear();
        }
        let _ = p.advance(u64::MAX, &mut acts);
        let _ = p.advance(0, &mut acts);
        let big = Platform::new(
            PlatformConfig {
                vcpus: usize::MAX,
                ..PlatformConfig::default()
            },
            0,
        );
        assert_eq!(big.vcpus(), MAX_VCPUS);
    }
}
