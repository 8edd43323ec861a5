#!/usr/bin/env bash
# Builds the user programs of the tests (images/user/*.c) and packs them,
# with the files under images/user/root, into a cpio archive, the boot
# module `init=` runs from:
#
#   bin/NAME          musl, static (musl-gcc)
#   bin/NAME-glibc    glibc, static (gcc -static)
#   bin/NAME-pie      musl, static-PIE. `musl-gcc -static-pie` silently
#                     makes a dynamic PIE (its specs name the dynamic
#                     linker), so the link is spelled out: rcrt1.o, the
#                     PIE crt objects, -static-pie.
#   bin/bad-truncated the first 200 bytes of bin/hello
#   bin/bad-machine   bin/hello claiming to be i386 code (e_machine 3)
#   bin/bad-overlap   bin/hello with two PT_LOAD segments overlapping
#   bin/bad-dynamic   hello linked dynamically against glibc
#
# usage: build.sh OUT_DIR ARCHIVE RIG...   (RIG: the command that runs
# the rig, which writes the archive)
set -euo pipefail

src=$(cd "$(dirname "$0")" && pwd)
out=$1
archive=$2
shift 2
musl=/usr/lib/x86_64-linux-musl
cflags=(-O2 -g -Wall -Wextra -Werror)

rm -rf "$out"
mkdir -p "$out/bin" "$out/obj"
# Files the programs read (images/user/root: /etc/motd).
cp -R "$src/root/." "$out/"
for c in "$src"/*.c; do
    name=$(basename "$c" .c)
    musl-gcc "${cflags[@]}" -static -o "$out/bin/$name" "$c" -lpthread
    gcc "${cflags[@]}" -static -o "$out/bin/$name-glibc" "$c" -lpthread
    musl-gcc "${cflags[@]}" -fPIE -c -o "$out/obj/$name-pie.o" "$c"
    gcc -nostdlib -static-pie -o "$out/bin/$name-pie" \
        "$musl/rcrt1.o" "$musl/crti.o" "$(gcc -print-file-name=crtbeginS.o)" \
        "$out/obj/$name-pie.o" -L"$musl" -lc "$(gcc -print-libgcc-file-name)" \
        "$(gcc -print-file-name=crtendS.o)" "$musl/crtn.o"
done
head -c 200 "$out/bin/hello" >"$out/bin/bad-truncated"
# bad-overlap: bin/hello with its third PT_LOAD (rodata, at 0x408000)
# moved to 0x405000, into the text segment (0x401000-0x4078ff): program
# header 2's p_vaddr, at 64 + 2 * 56 + 16.
cp "$out/bin/hello" "$out/bin/bad-overlap"
printf '\000\120\100\000\000\000\000\000' |
    dd of="$out/bin/bad-overlap" bs=1 seek=192 conv=notrunc status=none
cp "$out/bin/hello" "$out/bin/bad-machine"
printf '\003\000' | dd of="$out/bin/bad-machine" bs=1 seek=18 conv=notrunc status=none
gcc "${cflags[@]}" -o "$out/bin/bad-dynamic" "$src/hello.c"
rm -rf "$out/obj"
"$@" cpio "$out" "$archive"
