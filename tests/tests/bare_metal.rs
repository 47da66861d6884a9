//! Bare-metal test kernels (`hvm-guests`) on plain QEMU TCG, with no Oxen.
//!
//! Issue 6 will run these kernels unmodified as HVM guests; this proves the
//! kernels themselves first, on the machine they were written for. Each run
//! boots `bare-hello` on q35 (`-cpu max`, 256 MiB) and asserts that every
//! check line says `ok`, the verdict is `bare: all checks passed`, and QEMU
//! exited by itself with status 0 (the kernel's ACPI S5 power-off) before
//! the timeout. Runs: PVH entry with 2 CPUs (the second started by
//! INIT/SIPI/SIPI), PVH with 1 CPU (the SMP check says skipped), and the
//! Multiboot2 entry through a GRUB ISO with 2 CPUs. And `bare-bench` (the
//! kernel `scripts/bench --only hvm` times exits with) once, PVH with 1
//! CPU: every `BENCH` line is there and it powers off; its numbers are
//! never judged.
//!
//! `OXEN_ECHO=1 cargo test -p oxen-tests --test bare_metal -- --nocapture`
//! shows the consoles live.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use oxen_tests::bench::hvm as bench;
use oxen_tests::images::{build_images, work_dir, BARE_METAL_KERNELS};
use oxen_tests::qemu::Qemu;
use oxen_tests::RunResult;

// ---- What the console must show (hvm-guests' wording) ---------------------

/// The kernel under test.
const KERNEL: &str = "bare-hello";
/// The checks every run must report as `bare: <check>: ok`.
const CHECKS: &[&str] = &[
    "cpuid",
    "paging",
    "acpi",
    "port i/o (pit)",
    "port i/o (cmos rtc)",
    "mmio (lapic)",
    "mmio (ioapic)",
    "lapic timer",
];
/// The SMP check: `ok` with two CPUs, `skipped (...)` with one.
const SMP_CHECK: &str = "smp";
/// The second CPU's own line.
const AP_UP: &str = "bare: cpu1 up (apic id ";
/// Both boot loaders give a memory map that says the trampoline page is RAM.
const TRAMPOLINE_IS_RAM: &str = "bare: smp: the trampoline page 0x8000 is RAM";
/// Lines that the kernel prints for the boot path it was entered by.
const BOOTED_PVH: &str = "bare: booted via PVH";
const BOOTED_MB2: &str = "bare: booted via Multiboot2 (";
/// Where the RSDP came from, per boot path.
const RSDP_FROM_PVH: &str = "(from hvm_start_info.rsdp_paddr)";
const RSDP_FROM_MB2: &str = "(from the Multiboot2 ACPI tag)";
/// The verdict, and the last line before the S5 write.
const ALL_PASSED: &str = "bare: all checks passed";
const POWERING_OFF: &str = "bare: powering off (ACPI S5";
/// What a failed check or a fault looks like.
const FAILED: &str = ": FAILED";

// ---- Limits ----------------------------------------------------------------

/// One run, boot to power-off (about 1.5 s when the machine is idle).
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

// ---- Helpers ----------------------------------------------------------------

fn kernel() -> PathBuf {
    assert!(BARE_METAL_KERNELS.contains(&KERNEL));
    let images = build_images().unwrap_or_else(|e| panic!("cannot run the bare-metal tests: {e}"));
    images.get(KERNEL).unwrap_or_else(|e| panic!("{e}"))
}

/// The machine the brief names: q35, TCG, `-cpu max`, 256 MiB.
fn machine(name: &str, smp: u32) -> Qemu {
    Qemu::new(name).cpu("max").mem("256M").accel("tcg").smp(smp)
}

/// Asserts what every run must show; `smp_ok` says whether the SMP check
/// must be `ok` (else `skipped`).
fn assert_passed(r: &RunResult, smp_ok: bool) {
    if let Some(l) = r.find_line(FAILED) {
        r.fail(&format!("a check failed: {l:?}"));
    }
    for c in CHECKS {
        r.assert_line(&format!("bare: {c}: ok"));
    }
    if smp_ok {
        r.assert_lines_in_order(&[TRAMPOLINE_IS_RAM, AP_UP, &format!("bare: {SMP_CHECK}: ok")]);
    } else {
        r.assert_line(&format!("bare: {SMP_CHECK}: skipped ("));
        r.assert_no_line(AP_UP);
    }
    r.assert_lines_in_order(&[ALL_PASSED, POWERING_OFF]);
    // QEMU exits 0 on an ACPI power-off (and on a reset under -no-reboot;
    // the kernel's last line says it was the S5 write).
    if r.timed_out || r.exit.qemu_status() != Some(0) {
        r.fail(&format!(
            "expected QEMU to exit by itself with status 0 (the kernel's S5 power-off), but it ended with \"{}\"",
            r.exit_summary()
        ));
    }
    let last = r.lines().filter(|l| l.starts_with("bare: ")).last();
    if !last.is_some_and(|l| l.starts_with(POWERING_OFF)) {
        r.fail(&format!(
            "the kernel's last line should be the power-off line, it is {last:?}"
        ));
    }
    eprintln!(
        "{}: all checks passed; QEMU exited by itself (S5 power-off) after {:.1?}",
        r.name, r.elapsed
    );
}

/// A GRUB ISO in `work` that boots `kernel` with `multiboot2`.
fn grub_iso(work: &Path, kernel: &Path) -> PathBuf {
    let boot = work.join("iso-root").join("boot");
    let grub = boot.join("grub");
    std::fs::create_dir_all(&grub).unwrap();
    std::fs::copy(kernel, boot.join(KERNEL)).unwrap();
    std::fs::write(
        grub.join("grub.cfg"),
        format!(
            "set timeout=0\nset default=0\nmenuentry \"{KERNEL}\" {{\n    multiboot2 /boot/{KERNEL}\n    boot\n}}\n"
        ),
    )
    .unwrap();
    let iso = work.join(format!("{KERNEL}.iso"));
    let out = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&iso)
        .arg(work.join("iso-root"))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run grub-mkrescue ({e}): install grub-common, grub-pc-bin, xorriso and mtools")
        });
    assert!(
        out.status.success() && iso.is_file(),
        "grub-mkrescue failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    iso
}

// ---- Tests -------------------------------------------------------------------

/// `-kernel` (QEMU's PVH entry), two CPUs: every check passes, the second
/// CPU reports in, the kernel powers the machine off.
#[test]
fn bare_hello_pvh_smp2() {
    let r = machine("bare-hello-pvh-smp2", 2)
        .kernel(kernel())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"))
        .wait_exit(RUN_TIMEOUT);
    assert_passed(&r, true);
    r.assert_line(BOOTED_PVH);
    r.assert_line(RSDP_FROM_PVH);
    r.assert_line("bare: acpi: MADT: 2 CPUs enabled");
}

/// One CPU: the MADT lists one, the SMP check says skipped, the run passes.
#[test]
fn bare_hello_pvh_smp1_skips_smp() {
    let r = machine("bare-hello-pvh-smp1", 1)
        .kernel(kernel())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"))
        .wait_exit(RUN_TIMEOUT);
    assert_passed(&r, false);
    r.assert_line(BOOTED_PVH);
    r.assert_line("bare: acpi: MADT: 1 CPUs enabled");
}

/// The Multiboot2 entry, through GRUB (as Bochs and real machines boot
/// it), two CPUs: the RSDP comes from GRUB's ACPI tag.
#[test]
fn bare_hello_multiboot2_grub_smp2() {
    let work = work_dir("bare-hello-multiboot2").unwrap();
    let iso = grub_iso(&work, &kernel());
    let r = machine("bare-hello-multiboot2-smp2", 2)
        .iso(iso)
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"))
        .wait_exit(RUN_TIMEOUT);
    assert_passed(&r, true);
    r.assert_line(BOOTED_MB2);
    r.assert_line(RSDP_FROM_MB2);
}

/// bare-bench (PVH, one CPU) prints every figure `scripts/bench --only
/// hvm` reads, each a positive median over a positive count, and powers
/// the machine off; how big the figures are is never judged.
#[test]
fn bare_bench_pvh_prints_every_figure_and_powers_off() {
    assert!(BARE_METAL_KERNELS.contains(&bench::KERNEL));
    let images = build_images().unwrap_or_else(|e| panic!("cannot run the bare-metal tests: {e}"));
    let kernel = images.get(bench::KERNEL).unwrap_or_else(|e| panic!("{e}"));
    let r = machine("bare-bench-pvh-smp1", 1)
        .kernel(kernel)
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"))
        .wait_exit(RUN_TIMEOUT);
    let problems = bench::problems(&r.log);
    if !problems.is_empty() {
        r.fail(&format!("bare-bench: {}", problems.join("; ")));
    }
    let lines: Vec<String> = bench::ids()
        .iter()
        .map(|id| format!("BENCH {id} "))
        .collect();
    let mut order: Vec<&str> = lines.iter().map(String::as_str).collect();
    order.push(bench::POWERING_OFF);
    r.assert_lines_in_order(&order);
    if r.timed_out || r.exit.qemu_status() != Some(0) {
        r.fail(&format!(
            "expected QEMU to exit by itself with status 0 (the kernel's S5 power-off), but it ended with \"{}\"",
            r.exit_summary()
        ));
    }
}
