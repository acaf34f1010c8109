#!/usr/bin/env bash
# Install into the virtualenv: "core" = the package (editable) with its test and ui extras,
# "dev" = additionally the collection and role tooling (ansible-core, ansible-lint, molecule).
# A stamp per set skips the work when nothing changed.
set -euo pipefail
venv=${1:-.venv}
set_name=${2:-core}
cd "$(dirname "$0")/.."
case "$set_name" in
    core) inputs=(pyproject.toml); args=(-e '.[test,ui]') ;;
    dev) inputs=(pyproject.toml requirements-dev.txt); args=(-e '.[test,ui]' -r requirements-dev.txt) ;;
    *) echo "usage: $0 VENV core|dev" >&2; exit 2 ;;
esac
stamp="$venv/.deps-$set_name"
want=$(cat "${inputs[@]}" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
"$venv/bin/python" -m pip install -q "${args[@]}"
echo "$want" > "$stamp"
