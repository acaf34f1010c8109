"""Crash test: ``kill -9`` the server again and again while valid knocks arrive, then replay.

Knocks (``bench.fuzz.Knocks``: fresh counter, each from its own address 127.3.x.y, command
appends ``$RUROCO_IP`` to runs.log) arrive at ``knock_rate`` the whole time. The server is
SIGKILLed at a random moment - about a quarter of the kills land while the restarted server
is still starting up (loading and rewriting its blocklist), the rest 50-600 ms after it
bound its port - and restarted at once on the same port. After every kill the blocklist
file must decode (``ruroco.server.blocklist.read_file``); its floor is recorded, and so are
leftover ``blocklist.msgpck.*.tmp`` files (counted, not judged). When the kills are done
and the knocks have stopped, the server is killed once more and restarted, so it knows only
what it persisted; then EVERY packet ever sent is sent again, each from its original
address, to that running server, followed by one fresh sentinel knock.

Pass criteria (``check_crash``): the blocklist always decoded and its floor never went
down; every knock that ran was one we sent, ran once, and had been logged as accepted
("Valid data") by the server; every knock the server logged as handed to the commander ran
exactly once; the floor read after a kill covers every knock that server instance handed
over (persist before forward); the replay made the server accept nothing but the sentinel
and ran nothing else; no traceback in either log.

The global limit is raised to ``GLOBAL_LIMIT``: knocks arrive at ``knock_rate`` (100/s by
default, the default global limit itself), and a refused knock would only blur the figures.
"""

from __future__ import annotations

import itertools
import random
import re
import signal
import time
from collections import Counter as Tally
from pathlib import Path
from typing import Any

import click

from bench import proc, stats
from bench.fuzz import (
    QUEUE_CHECK_EVERY,
    Knock,
    Knocks,
    RunLogDeployment,
    SourcedSender,
    ancillary,
    config_limits,
    run_stage,
    udp_socket_state,
)
from bench.rurocoenv import COMMAND
from ruroco.server.blocklist import BlocklistError, read_file

GLOBAL_LIMIT = 1000
STARTUP_KILL_SHARE = 0.25
TAIL_S = 1.0  # knocks keep coming this long after the last restart
START_TIMEOUT_S = 20.0
QUIET = "quiet, before the replay"
VALID = re.compile(r"Valid data for key .* counter (\d+)\|\S+ with (\S+)$")
FORWARDED = "Successfully sent data to commander"
FORWARD_FAILED = ("Dropped request for ", "Could not connect to socket", "Could not send data")
# (a "Dropped request ... counter N not used" line is a refusal before acceptance: no outcome)


def parse_handoffs(text: str) -> list[tuple[int, str, bool | None]]:
    """``(counter, ip, forwarded)`` per accepted knock in one server instance's log.

    Hand-off outcomes are logged in acceptance order (a FIFO, inline or via a forwarder
    thread), so the n-th outcome line belongs to the n-th accepted knock; ``None`` = no
    outcome logged (the instance was killed first).
    """
    accepted: list[tuple[int, str]] = []
    outcomes: list[bool] = []
    for line in text.splitlines():
        m = VALID.search(line)
        if m:
            accepted.append((int(m.group(1)), m.group(2)))
        elif FORWARDED in line:
            outcomes.append(True)
        elif any(f in line for f in FORWARD_FAILED) and "not used" not in line:
            outcomes.append(False)
    return [
        (counter, ip, outcomes[i] if i < len(outcomes) else None)
        for i, (counter, ip) in enumerate(accepted)
    ]


def by_instance(raw: bytes, ends: list[int]) -> list[list[tuple[int, str, bool | None]]]:
    """``parse_handoffs`` per server instance; ``ends`` = log sizes right after each kill."""
    bounds = [0, *ends, len(raw)]
    return [
        parse_handoffs(raw[a:b].decode(errors="replace")) for a, b in itertools.pairwise(bounds)
    ]


def _kill(dep: RunLogDeployment, phase: str) -> dict[str, Any]:
    """SIGKILL the server, reap it, then inspect what it left on disk."""
    assert dep.server is not None
    dep.server.send_signal(signal.SIGKILL)
    dep.server.wait(10)
    proc.stop(dep.server, grace=0)  # already dead: only forgets it
    record: dict[str, Any] = {"phase": phase, "log_end": dep.server_log.stat().st_size}
    try:
        record["floor"] = read_file(dep.blocklist).get(dep.key.key_id)
    except BlocklistError as exc:
        record["decode_error"] = str(exc)
    record["tmp_files"] = len(list(dep.blocklist_dir.glob(f"{dep.blocklist.name}.*.tmp")))
    return record


def _replay(sender: SourcedSender, knocks: list[Knock]) -> None:
    for i, knock in enumerate(knocks):
        if i % QUEUE_CHECK_EVERY == 0:
            sender.wait_queue()
        sender.send(knock.packet, ancillary(knock.ip))


def run_crash(
    root: Path,
    kills: int = 40,
    knock_rate: float = 100.0,
    time_limit: float = 300.0,
    seed: int | None = None,
    server_cmd: list[str] | None = None,
) -> dict[str, Any]:
    """``kills`` SIGKILL/restart cycles under knocks, then the replay; all figures."""
    seed = random.randrange(1 << 32) if seed is None else seed
    rng = random.Random(seed)
    dep = RunLogDeployment(root, global_limit=GLOBAL_LIMIT, server_cmd=server_cmd)
    sender = SourcedSender(dep.address)
    records: list[dict[str, Any]] = []
    timed_out = False
    try:
        dep.start()
        knocks = Knocks(dep, sender)
        t0 = time.monotonic()
        deadline = t0 + time_limit
        next_knock = t0
        bound_at: float | None = t0
        spawned = t0
        startups: list[float] = []
        kill_at: float | None = t0 + rng.uniform(0.05, 0.6)
        tail_end: float | None = None
        while tail_end is None or time.monotonic() < tail_end:
            now = time.monotonic()
            if now > deadline:
                timed_out = True
                break
            if now >= next_knock:
                knocks.send()
                next_knock = max(next_knock + 1 / knock_rate, now)
            if bound_at is None and proc.udp_port_bound(dep.port):
                bound_at = now
                startups.append(now - spawned)
                if len(records) == kills:
                    tail_end = now + TAIL_S
                elif kill_at is None:
                    kill_at = now + rng.uniform(0.05, 0.6)
            if kill_at is not None and now >= kill_at:
                records.append(_kill(dep, "serving" if bound_at is not None else "startup"))
                dep.spawn_server()
                spawned = time.monotonic()
                bound_at = None
                early = len(records) < kills and rng.random() < STARTUP_KILL_SHARE
                # somewhere within a typical start-up (as long as the last one took)
                startup = startups[-1] if startups else 0.2
                kill_at = spawned + rng.uniform(0.0, startup) if early else None
            elif bound_at is None and dep.crashed():
                raise RuntimeError(f"restarted server died: {dep.crashed()}")
            time.sleep(0.001)
        knocks.poll()
        last = knocks.sent[-1]
        last_ran = knocks.wait_ran([last.ip])
        # Everything the server logged as handed over must run: wait (bounded) for it.
        instances = by_instance(dep.server_log.read_bytes(), [r["log_end"] for r in records])
        knocks.wait_ran([ip for inst in instances for _, ip, fwd in inst if fwd])
        # One more kill without traffic: the replay meets a server that knows only what
        # was persisted, not a floor it still holds in memory.
        records.append(_kill(dep, QUIET))
        dep.spawn_server()
        proc.wait_for(lambda: proc.udp_port_bound(dep.port), START_TIMEOUT_S, "server", dep.server)
        runs_before_replay = len(knocks.ran_order)
        mark = dep.server_log.stat().st_size
        replayed = list(knocks.sent)
        t_replay = time.monotonic()
        _replay(sender, replayed)
        sentinel = knocks.send()
        assert sentinel is not None
        sentinel_ran = knocks.wait_ran([sentinel.ip])
        replay_seconds = time.monotonic() - t_replay
        time.sleep(0.5)  # a run a replay caused would have started before the sentinel's
        knocks.poll()
        state = udp_socket_state(dep.port)
        crashed = dep.crashed()
        seconds = time.monotonic() - t0
    finally:
        sender.close()
        log = dep.stop()
    return _analyse(
        dep,
        knocks,
        records,
        log,
        {
            "seed": seed,
            "kills": sum(r["phase"] != QUIET for r in records),
            "kills_planned": kills,
            "knock_rate": knock_rate,
            "global_limit": GLOBAL_LIMIT,
            "timed_out": timed_out,
            "crashed": crashed,
            "seconds": round(seconds, 1),
            "restart_s_median": round(stats.median(startups), 3) if startups else None,
            "last_knock_ran": last_ran,
            "replayed": len(replayed),
            "replay_seconds": round(replay_seconds, 2),
            "sentinel_ran": sentinel_ran,
            "runs_after_replay": knocks.ran_order[runs_before_replay:],
            "replay_mark": mark,
            "sentinel": sentinel.ip,
            "socket_drops": None if state is None else state[1],
            "limits": config_limits(dep.config),
        },
    )


def _analyse(
    dep: RunLogDeployment,
    knocks: Knocks,
    records: list[dict[str, Any]],
    log: str,
    result: dict[str, Any],
) -> dict[str, Any]:
    """Tie the server's log segments (one per instance), floors and runs together."""
    verdict = knocks.verdict()
    raw = dep.server_log.read_bytes()
    handed: list[str] = []
    accepted_ips: set[str] = set()
    not_covered: list[str] = []
    lost_in_crash = 0
    for i, instance in enumerate(by_instance(raw, [r["log_end"] for r in records])):
        floor = records[i].get("floor") if i < len(records) else None
        for counter, ip, fwd in instance:
            accepted_ips.add(ip)
            if fwd:
                handed.append(ip)
                if i < len(records) and (floor is None or counter > floor):
                    not_covered.append(ip)
            elif fwd is None:
                lost_in_crash += 1
    replay_text = raw[result["replay_mark"] :].decode(errors="replace")
    replay_accepts = [ip for _, ip, _ in parse_handoffs(replay_text)]
    floors = [r.get("floor") for r in records]
    summary = stats.parse_summary(log) or {}
    result.update(
        {
            "knocks": verdict,
            "accepted": len(accepted_ips),
            "handed_over": len(handed),
            "handed_over_not_run": sorted({ip for ip in handed if knocks.ran[ip] != 1}),
            "ran_not_accepted": sorted(ip for ip in knocks.ran if ip not in accepted_ips),
            "accepted_not_handed_over": lost_in_crash,
            "floor_not_covering_handover": not_covered,
            "decode_errors": [r["decode_error"] for r in records if "decode_error" in r],
            "floor_went_down": any(
                a is not None and b is not None and b < a for a, b in itertools.pairwise(floors)
            ),
            "kills_during_startup": sum(r["phase"] == "startup" for r in records),
            "per_kill": records,
            "tmp_files_after_kill": Tally(r["tmp_files"] for r in records),
            "replay_accepted": replay_accepts,
            "final_summary": summary,
            "commander_runs": dep.commander_runs(COMMAND),
            "tracebacks": dep.tracebacks(),
        }
    )
    result["tmp_files_after_kill"] = {str(k): v for k, v in result["tmp_files_after_kill"].items()}
    return result


def check_crash(r: dict[str, Any]) -> list[str]:
    """The pass criteria; an empty list means nothing ran twice and nothing was forgotten."""
    problems = []
    knocks = r["knocks"]
    if any(r["tracebacks"].values()):
        problems.append(f"tracebacks: {r['tracebacks']}")
    if r["timed_out"] or r["crashed"] or r["kills"] != r["kills_planned"]:
        problems.append(
            f"timed_out={r['timed_out']} crashed={r['crashed']} kills={r['kills']}"
            f"/{r['kills_planned']}"
        )
    if r["decode_errors"] or r["floor_went_down"]:
        problems.append(f"blocklist: {r['decode_errors']} went_down={r['floor_went_down']}")
    if knocks["repeated"] or knocks["unexpected"] or r["ran_not_accepted"]:
        problems.append(
            f"runs: repeated {knocks['repeated']} unexpected {knocks['unexpected']} "
            f"not accepted {r['ran_not_accepted']}"
        )
    if r["handed_over_not_run"] or r["floor_not_covering_handover"]:
        problems.append(
            f"handed over but not run once: {r['handed_over_not_run']}; "
            f"handed over before persisted: {r['floor_not_covering_handover']}"
        )
    if r["replay_accepted"] != [r["sentinel"]] or r["runs_after_replay"] != [r["sentinel"]]:
        problems.append(
            f"replay: accepted {r['replay_accepted'][:10]}, ran {r['runs_after_replay'][:10]}"
        )
    if not r["last_knock_ran"] or not r["sentinel_ran"]:
        problems.append("the last knock or the sentinel did not run")
    if r["commander_runs"] != knocks["run_lines"]:
        problems.append(f"commander ran {r['commander_runs']}, run log {knocks['run_lines']}")
    return problems


def markdown(r: dict[str, Any]) -> str:
    k = r["knocks"]
    s = r["final_summary"]
    return "\n".join(
        [
            f"* {r['kills']} × `kill -9` of the server ({r['kills_during_startup']} during "
            f"start-up) in {r['seconds']} s while knocks arrived at {r['knock_rate']:g}/s "
            f"(restart to port bound: median {r['restart_s_median']} s); "
            f"seed {r['seed']}",
            f"* knocks: {k['sent']:,} sent, {r['accepted']:,} accepted (logged), "
            f"{r['handed_over']:,} handed to the commander (logged), {k['ran']:,} ran; "
            f"accepted but killed before the hand-off was logged: "
            f"{r['accepted_not_handed_over']}; repeated runs {len(k['repeated'])}, "
            f"unexpected runs {len(k['unexpected'])}, ran without being accepted "
            f"{len(r['ran_not_accepted'])}; handed over but not run exactly once "
            f"{len(r['handed_over_not_run'])}; handed over above the persisted floor "
            f"{len(r['floor_not_covering_handover'])}",
            f"* blocklist after every kill: decode errors {len(r['decode_errors'])}, floor "
            f"went down: {r['floor_went_down']}; `*.tmp` files seen after a kill "
            f"(count: kills) {r['tmp_files_after_kill']}",
            f"* replay of all {r['replayed']:,} packets in {r['replay_seconds']} s + 1 "
            f"sentinel: accepted {len(r['replay_accepted'])} (the sentinel), runs "
            f"{len(r['runs_after_replay'])}; final server: received "
            f"{s.get('received', 0):,}, rejected_replay {s.get('rejected_replay', 0):,}, "
            f"socket drops {r['socket_drops']}",
            f"* tracebacks: {r['tracebacks']}",
        ]
    )


@click.command()
@click.option("--kills", type=click.IntRange(1, 500), default=40)
@click.option("--knock-rate", type=click.FloatRange(1, 500), default=100.0)
@click.option("--time-limit", type=click.FloatRange(10, 1800), default=300.0)
@click.option("--seed", type=int, default=None)
def main(kills: int, knock_rate: float, time_limit: float, seed: int | None) -> None:
    """Full crash run; figures to bench/out/crash.json and stdout; exit 1 if a check fails."""
    run_stage(
        "crash",
        lambda work: run_crash(work, kills, knock_rate, time_limit, seed),
        check_crash,
        markdown,
    )


if __name__ == "__main__":
    main()
