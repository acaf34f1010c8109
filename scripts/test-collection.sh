#!/usr/bin/env bash
# Collection checks: ansible-test sanity (no ignore files), units and the local integration
# target (role logic without systemd), antsibull-changelog lint, then ansible-lint (production
# profile) over the collection, its roles and playbooks, and the execution environment's build
# context (scripts/test-ee.sh). Works on a fresh machine
# without Docker and without access to bootstrap.pypa.io; exit status is the verdict.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$root/.venv}
collection=$root/ansible_collections/ruroco/ruroco
export PATH=$venv/bin:$PATH
export ANSIBLE_COLLECTIONS_PATH=$root

# ansible-test bootstraps pip in its sanity venvs from a downloaded get-pip script; it uses this
# cached file instead when present. The stand-in uses ensurepip, then pip from the configured
# index (pip.conf mirrors and certificates still apply).
pip_version=$(python -c 'import re, ansible_test._internal.python_requirements as r, inspect
print(re.search(r"pip=.([0-9.]+)", inspect.getsource(r)).group(1))')
cache=$HOME/.ansible/test/cache
mkdir -p "$cache"
cat > "$cache/get_pip_${pip_version//./_}.py" <<'PY'
import ensurepip, os, runpy, sys
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
saved = dict(os.environ)
ensurepip.bootstrap()  # blanks PIP_* and sets PIP_CONFIG_FILE=/dev/null ...
os.environ.clear()
os.environ.update(saved)  # ... so restore them for the real install
sys.argv = ["pip", "install"] + args
runpy.run_module("pip", run_name="__main__", alter_sys=True)
PY

cd "$collection"
if compgen -G "tests/sanity/ignore-*.txt" >/dev/null; then
    echo "sanity ignore files are not allowed: $(ls tests/sanity/ignore-*.txt)" >&2
    exit 1
fi
ansible-test sanity --local --python 3.11 --color no
ansible-test units --local --python 3.11 --requirements --color no
ansible-test integration --local --python 3.11 --color no roles_local
antsibull-changelog lint
ansible-lint --offline --profile production
"$root/scripts/test-ee.sh"
