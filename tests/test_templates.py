"""[notify] templates: Jinja2 (sandboxed) overrides of the built-in texts, checked at load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from late_monitor.render import BUILTIN, check_templates
from late_monitor.simulator import Simulator
from tests.support.process import run_cli
from tests.support.sink import Sink


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


async def test_templates_override_the_title_and_the_body_per_kind_and_format(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    templates = write(
        tmp_path / "templates",
        {
            "title/digest.j2": "{{ counts.attention }} broken Late account(s)",
            "body/degraded.text.j2": (
                "{{ account.platform }}/{{ account.name }} went {{ account.status }}\n"
                "{{ impact.summary }} | {{ links.command }}"
            ),
            "body/account.markdown.j2": "*{{ account.name }}*",  # not this destination's format
        },
    )
    config = monitor_config(notify={"urls": [sink.url()], "templates": str(templates)})
    assert (await run_cli("--once", "--config", str(config), env=base_env, cwd=tmp_path)).code == 0
    sim.set("acc_00001", display_name="<b>Bold</b>", username="")
    sim.break_account("acc_00001")
    ran = await run_cli("--once", "--config", str(config), env=base_env, cwd=tmp_path)
    assert ran.code == 0, ran.output
    (message,) = sink.received
    assert message["title"] == "1 broken Late account(s)"
    assert message["message"] == (
        "instagram/<b>Bold</b> went error\n"
        "  no scheduled posts in the next 3 days | late-monitor reconnect acc_00001"
    )


async def test_a_template_error_at_load_is_a_config_error_naming_file_and_line(
    sim: Simulator, sink: Sink, monitor_config, base_env, tmp_path: Path
) -> None:
    templates = write(
        tmp_path / "templates", {"body/account.html.j2": "<p>\n{{ account.name }\n</p>"}
    )
    config = monitor_config(notify={"urls": [sink.url()], "templates": str(templates)})
    for command in (["run", "--once"], ["config", "check"]):
        ran = await run_cli(*command, "--config", str(config), env=base_env, cwd=tmp_path)
        assert ran.code == 2, ran.output
        (line,) = ran.stderr.strip().splitlines()
        assert line.startswith(f"late-monitor: config error: {config}: notify.templates: ")
        assert f"{templates / 'body/account.html.j2'}:2: " in line
    assert sim.count() == 0


async def test_a_file_that_is_no_template_name_is_refused(tmp_path: Path) -> None:
    write(tmp_path, {"body/acount.text.j2": "x", "title/digest.j2": "ok"})
    (problem,) = check_templates(str(tmp_path))
    assert "acount.text.j2: not a template late-monitor uses" in problem


@pytest.mark.parametrize(
    "template",
    [
        "{{ account.no_such_field }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",  # the sandbox refuses it
        "{{ 1 / 0 }}",
    ],
)
async def test_a_template_that_fails_while_rendering_falls_back_to_the_built_in_text(
    sim: Simulator,
    sink: Sink,
    monitor_config,
    base_env,
    tmp_path: Path,
    template: str,
) -> None:
    templates = write(tmp_path / "templates", {"body/account.j2": template})
    config = monitor_config(notify={"urls": [sink.url()], "templates": str(templates)})
    assert (await run_cli("--once", "--config", str(config), env=base_env, cwd=tmp_path)).code == 0
    sim.break_account("acc_00001")
    ran = await run_cli("--once", "--config", str(config), env=base_env, cwd=tmp_path)
    assert ran.code == 0, ran.output
    (message,) = sink.received
    assert message["message"].startswith("[FAILURE] instagram @instagram_00001 (acc_00001)")
    logged = [json.loads(line) for line in ran.stdout.splitlines() if line.startswith("{")]
    (failed,) = [entry for entry in logged if entry["event"] == "template_failed"]
    assert failed["template"].endswith("body/account.j2")
    assert failed["fallback"] == "built-in text"


def test_the_built_in_texts_are_templates_a_directory_of_overrides_can_start_from() -> None:
    names = sorted(p.relative_to(BUILTIN).as_posix() for p in BUILTIN.rglob("*.j2"))
    assert "body/account.text.j2" in names
    assert "title/digest.j2" in names
    assert check_templates(str(BUILTIN)) == []


def _render_twice(cache_dir: Path, templates: Path, **options: bool) -> list[str]:
    from jinja2 import Environment, FileSystemLoader

    from late_monitor.template_cache import TemplateCache

    said = []
    for _ in range(2):  # the second environment is a new process's, as far as Jinja2 knows
        env = Environment(  # noqa: S701 - plain text, as the messages' own escaping is
            loader=FileSystemLoader(str(templates)),
            bytecode_cache=TemplateCache(str(cache_dir)),
            **options,
        )
        said.append(env.get_template("t.j2").render(name="Ada"))
    return said


def test_compiled_templates_are_kept_between_processes_and_say_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.dont_write_bytecode", False)
    text = "{% if name %}\n  hi {{ name }}\n{% endif %}"
    templates = write(tmp_path / "templates", {"t.j2": text})
    cache = tmp_path / "cache"
    cache.mkdir()
    assert _render_twice(cache, templates, trim_blocks=True) == ["  hi Ada\n"] * 2
    assert len(list(cache.iterdir())) == 1
    # another environment's options compile the same text otherwise: never its code
    assert _render_twice(cache, templates, trim_blocks=False) == ["\n  hi Ada\n"] * 2
    assert len(list(cache.iterdir())) == 2
    (templates / "t.j2").write_text("bye {{ name }}")  # an edited template is compiled again
    assert _render_twice(cache, templates, trim_blocks=True) == ["bye Ada"] * 2


def test_a_damaged_or_unwritable_template_cache_costs_no_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.dont_write_bytecode", False)
    templates = write(tmp_path / "templates", {"t.j2": "hi {{ name }}"})
    cache = tmp_path / "cache"
    cache.mkdir()
    _render_twice(cache, templates)
    for entry in cache.iterdir():
        entry.write_bytes(entry.read_bytes()[:40] + b"\x00garbage")
    assert _render_twice(cache, templates) == ["hi Ada"] * 2
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    assert _render_twice(not_a_directory, templates) == ["hi Ada"] * 2


def test_no_compiled_template_is_written_under_pythondontwritebytecode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.dont_write_bytecode", True)
    templates = write(tmp_path / "templates", {"t.j2": "hi {{ name }}"})
    cache = tmp_path / "cache"
    cache.mkdir()
    assert _render_twice(cache, templates) == ["hi Ada"] * 2
    assert list(cache.iterdir()) == []
