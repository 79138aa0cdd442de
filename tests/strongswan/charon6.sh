#!/bin/sh
# strongSwan 6 (Debian trixie, in a chroot made by swan6_root) as SWAN_CHARON for lib.sh's
# swan_start. It runs inside swan_start's private mount namespace, so the bind mounts below
# vanish with charon. The instance directory (where STRONGSWAN_CONF, the vici socket and the
# log live) is bind-mounted into the chroot at the same path, so the host's swanctl reaches the
# socket and the tests read the log where they expect it.
#
# The mount point is made in the chroot, which all runs share: the directories made for it are
# listed (deepest last) in the instance directory's .charon6-made, and lib.sh (swan_stop,
# swan_cleanup) removes them again once charon and its mount namespace are gone. Otherwise each
# run would leave its temp path behind in the cache.
set -eu
ROOT=${SWAN6_ROOT:?set SWAN6_ROOT to the trixie chroot}
DIR=$(dirname "$STRONGSWAN_CONF")
made=
d=$DIR
while [ ! -d "$ROOT$d" ]; do
    made="$ROOT$d
$made"
    d=$(dirname "$d")
done
# Listed before they are made: a mkdir that fails half way leaves nothing unlisted.
printf '%s' "$made" > "$DIR/.charon6-made"
mkdir -p "$ROOT$DIR" "$ROOT/dev" "$ROOT/proc" "$ROOT/sys"
mount --bind "$DIR" "$ROOT$DIR"
mount --bind /dev "$ROOT/dev"
mount -t proc proc "$ROOT/proc"
mount -t sysfs sysfs "$ROOT/sys" 2>/dev/null || mount --bind /sys "$ROOT/sys"
exec chroot "$ROOT" /usr/lib/ipsec/charon
