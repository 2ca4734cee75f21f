"""The Dockerfile's roles name commands that exist: each answers --help from the project's environment.

No container engine runs here, so the image itself is not built; the commands it runs are checked, in this
process, through the very function each console script calls (its entry point)."""

import itertools
import re
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

DOCKERFILE = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
ROLES = dict(re.findall(r"^#   (\w[\w ]*?)\s{2,}(\S.*)$", DOCKERFILE, flags=re.MULTILINE))
BIN = Path(sys.executable).parent


def test_the_dockerfile_documents_every_role():
    assert set(ROLES) == {"webserver", "daemon", "code server", "migrations", "collector"}


@pytest.mark.parametrize("role", sorted(ROLES))
def test_each_role_command_exists(role, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    executable, *words = ROLES[role].split()
    subcommands = list(itertools.takewhile(lambda word: not word.startswith("-"), words))
    assert (BIN / executable).is_file(), f"{executable} is not installed in the project's environment"
    [script] = entry_points(group="console_scripts", name=executable)
    monkeypatch.setattr(sys, "argv", [str(BIN / executable), *subcommands, "--help"])
    with pytest.raises(SystemExit) as exited:
        script.load()()
    assert exited.value.code in (0, None), capsys.readouterr().err
    assert "Usage" in capsys.readouterr().out


def test_the_image_runs_as_a_non_root_user_and_installs_from_the_lock():
    assert re.search(r"^USER (?!root)\w+", DOCKERFILE, flags=re.MULTILINE)
    assert "uv sync --frozen --no-dev" in DOCKERFILE
