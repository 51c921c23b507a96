"""Parsing `GET /accounts/health` bodies: in batches, and only the accounts that changed.

pydantic builds a tree of a whole JSON document before validating it: ~45 MB for the 15 MB
body of 50,000 accounts. Cut at the separators between accounts (`}`, `,`, `{`), each batch's
tree stays small. A cut that falls inside a string or a nested value leaves a piece that is
not a complete object, which never validates: the body is then parsed whole, as it would have
been anyway, and so is any body that is wrong in any way (its error is the whole body's).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from itertools import compress
from operator import attrgetter, not_

import pydantic_core
from pydantic import ValidationError

from late_monitor.collector import collector_paused
from late_monitor.models import (
    HEALTH,
    OBSERVATIONS,
    SHAPE_ERROR,
    Body,
    Observation,
    Snapshot,
    bad_payload,
    describe,
    flawed,
    validated,
)

BATCH_BYTES = 1 << 18
_ACCOUNT_ID = attrgetter("account_id")
_ACCOUNTS_AT = re.compile(rb'"accounts"\s*:\s*\[\s*')
_BETWEEN = re.compile(rb"\}\s*,\s*\{")  # between two objects of an array


QuietIndex = Mapping[bytes, str]  # a quiet account's entry's fingerprint -> its id


def fingerprint(entry: Body) -> bytes:
    """What an account's entry in the listing is known by: 16 bytes of BLAKE2b of what lies
    between its braces, the same in every process (stored beside the account's state) and
    never equal for two entries."""
    return hashlib.blake2b(entry, digest_size=16).digest()


def fingerprints(entries: Iterable[Body]) -> list[bytes]:
    """`fingerprint` of each entry (50,000 a poll). A comprehension that names the digest
    size in each call is faster than `map` over a `partial`, which builds a dict of its
    keywords for every call (~20%: 58 against 73 ms at 50,000)."""
    blake2b = hashlib.blake2b
    return [blake2b(entry, digest_size=16).digest() for entry in entries]


def parse_health(
    body: Body,
    *,
    status: int = 200,
    platforms: frozenset[str] = frozenset(),
    batch_bytes: int = BATCH_BYTES,
    quiet: QuietIndex | None = None,
) -> Snapshot:
    """Parse one `GET /accounts/health` body; raise BadPayload when it is not that."""
    parser = HealthParser(batch_bytes=batch_bytes)
    return parser.parse(body, status=status, platforms=platforms, quiet=quiet)


class HealthParser:
    """Parses the bodies of successive polls, validating only the accounts whose entry
    (its bytes, by `fingerprint`) is new:
    - an entry that the store holds as quiet (`quiet`: a state's mark, see state.py) is not
      parsed at all: the Snapshot lists it as quiet;
    - an entry seen in the poll before gets that poll's Observation back.

    At 50,000 accounts with 1% changing per poll that validates 500 accounts instead of
    50,000 (bench/run.py), for ~7 MB of fingerprints kept between polls.
    """

    def __init__(self, *, batch_bytes: int = BATCH_BYTES) -> None:
        self._batch = batch_bytes
        self._polls = 0
        self._known: dict[bytes, _Known] = {}  # fingerprint of an entry -> what it said

    def parse(
        self,
        body: Body,
        *,
        status: int = 200,
        platforms: frozenset[str] = frozenset(),
        quiet: QuietIndex | None = None,
    ) -> Snapshot:
        self._polls += 1
        flaws: list[Observation] = []
        found = _Found(quiet or {})
        with collector_paused():
            try:
                observations = self._by_account(body, flaws, status, found)
            except (ValidationError, ValueError):
                observations = None  # parsed whole below, which says what is wrong (if anything)
            if observations is None:
                found = _Found({})
                observations = _whole(body, status)
                flaws = [o for o in observations if flawed(o)]
            if platforms:
                observations = [o for o in observations if o.platform in platforms]
                flaws = [o for o in flaws if o.platform in platforms]
            accounts = dict(zip(map(_ACCOUNT_ID, observations), observations, strict=True))
        if not found.quiet.keys().isdisjoint(accounts):
            # an id listed twice, one entry quiet: which one comes last (and so counts, as
            # in a whole parse) is not known without parsing both
            return self.parse(body, status=status, platforms=platforms)
        unidentified = sum(1 for o in flaws if not o.account_id)
        if unidentified:
            del accounts[""]
        prints = found.prints
        return Snapshot(
            accounts=accounts,
            unreadable={o.account_id: o.flaws for o in flaws if o.account_id and o.flaws},
            unidentified=unidentified,
            quiet=found.quiet.keys(),  # disjoint from `accounts`, tested above
            prints={k: prints[k] for k in accounts if k in prints},
        )

    def _by_account(
        self, body: Body, flaws: list[Observation], status: int, found: _Found
    ) -> list[Observation] | None:
        """Every account cut out alone; only the ones neither quiet nor seen last poll are
        validated, a batch of ~`batch_bytes` at a time.

        The body is cut ~`batch_bytes` at a time, each window split at the separator the
        first two accounts are written with (`},{`, `}, {`, ...): cutting and fingerprinting
        50,000 entries is then a few calls into C per window, not several per entry. A body
        that separates its accounts in more than one way leaves pieces holding two accounts,
        never quiet nor known, so they are validated, and `_validate` refuses a piece that
        holds a separator.
        """
        start = _accounts_start(body, self._batch)
        if start is None:
            return None
        first = _BETWEEN.search(body, start)
        if first is None or body[start : start + 1] != b"{":
            return None
        separator = bytes(first.group())
        known, poll, quiet = self._known, self._polls, found.index
        listed: list[Observation | None] = []
        keys: list[bytes] = []  # each listed entry's fingerprint
        owned: list[str | None] = []  # each entry's owner if it is quiet, else None
        batch: list[tuple[int, bytes, Body]] = []  # (index in listed, key, the entry's bytes)
        size = 0
        position = start + 1  # each piece is what lies between an entry's braces
        while (end := _window_end(body, separator, position, self._batch)) != -1:
            pieces = body[position:end].split(separator)
            position = end + len(separator)
            prints = fingerprints(pieces)
            owners: list[str | None] = [None] * len(prints)  # of the quiet entries
            if quiet:
                owners = list(map(quiet.get, prints))
                owned += owners
            for index in compress(range(len(owners)), map(not_, owners)):  # those not quiet
                piece, key = pieces[index], prints[index]
                keys.append(key)
                entry = known.get(key)
                if entry is not None:
                    entry.poll = poll
                    listed.append(entry.observation)
                    if entry.flawed:
                        flaws.append(entry.observation)
                    continue
                batch.append((len(listed), key, piece))
                listed.append(None)
                size += len(piece)
                if size >= self._batch:
                    self._validate(batch, listed, flaws)
                    batch, size = [], 0
        self._validate(batch, listed, flaws)
        found.quiet = dict.fromkeys(filter(None, owned))  # one call, not one per window
        last = _last(body, start, position - 1, status)  # from the last entry's `{`
        flaws += [o for o in last if flawed(o)]
        for stale in [key for key, entry in known.items() if entry.poll != poll]:
            del known[stale]  # changed, gone, or quiet now
        ids = Counter(o.account_id for o in [*listed, *last] if o)
        found.prints = {  # an id listed twice has no one entry to be known by
            o.account_id: key
            for o, key in zip(listed, keys, strict=True)
            if o and ids[o.account_id] == 1
        }
        return [*listed, *last]  # type: ignore[list-item]  # every None was filled

    def _validate(
        self,
        batch: list[tuple[int, bytes, Body]],
        listed: list[Observation | None],
        flaws: list[Observation],
    ) -> None:
        """Validate new accounts' bytes in one go; each piece must be exactly one account."""
        if not batch:
            return
        if any(_BETWEEN.search(piece) for _, _, piece in batch):
            # two accounts in one piece (the body spells its separators more than one way),
            # or one account's string holding a separator: either is parsed whole, since a
            # piece of two and an account cut in two would make the count right, the pairs
            # of pieces and accounts wrong
            raise ValueError("a piece holds a separator")
        pieces = b"},{".join(piece for _, _, piece in batch)
        observations = OBSERVATIONS.validate_json(b"[{" + pieces + b"}]")
        if len(observations) != len(batch):
            raise ValueError("a cut fell inside an account")  # two pieces made one object
        for (index, key, _), observation in zip(batch, observations, strict=True):
            listed[index] = observation
            odd = flawed(observation)
            if odd:
                flaws.append(observation)
            self._known[key] = _Known(observation, self._polls, odd)


class _Found:
    """What one parse found besides the Observations: the quiet accounts (of `index`) and
    each parsed entry's fingerprint."""

    __slots__ = ("index", "prints", "quiet")

    def __init__(self, index: QuietIndex) -> None:
        self.index = index
        # a dict, not a set: a dict of strings is not tracked by the garbage collector,
        # which walked a set of 50,000 ids again and again while the poll went on
        self.quiet: dict[str, None] = {}
        self.prints: dict[str, bytes] = {}


class _Known:
    """An account's Observation, the last poll that held its entry, and whether some field
    of it could not be read."""

    __slots__ = ("flawed", "observation", "poll")

    def __init__(self, observation: Observation, poll: int, flawed: bool) -> None:
        self.observation = observation
        self.poll = poll
        self.flawed = flawed


def _window_end(body: Body, separator: bytes, position: int, size: int) -> int:
    """Where the window of entries from `position` ends: at the first separator ~`size`
    bytes on, else at the last one (the entry after it is the document's last); -1 when no
    separator is left."""
    end = body.find(separator, position + size)
    return end if end != -1 else body.rfind(separator, position)


def _accounts_start(body: Body, batch: int) -> int | None:
    """Where the first account of a large body begins; None for a small body or when the
    first `"accounts": [` found is not the document's own (ValueError if that is unclear)."""
    start = _ACCOUNTS_AT.search(body)
    if start is None or len(body) < 2 * batch:
        return None
    if not isinstance(pydantic_core.from_json(body[: start.end()] + b"]}"), dict):
        return None
    return start.end()


def _last(body: Body, start: int, position: int, status: int) -> list[Observation]:
    """The accounts from `position` to the end, validated with the document around them
    (everything before the list, everything after it): the envelope is checked here."""
    return _whole(body[:start] + body[position:], status)


def _whole(body: Body, status: int) -> list[Observation]:
    """Every account of a body parsed in one piece. Only a body without the documented shape
    (not JSON, no `accounts` array) is an error; an entry that is not an object is skipped."""
    try:
        entries = validated(HEALTH, body)["accounts"]
    except ValidationError as exc:
        raise bad_payload(body, status, f"{SHAPE_ERROR} ({describe(exc)})") from None
    return [entry for entry in entries if entry is not None]
