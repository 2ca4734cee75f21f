"""The README is the newcomer's contract: its configuration table and its two commands."""

import re
from pathlib import Path

from etl_assets.settings import VARIABLES

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table():
    table_names = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", README, flags=re.MULTILINE))
    assert {variable.name for variable in VARIABLES} <= table_names


def test_quick_start_has_the_two_commands():
    assert "uv run etl dev" in README
    assert "uv run pytest" in README


def test_ci_runs_the_readme_test_command():
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert "uv run pytest" in ci
