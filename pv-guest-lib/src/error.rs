//! Hypercall results: [`Errno`], the error half of every typed wrapper's
//! `Result<u64, Errno>`, and [`check`], which splits a raw `rax` value.
//!
//! Xen returns `>= 0` on success and a negated `XEN_E*` number on failure.
//! [`Errno`] keeps the raw negative value, so even a number Xen never defines
//! (a buggy or hostile hypervisor) survives intact and prints as such.

#![forbid(unsafe_code)]

use core::fmt;

use crate::abi::errno::Errno as AbiErrno;

/// A failed hypercall's error: the negative value the hypervisor returned.
///
/// Compare with the ABI's error numbers directly
/// (`err == hypercall_abi::errno::Errno::EFAULT`), or use [`Errno::known`].
/// Displays as `-EFAULT` (or `-1234` for a number Xen does not define).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno {
    /// Invariant: `< 0`.
    ret: i64,
}

impl Errno {
    /// `-EPERM`.
    pub const EPERM: Errno = Errno::from_abi(AbiErrno::EPERM);
    /// `-ENOENT`.
    pub const ENOENT: Errno = Errno::from_abi(AbiErrno::ENOENT);
    /// `-E2BIG`.
    pub const E2BIG: Errno = Errno::from_abi(AbiErrno::E2BIG);
    /// `-EFAULT`.
    pub const EFAULT: Errno = Errno::from_abi(AbiErrno::EFAULT);
    /// `-EINVAL`.
    pub const EINVAL: Errno = Errno::from_abi(AbiErrno::EINVAL);
    /// `-ENOSYS`.
    pub const ENOSYS: Errno = Errno::from_abi(AbiErrno::ENOSYS);

    /// The error in a raw return value, `None` if `ret >= 0` (success).
    pub const fn from_ret(ret: i64) -> Option<Errno> {
        if ret < 0 {
            Some(Errno { ret })
        } else {
            None
        }
    }

    /// The error Xen reports as `-e`.
    pub const fn from_abi(e: AbiErrno) -> Errno {
        Errno { ret: e.to_ret() }
    }

    /// The raw (negative) return value.
    pub const fn ret(self) -> i64 {
        self.ret
    }

    /// The positive error number (`14` for `-EFAULT`).
    pub const fn code(self) -> u64 {
        self.ret.unsigned_abs()
    }

    /// The ABI error this is, if Xen defines the number.
    pub const fn known(self) -> Option<AbiErrno> {
        AbiErrno::from_ret(self.ret)
    }

    /// True if this is `-e`.
    pub const fn is(self, e: AbiErrno) -> bool {
        self.ret == e.to_ret()
    }
}

impl From<AbiErrno> for Errno {
    fn from(e: AbiErrno) -> Self {
        Errno::from_abi(e)
    }
}

impl PartialEq<AbiErrno> for Errno {
    fn eq(&self, other: &AbiErrno) -> bool {
        self.is(*other)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.known() {
            Some(e) => write!(f, "-{}", e.name()),
            None => write!(f, "{}", self.ret),
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Splits a raw hypercall return value: `Ok(value)` for `ret >= 0`,
/// `Err(errno)` otherwise.
pub const fn check(ret: i64) -> Result<u64, Errno> {
    if ret >= 0 {
        Ok(ret as u64)
    } else {
        Err(Errno { ret })
    }
}

/// Displays a raw return value the way Xen people read it: `0`, `4096`,
/// `-EFAULT`, `-9999`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ret(pub i64);

impl fmt::Display for Ret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Errno::from_ret(self.0) {
            Some(e) => fmt::Display::fmt(&e, f),
            None => write!(f, "{}", self.0),
        }
    }
}

impl fmt::Debug for Ret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    #[test]
    fn check_splits_success_and_errors() {
        assert_eq!(check(0), Ok(0));
        assert_eq!(check(4096), Ok(4096));
        assert_eq!(check(-14), Err(Errno::EFAULT));
        assert_eq!(check(-14).unwrap_err(), AbiErrno::EFAULT);
        assert_eq!(check(i64::MIN).unwrap_err().code(), 1u64 << 63);
    }

    #[test]
    fn display_names_known_errors_and_keeps_unknown_numbers() {
        assert_eq!(format!("{}", Errno::ENOSYS), "-ENOSYS");
        assert_eq!(format!("{}", Errno::from_ret(-9999).unwrap()), "-9999");
        assert_eq!(format!("{}", Ret(-22)), "-EINVAL");
        assert_eq!(format!("{}", Ret(7)), "7");
        assert_eq!(format!("{}", Ret(i64::MIN)), format!("{}", i64::MIN));
    }

    #[test]
    fn known_maps_back_to_the_abi() {
        assert_eq!(Errno::E2BIG.known(), Some(AbiErrno::E2BIG));
        assert_eq!(Errno::from_ret(-9999).unwrap().known(), None);
        assert!(Errno::from_ret(0).is_none());
        assert_eq!(Errno::EPERM.code(), 1);
    }
}
