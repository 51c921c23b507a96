"""Prometheus metrics of the daemon, in a registry of its own."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from late_monitor.cycle import CycleResult
from late_monitor.outbox import Delivery
from late_monitor.state import DEFAULT_WORKSPACE

_WS = ["workspace"]  # every metric of a workspace's polls and deliveries is labelled with it


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.polls = Counter(
            "late_monitor_polls", "Polls of the Late API", [*_WS, "outcome"], registry=r
        )
        self.poll_duration = Histogram(
            "late_monitor_poll_duration_seconds",
            "Wall time of one cycle",
            _WS,
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
        )
        self.accounts = Gauge(
            "late_monitor_accounts",
            "Accounts by status and platform",
            [*_WS, "status", "platform"],
            registry=r,
        )
        self._account_series: dict[str, set[tuple[str, str]]] = {}
        self.unreadable = Gauge(
            "late_monitor_unreadable_accounts",
            "Accounts the last poll listed with fields late-monitor could not read",
            _WS,
            registry=r,
        )
        self.events = Counter("late_monitor_events", "Events detected", [*_WS, "kind"], registry=r)
        self.sent = Counter(
            "late_monitor_notifications_sent",
            "Messages accepted",
            [*_WS, "destination"],
            registry=r,
        )
        self.failed = Counter(
            "late_monitor_notifications_failed",
            "Delivery attempts that failed",
            [*_WS, "destination"],
            registry=r,
        )
        self.dropped = Counter(
            "late_monitor_notifications_dropped",
            "Messages given up after notify.retry_for",
            _WS,
            registry=r,
        )
        self.set_aside = Counter(
            "late_monitor_notifications_set_aside",
            "Messages a destination refused for good (4xx), set aside for a day",
            _WS,
            registry=r,
        )
        self.outbox_pending = Gauge(
            "late_monitor_outbox_pending", "Undelivered outbox rows", _WS, registry=r
        )
        self.rate_remaining = Gauge(
            "late_monitor_late_ratelimit_remaining",
            "X-RateLimit-Remaining last seen",
            _WS,
            registry=r,
        )
        self.webhooks = Counter(
            "late_monitor_webhooks_received",
            "Webhook deliveries from Late, by event and what was done with them "
            "(accepted, duplicate, unsigned, bad_signature, bad_body, too_large)",
            ["event", "outcome"],
            registry=r,
        )
        self.post_failures = Counter(
            "late_monitor_post_failures",
            "Platforms of posts Late reported failed (post.failed / post.partial webhooks), by "
            "whether the error blames the account (token, permission) or the post",
            ["platform", "cause"],
            registry=r,
        )
        self.leader = Gauge(
            "late_monitor_leader",
            "1 while this process may poll and deliver (the leader on a shared PostgreSQL "
            "state; always 1 on a SQLite file), 0 while it stands by",
            registry=r,
        )
        self.leader_value = 0
        self.webhook_latency = Histogram(
            "late_monitor_webhook_processing_seconds",
            "From a webhook's receipt to its news committed and delivery attempted",
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
        )
        self.last_success = Gauge(
            "late_monitor_last_successful_poll_timestamp_seconds",
            "Unix time of the last successful poll",
            _WS,
            registry=r,
        )

    def forget(self, workspace: str) -> None:
        """Drop the gauges of a workspace a reload removed: its last success would otherwise
        look older every minute, and its accounts would count for ever."""
        for gauge in (self.last_success, self.unreadable, self.outbox_pending, self.rate_remaining):
            with contextlib.suppress(KeyError):
                gauge.remove(workspace)
        for status, platform in self._account_series.pop(workspace, set()):
            self.accounts.remove(workspace, status, platform)

    def record(
        self,
        result: CycleResult,
        *,
        destinations: Mapping[str, int],
        pending: int,
        remaining: int | None,
        now: float,
        workspace: str = DEFAULT_WORKSPACE,
    ) -> None:
        self.polls.labels(workspace, result.outcome).inc()
        self.poll_duration.labels(workspace).observe(result.duration)
        if result.outcome == "ok":
            self.last_success.labels(workspace).set(now)
            self.unreadable.labels(workspace).set(result.unreadable)
            series = set(result.by_platform)
            for status, platform in self._account_series.get(workspace, set()) - series:
                self.accounts.remove(workspace, status, platform)
            self._account_series[workspace] = series
            for (status, platform), count in result.by_platform.items():
                self.accounts.labels(workspace, status, platform).set(count)
        for event in result.events:
            self.events.labels(workspace, str(event.kind)).inc()
        self.record_delivery(result.delivery, destinations=destinations, workspace=workspace)
        self.outbox_pending.labels(workspace).set(pending)
        if remaining is not None:
            self.rate_remaining.labels(workspace).set(remaining)

    def record_delivery(
        self,
        delivery: Delivery,
        *,
        destinations: Mapping[str, int],
        workspace: str = DEFAULT_WORKSPACE,
    ) -> None:
        for (key, ok), count in delivery.per_destination.items():
            index = str(destinations.get(key, -1))
            (self.sent if ok else self.failed).labels(workspace, index).inc(count)
        self.dropped.labels(workspace).inc(delivery.dropped)
        self.set_aside.labels(workspace).inc(delivery.set_aside)

    def set_leader(self, leader: bool) -> None:
        self.leader_value = int(leader)
        self.leader.set(self.leader_value)
