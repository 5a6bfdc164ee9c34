"""Agent config files -> settings: one small parser per format, all returning `Setting`s.

Values are kept raw only in memory; collector.inventory.scan fingerprints credentials before any
row is built. A value that only names an environment variable (`$OPENAI_KEY`, `{env:KEY}`,
`${KEY}`, codex `env_key`) is recorded as a reference, not as a secret.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from collector.inventory.agents import kind_of

_ENV_REF = re.compile(r"^\s*(\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\{env:[A-Za-z_][A-Za-z0-9_]*\})\s*$")


@dataclass
class Setting:
    """One configured value and where it came from."""

    agent: str
    variable: str  # dotted path inside the file, or the environment variable
    kind: str  # 'endpoint' | 'proxy' | 'credential' | 'credential-ref' | 'provider' | 'model' | 'ca'
    value: str  # raw; for credentials only in memory
    source: str = "file"
    path: str = ""
    scope: str = "user"
    effective: bool = True


def is_env_ref(value: str) -> bool:
    return bool(_ENV_REF.match(value))


def _from_mapping(agent: str, prefix: str, env: dict) -> Iterator[Setting]:
    """An env-style mapping (Claude's settings `env`, goose config, .env files)."""
    for k, v in env.items():
        if not isinstance(v, (str, int, float)) or isinstance(v, bool):
            continue
        kind = kind_of(str(k))
        if kind is None:
            continue
        value = str(v)
        if kind == "credential" and is_env_ref(value):
            kind = "credential-ref"
        yield Setting(agent, f"{prefix}{k}", kind, value)


def _field(agent: str, var: str, value: object, kind: str) -> Iterator[Setting]:
    if not isinstance(value, str) or not value.strip():
        return
    if kind == "credential" and is_env_ref(value):
        kind = "credential-ref"
    yield Setting(agent, var, kind, value.strip())


def parse_claude_settings(text: str) -> Iterator[Setting]:
    """~/.claude/settings.json, <project>/.claude/settings.json and settings.local.json: the `env`
    block (applied over the shell's environment) and `apiKeyHelper` (a command that prints a key)."""
    data = json.loads(text)
    if not isinstance(data, dict):
        return
    env = data.get("env")
    if isinstance(env, dict):
        yield from _from_mapping("claude-code", "env.", env)
    helper = data.get("apiKeyHelper")
    if isinstance(helper, str) and helper:
        yield Setting("claude-code", "apiKeyHelper", "credential-ref", helper)


def parse_codex_toml(text: str) -> Iterator[Setting]:
    """~/.codex/config.toml: `model_providers.<id>.base_url` (+ env_key), the selected
    `model_provider` and `model`, also inside `profiles.<name>`."""
    data = tomllib.loads(text)
    selected = data.get("model_provider")
    if isinstance(selected, str):
        yield Setting("codex", "model_provider", "provider", selected)
    if isinstance(data.get("model"), str):
        yield Setting("codex", "model", "model", data["model"])
    for key in ("openai_base_url", "chatgpt_base_url"):
        yield from _field("codex", key, data.get(key), "endpoint")
    providers = data.get("model_providers") or {}
    for pid, p in providers.items() if isinstance(providers, dict) else ():
        if not isinstance(p, dict):
            continue
        for s in _field("codex", f"model_providers.{pid}.base_url", p.get("base_url"), "endpoint"):
            s.effective = selected is None or selected == pid
            yield s
        if isinstance(p.get("env_key"), str):
            yield Setting("codex", f"model_providers.{pid}.env_key", "credential-ref", p["env_key"])
        for hk in ("http_headers", "env_http_headers"):
            hdrs = p.get(hk)
            if isinstance(hdrs, dict):
                for name, v in hdrs.items():
                    kind = "credential-ref" if hk == "env_http_headers" else "credential"
                    if name.lower() in ("authorization", "x-api-key", "api-key") or hk == "env_http_headers":
                        yield from _field("codex", f"model_providers.{pid}.{hk}.{name}", v, kind)
    profiles = data.get("profiles") or {}
    for name, prof in profiles.items() if isinstance(profiles, dict) else ():
        if isinstance(prof, dict) and isinstance(prof.get("model_provider"), str):
            yield Setting("codex", f"profiles.{name}.model_provider", "provider", prof["model_provider"], effective=False)


def parse_dotenv(text: str, agent: str) -> Iterator[Setting]:
    """A .env file (~/.gemini/.env, a project's .env): KEY=VALUE lines, `export` and quotes allowed."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, _, v = line.removeprefix("export ").partition("=")
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
            v = v[1:-1]
        elif " #" in v:
            v = v.split(" #", 1)[0].strip()
        env[k.strip()] = v
    yield from _from_mapping(agent, "", env)


def parse_gemini_env(text: str) -> Iterator[Setting]:
    yield from parse_dotenv(text, "gemini-cli")


def parse_gemini_settings(text: str) -> Iterator[Setting]:
    """~/.gemini/settings.json: proxy and selected auth type."""
    data = json.loads(text)
    if not isinstance(data, dict):
        return
    yield from _field("gemini-cli", "proxy", data.get("proxy"), "proxy")
    auth = data.get("selectedAuthType")
    sec = data.get("security")
    if auth is None and isinstance(sec, dict) and isinstance(sec.get("auth"), dict):
        auth = sec["auth"].get("selectedType")
    yield from _field("gemini-cli", "selectedAuthType", auth, "provider")


def parse_goose_yaml(text: str) -> Iterator[Setting]:
    """~/.config/goose/config.yaml: GOOSE_PROVIDER, GOOSE_MODEL, OPENAI_HOST, ANTHROPIC_HOST, ...
    (goose keeps keys in the keyring or secrets.yaml, which has the same flat shape)."""
    data = yaml.safe_load(text) or {}
    if isinstance(data, dict):
        yield from _from_mapping("goose", "", data)


def parse_crush_json(text: str) -> Iterator[Setting]:
    """crush.json / .crush.json / ~/.config/crush/crush.json: `providers.<id>.base_url`, `api_key`."""
    data = json.loads(text)
    providers = data.get("providers") if isinstance(data, dict) else None
    for pid, p in providers.items() if isinstance(providers, dict) else ():
        if not isinstance(p, dict):
            continue
        yield from _field("crush", f"providers.{pid}.base_url", p.get("base_url"), "endpoint")
        yield from _field("crush", f"providers.{pid}.api_key", p.get("api_key"), "credential")
        yield from _field("crush", f"providers.{pid}.type", p.get("type"), "provider")


def parse_opencode_json(text: str) -> Iterator[Setting]:
    """opencode.json / ~/.config/opencode/opencode.json: `provider.<id>.options.baseURL`, `apiKey`, `model`."""
    data = json.loads(text)
    if not isinstance(data, dict):
        return
    yield from _field("opencode", "model", data.get("model"), "model")
    providers = data.get("provider")
    for pid, p in providers.items() if isinstance(providers, dict) else ():
        opts = p.get("options") if isinstance(p, dict) else None
        if not isinstance(opts, dict):
            continue
        yield from _field("opencode", f"provider.{pid}.options.baseURL", opts.get("baseURL"), "endpoint")
        yield from _field("opencode", f"provider.{pid}.options.apiKey", opts.get("apiKey"), "credential")
        if isinstance(p.get("npm"), str):
            yield Setting("opencode", f"provider.{pid}.npm", "provider", p["npm"])


def parse_continue_yaml(text: str) -> Iterator[Setting]:
    """~/.continue/config.yaml (and the older config.json): `models[].apiBase`, `apiKey`, `provider`."""
    data = yaml.safe_load(text) or {}
    models = data.get("models") if isinstance(data, dict) else None
    for i, m in enumerate(models if isinstance(models, list) else []):
        if not isinstance(m, dict):
            continue
        name = str(m.get("name") or i)
        yield from _field("continue", f"models[{name}].apiBase", m.get("apiBase"), "endpoint")
        yield from _field("continue", f"models[{name}].apiKey", m.get("apiKey"), "credential")
        yield from _field("continue", f"models[{name}].provider", m.get("provider"), "provider")


Parser = Callable[[str], Iterator[Setting]]

# (path relative to a home directory, parser, scope)
HOME_FILES: tuple[tuple[str, Parser], ...] = (
    (".claude/settings.json", parse_claude_settings),
    (".claude/settings.local.json", parse_claude_settings),
    (".codex/config.toml", parse_codex_toml),
    (".gemini/.env", parse_gemini_env),
    (".gemini/settings.json", parse_gemini_settings),
    (".env", parse_gemini_env),  # Gemini CLI also reads ~/.env
    (".config/goose/config.yaml", parse_goose_yaml),
    (".config/goose/secrets.yaml", parse_goose_yaml),
    (".config/crush/crush.json", parse_crush_json),
    (".local/share/crush/crush.json", parse_crush_json),
    (".config/opencode/opencode.json", parse_opencode_json),
    (".config/opencode/config.json", parse_opencode_json),
    (".continue/config.yaml", parse_continue_yaml),
    (".continue/config.json", parse_continue_yaml),
)
# (path relative to a project directory, parser)
PROJECT_FILES: tuple[tuple[str, Parser], ...] = (
    (".claude/settings.json", parse_claude_settings),
    (".claude/settings.local.json", parse_claude_settings),
    (".codex/config.toml", parse_codex_toml),
    (".gemini/.env", parse_gemini_env),
    ("crush.json", parse_crush_json),
    (".crush.json", parse_crush_json),
    ("opencode.json", parse_opencode_json),
    (".continue/config.yaml", parse_continue_yaml),
)


def read_settings(path: Path, parser: Parser, scope: str) -> tuple[list[Setting], str | None]:
    """All settings in one file (empty if absent) and a parse error message, if any."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return [], None
    try:
        out = list(parser(text))
    except (ValueError, TypeError, AttributeError, yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        return [], f"{path}: {type(exc).__name__}"
    for s in out:
        s.path, s.scope = str(path), scope
    return out, None
