"""`routerwatch gate --install claude|codex` / `--uninstall`: the hook entry in the agent's settings.

Claude Code: `hooks.PreToolUse` in ~/.claude/settings.json (`--scope user`), <project>/.claude/
settings.json (`project`) or settings.local.json (`local`). Codex: `hooks.PreToolUse` in
$CODEX_HOME/hooks.json (default ~/.codex) or <project>/.codex/hooks.json; Codex asks the user to
review and trust a new hook (`/hooks`) before it runs it.

Reversible: the entry is recognised by its command (`... gate --agent <agent>`), installing twice
replaces it, uninstalling removes exactly it (and a matcher group it leaves empty) and keeps every
other setting. Files are rewritten atomically with their mode kept; a file that is not a JSON object
is left alone (the error says so).
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

MARK = " gate --agent "
SCOPES = ("user", "project", "local")


class InstallError(ValueError):
    """A settings file the installer will not touch; the message names it."""


def settings_path(agent: str, scope: str, project: Path | None = None, home: Path | None = None,
                  env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ if env is None else env)
    home = home or Path(env.get("HOME") or Path.home())
    project = project or Path.cwd()
    if agent == "claude":
        if scope == "user":
            return home / ".claude" / "settings.json"
        return project / ".claude" / ("settings.local.json" if scope == "local" else "settings.json")
    if agent == "codex":
        if scope == "user":
            return Path(env["CODEX_HOME"]) / "hooks.json" if env.get("CODEX_HOME") else home / ".codex" / "hooks.json"
        return project / ".codex" / "hooks.json"
    raise InstallError(f"no hook installer for {agent!r} (claude, codex)")


def hook_command(exe: str, agent: str, store: str | None = None, policy: str | None = None) -> str:
    parts = [exe, "gate", "--agent", agent]
    if store:
        parts += ["--store", store]
    if policy:
        parts += ["--policy", policy]
    return shlex.join(parts)


def _load(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text() or "{}")
    except ValueError as exc:
        raise InstallError(f"{path}: not valid JSON ({exc}); not changed") from None
    if not isinstance(data, dict):
        raise InstallError(f"{path}: not a JSON object; not changed")
    return data


def _save(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    tmp = path.with_name(f".{path.name}.routerwatch.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def _ours(hook: object, agent: str) -> bool:
    return isinstance(hook, dict) and MARK + agent in f" {hook.get('command', '')}"


def _without(data: dict, agent: str) -> tuple[dict, int]:
    """`data` with our entries removed (and matcher groups that held only ours); (data, removed)."""
    hooks = data.get("hooks")
    if not isinstance(hooks, dict) or not isinstance(hooks.get("PreToolUse"), list):
        return data, 0
    removed, groups = 0, []
    for g in hooks["PreToolUse"]:
        if isinstance(g, dict) and isinstance(g.get("hooks"), list):
            keep = [h for h in g["hooks"] if not _ours(h, agent)]
            removed += len(g["hooks"]) - len(keep)
            if not keep and len(g["hooks"]):
                continue
            g = {**g, "hooks": keep}
        groups.append(g)
    hooks = {**hooks, "PreToolUse": groups}
    if not groups:
        del hooks["PreToolUse"]
    data = {**data, "hooks": hooks}
    if not hooks:
        del data["hooks"]
    return data, removed


def install(agent: str, path: Path, command: str, timeout: int = 30) -> bool:
    """Add (or replace) the hook; True when the file changed."""
    data = _load(path)
    before = json.dumps(data, sort_keys=True)
    data, _ = _without(data, agent)
    hooks = data.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise InstallError(f"{path}: `hooks` is not an object; not changed")
    entry = {"type": "command", "command": command, "timeout": timeout}
    hooks.setdefault("PreToolUse", []).append({"matcher": "*", "hooks": [entry]})
    if json.dumps(data, sort_keys=True) == before:
        return False
    _save(path, data)
    return True


def uninstall(agent: str, path: Path) -> int:
    """Remove our hook entries; the number removed (0: nothing was there)."""
    data = _load(path)
    data, removed = _without(data, agent)
    if removed:
        _save(path, data)
    return removed
