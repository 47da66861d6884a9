//! The ACPI fixed hardware of an HVM guest (Xen's `pmtimer.c` plus the
//! PM1 control register QEMU's PIIX4 PM function gives Xen guests): the
//! PM1a event block (status, enable), the PM1a control block (SCI_EN,
//! SLP_TYP/SLP_EN), the 32-bit PM timer and an empty GPE0 block, at the
//! ports the FADT of `dom0-tools/src/builder/acpi.rs` names.
//!
//! **Owns**: those registers, byte by byte (the guest may use any width:
//! each register is a little-endian byte array, so a wide access is its
//! bytes in order, as on the LPC bus), the PM timer's epoch, and the SCI
//! level. **Trusts**: the caller's clock (`now`, ns, monotonic); nothing
//! from the guest: status bits are write-1-to-clear, read-only bits keep
//! their value, and a sleep request other than S5 is ignored.
//!
//! **Follows** ACPI 6.5 §4.8.3 (PM1 status/enable/control bits, PM timer
//! at 3.579545 MHz with TMR_VAL_EXT: 32 bits, TMR_STS on each toggle of
//! bit 31) and Xen 4.17's `xen/arch/x86/hvm/pmtimer.c` (the SCI is
//! `PM1a_STS & PM1a_EN & (TMR | PWRBTN | SLPBTN)`; power-button presses
//! from the toolstack set PWRBTN_STS). SCI_EN reads as 1 and cannot be
//! cleared: the FADT has SMI_CMD = 0, so the platform is always in ACPI
//! mode.

/// The PM timer's input clock, Hz (ACPI 6.5 §4.8.3.3).
pub const PM_TIMER_HZ: u64 = 3_579_545;
const NS_PER_SEC: u64 = 1_000_000_000;

// PM1 status and enable bits (ACPI 6.5 tables 4.16, 4.17).
/// PM1_STS/EN: PM timer carry (bit 31 toggled).
pub const PM1_TMR: u16 = 1 << 0;
/// PM1_STS: bus master status (no bus masters here).
const PM1_BM_STS: u16 = 1 << 4;
/// PM1_STS/EN: global lock release.
const PM1_GBL: u16 = 1 << 5;
/// PM1_STS/EN: power button.
pub const PM1_PWRBTN: u16 = 1 << 8;
/// PM1_STS/EN: sleep button.
pub const PM1_SLPBTN: u16 = 1 << 9;
/// PM1_STS/EN: RTC alarm.
const PM1_RTC: u16 = 1 << 10;
/// PM1_STS: wake status.
const PM1_WAK_STS: u16 = 1 << 15;
/// Status bits that exist (the rest read 0).
const PM1_STS_MASK: u16 =
    PM1_TMR | PM1_BM_STS | PM1_GBL | PM1_PWRBTN | PM1_SLPBTN | PM1_RTC | PM1_WAK_STS;
/// Enable bits that exist.
const PM1_EN_MASK: u16 = PM1_TMR | PM1_GBL | PM1_PWRBTN | PM1_SLPBTN | PM1_RTC;
/// Status bits that raise the SCI when enabled (Xen's `pmt_update_sci`).
const PM1_SCI_SOURCES: u16 = PM1_TMR | PM1_PWRBTN | PM1_SLPBTN;

// PM1 control bits (ACPI 6.5 table 4.18).
/// SCI_EN: read-only 1 here.
pub const PM1_CNT_SCI_EN: u16 = 1 << 0;
const PM1_CNT_BM_RLD: u16 = 1 << 1;
const PM1_CNT_SLP_TYP_SHIFT: u32 = 10;
const PM1_CNT_SLP_TYP: u16 = 7 << PM1_CNT_SLP_TYP_SHIFT;
/// SLP_EN: write-only, reads 0.
pub const PM1_CNT_SLP_EN: u16 = 1 << 13;
const PM1_CNT_WRITABLE: u16 = PM1_CNT_BM_RLD | PM1_CNT_SLP_TYP;

/// Most GPE0 bytes kept (status half + enable half).
const GPE0_MAX: usize = 16;

/// Where the registers are, and the `\_S5` SLP_TYP. The same values as
/// `dom0-tools`' `PmPorts` (which builds the FADT/DSDT the guest reads):
/// the two must agree, so change them together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmConfig {
    /// PM1a event block (4 bytes: status, enable).
    pub pm1a_evt: u16,
    /// PM1a control block (2 bytes).
    pub pm1a_cnt: u16,
    /// The PM timer (4 bytes).
    pub pm_tmr: u16,
    /// GPE0 block and its length in bytes (even; at most 16 are kept).
    pub gpe0: Option<(u16, u8)>,
    /// SLP_TYP for S5.
    pub s5_slp_typ: u8,
}

impl PmConfig {
    /// `HVM_PARAM_ACPI_IOPORTS_LOCATION` 0 (`ACPI_*_ADDRESS_V0`), S5 = 7.
    pub const XEN_V0: PmConfig = PmConfig {
        pm1a_evt: 0x1f40,
        pm1a_cnt: 0x1f44,
        pm_tmr: 0x1f48,
        gpe0: Some((0x1f68, 8)),
        s5_slp_typ: 7,
    };
    /// Location 1 (`ACPI_*_ADDRESS_V1`, QEMU's PIIX4 ports), S5 = 0: what
    /// `dom0-tools`' `Platform::HVM_DEFAULT` puts in the FADT.
    pub const XEN_V1: PmConfig = PmConfig {
        pm1a_evt: 0xb000,
        pm1a_cnt: 0xb004,
        pm_tmr: 0xb008,
        gpe0: Some((0xafe0, 4)),
        s5_slp_typ: 0,
    };
}

impl Default for PmConfig {
    fn default() -> Self {
        Self::XEN_V1
    }
}

/// What a write asked of the platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmRequest {
    /// SLP_EN with the S5 SLP_TYP: power off.
    PowerOff,
}

/// Bytes of Xen's `struct hvm_hw_pmtimer` (save record `PMTIMER`).
pub const PMTIMER_SAVE_LEN: usize = 8;

/// The ACPI PM block.
#[derive(Clone, Debug)]
pub struct VAcpi {
    cfg: PmConfig,
    pm1_sts: u16,
    pm1_en: u16,
    pm1_cnt: u16,
    gpe: [u8; GPE0_MAX],
    /// The PM timer reads 0 at this time.
    epoch_ns: u64,
    /// Bit-31 toggles already reflected in TMR_STS.
    msb_seen: u64,
}

fn ticks_at(ns: u64) -> u64 {
    (u128::from(ns) * u128::from(PM_TIMER_HZ) / u128::from(NS_PER_SEC)) as u64
}

impl VAcpi {
    /// The block after reset at `now`: nothing pending or enabled, SCI_EN
    /// set, the timer starting at 0.
    pub fn new(cfg: PmConfig, now: u64) -> Self {
        Self {
            cfg,
            pm1_sts: 0,
            pm1_en: 0,
            pm1_cnt: PM1_CNT_SCI_EN,
            gpe: [0; GPE0_MAX],
            epoch_ns: now,
            msb_seen: 0,
        }
    }

    /// The port layout.
    pub fn config(&self) -> &PmConfig {
        &self.cfg
    }

    fn gpe_len(&self) -> u16 {
        self.cfg
            .gpe0
            .map_or(0, |(_, len)| u16::from(len).min(GPE0_MAX as u16) & !1)
    }

    /// Which register and byte `port` is.
    fn decode(&self, port: u16) -> Option<(Reg, u16)> {
        let c = &self.cfg;
        let off = |base: u16, len: u16| port.checked_sub(base).filter(|&o| o < len);
        if let Some(o) = off(c.pm1a_evt, 4) {
            return Some(if o < 2 {
                (Reg::Pm1Sts, o)
            } else {
                (Reg::Pm1En, o - 2)
            });
        }
        if let Some(o) = off(c.pm1a_cnt, 2) {
            return Some((Reg::Pm1Cnt, o));
        }
        if let Some(o) = off(c.pm_tmr, 4) {
            return Some((Reg::Tmr, o));
        }
        let (gpe, _) = c.gpe0?;
        off(gpe, self.gpe_len()).map(|o| (Reg::Gpe, o))
    }

    /// Whether `port` is one of the block's bytes.
    pub fn handles(&self, port: u16) -> bool {
        self.decode(port).is_some()
    }

    /// The PM timer's count at `now` (24 bits would wrap at bit 23; with
    /// TMR_VAL_EXT the full 32 bits count).
    /// Xen's `struct hvm_hw_pmtimer` at `now`: the timer's value,
    /// PM1a_STS (up to date) and PM1a_EN.
    pub fn save(&self, now: u64) -> [u8; PMTIMER_SAVE_LEN] {
        let mut at = self.clone();
        at.update(now);
        let mut b = [0u8; PMTIMER_SAVE_LEN];
        b[0..4].copy_from_slice(&at.timer(now).to_le_bytes());
        b[4..6].copy_from_slice(&at.pm1_sts.to_le_bytes());
        b[6..8].copy_from_slice(&at.pm1_en.to_le_bytes());
        b
    }

    /// Loads a saved PM timer at `now`: it goes on counting from the saved
    /// value (Xen's `pmtimer_load`).
    pub fn restore(&mut self, b: &[u8; PMTIMER_SAVE_LEN], now: u64) {
        let val = u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let ns = u64::try_from(
            (u128::from(val) * u128::from(NS_PER_SEC)).div_ceil(u128::from(PM_TIMER_HZ)),
        )
        .unwrap_or(0);
        self.epoch_ns = now.saturating_sub(ns);
        self.msb_seen = ticks_at(now.saturating_sub(self.epoch_ns)) >> 31;
        self.pm1_sts = u16::from_le_bytes([b[4], b[5]]);
        self.pm1_en = u16::from_le_bytes([b[6], b[7]]);
    }

    pub fn timer(&self, now: u64) -> u32 {
        ticks_at(now.saturating_sub(self.epoch_ns)) as u32
    }

    /// Brings TMR_STS up to date with `now`.
    fn update(&mut self, now: u64) {
        let toggles = ticks_at(now.saturating_sub(self.epoch_ns)) >> 31;
        if toggles > self.msb_seen {
            self.msb_seen = toggles;
            self.pm1_sts |= PM1_TMR;
        }
    }

    /// A guest `in` of one byte at `now`; 0xff for ports outside the block.
    pub fn read(&mut self, port: u16, now: u64) -> u8 {
        self.update(now);
        let Some((reg, byte)) = self.decode(port) else {
            return 0xff;
        };
        let word = |v: u16| (v >> (8 * byte)) as u8;
        match reg {
            Reg::Pm1Sts => word(self.pm1_sts),
            Reg::Pm1En => word(self.pm1_en),
            Reg::Pm1Cnt => word(self.pm1_cnt),
            Reg::Tmr => (self.timer(now) >> (8 * byte)) as u8,
            Reg::Gpe => self.gpe[usize::from(byte)],
        }
    }

    /// A guest `out` of one byte at `now`. Returns what the platform must
    /// do (power off), if anything.
    pub fn write(&mut self, port: u16, val: u8, now: u64) -> Option<PmRequest> {
        self.update(now);
        let (reg, byte) = self.decode(port)?;
        // The 16-bit registers' lanes (bytes 0 and 1).
        let shift = 8 * u32::from(byte.min(1));
        let bits = u16::from(val) << shift;
        let lane = 0xffu16 << shift;
        match reg {
            Reg::Pm1Sts => self.pm1_sts &= !(bits & PM1_STS_MASK),
            Reg::Pm1En => self.pm1_en = (self.pm1_en & !lane) | (bits & PM1_EN_MASK),
            Reg::Pm1Cnt => {
                let w = lane & PM1_CNT_WRITABLE;
                self.pm1_cnt = (self.pm1_cnt & !w) | (bits & w);
                if bits & PM1_CNT_SLP_EN != 0 {
                    let typ = (self.pm1_cnt & PM1_CNT_SLP_TYP) >> PM1_CNT_SLP_TYP_SHIFT;
                    // Only S5 exists (the DSDT names no other state).
                    if typ == u16::from(self.cfg.s5_slp_typ & 7) {
                        return Some(PmRequest::PowerOff);
                    }
                }
            }
            Reg::Tmr => {} // Read-only.
            Reg::Gpe => {
                let half = self.gpe_len() / 2;
                let slot = &mut self.gpe[usize::from(byte)];
                if byte < half {
                    *slot &= !val; // Status: write 1 to clear.
                } else {
                    *slot = val;
                }
            }
        }
        None
    }

    /// The toolstack's power button (`xl trigger power`): PWRBTN_STS.
    pub fn press_power_button(&mut self) {
        self.pm1_sts |= PM1_PWRBTN;
    }

    /// Whether the SCI (IRQ 9) is asserted at `now`.
    pub fn sci(&mut self, now: u64) -> bool {
        self.update(now);
        let half = usize::from(self.gpe_len() / 2);
        let gpe = (0..half).any(|i| self.gpe[i] & self.gpe[half + i] != 0);
        self.pm1_sts & self.pm1_en & PM1_SCI_SOURCES != 0 || gpe
    }

    /// When TMR_STS will next be set, if the timer's SCI is enabled and
    /// not already pending (otherwise nothing here needs a timer).
    pub fn next_deadline(&self) -> Option<u64> {
        if self.pm1_en & PM1_TMR == 0 || self.pm1_sts & PM1_TMR != 0 {
            return None;
        }
        let ticks = self.msb_seen.checked_add(1)?.checked_mul(1 << 31)?;
        let ns = (u128::from(ticks) * u128::from(NS_PER_SEC)).div_ceil(u128::from(PM_TIMER_HZ));
        Some(
            self.epoch_ns
                .saturating_add(u64::try_from(ns).unwrap_or(u64::MAX)),
        )
    }
}

/// The registers of the block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reg {
    Pm1Sts,
    Pm1En,
    Pm1Cnt,
    Tmr,
    Gpe,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn rd16(a: &mut VAcpi, port: u16, now: u64) -> u16 {
        u16::from(a.read(port, now)) | u16::from(a.read(port + 1, now)) << 8
    }

    fn wr16(a: &mut VAcpi, port: u16, val: u16, now: u64) -> Option<PmRequest> {
        let lo = a.write(port, val as u8, now);
        let hi = a.write(port + 1, (val >> 8) as u8, now);
        lo.or(hi)
    }

    #[test]
    fn save_and_restore_carry_on_counting() {
        let mut a = VAcpi::new(PmConfig::XEN_V1, 0);
        wr16(&mut a, PmConfig::XEN_V1.pm1a_evt + 2, PM1_TMR, 0); // enable TMR_STS's SCI
        let s = a.save(NS_PER_SEC);
        let v = u32::from_le_bytes(s[0..4].try_into().unwrap());
        assert_eq!(v, PM_TIMER_HZ as u32);
        assert_eq!(u16::from_le_bytes([s[6], s[7]]), PM1_TMR);
        // Elsewhere, at another time: the same value, then on from there.
        let mut b = VAcpi::new(PmConfig::XEN_V1, 0);
        let t = 77 * NS_PER_SEC;
        b.restore(&s, t);
        assert!(b.timer(t).abs_diff(v) <= 1);
        assert!(b.timer(t + NS_PER_SEC).abs_diff(2 * v) <= 1);
        assert_eq!(b.save(t)[4..8], s[4..8]);
    }

    #[test]
    fn timer_counts_at_3_58_mhz() {
        let mut a = VAcpi::new(PmConfig::XEN_V1, 1000);
        assert_eq!(a.timer(1000), 0);
        // 1 s later: 3579545 ticks.
        assert_eq!(a.timer(1000 + 1_000_000_000), 3_579_545);
        let t = 1000 + 10 * MS;
        let v = a.timer(t);
        let bytes: [u8; 4] = core::array::from_fn(|i| a.read(0xb008 + i as u16, t));
        assert_eq!(u32::from_le_bytes(bytes), v);
        // The clock going backwards reads as not having moved.
        assert_eq!(a.timer(0), 0);
    }

    #[test]
    fn s5_powers_off_other_sleep_types_do_not() {
        let mut a = VAcpi::new(PmConfig::XEN_V1, 0);
        assert_eq!(rd16(&mut a, 0xb004, 0), PM1_CNT_SCI_EN);
        // SLP_TYP 5 + SLP_EN: not S5 on V1, ignored.
        assert_eq!(wr16(&mut a, 0xb004, (5 << 10) | PM1_CNT_SLP_EN, 0), None);
        // SCI_EN cannot be cleared; SLP_EN reads 0.
        assert_eq!(rd16(&mut a, 0xb004, 0), PM1_CNT_SCI_EN | (5 << 10));
        assert_eq!(
            wr16(&mut a, 0xb004, PM1_CNT_SLP_EN, 0),
            Some(PmRequest::PowerOff)
        );
        // V0: S5 is 7.
        let mut b = VAcpi::new(PmConfig::XEN_V0, 0);
        assert_eq!(
            wr16(&mut b, 0x1f44, (7 << 10) | PM1_CNT_SLP_EN, 0),
            Some(PmRequest::PowerOff)
        );
    }

    #[test]
    fn tmr_sts_raises_sci_until_cleared() {
        let mut a = VAcpi::new(PmConfig::XEN_V1, 0);
        assert_eq!(a.next_deadline(), None);
        wr16(&mut a, 0xb002, PM1_TMR | PM1_PWRBTN, 0);
        assert_eq!(rd16(&mut a, 0xb002, 0), PM1_TMR | PM1_PWRBTN);
        let d = a.next_deadline().unwrap();
        // 2^31 ticks ≈ 599.9 s.
        assert!((599_000 * MS..601_000 * MS).contains(&d), "{d}");
        assert!(!a.sci(d - 1));
        assert!(a.sci(d));
        assert_eq!(rd16(&mut a, 0xb000, d) & PM1_TMR, PM1_TMR);
        assert_eq!(a.next_deadline(), None);
        // Write 1 to clear.
        wr16(&mut a, 0xb000, PM1_TMR, d);
        assert!(!a.sci(d));
        assert!(a.next_deadline().unwrap() > d);
        a.press_power_button();
        assert!(a.sci(d));
        assert_eq!(rd16(&mut a, 0xb000, d), PM1_PWRBTN);
    }

    #[test]
    fn gpe_block_is_status_then_enable() {
        let mut a = VAcpi::new(PmConfig::XEN_V1, 0);
        assert!(a.handles(0xafe0) && a.handles(0xafe3) && !a.handles(0xafe4));
        a.write(0xafe2, 0x5a, 0);
        assert_eq!(a.read(0xafe2, 0), 0x5a);
        a.write(0xafe0, 0xff, 0);
        assert_eq!(a.read(0xafe0, 0), 0);
        assert!(!a.sci(0));
    }

    #[test]
    fn every_port_every_byte_is_harmless() {
        let mut a = VAcpi::new(PmConfig::XEN_V1, 0);
        for port in 0..=u16::MAX {
            for v in [0u8, 0xff, 0x20] {
                // Never SLP_EN with S5 at the control register's high byte.
                if port == 0xb005 && v & 0x3c == 0x20 {
                    continue;
                }
                assert_eq!(a.write(port, v, 5), None, "{port:#x}");
            }
            let _ = a.read(port, 5);
        }
        assert_eq!(a.read(0x1234, 5), 0xff);
    }
}
