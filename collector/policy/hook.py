"""`routerwatch gate` as an agent hook: the agent asks before it runs a tool, the policy answers.

Claude Code (PreToolUse) and Codex (its PreToolUse hook, the same wire format) write one JSON
object on stdin: `hook_event_name`, `tool_name`, `tool_input`, `session_id`, `cwd`, ... The answer:

* block: `{"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
  "permissionDecisionReason": "routerwatch blocked ..."}}` on stdout, exit 0: the agent does not run
  the tool and tells the model why;
* record / allow: nothing on stdout, exit 0: the agent's own permission rules decide as if no hook
  were there (the gate never *grants* a permission, it can only take one away);
* input the gate cannot read, or a judgement that does not finish within the policy's time limit:
  the policy's `unjudged` setting (default: deny, with exit 2 and the reason on stderr when there is
  no JSON to answer).

The router named in the decision is the agent's configured endpoint (its environment, then its
settings files, the precedence routerwatch inventory uses): the hook sees the call, not the traffic.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.policy.judge import Context, Judge, block_message
from collector.policy.model import BLOCK, TIMEOUT, UNPARSEABLE, ToolCall, Verdict

AGENTS = {"claude": "claude-code", "codex": "codex"}
DEFAULT_ENDPOINT = {"claude-code": "https://api.anthropic.com", "codex": "https://api.openai.com"}
MAX_INPUT = 16 * 1024 * 1024


@dataclass
class HookAnswer:
    stdout: str
    stderr: str
    exit_code: int
    call: ToolCall | None
    verdict: Verdict | None  # None: not a tool call the gate judges (another event)
    payload: dict


def agent_endpoint(agent: str, env: dict[str, str], cwd: str | None, home: Path | None = None) -> str:
    """The endpoint the agent is configured to use: its environment and settings files, with the
    precedence routerwatch inventory applies (Claude Code: project settings over the environment)."""
    from collector.inventory.agents import ENDPOINT_VARS
    from collector.inventory.files import Setting, parse_codex_toml, read_settings
    from collector.inventory.scan import file_settings, mark_effective

    settings = [Setting(agent, k, "endpoint", v, source="env", scope="process") for k, v in env.items()
                if k in ENDPOINT_VARS and v and ENDPOINT_VARS[k].startswith("anthropic" if agent == "claude-code" else "openai")]
    files, _errors = file_settings(home or Path(env.get("HOME") or Path.home()), Path(cwd) if cwd else None, agent)
    settings += [s for s in files if s.kind == "endpoint"]
    if agent == "codex" and env.get("CODEX_HOME"):
        got, _err = read_settings(Path(env["CODEX_HOME"]) / "config.toml", parse_codex_toml, "user")
        settings += [s for s in got if s.kind == "endpoint"]
    settings = [s for s in settings if s.effective or s.source == "env"]
    mark_effective(settings)
    eff = [s for s in settings if s.effective]
    return eff[0].value if eff else DEFAULT_ENDPOINT.get(agent, "")


def hook_context(agent: str, env: dict[str, str], cwd: str | None, catalog=None) -> Context:  # noqa: ANN001
    from collector.inventory.scan import split_endpoint

    _url, host, port, _pw = split_endpoint(agent_endpoint(agent, env, cwd))
    host = host or "unknown"
    if catalog is not None:
        label, names = catalog.router_names(host, port)
    else:
        label = host if port in (None, 443, 80) else f"{host}:{port}"
        names = (host, f"{host}:{port}")
    return Context(router=label, agent=agent, router_names=names)


def _judge_in_time(judge: Judge, call: ToolCall, ctx: Context) -> Verdict:
    """The judge's verdict, or the policy's `unjudged` verdict when it takes longer than judge_timeout."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["v"] = judge(call, ctx)
        except Exception as exc:  # a judge that raises decides nothing
            box["e"] = exc

    t = threading.Thread(target=run, name="routerwatch-gate-judge", daemon=True)
    t.start()
    t.join(judge.policy.judge_timeout)
    if "v" in box:
        return box["v"]
    if "e" in box:
        return judge.unjudged(UNPARSEABLE, f"the judge failed ({type(box['e']).__name__})", ctx)
    return judge.unjudged(TIMEOUT, f"the call was not judged within {judge.policy.judge_timeout:g} s", ctx)


def _deny(reason: str) -> str:
    return json.dumps({"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
                                              "permissionDecisionReason": reason}})


def answer(raw: bytes | str, *, agent: str, judge: Judge, env: dict[str, str] | None = None,
           catalog=None) -> HookAnswer:  # noqa: ANN001
    """The hook's answer to one stdin payload (pure apart from reading the agent's settings files)."""
    env = dict(os.environ if env is None else env)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        payload = json.loads(text) if len(text) <= MAX_INPUT else None
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        ctx = hook_context(agent, env, None, catalog)
        v = judge.unjudged(UNPARSEABLE, "the hook input is not a JSON object", ctx)
        if v.action == BLOCK:
            msg = block_message(v, None, ctx.router)
            return HookAnswer("", msg + "\n", 2, None, v, {})
        return HookAnswer("", "", 0, None, v, {})
    event = payload.get("hook_event_name")
    if event not in (None, "PreToolUse"):
        return HookAnswer("", "", 0, None, None, payload)
    ctx = hook_context(agent, env, payload.get("cwd") if isinstance(payload.get("cwd"), str) else None, catalog)
    sid = payload.get("session_id")
    ctx = dataclasses.replace(ctx, session=sid if isinstance(sid, str) else None)
    name = payload.get("tool_name") if isinstance(payload.get("tool_name"), str) else None
    tool_input = payload.get("tool_input")
    if name is None or tool_input is None:
        v = judge.unjudged(UNPARSEABLE, "the hook input names no tool call", ctx)
        call = None
    else:
        args = tool_input if isinstance(tool_input, str) else json.dumps(tool_input, ensure_ascii=False)
        call_id = payload.get("tool_use_id") or payload.get("call_id")
        call = ToolCall(name, args, f"hook:{agent}", call_id if isinstance(call_id, str) else None)
        v = _judge_in_time(judge, call, ctx)
    if v.action == BLOCK:
        return HookAnswer(_deny(block_message(v, call, ctx.router)) + "\n", "", 0, call, v, payload)
    return HookAnswer("", "", 0, call, v, payload)


def load_written(judge: Judge, path: Path) -> None:
    """The files earlier hook calls saw written with a payload (each hook call is a new process)."""
    try:
        judge.written.load(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        pass


def save_written(judge: Judge, path: Path) -> None:
    rows = judge.written.state()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(rows, f)
        os.replace(tmp, path)
    except OSError:
        pass


def record(ans: HookAnswer, *, agent: str, ctx: Context, policy: str, store: str | None, host_id: str,
           wait: bool = False) -> str | None:
    """Record the decision (and the fingerprints of secrets in the call) without making the agent wait:
    redacted with the store's key, put in the outbox, then imported by a detached process (collector.policy.outbox;
    `wait` imports in this process instead). Returns an error message rather than raising: the
    agent's answer never depends on the store."""
    if ans.verdict is None:
        return None
    try:
        from collector.config import resolve_store
        from collector.policy import outbox
        from collector.policy.record import decision_row
        from collector.secrets import Fingerprinter
        from collector.store.connection import StoreLocation

        spec = resolve_store(store)
        loc = StoreLocation.parse(spec)
        sid = ans.payload.get("session_id")
        row, secrets_rows = decision_row(
            ans.call, ans.verdict, ts=time.time(), host_id=host_id, source="hook", fp=Fingerprinter(loc.secret_key()),
            policy=policy, agent=agent, router=ctx.router, pid=os.getppid(), api=f"hook:{agent}",
            session_id=sid if isinstance(sid, str) else None)
        outbox.put(loc, {"gate_decisions": [row], **({"secrets_seen": secrets_rows} if secrets_rows else {})})
        if wait:
            outbox.import_outbox(spec)
        else:
            outbox.start_importer(spec)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:300]
    return None
