"""No garbage collection while the command line imports its modules.

Importing creates ~90,000 objects that all stay alive (modules, classes, functions), and
CPython's collector walked them again and again while they were made: a tenth or more of a
`run --once` from cron (bench/run.py). `late_monitor.cli` imports this module before any
other and calls `settled()` after its imports.
"""

from __future__ import annotations

import gc

_collecting = gc.isenabled()  # as whoever imported us had it
gc.disable()


def settled() -> None:
    """Collect as usual from now on, never again walking what the imports made: it is frozen
    (alive as long as the process anyway; the few cycles the imports left go with it)."""
    if _collecting and not gc.isenabled():
        gc.freeze()
        gc.enable()
