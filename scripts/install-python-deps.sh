#!/usr/bin/env bash
# Install the package (editable) and every Python tool the tests use into the virtualenv.
set -euo pipefail
venv=${1:-.venv}
cd "$(dirname "$0")/.."
stamp="$venv/.deps-stamp"
want=$(cat pyproject.toml requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
"$venv/bin/python" -m pip install -q -e '.[test]' -r requirements-dev.txt
echo "$want" > "$stamp"
