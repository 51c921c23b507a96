"""The bundled Late API simulator, for the demo, the tests and the benchmark."""

from late_monitor.simulator.app import (
    DEFAULT_KEY,
    MISSING,
    PLATFORMS,
    Fault,
    Overlay,
    SimAccount,
    SimPost,
    Simulator,
    make_accounts,
)

__all__ = [
    "DEFAULT_KEY",
    "MISSING",
    "PLATFORMS",
    "Fault",
    "Overlay",
    "SimAccount",
    "SimPost",
    "Simulator",
    "make_accounts",
]
