//! The host tools tests drive to make and inspect Dom0's disks: dosfstools
//! (`mkfs.fat`) and mtools (`mcopy`, `mdir`), looked for in the sbin
//! directories too (a non-root PATH may lack them).

use std::path::Path;
use std::process::{Command, Output};

/// Runs `tool` with `args`; panics, saying what failed, unless it
/// succeeds.
pub fn host_tool(tool: &str, args: &[&str]) -> Output {
    let path = ["/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| tool.into());
    let out = Command::new(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} should be installed (scripts/lib/setup.sh): {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A `mib` MiB raw disk image at `path` holding an empty FAT32 file
/// system (a whole-disk volume: Dom0 mounts it as `/mnt/vdX`).
pub fn fat32_disk(path: &Path, mib: u64) {
    let f = std::fs::File::create(path).expect("create the disk image");
    f.set_len(mib << 20).expect("size the disk image");
    drop(f);
    host_tool(
        "mkfs.fat",
        &["-F", "32", "-n", "OXEN", &path.display().to_string()],
    );
}

/// Copies `name` (a path in the volume, `/x.save`) out of the FAT image
/// `img` to `to`.
pub fn fat_get(img: &Path, name: &str, to: &Path) {
    let src = format!("::{name}");
    host_tool(
        "mcopy",
        &[
            "-o",
            "-i",
            &img.display().to_string(),
            &src,
            &to.display().to_string(),
        ],
    );
}

/// Copies `from` into the FAT image `img` as `name`.
pub fn fat_put(img: &Path, from: &Path, name: &str) {
    let dst = format!("::{name}");
    host_tool(
        "mcopy",
        &[
            "-o",
            "-i",
            &img.display().to_string(),
            &from.display().to_string(),
            &dst,
        ],
    );
}
