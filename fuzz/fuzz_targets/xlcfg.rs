//! xl.cfg as `xl create FILE KEY=VALUE...` reads it (dom0-tools `xlcfg`),
//! and the spec parsers behind it: disk specs, vif specs and MACs, CPU
//! lists, `cpuid=` in both forms.
//!
//! Input: the config text; after a NUL byte, one override per line.
//! Checks, besides "no panic": every error is one line per complaint
//! unless it quotes a value holding a newline, as xl's messages do (each
//! `ParseError`, each disk-scanner complaint, each line of a device
//! error names the file and line); parsing is deterministic; a
//! loaded config's disks and vifs parse again on their own to the same
//! specs; a disk's vdev number and its `xvd` name round-trip; a MAC prints
//! as something `parse_mac` reads back to the same bytes; a CPU list
//! never claims a CPU past `MAX_CPUS`.
#![no_main]

use dom0_tools::xlcfg::{
    self, cpus, disk, vif, CpuidDelta, DeviceErrorKind, DiskError, Error, Value,
};
use libfuzzer_sys::fuzz_target;

fn one_line(what: &str, s: &str) {
    assert!(!s.contains('\n'), "{what} error spans lines: {s:?}");
    assert!(!s.is_empty(), "{what} error is empty");
}

fn check_error(e: &Error) {
    match e {
        Error::Parse(pe) => {
            assert!(!pe.errors.is_empty(), "a parse failure with no error");
            for p in &pe.errors {
                one_line("parse", &p.to_string());
            }
        }
        Error::Value(v) => one_line("value", &v.to_string()),
        Error::Domain(d) => one_line("domain", &d.to_string()),
        Error::Device(d) => {
            // One line per complaint, each naming the file and line.
            let prefix = format!("{}:{}: ", d.file, d.line);
            for l in d.to_string().split('\n') {
                assert!(l.starts_with(&prefix), "device error line {l:?}");
            }
            if let DeviceErrorKind::Disk(e) = &d.kind {
                check_disk_error(e);
            }
        }
    }
}

/// libxlu prints each of the disk scanner's complaints on a line.
fn check_disk_error(e: &DiskError) {
    match e {
        DiskError::Syntax(errs) => {
            assert!(!errs.is_empty(), "a syntax error with no complaint");
            for c in errs {
                one_line("disk", &c.to_string());
            }
        }
        DiskError::BadVdev(_) => one_line("disk", &e.to_string()),
    }
}

fn has_newline(v: &Value) -> bool {
    match v {
        Value::Str(s) | Value::Number(s) => s.contains(['\n', '\r']),
        Value::List(l) => l.iter().any(has_newline),
    }
}

fn check_mac(mac: [u8; 6]) {
    let s = vif::Mac(mac).to_string();
    assert_eq!(vif::parse_mac(&s), Some(mac), "MAC {s} does not read back");
}

fn check_vdev(vdev: &str, devid: u32) {
    assert_eq!(disk::vdev_to_devid(vdev), Some(devid), "vdev {vdev:?}");
    if let Some(name) = disk::devid_to_xvd(devid) {
        assert_eq!(
            disk::vdev_to_devid(&name),
            Some(devid),
            "devid {devid:#x} -> {name:?} does not read back"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = core::str::from_utf8(data) else {
        return;
    };
    let (text, overrides) = match input.split_once('\0') {
        Some((t, o)) => (t, o.lines().collect::<Vec<_>>()),
        None => (input, Vec::new()),
    };

    let first = xlcfg::load("guest.cfg", text, &overrides);
    let again = xlcfg::load("guest.cfg", text, &overrides);
    assert_eq!(first, again, "parsing is not deterministic");
    let raw = xlcfg::parse_config("guest.cfg", &xlcfg::with_overrides(text, &overrides));
    // Messages quote values verbatim, as xl's do: a value with an escaped
    // newline (`"a\nb"`) makes a message of two lines.
    let multiline_values = raw
        .as_ref()
        .is_ok_and(|c| c.settings().iter().any(|s| has_newline(&s.value)));
    match &first {
        Err(e) if multiline_values => {
            assert!(e.to_string().starts_with("guest.cfg"), "error {e}");
        }
        Err(e) => check_error(e),
        Ok((cfg, warnings)) => {
            for w in warnings {
                one_line("warning", &w.to_string());
            }
            for d in &cfg.disk {
                check_vdev(&d.vdev, d.devid);
            }
            for v in &cfg.vif {
                if let Some(mac) = v.mac {
                    check_mac(mac);
                }
            }
        }
    }

    // The raw settings: each list entry through the spec parsers, as
    // `xl block-attach` / `network-attach` would take it from a user.
    if let Ok(raw) = &raw {
        if let Ok(Some(disks)) = raw.get_string_list("disk") {
            for s in disks {
                match xlcfg::parse_disk_spec(s) {
                    Ok(d) => {
                        check_vdev(&d.vdev, d.devid);
                        assert_eq!(xlcfg::parse_disk_spec(s), Ok(d));
                    }
                    Err(_) if s.contains(['\n', '\r']) => {}
                    Err(e) => check_disk_error(&e),
                }
            }
        }
        if let Ok(Some(vifs)) = raw.get_string_list("vif") {
            for (i, s) in vifs.iter().enumerate() {
                match xlcfg::parse_vif_spec(s, i as u32) {
                    Ok(v) => {
                        if let Some(mac) = v.mac {
                            check_mac(mac);
                        }
                    }
                    Err(_) if s.contains(['\n', '\r']) => {}
                    Err(e) => one_line("vif", &e.to_string()),
                }
            }
        }
    }

    // Every line on its own through the spec parsers.
    for line in text.lines().take(16) {
        match xlcfg::parse_disk_spec(line) {
            Ok(d) => check_vdev(&d.vdev, d.devid),
            Err(e) => check_disk_error(&e),
        }
        match xlcfg::parse_vif_spec(line, 0) {
            Ok(v) => {
                if let Some(mac) = v.mac {
                    check_mac(mac);
                }
            }
            Err(e) => one_line("vif", &e.to_string()),
        }
        if let Some(mac) = vif::parse_mac(line) {
            check_mac(mac);
        }
        if let Ok(cpus::CpuSet::Only(set)) = xlcfg::parse_cpu_list(line) {
            assert!(
                set.iter().all(|&c| c < cpus::MAX_CPUS),
                "CPU list {line:?} past MAX_CPUS"
            );
        }
        match CpuidDelta::parse_libxl(line) {
            Ok(d) => assert_eq!(CpuidDelta::parse_libxl(line), Ok(d)),
            Err(e) => one_line("cpuid", &e.to_string()),
        }
        let items: Vec<&str> = line.split(';').collect();
        if let Err(e) = CpuidDelta::parse_xend(&items) {
            one_line("cpuid", &e.to_string());
        }
        if let Some(devid) = disk::vdev_to_devid(line) {
            check_vdev(line, devid);
        }
    }
});
