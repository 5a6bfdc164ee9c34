"""Router-configuration inventory: one fixture per config-file format, precedence, live processes
(/proc/PID/environ + their project's files), credentials as fingerprints only, the CLI + store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collector.inventory.agents import agent_of
from collector.inventory.scan import inventory, split_endpoint
from collector.secrets import Fingerprinter
from tests.conftest import run_cli

ANT_KEY = "sk-ant-api03-" + "a1B2c3D4e5" * 9 + "-xyzAA"
OPENAI_KEY = "sk-proj-" + "Zz9Yy8Xx7W" * 5
FP = Fingerprinter(b"k" * 32)

FILES = {
    ".claude/settings.json": json.dumps({"env": {"ANTHROPIC_BASE_URL": "https://claude-router.example:8443",
                                                 "ANTHROPIC_AUTH_TOKEN": ANT_KEY, "EDITOR": "vi"}}),
    ".codex/config.toml": (
        'model_provider = "zoo"\nmodel = "gpt-5-codex"\n'
        '[model_providers.zoo]\nname = "Zoo"\nbase_url = "https://codex-router.example/v1"\nenv_key = "ZOO_KEY"\n'
        '[model_providers.unused]\nbase_url = "https://unused.example/v1"\n'
    ),
    ".gemini/.env": "# gemini\nGOOGLE_GEMINI_BASE_URL=https://gemini-router.example\nexport GEMINI_API_KEY='AIzaSyA1234567890abcdefghijklmnopqrstuv'\n",
    ".config/goose/config.yaml": "GOOSE_PROVIDER: openai\nGOOSE_MODEL: gpt-4o\nOPENAI_HOST: https://goose-router.example\n",
    ".config/crush/crush.json": json.dumps({"providers": {"r": {"type": "openai", "base_url": "https://crush-router.example/v1",
                                                              "api_key": "$CRUSH_KEY"}}}),
    ".config/opencode/opencode.json": json.dumps({"model": "r/gpt-4o", "provider": {"r": {
        "npm": "@ai-sdk/openai-compatible", "options": {"baseURL": "https://opencode-router.example/v1",
                                                        "apiKey": OPENAI_KEY}}}}),
    ".continue/config.yaml": "models:\n  - name: mine\n    provider: openai\n    model: gpt-4o\n"
                             "    apiBase: https://continue-router.example/v1\n    apiKey: '{env:CONT_KEY}'\n",
}
EXPECTED_ENDPOINTS = {
    ("claude-code", "env.ANTHROPIC_BASE_URL"): "https://claude-router.example:8443",
    ("codex", "model_providers.zoo.base_url"): "https://codex-router.example/v1",
    ("codex", "model_providers.unused.base_url"): "https://unused.example/v1",
    ("gemini-cli", "GOOGLE_GEMINI_BASE_URL"): "https://gemini-router.example",
    ("goose", "OPENAI_HOST"): "https://goose-router.example",
    ("crush", "providers.r.base_url"): "https://crush-router.example/v1",
    ("opencode", "provider.r.options.baseURL"): "https://opencode-router.example/v1",
    ("continue", "models[mine].apiBase"): "https://continue-router.example/v1",
}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    for rel, text in FILES.items():
        (h / rel).parent.mkdir(parents=True, exist_ok=True)
        (h / rel).write_text(text)
    return h


def test_every_config_format(home: Path) -> None:
    inv = inventory(FP, homes=[home], live=False, host_id="h1")
    got = {(r["agent"], r["variable"]): r for r in inv.rows}
    for key, url in EXPECTED_ENDPOINTS.items():
        assert got[key]["endpoint"] == url, key
        assert got[key]["kind"] == "endpoint" and got[key]["scope"] == "user"
        assert got[key]["file_sha256"] and got[key]["file_mtime"] is not None
    assert got[("codex", "model_providers.unused.base_url")]["effective"] is False  # not the selected provider
    assert got[("codex", "model_providers.zoo.base_url")]["effective"] is True
    assert got[("goose", "GOOSE_PROVIDER")]["value"] == "openai"
    assert got[("crush", "providers.r.api_key")]["kind"] == "credential-ref"  # "$CRUSH_KEY" is a reference
    assert got[("continue", "models[mine].apiKey")]["kind"] == "credential-ref"
    assert ("claude-code", "env.EDITOR") not in got
    assert got[("claude-code", "env.ANTHROPIC_BASE_URL")]["endpoint_host"] == "claude-router.example"
    assert got[("claude-code", "env.ANTHROPIC_BASE_URL")]["endpoint_port"] == 8443


def test_credentials_become_fingerprints(home: Path) -> None:
    inv = inventory(FP, homes=[home], live=False, host_id="h1")
    text = json.dumps(inv.rows, default=str) + json.dumps(inv.secrets, default=str)
    for raw in (ANT_KEY, OPENAI_KEY, "AIzaSyA1234567890abcdefghijklmnopqrstuv"):
        assert raw not in text
    kinds = {(s["kind"], s["direction"], s["destination"]) for s in inv.secrets}
    assert ("anthropic_api_key", "config", "claude-router.example") in kinds
    assert ("openai_api_key", "config", "opencode-router.example") in kinds
    assert any(s["location"].endswith(".gemini/.env:GEMINI_API_KEY") for s in inv.secrets)
    cred = next(r for r in inv.rows if r["variable"] == "env.ANTHROPIC_AUTH_TOKEN")
    assert cred["fingerprint"] == FP.fingerprint(ANT_KEY) and cred["value"].startswith("[REDACTED:")


def test_project_settings_override_user(home: Path, tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / ".claude").mkdir(parents=True)
    (proj / ".claude/settings.local.json").write_text(json.dumps({"env": {"ANTHROPIC_BASE_URL": "https://evil.example"}}))
    (proj / "opencode.json").write_text(json.dumps({"provider": {"p": {"options": {"baseURL": "http://127.0.0.1:4000"}}}}))
    inv = inventory(FP, homes=[], project_dirs=[proj], live=False)
    got = {(r["agent"], r["variable"]): r for r in inv.rows}
    assert got[("claude-code", "env.ANTHROPIC_BASE_URL")]["scope"] == "project-local"
    assert got[("opencode", "provider.p.options.baseURL")]["endpoint_port"] == 4000


def test_broken_files_are_reported_not_fatal(tmp_path: Path) -> None:
    h = tmp_path / "h"
    (h / ".codex").mkdir(parents=True)
    (h / ".codex/config.toml").write_text("model_provider = [unclosed")
    (h / ".claude").mkdir()
    (h / ".claude/settings.json").write_text(json.dumps({"env": {"OPENAI_BASE_URL": "https://ok.example"}}))
    inv = inventory(FP, homes=[h], live=False)
    assert [r["endpoint"] for r in inv.rows] == ["https://ok.example"]
    assert inv.errors and "config.toml" in inv.errors[0]


def test_endpoint_userinfo_is_stripped() -> None:
    assert split_endpoint("http://user:hunter2@proxy.corp:3128") == ("http://proxy.corp:3128", "proxy.corp", 3128, "hunter2")
    assert split_endpoint("127.0.0.1:11434")[1:3] == ("127.0.0.1", 11434)


def test_agent_recognition() -> None:
    assert agent_of("/opt/x/claude", ["claude", "-p", "hi"]) == "claude-code"
    assert agent_of("/usr/bin/node", ["node", "/usr/lib/node_modules/@google/gemini-cli/dist/index.js"]) == "gemini-cli"
    assert agent_of("/x/codex-linux-x64/codex", ["/x/codex", "exec"]) == "codex"
    assert agent_of("/usr/bin/python3.11", ["python3", "-m", "aider"]) == "aider"
    assert agent_of("/usr/bin/python3.11", ["python3", "app.py"], {"OPENAI_BASE_URL": "https://r"}) == "python-llm"
    assert agent_of("/usr/bin/python3.11", ["python3", "app.py"], {"HOME": "/root"}) is None
    assert agent_of("/usr/bin/vim", ["vim"]) is None


def test_live_processes_and_cli(home: Path, tmp_path: Path) -> None:
    """Live agents: env from /proc/PID/environ; a Claude process's project settings override its shell."""
    proj = tmp_path / "proj"
    (proj / ".claude").mkdir(parents=True)
    (proj / ".claude/settings.json").write_text(json.dumps({"env": {"ANTHROPIC_BASE_URL": "https://project-router.example"}}))
    env = dict(os.environ, ANTHROPIC_BASE_URL="https://shell-router.example", HOME=str(home),
               OPENAI_BASE_URL="https://py-router.example/v1", OPENAI_API_KEY=OPENAI_KEY)
    claude = subprocess.Popen(["bash", "-c", "exec -a claude sleep 60"], cwd=proj, env=env)
    py = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "openai"], cwd=tmp_path, env=env)
    try:
        time.sleep(0.3)
        store = tmp_path / "store"
        r = run_cli("inventory", "--store", str(store), "--pid", str(claude.pid), "--pid", str(py.pid),
                    "--format", "json")
        assert r.returncode == 0, r.stderr
        rows = json.loads(r.stdout)
    finally:
        claude.kill()
        py.kill()
    c = {(x["scope"], x["variable"]): x for x in rows if x["pid"] == claude.pid}
    assert c[("process", "ANTHROPIC_BASE_URL")]["endpoint"] == "https://shell-router.example"
    assert c[("process", "ANTHROPIC_BASE_URL")]["effective"] is False  # the project settings win
    assert c[("project", "env.ANTHROPIC_BASE_URL")]["effective"] is True
    assert c[("user", "env.ANTHROPIC_BASE_URL")]["effective"] is False
    assert all(x["agent"] == "claude-code" and x["source"] in ("env", "file") for x in c.values())
    p = {(x["variable"]): x for x in rows if x["pid"] == py.pid}
    assert p["OPENAI_BASE_URL"]["agent"] == "python-llm" and p["OPENAI_BASE_URL"]["endpoint_host"] == "py-router.example"
    assert p["OPENAI_API_KEY"]["kind"] == "credential" and OPENAI_KEY not in r.stdout
    q = run_cli("sql", "--store", str(store), "--format", "json",
                "SELECT agent, pid, endpoint FROM agent_configs WHERE effective AND kind = 'endpoint' ORDER BY agent")
    assert q.returncode == 0, q.stderr
    assert {(x["agent"], x["endpoint"]) for x in json.loads(q.stdout)} >= {
        ("claude-code", "https://project-router.example"), ("python-llm", "https://py-router.example/v1")}
    s = run_cli("sql", "--store", str(store), "--format", "json",
                "SELECT kind, direction, pid FROM secrets_seen WHERE direction = 'config'")
    assert {"kind": "openai_api_key", "direction": "config", "pid": py.pid} in json.loads(s.stdout)
