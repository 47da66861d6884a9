//! `__HYPERVISOR_callback_op` (`public/callback.h`): registration of the guest
//! entry points Xen bounces into (event upcall, failsafe, syscall, NMI, ...).

abi_enum! {
    /// `__HYPERVISOR_callback_op` commands (`CALLBACKOP_*`).
    pub enum CallbackOp: u32, raw u64 {
        /// Register a callback; `arg` is a [`CallbackRegister`].
        Register = 0 => "CALLBACKOP_register",
        /// Unregister a callback; `arg` is a [`CallbackUnregister`].
        Unregister = 1 => "CALLBACKOP_unregister",
    }
}

abi_enum! {
    /// Callback types (`CALLBACKTYPE_*`), in `CallbackRegister::type`.
    pub enum CallbackType: u16, raw u64 {
        /// Event-channel upcall entry.
        Event = 0 => "CALLBACKTYPE_event",
        /// Failsafe entry (bad segment on return to guest).
        Failsafe = 1 => "CALLBACKTYPE_failsafe",
        /// 64-bit `syscall` entry (x86_64 only).
        Syscall = 2 => "CALLBACKTYPE_syscall",
        /// Deprecated sysenter number (old 32-bit ABI).
        SysenterDeprecated = 3 => "CALLBACKTYPE_sysenter_deprecated",
        /// NMI entry.
        Nmi = 4 => "CALLBACKTYPE_nmi",
        /// `sysenter` entry from 32-bit user code.
        Sysenter = 5 => "CALLBACKTYPE_sysenter",
        /// 32-bit `syscall` entry from compat user code.
        Syscall32 = 7 => "CALLBACKTYPE_syscall32",
    }
}

/// `callback_register.flags`: mask events on entry (like an interrupt gate).
pub const CALLBACKF_MASK_EVENTS: u16 = 1 << 0;

abi_struct! {
    /// Argument of `CALLBACKOP_register` (`struct callback_register`), written by the guest.
    pub struct CallbackRegister {
        /// A [`CallbackType`].
        pub r#type: u16,
        /// `CALLBACKF_*` flags.
        pub flags: u16,
        /// Implicit C padding; zero.
        pub _pad4: u32,
        /// Entry point (`xen_callback_t`: a virtual address on x86_64).
        pub address: u64,
    }
}

abi_struct! {
    /// Argument of `CALLBACKOP_unregister` (`struct callback_unregister`).
    pub struct CallbackUnregister {
        /// A [`CallbackType`].
        pub r#type: u16,
        /// Unused; zero.
        pub _unused: u16,
    }
}

zeroed_default!(CallbackRegister, CallbackUnregister);
