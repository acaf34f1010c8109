"""Fuzz stage: many shapes of bad datagrams against a live server + commander pair.

"Keep it closed": whatever arrives, nothing but a legitimate knock may ever run a command,
every legitimate knock runs exactly once, neither daemon prints a traceback and the
server's memory stays flat. One process sends everything over one UDP socket and picks
each datagram's source address in 127/8 with ``IP_PKTINFO``:

* fuzz datagrams come from ``FUZZ_SOURCES`` addresses 127.4.x.y in turn, so no source sends
  more than about one datagram per second and the known-key shapes get past the default
  per-source limit (2/s) to decryption and the checks behind it;
* legitimate knocks (``bench.rurocoenv.knock_packet``: fresh counter, strict, no source
  claim) come each from an address 127.3.x.y of their own, interleaved at ``legit_rate``
  (below the default global limit of 100/s). Their command appends ``$RUROCO_IP`` to
  runs.log, so every line names the one knock that caused it.

Every well-formed fuzz packet (truncated, oversized, bit-flipped, far-future, old counter,
wrong version, wrong destination, source mismatch) is encrypted with the real key for the
command ``canary``, whose run log must stay empty. Sending is paced: before every large
datagram and every ``QUEUE_CHECK_EVERY`` datagrams the sender reads the server socket's
receive queue from /proc/net/udp and waits while it holds more than ``QUEUE_LIMIT`` bytes,
so the kernel never has to drop (the socket's drop counter and the server's own
``received=`` count prove it). The server runs with the default limits; its config is the
one every bench deployment uses.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import socket
import struct
import sys
import time
from collections import Counter as Tally
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import click

from bench import proc, stats
from bench.flood import source_addresses
from bench.rurocoenv import COMMAND, REPO, Counter, Deployment, knock_packet
from ruroco import protocol
from ruroco.ipaddr import parse_ip
from ruroco.protocol import KEY_ID_SIZE, MSG_SIZE, U128_MAX

IP_PKTINFO = 8  # <linux/in.h>; the socket module does not export it
LOCAL = parse_ip("127.0.0.1")
CANARY = "canary"
SKEW_NS = 3600 * 10**9  # the server's default max_clock_skew_seconds
LEGIT_OCTET = 3
FUZZ_OCTET = 4
FUZZ_SOURCES = 30_000
MAX_DATAGRAM = 65_000
QUEUE_LIMIT = 128 * 1024  # bytes (kernel truesize) queued at the server before we wait
QUEUE_CHECK_EVERY = 32
QUEUE_WAIT_S = 5.0
RSS_EVERY_S = 0.25
SETTLE_S = 0.5
WAIT_RUNS_S = 15.0
#: "Flat": the server's RSS at the end may exceed its "warm" RSS by this much. Warm = the
#: first sample after a tenth of the datagrams and at least ``WARM_S`` s: by then the
#: per-source table (one entry per source seen in the last second) has its working size.
RSS_SLACK_KB = 4096
WARM_S = 1.5
OUT = Path(__file__).resolve().parent / "out"


def ancillary(addr: str) -> list[tuple[int, int, bytes]]:
    """``sendmsg`` control data that makes the kernel send from ``addr`` (a local address)."""
    info = struct.pack("=I4s4s", 0, socket.inet_aton(addr), bytes(4))
    return [(socket.IPPROTO_IP, IP_PKTINFO, info)]


def udp_socket_state(port: int) -> tuple[int, int] | None:
    """``(rx_queue bytes, drops)`` of the UDP socket bound to 127.0.0.1:``port``, if any."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/udp", encoding="ascii") as fh:
        next(fh)
        for line in fh:
            fields = line.split()
            if fields[1] == want:
                return int(fields[4].split(":")[1], 16), int(fields[12])
    return None


def rss_kb(pid: int) -> int | None:
    """VmRSS of a live process in KiB; None once it has gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            return stats.parse_status_kb(fh.read(), "VmRSS")
    except (FileNotFoundError, ProcessLookupError):
        return None


def config_limits(config: Path) -> dict[str, int]:
    """The rate limits a deployment's server was configured with (per source, global)."""
    text = config.read_text()
    found = {
        key: re.search(rf"^{key} = (\d+)$", text, re.MULTILINE)
        for key in ("max_requests_per_second", "max_requests_per_second_global")
    }
    names = {"max_requests_per_second": "per_source", "max_requests_per_second_global": "global"}
    return {names[key]: int(m.group(1)) for key, m in found.items() if m}


def machine() -> dict[str, Any]:
    """What the figures depend on (``proc.host_facts``) and whether only loopback exists."""
    try:  # make fuzz's `unshare -n` leaves nothing but loopback (/proc/net: this namespace)
        with open("/proc/net/dev", encoding="ascii") as fh:
            interfaces = [ln.split(":", 1)[0].strip() for ln in fh if ":" in ln]
    except OSError:
        interfaces = []
    return proc.host_facts() | {"loopback_only": interfaces == ["lo"]}


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []


class SourcedSender:
    """One unbound UDP socket; each datagram leaves from the address its control data names."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = target[1]
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.queue_waits = 0
        self.queue_wait_s = 0.0
        self.queue_stalls = 0

    def send(self, data: bytes | memoryview, anc: list[tuple[int, int, bytes]]) -> None:
        self.sock.sendmsg([data], anc, 0, self.target)

    def wait_queue(self) -> None:
        """Block (bounded) while the server's receive queue holds more than ``QUEUE_LIMIT``."""
        start = time.monotonic()
        waited = False
        while (state := udp_socket_state(self.port)) is not None and state[0] > QUEUE_LIMIT:
            waited = True
            if time.monotonic() - start > QUEUE_WAIT_S:
                self.queue_stalls += 1
                break
            time.sleep(0.0005)
        if waited:
            self.queue_waits += 1
            self.queue_wait_s += time.monotonic() - start

    def close(self) -> None:
        self.sock.close()


class Knock(NamedTuple):
    ip: str
    counter: int
    packet: bytes


class Knocks:
    """Legitimate knocks, each from its own address 127.3.x.y, and which of them ran.

    ``poll`` reads the new complete lines of the command's run log (one ``RUROCO_IP`` per
    run); ``ran`` counts runs per address, so a repeated run shows up as a count of 2.
    """

    def __init__(self, dep: RunLogDeployment, sender: SourcedSender) -> None:
        self.dep = dep
        self.sender = sender
        self.sources = source_addresses(250 * 256, LEGIT_OCTET)
        self.counter = Counter()
        self.sent: list[Knock] = []
        self.ran: Tally[str] = Tally()
        self.ran_order: list[str] = []
        self.confirmed: list[Knock] = []  # sent by us and seen running: replayable
        self._by_ip: dict[str, Knock] = {}
        self._offset = 0

    def send(self) -> Knock | None:
        """Build and send the next knock (fresh counter); None once every address is used."""
        if len(self.sent) >= len(self.sources):
            return None
        ip = self.sources[len(self.sent)]
        counter = self.counter.next()
        knock = Knock(ip, counter, knock_packet(self.dep.key, counter))
        self.sent.append(knock)
        self._by_ip[ip] = knock
        self.sender.send(knock.packet, ancillary(ip))
        return knock

    def poll(self) -> None:
        try:
            with open(self.dep.runs_log, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            self.ran[line] += 1
            self.ran_order.append(line)
            knock = self._by_ip.get(line)
            if knock is not None and self.ran[line] == 1:
                self.confirmed.append(knock)

    def wait_ran(self, ips: list[str], timeout: float = WAIT_RUNS_S) -> bool:
        """Poll until every address in ``ips`` has run (True) or ``timeout`` passed (False)."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if all(ip in self.ran for ip in ips):
                return True
            if time.monotonic() > deadline or self.dep.crashed():
                return False
            time.sleep(0.01)

    def verdict(self) -> dict[str, Any]:
        """What ran versus what was sent: lost, repeated and unexpected runs."""
        self.poll()
        sent = {k.ip for k in self.sent}
        return {
            "sent": len(self.sent),
            "ran": sum(1 for ip in sent if ip in self.ran),
            "lost": sorted(sent - set(self.ran)),
            "repeated": sorted(ip for ip, n in self.ran.items() if n > 1),
            "unexpected": sorted(ip for ip in self.ran if ip not in sent),
            "run_lines": len(self.ran_order),
        }


class RunLogDeployment(Deployment):
    """A bench deployment whose commands leave one line per run: the ``RUROCO_IP`` it saw.

    ``COMMAND`` (legitimate knocks) appends to runs.log; ``canary``, the command every
    well-formed fuzz packet names, appends to canary.log, which must stay empty.
    """

    def __init__(self, root: Path, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self.runs_log = root / "runs.log"
        self.canary_log = root / "canary.log"
        line = "printf '%s\\n' \"$RUROCO_IP\" >> '{}'"
        self.commands.write_text(
            "[commands]\n"
            f"{COMMAND} = {json.dumps(line.format(self.runs_log))}\n"
            f"{CANARY} = {json.dumps(line.format(self.canary_log))}\n"
        )

    @property
    def blocklist(self) -> Path:
        return self.blocklist_dir / "blocklist.msgpck"

    def spawn_server(self) -> None:
        """Start a server on the same port without waiting for it (restarts after a kill)."""
        env = dict(os.environ, RUROCO_LISTEN_ADDRESS=f"127.0.0.1:{self.port}")
        argv = [*(self.server_cmd or [proc.tool("ruroco-server")]), "-c", str(self.config)]
        self.server = proc.start(argv, self.server_log, env=env, cwd=REPO)

    def tracebacks(self) -> dict[str, int]:
        return {
            p.name: p.read_text(errors="replace").count("Traceback (most recent call last)")
            for p in (self.server_log, self.commander_log)
            if p.exists()
        }

    def commander_runs(self, name: str) -> int:
        """``Running command`` lines the commander logged for the command ``name``."""
        tag = f"Running command ({protocol.command_hash(name)}) "
        return sum(tag in line for line in read_lines(self.commander_log))


class Shapes:
    """Datagram makers by name; each call returns a new datagram of that shape."""

    NOISE = 1 << 20

    def __init__(self, key: protocol.Key, rng: random.Random, knocks: Knocks) -> None:
        self.key = key
        self.rng = rng
        self.knocks = knocks
        self.canary_hash = protocol.command_hash(CANARY)
        self.noise = memoryview(os.urandom(self.NOISE + MAX_DATAGRAM))
        weighted: dict[str, tuple[int, Callable[[], bytes | memoryview]]] = {
            "random_size": (3, self.random_size),
            "random_94": (1, lambda: self._noise(MSG_SIZE)),
            "known_key_garbage": (1, self.known_key_garbage),
            "truncated": (1, lambda: self.canary()[: self.rng.randrange(MSG_SIZE)]),
            "oversized": (1, self.oversized),
            "replayed": (1, self.replayed),
            "far_future": (1, self.far_future),
            "old_counter": (1, self.old_counter),
            "wrong_version": (1, self.wrong_version),
            "wrong_destination": (1, self.wrong_destination),
            "bit_flip": (1, self.bit_flip),
            "strict_source_mismatch": (1, self.strict_mismatch),
        }
        self.names = list(weighted)
        self.table = [(n, make) for n, (w, make) in weighted.items() for _ in range(w)]

    def pick(self) -> tuple[str, Callable[[], bytes | memoryview]]:
        return self.table[int(self.rng.random() * len(self.table))]

    def _noise(self, size: int) -> memoryview:
        start = int(self.rng.random() * self.NOISE)
        return self.noise[start : start + size]

    def canary(
        self,
        counter: int | None = None,
        strict: bool = True,
        src: bytes | None = None,
        dst: bytes = LOCAL,
        version: int | None = None,
    ) -> bytes:
        """A correctly encrypted packet for ``canary`` (fresh counter unless given)."""
        data = protocol.ClientData(
            self.canary_hash, time.time_ns() if counter is None else counter, strict, src, dst
        )
        plaintext = data.encode()
        if version is not None:
            plaintext = bytes((version,)) + plaintext[1:]
        return self.key.encrypt(plaintext)

    def random_ipv4(self) -> bytes:
        while (ip := parse_ip(socket.inet_ntoa(os.urandom(4)))) == LOCAL:
            pass
        return ip

    def random_size(self) -> memoryview:
        """Random bytes, mostly about 94 long, sometimes up to ``MAX_DATAGRAM``."""
        r = self.rng.random()
        if r < 0.7:
            size = max(0, round(self.rng.gauss(MSG_SIZE, 12)))
        elif r < 0.97:
            size = self.rng.randrange(513)
        else:
            size = self.rng.randrange(MAX_DATAGRAM + 1)
        return self._noise(size)

    def known_key_garbage(self) -> bytes:
        return self.key.key_id + bytes(self._noise(MSG_SIZE - KEY_ID_SIZE))

    def oversized(self) -> bytes:
        top = 64 if self.rng.random() < 0.9 else MAX_DATAGRAM - MSG_SIZE
        extra = self.rng.randrange(1, top + 1)
        return self.canary() + bytes(self._noise(extra))

    def replayed(self) -> bytes:
        """A legitimate knock whose command already ran (from another source: no claim)."""
        confirmed = self.knocks.confirmed
        return confirmed[int(self.rng.random() * len(confirmed))].packet

    def far_future(self) -> bytes:
        r = self.rng.random()
        if r < 0.6:
            ahead = SKEW_NS + self.rng.randrange(10**9, 10**18)
            return self.canary(counter=min(time.time_ns() + ahead, U128_MAX))
        if r < 0.9:
            return self.canary(counter=self.rng.randrange(1 << 64, U128_MAX))
        return self.canary(counter=U128_MAX)

    def old_counter(self) -> bytes:
        """A counter at or below the floor (the newest knock that ran), never used before."""
        floor = self.knocks.confirmed[-1].counter  # runs of one command keep their order
        back = 0 if self.rng.random() < 0.1 else self.rng.randrange(1, SKEW_NS)
        return self.canary(counter=max(0, floor - back))

    def wrong_version(self) -> bytes:
        version = self.rng.choice((0, 2, 255, self.rng.randrange(2, 256)))
        return self.canary(version=version)

    def wrong_destination(self) -> bytes:
        if self.rng.random() < 0.5:
            return self.canary(dst=self.random_ipv4())
        return self.canary(dst=os.urandom(16))

    def bit_flip(self) -> bytes:
        packet = bytearray(self.canary())
        for bit in self.rng.sample(range(MSG_SIZE * 8), self.rng.randrange(1, 5)):
            packet[bit // 8] ^= 1 << (bit % 8)
        return bytes(packet)

    def strict_mismatch(self) -> bytes:
        """Strict, claiming a source that is not the sender's (127.4.x.y never is 10/8)."""
        claim = parse_ip(f"10.{self.rng.randrange(256)}.{self.rng.randrange(256)}.1")
        return self.canary(strict=True, src=claim)


def run_fuzz(
    root: Path,
    datagrams: int = 1_000_000,
    legit_rate: float = 40.0,
    max_rate: float = 40_000.0,
    time_limit: float = 600.0,
    seed: int | None = None,
    server_cmd: list[str] | None = None,
) -> dict[str, Any]:
    """Send ``datagrams`` fuzz datagrams with legitimate knocks interleaved; all figures.

    ``server_cmd`` runs another server build (as ``bench.rurocoenv.Deployment`` does).
    """
    seed = random.randrange(1 << 32) if seed is None else seed
    rng = random.Random(seed)
    dep = RunLogDeployment(root, server_cmd=server_cmd)
    sent: Tally[str] = Tally()
    sent_bytes = 0
    rss: list[tuple[float, int]] = []
    rss_warm: int | None = None
    timed_out = False
    state: tuple[int, int] | None = None
    sender = SourcedSender(dep.address)
    try:
        dep.start()
        knocks = Knocks(dep, sender)
        first = knocks.send()
        assert first is not None
        if not knocks.wait_ran([first.ip]):
            raise RuntimeError(f"the first legitimate knock did not run: {dep.crashed()}")
        shapes = Shapes(dep.key, rng, knocks)
        sources = [ancillary(a) for a in source_addresses(FUZZ_SOURCES, FUZZ_OCTET)]
        pid = dep.server.pid
        start_kb = rss_kb(pid)
        t0 = time.monotonic()
        rss.append((0.0, start_kb or 0))
        next_knock = t0 + 1 / legit_rate
        next_poll = t0 + RSS_EVERY_S
        warm_at = datagrams // 10
        deadline = t0 + time_limit
        for i in range(datagrams):
            now = time.monotonic()
            if now >= next_knock:
                knocks.send()
                next_knock = max(next_knock + 1 / legit_rate, now)
            if now >= next_poll:
                if now > deadline:
                    timed_out = True
                    break
                knocks.poll()
                rss.append((now - t0, rss_kb(pid) or 0))
                next_poll = now + RSS_EVERY_S
                if rss_warm is None and i >= warm_at and now - t0 >= WARM_S:
                    rss_warm = rss[-1][1]
            name, make = shapes.pick()
            data = make()
            if len(data) > 1024 or i % QUEUE_CHECK_EVERY == 0:
                sender.wait_queue()
                ahead = i / max_rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            sender.send(data, sources[i % FUZZ_SOURCES])
            sent[name] += 1
            sent_bytes += len(data)
        fuzz_seconds = time.monotonic() - t0
        # The last knock is sent after every fuzz datagram: the server handles datagrams in
        # order, so once it ran, any run a fuzz datagram caused has started too.
        last = knocks.send()
        assert last is not None
        knocks.wait_ran([k.ip for k in knocks.sent])
        time.sleep(SETTLE_S)
        end_kb = rss_kb(pid)
        rss.append((time.monotonic() - t0, end_kb or 0))
        state = udp_socket_state(dep.port)
        crashed = dep.crashed()
    finally:
        sender.close()
        log = dep.stop()
    verdict = knocks.verdict()
    total = sum(sent.values())
    summary = stats.parse_summary(log)
    return {
        "datagrams": total,
        "seed": seed,
        "sent_by_shape": {n: sent[n] for n in shapes.names},
        "bytes_sent": sent_bytes,
        "fuzz_seconds": round(fuzz_seconds, 2),
        "rate_per_s": round(total / fuzz_seconds) if fuzz_seconds else None,
        "max_rate": max_rate,
        "fuzz_sources": FUZZ_SOURCES,
        "legit_rate": legit_rate,
        "timed_out": timed_out,
        "legit": verdict,
        "canary_runs": read_lines(dep.canary_log),
        "commander_runs": dep.commander_runs(COMMAND),
        "commander_canary_runs": dep.commander_runs(CANARY),
        "server_summary": summary,
        "datagrams_to_server": total + verdict["sent"],
        "socket_drops": None if state is None else state[1],
        "queue_waits": sender.queue_waits,
        "queue_wait_s": round(sender.queue_wait_s, 2),
        "queue_stalls": sender.queue_stalls,
        "rss_kb": {
            "start": start_kb,
            "warm": rss_warm,
            "peak": max(kb for _, kb in rss),
            "end": end_kb,
            "samples": len(rss),
            "series": [(round(t, 2), kb) for t, kb in rss],
        },
        "tracebacks": dep.tracebacks(),
        "crashed": crashed,
        "limits": config_limits(dep.config),
        "method": {
            "queue_limit": QUEUE_LIMIT,
            "queue_check_every": QUEUE_CHECK_EVERY,
            "queue_wait_s": QUEUE_WAIT_S,
            "rss_every_s": RSS_EVERY_S,
            "warm_s": WARM_S,
            "rss_slack_kb": RSS_SLACK_KB,
        },
    }


def check_fuzz(r: dict[str, Any]) -> list[str]:
    """The pass criteria; an empty list means the run kept everything closed."""
    problems = []
    summary = r["server_summary"] or {}
    legit = r["legit"]
    rss = r["rss_kb"]
    if any(r["tracebacks"].values()):
        problems.append(f"tracebacks: {r['tracebacks']}")
    if r["crashed"] or r["timed_out"]:
        problems.append(f"crashed={r['crashed']} timed_out={r['timed_out']}")
    if r["canary_runs"] or r["commander_canary_runs"]:
        problems.append(f"fuzz packets ran the canary command: {r['canary_runs'][:10]}")
    if legit["lost"] or legit["repeated"] or legit["unexpected"]:
        problems.append(f"legitimate knocks lost/repeated/unexpected: {legit}")
    if r["commander_runs"] != legit["sent"]:
        problems.append(f"commander ran {r['commander_runs']} for {legit['sent']} knocks")
    if summary.get("accepted") != legit["sent"] or summary.get("forwarded") != legit["sent"]:
        problems.append(f"server accepted/forwarded {summary} for {legit['sent']} knocks")
    if summary.get("received") != r["datagrams_to_server"] or r["socket_drops"] != 0:
        problems.append(
            f"server read {summary.get('received')} of {r['datagrams_to_server']} datagrams, "
            f"socket drops {r['socket_drops']}"
        )
    if rss["warm"] is None or rss["end"] is None or rss["end"] > rss["warm"] + RSS_SLACK_KB:
        problems.append(f"server RSS not flat: {rss}")
    return problems


def markdown(r: dict[str, Any]) -> str:
    """The figures as Markdown rows, for bench/RESULTS.md."""
    s = r["server_summary"] or {}
    rss = r["rss_kb"]
    rows = [f"| {n} | {c:,} |" for n, c in r["sent_by_shape"].items()]
    rejected = ", ".join(f"{k[9:]} {v:,}" for k, v in s.items() if k.startswith("rejected_") and v)
    return "\n".join(
        [
            "| shape | datagrams sent |",
            "|---|---:|",
            *rows,
            f"| **total** | **{r['datagrams']:,}** |",
            "",
            f"* {r['datagrams']:,} fuzz datagrams ({r['bytes_sent'] / 1e6:,.1f} MB) in "
            f"{r['fuzz_seconds']} s = {r['rate_per_s']:,}/s; seed {r['seed']}",
            f"* server read {s.get('received', 0):,} of {r['datagrams_to_server']:,} datagrams "
            f"sent; socket drops {r['socket_drops']}; sender waited for the queue "
            f"{r['queue_waits']:,} times ({r['queue_wait_s']} s)",
            f"* rejected by reason: {rejected}",
            f"* legitimate knocks: {r['legit']['sent']:,} sent, {r['legit']['ran']:,} ran, "
            f"lost {len(r['legit']['lost'])}, repeated {len(r['legit']['repeated'])}, "
            f"unexpected runs {len(r['legit']['unexpected'])}; canary runs "
            f"{len(r['canary_runs'])}; server accepted {s.get('accepted')}, "
            f"commander ran {r['commander_runs']}",
            f"* server VmRSS (MiB): start {rss['start'] / 1024:.1f}, warm "
            f"{(rss['warm'] or 0) / 1024:.1f}, peak {rss['peak'] / 1024:.1f}, end "
            f"{(rss['end'] or 0) / 1024:.1f} ({rss['samples']} samples)",
            f"* tracebacks: {r['tracebacks']}",
        ]
    )


@click.command()
@click.option("--datagrams", type=click.IntRange(1000, 10_000_000), default=1_000_000)
@click.option("--legit-rate", type=click.FloatRange(1, 90), default=40.0)
@click.option("--max-rate", type=click.FloatRange(100), default=40_000.0)
@click.option("--time-limit", type=click.FloatRange(10, 3600), default=600.0)
@click.option("--seed", type=int, default=None)
def main(datagrams: int, legit_rate: float, max_rate: float, time_limit: float, seed: int) -> None:
    """Full fuzz run; figures to bench/out/fuzz.json and stdout; exit 1 if a check fails."""
    os.environ.pop("RUROCO_LOG", None)  # debug lines for a million datagrams: no
    run_stage(
        "fuzz",
        lambda work: run_fuzz(work, datagrams, legit_rate, max_rate, time_limit, seed),
        check_fuzz,
        markdown,
    )


def documented_parameters() -> bool:
    """Whether the running click command got its default for every parameter but the seed
    (only such runs may replace the figures in bench/RESULTS.md, as for ``make bench``)."""
    ctx = click.get_current_context(silent=True)
    return ctx is None or all(
        ctx.params[p.name] == p.default for p in ctx.command.params if p.name != "seed"
    )


def run_stage(
    name: str,
    run: Callable[[Path], dict[str, Any]],
    check: Callable[[dict[str, Any]], list[str]],
    render: Callable[[dict[str, Any]], str],
) -> None:
    """Run one stage in bench/out/work-<name>, write bench/out/<name>.json, print the figures
    and exit 1 if a check failed (the command line of bench.fuzz and bench.crash).

    ``make fuzz`` then renders both JSON files into bench/RESULTS.md
    (``python -m bench.report --fuzz-section``)."""
    proc.install_cleanup()
    work = OUT / f"work-{name}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.gmtime()
    t0 = time.monotonic()
    host = machine()
    result = run(work)
    result["problems"] = check(result)
    result["started"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", started)
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["wall_seconds"] = round(time.monotonic() - t0, 1)
    result["machine"] = host
    result["argv"] = sys.argv[1:]
    result["documented"] = documented_parameters()
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (work / "bench.key").unlink(missing_ok=True)  # a throw-away secret, still a secret
    sys.stdout.write(render(result) + "\n")
    sys.stdout.write(f"{name} problems: {result['problems'] or 'none'}\n")
    sys.exit(1 if result["problems"] else 0)


if __name__ == "__main__":
    main()
