"""`python -m late_monitor` is the `late-monitor` command."""

from late_monitor.cli import entry

entry()
