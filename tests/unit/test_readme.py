"""The README is the newcomer's contract: its configuration table and its two commands."""

import re
from pathlib import Path

from etl_assets.settings import VARIABLES, readme_table

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table():
    table_names = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", README, flags=re.MULTILINE))
    assert {variable.name for variable in VARIABLES} <= table_names


def test_the_configuration_table_is_the_declarations():
    """The table is made from the settings' declarations, so a default or a help text cannot drift from the code;
    after changing a setting, print it again with
    `uv run python -c "from etl_assets.settings import readme_table; print(readme_table())"`."""
    assert readme_table() in README


def test_quick_start_has_the_two_commands():
    assert "uv run etl dev" in README
    assert "uv run pytest" in README


def test_ci_runs_the_readme_test_command():
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert "uv run pytest" in ci
