"""The garbage collector paused while many objects without reference cycles are made.

CPython's collector runs a pass every 700 new container objects (every 20,000 once
`startup.settled()` has run); a poll at 50,000 accounts makes them by the hundred thousand
(parsed accounts, rows read from the state file), and each pass walks every young object
again without finding anything to free: measured at 50,000 accounts (at 700), parsing took
0.48 s with the collector against 0.20 s without.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No collection inside the block (none made there is a cycle to collect later)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextlib.contextmanager
def imports_frozen(module: str) -> Iterator[None]:
    """A block that may import `module`, a big library, when first needed (Jinja2: ~60 ms,
    ~6,000 objects kept for the life of the process): no pass of the collector while it is
    made, and none that walks it afterwards, since it is then frozen, as `startup.settled()`
    freezes the first imports. A 50,000-account poll reached the collector's next pass in
    the middle of importing Jinja2 (11-18 ms). What else is alive then is frozen with it
    (a daemon's first message: ~65,000 objects, the poll's among them): freed as usual,
    though never collected as part of a reference cycle; and only once, by the block that
    imported `module`."""
    first = module not in sys.modules
    with collector_paused():
        yield
        if first and module in sys.modules:
            gc.freeze()  # while paused: leaving the block makes objects, which would call for
            # the pass (its count of new objects is only reset here)
