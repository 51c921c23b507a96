"""The one error hierarchy of late-monitor; library errors are translated at the boundary.

LateMonitorError
+-- ConfigError               bad configuration or usage (exit 2)
+-- LateApiError              the Late API did not give a usable answer (exit 1)
|   +-- ApiUnavailable        connection refused, timeout, 5xx after retries
|   +-- AuthRejected          401/403: the API key is wrong or lacks access
|   +-- RateLimited           429 that outlasted our retries
|   +-- BadPayload            not JSON, an HTML page, JSON of the wrong shape, too large
|   +-- Redirected            sent elsewhere: the key is not followed to another host
+-- StateError                the state file is unusable (exit 2)
|   +-- StateBusy             another process holds the state file (exit 1)
|   |   +-- NotLeader         another replica holds the PostgreSQL leader lock (exit 1)
|   |       +-- LeadershipLost  the leader lock's session ended under us: fenced (exit 1)
|   +-- ScopeConflict         the state file watches another scope (exit 2)
+-- DeliveryError             a destination did not accept a message: permanent (4xx), unanswered
                              (no answer within its read timeout: it may have arrived) or neither
"""

from __future__ import annotations


class LateMonitorError(Exception):
    """Base of every error late-monitor raises on purpose."""

    exit_code = 1


class ConfigError(LateMonitorError):
    """The configuration or the command line is wrong; each problem is one line."""

    exit_code = 2

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class LateApiError(LateMonitorError):
    """The Late API did not give a usable answer."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class ApiUnavailable(LateApiError):
    """Connection refused, timed out, or 5xx after all retries."""


class AuthRejected(LateApiError):
    """401 or 403: the key is invalid, rotated, or not allowed."""


class RateLimited(LateApiError):
    """429 that our retries could not wait out."""


class BadPayload(LateApiError):
    """A body that is not JSON, or JSON of the wrong shape."""


class Redirected(LateApiError):
    """Late answered with a redirect to another origin: `late.base_url` needs changing."""


class StateError(LateMonitorError):
    """The state file cannot be used: not ours, corrupt, unwritable."""

    exit_code = 2


class ScopeConflict(StateError):
    """The state file was written for another scope (API, profile, platforms)."""


class StateBusy(StateError):
    """Another late-monitor process is running a cycle on the same state file."""

    exit_code = 1


class NotLeader(StateBusy):
    """Another replica holds the leader lock on the shared PostgreSQL state: stand by."""


class LeadershipLost(NotLeader):
    """The session holding our leader lock is gone: nothing more is polled, written or sent
    until the lock is taken again (a standby may hold it already)."""


class DeliveryError(LateMonitorError):
    """A destination did not accept a message.

    `permanent`: it answered 4xx (bad token or URL, message too large): sending the same again
    will not help. `unanswered`: the request went out but no answer came within the read timeout,
    so the message may have arrived. Neither: not delivered (refused connection, 5xx, 429).
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        unanswered: bool = False,
        status: int | None = None,
    ) -> None:
        self.permanent = permanent
        self.unanswered = unanswered
        self.status = status
        super().__init__(message)
