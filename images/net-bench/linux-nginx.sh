#!/usr/bin/env bash
# linux-nginx.sh — build the Linux nginx guest for images/net-bench/run.sh:
#   build/net-bench/linux-nginx.cpio.gz: busybox (static) + Debian's nginx
#   and the shared libraries it needs, the virtio-net modules of the same
#   Debian kernel the linux-ref guest boots, and an /init that configures
#   eth0 as 169.254.88.3/24 and starts nginx (one worker, access_log off,
#   sendfile on) serving /srv/www, then prints "nginx: serving".
# Usage: linux-nginx.sh SITE_DIR   (files copied to /srv/www)
# Packages are fetched by name with `apt-get download` into
# build/net-bench/pkgs and unpacked with dpkg -x (cached).
# Prints the kernel path and the initrd path on stdout.
# Does not touch images/linux-ref/ (its initrd stays as it is).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$root/build/net-bench
site=${1:?usage: $0 SITE_DIR}
pkgs=$out/pkgs
mkdir -p "$pkgs"

# Debian's kernel, as images/linux-ref/run.sh finds it.
vmlinuz=$(ls "$root"/build/xen/pkgs/linux-image-*-amd64/boot/vmlinuz-* 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$vmlinuz" ]; then
    bash "$root/images/xen/fetch.sh" >&2
    vmlinuz=$(ls "$root"/build/xen/pkgs/linux-image-*-amd64/boot/vmlinuz-* | sort -V | tail -n1)
fi
kdir=$(dirname "$(dirname "$vmlinuz")")
kver=$(basename "$vmlinuz"); kver=${kver#vmlinuz-}
mods=$kdir/lib/modules/$kver/kernel

# nginx and the libraries `apt-cache depends nginx` lists, plus busybox.
names="busybox-static nginx nginx-common libc6 libcrypt1 libpcre2-8-0 libssl3 zlib1g"
tree=$pkgs/tree
if [ ! -f "$pkgs/stamp" ] || [ "$(cat "$pkgs/stamp")" != "$names" ]; then
    echo "net-bench: apt-get download $names" >&2
    rm -rf "$pkgs"/*.deb "$tree"
    (cd "$pkgs" && apt-get download $names >&2)
    mkdir -p "$tree"
    for d in "$pkgs"/*.deb; do dpkg -x "$d" "$tree"; done
    echo "$names" > "$pkgs/stamp"
fi

img=$out/linux-nginx-root
rm -rf "$img"
mkdir -p "$img"/{bin,sbin,etc/nginx,proc,sys,dev,tmp,run,srv/www,var/log/nginx,var/lib/nginx,lib/modules,usr/sbin}
cp "$tree/bin/busybox" "$img/bin/busybox"
for a in sh mount ip insmod sleep cat echo mkdir ifconfig; do ln -sf busybox "$img/bin/$a"; done
cp "$tree/usr/sbin/nginx" "$img/usr/sbin/nginx"
# The shared libraries nginx needs, resolved in the unpacked tree (ldd runs
# the host's loader, Debian 12 like the packages; paths are mapped back
# to the unpacked copies so the guest gets the packaged files).
mkdir -p "$img/lib64" "$img/lib/x86_64-linux-gnu"
libpath=$tree/lib/x86_64-linux-gnu:$tree/usr/lib/x86_64-linux-gnu
LD_LIBRARY_PATH=$libpath ldd "$tree/usr/sbin/nginx" | awk '/=>/ {print $1" "$3} !/=>/ && /^[ \t]*\// {print "LOADER "$1}' |
while read -r name path; do
    if [ "$name" = LOADER ]; then
        cp "$tree/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$img/lib64/" 2>/dev/null ||
            cp -L "$path" "$img/lib64/"
        continue
    fi
    base=$(basename "$path")
    src=
    for d in "$tree/lib/x86_64-linux-gnu" "$tree/usr/lib/x86_64-linux-gnu"; do
        [ -e "$d/$name" ] && { src=$d/$name; break; }
    done
    [ -z "$src" ] && src=$path   # not packaged above: the host's copy
    cp -L "$src" "$img/lib/x86_64-linux-gnu/$name"
done
cp "$tree/etc/nginx/mime.types" "$img/etc/nginx/"
cp "$site"/* "$img/srv/www/"
echo 'root:x:0:0:root:/:/bin/sh' > "$img/etc/passwd"
echo 'root:x:0:' > "$img/etc/group"
echo 'nogroup:x:65534:' >> "$img/etc/group"
for m in drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev \
    drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci net/core/failover \
    drivers/net/net_failover drivers/net/virtio_net; do
    cp "$mods/$m.ko" "$img/lib/modules/"
done
cat > "$img/etc/nginx/nginx.conf" <<'CONF'
user root;
worker_processes 1;
daemon on;
pid /run/nginx.pid;
error_log /dev/console warn;
events { worker_connections 1024; }
http {
    include mime.types;
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    server {
        listen 80 default_server;
        root /srv/www;
    }
}
CONF
cat > "$img/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net; do
    insmod /lib/modules/$m.ko || echo "init: insmod $m failed"
done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
ip link set lo up
ip addr add 169.254.88.3/24 dev eth0
ip link set eth0 up
if /usr/sbin/nginx -c /etc/nginx/nginx.conf; then
    echo "nginx: serving on 169.254.88.3:80"
else
    echo "nginx: failed to start"
fi
while true; do sleep 3600; done
INIT
chmod 755 "$img/init"
(cd "$img" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -6n > "$out/linux-nginx.cpio.gz"
echo "$vmlinuz"
echo "$out/linux-nginx.cpio.gz"
