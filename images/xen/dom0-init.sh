#!/bin/sh
# /init of the rig's Linux dom0 (busybox ash). Installed by mkdom0.sh.
#
# Brings up the Xen toolstack, then for each guest listed in /guests/order
# (else every /guests/*.cfg, sorted): xl create, watch its console log for
# the expected line, run the checks and suspend/resume cycles its .expect
# asks for, xl shutdown, check it is gone. Everything it reports
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
#                   cycle=KIND [STRING]  a suspend/resume cycle, once matched
#                                        and the fetch=/echo= checks passed;
#                                        repeatable, run in file order. KIND:
#                                        save (xl save to /tmp/NAME.save,
#                                        xl restore), save-xenstore (the
#                                        same, the guest's suspend event
#                                        channel node removed first, so
#                                        libxl asks through control/
#                                        shutdown), save-cancel (xl save
#                                        -c: the same domain goes on),
#                                        migrate (xl migrate to this host:
#                                        a new domid under NAME), pause (xl
#                                        pause, 10 s, xl unpause). Then the
#                                        domain must be running, STRING (a
#                                        fixed string) must come on the
#                                        console within 30 s of the cycle's
#                                        end, and fetch=/echo= run again
#                   hold=PATH MD5        every cycle runs with a TCP
#                                        connection to the guest's port 80
#                                        opened before it and left idle;
#                                        after it, a GET of PATH on that
#                                        connection must answer 200 with
#                                        the body's MD5 (the connection
#                                        survived the cycle)
#                   ticks=PREFIX         the guest prints "PREFIX <seconds>"
#                                        lines (a monotonic clock, e.g. every
#                                        0.2 s): they must never go back, one
#                                        must come within 10 s of each
#                                        cycle's end, and a pause must show
#                                        as a step of >= 10 s
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
# /tmp gets a tmpfs of its own: the initramfs (rootfs) is a tmpfs with a
# size cap (152 MiB with dom0_mem=512M), half taken by the guests' files:
# no room there for a save file (cycle=save) as big as a guest's memory.
mkdir -p /tmp
mount -t tmpfs -o size=90% tmpfs /tmp
mkdir -p /var/log/xen /var/lib/xen /var/lock /var/run/xen /var/run/xenstored
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
# A domain that suspended (cycle=save-cancel) has lost its xl monitor,
# which does on_poweroff= and friends: once it has shut down, it stays,
# and wait_gone destroys it.
wait_gone() {
    polls=0
    while xl domid "$1" >/dev/null 2>&1 && [ $polls -lt $(($2 * 10)) ]; do
        if [ "$unmonitored" = 1 ] &&
            xl list "$1" 2>/dev/null | awk 'NR == 2 { exit substr($5, 4, 1) != "s" }'; then
            say "guest $1 shut down, and no xl monitors it since xl save -c: xl destroy"
            xl destroy "$1" >/dev/null 2>&1
            unmonitored=0
        fi
        sleep 0.1
        polls=$((polls + 1))
    done
    xl domid "$1" >/dev/null 2>&1 || return 0
    say "guest $1 did not $3 in $2 s"
    xl destroy "$1" >/dev/null 2>&1 || say "guest $1 xl destroy failed"
    return 1
}

# Guest $name's console: $log is the file xenconsoled writes it to, $n the
# number of its lines read so far.

# read_new [all]: prints the console lines that came since the last call
# (complete lines only; with "all", up to the end of the file) and leaves
# them in /tmp/new; appends them to /tmp/since-NAME and the values of the
# ticks= lines to /tmp/ticks-NAME; handles banner= (and input=). Returns 1
# if no line came.
read_new() {
    [ -f "$log" ] || return 1
    total=$(wc -l < "$log")
    if [ "${1:-}" = all ]; then
        sed -n "$((n + 1)),\$p" "$log" | tr -d '\r' > /tmp/new
    else
        [ "$total" -gt "$n" ] || return 1
        sed -n "$((n + 1)),${total}p" "$log" | tr -d '\r' > /tmp/new
    fi
    n=$total
    [ -s /tmp/new ] || return 1
    while IFS= read -r line; do say "guest $name console: $line"; done < /tmp/new
    cat /tmp/new >> "/tmp/since-$name"
    if [ -n "$ticks" ]; then
        awk -v p="$ticks " 'index($0, p) == 1 {
                v = substr($0, length(p) + 1); sub(/[ \t]+$/, "", v)
                if (v ~ /^[0-9]+(\.[0-9]+)?$/) print v
            }' /tmp/new >> "/tmp/ticks-$name"
    fi
    if [ -n "$banner" ] && grep -q -E -e "$banner" /tmp/new; then
        say "guest $name banner after $(fmt $(($(now) - t0))) s"
        banner=
        if [ -n "$input" ]; then
            # The slave side of the pty xenconsoled holds for the guest:
            # what is written there goes to the guest's console ring.
            tty=$(xenstore-read "/local/domain/$(xl domid "$name")/console/tty" 2>/dev/null)
            if [ -n "$tty" ] && printf "$input" > "$tty"; then
                say "guest $name typed on $tty"
            else
                say "guest $name: no console tty to type on"
            fi
        fi
    fi
    return 0
}

# poll_until COND DEADLINE: reads the console (read_new) every 0.1 s until
# the shell command COND succeeds (returns 0; $fresh is 1 if that read
# brought lines, in /tmp/new), the uptime in centiseconds (now) reaches
# DEADLINE (returns 1) or the domain is gone (returns 2, after a last read).
poll_until() {
    polls=0 gone=0
    while :; do
        fresh=0
        read_new && fresh=1
        eval "$1" && return 0
        [ $gone = 1 ] && return 2
        [ "$(now)" -ge "$2" ] && return 1
        polls=$((polls + 1))
        if [ $((polls % 20)) = 0 ] && ! xl domid "$name" >/dev/null 2>&1; then
            gone=1   # read the log once more, then stop
            continue
        fi
        sleep 0.1
    done
}

# seen_match: the lines just read have the match= (or fixed=) line.
seen_match() {
    [ $fresh = 1 ] || return 1
    if [ -n "$match" ]; then
        grep -q -E -e "$match" /tmp/new
    else
        grep -q -F -e "$fixed" /tmp/new
    fi
}

tick_count() { wc -l < "/tmp/ticks-$name"; }

# guest_checks: the fetch= and echo= checks of the running guest; returns 1
# (having said why and "failed a check") if one failed.
guest_checks() {
    # Fetches from the guest's HTTP server, each checked by its md5sum.
    checks_ok=0
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
                checks_ok=1
            fi
        else
            say "guest $name fetch $path failed: $(head -n 1 /tmp/response 2>/dev/null) $(tr '\n' ' ' < /tmp/fetch.err)"
            say "guest $name failed a check"
            checks_ok=1
        fi
    done
    [ $checks_ok = 0 ] || return 1

    # An echo server: the line must come back as it was sent.
    if [ -n "$echo" ]; then
        if printf '%s\n' "$echo" | nc -w 3 169.254.77.2 80 > /tmp/echo 2>/tmp/echo.err &&
            [ "$(cat /tmp/echo)" = "$echo" ]; then
            say "guest $name echoed \"$echo\""
        else
            say "guest $name echo: sent \"$echo\", got \"$(tr '\n' ' ' < /tmp/echo)\" $(tr '\n' ' ' < /tmp/echo.err)"
            say "guest $name failed a check"
            return 1
        fi
    fi
    return 0
}

# hold_open: opens a connection to the guest's port 80 that stays idle
# through the cycle (hold=): nc sends what it reads from a FIFO that fd 7
# keeps open until hold_check writes the request. Returns 1 if it could
# not connect.
hold_open() {
    rm -f /tmp/hold.fifo && mkfifo /tmp/hold.fifo
    nc -w 20 169.254.77.2 80 < /tmp/hold.fifo > /tmp/hold.out 2> /tmp/hold.err &
    hold_pid=$!
    exec 7> /tmp/hold.fifo
    # Connected before the cycle starts (nc has nothing to send yet); a
    # connection that failed has ended nc by now.
    sleep 1
    kill -0 "$hold_pid" 2>/dev/null
}

# hold_drop: ends the held connection, if there is one.
hold_drop() {
    [ -n "$hold_pid" ] || return 0
    exec 7>&-
    kill "$hold_pid" 2>/dev/null
    wait "$hold_pid" 2>/dev/null
    hold_pid=
}

# hold_check: sends hold='s request on the connection held through the
# cycle; returns 0 if the answer is 200 with hold='s md5 (the guest's TCP
# connection survived).
hold_check() {
    hpath=${hold%% *} hwant=${hold#* }
    printf 'GET %s HTTP/1.0\r\nHost: 169.254.77.2\r\n\r\n' "$hpath" >&7
    exec 7>&-
    # nc ends when the server closes (HTTP/1.0), at most 25 s from now.
    waited=0
    while kill -0 "$hold_pid" 2>/dev/null && [ $waited -lt 250 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    hold_drop
    head -n 1 /tmp/hold.out | grep -q '^HTTP/1.1 200 ' &&
        [ "$(sed '1,/^\r$/d' /tmp/hold.out | md5sum | cut -d' ' -f1)" = "$hwant" ]
}

# cycle_fail WHY: says why cycle $kind failed, with the xl commands' output
# and Xen's latest lines, and "failed a check".
cycle_fail() {
    hold_drop
    say "guest $name cycle $kind failed: $*"
    sed "s/^/RIG: guest $name xl: /" "/tmp/cycle-$name.log"
    if ! pidof xenstored >/dev/null; then
        # Every xl command would hang: end the run.
        say "error: xenstored is gone (crashed? see dom0's kernel messages)"
        say "guest $name failed a check"
        finish
    fi
    say "guest $name xl list: $(timeout 20 xl list 2>&1 | tr '\n' ';')"
    xl dmesg 2>/dev/null | tail -n 15 | sed "s/^/RIG: guest $name xen: /"
    say "guest $name failed a check"
}

# save_room: MiB that dom0 can give a save file in /tmp (the initramfs, in
# RAM): what df says is free there (if it has a size) and MemAvailable,
# whichever is less.
save_room() {
    avail=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
    free=$(df -Pk /tmp 2>/dev/null | awk 'NR == 2 && $2 > 0 { print int($4 / 1024) }')
    if [ -n "$free" ] && [ "$free" -lt "${avail:-0}" ]; then
        echo "$free"
    else
        echo "${avail:-0}"
    fi
}

# run_cycle KIND [STRING]: one cycle= of the running guest $name (see the
# header) and its report line. Returns 1 if it failed (having said why and
# "failed a check").
run_cycle() {
    kind=$1 cstr=$2 cdir=/var/log/xen/console
    read_new                    # so what follows came after the cycle began
    : > "/tmp/since-$name"
    : > "/tmp/cycle-$name.log"
    k=$(tick_count)
    plain=$cdir/guest-$name.log incoming=$cdir/guest-$name--incoming.log
    plain_n=0 incoming_n=0
    [ -f "$plain" ] && plain_n=$(wc -l < "$plain")
    [ -f "$incoming" ] && incoming_n=$(wc -l < "$incoming")
    id0=$(xl domid "$name" 2>/dev/null)
    save=/tmp/$name.save newlog= newn=0
    if [ -n "$hold" ] && ! hold_open; then
        cycle_fail "no connection to hold through the cycle: $(cat /tmp/hold.err)"
        return 1
    fi
    case $kind in
        save|save-xenstore|save-cancel)
            # The save file is as big as the guest's memory, and in RAM.
            mem=$(xl list "$name" 2>/dev/null | awk 'NR == 2 { print $3 }')
            room=$(save_room)
            if [ $((${mem:-0} + 16)) -gt "$room" ]; then
                cycle_fail "no room for the save file: the guest has ${mem:-?} MB, dom0 ${room} MB free (DOM0_MEM?)"
                return 1
            fi
            if [ "$kind" = save-xenstore ]; then
                # Without the guest's suspend event channel, libxl asks
                # through xenstore: "suspend" in control/shutdown, which
                # the guest must clear (acknowledge) within 60 s.
                xenstore-rm "/local/domain/$id0/device/suspend/event-channel" 2>>"/tmp/cycle-$name.log" || {
                    cycle_fail "cannot remove the suspend event channel's node"; return 1; }
            fi
            t1=$(now)
            # -c: the domain goes on running (its suspend is cancelled).
            opt=
            [ "$kind" = save-cancel ] && opt=-c
            if ! timeout 180 xl save $opt "$name" "$save" >>"/tmp/cycle-$name.log" 2>&1; then
                rm -f "$save"; cycle_fail "xl save${opt:+ $opt} failed"; return 1
            fi
            t2=$(now)
            mb=$(($(wc -c < "$save") / 1048576))
            if [ "$kind" != save-cancel ]; then
                if ! timeout 180 xl restore "$save" >>"/tmp/cycle-$name.log" 2>&1; then
                    rm -f "$save"; cycle_fail "xl restore failed"; return 1
                fi
                t3=$(now)
                rm -f "$save"
                newlog=$plain newn=$plain_n unmonitored=0
                what="save $(fmt $((t2 - t1))) s, restore $(fmt $((t3 - t2))) s ($mb MB)"
            else
                rm -f "$save"
                id1=$(xl domid "$name" 2>/dev/null)
                if [ "$id1" != "$id0" ]; then
                    cycle_fail "domid $id0 is now ${id1:-gone}"; return 1
                fi
                what="$(fmt $((t2 - t1))) s ($mb MB), domid $id0 kept"
                # xl's monitor of the domain (on_poweroff= etc.) exits
                # when the guest suspends, cancelled or not.
                unmonitored=1
            fi ;;
        migrate)
            # To this host: with an empty ssh command (-s '') xl runs the
            # "host" argument as the receiver's command line.
            t1=$(now)
            if ! timeout 180 xl migrate -s '' "$name" 'xl migrate-receive' >>"/tmp/cycle-$name.log" 2>&1; then
                if grep -q "Failed to enable logdirty" "/tmp/cycle-$name.log"; then
                    cycle_fail "xl migrate failed (a PV guest needs log-dirty mode: Xen built without CONFIG_SHADOW_PAGING?)"
                else
                    cycle_fail "xl migrate failed"
                fi
                return 1
            fi
            t2=$(now)
            id1=$(xl domid "$name" 2>/dev/null)
            if [ -z "$id1" ] || [ "$id1" = "$id0" ]; then
                cycle_fail "after xl migrate the domid is ${id1:-gone}, was $id0"; return 1
            fi
            newlog=$incoming newn=$incoming_n unmonitored=0
            what="$(fmt $((t2 - t1))) s, domid $id0 -> $id1" ;;
        pause)
            t1=$(now)
            if ! xl pause "$name" >>"/tmp/cycle-$name.log" 2>&1; then
                cycle_fail "xl pause failed"; return 1
            fi
            sleep 10
            if ! xl unpause "$name" >>"/tmp/cycle-$name.log" 2>&1; then
                cycle_fail "xl unpause failed"; return 1
            fi
            what="paused $(fmt $(($(now) - t1))) s" ;;
        *)
            cycle_fail "unknown cycle kind (save, save-xenstore, save-cancel, migrate, pause)"
            return 1 ;;
    esac
    # A new domain: xenconsoled appends its console to guest-<the domain's
    # name when its console ring came up>.log. That is NAME after xl
    # restore, but NAME--incoming after xl migrate (the receiver renames
    # the domain only once the sender lets it start), for good. Go on from
    # the line that file had when the cycle began.
    tend=$(now)
    read_new
    if [ -n "$newlog" ] && [ "$newlog" != "$log" ]; then
        log=$newlog n=$newn
    fi
    if [ -n "$ticks" ]; then
        # A tick that comes after the cycle; then 1 s more, for lines the
        # guest wrote before the cycle but xenconsoled logged after it.
        m=$(tick_count)
        poll_until '[ "$(tick_count)" -gt "$m" ]' $((tend + 1000))
        case $? in
            1) cycle_fail "no new \"$ticks\" line within 10 s"; return 1 ;;
            2) cycle_fail "the domain is gone"; return 1 ;;
        esac
        poll_until false $(($(now) + 100))
        [ $? = 2 ] && { cycle_fail "the domain is gone"; return 1; }
    fi
    if [ -n "$cstr" ]; then
        poll_until 'grep -q -F -e "$cstr" "/tmp/since-$name"' $((tend + 3000))
        case $? in
            1) cycle_fail "no \"$cstr\" on the console within 30 s"; return 1 ;;
            2) cycle_fail "the domain is gone"; return 1 ;;
        esac
    fi
    # Running or blocked; not paused, shut down, crashed or dying.
    state=$(xl list "$name" 2>/dev/null | awk 'NR == 2 { print $5 }')
    case $state in
        ??----) ;;
        *) cycle_fail "the domain is not running (state ${state:-gone})"; return 1 ;;
    esac
    if [ -n "$hold" ]; then
        if ! hold_check; then
            cycle_fail "the connection opened before the cycle got no good answer after it: $(head -n 1 /tmp/hold.out 2>/dev/null) $(tr '\n' ' ' < /tmp/hold.err)"
            return 1
        fi
        what="$what, a connection held through it answered"
    fi
    if [ -n "$ticks" ] && [ "$k" -gt 0 ]; then
        # The last tick before the cycle and the first after it: the
        # longest step from the last tick read before the cycle on (the
        # guest writes them every fraction of a second).
        gap=$(awk -v k="$k" 'NR >= k { if (NR > k && $1 - p > g) g = $1 - p; p = $1 }
                             END { printf "%.3f", g }' "/tmp/ticks-$name")
        what="$what, tick gap $(awk -v g="$gap" 'BEGIN { printf "%.1f", g }') s"
        if [ "$kind" = pause ] && awk -v g="$gap" 'BEGIN { exit !(g < 10) }'; then
            cycle_fail "$what: the guest's clock did not count the 10 s pause"
            return 1
        fi
    fi
    say "guest $name cycle $kind: $what"
}

# run_guest NAME: prints the guest's RIG lines; returns 0 if it matched,
# passed its checks and shut down cleanly.
run_guest() {
    name=$1
    cfg=/guests/$name.cfg
    match= fixed= banner= input= timeout=120 stimeout=30 stop=shutdown fetches= syslog= after_stop= echo= ticks= hold= hold_pid=
    unmonitored=0
    : > "/tmp/cycles-$name"
    : > "/tmp/ticks-$name"
    : > "/tmp/since-$name"
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
                hold=*) hold=${kv#hold=} ;;
                cycle=*) printf '%s\n' "${kv#cycle=}" >> "/tmp/cycles-$name" ;;
                ticks=*) ticks=${kv#ticks=} ;;
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
    n=0
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
    poll_until seen_match $((t0 + timeout * 100))
    case $? in
        0) result=matched ;;
        1) result=timeout ;;
        *) result=died ;;
    esac
    banner=
    say "guest $name $result after $(fmt $(($(now) - t0))) s"
    if [ $result = timeout ]; then
        # What state it is in, and what Xen said lately, for the diagnosis.
        say "guest $name xl list: $(xl list 2>&1 | tr '\n' ';')"
        xl dmesg 2>/dev/null | tail -n 15 | sed "s/^/RIG: guest $name xen: /"
        if id=$(xl domid "$name" 2>/dev/null); then
            /usr/lib/xen-4.17/bin/xenctx -a "$id" 2>&1 | head -n 40 | sed "s/^/RIG: guest $name xenctx: /"
        fi
    fi

    if [ $result = matched ] && ! guest_checks; then
        result=check-failed
    fi

    # The suspend/resume cycles, in file order, each followed by the
    # checks again.
    if [ $result = matched ]; then
        i=1 ncycles=$(wc -l < "/tmp/cycles-$name")
        while [ $i -le "$ncycles" ]; do
            c=$(sed -n "${i}p" "/tmp/cycles-$name")
            i=$((i + 1))
            case $c in
                *" "*) run_cycle "${c%% *}" "${c#* }" ;;
                *) run_cycle "$c" "" ;;
            esac || { result=cycle-failed; break; }
            guest_checks || { result=check-failed; break; }
        done
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
    elif [ $result = cycle-failed ] && ! xl domid "$name" >/dev/null 2>&1; then
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
    # What a failed xl migrate may leave behind, and a save file.
    for d in "$name--incoming" "$name--migratedaway"; do
        if xl domid "$d" >/dev/null 2>&1; then
            xl destroy "$d" >/dev/null 2>&1
            say "guest $name: destroyed the leftover domain $d"
        fi
    done
    rm -f "/tmp/$name.save"
    # The rest of its console output.
    read_new all
    say "guest $name shutdown $how"
    if [ -n "$after_stop" ] && ! tr -d '\r' < "$log" 2>/dev/null | grep -q -- "$after_stop"; then
        say "guest $name failed a check: no \"$after_stop\" on its console after it was stopped"
        result=after-stop-missing
    fi
    # The ticks= timestamps: never backwards, over the whole run.
    if [ -n "$ticks" ]; then
        sum=$(awk 'NR > 1 && $1 < prev { printf "backwards at tick %d: %s after %s", NR, $1, prev; bad = 1; exit }
                   NR > 1 && $1 - prev > max { max = $1 - prev }
                   { prev = $1 }
                   END { if (!bad) printf "%d %.1f", NR, max }' "/tmp/ticks-$name")
        case $sum in
            backwards*)
                say "guest $name ticks: $(tick_count) ticks, $sum"
                say "guest $name failed a check"
                [ $result = matched ] && result=ticks-failed ;;
            "0 "*)
                say "guest $name ticks: no \"$ticks\" lines"
                say "guest $name failed a check"
                [ $result = matched ] && result=ticks-failed ;;
            *)
                say "guest $name ticks: ${sum% *} ticks, monotonic, max gap ${sum#* } s" ;;
        esac
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
