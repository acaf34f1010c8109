#!/usr/bin/env bash
# Debian packages the tests and benchmarks need; installed only when missing.
set -euo pipefail
packages=(
    fail2ban
    podman runc debootstrap
    fwknop-client fwknop-server
    systemd
    openssh-client
    nftables
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
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
