"""A scripted tool-using agent on the real `openai` and `anthropic` Python SDKs.

It asks a router to do small tasks with a `run_shell` tool, "executes" the tool call the model returns
through `safe_exec` (parse only; loopback fetches only; never a shell), sends the result back and reads
the final answer: the traffic shape of a real coding agent, deterministic enough for tests.

Run it as its own process so TLS key logging applies to it alone:

    SSLKEYLOGFILE=keys.log python -m analyzer.demo.agent --base-url https://127.0.0.1:PORT \
        --api openai --stream --calls 3 --ca ca.pem

`--ca` sets SSL_CERT_FILE for this process: the SDKs' httpx2 client builds its TLS context with
ssl.create_default_context() (which writes SSLKEYLOGFILE) only when SSL_CERT_FILE or SSL_CERT_DIR is set.
Prints one JSON line per model call and a final {"summary": ...} line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from analyzer.demo import safe_exec

APIS = ("openai", "responses", "anthropic")
DEFAULT_MODELS = {"openai": "gpt-4o-mini", "responses": "gpt-4o-mini", "anthropic": "claude-sonnet-5"}
DEFAULT_TASKS = (
    "Fetch the project data from our JSON API.\nrun: curl -s {root}/data.json",
    "Install the HTTP library we need.\nrun: pip install requests",
    "List the files in the working directory.\nrun: ls -la",
)
TOOL_DESC = "Run a shell command in the project directory and return its output."
TOOL_PARAMS = {
    "type": "object",
    "properties": {"command": {"type": "string", "description": "the command line"},
                   "reason": {"type": "string", "description": "why it is needed"}},
    "required": ["command"],
}


@dataclass
class Turn:
    """One model call as the agent saw it."""

    api: str
    stream: bool
    model_requested: str
    model_returned: str | None = None
    http_version: str | None = None
    tls_version: str | None = None
    alpn: str | None = None
    text: str = ""
    tool_calls: list[dict[str, str]] = field(default_factory=list)
    exec: list[dict[str, Any]] = field(default_factory=list)
    raw_output: list[Any] = field(default_factory=list)  # provider-shaped items for the follow-up request
    seconds: float = 0.0


class Agent:
    """Drives one API family through one router."""

    def __init__(self, base_url: str, api: str, *, api_key: str, model: str | None = None, stream: bool = False,
                 http2: bool = True, cafile: str | None = None, timeout: float = 30.0) -> None:
        if api not in APIS:
            raise ValueError(f"api must be one of {APIS}")
        self.api, self.stream, self.cafile = api, stream, cafile
        self.model = model or DEFAULT_MODELS[api]
        self.root = base_url.rstrip("/").removesuffix("/v1")
        self._versions: list[tuple[str, str | None, str | None]] = []

        def on_response(response: Any) -> None:
            # (HTTP version, TLS version, ALPN) of the connection that carried this response.
            tls = alpn = None
            stream = response.extensions.get("network_stream")
            ssl_obj = stream.get_extra_info("ssl_object") if stream is not None else None
            if ssl_obj is not None:
                tls, alpn = ssl_obj.version(), ssl_obj.selected_alpn_protocol()
            self._versions.append((response.http_version, tls, alpn))

        hooks = {"response": [on_response]}
        if api == "anthropic":
            import anthropic

            self.client: Any = anthropic.Anthropic(
                base_url=self.root, api_key=api_key, max_retries=0, timeout=timeout,
                http_client=anthropic.DefaultHttpxClient(http2=http2, event_hooks=hooks, timeout=timeout))
        else:
            import openai

            self.client = openai.OpenAI(
                base_url=self.root + "/v1", api_key=api_key, max_retries=0, timeout=timeout,
                http_client=openai.DefaultHttpxClient(http2=http2, event_hooks=hooks, timeout=timeout))

    def close(self) -> None:
        """Close the SDK client's connection pool."""
        self.client.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tools ---------------------------------------------------------------------------------------

    def _tools(self) -> list[dict[str, Any]]:
        if self.api == "openai":
            return [{"type": "function", "function": {"name": "run_shell", "description": TOOL_DESC,
                                                      "parameters": TOOL_PARAMS}}]
        if self.api == "responses":
            return [{"type": "function", "name": "run_shell", "description": TOOL_DESC, "parameters": TOOL_PARAMS}]
        return [{"name": "run_shell", "description": TOOL_DESC, "input_schema": TOOL_PARAMS}]

    # -- one call per API family ---------------------------------------------------------------------

    def call(self, conversation: list[Any]) -> Turn:
        """One model request with tools over `conversation` (provider-shaped messages/items)."""
        t = Turn(self.api, self.stream, self.model)
        n0 = len(self._versions)
        start = time.monotonic()
        {"openai": self._chat, "responses": self._responses, "anthropic": self._messages}[self.api](conversation, t)
        t.seconds = round(time.monotonic() - start, 4)
        if len(self._versions) > n0:
            t.http_version, t.tls_version, t.alpn = self._versions[-1]
        return t

    def _chat(self, messages: list[Any], t: Turn) -> None:
        kw = {"model": self.model, "messages": messages, "tools": self._tools()}
        if not self.stream:
            r = self.client.chat.completions.create(**kw)
            t.model_returned = r.model
            msg = r.choices[0].message
            t.text = msg.content or ""
            t.tool_calls = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
                            for c in msg.tool_calls or []]
        else:
            calls: dict[int, dict[str, str]] = {}
            for chunk in self.client.chat.completions.create(**kw, stream=True,
                                                            stream_options={"include_usage": True}):
                # Tolerate chunks without choices (usage chunks, unknown router events).
                t.model_returned = getattr(chunk, "model", None) or t.model_returned
                for ch in getattr(chunk, "choices", None) or []:
                    d = ch.delta
                    t.text += d.content or ""
                    for tc in d.tool_calls or []:
                        c = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                        c["id"] = tc.id or c["id"]
                        if tc.function is not None:
                            c["name"] = tc.function.name or c["name"]
                            c["arguments"] += tc.function.arguments or ""
            t.tool_calls = [calls[i] for i in sorted(calls)]
        if t.tool_calls:
            t.raw_output = [{"role": "assistant", "content": t.text or None, "tool_calls": [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in t.tool_calls]}]
        else:
            t.raw_output = [{"role": "assistant", "content": t.text}]

    def _responses(self, items: list[Any], t: Turn) -> None:
        kw = {"model": self.model, "input": items, "tools": self._tools()}
        if not self.stream:
            r = self.client.responses.create(**kw)
            t.model_returned = r.model
            for it in r.output:
                if it.type == "function_call":
                    t.tool_calls.append({"id": it.call_id, "name": it.name, "arguments": it.arguments})
            t.text = r.output_text or ""
        else:
            items_by_id: dict[str, dict[str, str]] = {}
            for ev in self.client.responses.create(**kw, stream=True):
                kind = getattr(ev, "type", "")
                if kind in ("response.created", "response.completed"):
                    t.model_returned = ev.response.model
                elif kind == "response.output_item.added" and ev.item.type == "function_call":
                    items_by_id[ev.item.id] = {"id": ev.item.call_id, "name": ev.item.name, "arguments": ""}
                elif kind == "response.function_call_arguments.delta":
                    items_by_id[ev.item_id]["arguments"] += ev.delta
                elif kind == "response.output_text.delta":
                    t.text += ev.delta
            t.tool_calls = list(items_by_id.values())
        t.raw_output = [{"type": "function_call", "call_id": c["id"], "name": c["name"], "arguments": c["arguments"]}
                        for c in t.tool_calls]

    def _messages(self, messages: list[Any], t: Turn) -> None:
        kw = {"model": self.model, "max_tokens": 1024, "messages": messages, "tools": self._tools()}
        blocks: list[dict[str, Any]] = []
        if not self.stream:
            r = self.client.messages.create(**kw)
            t.model_returned = r.model
            for b in r.content:
                if b.type == "text":
                    blocks.append({"type": "text", "text": b.text})
                elif b.type == "tool_use":
                    blocks.append({"type": "tool_use", "id": b.id, "name": b.name,
                                   "input": b.input, "json": json.dumps(b.input, ensure_ascii=False, separators=(",", ":"))})
        else:
            for ev in self.client.messages.create(**kw, stream=True):
                kind = getattr(ev, "type", "")
                if kind == "message_start":
                    t.model_returned = ev.message.model
                elif kind == "content_block_start":
                    cb = ev.content_block
                    blocks.append({"type": "text", "text": ""} if cb.type == "text"
                                  else {"type": "tool_use", "id": cb.id, "name": cb.name, "json": ""})
                elif kind == "content_block_delta":
                    d = ev.delta
                    if d.type == "text_delta":
                        blocks[-1]["text"] += d.text
                    elif d.type == "input_json_delta":
                        blocks[-1]["json"] += d.partial_json
            for b in blocks:
                if b["type"] == "tool_use":
                    b["input"] = json.loads(b["json"] or "{}")
        t.text = "".join(b["text"] for b in blocks if b["type"] == "text")
        t.tool_calls = [{"id": b["id"], "name": b["name"], "arguments": b["json"]} for b in blocks
                        if b["type"] == "tool_use"]
        t.raw_output = [{"role": "assistant", "content": [
            {k: v for k, v in b.items() if k != "json"} for b in blocks]}]

    # -- the loop ------------------------------------------------------------------------------------

    def _user(self, text: str) -> Any:
        return {"role": "user", "content": text}

    def _tool_results(self, t: Turn, outputs: list[str]) -> list[Any]:
        if self.api == "openai":
            return [{"role": "tool", "tool_call_id": c["id"], "content": o} for c, o in zip(t.tool_calls, outputs, strict=True)]
        if self.api == "responses":
            return [{"type": "function_call_output", "call_id": c["id"], "output": o}
                    for c, o in zip(t.tool_calls, outputs, strict=True)]
        return [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": c["id"], "content": o}
                                             for c, o in zip(t.tool_calls, outputs, strict=True)]}]

    def task(self, prompt: str, *, execute: bool = True, follow_up: bool = True) -> list[Turn]:
        """Ask, run the tool call safely, send the result back, read the answer."""
        conv: list[Any] = [self._user(prompt.format(root=self.root))]
        first = self.call(conv)
        turns = [first]
        if not first.tool_calls:
            return turns
        outputs = []
        for c in first.tool_calls:
            try:
                command = str(json.loads(c["arguments"] or "{}").get("command", ""))
            except (ValueError, AttributeError):
                command = ""
            res = safe_exec.run(command, self.cafile) if execute else {"command": command, "actions": [], "output": ""}
            first.exec.append({k: v for k, v in res.items() if k != "output"})
            outputs.append(res["output"] or "(no output)")
        if follow_up:
            turns.append(self.call(conv + first.raw_output + self._tool_results(first, outputs)))
        return turns


def command(base_url: str, api: str, *, ca: str | os.PathLike, stream: bool = False, calls: int = 1,
            http1: bool = False, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The argv that runs this agent as its own process (with the current interpreter)."""
    cmd = [sys.executable, "-m", "analyzer.demo.agent", "--base-url", base_url, "--api", api,
           "--calls", str(calls), "--ca", str(ca)]
    if stream:
        cmd.append("--stream")
    if http1:
        cmd.append("--http1.1")
    return cmd + list(extra)


def new_keylog(path: str | os.PathLike) -> str:
    """Create an empty key-log file, 0600, before any TLS library appends to it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)
    return str(path)


def process_env(ca: str | os.PathLike, keylog: str | os.PathLike | None,
                env: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the agent process: SSL_CERT_FILE = the CA (which also makes the SDKs' httpx2
    client honour SSLKEYLOGFILE) and SSLKEYLOGFILE = `keylog` (created 0600), or no key log at all."""
    e = dict(os.environ)
    e.pop("SSLKEYLOGFILE", None)
    e.update(env or {})
    e["SSL_CERT_FILE"] = str(ca)
    if keylog is not None:
        e["SSLKEYLOGFILE"] = new_keylog(keylog)
    return e


def spawn(base_url: str, api: str, *, ca: str | os.PathLike, keylog: str | os.PathLike | None,
          env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None, **kw: Any) -> subprocess.Popen:
    """Start the agent as a separate process (stdout: JSON lines); kw: stream, calls, http1, extra."""
    return subprocess.Popen(command(base_url, api, ca=ca, **kw), cwd=cwd, env=process_env(ca, keylog, env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def parse_output(stdout: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(one dict per model call, the summary) from the agent's stdout."""
    turns: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for line in stdout.splitlines():
        obj = json.loads(line)
        if "summary" in obj:
            summary = obj["summary"]
        else:
            turns.append(obj)
    return turns, summary


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analyzer.demo.agent",
                                 description="Scripted tool-using agent on the real openai/anthropic SDKs.")
    ap.add_argument("--base-url", required=True, help="router root, e.g. https://127.0.0.1:8443 (/v1 optional)")
    ap.add_argument("--api", choices=APIS, default="openai", help="openai = Chat Completions")
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--calls", type=int, default=1, help="tasks to run (each: tool call + follow-up)")
    ap.add_argument("--ca", help="CA file to trust; sets SSL_CERT_FILE (needed for SSLKEYLOGFILE)")
    ap.add_argument("--http1.1", dest="http1", action="store_true", help="offer only HTTP/1.1 (default: h2 too)")
    ap.add_argument("--model")
    ap.add_argument("--api-key", default=os.environ.get("ROUTERWATCH_DEMO_API_KEY", "sk-routerwatch-demo-0000"),
                    help="key sent to the router (default: $ROUTERWATCH_DEMO_API_KEY or a dummy router key); "
                         "prefer the variable: argv is readable in /proc/PID/cmdline")
    ap.add_argument("--task", action="append", help="task prompt (repeatable; `run: CMD` names the command; "
                                                    "{root} is the router URL). Default: a rotating benign set")
    ap.add_argument("--secret-in-prompt", default=os.environ.get("ROUTERWATCH_DEMO_PROMPT_SECRET"),
                    help="append this text to every prompt, planting a secret in a request body "
                         "(default: $ROUTERWATCH_DEMO_PROMPT_SECRET; prefer the variable)")
    ap.add_argument("--no-exec", action="store_true", help="do not act on tool calls at all")
    ap.add_argument("--no-follow-up", action="store_true", help="do not send tool results back")
    args = ap.parse_args(argv)

    if args.ca:
        os.environ["SSL_CERT_FILE"] = os.path.abspath(args.ca)
    tasks = args.task or list(DEFAULT_TASKS)
    agent = Agent(args.base_url, args.api, api_key=args.api_key, model=args.model, stream=args.stream,
                  http2=not args.http1, cafile=os.environ.get("SSL_CERT_FILE"))
    summary = {"api": args.api, "stream": args.stream, "tasks": 0, "model_calls": 0, "tool_calls": 0,
               "fetches": 0, "refused": 0, "errors": 0, "http_versions": []}
    for i in range(args.calls):
        prompt = tasks[i % len(tasks)]
        if args.secret_in_prompt:
            prompt += f"\n\nContext:\n{args.secret_in_prompt}"
        try:
            turns = agent.task(prompt, execute=not args.no_exec, follow_up=not args.no_follow_up)
        except Exception as exc:  # report and go on: one router failure must not end the demo
            summary["errors"] += 1
            _emit({"task": i, "error": f"{type(exc).__name__}: {exc}"[:500]})
            continue
        summary["tasks"] += 1
        for j, t in enumerate(turns):
            summary["model_calls"] += 1
            summary["tool_calls"] += len(t.tool_calls)
            if t.http_version and t.http_version not in summary["http_versions"]:
                summary["http_versions"].append(t.http_version)
            for e in t.exec:
                for a in e["actions"]:
                    summary["fetches"] += a["kind"] == "fetch"
                    summary["refused"] += a["kind"] == "refused"
            _emit({"task": i, "turn": j, "api": t.api, "stream": t.stream, "model_requested": t.model_requested,
                   "model_returned": t.model_returned, "http_version": t.http_version,
                   "tls_version": t.tls_version, "alpn": t.alpn, "text": t.text,
                   "tool_calls": t.tool_calls, "exec": t.exec, "seconds": t.seconds})
    agent.close()
    _emit({"summary": summary})
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
