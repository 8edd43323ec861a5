#!/usr/bin/env bash
# mkdom0.sh [-o OUT] [--guest NAME=CFG:KERNEL[:RAMDISK]]... [--xl NAME=LINE]...
#
# Builds the initramfs of the rig's Linux dom0 (default
# build/xen/dom0-initrd.cpio.gz): busybox, the Xen tools with their
# libraries, the Xen backend modules and /init (dom0-init.sh), which runs
# each guest in turn and reports on the console (see dom0-init.sh).
#
#   --guest NAME=CFG:KERNEL[:RAMDISK]
#        adds guest NAME, run in the order given: CFG is an xl config,
#        KERNEL and RAMDISK are put into the initramfs and passed to
#        xl create as kernel=/ramdisk= (overriding the cfg's). The expected
#        console line comes from CFG's sibling ${CFG%.cfg}.expect
#        (match=ERE or fixed=STRING, timeout=SECS, shutdown_timeout=SECS).
#   --xl NAME=LINE
#        one more xl config line for guest NAME, e.g. --xl 'g=type="pvh"'.
#
# The output is two archives concatenated, which Linux unpacks in turn
# (Xen hands dom0 only one initrd module):
#   build/xen/dom0-base.cpio.gz   the dom0 system; rebuilt only when the
#                                 packages, this script or dom0-init.sh change
#   the guests, uncompressed (kernels are compressed already), built anew
#   every run.
set -euo pipefail

me=${0##*/}
die() { echo "$me: $*" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${XEN_BUILD:-$root/build/xen}
output=$out/dom0-initrd.cpio.gz
guests=()            # NAME=CFG:KERNEL[:RAMDISK]
declare -A xl_lines  # NAME -> newline-separated lines

while [ $# -gt 0 ]; do
    case $1 in
        -o) output=$2; shift 2 ;;
        --guest) guests+=("$2"); shift 2 ;;
        --xl) n=${2%%=*}; xl_lines[$n]+="${2#*=}"$'\n'; shift 2 ;;
        *) die "usage: $me [-o OUT] [--guest NAME=CFG:KERNEL[:RAMDISK]]... [--xl NAME=LINE]..." ;;
    esac
done

bash "$here/fetch.sh"
pkgs=$out/pkgs
busybox=$pkgs/busybox-static/bin/busybox
kpkg=$(sed -n 's/^kernel-package=//p' "$out/versions.txt")
kmods=$(echo "$pkgs/$kpkg"/lib/modules/*)
xenbin=usr/lib/xen-4.17/bin

# cpio_dir DIR: newc archive of DIR's contents on stdout, all owned by root.
cpio_dir() { (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | "$busybox" cpio -o -H newc -R 0:0 2>/dev/null); }

# ---- the dom0 system (cached) ----------------------------------------------
hostbins=(/bin/bash /usr/bin/flock)
key=$( { cat "$out/versions.txt" "$here/mkdom0.sh" "$here/dom0-init.sh"
         ls -lL "${hostbins[@]}" /lib/x86_64-linux-gnu/libc.so.6 /lib/x86_64-linux-gnu/libgcc_s.so.1; } | sha256sum | cut -d' ' -f1)
base=$out/dom0-base.cpio.gz
if [ ! -f "$base" ] || [ "$(cat "$base.key" 2>/dev/null)" != "$key" ]; then
    echo "$me: building $base" >&2
    stage=$out/dom0-root
    rm -rf "$stage"
    mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,lib/x86_64-linux-gnu,lib64,lib/modules/rig,etc,proc,sys,dev,root,tmp,var/run,var/log,var/lib,var/lock,guests,$xenbin}

    # busybox and its applets (not over files put there on purpose).
    cp "$busybox" "$stage/bin/busybox"
    for a in $("$busybox" --list); do
        [ -e "$stage/bin/$a" ] || ln -s busybox "$stage/bin/$a"
    done
    # bash and flock for Xen's hotplug scripts (vif-bridge and friends).
    rm -f "$stage/bin/bash"
    cp /bin/bash "$stage/bin/bash"
    cp /usr/bin/flock "$stage/usr/bin/flock"

    # The Xen tools: the daemons, xl, and the xenstore-* commands.
    for b in xl xenstored xenconsoled xen-init-dom0 xenconsole libxl-save-helper xenctx; do
        cp "$pkgs/xen-utils-4.17/$xenbin/$b" "$stage/$xenbin/"
    done
    cp -a "$pkgs/xenstore-utils/usr/bin/." "$stage/usr/bin/"
    cp -a "$pkgs/xen-utils-common/etc/xen" "$stage/etc/"

    # Their shared libraries: ldd's closure, with the package libraries
    # found through LD_LIBRARY_PATH and the rest (glibc, zlib, ...) from
    # the host, which is Debian 12 as well.
    libpath=$(find "$pkgs" -name 'lib*.so*' -path '*/usr/lib/*' -printf '%h\n' | sort -u | paste -sd:)
    bins=$(find "$stage/$xenbin" "$stage/usr/bin" -type f; echo "$stage/bin/bash")
    for b in $bins; do
        deps=$(LD_LIBRARY_PATH=$libpath ldd "$b")
        case $deps in *"not found"*) echo "$deps" >&2; die "missing library for $b" ;; esac
        awk '$2 == "=>" && $3 ~ /^\// { print $3 }' <<< "$deps"
    done | sort -u | while read -r lib; do
        cp -L "$lib" "$stage/lib/x86_64-linux-gnu/"
    done
    cp -L /lib64/ld-linux-x86-64.so.2 "$stage/lib64/"
    # glibc dlopens libgcc_s for pthread_cancel (xl aborts without it).
    cp -L /lib/x86_64-linux-gnu/libgcc_s.so.1 "$stage/lib/x86_64-linux-gnu/"

    # The backend modules (plain .ko; decompress if Debian ships .ko.xz).
    for m in xen-evtchn xen-privcmd xenfs xen-gntdev xen-gntalloc xen-blkback \
             xen-netback llc stp bridge; do
        f=$(find "$kmods" \( -name "$m.ko" -o -name "$m.ko.xz" \) -print -quit)
        [ -n "$f" ] || die "module $m not in $kpkg"
        case $f in
            *.xz) xz -dc "$f" > "$stage/lib/modules/rig/$m.ko" ;;
            *) cp "$f" "$stage/lib/modules/rig/$m.ko" ;;
        esac
    done

    cp "$here/dom0-init.sh" "$stage/init"
    chmod 755 "$stage/init"
    echo "root:x:0:0:root:/root:/bin/sh" > "$stage/etc/passwd"
    echo "root:x:0:" > "$stage/etc/group"

    cpio_dir "$stage" | gzip -6 > "$base.tmp"
    # Pad to 4 bytes: the next archive must start 4-aligned (NULs are skipped).
    truncate -s %4 "$base.tmp"
    mv "$base.tmp" "$base"
    echo "$key" > "$base.key"
    rm -rf "$stage"
fi

# ---- the guests (every run) ------------------------------------------------
gstage=$(mktemp -d "$out/guests.XXXXXX")
trap 'rm -rf "$gstage"' EXIT
mkdir -p "$gstage/guests"
declare -A stored    # realpath -> file name under /guests
for spec in "${guests[@]}"; do
    name=${spec%%=*}
    IFS=: read -r cfg kernel ramdisk <<< "${spec#*=}"
    [[ $name =~ ^[A-Za-z0-9_.-]+$ ]] || die "bad guest name '$name'"
    [ -f "$cfg" ] || die "guest $name: no config $cfg"
    [ -n "$kernel" ] && [ -f "$kernel" ] || die "guest $name: no kernel '$kernel'"
    expect=${cfg%.cfg}.expect
    [ -f "$expect" ] || die "guest $name: no $expect"
    [ -e "$gstage/guests/$name.cfg" ] && die "guest $name given twice"
    cp "$cfg" "$gstage/guests/$name.cfg"
    cp "$expect" "$gstage/guests/$name.expect"
    # A file shared by several guests is stored once (dom0 keeps it in RAM).
    put() {
        local src dst=$2
        src=$(realpath "$1")
        if [ -n "${stored[$src]:-}" ]; then
            ln -s "${stored[$src]}" "$gstage/guests/$dst"
        else
            cp "$src" "$gstage/guests/$dst"
            stored[$src]=$dst
        fi
    }
    put "$kernel" "$name.kernel"
    if [ -n "${ramdisk:-}" ]; then
        [ -f "$ramdisk" ] || die "guest $name: no ramdisk $ramdisk"
        put "$ramdisk" "$name.ramdisk"
    fi
    [ -n "${xl_lines[$name]:-}" ] && printf '%s' "${xl_lines[$name]}" > "$gstage/guests/$name.xl"
    echo "$name" >> "$gstage/guests/order"
done
for n in "${!xl_lines[@]}"; do
    [ -f "$gstage/guests/$n.cfg" ] || die "--xl for unknown guest $n"
done

mkdir -p "$(dirname "$output")"
{ cat "$base"; cpio_dir "$gstage"; } > "$output.tmp"
mv "$output.tmp" "$output"
echo "$me: $output ($(du -h "$output" | cut -f1), ${#guests[@]} guest(s))" >&2
