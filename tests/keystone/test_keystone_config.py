"""KeystoneConfig as an operator writes it: a [keystone] TOML table, checked at start-up.

Method: real TOML files through shoal.config.load; the rendered defaults must load back.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.config import ConfigError, load, render_defaults
from shoal.keystone import KeystoneConfig


def test_rendered_defaults_load_back_to_the_defaults(tmp_path: Path):
    path = tmp_path / "shoal.toml"
    path.write_text(render_defaults(KeystoneConfig, table="keystone"))
    assert load(KeystoneConfig, path, table="keystone") == KeystoneConfig()


def test_a_keystone_table_sets_credentials_and_cache(tmp_path: Path):
    path = tmp_path / "shoal.toml"
    path.write_text(
        '[keystone]\nauth_url = "http://ks:5000/"\nusername = "svc"\npassword = "s3cret"\n'
        "cache_ttl_s = 30\ncache_entries_max = 100\n"
    )
    config = load(KeystoneConfig, path, table="keystone")
    assert config.v3_url == "http://ks:5000/v3"
    assert (config.username, config.cache_ttl_s, config.cache_entries_max) == ("svc", 30.0, 100)
    assert "s3cret" not in repr(config)  # passwords stay out of logs and tracebacks


@pytest.mark.parametrize(
    "line",
    ["cache_ttl_s = -1", "timeout_s = 0", "cache_entries_max = -5", "verify_tls = 1", "colour = 3"],
)
def test_a_bad_value_is_a_one_line_start_up_error(tmp_path: Path, line: str):
    path = tmp_path / "shoal.toml"
    path.write_text(f"[keystone]\n{line}\n")
    with pytest.raises(ConfigError):
        load(KeystoneConfig, path, table="keystone")


@pytest.mark.parametrize(
    "auth_url", ["http://h:5000", "http://h:5000/", "http://h:5000/v3", "http://h:5000/v3/"]
)
def test_auth_url_with_or_without_v3_means_the_v3_api(auth_url: str):
    assert KeystoneConfig(auth_url=auth_url).v3_url == "http://h:5000/v3"
