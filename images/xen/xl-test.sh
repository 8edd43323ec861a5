#!/usr/bin/env bash
# xl-test.sh [--guest NAME=CFG:KERNEL[:RAMDISK]]... [--xl NAME=LINE]... [--linux]
#
# The full Xen rig: builds the dom0 initramfs with the given guests
# (mkdom0.sh, same arguments), boots Xen + Debian's Linux as dom0 under
# QEMU TCG, and lets dom0's /init (dom0-init.sh) run each guest in turn.
# Without --guest it runs its self-test: Debian's kernel as a PV and as a
# PVH guest (linux-pv, linux-pvh) with a tiny busybox initrd that prints
# LINUX-DOMU-UP (and, with "heartbeat" on its kernel command line,
# "heartbeat <uptime>" every 0.2 s, for dom0-init.sh's ticks=). --linux
# adds those two Linux guests after the given ones, as the reference for
# the closing table: each guest's time from `xl create` to its banner line
# (NAME.expect's banner=) and to its match.
#
# The serial log (\r removed) goes to build/xen/xl-test.log; the "RIG:"
# lines are echoed to stdout, prefixed with the seconds since QEMU started.
# Exits 0 only if every guest matched, passed its checks (fetch=, syslog=)
# and shut down cleanly, 1 otherwise
# (including the overall timeout), 2 on bad usage.
#
# Environment:
#   TIMEOUT=600        overall limit in seconds; QEMU is killed after it
#   DOM0_MEM=512M      Xen's dom0_mem. dom0 holds the guests' files in RAM:
#                      288M is too small for the self-test's 64 MiB vmlinux
#                      ("Initramfs unpacking failed"), enough for small guests
#   DOM0_KERNEL=...    dom0 kernel (default build/xen/vmlinux, Debian's
#                      kernel uncompressed: saves Xen ~2.7 s of unxz)
#   GUEST_KERNEL=...   self-test guests' kernel (default build/xen/vmlinux;
#                      build/xen/vmlinuz costs xl create ~4.7 s of unxz)
#   DOM0_APPEND=...    extra dom0 (Linux) command-line words, no commas
#   XEN_APPEND=...     extra Xen command-line words
#   XEN_BUILD=...      cache directory (default build/xen)
set -euo pipefail

me=${0##*/}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${XEN_BUILD:-$root/build/xen}
export XEN_BUILD=$out
log=$out/xl-test.log

args=()
names=()
linux=0
while [ $# -gt 0 ]; do
    case $1 in
        --guest) names+=("${2%%=*}"); args+=("$1" "$2"); shift 2 ;;
        --xl) args+=("$1" "$2"); shift 2 ;;
        --linux) linux=1; shift ;;
        *) echo "usage: $me [--guest NAME=CFG:KERNEL[:RAMDISK]]... [--xl NAME=LINE]... [--linux]" >&2; exit 2 ;;
    esac
done

bash "$here/fetch.sh"

# The Linux guests' busybox initrd (the self-test's, and bench.sh's
# reference guests'): init prints the marker and waits; xl shutdown makes
# the kernel run /sbin/poweroff. Built once, cached.
initrd=$out/linux-domu-initrd.cpio.gz
if [ ! -f "$initrd" ] || [ "$here/xl-test.sh" -nt "$initrd" ]; then
    g=$(mktemp -d)
    mkdir -p "$g"/{bin,sbin,proc,dev}
    cp "$out/pkgs/busybox-static/bin/busybox" "$g/bin/"
    for a in sh mount sleep echo; do ln -s busybox "$g/bin/$a"; done
    printf '#!/bin/sh\nexec /bin/busybox poweroff -f\n' > "$g/sbin/poweroff"
    cat > "$g/init" <<'EOF'
#!/bin/sh
mount -t proc proc /proc
echo LINUX-DOMU-UP
# With "heartbeat" on the kernel command line: "heartbeat <uptime>" every
# 0.2 s, for ticks= (suspend/resume cycles).
read -r cmdline < /proc/cmdline
case " $cmdline " in
    *" heartbeat "*)
        while :; do
            read -r up _ < /proc/uptime
            echo "heartbeat $up"
            sleep 0.2
        done ;;
esac
while :; do sleep 1; done
EOF
    chmod 755 "$g/init" "$g/sbin/poweroff"
    (cd "$g" && find . -mindepth 1 | sort |
        "$out/pkgs/busybox-static/bin/busybox" cpio -o -H newc 2>/dev/null) | gzip -9 > "$initrd"
    rm -rf "$g"
fi

if [ ${#names[@]} -eq 0 ] || [ $linux = 1 ]; then
    cfg=$here/linux-domu.cfg
    gk=${GUEST_KERNEL:-$out/vmlinux}
    args+=(--guest "linux-pv=$cfg:$gk:$initrd"
           --guest "linux-pvh=$cfg:$gk:$initrd"
           --xl 'linux-pvh=type="pvh"')
    names+=(linux-pv linux-pvh)
fi

bash "$here/mkdom0.sh" -o "$out/dom0-initrd.cpio.gz" "${args[@]}"

dom0_cmdline="console=hvc0 ${DOM0_APPEND:-}"
case $dom0_cmdline in *,*) echo "$me: no commas in DOM0_APPEND" >&2; exit 2 ;; esac

# Xen under TCG: -smap,-smep or a PV dom0 crashes; -rdtscp or PVH guests
# fail. dom0's "poweroff -f" ends QEMU (no Xen "noreboot", -no-reboot).
# HVM runs on TCG's emulated SVM; with 2 MB and 1 GB nested pages, saves
# and migrations of PVH guests were seen corrupting dom0's memory
# (README.md, pitfalls): 4 KB pages only.
mkdir -p "$out"; : > "$log"
start=$EPOCHREALTIME
set +e
timeout --kill-after=5 "${TIMEOUT:-600}" \
    qemu-system-x86_64 -accel tcg -cpu max,-smap,-smep,-rdtscp -smp 1 -m 1024 \
    -nic none -no-reboot -display none -serial stdio -monitor none \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -kernel "$out/xen" \
    -append "console=com1 com1=115200 dom0_mem=${DOM0_MEM:-512M} hap_1gb=0 hap_2mb=0 loglvl=all guest_loglvl=all ${XEN_APPEND:-}" \
    -initrd "${DOM0_KERNEL:-$out/vmlinux} $dom0_cmdline,$out/dom0-initrd.cpio.gz" \
    < /dev/null 2>&1 |
while IFS= read -r line || [ -n "$line" ]; do
    line=${line//$'\r'/}
    printf '%s\n' "$line" >> "$log"
    case $line in
        *"RIG: "* | *"Hardware Dom0 "* | *"Kernel panic"*)
            t=$(( (${EPOCHREALTIME/./} - ${start/./}) / 100000 ))
            printf '[%4d.%ds] %s\n' $((t / 10)) $((t % 10)) "$line" ;;
    esac
done
rc=${PIPESTATUS[0]}
set -e

# Verdict from the log.
ok=1
[ "$rc" = 124 ] || [ "$rc" = 137 ] && { echo "$me: timed out after ${TIMEOUT:-600} s" >&2; ok=0; }
for n in "${names[@]}"; do
    if grep -q "RIG: guest $n matched after" "$log" && grep -q "RIG: guest $n shutdown clean" "$log" &&
        ! grep -q "RIG: guest $n failed a check" "$log"; then
        echo "$me: guest $n: ok"
    else
        echo "$me: guest $n: FAILED"; ok=0
    fi
done
grep -q "RIG: done" "$log" || { echo "$me: dom0 did not finish (no 'RIG: done')"; ok=0; }
# Times from `xl create`, as dom0 measured them (0.1 s resolution).
printf '%s: %-18s %18s %18s\n' "$me" guest "xl create->banner" "xl create->match"
for n in "${names[@]}"; do
    b=$(sed -n "s/^RIG: guest $n banner after \([0-9.]*\) s.*/\1 s/p" "$log" | head -n 1)
    m=$(sed -n "s/^RIG: guest $n matched after \([0-9.]*\) s.*/\1 s/p" "$log" | head -n 1)
    printf '%s: %-18s %18s %18s\n' "$me" "$n" "${b:--}" "${m:--}"
done
# The suspend/resume cycles (cycle= lines): dom0's wall times, and the
# step of the guest's clock (ticks=) across each.
if grep -q '^RIG: guest [^ ]* cycle [a-z-]*: ' "$log"; then
    printf '%s: %-18s %-12s %s\n' "$me" guest cycle "dom0's times, the guest's clock step"
    sed -n 's/^RIG: guest \([^ ]*\) cycle \([a-z-]*\): \(.*\)/\1 \2 \3/p' "$log" |
        while read -r g k rest; do
            printf '%s: %-18s %-12s %s\n' "$me" "$g" "$k" "$rest"
        done
fi
echo "$me: log in $log (qemu exit $rc)"
[ $ok = 1 ]
