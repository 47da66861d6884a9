//! The PV microbenchmarks' console output, parsed: the floor xen-core
//! measures on itself at boot and the `BENCH` lines of the `pv-bench`
//! kernel (`dom0-tools/src/bin/pv-bench.rs`, format in
//! `dom0-tools/src/bench.rs`). Used by `oxen-bench` (the table) and by the
//! boot test that keeps the benchmark kernel from rotting (which checks
//! that every figure is there and positive, never how big it is).

use std::time::Duration;

use crate::boot::OxenBoot;
use crate::exit::Exit;
use crate::images::{self, Images};
use crate::qemu::{Echo, RunResult};

/// The benchmark kernel (a `dom0-tools` binary).
pub const KERNEL: &str = "pv-bench";
/// vCPUs for its boot: one, so nothing else is scheduled (CPU 1 would only
/// idle, but on a shared 2-core host one QEMU thread is steadier).
pub const SMP: u32 = 1;
/// Its boot, start to power-off.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// xen-core's boot-log line, up to the number
/// (`bench: syscall/sysret floor N cycles (min M; ...)`).
pub const FLOOR_MARKER: &str = "bench: syscall/sysret floor ";
/// The kernel's line prefix (`BENCH name=<id> ...`).
pub const LINE_PREFIX: &str = "BENCH name=";

/// Every figure `pv-bench` prints, in order: id and what it measures.
pub const FIGURES: &[(&str, &str)] = &[
    (
        "hypercall_enosys",
        "unknown hypercall (-ENOSYS at dispatch)",
    ),
    ("null_hypercall", "null hypercall (xen_version)"),
    ("mmu_update_1", "mmu_update, 1 PTE"),
    ("mmu_update_512", "mmu_update, batch of 512 PTEs"),
    ("update_va_mapping", "update_va_mapping (INVLPG)"),
    ("pf_bounce", "#PF bounced to the guest, iret back"),
    ("syscall_bounce", "guest user syscall bounce"),
    ("evtchn_upcall", "evtchn send to self until upcall"),
    ("timer_upcall", "set_timer_op (due) until upcall"),
    ("memcpy_4k", "4 KiB memcpy in the guest"),
    ("grant_setup", "GNTTABOP_setup_table (1 frame, again)"),
    ("grant_query", "GNTTABOP_query_size"),
    ("grant_map_unmap", "grant map+unmap (to itself)"),
    ("grant_copy_4k", "grant copy 4 KiB (to itself)"),
];

/// Figures compared with another figure of the same run rather than
/// xen-core's syscall/sysret floor: (figure, its floor). The floors
/// themselves are listed in [`LOCAL_FLOORS`].
pub const OWN_FLOORS: &[(&str, &str)] = &[
    ("grant_map_unmap", "memcpy_4k"),
    ("grant_copy_4k", "memcpy_4k"),
];
/// Figures that are floors for others ([`OWN_FLOORS`]).
pub const LOCAL_FLOORS: &[&str] = &["memcpy_4k"];

/// Figures that may be `n/a` without the run failing: what xen-core does
/// not implement yet (pv-bench prints `n/a` only for `-ENOSYS`).
pub const MAY_BE_UNAVAILABLE: &[&str] = &["evtchn_upcall", "grant_map_unmap", "grant_copy_4k"];

/// The floor: median and minimum cycles of a bare `syscall`/`sysret` pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Floor {
    pub median: u64,
    pub min: u64,
    /// How it was measured: (samples, pairs per sample), if said.
    pub shape: Option<(u64, u64)>,
}

/// One `BENCH` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Figure {
    /// `cycles=<median> min=<min> iters=<n>`, and for a batch `batch=<items>
    /// per_<unit>=<median / items>`.
    Measured {
        name: String,
        median: u64,
        min: u64,
        iters: u64,
        /// Items per batch and what they are (`unit`).
        batch: Option<(u64, String)>,
        /// Median and minimum in nanoseconds (`ns=`, `ns_min=`), for
        /// figures also timed with the clock.
        ns: Option<(u64, u64)>,
        /// The guest's speed reference timed right after the figure
        /// (`ref=`, pv-bench): median cycles of a 4 KiB guest memcpy.
        reference: Option<u64>,
    },
    /// `n/a (<why>)`.
    NotAvailable { name: String, why: String },
    /// A line that does not parse (kept, so a test can show it).
    Garbled { name: String, line: String },
}

impl Figure {
    /// The figure's id.
    pub fn name(&self) -> &str {
        match self {
            Figure::Measured { name, .. }
            | Figure::NotAvailable { name, .. }
            | Figure::Garbled { name, .. } => name,
        }
    }
}

/// Parses xen-core's floor line out of a boot log.
pub fn floor(log: &str) -> Option<Floor> {
    log.lines().find_map(|l| {
        let rest = &l[l.find(FLOOR_MARKER)? + FLOOR_MARKER.len()..];
        let mut w = rest.split_whitespace();
        let median = w.next()?.parse().ok()?;
        if w.next()? != "cycles" || w.next()? != "(min" {
            return None;
        }
        let min = w.next()?.trim_end_matches([';', ')']).parse().ok()?;
        let shape = match (w.next(), w.next(), w.next()) {
            (Some(n), Some("x"), Some(k)) => n.parse().ok().zip(k.parse().ok()),
            _ => None,
        };
        Some(Floor { median, min, shape })
    })
}

/// xen-core's boot line for the SVM self-test's CPUID exits.
pub const HVM_CPUID_MARKER: &str = "CPUID exit round trip median ";

/// The SVM world switch's CPUID exit round trip from xen-core's boot log
/// (`... CPUID exit round trip median N cycles (min M, K exits)`):
/// (median, min, exits).
pub fn hvm_cpuid(log: &str) -> Option<(u64, u64, u64)> {
    log.lines().find_map(|l| {
        let rest = &l[l.find(HVM_CPUID_MARKER)? + HVM_CPUID_MARKER.len()..];
        let mut w = rest.split_whitespace();
        let median = w.next()?.parse().ok()?;
        if w.next()? != "cycles" || w.next()? != "(min" {
            return None;
        }
        let min = w.next()?.trim_end_matches(',').parse().ok()?;
        let exits = w.next()?.parse().ok()?;
        Some((median, min, exits))
    })
}

/// Every `BENCH` line of a log, in order.
pub fn figures(log: &str) -> Vec<Figure> {
    log.lines()
        .filter_map(|l| l.find(LINE_PREFIX).map(|i| &l[i + LINE_PREFIX.len()..]))
        .map(parse_line)
        .collect()
}

fn parse_line(rest: &str) -> Figure {
    let rest = rest.trim_end();
    let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
    let name = name.to_string();
    let garbled = || Figure::Garbled {
        name: name.clone(),
        line: format!("{LINE_PREFIX}{rest}"),
    };
    if let Some(why) = tail.strip_prefix("n/a") {
        let why = why.trim();
        let why = why
            .strip_prefix('(')
            .and_then(|w| w.strip_suffix(')'))
            .unwrap_or(why);
        return Figure::NotAvailable {
            name,
            why: why.to_string(),
        };
    }
    let (mut median, mut min, mut iters, mut batch, mut unit) = (None, None, None, None, None);
    let (mut ns, mut ns_min, mut reference) = (None, None, None);
    for kv in tail.split_whitespace() {
        let Some((k, v)) = kv.split_once('=') else {
            return garbled();
        };
        let Ok(v) = v.parse::<u64>() else {
            return garbled();
        };
        match k {
            "cycles" => median = Some(v),
            "min" => min = Some(v),
            "iters" => iters = Some(v),
            "batch" => batch = Some(v),
            "ns" => ns = Some(v),
            "ns_min" => ns_min = Some(v),
            "ref" => reference = Some(v),
            _ => match k.strip_prefix("per_") {
                Some(u) => unit = Some(u.to_string()),
                None => return garbled(),
            },
        }
    }
    match (median, min, iters) {
        (Some(median), Some(min), Some(iters)) => Figure::Measured {
            name,
            median,
            min,
            iters,
            batch: batch
                .filter(|&b| b > 0)
                .map(|b| (b, unit.unwrap_or_else(|| "item".into()))),
            ns: ns.zip(ns_min),
            reference,
        },
        _ => garbled(),
    }
}

/// Boots `pv-bench` as Dom0 (PVH, [`SMP`] vCPU, TCG) and returns the run.
/// `echo`: where the console goes live (None: as `OXEN_ECHO` says).
pub fn run(images: &Images, echo: Option<Echo>) -> Result<RunResult, String> {
    let boot = OxenBoot::new(images.hypervisor()?, images.get(KERNEL)?)?;
    boot_to_exit(&boot, KERNEL, SMP, echo)
}

/// Boots `kernel` as `boot` says on `smp` CPUs and waits for the machine
/// to stop (at most [`TIMEOUT`]).
fn boot_to_exit(
    boot: &OxenBoot,
    kernel: &str,
    smp: u32,
    echo: Option<Echo>,
) -> Result<RunResult, String> {
    let work = images::work_dir(kernel).map_err(|e| e.to_string())?;
    let mut q = boot.qemu(kernel, &work)?.smp(smp);
    if let Some(e) = echo {
        q = q.echo(e);
    }
    let m = q.spawn().map_err(|e| e.to_string())?;
    let r = m.wait_exit(TIMEOUT);
    images::done_with_work_dir(&work);
    Ok(r)
}

/// What is wrong with how a benchmark kernel's run ended: it must power
/// off with `VERDICT: SUCCESS`.
fn ending_problems(r: &RunResult) -> Vec<String> {
    let mut p = Vec::new();
    if r.timed_out {
        p.push(format!("timed out after {:?}", r.timeout));
    }
    if r.exit != Exit::POWEROFF {
        p.push(format!("ended with {}, not a power-off", r.exit_summary()));
    }
    match r.verdict() {
        Some(crate::check::Verdict::Success) => {}
        Some(v) => p.push(format!("{v}")),
        None => p.push("no VERDICT line".into()),
    }
    p
}

/// What is wrong with a `pv-bench` run, if anything: it must power off
/// with `VERDICT: SUCCESS`, xen-core must have printed a positive floor,
/// and every figure of [`FIGURES`] must be there, in order, with positive
/// numbers (or `n/a`, for [`MAY_BE_UNAVAILABLE`] ones). Timings are never
/// judged.
pub fn problems(r: &RunResult) -> Vec<String> {
    let mut p = ending_problems(r);
    match floor(&r.log) {
        Some(f) if f.median > 0 && f.min > 0 => {}
        Some(f) => p.push(format!("xen-core's floor is not positive: {f:?}")),
        None => p.push(format!("xen-core printed no `{FLOOR_MARKER}N cycles` line")),
    }
    let want: Vec<&str> = FIGURES.iter().map(|(n, _)| *n).collect();
    p.extend(figure_problems(&r.log, &want, MAY_BE_UNAVAILABLE));
    p
}

/// What is wrong with the `BENCH` lines of `log`: they must be `want`, in
/// order, each with positive numbers (or `n/a`, for `may_be_na` ones).
pub fn figure_problems(log: &str, want: &[&str], may_be_na: &[&str]) -> Vec<String> {
    let mut p = Vec::new();
    let got = figures(log);
    let names: Vec<&str> = got.iter().map(Figure::name).collect();
    if names != want {
        p.push(format!("BENCH lines for {names:?}, want {want:?}"));
    }
    for f in &got {
        match f {
            Figure::Measured {
                name, median, min, ..
            } if *median == 0 || *min == 0 => p.push(format!(
                "{name}: not a positive figure ({median}, min {min})"
            )),
            Figure::Measured {
                name,
                ns: Some((ns, ns_min)),
                ..
            } if *ns == 0 || *ns_min == 0 => p.push(format!(
                "{name}: not a positive time ({ns} ns, min {ns_min})"
            )),
            Figure::Measured { .. } => {}
            Figure::NotAvailable { name, .. } if may_be_na.contains(&name.as_str()) => {}
            Figure::NotAvailable { name, why } => p.push(format!("{name}: n/a ({why})")),
            Figure::Garbled { line, .. } => p.push(format!("unparsable line {line:?}")),
        }
    }
    p
}

/// Issue 8: the same `pv-bench` binary as Dom0 of Oxen and of Xen 4.17
/// (Debian's, [`crate::xen`]), in the same QEMU configuration (q35, the
/// harness's default `-cpu`, 512 MiB, one CPU, TCG, Dom0 given 256 MiB),
/// each boot timed from QEMU's start to Dom0's first console line by the
/// host's clock.
pub mod versus {
    use std::time::Duration;

    use crate::boot::OxenBoot;
    use crate::images::{self, Images};
    use crate::qemu::{Echo, RunResult};
    use crate::xen::{self, Xen, XenRun};

    /// pv-bench's first console line (Dom0's first line on both).
    pub const FIRST_LINE: &str = "pv-bench: PV microbenchmarks";
    /// Dom0's memory, on both hypervisors' command lines.
    pub const DOM0_MEM: &str = "dom0_mem=256M,max:256M";
    /// Figures that may be `n/a` on Xen: none (every one runs there; a
    /// figure pv-bench finds refused prints `n/a (<why>)`, and the ABI
    /// test then says which).
    pub const XEN_MAY_BE_UNAVAILABLE: &[&str] = &[];
    /// xen-core's boot-log line, up to the number.
    pub const OXEN_FIRST_LINE_MARKER: &str = "Dom0 first console line after ";

    /// One boot of pv-bench, on either hypervisor.
    #[derive(Debug)]
    pub struct Boot {
        /// The console, the command line, how it ended.
        pub result: RunResult,
        /// QEMU's start to Dom0's first console line (host clock).
        pub first_line: Option<Duration>,
        /// The hypervisor's own clock at Dom0's first line (Oxen: its
        /// `Dom0 first console line after N ms (TSC)`; Xen: the
        /// timestamp of its last line before Dom0's first), in ms.
        pub own_ms: Option<f64>,
        /// What is wrong with the run (empty: it finished and printed
        /// every figure).
        pub problems: Vec<String>,
        /// How it ended, in a few words.
        pub ended: String,
    }

    /// Parses `Dom0 first console line after N.NNN ms (TSC)`.
    pub fn oxen_first_line_ms(log: &str) -> Option<f64> {
        log.lines().find_map(|l| {
            let rest = &l[l.find(OXEN_FIRST_LINE_MARKER)? + OXEN_FIRST_LINE_MARKER.len()..];
            let num = rest.split_whitespace().next()?;
            if !rest[num.len()..].trim_start().starts_with("ms") {
                return None;
            }
            num.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
        })
    }

    fn ids() -> Vec<&'static str> {
        super::FIGURES.iter().map(|(n, _)| *n).collect()
    }

    /// QEMU's deterministic instruction counter: with `-icount shift=0`
    /// the guest's clock, and so its TSC, advances by one per instruction
    /// executed, so pv-bench's "cycles" become instructions, whatever the
    /// host's load (`sleep=off`: an idle guest does not wait for real time).
    pub const ICOUNT: [&str; 2] = ["-icount", "shift=0,sleep=off"];

    /// Boots pv-bench as Dom0 of Oxen (PVH, one CPU).
    pub fn run_oxen(images: &Images, echo: Option<Echo>) -> Result<Boot, String> {
        run_oxen_with(images, echo, false)
    }

    /// [`run_oxen`], under [`ICOUNT`] if `icount`.
    pub fn run_oxen_with(
        images: &Images,
        echo: Option<Echo>,
        icount: bool,
    ) -> Result<Boot, String> {
        let mut boot = OxenBoot::new(images.hypervisor()?, images.get(super::KERNEL)?)?;
        boot.append = format!("{} {DOM0_MEM}", boot.append);
        let name = "versus-oxen";
        let work = images::work_dir(name).map_err(|e| e.to_string())?;
        let mut q = boot.qemu(name, &work)?.smp(super::SMP);
        if icount {
            q = q.arg(ICOUNT[0]).arg(ICOUNT[1]);
        }
        if let Some(e) = echo {
            q = q.echo(e);
        }
        let mut m = q.spawn().map_err(|e| e.to_string())?;
        let first_line = m.wait_for(FIRST_LINE, super::TIMEOUT).ok().map(|f| f.at);
        let result = m.wait_exit(super::TIMEOUT);
        images::done_with_work_dir(&work);
        let mut problems = super::ending_problems(&result);
        problems.extend(super::figure_problems(
            &result.log,
            &ids(),
            super::MAY_BE_UNAVAILABLE,
        ));
        Ok(Boot {
            own_ms: oxen_first_line_ms(&result.log),
            first_line,
            ended: result.exit_summary(),
            result,
            problems,
        })
    }

    /// Boots pv-bench as Dom0 of Xen 4.17 (Multiboot1, one CPU).
    pub fn run_xen(xen: &Xen, images: &Images, echo: Option<Echo>) -> Result<Boot, String> {
        run_xen_with(xen, images, echo, false)
    }

    /// [`run_xen`], under [`ICOUNT`] if `icount`.
    pub fn run_xen_with(
        xen: &Xen,
        images: &Images,
        echo: Option<Echo>,
        icount: bool,
    ) -> Result<Boot, String> {
        let kernel = images.get(super::KERNEL)?;
        let mut q = xen::qemu(xen, &kernel, "versus-xen").smp(super::SMP);
        if icount {
            q = q.arg(ICOUNT[0]).arg(ICOUNT[1]);
        }
        let r = xen::boot(q, FIRST_LINE, super::TIMEOUT, echo)?;
        let problems = xen_problems(&r);
        let ended = match &r.ended {
            _ if r.powered_off() => {
                "Dom0 powered off (Xen halted the machine, the harness stopped QEMU)".into()
            }
            Some(l) => format!("Xen: {}", l.trim()),
            None => r.result.exit_summary(),
        };
        Ok(Boot {
            ended,
            own_ms: xen::handover_secs(&r.result.log, FIRST_LINE).map(|s| s * 1000.0),
            first_line: r.first_line,
            result: r.result,
            problems,
        })
    }

    /// What is wrong with a boot of pv-bench on Xen: Xen must say Dom0
    /// powered off (it halts the machine), after `VERDICT: SUCCESS`, and
    /// every figure must be there, in order, positive.
    pub fn xen_problems(r: &XenRun) -> Vec<String> {
        let mut p = Vec::new();
        match &r.ended {
            _ if r.powered_off() => {}
            Some(l) => p.push(format!("Xen ended it with {:?}", l.trim())),
            None => p.push(format!(
                "Xen never said Dom0 was gone (one of {:?}) within {:?}",
                xen::DOM0_GONE,
                super::TIMEOUT
            )),
        }
        if r.first_line.is_none() {
            p.push(format!("no {FIRST_LINE:?} line from Dom0"));
        }
        match r.result.verdict() {
            Some(crate::check::Verdict::Success) => {}
            Some(v) => p.push(format!("{v}")),
            None => p.push("no VERDICT line".into()),
        }
        p.extend(super::figure_problems(
            &r.result.log,
            &ids(),
            XEN_MAY_BE_UNAVAILABLE,
        ));
        p
    }

    /// One figure's median from each run (None where a run has none).
    pub fn medians(boots: &[Boot], id: &str) -> Vec<Option<u64>> {
        boots
            .iter()
            .map(|b| {
                super::figures(&b.result.log)
                    .into_iter()
                    .find_map(|f| match f {
                        super::Figure::Measured { name, median, .. } if name == id => Some(median),
                        _ => None,
                    })
            })
            .collect()
    }

    /// Why a figure is `n/a` in a run's log, if it is.
    pub fn not_available(log: &str, id: &str) -> Option<String> {
        super::figures(log).into_iter().find_map(|f| match f {
            super::Figure::NotAvailable { name, why } if name == id => Some(why),
            _ => None,
        })
    }

    /// One row of the side-by-side table: (median, min, max) over the
    /// runs of each hypervisor's per-run figure.
    #[derive(Clone, Debug, PartialEq)]
    pub struct Row {
        /// What it is.
        pub label: String,
        /// The unit of the figures (`cycles`, `ms`).
        pub unit: &'static str,
        /// Oxen's runs.
        pub oxen: Option<(u64, u64, u64)>,
        /// Xen's runs.
        pub xen: Option<(u64, u64, u64)>,
        /// Why Xen has no figure, when it says so (`n/a on Xen: ...`).
        pub xen_na: Option<String>,
        /// Oxen/Xen with the host's speed taken out: see [`corrected`].
        pub corrected: Option<f64>,
    }

    /// The guest-only figure every boot's figures are scaled by: the same
    /// guest code, the same instructions, on either hypervisor.
    pub const SPEED_REFERENCE: &str = "memcpy_4k";

    /// Oxen/Xen for figure `id`, with each boot's figure first divided by
    /// the speed reference timed right after it (`ref=`), or, in a log
    /// without one, by the same boot's [`SPEED_REFERENCE`] figure: the
    /// median over the boot pairs
    /// (Oxen's run i beside Xen's run i, booted one after the other) of
    /// `(oxen_i / oxen_memcpy_i) / (xen_i / xen_memcpy_i)`.
    ///
    /// Under TCG the emulator's speed follows the host's load, and on a
    /// shared host it changes by up to 2x from one boot to the next, and
    /// within a boot too; a plain ratio of medians then measures the host
    /// as much as the hypervisors. The guest's own memcpy, timed at the
    /// same moment, slows down with the host just as much, so the quotient
    /// cancels the host's speed.
    pub fn corrected(oxen: &[Boot], xen: &[Boot], id: &str) -> Option<f64> {
        // A measured figure's median and speed reference, by name.
        let find = |figs: &[super::Figure], want: &str| {
            figs.iter().find_map(|f| match f {
                super::Figure::Measured {
                    name,
                    median,
                    reference,
                    ..
                } if name == want => Some((*median, *reference)),
                _ => None,
            })
        };
        let per_boot = |boots: &[Boot]| -> Vec<Option<f64>> {
            boots
                .iter()
                .map(|b| {
                    let figs = super::figures(&b.result.log);
                    let (f, r) = find(&figs, id)?;
                    let r = r.or_else(|| find(&figs, SPEED_REFERENCE).map(|(m, _)| m))?;
                    (r > 0).then(|| f as f64 / r as f64)
                })
                .collect()
        };
        let mut q: Vec<f64> = per_boot(oxen)
            .into_iter()
            .zip(per_boot(xen))
            .filter_map(|(o, x)| match (o, x) {
                (Some(o), Some(x)) if x > 0.0 => Some(o / x),
                _ => None,
            })
            .collect();
        if q.is_empty() {
            return None;
        }
        q.sort_by(f64::total_cmp);
        Some(q[q.len() / 2])
    }

    /// The table's rows: Dom0's first console line (host clock, then
    /// each hypervisor's own), then every pv-bench figure (and the 512-PTE
    /// batch per PTE). `xen` is empty when there is no Xen.
    pub fn rows(oxen: &[Boot], xen: &[Boot]) -> Vec<Row> {
        let ms = |v: &[Boot], f: &dyn Fn(&Boot) -> Option<f64>| -> Vec<Option<u64>> {
            v.iter().map(|b| f(b).map(|x| x.round() as u64)).collect()
        };
        let host = |b: &Boot| b.first_line.map(|d| d.as_secs_f64() * 1000.0);
        let own = |b: &Boot| b.own_ms;
        let mut rows = vec![
            Row {
                label: "power-on to Dom0's first console line (host clock)".into(),
                unit: "ms",
                oxen: summary(&ms(oxen, &host)),
                xen: summary(&ms(xen, &host)),
                xen_na: None,
                corrected: None,
            },
            Row {
                label: "  the same by the hypervisor's own clock".into(),
                unit: "ms",
                oxen: summary(&ms(oxen, &own)),
                xen: summary(&ms(xen, &own)),
                xen_na: None,
                corrected: None,
            },
        ];
        for (id, what) in super::FIGURES {
            let xen_na = xen
                .iter()
                .find_map(|b| not_available(&b.result.log, id))
                .map(|w| format!("n/a on Xen: {w}"));
            rows.push(Row {
                label: format!("{what} [{id}]"),
                unit: "cycles",
                oxen: summary(&medians(oxen, id)),
                xen: summary(&medians(xen, id)),
                xen_na,
                corrected: corrected(oxen, xen, id),
            });
            if *id == "mmu_update_512" {
                let per = |v: &[Boot]| -> Vec<Option<u64>> {
                    medians(v, id)
                        .into_iter()
                        .map(|m| m.map(|m| m / 512))
                        .collect()
                };
                rows.push(Row {
                    label: "  per PTE (batch / 512)".into(),
                    unit: "cycles",
                    oxen: summary(&per(oxen)),
                    xen: summary(&per(xen)),
                    xen_na: None,
                    corrected: corrected(oxen, xen, id),
                });
            }
        }
        rows
    }

    /// `Oxen/Xen`, two decimals (`-` without both).
    pub fn ratio(r: &Row) -> String {
        match (r.oxen, r.xen) {
            (Some((o, ..)), Some((x, ..))) if x > 0 => format!("{:.2}", o as f64 / x as f64),
            _ => "-".into(),
        }
    }

    /// The instruction-count table (one [`ICOUNT`] boot of each): figure,
    /// Oxen, Xen, Oxen/Xen, header first. Every pv-bench figure both have.
    pub fn icount_cells(oxen: Option<&Boot>, xen: Option<&Boot>) -> Vec<[String; 4]> {
        let mut out = vec![[
            "figure".to_string(),
            "Oxen".into(),
            "Xen 4.17".into(),
            "Oxen/Xen".into(),
        ]];
        let one =
            |b: Option<&Boot>, id: &str| b.and_then(|b| medians(std::slice::from_ref(b), id)[0]);
        for (id, what) in super::FIGURES {
            let (o, x) = (one(oxen, id), one(xen, id));
            if o.is_none() && x.is_none() {
                continue;
            }
            let cell = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{v}"));
            let ratio = match (o, x) {
                (Some(o), Some(x)) if x > 0 => format!("{:.2}", o as f64 / x as f64),
                _ => "-".into(),
            };
            out.push([format!("{what} [{id}]"), cell(o), cell(x), ratio]);
        }
        out
    }

    /// The speed-corrected ratio, two decimals (`-` without one).
    pub fn corrected_cell(r: &Row) -> String {
        r.corrected.map_or("-".into(), |q| format!("{q:.2}"))
    }

    /// The table's cells, header first: figure, Oxen, Xen 4.17, Oxen/Xen,
    /// Oxen/Xen speed-corrected ([`corrected`]), spread (min-max of the
    /// runs' medians, Oxen / Xen).
    pub fn cells(rows: &[Row], xen_missing: Option<&str>) -> Vec<[String; 6]> {
        let mut out = vec![[
            "figure".to_string(),
            "Oxen".into(),
            "Xen 4.17".into(),
            "Oxen/Xen".into(),
            "Oxen/Xen, speed-corrected".into(),
            "spread over runs (min-max: Oxen / Xen)".into(),
        ]];
        let val = |v: Option<(u64, u64, u64)>, unit: &str| {
            v.map_or("-".to_string(), |(m, ..)| format!("{m} {unit}"))
        };
        let spread = |v: Option<(u64, u64, u64)>| {
            v.map_or("-".to_string(), |(_, lo, hi)| format!("{lo}-{hi}"))
        };
        for r in rows {
            let xen = match (&r.xen_na, xen_missing) {
                (Some(na), _) => na.clone(),
                (None, Some(_)) => "(no Xen)".into(),
                (None, None) => val(r.xen, r.unit),
            };
            out.push([
                r.label.clone(),
                val(r.oxen, r.unit),
                xen,
                ratio(r),
                corrected_cell(r),
                format!("{} / {}", spread(r.oxen), spread(r.xen)),
            ]);
        }
        out
    }

    /// The table as aligned text.
    pub fn text_table(cells: &[[String; 6]]) -> String {
        let mut w = [0usize; 6];
        for row in cells {
            for (i, c) in row.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let mut s = String::new();
        for row in cells {
            let line = format!(
                "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {:>w4$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                row[5],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3],
                w4 = w[4]
            );
            s.push_str(line.trim_end());
            s.push('\n');
        }
        s
    }

    /// The table as Markdown.
    pub fn markdown_table(cells: &[[String; 6]]) -> String {
        let mut s = String::new();
        for (i, row) in cells.iter().enumerate() {
            s.push_str(&format!("| {} |\n", row.join(" | ")));
            if i == 0 {
                s.push_str("|---|--:|--:|--:|--:|--:|\n");
            }
        }
        s
    }

    /// The machine, as `/proc/cpuinfo` says: (CPU model, logical CPUs).
    pub fn machine() -> (String, usize) {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = info
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let cpus = info
            .lines()
            .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
            .count();
        (model, cpus)
    }

    /// Median, minimum and maximum of the values there are.
    pub fn summary(v: &[Option<u64>]) -> Option<(u64, u64, u64)> {
        let mut s: Vec<u64> = v.iter().flatten().copied().collect();
        if s.is_empty() {
            return None;
        }
        s.sort_unstable();
        Some((s[s.len() / 2], s[0], s[s.len() - 1]))
    }
}

/// The toolstack benchmarks (issue 4): `xl-bench` as Dom0
/// (`dom0-tools/src/bin/xl-bench.rs`) times `xl create` to the guest's
/// first console line and `xl destroy`, each beside its floor (the domain
/// builder alone, the destroy domctl alone), and runs `domu-xsbench`,
/// whose xenstore round trips it relays beside their floor (an event sent
/// to itself).
pub mod toolstack {
    use std::time::Duration;

    use crate::boot::{OxenBoot, Payload};
    use crate::images::{self, Images};
    use crate::qemu::{Echo, RunResult};

    /// The Dom0 kernel (a `dom0-tools` binary).
    pub const KERNEL: &str = "xl-bench";
    /// The xenstore guest it creates (a `dom0-tools` binary, in its
    /// ramdisk as `/boot/domu-xsbench`).
    pub const GUEST: &str = "domu-xsbench";
    /// One vCPU, as for pv-bench: Dom0 and its guest take turns on it.
    pub const SMP: u32 = 1;
    /// Its boot, start to power-off.
    pub const TIMEOUT: Duration = Duration::from_secs(300);

    /// Every figure, in the order printed: id, what it measures, and the
    /// id of the figure it is compared with (its floor), if any.
    pub const FIGURES: &[(&str, &str, Option<&str>)] = &[
        (
            "builder_alone",
            "PV domain builder alone (hello, 16 MiB)",
            None,
        ),
        (
            "domctl_destroy",
            "destroydomain alone (built, never run)",
            None,
        ),
        (
            "xl_create_first_line",
            "xl create -> guest's first console line",
            Some("builder_alone"),
        ),
        (
            "xl_destroy",
            "xl destroy (running guest)",
            Some("domctl_destroy"),
        ),
        (
            "evtchn_self",
            "domU: evtchn send to self until handler",
            None,
        ),
        (
            "xs_read",
            "domU: xenstore read round trip",
            Some("evtchn_self"),
        ),
        (
            "xs_write",
            "domU: xenstore write round trip",
            Some("evtchn_self"),
        ),
        (
            "evtchn_pingpong",
            "domU <-> Dom0: event channel ping-pong round trip",
            Some("evtchn_self"),
        ),
        ("memcpy_4k_dom0", "Dom0: 4 KiB memcpy", None),
        (
            "grant_copy_domu",
            "Dom0: GNTTABOP_copy of a domU's 4 KiB grant",
            Some("memcpy_4k_dom0"),
        ),
    ];

    /// The figures ids, in order.
    pub fn ids() -> Vec<&'static str> {
        FIGURES.iter().map(|f| f.0).collect()
    }

    /// Boots `xl-bench` as Dom0 (PVH, [`SMP`] vCPU, TCG) with the example
    /// guest and [`GUEST`] in its ramdisk, and returns the run.
    pub fn run(images: &Images, echo: Option<Echo>) -> Result<RunResult, String> {
        let mut boot = OxenBoot::new(images.hypervisor()?, images.get(KERNEL)?)?;
        let mut files = crate::boot::standard_files(images);
        files.extend(crate::boot::kernel_files(
            images,
            images::kernel_files_of(KERNEL),
        )?);
        boot.ramdisk = Some(Payload::Bytes(crate::boot::dom0_ramdisk_with(&[], &files)?));
        super::boot_to_exit(&boot, KERNEL, SMP, echo)
    }

    /// What is wrong with an `xl-bench` run, if anything: it must power
    /// off with `VERDICT: SUCCESS` and print every figure of [`FIGURES`],
    /// in order, positive. Timings are never judged.
    pub fn problems(r: &RunResult) -> Vec<String> {
        let mut p = super::ending_problems(r);
        p.extend(super::figure_problems(&r.log, &ids(), &[]));
        p
    }
}

/// Issue 5's storage figures: a guest's disk through blkback beside Dom0
/// driving the same virtio disk itself, in one boot of the real Dom0.
pub mod storage {
    use std::time::Duration;

    use crate::batch;
    use crate::boot::{OxenBoot, Payload};
    use crate::images::{self, Images};
    use crate::qemu::{Echo, RunResult};

    /// The guest kernel (a `dom0-tools` binary) in `mode=bench`.
    pub const GUEST: &str = "domu-disk";
    /// The machine's disk (MiB).
    pub const DISK_MIB: u64 = 96;
    /// The whole run.
    pub const TIMEOUT: Duration = Duration::from_secs(240);
    /// Prefix of the figures' lines (`BENCH blk_<who>_<what> VALUE ...`).
    pub const PREFIX: &str = "BENCH blk_";
    /// The figures: what, unit; each printed for `dom0` and `guest`.
    pub const FIGURES: &[(&str, &str, &str)] = &[
        (
            "seq_write_mb_s",
            "sequential write, 256 KiB requests",
            "MB/s",
        ),
        ("seq_read_mb_s", "sequential read, 256 KiB requests", "MB/s"),
        ("rand_read_4k_iops", "random 4 KiB reads for 1 s", "IOPS"),
    ];
    /// The queue depths both sides run at (requests in flight), each line
    /// tagged `depth=N`.
    pub const DEPTHS: &[usize] = &[1, 8];

    /// The value of figure `what` for `who` (`dom0` or `guest`) at queue
    /// depth `depth` (a line without a `depth=` tag is depth 1).
    pub fn value(log: &str, who: &str, what: &str, depth: usize) -> Option<u64> {
        let key = format!("{PREFIX}{who}_{what} ");
        let tag = format!("depth={depth}");
        log.lines().find_map(|l| {
            let rest = &l[l.find(&key)? + key.len()..];
            let mut w = rest.split_whitespace();
            let v = w.next()?.parse().ok()?;
            let d = w.find(|t| t.starts_with("depth="));
            match d {
                Some(t) if t == tag => Some(v),
                None if depth == 1 => Some(v),
                _ => None,
            }
        })
    }

    /// Boots the standard Dom0 with a [`DISK_MIB`] disk and the bench
    /// guest; Dom0 times the disk itself (`disk-bench vda`), then the
    /// guest times it through blkback.
    pub fn run(images: &Images, echo: Option<Echo>) -> Result<RunResult, String> {
        let work = images::work_dir("bench-storage").map_err(|e| e.to_string())?;
        let cfg = work.join("bench.cfg");
        std::fs::write(
            &cfg,
            "name = \"bench\"\nkernel = \"/boot/domu-disk\"\nmemory = 32\n\
             extra = \"mode=bench\"\ndisk = [ \"phy:/dev/vda,xvda,w\" ]\n",
        )
        .map_err(|e| e.to_string())?;
        let img = work.join("disk.img");
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(DISK_MIB << 20))
            .map_err(|e| e.to_string())?;
        let mut boot = OxenBoot::new(images.hypervisor()?, images.dom0()?)?;
        boot.ramdisk = Some(Payload::Bytes(crate::boot::dom0_ramdisk(&[
            images.get(GUEST)?,
            cfg,
        ])?));
        let mut q = boot
            .qemu("bench-storage", &work)?
            .arg("-drive")
            .arg(format!("file={},if=none,id=d0,format=raw", img.display()))
            .arg("-device")
            .arg("virtio-blk-pci,drive=d0");
        if let Some(e) = echo {
            q = q.echo(e);
        }
        let m = q.spawn().map_err(|e| e.to_string())?;
        let cmds: Vec<String> = ["disk-bench vda", "xl create bench.cfg", "xl console bench"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = batch::run(m, &cmds, TIMEOUT);
        images::done_with_work_dir(&work);
        if !out.ok {
            return Err(format!("{}\n{}", out.why, out.result.log));
        }
        Ok(out.result)
    }
}

/// Issue 7's save and restore figures: the counting HVM guest
/// (`hvm-guests`' bare-count) with [`lifecycle::GUEST_MIB`] of memory,
/// `xl save`d to a file on Dom0's FAT disk and `xl restore`d from it,
/// beside Dom0 writing and reading a raw disk of its own (`disk-bench`)
/// in the same boot: the floor the file's I/O stands on.
pub mod lifecycle {
    use std::time::Duration;

    use crate::batch;
    use crate::boot::{OxenBoot, Payload};
    use crate::images::{self, Images};
    use crate::qemu::RunResult;

    /// The guest kernel.
    pub const GUEST: &str = "bare-count";
    /// Its memory (MiB).
    pub const GUEST_MIB: u64 = 256;
    /// The FAT disk the image goes to (MiB).
    pub const FAT_MIB: u64 = 512;
    /// Dom0's raw disk for the reference (MiB).
    pub const RAW_MIB: u64 = 96;
    /// The whole run.
    pub const TIMEOUT: Duration = Duration::from_secs(400);

    /// `xc: info: Saved N frames, K KiB in T ms (R MB/s)`: (frames, KiB, ms).
    pub fn saved(log: &str) -> Option<(u64, u64, u64)> {
        let l = log
            .lines()
            .find_map(|l| l.split("xc: info: Saved ").nth(1))?;
        let mut w = l
            .split(|c: char| !c.is_ascii_digit())
            .filter(|t| !t.is_empty());
        Some((
            w.next()?.parse().ok()?,
            w.next()?.parse().ok()?,
            w.next()?.parse().ok()?,
        ))
    }

    /// `xc: info: Restored N frames in T ms (R MB/s)`: (frames, ms).
    pub fn restored(log: &str) -> Option<(u64, u64)> {
        let l = log
            .lines()
            .find_map(|l| l.split("xc: info: Restored ").nth(1))?;
        let mut w = l
            .split(|c: char| !c.is_ascii_digit())
            .filter(|t| !t.is_empty());
        Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
    }

    /// Boots Dom0 with a FAT32 disk (vda) and a raw one (vdb); Dom0 times
    /// vdb (`disk-bench vdb`), then saves and restores the guest.
    pub fn run(images: &Images) -> Result<RunResult, String> {
        let work = images::work_dir("bench-lifecycle").map_err(|e| e.to_string())?;
        let cfg = work.join("count.cfg");
        std::fs::write(
            &cfg,
            format!(
                "name = \"count\"\ntype = \"hvm\"\nkernel = \"/boot/{GUEST}\"\nmemory = {GUEST_MIB}\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let fat = work.join("fat.img");
        crate::tools::fat32_disk(&fat, FAT_MIB);
        let raw = work.join("raw.img");
        std::fs::File::create(&raw)
            .and_then(|f| f.set_len(RAW_MIB << 20))
            .map_err(|e| e.to_string())?;
        let mut boot = OxenBoot::new(images.hypervisor()?, images.dom0()?)?;
        boot.ramdisk = Some(Payload::Bytes(crate::boot::dom0_ramdisk(&[
            images.get(GUEST)?,
            cfg,
        ])?));
        let mut q = boot.qemu("bench-lifecycle", &work)?;
        for (i, d) in [&fat, &raw].iter().enumerate() {
            q = q
                .arg("-drive")
                .arg(format!("file={},if=none,id=d{i},format=raw", d.display()))
                .arg("-device")
                .arg(format!("virtio-blk-pci,drive=d{i}"));
        }
        let m = q.spawn().map_err(|e| e.to_string())?;
        let cmds: Vec<String> = [
            "disk-bench vdb",
            "xl create count.cfg",
            "sleep 2",
            "xl save count /mnt/vda/count.save",
            "xl restore /mnt/vda/count.save",
            "xl destroy count",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = batch::run(m, &cmds, TIMEOUT);
        images::done_with_work_dir(&work);
        if !out.ok {
            return Err(format!("{}\n{}", out.why, out.result.log));
        }
        Ok(out.result)
    }

    /// `xc: info: ... sent in T ms; downtime D ms` (live) or `... sent
    /// while suspended; downtime D ms` (PV): (total ms, downtime ms), the
    /// total being the downtime when the guest was suspended throughout.
    pub fn migrated(log: &str) -> Option<(u64, u64)> {
        let l = log.lines().find(|l| l.contains("; downtime "))?;
        let num = |after: &str| -> Option<u64> {
            let r = l.split(after).nth(1)?;
            r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        };
        let down = num("; downtime ")?;
        Some((num(" KiB sent in ").unwrap_or(down), down))
    }

    /// The PV guest of the migration benchmark and its memory (MiB).
    pub const PV_GUEST: &str = "domu-life";
    /// Its memory (moved live; a PV guest falls back to a suspended
    /// transfer where log-dirty mode is refused).
    pub const PV_GUEST_MIB: u64 = 64;

    /// One host of a two-host run: Oxen with Dom0 at `ip`, its NIC on the
    /// UDP wire `local`→`remote`, the guest and `cfg` in its ramdisk,
    /// `cmds` typed at its prompt.
    fn host(
        images: &Images,
        name: &str,
        ip: &str,
        local: u16,
        remote: u16,
        files: &[std::path::PathBuf],
        cmds: &[&str],
    ) -> Result<RunResult, String> {
        let work = images::work_dir(name).map_err(|e| e.to_string())?;
        let mut boot = OxenBoot::new(images.hypervisor()?, images.dom0()?)?;
        boot.dom0_cmdline = format!("ip={ip}/24");
        boot.ramdisk = Some(Payload::Bytes(crate::boot::dom0_ramdisk(files)?));
        let mut q = boot.qemu(name, &work)?.cpu("max,-smap");
        for a in (crate::net::NetSpec::Dgram { local, remote }).qemu_args() {
            q = q.arg(a);
        }
        let m = q.spawn().map_err(|e| e.to_string())?;
        let cmds: Vec<String> = cmds.iter().map(|s| s.to_string()).collect();
        let out = batch::run(m, &cmds, MIGRATE_TIMEOUT);
        images::done_with_work_dir(&work);
        if !out.ok {
            return Err(format!("{name}: {}\n{}", out.why, out.result.log));
        }
        Ok(out.result)
    }

    /// Each two-host run.
    pub const MIGRATE_TIMEOUT: Duration = Duration::from_secs(600);

    /// Migrates the HVM guest ([`GUEST_MIB`]; rewriting `busy` pages a
    /// tick and all the time between if `busy` > 1) from one Oxen host to
    /// another over a UDP wire on loopback: the source's console.
    pub fn migrate(images: &Images, busy: u64) -> Result<RunResult, String> {
        migrate_guest(
            images,
            GUEST,
            &format!(
                "name = \"guest\"\ntype = \"hvm\"\nkernel = \"/boot/{GUEST}\"\nmemory = {GUEST_MIB}\n\
                 extra = \"busy={busy}\"\n"
            ),
        )
    }

    /// Migrates the PV guest ([`PV_GUEST_MIB`], counting; suspended for
    /// the whole transfer): the source's console.
    pub fn migrate_pv(images: &Images) -> Result<RunResult, String> {
        migrate_guest(
            images,
            PV_GUEST,
            &format!(
                "name = \"guest\"\nkernel = \"/boot/{PV_GUEST}\"\nmemory = {PV_GUEST_MIB}\n\
                 extra = \"mode=suspend\"\n"
            ),
        )
    }

    /// Creates guest `kernel` from `cfg_text` (named "guest") on one host
    /// and migrates it to another.
    fn migrate_guest(images: &Images, kernel: &str, cfg_text: &str) -> Result<RunResult, String> {
        let work = images::work_dir("bench-migrate").map_err(|e| e.to_string())?;
        let cfg = work.join("guest.cfg");
        std::fs::write(&cfg, cfg_text).map_err(|e| e.to_string())?;
        let files = vec![images.get(kernel)?, cfg];
        let ports = || -> Result<u16, String> {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            Ok(s.local_addr().map_err(|e| e.to_string())?.port())
        };
        let (pa, pb) = (ports()?, ports()?);
        let (ib, fb) = (images.clone(), files.clone());
        let target = std::thread::spawn(move || {
            host(
                &ib,
                "bench-migrate-b",
                "10.0.3.2",
                pb,
                pa,
                &fb,
                &["xl migrate-receive", "xl destroy guest"],
            )
        });
        let source = host(
            images,
            "bench-migrate-a",
            "10.0.3.1",
            pa,
            pb,
            &files,
            &[
                "xl create guest.cfg",
                "sleep 3",
                "xl migrate guest 10.0.3.2",
            ],
        );
        let target = target
            .join()
            .map_err(|_| "the target's thread panicked".to_string())?;
        images::done_with_work_dir(&work);
        target?;
        source
    }
}

/// Issue 5's network figures: two `domu-net` guests on Dom0's bridge
/// `xenbr0`, one streaming TCP to the other, then pinging it with one
/// request in flight; the sender also times a memcpy of the same size (the
/// floor: the least moving those bytes can cost). Driven like `scripts/run
/// --batch`, with the default Dom0.
pub mod network {
    use std::path::PathBuf;
    use std::time::Duration;

    use crate::batch::{self, BatchOutcome};
    use crate::boot::{dom0_ramdisk, OxenBoot, Payload};
    use crate::images::{self, Images};
    use crate::qemu::Echo;

    /// The guest kernel (a `dom0-tools` binary).
    pub const GUEST: &str = "domu-net";
    /// Bytes streamed.
    pub const BYTES: usize = 8 << 20;
    /// Echo requests.
    pub const PINGS: u32 = 100;
    /// The whole run.
    pub const TIMEOUT: Duration = Duration::from_secs(600);

    /// One `domu-net: BENCH <name> k=v ...` line's values.
    pub fn figure(log: &str, name: &str, key: &str) -> Option<f64> {
        let prefix = format!("domu-net: BENCH {name} ");
        log.lines()
            .filter_map(|l| l.find(&prefix).map(|i| &l[i + prefix.len()..]))
            .flat_map(|rest| rest.split_whitespace())
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.parse().ok())
    }

    fn cfg(dir: &std::path::Path, name: &str, extra: &str) -> Result<PathBuf, String> {
        let p = dir.join(format!("{name}.cfg"));
        std::fs::write(
            &p,
            format!(
                "name = \"{name}\"\nkernel = \"/boot/{GUEST}\"\nmemory = 32\n\
                 vif = [ \"bridge=xenbr0\" ]\nextra = \"{extra}\"\n"
            ),
        )
        .map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(p)
    }

    /// Boots Oxen with the two guests and returns the run.
    pub fn run(images: &Images, echo: Echo) -> Result<BatchOutcome, String> {
        let name = format!("oxen-bench-net-{}", std::process::id());
        let work = images::work_dir(&name).map_err(|e| e.to_string())?;
        let adds = vec![
            images.get(GUEST)?,
            cfg(&work, "sink", "ip=10.0.0.1/24 tcp-sink=5001 serve")?,
            cfg(
                &work,
                "send",
                &format!(
                    "ip=10.0.0.2/24 tcp-send=10.0.0.1:5001,bytes={BYTES} ping=10.0.0.1 \
                     count={PINGS} interval=0 linger=0"
                ),
            )?,
        ];
        let mut boot = OxenBoot::new(images.hypervisor()?, images.dom0()?)?;
        boot.ramdisk = Some(Payload::Bytes(dom0_ramdisk(&adds)?));
        // `xl console send` returns when the sender has powered off (and
        // been destroyed): its figures are on the console by then.
        let commands = batch::commands_from(
            "xl create sink.cfg\nxl create send.cfg\nxl console send\nxl destroy sink\n",
        );
        let q = boot.qemu(&name, &work)?.echo(echo);
        let machine = q.spawn().map_err(|e| e.to_string())?;
        let out = batch::run(machine, &commands, TIMEOUT);
        images::done_with_work_dir(&work);
        Ok(out)
    }
}

/// Issue 6's HVM figures: the `bare-bench` kernel (`hvm-guests`, a kernel
/// written for bare metal) times `cpuid`, a port the hypervisor emulates
/// and a port Dom0's device model serves, first on plain QEMU (the
/// reference: the same kernel with no hypervisor, on the same CPU model),
/// then as an HVM guest of Oxen created with `xl create` and watched with
/// `xl console`, driven like `scripts/run --batch`.
pub mod hvm {
    use std::time::Duration;

    use crate::batch::{self, BatchOutcome};
    use crate::boot::{dom0_ramdisk, OxenBoot, Payload};
    use crate::images::{self, Images};
    use crate::qemu::{Echo, Qemu, RunResult};

    /// The kernel (an `hvm-guests` binary).
    pub const KERNEL: &str = "bare-bench";
    /// Its name as an HVM guest, and its config (`--add`ed to Dom0's
    /// ramdisk: the kernel lands in `/boot`, the config in `/etc/xen`).
    pub const GUEST: &str = "hvmbench";
    /// The guest's memory (MiB), and plain QEMU's: the same for both.
    pub const MEM_MIB: u32 = 32;
    /// CPUs: the guest has one vCPU, the plain QEMU one CPU; Oxen's
    /// machine has the harness's default (Dom0 and the guest share them).
    pub const GUEST_CPUS: u32 = 1;
    /// CPUs of Oxen's machine: one, so that Dom0 and the guest take turns
    /// on one QEMU thread (as for pv-bench: on a shared 2-core host one
    /// thread is steadier, and an ioreq's round trip does not depend on
    /// when the host runs a second one).
    pub const OXEN_SMP: u32 = 1;
    /// The plain QEMU run, boot to power-off (well under a second idle).
    pub const BARE_TIMEOUT: Duration = Duration::from_secs(60);
    /// The Oxen run: Dom0's boot, the guest's (each COM1 access an ioreq),
    /// its 2200 round trips per figure, Dom0's power-off.
    pub const OXEN_TIMEOUT: Duration = Duration::from_secs(400);
    /// Untimed round trips before each figure's timed ones (bare-bench's
    /// `WARMUP`; its `n=` says how many were timed).
    pub const WARMUP: usize = 200;
    /// The kernel's lines: `BENCH <name> <median> min=<min> n=<n>`.
    pub const PREFIX: &str = "BENCH ";
    /// The kernel's TSC rate line, up to the number (`... about N MHz`).
    pub const TSC_MHZ_MARKER: &str = "bare: bench: TSC runs at about ";
    /// Its last line before the power-off.
    pub const POWERING_OFF: &str = "bare: powering off (ACPI S5";

    /// Where an exit is handled when the kernel runs as an HVM guest.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Handler {
        /// No exit: the timing overhead alone.
        None,
        /// The hypervisor alone (#VMEXIT, handled in xen-core, VMRUN).
        Hypervisor,
        /// The hypervisor forwards it as an ioreq to Dom0's device model
        /// and resumes the guest when Dom0 answers.
        DeviceModel,
    }

    impl Handler {
        pub fn describe(self) -> &'static str {
            match self {
                Handler::None => "no exit (timing floor)",
                Handler::Hypervisor => "hypervisor only",
                Handler::DeviceModel => "hypervisor -> Dom0 device model",
            }
        }
    }

    /// Every figure, in the order printed: id, what is timed, where Oxen
    /// handles it.
    pub const FIGURES: &[(&str, &str, Handler)] = &[
        ("hvm_floor_cycles", "nothing (two TSC reads)", Handler::None),
        ("hvm_cpuid_cycles", "cpuid leaf 0", Handler::Hypervisor),
        (
            "hvm_pio_platform_cycles",
            "in al, 0x61 (port B, platform)",
            Handler::Hypervisor,
        ),
        (
            "hvm_pio_dm_cycles",
            "in al, dx 0x3fd (COM1 LSR)",
            Handler::DeviceModel,
        ),
    ];

    /// The figures' ids, in order.
    pub fn ids() -> Vec<&'static str> {
        FIGURES.iter().map(|f| f.0).collect()
    }

    /// One figure: TSC cycles, median and minimum of `n` round trips.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Figure {
        pub median: u64,
        pub min: u64,
        pub n: u64,
    }

    /// Figure `name` from a log (the first line that parses).
    pub fn figure(log: &str, name: &str) -> Option<Figure> {
        let key = format!("{PREFIX}{name} ");
        log.lines().find_map(|l| {
            let rest = &l[l.find(&key)? + key.len()..];
            let mut w = rest.split_whitespace();
            let median = w.next()?.parse().ok()?;
            let min = w.next()?.strip_prefix("min=")?.parse().ok()?;
            let n = w.next()?.strip_prefix("n=")?.parse().ok()?;
            Some(Figure { median, min, n })
        })
    }

    /// The TSC rate the kernel measured against the PIT (MHz).
    pub fn tsc_mhz(log: &str) -> Option<u64> {
        log.lines().find_map(|l| {
            let rest = &l[l.find(TSC_MHZ_MARKER)? + TSC_MHZ_MARKER.len()..];
            rest.split_whitespace()
                .next()?
                .parse()
                .ok()
                .filter(|&v| v > 0)
        })
    }

    /// The kernel's spread line for figure `name`, after the marker
    /// (`p10=.. p25=.. p75=.. p90=.. p99=.. max=..`).
    pub fn spread<'a>(log: &'a str, name: &str) -> Option<&'a str> {
        let key = format!("bare: bench: {name} spread: ");
        log.lines()
            .find_map(|l| Some(l[l.find(&key)? + key.len()..].trim_end()))
    }

    /// The kernel's CPU line, after the marker (`vendor=.. leaf1_eax=..
    /// hypervisor_bit=.. hypervisor_signature=..`).
    pub fn cpu(log: &str) -> Option<&str> {
        const KEY: &str = "bare: bench: cpu ";
        log.lines()
            .find_map(|l| Some(l[l.find(KEY)? + KEY.len()..].trim_end()))
    }

    /// The kernel's TSC resolution line, after the marker.
    pub fn resolution(log: &str) -> Option<&str> {
        const KEY: &str = "bare: bench: TSC resolution: ";
        log.lines()
            .find_map(|l| Some(l[l.find(KEY)? + KEY.len()..].trim_end()))
    }

    /// What is missing from a run's log: every figure of [`FIGURES`] must
    /// be there with a positive median over a positive count, and the
    /// kernel must have reached its power-off line. Timings are never
    /// judged.
    pub fn problems(log: &str) -> Vec<String> {
        let mut p = Vec::new();
        for id in ids() {
            match figure(log, id) {
                Some(f) if f.median > 0 && f.n > 0 => {}
                Some(f) => p.push(format!("{id}: not a positive figure ({f:?})")),
                None => p.push(format!("no `{PREFIX}{id} <median> min=<min> n=<n>` line")),
            }
        }
        if !log.contains(POWERING_OFF) {
            p.push(format!("no {POWERING_OFF:?} line"));
        }
        p
    }

    /// The plain QEMU machine both runs are compared on: the harness's CPU
    /// model, TCG, [`GUEST_CPUS`] CPU, [`MEM_MIB`].
    pub fn bare_machine(name: &str) -> Qemu {
        Qemu::new(name).smp(GUEST_CPUS).mem(format!("{MEM_MIB}M"))
    }

    /// Boots `bare-bench` on plain QEMU (its PVH entry) and returns the
    /// run; an error if it did not power off by itself.
    pub fn run_bare(images: &Images, echo: Option<Echo>) -> Result<RunResult, String> {
        let mut q = bare_machine("bench-hvm-bare").kernel(images.get(KERNEL)?);
        if let Some(e) = echo {
            q = q.echo(e);
        }
        let r = q
            .spawn()
            .map_err(|e| e.to_string())?
            .wait_exit(BARE_TIMEOUT);
        if r.timed_out || r.exit.qemu_status() != Some(0) {
            return Err(r.report("bare-bench on plain QEMU did not power off by itself"));
        }
        Ok(r)
    }

    /// The emulator's own words on its version (`QEMU emulator version
    /// 7.2.x ...`: the first line of `qemu-system-x86_64 --version`), for
    /// the table's heading.
    pub fn emulator_version() -> String {
        std::process::Command::new(crate::qemu::qemu_binary())
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(|l| l.trim().to_string())
            })
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| "QEMU (version unknown)".into())
    }

    /// The guest's config.
    pub fn config() -> String {
        format!(
            "name = \"{GUEST}\"\ntype = \"hvm\"\nkernel = \"/boot/{KERNEL}\"\n\
             memory = {MEM_MIB}\nvcpus = {GUEST_CPUS}\n"
        )
    }

    /// Boots Oxen (the harness's machine) with `bare-bench` and its config
    /// in Dom0's ramdisk, and runs `xl create` then `xl console` (which
    /// returns once the guest has powered itself off).
    pub fn run_oxen(images: &Images, echo: Echo) -> Result<BatchOutcome, String> {
        let name = format!("oxen-bench-hvm-{}", std::process::id());
        let work = images::work_dir(&name).map_err(|e| e.to_string())?;
        let cfg = work.join(format!("{GUEST}.cfg"));
        std::fs::write(&cfg, config()).map_err(|e| format!("{}: {e}", cfg.display()))?;
        let mut boot = OxenBoot::new(images.hypervisor()?, images.dom0()?)?;
        boot.ramdisk = Some(Payload::Bytes(dom0_ramdisk(&[images.get(KERNEL)?, cfg])?));
        let commands = batch::commands_from(&format!(
            "xl create {GUEST}.cfg\nxl console {GUEST}\nxl list\n"
        ));
        let machine = boot
            .qemu(&name, &work)?
            .smp(OXEN_SMP)
            .echo(echo)
            .spawn()
            .map_err(|e| e.to_string())?;
        let out = batch::run(machine, &commands, OXEN_TIMEOUT);
        images::done_with_work_dir(&work);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versus_boot(log: &str, first_ms: u64) -> versus::Boot {
        versus::Boot {
            result: RunResult {
                name: "t".into(),
                command: "qemu".into(),
                log: log.into(),
                stderr: String::new(),
                exit: Exit::POWEROFF,
                timed_out: false,
                elapsed: Duration::from_secs(2),
                timeout: TIMEOUT,
            },
            first_line: Some(Duration::from_millis(first_ms)),
            own_ms: Some(first_ms as f64 / 2.0),
            problems: vec![],
            ended: "powered off".into(),
        }
    }

    #[test]
    fn versus_table_takes_medians_over_runs_ratios_and_spread() {
        let oxen = [
            versus_boot(
                "BENCH name=null_hypercall cycles=900 min=800 iters=1001\n\
                 BENCH name=memcpy_4k cycles=3000 min=2900 iters=1001\n\
                 BENCH name=mmu_update_512 cycles=51200 min=50000 iters=65 batch=512 per_pte=100\n",
                1000,
            ),
            versus_boot(
                "BENCH name=null_hypercall cycles=1100 min=800 iters=1001\n\
                 BENCH name=memcpy_4k cycles=5500 min=5000 iters=1001\n",
                1200,
            ),
            versus_boot(
                "BENCH name=null_hypercall cycles=1000 min=800 iters=1001\n",
                1100,
            ),
        ];
        // Xen's first boot ran on a fast host, its second on one half as
        // fast: the memcpy beside each figure says so.
        let xen = [
            versus_boot(
                "BENCH name=null_hypercall cycles=500 min=400 iters=1001\n\
                 BENCH name=memcpy_4k cycles=2500 min=2400 iters=1001\n\
                 BENCH name=grant_copy_4k n/a (grant tables: -EPERM)\n",
                2000,
            ),
            versus_boot(
                "BENCH name=null_hypercall cycles=1000 min=800 iters=1001\n\
                 BENCH name=memcpy_4k cycles=5000 min=4800 iters=1001\n",
                2000,
            ),
        ];
        let rows = versus::rows(&oxen, &xen);
        let row = |l: &str| rows.iter().find(|r| r.label.contains(l)).unwrap();
        let boot = row("host clock");
        assert_eq!(boot.oxen, Some((1100, 1000, 1200)));
        assert_eq!(boot.xen, Some((2000, 2000, 2000)));
        assert_eq!(versus::ratio(boot), "0.55");
        assert_eq!(boot.corrected, None);
        assert_eq!(row("own clock").oxen, Some((550, 500, 600)));
        let null = row("[null_hypercall]");
        assert_eq!(null.oxen, Some((1000, 900, 1100)));
        assert_eq!(null.xen, Some((1000, 500, 1000)));
        assert_eq!(versus::ratio(null), "1.00");
        // Pairs: (900/3000) / (500/2500) = 1.5 and (1100/5500) /
        // (1000/5000) = 1.0; the third Oxen boot has no partner (and no
        // memcpy). The median of two is the upper one.
        assert_eq!(versus::corrected_cell(null), "1.50");
        assert_eq!(row("[memcpy_4k]").corrected, Some(1.0));
        // A figure's own reference (`ref=`, timed right after it) is used
        // before the boot's memcpy_4k: (800/4000) / (400/1000) = 0.5.
        let o = [versus_boot(
            "BENCH name=pf_bounce cycles=800 min=700 iters=1001 ref=4000\n\
             BENCH name=memcpy_4k cycles=2000 min=1900 iters=1001\n",
            1000,
        )];
        let x = [versus_boot(
            "BENCH name=pf_bounce cycles=400 min=300 iters=1001 ref=1000\n\
             BENCH name=memcpy_4k cycles=2000 min=1900 iters=1001\n",
            1000,
        )];
        assert_eq!(versus::corrected(&o, &x, "pf_bounce"), Some(0.5));
        assert_eq!(row("per PTE").oxen, Some((100, 100, 100)));
        assert_eq!(row("per PTE").xen, None);
        assert_eq!(
            row("[grant_copy_4k]").xen_na.as_deref(),
            Some("n/a on Xen: grant tables: -EPERM")
        );
        // Every figure has a row (and the two boot rows, the per-PTE one).
        assert_eq!(rows.len(), FIGURES.len() + 3);

        let cells = versus::cells(&rows, None);
        let null = cells
            .iter()
            .find(|c| c[0].contains("[null_hypercall]"))
            .unwrap();
        assert_eq!(null[1], "1000 cycles");
        assert_eq!(null[2], "1000 cycles");
        assert_eq!(null[4], "1.50");
        assert_eq!(null[5], "900-1100 / 500-1000");
        let text = versus::text_table(&cells);
        assert!(text.lines().next().unwrap().starts_with("figure"));
        let md = versus::markdown_table(&cells);
        assert_eq!(md.lines().count(), cells.len() + 1);
        assert!(md.contains("| n/a on Xen: grant tables: -EPERM |"));

        // Without Xen: Oxen's figures, and the Xen column says so.
        let rows = versus::rows(&oxen, &[]);
        let cells = versus::cells(&rows, Some("apt-get download failed"));
        let null = cells
            .iter()
            .find(|c| c[0].contains("[null_hypercall]"))
            .unwrap();
        assert_eq!(null[1], "1000 cycles");
        assert_eq!(null[2], "(no Xen)");
        assert_eq!(null[3], "-");
        assert_eq!(null[4], "-");
    }

    #[test]
    fn icount_table_pairs_the_two_boots() {
        let o = versus_boot(
            "BENCH name=null_hypercall cycles=300 min=300 iters=1001 ref=534\n\
             BENCH name=pf_bounce cycles=700 min=700 iters=1001 ref=534\n",
            10,
        );
        let x = versus_boot(
            "BENCH name=null_hypercall cycles=250 min=250 iters=1001 ref=534\n",
            10,
        );
        let cells = versus::icount_cells(Some(&o), Some(&x));
        assert_eq!(cells[0][0], "figure");
        let row = |id: &str| cells.iter().find(|c| c[0].contains(id)).unwrap().clone();
        assert_eq!(row("[null_hypercall]")[1..], ["300", "250", "1.20"]);
        assert_eq!(row("[pf_bounce]")[1..], ["700", "-", "-"]);
        // Figures neither boot has are left out.
        assert_eq!(cells.len(), 3);
        assert_eq!(versus::icount_cells(None, None).len(), 1);
    }

    #[test]
    fn oxen_first_line_ms_parses() {
        assert_eq!(
            versus::oxen_first_line_ms(
                "(XEN) [   0.739473] Dom0 first console line after 739.417 ms (TSC)\n"
            ),
            Some(739.417)
        );
        assert_eq!(
            versus::oxen_first_line_ms("Dom0 first console line after x ms"),
            None
        );
    }

    #[test]
    fn parses_the_hvm_cpuid_line() {
        let log = "(XEN) [   0.16] HVM: SVM world switch self-test passed: the guest said \"x\" \
                   (29 IOIO exits), got \"Oxen\" from 65 CPUID, 1 nested page fault, halted; \
                   CPUID exit round trip median 43238 cycles (min 42822, 64 exits)\n";
        assert_eq!(hvm_cpuid(log), Some((43238, 42822, 64)));
        assert_eq!(hvm_cpuid("CPUID exit round trip median soon"), None);
    }

    #[test]
    fn parses_storage_lines() {
        let log = "BENCH blk_dom0_seq_read_mb_s 412 bytes=33554432\n\
                   domu-disk: x\nBENCH blk_guest_seq_read_mb_s 380 bytes=1 depth=1\n\
                   BENCH blk_guest_seq_read_mb_s 700 bytes=1 depth=8\n\
                   BENCH blk_guest_rand_read_4k_iops 90 depth=8\n";
        assert_eq!(storage::value(log, "dom0", "seq_read_mb_s", 1), Some(412));
        assert_eq!(storage::value(log, "dom0", "seq_read_mb_s", 8), None);
        assert_eq!(storage::value(log, "guest", "seq_read_mb_s", 1), Some(380));
        assert_eq!(storage::value(log, "guest", "seq_read_mb_s", 8), Some(700));
        assert_eq!(
            storage::value(log, "guest", "rand_read_4k_iops", 8),
            Some(90)
        );
        assert_eq!(storage::value(log, "guest", "rand_read_4k_iops", 1), None);
        assert_eq!(storage::value(log, "guest", "seq_write_mb_s", 1), None);
    }

    #[test]
    fn parses_network_figures() {
        let log = "domu-net: BENCH tcp_send bytes=8388608 ns=2000000000 mbit_s=33.5\r\n\
                   domu-net: BENCH ping_rtt count=100 min_us=900 median_us=1200 max_us=9000\n";
        assert_eq!(network::figure(log, "tcp_send", "mbit_s"), Some(33.5));
        assert_eq!(network::figure(log, "ping_rtt", "median_us"), Some(1200.0));
        assert_eq!(network::figure(log, "ping_rtt", "avg_us"), None);
        assert_eq!(network::figure(log, "memcpy", "mbit_s"), None);
    }

    #[test]
    fn parses_hvm_figures() {
        let log = "bare: bench: TSC runs at about 2602 MHz (against the PIT over 50 ms)\n\
                   BENCH hvm_floor_cycles 26 min=1 n=2000\r\n\
                   BENCH hvm_cpuid_cycles 52 min=1 n=2000\n\
                   BENCH hvm_pio_dm_cycles soon\n";
        assert_eq!(
            hvm::figure(log, "hvm_floor_cycles"),
            Some(hvm::Figure {
                median: 26,
                min: 1,
                n: 2000
            })
        );
        assert_eq!(
            hvm::figure(log, "hvm_cpuid_cycles").map(|f| f.median),
            Some(52)
        );
        assert_eq!(hvm::figure(log, "hvm_pio_dm_cycles"), None);
        assert_eq!(hvm::figure(log, "hvm_pio_platform_cycles"), None);
        assert_eq!(hvm::tsc_mhz(log), Some(2602));
        assert_eq!(hvm::tsc_mhz("bare: bench: TSC runs at about ? MHz"), None);
        let log = "bare: bench: TSC resolution: back-to-back reads differ by 26 (median)\r\n\
                   bare: bench: hvm_cpuid_cycles spread: p10=26 max=130\n";
        assert_eq!(
            hvm::resolution(log),
            Some("back-to-back reads differ by 26 (median)")
        );
        assert_eq!(hvm::spread(log, "hvm_cpuid_cycles"), Some("p10=26 max=130"));
        assert_eq!(hvm::spread(log, "hvm_floor_cycles"), None);
        assert_eq!(
            hvm::cpu("bare: bench: cpu vendor=AuthenticAMD hypervisor_bit=0\r"),
            Some("vendor=AuthenticAMD hypervisor_bit=0")
        );
    }

    #[test]
    fn judges_an_hvm_run_by_presence_never_by_size() {
        let mut log = String::new();
        for id in hvm::ids() {
            log.push_str(&format!("BENCH {id} 99999999 min=1 n=2000\n"));
        }
        log.push_str("bare: powering off (ACPI S5: PM1a_CNT 0x604, SLP_TYP 0)\n");
        assert_eq!(hvm::problems(&log), Vec::<String>::new());
        let missing = log.replace("BENCH hvm_pio_dm_cycles", "BENCH other");
        assert_eq!(hvm::problems(&missing).len(), 1);
        let zero = log.replace("hvm_cpuid_cycles 99999999", "hvm_cpuid_cycles 0");
        assert_eq!(hvm::problems(&zero).len(), 1);
        let no_off = log.replace("bare: powering off", "bare: stuck");
        assert_eq!(hvm::problems(&no_off).len(), 1);
        assert_eq!(hvm::problems("").len(), hvm::ids().len() + 1);
    }

    #[test]
    fn parses_the_floor() {
        let log = "(XEN) [   0.144431] bench: syscall/sysret floor 177 cycles (min 143; 33 x 64 pairs, ring 3 -> ring 0 -> ring 3)\n";
        assert_eq!(
            floor(log),
            Some(Floor {
                median: 177,
                min: 143,
                shape: Some((33, 64))
            })
        );
        assert_eq!(
            floor("bench: syscall/sysret floor 9 cycles (min 8)").map(|f| f.shape),
            Some(None)
        );
        assert_eq!(floor("bench: syscall/sysret floor soon"), None);
        assert_eq!(floor(""), None);
    }

    #[test]
    fn parses_bench_lines() {
        let log = "pv-bench: note\n\
                   BENCH name=null_hypercall cycles=1446 min=868 iters=1001 ref=3100\n\
                   BENCH name=mmu_update_512 cycles=1346462 min=1068674 iters=65 batch=512 per_pte=2629\n\
                   BENCH name=evtchn_upcall n/a (event channels: -ENOSYS)\n\
                   BENCH name=broken cycles=abc\n";
        let f = figures(log);
        assert_eq!(f.len(), 4);
        assert_eq!(
            f[0],
            Figure::Measured {
                name: "null_hypercall".into(),
                median: 1446,
                min: 868,
                iters: 1001,
                batch: None,
                ns: None,
                reference: Some(3100),
            }
        );
        assert!(
            matches!(&f[1], Figure::Measured { batch: Some((512, u)), reference: None, .. } if u == "pte")
        );
        assert_eq!(
            f[2],
            Figure::NotAvailable {
                name: "evtchn_upcall".into(),
                why: "event channels: -ENOSYS".into()
            }
        );
        assert!(matches!(&f[3], Figure::Garbled { name, .. } if name == "broken"));
        let f = figures("[d22] BENCH name=xl_destroy cycles=9 min=8 iters=20 ns=3 ns_min=2\n");
        assert!(matches!(
            &f[0],
            Figure::Measured {
                ns: Some((3, 2)),
                ..
            }
        ));
    }

    #[test]
    fn judges_a_toolstack_run_by_presence_never_by_size() {
        let mut log = String::new();
        for id in toolstack::ids() {
            log.push_str(&format!(
                "[d3] BENCH name={id} cycles=99999999 min=1 iters=3 ns=5 ns_min=4\n"
            ));
        }
        log.push_str("VERDICT: SUCCESS\n");
        let r = run_with(&log, Exit::POWEROFF);
        assert_eq!(toolstack::problems(&r), Vec::<String>::new());
        let na = log.replace(
            "name=xs_read cycles=99999999 min=1 iters=3 ns=5 ns_min=4",
            "name=xs_read n/a (no guest)",
        );
        assert_eq!(toolstack::problems(&run_with(&na, Exit::POWEROFF)).len(), 1);
        let zero = log.replace(
            "name=xl_destroy cycles=99999999 min=1 iters=3 ns=5",
            "name=xl_destroy cycles=99999999 min=1 iters=3 ns=0",
        );
        assert_eq!(
            toolstack::problems(&run_with(&zero, Exit::POWEROFF)).len(),
            1
        );
        for (_, _, floor) in toolstack::FIGURES {
            if let Some(f) = floor {
                assert!(toolstack::ids().contains(f), "{f}");
            }
        }
    }

    fn run_with(log: &str, exit: Exit) -> RunResult {
        RunResult {
            name: "pv-bench".into(),
            command: String::new(),
            log: log.into(),
            stderr: String::new(),
            exit,
            timed_out: false,
            elapsed: Duration::from_secs(1),
            timeout: TIMEOUT,
        }
    }

    #[test]
    fn judges_a_run_by_presence_never_by_size() {
        let mut log =
            String::from("(XEN) bench: syscall/sysret floor 177 cycles (min 143; 33 x 64 pairs)\n");
        for (id, _) in FIGURES {
            if *id == "evtchn_upcall" {
                log.push_str("BENCH name=evtchn_upcall n/a (event channels: -ENOSYS)\n");
            } else {
                log.push_str(&format!("BENCH name={id} cycles=99999999 min=1 iters=3\n"));
            }
        }
        log.push_str("VERDICT: SUCCESS\n");
        assert_eq!(
            problems(&run_with(&log, Exit::POWEROFF)),
            Vec::<String>::new()
        );

        let zero = log.replace("name=pf_bounce cycles=99999999", "name=pf_bounce cycles=0");
        assert_eq!(problems(&run_with(&zero, Exit::POWEROFF)).len(), 1);
        let na = log.replace(
            "name=null_hypercall cycles=99999999 min=1 iters=3",
            "name=null_hypercall n/a (why)",
        );
        assert_eq!(problems(&run_with(&na, Exit::POWEROFF)).len(), 1);
        let missing = log.replace("BENCH name=mmu_update_512", "nothing");
        assert_eq!(problems(&run_with(&missing, Exit::POWEROFF)).len(), 1);
        let no_floor = log.replace("floor 177", "floor");
        assert_eq!(problems(&run_with(&no_floor, Exit::POWEROFF)).len(), 1);
        assert!(!problems(&run_with(&log, Exit::CRASH)).is_empty());
        assert!(!problems(&run_with("", Exit::POWEROFF)).is_empty());
    }
}
