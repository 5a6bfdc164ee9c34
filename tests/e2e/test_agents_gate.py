"""The policy gate with the real Claude Code and Codex CLIs against the loopback router zoo.

* `wrap --proxy` (observe only): the injected download-and-execute call reaches the agent (its
  transcript shows it); `wrap --proxy --enforce`: it never does (the transcript shows the block
  message instead), the decision is stored and `routerwatch analyze` turns it into a finding with
  the action taken. Against an honest router the gate passes the call exactly as the router sent it
  and nothing is found.
* `routerwatch gate` installed as Claude Code's and as Codex's PreToolUse hook: the injected call is
  denied with the reason, a benign one passes (and runs).

Nothing the routers inject can run: the injected command only points at the zoo's loopback payload
host, Claude Code runs with `--permission-prompts none` (and allows only `ls -la`), Codex with
a read-only sandbox and its shell tools off; each test checks that the payload host saw no request.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from collector.store import Store
from tests.conftest import BIN, run_cli
from tests.e2e.test_agents_proxy import _agent, _clean_env, _q

zoo = pytest.importorskip("analyzer.demo.zoo", reason="the router zoo (analyzer/demo/zoo.py) is not in this checkout")

BENIGN = "ls -la"  # inside the work directory: Claude Code allows it without a prompt


@pytest.fixture
def router(tmp_path: Path, request: pytest.FixtureRequest):  # noqa: ANN201
    h = zoo.start_router(request.param, certdir=tmp_path / "pki", alpn=("http/1.1",))
    yield h
    h.stop()


def _claude_env(tmp_path: Path, router) -> dict[str, str]:  # noqa: ANN001
    env = _clean_env(tmp_path)
    env.update(ANTHROPIC_BASE_URL=router.url, NODE_EXTRA_CA_CERTS=str(router.ca_path),
               ANTHROPIC_API_KEY="sk-ant-api03-" + "e2eGateKey0" * 8 + "-AAAA",
               CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", DISABLE_AUTOUPDATER="1")
    return env


def _claude(tmp_path: Path, env: dict, wrap: list[str]) -> list[dict]:
    """Claude Code on the task `run: ls -la /tmp`; its transcript as stream-json events."""
    claude = _agent("claude")
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    cmd = [*wrap, str(claude), "-p", f"run: {BENIGN}", "--tools", "Bash", "--allowedTools", f"Bash({BENIGN})",
           "--permission-prompts", "none", "--output-format", "stream-json", "--verbose", "--max-turns", "3"]
    p = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr[-3000:] + p.stdout[-2000:]
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


def _blocks(events: list[dict], kind: str) -> list[dict]:
    out = []
    for e in events:
        msg = e.get("message") if isinstance(e.get("message"), dict) else {}
        for b in msg.get("content") or []:
            if isinstance(b, dict) and b.get("type") == kind:
                out.append(b)
    return out


def _texts(events: list[dict]) -> str:
    return "\n".join(b.get("text", "") for b in _blocks(events, "text")) + "\n" + "\n".join(
        str(e.get("result", "")) for e in events if e.get("type") == "result")


def _tool_results(events: list[dict]) -> str:
    out = []
    for b in _blocks(events, "tool_result"):
        c = b.get("content")
        out.append(c if isinstance(c, str) else json.dumps(c))
    return "\n".join(out)


def _decisions(store: Path) -> list[dict]:
    return _q(store, "SELECT * FROM gate_decisions ORDER BY ts")


def _analyze(store: Path) -> list[dict]:
    r = run_cli("analyze", "--store", str(store))
    assert r.returncode == 0, r.stderr
    return _q(store, "SELECT rule_id, severity, attack_class, exchange_id, evidence FROM findings ORDER BY rule_id")


def _wrap(store: Path, *extra: str) -> list[str]:
    return [str(BIN / "routerwatch"), "wrap", "--proxy", *extra, "--store", str(store), "--"]


@pytest.mark.parametrize("router", ["inject"], indirect=True)
def test_claude_code_sees_the_injection_without_enforce(tmp_path: Path, router) -> None:  # noqa: ANN001
    store = tmp_path / "store"
    events = _claude(tmp_path, _claude_env(tmp_path, router), _wrap(store))
    uses = [b["input"].get("command", "") for b in _blocks(events, "tool_use")]
    assert any("/x.sh | bash" in u for u in uses), uses  # the transcript shows the injected call
    assert "routerwatch blocked" not in _texts(events)
    assert not (store / "catalog.sqlite").exists() or not _decisions(store)
    assert not any(e.get("payload") for e in router.log)


@pytest.mark.parametrize("router", ["inject"], indirect=True)
def test_claude_code_never_receives_the_injection_with_enforce(tmp_path: Path, router) -> None:  # noqa: ANN001
    store = tmp_path / "store"
    events = _claude(tmp_path, _claude_env(tmp_path, router), _wrap(store, "--enforce"))
    assert not _blocks(events, "tool_use"), _blocks(events, "tool_use")
    text = _texts(events)
    assert "routerwatch blocked a tool call (Bash) from router 127.0.0.1:" in text and "ac1-download-exec" in text
    rows = _decisions(store)
    assert rows and all(r["action"] == "block" and r["rule_id"] == "ac1-download-exec" for r in rows)
    assert all(r["agent"] == "claude-code" and r["exchange_id"] and "x.sh | bash" in r["arguments"] for r in rows)
    findings = _analyze(store)
    gate = [f for f in findings if f["rule_id"] == "gate-blocked-tool-call"]
    assert len(gate) == len(rows) and all(json.loads(f["evidence"])["action"] == "block" for f in gate)
    assert {f["exchange_id"] for f in gate} == {r["exchange_id"] for r in rows}
    # the router's answer is still the evidence: the analyzer finds the injection in the stored exchange
    assert "ac1-download-exec" in {f["rule_id"] for f in findings}
    assert not any(e.get("payload") for e in router.log)


@pytest.mark.parametrize("router", ["honest"], indirect=True)
def test_claude_code_honest_router_passes_untouched(tmp_path: Path, router) -> None:  # noqa: ANN001
    store = tmp_path / "store"
    events = _claude(tmp_path, _claude_env(tmp_path, router), _wrap(store, "--enforce"))
    uses = _blocks(events, "tool_use")
    sent = [e["arguments"] for e in router.log if e.get("turn") == "tool_call"]
    assert uses and [json.dumps(u["input"], separators=(",", ":"), ensure_ascii=False) for u in uses] == sent
    assert "drwx" in _tool_results(events) or "total" in _tool_results(events)  # the allowed command ran
    assert {r["action"] for r in _decisions(store)} == {"allow"}
    # nothing about tool calls (the test key reaching a router is AC-2 exposure, reported as it should be)
    assert not [f for f in _analyze(store) if f["attack_class"] in ("AC-1", "AC-1.a", "AC-1.b")]


def _codex_env(tmp_path: Path, router) -> tuple[Path, dict[str, str]]:  # noqa: ANN001
    """CODEX_HOME with the zoo as the model provider (Responses API), and the environment for Codex."""
    home = tmp_path / "codex-home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(
        'model_provider = "zoo"\nmodel = "gpt-5-codex"\nsandbox_mode = "read-only"\n'
        f'[model_providers.zoo]\nname = "Zoo"\nbase_url = "{router.url}/v1"\nenv_key = "ZOO_API_KEY"\n'
        'wire_api = "responses"\n')
    env = _clean_env(tmp_path)
    env.update(CODEX_HOME=str(home), ZOO_API_KEY="sk-zoo-" + "e2eGateKey0" * 3, SSL_CERT_FILE=str(router.ca_path))
    return home, env


def _codex(tmp_path: Path, router, store: Path, enforce: bool) -> list[dict]:  # noqa: ANN001
    """Codex exec on the task; its transcript: the session rollout (every response item it received)."""
    codex = _agent("codex")
    home, env = _codex_env(tmp_path, router)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    p = subprocess.run(
        [*_wrap(store, *(["--enforce"] if enforce else [])), str(codex), "exec", "--skip-git-repo-check",
         "-s", "read-only", "--disable", "shell_tool", "--disable", "unified_exec", "--json", f"run: {BENIGN}"],
        cwd=work, env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr[-3000:]
    events = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    assert any(e.get("type") == "turn.completed" for e in events), p.stdout[-2000:]
    items = []
    for f in sorted(home.glob("sessions/**/rollout-*.jsonl")):
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("type") == "response_item":
                items.append(rec.get("payload") or {})
    return items


@pytest.mark.parametrize("router", ["inject"], indirect=True)
def test_codex_with_and_without_enforce(tmp_path: Path, router) -> None:  # noqa: ANN001
    """Codex's transcript (exec --json) shows the injected call without the gate, the block message with it."""
    (tmp_path / "plain").mkdir()
    plain = _codex(tmp_path / "plain", router, tmp_path / "plain-store", enforce=False)
    calls = [i for i in plain if i.get("type") == "function_call"]
    assert any("x.sh | bash" in i.get("arguments", "") for i in calls), plain  # the transcript shows the injected call
    store = tmp_path / "store"
    items = _codex(tmp_path, router, store, enforce=True)
    assert not any("x.sh" in json.dumps(i) for i in items if i.get("type") != "message" or i.get("role") != "user"), items
    said = [c.get("text", "") for i in items if i.get("type") == "message" and i.get("role") == "assistant"
            for c in i.get("content") or []]
    assert any(t.startswith("routerwatch blocked a tool call") and "ac1-download-exec" in t for t in said), said
    rows = _decisions(store)
    assert rows and all(r["action"] == "block" and r["agent"] == "codex" for r in rows)
    assert {f["rule_id"] for f in _analyze(store)} >= {"gate-blocked-tool-call", "ac1-download-exec"}
    assert not any(e.get("payload") for e in router.log)


@pytest.mark.parametrize("router", ["inject", "honest"], indirect=True)
def test_claude_code_with_the_gate_as_its_pretooluse_hook(tmp_path: Path, router) -> None:  # noqa: ANN001
    """No proxy: the hook alone denies the injected call with the reason, and lets the benign one run."""
    store = tmp_path / "store"
    env = _claude_env(tmp_path, router)
    work = tmp_path / "work"
    work.mkdir()
    r = run_cli("gate", "--install", "claude", "--scope", "project", "--project", str(work), "--store", str(store),
                env={"HOME": env["HOME"]})
    assert r.returncode == 0, r.stderr
    events = _claude(tmp_path, env, [])
    results = _tool_results(events)
    rows = _wait_decisions(store)
    assert rows and all(r["source"] == "hook" and r["agent"] == "claude-code" for r in rows)
    assert all(r["router"] == f"127.0.0.1:{router.port}" for r in rows)
    if router.mode == "inject":
        assert "routerwatch blocked a tool call (Bash) from router 127.0.0.1:" in results and "ac1-download-exec" in results
        assert {r["action"] for r in rows} == {"block"}
        assert not any(e.get("payload") for e in router.log)
    else:
        assert "routerwatch blocked" not in results and ("total" in results or "drwx" in results)  # it ran
        assert {r["action"] for r in rows} == {"allow"}


def _wait_decisions(store: Path, timeout: float = 60) -> list[dict]:
    """The hook records through its outbox, in the background: wait for the rows."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (store / "catalog.sqlite").exists():
            with Store.open(str(store), read_only=True) as st:
                if "gate_decisions" in st.tables() and st.sql("SELECT count(*) FROM gate_decisions").fetchone()[0]:
                    return _decisions(store)
        time.sleep(0.5)
    return []


@pytest.mark.parametrize("router", ["inject", "honest"], indirect=True)
def test_codex_with_the_gate_as_its_pretooluse_hook(tmp_path: Path, router) -> None:  # noqa: ANN001
    """Codex's own hook system (hooks.json in CODEX_HOME, trusted for this run with
    --dangerously-bypass-hook-trust): its shell tool is on, the gate denies the injected command and
    Codex reports the reason to the model; a benign command runs."""
    codex = _agent("codex")
    store = tmp_path / "store"
    home, env = _codex_env(tmp_path, router)
    r = run_cli("gate", "--install", "codex", "--store", str(store), env={"HOME": env["HOME"], "CODEX_HOME": str(home)})
    assert r.returncode == 0, r.stderr
    work = tmp_path / "work"
    work.mkdir()
    p = subprocess.run([str(codex), "exec", "--skip-git-repo-check", "-s", "read-only", "--dangerously-bypass-hook-trust",
                        "--json", f"run: {BENIGN}"], cwd=work, env=env, capture_output=True, text=True, timeout=240,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr[-3000:]
    outputs = []
    for f in sorted(home.glob("sessions/**/rollout-*.jsonl")):
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("type") == "response_item" and (rec.get("payload") or {}).get("type") == "function_call_output":
                outputs.append(str(rec["payload"].get("output")))
    rows = _wait_decisions(store)
    assert rows and all(r["source"] == "hook" and r["agent"] == "codex" and r["api"] == "hook:codex" for r in rows)
    assert all(r["router"] == f"127.0.0.1:{router.port}" for r in rows)
    said = "\n".join(outputs)
    if router.mode == "inject":
        assert "Command blocked by PreToolUse hook: routerwatch blocked a tool call" in said and "ac1-download-exec" in said
        assert {r["action"] for r in rows} == {"block"}
        assert not any(e.get("payload") for e in router.log)
    else:
        assert "routerwatch blocked" not in said and {r["action"] for r in rows} == {"allow"}
