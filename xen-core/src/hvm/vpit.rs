//! The virtual 8254 PIT at ports 0x40–0x43, and port 0x61 (the PC/AT
//! "system control port B": channel 2's gate, the speaker enable and
//! channel 2's output, which Linux reads to calibrate the TSC).
//!
//! **Owns**: the three channels' programming (mode, access mode, BCD, reload
//! value, latches, read/write byte order) and the time each count was
//! loaded. **Trusts**: the caller's clock: every call that can observe
//! counting takes `now` in nanoseconds on one monotonic clock (a clock that
//! goes backwards is treated as not having moved). Every guest byte is
//! accepted without panicking.
//!
//! **Follows** the Intel 8254 datasheet (modes 0–5, counter latch and
//! read-back commands, status byte) and, for what a virtual PIT does with
//! them, Xen's `xen/arch/x86/hvm/i8254.c` and QEMU's
//! `hw/timer/i8254{,_common}.c`: counting is computed from the load time at
//! [`PIT_HZ`]; channel 0's gate is tied high; only channel 0 drives an IRQ
//! (IRQ0), reported as a number of rising output edges.

/// The PIT input clock, Hz.
pub const PIT_HZ: u64 = 1_193_182;
const NS_PER_SEC: u64 = 1_000_000_000;

/// Channel 0–2 counter ports.
pub const PORT_CH0: u16 = 0x40;
/// The control-word register (write only).
pub const PORT_CONTROL: u16 = 0x43;
/// System control port B (channel 2 gate and output, speaker).
pub const PORT_SPEAKER: u16 = 0x61;

// Port 0x61 bits (PC/AT technical reference; Xen's `pit_ioport_speaker`).
const P61_GATE2: u8 = 0x01;
const P61_SPKR_DATA: u8 = 0x02;
const P61_WRITABLE: u8 = 0x0f;
const P61_REFRESH: u8 = 0x10;
const P61_OUT2: u8 = 0x20;
/// DRAM refresh toggles every 15.085 µs on a PC/AT.
const REFRESH_NS: u64 = 15_085;

fn ns_to_clocks(ns: u64) -> u64 {
    (u128::from(ns) * u128::from(PIT_HZ) / u128::from(NS_PER_SEC)) as u64
}

/// The first nanosecond at which `clocks` PIT clocks have elapsed.
fn clocks_to_ns(clocks: u64) -> u64 {
    let ns = (u128::from(clocks) * u128::from(NS_PER_SEC)).div_ceil(u128::from(PIT_HZ));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

fn bcd_to_bin(v: u32) -> u32 {
    (v >> 12 & 0xf) * 1000 + (v >> 8 & 0xf) * 100 + (v >> 4 & 0xf) * 10 + (v & 0xf)
}

fn bin_to_bcd(v: u32) -> u32 {
    let v = v % 10000;
    ((v / 1000) << 12) | ((v / 100 % 10) << 8) | ((v / 10 % 10) << 4) | (v % 10)
}

/// Which byte a counter read or write goes to next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ByteState {
    Lsb,
    Msb,
    /// LSB then MSB: the LSB is next.
    Word0,
    /// LSB then MSB: the MSB is next.
    Word1,
}

impl ByteState {
    fn from_access(access: u8) -> Self {
        match access & 3 {
            1 => ByteState::Lsb,
            2 => ByteState::Msb,
            _ => ByteState::Word0,
        }
    }
}

/// One 8254 counter.
#[derive(Clone, Debug)]
pub struct Channel {
    /// Mode as written (0–7; 6 and 7 behave as 2 and 3).
    mode: u8,
    bcd: bool,
    /// RW bits of the control word: 1 LSB, 2 MSB, 3 LSB then MSB.
    access: u8,
    /// Reload value in clocks, 1..=0x10000 (binary) or 1..=10000 (BCD).
    count: u32,
    /// A count has been written since the last control word.
    loaded: bool,
    gate: bool,
    /// Modes 1 and 5: the gate has triggered counting since the load.
    triggered: bool,
    running: bool,
    /// When the current run of counting started.
    start_ns: u64,
    /// Clocks counted before `start_ns` (modes 0 and 4 paused by the gate).
    offset: u64,
    latched_count: Option<(u16, ByteState)>,
    latched_status: Option<u8>,
    read_state: ByteState,
    write_state: ByteState,
    write_latch: u8,
    /// Output edges already reported (channel 0's IRQ0).
    edges_reported: u64,
}

/// Bytes of Xen's `struct hvm_hw_pit` (save record `PIT`): three 16-byte
/// channels, `speaker_data_on`, a pad.
pub const PIT_SAVE_LEN: usize = 56;

/// QEMU's and Xen's `RW_STATE_*` for a byte state.
fn rw_state(s: ByteState) -> u8 {
    match s {
        ByteState::Lsb => 1,
        ByteState::Msb => 2,
        ByteState::Word0 => 3,
        ByteState::Word1 => 4,
    }
}

fn from_rw_state(v: u8) -> Option<ByteState> {
    Some(match v {
        1 => ByteState::Lsb,
        2 => ByteState::Msb,
        3 => ByteState::Word0,
        4 => ByteState::Word1,
        _ => return None,
    })
}

impl Channel {
    /// Xen's `struct hvm_hw_pit_channel`.
    fn save(&self, now: u64) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.count.to_le_bytes());
        if let Some((v, st)) = self.latched_count {
            b[4..6].copy_from_slice(&v.to_le_bytes());
            b[6] = rw_state(st);
        }
        if let Some(st) = self.latched_status {
            b[7] = 1;
            b[8] = st;
        } else {
            b[8] = u8::from(self.out(now)) << 7
                | self.access << 4
                | self.mode << 1
                | u8::from(self.bcd);
        }
        b[9] = rw_state(self.read_state);
        b[10] = rw_state(self.write_state);
        b[11] = self.write_latch;
        b[12] = self.access;
        b[13] = self.mode;
        b[14] = u8::from(self.bcd);
        b[15] = u8::from(self.gate);
        b
    }

    /// Loads a saved channel at `now`: as Xen does, a programmed channel
    /// counts again from its count from `now` (the phase is not saved); one
    /// never programmed (the reset state) stays idle.
    fn restore(&mut self, b: &[u8; 16], now: u64) -> bool {
        let count = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let (Some(read), Some(write)) = (from_rw_state(b[9]), from_rw_state(b[10])) else {
            return false;
        };
        let latched = match b[6] {
            0 => None,
            v => match from_rw_state(v) {
                Some(st) => Some((u16::from_le_bytes([b[4], b[5]]), st)),
                None => return false,
            },
        };
        if count == 0 || count > 0x10000 || !(1..=3).contains(&b[12]) || b[13] > 7 || b[14] > 1 {
            return false;
        }
        let mut c = Channel::new(b[15] != 0);
        c.access = b[12];
        c.mode = b[13];
        c.bcd = b[14] != 0;
        let programmed = count != 0x10000 || c.mode != 0 || c.access != 3;
        if programmed {
            // The count is saved in input clocks (`save` writes `count`),
            // a BCD channel's too: loaded as binary, not decoded again.
            let bcd = c.bcd;
            c.bcd = false;
            c.load(count & 0xffff, now);
            c.bcd = bcd;
        }
        c.latched_count = latched;
        c.latched_status = (b[7] != 0).then_some(b[8]);
        c.read_state = read;
        c.write_state = write;
        c.write_latch = b[11];
        *self = c;
        true
    }

    fn new(gate: bool) -> Self {
        Self {
            mode: 0,
            bcd: false,
            access: 3,
            count: 0x10000,
            loaded: false,
            gate,
            triggered: false,
            running: false,
            start_ns: 0,
            offset: 0,
            latched_count: None,
            latched_status: None,
            read_state: ByteState::Word0,
            write_state: ByteState::Word0,
            write_latch: 0,
            edges_reported: 0,
        }
    }

    /// The mode as the counter behaves (6 → 2, 7 → 3).
    pub fn mode(&self) -> u8 {
        if self.mode >= 6 {
            self.mode - 4
        } else {
            self.mode
        }
    }

    /// The reload value in input clocks.
    pub fn reload(&self) -> u32 {
        self.count
    }

    /// Whether the counter is decrementing.
    pub fn is_counting(&self) -> bool {
        self.loaded && self.running
    }

    fn modulus(&self) -> u64 {
        if self.bcd {
            10000
        } else {
            0x10000
        }
    }

    fn elapsed(&self, now: u64) -> u64 {
        if self.running {
            self.offset
                .saturating_add(ns_to_clocks(now.saturating_sub(self.start_ns)))
        } else {
            self.offset
        }
    }

    /// The counting element's value (binary) at `now`.
    fn counter(&self, now: u64) -> u32 {
        let m = self.modulus();
        let n = u64::from(self.count);
        if !self.loaded {
            return (n % m) as u32;
        }
        let d = self.elapsed(now);
        let v = match self.mode() {
            2 => n - d % n,
            3 => n - (d.wrapping_mul(2)) % n,
            _ => (n % m + m - d % m) % m,
        };
        (v % m) as u32
    }

    /// OUT at `now`.
    fn out(&self, now: u64) -> bool {
        if !self.loaded {
            return self.mode() != 0;
        }
        let n = u64::from(self.count);
        let d = self.elapsed(now);
        match self.mode() {
            0 => d >= n,
            1 => !self.triggered || d >= n,
            2 => !self.gate || d % n != n - 1,
            3 => !self.gate || d % n < n.div_ceil(2),
            4 => d != n,
            _ => !self.triggered || d != n,
        }
    }

    /// Rising OUT edges from the start of counting up to `d` clocks.
    fn edges_upto(&self, d: u64) -> u64 {
        let n = u64::from(self.count);
        match self.mode() {
            0 => u64::from(d >= n),
            1 => u64::from(self.triggered && d >= n),
            2 | 3 => d / n,
            4 => u64::from(d > n),
            _ => u64::from(self.triggered && d > n),
        }
    }

    /// The clock count of rising edge number `k` (1-based), if there is one.
    fn edge_clock(&self, k: u64) -> Option<u64> {
        let n = u64::from(self.count);
        match (self.mode(), k) {
            (2 | 3, _) => k.checked_mul(n),
            (0, 1) => Some(n),
            (4, 1) => Some(n + 1),
            (1, 1) if self.triggered => Some(n),
            (5, 1) if self.triggered => Some(n + 1),
            _ => None,
        }
    }

    fn load(&mut self, raw: u32, now: u64) {
        let raw = raw & 0xffff;
        self.count = if self.bcd {
            match bcd_to_bin(raw) {
                0 => 10000,
                v => v.min(10000),
            }
        } else if raw == 0 {
            0x10000
        } else {
            raw
        };
        self.loaded = true;
        self.start_ns = now;
        self.offset = 0;
        self.edges_reported = 0;
        self.triggered = false;
        // Modes 1 and 5 wait for a gate trigger; the others count while the
        // gate is high.
        self.running = !matches!(self.mode(), 1 | 5) && self.gate;
    }

    fn set_gate(&mut self, gate: bool, now: u64) {
        if gate == self.gate {
            return;
        }
        match (self.mode(), gate) {
            (0 | 4, true) if self.loaded => {
                self.start_ns = now;
                self.running = true;
            }
            (0 | 4, false) => {
                self.offset = self.elapsed(now);
                self.running = false;
            }
            (1 | 2 | 3 | 5, true) if self.loaded => {
                // A rising gate (re)starts counting from the count.
                self.start_ns = now;
                self.offset = 0;
                self.running = true;
                self.triggered = true;
                self.edges_reported = 0;
            }
            (2 | 3, false) => {
                self.offset = self.elapsed(now);
                self.running = false;
            }
            _ => {} // Not loaded yet, or modes 1 and 5 on a falling gate.
        }
        self.gate = gate;
    }

    fn latch_count(&mut self, now: u64) {
        if self.latched_count.is_none() {
            let mut v = self.counter(now);
            if self.bcd {
                v = bin_to_bcd(v);
            }
            self.latched_count = Some((v as u16, ByteState::from_access(self.access)));
        }
    }

    fn latch_status(&mut self, now: u64) {
        if self.latched_status.is_none() {
            self.latched_status = Some(
                u8::from(self.out(now)) << 7
                    | u8::from(!self.loaded) << 6
                    | self.access << 4
                    | self.mode << 1
                    | u8::from(self.bcd),
            );
        }
    }

    fn control(&mut self, val: u8, now: u64) {
        let access = (val >> 4) & 3;
        if access == 0 {
            self.latch_count(now);
            return;
        }
        self.access = access;
        self.read_state = ByteState::from_access(access);
        self.write_state = self.read_state;
        self.mode = (val >> 1) & 7;
        self.bcd = val & 1 != 0;
        self.loaded = false;
        self.running = false;
        self.triggered = false;
        self.edges_reported = 0;
        self.latched_count = None;
    }

    fn read(&mut self, now: u64) -> u8 {
        if let Some(s) = self.latched_status.take() {
            return s;
        }
        if let Some((v, st)) = self.latched_count {
            return match st {
                ByteState::Word0 => {
                    self.latched_count = Some((v, ByteState::Word1));
                    v as u8
                }
                ByteState::Msb | ByteState::Word1 => {
                    self.latched_count = None;
                    (v >> 8) as u8
                }
                ByteState::Lsb => {
                    self.latched_count = None;
                    v as u8
                }
            };
        }
        let mut v = self.counter(now);
        if self.bcd {
            v = bin_to_bcd(v);
        }
        match self.read_state {
            ByteState::Lsb => v as u8,
            ByteState::Msb => (v >> 8) as u8,
            ByteState::Word0 => {
                self.read_state = ByteState::Word1;
                v as u8
            }
            ByteState::Word1 => {
                self.read_state = ByteState::Word0;
                (v >> 8) as u8
            }
        }
    }

    fn write(&mut self, val: u8, now: u64) {
        match self.write_state {
            ByteState::Lsb => self.load(u32::from(val), now),
            ByteState::Msb => self.load(u32::from(val) << 8, now),
            ByteState::Word0 => {
                self.write_latch = val;
                self.write_state = ByteState::Word1;
            }
            ByteState::Word1 => {
                self.load(u32::from(self.write_latch) | u32::from(val) << 8, now);
                self.write_state = ByteState::Word0;
            }
        }
    }
}

/// The PIT and port 0x61.
#[derive(Clone, Debug)]
pub struct VPit {
    channels: [Channel; 3],
    /// Port 0x61 bits 3:0 as last written (bit 0 is channel 2's gate).
    port61: u8,
}

impl Default for VPit {
    fn default() -> Self {
        Self::new()
    }
}

impl VPit {
    /// Xen's `struct hvm_hw_pit` at `now`.
    pub fn save(&self, now: u64) -> [u8; PIT_SAVE_LEN] {
        let mut b = [0u8; PIT_SAVE_LEN];
        for (i, c) in self.channels.iter().enumerate() {
            b[16 * i..16 * i + 16].copy_from_slice(&c.save(now));
        }
        b[48..52].copy_from_slice(&u32::from((self.port61 >> 1) & 1).to_le_bytes());
        b
    }

    /// Loads a saved PIT at `now`; `false` (nothing changed) if a channel
    /// has values no 8254 has.
    pub fn restore(&mut self, b: &[u8; PIT_SAVE_LEN], now: u64) -> bool {
        let mut new = self.clone();
        for (i, c) in new.channels.iter_mut().enumerate() {
            let mut ch = [0u8; 16];
            ch.copy_from_slice(&b[16 * i..16 * i + 16]);
            if !c.restore(&ch, now) {
                return false;
            }
        }
        let speaker = u8::from(b[48] & 1 != 0) << 1;
        new.port61 = (new.port61 & !2) | speaker | u8::from(new.channels[2].gate);
        *self = new;
        true
    }

    /// A PIT after reset: no channel counting; channel 0 and 1 gates high,
    /// channel 2's gate low (port 0x61 = 0).
    pub fn new() -> Self {
        Self {
            channels: [Channel::new(true), Channel::new(true), Channel::new(false)],
            port61: 0,
        }
    }

    /// Channel `i` (0–2); out-of-range indices give channel 2.
    pub fn channel(&self, i: usize) -> &Channel {
        &self.channels[i.min(2)]
    }

    /// Whether this device decodes `port`.
    pub fn handles(port: u16) -> bool {
        matches!(port, 0x40..=0x43 | PORT_SPEAKER)
    }

    /// A guest `out` of one byte at `now`. Other ports are ignored.
    pub fn write(&mut self, port: u16, val: u8, now: u64) {
        match port {
            0x40..=0x42 => self.channels[usize::from(port - 0x40)].write(val, now),
            PORT_CONTROL => {
                let sc = val >> 6;
                if sc == 3 {
                    // Read-back: bit 5 = !COUNT, bit 4 = !STATUS, 3:1 select.
                    for (i, ch) in self.channels.iter_mut().enumerate() {
                        if val & (2 << i) == 0 {
                            continue;
                        }
                        if val & 0x20 == 0 {
                            ch.latch_count(now);
                        }
                        if val & 0x10 == 0 {
                            ch.latch_status(now);
                        }
                    }
                } else {
                    self.channels[usize::from(sc)].control(val, now);
                }
            }
            PORT_SPEAKER => {
                self.port61 = val & P61_WRITABLE;
                self.channels[2].set_gate(val & P61_GATE2 != 0, now);
            }
            _ => {}
        }
    }

    /// A guest `in` of one byte at `now`; 0xff for the write-only control
    /// port and ports this device does not decode.
    pub fn read(&mut self, port: u16, now: u64) -> u8 {
        match port {
            0x40..=0x42 => self.channels[usize::from(port - 0x40)].read(now),
            PORT_SPEAKER => {
                let refresh = if (now / REFRESH_NS) & 1 != 0 {
                    P61_REFRESH
                } else {
                    0
                };
                let out2 = if self.channels[2].out(now) {
                    P61_OUT2
                } else {
                    0
                };
                self.port61 | refresh | out2
            }
            _ => 0xff,
        }
    }

    /// Whether the speaker is driven (port 0x61 bits 0 and 1 both set).
    pub fn speaker_on(&self) -> bool {
        self.port61 & (P61_GATE2 | P61_SPKR_DATA) == P61_GATE2 | P61_SPKR_DATA
    }

    /// Channel `i`'s OUT at `now`.
    pub fn output(&self, i: usize, now: u64) -> bool {
        self.channel(i).out(now)
    }

    /// Rising edges of channel 0's OUT (IRQ0) since the last call, up to
    /// and including `now`. Each is one edge for the caller to raise on
    /// IRQ0 (the caller decides whether missed ticks are delivered or
    /// coalesced).
    pub fn irq0_edges(&mut self, now: u64) -> u64 {
        let ch = &mut self.channels[0];
        if !ch.is_counting() {
            return 0;
        }
        let total = ch.edges_upto(ch.elapsed(now));
        let new = total.saturating_sub(ch.edges_reported);
        ch.edges_reported = total.max(ch.edges_reported);
        new
    }

    /// When the next IRQ0 edge not yet reported by [`VPit::irq0_edges`]
    /// happens, in ns on the caller's clock; `None` when none will.
    pub fn next_irq0_deadline(&self) -> Option<u64> {
        let ch = &self.channels[0];
        if !ch.is_counting() {
            return None;
        }
        let clock = ch.edge_clock(ch.edges_reported.checked_add(1)?)?;
        let rest = clock.saturating_sub(ch.offset);
        Some(ch.start_ns.saturating_add(clocks_to_ns(rest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    /// Linux's `PIT_LATCH` for HZ=1000.
    const LATCH: u16 = ((PIT_HZ + 500) / 1000) as u16;

    #[test]
    fn save_and_restore_restart_a_programmed_channel() {
        let mut p = VPit::new();
        let t0 = 5 * MS;
        p.write(0x43, 0x34, t0);
        p.write(0x40, LATCH as u8, t0);
        p.write(0x40, (LATCH >> 8) as u8, t0);
        p.write(0x61, 0x03, t0); // speaker on, channel 2 gate up
        let s = p.save(t0 + 3 * MS);
        assert_eq!(
            u32::from_le_bytes(s[0..4].try_into().unwrap()),
            u32::from(LATCH)
        );
        assert_eq!((s[12], s[13], s[15]), (3, 2, 1), "lo/hi, mode 2, gate");
        assert_eq!(&s[48..52], &1u32.to_le_bytes(), "speaker data on");
        // Restored elsewhere in time: it counts from its count again, a
        // period from the restore (Xen's pit_load_count).
        let later = 1000 * MS;
        let mut q = VPit::new();
        assert!(q.restore(&s, later));
        let d = q.next_irq0_deadline().unwrap();
        assert!(d > later + MS - 1000 && d < later + MS + 1000, "{d}");
        assert_eq!(q.channel(0).reload(), u32::from(LATCH));
        assert!(q.speaker_on());
        // A PIT nobody programmed stays idle.
        let mut idle = VPit::new();
        assert!(idle.restore(&VPit::new().save(0), later));
        assert_eq!(idle.next_irq0_deadline(), None);
        // Values no 8254 has: refused, nothing changed.
        for (at, v) in [(12, 0u8), (13, 9), (9, 7), (6, 9)] {
            let mut bad = s;
            bad[at] = v;
            assert!(!q.restore(&bad, later), "byte {at} = {v}");
        }
        assert_eq!(q.channel(0).reload(), u32::from(LATCH));
    }

    #[test]
    fn save_and_restore_keep_a_bcd_channels_count() {
        // Found by fuzzing (fuzz/fuzz_targets/hvm_context.rs): the count is
        // saved in input clocks, but a BCD channel's was decoded from BCD
        // again on restore (2710 clocks came back as 0x2710 = 10000).
        let mut p = VPit::new();
        p.write(0x43, 0xb7, 0); // channel 2, lo/hi, mode 3, BCD
        p.write(0x42, 0x10, 0);
        p.write(0x42, 0x27, 0); // 2710 (BCD)
        assert_eq!(p.channel(2).reload(), 2710);
        let s = p.save(MS);
        let mut q = VPit::new();
        assert!(q.restore(&s, MS));
        assert_eq!(q.channel(2).reload(), 2710);
        assert_eq!(q.save(MS), s);
    }

    #[test]
    fn linux_periodic_timer() {
        // arch/x86/kernel/i8253.c / drivers/clocksource/i8253.c:
        // pit_set_periodic: 0x34 (ch0, lo/hi, mode 2, binary), LATCH.
        let mut p = VPit::new();
        let t0 = 5 * MS;
        p.write(0x43, 0x34, t0);
        p.write(0x40, LATCH as u8, t0);
        assert_eq!(p.next_irq0_deadline(), None, "half loaded");
        p.write(0x40, (LATCH >> 8) as u8, t0);
        let d = p.next_irq0_deadline().unwrap();
        assert!(d > t0 + MS - 1000 && d < t0 + MS + 1000, "{d}");
        assert_eq!(p.irq0_edges(d - 1), 0);
        assert_eq!(p.irq0_edges(d), 1);
        assert_eq!(p.irq0_edges(d), 0);
        // 10 ms later: ten more.
        assert_eq!(p.irq0_edges(d + 10 * MS), 10);
        let next = p.next_irq0_deadline().unwrap();
        assert!(next > d + 10 * MS && next <= d + 11 * MS);
        // pit_shutdown: 0x30, 0, 0 then no interrupts from a one-shot count
        // of 0x10000 until ~55 ms.
        p.write(0x43, 0x30, d + 11 * MS);
        assert_eq!(p.next_irq0_deadline(), None);
        p.write(0x40, 0, d + 11 * MS);
        p.write(0x40, 0, d + 11 * MS);
        let n = p.next_irq0_deadline().unwrap();
        assert!(n > d + 11 * MS + 54 * MS && n < d + 11 * MS + 56 * MS);
    }

    #[test]
    fn linux_oneshot_mode4() {
        // pit_set_oneshot: 0x38; pit_next_event writes delta lsb, msb.
        let mut p = VPit::new();
        p.write(0x43, 0x38, 0);
        p.write(0x40, 100, 0);
        p.write(0x40, 0, 0);
        let d = p.next_irq0_deadline().unwrap();
        // 101 clocks.
        assert_eq!(d, clocks_to_ns(101));
        assert_eq!(p.irq0_edges(d * 100), 1);
        assert_eq!(p.next_irq0_deadline(), None);
    }

    #[test]
    fn calibration_via_channel2_and_port61() {
        // pit_calibrate_tsc / pit_hpet_ptimer_calibrate_cpu: gate high,
        // speaker off; ch2 mode 0, binary; 50 ms latch; spin on bit 5.
        let mut p = VPit::new();
        let latch: u16 = (PIT_HZ / 20) as u16;
        let r = p.read(0x61, 0);
        p.write(0x61, (r & !0x02) | 0x01, 0);
        p.write(0x43, 0xb0, 0);
        p.write(0x42, latch as u8, 1000);
        p.write(0x42, (latch >> 8) as u8, 1000);
        assert_eq!(p.read(0x61, 2000) & 0x20, 0);
        assert_eq!(p.read(0x61, 1000 + 49 * MS) & 0x20, 0);
        assert_eq!(p.read(0x61, 1000 + 51 * MS) & 0x20, 0x20);
        assert_eq!(p.read(0x61, 0) & 0x0f, 0x01);
    }

    #[test]
    fn quick_pit_calibrate_msb_descends() {
        // quick_pit_calibrate: ch2 mode 0 with 0xffff; read lsb then msb.
        let mut p = VPit::new();
        p.write(0x61, 0x01, 0);
        p.write(0x43, 0xb0, 0);
        p.write(0x42, 0xff, 0);
        p.write(0x42, 0xff, 0);
        let mut last = 0x100u32;
        for i in 0..200u64 {
            let now = i * 200_000; // 0.2 ms, ~238 clocks
            let _lsb = p.read(0x42, now);
            let msb = u32::from(p.read(0x42, now));
            assert!(msb <= last, "msb went up at step {i}");
            last = msb;
        }
        assert!(last < 0xff - 100);
        // A clocked-out value: 1 ms = 1193 clocks from 0xffff.
        p.write(0x43, 0x80, MS); // latch ch2
        let lo = p.read(0x42, 5 * MS);
        let hi = p.read(0x42, 5 * MS);
        assert_eq!(u16::from(lo) | u16::from(hi) << 8, 0xffff - 1193);
    }

    #[test]
    fn gate_low_pauses_mode0() {
        let mut p = VPit::new();
        p.write(0x61, 0x01, 0);
        p.write(0x43, 0xb0, 0);
        p.write(0x42, 0x00, 0);
        p.write(0x42, 0x10, 0); // 4096 clocks
        p.write(0x61, 0x00, MS); // 1193 clocks in
        let c = |p: &mut VPit, t| {
            p.write(0x43, 0x80, t);
            u16::from(p.read(0x42, t)) | u16::from(p.read(0x42, t)) << 8
        };
        assert_eq!(c(&mut p, 2 * MS), 4096 - 1193);
        p.write(0x61, 0x01, 10 * MS);
        assert_eq!(c(&mut p, 11 * MS), 4096 - 2386);
    }

    #[test]
    fn readback_status_and_latches() {
        let mut p = VPit::new();
        p.write(0x43, 0x34, 0);
        p.write(0x40, 0x00, 0);
        p.write(0x40, 0x10, 0);
        // Read-back: latch count and status of ch0.
        p.write(0x43, 0xc2, MS);
        let st = p.read(0x40, 5 * MS);
        assert_eq!(st & 0x3f, 0x34, "access 3, mode 2, binary");
        assert_eq!(st & 0x40, 0, "count loaded");
        let lo = p.read(0x40, 5 * MS);
        let hi = p.read(0x40, 5 * MS);
        let v = u16::from(lo) | u16::from(hi) << 8;
        assert_eq!(v, 4096 - 1193);
        // A second latch while one is pending is ignored.
        p.write(0x43, 0x00, 2 * MS);
        p.write(0x43, 0x00, 3 * MS);
        p.read(0x40, 9 * MS);
        p.read(0x40, 9 * MS);
        // Status latched after a new control word says null count.
        p.write(0x43, 0x14, 0); // ch0 LSB only, mode 2
        p.write(0x43, 0xe2, 0);
        assert_eq!(p.read(0x40, 0) & 0x40, 0x40);
        p.write(0x40, 200, 0);
        assert_eq!(p.read(0x40, 0), 200);
        // MSB-only access.
        p.write(0x43, 0x20, 0);
        p.write(0x40, 0x01, 0);
        assert_eq!(p.channel(0).reload(), 0x100);
        assert_eq!(p.read(0x40, 0), 0x01);
        assert_eq!(p.read(0x43, 0), 0xff);
    }

    #[test]
    fn mode3_square_wave_and_bcd() {
        let mut p = VPit::new();
        p.write(0x61, 0x01, 0);
        p.write(0x43, 0xb6, 0); // ch2, lo/hi, mode 3
        p.write(0x42, 100, 0);
        p.write(0x42, 0, 0);
        assert!(p.output(2, 0));
        assert!(p.output(2, clocks_to_ns(49)));
        assert!(!p.output(2, clocks_to_ns(50)));
        assert!(p.output(2, clocks_to_ns(100)));
        // BCD: count 0x1000 means 1000 clocks; reads back in BCD.
        p.write(0x43, 0x31, 0); // ch0, lo/hi, mode 0, BCD
        p.write(0x40, 0x00, 0);
        p.write(0x40, 0x10, 0);
        assert_eq!(p.channel(0).reload(), 1000);
        p.write(0x43, 0x00, clocks_to_ns(10));
        assert_eq!(p.read(0x40, 0), 0x90);
        assert_eq!(p.read(0x40, 0), 0x09);
    }

    #[test]
    fn random_io_never_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = || {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let ports = [0x40, 0x41, 0x42, 0x43, 0x61, 0x44];
        for _ in 0..50 {
            let mut p = VPit::new();
            let mut now = 0u64;
            for _ in 0..2000 {
                let r = rnd();
                now = match r % 7 {
                    0 => now.wrapping_add(r >> 40),
                    1 => r >> 3, // occasionally backwards, or huge
                    _ => now.saturating_add(r >> 50),
                };
                let port = ports[((r >> 8) % 6) as usize];
                match (r >> 16) % 4 {
                    0 | 1 => p.write(port, (r >> 24) as u8, now),
                    2 => {
                        p.read(port, now);
                    }
                    _ => {
                        p.irq0_edges(now);
                        p.next_irq0_deadline();
                    }
                }
            }
        }
    }
}
