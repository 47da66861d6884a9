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
use hypercall_abi::domctl::*;
use hypercall_abi::event_channel::*;
use hypercall_abi::grant_table::*;
use hypercall_abi::hvm::*;
use hypercall_abi::io::blkif::*;
use hypercall_abi::io::console::*;
use hypercall_abi::io::netif::*;
use hypercall_abi::io::xs_wire::*;
use hypercall_abi::memory::*;
use hypercall_abi::physdev::*;
use hypercall_abi::sched::*;
use hypercall_abi::sysctl::*;
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
    assert!(
        missing.is_empty(),
        "table structs without a layout test: {missing:?}"
    );
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
    // ---- event_channel ----
    evtchn_alloc_unbound: EvtchnAllocUnbound = "evtchn_alloc_unbound" {
        ["dom" => dom] ["remote_dom" => remote_dom] ["port" => port]
    }
    evtchn_bind_interdomain: EvtchnBindInterdomain = "evtchn_bind_interdomain" {
        ["remote_dom" => remote_dom] ["remote_port" => remote_port] ["local_port" => local_port]
    }
    evtchn_bind_virq: EvtchnBindVirq = "evtchn_bind_virq" {
        ["virq" => virq] ["vcpu" => vcpu] ["port" => port]
    }
    evtchn_bind_pirq: EvtchnBindPirq = "evtchn_bind_pirq" {
        ["pirq" => pirq] ["flags" => flags] ["port" => port]
    }
    evtchn_bind_ipi: EvtchnBindIpi = "evtchn_bind_ipi" { ["vcpu" => vcpu] ["port" => port] }
    evtchn_close: EvtchnClose = "evtchn_close" { ["port" => port] }
    evtchn_send: EvtchnSend = "evtchn_send" { ["port" => port] }
    evtchn_status: EvtchnStatus = "evtchn_status" {
        ["dom" => dom] ["port" => port] ["status" => status] ["vcpu" => vcpu]
        ["u.unbound.dom" => u.dom] ["u.unbound" => u.dom]
        ["u.interdomain.dom" => u.dom] ["u.interdomain.port" => u.port] ["u.interdomain" => u]
        ["u.pirq" => at u] ["u.virq" => at u] ["u" => u]
    }
    evtchn_bind_vcpu: EvtchnBindVcpu = "evtchn_bind_vcpu" { ["port" => port] ["vcpu" => vcpu] }
    evtchn_unmask: EvtchnUnmask = "evtchn_unmask" { ["port" => port] }
    evtchn_reset: EvtchnReset = "evtchn_reset" { ["dom" => dom] }
    evtchn_init_control: EvtchnInitControl = "evtchn_init_control" {
        ["control_gfn" => control_gfn] ["offset" => offset] ["vcpu" => vcpu]
        ["link_bits" => link_bits] ["_pad[7]" => _pad]
    }
    evtchn_expand_array: EvtchnExpandArray = "evtchn_expand_array" { ["array_gfn" => array_gfn] }
    evtchn_set_priority: EvtchnSetPriority = "evtchn_set_priority" {
        ["port" => port] ["priority" => priority]
    }
    evtchn_op: EvtchnOpCompat = "evtchn_op" {
        ["cmd" => cmd]
        ["u.alloc_unbound" => whole u as EvtchnAllocUnbound]
        ["u.bind_interdomain" => whole u as EvtchnBindInterdomain]
        ["u.bind_virq" => whole u as EvtchnBindVirq]
        ["u.bind_pirq" => whole u as EvtchnBindPirq]
        ["u.bind_ipi" => whole u as EvtchnBindIpi]
        ["u.close" => whole u as EvtchnClose]
        ["u.send" => whole u as EvtchnSend]
        ["u.status" => whole u as EvtchnStatus]
        ["u.bind_vcpu" => whole u as EvtchnBindVcpu]
        ["u.unmask" => whole u as EvtchnUnmask]
        ["u" => u]
    }
    // ---- grant_table ----
    grant_entry_v1: GrantEntryV1 = "grant_entry_v1" {
        ["flags" => flags] ["domid" => domid] ["frame" => frame]
    }
    grant_entry_header: GrantEntryHeader = "grant_entry_header" {
        ["flags" => flags] ["domid" => domid]
    }
    grant_entry_v2: GrantEntryV2 = "grant_entry_v2" {
        ["hdr" => view raw as GrantEntryV2FullPage : hdr]
        ["full_page.hdr" => view raw as GrantEntryV2FullPage : hdr]
        ["full_page.pad0" => view raw as GrantEntryV2FullPage : pad0]
        ["full_page.frame" => view raw as GrantEntryV2FullPage : frame]
        ["full_page" => whole raw as GrantEntryV2FullPage]
        ["sub_page.hdr" => view raw as GrantEntryV2SubPage : hdr]
        ["sub_page.page_off" => view raw as GrantEntryV2SubPage : page_off]
        ["sub_page.length" => view raw as GrantEntryV2SubPage : length]
        ["sub_page.frame" => view raw as GrantEntryV2SubPage : frame]
        ["sub_page" => whole raw as GrantEntryV2SubPage]
        ["transitive.hdr" => view raw as GrantEntryV2Transitive : hdr]
        ["transitive.trans_domid" => view raw as GrantEntryV2Transitive : trans_domid]
        ["transitive.pad0" => view raw as GrantEntryV2Transitive : pad0]
        ["transitive.gref" => view raw as GrantEntryV2Transitive : gref]
        ["transitive" => at raw]
        ["__spacer[4]" => raw]
    }
    gnttab_map_grant_ref: GnttabMapGrantRef = "gnttab_map_grant_ref" {
        ["host_addr" => host_addr] ["flags" => flags] ["ref" => r#ref] ["dom" => dom]
        ["status" => status] ["handle" => handle] ["dev_bus_addr" => dev_bus_addr]
    }
    gnttab_unmap_grant_ref: GnttabUnmapGrantRef = "gnttab_unmap_grant_ref" {
        ["host_addr" => host_addr] ["dev_bus_addr" => dev_bus_addr] ["handle" => handle]
        ["status" => status]
    }
    gnttab_setup_table: GnttabSetupTable = "gnttab_setup_table" {
        ["dom" => dom] ["nr_frames" => nr_frames] ["status" => status]
        ["frame_list" => frame_list]
    }
    gnttab_dump_table: GnttabDumpTable = "gnttab_dump_table" { ["dom" => dom] ["status" => status] }
    gnttab_transfer: GnttabTransfer = "gnttab_transfer" {
        ["mfn" => mfn] ["domid" => domid] ["ref" => r#ref] ["status" => status]
    }
    gnttab_copy_ptr: GnttabCopyPtr = "gnttab_copy_ptr" {
        ["u.ref" => at u] ["u.gmfn" => u] ["u" => u] ["domid" => domid] ["offset" => offset]
    }
    gnttab_copy: GnttabCopy = "gnttab_copy" {
        ["source" => source] ["dest" => dest] ["len" => len] ["flags" => flags]
        ["status" => status]
    }
    gnttab_query_size: GnttabQuerySize = "gnttab_query_size" {
        ["dom" => dom] ["nr_frames" => nr_frames] ["max_nr_frames" => max_nr_frames]
        ["status" => status]
    }
    gnttab_unmap_and_replace: GnttabUnmapAndReplace = "gnttab_unmap_and_replace" {
        ["host_addr" => host_addr] ["new_addr" => new_addr] ["handle" => handle]
        ["status" => status]
    }
    gnttab_set_version: GnttabSetVersion = "gnttab_set_version" { ["version" => version] }
    gnttab_get_status_frames: GnttabGetStatusFrames = "gnttab_get_status_frames" {
        ["nr_frames" => nr_frames] ["dom" => dom] ["status" => status]
        ["frame_list" => frame_list]
    }
    gnttab_get_version: GnttabGetVersion = "gnttab_get_version" {
        ["dom" => dom] ["pad" => pad] ["version" => version]
    }
    gnttab_cache_flush: GnttabCacheFlush = "gnttab_cache_flush" {
        ["a.dev_bus_addr" => a] ["a.ref" => at a] ["a" => a] ["offset" => offset]
        ["length" => length] ["op" => op]
    }
    // ---- physdev ----
    physdev_eoi: PhysdevEoi = "physdev_eoi" { ["irq" => irq] }
    physdev_irq_status_query: PhysdevIrqStatusQuery = "physdev_irq_status_query" {
        ["irq" => irq] ["flags" => flags]
    }
    physdev_set_iopl: PhysdevSetIopl = "physdev_set_iopl" { ["iopl" => iopl] }
    physdev_set_iobitmap: PhysdevSetIobitmap = "physdev_set_iobitmap" {
        ["bitmap" => bitmap] ["nr_ports" => nr_ports]
    }
    physdev_apic: PhysdevApic = "physdev_apic" {
        ["apic_physbase" => apic_physbase] ["reg" => reg] ["value" => value]
    }
    physdev_irq: PhysdevIrq = "physdev_irq" { ["irq" => irq] ["vector" => vector] }
    physdev_map_pirq: PhysdevMapPirq = "physdev_map_pirq" {
        ["domid" => domid] ["type" => r#type] ["index" => index] ["pirq" => pirq]
        ["bus" => bus] ["devfn" => devfn] ["entry_nr" => entry_nr] ["table_base" => table_base]
    }
    physdev_unmap_pirq: PhysdevUnmapPirq = "physdev_unmap_pirq" {
        ["domid" => domid] ["pirq" => pirq]
    }
    physdev_manage_pci: PhysdevManagePci = "physdev_manage_pci" { ["bus" => bus] ["devfn" => devfn] }
    physdev_pci_device_add: PhysdevPciDeviceAdd = "physdev_pci_device_add" {
        ["seg" => seg] ["bus" => bus] ["devfn" => devfn] ["flags" => flags]
        ["physfn.bus" => physfn.bus] ["physfn.devfn" => physfn.devfn] ["physfn" => physfn]
    }
    physdev_pci_device: PhysdevPciDevice = "physdev_pci_device" {
        ["seg" => seg] ["bus" => bus] ["devfn" => devfn]
    }
    // ---- memory ----
    xen_memory_reservation: XenMemoryReservation = "xen_memory_reservation" {
        ["extent_start" => extent_start] ["nr_extents" => nr_extents]
        ["extent_order" => extent_order] ["mem_flags" => mem_flags] ["domid" => domid]
    }
    xen_memory_exchange: XenMemoryExchange = "xen_memory_exchange" {
        ["in" => r#in] ["out" => out] ["nr_exchanged" => nr_exchanged]
    }
    xen_machphys_mfn_list: XenMachphysMfnList = "xen_machphys_mfn_list" {
        ["max_extents" => max_extents] ["extent_start" => extent_start]
        ["nr_extents" => nr_extents]
    }
    xen_machphys_mapping: XenMachphysMapping = "xen_machphys_mapping" {
        ["v_start" => v_start] ["v_end" => v_end] ["max_mfn" => max_mfn]
    }
    xen_add_to_physmap: XenAddToPhysmap = "xen_add_to_physmap" {
        ["domid" => domid] ["size" => size] ["space" => space] ["idx" => idx] ["gpfn" => gpfn]
    }
    xen_add_to_physmap_batch_extra: XenAddToPhysmapBatchExtra = "xen_add_to_physmap_batch_extra" {
        ["foreign_domid" => foreign_domid] ["res0" => foreign_domid]
    }
    xen_add_to_physmap_batch: XenAddToPhysmapBatch = "xen_add_to_physmap_batch" {
        ["domid" => domid] ["space" => space] ["size" => size] ["u" => u] ["idxs" => idxs]
        ["gpfns" => gpfns] ["errs" => errs]
    }
    xen_remove_from_physmap: XenRemoveFromPhysmap = "xen_remove_from_physmap" {
        ["domid" => domid] ["gpfn" => gpfn]
    }
    xen_memory_map: XenMemoryMap = "xen_memory_map" {
        ["nr_entries" => nr_entries] ["buffer" => buffer]
    }
    xen_foreign_memory_map: XenForeignMemoryMap = "xen_foreign_memory_map" {
        ["domid" => domid] ["map" => map]
    }
    xen_vmemrange: XenVmemrange = "xen_vmemrange" {
        ["start" => start] ["end" => end] ["flags" => flags] ["nid" => nid]
    }
    // ---- io ----
    xsd_sockmsg: XsdSockmsg = "xsd_sockmsg" {
        ["type" => r#type] ["req_id" => req_id] ["tx_id" => tx_id] ["len" => len]
    }
    xenstore_domain_interface: XenstoreDomainInterface = "xenstore_domain_interface" {
        ["req[1024]" => req] ["rsp[1024]" => rsp] ["req_cons" => req_cons]
        ["req_prod" => req_prod] ["rsp_cons" => rsp_cons] ["rsp_prod" => rsp_prod]
        ["server_features" => server_features] ["connection" => connection]
        ["error" => error]
    }
    blkif_request_segment: BlkifRequestSegment = "blkif_request_segment" {
        ["gref" => gref] ["first_sect" => first_sect] ["last_sect" => last_sect]
    }
    blkif_request: BlkifRequest = "blkif_request" {
        ["operation" => operation] ["nr_segments" => nr_segments] ["handle" => handle]
        ["id" => id] ["sector_number" => sector_number] ["seg[11]" => seg]
    }
    blkif_request_discard: BlkifRequestDiscard = "blkif_request_discard" {
        ["operation" => operation] ["flag" => flag] ["handle" => handle] ["id" => id]
        ["sector_number" => sector_number] ["nr_sectors" => nr_sectors]
    }
    blkif_request_indirect: BlkifRequestIndirect = "blkif_request_indirect" {
        ["operation" => operation] ["indirect_op" => indirect_op]
        ["nr_segments" => nr_segments] ["id" => id] ["sector_number" => sector_number]
        ["handle" => handle] ["indirect_grefs[8]" => indirect_grefs]
    }
    blkif_response: BlkifResponse = "blkif_response" {
        ["id" => id] ["operation" => operation] ["status" => status]
    }
    blkif_sring_entry: BlkifSringEntry = "blkif_sring_entry" {
        ["req" => req] ["rsp" => whole req as BlkifResponse]
    }
    blkif_sring: BlkifSring = "blkif_sring",
        c_size = (offset_of!(BlkifSring, ring) + size_of::<BlkifSringEntry>()) {
        ["req_prod" => hdr.req_prod] ["req_event" => hdr.req_event]
        ["rsp_prod" => hdr.rsp_prod] ["rsp_event" => hdr.rsp_event]
        ["pvt.netif.smartpoll_active" => at hdr.pvt] ["pvt.netif" => at hdr.pvt]
        ["pvt.tapif_user.msg" => at hdr.pvt] ["pvt.tapif_user" => at hdr.pvt]
        ["pvt.pvt_pad[4]" => hdr.pvt] ["pvt" => hdr.pvt] ["__pad[44]" => hdr.__pad]
        ["ring[1]" => at ring]
    }
    netif_tx_request: NetifTxRequest = "netif_tx_request" {
        ["gref" => gref] ["offset" => offset] ["flags" => flags] ["id" => id] ["size" => size]
    }
    netif_extra_info: NetifExtraInfo = "netif_extra_info" {
        ["type" => r#type] ["flags" => flags]
        ["u.gso.size" => u.size] ["u.gso.type" => u.r#type] ["u.gso.pad" => u.pad]
        ["u.gso.features" => u.features] ["u.gso" => u]
        ["u.mcast.addr[6]" => view u as NetifExtraInfoMcast : addr]
        ["u.mcast" => whole u as NetifExtraInfoMcast]
        ["u.hash.type" => view u as NetifExtraInfoHash : r#type]
        ["u.hash.algorithm" => view u as NetifExtraInfoHash : algorithm]
        ["u.hash.value[4]" => view u as NetifExtraInfoHash : value]
        ["u.hash" => whole u as NetifExtraInfoHash]
        ["u.pad[3]" => whole u as [u16; 3]] ["u" => u]
    }
    netif_tx_response: NetifTxResponse = "netif_tx_response" { ["id" => id] ["status" => status] }
    netif_rx_request: NetifRxRequest = "netif_rx_request" {
        ["id" => id] ["pad" => pad] ["gref" => gref]
    }
    netif_rx_response: NetifRxResponse = "netif_rx_response" {
        ["id" => id] ["offset" => offset] ["flags" => flags] ["status" => status]
    }
    netif_tx_sring_entry: NetifTxSringEntry = "netif_tx_sring_entry" {
        ["req" => req] ["rsp" => whole req as NetifTxResponse]
    }
    netif_tx_sring: NetifTxSring = "netif_tx_sring",
        c_size = (offset_of!(NetifTxSring, ring) + size_of::<NetifTxSringEntry>()) {
        ["req_prod" => hdr.req_prod] ["req_event" => hdr.req_event]
        ["rsp_prod" => hdr.rsp_prod] ["rsp_event" => hdr.rsp_event]
        ["pvt.netif.smartpoll_active" => at hdr.pvt] ["pvt.netif" => at hdr.pvt]
        ["pvt.tapif_user.msg" => at hdr.pvt] ["pvt.tapif_user" => at hdr.pvt]
        ["pvt.pvt_pad[4]" => hdr.pvt] ["pvt" => hdr.pvt] ["__pad[44]" => hdr.__pad]
        ["ring[1]" => at ring]
    }
    netif_rx_sring_entry: NetifRxSringEntry = "netif_rx_sring_entry" {
        ["req" => req] ["rsp" => whole req as NetifRxResponse]
    }
    netif_rx_sring: NetifRxSring = "netif_rx_sring",
        c_size = (offset_of!(NetifRxSring, ring) + size_of::<NetifRxSringEntry>()) {
        ["req_prod" => hdr.req_prod] ["req_event" => hdr.req_event]
        ["rsp_prod" => hdr.rsp_prod] ["rsp_event" => hdr.rsp_event]
        ["pvt.netif.smartpoll_active" => at hdr.pvt] ["pvt.netif" => at hdr.pvt]
        ["pvt.tapif_user.msg" => at hdr.pvt] ["pvt.tapif_user" => at hdr.pvt]
        ["pvt.pvt_pad[4]" => hdr.pvt] ["pvt" => hdr.pvt] ["__pad[44]" => hdr.__pad]
        ["ring[1]" => at ring]
    }
    // ---- domctl ----
    xenctl_bitmap: XenctlBitmap = "xenctl_bitmap" { ["bitmap" => bitmap] ["nr_bits" => nr_bits] }
    xen_domctl_createdomain: XenDomctlCreatedomain = "xen_domctl_createdomain" {
        ["ssidref" => ssidref] ["handle" => handle] ["flags" => flags]
        ["iommu_opts" => iommu_opts] ["max_vcpus" => max_vcpus]
        ["max_evtchn_port" => max_evtchn_port] ["max_grant_frames" => max_grant_frames]
        ["max_maptrack_frames" => max_maptrack_frames] ["grant_opts" => grant_opts]
        ["vmtrace_size" => vmtrace_size] ["cpupool_id" => cpupool_id] ["arch" => arch]
    }
    xen_domctl_getdomaininfo: XenDomctlGetdomaininfo = "xen_domctl_getdomaininfo" {
        ["domain" => domain] ["pad1" => pad1] ["flags" => flags] ["tot_pages" => tot_pages]
        ["max_pages" => max_pages] ["outstanding_pages" => outstanding_pages]
        ["shr_pages" => shr_pages] ["paged_pages" => paged_pages]
        ["shared_info_frame" => shared_info_frame] ["cpu_time" => cpu_time]
        ["nr_online_vcpus" => nr_online_vcpus] ["max_vcpu_id" => max_vcpu_id]
        ["ssidref" => ssidref] ["handle" => handle] ["cpupool" => cpupool]
        ["gpaddr_bits" => gpaddr_bits] ["pad2[7]" => pad2] ["arch_config" => arch_config]
    }
    xen_domctl_getpageframeinfo3: XenDomctlGetpageframeinfo3 = "xen_domctl_getpageframeinfo3" {
        ["num" => num] ["array" => array]
    }
    xen_domctl_shadow_op_stats: XenDomctlShadowOpStats = "xen_domctl_shadow_op_stats" {
        ["fault_count" => fault_count] ["dirty_count" => dirty_count]
    }
    xen_domctl_shadow_op: XenDomctlShadowOp = "xen_domctl_shadow_op" {
        ["op" => op] ["mode" => mode] ["mb" => mb] ["dirty_bitmap" => dirty_bitmap]
        ["pages" => pages] ["stats" => stats]
    }
    xen_domctl_max_mem: XenDomctlMaxMem = "xen_domctl_max_mem" { ["max_memkb" => max_memkb] }
    xen_domctl_vcpucontext: XenDomctlVcpucontext = "xen_domctl_vcpucontext" {
        ["vcpu" => vcpu] ["ctxt" => ctxt]
    }
    xen_domctl_getvcpuinfo: XenDomctlGetvcpuinfo = "xen_domctl_getvcpuinfo" {
        ["vcpu" => vcpu] ["online" => online] ["blocked" => blocked] ["running" => running]
        ["cpu_time" => cpu_time] ["cpu" => cpu]
    }
    xen_domctl_nodeaffinity: XenDomctlNodeaffinity = "xen_domctl_nodeaffinity" {
        ["nodemap" => nodemap]
    }
    xen_domctl_vcpuaffinity: XenDomctlVcpuaffinity = "xen_domctl_vcpuaffinity" {
        ["vcpu" => vcpu] ["flags" => flags] ["cpumap_hard" => cpumap_hard]
        ["cpumap_soft" => cpumap_soft]
    }
    xen_domctl_max_vcpus: XenDomctlMaxVcpus = "xen_domctl_max_vcpus" { ["max" => max] }
    xen_domctl_sched_credit: XenDomctlSchedCredit = "xen_domctl_sched_credit" {
        ["weight" => weight] ["cap" => cap]
    }
    xen_domctl_sched_credit2: XenDomctlSchedCredit2 = "xen_domctl_sched_credit2" {
        ["weight" => weight] ["cap" => cap]
    }
    xen_domctl_sched_rtds: XenDomctlSchedRtds = "xen_domctl_sched_rtds" {
        ["period" => period] ["budget" => budget] ["flags" => flags]
    }
    xen_domctl_schedparam_vcpu: XenDomctlSchedparamVcpu = "xen_domctl_schedparam_vcpu" {
        ["u.credit" => whole u as XenDomctlSchedCredit]
        ["u.credit2" => whole u as XenDomctlSchedCredit2]
        ["u.rtds" => u] ["u" => u] ["vcpuid" => vcpuid]
    }
    xen_domctl_scheduler_op: XenDomctlSchedulerOp = "xen_domctl_scheduler_op" {
        ["sched_id" => sched_id] ["cmd" => cmd]
        ["u.credit" => whole u as XenDomctlSchedCredit]
        ["u.credit2" => whole u as XenDomctlSchedCredit2]
        ["u.rtds" => whole u as XenDomctlSchedRtds]
        ["u.v.vcpus" => view u as XenDomctlSchedulerOpV : vcpus]
        ["u.v.nr_vcpus" => view u as XenDomctlSchedulerOpV : nr_vcpus]
        ["u.v.padding" => view u as XenDomctlSchedulerOpV : padding]
        ["u.v" => whole u as XenDomctlSchedulerOpV] ["u" => u]
    }
    xen_domctl_setdomainhandle: XenDomctlSetdomainhandle = "xen_domctl_setdomainhandle" {
        ["handle" => handle]
    }
    xen_domctl_setdebugging: XenDomctlSetdebugging = "xen_domctl_setdebugging" {
        ["enable" => enable]
    }
    xen_domctl_irq_permission: XenDomctlIrqPermission = "xen_domctl_irq_permission" {
        ["pirq" => pirq] ["allow_access" => allow_access] ["pad[3]" => pad]
    }
    xen_domctl_iomem_permission: XenDomctlIomemPermission = "xen_domctl_iomem_permission" {
        ["first_mfn" => first_mfn] ["nr_mfns" => nr_mfns] ["allow_access" => allow_access]
    }
    xen_domctl_ioport_permission: XenDomctlIoportPermission = "xen_domctl_ioport_permission" {
        ["first_port" => first_port] ["nr_ports" => nr_ports] ["allow_access" => allow_access]
    }
    xen_domctl_hypercall_init: XenDomctlHypercallInit = "xen_domctl_hypercall_init" {
        ["gmfn" => gmfn]
    }
    xen_domctl_settimeoffset: XenDomctlSettimeoffset = "xen_domctl_settimeoffset" {
        ["time_offset_seconds" => time_offset_seconds]
    }
    xen_domctl_hvmcontext: XenDomctlHvmcontext = "xen_domctl_hvmcontext" {
        ["size" => size] ["buffer" => buffer]
    }
    xen_domctl_address_size: XenDomctlAddressSize = "xen_domctl_address_size" { ["size" => size] }
    xen_domctl_sendtrigger: XenDomctlSendtrigger = "xen_domctl_sendtrigger" {
        ["trigger" => trigger] ["vcpu" => vcpu]
    }
    xen_domctl_assign_device: XenDomctlAssignDevice = "xen_domctl_assign_device" {
        ["dev" => dev] ["flags" => flags]
        ["u.pci.machine_sbdf" => u.size] ["u.pci" => u.size]
        ["u.dt.size" => u.size] ["u.dt.path" => u.path] ["u.dt" => u] ["u" => u]
    }
    xen_domctl_get_device_group: XenDomctlGetDeviceGroup = "xen_domctl_get_device_group" {
        ["machine_sbdf" => machine_sbdf] ["max_sdevs" => max_sdevs] ["num_sdevs" => num_sdevs]
        ["sdev_array" => sdev_array]
    }
    xen_domctl_bind_pt_irq: XenDomctlBindPtIrq = "xen_domctl_bind_pt_irq" {
        ["machine_irq" => machine_irq] ["irq_type" => irq_type]
        ["u.isa.isa_irq" => u.gvec] ["u.isa" => u.gvec]
        ["u.pci.bus" => view u as XenDomctlBindPtIrqPci : bus]
        ["u.pci.device" => view u as XenDomctlBindPtIrqPci : device]
        ["u.pci.intx" => view u as XenDomctlBindPtIrqPci : intx]
        ["u.pci" => whole u as XenDomctlBindPtIrqPci]
        ["u.msi.gvec" => u.gvec] ["u.msi.gflags" => u.gflags] ["u.msi.gtable" => u.gtable]
        ["u.msi" => u] ["u.spi.spi" => at u] ["u.spi" => at u] ["u" => u]
    }
    xen_domctl_memory_mapping: XenDomctlMemoryMapping = "xen_domctl_memory_mapping" {
        ["first_gfn" => first_gfn] ["first_mfn" => first_mfn] ["nr_mfns" => nr_mfns]
        ["add_mapping" => add_mapping] ["padding" => padding]
    }
    xen_domctl_ioport_mapping: XenDomctlIoportMapping = "xen_domctl_ioport_mapping" {
        ["first_gport" => first_gport] ["first_mport" => first_mport]
        ["nr_ports" => nr_ports] ["add_mapping" => add_mapping]
    }
    xen_domctl_ext_vcpucontext: XenDomctlExtVcpucontext = "xen_domctl_ext_vcpucontext" {
        ["vcpu" => vcpu] ["size" => size]
        ["syscall32_callback_eip" => syscall32_callback_eip]
        ["sysenter_callback_eip" => sysenter_callback_eip]
        ["syscall32_callback_cs" => syscall32_callback_cs]
        ["sysenter_callback_cs" => sysenter_callback_cs]
        ["syscall32_disables_events" => syscall32_disables_events]
        ["sysenter_disables_events" => sysenter_disables_events]
        ["mcg_cap" => vmce.caps] ["vmce" => vmce] ["(anon)" => vmce]
    }
    xen_domctl_set_target: XenDomctlSetTarget = "xen_domctl_set_target" { ["target" => target] }
    xen_domctl_cpu_policy: XenDomctlCpuPolicy = "xen_domctl_cpu_policy" {
        ["nr_leaves" => nr_leaves] ["nr_msrs" => nr_msrs] ["leaves" => leaves] ["msrs" => msrs]
        ["err_leaf" => err_leaf] ["err_subleaf" => err_subleaf] ["err_msr" => err_msr]
    }
    xen_domctl_subscribe: XenDomctlSubscribe = "xen_domctl_subscribe" { ["port" => port] }
    xen_domctl_debug_op: XenDomctlDebugOp = "xen_domctl_debug_op" { ["op" => op] ["vcpu" => vcpu] }
    xen_domctl_hvmcontext_partial: XenDomctlHvmcontextPartial = "xen_domctl_hvmcontext_partial" {
        ["type" => r#type] ["instance" => instance] ["bufsz" => bufsz] ["buffer" => buffer]
    }
    xen_domctl_tsc_info: XenDomctlTscInfo = "xen_domctl_tsc_info" {
        ["tsc_mode" => tsc_mode] ["gtsc_khz" => gtsc_khz] ["incarnation" => incarnation]
        ["pad" => pad] ["elapsed_nsec" => elapsed_nsec]
    }
    xen_domctl_gdbsx_memio: XenDomctlGdbsxMemio = "xen_domctl_gdbsx_memio" {
        ["pgd3val" => pgd3val] ["gva" => gva] ["uva" => uva] ["len" => len] ["gwr" => gwr]
        ["remain" => remain]
    }
    xen_domctl_gdbsx_pauseunp_vcpu: XenDomctlGdbsxPauseunpVcpu = "xen_domctl_gdbsx_pauseunp_vcpu" {
        ["vcpu" => vcpu]
    }
    xen_domctl_gdbsx_domstatus: XenDomctlGdbsxDomstatus = "xen_domctl_gdbsx_domstatus" {
        ["paused" => paused] ["vcpu_id" => vcpu_id] ["vcpu_ev" => vcpu_ev]
    }
    xen_domctl_vm_event_op: XenDomctlVmEventOp = "xen_domctl_vm_event_op" {
        ["op" => op] ["mode" => mode] ["u.enable.port" => u] ["u.enable" => u]
        ["u.version" => u] ["u" => u]
    }
    xen_domctl_mem_sharing_op: XenDomctlMemSharingOp = "xen_domctl_mem_sharing_op" {
        ["op" => op] ["u.enable" => u] ["u" => u]
    }
    xen_domctl_audit_p2m: XenDomctlAuditP2m = "xen_domctl_audit_p2m" {
        ["orphans" => orphans] ["m2p_bad" => m2p_bad] ["p2m_bad" => p2m_bad]
    }
    xen_domctl_set_virq_handler: XenDomctlSetVirqHandler = "xen_domctl_set_virq_handler" {
        ["virq" => virq]
    }
    xen_domctl_vcpuextstate: XenDomctlVcpuextstate = "xen_domctl_vcpuextstate" {
        ["vcpu" => vcpu] ["xfeature_mask" => xfeature_mask] ["size" => size]
        ["buffer" => buffer]
    }
    xen_domctl_set_access_required: XenDomctlSetAccessRequired = "xen_domctl_set_access_required" {
        ["access_required" => access_required]
    }
    xen_domctl_set_broken_page_p2m: XenDomctlSetBrokenPageP2m = "xen_domctl_set_broken_page_p2m" {
        ["pfn" => pfn]
    }
    xen_domctl_cacheflush: XenDomctlCacheflush = "xen_domctl_cacheflush" {
        ["start_pfn" => start_pfn] ["nr_pfns" => nr_pfns]
    }
    xen_domctl_paging_mempool: XenDomctlPagingMempool = "xen_domctl_paging_mempool" {
        ["size" => size]
    }
    xen_domctl_vcpu_msr: XenDomctlVcpuMsr = "xen_domctl_vcpu_msr" {
        ["index" => index] ["reserved" => reserved] ["value" => value]
    }
    xen_domctl_vcpu_msrs: XenDomctlVcpuMsrs = "xen_domctl_vcpu_msrs" {
        ["vcpu" => vcpu] ["msr_count" => msr_count] ["msrs" => msrs]
    }
    xen_domctl_vnuma: XenDomctlVnuma = "xen_domctl_vnuma" {
        ["nr_vnodes" => nr_vnodes] ["nr_vmemranges" => nr_vmemranges] ["nr_vcpus" => nr_vcpus]
        ["pad" => pad] ["vdistance" => vdistance] ["vcpu_to_vnode" => vcpu_to_vnode]
        ["vnode_to_pnode" => vnode_to_pnode] ["vmemrange" => vmemrange]
    }
    xen_domctl_psr_cmt_op: XenDomctlPsrCmtOp = "xen_domctl_psr_cmt_op" {
        ["cmd" => cmd] ["data" => data]
    }
    xen_domctl_monitor_op: XenDomctlMonitorOp = "xen_domctl_monitor_op" {
        ["op" => op] ["event" => event]
        ["u.mov_to_cr.index" => u.index] ["u.mov_to_cr.sync" => u.sync]
        ["u.mov_to_cr.onchangeonly" => u.onchangeonly] ["u.mov_to_cr.pad1" => u.pad1]
        ["u.mov_to_cr.pad2" => u.pad2] ["u.mov_to_cr.bitmask" => u.bitmask]
        ["u.mov_to_cr" => u]
        ["u.mov_to_msr.msr" => view u as XenDomctlMonitorOpMovToMsr : msr]
        ["u.mov_to_msr.onchangeonly" => view u as XenDomctlMonitorOpMovToMsr : onchangeonly]
        ["u.mov_to_msr" => whole u as XenDomctlMonitorOpMovToMsr]
        ["u.guest_request.sync" => view u as XenDomctlMonitorOpGuestRequest : sync]
        ["u.guest_request.allow_userspace" =>
            view u as XenDomctlMonitorOpGuestRequest : allow_userspace]
        ["u.guest_request" => whole u as XenDomctlMonitorOpGuestRequest]
        ["u.debug_exception.sync" => u.index] ["u.debug_exception" => u.index]
        ["u.vmexit.sync" => u.index] ["u.vmexit" => u.index] ["u" => u]
    }
    xen_domctl_psr_alloc: XenDomctlPsrAlloc = "xen_domctl_psr_alloc" {
        ["cmd" => cmd] ["target" => target] ["data" => data]
    }
    xen_domctl_vuart_op: XenDomctlVuartOp = "xen_domctl_vuart_op" {
        ["cmd" => cmd] ["type" => r#type] ["gfn" => gfn] ["console_domid" => console_domid]
        ["pad[2]" => pad] ["evtchn" => evtchn]
    }
    xen_domctl_vmtrace_op: XenDomctlVmtraceOp = "xen_domctl_vmtrace_op" {
        ["cmd" => cmd] ["vcpu" => vcpu] ["key" => key] ["value" => value]
    }
    xen_domctl: XenDomctl = "xen_domctl" {
        ["cmd" => cmd] ["interface_version" => interface_version] ["domain" => domain]
        ["_pad[3]" => _pad]
        ["u.createdomain" => whole u as XenDomctlCreatedomain]
        ["u.getdomaininfo" => whole u as XenDomctlGetdomaininfo]
        ["u.getpageframeinfo3" => whole u as XenDomctlGetpageframeinfo3]
        ["u.nodeaffinity" => whole u as XenDomctlNodeaffinity]
        ["u.vcpuaffinity" => whole u as XenDomctlVcpuaffinity]
        ["u.shadow_op" => whole u as XenDomctlShadowOp]
        ["u.max_mem" => whole u as XenDomctlMaxMem]
        ["u.vcpucontext" => whole u as XenDomctlVcpucontext]
        ["u.getvcpuinfo" => whole u as XenDomctlGetvcpuinfo]
        ["u.max_vcpus" => whole u as XenDomctlMaxVcpus]
        ["u.scheduler_op" => whole u as XenDomctlSchedulerOp]
        ["u.setdomainhandle" => whole u as XenDomctlSetdomainhandle]
        ["u.setdebugging" => whole u as XenDomctlSetdebugging]
        ["u.irq_permission" => whole u as XenDomctlIrqPermission]
        ["u.iomem_permission" => whole u as XenDomctlIomemPermission]
        ["u.ioport_permission" => whole u as XenDomctlIoportPermission]
        ["u.hypercall_init" => whole u as XenDomctlHypercallInit]
        ["u.settimeoffset" => whole u as XenDomctlSettimeoffset]
        ["u.tsc_info" => whole u as XenDomctlTscInfo]
        ["u.hvmcontext" => whole u as XenDomctlHvmcontext]
        ["u.hvmcontext_partial" => whole u as XenDomctlHvmcontextPartial]
        ["u.address_size" => whole u as XenDomctlAddressSize]
        ["u.sendtrigger" => whole u as XenDomctlSendtrigger]
        ["u.get_device_group" => whole u as XenDomctlGetDeviceGroup]
        ["u.assign_device" => whole u as XenDomctlAssignDevice]
        ["u.bind_pt_irq" => whole u as XenDomctlBindPtIrq]
        ["u.memory_mapping" => whole u as XenDomctlMemoryMapping]
        ["u.ioport_mapping" => whole u as XenDomctlIoportMapping]
        ["u.ext_vcpucontext" => whole u as XenDomctlExtVcpucontext]
        ["u.set_target" => whole u as XenDomctlSetTarget]
        ["u.subscribe" => whole u as XenDomctlSubscribe]
        ["u.debug_op" => whole u as XenDomctlDebugOp]
        ["u.vm_event_op" => whole u as XenDomctlVmEventOp]
        ["u.mem_sharing_op" => whole u as XenDomctlMemSharingOp]
        ["u.cpu_policy" => whole u as XenDomctlCpuPolicy]
        ["u.vcpuextstate" => whole u as XenDomctlVcpuextstate]
        ["u.vcpu_msrs" => whole u as XenDomctlVcpuMsrs]
        ["u.access_required" => whole u as XenDomctlSetAccessRequired]
        ["u.audit_p2m" => whole u as XenDomctlAuditP2m]
        ["u.set_virq_handler" => whole u as XenDomctlSetVirqHandler]
        ["u.gdbsx_guest_memio" => whole u as XenDomctlGdbsxMemio]
        ["u.set_broken_page_p2m" => whole u as XenDomctlSetBrokenPageP2m]
        ["u.cacheflush" => whole u as XenDomctlCacheflush]
        ["u.gdbsx_pauseunp_vcpu" => whole u as XenDomctlGdbsxPauseunpVcpu]
        ["u.gdbsx_domstatus" => whole u as XenDomctlGdbsxDomstatus]
        ["u.vnuma" => whole u as XenDomctlVnuma]
        ["u.psr_cmt_op" => whole u as XenDomctlPsrCmtOp]
        ["u.monitor_op" => whole u as XenDomctlMonitorOp]
        ["u.psr_alloc" => whole u as XenDomctlPsrAlloc]
        ["u.vuart_op" => whole u as XenDomctlVuartOp]
        ["u.vmtrace_op" => whole u as XenDomctlVmtraceOp]
        ["u.paging_mempool" => whole u as XenDomctlPagingMempool]
        ["u.pad[128]" => u] ["u" => u]
    }
    // ---- sysctl ----
    xen_sysctl_readconsole: XenSysctlReadconsole = "xen_sysctl_readconsole" {
        ["clear" => clear] ["incremental" => incremental] ["pad0" => pad0] ["pad1" => pad1]
        ["index" => index] ["buffer" => buffer] ["count" => count]
    }
    xen_sysctl_tbuf_op: XenSysctlTbufOp = "xen_sysctl_tbuf_op" {
        ["cmd" => cmd] ["cpu_mask" => cpu_mask] ["evt_mask" => evt_mask]
        ["buffer_mfn" => buffer_mfn] ["size" => size]
    }
    xen_sysctl_physinfo: XenSysctlPhysinfo = "xen_sysctl_physinfo" {
        ["threads_per_core" => threads_per_core] ["cores_per_socket" => cores_per_socket]
        ["nr_cpus" => nr_cpus] ["max_cpu_id" => max_cpu_id] ["nr_nodes" => nr_nodes]
        ["max_node_id" => max_node_id] ["cpu_khz" => cpu_khz] ["capabilities" => capabilities]
        ["arch_capabilities" => arch_capabilities] ["pad" => pad]
        ["total_pages" => total_pages] ["free_pages" => free_pages]
        ["scrub_pages" => scrub_pages] ["outstanding_pages" => outstanding_pages]
        ["max_mfn" => max_mfn] ["hw_cap[8]" => hw_cap]
    }
    xen_sysctl_sched_id: XenSysctlSchedId = "xen_sysctl_sched_id" { ["sched_id" => sched_id] }
    xen_sysctl_perfc_desc: XenSysctlPerfcDesc = "xen_sysctl_perfc_desc" {
        ["name[80]" => name] ["nr_vals" => nr_vals]
    }
    xen_sysctl_perfc_op: XenSysctlPerfcOp = "xen_sysctl_perfc_op" {
        ["cmd" => cmd] ["nr_counters" => nr_counters] ["nr_vals" => nr_vals] ["desc" => desc]
        ["val" => val]
    }
    xen_sysctl_getdomaininfolist: XenSysctlGetdomaininfolist = "xen_sysctl_getdomaininfolist" {
        ["first_domain" => first_domain] ["max_domains" => max_domains] ["buffer" => buffer]
        ["num_domains" => num_domains]
    }
    xen_sysctl_debug_keys: XenSysctlDebugKeys = "xen_sysctl_debug_keys" {
        ["keys" => keys] ["nr_keys" => nr_keys]
    }
    xen_sysctl_cpuinfo: XenSysctlCpuinfo = "xen_sysctl_cpuinfo" { ["idletime" => idletime] }
    xen_sysctl_getcpuinfo: XenSysctlGetcpuinfo = "xen_sysctl_getcpuinfo" {
        ["max_cpus" => max_cpus] ["info" => info] ["nr_cpus" => nr_cpus]
    }
    xen_sysctl_availheap: XenSysctlAvailheap = "xen_sysctl_availheap" {
        ["min_bitwidth" => min_bitwidth] ["max_bitwidth" => max_bitwidth] ["node" => node]
        ["avail_bytes" => avail_bytes]
    }
    pm_px_val: PmPxVal = "pm_px_val" {
        ["freq" => freq] ["residency" => residency] ["count" => count]
    }
    pm_px_stat: PmPxStat = "pm_px_stat" {
        ["total" => total] ["usable" => usable] ["last" => last] ["cur" => cur]
        ["trans_pt" => trans_pt] ["pt" => pt]
    }
    pm_cx_stat: PmCxStat = "pm_cx_stat" {
        ["nr" => nr] ["last" => last] ["idle_time" => idle_time] ["triggers" => triggers]
        ["residencies" => residencies] ["nr_pc" => nr_pc] ["nr_cc" => nr_cc] ["pc" => pc]
        ["cc" => cc]
    }
    xen_sysctl_get_pmstat: XenSysctlGetPmstat = "xen_sysctl_get_pmstat" {
        ["type" => r#type] ["cpuid" => cpuid] ["u.getpx" => whole u as PmPxStat]
        ["u.getcx" => u] ["u" => u]
    }
    xen_sysctl_cpu_hotplug: XenSysctlCpuHotplug = "xen_sysctl_cpu_hotplug" {
        ["cpu" => cpu] ["op" => op]
    }
    xen_userspace: XenUserspace = "xen_userspace" { ["scaling_setspeed" => scaling_setspeed] }
    xen_ondemand: XenOndemand = "xen_ondemand" {
        ["sampling_rate_max" => sampling_rate_max] ["sampling_rate_min" => sampling_rate_min]
        ["sampling_rate" => sampling_rate] ["up_threshold" => up_threshold]
    }
    xen_get_cpufreq_para: XenGetCpufreqPara = "xen_get_cpufreq_para" {
        ["cpu_num" => cpu_num] ["freq_num" => freq_num] ["gov_num" => gov_num]
        ["affected_cpus" => affected_cpus]
        ["scaling_available_frequencies" => scaling_available_frequencies]
        ["scaling_available_governors" => scaling_available_governors]
        ["scaling_driver[16]" => scaling_driver] ["cpuinfo_cur_freq" => cpuinfo_cur_freq]
        ["cpuinfo_max_freq" => cpuinfo_max_freq] ["cpuinfo_min_freq" => cpuinfo_min_freq]
        ["scaling_cur_freq" => scaling_cur_freq] ["scaling_governor[16]" => scaling_governor]
        ["scaling_max_freq" => scaling_max_freq] ["scaling_min_freq" => scaling_min_freq]
        ["u.userspace" => whole u as XenUserspace] ["u.ondemand" => u] ["u" => u]
        ["turbo_enabled" => turbo_enabled]
    }
    xen_set_cpufreq_gov: XenSetCpufreqGov = "xen_set_cpufreq_gov" {
        ["scaling_governor[16]" => scaling_governor]
    }
    xen_set_cpufreq_para: XenSetCpufreqPara = "xen_set_cpufreq_para" {
        ["ctrl_type" => ctrl_type] ["ctrl_value" => ctrl_value]
    }
    xen_sysctl_pm_op: XenSysctlPmOp = "xen_sysctl_pm_op" {
        ["cmd" => cmd] ["cpuid" => cpuid] ["u.get_para" => u]
        ["u.set_gov" => whole u as XenSetCpufreqGov]
        ["u.set_para" => whole u as XenSetCpufreqPara]
        ["u.get_avgfreq" => whole u as u64] ["u.set_sched_opt_smt" => whole u as u32]
        ["u.get_max_cstate" => whole u as u32] ["u.set_max_cstate" => whole u as u32]
        ["u" => u]
    }
    xen_sysctl_page_offline_op: XenSysctlPageOfflineOp = "xen_sysctl_page_offline_op" {
        ["cmd" => cmd] ["start" => start] ["end" => end] ["status" => status]
    }
    xen_sysctl_lockprof_data: XenSysctlLockprofData = "xen_sysctl_lockprof_data" {
        ["name[40]" => name] ["type" => r#type] ["idx" => idx] ["lock_cnt" => lock_cnt]
        ["block_cnt" => block_cnt] ["lock_time" => lock_time] ["block_time" => block_time]
    }
    xen_sysctl_lockprof_op: XenSysctlLockprofOp = "xen_sysctl_lockprof_op" {
        ["cmd" => cmd] ["max_elem" => max_elem] ["nr_elem" => nr_elem] ["time" => time]
        ["data" => data]
    }
    xen_sysctl_cputopo: XenSysctlCputopo = "xen_sysctl_cputopo" {
        ["core" => core] ["socket" => socket] ["node" => node]
    }
    xen_sysctl_cputopoinfo: XenSysctlCputopoinfo = "xen_sysctl_cputopoinfo" {
        ["num_cpus" => num_cpus] ["cputopo" => cputopo]
    }
    xen_sysctl_meminfo: XenSysctlMeminfo = "xen_sysctl_meminfo" {
        ["memsize" => memsize] ["memfree" => memfree]
    }
    xen_sysctl_numainfo: XenSysctlNumainfo = "xen_sysctl_numainfo" {
        ["num_nodes" => num_nodes] ["meminfo" => meminfo] ["distance" => distance]
    }
    xen_sysctl_cpupool_op: XenSysctlCpupoolOp = "xen_sysctl_cpupool_op" {
        ["op" => op] ["cpupool_id" => cpupool_id] ["sched_id" => sched_id] ["domid" => domid]
        ["cpu" => cpu] ["n_dom" => n_dom] ["cpumap" => cpumap]
    }
    xen_sysctl_arinc653_schedule: XenSysctlArinc653Schedule = "xen_sysctl_arinc653_schedule" {
        ["major_frame" => major_frame] ["num_sched_entries" => num_sched_entries]
        ["sched_entries[64].dom_handle" =>
            view sched_entries as XenSysctlArinc653Entry : dom_handle]
        ["sched_entries[64].vcpu_id" => view sched_entries as XenSysctlArinc653Entry : vcpu_id]
        ["sched_entries[64].runtime" => view sched_entries as XenSysctlArinc653Entry : runtime]
        ["sched_entries[64]" => sched_entries]
    }
    xen_sysctl_credit_schedule: XenSysctlCreditSchedule = "xen_sysctl_credit_schedule" {
        ["tslice_ms" => tslice_ms] ["ratelimit_us" => ratelimit_us]
        ["vcpu_migr_delay_us" => vcpu_migr_delay_us]
    }
    xen_sysctl_credit2_schedule: XenSysctlCredit2Schedule = "xen_sysctl_credit2_schedule" {
        ["ratelimit_us" => ratelimit_us]
    }
    xen_sysctl_sched_arinc653: XenSysctlSchedArinc653 = "xen_sysctl_sched_arinc653" {
        ["schedule" => schedule]
    }
    xen_sysctl_scheduler_op: XenSysctlSchedulerOp = "xen_sysctl_scheduler_op" {
        ["cpupool_id" => cpupool_id] ["sched_id" => sched_id] ["cmd" => cmd]
        ["u.sched_arinc653" => whole u as XenSysctlSchedArinc653]
        ["u.sched_credit" => whole u as XenSysctlCreditSchedule]
        ["u.sched_credit2" => whole u as XenSysctlCredit2Schedule] ["u" => u]
    }
    xen_sysctl_coverage_op: XenSysctlCoverageOp = "xen_sysctl_coverage_op" {
        ["cmd" => cmd] ["size" => size] ["buffer" => buffer]
    }
    xen_sysctl_psr_cmt_op: XenSysctlPsrCmtOp = "xen_sysctl_psr_cmt_op" {
        ["cmd" => cmd] ["flags" => flags] ["u.data" => u]
        ["u.l3_cache.cpu" => view u as XenSysctlPsrCmtL3Cache : cpu]
        ["u.l3_cache.rsvd" => view u as XenSysctlPsrCmtL3Cache : rsvd]
        ["u.l3_cache" => whole u as XenSysctlPsrCmtL3Cache] ["u" => u]
    }
    xen_sysctl_pcitopoinfo: XenSysctlPcitopoinfo = "xen_sysctl_pcitopoinfo" {
        ["num_devs" => num_devs] ["devs" => devs] ["nodes" => nodes]
    }
    xen_sysctl_psr_alloc: XenSysctlPsrAlloc = "xen_sysctl_psr_alloc" {
        ["cmd" => cmd] ["target" => target]
        ["u.cat_info.cbm_len" => u.cbm_len] ["u.cat_info.cos_max" => u.cos_max]
        ["u.cat_info.flags" => u.flags] ["u.cat_info" => u]
        ["u.mba_info.thrtl_max" => view u as XenSysctlPsrMbaInfo : thrtl_max]
        ["u.mba_info.cos_max" => view u as XenSysctlPsrMbaInfo : cos_max]
        ["u.mba_info.flags" => view u as XenSysctlPsrMbaInfo : flags]
        ["u.mba_info" => whole u as XenSysctlPsrMbaInfo] ["u" => u]
    }
    xen_sysctl_cpu_levelling_caps: XenSysctlCpuLevellingCaps = "xen_sysctl_cpu_levelling_caps" {
        ["caps" => caps]
    }
    xen_sysctl_cpu_featureset: XenSysctlCpuFeatureset = "xen_sysctl_cpu_featureset" {
        ["index" => index] ["nr_features" => nr_features] ["features" => features]
    }
    xen_livepatch_name: XenLivepatchName = "xen_livepatch_name" {
        ["name" => name] ["size" => size] ["pad[3]" => pad]
    }
    xen_sysctl_livepatch_upload: XenSysctlLivepatchUpload = "xen_sysctl_livepatch_upload" {
        ["name" => name] ["size" => size] ["payload" => payload]
    }
    xen_livepatch_status: XenLivepatchStatus = "xen_livepatch_status" {
        ["state" => state] ["rc" => rc]
    }
    xen_sysctl_livepatch_get: XenSysctlLivepatchGet = "xen_sysctl_livepatch_get" {
        ["name" => name] ["status" => status]
    }
    xen_sysctl_livepatch_list: XenSysctlLivepatchList = "xen_sysctl_livepatch_list" {
        ["version" => version] ["idx" => idx] ["nr" => nr] ["pad" => pad]
        ["name_total_size" => name_total_size] ["metadata_total_size" => metadata_total_size]
        ["status" => status] ["name" => name] ["len" => len] ["metadata" => metadata]
        ["metadata_len" => metadata_len]
    }
    xen_sysctl_livepatch_action: XenSysctlLivepatchAction = "xen_sysctl_livepatch_action" {
        ["name" => name] ["cmd" => cmd] ["timeout" => timeout] ["flags" => flags] ["pad" => pad]
    }
    xen_sysctl_livepatch_op: XenSysctlLivepatchOp = "xen_sysctl_livepatch_op" {
        ["cmd" => cmd] ["pad" => pad] ["u.upload" => whole u as XenSysctlLivepatchUpload]
        ["u.list" => u] ["u.get" => whole u as XenSysctlLivepatchGet]
        ["u.action" => whole u as XenSysctlLivepatchAction] ["u" => u]
    }
    xen_sysctl_cpu_policy: XenSysctlCpuPolicy = "xen_sysctl_cpu_policy" {
        ["index" => index] ["nr_leaves" => nr_leaves] ["nr_msrs" => nr_msrs] ["_rsvd" => _rsvd]
        ["leaves" => leaves] ["msrs" => msrs]
    }
    xen_sysctl: XenSysctl = "xen_sysctl" {
        ["cmd" => cmd] ["interface_version" => interface_version]
        ["u.readconsole" => whole u as XenSysctlReadconsole]
        ["u.tbuf_op" => whole u as XenSysctlTbufOp]
        ["u.physinfo" => whole u as XenSysctlPhysinfo]
        ["u.cputopoinfo" => whole u as XenSysctlCputopoinfo]
        ["u.pcitopoinfo" => whole u as XenSysctlPcitopoinfo]
        ["u.numainfo" => whole u as XenSysctlNumainfo]
        ["u.sched_id" => whole u as XenSysctlSchedId]
        ["u.perfc_op" => whole u as XenSysctlPerfcOp]
        ["u.getdomaininfolist" => whole u as XenSysctlGetdomaininfolist]
        ["u.debug_keys" => whole u as XenSysctlDebugKeys]
        ["u.getcpuinfo" => whole u as XenSysctlGetcpuinfo]
        ["u.availheap" => whole u as XenSysctlAvailheap]
        ["u.get_pmstat" => whole u as XenSysctlGetPmstat]
        ["u.cpu_hotplug" => whole u as XenSysctlCpuHotplug]
        ["u.pm_op" => whole u as XenSysctlPmOp]
        ["u.page_offline" => whole u as XenSysctlPageOfflineOp]
        ["u.lockprof_op" => whole u as XenSysctlLockprofOp]
        ["u.cpupool_op" => whole u as XenSysctlCpupoolOp]
        ["u.scheduler_op" => whole u as XenSysctlSchedulerOp]
        ["u.coverage_op" => whole u as XenSysctlCoverageOp]
        ["u.psr_cmt_op" => whole u as XenSysctlPsrCmtOp]
        ["u.psr_alloc" => whole u as XenSysctlPsrAlloc]
        ["u.cpu_levelling_caps" => whole u as XenSysctlCpuLevellingCaps]
        ["u.cpu_featureset" => whole u as XenSysctlCpuFeatureset]
        ["u.livepatch" => whole u as XenSysctlLivepatchOp]
        ["u.cpu_policy" => whole u as XenSysctlCpuPolicy]
        ["u.pad[128]" => u] ["u" => u]
    }
}

// The checker itself must reject incomplete or wrong registrations.

#[test]
#[should_panic(expected = "not checked")]
fn checker_rejects_missing_field() {
    let checks = [chk!(MmuUpdate; "ptr" => ptr)];
    common::check_struct("mmu_update", "MmuUpdate", size_of::<MmuUpdate>(), &checks);
}

#[test]
#[should_panic(expected = "table offset")]
fn checker_rejects_wrong_offset() {
    let checks = [chk!(MmuUpdate; "ptr" => val), chk!(MmuUpdate; "val" => val)];
    common::check_struct("mmu_update", "MmuUpdate", size_of::<MmuUpdate>(), &checks);
}

#[test]
#[should_panic(expected = "table offset")]
fn checker_rejects_wrong_size() {
    // `arg2.nr_ents` is 4 bytes; checking it against the 8-byte word must fail.
    let checks = [
        chk!(MmuextOp; "cmd" => cmd),
        chk!(MmuextOp; "arg1.mfn" => arg1),
        chk!(MmuextOp; "arg1.linear_addr" => arg1),
        chk!(MmuextOp; "arg1" => arg1),
        chk!(MmuextOp; "arg2.nr_ents" => arg2),
        chk!(MmuextOp; "arg2.vcpumask" => arg2),
        chk!(MmuextOp; "arg2.src_mfn" => arg2),
        chk!(MmuextOp; "arg2" => arg2),
    ];
    common::check_struct("mmuext_op", "MmuextOp", size_of::<MmuextOp>(), &checks);
}

#[test]
#[should_panic(expected = "(size)")]
fn checker_rejects_wrong_total_size() {
    let checks = [chk!(MmuUpdate; "ptr" => ptr), chk!(MmuUpdate; "val" => val)];
    common::check_struct("mmu_update", "MmuUpdate", 24, &checks);
}

#[test]
#[should_panic(expected = "matches no table row")]
fn checker_rejects_unknown_field() {
    let checks = [
        chk!(MmuUpdate; "ptr" => ptr),
        chk!(MmuUpdate; "val" => val),
        chk!(MmuUpdate; "bogus" => val),
    ];
    common::check_struct("mmu_update", "MmuUpdate", size_of::<MmuUpdate>(), &checks);
}

#[test]
fn ring_sizes() {
    use hypercall_abi::io::ring::*;
    assert_eq!(BLK_RING_SIZE, 32);
    assert_eq!(NET_TX_RING_SIZE, 256);
    assert_eq!(NET_RX_RING_SIZE, 256);
    assert_eq!(page_ring_size(size_of::<BlkifSringEntry>()), 32);
    assert_eq!(ring_size(hypercall_abi::XEN_PAGE_SIZE, 1), 2048);
    assert_eq!(ring_size(64, 8), 0);
    assert!(size_of::<BlkifSring>() <= hypercall_abi::XEN_PAGE_SIZE);
    assert!(size_of::<NetifTxSring>() <= hypercall_abi::XEN_PAGE_SIZE);
    assert!(size_of::<NetifRxSring>() <= hypercall_abi::XEN_PAGE_SIZE);
    assert_eq!(offset_of!(BlkifSring, ring), SRING_HEADER_SIZE);
    assert_eq!(
        size_of::<BlkifSring>(),
        SRING_HEADER_SIZE + BLK_RING_SIZE * size_of::<BlkifSringEntry>()
    );
    assert!(need_notify(0, 2, 1));
    assert!(!need_notify(0, 2, 3));
    assert!(need_notify(u32::MAX, 1, 0));
}

#[test]
fn union_views_round_trip() {
    use zerocopy::IntoBytes;
    let c = StartInfoConsole::from_dom_u(StartInfoConsoleDomU {
        mfn: 0x1234,
        evtchn: 7,
        _pad12: 0,
    });
    assert_eq!(c.dom_u().mfn, 0x1234);
    assert_eq!(c.dom_u().evtchn, 7);
    let d = StartInfoConsole::from_dom0(StartInfoConsoleDom0 {
        info_off: 0x100,
        info_size: 0x20,
    });
    assert_eq!(d.dom0().info_off, 0x100);
    assert_eq!(d.dom0().info_size, 0x20);

    let mut e = BlkifSringEntry::default();
    e.set_rsp(&BlkifResponse {
        id: 9,
        operation: 1,
        _pad9: 0,
        status: -1,
        _pad12: 0,
    });
    assert_eq!(e.rsp().id, 9);
    assert_eq!(e.rsp().status, -1);

    let mut st = EvtchnStatus::default();
    st.set_irq(0x0012_3456);
    assert_eq!(st.pirq(), 0x0012_3456);
    assert_eq!(&st.as_bytes()[16..20], &0x0012_3456u32.to_le_bytes());

    let mut d = XenDomctl::new(DomctlCmd::MaxMem, 3);
    d.set_payload(&XenDomctlMaxMem { max_memkb: 1 << 20 });
    assert_eq!(d.payload::<XenDomctlMaxMem>().max_memkb, 1 << 20);
    assert_eq!(d.as_bytes()[16..24], (1u64 << 20).to_le_bytes());
    assert_eq!(d.interface_version, XEN_DOMCTL_INTERFACE_VERSION);

    let mut x = NetifExtraInfo::default();
    x.set_mcast(NetifExtraInfoMcast {
        addr: [1, 2, 3, 4, 5, 6],
    });
    assert_eq!(x.as_bytes()[2..8], [1, 2, 3, 4, 5, 6]);
}
