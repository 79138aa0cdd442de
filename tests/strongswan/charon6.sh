#!/bin/sh
# strongSwan 6 (Debian trixie, in a chroot made by swan6_root) as SWAN_CHARON for lib.sh's
# swan_start. It runs inside swan_start's private mount namespace, so the bind mounts below
# vanish with charon. The instance directory (where STRONGSWAN_CONF, the vici socket and the
# log live) is bind-mounted into the chroot at the same path, so the host's swanctl reaches the
# socket and the tests read the log where they expect it.
set -eu
ROOT=${SWAN6_ROOT:?set SWAN6_ROOT to the trixie chroot}
DIR=$(dirname "$STRONGSWAN_CONF")
mkdir -p "$ROOT$DIR" "$ROOT/dev" "$ROOT/proc" "$ROOT/sys"
mount --bind "$DIR" "$ROOT$DIR"
mount --bind /dev "$ROOT/dev"
mount -t proc proc "$ROOT/proc"
mount -t sysfs sysfs "$ROOT/sys" 2>/dev/null || mount --bind /sys "$ROOT/sys"
exec chroot "$ROOT" /usr/lib/ipsec/charon
