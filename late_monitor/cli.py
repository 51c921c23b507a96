"""The `late-monitor` command: parse arguments, build Settings once, run the chosen command.

Commands import their modules when they run, so that `run --once` (cron) does not pay for
the daemon's scheduler and metrics, nor `check` for the notifier.
"""

from __future__ import annotations

# isort: off
from late_monitor import startup  # first: no garbage collection while importing the rest

# isort: on
import argparse
import asyncio
import contextlib
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, cast

import structlog

from late_monitor import __version__
from late_monitor.backends import open_store
from late_monitor.config import LoadedConfig, load_settings
from late_monitor.cycle import run_cycle
from late_monitor.errors import ConfigError, LateMonitorError
from late_monitor.logs import REDACTOR
from late_monitor.storage import StateStore as Store
from late_monitor.wiring import (
    check_destinations,
    client_from,
    deps_from,
    notifier_from,
    setup_logging,
)
from late_monitor.workspace_watch import Budgets, watch_workspace

if TYPE_CHECKING:
    from late_monitor.notify import Notifier

startup.settled()
log = structlog.get_logger("late_monitor.cli")

RUN_EXAMPLE = """examples:
  late-monitor run --once --config /etc/late-monitor/config.toml   # one cycle, for cron
  LATE_API_KEY=sk_... late-monitor run                              # the daemon
  late-monitor run --once --dry-run                                 # print, send nothing
exit codes of --once: 0 cycle completed, 1 cycle failed (retried next time), 2 bad config/usage"""

CHECK_EXAMPLE = """example (Nagios/Icinga command):
  late-monitor check --config /etc/late-monitor/config.toml -t 10
  LATE CRITICAL - 1 error, 1 needs reconnect of 12 | total=12 healthy=11 ...
exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (API unreachable, bad config, bad key)"""

STATUS_EXAMPLE = """examples:
  late-monitor status                 # a table (colours on a terminal)
  late-monitor status --json | jq '.accounts[] | select(.status != "healthy")'"""

TEST_NOTIFY_EXAMPLE = """examples:
  late-monitor test-notify            # every destination; exit 1 if any failed
  late-monitor test-notify --tag oncall"""

CONFIG_EXAMPLE = """example:
  late-monitor config check --config /etc/late-monitor/config.toml
exit 2 with one line per problem; secrets are never printed"""

WEBHOOKS_EXAMPLE = """examples:
  late-monitor webhooks setup --url https://monitor.example.com/webhooks/late
  late-monitor webhooks status          # exit 1 when Late has no webhook for this monitor
the secret is webhooks.secret (or its file, or LATE_MONITOR_WEBHOOKS__SECRET); never printed"""

DEMO_EXAMPLE = """examples:
  late-monitor demo                                   # ~30 s, nothing to set up
  late-monitor demo --notify slack://T000/B000/XXXX   # also see the messages in your Slack"""

SIMULATE_EXAMPLE = """example:
  late-monitor simulate --port 8787 --accounts 50
  # then in late-monitor.toml: base_url = "http://127.0.0.1:8787/api/v1" and the printed key"""


async def _run_once(loaded: LoadedConfig, *, dry_run: bool) -> int:
    """One cycle of every workspace, concurrently; the worst exit code of them."""
    notifiers = [notifier_from(view) for view in loaded.workspaces]
    for view, notifier in zip(loaded.workspaces, notifiers, strict=True):
        await check_destinations(view, notifier, dry_run=dry_run)
    store = open_store(loaded)
    budgets = Budgets()
    try:
        outcomes = await asyncio.gather(
            *(
                _run_workspace(view, notifier, store, budgets, dry_run=dry_run, first=not index)
                for index, (view, notifier) in enumerate(
                    zip(loaded.workspaces, notifiers, strict=True)
                )
            ),
            return_exceptions=True,  # one workspace's failure stops none of the others
        )
    finally:
        store.close()
    codes = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
        codes.append(outcome)
    return max(codes)


async def _run_workspace(
    loaded: LoadedConfig,
    notifier: Notifier,
    store: Store,
    budgets: Budgets,
    *,
    dry_run: bool,
    first: bool,
) -> int:
    prefix = f"late-monitor: {loaded.label}: " if loaded.label else "late-monitor: "
    async with client_from(loaded) as client:
        budgets.add(loaded.workspace, client)
        scoped = store.scoped(loaded.workspace)
        deps = deps_from(loaded, client=client, store=scoped, notifier=notifier)
        if not first:
            deps.heartbeat = None  # one dead-man's switch per run: the first workspace's
        deps.counts = False  # no status line to show them: logged when at info
        if not dry_run:
            await watch_workspace(deps, budgets, loaded.workspace)
        result = await run_cycle(deps, dry_run=dry_run)
    # the API's error text may echo the key back
    if result.outcome != "ok":
        print(REDACTOR.redact(f"{prefix}poll failed: {result.error}"), file=sys.stderr)
    for failure in result.delivery.failures:
        print(REDACTOR.redact(f"{prefix}delivery failed: {failure}"), file=sys.stderr)
    return result.exit_code


def log_warnings(loaded: LoadedConfig) -> None:
    for warning in loaded.warnings:
        log.warning(warning.event, problem=warning.text)


def cmd_run(args: argparse.Namespace) -> int:
    loaded = load_settings(args.config)
    setup_logging(loaded)
    log_warnings(loaded)
    loaded.require_api_key()
    if loaded.settings.monitor.interval < 30:
        log.warning(
            "interval_short",
            interval_s=loaded.settings.monitor.interval,
            hint="under 30 s spends the Late request budget fast",
        )
    if args.once or args.dry_run:
        return asyncio.run(_run_once(loaded, dry_run=args.dry_run))
    from late_monitor.daemon import run_daemon

    return run_daemon(loaded, config_arg=args.config)


def _loaded_for_tool(args: argparse.Namespace, *, warn: bool = True) -> LoadedConfig:
    """Settings for a command whose own output is stdout: logs go to stderr, quietly."""
    loaded = load_settings(args.config)
    setup_logging(loaded, stream=sys.stderr, level="warning")
    if warn:
        log_warnings(loaded)
    return loaded


def cmd_status(args: argparse.Namespace) -> int:
    from late_monitor.commands import print_status as status

    return status(_loaded_for_tool(args), as_json=args.json, workspace=args.workspace)


def cmd_test_notify(args: argparse.Namespace) -> int:
    from late_monitor.commands import send_test_notification as test_notify

    loaded = _loaded_for_tool(args)
    views = [loaded.workspace_named(args.workspace)] if args.workspace else loaded.workspaces
    codes = []
    for view in views:
        if loaded.named:
            print(f"workspace {view.workspace}:", flush=True)
        codes.append(test_notify(view, tag=args.tag))
    return max(codes)


def cmd_reconnect(args: argparse.Namespace) -> int:
    from late_monitor.commands import print_reconnect

    loaded = _loaded_for_tool(args).workspace_named(args.workspace)
    return print_reconnect(loaded, args.account_id)


def cmd_config_check(args: argparse.Namespace) -> int:
    from late_monitor.commands import config_check

    return config_check(_loaded_for_tool(args, warn=False))


def cmd_webhooks_setup(args: argparse.Namespace) -> int:
    from late_monitor.webhook_commands import setup_webhook

    return setup_webhook(_loaded_for_tool(args).workspaces[0], url=args.url)


def cmd_webhooks_status(args: argparse.Namespace) -> int:
    from late_monitor.webhook_commands import webhook_status

    return webhook_status(_loaded_for_tool(args).workspaces[0], as_json=args.json)


def cmd_check(args: argparse.Namespace) -> int:
    from late_monitor.check import CRITICAL, WARNING, run_checks

    try:
        loaded: LoadedConfig | None = _loaded_for_tool(args, warn=False)  # stdout: one line
        error = ""
        if loaded is not None and args.workspace:
            loaded = loaded.workspace_named(args.workspace)
    except ConfigError as exc:
        loaded, error = None, "; ".join(exc.problems)
    code, text = run_checks(loaded, timeout=args.timeout, config_error=error)
    print(REDACTOR.redact(text), flush=True)
    return WARNING if args.warning_only_exit and code == CRITICAL else code


def cmd_probe(args: argparse.Namespace) -> int:
    """GET a health URL (the container HEALTHCHECK): exit 0 on 2xx, else 1 with the reason."""
    import urllib.error
    import urllib.request

    if not args.url.startswith(("http://", "https://")):
        raise ConfigError(f"probe: {args.url!r} is not an http(s) URL")
    try:
        with urllib.request.urlopen(args.url, timeout=args.timeout) as response:  # noqa: S310
            print(f"{response.status} {response.read(500).decode('utf-8', 'replace')}")
            return 0
    except urllib.error.HTTPError as exc:
        print(f"{exc.code} {exc.read(500).decode('utf-8', 'replace')}", file=sys.stderr)
    except (urllib.error.URLError, OSError) as exc:
        print(f"probe failed: {getattr(exc, 'reason', exc)}", file=sys.stderr)
    return 1


def cmd_demo(args: argparse.Namespace) -> int:
    from late_monitor.demo import run_demo

    return run_demo(notify=args.notify or [])


def cmd_simulate(args: argparse.Namespace) -> int:
    from late_monitor.simulator.cli import serve

    return serve(
        port=args.port,
        accounts=args.accounts,
        scenario=args.scenario,
        key=args.key,
        latency=args.latency,
        rate_limit=args.rate_limit,
        posts=args.posts,
        webhook=args.webhook or "",
        webhook_secret=os.environ.get("LATE_SIM_WEBHOOK_SECRET", ""),
    )


class _Parser(argparse.ArgumentParser):
    """argparse, except that a usage error of the Nagios plugin (`check`) is UNKNOWN (exit 3)
    in one line on stdout, where the monitoring system looks, instead of exit 2."""

    plugin = False

    def error(self, message: str) -> NoReturn:
        if self.plugin:
            print(f"LATE UNKNOWN - bad usage: {message} (see late-monitor check --help)")
            self.exit(3)
        super().error(message)


def _config_option(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    # Before the command or after it: the command's own --config wins, and leaves the top
    # level's value alone when it is not given (SUPPRESS), so either place works.
    parser.add_argument(
        "--config",
        "-c",
        metavar="PATH",
        default=None if top else argparse.SUPPRESS,
        help="TOML config file (default: $LATE_MONITOR_CONFIG, ./late-monitor.toml, "
        "/etc/late-monitor/config.toml)",
    )


def _workspace_option(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("-w", "--workspace", metavar="NAME", help=text + " ([[workspaces]] name)")


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"a number of seconds above 0 is expected, not {text!r}")
    return seconds


class _Skipped:
    """The parser of a command that is not the one being run: takes any call, builds nothing."""

    def __getattr__(self, name: str) -> Callable[..., _Skipped]:
        return lambda *args, **kwargs: self

    def __setattr__(self, name: str, value: object) -> None:
        pass


class _Commands:
    """The subcommands, of which only `only`'s parser is built when it is named (all when
    None): building every command's parser took ~10 ms of a `run --once` from cron."""

    def __init__(self, commands: argparse._SubParsersAction[_Parser], only: str | None) -> None:
        self._commands = commands
        self._only = only
        self.found = False

    @property
    def pending(self) -> bool:
        """Whether a command added from here on is built: every one, or `only` not yet seen."""
        return self._only is None or not self.found

    def add_parser(self, name: str, **kwargs: Any) -> _Parser:
        if self._only is not None and name != self._only:
            return cast(_Parser, _Skipped())
        self.found = True
        return self._commands.add_parser(name, **kwargs)


def build_parser(command: str | None = None) -> _Parser:
    """The whole command line, or only what `command` needs (its parser, the global options);
    the whole one when `command` is none of ours (argparse lists them in its error)."""
    parser = _Parser(
        prog="late-monitor",
        description="Watch Late (getlate.dev / Zernio) account health; notify through Apprise.",
        epilog="start here: late-monitor demo",
    )
    parser.add_argument("--version", action="version", version=f"late-monitor {__version__}")
    _config_option(parser, top=True)
    commands = _Commands(parser.add_subparsers(dest="command", metavar="COMMAND"), command)

    run = commands.add_parser(
        "run",
        help="poll Late and notify (daemon, or one cycle with --once)",
        epilog=RUN_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _config_option(run)
    run.add_argument("--once", action="store_true", help="run one cycle and exit")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the messages instead of sending them; write no state",
    )
    run.set_defaults(func=cmd_run)

    check = commands.add_parser(
        "check",
        help="Nagios/Icinga plugin: one live poll, exit 0/1/2/3",
        epilog=CHECK_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.plugin = True
    _config_option(check)
    check.add_argument(
        "-t",
        "--timeout",
        type=_seconds,
        default=10.0,
        help="give up (UNKNOWN) after this many seconds (default 10)",
    )
    check.add_argument(
        "--warning-only-exit",
        action="store_true",
        help="exit WARNING (1) where it would exit CRITICAL (2)",
    )
    _workspace_option(check, "poll only this workspace (default: every one, the worst wins)")
    check.set_defaults(func=cmd_check)

    status = commands.add_parser(
        "status",
        help="what the state file knows: accounts, outbox, last cycles",
        epilog=STATUS_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _config_option(status)
    status.add_argument("--json", action="store_true", help="stable JSON instead of a table")
    _workspace_option(status, "only this workspace (default: every one)")
    status.set_defaults(func=cmd_status)

    test_notify = commands.add_parser(
        "test-notify",
        help="send a test message to every destination",
        epilog=TEST_NOTIFY_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _config_option(test_notify)
    test_notify.add_argument("--tag", help="only destinations with this Apprise tag")
    _workspace_option(test_notify, "only this workspace's destinations")
    test_notify.set_defaults(func=cmd_test_notify)

    reconnect = commands.add_parser(
        "reconnect",
        help="print a fresh Late link to reconnect one account",
        epilog="example:\n  late-monitor reconnect 64e1f0a9e2b5af0012ab34de   # then open the link",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _config_option(reconnect)
    reconnect.add_argument("account_id", help="the account's id, as messages and status show it")
    _workspace_option(reconnect, "the account's workspace")
    reconnect.set_defaults(func=cmd_reconnect)

    config = commands.add_parser("config", help="configuration tools (config check)")
    config_commands = config.add_subparsers(dest="config_command", metavar="check")
    config_check = config_commands.add_parser(
        "check",
        help="validate the configuration and show the effective settings",
        epilog=CONFIG_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _config_option(config_check)
    config_check.set_defaults(func=cmd_config_check)

    webhooks = commands.add_parser(
        "webhooks", help="Late's webhooks for instant alerts (webhooks setup, webhooks status)"
    )
    webhook_commands = webhooks.add_subparsers(dest="webhooks_command", metavar="setup|status")
    setup = webhook_commands.add_parser(
        "setup",
        help="create or update the Late webhook that sends this monitor its events",
        epilog=WEBHOOKS_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _config_option(setup)
    setup.add_argument("--url", required=True, help="where Late can reach POST /webhooks/late")
    setup.set_defaults(func=cmd_webhooks_setup)
    hook_status = webhook_commands.add_parser(
        "status",
        help="Late's view of the webhook (isActive, failureCount) and the last events received",
        epilog=WEBHOOKS_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _config_option(hook_status)
    hook_status.add_argument("--json", action="store_true", help="machine-readable output")
    hook_status.set_defaults(func=cmd_webhooks_status)

    probe = commands.add_parser(
        "probe",
        help="GET a /healthz URL; exit 0 if healthy (for container health checks)",
        epilog="example:\n  late-monitor probe http://127.0.0.1:9687/healthz   # exit 0 if 2xx",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    probe.add_argument("url", nargs="?", default="http://127.0.0.1:9687/healthz")
    probe.add_argument("-t", "--timeout", type=float, default=5.0)
    probe.set_defaults(func=cmd_probe)

    demo = commands.add_parser(
        "demo",
        help="see it work in 30 s: the monitor against the bundled simulator",
        epilog=DEMO_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--notify",
        action="append",
        metavar="URL",
        help="also send the demo's messages to this Apprise URL (repeatable)",
    )
    demo.set_defaults(func=cmd_demo)

    simulate = commands.add_parser(
        "simulate",
        help="serve the bundled fake Late API",
        epilog=SIMULATE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    simulate.add_argument("--port", type=int, default=8787)
    simulate.add_argument("--accounts", type=int, default=12)
    simulate.add_argument("--scenario", help="TOML file of accounts and timed changes")
    simulate.add_argument("--key", help="API key the simulator accepts (default: a fixed demo key)")
    simulate.add_argument("--latency", type=float, default=0.0, help="seconds added to each answer")
    simulate.add_argument("--rate-limit", type=int, default=600, help="requests per minute")
    simulate.add_argument(
        "--posts", type=float, default=0.0, help="scheduled posts per account over the next 72 h"
    )
    simulate.add_argument(
        "--webhook",
        metavar="URL",
        help="send Late's webhooks here, signed with $LATE_SIM_WEBHOOK_SECRET, when accounts "
        "change (or register one with `late-monitor webhooks setup` against the simulator)",
    )
    simulate.set_defaults(func=cmd_simulate)

    if commands.pending:  # their modules only when the command may be theirs
        from late_monitor.actions import add_parsers as add_operator_commands

        add_operator_commands(commands, config_option=_config_option, run=_operator)
    if commands.pending:
        from late_monitor.migrate import add_parser as add_migrate

        add_migrate(commands, config_option=_config_option, run=_operator)
    return parser if command is None or commands.found else build_parser()


def _operator(
    command: Callable[[LoadedConfig, argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """`silence ...` and `ack`: the settings (for the state file), then the command."""
    return lambda args: command(_loaded_for_tool(args), args)


def _split_global(argv: list[str]) -> tuple[list[str], list[str]]:
    """The leading options that belong to every command (`--config PATH`), and the rest."""
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg in ("--config", "-c"):
            index += 2
        elif arg.startswith("--config=") or (arg.startswith("-c") and not arg.startswith("--")):
            index += 1
        else:
            break
    return argv[:index], argv[index:]


def _normalise(argv: list[str]) -> list[str]:
    """`late-monitor --once` is `late-monitor run --once`, and so is `late-monitor --config X`;
    `late-monitor --config X status` is `status` with that config."""
    rest = _split_global(argv)[1]
    if not argv or (rest and not rest[0].startswith("-")):
        return argv
    if rest and rest[0] in ("-h", "--help", "--version"):
        return argv
    return ["run", *argv]


def main(argv: Sequence[str] | None = None) -> int:
    words = _normalise(list(sys.argv[1:] if argv is None else argv))
    rest = _split_global(words)[1]
    parser = build_parser(rest[0] if rest and not rest[0].startswith("-") else None)
    parser.plugin = bool(rest) and rest[0] == "check"  # unknown arguments are the top's to report
    args = parser.parse_args(words)
    if args.command in ("config", "silence", "webhooks") and not getattr(args, "func", None):
        parser.parse_args([args.command, "--help"])
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"late-monitor: config error: {REDACTOR.redact(problem)}", file=sys.stderr)
        return exc.exit_code
    except LateMonitorError as exc:
        print(f"late-monitor: {REDACTOR.redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def entry() -> NoReturn:
    """The `late-monitor` command: main(), then exit without the interpreter's teardown.

    Freeing every imported module's objects one by one took ~0.2 s here, a fifth of a
    `run --once` from cron (bench/run.py). Every command has finished its work, closed its
    state file and awaited its threads when main() returns; what remains is flushed here.
    Under a profiler or a coverage tracer the exit is the normal one, so they write out.
    """
    code = main()
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
