#!/usr/bin/env bash
# Runs every benchmark and rewrites bench/RESULTS.md (raw figures: bench/out/results.json).
# The run gets its own network namespace when possible: loopback only, its own UDP counters,
# and fwknopd's firewall set-up cannot touch the host. Extra arguments go to bench.main.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$PWD/.venv/bin/python}"
mkdir -p bench/out
# Hard bound on the whole run; bench.main cleans up its children on SIGTERM. 900 s: the
# stages before the default-deployment floods take 2½–4 minutes, those five about 6.
LIMIT="${BENCH_TIME_LIMIT:-900}"
if [ "$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then
    exec timeout --kill-after=20 "$LIMIT" unshare -n -- bash -c \
        'ip link set lo up && RUROCO_BENCH_NETNS=1 exec "$0" -m bench.main "$@"' "$PY" "$@"
fi
echo "bench: no private network namespace available, using the current one" >&2
exec timeout --kill-after=20 "$LIMIT" "$PY" -m bench.main "$@"
