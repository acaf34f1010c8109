"""Floods against the default deployment: the server as the ``ruroco_server`` role sets it up.

``render_role`` renders the role's own templates (config.toml.j2, ruroco.socket.j2) with
``ansible-playbook`` and the role's defaults/main.yml and vars/main.yml, so every setting
comes from the role; only what names this host is overridden (``host_overrides``: the
server's address and port, the directories, the account, and ``allow_non_routable_ips``,
which the commander needs to run a knock from 127.0.0.1). The server then starts as systemd
starts it: ``bench.sdactivate`` opens the socket the rendered unit describes
(``ListenDatagram=[::]:PORT``, ``ReceiveBuffer=``) and hands it over as fd 3.

Shapes (``bench/flood.c``), all from ``SOURCES`` addresses 127.2.x.y spoofed with
``IP_PKTINFO``, at the C sender's full rate unless a rate is given: random 94 bytes; the
real key id + 86 random bytes; 1,000-65,000 random bytes; 0-199 bytes (never 94); the four
in turn. One real ``ruroco-client send`` per second from 127.0.0.1, the first 0.5 s into the
flood (``bench.floodbench.knock_flood``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import cflood, proc
from bench.floodbench import knock_flood
from bench.rurocoenv import REPO, Deployment

ROLE = REPO / "ansible_collections" / "ruroco" / "ruroco" / "roles" / "ruroco_server"
KEEP = REPO / "bench" / "out" / "defaultflood"
SHAPES = cflood.SHAPES
SOURCES = 16_000
#: datagrams/s per shape; 0 = as fast as the C sender goes. The known-key shape runs at the
#: issue's 100,000/s: every one of them reaches the server's Python code (a known key id
#: passes the kernel filter), 29 % of them decryption (two per source and 1.12 s window).
RATES = {"known": 100_000.0}
OCTET = 2
RSS_LIMIT_MB = 100

_PLAY = """\
- hosts: localhost
  connection: local
  gather_facts: false
  vars_files:
    - {role}/defaults/main.yml
    - {role}/vars/main.yml
  tasks:
    - ansible.builtin.template:
        src: {role}/templates/config.toml.j2
        dest: "{{{{ bench_out }}}}/config.toml"
        mode: "0600"
    - ansible.builtin.template:
        src: {role}/templates/ruroco.socket.j2
        dest: "{{{{ bench_out }}}}/ruroco.socket"
        mode: "0644"
"""


def host_overrides(root: Path, port: int) -> dict[str, Any]:
    """Role variables that name this host rather than choose a behaviour."""
    return {
        "ruroco_server_ips": ["127.0.0.1"],
        "ruroco_server_port": port,
        "ruroco_server_config_dir": str(root),
        "__ruroco_server_blocklist_dir": str(root),  # systemd's StateDirectory
        "__ruroco_server_socket_dir": str(root),  # the commander's RuntimeDirectory
        "ruroco_server_user": "root",  # the bench runs both daemons as root
        "ruroco_server_group": "root",
        # Commander only: the knocks come from 127.0.0.1, which it refuses otherwise.
        "ruroco_server_allow_non_routable_ips": True,
    }


def render_role(out: Path, variables: dict[str, Any]) -> dict[str, Path]:
    """Render config.toml and ruroco.socket into ``out`` with the role's defaults and vars,
    ``variables`` on top (extra vars: they win). Returns the two paths."""
    out.mkdir(parents=True, exist_ok=True)
    play = out / "render.yml"
    play.write_text(_PLAY.format(role=ROLE))
    extra = out / "render-vars.json"
    extra.write_text(json.dumps({**variables, "bench_out": str(out)}))
    playbook, env = proc.ansible_playbook(out / "ansible-tmp")
    done = subprocess.run(
        [playbook, "-i", "localhost,", "-e", f"@{extra}", str(play)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"rendering the role failed: {(done.stdout + done.stderr)[-800:]}")
    return {"config": out / "config.toml", "socket_unit": out / "ruroco.socket"}


def default_deployment(root: Path, role_vars: dict[str, Any] | None = None) -> Deployment:
    """A deployment whose config.toml and socket are the role's (``role_vars``: behaviour
    overrides for comparisons, e.g. ``{"ruroco_server_kernel_filter": False}``)."""
    root.mkdir(parents=True, exist_ok=True)
    unit = root / "role" / "ruroco.socket"
    launcher = [sys.executable, "-m", "bench.sdactivate", str(unit)]
    dep = Deployment(root, server_cmd=[*launcher, proc.tool("ruroco-server")])
    rendered = render_role(root / "role", {**host_overrides(root, dep.port), **(role_vars or {})})
    dep.config.write_text(rendered["config"].read_text())
    return dep


def run_default_flood(
    root: Path,
    shape: str,
    *,
    duration: float = 60.0,
    rate: float | None = None,
    role_vars: dict[str, Any] | None = None,
    keep: bool = False,
) -> dict[str, Any]:
    """One shape for ``duration`` s against the default deployment, a knock per second;
    ``keep`` also writes the result to bench/out/defaultflood/ (``make bench`` does)."""
    binary = cflood.build()
    if binary is None:
        raise RuntimeError("the default-deployment floods need a C compiler (bench/flood.c)")
    if rate is None:
        rate = RATES.get(shape, 0.0)
    dep = default_deployment(root, role_vars)
    key_id = dep.key.key_id if shape in ("known", "mix") else None
    flood_argv = cflood.argv(
        binary,
        "127.0.0.1",
        dep.port,
        SOURCES,
        OCTET,
        duration,
        rate,
        key_id,
        shape=shape,
        pktinfo=True,
    )
    # Knocks at 0.5, 1.5, ... s: one per second of the flood, all of them inside it.
    result = knock_flood(dep, flood_argv, root, duration, first_knock_s=0.5)
    out = {
        "shape": shape,
        "sources": SOURCES,
        "target_rate": rate,
        "role_vars": role_vars or {},
        "config": dep.config.read_text(),
        "socket_unit": (root / "role" / "ruroco.socket").read_text(),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        **result,
    }
    if keep:  # bench/out/work is emptied by the next bench start, results.json rewritten
        KEEP.mkdir(parents=True, exist_ok=True)
        (KEEP / f"{shape}-{duration:g}s.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


def check_default_flood(r: dict[str, Any]) -> list[str]:
    """What the issue asks of each shape; empty when it holds."""
    problems = []
    if "error" in r:
        problems.append(str(r["error"]))
    if not r.get("legit_sent") or r.get("legit_ran") != r.get("legit_sent"):
        problems.append(f"legit knocks ran {r.get('legit_ran')} of {r.get('legit_sent')}")
    if r.get("legit_client_failures"):
        problems.append(f"{r['legit_client_failures']} client runs failed")
    rss = r.get("peak_rss_mb")
    if rss is None or rss > RSS_LIMIT_MB:
        problems.append(f"server peak RSS {rss} MB")
    return problems
