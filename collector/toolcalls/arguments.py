"""A tool call (name + JSON arguments) -> what it would do, reading each argument for what it is.

Agents' tools differ in shape: a shell tool's `command` (a string, or an argv list as Codex sends),
a Python tool's `code`, a fetch tool's `url`, a write tool's `file_path` + `content` (Claude Code's
Write/Edit, the text editor tool's `file_text`/`new_str`, apply_patch's patch). Commands and code are
analysed as such, URLs as fetch targets, file content as *written* text (a URL in a script being
saved is not a fetch), prose (`description`, `prompt`, a commit message) only for mentions.
Arguments under keys this module does not know are analysed as commands (an unknown tool's string
may still be a payload).
"""

from __future__ import annotations

import json
import re
import shlex
from functools import lru_cache

from collector.toolcalls.code import analyze_code
from collector.toolcalls.hosts import parse_url, urls_in, with_intent
from collector.toolcalls.model import COMMAND, Analysis
from collector.toolcalls.shell import MAX_TEXT, analyze_command, analyze_write, exfiltrate

WRITE_TOOL = re.compile(
    r"(?:^|[_.\-\s]|(?<=[a-z])(?=[A-Z]))(?:write|create|edit|str_?replace|replace|insert|patch|save|append|update|"
    r"multi_?edit|notebook|put_?file|text_?editor)", re.I)
SHELL_TOOL = re.compile(r"shell|bash|terminal|exec|command|console|\bcmd|\bsh\b|run_?(?:in_)?terminal|send_?keys|tmux", re.I)
CODE_TOOL = re.compile(r"python|ipython|jupyter|notebook_run|code_?interpreter|execute_?code|run_?code|javascript|node|eval", re.I)
COMMAND_KEYS = {"command", "cmd", "commands", "script", "shell", "bash", "run", "args", "argv", "exec", "shell_command",
                "command_line", "commandline", "sh", "zsh", "powershell", "pwsh", "terminal_command"}
CODE_KEYS = {"code", "source", "program", "snippet", "python", "js", "javascript"}
CONTENT_KEYS = {"content", "contents", "file_text", "new_string", "old_string", "new_str", "old_str", "text", "patch",
                "diff", "insert_text", "replacement", "new_source", "new_content", "code_edit", "body", "data",
                "file_content", "new_text", "old_text", "lines", "input", "edits", "changes", "cell_source"}
PATH_KEYS = {"file_path", "path", "filepath", "filename", "target_file", "file", "target", "notebook_path",
             "destination", "dest", "output_path"}
URL_KEYS = {"url", "uri", "href", "link", "links", "urls", "endpoint", "base_url", "website", "page", "source_url",
            "download_url", "repo_url", "repository", "image_url"}
PROSE_KEYS = {"description", "prompt", "query", "title", "message", "summary", "reason", "explanation", "thought",
              "thinking", "comment", "commit_message", "note", "notes", "task", "goal", "question", "instructions",
              "pattern", "glob", "regex", "include", "exclude", "name", "cwd", "workdir", "working_directory",
              "directory", "dir", "language", "lang", "status", "todos", "plan", "subagent_type", "label", "id",
              "old_path", "search", "search_query", "topic", "answer", "response", "result", "output", "role", "type"}
_TYPED_INTO_SHELL = {"input", "text", "keys", "data", "lines"}  # a terminal tool's keystrokes run
_PATCH = re.compile(r"^\s*\*\*\* Begin Patch|^\s*(?:diff --git|--- a/|@@ )", re.M)


@lru_cache(maxsize=32768)
def analyze_tool_call(name: str | None, arguments: str | None) -> Analysis:
    """Everything a tool call's arguments would do. Cached (agents repeat calls; the analysis is pure:
    callers must not mutate it)."""
    if not arguments:
        return Analysis()
    arguments = arguments[:MAX_TEXT]
    try:
        obj = json.loads(arguments)
    except (ValueError, RecursionError):
        obj = arguments
    out = Analysis()
    uploads: list[str] = []
    shell_tool = bool(name and SHELL_TOOL.search(name))
    writer = bool(name and WRITE_TOOL.search(name)) and not shell_tool
    code_tool = bool(name and CODE_TOOL.search(name)) and not shell_tool
    if isinstance(obj, dict):
        _object(obj, writer, code_tool, out, uploads, 0)
    else:
        _value(obj, None, writer, code_tool, out, uploads, 0)
    exfiltrate(out, uploads)
    return out.dedup()


def _object(obj: dict, writer: bool, code_tool: bool, out: Analysis, uploads: list[str], depth: int) -> None:
    keys = {str(k).lower(): v for k, v in obj.items()}
    target = next((v for k, v in keys.items() if k in PATH_KEYS and isinstance(v, str)), None)
    # a write: the text-editor tool's `command: create`, Write/Edit's file_path + content, ...
    editor_cmd = keys.get("command") if isinstance(keys.get("command"), str) else None
    is_write = (writer or editor_cmd in ("create", "str_replace", "insert", "write", "append")) and target is not None
    argl = keys.get("args") if isinstance(keys.get("args"), list) else keys.get("argv")
    if editor_cmd and isinstance(argl, list) and all(isinstance(x, str) for x in argl) and not is_write:
        _command(shlex.join([editor_cmd, *argl]), out, uploads)  # {"command": "npm", "args": ["install", "x"]}
        keys = {k: v for k, v in keys.items() if k not in ("command", "args", "argv")}
    for k, v in keys.items():
        if is_write and (k in CONTENT_KEYS or k in CODE_KEYS):
            _written(v, target, out, depth)
        elif is_write and k == "command" and editor_cmd in ("create", "str_replace", "insert", "view", "undo_edit", "write", "append"):
            continue
        else:
            _value(v, k, writer, code_tool, out, uploads, depth)


def _value(v: object, key: str | None, writer: bool, code_tool: bool, out: Analysis, uploads: list[str], depth: int) -> None:
    if depth > 8:
        return
    if isinstance(v, dict):
        _object(v, writer, code_tool, out, uploads, depth + 1)
        return
    if isinstance(v, list):
        if v and all(isinstance(x, str) for x in v) and len(v) <= 64 and (key is None or key in COMMAND_KEYS):
            if v[0].rsplit("/", 1)[-1] == "apply_patch":  # Codex: ["apply_patch", "*** Begin Patch ..."]
                for x in v[1:]:
                    _written(x, None, out, depth)
                return
            _command(shlex.join(v), out, uploads)
            return
        for x in v:
            _value(x, key, writer, code_tool, out, uploads, depth + 1)
        return
    if not isinstance(v, str) or not v.strip():
        return
    s = v.strip()
    if s[:1] in "{[" and key not in CONTENT_KEYS:
        try:
            _value(json.loads(s), key, writer, code_tool, out, uploads, depth + 1)  # arguments encoded twice
            return
        except (ValueError, RecursionError):
            pass
    if key in URL_KEYS:
        h = parse_url(s) if "://" in s else parse_url("https://" + s.split()[0]) if re.match(r"^[\w.\-]+\.[a-z]{2,}(?:[:/]|$)", s) else None
        if h is not None:
            out.hosts.append(h)  # intent 'fetch'
            return
    if key in PROSE_KEYS or key in PATH_KEYS:
        out.hosts += with_intent(urls_in(s), "mention")
        return
    if (key in CONTENT_KEYS and (writer or key not in _TYPED_INTO_SHELL)) or _PATCH.search(s):
        _written(s, None, out, depth)
        return
    if key in CODE_KEYS or (code_tool and key not in COMMAND_KEYS):
        a, ups = analyze_code("python", s, COMMAND, _shell)
        out.add(a)
        uploads += ups
        return
    if re.fullmatch(r"(?:https?|wss?|ftp)://\S+", s):  # a URL handed to the tool
        h = parse_url(s)
        if h is not None:
            out.hosts += with_intent([h], "arg")
        return
    _command(s, out, uploads)


def _command(text: str, out: Analysis, uploads: list[str]) -> None:
    a, ups = analyze_command(text)
    out.add(a)
    uploads += ups


def _shell(text: str):  # noqa: ANN202 - the callback analyze_code expects
    return analyze_command(text, 1)


def _written(v: object, target: str | None, out: Analysis, depth: int) -> None:
    if isinstance(v, list):
        for x in v:
            _written(x, target, out, depth + 1)
        return
    if isinstance(v, dict):
        for x in v.values():
            _written(x, target, out, depth + 1)
        return
    if isinstance(v, str) and v:
        if _PATCH_FILE.search(v):  # apply_patch: each added file's `+` lines, written to that file
            for path, added in _patch_files(v):
                a, _ups = analyze_write([path], added, 1, COMMAND)
                out.add(a)
            return
        a, _ups = analyze_write([target] if target else [], v, 1, COMMAND)
        out.add(a)


_PATCH_FILE = re.compile(r"^\*\*\* (?:Add|Update) File: ", re.M)


def _patch_files(patch: str) -> list[tuple[str, str]]:
    """`*** Begin Patch` text -> [(path, the lines it adds)] (Codex's apply_patch format)."""
    out: list[tuple[str, list[str]]] = []
    for line in patch.splitlines():
        m = re.match(r"^\*\*\* (?:Add|Update) File: (.+)$", line)
        if m:
            out.append((m.group(1).strip(), []))
        elif out and line.startswith("+"):
            out[-1][1].append(line[1:])
    return [(p, "\n".join(lines)) for p, lines in out]
