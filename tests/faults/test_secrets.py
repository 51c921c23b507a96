"""At DEBUG, through every path that prints, the API key and URL tokens appear nowhere."""

from __future__ import annotations

import signal
from pathlib import Path

import aiohttp

from late_monitor.simulator import Fault, Simulator
from tests.faults.secrets import assert_no_secrets
from tests.support.process import daemon, free_port, run_cli
from tests.support.sink import Sink

API_KEY = "sk_live_SECRETKEY_abcdef0123456789"
TOKENS = ("SLACKTOKENBBBB", "SLACKTOKENCCCCDDDD", "HOOKTOKEN5555", "PASSWORD9999")


async def test_no_secret_in_any_output_at_debug(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    sim.api_key = API_KEY
    port = free_port()
    urls = [
        sink.url("HOOKTOKEN5555"),
        "json://127.0.0.1:9/SLACKTOKENBBBB/SLACKTOKENCCCCDDDD",  # refused: fails, logged
        "json://user:PASSWORD9999@127.0.0.1:9/x",
    ]
    config = str(
        monitor_config(
            late={"api_key": API_KEY},
            notify={"urls": urls},
            log={"level": "debug", "format": "json"},
            http={"listen": f"127.0.0.1:{port}"},
        )
    )
    secrets = (API_KEY, *TOKENS)
    outputs = [await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path)]
    sim.break_account("acc_00001")
    sim.inject(Fault(status=500, path="/accounts/health"))
    outputs.append(await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path))
    for command in (
        ["status"],
        ["status", "--json"],
        ["config", "check"],
        ["test-notify"],
        ["check"],
        ["run", "--once", "--dry-run"],
    ):
        outputs.append(await run_cli(*command, "--config", config, env=base_env, cwd=tmp_path))
    sim.api_key = "rotated"
    outputs.append(await run_cli("--once", "--config", config, env=base_env, cwd=tmp_path))
    outputs.append(await run_cli("check", "--config", config, env=base_env, cwd=tmp_path))
    bad = tmp_path / "bad.toml"
    bad.write_text(
        f'[late]\napi_key = "{API_KEY}"\ntimeout = "x"\n[notify]\nurls = {urls!r}\n'.replace(
            "'", '"'
        )
    )
    outputs.append(await run_cli("--once", "--config", str(bad), env=base_env, cwd=tmp_path))
    for ran in outputs:
        assert_no_secrets(ran, *secrets)
    assert any("debug" in ran.stdout for ran in outputs)  # DEBUG really was on
    assert any("notification_failed" in ran.stdout for ran in outputs)

    sim.api_key = API_KEY
    async with daemon(Path(config), base_env, tmp_path) as run, aiohttp.ClientSession() as http:
        await run.until(lambda: run.count("poll_completed") >= 1)
        async with http.get(f"http://127.0.0.1:{port}/status") as response:
            status = await response.text()
        async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
            metrics = await response.text()
        run.signal(signal.SIGTERM)
        assert await run.wait() == 0
    for text in (status, metrics, "".join(run.lines)):
        for secret in secrets:
            assert secret not in text
