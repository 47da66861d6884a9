//! The harness's console and batch logic, and `oxen-run --batch`, tested
//! against a fake QEMU (a shell script that plays xen-core + Dom0's shell),
//! so they are covered before, and independently of, the real images.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use oxen_tests::batch;
use oxen_tests::qemu::{Qemu, WaitError};
use oxen_tests::{Exit, Verdict};

const T: Duration = Duration::from_secs(20);

/// Plays the console side of the contract; the mode comes from `-append`.
const FAKE_QEMU: &str = r#"#!/bin/bash
mode=prompt
while [ $# -gt 0 ]; do
    if [ "$1" = -append ]; then mode="${2#fake=}"; fi
    shift
done
echo "Oxen fake (Xen 4.17 ABI)"
echo "CPU0 online"
case "$mode" in
    crash) echo "domain crash: d0v0"; echo "RIP: 0000"; exit 7 ;;
    fatal) echo "Dom0 kernel: not an ELF file"; exit 33 ;;
    verdict-only) echo "VERDICT: SUCCESS"; exit 1 ;;
    hang) exec sleep 1000 ;;
esac
failed=0
while true; do
    printf 'dom0# '
    IFS= read -r -d $'\r' line || exit 0
    echo "$line"
    case "$line" in
        help) echo "commands: help false poweroff hang" ;;
        false) echo "false: failed"; failed=1 ;;
        hang) exec sleep 1000 ;;
        poweroff)
            if [ $failed = 0 ]; then echo "VERDICT: SUCCESS"; else echo "VERDICT: FAILURE: a command failed"; fi
            exit 1 ;;
        *) echo "$line: unknown command"; failed=1 ;;
    esac
done
"#;

fn fake_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = oxen_tests::images::work_dir("fake-qemu").unwrap();
        let q = d.join("qemu-system-x86_64");
        std::fs::write(&q, FAKE_QEMU).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&q, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // Stand-in images for oxen-run (the fake ignores them).
        std::fs::write(d.join("xen-core"), "fake").unwrap();
        std::fs::write(d.join("dom0"), "fake").unwrap();
        d
    })
}

fn fake(mode: &str) -> Qemu {
    let d = fake_dir();
    let mut q = Qemu::new(format!("fake-{mode}"))
        .kernel(d.join("xen-core"))
        .append(format!("fake={mode}"));
    q.binary = d.join("qemu-system-x86_64").display().to_string();
    q
}

#[test]
fn wait_send_and_exit() {
    let mut m = fake("prompt").spawn().unwrap();
    let f = m.wait_for("(Xen 4.17 ABI)", T).unwrap();
    assert_eq!(f.line, "Oxen fake (Xen 4.17 ABI)");
    m.wait_for("dom0# ", T).unwrap();
    m.send_line("help").unwrap();
    let f = m.wait_for("commands:", T).unwrap();
    assert_eq!(f.line, "commands: help false poweroff hang");
    m.wait_for("dom0# ", T).unwrap();
    m.send_line("poweroff").unwrap();
    let f = m
        .wait_for_any(&["VERDICT: FAILURE", "VERDICT: SUCCESS"], T)
        .unwrap();
    assert_eq!(f.index, 1);
    let r = m.wait_exit(T);
    r.assert_exit(Exit::POWEROFF);
    r.assert_verdict_success();
    r.assert_lines_in_order(&["Oxen fake", "CPU0 online", "commands:", "VERDICT: SUCCESS"]);
}

#[test]
fn waits_only_see_newer_output() {
    let mut m = fake("prompt").spawn().unwrap();
    m.wait_for("dom0# ", T).unwrap();
    // The first prompt was consumed: the next wait needs a new one.
    assert!(matches!(
        m.wait_for("dom0# ", Duration::from_millis(300)),
        Err(WaitError::Timeout { .. })
    ));
    m.send_line("help").unwrap();
    m.wait_for("dom0# ", T).unwrap();
}

#[test]
fn waiting_on_a_stopped_machine_says_so() {
    let mut m = fake("crash").spawn().unwrap();
    let e = m.wait_for("dom0# ", T).unwrap_err();
    assert!(matches!(e, WaitError::Exited { .. }), "{e}");
    assert!(e.to_string().contains("the machine stopped before"), "{e}");
    let r = m.wait_exit(T);
    r.assert_exit(Exit::CRASH);
    r.assert_line("domain crash: d0v0");
}

fn batch_of(mode: &str, input: &str, timeout: Duration) -> batch::BatchOutcome {
    let m = fake(mode).spawn().unwrap();
    batch::run(m, &batch::commands_from(input), timeout)
}

#[test]
fn batch_success_failure_and_no_prompt() {
    let ok = batch_of("prompt", "help\n", T);
    assert!(ok.ok, "{}", ok.why);
    assert_eq!(ok.sent, 1);
    assert!(ok.saw_prompt);

    let bad = batch_of("prompt", "help\nfalse\nhelp\n", T);
    assert!(!bad.ok);
    assert_eq!(bad.sent, 3, "keeps going after a failed command");
    assert_eq!(
        bad.verdict,
        Some(Verdict::Failure("a command failed".into()))
    );
    assert_eq!(
        bad.why,
        "Dom0 powered off; last verdict: \"VERDICT: FAILURE: a command failed\""
    );

    let direct = batch_of("verdict-only", "help\n", T);
    assert!(direct.ok, "{}", direct.why);
    assert!(!direct.saw_prompt);

    let crash = batch_of("crash", "", T);
    assert!(!crash.ok);
    assert_eq!(
        crash.why,
        "Dom0 crashed (QEMU exit status 7); no VERDICT line"
    );

    let fatal = batch_of("fatal", "", T);
    assert_eq!(
        fatal.why,
        "hypervisor halted on a fatal error (QEMU exit status 33); no VERDICT line"
    );
}

#[test]
fn batch_never_passes_on_a_hang() {
    let h = batch_of("hang", "help\n", Duration::from_secs(2));
    assert!(!h.ok);
    assert!(h.result.timed_out);
    assert!(
        h.why
            .starts_with("no \"dom0# \" prompt appeared within 2 s; killed after timeout"),
        "{}",
        h.why
    );

    let h = batch_of("prompt", "help\nhang\nhelp\n", Duration::from_secs(2));
    assert!(!h.ok);
    assert_eq!(h.sent, 2);
    assert!(
        h.why
            .starts_with("no \"dom0# \" prompt came back after \"hang\""),
        "{}",
        h.why
    );
}

/// Runs the real `oxen-run` binary against the fake QEMU.
fn oxen_run(args: &[&str], stdin: &str) -> (i32, String, String) {
    let d = fake_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxen-run"))
        .args(args)
        .env("OXEN_QEMU", d.join("qemu-system-x86_64"))
        .env("OXEN_IMAGES", d)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn oxen_run_batch_exit_codes() {
    let (code, out, err) = oxen_run(&["--batch", "--append", "fake=prompt"], "help\n");
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("commands: help"),
        "the console is printed: {out}"
    );
    assert!(
        err.contains("oxen-run: OK: Dom0 powered off; VERDICT: SUCCESS"),
        "{err}"
    );

    let (code, out, err) = oxen_run(&["--batch", "--append", "fake=prompt"], "false\n");
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("oxen-run: FAILED: Dom0 powered off; last verdict: \"VERDICT: FAILURE"),
        "{err}"
    );

    let (code, _, err) = oxen_run(&["--batch", "--append", "fake=crash"], "help\n");
    assert_eq!(code, 1);
    assert!(
        err.contains("FAILED: Dom0 crashed (QEMU exit status 7)"),
        "{err}"
    );

    let (code, _, err) = oxen_run(&["--batch", "--timeout", "2", "--append", "fake=hang"], "");
    assert_eq!(code, 1);
    assert!(err.contains("killed after timeout"), "{err}");
}

#[test]
fn oxen_run_clear_errors() {
    // --vmx (Bochs) with a device its machine does not have: a usage error.
    let (code, _, err) = oxen_run(&["--vmx", "--disk", "a.img"], "");
    assert_eq!(code, 2);
    assert!(err.contains("--disk does not work with --vmx"), "{err}");

    let (code, _, err) = oxen_run(&["--batch", "--add", "/nonexistent/guest.cfg"], "");
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "oxen-run: error: --add /nonexistent/guest.cfg: no such file"
    );

    let (code, _, err) = oxen_run(&["--batch", "--dom0", "/nonexistent/k"], "");
    assert_eq!(code, 1);
    assert!(err.contains("--dom0 /nonexistent/k: no such file"), "{err}");

    let (code, out, _) = oxen_run(&["--help"], "");
    assert_eq!(code, 0);
    assert!(out.contains("--batch") && out.contains("--grub"), "{out}");

    // A missing QEMU is a one-line error, not a panic.
    let out = Command::new(env!("CARGO_BIN_EXE_oxen-run"))
        .args(["--batch"])
        .env("OXEN_QEMU", "/nonexistent/qemu-system-x86_64")
        .env("OXEN_IMAGES", fake_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("is not installed") && !err.contains("panicked"),
        "{err}"
    );

    // So is a missing Bochs, naming the packages to install.
    let out = Command::new(env!("CARGO_BIN_EXE_oxen-run"))
        .args(["--vmx", "--batch"])
        .env("OXEN_BOCHS", "/nonexistent/bochs")
        .env("OXEN_IMAGES", fake_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains(
            "is not installed: install it with: apt-get install bochs bochsbios vgabios bochs-term"
        ) && !err.contains("panicked"),
        "{err}"
    );
}
