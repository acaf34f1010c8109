#!/usr/bin/env bash
# Execution environment check (no image build: no container registry is reachable here).
# 1. `ansible-builder create` turns the collection's example definition and the tarball of
#    `make dist` into a build context.
# 2. The dependency scan that the image build runs (ansible-builder introspect) finds the
#    collection's requirements.txt and bindep.txt in the installed tarball, and the ruroco wheel
#    that requirements.txt names is a file of that installation.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$root/.venv}
export PATH=$venv/bin:$PATH
collection=$root/ansible_collections/ruroco/ruroco
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "test-ee: $*" >&2; exit 1; }

"$root/scripts/build-dist.sh" "$work/dist" >/dev/null
tarball=$(ls "$work"/dist/ruroco-ruroco-*.tar.gz)

# 1. The build context.
mkdir "$work/ee"
cp "$collection"/docs/execution-environment/*.yml "$work/ee/"
grep -q -F "src: $(basename "$tarball")" "$work/ee/execution-environment.yml" \
    || fail "docs/execution-environment/execution-environment.yml does not name $(basename "$tarball")"
cp "$tarball" "$work/ee/"
(cd "$work/ee" && ansible-builder create --file execution-environment.yml --context context >/dev/null)
containerfile=$work/ee/context/Containerfile
[ -f "$containerfile" ] || fail "ansible-builder create wrote no Containerfile"
grep -q -F 'COPY _build/collections/ /tmp/ruroco-collections/' "$containerfile" \
    || fail "the Containerfile does not copy the tarball"
grep -q 'ansible-galaxy collection install .*-r requirements.yml' "$containerfile" \
    || fail "the Containerfile does not install the collections"
cmp -s "$tarball" "$work/ee/context/_build/collections/$(basename "$tarball")" \
    || fail "the build context lacks the tarball"

# 2. The dependency scan over the collection installed where the image's galaxy stage puts it.
ANSIBLE_COLLECTIONS_PATH="$work/share" ansible-galaxy collection install --offline -p "$work/share" "$tarball" >/dev/null
ansible-builder introspect --sanitize --write-pip "$work/pip.txt" --write-bindep "$work/bindep.txt" \
    "$work/share" >/dev/null
url=$(sed -n 's/^ruroco @ file:\/\/\(\S*\).*# from collection ruroco.ruroco$/\1/p' "$work/pip.txt")
[ -n "$url" ] || fail "introspect found no ruroco requirement: $(cat "$work/pip.txt")"
prefix=/usr/share/ansible/collections/
[ "${url#"$prefix"}" != "$url" ] || fail "$url is not under $prefix, where the image installs collections"
[ -f "$work/share/${url#"$prefix"}" ] || fail "$url names no file of the installed tarball"
grep -q 'libffi-devel \[compile platform:rpm\]  # from collection ruroco.ruroco' "$work/bindep.txt" \
    || fail "introspect did not read bindep.txt: $(cat "$work/bindep.txt")"
echo "test-ee: build context made, requirements found ($(wc -l <"$work/pip.txt") pip, $(wc -l <"$work/bindep.txt") bindep lines)"
