#!/usr/bin/env bash
# run.sh — HTTP table for `make bench`: sanos vs a Linux guest running
# nginx, both on the same QEMU command line (1 vCPU, 128 MiB) with a
# virtio-net NIC on a tap device, under TCG and, where /dev/kvm opens
# read-write, under KVM too.
#
# Network (only inside this machine, link-local 169.254.88.0/24):
#   root ns:  bridge sbbr0 <- tap sbtap0 (QEMU) and veth sbveth0
#   netns sanosbench: veth sbveth1 = 169.254.88.1/24, where wrk runs
#   sanos = 169.254.88.2 (ip= on its command line), Linux = 169.254.88.3
# Everything is removed on exit. Needs root; installs wrk, iproute2 and
# cpio with apt-get if missing.
#
# Tests (wrk -t1 -d${DURATION}s --latency): 612 B index.html at 1, 16, 64
# connections; the 1 MiB file at 1 and 16; 612 B with "Connection: close"
# at 16. Reported: requests/s, p99 latency, and requests per second of
# QEMU CPU time (utime+stime of the QEMU process, /proc/PID/stat).
# Then the smallest -m (of 128, 96, 64, 48, 32, 24, 16, 12, 8, 6, 4 MiB,
# going down until one fails) with which each guest still boots and
# serves both files intact to curl, under TCG.
# Never fails on a timing; a part that cannot run says why.
# Environment: DURATION (default 5), QEMU (default qemu-system-x86_64),
# BOOT_TIMEOUT (default 120 s).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$root/build/net-bench
qemu=${QEMU:-qemu-system-x86_64}
duration=${DURATION:-5}
boot_timeout=${BOOT_TIMEOUT:-120}
ns=sanosbench
br=sbbr0
tap=sbtap0
veth0=sbveth0
veth1=sbveth1
mkdir -p "$out"

say() { echo "net-bench: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    echo "## HTTP (net-bench)"; echo; echo "not measured: needs root (tap device, network namespace)"
    exit 0
fi

need=
command -v wrk >/dev/null || need="$need wrk"
command -v ip >/dev/null || need="$need iproute2"
command -v cpio >/dev/null || need="$need cpio"
if [ -n "$need" ]; then
    say "apt-get install$need"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need >&2 ||
        { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need >&2; } ||
        { say "cannot install$need"; exit 1; }
fi

qpid=
cleanup() {
    [ -n "$qpid" ] && kill "$qpid" 2>/dev/null && wait "$qpid" 2>/dev/null
    ip netns del "$ns" 2>/dev/null
    ip link del "$veth0" 2>/dev/null
    ip link del "$tap" 2>/dev/null
    ip link del "$br" 2>/dev/null
    true
}
trap cleanup EXIT
cleanup

# --- network set-up ---------------------------------------------------------
set -e
ip netns add "$ns"
ip link add "$br" type bridge
ip link set "$br" up
ip tuntap add dev "$tap" mode tap
ip link set "$tap" master "$br"
ip link set "$tap" up
ip link add "$veth0" type veth peer name "$veth1"
ip link set "$veth0" master "$br"
ip link set "$veth0" up
ip link set "$veth1" netns "$ns"
ip -n "$ns" addr add 169.254.88.1/24 dev "$veth1"
ip -n "$ns" link set "$veth1" up
ip -n "$ns" link set lo up
set +e

# --- the site -----------------------------------------------------------------
site=$out/site
rm -rf "$site" && mkdir -p "$site"
# 612 bytes: images/site/index.html padded with an HTML comment.
{
    cat "$root/images/site/index.html"
    pad=$((612 - $(stat -c %s "$root/images/site/index.html") - 10))
    printf '<!-- %s -->\n' "$(head -c "$pad" /dev/zero | tr '\0' 'x')"
} > "$site/index.html"
head -c 1048576 /dev/zero | tr '\0' 'a' > "$site/1m.bin"
[ "$(stat -c %s "$site/index.html")" = 612 ] || say "index.html is $(stat -c %s "$site/index.html") bytes, not 612"
site_img=$out/site.cpio
(cd "$root" && cargo run -q --release -p sanos-rig -- cpio "$site" "$site_img") >&2 ||
    say "cannot make the site image"

tests=(
    "612B c=1|-c1|/index.html"
    "612B c=16|-c16|/index.html"
    "612B c=64|-c64|/index.html"
    "1MiB c=1|-c1|/1m.bin"
    "1MiB c=16|-c16|/1m.bin"
    "612B close c=16|-c16 -H Connection:close|/index.html"
)
declare -A res

cputicks() { # utime+stime of PID, in clock ticks
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    s=${s##*) }
    set -- $s
    echo $((${12} + ${13}))
}
hz=$(getconf CLK_TCK)

# boot ACCEL MEM NAME LOG KERNEL INITRD APPEND PATTERN -> sets qpid,
# returns 0 once PATTERN is in the serial log
boot() {
    local accel=$1 mem=$2 name=$3 log=$4 kernel=$5 initrd=$6 append=$7 pattern=$8 cpu=max
    # Under nested KVM, plain max aborts QEMU at vCPU reset (IA32_ARCH_
    # CAPABILITIES, MSR 0x10a); the boot matrix uses the same model.
    [ "$accel" = kvm ] && cpu=max,-arch-capabilities
    rm -f "$log" "$log.stderr"
    "$qemu" -accel "$accel" -cpu "$cpu" -m "$mem" -smp 1 -display none -no-reboot \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
        -netdev tap,id=n0,ifname="$tap",script=no,downscript=no \
        -device virtio-net-pci,netdev=n0 \
        -serial "file:$log" -kernel "$kernel" -initrd "$initrd" \
        -append "$append" </dev/null 2>"$log.stderr" &
    qpid=$!
    local t0=$SECONDS
    while kill -0 "$qpid" 2>/dev/null; do
        if grep -aq "$pattern" "$log" 2>/dev/null; then
            say "$name ($accel, $mem) up after $((SECONDS - t0)) s"
            return 0
        fi
        if [ $((SECONDS - t0)) -ge "$boot_timeout" ]; then
            why="no \"$pattern\" in $log after ${boot_timeout}s"
            return 1
        fi
        sleep 0.5
    done
    why="QEMU exited before \"$pattern\" (see $log, $log.stderr)"
    qpid=
    return 1
}

stop() {
    [ -n "$qpid" ] && { kill "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null; }
    qpid=
}

# measure COLUMN HOST: runs every test against http://HOST
measure() {
    local col=$1 host=$2 t label args path o rps p99 c0 c1 cpu rpc errs
    # Warm up (ARP, first accept), not measured.
    ip netns exec "$ns" wrk -t1 -c1 -d1s "http://$host/index.html" >/dev/null 2>&1
    for t in "${tests[@]}"; do
        IFS='|' read -r label args path <<<"$t"
        local hdr=()
        case $args in *Connection:close*) hdr=(-H "Connection: close"); args=${args%% -H*} ;; esac
        c0=$(cputicks "$qpid")
        o=$(ip netns exec "$ns" timeout $((duration + 30)) wrk -t1 $args -d"${duration}s" --latency \
            "${hdr[@]}" "http://$host$path" 2>&1)
        c1=$(cputicks "$qpid")
        echo "$o" > "$out/$col-${label// /_}.wrk"
        rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$o")
        p99=$(awk '$1 == "99%" {print $2}' <<<"$o")
        errs=$(grep -E 'Socket errors|Non-2xx' <<<"$o" | tr -s ' ' | tr '\n' ' ')
        if [ -z "$rps" ]; then
            res[$col,$label]="failed ($(tail -n1 <<<"$o"))"
            continue
        fi
        cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN {printf "%.2f", (b - a) / hz}')
        rpc=$(awk -v r="$rps" -v d="$duration" -v c="$cpu" \
            'BEGIN { if (c > 0) printf "%.0f", r * d / c; else print "?" }')
        res[$col,$label]="$rps req/s, p99 $p99, $rpc req/CPU-s${errs:+ ($errs)}"
        say "$col $label: ${res[$col,$label]} (QEMU CPU ${cpu}s)"
    done
}

accels=(tcg)
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then accels+=(kvm); fi

sanos_note=
linux_note=
elf=$root/build/sanos.elf
if [ ! -f "$elf" ]; then
    sanos_note="not measured: $elf missing (make kernel)"
elif [ ! -f "$site_img" ]; then
    sanos_note="not measured: no site image"
fi
mapfile -t li < <(bash "$here/linux-nginx.sh" "$site" 2>"$out/linux-nginx.build.log")
vmlinuz=${li[0]:-}
linitrd=${li[1]:-}
if [ -z "$linitrd" ] || [ ! -f "$linitrd" ]; then
    linux_note="not measured: guest build failed ($(tail -n1 "$out/linux-nginx.build.log"))"
fi

# guest NAME -> the arguments of boot after ACCEL MEM, and the address
guest_args() {
    case $1 in
    sanos) echo "sanos|$out/sanos.log|$elf|$site_img|ip=169.254.88.2/24|http: serving|169.254.88.2" ;;
    linux) echo "linux|$out/linux.log|$vmlinuz|$linitrd|console=ttyS0 quiet|nginx: serving|169.254.88.3" ;;
    esac
}

declare -A note
for accel in "${accels[@]}"; do
    for g in sanos linux; do
        n=${g}_note
        if [ -n "${!n}" ]; then note[$g,$accel]=${!n}; continue; fi
        IFS='|' read -r name log kernel initrd append pattern host <<<"$(guest_args $g)"
        why=
        # One serial log per guest and accelerator, kept for a post-mortem.
        log=$out/$g-$accel.log
        if boot "$accel" 128M "$name" "$log" "$kernel" "$initrd" "$append" "$pattern"; then
            measure "$g-$accel" "$host"
        else
            note[$g,$accel]="not measured: $why"
        fi
        stop
    done
done

# serves HOST -> 0 if both files come back intact
serves() {
    local f
    for f in index.html 1m.bin; do
        ip netns exec "$ns" curl -s --max-time 30 "http://$1/$f" 2>/dev/null |
            cmp -s - "$site/$f" || return 1
    done
}

declare -A smallest
for g in sanos linux; do
    n=${g}_note
    if [ -n "${!n}" ]; then smallest[$g]=${!n}; continue; fi
    IFS='|' read -r name log kernel initrd append pattern host <<<"$(guest_args $g)"
    smallest[$g]="fails at 128 MiB"
    for mem in 128 96 64 48 32 24 16 12 8 6 4; do
        why=
        if boot tcg "${mem}M" "$name" "$log.m$mem" "$kernel" "$initrd" "$append" "$pattern" && serves "$host"; then
            smallest[$g]="$mem MiB"
            stop
        else
            say "$g does not serve with -m ${mem}M${why:+: $why}"
            stop
            break
        fi
    done
done
# --- table ----------------------------------------------------------------------
size() { [ -f "$1" ] && stat -c %s "$1" || echo "?"; }
echo
echo "## HTTP: sanos vs Linux $(basename "${vmlinuz:-vmlinuz}" | sed 's/^vmlinuz-//') + nginx (${accels[*]}, 1 vCPU, 128 MiB, virtio-net on a tap, wrk -t1 -d${duration}s)"
echo
head="| test |"
rule="|------|"
for accel in "${accels[@]}"; do
    head="$head sanos ${accel^^} | Linux + nginx ${accel^^} |"
    rule="$rule-------|-------|"
done
echo "$head"
echo "$rule"
for t in "${tests[@]}"; do
    label=${t%%|*}
    row="| $label |"
    for accel in "${accels[@]}"; do
        for g in sanos linux; do
            row="$row ${res[$g-$accel,$label]:-${note[$g,$accel]:-not measured}} |"
        done
    done
    echo "$row"
done
row="| smallest -m (TCG) |"
for accel in "${accels[@]}"; do
    if [ "$accel" = tcg ]; then row="$row ${smallest[sanos]} | ${smallest[linux]} |"; else row="$row | |"; fi
done
echo "$row"
echo
echo "Images: sanos.elf $(size "$elf") B + site $(size "$site_img") B; Linux vmlinuz $(size "$vmlinuz") B + initrd $(size "$linitrd") B."
[ "${#accels[@]}" = 1 ] && echo "No KVM columns: /dev/kvm does not open read-write here."
echo "(p99 is wrk's latency distribution; req/CPU-s = requests / (QEMU utime+stime) during the run; raw wrk output in build/net-bench/*.wrk; the smallest -m is the last of 128, 96, 64, 48, 32, 24, 16, 12, 8, 6, 4 MiB, going down, with which the guest booted and served both files intact)"
exit 0
