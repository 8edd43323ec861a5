#!/usr/bin/env bash
# build.sh — build the Linux reference guest's init and initramfs:
#   build/linux-ref/bench            bench.c, static (gcc -static -O2)
#   build/linux-ref/initrd.cpio.gz   /init (= bench), /dev/console, /proc, /sys
# Cached: rebuilt only when bench.c or this script change (sha256 stamp).
# Prints the two paths on stdout.
#
# INIT_BINARY=path (a static executable, e.g. build/user/bin/sysbench):
# the initramfs has that program as /init instead, written to
# build/linux-ref/initrd-NAME.cpio.gz (always rebuilt: it is small).
#
# The cpio (newc) archive is written here in bash rather than with cpio(1):
# no cpio package needed, no mknod (so no root) for /dev/console, and
# mtime 0 everywhere so the same bench.c gives the same bytes.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${LINUX_REF_BUILD:-$root/build/linux-ref}
mkdir -p "$out"
bench=$out/bench
initrd=$out/initrd.cpio.gz

ino=0
# entry NAME MODE(octal) [FILE | RDEVMAJOR RDEVMINOR]
entry() {
    local name=$1 mode=$((8#$2)) file=${3:-} size=0 rmaj=0 rmin=0
    if [ $# = 4 ]; then rmaj=$3 rmin=$4 file=; fi
    [ -n "$file" ] && size=$(stat -c %s "$file")
    ino=$((ino + 1))
    local namesize=$((${#name} + 1))
    # magic ino mode uid gid nlink mtime filesize devmaj devmin rdevmaj rdevmin namesize check
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        $ino $mode 0 0 1 0 $size 0 0 $rmaj $rmin $namesize 0
    printf '%s\0' "$name"
    head -c $(((4 - (110 + namesize) % 4) % 4)) /dev/zero
    if [ -n "$file" ]; then
        cat "$file"
        head -c $(((4 - size % 4) % 4)) /dev/zero
    fi
}
# archive INIT: the initramfs with INIT as /init, on stdout (gzip).
archive() {
    {
        entry dev 040755
        entry dev/console 020600 5 1
        entry proc 040755
        entry sys 040755
        entry init 100755 "$1"
        entry TRAILER!!! 0
    } | gzip -9n
}

if [ -n "${INIT_BINARY:-}" ]; then
    other=$out/initrd-$(basename "$INIT_BINARY").cpio.gz
    archive "$INIT_BINARY" > "$other.tmp"
    mv "$other.tmp" "$other"
    echo "$INIT_BINARY"
    echo "$other"
    exit 0
fi

stamp=$(cat "$here/bench.c" "$here/build.sh" | sha256sum | cut -d' ' -f1)
if [ ! -f "$bench" ] || [ ! -f "$initrd" ] ||
    [ "$(cat "$out/stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "linux-ref: building $bench" >&2
    gcc -static -O2 -s -Wall -Wextra -Werror -pthread \
        -o "$bench.tmp" "$here/bench.c"
    mv "$bench.tmp" "$bench"

    archive "$bench" > "$initrd.tmp"
    mv "$initrd.tmp" "$initrd"
    echo "$stamp" > "$out/stamp"
fi

echo "$bench"
echo "$initrd"
