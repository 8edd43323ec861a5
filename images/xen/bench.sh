#!/usr/bin/env bash
# bench.sh: suspend and resume of sanos next to Debian's Linux, PV and
# PVH, with the same memory (MEM, MiB, default 128: Linux needs 96 at
# least), in one run of the full Xen rig (xl-test.sh). Each guest goes
# through xl save + xl restore, xl save -c, xl migrate to the same host
# (PVH only: the rig's Xen cannot migrate a PV guest) and xl pause. Prints
# the rig's table of dom0's wall times per cycle, and how long each
# migrated or restored guest was stopped: sanos logs it (Xen's wall clock
# across the suspend less what its monotonic clock counted); for Linux
# it is the step of its uptime heartbeat, which counts the stop.
#
# A table, never a pass or fail on a time. Run after `make` (the kernel,
# and build/xen-site.cpio as `make test-xen` packs it).
set -euo pipefail

me=${0##*/}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${XEN_BUILD:-$root/build/xen}
mem=${MEM:-128}
kernel=$root/build/sanos.elf
site=$root/build/xen-site.cpio
for f in "$kernel" "$site"; do
    [ -f "$f" ] || { echo "$me: $f missing (make kernel; make test-xen packs the site)" >&2; exit 2; }
done

# The Linux guests' initrd is the self-test's, which xl-test.sh builds.
initrd=$out/linux-domu-initrd.cpio.gz
vmlinux=${GUEST_KERNEL:-$out/vmlinux}
args=()
for k in pv pvh; do
    args+=(--guest "sanos-suspend-$k=$here/sanos-suspend-$k.cfg:$kernel:$site"
           --xl "sanos-suspend-$k=memory=$mem"
           --guest "linux-suspend-$k=$here/linux-suspend-$k.cfg:$vmlinux:$initrd"
           --xl "linux-suspend-$k=memory=$mem")
done
status=0
TIMEOUT=${TIMEOUT:-900} bash "$here/xl-test.sh" "${args[@]}" || status=$?

log=$out/xl-test.log
echo
echo "$me: guests of $mem MiB; how long each was stopped, by the guest"
printf '%s: %-20s %-28s %s\n' "$me" guest "after" "stopped"
# sanos: "xen: resumed in a new domain (...), stopped for N ms", in order.
for k in pv pvh; do
    g=sanos-suspend-$k
    sed -n "s/^RIG: guest $g cycle \([a-z-]*\): .*/\1/p" "$log" | grep -v -e save-cancel -e pause > /tmp/bench-cycles.$$ || true
    sed -n "s/^RIG: guest $g console: .*resumed in a new domain.*stopped for \([0-9]*\) ms.*/\1/p" "$log" > /tmp/bench-stops.$$ || true
    paste -d' ' /tmp/bench-cycles.$$ /tmp/bench-stops.$$ | while read -r kind ms; do
        printf '%s: %-20s %-28s %s\n' "$me" "$g" "$kind" "${ms:-?} ms"
    done
done
# Linux: the uptime step its cycle line reports.
for k in pv pvh; do
    g=linux-suspend-$k
    sed -n "s/^RIG: guest $g cycle \(save\|migrate\): .*tick gap \([0-9.]*\) s.*/\1 \2/p" "$log" |
        while read -r kind step; do
            printf '%s: %-20s %-28s %s\n' "$me" "$g" "$kind" "$step s (uptime step)"
        done
done
rm -f /tmp/bench-cycles.$$ /tmp/bench-stops.$$
exit $status
