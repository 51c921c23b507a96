"""Account states as mappings that decode only what is read.

A process that has not held the states in memory (`run --once` from cron, a daemon's first
poll) would decode every stored state to compare it with a poll in which ~1% of them changed:
1.5-2 s at 50,000 accounts. Instead the store decodes the accounts its last poll could not
call quiet (`AccountState.quiet_until`), and the others when something reads them: the poll's
changed accounts, an ack's, a message's.

- `StoredStates`: what the store holds, the quiet ones fetched on first read;
- `PollStates`: one poll's outcome, the accounts it judged and those it found listed
  unchanged and quiet, which are the stored ones.

Both are plain `Mapping`s (a `dict` serves wherever they do); the functions below are the
ways to change or count them without reading every state.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from late_monitor.state import AccountState

Fetch = Callable[[Sequence[str]], Mapping[str, AccountState]]  # ids -> their stored states


class _Lazy(Mapping[str, AccountState]):
    """What the three mappings share: reading every state (`values()`, `items()`) fetches
    what is not decoded in one go first (`read_all`), not with one query per state."""

    __slots__ = ()

    @abstractmethod
    def read_all(self) -> None:
        """Every state is about to be read."""

    @abstractmethod
    def preload(self, keys: Iterable[str]) -> None:
        """`keys` are about to be read."""

    @abstractmethod
    def unquiet(self) -> Iterable[AccountState]:
        """Every state but those held as quiet, without reading those."""

    def values(self) -> Any:
        self.read_all()
        return super().values()

    def items(self) -> Any:
        self.read_all()
        return super().items()


class _Split(_Lazy):
    """States in two parts: those `here` (a dict, in memory), and the ids `there`, whose
    states are read from elsewhere when asked for; an id in both is the one here."""

    __slots__ = ("_here", "_len", "_there")

    def __init__(self, here: dict[str, AccountState], there: Collection[str]) -> None:
        self._here = here
        self._there = there
        self._len = len(there) + sum(1 for key in here if key not in there)

    def __contains__(self, key: object) -> bool:
        return key in self._here or key in self._there

    def __iter__(self) -> Iterator[str]:
        yield from self._here
        yield from (key for key in self._there if key not in self._here)

    def __len__(self) -> int:
        return self._len

    def unquiet(self) -> Iterable[AccountState]:
        """The states here: those the store did not hold as quiet (decoded up front), or
        those the poll judged."""
        return self._here.values()


class StoredStates(_Split):
    """A workspace's stored states: `decoded` ones, and the `lazy` ids fetched when read."""

    __slots__ = ("_fetch", "_fetched")

    def __init__(
        self, decoded: dict[str, AccountState], lazy: Collection[str], fetch: Fetch
    ) -> None:
        super().__init__(decoded, lazy)
        self._fetch = fetch
        self._fetched: dict[str, AccountState] = {}

    def __getitem__(self, key: str) -> AccountState:
        state = self._here.get(key) or self._fetched.get(key)
        if state is not None:
            return state
        if key not in self._there:
            raise KeyError(key)
        self._fetched.update(self._fetch([key]))
        return self._fetched[key]

    def preload(self, keys: Iterable[str]) -> None:
        """Fetch those of `keys` that are lazy in one go (they are about to be read)."""
        decoded, fetched, lazy = self._here, self._fetched, self._there
        missing = [k for k in keys if k in lazy and k not in decoded and k not in fetched]
        if missing:
            self._fetched.update(self._fetch(missing))

    def absent(self, keys: AbstractSet[str]) -> set[str]:
        """Which of `keys` are not stored (a set difference, not a test per key)."""
        if isinstance(self._there, AbstractSet) and keys <= self._there:
            return set()  # the usual answer, found without building a set
        rest = set(keys).difference(self._there)
        return {key for key in rest if key not in self._here}

    def read_all(self) -> None:
        self.preload(self._there)


class PollStates(_Split):
    """One poll's states: those it `judged`, and the `quiet` accounts (listed unchanged, as
    stored, nothing due), which are read from `stored` when asked for."""

    __slots__ = ("_stored",)

    def __init__(
        self,
        judged: dict[str, AccountState],
        quiet: Collection[str],
        stored: Mapping[str, AccountState],
    ) -> None:
        super().__init__(judged, quiet)
        self._stored = stored

    def __getitem__(self, key: str) -> AccountState:
        state = self._here.get(key)
        if state is not None:
            return state
        if key not in self._there:
            raise KeyError(key)
        return self._stored[key]

    def updated(self, changes: Mapping[str, AccountState]) -> PollStates:
        return PollStates({**self._here, **changes}, self._there, self._stored)

    def preload(self, keys: Iterable[str]) -> None:
        preload(self._stored, [key for key in keys if key not in self._here])

    def read_all(self) -> None:
        read_all(self._stored)


class Overlay(_Lazy):
    """`base` with `changes` laid over it and the `gone` ids taken out, the rest of `base`
    not read."""

    __slots__ = ("_base", "_changes", "_gone", "_len")

    def __init__(
        self,
        base: Mapping[str, AccountState],
        changes: Mapping[str, AccountState],
        gone: frozenset[str] = frozenset(),
        length: int | None = None,
    ) -> None:
        self._base = base
        self._changes = changes
        self._gone = gone
        if length is None:
            added = sum(1 for key in changes if key not in base)
            length = len(base) + added - sum(1 for key in gone if key in base)
        self._len = length

    def __getitem__(self, key: str) -> AccountState:
        state = self._changes.get(key)
        if state is not None:
            return state
        if key in self._gone:
            raise KeyError(key)
        return self._base[key]

    def __contains__(self, key: object) -> bool:
        return key in self._changes or (key not in self._gone and key in self._base)

    def __iter__(self) -> Iterator[str]:
        gone, changes = self._gone, self._changes
        yield from (key for key in self._base if key not in gone)
        yield from (key for key in changes if key not in self._base)

    def __len__(self) -> int:
        return self._len

    def preload(self, keys: Iterable[str]) -> None:
        preload(self._base, [key for key in keys if key not in self._changes])

    def read_all(self) -> None:
        read_all(self._base)

    def updated(self, changes: Mapping[str, AccountState], gone: Iterable[str] = ()) -> Overlay:
        """This overlay with more `changes` and `gone` ids, in time and space for what they
        hold, not for what this one holds: a daemon's store lays every commit over the last
        (after a first poll, all 50,000 states are changes), two commits a poll."""
        now_gone = frozenset(gone)
        merged = {**self._changes, **changes}  # copied in C, not visited in Python
        for key in now_gone:
            merged.pop(key, None)
        added = sum(1 for key in changes if key not in now_gone and key not in self)
        length = self._len + added - sum(1 for key in now_gone if key in self)
        return Overlay(self._base, merged, self._gone.difference(changes).union(now_gone), length)

    def unquiet(self) -> Iterable[AccountState]:
        changes, gone = self._changes, self._gone
        kept = (s for s in unquiet(self._base) if s.account_id not in changes)
        return [*changes.values(), *(s for s in kept if s.account_id not in gone)]

    def absent(self, keys: AbstractSet[str]) -> set[str]:
        gone = absent(self._base, keys) | (keys & self._gone)
        return {key for key in gone if key not in self._changes}


def with_changes(
    states: Mapping[str, AccountState], changes: Mapping[str, AccountState]
) -> Mapping[str, AccountState]:
    """`states` with `changes` laid over them, without copying (or reading) the rest."""
    if not changes:
        return states
    if isinstance(states, PollStates | Overlay):
        return states.updated(changes)
    if isinstance(states, StoredStates):
        return Overlay(states, changes)
    return {**states, **changes}


def read_all(states: Mapping[str, AccountState]) -> None:
    """Every state of `states` is about to be read: the lazy ones are fetched together
    (500 ids a query, not one query each)."""
    if isinstance(states, _Lazy):
        states.read_all()


def preload(states: Mapping[str, AccountState], keys: Iterable[str]) -> None:
    """Tell `states` that `keys` are about to be read: lazy ones are fetched together."""
    if isinstance(states, _Lazy):
        states.preload(keys)


def committed(
    states: Mapping[str, AccountState], changes: Mapping[str, AccountState], gone: Iterable[str]
) -> Mapping[str, AccountState]:
    """What `states` (as a store holds them) are once `changes` and the removal of `gone` are
    committed, without reading the rest."""
    if isinstance(states, Overlay):
        return states.updated(changes, gone)
    if isinstance(states, dict):
        kept = {**states, **changes}
        for key in gone:
            kept.pop(key, None)
        return kept
    dropped = frozenset(gone)  # an id both changed and gone is gone: the store deletes last
    return Overlay(states, {k: v for k, v in changes.items() if k not in dropped}, dropped)


def absent(states: Mapping[str, AccountState], keys: AbstractSet[str]) -> set[str]:
    """Which of `keys` `states` does not hold."""
    if isinstance(states, StoredStates | Overlay):
        return states.absent(keys)
    if isinstance(states, dict):
        return set(keys - states.keys())
    return {key for key in keys if key not in states}


def status_counts(states: Mapping[str, AccountState]) -> dict[tuple[str, str], int]:
    """How many accounts are in each (status, platform): every state read (the store's
    `status_counts` counts what it holds without decoding it)."""
    return dict(Counter((s.status, s.platform) for s in states.values()))


def unquiet(states: Mapping[str, AccountState]) -> Iterable[AccountState]:
    """Every state that may want the cycle's attention (detail owed, say): all but those
    held as quiet, which by their mark want nothing."""
    if isinstance(states, _Lazy):
        return states.unquiet()
    return states.values()
