//! vCPU runstate accounting, as Xen's `vcpu_runstate_change` and
//! `vcpu_runstate_get` keep it (`struct vcpu_runstate_info`).
//!
//! Owns one vCPU's current run state, the system time it entered it, and
//! the total time spent in each state *before* the current one. The
//! scheduling glue calls [`Runstate::change`] at the moments Xen does: when
//! a vCPU is switched in (running) or out (runnable, blocked or offline),
//! when a vCPU that is not running wakes (runnable) and when a queued vCPU
//! is taken down (offline). `VCPUOP_get_runstate_info` reports
//! [`Runstate::info`] (the current state's time counted up to now); the
//! registered runstate area gets [`Runstate::raw`] at each context switch.
//!
//! Trusts the caller's clock only to be one timeline: a `now` earlier than
//! the last one counts as no time passing (no wrap-around, no panic).

use hypercall_abi::vcpu::{RunstateState, VcpuRunstateInfo, RUNSTATE_COUNT};

/// One vCPU's run-state record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Runstate {
    state: RunstateState,
    entry: u64,
    time: [u64; RUNSTATE_COUNT],
}

impl Runstate {
    /// A vCPU created at `now`: offline, no time anywhere (as Xen's
    /// `sched_init_vcpu`).
    pub const fn new(now: u64) -> Self {
        Self {
            state: RunstateState::Offline,
            entry: now,
            time: [0; RUNSTATE_COUNT],
        }
    }

    /// The current state.
    pub const fn state(&self) -> RunstateState {
        self.state
    }

    /// When the current state was entered.
    pub const fn entry_time(&self) -> u64 {
        self.entry
    }

    /// Moves to `new` at `now`, charging the time since the last change to
    /// the old state. Changing to the same state just moves the time over.
    pub fn change(&mut self, new: RunstateState, now: u64) {
        let delta = now.saturating_sub(self.entry);
        let slot = &mut self.time[self.state.raw() as usize];
        *slot = slot.saturating_add(delta);
        self.state = new;
        self.entry = self.entry.max(now);
    }

    /// `vcpu_runstate_get`: the record with the current state's time
    /// counted up to `now`.
    pub fn info(&self, now: u64) -> VcpuRunstateInfo {
        let mut r = self.raw();
        let slot = &mut r.time[self.state.raw() as usize];
        *slot = slot.saturating_add(now.saturating_sub(self.entry));
        r
    }

    /// The record as of the last change (what Xen copies to the registered
    /// runstate area).
    pub fn raw(&self) -> VcpuRunstateInfo {
        VcpuRunstateInfo {
            state: self.state.raw(),
            _pad4: 0,
            state_entry_time: self.entry,
            time: self.time,
        }
    }

    /// Total time in `state` up to `now`.
    pub fn time_in(&self, state: RunstateState, now: u64) -> u64 {
        self.info(now).time[state.raw() as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RunstateState::*;

    #[test]
    fn starts_offline_with_no_time() {
        let r = Runstate::new(100);
        assert_eq!(r.state(), Offline);
        assert_eq!(r.entry_time(), 100);
        let i = r.info(150);
        assert_eq!(i.state, 3);
        assert_eq!(i.state_entry_time, 100);
        assert_eq!(i.time, [0, 0, 0, 50]);
        assert_eq!(r.raw().time, [0; 4]);
    }

    #[test]
    fn changes_charge_the_old_state() {
        let mut r = Runstate::new(0);
        r.change(Runnable, 10); // offline 10
        r.change(Running, 15); // runnable 5
        r.change(Blocked, 45); // running 30
        r.change(Runnable, 100); // blocked 55
        r.change(Running, 102); // runnable 2
        assert_eq!(r.raw().time, [30, 7, 55, 10]);
        assert_eq!(r.raw().state_entry_time, 102);
        let i = r.info(110);
        assert_eq!(i.state, 0);
        assert_eq!(i.time, [38, 7, 55, 10]);
        // The times always add up to the time since creation.
        assert_eq!(i.time.iter().sum::<u64>(), 110);
        assert_eq!(r.time_in(Running, 110), 38);
        assert_eq!(r.time_in(Blocked, 110), 55);
    }

    #[test]
    fn same_state_change_moves_entry() {
        let mut r = Runstate::new(0);
        r.change(Running, 5);
        r.change(Running, 9);
        assert_eq!(r.raw().time, [4, 0, 0, 5]);
        assert_eq!(r.entry_time(), 9);
    }

    #[test]
    fn time_going_backwards_counts_as_zero() {
        let mut r = Runstate::new(1000);
        r.change(Running, 900);
        assert_eq!(r.raw().time, [0; 4]);
        assert_eq!(r.entry_time(), 1000);
        assert_eq!(r.info(500).time, [0; 4]);
        r.change(Blocked, 1010);
        assert_eq!(r.raw().time, [10, 0, 0, 0]);
    }

    #[test]
    fn times_always_add_up_to_the_time_since_creation() {
        let mut r = Runstate::new(7);
        let mut now = 7;
        for (i, st) in [
            Runnable, Running, Blocked, Runnable, Running, Offline, Running,
        ]
        .into_iter()
        .cycle()
        .take(50)
        .enumerate()
        {
            now += (i as u64 * 37) % 11;
            r.change(st, now);
            assert_eq!(r.raw().time.iter().sum::<u64>(), now - 7);
            assert_eq!(r.info(now + 5).time.iter().sum::<u64>(), now + 5 - 7);
        }
    }
}
