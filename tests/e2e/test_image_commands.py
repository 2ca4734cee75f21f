"""The Dockerfile's roles name commands that exist: each answers --help from the project's environment.

No container engine runs here, so the image itself is not built; the commands it runs are checked."""

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCKERFILE = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
ROLES = dict(re.findall(r"^#   (\w[\w ]*?)\s{2,}(\S.*)$", DOCKERFILE, flags=re.MULTILINE))
BIN = Path(sys.executable).parent


def test_the_dockerfile_documents_every_role():
    assert set(ROLES) == {"webserver", "daemon", "code server", "migrations", "collector"}


@pytest.mark.parametrize("role", sorted(ROLES))
def test_each_role_command_exists(role):
    executable, *words = ROLES[role].split()
    subcommands = list(itertools.takewhile(lambda word: not word.startswith("-"), words))
    result = subprocess.run(
        [str(BIN / executable), *subcommands, "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_the_image_runs_as_a_non_root_user_and_installs_from_the_lock():
    assert re.search(r"^USER (?!root)\w+", DOCKERFILE, flags=re.MULTILINE)
    assert "uv sync --frozen --no-dev" in DOCKERFILE
