"""The bench's own arithmetic: the polling figure is computed, not waited for, so check it.

The benches themselves run in CI as `python3 bench/run.py --quick` (see .ci/run).
"""

from __future__ import annotations

import pytest

from bench.polling import at_interval
from bench.run import targets_table


def test_an_instant_poll_gives_the_uniform_wait_alone() -> None:
    figures = at_interval([0.0], 60.0)
    assert figures["median_s"] == pytest.approx(30.0, abs=0.05)
    assert figures["p99_s"] == pytest.approx(59.4, abs=0.05)
    assert figures["worst_s"] == 60.0


def test_the_poll_phase_adds_to_the_wait() -> None:
    figures = at_interval([0.5, 0.5, 2.5], 10.0)
    # the mixture of U(0.5, 10.5) (two thirds) and U(2.5, 12.5) is half done at 5 + 3.5/3
    assert figures["median_s"] == pytest.approx(5.0 + 3.5 / 3, abs=0.05)
    assert figures["worst_s"] == 12.5
    assert figures["p99_s"] > 10.0  # the slow poll's third is in the top percent


def test_a_section_that_cannot_run_says_why_in_the_table() -> None:
    text = targets_table({"workspaces": {"skipped": "this build's config has no [[workspaces]]"}})
    assert "| workspaces | - | not measured: this build's config has no [[workspaces]] |" in text
