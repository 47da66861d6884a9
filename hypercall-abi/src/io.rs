//! Split-driver I/O protocols (`public/io/`): the PV console ring, the
//! xenstore ring and wire format, XenBus states, generic shared-ring helpers,
//! and the block and network front/back protocols.

pub mod blkif;
pub mod console;
pub mod netif;
pub mod ring;
pub mod xenbus;
pub mod xs_wire;
