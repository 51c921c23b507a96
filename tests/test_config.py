"""Configuration: file, environment overrides, key sources, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from late_monitor.config import format_duration, load_settings, parse_duration
from late_monitor.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("5m", 300),
        ("24h", 86400),
        ("7d", 604800),
        ("1.5h", 5400),
        (42, 42),
        ("0", 0),
        ("2w", 1209600),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5 minutes", "-5m", "", "1y", True])
def test_bad_durations_are_rejected(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    assert [format_duration(s) for s in (604800, 86400, 90, 300, 1.5)] == [
        "7d",
        "1d",
        "90s",
        "5m",
        "1.5s",
    ]


def test_file_then_environment_override(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[late]\nbase_url = "http://file"\n[monitor]\ninterval = "2m"\n')
    env = {"LATE_MONITOR_MONITOR__INTERVAL": "90s", "LATE_API_KEY": "sk_env_key_123"}
    loaded = load_settings(str(config), environ=env)
    assert loaded.settings.late.base_url == "http://file"
    assert loaded.settings.monitor.interval == 90
    assert loaded.require_api_key() == "sk_env_key_123"
    assert loaded.sources["monitor.interval"] == "LATE_MONITOR_MONITOR__INTERVAL"
    assert loaded.sources["late.base_url"] == str(config)
    assert loaded.sources["monitor.confirm_after"] == "default"


def test_key_from_file_and_from_systemd_credential(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk_from_file_999\n")
    config = tmp_path / "c.toml"
    config.write_text(f'[late]\napi_key_file = "{key_file}"\n')
    assert load_settings(str(config), environ={}).require_api_key() == "sk_from_file_999"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "late-api-key").write_text("sk_credential_42")
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    loaded = load_settings(str(empty), environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert loaded.require_api_key() == "sk_credential_42"
    assert loaded.api_key_source == "systemd credential late-api-key"


def test_missing_key_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("")
    with pytest.raises(ConfigError, match=r"late\.api_key: no API key"):
        load_settings(str(config), environ={}).require_api_key()


def test_named_config_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(str(tmp_path / "nope.toml"), environ={})


def test_every_problem_is_one_line_naming_key_and_file_without_the_secret(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[late]\napi_key = 12345678901\ntimeout = "soon"\n[monitor]\nconfirm_after = 0\n'
        'detail = "sometimes"\n[bogus]\nx = 1\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(str(config), environ={})
    problems = caught.value.problems
    text = "\n".join(problems)
    assert len(problems) == 5
    assert f"{config}: late.timeout: a duration like" in text
    assert f"{config}: monitor.confirm_after:" in text
    assert f"{config}: monitor.detail:" in text
    assert f"{config}: bogus: unknown key" in text
    assert "12345678901" not in text


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[late\n")
    with pytest.raises(ConfigError, match=r"c\.toml: not valid TOML"):
        load_settings(str(config), environ={})


def test_environment_error_names_the_variable(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("")
    with pytest.raises(
        ConfigError, match=r"LATE_MONITOR_MONITOR__CONFIRM_AFTER: monitor\.confirm_after"
    ):
        load_settings(str(config), environ={"LATE_MONITOR_MONITOR__CONFIRM_AFTER": "-1"})


def test_the_example_config_is_valid_and_documents_every_key() -> None:
    example = Path(__file__).parent.parent / "config.example.toml"
    loaded = load_settings(str(example), environ={"LATE_API_KEY": "sk_x_123456"})
    text = example.read_text()
    for key in loaded.sources:
        section, name = key.split(".")
        assert f"[{section}]" in text
        assert f"\n{name} =" in text or f"[{key}]" in text, key


def test_the_webhook_secret_comes_from_the_file_variable_secret_file_or_credential(
    tmp_path: Path,
) -> None:
    secret = "whsec_" + "a1b2c3d4" * 4
    config = tmp_path / "c.toml"
    config.write_text(f'[http]\nlisten = "127.0.0.1:9687"\n[webhooks]\nsecret = "{secret}"\n')
    loaded = load_settings(str(config), environ={})
    assert loaded.webhook_secret is not None
    assert loaded.webhook_secret.get_secret_value() == secret
    assert loaded.warnings == ()

    empty = tmp_path / "empty.toml"
    empty.write_text('[http]\nlisten = "127.0.0.1:9687"\n')
    assert load_settings(str(empty), environ={}).webhook_secret is None  # the endpoint is off
    from_env = load_settings(str(empty), environ={"LATE_MONITOR_WEBHOOKS__SECRET": secret})
    assert from_env.webhook_secret is not None
    assert from_env.sources["webhooks.secret"] == "LATE_MONITOR_WEBHOOKS__SECRET"

    secret_file = tmp_path / "secret"
    secret_file.write_text(secret + "\n")
    by_file = tmp_path / "f.toml"
    by_file.write_text(f'[http]\nlisten = ":9687"\n[webhooks]\nsecret_file = "{secret_file}"\n')
    loaded = load_settings(str(by_file), environ={})
    assert loaded.webhook_secret is not None
    assert loaded.webhook_secret.get_secret_value() == secret

    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "late-webhook-secret").write_text(secret)
    loaded = load_settings(str(empty), environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert loaded.webhook_secret is not None
    assert loaded.sources["webhooks.secret"] == "systemd credential late-webhook-secret"


def test_webhook_settings_mistakes_are_one_line_each(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[webhooks]\nsecret = "tiny9x"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(str(config), environ={})
    (problem,) = caught.value.problems
    assert problem.startswith(f"{config}: webhooks.secret: a webhook secret needs 16")
    assert "tiny9x" not in problem
    secret = "x" * 32
    alone = tmp_path / "a.toml"
    alone.write_text(f'[webhooks]\nsecret = "{secret}"\n')
    warnings = {w.event: w.text for w in load_settings(str(alone), environ={}).warnings}
    assert set(warnings) == {"webhooks_not_served"}
    both = tmp_path / "both.toml"
    both.write_text(f'[webhooks]\nsecret = "{secret}"\nsecret_file = "/nonexistent"\n')
    with pytest.raises(ConfigError, match="both set; keep one"):
        load_settings(str(both), environ={})
    bad = tmp_path / "grace.toml"
    bad.write_text('[webhooks]\npoll_grace = "10d"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(str(bad), environ={})
    (problem,) = caught.value.problems
    assert problem.startswith(f"{bad}: webhooks.poll_grace: at most 1h")
    often = tmp_path / "often.toml"
    often.write_text(
        f'[http]\nlisten = ":1"\n[webhooks]\nsecret = "{secret}"\nwatch_every = "1s"\n'
    )
    warned = load_settings(str(often), environ={}).warnings
    assert [w.event for w in warned] == ["webhook_watch_often"]
    broken = tmp_path / "b.toml"
    broken.write_text('[webhooks]\nsecret = "two\\nlines-of-secret-here"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(str(broken), environ={})
    (problem,) = caught.value.problems
    assert "the webhook secret contains a line break" in problem
    assert "lines-of-secret" not in problem
    missing = tmp_path / "m.toml"
    missing.write_text(f'[webhooks]\nsecret_file = "{tmp_path / "nope"}"\n')
    with pytest.raises(ConfigError, match=r"webhooks\.secret_file: cannot read"):
        load_settings(str(missing), environ={})
