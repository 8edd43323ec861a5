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
#   iproute2          the services configuration makes a tap device
#   dnsmasq-base      ... and serves DHCP and DNS on it (the binary only:
#                     no system service is installed or started)
#   musl-tools        musl-gcc, for the user programs the kernel runs in
#                     its tests (images/user); gcc and glibc's static
#                     libraries come with Debian's build-essential
#
# chrony, the services configuration's NTP server, is unpacked from
# Debian's package into build/services/chrony instead of installed:
# installing it would start a system daemon that sets this machine's clock
# from the internet. Its libraries are ones every Debian system has.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)

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
have ip || need+=(iproute2)
have dnsmasq || need+=(dnsmasq-base)
have musl-gcc || need+=(musl-tools)
have gcc || need+=(gcc)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)

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

chronyd=$root/build/services/chrony/usr/sbin/chronyd
if [ ! -x "$chronyd" ]; then
    echo "setup: unpacking Debian's chrony into build/services/chrony"
    mkdir -p "$root/build/services"
    (
        cd "$root/build/services"
        rm -f chrony_*.deb
        # apt's own download user cannot write here; fetch as this user.
        apt-get download -q -o APT::Sandbox::User=root chrony >/dev/null 2>&1 ||
            { apt-get update -qq && apt-get download -q -o APT::Sandbox::User=root chrony >/dev/null; }
        dpkg-deb -x chrony_*.deb chrony
        rm -f chrony_*.deb
    )
    [ -x "$chronyd" ] || { echo "setup: no chronyd in Debian's chrony package" >&2; exit 1; }
fi

# rust-toolchain.toml names the toolchain, target and components; an
# installed toolchain does not add a missing target by itself.
if ! rustup toolchain install >/dev/null 2>&1; then
    rustup toolchain install
fi
