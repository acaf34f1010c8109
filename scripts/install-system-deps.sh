#!/usr/bin/env bash
# Debian packages the tests and benchmarks need; installed only when missing.
set -euo pipefail
packages=(
    fail2ban
    podman runc debootstrap
    fwknop-client fwknop-server
    systemd
    openssh-client
    openssh-server
    nftables
    gcc libc6-dev
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing Debian packages (run as root to install): ${missing[*]}" >&2
        exit 1
    fi
    # openssh-server is for the tests' and the bench's own sshd (bench/sshd.py, loopback in a
    # private namespace): its package must not start a system-wide sshd on this machine. A
    # policy-rc.d that denies every start does that; one the machine has already is kept.
    policy=/usr/sbin/policy-rc.d
    own_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        own_policy=1
    fi
    status=0
    apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        status=$?
    [ -z "$own_policy" ] || rm -f "$policy"
    exit "$status"
fi
