#!/usr/bin/env bash
# Build what a user installs: the ruroco wheel of this version and the collection tarball that
# carries it (roles/ruroco_venv/files/), so the roles and the controller need no package index
# for ruroco itself.
#   scripts/build-dist.sh [OUT]   default OUT: dist/  -> OUT/ruroco-VERSION-py3-none-any.whl
#                                                      OUT/ruroco-ruroco-COLLECTION_VERSION.tar.gz
# The source tree is not changed: the collection is staged in a temporary copy.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/dist}" && cd "${1:-$root/dist}" && pwd)
venv=${VENV:-$root/.venv}
export PATH=$venv/bin:$PATH
collection=$root/ansible_collections/ruroco/ruroco

version=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$root/pyproject.toml")
wheel=ruroco-$version-py3-none-any.whl

# The collection names this version in four places; a mismatch would ship a wheel that the
# roles or an execution environment never install.
mismatch=0
for pin in roles/ruroco_venv/defaults/main.yml:ruroco_venv_version \
           roles/ruroco_server/defaults/main.yml:ruroco_server_version \
           roles/ruroco_client/defaults/main.yml:ruroco_client_version; do
    file=${pin%%:*} var=${pin#*:}
    if ! grep -qx "$var: \"$version\"" "$collection/$file"; then
        echo "build-dist: $file does not pin $var: \"$version\" (pyproject.toml)" >&2
        mismatch=1
    fi
done
if ! grep -q "/roles/ruroco_venv/files/$wheel\$" "$collection/requirements.txt"; then
    echo "build-dist: requirements.txt does not name $wheel" >&2
    mismatch=1
fi
[ $mismatch -eq 0 ] || exit 1

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
PYTHON_FOR_WHEEL="$venv/bin/python" "$root/scripts/build-wheel.sh" "$stage/wheel" >/dev/null
cp "$stage/wheel/$wheel" "$out/"
mkdir -p "$stage/ansible_collections/ruroco"
cp -a "$collection" "$stage/ansible_collections/ruroco/"
staged=$stage/ansible_collections/ruroco/ruroco
find "$staged" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$staged/tests/output" "$staged/.hypothesis"
mkdir -p "$staged/roles/ruroco_venv/files"
cp "$stage/wheel/$wheel" "$staged/roles/ruroco_venv/files/"
ansible-galaxy collection build --force --output-path "$out" "$staged" >/dev/null
ls "$out/$wheel" "$out"/ruroco-ruroco-*.tar.gz
