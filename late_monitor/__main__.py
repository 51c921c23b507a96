"""`python -m late_monitor` is the `late-monitor` command."""

from late_monitor.cli import main

raise SystemExit(main())
