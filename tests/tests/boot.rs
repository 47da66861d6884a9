//! Boot tests: build the real images, boot them under QEMU (TCG), and assert
//! on the serial console and on the exit code.
//!
//! Every test has a timeout and fails on it; none passes on silence.  At most
//! two QEMUs run at once (`oxen_tests::qemu::max_qemus`).  `OXEN_ECHO=1`
//! copies every console to stderr live.
//!
//! The console lines asserted on are the constants right below: adapt them
//! here when xen-core's or Dom0's wording changes.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use oxen_tests::batch::{self, BatchOutcome};
use oxen_tests::boot::{dom0_ramdisk, BootPath, OxenBoot, Payload};
use oxen_tests::elf::{elf_without_xen_notes, pv_kernel_in_hypervisor_range};
use oxen_tests::images::{build_images, work_dir, Images, TestKernel, OPEN_BUGS, TEST_KERNELS};
use oxen_tests::qemu::{qemu_slot, Qemu};
use oxen_tests::tools::host_tool;
use oxen_tests::{Exit, RunResult};

// ---- What the console must show (xen-core's and Dom0's wording) ----------

/// xen-core's banner line holds this ...
const BANNER_NAME: &str = "Oxen ";
/// ... and carries this.
const BANNER_ABI: &str = "(Xen 4.17 ABI)";
/// One line per CPU brought up: `CPU0 online`, `CPU1 online`, ...
fn cpu_online(n: u32) -> String {
    format!("CPU{n} online")
}
/// xen-core's lines about building and starting Dom0.
const DOM0_LINE: &str = "Dom0:";
/// Dom0 mentions its ramdisk ...
const RAMDISK_LINE: &str = "ramdisk";
/// ... and the release file the harness puts in it ...
const RELEASE_FILE_LINE: &str = "/etc/oxen-release";
/// ... and a file given with `--add` (it lands in `/`).
const ADDED_FILE: &str = "oxen-tests-added.cfg";
/// xen-core names the problem with a bad or missing Dom0 module: every
/// message has this ...
const BAD_DOM0_LINE: &str = "Dom0 kernel";
/// ... and then says which problem it is.
const NOT_ELF_LINE: &str = "not an ELF";
const NO_XEN_NOTES_LINE: &str = "no Xen ELF notes";
const NO_MODULE_LINE: &str = "no Dom0 kernel";
const OVERLAPS_HYPERVISOR_LINE: &str = "overlaps the reserved range";

/// xen-core audits its own mappings for W^X at boot and says so.
const WX_AUDIT_LINE: &str = "none both writable and executable";
/// xen-core's crash dump of a fault in itself (`selftest=fault`).
const HV_FAULT_LINES: &[&str] = &[
    "Oxen hypervisor fault: CPU0",
    "page fault (vector 14)",
    "RIP:    e008:",
    "Xen call trace",
    "Panic on CPU 0: fatal trap page fault",
];
/// xen-core warns about options it does not know.
const UNKNOWN_OPTION_LINE: &str = "unknown command-line option 'oxen_no_such_option=1' ignored";
/// Dom0's start_info summary line, given `dom0_mem=64M`.
const DOM0_64M_LINE: &str = "nr_pages 16384";
/// xen-core's Dom0 vCPU count, given `dom0_max_vcpus=1`.
const DOM0_ONE_VCPU_LINE: &str = "Dom0 has maximum 1 VCPUs";
/// xen-core's scheduler line, given `sched_credit_tslice_ms=10
/// sched_ratelimit_us=0`.
const SCHED_OPTIONS_LINE: &str =
    "Using scheduler: SMP Credit Scheduler (credit): tslice 10 ms, ratelimit 0 us";
/// xen-core reports when Dom0 first printed (the boot-time figure).
const FIRST_LINE_FIGURE: &str = "Dom0 first console line after";

// ---- Limits ---------------------------------------------------------------

/// Any single boot, start to stop.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

// ---- Helpers ----------------------------------------------------------------

fn images() -> &'static Images {
    match build_images() {
        Ok(i) => i,
        Err(e) => panic!("cannot run boot tests: {e}"),
    }
}

fn image(name: &str) -> std::path::PathBuf {
    images().get(name).unwrap_or_else(|e| panic!("{e}"))
}

/// A default boot: PVH, default command line, the default Dom0 and ramdisk.
fn default_boot() -> OxenBoot {
    OxenBoot::new(image("xen-core"), image("dom0")).unwrap()
}

fn qemu_for(name: &str, boot: &OxenBoot) -> Qemu {
    let work = work_dir(name).unwrap();
    boot.qemu(name, &work)
        .unwrap_or_else(|e| panic!("{name}: cannot prepare the boot: {e}"))
}

/// Boots, waits for Dom0's prompt, types `poweroff` and judges the run as
/// `scripts/run --batch` does; fails the test with the full log unless Dom0
/// powered off with `VERDICT: SUCCESS`.
fn boot_to_poweroff(name: &str, boot: &OxenBoot, smp: u32) -> RunResult {
    let m = qemu_for(name, boot)
        .smp(smp)
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let out: BatchOutcome = batch::run(m, &[], BOOT_TIMEOUT);
    if !out.ok {
        out.result.fail(&out.why);
    }
    if !out.saw_prompt {
        out.result
            .fail(&format!("Dom0 never showed its {:?} prompt", batch::PROMPT));
    }
    out.result
}

fn assert_banner(r: &RunResult) {
    let l = r.assert_line(BANNER_ABI);
    if !l.contains(BANNER_NAME) {
        r.fail(&format!(
            "the banner line {l:?} should contain {BANNER_NAME:?}"
        ));
    }
}

/// Boots a Dom0 module xen-core must refuse, and checks it says why and halts.
fn assert_refused(name: &str, dom0: Option<Payload>, problem: &str) {
    let boot = OxenBoot {
        dom0,
        ..default_boot()
    };
    let r = qemu_for(name, &boot)
        .spawn()
        .unwrap()
        .wait_exit(BOOT_TIMEOUT);
    assert_banner(&r);
    let l = r.assert_line(BAD_DOM0_LINE);
    if !r
        .lines()
        .any(|l| l.contains(BAD_DOM0_LINE) && l.contains(problem))
    {
        r.fail(&format!(
            "expected xen-core to say {problem:?} about the Dom0 kernel, it said {l:?}"
        ));
    }
    r.assert_exit(Exit::HypervisorFatal);
    r.assert_no_line(batch::PROMPT);
}

// ---- Boot paths and CPUs ----------------------------------------------------

#[test]
fn pvh_boot_smp1() {
    let r = boot_to_poweroff("pvh-smp1", &default_boot(), 1);
    assert_banner(&r);
    r.assert_line(&cpu_online(0));
    r.assert_no_line(&cpu_online(1));
    r.assert_lines_in_order(&[BANNER_ABI, WX_AUDIT_LINE, DOM0_LINE]);
    r.assert_line(FIRST_LINE_FIGURE);
}

#[test]
fn command_line_options_reach_the_hypervisor_and_dom0() {
    let boot = OxenBoot {
        append: "loglvl=info dom0_mem=64M dom0_max_vcpus=1 oxen_no_such_option=1 \
                 sched=credit sched_credit_tslice_ms=10 sched_ratelimit_us=0"
            .into(),
        ..default_boot()
    };
    let r = boot_to_poweroff("cmdline", &boot, 2);
    r.assert_line(UNKNOWN_OPTION_LINE);
    r.assert_line(DOM0_ONE_VCPU_LINE);
    r.assert_line(DOM0_64M_LINE);
    r.assert_line(SCHED_OPTIONS_LINE);
}

#[test]
fn hypervisor_fault_prints_a_crash_dump_and_halts() {
    let boot = OxenBoot {
        append: "loglvl=info selftest=fault".into(),
        ..default_boot()
    };
    let r = qemu_for("hv-fault", &boot)
        .spawn()
        .unwrap()
        .wait_exit(BOOT_TIMEOUT);
    assert_banner(&r);
    r.assert_lines_in_order(HV_FAULT_LINES);
    r.assert_exit(Exit::HypervisorFatal);
    r.assert_no_line(batch::PROMPT);
}

#[test]
fn pvh_boot_smp4() {
    let r = boot_to_poweroff("pvh-smp4", &default_boot(), 4);
    assert_banner(&r);
    for n in 0..4 {
        r.assert_line(&cpu_online(n));
    }
    r.assert_no_line(&cpu_online(4));
    r.assert_line(DOM0_LINE);
}

#[test]
fn multiboot2_boot_via_grub_iso() {
    let boot = OxenBoot {
        path: BootPath::Grub,
        ..default_boot()
    };
    let r = boot_to_poweroff("grub-mb2", &boot, 2);
    assert_banner(&r);
    r.assert_line(&cpu_online(1));
    r.assert_line(DOM0_LINE);
}

#[test]
fn dom0_sees_its_ramdisk() {
    let dir = work_dir("dom0-ramdisk-add").unwrap();
    let added = dir.join(ADDED_FILE);
    std::fs::write(&added, "name = \"added\"\n").unwrap();
    let boot = OxenBoot {
        ramdisk: Some(Payload::Bytes(dom0_ramdisk(&[added]).unwrap())),
        ..default_boot()
    };
    let r = boot_to_poweroff("dom0-ramdisk", &boot, 2);
    r.assert_line(RAMDISK_LINE);
    r.assert_line(RELEASE_FILE_LINE);
    r.assert_line(&format!("/{ADDED_FILE}"));
}

// ---- Test Dom0 kernels (the table in oxen_tests::images) -----------------

fn check_test_kernel(k: &TestKernel) {
    let mut d = default_boot();
    if !k.ramdisk_files().is_empty() {
        let mut files = oxen_tests::boot::standard_files(images());
        files.extend(
            oxen_tests::boot::kernel_files(images(), k.ramdisk_files())
                .unwrap_or_else(|e| panic!("{}: {e}", k.name)),
        );
        d.ramdisk = Some(Payload::Bytes(
            oxen_tests::dom0_ramdisk_with(&[], &files).unwrap(),
        ));
    }
    let boot = OxenBoot {
        dom0: Some(Payload::File(image(k.name))),
        append: format!("{} {}", d.append, k.hypervisor_options())
            .trim()
            .to_string(),
        ..d
    };
    // Kernels that measure CPU shares run alone: hold every other QEMU
    // slot (spawning takes the last one).
    let _alone: Vec<_> = if oxen_tests::images::RUN_ALONE.contains(&k.name) {
        (1..oxen_tests::qemu::max_qemus())
            .map(|_| qemu_slot())
            .collect()
    } else {
        Vec::new()
    };
    let mut q = k.machine(qemu_for(k.name, &boot));
    for a in k.qemu_args() {
        q = q.arg(*a);
    }
    // Its disks: images of zeros in the boot's work dir (qemu_for made it).
    let work = oxen_tests::images::images_target_dir()
        .join("work")
        .join(k.name);
    let mut disks = Vec::new();
    for (i, d) in k.disks().iter().enumerate() {
        let p = work.join(format!("disk{i}.img"));
        d.create(&p)
            .unwrap_or_else(|e| panic!("{}: cannot make its disk: {e}", k.name));
        for a in oxen_tests::images::TestDisk::qemu_args(&p, i) {
            q = q.arg(a);
        }
        disks.push((d, p));
    }
    let timeout = k.timeout_secs().map_or(BOOT_TIMEOUT, Duration::from_secs);
    let r = q.spawn().unwrap().wait_exit(timeout);
    let purpose = format!("{} ({})", k.name, k.purpose);
    if r.timed_out {
        r.fail(&format!("{purpose}: hung until the {timeout:?} timeout"));
    }
    r.assert_lines_in_order(k.lines);
    if k.verdict_success {
        r.assert_verdict_success();
    }
    r.assert_exit(k.exit);
    for (d, p) in disks {
        if let Err(e) = d.check(&p) {
            r.fail(&format!("{purpose}: its disk image after power-off: {e}"));
        }
    }
}

/// Boots every kernel in `TEST_KERNELS` (two at a time) and checks each
/// against its entry; the failure message lists which failed and passed.
#[test]
fn test_kernels() {
    let _ = images(); // build once, before the threads
                      // OXEN_TEST_KERNELS=a,b boots only those (while working on them).
    let only = std::env::var("OXEN_TEST_KERNELS").unwrap_or_default();
    let handles: Vec<_> = TEST_KERNELS
        .iter()
        .filter(|k| match only.as_str() {
            "" => !OPEN_BUGS.iter().any(|(n, _)| *n == k.name),
            only => only.split(',').any(|n| n.trim() == k.name),
        })
        .map(|k| (k.name, std::thread::spawn(move || check_test_kernel(k))))
        .collect();
    assert!(
        !handles.is_empty(),
        "OXEN_TEST_KERNELS={only:?} names no kernel in TEST_KERNELS"
    );
    let (mut passed, mut failed) = (Vec::new(), Vec::new());
    for (name, h) in handles {
        if h.join().is_ok() {
            passed.push(name);
        } else {
            failed.push(name);
        }
    }
    assert!(
        failed.is_empty(),
        "test kernels that failed (reports above): {}; passed: {}",
        failed.join(", "),
        if passed.is_empty() {
            "none".to_string()
        } else {
            passed.join(", ")
        }
    );
}

// ---- The PV microbenchmark kernel (scripts/bench) ---------------------------

/// pv-bench runs to completion and prints every figure, each a positive
/// number (or `n/a` for what xen-core does not implement yet), and
/// xen-core prints its syscall/sysret floor. How big the figures are is
/// never checked: benchmarks are not timed tests.
#[test]
fn pv_bench_reports_every_figure() {
    let r = oxen_tests::bench::run(images(), None).unwrap_or_else(|e| panic!("pv-bench: {e}"));
    let problems = oxen_tests::bench::problems(&r);
    if !problems.is_empty() {
        r.fail(&format!("pv-bench: {}", problems.join("; ")));
    }
}

/// Debian's Xen 4.17 (fetched once, cached), or `None` after a `SKIP:`
/// line saying why test `name` cannot run; with `OXEN_XEN` set, failing
/// to get it is an error.
fn xen_or_skip(name: &str) -> Option<oxen_tests::xen::Xen> {
    match oxen_tests::xen::fetch(true) {
        Ok(x) => Some(x),
        Err(e) if std::env::var_os("OXEN_XEN").is_some() => panic!("{e}"),
        Err(e) => {
            // Straight to stderr: libtest does not capture this, so the
            // reason shows even though the test "passes".
            let _ = writeln!(std::io::stderr(), "SKIP: {name}: no Xen 4.17 here: {e}");
            None
        }
    }
}

/// Issue 8's ABI test against Xen itself: the same pv-bench binary boots
/// as Dom0 of Debian's Xen 4.17 under the same QEMU (`oxen_tests::xen`:
/// fetched with `apt-get download` into `target/xen-4.17/`, QEMU's
/// Multiboot1 loader), every check passes (`VERDICT: SUCCESS`), every
/// figure of `bench::FIGURES` is printed, in order, and positive (how big
/// is never judged), and Dom0's power-off reaches Xen (`Hardware Dom0
/// halted`). Skipped, with a `SKIP:` line saying why, only when the Xen
/// package cannot be obtained (offline, not Debian); `OXEN_XEN=FILE`
/// names a Xen binary instead, which must then work.
#[test]
fn pv_bench_runs_as_dom0_of_xen_4_17() {
    use oxen_tests::bench::versus;
    let Some(xen) = xen_or_skip("pv_bench_runs_as_dom0_of_xen_4_17") else {
        return;
    };
    let b = versus::run_xen(&xen, images(), None).unwrap_or_else(|e| panic!("Xen boot: {e}"));
    if !b.problems.is_empty() {
        b.result.fail(&format!(
            "pv-bench on {} ({}): {}",
            xen.version,
            xen.binary.display(),
            b.problems.join("; ")
        ));
    }
    // What running it on Xen first showed: a due timer fires on
    // set_timer_op's return (pv-bench checks it on both hypervisors).
    b.result
        .assert_line("pv-bench: due timers fire on set_timer_op's return, as in Xen: ok");
}

/// More of the same ABI test: the PV test kernels that check Xen's
/// answers (traps and bounces, guest user mode, event channels and timers,
/// SMP) pass every check as Dom0 of Xen 4.17 too, on two CPUs, with the
/// hypervisor options they have on Oxen. (pv-mm and dom0-hostile check
/// two of Oxen's deliberate deviations, pv-privop trips over QEMU 7.2's
/// #GP error code, which Xen passes on, and pv-sched passes on Xen but
/// its wake-up latency bound is too tight for Xen under TCG on a loaded
/// host: see docs/PERFORMANCE.md's ABI notes.) Skipped like the test above.
#[test]
fn pv_test_kernels_pass_as_dom0_of_xen_4_17() {
    const KERNELS: &[&str] = &["pv-traps", "pv-user", "pv-events", "pv-smp"];
    let Some(xen) = xen_or_skip("pv_test_kernels_pass_as_dom0_of_xen_4_17") else {
        return;
    };
    let mut failed = Vec::new();
    for k in KERNELS {
        // The kernel's hypervisor options (dom0_max_vcpus=4) mean the
        // same to Xen.
        let opts = oxen_tests::images::test_kernel(k).map_or("", |t| t.hypervisor_options());
        let q = oxen_tests::xen::qemu(&xen, &image(k), &format!("xen-{k}"))
            .smp(2)
            .append(format!("{} {opts}", oxen_tests::xen::CMDLINE));
        let r = oxen_tests::xen::boot(q, &format!("{k}: "), Duration::from_secs(90), None)
            .unwrap_or_else(|e| panic!("{k} on Xen: {e}"));
        let verdict = r.result.verdict();
        if !r.powered_off() || verdict != Some(oxen_tests::Verdict::Success) {
            eprintln!(
                "{}",
                r.result.report(&format!(
                    "{k} on {}: {verdict:?}, ended with {:?}",
                    xen.version, r.ended
                ))
            );
            failed.push(*k);
        }
    }
    assert!(failed.is_empty(), "failed on Xen 4.17: {failed:?}");
}

/// xl-bench (issue 4's toolstack benchmarks) runs to completion: 20 `xl
/// create`s of the example guest, each to its first console line, and
/// their `xl destroy`s, beside the builder and the destroy domctl alone,
/// then domu-xsbench's xenstore round trips beside its event-channel
/// floor, relayed from the guest's console; every figure printed and
/// positive, memory back exactly. How big the figures are is never
/// checked.
#[test]
fn xl_bench_reports_every_figure() {
    let r = oxen_tests::bench::toolstack::run(images(), None)
        .unwrap_or_else(|e| panic!("xl-bench: {e}"));
    let problems = oxen_tests::bench::toolstack::problems(&r);
    if !problems.is_empty() {
        r.fail(&format!("xl-bench: {}", problems.join("; ")));
    }
    r.assert_line("xl-bench: free memory is back exactly: ok");
    r.assert_line("domu-xsbench's verdict is SUCCESS: ok");
}

// ---- Bad Dom0 modules -----------------------------------------------------

#[test]
fn dom0_module_that_is_not_elf_is_refused() {
    assert_refused(
        "bad-dom0-text",
        Some(Payload::Bytes(
            b"this is a text file, not a kernel\n".to_vec(),
        )),
        NOT_ELF_LINE,
    );
}

#[test]
fn dom0_elf_without_xen_notes_is_refused() {
    assert_refused(
        "bad-dom0-no-notes",
        Some(Payload::Bytes(elf_without_xen_notes())),
        NO_XEN_NOTES_LINE,
    );
}

#[test]
fn dom0_overlapping_the_hypervisor_is_refused() {
    assert_refused(
        "dom0-overlaps-xen",
        Some(Payload::Bytes(pv_kernel_in_hypervisor_range())),
        OVERLAPS_HYPERVISOR_LINE,
    );
}

#[test]
fn missing_dom0_module_is_refused() {
    assert_refused("bad-dom0-missing", None, NO_MODULE_LINE);
}

// ---- scripts/run --batch ------------------------------------------------------

fn oxen_run_batch(stdin: &str) -> (Option<i32>, String) {
    oxen_run_batch_with(&[], stdin)
}

/// `oxen-run --batch` with extra options (e.g. `--add FILE`).
fn oxen_run_batch_with(extra: &[&str], stdin: &str) -> (Option<i32>, String) {
    oxen_run_batch_timed(extra, stdin, BOOT_TIMEOUT)
}

/// `oxen-run --batch` with extra options, the whole run limited to
/// `timeout`.
fn oxen_run_batch_timed(extra: &[&str], stdin: &str, timeout: Duration) -> (Option<i32>, String) {
    let _ = images();
    let _slot = qemu_slot();
    let timeout = timeout.as_secs().to_string();
    let child = spawn_oxen_run(&[&["--timeout", &timeout], extra].concat(), stdin);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "---- oxen-run stdout (console) ----\n{}\n---- oxen-run stderr ----\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// Starts `oxen-run --batch --no-build EXTRA` on the built images with
/// `stdin` as its whole input (a later `--timeout` in `extra` wins).
fn spawn_oxen_run(extra: &[&str], stdin: &str) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxen-run"))
        .args(["--batch", "--no-build"])
        .args(extra)
        .env("OXEN_IMAGES", &images().dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run oxen-run");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child
}

#[test]
fn batch_help_succeeds() {
    let (code, text) = oxen_run_batch("help\n");
    assert_eq!(
        code,
        Some(0),
        "`oxen-run --batch` with \"help\" should exit 0:\n{text}"
    );
}

#[test]
fn batch_false_fails() {
    let (code, text) = oxen_run_batch("false\n");
    assert!(
        code.is_some_and(|c| c != 0),
        "`oxen-run --batch` with \"false\" should exit non-zero:\n{text}"
    );
    assert!(
        text.contains("oxen-run: FAILED:"),
        "oxen-run should say why it failed:\n{text}"
    );
}

#[test]
fn dom0_shell_has_history_and_line_editing() {
    // Up-arrow recalls "echo one"; Home, four ^F and ^K leave "echo";
    // typing " edited" makes "echo edited".
    let (code, text) = oxen_run_batch("echo one\n\x1b[A\x01\x06\x06\x06\x06\x0b edited\n");
    assert_eq!(code, Some(0), "the edited line should succeed:\n{text}");
    assert!(
        text.lines().any(|l| l.trim_end() == "edited"),
        "the recalled and edited line should print \"edited\":\n{text}"
    );
}

#[test]
fn debug_keys_after_switching_serial_input_to_xen() {
    // CTRL-a three times gives the hypervisor the input ('q' dumps the
    // domains), three more give it back to Dom0's shell.
    let (code, text) = oxen_run_batch("\x01\x01\x01q\x01\x01\x01echo back\n");
    assert_eq!(code, Some(0), "the shell should still work:\n{text}");
    for want in [
        "(XEN) *** Serial input to Xen (type 'CTRL-a' three times to switch input)",
        "(XEN) *** Serial input to DOM0 (type 'CTRL-a' three times to switch input)",
        "(XEN) 'q' pressed -> dumping domain info",
        "(XEN) General information for domain 0:",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    assert!(
        text.lines().any(|l| l.trim_end() == "back"),
        "Dom0 should get the input back:\n{text}"
    );
}

/// `oxen-run --batch` with `files` in Dom0's ramdisk (`--add` each).
fn oxen_run_batch_adding(files: &[&std::path::Path], stdin: &str) -> (Option<i32>, String) {
    let args: Vec<String> = files
        .iter()
        .flat_map(|f| ["--add".to_string(), f.display().to_string()])
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    oxen_run_batch_with(&args, stdin)
}

/// A file for Dom0's ramdisk (`--add`), written to the test's temp dir.
fn ramdisk_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("oxen-xl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The `xl info` free_memory figures (MiB) in order of appearance.
fn free_memory(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("free_memory"))
        .filter_map(|l| l.trim_start().strip_prefix(':'))
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

/// The run's two `xl info`s show the same free memory: every frame
/// came back.
fn assert_free_memory_back(text: &str) {
    let free = free_memory(text);
    assert_eq!(free.len(), 2, "two `xl info`s:\n{text}");
    assert_eq!(
        free[0], free[1],
        "free memory should come back exactly:\n{text}"
    );
}

/// The `xl list` rows naming `name`: (id, mem MiB, vCPUs, state).
fn list_rows(text: &str, name: &str) -> Vec<(u32, u64, u32, String)> {
    text.lines()
        .filter(|l| l.split_whitespace().next() == Some(name))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.get(1)?.parse().ok()?,
                f.get(2)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
                (*f.get(4)?).to_string(),
            ))
        })
        .collect()
}

#[test]
fn xl_on_crash_restart_restarts_and_destroy_gives_every_page_back() {
    let crash = image("domu-crash");
    let cfg = ramdisk_file(
        "crashy.cfg",
        "name = \"crashy\"\nkernel = \"/boot/domu-crash\"\nmemory = 8\non_crash = \"restart\"\n",
    );
    let (code, text) = oxen_run_batch_adding(
        &[&crash, &cfg],
        "xl info\nxl create crashy.cfg\nsleep 3\nxl list\nxl destroy crashy\nxl list\nxl info\n",
    );
    assert_eq!(code, Some(0), "every xl command should succeed:\n{text}");
    let rows = list_rows(&text, "crashy");
    assert_eq!(
        rows.len(),
        1,
        "one `xl list` shows crashy, the second does not:\n{text}"
    );
    let (id, mem, vcpus, state) = &rows[0];
    assert!(
        *id >= 2,
        "crashy should have been restarted (a new domid):\n{text}"
    );
    // Caught between its crash and its restart, its vCPU is already down.
    let want_vcpus = if state.contains('c') { 0 } else { 1 };
    assert_eq!(
        (*mem, *vcpus),
        (8, want_vcpus),
        "crashy's memory and vCPUs:\n{text}"
    );
    assert_free_memory_back(&text);
}

#[test]
fn xl_errors_are_one_line_and_fail() {
    let broken = ramdisk_file("broken.cfg", "name = \"b\"\nmemory = \n");
    let cmds = [
        (
            "xl destroy nosuch",
            "Error: Domain 'nosuch' does not exist.",
        ),
        ("xl create /nosuch.cfg", "/nosuch.cfg"),
        (
            "xl create broken.cfg",
            "/etc/xen/broken.cfg:2: config parsing error",
        ),
        ("xl frobnicate", "frobnicate"),
    ];
    let input: String = cmds.iter().map(|(c, _)| format!("{c}\n")).collect();
    let (code, text) = oxen_run_batch_adding(&[&broken], &input);
    assert_ne!(
        code,
        Some(0),
        "the failing commands should fail the run:\n{text}"
    );
    assert!(
        text.contains("VERDICT: FAILURE: 4 commands failed"),
        "all four should fail:\n{text}"
    );
    for (cmd, want) in cmds {
        assert!(text.contains(want), "{cmd:?} should say {want:?}:\n{text}");
    }
    assert!(
        text.contains("oxen-run: FAILED"),
        "Dom0 and the toolstack should survive them:\n{text}"
    );
}

#[test]
fn xl_create_list_console_reboot_shutdown_the_hello_guest() {
    let (code, text) = oxen_run_batch(
        "xl info\nxl create /etc/xen/hello.cfg\nsleep 3\nxl list\nxl console hello\r\x1d\n\
         xl reboot -w hello\nxl list\nxl shutdown -w hello\nxl list\nxl info\n",
    );
    assert_eq!(code, Some(0), "every xl command should succeed:\n{text}");
    let rows = list_rows(&text, "hello");
    let ids: Vec<u32> = rows.iter().map(|r| r.0).collect();
    assert_eq!(
        ids,
        [1, 2],
        "xl list shows hello as domain 1, then (rebooted) 2, then not at all:\n{text}"
    );
    for (_, mem, vcpus, _) in &rows {
        assert_eq!(
            (*mem, *vcpus),
            (16, 1),
            "hello.cfg's memory and vcpus:\n{text}"
        );
    }
    for want in [
        "Hello from Oxen! I am domain 1 (\"hello\").",
        "hello: waiting for xl shutdown / xl reboot (control/shutdown)",
        "Rebooting domain 1",
        "Domain 1 has been destroyed",
        "Shutting down domain 2",
        "Domain 2 has been destroyed",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    assert_free_memory_back(&text);
}

/// `cpuid=` (issue 7, CPU feature levelling): domu-hello prints the
/// CPUID its domain's policy gives it (through Xen's forced-emulation
/// prefix). TCG's `-cpu max` has SSE4.2, so a plain guest sees it and a
/// `cpuid = "host,sse4_2=0"` guest does not; asking for VMX (never given
/// to PV guests) refuses the guest in one line and leaves no domain; a
/// malformed string is refused in one line, naming the file and line.
#[test]
fn xl_cpuid_levels_a_pv_guest_down_and_refuses_what_the_host_lacks() {
    let hello = image("domu-hello");
    let cfg = |name: &str, extra: &str| {
        ramdisk_file(
            &format!("{name}.cfg"),
            &format!(
                "name = \"{name}\"\nkernel = \"/boot/domu-hello\"\nmemory = 8\n\
                 on_poweroff = \"preserve\"\n{extra}"
            ),
        )
    };
    let lev = cfg("lev", "cpuid = \"host,sse4_2=0,aes=x\"\n");
    let xend = cfg(
        "xend",
        "cpuid = [ \"0x00000001:ecx=xxxxxxxxxxx0xxxxxxxxxxxxxxxxxxxx\" ]\n",
    );
    let plain = cfg("plain", "");
    let vmx = cfg("vmx", "cpuid = \"host,vmx=1\"\n");
    let bad = cfg("bad", "cpuid = \"host,sse4_2=maybe\"\n");
    let files = [&hello, &lev, &xend, &plain, &vmx, &bad];
    let mut args: Vec<String> = Vec::new();
    for f in files {
        args.push("--add".into());
        args.push(f.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, text) = oxen_run_batch_timed(
        &args,
        "xl info\nxl create lev.cfg\nsleep 2\nxl console lev\r\x1d\nxl destroy lev\n\
         xl create xend.cfg\nsleep 2\nxl console xend\r\x1d\nxl destroy xend\n\
         xl create plain.cfg\nsleep 2\nxl console plain\r\x1d\nxl destroy plain\n\
         xl create vmx.cfg\nxl create bad.cfg\nxl list\nxl info\n",
        Duration::from_secs(120),
    );
    let cpuid_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("domu-hello: cpuid 1:"))
        .collect();
    assert_eq!(
        cpuid_lines.len(),
        3,
        "three guests print their CPUID:\n{text}"
    );
    assert!(
        cpuid_lines[0].contains("(sse4_2=0 "),
        "cpuid=\"host,sse4_2=0\" clears SSE4.2: {cpuid_lines:?}\n{text}"
    );
    assert!(
        cpuid_lines[1].contains("(sse4_2=0 "),
        "the xend form clears SSE4.2 too: {cpuid_lines:?}\n{text}"
    );
    assert!(
        cpuid_lines[2].contains("(sse4_2=1 "),
        "without cpuid= the guest has SSE4.2: {cpuid_lines:?}\n{text}"
    );
    // Only that bit differs between the levelled and the plain guest.
    let regs = |l: &str| {
        l.split_whitespace()
            .filter_map(|w| w.strip_prefix("ecx=").or_else(|| w.strip_prefix("edx=")))
            .map(|v| u32::from_str_radix(v.trim_end_matches(';').trim_start_matches("0x"), 16))
            .collect::<Result<Vec<u32>, _>>()
            .unwrap()
    };
    let (a, b) = (regs(cpuid_lines[0]), regs(cpuid_lines[2]));
    assert_eq!(a.len(), 2, "{cpuid_lines:?}");
    assert_eq!((a[0] ^ b[0], a[1] ^ b[1]), (1 << 20, 0), "{cpuid_lines:?}");
    for want in [
        "building domain vmx: cpuid: CPUID feature \"vmx\" (leaf 0x00000001 ecx bit 5) \
         is not available to this guest on this host",
        "bad.cfg:5: while parsing CPUID flag \"sse4_2=maybe\": error #3: \
         illegal CPUID value (must be: [0|1|x|k|s])",
    ] {
        let n = text.lines().filter(|l| l.contains(want)).count();
        assert_eq!(n, 1, "{want:?} once, on one line:\n{text}");
    }
    assert!(
        list_rows(&text, "vmx").is_empty(),
        "the refused guest is gone:\n{text}"
    );
    assert_eq!(code, Some(1), "only the two refused creates fail:\n{text}");
    assert_free_memory_back(&text);
}

#[test]
fn xl_fifty_guests_at_once_each_answering_on_its_console() {
    const N: usize = 50;
    let mut input = String::from("xl info\n");
    for i in 0..N {
        input.push_str(&format!(
            "xl create -q /etc/xen/hello.cfg 'name=\"g{i}\"' memory=16\n"
        ));
    }
    // Time for all of them to boot and reach xenstore, even on a loaded
    // machine (alone they need well under two seconds).
    input.push_str("sleep 8\nxl list\n");
    for i in 0..N {
        input.push_str(&format!("xl console g{i}\r\x1d\n"));
    }
    for i in 0..N {
        input.push_str(&format!("xl destroy g{i}\n"));
    }
    input.push_str("xl list\nxl info\n");
    let (code, text) = oxen_run_batch_with(&["--mem", "1280M", "--timeout", "600"], &input);
    assert_eq!(code, Some(0), "every xl command should succeed:\n{text}");
    for i in 0..N {
        let rows = list_rows(&text, &format!("g{i}"));
        assert_eq!(rows.len(), 1, "g{i} is listed once, with 16 MiB:\n{text}");
        assert_eq!(rows[0].1, 16, "g{i}'s memory:\n{text}");
        let hello = format!("I am domain {} (\"g{i}\").", rows[0].0);
        assert!(
            text.contains(&hello),
            "g{i} should answer on its console ({hello:?}):\n{text}"
        );
    }
    assert_free_memory_back(&text);
}

#[test]
fn xl_a_guest_corrupting_its_xenstore_ring_hurts_nobody_else() {
    let hostile = image("domu-xshostile");
    let cfg = ramdisk_file(
        "hostile.cfg",
        "name = \"hostile\"\nkernel = \"/boot/domu-xshostile\"\nmemory = 8\n",
    );
    let (code, text) = oxen_run_batch_adding(
        &[&hostile, &cfg],
        "xl create /etc/xen/hello.cfg\nxl create hostile.cfg\nsleep 4\n\
         xl console hostile\r\x1d\nxl list\nxl shutdown -w hello\nxl destroy hostile\nxl list\n",
    );
    assert_eq!(
        code,
        Some(0),
        "Dom0 and every xl command should be fine:\n{text}"
    );
    for want in [
        "domu-xshostile: xenstore answers, I am Some(\"hostile\")",
        "domu-xshostile: done corrupting my xenstore ring",
        "Domain 1 has been destroyed",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    assert_eq!(
        list_rows(&text, "hello").len(),
        1,
        "hello still listed:\n{text}"
    );
    assert_eq!(
        list_rows(&text, "hostile").len(),
        1,
        "hostile listed once:\n{text}"
    );
}

#[test]
fn xl_two_guests_share_a_page_through_grants() {
    let guest = image("domu-grant");
    let cfg = |role: &str, peer: u32| {
        ramdisk_file(
            &format!("{role}.cfg"),
            &format!(
                "name = \"{role}\"\nkernel = \"/boot/domu-grant\"\nmemory = 8\n\
                 extra = \"{role} peer={peer}\"\non_poweroff = \"preserve\"\n"
            ),
        )
    };
    let (g, m) = (cfg("granter", 2), cfg("mapper", 1));
    let (code, text) = oxen_run_batch_adding(
        &[&guest, &g, &m],
        "xl info\nxl create granter.cfg\nxl create mapper.cfg\nsleep 8\n\
         xl console granter\r\x1d\nxl console mapper\r\x1d\n\
         xl destroy granter\nxl destroy mapper\nxl info\n",
    );
    assert_eq!(code, Some(0), "every xl command should succeed:\n{text}");
    for want in [
        "mapper: map the peer's grant 8: ok",
        "mapper: read the granter's greeting through the mapping: ok",
        "granter: the peer mapped the page and wrote its answer: ok",
        "granter: ending access while the peer maps it fails (busy): ok",
        "mapper: unmap it: ok",
        "mapper: grant copy into the peer's page: ok",
        "granter: the peer's grant copy arrived: ok",
        "granter: ending access once unmapped: ok",
        "granter: 8 checks, 0 failed",
        "mapper: 7 checks, 0 failed",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    assert_free_memory_back(&text);
}

#[test]
fn xl_a_guest_reads_and_writes_its_disk_through_blkback() {
    let guest = image("domu-blk");
    let mut img = vec![0u8; 1 << 20];
    img[..9].copy_from_slice(b"OXEN-DISK");
    let dir = ramdisk_file("blk.cfg", "").parent().unwrap().to_path_buf();
    let disk = dir.join("disk.img");
    std::fs::write(&disk, &img).unwrap();
    let cfg = ramdisk_file(
        "blk.cfg",
        "name = \"blk\"\nkernel = \"/boot/domu-blk\"\nmemory = 16\n\
         disk = [ \"/boot/disk.img,raw,xvda,rw\" ]\non_poweroff = \"preserve\"\n",
    );
    let (code, text) = oxen_run_batch_adding(
        &[&guest, &cfg, &disk],
        "xl info\nxl create blk.cfg\nsleep 4\nxl block-list blk\nxl console blk\r\x1d\n\
         xl destroy blk\nxl info\n",
    );
    assert_eq!(code, Some(0), "every xl command should succeed:\n{text}");
    for want in [
        "domu-blk: blkfront connects to blkback (xvda): ok",
        "domu-blk: sector 0 holds the image's label: ok",
        "domu-blk: what was written is what is read: ok (65536 bytes)",
        "domu-blk: a read past the end fails: ok",
        "domu-blk: 10 checks, 0 failed",
        "51712 0   1      4     4",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    assert_free_memory_back(&text);
}

/// `oxen-run` options putting `adds` into Dom0's ramdisk (`--add`) and
/// giving the machine `disks` (`--disk`), in order.
fn files_and_disks(adds: &[&std::path::Path], disks: &[&std::path::Path]) -> Vec<String> {
    let add = adds
        .iter()
        .flat_map(|f| ["--add".to_string(), f.display().to_string()]);
    let disk = disks
        .iter()
        .flat_map(|d| ["--disk".to_string(), d.display().to_string()]);
    add.chain(disk).collect()
}

/// A raw disk image of `mib` MiB for `--disk`, made with `qemu-img` as a
/// user would (zeros), in the test's temp dir.
fn qemu_img(name: &str, mib: u64) -> std::path::PathBuf {
    let dir = ramdisk_file("img.cfg", "").parent().unwrap().to_path_buf();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "raw"])
        .arg(&p)
        .arg(format!("{mib}M"))
        .output()
        .expect("qemu-img (Debian package qemu-utils) should be installed");
    assert!(out.status.success(), "qemu-img create failed: {out:?}");
    p
}

/// domu-disk's pattern word at disk byte offset `o` (its `fill_pattern`).
fn disk_pattern_word(o: u64) -> u64 {
    (o / 8).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x0e0e_4f58_454e_0005
}

#[test]
fn xl_disk_64mib_pattern_survives_guest_reboot_and_machine_poweroff() {
    let guest = image("domu-disk");
    let img = qemu_img("pattern.img", 80);
    let cfg = ramdisk_file(
        "pat.cfg",
        "name = \"pat\"\nkernel = \"/boot/domu-disk\"\nmemory = 32\n\
         extra = \"mode=pattern mib=64\"\n\
         disk = [ \"phy:/dev/vda,xvda,w\" ]\non_reboot = \"restart\"\n",
    );
    let img_s = img.display().to_string();
    let (code, text) = oxen_run_batch_timed(
        &[
            "--add",
            &guest.display().to_string(),
            "--add",
            &cfg.display().to_string(),
            "--disk",
            &img_s,
        ],
        // Each `xl console` follows the guest until it is gone: the first
        // until it reboots, the second until it powers off.
        "xl info\nxl create pat.cfg\nxl console pat\nxl console pat\nxl list\nxl info\n",
        Duration::from_secs(240),
    );
    assert_eq!(code, Some(0), "every xl command should succeed:\n{text}");
    for want in [
        "Dom0: /dev/vda: virtio-blk at ",
        "domu-disk: no pattern on the disk: writing 64 MiB",
        "domu-disk: the pattern reads back: ok",
        "domu-disk: pattern written and checked; rebooting",
        "domu-disk: after the reboot the pattern reads back: ok",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    // Persistent grants on the whole disk: blkback's reads and writes go
    // in place, the device moving data straight to the guest's pages.
    let closes: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("blkback d1 51712: closed after"))
        .collect();
    assert!(!closes.is_empty(), "blkback should log the close:\n{text}");
    for l in &closes {
        let in_place: u64 = l
            .split(" in place)")
            .next()
            .and_then(|h| h.rsplit('(').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        assert!(in_place > 1000, "most I/O should go in place: {l}");
    }
    assert!(
        list_rows(&text, "pat").is_empty(),
        "the guest should be gone after powering off:\n{text}"
    );
    assert_free_memory_back(&text);
    // The whole machine is off: the host's image file holds the pattern.
    let data = std::fs::read(&img).unwrap();
    assert_eq!(data.len(), 80 << 20, "the image keeps its size");
    assert!(
        data.starts_with(b"OXEN-PATTERN v1 mib=64 start=4096\n"),
        "sector 0 holds the header: {:?}",
        String::from_utf8_lossy(&data[..48])
    );
    let body = &data[4096..4096 + (64 << 20)];
    for (i, w) in body.chunks_exact(8).enumerate() {
        let o = 4096 + 8 * i as u64;
        let got = u64::from_le_bytes(w.try_into().unwrap());
        assert_eq!(
            got,
            disk_pattern_word(o),
            "image byte {o:#x} differs from the pattern"
        );
    }
    assert!(
        data[4096 + (64 << 20)..].iter().all(|&b| b == 0),
        "nothing written past the pattern"
    );
}

// Issue 7, ballooning: `xl mem-set` shrinks a running PV guest (its
// balloon driver gives frames back, which the host's free memory shows)
// and grows it back, while the guest keeps allocating and checking frames;
// a target below what it uses leaves it above the target, saying by how
// much. Everything comes back when it is destroyed.
#[test]
fn xl_mem_set_balloons_a_running_guest_down_and_up_while_it_allocates() {
    let cfg = ramdisk_file(
        "life.cfg",
        "name = \"life\"\nkernel = \"/boot/domu-life\"\nmemory = 32\n\
         extra = \"mode=balloon\"\non_poweroff = \"preserve\"\n",
    );
    let (code, text) = oxen_run_batch_timed(
        &[
            "--add",
            &image("domu-life").display().to_string(),
            "--add",
            &cfg.display().to_string(),
        ],
        "xl info\nxl create life.cfg\nsleep 2\nxl list\nxl mem-set life 16\nsleep 3\n\
         xl list\nxl info\nxl mem-set life 32\nsleep 3\nxl list\nxl mem-set life 2\nsleep 3\n\
         xl mem-set life 100\nxl mem-set life 1x\n\
         xl shutdown -w life\nxl console life\r\x1d\nxl destroy life\nxl info\n",
        Duration::from_secs(150),
    );
    for want in [
        "domu-life: balloon driver up with 32768 KiB",
        "domu-life: target 16384 KiB: now 16384 KiB (released 4096, reclaimed 0, short 0)",
        "domu-life: target 32768 KiB: now 32768 KiB (released 0, reclaimed 4096, short 0)",
        // Below what it uses (the worker's frames, its kernel): it stops
        // at the floor or what is free, and says how far off it is.
        "domu-life: target 2048 KiB: now ",
        "domu-life: the worker's frames kept their patterns: ok",
        // Above its maximum, and not a size: refused by xl.
        "memory_dynamic_max must be less than or equal to memory_static_max",
        "invalid memory size: 1x",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    let mems: Vec<u64> = list_rows(&text, "life").iter().map(|r| r.1).collect();
    assert_eq!(mems, [32, 16, 32], "xl list's Mem column follows:\n{text}");
    let free = free_memory(&text);
    assert_eq!(free.len(), 3, "three `xl info`s:\n{text}");
    assert_eq!(
        free[1],
        free[0] - 16,
        "16 MiB back in the hypervisor's free pool while ballooned down:\n{text}"
    );
    assert_eq!(free[2], free[0], "all of it back after destroy:\n{text}");
    assert_eq!(code, Some(1), "only the two refused mem-sets fail:\n{text}");
}

// Issue 7, vCPU hot-plug: `xl vcpu-set` 1 -> 4 -> 2 -> 3 on a running PV
// guest whose vCPUs each count in their own counter: after every change
// the vCPUs the hypervisor has up are exactly the ones counting (a vCPU
// taken down stops, one brought back carries on), `xl list` shows the
// count, and more than `maxvcpus` is refused.
#[test]
fn xl_vcpu_set_brings_a_running_guests_vcpus_up_and_down() {
    let cfg = ramdisk_file(
        "hot.cfg",
        "name = \"hot\"\nkernel = \"/boot/domu-life\"\nmemory = 32\nvcpus = 1\n\
         maxvcpus = 4\nextra = \"mode=vcpus\"\non_poweroff = \"preserve\"\n",
    );
    let (code, text) = oxen_run_batch_timed(
        &[
            "--add",
            &image("domu-life").display().to_string(),
            "--add",
            &cfg.display().to_string(),
        ],
        "xl create hot.cfg\nsleep 2\nxl list\nxl vcpu-set -i hot 4\nsleep 4\nxl list\n\
         xl vcpu-set hot 2\nsleep 4\nxl list\nxl vcpu-list hot\nxl vcpu-set -i hot 3\nsleep 4\n\
         xl list\nxl vcpu-set -i hot 5\nxl shutdown -w hot\nxl console hot\r\x1d\nxl destroy hot\n",
        Duration::from_secs(150),
    );
    let reports: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("domu-life: vcpus up "))
        .collect();
    assert_eq!(
        reports,
        [
            "domu-life: vcpus up [0, 1, 2, 3]; working [0, 1, 2, 3]",
            "domu-life: vcpus up [0, 1]; working [0, 1]",
            "domu-life: vcpus up [0, 1, 2]; working [0, 1, 2]",
        ],
        "each change lands, and only the vCPUs up do work:\n{text}"
    );
    for want in [
        "domu-life: vCPU 2: Stopping",
        "domu-life: vCPU 2: Woken",
        "domu-life: after every change the vCPUs up were the ones working: ok",
        "Requested vcpus:5 > max_vcpus:4",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    // `xl list` rows (six fields; `xl vcpu-list` rows have more).
    let counts: Vec<u32> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() == 6 && f[0] == "hot")
        .filter_map(|f| f[3].parse().ok())
        .collect();
    assert_eq!(
        counts,
        [1, 4, 2, 3],
        "xl list's VCPUs column follows:\n{text}"
    );
    assert_eq!(
        code,
        Some(1),
        "only the vcpu-set past maxvcpus fails:\n{text}"
    );
}

#[test]
fn xl_block_attach_hot_plugs_a_real_disk_into_a_running_guest_and_detach_unplugs_it() {
    let guest = image("domu-disk");
    let img = qemu_img("hotplug.img", 8);
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
        f.write_all(b"OXEN-HOTPLUG label\n").unwrap();
    }
    let hp = ramdisk_file(
        "hp.cfg",
        "name = \"hp\"\nkernel = \"/boot/domu-disk\"\nmemory = 16\nextra = \"mode=hotplug\"\n\
         on_poweroff = \"preserve\"\n",
    );
    let other = ramdisk_file(
        "other.cfg",
        "name = \"other\"\nkernel = \"/boot/domu-hello\"\nmemory = 8\n\
         disk = [ \"phy:/dev/vda,xvda,r\" ]\n",
    );
    let (code, text) = oxen_run_batch_timed(
        &[
            "--add",
            &guest.display().to_string(),
            "--add",
            &image("domu-hello").display().to_string(),
            "--add",
            &hp.display().to_string(),
            "--add",
            &other.display().to_string(),
            "--disk",
            &img.display().to_string(),
        ],
        "xl info\nxl create hp.cfg\nsleep 1\nxl block-list hp\n\
         xl block-attach hp phy:/dev/vda,xvdb,w\nsleep 2\nxl block-list hp\n\
         xl create other.cfg\n\
         xl block-detach hp xvdb\nsleep 2\nxl block-list hp\n\
         xl console hp\r\x1d\nxl destroy hp\nxl create other.cfg\nxl destroy other\nxl info\n",
        Duration::from_secs(120),
    );
    for want in [
        "domu-disk: the guest starts without disks: ok",
        "domu-disk: vbd 51728 appeared",
        "domu-disk: hot-plugged disk label: OXEN-HOTPLUG label",
        "domu-disk: the hot-plugged disk reads back what was written: ok",
        "domu-disk: the unplugged disk closed cleanly: ok",
        "domu-disk: I/O to the unplugged disk fails: ok",
        "domu-disk: 9 checks, 0 failed",
        // While hp writes the disk, nobody else may use it.
        "disk xvda: /dev/vda is in use by domain 1 (/dev/vda, read-write), and so cannot be used now",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    // block-list: the heading alone, then xvdb (51728) in state 4, then
    // nothing again.
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("51728 ")).collect();
    assert_eq!(rows.len(), 1, "xvdb listed once, while attached:\n{text}");
    assert!(
        rows[0].split_whitespace().nth(3) == Some("4"),
        "xvdb connected (state 4): {rows:?}"
    );
    // Once hp is gone, the disk is free again: the second `other` starts.
    assert_eq!(
        code,
        Some(1),
        "only the first `xl create other.cfg` fails:\n{text}"
    );
    assert_free_memory_back(&text);
    let data = std::fs::read(&img).unwrap();
    let end = &data[data.len() - 4096..];
    assert!(
        end.iter()
            .enumerate()
            .all(|(i, &b)| b == ((i as u32) * 13 + 7) as u8),
        "the guest's last 4 KiB reached the host's image"
    );
}

#[test]
fn xl_destroy_during_heavy_io_leaks_no_grant_and_keeps_every_flushed_write() {
    let guest = image("domu-disk");
    let img = qemu_img("churn.img", 20);
    let cfg = ramdisk_file(
        "churn.cfg",
        "name = \"churn\"\nkernel = \"/boot/domu-disk\"\nmemory = 16\nextra = \"mode=churn\"\n\
         disk = [ \"phy:/dev/vda,xvda,w\" ]\n",
    );
    let (code, text) = oxen_run_batch_timed(
        &[
            "--add",
            &guest.display().to_string(),
            "--add",
            &cfg.display().to_string(),
            "--disk",
            &img.display().to_string(),
        ],
        // The backlog so far, then destroy while it writes; then the
        // hypervisor's grant usage (debug key g) and free memory. (The
        // blank line after Ctrl-] gives an extra prompt, so the key, which
        // the hypervisor takes as it arrives, waits one command more.)
        "xl info\nxl create churn.cfg\nsleep 3\nxl console churn\r\x1d\nxl destroy churn\nsleep 1\n\
         \x01\x01\x01g\x01\x01\x01xl list\nxl info\n",
        Duration::from_secs(120),
    );
    assert_eq!(code, Some(0), "every xl command should succeed:\n{text}");
    let last: u64 = text
        .lines()
        .rev()
        .filter_map(|l| l.trim().strip_prefix("domu-disk: flushed record "))
        .find_map(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("the guest acknowledged no flush:\n{text}"));
    assert!(
        list_rows(&text, "churn").is_empty(),
        "the guest is gone:\n{text}"
    );
    // Dom0 holds no mapping and no pin of anyone's grants any more.
    let d0 = text
        .lines()
        .find(|l| l.contains("grant-table for d0:"))
        .unwrap_or_else(|| panic!("no grant usage dump:\n{text}"));
    assert!(
        d0.contains("pinned entries 0, maptrack in use 0 "),
        "Dom0 still maps grants after the destroy: {d0}"
    );
    assert!(
        !text.contains("grant-table for d1:"),
        "the destroyed domain's table is gone:\n{text}"
    );
    assert_free_memory_back(&text);
    // The record of the last acknowledged flush (or a later one in the
    // same slot of the 256-record ring) is in the host's image.
    let data = std::fs::read(&img).unwrap();
    let slot = (last % 256) as usize * 65536;
    let tag = String::from_utf8_lossy(&data[slot..slot + 29]).to_string();
    let rec: u64 = tag
        .strip_prefix("OXEN-CHURN record ")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("slot of record {last} holds {tag:?}"));
    assert!(
        rec >= last && rec % 256 == last % 256,
        "record {last} was acknowledged after a flush, but its slot holds record {rec}"
    );
}

#[test]
fn hostile_blkif_frontend_gets_errors_and_a_disconnect_while_other_guests_keep_working() {
    let disk = image("domu-disk");
    let blk = image("domu-blk");
    let img = qemu_img("hostile-churn.img", 20);
    let dir = ramdisk_file("hostile.cfg", "")
        .parent()
        .unwrap()
        .to_path_buf();
    let mut label = vec![0u8; 1 << 20];
    label[..16].copy_from_slice(b"OXEN-DISK xvdb!\n");
    let small = dir.join("disk.img");
    std::fs::write(&small, &label).unwrap();
    let hostile = ramdisk_file(
        "hostile.cfg",
        "name = \"hostile\"\nkernel = \"/boot/domu-disk\"\nmemory = 16\nextra = \"mode=hostile\"\n\
         disk = [ \"/boot/disk.img,raw,xvda,rw\", \"/boot/disk.img,raw,xvdb,rw\" ]\n\
         on_poweroff = \"preserve\"\n",
    );
    let churn = ramdisk_file(
        "churn.cfg",
        "name = \"churn\"\nkernel = \"/boot/domu-disk\"\nmemory = 16\nextra = \"mode=churn\"\n\
         disk = [ \"phy:/dev/vda,xvda,w\" ]\n",
    );
    let good = ramdisk_file(
        "blk.cfg",
        "name = \"blk\"\nkernel = \"/boot/domu-blk\"\nmemory = 16\n\
         disk = [ \"/boot/disk.img,raw,xvda,rw\" ]\non_poweroff = \"preserve\"\n",
    );
    let args = files_and_disks(&[&disk, &blk, &small, &hostile, &churn, &good], &[&img]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, text) = oxen_run_batch_timed(
        &args,
        "xl info\nxl create churn.cfg\nxl create hostile.cfg\nsleep 4\n\
         xl console hostile\r\x1d\nxl console churn\r\x1d\nxl destroy churn\nsleep 1\n\
         xl destroy hostile\nxl create blk.cfg\nsleep 3\nxl console blk\r\x1d\n\
         xl destroy blk\nxl info\n",
        Duration::from_secs(120),
    );
    assert_eq!(code, Some(0), "every xl command should succeed:\n{text}");
    for want in [
        "domu-disk: a read past the end of xvda gets an error response: ok",
        "domu-disk: xvda still works after it: ok",
        "domu-disk: a well-formed read on the hand-made ring succeeds: ok",
        "domu-disk: a bad grant reference gets an error response: ok",
        "domu-disk: a grant of another domain's table entry 0 gets an error response: ok",
        "domu-disk: zero segments gets an error response: ok",
        "domu-disk: too many segments (200) gets an error response: ok",
        "domu-disk: reversed sectors in a segment gets an error response: ok",
        "domu-disk: a segment past its page gets an error response: ok",
        "domu-disk: a sector number that wraps gets an error response: ok",
        "domu-disk: an unknown operation (99) gets an error response: ok",
        "domu-disk: after them the ring still works: ok",
        "domu-disk: a producer index 1000 past the ring gets the device disconnected: ok",
        "domu-disk: the backend closes after us: ok",
        "domu-disk: a request after the close goes unanswered: ok",
        "blkback d2 51728: bogus ring requests (Overflow { prod: 1010, base: 10 }): halting",
        // The other guests: churn kept flushing, blk passed all its checks.
        "domu-blk: 10 checks, 0 failed",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    assert!(
        text.contains("domu-disk: 18 checks, 0 failed"),
        "the hostile guest's own checks pass:\n{text}"
    );
    let flushed = text
        .lines()
        .filter(|l| l.contains("domu-disk: flushed record"))
        .count();
    assert!(
        flushed >= 4,
        "the churn guest kept writing during the attack ({flushed} acks):\n{text}"
    );
    assert_free_memory_back(&text);
}

#[test]
fn xl_disk_image_files_on_dom0s_fat_file_system_and_partitions_serve_guests() {
    let guest = image("domu-disk");
    let dir = ramdisk_file("fat.cfg", "").parent().unwrap().to_path_buf();
    // vda: a whole-disk FAT32 made and filled on the host as a user would.
    let host = qemu_img("fat-host.img", 64);
    let h = host.display().to_string();
    host_tool("mkfs.fat", &["-F", "32", "-n", "OXEN", &h]);
    let gimg = dir.join("guest.img");
    std::fs::write(&gimg, vec![0u8; 10 << 20]).unwrap();
    host_tool("mmd", &["-i", &h, "::images"]);
    host_tool(
        "mcopy",
        &["-i", &h, &gimg.display().to_string(), "::images/guest.img"],
    );
    std::fs::write(dir.join("odd.img"), vec![0u8; 1000]).unwrap();
    host_tool(
        "mcopy",
        &[
            "-i",
            &h,
            &dir.join("odd.img").display().to_string(),
            "::odd.img",
        ],
    );
    // vdb: an MBR with a FAT16 partition 1 and a raw partition 2.
    let parted = qemu_img("parted.img", 40);
    let p = parted.display().to_string();
    let mut sf = Command::new(
        ["/usr/sbin/sfdisk", "/sbin/sfdisk"]
            .into_iter()
            .find(|t| std::path::Path::new(t).is_file())
            .unwrap_or("sfdisk"),
    )
    .args(["-q", &p])
    .stdin(Stdio::piped())
    .spawn()
    .expect("sfdisk (Debian package fdisk) should be installed");
    sf.stdin
        .take()
        .unwrap()
        .write_all(b"label: dos\nstart=2048, size=32768, type=6\nstart=34816, type=83\n")
        .unwrap();
    assert!(sf.wait().unwrap().success(), "sfdisk failed");
    host_tool("mkfs.fat", &["-F", "16", "--offset", "2048", &p, "16384"]);
    host_tool(
        "mcopy",
        &[
            "-i",
            &format!("{p}@@1M"),
            &gimg.display().to_string(),
            "::in-partition.img",
        ],
    );
    let a = ramdisk_file(
        "fata.cfg",
        "name = \"fata\"\nkernel = \"/boot/domu-disk\"\nmemory = 16\n\
         extra = \"mode=pattern mib=8\"\n\
         disk = [ \"/mnt/vda/images/guest.img,raw,xvda,rw\" ]\non_reboot = \"restart\"\n\
         on_poweroff = \"preserve\"\n",
    );
    let b = ramdisk_file(
        "fatb.cfg",
        "name = \"fatb\"\nkernel = \"/boot/domu-disk\"\nmemory = 16\n\
         extra = \"mode=pattern mib=4\"\n\
         disk = [ \"phy:/dev/vdb2,xvda,w\" ]\non_reboot = \"restart\"\n\
         on_poweroff = \"preserve\"\n",
    );
    let bad = ramdisk_file(
        "bad.cfg",
        "name = \"bad\"\nkernel = \"/boot/domu-disk\"\nmemory = 16\n\
         disk = [ \"/mnt/vda/images/nothere.img,raw,xvda,rw\" ]\n",
    );
    let odd = ramdisk_file(
        "odd.cfg",
        "name = \"odd\"\nkernel = \"/boot/domu-disk\"\nmemory = 16\n\
         disk = [ \"/mnt/vda/odd.img,raw,xvda,rw\" ]\n",
    );
    let args = files_and_disks(&[&guest, &a, &b, &bad, &odd], &[&host, &parted]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, text) = oxen_run_batch_timed(
        &args,
        "lsblk\nls /mnt/vda\nls /mnt/vda/images\nls /mnt/vdb1\nxl info\n\
         xl create bad.cfg\nxl create odd.cfg\n\
         xl create fata.cfg\nxl create fatb.cfg\nsleep 8\nlsblk\n\
         xl console fata\r\x1d\nxl console fatb\r\x1d\nxl destroy fata\nxl destroy fatb\nxl info\n",
        Duration::from_secs(180),
    );
    for want in [
        "Dom0: /mnt/vda: FAT32 file system on /dev/vda",
        "Dom0: /mnt/vdb1: FAT16 file system on /dev/vdb",
        "d            0  images",
        "-     10485760  guest.img",
        "-     10485760  in-partition.img",
        " xvda (rw, /mnt/vda/images/guest.img)",
        " xvda (rw, /dev/vdb2)",
        "/mnt/vda: FAT32 file system, 64 MiB",
        "disk xvda: /mnt/vda/images/nothere.img: /images/nothere.img: No such file or directory",
        "disk xvda: /mnt/vda/odd.img: ",
        "domu-disk: after the reboot the pattern reads back: ok (8 MiB",
        "domu-disk: after the reboot the pattern reads back: ok (4 MiB",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    assert_eq!(
        code,
        Some(1),
        "only the two bad creates fail (the exit status counts failed commands):\n{text}"
    );
    assert_free_memory_back(&text);
    // On the host: the file inside the FAT holds the pattern.
    let out = dir.join("back.img");
    let _ = std::fs::remove_file(&out);
    host_tool(
        "mcopy",
        &["-i", &h, "::images/guest.img", &out.display().to_string()],
    );
    let file = std::fs::read(&out).unwrap();
    assert_eq!(file.len(), 10 << 20, "the image file keeps its size");
    assert!(file.starts_with(b"OXEN-PATTERN v1 mib=8 start=4096\n"));
    for (i, w) in file[4096..4096 + (8 << 20)].chunks_exact(8).enumerate() {
        let o = 4096 + 8 * i as u64;
        assert_eq!(
            u64::from_le_bytes(w.try_into().unwrap()),
            disk_pattern_word(o),
            "guest.img byte {o:#x}"
        );
    }
    host_tool("fsck.fat", &["-n", &h]);
    // Partition 2 of vdb holds the other guest's pattern, nothing outside.
    let disk = std::fs::read(&parted).unwrap();
    let part = &disk[34816 * 512..];
    assert!(part.starts_with(b"OXEN-PATTERN v1 mib=4 start=4096\n"));
    for (i, w) in part[4096..4096 + (4 << 20)].chunks_exact(8).enumerate() {
        let o = 4096 + 8 * i as u64;
        assert_eq!(
            u64::from_le_bytes(w.try_into().unwrap()),
            disk_pattern_word(o),
            "vdb2 byte {o:#x}"
        );
    }
}

// ---- The network: netback, xenbr0 and the uplink (issue 5) -------------------

/// A domu-net guest's config: `name`, `vif` (the list's inside, or none),
/// `extra` (its command line).
fn net_cfg(name: &str, vif: Option<&str>, extra: &str) -> std::path::PathBuf {
    let vif = vif.map_or(String::new(), |v| format!("vif = [ {v} ]\n"));
    ramdisk_file(
        &format!("{name}.cfg"),
        &format!(
            "name = \"{name}\"\nkernel = \"/boot/domu-net\"\nmemory = 32\n{vif}\
             extra = \"{extra}\"\non_poweroff = \"preserve\"\n"
        ),
    )
}

/// The `xl network-list` rows (after the header) in `text` for `mac`.
fn nic_rows<'a>(text: &'a str, mac: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.split_whitespace().nth(2) == Some(mac))
        .collect()
}

#[test]
fn xl_net_two_guests_ping_each_other_over_xenbr0() {
    let guest = image("domu-net");
    let a = net_cfg(
        "pa",
        Some("\"bridge=xenbr0\""),
        "ip=10.0.0.1/24 ping=10.0.0.2 count=5",
    );
    let b = net_cfg(
        "pb",
        Some("\"mac=00:16:3e:00:00:02,bridge=xenbr0\""),
        "ip=10.0.0.2/24 ping=10.0.0.1 count=5",
    );
    let (code, text) = oxen_run_batch_with(
        &[
            "--add",
            &guest.display().to_string(),
            "--add",
            &a.display().to_string(),
            "--add",
            &b.display().to_string(),
            "--timeout",
            "240",
        ],
        "xl info\nxl create pa.cfg\nxl create pb.cfg\nsleep 15\nxl network-list pa pb\n\
         xl console pa\r\x1d\nxl console pb\r\x1d\nxl destroy pa\nxl destroy pb\nxl info\n",
    );
    assert_eq!(code, Some(0), "every xl command should succeed:\n{text}");
    for want in [
        "Dom0: xenbr0: bridge with uplink eth0",
        "domu-net: netfront connects to netback: ok (vif 0, MAC 00:16:3e:00:00:02)",
        "domu-net: domain 1 (pa) is 10.0.0.1/24",
        "domu-net: domain 2 (pb) is 10.0.0.2/24",
        "domu-net: 64 bytes from 10.0.0.2: icmp_seq=",
        "domu-net: 64 bytes from 10.0.0.1: icmp_seq=",
        "domu-net: echo replies from 10.0.0.2: ok (5 of 5 received",
        "domu-net: echo replies from 10.0.0.1: ok (5 of 5 received",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    assert_eq!(
        text.matches("domu-net: 4 checks, 0 failed").count(),
        2,
        "both guests pass every check:\n{text}"
    );
    // Xen's columns: Idx BE Mac handle state(4: connected) ...
    let rows = nic_rows(&text, "00:16:3e:00:00:02");
    assert_eq!(rows.len(), 1, "pb's vif is listed once:\n{text}");
    let f: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(
        (f[0], f[1], f[3], f[4], f.last().copied()),
        ("0", "0", "0", "4", Some("/local/domain/0/backend/vif/2/0")),
        "pb's row:\n{text}"
    );
    assert!(
        text.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() == 8
                && f[2].starts_with("00:16:3e:")
                && f[4] == "4"
                && f[7] == "/local/domain/0/backend/vif/1/0"
        }),
        "pa's vif (a generated 00:16:3e MAC) is listed:\n{text}"
    );
    assert_free_memory_back(&text);
}

/// `oxen-run --batch` with `extra` options, calling `during(console so
/// far)` from another thread while it runs (until `during` returns);
/// returns the exit code, the whole output and what `during` returned.
fn oxen_run_batch_during<R: Send + 'static>(
    extra: &[&str],
    stdin: &str,
    during: impl FnOnce(&dyn Fn() -> String) -> R + Send + 'static,
) -> (Option<i32>, String, R) {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    let _ = images();
    let _slot = qemu_slot();
    let mut child = spawn_oxen_run(extra, stdin);
    let console = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = console.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let view = console.clone();
    let r = std::thread::spawn(move || {
        let so_far = move || String::from_utf8_lossy(&view.lock().unwrap()).into_owned();
        during(&so_far)
    })
    .join()
    .expect("the test's thread");
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let text = format!(
        "---- oxen-run stdout (console) ----\n{}\n---- oxen-run stderr ----\n{err}",
        String::from_utf8_lossy(&console.lock().unwrap())
    );
    (status.code(), text, r)
}

/// A TCP port on 127.0.0.1 nobody listens on now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn xl_net_a_guest_serves_http_to_the_host_through_the_uplink() {
    let guest = image("domu-net");
    let cfg = net_cfg(
        "web",
        Some("\"bridge=xenbr0\""),
        "ip=10.0.2.15/24 gw=10.0.2.2 http=80",
    );
    let port = free_port();
    let net = format!("user,hostfwd=tcp:127.0.0.1:{port}-10.0.2.15:80");
    let url = format!("http://127.0.0.1:{port}/");
    let (code, text, pages) = oxen_run_batch_during(
        &[
            "--add",
            &guest.display().to_string(),
            "--add",
            &cfg.display().to_string(),
            "--net",
            &net,
            "--timeout",
            "300",
        ],
        "xl info\nxl create web.cfg\nsleep 25\nxl console web\r\x1d\nxl destroy web\nxl info\n",
        {
            let url = url.clone();
            move |console: &dyn Fn() -> String| {
                // Once Dom0 sleeps, the guest is starting: ask until it answers
                // (twice, to see its counter move).
                let start = std::time::Instant::now();
                while !console().contains("sleep 25") && start.elapsed() < Duration::from_secs(150)
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                let mut pages = Vec::new();
                for _ in 0..10 {
                    let out = Command::new("curl")
                        .args(["-s", "--max-time", "5", &url])
                        .output()
                        .expect("run curl");
                    let body = String::from_utf8_lossy(&out.stdout).into_owned();
                    if body.contains("Hello from Oxen guest") {
                        pages.push(body);
                        if pages.len() == 2 {
                            break;
                        }
                    } else {
                        std::thread::sleep(Duration::from_secs(2));
                    }
                }
                pages
            }
        },
    );
    assert_eq!(code, Some(0), "every xl command should succeed:\n{text}");
    assert_eq!(
        pages.len(),
        2,
        "curl {url} should get the guest's page twice (got {pages:?}):\n{text}"
    );
    assert!(
        pages[0].starts_with(
            "Hello from Oxen guest web (domain 1), served by smoltcp over netfront: request #"
        ),
        "the page the guest wrote: {pages:?}"
    );
    assert_ne!(pages[0], pages[1], "the guest's counter moves: {pages:?}");
    for want in [
        "domu-net: domain 1 (web) is 10.0.2.15/24 via 10.0.2.2",
        "domu-net: serving http on port 80",
        "domu-net: http: request #1 from 10.0.2.2:",
        "domu-net: http: request #2 from 10.0.2.2:",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    assert_free_memory_back(&text);
}

#[test]
fn xl_net_network_attach_list_detach_on_a_running_guest() {
    let guest = image("domu-net");
    let peer = net_cfg("peer", Some("\"bridge=xenbr0\""), "ip=10.0.0.1/24 serve");
    let hot = net_cfg("hot", None, "hotplug ip=10.0.0.3/24 ping=10.0.0.1 count=3");
    let (code, text) = oxen_run_batch_with(
        &[
            "--add",
            &guest.display().to_string(),
            "--add",
            &peer.display().to_string(),
            "--add",
            &hot.display().to_string(),
            "--timeout",
            "240",
        ],
        "xl info\nxl create peer.cfg\nxl create hot.cfg\nsleep 3\nxl network-list hot\n\
         xl network-attach hot mac=00:16:3e:00:00:33 bridge=xenbr0\nsleep 10\n\
         xl network-list hot\nxl network-detach hot 0\nxl network-list hot\nsleep 3\n\
         xl console hot\r\x1d\nxl destroy hot\nxl destroy peer\nxl info\n",
    );
    assert_eq!(code, Some(0), "every xl command should succeed:\n{text}");
    for want in [
        "domu-net: waiting for device/vif/0 (xl network-attach)",
        "domu-net: device/vif/0 appeared",
        "domu-net: netfront connects to netback: ok (vif 0, MAC 00:16:3e:00:00:33)",
        "domu-net: echo replies from 10.0.0.1: ok (3 of 3 received",
        "domu-net: the backend closed the vif (xl network-detach) and netfront let go: ok",
        // What Dom0 still maps afterwards: the peer's two ring pages.
        "Dom0: vif2.0 removed (2 guest pages grant-mapped by Dom0)",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    let rows = nic_rows(&text, "00:16:3e:00:00:33");
    assert_eq!(
        rows.len(),
        1,
        "listed once: connected, and not after the detach:\n{text}"
    );
    let f: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(
        (f[0], f[4], f[7]),
        ("0", "4", "/local/domain/0/backend/vif/2/0"),
        "hot's vif, connected:\n{text}"
    );
    assert_free_memory_back(&text);
}

#[test]
fn xl_net_a_hostile_frontend_is_cut_off_while_others_keep_pinging() {
    let guest = image("domu-net");
    let hostile = image("domu-nethostile");
    let a = net_cfg(
        "pa",
        Some("\"bridge=xenbr0\""),
        "ip=10.0.0.1/24 ping=10.0.0.2 count=40",
    );
    let b = net_cfg(
        "pb",
        Some("\"bridge=xenbr0\""),
        "ip=10.0.0.2/24 ping=10.0.0.1 count=40",
    );
    let h = ramdisk_file(
        "evil.cfg",
        "name = \"evil\"\nkernel = \"/boot/domu-nethostile\"\nmemory = 16\n\
         vif = [ \"bridge=xenbr0\" ]\n",
    );
    let (code, text) = oxen_run_batch_with(
        &[
            "--add",
            &guest.display().to_string(),
            "--add",
            &hostile.display().to_string(),
            "--add",
            &a.display().to_string(),
            "--add",
            &b.display().to_string(),
            "--add",
            &h.display().to_string(),
            "--timeout",
            "240",
        ],
        "xl info\nxl create pa.cfg\nxl create pb.cfg\nsleep 2\nxl create evil.cfg\nsleep 20\n\
         xl network-list evil\nxl console evil\r\x1d\nxl console pa\r\x1d\nxl console pb\r\x1d\n\
         xl destroy evil\nxl destroy pa\nxl destroy pb\nxl info\n",
    );
    assert_eq!(
        code,
        Some(0),
        "Dom0 and every xl command should be fine:\n{text}"
    );
    for want in [
        "domu-nethostile: netfront connects to netback: ok",
        "domu-nethostile: a request with a grant never made gets NETIF_RSP_ERROR: ok",
        "domu-nethostile: netback disconnects the vif after an index past the ring (Closing): ok",
        "domu-nethostile: 4 checks, 0 failed; done attacking netback",
        "Dom0: vif3.0 disconnected: Impossible number of tx requests",
        "domu-net: echo replies from 10.0.0.2: ok (40 of 40 received",
        "domu-net: echo replies from 10.0.0.1: ok (40 of 40 received",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    // evil's vif: state 5 (closing), the error kept.
    assert!(
        text.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() == 8 && f[4] == "5" && f[7] == "/local/domain/0/backend/vif/3/0"
        }),
        "evil's vif is listed Closing:\n{text}"
    );
    assert_free_memory_back(&text);
}

#[test]
fn xl_disk_qcow2_image_file_on_fat_keeps_a_guests_pattern_and_passes_qemu_img_check() {
    let guest = image("domu-disk");
    let dir = ramdisk_file("q.cfg", "").parent().unwrap().to_path_buf();
    let host = qemu_img("qcow-host.img", 64);
    let h = host.display().to_string();
    host_tool("mkfs.fat", &["-F", "32", &h]);
    let q = dir.join("guest.qcow2");
    let _ = std::fs::remove_file(&q);
    let qs = q.display().to_string();
    host_tool(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "preallocation=metadata",
            &qs,
            "12M",
        ],
    );
    host_tool("mcopy", &["-i", &h, &qs, "::guest.qcow2"]);
    // A qcow2 image without preallocation in the ramdisk: it cannot grow,
    // so its writes fail cleanly.
    let small = dir.join("small.qcow2");
    let _ = std::fs::remove_file(&small);
    host_tool(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            &small.display().to_string(),
            "12M",
        ],
    );
    let cfg = ramdisk_file(
        "q.cfg",
        "name = \"q\"\nkernel = \"/boot/domu-disk\"\nmemory = 16\n\
         extra = \"mode=pattern mib=8\"\n\
         disk = [ \"format=qcow2,vdev=xvda,access=rw,target=/mnt/vda/guest.qcow2\" ]\n\
         on_reboot = \"restart\"\non_poweroff = \"preserve\"\n",
    );
    let full = ramdisk_file(
        "full.cfg",
        "name = \"full\"\nkernel = \"/boot/domu-disk\"\nmemory = 16\n\
         extra = \"mode=pattern mib=8\"\n\
         disk = [ \"/boot/small.qcow2,qcow2,xvda,rw\" ]\non_poweroff = \"preserve\"\n",
    );
    let phy = ramdisk_file(
        "phyq.cfg",
        "name = \"phyq\"\nkernel = \"/boot/domu-disk\"\nmemory = 16\n\
         disk = [ \"format=qcow2,vdev=xvda,access=rw,target=/dev/vda\" ]\n",
    );
    let args = files_and_disks(&[&guest, &cfg, &full, &small, &phy], &[&host]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, text) = oxen_run_batch_timed(
        &args,
        "xl info\nxl create phyq.cfg\nxl create q.cfg\nxl create full.cfg\nsleep 8\n\
         xl console q\r\x1d\nxl console full\r\x1d\nxl destroy q\nxl destroy full\nxl info\n",
        Duration::from_secs(180),
    );
    for want in [
        "disk xvda: /dev/vda: a qcow2 image must be a file",
        "domu-disk: after the reboot the pattern reads back: ok (8 MiB",
        "qcow2 image full: create it with -o preallocation=metadata or larger",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    assert!(
        text.contains("domu-disk: ERROR: write at byte 0: Io"),
        "the full image's writes fail in the guest:\n{text}"
    );
    assert_eq!(code, Some(1), "only phyq's create fails:\n{text}");
    assert_free_memory_back(&text);
    let back = dir.join("back.qcow2");
    let _ = std::fs::remove_file(&back);
    host_tool(
        "mcopy",
        &["-i", &h, "::guest.qcow2", &back.display().to_string()],
    );
    host_tool("qemu-img", &["check", "-q", &back.display().to_string()]);
    let raw = dir.join("back.raw");
    host_tool(
        "qemu-img",
        &[
            "convert",
            "-f",
            "qcow2",
            "-O",
            "raw",
            &back.display().to_string(),
            &raw.display().to_string(),
        ],
    );
    let data = std::fs::read(&raw).unwrap();
    assert!(data.starts_with(b"OXEN-PATTERN v1 mib=8 start=4096\n"));
    for (i, w) in data[4096..4096 + (8 << 20)].chunks_exact(8).enumerate() {
        let o = 4096 + 8 * i as u64;
        assert_eq!(
            u64::from_le_bytes(w.try_into().unwrap()),
            disk_pattern_word(o),
            "guest.qcow2 byte {o:#x}"
        );
    }
    host_tool("fsck.fat", &["-n", &h]);
}

#[test]
fn hvm_svm_is_detected_and_its_world_switch_runs_a_guest_at_boot() {
    // -cpu max (the default) offers SVM with nested paging under TCG.
    let (code, text) = oxen_run_batch("xl info\n");
    assert_eq!(code, Some(0), "{text}");
    for want in [
        "HVM: SVM (AMD-V) revision 1, 16 ASIDs, nested paging yes",
        "HVM: SVM world switch self-test passed: the guest said \"hvm: hello from the self-test guest\" \
         (36 IOIO exits), got \"Oxen\" from 65 CPUID, 1 nested page fault, halted; CPUID exit round trip median ",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    let caps = |text: &str| -> Vec<String> {
        text.lines()
            .find_map(|l| l.strip_prefix("virt_caps              :"))
            .map(|c| c.split_whitespace().map(String::from).collect())
            .unwrap_or_default()
    };
    let c = caps(&text);
    assert!(
        ["pv", "hvm", "hap"]
            .iter()
            .all(|w| c.iter().any(|x| x == w)),
        "xl info's virt_caps should say pv hvm hap: {c:?}\n{text}"
    );
    // qemu64 has SVM without nested paging: not enough, and said so.
    let (code, text) = oxen_run_batch_with(&["--cpu", "qemu64"], "xl info\n");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("HVM: SVM without nested paging (or ASIDs): Oxen's HVM needs NPT"),
        "{text}"
    );
    let c = caps(&text);
    assert!(
        c.iter().any(|x| x == "pv") && !c.iter().any(|x| x == "hvm" || x == "hap"),
        "xl info must not claim hvm/hap without NPT: {c:?}\n{text}"
    );
    // Without SVM the boot says so and goes on.
    let (code, text) = oxen_run_batch_with(&["--cpu", "qemu64,-svm"], "true\n");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("HVM: no hardware virtualization (neither SVM nor VMX)"),
        "{text}"
    );
    assert!(!text.contains("self-test"), "{text}");
}

/// The `life: count N pages ok K/P` lines of a console text: (N, K, P).
fn life_counts(text: &str) -> Vec<(u64, u64, u64)> {
    text.lines()
        .filter_map(|l| l.split("life: count ").nth(1))
        .filter_map(|r| {
            let f: Vec<&str> = r.split_whitespace().collect();
            let (k, p) = f.get(3)?.split_once('/')?;
            Some((f.first()?.parse().ok()?, k.parse().ok()?, p.parse().ok()?))
        })
        .collect()
}

/// The number after `prefix` in the first line holding it.
fn number_after(text: &str, prefix: &str) -> Option<u64> {
    let rest = text.split(prefix).nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

// Issue 7, PV save/restore, the Xen way: `xl save` asks the guest to
// suspend through `control/shutdown`; the guest (domu-life mode=suspend,
// which counts and checks 256 pages of patterns every ~200 ms) suspends
// with SCHEDOP_shutdown(suspend); Dom0 writes its memory (page tables
// canonicalised) to a file on a FAT disk. `xl save -c` resumes it at once
// (it says the suspend was cancelled and counts on); `xl save` destroys
// it; `xl restore` builds a new domain from the file and the guest counts
// on from where it was, every page intact, after re-binding its events
// and republishing its p2m; `xl shutdown` still works (its xenstore
// watch is back), and every frame comes back after. On a second boot, a
// truncated copy is refused with nothing left behind and the good file
// restores again, and a save that cannot be written (a full disk) leaves
// the guest running and no file behind.
#[test]
fn xl_save_and_xl_restore_a_pv_guest_which_counts_on_with_its_memory_intact() {
    let cfg = ramdisk_file(
        "life-save.cfg",
        "name = \"life\"\nkernel = \"/boot/domu-life\"\nmemory = 32\nvcpus = 2\n\
         extra = \"mode=suspend disk=1\"\non_poweroff = \"preserve\"\n\
         disk = [ \"/mnt/vda/life-disk.img,raw,xvda,rw\" ]\n",
    );
    let dir = cfg.parent().unwrap().to_path_buf();
    let disk = dir.join("pv-save-disk.img");
    oxen_tests::tools::fat32_disk(&disk, 160);
    // The guest's own disk: an image file on the same FAT volume.
    let guest_disk = dir.join("life-disk.img");
    std::fs::write(&guest_disk, vec![0u8; 1 << 20]).unwrap();
    oxen_tests::tools::fat_put(&disk, &guest_disk, "/life-disk.img");
    let disk_s = disk.display().to_string();
    let guest = image("domu-life").display().to_string();
    let cfg_s = cfg.display().to_string();
    let run = |stdin: &str| {
        oxen_run_batch_timed(
            &["--disk", &disk_s, "--add", &guest, "--add", &cfg_s],
            stdin,
            Duration::from_secs(200),
        )
    };
    let (code, text) = run(
        "xl info\nxl create life-save.cfg\nsleep 2\nxl save -c life /mnt/vda/life-c.save\n\
         sleep 2\nxl list\nxl console life\r\x1d\n\
         xl save life /mnt/vda/life.save\nxl list\n\
         xl restore /mnt/vda/life.save\nsleep 3\nxl list\nxl console life\r\x1d\n\
         xl shutdown -w life\nxl console life\r\x1d\nxl destroy life\nxl info\n",
    );
    assert_eq!(code, Some(0), "every command should succeed:\n{text}");
    for want in [
        "life: p2m frame list list ok at boot: max_pfn 8192, 16 p2m pages, 1 frame lists",
        "xc: info: Saving domain 1, type x86 PV",
        "life: suspend cancelled at count ",
        "xc: info: Restoring domain 2, type x86 PV",
        "xc: info: Restore successful",
        "life: p2m frame list list ok after the restore",
        "domu-life: every page kept its pattern at every tick: ok",
        "life: disk xvda connected, pattern written",
        "life: disk xvda reconnected",
        "domu-life: the disk kept its pattern at every check: ok",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    // -c: the guest ran on (listed, counting past the cancel).
    let cancelled = number_after(&text, "life: suspend cancelled at count ").unwrap();
    let after_save = text
        .split("xl save life /mnt/vda/life.save")
        .nth(1)
        .unwrap();
    let before_save = text
        .split("xl save life /mnt/vda/life.save")
        .next()
        .unwrap();
    assert!(
        life_counts(before_save).iter().any(|c| c.0 > cancelled),
        "after xl save -c the guest counts on past {cancelled}:\n{text}"
    );
    assert_eq!(
        list_rows(before_save, "life").len(),
        1,
        "xl save -c leaves it running:\n{text}"
    );
    // xl save: gone; xl restore: back, counting on from where it was.
    let (saved_list, restored) = after_save.split_once("xl restore").unwrap();
    // Up to the shutdown (the console after it shows the backlog again).
    let restored = restored.split("xl shutdown").next().unwrap();
    assert!(
        list_rows(saved_list, "life").is_empty(),
        "xl save destroys the guest:\n{text}"
    );
    let resumed = number_after(restored, "life: resumed in a new domain at count ")
        .unwrap_or_else(|| panic!("the restored guest says it resumed:\n{text}"));
    let before = life_counts(before_save);
    let last_before = before.iter().map(|c| c.0).max().unwrap();
    assert!(
        resumed >= last_before,
        "it resumed at count {resumed}, at least the {last_before} seen before the save:\n{text}"
    );
    // Both vCPUs work before, after the cancelled save and after the
    // restore (vCPU 1 parked around each suspend, started afresh in the
    // new domain).
    let (before_cancel, after_cancel) = before_save
        .split_once("life: suspend cancelled at count ")
        .unwrap();
    for (when, part) in [
        ("before the saves", before_cancel),
        ("after xl save -c", after_cancel),
        ("after the restore", restored),
    ] {
        assert!(
            part.contains("life: vcpus working [0, 1]"),
            "both vCPUs work {when}:\n{text}"
        );
    }
    let after = life_counts(restored);
    assert!(after.len() >= 3, "the restored guest counts:\n{text}");
    assert_eq!(after[0].0, resumed + 1, "the count never restarts:\n{text}");
    assert!(
        after.windows(2).all(|w| w[1].0 == w[0].0 + 1),
        "it counts one by one: {after:?}"
    );
    assert!(
        before
            .iter()
            .chain(&after)
            .all(|&(_, k, p)| k == p && p == 256),
        "every page checks at every tick, before and after:\n{text}"
    );
    // Its disk: reconnected after the restore (blkfront to the new
    // domain's blkback), the pattern written before the save still there.
    assert!(
        !text.contains("PATTERN BAD"),
        "the disk keeps its data:\n{text}"
    );
    let disk_checks: Vec<u64> = restored
        .lines()
        .filter_map(|l| l.split("life: disk at count ").nth(1))
        .filter(|r| r.contains("pattern ok"))
        .filter_map(|r| r.split(':').next()?.parse().ok())
        .collect();
    assert!(
        disk_checks.iter().any(|&n| n > resumed),
        "the restored guest reads its disk back intact:\n{text}"
    );
    assert_eq!(
        text.matches("life: counting with 256 pages").count(),
        1,
        "it booted once (the restored domain's console starts with its resume):\n{text}"
    );
    let free = free_memory(&text);
    assert_eq!(free.len(), 2, "two `xl info`s:\n{text}");
    assert_eq!(free[0], free[1], "every frame comes back:\n{text}");

    // The file as written, and a truncated copy.
    let saved = dir.join("life.save");
    oxen_tests::tools::fat_get(&disk, "/life.save", &saved);
    let image_bytes = std::fs::read(&saved).unwrap();
    assert_eq!(&image_bytes[..32], b"Xen saved domain, xl format\n \0 \r");
    assert!(
        image_bytes.len() > 32 << 20,
        "the image holds the guest's 32 MiB: {} bytes",
        image_bytes.len()
    );
    let trunc = dir.join("life-trunc.save");
    std::fs::write(&trunc, &image_bytes[..image_bytes.len() * 2 / 3]).unwrap();
    oxen_tests::tools::fat_put(&disk, &trunc, "/trunc.save");
    // Leave too little room for another image: that save fails, and the
    // guest runs on (resumed as after `-c`), with no file left behind.
    let filler = dir.join("filler.bin");
    std::fs::write(&filler, vec![0u8; 52 << 20]).unwrap();
    oxen_tests::tools::fat_put(&disk, &filler, "/filler.bin");
    let (code, text) = run(
        "xl info\nxl restore /mnt/vda/trunc.save\nxl list\nxl info\n\
         xl restore /mnt/vda/life.save\nsleep 3\nxl console life\r\x1d\n\
         xl save life /mnt/vda/again.save\nsleep 2\nxl list\nls /mnt/vda\n\
         xl console life\r\x1d\nxl destroy life\n",
    );
    assert!(
        text.contains("VERDICT: FAILURE: 2 commands failed"),
        "exactly the truncated restore and the save to a full disk fail:\n{text}"
    );
    assert!(
        text.contains("xl save: no space left on the FAT file system"),
        "the full disk is reported:\n{text}"
    );
    let failed_save = text
        .split("xl save life /mnt/vda/again.save")
        .nth(1)
        .unwrap();
    let (listing, console) = failed_save.split_once("xl console life").unwrap();
    assert_eq!(
        list_rows(listing, "life").len(),
        1,
        "the guest runs on after the failed save:\n{text}"
    );
    let ls = listing.split("ls /mnt/vda").nth(1).unwrap();
    assert!(
        ls.contains("life.save") && !ls.contains("again.save"),
        "no partial file is left:\n{text}"
    );
    let cancelled = number_after(console, "life: suspend cancelled at count ")
        .unwrap_or_else(|| panic!("the guest was resumed (cancelled):\n{text}"));
    assert!(
        life_counts(console)
            .iter()
            .any(|c| c.0 > cancelled && c.1 == 256),
        "and counts on:\n{text}"
    );
    assert_ne!(code, Some(0));
    assert!(
        text.contains("the image ends early (truncated)"),
        "the truncated image is refused clearly:\n{text}"
    );
    let listed = text.split("xl list").nth(1).unwrap();
    assert!(
        list_rows(listed.split("xl info").next().unwrap(), "life").is_empty(),
        "nothing was created:\n{text}"
    );
    let free = free_memory(&text);
    assert_eq!(free.len(), 2, "two `xl info`s:\n{text}");
    assert_eq!(
        free[0], free[1],
        "the refused restore leaves nothing:\n{text}"
    );
    let back = dir.join("life-disk-back.img");
    oxen_tests::tools::fat_get(&disk, "/life-disk.img", &back);
    let data = std::fs::read(&back).unwrap();
    assert!(
        (0..64 << 10).all(|i: usize| data[i] == (i.wrapping_mul(131) ^ (i >> 9)) as u8),
        "the guest's disk image holds its pattern after it all"
    );
    let again = text.split("xl restore /mnt/vda/life.save").nth(1).unwrap();
    let again = again.split("xl save").next().unwrap();
    let resumed2 = number_after(again, "life: resumed in a new domain at count ")
        .unwrap_or_else(|| panic!("restored on a rebooted host:\n{text}"));
    assert_eq!(resumed2, resumed, "the same image, the same count:\n{text}");
    let after = life_counts(again);
    assert!(
        !after.is_empty() && after[0].0 == resumed + 1 && after.iter().all(|c| c.1 == 256),
        "it counts on after a restore on a rebooted host:\n{text}"
    );
}

// Issue 7: `xl save` of a PV guest that does not suspend (domu-life
// mode=balloon leaves `suspend` in control/shutdown unacknowledged, as a
// kernel without PV suspend support does) gives up after 30 s with a
// clear error, withdraws the request, leaves no file and the guest
// running: it still obeys `xl shutdown`.
#[test]
fn xl_save_of_a_pv_guest_that_does_not_suspend_times_out_and_leaves_it_running() {
    let cfg = ramdisk_file(
        "life-nosuspend.cfg",
        "name = \"life\"\nkernel = \"/boot/domu-life\"\nmemory = 32\n\
         extra = \"mode=balloon\"\non_poweroff = \"preserve\"\n",
    );
    let dir = cfg.parent().unwrap().to_path_buf();
    let disk = dir.join("pv-nosuspend-disk.img");
    oxen_tests::tools::fat32_disk(&disk, 64);
    let (code, text) = oxen_run_batch_timed(
        &[
            "--disk",
            &disk.display().to_string(),
            "--add",
            &image("domu-life").display().to_string(),
            "--add",
            &cfg.display().to_string(),
        ],
        "xl create life-nosuspend.cfg\nsleep 2\nxl save life /mnt/vda/life.save\nxl list\n\
         ls /mnt/vda\nxl shutdown -w life\nxl console life\r\x1d\nxl destroy life\n",
        Duration::from_secs(200),
    );
    assert!(
        text.contains("VERDICT: FAILURE: 1 command failed"),
        "only the save fails:\n{text}"
    );
    assert_ne!(code, Some(0));
    assert!(
        text.contains(
            "xl save: life did not suspend within 30 s (it did not acknowledge control/shutdown: no PV suspend support?); it runs on"
        ),
        "the timeout says why:\n{text}"
    );
    let after = text.split("xl save life").nth(1).unwrap();
    let rows = list_rows(after.split("ls /mnt/vda").next().unwrap(), "life");
    assert!(
        rows.len() == 1 && !rows[0].3.contains('s'),
        "the guest runs on, not shut down: {rows:?}\n{text}"
    );
    assert!(
        !after
            .split("ls /mnt/vda")
            .nth(1)
            .unwrap()
            .split("xl shutdown")
            .next()
            .unwrap()
            .contains("life.save"),
        "no file is left:\n{text}"
    );
    assert!(
        text.contains("domu-life: worker checked") && text.contains("shutting down (poweroff)"),
        "xl shutdown still reaches it:\n{text}"
    );
}
