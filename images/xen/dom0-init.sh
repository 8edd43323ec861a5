#!/bin/sh
# /init of the rig's Linux dom0 (busybox ash). Installed by mkdom0.sh.
#
# Brings up the Xen toolstack, then for each guest listed in /guests/order
# (else every /guests/*.cfg, sorted): xl create, watch its console log for
# the expected line, xl shutdown, check it is gone. Everything it reports
# goes to the console (hvc0 -> Xen -> com1) as lines starting "RIG: ".
# Finally "RIG: done" and power off, which ends QEMU.
#
# Per guest NAME, in /guests:
#   NAME.cfg      xl config (required)
#   NAME.expect   key=value lines (required):
#                   match=ERE            grep -E pattern for a console line, or
#                   fixed=STRING         a fixed string (grep -F)
#                   banner=ERE           the guest's "I am up" line: its time
#                                        from xl create is reported (optional)
#                   input=STRING         typed on the guest's console once the
#                                        banner is seen (printf escapes: \r)
#                   timeout=SECS         from xl create to the match (120)
#                   shutdown_timeout=SECS  for xl shutdown -w (30)
#                   fetch=PATH MD5       once matched, dom0 fetches
#                                        http://169.254.77.2/PATH over
#                                        xenbr0 (busybox nc: the static
#                                        busybox's wget crashes resolving)
#                                        and checks the body's md5sum; the
#                                        body must be text (repeatable)
#                   echo=STRING          once matched, dom0 sends STRING and
#                                        a newline to 169.254.77.2:80 and
#                                        must read the same line back (an
#                                        echo server)
#                   syslog=STRING        dom0 takes syslog datagrams on
#                                        169.254.77.1:5514 while the guest
#                                        runs; one must contain STRING
#                   after_stop=STRING    a fixed string the guest's console
#                                        must show once it was stopped
#                   stop=shutdown|reboot|self  how the guest is stopped: xl
#                                        shutdown, xl reboot, or by itself
#                                        (e.g. typed poweroff) within the
#                                        shutdown timeout
#   NAME.kernel   kernel, passed as kernel="..." (optional: else the cfg's)
#   NAME.ramdisk  ramdisk, passed as ramdisk="..." (optional)
#   NAME.xl       extra xl "key=value" overrides, one per line (optional)

export PATH=/usr/lib/xen-4.17/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb

say() { echo "RIG: $*"; }
# /proc/uptime in centiseconds, and centiseconds as "S.S".
now() { read -r up _ < /proc/uptime; echo "${up%.*}${up#*.}"; }
fmt() { echo "$(($1 / 100)).$(($1 % 100 / 10))"; }

finish() {
    say "done"
    sync
    poweroff -f
    # Should not get here; rebooting also ends QEMU (-no-reboot).
    reboot -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts         # xenconsoled opens a pty per guest
mount -t tmpfs tmpfs /var/run
mkdir -p /var/log/xen/console /var/lib/xen /var/lock /var/run/xen /var/run/xenstored /tmp
mount -t tmpfs tmpfs /var/log/xen
mkdir -p /var/log/xen/console
say "dom0 init at $(fmt "$(now)") s uptime"
if dmesg | grep -q "Initramfs unpacking failed"; then
    say "error: $(dmesg | grep -o 'Initramfs unpacking failed.*') (dom0_mem too small for the guests?)"
    finish
fi

for m in xen-evtchn xen-privcmd xenfs xen-gntdev xen-gntalloc xen-blkback \
         xen-netback llc stp bridge; do
    insmod "/lib/modules/rig/$m.ko" || say "insmod $m failed"
done
mount -t xenfs xenfs /proc/xen || { say "error: cannot mount xenfs"; finish; }

xenstored --pid-file=/var/run/xenstored.pid || { say "error: xenstored failed"; finish; }
i=0
until xenstore-exists / 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 100 ] || { say "error: xenstored not answering"; finish; }
    sleep 0.1
done
xen-init-dom0 >/tmp/xen-init-dom0.log 2>&1 || say "xen-init-dom0 failed: $(cat /tmp/xen-init-dom0.log)"
xenconsoled --log=guest --log-dir=/var/log/xen/console || { say "error: xenconsoled failed"; finish; }
# A bridge for guests' vifs (vif = [ 'bridge=xenbr0' ]), with a link-local
# address for dom0 (an HTTP guest is 169.254.77.2); it leaves no machine.
brctl addbr xenbr0 && ip link set xenbr0 up || say "no bridge xenbr0"
ip addr add 169.254.77.1/16 dev xenbr0 || say "no address on xenbr0"
say "xen tools up at $(fmt "$(now)") s uptime"

# wait_gone NAME SECS WHAT: waits up to SECS for the domain to go; if it
# does not, says it did not WHAT, destroys it and returns 1.
wait_gone() {
    polls=0
    while xl domid "$1" >/dev/null 2>&1 && [ $polls -lt $(($2 * 10)) ]; do
        sleep 0.1
        polls=$((polls + 1))
    done
    xl domid "$1" >/dev/null 2>&1 || return 0
    say "guest $1 did not $3 in $2 s"
    xl destroy "$1" >/dev/null 2>&1 || say "guest $1 xl destroy failed"
    return 1
}

# run_guest NAME: prints the guest's RIG lines; returns 0 if it matched
# and shut down cleanly.
run_guest() {
    name=$1
    cfg=/guests/$name.cfg
    match= fixed= banner= input= timeout=120 stimeout=30 stop=shutdown fetches= syslog= after_stop= echo=
    if [ -f "/guests/$name.expect" ]; then
        while IFS= read -r kv; do
            case $kv in
                match=*) match=${kv#match=} ;;
                fixed=*) fixed=${kv#fixed=} ;;
                banner=*) banner=${kv#banner=} ;;
                input=*) input=${kv#input=} ;;
                timeout=*) timeout=${kv#timeout=} ;;
                shutdown_timeout=*) stimeout=${kv#shutdown_timeout=} ;;
                stop=*) stop=${kv#stop=} ;;
                fetch=*) fetches="$fetches${kv#fetch=};" ;;
                syslog=*) syslog=${kv#syslog=} ;;
                after_stop=*) after_stop=${kv#after_stop=} ;;
                echo=*) echo=${kv#echo=} ;;
            esac
        done < "/guests/$name.expect"
    fi
    if [ -z "$match$fixed" ]; then
        say "guest $name error: no match= or fixed= in $name.expect"
        return 1
    fi

    set -- "$cfg" "name=\"$name\""
    [ -f "/guests/$name.kernel" ] && set -- "$@" "kernel=\"/guests/$name.kernel\""
    [ -f "/guests/$name.ramdisk" ] && set -- "$@" "ramdisk=\"/guests/$name.ramdisk\""
    if [ -f "/guests/$name.xl" ]; then
        while IFS= read -r l; do [ -n "$l" ] && set -- "$@" "$l"; done < "/guests/$name.xl"
    fi

    log=/var/log/xen/console/guest-$name.log
    if [ -n "$syslog" ]; then
        : > /tmp/syslog-$name
        nc -u -l -p 5514 > /tmp/syslog-$name 2>/dev/null &
        syslog_pid=$!
    fi
    t0=$(now)
    if ! xl create "$@" >"/tmp/create-$name.log" 2>&1; then
        say "guest $name create failed:"
        sed "s/^/RIG: guest $name xl: /" "/tmp/create-$name.log"
        return 1
    fi
    say "guest $name started in $(fmt $(($(now) - t0))) s"

    # Poll the console log; print each complete new line, stop on a match,
    # on the timeout, or when the domain is gone (after a last read).
    n=0 result=timeout gone=0 polls=0
    deadline=$((t0 + timeout * 100))
    while :; do
        if [ -f "$log" ]; then
            total=$(wc -l < "$log")
            if [ "$total" -gt "$n" ]; then
                sed -n "$((n + 1)),${total}p" "$log" | tr -d '\r' > /tmp/new
                n=$total
                while IFS= read -r line; do say "guest $name console: $line"; done < /tmp/new
                if [ -n "$banner" ] && grep -q -E -e "$banner" /tmp/new; then
                    say "guest $name banner after $(fmt $(($(now) - t0))) s"
                    banner=
                    if [ -n "$input" ]; then
                        # The slave side of the pty xenconsoled holds for
                        # the guest: what is written there goes to the
                        # guest's console ring.
                        tty=$(xenstore-read "/local/domain/$(xl domid "$name")/console/tty" 2>/dev/null)
                        if [ -n "$tty" ] && printf "$input" > "$tty"; then
                            say "guest $name typed on $tty"
                        else
                            say "guest $name: no console tty to type on"
                        fi
                    fi
                fi
                if [ -n "$match" ]; then
                    grep -q -E -e "$match" /tmp/new && { result=matched; break; }
                else
                    grep -q -F -e "$fixed" /tmp/new && { result=matched; break; }
                fi
            fi
        fi
        [ $gone = 1 ] && { result=died; break; }
        [ "$(now)" -ge $deadline ] && break
        polls=$((polls + 1))
        if [ $((polls % 20)) = 0 ] && ! xl domid "$name" >/dev/null 2>&1; then
            gone=1   # read the log once more, then stop
            continue
        fi
        sleep 0.1
    done
    say "guest $name $result after $(fmt $(($(now) - t0))) s"
    if [ $result = timeout ]; then
        # What state it is in, and what Xen said lately, for the diagnosis.
        say "guest $name xl list: $(xl list 2>&1 | tr '\n' ';')"
        xl dmesg 2>/dev/null | tail -n 15 | sed "s/^/RIG: guest $name xen: /"
        if id=$(xl domid "$name" 2>/dev/null); then
            /usr/lib/xen-4.17/bin/xenctx -a "$id" 2>&1 | head -n 40 | sed "s/^/RIG: guest $name xenctx: /"
        fi
    fi

    # Fetches from the guest's HTTP server, each checked by its md5sum.
    if [ $result = matched ] && [ -n "$fetches" ]; then
        rest=$fetches
        while [ -n "$rest" ]; do
            item=${rest%%;*} rest=${rest#*;}
            path=${item%% *} want=${item#* }
            t1=$(now)
            if printf 'GET %s HTTP/1.0\r\nHost: 169.254.77.2\r\n\r\n' "$path" |
                nc -w 20 169.254.77.2 80 > /tmp/response 2>/tmp/fetch.err &&
                head -n 1 /tmp/response | grep -q '^HTTP/1.1 200 '; then
                sed '1,/^\r$/d' /tmp/response > /tmp/fetch
                got=$(md5sum < /tmp/fetch | cut -d' ' -f1)
                size=$(wc -c < /tmp/fetch)
                if [ "$got" = "$want" ]; then
                    say "guest $name fetched $path: $size bytes, md5 ok, $(fmt $(($(now) - t1))) s"
                else
                    say "guest $name fetched $path: $size bytes, md5 $got, not $want"
                    say "guest $name failed a check"
                    result=fetch-failed
                fi
            else
                say "guest $name fetch $path failed: $(head -n 1 /tmp/response 2>/dev/null) $(tr '\n' ' ' < /tmp/fetch.err)"
                say "guest $name failed a check"
                result=fetch-failed
            fi
        done
    fi

    # An echo server: the line must come back as it was sent.
    if [ $result = matched ] && [ -n "$echo" ]; then
        if printf '%s\n' "$echo" | nc -w 3 169.254.77.2 80 > /tmp/echo 2>/tmp/echo.err &&
            [ "$(cat /tmp/echo)" = "$echo" ]; then
            say "guest $name echoed \"$echo\""
        else
            say "guest $name echo: sent \"$echo\", got \"$(tr '\n' ' ' < /tmp/echo)\" $(tr '\n' ' ' < /tmp/echo.err)"
            say "guest $name failed a check"
            result=echo-failed
        fi
    fi

    if [ -n "$syslog" ]; then
        sleep 1
        kill "$syslog_pid" 2>/dev/null
        n_lines=$(tr '<' '\n' < /tmp/syslog-$name | grep -c . )
        if grep -q -F -e "$syslog" /tmp/syslog-$name; then
            say "guest $name syslog: $n_lines messages, one with \"$syslog\""
        else
            say "guest $name syslog: $n_lines messages, none with \"$syslog\""
            say "guest $name failed a check"
            [ $result = matched ] && result=syslog-failed
        fi
    fi

    # Shut it down: ask nicely, then destroy.
    how=clean
    if [ $result = died ]; then
        how=gone
    elif [ "$stop" = self ]; then
        wait_gone "$name" "$stimeout" "stop by itself" || how=forced
    elif [ "$stop" = reboot ]; then
        # `xl reboot` asks through xenstore; with on_reboot="destroy" the
        # guest's reboot ends the domain. Wait for that.
        timeout "$stimeout" xl reboot "$name" >"/tmp/shutdown-$name.log" 2>&1 ||
            say "guest $name xl reboot failed: $(tr '\n' ' ' < "/tmp/shutdown-$name.log")"
        wait_gone "$name" "$stimeout" "go away after xl reboot" || how=forced
    elif ! timeout "$stimeout" xl shutdown -w "$name" >"/tmp/shutdown-$name.log" 2>&1; then
        say "guest $name xl shutdown failed or timed out after $stimeout s: $(tr '\n' ' ' < "/tmp/shutdown-$name.log")"
        xl destroy "$name" >/dev/null 2>&1 || say "guest $name xl destroy failed"
        how=forced
    else
        # `xl shutdown -w` returns once the guest has shut down; the
        # toolstack then tears its devices down (a vif's hotplug script)
        # before the domain leaves the list.
        wait_gone "$name" 10 "go away after xl shutdown" || how=forced
    fi
    if xl domid "$name" >/dev/null 2>&1; then
        # Still listed (e.g. on_poweroff="preserve"): destroy it.
        xl destroy "$name" >/dev/null 2>&1
        [ $how = clean ] && how=forced
        xl domid "$name" >/dev/null 2>&1 && how=stuck
    fi
    # The rest of its console output.
    if [ -f "$log" ]; then
        sed -n "$((n + 1)),\$p" "$log" | tr -d '\r' | while IFS= read -r line; do
            say "guest $name console: $line"
        done
    fi
    say "guest $name shutdown $how"
    if [ -n "$after_stop" ] && ! tr -d '\r' < "$log" 2>/dev/null | grep -q -- "$after_stop"; then
        say "guest $name failed a check: no \"$after_stop\" on its console after it was stopped"
        result=after-stop-missing
    fi
    [ $result = matched ] && [ $how = clean ]
}

if [ -f /guests/order ]; then
    guests=$(cat /guests/order)
else
    guests=$(ls /guests/*.cfg 2>/dev/null | sed 's|^/guests/||; s|\.cfg$||')
fi
[ -n "$guests" ] || say "no guests"
pass=0 fail=0
for g in $guests; do
    if run_guest "$g"; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
done
say "summary: $pass passed, $fail failed"
finish
