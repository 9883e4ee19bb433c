#!/usr/bin/env bash
# Builds localhost/hpcgate-examples:latest, the small image the container
# examples and tests run in, without a registry: a root filesystem made of
# Debian's busybox-static (/bin/busybox and its applets sh, awk, wc, tr, sort,
# test... as links in /bin; dirs bin tmp proc sys dev etc work; an
# /etc/passwd and /etc/group with root and nobody; empty /etc/hosts,
# hostname, resolv.conf and an /etc/mtab link), packed with tar and
# imported with podman import (ENV PATH=/bin, WORKDIR /work).
#
#   scripts/build-example-image.sh [--root DIR] [--force]
#
#   --root DIR   import into the podman storage root DIR instead of the
#                default store (podman --root DIR), then make DIR readable by
#                all (chmod -R a+rX): a shared read-only image store for
#                rootless accounts (its run root and libpod tmp dir are
#                DIR/runroot and DIR/libpod-tmp)
#   --force      rebuild even if the image exists
#
# Run it after scripts/setup-podman.sh installed podman and busybox-static
# (that script runs it too). It honours CONTAINERS_CONF. Idempotent: when the
# image exists it only says so (a fraction of a second). It prints one line:
# the image, whether it was built or found, and its size.
set -euo pipefail

IMAGE=localhost/hpcgate-examples:latest
BUSYBOX=${HPCGATE_BUSYBOX:-/bin/busybox}

podman=(podman)
store=
force=0
while [ $# -gt 0 ]; do
	case $1 in
	--root)
		if [ $# -lt 2 ] || [ -z "$2" ]; then
			echo "build-example-image: --root needs a directory" >&2
			exit 2
		fi
		mkdir -p "$2"
		store=$(cd "$2" && pwd -P)
		# Its own run root and libpod tmp dir too: with the default ones,
		# shared with the default store, this podman rewrote that store's
		# overlay-layers/mountpoints.json and dropped the mounts of its
		# running containers (seen with podman 4.3). Recorded in the store's
		# database, so a later "podman --root DIR" uses them by itself.
		podman=(podman --root "$store" --runroot "$store/runroot" --tmpdir "$store/libpod-tmp")
		shift 2
		;;
	--force)
		force=1
		shift
		;;
	*)
		echo "usage: build-example-image.sh [--root DIR] [--force]" >&2
		exit 2
		;;
	esac
done

command -v podman >/dev/null 2>&1 || { echo "build-example-image: podman is not installed (scripts/setup-podman.sh)" >&2; exit 1; }

size() { "${podman[@]}" image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.1f MB", $1 / 1e6}'; }

# A shared store must stay readable by all: podman rewrites files such as
# overlay-layers/layers.json with mode 0600 whenever it changes them (any
# "podman --root DIR run" does), so this is done also when the image exists.
share() {
	if [ -n "$store" ]; then
		chmod -R a+rX "$store"
	fi
}

if [ "$force" = 0 ] && "${podman[@]}" image exists "$IMAGE"; then
	share
	echo "build-example-image: $IMAGE present${store:+ in $store} ($(size))"
	exit 0
fi

[ -x "$BUSYBOX" ] || { echo "build-example-image: no $BUSYBOX (apt-get install busybox-static)" >&2; exit 1; }
if LC_ALL=C ldd "$BUSYBOX" >/dev/null 2>&1; then
	echo "build-example-image: $BUSYBOX is dynamically linked; the image needs busybox-static" >&2
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rootfs=$tmp/rootfs
mkdir -p "$rootfs"/{bin,tmp,proc,sys,dev,etc,work}
chmod 1777 "$rootfs/tmp"
cp "$BUSYBOX" "$rootfs/bin/busybox"
if [ "$(id -u)" = 0 ]; then
	chroot "$rootfs" /bin/busybox --install -s /bin
else
	# chroot needs root: make the same links, one per applet, from here.
	"$BUSYBOX" --list | while read -r applet; do
		[ -e "$rootfs/bin/$applet" ] || ln -s /bin/busybox "$rootfs/bin/$applet"
	done
fi
cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
EOF
# The files podman mounts or links over in /etc, made here: a rootless
# container whose image lies in a store made by root (--root) cannot create
# them ("creating /etc/mtab symlink: permission denied").
ln -s /proc/mounts "$rootfs/etc/mtab"
: >"$rootfs/etc/hosts"
: >"$rootfs/etc/hostname"
: >"$rootfs/etc/resolv.conf"

old=$("${podman[@]}" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf - . |
	"${podman[@]}" import --quiet --change 'ENV PATH=/bin' --change 'WORKDIR /work' - "$IMAGE" >/dev/null
# --force: the tag moved to the new image; drop the old one unless a
# container still uses it.
if [ -n "$old" ]; then
	"${podman[@]}" rmi "$old" >/dev/null 2>&1 || true
fi
share
echo "build-example-image: $IMAGE built${store:+ in $store} ($(size))"
