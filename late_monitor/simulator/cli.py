"""`late-monitor simulate`: the fake Late API on a loopback port until interrupted."""

from __future__ import annotations

import asyncio
import signal
import sys

from late_monitor.errors import ConfigError
from late_monitor.simulator.app import DEFAULT_KEY, Simulator, make_accounts
from late_monitor.simulator.scenario import Change, Scenario, load_scenario
from late_monitor.simulator.webhooks import EVENTS


def _announce(change: Change) -> None:
    if change.label:
        print(f"  [{change.at:g}s] {change.label}", flush=True)


async def _serve(sim: Simulator, port: int, scenario: Scenario | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        base_url = await sim.start(port=port)
    except OSError as exc:
        raise ConfigError(
            f"--port {port}: cannot listen on 127.0.0.1:{port} ({exc.strerror})"
        ) from None
    print(f"Late API simulator: {len(sim.accounts)} accounts", flush=True)
    print(f'  base_url = "{base_url}"', flush=True)
    print(f"  api key  = {sim.api_key}", flush=True)
    for hook in sim.webhooks.hooks.values():
        print(f"  webhooks to {hook.url} (signed with the secret given)", flush=True)
    print("Ctrl-C to stop.", flush=True)
    # The scenario's timed changes play while the simulator serves.
    playing = asyncio.create_task(scenario.play(sim, on_change=_announce)) if scenario else None
    try:
        await stop.wait()
    finally:
        if playing is not None:
            playing.cancel()
            await asyncio.gather(playing, return_exceptions=True)
        await sim.stop()


def serve(
    *,
    port: int,
    accounts: int,
    scenario: str | None,
    key: str | None,
    latency: float = 0.0,
    rate_limit: int = 600,
    webhook: str = "",
    webhook_secret: str = "",
) -> int:
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: not a port number")
    if accounts < 0:
        raise ConfigError(f"--accounts {accounts}: cannot be negative")
    loaded = load_scenario(scenario) if scenario else None
    if loaded is not None:
        sim = loaded.simulator(api_key=key or DEFAULT_KEY)
    else:
        sim = Simulator(
            make_accounts(accounts),
            api_key=key or DEFAULT_KEY,
            latency=latency,
            rate_limit=rate_limit,
        )
    if webhook:  # as `late-monitor webhooks setup` would register it through the API
        if not webhook.startswith(("http://", "https://")) or not webhook_secret:
            raise ConfigError("--webhook needs an http(s) URL and --webhook-secret")
        sim.webhooks.add(name="late-monitor", url=webhook, secret=webhook_secret,
                         events=list(EVENTS))  # fmt: skip
    asyncio.run(_serve(sim, port, loaded))
    print("simulator stopped", file=sys.stderr)
    return 0
