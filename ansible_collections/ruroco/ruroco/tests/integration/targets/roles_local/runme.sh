#!/usr/bin/env bash
# Role and module logic without systemd, on this host with connection local, in a scratch
# directory: exclusive keys, OS checks, merged commands, rendered config and units, the
# commander's and the server's drop-ins, destination addresses, the client's ssh_config
# drop-in, error messages and key secrecy.
set -euo pipefail

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/server" "$scratch/client" "$scratch/controller"

ansible-playbook -i inventory keys_exclusive.yml "$@"
ansible-playbook -i inventory os_check.yml "$@"
ansible-playbook -i inventory package_source.yml "$@"
# The installed collection (ansible-test runs a copy), for the role's commands.toml template.
collections=$(ansible-galaxy collection list ruroco.ruroco --format json \
    | python -c 'import json, sys; print(next(iter(json.load(sys.stdin))))')
ansible-playbook -i inventory commands_merge.yml -e "collection_root=$collections/ruroco/ruroco" "$@"
ansible-playbook -i inventory commands_merge_extra_vars.yml \
    -e '{"ruroco_server_commands": {"open_ssh": "true"}}' "$@"

# config.toml and the units, rendered and checked with the ruroco programs of this Python.
ruroco_bin=$(dirname "$(command -v ruroco-server)")
mkdir "$scratch/files"
ansible-playbook -i inventory server_files.yml -e "collection_root=$collections/ruroco/ruroco" \
    -e "scratch=$scratch/files" -e "ruroco_server_venv=$(dirname "$ruroco_bin")" "$@"

# Per-key policy, grants, and restart or reload for a change of config.toml.
mkdir "$scratch/policy"
ansible-playbook -i inventory policy_grants.yml -e "collection_root=$collections/ruroco/ruroco" \
    -e "scratch=$scratch/policy" -e "ruroco_server_venv=$(dirname "$ruroco_bin")" "$@"

# The client's ssh_config drop-in, read back with ssh -G.
mkdir "$scratch/ssh_config"
ansible-playbook -i inventory ssh_config.yml -e "scratch=$scratch/ssh_config" "$@"

# The private-address warning is printed exactly for the cases that expect it.
ips_log=$scratch/server_ips.log
if ! ansible-playbook -i inventory server_ips.yml "$@" >"$ips_log" 2>&1; then
    cat "$ips_log"
    exit 1
fi
warnings=$(grep -c -F '"msg": "WARNING: ruroco_server_ips is empty and every address detected' "$ips_log" || true)
expected=$(grep -c 'warn: true}' server_ips.yml)
if [ "$warnings" != "$expected" ]; then
    cat "$ips_log"
    echo "server_ips.yml: $warnings private-address warnings, $expected expected" >&2
    exit 1
fi

# Most verbose output with diffs: the roles' messages must be in it, no key may be.
log=$scratch/secrets.log
mkdir "$scratch/policy-secrets"
if ! ansible-playbook -i inventory secrets.yml -e "scratch=$scratch" -e "ruroco_server_venv=$(dirname "$ruroco_bin")" \
        -vvvv --diff >"$log" 2>&1; then
    cat "$log"
    exit 1
fi
grep -q -F 'entry 2 (name \"bad name\") does not.' "$log"
grep -q -F 'Option key is not a valid ruroco key: Key length must be 32 bytes' "$log"
grep -q -F 'entry 2 (name \"contractor\"): not_after must be a quoted TOML offset' "$log"
grep -q -F '[keys.contractor]' "$log"  # the diff of config.toml shows the policy
secrets=(erb7v3q2 c2VjcmV0c2VjcmV0)  # parts of the test key and of the rejected key
for file in "$scratch"/*/*.key; do
    secrets+=("$(cat "$file")")
done
[ "${#secrets[@]}" -ge 9 ]  # two fixed ones plus seven key files
for secret in "${secrets[@]}"; do
    if grep -q -F -e "$secret" "$log"; then
        echo "a key appears in the output of secrets.yml" >&2
        exit 1
    fi
done
echo "secrets.yml: messages shown, no key in $(wc -l <"$log") lines of -vvvv --diff output"
