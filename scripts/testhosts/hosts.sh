#!/usr/bin/env bash
# Start or remove systemd test hosts (Podman containers on the default bridge).
#   hosts.sh up RUN_ID PUBKEY_FILE NAME[:SUITE]...
#                                            start hosts (Debian SUITE, default bookworm), print
#                                            "NAME ADDRESS" once SSH answers
#   hosts.sh down RUN_ID [NAME...]           remove the named hosts, or every host of the run
# Every container carries the label ruroco-test-run=RUN_ID, so a run removes exactly what it
# started (also after a crash: scripts/test-molecule.sh removes the whole run in a trap).
set -euo pipefail
. "$(dirname "$0")/env.sh"
cmd=${1:?usage: hosts.sh up|down RUN_ID ...}
run_id=${2:?run id missing}
shift 2
container() { echo "rt-$run_id-$1"; }

case "$cmd" in
up)
    pubkey=${1:?public key file missing}
    shift
    names=()
    for spec in "$@"; do
        name=${spec%%:*}
        suite=$RUROCO_TESTHOST_DEFAULT_SUITE
        [ "$spec" = "$name" ] || suite=${spec#*:}
        names+=("$name")
        # NET_ADMIN: the scenarios' commands change nftables inside the host.
        # SYS_ADMIN: ruroco-commander runs every command in its own PID namespace
        # (unshare(CLONE_NEWPID)); and without it systemd in the host silently skips the units'
        # sandboxing (ProtectSystem=, PrivateTmp=, PrivateNetwork=, ... "containerized
        # execution"), so the tests would not run the services as a real host does.
        # SYS_PTRACE: systemd on a real host has it; without it setting up PrivateUsers= for a
        # User= service under ProtectProc= fails (217/USER: the uid map is written through the
        # hidepid /proc).
        podman run -d --systemd=always --label "ruroco-test-run=$run_id" \
            --name "$(container "$name")" --hostname "$name" \
            --cap-add NET_ADMIN --cap-add SYS_ADMIN --cap-add SYS_PTRACE \
            "$(testhost_image "$suite")" /sbin/init >/dev/null
    done
    for name in "${names[@]}"; do
        c=$(container "$name")
        podman exec -i "$c" sh -c 'umask 077; cat > /root/.ssh/authorized_keys' <"$pubkey"
        # Bounded wait for the boot to finish (degraded is fine: nothing of ours runs yet).
        timeout 60 podman exec "$c" systemctl is-system-running --wait >/dev/null || true
        podman exec "$c" systemctl start ssh.service
    done
    for name in "${names[@]}"; do
        address=$(podman inspect -f '{{.NetworkSettings.IPAddress}}' "$(container "$name")")
        for _ in $(seq 1 100); do
            if timeout 1 bash -c "exec 3<>/dev/tcp/$address/22" 2>/dev/null; then break; fi
            sleep 0.2
        done
        echo "$name $address"
    done
    ;;
down)
    if [ $# -gt 0 ]; then
        for name in "$@"; do podman rm -f -t 2 "$(container "$name")" >/dev/null 2>&1 || true; done
    else
        ids=$(podman ps -aq --filter "label=ruroco-test-run=$run_id")
        [ -z "$ids" ] || podman rm -f -t 2 $ids >/dev/null
    fi
    ;;
*)
    echo "usage: hosts.sh up|down RUN_ID ..." >&2
    exit 2
    ;;
esac
