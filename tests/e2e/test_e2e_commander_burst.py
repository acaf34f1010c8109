"""Knocks through server and commander: an idle command starts at once, a burst of one command
runs in arrival order, one at a time, while another command is not held up behind it
(docs/performance.md, docs/deviations.md #3)."""

from __future__ import annotations

from e2e_harness import Deployment, DeploymentFactory, wait_for
from tomltext import toml_str

BURST = 30


def test_burst_of_one_command_keeps_order_and_never_overlaps(
    make_deployment: DeploymentFactory,
) -> None:
    probe = "{out}/seq.lock"
    gate = "{out}/gate"
    # mkdir fails when another run of "seq" is still going; the first run waits for the
    # gate, so every later knock arrives while "seq" is busy.
    seq = (
        f"mkdir {probe} || echo OVERLAP >> {{out}}/seq.out; "
        f'case "$RUROCO_IP" in 203.0.113.1) while [ ! -e {gate} ]; do sleep 0.01; done;; '
        f"203.0.113.*[05]) sleep 0.02;; esac; "
        f'printf "%s\\n" "$RUROCO_IP" >> {{out}}/seq.out; rmdir {probe}'
    )
    dep: Deployment = make_deployment({"seq": toml_str(seq)}).start()
    ips = [f"203.0.113.{i}" for i in range(1, BURST + 1)]
    for ip in ips:
        dep.send_raw(dep.packet(cmd="seq", strict=False, src=ip))
    # "default" is idle: it runs while "seq" is blocked behind its first run.
    dep.send_raw(dep.packet(strict=False, src="198.51.100.1"))
    assert dep.wait_runs(1) == ["198.51.100.1"]
    assert dep.runs("seq") == []
    (dep.out / "gate").touch()
    assert dep.wait_runs(BURST, "seq") == ips  # arrival order, no OVERLAP line
    commander = dep.commander
    assert commander is not None
    wait_for(
        lambda: len(commander.find(r"Execution was successful: mkdir")) == BURST,
        15,
        "every run of seq logged",
    )
    assert not commander.find(r"Too many queued")
