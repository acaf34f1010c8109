"""Wall time of one ``ruroco-client send`` process, measured from the bench (fork to exit).

hyperfine is not installed here and not needed: ``perf_counter`` around ``subprocess.run``
includes the same fork/exec/exit cost. One untimed run first, so that the counter file
exists; the timed runs are then each a fresh process.

The figure that matters is what an operator gets from ``pip install ruroco``: a regular,
byte-compiled install. The development venv is an editable install (setuptools' import hook
costs ~17 ms per start) and may run with PYTHONDONTWRITEBYTECODE, so the bench builds the
wheel, installs it into a venv of its own under ``bench/out`` and measures that console script.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench import proc, stats
from ruroco import protocol


def time_runs(argv: list[str], runs: int, env: dict[str, str], timeout: float = 10.0) -> dict:
    """Median/min/max wall time in ms of ``runs`` sequential runs of ``argv``; all must succeed."""
    times: list[float] = []
    failures = 0
    subprocess.run(argv, env=env, capture_output=True, timeout=timeout, check=False)
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, timeout=timeout, check=False)
        elapsed = (time.perf_counter() - t0) * 1000
        if done.returncode == 0:
            times.append(elapsed)
        else:
            failures += 1
    out: dict = {"runs": runs, "ok": len(times), "failures": failures}
    if times:
        out.update(
            median_ms=stats.median(times), min_ms=min(times), max_ms=max(times), all_ms=times
        )
    return out


def installed_client(out_dir: Path) -> str:
    """``ruroco-client`` from a regular wheel install of this checkout in a venv of its own."""
    repo = Path(__file__).resolve().parent.parent
    venv = out_dir / "client-venv"
    wheels = out_dir / "client-wheel"
    if venv.exists():
        subprocess.run(["rm", "-rf", str(venv), str(wheels)], check=True)
    quiet = {"capture_output": True, "check": True, "timeout": 600}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], **quiet)
    env = dict(os.environ, PYTHON_FOR_WHEEL=sys.executable)
    subprocess.run([str(repo / "scripts" / "build-wheel.sh"), str(wheels)], env=env, **quiet)
    wheel = next(wheels.glob("ruroco-*.whl"))
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], **quiet)
    subprocess.run([str(venv / "bin" / "python"), "-m", "compileall", "-q", str(venv)], **quiet)
    return str(venv / "bin" / "ruroco-client")


def run_client(root: Path, port: int, runs: int = 30) -> dict:
    """``send`` to a loopback port (a server need not listen: UDP sends do not wait)."""
    root.mkdir(parents=True, exist_ok=True)
    key_file = root / "client.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(protocol.generate_key())
    env = dict(os.environ, RUROCO_CONF_DIR=str(root / "conf"))
    args = ["send", "-a", f"127.0.0.1:{port}", "-k", str(key_file)]
    client = installed_client(root)
    result = time_runs([client, *args], runs, env)
    result["dev_venv"] = time_runs([proc.tool("ruroco-client"), *args], runs, env)
    # What ruroco.protocol's private imports save: the same send started through ``python -c``
    # once as it is and once with the public modules (AESGCMSIV's aead module, hashlib) loaded
    # first, which is what using the public API instead would cost at start-up.
    python = str(Path(client).with_name("python"))
    result["via_python_c"] = time_runs([python, "-c", _RUN_CLIENT, *args], runs, env)
    result["public_imports"] = time_runs(
        [python, "-c", _PUBLIC_FIRST + _RUN_CLIENT, *args], runs, env
    )
    return result


_RUN_CLIENT = (
    "import sys; sys.argv[0] = 'ruroco-client'; from ruroco.client.cli import main; main()"
)
_PUBLIC_FIRST = "import cryptography.hazmat.primitives.ciphers.aead, hashlib; hashlib.blake2b; "
