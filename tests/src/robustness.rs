//! Issue 8's robustness report: parses what the hostile fuzzing guests
//! print (the PV guest `domu-fuzz`, relayed by `dom0-fuzz`, and the HVM
//! fuzzing guest, relayed by `dom0-hvmfuzz`; both use the same format)
//! and writes `docs/ROBUSTNESS.md` from real runs
//! (`scripts/bench --only hostile`).
//!
//! The report format, one line each:
//!
//! ```text
//! fuzz: seed <S>
//! fuzz: class <class>: <N> calls; <answer>=<count> <answer>=<count> ...
//! fuzz: total <N> calls in <ms> ms
//! ```
//!
//! A boot may hold any number of runs (one per seed); a report may hold
//! any number of boots ([`Section`]s), each with a title.

use std::time::Duration;

use crate::boot::{OxenBoot, Payload};
use crate::images::{self, Images};
use crate::qemu::{Echo, RunResult};

/// The PV hostile test Dom0 (a `dom0-tools` binary).
pub const PV_KERNEL: &str = "dom0-fuzz";
/// The HVM one (the HVM fuzzing guest's Dom0), when the images have it.
pub const HVM_KERNEL: &str = "dom0-hvmfuzz";

/// Boots test Dom0 `kernel` (with its ramdisk files and hypervisor
/// options from [`images`]) with Dom0 command line `cmdline` (e.g.
/// `seed=S calls=N runs=R`), on the harness's default machine (with the
/// kernel's own CPU count and accelerator, if it has them), and returns
/// the run. `OXEN_KEEP_WORK=1` keeps the boot's work directory (its
/// ramdisk, to boot the same machine again by hand).
pub fn boot(
    images: &Images,
    kernel: &str,
    cmdline: &str,
    timeout: Duration,
    echo: Echo,
) -> Result<RunResult, String> {
    let mut boot = OxenBoot::new(images.hypervisor()?, images.get(kernel)?)?;
    let mut files = crate::boot::standard_files(images);
    files.extend(crate::boot::kernel_files(
        images,
        images::kernel_files_of(kernel),
    )?);
    boot.ramdisk = Some(Payload::Bytes(crate::boot::dom0_ramdisk_with(&[], &files)?));
    boot.dom0_cmdline = cmdline.to_string();
    if let Some(k) = images::test_kernel(kernel) {
        let opts = k.hypervisor_options();
        if !opts.is_empty() {
            boot.append = format!("{} {opts}", boot.append);
        }
    }
    let work = images::work_dir(&format!("{kernel}-bench")).map_err(|e| e.to_string())?;
    let mut q = boot.qemu(kernel, &work)?.echo(echo);
    if let Some(k) = images::test_kernel(kernel) {
        q = k.machine(q);
    }
    let m = q.spawn().map_err(|e| e.to_string())?;
    let r = m.wait_exit(timeout);
    images::done_with_work_dir(&work);
    Ok(r)
}

/// One class of one run: how many calls, and how they were answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassTally {
    /// The class (`random`, `mmu`, `io`, ...).
    pub class: String,
    /// Calls counted.
    pub calls: u64,
    /// `(answer, count)`, as printed (`ok`, `-EINVAL`, `GNTST_bad_handle`,
    /// `fatal-skipped`).
    pub answers: Vec<(String, u64)>,
}

/// One fuzz run (one seed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuzzRun {
    /// Its seed.
    pub seed: u64,
    /// Its classes, in the order printed.
    pub classes: Vec<ClassTally>,
    /// Its total line: (calls, ms), if it got that far.
    pub total: Option<(u64, u64)>,
}

/// Parses one class line's rest (`<class>: <N> calls; a=n b=m`).
pub fn parse_class(rest: &str) -> Option<ClassTally> {
    let (class, rest) = rest.split_once(": ")?;
    let (calls, answers) = rest.split_once(" calls;")?;
    let calls = calls.trim().parse().ok()?;
    let answers = answers
        .split_whitespace()
        .map(|a| {
            let (k, v) = a.rsplit_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(ClassTally {
        class: class.to_string(),
        calls,
        answers,
    })
}

/// Every run in a console log, in order. A run starts at its seed line;
/// class and total lines outside a run are ignored.
pub fn parse_runs(log: &str) -> Vec<FuzzRun> {
    let mut runs: Vec<FuzzRun> = Vec::new();
    let mut open = false;
    for line in log.lines() {
        let Some(rest) = line.trim().strip_prefix("fuzz: ") else {
            continue;
        };
        if let Some(seed) = rest.strip_prefix("seed ") {
            if let Ok(seed) = seed.trim().parse() {
                runs.push(FuzzRun {
                    seed,
                    classes: Vec::new(),
                    total: None,
                });
                open = true;
            }
        } else if let Some(c) = rest.strip_prefix("class ") {
            if let (true, Some(run), Some(t)) = (open, runs.last_mut(), parse_class(c)) {
                run.classes.push(t);
            }
        } else if let Some(t) = rest.strip_prefix("total ") {
            let mut w = t.split_whitespace();
            let calls = w.next().and_then(|v| v.parse().ok());
            let ms = w.nth(2).and_then(|v| v.parse().ok());
            if let (true, Some(run), Some(calls), Some(ms)) = (open, runs.last_mut(), calls, ms) {
                run.total = Some((calls, ms));
                open = false;
            }
        }
    }
    runs
}

/// One check line of a test kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// Whether it passed.
    pub ok: bool,
    /// Its detail (the figures it was judged on).
    pub detail: String,
}

/// A test kernel's check lines (`<kernel>: <what>: ok (detail)` or
/// `<kernel>: <what>: FAILED: detail`), in order.
pub fn parse_checks(log: &str, kernel: &str) -> Vec<Check> {
    let prefix = format!("{kernel}: ");
    log.lines()
        .filter_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .filter_map(|r| {
            if let Some(i) = r.find(": FAILED") {
                let detail = r[i + 8..].trim_start_matches(':').trim();
                Some(Check {
                    what: r[..i].to_string(),
                    ok: false,
                    detail: detail.to_string(),
                })
            } else if let Some(i) = r.rfind(": ok") {
                let after = &r[i + 4..];
                (after.is_empty() || after.starts_with(" (")).then(|| Check {
                    what: r[..i].to_string(),
                    ok: true,
                    detail: after
                        .trim()
                        .strip_prefix('(')
                        .and_then(|d| d.strip_suffix(')'))
                        .unwrap_or("")
                        .to_string(),
                })
            } else {
                None
            }
        })
        .collect()
}

/// The hypervisor's console lines that tell of a crash of the
/// hypervisor itself.
pub fn hypervisor_panics(log: &str) -> usize {
    log.lines()
        .filter(|l| l.starts_with("(XEN)"))
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("panic") || l.contains("fatal trap") || l.contains("assertion")
        })
        .count()
}

/// Domains the hypervisor crashed, by id (`domain crash: dNvM`).
pub fn domain_crashes(log: &str) -> Vec<u32> {
    log.lines()
        .filter_map(|l| l.split("domain crash: d").nth(1))
        .filter_map(|r| r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .collect()
}

/// One boot of a hostile test kernel, as the report shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// Its title (`PV guest (dom0-fuzz + domu-fuzz), 3 seeds`).
    pub title: String,
    /// How it was booted (the command, options).
    pub how: String,
    /// Its fuzz runs.
    pub runs: Vec<FuzzRun>,
    /// Its Dom0's check lines.
    pub checks: Vec<Check>,
    /// How the boot ended (`Dom0 powered off`, `timed out`).
    pub ended: String,
    /// The hypervisor crashed: a panic line, or the machine did not end
    /// with Dom0's verdict.
    pub hypervisor_crashes: usize,
    /// Dom0 crashed (the hypervisor crashed d0, or Dom0 never said its
    /// verdict).
    pub dom0_crashes: usize,
    /// Guests the hypervisor crashed (the fuzzers' own legitimate
    /// punishments among them).
    pub guest_crashes: usize,
    /// Whether a check about the canary failed; `None`: no canary.
    pub canary_disturbed: Option<bool>,
}

impl Section {
    /// Builds a section from a boot's console log: `kernel` is the test
    /// Dom0 whose check lines are read, `clean_end` whether the machine
    /// powered off after a `VERDICT:` line.
    pub fn from_log(
        title: &str,
        how: &str,
        kernel: &str,
        log: &str,
        ended: &str,
        clean_end: bool,
    ) -> Section {
        let checks = parse_checks(log, kernel);
        let crashed = domain_crashes(log);
        let canary: Vec<&Check> = checks
            .iter()
            .filter(|c| c.what.contains("canary"))
            .collect();
        let panics = hypervisor_panics(log);
        let verdict = log.lines().any(|l| l.starts_with("VERDICT:"));
        Section {
            title: title.to_string(),
            how: how.to_string(),
            runs: parse_runs(log),
            ended: ended.to_string(),
            hypervisor_crashes: panics + usize::from(panics == 0 && !clean_end),
            dom0_crashes: crashed.iter().filter(|&&d| d == 0).count()
                + usize::from(!verdict && crashed.iter().all(|&d| d != 0)),
            guest_crashes: crashed.iter().filter(|&&d| d != 0).count(),
            canary_disturbed: (!canary.is_empty()).then(|| canary.iter().any(|c| !c.ok)),
            checks,
        }
    }

    /// Calls made in all its runs.
    pub fn calls(&self) -> u64 {
        self.runs.iter().filter_map(|r| r.total.map(|t| t.0)).sum()
    }

    /// The class names its runs tried, in first-seen order.
    pub fn classes(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for c in self.runs.iter().flat_map(|r| &r.classes) {
            if !v.contains(&c.class) {
                v.push(c.class.clone());
            }
        }
        v
    }

    /// Whether every check passed and every run reached its total.
    pub fn passed(&self) -> bool {
        !self.checks.is_empty()
            && self.checks.iter().all(|c| c.ok)
            && !self.runs.is_empty()
            && self.runs.iter().all(|r| r.total.is_some())
            && self.hypervisor_crashes == 0
            && self.dom0_crashes == 0
    }
}

/// What the report says about where and how it was made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// When (UTC).
    pub date: String,
    /// The machine (CPU, logical CPUs).
    pub machine: String,
    /// The emulator and its acceleration.
    pub emulator: String,
    /// Oxen's commit.
    pub commit: String,
    /// The cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`).
    pub fuzz_targets: Vec<String>,
    /// The named regression tests for Xen's security advisories (`fn
    /// xsa_NNN_...` in the sources), see [`xsa_tests`].
    pub xsa_tests: Vec<String>,
}

/// The names of the `xsa_NNN_...` test functions in Rust source `text`.
pub fn xsa_tests(text: &str) -> Vec<String> {
    text.split("fn xsa_")
        .skip(1)
        .filter_map(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            name.starts_with(|c: char| c.is_ascii_digit())
                .then(|| format!("xsa_{name}"))
        })
        .collect()
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// What a class of the PV fuzzing guest (`dom0_tools::hostile::gen`)
/// throws at the hypervisor.
pub fn class_description(class: &str) -> Option<&'static str> {
    Some(match class {
        "random" => {
            "random hypercall numbers (0..64, and far beyond), sub-ops and arguments: small \
             numbers, boundaries, random bits, pointers into the hypervisor's range, \
             non-canonical, unmapped, into the guest's own (read-only) page tables and into \
             a scratch buffer followed by an unmapped guard page"
        }
        "mmu" => {
            "crafted `mmu_update` / `update_va_mapping` / `mmuext_op`: foreign frames \
             (guessed machine frames, the hypervisor's own), self-maps, L1..L4 type confusion \
             (pins of crafted frames and of the guest's own tables at the wrong level), \
             writable maps of page tables, recursive and hypervisor-slot L4 entries, \
             pin/unpin misuse, bad counts and request pointers, `MMUEXT_SET_LDT`, \
             `CLEAR_PAGE`/`COPY_PAGE` of tables and foreign frames"
        }
        "grant" => {
            "bad references, maps of the guest's own and of other domains' references at \
             good and bad addresses (`GNTMAP_contains_pte` too), double unmaps and random \
             handles, `setup_table` with bad sizes, domains and frame lists, copies with bad \
             offsets and lengths, other sub-ops with junk; meanwhile the guest's second vCPU \
             rewrites the granted entries (ends access, flips flags) under the first's maps \
             and unmaps: a revocation race"
        }
        "evtchn" => {
            "port exhaustion (`alloc_unbound` until `-ENOSPC`), binds to other domains' \
             ports, sends/closes/unmasks/status of closed and out-of-range ports, \
             `bind_virq` and `bind_ipi` with bad VIRQs and vCPUs, `bind_vcpu`, \
             `set_priority`, FIFO `init_control` and `expand_array` with bad frames, \
             `reset` of other domains"
        }
        _ => return None,
    })
}

/// `docs/ROBUSTNESS.md`.
pub fn markdown(meta: &Meta, sections: &[Section]) -> String {
    let mut s = String::new();
    s.push_str("# Robustness: hostile guests\n\n");
    s.push_str(
        "Written by `scripts/bench --only hostile` (also part of a full `scripts/bench`) from \
         the runs below; nobody edits these numbers by hand: run it again instead. Every \
         figure and verdict here is read from the runs' console logs.\n\n",
    );
    s.push_str(&format!("- Date: {}\n", meta.date));
    s.push_str(&format!("- Machine: {}\n", meta.machine));
    s.push_str(&format!("- Emulator: {}\n", meta.emulator));
    s.push_str(&format!("- Oxen: commit {}\n\n", meta.commit));
    let calls: u64 = sections.iter().map(Section::calls).sum();
    let runs: usize = sections.iter().map(|x| x.runs.len()).sum();
    let hv: usize = sections.iter().map(|x| x.hypervisor_crashes).sum();
    let d0: usize = sections.iter().map(|x| x.dom0_crashes).sum();
    let gc: usize = sections.iter().map(|x| x.guest_crashes).sum();
    let canary = sections
        .iter()
        .filter_map(|x| x.canary_disturbed)
        .fold(None, |a: Option<bool>, d| Some(a.unwrap_or(false) || d));
    s.push_str("## Summary\n\n");
    s.push_str(&format!(
        "- Calls made: {calls} in {runs} run(s)\n- Hypervisor crashes: {hv}\n- Dom0 crashes: {d0}\n"
    ));
    s.push_str(&format!(
        "- Canary disturbed: {}\n",
        canary.map_or("no canary in these runs", yes_no)
    ));
    s.push_str(&format!(
        "- Fuzzing guests the hypervisor crashed (legitimately, as Xen would): {gc}\n\n"
    ));
    s.push_str(
        "| boot | runs (seeds) | calls made | classes tried | hypervisor crashes | Dom0 crashes | canary disturbed | checks |\n",
    );
    s.push_str("|---|---|---:|---|---:|---:|---|---|\n");
    for x in sections {
        let seeds: Vec<String> = x.runs.iter().map(|r| r.seed.to_string()).collect();
        let failed = x.checks.iter().filter(|c| !c.ok).count();
        s.push_str(&format!(
            "| {} | {} ({}) | {} | {} | {} | {} | {} | {} of {} passed |\n",
            x.title,
            x.runs.len(),
            seeds.join(", "),
            x.calls(),
            x.classes().join(", "),
            x.hypervisor_crashes,
            x.dom0_crashes,
            x.canary_disturbed.map_or("-", yes_no),
            x.checks.len() - failed,
            x.checks.len()
        ));
    }
    s.push('\n');
    for x in sections {
        s.push_str(&format!("## {}\n\n", x.title));
        s.push_str(&format!("{}\n\nThe boot ended: {}.\n\n", x.how, x.ended));
        for r in &x.runs {
            match r.total {
                Some((calls, ms)) => s.push_str(&format!(
                    "### Seed {}: {calls} calls in {:.1} s\n\n",
                    r.seed,
                    ms as f64 / 1000.0
                )),
                None => s.push_str(&format!("### Seed {}: did not finish\n\n", r.seed)),
            }
            s.push_str("| class | calls | answers (count) |\n|---|---:|---|\n");
            for c in &r.classes {
                let mut a = c.answers.clone();
                a.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
                let a: Vec<String> = a.iter().map(|(k, v)| format!("`{k}` {v}")).collect();
                s.push_str(&format!(
                    "| {} | {} | {} |\n",
                    c.class,
                    c.calls,
                    a.join(", ")
                ));
            }
            s.push('\n');
        }
        if !x.checks.is_empty() {
            s.push_str("Checks (in the order made):\n\n");
            for c in &x.checks {
                let detail = if c.detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", c.detail)
                };
                s.push_str(&format!(
                    "- {}: {}{detail}\n",
                    if c.ok { "ok" } else { "**FAILED**" },
                    c.what
                ));
            }
            s.push('\n');
        }
    }
    s.push_str("## The classes\n\n");
    s.push_str(
        "An answer is what the hypervisor returned: `ok` (success), Xen's error \
         (`-EINVAL`), a grant operation's status (`GNTST_bad_handle`), or `fatal-skipped`: \
         a call the generator drew that would legitimately end the fuzzing guest itself \
         (a shutdown, a new trap table, `VCPUOP_down` of its own vCPU, a grant mapped over \
         a live one, which Xen punishes by crashing the domain): counted, not made.\n\n",
    );
    let mut classes: Vec<String> = Vec::new();
    for c in sections.iter().flat_map(Section::classes) {
        if !classes.contains(&c) {
            classes.push(c);
        }
    }
    for c in classes {
        if let Some(d) = class_description(&c) {
            s.push_str(&format!("- `{c}`: {d}\n"));
        }
    }
    s.push('\n');
    s.push_str("## Fuzzing the host-side parsers\n\n");
    s.push_str(
        "Beside the hostile guests, every parser of guest or user input on the host side \
         has a cargo-fuzz target (`fuzz/`, run by `scripts/fuzz`; what they found is in \
         [fuzzing.md](fuzzing.md)):\n\n",
    );
    for t in &meta.fuzz_targets {
        s.push_str(&format!("- `{t}`\n"));
    }
    s.push('\n');
    if !meta.xsa_tests.is_empty() {
        s.push_str("## Regression tests for Xen's security advisories\n\n");
        s.push_str(&format!(
            "{} named tests, one per class of bug in Xen's published advisories that applies \
             to Oxen's design, each citing its advisory; the table of advisories, what each was \
             and what Oxen must do is [xsa.md](xsa.md). The boot kernel `dom0-xsa` checks the \
             ones that need the real hypervisor.\n\n",
            meta.xsa_tests.len()
        ));
        for t in &meta.xsa_tests {
            s.push_str(&format!("- `{t}`\n"));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
(XEN) [ 1.0] booting
domu-fuzz: seed 1, 200 calls
fuzz: seed 1
fuzz: class random: 80 calls; -EINVAL=30 -ENOSYS=40 fatal-skipped=10
fuzz: class mmu: 40 calls; -EBUSY=2 ok=38
fuzz: class grant: 0 calls;
fuzz: total 120 calls in 1500 ms
dom0-fuzz: the fuzzer made all its calls: ok (seed 1: Some(120) of 100)
dom0-fuzz: the canary's checksum is unchanged: ok (x)
fuzz: class stray: 5 calls; ok=5
fuzz: seed 2
fuzz: class io: 7 calls; ok=7
dom0-fuzz: the canary's heartbeat advanced while the fuzzer ran: FAILED: gap 12 s
dom0-fuzz: 3 checks, 1 failed
(XEN) domain crash: d3v0: attempt to implicitly unmap a granted PTE
VERDICT: FAILURE: x
";

    #[test]
    fn parses_runs_classes_and_totals() {
        let runs = parse_runs(LOG);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].seed, 1);
        assert_eq!(runs[0].total, Some((120, 1500)));
        assert_eq!(runs[0].classes.len(), 3);
        assert_eq!(
            runs[0].classes[0],
            ClassTally {
                class: "random".into(),
                calls: 80,
                answers: vec![
                    ("-EINVAL".into(), 30),
                    ("-ENOSYS".into(), 40),
                    ("fatal-skipped".into(), 10)
                ],
            }
        );
        assert_eq!(runs[0].classes[2].calls, 0);
        assert!(runs[0].classes[2].answers.is_empty());
        // The stray class line after a total belongs to no run.
        assert_eq!(runs[1].seed, 2);
        assert_eq!(runs[1].classes.len(), 1);
        assert_eq!(runs[1].total, None);
        assert_eq!(parse_class("x: nope"), None);
        assert_eq!(parse_class("x: 3 calls; a=b"), None);
    }

    #[test]
    fn parses_checks_and_crashes() {
        let c = parse_checks(LOG, "dom0-fuzz");
        let got: Vec<(&str, bool, &str)> = c
            .iter()
            .map(|c| (c.what.as_str(), c.ok, c.detail.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "the fuzzer made all its calls",
                    true,
                    "seed 1: Some(120) of 100"
                ),
                ("the canary's checksum is unchanged", true, "x"),
                (
                    "the canary's heartbeat advanced while the fuzzer ran",
                    false,
                    "gap 12 s"
                ),
            ]
        );
        assert_eq!(domain_crashes(LOG), vec![3]);
        assert_eq!(hypervisor_panics(LOG), 0);
        assert_eq!(hypervisor_panics("(XEN) PANIC on CPU0: x\n"), 1);
        // A guest's line that says panic is not the hypervisor's.
        assert_eq!(hypervisor_panics("fuzz: panic=3\n"), 0);
    }

    #[test]
    fn sections_derive_their_verdicts() {
        let s = Section::from_log("PV", "how", "dom0-fuzz", LOG, "Dom0 powered off", true);
        assert_eq!(s.calls(), 120);
        assert_eq!(s.classes(), ["random", "mmu", "grant", "io"]);
        assert_eq!(s.hypervisor_crashes, 0);
        assert_eq!(s.dom0_crashes, 0);
        assert_eq!(s.guest_crashes, 1);
        assert_eq!(s.canary_disturbed, Some(true));
        assert!(!s.passed());
        // A boot that did not end cleanly counts as a hypervisor crash;
        // no verdict line at all, as a Dom0 crash.
        let t = Section::from_log(
            "PV",
            "how",
            "dom0-fuzz",
            "fuzz: seed 1\n",
            "timed out",
            false,
        );
        assert_eq!((t.hypervisor_crashes, t.dom0_crashes), (1, 1));
        assert_eq!(t.canary_disturbed, None);
    }

    #[test]
    fn markdown_has_every_figure() {
        let meta = Meta {
            date: "2026-12-06".into(),
            machine: "cpu, 2 CPUs".into(),
            emulator: "QEMU 7.2".into(),
            commit: "abc".into(),
            fuzz_targets: vec!["xlcfg".into(), "xs_wire".into()],
            xsa_tests: xsa_tests("fn xsa_148_l2() {}\nfn xsa_x() {}\n    fn xsa_216_pad(w: u8) {}"),
        };
        assert_eq!(meta.xsa_tests, ["xsa_148_l2", "xsa_216_pad"]);
        let good = LOG.replace("FAILED: gap 12 s", "ok (gap 1 s)");
        let s = Section::from_log(
            "PV guest",
            "booted so",
            "dom0-fuzz",
            &good,
            "Dom0 powered off",
            true,
        );
        let md = markdown(&meta, &[s]);
        for want in [
            "# Robustness: hostile guests",
            "- Date: 2026-12-06",
            "- Oxen: commit abc",
            "- Calls made: 120 in 2 run(s)",
            "- Hypervisor crashes: 0",
            "- Dom0 crashes: 0",
            "- Canary disturbed: no",
            "| PV guest | 2 (1, 2) | 120 | random, mmu, grant, io | 0 | 0 | no | 3 of 3 passed |",
            "### Seed 1: 120 calls in 1.5 s",
            "| random | 80 | `-ENOSYS` 40, `-EINVAL` 30, `fatal-skipped` 10 |",
            "### Seed 2: did not finish",
            "- ok: the canary's checksum is unchanged (x)",
            "- `mmu`: crafted",
            "- `xs_wire`",
            "[fuzzing.md](fuzzing.md)",
            "2 named tests",
            "[xsa.md](xsa.md)",
            "- `xsa_216_pad`",
        ] {
            assert!(md.contains(want), "missing {want:?} in\n{md}");
        }
    }
}
