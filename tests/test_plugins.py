"""Only the Apprise plugins the destinations use are imported, and never the wrong one.

Apprise's plugin registry is process-wide, so each case runs in a fresh interpreter.
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from typing import Any

from tests.support.sink import Sink


async def fresh_python(code: str) -> Any:
    """Run `code` in a new interpreter; it prints one JSON object as its last line."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(code),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])


LOAD_AND_SEND = """
    import asyncio, json, sys
    from late_monitor.notify import Notifier

    async def main(urls):
        notifier = Notifier(urls=urls)
        await notifier.load()
        errors = [
            await notifier.send(d.key, title="t", body="b", notify_type="info")
            for d in notifier.destinations
        ]
        return notifier, errors

    notifier, errors = asyncio.run(main({urls!r}))
    loaded = sorted(m for m in sys.modules if m.startswith("apprise.plugins."))
    print(json.dumps({{"errors": errors, "loaded": loaded,
                      "labels": [d.label for d in notifier.destinations]}}))
"""


async def test_a_json_destination_imports_only_the_json_plugin_and_delivers(sink: Sink) -> None:
    result = await fresh_python(LOAD_AND_SEND.format(urls=[sink.url(), "console://"]))

    assert result["errors"] == [None, None]
    assert len(sink.received) == 1
    assert result["loaded"] == ["apprise.plugins.base", "apprise.plugins.custom_json"]


async def test_a_schema_named_unlike_its_module_is_found_through_the_table() -> None:
    code = LOAD_AND_SEND.format(urls=["mailtos://user:secretpw@example.com", "tgram://1:abc/2"])
    code = code.replace("for d in notifier.destinations", "for d in []", 1)  # send nothing
    result = await fresh_python(code)

    loaded = result["loaded"]
    assert "apprise.plugins.telegram" in loaded
    assert "apprise.plugins.email" in loaded
    assert "apprise.plugins.slack" not in loaded


async def test_a_native_webhook_url_loads_every_plugin_as_apprise_would() -> None:
    code = LOAD_AND_SEND.format(urls=["https://discord.com/api/webhooks/4321/abcdefTOKEN"])
    code = code.replace("for d in notifier.destinations", "for d in []", 1)
    result = await fresh_python(code)

    assert result["labels"][0].startswith("discord://")
    assert "apprise.plugins.slack" in result["loaded"]


async def test_destinations_added_later_load_their_plugins_and_keep_the_console(
    sink: Sink,
) -> None:
    result = await fresh_python(
        f"""
        import asyncio, json
        from late_monitor.notify import Notifier

        async def build(urls):
            notifier = Notifier(urls=urls)
            await notifier.load()
            return notifier

        async def main():
            first = await build([{sink.url()!r}, "console://"])
            # as after a reload: a new schema, then one only a full load knows
            second = await build([{sink.url()!r}, "slack://T1/B2/C3", "console://"])
            third = await build(["https://discord.com/api/webhooks/4321/abcdefTOKEN",
                                 "console://", {sink.url()!r}])
            sent = [await n.send(d.key, title="t", body="b", notify_type="info")
                    for n in (first, second, third) for d in n.destinations
                    if d.label.startswith(("json", "console"))]
            return [len(n.destinations) for n in (first, second, third)], sent

        print(json.dumps(asyncio.run(main())))
        """
    )
    counts, sent = result

    assert counts == [2, 3, 3]
    assert sent == [None] * 6
    assert len(sink.received) == 3


async def test_no_schema_resolves_to_another_plugin_than_apprises_full_load() -> None:
    result = await fresh_python(
        """
        import json
        from late_monitor import plugins

        found = {}
        manager = plugins._manager()
        manager.load_modules()
        full = {schema: manager[schema] for schema in manager.schemas()}
        for schema, plugin in full.items():
            found[schema] = plugins.find(schema)
        wrong = [s for s, p in found.items() if p is not None and p is not full[s]]
        missing = sorted(s for s, p in found.items() if p is None)
        table = [s for s in plugins._MODULES if found.get(s) is None]
        print(json.dumps({"wrong": wrong, "missing": missing, "table_misses": table,
                          "total": len(full), "unknown": plugins.find("nosuchservice") is None}))
        """
    )

    assert result["wrong"] == []
    assert result["table_misses"] == []
    assert result["unknown"] is True
    # the common alerting destinations resolve without a full load
    for schema in ("slack", "discord", "msteams", "json", "jsons", "mailto", "tgram", "pover"):
        assert schema not in result["missing"]
