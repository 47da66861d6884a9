//! The layers around the domain stream in an `xl save` file (and an `xl
//! migrate` connection), as Xen 4.17 writes them:
//!
//! 1. **xl's header** (`struct save_file_header`, `xl.h`): a 32-byte magic,
//!    the byte-order word, mandatory and optional flags, then optional
//!    data: a `u32` length and the domain's config file (xl.cfg text; the
//!    `XL_MANDATORY_FLAG_JSON` flag is clear, so it is not libxl JSON).
//! 2. **libxl's stream** (`libxl_sr_stream_format.h`): a big-endian header
//!    ("LibxlFmt", version 2), then records laid out like libxc's:
//!    `LIBXC_CONTEXT` (empty; libxc's stream, [`super::stream`], follows
//!    it inline up to its own `END`), `EMULATOR_CONTEXT` (the device
//!    model's state) and `END`.
//!
//! **Trusts** nothing it reads: lengths and flags are checked, unknown
//! mandatory flags refused, each with a [`SaveFileError`] saying what.

use alloc::vec::Vec;
use core::fmt;

/// xl's magic, `savefileheader_magic`.
pub const XL_MAGIC: &[u8; 32] = b"Xen saved domain, xl format\n \0 \r";
/// `SAVEFILE_BYTEORDER_VALUE`, written in the saver's byte order.
pub const XL_BYTEORDER: u32 = 0x0102_0304;
/// `XL_MANDATORY_FLAG_JSON`: the config is libxl JSON.
pub const XL_FLAG_JSON: u32 = 1 << 0;
/// `XL_MANDATORY_FLAG_STREAMv2`: a libxl v2 stream follows.
pub const XL_FLAG_STREAM_V2: u32 = 1 << 1;
/// Bytes of xl's fixed header.
pub const XL_HEADER_LEN: usize = 32 + 16;
/// The longest config accepted in a save file.
pub const CONFIG_MAX: u32 = 1 << 20;

/// libxl's stream ident, "LibxlFmt".
pub const LIBXL_IDENT: u64 = 0x4c69_6278_6c46_6d74;
/// libxl's stream version.
pub const LIBXL_VERSION: u32 = 2;
/// Bytes of libxl's header.
pub const LIBXL_HEADER_LEN: usize = 16;

/// libxl record types (`REC_TYPE_*` of `libxl_sr_stream_format.h`).
pub mod librec {
    /// End of the libxl stream.
    pub const END: u32 = 0;
    /// libxc's stream follows.
    pub const LIBXC_CONTEXT: u32 = 1;
    /// The device model's xenstore keys.
    pub const EMULATOR_XENSTORE_DATA: u32 = 2;
    /// The device model's state.
    pub const EMULATOR_CONTEXT: u32 = 3;
    /// A checkpoint ends (Remus/COLO).
    pub const CHECKPOINT_END: u32 = 4;
}

/// `EMULATOR_UNKNOWN`: the id Oxen's device model state goes under (it
/// is neither QEMU's format).
pub const EMULATOR_OXEN: u32 = 0;

/// Why a save file's outer layers were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaveFileError {
    /// No xl magic.
    NotASaveFile,
    /// The byte-order word is not ours.
    ByteOrder,
    /// Mandatory flags this reader does not know (or a JSON config).
    Flags(u32),
    /// A legacy (pre-v2) stream.
    Legacy,
    /// The optional data is malformed.
    OptionalData(&'static str),
    /// No libxl v2 header.
    NotLibxl,
    /// A libxl header option this reader cannot handle.
    LibxlOptions(u32),
}

impl fmt::Display for SaveFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SaveFileError::NotASaveFile => f.write_str("not an xl save file (no xl header)"),
            SaveFileError::ByteOrder => f.write_str("the save file has the wrong byte order"),
            SaveFileError::Flags(fl) => write!(
                f,
                "the save file has mandatory flags {fl:#x} this xl does not know (a JSON config?)"
            ),
            SaveFileError::Legacy => {
                f.write_str("the save file holds a legacy (pre-v2) stream, not supported")
            }
            SaveFileError::OptionalData(w) => write!(f, "the save file's config: {w}"),
            SaveFileError::NotLibxl => f.write_str("no libxl v2 stream after the xl header"),
            SaveFileError::LibxlOptions(o) => {
                write!(f, "libxl stream options {o:#x} (big endian or legacy)")
            }
        }
    }
}

/// xl's header with `config` (xl.cfg text) as its optional data.
pub fn xl_header(config: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(XL_HEADER_LEN + 4 + config.len());
    out.extend_from_slice(XL_MAGIC);
    out.extend_from_slice(&XL_BYTEORDER.to_le_bytes());
    out.extend_from_slice(&XL_FLAG_STREAM_V2.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(4 + config.len() as u32).to_le_bytes());
    out.extend_from_slice(&(config.len() as u32).to_le_bytes());
    out.extend_from_slice(config);
    out
}

/// Checks xl's fixed header (the first [`XL_HEADER_LEN`] bytes); returns
/// the length of the optional data that follows.
pub fn read_xl_header(h: &[u8]) -> Result<u32, SaveFileError> {
    if h.len() < XL_HEADER_LEN || &h[..32] != XL_MAGIC {
        return Err(SaveFileError::NotASaveFile);
    }
    let w = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    if w(32) != XL_BYTEORDER {
        return Err(SaveFileError::ByteOrder);
    }
    let mandatory = w(36);
    if mandatory & !XL_FLAG_STREAM_V2 != 0 {
        return Err(SaveFileError::Flags(mandatory));
    }
    if mandatory & XL_FLAG_STREAM_V2 == 0 {
        return Err(SaveFileError::Legacy);
    }
    let optlen = w(44);
    if optlen > CONFIG_MAX + 4 {
        return Err(SaveFileError::OptionalData("longer than 1 MiB"));
    }
    Ok(optlen)
}

/// The config in xl's optional data (as xl reads it: a `u32` length, the
/// text; anything after it is skipped).
pub fn config_of(opt: &[u8]) -> Result<&[u8], SaveFileError> {
    let len = opt
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or(SaveFileError::OptionalData("no config in the save file"))?;
    opt.get(4..4 + len)
        .ok_or(SaveFileError::OptionalData("config length past the data"))
}

/// libxl's stream header (big endian, as libxl writes it).
pub fn libxl_header() -> [u8; LIBXL_HEADER_LEN] {
    let mut h = [0u8; LIBXL_HEADER_LEN];
    h[..8].copy_from_slice(&LIBXL_IDENT.to_be_bytes());
    h[8..12].copy_from_slice(&LIBXL_VERSION.to_be_bytes());
    h
}

/// Checks libxl's stream header.
pub fn read_libxl_header(h: &[u8]) -> Result<(), SaveFileError> {
    let h = h.get(..LIBXL_HEADER_LEN).ok_or(SaveFileError::NotLibxl)?;
    let ident = u64::from_be_bytes(h[..8].try_into().map_err(|_| SaveFileError::NotLibxl)?);
    let version = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
    if ident != LIBXL_IDENT || version != LIBXL_VERSION {
        return Err(SaveFileError::NotLibxl);
    }
    let options = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
    if options != 0 {
        return Err(SaveFileError::LibxlOptions(options));
    }
    Ok(())
}

/// An `EMULATOR_CONTEXT` body: `libxl_sr_emulator_hdr` then `state`.
pub fn emulator_context(state: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + state.len());
    out.extend_from_slice(&EMULATOR_OXEN.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(state);
    out
}

/// The state in an `EMULATOR_CONTEXT` body (Oxen's emulator, index 0).
pub fn parse_emulator_context(body: &[u8]) -> Result<&[u8], &'static str> {
    if body.len() < 8 {
        return Err("EMULATOR_CONTEXT shorter than its header");
    }
    let id = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
    let index = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
    if id != EMULATOR_OXEN || index != 0 {
        return Err("EMULATOR_CONTEXT of another device model (QEMU's?)");
    }
    Ok(&body[8..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_xl_header_is_xens_layout_and_reads_back() {
        let h = xl_header(b"name = \"g\"\n");
        assert_eq!(&h[..32], XL_MAGIC);
        assert_eq!(&h[32..36], &[4, 3, 2, 1]);
        assert_eq!(read_xl_header(&h), Ok(4 + 11));
        assert_eq!(config_of(&h[XL_HEADER_LEN..]), Ok(&b"name = \"g\"\n"[..]));
    }

    #[test]
    fn bad_xl_headers_are_refused() {
        let good = xl_header(b"x");
        let mut h = good.clone();
        h[0] = b'Y';
        assert_eq!(read_xl_header(&h), Err(SaveFileError::NotASaveFile));
        let mut h = good.clone();
        h[32] = 1;
        assert_eq!(read_xl_header(&h), Err(SaveFileError::ByteOrder));
        let mut h = good.clone();
        h[36] = 3;
        assert_eq!(read_xl_header(&h), Err(SaveFileError::Flags(3)));
        let mut h = good.clone();
        h[36] = 0;
        assert_eq!(read_xl_header(&h), Err(SaveFileError::Legacy));
        let mut h = good.clone();
        h[47] = 0x7f;
        assert!(read_xl_header(&h).is_err());
        assert!(read_xl_header(&good[..20]).is_err());
        assert!(config_of(&[9, 0, 0, 0, b'a']).is_err());
        assert!(config_of(&[1, 0]).is_err());
    }

    #[test]
    fn the_libxl_header_is_big_endian_and_checked() {
        let h = libxl_header();
        assert_eq!(&h[..8], b"LibxlFmt");
        assert_eq!(&h[8..12], &[0, 0, 0, 2]);
        assert_eq!(read_libxl_header(&h), Ok(()));
        let mut b = h;
        b[15] = 1;
        assert_eq!(read_libxl_header(&b), Err(SaveFileError::LibxlOptions(1)));
        let mut b = h;
        b[11] = 1;
        assert_eq!(read_libxl_header(&b), Err(SaveFileError::NotLibxl));
        assert_eq!(read_libxl_header(&h[..5]), Err(SaveFileError::NotLibxl));
    }

    #[test]
    fn emulator_context_round_trips_and_foreign_ones_are_refused() {
        let b = emulator_context(b"OXDM..");
        assert_eq!(parse_emulator_context(&b), Ok(&b"OXDM.."[..]));
        let mut q = b.clone();
        q[0] = 2;
        assert!(parse_emulator_context(&q).is_err());
        assert!(parse_emulator_context(&b[..4]).is_err());
    }
}
