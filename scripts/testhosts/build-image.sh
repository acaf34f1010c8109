#!/usr/bin/env bash
# Build the Debian systemd test-host images locally (no registry is reachable on CI), once:
# an existing tag is reused. debootstrap needs only Debian's package mirror.
#   build-image.sh [SUITE...]   default: every suite of env.sh (bookworm trixie)
set -euo pipefail
. "$(dirname "$0")/env.sh"
if [ $# -eq 0 ]; then
    # shellcheck disable=SC2086
    set -- $RUROCO_TESTHOST_SUITES
fi
if [ $# -gt 1 ]; then
    for suite in "$@"; do "$0" "$suite"; done
    exit 0
fi
suite=$1
case " $RUROCO_TESTHOST_SUITES " in
*" $suite "*) ;;
*) echo "unknown suite $suite (known: $RUROCO_TESTHOST_SUITES)" >&2; exit 2 ;;
esac
image=$(testhost_image "$suite")
if podman image exists "$image"; then
    echo "test-host image $image exists, reusing it"
    exit 0
fi
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=$(mktemp -d /var/tmp/ruroco-rootfs.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
echo "building $image with debootstrap ($suite) from $mirror"
debootstrap --variant=minbase --include="$RUROCO_TESTHOST_PACKAGES" "$suite" "$rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
# A container needs no getty, and first-boot units that wait for hardware only slow the boot.
chroot "$rootfs" systemctl mask getty@tty1.service console-getty.service \
    systemd-firstboot.service systemd-udevd.service systemd-remount-fs.service >/dev/null 2>&1 || true
# The hosts are reached over SSH by key only; ansible needs root (the roles manage /etc).
mkdir -p "$rootfs/root/.ssh"
chmod 0700 "$rootfs/root/.ssh"
printf 'PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n' \
    >"$rootfs/etc/ssh/sshd_config.d/ruroco-test.conf"
rm -f "$rootfs/etc/machine-id" && touch "$rootfs/etc/machine-id"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | podman import \
    --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' - "$image" >/dev/null
echo "built $image"
