# Sourced by the test-host scripts: one place for the image names and the Podman settings.
# One image per Debian suite (bookworm = Debian 12, trixie = Debian 13). The tag carries a hash
# of the build recipe, so a changed package list builds a new image while an unchanged one
# reuses the cached image.
_testhosts_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export CONTAINERS_CONF="$_testhosts_dir/containers.conf"
# fail2ban and python3-systemd: the server role's opt-in fail2ban jail (the hosts reach no
# package index, so the packages the role would install are in the image already).
RUROCO_TESTHOST_PACKAGES="systemd,systemd-sysv,dbus,python3,python3-venv,python3-apt,iproute2,procps,nftables,openssh-server,fail2ban,python3-systemd"
RUROCO_TESTHOST_SUITES="bookworm trixie"
RUROCO_TESTHOST_DEFAULT_SUITE=bookworm
_recipe_hash=$(printf '%s\n' "$RUROCO_TESTHOST_PACKAGES" | cat - "$_testhosts_dir/build-image.sh" \
    | sha256sum | cut -c1-10)
# The image of a suite: testhost_image SUITE
testhost_image() { echo "localhost/ruroco-testhost:$1-$_recipe_hash"; }
export RUROCO_TESTHOST_PACKAGES RUROCO_TESTHOST_SUITES RUROCO_TESTHOST_DEFAULT_SUITE
