#!/usr/bin/env bash
# Build the ruroco wheel into DIR from a copy of the sources, so the checkout gets no build/.
#   scripts/build-wheel.sh DIR [--with-deps [PYVER...]]
#       --with-deps also downloads the dependencies' wheels (a wheelhouse for hosts without an
#       index): for the building Python, and for each PYVER (e.g. 3.13 for Debian 13) binary
#       wheels for this machine's architecture.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: $0 DIR [--with-deps [PYVER...]]}
python=${PYTHON_FOR_WHEEL:-$root/.venv/bin/python}
mkdir -p "$out"
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
cp -r "$root/pyproject.toml" "$root/README.md" "$root/LICENSE" "$root/ruroco" "$src/"
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$out" "$src" 2>/dev/null
if [ "${2:-}" = "--with-deps" ]; then
    wheel=$(ls "$out"/ruroco-*.whl)
    "$python" -m pip download --quiet --only-binary=:all: --dest "$out" "$wheel" 2>/dev/null
    arch=$(uname -m)
    for pyver in "${@:3}"; do
        abi=cp${pyver/./}
        "$python" -m pip download --quiet --only-binary=:all: --dest "$out" \
            --python-version "$pyver" --implementation cp --abi "$abi" --abi abi3 --abi none \
            --platform "manylinux_2_17_$arch" --platform "manylinux2014_$arch" \
            --platform "manylinux_2_28_$arch" --platform "manylinux_2_34_$arch" --platform any \
            "$wheel" 2>/dev/null
    done
fi
ls "$out"/ruroco-*.whl
