//! Dom0's software bridge (what `xenbr0` is on a Linux Dom0): a learning
//! Ethernet switch joining the guests' vifs and the physical NIC.
//!
//! - Every frame's source address is learned on its ingress port (unicast
//!   sources only; a station that moves is re-learned on its new port);
//!   entries age out after [`Bridge::ageing_ns`] (300 s, as Linux's bridge).
//! - Known unicast destinations go to their one port; broadcast, multicast
//!   and unknown destinations are flooded to every other port.
//! - A frame never leaves through the port it came in on, and IEEE 802.1D
//!   link-local frames (`01:80:c2:00:00:0x`, STP/LACP/pause) are never
//!   forwarded, so the bridge cannot create a loop (it is a single star
//!   with no bridge-to-bridge links, so it needs no STP).
//! - The MAC table is bounded ([`Bridge::max_entries`]): a guest spraying
//!   random source addresses evicts only the oldest entries and cannot
//!   make Dom0 allocate without bound.
//!
//! Pure: the caller hands frames in with [`Bridge::input`] and sends them
//! where the returned [`Forward`] says.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::vif::Mac;

/// A bridge port (a vif or the physical NIC), chosen by the caller.
pub type PortId = u32;

/// Linux's default ageing time.
pub const DEFAULT_AGEING_NS: u64 = 300_000_000_000;
/// Default MAC table size.
pub const DEFAULT_MAX_ENTRIES: usize = 4096;
/// Shortest frame forwarded (an Ethernet header).
pub const ETH_HLEN: usize = 14;

/// Where a frame goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forward {
    /// Nowhere (too short, link-local, destination on the ingress port,
    /// unknown ingress port).
    Drop,
    /// To this one port.
    Port(PortId),
    /// To every port in the list (all but the ingress port).
    Flood(Vec<PortId>),
}

impl Forward {
    /// The ports, as a slice-like iterator.
    pub fn ports(&self) -> impl Iterator<Item = PortId> + '_ {
        let (one, many): (Option<PortId>, &[PortId]) = match self {
            Forward::Drop => (None, &[]),
            Forward::Port(p) => (Some(*p), &[]),
            Forward::Flood(v) => (None, v),
        };
        one.into_iter().chain(many.iter().copied())
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    port: PortId,
    seen_ns: u64,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// Frames sent to one port.
    pub forwarded: u64,
    /// Frames flooded.
    pub flooded: u64,
    /// Frames dropped.
    pub dropped: u64,
    /// Addresses learned (new or moved).
    pub learned: u64,
}

/// The bridge. See the module documentation.
#[derive(Debug)]
pub struct Bridge {
    ports: Vec<PortId>,
    table: BTreeMap<Mac, Entry>,
    /// Entries older than this are forgotten.
    pub ageing_ns: u64,
    /// Most entries the table holds.
    pub max_entries: usize,
    stats: BridgeStats,
}

impl Default for Bridge {
    fn default() -> Self {
        Self::new()
    }
}

impl Bridge {
    /// An empty bridge with Linux's defaults.
    pub fn new() -> Bridge {
        Bridge {
            ports: Vec::new(),
            table: BTreeMap::new(),
            ageing_ns: DEFAULT_AGEING_NS,
            max_entries: DEFAULT_MAX_ENTRIES,
            stats: BridgeStats::default(),
        }
    }

    /// Adds a port (no-op if present).
    pub fn add_port(&mut self, port: PortId) {
        if !self.ports.contains(&port) {
            self.ports.push(port);
        }
    }

    /// Removes a port and forgets every address learned on it.
    pub fn remove_port(&mut self, port: PortId) {
        self.ports.retain(|&p| p != port);
        self.table.retain(|_, e| e.port != port);
    }

    /// The ports, in the order they were added.
    pub fn ports(&self) -> &[PortId] {
        &self.ports
    }

    /// Counters.
    pub fn stats(&self) -> BridgeStats {
        self.stats
    }

    /// The port `mac` was last seen on, if not aged out at `now_ns`.
    pub fn lookup(&self, mac: &Mac, now_ns: u64) -> Option<PortId> {
        let e = self.table.get(mac)?;
        (now_ns.saturating_sub(e.seen_ns) < self.ageing_ns).then_some(e.port)
    }

    /// The MAC table: `(address, port)` of live entries at `now_ns`.
    pub fn entries(&self, now_ns: u64) -> impl Iterator<Item = (Mac, PortId)> + '_ {
        self.table
            .iter()
            .filter(move |(_, e)| now_ns.saturating_sub(e.seen_ns) < self.ageing_ns)
            .map(|(m, e)| (*m, e.port))
    }

    /// Drops aged entries.
    pub fn expire(&mut self, now_ns: u64) {
        let age = self.ageing_ns;
        self.table
            .retain(|_, e| now_ns.saturating_sub(e.seen_ns) < age);
    }

    fn learn(&mut self, src: Mac, port: PortId, now_ns: u64) {
        if !src.is_unicast() {
            return;
        }
        if let Some(e) = self.table.get_mut(&src) {
            if e.port != port {
                self.stats.learned += 1;
            }
            *e = Entry {
                port,
                seen_ns: now_ns,
            };
            return;
        }
        if self.table.len() >= self.max_entries {
            self.expire(now_ns);
        }
        if self.table.len() >= self.max_entries {
            // Evict the oldest entry.
            let oldest = self
                .table
                .iter()
                .min_by_key(|(_, e)| e.seen_ns)
                .map(|(m, _)| *m);
            if let Some(m) = oldest {
                self.table.remove(&m);
            }
        }
        if self.max_entries > 0 {
            self.table.insert(
                src,
                Entry {
                    port,
                    seen_ns: now_ns,
                },
            );
            self.stats.learned += 1;
        }
    }

    /// A frame arrived on `port` at `now_ns`: learns its source and says
    /// where to send it.
    pub fn input(&mut self, port: PortId, frame: &[u8], now_ns: u64) -> Forward {
        let f = self.decide(port, frame, now_ns);
        match f {
            Forward::Drop => self.stats.dropped += 1,
            Forward::Port(_) => self.stats.forwarded += 1,
            Forward::Flood(_) => self.stats.flooded += 1,
        }
        f
    }

    fn decide(&mut self, port: PortId, frame: &[u8], now_ns: u64) -> Forward {
        if frame.len() < ETH_HLEN || !self.ports.contains(&port) {
            return Forward::Drop;
        }
        let (Some(dst), Some(src)) = (Mac::dst_of(frame), Mac::src_of(frame)) else {
            return Forward::Drop;
        };
        self.learn(src, port, now_ns);
        // 802.1D reserved group addresses are never forwarded.
        if dst.0[..5] == [0x01, 0x80, 0xc2, 0x00, 0x00] && dst.0[5] <= 0x0f {
            return Forward::Drop;
        }
        if dst.is_unicast() {
            match self.lookup(&dst, now_ns) {
                Some(p) if p == port => return Forward::Drop,
                Some(p) => return Forward::Port(p),
                None => {}
            }
        }
        Forward::Flood(self.ports.iter().copied().filter(|&p| p != port).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00, 0xde, 0xad]);
        f
    }
    const A: [u8; 6] = [0, 0x16, 0x3e, 0, 0, 1];
    const B: [u8; 6] = [0, 0x16, 0x3e, 0, 0, 2];
    const C: [u8; 6] = [0, 0x16, 0x3e, 0, 0, 3];

    fn bridge3() -> Bridge {
        let mut b = Bridge::new();
        for p in [1, 2, 3] {
            b.add_port(p);
        }
        b
    }

    #[test]
    fn floods_unknown_then_learns() {
        let mut b = bridge3();
        assert_eq!(b.input(1, &frame(B, A), 0), Forward::Flood(vec![2, 3]));
        // B answers: A is known on port 1.
        assert_eq!(b.input(2, &frame(A, B), 1), Forward::Port(1));
        assert_eq!(b.input(1, &frame(B, A), 2), Forward::Port(2));
        assert_eq!(b.lookup(&Mac(A), 2), Some(1));
        let s = b.stats();
        assert_eq!((s.flooded, s.forwarded, s.learned), (1, 2, 2));
    }

    #[test]
    fn broadcast_and_multicast_flood_never_back() {
        let mut b = bridge3();
        b.input(2, &frame(A, B), 0);
        assert_eq!(
            b.input(2, &frame([0xff; 6], B), 0),
            Forward::Flood(vec![1, 3])
        );
        assert_eq!(
            b.input(3, &frame([1, 0, 0x5e, 0, 0, 1], C), 0),
            Forward::Flood(vec![1, 2])
        );
        // Multicast/zero sources are not learned.
        b.input(1, &frame(B, [1, 2, 3, 4, 5, 6]), 0);
        b.input(1, &frame(B, [0; 6]), 0);
        assert_eq!(b.entries(0).count(), 2);
    }

    #[test]
    fn no_hairpin_no_link_local_no_runts_no_strangers() {
        let mut b = bridge3();
        b.input(1, &frame(B, A), 0);
        b.input(1, &frame(A, B), 0); // B also on port 1
        assert_eq!(b.input(1, &frame(B, A), 0), Forward::Drop);
        assert_eq!(
            b.input(2, &frame([0x01, 0x80, 0xc2, 0, 0, 0], C), 0),
            Forward::Drop
        );
        assert_eq!(b.input(2, &frame(A, C)[..13], 0), Forward::Drop);
        assert_eq!(b.input(9, &frame(A, C), 0), Forward::Drop);
    }

    #[test]
    fn moves_ages_and_port_removal() {
        let mut b = bridge3();
        b.input(1, &frame(B, A), 0);
        b.input(3, &frame(B, A), 10); // A moved
        assert_eq!(b.lookup(&Mac(A), 10), Some(3));
        assert_eq!(b.lookup(&Mac(A), 10 + DEFAULT_AGEING_NS), None);
        assert_eq!(
            b.input(2, &frame(A, B), 10 + DEFAULT_AGEING_NS),
            Forward::Flood(vec![1, 3])
        );
        b.expire(20 + DEFAULT_AGEING_NS);
        assert_eq!(b.entries(20 + DEFAULT_AGEING_NS).count(), 1); // B
        b.remove_port(2);
        assert_eq!(b.entries(20 + DEFAULT_AGEING_NS).count(), 0);
        assert_eq!(b.input(1, &frame(B, A), 30), Forward::Flood(vec![3]));
    }

    #[test]
    fn table_is_bounded() {
        let mut b = bridge3();
        b.max_entries = 8;
        for i in 0..100u8 {
            b.input(1, &frame(B, [0, 0x16, 0x3e, 1, 0, i]), u64::from(i));
        }
        assert_eq!(b.entries(100).count(), 8);
        // The newest survive.
        assert_eq!(b.lookup(&Mac([0, 0x16, 0x3e, 1, 0, 99]), 100), Some(1));
        assert_eq!(b.lookup(&Mac([0, 0x16, 0x3e, 1, 0, 0]), 100), None);
    }
}
