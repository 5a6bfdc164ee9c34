"""Find agents and their configured endpoints (live processes + config files) and record them.

Precedence decides which of several settings of the same variable an agent really uses
(`effective`): Claude Code applies its settings files' `env` block over the shell's environment
(project local > project > user > process environment); the other agents let the environment win
over their files (process environment > project file > user file).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import pwd
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from collector import config
from collector.inventory.agents import agent_of, kind_of
from collector.inventory.files import HOME_FILES, PROJECT_FILES, Setting, is_env_ref, read_settings
from collector.secrets import Fingerprinter, canonical, detect, placeholder

PROC = Path("/proc")
_RANK_CLAUDE = {"project-local": 4, "project": 3, "user": 2, "process": 1}
_RANK_OTHER = {"process": 4, "project-local": 3, "project": 2, "user": 1}


@dataclass
class AgentProcess:
    pid: int
    agent: str
    exe: str | None
    argv: list[str]
    environ: dict[str, str]
    cwd: str | None
    uid: int | None
    start_time: float | None


@dataclass
class Inventory:
    rows: list[dict] = field(default_factory=list)  # agent_configs
    secrets: list[dict] = field(default_factory=list)  # secrets_seen
    errors: list[str] = field(default_factory=list)


def read_environ(pid: int) -> dict[str, str]:
    """A process's environment as it was at exec (needs the same uid or root)."""
    raw = (PROC / str(pid) / "environ").read_bytes()
    env = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep and k:
            env[k.decode("utf-8", "replace")] = v.decode("utf-8", "replace")
    return env


def read_agent_process(pid: int) -> AgentProcess | None:
    """The process if it is an agent (see agents.agent_of), else None."""
    from collector.wrap import process_start_time

    base = PROC / str(pid)
    try:
        argv = [a.decode("utf-8", "replace") for a in (base / "cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return None
    try:
        exe: str | None = os.readlink(base / "exe")
    except OSError:
        exe = None
    try:
        environ = read_environ(pid)
    except OSError:
        environ = {}
    agent = agent_of(exe, argv, environ)
    if agent is None:
        return None
    try:
        cwd: str | None = os.readlink(base / "cwd")
    except OSError:
        cwd = None
    try:
        uid: int | None = (base).stat().st_uid
    except OSError:
        uid = None
    return AgentProcess(pid, agent, exe, argv, environ, cwd, uid, process_start_time(pid))


def agent_processes(pids: Iterable[int] | None = None) -> list[AgentProcess]:
    """Every running agent (or only `pids`)."""
    if pids is None:
        pids = sorted(int(d.name) for d in PROC.iterdir() if d.name.isdigit())
    me = os.getpid()
    return [p for pid in pids if pid != me and (p := read_agent_process(pid)) is not None]


def env_settings(proc: AgentProcess) -> list[Setting]:
    out = []
    for k, v in proc.environ.items():
        kind = kind_of(k)
        if kind is None or not v:
            continue
        if kind == "credential" and is_env_ref(v):
            kind = "credential-ref"
        out.append(Setting(proc.agent, k, kind, v, source="env", path=f"/proc/{proc.pid}/environ", scope="process"))
    return out


def file_settings(home: Path | None, project: Path | None, agent: str | None = None
                  ) -> tuple[list[Setting], list[str]]:
    """Settings from a home directory's and a project's known files (optionally one agent's only)."""
    out: list[Setting] = []
    errors: list[str] = []
    todo: list[tuple[Path, object, str]] = []
    if home is not None:
        todo += [(home / rel, parser, "user") for rel, parser in HOME_FILES]
    if project is not None:
        todo += [(project / rel, parser, "project-local" if rel.endswith(".local.json") else "project")
                 for rel, parser in PROJECT_FILES]
    seen: set[Path] = set()
    for path, parser, scope in todo:
        rp = path.resolve() if path.exists() else path
        if rp in seen or not path.is_file():
            continue
        seen.add(rp)
        settings, err = read_settings(path, parser, scope)  # type: ignore[arg-type]
        if err:
            errors.append(err)
        out.extend(s for s in settings if agent is None or s.agent == agent)
    return out, errors


def _basename(variable: str) -> str:
    return variable.removeprefix("env.")


def mark_effective(settings: list[Setting]) -> None:
    """Per (agent, variable), only the highest-precedence setting stays effective."""
    best: dict[tuple[str, str], int] = {}
    for s in settings:
        ranks = _RANK_CLAUDE if s.agent == "claude-code" else _RANK_OTHER
        key = (s.agent, _basename(s.variable))
        best[key] = max(best.get(key, 0), ranks.get(s.scope, 0))
    for s in settings:
        ranks = _RANK_CLAUDE if s.agent == "claude-code" else _RANK_OTHER
        if ranks.get(s.scope, 0) < best[(s.agent, _basename(s.variable))]:
            s.effective = False


def split_endpoint(value: str) -> tuple[str, str | None, int | None, str | None]:
    """(URL without userinfo, host, port, the userinfo password if any)."""
    v = value.strip()
    u = urlsplit(v if "://" in v else "//" + v)
    try:
        port = u.port
    except ValueError:
        port = None
    host = (u.hostname or "").lower() or None
    if port is None and u.scheme in ("https", "wss"):
        port = 443
    elif port is None and u.scheme in ("http", "ws"):
        port = 80
    clean = v
    if u.username or u.password:
        netloc = u.netloc.rsplit("@", 1)[1]
        clean = u._replace(netloc=netloc).geturl() if "://" in v else netloc + v.split(u.netloc, 1)[1]
    return clean, host, port, u.password


def _user_of(uid: int | None) -> str | None:
    if uid is None:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _file_facts(path: str, cache: dict) -> tuple[dt.datetime | None, str | None, int | None]:
    if path in cache:
        return cache[path]
    facts: tuple[dt.datetime | None, str | None, int | None] = (None, None, None)
    if not path.startswith("/proc/"):
        try:
            st = os.stat(path)
            data = Path(path).read_bytes()
            facts = (dt.datetime.fromtimestamp(st.st_mtime, dt.UTC).replace(tzinfo=None),
                     hashlib.sha256(data).hexdigest(), st.st_uid)
        except OSError:
            pass
    cache[path] = facts
    return facts


def to_rows(settings: list[Setting], fp: Fingerprinter, *, host_id: str, now: dt.datetime,
            pid: int | None = None, process_start: float | None = None, uid: int | None = None,
            out: Inventory) -> None:
    """Settings -> agent_configs rows (+ secrets_seen rows for credentials); raw secrets stop here."""
    facts: dict = {}
    endpoints = {s.agent: split_endpoint(s.value)[1] for s in settings if s.kind == "endpoint" and s.effective}
    for s in settings:
        mtime, digest, owner = _file_facts(s.path, facts)
        row_uid = uid if uid is not None else owner
        row = {
            "ts": now, "host_id": host_id, "user": _user_of(row_uid), "uid": row_uid, "agent": s.agent, "pid": pid,
            "process_start": process_start, "source": s.source, "path": s.path, "scope": s.scope,
            "variable": s.variable, "kind": s.kind, "effective": s.effective, "file_mtime": mtime,
            "file_sha256": digest,
        }
        secrets_found: list[tuple[str, str, str]] = []  # (kind, canonical, location suffix)
        if s.kind in ("endpoint", "proxy"):
            clean, host, port, password = split_endpoint(s.value)
            row.update(endpoint=clean, endpoint_host=host, endpoint_port=port)
            if password:
                secrets_found.append(("proxy_password", password, ".password"))
        elif s.kind == "credential":
            found = detect(s.value)
            kind = found[0].kind if len(found) == 1 and found[0].end - found[0].start >= len(s.value.strip()) - 8 \
                else "config_credential"
            value = found[0].value if kind != "config_credential" else s.value.strip()
            secrets_found.append((kind, canonical(kind, value), ""))
        else:
            row["value"] = s.value[:500]
        for kind, value, suffix in secrets_found:
            f = fp.fingerprint(value)
            if s.kind == "credential":
                row.update(value=placeholder(kind, f), fingerprint=f)
            out.secrets.append({
                "ts": now, "host_id": host_id, "kind": kind, "fingerprint": f, "last4": value[-4:],
                "direction": "config", "destination": endpoints.get(s.agent), "pid": pid,
                "location": f"{s.path}:{s.variable}{suffix}",
            })
        out.rows.append(row)


def _home_of(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_dir
    except KeyError:
        return None


def homes_of_users() -> list[Path]:
    """Every user's existing home directory (root's included), each once."""
    seen: dict[Path, None] = {}
    for pw in pwd.getpwall():
        h = Path(pw.pw_dir)
        if (pw.pw_uid == 0 or pw.pw_uid >= 1000) and h.is_dir() and h != Path("/"):
            seen[h.resolve()] = None
    return list(seen)


def inventory(fp: Fingerprinter, *, homes: Iterable[Path] | None = None, project_dirs: Iterable[Path] = (),
              pids: Iterable[int] | None = None, live: bool = True, host_id: str | None = None) -> Inventory:
    """The whole inventory: live agent processes (env + their user's and cwd's files) and the
    config files of `homes` (default: every user's) and `project_dirs`."""
    out = Inventory()
    host = host_id or config.host_id()
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    if live or pids is not None:
        for proc in agent_processes(pids):
            # the agent reads its files from its own $HOME, else its user's home directory
            home_dir = proc.environ.get("HOME") or (_home_of(proc.uid) if proc.uid is not None else None)
            home = Path(home_dir) if home_dir else None
            if home is not None and not home.is_dir():
                home = None
            settings = env_settings(proc)
            fs, errs = file_settings(home, Path(proc.cwd) if proc.cwd else None, proc.agent)
            settings += fs
            out.errors += errs
            mark_effective(settings)
            to_rows(settings, fp, host_id=host, now=now, pid=proc.pid, process_start=proc.start_time,
                    uid=proc.uid, out=out)
    if pids is None:
        home_list = list(homes) if homes is not None else homes_of_users()
        for home in home_list:
            fs, errs = file_settings(Path(home), None)
            out.errors += errs
            mark_effective(fs)
            to_rows(fs, fp, host_id=host, now=now, out=out)
        for proj in project_dirs:
            fs, errs = file_settings(None, Path(proj))
            out.errors += errs
            mark_effective(fs)
            to_rows(fs, fp, host_id=host, now=now, out=out)
    return out


def run(*, store: str | None = None, homes: list[Path] | None = None, pids: list[int] | None = None,
        project_dirs: list[Path] | None = None, live: bool = True, write: bool = True) -> list[dict]:
    """`routerwatch inventory`: scan, write agent_configs + secrets_seen, return the rows."""
    from collector.store import Store
    from collector.store.writer import BatchWriter

    with Store.open(config.resolve_store(store)) as st:
        inv = inventory(Fingerprinter(st.secret_key()), homes=homes, project_dirs=project_dirs or (), pids=pids,
                        live=live)
        if write:
            with BatchWriter(st) as w:
                w.add("agent_configs", inv.rows)
                w.add("secrets_seen", inv.secrets)
    for e in inv.errors:
        print(f"routerwatch: inventory: cannot parse {e}", file=sys.stderr)
    return inv.rows


def print_rows(rows: list[dict], fmt: str = "table") -> None:
    if fmt == "json":
        print(json.dumps(rows, default=str, indent=1))
        return
    cols = ("agent", "pid", "scope", "path", "variable", "kind", "endpoint", "effective")

    def cell(r: dict, c: str) -> str:
        v = (r.get("endpoint") or r.get("value")) if c == "endpoint" else r.get(c)
        return "" if v is None else str(v)

    table = [[cell(r, c) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(t[i]) for t in table]) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for t in table:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)).rstrip())
    print(f"({len(rows)} settings)")
