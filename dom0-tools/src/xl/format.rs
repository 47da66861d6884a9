//! `xl`'s output formats, as pure functions of plain data: `xl list` (and
//! `-v`, `-Z`, `-c`, `-n`), `xl list -l`'s libxl JSON, `xl info`,
//! `xl vcpu-list`, `xl sched-credit`, `xl uptime`, `xl block-list`,
//! `xl network-list`, the disk and vif JSON of `xl -N block-attach` /
//! `network-attach`, and one frame of `xl top` (xentop's table, computed
//! from two samples). Column widths and
//! format strings follow Xen 4.17's tools/xl and tools/xentop.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

use super::backend::{
    shutdown_reason, BlockInfo, CpuTopology, CreditDomain, CreditPool, DomainConfig, DomainInfo,
    NicInfo, NumaNode, PhysInfo, TopSample, Uname, VcpuInfo, VersionInfo,
};
use crate::xlcfg::vif::{Mac, NicType};
use crate::xlcfg::{DiskSpec, VifSpec};

/// A UUID as libxl prints it (`LIBXL_UUID_FMT`).
pub struct Uuid<'a>(pub &'a [u8; 16]);

impl fmt::Display for Uuid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The six state letters of `xl list` (`r b p s <reason> d`).
pub fn state_letters(d: &DomainInfo) -> [char; 6] {
    const REASONS: &[u8] = b"-rscwS";
    let reason = if d.shutdown { d.shutdown_reason } else { 0 };
    [
        if d.running { 'r' } else { '-' },
        if d.blocked { 'b' } else { '-' },
        if d.paused { 'p' } else { '-' },
        if d.shutdown { 's' } else { '-' },
        REASONS.get(reason as usize).map_or('?', |&c| c as char),
        if d.dying { 'd' } else { '-' },
    ]
}

/// Seconds with one decimal from nanoseconds, computed in `float` as xl does
/// (`(float)ns / 1e9`).
fn secs_f(ns: u64) -> f64 {
    f64::from(ns as f32) / 1e9
}

/// Which extra columns `xl list` shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListOpts {
    /// `-v`: UUID, reason code, security label.
    pub verbose: bool,
    /// `-Z`: security label.
    pub context: bool,
    /// `-c`: cpupool.
    pub cpupool: bool,
    /// `-n`: NUMA node affinity.
    pub numa: bool,
}

/// `xl list`'s header line.
pub fn list_header(out: &mut dyn Write, o: &ListOpts) -> fmt::Result {
    out.write_str("Name                                        ID   Mem VCPUs\tState\tTime(s)")?;
    if o.verbose {
        out.write_str("   UUID                            Reason-Code\tSecurity Label")?;
    }
    if o.context && !o.verbose {
        out.write_str("   Security Label")?;
    }
    if o.cpupool {
        out.write_str("         Cpupool")?;
    }
    if o.numa {
        out.write_str(" NODE Affinity")?;
    }
    out.write_str("\n")
}

/// One `xl list` row; `pool_name` is the domain's cpupool's name (for
/// `-c`).
pub fn list_row(out: &mut dyn Write, d: &DomainInfo, o: &ListOpts, pool_name: &str) -> fmt::Result {
    let s = state_letters(d);
    write!(
        out,
        "{:<40} {:>5} {:>5} {:>5}     {}{}{}{}{}{}  {:>8.1}",
        d.name,
        d.domid,
        d.current_memkb.saturating_add(d.outstanding_memkb) / 1024,
        d.vcpu_online,
        s[0],
        s[1],
        s[2],
        s[3],
        s[4],
        s[5],
        secs_f(d.cpu_time_ns)
    )?;
    if o.verbose {
        write!(out, " {}", Uuid(&d.uuid))?;
        if d.shutdown {
            write!(out, " {:>8x}", d.shutdown_reason)?;
        } else {
            write!(out, " {:>8}", "-")?;
        }
    }
    if o.verbose || o.context {
        write!(out, " {:>16}", "-")?;
    }
    if o.cpupool {
        write!(out, "{pool_name:>16}")?;
    }
    if o.numa {
        out.write_str(" all")?;
    }
    out.write_str("\n")
}

/// A JSON value, for `xl list -l` (libxl's yajl output, beautified).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Json {
    /// `null`.
    Null,
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<Json>),
    /// An object, keys in order.
    Object(Vec<(&'static str, Json)>),
}

impl Json {
    fn str(s: &str) -> Json {
        Json::Str(String::from(s))
    }

    fn int(n: u64) -> Json {
        Json::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }

    /// Writes the value pretty-printed as yajl does (four-space indent,
    /// `"key": value`), starting at indent level `level`.
    pub fn write(&self, out: &mut dyn Write, level: usize) -> fmt::Result {
        fn indent(out: &mut dyn Write, level: usize) -> fmt::Result {
            for _ in 0..level {
                out.write_str("    ")?;
            }
            Ok(())
        }
        match self {
            Json::Null => out.write_str("null"),
            Json::Int(n) => write!(out, "{n}"),
            Json::Str(s) => write_json_str(out, s),
            Json::Array(items) if items.is_empty() => out.write_str("[\n\n]"),
            Json::Array(items) => {
                out.write_str("[\n")?;
                for (i, v) in items.iter().enumerate() {
                    indent(out, level + 1)?;
                    v.write(out, level + 1)?;
                    out.write_str(if i + 1 < items.len() { ",\n" } else { "\n" })?;
                }
                indent(out, level)?;
                out.write_str("]")
            }
            Json::Object(items) if items.is_empty() => out.write_str("{\n\n}"),
            Json::Object(items) => {
                out.write_str("{\n")?;
                for (i, (k, v)) in items.iter().enumerate() {
                    indent(out, level + 1)?;
                    write_json_str(out, k)?;
                    out.write_str(": ")?;
                    v.write(out, level + 1)?;
                    out.write_str(if i + 1 < items.len() { ",\n" } else { "\n" })?;
                }
                indent(out, level)?;
                out.write_str("}")
            }
        }
    }
}

fn write_json_str(out: &mut dyn Write, s: &str) -> fmt::Result {
    out.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    out.write_str("\"")
}

/// One domain's entry of `xl list -l`: `{"domid": N, "config": {...}}`
/// with the libxl_domain_config fields Oxen knows.
pub fn domain_config_json(domid: u32, c: &DomainConfig) -> Json {
    let mut c_info = alloc::vec![
        ("type", Json::str(&c.guest_type)),
        ("name", Json::str(&c.name)),
    ];
    if c.uuid != [0; 16] {
        c_info.push(("uuid", Json::Str(alloc::format!("{}", Uuid(&c.uuid)))));
    }
    let mut b_info = alloc::vec![
        ("max_vcpus", Json::int(u64::from(c.max_vcpus))),
        (
            "avail_vcpus",
            Json::Array(
                c.avail_vcpus
                    .iter()
                    .map(|&v| Json::int(u64::from(v)))
                    .collect()
            )
        ),
        ("max_memkb", Json::int(c.max_memkb)),
        ("target_memkb", Json::int(c.target_memkb)),
    ];
    let mut sched = Vec::new();
    if let Some(w) = c.weight {
        sched.push(("weight", Json::int(u64::from(w))));
    }
    if let Some(cap) = c.cap {
        sched.push(("cap", Json::int(u64::from(cap))));
    }
    if !sched.is_empty() {
        b_info.push(("sched_params", Json::Object(sched)));
    }
    let mut ty = Vec::new();
    if let Some(k) = &c.kernel {
        ty.push(("kernel", Json::str(k)));
    }
    if let Some(r) = &c.ramdisk {
        ty.push(("ramdisk", Json::str(r)));
    }
    if let Some(cmd) = &c.cmdline {
        ty.push(("cmdline", Json::str(cmd)));
    }
    if !ty.is_empty() {
        let key = match c.guest_type.as_str() {
            "hvm" => "type.hvm",
            "pvh" => "type.pvh",
            _ => "type.pv",
        };
        b_info.push((key, Json::Object(ty)));
    }
    let mut config = alloc::vec![
        ("c_info", Json::Object(c_info)),
        ("b_info", Json::Object(b_info)),
    ];
    if !c.disks.is_empty() {
        let disks = c
            .disks
            .iter()
            .map(|d| {
                Json::Object(alloc::vec![
                    ("backend_domid", Json::int(u64::from(d.backend_domid))),
                    ("pdev_path", Json::str(&d.pdev_path)),
                    ("vdev", Json::str(&d.vdev)),
                    ("format", Json::str(&d.format)),
                    ("readwrite", Json::Int(i64::from(d.readwrite))),
                ])
            })
            .collect();
        config.push(("disks", Json::Array(disks)));
    }
    if !c.nics.is_empty() {
        let nics = c
            .nics
            .iter()
            .map(|n| {
                let m = n.mac;
                Json::Object(alloc::vec![
                    ("backend_domid", Json::int(u64::from(n.backend_domid))),
                    ("devid", Json::int(u64::from(n.devid))),
                    (
                        "mac",
                        Json::Str(alloc::format!(
                            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                            m[0],
                            m[1],
                            m[2],
                            m[3],
                            m[4],
                            m[5]
                        ))
                    ),
                    ("bridge", Json::str(&n.bridge)),
                ])
            })
            .collect();
        config.push(("nics", Json::Array(nics)));
    }
    for (k, v) in [
        ("on_poweroff", &c.on_poweroff),
        ("on_reboot", &c.on_reboot),
        ("on_crash", &c.on_crash),
    ] {
        if !v.is_empty() {
            config.push((k, Json::str(v)));
        }
    }
    Json::Object(alloc::vec![
        ("domid", Json::int(u64::from(domid))),
        ("config", Json::Object(config)),
    ])
}

/// `xl list -l`: a JSON array of [`domain_config_json`] entries and a
/// newline (xl `puts`).
pub fn list_long(out: &mut dyn Write, entries: &[(u32, DomainConfig)]) -> fmt::Result {
    let arr = Json::Array(
        entries
            .iter()
            .map(|(id, c)| domain_config_json(*id, c))
            .collect(),
    );
    arr.write(out, 0)?;
    out.write_str("\n")
}

/// `xl info -n`'s topology and NUMA sections.
pub struct Numa<'a> {
    /// Every CPU.
    pub cpus: &'a [CpuTopology],
    /// Every node.
    pub nodes: &'a [NumaNode],
}

fn numa_sections(out: &mut dyn Write, n: &Numa<'_>) -> fmt::Result {
    out.write_str("cpu_topology           :\n")?;
    out.write_str("cpu:    core    socket     node\n")?;
    for (i, c) in n.cpus.iter().enumerate() {
        writeln!(
            out,
            "{:>3}:    {:>4}     {:>4}     {:>4}",
            i, c.core, c.socket, c.node
        )?;
    }
    out.write_str("device topology        :\n")?;
    out.write_str("device           node\n")?;
    out.write_str("No device topology data available\n")?;
    out.write_str("numa_info              :\n")?;
    out.write_str("node:    memsize    memfree    distances\n")?;
    for (i, node) in n.nodes.iter().enumerate() {
        write!(
            out,
            "{:>4}:    {:>6}     {:>6}      ",
            i,
            node.size >> 20,
            node.free >> 20
        )?;
        for (j, d) in node.dists.iter().enumerate() {
            if j > 0 {
                out.write_str(",")?;
            }
            write!(out, "{d}")?;
        }
        out.write_str("\n")?;
    }
    Ok(())
}

/// `xl info`. With `filter` (`xl info free_memory`), only the values of
/// the lines whose name starts with it (xl_info.c `maybe_printf`); with
/// `numa` (`-n`), the topology sections too.
pub fn info(
    out: &mut dyn Write,
    u: &Uname,
    p: &PhysInfo,
    v: &VersionInfo,
    filter: Option<&str>,
    numa: Option<&Numa<'_>>,
) -> fmt::Result {
    let mut line = |args: fmt::Arguments<'_>| -> fmt::Result {
        let s = alloc::fmt::format(args);
        match filter {
            None => out.write_str(&s),
            Some(name) => {
                if s.starts_with(name) {
                    if let Some(i) = s.find(':') {
                        if s[i + 1..].starts_with(' ') {
                            return out.write_str(&s[i + 2..]);
                        }
                    }
                }
                Ok(())
            }
        }
    };
    line(format_args!("host                   : {}\n", u.host))?;
    line(format_args!("release                : {}\n", u.release))?;
    line(format_args!("version                : {}\n", u.version))?;
    line(format_args!("machine                : {}\n", u.machine))?;
    line(format_args!("nr_cpus                : {}\n", p.nr_cpus))?;
    line(format_args!("max_cpu_id             : {}\n", p.max_cpu_id))?;
    line(format_args!("nr_nodes               : {}\n", p.nr_nodes))?;
    line(format_args!(
        "cores_per_socket       : {}\n",
        p.cores_per_socket
    ))?;
    line(format_args!(
        "threads_per_core       : {}\n",
        p.threads_per_core
    ))?;
    line(format_args!(
        "cpu_mhz                : {}.{:03}\n",
        p.cpu_khz / 1000,
        p.cpu_khz % 1000
    ))?;
    let h = &p.hw_cap;
    line(format_args!(
        "hw_caps                : {:08x}:{:08x}:{:08x}:{:08x}:{:08x}:{:08x}:{:08x}:{:08x}\n",
        h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]
    ))?;
    let c = &p.caps;
    let mut caps = String::new();
    for (on, name) in [
        (c.pv, " pv"),
        (c.hvm, " hvm"),
        (c.hvm && c.directio, " hvm_directio"),
        (c.pv && c.directio, " pv_directio"),
        (c.hap, " hap"),
        (c.shadow, " shadow"),
        (c.iommu_hap_pt_share, " iommu_hap_pt_share"),
        (c.vmtrace, " vmtrace"),
        (c.vpmu, " vpmu"),
        (c.gnttab_v1, " gnttab-v1"),
        (c.gnttab_v2, " gnttab-v2"),
    ] {
        if on {
            caps.push_str(name);
        }
    }
    line(format_args!("virt_caps              :{caps}\n"))?;
    if v.pagesize != 0 {
        let per_mb = ((1u64 << 20) / u64::from(v.pagesize)).max(1);
        line(format_args!(
            "total_memory           : {}\n",
            p.total_pages / per_mb
        ))?;
        line(format_args!(
            "free_memory            : {}\n",
            p.free_pages.saturating_sub(p.outstanding_pages) / per_mb
        ))?;
        line(format_args!(
            "sharing_freed_memory   : {}\n",
            p.sharing_freed_pages / per_mb
        ))?;
        line(format_args!(
            "sharing_used_memory    : {}\n",
            p.sharing_used_frames / per_mb
        ))?;
        line(format_args!(
            "outstanding_claims     : {}\n",
            p.outstanding_pages / per_mb
        ))?;
    }
    line(format_args!("free_cpus              : {}\n", p.free_cpus))?;
    if let Some(n) = numa {
        let mut s = String::new();
        numa_sections(&mut s, n)?;
        line(format_args!("{s}"))?;
    }
    line(format_args!("xen_major              : {}\n", v.major))?;
    line(format_args!("xen_minor              : {}\n", v.minor))?;
    line(format_args!("xen_extra              : {}\n", v.extra))?;
    line(format_args!(
        "xen_version            : {}.{}{}\n",
        v.major, v.minor, v.extra
    ))?;
    line(format_args!(
        "xen_caps               : {}\n",
        v.capabilities
    ))?;
    line(format_args!("xen_scheduler          : {}\n", v.scheduler))?;
    line(format_args!("xen_pagesize           : {}\n", v.pagesize))?;
    line(format_args!(
        "platform_params        : virt_start=0x{:x}\n",
        v.virt_start
    ))?;
    line(format_args!("xen_changeset          : {}\n", v.changeset))?;
    line(format_args!("xen_commandline        : {}\n", v.commandline))?;
    line(format_args!("cc_compiler            : {}\n", v.compiler))?;
    line(format_args!("cc_compile_by          : {}\n", v.compile_by))?;
    line(format_args!(
        "cc_compile_domain      : {}\n",
        v.compile_domain
    ))?;
    line(format_args!(
        "cc_compile_date        : {}\n",
        v.compile_date
    ))?;
    line(format_args!("build_id               : {}\n", v.build_id))?;
    line(format_args!("xend_config_format     : 4\n"))
}

/// `xl vcpu-list`'s header.
pub fn vcpu_list_header(out: &mut dyn Write) -> fmt::Result {
    writeln!(
        out,
        "{:<32} {:>5} {:>5} {:>5} {:>5} {:>9} Affinity (Hard / Soft)",
        "Name", "ID", "VCPU", "CPU", "State", "Time(s)"
    )
}

/// One `xl vcpu-list` row; `nr_cpus` bounds the affinity maps.
pub fn vcpu_list_row(
    out: &mut dyn Write,
    name: &str,
    domid: u32,
    v: &VcpuInfo,
    nr_cpus: usize,
) -> fmt::Result {
    write!(out, "{:<32} {:>5} {:>5}", name, domid, v.vcpuid)?;
    if v.online {
        write!(
            out,
            "{:>5} {:>3}{}- ",
            v.cpu,
            if v.running { 'r' } else { '-' },
            if v.blocked { 'b' } else { '-' }
        )?;
    } else {
        write!(out, "{:>5} {:>3}-p ", '-', '-')?;
    }
    write!(out, "{:>9.1}  ", secs_f(v.vcpu_time_ns))?;
    writeln!(
        out,
        "{} / {}",
        v.hard.display(nr_cpus),
        v.soft.display(nr_cpus)
    )
}

/// `xl sched-credit`'s pool line (`None`: parameters unavailable).
pub fn sched_credit_pool(out: &mut dyn Write, pool: &str, p: Option<&CreditPool>) -> fmt::Result {
    match p {
        Some(p) => writeln!(
            out,
            "Cpupool {}: tslice={}ms ratelimit={}us migration-delay={}us",
            pool, p.tslice_ms, p.ratelimit_us, p.migration_delay_us
        ),
        None => writeln!(out, "Cpupool {pool}: [sched params unavailable]"),
    }
}

/// `xl sched-credit`'s domain header.
pub fn sched_credit_header(out: &mut dyn Write) -> fmt::Result {
    writeln!(
        out,
        "{:<33} {:>4} {:>6} {:>4}",
        "Name", "ID", "Weight", "Cap"
    )
}

/// One `xl sched-credit` domain row.
pub fn sched_credit_row(
    out: &mut dyn Write,
    name: &str,
    domid: u32,
    c: &CreditDomain,
) -> fmt::Result {
    writeln!(
        out,
        "{:<33} {:>4} {:>6} {:>4}",
        name, domid, c.weight, c.cap
    )
}

/// xl_info.c `uptime_to_string`: `[D day(s), ]HH:MM[:SS]`, hours padded
/// with a space.
pub fn uptime_string(uptime: u64, short: bool) -> String {
    let day = uptime / 86400;
    let rest = uptime % 86400;
    let (hour, min, sec) = (rest / 3600, rest % 3600 / 60, rest % 60);
    let days = match day {
        0 => String::new(),
        1 => String::from("1 day, "),
        d => alloc::format!("{d} days, "),
    };
    if short {
        alloc::format!("{days}{hour:>2}:{min:02}")
    } else {
        alloc::format!("{days}{hour:>2}:{min:02}:{sec:02}")
    }
}

/// `xl uptime`'s header.
pub fn uptime_header(out: &mut dyn Write) -> fmt::Result {
    writeln!(out, "{:<33} {:>4} Uptime", "Name", "ID")
}

/// One `xl uptime` line; `short` is `-s` (`now_secs`: wall-clock time for
/// its `HH:MM:SS`, UTC).
pub fn uptime_row(
    out: &mut dyn Write,
    name: &str,
    domid: u32,
    uptime: u64,
    short: bool,
    now_secs: u64,
) -> fmt::Result {
    if short {
        writeln!(
            out,
            " {} up {}, {} ({})",
            ClockTime(now_secs),
            uptime_string(uptime, true),
            name,
            domid
        )
    } else {
        writeln!(
            out,
            "{:<33} {:>4} {}",
            name,
            domid,
            uptime_string(uptime, false)
        )
    }
}

/// `HH:MM:SS` of a time in seconds since the epoch (UTC).
pub struct ClockTime(pub u64);

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0 % 86400;
        write!(f, "{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
    }
}

/// Options of an `xl top` frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TopOpts {
    /// Batch mode: plain lines, no screen control, no key line.
    pub batch: bool,
}

/// xentop's columns: header and width.
const TOP_FIELDS: &[(&str, usize)] = &[
    ("NAME", 10),
    ("STATE", 6),
    ("CPU(sec)", 10),
    ("CPU(%)", 6),
    ("MEM(k)", 10),
    ("MEM(%)", 6),
    ("MAXMEM(k)", 10),
    ("MAXMEM(%)", 9),
    ("VCPUS", 5),
    ("NETS", 4),
    ("NETTX(k)", 8),
    ("NETRX(k)", 8),
    ("VBDS", 4),
    ("VBD_OO", 8),
    ("VBD_RD", 8),
    ("VBD_WR", 8),
    ("VBD_RSECT", 10),
    ("VBD_WSECT", 10),
    ("SSID", 4),
];

/// CPU(%) of a domain between two samples (xentop `get_cpu_pct`).
pub fn cpu_pct(prev: Option<&TopSample>, cur: &TopSample, d: &DomainInfo) -> f64 {
    let Some(prev) = prev else { return 0.0 };
    let Some(old) = prev.domains.iter().find(|o| o.domid == d.domid) else {
        return 0.0;
    };
    let elapsed_ns = cur.now_ns.saturating_sub(prev.now_ns);
    if elapsed_ns == 0 {
        return 0.0;
    }
    let used = d.cpu_time_ns.saturating_sub(old.cpu_time_ns);
    used as f64 * 100.0 / elapsed_ns as f64
}

/// One `xl top` frame (xentop's summary, header and one row per domain,
/// sorted by name as xentop sorts by default), from the previous sample
/// (`None` for the first frame: CPU(%) is 0) and the current one.
pub fn top_frame(
    out: &mut dyn Write,
    prev: Option<&TopSample>,
    cur: &TopSample,
    o: &TopOpts,
) -> fmt::Result {
    if !o.batch {
        out.write_str("\x1b[H\x1b[2J")?;
    }
    writeln!(
        out,
        "xentop - {}   Xen {}",
        ClockTime(cur.wallclock_secs),
        cur.xen_version
    )?;
    let (mut run, mut block, mut pause, mut crash, mut dying, mut shutdown) = (0, 0, 0, 0, 0, 0);
    let crashed = |d: &DomainInfo| d.shutdown && d.shutdown_reason == shutdown_reason::CRASH;
    for d in &cur.domains {
        if d.running {
            run += 1;
        } else if d.blocked {
            block += 1;
        } else if d.paused {
            pause += 1;
        } else if d.shutdown && !crashed(d) {
            shutdown += 1;
        } else if crashed(d) {
            crash += 1;
        } else if d.dying {
            dying += 1;
        }
    }
    writeln!(
        out,
        "{} domains: {} running, {} blocked, {} paused, {} crashed, {} dying, {} shutdown ",
        cur.domains.len(),
        run,
        block,
        pause,
        crash,
        dying,
        shutdown
    )?;
    let used = cur.tot_mem.saturating_sub(cur.free_mem);
    writeln!(
        out,
        "Mem: {}k total, {}k used, {}k free    CPUs: {} @ {}MHz",
        cur.tot_mem / 1024,
        used / 1024,
        cur.free_mem / 1024,
        cur.num_cpus,
        cur.cpu_hz / 1_000_000
    )?;
    for (i, (h, w)) in TOP_FIELDS.iter().enumerate() {
        if i != 0 {
            out.write_str(" ")?;
        }
        write!(out, "{h:>w$}")?;
    }
    out.write_str("\n")?;
    let mut doms: Vec<&DomainInfo> = cur.domains.iter().collect();
    doms.sort_by(|a, b| {
        a.name
            .to_ascii_lowercase()
            .cmp(&b.name.to_ascii_lowercase())
            .then(a.domid.cmp(&b.domid))
    });
    let tot = cur.tot_mem.max(1) as f64;
    for d in doms {
        let name: String = d.name.chars().take(10).collect();
        let state = [
            if d.dying { 'd' } else { '-' },
            if d.shutdown && !crashed(d) { 's' } else { '-' },
            if d.blocked { 'b' } else { '-' },
            if crashed(d) { 'c' } else { '-' },
            if d.paused { 'p' } else { '-' },
            if d.running { 'r' } else { '-' },
        ];
        let state: String = state.iter().collect();
        write!(
            out,
            "{:>10} {:>6} {:>10} {:>6.1} {:>10} {:>6.1} ",
            name,
            state,
            d.cpu_time_ns / 1_000_000_000,
            cpu_pct(prev, cur, d),
            d.current_memkb,
            d.current_memkb as f64 * 1024.0 / tot * 100.0
        )?;
        if d.max_memkb == u64::MAX {
            write!(out, "{:>10} {:>9} ", "no limit", "n/a")?;
        } else {
            write!(
                out,
                "{:>10} {:>9.1} ",
                d.max_memkb,
                d.max_memkb as f64 * 1024.0 / tot * 100.0
            )?;
        }
        writeln!(
            out,
            "{:>5} {:>4} {:>8} {:>8} {:>4} {:>8} {:>8} {:>8} {:>10} {:>10} {:>4}",
            d.vcpu_count, 0, 0, 0, 0, 0, 0, 0, 0, 0, d.ssidref
        )?;
    }
    if !o.batch {
        out.write_str("  Delay  Networks  vBds  VCPUs  Repeat header  Sort order  Quit\n")?;
    }
    Ok(())
}

// ---- xl_block.c / xl_nic.c ----

/// `xl block-list`'s header (`%-5s %-3s %-6s %-5s %-6s %-8s %-30s`: the
/// last column padded, trailing spaces and all).
pub fn block_list_header(out: &mut dyn Write) -> fmt::Result {
    writeln!(
        out,
        "{:<5} {:<3} {:<6} {:<5} {:<6} {:<8} {:<30}",
        "Vdev", "BE", "handle", "state", "evt-ch", "ring-ref", "BE-path"
    )
}

/// One `xl block-list` row: device number, back end, front end
/// (`handle`), state, event channel, ring reference, back-end path.
pub fn block_list_row(out: &mut dyn Write, b: &BlockInfo) -> fmt::Result {
    writeln!(
        out,
        "{:<5} {:<3} {:<6} {:<5} {:<6} {:<8} {:<30}",
        b.devid, b.backend_id, b.frontend_id, b.state, b.evtch, b.rref, b.backend
    )
}

/// `xl network-list`'s header (`%-3s %-2s %-17s %-6s %-5s %-6s %5s/%-5s
/// %-30s`).
pub fn network_list_header(out: &mut dyn Write) -> fmt::Result {
    writeln!(
        out,
        "{:<3} {:<2} {:<17} {:<6} {:<5} {:<6} {:>5}/{:<5} {:<30}",
        "Idx", "BE", "Mac Addr.", "handle", "state", "evt-ch", "tx-", "rx-ring-ref", "BE-path"
    )
}

/// One `xl network-list` row (`%-3d %-2d `, the MAC, then `%6d %5d %6d
/// %5d/%-11d %-30s`: the handle column starts right after the MAC).
pub fn network_list_row(out: &mut dyn Write, n: &NicInfo) -> fmt::Result {
    writeln!(
        out,
        "{:<3} {:<2} {}{:>6} {:>5} {:>6} {:>5}/{:<11} {:<30}",
        n.devid,
        n.backend_id,
        Mac(n.mac),
        n.devid,
        n.state,
        n.evtch,
        n.rref_tx,
        n.rref_rx,
        n.backend
    )
}

fn defbool(b: bool) -> Json {
    Json::str(if b { "True" } else { "False" })
}

/// A disk as `libxl_device_disk_to_json` prints it (fields left at their
/// defaults are left out), for `xl -N block-attach`.
pub fn disk_json(d: &DiskSpec) -> Json {
    let mut o = alloc::vec![];
    if let Some(b) = &d.backend {
        o.push(("backend_domname", Json::str(b)));
    }
    if let Some(t) = &d.target {
        o.push(("pdev_path", Json::str(t)));
    }
    o.push(("vdev", Json::str(&d.vdev)));
    if let Some(b) = d.backend_type {
        o.push(("backend", Json::str(b.as_str())));
    }
    o.push(("format", Json::str(d.format.as_str())));
    if let Some(s) = &d.script {
        o.push(("script", Json::str(s)));
    }
    for (k, v) in [
        ("removable", d.removable),
        ("readwrite", d.readwrite),
        ("is_cdrom", d.cdrom),
        ("direct_io_safe", d.direct_io_safe),
    ] {
        if v {
            o.push((k, Json::Int(1)));
        }
    }
    if let Some(v) = d.discard {
        o.push(("discard_enable", defbool(v)));
    }
    if let Some(s) = d.specification {
        o.push(("specification", Json::str(s.as_str())));
    }
    if let Some(v) = d.colo.enable {
        o.push(("colo_enable", defbool(v)));
    }
    if let Some(h) = &d.colo.host {
        o.push(("colo_host", Json::str(h)));
    }
    if let Some(p) = d.colo.port {
        o.push(("colo_port", Json::Int(i64::from(p))));
    }
    if let Some(e) = &d.colo.export {
        o.push(("colo_export", Json::str(e)));
    }
    if let Some(a) = &d.colo.active_disk {
        o.push(("active_disk", Json::str(a)));
    }
    if let Some(h) = &d.colo.hidden_disk {
        o.push(("hidden_disk", Json::str(h)));
    }
    if let Some(v) = d.trusted {
        o.push(("trusted", defbool(v)));
    }
    if let Some(v) = d.grant_usage {
        o.push(("grant_usage", defbool(v)));
    }
    Json::Object(o)
}

/// A vif as `libxl_device_nic_to_json` prints it (defaults left out), for
/// `xl -N network-attach`.
pub fn nic_json(n: &VifSpec) -> Json {
    let mut o = alloc::vec![];
    if let Some(b) = &n.backend {
        o.push(("backend_domname", Json::str(b)));
    }
    if let Some(d) = n.devid {
        o.push(("devid", Json::int(u64::from(d))));
    }
    if let Some(m) = n.mtu {
        o.push(("mtu", Json::int(u64::from(m))));
    }
    if let Some(m) = &n.model {
        o.push(("model", Json::str(m)));
    }
    if let Some(m) = n.mac {
        o.push(("mac", Json::Str(alloc::format!("{}", Mac(m)))));
    }
    for (k, v) in [
        ("ip", &n.ip),
        ("bridge", &n.bridge),
        ("ifname", &n.vifname),
        ("script", &n.script),
    ] {
        if let Some(v) = v {
            o.push((k, Json::str(v)));
        }
    }
    if let Some(t) = n.nictype {
        let name = match t {
            NicType::Vif => "vif",
            NicType::VifIoemu => "vif_ioemu",
        };
        o.push(("nictype", Json::str(name)));
    }
    if let Some(r) = n.rate {
        o.push(("rate_bytes_per_interval", Json::int(r.bytes_per_interval)));
        o.push((
            "rate_interval_usecs",
            Json::int(u64::from(r.interval_usecs)),
        ));
    }
    if let Some(g) = &n.gatewaydev {
        o.push(("gatewaydev", Json::str(g)));
    }
    if let Some(v) = n.trusted {
        o.push(("trusted", defbool(v)));
    }
    Json::Object(o)
}
