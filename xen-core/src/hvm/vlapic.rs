//! The virtual local APIC of one vCPU, in xAPIC (MMIO page at 0xfee00000)
//! and x2APIC (MSRs 0x800–0x8ff) modes, with its timer.
//!
//! **Owns**: the APIC's registers (ID, TPR, LDR/DFR, SVR, the 256-bit
//! ISR/TMR/IRR, ESR, ICR, the six LVTs, the timer), the IA32_APIC_BASE
//! mode bits and the IA32_TSC_DEADLINE value. **Trusts**: the caller's clock
//! (`now` in ns on one monotonic clock; the guest TSC `now_tsc` at the same
//! instant for TSC-deadline writes) and the caller for routing what it
//! returns ([`Action::Ipi`], [`Action::EoiBroadcast`]); nothing from the
//! guest: xAPIC writes to read-only registers are ignored and reserved bits
//! masked, x2APIC accesses that hardware faults return [`ApicFault::Gp`].
//!
//! **Follows** the Intel SDM vol. 3A ch. 10 (11 in newer editions): register
//! layout (table 10-1), x2APIC MSRs (table 10-6) and their #GP rules, PPR
//! (§10.8.3.1), logical destinations (§10.6.2.2, §10.12.10), the timer
//! (§10.5.4, TSC-deadline §10.5.4.1) and IA32_APIC_BASE transitions
//! (§10.12.5); and Xen's `xen/arch/x86/hvm/vlapic.c`: version 0x50014 (six
//! LVTs, no directed EOI), the per-LVT writable masks, LVTs forced masked
//! while the APIC is software-disabled, fixed interrupts dropped while it is
//! disabled, INIT level de-assert ignored, a 1 GHz default bus clock.

/// IA32_APIC_BASE.
pub const MSR_APIC_BASE: u32 = 0x1b;
/// IA32_TSC_DEADLINE.
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;
/// First x2APIC MSR.
pub const MSR_X2APIC_FIRST: u32 = 0x800;
/// Last x2APIC MSR.
pub const MSR_X2APIC_LAST: u32 = 0x8ff;
/// Default xAPIC page.
pub const APIC_DEFAULT_BASE: u64 = 0xfee0_0000;
/// Version register: version 0x14, highest LVT 5 (as Xen's VLAPIC_VERSION).
pub const APIC_VERSION: u32 = 0x0005_0014;
/// KVM's `min_timer_period_us`: a periodic timer never fires faster.
pub const MIN_PERIODIC_NS: u64 = 200_000;

const NS_PER_SEC: u64 = 1_000_000_000;

// Register offsets in the xAPIC page (SDM table 10-1).
const REG_ID: u32 = 0x020;
const REG_VERSION: u32 = 0x030;
const REG_TPR: u32 = 0x080;
const REG_PPR: u32 = 0x0a0;
const REG_EOI: u32 = 0x0b0;
const REG_LDR: u32 = 0x0d0;
const REG_DFR: u32 = 0x0e0;
const REG_SVR: u32 = 0x0f0;
const REG_ISR: u32 = 0x100;
const REG_TMR: u32 = 0x180;
const REG_IRR: u32 = 0x200;
const REG_ESR: u32 = 0x280;
const REG_ICR_LO: u32 = 0x300;
const REG_ICR_HI: u32 = 0x310;
const REG_LVT_TIMER: u32 = 0x320;
const REG_TMICT: u32 = 0x380;
const REG_TMCCT: u32 = 0x390;
const REG_TDCR: u32 = 0x3e0;
const REG_SELF_IPI: u32 = 0x3f0;

// IA32_APIC_BASE bits.
const BASE_BSP: u64 = 1 << 8;
const BASE_EXTD: u64 = 1 << 10;
const BASE_EN: u64 = 1 << 11;
const BASE_ADDR: u64 = 0x000f_ffff_ffff_f000;

// SVR.
const SVR_ENABLE: u32 = 1 << 8;
const SVR_WRITABLE: u32 = 0xff | SVR_ENABLE | 1 << 9;

// LVT bits.
const LVT_VECTOR: u32 = 0xff;
const LVT_MODE: u32 = 7 << 8;
const LVT_POLARITY: u32 = 1 << 13;
const LVT_REMOTE_IRR: u32 = 1 << 14;
const LVT_LEVEL: u32 = 1 << 15;
const LVT_MASKED: u32 = 1 << 16;
const LVT_TIMER_MODE: u32 = 3 << 17;
const TIMER_PERIODIC: u32 = 1 << 17;
const TIMER_TSC_DEADLINE: u32 = 2 << 17;
/// LVT index: timer, thermal, perf, LINT0, LINT1, error.
const LVT_TIMER: usize = 0;
const LVT_LINT0: usize = 3;
const LVT_ERROR: usize = 5;
const LVT_COUNT: usize = 6;
/// Writable bits per LVT, as Xen's `vlapic_lvt_mask`.
const LVT_WRITABLE: [u32; LVT_COUNT] = [
    LVT_VECTOR | LVT_MASKED | LVT_TIMER_MODE,
    LVT_VECTOR | LVT_MASKED | LVT_MODE,
    LVT_VECTOR | LVT_MASKED | LVT_MODE,
    LVT_VECTOR | LVT_MASKED | LVT_MODE | LVT_POLARITY | LVT_LEVEL,
    LVT_VECTOR | LVT_MASKED | LVT_MODE | LVT_POLARITY | LVT_LEVEL,
    LVT_VECTOR | LVT_MASKED,
];

// ICR bits.
const ICR_VECTOR: u32 = 0xff;
const ICR_LOGICAL: u32 = 1 << 11;
const ICR_ASSERT: u32 = 1 << 14;
const ICR_LEVEL: u32 = 1 << 15;
const ICR_SHORTHAND_SHIFT: u32 = 18;
const ICR_WRITABLE: u32 = ICR_VECTOR | 7 << 8 | ICR_LOGICAL | ICR_ASSERT | ICR_LEVEL | 3 << 18;

// ESR bits (SDM §10.5.3).
/// Send illegal vector.
pub const ESR_SEND_ILLEGAL: u32 = 1 << 5;
/// Receive illegal vector.
pub const ESR_RECV_ILLEGAL: u32 = 1 << 6;

/// An interrupt message's delivery mode (ICR, LVT and IOAPIC RTE bits
/// 10:8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    /// 000: the vector, to every destination.
    Fixed,
    /// 001: the vector, to the lowest-priority destination.
    LowestPriority,
    /// 010.
    Smi,
    /// 011: reserved.
    Reserved3,
    /// 100.
    Nmi,
    /// 101.
    Init,
    /// 110: start-up IPI, vector = start page.
    StartUp,
    /// 111: the vector comes from an 8259A INTA.
    ExtInt,
}

impl DeliveryMode {
    /// From bits 2:0 (higher bits ignored).
    pub fn from_bits(bits: u8) -> Self {
        match bits & 7 {
            0 => Self::Fixed,
            1 => Self::LowestPriority,
            2 => Self::Smi,
            3 => Self::Reserved3,
            4 => Self::Nmi,
            5 => Self::Init,
            6 => Self::StartUp,
            _ => Self::ExtInt,
        }
    }
}

/// The ICR's destination shorthand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shorthand {
    /// Use the destination field.
    None,
    /// The sender only.
    SelfOnly,
    /// Every APIC, the sender too.
    AllIncludingSelf,
    /// Every APIC but the sender.
    AllExcludingSelf,
}

/// An IPI the guest sent through the ICR, for the caller to route: to each
/// APIC whose [`VLapic::is_ipi_target`] says so (for lowest priority, one
/// of them), calling [`VLapic::deliver`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipi {
    /// Delivery mode.
    pub mode: DeliveryMode,
    /// Vector (the start page for SIPI).
    pub vector: u8,
    /// Level-triggered.
    pub level: bool,
    /// Logical destination mode.
    pub logical: bool,
    /// Destination: 8 bits in xAPIC mode, 32 in x2APIC mode.
    pub dest: u32,
    /// Shorthand.
    pub shorthand: Shorthand,
}

/// What the caller must do after a register write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// Route this IPI.
    Ipi(Ipi),
    /// A level-triggered interrupt with this vector was EOIed: broadcast to
    /// the IOAPICs ([`super::vioapic::VIoApic::eoi`]).
    EoiBroadcast(u8),
}

/// What an interrupt message did to this APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// The vector is now in IRR.
    Pending,
    /// Inject an NMI.
    Nmi,
    /// INIT: the caller resets the vCPU (and calls [`VLapic::init`]).
    Init,
    /// Start-up IPI with this vector, for a vCPU waiting for SIPI.
    StartUp(u8),
    /// SMI (the caller decides; HVM guests have no SMM).
    Smi,
    /// Take the vector from the 8259A (INTA).
    ExtInt,
    /// Dropped (APIC disabled, illegal vector, masked, reserved mode).
    Ignored,
}

/// An access hardware answers with #GP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicFault {
    /// Inject #GP(0).
    Gp,
}

/// Platform parameters of the emulated APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LapicConfig {
    /// Timer input (bus) clock, Hz.
    pub bus_hz: u64,
    /// Guest TSC frequency, Hz (for IA32_TSC_DEADLINE).
    pub tsc_hz: u64,
    /// Whether CPUID advertises TSC-deadline mode.
    pub tsc_deadline: bool,
}

impl Default for LapicConfig {
    /// Xen's: a 1 GHz APIC bus (`APIC_BUS_CYCLE_NS` = 1), TSC-deadline on.
    fn default() -> Self {
        Self {
            bus_hz: NS_PER_SEC,
            tsc_hz: NS_PER_SEC,
            tsc_deadline: true,
        }
    }
}

fn bit_set(a: &mut [u32; 8], v: u8) {
    a[usize::from(v >> 5)] |= 1 << (v & 31);
}
fn bit_clear(a: &mut [u32; 8], v: u8) {
    a[usize::from(v >> 5)] &= !(1 << (v & 31));
}
fn bit_test(a: &[u32; 8], v: u8) -> bool {
    a[usize::from(v >> 5)] & (1 << (v & 31)) != 0
}
fn highest(a: &[u32; 8]) -> Option<u8> {
    (0..8usize)
        .rev()
        .find(|&i| a[i] != 0)
        .map(|i| (i as u8) * 32 + (31 - a[i].leading_zeros()) as u8)
}

/// One vCPU's local APIC.
#[derive(Clone, Debug)]
pub struct VLapic {
    cfg: LapicConfig,
    id: u32,
    apic_base: u64,
    tpr: u32,
    svr: u32,
    ldr: u32,
    dfr: u32,
    isr: [u32; 8],
    tmr: [u32; 8],
    irr: [u32; 8],
    esr: u32,
    esr_pending: u32,
    icr_lo: u32,
    icr_hi: u32,
    lvt: [u32; LVT_COUNT],
    tmict: u32,
    tdcr: u32,
    /// When the timer next expires.
    timer_deadline: Option<u64>,
    /// One count's length (initial count × divisor) in ns.
    timer_len_ns: u64,
    tsc_deadline: u64,
}

/// Xen's `struct hvm_hw_lapic` (save record `LAPIC`): the state that is
/// not in the register page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LapicHidden {
    /// IA32_APIC_BASE.
    pub apic_base_msr: u64,
    /// `VLAPIC_SW_DISABLED` (1) | `VLAPIC_HW_DISABLED` (2).
    pub disabled: u32,
    /// The timer's divisor (1, 2, 4, .. 128).
    pub timer_divisor: u32,
    /// IA32_TSC_DEADLINE.
    pub tdt_msr: u64,
}

/// Bytes of Xen's `struct hvm_hw_lapic_regs` (save record `LAPIC_REGS`):
/// the first KiB of the xAPIC register page.
pub const LAPIC_REGS_LEN: usize = 1024;

/// Why saved LAPIC state was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LapicLoadError {
    /// IA32_APIC_BASE has reserved bits, or x2APIC without the global
    /// enable.
    BadBase,
    /// The saved APIC ID is not this vCPU's.
    IdMismatch,
}

impl VLapic {
    /// Its save records at `now`: [`LapicHidden`] and the register page as
    /// Xen lays it out (each register at its xAPIC offset, TMCCT the count
    /// left now; the ID as xAPIC mode shows it, or the x2APIC ID).
    pub fn save(&self, now: u64) -> (LapicHidden, [u8; LAPIC_REGS_LEN]) {
        let mut regs = [0u8; LAPIC_REGS_LEN];
        for reg in (0..LAPIC_REGS_LEN as u32).step_by(16) {
            let v = self.read_reg(reg, now);
            regs[reg as usize..reg as usize + 4].copy_from_slice(&v.to_le_bytes());
        }
        let hidden = LapicHidden {
            apic_base_msr: self.apic_base,
            disabled: u32::from(self.svr & SVR_ENABLE == 0) | if self.hw_enabled() { 0 } else { 2 },
            timer_divisor: self.divisor() as u32,
            tdt_msr: self.tsc_deadline,
        };
        (hidden, regs)
    }

    /// Loads saved state at `now` (guest TSC `now_tsc`): the registers,
    /// then the timer re-armed from the saved current count (Xen's
    /// `lapic_rearm`), or from the TSC deadline. Refuses a base with
    /// reserved bits or another APIC ID, changing nothing.
    pub fn restore(
        &mut self,
        h: &LapicHidden,
        regs: &[u8; LAPIC_REGS_LEN],
        now: u64,
        now_tsc: u64,
    ) -> Result<(), LapicLoadError> {
        let base = h.apic_base_msr;
        if base & !(BASE_ADDR | BASE_EN | BASE_EXTD | BASE_BSP) != 0
            || (base & BASE_EXTD != 0 && base & BASE_EN == 0)
        {
            return Err(LapicLoadError::BadBase);
        }
        let r = |reg: u32| {
            let i = reg as usize;
            u32::from_le_bytes([regs[i], regs[i + 1], regs[i + 2], regs[i + 3]])
        };
        let id = if base & BASE_EXTD != 0 {
            r(REG_ID)
        } else {
            r(REG_ID) >> 24
        };
        if id != self.id {
            return Err(LapicLoadError::IdMismatch);
        }
        self.apic_base = base;
        self.tpr = r(REG_TPR) & 0xff;
        self.svr = r(REG_SVR) & SVR_WRITABLE;
        self.ldr = if self.x2apic() {
            self.x2apic_ldr()
        } else {
            r(REG_LDR) & 0xff00_0000
        };
        self.dfr = r(REG_DFR) | 0x0fff_ffff;
        for i in 0..8 {
            self.isr[i] = r(REG_ISR + 16 * i as u32);
            self.tmr[i] = r(REG_TMR + 16 * i as u32);
            self.irr[i] = r(REG_IRR + 16 * i as u32);
        }
        self.esr = r(REG_ESR);
        self.esr_pending = 0;
        self.icr_lo = r(REG_ICR_LO) & !(1 << 12); // never "send pending"
        self.icr_hi = r(REG_ICR_HI);
        for (i, writable) in LVT_WRITABLE.iter().enumerate() {
            let mut mask = writable | LVT_REMOTE_IRR;
            if i == LVT_TIMER && !self.cfg.tsc_deadline {
                mask &= !TIMER_TSC_DEADLINE;
            }
            self.lvt[i] = r(REG_LVT_TIMER + 16 * i as u32) & mask;
        }
        self.tmict = r(REG_TMICT);
        self.tdcr = r(REG_TDCR) & 0xb;
        self.tsc_deadline = 0;
        self.timer_deadline = None;
        self.timer_len_ns = 0;
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            self.write_tsc_deadline(h.tdt_msr, now, now_tsc);
        } else if self.tmict != 0 {
            // The period from the initial count, the first expiry from
            // what was left of it.
            self.arm_count(now);
            let left = u64::from(r(REG_TMCCT).min(self.tmict));
            if left != 0 {
                let first = self.ticks_to_ns(left * self.divisor()).max(1);
                self.timer_deadline = Some(now.saturating_add(first));
            } else if self.timer_mode() != TIMER_PERIODIC {
                self.timer_deadline = None;
            }
        }
        Ok(())
    }

    /// The APIC of the vCPU with APIC ID `id` after power-up: xAPIC mode,
    /// globally enabled at 0xfee00000, software-disabled (SVR 0xff), every
    /// LVT masked. `bsp` sets IA32_APIC_BASE.BSP.
    pub fn new(id: u32, bsp: bool, cfg: LapicConfig) -> Self {
        let cfg = LapicConfig {
            bus_hz: cfg.bus_hz.max(1),
            tsc_hz: cfg.tsc_hz.max(1),
            ..cfg
        };
        let mut a = Self {
            cfg,
            id,
            apic_base: APIC_DEFAULT_BASE | BASE_EN | if bsp { BASE_BSP } else { 0 },
            tpr: 0,
            svr: 0,
            ldr: 0,
            dfr: 0,
            isr: [0; 8],
            tmr: [0; 8],
            irr: [0; 8],
            esr: 0,
            esr_pending: 0,
            icr_lo: 0,
            icr_hi: 0,
            lvt: [0; LVT_COUNT],
            tmict: 0,
            tdcr: 0,
            timer_deadline: None,
            timer_len_ns: 0,
            tsc_deadline: 0,
        };
        a.init();
        a
    }

    /// The INIT reset (SDM §10.4.7.3): every register but the APIC ID and
    /// IA32_APIC_BASE returns to its power-up value; x2APIC mode stays.
    pub fn init(&mut self) {
        self.tpr = 0;
        self.svr = 0xff;
        self.dfr = 0xffff_ffff;
        self.ldr = if self.x2apic() { self.x2apic_ldr() } else { 0 };
        self.isr = [0; 8];
        self.tmr = [0; 8];
        self.irr = [0; 8];
        self.esr = 0;
        self.esr_pending = 0;
        self.icr_lo = 0;
        self.icr_hi = 0;
        self.lvt = [LVT_MASKED; LVT_COUNT];
        self.tmict = 0;
        self.tdcr = 0;
        self.timer_deadline = None;
        self.timer_len_ns = 0;
        self.tsc_deadline = 0;
    }

    /// The APIC ID.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// IA32_APIC_BASE.
    pub fn apic_base(&self) -> u64 {
        self.apic_base
    }

    /// The xAPIC page's guest-physical address, when xAPIC MMIO is live.
    pub fn mmio_base(&self) -> Option<u64> {
        (self.hw_enabled() && !self.x2apic()).then_some(self.apic_base & BASE_ADDR)
    }

    /// Globally enabled (IA32_APIC_BASE.EN).
    pub fn hw_enabled(&self) -> bool {
        self.apic_base & BASE_EN != 0
    }

    /// In x2APIC mode.
    pub fn x2apic(&self) -> bool {
        self.apic_base & (BASE_EN | BASE_EXTD) == BASE_EN | BASE_EXTD
    }

    /// Globally and software-enabled.
    pub fn enabled(&self) -> bool {
        self.hw_enabled() && self.svr & SVR_ENABLE != 0
    }

    fn x2apic_ldr(&self) -> u32 {
        ((self.id >> 4) << 16) | (1 << (self.id & 0xf))
    }

    /// A guest write to IA32_APIC_BASE (SDM §10.12.5: the legal mode
    /// transitions; BSP is read-only).
    pub fn write_apic_base(&mut self, val: u64) -> Result<(), ApicFault> {
        if val & !(BASE_BSP | BASE_EXTD | BASE_EN | BASE_ADDR) != 0 {
            return Err(ApicFault::Gp);
        }
        let old_x2 = self.x2apic();
        let old_en = self.hw_enabled();
        let (en, extd) = (val & BASE_EN != 0, val & BASE_EXTD != 0);
        match (old_en, old_x2, en, extd) {
            (_, _, false, true) => return Err(ApicFault::Gp), // invalid state
            (true, true, true, false) => return Err(ApicFault::Gp), // x2APIC → xAPIC
            (false, _, true, true) => return Err(ApicFault::Gp), // disabled → x2APIC
            _ => {}
        }
        self.apic_base = (val & !BASE_BSP) | (self.apic_base & BASE_BSP);
        if !en && old_en {
            self.init();
        } else if en && extd && !old_x2 {
            self.ldr = self.x2apic_ldr();
        }
        Ok(())
    }

    /// TPR.
    pub fn tpr(&self) -> u8 {
        self.tpr as u8
    }

    /// PPR (SDM §10.8.3.1).
    pub fn ppr(&self) -> u8 {
        let isrv = highest(&self.isr).unwrap_or(0);
        let tpr = self.tpr as u8;
        if tpr & 0xf0 >= isrv & 0xf0 {
            tpr
        } else {
            isrv & 0xf0
        }
    }

    /// Whether `v` is requested (IRR).
    pub fn irr_has(&self, v: u8) -> bool {
        bit_test(&self.irr, v)
    }

    /// Whether `v` is in service (ISR).
    pub fn isr_has(&self, v: u8) -> bool {
        bit_test(&self.isr, v)
    }

    /// ESR as the guest would read it.
    pub fn esr(&self) -> u32 {
        self.esr
    }

    /// The highest vector in IRR whose priority class beats PPR, when the
    /// APIC is enabled: what the vCPU takes when interrupts are open.
    pub fn pending_vector(&self) -> Option<u8> {
        if !self.enabled() {
            return None;
        }
        let v = highest(&self.irr)?;
        (v & 0xf0 > self.ppr() & 0xf0).then_some(v)
    }

    /// The vCPU takes the interrupt [`VLapic::pending_vector`] names:
    /// IRR → ISR. Returns the vector.
    pub fn ack(&mut self) -> Option<u8> {
        let v = self.pending_vector()?;
        bit_clear(&mut self.irr, v);
        bit_set(&mut self.isr, v);
        Some(v)
    }

    /// EOI: ends the highest in-service interrupt. Returns the vector to
    /// broadcast to the IOAPICs if it was level-triggered.
    pub fn eoi(&mut self) -> Option<u8> {
        let v = highest(&self.isr)?;
        bit_clear(&mut self.isr, v);
        bit_test(&self.tmr, v).then_some(v)
    }

    fn error(&mut self, bits: u32) {
        let fresh = bits & !self.esr_pending != 0;
        self.esr_pending |= bits;
        let lvt = self.lvt[LVT_ERROR];
        if fresh && self.enabled() && lvt & LVT_MASKED == 0 && (lvt & LVT_VECTOR) >= 16 {
            let v = (lvt & LVT_VECTOR) as u8;
            bit_set(&mut self.irr, v);
            bit_clear(&mut self.tmr, v);
        }
    }

    fn accept_fixed(&mut self, vector: u8, level: bool) -> Accepted {
        if !self.enabled() {
            return Accepted::Ignored;
        }
        if vector < 16 {
            self.error(ESR_RECV_ILLEGAL);
            return Accepted::Ignored;
        }
        bit_set(&mut self.irr, vector);
        if level {
            bit_set(&mut self.tmr, vector);
        } else {
            bit_clear(&mut self.tmr, vector);
        }
        Accepted::Pending
    }

    /// An interrupt message for this APIC (from an IPI, the IOAPIC or an
    /// MSI), already matched to it by the caller.
    pub fn deliver(&mut self, mode: DeliveryMode, vector: u8, level: bool) -> Accepted {
        if !self.hw_enabled() {
            return Accepted::Ignored;
        }
        match mode {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => self.accept_fixed(vector, level),
            DeliveryMode::Nmi => Accepted::Nmi,
            DeliveryMode::Init => Accepted::Init,
            DeliveryMode::StartUp => Accepted::StartUp(vector),
            DeliveryMode::Smi => Accepted::Smi,
            DeliveryMode::ExtInt => Accepted::ExtInt,
            DeliveryMode::Reserved3 => Accepted::Ignored,
        }
    }

    /// Whether this APIC is named by (`logical`, `dest`) (SDM §10.6.2 and,
    /// in x2APIC mode, §10.12.9–10). 0xff (xAPIC) or 0xffffffff (x2APIC)
    /// is the broadcast.
    pub fn matches(&self, logical: bool, dest: u32) -> bool {
        if !self.hw_enabled() {
            return false;
        }
        if self.x2apic() {
            if dest == u32::MAX {
                return true;
            }
            if !logical {
                return dest == self.id;
            }
            dest >> 16 == self.ldr >> 16 && dest & self.ldr & 0xffff != 0
        } else {
            let d = dest & 0xff;
            if d == 0xff {
                return true;
            }
            if !logical {
                return d == self.id & 0xff;
            }
            let mine = self.ldr >> 24;
            if self.dfr >> 28 == 0xf {
                mine & d != 0
            } else {
                d >> 4 == mine >> 4 && d & mine & 0xf != 0
            }
        }
    }

    /// Whether `ipi`, sent by the APIC `sender_is_self` says, is for this
    /// APIC.
    pub fn is_ipi_target(&self, ipi: &Ipi, sender_is_self: bool) -> bool {
        match ipi.shorthand {
            Shorthand::SelfOnly => sender_is_self,
            Shorthand::AllIncludingSelf => self.hw_enabled(),
            Shorthand::AllExcludingSelf => !sender_is_self && self.hw_enabled(),
            Shorthand::None => self.matches(ipi.logical, ipi.dest),
        }
    }

    /// A pulse on LINT0 (`pin` 0) or LINT1 (`pin` 1), delivered as its LVT
    /// says. With the APIC globally disabled, LINT0 is INTR and LINT1 NMI.
    pub fn lint(&mut self, pin: u8) -> Accepted {
        if !self.hw_enabled() {
            return if pin == 0 {
                Accepted::ExtInt
            } else {
                Accepted::Nmi
            };
        }
        let lvt = self.lvt[LVT_LINT0 + usize::from(pin & 1)];
        if lvt & LVT_MASKED != 0 {
            return Accepted::Ignored;
        }
        let mode = DeliveryMode::from_bits((lvt >> 8) as u8);
        match mode {
            DeliveryMode::Fixed => self.accept_fixed(lvt as u8, lvt & LVT_LEVEL != 0),
            DeliveryMode::Nmi | DeliveryMode::ExtInt | DeliveryMode::Init | DeliveryMode::Smi => {
                self.deliver(mode, lvt as u8, false)
            }
            _ => Accepted::Ignored,
        }
    }

    /// Whether the 8259A's INTR reaches this vCPU (LVT LINT0 unmasked in
    /// ExtINT mode, or the APIC globally disabled), as Xen's
    /// `vlapic_accept_pic_intr`.
    pub fn accepts_pic_interrupts(&self) -> bool {
        let lvt0 = self.lvt[LVT_LINT0];
        !self.hw_enabled()
            || (lvt0 & LVT_MASKED == 0
                && DeliveryMode::from_bits((lvt0 >> 8) as u8) == DeliveryMode::ExtInt)
    }

    // ----- timer -----------------------------------------------------

    fn timer_mode(&self) -> u32 {
        self.lvt[LVT_TIMER] & LVT_TIMER_MODE
    }

    fn divisor(&self) -> u64 {
        match ((self.tdcr & 8) >> 1) | (self.tdcr & 3) {
            7 => 1,
            v => 2 << v,
        }
    }

    fn ticks_to_ns(&self, ticks: u64) -> u64 {
        let ns = (u128::from(ticks) * u128::from(NS_PER_SEC)).div_ceil(u128::from(self.cfg.bus_hz));
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    fn arm_count(&mut self, now: u64) {
        if self.tmict == 0 {
            self.timer_deadline = None;
            return;
        }
        let mut len = self
            .ticks_to_ns(u64::from(self.tmict) * self.divisor())
            .max(1);
        if self.timer_mode() == TIMER_PERIODIC {
            len = len.max(MIN_PERIODIC_NS);
        }
        self.timer_len_ns = len;
        self.timer_deadline = Some(now.saturating_add(len));
    }

    /// When the timer next expires, in ns on the caller's clock.
    pub fn timer_deadline(&self) -> Option<u64> {
        self.timer_deadline
    }

    /// Expires the timer if its deadline has passed by `now`: the LVT
    /// timer vector goes to IRR unless masked; a periodic timer re-arms
    /// (missed periods coalesce into one interrupt). Returns whether the
    /// timer expired.
    pub fn poll_timer(&mut self, now: u64) -> bool {
        let Some(d) = self.timer_deadline else {
            return false;
        };
        if now < d {
            return false;
        }
        if self.timer_mode() == TIMER_PERIODIC {
            let len = self.timer_len_ns.max(1);
            let periods = (now - d) / len + 1;
            self.timer_deadline = Some(d.saturating_add(periods.saturating_mul(len)));
        } else {
            self.timer_deadline = None;
            if self.timer_mode() == TIMER_TSC_DEADLINE {
                self.tsc_deadline = 0;
            }
        }
        let lvt = self.lvt[LVT_TIMER];
        if lvt & LVT_MASKED == 0 {
            self.accept_fixed(lvt as u8, false);
        }
        true
    }

    fn current_count(&self, now: u64) -> u32 {
        let Some(d) = self.timer_deadline else {
            return 0;
        };
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            return 0;
        }
        let len = self.timer_len_ns.max(1);
        let rem = if now < d {
            d - now
        } else if self.timer_mode() == TIMER_PERIODIC {
            len - (now - d) % len
        } else {
            return 0;
        };
        let ticks = (u128::from(rem) * u128::from(self.cfg.bus_hz))
            .div_ceil(u128::from(NS_PER_SEC))
            .div_ceil(u128::from(self.divisor()));
        ticks.min(u128::from(self.tmict)) as u32
    }

    /// IA32_TSC_DEADLINE as the guest reads it (0 outside TSC-deadline mode).
    pub fn read_tsc_deadline(&self) -> u64 {
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            self.tsc_deadline
        } else {
            0
        }
    }

    /// A guest write of IA32_TSC_DEADLINE at `now` (guest TSC `now_tsc`).
    /// Ignored outside TSC-deadline mode; 0 disarms; a past deadline
    /// expires at once (on the next [`VLapic::poll_timer`]).
    pub fn write_tsc_deadline(&mut self, val: u64, now: u64, now_tsc: u64) {
        if self.timer_mode() != TIMER_TSC_DEADLINE {
            return;
        }
        self.tsc_deadline = val;
        if val == 0 {
            self.timer_deadline = None;
            return;
        }
        let delta = val.saturating_sub(now_tsc);
        let ns = (u128::from(delta) * u128::from(NS_PER_SEC)).div_ceil(u128::from(self.cfg.tsc_hz));
        self.timer_deadline = Some(now.saturating_add(u64::try_from(ns).unwrap_or(u64::MAX)));
    }

    fn write_lvt(&mut self, idx: usize, val: u32) {
        let mut mask = LVT_WRITABLE[idx];
        if idx == LVT_TIMER && !self.cfg.tsc_deadline {
            mask &= !TIMER_TSC_DEADLINE;
        }
        let mut new = (val & mask) | (self.lvt[idx] & LVT_REMOTE_IRR);
        if self.svr & SVR_ENABLE == 0 {
            new |= LVT_MASKED;
        }
        if idx == LVT_TIMER {
            let was_tsc = self.timer_mode() == TIMER_TSC_DEADLINE;
            let is_tsc = new & LVT_TIMER_MODE == TIMER_TSC_DEADLINE;
            if was_tsc != is_tsc {
                // SDM §10.5.4.1: changing to or from TSC-deadline disarms.
                self.tmict = 0;
                self.tsc_deadline = 0;
                self.timer_deadline = None;
            }
        }
        self.lvt[idx] = new;
    }

    // ----- register file -------------------------------------------------

    fn read_reg(&self, reg: u32, now: u64) -> u32 {
        match reg {
            REG_ID => {
                if self.x2apic() {
                    self.id
                } else {
                    self.id << 24
                }
            }
            REG_VERSION => APIC_VERSION,
            REG_TPR => self.tpr,
            REG_PPR => u32::from(self.ppr()),
            REG_LDR => self.ldr,
            REG_DFR => self.dfr,
            REG_SVR => self.svr,
            0x100..=0x170 => self.isr[((reg - REG_ISR) >> 4) as usize],
            0x180..=0x1f0 => self.tmr[((reg - REG_TMR) >> 4) as usize],
            0x200..=0x270 => self.irr[((reg - REG_IRR) >> 4) as usize],
            REG_ESR => self.esr,
            REG_ICR_LO => self.icr_lo,
            REG_ICR_HI => self.icr_hi,
            0x320..=0x370 => self.lvt[((reg - REG_LVT_TIMER) >> 4) as usize],
            REG_TMICT => self.tmict,
            REG_TMCCT => self.current_count(now),
            REG_TDCR => self.tdcr,
            _ => 0, // APR, RRD, EOI, absent registers
        }
    }

    fn send_ipi(&mut self) -> Action {
        let lo = self.icr_lo;
        let mode = DeliveryMode::from_bits((lo >> 8) as u8);
        let vector = (lo & ICR_VECTOR) as u8;
        let level = lo & ICR_LEVEL != 0;
        let shorthand = match (lo >> ICR_SHORTHAND_SHIFT) & 3 {
            0 => Shorthand::None,
            1 => Shorthand::SelfOnly,
            2 => Shorthand::AllIncludingSelf,
            _ => Shorthand::AllExcludingSelf,
        };
        match mode {
            DeliveryMode::Init if level && lo & ICR_ASSERT == 0 => return Action::None,
            DeliveryMode::Fixed | DeliveryMode::LowestPriority if vector < 16 => {
                self.error(ESR_SEND_ILLEGAL);
                return Action::None;
            }
            DeliveryMode::Reserved3 | DeliveryMode::ExtInt => return Action::None,
            _ => {}
        }
        let dest = if self.x2apic() {
            self.icr_hi
        } else {
            self.icr_hi >> 24
        };
        Action::Ipi(Ipi {
            mode,
            vector,
            level,
            logical: lo & ICR_LOGICAL != 0,
            dest,
            shorthand,
        })
    }

    fn write_svr(&mut self, val: u32) {
        self.svr = val & SVR_WRITABLE;
        if self.svr & SVR_ENABLE == 0 {
            for l in &mut self.lvt {
                *l |= LVT_MASKED;
            }
        }
    }

    /// Registers both modes write the same way.
    fn write_common(&mut self, reg: u32, val: u32, now: u64) -> Action {
        match reg {
            REG_TPR => self.tpr = val & 0xff,
            REG_EOI => {
                if let Some(v) = self.eoi() {
                    return Action::EoiBroadcast(v);
                }
            }
            REG_SVR => self.write_svr(val),
            REG_ESR => {
                self.esr = self.esr_pending;
                self.esr_pending = 0;
            }
            0x320..=0x370 => self.write_lvt(((reg - REG_LVT_TIMER) >> 4) as usize, val),
            // TSC-deadline mode ignores TMICT.
            REG_TMICT if self.timer_mode() != TIMER_TSC_DEADLINE => {
                self.tmict = val;
                self.arm_count(now);
            }
            REG_TDCR => self.tdcr = val & 0xb,
            _ => {}
        }
        Action::None
    }

    /// A guest 32-bit read at `offset` in the xAPIC page at `now`. Reads
    /// not aligned to a register, of absent or write-only registers, or
    /// while the page is not live (x2APIC mode, APIC disabled) give 0.
    pub fn mmio_read(&self, offset: u64, now: u64) -> u32 {
        if self.mmio_base().is_none() || offset & 0xf != 0 || offset >= 0x1000 {
            return 0;
        }
        self.read_reg(offset as u32, now)
    }

    /// A guest 32-bit write at `offset` in the xAPIC page at `now`. Writes
    /// to read-only, absent or misaligned registers are ignored.
    pub fn mmio_write(&mut self, offset: u64, val: u32, now: u64) -> Action {
        if self.mmio_base().is_none() || offset & 0xf != 0 || offset >= 0x1000 {
            return Action::None;
        }
        let reg = offset as u32;
        match reg {
            REG_LDR => self.ldr = val & 0xff00_0000,
            REG_DFR => self.dfr = (val & 0xf000_0000) | 0x0fff_ffff,
            REG_ICR_HI => self.icr_hi = val & 0xff00_0000,
            REG_ICR_LO => {
                self.icr_lo = val & ICR_WRITABLE;
                return self.send_ipi();
            }
            _ => return self.write_common(reg, val, now),
        }
        Action::None
    }

    /// A guest RDMSR of an x2APIC register (0x800–0x8ff) at `now`.
    pub fn read_msr(&self, msr: u32, now: u64) -> Result<u64, ApicFault> {
        if !self.x2apic() || !(MSR_X2APIC_FIRST..=MSR_X2APIC_LAST).contains(&msr) {
            return Err(ApicFault::Gp);
        }
        let reg = (msr - MSR_X2APIC_FIRST) << 4;
        match reg {
            REG_ICR_LO => Ok(u64::from(self.icr_hi) << 32 | u64::from(self.icr_lo)),
            REG_ID
            | REG_VERSION
            | REG_TPR
            | REG_PPR
            | REG_LDR
            | REG_SVR
            | 0x100..=0x270
            | REG_ESR
            | 0x320..=0x370
            | REG_TMICT
            | REG_TMCCT
            | REG_TDCR => Ok(u64::from(self.read_reg(reg, now))),
            _ => Err(ApicFault::Gp), // EOI, SELF IPI (write-only), APR, RRD, DFR, ICR2, absent
        }
    }

    /// A guest WRMSR of an x2APIC register (0x800–0x8ff) at `now`. Read-only
    /// registers, reserved bits and absent registers fault.
    pub fn write_msr(&mut self, msr: u32, val: u64, now: u64) -> Result<Action, ApicFault> {
        if !self.x2apic() || !(MSR_X2APIC_FIRST..=MSR_X2APIC_LAST).contains(&msr) {
            return Err(ApicFault::Gp);
        }
        let reg = (msr - MSR_X2APIC_FIRST) << 4;
        if reg == REG_ICR_LO {
            let lo = val as u32;
            if lo & !ICR_WRITABLE != 0 {
                return Err(ApicFault::Gp);
            }
            self.icr_lo = lo;
            self.icr_hi = (val >> 32) as u32;
            return Ok(self.send_ipi());
        }
        let v = u32::try_from(val).map_err(|_| ApicFault::Gp)?;
        let ok = match reg {
            REG_TPR => v & !0xff == 0,
            REG_EOI | REG_ESR => v == 0,
            REG_SVR => v & !SVR_WRITABLE == 0,
            0x320..=0x370 => {
                let idx = ((reg - REG_LVT_TIMER) >> 4) as usize;
                let mut mask = LVT_WRITABLE[idx];
                if idx == LVT_TIMER && !self.cfg.tsc_deadline {
                    mask &= !TIMER_TSC_DEADLINE;
                }
                v & !mask == 0
            }
            REG_TMICT => true,
            REG_TDCR => v & !0xb == 0,
            REG_SELF_IPI => v & !0xff == 0,
            _ => false,
        };
        if !ok {
            return Err(ApicFault::Gp);
        }
        if reg == REG_SELF_IPI {
            // SDM §10.12.11: a fixed, edge IPI to self.
            self.accept_fixed(v as u8, false);
            return Ok(Action::None);
        }
        Ok(self.write_common(reg, v, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u64 = 1000;
    const MS: u64 = 1_000_000;

    fn lapic(id: u32) -> VLapic {
        VLapic::new(id, id == 0, LapicConfig::default())
    }

    /// Linux's `setup_local_APIC` in xAPIC mode, abridged.
    fn linux_setup(a: &mut VLapic) {
        let t = 0;
        assert_eq!(a.mmio_read(0x30, t), APIC_VERSION);
        a.mmio_write(0x80, 0, t); // TPR
        a.mmio_write(0xe0, 0xffff_ffff, t); // flat DFR
        let ldr = a.mmio_read(0xd0, t) & !0xff00_0000;
        a.mmio_write(0xd0, ldr | (1 << (24 + a.id())), t);
        a.mmio_write(0xf0, 0x100 | 0xff, t); // SVR: enable, spurious 0xff
        a.mmio_write(0x350, 0x700, t); // LINT0 ExtINT (BSP)
        a.mmio_write(0x360, 0x400, t); // LINT1 NMI
        a.mmio_write(0x370, 0xfe, t); // error vector
        a.mmio_write(0x280, 0, t);
        a.mmio_write(0x280, 0, t);
    }

    #[test]
    fn save_and_restore_carry_registers_and_the_timer() {
        let mut a = lapic(0);
        linux_setup(&mut a);
        // A periodic timer of a million ticks, a pending and an in-service
        // vector, TPR.
        a.mmio_write(0x3e0, 0xb, 0); // divide by 1
        a.mmio_write(0x320, 0x2_00ec, 0);
        a.mmio_write(0x380, 1_000_000, 0);
        a.deliver(DeliveryMode::Fixed, 0x51, false);
        a.deliver(DeliveryMode::Fixed, 0x61, false);
        assert_eq!(a.ack(), Some(0x61));
        a.mmio_write(0x80, 0x20, 0);
        let tick = 1_000_000_000 / a.cfg.bus_hz; // ns (a whole number here)
        let now = 300_000 * tick;
        let (h, regs) = a.save(now);
        assert_eq!(h.timer_divisor, 1);
        assert_eq!(h.disabled, 0);
        assert_eq!(
            u32::from_le_bytes(regs[0x390..0x394].try_into().unwrap()),
            700_000
        );
        // Into a fresh LAPIC of the same ID, later on another clock.
        let mut b = lapic(0);
        let later = 5_000_000_000;
        b.restore(&h, &regs, later, 0).unwrap();
        for reg in [
            0x80u64, 0xd0, 0xe0, 0xf0, 0x110, 0x120, 0x160, 0x200, 0x320, 0x380, 0x3e0,
        ] {
            assert_eq!(
                b.mmio_read(reg, later),
                a.mmio_read(reg, now),
                "register {reg:#x}"
            );
        }
        assert!(b.isr_has(0x61));
        assert!(b.irr_has(0x51));
        // The first expiry is what was left (700,000 ticks).
        assert_eq!(b.mmio_read(0x390, later), 700_000);
        assert_eq!(b.timer_deadline(), Some(later + 700_000 * tick));
        assert_eq!(b.save(later).0, h);
        // Another APIC ID, a base with reserved bits: refused.
        let mut c = lapic(1);
        assert_eq!(
            c.restore(&h, &regs, later, 0),
            Err(LapicLoadError::IdMismatch)
        );
        let bad = LapicHidden {
            apic_base_msr: h.apic_base_msr | 1,
            ..h
        };
        assert_eq!(
            b.restore(&bad, &regs, later, 0),
            Err(LapicLoadError::BadBase)
        );
    }

    #[test]
    fn reset_state_and_version() {
        let a = lapic(0);
        assert_eq!(a.apic_base(), 0xfee0_0900);
        assert_eq!(a.mmio_read(0x20, 0), 0);
        assert_eq!(a.mmio_read(0xf0, 0), 0xff);
        assert_eq!(a.mmio_read(0xe0, 0), 0xffff_ffff);
        assert_eq!(a.mmio_read(0x320, 0), 0x10000);
        assert!(!a.enabled());
        let b = lapic(3);
        assert_eq!(b.mmio_read(0x20, 0), 3 << 24);
        assert_eq!(b.apic_base(), 0xfee0_0800);
    }

    #[test]
    fn setup_and_read_only_registers() {
        let mut a = lapic(1);
        // LVTs can't be unmasked while software-disabled.
        a.mmio_write(0x320, 0xec, 0);
        assert_eq!(a.mmio_read(0x320, 0), 0x100ec);
        linux_setup(&mut a);
        assert!(a.enabled());
        assert_eq!(a.mmio_read(0xd0, 0), 0x0200_0000);
        assert_eq!(a.mmio_read(0x350, 0), 0x700);
        assert!(a.accepts_pic_interrupts());
        // Read-only registers ignore writes.
        a.mmio_write(0x20, 0x0500_0000, 0);
        a.mmio_write(0x30, 0, 0);
        a.mmio_write(0xa0, 0xff, 0);
        a.mmio_write(0x200, 0xffff_ffff, 0);
        assert_eq!(a.mmio_read(0x20, 0), 1 << 24);
        assert_eq!(a.mmio_read(0x30, 0), APIC_VERSION);
        assert_eq!(a.mmio_read(0x200, 0), 0);
        // Reserved bits masked.
        a.mmio_write(0x80, 0xffff_ffff, 0);
        assert_eq!(a.mmio_read(0x80, 0), 0xff);
        a.mmio_write(0x80, 0, 0);
        a.mmio_write(0x370, 0xffff_ffff, 0);
        assert_eq!(a.mmio_read(0x370, 0), 0x100ff);
        a.mmio_write(0x360, 0xffff_ffff, 0);
        assert_eq!(a.mmio_read(0x360, 0), 0x1a7ff);
        a.mmio_write(0xf0, 0xffff_ffff, 0);
        assert_eq!(a.mmio_read(0xf0, 0), 0x3ff);
        // Misaligned access ignored.
        a.mmio_write(0x84, 0x10, 0);
        assert_eq!(a.mmio_read(0x84, 0), 0);
        // Disabling in SVR masks every LVT.
        a.mmio_write(0xf0, 0xff, 0);
        assert_eq!(a.mmio_read(0x350, 0), 0x10700);
    }

    #[test]
    fn priority_tpr_ppr_and_eoi() {
        let mut a = lapic(0);
        // Disabled: fixed interrupts are dropped.
        assert_eq!(
            a.deliver(DeliveryMode::Fixed, 0x40, false),
            Accepted::Ignored
        );
        linux_setup(&mut a);
        assert_eq!(
            a.deliver(DeliveryMode::Fixed, 0x41, false),
            Accepted::Pending
        );
        assert_eq!(
            a.deliver(DeliveryMode::Fixed, 0x52, true),
            Accepted::Pending
        );
        assert_eq!(a.pending_vector(), Some(0x52));
        // TPR 0x50 blocks class 5 and below.
        a.mmio_write(0x80, 0x50, 0);
        assert_eq!(a.pending_vector(), None);
        assert_eq!(a.mmio_read(0xa0, 0), 0x50);
        a.mmio_write(0x80, 0x4f, 0);
        assert_eq!(a.ack(), Some(0x52));
        assert_eq!(a.mmio_read(0x100 + 0x20, 0), 1 << (0x52 - 0x40));
        // PPR = ISRV class; 0x41 is class 4: blocked by in-service class 5.
        assert_eq!(a.ppr(), 0x50);
        assert_eq!(a.pending_vector(), None);
        // Same-class higher vector also waits (class must be higher).
        a.deliver(DeliveryMode::Fixed, 0x5f, false);
        assert_eq!(a.pending_vector(), None);
        a.deliver(DeliveryMode::Fixed, 0x60, false);
        assert_eq!(a.ack(), Some(0x60));
        // EOI of an edge vector: no broadcast; of the level one: broadcast.
        assert_eq!(a.mmio_write(0xb0, 0, 0), Action::None);
        assert_eq!(a.mmio_write(0xb0, 0, 0), Action::EoiBroadcast(0x52));
        assert_eq!(a.ack(), Some(0x5f));
        a.eoi();
        assert_eq!(a.pending_vector(), None, "0x41 is TPR-blocked (0x4f)");
        a.mmio_write(0x80, 0, 0);
        assert_eq!(a.ack(), Some(0x41));
        a.eoi();
        assert_eq!(a.eoi(), None, "EOI with nothing in service");
        // Illegal vector: ESR after the write-to-update protocol, and the
        // error LVT vector requested.
        assert_eq!(a.deliver(DeliveryMode::Fixed, 3, false), Accepted::Ignored);
        assert_eq!(a.mmio_read(0x280, 0), 0);
        a.mmio_write(0x280, 0, 0);
        assert_eq!(a.mmio_read(0x280, 0), ESR_RECV_ILLEGAL);
        assert!(a.irr_has(0xfe));
    }

    #[test]
    fn timer_one_shot_and_periodic() {
        let mut a = lapic(0);
        linux_setup(&mut a);
        // lapic_timer_set_oneshot: LVT 0xec, divide by 16 (TDCR 3), count.
        a.mmio_write(0x320, 0xec, 0);
        a.mmio_write(0x3e0, 0x3, 0);
        a.mmio_write(0x380, 62_500, 10 * US); // 1 ms at 1 GHz / 16
        assert_eq!(a.timer_deadline(), Some(10 * US + MS));
        assert_eq!(a.mmio_read(0x390, 10 * US + MS / 2), 31_250);
        assert!(!a.poll_timer(10 * US + MS - 1));
        assert!(a.poll_timer(10 * US + MS));
        assert_eq!(a.pending_vector(), Some(0xec));
        assert_eq!(a.timer_deadline(), None);
        assert_eq!(a.mmio_read(0x390, 2 * MS), 0);
        assert_eq!(a.ack(), Some(0xec));
        a.mmio_write(0xb0, 0, 0);
        // Periodic (lapic_timer_set_periodic: LVT | 0x20000), divide by 1.
        a.mmio_write(0x320, 0x200ec, 2 * MS);
        a.mmio_write(0x3e0, 0xb, 2 * MS);
        a.mmio_write(0x380, 4_000_000, 2 * MS); // 4 ms
        assert!(a.poll_timer(6 * MS));
        assert_eq!(a.timer_deadline(), Some(10 * MS));
        // Three periods late: one interrupt, next deadline on the grid.
        assert!(a.poll_timer(22 * MS + 1));
        assert_eq!(a.timer_deadline(), Some(26 * MS));
        assert_eq!(a.mmio_read(0x390, 23 * MS), 3_000_000);
        // Masked: expires, no interrupt.
        a.ack();
        a.eoi();
        a.mmio_write(0x320, 0x300ec, 23 * MS);
        assert!(a.poll_timer(26 * MS));
        assert_eq!(a.pending_vector(), None);
        // A tiny periodic count is clamped to the minimum period.
        a.mmio_write(0x320, 0x200ec, 30 * MS);
        a.mmio_write(0x380, 1, 30 * MS);
        assert_eq!(a.timer_deadline(), Some(30 * MS + MIN_PERIODIC_NS));
        // Count 0 stops it.
        a.mmio_write(0x380, 0, 30 * MS);
        assert_eq!(a.timer_deadline(), None);
    }

    #[test]
    fn timer_tsc_deadline() {
        let cfg = LapicConfig {
            tsc_hz: 2_000_000_000,
            ..LapicConfig::default()
        };
        let mut a = VLapic::new(0, true, cfg);
        linux_setup(&mut a);
        // Not in TSC-deadline mode: the MSR write is ignored.
        a.write_tsc_deadline(1000, 0, 0);
        assert_eq!(a.read_tsc_deadline(), 0);
        // lapic_timer_set_oneshot(tsc_deadline): LVT 0x400ec.
        a.mmio_write(0x320, 0x400ec, 0);
        assert_eq!(a.mmio_read(0x320, 0), 0x400ec);
        a.mmio_write(0x380, 1000, 0);
        assert_eq!(a.mmio_read(0x380, 0), 0, "TMICT ignored");
        // 2 GHz TSC: 2,000,000 cycles = 1 ms.
        a.write_tsc_deadline(5_000_000, 0, 3_000_000);
        assert_eq!(a.read_tsc_deadline(), 5_000_000);
        assert_eq!(a.timer_deadline(), Some(MS));
        assert!(a.poll_timer(MS));
        assert_eq!(a.read_tsc_deadline(), 0);
        assert_eq!(a.ack(), Some(0xec));
        // In the past: fires at once. 0 disarms.
        a.write_tsc_deadline(1, 5 * MS, 10_000_000);
        assert_eq!(a.timer_deadline(), Some(5 * MS));
        a.write_tsc_deadline(0, 5 * MS, 10_000_000);
        assert_eq!(a.timer_deadline(), None);
        // Leaving TSC-deadline mode disarms.
        a.write_tsc_deadline(u64::MAX, 5 * MS, 0);
        a.mmio_write(0x320, 0xec, 6 * MS);
        assert_eq!(a.timer_deadline(), None);
        // Without CPUID support the mode bit is reserved.
        let mut b = VLapic::new(
            0,
            true,
            LapicConfig {
                tsc_deadline: false,
                ..cfg
            },
        );
        linux_setup(&mut b);
        b.mmio_write(0x320, 0x400ec, 0);
        assert_eq!(b.mmio_read(0x320, 0), 0xec);
    }

    #[test]
    fn smp_bringup_init_sipi_sipi() {
        // Linux wakeup_secondary_cpu_via_init for APIC ID 2.
        let mut bsp = lapic(0);
        linux_setup(&mut bsp);
        let mut ap = lapic(2);
        let t = 0;
        bsp.mmio_write(0x310, 2 << 24, t);
        let init = bsp.mmio_write(0x300, 0xc500, t); // level, assert, INIT
        let Action::Ipi(ipi) = init else {
            panic!("{init:?}")
        };
        assert_eq!(
            ipi,
            Ipi {
                mode: DeliveryMode::Init,
                vector: 0,
                level: true,
                logical: false,
                dest: 2,
                shorthand: Shorthand::None
            }
        );
        assert!(ap.is_ipi_target(&ipi, false));
        assert!(!bsp.is_ipi_target(&ipi, true));
        assert_eq!(ap.deliver(ipi.mode, ipi.vector, ipi.level), Accepted::Init);
        ap.init();
        // INIT de-assert: nothing to route.
        bsp.mmio_write(0x310, 2 << 24, t);
        assert_eq!(bsp.mmio_write(0x300, 0x8500, t), Action::None);
        for _ in 0..2 {
            bsp.mmio_write(0x310, 2 << 24, t);
            let sipi = bsp.mmio_write(0x300, 0x0600 | 0x9a, t);
            let Action::Ipi(ipi) = sipi else {
                panic!("{sipi:?}")
            };
            assert_eq!(
                (ipi.mode, ipi.vector, ipi.dest),
                (DeliveryMode::StartUp, 0x9a, 2)
            );
            assert!(ap.is_ipi_target(&ipi, false));
            // The AP's APIC is software-disabled but still takes SIPI.
            assert_eq!(
                ap.deliver(ipi.mode, ipi.vector, false),
                Accepted::StartUp(0x9a)
            );
            // Delivery status reads idle.
            assert_eq!(bsp.mmio_read(0x300, t) & (1 << 12), 0);
        }
        // Broadcast INIT with the all-excluding-self shorthand.
        let Action::Ipi(all) = bsp.mmio_write(0x300, 0x000c_4500, t) else {
            panic!()
        };
        assert_eq!(all.shorthand, Shorthand::AllExcludingSelf);
        assert!(ap.is_ipi_target(&all, false));
        assert!(!bsp.is_ipi_target(&all, true));
        // Fixed IPI with an illegal vector: ESR send-illegal, no IPI.
        assert_eq!(bsp.mmio_write(0x300, 0x0005, t), Action::None);
        bsp.mmio_write(0x280, 0, t);
        assert_eq!(bsp.mmio_read(0x280, t) & ESR_SEND_ILLEGAL, ESR_SEND_ILLEGAL);
    }

    #[test]
    fn logical_destinations() {
        let mut a = lapic(1);
        linux_setup(&mut a); // flat, LDR bit 1
        assert!(a.matches(true, 0x02));
        assert!(a.matches(true, 0x03));
        assert!(!a.matches(true, 0x04));
        assert!(a.matches(true, 0xff));
        assert!(a.matches(false, 1));
        assert!(a.matches(false, 0xff));
        assert!(!a.matches(false, 2));
        // Cluster model: cluster 3, member bit 2.
        a.mmio_write(0xe0, 0x0fff_ffff, 0);
        a.mmio_write(0xd0, 0x3400_0000, 0);
        assert_eq!(a.mmio_read(0xe0, 0), 0x0fff_ffff);
        assert!(a.matches(true, 0x34));
        assert!(a.matches(true, 0x3c));
        assert!(!a.matches(true, 0x24));
        assert!(!a.matches(true, 0x38));
    }

    #[test]
    fn x2apic_msrs() {
        let mut a = lapic(0x23);
        // Not in x2APIC mode: the MSRs fault.
        assert_eq!(a.read_msr(0x802, 0), Err(ApicFault::Gp));
        // Illegal transitions.
        assert_eq!(a.write_apic_base(0xfee0_0400), Err(ApicFault::Gp));
        assert_eq!(a.write_apic_base(0xfee0_0c00 | 1 << 63), Err(ApicFault::Gp));
        a.write_apic_base(0xfee0_0c00).unwrap();
        assert!(a.x2apic());
        assert_eq!(a.mmio_base(), None);
        assert_eq!(a.mmio_read(0x30, 0), 0, "MMIO page not live");
        assert_eq!(a.write_apic_base(0xfee0_0800), Err(ApicFault::Gp), "x2 → x");
        assert_eq!(a.read_msr(0x802, 0), Ok(0x23));
        assert_eq!(a.read_msr(0x803, 0), Ok(u64::from(APIC_VERSION)));
        // LDR: cluster 2, bit 3.
        assert_eq!(a.read_msr(0x80d, 0), Ok(0x0002_0008));
        assert_eq!(a.write_msr(0x80d, 0, 0), Err(ApicFault::Gp));
        assert_eq!(a.write_msr(0x802, 0, 0), Err(ApicFault::Gp));
        assert_eq!(a.read_msr(0x80e, 0), Err(ApicFault::Gp), "no DFR");
        assert_eq!(a.read_msr(0x80b, 0), Err(ApicFault::Gp), "EOI write-only");
        assert_eq!(a.read_msr(0x831, 0), Err(ApicFault::Gp));
        assert_eq!(a.write_msr(0x808, 0x100, 0), Err(ApicFault::Gp));
        assert_eq!(a.write_msr(0x808, 1 << 32, 0), Err(ApicFault::Gp));
        a.write_msr(0x80f, 0x1ff, 0).unwrap();
        assert!(a.enabled());
        assert_eq!(a.write_msr(0x828, 1, 0), Err(ApicFault::Gp));
        a.write_msr(0x828, 0, 0).unwrap();
        // ICR as one 64-bit MSR: fixed IPI 0xf3 to x2APIC ID 0x1_0005.
        let act = a.write_msr(0x830, 0x0001_0005_0000_00f3, 0).unwrap();
        let Action::Ipi(ipi) = act else { panic!() };
        assert_eq!(
            (ipi.dest, ipi.vector, ipi.mode),
            (0x1_0005, 0xf3, DeliveryMode::Fixed)
        );
        assert_eq!(a.read_msr(0x830, 0), Ok(0x0001_0005_0000_00f3));
        assert_eq!(a.write_msr(0x830, 1 << 12 | 0xf3, 0), Err(ApicFault::Gp));
        // Logical x2APIC destinations: cluster 2, bits 3 and 4.
        assert!(a.matches(true, 0x0002_0018));
        assert!(!a.matches(true, 0x0003_0008));
        assert!(a.matches(true, u32::MAX));
        assert!(a.matches(false, 0x23));
        // SELF IPI.
        a.write_msr(0x83f, 0x55, 0).unwrap();
        assert_eq!(a.ack(), Some(0x55));
        assert_eq!(a.write_msr(0x80b, 1, 0), Err(ApicFault::Gp));
        assert_eq!(a.write_msr(0x80b, 0, 0), Ok(Action::None));
        assert_eq!(a.write_msr(0x83f, 0x100, 0), Err(ApicFault::Gp));
        // Timer through MSRs.
        a.write_msr(0x832, 0xec, 0).unwrap();
        a.write_msr(0x83e, 0xb, 0).unwrap();
        a.write_msr(0x838, 1000, 0).unwrap();
        assert_eq!(a.read_msr(0x839, 500), Ok(500));
        assert_eq!(a.write_msr(0x839, 0, 0), Err(ApicFault::Gp));
        // INIT keeps x2APIC mode and the derived LDR.
        a.init();
        assert!(a.x2apic());
        assert_eq!(a.read_msr(0x80d, 0), Ok(0x0002_0008));
        // Disabling resets; re-enabling goes back to xAPIC first.
        a.write_apic_base(0xfee0_0000).unwrap();
        assert_eq!(a.write_apic_base(0xfee0_0c00), Err(ApicFault::Gp));
        a.write_apic_base(0xfee0_0800).unwrap();
        assert_eq!(a.mmio_read(0xf0, 0), 0xff);
    }

    #[test]
    fn lint_pins() {
        let mut a = lapic(0);
        assert_eq!(a.lint(0), Accepted::Ignored, "LVT masked at reset");
        linux_setup(&mut a);
        assert_eq!(a.lint(0), Accepted::ExtInt);
        assert_eq!(a.lint(1), Accepted::Nmi);
        a.mmio_write(0x350, 0x8031, 0); // fixed, level, vector 0x31
        assert_eq!(a.lint(0), Accepted::Pending);
        assert!(!a.accepts_pic_interrupts());
        assert_eq!(a.ack(), Some(0x31));
        assert_eq!(a.eoi(), Some(0x31));
        a.write_apic_base(0).unwrap();
        assert_eq!(a.lint(0), Accepted::ExtInt);
        assert!(a.accepts_pic_interrupts());
    }

    #[test]
    fn random_access_never_panics() {
        let mut seed = 0x5eed_1234_abcd_0987u64;
        let mut rnd = || {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        for i in 0..40u32 {
            let cfg = LapicConfig {
                bus_hz: if i % 5 == 0 { 0 } else { rnd() % 3_000_000_000 },
                tsc_hz: if i % 7 == 0 { 0 } else { rnd() },
                tsc_deadline: i % 2 == 0,
            };
            let mut a = VLapic::new(rnd() as u32, i % 3 == 0, cfg);
            let mut now = 0u64;
            for _ in 0..3000 {
                let r = rnd();
                now = match r % 11 {
                    0 => r >> 1,
                    _ => now.saturating_add(r >> 40),
                };
                let val = rnd();
                match (r >> 8) % 12 {
                    0 | 1 => {
                        a.mmio_write((r >> 16) % 0x1100, val as u32, now);
                    }
                    2 => {
                        a.mmio_read((r >> 16) % 0x1100, now);
                    }
                    3 | 4 => {
                        let _ =
                            a.write_msr(0x7f0 + ((r >> 16) % 0x120) as u32, val >> (r % 64), now);
                    }
                    5 => {
                        let _ = a.read_msr(0x7f0 + ((r >> 16) % 0x120) as u32, now);
                    }
                    6 => {
                        let _ = a.write_apic_base(val & 0xfee0_0d00);
                    }
                    7 => {
                        a.deliver(
                            DeliveryMode::from_bits(val as u8),
                            (val >> 8) as u8,
                            val & 1 != 0,
                        );
                    }
                    8 => {
                        a.write_tsc_deadline(val, now, rnd());
                    }
                    9 => {
                        a.poll_timer(now);
                        a.timer_deadline();
                    }
                    10 => {
                        a.ack();
                        a.eoi();
                        a.lint((val & 1) as u8);
                    }
                    _ => {
                        let ipi = Ipi {
                            mode: DeliveryMode::Fixed,
                            vector: val as u8,
                            level: false,
                            logical: val & 2 != 0,
                            dest: (val >> 8) as u32,
                            shorthand: Shorthand::None,
                        };
                        a.is_ipi_target(&ipi, false);
                        a.ppr();
                    }
                }
            }
        }
    }
}
