#!/usr/bin/env bash
# fetch.sh — download and unpack the Debian packages the Xen rig needs.
#
# Everything comes from Debian by package name (apt-get download), and is
# unpacked with dpkg -x, never installed:
#   build/xen/debs/<pkg>_<ver>_amd64.deb   the downloaded packages
#   build/xen/pkgs/<pkg>/                  each package unpacked
#   build/xen/pkgs/<pkg>.stamp             "unpacked", holds the .deb name
#   build/xen/versions.txt                 package -> version, incl. the kernel
#   build/xen/xen                          the hypervisor, gunzipped (QEMU -kernel)
#   build/xen/vmlinuz                      symlink to the Debian kernel (bzImage)
# Idempotent: a package whose stamp exists is not fetched again.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${XEN_BUILD:-$root/build/xen}
mkdir -p "$out/debs" "$out/pkgs"

log() { echo "fetch: $*" >&2; }

# `fetch.sh hypervisor`: only Xen itself (what the fast dom0 rig needs).
if [ "${1:-}" = hypervisor ]; then
    p=xen-hypervisor-4.17-amd64
    if [ ! -f "$out/pkgs/$p.stamp" ]; then
        log "downloading $p"
        (cd "$out/debs" && apt-get download -qq "$p" 2>/dev/null) ||
            { apt-get update -qq && (cd "$out/debs" && apt-get download -qq "$p"); }
        deb=$(ls -t "$out/debs/${p}_"*.deb | head -n1)
        rm -rf "$out/pkgs/$p"
        dpkg -x "$deb" "$out/pkgs/$p"
        basename "$deb" > "$out/pkgs/$p.stamp"
    fi
    xen_gz=$(ls "$out/pkgs/$p/boot/"xen-4.17-amd64.gz)
    if [ ! -f "$out/xen" ] || [ "$xen_gz" -nt "$out/xen" ]; then
        gunzip -c "$xen_gz" > "$out/xen.tmp" && mv "$out/xen.tmp" "$out/xen"
    fi
    exit 0
fi

# The newest linux-image-6.1.0-N-amd64 that apt knows a candidate for.
# (cached in versions.txt so a second run does not depend on apt lists.)
kernel_pkg=$(sed -n 's/^kernel-package=//p' "$out/versions.txt" 2>/dev/null || true)
if [ -z "$kernel_pkg" ]; then
    # (no early exits inside pipelines: with pipefail a SIGPIPE'd writer fails)
    find_kernel() {
        local names p
        names=$(apt-cache pkgnames linux-image-6.1.0- 2>/dev/null |
            grep -E '^linux-image-6\.1\.0-[0-9]+-amd64$' | sort -V -r || true)
        for p in $names; do
            if apt-cache policy "$p" 2>/dev/null | grep 'Candidate: [0-9]' >/dev/null; then
                echo "$p"; return
            fi
        done
    }
    kernel_pkg=$(find_kernel)
    if [ -z "$kernel_pkg" ]; then
        log "apt knows no linux-image-6.1.0-*-amd64; running apt-get update"
        apt-get update -qq
        kernel_pkg=$(find_kernel)
    fi
    [ -n "$kernel_pkg" ] || { log "no linux-image-6.1.0-*-amd64 available"; exit 1; }
fi

pkgs=(
    xen-hypervisor-4.17-amd64
    xen-utils-4.17 xen-utils-common xenstore-utils
    libxenmisc4.17 libxenstore4 libxentoollog1 libxencall1 libxenevtchn1
    libxenforeignmemory1 libxengnttab1 libxendevicemodel1 libxentoolcore1
    libxenhypfs1 libyajl2
    busybox-static
    "$kernel_pkg"
)

updated=0
for p in "${pkgs[@]}"; do
    [ -f "$out/pkgs/$p.stamp" ] && continue
    log "downloading $p"
    # apt-get download writes into the current directory.
    if ! (cd "$out/debs" && apt-get download -qq "$p" 2>/dev/null); then
        if [ $updated = 0 ]; then
            log "apt-get download $p failed; running apt-get update"
            apt-get update -qq
            updated=1
        fi
        (cd "$out/debs" && apt-get download -qq "$p")
    fi
    # The newest .deb of this package (a name may prefix another, so match _).
    deb=$(ls -t "$out/debs/${p}_"*.deb | head -n1)
    rm -rf "$out/pkgs/$p"
    dpkg -x "$deb" "$out/pkgs/$p"
    basename "$deb" > "$out/pkgs/$p.stamp"
done

# versions.txt: one "package=version" line each, from the stamps' .deb names.
{
    echo "kernel-package=$kernel_pkg"
    for p in "${pkgs[@]}"; do
        v=$(sed -e "s/^${p}_//" -e 's/_amd64\.deb$//' "$out/pkgs/$p.stamp")
        echo "$p=${v//%3a/:}"
    done
} > "$out/versions.txt.new"
mv "$out/versions.txt.new" "$out/versions.txt"

# The hypervisor as QEMU -kernel wants it (multiboot ELF, not gzipped).
xen_gz=$(ls "$out/pkgs/xen-hypervisor-4.17-amd64/boot/"xen-4.17-amd64.gz)
if [ ! -f "$out/xen" ] || [ "$xen_gz" -nt "$out/xen" ]; then
    gunzip -c "$xen_gz" > "$out/xen.tmp" && mv "$out/xen.tmp" "$out/xen"
fi
vmlinuz=$(ls "$out/pkgs/$kernel_pkg/boot/"vmlinuz-*)
ln -sfn "$vmlinuz" "$out/vmlinuz"

# The same kernel uncompressed (vmlinux, an ELF with Xen notes): Xen and
# libxenguest then skip the xz decompression, seconds under TCG. The xz
# stream starts at its magic inside the bzImage; xz complains about the
# bytes after it, hence || true and the size check.
if [ ! -s "$out/vmlinux" ] || [ "$vmlinuz" -nt "$out/vmlinux" ]; then
    off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | head -n1 | cut -d: -f1 || true)
    [ -n "$off" ] || { log "no xz stream in $vmlinuz"; exit 1; }
    tail -c +$((off + 1)) "$vmlinuz" | xz -dc > "$out/vmlinux.tmp" 2>/dev/null || true
    [ "$(head -c 4 "$out/vmlinux.tmp" | od -An -c | tr -d ' ')" = '177ELF' ] ||
        { log "could not extract vmlinux from $vmlinuz"; exit 1; }
    mv "$out/vmlinux.tmp" "$out/vmlinux"
fi
