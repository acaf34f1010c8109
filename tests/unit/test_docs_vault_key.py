"""The collection README's way to keep a generated key in Vault, run as written.

The README tells operators to delete the plaintext key right after this step, so a command
that prints something Ansible cannot load loses them the key; here the documented command
runs with real ``ansible-vault`` and its output is loaded by real ``ansible``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from ruroco import protocol

REPO = Path(__file__).resolve().parents[2]
README = REPO / "ansible_collections" / "ruroco" / "ruroco" / "README.md"
BIN = Path(sys.executable).parent


def documented_command() -> list[str]:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"`(ansible-vault encrypt_string [^`]*) < keys/web1\.key`", text)
    assert found, "the README no longer shows how to vault a generated key"
    return shlex.split(found.group(1))


def test_the_documented_vault_command_gives_a_variable_ansible_loads(tmp_path: Path) -> None:
    key = protocol.generate_key()
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "web1.key").write_text(key)
    (tmp_path / "pw").write_text("test-password\n")
    argv = documented_command()
    name = argv[argv.index("--stdin-name") + 1] if "--stdin-name" in argv else None
    assert name == "vault_ruroco_web1_key"
    with open(tmp_path / "keys" / "web1.key", "rb") as stdin:
        vaulted = subprocess.run(
            [str(BIN / argv[0]), *argv[1:], "--vault-password-file", "pw"],
            cwd=tmp_path,
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    (tmp_path / "vars.yml").write_text(vaulted.stdout)
    shown = subprocess.run(
        [
            str(BIN / "ansible"),
            "localhost",
            "-i",
            "localhost,",
            "-c",
            "local",
            "--vault-password-file",
            "pw",
            "-e",
            "@vars.yml",
            "-m",
            "ansible.builtin.debug",
            "-a",
            f"var={name}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": f"{BIN}:/usr/bin:/bin",
            "ANSIBLE_HOME": str(tmp_path / "ah"),
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ah"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        },
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert f'"{name}": "{key}"' in shown.stdout, shown.stdout
