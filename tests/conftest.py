"""Shared fixtures: a fresh store per test, the shared corpus, and the CLI as a library call."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# fixtures of the fleet's central services (PostgreSQL, S3), usable by any test that names them
pytest_plugins = ["tests.support.fleet"]

REPO = Path(__file__).resolve().parent.parent
# beside the checkout (CI, /work/main); $ROUTERWATCH_CORPUS for a checkout elsewhere (a git worktree)
CORPUS = Path(os.environ.get("ROUTERWATCH_CORPUS") or REPO.parent / "shared" / "corpus" / "public")
BIN = Path(sys.executable).parent


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """A path for a new store (created on first write)."""
    return tmp_path / "store"


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"the shared corpus is not beside this checkout ({CORPUS}); CI always has it")
    return CORPUS


def run_cli(*args: str, env: dict | None = None, input: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed `routerwatch` console script as a user would."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(
        [str(BIN / "routerwatch"), *args], capture_output=True, text=True, env=e, input=input, timeout=timeout
    )


@pytest.fixture(autouse=True)
def _umask_restored():
    """Every test starts with the umask the suite started with. A test that runs a command in-process
    (collector.cli.main tightens the process umask to 027 for good, as the real command does) must not
    change what later tests create: an install into a scratch root then made var/lib 0750, and the
    dashboard's user could not reach the store (a failure that appeared only in the whole suite)."""
    before = os.umask(0o022)
    os.umask(before)
    yield
    os.umask(before)
