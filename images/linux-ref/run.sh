#!/usr/bin/env bash
# run.sh [tcg|kvm] [extra kernel args...] — boot Debian's kernel with the
# bench initramfs (build.sh) on sanos's QEMU command line and print the
# guest's "linuxbench:" lines (and "linuxbench-info:" lines).
#
#   images/linux-ref/run.sh tcg
#   images/linux-ref/run.sh kvm linuxbench.scale=10
#
# Environment: TIMEOUT (seconds, default 300), QEMU (default
# qemu-system-x86_64), KERNEL (default: Debian's vmlinuz, a bzImage;
# build/xen/vmlinux, the same kernel uncompressed, boots via PVH and skips
# the decompressor). Serial log: build/linux-ref/<accel>.log, QEMU's
# stderr: build/linux-ref/<accel>.stderr.
# Exit status 0 iff "linuxbench: done" appeared. INIT_BINARY=path runs
# that static program as init instead (build.sh), printing its
# "sysbench:" lines; then "sysbench: done" is what must appear.
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
vmlinuz=${KERNEL:-$(ls "$root"/build/xen/pkgs/linux-image-*-amd64/boot/vmlinuz-* 2>/dev/null | sort -V | tail -n1 || true)}
if [ -z "$vmlinuz" ]; then
    bash "$root/images/xen/fetch.sh" >&2
    vmlinuz=$(ls "$root"/build/xen/pkgs/linux-image-*-amd64/boot/vmlinuz-* | sort -V | tail -n1)
fi
initrd=$(bash "$here/build.sh" | tail -n1)

name=$accel${INIT_BINARY:+-$(basename "$INIT_BINARY")}
log=$out/$name.log
err=$out/$name.stderr
rm -f "$log" "$err"
echo "linux-ref: $accel, $(basename "$vmlinuz"), timeout ${timeout}s, log $log" >&2
start=$(date +%s)
"$qemu" \
    -accel "$accel" -cpu "$cpu" \
    -m 128M -smp 1 -display none -no-reboot \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 -nic none \
    -serial "file:$log" \
    -kernel "$vmlinuz" -initrd "$initrd" \
    -append "console=ttyS0 quiet${extra:+ $extra}" </dev/null 2>"$err" &
pid=$!
# Poll rather than `timeout`: after a KVM emulation failure QEMU stops the
# vCPU and waits forever, so stop it as soon as its stderr says so.
why=
while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if grep -q 'KVM internal error' "$err"; then
        why="KVM internal error (see $err)"
    elif [ $(($(date +%s) - start)) -ge "$timeout" ]; then
        why="timed out after ${timeout}s (slow? try linuxbench.scale=N)"
    fi
    if [ -n "$why" ]; then
        kill "$pid" 2>/dev/null || true
        break
    fi
done
status=0
wait "$pid" || status=$?
cat "$err" >&2

grep -a -E '^(linuxbench|sysbench)' "$log" | tr -d '\r' || true
echo "linux-ref: qemu exit $status after $(($(date +%s) - start)) s${why:+: $why}" >&2
[ -z "$why" ] && grep -aq -E '^(linuxbench|sysbench): done' "$log"
