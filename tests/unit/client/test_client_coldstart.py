"""The client stays lean: ``send`` imports no heavy stdlib module, nothing imports click, and
the client's modules import each other without a cycle.

Not a timing test (benchmarks measure time); it pins the design that keeps the cold start
short, so a stray import shows up here instead of as a slow client.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from client_helpers import FIXTURE_KEY, Receiver

import ruroco

HEAVY = ("click", "dataclasses", "typing", "ipaddress", "pathlib", "socket", "re", "contextlib")


def _modules_after(argv: list[str], conf_dir: Path) -> tuple[int, list[str]]:
    code = (
        "import sys\n"
        "from ruroco.client.cli import main\n"
        f"rc = main({argv!r})\n"
        f"loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "import json\n"  # only now: json itself imports re
        "print(json.dumps([rc, loaded]))\n"
    )
    repo = str(Path(ruroco.__file__).resolve().parent.parent)
    env = dict(os.environ, RUROCO_CONF_DIR=str(conf_dir))
    env["PYTHONPATH"] = os.pathsep.join([repo, sysconfig.get_paths()["purelib"]])
    # -S: no site hooks (an editable install's finder would import pathlib/re itself)
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    rc, modules = json.loads(result.stdout.strip().splitlines()[-1])
    return rc, modules


def test_send_path_imports_nothing_heavy(conf_dir: Path, key_file: Path) -> None:
    rx = Receiver("127.0.0.1", FIXTURE_KEY)
    try:
        rc, modules = _modules_after(["send", "-a", rx.address, "-k", str(key_file)], conf_dir)
        assert rc == 0
        assert rx.receive_data().counter > 0  # it really sent
    finally:
        rx.close()
    assert modules == []


@pytest.mark.parametrize(
    "argv", [["send", "--help"], ["--help"], ["-V"], ["nope"], ["send", "--ipv"], ["update"]]
)
def test_no_command_line_imports_click(argv: list[str], conf_dir: Path) -> None:
    rc, modules = _modules_after(argv, conf_dir)
    assert rc in (0, 2)
    assert "click" not in modules


def _client_imports(path: Path) -> set[str]:
    """The ``ruroco.client`` modules ``path`` imports, at any depth of the code (lazy too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n.startswith("ruroco.client.")}
    return found


def test_client_modules_have_no_import_cycle() -> None:
    package = Path(ruroco.__file__).resolve().parent / "client"
    graph = {
        f"ruroco.client.{p.stem}": _client_imports(p)
        for p in package.glob("*.py")
        if p.stem != "__init__"
    }
    graph = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module not in done:
            for dep in sorted(graph[module]):
                visit(dep, (*path, module))
            done.add(module)

    for module in sorted(graph):
        visit(module, ())
    assert "ruroco.client.cli" not in set().union(*graph.values())  # only the entry point
