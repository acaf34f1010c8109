# Copyright: ruroco contributors
# MIT License (see LICENSE or https://opensource.org/license/mit)
"""Controller side of ``ruroco.ruroco.ruroco_send``.

The packet is built by the ruroco package itself (``ruroco.client.sender``), never by a copy of
the protocol here, so the collection cannot drift from the client. All work happens on the
controller: the target is only the thing being knocked and, with ``wait_for``, polled over TCP.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import socket
import sys
import time
from pathlib import Path

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.parsing.vault import is_encrypted_file
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

try:
    from ruroco.client.address import DEFAULT_PORT, ensure_port
    from ruroco.client.options import MAX_SECONDS, MIN_INTERVAL  # as connect's options
    from ruroco.client import sender as _sender
    from ruroco.client.sender import SendRequest, send
    from ruroco.errors import RurocoError, error_chain, qpath
    from ruroco.ipaddr import parse_ip
except ImportError as exc:
    RUROCO_IMPORT_ERROR: ImportError | None = exc
else:
    RUROCO_IMPORT_ERROR = None
    # Ansible's strategy imports this module in the controller's main process before it forks
    # a worker per host and task: a knock's one-time set-up (OpenSSL's first cipher, ~1 ms)
    # happens here, once, and every worker inherits it instead of paying it inside its knock.
    # An older installed package without it still knocks, only slower.
    getattr(_sender, "warm_up", lambda: None)()

display = Display()

POLL_PAUSE = 0.2  # seconds between TCP connect attempts while waiting for the port
LAST_TRY = 0.2  # connect timeout of the one try a wait_for with no time left still makes
# A vaulted 64 KiB key file (the client's limit for a key file) is about 2.3 times as large.
MAX_VAULTED_KEY_FILE = 1 << 20

ARGUMENT_SPEC = dict(
    command=dict(type="str", default="default"),
    address=dict(type="str"),
    port=dict(type="int", default=80),
    key_file=dict(type="path"),
    key=dict(type="str", no_log=True),
    permissive=dict(type="bool", default=False),
    ip=dict(type="str"),
    ipv4=dict(type="bool", default=False),
    ipv6=dict(type="bool", default=False),
    conf_dir=dict(type="path"),
    send_delay_ms=dict(type="int", default=50),
    lock_timeout=dict(type="float", default=30),
    protocol=dict(type="int", default=1, choices=[0, 1]),
    wait_for=dict(
        type="dict",
        options=dict(
            port=dict(type="int", required=True),
            host=dict(type="str"),
            timeout=dict(type="float", default=30),
            interval=dict(type="float", default=2),
        ),
    ),
)


def install_hint() -> str:
    """How to install the package: from the wheel that the collection tarball carries."""
    files = Path(__file__).resolve().parents[2] / "roles" / "ruroco_venv" / "files"
    wheels = sorted(files.glob("ruroco-*-py3-none-any.whl"))
    if wheels:
        return f"{shlex.quote(sys.executable)} -m pip install {shlex.quote(str(wheels[-1]))}"
    return (
        "this copy of the collection carries no ruroco wheel (a source checkout): install the "
        "package from that checkout, or use the collection tarball built by `make dist`"
    )


def destination(address: str, port: int) -> str:
    """The address as the client reads it (``ruroco.client.address.ensure_port``), with
    ``port`` unless it names one; ``RurocoError`` for an address the client would refuse."""
    normalized = ensure_port(address)
    if normalized == address:  # it has a port of its own
        return address
    # ensure_port added ":<DEFAULT_PORT>" (and brackets for IPv6): use the port option instead
    return f"{normalized[: -len(str(DEFAULT_PORT))]}{port}"


def host_of(target: str) -> str:
    """The host part of a ``destination`` result (brackets of IPv6 removed)."""
    host = target.rpartition(":")[0]
    return host[1:-1] if host.startswith("[") else host


def options_error(args: dict) -> str | None:
    """Why an option cannot be used as given, or None: in the module's own option names (the
    client's messages name its CLI flags), and also for values the client would take silently
    as something else (a negative pause as none). Checked before the first knock."""
    if not 1 <= args["port"] <= 65535:
        return f"port must be a UDP port, 1-65535, not {args['port']}"
    if args["ip"] is not None:
        try:
            parse_ip(args["ip"])
        except ValueError as exc:
            return f"Invalid ip value {qpath(args['ip'])}: {exc}"
    if args["send_delay_ms"] < 0:
        return f"send_delay_ms must be 0 or more, not {args['send_delay_ms']}"
    if args["lock_timeout"] < 0:
        return f"lock_timeout must be 0 or more seconds, not {args['lock_timeout']:g}"
    return None


def wait_for_error(wait: dict) -> str | None:
    """Why ``wait_for`` cannot be used as given, or None: checked before the first knock."""
    if not 1 <= wait["port"] <= 65535:
        return f"wait_for.port must be a TCP port, 1-65535, not {wait['port']}"
    if not MIN_INTERVAL <= wait["interval"] <= MAX_SECONDS:
        return (
            f"wait_for.interval must be {MIN_INTERVAL:g}-{MAX_SECONDS:g} seconds, not "
            f"{wait['interval']}: it is the time between knocks, and knocking more often only "
            "meets the server's per-source rate limit (2 a second by default; fail2ban counts "
            "its refusals)"
        )
    if not 0 <= wait["timeout"] <= MAX_SECONDS:
        return f"wait_for.timeout must be 0-{MAX_SECONDS:g} seconds, not {wait['timeout']}"
    return None


NO_ANSWER = "no answer"  # every try timed out: SYNs dropped, as a closed grant does


def try_port(host: str, port: int, timeout: float) -> str | None:
    """None if ``host:port`` accepted a TCP connection, else what the try met."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return NO_ANSWER
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: str | None = None, task_vars: dict | None = None) -> dict:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp
        args = self.validate_argument_spec(
            argument_spec=ARGUMENT_SPEC,
            required_one_of=[("key_file", "key")],
            mutually_exclusive=[("key_file", "key")],
        )[1]
        # Before the check-mode return: a dry run must fail where the real run would.
        if RUROCO_IMPORT_ERROR is not None:
            raise AnsibleError(
                "ruroco_send needs the 'ruroco' Python package on the controller, in the Python "
                f"that runs Ansible: {install_hint()} (import failed: {RUROCO_IMPORT_ERROR})"
            ) from RUROCO_IMPORT_ERROR
        problem = options_error(args)
        if problem:
            raise AnsibleActionFail(problem)
        address = args["address"] or self._inventory_address(task_vars)
        try:
            target = destination(address, args["port"])
        except RurocoError as exc:
            raise AnsibleActionFail(": ".join(error_chain(exc))) from None
        wait = args["wait_for"]
        problem = wait_for_error(wait) if wait else None
        if problem:
            raise AnsibleActionFail(problem)
        key_file, key = self._key_source(args["key_file"], args["key"])
        request = SendRequest(
            target,
            key_file=key_file,
            key=key,
            command=args["command"],
            permissive=args["permissive"],
            ip=args["ip"],
            ipv4=args["ipv4"],
            ipv6=args["ipv6"],
            # Plain ints: ansible-core 2.19 tags values read from YAML (an int subclass), and
            # the client takes exactly int for a protocol, as the original's CLI does.
            send_delay_ms=int(args["send_delay_ms"]),
            protocol=int(args["protocol"]),
        )
        result.update(command=args["command"], knocks=0, destinations=[])
        if self._task.check_mode:
            targets = self._check(request)
            result.update(
                changed=True,
                destinations=[dict(destination=t, counter=None, error=None) for t in targets],
            )
            return result

        conf_dir = Path(args["conf_dir"]) if args["conf_dir"] else None
        deadline = time.monotonic() + (wait["timeout"] if wait else 0)
        while True:
            sent = self._knock(request, conf_dir, args["lock_timeout"], task_vars)
            result["destinations"].extend(sent)
            result["knocks"] += 1
            result["changed"] = True
            if result["knocks"] == 1:  # later knocks would only repeat the warning
                for item in sent:
                    if item["error"]:
                        result.setdefault("warnings", []).append(
                            f"Could not send to {item['destination']}: {item['error']}"
                        )
            if not wait:
                return result
            host = wait["host"] or host_of(target)
            last = self._poll(host, wait["port"], min(deadline, time.monotonic() + wait["interval"]))
            if last is None:
                return result
            if time.monotonic() >= deadline:
                result.update(
                    failed=True,
                    msg=(
                        f"Port {wait['port']} on {host} did not accept a TCP connection within "
                        f"{wait['timeout']:g}s after {result['knocks']} knock(s) to {target} "
                        f"(last try: {last}); the ruroco protocol is silent, so it cannot tell "
                        "whether the packets were lost, rejected (key, counter, source IP) or "
                        "the command failed. The server's log says which: `is on blocklist` "
                        "there, for a key new to that server, means run `ruroco-client reseed` "
                        "(with this task's conf_dir)"
                    ),
                )
                return result

    def _inventory_address(self, task_vars: dict) -> str:
        """The host's ansible_host (which may itself be a template), else its inventory name."""
        for name in ("ansible_host", "inventory_hostname"):
            value = task_vars.get(name)
            if value:
                return str(self._templar.template(value))
        return ""

    def _key_file(self, key_file: str | None) -> str | None:
        """Relative key files are found like other play and role files; else left to the sender."""
        if key_file is None or Path(key_file).is_absolute():
            return key_file
        try:
            return self._find_needle("files", key_file)
        except AnsibleError:
            return key_file

    def _key_source(self, key_file: str | None, key: str | None) -> tuple[str | None, str | None]:
        """``(key_file, key)`` for the sender: a key file encrypted with Ansible Vault is
        decrypted as ``copy`` and the ``file`` lookup do, and its text passed as the key; any
        other file is left to the sender, which reads it and reports what is wrong with it."""
        path = self._key_file(key_file)
        if path is None:
            return None, key
        try:
            with open(path, "rb") as fh:
                if not is_encrypted_file(fh):
                    return path, None
            path = os.path.abspath(path)  # the loader would look a relative one up elsewhere
            if os.path.getsize(path) > MAX_VAULTED_KEY_FILE:
                raise AnsibleActionFail(
                    f"Could not read key file {qpath(path)}: larger than "
                    f"{MAX_VAULTED_KEY_FILE} bytes, not a key file"
                )
        except OSError:
            return path, None
        try:
            return None, self._decrypted_text(path)
        except AnsibleError as exc:  # wrong or missing vault password, a damaged file
            reason = f"Could not decrypt key file {qpath(path)}: {exc.message}"
            raise AnsibleActionFail(reason) from None
        except UnicodeDecodeError:
            reason = f"Could not read key file {qpath(path)}: not UTF-8 once decrypted"
            raise AnsibleActionFail(reason) from None

    def _decrypted_text(self, path: str) -> str:
        """The decrypted text, in memory (ansible-core 2.19 and later); before 2.19 through the
        loader's temporary file (mode 0600, removed at once), as ``copy`` does it."""
        read = getattr(self._loader, "get_text_file_contents", None)
        if read is not None:
            return str(read(path))
        real = self._loader.get_real_file(path, decrypt=True)
        try:
            with open(real, "rb") as fh:
                return fh.read().decode("utf-8")
        finally:
            self._loader.cleanup_tmp_file(real)

    @staticmethod
    def _check(request) -> list[str]:
        """Check mode: what the knock would refuse (key, claimed IP, protocol, address), and
        where it would go, without the lock or the counter. An older package without
        ``check`` only has the address checked."""
        check = getattr(_sender, "check", None)
        if check is None:
            return [request.address]
        try:
            return check(request)
        except RurocoError as exc:
            raise AnsibleActionFail(": ".join(error_chain(exc))) from None

    @staticmethod
    def _knock(request, conf_dir: Path | None, lock_timeout: float, task_vars: dict) -> list[dict]:
        """One send; the client's own log lines go to verbose output, not into the play's."""
        lines = io.StringIO()
        try:
            with contextlib.redirect_stdout(lines), contextlib.redirect_stderr(lines):
                sent = send(request, conf_dir=conf_dir, lock_timeout=lock_timeout)
        except RurocoError as exc:
            raise AnsibleActionFail(": ".join(error_chain(exc))) from None
        finally:
            for line in lines.getvalue().splitlines():
                display.vvv(line, host=task_vars.get("inventory_hostname"))
        return [dict(destination=r.destination, counter=r.counter, error=r.error) for r in sent]

    @staticmethod
    def _poll(host: str, port: int, until: float) -> str | None:
        """Try to connect until ``until`` (monotonic), at least once; None as soon as the port
        accepts, else what the last try met."""
        while True:
            left = until - time.monotonic()
            last = try_port(host, port, min(max(left, LAST_TRY), 1.0))
            if last is None or until - time.monotonic() <= 0:
                return last
            time.sleep(min(POLL_PAUSE, max(until - time.monotonic(), 0)))
