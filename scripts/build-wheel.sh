#!/usr/bin/env bash
# Build the ruroco wheel into DIR from a copy of the sources, so the checkout gets no build/.
#   scripts/build-wheel.sh DIR [--with-deps]   --with-deps also downloads the dependencies'
#                                              wheels (a wheelhouse for hosts without an index)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: $0 DIR [--with-deps]}
python=${PYTHON_FOR_WHEEL:-$root/.venv/bin/python}
mkdir -p "$out"
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
cp -r "$root/pyproject.toml" "$root/README.md" "$root/LICENSE" "$root/ruroco" "$src/"
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$out" "$src" 2>/dev/null
if [ "${2:-}" = "--with-deps" ]; then
    "$python" -m pip download --quiet --only-binary=:all: --dest "$out" "$out"/ruroco-*.whl 2>/dev/null
fi
ls "$out"/ruroco-*.whl
