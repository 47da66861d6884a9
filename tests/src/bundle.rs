//! The "Oxen module bundle": several boot modules packed into one file.
//!
//! QEMU 7.2's `-kernel` PVH path hands the guest exactly one module (the
//! `-initrd` file; `-initrd a,b` is read as one file named "a,b"), so for the
//! PVH path the harness packs Dom0's kernel and ramdisk into one bundle and
//! xen-core splits a first module that starts with the magic.
//!
//! Layout, little endian:
//!
//! ```text
//! 0x00  [u8; 8]  magic b"OXENMODS"
//! 0x08  u32      count
//! 0x0c  u32      reserved, 0
//! 0x10  count × 64-byte entries:
//!         u64      offset of the payload from the start of the bundle
//!         u64      length of the payload in bytes
//!         [u8; 48] command line, NUL-padded (at most 47 bytes + NUL)
//! then the payloads, each at a 4 KiB-aligned offset, zero-padded between.
//! ```

use std::fmt;

pub const MAGIC: &[u8; 8] = b"OXENMODS";
pub const HEADER_SIZE: usize = 16;
pub const ENTRY_SIZE: usize = 64;
pub const CMDLINE_SIZE: usize = 48;
/// Longest command line an entry can hold (one byte is kept for the NUL).
pub const CMDLINE_MAX: usize = CMDLINE_SIZE - 1;
pub const PAYLOAD_ALIGN: usize = 4096;

/// One module to put in a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub data: Vec<u8>,
    pub cmdline: String,
}

impl Module {
    pub fn new(data: Vec<u8>, cmdline: impl Into<String>) -> Self {
        Self {
            data,
            cmdline: cmdline.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleError {
    /// Module `index`'s command line does not fit in 47 bytes, or has a NUL.
    BadCmdline { index: usize, cmdline: String },
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::BadCmdline { index, cmdline } => write!(
                f,
                "module {} command line {cmdline:?} is {} bytes or holds a NUL; a bundle entry holds at most {CMDLINE_MAX} bytes",
                index + 1,
                cmdline.len()
            ),
        }
    }
}

impl std::error::Error for BundleError {}

/// Packs `modules` into a bundle.
pub fn write(modules: &[Module]) -> Result<Vec<u8>, BundleError> {
    for (index, m) in modules.iter().enumerate() {
        if m.cmdline.len() > CMDLINE_MAX || m.cmdline.contains('\0') {
            return Err(BundleError::BadCmdline {
                index,
                cmdline: m.cmdline.clone(),
            });
        }
    }
    let table_end = HEADER_SIZE + modules.len() * ENTRY_SIZE;
    let mut out = Vec::with_capacity(table_end);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(modules.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut offset = table_end.next_multiple_of(PAYLOAD_ALIGN);
    for m in modules {
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        out.extend_from_slice(&(m.data.len() as u64).to_le_bytes());
        let mut cmd = [0u8; CMDLINE_SIZE];
        cmd[..m.cmdline.len()].copy_from_slice(m.cmdline.as_bytes());
        out.extend_from_slice(&cmd);
        offset = (offset + m.data.len()).next_multiple_of(PAYLOAD_ALIGN);
    }
    for m in modules {
        out.resize(out.len().next_multiple_of(PAYLOAD_ALIGN), 0);
        out.extend_from_slice(&m.data);
    }
    Ok(out)
}

/// Reads a bundle back (the same checks xen-core is expected to make).
pub fn parse(b: &[u8]) -> Result<Vec<Module>, String> {
    if b.len() < HEADER_SIZE || &b[..8] != MAGIC {
        return Err("no OXENMODS header".into());
    }
    let count = u32::from_le_bytes(b[8..12].try_into().unwrap()) as usize;
    if u32::from_le_bytes(b[12..16].try_into().unwrap()) != 0 {
        return Err("reserved field is not 0".into());
    }
    let table_end = count
        .checked_mul(ENTRY_SIZE)
        .and_then(|t| t.checked_add(HEADER_SIZE))
        .filter(|&t| t <= b.len())
        .ok_or("entry table runs past the end")?;
    let mut mods = Vec::with_capacity(count);
    for e in b[HEADER_SIZE..table_end].chunks_exact(ENTRY_SIZE) {
        let off = u64::from_le_bytes(e[0..8].try_into().unwrap());
        let len = u64::from_le_bytes(e[8..16].try_into().unwrap());
        let cmd = &e[16..64];
        let nul = cmd
            .iter()
            .position(|&c| c == 0)
            .ok_or("command line is not NUL-terminated")?;
        let start = usize::try_from(off).map_err(|e| e.to_string())?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|&end| end <= b.len())
            .ok_or("payload runs past the end")?;
        if !start.is_multiple_of(PAYLOAD_ALIGN) || start < table_end {
            return Err(format!(
                "payload offset {start:#x} is misaligned or inside the table"
            ));
        }
        mods.push(Module {
            data: b[start..end].to_vec(),
            cmdline: String::from_utf8_lossy(&cmd[..nul]).into_owned(),
        });
    }
    Ok(mods)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_layout() {
        let b = write(&[
            Module::new(vec![0xaa; 5], "console=hvc0"),
            Module::new(vec![0xbb; 4097], ""),
        ])
        .unwrap();
        assert_eq!(&b[..8], b"OXENMODS");
        assert_eq!(b[8..12], 2u32.to_le_bytes());
        assert_eq!(b[12..16], [0; 4]);
        // Entry 0.
        assert_eq!(b[16..24], 0x1000u64.to_le_bytes());
        assert_eq!(b[24..32], 5u64.to_le_bytes());
        assert_eq!(&b[32..44], b"console=hvc0");
        assert!(b[44..80].iter().all(|&c| c == 0));
        // Entry 1 starts at the next 4 KiB boundary after entry 0's payload.
        assert_eq!(b[80..88], 0x2000u64.to_le_bytes());
        assert_eq!(b[88..96], 4097u64.to_le_bytes());
        assert!(b[96..144].iter().all(|&c| c == 0));
        assert!(b[144..0x1000].iter().all(|&c| c == 0));
        assert_eq!(&b[0x1000..0x1005], &[0xaa; 5]);
        assert!(b[0x1005..0x2000].iter().all(|&c| c == 0));
        assert_eq!(b.len(), 0x2000 + 4097);
        assert!(b[0x2000..].iter().all(|&c| c == 0xbb));
    }

    #[test]
    fn round_trip() {
        let mods = vec![
            Module::new(b"\x7fELF kernel".to_vec(), "loglvl=all"),
            Module::new(Vec::new(), ""),
            Module::new(vec![7; 10000], "x".repeat(CMDLINE_MAX)),
        ];
        let b = write(&mods).unwrap();
        assert_eq!(parse(&b).unwrap(), mods);
    }

    #[test]
    fn many_modules_push_payloads_past_the_table() {
        let mods: Vec<Module> = (0..100)
            .map(|i| Module::new(vec![i as u8; 3], ""))
            .collect();
        let b = write(&mods).unwrap();
        // 16 + 100*64 = 6416 bytes of table: first payload at 0x2000.
        assert_eq!(b[16..24], 0x2000u64.to_le_bytes());
        assert_eq!(parse(&b).unwrap(), mods);
    }

    #[test]
    fn long_cmdline_is_an_error() {
        let e = write(&[Module::new(vec![], "y".repeat(CMDLINE_MAX + 1))]).unwrap_err();
        assert_eq!(
            e,
            BundleError::BadCmdline {
                index: 0,
                cmdline: "y".repeat(48)
            }
        );
        assert!(e.to_string().contains("at most 47 bytes"));
        assert!(write(&[Module::new(vec![], "a\0b")]).is_err());
    }

    #[test]
    fn parse_rejects_garbage() {
        assert!(parse(b"not a bundle").is_err());
        let mut b = write(&[Module::new(vec![1], "")]).unwrap();
        b[8] = 200; // count far past the end
        assert!(parse(&b).is_err());
    }
}
