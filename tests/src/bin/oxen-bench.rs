//! `oxen-bench`: the logic behind `scripts/bench`.
//!
//! Boots Oxen (PVH, `-smp 2`, TCG) a few times and reports, beside the
//! reference figure from DESIGN.md:
//! * the time to Dom0's first console line, as xen-core measures it with the
//!   TSC and prints in its boot log
//!   (`Dom0 first console line after N.NNN ms (TSC)`), and
//! * the host wall-clock time from starting QEMU to Dom0's `VERDICT:` line
//!   (after typing `poweroff` at the first prompt).
//!
//! Then it boots the `pv-bench` kernel as Dom0 once (`-smp 1`) and prints
//! issue 3's PV microbenchmarks in TSC cycles (median and minimum of many
//! iterations: null hypercall, `mmu_update` of 512 PTEs, #PF bounce, guest
//! syscall bounce, event channel send to self until upcall), each beside
//! the floor measured in the same boot: a bare `syscall`/`sysret` pair,
//! which xen-core times on itself at boot (a PV guest cannot `sysret`; see
//! `xen-core/src/arch/x86_64/syscall_floor.rs`); the ratio is to the
//! floor (`--only xen` puts the same kernel beside Xen 4.17).
//!
//! Then it boots the `xl-bench` kernel as Dom0 once (`-smp 1`) for issue
//! 4's toolstack figures: `xl create` to the guest's first console line
//! (median of 20, cycles and ms) beside the domain builder alone, `xl
//! destroy` beside the destroy domctl alone, and a guest's xenstore read
//! and write round trips beside an event sent to itself (the least a ring
//! request costs), all measured in that boot (`tests/src/bench.rs`,
//! `bench::toolstack`).
//!
//! Then it boots Oxen once more with two `domu-net` guests on the bridge
//! for issue 5's network figures: guest-to-guest TCP throughput beside a
//! memcpy of as many bytes in the guest, and ping round trips
//! (`bench::network`).
//!
//! Then it runs issue 6's HVM figures (`bench::hvm`): the `bare-bench`
//! kernel, written for bare metal, times `cpuid`, a port the hypervisor
//! emulates and a port Dom0's device model serves, on plain QEMU (the
//! reference: no hypervisor) and as an HVM guest of Oxen (`xl create`,
//! `xl console`), on the same emulated CPU.
//!
//! Then (issue 8) the same `pv-bench` binary as Dom0 of Oxen and of Xen
//! 4.17 (Debian's package, fetched into `target/xen-4.17/` by
//! `oxen_tests::xen`), alternating boots, in one table (figure, Oxen, Xen,
//! Oxen/Xen, spread over the boots), which it also writes to
//! `docs/PERFORMANCE.md` (`bench::versus`).
//!
//! Benchmarks are not tests: this measures and reports; it fails only if a
//! boot does not get as far as a verdict (or pv-bench does not finish).

use std::process::ExitCode;
use std::time::Duration;

use oxen_tests::batch::{POWEROFF, PROMPT};
use oxen_tests::bench;
use oxen_tests::boot::OxenBoot;
use oxen_tests::images::{self, Images};
use oxen_tests::qemu::Echo;

/// The boot-log line xen-core prints, up to the number.
const FIRST_LINE_MARKER: &str = "Dom0 first console line after ";
/// Xen 4.17 + Linux Dom0 under this machine's QEMU TCG (DESIGN.md).
const REFERENCE_FIRST_LINE_MS: f64 = 4000.0;
const REFERENCE_NOTE: &str = "Xen 4.17 + Linux Dom0 under the same TCG: ~4 s to Dom0's first line \
     (DESIGN.md; --only xen boots Xen 4.17 itself with the same PV Dom0 as Oxen)";
const SMP: u32 = 2;
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Parses `Dom0 first console line after N.NNN ms (TSC)` out of a boot log.
fn first_line_ms(log: &str) -> Option<f64> {
    log.lines().find_map(|l| {
        let rest = &l[l.find(FIRST_LINE_MARKER)? + FIRST_LINE_MARKER.len()..];
        let num = rest.split_whitespace().next()?;
        if !rest[num.len()..].trim_start().starts_with("ms") {
            return None;
        }
        num.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
    })
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

struct Sample {
    first_line_ms: Option<f64>,
    to_verdict: Option<Duration>,
    ended: String,
}

fn one_run(boot: &OxenBoot, i: usize) -> Result<Sample, String> {
    let name = format!("bench-{i}");
    let work = images::work_dir(&name).map_err(|e| e.to_string())?;
    let mut m = boot
        .qemu(&name, &work)?
        .smp(SMP)
        .echo(Echo::Quiet)
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut to_verdict = None;
    // Dom0 either shows its prompt (then `poweroff` makes it print its
    // verdict) or prints its verdict by itself.
    if let Ok(f) = m.wait_for_any(&[PROMPT, "VERDICT:"], BOOT_TIMEOUT) {
        if f.index == 0 {
            let _ = m.send_line(POWEROFF);
            if let Ok(v) = m.wait_for("VERDICT:", BOOT_TIMEOUT) {
                to_verdict = Some(v.at);
            }
        } else {
            to_verdict = Some(f.at);
        }
    }
    let r = m.wait_exit(Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&work);
    if to_verdict.is_none() {
        eprintln!(
            "{}",
            r.report("no VERDICT line: this boot gives no wall-clock figure")
        );
    }
    Ok(Sample {
        first_line_ms: first_line_ms(&r.log),
        to_verdict,
        ended: r.exit_summary(),
    })
}

fn main() -> ExitCode {
    let mut runs = 3usize;
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--only" => match args.next().as_deref() {
                Some("boot") => only = Some(Part::Boot),
                Some("micro") => only = Some(Part::Micro),
                Some("toolstack") => only = Some(Part::Toolstack),
                Some("storage") => only = Some(Part::Storage),
                Some("network") => only = Some(Part::Network),
                Some("hvm") => only = Some(Part::Hvm),
                Some("lifecycle") => only = Some(Part::Lifecycle),
                Some("xen") => only = Some(Part::Xen),
                Some("hostile") => only = Some(Part::Hostile),
                _ => {
                    eprintln!(
                        "oxen-bench: error: --only takes boot, micro, toolstack, storage, network, hvm, lifecycle, xen or hostile"
                    );
                    return ExitCode::from(2);
                }
            },
            "--runs" => match args.next().and_then(|v| v.parse().ok()).filter(|&n| n > 0) {
                Some(n) => runs = n,
                None => {
                    eprintln!("oxen-bench: error: --runs needs a positive number");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!(
                    "Usage: scripts/bench [--runs N] [--only boot|micro|toolstack|storage|network|hvm|lifecycle|xen|hostile]\n  \
                     --runs N     boots for the boot-time figure, and boots of each\n               \
                     hypervisor for xen (default 3)\n  \
                     --only ...   just the boot-time figure, the PV microbenchmarks, the\n               \
                     toolstack's (xl create/destroy, xenstore), a guest's disk\n               \
                     through blkback beside Dom0's own, guest-to-guest TCP and ping\n               \
                     over xenbr0, or an HVM guest's CPUID and port I/O exits beside\n               \
                     the same kernel on plain QEMU, or an HVM guest's xl save and\n               \
                     xl restore beside Dom0's own disk, or pv-bench as Dom0 of Oxen\n               \
                     and of Xen 4.17 side by side (writes docs/PERFORMANCE.md),\n               \
                     or the hostile fuzzing guests: millions of hypercalls, several\n               \
                     seeds, beside a canary (writes docs/ROBUSTNESS.md)"
                );
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("oxen-bench: error: unknown option {other:?}");
                return ExitCode::from(2);
            }
        }
    }
    let parts = match only {
        Some(p) => vec![p],
        None => vec![
            Part::Boot,
            Part::Micro,
            Part::Toolstack,
            Part::Storage,
            Part::Network,
            Part::Hvm,
            Part::Lifecycle,
            Part::Xen,
            Part::Hostile,
        ],
    };
    let mut ok = true;
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            println!();
        }
        let r = images::build_images().and_then(|images| match part {
            Part::Boot => bench(images, runs),
            Part::Micro => micro(images),
            Part::Toolstack => toolstack(images),
            Part::Storage => storage(images),
            Part::Network => network(images),
            Part::Hvm => hvm(images),
            Part::Lifecycle => lifecycle(images),
            Part::Xen => versus_xen(images, runs),
            Part::Hostile => hostile(images),
        });
        match r {
            Ok(true) => {}
            Ok(false) => ok = false,
            Err(e) => {
                eprintln!("oxen-bench: error: {e}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[derive(Clone, Copy)]
enum Part {
    Boot,
    Micro,
    Toolstack,
    Storage,
    Network,
    Hvm,
    Lifecycle,
    Xen,
    Hostile,
}

/// Issue 8: the hostile fuzzing guests, millions of calls over several
/// seeds (the PV fuzzer beside its canary; the HVM one too when the
/// images have its Dom0); writes docs/ROBUSTNESS.md from the runs.
fn hostile(images: &Images) -> Result<bool, String> {
    use oxen_tests::robustness::{self as rb, Meta, Section};
    use std::time::Duration;
    /// Seeds (runs) per boot, and calls per run: hypercalls for the PV
    /// fuzzer; for the HVM one, operations (each a VM exit or more, a
    /// few thousand a second under TCG).
    const SEEDS: u64 = 4;
    const CALLS: u64 = 2_000_000;
    const HVM_OPS: u64 = 100_000;
    // A new seed each time the bench runs (recorded in the report).
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs() % 1_000_000);
    let emulator = bench::hvm::emulator_version();
    println!(
        "Hostile guests: {SEEDS} seeds from {seed} per fuzzing guest, {CALLS} hypercalls each \
         (PV), {HVM_OPS} operations each (HVM); emulator: {emulator}, TCG"
    );
    let mut boots = vec![(
        rb::PV_KERNEL,
        "PV fuzzing guest (domu-fuzz, 2 vCPUs) beside a canary",
        format!("seed={seed} calls={CALLS} runs={SEEDS}"),
        Duration::from_secs(120 + SEEDS * CALLS / 1_000_000 * 240),
    )];
    if images.get(rb::HVM_KERNEL).is_ok() {
        boots.push((
            rb::HVM_KERNEL,
            "HVM fuzzing guest (bare-fuzz) beside a canary (bare-count)",
            format!("seed={seed} count={HVM_OPS} runs={SEEDS}"),
            Duration::from_secs(120 + SEEDS * HVM_OPS / 1000),
        ));
    }
    let mut sections = Vec::new();
    let mut ok = true;
    for (kernel, title, cmdline, timeout) in boots {
        eprintln!("oxen-bench: booting {kernel} ({cmdline}) ...");
        let r = rb::boot(images, kernel, &cmdline, timeout, Echo::Quiet)?;
        let clean = !r.timed_out && r.exit == oxen_tests::exit::Exit::POWEROFF;
        let how = format!(
            "`{kernel}` as Dom0 with command line `{cmdline}`, booted by `scripts/bench --only \
             hostile` ({:.0} s): `{}`",
            r.elapsed.as_secs_f64(),
            r.command
                .replace(&*images::workspace_root().to_string_lossy(), ".")
        );
        let s = Section::from_log(title, &how, kernel, &r.log, &r.exit_summary(), clean);
        for run in &s.runs {
            println!(
                "{kernel}: seed {}: {}, classes {}",
                run.seed,
                run.total.map_or("unfinished".into(), |t| format!(
                    "{} calls in {} ms",
                    t.0, t.1
                )),
                run.classes
                    .iter()
                    .map(|c| c.class.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        println!(
            "{kernel}: {} checks, {} failed; hypervisor crashes {}, Dom0 crashes {}, canary disturbed {:?}",
            s.checks.len(),
            s.checks.iter().filter(|c| !c.ok).count(),
            s.hypervisor_crashes,
            s.dom0_crashes,
            s.canary_disturbed
        );
        if !s.passed() {
            eprintln!(
                "{}",
                r.report(&format!("{kernel} did not pass every check"))
            );
            ok = false;
        }
        sections.push(s);
    }
    let root = images::workspace_root();
    let root_s = root.to_string_lossy();
    let (cpu, cpus) = bench::versus::machine();
    let mut fuzz_targets: Vec<String> = std::fs::read_dir(root.join("fuzz/fuzz_targets"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .strip_suffix(".rs")
                        .map(String::from)
                })
                .collect()
        })
        .unwrap_or_default();
    fuzz_targets.sort();
    let mut xsa_tests = Vec::new();
    for dir in ["xen-core/src", "dom0-tools/src", "dom0-tools/tests"] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap_or_default();
                    xsa_tests.extend(rb::xsa_tests(&text));
                }
            }
        }
    }
    xsa_tests.sort();
    let dirty = command_output(
        "git",
        &[
            "-C",
            &root_s,
            "status",
            "--porcelain",
            "--untracked-files=no",
        ],
    )
    .map_or("", |_| " with local changes");
    let meta = Meta {
        date: command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "?".into()),
        machine: format!("{cpu}, {cpus} logical CPUs (shared with other work)"),
        emulator: format!("{emulator}, TCG, -smp {}", oxen_tests::qemu::DEFAULT_SMP),
        commit: format!(
            "{}{dirty}",
            command_output("git", &["-C", &root_s, "rev-parse", "--short", "HEAD"])
                .unwrap_or_else(|| "?".into())
        ),
        fuzz_targets,
        xsa_tests,
    };
    let path = root.join("docs/ROBUSTNESS.md");
    match std::fs::write(&path, rb::markdown(&meta, &sections)) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(e) => {
            eprintln!("oxen-bench: cannot write {}: {e}", path.display());
            ok = false;
        }
    }
    Ok(ok)
}

/// Issue 8: pv-bench as Dom0 of Oxen and of Xen 4.17, alternating runs,
/// side by side; writes docs/PERFORMANCE.md.
fn versus_xen(images: &Images, runs: usize) -> Result<bool, String> {
    use bench::versus;
    use oxen_tests::qemu::{DEFAULT_CPU, DEFAULT_MACHINE, DEFAULT_MEM};
    use oxen_tests::xen;
    let emulator = bench::hvm::emulator_version();
    println!(
        "Oxen beside Xen 4.17: the same {} binary as Dom0 of each, {runs} boot(s) of each, \
         alternating (Oxen, Xen, ...); emulator: {emulator}, TCG (no KVM), -machine \
         {DEFAULT_MACHINE} -cpu {DEFAULT_CPU} -m {DEFAULT_MEM} -smp {}; Dom0 given 256 MiB",
        bench::KERNEL,
        bench::SMP
    );
    let xen = xen::fetch(true);
    let xen_missing = match &xen {
        Ok(x) => {
            println!("Xen: {} ({})", x.version, x.binary.display());
            None
        }
        Err(e) => {
            println!("Xen 4.17 is not available, so Oxen's figures only: {e}");
            Some(e.clone())
        }
    };
    let mut oxen_boots = Vec::new();
    let mut xen_boots = Vec::new();
    let mut ok = true;
    let mut keep =
        |who: &str, i: usize, b: Result<versus::Boot, String>, v: &mut Vec<versus::Boot>| match b {
            Ok(b) => {
                let first = b.first_line.map_or("no first line".into(), |d| {
                    format!("first line at {:.2} s", d.as_secs_f64())
                });
                eprintln!(
                    "oxen-bench: run {}/{runs} on {who}: {first}, {} in {:.1} s{}",
                    i + 1,
                    b.ended,
                    b.result.elapsed.as_secs_f64(),
                    if b.problems.is_empty() {
                        String::new()
                    } else {
                        format!(" -- PROBLEMS: {}", b.problems.join("; "))
                    }
                );
                if !b.problems.is_empty() {
                    eprintln!("{}", b.result.report(&b.problems.join("; ")));
                    ok = false;
                }
                v.push(b);
            }
            Err(e) => {
                eprintln!("oxen-bench: run {}/{runs} on {who}: {e}", i + 1);
                ok = false;
            }
        };
    for i in 0..runs {
        eprintln!(
            "oxen-bench: run {}/{runs}: booting pv-bench on Oxen ...",
            i + 1
        );
        keep(
            "Oxen",
            i,
            versus::run_oxen(images, Some(Echo::Quiet)),
            &mut oxen_boots,
        );
        if let Ok(x) = &xen {
            eprintln!(
                "oxen-bench: run {}/{runs}: booting pv-bench on Xen 4.17 ...",
                i + 1
            );
            keep(
                "Xen",
                i,
                versus::run_xen(x, images, Some(Echo::Quiet)),
                &mut xen_boots,
            );
        }
    }
    // One boot of each counting instructions (deterministic: no host in it).
    eprintln!("oxen-bench: booting pv-bench on Oxen and on Xen under -icount ...");
    let icount_oxen = versus::run_oxen_with(images, Some(Echo::Quiet), true);
    let icount_xen = xen
        .as_ref()
        .ok()
        .map(|x| versus::run_xen_with(x, images, Some(Echo::Quiet), true));
    for (who, b) in [("Oxen", Some(&icount_oxen)), ("Xen", icount_xen.as_ref())] {
        match b {
            Some(Ok(b)) if !b.problems.is_empty() => {
                eprintln!("{}", b.result.report(&b.problems.join("; ")));
                ok = false;
            }
            Some(Err(e)) => {
                eprintln!("oxen-bench: -icount boot on {who}: {e}");
                ok = false;
            }
            _ => {}
        }
    }
    let icount = versus::icount_cells(
        icount_oxen.as_ref().ok(),
        icount_xen.as_ref().and_then(|b| b.as_ref().ok()),
    );
    let rows = versus::rows(&oxen_boots, &xen_boots);
    let cells = versus::cells(&rows, xen_missing.as_deref());
    println!();
    print!("{}", versus::text_table(&cells));
    println!();
    println!(
        "TSC cycles (rdtsc; the median of ~1000 iterations in each boot, timing overhead \
         subtracted), then the median of those over the boots; spread: the smallest and largest \
         per-boot median. Under TCG absolute cycles move with the host's load: the ratios are \
         what count. Speed-corrected: each figure divided by the guest-only 4 KiB copy pv-bench \
         times right after it (ref=), then Oxen's run i over Xen's run i, the median over the \
         pairs (it cancels the host's speed, which changes between boots and within them)."
    );
    // The cross-domain figures have no Xen counterpart here (Xen cannot
    // run Oxen's toolstack Dom0): each stands beside its physical floor.
    eprintln!("oxen-bench: cross-domain figures: booting xl-bench on Oxen ...");
    let cross = match bench::toolstack::run(images, Some(Echo::Quiet)) {
        Ok(r) => {
            let p = bench::toolstack::problems(&r);
            if !p.is_empty() {
                eprintln!("{}", r.report(&p.join("; ")));
                ok = false;
            }
            cross_rows(&r.log, oxen_boots.first().map(|b| b.result.log.as_str()))
        }
        Err(e) => {
            eprintln!("oxen-bench: xl-bench: {e}");
            ok = false;
            Vec::new()
        }
    };
    println!();
    println!("Instructions per operation (QEMU -icount shift=0: one boot of each, deterministic):");
    for r in &icount {
        println!("{:<62} {:>9} {:>9} {:>9}", r[0], r[1], r[2], r[3]);
    }
    println!();
    println!("Cross-domain figures on Oxen, each beside its floor (TSC cycles, medians):");
    for r in &cross {
        println!(
            "{:<58} {:>11}  {:<44} {:>9} {:>7}",
            r[0], r[1], r[2], r[3], r[4]
        );
    }
    let doc = performance_md(
        runs,
        &emulator,
        xen.as_ref().ok(),
        xen_missing.as_deref(),
        Tables {
            timed: &cells,
            icount: &icount,
            cross: &cross,
        },
        (
            oxen_boots.first().map(|b| b.result.command.as_str()),
            xen_boots.first().map(|b| b.result.command.as_str()),
        ),
    );
    let path = images::workspace_root().join("docs/PERFORMANCE.md");
    match std::fs::write(&path, doc) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(e) => {
            eprintln!("oxen-bench: cannot write {}: {e}", path.display());
            ok = false;
        }
    }
    Ok(ok && !oxen_boots.is_empty())
}

/// The cross-domain figures (xl-bench's boot) and pv-bench's null
/// hypercall, each beside its floor: `[figure, cycles, floor, floor
/// cycles, ratio]`. A figure the run lacks is left out.
fn cross_rows(toolstack_log: &str, pv_bench_log: Option<&str>) -> Vec<[String; 5]> {
    const CROSS: &[(&str, &str, &str, &str)] = &[
        (
            "evtchn_pingpong",
            "event channel ping-pong, domU <-> Dom0",
            "evtchn_self",
            "event to self until handler (domU)",
        ),
        (
            "grant_copy_domu",
            "GNTTABOP_copy of a domU's 4 KiB grant into Dom0",
            "memcpy_4k_dom0",
            "4 KiB memcpy in Dom0",
        ),
        (
            "xs_read",
            "xenstore read round trip (domU -> Dom0's xenstored)",
            "evtchn_self",
            "event to self until handler (domU)",
        ),
        (
            "xl_create_first_line",
            "xl create to the guest's first console line",
            "builder_alone",
            "the domain builder alone",
        ),
    ];
    let figures = bench::figures(toolstack_log);
    let median = |id: &str| {
        figures.iter().find_map(|f| match f {
            bench::Figure::Measured { name, median, .. } if name == id => Some(*median),
            _ => None,
        })
    };
    let mut rows: Vec<[String; 5]> = CROSS
        .iter()
        .filter_map(|&(id, what, fid, fwhat)| {
            let (v, f) = (median(id)?, median(fid)?);
            Some([
                format!("{what} [{id}]"),
                v.to_string(),
                format!("{fwhat} [{fid}]"),
                f.to_string(),
                fmt_ratio(v, f),
            ])
        })
        .collect();
    if let Some(log) = pv_bench_log {
        let null = bench::figures(log).into_iter().find_map(|f| match f {
            bench::Figure::Measured { name, median, .. } if name == "null_hypercall" => {
                Some(median)
            }
            _ => None,
        });
        if let (Some(v), Some(fl)) = (null, bench::floor(log)) {
            rows.push([
                "null hypercall from Dom0 [null_hypercall]".into(),
                v.to_string(),
                "bare syscall/sysret pair (xen-core at boot)".into(),
                fl.median.to_string(),
                fmt_ratio(v, fl.median),
            ]);
        }
    }
    rows
}

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let o = std::process::Command::new(cmd).args(args).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The tables of docs/PERFORMANCE.md, header rows first.
struct Tables<'a> {
    /// Oxen beside Xen, timed (`versus::cells`).
    timed: &'a [[String; 6]],
    /// Instructions per operation (`versus::icount_cells`).
    icount: &'a [[String; 4]],
    /// The cross-domain figures beside their floors (no header row).
    cross: &'a [[String; 5]],
}

/// docs/PERFORMANCE.md, from the run.
fn performance_md(
    runs: usize,
    emulator: &str,
    xen: Option<&oxen_tests::xen::Xen>,
    xen_missing: Option<&str>,
    tables: Tables,
    (oxen_cmd, xen_cmd): (Option<&str>, Option<&str>),
) -> String {
    let Tables {
        timed: cells,
        icount,
        cross,
    } = tables;
    use bench::versus;
    let date = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "?".into());
    let (cpu, cpus) = versus::machine();
    let root = images::workspace_root();
    let root = root.to_string_lossy();
    let commit = command_output("git", &["-C", &root, "rev-parse", "--short", "HEAD"])
        .unwrap_or_else(|| "?".into());
    // This file itself, written by an earlier run, is not a change to
    // what was measured.
    let dirty = command_output(
        "git",
        &[
            "-C",
            &root,
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":(exclude)docs/PERFORMANCE.md",
        ],
    )
    .map_or("", |_| " with local changes");
    let mut s = String::new();
    s.push_str("# Performance: Oxen beside Xen 4.17\n\n");
    s.push_str(
        "Written by `scripts/bench --only xen` (also part of a full `scripts/bench`) from \
         the run below; nobody edits these numbers by hand: run it again instead.\n\n",
    );
    s.push_str(&format!("- Date: {date}\n"));
    s.push_str(&format!(
        "- Machine: {cpu}, {cpus} logical CPUs (shared with other work)\n"
    ));
    s.push_str(&format!(
        "- Emulator: {emulator}, TCG (this machine's /dev/kvm cannot run Xen or Linux), \
         the same configuration for both\n"
    ));
    s.push_str(&format!("- Oxen: commit {commit}{dirty}\n"));
    match (xen, xen_missing) {
        (Some(x), _) => s.push_str(&format!(
            "- Xen: {} (Debian's, fetched with `apt-get download` into `target/xen-4.17/`, never committed)\n",
            x.version
        )),
        (None, Some(e)) => s.push_str(&format!("- Xen: not available in this run: {e}\n")),
        (None, None) => {}
    }
    s.push_str(&format!(
        "- Runs: {runs} boots of each hypervisor, alternating (Oxen, Xen, Oxen, ...)\n\n"
    ));
    s.push_str("## The table\n\n");
    s.push_str(&versus::markdown_table(cells));
    s.push_str(
        "\nEach figure is timed by the same `pv-bench` binary (`dom0-tools/src/bin/pv-bench.rs`) \
         running as Dom0: TSC cycles (`lfence; rdtsc; lfence`), the median of about 1000 \
         iterations in each boot (65 batches for the 512-PTE `mmu_update`) with the cost of an \
         empty timing pair subtracted; the table gives the median of those per-boot medians and \
         their spread (smallest-largest). Power-on is QEMU's start; Dom0's first console line is \
         pv-bench's first line on the serial console, by the host's clock; the hypervisor's own \
         clock is Oxen's `Dom0 first console line after N ms (TSC)` and, for Xen, the \
         `console_timestamps=boot` stamp of its last line before Dom0's first (it counts from \
         Xen's start, not from power-on). Under TCG the cycle counts move with the host's load; \
         the ratios are what count, and the guest-only `memcpy_4k` row shows how steady the \
         emulator was between the two.\n\n\
         **Speed-corrected.** On a shared host the emulator's speed changes by up to 2x from one \
         boot to the next (see the `memcpy_4k` row's spread), and within a boot too; a plain \
         ratio of medians then measures the host as much as the hypervisors. pv-bench times a \
         guest-only 4 KiB copy right after each figure (`ref=` in its BENCH line: the same guest \
         instructions on either hypervisor, slowed by the host just as much); the \
         speed-corrected column divides each figure by it, takes Oxen's run i over Xen's run i \
         (booted one after the other), and gives the median over those pairs (the upper middle \
         one for an even count). It is the column to read for \"at least as fast as Xen\"; the \
         `memcpy_4k` row, which it should put at 1.00, shows how close it comes.\n\n",
    );
    s.push_str("## Instructions per operation\n\n");
    if icount.len() <= 1 {
        s.push_str("(The -icount boots did not run.)\n\n");
    } else {
        s.push_str(
            "The same pv-bench, one more boot of each hypervisor under QEMU's `-icount \
             shift=0,sleep=off`: the guest's clock, and its TSC, then advance by one for each \
             instruction executed, so each figure is the instructions one operation takes \
             (the hypervisor's and the guest's few), the same in every run and on every host. \
             It weighs every instruction alike (a `syscall` or a CR3 write as much as an \
             `add`), so it is a second view beside the timings, not a replacement.\n\n\
             | figure | Oxen | Xen 4.17 | Oxen/Xen |\n|---|--:|--:|--:|\n",
        );
        for r in &icount[1..] {
            s.push_str(&format!("| {} | {} | {} | {} |\n", r[0], r[1], r[2], r[3]));
        }
        s.push('\n');
    }
    s.push_str("## Across domains, beside their floors\n\n");
    if cross.is_empty() {
        s.push_str("(xl-bench did not run: no cross-domain figures this time.)\n\n");
    } else {
        s.push_str(
            "Oxen only (Xen cannot run Oxen's toolstack Dom0, `xl-bench`, which drives these): \
             each figure beside the least the machine needs for the same thing, measured in the \
             same boot. TSC cycles, medians; from one boot of `xl-bench` with `domu-xsbench` as \
             its guest (`scripts/bench --only toolstack` prints them all), and the null \
             hypercall from the first Oxen boot above beside xen-core's bare `syscall`/`sysret` \
             pair.\n\n",
        );
        s.push_str("| figure | Oxen | floor | floor | x floor |\n|---|--:|---|--:|--:|\n");
        for r in cross {
            s.push_str(&format!(
                "| {} | {} cycles | {} | {} cycles | {} |\n",
                r[0], r[1], r[2], r[3], r[4]
            ));
        }
        s.push('\n');
    }
    s.push_str("## How it was produced\n\n");
    s.push_str(&format!(
        "`scripts/bench --only xen --runs {runs}`, which boots:\n\n"
    ));
    let rel = |c: &str| c.replace(&format!("{root}/"), "");
    if let Some(c) = oxen_cmd.map(rel) {
        s.push_str(&format!(
            "- Oxen (PVH, an Oxen module bundle with pv-bench as Dom0):\n\n      {c}\n\n"
        ));
    }
    if let Some(c) = xen_cmd.map(rel) {
        s.push_str(&format!(
            "- Xen (QEMU's Multiboot1 loader; pv-bench is the first module; Xen halts the \
             machine when Dom0 powers off, and the harness then stops QEMU):\n\n      {c}\n\n"
        ));
    }
    s.push_str(
        "The ABI test `pv_bench_runs_as_dom0_of_xen_4_17` (`tests/tests/boot.rs`) boots the same \
         way and checks that every figure is there.\n",
    );
    s.push_str(ABI_NOTES);
    s
}

/// What running Oxen's PV test kernels on Xen 4.17 found (kept by hand:
/// these are findings, not figures).
const ABI_NOTES: &str = "
## What the same kernels on Xen 4.17 showed (ABI notes)

`pv-bench` runs unchanged on both. Booting it and the other PV test kernels
as Dom0 of Debian's Xen 4.17.7 found these differences; the fixed ones are
on Oxen's side, each with a check that fails without the fix:

- Fixed: a one-shot timer already due when set (`set_timer_op`,
  `VCPUOP_set_singleshot_timer`) fires on the hypercall's return in Xen
  (its timer softirq runs before the return to the guest); Oxen waited for
  its next 1 ms tick (`timer_upcall` was some 500 times Xen's). pv-bench
  checks it.
- Fixed: Xen ignores `VCPU_SSHOTTMR_future` since 4.17.3 (no `-ETIME`);
  Oxen refused a past deadline. pv-events checks it.
- Fixed: setting a periodic timer ticks at once when a period has passed
  since its last tick (Xen's `vcpu_set_periodic_timer`); Oxen waited a
  period. pv-events checks it.
- `pv_test_kernels_pass_as_dom0_of_xen_4_17` boots pv-traps, pv-user,
  pv-events and pv-smp on Xen (with `dom0_max_vcpus=4` for pv-smp, as on
  Oxen): all pass. pv-sched passes on Xen too, but not always: its 1 s
  bound on a woken vCPU's wait for a CPU is tight for Xen under TCG on a
  loaded host (1021 ms once). pv-mm fails only on the `MMUEXT_SET_LDT`
  check below.
- Fixed: `XENMEM_memory_map` is `-ENOSYS` for Xen's PV Dom0 (no e820 is
  set for it; it reads the machine's with `XENMEM_machine_memory_map`);
  Oxen answered with one RAM entry. pv-mm checks it.
- Deliberate (docs/abi-deviations.md): `MMUEXT_SET_LDT` of a page mapped
  writable succeeds in Xen (LDT pages are validated when first used); Oxen
  checks the LDT at once and refuses it with `-EINVAL` (pv-mm).
- Deliberate (docs/abi-deviations.md): `SCHEDOP_shutdown` with an unknown
  reason is accepted by Xen (Dom0's then reboots the machine); Oxen
  answers `-EINVAL` (dom0-hostile).
- Not Oxen's: pv-privop's `int $0x81` #GP error code is QEMU 7.2's bug,
  which Xen passes through and Oxen works around.
";

/// Saves and restores a 256 MiB HVM guest through a file on Dom0's FAT
/// disk and prints the rates beside Dom0's own raw disk's.
fn lifecycle(images: &Images) -> Result<bool, String> {
    use bench::lifecycle as lc;
    use bench::storage as st;
    println!(
        "Save/restore benchmarks: {} (type = \"hvm\", memory = {} MiB) saved to and restored \
         from a file on Dom0's FAT32 disk ({} MiB), beside Dom0 driving a raw virtio-blk disk \
         ({} MiB) itself (disk-bench, 256 KiB requests, depth 1); one boot, PVH, TCG",
        lc::GUEST,
        lc::GUEST_MIB,
        lc::FAT_MIB,
        lc::RAW_MIB
    );
    let r = lc::run(images)?;
    let dom0_w = st::value(&r.log, "dom0", "seq_write_mb_s", 1);
    let dom0_r = st::value(&r.log, "dom0", "seq_read_mb_s", 1);
    let row = |a: &str, b: &str, c: &str, d: &str| println!("{a:<40} {b:>12} {c:>16} {d:>10}");
    row("figure", "Oxen", "Dom0's raw disk", "ratio");
    let mut ok = true;
    match lc::saved(&r.log) {
        Some((frames, kib, ms)) => {
            let mbs = kib * 1024 / 1000 / ms.max(1);
            let ratio = dom0_w.map_or("-".into(), |w| fmt_ratio(mbs, w));
            row(
                "xl save (MB/s of image written)",
                &format!("{mbs} MB/s"),
                &dom0_w.map_or("-".into(), |w| format!("{w} MB/s write")),
                &ratio,
            );
            println!("  {frames} frames, {kib} KiB in {ms} ms (pause to file written)");
        }
        None => ok = false,
    }
    match lc::restored(&r.log) {
        Some((frames, ms)) => {
            let mbs = frames * 4096 / 1000 / ms.max(1);
            let ratio = dom0_r.map_or("-".into(), |v| fmt_ratio(mbs, v));
            row(
                "xl restore (MB/s of guest memory)",
                &format!("{mbs} MB/s"),
                &dom0_r.map_or("-".into(), |v| format!("{v} MB/s read")),
                &ratio,
            );
            println!("  {frames} frames in {ms} ms (image read to domain built)");
        }
        None => ok = false,
    }
    println!(
        "reference: Dom0's own sequential I/O on a raw disk in the same boot; no Xen 4.17 \
         figure (no Xen on this machine)."
    );
    println!();
    println!(
        "Live migration: the same guest ({} MiB) moved between two Oxen machines (QEMU TCG, \
         -cpu max,-smap) over a virtual Ethernet of UDP datagrams on loopback, Dom0 to Dom0 \
         over TCP (smoltcp); idle (one page written a tick) and busy (rewriting its 8 MiB \
         working set all the time); then a {} MiB PV guest ({}), moved live too (PV \
         log-dirty mode; it suspends for the last round)",
        lc::GUEST_MIB,
        lc::PV_GUEST_MIB,
        lc::PV_GUEST
    );
    row("figure", "Oxen", "target", "ratio");
    let runs: [(&str, Option<u64>); 3] = [
        ("idle", Some(1)),
        ("busy", Some(2048)),
        ("PV, suspended", None),
    ];
    for (what, busy) in runs {
        let run = match busy {
            Some(b) => lc::migrate(images, b),
            None => lc::migrate_pv(images),
        };
        match run.map(|r| (lc::migrated(&r.log), r)) {
            Ok((Some((total, down)), r)) => {
                row(
                    &format!("migration downtime, {what}"),
                    &format!("{down} ms"),
                    "100 ms",
                    &fmt_ratio(down, 100),
                );
                row(
                    &format!("migration total time, {what}"),
                    &format!("{total} ms"),
                    "-",
                    "-",
                );
                if let Some(l) = r.log.lines().find(|l| l.contains("; downtime ")) {
                    println!("  {}", l.trim());
                }
            }
            Ok((None, r)) => {
                eprintln!("{}", r.report("the migration printed no figures"));
                ok = false;
            }
            Err(e) => {
                eprintln!("oxen-bench: migration ({what}): {e}");
                ok = false;
            }
        }
    }
    println!(
        "target: the issue's aim of a downtime under 100 ms for an idle guest (downtime: from \
         the source's pause to the target's report that its copy runs, so it includes the \
         last round, the vCPU and device state, building the domain and two round trips)."
    );
    if !ok {
        eprintln!(
            "{}",
            r.report("the save/restore benchmark did not print its figures")
        );
    }
    Ok(ok)
}

/// Boots bare-bench on plain QEMU, then as an HVM guest of Oxen, and
/// prints each figure beside its bare-metal reference.
fn hvm(images: &Images) -> Result<bool, String> {
    use bench::hvm;
    use oxen_tests::qemu::{DEFAULT_CPU, DEFAULT_MEM};
    println!(
        "HVM exit benchmarks: {} (a kernel written for bare metal) on plain QEMU and as an HVM \
         guest of Oxen, one run each; emulator: QEMU TCG (no KVM; {}), -cpu {DEFAULT_CPU} in \
         both (SVM with nested paging for Oxen)",
        hvm::KERNEL,
        hvm::emulator_version()
    );
    println!(
        "bare metal: qemu -kernel (PVH entry), -smp {}, -m {}M.  Oxen: PVH, -smp {} (Dom0 and \
         the guest take turns on one CPU), -m {DEFAULT_MEM}; the guest: type = \"hvm\" \
         (Multiboot2), vcpus = {}, memory = {}, xl create + xl console",
        hvm::GUEST_CPUS,
        hvm::MEM_MIB,
        hvm::OXEN_SMP,
        hvm::GUEST_CPUS,
        hvm::MEM_MIB
    );
    println!(
        "TSC cycles per round trip (QEMU TCG's TSC is the host's), median (minimum) of the \
         iterations; the timing floor is included in every figure"
    );
    println!();
    let bare = hvm::run_bare(images, Some(Echo::Quiet))?;
    let oxen = hvm::run_oxen(images, Echo::Quiet)?;
    let olog = &oxen.result.log;
    // Both runs read the host's TSC (TCG's; under Oxen plus the VMCB's
    // offset); the plain QEMU run's calibration against its PIT is the
    // steadier (nothing else runs there), so it converts to microseconds.
    let mhz = hvm::tsc_mhz(&bare.log);
    let row = |a: &str, b: &str, c: &str, d: &str, e: &str, f: &str| {
        println!("{a:<32} {b:>14} {c:>20} {d:>9} {e:>9}  {f}")
    };
    row(
        "figure",
        "bare metal",
        "Oxen HVM guest",
        "Oxen/bare",
        "Oxen us",
        "exit handled by (under Oxen)",
    );
    let show = |f: Option<hvm::Figure>| {
        f.map_or("not printed".to_string(), |f| {
            format!("{} ({})", f.median, f.min)
        })
    };
    for (id, what, handler) in hvm::FIGURES {
        let b = hvm::figure(&bare.log, id);
        let o = hvm::figure(olog, id);
        let ratio = match (b, o) {
            (Some(b), Some(o)) => fmt_ratio(o.median, b.median),
            _ => "-".into(),
        };
        let us = match (o, mhz) {
            (Some(o), Some(m)) => format!("{:.2}", o.median as f64 / m as f64),
            _ => "-".into(),
        };
        row(what, &show(b), &show(o), &ratio, &us, handler.describe());
    }
    println!();
    let iters = hvm::figure(&bare.log, "hvm_cpuid_cycles").map_or(0, |f| f.n);
    let rate = |log: &str| hvm::tsc_mhz(log).map_or("?".into(), |v| v.to_string());
    println!(
        "{iters} timed round trips per figure after {} untimed, between lfence;rdtsc;lfence and \
         rdtscp;lfence (lfence;rdtsc;lfence without RDTSCP). The TSC's rate as the kernel \
         measured it against the PIT: bare metal {} MHz (the us column uses it), Oxen guest \
         {} MHz.",
        hvm::WARMUP,
        rate(&bare.log),
        rate(olog)
    );
    println!(
        "The CPU as the kernel saw it: bare metal {}; Oxen guest {}.",
        hvm::cpu(&bare.log).unwrap_or("not printed"),
        hvm::cpu(olog).unwrap_or("not printed")
    );
    println!(
        "The TSC's resolution: bare metal {}; Oxen guest {}.",
        hvm::resolution(&bare.log).unwrap_or("not printed"),
        hvm::resolution(olog).unwrap_or("not printed")
    );
    println!(
        "A figure within a TSC step or two of the floor is at what the TSC resolves here (on \
         plain QEMU, cpuid is a TCG helper call that takes less): its Oxen/bare ratio is then a \
         lower bound."
    );
    println!(
        "Oxen's figures are one QEMU thread's; when the host is busy the medians grow with its \
         load (the minimum and p10 below move far less)."
    );
    println!("Spread (TSC cycles, nearest-rank percentiles):");
    for (id, _, _) in hvm::FIGURES {
        for (who, log) in [
            ("bare metal", bare.log.as_str()),
            ("Oxen guest", olog.as_str()),
        ] {
            println!(
                "  {id:<24} {who:<11} {}",
                hvm::spread(log, id).unwrap_or("not printed")
            );
        }
    }
    println!(
        "bare metal: QEMU itself handles cpuid (a TCG helper) and both ports (its port B and \
         its 16550): no world switch. Oxen: cpuid and port 0x61 are a #VMEXIT to xen-core, \
         handled there (its CPUID policy; the virtual PIT's port B), then VMRUN; COM1's LSR is \
         a #VMEXIT, an ioreq to Dom0's device model (an event to Dom0, its 16550 model answers, \
         an event back), then VMRUN. Under TCG the world switch is emulated too: these are \
         emulator cycles, not silicon's."
    );
    println!(
        "reference: the same kernel on plain QEMU in the same run; no Xen 4.17 figure (no Xen \
         on this machine)."
    );
    let bare_problems = hvm::problems(&bare.log);
    let mut problems: Vec<String> = bare_problems
        .iter()
        .map(|p| format!("bare metal: {p}"))
        .collect();
    problems.extend(
        hvm::problems(olog)
            .into_iter()
            .map(|p| format!("Oxen guest: {p}")),
    );
    if !oxen.ok {
        problems.push(format!("the Oxen run: {}", oxen.why));
    }
    if problems.is_empty() {
        return Ok(true);
    }
    if !bare_problems.is_empty() {
        eprintln!("{}", bare.report("the bare-metal run"));
    }
    eprintln!(
        "{}",
        oxen.result.report(&format!(
            "the HVM benchmark did not get every figure: {}",
            problems.join("; ")
        ))
    );
    Ok(false)
}

/// Boots Dom0 with a virtio disk once and prints a guest's disk figures
/// (through blkfront, blkback, grant copies) beside Dom0's own on it.
fn storage(images: &Images) -> Result<bool, String> {
    use bench::storage as st;
    println!(
        "Storage benchmarks: {} (mode=bench) through blkback beside Dom0 driving the same \
         virtio-blk disk ({} MiB raw image), one boot, PVH, -smp {}, -m {}, -cpu {}, TCG",
        st::GUEST,
        st::DISK_MIB,
        oxen_tests::qemu::DEFAULT_SMP,
        oxen_tests::qemu::DEFAULT_MEM,
        oxen_tests::qemu::DEFAULT_CPU
    );
    println!();
    let r = st::run(images, Some(Echo::Quiet))?;
    println!(
        "{:<44} {:>10} {:>10} {:>12}  (target: guest >= 0.90x Dom0)",
        "figure", "Dom0", "guest", "guest/Dom0"
    );
    let mut ok = true;
    for &depth in st::DEPTHS {
        for (id, what, unit) in st::FIGURES {
            let d = st::value(&r.log, "dom0", id, depth);
            let g = st::value(&r.log, "guest", id, depth);
            let show = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{v} {unit}"));
            let ratio = match (d, g) {
                (Some(d), Some(g)) if d > 0 => format!("{:.2}", g as f64 / d as f64),
                _ => {
                    ok = false;
                    "-".into()
                }
            };
            let what = format!("{what}, depth {depth}");
            println!("{what:<44} {:>10} {:>10} {ratio:>12}", show(d), show(g));
        }
    }
    println!();
    println!(
        "Both issue the same requests with the same number in flight, the depth ({} in turn) \
         (256 KiB sequential over the first 32 MiB, each one request: the guest's an indirect \
         one of 64 segments; then 4 KiB random reads for 1 s). Dom0 keeps its requests on the \
         virtqueue; the guest keeps them on its ring (blkfront submit/poll/complete), and \
         blkback gives each to Dom0's driver as it comes off the ring and answers each as it \
         completes (persistent grants; the disk's DMA goes straight to and from the \
         guest's granted pages, no copy in Dom0). Neither copies data per request on its own side: Dom0 reads into and \
         writes from its own buffers, the guest uses blkfront's granted pages in place \
         (submit_in_place/complete_in_place), and neither looks at the data.",
        st::DEPTHS
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    // What blkback did for the guest's whole run (requests, how many went
    // in place, how often it woke and notified the guest).
    for l in r.log.lines().filter(|l| l.contains("closed after")) {
        if let Some(i) = l.find("blkback d") {
            println!("Dom0: {}", &l[i..]);
        }
    }
    if !ok {
        eprintln!(
            "oxen-bench: storage: not every figure was printed:\n{}",
            r.log
        );
    }
    Ok(ok)
}

/// Boots Oxen once with two domu-net guests and prints the network table.
fn network(images: &Images) -> Result<bool, String> {
    use bench::network as net;
    println!(
        "Network benchmarks: two {} guests on Dom0's bridge xenbr0 (netfront -> netback -> \
         bridge -> netback -> netfront), one boot, PVH, -smp {}, -m {}, -cpu {}, TCG",
        net::GUEST,
        oxen_tests::qemu::DEFAULT_SMP,
        oxen_tests::qemu::DEFAULT_MEM,
        oxen_tests::qemu::DEFAULT_CPU
    );
    println!();
    let out = net::run(images, Echo::Quiet)?;
    let log = &out.result.log;
    let f = |name: &str, key: &str| net::figure(log, name, key);
    let row = |a: &str, b: &str, c: &str| println!("{a:<58} {b:>16}  {c:>9}");
    row("figure", "value", "x floor");
    let (tcp, mem) = (f("tcp_send", "mbit_s"), f("memcpy", "mbit_s"));
    let mbit = |v: Option<f64>| v.map_or("not printed".into(), |v| format!("{v:.1} Mbit/s"));
    row(
        &format!(
            "guest -> guest TCP, {} MiB (smoltcp, MSS 1460)",
            net::BYTES >> 20
        ),
        &mbit(tcp),
        &match (tcp, mem) {
            (Some(t), Some(m)) if m > 0.0 => format!("{:.4}", t / m),
            _ => "-".into(),
        },
    );
    row(
        "  floor: memcpy of as many bytes in the sending guest",
        &mbit(mem),
        "1.00",
    );
    let us = |key: &str| {
        f("ping_rtt", key).map_or("not printed".into(), |v| format!("{:.3} ms", v / 1000.0))
    };
    row(
        &format!(
            "ping round trip, median of {} (one in flight)",
            f("ping_rtt", "count").unwrap_or(0.0)
        ),
        &us("median_us"),
        "",
    );
    row("ping round trip, min", &us("min_us"), "");
    row("ping round trip, max", &us("max_us"), "");
    println!();
    println!(
        "Each frame is grant-copied twice (guest -> Dom0 -> guest) by netback and switched \
         by the learning bridge; Dom0 and both guests share the machine's CPUs. No Xen figure: \
         there is no Xen on this machine."
    );
    let complete = tcp.is_some() && mem.is_some() && f("ping_rtt", "median_us").is_some();
    if out.ok && complete {
        return Ok(true);
    }
    eprintln!(
        "{}",
        out.result.report(&format!(
            "the network benchmark did not finish ({}; figures {})",
            out.why,
            if complete { "complete" } else { "missing" }
        ))
    );
    Ok(false)
}

/// Boots xl-bench once and prints the toolstack table.
fn toolstack(images: &Images) -> Result<bool, String> {
    use bench::toolstack as ts;
    println!(
        "Toolstack benchmarks: {} as Dom0 ({} as its guest), one boot, PVH, -smp {}, -m {}, -cpu {}, TCG",
        ts::KERNEL,
        ts::GUEST,
        ts::SMP,
        oxen_tests::qemu::DEFAULT_MEM,
        oxen_tests::qemu::DEFAULT_CPU
    );
    println!(
        "TSC cycles (timing overhead subtracted) and ms, median and minimum; each figure beside \
         its floor from the same boot"
    );
    println!();
    let r = ts::run(images, Some(Echo::Quiet))?;
    let figures = bench::figures(&r.log);
    let find = |id: &str| {
        figures.iter().find_map(|f| match f {
            bench::Figure::Measured { name, median, .. } if name == id => Some(*median),
            _ => None,
        })
    };
    let row = |a: &str, b: &str, c: &str, d: &str, e: &str, f: &str| {
        println!("{a:<66} {b:>11} {c:>11} {d:>5} {e:>10}  {f:>7}")
    };
    row("figure", "median", "min", "iters", "median ms", "x floor");
    for (id, what, floor) in ts::FIGURES {
        let label = match floor {
            Some(_) => format!("{what} [{id}]"),
            None => format!("  floor: {what} [{id}]"),
        };
        match figures.iter().find(|f| f.name() == *id) {
            Some(bench::Figure::Measured {
                median,
                min,
                iters,
                ns,
                ..
            }) => {
                let ratio = match floor {
                    Some(fl) => find(fl).map_or("-".into(), |f| fmt_ratio(*median, f)),
                    None => "1.00".into(),
                };
                row(
                    &label,
                    &median.to_string(),
                    &min.to_string(),
                    &iters.to_string(),
                    &ns.map_or("-".into(), |(m, _)| format!("{:.3}", m as f64 / 1e6)),
                    &ratio,
                );
            }
            Some(bench::Figure::NotAvailable { why, .. }) => println!("{label:<66} n/a ({why})"),
            Some(bench::Figure::Garbled { line, .. }) => {
                println!("{label:<66} unreadable: {line:?}")
            }
            None => println!("{label:<66} not printed"),
        }
    }
    println!();
    println!(
        "floors: the domain builder alone building the same guest (paused, never run); \
         XEN_DOMCTL_destroydomain alone of such a domain; an event channel send to self until \
         its handler ran, in the guest that times xenstore (a ring request's round trip is two \
         events plus the daemon's work)."
    );
    println!(
        "xl create is timed from the call to the first line in the console back-end's backlog, \
         the back ends running as in Dom0's shell; xl destroy destroys the running guest."
    );
    let problems = ts::problems(&r);
    if problems.is_empty() {
        return Ok(true);
    }
    eprintln!(
        "{}",
        r.report(&format!(
            "{} did not report every figure: {}",
            ts::KERNEL,
            problems.join("; ")
        ))
    );
    Ok(false)
}

/// Boots pv-bench once and prints the microbenchmark table.
fn micro(images: &Images) -> Result<bool, String> {
    println!(
        "PV microbenchmarks: {} as Dom0, one boot, PVH, -smp {}, -m {}, -cpu {}, TCG",
        bench::KERNEL,
        bench::SMP,
        oxen_tests::qemu::DEFAULT_MEM,
        oxen_tests::qemu::DEFAULT_CPU
    );
    println!("TSC cycles, median and minimum of the iterations, timing overhead subtracted");
    println!();
    let r = bench::run(images, Some(Echo::Quiet))?;
    let floor = bench::floor(&r.log);
    let row = |a: &str, b: &str, c: &str, d: &str, e: &str| {
        println!("{a:<60} {b:>9} {c:>9} {d:>6}  {e:>8}")
    };
    row("figure", "median", "min", "iters", "x floor");
    let ratio = |v: u64| floor.map_or("-".to_string(), |f| fmt_ratio(v, f.median));
    match floor {
        Some(f) => row(
            "bare syscall/sysret pair (floor, xen-core)",
            &f.median.to_string(),
            &f.min.to_string(),
            &f.shape.map_or("-".into(), |(n, k)| format!("{n}x{k}")),
            &fmt_ratio(f.median, f.median),
        ),
        None => row(
            "bare syscall/sysret pair (floor, xen-core)",
            "missing",
            "-",
            "-",
            "-",
        ),
    }
    let figures = bench::figures(&r.log);
    let median_of = |id: &str| {
        figures.iter().find_map(|f| match f {
            bench::Figure::Measured { name, median, .. } if name == id => Some(*median),
            _ => None,
        })
    };
    for (id, what) in bench::FIGURES {
        let own = bench::OWN_FLOORS
            .iter()
            .find(|(f, _)| f == id)
            .map(|&(_, fl)| fl);
        let local_floor = bench::LOCAL_FLOORS.contains(id);
        let label = if local_floor {
            format!("  floor: {what} [{id}]")
        } else if let Some(fl) = own {
            format!("{what} [{id}] (x {fl})")
        } else {
            format!("{what} [{id}]")
        };
        let ratio = |v: u64| match own {
            _ if local_floor => fmt_ratio(v, v),
            Some(fl) => median_of(fl).map_or("-".to_string(), |f| fmt_ratio(v, f)),
            None => ratio(v),
        };
        match figures.iter().find(|f| f.name() == *id) {
            Some(bench::Figure::Measured {
                median,
                min,
                iters,
                batch,
                ..
            }) => {
                row(
                    &label,
                    &median.to_string(),
                    &min.to_string(),
                    &iters.to_string(),
                    &ratio(*median),
                );
                if let Some((n, unit)) = batch {
                    row(
                        &format!("  per {unit} (batch / {n})"),
                        &(median / n).to_string(),
                        &(min / n).to_string(),
                        "-",
                        &ratio(median / n),
                    );
                }
            }
            Some(bench::Figure::NotAvailable { why, .. }) => {
                println!("{label:<60} n/a ({why})")
            }
            Some(bench::Figure::Garbled { line, .. }) => {
                println!("{label:<60} unreadable: {line:?}")
            }
            None => println!("{label:<60} not printed"),
        }
    }
    match bench::hvm_cpuid(&r.log) {
        Some((median, min, exits)) => row(
            "HVM (SVM, nested paging): CPUID exit round trip [hvm_cpuid]",
            &median.to_string(),
            &min.to_string(),
            &exits.to_string(),
            &ratio(median),
        ),
        None => println!(
            "{:<60} n/a (no SVM self-test line: CPU without SVM+NPT?)",
            "HVM (SVM, nested paging): CPUID exit round trip [hvm_cpuid]"
        ),
    }
    println!();
    println!(
        "floor: a bare syscall/sysret pair, ring 3 -> ring 0 -> ring 3, timed by xen-core on \
         itself at boot in the same run (a PV guest cannot sysret)."
    );
    println!(
        "hvm_cpuid: xen-core's boot self-test times VMRUN -> CPUID #VMEXIT -> handled -> back \
         (a 32-bit guest under nested paging; QEMU TCG emulates SVM)."
    );
    println!(
        "grant figures (issue 4) are compared with a 4 KiB memcpy in the same guest instead: \
         Dom0 grants a frame to itself, maps and unmaps it, and copies it with GNTTABOP_copy."
    );
    println!(
        "reference: no Xen runs on this machine (issue 8), so there is no Xen figure here; \
         the ratio is to the floor only."
    );
    let problems = bench::problems(&r);
    if problems.is_empty() {
        return Ok(true);
    }
    eprintln!(
        "{}",
        r.report(&format!(
            "{} did not report every figure: {}",
            bench::KERNEL,
            problems.join("; ")
        ))
    );
    Ok(false)
}

/// `v / floor` with a sensible number of digits.
fn fmt_ratio(v: u64, floor: u64) -> String {
    if floor == 0 {
        return "-".into();
    }
    let r = v as f64 / floor as f64;
    if r >= 100.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.2}")
    }
}

fn bench(images: &Images, runs: usize) -> Result<bool, String> {
    let boot = OxenBoot::new(images.hypervisor()?, images.dom0()?)?;
    println!(
        "Oxen boot benchmark: {runs} boot(s), PVH (qemu -kernel), -smp {SMP}, -m {}, -cpu {}, TCG",
        oxen_tests::qemu::DEFAULT_MEM,
        oxen_tests::qemu::DEFAULT_CPU
    );
    println!();
    println!(
        "{:<5} {:>32} {:>24}  ended",
        "boot", "Dom0 first line (xen-core TSC)", "wall clock to VERDICT"
    );
    let mut firsts = Vec::new();
    let mut walls = Vec::new();
    for i in 1..=runs {
        let s = one_run(&boot, i)?;
        let f = s
            .first_line_ms
            .map_or("not printed".to_string(), |v| format!("{v:.3} ms"));
        let w = s.to_verdict.map_or("no verdict".to_string(), |d| {
            format!("{:.3} s", d.as_secs_f64())
        });
        println!("{i:<5} {f:>32} {w:>24}  {}", s.ended);
        firsts.extend(s.first_line_ms);
        walls.extend(s.to_verdict.map(|d| d.as_secs_f64()));
    }
    println!();
    let row = |a: &str, b: &str, c: &str, d: &str| println!("{a:<38} {b:>12}  {c:>10}  {d}");
    row(
        &format!("figure (median of {runs})"),
        "Oxen",
        "reference",
        "ratio Oxen/reference",
    );
    let first = "time to Dom0's first console line";
    let reference = format!("~{REFERENCE_FIRST_LINE_MS:.0} ms");
    match median(&firsts) {
        Some(ms) => row(
            first,
            &format!("{ms:.3} ms"),
            &reference,
            &format!("{:.3}", ms / REFERENCE_FIRST_LINE_MS),
        ),
        None => row(first, "not printed", &reference, "-"),
    }
    let wall = "wall clock, QEMU start to VERDICT";
    match median(&walls) {
        Some(s) => row(wall, &format!("{s:.3} s"), "-", "-"),
        None => row(wall, "no verdict", "-", "-"),
    }
    println!();
    println!("reference: {REFERENCE_NOTE}");
    if firsts.is_empty() {
        println!(
            "note: xen-core printed no `{FIRST_LINE_MARKER}N.NNN ms (TSC)` line: no Oxen figure"
        );
    }
    Ok(walls.len() == runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_tsc_line() {
        let log =
            "Oxen 0.1.0 (Xen 4.17 ABI)\n(XEN) Dom0 first console line after 123.456 ms (TSC)\n";
        assert_eq!(first_line_ms(log), Some(123.456));
        assert_eq!(
            first_line_ms("Dom0 first console line after 7 ms (TSC)"),
            Some(7.0)
        );
        assert_eq!(first_line_ms("Dom0 first console line after soon"), None);
        assert_eq!(first_line_ms("Dom0 first console line after 5 s"), None);
        assert_eq!(first_line_ms(""), None);
    }

    #[test]
    fn ratios() {
        assert_eq!(fmt_ratio(354, 177), "2.00");
        assert_eq!(fmt_ratio(45940, 177), "260");
        assert_eq!(fmt_ratio(5, 0), "-");
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0]), Some(2.5));
    }
}
