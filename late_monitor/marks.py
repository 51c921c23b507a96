"""The quiet marks of a workspace's accounts, kept by a store between polls.

A poll asks for the quiet index (store.quiet_index) and a lazy load for the quiet ids: read
from the database, 50,000 marks cost ~50 ms each time, although a daemon's own connection
wrote every one of them. A store keeps them here instead, valid under the rule of its state
cache: read when stale, brought up to date by its own commits, dropped when another connection
committed. Nothing here does I/O: the store says what it read and what it wrote.

A handle's first read takes only what one poll needs (`IndexRows`: the fingerprint when the
mark counts, and the id; no tuple made per mark) and holds nothing past the poll's commit: a
cron run polls once (50,000 marks: ~145 -> ~110 ms in a run, less collection after it). A
handle that reads again (a daemon's next poll) reads and holds every mark.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, KeysView, Mapping, Sequence
from operator import itemgetter
from typing import cast

from late_monitor.collector import collector_paused
from late_monitor.state import AccountState

Mark = tuple[bytes | None, float]  # (the entry's fingerprint, quiet until: epoch seconds)
MarkRows = Iterable[tuple[str, bytes | None, float]]  # (account id, listed, quiet_until) read
# (listed if the mark lasts beyond the given time, else None; account id): every mark
IndexRows = Sequence[tuple[bytes | None, str]]
_ID = itemgetter(1)


class Marks:
    """One workspace's quiet marks as its store last read or committed them, valid at the
    store's data version `version` only (None: not held). The dict is never handed out:
    what callers get is made fresh from it, so a commit cannot change what they hold."""

    __slots__ = ("_first", "_marks", "_read", "_read_index", "_reread", "_version")

    def __init__(
        self, read: Callable[[], MarkRows], read_index: Callable[[float], IndexRows]
    ) -> None:
        """`read`: every account of the workspace whose quiet_until is not NULL;
        `read_index(after)`: the same marks as `IndexRows`."""
        self._read = read
        self._read_index = read_index
        self._version: int | None = None
        self._marks: dict[str, Mark] = {}
        # the ids of a first read, valid at its version until a commit: (version, ids)
        self._first: tuple[int, dict[str, None]] | None = None
        self._reread = False  # read before: hold every mark from now on

    def _held(self, version: int) -> dict[str, Mark]:
        """The marks at `version`: those held if they are valid at it, else read. `version`
        must be read before the marks are, so that a commit in between leaves them stale,
        not wrong."""
        if self._version != version:
            with collector_paused():  # 50,000 rows and tuples, not a cycle among them
                self._marks = {key: (listed, until) for key, listed, until in self._read()}
            self._version = version
            self._reread = True
        return self._marks

    def index(self, version: int, *, after: float) -> dict[bytes, str]:
        """The accounts marked quiet beyond `after`, by their entry's fingerprint (a new dict)."""
        if not self._reread:
            return self._index_first(version, after)
        return {
            listed: key
            for key, (listed, until) in self._held(version).items()
            if until > after and listed is not None
        }

    def _index_first(self, version: int, after: float) -> dict[bytes, str]:
        """A handle's first read: the index, and every marked id kept for the lazy load of
        the same poll (`_first`), without a tuple made for each mark."""
        with collector_paused():
            rows = self._read_index(after)
            index: dict[bytes | None, str] = dict(rows)
            ids = dict.fromkeys(map(_ID, rows))
            # the rows' 50,000 tuples freed while the collector is paused: each one freed
            # takes one off its count of new objects, which would otherwise call for a pass
            # that walks them all (~17 ms) at the first object made after the block
            del rows
        index.pop(None, None)  # the marks that do not count
        self._first = (version, ids)
        self._reread = True
        return cast("dict[bytes, str]", index)

    def quiet_ids(self, version: int) -> KeysView[str]:
        """Every marked account's id (a lazy load leaves them undecoded): the keys of a dict
        no commit changes, not a set, since a dict of strings is not tracked by the garbage
        collector, which walked a set of 50,000 ids at each of its passes while the poll
        went on."""
        if self._first is not None and self._first[0] == version:
            return self._first[1].keys()
        return dict.fromkeys(self._held(version)).keys()

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
        self._first = None  # what a first read held is for its poll only
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
        self._first = None
