//! Network device protocol (`public/io/netif.h`): TX/RX requests and responses
//! on the two shared rings between netfront (guest) and netback, extra-info
//! slots (GSO, multicast, hash), and control-ring constants.

use super::ring::{page_ring_size, SringHeader};
use crate::GrantRef;
use zerocopy::IntoBytes;

// Flags -----------------------------------------------------------------------

/// TX flag: protocol checksum field is blank.
pub const NETTXF_CSUM_BLANK: u16 = 1 << 0;
/// TX flag: packet data has been validated against its checksum.
pub const NETTXF_DATA_VALIDATED: u16 = 1 << 1;
/// TX flag: packet continues in the next request.
pub const NETTXF_MORE_DATA: u16 = 1 << 2;
/// TX flag: an extra-info slot follows.
pub const NETTXF_EXTRA_INFO: u16 = 1 << 3;
/// RX flag: packet data has been validated.
pub const NETRXF_DATA_VALIDATED: u16 = 1 << 0;
/// RX flag: protocol checksum field is blank.
pub const NETRXF_CSUM_BLANK: u16 = 1 << 1;
/// RX flag: packet continues in the next response.
pub const NETRXF_MORE_DATA: u16 = 1 << 2;
/// RX flag: an extra-info slot follows.
pub const NETRXF_EXTRA_INFO: u16 = 1 << 3;
/// RX flag: GSO prefix (legacy).
pub const NETRXF_GSO_PREFIX: u16 = 1 << 4;

/// `netif_extra_info.flags`: another extra-info slot follows.
pub const XEN_NETIF_EXTRA_FLAG_MORE: u8 = 1 << 0;

/// Minimum number of slots a backend must accept per packet.
pub const XEN_NETIF_NR_SLOTS_MIN: u32 = 18;
/// Maximum size of a transmitted packet.
pub const XEN_NETIF_MAX_TX_SIZE: u32 = 0xffff;

abi_enum! {
    /// `netif_extra_info.type` (`XEN_NETIF_EXTRA_TYPE_*`).
    pub enum NetifExtraType: u8, raw u64 {
        /// Unused.
        None = 0 => "XEN_NETIF_EXTRA_TYPE_NONE",
        /// GSO parameters (`u.gso`).
        Gso = 1 => "XEN_NETIF_EXTRA_TYPE_GSO",
        /// Add a multicast address (`u.mcast`).
        McastAdd = 2 => "XEN_NETIF_EXTRA_TYPE_MCAST_ADD",
        /// Remove a multicast address (`u.mcast`).
        McastDel = 3 => "XEN_NETIF_EXTRA_TYPE_MCAST_DEL",
        /// Hash value (`u.hash`).
        Hash = 4 => "XEN_NETIF_EXTRA_TYPE_HASH",
    }
}

/// One past the highest extra type.
pub const XEN_NETIF_EXTRA_TYPE_MAX: u8 = 5;

abi_enum! {
    /// GSO types (`XEN_NETIF_GSO_TYPE_*`).
    pub enum NetifGsoType: u8, raw u64 {
        /// No GSO.
        None = 0 => "XEN_NETIF_GSO_TYPE_NONE",
        /// TCP over IPv4.
        Tcpv4 = 1 => "XEN_NETIF_GSO_TYPE_TCPV4",
        /// TCP over IPv6.
        Tcpv6 = 2 => "XEN_NETIF_GSO_TYPE_TCPV6",
    }
}

abi_enum! {
    /// Response status (`NETIF_RSP_*`).
    pub enum NetifRsp: i16, raw i64 {
        /// Packet dropped.
        Dropped = -2 => "NETIF_RSP_DROPPED",
        /// Error.
        Error = -1 => "NETIF_RSP_ERROR",
        /// Success.
        Okay = 0 => "NETIF_RSP_OKAY",
        /// Null response (placeholder for extra-info slots).
        Null = 1 => "NETIF_RSP_NULL",
    }
}

// Control ring -----------------------------------------------------------------

abi_enum! {
    /// Control ring request types (`XEN_NETIF_CTRL_TYPE_*`).
    pub enum NetifCtrlType: u16, raw u64 {
        /// Invalid.
        Invalid = 0 => "XEN_NETIF_CTRL_TYPE_INVALID",
        /// Get supported hash flags.
        GetHashFlags = 1 => "XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS",
        /// Set hash flags.
        SetHashFlags = 2 => "XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS",
        /// Set the hash key.
        SetHashKey = 3 => "XEN_NETIF_CTRL_TYPE_SET_HASH_KEY",
        /// Get the maximum hash mapping size.
        GetHashMappingSize = 4 => "XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE",
        /// Set the hash mapping size.
        SetHashMappingSize = 5 => "XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE",
        /// Set the hash mapping.
        SetHashMapping = 6 => "XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING",
        /// Set the hash algorithm.
        SetHashAlgorithm = 7 => "XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM",
        /// Get the gref mapping size.
        GetGrefMappingSize = 8 => "XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE",
        /// Add gref mappings.
        AddGrefMapping = 9 => "XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING",
        /// Delete gref mappings.
        DelGrefMapping = 10 => "XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING",
    }
}

abi_enum! {
    /// Control ring response status (`XEN_NETIF_CTRL_STATUS_*`).
    pub enum NetifCtrlStatus: u32, raw u64 {
        /// Success.
        Success = 0 => "XEN_NETIF_CTRL_STATUS_SUCCESS",
        /// Not supported.
        NotSupported = 1 => "XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED",
        /// Invalid parameter.
        InvalidParameter = 2 => "XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER",
        /// Buffer overflow.
        BufferOverflow = 3 => "XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW",
    }
}

/// Hash algorithm: none.
pub const XEN_NETIF_CTRL_HASH_ALGORITHM_NONE: u32 = 0;
/// Hash algorithm: Toeplitz.
pub const XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ: u32 = 1;
/// Hash type: IPv4.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV4: u32 = 1 << 0;
/// Hash type: IPv4 + TCP.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP: u32 = 1 << 1;
/// Hash type: IPv6.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV6: u32 = 1 << 2;
/// Hash type: IPv6 + TCP.
pub const XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP: u32 = 1 << 3;
/// Gref mapping flag: read-only.
pub const XEN_NETIF_CTRLF_GREF_READONLY: u8 = 1 << 0;

// Structures -------------------------------------------------------------------

abi_struct! {
    /// A transmit request (`struct netif_tx_request`), written by netfront.
    pub struct NetifTxRequest {
        /// Grant of the packet buffer.
        pub gref: GrantRef,
        /// Offset of the data in the page.
        pub offset: u16,
        /// `NETTXF_*`.
        pub flags: u16,
        /// Echoed in the response.
        pub id: u16,
        /// Packet size (first slot: whole packet; others: this slot).
        pub size: u16,
    }
}

abi_struct! {
    /// `netif_extra_info.u.gso` (the union is stored in this form).
    pub struct NetifExtraInfoGso {
        /// GSO MSS.
        pub size: u16,
        /// A [`NetifGsoType`].
        pub r#type: u8,
        /// Padding.
        pub pad: u8,
        /// GSO features; zero.
        pub features: u16,
    }
}

/// Length of a MAC address.
pub const ETH_ALEN: usize = 6;
/// Length of the hash value in `netif_extra_info.u.hash`.
pub const XEN_NETIF_HASH_VALUE_LEN: usize = 4;

abi_struct! {
    /// `netif_extra_info.u.mcast` view.
    pub struct NetifExtraInfoMcast {
        /// MAC address.
        pub addr: [u8; ETH_ALEN],
    }
}

abi_struct! {
    /// `netif_extra_info.u.hash` view.
    pub struct NetifExtraInfoHash {
        /// Hash type (`_XEN_NETIF_CTRL_HASH_TYPE_*` bit number).
        pub r#type: u8,
        /// Hash algorithm.
        pub algorithm: u8,
        /// Hash value (little-endian).
        pub value: [u8; XEN_NETIF_HASH_VALUE_LEN],
    }
}

abi_struct! {
    /// An extra-info slot (`struct netif_extra_info`), following a request or
    /// response that has `*_EXTRA_INFO` set. The union `u` is stored in its
    /// GSO form; use the accessors for the multicast and hash forms.
    pub struct NetifExtraInfo {
        /// A [`NetifExtraType`].
        pub r#type: u8,
        /// `XEN_NETIF_EXTRA_FLAG_*`.
        pub flags: u8,
        /// Union `u`.
        pub u: NetifExtraInfoGso,
    }
}

impl NetifExtraInfo {
    /// `u.mcast` view.
    pub fn mcast(&self) -> NetifExtraInfoMcast {
        zerocopy::transmute!(self.u)
    }
    /// `u.hash` view.
    pub fn hash(&self) -> NetifExtraInfoHash {
        zerocopy::transmute!(self.u)
    }
    /// Stores a `u.mcast` form.
    pub fn set_mcast(&mut self, m: NetifExtraInfoMcast) {
        self.u = zerocopy::transmute!(m);
    }
    /// Stores a `u.hash` form.
    pub fn set_hash(&mut self, h: NetifExtraInfoHash) {
        self.u = zerocopy::transmute!(h);
    }
}

abi_struct! {
    /// A transmit response (`struct netif_tx_response`), written by netback.
    pub struct NetifTxResponse {
        /// From the request.
        pub id: u16,
        /// A [`NetifRsp`].
        pub status: i16,
    }
}

abi_struct! {
    /// A receive buffer post (`struct netif_rx_request`), written by netfront.
    pub struct NetifRxRequest {
        /// Echoed in the response.
        pub id: u16,
        /// Padding.
        pub pad: u16,
        /// Grant of the receive page.
        pub gref: GrantRef,
    }
}

abi_struct! {
    /// A receive completion (`struct netif_rx_response`), written by netback.
    pub struct NetifRxResponse {
        /// From the request.
        pub id: u16,
        /// Offset of the data in the page.
        pub offset: u16,
        /// `NETRXF_*`.
        pub flags: u16,
        /// Data length if >= 0, else a [`NetifRsp`] error.
        pub status: i16,
    }
}

abi_struct! {
    /// One TX ring slot (`union netif_tx_sring_entry`), stored as the request.
    pub struct NetifTxSringEntry {
        /// Request form (response is the first 4 bytes).
        pub req: NetifTxRequest,
    }
}

impl NetifTxSringEntry {
    /// Reads the slot as a response.
    pub fn rsp(&self) -> NetifTxResponse {
        crate::union_read(self.req.as_bytes())
    }
    /// Writes a response into the slot.
    pub fn set_rsp(&mut self, rsp: NetifTxResponse) {
        // The response overlays the first bytes; the rest of the slot keeps
        // the request bytes, as in C.
        let n = core::mem::size_of::<NetifTxResponse>();
        self.req.as_mut_bytes()[..n].copy_from_slice(rsp.as_bytes());
    }
}

abi_struct! {
    /// One RX ring slot (`union netif_rx_sring_entry`), stored as the request.
    pub struct NetifRxSringEntry {
        /// Request form (same size as the response).
        pub req: NetifRxRequest,
    }
}

impl NetifRxSringEntry {
    /// Reads the slot as a response.
    pub fn rsp(&self) -> NetifRxResponse {
        zerocopy::transmute!(self.req)
    }
    /// Writes a response into the slot.
    pub fn set_rsp(&mut self, rsp: NetifRxResponse) {
        self.req = zerocopy::transmute!(rsp);
    }
}

/// Entries in the one-page TX ring (256).
pub const NET_TX_RING_SIZE: usize = page_ring_size(core::mem::size_of::<NetifTxSringEntry>());
/// Entries in the one-page RX ring (256).
pub const NET_RX_RING_SIZE: usize = page_ring_size(core::mem::size_of::<NetifRxSringEntry>());

abi_struct! {
    /// The TX shared ring page (`struct netif_tx_sring`), full-page sized.
    pub struct NetifTxSring {
        /// Indices and padding.
        pub hdr: SringHeader,
        /// Slots.
        pub ring: [NetifTxSringEntry; NET_TX_RING_SIZE],
    }
}

abi_struct! {
    /// The RX shared ring page (`struct netif_rx_sring`), full-page sized.
    pub struct NetifRxSring {
        /// Indices and padding.
        pub hdr: SringHeader,
        /// Slots.
        pub ring: [NetifRxSringEntry; NET_RX_RING_SIZE],
    }
}

zeroed_default!(
    NetifTxRequest,
    NetifExtraInfoGso,
    NetifExtraInfoMcast,
    NetifExtraInfoHash,
    NetifExtraInfo,
    NetifTxResponse,
    NetifRxRequest,
    NetifRxResponse,
    NetifTxSringEntry,
    NetifRxSringEntry,
    NetifTxSring,
    NetifRxSring,
);
