#!/usr/bin/env bash
# Run the molecule scenarios on real Debian 12 systemd hosts (Podman containers).
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
[ ${#scenarios[@]} -gt 0 ] || scenarios=(default knock_then_connect fleet)

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

PYTHON_FOR_WHEEL="$venv/bin/python" scripts/build-wheel.sh "$run_dir/wheelhouse" --with-deps >/dev/null
ssh-keygen -q -t ed25519 -N '' -C "ruroco-molecule-$run_id" -f "$run_dir/id_ed25519"

failed=()
for scenario in "${scenarios[@]}"; do
    echo "=== molecule scenario $scenario"
    s0=$(date +%s)
    if molecule -c molecule/base.yml test -s "$scenario"; then
        echo "=== scenario $scenario passed in $(($(date +%s) - s0)) s"
    else
        echo "=== scenario $scenario FAILED after $(($(date +%s) - s0)) s"
        failed+=("$scenario")
    fi
done
echo "=== molecule: ${#scenarios[@]} scenario(s), ${#failed[@]} failed, $(($(date +%s) - start)) s"
[ ${#failed[@]} -eq 0 ] || { echo "failed: ${failed[*]}"; exit 1; }
