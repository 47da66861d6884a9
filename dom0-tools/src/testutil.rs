//! Helpers for host tests that drive real tools (`mkfs.fat`, `mcopy`,
//! `qemu-img`): running a command, and scratch files that clean up.

use std::format;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::string::String;
use std::vec::Vec;

/// Runs `cmd` (no stdin) and returns its stdout; fails the test with its
/// output if it fails.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A fresh path in the temp directory, removed on drop.
pub struct Temp(pub PathBuf);

impl Temp {
    /// `oxen-<kind>-<pid>-<n>-<tag>` in the temp directory.
    pub fn new(kind: &str, tag: &str) -> Temp {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        Temp(std::env::temp_dir().join(format!("oxen-{kind}-{}-{n}-{tag}", std::process::id())))
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
