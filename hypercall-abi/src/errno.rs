//! Xen's error numbers (`public/errno.h`). Hypercalls return the *negated*
//! value in `rax`; these are the positive `XEN_E*` numbers, which match x86 Linux.
//! Owns: [`Errno`].

abi_enum! {
    /// A Xen error number (`XEN_E*`), positive as in `errno.h`.
    ///
    /// A failing hypercall returns `-(errno as i64)`: see [`Errno::to_ret`] and
    /// [`Errno::from_ret`]. `EINTR` (4) and `ERESTART` (85) are Xen-internal and
    /// never reach a guest, so they are not listed.
    pub enum Errno: i32, raw i64 {
        /// Operation not permitted.
        EPERM = 1 => "EPERM",
        /// No such file or directory (no such object).
        ENOENT = 2 => "ENOENT",
        /// No such process (no such domain / vCPU).
        ESRCH = 3 => "ESRCH",
        /// I/O error.
        EIO = 5 => "EIO",
        /// No such device or address.
        ENXIO = 6 => "ENXIO",
        /// Argument list too long.
        E2BIG = 7 => "E2BIG",
        /// Exec format error.
        ENOEXEC = 8 => "ENOEXEC",
        /// Bad file number (bad handle / port).
        EBADF = 9 => "EBADF",
        /// No child processes.
        ECHILD = 10 => "ECHILD",
        /// Try again (also `EWOULDBLOCK`).
        EAGAIN = 11 => "EAGAIN",
        /// Out of memory.
        ENOMEM = 12 => "ENOMEM",
        /// Permission denied.
        EACCES = 13 => "EACCES",
        /// Bad address (a guest buffer could not be accessed).
        EFAULT = 14 => "EFAULT",
        /// Device or resource busy.
        EBUSY = 16 => "EBUSY",
        /// File (object) exists.
        EEXIST = 17 => "EEXIST",
        /// Cross-device link.
        EXDEV = 18 => "EXDEV",
        /// No such device.
        ENODEV = 19 => "ENODEV",
        /// Invalid argument.
        EINVAL = 22 => "EINVAL",
        /// File table overflow.
        ENFILE = 23 => "ENFILE",
        /// Too many open files.
        EMFILE = 24 => "EMFILE",
        /// No space left (e.g. no free event-channel port).
        ENOSPC = 28 => "ENOSPC",
        /// Too many links.
        EMLINK = 31 => "EMLINK",
        /// Math argument out of domain of function.
        EDOM = 33 => "EDOM",
        /// Result not representable.
        ERANGE = 34 => "ERANGE",
        /// Resource deadlock would occur (also `EDEADLOCK`).
        EDEADLK = 35 => "EDEADLK",
        /// Name too long.
        ENAMETOOLONG = 36 => "ENAMETOOLONG",
        /// No record locks available.
        ENOLCK = 37 => "ENOLCK",
        /// Function not implemented (unknown hypercall or sub-op).
        ENOSYS = 38 => "ENOSYS",
        /// Invalid request code.
        EBADRQC = 56 => "EBADRQC",
        /// Invalid slot.
        EBADSLT = 57 => "EBADSLT",
        /// No data available.
        ENODATA = 61 => "ENODATA",
        /// Timer expired.
        ETIME = 62 => "ETIME",
        /// Not a data message.
        EBADMSG = 74 => "EBADMSG",
        /// Value too large for defined data type.
        EOVERFLOW = 75 => "EOVERFLOW",
        /// Illegal byte sequence.
        EILSEQ = 84 => "EILSEQ",
        /// Too many users.
        EUSERS = 87 => "EUSERS",
        /// Socket operation on non-socket.
        ENOTSOCK = 88 => "ENOTSOCK",
        /// Operation not supported.
        EOPNOTSUPP = 95 => "EOPNOTSUPP",
        /// Address already in use.
        EADDRINUSE = 98 => "EADDRINUSE",
        /// Cannot assign requested address.
        EADDRNOTAVAIL = 99 => "EADDRNOTAVAIL",
        /// No buffer space available.
        ENOBUFS = 105 => "ENOBUFS",
        /// Transport endpoint is already connected.
        EISCONN = 106 => "EISCONN",
        /// Transport endpoint is not connected.
        ENOTCONN = 107 => "ENOTCONN",
        /// Cannot send after transport endpoint shutdown.
        ESHUTDOWN = 108 => "ESHUTDOWN",
        /// Too many references.
        ETOOMANYREFS = 109 => "ETOOMANYREFS",
        /// Connection timed out.
        ETIMEDOUT = 110 => "ETIMEDOUT",
    }
}

impl Errno {
    /// `XEN_EWOULDBLOCK`: alias of [`Errno::EAGAIN`].
    pub const EWOULDBLOCK: Errno = Errno::EAGAIN;
    /// `XEN_EDEADLOCK`: alias of [`Errno::EDEADLK`].
    pub const EDEADLOCK: Errno = Errno::EDEADLK;

    /// The value a failing hypercall returns in `rax`: `-errno`.
    pub const fn to_ret(self) -> i64 {
        -(self as i32 as i64)
    }

    /// Decodes a hypercall return value: `Some(errno)` if `ret` is the
    /// negation of a known Xen error number, `None` otherwise (including all
    /// success values `>= 0`).
    pub const fn from_ret(ret: i64) -> Option<Errno> {
        if ret >= 0 {
            return None;
        }
        match ret.checked_neg() {
            Some(pos) => Errno::from_raw(pos),
            None => None,
        }
    }
}

/// Splits a raw hypercall return value (`rax`): `Ok(value)` for `ret >= 0`,
/// `Err(Some(errno))` for a known negated error, `Err(None)` for an unknown
/// negative value.
pub const fn decode_ret(ret: i64) -> Result<u64, Option<Errno>> {
    if ret >= 0 {
        Ok(ret as u64)
    } else {
        Err(Errno::from_ret(ret))
    }
}
