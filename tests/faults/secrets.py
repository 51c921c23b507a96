"""Checks that no secret reached a process's output."""

from __future__ import annotations

from tests.support.process import Ran


def assert_no_secrets(ran: Ran, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in ran.stdout, f"secret leaked to stdout: {secret[:4]}..."
        assert secret not in ran.stderr, f"secret leaked to stderr: {secret[:4]}..."
