"""No garbage collection while the command line imports its modules.

Importing creates ~90,000 objects that all stay alive (modules, classes, functions), and
CPython's collector walked them again and again while they were made: a tenth or more of a
`run --once` from cron (bench/run.py). `late_monitor.cli` imports this module before any
other and calls `settled()` after its imports.

After that, the collector's first generation is collected every 20,000 new container
objects rather than 700: a poll's work keeps thousands alive for a while (decoded states,
parsed accounts, requests in flight) and each pass walked them again. Measured at 50,000
accounts (`run --once`, 1% changed, gc.callbacks): 43-55 ms of collection in 38 passes,
16-21 ms in one. Reference cycles are still collected, at most 20,000 new containers
later: a daemon polling a dead API makes ~140 a poll, so what a poll keeps in a cycle could
wait ~140 polls (a failed poll kept its frame, its index and states, through its error's
traceback: no longer, tests/test_startup.py).
"""

from __future__ import annotations

import gc

_collecting = gc.isenabled()  # as whoever imported us had it
gc.disable()
YOUNG = 20_000  # new container objects between two passes over the youngest generation


def settled() -> None:
    """Collect from now on (every `YOUNG` new objects), never again walking what the imports
    made: it is frozen (alive as long as the process anyway; the few cycles the imports left
    go with it)."""
    if _collecting and not gc.isenabled():
        gc.freeze()
        _, middle, old = gc.get_threshold()
        gc.set_threshold(YOUNG, middle, old)
        gc.enable()
