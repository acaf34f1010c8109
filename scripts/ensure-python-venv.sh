#!/usr/bin/env bash
# Create the project virtualenv; on a bare Debian install python3-venv first.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
if ! "$python" -m venv --help >/dev/null 2>&1 || ! "$python" -c 'import ensurepip' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip >/dev/null
    fi
fi
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
