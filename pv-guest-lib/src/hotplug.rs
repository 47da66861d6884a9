//! vCPU hot-plug: brings this domain's vCPUs up and down as the toolstack
//! asks (`xl vcpu-set` writes `cpu/N/availability` = `online` or
//! `offline` under the domain's xenstore home, as Linux's `cpu_hotplug`
//! reads it).
//!
//! A vCPU is only ever taken down by itself, at a point where it holds
//! nothing ([`park_if_asked`], called from its work loop), as Linux's
//! `xen_play_dead` does: `VCPUOP_down` on itself. Bringing it back is
//! `VCPUOP_up` from vCPU 0, after which its `VCPUOP_down` returns and it
//! carries on; a vCPU that never ran is started with [`crate::smp::start`].
//! The hand-over is a small state machine per vCPU ([`VcpuState`]) so that
//! an `up` that arrives before the matching `down` is repeated rather than
//! lost.
//!
//! The parsing ([`parse_availability`], [`vcpu_of_path`]) is pure and
//! host-tested.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::smp::MAX_VCPUS;

/// The xenstore directory watched (relative to the domain's home).
pub const CPU_DIR: &str = "cpu";

/// `cpu/N/availability`: `Some(true)` for `online`, `Some(false)` for
/// `offline`, `None` for anything else.
pub fn parse_availability(raw: &[u8]) -> Option<bool> {
    match raw.strip_suffix(b"\0").unwrap_or(raw) {
        b"online" => Some(true),
        b"offline" => Some(false),
        _ => None,
    }
}

/// The vCPU a watch event's path names (`cpu/N/availability`, relative or
/// under `/local/domain/D/`), if it is one.
pub fn vcpu_of_path(path: &str) -> Option<u32> {
    let rest = match path.find("/cpu/") {
        Some(i) => &path[i + 5..],
        None => path.strip_prefix("cpu/")?,
    };
    let (n, leaf) = rest.split_once('/')?;
    if leaf != "availability" || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok().filter(|&v| v < MAX_VCPUS)
}

/// Where a vCPU is in the hand-over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum VcpuState {
    /// Never started (or not handled here).
    Absent = 0,
    /// Running its work.
    Running = 1,
    /// Asked to go down; it has not got there yet.
    StopRequested = 2,
    /// Down (or on its way down, in `VCPUOP_down`).
    Parked = 3,
    /// Asked up again: `VCPUOP_up` sent, its `down` has not returned yet.
    Waking = 4,
}

impl VcpuState {
    fn from_u8(v: u8) -> VcpuState {
        match v {
            1 => VcpuState::Running,
            2 => VcpuState::StopRequested,
            3 => VcpuState::Parked,
            4 => VcpuState::Waking,
            _ => VcpuState::Absent,
        }
    }
}

static STATE: [AtomicU8; MAX_VCPUS as usize] =
    [const { AtomicU8::new(VcpuState::Absent as u8) }; MAX_VCPUS as usize];

fn cas(v: u32, from: VcpuState, to: VcpuState) -> bool {
    STATE.get(v as usize).is_some_and(|s| {
        s.compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    })
}

/// vCPU `v`'s state.
pub fn state(v: u32) -> VcpuState {
    STATE.get(v as usize).map_or(VcpuState::Absent, |s| {
        VcpuState::from_u8(s.load(Ordering::Acquire))
    })
}

/// For a vCPU's work loop: if it has been asked to go down, goes down
/// (`VCPUOP_down` on itself) and returns once it is brought up again.
/// Call it where the vCPU holds no lock.
pub fn park_if_asked(me: u32) {
    if !cas(me, VcpuState::StopRequested, VcpuState::Parked) {
        return;
    }
    loop {
        let _ = crate::smp::down(me);
        if cas(me, VcpuState::Waking, VcpuState::Running) {
            return;
        }
        // Woken while still meant to be down: down again.
    }
}

/// Marks vCPU `v` as running its work (for vCPUs started elsewhere, e.g.
/// vCPU 0).
pub fn mark_running(v: u32) {
    if let Some(s) = STATE.get(v as usize) {
        s.store(VcpuState::Running as u8, Ordering::Release);
    }
}

/// Forgets that parked vCPU `v` ever ran (after a restore into a new
/// domain, which has no context for it): the next [`set_online`] starts
/// it afresh. Its old stack is not reclaimed (it may hold a frame a
/// parked vCPU still used).
pub fn forget(v: u32) {
    if let Some(s) = STATE.get(v as usize) {
        let _ = s.compare_exchange(
            VcpuState::Parked as u8,
            VcpuState::Absent as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

/// What [`set_online`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing to do.
    None,
    /// Started for the first time.
    Started,
    /// Brought up again.
    Woken,
    /// Asked to go down.
    Stopping,
    /// It could not be done (the error).
    Failed(crate::error::Errno),
}

/// How long [`set_online`] keeps repeating `VCPUOP_up` for a vCPU whose
/// `down` has not returned.
const WAKE_PATIENCE_NS: u64 = 2_000_000_000;

/// Brings vCPU `v` (not 0) online, starting it with `main` if it never
/// ran, or asks it to go down. Called from vCPU 0.
pub fn set_online(v: u32, online: bool, main: crate::smp::VcpuMain) -> Change {
    if v == 0 || v >= MAX_VCPUS {
        return Change::None;
    }
    if !online {
        return if cas(v, VcpuState::Running, VcpuState::StopRequested) {
            Change::Stopping
        } else {
            Change::None
        };
    }
    match state(v) {
        VcpuState::Absent => {
            mark_running(v);
            match crate::smp::start(v, main) {
                Ok(()) => Change::Started,
                Err(e) => {
                    STATE[v as usize].store(VcpuState::Absent as u8, Ordering::Release);
                    Change::Failed(match e {
                        crate::smp::StartError::Initialise(e) | crate::smp::StartError::Up(e) => e,
                        _ => crate::error::Errno::from_abi(crate::abi::errno::Errno::ENOMEM),
                    })
                }
            }
        }
        VcpuState::StopRequested => {
            if cas(v, VcpuState::StopRequested, VcpuState::Running) {
                Change::Woken
            } else {
                wake(v)
            }
        }
        VcpuState::Parked => wake(v),
        VcpuState::Running | VcpuState::Waking => Change::None,
    }
}

fn wake(v: u32) -> Change {
    if !cas(v, VcpuState::Parked, VcpuState::Waking) {
        return Change::None;
    }
    let deadline = crate::time::now_ns() + WAKE_PATIENCE_NS;
    loop {
        if let Err(e) = crate::smp::up(v) {
            return Change::Failed(e);
        }
        // Wait for its `down` to return (it may not have got there yet:
        // then the `up` was lost and is sent again).
        let again = crate::time::now_ns() + 10_000_000;
        while crate::time::now_ns() < again {
            if state(v) == VcpuState::Running {
                return Change::Woken;
            }
            let _ = crate::xen::sched_yield();
        }
        if crate::time::now_ns() > deadline {
            return Change::Failed(crate::error::Errno::from_abi(
                crate::abi::errno::Errno::ETIMEDOUT,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_and_paths() {
        assert_eq!(parse_availability(b"online"), Some(true));
        assert_eq!(parse_availability(b"offline\0"), Some(false));
        for bad in [&b""[..], b"Online", b"on", b"offline "] {
            assert_eq!(parse_availability(bad), None);
        }
        assert_eq!(vcpu_of_path("cpu/3/availability"), Some(3));
        assert_eq!(
            vcpu_of_path("/local/domain/7/cpu/12/availability"),
            Some(12)
        );
        for bad in [
            "cpu",
            "cpu/3",
            "cpu/3/other",
            "cpu/x/availability",
            "cpu//availability",
            "cpu/99/availability",
            "memory/target",
        ] {
            assert_eq!(vcpu_of_path(bad), None, "{bad}");
        }
    }
}
