#!/usr/bin/env bash
# mkiso.sh KERNEL_ELF OUTPUT_ISO [CMDLINE...]
#
# Builds a BIOS-bootable GRUB rescue ISO that boots KERNEL_ELF through
# multiboot2 with CMDLINE, GRUB's menu and console on the first serial port.
# Used by the rig's grub-iso configuration and by `rig run --iso`.
set -euo pipefail

me=${0##*/}
die() { echo "$me: $*" >&2; exit 1; }

[ $# -ge 2 ] || { echo "usage: $me KERNEL_ELF OUTPUT_ISO [CMDLINE...]" >&2; exit 2; }
kernel=$1
out=$2
shift 2

# The BIOS image only: on a host that also has EFI GRUB, grub-mkrescue would
# otherwise build whatever its default platform is.
grub_dir=/usr/lib/grub/i386-pc
missing=()
command -v grub-mkrescue >/dev/null 2>&1 || missing+=("grub-mkrescue (grub-common)")
[ -d "$grub_dir" ] || missing+=("$grub_dir (grub-pc-bin)")
command -v xorriso >/dev/null 2>&1 || missing+=("xorriso")
command -v mformat >/dev/null 2>&1 || missing+=("mformat (mtools)")
if [ ${#missing[@]} -gt 0 ]; then
    die "missing: ${missing[*]}; install with: apt-get install grub-common grub-pc-bin xorriso mtools"
fi
[ -f "$kernel" ] || die "kernel $kernel not found"

# GRUB's script parser reads the menuentry: quote each word that is not
# plainly safe, and refuse what cannot be quoted.
cmdline=""
for word in "$@"; do
    case $word in
        *"'"* | *$'\n'*) die "cannot put $word on a GRUB command line" ;;
        *[!A-Za-z0-9._=,:/+@-]* | "") word="'$word'" ;;
    esac
    cmdline="$cmdline $word"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/iso/boot/grub"
cp "$kernel" "$tmp/iso/boot/sanos.elf"
cat >"$tmp/iso/boot/grub/grub.cfg" <<CFG
set timeout=0
set default=0
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
menuentry "sanos" {
    multiboot2 /boot/sanos.elf$cmdline
    boot
}
CFG

# Built beside the output and renamed, so a failed or interrupted build never
# leaves an ISO that looks newer than its kernel.
mkdir -p "$(dirname -- "$out")"
partial="$out.partial.$$"
if ! grub-mkrescue -d "$grub_dir" -o "$partial" "$tmp/iso" >"$tmp/log" 2>&1; then
    rm -f "$partial"
    cat "$tmp/log" >&2
    die "grub-mkrescue failed"
fi
mv -f "$partial" "$out"
echo "$out"
