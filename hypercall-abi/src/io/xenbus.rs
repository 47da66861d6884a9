//! XenBus device states (`public/io/xenbus.h`): the values frontends and
//! backends write to their `state` xenstore nodes during the connection
//! handshake.

abi_enum! {
    /// A XenBus device state (`enum xenbus_state`), stored as a decimal string
    /// in `<device path>/state`.
    pub enum XenbusState: u32, raw u64 {
        /// Unknown / not yet set.
        Unknown = 0 => "XenbusStateUnknown",
        /// Initialising.
        Initialising = 1 => "XenbusStateInitialising",
        /// Backend: waiting for information from the peer (hotplug done).
        InitWait = 2 => "XenbusStateInitWait",
        /// Frontend: ring details published, waiting for the backend.
        Initialised = 3 => "XenbusStateInitialised",
        /// Connected.
        Connected = 4 => "XenbusStateConnected",
        /// Being closed (tearing down).
        Closing = 5 => "XenbusStateClosing",
        /// Closed.
        Closed = 6 => "XenbusStateClosed",
        /// Reconfiguring.
        Reconfiguring = 7 => "XenbusStateReconfiguring",
        /// Reconfigured.
        Reconfigured = 8 => "XenbusStateReconfigured",
    }
}
