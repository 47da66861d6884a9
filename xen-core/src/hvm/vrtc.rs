//! The virtual MC146818 RTC and its CMOS RAM at ports 0x70 (index, bit 7
//! masks NMI) and 0x71 (data).
//!
//! **Owns**: the 128 bytes of CMOS (time registers, registers A–D, the
//! century byte at 0x32 and the RAM the firmware reads), the guest's clock
//! as an offset from the caller's, and the periodic, alarm and
//! update-ended interrupt flags. **Trusts**: the caller for the wall clock
//! (seconds since 1970, UTC) and for `now` in nanoseconds on one monotonic
//! clock; nothing from the guest: any byte at any index is accepted, the
//! read-only registers (C, D, UIP) ignore writes, and garbage time values
//! make a strange date, never a panic.
//!
//! **Follows** the Motorola MC146818A datasheet (registers A–D, the SET bit,
//! UIP 244 µs before each update, DM/24-hour formats, "don't care" alarm
//! values 0xc0–0xff, rates from register A's RS bits with a 32.768 kHz time
//! base) and Xen's `xen/arch/x86/hvm/rtc.c` (a time-register write outside
//! SET mode sets the clock at once; interrupt flags are computed lazily when
//! register C is read; IRQF is the OR of each flag with its enable). The
//! memory-size bytes follow QEMU's `pc_cmos_init` as SeaBIOS reads them.

const NS_PER_SEC: u64 = 1_000_000_000;
/// UIP goes high this long before each update (datasheet: tBUC = 244 µs).
const UIP_NS: u64 = 244_000;
/// Time-base frequency for the periodic rates, Hz.
const TIME_BASE_HZ: u64 = 32_768;

/// The index port.
pub const PORT_INDEX: u16 = 0x70;
/// The data port.
pub const PORT_DATA: u16 = 0x71;

// Register indices (datasheet "Address Map").
/// Seconds.
pub const REG_SECONDS: u8 = 0x00;
/// Seconds alarm.
pub const REG_SECONDS_ALARM: u8 = 0x01;
/// Minutes.
pub const REG_MINUTES: u8 = 0x02;
/// Minutes alarm.
pub const REG_MINUTES_ALARM: u8 = 0x03;
/// Hours (bit 7 = PM in 12-hour mode).
pub const REG_HOURS: u8 = 0x04;
/// Hours alarm.
pub const REG_HOURS_ALARM: u8 = 0x05;
/// Day of week, 1 = Sunday.
pub const REG_WEEKDAY: u8 = 0x06;
/// Day of month.
pub const REG_DAY: u8 = 0x07;
/// Month.
pub const REG_MONTH: u8 = 0x08;
/// Year within the century.
pub const REG_YEAR: u8 = 0x09;
/// Register A: UIP, divider, rate select.
pub const REG_A: u8 = 0x0a;
/// Register B: SET, PIE, AIE, UIE, SQWE, DM, 24/12, DSE.
pub const REG_B: u8 = 0x0b;
/// Register C: IRQF, PF, AF, UF (read-only, cleared on read).
pub const REG_C: u8 = 0x0c;
/// Register D: VRT (read-only).
pub const REG_D: u8 = 0x0d;
/// Century, as the PC/AT BIOS and ACPI's FADT `century` name it.
pub const REG_CENTURY: u8 = 0x32;

// Register A.
const A_UIP: u8 = 0x80;
const A_DV_MASK: u8 = 0x70;
/// DV = 010: 32.768 kHz time base, divider running.
const A_DV_32KHZ: u8 = 0x20;
const A_RS_MASK: u8 = 0x0f;
// Register B.
const B_SET: u8 = 0x80;
const B_PIE: u8 = 0x40;
const B_AIE: u8 = 0x20;
const B_UIE: u8 = 0x10;
const B_DM_BINARY: u8 = 0x04;
const B_24H: u8 = 0x02;
// Register C.
const C_IRQF: u8 = 0x80;
const C_PF: u8 = 0x40;
const C_AF: u8 = 0x20;
const C_UF: u8 = 0x10;
const C_FLAGS: u8 = C_PF | C_AF | C_UF;
// Register D.
const D_VRT: u8 = 0x80;
/// An alarm byte with both top bits set matches any value.
const ALARM_DONT_CARE: u8 = 0xc0;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A broken-down UTC time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tm {
    /// Full year.
    pub year: i64,
    /// 1–12.
    pub month: u8,
    /// 1–31.
    pub day: u8,
    /// 0–23.
    pub hour: u8,
    /// 0–59.
    pub min: u8,
    /// 0–59.
    pub sec: u8,
    /// 0 = Sunday.
    pub weekday: u8,
}

impl Tm {
    /// The time `secs` seconds after 1970-01-01 00:00:00 UTC.
    pub fn from_secs(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let tod = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: (tod / 3600) as u8,
            min: (tod / 60 % 60) as u8,
            sec: (tod % 60) as u8,
            weekday: (days + 4).rem_euclid(7) as u8,
        }
    }
}

/// Bytes of Xen 4.17's `struct hvm_hw_rtc` (save record `RTC`): 14 CMOS
/// registers, the index, a pad byte, `rtc_offset`.
pub const RTC_SAVE_LEN: usize = 24;

/// The RTC and CMOS.
#[derive(Clone, Debug)]
pub struct VRtc {
    cmos: [u8; 128],
    index: u8,
    nmi_masked: bool,
    /// The guest clock, in seconds since 1970, at `base_ns`.
    secs: i64,
    base_ns: u64,
    /// Whether the clock advances (SET clear and the divider running).
    running: bool,
    /// Events up to this time are reflected in register C.
    checked_ns: u64,
    /// Periodic ticks are counted from here (the last write to register A).
    pf_epoch_ns: u64,
}

fn div_ns(a: u64, b: u64) -> u64 {
    a / b.max(1)
}

impl VRtc {
    /// An RTC reading `wall_secs` (seconds since 1970, UTC) at `now`, in the
    /// state firmware leaves it: 32.768 kHz divider, 1024 Hz rate, BCD,
    /// 24-hour mode, interrupts disabled.
    pub fn new(wall_secs: u64, now: u64) -> Self {
        let mut cmos = [0u8; 128];
        cmos[usize::from(REG_A)] = A_DV_32KHZ | 6;
        cmos[usize::from(REG_B)] = B_24H;
        cmos[usize::from(REG_D)] = D_VRT;
        let mut rtc = Self {
            cmos,
            index: 0,
            nmi_masked: false,
            secs: i64::try_from(wall_secs).unwrap_or(i64::MAX / 2),
            base_ns: now,
            running: true,
            checked_ns: now,
            pf_epoch_ns: now,
        };
        rtc.refresh_time_regs(now);
        rtc
    }

    /// Resets the guest clock to the host's wall clock (e.g. after a
    /// toolstack `settime`).
    pub fn set_wall_clock(&mut self, wall_secs: u64, now: u64) {
        self.advance(now);
        self.secs = i64::try_from(wall_secs).unwrap_or(i64::MAX / 2);
        self.base_ns = now;
    }

    /// Whether this device decodes `port`.
    pub fn handles(port: u16) -> bool {
        matches!(port, PORT_INDEX | PORT_DATA)
    }

    /// Whether the guest has masked NMIs (bit 7 of the last index write).
    pub fn nmi_masked(&self) -> bool {
        self.nmi_masked
    }

    /// Sets a CMOS byte as firmware would have left it (the caller's
    /// platform description); indices are taken modulo 128.
    pub fn set_cmos(&mut self, index: u8, val: u8) {
        self.cmos[usize::from(index & 0x7f)] = val;
    }

    /// A CMOS byte as stored (no time refresh, no side effects).
    pub fn cmos(&self, index: u8) -> u8 {
        self.cmos[usize::from(index & 0x7f)]
    }

    /// The memory-size bytes QEMU's `pc_cmos_init` writes and SeaBIOS
    /// reads: base memory in KiB (0x15/0x16, at most 640), memory above
    /// 1 MiB in KiB (0x17/0x18 and 0x30/0x31, at most 65535), memory from
    /// 16 MiB to `below_4g` in 64 KiB units (0x34/0x35) and memory above
    /// 4 GiB in 64 KiB units (0x5b–0x5d).
    pub fn set_memory_sizes(&mut self, below_4g: u64, above_4g: u64) {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        let base = (below_4g / KIB).min(640);
        let ext = (below_4g.saturating_sub(MIB) / KIB).min(65535);
        let high = (below_4g.saturating_sub(16 * MIB) / (64 * KIB)).min(65535);
        let above = (above_4g / (64 * KIB)).min(0xff_ffff);
        let bytes: [(u8, u64); 10] = [
            (0x15, base),
            (0x16, base >> 8),
            (0x17, ext),
            (0x18, ext >> 8),
            (0x30, ext),
            (0x31, ext >> 8),
            (0x34, high),
            (0x35, high >> 8),
            (0x5b, above),
            (0x5c, above >> 8),
        ];
        for (i, v) in bytes {
            self.set_cmos(i, v as u8);
        }
        self.set_cmos(0x5d, (above >> 16) as u8);
    }

    fn reg(&self, r: u8) -> u8 {
        self.cmos[usize::from(r)]
    }

    fn binary(&self) -> bool {
        self.reg(REG_B) & B_DM_BINARY != 0
    }

    fn encode(&self, v: u8) -> u8 {
        if self.binary() {
            v
        } else {
            ((v / 10) << 4) | (v % 10)
        }
    }

    fn decode(&self, v: u8) -> i64 {
        if self.binary() {
            i64::from(v)
        } else {
            i64::from(v >> 4) * 10 + i64::from(v & 0xf)
        }
    }

    fn encode_hour(&self, h: u8) -> u8 {
        if self.reg(REG_B) & B_24H != 0 {
            self.encode(h)
        } else {
            let h12 = if h.is_multiple_of(12) { 12 } else { h % 12 };
            self.encode(h12) | if h >= 12 { 0x80 } else { 0 }
        }
    }

    fn decode_hour(&self, v: u8) -> i64 {
        if self.reg(REG_B) & B_24H != 0 {
            self.decode(v)
        } else {
            self.decode(v & 0x7f) % 12 + if v & 0x80 != 0 { 12 } else { 0 }
        }
    }

    /// The guest clock at `now`, in seconds since 1970.
    /// Xen's `struct hvm_hw_rtc` at `now`: registers 0x0-0xd (the time as
    /// they show it now), the index, and the guest clock's offset from
    /// `host_secs` (the host's wall clock now: Xen's `rtc_offset`).
    pub fn save(&self, now: u64, host_secs: i64) -> [u8; RTC_SAVE_LEN] {
        // On a copy: saving changes nothing the guest could see.
        let mut at = self.clone();
        at.refresh_time_regs(now);
        at.advance(now);
        let mut b = [0u8; RTC_SAVE_LEN];
        b[..14].copy_from_slice(&at.cmos[..14]);
        b[14] = at.index;
        let off = at.guest_secs(now).saturating_sub(host_secs);
        b[16..24].copy_from_slice(&off.to_le_bytes());
        b
    }

    /// Loads Xen's `struct hvm_hw_rtc` at `now`: registers A-D and the
    /// alarm as saved, the clock at the host's wall clock `host_secs` plus
    /// the saved offset (so it keeps wall time across a save and restore,
    /// as Xen's does).
    pub fn restore(&mut self, b: &[u8; RTC_SAVE_LEN], now: u64, host_secs: i64) {
        self.cmos[..14].copy_from_slice(&b[..14]);
        self.index = b[14] & 0x7f;
        self.nmi_masked = b[14] & 0x80 != 0;
        let mut off = [0u8; 8];
        off.copy_from_slice(&b[16..24]);
        self.secs = host_secs.saturating_add(i64::from_le_bytes(off));
        self.base_ns = now;
        self.checked_ns = now;
        self.pf_epoch_ns = now;
        self.running = self.reg(REG_B) & B_SET == 0 && self.divider_running();
        self.refresh_time_regs(now);
    }

    pub fn guest_secs(&self, now: u64) -> i64 {
        if self.running {
            let elapsed = div_ns(now.saturating_sub(self.base_ns), NS_PER_SEC);
            self.secs
                .saturating_add(i64::try_from(elapsed).unwrap_or(i64::MAX))
        } else {
            self.secs
        }
    }

    fn refresh_time_regs(&mut self, now: u64) {
        let tm = Tm::from_secs(self.guest_secs(now));
        let year = tm.year.rem_euclid(10_000);
        let vals = [
            (REG_SECONDS, self.encode(tm.sec)),
            (REG_MINUTES, self.encode(tm.min)),
            (REG_HOURS, self.encode_hour(tm.hour)),
            (REG_WEEKDAY, self.encode(tm.weekday + 1)),
            (REG_DAY, self.encode(tm.day)),
            (REG_MONTH, self.encode(tm.month)),
            (REG_YEAR, self.encode((year % 100) as u8)),
            (REG_CENTURY, self.encode((year / 100) as u8)),
        ];
        for (r, v) in vals {
            self.cmos[usize::from(r)] = v;
        }
    }

    /// The time the time registers hold, in seconds since 1970.
    fn secs_from_regs(&self) -> i64 {
        let sec = self.decode(self.reg(REG_SECONDS));
        let min = self.decode(self.reg(REG_MINUTES));
        let hour = self.decode_hour(self.reg(REG_HOURS));
        let day = self.decode(self.reg(REG_DAY)).clamp(1, 31);
        let month = self.decode(self.reg(REG_MONTH)).clamp(1, 12);
        let year = self.decode(self.reg(REG_CENTURY)) * 100 + self.decode(self.reg(REG_YEAR));
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec
    }

    fn divider_running(&self) -> bool {
        self.reg(REG_A) & A_DV_MASK == A_DV_32KHZ
    }

    /// The periodic-interrupt period in 32.768 kHz ticks, if enabled by RS.
    fn period_ticks(&self) -> Option<u64> {
        let rs = self.reg(REG_A) & A_RS_MASK;
        if rs == 0 || !self.divider_running() {
            return None;
        }
        let code = if rs <= 2 { rs + 7 } else { rs };
        Some(1 << (code - 1))
    }

    fn pf_tick_ns(&self, ticks: u64, n: u64) -> u64 {
        let ns = (u128::from(n) * u128::from(ticks) * u128::from(NS_PER_SEC))
            .div_ceil(u128::from(TIME_BASE_HZ));
        self.pf_epoch_ns
            .saturating_add(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    fn pf_ticks_at(&self, ticks: u64, t: u64) -> u64 {
        let d = u128::from(t.saturating_sub(self.pf_epoch_ns));
        (d * u128::from(TIME_BASE_HZ) / (u128::from(ticks) * u128::from(NS_PER_SEC))) as u64
    }

    /// Updates since `base_ns` completed by `t`.
    fn updates_at(&self, t: u64) -> u64 {
        div_ns(t.saturating_sub(self.base_ns), NS_PER_SEC)
    }

    /// The first second strictly after `t` whose time of day matches the
    /// alarm registers, or `None` if the alarm can never match.
    fn next_alarm_after(&self, t: i64) -> Option<i64> {
        let field = |reg: u8, hour: bool| -> Option<Option<i64>> {
            let v = self.reg(reg);
            if v & ALARM_DONT_CARE == ALARM_DONT_CARE {
                return Some(None);
            }
            let x = if hour {
                self.decode_hour(v)
            } else {
                self.decode(v)
            };
            Some(Some(x))
        };
        let (ah, am, asec) = (
            field(REG_HOURS_ALARM, true)?,
            field(REG_MINUTES_ALARM, false)?,
            field(REG_SECONDS_ALARM, false)?,
        );
        if ah.is_some_and(|h| !(0..24).contains(&h))
            || am.is_some_and(|m| !(0..60).contains(&m))
            || asec.is_some_and(|s| !(0..60).contains(&s))
        {
            return None;
        }
        let start = t.checked_add(1)?;
        let day0 = start.div_euclid(86_400);
        let tod0 = start.rem_euclid(86_400);
        for day in 0..2i64 {
            let first = day == 0;
            let (h0, m0, s0) = if first {
                (tod0 / 3600, tod0 / 60 % 60, tod0 % 60)
            } else {
                (0, 0, 0)
            };
            for h in h0..24 {
                if ah.is_some_and(|a| a != h) {
                    continue;
                }
                let mstart = if first && h == h0 { m0 } else { 0 };
                for m in mstart..60 {
                    if am.is_some_and(|a| a != m) {
                        continue;
                    }
                    let sstart = if first && h == h0 && m == m0 { s0 } else { 0 };
                    let s = match asec {
                        Some(a) if a >= sstart => a,
                        Some(_) => continue,
                        None => sstart,
                    };
                    return (day0 + day)
                        .checked_mul(86_400)?
                        .checked_add(h * 3600 + m * 60 + s);
                }
            }
        }
        None
    }

    /// Sets register C's flags for what happened in `(checked_ns, now]`.
    fn advance(&mut self, now: u64) {
        if now <= self.checked_ns {
            return;
        }
        let from = self.checked_ns;
        let mut flags = 0;
        if let Some(ticks) = self.period_ticks() {
            if self.pf_ticks_at(ticks, now) > self.pf_ticks_at(ticks, from) {
                flags |= C_PF;
            }
        }
        if self.running {
            let (k0, k1) = (self.updates_at(from), self.updates_at(now));
            if k1 > k0 {
                flags |= C_UF;
                let s0 = self.secs.saturating_add(k0 as i64);
                let s1 = self.secs.saturating_add(k1.min(i64::MAX as u64) as i64);
                if self.next_alarm_after(s0).is_some_and(|a| a <= s1) {
                    flags |= C_AF;
                }
            }
        }
        self.cmos[usize::from(REG_C)] |= flags;
        self.checked_ns = now;
    }

    fn irqf(&self) -> bool {
        self.reg(REG_C) & self.reg(REG_B) & C_FLAGS != 0
    }

    /// Whether IRQ8 is asserted at `now` (register C's IRQF: an enabled
    /// flag is set and the guest has not read register C since). The line
    /// goes up once per event and stays up until the read; the caller raises
    /// IRQ8 on each rise.
    pub fn irq_asserted(&mut self, now: u64) -> bool {
        self.advance(now);
        self.irqf()
    }

    /// When IRQ8 will next rise (an enabled flag becomes set while IRQF is
    /// clear), in ns on the caller's clock; `None` if nothing enabled will
    /// or IRQF is already set (the guest must read register C first).
    pub fn next_event_ns(&mut self, now: u64) -> Option<u64> {
        self.advance(now);
        if self.irqf() {
            return None;
        }
        let b = self.reg(REG_B);
        let mut best: Option<u64> = None;
        let mut consider = |t: u64| best = Some(best.map_or(t, |b| b.min(t)));
        if b & B_PIE != 0 {
            if let Some(ticks) = self.period_ticks() {
                let n = self.pf_ticks_at(ticks, now);
                consider(self.pf_tick_ns(ticks, n + 1).max(now.saturating_add(1)));
            }
        }
        if self.running {
            let k = self.updates_at(now);
            if b & B_UIE != 0 {
                consider(
                    self.base_ns
                        .saturating_add((k + 1).saturating_mul(NS_PER_SEC)),
                );
            }
            if b & B_AIE != 0 {
                let cur = self.secs.saturating_add(k.min(i64::MAX as u64) as i64);
                if let Some(a) = self.next_alarm_after(cur) {
                    let after = u64::try_from(a.saturating_sub(self.secs)).unwrap_or(0);
                    consider(
                        self.base_ns
                            .saturating_add(after.saturating_mul(NS_PER_SEC)),
                    );
                }
            }
        }
        best
    }

    fn uip(&self, now: u64) -> bool {
        self.running && now.saturating_sub(self.base_ns) % NS_PER_SEC >= NS_PER_SEC - UIP_NS
    }

    fn freeze(&mut self, now: u64) {
        self.secs = self.guest_secs(now);
        self.running = false;
    }

    fn resume_if_allowed(&mut self, now: u64) {
        let allowed = self.reg(REG_B) & B_SET == 0 && self.divider_running();
        if allowed && !self.running {
            self.base_ns = now;
            self.running = true;
        } else if !allowed && self.running {
            self.freeze(now);
        }
    }

    /// A guest `out` of one byte at `now`. Other ports are ignored.
    pub fn write(&mut self, port: u16, val: u8, now: u64) {
        match port {
            PORT_INDEX => {
                self.index = val & 0x7f;
                self.nmi_masked = val & 0x80 != 0;
            }
            PORT_DATA => self.write_reg(self.index, val, now),
            _ => {}
        }
    }

    fn write_reg(&mut self, idx: u8, val: u8, now: u64) {
        self.advance(now);
        let set_mode = self.reg(REG_B) & B_SET != 0;
        match idx {
            REG_SECONDS | REG_MINUTES | REG_HOURS | REG_WEEKDAY | REG_DAY | REG_MONTH
            | REG_YEAR | REG_CENTURY => {
                if set_mode {
                    self.cmos[usize::from(idx)] = val;
                } else {
                    // Outside SET mode the new field takes effect at once.
                    self.refresh_time_regs(now);
                    self.cmos[usize::from(idx)] = val;
                    self.secs = self.secs_from_regs();
                    self.base_ns = now;
                }
            }
            REG_A => {
                let old = self.reg(REG_A);
                let new = val & !A_UIP;
                self.cmos[usize::from(REG_A)] = new;
                if old & (A_DV_MASK | A_RS_MASK) != new & (A_DV_MASK | A_RS_MASK) {
                    self.pf_epoch_ns = now;
                }
                self.resume_if_allowed(now);
            }
            REG_B => {
                let old = self.reg(REG_B);
                let mut new = val;
                if new & B_SET != 0 {
                    // Datasheet: setting SET clears UIE.
                    new &= !B_UIE;
                    if old & B_SET == 0 {
                        self.refresh_time_regs(now);
                        self.freeze(now);
                    }
                } else if old & B_SET != 0 {
                    // Leaving SET mode: the registers are the new time.
                    self.cmos[usize::from(REG_B)] = new;
                    self.secs = self.secs_from_regs();
                }
                self.cmos[usize::from(REG_B)] = new;
                self.resume_if_allowed(now);
            }
            REG_C | REG_D => {} // Read-only.
            _ => self.cmos[usize::from(idx & 0x7f)] = val,
        }
    }

    /// A guest `in` of one byte at `now`; the index port reads 0xff.
    pub fn read(&mut self, port: u16, now: u64) -> u8 {
        match port {
            PORT_DATA => self.read_reg(self.index, now),
            _ => 0xff,
        }
    }

    fn read_reg(&mut self, idx: u8, now: u64) -> u8 {
        match idx {
            REG_SECONDS | REG_MINUTES | REG_HOURS | REG_WEEKDAY | REG_DAY | REG_MONTH
            | REG_YEAR | REG_CENTURY => {
                if self.reg(REG_B) & B_SET == 0 {
                    self.refresh_time_regs(now);
                }
                self.reg(idx)
            }
            REG_A => self.reg(REG_A) | if self.uip(now) { A_UIP } else { 0 },
            REG_C => {
                self.advance(now);
                let c = self.reg(REG_C) & C_FLAGS;
                let v = c | if self.irqf() { C_IRQF } else { 0 };
                self.cmos[usize::from(REG_C)] = 0;
                v
            }
            REG_D => D_VRT,
            _ => self.cmos[usize::from(idx & 0x7f)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    /// 2024-02-29 13:45:30 UTC, a Thursday.
    const T: u64 = 1_709_214_330;

    fn rd(r: &mut VRtc, idx: u8, now: u64) -> u8 {
        r.write(0x70, idx, now);
        r.read(0x71, now)
    }

    fn wr(r: &mut VRtc, idx: u8, val: u8, now: u64) {
        r.write(0x70, idx, now);
        r.write(0x71, val, now);
    }

    fn bcd(v: u8) -> u8 {
        (v >> 4) * 10 + (v & 0xf)
    }

    /// Linux's `mc146818_get_time` (drivers/rtc/rtc-mc146818-lib.c): wait
    /// for UIP clear, read the fields, check UIP and seconds again.
    fn linux_get_time(r: &mut VRtc, mut now: u64) -> [u8; 8] {
        loop {
            if rd(r, REG_A, now) & A_UIP != 0 {
                now += MS;
                continue;
            }
            let s = rd(r, 0, now);
            let v = [
                s,
                rd(r, 2, now),
                rd(r, 4, now),
                rd(r, 7, now),
                rd(r, 8, now),
                rd(r, 9, now),
                rd(r, 0x32, now),
                rd(r, REG_B, now),
            ];
            if rd(r, REG_A, now) & A_UIP == 0 && rd(r, 0, now) == s {
                return v;
            }
            now += MS;
        }
    }

    #[test]
    fn date_math() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
        let tm = Tm::from_secs(T as i64);
        assert_eq!(
            (tm.year, tm.month, tm.day, tm.hour, tm.min, tm.sec, tm.weekday),
            (2024, 2, 29, 13, 45, 30, 4)
        );
        for d in [-800_000i64, -1, 0, 59, 60, 11_016, 2_932_896] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, i64::from(m), i64::from(dd)), d);
        }
    }

    #[test]
    fn save_and_restore_keep_wall_time_and_the_registers() {
        let mut r = VRtc::new(T, 0);
        wr(&mut r, REG_B, B_24H | B_PIE, 0);
        let host = T as i64 - 7; // the guest runs 7 s ahead of the host
        let s = r.save(10 * MS, host);
        assert_eq!(i64::from_le_bytes(s[16..24].try_into().unwrap()), 7);
        assert_eq!(s[usize::from(REG_B)], B_24H | B_PIE);
        // Restored 100 s of host time later: 7 s ahead of that.
        let mut q = VRtc::new(0, 0);
        q.restore(&s, 5 * MS, host + 100);
        assert_eq!(q.guest_secs(5 * MS), T as i64 + 100);
        assert_eq!(rd(&mut q, REG_B, 5 * MS), B_24H | B_PIE);
        let v = linux_get_time(&mut q, 5 * MS);
        assert_eq!((bcd(v[1]), bcd(v[2])), (47, 13), "13:47 after 100 s");
    }

    #[test]
    fn linux_reads_bcd_24h() {
        let mut r = VRtc::new(T, 0);
        let v = linux_get_time(&mut r, 10 * MS);
        assert_eq!(v[7] & (B_DM_BINARY | B_24H), B_24H);
        assert_eq!(
            [
                bcd(v[0]),
                bcd(v[1]),
                bcd(v[2]),
                bcd(v[3]),
                bcd(v[4]),
                bcd(v[5]),
                bcd(v[6])
            ],
            [30, 45, 13, 29, 2, 24, 20]
        );
        assert_eq!(rd(&mut r, REG_WEEKDAY, 0), 5, "Thursday");
        // 90.5 s later, across a minute.
        let v = linux_get_time(&mut r, 90_500 * MS);
        assert_eq!((bcd(v[0]), bcd(v[1])), (0, 47));
        assert_eq!(rd(&mut r, REG_D, 0), 0x80);
    }

    #[test]
    fn binary_and_12h_formats() {
        let mut r = VRtc::new(T, 0);
        wr(&mut r, REG_B, B_DM_BINARY, 0);
        assert_eq!(rd(&mut r, REG_HOURS, 0), 0x80 | 1, "1 PM");
        assert_eq!(rd(&mut r, REG_MINUTES, 0), 45);
        assert_eq!(rd(&mut r, REG_YEAR, 0), 24);
        wr(&mut r, REG_B, 0, 0); // BCD, 12 h
        assert_eq!(rd(&mut r, REG_HOURS, 0), 0x81);
        // Midnight is 12 AM.
        let mut r = VRtc::new(T - 13 * 3600 - 45 * 60, 0);
        wr(&mut r, REG_B, 0, 0);
        assert_eq!(rd(&mut r, REG_HOURS, 0), 0x12);
    }

    #[test]
    fn uip_window_before_each_update() {
        let mut r = VRtc::new(T, 0);
        assert_eq!(rd(&mut r, REG_A, 0), 0x26);
        assert_eq!(rd(&mut r, REG_A, 999_800_000) & A_UIP, A_UIP);
        assert_eq!(rd(&mut r, REG_A, 999 * MS - 300_000) & A_UIP, 0);
        assert_eq!(rd(&mut r, REG_A, 1000 * MS) & A_UIP, 0);
        // UIP is read-only.
        wr(&mut r, REG_A, 0xa6, 0);
        assert_eq!(rd(&mut r, REG_A, 0), 0x26);
    }

    #[test]
    fn set_mode_writes_new_time() {
        // hwclock --systohc: SET, write fields (BCD), clear SET.
        let mut r = VRtc::new(T, 0);
        let b = rd(&mut r, REG_B, 0);
        wr(&mut r, REG_B, b | B_SET | B_UIE, 0);
        assert_eq!(rd(&mut r, REG_B, 0) & B_UIE, 0, "SET clears UIE");
        for (i, v) in [
            (0u8, 0x00u8),
            (2, 0x30),
            (4, 0x08),
            (7, 0x01),
            (8, 0x01),
            (9, 0x99),
            (0x32, 0x19),
        ] {
            wr(&mut r, i, v, 0);
        }
        // Time stands still while SET.
        assert_eq!(rd(&mut r, 0, 5000 * MS), 0x00);
        wr(&mut r, REG_B, b, 5000 * MS);
        assert_eq!(r.guest_secs(5000 * MS), 915_179_400); // 1999-01-01 08:30
        assert_eq!(rd(&mut r, 0, 7500 * MS), 0x02);
        // A direct write outside SET mode sets the clock at once.
        wr(&mut r, REG_MINUTES, 0x31, 8000 * MS);
        assert_eq!(rd(&mut r, REG_MINUTES, 8000 * MS), 0x31);
        assert_eq!(rd(&mut r, REG_SECONDS, 8000 * MS), 0x03);
    }

    #[test]
    fn periodic_interrupt_and_register_c() {
        let mut r = VRtc::new(T, 0);
        // rtc-cmos: rate 6 (1024 Hz) and PIE.
        wr(&mut r, REG_A, 0x26, 0);
        assert!(!r.irq_asserted(10 * MS), "PIE off: no IRQ");
        assert_eq!(rd(&mut r, REG_C, 10 * MS) & C_PF, C_PF, "PF set anyway");
        wr(&mut r, REG_B, B_24H | B_PIE, 10 * MS);
        let d = r.next_event_ns(10 * MS).unwrap();
        assert!(d > 10 * MS && d <= 10 * MS + 976_563, "{d}");
        assert!(!r.irq_asserted(d - 1));
        assert!(r.irq_asserted(d));
        assert_eq!(r.next_event_ns(d), None, "until C is read");
        assert_eq!(rd(&mut r, REG_C, d), C_IRQF | C_PF);
        assert!(!r.irq_asserted(d));
        assert_eq!(rd(&mut r, REG_C, d), 0);
        // Rate 15: 2 Hz.
        wr(&mut r, REG_A, 0x2f, 20 * MS);
        assert_eq!(rd(&mut r, REG_C, 20 * MS), C_IRQF | C_PF, "ticks before");
        assert_eq!(r.next_event_ns(20 * MS), Some(20 * MS + 500 * MS));
        // Divider held in reset: no periodic interrupts, clock stops.
        wr(&mut r, REG_A, 0x70 | 0x0f, 30 * MS);
        assert_eq!(r.next_event_ns(30 * MS), None);
        let s = r.guest_secs(30 * MS);
        assert_eq!(r.guest_secs(90_000 * MS), s);
    }

    #[test]
    fn update_and_alarm_interrupts() {
        let mut r = VRtc::new(T, 0);
        wr(&mut r, REG_A, A_DV_32KHZ, 0); // no periodic flag
        wr(&mut r, REG_B, B_24H | B_UIE, 0);
        assert_eq!(r.next_event_ns(0), Some(1000 * MS));
        assert!(r.irq_asserted(1000 * MS));
        assert_eq!(rd(&mut r, REG_C, 1000 * MS), C_IRQF | C_UF);
        // Alarm at 13:46:00 (BCD), AIE only.
        wr(&mut r, REG_SECONDS_ALARM, 0x00, 1000 * MS);
        wr(&mut r, REG_MINUTES_ALARM, 0x46, 1000 * MS);
        wr(&mut r, REG_HOURS_ALARM, 0x13, 1000 * MS);
        wr(&mut r, REG_B, B_24H | B_AIE, 1000 * MS);
        assert_eq!(r.next_event_ns(1000 * MS), Some(30_000 * MS));
        assert!(!r.irq_asserted(29_999 * MS));
        assert!(r.irq_asserted(30_000 * MS));
        assert_eq!(rd(&mut r, REG_C, 30_000 * MS), C_IRQF | C_AF | C_UF);
        // Don't-care hours and minutes: every minute at :10.
        wr(&mut r, REG_HOURS_ALARM, 0xff, 30_000 * MS);
        wr(&mut r, REG_MINUTES_ALARM, 0xc0, 30_000 * MS);
        wr(&mut r, REG_SECONDS_ALARM, 0x10, 30_000 * MS);
        assert_eq!(r.next_event_ns(30_000 * MS), Some(40_000 * MS));
        // A long sleep covers an alarm.
        assert!(r.irq_asserted(1_000_000 * MS));
        // An impossible alarm never fires.
        rd(&mut r, REG_C, 1_000_000 * MS);
        wr(&mut r, REG_SECONDS_ALARM, 0x75, 1_000_000 * MS);
        assert_eq!(r.next_event_ns(1_000_000 * MS), None);
    }

    #[test]
    fn cmos_ram_and_nmi_bit() {
        let mut r = VRtc::new(T, 0);
        r.set_memory_sizes(3 << 30, 5 << 30);
        // (3 GiB - 16 MiB) / 64 KiB = 48896 = 0xbf00.
        assert_eq!((rd(&mut r, 0x34, 0), rd(&mut r, 0x35, 0)), (0x00, 0xbf));
        // 5 GiB / 64 KiB = 0x14000.
        assert_eq!(
            (
                rd(&mut r, 0x5b, 0),
                rd(&mut r, 0x5c, 0),
                rd(&mut r, 0x5d, 0)
            ),
            (0x00, 0x40, 0x01)
        );
        assert_eq!((rd(&mut r, 0x15, 0), rd(&mut r, 0x16, 0)), (0x80, 0x02));
        assert_eq!((rd(&mut r, 0x30, 0), rd(&mut r, 0x31, 0)), (0xff, 0xff));
        r.write(0x70, 0x8f, 0);
        assert!(r.nmi_masked());
        r.write(0x71, 0x0a, 0); // shutdown status byte
        assert_eq!(r.cmos(0x0f), 0x0a);
        r.write(0x70, 0x0f, 0);
        assert!(!r.nmi_masked());
        assert_eq!(r.read(0x70, 0), 0xff);
        // C and D ignore writes.
        wr(&mut r, REG_C, 0xff, 0);
        wr(&mut r, REG_D, 0x00, 0);
        assert_eq!(rd(&mut r, REG_C, 0), 0);
        assert_eq!(rd(&mut r, REG_D, 0), 0x80);
    }

    #[test]
    fn random_io_never_panics() {
        let mut seed = 0xdead_beef_cafe_f00du64;
        let mut rnd = || {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        for i in 0..40u64 {
            let mut r = VRtc::new(if i % 2 == 0 { rnd() } else { T }, rnd() >> (i % 64));
            let mut now = 0u64;
            for _ in 0..1500 {
                let x = rnd();
                now = match x % 9 {
                    0 => x >> 2,
                    1 => now.saturating_add(x >> 20),
                    _ => now.saturating_add(x >> 44),
                };
                let port = [0x70u16, 0x71, 0x71, 0x72][((x >> 8) % 4) as usize];
                match (x >> 12) % 5 {
                    0 | 1 => r.write(port, (x >> 24) as u8, now),
                    2 | 3 => {
                        r.read(port, now);
                    }
                    _ => {
                        r.irq_asserted(now);
                        r.next_event_ns(now);
                    }
                }
            }
        }
    }
}
