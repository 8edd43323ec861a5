#!/usr/bin/env bash
# dom0-kernel.sh KERNEL_ELF [CMDLINE...] — the fast Xen rig.
#
# Boots Xen 4.17 under QEMU TCG with KERNEL_ELF as its PV dom0 kernel, no
# initrd: the kernel under test is dom0 itself (as in Xen's XTF). Xen and
# dom0's HYPERVISOR_console_io output go to com1 = this script's stdout.
# Xen halts (rather than powers off) the machine when dom0 powers off, so
# this script watches the console and ends QEMU itself:
#   33   dom0 powered off ("Hardware Dom0 halted"): the kernel's pass exit
#   37   dom0 crashed ("Hardware Dom0 crashed"): a failed test or a panic
#   124  the timeout expired (QEMU is killed)
#   otherwise QEMU's own status (e.g. 0 after a dom0 reboot, -no-reboot).
#
# Environment:
#   TIMEOUT=120       seconds before QEMU is killed
#   DOM0_PVH=1        boot KERNEL_ELF as a PVH dom0 (Xen "dom0=pvh"; needs
#                     an IOMMU, so QEMU gets q35 + intel-iommu). Default: PV,
#                     which needs a kernel with Xen PV ELF notes.
#   XEN_APPEND=...    extra Xen command-line words (appended, so they win
#                     over the defaults, e.g. XEN_APPEND="dom0_mem=512M")
#   DOM0_MODULE=path  a boot module for dom0 (its initrd: the programs'
#                     cpio archive for init=)
#   QEMU_EXTRA=...    extra QEMU arguments (word-split)
#   INTERACTIVE=1     run QEMU in the foreground on this terminal, no
#                     timeout, no status mapping (`make run XEN=pv`)
#   XEN_BUILD=...     cache directory (default build/xen)
set -euo pipefail

me=${0##*/}
die() { echo "$me: $*" >&2; exit 2; }
[ $# -ge 1 ] || die "usage: $me KERNEL_ELF [CMDLINE...]"

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${XEN_BUILD:-$root/build/xen}

kernel=$(realpath "$1"); shift
[ -f "$kernel" ] || die "kernel $kernel not found"
cmdline="$*"
# QEMU splits -initrd on commas, and the first word of a module is its file.
case "$kernel$cmdline" in *,*) die "no commas allowed in the kernel path or command line" ;; esac
case "$kernel" in *[[:space:]]*) die "no spaces allowed in the kernel path" ;; esac

[ -f "$out/xen" ] || bash "$here/fetch.sh" hypervisor

machine=() xen_dom0=
if [ "${DOM0_PVH:-0}" = 1 ]; then
    # Xen: "Presently, iommu must be enabled for PVH hardware domain".
    machine=(-machine q35 -device intel-iommu,intremap=on)
    xen_dom0=dom0=pvh
fi

# Xen under TCG: -smap,-smep or a PV dom0 crashes; -rdtscp or PVH guests fail.
# No Xen "noreboot": a dom0 shutdown then resets the machine, which
# -no-reboot turns into QEMU exiting.
# shellcheck disable=SC2206 # QEMU_EXTRA is word-split on purpose
qemu_cmd=(qemu-system-x86_64 -accel tcg -cpu max,-smap,-smep,-rdtscp -smp 1 -m 1024
    -nic none -no-reboot -display none -serial stdio -monitor none
    "${machine[@]}" -device isa-debug-exit,iobase=0xf4,iosize=0x04
    -kernel "$out/xen"
    -append "console=com1 com1=115200 dom0_mem=288M loglvl=all guest_loglvl=all $xen_dom0 ${XEN_APPEND:-}"
    -initrd "$kernel${cmdline:+ $cmdline}${DOM0_MODULE:+,$(realpath "$DOM0_MODULE")}"
    ${QEMU_EXTRA:-})

if [ "${INTERACTIVE:-0}" = 1 ]; then
    # `make run XEN=pv|pvh`: the console on this terminal, no timeout.
    echo "$me: Xen and sanos as its dom0 on this terminal; the shell's poweroff halts Xen; quit QEMU with Ctrl-C" >&2
    exec "${qemu_cmd[@]}"
fi

# QEMU runs in the background, where bash would give it /dev/null as
# stdin: hand it ours (the serial console's input, e.g. the rig typing at
# the shell; Xen passes serial input to dom0).
exec 3<&0
fifo=$(mktemp -u "${TMPDIR:-/tmp}/dom0-kernel.XXXXXX")
mkfifo "$fifo"
trap 'rm -f "$fifo"' EXIT
timeout --foreground --kill-after=5 "${TIMEOUT:-120}" \
    "${qemu_cmd[@]}" <&3 >"$fifo" 2>&1 &
qemu=$!
status=
while IFS= read -r line; do
    printf '%s\n' "$line"
    case "$line" in
        *"Hardware Dom0 halted"*) status=33; kill "$qemu" 2>/dev/null || true ;;
        *"Hardware Dom0 crashed"*) status=37; kill "$qemu" 2>/dev/null || true ;;
    esac
done <"$fifo"
rc=0
wait "$qemu" || rc=$?
exit "${status:-$rc}"
