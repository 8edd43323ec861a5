#!/usr/bin/env bash
# Installs what building and testing sanos needs on a fresh Debian 12
# machine, by package name, and only what is missing. Idempotent: when
# everything is present it prints nothing and exits 0.
#
#   qemu-system-x86   QEMU (PVH -kernel boot, isa-debug-exit)
#   grub-pc-bin       GRUB for BIOS PCs (grub-mkrescue's i386-pc image)
#   grub-common       grub-mkrescue
#   xorriso, mtools   what grub-mkrescue needs to write an ISO
#   binutils          objcopy (stripped image + debug file), addr2line
#   xz-utils          the Xen rig unpacks Debian's kernel image
#   curl              the HTTP configurations fetch the appliance's site
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have qemu-system-x86_64 || need+=(qemu-system-x86)
[ -d /usr/lib/grub/i386-pc ] || need+=(grub-pc-bin)
have grub-mkrescue || need+=(grub-common)
have xorriso || need+=(xorriso)
have mformat || need+=(mtools)
have objcopy && have addr2line || need+=(binutils)
have xz || need+=(xz-utils)
have curl || need+=(curl)

if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: not root; run: sudo apt-get install -y ${need[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# rust-toolchain.toml names the toolchain, target and components; an
# installed toolchain does not add a missing target by itself.
if ! rustup toolchain install >/dev/null 2>&1; then
    rustup toolchain install
fi
