"""The command line's start: no garbage collection while it imports, as usual afterwards."""

from __future__ import annotations

import json
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
