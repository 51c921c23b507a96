"""[state] url and its password: where each comes from, and the mistakes refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from late_monitor.config import load_settings
from late_monitor.errors import ConfigError
from tests.support.config import write_config

URL = "postgresql://monitor@db.internal:5432/late"


def test_the_password_comes_from_the_systemd_credential(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "late-state-password").write_text("s3cret-pass\n")
    config = write_config(tmp_path / "c.toml", {"state": {"url": URL}})
    loaded = load_settings(str(config), environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert loaded.state_password is not None
    assert loaded.state_password.get_secret_value() == "s3cret-pass"


def test_the_url_may_come_from_the_environment_and_needs_no_password(tmp_path: Path) -> None:
    loaded = load_settings(
        str(write_config(tmp_path / "c.toml", {})), environ={"LATE_MONITOR_STATE__URL": URL}
    )
    assert loaded.settings.state.url == URL
    assert loaded.state_password is None  # libpq's own: ~/.pgpass, PGPASSWORD, peer


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://monitor:hunter22@db/late", "state.password_file"),
        ("postgresql://monitor@db/late?password=hunter22", "state.password_file"),
        ("mysql://monitor@db/late", "only postgresql:// URLs"),
    ],
)
def test_a_url_with_a_password_or_of_another_database_is_refused(
    tmp_path: Path, url: str, says: str
) -> None:
    config = write_config(tmp_path / "c.toml", {"state": {"url": url}})
    with pytest.raises(ConfigError) as caught:
        load_settings(str(config), environ={})
    [line] = caught.value.problems
    assert "state.url" in line
    assert says in line
    assert "hunter22" not in line


def test_a_missing_password_file_is_one_line_naming_the_key(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.toml", {"state": {"url": URL, "password_file": str(tmp_path / "nope")}}
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(str(config), environ={})
    [line] = caught.value.problems
    assert "state.password_file" in line
