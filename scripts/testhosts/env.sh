# Sourced by the test-host scripts: one place for the image name and the Podman settings.
# The tag carries a hash of the build recipe, so a changed package list builds a new image
# while an unchanged one reuses the cached image.
_testhosts_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export CONTAINERS_CONF="$_testhosts_dir/containers.conf"
RUROCO_TESTHOST_PACKAGES="systemd,systemd-sysv,dbus,python3,python3-venv,python3-apt,iproute2,procps,nftables,openssh-server"
_recipe_hash=$(printf '%s\n' "$RUROCO_TESTHOST_PACKAGES" | cat - "$_testhosts_dir/build-image.sh" \
    | sha256sum | cut -c1-10)
export RUROCO_TESTHOST_IMAGE="localhost/ruroco-testhost:bookworm-$_recipe_hash"
export RUROCO_TESTHOST_PACKAGES
