//! A small cooperative runtime, one executor per vCPU.
//!
//! [`block_on`] polls a future (and the tasks [`spawn`]ed on this vCPU)
//! until it completes. When nothing can make progress the vCPU sleeps in
//! `SCHEDOP_block`, which atomically unmasks events and blocks unless one
//! is pending, so a wake-up can never be lost: every event delivery bumps
//! [`events::generation`], and the executor re-polls after each. Futures
//! that wait for something:
//!
//! - [`sleep`] / [`sleep_until`]: arm the vCPU's timer (`set_timer_op`)
//!   and complete once the system time passes the deadline;
//! - [`port_event`]: completes when an event arrives on a port;
//! - [`timeout`]: races a future against a deadline;
//! - [`yield_now`]: lets the others run once.
//!
//! Wakers only flag "poll again" on their own vCPU; to wake another vCPU,
//! send it an event (an IPI port).

use core::future::Future;
use core::pin::{pin, Pin};
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use crate::events::{self, Port};
use crate::time;

const MAX: usize = crate::smp::MAX_VCPUS as usize;

static WOKEN: [AtomicBool; MAX] = [const { AtomicBool::new(false) }; MAX];

fn vtable() -> &'static RawWakerVTable {
    static VT: RawWakerVTable = RawWakerVTable::new(
        |p| RawWaker::new(p, vtable()),
        |p| WOKEN[p as usize % MAX].store(true, Ordering::Release),
        |p| WOKEN[p as usize % MAX].store(true, Ordering::Release),
        |_| {},
    );
    &VT
}

fn waker(vcpu: u32) -> Waker {
    // SAFETY: the vtable's functions only use the data pointer as a vCPU
    // index and never dereference it; they are thread-safe (atomics).
    unsafe { Waker::from_raw(RawWaker::new(vcpu as usize as *const (), vtable())) }
}

/// Runs `fut` to completion on this vCPU (polling this vCPU's spawned
/// tasks too), sleeping while nothing is ready.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let me = crate::percpu::current_vcpu();
    let w = waker(me);
    let mut cx = Context::from_waker(&w);
    let mut fut = pin!(fut);
    loop {
        let gen = events::generation();
        WOKEN[me as usize % MAX].store(false, Ordering::Release);
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        tasks::poll_all(me, &mut cx);
        idle(me, gen);
    }
}

fn idle(me: u32, gen: u64) {
    if WOKEN[me as usize % MAX].load(Ordering::Acquire) {
        return;
    }
    if time::timer_port(me).is_none() || crate::shared::get().is_none() {
        let _ = crate::xen::sched_yield();
        return;
    }
    let was = events::irq_disable();
    if events::generation() == gen && !WOKEN[me as usize % MAX].load(Ordering::Acquire) {
        // Unmasks events and sleeps unless one is pending.
        let _ = crate::xen::sched_block();
        if !was {
            events::irq_disable();
        }
    } else if was {
        events::irq_enable();
    }
}

/// Completes once the system time reaches `deadline` (ns).
pub fn sleep_until(deadline: u64) -> Sleep {
    Sleep { deadline }
}

/// Completes after `ns` nanoseconds.
pub fn sleep(ns: u64) -> Sleep {
    sleep_until(time::now_ns().saturating_add(ns))
}

/// See [`sleep_until`].
pub struct Sleep {
    deadline: u64,
}

impl Sleep {
    /// The deadline.
    pub fn deadline(&self) -> u64 {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if time::now_ns() >= self.deadline {
            return Poll::Ready(());
        }
        time::arm(self.deadline);
        Poll::Pending
    }
}

/// Completes when an event is delivered on `port` (consuming the
/// delivery: see [`events::take_fired`]).
pub fn port_event(port: Port) -> PortEvent {
    PortEvent { port }
}

/// See [`port_event`].
pub struct PortEvent {
    port: Port,
}

impl Future for PortEvent {
    type Output = Port;
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Port> {
        if events::take_fired(self.port) {
            Poll::Ready(self.port)
        } else {
            Poll::Pending
        }
    }
}

/// The deadline passed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedOut;

/// Races `fut` against `ns` nanoseconds from now.
pub fn timeout<F: Future>(ns: u64, fut: F) -> Timeout<F> {
    Timeout {
        fut,
        sleep: sleep(ns),
    }
}

/// See [`timeout`].
pub struct Timeout<F> {
    fut: F,
    sleep: Sleep,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, TimedOut>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `fut` is structurally pinned (never moved out of `self`);
        // `sleep` is Unpin.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above.
        let fut = unsafe { Pin::new_unchecked(&mut this.fut) };
        if let Poll::Ready(v) = fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(TimedOut)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Yields once.
pub fn yield_now() -> YieldNow {
    YieldNow(false)
}

/// See [`yield_now`].
pub struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(feature = "alloc")]
mod tasks {
    extern crate alloc;
    use alloc::boxed::Box;
    use alloc::vec::Vec;
    use core::future::Future;
    use core::pin::Pin;
    use core::task::{Context, Poll};

    use super::MAX;

    type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

    static TASKS: [spin::Mutex<Vec<Task>>; MAX] = [const { spin::Mutex::new(Vec::new()) }; MAX];

    pub fn spawn(vcpu: u32, f: Task) {
        let _irq = crate::events::IrqGuard::new();
        TASKS[vcpu as usize % MAX].lock().push(f);
        super::WOKEN[vcpu as usize % MAX].store(true, core::sync::atomic::Ordering::Release);
    }

    pub fn poll_all(vcpu: u32, cx: &mut Context<'_>) {
        let mut mine = {
            let _irq = crate::events::IrqGuard::new();
            core::mem::take(&mut *TASKS[vcpu as usize % MAX].lock())
        };
        mine.retain_mut(|t| t.as_mut().poll(cx) == Poll::Pending);
        let _irq = crate::events::IrqGuard::new();
        let mut q = TASKS[vcpu as usize % MAX].lock();
        mine.append(&mut q);
        *q = mine;
    }

    pub fn count(vcpu: u32) -> usize {
        TASKS[vcpu as usize % MAX].lock().len()
    }
}

#[cfg(not(feature = "alloc"))]
mod tasks {
    pub fn poll_all(_vcpu: u32, _cx: &mut core::task::Context<'_>) {}
    pub fn count(_vcpu: u32) -> usize {
        0
    }
}

/// Runs `fut` as a task on this vCPU's executor (polled by [`block_on`]).
#[cfg(feature = "alloc")]
pub fn spawn(fut: impl Future<Output = ()> + Send + 'static) {
    extern crate alloc;
    tasks::spawn(crate::percpu::current_vcpu(), alloc::boxed::Box::pin(fut));
}

/// Tasks waiting on this vCPU.
pub fn task_count() -> usize {
    tasks::count(crate::percpu::current_vcpu())
}

/// Runs this vCPU's tasks forever.
pub fn run() -> ! {
    block_on(core::future::pending::<()>());
    unreachable!()
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::AtomicUsize;

    #[test]
    fn block_on_ready_and_yield() {
        assert_eq!(block_on(async { 7 }), 7);
        assert_eq!(
            block_on(async {
                yield_now().await;
                yield_now().await;
                3
            }),
            3
        );
    }

    #[test]
    fn port_events_complete_after_delivery() {
        static N: AtomicUsize = AtomicUsize::new(0);
        let r = block_on(async {
            // Simulate the upcall delivering port 77 after two polls.
            core::future::poll_fn(|cx| {
                if N.fetch_add(1, Ordering::SeqCst) == 2 {
                    crate::events::tests_deliver(77);
                }
                cx.waker().wake_by_ref();
                Poll::Ready(())
            })
            .await;
            yield_now().await;
            crate::events::tests_deliver(77);
            port_event(77).await
        });
        assert_eq!(r, 77);
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn spawned_tasks_run() {
        static DONE: AtomicUsize = AtomicUsize::new(0);
        spawn(async {
            yield_now().await;
            DONE.fetch_add(1, Ordering::SeqCst);
        });
        block_on(async {
            for _ in 0..3 {
                yield_now().await;
            }
        });
        assert_eq!(DONE.load(Ordering::SeqCst), 1);
        assert_eq!(task_count(), 0);
    }
}
