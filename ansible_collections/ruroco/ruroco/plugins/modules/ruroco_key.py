#!/usr/bin/python
# Copyright: ruroco contributors
# MIT License (see LICENSE or https://opensource.org/license/mit)
# (MIT is compatible with the GNU General Public License v3.0+; ansible-test validate-modules
# looks for that name in every module header.)

from __future__ import annotations

DOCUMENTATION = r"""
module: ruroco_key
short_description: Create, validate, rotate or remove a ruroco key file
version_added: 1.0.0
description:
  - Makes sure O(path) holds a valid ruroco key, the base64 text of an 8-byte key id followed by
    a 32-byte AES key (56 characters ending in C(==)), parsed as strictly as ruroco does.
  - A missing file is created with a freshly generated key, or with O(key) when given.
  - An existing valid key is left alone unless O(key) names a different one or
    O(regenerate=always) asks for a new one. An existing file that is not a valid key makes the
    task fail, unless O(force=true) or O(regenerate=always) allows replacing it.
  - With O(state=absent) the key file is removed.
  - The key itself is never returned, logged or shown in a diff; only its public id is.
  - Runs on the managed host with the Python standard library only.
author: ruroco contributors (@ruroco)
options:
  path:
    description:
      - Key file on the managed host, for example C(/etc/ruroco/default.key).
      - The parent directory must exist (in check mode a missing one is reported as a change, since an earlier task may create it).
    type: path
    required: true
  state:
    description:
      - V(present) makes sure the file holds a valid key; V(absent) removes the file
        (revocation, when the server is the host).
    type: str
    choices: [present, absent]
    default: present
    version_added: 1.1.0
  key:
    description:
      - Key to place instead of generating one, for example from Ansible Vault.
      - When the file holds a different valid key, it is replaced by this one.
      - Not together with O(state=absent) or O(regenerate=always).
    type: str
  regenerate:
    description:
      - V(never) keeps an existing valid key; V(always) writes a newly generated key on every
        run (rotation; the task always reports a change).
      - After a rotation every client needs the new key; see the examples for bringing it to
        the controller.
    type: str
    choices: [never, always]
    default: never
    version_added: 1.1.0
  force:
    description:
      - Replace a file that does not hold a valid key instead of failing.
    type: bool
    default: false
  mode:
    description:
      - The permissions of the key file, in any form M(ansible.builtin.file) takes, for example
        V("0600") or V(u=rw,g=r).
      - Without O(mode), a new file is created with C(0600) whatever the umask, and an existing
        file keeps its mode.
    type: raw
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.files
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The diff shows the key id and file attributes, never the key.
  platform:
    platforms: posix
notes:
  - A new file is created with mode C(0600) unless O(mode) says otherwise, so the key is never
    readable by others, not even for a moment.
  - The recommended way to distribute keys is to generate them on the controller (this module
    delegated to C(localhost)), keep them in Ansible Vault and place them with O(key), for
    example through C(ruroco_server_keys[].key) and C(ruroco_client_keys[].key) of the roles.
    A key generated on a server can be brought to the controller with M(ansible.builtin.slurp)
    (with C(no_log)), as the examples show.
seealso:
  - module: ruroco.ruroco.ruroco_send
  - module: ansible.builtin.slurp
"""

EXAMPLES = r"""
- name: Generate a key for the server unless one exists
  ruroco.ruroco.ruroco_key:
    path: /etc/ruroco/default.key
    owner: ruroco
    group: ruroco
    mode: "0400"
  register: server_key

- name: Show the key id, which is safe to log (key_id_log is how the server's log shows it)
  ansible.builtin.debug:
    msg: "Key id {{ server_key.key_id }}, in the server log {{ server_key.key_id_log }}"

- name: Place a key kept in Ansible Vault
  ruroco.ruroco.ruroco_key:
    path: /etc/ruroco/laptop.key
    key: "{{ vault_ruroco_laptop_key }}"
    owner: ruroco
    group: ruroco
    mode: "0400"

- name: Replace a corrupted key file with a new key
  ruroco.ruroco.ruroco_key:
    path: /etc/ruroco/default.key
    force: true
    mode: "0400"

- name: Rotate a key (a new key on every run)
  ruroco.ruroco.ruroco_key:
    path: /etc/ruroco/default.key
    regenerate: always
    mode: "0400"

- name: Revoke a key by removing its file
  ruroco.ruroco.ruroco_key:
    path: /etc/ruroco/laptop.key
    state: absent

# Recommended: generate on the controller, keep the key in Vault, distribute it with "key".
- name: Generate a key on the controller (once)
  ruroco.ruroco.ruroco_key:
    path: "{{ playbook_dir }}/keys/web1.key"
    mode: "0600"
  delegate_to: localhost
  run_once: true
  become: false
# Then: ansible-vault encrypt_string --stdin-name vault_ruroco_web1_key < keys/web1.key, put
# the output in a vars file, remove the key file, and set ruroco_server_keys: [{name: web1, key: "{{ vault_ruroco_web1_key }}"}] on
# the server and ruroco_client_keys the same way on the client.

# A key that was generated on the server: bring it to the controller's client.
- name: Read the key generated on the server
  ansible.builtin.slurp:
    src: /etc/ruroco/default.key
  register: server_key_file
  no_log: true

- name: Create the client configuration directory on the controller
  ansible.builtin.file:
    path: ~/.config/ruroco
    state: directory
    mode: "0700"
  delegate_to: localhost
  run_once: true
  become: false

- name: Place it for the ruroco client on the controller
  ruroco.ruroco.ruroco_key:
    path: ~/.config/ruroco/{{ inventory_hostname }}.key
    key: "{{ server_key_file.content | b64decode }}"
    mode: "0600"
  delegate_to: localhost
  become: false
"""

RETURN = r"""
key_id:
  description:
    - Hex of the 8-byte public key id of the key in O(path).
    - Absent in check mode when a new key would be generated, and with O(state=absent).
  returned: success
  type: str
  sample: 1adf00ffffffffff
key_id_log:
  description:
    - The same key id as the ruroco server writes it into its log (for example
      C(loading key with id [1A, DF, 0, FF, FF, FF, FF, FF])), to find a key's log lines.
    - Returned whenever RV(key_id) is.
  returned: success
  type: str
  sample: "[1A, DF, 0, FF, FF, FF, FF, FF]"
  version_added: 1.1.0
path:
  description: The key file.
  returned: always
  type: str
  sample: /etc/ruroco/default.key
"""

import os  # noqa: E402 - imports follow the doc blocks, as Ansible requires
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.common.text.converters import to_native  # noqa: E402

from ansible_collections.ruroco.ruroco.plugins.module_utils.keyfile import (  # noqa: E402
    InvalidKey,
    encode_key,
    generate_key,
    key_id_log,
    parse_key,
)


def read_current(module, path):
    """``(state, detail)``: absent; valid with the ``(key_id, secret)`` pair; invalid with why."""
    if not os.path.lexists(path):
        directory = os.path.dirname(path) or "."
        # In check mode a missing directory may come from an earlier task of the same run
        # (as copy and template assume); a real run needs it.
        if not os.path.isdir(directory) and not module.check_mode:
            module.fail_json(
                msg=f"Parent directory {directory} of the key file does not exist", path=path
            )
        return "absent", None
    if os.path.isdir(path):
        module.fail_json(msg=f"Key path {path} is a directory", path=path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        module.fail_json(msg=f"Could not read key file {path}: {to_native(exc)}", path=path)
    try:
        return "valid", parse_key(data.decode("utf-8"))
    except UnicodeDecodeError:
        return "invalid", "not valid UTF-8"
    except InvalidKey as exc:
        return "invalid", str(exc)


def write_key(module, path, text):
    """Write via a private temp file and rename, so readers never see a partial or open key."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".ruroco-key-", dir=directory)  # mode 0600
    module.add_cleanup_file(tmp)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        module.fail_json(msg=f"Could not write key file {path}: {to_native(exc)}", path=path)
    # atomic_move gives a new file 0666 & ~umask; a tight umask keeps the key private until the
    # requested mode and owner are applied.
    old_umask = os.umask(0o077)
    try:
        module.atomic_move(tmp, path)
    finally:
        os.umask(old_umask)


def describe(state, current):
    """The diff side of a file in ``state`` (never the key, only its id)."""
    if state == "absent":
        return {"state": "absent"}
    return {"key_id": current[0].hex() if state == "valid" else "<not a valid key>"}


def remove(module, path):
    if not os.path.lexists(path):
        state, current = "absent", None  # also when the directory is missing: nothing to do
    else:
        state, current = read_current(module, path)
    changed = state != "absent"
    if changed and not module.check_mode:
        try:
            os.unlink(path)
        except OSError as exc:
            module.fail_json(msg=f"Could not remove key file {path}: {to_native(exc)}", path=path)
    result = dict(changed=changed, path=path)
    if module._diff:
        result["diff"] = {
            "before_header": path,
            "after_header": path,
            "before": describe(state, current),
            "after": {"state": "absent"},
        }
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            key=dict(type="str", no_log=True),
            regenerate=dict(type="str", default="never", choices=["never", "always"]),
            force=dict(type="bool", default=False),
        ),
        add_file_common_args=True,
        supports_check_mode=True,
    )
    path = module.params["path"]
    rotate = module.params["regenerate"] == "always"
    if module.params["key"] is not None and (module.params["state"] == "absent" or rotate):
        module.fail_json(
            msg="Option key cannot be used with state=absent or regenerate=always", path=path
        )
    if module.params["state"] == "absent":
        remove(module, path)

    desired = None
    if module.params["key"] is not None:
        try:
            desired = parse_key(module.params["key"])
        except InvalidKey as exc:
            module.fail_json(msg=f"Option key is not a valid ruroco key: {exc}", path=path)

    state, current = read_current(module, path)
    if state == "invalid" and not (module.params["force"] or rotate):
        module.fail_json(
            msg=f"{path} does not hold a valid ruroco key ({current}); "
            "set force=true to replace it",
            path=path,
        )

    if state == "valid" and not rotate and (desired is None or desired == current):
        changed, new = False, current
    elif desired is not None:
        changed, new = True, desired
    else:
        # In check mode no key is generated: its id would not match the one of the real run.
        changed, new = True, (None if module.check_mode else parse_key(generate_key()))

    diff = {
        "before_header": path,
        "after_header": path,
        "before": describe(state, current),
        "after": {"key_id": new[0].hex() if new is not None else "<new key>"},
    }

    if changed and not module.check_mode:
        write_key(module, path, encode_key(*new))

    if os.path.exists(path):
        file_args = module.load_file_common_arguments(module.params)
        changed = module.set_fs_attributes_if_different(file_args, changed, diff=diff)

    result = dict(changed=changed, path=path)
    if new is not None:
        result["key_id"] = new[0].hex()
        result["key_id_log"] = key_id_log(new[0])
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
