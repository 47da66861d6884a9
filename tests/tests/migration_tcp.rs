//! A PV guest serving TCP migrates between two Oxen hosts (issue 7) and
//! its TCP client never sees a reset, only a pause. Host A runs the server
//! (`domu-net echo=PORT`: every request line gets the server's request
//! counter back) and the client (`domu-net echo-client=IP:PORT`, a request
//! every 100 ms, counters checked, the longest pause between answers
//! measured); A `xl migrate`s the server to B (`xl migrate-receive`). The
//! netfront of the server reconnects to B's netback and announces itself
//! with a gratuitous ARP; the client, still at A, goes on.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use oxen_tests::console::{free_memory, section};
use oxen_tests::images::build_images;

const B_IP: &str = "10.0.3.2";
const RUN_TIMEOUT: Duration = Duration::from_secs(420);
/// A generous bound on the pause the client sees (about 1 s on an idle
/// host: the guest's downtime, then TCP's retransmission timer).
const MAX_PAUSE_MS: u64 = 15_000;

fn free_ports() -> (u16, u16) {
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// One host: (exit code, console).
fn host(
    local: u16,
    remote: u16,
    ip: &str,
    files: &[std::path::PathBuf],
    stdin: String,
) -> (Option<i32>, String) {
    let images = build_images().unwrap_or_else(|e| panic!("cannot build the images: {e}"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oxen-run"));
    cmd.args([
        "--batch",
        "--no-build",
        "--timeout",
        &RUN_TIMEOUT.as_secs().to_string(),
    ])
    .args(["--net", &format!("dgram:{local}:{remote}")])
    .args(["--dom0-append", &format!("ip={ip}/24")]);
    for f in files {
        cmd.arg("--add").arg(f);
    }
    let mut child = cmd
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
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "---- oxen-run stdout (console) ----\n{}\n---- oxen-run stderr ----\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

fn files() -> Vec<std::path::PathBuf> {
    let images = build_images().unwrap_or_else(|e| panic!("cannot build the images: {e}"));
    let kernel = images
        .get("domu-net")
        .unwrap_or_else(|e| panic!("the PV test guest domu-net: {e}"));
    let dir = std::env::temp_dir().join(format!("oxen-migrate-tcp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = |name: &str, extra: &str| {
        let p = dir.join(format!("{name}.cfg"));
        std::fs::write(
            &p,
            format!(
                "name = \"{name}\"\nkernel = \"/boot/domu-net\"\nmemory = 24\n\
                 vif = [ \"bridge=xenbr0\" ]\nextra = \"{extra}\"\n"
            ),
        )
        .unwrap();
        p
    };
    vec![
        kernel,
        cfg("server", "ip=10.0.3.10/24 echo=7000"),
        cfg("client", "ip=10.0.3.11/24 echo-client=10.0.3.10:7000"),
    ]
}

/// (answers, longest pause ms, resets) of each `net-client:` report.
fn reports(text: &str) -> Vec<(u64, u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let r = l.split("net-client: ").nth(1)?;
            let (n, r) = r.split_once(" answers, longest pause ")?;
            let (ms, r) = r.split_once(" ms, resets ")?;
            let resets = r.split(',').next()?;
            Some((
                n.trim().parse().ok()?,
                ms.parse().ok()?,
                resets.parse().ok()?,
            ))
        })
        .collect()
}

/// The server's `server request N` lines.
fn server_counts(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| {
            l.split("domu-net: server request ")
                .nth(1)?
                .trim()
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn a_tcp_server_migrates_and_its_client_sees_only_a_pause() {
    let files = files();
    let (pa, pb) = free_ports();
    let fb = files.clone();
    let b = std::thread::spawn(move || {
        host(
            pb,
            pa,
            B_IP,
            &fb,
            "xl info\nxl migrate-receive\nsleep 10\nxl console server\r\x1d\nxl list\n\
             xl destroy server\nxl info\n"
                .into(),
        )
    });
    std::thread::sleep(Duration::from_secs(5));
    let (code_a, a) = host(
        pa,
        pb,
        "10.0.3.1",
        &files,
        format!(
            "xl info\nxl create server.cfg\nxl create client.cfg\nsleep 5\n\
             xl console server\r\x1d\nxl migrate server {B_IP}\nsleep 10\n\
             xl console client\r\x1d\nxl list\nxl destroy client\nxl info\n"
        ),
    );
    let (code_b, b) = b.join().unwrap();
    let both = format!("==== host A ====\n{a}\n==== host B ====\n{b}");
    assert_eq!(
        code_a,
        Some(0),
        "host A's commands should all succeed:\n{both}"
    );
    assert_eq!(
        code_b,
        Some(0),
        "host B's commands should all succeed:\n{both}"
    );
    if std::env::var_os("OXEN_SHOW").is_some() {
        eprintln!("{both}");
    }
    let client = section(&a, "xl console client", 0, "xl list");
    let r = reports(client);
    let last = *r
        .last()
        .unwrap_or_else(|| panic!("no net-client report:\n{both}"));
    eprintln!(
        "migration_tcp: client {} answers, longest pause {} ms, resets {}",
        last.0, last.1, last.2
    );
    assert!(
        !client.contains("connection reset/closed"),
        "the client saw a reset:\n{both}"
    );
    assert!(
        !client.contains("counter went from") && !client.contains("bad answer"),
        "the counter skipped:\n{both}"
    );
    assert_eq!(last.2, 0, "resets:\n{both}");
    assert!(
        a.contains(" frames suspended, "),
        "the server moved live (rounds while it served, then suspended for the last):\n{both}"
    );
    if let Some(l) = a.lines().find(|l| l.contains("; downtime ")) {
        eprintln!("migration_tcp: {l}");
    }
    assert!(last.1 < MAX_PAUSE_MS, "pause {} ms:\n{both}", last.1);
    let before = server_counts(section(&a, "xl console server", 0, "xl migrate"));
    let after = server_counts(section(&b, "xl console server", 0, "xl list"));
    assert!(
        !before.is_empty()
            && after.len() >= 3
            && after.first().is_some_and(|f| f > before.last().unwrap()),
        "the server's counter goes on at B: {before:?} then {after:?}\n{both}"
    );
    assert!(
        b.contains("netfront reconnected"),
        "netfront reconnected at B:\n{both}"
    );
    for (name, text) in [("A", &a), ("B", &b)] {
        let free = free_memory(text);
        assert!(
            free.len() == 2 && free[0] == free[1],
            "memory back at {name}: {free:?}\n{both}"
        );
    }
}
