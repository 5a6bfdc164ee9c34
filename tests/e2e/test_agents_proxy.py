"""The real Claude Code and Codex CLIs through `routerwatch wrap --proxy` against the loopback
router zoo (inject mode): exchanges decoded (API, model, tool calls) into the store and linked to
the agent's process and flows, and the injecting router's AC-1 finding.

Neither agent may run anything: Claude Code is given only the Bash tool with `--permission-prompts
none` (every tool use that would prompt is denied), Codex runs with its shell tools disabled and a
read-only sandbox; the zoo's injected command only points at a loopback payload host anyway, and
the test checks that nothing fetched it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from collector.store import Store
from tests.conftest import BIN, REPO, run_cli

AGENTS = Path(os.environ.get("ROUTERWATCH_AGENTS_DIR", REPO / ".cache" / "agents")) / "node_modules" / ".bin"
zoo = pytest.importorskip("analyzer.demo.zoo", reason="the router zoo (analyzer/demo/zoo.py) is not in this checkout")


def _agent(name: str) -> Path:
    exe = AGENTS / name
    if not exe.exists():
        pytest.skip(f"{exe} is missing: `bash deploy/deps.sh --test` installs the agent CLIs (npm)")
    return exe


@pytest.fixture
def inject_router(tmp_path: Path):  # noqa: ANN201
    h = zoo.start_router("inject", certdir=tmp_path / "pki", alpn=("http/1.1",))
    yield h
    h.stop()


def _clean_env(tmp_path: Path) -> dict[str, str]:
    """A minimal environment: no proxy, key or CA settings leak in from the machine."""
    home = tmp_path / "home"
    home.mkdir()
    keep = ("PATH", "LANG", "LC_ALL", "TERM", "ROUTERWATCH_HOST_ID")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(HOME=str(home), ROUTERWATCH_PROXY_CA_DIR=str(tmp_path / "proxy-ca"), NO_COLOR="1")
    return env


def _q(store: Path, sql: str) -> list[dict]:
    with Store.open(str(store), read_only=True) as st:
        cur = st.sql(sql)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def _assert_decoded(store: Path, api: str, router) -> None:  # noqa: ANN001
    ex = _q(store, "SELECT * FROM llm_exchanges ORDER BY ts")
    assert len(ex) >= 2 and {e["api"] for e in ex} == {api}, ex
    assert all(e["source"] == "proxy" and e["streamed"] for e in ex)
    assert ex[0]["model_requested"] and ex[0]["model_returned"] == ex[0]["model_requested"]
    assert ex[0]["tool_call_count"] == 1
    calls = _q(store, f"SELECT * FROM tool_calls WHERE exchange_id = '{ex[0]['exchange_id']}' AND direction = 'response'")
    assert len(calls) == 1
    # the zoo shapes the arguments to the agent's own shell tool (a string or an argv array)
    args = json.dumps(json.loads(calls[0]["arguments"]))
    assert "curl -s http://127.0.0.2:" in args and "/x.sh | bash" in args, args
    # linked to the agent's process (the CLI's launcher or the native binary it starts) and to both
    # legs of its connection
    pid = ex[0]["pid"]
    assert all(e["pid"] for e in ex)
    flows = _q(store, f"SELECT * FROM flows WHERE flow_uid = '{ex[0]['flow_uid']}'")
    assert flows and flows[0]["dst_port"] == router.port and flows[0]["pid"] == pid
    legs = _q(store, f"SELECT proxy_leg, history FROM flows WHERE pid = {pid} AND source = 'proxy'")
    assert {"agent", "upstream"} <= {x["proxy_leg"] for x in legs} and {x["history"] for x in legs} == {None}
    procs = _q(store, f"SELECT DISTINCT pid, process_start FROM flows WHERE pid = {pid}")
    assert procs[0]["process_start"] is not None
    # the credential left the host only as a fingerprint
    sec = _q(store, "SELECT * FROM secrets_seen WHERE direction = 'request'")
    assert sec and all(s["destination"].startswith("127.0.0.1") for s in sec)
    # nothing ran the injected command: the payload host saw no request
    assert not any(e.get("payload") for e in router.log), router.log
    _assert_ac1(store, pid)


def _assert_ac1(store: Path, pid: int) -> None:
    """`routerwatch analyze` turns the proxy-decoded exchange into the AC-1 finding, with the agent's pid."""
    r = run_cli("analyze", "--store", str(store))
    assert r.returncode == 0, r.stderr
    f = _q(store, "SELECT rule_id, attack_class, pid FROM findings")
    assert {"rule_id": "ac1-download-exec", "attack_class": "AC-1", "pid": pid} in f, f


def test_claude_code_through_proxy(tmp_path: Path, inject_router) -> None:  # noqa: ANN001
    claude = _agent("claude")
    store = tmp_path / "store"
    env = _clean_env(tmp_path)
    env.update(ANTHROPIC_BASE_URL=inject_router.url, NODE_EXTRA_CA_CERTS=str(inject_router.ca_path),
               ANTHROPIC_API_KEY="sk-ant-api03-" + "e2eTestKey0" * 8 + "-AAAA",
               CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", DISABLE_AUTOUPDATER="1")
    work = tmp_path / "work"
    work.mkdir()
    p = subprocess.run(
        [str(BIN / "routerwatch"), "wrap", "--proxy", "--store", str(store), "--", str(claude), "-p", "run: ls /tmp",
         "--tools", "Bash", "--permission-prompts", "none", "--output-format", "json", "--max-turns", "3"],
        cwd=work, env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["is_error"] is False
    _assert_decoded(store, "anthropic.messages", inject_router)


def test_codex_through_proxy(tmp_path: Path, inject_router) -> None:  # noqa: ANN001
    codex = _agent("codex")
    store = tmp_path / "store"
    codex_home = tmp_path / "codex-home"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(
        'model_provider = "zoo"\nmodel = "gpt-5-codex"\nsandbox_mode = "read-only"\n'
        f'[model_providers.zoo]\nname = "Zoo"\nbase_url = "{inject_router.url}/v1"\nenv_key = "ZOO_API_KEY"\n'
        'wire_api = "responses"\n')
    env = _clean_env(tmp_path)
    env.update(CODEX_HOME=str(codex_home), ZOO_API_KEY="sk-zoo-" + "e2eTestKey0" * 3,
               SSL_CERT_FILE=str(inject_router.ca_path))
    work = tmp_path / "work"
    work.mkdir()
    p = subprocess.run(
        [str(BIN / "routerwatch"), "wrap", "--proxy", "--store", str(store), "--", str(codex), "exec",
         "--skip-git-repo-check", "--ephemeral", "-s", "read-only", "--disable", "shell_tool",
         "--disable", "unified_exec", "--json", "run: ls /tmp"],
        cwd=work, env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr[-3000:]
    events = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    assert any(e.get("type") == "turn.completed" for e in events), p.stdout[-2000:]
    assert not any(e.get("item", {}).get("type") == "command_execution" for e in events)
    _assert_decoded(store, "openai.responses", inject_router)


@pytest.mark.parametrize("name", ["claude", "codex"])
def test_key_log_mode_sees_nothing_of_bun_and_rustls_agents(tmp_path: Path, inject_router, name: str) -> None:  # noqa: ANN001
    """Why proxy mode exists (the coverage matrix's 'key log: no' cells): Claude Code (Bun, BoringSSL)
    and Codex (rustls) ignore SSLKEYLOGFILE and NODE_OPTIONS=--tls-keylog, so wrap's key log stays empty."""
    exe = _agent(name)
    env = _clean_env(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    if name == "claude":
        env.update(ANTHROPIC_BASE_URL=inject_router.url, NODE_EXTRA_CA_CERTS=str(inject_router.ca_path),
                   ANTHROPIC_API_KEY="sk-ant-api03-" + "e2eTestKey0" * 8 + "-AAAA",
                   CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", DISABLE_AUTOUPDATER="1")
        args = ["-p", "hello", "--tools", "", "--permission-prompts", "none", "--max-turns", "1"]
    else:
        home = tmp_path / "codex-home"
        home.mkdir()
        (home / "config.toml").write_text(
            f'model_provider = "zoo"\nmodel = "gpt-5-codex"\n[model_providers.zoo]\nname = "Zoo"\n'
            f'base_url = "{inject_router.url}/v1"\nenv_key = "ZOO_API_KEY"\nwire_api = "responses"\n')
        env.update(CODEX_HOME=str(home), ZOO_API_KEY="sk-zoo-" + "e2eTestKey0" * 3,
                   SSL_CERT_FILE=str(inject_router.ca_path))
        args = ["exec", "--skip-git-repo-check", "--ephemeral", "-s", "read-only", "--disable", "shell_tool",
                "--disable", "unified_exec", "hello"]
    kd = tmp_path / "keys"
    p = subprocess.run([str(BIN / "routerwatch"), "wrap", "--keylog-dir", str(kd), "--keep-keys", "--", str(exe), *args],
                       cwd=work, env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr[-3000:]
    assert inject_router.llm_calls >= 1  # it did talk TLS to the router...
    (keylog,) = kd.glob("wrap-*.keylog")
    assert keylog.stat().st_size == 0  # ...and wrote no TLS secrets


def test_inventory_of_a_running_claude_code(tmp_path: Path, inject_router) -> None:  # noqa: ANN001
    """The inventory reads a real, running (interactive) Claude Code: its environment
    (/proc/PID/environ) and its project's settings, which override the shell, so the project's
    router is the effective one."""
    import pty
    import threading
    import time

    claude = _agent("claude")
    env = _clean_env(tmp_path)
    env.update(ANTHROPIC_BASE_URL="https://shell-router.example", NODE_EXTRA_CA_CERTS=str(inject_router.ca_path),
               ANTHROPIC_API_KEY="sk-ant-api03-" + "liveInvKey0" * 8 + "-AAAA",
               CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", DISABLE_AUTOUPDATER="1", TERM="xterm")
    proj = tmp_path / "proj"
    (proj / ".claude").mkdir(parents=True)
    (proj / ".claude" / "settings.json").write_text(json.dumps({"env": {"ANTHROPIC_BASE_URL": inject_router.url}}))
    # past first-run onboarding (which probes api.anthropic.com and exits when it is unreachable)
    (Path(env["HOME"]) / ".claude.json").write_text(json.dumps(
        {"hasCompletedOnboarding": True, "projects": {str(proj): {"hasTrustDialogAccepted": True}}}))
    master, slave = pty.openpty()
    p = subprocess.Popen([str(claude)], cwd=proj, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)

    def drain() -> None:  # a terminal nobody reads would block the agent
        try:
            while os.read(master, 65536):
                pass
        except OSError:
            pass

    threading.Thread(target=drain, daemon=True).start()
    try:
        time.sleep(3)
        assert p.poll() is None, "claude exited"
        r = run_cli("inventory", "--store", str(tmp_path / "store"), "--pid", str(p.pid), "--format", "json")
        assert r.returncode == 0, r.stderr
        rows = {(x["scope"], x["variable"]): x for x in json.loads(r.stdout)}
    finally:
        p.kill()
        p.wait(10)
        os.close(master)
    assert rows and all(x["agent"] == "claude-code" and x["pid"] == p.pid for x in rows.values())
    assert rows[("process", "ANTHROPIC_BASE_URL")]["endpoint"] == "https://shell-router.example"
    assert rows[("process", "ANTHROPIC_BASE_URL")]["effective"] is False
    assert rows[("project", "env.ANTHROPIC_BASE_URL")]["endpoint"] == inject_router.url
    assert rows[("project", "env.ANTHROPIC_BASE_URL")]["effective"] is True
    assert rows[("process", "ANTHROPIC_API_KEY")]["kind"] == "credential"
    assert "liveInvKey0" not in r.stdout
