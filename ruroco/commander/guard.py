"""The commander's side of grants: apply the table, open and close, keep the guard in place.

* ``apply`` at start: one transaction (``nft.apply_commands``) that keeps live grants; if
  nftables refuses it (the table was changed into something it cannot bend back), one
  transaction that rebuilds the table (``nft.replace_commands``). Failing both, the commander
  does not start.
* ``update`` on a reload (SIGHUP): the same transaction for the new grants; failing, the
  reload keeps the running configuration (docs/grants.md, "Changing grants").
* ``open``/``close`` run from the dispatcher, one nft transaction each.
* ``watch``: a thread subscribed to the kernel's nftables change notifications (netlink group
  ``NFNLGRP_NFTABLES``); after any change other than set elements it lists the table and
  re-applies it if it is no longer ours. ``flush ruleset`` (Debian's ``nftables.conf`` starts
  with one) therefore brings the guard back within milliseconds. It also looks every
  ``CHECK_INTERVAL_SEC`` in case a notification was lost. Why: docs/grants.md, "When the
  table disappears".
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import threading
import time
from typing import Any

from ruroco import log
from ruroco.commander import nft, tablelock
from ruroco.commander.grants import Action, Grant, GrantAction
from ruroco.errors import RurocoError
from ruroco.ipaddr import ip_text
from ruroco.lock import InstanceLock

# linux/netlink.h, linux/netfilter/nfnetlink.h, linux/netfilter/nf_tables.h
NETLINK_NETFILTER = 12
NFNLGRP_NFTABLES = 7
NFNL_SUBSYS_NFTABLES = 10
# Element changes and the end-of-transaction message come with every open and close; they
# never remove the guard, so they do not start a check.
_QUIET = frozenset({12, 14, 15})  # NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM, NFT_MSG_NEWGEN
_NLMSG = struct.Struct("=IHHII")
CHECK_INTERVAL_SEC = 10.0
# Notifications of one transaction arrive together; wait this long for the rest of them.
SETTLE_SEC = 0.02


def _relevant(data: bytes) -> bool:
    """Whether a batch of netlink messages holds a change of a table, chain, rule or set."""
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length, msg_type, _flags, _seq, _pid = _NLMSG.unpack_from(data, offset)
        if msg_type >> 8 == NFNL_SUBSYS_NFTABLES and msg_type & 0xFF not in _QUIET:
            return True
        if length < _NLMSG.size:
            return True  # malformed: look rather than guess
        offset += (length + 3) & ~3
    return False


class WatcherError(RurocoError):
    """The watcher's thread could not start: ``stop`` still gives everything back."""


class GrantKeeper:
    def __init__(
        self,
        grants: tuple[Grant, ...],
        runner: nft.Nft,
        holder: str = "",
        lock_dir: str = tablelock.LOCK_DIR,
    ) -> None:
        self.grants = grants
        self.nft = runner
        self._holder = holder  # the commander's socket_dir, noted in the table lock
        self._lock_dir = lock_dir
        self._claim: InstanceLock | None = None  # this namespace's table is ours while held
        self._lock = threading.Lock()  # one apply at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._events: socket.socket | None = None

    # -- the table ----------------------------------------------------------------------------

    def apply(self) -> int:
        """Make ``inet ruroco`` the wanted table; returns how many live grants it kept.
        ``TableBusy`` (nothing touched) if another commander manages it (``tablelock``)."""
        with self._lock:
            claimed = self._claim is None
            if claimed:
                self._claim = tablelock.claim(self._holder, self._lock_dir)
            try:
                return self._apply(self.grants, self.nft.listing()[0])
            except BaseException:
                if claimed:  # nothing applied: the table is not ours to keep
                    self._release_claim()
                raise

    def _release_claim(self) -> None:
        if self._claim is not None:
            self._claim.release()
            self._claim = None

    def update(self, grants: tuple[Grant, ...]) -> int:
        """Reload (SIGHUP): make the table what ``grants`` want, in one transaction as at
        start, and keep them for the watcher and later repairs; returns the live grants kept.

        Live elements of kept grants stay, the sets and rules of removed grants go; with no
        grants left the table is deleted. Under the same lock as ``repair``, so the watcher
        never restores the previous table in between. If nftables refuses, the table and
        ``self.grants`` stay as they were and ``NftError`` is raised.
        """
        with self._lock:
            current, unreadable = self.nft.listing()
            if not grants:
                if current is not None or unreadable:
                    self.nft.run([{"delete": {"table": {"family": nft.FAMILY, "name": nft.TABLE}}}])
                self.grants = ()
                return 0
            kept = self._apply(grants, current)
            self.grants = grants
            return kept

    def _apply(self, grants: tuple[Grant, ...], current: list[dict[str, Any]] | None) -> int:
        """``apply`` with the lock held and the table listed once."""
        try:
            self.nft.run(nft.apply_commands(grants, current))
        except nft.NftError as first:
            try:
                self.nft.run(nft.replace_commands(grants))
            except nft.NftError as exc:
                raise nft.NftError(
                    f"Could not apply table {nft.FAMILY} {nft.TABLE}: {exc}"
                ) from None
            log.error(
                f"Grants: rebuilt table {nft.FAMILY} {nft.TABLE}, its live grants are "
                f"gone (updating it in place failed: {first})"
            )
            return 0
        names = {grant.name for grant in grants}
        return sum(1 for live in nft.live_grants(current) if live.grant in names)

    def repair(self) -> bool:
        """Re-apply if the table is not ours any more; True if it did (one log line).

        Checks and applies under the lock, so a reload's ``update`` is either wholly before
        (the check sees the new table) or wholly after. With no grants (a reload removed them
        all) there is nothing to keep in place.
        """
        try:
            with self._lock:
                if not self.grants:
                    return False
                current, unreadable = self.nft.listing()
                why = unreadable or nft.problem(self.grants, current)
                if why is None:
                    return False
                kept = self._apply(self.grants, current)
        except nft.NftError as exc:
            log.error(f"Grants: could not check or restore the guard: {exc}")
            return False
        log.info(f"Grants: guard restored ({why}); {kept} live grant(s) kept")
        return True

    def describe(self) -> str:
        return "; ".join(f"{g.name}: {g.ports_text()} for {g.timeout_sec}s" for g in self.grants)

    # -- open and close -----------------------------------------------------------------------

    def act(self, action: GrantAction, ip: bytes) -> None:
        """Run ``open_NAME`` or ``close_NAME`` for ``ip``; outcome is one log line."""
        if action.action is Action.OPEN:
            self.open(action.grant, ip)
        else:
            self.close(action.grant, ip)

    def open(self, grant: Grant, ip: bytes) -> str:
        """Add ``ip`` with the full timeout, or reset the timeout of a live grant.

        ``create`` (fails if ``ip`` is in the set) opens a fresh grant in one nft call, the
        common case. If it fails, delete-then-add in one transaction resets the timeout of the
        live element (never a duplicate). If that fails too (the element expired in between,
        or the table is gone), the table is checked and re-applied if needed, and
        add-delete-add, which cannot fail on a missing or present element, opens it.
        """
        where = f"grant {grant.name} for {ip_text(ip)}"
        fresh = nft.element("add", grant, ip, grant.timeout_sec)
        try:
            self.nft.run([nft.element("create", grant, ip, grant.timeout_sec)])
            log.info(f"Opened {where} for {grant.timeout_sec}s ({grant.ports_text()})")
            return "opened"
        except nft.NftError:
            pass
        try:
            self.nft.run([nft.element("delete", grant, ip), fresh])
            log.info(f"Extended {where} to {grant.timeout_sec}s ({grant.ports_text()})")
            return "extended"
        except nft.NftError:
            pass
        try:
            self.repair()
            self.nft.run([nft.element("add", grant, ip), nft.element("delete", grant, ip), fresh])
        except nft.NftError as exc:
            log.error(f"Could not open {where}: {exc}")
            return "failed"
        log.info(f"Opened {where} for {grant.timeout_sec}s ({grant.ports_text()})")
        return "opened"

    def close(self, grant: Grant, ip: bytes) -> str:
        where = f"grant {grant.name} for {ip_text(ip)}"
        try:
            self.nft.run([nft.element("delete", grant, ip)])
            log.info(f"Closed {where}")
            return "closed"
        except nft.NftError:
            pass
        try:  # nothing to delete, or no table: make sure, and say which
            self.nft.run([nft.element("add", grant, ip), nft.element("delete", grant, ip)])
        except nft.NftError as exc:
            log.error(f"Could not close {where}: {exc}")
            return "failed"
        log.info(f"Closed {where} (it had no live grant)")
        return "not open"

    # -- keeping the guard --------------------------------------------------------------------

    def watch(self) -> None:
        """Start the watcher thread (subscribe first, so no change after ``apply`` is missed)."""
        try:
            events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            events.bind((0, 1 << (NFNLGRP_NFTABLES - 1)))
        except OSError as exc:
            log.error(
                f"Grants: no nftables change notifications ({exc.strerror}); checking the "
                f"guard every {CHECK_INTERVAL_SEC:g}s only"
            )
            events = None
        self._events = events
        self._thread = threading.Thread(target=self._loop, name="ruroco-guard", daemon=True)
        try:
            self._thread.start()
        except RuntimeError as exc:  # a task limit, such as the unit's TasksMax=
            raise WatcherError(f"could not start the watcher of the guard ({exc})") from None
        self.repair()  # anything that changed between apply and subscribing

    def stop(self) -> None:
        """End the watcher and give the table back to whichever commander claims it next."""
        self._stop.set()
        if self._thread is not None:
            if self._thread.ident is not None:  # started: a failed start leaves nothing to join
                self._thread.join(timeout=5)
            self._thread = None
        if self._events is not None:
            self._events.close()
            self._events = None
        self._release_claim()

    def _loop(self) -> None:
        next_check = time.monotonic() + CHECK_INTERVAL_SEC
        events = self._events
        while not self._stop.is_set():
            wait = max(0.0, min(next_check - time.monotonic(), 0.5))
            changed = False
            if events is not None:
                changed = self._drain(events, wait)
            else:
                self._stop.wait(wait)
            if self._stop.is_set():
                return
            if changed or time.monotonic() >= next_check:
                if changed and events is not None:
                    time.sleep(SETTLE_SEC)
                    self._drain(events, 0.0)
                self.repair()
                next_check = time.monotonic() + CHECK_INTERVAL_SEC

    @staticmethod
    def _drain(events: socket.socket, wait: float) -> bool:
        """Read what arrived within ``wait``; True if some of it was a relevant change."""
        changed = False
        timeout = wait
        while True:
            try:
                ready, _, _ = select.select([events], [], [], timeout)
            except (OSError, ValueError):
                return changed
            if not ready:
                return changed
            timeout = 0.0
            try:
                data = events.recv(65536)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # notifications were lost: look
                    changed = True
                    continue
                time.sleep(0.1)  # an unexpected error must not make the loop spin
                return changed
            changed = changed or _relevant(data)
