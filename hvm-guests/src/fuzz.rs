//! bare-fuzz's pure logic: the seeded generator, what each class of
//! operation does (port I/O, MMIO, MSRs, CPUID, instruction streams aimed
//! at MMIO, hypercalls), the rules that keep an operation from killing the
//! guest the way it would kill it on real hardware (a reset port, an INIT
//! to itself, a hypercall that hands away its own RAM), and the tally of
//! how each was answered. The kernel (`src/bin/bare-fuzz.rs`) carries the
//! operations out; everything here builds for the host and is tested
//! there.
//!
//! Output (what the robustness report's generator parses):
//! `fuzz: seed <S>`, one `fuzz: class <class>: <N> calls; <answer>=<count>
//! ...` per class, `fuzz: total <N> calls in <ms> ms`.

use core::fmt;

/// A seeded xorshift64* generator (seeded through splitmix64, so seeds 0,
/// 1, 2 ... give unrelated streams).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Rng(if z == 0 { 0x5eed } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n` > 0; 0 gives 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True `num` times in `den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// One of `items` (which must not be empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// A value biased to the edges: 0, all ones, small, sign bits, random.
    pub fn value(&mut self) -> u64 {
        match self.below(8) {
            0 => 0,
            1 => u64::MAX,
            2 => self.below(256),
            3 => 1 << self.below(64),
            4 => u64::from(self.next_u64() as u32),
            _ => self.next_u64(),
        }
    }
}

/// The classes of operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Io,
    Mmio,
    Msr,
    Cpuid,
    Insn,
    Hypercall,
}

impl Class {
    pub const ALL: [Class; 6] = [
        Class::Io,
        Class::Mmio,
        Class::Msr,
        Class::Cpuid,
        Class::Insn,
        Class::Hypercall,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::Io => "io",
            Class::Mmio => "mmio",
            Class::Msr => "msr",
            Class::Cpuid => "cpuid",
            Class::Insn => "insn",
            Class::Hypercall => "hypercall",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// A class at random (every one equally likely).
    pub fn random(rng: &mut Rng) -> Class {
        rng.pick(&Class::ALL)
    }
}

/// What the kernel is told on its command line: `seed=S count=N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub seed: u64,
    pub count: u64,
    /// `trace=N`: say each operation from number N on before making it
    /// (slow; to find the one that hangs or kills the guest).
    pub trace: Option<u64>,
}

impl Config {
    pub const DEFAULT_SEED: u64 = 1;
    pub const DEFAULT_COUNT: u64 = 10_000;

    /// From a command line (`None`: none given); unknown words are
    /// ignored, a malformed number keeps the default.
    pub fn parse(cmdline: Option<&[u8]>) -> Config {
        let v = |key| {
            cmdline
                .and_then(|c| crate::bootinfo::cmdline_value(c, key))
                .and_then(parse_u64)
        };
        Config {
            seed: v("seed").unwrap_or(Self::DEFAULT_SEED),
            count: v("count").unwrap_or(Self::DEFAULT_COUNT),
            trace: v("trace"),
        }
    }
}

/// Decimal or `0x` hexadecimal.
pub fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

// ---- Answers -------------------------------------------------------------------

/// Done without a fault (or a hypercall that returned ≥ 0).
pub const OK: &str = "ok";
/// Not done: on real hardware it would reset or power off the guest, or
/// hand away memory it runs from.
pub const SKIPPED: &str = "skipped";
/// An instruction stream that stopped somewhere the generator did not
/// expect (a length it got wrong): the tally shows it, the run goes on.
pub const STRAY: &str = "stray";

/// The name of exception `vector` as an answer.
pub fn vector_answer(vector: u64) -> &'static str {
    match vector {
        0 => "#DE",
        1 => "#DB",
        2 => "NMI",
        3 => "#BP",
        4 => "#OF",
        5 => "#BR",
        6 => "#UD",
        7 => "#NM",
        8 => "#DF",
        10 => "#TS",
        11 => "#NP",
        12 => "#SS",
        13 => "#GP",
        14 => "#PF",
        16 => "#MF",
        17 => "#AC",
        18 => "#MC",
        19 => "#XM",
        _ => "#other",
    }
}

/// A hypercall's return value as an answer (Xen's negative errno values).
pub fn errno_answer(ret: u64) -> &'static str {
    let r = ret as i64;
    if r >= 0 {
        return OK;
    }
    match -r {
        1 => "-EPERM",
        2 => "-ENOENT",
        3 => "-ESRCH",
        7 => "-E2BIG",
        11 => "-EAGAIN",
        12 => "-ENOMEM",
        13 => "-EACCES",
        14 => "-EFAULT",
        16 => "-EBUSY",
        17 => "-EEXIST",
        19 => "-ENODEV",
        22 => "-EINVAL",
        28 => "-ENOSPC",
        34 => "-ERANGE",
        38 => "-ENOSYS",
        95 => "-EOPNOTSUPP",
        _ => "-Eother",
    }
}

/// Most distinct answers one class keeps (more are counted as `other`).
pub const MAX_ANSWERS: usize = 24;

/// One class's counts.
#[derive(Clone, Copy, Debug)]
pub struct ClassTally {
    pub calls: u64,
    answers: [(&'static str, u64); MAX_ANSWERS],
    len: usize,
}

impl ClassTally {
    const EMPTY: ClassTally = ClassTally {
        calls: 0,
        answers: [("", 0); MAX_ANSWERS],
        len: 0,
    };

    fn record(&mut self, answer: &'static str) {
        self.calls += 1;
        if let Some(a) = self.answers[..self.len].iter_mut().find(|a| a.0 == answer) {
            a.1 += 1;
        } else if self.len < MAX_ANSWERS {
            self.answers[self.len] = (answer, 1);
            self.len += 1;
        } else if let Some(last) = self.answers.last_mut() {
            // Full: the last slot becomes `other`.
            *last = ("other", last.1 + 1);
        }
    }

    /// `(answer, count)` in order of first appearance.
    pub fn answers(&self) -> &[(&'static str, u64)] {
        &self.answers[..self.len]
    }

    pub fn count(&self, answer: &str) -> u64 {
        self.answers()
            .iter()
            .find(|a| a.0 == answer)
            .map_or(0, |a| a.1)
    }
}

/// Every class's counts.
#[derive(Clone, Debug)]
pub struct Tally {
    classes: [ClassTally; 6],
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

impl Tally {
    pub const fn new() -> Tally {
        Tally {
            classes: [ClassTally::EMPTY; 6],
        }
    }

    pub fn record(&mut self, class: Class, answer: &'static str) {
        self.classes[class.index()].record(answer);
    }

    pub fn class(&self, class: Class) -> &ClassTally {
        &self.classes[class.index()]
    }

    pub fn total(&self) -> u64 {
        self.classes.iter().map(|c| c.calls).sum()
    }

    /// The class's line: `fuzz: class <class>: <N> calls; a=n b=m`.
    pub fn line(&self, class: Class) -> ClassLine<'_> {
        ClassLine {
            class,
            t: self.class(class),
        }
    }
}

/// [`Tally::line`]'s text.
pub struct ClassLine<'a> {
    class: Class,
    t: &'a ClassTally,
}

impl fmt::Display for ClassLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fuzz: class {}: {} calls;",
            self.class.name(),
            self.t.calls
        )?;
        for (a, n) in self.t.answers() {
            write!(f, " {a}={n}")?;
        }
        Ok(())
    }
}

/// Whether `[a, a + alen)` and `[b, b + blen)` overlap.
fn overlaps(a: u64, alen: u64, b: u64, blen: u64) -> bool {
    a < b + blen && b < a + alen
}

// ---- Port I/O --------------------------------------------------------------------

/// One port access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortOp {
    pub port: u16,
    /// 1, 2 or 4.
    pub size: u8,
    pub write: bool,
    pub value: u32,
}

/// Port ranges worth hitting more often than chance would: the PICs, the
/// PIT and port 0x61, the RTC/CMOS, POST and delay ports, port 0x92, the
/// 8042, the ELCR, COM1/COM2, PCI configuration, Xen's debug port, both
/// ACPI PM blocks (Xen's V0 at 0x1f40 and V1 at 0xb000, GPE0 below), the
/// IDE and VGA ranges, the top of the port space (accesses that wrap).
pub const PORT_RANGES: &[(u16, u16)] = &[
    (0x20, 2),
    (0xa0, 2),
    (0x40, 4),
    (0x60, 5),
    (0x70, 2),
    (0x80, 1),
    (0x92, 1),
    (0xed, 1),
    (0x4d0, 2),
    (0x3f8, 8),
    (0x2f8, 8),
    (0xcf8, 8),
    (0xe9, 1),
    (0x1f40, 0x20),
    (0xafe0, 0x20),
    (0xb000, 0x40),
    (0x1f0, 8),
    (0x3c0, 0x20),
    (0xfff8, 8),
];

/// Ports whose writes reset the machine on real hardware: the PIIX reset
/// control register 0xcf9 (the FADT's RESET_REG), port 0x92's fast reset
/// and the 8042's command port (0xfe pulses reset). Writes touching them,
/// or the ACPI PM1a control register (an S5 write powers off), are
/// skipped.
pub const RESET_PORTS: &[u16] = &[0xcf9, 0x92, 0x64];

/// The reason a write at `port` of `size` bytes is skipped, if it is:
/// `pm1a_cnt` is where the firmware's FADT puts PM1a_CNT (2 bytes).
/// A 4-byte write to 0xcf8 is the PCI configuration address, not 0xcf9.
pub fn port_write_skipped(port: u16, size: u8, pm1a_cnt: u16) -> bool {
    if port == 0xcf8 && size == 4 {
        return false;
    }
    // Accesses near the top wrap to port 0 (as the bus does).
    let touches = |p: u16, len: u16| {
        (0..u16::from(size)).any(|i| {
            let q = port.wrapping_add(i);
            q >= p && q - p < len
        })
    };
    RESET_PORTS.iter().any(|&p| touches(p, 1)) || touches(pm1a_cnt, 2)
}

pub fn gen_port(rng: &mut Rng) -> PortOp {
    let port = if rng.chance(2, 3) {
        let (base, len) = rng.pick(PORT_RANGES);
        base.wrapping_add(rng.below(u64::from(len)) as u16)
    } else {
        rng.next_u64() as u16
    };
    let size = rng.pick(&[1u8, 2, 4]);
    let write = rng.chance(1, 2);
    let mut value = rng.value() as u32;
    if port == 0xe9 {
        // Xen's debug port prints on the hypervisor's console: printable
        // bytes and newlines only, so the log stays readable.
        value = if rng.chance(1, 16) {
            u32::from(b'\n')
        } else {
            0x20 + rng.below(0x5f) as u32
        };
        return PortOp {
            port,
            size: 1,
            write,
            value,
        };
    }
    PortOp {
        port,
        size,
        write,
        value,
    }
}

// ---- MMIO ------------------------------------------------------------------------

/// The local APIC's page.
pub const LAPIC: u64 = 0xfee0_0000;
/// The IOAPIC's page.
pub const IOAPIC: u64 = 0xfec0_0000;
/// Where an HPET would be (none is emulated: the device model answers).
pub const HPET: u64 = 0xfed0_0000;
/// Xen's special pages (ioreq, xenstore, console ...) sit just below
/// here; they are RAM the guest must leave alone (its own I/O goes
/// through them).
pub const SPECIAL_START: u64 = 0xfeff_8000;
pub const SPECIAL_END: u64 = 0xff00_0000;
/// Holes below 4 GiB: no RAM, no emulated device (the device model
/// answers, all ones). Guest RAM is far below 3 GiB.
pub const HOLES: &[(u64, u64)] = &[
    (0xc000_0000, 0xfec0_0000),
    (0xfec0_1000, 0xfed0_0000),
    (0xfed0_1000, 0xfee0_0000),
    (0xfee0_1000, 0xfeff_0000),
    (SPECIAL_END, 0x1_0000_0000),
];
/// The LAPIC's ICR and LVT registers (and CMCI's at 0x2f0): a write there
/// may send INIT or SIPI, or route an interrupt as INIT, SMI or NMI.
pub const LAPIC_DELIVERY: (u64, u64) = (0x2f0, 0x90);
/// The delivery-mode field of an ICR, LVT or IOAPIC redirection entry.
pub const DELIVERY_MODE: u64 = 0x700;
/// The IOAPIC's window register.
pub const IOWIN: u64 = 0x10;

/// One MMIO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioOp {
    pub addr: u64,
    /// 1, 2, 4 or 8.
    pub size: u8,
    pub write: bool,
    pub value: u64,
    /// A write to the IOAPIC's window: the kernel clears the delivery mode
    /// if IOREGSEL selects a redirection entry's low half.
    pub ioapic_window: bool,
}

/// A target page: LAPIC, IOAPIC, HPET or a hole (page-aligned).
pub fn gen_target_page(rng: &mut Rng) -> u64 {
    match rng.below(8) {
        0..=2 => LAPIC,
        3 | 4 => IOAPIC,
        5 => HPET,
        _ => {
            let (lo, hi) = rng.pick(HOLES);
            (lo + rng.below(hi - lo)) & !0xfff
        }
    }
}

pub fn gen_mmio(rng: &mut Rng) -> MmioOp {
    let page = gen_target_page(rng);
    let size = rng.pick(&[1u8, 2, 4, 8]);
    let off = match rng.below(4) {
        // Aligned register offsets (what drivers do).
        0 | 1 => rng.below(0x100) * 16 % 0x1000,
        // Unaligned, and across the page's end.
        2 => 0x1000 - u64::from(size) + rng.below(u64::from(size)),
        _ => rng.below(0x1000),
    };
    let op = MmioOp {
        addr: page + off,
        size,
        write: rng.chance(1, 2),
        value: rng.value(),
        ioapic_window: false,
    };
    sanitize_mmio(op)
}

/// Keeps a write from sending INIT/SIPI or routing an interrupt as INIT:
/// LAPIC writes touching the ICR or an LVT become aligned 4-byte writes
/// with a fixed delivery mode; IOAPIC writes touching IOWIN become
/// aligned 4-byte writes the kernel checks against IOREGSEL.
pub fn sanitize_mmio(mut op: MmioOp) -> MmioOp {
    if !op.write {
        return op;
    }
    let len = u64::from(op.size);
    let (lo, dlen) = LAPIC_DELIVERY;
    if overlaps(op.addr, len, LAPIC + lo, dlen) {
        op.addr = (op.addr.max(LAPIC + lo) & !0xf).min(LAPIC + lo + dlen - 0x10);
        op.size = 4;
        op.value &= !DELIVERY_MODE & 0xffff_ffff;
    } else if overlaps(op.addr, len, IOAPIC + IOWIN, 4) {
        op.addr = IOAPIC + IOWIN;
        op.size = 4;
        op.value &= 0xffff_ffff;
        op.ioapic_window = true;
    }
    op
}

/// The IOWIN value to write when IOREGSEL holds `sel`.
pub fn sanitize_iowin(sel: u32, value: u64) -> u64 {
    let sel = sel & 0xff;
    if sel >= 0x10 && sel.is_multiple_of(2) {
        value & !DELIVERY_MODE
    } else {
        value
    }
}

// ---- MSRs ------------------------------------------------------------------------

pub const MSR_TSC: u32 = 0x10;
pub const MSR_TSC_ADJUST: u32 = 0x3b;
pub const MSR_APIC_BASE: u32 = 0x1b;
pub const MSR_EFER: u32 = 0xc000_0080;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;
pub const APIC_BASE_BSP: u64 = 1 << 8;
pub const APIC_BASE_EXTD: u64 = 1 << 10;
pub const APIC_BASE_EN: u64 = 1 << 11;
/// The hypervisor's MSRs (Xen's hypercall-page MSR is the first; Viridian
/// ones follow).
pub const HV_MSRS: (u32, u32) = (0x4000_0000, 0x4000_0300);

/// MSR index ranges to pick from: architectural, MTRR/PAT, MCA, VMX
/// capabilities, x2APIC, long mode, AMD's, the hypervisor's.
pub const MSR_RANGES: &[(u32, u32)] = &[
    (0x0, 0x200),
    (0x200, 0x300),
    (0x400, 0x4a0),
    (0x6e0, 0x6e1),
    (0x800, 0x900),
    (0xc000_0080, 0xc000_0110),
    (0xc001_0000, 0xc001_0300),
    (0xc001_1000, 0xc001_1040),
    HV_MSRS,
];

/// MSRs a write is undone on (read before, written back after): the
/// segment bases (the instruction streams use FS/GS overrides), PAT and
/// the MTRR default type, EFER, the APIC base, DEBUGCTL, MISC_ENABLE,
/// AMD's HWCR and TSC ratio.
pub const MSR_RESTORED: &[u32] = &[
    0xc000_0100,
    0xc000_0101,
    0xc000_0102,
    0x277,
    0x2ff,
    MSR_EFER,
    MSR_APIC_BASE,
    0x1d9,
    0x1a0,
    0xc001_0015,
    0xc000_0104,
];

/// One MSR access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsrOp {
    pub index: u32,
    pub write: bool,
    /// For [`MSR_TSC`]: a signed delta the kernel adds to the TSC's value.
    pub value: u64,
    /// Read the old value first and write it back after.
    pub restore: bool,
}

/// What the kernel knows when it sanitizes an MSR write.
#[derive(Clone, Copy, Debug)]
pub struct MsrCtx {
    /// EFER now (LME and LMA are kept).
    pub efer: u64,
    /// A page the hypercall page may be put in.
    pub scratch_gfn: u64,
}

pub fn gen_msr(rng: &mut Rng) -> MsrOp {
    let index = if rng.chance(7, 8) {
        let (lo, hi) = rng.pick(MSR_RANGES);
        lo + rng.below(u64::from(hi - lo)) as u32
    } else {
        rng.next_u64() as u32
    };
    MsrOp {
        index,
        write: rng.chance(1, 2),
        value: rng.value(),
        restore: MSR_RESTORED.contains(&index),
    }
}

/// The value to write (`None`: skipped): the TSC only moves a little
/// (the kernel times itself by it), the APIC stays at its address, EFER
/// keeps long mode, the hypercall page lands in scratch memory, and the
/// x2APIC ICR and LVTs get a fixed delivery mode.
pub fn sanitize_msr(op: &MsrOp, ctx: &MsrCtx) -> Option<u64> {
    let v = op.value;
    Some(match op.index {
        MSR_TSC | MSR_TSC_ADJUST => (v as i64 >> 44) as u64,
        MSR_APIC_BASE => {
            LAPIC
                | APIC_BASE_BSP
                | (v & (APIC_BASE_EN | APIC_BASE_EXTD))
                | if v & 0xf == 0 {
                    // Now and then a reserved bit (#GP).
                    1 << [0u32, 3, 7, 9, 52, 63][(v >> 58) as usize % 6]
                } else {
                    0
                }
        }
        MSR_EFER => (v & !(EFER_LME | EFER_LMA)) | (ctx.efer & (EFER_LME | EFER_LMA)),
        0x82f | 0x830 | 0x832..=0x837 => v & !DELIVERY_MODE,
        i if (HV_MSRS.0..HV_MSRS.1).contains(&i) => {
            if v >> 12 < 1 << 20 {
                (ctx.scratch_gfn << 12) | (v & 0xfff)
            } else {
                v
            }
        }
        _ => v,
    })
}

// ---- CPUID -----------------------------------------------------------------------

pub fn gen_cpuid(rng: &mut Rng) -> (u32, u32) {
    let leaf = match rng.below(5) {
        0 => rng.below(0x25) as u32,
        1 => 0x4000_0000 + rng.below(0x120) as u32,
        2 => 0x8000_0000 + rng.below(0x30) as u32,
        3 => rng.pick(&[
            0x8fff_ffffu32,
            0xffff_ffff,
            0x4fff_ffff,
            0xc000_0000,
            0x2000_0000,
        ]),
        _ => rng.next_u64() as u32,
    };
    let sub = if rng.chance(1, 2) {
        rng.below(0x40) as u32
    } else {
        rng.next_u64() as u32
    };
    (leaf, sub)
}

// ---- Hypercalls ----------------------------------------------------------------

/// Xen's hypercall numbers this module treats specially.
pub mod hc {
    pub const MEMORY_OP: u64 = 12;
    pub const XEN_VERSION: u64 = 17;
    pub const CONSOLE_IO: u64 = 18;
    pub const GRANT_TABLE_OP: u64 = 20;
    pub const VCPU_OP: u64 = 24;
    pub const SCHED_OP: u64 = 29;
    pub const EVENT_CHANNEL_OP: u64 = 32;
    pub const HVM_OP: u64 = 34;
    pub const DM_OP: u64 = 41;
}

/// Sub-operations that only read, or act on state the guest may lose
/// (event channels, grant versions, timers), by hypercall: those left out
/// hand away or remap guest RAM (populate/decrease_reservation,
/// add_to_physmap, init_control, register_vcpu_info ...), take vCPUs
/// down, shut the domain down or arm a watchdog: what would stop the
/// guest on Xen too.
pub fn safe_subops(nr: u64) -> Option<&'static [u64]> {
    Some(match nr {
        // maximum_ram_page, current/maximum_reservation, machphys_mfn_list,
        // memory_map, machine_memory_map, machphys_mapping,
        // set_memory_map (privileged), maximum_gpfn.
        hc::MEMORY_OP => &[2, 3, 4, 5, 9, 10, 12, 13, 14, 40, 50, 63],
        // xen_version: all of them (each writes at most a page).
        hc::XEN_VERSION => &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 99],
        // setup_table (lists frames), query_size, set/get_version,
        // get_status_frames.
        hc::GRANT_TABLE_OP => &[2, 6, 8, 9, 10, 11, 30],
        // is_up, get_runstate_info, the timers, get_physid.
        hc::VCPU_OP => &[3, 4, 6, 7, 8, 9, 12, 40],
        // yield, pin_override (privileged), unknown.
        hc::SCHED_OP => &[0, 7, 8, 20, 1000],
        // bind_virq, close, send, status, alloc_unbound, bind_ipi,
        // bind_vcpu, unmask, reset, set_priority, reset_cont, unknown
        // (not init_control, expand_array: they take guest frames).
        hc::EVENT_CHANNEL_OP => &[1, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 30],
        // get_param, unknown.
        hc::HVM_OP => &[1, 40, 1000],
        // Writes to Xen's console; the device model's operations.
        hc::CONSOLE_IO | hc::DM_OP => &[],
        _ => return None,
    })
}

/// One hypercall: number and five arguments (RDI, RSI, RDX, R10, R8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HypercallOp {
    pub nr: u64,
    pub args: [u64; 5],
    /// VMCALL instead of VMMCALL (#UD on AMD).
    pub vmcall: bool,
    /// Not made (see [`safe_subops`]).
    pub skipped: bool,
}

/// Bytes of scratch memory hypercalls may write: the kernel puts them at
/// the very top of RAM, so an array a hypercall writes past their end
/// runs off RAM (the hypervisor must fail with -EFAULT there), and it
/// leaves the first MiB unmapped, so a null or small handle faults too.
pub const SCRATCH_LEN: u64 = 64 * 1024;

/// A pointer argument: into the scratch area (mostly), a small number
/// (unmapped), the LAPIC page, above 4 GiB (unmapped) or non-canonical.
fn pointer(rng: &mut Rng, scratch: u64) -> u64 {
    match rng.below(8) {
        0 => rng.below(0x1000),
        1 => (1 << 63) | (rng.next_u64() >> 2),
        2 => LAPIC + rng.below(0x1000),
        3 => 0x1_0000_0000 + rng.below(1 << 32),
        _ => scratch + rng.below(SCRATCH_LEN / 8) * 8,
    }
}

/// `scratch` is the guest-physical (= virtual) address of the
/// [`SCRATCH_LEN`] bytes the hypercall may write; their contents are the
/// kernel's (pointers back into them and small numbers, see
/// [`scratch_words`]). Counts passed in registers stay small (an array
/// op's count in RDX would otherwise walk the kernel's memory).
pub fn gen_hypercall(rng: &mut Rng, scratch: u64) -> HypercallOp {
    let nr = match rng.below(8) {
        0 => rng.next_u64(),
        1 => 64 + rng.below(64),
        _ => rng.below(50),
    };
    let mut args = [
        rng.below(16),
        pointer(rng, scratch),
        rng.below(8),
        rng.below(8),
        rng.below(8),
    ];
    // vcpu_op(cmd, vcpuid, arg): the third is the pointer.
    if nr == hc::VCPU_OP {
        args[1] = rng.below(4);
        args[2] = pointer(rng, scratch);
    }
    for a in &mut args[3..] {
        if rng.chance(1, 2) {
            *a = pointer(rng, scratch);
        }
    }
    let mut skipped = false;
    if let Some(subs) = safe_subops(nr) {
        if subs.is_empty() {
            skipped = true;
        } else {
            args[0] = rng.pick(subs);
        }
    }
    HypercallOp {
        nr,
        args,
        vmcall: rng.chance(1, 16),
        skipped,
    }
}

/// What the scratch area holds before each hypercall: even words point
/// back into it, odd words are small numbers; so a handle a structure
/// carries stays in the area (or faults), and a count is small or runs
/// off the top of RAM.
pub fn scratch_words(rng: &mut Rng, scratch: u64, words: &mut [u64]) {
    let n = words.len() as u64;
    for (i, w) in words.iter_mut().enumerate() {
        *w = if i.is_multiple_of(2) {
            scratch + rng.below(n) * 8
        } else {
            rng.below(4)
        };
    }
}

/// `EVTCHNOP_close`, `EVTCHNOP_bind_vcpu`, `EVTCHNOP_reset`.
pub const EVTCHNOP_CLOSE: u64 = 3;
pub const EVTCHNOP_BIND_VCPU: u64 = 8;
pub const EVTCHNOP_RESET: u64 = 10;
/// `DOMID_SELF`.
pub const DOMID_SELF: u64 = 0x7ff0;
/// Ports the first operations close.
pub const PREAMBLE_PORTS: u64 = 8;
/// The first operations, whatever the seed: close event channel ports
/// 1..=8, bind port 1 to vCPU 0, reset every port of its own. Its ioreq
/// ports (the device model's) must survive all of it, or its next port
/// access to the device model never completes.
pub const PREAMBLE: u64 = PREAMBLE_PORTS + 2;

/// Preamble operation `i` (< [`PREAMBLE`]): the hypercall, and the two
/// words to put at `scratch` first.
pub fn preamble(i: u64, scratch: u64) -> (HypercallOp, [u64; 2]) {
    let (cmd, words) = if i < PREAMBLE_PORTS {
        (EVTCHNOP_CLOSE, [i + 1, 0])
    } else if i == PREAMBLE_PORTS {
        // struct evtchn_bind_vcpu { port, vcpu }
        (EVTCHNOP_BIND_VCPU, [1, 0])
    } else {
        // struct evtchn_reset { domid_t dom }
        (EVTCHNOP_RESET, [DOMID_SELF, 0])
    };
    (
        HypercallOp {
            nr: hc::EVENT_CHANNEL_OP,
            args: [cmd, scratch, 0, 0, 0],
            vmcall: false,
            skipped: false,
        },
        words,
    )
}

// ---- Instruction streams -----------------------------------------------------

/// Longest stream: 15 bytes is the architectural limit; longer ones (many
/// prefixes) are generated on purpose and must raise #GP.
pub const MAX_STREAM: usize = 32;

/// Immediate after the ModRM operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Imm {
    None,
    /// One byte.
    B,
    /// Two bytes with an operand-size prefix (and no REX.W), else four.
    Z,
}

/// An opcode with a ModRM memory operand.
#[derive(Clone, Copy, Debug)]
pub struct OpDesc {
    pub op: &'static [u8],
    /// ModRM.reg values it takes as an opcode extension (`None`: reg is
    /// a register operand).
    pub digits: Option<&'static [u8]>,
    pub imm: Imm,
}

const ALL: &[u8] = &[0, 1, 2, 3, 4, 5, 6, 7];

const fn d(op: &'static [u8], digits: &'static [u8], imm: Imm) -> OpDesc {
    OpDesc {
        op,
        digits: Some(digits),
        imm,
    }
}

const fn r(op: &'static [u8]) -> OpDesc {
    OpDesc {
        op,
        digits: None,
        imm: Imm::None,
    }
}

/// The opcodes: what the hypervisor's MMIO emulator handles (mov, movzx,
/// movsx, the ALU family, test, xchg, bt*), what it refuses (inc, dec,
/// not, neg, mul, div, cmpxchg, xadd, SSE moves, descriptor-table stores,
/// pop to memory, clflush, prefetch), and encodings that are #UD
/// (undefined group members, ud0/ud1/ud2). Left out: what loads state the
/// guest runs on (lgdt, lidt, lmsw), control transfers and everything
/// with a register-only form.
pub const OPS: &[OpDesc] = &[
    r(&[0x88]),
    r(&[0x89]),
    r(&[0x8a]),
    r(&[0x8b]),
    d(&[0xc6], ALL, Imm::B),
    d(&[0xc7], ALL, Imm::Z),
    r(&[0x00]),
    r(&[0x01]),
    r(&[0x02]),
    r(&[0x03]),
    r(&[0x08]),
    r(&[0x0b]),
    r(&[0x10]),
    r(&[0x19]),
    r(&[0x21]),
    r(&[0x2a]),
    r(&[0x31]),
    r(&[0x3b]),
    d(&[0x80], ALL, Imm::B),
    d(&[0x81], ALL, Imm::Z),
    d(&[0x83], ALL, Imm::B),
    r(&[0x84]),
    r(&[0x85]),
    r(&[0x86]),
    r(&[0x87]),
    d(&[0xf6], &[0, 1], Imm::B),
    d(&[0xf6], &[2, 3, 4, 5, 6, 7], Imm::None),
    d(&[0xf7], &[0, 1], Imm::Z),
    d(&[0xf7], &[2, 3, 4, 5, 6, 7], Imm::None),
    d(&[0xfe], ALL, Imm::None),
    d(&[0xff], &[0, 1, 6, 7], Imm::None),
    d(&[0x8f], &[0], Imm::None),
    r(&[0x63]),
    r(&[0x0f, 0xb6]),
    r(&[0x0f, 0xb7]),
    r(&[0x0f, 0xbe]),
    r(&[0x0f, 0xbf]),
    r(&[0x0f, 0xa3]),
    r(&[0x0f, 0xab]),
    r(&[0x0f, 0xb3]),
    r(&[0x0f, 0xbb]),
    d(&[0x0f, 0xba], ALL, Imm::B),
    r(&[0x0f, 0xb0]),
    r(&[0x0f, 0xb1]),
    r(&[0x0f, 0xc0]),
    r(&[0x0f, 0xc1]),
    r(&[0x0f, 0x10]),
    r(&[0x0f, 0x11]),
    r(&[0x0f, 0x6f]),
    r(&[0x0f, 0x7f]),
    d(&[0x0f, 0x00], &[0, 1, 2, 4, 5], Imm::None),
    d(&[0x0f, 0x01], &[0, 1, 4, 7], Imm::None),
    d(&[0x0f, 0xae], &[2, 3, 7], Imm::None),
    d(&[0x0f, 0x18], &[0, 1, 2, 3], Imm::None),
    d(&[0x0f, 0x1f], &[0], Imm::None),
    r(&[0x0f, 0xb9]),
    r(&[0x0f, 0xff]),
];

/// Legacy prefixes.
pub const PREFIXES: &[u8] = &[
    0x66, 0x67, 0xf2, 0xf3, 0xf0, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65,
];

/// The register (0..16) that holds a small count (RCX: `rep` counts, an
/// index); every other one but RSP holds the target address.
pub const REG_COUNT: u8 = 1;
pub const REG_RSP: u8 = 4;

/// A generated stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stream {
    pub bytes: [u8; MAX_STREAM],
    pub len: usize,
}

impl Stream {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

struct Builder {
    s: Stream,
}

impl Builder {
    fn push(&mut self, b: u8) {
        if self.s.len < MAX_STREAM {
            self.s.bytes[self.s.len] = b;
            self.s.len += 1;
        }
    }

    fn push_le(&mut self, v: u64, n: usize) {
        for i in 0..n {
            self.push((v >> (8 * i)) as u8);
        }
    }
}

/// A stream aimed at `target`, whose registers the kernel sets: RCX to a
/// count below 16, RSP to a scratch stack, every other one to `target`.
///
/// The memory operand is always `[base + disp]` or `[base + rcx*s +
/// disp]` with a base holding `target` (or RSP) and `disp` ≥ 0 (so a
/// stream never reaches below its target), `moffs` = `target`, or a
/// string instruction (RSI/RDI = `target`); never RIP-relative or
/// absolute (which would hit the kernel). ModRM.reg is never RSP/SP. The
/// CPU decodes it (#UD, #GP for more than 15 bytes) or the hypervisor
/// emulates the MMIO access it makes.
pub fn gen_stream(rng: &mut Rng, target: u64) -> Stream {
    let mut b = Builder {
        s: Stream {
            bytes: [0; MAX_STREAM],
            len: 0,
        },
    };
    // Legacy prefixes: usually a few, sometimes far too many.
    let n_prefix = match rng.below(16) {
        0..=5 => 0,
        6..=11 => 1 + rng.below(2),
        12..=14 => 1 + rng.below(4),
        _ => 8 + rng.below(10),
    };
    let mut opsize16 = false;
    let mut addr32 = false;
    for _ in 0..n_prefix {
        let p = rng.pick(PREFIXES);
        opsize16 |= p == 0x66;
        addr32 |= p == 0x67;
        b.push(p);
    }
    // String instructions and moffs forms: no ModRM.
    match rng.below(10) {
        0 => {
            if rng.chance(1, 2) {
                b.push(0x40 | rng.below(16) as u8);
            }
            b.push(rng.pick(&[0xa4u8, 0xa5, 0xaa, 0xab, 0xac, 0xad, 0xa6, 0xa7, 0xae, 0xaf]));
            return b.s;
        }
        1 => {
            let rex_w = rng.chance(1, 2);
            if rex_w {
                b.push(0x48);
            }
            b.push(0xa0 + rng.below(4) as u8);
            b.push_le(target, if addr32 { 4 } else { 8 });
            return b.s;
        }
        _ => {}
    }
    let desc = rng.pick(OPS);
    // REX right before the opcode (anywhere else it is ignored).
    let rex = if rng.chance(1, 2) {
        0x40 | rng.below(16) as u8
    } else {
        0
    };
    let (w, rr, x, bb) = (rex & 8 != 0, (rex >> 2) & 1, (rex >> 1) & 1, rex & 1);
    if rex != 0 {
        b.push(rex);
    }
    for &o in desc.op {
        b.push(o);
    }
    // ModRM.reg: an opcode extension, or any register but RSP/SP.
    let reg = match desc.digits {
        Some(ds) => rng.pick(ds),
        None => loop {
            let g = rng.below(8) as u8;
            if !(g == REG_RSP && rr == 0) {
                break g;
            }
        },
    };
    let mut mode = 1 + rng.below(2) as u8; // disp8 or disp32
    if rng.chance(1, 3) {
        mode = 0;
    }
    let use_sib = rng.chance(1, 4);
    let rm = if use_sib {
        4
    } else {
        // Any base holding the target: not RCX, not 100 (SIB).
        loop {
            let g = rng.below(8) as u8;
            let full = (bb << 3) | g;
            if g != 4 && full != REG_COUNT {
                break g;
            }
        }
    };
    // No RIP-relative operand.
    if mode == 0 && rm == 5 {
        mode = 1;
    }
    b.push((mode << 6) | (reg << 3) | rm);
    if use_sib {
        // Index: none, or RCX when REX.X is clear.
        let index = if x == 0 && rng.chance(1, 2) {
            REG_COUNT
        } else {
            4
        };
        let base = loop {
            let g = rng.below(8) as u8;
            let full = (bb << 3) | g;
            if full != REG_COUNT {
                break g;
            }
        };
        // No absolute disp32 operand.
        if mode == 0 && base == 5 {
            mode = 1;
            let last = b.s.len - 1;
            b.s.bytes[last] = (mode << 6) | (reg << 3) | rm;
        }
        let scale = rng.below(4) as u8;
        b.push((scale << 6) | (index << 3) | base);
    }
    match mode {
        1 => b.push(rng.below(0x80) as u8),
        2 => b.push_le(rng.below(0x100), 4),
        _ => {}
    }
    match desc.imm {
        Imm::None => {}
        Imm::B => b.push(rng.next_u64() as u8),
        Imm::Z => {
            let n = if opsize16 && !w { 2 } else { 4 };
            b.push_le(rng.next_u64(), n);
        }
    }
    b.s
}

/// Where a stream's target goes in each page kind: the LAPIC's below the
/// ICR/LVTs (disp and `rep` stay below 0x300) or above them; the IOAPIC's
/// at IOWIN (the kernel selects a non-redirection register first);
/// anywhere in the HPET page or a hole.
pub fn gen_stream_target(rng: &mut Rng) -> u64 {
    let page = gen_target_page(rng);
    page + match page {
        LAPIC => {
            if rng.chance(1, 2) {
                rng.below(0x300 - STREAM_REACH)
            } else {
                0x400 + rng.below(0xa00)
            }
        }
        IOAPIC => IOWIN + rng.below(4),
        _ => rng.below(0x1000),
    }
}

/// Reach of a stream from its target: disp (< 0x100) + RCX·8 (< 128) +
/// the widest access or `rep` run (16 × 8).
pub const STREAM_REACH: u64 = 0x100 + 128 + 128 + 16;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn rng_is_deterministic_and_seeds_differ() {
        let a: Vec<u64> = (0..8)
            .scan(Rng::new(1), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..8)
            .scan(Rng::new(1), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..8)
            .scan(Rng::new(2), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut z = Rng::new(0);
        assert_ne!(z.next_u64(), 0);
        assert_eq!(z.below(0), 0);
        for _ in 0..1000 {
            assert!(z.below(7) < 7);
        }
    }

    #[test]
    fn config_from_the_command_line() {
        assert_eq!(
            Config::parse(None),
            Config {
                seed: Config::DEFAULT_SEED,
                count: Config::DEFAULT_COUNT,
                trace: None,
            }
        );
        let c = Config::parse(Some(b"console=com1 seed=0x2a count=500"));
        assert_eq!(
            c,
            Config {
                seed: 42,
                count: 500,
                trace: None
            }
        );
        assert_eq!(Config::parse(Some(b"trace=10")).trace, Some(10));
        let c = Config::parse(Some(b"seed=x count=7"));
        assert_eq!(c.seed, Config::DEFAULT_SEED);
        assert_eq!(c.count, 7);
    }

    #[test]
    fn tally_lines_have_the_parsed_format() {
        let mut t = Tally::new();
        t.record(Class::Msr, OK);
        t.record(Class::Msr, "#GP");
        t.record(Class::Msr, "#GP");
        t.record(Class::Io, SKIPPED);
        assert_eq!(t.total(), 4);
        assert_eq!(
            std::format!("{}", t.line(Class::Msr)),
            "fuzz: class msr: 3 calls; ok=1 #GP=2"
        );
        assert_eq!(
            std::format!("{}", t.line(Class::Cpuid)),
            "fuzz: class cpuid: 0 calls;"
        );
        assert_eq!(t.class(Class::Io).count(SKIPPED), 1);
        // More distinct answers than slots: counted, not lost.
        let mut t = Tally::new();
        let names: Vec<&'static str> = (0..40)
            .map(|i| &*std::boxed::Box::leak(std::format!("a{i}").into_boxed_str()))
            .collect();
        for n in &names {
            t.record(Class::Io, n);
        }
        let c = t.class(Class::Io);
        assert_eq!(c.calls, 40);
        assert_eq!(c.answers().iter().map(|a| a.1).sum::<u64>(), 40);
    }

    #[test]
    fn answers() {
        assert_eq!(vector_answer(13), "#GP");
        assert_eq!(vector_answer(6), "#UD");
        assert_eq!(vector_answer(200), "#other");
        assert_eq!(errno_answer(0), OK);
        assert_eq!(errno_answer(5), OK);
        assert_eq!(errno_answer(-38i64 as u64), "-ENOSYS");
        assert_eq!(errno_answer(-9999i64 as u64), "-Eother");
    }

    #[test]
    fn reset_and_power_off_ports_are_skipped() {
        assert!(port_write_skipped(0xcf9, 1, 0xb004));
        assert!(port_write_skipped(0xcf8, 2, 0xb004));
        assert!(!port_write_skipped(0xcf8, 4, 0xb004));
        assert!(!port_write_skipped(0xcfc, 4, 0xb004));
        assert!(port_write_skipped(0x92, 1, 0xb004));
        assert!(port_write_skipped(0x90, 4, 0xb004));
        assert!(port_write_skipped(0x64, 1, 0xb004));
        assert!(port_write_skipped(0xb004, 2, 0xb004));
        assert!(port_write_skipped(0xb002, 4, 0xb004));
        assert!(port_write_skipped(0xb005, 1, 0xb004));
        assert!(!port_write_skipped(0xb006, 2, 0xb004));
        assert!(!port_write_skipped(0x3f8, 1, 0xb004));
        // A wrapping access reaches port 0..2.
        assert!(!port_write_skipped(0xffff, 4, 0xb004));
        assert!(port_write_skipped(0xffff, 4, 0x1));
    }

    #[test]
    fn generated_ports_and_debug_port_bytes() {
        let mut rng = Rng::new(7);
        let mut seen_e9 = false;
        for _ in 0..100_000 {
            let p = gen_port(&mut rng);
            assert!([1, 2, 4].contains(&p.size));
            if p.port == 0xe9 {
                seen_e9 = true;
                assert_eq!(p.size, 1);
                assert!(p.value == 10 || (0x20..0x7f).contains(&p.value));
            }
        }
        assert!(seen_e9);
    }

    #[test]
    fn mmio_writes_never_send_init_or_route_as_init() {
        let mut rng = Rng::new(3);
        let mut lapic_delivery = 0;
        for _ in 0..200_000 {
            let op = gen_mmio(&mut rng);
            assert!([1, 2, 4, 8].contains(&op.size));
            let len = u64::from(op.size);
            assert!(!overlaps(
                op.addr,
                len,
                SPECIAL_START,
                SPECIAL_END - SPECIAL_START
            ));
            assert!(op.addr >= 0xc000_0000 && op.addr < 0x1_0000_0000);
            if !op.write {
                continue;
            }
            if overlaps(op.addr, len, LAPIC + 0x2f0, 0x90) {
                lapic_delivery += 1;
                assert_eq!(op.size, 4);
                assert_eq!(op.addr % 16, 0);
                assert!(op.addr >= LAPIC + 0x2f0 && op.addr < LAPIC + 0x380);
                assert_eq!(op.value & DELIVERY_MODE, 0);
            }
            if overlaps(op.addr, len, IOAPIC + IOWIN, 4) {
                assert!(op.ioapic_window);
                assert_eq!((op.addr, op.size), (IOAPIC + IOWIN, 4));
            }
        }
        assert!(lapic_delivery > 0);
        assert_eq!(sanitize_iowin(0x10, 0x5ff), 0xff);
        assert_eq!(sanitize_iowin(0x11, 0x5ff), 0x5ff);
        assert_eq!(sanitize_iowin(0x01, 0x5ff), 0x5ff);
    }

    #[test]
    fn msr_writes_keep_the_guest_alive() {
        let ctx = MsrCtx {
            efer: EFER_LME | EFER_LMA | 1,
            scratch_gfn: 0x123,
        };
        let mut rng = Rng::new(11);
        for _ in 0..100_000 {
            let op = gen_msr(&mut rng);
            let v = sanitize_msr(&op, &ctx).unwrap();
            match op.index {
                MSR_EFER => assert_eq!(v & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA),
                MSR_APIC_BASE => {
                    assert_eq!(v & 0x000f_ffff_0000_0000, 0);
                    assert_eq!(v & 0xffff_f000, LAPIC);
                    assert_ne!(v & APIC_BASE_BSP, 0);
                }
                MSR_TSC | MSR_TSC_ADJUST => {
                    assert!((v as i64).unsigned_abs() < 1 << 20)
                }
                0x830 | 0x82f | 0x832..=0x837 => assert_eq!(v & DELIVERY_MODE, 0),
                i if (HV_MSRS.0..HV_MSRS.1).contains(&i) => {
                    assert!(v >> 12 == 0x123 || v >> 12 >= 1 << 20)
                }
                _ => {}
            }
            assert_eq!(op.restore, MSR_RESTORED.contains(&op.index));
        }
    }

    #[test]
    fn hypercalls_avoid_what_stops_the_guest() {
        let mut rng = Rng::new(5);
        let mut by_nr: HashMap<u64, u64> = HashMap::new();
        for _ in 0..100_000 {
            let h = gen_hypercall(&mut rng, 0x1ff_0000);
            // Counts in registers stay small; pointers are scratch,
            // unmapped, device or non-canonical.
            if h.nr != hc::VCPU_OP {
                assert!(h.args[2] < 8, "{h:?}");
            }
            for &a in &h.args[1..] {
                assert!(
                    a < 0x1000
                        || (0x1ff_0000..0x200_0000).contains(&a)
                        || a & !0xfff == LAPIC
                        || (0x1_0000_0000..0x2_0000_0000).contains(&a)
                        || a >> 63 == 1,
                    "{h:?}"
                );
            }
            if h.skipped {
                assert!(h.nr == hc::CONSOLE_IO || h.nr == hc::DM_OP);
                continue;
            }
            *by_nr.entry(h.nr).or_default() += 1;
            let forbidden: &[(u64, &[u64])] = &[
                (hc::MEMORY_OP, &[0, 1, 6, 7, 11]),
                (hc::VCPU_OP, &[0, 1, 2, 5, 10, 13]),
                (hc::SCHED_OP, &[1, 2, 3, 4, 5, 6]),
                (hc::EVENT_CHANNEL_OP, &[11, 12]),
                (hc::HVM_OP, &[0]),
            ];
            for (nr, subs) in forbidden {
                if h.nr == *nr {
                    assert!(!subs.contains(&h.args[0]), "{h:?}");
                }
            }
        }
        assert!(by_nr.contains_key(&hc::XEN_VERSION));
        assert!(by_nr.keys().any(|&n| n > 1000));
        let mut words = [0u64; 512];
        scratch_words(&mut rng, 0x20_0000, &mut words);
        for (i, w) in words.iter().enumerate() {
            if i.is_multiple_of(2) {
                assert!((0x20_0000..0x20_1000).contains(w));
            } else {
                assert!(*w < 4);
            }
        }
    }

    /// A minimal x86-64 length decoder for exactly the forms
    /// [`gen_stream`] emits, written from the SDM independently of it.
    /// Length, ModRM.mod, and (ModRM.reg, ModRM.rm, REX) of a ModRM form.
    type Decoded = (usize, Option<u8>, Option<(u8, u8, u8)>);

    fn decode_len(b: &[u8]) -> Option<Decoded> {
        let mut i = 0;
        let (mut o16, mut a32) = (false, false);
        while i < b.len() && PREFIXES.contains(&b[i]) {
            o16 |= b[i] == 0x66;
            a32 |= b[i] == 0x67;
            i += 1;
        }
        let mut rex = 0;
        if i < b.len() && b[i] & 0xf0 == 0x40 {
            rex = b[i];
            i += 1;
        }
        let op = *b.get(i)?;
        i += 1;
        if (0xa4..=0xaf).contains(&op) && op != 0xa8 && op != 0xa9 {
            return Some((i, None, None));
        }
        if (0xa0..=0xa3).contains(&op) {
            return Some((i + if a32 { 4 } else { 8 }, None, None));
        }
        let (two, op2) = if op == 0x0f {
            i += 1;
            (true, b[i - 1])
        } else {
            (false, 0)
        };
        let modrm = *b.get(i)?;
        i += 1;
        let (md, reg, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
        let mut base = rm;
        if rm == 4 && md != 3 {
            let sib = *b.get(i)?;
            i += 1;
            base = sib & 7;
        }
        i += match md {
            1 => 1,
            2 => 4,
            0 if base == 5 => 4,
            _ => 0,
        };
        let w = rex & 8 != 0;
        let z = if o16 && !w { 2 } else { 4 };
        let imm = match (two, op, op2) {
            (false, 0xc6 | 0x80 | 0x83, _) => 1,
            (false, 0xc7 | 0x81, _) => z,
            (false, 0xf6, _) if reg < 2 => 1,
            (false, 0xf7, _) if reg < 2 => z,
            (true, _, 0xba) => 1,
            _ => 0,
        };
        Some((i + imm, Some(md), Some((reg, rm, rex))))
    }

    #[test]
    fn streams_have_the_length_a_decoder_finds_and_stay_off_the_kernel() {
        let mut rng = Rng::new(99);
        let mut long = 0;
        for _ in 0..200_000 {
            let target = gen_stream_target(&mut rng);
            let s = gen_stream(&mut rng, target);
            let (len, md, regs) = decode_len(s.as_bytes()).expect("decodes");
            assert_eq!(len, s.len, "{:02x?}", s.as_bytes());
            if s.len > 15 {
                long += 1;
            }
            if let (Some(md), Some((reg, rm, rex))) = (md, regs) {
                assert_ne!(md, 3);
                // Never RIP-relative.
                assert!(!(md == 0 && rm == 5), "{:02x?}", s.as_bytes());
                let is_group = OPS.iter().any(|o| {
                    o.digits.is_some() && s.as_bytes().windows(o.op.len()).any(|w| w == o.op)
                });
                if !is_group {
                    assert!(!(reg == 4 && rex & 4 == 0), "{:02x?}", s.as_bytes());
                }
            }
            if target & !0xfff == LAPIC {
                let off = target & 0xfff;
                assert!(off + STREAM_REACH <= 0x300 || off >= 0x380, "{off:#x}");
            }
        }
        assert!(long > 0);
    }

    #[test]
    fn a_seed_replays_exactly() {
        let run = |seed| {
            let mut rng = Rng::new(seed);
            let mut out = Vec::new();
            for _ in 0..1000 {
                match Class::random(&mut rng) {
                    Class::Io => out.push(gen_port(&mut rng).port as u64),
                    Class::Mmio => out.push(gen_mmio(&mut rng).addr),
                    Class::Msr => out.push(u64::from(gen_msr(&mut rng).index)),
                    Class::Cpuid => out.push(u64::from(gen_cpuid(&mut rng).0)),
                    Class::Insn => {
                        let t = gen_stream_target(&mut rng);
                        out.push(gen_stream(&mut rng, t).len as u64)
                    }
                    Class::Hypercall => out.push(gen_hypercall(&mut rng, 0x1000).nr),
                }
            }
            out
        };
        assert_eq!(run(4), run(4));
        assert_ne!(run(4), run(5));
    }
}
