"""Which processes are agents, and which settings name an agent's LLM endpoint.

Every agent names its router somewhere: an environment variable or a config file. These tables
are the single list of the names routerwatch knows; the file parsers and the /proc scan use them.
"""

from __future__ import annotations

import os
import re

# Environment variables that set an LLM endpoint (variable -> the API family it serves).
ENDPOINT_VARS: dict[str, str] = {
    "ANTHROPIC_BASE_URL": "anthropic",
    "ANTHROPIC_BEDROCK_BASE_URL": "anthropic-bedrock",
    "ANTHROPIC_VERTEX_BASE_URL": "anthropic-vertex",
    "ANTHROPIC_FOUNDRY_BASE_URL": "anthropic-foundry",
    "ANTHROPIC_HOST": "anthropic",  # goose
    "OPENAI_BASE_URL": "openai",
    "OPENAI_API_BASE": "openai",  # older SDKs, LiteLLM, aider
    "OPENAI_API_HOST": "openai",
    "OPENAI_HOST": "openai",  # goose
    "AZURE_OPENAI_ENDPOINT": "azure-openai",
    "CODEX_OSS_BASE_URL": "openai",  # codex --oss
    "GOOGLE_GEMINI_BASE_URL": "gemini",
    "GOOGLE_VERTEX_BASE_URL": "gemini-vertex",
    "GEMINI_BASE_URL": "gemini",
    "OLLAMA_HOST": "ollama",
    "OPENROUTER_BASE_URL": "openai",
    "LITELLM_BASE_URL": "openai",
    "DEEPSEEK_BASE_URL": "openai",
}
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
CA_VARS = ("NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "CODEX_CA_CERTIFICATE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
MODEL_VARS = ("ANTHROPIC_MODEL", "ANTHROPIC_SMALL_FAST_MODEL", "ANTHROPIC_DEFAULT_SONNET_MODEL",
              "ANTHROPIC_DEFAULT_OPUS_MODEL", "ANTHROPIC_DEFAULT_HAIKU_MODEL", "OPENAI_MODEL", "GEMINI_MODEL",
              "GOOSE_MODEL", "AIDER_MODEL")
PROVIDER_VARS = ("GOOSE_PROVIDER", "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX", "GOOGLE_GENAI_USE_VERTEXAI")
_CREDENTIAL_RE = re.compile(r"^(?:[A-Z0-9]+_)*(?:API_KEY|AUTH_TOKEN|ACCESS_TOKEN|API_TOKEN|SECRET_KEY|BEARER_TOKEN\w*)$")
CREDENTIAL_VARS_EXTRA = ("ANTHROPIC_CUSTOM_HEADERS", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def kind_of(variable: str) -> str | None:
    """'endpoint' | 'proxy' | 'ca' | 'model' | 'provider' | 'credential' for a known variable name, else None."""
    name = variable.rsplit(".", 1)[-1]
    if name in ENDPOINT_VARS:
        return "endpoint"
    if name in PROXY_VARS:
        return "proxy"
    if name in CA_VARS:
        return "ca"
    if name in MODEL_VARS:
        return "model"
    if name in PROVIDER_VARS:
        return "provider"
    if name in CREDENTIAL_VARS_EXTRA or _CREDENTIAL_RE.match(name):
        return "credential"
    return None


# Agent recognition from a process's executable and command line.
_AGENT_ARGS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("claude-code", re.compile(r"(^|/)claude(\.exe)?$|@anthropic-ai/claude-code")),
    ("codex", re.compile(r"(^|/)codex(-\w+)?$|@openai/codex")),
    ("gemini-cli", re.compile(r"(^|/)gemini$|@google/gemini-cli|gemini-cli")),
    ("goose", re.compile(r"(^|/)goose$")),
    ("crush", re.compile(r"(^|/)crush$")),
    ("opencode", re.compile(r"(^|/)opencode$|opencode-ai")),
    ("aider", re.compile(r"(^|/)aider$|\baider\b")),
    ("openhands", re.compile(r"openhands")),
)
_PYTHON = re.compile(r"(^|/)python[0-9.]*$")
_NODE = re.compile(r"(^|/)(node|bun|deno)$")
_PY_LLM = re.compile(r"\b(openai|anthropic|litellm|langchain|llama_index|smolagents|autogen|crewai)\b")


def agent_of(exe: str | None, argv: list[str], environ: dict[str, str] | None = None) -> str | None:
    """The agent a process is, or None. Interpreters (python, node, bun) count when their script
    is a known agent; a Python process also counts when it names an LLM SDK or carries an LLM
    endpoint or key in its environment ('python-llm')."""
    first = argv[0] if argv else (exe or "")
    names = [first, exe or ""]
    interpreter = bool(_PYTHON.search(os.path.basename(first)) or _NODE.search(os.path.basename(first))
                       or (exe and (_PYTHON.search(exe) or _NODE.search(exe))))
    if not interpreter:
        for agent, rx in _AGENT_ARGS:
            if any(rx.search(n) for n in names if n):
                return agent
        return None
    script_args = " ".join(argv[1:4])
    for agent, rx in _AGENT_ARGS:
        if rx.search(script_args):
            return agent
    is_python = bool(_PYTHON.search(os.path.basename(first)) or (exe and _PYTHON.search(exe)))
    if is_python:
        if _PY_LLM.search(" ".join(argv[1:])):
            return "python-llm"
        if environ and any(kind_of(k) in ("endpoint", "credential") for k in environ
                           if k in ENDPOINT_VARS or k.endswith(("_API_KEY", "_AUTH_TOKEN"))):
            return "python-llm"
    return None
