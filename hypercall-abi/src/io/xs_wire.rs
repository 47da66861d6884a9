//! Xenstore wire protocol (`public/io/xs_wire.h`): message header and types,
//! error names, and the shared ring page between a domain and xenstored
//! (announced in `start_info.store_mfn`/`store_evtchn` or `HVM_PARAM_STORE_*`).

use super::ring::RingIdx;

abi_enum! {
    /// Xenstore message types (`enum xsd_sockmsg_type`), in `XsdSockmsg::type`.
    pub enum XsdSockmsgType: u32, raw u64 {
        /// Control / debug command (`XS_DEBUG` is an alias).
        Control = 0 => "XS_CONTROL",
        /// List children of a node.
        Directory = 1 => "XS_DIRECTORY",
        /// Read a node.
        Read = 2 => "XS_READ",
        /// Get a node's permissions.
        GetPerms = 3 => "XS_GET_PERMS",
        /// Watch a path (payload: path\0token\0).
        Watch = 4 => "XS_WATCH",
        /// Remove a watch.
        Unwatch = 5 => "XS_UNWATCH",
        /// Start a transaction (reply: transaction id).
        TransactionStart = 6 => "XS_TRANSACTION_START",
        /// End a transaction ("T" commit / "F" abort).
        TransactionEnd = 7 => "XS_TRANSACTION_END",
        /// Introduce a domain (dom0 only).
        Introduce = 8 => "XS_INTRODUCE",
        /// Release a domain (dom0 only).
        Release = 9 => "XS_RELEASE",
        /// Get a domain's home path.
        GetDomainPath = 10 => "XS_GET_DOMAIN_PATH",
        /// Write a node (payload: path\0value).
        Write = 11 => "XS_WRITE",
        /// Create a directory node.
        Mkdir = 12 => "XS_MKDIR",
        /// Remove a node.
        Rm = 13 => "XS_RM",
        /// Set a node's permissions.
        SetPerms = 14 => "XS_SET_PERMS",
        /// Watch fired (server → client; payload: path\0token\0).
        WatchEvent = 15 => "XS_WATCH_EVENT",
        /// Error reply (payload: error name, e.g. "ENOENT\0").
        Error = 16 => "XS_ERROR",
        /// Is a domain introduced?
        IsDomainIntroduced = 17 => "XS_IS_DOMAIN_INTRODUCED",
        /// Resume a domain.
        Resume = 18 => "XS_RESUME",
        /// Set a domain's target (device model).
        SetTarget = 19 => "XS_SET_TARGET",
        /// Reset all watches of the connection.
        ResetWatches = 21 => "XS_RESET_WATCHES",
        /// Partial directory listing (large directories).
        DirectoryPart = 22 => "XS_DIRECTORY_PART",
        /// Invalid message type (guaranteed never valid).
        Invalid = 0xffff => "XS_INVALID",
    }
}

impl XsdSockmsgType {
    /// `XS_DEBUG`: alias of [`XsdSockmsgType::Control`].
    pub const DEBUG: XsdSockmsgType = XsdSockmsgType::Control;
}

/// Number of message types defined (`XS_TYPE_COUNT`).
pub const XS_TYPE_COUNT: u32 = 23;

/// Index of the path in a watch-event payload (`XS_WATCH_PATH`).
pub const XS_WATCH_PATH: usize = 0;
/// Index of the token in a watch-event payload (`XS_WATCH_TOKEN`).
pub const XS_WATCH_TOKEN: usize = 1;

/// Error names carried by `XS_ERROR` replies (`xsd_errors[]`), in Xen's order.
pub const XSD_ERRORS: &[&str] = &[
    "EINVAL",
    "EACCES",
    "EEXIST",
    "EISDIR",
    "ENOENT",
    "ENOMEM",
    "ENOSPC",
    "EIO",
    "ENOTEMPTY",
    "ENOSYS",
    "EROFS",
    "EBUSY",
    "EAGAIN",
    "EISCONN",
    "E2BIG",
    "EPERM",
];

abi_struct! {
    /// Header of every xenstore message (`struct xsd_sockmsg`), followed by
    /// `len` payload bytes. Written by whichever side sends.
    pub struct XsdSockmsg {
        /// An [`XsdSockmsgType`].
        pub r#type: u32,
        /// Request id, echoed in the reply.
        pub req_id: u32,
        /// Transaction id (0 = none).
        pub tx_id: u32,
        /// Payload length (≤ [`XENSTORE_PAYLOAD_MAX`]).
        pub len: u32,
    }
}

/// Size of each xenstore ring.
pub const XENSTORE_RING_SIZE: usize = 1024;
/// Maximum payload of one message.
pub const XENSTORE_PAYLOAD_MAX: usize = 4096;
/// Maximum length of an absolute path.
pub const XENSTORE_ABS_PATH_MAX: usize = 3072;
/// Maximum length of a relative path.
pub const XENSTORE_REL_PATH_MAX: usize = 2048;

/// `server_features`: the server supports reconnection (`connection` field).
pub const XENSTORE_SERVER_FEATURE_RECONNECTION: u32 = 1;
/// `server_features`: the server reports errors in the `error` field.
pub const XENSTORE_SERVER_FEATURE_ERROR: u32 = 2;
/// `connection`: connected.
pub const XENSTORE_CONNECTED: u32 = 0;
/// `connection`: the guest asked for a reconnect.
pub const XENSTORE_RECONNECT: u32 = 1;
/// `error`: no error.
pub const XENSTORE_ERROR_NONE: u32 = 0;
/// `error`: communication problem.
pub const XENSTORE_ERROR_COMM: u32 = 1;
/// `error`: invalid ring index.
pub const XENSTORE_ERROR_RINGIDX: u32 = 2;
/// `error`: protocol violation.
pub const XENSTORE_ERROR_PROTO: u32 = 3;

/// `MASK_XENSTORE_IDX`: ring offset of a free-running index.
pub const fn mask_xenstore_idx(idx: RingIdx) -> usize {
    (idx as usize) & (XENSTORE_RING_SIZE - 1)
}

abi_struct! {
    /// The xenstore ring page (`struct xenstore_domain_interface`). The guest
    /// produces requests (`req`, `req_prod`) and consumes responses (`rsp_cons`);
    /// xenstored does the opposite. Indices are free-running.
    pub struct XenstoreDomainInterface {
        /// Requests to xenstored.
        pub req: [u8; XENSTORE_RING_SIZE],
        /// Replies and watch events from xenstored.
        pub rsp: [u8; XENSTORE_RING_SIZE],
        /// Request consumer index (xenstored).
        pub req_cons: RingIdx,
        /// Request producer index (guest).
        pub req_prod: RingIdx,
        /// Response consumer index (guest).
        pub rsp_cons: RingIdx,
        /// Response producer index (xenstored).
        pub rsp_prod: RingIdx,
        /// `XENSTORE_SERVER_FEATURE_*` (xenstored).
        pub server_features: u32,
        /// `XENSTORE_CONNECTED` / `XENSTORE_RECONNECT`.
        pub connection: u32,
        /// `XENSTORE_ERROR_*` (xenstored).
        pub error: u32,
    }
}

zeroed_default!(XsdSockmsg, XenstoreDomainInterface);
