//! Layout tests: every `#[repr(C)]` type of `hypercall-abi` that mirrors a
//! struct in `tests/data/xen-4.17-x86_64-layouts.tsv` has its size and the
//! offset (and, where the representation allows, size) of *every* table field
//! checked. A table field that is not registered below fails the test.
//!
//! Documented representation choices (offset-only checks):
//! * C unions stored as a raw word/bytes field or as their largest member: the
//!   other members are checked at the offset of our storage (`at`) or through a
//!   view struct (`view`/`whole`).
//! * `cpu_user_regs` narrow register names (`eax`, `ax`, `al`, `ah`, ...) are
//!   views of the 64-bit field; `ah`/`bh`/`ch`/`dh` sit one byte in.
//! * Bitfields (`ioreq.state` etc.) are checked at the byte that holds them.
//! * Shared rings and `shared_iopage` declare a one-element tail (`ring[1]`,
//!   `vcpu_ioreq[1]`) in C; our types span a full page, so the "C size" compared
//!   with the `(size)` row is `offset_of(ring) + size_of(entry)`, and the full
//!   size is checked separately.

mod common;

use core::mem::{offset_of, size_of};
use hypercall_abi::arch_x86::*;
use hypercall_abi::callback::*;
use hypercall_abi::hvm::*;
use hypercall_abi::io::console::*;
use hypercall_abi::sched::*;
use hypercall_abi::vcpu::*;
use hypercall_abi::version::*;
use hypercall_abi::xen::*;

macro_rules! layout_tests {
    ($(
        $test:ident : $t:ty = $c:literal $(, c_size = ($cs:expr))? {
            $( [ $($e:tt)* ] )*
        }
    )*) => {
        $(
            #[test]
            fn $test() {
                #[allow(unused_mut, unused_assignments)]
                let mut c_size = size_of::<$t>();
                $( c_size = $cs; )?
                let checks = [ $( chk!($t; $($e)*), )* ];
                common::check_struct($c, stringify!($t), c_size, &checks);
            }
        )*

        /// Every table struct covered by a test above.
        const COVERED: &[&str] = &[ $( $c, )* ];
    };
}

/// Table structs deliberately not represented, with the reason.
const NOT_COVERED: &[(&str, &str)] = &[];

#[test]
fn every_table_struct_is_covered_or_excused() {
    let mut missing = Vec::new();
    for s in common::layout_structs() {
        let covered = COVERED.contains(&s.as_str());
        let excused = NOT_COVERED.iter().any(|(n, _)| *n == s);
        assert!(!(covered && excused), "{s} is both covered and excused");
        if !covered && !excused {
            missing.push(s);
        }
    }
    assert!(missing.is_empty(), "table structs without a layout test: {missing:?}");
}

#[test]
fn full_page_types() {
    assert_eq!(size_of::<SharedIopage>(), hypercall_abi::XEN_PAGE_SIZE);
    assert!(size_of::<SharedInfo>() <= hypercall_abi::XEN_PAGE_SIZE);
    assert!(size_of::<StartInfo>() <= hypercall_abi::XEN_PAGE_SIZE);
    assert!(size_of::<XenconsInterface>() <= hypercall_abi::XEN_PAGE_SIZE);
    assert_eq!(size_of::<hypercall_abi::io::ring::SringHeader>(), 64);
}

#[test]
fn non_table_types() {
    // Types without a row in the table, checked against Xen's headers.
    assert_eq!(size_of::<SchedPinOverride>(), 4);
    assert_eq!(size_of::<CallbackUnregister>(), 4);
    assert_eq!(size_of::<XenExtraversion>(), XEN_EXTRAVERSION_LEN);
    assert_eq!(size_of::<XenCapabilitiesInfo>(), 1024);
    assert_eq!(size_of::<XenChangesetInfo>(), 64);
    assert_eq!(size_of::<XenCommandline>(), 1024);
    assert_eq!(size_of::<XenDomainHandleBuf>(), 16);
    assert_eq!(size_of::<XenBuildIdHeader>(), 4);
    assert_eq!(size_of::<hypercall_abi::elfnote::ElfNoteHeader>(), 12);
    assert_eq!(size_of::<StartInfoConsole>(), 16);
    assert_eq!(offset_of!(StartInfo, console), 72);
}

layout_tests! {
    iret_context: IretContext = "iret_context" {
        ["rax" => rax] ["r11" => r11] ["rcx" => rcx] ["flags" => flags] ["rip" => rip]
        ["cs" => cs] ["rflags" => rflags] ["rsp" => rsp] ["ss" => ss]
    }
    cpu_user_regs: CpuUserRegs = "cpu_user_regs" {
        ["r15" => r15] ["r15d" => at r15] ["r15w" => at r15] ["r15b" => at r15] ["(anon)" => r15]
        ["r14" => r14] ["r14d" => at r14] ["r14w" => at r14] ["r14b" => at r14] ["(anon)" => r14]
        ["r13" => r13] ["r13d" => at r13] ["r13w" => at r13] ["r13b" => at r13] ["(anon)" => r13]
        ["r12" => r12] ["r12d" => at r12] ["r12w" => at r12] ["r12b" => at r12] ["(anon)" => r12]
        ["rbp" => rbp] ["ebp" => at rbp] ["bp" => at rbp] ["bpl" => at rbp] ["(anon)" => rbp]
        ["rbx" => rbx] ["ebx" => at rbx] ["bx" => at rbx] ["bl" => at rbx] ["bh" => at rbx + 1]
        ["(anon)" => at rbx] ["(anon)" => rbx]
        ["r11" => r11] ["r11d" => at r11] ["r11w" => at r11] ["r11b" => at r11] ["(anon)" => r11]
        ["r10" => r10] ["r10d" => at r10] ["r10w" => at r10] ["r10b" => at r10] ["(anon)" => r10]
        ["r9" => r9] ["r9d" => at r9] ["r9w" => at r9] ["r9b" => at r9] ["(anon)" => r9]
        ["r8" => r8] ["r8d" => at r8] ["r8w" => at r8] ["r8b" => at r8] ["(anon)" => r8]
        ["rax" => rax] ["eax" => at rax] ["ax" => at rax] ["al" => at rax] ["ah" => at rax + 1]
        ["(anon)" => at rax] ["(anon)" => rax]
        ["rcx" => rcx] ["ecx" => at rcx] ["cx" => at rcx] ["cl" => at rcx] ["ch" => at rcx + 1]
        ["(anon)" => at rcx] ["(anon)" => rcx]
        ["rdx" => rdx] ["edx" => at rdx] ["dx" => at rdx] ["dl" => at rdx] ["dh" => at rdx + 1]
        ["(anon)" => at rdx] ["(anon)" => rdx]
        ["rsi" => rsi] ["esi" => at rsi] ["si" => at rsi] ["sil" => at rsi] ["(anon)" => rsi]
        ["rdi" => rdi] ["edi" => at rdi] ["di" => at rdi] ["dil" => at rdi] ["(anon)" => rdi]
        ["error_code" => error_code] ["entry_vector" => entry_vector]
        ["rip" => rip] ["eip" => at rip] ["ip" => at rip] ["(anon)" => rip]
        ["cs" => cs] ["_pad0[1]" => _pad0] ["saved_upcall_mask" => saved_upcall_mask]
        ["_pad1[3]" => _pad1]
        ["rflags" => rflags] ["eflags" => at rflags] ["flags" => at rflags] ["(anon)" => rflags]
        ["rsp" => rsp] ["esp" => at rsp] ["sp" => at rsp] ["spl" => at rsp] ["(anon)" => rsp]
        ["ss" => ss] ["_pad2[3]" => _pad2] ["es" => es] ["_pad3[3]" => _pad3]
        ["ds" => ds] ["_pad4[3]" => _pad4] ["fs" => fs] ["_pad5[3]" => _pad5]
        ["gs" => gs] ["_pad6[3]" => _pad6]
    }
    arch_vcpu_info: ArchVcpuInfo = "arch_vcpu_info" { ["cr2" => cr2] ["pad" => pad] }
    trap_info: TrapInfo = "trap_info" {
        ["vector" => vector] ["flags" => flags] ["cs" => cs] ["address" => address]
    }
    vcpu_guest_context: VcpuGuestContext = "vcpu_guest_context" {
        ["fpu_ctxt.x[512]" => fpu_ctxt] ["fpu_ctxt" => fpu_ctxt] ["flags" => flags]
        ["user_regs" => user_regs] ["trap_ctxt[256]" => trap_ctxt] ["ldt_base" => ldt_base]
        ["ldt_ents" => ldt_ents] ["gdt_frames[16]" => gdt_frames] ["gdt_ents" => gdt_ents]
        ["kernel_ss" => kernel_ss] ["kernel_sp" => kernel_sp] ["ctrlreg[8]" => ctrlreg]
        ["debugreg[8]" => debugreg] ["event_callback_eip" => event_callback_eip]
        ["failsafe_callback_eip" => failsafe_callback_eip]
        ["syscall_callback_eip" => syscall_callback_eip] ["vm_assist" => vm_assist]
        ["fs_base" => fs_base] ["gs_base_kernel" => gs_base_kernel]
        ["gs_base_user" => gs_base_user]
    }
    arch_shared_info: ArchSharedInfo = "arch_shared_info" {
        ["max_pfn" => max_pfn] ["pfn_to_mfn_frame_list_list" => pfn_to_mfn_frame_list_list]
        ["nmi_reason" => nmi_reason] ["p2m_cr3" => p2m_cr3] ["p2m_vaddr" => p2m_vaddr]
        ["p2m_generation" => p2m_generation]
    }
    xen_arch_domainconfig: XenArchDomainconfig = "xen_arch_domainconfig" {
        ["emulation_flags" => emulation_flags] ["misc_flags" => misc_flags]
    }
    xen_cpuid_leaf: XenCpuidLeaf = "xen_cpuid_leaf" {
        ["leaf" => leaf] ["subleaf" => subleaf] ["a" => a] ["b" => b] ["c" => c] ["d" => d]
    }
    xen_msr_entry: XenMsrEntry = "xen_msr_entry" { ["idx" => idx] ["flags" => flags] ["val" => val] }
    mmuext_op: MmuextOp = "mmuext_op" {
        ["cmd" => cmd] ["arg1.mfn" => arg1] ["arg1.linear_addr" => arg1] ["arg1" => arg1]
        ["arg2.nr_ents" => at arg2] ["arg2.vcpumask" => arg2] ["arg2.src_mfn" => arg2]
        ["arg2" => arg2]
    }
    mmu_update: MmuUpdate = "mmu_update" { ["ptr" => ptr] ["val" => val] }
    multicall_entry: MulticallEntry = "multicall_entry" {
        ["op" => op] ["result" => result] ["args[6]" => args]
    }
    vcpu_time_info: VcpuTimeInfo = "vcpu_time_info" {
        ["version" => version] ["pad0" => pad0] ["tsc_timestamp" => tsc_timestamp]
        ["system_time" => system_time] ["tsc_to_system_mul" => tsc_to_system_mul]
        ["tsc_shift" => tsc_shift] ["flags" => flags] ["pad1[2]" => pad1]
    }
    vcpu_info: VcpuInfo = "vcpu_info" {
        ["evtchn_upcall_pending" => evtchn_upcall_pending]
        ["evtchn_upcall_mask" => evtchn_upcall_mask]
        ["evtchn_pending_sel" => evtchn_pending_sel] ["arch" => arch] ["time" => time]
    }
    shared_info: SharedInfo = "shared_info" {
        ["vcpu_info[32]" => vcpu_info] ["evtchn_pending[64]" => evtchn_pending]
        ["evtchn_mask[64]" => evtchn_mask] ["wc_version" => wc_version] ["wc_sec" => wc_sec]
        ["wc_nsec" => wc_nsec] ["wc_sec_hi" => wc_sec_hi] ["arch" => arch]
    }
    start_info: StartInfo = "start_info" {
        ["magic[32]" => magic] ["nr_pages" => nr_pages] ["shared_info" => shared_info]
        ["flags" => flags] ["store_mfn" => store_mfn] ["store_evtchn" => store_evtchn]
        ["console.domU.mfn" => view console as StartInfoConsoleDomU : mfn]
        ["console.domU.evtchn" => view console as StartInfoConsoleDomU : evtchn]
        ["console.domU" => whole console as StartInfoConsoleDomU]
        ["console.dom0.info_off" => view console as StartInfoConsoleDom0 : info_off]
        ["console.dom0.info_size" => view console as StartInfoConsoleDom0 : info_size]
        ["console.dom0" => whole console as StartInfoConsoleDom0]
        ["console" => console]
        ["pt_base" => pt_base] ["nr_pt_frames" => nr_pt_frames] ["mfn_list" => mfn_list]
        ["mod_start" => mod_start] ["mod_len" => mod_len] ["cmd_line[1024]" => cmd_line]
        ["first_p2m_pfn" => first_p2m_pfn] ["nr_p2m_frames" => nr_p2m_frames]
    }
    sched_shutdown: SchedShutdown = "sched_shutdown" { ["reason" => reason] }
    sched_poll: SchedPoll = "sched_poll" {
        ["ports" => ports] ["nr_ports" => nr_ports] ["timeout" => timeout]
    }
    sched_remote_shutdown: SchedRemoteShutdown = "sched_remote_shutdown" {
        ["domain_id" => domain_id] ["reason" => reason]
    }
    sched_watchdog: SchedWatchdog = "sched_watchdog" { ["id" => id] ["timeout" => timeout] }
    vcpu_runstate_info: VcpuRunstateInfo = "vcpu_runstate_info" {
        ["state" => state] ["state_entry_time" => state_entry_time] ["time[4]" => time]
    }
    vcpu_register_runstate_memory_area: VcpuRegisterRunstateMemoryArea =
        "vcpu_register_runstate_memory_area" {
        ["addr.h" => addr] ["addr.v" => addr] ["addr.p" => addr] ["addr" => addr]
    }
    vcpu_set_periodic_timer: VcpuSetPeriodicTimer = "vcpu_set_periodic_timer" {
        ["period_ns" => period_ns]
    }
    vcpu_set_singleshot_timer: VcpuSetSingleshotTimer = "vcpu_set_singleshot_timer" {
        ["timeout_abs_ns" => timeout_abs_ns] ["flags" => flags]
    }
    vcpu_register_vcpu_info: VcpuRegisterVcpuInfo = "vcpu_register_vcpu_info" {
        ["mfn" => mfn] ["offset" => offset] ["rsvd" => rsvd]
    }
    vcpu_get_physid: VcpuGetPhysid = "vcpu_get_physid" { ["phys_id" => phys_id] }
    vcpu_register_time_memory_area: VcpuRegisterTimeMemoryArea =
        "vcpu_register_time_memory_area" {
        ["addr.h" => addr] ["addr.v" => addr] ["addr.p" => addr] ["addr" => addr]
    }
    xen_compile_info: XenCompileInfo = "xen_compile_info" {
        ["compiler[64]" => compiler] ["compile_by[16]" => compile_by]
        ["compile_domain[32]" => compile_domain] ["compile_date[32]" => compile_date]
    }
    xen_platform_parameters: XenPlatformParameters = "xen_platform_parameters" {
        ["virt_start" => virt_start]
    }
    xen_feature_info: XenFeatureInfo = "xen_feature_info" {
        ["submap_idx" => submap_idx] ["submap" => submap]
    }
    callback_register: CallbackRegister = "callback_register" {
        ["type" => r#type] ["flags" => flags] ["address" => address]
    }
    xen_hvm_param: XenHvmParam = "xen_hvm_param" {
        ["domid" => domid] ["pad" => pad] ["index" => index] ["value" => value]
    }
    hvm_start_info: HvmStartInfo = "hvm_start_info" {
        ["magic" => magic] ["version" => version] ["flags" => flags]
        ["nr_modules" => nr_modules] ["modlist_paddr" => modlist_paddr]
        ["cmdline_paddr" => cmdline_paddr] ["rsdp_paddr" => rsdp_paddr]
        ["memmap_paddr" => memmap_paddr] ["memmap_entries" => memmap_entries]
        ["reserved" => reserved]
    }
    hvm_modlist_entry: HvmModlistEntry = "hvm_modlist_entry" {
        ["paddr" => paddr] ["size" => size] ["cmdline_paddr" => cmdline_paddr]
        ["reserved" => reserved]
    }
    hvm_memmap_table_entry: HvmMemmapTableEntry = "hvm_memmap_table_entry" {
        ["addr" => addr] ["size" => size] ["type" => r#type] ["reserved" => reserved]
    }
    ioreq: Ioreq = "ioreq" {
        ["addr" => addr] ["data" => data] ["count" => count] ["size" => size]
        ["vp_eport" => vp_eport] ["_pad0" => _pad0] ["state" => bits]
        ["data_is_ptr" => bits] ["dir" => bits] ["df" => bits] ["_pad1" => bits]
        ["type" => r#type]
    }
    shared_iopage: SharedIopage = "shared_iopage",
        c_size = (offset_of!(SharedIopage, vcpu_ioreq) + size_of::<Ioreq>()) {
        ["vcpu_ioreq[1]" => at vcpu_ioreq]
    }
    hvm_vmce_vcpu: HvmVmceVcpu = "hvm_vmce_vcpu" {
        ["caps" => caps] ["mci_ctl2_bank0" => mci_ctl2_bank0]
        ["mci_ctl2_bank1" => mci_ctl2_bank1] ["mcg_ext_ctl" => mcg_ext_ctl]
    }
    xencons_interface: XenconsInterface = "xencons_interface" {
        ["in[1024]" => r#in] ["out[2048]" => out] ["in_cons" => in_cons]
        ["in_prod" => in_prod] ["out_cons" => out_cons] ["out_prod" => out_prod]
    }
}
