"""The command line's start: no garbage collection while it imports, as usual afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def _fresh_python(code: str, cwd: Path) -> Any:
    """What `code`, run in a new interpreter, printed as JSON."""
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=cwd
    )
    return json.loads(ran.stdout)


def test_importing_the_command_line_collects_nothing_and_freezes_what_it_made(
    tmp_path: Path,
) -> None:
    said = _fresh_python(
        "import gc, json\n"
        "before = [s['collections'] for s in gc.get_stats()]\n"
        "import late_monitor.cli\n"
        "after = [s['collections'] for s in gc.get_stats()]\n"
        "young = gc.get_threshold()[0]\n"
        "class Node: pass\n"
        "node = Node(); node.me = node; watch = __import__('weakref').ref(node); del node\n"
        "kept = [[] for _ in range(2 * young)]\n"  # new containers enough for a pass
        "print(json.dumps([before, after, gc.isenabled(), gc.get_freeze_count(), young,"
        " watch() is None]))",
        tmp_path,
    )
    before, after, enabled, frozen, young, collected = said
    assert after[1:] == before[1:]  # no collection walked the imports (the older generations)
    assert enabled  # the command's own garbage is collected
    assert frozen > 10_000  # modules, classes, functions: never walked again
    assert young == 20_000  # a pass every 20,000 new containers, not every 700
    assert collected  # and a reference cycle is still freed once they have come


def test_an_importer_that_turned_the_collector_off_keeps_it_off(tmp_path: Path) -> None:
    said = _fresh_python(
        "import gc, json\n"
        "gc.disable()\n"
        "import late_monitor.cli\n"
        "print(json.dumps([gc.isenabled(), gc.get_freeze_count()]))",
        tmp_path,
    )
    assert said == [False, 0]


FAILED_POLLS = """
import late_monitor.cli  # startup.settled(): the collector as the command line sets it
import asyncio, gc, json, sys, tempfile
from pathlib import Path
from late_monitor.config import load_settings
from late_monitor.cycle import run_cycle
from late_monitor.late import LateClient
from late_monitor.simulator import DEFAULT_KEY, Simulator, make_accounts
from late_monitor.store import Store
from late_monitor.wiring import deps_from
from tests.support.config import write_config
from tests.support.sink import Sink


def poll_frames() -> int:
    return sum(
        1 for o in gc.get_objects()
        if type(o).__name__ == "frame" and o.f_code.co_name == "_run_locked"
    )


async def main(tmp: Path) -> None:
    sim = Simulator(make_accounts(2000))
    await sim.start()
    sink = Sink()
    await sink.start()
    config = write_config(tmp / "c.toml", {
        "late": {"base_url": sim.base_url, "api_key": DEFAULT_KEY, "timeout": "5s"},
        "monitor": {"interval": "60s", "detail_every": "0", "api_failure_after": 1000},
        "state": {"path": str(tmp / "state.db")},
        "notify": {"urls": [sink.url()]},
        "log": {"level": "error", "format": "json"},
    })
    store = Store.open(tmp / "state.db")

    async def no_wait(_: float) -> None:
        return None

    async with LateClient(
        api_key=DEFAULT_KEY, base_url=sim.base_url, attempts=2, sleep=no_wait,
        max_requests_per_minute=100000,
    ) as client:
        deps = deps_from(load_settings(str(config), environ={}), client=client, store=store)
        for _ in range(2):
            assert (await run_cycle(deps)).outcome == "ok"
        await sim.stop()  # the API is gone: every poll fails from now on
        passes = gc.get_stats()[0]["collections"]
        outcomes = {(await run_cycle(deps)).outcome for _ in range(20)}
        print(json.dumps([sorted(outcomes), poll_frames(),
                          gc.get_stats()[0]["collections"] - passes]))
    store.close()
    await sink.stop()


asyncio.run(main(Path(sys.argv[1])))
"""


def test_failed_polls_leave_no_cycle_holding_their_frames(tmp_path: Path) -> None:
    """A poll that fails keeps its error, and the error's traceback held the poll's frame
    (its quiet index, its states): a reference cycle, freed only at the collector's next
    pass, which comes every 20,000 new containers: ~140 failed polls of a daemon while the
    API is down. The poll keeps the error without its traceback: no frame waits for a pass.
    (The client's own frames may: aiohttp's connection errors sit in asyncio's cycles.)"""
    script = tmp_path / "failed_polls.py"
    script.write_text(FAILED_POLLS)
    ran = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    outcomes, frames, passes = json.loads(ran.stdout.strip().splitlines()[-1])
    assert outcomes == ["api_failed"]
    assert passes == 0  # no pass of the collector came: what was freed, refcounts freed
    assert frames == 0


def test_jinja2_imported_for_a_first_message_is_frozen_without_a_pass(tmp_path: Path) -> None:
    """The first message of a process imports Jinja2 (~6,000 objects that stay): with a
    poll's objects alive beside them, the collector's next pass came in the middle of the
    import and walked them all. The import runs with the collector paused, and what it made
    is frozen; a second renderer imports nothing, and freezes nothing more."""
    said = _fresh_python(
        "import late_monitor.cli\n"  # startup.settled(): the collector as the command line sets it
        "import gc, json, sys\n"
        "from late_monitor.render import Renderer\n"
        "poll = [[] for _ in range(15_000)]\n"  # alive, as a big poll's objects are
        "def passes(): return sum(s['collections'] for s in gc.get_stats())\n"
        "before = passes()\n"
        "frozen = gc.get_freeze_count()\n"
        "imported = 'jinja2' in sys.modules\n"
        "title = Renderer().title('text', 'degraded', {'phrases': ['1 account needs attention'],"
        " 'type': 'warning', 'counts': {}, 'events': [], 'workspace': ''})\n"
        "first = gc.get_freeze_count() - frozen\n"
        "Renderer().title('text', 'digest', {'phrases': ['x'], 'type': 'info', 'counts': {},"
        " 'events': [], 'workspace': ''})\n"
        "print(json.dumps([imported, 'jinja2' in sys.modules, title,"
        " passes() - before, first,"
        " gc.get_freeze_count() - frozen - first]))",
        tmp_path,
    )
    imported_before, imported, title, passes, first, second = said
    assert not imported_before
    assert imported
    assert "needs attention" in title
    assert passes == 0
    assert first > 5_000  # Jinja2's modules, classes and functions, never walked again
    assert second == 0
