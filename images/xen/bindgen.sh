#!/usr/bin/env bash
# bindgen.sh — generate hv/src/xen/bindings.rs from the Xen 4.17 public
# headers (Debian 12's libxen-dev, /usr/include/xen/).
#
#   images/xen/bindgen.sh           regenerate hv/src/xen/bindings.rs
#   images/xen/bindgen.sh layout    print sizeof/offsetof of the structures
#                                   that hv/src/xen/mod.rs tests, as the C
#                                   compiler sees them (the tests' expected
#                                   values come from this output)
#
# Installs what it needs when missing: libxen-dev and libclang-dev (apt-get),
# bindgen-cli (cargo install from crates.io). The bindings are generated once
# and committed; run this again only to move to another Xen version.
# Ring macros (RING_GET_REQUEST & co.), hypercall stubs and ELF notes do not
# translate and are written by hand next to the bindings.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$root/hv/src/xen/bindings.rs

# Xen 4.17's __XEN_LATEST_INTERFACE_VERSION__ (xen-compat.h). Without it
# a guest build gets interface version 0 and the pre-3.2 names.
iface=0x00040e00

log() { echo "bindgen.sh: $*" >&2; }

need_deb() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    fi
}

need_deb libxen-dev

# The wrapper: every header the project's design notes name, in include
# order (xen.h pulls arch-x86/xen.h and arch-x86/xen-x86_64.h).
wrapper() {
    cat <<'EOF'
#include <stdint.h>
#include <xen/xen.h>
#include <xen/elfnote.h>
#include <xen/features.h>
#include <xen/version.h>
#include <xen/event_channel.h>
#include <xen/sched.h>
#include <xen/vcpu.h>
#include <xen/grant_table.h>
#include <xen/memory.h>
#include <xen/physdev.h>
#include <xen/arch-x86/cpuid.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/arch-x86/hvm/start_info.h>
#include <xen/io/xs_wire.h>
#include <xen/io/console.h>
#include <xen/io/ring.h>
#include <xen/io/netif.h>
#include <xen/io/blkif.h>

/*
 * Macros built with xen_mk_*() or sizeof(): bindgen evaluates only macros
 * made of literals, so each of these is captured in a const variable of the
 * type the header means, and the xen_bindgen_ prefix is removed afterwards.
 */
#define XEN_BINDGEN(T, N) static const T xen_bindgen_##N = N;
XEN_BINDGEN(domid_t, DOMID_FIRST_RESERVED)
XEN_BINDGEN(domid_t, DOMID_SELF)
XEN_BINDGEN(domid_t, DOMID_IO)
XEN_BINDGEN(domid_t, DOMID_XEN)
XEN_BINDGEN(domid_t, DOMID_COW)
XEN_BINDGEN(domid_t, DOMID_INVALID)
XEN_BINDGEN(domid_t, DOMID_IDLE)
XEN_BINDGEN(domid_t, DOMID_MASK)
XEN_BINDGEN(unsigned long, UVMF_NONE)
XEN_BINDGEN(unsigned long, UVMF_TLB_FLUSH)
XEN_BINDGEN(unsigned long, UVMF_INVLPG)
XEN_BINDGEN(unsigned long, UVMF_FLUSHTYPE_MASK)
XEN_BINDGEN(unsigned long, UVMF_MULTI)
XEN_BINDGEN(unsigned long, UVMF_LOCAL)
XEN_BINDGEN(unsigned long, UVMF_ALL)
XEN_BINDGEN(unsigned long, HYPERVISOR_VIRT_START)
XEN_BINDGEN(unsigned long, HYPERVISOR_VIRT_END)
XEN_BINDGEN(unsigned long, MACH2PHYS_VIRT_START)
XEN_BINDGEN(unsigned long, MACH2PHYS_VIRT_END)
XEN_BINDGEN(unsigned long, MACH2PHYS_NR_ENTRIES)
XEN_BINDGEN(uint64_t, XEN_RUNSTATE_UPDATE)
XEN_BINDGEN(uint64_t, HVM_PARAM_CALLBACK_IRQ_TYPE_MASK)
XEN_BINDGEN(uint64_t, XEN_HVM_MCA_CAP_LMCE)
XEN_BINDGEN(uint64_t, XEN_HVM_MCA_CAP_MASK)
XEN_BINDGEN(uint32_t, EVTCHN_2L_NR_CHANNELS)
XEN_BINDGEN(uint32_t, GNTMAP_guest_avail_mask)
XEN_BINDGEN(uint32_t, XEN_EXTRAVERSION_LEN)
XEN_BINDGEN(uint32_t, XEN_CAPABILITIES_INFO_LEN)
XEN_BINDGEN(uint32_t, XEN_CHANGESET_INFO_LEN)
EOF
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
wrapper >"$tmp/wrapper.h"

if [ "${1:-}" = layout ]; then
    # Expected values for the hand-written tests in hv/src/xen/mod.rs.
    command -v cc >/dev/null || need_deb gcc
    {
        echo '#include <stdio.h>'
        echo '#include <stddef.h>'
        echo '#include "wrapper.h"'
        echo '#define S(t) printf("%s size %zu align %zu\n", #t, sizeof(struct t), _Alignof(struct t));'
        echo '#define O(t, f) printf("  %s.%s %zu\n", #t, #f, offsetof(struct t, f));'
        echo '#define K(n) printf("%s = %llu\n", #n, (unsigned long long)(n));'
        echo 'int main(void) {'
        cat <<'EOF'
S(vcpu_time_info) O(vcpu_time_info, version) O(vcpu_time_info, pad0)
  O(vcpu_time_info, tsc_timestamp) O(vcpu_time_info, system_time)
  O(vcpu_time_info, tsc_to_system_mul) O(vcpu_time_info, tsc_shift)
  O(vcpu_time_info, flags) O(vcpu_time_info, pad1)
S(arch_vcpu_info) O(arch_vcpu_info, cr2) O(arch_vcpu_info, pad)
S(vcpu_info) O(vcpu_info, evtchn_upcall_pending) O(vcpu_info, evtchn_upcall_mask)
  O(vcpu_info, evtchn_pending_sel) O(vcpu_info, arch) O(vcpu_info, time)
S(arch_shared_info) O(arch_shared_info, max_pfn)
  O(arch_shared_info, pfn_to_mfn_frame_list_list) O(arch_shared_info, nmi_reason)
  O(arch_shared_info, p2m_cr3) O(arch_shared_info, p2m_vaddr)
  O(arch_shared_info, p2m_generation)
S(shared_info) O(shared_info, vcpu_info) O(shared_info, evtchn_pending)
  O(shared_info, evtchn_mask) O(shared_info, wc_version) O(shared_info, wc_sec)
  O(shared_info, wc_nsec) O(shared_info, wc_sec_hi) O(shared_info, arch)
S(start_info) O(start_info, magic) O(start_info, nr_pages) O(start_info, shared_info)
  O(start_info, flags) O(start_info, store_mfn) O(start_info, store_evtchn)
  O(start_info, console) O(start_info, console.domU.mfn)
  O(start_info, console.domU.evtchn) O(start_info, console.dom0.info_off)
  O(start_info, console.dom0.info_size) O(start_info, pt_base)
  O(start_info, nr_pt_frames) O(start_info, mfn_list) O(start_info, mod_start)
  O(start_info, mod_len) O(start_info, cmd_line) O(start_info, first_p2m_pfn)
  O(start_info, nr_p2m_frames)
S(xencons_interface) O(xencons_interface, in) O(xencons_interface, out)
  O(xencons_interface, in_cons) O(xencons_interface, in_prod)
  O(xencons_interface, out_cons) O(xencons_interface, out_prod)
S(xsd_sockmsg) O(xsd_sockmsg, type) O(xsd_sockmsg, req_id) O(xsd_sockmsg, tx_id)
  O(xsd_sockmsg, len)
S(xenstore_domain_interface) O(xenstore_domain_interface, req)
  O(xenstore_domain_interface, rsp) O(xenstore_domain_interface, req_cons)
  O(xenstore_domain_interface, req_prod) O(xenstore_domain_interface, rsp_cons)
  O(xenstore_domain_interface, rsp_prod)
  O(xenstore_domain_interface, server_features)
  O(xenstore_domain_interface, connection) O(xenstore_domain_interface, error)
S(evtchn_alloc_unbound) O(evtchn_alloc_unbound, dom)
  O(evtchn_alloc_unbound, remote_dom) O(evtchn_alloc_unbound, port)
S(evtchn_bind_virq) O(evtchn_bind_virq, virq) O(evtchn_bind_virq, vcpu)
  O(evtchn_bind_virq, port)
S(evtchn_send) O(evtchn_send, port)
S(evtchn_unmask) O(evtchn_unmask, port)
S(evtchn_close) O(evtchn_close, port)
S(sched_shutdown) O(sched_shutdown, reason)
S(sched_poll) O(sched_poll, ports) O(sched_poll, nr_ports) O(sched_poll, timeout)
S(vcpu_set_singleshot_timer) O(vcpu_set_singleshot_timer, timeout_abs_ns)
  O(vcpu_set_singleshot_timer, flags)
S(vcpu_runstate_info) O(vcpu_runstate_info, state)
  O(vcpu_runstate_info, state_entry_time) O(vcpu_runstate_info, time)
S(vcpu_register_runstate_memory_area) O(vcpu_register_runstate_memory_area, addr)
S(vcpu_register_vcpu_info) O(vcpu_register_vcpu_info, mfn)
  O(vcpu_register_vcpu_info, offset) O(vcpu_register_vcpu_info, rsvd)
S(grant_entry_v1) O(grant_entry_v1, flags) O(grant_entry_v1, domid)
  O(grant_entry_v1, frame)
S(gnttab_setup_table) O(gnttab_setup_table, dom) O(gnttab_setup_table, nr_frames)
  O(gnttab_setup_table, status) O(gnttab_setup_table, frame_list)
S(xen_add_to_physmap) O(xen_add_to_physmap, domid) O(xen_add_to_physmap, size)
  O(xen_add_to_physmap, space) O(xen_add_to_physmap, idx) O(xen_add_to_physmap, gpfn)
S(xen_hvm_param) O(xen_hvm_param, domid) O(xen_hvm_param, pad)
  O(xen_hvm_param, index) O(xen_hvm_param, value)
S(mmu_update) O(mmu_update, ptr) O(mmu_update, val)
S(mmuext_op) O(mmuext_op, cmd) O(mmuext_op, arg1) O(mmuext_op, arg2)
S(multicall_entry) O(multicall_entry, op) O(multicall_entry, result)
  O(multicall_entry, args)
S(trap_info) O(trap_info, vector) O(trap_info, flags) O(trap_info, cs)
  O(trap_info, address)
S(hvm_start_info) O(hvm_start_info, magic) O(hvm_start_info, version)
  O(hvm_start_info, flags) O(hvm_start_info, nr_modules)
  O(hvm_start_info, modlist_paddr) O(hvm_start_info, cmdline_paddr)
  O(hvm_start_info, rsdp_paddr) O(hvm_start_info, memmap_paddr)
  O(hvm_start_info, memmap_entries) O(hvm_start_info, reserved)
S(hvm_modlist_entry) S(hvm_memmap_table_entry)
K(__HYPERVISOR_set_trap_table) K(__HYPERVISOR_mmu_update) K(__HYPERVISOR_memory_op)
K(__HYPERVISOR_multicall) K(__HYPERVISOR_update_va_mapping)
K(__HYPERVISOR_xen_version) K(__HYPERVISOR_console_io)
K(__HYPERVISOR_grant_table_op) K(__HYPERVISOR_vcpu_op) K(__HYPERVISOR_mmuext_op)
K(__HYPERVISOR_sched_op) K(__HYPERVISOR_event_channel_op)
K(__HYPERVISOR_physdev_op) K(__HYPERVISOR_hvm_op)
K(VIRQ_TIMER) K(VIRQ_CONSOLE) K(EVTCHNOP_bind_virq) K(EVTCHNOP_close)
K(EVTCHNOP_send) K(EVTCHNOP_alloc_unbound) K(EVTCHNOP_unmask)
K(SCHEDOP_yield) K(SCHEDOP_block) K(SCHEDOP_shutdown) K(SCHEDOP_poll)
K(SHUTDOWN_poweroff) K(SHUTDOWN_reboot) K(SHUTDOWN_crash)
K(VCPUOP_set_singleshot_timer) K(VCPUOP_stop_periodic_timer)
K(VCPUOP_register_runstate_memory_area) K(VCPUOP_register_vcpu_info)
K(VCPU_SSHOTTMR_future) K(XEN_RUNSTATE_UPDATE)
K(GNTTABOP_setup_table) K(GNTTABOP_query_size) K(GTF_permit_access) K(GTF_readonly)
K(GNTST_okay) K(XENMEM_add_to_physmap) K(XENMAPSPACE_shared_info)
K(XENMAPSPACE_grant_table) K(HVMOP_set_param) K(HVMOP_get_param)
K(HVM_PARAM_CALLBACK_IRQ) K(HVM_PARAM_STORE_PFN) K(HVM_PARAM_STORE_EVTCHN)
K(HVM_PARAM_CONSOLE_PFN) K(HVM_PARAM_CONSOLE_EVTCHN)
K(XENVER_version) K(XENVER_get_features) K(XENFEAT_writable_page_tables)
K(XENFEAT_auto_translated_physmap) K(XENFEAT_hvm_callback_vector)
K(XEN_CPUID_FIRST_LEAF) K(XEN_CPUID_SIGNATURE_EBX) K(XEN_CPUID_SIGNATURE_ECX)
K(XEN_CPUID_SIGNATURE_EDX) K(MMU_NORMAL_PT_UPDATE) K(MMUEXT_PIN_L4_TABLE)
K(MMUEXT_NEW_BASEPTR) K(UVMF_INVLPG) K(SIF_PRIVILEGED) K(SIF_INITDOMAIN)
K(DOMID_SELF) K(XS_READ) K(XS_WRITE) K(XS_WATCH_EVENT) K(XS_ERROR)
K(XENSTORE_RING_SIZE) K(XENSTORE_PAYLOAD_MAX) K(CONSOLEIO_write)
K(XEN_ELFNOTE_PHYS32_ENTRY) K(XEN_ELFNOTE_HYPERCALL_PAGE)
K(XEN_HVM_START_MAGIC_VALUE) K(HYPERVISOR_VIRT_START)
EOF
        echo 'return 0; }'
    } >"$tmp/layout.c"
    cc -std=gnu11 -D__XEN_INTERFACE_VERSION__=$iface -I"$tmp" -o "$tmp/layout" "$tmp/layout.c"
    "$tmp/layout"
    exit 0
fi

need_deb libclang-dev
export PATH=$HOME/.cargo/bin:$PATH
if ! command -v bindgen >/dev/null; then
    log "installing bindgen-cli"
    cargo install --locked bindgen-cli --version 0.73.2 >&2
fi

# Only Xen's own names; what they use (domid_t, xen_pfn_t, the
# __guest_handle_* typedefs, ...) comes along as dependencies.
types='xen.*|vcpu.*|evtchn.*|sched.*|gnttab.*|grant.*|xenstore.*|xsd.*|xs_.*'
types+='|xencons.*|XENCONS.*|XENSTORE.*|netif.*|blkif.*|hvm.*|start_info.*'
types+='|shared_info.*|arch_.*|pvclock.*|mmu.*|mmuext.*|trap_info.*'
types+='|multicall.*|physdev.*|cpu_user_regs.*|domid_t|RING_IDX'
types+='|dom0_vga_console_info.*|console_io.*|mmuext_cmd|vcpuop_.*'
vars='XEN.*|VIRQ_.*|EVTCHN.*|SCHEDOP_.*|SHUTDOWN_.*|VCPUOP_.*|VCPU_.*'
vars+='|GNTTAB.*|GNTST_.*|GNTMAP_.*|GNTCOPY_.*|GTF_.*|XS_.*|XSD_.*'
vars+='|HVM_PARAM.*|HVMOP_.*|HVM_.*|MMU_.*|MMUEXT_.*|UVMF_.*|SIF_.*'
vars+='|__HYPERVISOR_.*|HYPERVISOR_VIRT_.*|MACH2PHYS_.*|FLAT_.*'
vars+='|XENMEM.*|XENMAPSPACE.*|XENMAPIDX.*|XENFEAT.*|XENVER.*|VGCF.*'
vars+='|DOMID.*|NETIF.*|NETTXF.*|NETRXF.*|BLKIF.*|CONSOLEIO_.*|PHYSDEVOP.*'
vars+='|MAX_GUEST_CMDLINE|MAX_VIRT_CPUS|NR_VIRQS|MAX_VMASST_TYPE|VMASST_.*'
vars+='|TI_.*|ECHO_.*|_?VGCF_.*|X86_.*|RUNSTATE_.*|_GTF_.*|_GNTMAP_.*|_GNTCOPY_.*'
vars+='|_NETRXF_.*|_NETTXF_.*|_VCPU_.*|_XEN.*|VDISK_.*|BIND_PIRQ.*|MAP_PIRQ_.*'
vars+='|_?HVMPV_.*|HVMPTM_.*|SEGBASE_.*|FIRST_RESERVED_GDT.*|xen_bindgen_.*'

bindgen_version=$(bindgen --version | awk '{print $2}')
xen_version=$(dpkg-query -W -f='${Version}' libxen-dev)
clang_version=$(dpkg-query -W -f='${Version}' libclang-dev)
opts=(
    --use-core
    --ctypes-prefix core::ffi
    --rust-target 1.82
    --no-doc-comments
    --no-prepend-enum-name
    --with-derive-default
    --ignore-functions
)
clang_args=(
    --target=x86_64-unknown-linux-gnu -D__x86_64__ -ffreestanding
    -D__XEN_INTERFACE_VERSION__=$iface
)

{
    cat <<EOF
// @generated by images/xen/bindgen.sh: do not edit by hand.
//
// From the Xen 4.17 public headers of Debian 12's libxen-dev $xen_version
// (/usr/include/xen/), with bindgen-cli $bindgen_version and libclang
// $clang_version, by
//
//   bindgen wrapper.h ${opts[*]} \\
//       --allowlist-type "\$types" --allowlist-var "\$vars" \\
//       -- ${clang_args[*]}
//
// where wrapper.h is the #include list in images/xen/bindgen.sh and
//   types='$types'
//   vars='$vars'

EOF
    bindgen "$tmp/wrapper.h" "${opts[@]}" \
        --allowlist-type "$types" --allowlist-var "$vars" \
        -- "${clang_args[@]}"
} >"$tmp/bindings.rs"
sed -i 's/\bxen_bindgen_//' "$tmp/bindings.rs"
mv "$tmp/bindings.rs" "$out"
log "wrote $out ($(wc -l <"$out") lines)"
