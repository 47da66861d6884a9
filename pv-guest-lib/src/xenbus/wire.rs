//! The xenstore wire format (`docs/misc/xenstore.txt`, `io/xs_wire.h`):
//! message headers, payload strings, permissions and error names. Pure
//! encode/decode, shared by this crate's client and Dom0's `xenstored`.
//!
//! Decoding never panics: every function here takes bytes from a peer that
//! may be hostile and answers `None` for anything malformed.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub use crate::abi::io::xs_wire::{
    XsdSockmsgType as MsgType, XENSTORE_ABS_PATH_MAX, XENSTORE_PAYLOAD_MAX, XENSTORE_REL_PATH_MAX,
    XENSTORE_RING_SIZE,
};

/// Size of a message header (`struct xsd_sockmsg`).
pub const HEADER_LEN: usize = 16;

/// A message header (`struct xsd_sockmsg`), little-endian on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Header {
    /// Message type (raw, possibly unknown: see [`Header::msg_type`]).
    pub ty: u32,
    /// Request id, echoed in the reply.
    pub req_id: u32,
    /// Transaction id, 0 for none.
    pub tx_id: u32,
    /// Payload length.
    pub len: u32,
}

impl Header {
    /// Decodes the first [`HEADER_LEN`] bytes of `b`.
    pub fn decode(b: &[u8]) -> Option<Header> {
        let w = |i: usize| -> Option<u32> {
            Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
        };
        Some(Header {
            ty: w(0)?,
            req_id: w(4)?,
            tx_id: w(8)?,
            len: w(12)?,
        })
    }

    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.ty.to_le_bytes());
        b[4..8].copy_from_slice(&self.req_id.to_le_bytes());
        b[8..12].copy_from_slice(&self.tx_id.to_le_bytes());
        b[12..16].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// The message type, if Xen defines it.
    pub fn msg_type(&self) -> Option<MsgType> {
        MsgType::from_raw(u64::from(self.ty))
    }
}

/// A whole message: header and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The header (`len` equals `payload.len()` for messages built here).
    pub header: Header,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Message {
    /// Splits a complete message (header + exactly `len` payload bytes).
    pub fn decode(b: &[u8]) -> Option<Message> {
        let header = Header::decode(b)?;
        let payload = b.get(HEADER_LEN..)?;
        (payload.len() == header.len as usize).then(|| Message {
            header,
            payload: payload.to_vec(),
        })
    }

    /// The wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN + self.payload.len());
        v.extend_from_slice(&self.header.encode());
        v.extend_from_slice(&self.payload);
        v
    }
}

/// Encodes a message of type `ty` (the header's `len` is the payload's).
pub fn encode(ty: MsgType, req_id: u32, tx_id: u32, payload: &[u8]) -> Vec<u8> {
    let header = Header {
        ty: ty.raw(),
        req_id,
        tx_id,
        len: payload.len() as u32,
    };
    let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
    v.extend_from_slice(&header.encode());
    v.extend_from_slice(payload);
    v
}

/// Joins `parts`, each followed by a NUL (`<a>|<b>|`).
pub fn join_strings(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in parts {
        v.extend_from_slice(p);
        v.push(0);
    }
    v
}

/// Splits a payload of NUL-terminated strings (`<a>|<b>|`). `None` if the
/// payload does not end with a NUL (an empty payload is zero strings).
pub fn split_strings(payload: &[u8]) -> Option<Vec<&[u8]>> {
    if payload.is_empty() {
        return Some(Vec::new());
    }
    let body = payload.strip_suffix(&[0])?;
    Some(body.split(|&b| b == 0).collect())
}

/// A xenstore error, by the errno name carried in `XS_ERROR` replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum XsErr {
    EINVAL,
    EACCES,
    EEXIST,
    EISDIR,
    ENOENT,
    ENOMEM,
    ENOSPC,
    EIO,
    ENOTEMPTY,
    ENOSYS,
    EROFS,
    EBUSY,
    EAGAIN,
    EISCONN,
    E2BIG,
    EPERM,
}

impl XsErr {
    /// Every error, in `xsd_errors[]` order.
    pub const ALL: [XsErr; 16] = [
        XsErr::EINVAL,
        XsErr::EACCES,
        XsErr::EEXIST,
        XsErr::EISDIR,
        XsErr::ENOENT,
        XsErr::ENOMEM,
        XsErr::ENOSPC,
        XsErr::EIO,
        XsErr::ENOTEMPTY,
        XsErr::ENOSYS,
        XsErr::EROFS,
        XsErr::EBUSY,
        XsErr::EAGAIN,
        XsErr::EISCONN,
        XsErr::E2BIG,
        XsErr::EPERM,
    ];

    /// The name on the wire (`"ENOENT"`).
    pub fn name(self) -> &'static str {
        crate::abi::io::xs_wire::XSD_ERRORS
            .get(self as usize)
            .copied()
            .unwrap_or("EINVAL")
    }

    /// Decodes an error name (with or without its trailing NUL).
    pub fn from_name(name: &[u8]) -> Option<XsErr> {
        let name = name.strip_suffix(&[0]).unwrap_or(name);
        XsErr::ALL.into_iter().find(|e| e.name().as_bytes() == name)
    }
}

impl fmt::Display for XsErr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Access rights in a permission entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `n`: no access.
    None,
    /// `r`: read.
    Read,
    /// `w`: write.
    Write,
    /// `b`: read and write.
    Both,
}

impl Access {
    /// Includes read access.
    pub fn can_read(self) -> bool {
        matches!(self, Access::Read | Access::Both)
    }
    /// Includes write access.
    pub fn can_write(self) -> bool {
        matches!(self, Access::Write | Access::Both)
    }
    fn letter(self) -> u8 {
        match self {
            Access::None => b'n',
            Access::Read => b'r',
            Access::Write => b'w',
            Access::Both => b'b',
        }
    }
}

/// One permission entry (`r5`: domain 5 may read). The first entry of a
/// node's list names its owner (who always has full access) and, by its
/// access, what every domain not listed gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Perm {
    /// The domain.
    pub domid: u16,
    /// Its access.
    pub access: Access,
}

impl Perm {
    /// A permission entry.
    pub const fn new(domid: u16, access: Access) -> Perm {
        Perm { domid, access }
    }

    /// Parses `<letter><domid>` (`b0`, `r12`); `None` if malformed.
    pub fn parse(s: &[u8]) -> Option<Perm> {
        let (&letter, digits) = s.split_first()?;
        let access = match letter {
            b'n' => Access::None,
            b'r' => Access::Read,
            b'w' => Access::Write,
            b'b' => Access::Both,
            _ => return None,
        };
        Some(Perm {
            domid: parse_u16(digits)?,
            access,
        })
    }

    /// The entry as a string (`r12`).
    pub fn to_wire(self) -> String {
        let mut s = String::new();
        s.push(self.access.letter() as char);
        push_decimal(&mut s, u64::from(self.domid));
        s
    }
}

/// Parses a decimal `u16` (no sign, no spaces, 1 to 5 digits).
pub fn parse_u16(s: &[u8]) -> Option<u16> {
    u16::try_from(parse_u64(s)?).ok()
}

/// Parses a decimal `u32`.
pub fn parse_u32(s: &[u8]) -> Option<u32> {
    u32::try_from(parse_u64(s)?).ok()
}

/// Parses an unsigned decimal of at most 20 digits.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// Appends `v` in decimal.
pub fn push_decimal(s: &mut String, v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        s.push(b as char);
    }
}

/// `v` in decimal.
pub fn decimal(v: u64) -> String {
    let mut s = String::new();
    push_decimal(&mut s, v);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip() {
        let h = Header {
            ty: 2,
            req_id: 7,
            tx_id: 9,
            len: 5,
        };
        assert_eq!(Header::decode(&h.encode()), Some(h));
        assert_eq!(Header::decode(&[0; 15]), None);
        assert_eq!(h.msg_type(), Some(MsgType::Read));
        assert_eq!(Header { ty: 20, ..h }.msg_type(), None);
    }

    #[test]
    fn message_roundtrip() {
        let m = encode(MsgType::Write, 1, 0, b"a\0b");
        let d = Message::decode(&m).unwrap();
        assert_eq!(d.payload, b"a\0b");
        assert_eq!(d.encode(), m);
        assert_eq!(Message::decode(&m[..m.len() - 1]), None);
    }

    #[test]
    fn strings() {
        assert_eq!(split_strings(b"a\0bc\0").unwrap(), [&b"a"[..], b"bc"]);
        assert_eq!(split_strings(b"\0").unwrap(), [&b""[..]]);
        assert!(split_strings(b"").unwrap().is_empty());
        assert_eq!(split_strings(b"abc"), None);
        assert_eq!(join_strings(&[b"x", b""]), b"x\0\0");
    }

    #[test]
    fn errors_and_perms() {
        assert_eq!(XsErr::ENOENT.name(), "ENOENT");
        assert_eq!(XsErr::from_name(b"EAGAIN\0"), Some(XsErr::EAGAIN));
        assert_eq!(XsErr::from_name(b"EQUOTA"), None);
        for e in XsErr::ALL {
            assert_eq!(XsErr::from_name(e.name().as_bytes()), Some(e));
        }
        assert_eq!(Perm::parse(b"r12"), Some(Perm::new(12, Access::Read)));
        assert_eq!(Perm::parse(b"b0").unwrap().to_wire(), "b0");
        assert_eq!(Perm::parse(b"x1"), None);
        assert_eq!(Perm::parse(b"r"), None);
        assert_eq!(Perm::parse(b"r65536"), None);
        assert_eq!(Perm::parse(b"r-1"), None);
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(decimal(0), "0");
        assert_eq!(decimal(4096), "4096");
    }
}
