//! Hypercall dispatch: from the PV `syscall` entry to one handler per
//! hypercall family. Unknown hypercalls and sub-ops return -ENOSYS.
//!
//! Arguments arrive in rdi, rsi, rdx, r10, r8 (Xen's x86_64 PV convention);
//! the result goes back in rax. Handlers never trust an argument: pointers are
//! guest virtual addresses copied through `domain::copy_{from,to}_guest`.

mod console_io;
mod sched_op;
mod vcpu;
mod xen_version;

use crate::arch::x86_64::entry::TrapFrame;
use crate::domain::{Domain, DOMAINS};
use hypercall_abi::errno::Errno;
use hypercall_abi::hypercall::Hypercall;

/// The result of a handler: a value for rax and anything to do after the
/// domain table is unlocked.
pub struct Outcome {
    /// Value returned to the guest (negative: -errno).
    pub ret: i64,
    /// Follow-up action.
    pub then: Then,
}

/// What to do after returning the value.
pub enum Then {
    /// Nothing: return to the guest.
    Return,
    /// Block the vCPU until something happens (SCHEDOP_block).
    Block,
}

impl Outcome {
    fn ret(v: i64) -> Self {
        Outcome {
            ret: v,
            then: Then::Return,
        }
    }
}

impl From<Result<i64, Errno>> for Outcome {
    fn from(r: Result<i64, Errno>) -> Self {
        Outcome::ret(r.unwrap_or_else(Errno::to_ret))
    }
}

/// A hypercall's context: the caller and its arguments.
pub struct Call<'a> {
    /// The calling domain.
    pub dom: &'a mut Domain,
    /// The calling vCPU's number.
    pub vcpu: usize,
    /// The guest kernel's CR3 (machine address), for argument copies.
    pub cr3: u64,
    /// The five arguments.
    pub args: [u64; 5],
}

/// Entered from `syscall_entry` with the guest's registers.
#[no_mangle]
extern "C" fn pv_syscall_dispatch(frame: &mut TrapFrame) {
    let out = {
        let mut doms = DOMAINS.lock();
        let Some(dom) = doms.first_mut() else {
            frame.rax = Errno::ENOSYS.to_ret() as u64;
            return;
        };
        let vcpu = 0;
        let cr3 = dom.vcpus[vcpu].cr3;
        let mut call = Call {
            dom,
            vcpu,
            cr3,
            args: [frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8],
        };
        dispatch(frame.rax, &mut call, frame)
    };
    frame.rax = out.ret as u64;
    match out.then {
        Then::Return => {}
        Then::Block => crate::sched::block_current(),
    }
}

fn dispatch(nr: u64, c: &mut Call, frame: &mut TrapFrame) -> Outcome {
    let Some(hc) = Hypercall::from_raw(nr) else {
        log::debug!("d{}: unknown hypercall {nr}", c.dom.domid);
        return Outcome::ret(Errno::ENOSYS.to_ret());
    };
    match hc {
        Hypercall::ConsoleIo => console_io::console_io(c).into(),
        Hypercall::XenVersion => xen_version::xen_version(c).into(),
        Hypercall::SchedOp => sched_op::sched_op(c, frame),
        Hypercall::VcpuOp => vcpu::vcpu_op(c).into(),
        Hypercall::SetCallbacks => vcpu::set_callbacks(c).into(),
        Hypercall::CallbackOp => vcpu::callback_op(c).into(),
        Hypercall::SetTrapTable => vcpu::set_trap_table(c).into(),
        Hypercall::StackSwitch => vcpu::stack_switch(c).into(),
        _ => {
            log::debug!("d{}: hypercall {} not implemented", c.dom.domid, hc.name());
            Outcome::ret(Errno::ENOSYS.to_ret())
        }
    }
}
