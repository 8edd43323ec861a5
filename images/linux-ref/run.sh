#!/usr/bin/env bash
# run.sh [tcg|kvm] [extra kernel args...] — boot Debian's kernel with the
# bench initramfs (build.sh) on sanos's QEMU command line and print the
# guest's "linuxbench:" lines (and "linuxbench-info:" lines).
#
#   images/linux-ref/run.sh tcg
#   images/linux-ref/run.sh kvm linuxbench.scale=10
#
# Environment: TIMEOUT (seconds, default 300), QEMU (default
# qemu-system-x86_64). The full serial log is build/linux-ref/<accel>.log.
# Exit status 0 iff "linuxbench: done" appeared.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${LINUX_REF_BUILD:-$root/build/linux-ref}
accel=${1:-tcg}
[ $# -gt 0 ] && shift
extra="$*"
timeout=${TIMEOUT:-300}
qemu=${QEMU:-qemu-system-x86_64}

case $accel in
tcg) cpu=max ;;
# Nested KVM here: plain "max" aborts at vCPU reset (MSR 0x10a); see
# KVM_CPU in images/rig/src/matrix.rs.
kvm) cpu=max,-arch-capabilities ;;
*) echo "usage: $0 [tcg|kvm] [extra kernel args...]" >&2; exit 2 ;;
esac

# Debian's kernel (downloaded/unpacked once by the Xen rig's fetch script).
vmlinuz=$(ls "$root"/build/xen/pkgs/linux-image-*-amd64/boot/vmlinuz-* 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$vmlinuz" ]; then
    bash "$root/images/xen/fetch.sh" >&2
    vmlinuz=$(ls "$root"/build/xen/pkgs/linux-image-*-amd64/boot/vmlinuz-* | sort -V | tail -n1)
fi
initrd=$(bash "$here/build.sh" | tail -n1)

log=$out/$accel.log
rm -f "$log"
echo "linux-ref: $accel, $(basename "$vmlinuz"), timeout ${timeout}s, log $log" >&2
start=$(date +%s.%N)
status=0
timeout --foreground -k 10 "$timeout" "$qemu" \
    -accel "$accel" -cpu "$cpu" \
    -m 128M -smp 1 -display none -no-reboot \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 -nic none \
    -serial "file:$log" \
    -kernel "$vmlinuz" -initrd "$initrd" \
    -append "console=ttyS0 quiet${extra:+ $extra}" </dev/null >&2 || status=$?
end=$(date +%s.%N)

grep -a '^linuxbench' "$log" | tr -d '\r' || true
printf 'linux-ref: qemu exit %s after %.1f s\n' "$status" "$(echo "$end - $start" | bc)" >&2
if [ "$status" = 124 ]; then
    echo "linux-ref: timed out after ${timeout}s (try linuxbench.scale=N)" >&2
fi
grep -aq '^linuxbench: done' "$log"
