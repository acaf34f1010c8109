#!/usr/bin/python
# Copyright: ruroco contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: ruroco_key
short_description: Create or validate a ruroco key file
version_added: 1.0.0
description:
  - Makes sure O(path) holds a valid ruroco key, the base64 text of an 8-byte key id followed by
    a 32-byte AES key (56 characters ending in C(==)), parsed as strictly as ruroco does.
  - A missing file is created with a freshly generated key, or with O(key) when given.
  - An existing valid key is left alone unless O(key) names a different one. An existing file
    that is not a valid key makes the task fail, unless O(force=true) allows replacing it.
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
  key:
    description:
      - Key to place instead of generating one, for example from Ansible Vault.
      - When the file holds a different valid key, it is replaced by this one.
    type: str
  force:
    description:
      - Replace a file that does not hold a valid key instead of failing.
    type: bool
    default: false
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
seealso:
  - module: ruroco.ruroco.ruroco_send
"""

EXAMPLES = r"""
- name: Generate a key for the server unless one exists
  ruroco.ruroco.ruroco_key:
    path: /etc/ruroco/default.key
    owner: ruroco
    group: ruroco
    mode: "0400"
  register: server_key

- name: Show the key id, which is safe to log
  ansible.builtin.debug:
    msg: "Key id {{ server_key.key_id }}"

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
"""

RETURN = r"""
key_id:
  description:
    - Hex of the 8-byte public key id of the key in O(path).
    - Absent in check mode when a new key would be generated.
  returned: success
  type: str
  sample: ffffffffffffffff
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


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            key=dict(type="str", no_log=True),
            force=dict(type="bool", default=False),
        ),
        add_file_common_args=True,
        supports_check_mode=True,
    )
    path = module.params["path"]
    desired = None
    if module.params["key"] is not None:
        try:
            desired = parse_key(module.params["key"])
        except InvalidKey as exc:
            module.fail_json(msg=f"Option key is not a valid ruroco key: {exc}", path=path)

    state, current = read_current(module, path)
    if state == "invalid" and not module.params["force"]:
        module.fail_json(
            msg=f"{path} does not hold a valid ruroco key ({current}); "
            "set force=true to replace it",
            path=path,
        )

    if state == "valid" and (desired is None or desired == current):
        changed, new = False, current
    elif desired is not None:
        changed, new = True, desired
    else:
        # In check mode no key is generated: its id would not match the one of the real run.
        changed, new = True, (None if module.check_mode else parse_key(generate_key()))

    diff = {
        "before_header": path,
        "after_header": path,
        "before": {"state": "absent"}
        if state == "absent"
        else {"key_id": current[0].hex() if state == "valid" else "<not a valid key>"},
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
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
