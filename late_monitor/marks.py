"""The quiet marks of a workspace's accounts, kept by a store between polls.

A poll asks for the quiet index (store.quiet_index) and a lazy load for the quiet ids: read
from the database, 50,000 marks cost ~50 ms each time, although a daemon's own connection
wrote every one of them. A store keeps them here instead, valid under the rule of its state
cache: read when stale, brought up to date by its own commits, dropped when another connection
committed. Nothing here does I/O: the store says what it read and what it wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, KeysView, Mapping, Sequence

from late_monitor.collector import collector_paused
from late_monitor.state import AccountState

Mark = tuple[bytes | None, float]  # (the entry's fingerprint, quiet until: epoch seconds)
MarkRows = Iterable[tuple[str, bytes | None, float]]  # (account id, listed, quiet_until) read


class Marks:
    """One workspace's quiet marks as its store last read or committed them, valid at the
    store's data version `version` only (None: not held). The dict is never handed out:
    what callers get is made fresh from it, so a commit cannot change what they hold."""

    __slots__ = ("_marks", "_version")

    def __init__(self) -> None:
        self._version: int | None = None
        self._marks: dict[str, Mark] = {}

    def _held(self, version: int, read: Callable[[], MarkRows]) -> dict[str, Mark]:
        """The marks at `version`: those held if they are valid at it, else `read` (every
        account of the workspace whose quiet_until is not NULL). `version` must be read
        before `read` runs, so that a commit in between leaves the marks stale, not wrong."""
        if self._version != version:
            with collector_paused():  # 50,000 rows and tuples, not a cycle among them
                self._marks = {key: (listed, until) for key, listed, until in read()}
            self._version = version
        return self._marks

    def index(
        self, version: int, read: Callable[[], MarkRows], *, after: float
    ) -> dict[bytes, str]:
        """The accounts marked quiet beyond `after`, by their entry's fingerprint (a new dict)."""
        return {
            listed: key
            for key, (listed, until) in self._held(version, read).items()
            if until > after and listed is not None
        }

    def quiet_ids(self, version: int, read: Callable[[], MarkRows]) -> KeysView[str]:
        """Every marked account's id (a lazy load leaves them undecoded): the keys of a new
        dict, not a set, since a dict of strings is not tracked by the garbage collector,
        which walked a set of 50,000 ids at each of its passes while the poll went on."""
        return dict.fromkeys(self._held(version, read)).keys()

    def committed(
        self,
        before: int | None,
        after: int,
        states: Mapping[str, AccountState],
        changed: Sequence[str],
        removed: Iterable[str],
    ) -> None:
        """The store committed `changed` (their marks as `states` holds them) and `removed`
        at `after`, over version `before` (None: unknown). Held marks valid at `before` are
        brought up to date; any others are dropped (read again when next wanted)."""
        if self._version is None or self._version != before:
            self.drop()
            return
        marks = self._marks
        for key in changed:
            state = states[key]
            if state.quiet_until is None:
                marks.pop(key, None)
            else:
                marks[key] = (state.listed, state.quiet_until)
        for key in removed:
            marks.pop(key, None)
        self._version = after

    def drop(self) -> None:
        self._version = None
        self._marks = {}
