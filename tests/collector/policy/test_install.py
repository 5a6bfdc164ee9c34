"""`routerwatch gate --install/--uninstall`: the hook entry in Claude Code's and Codex's settings,
added and removed exactly, every other setting kept, file modes kept, broken files left alone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from collector.policy import install
from tests.conftest import run_cli


def test_install_and_uninstall_are_reversible(tmp_path: Path) -> None:
    path = install.settings_path("claude", "project", tmp_path)
    assert path == tmp_path / ".claude" / "settings.json"
    path.parent.mkdir()
    original = {"permissions": {"allow": ["Bash(ls:*)"]}, "hooks": {"PreToolUse": [
        {"matcher": "Edit", "hooks": [{"type": "command", "command": "my-linter"}]}]}}
    path.write_text(json.dumps(original))
    os.chmod(path, 0o640)
    cmd = install.hook_command("/opt/rw/bin/routerwatch", "claude", "/var/lib/routerwatch")
    assert install.install("claude", path, cmd) is True
    data = json.loads(path.read_text())
    groups = data["hooks"]["PreToolUse"]
    assert groups[0] == original["hooks"]["PreToolUse"][0] and data["permissions"] == original["permissions"]
    assert groups[1] == {"matcher": "*", "hooks": [{"type": "command", "timeout": 30, "command":
                         "/opt/rw/bin/routerwatch gate --agent claude --store /var/lib/routerwatch"}]}
    assert install.install("claude", path, cmd) is False  # twice: nothing changes
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    assert install.uninstall("claude", path) == 1
    assert json.loads(path.read_text()) == original
    assert install.uninstall("claude", path) == 0
    path.write_text("[1, 2]")
    with pytest.raises(install.InstallError, match="not a JSON object"):
        install.install("claude", path, cmd)
    assert install.settings_path("codex", "user", env={"CODEX_HOME": "/c", "HOME": "/h"}) == Path("/c/hooks.json")


def test_cli_install_writes_the_hook_that_answers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    r = run_cli("gate", "--install", "claude", "--store", str(tmp_path / "store"), env={"HOME": str(home)})
    assert r.returncode == 0, r.stderr
    data = json.loads((home / ".claude" / "settings.json").read_text())
    (cmd,) = [h["command"] for g in data["hooks"]["PreToolUse"] for h in g["hooks"]]
    assert " gate --agent claude --store " in cmd and cmd.split()[0].endswith("routerwatch")
    r = run_cli("gate", "--uninstall", "claude", env={"HOME": str(home)})
    assert r.returncode == 0 and json.loads((home / ".claude" / "settings.json").read_text()) == {}
    (home / ".claude" / "settings.json").write_text("{broken")
    r = run_cli("gate", "--install", "claude", env={"HOME": str(home)})
    assert r.returncode == 2 and "not valid JSON" in r.stderr and "Traceback" not in r.stderr
