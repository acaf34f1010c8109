#!/usr/bin/env bash
# One knock on loopback, start to finish: key, config, commander, server, client.
#
# Everything lives in a fresh temp dir and runs as the current user (root is fine); nothing
# outside that dir is touched, and both daemons are stopped on exit. Exit status 0 means the
# command really ran. Set KEEP_DEMO=1 to keep the temp dir for a closer look.
#
# Operators: the steps below are the same as on a real server, except that production uses
# /etc/ruroco, the systemd units, a public IP in `ips`, the `ruroco` user for the socket and
# `allow_non_routable_ips = false`.
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=${VENV:-$PWD/.venv}/bin
for tool in ruroco-client ruroco-server ruroco-commander python; do
    [ -x "$BIN/$tool" ] || { echo "demo: $BIN/$tool missing (run 'make venv')" >&2; exit 1; }
done

DEMO=$(mktemp -d /tmp/ruroco-demo.XXXXXX)
chmod 700 "$DEMO"
mkdir -p "$DEMO/etc" "$DEMO/state" "$DEMO/run" "$DEMO/client"
pids=()

stop_daemons() {
    local rc=$?
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do  # up to 5 s each, then force
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "${KEEP_DEMO:-0}" = 1 ] || [ "$rc" != 0 ]; then
        echo "demo files kept in $DEMO"
    else
        rm -rf "$DEMO"
    fi
    exit "$rc"
}
trap stop_daemons EXIT
trap 'exit 130' INT TERM

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.1 s, bounded.
wait_for() {
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 10))); do
        "$@" && return 0
        sleep 0.1
    done
    echo "demo: timed out after ${seconds}s waiting for $what" >&2
    return 1
}

step() { printf '\n== %s\n' "$*"; }

step "1. Generate a shared key (written straight to files, never shown)"
# The key goes to the server's config dir (every *.key there is loaded) and to the client.
export RUROCO_CONF_DIR="$DEMO/client"  # the client's counter and lock; keeps ~ untouched
umask 077
"$BIN/ruroco-client" gen > "$DEMO/etc/demo.key"
cp "$DEMO/etc/demo.key" "$DEMO/client/demo.key"
umask 022
ls -l "$DEMO/etc/demo.key" "$DEMO/client/demo.key"

step "2. Write config.toml (server + commander) and commands.toml (commander only)"
PORT=$("$BIN/python" -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$DEMO/etc/config.toml" <<EOF
# destination IPs this server accepts (production: its public IPs)
ips = ["127.0.0.1"]
# *.key files; replay floors (writable by the server); the commander's Unix socket
config_dir = "$DEMO/etc"
blocklist_dir = "$DEMO/state"
socket_dir = "$DEMO/run"
# owner of the socket: production uses the server's user, "ruroco"
socket_user = ""
socket_group = ""
# loopback demo only; keep false in production
allow_non_routable_ips = true
EOF
cat > "$DEMO/etc/commands.toml" <<EOF
[commands]
default = 'echo "knock from \$RUROCO_IP at \$(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$DEMO/knocks.log"'
EOF
chmod 600 "$DEMO/etc/commands.toml"
cat "$DEMO/etc/config.toml" "$DEMO/etc/commands.toml"

step "3. Start the commander (root; runs the commands) and the server (listens on UDP)"
"$BIN/ruroco-commander" --config "$DEMO/etc/config.toml" --commands "$DEMO/etc/commands.toml" \
    > "$DEMO/commander.log" 2>&1 &
pids+=($!)
wait_for 10 "the commander socket" test -S "$DEMO/run/ruroco.socket"

RUROCO_LISTEN_ADDRESS="127.0.0.1:$PORT" "$BIN/ruroco-server" --config "$DEMO/etc/config.toml" \
    > "$DEMO/server.log" 2>&1 &
pids+=($!)
wait_for 10 "the server to listen" grep -q "Running server" "$DEMO/server.log"
echo "commander pid ${pids[0]}, server pid ${pids[1]} on udp://127.0.0.1:$PORT"

step "4. Knock once: ruroco-client send -a 127.0.0.1:$PORT -k <key file>"
"$BIN/ruroco-client" send -a "127.0.0.1:$PORT" -k "$DEMO/client/demo.key"

step "5. What happened"
ran=0
wait_for 10 "the command to run" test -s "$DEMO/knocks.log" && ran=1
echo "-- command output ($DEMO/knocks.log):"
cat "$DEMO/knocks.log" 2>/dev/null || echo "(nothing: the command did not run)"
echo "-- server log:"
grep -E "loading key with id|Running server|Valid data|sent data to commander|ERROR" "$DEMO/server.log" \
    || tail -n 20 "$DEMO/server.log"
echo "-- commander log:"
grep -E "listening|Running command|Execution|ERROR" "$DEMO/commander.log" \
    || tail -n 20 "$DEMO/commander.log"

if [ "$ran" = 1 ]; then
    step "OK: one UDP packet ran the 'default' command"
else
    step "FAILED: the command did not run"
    exit 1
fi
