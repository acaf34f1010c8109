#!/usr/bin/env bash
# Run the molecule scenarios on real Debian 12 and 13 systemd hosts (Podman containers).
#   scripts/test-molecule.sh                 every scenario
#   scripts/test-molecule.sh default fleet   only these
# A fresh machine needs only what `make venv sysdeps` installs: this script builds (or reuses)
# the test-host image, builds the ruroco wheel plus a wheelhouse of its dependencies on the
# controller (the hosts reach no package index), and removes every container it started, also
# on failure or interrupt.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=${VENV:-$root/.venv}
export PATH="$venv/bin:$PATH"   # molecule runs ansible-playbook/ansible-config by name
. scripts/testhosts/env.sh

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(default install lifecycle knock_then_connect proxycommand fleet)

run_id=$(date +%s)-$$
run_dir=$(mktemp -d /var/tmp/ruroco-molecule.XXXXXX)
cleanup() {
    scripts/testhosts/hosts.sh down "$run_id" || true
    rm -rf "$run_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export RUROCO_MOLECULE_RUN_ID=$run_id RUROCO_MOLECULE_RUN_DIR=$run_dir
export ANSIBLE_COLLECTIONS_PATH=$root
export ANSIBLE_NOCOLOR=1 PY_COLORS=0 ANSIBLE_FORCE_COLOR=0

start=$(date +%s)
scripts/testhosts/build-image.sh

# Wheels for the hosts' Pythons: 3.11 (Debian 12, the building Python) and 3.13 (Debian 13).
PYTHON_FOR_WHEEL="$venv/bin/python" scripts/build-wheel.sh "$run_dir/wheelhouse" --with-deps 3.13 >/dev/null
ssh-keygen -q -t ed25519 -N '' -C "ruroco-molecule-$run_id" -f "$run_dir/id_ed25519"

# The install scenario takes the user's path: the tarball of `make dist` in an empty collections
# path, and a controller virtualenv with ansible-core (the version of ours) and the ruroco wheel
# from that tarball instead of this checkout. Only the dependencies come from the wheelhouse.
# (Called from an `if`, where set -e does not apply: every step is chained.)
prepare_install() {
    local ansible_core
    ansible_core=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("ansible-core"))') &&
    scripts/build-dist.sh "$run_dir/dist" >/dev/null &&
    ANSIBLE_COLLECTIONS_PATH="$run_dir/collections" ansible-galaxy collection install --offline -p "$run_dir/collections" \
        "$run_dir"/dist/ruroco-ruroco-*.tar.gz >/dev/null &&
    mkdir -p "$run_dir/deps" &&
    find "$run_dir/wheelhouse" -name '*.whl' ! -name 'ruroco-*' -exec cp {} "$run_dir/deps/" \; &&
    "$venv/bin/python" -m venv "$run_dir/controller" &&
    "$run_dir/controller/bin/pip" install -q --disable-pip-version-check "ansible-core==$ansible_core" \
        "$run_dir"/collections/ansible_collections/ruroco/ruroco/roles/ruroco_venv/files/ruroco-*.whl
}

run_scenario() {
    if [ "$1" != install ]; then
        molecule -c molecule/base.yml test -s "$1"
        return
    fi
    prepare_install || return
    # molecule (of this checkout's tools) runs ansible-playbook from the controller venv.
    PATH="$run_dir/controller/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$run_dir/collections" \
        "$venv/bin/molecule" -c molecule/base.yml test -s install
}

failed=()
for scenario in "${scenarios[@]}"; do
    echo "=== molecule scenario $scenario"
    s0=$(date +%s)
    if run_scenario "$scenario"; then
        echo "=== scenario $scenario passed in $(($(date +%s) - s0)) s"
    else
        echo "=== scenario $scenario FAILED after $(($(date +%s) - s0)) s"
        failed+=("$scenario")
    fi
done
echo "=== molecule: ${#scenarios[@]} scenario(s), ${#failed[@]} failed, $(($(date +%s) - start)) s"
[ ${#failed[@]} -eq 0 ] || { echo "failed: ${failed[*]}"; exit 1; }
