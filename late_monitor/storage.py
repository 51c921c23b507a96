"""The one storage interface: what the cycle, delivery, intake and the commands need of the state.

Two implementations: `store.Store` (a SQLite file, the default) and `pg_store.PgStore` (a shared
PostgreSQL database, with leader election); `tests/test_storage_contract.py` runs the same tests
against both so that they cannot drift. The methods are synchronous: SQLite's are, and the
PostgreSQL ones are short statements on a pooled connection, so callers need no change.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from late_monitor.messages import CycleRecord, OutboxRow, PlannedMessage
from late_monitor.silences import Ack, Silence
from late_monitor.state import AccountState, ApiHealth


class Outbox(Protocol):
    """What delivery (outbox.py) needs of the state: the rows that are due, their marks, and
    the cycle lock and writer. Delivery imports this, never a store, nor the client (an
    import-linter contract checks it)."""

    def writing(self, wait: float) -> AbstractAsyncContextManager[None]: ...

    def pending_deliveries(self) -> list[OutboxRow]: ...

    def next_attempt_at(self) -> float | None: ...

    def oldest_pending(self) -> float: ...

    def mark_delivered(self, *row_ids: int, now: float, note: str | None = None) -> None: ...

    def mark_failed(
        self, *row_ids: int, error: str, next_attempt_at: float, unanswered: bool = False
    ) -> None: ...

    def mark_set_aside(self, *row_ids: int, error: str, until: float) -> None: ...

    def mark_dropped(self, row_id: int, *, reason: str, now: float) -> None: ...

    def reroute(self, row_id: int, *, to: Sequence[tuple[str, str]], now: float) -> list[str]: ...


class StateStore(Outbox, Protocol):
    """Account states, the outbox, cycle history, webhooks and operator control, kept together,
    seen from one workspace (silences and webhook deliveries are everyone's)."""

    @property
    def path(self) -> Path | str:
        """Where the state is, for messages (a PostgreSQL URL without its password)."""
        ...

    workspace: str  # whose accounts, cycles, outbox and acks this view sees

    def scoped(self, workspace: str) -> StateStore:
        """Another workspace's view, on the same connections and locks."""
        ...

    def workspaces(self) -> list[str]: ...

    @property
    def leader(self) -> bool:
        """Whether this process may poll and deliver now (SQLite: always; it locks per cycle)."""
        ...

    def close(self) -> None: ...

    # -- the cycle lock (PostgreSQL: leadership) ------------------------------------------
    def holding(self, wait: float) -> AbstractAsyncContextManager[None]: ...

    # -- states and meta ------------------------------------------------------------------
    def load_states(self, *, lazy: bool = False) -> Mapping[str, AccountState]: ...

    def quiet_index(self, *, after: float) -> dict[bytes, str]:
        """Fingerprint -> id of the accounts marked quiet beyond `after`: a new dict each
        time, which no later commit changes (a poll reads it outside the write lock)."""
        ...

    def status_counts(self) -> dict[tuple[str, str], int]: ...

    def oldest_detail(self, count: int, *, skip: Collection[str] = ()) -> list[str]: ...

    def load_api_health(self) -> ApiHealth: ...

    def read_meta(self, key: str) -> Any: ...

    def write_meta(self, key: str, value: Any) -> None: ...

    def meta_setdefault(self, key: str, value: Any) -> Any: ...

    def data_version(self) -> int: ...

    def commit_cycle(
        self,
        *,
        states: Mapping[str, AccountState],
        changed: Iterable[str],
        removed: Iterable[str],
        api: ApiHealth,
        messages: Sequence[PlannedMessage],
        record: CycleRecord,
        webhooks: Sequence[tuple[str, str]] = (),
    ) -> int: ...

    def prune(self, *, before: datetime) -> int: ...

    def recent_cycles(self, limit: int = 10) -> list[dict[str, Any]]: ...

    # -- webhooks -------------------------------------------------------------------------
    def record_webhook(self, hook_id: str, event: str, body: bytes, *, now: float) -> bool: ...

    def unprocessed_webhooks(self, limit: int = 500) -> list[tuple[str, bytes]]: ...

    def settle_webhooks(self, outcomes: Sequence[tuple[str, str]], *, now: float) -> None: ...

    def recent_webhooks(self, limit: int = 10) -> list[dict[str, Any]]: ...

    def prune_webhooks(self, *, before: float) -> int: ...

    # -- the outbox (delivery's part is `Outbox`, above) ---------------------------------
    def pending_count(self) -> int: ...

    def outbox_rows(
        self, *, states: tuple[str, ...] = ("pending", "set_aside")
    ) -> list[dict[str, Any]]: ...

    # -- operator control -----------------------------------------------------------------
    def add_silence(
        self,
        *,
        matchers: Mapping[str, Sequence[str]],
        reason: str,
        created_by: str,
        created_at: datetime,
        ends_at: datetime,
    ) -> int: ...

    def load_silences(self) -> list[Silence]: ...

    def expire_silence(self, silence_id: int, *, now: datetime) -> Silence | None: ...

    def note_silenced(
        self, by_silence: Mapping[int, Sequence[str]], counts: Mapping[int, int]
    ) -> None: ...

    def settle_silences(self, ids: Sequence[int], *, prune_before: datetime) -> None: ...

    def add_ack(self, ack: Ack) -> None: ...

    def load_acks(self) -> dict[str, Ack]: ...

    def remove_acks(self, account_ids: Iterable[str]) -> None: ...

    def held_rows(self) -> list[dict[str, Any]]: ...

    def release_held(self, *, now: datetime) -> int: ...
