"""The rolling detail sweep: every account's detail is refreshed within `detail_every`,
a share each cycle, inside the request budget; and what it finds is news."""

from __future__ import annotations

import re
from pathlib import Path

from late_monitor.simulator import DEFAULT_KEY, Simulator, make_accounts
from tests.support.config import write_config
from tests.support.process import run_cli
from tests.support.sink import Sink

DETAIL = re.compile(r"/accounts/(acc_\d+)/health$")


def detailed(sim: Simulator) -> list[str]:
    return [m.group(1) for _, path, _ in sim.requests if (m := DETAIL.search(path))]


async def test_the_sweep_covers_every_account_a_share_per_cycle_and_finds_a_lost_scope(
    sink: Sink, base_env, tmp_path: Path
) -> None:
    sim = Simulator(make_accounts(12))
    await sim.start()
    try:
        config = write_config(
            tmp_path / "late-monitor.toml",
            {
                "late": {"base_url": sim.base_url, "api_key": DEFAULT_KEY},
                # 12 accounts * 10 s / 60 s = 2 accounts' detail per cycle
                "monitor": {"interval": "10s", "detail_every": "60s", "detail": "changed"},
                "state": {"path": str(tmp_path / "state.db")},
                "notify": {"urls": [sink.url()]},
            },
        )
        per_run = []
        for run in range(7):
            if run == 3:  # a posting scope revoked while the list still says all is well
                sim.set("acc_00001", revoked={"instagram_content_publish"})
            before = len(detailed(sim))
            ran = await run_cli("--once", "--config", str(config), env=base_env, cwd=tmp_path)
            assert ran.code == 0, ran.output
            per_run.append(detailed(sim)[before:])
    finally:
        await sim.stop()

    assert [len(ids) for ids in per_run] == [2] * 7  # the same share every cycle
    first_six = [account for ids in per_run[:6] for account in ids]
    assert sorted(first_six) == sorted(sim.accounts)  # all 12 within detail_every
    assert per_run[6] == per_run[0]  # then again from the oldest
    lost = [m for m in sink.received if "instagram_content_publish" in m["message"]]
    assert len(lost) == 1
    assert lost[0]["type"] == "failure"
