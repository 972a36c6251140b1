"""Config files: a bad value is a one-line error naming the option, never a traceback later."""

from __future__ import annotations

import dataclasses

import pytest

from shoal.config import ConfigError, load, option, render_defaults


@dataclasses.dataclass(frozen=True)
class Example:
    port: int = option(8080, "port to listen on", check=lambda v: 0 < v < 65536)
    timeout_s: float = option(10.0, "seconds before giving up")
    users: list[str] = option(["a"], "who may log in")
    debug: bool = option(False, "log more")


def test_defaults_round_trip_through_the_rendered_file(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text(render_defaults(Example, table="x"))
    assert load(Example, path, table="x") == Example()


def test_ints_are_accepted_for_floats(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text("timeout_s = 3\n")
    assert load(Example, path).timeout_s == 3.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port = 0\n", "option 'port': bad value 0"),
        ('port = "80"\n', "option 'port': expected int"),
        ("debug = 1\n", "option 'debug': expected true or false"),
        ("bogus = 1\n", "unknown option 'bogus'"),
        ("port = [\n", "not valid TOML"),
    ],
)
def test_bad_values_name_the_option(tmp_path, text, message):
    path = tmp_path / "x.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load(Example, path)


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(Example, tmp_path / "nope.toml")
