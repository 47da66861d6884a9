//! Boot tests under Bochs with an Intel VT-x CPU (VMX with EPT): Oxen from
//! a GRUB ISO, as on a real Intel machine (`oxen_tests::bochs`).
//!
//! Every run has a timeout and fails on it; none passes on silence.  Bochs
//! and QEMU share the harness's machine slots.  A boot to Dom0's prompt
//! takes about 7 s of Bochs on an idle core (its guest clock is virtual:
//! `clock: sync=none`); these tests run several Bochs at once on the
//! harness's two cores, and a slow host stretches that several times (a
//! clean-clone run timed out the two-CPU shell test at 50 s), so each run
//! here is allowed [`BOOT_TIMEOUT`].
//! `OXEN_ECHO=1` copies each console to stderr live:
//! `OXEN_ECHO=1 cargo test -p oxen-tests --test vmx -- --nocapture`.
//!
//! The console lines asserted on are the constants right below.

use std::time::Duration;

use oxen_tests::bochs::{self, BochsMachine};
use oxen_tests::boot::{BootPath, OxenBoot, Payload};
use oxen_tests::images::{build_images, test_kernel, work_dir, Images, TestKernel};
use oxen_tests::{Exit, RunResult};

// ---- What the console must show ------------------------------------------

/// xen-core's banner line.
const BANNER: &str = "(Xen 4.17 ABI)";
/// GRUB's Multiboot2 path.
const MULTIBOOT2_LINE: &str = "Boot protocol: Multiboot2";
/// xen-core's HVM detection line under a VT-x CPU, with what it found ...
const VMX_LINE: &str = "HVM: VMX (Intel VT-x) revision";
/// ... which must be what its VMX backend needs ...
const VMX_FEATURES: &str = "EPT yes, unrestricted guest yes";
/// ... and its boot self-test of the world switch.
const VMX_SELFTEST_LINE: &str = "HVM: VMX world switch self-test passed";
/// It must not find AMD-V on an Intel CPU.
const SVM_LINE: &str = "HVM: SVM";
/// xen-core reports Dom0's first console line.
const FIRST_LINE_FIGURE: &str = "Dom0 first console line after";
/// xen-core's panic line for a fault in itself (`selftest=fault`).
const HV_FAULT_PANIC: &str = "Panic on CPU 0: fatal trap page fault";
/// The test Dom0 for the quick boot: pv-guest-lib's hello example (prints
/// three lines and its verdict, then powers off).
const QUICK_KERNEL: &str = "examples/hello";
/// The HVM test Dom0: runs HVM guests (issue 6).
const HVM_KERNEL: &str = "pv-hvmrun";

// ---- Limits ---------------------------------------------------------------

/// Any single Bochs run, start to stop.
const BOOT_TIMEOUT: Duration = Duration::from_secs(150);
/// pv-hvmrun runs seven guests, one of which spins until destroyed (about
/// 25 s under Bochs here, with the ISO).
const HVM_TIMEOUT: Duration = Duration::from_secs(180);

// ---- Helpers --------------------------------------------------------------

fn images() -> &'static Images {
    match build_images() {
        Ok(i) => i,
        Err(e) => panic!("cannot run boot tests: {e}"),
    }
}

fn image(name: &str) -> std::path::PathBuf {
    images().get(name).unwrap_or_else(|e| panic!("{e}"))
}

/// The default boot (dom0, its ramdisk, `loglvl=info`) through GRUB.
fn default_boot() -> OxenBoot {
    OxenBoot {
        path: BootPath::Grub,
        ..OxenBoot::new(image("xen-core"), image("dom0")).unwrap()
    }
}

/// Boots test kernel `k` as Dom0 the way tests/boot.rs does (its ramdisk
/// files and hypervisor options).
fn kernel_boot(k: &TestKernel) -> OxenBoot {
    let d = default_boot();
    let mut files = oxen_tests::boot::standard_files(images());
    files.extend(
        oxen_tests::boot::kernel_files(images(), k.ramdisk_files())
            .unwrap_or_else(|e| panic!("{}: {e}", k.name)),
    );
    OxenBoot {
        dom0: Some(Payload::File(image(k.name))),
        append: format!("{} {}", d.append, k.hypervisor_options())
            .trim()
            .to_string(),
        ramdisk: Some(Payload::Bytes(
            oxen_tests::dom0_ramdisk_with(&[], &files).unwrap(),
        )),
        ..d
    }
}

fn start(name: &str, boot: &OxenBoot, cpus: u32) -> BochsMachine {
    let work = work_dir(&format!("vmx-{}", name.replace('/', "-"))).unwrap();
    boot.bochs(name, &work)
        .unwrap_or_else(|e| panic!("{name}: cannot prepare the boot: {e}"))
        .cpus(cpus)
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Boots test kernel `name` and checks its table entry: its lines in order,
/// its verdict, how the machine stopped.
fn check_test_kernel(name: &str, cpus: u32, timeout: Duration) -> RunResult {
    let k = test_kernel(name).unwrap_or_else(|| panic!("{name} is not in TEST_KERNELS"));
    let r = start(name, &kernel_boot(k), cpus).wait_exit(timeout);
    if r.timed_out {
        r.fail(&format!(
            "{} ({}): hung until the {timeout:?} timeout",
            k.name, k.purpose
        ));
    }
    r.assert_lines_in_order(k.lines);
    if k.verdict_success {
        r.assert_verdict_success();
    }
    r.assert_exit(k.exit);
    r
}

fn assert_intel_boot(r: &RunResult) {
    r.assert_lines_in_order(&[
        BANNER,
        MULTIBOOT2_LINE,
        VMX_LINE,
        VMX_SELFTEST_LINE,
        FIRST_LINE_FIGURE,
    ]);
    let l = r.assert_line(VMX_LINE);
    if !l.contains(VMX_FEATURES) {
        r.fail(&format!("the VMX line {l:?} should say {VMX_FEATURES:?}"));
    }
    r.assert_no_line(SVM_LINE);
    if r.log.contains('\x1b') {
        r.fail("the console text still holds escape sequences");
    }
}

// ---- Tests ----------------------------------------------------------------

/// Oxen boots from GRUB under Bochs with a VT-x CPU, finds VMX with EPT and
/// unrestricted guest, passes its world-switch self-test, and runs a small
/// test Dom0 to its verdict; Bochs quits by itself on the ACPI
/// power-off.
#[test]
fn vmx_oxen_boots_a_test_dom0_under_bochs() {
    let r = check_test_kernel(QUICK_KERNEL, 1, BOOT_TIMEOUT);
    assert_intel_boot(&r);
    if !r.stderr.contains(bochs::BOCHS_POWER_OFF) {
        r.fail("Bochs should have quit on the guest's ACPI power-off by itself");
    }
}

/// The real Dom0 under Bochs on two CPUs: its shell takes commands over
/// the serial socket (`scripts/run --vmx --batch`), and `poweroff` ends the
/// run with its verdict.
#[test]
fn vmx_dom0_shell_takes_commands_under_bochs() {
    let m = start("dom0-shell", &default_boot(), 2);
    let out = bochs::run_batch(
        m,
        &["true".to_string(), "echo vmx-batch".to_string()],
        BOOT_TIMEOUT,
    );
    let r = &out.result;
    if !out.ok {
        r.fail(&out.why);
    }
    assert_intel_boot(r);
    r.assert_line("CPU1 online");
    // The echo's output, not the command line the shell echoed.
    if !r.lines().any(|l| l.trim() == "vmx-batch") {
        r.fail("no console line saying just \"vmx-batch\" (the output of `echo vmx-batch`)");
    }
    assert_eq!(out.sent, 2);
    r.assert_exit(Exit::POWEROFF);
}

/// A fault in the hypervisor itself (`selftest=fault`): the crash dump and
/// the panic reach the console, and the run ends as a fatal error (Bochs
/// does not quit on a halt: the harness stops it).
#[test]
fn vmx_a_hypervisor_fault_ends_the_run_as_fatal() {
    let boot = OxenBoot {
        append: "loglvl=info selftest=fault".into(),
        ..default_boot()
    };
    let r = start("hv-fault", &boot, 1).wait_exit(BOOT_TIMEOUT);
    r.assert_lines_in_order(&[BANNER, HV_FAULT_PANIC, bochs::HALTED_LINE]);
    r.assert_exit(Exit::HypervisorFatal);
}

/// Issue 6: the HVM guests of pv-hvmrun under VMX with EPT.
#[test]
fn vmx_hvm_guests_run_under_bochs() {
    let r = check_test_kernel(HVM_KERNEL, 1, HVM_TIMEOUT);
    assert_intel_boot(&r);
}

/// Issue 6, "the same tests under VMX": the bare-metal test kernel
/// (`hvm-guests`'s bare-hello, which knows nothing of any hypervisor) as a
/// 2-vCPU `type = "hvm"` guest of the real Dom0, created with `xl create -c`
/// under Bochs's VT-x: every check it makes under SVM (hvm_guests.rs)
/// passes here too, SMP bring-up with INIT/SIPI included (about 25 s).
#[test]
fn vmx_xl_runs_the_bare_metal_kernel_on_two_vcpus_under_bochs() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let images = images();
    let bare = image("bare-hello");
    let dir = work_dir("vmx-bare").expect("a work directory");
    let cfg = dir.join("bare.cfg");
    std::fs::write(
        &cfg,
        "name = \"bare\"\ntype = \"hvm\"\nkernel = \"/boot/bare-hello\"\nmemory = 32\nvcpus = 2\n",
    )
    .unwrap();
    let _slot = oxen_tests::qemu::qemu_slot();
    let _turn = bochs::bochs_turn();
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxen-run"))
        .args([
            "--vmx",
            "--batch",
            "--no-build",
            "--timeout",
            "240",
            "--smp",
            "2",
        ])
        .arg("--add")
        .arg(&bare)
        .arg("--add")
        .arg(&cfg)
        .env("OXEN_IMAGES", &images.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run oxen-run");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"xl create -c bare.cfg\nxl list\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}\n---- stderr ----\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "the run should succeed:\n{text}"
    );
    for check in [
        "cpuid",
        "paging",
        "acpi",
        "port i/o (pit)",
        "port i/o (cmos rtc)",
        "mmio (lapic)",
        "mmio (ioapic)",
        "lapic timer",
        "smp",
    ] {
        let want = format!("bare: {check}: ok");
        assert!(
            text.lines().any(|l| l.trim_end() == want),
            "missing {want:?}:\n{text}"
        );
    }
    for want in [
        "bare: cpu1 up (apic id 2)",
        "bare: all checks passed",
        VMX_LINE,
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
}
